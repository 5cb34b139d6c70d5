// The log: one JSON line per event on stdout, with a stable event name (listed in the README).
// In: an event name and fields. Out: `{"ts":…,"level":…,"event":…,…}\n` on the given stream.
// Fails: never throws; a field that cannot be serialised is replaced by its string form.

export type Level = 'debug' | 'info' | 'warn' | 'error';
const RANK: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/** Event name → level. An event not listed here logs at info. */
const LEVELS: Record<string, Level> = {
  'smtp.connect': 'debug',
  'smtp.refused': 'warn',
  'smtp.error': 'error',
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

export type LogFn = ((event: string, fields?: Record<string, unknown>) => void) & {
  /** False when `event` at its own level would not be written: the caller may skip building its fields. */
  wants?: (event: string) => boolean;
};

export function createLogger(opts: { level?: string; out?: NodeJS.WritableStream } = {}): LogFn {
  const min = RANK[(opts.level as Level) ?? 'info'] ?? RANK.info;
  const out = opts.out ?? process.stdout;
  const log: LogFn = (event, fields = {}) => {
    const asked = fields.level;
    const level: Level = typeof asked === 'string' && Object.hasOwn(RANK, asked) ? (asked as Level) : (LEVELS[event] ?? 'info');
    if (RANK[level] < min) return;
    const head = { ts: new Date().toISOString(), level, event };
    let line: string;
    try {
      // ts, level and event are ours: a field of the same name does not replace them (nor move them).
      // No replacer on this path: one per value would cost every outcome line V8's fast path.
      line = JSON.stringify(Object.assign({ ...head, ...fields }, head));
    } catch {
      // a BigInt, a cycle, a throwing getter or toJSON: each field on its own, the bad ones as text
      const own = (k: string) => k !== 'ts' && k !== 'level' && k !== 'event';
      const record: Record<string, unknown> = { ...head };
      for (const k of Object.keys(fields)) if (own(k)) record[k] = fieldValue(fields, k);
      line = JSON.stringify(record);
    }
    out.write(line + '\n');
  };
  log.wants = (event) => RANK[LEVELS[event] ?? 'info'] >= min;
  return log;
}

/** JSON has no BigInt: written as its decimal text. */
function jsonSafe(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? value.toString() : value;
}

/** One field as JSON can take it: its JSON when it serialises, else its string form, else a marker. */
function fieldValue(fields: Record<string, unknown>, key: string): unknown {
  try {
    const json = JSON.stringify(fields[key], jsonSafe);
    return json === undefined ? undefined : (JSON.parse(json) as unknown);
  } catch {
    try {
      return String(fields[key]);
    } catch {
      return '[unserialisable]';
    }
  }
}

/** A logger that drops everything (for library use and quiet tests). */
export const silentLog: LogFn = () => undefined;
