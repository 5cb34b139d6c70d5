// Test peer: the filter's listener and pipeline in this process (fast to start, logs captured).
// In: config flags as the CLI would give them. Out: the port, the log lines, and close().
// Fails: a bad config throws like the CLI would; close() always stops the listener and closes the
// hooks' Redis connections (else they would keep the test process alive).

import { closeApp } from '../../lib/app.js';
import { loadConfig } from '../../lib/config.js';
import { startServe } from '../../lib/serve.js';
import type { Listener } from '../../lib/server.js';
import { startSink, type Sink } from './sink.js';

export interface InProcFilter {
  port: number;
  logs: Array<Record<string, unknown>>;
  listener: Listener;
  close(): Promise<void>;
}

export async function startInProcFilter(flags: Record<string, unknown>): Promise<InProcFilter> {
  const config = loadConfig({ flags: { listen: '127.0.0.1:0', ...flags } });
  const logs: Array<Record<string, unknown>> = [];
  const log = (event: string, fields: Record<string, unknown> = {}) => { logs.push({ event, ...fields }); };
  const { listener, app } = await startServe(config, log);
  // The app holds the override store's Redis connections, which would keep the test process alive.
  const close = async () => { await listener.close(); await closeApp(app); };
  return { port: listener.port, logs, listener, close };
}

/** A real sink and the filter relaying to it: the pair most relay tests need. */
export async function startFilterWithSink(
  flags: Record<string, unknown> = {},
  sinkOpts: Parameters<typeof startSink>[0] = {},
): Promise<{ filter: InProcFilter; sink: Sink; close(): Promise<void> }> {
  const sink = await startSink(sinkOpts);
  const filter = await startInProcFilter({ next_hop: `smtp://127.0.0.1:${sink.port}`, ...flags });
  return { filter, sink, close: async () => { await filter.close(); await sink.close(); } };
}
