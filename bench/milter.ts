// Benchmark: the SMTP latency the milter adds, against Postfix without a filter and with the after-queue filter.
// Three private Postfix instances in turn (spec/helpers/postfix.ts), each delivering to smtp-sink:
//   none        Postfix alone (content_filter emptied): the baseline a client sees
//   milter      deploy/milter/main.cf.fragment + `calendar-link-filter milter`: the client waits for it
//   milter-unix the same through a Unix socket (no-reply steps negotiated, no TCP delayed ACKs)
//   after-queue deploy/postfix/after-queue + `calendar-link-filter serve`: the client does not wait,
//               the queue does (reported as the time until Postfix's queue is empty again)
// Mail: a 12 KB plain message (accepted at end of headers) and the 12 KB Exchange meeting request
// (full rewrite), at concurrency 1, 10 and 50 over persistent SMTP connections.
// Usage (root, postfix installed): node --import tsx bench/milter.ts [--messages N] [--only plain|meeting] [--modes none,milter,milter-unix,after-queue]
// Prints figures; not a test. Every process and Postfix instance it starts is stopped.

import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import { freePort } from '../spec/helpers/filter-process.js';
import { plainMessage, quantile, sendLoad } from './harness.js';
import { answers } from '../spec/helpers/milter-process.js';
import { startPostfix, type PostfixInstance } from '../spec/helpers/postfix.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const opt = (name: string, def: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] ? args[i + 1]! : def;
};
const MESSAGES = Number(opt('messages', '600'));
const ONLY = opt('only', '');
const CONCURRENCY = [1, 10, 50];

const children = new Set<ChildProcess>();
process.on('exit', () => { for (const c of children) c.kill('SIGKILL'); });

function start(argv: string[]): ChildProcess {
  const child = spawn(argv[0]!, argv.slice(1), { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] });
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

async function waitFor(what: string, probe: () => Promise<boolean>, ms = 20_000): Promise<void> {
  const until = Date.now() + ms;
  while (!(await probe())) {
    if (Date.now() > until) throw new Error(`${what} did not come up`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const smtpGreets = (port: number) => new Promise<boolean>((resolve) => {
  const c = new SMTPConnection({ host: '127.0.0.1', port, ignoreTLS: true, logger: false });
  c.once('error', () => resolve(false));
  c.connect(() => { c.quit(); resolve(true); });
});

const CLI = [process.execPath, '--import', 'tsx', 'bin/calendar-link-filter.ts'];

interface Figures { rate: number; p50: number; p99: number; failed: number; drainS: number }

/** N messages over `concurrency` persistent connections; latency is MAIL FROM to the reply to ".". */
async function load(postfix: PostfixInstance, raw: Buffer, total: number, concurrency: number): Promise<Figures> {
  const t0 = Date.now();
  const { lat, secs, failed } = await sendLoad(postfix.smtpPort, raw, { total, concurrency, from: 'ada@example.org', to: () => 'bob@example.net' });
  // the after-queue filter works after the client is done: count until the queue is empty again
  await waitFor('an empty queue', async () => (await postfix.queueIds()).length === 0, 300_000);
  const drainS = (Date.now() - t0) / 1000;
  lat.sort((a, b) => a - b);
  return { rate: total / secs, p50: quantile(lat, 0.5), p99: quantile(lat, 0.99), failed, drainS };
}

type Mode = 'none' | 'milter' | 'milter-unix' | 'after-queue';

async function withMode<T>(mode: Mode, sinkPort: number, fn: (p: PostfixInstance) => Promise<T>): Promise<T> {
  const port = await freePort();
  const dir = await mkdtemp(join(tmpdir(), 'calfilter-bench-'));
  await chmod(dir, 0o755); // Postfix's smtpd (user postfix) must reach the socket
  const sock = join(dir, 'milter.sock');
  const postfix = await startPostfix(mode === 'milter'
    ? { filterPort: 0, sinkPort, milterPort: port }
    : mode === 'milter-unix'
      ? { filterPort: 0, sinkPort, milterPort: 0, main: { smtpd_milters: `{ unix:${sock}, default_action=tempfail, protocol=6 }` } }
      : { filterPort: port, sinkPort, ...(mode === 'none' ? { main: { content_filter: '' } } : {}) });
  let child: ChildProcess | null = null;
  try {
    if (mode === 'milter' || mode === 'milter-unix') {
      const listen = mode === 'milter' ? `127.0.0.1:${port}` : `unix:${sock}`;
      child = start([...CLI, 'milter', '--listen', listen, '--milter-socket-mode', '0666', '--web-server', 'cal.example.org', '--log-level', 'warn']);
      await waitFor('the milter', () => answers(mode === 'milter' ? port : sock));
    } else if (mode === 'after-queue') {
      child = start([...CLI, 'serve', '--listen', `127.0.0.1:${port}`, '--next-hop', `smtp://127.0.0.1:${postfix.reinjectPort}`, '--web-server', 'cal.example.org', '--log-level', 'warn']);
      await waitFor('the filter', () => smtpGreets(port));
    }
    await waitFor('Postfix', () => smtpGreets(postfix.smtpPort));
    return await fn(postfix);
  } finally {
    if (child) await stop(child);
    await postfix.stop();
    await rm(dir, { recursive: true, force: true });
  }
}


const row = (name: string, f: Figures, base?: Figures) =>
  `  ${name.padEnd(12)} ${f.rate.toFixed(0).padStart(5)} msg/s accepted  p50 ${f.p50.toFixed(1).padStart(6)} ms  p99 ${f.p99.toFixed(1).padStart(6)} ms` +
  `  queue empty after ${f.drainS.toFixed(1).padStart(5)} s${f.failed ? `  FAILED ${f.failed}` : ''}` +
  (base ? `  | adds p50 ${(f.p50 - base.p50).toFixed(1).padStart(5)} ms, p99 ${(f.p99 - base.p99).toFixed(1).padStart(6)} ms` : '');

async function main() {
  if (process.getuid?.() !== 0) throw new Error('run as root: private Postfix instances need it');
  const sinkPort = await freePort();
  const sink = existsSync('/usr/sbin/smtp-sink')
    ? start(['/usr/sbin/smtp-sink', '-u', 'nobody', `127.0.0.1:${sinkPort}`, '1024'])
    : null;
  if (!sink) throw new Error('smtp-sink (package postfix) is needed');
  await waitFor('smtp-sink', () => smtpGreets(sinkPort));
  const cases: Array<[string, Buffer]> = [
    ['plain', plainMessage()],
    ['meeting', readFileSync(join(ROOT, 'fixtures/mail/exchange-12k.eml'))],
  ];
  console.log(`${MESSAGES} messages per run (${Math.ceil(MESSAGES / 3)} at concurrency 1); Postfix ${process.env.npm_package_version ?? ''}on this machine, smtp-sink behind it`);
  const results = new Map<string, Figures>();
  for (const mode of opt('modes', 'none,milter,milter-unix,after-queue').split(',') as Mode[]) {
    await withMode(mode, sinkPort, async (postfix) => {
      for (const [name, raw] of cases) {
        if (ONLY && name !== ONLY) continue;
        await load(postfix, raw, 50, 10); // warm-up
        for (const c of CONCURRENCY) results.set(`${mode}/${name}/${c}`, await load(postfix, raw, c === 1 ? Math.ceil(MESSAGES / 3) : MESSAGES, c));
      }
    });
  }
  for (const [name, raw] of cases) {
    if (ONLY && name !== ONLY) continue;
    console.log(`\n${name} ${(raw.length / 1024).toFixed(0)} KB`);
    for (const c of CONCURRENCY) {
      console.log(` concurrency ${c}`);
      const base = results.get(`none/${name}/${c}`);
      for (const [mode, label] of [['none', 'no filter'], ['milter', 'milter tcp'], ['milter-unix', 'milter unix'], ['after-queue', 'after-queue']] as const) {
        const f = results.get(`${mode}/${name}/${c}`);
        if (f) console.log(row(label, f, mode === 'none' ? undefined : base));
      }
    }
  }
  await stop(sink);
}

main().catch(async (err) => {
  console.error(err);
  for (const c of children) c.kill('SIGKILL');
  process.exit(1);
});
