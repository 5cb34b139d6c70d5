// Benchmark: what per-recipient override lookups in Redis add to a message's latency through the filter.
// Two filters side by side, relaying the same calendar fixture to the same sink (Postfix's smtp-sink when
// installed, else a null sink in this process): one with 1000 recipient overrides in a redis-server on
// loopback started here and override_cache_ttl_ms 0 (every message asks Redis: 100 % cache misses), one
// with the embedded memory store (site default). Each message goes to one recipient, user0…user999 in turn.
// Usage: npm run build && node --import tsx bench/lookups.ts [--messages N] [--rounds R] [--concurrency C]
// Prints p50/p99 of each (median of R alternating runs) and the difference; target: p99 added ≤ 1 ms.

import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import SMTPConnection from 'nodemailer/lib/smtp-connection';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const run = promisify(execFile);
const args = process.argv.slice(2);
const opt = (name: string, def: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] ? args[i + 1]! : def;
};
const MESSAGES = Number(opt('messages', '3000'));
const ROUNDS = Number(opt('rounds', '5'));
const CONCURRENCY = Number(opt('concurrency', '50'));
const RECIPIENTS = 1000;
const CLI = 'dist/bin/calendar-link-filter.js';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// Processes: started with start(), stopped with stop(); whatever is left dies with this process.
const children = new Set<ChildProcess>();
function start(cmd: string, argv: string[]): ChildProcess {
  const child = spawn(cmd, argv, { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] });
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}
async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  await new Promise<void>((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
    setTimeout(() => child.kill('SIGKILL'), 5000).unref();
  });
}
process.on('exit', () => { for (const c of children) c.kill('SIGKILL'); });

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => resolve(typeof a === 'object' && a ? a.port : 0));
    });
  });
}

async function waitPort(port: number, ms = 15000): Promise<void> {
  const until = Date.now() + ms;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const c = new SMTPConnection({ host: '127.0.0.1', port, ignoreTLS: true, logger: false });
      c.once('error', () => resolve(false));
      c.connect(() => { c.quit(); resolve(true); });
    });
    if (ok) return;
    if (Date.now() > until) throw new Error(`port ${port} did not open`);
    await sleep(100);
  }
}

/** The fallback sink: accepts everything at once, keeps nothing (no smtp-server: it delays its greeting). */
function nullSink(port: number): Promise<Server> {
  const server = createServer((socket) => {
    let buf = '';
    let inData = false;
    socket.on('error', () => undefined);
    socket.write('220 null-sink ESMTP\r\n');
    socket.on('data', (d) => {
      buf += d.toString('latin1');
      for (;;) {
        if (inData) {
          const end = buf.indexOf('\r\n.\r\n');
          if (end < 0) { buf = buf.slice(-4); return; }
          buf = buf.slice(end + 5);
          inData = false;
          socket.write('250 2.0.0 Ok: queued\r\n');
          continue;
        }
        const i = buf.indexOf('\r\n');
        if (i < 0) return;
        const cmd = buf.slice(0, i).toUpperCase();
        buf = buf.slice(i + 2);
        if (cmd.startsWith('EHLO')) socket.write('250-null-sink\r\n250 8BITMIME\r\n');
        else if (cmd.startsWith('DATA')) { inData = true; buf = '\r\n' + buf; socket.write('354 End data with <CR><LF>.<CR><LF>\r\n'); }
        else if (cmd.startsWith('QUIT')) { socket.end('221 Bye\r\n'); return; }
        else socket.write('250 Ok\r\n');
      }
    });
  });
  return new Promise((resolve) => server.listen(port, '127.0.0.1', () => resolve(server)));
}

async function startSink(): Promise<{ port: number; kind: string; close: () => Promise<void> }> {
  const port = await freePort();
  if (existsSync('/usr/sbin/smtp-sink')) {
    const child = start('/usr/sbin/smtp-sink', ['-u', 'nobody', `127.0.0.1:${port}`, '1024']);
    await waitPort(port);
    return { port, kind: 'smtp-sink', close: () => stop(child) };
  }
  const server = await nullSink(port);
  return { port, kind: 'null sink in the benchmark process', close: () => new Promise((r) => server.close(() => r())) };
}

async function startRedis(dir: string): Promise<{ port: number; child: ChildProcess; cli: (...a: string[]) => Promise<string> }> {
  const port = await freePort();
  const child = start(process.env.REDIS_SERVER ?? 'redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--logfile', '']);
  const cli = async (...a: string[]) => (await run(process.env.REDIS_CLI ?? 'redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...a], { timeout: 10_000 })).stdout.trim();
  const until = Date.now() + 10_000;
  while ((await cli('PING').catch(() => '')) !== 'PONG') {
    if (Date.now() > until) throw new Error(`redis-server on ${port} did not answer PING`);
    await sleep(50);
  }
  return { port, child, cli };
}

interface Figures { rate: number; p50: number; p99: number; failed: number }

/** `total` messages over `concurrency` kept-open client connections; message k goes to user(k mod 1000). */
async function load(port: number, raw: Buffer, total: number, concurrency: number): Promise<Figures> {
  const lat: number[] = [];
  let next = 0;
  let failed = 0;
  const worker = async () => {
    let conn: SMTPConnection | null = null;
    while (next < total) {
      const k = next++;
      if (!conn) {
        conn = await new Promise<SMTPConnection>((resolve, reject) => {
          const c = new SMTPConnection({ host: '127.0.0.1', port, ignoreTLS: true, logger: false, socketTimeout: 600000 });
          c.once('error', reject);
          c.connect(() => resolve(c));
        });
      }
      const t0 = process.hrtime.bigint();
      const ok = await new Promise<boolean>((resolve) => {
        conn!.send({ from: 'alice@example.org', to: [`user${k % RECIPIENTS}@example.org`] }, raw, (err) => resolve(!err));
      });
      lat.push(Number(process.hrtime.bigint() - t0) / 1e6);
      if (!ok) {
        failed++;
        conn.close();
        conn = null;
      }
    }
    conn?.quit();
  };
  const t0 = Date.now();
  await Promise.all(Array.from({ length: concurrency }, worker));
  const secs = (Date.now() - t0) / 1000;
  lat.sort((a, b) => a - b);
  const q = (p: number) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))] ?? NaN;
  return { rate: total / secs, p50: q(0.5), p99: q(0.99), failed };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

function row(name: string, f: Figures): string {
  return `  ${name.padEnd(44)} ${f.rate.toFixed(0).padStart(6)} msg/s  p50 ${f.p50.toFixed(2).padStart(7)} ms  p99 ${f.p99.toFixed(2).padStart(7)} ms${f.failed ? `  FAILED ${f.failed}` : ''}`;
}

async function main() {
  if (!existsSync(join(ROOT, CLI))) throw new Error('run `npm run build` first');
  const raw = readFileSync(join(ROOT, 'fixtures/mail/exchange-12k.eml'));
  const dir = mkdtempSync(join(tmpdir(), 'calfilter-bench-lookups-'));
  const procs: ChildProcess[] = [];
  const sink = await startSink();
  try {
    const redis = await startRedis(dir);
    procs.push(redis.child);
    const url = `redis://127.0.0.1:${redis.port}`;
    // 1000 recipient overrides, imported the way an administrator would.
    const csv = join(dir, 'overrides.csv');
    writeFileSync(csv, ['key,server', ...Array.from({ length: RECIPIENTS }, (_, i) => `user${i}@example.org,u${i}.cal.example.org`)].join('\n') + '\n');
    const imported = await run(process.execPath, [CLI, 'overrides', 'import', csv, '--redis', url], { cwd: ROOT, timeout: 60_000 });
    process.stdout.write(`overrides: ${imported.stdout.trim().split('\n').at(-1)}\n`);

    const common = ['--web-server', 'cal.example.org', '--local-domains', 'example.org', '--log-level', 'warn'];
    const ports = [await freePort(), await freePort()];
    const modes = [
      { label: 'memory store, site default (no overrides)', argv: [] as string[] },
      { label: `Redis, ${RECIPIENTS} overrides, cache TTL 0 (all misses)`, argv: ['--redis', url, '--override-cache-ttl-ms', '0'] },
    ];
    modes.forEach((m, i) => procs.push(start(process.execPath, [CLI, 'serve', '--listen', `127.0.0.1:${ports[i]}`, '--next-hop', `smtp://127.0.0.1:${sink.port}`, ...common, ...m.argv])));
    await Promise.all(ports.map((p) => waitPort(p)));
    for (const p of ports) await load(p, raw, 1000, CONCURRENCY); // warm-up (JIT, connections)

    await redis.cli('CONFIG', 'RESETSTAT');
    const runs: Figures[][] = [[], []];
    for (let r = 0; r < ROUNDS; r++) for (const i of [0, 1]) runs[i]!.push(await load(ports[i]!, raw, MESSAGES, CONCURRENCY));
    const stats = await redis.cli('INFO', 'commandstats');
    const gets = Number(/cmdstat_get:calls=(\d+)/.exec(stats)?.[1] ?? 0);
    const getUsec = Number(/cmdstat_get:calls=\d+,usec=\d+,usec_per_call=([\d.]+)/.exec(stats)?.[1] ?? NaN);

    const result = runs.map((rs) => ({ rate: median(rs.map((f) => f.rate)), p50: median(rs.map((f) => f.p50)), p99: median(rs.map((f) => f.p99)), failed: rs.reduce((n, f) => n + f.failed, 0) }));
    console.log(`\nsink: ${sink.kind}; fixture exchange-12k.eml (${(raw.length / 1024).toFixed(0)} KB); ${MESSAGES} messages per run, one recipient each, ` +
      `concurrency ${CONCURRENCY}; median of ${ROUNDS} alternating runs`);
    modes.forEach((m, i) => console.log(row(m.label, result[i]!)));
    for (let r = 0; r < ROUNDS; r++) console.log(`    run ${r + 1}: p99 ${runs[0]![r]!.p99.toFixed(2)} vs ${runs[1]![r]!.p99.toFixed(2)} ms (difference ${(runs[1]![r]!.p99 - runs[0]![r]!.p99).toFixed(2)})`);
    const dP50 = result[1]!.p50 - result[0]!.p50;
    const dP99 = result[1]!.p99 - result[0]!.p99;
    console.log(`  Redis GETs: ${gets} for ${MESSAGES * ROUNDS} messages (${(gets / (MESSAGES * ROUNDS)).toFixed(2)} per message; ${getUsec} µs each inside Redis)`);
    console.log(`  added by lookups: p50 ${dP50 >= 0 ? '+' : ''}${dP50.toFixed(2)} ms, p99 ${dP99 >= 0 ? '+' : ''}${dP99.toFixed(2)} ms (target: p99 ≤ +1 ms) → ${dP99 <= 1 ? 'within target' : 'OVER TARGET'}`);
  } finally {
    for (const p of procs.reverse()) await stop(p);
    await sink.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch(async (err) => {
  console.error(err);
  for (const c of children) c.kill('SIGKILL');
  process.exit(1);
});
