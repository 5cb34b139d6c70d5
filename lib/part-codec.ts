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
  return decodeCleanBase64(buf.toString('latin1').replace(/[^A-Za-z0-9+/=]/g, ''));
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
        const s = carry + chunk.toString('latin1').replace(/[^A-Za-z0-9+/=]/g, '');
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

/**
 * One line of footer text as bytes of the charset, one Buffer per character (the units QP wrapping
 * keeps whole). Controls are dropped; what the charset (or a 7bit part: `asciiOnly`) cannot carry
 * becomes `&#N;` in HTML and its transliteration in text.
 */
/** One shared Buffer per ASCII byte: footers are built per message, these are never written to. */
const ASCII_UNITS = Array.from({ length: 128 }, (_, c) => Buffer.from([c]));
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

export function encodeFooterUnits(line: string, info: CharsetInfo, mode: 'text' | 'html', asciiOnly: boolean): Buffer[] {
  if (PRINTABLE_ASCII.test(line)) {
    // the usual footer line (HTML footers escape everything else): one shared unit per character
    const units: Buffer[] = new Array(line.length);
    for (let i = 0; i < line.length; i++) units[i] = ASCII_UNITS[line.charCodeAt(i)];
    return units;
  }
  const units: Buffer[] = [];
  for (const ch of line) {
    const cp = ch.codePointAt(0) ?? 0;
    if (cp < 0x80) {
      if ((cp >= 0x20 && cp !== 0x7f) || cp === 0x09) units.push(ASCII_UNITS[cp]);
      continue;
    }
    if (cp < 0xa0 && cp >= 0x80) continue; // C1 controls
    const b = !asciiOnly && !info.asciiOnly && info.iconvName ? cachedChar(ch, info.iconvName) : null;
    if (b) units.push(b);
    else if (mode === 'html') units.push(Buffer.from(`&#${cp};`, 'latin1'));
    else {
      const t = transliterate(ch);
      // a dropped character should not leave "Q3 ," behind: take the space before it along
      if (t === '' && units.length && units[units.length - 1].length === 1 && units[units.length - 1][0] === 0x20) units.pop();
      for (const c of t) units.push(ASCII_UNITS[c.charCodeAt(0)]);
    }
  }
  return units;
}

/** ISO-2022 mode just before byte `pos`: true when ASCII (ESC ( B / ESC ( J, SI switch back to it). */
export function iso2022AsciiAt(buf: Buffer, pos: number): boolean {
  return iso2022AsciiAtEach(buf, [pos])[0]!;
}

/** iso2022AsciiAt for each of `positions` (ascending), in one pass over the bytes. */
export function iso2022AsciiAtEach(buf: Buffer, positions: number[]): boolean[] {
  const out: boolean[] = [];
  let ascii = true;
  let i = 0;
  for (const pos of positions) {
    for (; i < pos; i++) {
      const c = buf[i];
      if (c === 0x1b) {
        if (buf[i + 1] === 0x28 && (buf[i + 2] === 0x42 || buf[i + 2] === 0x4a)) ascii = true;
        else if (buf[i + 1] === 0x24 || buf[i + 1] === 0x28) ascii = false;
      } else if (c === 0x0e) ascii = false;
      else if (c === 0x0f) ascii = true;
    }
    out.push(ascii);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Quoted-printable encoding of footer units

const HEX_DIGITS = Buffer.from('0123456789ABCDEF', 'latin1');
/** 1 for the bytes that stand as they are in the middle of a line (blanks too), else 0. */
const QP_LITERAL = Uint8Array.from({ length: 256 }, (_, c) => ((c >= 0x20 && c <= 0x7e && c !== 0x3d) || c === 0x09 ? 1 : 0));

/**
 * Writes one unit's quoted-printable text at `o` of `out` (only measures it when `out` is null) and
 * returns the offset after it. `atStart`: it opens a physical line, so a "-" there is escaped (no
 * false boundary); `wsEnd`: a final blank is escaped (it ends the line).
 */
function qpUnit(u: Buffer, atStart: boolean, wsEnd: boolean, out: Buffer | null, o: number): number {
  for (let b = 0; b < u.length; b++) {
    const c = u[b];
    const blank = c === 0x20 || c === 0x09;
    const literal = ((c >= 0x21 && c <= 0x7e && c !== 0x3d) || (blank && !(wsEnd && b === u.length - 1))) && !(atStart && b === 0 && c === 0x2d);
    if (literal) {
      if (out) out[o] = c;
      o++;
    } else {
      if (out) {
        out[o] = 0x3d;
        out[o + 1] = HEX_DIGITS[c >> 4];
        out[o + 2] = HEX_DIGITS[c & 15];
      }
      o += 3;
    }
  }
  return o;
}

/**
 * Encodes one decoded line as quoted-printable physical lines joined by soft breaks, never splitting
 * a unit, preferring to break after a space. `lineEnd`: the line is followed by a hard break or the end
 * of the body, so trailing whitespace is escaped. A physical line never starts with a literal "-" (no
 * false boundary). It runs for every footer of every message, so it works on lengths first (where the
 * lines break) and writes the bytes once.
 */
/**
 * Work arrays for qpEncodeUnits, kept between calls: making a typed array costs microseconds, more
 * than encoding a footer line. The encoder is synchronous, so one pair serves every call.
 */
let scratch = { mid: new Uint8Array(1024), byte: new Int16Array(1024) };
function scratchFor(n: number): { mid: Uint8Array; byte: Int16Array } {
  if (scratch.mid.length < n) {
    const size = 2 ** Math.ceil(Math.log2(n));
    scratch = { mid: new Uint8Array(size), byte: new Int16Array(size) };
  }
  return scratch;
}

export function qpEncodeUnits(units: Buffer[], lb: LineBreak, lineEnd: boolean, maxLen = 76): string {
  const n = units.length;
  if (n === 0) return '';
  const wsEnd = (k: number) => lineEnd && k === n - 1;
  const opening = (k: number) => qpUnit(units[k], true, wsEnd(k), null, 0); // length as a line opener
  // each unit's length in the middle of a line, and its byte when it is one, read once: element
  // access on many small Buffers is slow, on two typed arrays it is not
  const { mid, byte } = scratchFor(n);
  for (let k = 0; k < n; k++) {
    const u = units[k];
    const b = u.length === 1 ? u[0] : -1;
    byte[k] = b;
    mid[k] = b >= 0 && QP_LITERAL[b] === 1 && k !== n - 1 ? 1 : qpUnit(u, false, wsEnd(k), null, 0);
  }
  const room = maxLen - 1; // one column for the soft break's "="
  const starts = [0]; // the unit that opens each physical line
  let head = opening(0);
  let rest = 0; // length of the units after the opener, up to k - 1
  let size = 0; // of the finished physical lines, soft breaks included
  for (let k = 1; k < n; k++) {
    const t = mid[k];
    if (head + rest + t <= room) {
      rest += t;
      continue;
    }
    // break after the last space when that moves only a short word to the next line
    const first = starts[starts.length - 1];
    let cut = k;
    let moved = 0;
    for (let m = k - 1; m > first && moved + t <= maxLen / 3; m--) {
      if (byte[m] === 0x20 && mid[m] === 1) {
        cut = m + 1;
        break;
      }
      moved += mid[m];
    }
    if (cut === k) moved = 0; // nothing moves: k opens the next line
    size += head + rest - moved + 1 + lb.length;
    starts.push(cut);
    head = opening(cut);
    rest = cut === k ? 0 : moved - mid[cut] + t;
  }
  size += head + rest;
  const out = Buffer.allocUnsafe(size);
  let o = 0;
  for (let i = 0; i < starts.length; i++) {
    const end = i + 1 < starts.length ? starts[i + 1] : n;
    o = qpUnit(units[starts[i]], true, wsEnd(starts[i]), out, o);
    for (let k = starts[i] + 1; k < end; k++) {
      if (mid[k] === 1 && byte[k] >= 0) out[o++] = byte[k];
      else o = qpUnit(units[k], false, wsEnd(k), out, o);
    }
    if (end < n) o += out.write('=' + lb, o, 'latin1');
  }
  return out.toString('latin1', 0, o);
}
