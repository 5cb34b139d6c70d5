// `calendar-link-filter web`: starts the web view and runs until SIGTERM/SIGINT.
// In: a loaded Config (web_listen, web_base_url, web_token_keys, web_token_kid, web_rcpt_key, redis …).
// Out: a listening server and log lines web.listening / web.stopping / web.stopped.
// Fails: a missing or short key, or no `redis`, throws ConfigError before anything listens (exit 78);
// a port that cannot be bound rejects with the system error. Redis trouble later is a 503 per request.

import { stopSignal } from '../stop-signals.js';
import { ConfigError, type Config } from '../config.js';
import type { LogFn } from '../log.js';
import { webSettings } from '../snapshot-config.js';
import { openSnapshotStore } from '../snapshot-store.js';
import { startWebServer } from './server.js';

/** Reads from the store are allowed this long before the page answers 503. */
export const WEB_STORE_TIMEOUT_MS = 1000;

export async function runWeb(config: Config, log: LogFn): Promise<void> {
  const settings = webSettings(config);
  if (!settings.redis) {
    throw new ConfigError('redis is not set: the web view runs as its own process and reads the snapshots the filter wrote to Redis');
  }
  const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(String(config.web_listen));
  if (!m) throw new ConfigError(`bad value for web_listen: ${JSON.stringify(config.web_listen)}: expected HOST:PORT`);
  const store = openSnapshotStore(settings.redis, settings.keyPrefix, WEB_STORE_TIMEOUT_MS);
  const ready = await store.ready(2000);
  const server = await startWebServer({ settings, store, log }, m[1]!, Number(m[2]));
  log('web.listening', { listen: `${m[1]}:${server.port}`, base_url: settings.baseUrl, store: store.description, store_ready: ready, agenda_auth: settings.agendaAuth, rsvp: settings.rsvp.enabled ? settings.rsvp.smtpUrl : false });
  log('web.stopping', { signal: await stopSignal(log, 'web') });
  await server.close();
  await store.close();
  log('web.stopped', {});
}
