// From milter events to the message the pipeline knows, and from the pipeline's rewrite back to edits.
// In: the header fields as the MTA sent them (name, value folded with LF); the rewritten message that
// planDelivery made (marker line + header block + blank line + body).
// Out: the rebuilt header block (CRLF) for the spool; the early-accept verdict at end of headers; and
// the edits for end of message: the body range to send as REPLBODY, the header changes (CHGHEADER by
// per-name index, ADDHEADER), and the marker header, all with values folded with LF as the MTA expects.
// Fails: a rewritten message that does not have that shape throws (the session answers tempfail
// before it sends anything, so there is never a partial edit).

import { scanBuffer } from './candidate-scan.js';
import { MARKER_HEADER } from './footer-insert.js';
import type { MilterReply } from './milter-codec.js';
import { analyzeMessage, headerValue, isClassifierPart } from './mime-structure.js';
import { spoolFromBuffer, type SpoolReader } from './spool.js';
import { isTnefPart } from './tnef-reader.js';

export interface HeaderField {
  /** As sent (byte string). */
  name: string;
  /** As sent: folded with LF; with SMFIP_HDR_LEADSPC it keeps its leading space. */
  value: string;
}

const CRLF = Buffer.from('\r\n');

/** One field as it stood in the message: "Name:" + value, CRLF line ends. */
function fieldBytes(f: HeaderField, leadspc: boolean): Buffer {
  const value = (leadspc ? f.value : ` ${f.value}`).replace(/\r?\n/g, '\r\n');
  return Buffer.from(`${f.name}:${value}\r\n`, 'latin1');
}

/** The header block the MTA received (its own first Received: aside), without the blank line. */
export function rebuildHeaders(fields: HeaderField[], leadspc: boolean): Buffer {
  return Buffer.concat(fields.map((f) => fieldBytes(f, leadspc)));
}

/**
 * Can the end of headers already tell that this message never gets a footer? Only when the whole
 * message is one leaf part that no classifier reads: not multipart, not message/*, not text/calendar,
 * .ics, TNEF or winmail.dat, no Content-Class, and none of the cheap scan's words in the header block.
 * Then classification would find nothing in the body either, so accepting now changes no outcome.
 * Returns the reason to accept now, or null when the body is needed.
 */
export async function earlyVerdict(fields: HeaderField[], leadspc: boolean): Promise<string | null> {
  const marker = MARKER_HEADER.toLowerCase();
  if (fields.some((f) => f.name.trim().toLowerCase() === marker)) return `already carries ${MARKER_HEADER}`;
  const block = rebuildHeaders(fields, leadspc);
  if (scanBuffer(block).candidate) return null;
  if (fields.filter((f) => f.name.trim().toLowerCase() === 'content-type').length > 1) return null;
  const { structure, headers } = await analyzeMessage(spoolFromBuffer(Buffer.concat([block, CRLF])));
  const root = structure.parts[0];
  if (!root || structure.parts.length !== 1) return null;
  if (root.multipart || root.contentType.startsWith('message/') || root.contentType.startsWith('multipart/')) return null;
  if (isClassifierPart(root) || isTnefPart(root)) return null;
  if (headerValue(headers, 'content-class') !== null) return null;
  return `not calendar-related: the message is a single ${root.contentType} part`;
}

export interface MilterEdits {
  /** The new body: bytes [bodyStart, rewritten.size) of the rewritten message. */
  bodyStart: number;
  /** CHGHEADER/ADDHEADER replies, in the order to send them (after the body). */
  headerEdits: MilterReply[];
  /** The marker header, sent last. */
  marker: { name: string; value: string };
}

interface RawField {
  key: string;
  name: string;
  raw: Buffer;
}

/** Header block bytes → fields with their raw bytes (line ends included). */
function splitFields(block: Buffer): RawField[] {
  const out: RawField[] = [];
  let i = 0;
  while (i < block.length) {
    const nl = block.indexOf(0x0a, i);
    const end = nl < 0 ? block.length : nl + 1;
    const line = block.subarray(i, end);
    if ((line[0] === 0x20 || line[0] === 0x09) && out.length) {
      const f = out[out.length - 1]!;
      f.raw = Buffer.concat([f.raw, line]);
    } else {
      const colon = line.indexOf(0x3a);
      if (colon < 0) throw new Error('rewritten header block has a line without a colon');
      const name = line.subarray(0, colon).toString('latin1');
      out.push({ key: name.trim().toLowerCase(), name, raw: line });
    }
    i = end;
  }
  return out;
}

/** A field's value for CHGHEADER/ADDHEADER: after the colon, line ends as LF, none at the end. */
function valueOf(f: RawField, leadspc: boolean): string {
  const rest = f.raw.subarray(f.raw.indexOf(0x3a) + 1).toString('latin1').replace(/\r?\n$/, '').replace(/\r\n/g, '\n');
  // without HDR_LEADSPC the MTA writes "Name: value" itself
  return leadspc ? rest : rest.replace(/^ /, '');
}

/** Where the blank line after the header block ends in `src`, reading from `from` on. */
async function findBodyStart(src: SpoolReader, from: number): Promise<{ headerEnd: number; bodyStart: number }> {
  const WINDOW = 64 * 1024;
  const LIMIT = 16 * 1024 * 1024;
  let at = from;
  let carry = Buffer.alloc(0);
  while (at < src.size && at - from < LIMIT) {
    const chunk = await src.read(at, Math.min(src.size, at + WINDOW));
    const buf = Buffer.concat([carry, chunk]);
    const base = at - carry.length;
    // a line that is empty: "\n" right after a "\n" (or after the start), optionally with CR
    let i = 0;
    for (;;) {
      const nl = buf.indexOf(0x0a, i);
      if (nl < 0) break;
      const lineStart = i;
      const absStart = base + lineStart;
      if (absStart >= from && (nl === lineStart || (nl === lineStart + 1 && buf[lineStart] === 0x0d))) {
        return { headerEnd: absStart, bodyStart: base + nl + 1 };
      }
      i = nl + 1;
    }
    carry = buf.subarray(i);
    at += chunk.length;
  }
  throw new Error('rewritten message has no end of header block');
}

/**
 * The edits that turn the message the MTA holds into `rewritten`. `original` are the fields the MTA
 * sent; a field the rewriter left alone is byte-identical in `rewritten`. Per header name, changed
 * occurrences become CHGHEADER (1-based index), missing ones CHGHEADER with an empty value (deleted
 * from the last one back, so Postfix's renumbering after a delete cannot hit a later one), new ones
 * ADDHEADER. Only a wrapped lone calendar body changes headers; every other footer changes the body only.
 */
export async function computeEdits(original: HeaderField[], leadspc: boolean, rewritten: SpoolReader): Promise<MilterEdits> {
  const head = await rewritten.read(0, Math.min(rewritten.size, 4096));
  const nl = head.indexOf(0x0a);
  if (nl < 0) throw new Error('rewritten message has no marker line');
  const markerLine = head.subarray(0, nl + 1);
  const marker = splitFields(markerLine)[0]!;
  if (marker.key !== MARKER_HEADER.toLowerCase()) throw new Error(`rewritten message does not start with ${MARKER_HEADER}`);
  const { headerEnd, bodyStart } = await findBodyStart(rewritten, nl + 1);
  const after = splitFields(await rewritten.read(nl + 1, headerEnd));
  const before = original.map((f) => ({ key: f.name.trim().toLowerCase(), name: f.name, raw: fieldBytes(f, leadspc) }));

  const keys = [...new Set([...before.map((f) => f.key), ...after.map((f) => f.key)])];
  const edits: MilterReply[] = [];
  for (const key of keys) {
    const was = before.filter((f) => f.key === key);
    const now = after.filter((f) => f.key === key);
    for (let i = 0; i < Math.min(was.length, now.length); i++) {
      if (!was[i]!.raw.equals(now[i]!.raw)) edits.push({ type: 'chgheader', index: i + 1, name: was[i]!.name, value: valueOf(now[i]!, leadspc) });
    }
    for (let i = was.length - 1; i >= now.length; i--) edits.push({ type: 'chgheader', index: i + 1, name: was[i]!.name, value: '' });
    for (let i = was.length; i < now.length; i++) edits.push({ type: 'addheader', name: now[i]!.name, value: valueOf(now[i]!, leadspc) });
  }
  return { bodyStart, headerEdits: edits, marker: { name: MARKER_HEADER, value: valueOf(marker, leadspc) } };
}
