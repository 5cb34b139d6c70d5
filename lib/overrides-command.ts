// `calendar-link-filter overrides …`: administer the shared override store (Redis) from the shell.
// In: argv after "overrides", stdout/stderr, the environment (CALFILTER_REDIS), optionally --config FILE.
// Out: one line per result on stdout; an exit code. `import` is idempotent and reports what it changed.
// Fails: bad arguments exit 64 (EX_USAGE), bad data in an import file 65 (EX_DATAERR), an unreadable
// file 66, a bad config file 78, Redis unreachable 69 (EX_UNAVAILABLE) or failing mid-way 75 (EX_TEMPFAIL);
// `get` of a missing key exits 1. Every refusal names the problem. Nothing is written when input is bad,
// and an import is written in one transaction (all or nothing; Redis Cluster: one key at a time).

import { readFile } from 'node:fs/promises';
import { ConfigError, loadConfig } from './config.js';
import { overrideSettings, parseRedisUrl, redact } from './override-config.js';
import { canonicalOverride, checkOverride, parseOverrideKey, sameOverride, type KeyOptions, type Override } from './override-model.js';
import { openOverrideStore, type OverrideStore } from './override-store.js';
import { parseImport, type ImportRow } from './overrides-import.js';

export interface OverridesIo {
  stdout: { write(s: string): unknown };
  stderr: { write(s: string): unknown };
  env: NodeJS.ProcessEnv;
}

export const OVERRIDES_EXIT = { ok: 0, notFound: 1, usage: 64, dataErr: 65, noInput: 66, unavailable: 69, tempFail: 75, config: 78 } as const;

const USAGE = `usage: calendar-link-filter overrides [--redis URL | --config FILE] COMMAND
  set ADDRESS|@DOMAIN (--server HOST | --url-template T | --server HOST --url-template T | --off)
  get ADDRESS|@DOMAIN        (exit 1 when there is none)
  unset ADDRESS|@DOMAIN
  list                       one line per override, sorted by domain
  import FILE [--replace] [--dry-run]   CSV (key,server,url_template,off) or JSON; --replace also removes
                             overrides the file does not list
  export                     JSON on stdout, re-importable
Redis: --redis URL, else CALFILTER_REDIS, else "redis" in --config FILE.`;

class Refusal extends Error {
  constructor(readonly code: number, message: string) {
    super(message);
  }
}

const VALUE_FLAGS = ['redis', 'config', 'server', 'url-template'] as const;
const BOOL_FLAGS = ['off', 'replace', 'dry-run', 'help'] as const;
/** Which flags each command takes besides --redis/--config. */
const ALLOWED: Record<string, string[]> = { set: ['server', 'url-template', 'off'], get: [], unset: [], list: [], import: ['replace', 'dry-run'], export: [] };
const ARITY: Record<string, number> = { set: 1, get: 1, unset: 1, list: 0, import: 1, export: 0 };

interface Args {
  command: string;
  positional: string[];
  flags: Map<string, string | true>;
}

function parseArgs(argv: string[]): Args {
  const flags = new Map<string, string | true>();
  const positional: string[] = [];
  let rest = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if (rest || !a.startsWith('-') || a === '-') { positional.push(a); continue; }
    if (a === '--') { rest = true; continue; }
    if (a === '-h') { flags.set('help', true); continue; }
    const eq = a.indexOf('=');
    const name = a.slice(2, eq < 0 ? undefined : eq);
    if (!a.startsWith('--') || (!(VALUE_FLAGS as readonly string[]).includes(name) && !(BOOL_FLAGS as readonly string[]).includes(name))) {
      throw new Refusal(OVERRIDES_EXIT.usage, `unknown option ${eq < 0 ? a : a.slice(0, eq)}`);
    }
    if (flags.has(name)) throw new Refusal(OVERRIDES_EXIT.usage, `--${name} given twice`);
    if ((BOOL_FLAGS as readonly string[]).includes(name)) {
      if (eq >= 0) throw new Refusal(OVERRIDES_EXIT.usage, `--${name} takes no value`);
      flags.set(name, true);
    } else {
      const v = eq >= 0 ? a.slice(eq + 1) : argv[++i];
      if (v === undefined) throw new Refusal(OVERRIDES_EXIT.usage, `--${name} needs a value`);
      // `--server --off` is a forgotten value, not a server named "--off" (as in the other commands)
      if (eq < 0 && /^--[A-Za-z][A-Za-z0-9-]*(=|$)/.test(v)) {
        throw new Refusal(OVERRIDES_EXIT.usage, `--${name} needs a value (got the option ${v}; write --${name}=VALUE for a value that starts with --)`);
      }
      flags.set(name, v);
    }
  }
  const [command = '', ...args] = positional;
  return { command, positional: args, flags };
}

function describe(o: Override): string {
  if (o.off) return 'off';
  return [o.server !== undefined ? `server=${o.server}` : '', o.urlTemplate !== undefined ? `url_template=${o.urlTemplate}` : ''].filter(Boolean).join(' ');
}

/** What differs between two overrides, for the import report ("server a → b"). */
function difference(before: Override, after: Override): string {
  const show = (v: unknown) => (v === undefined ? '(none)' : String(v));
  const out: string[] = [];
  for (const [label, f] of [['server', 'server'], ['url_template', 'urlTemplate'], ['off', 'off']] as const) {
    if (before[f] !== after[f]) out.push(`${label} ${show(before[f])} → ${show(after[f])}`);
  }
  return out.join('; ');
}

/** Domain first, then the addresses of that domain: "@d", "a@d", "b@d", then the next domain. */
function sortKey(key: string): string {
  const at = key.lastIndexOf('@');
  return `${key.slice(at + 1)}\u0000${key.slice(0, at)}`;
}

function keyOf(input: string, opts: KeyOptions): string {
  const k = parseOverrideKey(input, opts);
  if ('error' in k) throw new Refusal(OVERRIDES_EXIT.usage, k.error);
  return k.key;
}

async function snapshot(store: OverrideStore): Promise<Map<string, Override>> {
  const all = new Map<string, Override>();
  for await (const [k, v] of store.list()) all.set(k, v);
  return all;
}

export async function runOverrides(argv: string[], io: OverridesIo): Promise<number> {
  let store: OverrideStore | null = null;
  try {
    const args = parseArgs(argv);
    if (args.flags.has('help')) { io.stdout.write(USAGE + '\n'); return OVERRIDES_EXIT.ok; }
    if (!args.command) throw new Refusal(OVERRIDES_EXIT.usage, 'no command given');
    const allowed = ALLOWED[args.command];
    if (!allowed) throw new Refusal(OVERRIDES_EXIT.usage, `unknown command "${args.command}"`);
    for (const f of args.flags.keys()) {
      if (f !== 'redis' && f !== 'config' && !allowed.includes(f)) throw new Refusal(OVERRIDES_EXIT.usage, `--${f} does not apply to "${args.command}"`);
    }
    const want = ARITY[args.command] as number;
    if (args.positional.length !== want) {
      throw new Refusal(OVERRIDES_EXIT.usage, want === 0 ? `"${args.command}" takes no arguments (got "${args.positional[0]}")`
        : args.positional.length === 0 ? `"${args.command}" needs ${args.command === 'import' ? 'a FILE' : 'ADDRESS or @DOMAIN'}` : `"${args.command}" takes one argument (got ${args.positional.length})`);
    }
    // Check the action before touching Redis, so a typo never costs a connection.
    const action = args.command === 'set' ? setAction(args) : null;

    const flagUrl = args.flags.get('redis');
    if (typeof flagUrl === 'string') {
      try { parseRedisUrl(flagUrl); } catch (e) { throw new Refusal(OVERRIDES_EXIT.usage, `--redis: ${(e as Error).message}`); }
    }
    const configFile = args.flags.get('config');
    let config;
    try {
      config = loadConfig({ file: typeof configFile === 'string' ? configFile : undefined, env: io.env, flags: { redis: flagUrl } });
    } catch (e) {
      if (e instanceof ConfigError) throw new Refusal(OVERRIDES_EXIT.config, e.message);
      throw e;
    }
    const s = overrideSettings(config);
    if (!s.redis) {
      throw new Refusal(OVERRIDES_EXIT.usage, 'no Redis configured: give --redis URL, set CALFILTER_REDIS, or --config FILE with "redis"; ' +
        'without Redis the overrides live only inside a running serve process and cannot be changed from here');
    }
    const keyOpts: KeyOptions = { localPartCase: s.localPartCase, recipientDelimiter: s.recipientDelimiter };
    // A bad ADDRESS is bad input (64) whether or not Redis is up, so check it before connecting.
    const key = ['set', 'get', 'unset'].includes(args.command) ? keyOf(args.positional[0] as string, keyOpts) : '';
    let rows: ImportRow[] = [];
    if (args.command === 'import') rows = await readImport(args.positional[0] as string, keyOpts);

    // Admin commands may take longer than a message's 50 ms lookup, but not forever.
    store = openOverrideStore(s.redis, { keyPrefix: s.keyPrefix, timeoutMs: Math.max(2000, s.timeoutMs) }, (event, fields) => {
      io.stderr.write(`overrides: ${event === 'redis.corrupt' ? `ignoring a corrupt value at ${String(fields?.key)}: ${String(fields?.reason)}` : `${event} ${JSON.stringify(fields ?? {})}`}\n`);
    });
    if (!(await store.ready(3000))) {
      throw new Refusal(OVERRIDES_EXIT.unavailable, `cannot reach Redis at ${redact(s.redis)} (the connection failed, or no answer within 3 s)`);
    }
    switch (args.command) {
      case 'set': {
        const before = await store.get(key);
        const value = action as Override;
        if (before && sameOverride(before, value)) { io.stdout.write(`unchanged ${key} ${describe(before)}\n`); break; }
        await store.set(key, value);
        io.stdout.write(`${before ? 'changed' : 'added'} ${key} ${describe(canonicalOverride(value))}${before ? ` (was ${describe(before)})` : ''}\n`);
        break;
      }
      case 'get': {
        const v = await store.get(key);
        if (!v) { io.stderr.write(`overrides: no override for ${key}\n`); return OVERRIDES_EXIT.notFound; }
        io.stdout.write(`${key} ${describe(v)}\n`);
        break;
      }
      case 'unset': {
        io.stdout.write((await store.unset(key)) ? `removed ${key}\n` : `no override for ${key} (nothing to remove)\n`);
        break;
      }
      case 'list': {
        const all = await snapshot(store);
        for (const k of [...all.keys()].sort((a, b) => (sortKey(a) < sortKey(b) ? -1 : sortKey(a) > sortKey(b) ? 1 : 0))) {
          io.stdout.write(`${k} ${describe(all.get(k) as Override)}\n`);
        }
        break;
      }
      case 'export': {
        const all = await snapshot(store);
        const out = [...all.keys()].sort((a, b) => (sortKey(a) < sortKey(b) ? -1 : sortKey(a) > sortKey(b) ? 1 : 0)).map((key) => ({ key, ...(all.get(key) as Override) }));
        io.stdout.write(JSON.stringify(out, null, 2) + '\n');
        break;
      }
      case 'import':
        await importRows(store, rows, args, io);
        break;
    }
    return OVERRIDES_EXIT.ok;
  } catch (e) {
    if (e instanceof Refusal) {
      io.stderr.write(`overrides: ${e.message}\n`);
      if (e.code === OVERRIDES_EXIT.usage) io.stderr.write(USAGE + '\n');
      return e.code;
    }
    // Anything else here is Redis failing after we connected: try again later.
    io.stderr.write(`overrides: Redis failed: ${(e as Error).message}\n`);
    return OVERRIDES_EXIT.tempFail;
  } finally {
    await store?.close();
  }
}

function setAction(args: Args): Override {
  const server = args.flags.get('server');
  const template = args.flags.get('url-template');
  const off = args.flags.has('off');
  if (off && (server !== undefined || template !== undefined)) {
    throw new Refusal(OVERRIDES_EXIT.usage, '--off cannot be combined with --server or --url-template');
  }
  if (!off && server === undefined && template === undefined) throw new Refusal(OVERRIDES_EXIT.usage, '"set" needs --server HOST, --url-template T, or --off');
  const o: Override = off ? { off: true } : { ...(server !== undefined ? { server: server as string } : {}), ...(template !== undefined ? { urlTemplate: template as string } : {}) };
  const why = checkOverride(o);
  if (why) throw new Refusal(OVERRIDES_EXIT.usage, why.replace(/^server: /, '--server: ').replace(/^url template: /, '--url-template: '));
  return o;
}

async function readImport(file: string, keyOpts: KeyOptions): Promise<ImportRow[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new Refusal(OVERRIDES_EXIT.noInput, `cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const parsed = parseImport(text, file, keyOpts);
  if (parsed.errors.length > 0) {
    const shown = parsed.errors.slice(0, 20).map((m) => `  ${m}`).join('\n');
    const more = parsed.errors.length > 20 ? `\n  … and ${parsed.errors.length - 20} more` : '';
    throw new Refusal(OVERRIDES_EXIT.dataErr, `${file}: ${parsed.errors.length} bad entr${parsed.errors.length === 1 ? 'y' : 'ies'}, nothing imported:\n${shown}${more}`);
  }
  return parsed.rows;
}

async function importRows(store: OverrideStore, rows: ImportRow[], args: Args, io: OverridesIo): Promise<void> {
  const dry = args.flags.has('dry-run');
  const current = await snapshot(store);
  const counts = { added: 0, changed: 0, unchanged: 0, removed: 0 };
  const seen = new Set<string>();
  const changes: Array<{ key: string; value: Override | null }> = [];
  const report: string[] = [];
  for (const { key, value } of rows) {
    seen.add(key);
    const before = current.get(key);
    if (before && sameOverride(before, value)) { counts.unchanged++; continue; }
    changes.push({ key, value });
    if (before) { counts.changed++; report.push(`changed ${key}: ${difference(before, canonicalOverride(value))}\n`); }
    else { counts.added++; report.push(`added ${key} ${describe(canonicalOverride(value))}\n`); }
  }
  if (args.flags.has('replace')) {
    for (const key of [...current.keys()].sort()) {
      if (seen.has(key)) continue;
      changes.push({ key, value: null });
      counts.removed++;
      report.push(`removed ${key}\n`);
    }
  }
  // All or nothing, and reported only once written: a failure must not leave half an import behind.
  if (!dry) {
    try {
      await store.apply(changes);
    } catch (e) {
      // A refused transaction wrote nothing; one that timed out may still have been applied whole.
      const refused = !/no answer from Redis|timed out/i.test((e as Error).message);
      throw new Refusal(OVERRIDES_EXIT.tempFail, `Redis failed: ${(e as Error).message}; ${!store.atomic
        ? 'Redis Cluster writes one key at a time, so part of the import may be written: run it again'
        : refused ? 'nothing imported' : 'the import was written whole or not at all: run it again (it is idempotent)'}`);
    }
  }
  for (const line of report) io.stdout.write(line);
  io.stdout.write(`${dry ? 'would import' : 'imported'} ${args.positional[0]}: ${counts.added} added, ${counts.changed} changed, ${counts.unchanged} unchanged, ${counts.removed} removed\n`);
}
