// Link tokens: stateless HMAC-SHA256 capabilities that say "this recipient may view this message".
// In (filter side): link_secret (parseSecret), link_key_id, the recipient, the event's UID/RECURRENCE-ID,
// the Message-ID, a scope and a lifetime → mintToken → "<kid>.<base64url(body ‖ mac)>", ~120 characters.
// In (web side): the token, the keys by id, what the request is about → verifyToken → claims, or a reason.
// Fails: mintToken and parseSecret throw on bad input (short key, bad key id, bad scope); verifyToken never
// throws on a token, it answers { ok: false, reason } for anything wrong with it.
//
// Body (version 1), all integers big-endian:
//   ver u8 = 1 | flags u8 (1 = uid, 2 = recurrence-id, 4 = message-id bound) | iat u32 | exp u32 (Unix seconds)
//   | scope: u8 length + ASCII | rcpt 16 | [uid 16] | [rid 16] | [mid 16] | mac 16
// rcpt/uid/rid/mid are keyed hashes (HMAC-SHA256 under a sub-key derived from the link key, cut to
// 16 bytes), so the token names no address and no UID, and without the key they cannot be guessed.
// mac = HMAC-SHA256(mac sub-key, "callink/v1|" + kid + "|" + body)[0..16): it covers the key id and the
// exact body bytes, so nothing needs canonicalising.

import { createHmac, timingSafeEqual } from 'node:crypto';

export const TOKEN_VERSION = 1;
export const DEFAULT_SCOPE = 'view-message';
/** Shortest key accepted: 256 bits, as for HMAC-SHA256's output. */
export const MIN_KEY_BYTES = 32;

const HASH_BYTES = 16;
const MAC_BYTES = 16;
const DOMAIN = 'callink/v1';
const KID_RE = /^[A-Za-z0-9_-]{1,16}$/;
const SCOPE_RE = /^[a-z][a-z0-9-]{0,31}$/;
const B64URL_RE = /^[A-Za-z0-9_-]+$/;
/** Far more than any valid token; stops work on junk early. */
const MAX_TOKEN_CHARS = 400;
const FLAG_UID = 1;
const FLAG_RID = 2;
const FLAG_MID = 4;

export interface MintOptions {
  key: Buffer;
  keyId: string;
  recipient: string;
  uid: string | null;
  recurrenceId?: string | null;
  messageId?: string | null;
  /** What the link may do; default 'view-message'. */
  scope?: string;
  ttlSeconds: number;
  /** Milliseconds since the epoch (Date.now()); for tests. */
  now?: number;
}

export interface TokenClaims {
  version: number;
  kid: string;
  scope: string;
  /** Issued at / expires, Unix seconds. */
  iat: number;
  exp: number;
  /** Which values the token is bound to (their keyed hashes are inside, never the values). */
  bound: { recipient: true; uid: boolean; recurrenceId: boolean; messageId: boolean };
}

export interface VerifyExpect {
  /** Envelope address the link was minted for (compared case-insensitively). */
  recipient?: string;
  uid?: string;
  /** null = the token must be bound to no RECURRENCE-ID (the master); undefined = not checked. */
  recurrenceId?: string | null;
  messageId?: string;
  /** Default 'view-message': a verifier that names no scope only accepts the weakest one. */
  scope?: string;
  /** Milliseconds since the epoch. */
  now?: number;
}

export type VerifyFailure = 'malformed' | 'unknown-key' | 'bad-mac' | 'expired' | 'scope' | 'mismatch';
export type VerifyResult = { ok: true; claims: TokenClaims } | { ok: false; reason: VerifyFailure };

/**
 * link_secret → key bytes. All-hex text is hex (64+ digits); anything else must be base64 or base64url.
 * Throws on anything shorter than 32 bytes: there is no fallback key, empty or otherwise.
 */
export function parseSecret(s: string): Buffer {
  const t = typeof s === 'string' ? s.trim() : '';
  if (t === '') throw new Error('link_secret is empty: set at least 32 random bytes as hex or base64 (e.g. `openssl rand -hex 32`)');
  let key: Buffer;
  if (/^[0-9a-fA-F]+$/.test(t)) {
    if (t.length % 2 !== 0) throw new Error(`link_secret: ${t.length} hex digits is an odd number`);
    key = Buffer.from(t, 'hex');
  } else if (/^[A-Za-z0-9+/_-]+={0,2}$/.test(t) && !(/[+/]/.test(t) && /[-_]/.test(t))) {
    key = Buffer.from(t, 'base64');
  } else {
    throw new Error('link_secret is neither hex nor base64/base64url');
  }
  if (key.length < MIN_KEY_BYTES) {
    throw new Error(`link_secret holds ${key.length} bytes; at least ${MIN_KEY_BYTES} are needed (e.g. \`openssl rand -hex 32\`)`);
  }
  return key;
}

/** A sub-key per purpose, so a hash field can never be replayed as a MAC or as another field. */
function subKey(key: Buffer, purpose: 'mac' | 'rcpt' | 'uid' | 'rid' | 'mid'): Buffer {
  return createHmac('sha256', key).update(`${DOMAIN}|key|${purpose}`).digest();
}

function keyedHash(key: Buffer, purpose: 'rcpt' | 'uid' | 'rid' | 'mid', value: string): Buffer {
  return createHmac('sha256', subKey(key, purpose)).update(`${DOMAIN}|${purpose}|${value}`).digest().subarray(0, HASH_BYTES);
}

function mac(key: Buffer, kid: string, body: Buffer): Buffer {
  return createHmac('sha256', subKey(key, 'mac')).update(`${DOMAIN}|${kid}|`).update(body).digest().subarray(0, MAC_BYTES);
}

/** Envelope addresses are compared without angle brackets and case-insensitively, as mail systems do. */
function normRecipient(r: string): string {
  return r.trim().replace(/^<(.*)>$/, '$1').toLowerCase();
}

function normMessageId(m: string): string {
  return m.trim().replace(/^<(.*)>$/, '$1');
}

export function mintToken(opts: MintOptions): string {
  const { key, keyId, ttlSeconds } = opts;
  const scope = opts.scope ?? DEFAULT_SCOPE;
  if (!Buffer.isBuffer(key) || key.length < MIN_KEY_BYTES) throw new Error(`link key must be at least ${MIN_KEY_BYTES} bytes`);
  if (!KID_RE.test(keyId)) throw new Error(`link key id "${keyId}" must be 1-16 characters [A-Za-z0-9_-]`);
  if (!SCOPE_RE.test(scope)) throw new Error(`token scope "${scope}" must be 1-32 characters [a-z0-9-], starting with a letter`);
  if (!Number.isSafeInteger(ttlSeconds) || ttlSeconds <= 0) throw new Error(`token lifetime ${ttlSeconds} must be a positive whole number of seconds`);
  const recipient = normRecipient(opts.recipient ?? '');
  if (recipient === '') throw new Error('a token needs a recipient');
  const iat = Math.floor((opts.now ?? Date.now()) / 1000);
  const exp = iat + ttlSeconds;
  if (iat < 0 || exp > 0xffffffff) throw new Error('token times do not fit in 32 bits');

  const parts: Buffer[] = [keyedHash(key, 'rcpt', recipient)];
  let flags = 0;
  if (opts.uid) { flags |= FLAG_UID; parts.push(keyedHash(key, 'uid', opts.uid)); }
  if (opts.recurrenceId) { flags |= FLAG_RID; parts.push(keyedHash(key, 'rid', opts.recurrenceId)); }
  if (opts.messageId && normMessageId(opts.messageId)) { flags |= FLAG_MID; parts.push(keyedHash(key, 'mid', normMessageId(opts.messageId))); }

  const head = Buffer.alloc(10);
  head.writeUInt8(TOKEN_VERSION, 0);
  head.writeUInt8(flags, 1);
  head.writeUInt32BE(iat, 2);
  head.writeUInt32BE(exp, 6);
  const body = Buffer.concat([head, Buffer.from([scope.length]), Buffer.from(scope, 'ascii'), ...parts]);
  return `${keyId}.${Buffer.concat([body, mac(key, keyId, body)]).toString('base64url')}`;
}

function sameBytes(a: Buffer, b: Buffer): boolean {
  // timingSafeEqual throws on different lengths; the length itself is no secret.
  return a.length === b.length && timingSafeEqual(a, b);
}

function lookupKey(keys: Map<string, Buffer> | Record<string, Buffer>, kid: string): Buffer | undefined {
  const k = keys instanceof Map ? keys.get(kid) : Object.prototype.hasOwnProperty.call(keys, kid) ? keys[kid] : undefined;
  return Buffer.isBuffer(k) && k.length >= MIN_KEY_BYTES ? k : undefined;
}

/**
 * Check a token. Order: shape → key id → MAC → expiry → scope → bound values; only a token whose MAC
 * verified is ever looked at further, so "expired"/"scope"/"mismatch" are answers about genuine tokens.
 */
export function verifyToken(token: string, keys: Map<string, Buffer> | Record<string, Buffer>, expect: VerifyExpect = {}): VerifyResult {
  const fail = (reason: VerifyFailure): VerifyResult => ({ ok: false, reason });
  // A web server may hand over request values as they come (a repeated query parameter is an array,
  // a missing one null): an answer of false, never an exception, whatever the caller passes.
  expect ??= {};
  if (typeof token !== 'string' || token.length > MAX_TOKEN_CHARS) return fail('malformed');
  if (keys === null || typeof keys !== 'object') return fail('unknown-key');
  const notString = (v: unknown) => v !== undefined && typeof v !== 'string';
  if (notString(expect.recipient) || notString(expect.uid) || notString(expect.messageId) || (expect.recurrenceId !== null && notString(expect.recurrenceId))) {
    return fail('mismatch');
  }
  const dot = token.indexOf('.');
  const kid = token.slice(0, dot);
  const b64 = token.slice(dot + 1);
  if (dot < 0 || !KID_RE.test(kid) || !B64URL_RE.test(b64)) return fail('malformed');
  const raw = Buffer.from(b64, 'base64url');
  // Only the canonical spelling counts: otherwise the spare low bits of the last character could be
  // flipped and the token would still verify.
  if (raw.toString('base64url') !== b64) return fail('malformed');
  if (raw.length < 11 + MAC_BYTES || raw[0] !== TOKEN_VERSION) return fail('malformed');
  const flags = raw[1] as number;
  const scopeLen = raw[10] as number;
  if (flags & ~(FLAG_UID | FLAG_RID | FLAG_MID)) return fail('malformed');
  const hashes = 1 + (flags & FLAG_UID ? 1 : 0) + (flags & FLAG_RID ? 1 : 0) + (flags & FLAG_MID ? 1 : 0);
  const bodyLen = 11 + scopeLen + hashes * HASH_BYTES;
  if (raw.length !== bodyLen + MAC_BYTES) return fail('malformed');

  const key = lookupKey(keys, kid);
  if (!key) return fail('unknown-key');
  const body = raw.subarray(0, bodyLen);
  if (!sameBytes(mac(key, kid, body), raw.subarray(bodyLen))) return fail('bad-mac');

  const scope = body.subarray(11, 11 + scopeLen).toString('latin1');
  const claims: TokenClaims = {
    version: TOKEN_VERSION,
    kid,
    scope,
    iat: body.readUInt32BE(2),
    exp: body.readUInt32BE(6),
    bound: { recipient: true, uid: !!(flags & FLAG_UID), recurrenceId: !!(flags & FLAG_RID), messageId: !!(flags & FLAG_MID) },
  };
  // A clock that is no finite number (NaN compares false with everything) must not make a token immortal.
  const nowS = Math.floor(Number(expect.now ?? Date.now()) / 1000);
  if (!Number.isFinite(nowS) || nowS >= claims.exp) return fail('expired');
  if (scope !== (expect.scope ?? DEFAULT_SCOPE)) return fail('scope');

  let at = 11 + scopeLen;
  const next = (present: boolean): Buffer | null => {
    if (!present) return null;
    const h = body.subarray(at, at + HASH_BYTES);
    at += HASH_BYTES;
    return h;
  };
  const rcpt = next(true) as Buffer;
  const uid = next(claims.bound.uid);
  const rid = next(claims.bound.recurrenceId);
  const mid = next(claims.bound.messageId);
  const matches = (h: Buffer | null, purpose: 'rcpt' | 'uid' | 'rid' | 'mid', value: string): boolean =>
    h !== null && sameBytes(h, keyedHash(key, purpose, value));
  if (expect.recipient !== undefined && !matches(rcpt, 'rcpt', normRecipient(expect.recipient))) return fail('mismatch');
  if (expect.uid !== undefined && !matches(uid, 'uid', expect.uid)) return fail('mismatch');
  if (expect.recurrenceId === null && rid !== null) return fail('mismatch');
  if (typeof expect.recurrenceId === 'string' && !matches(rid, 'rid', expect.recurrenceId)) return fail('mismatch');
  if (expect.messageId !== undefined && !matches(mid, 'mid', normMessageId(expect.messageId))) return fail('mismatch');
  return { ok: true, claims };
}
