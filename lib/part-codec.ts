// Transfer encodings and charsets for one MIME part body: quoted-printable and base64 decoding
// (whole or incremental), base64 re-encoding, and turning Unicode footer text into bytes of the
// part's charset, one character at a time, so that quoted-printable wrapping never splits one.
// In: raw body bytes, a charset name, footer strings. Out: Buffers and QP text.
// Fails: never throws on malformed input: broken escapes pass through as literal bytes; a character
// the charset cannot carry is transliterated (text) or written as &#NNNN; (HTML), never mis-encoded.

import iconv from 'iconv-lite';

export type LineBreak = '\r\n' | '\n';

/** The line break the body uses (first one found), else `fallback`. */
export function detectLineBreak(buf: Buffer, fallback: LineBreak): LineBreak {
  const nl = buf.indexOf(0x0a);
  if (nl < 0) return fallback;
  return nl > 0 && buf[nl - 1] === 0x0d ? '\r\n' : '\n';
}

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  return -1;
}

/**
 * Quoted-printable decoding, line by line (RFC 2045 6.7): trailing whitespace of a line is dropped,
 * a final `=` is a soft break, a hard break keeps its bytes. With `stopAt` ≥ 0 it returns instead
 * the encoded offset where decoded byte `stopAt` starts (after any soft breaks, so at a line start
 * when the byte opens a physical line), or buf.length when the decoded text is shorter.
 */
function qpWalk(buf: Buffer, stopAt: number): { out: Buffer; offset: number } {
  const out = Buffer.allocUnsafe(buf.length);
  let o = 0;
  let i = 0;
  while (i < buf.length) {
    const nl = buf.indexOf(0x0a, i);
    const lineEnd = nl < 0 ? buf.length : nl;
    const contentEnd = nl >= 0 && lineEnd > i && buf[lineEnd - 1] === 0x0d ? lineEnd - 1 : lineEnd;
    let e = contentEnd;
    while (e > i && (buf[e - 1] === 0x20 || buf[e - 1] === 0x09)) e--;
    let soft = false;
    if (e > i && buf[e - 1] === 0x3d) {
      soft = true;
      e--;
    }
    for (let j = i; j < e; ) {
      if (o === stopAt) return { out, offset: j };
      const c = buf[j];
      if (c !== 0x3d) {
        // a run of literal bytes up to the next "=" is copied in one go: most QP text is literal
        let eq = buf.indexOf(0x3d, j);
        if (eq < 0 || eq > e) eq = e;
        if (stopAt > o && stopAt < o + (eq - j)) return { out, offset: j + (stopAt - o) };
        if (eq - j > 32) o += buf.copy(out, o, j, eq);
        else while (j < eq) out[o++] = buf[j++];
        j = eq;
        continue;
      }
      if (j + 2 < e) {
        const hi = hexValue(buf[j + 1]);
        const lo = hexValue(buf[j + 2]);
        if (hi >= 0 && lo >= 0) {
          out[o++] = hi * 16 + lo;
          j += 3;
          continue;
        }
      }
      out[o++] = c;
      j++;
    }
    if (nl >= 0 && !soft) {
      if (o === stopAt) return { out, offset: contentEnd };
      for (let j = contentEnd; j <= nl; j++) out[o++] = buf[j];
    }
    i = nl < 0 ? buf.length : nl + 1;
  }
  return { out: out.subarray(0, o), offset: buf.length };
}

export function decodeQP(buf: Buffer): Buffer {
  return Buffer.from(qpWalk(buf, -1).out);
}

/** Encoded offset at which decoded byte `decodedIndex` of a quoted-printable body starts. */
export function qpEncodedOffset(buf: Buffer, decodedIndex: number): number {
  return qpWalk(buf, decodedIndex).offset;
}

/** Base64 decoding that ignores line breaks and junk and survives padding in the middle. */
export function decodeBase64(buf: Buffer): Buffer {
  const text = buf.toString('latin1');
  if (plainBase64(text)) return Buffer.from(text, 'base64');
  return decodeCleanBase64(text.replace(/[^A-Za-z0-9+/=]/g, ''));
}

const NOT_BASE64_OR_BREAK = /[^A-Za-z0-9+/=\r\n]/;
const PADDING_THEN_DATA = /=[\r\n]*[A-Za-z0-9+/]/;

/**
 * Base64 characters and line breaks only, with padding only at the end: the usual body. Node's decoder
 * skips the line breaks itself, so it reads such text as it reads the cleaned text, without the
 * cleaning copy (a regular-expression replace that cost three times the decoding).
 */
function plainBase64(text: string): boolean {
  return !NOT_BASE64_OR_BREAK.test(text) && !PADDING_THEN_DATA.test(text);
}

/** Characters of `text` that are not CR or LF. */
function withoutBreaks(text: string): number {
  let breaks = 0;
  for (let i = text.indexOf('\n'); i >= 0; i = text.indexOf('\n', i + 1)) breaks++;
  for (let i = text.indexOf('\r'); i >= 0; i = text.indexOf('\r', i + 1)) breaks++;
  return text.length - breaks;
}

/** decodeBase64 for text that holds base64 characters only. */
function decodeCleanBase64(clean: string): Buffer {
  if (!/=[^=]/.test(clean)) return Buffer.from(clean, 'base64');
  // concatenated encodings ("QQ==QQ=="): Node stops at the first padding, so decode each piece
  return Buffer.concat(clean.split(/(?<==)(?=[^=])/).map((s) => Buffer.from(s, 'base64')));
}

/** Line length of a base64 body (its first line), or 76 when it has none usable. */
export function base64LineLength(body: Buffer): number {
  const nl = body.indexOf(0x0a);
  if (nl < 0) return 76;
  let len = nl;
  if (len > 0 && body[len - 1] === 0x0d) len--;
  return len >= 4 && len <= 998 ? len : 76;
}

export function encodeBase64Lines(data: Buffer, lineLength: number, lb: LineBreak): Buffer {
  const b64 = data.toString('base64');
  const lines: string[] = [];
  for (let i = 0; i < b64.length; i += lineLength) lines.push(b64.slice(i, i + lineLength));
  return Buffer.from(lines.join(lb), 'latin1');
}

/** Incremental decoder for the classifier parts, fed the body chunk by chunk. */
export interface BodyDecoder {
  write(chunk: Buffer): Buffer;
  end(): Buffer;
}

export function createBodyDecoder(encoding: string): BodyDecoder {
  if (encoding === 'base64') {
    let carry = '';
    return {
      write(chunk) {
        const text = chunk.toString('latin1');
        // whole quads of plain base64 with nothing carried (a body that arrives in one piece): no cleaning
        if (carry === '' && plainBase64(text) && withoutBreaks(text) % 4 === 0) return Buffer.from(text, 'base64');
        const s = carry + text.replace(/[^A-Za-z0-9+/=]/g, '');
        const n = s.length - (s.length % 4);
        carry = s.slice(n);
        return decodeCleanBase64(s.slice(0, n)); // cleaned above already
      },
      end() {
        const s = carry;
        carry = '';
        return decodeCleanBase64(s);
      },
    };
  }
  if (encoding === 'quoted-printable') {
    // whole lines decode on their own; keep the unfinished last line for the next chunk
    let carry = Buffer.alloc(0);
    return {
      write(chunk) {
        const all = carry.length ? Buffer.concat([carry, chunk]) : chunk;
        let cut = all.lastIndexOf(0x0a) + 1;
        if (cut === 0 && all.length > 65536) cut = all.length - 2; // a very long line: keep a possible "=X" back
        carry = Buffer.from(all.subarray(cut));
        return decodeQP(all.subarray(0, cut));
      },
      end() {
        const rest = carry;
        carry = Buffer.alloc(0);
        return decodeQP(rest);
      },
    };
  }
  return { write: (chunk) => chunk, end: () => Buffer.alloc(0) };
}

// ---------------------------------------------------------------------------------------------
// Charsets

export interface CharsetInfo {
  /** ASCII bytes mean ASCII characters, and an ASCII byte never sits inside a multibyte character. */
  compatible: boolean;
  /** Only ASCII may be added (us-ascii, unknown names, ISO-2022-*). */
  asciiOnly: boolean;
  /** Stateful ISO-2022 (ESC sequences switch modes). */
  iso2022: boolean;
  /** Name iconv-lite encodes with, or null when only ASCII is written. */
  iconvName: string | null;
}

const INCOMPATIBLE =
  /^(?:utf-?(?:7|16|32)|x-utf-?(?:16|32)|ucs-?[24]|unicode|csunicode|iso-10646|hz-gb-2312|x-imap4-modified-utf7|cp12000|cp12001|cp1200|cp1201|cp65000|.*ebcdic|(?:ibm|cp)-?0?(?:37|273|277|278|280|284|285|290|297|420|423|424|500|833|838|870|871|875|880|905|924|1025|1026|1047|114\d)$)/;
const US_ASCII = /^(?:us-?ascii|ascii|ansi_x3\.4-19(?:68|86)|iso646-us|iso-ir-6|cp367|ibm367|us|csascii)$/;
const ASCII_PROBE = Array.from({ length: 95 }, (_, i) => String.fromCharCode(0x20 + i)).join('') + '\t\r\n';
const charsetCache = new Map<string, CharsetInfo>();

export function charsetInfo(charset: string | null): CharsetInfo {
  // a part's charset is asked for several times per message: look it up as given before cleaning it
  const asGiven = charsetCache.get(charset ?? '');
  if (asGiven) return asGiven;
  const name = (charset ?? '').trim().toLowerCase().replace(/^["']+|["']+$/g, '') || 'us-ascii';
  const hit = charsetCache.get(name);
  if (hit) return remember(charset ?? '', hit);
  let info: CharsetInfo;
  if (INCOMPATIBLE.test(name)) info = { compatible: false, asciiOnly: true, iso2022: false, iconvName: null };
  else if (/^(?:iso-?2022|csiso2022)/.test(name)) info = { compatible: true, asciiOnly: true, iso2022: true, iconvName: null };
  else if (US_ASCII.test(name)) info = { compatible: true, asciiOnly: true, iso2022: false, iconvName: null };
  else if (name === 'utf-8' || name === 'utf8') info = { compatible: true, asciiOnly: false, iso2022: false, iconvName: 'utf-8' };
  else if (iconv.encodingExists(name)) {
    let ok = false;
    try {
      ok = iconv.encode(ASCII_PROBE, name).equals(Buffer.from(ASCII_PROBE, 'latin1'));
    } catch {
      ok = false;
    }
    info = { compatible: ok, asciiOnly: !ok, iso2022: false, iconvName: ok ? name : null };
  } else {
    // a name nobody here knows: almost every mail charset is an ASCII superset, so ASCII is safe
    info = { compatible: true, asciiOnly: true, iso2022: false, iconvName: null };
  }
  if (charsetCache.size < 256) charsetCache.set(name, info);
  return remember(charset ?? '', info);
}

function remember(asGiven: string, info: CharsetInfo): CharsetInfo {
  if (charsetCache.size < 256) charsetCache.set(asGiven, info);
  return info;
}

const TRANSLIT: Record<string, string> = {
  'ß': 'ss', 'æ': 'ae', 'Æ': 'AE', 'œ': 'oe', 'Œ': 'OE', 'ø': 'o', 'Ø': 'O', 'đ': 'd', 'Đ': 'D',
  'ł': 'l', 'Ł': 'L', 'þ': 'th', 'Þ': 'Th', 'ð': 'd', 'Ð': 'D', 'ı': 'i', '‘': "'", '’': "'",
  '‚': "'", '“': '"', '”': '"', '„': '"', '«': '"', '»': '"', '–': '-', '—': '-', '…': '...',
  '€': 'EUR', '•': '*', '·': '.', '×': 'x',
};

/** ASCII stand-in for one character: a small table, else NFKD without combining marks, else nothing. */
export function transliterate(ch: string): string {
  const t = TRANSLIT[ch];
  if (t !== undefined) return t;
  return ch.normalize('NFKD').replace(/\p{M}/gu, '').replace(/[^\x20-\x7e]/g, '');
}

function encodeChar(ch: string, iconvName: string): Buffer | null {
  if (iconvName === 'utf-8') return Buffer.from(ch, 'utf8');
  try {
    const b = iconv.encode(ch, iconvName);
    return b.length > 0 && iconv.decode(b, iconvName) === ch ? b : null;
  } catch {
    return null;
  }
}

/** Tab and printable ASCII: the characters every charset carries as one byte of the same value. */
const PRINTABLE_ASCII = /^[\t\x20-\x7e]*$/;
const charCache = new Map<string, Buffer | null>();

function cachedChar(ch: string, iconvName: string): Buffer | null {
  const key = `${iconvName}\0${ch}`;
  let b = charCache.get(key);
  if (b === undefined) {
    b = encodeChar(ch, iconvName);
    if (charCache.size > 4096) charCache.clear(); // bounded: footers are short and repetitive
    charCache.set(key, b);
  }
  return b;
}

/**
 * One footer line in a part's charset: its bytes in one Buffer, and where each character (unit) starts,
 * since quoted-printable wrapping never splits a unit. `starts` is null when every byte is a unit of its
 * own (the usual footer), so most lines carry no per-character bookkeeping at all.
 */
export interface FooterLine {
  bytes: Buffer;
  starts: number[] | null;
  /** Every byte is tab or printable ASCII (known when the line was made, so no one scans it again). */
  printable: boolean;
}

const unitCount = (line: FooterLine): number => (line.starts ? line.starts.length : line.bytes.length);
const unitStart = (line: FooterLine, k: number): number => (line.starts ? line.starts[k]! : k);

/** The line with `unit` put in front as one more character (space-stuffing, an ISO-2022 escape). */
export function prependUnit(line: FooterLine, unit: Buffer): FooterLine {
  const bytes = Buffer.concat([unit, line.bytes]);
  const printable = line.printable && PRINTABLE_ASCII.test(unit.toString('latin1'));
  if (unit.length === 1 && !line.starts) return { bytes, starts: null, printable };
  const starts = [0];
  for (let k = 0; k < unitCount(line); k++) starts.push(unit.length + unitStart(line, k));
  return { bytes, starts, printable };
}

/** The line without the one-byte blanks (space, tab) it ends with. */
export function trimBlankUnits(line: FooterLine): FooterLine {
  const { bytes } = line;
  let n = unitCount(line);
  let end = bytes.length;
  while (n > 0 && end - unitStart(line, n - 1) === 1 && (bytes[end - 1] === 0x20 || bytes[end - 1] === 0x09)) {
    n--;
    end--;
  }
  if (end === bytes.length) return line;
  return { bytes: bytes.subarray(0, end), starts: line.starts ? line.starts.slice(0, n) : null, printable: line.printable };
}

/**
 * One line of footer text as bytes of the charset. Controls are dropped; what the charset (or a 7bit
 * part: `asciiOnly`) cannot carry becomes `&#N;` in HTML and its transliteration in text.
 */
export function encodeFooterLine(line: string, info: CharsetInfo, mode: 'text' | 'html', asciiOnly: boolean): FooterLine {
  // the usual footer line (HTML footers escape everything else): its characters are its bytes
  if (PRINTABLE_ASCII.test(line)) return { bytes: Buffer.from(line, 'latin1'), starts: null, printable: true };
  const bytes: number[] = [];
  const starts: number[] = [];
  const unit = (u: ArrayLike<number>) => {
    starts.push(bytes.length);
    for (let i = 0; i < u.length; i++) bytes.push(u[i]);
  };
  const ascii = (c: number) => {
    starts.push(bytes.length);
    bytes.push(c);
  };
  for (const ch of line) {
    const cp = ch.codePointAt(0) ?? 0;
    if (cp < 0x80) {
      if ((cp >= 0x20 && cp !== 0x7f) || cp === 0x09) ascii(cp);
      continue;
    }
    if (cp < 0xa0 && cp >= 0x80) continue; // C1 controls
    const b = !asciiOnly && !info.asciiOnly && info.iconvName ? cachedChar(ch, info.iconvName) : null;
    if (b) unit(b);
    else if (mode === 'html') unit(Buffer.from(`&#${cp};`, 'latin1'));
    else {
      const t = transliterate(ch);
      // a dropped character should not leave "Q3 ," behind: take the space before it along
      if (t === '' && starts[starts.length - 1] === bytes.length - 1 && bytes[bytes.length - 1] === 0x20) {
        starts.pop();
        bytes.pop();
      }
      for (const c of t) ascii(c.charCodeAt(0));
    }
  }
  return { bytes: Buffer.from(bytes), starts: starts.length === bytes.length ? null : starts, printable: false };
}

/** ISO-2022 mode just before byte `pos`: true when ASCII (ESC ( B / ESC ( J in G0, and SI in effect). */
export function iso2022AsciiAt(buf: Buffer, pos: number): boolean {
  return iso2022AsciiAtEach(buf, [pos])[0]!;
}

/**
 * ISO-2022 state just before each of `positions` (ascending), in one pass over the bytes: whether G0
 * holds ASCII, and whether SO has shifted to G1 (ISO-2022-KR/-CN). Only a designation into G0 (ESC ( F,
 * ESC $ F, ESC $ ( F) changes G0; ESC $ ) C and the like designate G1-G3 and switch nothing by themselves.
 */
function iso2022States(buf: Buffer, positions: number[]): Array<{ g0Ascii: boolean; shifted: boolean }> {
  const out: Array<{ g0Ascii: boolean; shifted: boolean }> = [];
  let g0Ascii = true;
  let shifted = false;
  let i = 0;
  for (const pos of positions) {
    for (; i < pos; i++) {
      const c = buf[i];
      if (c === 0x1b) {
        const a = buf[i + 1];
        const b = buf[i + 2];
        if (a === 0x28) g0Ascii = b === 0x42 || b === 0x4a;
        else if (a === 0x24 && b !== 0x29 && b !== 0x2a && b !== 0x2b) g0Ascii = false;
      } else if (c === 0x0e) shifted = true;
      else if (c === 0x0f) shifted = false;
    }
    out.push({ g0Ascii, shifted });
  }
  return out;
}

/** iso2022AsciiAt for each of `positions` (ascending), in one pass over the bytes. */
export function iso2022AsciiAtEach(buf: Buffer, positions: number[]): boolean[] {
  return iso2022States(buf, positions).map((s) => s.g0Ascii && !s.shifted);
}

const SI = Buffer.from([0x0f]);
const ESC_ASCII = Buffer.from([0x1b, 0x28, 0x42]); // ESC ( B

/** The bytes that switch ISO-2022 text back to ASCII at `pos` (SI, ESC ( B, both or none). */
export function iso2022BackToAscii(buf: Buffer, pos: number): Buffer {
  const [{ g0Ascii, shifted }] = iso2022States(buf, [pos]);
  if (g0Ascii && !shifted) return Buffer.alloc(0);
  return Buffer.concat([shifted ? SI : Buffer.alloc(0), g0Ascii ? Buffer.alloc(0) : ESC_ASCII]);
}

// ---------------------------------------------------------------------------------------------
// Quoted-printable encoding of footer lines

/** 1 for the bytes that stand as they are in the middle of a line (blanks too), else 0. */
const QP_LITERAL = Uint8Array.from({ length: 256 }, (_, c) => ((c >= 0x20 && c <= 0x7e && c !== 0x3d) || c === 0x09 ? 1 : 0));
const QP_HEX = Array.from({ length: 256 }, (_, c) => `=${c.toString(16).toUpperCase().padStart(2, '0')}`);
/**
 * Longest physical line. A unit takes at most 12 columns (4 bytes, each escaped), far less than a line,
 * so the unit that no longer fits on a line is never the one that opened it.
 */
const QP_LINE = 76;
const isBlank = (c: number | undefined) => c === 0x20 || c === 0x09;

/** Offsets of the bytes written as "=XX": those not literal, and with `lineEnd` a final blank (decoders drop it). */
function escapedOffsets(line: FooterLine, s: string, lineEnd: boolean): number[] {
  const out: number[] = [];
  const { bytes } = line;
  if (line.printable) for (let at = s.indexOf('='); at >= 0; at = s.indexOf('=', at + 1)) out.push(at); // only "=" to escape
  else for (let i = 0; i < bytes.length; i++) if (QP_LITERAL[bytes[i]] === 0) out.push(i);
  if (lineEnd && isBlank(bytes[bytes.length - 1])) out.push(bytes.length - 1);
  return out;
}

/** Byte range [start, end) of the unit that holds byte `p`. */
function unitAt(line: FooterLine, p: number): [number, number] {
  const { starts } = line;
  if (!starts) return [p, p + 1];
  let lo = 0;
  let hi = starts.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (starts[mid] <= p) lo = mid;
    else hi = mid - 1;
  }
  return [starts[lo], lo + 1 < starts.length ? starts[lo + 1] : line.bytes.length];
}

/** How many of the ascending `offsets` lie in [from, to), counting from index `i` on. */
function countIn(offsets: number[], from: number, to: number, i: number): number {
  let n = 0;
  for (; i < offsets.length && offsets[i] < to; i++) if (offsets[i] >= from) n++;
  return n;
}

/**
 * Byte offsets where the physical lines start. Each line is filled up to QP_LINE columns with the soft
 * break's "=" and never splits a unit; it then breaks after its last space when that moves only a
 * short word to the next line. A "-" opening a line is escaped there (no false boundary). Worked out
 * from the escaped offsets, not byte by byte: the usual footer line is hundreds of bytes, a few escapes.
 */
function qpLineStarts(line: FooterLine, escaped: number[]): number[] {
  const { bytes } = line;
  // a space that is a unit of its own (the only place a line breaks early)
  const isSpace = (at: number) => {
    if (bytes[at] !== 0x20) return false;
    const [start, end] = unitAt(line, at);
    return start === at && end === at + 1;
  };
  const starts = [0];
  let e = 0; // escaped[e]: the first escape at or after the start of the current line
  for (let a = 0; ; ) {
    while (e < escaped.length && escaped[e] < a) e++;
    // the first byte that no longer fits: each escape before it takes two more columns, as does a "-" opening the line
    let p = a + QP_LINE - 1 - (bytes[a] === 0x2d ? 2 : 0);
    for (let j = e; j < escaped.length && escaped[j] < p; j++) {
      if (escaped[j] >= p - 2) {
        p = escaped[j]; // the escape itself is what no longer fits
        break;
      }
      p -= 2;
    }
    if (p >= bytes.length) return starts;
    const [k, kEnd] = unitAt(line, p); // the unit that no longer fits
    // the last space before k, looked for only as far back as a short word reaches
    let space = k - 1;
    while (space > a && space >= k - 1 - QP_LINE / 3 && !isSpace(space)) space--;
    let cut = k;
    if (space > a && isSpace(space)) {
      const moved = k - 1 - space + 2 * countIn(escaped, space + 1, k, e);
      const unit = kEnd - k + 2 * countIn(escaped, k, kEnd, e);
      if (moved + unit <= QP_LINE / 3) cut = space + 1;
    }
    starts.push(cut);
    a = cut;
  }
}

/**
 * Encodes one decoded line as quoted-printable physical lines joined by soft breaks, never splitting
 * a unit, preferring to break after a space. `lineEnd`: the line is followed by a hard break or the end
 * of the body, so trailing whitespace is escaped. A physical line never starts with a literal "-" (no
 * false boundary). It runs for every footer of every message: the line breaks are worked out first,
 * then the text is written as slices between the escapes.
 */
export function qpEncodeLine(line: FooterLine, lb: LineBreak, lineEnd: boolean): string {
  if (line.bytes.length === 0) return '';
  const s = line.bytes.toString('latin1');
  const escaped = escapedOffsets(line, s, lineEnd);
  const starts = qpLineStarts(line, escaped);
  let out = '';
  let e = 0;
  for (let i = 0; i < starts.length; i++) {
    let from = starts[i];
    const to = i + 1 < starts.length ? starts[i + 1] : s.length;
    if (i > 0) out += '=' + lb;
    if (s.charCodeAt(from) === 0x2d) {
      out += QP_HEX[0x2d];
      from++;
    }
    for (; e < escaped.length && escaped[e] < to; e++) {
      out += s.slice(from, escaped[e]) + QP_HEX[s.charCodeAt(escaped[e])];
      from = escaped[e] + 1;
    }
    out += s.slice(from, to);
  }
  return out;
}
