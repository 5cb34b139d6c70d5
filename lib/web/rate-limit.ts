// In-process fixed-window rate limits for the web view (per IP, per token, per recipient).
// In: a scope, a key, a limit and a window. Out: hit() → false once the limit is passed.
// Fails: never; memory is bounded (the table is cleared when it grows past MAX_KEYS). Per process only:
// several `web` instances behind one proxy each allow the limit (documented in the README).

const MAX_KEYS = 100_000;

export class RateLimiter {
  private readonly counts = new Map<string, { n: number; until: number }>();
  constructor(private readonly now: () => number = Date.now) {}

  /** Count one event; true while within `limit` per `windowMs`. */
  hit(scope: string, key: string, limit: number, windowMs: number): boolean {
    const k = `${scope}\0${key}`;
    const t = this.now();
    let e = this.counts.get(k);
    if (!e || e.until <= t) {
      if (this.counts.size >= MAX_KEYS) this.counts.clear();
      e = { n: 0, until: t + windowMs };
      this.counts.set(k, e);
    }
    e.n++;
    return e.n <= limit;
  }

  reset(): void { this.counts.clear(); }

  /** True when the scope/key already passed its limit in the current window (no count). */
  over(scope: string, key: string, limit: number): boolean {
    const e = this.counts.get(`${scope}\0${key}`);
    return !!e && e.until > this.now() && e.n > limit;
  }
}
