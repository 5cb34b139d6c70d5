// The cheap scan: decides, while the bytes arrive, whether a message could be calendar-related.
// In: the raw message in chunks of any size. Out: `candidate` — false means the message is
// relayed untouched without any MIME parsing (the fast path for most mail). Only header blocks
// are matched: the message's own and those of its MIME parts; body text is skipped.
// Fails: never; a false positive only costs one structure pass. MIME types and Content-Class are
// never encoded in a header; a file name may be (RFC 2231 "name*=", "name*0="; an RFC 2047 encoded
// word, which mail clients write although the RFC forbids it), so any encoded name counts too.

/** Anything a calendar classifier could act on, in a header block. Matched case-insensitively. */
const SIGNALS = /text\/calendar|application\/ics|\.ics\b|ms-tnef|winmail\.dat|content-class|name\*[0-9]*\*?\s*=|name\s*=\s*"?\s*=\?/i;

export interface ScanResult {
  candidate: boolean;
  bytes: number;
}

export interface Scanner {
  push(chunk: Buffer): void;
  result(): ScanResult;
}

/**
 * Every classifier decides from header fields: the message's own (Content-Type, Content-Class) and
 * those of its MIME parts (type, file name). A part's header follows its boundary line, which starts
 * with "--"; so only the top header and the block after each line starting with "--" are matched,
 * and body text is skipped with a native search for the next such line. A message whose top header
 * declares no multipart (or message/*) type is one leaf part: its body is not looked at at all (the
 * milter's early verdict rests on the same fact, lib/milter-edits.ts).
 */
const NESTED = /multipart|message\//i;
/** The end of a header block: its first empty line (CRLF or bare LF), or one at the very start. */
const BLOCK_END = /(?:^|\n)\r?\n/g;
/** A header block longer than this is judged as it stands and the rest read as body text. */
const BLOCK_CAP = 256 * 1024;

export function createScanner(): Scanner {
  let candidate = false;
  let bytes = 0;
  /** 'head': in the top header; 'body': between header blocks; 'part': in a block after a "--" line; 'leaf': done. */
  let state: 'head' | 'body' | 'part' | 'leaf' = 'head';
  /** Text not yet judged: the header block so far, or in 'body' the last two characters before the next chunk. */
  let pending = '';
  /** Where in `pending` the search for the block's end resumes. */
  let searched = 0;

  /** Matches one header block; true once the message is a candidate (nothing more to read). */
  const judge = (block: string): boolean => {
    if (SIGNALS.test(block)) candidate = true;
    return candidate;
  };

  return {
    push(chunk) {
      bytes += chunk.length;
      if (candidate || state === 'leaf') return;
      if (state === 'body') {
        // body text is searched as bytes and never made a string: most of a big message is skipped here
        const at = lineOfDashes(pending, chunk);
        if (at === null) {
          pending = chunk.length >= 2 ? chunk.toString('latin1', chunk.length - 2) : (pending + chunk.toString('latin1')).slice(-2);
          return;
        }
        pending = (at < 0 ? pending.slice(at) : '') + chunk.toString('latin1', Math.max(0, at));
        searched = 0;
        state = 'part';
      } else {
        pending += chunk.toString('latin1');
      }
      for (;;) {
        if (state === 'body') {
          const i = pending.indexOf('\n--');
          if (i < 0) {
            pending = pending.slice(-2);
            return;
          }
          pending = pending.slice(i + 1);
          searched = 0;
          state = 'part';
        }
        BLOCK_END.lastIndex = Math.max(0, searched - 2); // the empty line may have begun in the last chunk
        const end = BLOCK_END.exec(pending);
        if (!end) {
          searched = pending.length;
          if (pending.length <= BLOCK_CAP) return;
          if (judge(pending)) return;
          pending = pending.slice(-2);
          state = 'body';
          continue;
        }
        const block = pending.slice(0, end.index);
        if (judge(block)) return;
        if (state === 'head' && !NESTED.test(block)) {
          state = 'leaf';
          pending = '';
          return;
        }
        pending = pending.slice(end.index + 1);
        state = 'body';
      }
    },
    result() {
      // the message ended inside a header block: what arrived is all there is to judge
      if (!candidate && (state === 'head' || state === 'part')) judge(pending);
      return { candidate, bytes };
    },
  };
}

/**
 * Where the next line starting with "--" begins in `chunk`, given the last two characters before it
 * (`carry`); negative when its first "-" is the carry's last character; null when there is none.
 */
function lineOfDashes(carry: string, chunk: Buffer): number | null {
  if (carry) {
    const j = (carry + chunk.toString('latin1', 0, 2)).indexOf('\n--');
    if (j >= 0) return j + 1 - carry.length;
  }
  const i = chunk.indexOf('\n--');
  return i < 0 ? null : i + 1;
}

/** Scan a whole buffer at once (the `filter` command, tests). */
export function scanBuffer(buf: Buffer): ScanResult {
  const s = createScanner();
  s.push(buf);
  return s.result();
}
