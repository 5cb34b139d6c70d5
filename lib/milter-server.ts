// `milter`: the milter listener, one MilterSession per MTA connection, with the built-in hooks loaded.
// In: a checked Config (milter_* keys, web_server, local_domains, redis …) and a logger. Out: a running
// MilterServer on loopback TCP or a Unix socket (mode milter_socket_mode), its counters, and close().
// Fails: a listen address that is not loopback or an absolute socket path, or a hook that cannot start,
// throws ConfigError before anything listens; a socket path held by a live listener rejects. Over
// max_connections a connection is closed at once (the MTA applies its default_action, e.g. 451).

import { chmod, lstat, unlink } from 'node:fs/promises';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { closeApp, createApp, type FilterApp } from './app.js';
import { ConfigError, type Config } from './config.js';
import type { LogFn } from './log.js';
import { milterSettings, type ListenAddress, type MilterSettings } from './milter-config.js';
import type { PolicyApplied } from './milter-policy.js';
import { MilterSession, type MessageResult } from './milter-session.js';

export interface MilterStats {
  connections: number;
  messages: Record<MessageResult, number>;
  /** Which one-body link policy applied, per message that resolved links. */
  link_policy: Record<PolicyApplied, number>;
}

export interface MilterServer {
  /** "127.0.0.1:10027" or "unix:/path". */
  address: string;
  /** The TCP port (for listen port 0), or null on a Unix socket. */
  port: number | null;
  app: FilterApp;
  connections(): number;
  stats(): MilterStats;
  /** Stop listening; ends in flight finish (up to shutdown_timeout), then every connection is closed. */
  close(): Promise<void>;
}

export async function startMilter(config: Config, log: LogFn): Promise<MilterServer> {
  const settings = milterSettings(config);
  let app: FilterApp;
  try {
    app = await createApp(config, log);
  } catch (e) {
    throw new ConfigError((e as Error).message);
  }
  try {
    return await listen(config, settings, app, log);
  } catch (e) {
    await closeApp(app);
    throw e;
  }
}

async function listen(config: Config, settings: MilterSettings, app: FilterApp, log: LogFn): Promise<MilterServer> {
  const sessions = new Map<Socket, MilterSession>();
  const stats: MilterStats = {
    connections: 0,
    messages: { changed: 0, unchanged: 0, early: 0, tempfail: 0 },
    link_policy: { uniform: 0, neutral: 0, none: 0, tempfail: 0 },
  };
  let seq = 0;
  const nextId = () => `${Date.now().toString(36)}.m${(++seq).toString(36)}`;

  const server: Server = createServer((socket) => {
    const peer = socket.remoteAddress ? `${socket.remoteAddress}:${socket.remotePort}` : 'unix';
    if (sessions.size >= config.max_connections) {
      log('milter.refused', { client: peer, reason: 'max_connections', max_connections: config.max_connections });
      socket.destroy();
      return;
    }
    stats.connections++;
    socket.setNoDelay(true);
    socket.setTimeout(config.socket_timeout * 1000, () => {
      log('milter.timeout', { client: peer, idle_s: config.socket_timeout });
      socket.destroy();
    });
    const session = new MilterSession(
      {
        write: (frame) => new Promise<void>((resolve) => {
          if (socket.destroyed || !socket.writable) return resolve();
          // one write per frame: miltertest reads a packet header with a single read()
          if (socket.write(frame)) return resolve();
          const done = () => { socket.off('drain', done); socket.off('close', done); resolve(); };
          socket.once('drain', done);
          socket.once('close', done);
        }),
        end: () => socket.end(),
        destroy: () => socket.destroy(),
      },
      {
        config, settings, log, hooks: app.hooks, nextId,
        count: (result, policy) => {
          stats.messages[result]++;
          if (policy) stats.link_policy[policy]++;
        },
      },
      peer,
    );
    sessions.set(socket, session);
    log('milter.connect', { client: peer });
    socket.on('data', (chunk: Buffer) => session.push(chunk));
    socket.on('error', () => undefined); // resets are the MTA's business; 'close' follows
    socket.on('close', () => {
      sessions.delete(socket);
      session.closedByPeer();
    });
  });
  server.on('error', (err) => log('milter.error', { error: err.message }));

  const where = settings.listen;
  if (where.kind === 'unix') await clearStaleSocket(where.path);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    const ready = () => { server.off('error', reject); resolve(); };
    if (where.kind === 'unix') {
      // made with the configured mode, not the process umask's: with a chmod afterwards alone, any
      // local user could connect in between. listen() binds synchronously, so the umask is ours only
      // for that call; the chmod below still sets the exact mode.
      const umask = process.umask(~settings.socketMode & 0o777);
      try {
        server.listen(where.path, ready);
      } finally {
        process.umask(umask);
      }
    } else server.listen(where.port, where.host, ready);
  });
  if (where.kind === 'unix') await chmod(where.path, settings.socketMode);
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : null;
  const address = where.kind === 'unix' ? `unix:${where.path}` : `${where.host.includes(':') ? `[${where.host}]` : where.host}:${port}`;

  let closing: Promise<void> | null = null;
  const close = () => (closing ??= (async () => {
    const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
    // idle connections go now; an end of message in progress gets shutdown_timeout to finish
    const until = Date.now() + config.shutdown_timeout * 1000;
    for (;;) {
      for (const [socket, s] of sessions) if (!s.busy) socket.destroy();
      if (sessions.size === 0 || Date.now() >= until) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    for (const socket of sessions.keys()) socket.destroy();
    await stopped;
    await closeApp(app);
  })());

  return {
    address, port, app,
    connections: () => sessions.size,
    stats: () => structuredClone(stats),
    close,
  };
}

/** A socket file left by a process that is gone is removed; one that still answers is an error. */
async function clearStaleSocket(path: string): Promise<void> {
  const st = await lstat(path).catch(() => null);
  if (!st) return;
  if (!st.isSocket()) throw new ConfigError(`milter_listen: ${path} exists and is not a socket`);
  const alive = await new Promise<boolean>((resolve) => {
    const c = connect(path);
    const done = (v: boolean) => { c.destroy(); resolve(v); };
    c.setTimeout(1000, () => done(true));
    c.once('connect', () => done(true));
    c.once('error', () => done(false));
  });
  if (alive) throw new Error(`milter_listen: another process listens on ${path}`);
  await unlink(path);
}

export type { ListenAddress };
