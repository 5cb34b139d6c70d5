// TNEF reader: finds the message class of a winmail.dat stream, nothing else.
// In: the decoded bytes of an application/ms-tnef part (possibly truncated or garbage).
// Out: the legacy attMessageClass, the MAPI PR_MESSAGE_CLASS from attMsgProps (which wins), the
// effective modern class, and warnings. Fails soft: every length is checked against the buffer and
// counts are capped, so a damaged stream yields null classes and a warning, never an exception.

import type { MimePart } from './types.js';

export const TNEF_SIGNATURE = 0x223e9f78;
/** attMessageClass: level 1, type "word" (0x0007), tag 0x8008; NUL-terminated ANSI. */
export const ATT_MESSAGE_CLASS = 0x00078008;
/** attMsgProps: level 1, type "byte" (0x0006), tag 0x9003; a counted MAPI property list. */
export const ATT_MSG_PROPS = 0x00069003;
export const PR_MESSAGE_CLASS_ID = 0x001a;

const LEVEL_MESSAGE = 1;
const MAX_ATTRIBUTES = 10_000;
const MAX_PROPERTIES = 10_000;
const MAX_VALUES = 100_000;

export interface TnefFacts {
  /** Effective class, modern name: the MAPI class when present, else the mapped legacy class. */
  messageClass: string | null;
  /** attMessageClass exactly as written (e.g. "IPM.Microsoft Schedule.MtgReq"), or null. */
  legacyClass: string | null;
  warnings: string[];
}

// MS-OXTNEF 2.3.3.4: the Microsoft Mail era names that attMessageClass may carry.
const LEGACY_CLASSES: ReadonlyMap<string, string> = new Map([
  ['ipm.microsoft schedule.mtgreq', 'IPM.Schedule.Meeting.Request'],
  ['ipm.microsoft schedule.mtgcncl', 'IPM.Schedule.Meeting.Canceled'],
  ['ipm.microsoft schedule.mtgrespp', 'IPM.Schedule.Meeting.Resp.Pos'],
  ['ipm.microsoft schedule.mtgrespn', 'IPM.Schedule.Meeting.Resp.Neg'],
  ['ipm.microsoft schedule.mtgrespa', 'IPM.Schedule.Meeting.Resp.Tent'],
  ['ipm.microsoft mail.note', 'IPM.Note'],
  ['ipm.microsoft mail.read receipt', 'REPORT.IPM.Note.IPNRN'],
  ['ipm.microsoft mail.non-delivery', 'REPORT.IPM.Note.NDR'],
]);

/** Legacy (Microsoft Mail) class name → modern MAPI name; other names come back unchanged. */
export function modernClass(legacy: string): string {
  // Some writers prefix the old names with "Microsoft Mail v3.0 ".
  const name = legacy.trim().replace(/^Microsoft Mail v3\.0 /i, '');
  return LEGACY_CLASSES.get(name.toLowerCase()) ?? name;
}

/** Is this MIME part a TNEF attachment? (content type, or the conventional file name.) */
export function isTnefPart(part: Pick<MimePart, 'contentType' | 'filename'>): boolean {
  if (part.contentType === 'application/ms-tnef' || part.contentType === 'application/vnd.ms-tnef') return true;
  return (part.filename ?? '').trim().toLowerCase() === 'winmail.dat';
}

/** Reads the message class of a TNEF stream. Never throws. */
export function readTnef(buf: Buffer): TnefFacts {
  const warnings: string[] = [];
  let legacyClass: string | null = null;
  let mapiClass: string | null = null;
  try {
    if (buf.length < 6 || buf.readUInt32LE(0) !== TNEF_SIGNATURE) {
      return { messageClass: null, legacyClass: null, warnings: ['not a TNEF stream (signature missing)'] };
    }
    let off = 6; // signature (4) + legacy key (2)
    for (let n = 0; off < buf.length; n++) {
      if (n >= MAX_ATTRIBUTES) { warnings.push(`more than ${MAX_ATTRIBUTES} attributes; stopped reading`); break; }
      if (off + 9 > buf.length) { warnings.push(`truncated attribute header at byte ${off}`); break; }
      const level = buf[off];
      const id = buf.readUInt32LE(off + 1);
      const len = buf.readUInt32LE(off + 5);
      const start = off + 9;
      const end = start + len;
      const cut = end > buf.length;
      const data = buf.subarray(start, Math.min(end, buf.length));
      if (cut) warnings.push(`attribute 0x${hex(id)} is truncated (${len} bytes announced, ${data.length} present)`);
      else if (end + 2 <= buf.length && buf.readUInt16LE(end) !== checksum(data)) {
        // Real streams with bad checksums exist; the data is usually fine, so keep reading.
        warnings.push(`checksum mismatch in attribute 0x${hex(id)}`);
      }
      if (level === LEVEL_MESSAGE && id === ATT_MESSAGE_CLASS && legacyClass === null) {
        // A cut-off class name ("IPM.Microsoft Sch") would be a made-up class: ignore it.
        if (!cut) legacyClass = cString(data, 'latin1') || null;
      } else if (level === LEVEL_MESSAGE && id === ATT_MSG_PROPS && mapiClass === null) {
        // A truncated property block may still hold the class early on: read what is there.
        mapiClass = findMessageClass(data, warnings);
      }
      if (cut) break;
      off = end + 2; // skip the checksum
    }
  } catch (err) {
    warnings.push(`TNEF read failed: ${(err as Error).message}`);
  }
  const messageClass = mapiClass ?? (legacyClass !== null ? modernClass(legacyClass) : null);
  if (messageClass === null) warnings.push('no message class found');
  return { messageClass, legacyClass, warnings };
}

/** Sum of the data bytes mod 65536 (MS-OXTNEF 2.1.3.1). */
function checksum(data: Buffer): number {
  let sum = 0;
  for (const b of data) sum = (sum + b) & 0xffff;
  return sum;
}

function hex(n: number): string {
  return n.toString(16).padStart(8, '0');
}

/** A NUL-terminated (or padded) string value, decoded without the terminator. */
function cString(data: Buffer, encoding: 'latin1' | 'utf16le'): string {
  let s = data.toString(encoding);
  const nul = s.indexOf('\0');
  if (nul >= 0) s = s.slice(0, nul);
  return s.trim();
}

// Plain arithmetic, not `(n + 3) & ~3`: lengths are 32-bit unsigned and the bitwise form wraps (0xFFFFFFFD → 0).
const pad4 = (n: number): number => n + ((4 - (n % 4)) % 4);

// Fixed value sizes by MAPI property type (before padding to 4 bytes).
const FIXED_SIZES: ReadonlyMap<number, number> = new Map([
  [0x0002, 2], // PT_SHORT
  [0x0003, 4], // PT_LONG
  [0x0004, 4], // PT_FLOAT
  [0x0005, 8], // PT_DOUBLE
  [0x0006, 8], // PT_CURRENCY
  [0x0007, 8], // PT_APPTIME
  [0x000a, 4], // PT_ERROR
  [0x000b, 2], // PT_BOOLEAN
  [0x0014, 8], // PT_I8
  [0x0040, 8], // PT_SYSTIME
  [0x0048, 16], // PT_CLSID
]);
// Counted types: value count, then per value a size, the bytes and padding to 4.
// PT_OBJECT's size includes its 16-byte interface id, so it reads like binary here.
const VARIABLE_TYPES: ReadonlySet<number> = new Set([0x000d, 0x001e, 0x001f, 0x00fb, 0x0102]);
const MV_FLAG = 0x1000;
const PT_STRING8 = 0x001e;
const PT_UNICODE = 0x001f;

/**
 * Walks a MAPI property list (attMsgProps, MS-OXTNEF 2.1.3.4) looking for PR_MESSAGE_CLASS.
 * Stops at the first type it does not know, because the following offsets would be guesses.
 */
function findMessageClass(block: Buffer, warnings: string[]): string | null {
  if (block.length < 4) { warnings.push('MAPI property block too short'); return null; }
  const count = block.readUInt32LE(0);
  if (count > MAX_PROPERTIES) { warnings.push(`MAPI property count ${count} over the cap`); return null; }
  let off = 4;
  const need = (n: number): boolean => {
    if (n < 0 || off + n > block.length) { warnings.push('MAPI property block ends early'); return false; }
    return true;
  };
  for (let i = 0; i < count; i++) {
    if (!need(4)) return null;
    const type = block.readUInt16LE(off);
    const id = block.readUInt16LE(off + 2);
    off += 4;
    if (id >= 0x8000) {
      // Named property: GUID, kind, then a numeric id or a counted UTF-16 name padded to 4.
      if (!need(20)) return null;
      const kind = block.readUInt32LE(off + 16);
      off += 20;
      if (kind === 0) {
        if (!need(4)) return null;
        off += 4;
      } else if (kind === 1) {
        if (!need(4)) return null;
        const nameLen = block.readUInt32LE(off);
        off += 4;
        if (!need(pad4(nameLen))) return null;
        off += pad4(nameLen);
      } else {
        warnings.push(`unknown named-property kind ${kind}; stopped reading properties`);
        return null;
      }
    }
    const base = type & ~MV_FLAG;
    const multi = (type & MV_FLAG) !== 0;
    const fixed = FIXED_SIZES.get(base);
    const variable = VARIABLE_TYPES.has(base);
    if (fixed === undefined && !variable) {
      warnings.push(`unknown MAPI property type 0x${type.toString(16)}; stopped reading properties`);
      return null;
    }
    let values = 1;
    if (multi || variable) {
      if (!need(4)) return null;
      values = block.readUInt32LE(off);
      off += 4;
      if (values > MAX_VALUES) { warnings.push(`MAPI value count ${values} over the cap`); return null; }
    }
    for (let v = 0; v < values; v++) {
      if (fixed !== undefined) {
        if (!need(pad4(fixed))) return null;
        off += pad4(fixed);
        continue;
      }
      if (!need(4)) return null;
      const size = block.readUInt32LE(off);
      off += 4;
      if (!need(size)) return null;
      if (id === PR_MESSAGE_CLASS_ID && v === 0 && (base === PT_STRING8 || base === PT_UNICODE)) {
        const value = cString(block.subarray(off, off + size), base === PT_UNICODE ? 'utf16le' : 'latin1');
        return value || null;
      }
      off += Math.min(pad4(size), block.length - off);
    }
  }
  return null;
}
