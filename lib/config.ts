// Configuration: one table of defaults with bounds; file, environment and flags override it.
// In: the defaults below, then `--config FILE` (JSON or YAML), then CALFILTER_* variables, then flags.
// Out: a frozen Config whose every key exists in the table and holds a checked value.
// Fails: an unknown key, a bad value or an unreadable file throws ConfigError naming the key and
// where it came from; the CLI prints it and exits 78 (EX_CONFIG) before anything listens.

import { readFileSync } from 'node:fs';
import { parseCidr } from './net-allow.js';
import { isMap, isScalar, isSeq, parseDocument } from 'yaml';

type Kind = 'string' | 'int' | 'bool' | 'list' | 'enum';

interface Entry {
  kind: Kind;
  default: string | number | boolean | string[];
  min?: number;
  max?: number;
  values?: readonly string[];
  /** Extra check on strings and list items; returns an error text or null. */
  check?: (v: string) => string | null;
  /** A list that must name at least one item (an empty one is refused). */
  nonEmpty?: boolean;
  doc: string;
}

const MiB = 1024 * 1024;

const portOver = (port: string | undefined, min: number): string | null =>
  port !== undefined && (Number(port) < min || Number(port) > 65535) ? `port ${port} is outside ${min}..65535` : null;
const hostPort = (v: string): string | null => {
  const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+|[0-9a-fA-F:]+):(\d{1,5})$/.exec(v);
  return m ? portOver(m[2], 0) : 'expected HOST:PORT';
};
const hopUrl = (v: string): string | null => {
  const m = /^(smtp|lmtp):\/\/(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(?::(\d{1,5}))?\/?$/.exec(v);
  return m ? portOver(m[3], 1) : 'expected smtp://HOST:PORT or lmtp://HOST:PORT';
};
const cidr = (v: string): string | null => {
  const net = parseCidr(v); // the allow-list's own rule, so a bad one is a config error (78), not a crash at start
  return typeof net === 'string' ? net : null;
};
const domain = (v: string): string | null =>
  /^[^\s@\x00-\x1f\x7f]+\.?[^\s@\x00-\x1f\x7f]*$/.test(v) ? null : 'expected a domain name';
const noControl = (v: string): string | null => (/[\x00-\x1f\x7f]/.test(v) ? 'control characters are not allowed' : null);

/** The schema: every key, its default, its bounds. The README's config table mirrors this. */
export const CONFIG_TABLE = {
  listen: { kind: 'string', default: '127.0.0.1:10025', check: hostPort, doc: 'address the SMTP/LMTP listener binds to' },
  next_hop: { kind: 'string', default: 'smtp://127.0.0.1:10026', check: hopUrl, doc: 'where every message goes next (smtp:// or lmtp://)' },
  lmtp: { kind: 'bool', default: false, doc: 'speak LMTP on the listener (one reply per recipient after DATA)' },
  allowed_clients: { kind: 'list', default: ['127.0.0.0/8', '::1/128'], check: cidr, nonEmpty: true, doc: 'client networks allowed to connect; others get 554 5.7.1' },
  max_message_size: { kind: 'int', default: 50 * MiB, min: 1024, max: 2048 * MiB, doc: 'largest message accepted, bytes (552 above it, from smtp-server: no enhanced status code)' },
  max_recipients: { kind: 'int', default: 1000, min: 1, max: 100000, doc: 'recipients per transaction (452 above it, from smtp-server: no enhanced status code)' },
  max_connections: { kind: 'int', default: 100, min: 1, max: 10000, doc: 'simultaneous client connections' },
  socket_timeout: { kind: 'int', default: 660, min: 10, max: 3600, doc: 'idle client connection timeout, seconds (Postfix waits 600 s for the reply to ".")' },
  next_hop_timeout: { kind: 'int', default: 300, min: 1, max: 3600, doc: 'time allowed for relaying one message to the next hop (connecting included, every body it goes out as), seconds; then 451 4.4.2' },
  connect_timeout: { kind: 'int', default: 30, min: 1, max: 600, doc: 'time allowed to connect to the next hop and hear its greeting, seconds; no connection: 451 4.4.1, no greeting: 451 4.4.2' },
  next_hop_idle_time: { kind: 'int', default: 2, min: 0, max: 300, doc: 'how long a next-hop session waits open for the next message, seconds (as Postfix smtp_connection_cache_time_limit); 0: a new connection for every message' },
  next_hop_reuse_time: { kind: 'int', default: 300, min: 1, max: 86400, doc: 'a next-hop session older than this is closed instead of reused, seconds (as Postfix smtp_connection_reuse_time_limit)' },
  shutdown_timeout: { kind: 'int', default: 30, min: 0, max: 3600, doc: 'on SIGTERM, seconds allowed for transactions in flight' },
  spool_memory_limit: { kind: 'int', default: 1 * MiB, min: 0, max: 256 * MiB, doc: 'bytes of a message kept in memory before it spills to a temporary file' },
  spool_dir: { kind: 'string', default: '', check: noControl, doc: 'directory for spilled messages (empty: the system temporary directory)' },
  hook_timeout: { kind: 'int', default: 10000, min: 10, max: 600000, doc: 'time allowed for one hook call, milliseconds' },
  hooks: { kind: 'list', default: ['calendar-classify', 'custom-form-classify', 'link-resolve', 'footer-render'], check: noControl, doc: 'built-in hooks to load, in order' },
  web_server: { kind: 'string', default: '', check: noControl, doc: 'site-wide web calendar server (HOST[:PORT] or http(s) URL); empty: no footer' },
  url_template: { kind: 'string', default: 'https://{server}/calendar/event?uid={uid}&recurrence-id={recurrenceId}&sequence={sequence}', check: noControl, doc: 'link template; placeholders {server} {uid} {recurrenceId} {sequence} {method} {messageId} {recipient} {token}' },
  link_secret: { kind: 'string', default: '', check: noControl, doc: 'HMAC key for {token} (at least 32 bytes; hex or base64); empty: no token' },
  link_key_id: { kind: 'string', default: 'k1', check: (v) => (/^[A-Za-z0-9_-]{1,16}$/.test(v) ? null : 'expected 1-16 characters [A-Za-z0-9_-]'), doc: 'key id put in tokens, for rotation' },
  link_ttl_days: { kind: 'int', default: 400, min: 1, max: 3650, doc: 'token lifetime, days' },
  footer_methods: { kind: 'list', default: ['REQUEST', 'CANCEL', 'ADD', 'COUNTER', 'DECLINECOUNTER'], check: (v) => (/^[A-Z-]+$/i.test(v) ? null : 'expected iTIP method names'), doc: 'iTIP methods that get a footer' },
  footer_tnef_meetings: { kind: 'bool', default: true, doc: 'footer for TNEF meeting requests, cancellations and appointments' },
  footer_custom_forms: { kind: 'bool', default: true, doc: 'footer for Outlook custom forms' },
  footer_task_requests: { kind: 'bool', default: true, doc: 'footer for task requests' },
  footer_text_template: { kind: 'string', default: '', doc: 'text footer template (empty: built-in)' },
  footer_html_template: { kind: 'string', default: '', doc: 'HTML footer template (empty: built-in)' },
  local_domains: { kind: 'list', default: [], check: domain, doc: 'domains whose recipients get a footer; ".example.org" matches its subdomains, as in Postfix (empty: every recipient counts as local)' },
  external_recipients: { kind: 'bool', default: false, doc: 'also add footers for recipients outside local_domains' },
  dry_run: { kind: 'bool', default: false, doc: 'log what would change, relay every message unchanged' },
  log_level: { kind: 'enum', default: 'info', values: ['debug', 'info', 'warn', 'error'], doc: 'lowest level written' },
} satisfies Record<string, Entry>;

export type ConfigKey = keyof typeof CONFIG_TABLE;

export interface Config {
  listen: string;
  next_hop: string;
  lmtp: boolean;
  allowed_clients: string[];
  max_message_size: number;
  max_recipients: number;
  max_connections: number;
  socket_timeout: number;
  next_hop_timeout: number;
  connect_timeout: number;
  next_hop_idle_time: number;
  next_hop_reuse_time: number;
  shutdown_timeout: number;
  spool_memory_limit: number;
  spool_dir: string;
  hook_timeout: number;
  hooks: string[];
  web_server: string;
  url_template: string;
  link_secret: string;
  link_key_id: string;
  link_ttl_days: number;
  footer_methods: string[];
  footer_tnef_meetings: boolean;
  footer_custom_forms: boolean;
  footer_task_requests: boolean;
  footer_text_template: string;
  footer_html_template: string;
  local_domains: string[];
  external_recipients: boolean;
  dry_run: boolean;
  log_level: string;
  [key: string]: unknown;
}

export class ConfigError extends Error {}

const TABLE: Record<string, Entry> = CONFIG_TABLE;

/** Extra keys other modules add (e.g. Redis settings); they register before load. */
export function registerConfigKeys(entries: Record<string, Entry>): void {
  for (const [k, e] of Object.entries(entries)) TABLE[k] = e;
}

/** The table's entry for a key; only own keys ("constructor" or "__proto__" are not settings). */
function entryOf(key: string): Entry | undefined {
  return Object.hasOwn(TABLE, key) ? TABLE[key] : undefined;
}

function coerce(key: string, raw: unknown, from: string): unknown {
  const e = entryOf(key);
  if (!e) throw new ConfigError(`unknown configuration key "${key}" (from ${from})`);
  const bad = (why: string) => new ConfigError(`bad value for ${key} (from ${from}): ${JSON.stringify(raw)}: ${why}`);
  switch (e.kind) {
    case 'int': {
      const n = typeof raw === 'number' ? raw : typeof raw === 'string' && /^-?\d+$/.test(raw.trim()) ? Number(raw.trim()) : NaN;
      if (!Number.isSafeInteger(n)) throw bad('expected a whole number');
      if (e.min !== undefined && n < e.min) throw bad(`below the minimum ${e.min}`);
      if (e.max !== undefined && n > e.max) throw bad(`above the maximum ${e.max}`);
      return n;
    }
    case 'bool': {
      if (typeof raw === 'boolean') return raw;
      if (typeof raw !== 'string' && typeof raw !== 'number') throw bad('expected true or false');
      const s = String(raw).trim().toLowerCase();
      if (['1', 'true', 'yes', 'on'].includes(s)) return true;
      if (['0', 'false', 'no', 'off'].includes(s)) return false;
      throw bad('expected true or false');
    }
    case 'list': {
      const items = Array.isArray(raw) ? raw : typeof raw === 'string' ? raw.split(',') : null;
      if (!items) throw bad('expected a list or a comma-separated string');
      items.forEach((item: unknown, i) => {
        if (typeof item !== 'string' && !Number.isSafeInteger(item)) throw bad(`item ${i + 1} (${JSON.stringify(item)}): expected a string`);
      });
      const list = items.map((s: unknown) => String(s).trim()).filter((s) => s.length > 0);
      for (const item of list) {
        const why = e.check?.(item);
        if (why) throw bad(`item "${item}": ${why}`);
      }
      // an empty allow-list would turn every client away (554, a bounce) while looking healthy
      if (e.nonEmpty && list.length === 0) throw bad('expected at least one item');
      return list;
    }
    case 'enum': {
      if (typeof raw !== 'string' && typeof raw !== 'number' && typeof raw !== 'boolean') throw bad(`expected one of ${e.values?.join(', ')}`);
      const s = String(raw).trim();
      if (!e.values?.includes(s)) throw bad(`expected one of ${e.values?.join(', ')}`);
      return s;
    }
    case 'string': {
      // A number is taken only when its text is certain (7, not 1e+40): quote other values.
      if (typeof raw !== 'string' && !Number.isSafeInteger(raw)) throw bad(typeof raw === 'number' ? 'expected a string; put the value in quotes' : 'expected a string');
      const s = String(raw);
      // empty means "off" only for keys whose default is empty; elsewhere (listen, next_hop,
      // link_key_id …) an empty value (CALFILTER_X= in an env file) is refused like any bad value
      if (s === '' && e.default !== '') throw bad('must not be empty');
      const why = s === '' ? null : e.check?.(s);
      if (why) throw bad(why);
      return s;
    }
  }
}

export function readConfigFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    // a byte-order mark (Windows editors) is not part of the JSON or YAML text
    text = readFileSync(path, 'utf8').replace(/^\uFEFF/, '');
  } catch (err) {
    throw new ConfigError(`cannot read config file ${path}: ${(err as Error).message}`);
  }
  const twice = repeatedKey(text);
  if (twice !== null) throw new ConfigError(`config file ${path}: ${twice} is given twice`);
  let data: unknown;
  try {
    data = /\.json$/i.test(path) ? JSON.parse(text) : parseYamlConfig(text);
  } catch (err) {
    throw new ConfigError(`cannot parse config file ${path}: ${(err as Error).message}`);
  }
  if (data === null || data === undefined) return {};
  if (typeof data !== 'object' || Array.isArray(data)) throw new ConfigError(`config file ${path}: expected a mapping of keys to values`);
  return data as Record<string, unknown>;
}

/**
 * The first top-level key given twice, or null. JSON.parse lets the last one win silently and YAML's
 * own error names only a line; the text read as YAML 1.2 (a superset of JSON) tells which key.
 */
function repeatedKey(text: string): string | null {
  const doc = parseDocument(text, { uniqueKeys: false });
  if (!isMap(doc.contents)) return null;
  const seen = new Set<string>();
  for (const item of doc.contents.items) {
    const key = String(isScalar(item.key) ? item.key.value : item.key);
    if (seen.has(key)) return key;
    seen.add(key);
  }
  return null;
}

/**
 * YAML, where a number written for a string or list setting keeps the text as written:
 * `link_key_id: 007` is "007" and a secret of digits is not rounded to a float.
 */
function parseYamlConfig(text: string): unknown {
  const doc = parseDocument(text);
  if (doc.errors.length) throw doc.errors[0];
  const data: unknown = doc.toJS();
  if (!isMap(doc.contents) || data === null || typeof data !== 'object' || Array.isArray(data)) return data;
  const asWritten = (node: unknown, value: unknown): unknown =>
    isScalar(node) && typeof node.value === 'number' && typeof node.source === 'string' ? node.source : value;
  const obj = data as Record<string, unknown>;
  for (const pair of doc.contents.items) {
    if (!isScalar(pair.key)) continue;
    const key = String(pair.key.value);
    const kind = entryOf(key)?.kind;
    if (!Object.hasOwn(obj, key) || (kind !== 'string' && kind !== 'list')) continue;
    const value = obj[key];
    if (isSeq(pair.value) && Array.isArray(value)) obj[key] = value.map((v, i) => asWritten((pair.value as { items: unknown[] }).items[i], v));
    else obj[key] = asWritten(pair.value, value);
  }
  return obj;
}

export interface ConfigSources {
  file?: string;
  env?: NodeJS.ProcessEnv;
  /** Flag values keyed by config key (the CLI maps --web-server to web_server). */
  flags?: Record<string, unknown>;
}

/** Defaults ← file ← CALFILTER_* environment ← flags. */
export function loadConfig(src: ConfigSources = {}): Config {
  const out: Record<string, unknown> = {};
  for (const [k, e] of Object.entries(TABLE)) out[k] = Array.isArray(e.default) ? [...e.default] : e.default;
  if (src.file) {
    for (const [k, v] of Object.entries(readConfigFile(src.file))) out[k] = coerce(k, v, `config file ${src.file}`);
  }
  for (const [name, v] of Object.entries(src.env ?? {})) {
    if (!name.startsWith('CALFILTER_') || v === undefined) continue;
    const key = name.slice('CALFILTER_'.length).toLowerCase();
    out[key] = coerce(key, v, `environment ${name}`);
  }
  for (const [k, v] of Object.entries(src.flags ?? {})) {
    if (v === undefined) continue;
    out[k] = coerce(k, v, `--${k.replace(/_/g, '-')}`);
  }
  return Object.freeze(out) as Config;
}

/** Rows for the README and `calendar-link-filter config`: key, default, bounds, meaning. */
export function describeConfig(): Array<{ key: string; default: string; bounds: string; doc: string }> {
  return Object.entries(TABLE).map(([key, e]) => ({
    key,
    default: Array.isArray(e.default) ? e.default.join(',') : String(e.default),
    bounds: e.kind === 'int' ? `${e.min ?? ''}..${e.max ?? ''}` : e.kind === 'enum' ? (e.values ?? []).join('|') : e.kind,
    doc: e.doc,
  }));
}

export type { Entry as ConfigEntry };

/** The kind of a key ("bool" flags take no value on the command line), or null if unknown. */
export function configKeyKind(key: string): Kind | null {
  return entryOf(key)?.kind ?? null;
}
