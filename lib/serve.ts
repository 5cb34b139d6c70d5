// `serve`: the listener wired to the pipeline, with the built-in hooks loaded, and (with `http`) the
// status listener with /healthz and /metrics beside it.
// In: a checked Config and a logger. Out: a running Listener (and the app, for its hooks); closing
// the listener also turns /healthz to 503 "stopping" and then closes the status listener.
// Fails: a hook that cannot start (bad template, bad secret, unknown name), a non-loopback `listen`
// with a loopback-only allowed_clients, or a non-loopback `http` without http_allow_remote throws
// ConfigError before anything listens; a port that cannot be bound rejects with the system error.

import { createApp, closeApp, type FilterApp } from './app.js';
import { ConfigError, type Config } from './config.js';
import { greetingProbe, parseHttpAddress, startStatusServer, type Probe, type StatusServer } from './http-status.js';
import type { LogFn } from './log.js';
import { createMetrics, type Metrics } from './metrics.js';
import { buildAllowList, isLoopbackAddress, isLoopbackNetwork } from './net-allow.js';
import { redact } from './override-config.js';
import { handleTransaction } from './pipeline.js';
import { HopSessions, parseNextHop } from './relay.js';
import { startListener, type Listener } from './server.js';
import { linkResolveState } from '../hooks/link-resolve.js';

/** Bounds of one /healthz probe: a local Postfix greets in milliseconds. */
const HEALTH_TIMEOUT_MS = 2000;
const REDIS_PING_TIMEOUT_MS = 1000;

export interface Served {
  listener: Listener;
  app: FilterApp;
  host: string;
  /** The status listener, when `http` is set. */
  http: StatusServer | null;
  metrics: Metrics | null;
}

export async function startServe(config: Config, log: LogFn): Promise<Served> {
  const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(config.listen);
  if (!m) throw new ConfigError(`bad value for listen: ${JSON.stringify(config.listen)}: expected HOST:PORT`);
  const host = m[1]!;
  checkExposure(host, config, log);
  const hop = parseNextHop(config.next_hop);
  let httpAddr: { host: string; port: number } | null = null;
  try {
    if (config.http) httpAddr = parseHttpAddress(String(config.http), config.http_allow_remote === true);
  } catch (e) {
    throw new ConfigError((e as Error).message);
  }
  let app: FilterApp;
  try {
    app = await createApp(config, log);
  } catch (e) {
    throw new ConfigError((e as Error).message);
  }

  const metrics = httpAddr ? createMetrics() : null;
  // Two outcomes are decided by the listener before the pipeline runs; count them from its log.
  const listenerLog: LogFn = metrics
    ? (event, fields = {}) => {
        if (event === 'message.error') metrics.listenerOutcome('error');
        else if (event === 'message.rejected' && fields.reason === 'size') metrics.listenerOutcome('rejected');
        log(event, fields);
      }
    : log;
  const state = linkResolveState(app);
  if (metrics && state?.store.kind === 'redis') state.cache.observeLookup = (ms, ok) => metrics.redisLookup(ms, ok);

  const sessions = new HopSessions(hop, {
    connectTimeoutMs: config.connect_timeout * 1000,
    socketTimeoutMs: config.next_hop_timeout * 1000,
    idleMs: config.next_hop_idle_time * 1000,
    maxAgeMs: config.next_hop_reuse_time * 1000,
    maxIdle: config.max_connections,
  });
  const deps = { config, log, hooks: app.hooks, hop: sessions, observe: metrics?.observe };
  const started = await startListener(
    {
      host,
      port: Number(m[2]),
      lmtp: config.lmtp,
      allowedClients: config.allowed_clients,
      maxMessageSize: config.max_message_size,
      maxRecipients: config.max_recipients,
      maxConnections: config.max_connections,
      socketTimeoutMs: config.socket_timeout * 1000,
      spool: { memoryLimit: config.spool_memory_limit, dir: config.spool_dir || undefined },
      shutdownTimeoutMs: config.shutdown_timeout * 1000,
    },
    (tx) => handleTransaction(deps, tx),
    listenerLog,
  );
  // after the last transaction, the cached next-hop sessions say QUIT
  const listener: Listener = {
    ...started,
    close: async () => {
      await started.close();
      sessions.close();
    },
  };
  if (!metrics || !httpAddr) return { listener, app, host, http: null, metrics: null };

  metrics.bind({ connections: () => listener.connections(), inFlight: () => listener.inFlight() });
  const probes: Probe[] = [{ name: 'next_hop', target: config.next_hop, run: () => greetingProbe(hop.host, hop.port, HEALTH_TIMEOUT_MS) }];
  if (state?.store.kind === 'redis') {
    const store = state.store;
    probes.push({ name: 'redis', target: redact(String(config.redis)), run: () => store.ping(REDIS_PING_TIMEOUT_MS) });
  }
  let http: StatusServer;
  try {
    http = await startStatusServer({ ...httpAddr, probes, metrics, log });
  } catch (e) {
    await listener.close();
    await closeApp(app);
    throw e;
  }
  log('http.listening', { http: `${http.host}:${http.port}`, paths: ['/healthz', '/metrics'], probes: probes.map((p) => p.name) });
  const served: Listener = {
    ...listener,
    close: async () => {
      http.stopping();
      await listener.close();
      await http.close();
    },
  };
  return { listener: served, app, host, http, metrics };
}

/**
 * Listening beyond loopback only makes sense with clients beyond loopback. A container listening on
 * 0.0.0.0 with the default allow-list would look healthy and refuse every MTA with 554, so that is
 * refused at start. An allow-list that admits the whole Internet makes the reinjection port behind
 * us an open relay: that is allowed (a firewall may stand in front) but logged as a warning.
 */
function checkExposure(host: string, config: Config, log: LogFn): void {
  if (!isLoopbackAddress(host) && config.allowed_clients.every(isLoopbackNetwork)) {
    throw new ConfigError(
      `listen ${config.listen} accepts connections from other hosts, but allowed_clients (${config.allowed_clients.join(',') || 'empty'}) admits only loopback clients, ` +
        `so every remote MTA would be refused: set allowed_clients to the MTA's addresses (CALFILTER_ALLOWED_CLIENTS=172.18.0.0/16 in a container), or listen on 127.0.0.1`,
    );
  }
  const wide = config.allowed_clients.filter(admitsEveryAddress);
  if (wide.length) log('config.wide_allow_list', { allowed_clients: config.allowed_clients, note: `${wide.join(',')} admits every address: anyone who reaches the listener can relay through the next hop` });
}

/** 0.0.0.0/0, but also 0.0.0.0/00, ::/0 or ::ffff:0:0/96: the entry admits every IPv4 or every IPv6 address. */
function admitsEveryAddress(cidr: string): boolean {
  const admits = buildAllowList([cidr]);
  return (admits('0.0.0.0') && admits('255.255.255.255')) || (admits('::') && admits('ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'));
}
