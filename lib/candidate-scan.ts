// The cheap scan: decides, while the bytes arrive, whether a message could be calendar-related.
// In: the raw message in chunks of any size. Out: `candidate` — false means the message is
// relayed untouched without any MIME parsing (the fast path for most mail).
// Fails: never; a false positive only costs one structure pass, and the words it looks for
// (MIME types, TNEF names, Content-Class) are never encoded in a MIME header.

/** Anything a calendar classifier could act on. Matched case-insensitively across chunk edges. */
const SIGNALS = /text\/calendar|application\/ics|\.ics\b|ms-tnef|winmail\.dat|content-class/i;
/** Longest signal; the tail kept from one chunk to the next so a split word is still seen. */
const TAIL = 24;

export interface ScanResult {
  candidate: boolean;
  bytes: number;
}

export interface Scanner {
  push(chunk: Buffer): void;
  result(): ScanResult;
}

export function createScanner(): Scanner {
  let candidate = false;
  let bytes = 0;
  let tail = '';
  return {
    push(chunk) {
      bytes += chunk.length;
      if (candidate) return;
      const text = chunk.toString('latin1');
      // a signal inside this chunk, or one that starts in the tail of the last (the leftmost match of the
      // joint starts in the tail if any does; the chunk is not copied onto the tail to find it)
      const joint = tail ? SIGNALS.exec(tail + text.slice(0, TAIL)) : null;
      if ((joint && joint.index < tail.length) || SIGNALS.test(text)) candidate = true;
      tail = text.length >= TAIL ? text.slice(-TAIL) : (tail + text).slice(-TAIL);
    },
    result: () => ({ candidate, bytes }),
  };
}

/** Scan a whole buffer at once (the `filter` command, tests). */
export function scanBuffer(buf: Buffer): ScanResult {
  const s = createScanner();
  s.push(buf);
  return s.result();
}
