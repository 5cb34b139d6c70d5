// Overrides as data: what one override says, how it is stored, and which keys a recipient is looked up by.
// In: addresses from the envelope (lenient) or typed by an administrator (strict), and stored JSON.
// Out: normalised keys ("user@example.org", "@example.org"), checked Override values, their JSON form.
// Fails: decodeOverride throws OverrideDataError (the store logs it once and treats the value as absent);
// parseOverrideKey and checkOverride return an error text naming the problem instead of throwing.
//
// Normalisation (the same for the CLI and for lookups): the domain is lower-cased and stored in its ASCII
// (A-label, punycode) form, so "Bücher.example" and "xn--bcher-kva.example" find the same override and
// keys stay ASCII; a final dot is dropped. The local part is kept as written (RFC 5321: it is
// case-sensitive) unless local_part_case = lower. With recipient_delimiter (Postfix-style, e.g. "+"),
// "user+tag@dom" is looked up as itself first, then as "user@dom", then as "@dom".

import { domainToASCII } from 'node:url';
import { checkServer, checkTemplate, MAX_LINK_LENGTH } from './url-template.js';
import type { LocalPartCase } from './override-config.js';

/** One override: a server, a template, both, or "no footer". */
export interface Override {
  server?: string;
  urlTemplate?: string;
  off?: boolean;
}

/** Version of the stored JSON; a value with another version is treated as corrupt. */
export const OVERRIDE_VERSION = 1;

export class OverrideDataError extends Error {}

export interface KeyOptions {
  localPartCase: LocalPartCase;
  recipientDelimiter: string;
}

export type KeyKind = 'recipient' | 'domain';

const CONTROL_RE = /[\x00-\x1f\x7f-\x9f\u2028\u2029]/;
const LDH_LABEL_RE = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/;
// RFC 5322 atext plus UTF-8 (RFC 6531); a dot-atom does not start or end with a dot or hold "..".
const DOT_ATOM_RE = /^[A-Za-z0-9!#$%&'*+/=?^_`{|}~\u0080-\uffff-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~\u0080-\uffff-]+)*$/;
const QUOTED_RE = /^"(?:[\x20\x21\x23-\x5b\x5d-\x7e\u0080-\uffff]|\\[\x20-\x7e])*"$/;

/**
 * Domains already normalised: recipients' domains repeat from message to message, and the checks are
 * regular expressions per label. Bounded: emptied when full, as envelope domains are not ours to limit.
 */
const normalised = new Map<string, string | null>();

/** Lower-case, ASCII (punycode) form of a domain, or null when it is not a usable domain name. */
export function normaliseDomain(domain: string): string | null {
  let n = normalised.get(domain);
  if (n === undefined) {
    n = normaliseNow(domain);
    if (normalised.size >= 1000) normalised.clear();
    normalised.set(domain, n);
  }
  return n;
}

function normaliseNow(domain: string): string | null {
  const d = domain.trim().replace(/\.$/, '');
  if (d === '' || CONTROL_RE.test(d) || /\s/.test(d)) return null;
  const ascii = /^[\x21-\x7e]*$/.test(d) && !/^xn--|\.xn--/i.test(d) ? d.toLowerCase() : domainToASCII(d);
  if (!ascii || ascii.length > 253) return null;
  return ascii.split('.').every((l) => LDH_LABEL_RE.test(l)) ? ascii : null;
}

function caseLocal(local: string, opts: KeyOptions): string {
  return opts.localPartCase === 'lower' ? local.toLowerCase() : local;
}

/** Split at the last "@" (a quoted local part may hold "@"), without angle brackets. */
function splitAddress(address: string): { local: string; domain: string } | null {
  const a = address.trim().replace(/^<(.*)>$/, '$1');
  const at = a.lastIndexOf('@');
  if (at <= 0 || at === a.length - 1) return null;
  return { local: a.slice(0, at), domain: a.slice(at + 1) };
}

export interface RecipientKeys {
  /** The address as matched (domain normalised, local part per local_part_case). */
  address: string;
  /** Normalised domain, or null when the address has none we understand. */
  domain: string | null;
  /** Lookup keys, most specific first. */
  keys: Array<{ key: string; kind: KeyKind }>;
}

/**
 * Keys for an envelope recipient, most specific first. Lenient: the MTA already accepted the address,
 * so an odd one is still looked up as written (lower-cased domain) rather than refused.
 */
export function recipientKeys(address: string, opts: KeyOptions): RecipientKeys {
  const parts = splitAddress(address);
  if (!parts) {
    const bare = address.trim().replace(/^<(.*)>$/, '$1');
    return { address: bare, domain: null, keys: bare ? [{ key: caseLocal(bare, opts), kind: 'recipient' }] : [] };
  }
  const domain = normaliseDomain(parts.domain) ?? parts.domain.toLowerCase();
  const local = caseLocal(parts.local, opts);
  const full = `${local}@${domain}`;
  const keys: RecipientKeys['keys'] = [{ key: full, kind: 'recipient' }];
  if (opts.recipientDelimiter && !local.startsWith('"')) {
    // Postfix cuts at the first delimiter character found; "+tag" alone (empty user) is not cut.
    const cut = [...local].findIndex((ch, i) => i > 0 && opts.recipientDelimiter.includes(ch));
    if (cut > 0) keys.push({ key: `${[...local].slice(0, cut).join('')}@${domain}`, kind: 'recipient' });
  }
  keys.push({ key: `@${domain}`, kind: 'domain' });
  return { address: full, domain, keys };
}

/** Strict form for administrators: ADDRESS or @DOMAIN → its normalised key, or an error text. */
export function parseOverrideKey(input: string, opts: KeyOptions): { key: string; kind: KeyKind } | { error: string } {
  if (typeof input !== 'string' || input.trim() === '') return { error: 'the key is empty (expected ADDRESS or @DOMAIN)' };
  if (CONTROL_RE.test(input)) return { error: `the key ${JSON.stringify(input)} contains CR, LF or other control characters` };
  const s = input.trim();
  if (s.startsWith('@')) {
    const domain = normaliseDomain(s.slice(1));
    return domain ? { key: `@${domain}`, kind: 'domain' } : { error: `"${s}" is not a valid @DOMAIN` };
  }
  const parts = splitAddress(s);
  if (!parts || s.startsWith('<')) return { error: `"${s}" is not a valid address (expected local-part@domain or @domain)` };
  if (!DOT_ATOM_RE.test(parts.local) && !QUOTED_RE.test(parts.local)) return { error: `"${s}" is not a valid address: bad local part "${parts.local}"` };
  if (Buffer.byteLength(parts.local) > 64) return { error: `"${s}" is not a valid address: the local part is longer than 64 octets` };
  const domain = normaliseDomain(parts.domain);
  if (!domain) return { error: `"${s}" is not a valid address: bad domain "${parts.domain}"` };
  return { key: `${caseLocal(parts.local, opts)}@${domain}`, kind: 'recipient' };
}

/** Error text for an override value, or null when it is usable. */
export function checkOverride(o: Override): string | null {
  const has = (v: unknown) => v !== undefined && v !== null;
  if (o.off !== undefined && typeof o.off !== 'boolean') return '"off" must be true or false';
  if (o.off && (has(o.server) || has(o.urlTemplate))) return 'an override is either "off" or names a server/template, not both';
  if (!o.off && !has(o.server) && !has(o.urlTemplate)) return 'an override needs a server, a URL template, or off';
  for (const [name, v] of [['server', o.server], ['url template', o.urlTemplate]] as const) {
    if (!has(v)) continue;
    if (typeof v !== 'string') return `the ${name} must be a string`;
    if (CONTROL_RE.test(v)) return `the ${name} ${JSON.stringify(v)} contains CR, LF or other control characters`;
  }
  if (has(o.server)) {
    const why = checkServer(o.server as string);
    if (why) return `server: ${why}`;
    // Every link would exceed MAX_LINK_LENGTH and be refused: the recipient would silently get no footer.
    if ((o.server as string).trim().length > MAX_LINK_LENGTH) return `server: longer than ${MAX_LINK_LENGTH} characters, the longest link allowed`;
  }
  if (has(o.urlTemplate)) {
    const why = checkTemplate(o.urlTemplate as string);
    if (why) return `url template: ${why}`;
    const literal = (o.urlTemplate as string).replace(/\{[^{}]*\}/g, '');
    if (literal.length > MAX_LINK_LENGTH) return `url template: longer than ${MAX_LINK_LENGTH} characters without its placeholders, the longest link allowed`;
  }
  // Refused here, not first by the store's write: bad input, not a Redis failure (and never half an import).
  const bytes = Buffer.byteLength(encodeOverride(o));
  if (bytes > MAX_OVERRIDE_BYTES) return `the override is too long: ${bytes} bytes stored, at most ${MAX_OVERRIDE_BYTES}`;
  return null;
}

/** Canonical copy: only the known fields, in a fixed order (so equal overrides compare equal). */
export function canonicalOverride(o: Override): Override {
  if (o.off) return { off: true };
  return { ...(o.server !== undefined ? { server: o.server.trim() } : {}), ...(o.urlTemplate !== undefined ? { urlTemplate: o.urlTemplate } : {}) };
}

export function sameOverride(a: Override, b: Override): boolean {
  return JSON.stringify(canonicalOverride(a)) === JSON.stringify(canonicalOverride(b));
}

export function encodeOverride(o: Override): string {
  return JSON.stringify({ v: OVERRIDE_VERSION, ...canonicalOverride(o) });
}

/**
 * Longest stored value read or written: an override is a server and a template, a few hundred bytes;
 * a longer value is corrupt, and reading a huge one would hold up every lookup queued behind it.
 */
export const MAX_OVERRIDE_BYTES = 4096;

/** Stored JSON → Override; throws OverrideDataError with the reason for anything else. */
export function decodeOverride(raw: string): Override {
  if (Buffer.byteLength(raw) > MAX_OVERRIDE_BYTES) throw new OverrideDataError(`longer than ${MAX_OVERRIDE_BYTES} bytes`);
  let data: unknown;
  try {
    data = JSON.parse(raw);
  } catch {
    throw new OverrideDataError('not JSON');
  }
  if (typeof data !== 'object' || data === null || Array.isArray(data)) throw new OverrideDataError('not a JSON object');
  const d = data as Record<string, unknown>;
  if (d.v !== OVERRIDE_VERSION) throw new OverrideDataError(`unknown version ${JSON.stringify(d.v)} (expected ${OVERRIDE_VERSION})`);
  const o: Override = {};
  if (d.server !== undefined) o.server = d.server as string;
  if (d.urlTemplate !== undefined) o.urlTemplate = d.urlTemplate as string;
  if (d.off !== undefined) o.off = d.off as boolean;
  const why = checkOverride(o);
  if (why) throw new OverrideDataError(why);
  return canonicalOverride(o);
}
