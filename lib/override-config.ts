// Settings of the override store and of per-recipient resolution, registered into the config table.
// In: the config table (registerConfigKeys at module load) and, later, a loaded Config.
// Out: typed OverrideSettings, and parseRedisUrl: the `redis` setting → which kind of Redis to open.
// Fails: a malformed Redis URL or an out-of-range value is a ConfigError at start (via the table's
// check); parseRedisUrl throws an Error whose text names the problem (never the password).
//
// Redis URL forms (all documented in the README):
//   ''                                          embedded in-memory store (one process only)
//   redis://[user:pass@]host[:port][/db]         one server; rediss:// for TLS
//   unix:///path/to/redis.sock[?db=N]            one server on a local socket
//   redis+sentinel://[user:pass@]host:port,host:port/mastername[/db]   Sentinel ("sentinel://" also)
//   redis+cluster://[user:pass@]host:port,host:port                     Cluster (seed nodes)
// user:pass are the data nodes' credentials; Sentinels themselves are contacted without a password.

import { registerConfigKeys, type Config } from './config.js';

export type RedisFallback = 'site' | 'none' | 'tempfail';
export type LocalPartCase = 'preserve' | 'lower';

export interface HostPort {
  host: string;
  port: number;
}

export type RedisTarget =
  | { mode: 'memory' }
  | { mode: 'standalone'; url: string; path?: undefined }
  | { mode: 'standalone'; path: string; db: number; url?: undefined }
  | { mode: 'sentinel'; sentinels: HostPort[]; name: string; db: number; username?: string; password?: string }
  | { mode: 'cluster'; nodes: HostPort[]; username?: string; password?: string };

const DEFAULT_PORT = { sentinel: 26379, cluster: 6379 } as const;

function parseHostList(list: string, defaultPort: number, url: string): HostPort[] {
  const out: HostPort[] = [];
  for (const item of list.split(',')) {
    const m = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::(\d{1,5}))?$/.exec(item.trim());
    if (!m) throw new Error(`bad host "${item}" in Redis URL ${redact(url)} (expected HOST:PORT)`);
    const port = m[2] === undefined ? defaultPort : Number(m[2]);
    if (port < 1 || port > 65535) throw new Error(`bad port ${port} in Redis URL ${redact(url)}`);
    out.push({ host: (m[1] as string).replace(/^\[|\]$/g, ''), port });
  }
  return out;
}

function parseDb(text: string | undefined, url: string): number {
  if (text === undefined || text === '') return 0;
  if (!/^\d{1,2}$/.test(text)) throw new Error(`bad database number "${text}" in Redis URL ${redact(url)}`);
  return Number(text);
}

/** The URL with any password replaced by "***": safe to log and to show in errors. */
export function redact(url: string): string {
  // Up to the LAST "@": a password holding an unencoded "@" or "/" must not show its tail.
  return url.replace(/^([a-z+]+:\/\/)(.*)@/i, (_all, scheme: string, auth: string) =>
    `${scheme}${auth.includes(':') ? `${auth.slice(0, auth.indexOf(':'))}:***` : '***'}@`);
}

export function parseRedisUrl(url: string): RedisTarget {
  const s = url.trim();
  if (s === '') return { mode: 'memory' };
  if (/[\x00-\x20\x7f]/.test(s)) throw new Error('the Redis URL contains whitespace or control characters');
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(s)?.[1]?.toLowerCase();
  switch (scheme) {
    case 'redis':
    case 'rediss': {
      let u: URL;
      try {
        u = new URL(s);
      } catch {
        throw new Error(`the Redis URL ${redact(s)} is not a valid URL`);
      }
      if (!u.hostname) throw new Error(`the Redis URL ${redact(s)} has no host`);
      parseDb(u.pathname.replace(/^\//, ''), s);
      return { mode: 'standalone', url: s };
    }
    case 'unix': {
      const m = /^unix:\/\/(\/[^?]+)(?:\?db=(\d+))?$/i.exec(s);
      if (!m) throw new Error(`the Redis URL ${redact(s)} is not unix:///path/to/socket[?db=N]`);
      return { mode: 'standalone', path: m[1] as string, db: parseDb(m[2], s) };
    }
    case 'redis+sentinel':
    case 'sentinel':
    case 'redis+cluster': {
      const m = /^[a-z+]+:\/\/(?:([^@/]*)@)?([^/?#]+)(?:\/([^/?#]*)(?:\/([^/?#]*))?)?$/i.exec(s);
      if (!m) throw new Error(`the Redis URL ${redact(s)} is not ${scheme}://HOST:PORT,HOST:PORT${scheme === 'redis+cluster' ? '' : '/MASTERNAME'}`);
      const auth = m[1] === undefined ? {} : splitAuth(m[1]);
      if (scheme === 'redis+cluster') {
        if (m[3]) throw new Error(`a cluster URL takes no path (Redis Cluster has only database 0): ${redact(s)}`);
        return { mode: 'cluster', nodes: parseHostList(m[2] as string, DEFAULT_PORT.cluster, s), ...auth };
      }
      const name = decodeURIComponent(m[3] ?? '');
      if (!/^[A-Za-z0-9._-]+$/.test(name)) throw new Error(`a Sentinel URL must name the master: ${scheme}://HOST:PORT,HOST:PORT/MASTERNAME (got ${redact(s)})`);
      return { mode: 'sentinel', sentinels: parseHostList(m[2] as string, DEFAULT_PORT.sentinel, s), name, db: parseDb(m[4], s), ...auth };
    }
    default:
      throw new Error(`unsupported Redis URL ${redact(s)} (use redis://, rediss://, unix://, redis+sentinel:// or redis+cluster://)`);
  }
}

function splitAuth(auth: string): { username?: string; password?: string } {
  const i = auth.indexOf(':');
  const user = decodeURIComponent(i < 0 ? auth : auth.slice(0, i));
  const pass = i < 0 ? undefined : decodeURIComponent(auth.slice(i + 1));
  // "redis://:secret@host" is the usual password-only form.
  return pass === undefined ? (user ? { password: user } : {}) : { ...(user ? { username: user } : {}), password: pass };
}

const checkRedisUrl = (v: string): string | null => {
  try {
    parseRedisUrl(v);
    return null;
  } catch (err) {
    return (err as Error).message;
  }
};

registerConfigKeys({
  redis: { kind: 'string', default: '', check: checkRedisUrl, doc: 'override store: redis://, rediss://, unix://, redis+sentinel://H:P,H:P/NAME or redis+cluster://H:P,H:P (empty: in-memory, this process only)' },
  redis_prefix: { kind: 'string', default: 'calfilter:', check: (v) => (/^[\x21-\x7e]{1,64}$/.test(v) ? null : 'expected 1-64 printable ASCII characters'), doc: 'prefix of every Redis key and channel; overrides live under <prefix>override:' },
  redis_timeout_ms: { kind: 'int', default: 50, min: 5, max: 5000, doc: 'time allowed for one override lookup, milliseconds; then the cache or redis_fallback answers' },
  redis_fallback: { kind: 'enum', default: 'site', values: ['site', 'none', 'tempfail'], doc: 'when Redis fails and nothing is cached: site default link, no footer, or 451 (try later)' },
  override_cache_ttl_ms: { kind: 'int', default: 5000, min: 0, max: 600000, doc: 'how long a looked-up override (or its absence) is reused, milliseconds; changes arrive sooner by pub/sub' },
  override_cache_size: { kind: 'int', default: 10000, min: 0, max: 10000000, doc: 'overrides (and absences) kept in the in-process cache' },
  local_part_case: { kind: 'enum', default: 'preserve', values: ['preserve', 'lower'], doc: 'recipient local parts: matched as written (RFC 5321) or lower-cased' },
  recipient_delimiter: { kind: 'string', default: '', check: (v) => (/^[^\s@"\\\x00-\x1f\x7f]{1,8}$/.test(v) ? null : 'expected 1-8 delimiter characters, not "@", quote, backslash or space'), doc: 'Postfix-style: user+detail@dom also finds the override of user@dom (each character is a delimiter; empty: off)' },
});

export interface OverrideSettings {
  redis: string;
  /** Full key prefix, "<redis_prefix>override:"; the change channel is "<keyPrefix>changed". */
  keyPrefix: string;
  timeoutMs: number;
  fallback: RedisFallback;
  cacheTtlMs: number;
  cacheSize: number;
  localPartCase: LocalPartCase;
  recipientDelimiter: string;
}

/** Typed view of the keys above (defaults apply when a key is missing, e.g. in a hand-built config). */
export function overrideSettings(config: Readonly<Record<string, unknown>> | Config): OverrideSettings {
  const str = (k: string, d: string) => (typeof config[k] === 'string' ? (config[k] as string) : d);
  const num = (k: string, d: number) => (typeof config[k] === 'number' ? (config[k] as number) : d);
  return {
    redis: str('redis', ''),
    keyPrefix: `${str('redis_prefix', 'calfilter:')}override:`,
    timeoutMs: num('redis_timeout_ms', 50),
    fallback: str('redis_fallback', 'site') as RedisFallback,
    cacheTtlMs: num('override_cache_ttl_ms', 5000),
    cacheSize: num('override_cache_size', 10000),
    localPartCase: str('local_part_case', 'preserve') as LocalPartCase,
    recipientDelimiter: str('recipient_delimiter', ''),
  };
}
