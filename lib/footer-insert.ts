// The rewrite: a plain byte copy of the spooled message with only the chosen body ranges replaced.
// In: the spool, its MessageStructure, the Targets, the Footer and the marker header line. Out: marker
// line + the original bytes, the target bodies carrying the footer (or, with no text body, a text/plain
// footer part added). Memory: only the target bodies (≤ 8 MiB each). Fails: a damaged or already marked
// message, or targets that all had to be skipped, make rewriteMessage's stream error before its first
// byte (the caller relays the original); planRewrite says the same as changed: false plus `skipped`.

import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import type { Footer, MessageStructure, MimePart } from './types.js';
import type { SpoolReader } from './spool.js';
import { detectLineBreak, type LineBreak } from './part-codec.js';
import { footerPart, htmlFooterEdit, textFooterEdit, type EditResult } from './part-footer.js';
import { unfitReason, type Targets } from './footer-targets.js';

export { chooseTargets, type Targets } from './footer-targets.js';

/** The one header we add. A message that carries it is never rewritten again. */
export const MARKER_HEADER = 'X-Calendar-Link';
/** Largest target body held in memory for the rewrite; a larger part is skipped. */
export const MAX_PART_BYTES = 8 * 1024 * 1024;

export function hasMarker(headers: Array<[string, string]>): boolean {
  const key = MARKER_HEADER.toLowerCase();
  return headers.some(([k]) => k === key);
}

export interface RewriteOptions {
  /** The full marker header line without its line break, e.g. "X-Calendar-Link: added". */
  markerHeader: string;
  maxPartBytes?: number;
  /** Boundary for the wrap of a lone calendar body; default random (tests pin it for golden files). */
  boundary?: string;
}

export interface RewritePlan {
  /** True when at least one footer went in. */
  changed: boolean;
  applied: { plain: number | null; html: number | null; wrap: boolean };
  /** One sentence per target that was asked for and not done. */
  skipped: string[];
  size: number;
  /** The output bytes in order; may be called again for another copy. */
  chunks(): AsyncGenerator<Buffer>;
  /** The same bytes as Buffers (views where possible) when the message is in memory, else null. */
  views(): Buffer[] | null;
}

interface Edit {
  start: number;
  end: number;
  bytes: Buffer;
}

type Range = Buffer | [number, number];

export class RewriteRefused extends Error {}

/** Header fields that describe the body: they move onto the calendar part when a lone body is wrapped. */
const BODY_FIELDS = new Set(['content-type', 'content-transfer-encoding', 'content-disposition', 'content-id', 'content-description']);

function ancestors(parts: MimePart[], p: MimePart): MimePart[] {
  const out: MimePart[] = [];
  for (let q = p.parent; q !== null && parts[q] && out.length < 1000; q = parts[q].parent) out.push(parts[q]);
  return out;
}

const boundariesAround = (parts: MimePart[], p: MimePart): string[] =>
  [p, ...ancestors(parts, p)].map((a) => a.params.boundary).filter((b): b is string => Boolean(b));

/** The raw header block split into fields (each with its folded lines and line breaks). */
function headerFields(block: Buffer): Array<{ name: string; raw: Buffer }> {
  const fields: Array<{ name: string; raw: Buffer }> = [];
  let i = 0;
  while (i < block.length) {
    const nl = block.indexOf(0x0a, i);
    const end = nl < 0 ? block.length : nl + 1;
    const line = block.subarray(i, end);
    if (line.length <= 2 && (line[0] === 0x0a || (line[0] === 0x0d && line[1] === 0x0a))) break; // blank line: end of block
    if ((line[0] === 0x20 || line[0] === 0x09) && fields.length) {
      const f = fields[fields.length - 1];
      f.raw = Buffer.concat([f.raw, line]);
    } else {
      const colon = line.indexOf(0x3a);
      fields.push({ name: (colon < 0 ? '' : line.subarray(0, colon).toString('latin1')).trim().toLowerCase(), raw: line });
    }
    i = end;
  }
  return fields;
}

/**
 * Bytes [start, end) as a view when the message is in memory (never written to), else null: the caller
 * then awaits src.read. So planning an in-memory message never waits for a promise it does not need.
 */
const view = (src: SpoolReader, start: number, end: number): Buffer | null => (src.inMemory ? src.buffer().subarray(start, end) : null);

const withLb = (b: Buffer, lb: LineBreak): Buffer => (b[b.length - 1] === 0x0a ? b : Buffer.concat([b, Buffer.from(lb)]));

/** Lone leaf root: new multipart/mixed root, footer part first, the original body part (headers moved) second. */
async function wrapRoot(src: SpoolReader, root: MimePart, footer: Footer, lb: LineBreak, boundary: string): Promise<Edit[] | string> {
  const fields = headerFields(view(src, 0, root.bodyStart) ?? (await src.read(0, root.bodyStart)));
  const part = footerPart(footer.text, lb, [boundary]);
  if (!part) return 'empty text footer';
  const moved = fields.filter((f) => BODY_FIELDS.has(f.name));
  const kept: Buffer[] = [];
  let placed = false;
  // a multipart is labelled with the widest encoding inside it (RFC 2045 6.4): an 8bit or binary body
  // moved below a root that says nothing (7bit) would let a downgrading MTA skip converting it
  const cte = moved.find((f) => f.name === 'content-transfer-encoding')?.raw.toString('latin1').replace(/^[^:]*:/, '').replace(/\([^()]*\)/g, '').trim().toLowerCase();
  const wide = cte === '8bit' || cte === 'binary' ? `Content-Transfer-Encoding: ${cte}${lb}` : '';
  const top = Buffer.from(`Content-Type: multipart/mixed; boundary="${boundary}"${lb}${wide}`, 'latin1');
  const mimeVersion = fields.some((f) => f.name === 'mime-version') ? [] : [Buffer.from(`MIME-Version: 1.0${lb}`)];
  for (const f of fields) {
    if (!BODY_FIELDS.has(f.name)) kept.push(withLb(f.raw, lb));
    else if (!placed) {
      kept.push(...mimeVersion, top); // where the old Content-Type stood
      placed = true;
    }
  }
  if (!placed) kept.push(...mimeVersion, top);
  const head = Buffer.concat([
    ...kept,
    Buffer.from(`${lb}--${boundary}${lb}${part.headers.join(lb)}${lb}${lb}`, 'latin1'),
    part.body,
    Buffer.from(`${lb}--${boundary}${lb}`, 'latin1'),
    ...moved.map((f) => withLb(f.raw, lb)),
    Buffer.from(lb),
  ]);
  return [
    { start: 0, end: root.bodyStart, bytes: head },
    { start: src.size, end: src.size, bytes: Buffer.from(`${lb}--${boundary}--${lb}`, 'latin1') },
  ];
}

/**
 * Multipart without a text body: a text/plain footer part goes in as its first child. Text only, no HTML
 * twin: a reader shows the last alternative it can render, so calendar clients keep showing the invite
 * and the rest fall back to text/plain; an HTML alternative would carry the same link and is one more
 * part to get wrong. It is also the shape RFC 6047's own example uses (text/plain + text/calendar).
 */
function wrapMultipart(parts: MimePart[], container: MimePart, footer: Footer, lb: LineBreak): Edit[] | string {
  const first = parts.find((p) => p.parent === container.index);
  const boundary = container.params.boundary;
  if (!first || !boundary) return `part ${container.index} has no child or no boundary to add a part at`;
  const part = footerPart(footer.text, lb, boundariesAround(parts, container));
  if (!part) return 'empty text footer';
  // after the existing first delimiter line: our part, then a new delimiter for the old first child
  const bytes = Buffer.concat([
    Buffer.from(`${part.headers.join(lb)}${lb}${lb}`, 'latin1'),
    part.body,
    Buffer.from(`${lb}--${boundary}${lb}`, 'latin1'),
  ]);
  return [{ start: first.headerStart, end: first.headerStart, bytes }];
}

/** Works out every edit; reads only the target bodies. See RewritePlan. */
export async function planRewrite(src: SpoolReader, structure: MessageStructure, targets: Targets, footer: Footer, opts: RewriteOptions): Promise<RewritePlan> {
  const parts = structure.parts;
  const maxPart = opts.maxPartBytes ?? MAX_PART_BYTES;
  const applied: RewritePlan['applied'] = { plain: null, html: null, wrap: false };
  const skipped: string[] = [];
  const edits: Edit[] = [];
  const headEnd = Math.min(src.size, 1024);
  const head = view(src, 0, headEnd) ?? (await src.read(0, headEnd));
  const lb = detectLineBreak(head, '\r\n');
  const asked = targets.plain !== null || targets.html !== null || targets.wrap;
  let refuse: string | null = null;
  if (asked && structure.damaged) refuse = 'MIME structure damaged';
  else if (asked && structure.size !== src.size) refuse = 'structure does not belong to this message';
  else if (asked && parts[0] && hasMarker(parts[0].headers)) refuse = `message already carries ${MARKER_HEADER}`;
  if (refuse) skipped.push(`nothing rewritten: ${refuse}`);

  for (const kind of ['plain', 'html'] as const) {
    const idx = targets[kind];
    if (refuse || idx === null) continue;
    const p = parts[idx];
    const want = kind === 'plain' ? 'text/plain' : 'text/html';
    const unfit = !p ? `no part ${idx}` : p.contentType !== want ? `part ${idx} is ${p.contentType}, not ${want}` : unfitReason(p);
    if (unfit) {
      skipped.push(unfit);
      continue;
    }
    if (p.bodyEnd - p.bodyStart > maxPart) {
      skipped.push(`part ${idx} body is larger than ${maxPart} bytes`);
      continue;
    }
    const body = view(src, p.bodyStart, p.bodyEnd) ?? (await src.read(p.bodyStart, p.bodyEnd));
    const bounds = boundariesAround(parts, p);
    const r: EditResult = kind === 'plain'
      ? textFooterEdit(p, body, footer.text, lb, bounds)
      : htmlFooterEdit(p, body, footer.html, lb, bounds);
    if (r.ok) {
      const { start, end, bytes } = r.edit;
      edits.push({ start: p.bodyStart + start, end: p.bodyStart + end, bytes });
      // an empty body may share its header block's last line break with the delimiter that follows:
      // then the new body has to bring its own, or the delimiter would end up inside the footer line
      const after = p.bodyEnd < src.size ? view(src, p.bodyEnd, p.bodyEnd + 1) ?? (await src.read(p.bodyEnd, p.bodyEnd + 1)) : null;
      const next = after?.[0];
      const lastByte = end < body.length ? body[body.length - 1] : bytes.length ? bytes[bytes.length - 1] : body[start - 1];
      if (next !== undefined && next !== 0x0a && next !== 0x0d && lastByte !== 0x0a) edits.push({ start: p.bodyEnd, end: p.bodyEnd, bytes: Buffer.from(lb) });
      applied[kind] = idx;
    } else skipped.push(`part ${idx}: ${r.why}`);
  }

  if (!refuse && targets.wrap) {
    const w = targets.wrapPart ?? (parts[0] && !parts[0].multipart ? 0 : null); // Targets built by hand may omit it
    const p = w !== null ? parts[w] : undefined;
    let r: Edit[] | string;
    if (!p) r = 'wrap asked without a part to wrap';
    else if (p.multipart) r = p.contentType === 'multipart/alternative' || p.contentType === 'multipart/mixed' ? wrapMultipart(parts, p, footer, lb) : `cannot add a part to ${p.contentType}`;
    else if (p.index === 0) r = await wrapRoot(src, p, footer, lb, opts.boundary ?? `=_calfilter_${randomBytes(12).toString('hex')}`);
    else r = `part ${p.index} is neither the root nor a multipart`;
    if (typeof r === 'string') skipped.push(`wrap: ${r}`);
    else {
      edits.push(...r);
      applied.wrap = true;
    }
  }

  edits.sort((a, b) => a.start - b.start || a.end - b.end);
  const ranges: Range[] = [Buffer.from(opts.markerHeader.replace(/[\r\n]+/g, ' ') + lb, 'utf8')];
  let at = 0;
  for (const e of edits) {
    if (e.start < at) throw new Error('rewrite: overlapping edits'); // a bug here, not in the message
    if (e.start > at) ranges.push([at, e.start]);
    ranges.push(e.bytes);
    at = e.end;
  }
  if (at < src.size) ranges.push([at, src.size]);
  const size = ranges.reduce((n, r) => n + (Buffer.isBuffer(r) ? r.length : r[1] - r[0]), 0);

  const views = (): Buffer[] | null => (src.inMemory ? ranges.map((r) => (Buffer.isBuffer(r) ? r : src.buffer().subarray(r[0], r[1]))) : null);
  async function* chunks(): AsyncGenerator<Buffer> {
    for (const r of ranges) {
      if (Buffer.isBuffer(r)) yield r;
      else if (src.inMemory) yield src.buffer().subarray(r[0], r[1]);
      else for await (const c of src.stream(r[0], r[1])) yield c as Buffer;
    }
  }
  const changed = applied.plain !== null || applied.html !== null || applied.wrap;
  return { changed, applied, skipped, size, chunks, views };
}

/** With targets asked for and none placed, the rewrite is refused (the caller relays the original). */
function refuseUnplaced(plan: RewritePlan, asked: boolean): RewritePlan {
  if (asked && !plan.changed) throw new RewriteRefused(`no footer placed: ${plan.skipped.join('; ')}`);
  return plan;
}

const isAsked = (t: Targets): boolean => t.plain !== null || t.html !== null || t.wrap;

/**
 * The rewritten message for the pipeline: the Buffers themselves when the message is in memory (no
 * stream per message), else chunks read on demand. Refuses (rejects with RewriteRefused) as the stream does.
 */
export async function rewriteChunks(src: SpoolReader, structure: MessageStructure, targets: Targets, footer: Footer, opts: RewriteOptions): Promise<Buffer[] | AsyncGenerator<Buffer>> {
  const plan = refuseUnplaced(await planRewrite(src, structure, targets, footer, opts), isAsked(targets));
  return plan.views() ?? plan.chunks();
}

/** Reads the plan's bytes on demand; an in-memory message goes out in one synchronous burst of views. */
class RewriteStream extends Readable {
  private iter: AsyncGenerator<Buffer> | null = null;
  private busy = false;

  constructor(private readonly plan: () => Promise<RewritePlan>, private readonly asked: boolean) {
    super();
  }

  override _read(): void {
    if (this.busy) return;
    this.busy = true;
    this.pump().then(
      () => { this.busy = false; },
      (err: Error) => this.destroy(err),
    );
  }

  private async pump(): Promise<void> {
    if (!this.iter) {
      const plan = refuseUnplaced(await this.plan(), this.asked);
      const views = plan.views();
      if (views) {
        for (const v of views) this.push(v);
        this.push(null);
        return;
      }
      this.iter = plan.chunks();
    }
    for (;;) {
      const next = await this.iter.next();
      if (next.done) {
        this.push(null);
        return;
      }
      if (!this.push(next.value)) return;
    }
  }
}

/**
 * The rewritten message as a byte stream. With targets asked for and none placed, the stream errors
 * (RewriteRefused) before its first byte; with no targets at all it is the marker plus the input.
 */
export function rewriteMessage(src: SpoolReader, structure: MessageStructure, targets: Targets, footer: Footer, opts: RewriteOptions): Readable {
  return new RewriteStream(() => planRewrite(src, structure, targets, footer, opts), isAsked(targets));
}
