// The log: one JSON line per event on stdout, with a stable event name (listed in the README).
// In: an event name and fields. Out: `{"ts":…,"level":…,"event":…,…}\n` on the given stream.
// Fails: never throws; a field that cannot be serialised is replaced by its string form.

export type Level = 'debug' | 'info' | 'warn' | 'error';
const RANK: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/** Event name → level. An event not listed here logs at info. */
const LEVELS: Record<string, Level> = {
  'smtp.connect': 'debug',
  'smtp.refused': 'warn',
  'message.error': 'error',
  'message.incomplete': 'warn',
  'message.passthrough': 'warn',
  'message.tempfail': 'warn',
  'hook.error': 'warn',
  'redis.down': 'error',
  'redis.corrupt': 'warn',
  'redis.up': 'info',
  'overrides.store': 'info',
  'message.deferred': 'warn',
  'message.rejected': 'warn',
  'server.stopping': 'warn',
  'config.all_local': 'warn',
  'config.no_web_server': 'warn',
  'config.wide_allow_list': 'warn',
  'http.error': 'error',
  'milter.connect': 'debug',
  'milter.negotiated': 'debug',
  'milter.eom': 'debug',
  'milter.degraded': 'warn',
  'milter.protocol_error': 'warn',
  'milter.error': 'error',
  'milter.tempfail': 'warn',
  'milter.refused': 'warn',
  'milter.stopping': 'warn',
};

export type LogFn = (event: string, fields?: Record<string, unknown>) => void;

export function createLogger(opts: { level?: string; out?: NodeJS.WritableStream } = {}): LogFn {
  const min = RANK[(opts.level as Level) ?? 'info'] ?? RANK.info;
  const out = opts.out ?? process.stdout;
  return (event, fields = {}) => {
    const level = (fields.level as Level | undefined) ?? LEVELS[event] ?? 'info';
    if (RANK[level] < min) return;
    let line: string;
    try {
      line = JSON.stringify({ ts: new Date().toISOString(), level, event, ...fields });
    } catch {
      line = JSON.stringify({ ts: new Date().toISOString(), level, event, fields: String(fields) });
    }
    out.write(line + '\n');
  };
}

/** A logger that drops everything (for library use and quiet tests). */
export const silentLog: LogFn = () => undefined;
