// The status listener (`--http HOST:PORT`): GET /healthz (JSON) and GET /metrics (Prometheus text).
// In: the `http` and `http_allow_remote` settings, a probe per dependency (next hop, override store)
// and the metrics. Out: /healthz 200 when every probe passed, 503 naming those that failed (or
// "stopping" once SIGTERM arrived); /metrics the metrics text; 404/405 for anything else.
// Fails: a non-loopback address without http_allow_remote is a ConfigError at start; a port that
// cannot be bound rejects. A probe never hangs a request longer than its timeout.

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect } from 'node:net';
import { registerConfigKeys } from './config.js';
import type { LogFn } from './log.js';
import { isLoopbackAddress } from './net-allow.js';

registerConfigKeys({
  http: {
    kind: 'string',
    default: '',
    check: (v) => (/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/.test(v) ? null : 'expected HOST:PORT'),
    doc: 'health and metrics listener HOST:PORT (GET /healthz, GET /metrics); empty: off; loopback only unless http_allow_remote',
  },
  http_allow_remote: {
    kind: 'bool',
    default: false,
    doc: 'let `http` bind a non-loopback address (its endpoints have no authentication: firewall it)',
  },
});

/** One dependency: run() resolves when it is usable and rejects with the reason otherwise. */
export interface Probe {
  name: string;
  /** What was probed, safe to show (no passwords). */
  target: string;
  run(): Promise<void>;
}

export interface CheckResult {
  ok: boolean;
  target: string;
  ms: number;
  error?: string;
}

export interface StatusServer {
  port: number;
  host: string;
  /** /healthz answers 503 "stopping" from now on (the filter is draining). */
  stopping(): void;
  close(): Promise<void>;
}

export interface StatusOptions {
  host: string;
  port: number;
  probes: Probe[];
  metrics: { text(): Promise<string>; contentType: string };
  log: LogFn;
}

/** HOST:PORT of the `http` setting; refuses a remote address unless it was allowed on purpose. */
export function parseHttpAddress(value: string, allowRemote: boolean): { host: string; port: number } {
  const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(value);
  if (!m || Number(m[2]) > 65535) throw new Error(`bad value for http: ${JSON.stringify(value)}: expected HOST:PORT`);
  const host = m[1]!;
  if (!allowRemote && !isLoopbackAddress(host)) {
    throw new Error(`http ${value} is not a loopback address: /healthz and /metrics have no authentication, and /healthz makes the filter connect to its next hop; bind 127.0.0.1, or set http_allow_remote=true and firewall the port`);
  }
  return { host, port: Number(m[2]) };
}

/**
 * The next hop is usable when it greets with 220 within `timeoutMs`: the same first step as a relay.
 * The probe then says QUIT, so Postfix logs a clean connect/disconnect rather than a lost connection.
 */
export function greetingProbe(host: string, port: number, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port });
    let buf = '';
    let settled = false;
    const timer = setTimeout(() => done(new Error(`no greeting within ${timeoutMs} ms`)), timeoutMs);
    const done = (err: Error | null) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err) {
        socket.destroy();
        reject(err);
      } else {
        socket.end('QUIT\r\n');
        socket.setTimeout(1000, () => socket.destroy());
        resolve();
      }
    };
    socket.setNoDelay(true);
    socket.on('error', (e: NodeJS.ErrnoException) => done(new Error(e.code ?? e.message)));
    socket.on('close', () => done(new Error('connection closed before a greeting')));
    socket.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      // the last line of a (possibly multi-line) greeting: "220 text" or a refusal such as "554 …"
      const line = buf.split('\r\n').find((l) => /^\d{3}(?: |$)/.test(l));
      if (line === undefined) {
        if (buf.length > 4096) done(new Error('greeting too long'));
        return;
      }
      done(line.startsWith('220') ? null : new Error(`greeting: ${line.slice(0, 200)}`));
    });
  });
}

export async function startStatusServer(opts: StatusOptions): Promise<StatusServer> {
  let stopping = false;
  let running: Promise<Record<string, CheckResult>> | null = null;
  let lastFailed: string | null = null;

  // Concurrent /healthz requests share one round of probes: a poller cannot multiply connections.
  const check = (): Promise<Record<string, CheckResult>> => {
    running ??= Promise.all(opts.probes.map(async (p) => {
      const started = performance.now();
      const res: CheckResult = { ok: true, target: p.target, ms: 0 };
      try {
        await p.run();
      } catch (e) {
        res.ok = false;
        res.error = (e as Error).message;
      }
      res.ms = Math.round(performance.now() - started);
      return [p.name, res] as const;
    })).then((entries) => Object.fromEntries(entries)).finally(() => { running = null; });
    return running;
  };

  const healthz = async (res: ServerResponse) => {
    const checks = await check();
    const failed = Object.entries(checks).filter(([, r]) => !r.ok).map(([n]) => n);
    if (stopping) failed.unshift('stopping');
    const key = failed.join(',');
    if (key !== lastFailed) {
      // one log line per change, not per poll
      opts.log('health.changed', { level: failed.length ? 'warn' : 'info', status: failed.length ? 'fail' : 'ok', failed, checks });
      lastFailed = key;
    }
    send(res, failed.length ? 503 : 200, 'application/json', JSON.stringify({ status: failed.length ? 'fail' : 'ok', failed, checks }) + '\n');
  };

  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('Allow', 'GET, HEAD');
      return send(res, 405, 'text/plain', 'method not allowed\n');
    }
    if (path === '/healthz') {
      healthz(res).catch((e: Error) => send(res, 500, 'text/plain', `${e.message}\n`));
    } else if (path === '/metrics') {
      opts.metrics.text().then(
        (text) => send(res, 200, opts.metrics.contentType, text),
        (e: Error) => send(res, 500, 'text/plain', `${e.message}\n`),
      );
    } else {
      send(res, 404, 'text/plain', 'not found: try /healthz or /metrics\n');
    }
  });
  // A scraper that opens a connection and says nothing must not hold a socket for minutes.
  server.requestTimeout = 10_000;
  server.headersTimeout = 5_000;
  server.keepAliveTimeout = 5_000;
  server.on('clientError', (_err, socket) => socket.destroy());

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', (e: Error) => opts.log('http.error', { error: e.message }));
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : opts.port;

  return {
    port,
    host: opts.host,
    stopping: () => { stopping = true; },
    close: () => new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }),
  };
}

function send(res: ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, { 'Content-Type': type, 'Cache-Control': 'no-store', 'Content-Length': Buffer.byteLength(body) });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}
