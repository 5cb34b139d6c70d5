// What every benchmark script shares: options, free ports, starting and stopping child processes.
// In: argv (`--name value`), commands to run. Out: ports, child handles, and a wait for an SMTP
// greeting. Fails: a port that never greets rejects; every child still alive dies with this process.

import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import SMTPConnection from 'nodemailer/lib/smtp-connection';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

const args = process.argv.slice(2);
/** `--name value` from the command line, or `def`. */
export const opt = (name: string, def: string): string => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] ? args[i + 1]! : def;
};

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => resolve(typeof a === 'object' && a ? a.port : 0));
    });
  });
}

/** Resolves once an SMTP server greets on `port` (then QUITs). */
export async function waitPort(port: number, ms = 15000): Promise<void> {
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

const children = new Set<ChildProcess>();
process.on('exit', () => { for (const c of children) c.kill('SIGKILL'); });

/** Start a child in the repository root; its stderr shows, its stdout is dropped. */
export function start(cmd: string, argv: string[]): ChildProcess {
  const child = spawn(cmd, argv, { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] });
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

/** SIGTERM, then SIGKILL after 5 s. */
export async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  await new Promise<void>((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
    setTimeout(() => child.kill('SIGKILL'), 5000).unref();
  });
}

/** Kill every child now (on a fatal error). */
export function killAll(): void {
  for (const c of children) c.kill('SIGKILL');
}

export interface LoadRun {
  /** Per-message latency, MAIL FROM to the reply to ".", in ms, in completion order. */
  lat: number[];
  /** Wall time from the first message to the last reply, seconds. */
  secs: number;
  failed: number;
}

/**
 * `total` messages over `concurrency` kept-open client connections (a failed one is reopened).
 * Message k goes from `from` to `to(k)`.
 */
export async function sendLoad(port: number, raw: Buffer, opts: { total: number; concurrency: number; from: string; to: (k: number) => string }): Promise<LoadRun> {
  const lat: number[] = [];
  let next = 0;
  let failed = 0;
  const worker = async () => {
    let conn: SMTPConnection | null = null;
    while (next < opts.total) {
      const k = next++;
      if (!conn) {
        conn = await new Promise<SMTPConnection>((resolve, reject) => {
          const c = new SMTPConnection({ host: '127.0.0.1', port, ignoreTLS: true, logger: false, socketTimeout: 600_000 });
          c.once('error', reject);
          c.connect(() => resolve(c));
        });
      }
      const t0 = process.hrtime.bigint();
      const ok = await new Promise<boolean>((resolve) => {
        conn!.send({ from: opts.from, to: [opts.to(k)] }, raw, (err) => resolve(!err));
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
  await Promise.all(Array.from({ length: opts.concurrency }, worker));
  return { lat, secs: (Date.now() - t0) / 1000, failed };
}

/** The benchmarks' plain message: 12 KB of text/plain that mentions nothing calendar-related. */
export function plainMessage(): Buffer {
  const line = 'The quarterly numbers are attached; nothing here is calendar-related at all.\r\n';
  return Buffer.from(
    'From: Ada <ada@example.org>\r\nTo: Bob <bob@example.net>\r\nSubject: Numbers\r\nDate: Thu, 26 Nov 2026 10:00:00 +0000\r\n' +
      'Message-ID: <bench-plain@example.org>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n' +
      line.repeat(Math.ceil(12000 / line.length)),
  );
}

/** The p-quantile of ascending values (NaN when empty). */
export function quantile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? NaN;
}
