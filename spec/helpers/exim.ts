// Test peer: Exim 4 with a configuration of our own, in one fresh temporary directory (spool, logs).
// In: the router and transport sections (a recipe of deploy/exim), the local domains. Out: submit a
// message the way a local program does (exim -odf: delivered in the foreground before it returns),
// force a queue run, read the queue and the main log. No daemon is started.
// Fails: a submission that Exim refuses rejects with its output; stop() ends any Exim process
// still running with this configuration (found by its config path) and removes the directory.
//
// Where Exim comes from: Debian's exim4 packages conflict with postfix, so CI does not install
// them. .ci/run unpacks the binary of exim4-daemon-light (dpkg-deb -x, not installed) into
// /opt/calfilter-exim and creates the Debian-exim user that binary is built for. EXIM_BIN
// overrides the path; a real /usr/sbin/exim4 works too. exim_path in our configuration makes
// Exim re-execute that same binary for deliveries. As root with -C, Exim logs "exim user lost
// privilege for using -C option" and runs as Debian-exim: enough for local deliveries as that user.

import { execFile, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { chmod, chown, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const EXIM_USER = 'Debian-exim';
const CANDIDATES = [process.env.EXIM_BIN, '/opt/calfilter-exim/usr/sbin/exim4', '/usr/sbin/exim4'];
const TIMEOUT = 60_000;

const LIVE = new Set<string>();
process.on('exit', () => {
  for (const dir of LIVE) {
    killEximsOf(dir);
    rmSync(dir, { recursive: true, force: true });
  }
});

export function eximBinary(): string | undefined {
  return CANDIDATES.find((p): p is string => !!p && existsSync(p));
}

/** Why the Exim test cannot run here, or undefined. Under CI a missing Exim must fail, not skip. */
export function eximSkipReason(): string | undefined {
  if (process.env.CI) return undefined;
  const bin = eximBinary();
  if (!bin) return 'no exim4 binary (unpack exim4-daemon-light into /opt/calfilter-exim as .ci/run does, or set EXIM_BIN)';
  if (process.getuid?.() !== 0) return 'Exim with a private configuration must be run as root';
  const v = spawnSync(bin, ['-C', '/dev/null', '-bV'], { encoding: 'utf8' });
  if (v.status !== 0) return `exim4 does not run here: ${(v.stderr || v.stdout).trim()}`;
  return undefined;
}

export interface SubmitResult { code: number | null; output: string }

export interface Exim {
  dir: string;
  configFile: string;
  /** Submit like a local program (exim -odf -oi -f FROM TO…): delivery runs before this returns. */
  submit(from: string, to: string[], raw: Buffer): Promise<SubmitResult>;
  /** exim -qff: a queue run that ignores retry times and frozen state. */
  runQueue(): Promise<void>;
  /** exim -bpc: messages in the queue. */
  queueCount(): Promise<number>;
  /** The main log so far. */
  log(): Promise<string>;
  stop(): Promise<void>;
}

export interface EximOptions {
  /** Router definitions for "begin routers" (e.g. deploy/exim/router.conf.fragment). */
  routers: string;
  /** Transport definitions for "begin transports". */
  transports: string;
  localDomains: string[];
}

export async function startExim(opts: EximOptions): Promise<Exim> {
  const bin = eximBinary();
  if (!bin) throw new Error('no exim4 binary: unpack exim4-daemon-light into /opt/calfilter-exim as .ci/run does, or set EXIM_BIN');
  const user = spawnSync('id', ['-u', EXIM_USER], { encoding: 'utf8' });
  const group = spawnSync('id', ['-g', EXIM_USER], { encoding: 'utf8' });
  if (user.status !== 0) throw new Error(`no user ${EXIM_USER} (create it as .ci/run does)`);
  const [uid, gid] = [Number(user.stdout.trim()), Number(group.stdout.trim())];

  const dir = await mkdtemp(join(tmpdir(), 'calfilter-exim-'));
  LIVE.add(dir);
  await chmod(dir, 0o755);
  const spool = join(dir, 'spool');
  const logs = join(dir, 'log');
  for (const d of [spool, logs]) {
    await mkdir(d);
    await chown(d, uid, gid);
  }
  const conf = join(dir, 'exim.conf');
  await writeFile(conf, `# Private test configuration written by spec/helpers/exim.ts; the recipe's sections follow.
exim_path = ${bin}
primary_hostname = exim.calfilter.test
spool_directory = ${spool}
log_file_path = ${logs}/%slog
domainlist local_domains = ${opts.localDomains.join(' : ')}
never_users = root
keep_environment =
host_lookup =
# Nothing may leave this machine: no daemon, no remote transport.

begin routers

${opts.routers}

begin transports

${opts.transports}

begin retry

*  *  F,1h,1m
`, { mode: 0o644 });

  const exim = (args: string[], input?: Buffer) => new Promise<SubmitResult>((resolve) => {
    const child = execFile(bin, ['-C', conf, ...args], { timeout: TIMEOUT, encoding: 'utf8' }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : null) : 0;
      resolve({ code, output: `${stdout}${stderr}` });
    });
    // exim may exit before it read its input (-qff reads none): the exit code says what happened,
    // an EPIPE on its stdin must not become an uncaught exception in the test process
    child.stdin?.on('error', () => undefined);
    child.stdin?.end(input ?? Buffer.alloc(0));
  });
  const log = () => readFile(join(logs, 'mainlog'), 'utf8').catch(() => '');

  return {
    dir,
    configFile: conf,
    async submit(from, to, raw) {
      const r = await exim(['-odf', '-oi', '-f', from, ...to], raw);
      if (r.code !== 0) throw new Error(`exim refused the message (exit ${r.code}): ${r.output}\n--- mainlog ---\n${await log()}`);
      return r;
    },
    async runQueue() {
      const r = await exim(['-qff']);
      if (r.code !== 0) throw new Error(`exim -qff failed (exit ${r.code}): ${r.output}`);
    },
    async queueCount() {
      const r = await exim(['-bpc']);
      return Number(r.output.trim());
    },
    log,
    async stop() {
      if (!LIVE.delete(dir)) return;
      killEximsOf(dir);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** SIGKILL every process whose command line names this directory's configuration (by pid). */
function killEximsOf(dir: string): void {
  const conf = join(dir, 'exim.conf');
  const ps = spawnSync('ps', ['-eo', 'pid=,args='], { encoding: 'utf8' });
  for (const line of ps.stdout?.split('\n') ?? []) {
    const m = /^\s*(\d+)\s+(.*)$/.exec(line);
    if (m && m[2]!.includes(`-C ${conf}`) && Number(m[1]) !== process.pid) {
      try { process.kill(Number(m[1]), 'SIGKILL'); } catch { /* gone */ }
    }
  }
}

/** A recipe file of deploy/exim without its comment lines, its paths replaced (each found exactly once). */
export function eximRecipe(name: string, replace: Array<[string, string]>): string {
  // Exim comments are whole lines starting with "#"; the recipe's comments name the paths too.
  let text = readFileSync(new URL(`../../deploy/exim/${name}`, import.meta.url), 'utf8')
    .split('\n').filter((line) => !/^\s*#/.test(line)).join('\n');
  for (const [from, to] of replace) {
    const n = text.split(from).length - 1;
    if (n !== 1) throw new Error(`deploy/exim/${name}: expected "${from}" once outside comments, found it ${n} times`);
    text = text.replace(from, () => to);
  }
  return text;
}
