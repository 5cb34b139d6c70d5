// Test peers: real redis-server processes on loopback, one standalone or a six-node cluster.
// In: nothing but /usr/bin/redis-server and redis-cli. Out: handles to stop, crash (SIGKILL), pause
// (SIGSTOP), restart on the same port, and, for the cluster, kill a master and wait for failover.
// Fails: a server that does not answer PING in time rejects the start; every process started here is
// also killed on process exit, and each temporary directory is removed on stop.

import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from './filter-process.js';

const run = promisify(execFile);
const REDIS_SERVER = process.env.REDIS_SERVER ?? 'redis-server';
const REDIS_CLI = process.env.REDIS_CLI ?? 'redis-cli';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// Safety net: whatever a failing test leaves running dies with the test process.
const LIVE = new Set<ChildProcess>();
process.on('exit', () => {
  for (const p of LIVE) try { p.kill('SIGKILL'); } catch { /* already gone */ }
});

export { freePort };

/** redis-cli against one port; resolves with trimmed stdout. */
export async function cli(port: number, ...args: string[]): Promise<string> {
  const { stdout } = await run(REDIS_CLI, ['-h', '127.0.0.1', '-p', String(port), ...args], { timeout: 10_000 });
  return stdout.trim();
}

async function waitFor(what: string, ms: number, probe: () => Promise<boolean>): Promise<void> {
  const until = Date.now() + ms;
  let last: unknown = null;
  while (Date.now() < until) {
    try {
      if (await probe()) return;
    } catch (err) {
      last = err;
    }
    await sleep(50);
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
}

export interface RedisServer {
  port: number;
  /** redis://127.0.0.1:PORT */
  url: string;
  /** SIGTERM and wait for exit (data is not persisted: --save '' --appendonly no). */
  stop(): Promise<void>;
  /** SIGKILL: a crash. */
  kill(): Promise<void>;
  /** Start again on the same port (after stop or kill). */
  restart(): Promise<void>;
  /** SIGSTOP / SIGCONT: the connection stays open but nothing answers. */
  pause(): void;
  resume(): void;
  cli(...args: string[]): Promise<string>;
}

interface Proc {
  child: ChildProcess | null;
  exited: Promise<void>;
}

function spawnServer(args: string[], cwd: string): Proc {
  const child = spawn(REDIS_SERVER, args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
  LIVE.add(child);
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => { stderr += d.toString(); });
  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => { LIVE.delete(child); resolve(); });
    child.once('error', (err) => { stderr += String(err); LIVE.delete(child); resolve(); });
  });
  void exited.then(() => { if (stderr.trim()) process.stderr.write(`[redis-server] ${stderr}`); });
  return { child, exited };
}

async function endProc(p: Proc, signal: NodeJS.Signals): Promise<void> {
  if (!p.child || p.child.exitCode !== null || p.child.signalCode !== null) return;
  try { p.child.kill('SIGCONT'); } catch { /* ignore */ }
  p.child.kill(signal);
  await p.exited;
}

function baseArgs(port: number, dir: string): string[] {
  return ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--dir', dir, '--logfile', '',
    // Redis 7 refuses DEBUG (used for DEBUG SLEEP) unless allowed; loopback only.
    '--enable-debug-command', 'local'];
}

/** One standalone redis-server on an ephemeral loopback port. */
export async function startRedis(): Promise<RedisServer> {
  const port = await freePort();
  const dir = await mkdtemp(join(tmpdir(), 'calfilter-redis-'));
  let proc: Proc = { child: null, exited: Promise.resolve() };
  const boot = async () => {
    proc = spawnServer(baseArgs(port, dir), dir);
    await waitFor(`redis-server on port ${port}`, 10_000, async () => (await cli(port, 'PING')) === 'PONG');
  };
  await boot();
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    stop: async () => { await endProc(proc, 'SIGTERM'); await rm(dir, { recursive: true, force: true }); },
    kill: () => endProc(proc, 'SIGKILL'),
    restart: async () => { await endProc(proc, 'SIGKILL'); await boot(); },
    pause: () => { proc.child?.kill('SIGSTOP'); },
    resume: () => { proc.child?.kill('SIGCONT'); },
    cli: (...args) => cli(port, ...args),
  };
}

export interface RedisCluster {
  ports: number[];
  /** redis+cluster://127.0.0.1:P1,127.0.0.1:P2,… (all six nodes as seeds) */
  url: string;
  /** Ports of the nodes that are masters right now. */
  masters(): Promise<number[]>;
  /** SIGKILL the i-th current master; resolves once a replica took over and the cluster is ok again. */
  killMaster(i: number): Promise<number>;
  stop(): Promise<void>;
  cli(port: number, ...args: string[]): Promise<string>;
}

/** Six nodes (three masters, three replicas) with a one-second node timeout, so failover is quick. */
export async function startRedisCluster(): Promise<RedisCluster> {
  const dir = await mkdtemp(join(tmpdir(), 'calfilter-cluster-'));
  const ports: number[] = [];
  const procs = new Map<number, Proc>();
  const stop = async () => {
    await Promise.all([...procs.values()].map((p) => endProc(p, 'SIGKILL')));
    await rm(dir, { recursive: true, force: true });
  };
  try {
    while (ports.length < 6) {
      const p = await freePort();
      if (!ports.includes(p)) ports.push(p);
    }
    for (const port of ports) {
      // Redis 7 takes an explicit bus port, so we need not hope that PORT+10000 is free.
      const bus = await freePort();
      const args = [...baseArgs(port, dir), '--cluster-enabled', 'yes', '--cluster-config-file', `nodes-${port}.conf`,
        '--cluster-node-timeout', '1000', '--cluster-port', String(bus),
        // Replicas must sync at once (the default waits 5 s) and may always take over, however stale.
        '--repl-diskless-sync-delay', '0', '--cluster-replica-validity-factor', '0'];
      procs.set(port, spawnServer(args, dir));
    }
    for (const port of ports) await waitFor(`cluster node ${port}`, 10_000, async () => (await cli(port, 'PING')) === 'PONG');
    await run(REDIS_CLI, ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '1', '--cluster-yes'], { timeout: 30_000 });
    await waitForClusterOk(ports, 20_000);
    await waitFor('replicas in sync', 20_000, async () => {
      for (const p of ports) {
        const info = await cli(p, 'INFO', 'replication');
        if (info.includes('role:slave') && !info.includes('master_link_status:up')) return false;
      }
      return true;
    });
  } catch (err) {
    await stop();
    throw err;
  }
  const masters = async () => {
    const alive = ports.filter((p) => procs.get(p)?.child?.exitCode === null && procs.get(p)?.child?.signalCode === null);
    const out: number[] = [];
    for (const p of alive) {
      const role = await cli(p, 'ROLE').catch(() => '');
      if (role.split('\n')[0] === 'master') out.push(p);
    }
    return out.sort((a, b) => a - b);
  };
  return {
    ports,
    url: `redis+cluster://${ports.map((p) => `127.0.0.1:${p}`).join(',')}`,
    masters,
    killMaster: async (i) => {
      const before = await masters();
      const victim = before[i];
      if (victim === undefined) throw new Error(`no master number ${i} (masters: ${before.join(', ')})`);
      await endProc(procs.get(victim)!, 'SIGKILL');
      const rest = ports.filter((p) => p !== victim);
      // A replica is promoted once the others agree the master failed (node timeout 1 s).
      await waitFor('replica promotion', 20_000, async () => (await masters()).length === 3);
      await waitForClusterOk(rest, 20_000);
      return victim;
    },
    stop,
    cli: (port, ...args) => cli(port, ...args),
  };
}

async function waitForClusterOk(ports: number[], ms: number): Promise<void> {
  await waitFor('cluster_state:ok on every node', ms, async () => {
    for (const p of ports) {
      if (!(await cli(p, 'CLUSTER', 'INFO')).includes('cluster_state:ok')) return false;
    }
    return true;
  });
}

export interface RedisSentinel {
  port: number;
  /** redis+sentinel://127.0.0.1:PORT/NAME */
  url: string;
  stop(): Promise<void>;
}

/** One Sentinel (quorum 1) watching a standalone server started by startRedis(), under `name`. */
export async function startSentinel(master: RedisServer, name = 'calmaster'): Promise<RedisSentinel> {
  const port = await freePort();
  const dir = await mkdtemp(join(tmpdir(), 'calfilter-sentinel-'));
  // Sentinel rewrites its config file, so it gets a file of its own in the temporary directory.
  const conf = join(dir, 'sentinel.conf');
  await writeFile(conf, `port ${port}\nbind 127.0.0.1\nsentinel monitor ${name} 127.0.0.1 ${master.port} 1\n`);
  const proc = spawnServer([conf, '--sentinel', '--dir', dir, '--logfile', ''], dir);
  const stop = async () => { await endProc(proc, 'SIGKILL'); await rm(dir, { recursive: true, force: true }); };
  try {
    await waitFor(`sentinel on port ${port}`, 10_000, async () => (await cli(port, 'SENTINEL', 'GET-MASTER-ADDR-BY-NAME', name)).includes(String(master.port)));
  } catch (err) {
    await stop();
    throw err;
  }
  return { port, url: `redis+sentinel://127.0.0.1:${port}/${name}`, stop };
}
