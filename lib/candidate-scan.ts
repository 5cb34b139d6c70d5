// The cheap scan: decides, while the bytes arrive, whether a message could be calendar-related.
// In: the raw message in chunks of any size. Out: `candidate` — false means the message is
// relayed untouched without any MIME parsing (the fast path for most mail). Only header blocks
// are matched: the message's own and those of its MIME parts; body text is skipped.
// Fails: never; a false positive only costs one structure pass. MIME types and Content-Class are
// never encoded in a header; a file name may be (RFC 2231 "name*=", "name*0="; an RFC 2047 encoded
// word, which mail clients write although the RFC forbids it), so any encoded name counts too.
// Content-Type and Content-Disposition are read as the parsers read them: RFC 822 comments dropped
// (`text/(x)calendar`, `name=invite.(1)ics`) and quoted-pairs unescaped (`"invite.i\cs"`).

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
/** Content-Type and Content-Disposition fields with their folded lines (a fold may stand before the colon; a lone CR breaks no line). */
const MIME_FIELD = /^content-(?:type|disposition)\s*:[^\n]*(?:\n[ \t][^\n]*)*/gim;
/** An RFC 2047 word anywhere in a name or filename value is decoded (lib/mime-params.ts), not only at its start. */
const ENCODED = /=\?/;
const NAME = /name/i;
/** What a MIME field needs to read differently from its raw text: a comment, a quoted-pair, an encoded word. */
const MAY_HIDE = /[(\\]|=\?/;
/** The end of a header block: its first empty line (CRLF or bare LF), or one at the very start. */
const BLOCK_END = /(?:^|\n)\r?\n/g;
/** A header block longer than this is judged in windows of this size, each overlapping the last by BLOCK_OVERLAP. */
const BLOCK_CAP = 256 * 1024;
const BLOCK_OVERLAP = 64 * 1024;

/**
 * `field` with its comments dropped and quoted-pairs unescaped, the way libmime (types) and
 * lib/mime-params.ts (names) read it; `quotes`: a "(" inside a quoted string opens no comment.
 * An unclosed comment keeps the rest as it is. Only called on the short MIME fields.
 */
function loosen(field: string, quotes: boolean): string {
  let out = '';
  let from = 0;
  let quoted = false;
  for (let i = 0; i < field.length; i++) {
    const c = field.charCodeAt(i);
    if (c === 0x5c) i++; // a quoted-pair, in quotes or not
    else if (c === 0x22 && quotes) quoted = !quoted;
    else if (c === 0x28 && !quoted) {
      let depth = 1;
      let j = i + 1;
      for (; j < field.length && depth > 0; j++) {
        const d = field.charCodeAt(j);
        if (d === 0x5c) j++;
        else if (d === 0x28) depth++;
        else if (d === 0x29) depth--;
      }
      if (depth > 0) break;
      out += field.slice(from, i);
      from = j;
      i = j - 1;
    }
  }
  return (out + field.slice(from)).replace(/\\(.)/gs, '$1');
}

/**
 * The block's Content-Type and Content-Disposition fields as a parser reads them, in one pass:
 * `views` holds the loosened copies of the fields that have a comment or an escape (the others are
 * matched in the raw block already), `encodedName` whether a field names a file with an encoded word.
 */
function fieldViews(block: string): { views: string[]; encodedName: boolean } {
  const views: string[] = [];
  let encodedName = false;
  // no comment, escape or encoded word anywhere: the raw block said all there is (one native search)
  if (!MAY_HIDE.test(block)) return { views, encodedName };
  MIME_FIELD.lastIndex = 0;
  for (let m = MIME_FIELD.exec(block); m; m = MIME_FIELD.exec(block)) {
    const field = m[0];
    if (ENCODED.test(field) && NAME.test(field)) encodedName = true;
    if (!field.includes('(') && !field.includes('\\')) continue;
    for (const v of [loosen(field, true), loosen(field, false)]) {
      views.push(v);
      if (ENCODED.test(v) && NAME.test(v)) encodedName = true;
    }
  }
  return { views, encodedName };
}

export function createScanner(): Scanner {
  let candidate = false;
  let bytes = 0;
  /** 'head': in the top header; 'body': between header blocks; 'part': in a block after a "--" line; 'leaf': done. */
  let state: 'head' | 'body' | 'part' | 'leaf' = 'head';
  /** Text not yet judged: the header block so far, or in 'body' the last two characters before the next chunk. */
  let pending = '';
  /** Where in `pending` the search for the block's end resumes. */
  let searched = 0;
  /** The top header, judged in windows, named a multipart or message/ type in an earlier window. */
  let nested = false;

  /** The MIME fields of the block judged last, read once for both questions below. */
  let seen: { block: string; views: string[]; encodedName: boolean } | null = null;
  const viewsOf = (block: string) => (seen?.block === block ? seen : (seen = { block, ...fieldViews(block) }));
  /** Matches one header block; true once the message is a candidate (nothing more to read). */
  const judge = (block: string): boolean => {
    if (SIGNALS.test(block)) return (candidate = true);
    const v = viewsOf(block);
    if (v.encodedName || v.views.some((x) => SIGNALS.test(x))) candidate = true;
    return candidate;
  };
  const isNested = (block: string): boolean => nested || NESTED.test(block) || viewsOf(block).views.some((x) => NESTED.test(x));

  /** Judges the text in `pending` block by block; leaves in 'body' with a carry, in 'leaf', or mid-block. */
  const judgePending = (): void => {
    for (;;) {
      if (state === 'body') {
        const i = dashesInString(pending);
        if (i < 0) {
          pending = pending.slice(-3);
          return;
        }
        pending = pending.slice(i);
        searched = 0;
        state = 'part';
      }
      BLOCK_END.lastIndex = Math.max(0, searched - 2); // the empty line may have begun in the last chunk
      const end = BLOCK_END.exec(pending);
      if (!end) {
        if (pending.length > BLOCK_CAP) {
          // judged as it stands, and read on as the same block: a signal cut by the window edge
          // is whole in the overlap kept for the next window
          if (judge(pending)) return;
          if (state === 'head') nested = isNested(pending);
          pending = pending.slice(-BLOCK_OVERLAP);
        }
        searched = pending.length;
        return;
      }
      const block = pending.slice(0, end.index);
      if (judge(block)) return;
      if (state === 'head' && !isNested(block)) {
        state = 'leaf';
        pending = '';
        return;
      }
      pending = pending.slice(end.index + 1);
      state = 'body';
    }
  };

  return {
    push(chunk) {
      bytes += chunk.length;
      // chunk[from..] is still to be read
      for (let from = 0; from < chunk.length && !candidate && state !== 'leaf'; ) {
        if (state === 'body') {
          // body text is searched as bytes and never made a string: most of a big message is skipped here
          const at = lineOfDashes(pending, chunk, from);
          if (at === null) {
            pending = chunk.length - from >= 3 ? chunk.toString('latin1', chunk.length - 3) : (pending + chunk.toString('latin1', from)).slice(-3);
            return;
          }
          pending = at < 0 ? pending.slice(at) : '';
          from += Math.max(0, at);
          searched = 0;
          state = 'part';
        }
        // a header block is read as text, but only up to the first place it could end in this chunk:
        // a one-part message's body, or a part's body after its header, is never made a string
        const cut = blockCut(chunk, from);
        pending += chunk.toString('latin1', from, cut);
        from = cut;
        judgePending();
      }
    },
    result() {
      // the message ended inside a header block: what arrived is all there is to judge
      if (!candidate && (state === 'head' || state === 'part')) judge(pending);
      return { candidate, bytes };
    },
  };
}

/** A "--" at `i` opens a line: after LF, or after LF CR (mailsplit takes a lone CR in front of a delimiter). */
const opensLine = (b1: number, b2: number): boolean => b1 === 0x0a || (b1 === 0x0d && b2 === 0x0a);

/** Index of the first "--" that opens a line in `s` (not at its very start), or -1. */
function dashesInString(s: string): number {
  for (let i = s.indexOf('--', 1); i >= 0; i = s.indexOf('--', i + 1)) {
    if (opensLine(s.charCodeAt(i - 1), i >= 2 ? s.charCodeAt(i - 2) : -1)) return i;
  }
  return -1;
}

const DASHES = Buffer.from('--');

/**
 * Where the text to read as a header block may stop in `chunk` (from `from` on): just past the first
 * empty line that could end the block (after an LF in the chunk, or at its very start after the text
 * already read), else the chunk's end. Stopping early is harmless: the rest is read on the next round.
 */
function blockCut(chunk: Buffer, from: number): number {
  if (chunk[from] === 0x0a) return from + 1;
  if (chunk[from] === 0x0d && chunk[from + 1] === 0x0a) return from + 2;
  // line by line: a header block has a few dozen lines, a search for "\n\n" would read the whole body
  for (let i = chunk.indexOf(0x0a, from); i >= 0; i = chunk.indexOf(0x0a, i + 1)) {
    if (chunk[i + 1] === 0x0a) return i + 2;
    if (chunk[i + 1] === 0x0d && chunk[i + 2] === 0x0a) return i + 3;
  }
  return chunk.length;
}

/**
 * Where the next line opening with "--" (or CR "--") has its "--" in `chunk` from `from` on, counted
 * from `from`, given the last three characters before `from` (`carry`); negative when its first "-" is
 * the carry's last character; null when there is none.
 */
function lineOfDashes(carry: string, chunk: Buffer, from = 0): number | null {
  if (carry) {
    // a "--" starting at `from` or the byte after is judged by what the carry holds
    const j = dashesInString(carry + chunk.toString('latin1', from, from + 3));
    if (j >= 0 && j < carry.length + 2) return j - carry.length;
  }
  for (let i = chunk.indexOf(DASHES, from + (carry ? 2 : 1)); i >= 0; i = chunk.indexOf(DASHES, i + 1)) {
    if (opensLine(chunk[i - 1]!, i - 2 >= from ? chunk[i - 2]! : -1)) return i - from;
  }
  return null;
}

/** Scan a whole buffer at once (the `filter` command, tests). */
export function scanBuffer(buf: Buffer): ScanResult {
  const s = createScanner();
  s.push(buf);
  return s.result();
}
