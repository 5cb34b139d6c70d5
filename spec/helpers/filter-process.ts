// Test peer: our filter CLI as a child process, started the way an administrator starts it.
// In: CLI arguments, which must include `--listen 127.0.0.1:PORT`. Out: a handle once PORT greets
// with 220; the child's stdout (JSON log lines) and stderr, kept line by line.
// Fails: a child that exits or does not greet in time rejects the start, with its stderr; stop()
// sends SIGTERM and then SIGKILL after a bound; every child still alive dies with the test process.

import { spawn, type ChildProcess } from 'node:child_process';
import { connect, createServer } from 'node:net';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
// The TypeScript source through tsx, not dist/: `npm test` runs on a fresh clone without a
// build, and a stale dist/ would test yesterday's code.
const DEFAULT_ENTRY = 'bin/calendar-link-filter.ts';

const LIVE = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of LIVE) try { child.kill('SIGKILL'); } catch { /* already gone */ }
});

/** A loopback port nobody listens on right now (bound to port 0, then released). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

export interface FilterExit { code: number | null; signal: NodeJS.Signals | null }

export interface FilterProcess {
  port: number;
  pid: number;
  /** Resolves when the child has exited (never rejects). */
  exited: Promise<FilterExit>;
  /** SIGTERM, then SIGKILL if it is still there after `graceMs` (default 10 s). */
  stop(graceMs?: number): Promise<FilterExit>;
  /** Send any signal (SIGKILL for a crash, SIGSTOP for a hang); await `exited` if it should end. */
  kill(signal: NodeJS.Signals): void;
  stdoutLines(): string[];
  stderrLines(): string[];
}

export interface FilterOptions {
  /** Script to run, relative to the repository root; `.ts` runs through tsx. */
  entry?: string;
  env?: NodeJS.ProcessEnv;
  /** How long to wait for the 220 greeting (default 15 s: tsx compiles on first start). */
  readyTimeoutMs?: number;
}

export async function startFilter(args: string[], opts: FilterOptions = {}): Promise<FilterProcess> {
  const { host, port } = listenAddress(args);
  const entry = opts.entry ?? DEFAULT_ENTRY;
  const node = entry.endsWith('.ts') ? ['--import', 'tsx', entry] : [entry];
  const child = spawn(process.execPath, [...node, ...args], {
    cwd: ROOT,
    env: { ...process.env, ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  LIVE.add(child);
  const out = lineCollector(child.stdout!);
  const err = lineCollector(child.stderr!);
  const exited = new Promise<FilterExit>((resolve) => {
    child.once('exit', (code, signal) => { LIVE.delete(child); resolve({ code, signal }); });
    child.once('error', (e) => { err.lines.push(String(e)); LIVE.delete(child); resolve({ code: null, signal: null }); });
  });

  const kill = (signal: NodeJS.Signals) => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
  };
  const stop = async (graceMs = 10_000) => {
    kill('SIGCONT'); // a stopped process cannot handle SIGTERM
    kill('SIGTERM');
    const timer = setTimeout(() => kill('SIGKILL'), graceMs);
    const result = await exited;
    clearTimeout(timer);
    return result;
  };

  const gone = () => child.exitCode !== null || child.signalCode !== null;
  try {
    await waitForGreeting(host, port, opts.readyTimeoutMs ?? 15_000, gone);
    if (gone()) throw new Error('filter exited right after something greeted on its port');
  } catch (e) {
    await stop(2_000);
    const tail = err.lines.slice(-20).join('\n');
    throw new Error(`${(e as Error).message}\n  command: node ${[...node, ...args].join(' ')}\n  stderr:\n${tail}`);
  }
  return {
    port,
    pid: child.pid!,
    exited,
    stop,
    kill,
    stdoutLines: () => [...out.lines],
    stderrLines: () => [...err.lines],
  };
}

/** `--listen HOST:PORT` or `--listen=HOST:PORT`; a test must never rely on the default 10025. */
function listenAddress(args: string[]): { host: string; port: number } {
  const i = args.findIndex((a) => a === '--listen' || a.startsWith('--listen='));
  const flag = args[i] ?? '';
  const value = flag.startsWith('--listen=') ? flag.slice('--listen='.length) : args[i + 1];
  const m = /^\[?([^\]]+)\]?:(\d+)$/.exec(i < 0 ? '' : value ?? '');
  if (!m?.[1] || Number(m[2]) === 0) throw new Error(`startFilter needs --listen HOST:PORT with a real port, got ${value}`);
  return { host: m[1], port: Number(m[2]) };
}

function lineCollector(stream: NodeJS.ReadableStream): { lines: string[] } {
  const state = { lines: [] as string[], rest: '' };
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    const parts = (state.rest + chunk).split('\n');
    state.rest = parts.pop() ?? '';
    state.lines.push(...parts);
  });
  stream.on('end', () => { if (state.rest) state.lines.push(state.rest); });
  return state;
}

/** Connect until the server sends its 220 banner; then QUIT, so the probe is a clean session. */
async function waitForGreeting(host: string, port: number, timeoutMs: number, gone: () => boolean): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (gone()) throw new Error('filter exited before it listened');
    if (await greets(host, port)) return;
    if (Date.now() > until) throw new Error(`nothing greeted with 220 on ${host}:${port} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function greets(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const done = (ok: boolean) => { socket.destroy(); resolve(ok); };
    socket.setTimeout(2_000, () => done(false));
    socket.once('error', () => done(false));
    socket.once('data', (d) => {
      const ok = d.toString('latin1').startsWith('220');
      if (ok) socket.end('QUIT\r\n', () => done(true));
      else done(false);
    });
  });
}
