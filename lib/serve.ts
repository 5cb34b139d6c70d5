// `serve`: the listener wired to the pipeline, with the built-in hooks loaded.
// In: a checked Config and a logger. Out: a running Listener (and the app, for its hooks).
// Fails: a hook that cannot start (bad template, bad secret, unknown name) throws ConfigError;
// a port that cannot be bound rejects with the system error.

import { createApp, type FilterApp } from './app.js';
import { ConfigError, type Config } from './config.js';
import type { LogFn } from './log.js';
import { handleTransaction } from './pipeline.js';
import { parseNextHop } from './relay.js';
import { startListener, type Listener } from './server.js';

export async function startServe(config: Config, log: LogFn): Promise<{ listener: Listener; app: FilterApp; host: string }> {
  const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(config.listen);
  if (!m) throw new ConfigError(`bad value for listen: ${JSON.stringify(config.listen)}: expected HOST:PORT`);
  const hop = parseNextHop(config.next_hop);
  let app: FilterApp;
  try {
    app = await createApp(config, log);
  } catch (e) {
    throw new ConfigError((e as Error).message);
  }
  const listener = await startListener(
    {
      host: m[1]!,
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
    (tx) => handleTransaction({ config, log, hooks: app.hooks, hop }, tx),
    log,
  );
  return { listener, app, host: m[1]! };
}
