// The in-process override cache in front of the store: what one filter instance remembers.
// In: lookups by normalised key; change notifications from the store (drop that key / everything).
// Out: { ok: true, value, stale } from the store or the cache, or { ok: false, fallback } when Redis
// failed and nothing is cached, so the caller applies redis_fallback (site | none | tempfail).
// Fails: never rejects. The first failure of an incident logs `redis.down`, the first success after it
// `redis.up`; while down, only one probe per interval goes to Redis and other lookups answer at once.

import type { LogFn } from './log.js';
import type { RedisFallback } from './override-config.js';
import type { Override } from './override-model.js';
import type { OverrideStore } from './override-store.js';

export interface CacheOptions {
  /** Entries younger than this are answered without asking the store. */
  ttlMs: number;
  /** At most this many keys (values and absences); the least recently used goes first. */
  maxEntries: number;
  fallback: RedisFallback;
  /** While the store is down, how often one lookup tries it again. Default 500 ms. */
  probeIntervalMs?: number;
  now?: () => number;
}

export type CacheLookup =
  | { ok: true; value: Override | null; stale: boolean; from: 'store' | 'cache' }
  | { ok: false; fallback: RedisFallback; error: string };

interface Entry {
  value: Override | null;
  expires: number;
}

export class OverrideCache {
  private readonly entries = new Map<string, Entry>();
  /** Lookups on their way to the store; `changed` once their key changed meanwhile (their answer predates it). */
  private readonly inflight = new Map<string, { p: Promise<CacheLookup>; changed: boolean }>();
  private readonly unsubscribe: () => void;
  private readonly now: () => number;
  private readonly probeMs: number;
  /** Bumped on every invalidation, so an answer fetched before a change is not taken as fresh after it. */
  private generation = 0;
  private downSince: number | null = null;
  private nextProbeAt = 0;
  private missedWhileDown = 0;
  private lastError = '';
  /** Metrics: called after every lookup that went to the store (not cache hits), with its time and result. */
  observeLookup: ((ms: number, ok: boolean) => void) | null = null;

  constructor(private readonly store: OverrideStore, private readonly opts: CacheOptions, private readonly log: LogFn) {
    this.now = opts.now ?? Date.now;
    this.probeMs = opts.probeIntervalMs ?? 500;
    this.unsubscribe = store.onChange((key) => this.invalidate(key));
  }

  get fallback(): RedisFallback {
    return this.opts.fallback;
  }

  /** True while the store is considered down (between redis.down and redis.up). */
  get down(): boolean {
    return this.downSince !== null;
  }

  get size(): number {
    return this.entries.size;
  }

  /**
   * key: that entry changed (an admin's set/unset): it is dropped, so a Redis that fails right now
   * gives the fallback, never the value known to be replaced. null: every entry must be fetched
   * again (after a reconnect; nothing is known to have changed): the old values stay as the stale
   * fallback. An answer still in flight is not cached as fresh.
   */
  invalidate(key: string | null): void {
    this.generation++;
    if (key === null) {
      for (const e of this.entries.values()) e.expires = 0;
      this.inflight.clear();
      // A reconnect notification: Redis is probably back, so let the next lookup probe right away.
      this.nextProbeAt = 0;
    } else {
      this.entries.delete(key);
      const running = this.inflight.get(key);
      if (running) running.changed = true;
      this.inflight.delete(key);
    }
  }

  lookup(key: string): Promise<CacheLookup> {
    const answer = this.answer(key);
    return answer instanceof Promise ? answer : Promise.resolve(answer);
  }

  /**
   * lookup(), but an answer that needs no store (a fresh entry; the store down and no probe due) comes
   * back as it is, not in a promise: a message whose recipients are all cached is then resolved without
   * waiting for a turn of the event loop.
   */
  answer(key: string): CacheLookup | Promise<CacheLookup> {
    const now = this.now();
    const e = this.entries.get(key);
    if (e && e.expires > now) {
      // Map order is recency order: move a hit to the end.
      this.entries.delete(key);
      this.entries.set(key, e);
      return { ok: true, value: e.value, stale: false, from: 'cache' };
    }
    if (this.downSince !== null && now < this.nextProbeAt) {
      this.missedWhileDown++;
      return this.withoutStore(key, this.lastError);
    }
    const running = this.inflight.get(key);
    if (running) return running.p;
    if (this.downSince !== null) this.nextProbeAt = now + this.probeMs;
    const flight = { p: null as unknown as Promise<CacheLookup>, changed: false };
    flight.p = this.fetch(key, flight).finally(() => {
      if (this.inflight.get(key) === flight) this.inflight.delete(key);
    });
    this.inflight.set(key, flight);
    return flight.p;
  }

  private async fetch(key: string, flight: { changed: boolean }): Promise<CacheLookup> {
    const gen = this.generation;
    let value: Override | null;
    const started = performance.now();
    try {
      value = await this.store.get(key);
    } catch (err) {
      this.observeLookup?.(performance.now() - started, false);
      this.markDown((err as Error).message);
      return this.withoutStore(key, this.lastError);
    }
    this.observeLookup?.(performance.now() - started, true);
    this.markUp();
    // This key changed while in flight: the answer may be the replaced value, which must never answer
    // later (not even as the fallback), nor overwrite a newer lookup's entry. Anything else changed
    // (a reconnect): keep it only as a stale fallback.
    if (!flight.changed) this.remember(key, value, gen === this.generation);
    return { ok: true, value, stale: false, from: 'store' };
  }

  private withoutStore(key: string, error: string): CacheLookup {
    const e = this.entries.get(key);
    if (e) return { ok: true, value: e.value, stale: true, from: 'cache' };
    return { ok: false, fallback: this.opts.fallback, error };
  }

  private remember(key: string, value: Override | null, fresh: boolean): void {
    if (this.opts.maxEntries <= 0) return;
    this.entries.delete(key);
    this.entries.set(key, { value, expires: fresh ? this.now() + this.opts.ttlMs : 0 });
    while (this.entries.size > this.opts.maxEntries) {
      const oldest = this.entries.keys().next().value as string;
      this.entries.delete(oldest);
    }
  }

  private markDown(error: string): void {
    this.lastError = error;
    if (this.downSince !== null) {
      this.missedWhileDown++;
      return;
    }
    this.downSince = this.now();
    this.nextProbeAt = this.downSince + this.probeMs;
    this.missedWhileDown = 1;
    this.log('redis.down', { store: this.store.description, error, fallback: this.opts.fallback, note: 'using cached overrides, else the fallback, until Redis answers again' });
  }

  private markUp(): void {
    if (this.downSince === null) return;
    this.log('redis.up', { store: this.store.description, down_ms: this.now() - this.downSince, lookups_without_redis: this.missedWhileDown });
    this.downSince = null;
    this.missedWhileDown = 0;
  }

  /** Stops listening to the store's notifications; the store itself stays open (its owner closes it). */
  close(): void {
    this.unsubscribe();
    this.entries.clear();
    this.inflight.clear();
  }
}
