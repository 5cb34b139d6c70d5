// In-process fixed-window rate limits for the web view (per IP, per token, per recipient).
// In: a scope, a key, a limit and a window. Out: hit() → false once the limit is passed.
// Fails: never; memory is bounded per scope (expired entries are swept, and a scope still near
// MAX_KEYS is cleared). Scopes are separate tables: a flood of client addresses (an IPv6 /64 has
// plenty) can only reset the per-client scopes, never the per-link and per-recipient ones, whose keys
// need a genuine link. Per process only: several `web` instances behind one proxy each allow the limit
// (documented in the README).

const MAX_KEYS = 100_000;

interface Entry { n: number; until: number }

export class RateLimiter {
  private readonly scopes = new Map<string, Map<string, Entry>>();
  constructor(private readonly now: () => number = Date.now) {}

  /** Count one event; true while within `limit` per `windowMs`. */
  hit(scope: string, key: string, limit: number, windowMs: number): boolean {
    let counts = this.scopes.get(scope);
    if (!counts) { counts = new Map(); this.scopes.set(scope, counts); }
    const t = this.now();
    let e = counts.get(key);
    if (!e || e.until <= t) {
      if (counts.size >= MAX_KEYS) {
        for (const [k, v] of counts) if (v.until <= t) counts.delete(k);
        if (counts.size >= MAX_KEYS * 0.9) counts.clear();
      }
      e = { n: 0, until: t + windowMs };
      counts.set(key, e);
    }
    e.n++;
    return e.n <= limit;
  }

  reset(): void { this.scopes.clear(); }

  /** True when the scope/key already passed its limit in the current window (no count). */
  over(scope: string, key: string, limit: number): boolean {
    const e = this.scopes.get(scope)?.get(key);
    return !!e && e.until > this.now() && e.n > limit;
  }
}
