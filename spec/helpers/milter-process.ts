// Test peer: `calendar-link-filter milter` as a child process, started the way an administrator starts it.
// In: CLI arguments, which must include `--listen 127.0.0.1:PORT` or `--listen unix:/path`. Out: a handle
// once the milter answers an option negotiation (a milter sends no greeting, so startFilter's wait for
// 220 does not apply); the child's JSON log lines. Fails: a child that exits or does not answer in
// time rejects the start with its stderr; stop() is SIGTERM then SIGKILL; every child dies with the tests.

import { spawn, type ChildProcess } from 'node:child_process';
import { connect } from 'node:net';
import { fileURLToPath } from 'node:url';
import { decodeReply, encodeCommand, FrameDecoder } from '../../lib/milter-codec.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const LIVE = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of LIVE) try { child.kill('SIGKILL'); } catch { /* already gone */ }
});

export interface MilterProcess {
  pid: number;
  /** TCP port, or the socket path. */
  where: number | string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stop(graceMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  kill(signal: NodeJS.Signals): void;
  /** Parsed JSON log lines so far. */
  logs(): Array<Record<string, unknown>>;
  /** Resolves with the first log line matching `pred` (now or later); rejects after timeoutMs. */
  waitForLog(pred: (l: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  stderr(): string;
}

export async function startMilterProcess(args: string[], opts: { readyTimeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<MilterProcess> {
  const i = args.indexOf('--listen');
  const value = i >= 0 ? args[i + 1] ?? '' : '';
  const unix = /^unix:(.+)$/.exec(value);
  const tcp = /^127\.0\.0\.1:(\d+)$/.exec(value);
  if (!unix && (!tcp || Number(tcp[1]) === 0)) throw new Error(`startMilterProcess needs --listen 127.0.0.1:PORT (real port) or unix:/path, got ${value}`);
  const where: number | string = unix ? unix[1]! : Number(tcp![1]);
  const child = spawn(process.execPath, ['--import', 'tsx', 'bin/calendar-link-filter.ts', 'milter', ...args], {
    cwd: ROOT, env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  LIVE.add(child);
  const lines: Array<Record<string, unknown>> = [];
  const waiters = new Set<() => void>();
  let rest = '';
  let err = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    const parts = (rest + chunk).split('\n');
    rest = parts.pop() ?? '';
    for (const p of parts) {
      try { lines.push(JSON.parse(p) as Record<string, unknown>); } catch { lines.push({ event: 'unparsed', text: p }); }
    }
    for (const w of waiters) w();
  });
  child.stderr!.setEncoding('utf8').on('data', (c: string) => { err += c; });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => { LIVE.delete(child); resolve({ code, signal }); });
  });
  const gone = () => child.exitCode !== null || child.signalCode !== null;
  const kill = (signal: NodeJS.Signals) => { if (!gone()) child.kill(signal); };
  const stop = async (graceMs = 10_000) => {
    kill('SIGCONT');
    kill('SIGTERM');
    const timer = setTimeout(() => kill('SIGKILL'), graceMs);
    const r = await exited;
    clearTimeout(timer);
    return r;
  };
  const until = Date.now() + (opts.readyTimeoutMs ?? 15_000);
  for (;;) {
    if (gone()) throw new Error(`the milter exited before it listened:\n${err}`);
    if (await answers(where)) break;
    if (Date.now() > until) {
      await stop(2000);
      throw new Error(`the milter did not answer an option negotiation on ${value} in time:\n${err}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    pid: child.pid!, where, exited, stop, kill,
    logs: () => [...lines],
    stderr: () => err,
    waitForLog(pred, timeoutMs = 10_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const hit = lines.find(pred);
          if (!hit) return;
          clearTimeout(timer);
          waiters.delete(check);
          resolve(hit);
        };
        const timer = setTimeout(() => { waiters.delete(check); reject(new Error('no matching log line in time')); }, timeoutMs);
        waiters.add(check);
        check();
      });
    },
  };
}

/** One option negotiation, then QUIT: the milter is up and speaks the protocol. */
export function answers(where: number | string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = typeof where === 'number' ? connect(where, '127.0.0.1') : connect(where);
    const decoder = new FrameDecoder();
    const done = (ok: boolean) => { s.destroy(); resolve(ok); };
    s.setTimeout(2000, () => done(false));
    s.once('error', () => done(false));
    s.once('connect', () => s.write(encodeCommand({ type: 'optneg', version: 6, actions: 0x1ff, protocol: 0x1fffff })));
    s.on('data', (d: Buffer) => {
      try {
        const f = decoder.push(d)[0];
        if (!f) return;
        const ok = decodeReply(f).type === 'optneg';
        if (ok) s.write(encodeCommand({ type: 'quit' }));
        done(ok);
      } catch {
        done(false);
      }
    });
  });
}
