// The web view's store: snapshots (what one recipient received in one message), per-event state (which
// version is current, cancellations, the recipient's answer), the recipient's agenda, RSVP locks,
// sign-in links and sessions. In Redis (through override-store's RedisHandle, so ioredis stays there)
// or in this process's memory (tests, and a filter without Redis).
// In: records from lib/snapshot-ingest.ts and requests from lib/web/. Out: plain string maps.
// Fails: every Redis call is bounded and rejects with StoreUnavailableError (down, slow, OOM); callers
// decide (the filter: no built-in link; the server: 503). Keys of one recipient share the hash tag {R}.
//
// Keys (P = <redis_prefix>web:):  P{R}:s:<rid> HASH snapshot · P{R}:e:<evkey> HASH event state ·
// P{R}:a ZSET agenda (evkey → last end, s) · P{R}:lock:<evkey> RSVP lock · Potp:<hash> · Psess:<hash>.
// Every key has a TTL; an ingest only ever extends TTLs (EXPIREAT … GT, Redis ≥ 7.0), except the new snapshot's
// own, which lives no longer than the current one of its slot when it does not become current.

import { openRedisHandle, StoreUnavailableError, type RedisHandle } from './override-store.js';

export { StoreUnavailableError };

export type Fields = Record<string, string>;

export interface IngestArgs {
  r: string;
  rid: string;
  evkey: string;
  /** '' for the master, else the RECURRENCE-ID as written. */
  recur: string;
  seq: number;
  /** DTSTAMP "YYYYMMDDTHHMMSSZ" or ''. */
  stamp: string;
  method: string;
  /** 'THISANDFUTURE' for such a CANCEL, else ''. */
  range: string;
  /**
   * The ORGANIZER's address, lower case without mailto: ('' when none). The first version that names
   * one binds the event to it: a later version from another organizer is stored (its own link works)
   * but never becomes current and its CANCEL cancels nothing, so whoever learned the UID (any other
   * attendee) cannot take over the recipient's page or redirect the RSVP (RFC 5546 §2.1.5: only the
   * organizer updates or cancels).
   */
  org: string;
  /** Unix seconds. */
  expireAt: number;
  /** Agenda score: end of the last occurrence (Unix seconds; expireAt for endless series). */
  lastEnd: number;
  maxEvents: number;
  /** Agenda members ending before this (Unix seconds) are dropped. */
  pruneBefore: number;
  fields: Fields;
}

export interface SnapshotStore {
  readonly kind: 'memory' | 'redis';
  readonly description: string;
  /** Stores the snapshot and updates the event state; true when this version became current. */
  ingest(a: IngestArgs, timeoutMs: number): Promise<boolean>;
  snapshot(r: string, rid: string): Promise<Fields | null>;
  event(r: string, evkey: string): Promise<Fields | null>;
  setEventFields(r: string, evkey: string, f: Fields): Promise<void>;
  /** SET NX EX: true when this caller holds the lock. */
  lock(r: string, evkey: string, seconds: number): Promise<boolean>;
  unlock(r: string, evkey: string): Promise<void>;
  /** evkeys whose last end is at or after `fromS`, soonest-ending first. */
  agenda(r: string, fromS: number): Promise<string[]>;
  putOnce(kind: 'otp' | 'sess', id: string, f: Fields, seconds: number): Promise<void>;
  /** otp: read and delete (GETDEL semantics); sess: read. */
  take(kind: 'otp' | 'sess', id: string, consume: boolean): Promise<Fields | null>;
  drop(kind: 'otp' | 'sess', id: string): Promise<void>;
  deleteSnapshot(r: string, rid: string): Promise<void>;
  ping(timeoutMs: number): Promise<void>;
  /** True once the store can answer (Redis connected), false after timeoutMs. */
  ready(timeoutMs: number): Promise<boolean>;
  close(): Promise<void>;
}

// REPLY, COUNTER, REFRESH and DECLINECOUNTER carry the UID and (copied) ORGANIZER but are no version of
// the event (RFC 5546 §1.4: only PUBLISH/REQUEST/ADD/CANCEL change it): they become current only where
// nothing else is, never supersede the organizer's version, never bind the organizer, never lift a CANCEL.
// TTLs: the current snapshot of a slot outlives every other snapshot of that slot (a newer version lives
// at least as long as the one it replaces; an older or foreign one arriving late lives no longer than the
// current), else an old link would read as current again once the newer snapshot expired.
const INGEST_LUA = `
local n = #ARGV
redis.call('HSET', KEYS[1], unpack(ARGV, 13, n))
redis.call('EXPIREAT', KEYS[1], ARGV[2])
local p = 'cur'
if ARGV[5] ~= '' then p = 'x:' .. ARGV[5] end
local cur = redis.call('HMGET', KEYS[2], p .. ':seq', p .. ':stamp', 'org', p .. ':method', p)
local seq = tonumber(ARGV[3])
local org = ARGV[12]
local bound = cur[3] and cur[3] ~= ''
local NOVERSION = { REPLY = true, COUNTER = true, REFRESH = true, DECLINECOUNTER = true }
local mine = NOVERSION[ARGV[6]] == true
local theirs = cur[1] and NOVERSION[cur[4] or ''] == true
local newer = ((not bound) or cur[3] == org) and ((not cur[1]) or (theirs and not mine) or ((theirs or not mine) and (seq > tonumber(cur[1]) or (seq == tonumber(cur[1]) and ARGV[4] >= (cur[2] or '')))))
local pre = string.sub(KEYS[1], 1, #KEYS[1] - #ARGV[1])
if cur[5] and cur[5] ~= ARGV[1] then
  local t = redis.call('EXPIRETIME', pre .. cur[5])
  if t > 0 then
    if newer then redis.call('EXPIREAT', KEYS[1], t, 'GT') else redis.call('EXPIREAT', KEYS[1], t, 'LT') end
  end
end
if newer then
  redis.call('HSET', KEYS[2], p, ARGV[1], p .. ':seq', ARGV[3], p .. ':stamp', ARGV[4], p .. ':method', ARGV[6])
  if (not bound) and org ~= '' and not mine then redis.call('HSET', KEYS[2], 'org', org) end
  if ARGV[6] == 'CANCEL' then
    local how = '1'
    if ARGV[11] ~= '' then how = ARGV[11] end
    redis.call('HSET', KEYS[2], p .. ':cancelled', how)
  else
    redis.call('HDEL', KEYS[2], p .. ':cancelled')
  end
end
local function extend(k)
  local t = redis.call('TTL', k)
  if t < 0 then redis.call('EXPIREAT', k, ARGV[2]) else redis.call('EXPIREAT', k, ARGV[2], 'GT') end
end
extend(KEYS[2])
redis.call('ZADD', KEYS[3], 'GT', ARGV[8], ARGV[7])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. ARGV[10])
local over = redis.call('ZCARD', KEYS[3]) - tonumber(ARGV[9])
if over > 0 then redis.call('ZPOPMIN', KEYS[3], over) end
extend(KEYS[3])
if newer then return 1 else return 0 end
`;

/** Only ever adds to an event state that still exists: a state that expired or was evicted is not re-created without a TTL. */
const SET_EVENT_LUA = `
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], unpack(ARGV)) end
return 0
`;

const NOT_A_VERSION: ReadonlySet<string> = new Set(['REPLY', 'COUNTER', 'REFRESH', 'DECLINECOUNTER']);

const keys = (prefix: string) => ({
  snap: (r: string, rid: string) => `${prefix}{${r}}:s:${rid}`,
  ev: (r: string, evkey: string) => `${prefix}{${r}}:e:${evkey}`,
  agenda: (r: string) => `${prefix}{${r}}:a`,
  lock: (r: string, evkey: string) => `${prefix}{${r}}:lock:${evkey}`,
  once: (kind: string, id: string) => `${prefix}${kind}:${id}`,
});

function toFields(reply: unknown): Fields | null {
  if (!Array.isArray(reply) || reply.length === 0) return null;
  const out: Fields = {};
  for (let i = 0; i + 1 < reply.length; i += 2) out[String(reply[i])] = String(reply[i + 1]);
  return out;
}

export class RedisSnapshotStore implements SnapshotStore {
  readonly kind = 'redis';
  readonly description: string;
  private readonly k: ReturnType<typeof keys>;
  constructor(private readonly h: RedisHandle, prefix: string, private readonly readMs: number) {
    this.description = h.description;
    this.k = keys(prefix);
  }
  async ingest(a: IngestArgs, timeoutMs: number): Promise<boolean> {
    const pairs = Object.entries(a.fields).flat();
    const r = await this.h.script(timeoutMs, INGEST_LUA, [this.k.snap(a.r, a.rid), this.k.ev(a.r, a.evkey), this.k.agenda(a.r)],
      [a.rid, a.expireAt, a.seq, a.stamp, a.recur, a.method, a.evkey, a.lastEnd, a.maxEvents, a.pruneBefore, a.range, a.org, ...pairs]);
    return Number(r) === 1;
  }
  async snapshot(r: string, rid: string) { return toFields(await this.h.call(this.readMs, 'HGETALL', this.k.snap(r, rid))); }
  async event(r: string, evkey: string) { return toFields(await this.h.call(this.readMs, 'HGETALL', this.k.ev(r, evkey))); }
  async setEventFields(r: string, evkey: string, f: Fields) {
    const pairs = Object.entries(f).flat();
    if (pairs.length) await this.h.script(this.readMs, SET_EVENT_LUA, [this.k.ev(r, evkey)], pairs);
  }
  async lock(r: string, evkey: string, seconds: number) {
    return (await this.h.call(this.readMs, 'SET', this.k.lock(r, evkey), '1', 'NX', 'EX', seconds)) === 'OK';
  }
  async unlock(r: string, evkey: string) { await this.h.call(this.readMs, 'DEL', this.k.lock(r, evkey)); }
  async agenda(r: string, fromS: number) {
    const v = await this.h.call(this.readMs, 'ZRANGEBYSCORE', this.k.agenda(r), fromS, '+inf');
    return Array.isArray(v) ? v.map(String) : [];
  }
  async putOnce(kind: 'otp' | 'sess', id: string, f: Fields, seconds: number) {
    await this.h.call(this.readMs, 'SET', this.k.once(kind, id), JSON.stringify(f), 'EX', seconds);
  }
  async take(kind: 'otp' | 'sess', id: string, consume: boolean) {
    const v = await this.h.call(this.readMs, consume ? 'GETDEL' : 'GET', this.k.once(kind, id));
    if (typeof v !== 'string' && !Buffer.isBuffer(v)) return null;
    try { return JSON.parse(String(v)) as Fields; } catch { return null; }
  }
  async drop(kind: 'otp' | 'sess', id: string) { await this.h.call(this.readMs, 'DEL', this.k.once(kind, id)); }
  async deleteSnapshot(r: string, rid: string) { await this.h.call(this.readMs, 'DEL', this.k.snap(r, rid)); }
  async ping(timeoutMs: number) { await this.h.call(timeoutMs, 'PING'); }
  ready(timeoutMs: number) { return this.h.ready(timeoutMs); }
  async close() { this.h.close(); }
}

interface Entry { fields?: Fields; zset?: Map<string, number>; text?: string; exp: number }

/** The same semantics as the Lua script, in memory; `now` is injectable for TTL tests. */
export class MemorySnapshotStore implements SnapshotStore {
  readonly kind = 'memory';
  readonly description = 'in-memory (this process only)';
  private readonly map = new Map<string, Entry>();
  private readonly k = keys('');
  /** Set by tests to make every call fail as if Redis were down. */
  down = false;
  constructor(private readonly now: () => number = Date.now) {}

  private live(key: string): Entry | undefined {
    if (this.down) throw new StoreUnavailableError('memory store marked down');
    const e = this.map.get(key);
    if (e && e.exp <= this.now() / 1000) { this.map.delete(key); return undefined; }
    return e;
  }
  private extend(key: string, e: Entry, at: number) { e.exp = Math.max(e.exp === Infinity ? 0 : e.exp, at); this.map.set(key, e); }

  async ingest(a: IngestArgs): Promise<boolean> {
    const sk = this.k.snap(a.r, a.rid);
    this.live(sk);
    const snap: Entry = { fields: { ...a.fields }, exp: a.expireAt };
    this.map.set(sk, snap);
    const ek = this.k.ev(a.r, a.evkey);
    const ev = this.live(ek) ?? { fields: {}, exp: 0 };
    const f = ev.fields!;
    const p = a.recur === '' ? 'cur' : `x:${a.recur}`;
    const curSeq = f[`${p}:seq`];
    const bound = (f.org ?? '') !== '';
    const mine = NOT_A_VERSION.has(a.method);
    const theirs = curSeq !== undefined && NOT_A_VERSION.has(f[`${p}:method`] ?? '');
    const newer = (!bound || f.org === a.org) && (curSeq === undefined || (theirs && !mine) ||
      ((theirs || !mine) && (a.seq > Number(curSeq) || (a.seq === Number(curSeq) && a.stamp >= (f[`${p}:stamp`] ?? '')))));
    const held = f[p] !== undefined && f[p] !== a.rid ? this.live(this.k.snap(a.r, f[p]!)) : undefined;
    if (held) snap.exp = newer ? Math.max(snap.exp, held.exp) : Math.min(snap.exp, held.exp);
    if (newer) {
      Object.assign(f, { [p]: a.rid, [`${p}:seq`]: String(a.seq), [`${p}:stamp`]: a.stamp, [`${p}:method`]: a.method });
      if (!bound && a.org !== '' && !mine) f.org = a.org;
      if (a.method === 'CANCEL') f[`${p}:cancelled`] = a.range || '1';
      else delete f[`${p}:cancelled`];
    }
    this.extend(ek, ev, a.expireAt);
    const ak = this.k.agenda(a.r);
    const ag = this.live(ak) ?? { zset: new Map(), exp: 0 };
    const z = ag.zset!;
    z.set(a.evkey, Math.max(z.get(a.evkey) ?? -Infinity, a.lastEnd));
    for (const [m, s] of z) if (s < a.pruneBefore) z.delete(m);
    const sorted = [...z].sort((x, y) => x[1] - y[1]);
    while (sorted.length > a.maxEvents) z.delete(sorted.shift()![0]);
    this.extend(ak, ag, a.expireAt);
    return newer;
  }
  async snapshot(r: string, rid: string) { const e = this.live(this.k.snap(r, rid)); return e?.fields ? { ...e.fields } : null; }
  async event(r: string, evkey: string) { const e = this.live(this.k.ev(r, evkey)); return e?.fields ? { ...e.fields } : null; }
  async setEventFields(r: string, evkey: string, f: Fields) {
    const e = this.live(this.k.ev(r, evkey));
    if (e) Object.assign(e.fields!, f);
  }
  async lock(r: string, evkey: string, seconds: number) {
    const key = this.k.lock(r, evkey);
    if (this.live(key)) return false;
    this.map.set(key, { text: '1', exp: this.now() / 1000 + seconds });
    return true;
  }
  async unlock(r: string, evkey: string) { this.live(''); this.map.delete(this.k.lock(r, evkey)); }
  async agenda(r: string, fromS: number) {
    const z = this.live(this.k.agenda(r))?.zset;
    return z ? [...z].filter(([, s]) => s >= fromS).sort((x, y) => x[1] - y[1]).map(([m]) => m) : [];
  }
  async putOnce(kind: 'otp' | 'sess', id: string, f: Fields, seconds: number) {
    this.live('');
    this.map.set(this.k.once(kind, id), { fields: { ...f }, exp: this.now() / 1000 + seconds });
  }
  async take(kind: 'otp' | 'sess', id: string, consume: boolean) {
    const key = this.k.once(kind, id);
    const e = this.live(key);
    if (e && consume) this.map.delete(key);
    return e?.fields ? { ...e.fields } : null;
  }
  async drop(kind: 'otp' | 'sess', id: string) { this.live(''); this.map.delete(this.k.once(kind, id)); }
  async deleteSnapshot(r: string, rid: string) { this.live(''); this.map.delete(this.k.snap(r, rid)); }
  async ping() { this.live(''); }
  async ready() { return !this.down; }
  async close() { this.map.clear(); }
  /** Every key, for tests (keyspace diff in the scanner simulation). */
  keys(): string[] { return [...this.map.keys()].sort(); }
}

/** '' → memory; otherwise Redis via the override store's connection factory. */
export function openSnapshotStore(url: string, prefix: string, timeoutMs: number): SnapshotStore {
  if (url.trim() === '') return new MemorySnapshotStore();
  return new RedisSnapshotStore(openRedisHandle(url, { timeoutMs, name: 'calendar-link-filter-web' }), prefix, timeoutMs);
}
