// View-link capabilities of the built-in web view, and the other keyed values around them.
// In: the token keys by kid, the recipient key. Out: tokens "b64url(P).b64url(M)" (63 characters) where
// P = 0x01 ‖ kid ‖ R (12 bytes, keyed pseudonym of the recipient) ‖ rid (16 random bytes, one snapshot)
// and M = HMAC-SHA256(K[kid], "clf/view/v1\0" ‖ P)[0..16]; form tokens for POSTs; the recipient
// pseudonym R; event keys; sealing of the stored recipient address (AES-256-GCM).
// Fails: verifyViewToken never throws and does no I/O: it answers null for anything not minted by us,
// so the server can 404 before touching Redis. openAddress returns null for a value it cannot open.
// Revocation is deleting the snapshot: the token carries no expiry, the Redis TTL is its lifetime.

import { createCipheriv, createDecipheriv, createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

const VERSION = 1;
const VIEW_LABEL = Buffer.from('clf/view/v1\0', 'latin1');
const FORM_LABEL = Buffer.from('clf/form/v1\0', 'latin1');
const TOKEN_RE = /^[A-Za-z0-9_-]{40}\.[A-Za-z0-9_-]{22}$/;
export const FORM_TOKEN_TTL_S = 2 * 3600;

export interface ViewClaims {
  kid: number;
  /** Recipient pseudonym, base64url (16 characters): the Redis hash tag. */
  r: string;
  /** Snapshot id, base64url (22 characters). */
  rid: string;
}

/** R = base64url(HMAC-SHA256(K_rcpt, "clf/rcpt/v1\0" ‖ lowercase(address))[0..12]). */
export function recipientTag(rcptKey: Buffer, address: string): string {
  const a = address.trim().replace(/^<(.*)>$/, '$1').toLowerCase();
  return createHmac('sha256', rcptKey).update('clf/rcpt/v1\0').update(a).digest().subarray(0, 12).toString('base64url');
}

/** evkey = base64url(SHA-256(UID)[0..12]). */
export function eventKey(uid: string): string {
  return createHash('sha256').update(uid).digest().subarray(0, 12).toString('base64url');
}

export function newSnapshotId(): string {
  return randomBytes(16).toString('base64url');
}

function viewMac(key: Buffer, p: Buffer): Buffer {
  return createHmac('sha256', key).update(VIEW_LABEL).update(p).digest().subarray(0, 16);
}

export function mintViewToken(keys: Map<number, Buffer>, kid: number, r: string, rid: string): string {
  const key = keys.get(kid);
  if (!key) throw new Error(`no token key with kid ${kid}`);
  const rb = Buffer.from(r, 'base64url');
  const ridb = Buffer.from(rid, 'base64url');
  if (rb.length !== 12 || ridb.length !== 16) throw new Error('bad recipient tag or snapshot id');
  const p = Buffer.concat([Buffer.from([VERSION, kid]), rb, ridb]);
  return `${p.toString('base64url')}.${viewMac(key, p).toString('base64url')}`;
}

/** Claims of a genuine token, or null. Constant work: shape, decode, one HMAC, one timingSafeEqual. */
export function verifyViewToken(token: string, keys: Map<number, Buffer>): ViewClaims | null {
  if (typeof token !== 'string' || !TOKEN_RE.test(token)) return null;
  const [ps, ms] = token.split('.') as [string, string];
  const p = Buffer.from(ps, 'base64url');
  const m = Buffer.from(ms, 'base64url');
  // Only the canonical spelling: the spare low bits of the last character must not give a second token.
  if (p.length !== 30 || m.length !== 16 || p.toString('base64url') !== ps || m.toString('base64url') !== ms) return null;
  if (p[0] !== VERSION) return null;
  const kid = p[1] as number;
  const key = keys.get(kid);
  if (!key) return null;
  if (!timingSafeEqual(viewMac(key, p), m)) return null;
  return { kid, r: p.subarray(2, 14).toString('base64url'), rid: p.subarray(14, 30).toString('base64url') };
}

function formKey(key: Buffer): Buffer {
  return createHmac('sha256', key).update('clf/form-key/v1').digest();
}

function formMac(key: Buffer, rid: string, action: string, seq: number, issued: Buffer): Buffer {
  return createHmac('sha256', formKey(key)).update(FORM_LABEL).update(`${rid}\0${action}\0${seq}\0`).update(issued).digest().subarray(0, 16);
}

/** f = b64url(issuedAt u32 ‖ HMAC(K_form, label ‖ rid ‖ action ‖ seq ‖ issuedAt)[0..16]). */
export function mintFormToken(key: Buffer, rid: string, action: string, seq: number, nowMs = Date.now()): string {
  const issued = Buffer.alloc(4);
  issued.writeUInt32BE(Math.floor(nowMs / 1000));
  return Buffer.concat([issued, formMac(key, rid, action, seq, issued)]).toString('base64url');
}

export function verifyFormToken(key: Buffer, f: unknown, rid: string, action: string, seq: number, nowMs = Date.now()): boolean {
  if (typeof f !== 'string' || !/^[A-Za-z0-9_-]{27}$/.test(f)) return false;
  const raw = Buffer.from(f, 'base64url');
  if (raw.length !== 20) return false;
  const issued = raw.subarray(0, 4);
  const age = Math.floor(nowMs / 1000) - issued.readUInt32BE(0);
  if (age < -60 || age > FORM_TOKEN_TTL_S) return false;
  return timingSafeEqual(formMac(key, rid, action, seq, issued), raw.subarray(4));
}

function sealKey(rcptKey: Buffer): Buffer {
  return createHmac('sha256', rcptKey).update('clf/seal/v1').digest();
}

/** The envelope recipient as stored: AES-256-GCM under a key derived from K_rcpt, base64url(iv ‖ tag ‖ ct). */
export function sealAddress(rcptKey: Buffer, address: string): string {
  const iv = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', sealKey(rcptKey), iv);
  const ct = Buffer.concat([c.update(address, 'utf8'), c.final()]);
  return Buffer.concat([iv, c.getAuthTag(), ct]).toString('base64url');
}

export function openAddress(rcptKey: Buffer, sealed: string | undefined): string | null {
  if (!sealed) return null;
  try {
    const raw = Buffer.from(sealed, 'base64url');
    const d = createDecipheriv('aes-256-gcm', sealKey(rcptKey), raw.subarray(0, 12));
    d.setAuthTag(raw.subarray(12, 28));
    return Buffer.concat([d.update(raw.subarray(28)), d.final()]).toString('utf8');
  } catch {
    return null;
  }
}

/** Opaque random secrets (sign-in links, sessions) and the hash they are stored under. */
export function newSecret(): string {
  return randomBytes(32).toString('base64url');
}

export function secretHash(s: string): string {
  return createHash('sha256').update(s).digest('base64url');
}
