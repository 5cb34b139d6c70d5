// The footer inside one body part, in that part's own charset and transfer encoding.
// In: the raw body bytes of a text/plain or text/html part, its MimePart, the Unicode footer string.
// Out: the new raw body bytes (what goes between the part's header block and its closing delimiter).
// 7bit/8bit/binary: bytes added as they are; quoted-printable: the existing encoded lines are kept and
// the footer is added as new encoded lines; base64: decoded, changed, re-encoded at the same line length.
// Fails: returns { ok: false, why } (never throws) when the footer cannot be added safely.

import type { MimePart } from './types.js';
import {
  base64LineLength, charsetInfo, decodeBase64, decodeQP, detectLineBreak, encodeBase64Lines, encodeFooterLine,
  iso2022AsciiAtEach, iso2022BackToAscii, prependUnit, qpEncodedOffset, qpEncodeLine, trimBlankUnits,
  type CharsetInfo, type FooterLine, type LineBreak,
} from './part-codec.js';

export type PartResult = { ok: true; body: Buffer } | { ok: false; why: string };

/**
 * What a footer does to a body: `bytes` take the place of body bytes [start, end) (start = end: an
 * insertion). The rewriter splices edits into the message and never copies the rest of the body.
 */
export interface BodyEdit {
  start: number;
  end: number;
  bytes: Buffer;
}
export type EditResult = { ok: true; edit: BodyEdit } | { ok: false; why: string };

const insertAt = (at: number, bytes: Buffer): EditResult => ({ ok: true, edit: { start: at, end: at, bytes } });
const replaceAll = (body: Buffer, bytes: Buffer): EditResult => ({ ok: true, edit: { start: 0, end: body.length, bytes } });

/** The body with the edit made. */
function edited(body: Buffer, r: EditResult): PartResult {
  if (!r.ok) return r;
  const { start, end, bytes } = r.edit;
  return { ok: true, body: Buffer.concat([body.subarray(0, start), bytes, body.subarray(end)]) };
}

/** RFC 5322 2.1.1: a line is at most 998 bytes without its CRLF. */
export const MAX_LINE = 998;
const NOTHING = Buffer.alloc(0);

const CONTROLS = /[\x00-\x08\x0b-\x1f\x7f]/g;
const HAS_CONTROL = /[\x00-\x08\x0b-\x1f\x7f]/;

/** Text split at CRLF, LF and lone CR. */
function splitLines(text: string): string[] {
  // footers end their lines with CRLF or LF: split at LF and cut the CR, unless a lone CR is left
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) if (lines[i].endsWith('\r')) lines[i] = lines[i].slice(0, -1);
  return lines.some((l) => l.includes('\r')) ? text.replace(/\r\n?/g, '\n').split('\n') : lines;
}

/** The line without its trailing blanks (a loop: /[ \t]+$/ tries again at every blank of a long line). */
function trimBlanksEnd(line: string): string {
  let end = line.length;
  while (end > 0 && (line.charCodeAt(end - 1) === 0x20 || line.charCodeAt(end - 1) === 0x09)) end--;
  return end === line.length ? line : line.slice(0, end);
}

/** Footer text as lines: CR/LF normalised, controls gone, trailing blanks trimmed except the "-- " separator. */
export function footerLines(text: string): string[] {
  const lines = splitLines(text).map((l) => {
    const clean = HAS_CONTROL.test(l) ? l.replace(CONTROLS, '') : l;
    return clean === '-- ' ? clean : trimBlanksEnd(clean);
  });
  while (lines.length && lines[0] === '') lines.shift();
  while (lines.length && lines[lines.length - 1] === '') lines.pop();
  return lines;
}

const SPACE = Buffer.from(' ');

/** Footer text lines in the part's charset; flowed text is space-stuffed (RFC 3676 4.4). */
export function textLines(text: string, info: CharsetInfo, asciiOnly: boolean, flowed: boolean): FooterLine[] {
  return footerLines(text).map((line) => {
    let encoded = encodeFooterLine(line, info, 'text', asciiOnly);
    // transliteration can leave a trailing space, and in flowed text that would join the next line
    if (line !== '-- ') encoded = trimBlankUnits(encoded);
    const b = encoded.bytes;
    if (flowed && (b[0] === 0x20 || b[0] === 0x3e || b.toString('latin1', 0, 5) === 'From ')) encoded = prependUnit(encoded, SPACE);
    return encoded;
  });
}

/** Mode flags of a part for the footer. */
function partMode(part: MimePart) {
  const info = charsetInfo(part.charset);
  return { info, asciiOnly: part.encoding === '7bit' || info.asciiOnly };
}

function decodeBody(part: MimePart, body: Buffer): Buffer {
  if (part.encoding === 'quoted-printable') return decodeQP(body);
  if (part.encoding === 'base64') return decodeBase64(body);
  return body;
}

/** How far from the end the tail-first searches look before they read the whole body (only a speed matter). */
const TAIL = 256;

/** Start of the physical line that holds byte `pos` (0 when there is none before it). */
const lineStartBefore = (buf: Buffer, pos: number): number => (pos <= 0 ? 0 : buf.lastIndexOf(0x0a, pos) + 1);

/**
 * The end of a quoted-printable body decoded, from a line start near the end: QP lines decode on
 * their own, so the tail decodes as the whole would. Long enough to hold the last decoded line.
 */
function qpTail(body: Buffer): { decoded: Buffer; from: number } {
  const from = lineStartBefore(body, body.length - TAIL);
  const decoded = decodeQP(body.subarray(from));
  const lf = decoded.lastIndexOf(0x0a, decoded.length - 2);
  return from === 0 || lf >= 0 ? { decoded, from } : { decoded: decodeQP(body), from: 0 };
}

const BODY_CLOSE = /^<\/body\s*>/i;

/** How a "<!--" may begin in quoted-printable text: "<!-", or "<" or "!" encoded or followed by a soft break. */
const COMMENT_OPENERS = ['<!-', '<!=', '<=', '=3C', '=3c'].map((s) => Buffer.from(s, 'latin1'));

/**
 * qpTail for HTML: a comment can open before the tail and hide a "</body>" inside it, so the window
 * starts no later than the line of the last place before it where a "<!--" may begin.
 */
function qpHtmlTail(body: Buffer): { decoded: Buffer; from: number } {
  const tail = qpTail(body);
  if (tail.from === 0) return tail;
  const opener = Math.max(...COMMENT_OPENERS.map((o) => body.lastIndexOf(o, tail.from - 1)));
  if (opener < 0) return tail;
  const from = lineStartBefore(body, opener);
  return { decoded: decodeQP(body.subarray(from)), from };
}

/** Offsets of the matches of `re` (global) in `buf` from byte `from` on, read as latin1. */
function matchOffsets(buf: Buffer, re: RegExp, from = 0): number[] {
  const text = buf.toString('latin1', from);
  const hits: number[] = [];
  re.lastIndex = 0;
  for (let m = re.exec(text); m; m = re.exec(text)) hits.push(from + m.index);
  return hits;
}

/** Index of the last match of `re` (global) in `buf`, looking at the tail first; -1 when there is none. */
function lastMatch(buf: Buffer, re: RegExp, ok: (at: number) => boolean = () => true): number {
  // a match that lies wholly in the tail is the last one; one cut by the tail's start leaves none there
  for (const from of buf.length > TAIL ? [buf.length - TAIL, 0] : [0]) {
    const hits = matchOffsets(buf, re, from);
    for (let k = hits.length - 1; k >= 0; k--) if (ok(hits[k]!)) return hits[k]!;
  }
  return -1;
}

/** True when byte `at` lies inside an HTML comment (`<!-- … -->`, also Outlook's `<!--[if mso]>`). */
function inComment(html: Buffer, at: number): boolean {
  const open = html.lastIndexOf('<!--', at);
  if (open < 0) return false;
  // from open + 2: "<!-->" and "<!--->" are (empty) comments that close at once
  const close = html.indexOf('-->', open + 2);
  return close < 0 || close + 3 > at;
}

/**
 * Elements whose content is text, not markup (raw text and RCDATA): a "</body>" there is not a tag, and
 * a footer there would show as source or not at all. Not noscript: a reader that runs no scripts shows it.
 */
const TEXT_ELEMENTS = 'script|style|xmp|textarea|title|iframe|noembed|noframes';
const TEXT_ELEMENT_END = new RegExp(`</(?:${TEXT_ELEMENTS})[\\s/>]`, 'i');
const TEXT_ELEMENT_OR_COMMENT = new RegExp(`<!--(?:>|->|[\\s\\S]*?(?:-->|$))|<(${TEXT_ELEMENTS})(?=[\\s/>])`, 'gi');

/** [start, end) of each text element's content in `html` (comments skipped), in order. */
function textElementRanges(html: Buffer): Array<[number, number]> {
  const text = html.toString('latin1');
  const ranges: Array<[number, number]> = [];
  TEXT_ELEMENT_OR_COMMENT.lastIndex = 0;
  for (let m = TEXT_ELEMENT_OR_COMMENT.exec(text); m; m = TEXT_ELEMENT_OR_COMMENT.exec(text)) {
    if (!m[1]) continue; // a comment
    const close = new RegExp(`</${m[1]}[\\s/>]`, 'gi');
    close.lastIndex = m.index + m[0].length;
    const end = close.exec(text)?.index ?? text.length;
    ranges.push([m.index, end]);
    TEXT_ELEMENT_OR_COMMENT.lastIndex = Math.max(end, m.index + 1);
  }
  return ranges;
}

/**
 * visible(at) for the closing tags htmlInsertionPoint finds: not in a comment, not in a text element.
 * The text elements are worked out (one pass) only when an end tag of one follows a hit; the usual
 * </body> near the end has none after it, and costs only that look at the few bytes behind it.
 */
function visibility(html: Buffer): (at: number) => boolean {
  let ranges: Array<[number, number]> | null = null;
  const inTextElement = (at: number): boolean => {
    if (ranges === null) {
      if (!TEXT_ELEMENT_END.test(html.toString('latin1', at))) return false;
      ranges = textElementRanges(html);
    }
    let lo = 0;
    let hi = ranges.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const [start, end] = ranges[mid]!;
      if (at < start) hi = mid - 1;
      else if (at >= end) lo = mid + 1;
      else return at > start;
    }
    return false;
  };
  return (at) => !inComment(html, at) && !inTextElement(at);
}

/** Lines of `units` that would break the message if written raw: too long, or read as a delimiter. */
function rawLineProblem(lines: Buffer[], boundaries: string[]): string | null {
  for (const l of lines) {
    if (l.length > MAX_LINE) return `a footer line is ${l.length} bytes, more than ${MAX_LINE}`;
    if (l[0] === 0x2d && l[1] === 0x2d) {
      const s = l.toString('latin1');
      if (boundaries.some((b) => s.startsWith('--' + b))) return 'a footer line would read as a MIME boundary';
    }
  }
  return null;
}

function reencodeBase64(original: Buffer, decoded: Buffer, lb: LineBreak): Buffer {
  const out = encodeBase64Lines(decoded, base64LineLength(original), lb);
  // keep whatever line break the original body ended with (mostly none: it belongs to the delimiter)
  return original[original.length - 1] === 0x0a ? Buffer.concat([out, Buffer.from(lb)]) : out;
}

function lastLine(buf: Buffer, endsLb: boolean): Buffer {
  const end = endsLb ? buf.lastIndexOf(0x0a) : buf.length;
  const start = end > 0 ? buf.lastIndexOf(0x0a, end - 1) + 1 : 0;
  return buf.subarray(start, end);
}

/**
 * How the unfinished last physical line of a quoted-printable body (one that does not end in a line
 * break) is ended without adding anything to the decoded text: 'complete' when it ends in a soft break
 * already (a line break completes it), 'soft' when a soft break "=" fits (a line has at most 76 columns,
 * and blanks before a soft break would no longer be dropped), else 'hard' (only a line break will do).
 */
function qpLineEnd(body: Buffer): 'complete' | 'soft' | 'hard' {
  const tail = lastLine(body, false).toString('latin1');
  const trimmed = tail.replace(/[ \t\r]+$/, '');
  if (trimmed.endsWith('=')) return 'complete';
  return trimmed === tail && tail.length < 76 ? 'soft' : 'hard';
}

/**
 * Appends the text footer: the body is ended with a line break, then one empty line ends the last
 * paragraph (needed for format=flowed, tidy for the rest), then the footer lines.
 */
export function appendTextFooter(part: MimePart, body: Buffer, text: string, fallbackLb: LineBreak, boundaries: string[]): PartResult {
  return edited(body, textFooterEdit(part, body, text, fallbackLb, boundaries));
}

/** appendTextFooter as an edit of the body. */
export function textFooterEdit(part: MimePart, body: Buffer, text: string, fallbackLb: LineBreak, boundaries: string[]): EditResult {
  const { info, asciiOnly } = partMode(part);
  const flowed = (part.params.format ?? '').trim().toLowerCase() === 'flowed';
  const lb = detectLineBreak(body, fallbackLb);
  const lines = textLines(text, info, asciiOnly, flowed);
  if (!lines.length) return { ok: false, why: 'empty text footer' };
  // only the end matters here (ISO-2022 needs the mode, so the whole); base64 is re-encoded anyway
  const decoded = part.encoding === 'quoted-printable' && !info.iso2022 ? qpTail(body).decoded : decodeBody(part, body);

  const empty = decoded.length === 0;
  const endsLb = !empty && decoded[decoded.length - 1] === 0x0a;
  const last = lastLine(decoded, endsLb).toString('latin1').replace(/\r$/, '');
  // in flowed text a line of spaces is a soft break too, so only a truly empty line ends a paragraph
  const blank = flowed ? last === '' : /^[ \t]*$/.test(last);
  const breaks = empty ? 0 : (endsLb ? 0 : 1) + (blank ? 0 : 1);
  // ISO-2022 text left in a two-byte mode (or shifted out) is switched back to ASCII before the added
  // line breaks, not after them: a line ends in ASCII (RFC 1468), else a reader takes CR LF for a character
  let back = info.iso2022 ? iso2022BackToAscii(decoded, decoded.length) : NOTHING;
  // no break to add, or (7bit/8bit) no room left on the last line: the switch opens the footer's first line
  const noRoom = () => part.encoding !== 'quoted-printable' && part.encoding !== 'base64' && !endsLb && lastLine(decoded, false).length + back.length > MAX_LINE;
  if (back.length && (breaks === 0 || noRoom())) {
    lines[0] = prependUnit(lines[0], back);
    back = NOTHING;
  }
  const mirror = endsLb ? lb : '';

  if (part.encoding === 'quoted-printable') {
    const enc = lines.map((l) => qpEncodeLine(l, lb, true)).join(lb);
    let prefix = '';
    let n = breaks;
    // the raw body, not the decoded text: "=" or blanks alone decode to nothing but still open a line
    if (body.length > 0 && body[body.length - 1] !== 0x0a) {
      const end = qpLineEnd(body);
      if (end === 'complete') prefix = lb;
      else if (end === 'soft' && back.length) prefix = '=' + lb; // the switch back then comes before the first break
      else {
        prefix = lb; // ends the physical line: the hard line break becomes the missing newline
        n--;
      }
    }
    const switchBack = back.length ? qpEncodeLine({ bytes: back, starts: null, printable: false }, lb, false) : '';
    return insertAt(body.length, Buffer.from(prefix + switchBack + lb.repeat(Math.max(0, n)) + enc + mirror, 'latin1'));
  }

  const raw = lines.map((l) => l.bytes);
  if (part.encoding === 'base64') {
    // inside base64 the text has line breaks of its own, whatever the encoded lines use
    const dlb = detectLineBreak(decoded, lb);
    const added = Buffer.concat([back, Buffer.from(dlb.repeat(breaks)), joinLines(raw, dlb), Buffer.from(endsLb ? dlb : '')]);
    return replaceAll(body, reencodeBase64(body, Buffer.concat([decoded, added]), lb));
  }
  const added = Buffer.concat([back, Buffer.from(lb.repeat(breaks)), joinLines(raw, lb), Buffer.from(mirror)]);
  const problem = rawLineProblem(raw, boundaries);
  if (problem) return { ok: false, why: problem };
  return insertAt(body.length, added);
}

function joinLines(lines: Buffer[], lb: LineBreak): Buffer {
  const out: Buffer[] = [];
  lines.forEach((l, i) => {
    if (i) out.push(Buffer.from(lb));
    out.push(l);
  });
  return Buffer.concat(out);
}

/** The closing tags the HTML footer goes in front of, the first found of them. */
const CLOSING_TAGS = [/<\/body\s*>/gi, /<\/html\s*>/gi];

/**
 * Where the HTML footer goes: before the last </body>, else the last </html>, else the end. A tag
 * inside a comment does not count (a footer there would never show).
 */
export function htmlInsertionPoint(html: Buffer, iso2022: boolean): number {
  const visible = visibility(html);
  for (const re of CLOSING_TAGS) {
    if (!iso2022) {
      const at = lastMatch(html, re, visible);
      if (at >= 0) return at;
      continue;
    }
    // in ISO-2022 text "<" can be half of a two-byte character: only ASCII-mode hits count (the
    // modes of all hits in one pass: a scan from the start per hit is quadratic in hostile input)
    const hits = matchOffsets(html, re);
    const ascii = iso2022AsciiAtEach(html, hits);
    for (let k = hits.length - 1; k >= 0; k--) if (ascii[k] && visible(hits[k])) return hits[k];
  }
  return html.length;
}

/** Inserts the HTML footer before the last </body> (else </html>, else at the end). */
export function insertHtmlFooter(part: MimePart, body: Buffer, html: string, fallbackLb: LineBreak, boundaries: string[]): PartResult {
  return edited(body, htmlFooterEdit(part, body, html, fallbackLb, boundaries));
}

/** insertHtmlFooter as an edit of the body. */
export function htmlFooterEdit(part: MimePart, body: Buffer, html: string, fallbackLb: LineBreak, boundaries: string[]): EditResult {
  const { info, asciiOnly } = partMode(part);
  const lb = detectLineBreak(body, fallbackLb);
  const lines = footerLines(html).map((l) => encodeFooterLine(l, info, 'html', asciiOnly));
  if (!lines.length) return { ok: false, why: 'empty HTML footer' };
  // at the end of ISO-2022 text still in a two-byte mode (no </body> to go before), switch to ASCII first
  const toAscii = (decoded: Buffer, at: number) => {
    const back = info.iso2022 && at === decoded.length ? iso2022BackToAscii(decoded, at) : NOTHING;
    if (back.length) lines[0] = prependUnit(lines[0], back);
  };
  if (part.encoding === 'quoted-printable') {
    let tail = info.iso2022 ? { decoded: decodeQP(body), from: 0 } : qpHtmlTail(body);
    let at = htmlInsertionPoint(tail.decoded, info.iso2022);
    const d = tail.decoded;
    if (tail.from > 0 && (!BODY_CLOSE.test(d.toString('latin1', at, at + 16)) || TEXT_ELEMENT_END.test(d.toString('latin1', at)))) {
      // no visible </body> in the tail: one before it would still come first (else </html>, else the end);
      // or a text element ends after it, and may have opened before the tail: the whole body decides
      tail = { decoded: decodeQP(body), from: 0 };
      at = htmlInsertionPoint(tail.decoded, info.iso2022);
    }
    toAscii(tail.decoded, at);
    const enc = lines.map((l, i) => qpEncodeLine(l, lb, i < lines.length - 1)).join(lb);
    if (at < tail.decoded.length) {
      const e = tail.from + qpEncodedOffset(body.subarray(tail.from), at);
      const prefix = e === 0 || body[e - 1] === 0x0a ? '' : '=' + lb;
      // soft breaks on both sides: the decoded footer sits exactly in front of </body>
      const ins = Buffer.from(prefix + enc + '=' + lb, 'latin1');
      return insertAt(e, ins);
    }
    let prefix = '';
    // a soft break keeps the decoded text as is; where none fits (trailing blanks, 76 columns) a line break does
    if (body.length && body[body.length - 1] !== 0x0a) prefix = qpLineEnd(body) === 'soft' ? '=' + lb : lb;
    return insertAt(body.length, Buffer.from(prefix + enc, 'latin1'));
  }

  const decoded = decodeBody(part, body);
  const at = htmlInsertionPoint(decoded, info.iso2022);
  toAscii(decoded, at);
  const raw = lines.map((l) => l.bytes);
  if (part.encoding === 'base64') {
    const ins = joinLines(raw, detectLineBreak(decoded, lb));
    return replaceAll(body, reencodeBase64(body, Buffer.concat([decoded.subarray(0, at), ins, decoded.subarray(at)]), lb));
  }
  let ins = joinLines(raw, lb);
  const problem = rawLineProblem(raw, boundaries);
  if (problem) return { ok: false, why: problem };
  // joined into the line around </body> the result may pass 998 bytes: then the footer gets lines of its own
  const lineStart = at > 0 ? decoded.lastIndexOf(0x0a, at - 1) + 1 : 0; // lastIndexOf(x, -1) would search from the end
  const nl = decoded.indexOf(0x0a, at);
  const lineEnd = nl < 0 ? decoded.length : nl > 0 && decoded[nl - 1] === 0x0d ? nl - 1 : nl;
  const head = at - lineStart + raw[0].length;
  const tail = raw[raw.length - 1].length + (lineEnd - at);
  if ((raw.length === 1 ? head + lineEnd - at : Math.max(head, tail)) > MAX_LINE) {
    ins = Buffer.concat([Buffer.from(at > lineStart ? lb : ''), ins, Buffer.from(lb)]);
  }
  return insertAt(at, ins);
}

/** A new text/plain part holding only the footer (wrap case): header lines and body. */
export function footerPart(text: string, lb: LineBreak, boundaries: string[]): { headers: string[]; body: Buffer } | null {
  const info = charsetInfo('utf-8');
  const lines = textLines(text, info, false, false);
  if (!lines.length) return null;
  const raw = lines.map((l) => l.bytes);
  const ascii = raw.every((l) => l.every((c) => c < 0x80));
  if (ascii && !rawLineProblem(raw, boundaries)) {
    return { headers: ['Content-Type: text/plain; charset=utf-8', 'Content-Transfer-Encoding: 7bit'], body: joinLines(raw, lb) };
  }
  const enc = lines.map((l) => qpEncodeLine(l, lb, true)).join(lb);
  return { headers: ['Content-Type: text/plain; charset=utf-8', 'Content-Transfer-Encoding: quoted-printable'], body: Buffer.from(enc, 'latin1') };
}
