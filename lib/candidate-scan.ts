// The cheap scan: decides, while the bytes arrive, whether a message could be calendar-related.
// In: the raw message in chunks of any size. Out: `candidate` — false means the message is
// relayed untouched without any MIME parsing (the fast path for most mail). A single-part
// message is judged by its header alone; a multipart one by every byte.
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

/**
 * A message whose top header declares no multipart (or message/*) type is one leaf part: the
 * classifiers only look at its header then (type, file name, Content-Class), so its body is not
 * scanned at all. The milter's early verdict rests on the same fact (lib/milter-edits.ts).
 */
const NESTED = /multipart|message\//i;
/** The top header's end: its first empty line (CRLF or bare LF), or an empty line at the very start. */
const HEADER_END = /(?:^|\n)\r?\n/g;
/** A top header longer than this is scanned as body text is: chunk by chunk, nothing kept. */
const HEADER_CAP = 256 * 1024;

export function createScanner(): Scanner {
  let candidate = false;
  let bytes = 0;
  let tail = '';
  /** The top header as far as it arrived; null once its end (or the cap) was passed. */
  let head: string | null = '';
  let leaf = false;

  const scanText = (text: string) => {
    // a signal inside this text, or one that starts in the tail of the last (the leftmost match of the
    // joint starts in the tail if any does; the text is not copied onto the tail to find it)
    const joint = tail ? SIGNALS.exec(tail + text.slice(0, TAIL)) : null;
    if ((joint && joint.index < tail.length) || SIGNALS.test(text)) candidate = true;
    tail = text.length >= TAIL ? text.slice(-TAIL) : (tail + text).slice(-TAIL);
  };

  return {
    push(chunk) {
      bytes += chunk.length;
      if (candidate || leaf) return;
      const text = chunk.toString('latin1');
      if (head === null) return scanText(text);
      const from = Math.max(0, head.length - 2); // the empty line may start in the last chunk
      head += text;
      HEADER_END.lastIndex = from;
      const end = HEADER_END.exec(head);
      if (!end) {
        if (head.length > HEADER_CAP) {
          const all = head;
          head = null;
          scanText(all);
        }
        return;
      }
      const header = head.slice(0, end.index);
      const body = head.slice(end.index);
      head = null;
      if (SIGNALS.test(header)) candidate = true;
      else if (!NESTED.test(header)) leaf = true;
      else scanText(body);
    },
    result() {
      // the message ended inside its header: what arrived is all there is to judge
      if (head !== null && !candidate && SIGNALS.test(head)) candidate = true;
      return { candidate, bytes };
    },
  };
}

/** Scan a whole buffer at once (the `filter` command, tests). */
export function scanBuffer(buf: Buffer): ScanResult {
  const s = createScanner();
  s.push(buf);
  return s.result();
}
