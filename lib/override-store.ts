// The override store: key ("user@dom" or "@dom") → Override, in memory or in Redis. The ONLY ioredis user.
// In: a Redis URL ('' = in-memory), a key prefix and a lookup timeout. Out: get/set/unset/list, apply (many
// changes in one MULTI/EXEC) and change notifications (PUBLISH on "<prefix>changed" from every write, so
// every instance drops its cached copy).
// Fails: get rejects with StoreUnavailableError within timeoutMs when Redis is down, slow or paused (no
// offline queue: nothing waits for a reconnect); a corrupt stored value logs `redis.corrupt` once and
// reads as absent; the client keeps reconnecting with backoff forever, so it recovers by itself.

import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import type * as IoRedis from 'ioredis';
import type { LogFn } from './log.js';
import { parseRedisUrl, redact, type RedisTarget } from './override-config.js';
import { checkOverride, decodeOverride, encodeOverride, MAX_OVERRIDE_BYTES, OverrideDataError, type Override } from './override-model.js';

export type { Override } from './override-model.js';

type Redis = IoRedis.Redis;
type Cluster = IoRedis.Cluster;
type RedisOptions = IoRedis.RedisOptions;

/**
 * ioredis is loaded with the first Redis connection, not at start: loading it defines a String subclass,
 * and from then on V8 runs string methods (charCodeAt, charAt, slice …) on a slow path in the whole
 * process, 2-7x per call, felt by every header and calendar parser. An in-memory store never loads it.
 */
let loaded: typeof IoRedis | null = null;
const ioredis = (): typeof IoRedis => (loaded ??= createRequire(import.meta.url)('ioredis') as typeof IoRedis);

export interface OverrideStore {
  readonly kind: 'memory' | 'redis';
  /** Where the overrides live, safe to log (password redacted). */
  readonly description: string;
  /** The override stored under a normalised key, or null. Redis: bounded by the timeout. */
  get(key: string): Promise<Override | null>;
  /** Replace the whole override; throws OverrideDataError for an invalid value. */
  set(key: string, value: Override): Promise<void>;
  /** Remove an override; true when one existed. */
  unset(key: string): Promise<boolean>;
  /**
   * Several sets (value) and unsets (null) at once: every value is checked first (OverrideDataError,
   * nothing written), then all are written in one transaction, or none. Redis Cluster cannot (keys of
   * many slots): there `atomic` is false and a failure may leave the changes before it written.
   */
  apply(changes: ReadonlyArray<{ key: string; value: Override | null }>): Promise<void>;
  /** Whether apply() writes all or nothing. */
  readonly atomic: boolean;
  /** Every override, in no particular order (Redis: SCAN over every master, never KEYS). */
  list(): AsyncIterable<[string, Override]>;
  /** cb(key) after a change of key; cb(null) when anything may have changed (e.g. after a reconnect). */
  onChange(cb: (key: string | null) => void): () => void;
  /** Resolves true once the store can answer, false if it could not within timeoutMs. */
  ready(timeoutMs: number): Promise<boolean>;
  /** One round trip (Redis PING) within timeoutMs, for /healthz; rejects with StoreUnavailableError. */
  ping(timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

export interface StoreOptions {
  /** Full key prefix; the change channel is `${keyPrefix}changed`. Default "calfilter:override:". */
  keyPrefix?: string;
  /** Bound on one command, ms (lookups: redis_timeout_ms; the CLI uses seconds). Default 50. */
  timeoutMs?: number;
}

/** Redis did not answer (down, unreachable, paused or too slow). */
export class StoreUnavailableError extends Error {}

export const DEFAULT_KEY_PREFIX = 'calfilter:override:';

type Listener = (key: string | null) => void;

function notify(listeners: Set<Listener>, key: string | null): void {
  for (const cb of listeners) {
    try { cb(key); } catch { /* a listener's bug must not break a set() */ }
  }
}

function checked(value: Override): Override {
  const why = checkOverride(value);
  if (why) throw new OverrideDataError(why);
  return decodeOverride(encodeOverride(value)); // also refuses a value over MAX_OVERRIDE_BYTES
}

/** Embedded default: lives and dies with the process, so `serve` runs without Redis. */
export class MemoryOverrideStore implements OverrideStore {
  readonly kind = 'memory';
  readonly atomic = true;
  readonly description = 'in-memory (this process only)';
  private readonly map = new Map<string, Override>();
  private readonly listeners = new Set<Listener>();

  async get(key: string): Promise<Override | null> {
    const v = this.map.get(key);
    return v ? { ...v } : null;
  }
  async set(key: string, value: Override): Promise<void> {
    this.map.set(key, checked(value));
    notify(this.listeners, key);
  }
  async unset(key: string): Promise<boolean> {
    const had = this.map.delete(key);
    notify(this.listeners, key);
    return had;
  }
  async apply(changes: ReadonlyArray<{ key: string; value: Override | null }>): Promise<void> {
    const checkedAll = changes.map(({ key, value }) => ({ key, value: value === null ? null : checked(value) }));
    for (const { key, value } of checkedAll) {
      if (value === null) this.map.delete(key);
      else this.map.set(key, value);
    }
    for (const { key } of checkedAll) notify(this.listeners, key);
  }
  async *list(): AsyncIterable<[string, Override]> {
    for (const [k, v] of [...this.map]) yield [k, { ...v }];
  }
  onChange(cb: Listener): () => void {
    this.listeners.add(cb);
    return () => this.listeners.delete(cb);
  }
  async ready(): Promise<boolean> {
    return true;
  }
  async ping(): Promise<void> {}
  async close(): Promise<void> {
    this.listeners.clear();
  }
}

/**
 * Disconnect for good. ioredis 6 Cluster: a slots refresh still in flight at disconnect calls its
 * "next round" callback afterwards and re-arms the refresh timer forever, keeping the process
 * alive; dropping the pending callbacks ends that loop. Node connections opened by our '+node'
 * handler are ended too.
 */
function endConnection(c: Redis | Cluster): void {
  if (c instanceof ioredis().Cluster) {
    const internals = c as unknown as { _refreshSlotsCacheCallbacks?: unknown[]; clearNodesRefreshInterval?: () => void };
    internals._refreshSlotsCacheCallbacks = [];
    c.disconnect();
    internals.clearNodesRefreshInterval?.();
    for (const node of c.nodes('all')) node.disconnect();
  } else {
    c.disconnect();
  }
}

/** Reconnect forever: 100 ms doubling to 2 s, plus jitter so many instances do not reconnect in step. */
function backoff(times: number): number {
  return Math.min(100 * 2 ** Math.min(times - 1, 5), 2000) + Math.floor(Math.random() * 100);
}

const CORRUPT_MEMORY = 1000;

export class RedisOverrideStore implements OverrideStore {
  readonly kind = 'redis';
  readonly atomic: boolean;
  readonly description: string;
  private readonly client: Redis | Cluster;
  private readonly subscriber: Redis | Cluster;
  private readonly prefix: string;
  private readonly channel: string;
  private readonly timeoutMs: number;
  private readonly listeners = new Set<Listener>();
  /** Corrupt values already logged ("key\0raw"), so a bad value logs once, not once per message. */
  private readonly corruptSeen = new Set<string>();
  private closed = false;

  constructor(target: Exclude<RedisTarget, { mode: 'memory' }>, url: string, opts: StoreOptions, private readonly log: LogFn) {
    this.prefix = opts.keyPrefix ?? DEFAULT_KEY_PREFIX;
    this.channel = `${this.prefix}changed`;
    this.timeoutMs = opts.timeoutMs ?? 50;
    this.description = `${target.mode} ${redact(url)}`;
    this.atomic = target.mode !== 'cluster';
    const common: RedisOptions = {
      commandTimeout: this.timeoutMs,
      // Never queue while disconnected: a lookup must fail now and let the cache/fallback answer.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      connectTimeout: Math.max(1000, this.timeoutMs * 4),
      connectionName: 'calendar-link-filter',
    };
    if (target.mode === 'cluster') {
      const auth = { username: target.username, password: target.password };
      this.client = new (ioredis().Cluster)(target.nodes, {
        enableOfflineQueue: false,
        clusterRetryStrategy: backoff,
        // No periodic slots refresh: ioredis 6 re-arms its refresh timer after disconnect when a
        // refresh was in flight, which keeps a closed store's process alive. A failover is still
        // noticed: a command to the dead master fails and ioredis refreshes the slots then.
        slotsRefreshInterval: 0,
        retryDelayOnFailover: 50,
        redisOptions: { ...common, ...auth },
      });
      // The subscriber may queue (it runs no lookups) and waits for Redis however long it is away.
      this.subscriber = this.client.duplicate(undefined, { enableOfflineQueue: true, redisOptions: { ...common, ...auth, maxRetriesPerRequest: null, commandTimeout: undefined } });
    } else {
      const base: RedisOptions = { ...common, retryStrategy: backoff };
      let client: Redis;
      if (target.mode === 'sentinel') {
        client = new (ioredis().Redis)({ ...base, sentinels: target.sentinels, name: target.name, db: target.db, username: target.username, password: target.password, sentinelRetryStrategy: backoff });
      } else if (target.path !== undefined) {
        client = new (ioredis().Redis)({ ...base, path: target.path, db: target.db });
      } else {
        client = new (ioredis().Redis)(target.url, base);
      }
      this.client = client;
      this.subscriber = client.duplicate({ enableOfflineQueue: true, maxRetriesPerRequest: null, commandTimeout: undefined });
    }
    // Errors are reported by the cache as one redis.down per incident; unhandled they would print per retry.
    this.client.on('error', () => undefined);
    this.subscriber.on('error', () => undefined);
    this.subscriber.on('message', (channel: string, key: string) => {
      if (channel === this.channel) notify(this.listeners, key === '' ? null : key);
    });
    // After a (re)connect we may have missed notifications: everything cached may be stale.
    this.subscriber.on('ready', () => notify(this.listeners, null));
    // A Cluster opens node connections lazily, on a node's first command: that first lookup then outlasts
    // the timeout (and meets the fallback). Open each one as soon as the cluster names it, replicas too,
    // so a promoted replica is already connected when a failover needs it.
    if (this.client instanceof ioredis().Cluster) {
      this.client.on('+node', (node: Redis) => { if (!this.closed && node.status === 'wait') node.connect().catch(() => undefined); });
    }
    this.subscriber.subscribe(this.channel).catch(() => undefined);
  }

  private bounded<T>(what: string, run: () => Promise<T>, timeoutMs = this.timeoutMs): Promise<T> {
    if (this.closed) return Promise.reject(new StoreUnavailableError('the override store is closed'));
    // commandTimeout bounds one command; this also bounds a Cluster's redirections and retries.
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => reject(new StoreUnavailableError(`${what}: no answer from Redis within ${timeoutMs} ms`)), timeoutMs);
      run().then(
        (v) => { clearTimeout(timer); resolve(v); },
        (err: Error) => { clearTimeout(timer); reject(err instanceof OverrideDataError ? err : new StoreUnavailableError(`${what}: ${err.message}`)); },
      );
    });
  }

  private decode(key: string, raw: string | null): Override | null {
    if (raw === null || raw === '') return null; // GETRANGE answers "" for a missing key
    try {
      return decodeOverride(raw);
    } catch (err) {
      this.corrupt(key, raw, (err as Error).message);
      return null;
    }
  }

  /** Logs a corrupt value once per key and content (remembered by hash: the value may be large). */
  private corrupt(key: string, raw: string, reason: string): void {
    const seen = `${key}\0${createHash('sha256').update(raw).digest('base64')}`;
    if (this.corruptSeen.has(seen)) return;
    if (this.corruptSeen.size >= CORRUPT_MEMORY) this.corruptSeen.clear();
    this.corruptSeen.add(seen);
    this.log('redis.corrupt', { key: this.prefix + key, reason, note: 'ignored; treated as no override' });
  }

  /**
   * The stored text of one key, at most MAX_OVERRIDE_BYTES + 1 bytes of it (so a huge value cannot
   * hold up the lookups queued behind it; it reads as corrupt). A key of another type (WRONGTYPE) is
   * corrupt data about that key, not a Redis outage: it must not make every other lookup fall back.
   */
  private async readRaw(key: string): Promise<string | null> {
    try {
      return await this.client.getrange(this.prefix + key, 0, MAX_OVERRIDE_BYTES);
    } catch (err) {
      if (!/^WRONGTYPE/.test((err as Error).message)) throw err;
      this.corrupt(key, 'WRONGTYPE', 'not a string value (WRONGTYPE)');
      return null;
    }
  }

  async ping(timeoutMs = this.timeoutMs): Promise<void> {
    await this.bounded('ping', () => this.client.ping(), timeoutMs);
  }

  get(key: string): Promise<Override | null> {
    return this.bounded('get', async () => this.decode(key, await this.readRaw(key)));
  }

  async set(key: string, value: Override): Promise<void> {
    const v = checked(value);
    return this.bounded('set', async () => {
      await this.client.set(this.prefix + key, encodeOverride(v));
      await this.client.publish(this.channel, key);
    });
  }

  unset(key: string): Promise<boolean> {
    return this.bounded('unset', async () => {
      const n = await this.client.del(this.prefix + key);
      await this.client.publish(this.channel, key);
      return n > 0;
    });
  }

  async apply(changes: ReadonlyArray<{ key: string; value: Override | null }>): Promise<void> {
    const encoded = changes.map(({ key, value }) => ({ key, raw: value === null ? null : encodeOverride(checked(value)) }));
    if (encoded.length === 0) return;
    if (!this.atomic) {
      // Cluster: MULTI needs one hash slot, and override keys spread over all of them.
      for (const { key, raw } of encoded) {
        await this.bounded('set', async () => {
          await (raw === null ? this.client.del(this.prefix + key) : this.client.set(this.prefix + key, raw));
          await this.client.publish(this.channel, key);
        });
      }
      return;
    }
    // One MULTI/EXEC: a refused command (OOM, NOPERM, READONLY) aborts the whole transaction. Announced
    // inside it too, so no instance hears of a change that was not made. Larger batches get longer.
    await this.bounded('apply', async () => {
      const tx = (this.client as Redis).multi();
      for (const { key, raw } of encoded) {
        if (raw === null) tx.del(this.prefix + key);
        else tx.set(this.prefix + key, raw);
      }
      for (const { key } of encoded) tx.publish(this.channel, key);
      const results = await tx.exec();
      if (results === null) throw new Error('the transaction was aborted');
      const failed = results.find(([err]) => err);
      if (failed) throw failed[0] as Error;
    }, this.timeoutMs + encoded.length);
  }

  async *list(): AsyncIterable<[string, Override]> {
    // A Cluster has no global SCAN: walk every master. SCAN may return a key twice, hence `seen`.
    const nodes = this.client instanceof ioredis().Cluster ? this.client.nodes('master') : [this.client];
    const pattern = this.prefix.replace(/[*?[\]\\]/g, '\\$&') + '*';
    const seen = new Set<string>();
    for (const node of nodes) {
      let cursor = '0';
      do {
        const [next, keys] = await this.bounded('scan', () => node.scan(cursor, 'MATCH', pattern, 'COUNT', 500));
        cursor = next;
        const fresh = keys.filter((k) => !seen.has(k));
        fresh.forEach((k) => seen.add(k));
        if (fresh.length === 0) continue;
        // MGET needs one hash slot in a Cluster; there, single GETs routed by the client.
        const values = this.client instanceof ioredis().Cluster
          ? await Promise.all(fresh.map((k) => this.bounded('get', () => this.readRaw(k.slice(this.prefix.length)))))
          : await this.bounded('mget', () => (this.client as Redis).mget(...fresh));
        for (let i = 0; i < fresh.length; i++) {
          const key = (fresh[i] as string).slice(this.prefix.length);
          const o = this.decode(key, values[i] ?? null);
          if (o) yield [key, o];
        }
      } while (cursor !== '0');
    }
  }

  onChange(cb: Listener): () => void {
    this.listeners.add(cb);
    return () => this.listeners.delete(cb);
  }

  /**
   * False as soon as a connection attempt fails (refused, reset, no route), not only after
   * timeoutMs: a `filter` run (one message per process, Exim's or Postfix's pipe) would otherwise wait
   * the whole second for a Redis that is down, and then meet the fallback anyway.
   */
  async ready(timeoutMs: number): Promise<boolean> {
    const until = Date.now() + timeoutMs;
    const isReady = (c: Redis | Cluster) => (c.status === 'ready' ? Promise.resolve(true) : new Promise<boolean>((resolve) => {
      const done = (ok: boolean) => { clearTimeout(timer); c.off('ready', onReady); c.off('error', onError); resolve(ok); };
      const onReady = () => done(true);
      const onError = () => done(false);
      const timer = setTimeout(() => done(false), Math.max(0, until - Date.now()));
      c.once('ready', onReady);
      c.once('error', onError);
    }));
    if (!(await isReady(this.client))) return false;
    // A Cluster is "ready" once it knows its slots; lookups need each master's own connection too.
    if (this.client instanceof ioredis().Cluster) return (await Promise.all(this.client.nodes('master').map(isReady))).every(Boolean);
    return true;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.listeners.clear();
    // disconnect, not quit: quit would wait for a Redis that may be gone.
    endConnection(this.subscriber);
    endConnection(this.client);
  }
}

/** '' → the embedded memory store; otherwise Redis (standalone, Sentinel or Cluster, per the URL). */
export function openOverrideStore(url: string | '', opts: StoreOptions, log: LogFn): OverrideStore {
  const target = parseRedisUrl(url);
  if (target.mode === 'memory') return new MemoryOverrideStore();
  return new RedisOverrideStore(target, url.trim(), opts, log);
}

/**
 * A plain Redis connection for the web view's snapshot store (lib/snapshot-store.ts), opened from the same
 * `redis` URL forms, so ioredis stays in this file. Generic commands only; every call is bounded by its
 * timeout and rejects with StoreUnavailableError (down, slow, or a refused write such as OOM).
 */
export interface RedisHandle {
  readonly description: string;
  /** One command; the raw reply (HGETALL is a flat array). */
  call(timeoutMs: number, command: string, ...args: Array<string | number>): Promise<unknown>;
  /** A Lua script by EVALSHA, sent in full once Redis answers NOSCRIPT. */
  script(timeoutMs: number, lua: string, keys: string[], args: Array<string | number>): Promise<unknown>;
  ready(timeoutMs: number): Promise<boolean>;
  close(): void;
}

export function openRedisHandle(url: string, opts: { timeoutMs: number; name?: string }): RedisHandle {
  const target = parseRedisUrl(url);
  if (target.mode === 'memory') throw new Error('openRedisHandle needs a Redis URL');
  const common: RedisOptions = {
    commandTimeout: opts.timeoutMs,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectTimeout: Math.max(1000, opts.timeoutMs * 4),
    connectionName: opts.name ?? 'calendar-link-filter-web',
  };
  let client: Redis | Cluster;
  if (target.mode === 'cluster') {
    client = new (ioredis().Cluster)(target.nodes, { enableOfflineQueue: false, clusterRetryStrategy: backoff, slotsRefreshInterval: 0, retryDelayOnFailover: 50, redisOptions: { ...common, username: target.username, password: target.password } });
    client.on('+node', (node: Redis) => { if (node.status === 'wait') node.connect().catch(() => undefined); });
  } else if (target.mode === 'sentinel') {
    client = new (ioredis().Redis)({ ...common, retryStrategy: backoff, sentinels: target.sentinels, name: target.name, db: target.db, username: target.username, password: target.password, sentinelRetryStrategy: backoff });
  } else if (target.path !== undefined) {
    client = new (ioredis().Redis)({ ...common, retryStrategy: backoff, path: target.path, db: target.db });
  } else {
    client = new (ioredis().Redis)(target.url, { ...common, retryStrategy: backoff });
  }
  client.on('error', () => undefined);
  let closed = false;
  const shas = new Map<string, string>();
  const bounded = <T>(what: string, ms: number, run: () => Promise<T>): Promise<T> => {
    if (closed) return Promise.reject(new StoreUnavailableError('the Redis connection is closed'));
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => reject(new StoreUnavailableError(`${what}: no answer from Redis within ${ms} ms`)), ms);
      run().then((v) => { clearTimeout(timer); resolve(v); }, (err: Error) => { clearTimeout(timer); reject(new StoreUnavailableError(`${what}: ${err.message}`)); });
    });
  };
  const sha1 = (lua: string) => {
    let s = shas.get(lua);
    if (!s) { s = createHash('sha1').update(lua).digest('hex'); shas.set(lua, s); }
    return s;
  };
  return {
    description: `${target.mode} ${redact(url.trim())}`,
    call: (ms, command, ...args) => bounded(command, ms, () => client.call(command, ...args) as Promise<unknown>),
    script: (ms, lua, keys, args) => bounded('script', ms, async () => {
      const sha = sha1(lua);
      try {
        return await client.call('EVALSHA', sha, keys.length, ...keys, ...args);
      } catch (err) {
        if (!/NOSCRIPT/.test((err as Error).message)) throw err;
        return await client.call('EVAL', lua, keys.length, ...keys, ...args);
      }
    }),
    ready: (ms) => (client.status === 'ready' ? Promise.resolve(true) : new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => { client.off('ready', on); resolve(false); }, ms);
      const on = () => { clearTimeout(timer); resolve(true); };
      client.once('ready', on);
    })),
    close: () => { if (!closed) { closed = true; endConnection(client); } },
  };
}
