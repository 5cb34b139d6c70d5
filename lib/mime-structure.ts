// The structure pass: one mailsplit Splitter run over the spooled message (over its skeleton when it is in
// memory, see lib/mime-skeleton.ts); nothing is rewritten or joined. In: a SpoolReader. Out: every MIME
// node in document order with byte offsets into the raw message, its type/disposition/charset/encoding,
// the decoded calendar/.ics/TNEF bodies (capped), the root headers.
// message/rfc822 content stays opaque. Fails: never throws on what the message contains; when the byte
// count does not add up, a multipart is left open mid-message or the splitter gives up, the structure
// says damaged = true and the rewriter refuses it. Only a read error of the spool rejects.

import { Splitter } from '@zone-eu/mailsplit';
import type { MimeNode as SplitNode, SplitterChunk } from '@zone-eu/mailsplit';
import type { MessageStructure, MimePart } from './types.js';
import type { SpoolReader } from './spool.js';
import { parseHeaderValue } from './mime-params.js';
import { createBodyDecoder, type BodyDecoder } from './part-codec.js';
import { skeleton, SkeletonMap } from './mime-skeleton.js';

/** Default cap for a classifier part's decoded bytes. */
export const MAX_DECODED_BYTES = 4 * 1024 * 1024;

export interface AnalyzeOptions {
  /** Decoded bytes kept per classifier part (default MAX_DECODED_BYTES); the rest is dropped, `truncated` set. */
  maxDecoded?: number;
}

export interface AnalyzeResult {
  structure: MessageStructure;
  /** Root header lines, unfolded, keys lower-case, in message order. */
  headers: Array<[string, string]>;
}

const CLASSIFIER_TYPES = new Set(['text/calendar', 'application/ics', 'application/ms-tnef', 'application/vnd.ms-tnef']);

/** Parts a classifier reads (and the rewriter never touches): calendar, .ics, TNEF. */
export function isClassifierPart(p: Pick<MimePart, 'contentType' | 'filename'>): boolean {
  if (CLASSIFIER_TYPES.has(p.contentType)) return true;
  const name = (p.filename ?? '').trim().toLowerCase();
  return name.endsWith('.ics') || name === 'winmail.dat';
}

/** First value of header `key` (lower-case) in a header list, or null. */
export function headerValue(headers: Array<[string, string]>, key: string): string | null {
  for (const [k, v] of headers) if (k === key) return v;
  return null;
}

/** Header bytes arrive as latin1 "binary" strings: read them as UTF-8 when they are valid UTF-8. */
function binaryToText(s: string): string {
  if (!/[\x80-\xff]/.test(s)) return s;
  const u = Buffer.from(s, 'latin1').toString('utf8');
  return u.includes('\uFFFD') ? s : u;
}

function headerPairs(node: SplitNode): Array<[string, string]> {
  if (!node.headers) return [];
  const out: Array<[string, string]> = [];
  for (const { key, line } of node.headers.getList()) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    let value = line.slice(colon + 1);
    if (value.includes('\n') || value.includes('\r')) value = value.replace(/\r?\n(?=[ \t])/g, '').replace(/[\r\n]+/g, '');
    value = value.trim();
    out.push([key.trim().toLowerCase(), binaryToText(value)]);
  }
  return out;
}

interface Build {
  part: MimePart;
  boundary: Buffer | null;
  /** Own closing delimiter seen after a child (mailsplit's "epilogue"). */
  closed: boolean;
  children: number;
  decoder?: BodyDecoder;
  decoded?: Buffer[];
  decodedLen?: number;
}

/** Turns the splitter's objects into MimeParts, counting bytes as they pass. */
class StructureBuilder {
  readonly parts: MimePart[] = [];
  private readonly builds = new Map<SplitNode, Build>();
  /** Open multipart chain, innermost last; mirrors which delimiter lines mailsplit still honours. */
  private stack: Build[] = [];
  private pos = 0;
  private prev1 = 0x0a; // last two bytes seen, for the line break in front of a delimiter
  private prev2 = 0;
  rootHeaders: Array<[string, string]> = [];
  damaged = false;
  why: string[] = [];

  constructor(private readonly maxDecoded: number) {}

  private hurt(reason: string): void {
    this.damaged = true;
    if (this.why.length < 8) this.why.push(reason);
  }

  /** take(), but a surprise in our own bookkeeping marks the structure damaged instead of throwing. */
  takeSafely(obj: SplitterChunk, map?: SkeletonMap): void {
    try {
      this.take(obj, map);
    } catch (err) {
      this.hurt(`structure: ${(err as Error).message}`);
    }
  }

  /** With a skeleton map, chunk values are swapped for the original bytes they stand for. */
  take(obj: SplitterChunk, map?: SkeletonMap): void {
    if (obj.type === 'node') {
      map?.take(obj._headerlen);
      this.onNode(obj);
      return;
    }
    const value = map ? map.take(obj.value.length) : obj.value;
    if (obj.type === 'body') this.onBody(obj.node, value);
    else this.onData(value);
  }

  private advance(buf: Buffer): void {
    this.pos += buf.length;
    if (buf.length >= 2) {
      this.prev2 = buf[buf.length - 2];
      this.prev1 = buf[buf.length - 1];
    } else if (buf.length === 1) {
      this.prev2 = this.prev1;
      this.prev1 = buf[0];
    }
  }

  private onNode(node: SplitNode): void {
    const parent = node.parentNode ? this.builds.get(node.parentNode) : undefined;
    if (node.parentNode && !parent) this.hurt('node without a known parent');
    if (parent) {
      if (this.stack[this.stack.length - 1] !== parent) this.hurt('part boundaries out of step');
      // mailsplit splits any part that names a boundary; a text/plain with children is no MIME we can trust
      if (!parent.part.multipart) this.hurt(`${parent.part.contentType} (part ${parent.part.index}) has parts of its own`);
      parent.children++;
    }
    const headers = headerPairs(node);
    const ct = headerValue(headers, 'content-type');
    const parsed = parseHeaderValue(ct ?? '');
    const disp = parseHeaderValue(headerValue(headers, 'content-disposition') ?? '');
    const boundary = node._boundary ? Buffer.from(node._boundary) : null;
    // the boundary mailsplit splits by (comments dropped, trailing space trimmed) is the one that counts
    if (boundary) parsed.params.boundary = boundary.toString('latin1');
    const splitType = typeof node.contentType === 'string' ? node.contentType.toLowerCase() : '';
    const raw = node.getHeaders();
    const part: MimePart = {
      index: this.parts.length,
      parent: parent ? parent.part.index : null,
      depth: parent ? parent.part.depth + 1 : 0,
      contentType: ct !== null && splitType.includes('/') ? splitType : 'text/plain',
      params: parsed.params,
      disposition: disp.value || null,
      filename: disp.params.filename || parsed.params.name || null,
      charset: parsed.params.charset ? parsed.params.charset.trim().toLowerCase() || null : null,
      encoding: (typeof node.encoding === 'string' && node.encoding.trim().toLowerCase()) || '7bit',
      multipart: Boolean(node.multipart),
      headerStart: this.pos,
      bodyStart: this.pos + node._headerlen,
      bodyEnd: this.pos + node._headerlen,
      headers,
    };
    if (raw.length !== node._headerlen) this.hurt('header bytes do not add up');
    if (part.multipart && !boundary) this.hurt(`${part.contentType} without a usable boundary`);
    const build: Build = { part, boundary, closed: false, children: 0 };
    if (!part.multipart && isClassifierPart(part)) {
      build.decoder = createBodyDecoder(part.encoding);
      build.decoded = [];
      build.decodedLen = 0;
    }
    this.parts.push(part);
    this.builds.set(node, build);
    if (part.index === 0) this.rootHeaders = headers;
    this.stack.push(build);
    this.advance(raw.subarray(0, node._headerlen));
  }

  private onBody(node: SplitNode, value: Buffer): void {
    const b = this.builds.get(node);
    if (!b || b.part.bodyEnd !== this.pos) this.hurt('body bytes out of place');
    this.advance(value);
    if (!b) return;
    b.part.bodyEnd = this.pos;
    if (b.decoder && !b.part.truncated) this.keep(b, b.decoder.write(value));
  }

  private keep(b: Build, chunk: Buffer): void {
    if (!chunk.length || !b.decoded) return;
    const room = this.maxDecoded - (b.decodedLen ?? 0);
    if (chunk.length > room) {
      b.part.truncated = true;
      chunk = chunk.subarray(0, Math.max(0, room));
    }
    // a copy: a view would pin the whole chunk the splitter read
    if (chunk.length) b.decoded.push(Buffer.from(chunk));
    b.decodedLen = (b.decodedLen ?? 0) + chunk.length;
  }

  /** Multipart bytes: preamble, delimiter lines, epilogue. Delimiters close the parts above their owner. */
  private onData(value: Buffer): void {
    let i = 0;
    while (i < value.length) {
      const nl = value.indexOf(0x0a, i);
      const end = nl < 0 ? value.length : nl + 1;
      const lineStart = i === 0 ? this.prev1 === 0x0a : true;
      let s = i;
      if (value[s] === 0x0d && value[s + 1] !== 0x0a) s++; // a lone CR in front, as mailsplit allows
      if (lineStart && value[s] === 0x2d && value[s + 1] === 0x2d) this.delimiter(value, i, s, end);
      i = end;
    }
    this.advance(value);
  }

  /** Byte `j` of `value`, where -1 and -2 are the last two bytes before it. */
  private byteAt(value: Buffer, j: number): number | undefined {
    return j >= 0 ? value[j] : j === -1 ? this.prev1 : this.prev2;
  }

  private delimiter(value: Buffer, lineAt: number, s: number, end: number): void {
    for (let k = this.stack.length - 1; k >= 0; k--) {
      const b = this.stack[k];
      if (!b.boundary || b.closed) continue;
      const kind = matchDelimiter(value, s + 2, end, b.boundary);
      if (!kind) continue;
      const lb = this.byteAt(value, lineAt - 1) === 0x0a ? (this.byteAt(value, lineAt - 2) === 0x0d ? 2 : 1) : 0;
      const at = Math.max(this.pos + lineAt - lb, b.part.bodyStart);
      for (let m = this.stack.length - 1; m > k; m--) {
        const x = this.stack[m];
        // an empty body: the header block's last line break doubles as the delimiter's
        const end = Math.max(at, x.part.bodyStart);
        if (x.part.multipart) {
          x.part.bodyEnd = end;
          if (x.boundary && !x.closed) this.hurt(`${x.part.contentType} (part ${x.part.index}) never closed`);
        } else if (x.part.bodyEnd !== end) {
          // mailsplit hands an empty body's one line as body, though that line break is the
          // delimiter's own (RFC 2046 5.1.1): the body is empty, not damaged
          if (x.part.bodyStart === end && x.part.bodyEnd - end === lb) x.part.bodyEnd = end;
          else this.hurt(`part ${x.part.index} body does not end at its delimiter`);
        }
      }
      this.stack.length = k + 1;
      // a closing delimiter before the first child is preamble to mailsplit, it does not close
      if (kind === 2 && b.children > 0) b.closed = true;
      return;
    }
  }

  finish(size: number, error: Error | null): AnalyzeResult {
    if (error) this.hurt(`splitter: ${error.message}`);
    if (this.pos !== size) this.hurt(`byte count ${this.pos} != size ${size}`);
    if (this.parts.length === 0) {
      this.parts.push({
        index: 0, parent: null, depth: 0, contentType: 'text/plain', params: {}, disposition: null,
        filename: null, charset: null, encoding: '7bit', multipart: false, headerStart: 0, bodyStart: 0,
        bodyEnd: size, headers: [],
      });
      this.hurt('no MIME node at all');
    }
    // Outer multiparts left open at the very end are common (a generator that forgot the last
    // "--b--") and harmless when the innermost one closed properly: then every part is whole.
    // A leaf or an unclosed multipart at the end means the message was cut short.
    const top = this.stack[this.stack.length - 1];
    const endsClean = top !== undefined && top.part.multipart && top.closed;
    for (const b of this.stack) {
      if (b.part.multipart) {
        b.part.bodyEnd = this.pos;
        if (b.boundary && !b.closed && !endsClean) this.hurt(`${b.part.contentType} (part ${b.part.index}) never closed`);
      }
    }
    // counts that ran past the end (the splitter emitted some bytes twice) must not point outside the message
    for (const p of this.parts) {
      p.headerStart = Math.min(p.headerStart, size);
      p.bodyStart = Math.min(Math.max(p.bodyStart, p.headerStart), size);
      p.bodyEnd = Math.min(Math.max(p.bodyEnd, p.bodyStart), size);
    }
    for (const b of this.builds.values()) {
      if (!b.decoder || !b.decoded) continue;
      if (!b.part.truncated) this.keep(b, b.decoder.end());
      // keep() copied every chunk already: one chunk (a body read in one piece) is the result as it is
      b.part.decoded = b.decoded.length === 1 ? b.decoded[0] : Buffer.concat(b.decoded);
      b.part.truncated = b.part.truncated === true;
    }
    return { structure: { parts: this.parts, size, damaged: this.damaged }, headers: this.rootHeaders };
  }
}

/** 1: "--boundary", 2: "--boundary--", 0: no delimiter. Whitespace and CRs before the LF are allowed. */
function matchDelimiter(line: Buffer, at: number, end: number, boundary: Buffer): 0 | 1 | 2 {
  if (end - at < boundary.length) return 0;
  if (line.compare(boundary, 0, boundary.length, at, at + boundary.length) !== 0) return 0;
  let j = at + boundary.length;
  let kind: 1 | 2 = 1;
  if (line[j] === 0x2d && j + 1 < end) {
    if (line[j + 1] !== 0x2d) return 0;
    kind = 2;
    j += 2;
  }
  while (j < end && (line[j] === 0x20 || line[j] === 0x09)) j++;
  if (j === end) return kind === 2 ? 2 : 0;
  while (j < end && line[j] === 0x0d) j++;
  if (j < end && line[j] === 0x0a) j++;
  return j === end ? kind : 0;
}

/** Why the last analysis said damaged (for logs and `explain`); empty when it did not. */
export const damageReasons = new WeakMap<MessageStructure, string[]>();

/** One structure pass over the message. See the file header for what comes back and how it fails. */
export async function analyzeMessage(src: SpoolReader, opts: AnalyzeOptions = {}): Promise<AnalyzeResult> {
  const maxDecoded = opts.maxDecoded ?? MAX_DECODED_BYTES;
  if (src.inMemory) {
    // mailsplit reads the skeleton (lib/mime-skeleton.ts), in one write; the builder sees the original
    // bytes. Anything odd (damage, bytes emitted twice) and the whole message is split instead, so that
    // a broken message gets exactly the structure and damage reasons mailsplit itself gives it.
    const raw = src.buffer();
    const skel = skeleton(raw);
    if (skel.gaps.length) {
      const map = new SkeletonMap(raw, skel);
      const result = await splitBuffer(skel.bytes, raw.length, maxDecoded, map);
      if (!result.structure.damaged && map.exact()) return result;
    }
    return splitBuffer(raw, raw.length, maxDecoded);
  }
  const builder = new StructureBuilder(maxDecoded);
  // ignoreEmbedded: a forwarded invite's text/calendar must stay invisible to the classifiers
  const splitter = new Splitter({ ignoreEmbedded: true });
  let splitError: Error | null = null;
  const events = splitter as unknown as NodeJS.EventEmitter; // mailsplit's typings only name 'data'
  const input = src.stream();
  await new Promise<void>((resolve, reject) => {
    splitter.on('data', (obj: SplitterChunk) => builder.takeSafely(obj));
    events.once('end', resolve);
    events.once('error', (err: Error) => {
      splitError = err;
      input.unpipe(splitter);
      input.destroy();
      resolve();
    });
    input.once('error', (err) => {
      splitter.destroy();
      reject(err);
    });
    input.pipe(splitter);
  });
  return done(builder, src.size, splitError);
}

/** One write, no stream plumbing: measurably cheaper for the small messages that stay in memory. */
async function splitBuffer(bytes: Buffer, size: number, maxDecoded: number, map?: SkeletonMap): Promise<AnalyzeResult> {
  const builder = new StructureBuilder(maxDecoded);
  const splitter = new Splitter({ ignoreEmbedded: true }); // see analyzeMessage
  const events = splitter as unknown as NodeJS.EventEmitter;
  let splitError: Error | null = null;
  await new Promise<void>((resolve) => {
    splitter.on('data', (obj: SplitterChunk) => builder.takeSafely(obj, map));
    events.once('end', resolve);
    events.once('error', (err: Error) => {
      splitError = err;
      resolve();
    });
    splitter.end(bytes);
  });
  return done(builder, size, splitError);
}

function done(builder: StructureBuilder, size: number, error: Error | null): AnalyzeResult {
  const result = builder.finish(size, error);
  damageReasons.set(result.structure, builder.why);
  return result;
}
