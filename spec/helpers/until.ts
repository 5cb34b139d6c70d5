// Test helper: waits for something that happens on its own time (a queue to drain, a mailbox to
// fill, a subscription to deliver), by polling a probe.
// In: what is awaited (for the failure), a bound in ms, the probe (undefined: not yet), optionally
// what to append to the failure (a log) and the poll interval. Out: the probe's first value.
// Fails: rejects after `ms` with "timed out after N ms waiting for …" and the log.

export async function until<T>(
  what: string,
  ms: number,
  probe: () => Promise<T | undefined>,
  log?: () => Promise<string>,
  every = 100,
): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}${log ? `\n--- log ---\n${await log()}` : ''}`);
    await new Promise((r) => setTimeout(r, every));
  }
}
