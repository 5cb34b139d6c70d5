// Which body parts carry the footer.
// In: the MessageStructure and the Classification. Out: Targets: the text/plain and text/html parts
// that get the footer ("main" body: the alternatives next to the calendar part, else the message's
// first inline text body), or wrap = true with the part to wrap when the message has no text body.
// Fails: never throws; whatever cannot be placed safely (damaged, signed, attachment, a charset that
// is not ASCII-compatible, unknown transfer encoding) gets no target, and `reason` says so.

import type { Classification, MessageStructure, MimePart } from './types.js';
import { isClassifierPart } from './mime-structure.js';
import { charsetInfo } from './part-codec.js';

export interface Targets {
  /** Index of the text/plain part that gets the text footer, or null. */
  plain: number | null;
  /** Index of the text/html part that gets the HTML footer, or null. */
  html: number | null;
  /** No text body at all: a text/plain footer part is added (see wrapPart). */
  wrap: boolean;
  /** The part wrap works on: a lone leaf root (restructured into multipart/mixed) or the multipart that gets a first footer part. */
  wrapPart?: number | null;
  /** One short sentence: what was chosen and why (for logs and `explain`). */
  reason: string;
}

const SECURE = /^(?:multipart\/(?:signed|encrypted)|application\/(?:x-)?pkcs7-mime|application\/pgp-encrypted)$/;
const KNOWN_CTE = new Set(['7bit', '8bit', 'binary', 'quoted-printable', 'base64']);

/** A text part a reader would show as the message body (whatever its charset or encoding). */
function isBodyText(p: MimePart): boolean {
  if (p.multipart || (p.contentType !== 'text/plain' && p.contentType !== 'text/html')) return false;
  if (isClassifierPart(p)) return false;
  // an unknown disposition ("attachement", "file" …) is an attachment (RFC 2183 2.8; mailparser shows it so)
  if (p.disposition !== null && p.disposition !== 'inline') return false;
  // a named part without an explicit inline disposition is shown as an attachment by most clients
  return !(p.filename && p.disposition !== 'inline');
}

/** Why this body text part cannot take a footer, or null when it can. */
export function unfitReason(p: MimePart): string | null {
  if (!isBodyText(p)) return `part ${p.index} is not a body text part`;
  if (!KNOWN_CTE.has(p.encoding)) return `part ${p.index} has transfer encoding "${p.encoding}"`;
  if (!charsetInfo(p.charset).compatible) return `part ${p.index} charset ${p.charset} is not ASCII-compatible`;
  return null;
}

interface Found {
  plain?: number;
  html?: number;
}

function childrenOf(structure: MessageStructure): Map<number, number[]> {
  const kids = new Map<number, number[]>();
  for (const p of structure.parts) {
    if (p.parent === null) continue;
    const list = kids.get(p.parent) ?? [];
    list.push(p.index);
    kids.set(p.parent, list);
  }
  return kids;
}

/** The usual body-selection rule, starting at part `idx`; calendar/TNEF parts are passed over. */
function bodyIn(parts: MimePart[], kids: Map<number, number[]>, idx: number, depth = 0): Found {
  const p = parts[idx];
  if (!p || depth > 64) return {};
  if (!p.multipart) {
    if (!isBodyText(p)) return {};
    return p.contentType === 'text/plain' ? { plain: idx } : { html: idx };
  }
  if (SECURE.test(p.contentType)) return {};
  const ks = (kids.get(idx) ?? []).filter((k) => !isClassifierPart(parts[k]));
  if (p.contentType === 'multipart/alternative') {
    const found: Found = {};
    for (const k of ks) {
      const f = bodyIn(parts, kids, k, depth + 1);
      found.plain ??= f.plain;
      found.html ??= f.html;
    }
    return found;
  }
  if (p.contentType === 'multipart/related') {
    // the root part: the one named by start=, else the first (RFC 2387)
    const start = p.params.start?.trim();
    const byId = start ? ks.find((k) => parts[k].headers.some(([key, v]) => key === 'content-id' && v.trim() === start)) : undefined;
    const root = byId ?? ks[0];
    return root === undefined ? {} : bodyIn(parts, kids, root, depth + 1);
  }
  // mixed and anything else: the first part that is not an attachment and holds a text body (an inline
  // image, a forwarded message/rfc822 or a calendar-only alternative in front does not hide the body after it)
  for (const k of ks) {
    if (parts[k].disposition === 'attachment') continue;
    const f = bodyIn(parts, kids, k, depth + 1);
    if (f.plain !== undefined || f.html !== undefined) return f;
  }
  return {};
}

const none = (reason: string): Targets => ({ plain: null, html: null, wrap: false, wrapPart: null, reason });

export function chooseTargets(structure: MessageStructure, classification: Classification): Targets {
  if (!classification.footer) return none('classification gives no footer');
  if (structure.damaged) return none('MIME structure damaged');
  const { parts } = structure;
  const secure = parts.find((p) => SECURE.test(p.contentType));
  if (secure) return none(`signed or encrypted message (${secure.contentType})`);

  const kids = childrenOf(structure);
  const cal = classification.calendarPart !== null ? parts[classification.calendarPart] : undefined;
  let found: Found = {};
  let where = '';
  if (cal && cal.parent !== null) {
    found = bodyIn(parts, kids, cal.parent);
    where = `body next to the ${cal.contentType} part ${cal.index}`;
  }
  if (found.plain === undefined && found.html === undefined) {
    found = bodyIn(parts, kids, 0);
    where = "the message's first text body";
  }

  if (found.plain !== undefined || found.html !== undefined) {
    const why: string[] = [];
    const pick = (i: number | undefined): number | null => {
      if (i === undefined) return null;
      const r = unfitReason(parts[i]);
      if (r) why.push(r);
      return r ? null : i;
    };
    const plain = pick(found.plain);
    const html = pick(found.html);
    if (plain === null && html === null) return none(`no body part can carry a footer: ${why.join('; ')}`);
    const chosen = [plain !== null ? `text/plain part ${plain}` : '', html !== null ? `text/html part ${html}` : ''].filter(Boolean).join(' and ');
    return { plain, html, wrap: false, wrapPart: null, reason: `${where}: ${chosen}${why.length ? ` (skipped: ${why.join('; ')})` : ''}` };
  }

  // no text body anywhere: the deliberate rule is to add one, never to touch the calendar part
  if (!cal) return none('no text body, and no calendar part to wrap');
  if (cal.parent === null) {
    return { plain: null, html: null, wrap: true, wrapPart: cal.index, reason: `lone ${cal.contentType} body: wrapped in multipart/mixed with a text/plain footer part first` };
  }
  const container = parts[cal.parent];
  if (container.contentType === 'multipart/alternative' || container.contentType === 'multipart/mixed') {
    return { plain: null, html: null, wrap: true, wrapPart: container.index, reason: `${container.contentType} without a text body: a text/plain footer part is added first` };
  }
  return none(`no text body, and the calendar part sits in ${container.contentType}`);
}
