// Link tokens: round trip, every tampered or truncated byte refused, key ids and rotation, expiry,
// scope, binding to recipient/event/message, no personal data inside, and the constant-time compare.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto, { createHash, randomBytes } from 'node:crypto';
import { syncBuiltinESMExports } from 'node:module';
import { DEFAULT_SCOPE, mintToken, parseSecret, verifyToken, type MintOptions } from '../lib/token.js';
import { verifyToken as publicVerify, parseSecret as publicParse } from '../lib/index.js';

const K1 = Buffer.alloc(32, 0x11);
const K2 = Buffer.alloc(48, 0x22);
const NOW = Date.UTC(2026, 10, 26, 12, 0, 0);
const DAY = 86400;
const RCPT = 'Bob.Smith@Example.org';
const UID = '040000008200E00074C5B7101A82E00800000000D0A0F2D5C1DCDA01000000000000000010000000';
const base: MintOptions = { key: K1, keyId: 'k1', recipient: RCPT, uid: UID, messageId: '<calendar-1234@google.com>', ttlSeconds: 400 * DAY, now: NOW };
const keys = { k1: K1 };
const at = (seconds: number) => NOW + seconds * 1000;

test('round trip: a fresh token verifies and says what it is bound to', () => {
  const t = mintToken(base);
  assert.match(t, /^k1\.[A-Za-z0-9_-]+$/, 'URL-safe: kid, dot, base64url');
  assert.ok(t.length < 200, `${t.length} characters`);
  const r = verifyToken(t, keys, { recipient: RCPT, uid: UID, messageId: 'calendar-1234@google.com', now: at(60) });
  assert.ok(r.ok);
  assert.deepEqual(r.claims, {
    version: 1, kid: 'k1', scope: DEFAULT_SCOPE, iat: NOW / 1000, exp: NOW / 1000 + 400 * DAY,
    bound: { recipient: true, uid: true, recurrenceId: false, messageId: true },
  });
  assert.equal(publicVerify, verifyToken, 'lib/index.ts exports the same verifyToken');
  assert.equal(publicParse, parseSecret);
});

test('the longest token (16-char kid, 32-char scope, everything bound) stays under 200 characters', () => {
  const t = mintToken({ ...base, keyId: 'k'.repeat(16), scope: 's'.repeat(32), recurrenceId: '20261201T100000Z' });
  assert.ok(t.length < 200, `${t.length} characters`);
  assert.ok(verifyToken(t, { ['k'.repeat(16)]: K1 }, { scope: 's'.repeat(32), now: NOW }).ok);
});

test('changing any bit of the decoded token is refused', () => {
  const t = mintToken(base);
  const raw = Buffer.from(t.slice(3), 'base64url');
  for (let i = 0; i < raw.length; i++) {
    for (let bit = 0; bit < 8; bit++) {
      const copy = Buffer.from(raw);
      copy[i] = (copy[i] as number) ^ (1 << bit);
      const r = verifyToken(`k1.${copy.toString('base64url')}`, keys, { now: NOW });
      assert.equal(r.ok, false, `byte ${i} bit ${bit}`);
    }
  }
});

test('changing any character of the token string is refused (also the spare bits of the last one)', () => {
  const t = mintToken(base);
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ ';
  let tried = 0;
  for (let i = 0; i < t.length; i++) {
    for (const ch of alphabet) {
      if (ch === t[i]) continue;
      const forged = t.slice(0, i) + ch + t.slice(i + 1);
      assert.equal(verifyToken(forged, keys, { now: NOW }).ok, false, `position ${i} → ${ch}`);
      tried++;
    }
  }
  assert.ok(tried > 5000);
});

test('truncation at every length, and anything appended, is refused without throwing', () => {
  const t = mintToken(base);
  for (let n = 0; n < t.length; n++) {
    const r = verifyToken(t.slice(0, n), keys, { now: NOW });
    assert.equal(r.ok, false, `length ${n}`);
  }
  for (const tail of ['A', 'AA', 'AAAA', '.', '=', '%3D']) assert.equal(verifyToken(t + tail, keys, { now: NOW }).ok, false, tail);
  for (const junk of ['', '.', 'k1.', 'k1', '.AAAA', 'k1.!!!!', 'x'.repeat(10000), `k1.${'A'.repeat(500)}`]) {
    assert.equal(verifyToken(junk, keys).ok, false, junk.slice(0, 20));
  }
  assert.deepEqual(verifyToken(null as unknown as string, keys), { ok: false, reason: 'malformed' });
});

test('reasons: malformed, unknown-key, bad-mac', () => {
  const t = mintToken(base);
  assert.deepEqual(verifyToken('k1.AQ', keys, { now: NOW }), { ok: false, reason: 'malformed' });
  assert.deepEqual(verifyToken(t, { k2: K2 }, { now: NOW }), { ok: false, reason: 'unknown-key' });
  assert.deepEqual(verifyToken(t, { k1: K2 }, { now: NOW }), { ok: false, reason: 'bad-mac' }, 'right id, wrong key');
  // Relabelling a token with another existing key id: the id is under the MAC.
  assert.deepEqual(verifyToken(`k2${t.slice(2)}`, { k1: K1, k2: K1 }, { now: NOW }), { ok: false, reason: 'bad-mac' });
  // Keys shorter than 32 bytes on the verifying side are ignored, never used.
  assert.deepEqual(verifyToken(t, { k1: Buffer.alloc(16) }, { now: NOW }), { ok: false, reason: 'unknown-key' });
  // Prototype names are not keys.
  const proto = mintToken({ ...base, keyId: '__proto__' });
  assert.deepEqual(verifyToken(proto, {}, { now: NOW }), { ok: false, reason: 'unknown-key' });
  assert.deepEqual(verifyToken(mintToken({ ...base, keyId: 'constructor' }), {}, { now: NOW }), { ok: false, reason: 'unknown-key' });
});

test('key rotation: tokens of two key ids verify side by side; a retired id stops working', () => {
  const old = mintToken({ ...base, keyId: 'k1', key: K1 });
  const cur = mintToken({ ...base, keyId: 'k2', key: K2 });
  const both = new Map([['k1', K1], ['k2', K2]]);
  assert.ok(verifyToken(old, both, { now: NOW }).ok);
  assert.ok(verifyToken(cur, both, { now: NOW }).ok);
  const r = verifyToken(cur, both, { now: NOW });
  assert.ok(r.ok && r.claims.kid === 'k2');
  assert.deepEqual(verifyToken(old, new Map([['k2', K2]]), { now: NOW }), { ok: false, reason: 'unknown-key' });
});

test('expiry: valid until the last second, refused from exp on', () => {
  const t = mintToken({ ...base, ttlSeconds: 3600 });
  assert.ok(verifyToken(t, keys, { now: at(3599) }).ok);
  assert.deepEqual(verifyToken(t, keys, { now: at(3600) }), { ok: false, reason: 'expired' });
  assert.deepEqual(verifyToken(t, keys, { now: at(400 * DAY) }), { ok: false, reason: 'expired' });
  // Without `now`, both sides use the real clock.
  const fresh = mintToken({ ...base, now: undefined, ttlSeconds: 60 });
  assert.ok(verifyToken(fresh, keys).ok);
});

test('scope: the default is view-message; another scope must be asked for by name', () => {
  const view = mintToken(base);
  const rsvp = mintToken({ ...base, scope: 'rsvp' });
  assert.deepEqual(verifyToken(rsvp, keys, { now: NOW }), { ok: false, reason: 'scope' });
  assert.ok(verifyToken(rsvp, keys, { now: NOW, scope: 'rsvp' }).ok);
  assert.deepEqual(verifyToken(view, keys, { now: NOW, scope: 'rsvp' }), { ok: false, reason: 'scope' });
  assert.ok(verifyToken(view, keys, { now: NOW, scope: 'view-message' }).ok);
});

test('binding: recipient (case-insensitive, brackets ignored), uid, recurrence-id, message-id', () => {
  const t = mintToken(base);
  const ok = (e: Parameters<typeof verifyToken>[2]) => verifyToken(t, keys, { now: NOW, ...e });
  assert.ok(ok({ recipient: 'bob.smith@example.org' }).ok);
  assert.ok(ok({ recipient: '<BOB.SMITH@EXAMPLE.ORG>' }).ok);
  assert.deepEqual(ok({ recipient: 'alice@example.org' }), { ok: false, reason: 'mismatch' });
  assert.deepEqual(ok({ recipient: '' }), { ok: false, reason: 'mismatch' });
  assert.deepEqual(ok({ uid: UID.toLowerCase() }), { ok: false, reason: 'mismatch' }, 'UIDs compare exactly');
  assert.deepEqual(ok({ uid: `${UID}x` }), { ok: false, reason: 'mismatch' });
  assert.ok(ok({ recurrenceId: null }).ok, 'not bound to an instance');
  assert.deepEqual(ok({ recurrenceId: '20261201T100000Z' }), { ok: false, reason: 'mismatch' });
  assert.ok(ok({ messageId: '<calendar-1234@google.com>' }).ok);
  assert.deepEqual(ok({ messageId: 'other@google.com' }), { ok: false, reason: 'mismatch' });

  const inst = mintToken({ ...base, recurrenceId: '20261201T100000Z' });
  assert.ok(verifyToken(inst, keys, { now: NOW, uid: UID, recurrenceId: '20261201T100000Z' }).ok);
  assert.ok(verifyToken(inst, keys, { now: NOW, uid: UID }).ok, 'recurrence-id not asked → not checked');
  assert.deepEqual(verifyToken(inst, keys, { now: NOW, recurrenceId: null }), { ok: false, reason: 'mismatch' });
  assert.deepEqual(verifyToken(inst, keys, { now: NOW, recurrenceId: '20261208T100000Z' }), { ok: false, reason: 'mismatch' });

  // TNEF/custom forms have no UID: a verifier that asks for one gets a mismatch, not a pass.
  const noUid = mintToken({ ...base, uid: null, messageId: null });
  const r = verifyToken(noUid, keys, { now: NOW });
  assert.ok(r.ok && !r.claims.bound.uid && !r.claims.bound.messageId);
  assert.deepEqual(verifyToken(noUid, keys, { now: NOW, uid: UID }), { ok: false, reason: 'mismatch' });
  assert.deepEqual(verifyToken(noUid, keys, { now: NOW, messageId: 'calendar-1234@google.com' }), { ok: false, reason: 'mismatch' });
});

test('whatever the caller passes (request values as they come: arrays, null), an answer and never an exception', () => {
  const t = mintToken(base);
  const loose = (e: unknown, k: unknown = keys) => verifyToken(t, k as typeof keys, e as Parameters<typeof verifyToken>[2]);
  assert.deepEqual(loose({ now: NOW, recipient: [RCPT, RCPT] }), { ok: false, reason: 'mismatch' }, 'a repeated query parameter');
  assert.deepEqual(loose({ now: NOW, recipient: null }), { ok: false, reason: 'mismatch' });
  assert.deepEqual(loose({ now: NOW, uid: 42 }), { ok: false, reason: 'mismatch' });
  assert.deepEqual(loose({ now: NOW, messageId: {} }), { ok: false, reason: 'mismatch' });
  assert.deepEqual(loose({ now: NOW, recurrenceId: ['x'] }), { ok: false, reason: 'mismatch' });
  assert.deepEqual(loose(null, null), { ok: false, reason: 'unknown-key' });
  assert.deepEqual(verifyToken(t, undefined as never, undefined), { ok: false, reason: 'unknown-key' });
  assert.equal(loose(null).ok, true, 'no expectations: only the MAC, expiry and scope');
});

test('no personal data in clear text: neither the address, its parts, the UID nor the Message-ID', () => {
  const t = mintToken({ ...base, recurrenceId: '20261201T100000Z' });
  const raw = Buffer.from(t.slice(3), 'base64url');
  const needles = [RCPT, RCPT.toLowerCase(), 'bob.smith', 'example.org', UID, UID.slice(0, 12), 'calendar-1234', 'google.com', '20261201'];
  for (const n of needles) {
    for (const hay of [raw.toString('latin1').toLowerCase(), t.toLowerCase()]) assert.ok(!hay.includes(n.toLowerCase()), n);
  }
  // Keyed hashes, not plain ones: the plain SHA-256 of the address (brute-forceable) is not inside.
  for (const v of [RCPT, RCPT.toLowerCase(), UID]) {
    assert.equal(raw.includes(createHash('sha256').update(v).digest().subarray(0, 8)), false, v);
  }
  // The same recipient under another key gives unrelated bytes (no cross-key linking).
  const other = Buffer.from(mintToken({ ...base, key: K2 }).slice(3), 'base64url');
  const mine = Buffer.from(mintToken(base).slice(3), 'base64url');
  const scopeEnd = 11 + DEFAULT_SCOPE.length;
  assert.notDeepEqual(other.subarray(scopeEnd, scopeEnd + 16), mine.subarray(scopeEnd, scopeEnd + 16));
});

test('MACs are compared with crypto.timingSafeEqual, and a wrong-length MAC never reaches it', () => {
  const calls: number[] = [];
  const real = crypto.timingSafeEqual;
  crypto.timingSafeEqual = ((a: NodeJS.ArrayBufferView, b: NodeJS.ArrayBufferView) => {
    calls.push(a.byteLength);
    return real(a, b);
  }) as typeof crypto.timingSafeEqual;
  syncBuiltinESMExports(); // the named import in lib/token.ts now sees the wrapper
  try {
    const t = mintToken(base);
    assert.ok(verifyToken(t, keys, { now: NOW, recipient: RCPT, uid: UID }).ok);
    assert.deepEqual(calls, [16, 16, 16], 'MAC, recipient hash, UID hash');
    calls.length = 0;
    const raw = Buffer.from(t.slice(3), 'base64url');
    raw[raw.length - 1] = (raw[raw.length - 1] as number) ^ 1;
    assert.deepEqual(verifyToken(`k1.${raw.toString('base64url')}`, keys, { now: NOW }), { ok: false, reason: 'bad-mac' });
    assert.deepEqual(calls, [16], 'a bad MAC is found by timingSafeEqual, not by an early-exit compare');
    calls.length = 0;
    // Shorter or longer MAC: refused on its length, and timingSafeEqual (which throws on unequal lengths) is never called.
    for (const cut of [raw.subarray(0, raw.length - 1), Buffer.concat([raw, Buffer.from([0])])]) {
      assert.doesNotThrow(() => verifyToken(`k1.${cut.toString('base64url')}`, keys, { now: NOW }));
      assert.equal(verifyToken(`k1.${cut.toString('base64url')}`, keys, { now: NOW }).ok, false);
    }
    assert.deepEqual(calls, []);
  } finally {
    crypto.timingSafeEqual = real;
    syncBuiltinESMExports();
  }
});

test('mintToken refuses weak or malformed inputs', () => {
  assert.throws(() => mintToken({ ...base, key: Buffer.alloc(31) }), /at least 32 bytes/);
  assert.throws(() => mintToken({ ...base, key: Buffer.alloc(0) }), /at least 32 bytes/);
  assert.throws(() => mintToken({ ...base, keyId: 'k.1' }), /key id/);
  assert.throws(() => mintToken({ ...base, keyId: 'k'.repeat(17) }), /key id/);
  assert.throws(() => mintToken({ ...base, keyId: '' }), /key id/);
  assert.throws(() => mintToken({ ...base, scope: 'View Message' }), /scope/);
  assert.throws(() => mintToken({ ...base, scope: '' }), /scope/);
  assert.throws(() => mintToken({ ...base, ttlSeconds: 0 }), /lifetime/);
  assert.throws(() => mintToken({ ...base, ttlSeconds: 1.5 }), /lifetime/);
  assert.throws(() => mintToken({ ...base, recipient: '  ' }), /recipient/);
});

test('parseSecret: hex (64+ digits) or base64/base64url, at least 32 bytes, never a fallback', () => {
  const key = randomBytes(32);
  assert.deepEqual(parseSecret(key.toString('hex')), key);
  assert.deepEqual(parseSecret(key.toString('hex').toUpperCase()), key);
  assert.deepEqual(parseSecret(`  ${key.toString('hex')}\n`), key);
  assert.deepEqual(parseSecret(key.toString('base64')), key);
  assert.deepEqual(parseSecret(key.toString('base64url')), key);
  assert.equal(parseSecret(randomBytes(64).toString('base64')).length, 64);
  const cases: Array<[string, RegExp]> = [
    ['', /empty/],
    ['   ', /empty/],
    ['ab'.repeat(31), /31 bytes; at least 32/],
    ['a'.repeat(63), /odd number/],
    [randomBytes(31).toString('base64'), /31 bytes/],
    ['secret', /neither hex nor base64|bytes/],
    ['correct horse battery staple correct horse battery staple', /neither hex nor base64/],
    ['ab+/cd-_'.repeat(8), /neither hex nor base64/],
  ];
  for (const [s, why] of cases) assert.throws(() => parseSecret(s), why, JSON.stringify(s));
  assert.throws(() => parseSecret(undefined as unknown as string), /empty/);
});

test('a clock the verifier cannot read (NaN, Infinity, a string) never makes a token immortal', () => {
  const t = mintToken({ ...base, ttlSeconds: 3600 });
  for (const now of [NaN, Infinity, -Infinity, 'tomorrow', {}]) {
    const r = verifyToken(t, keys, { now: now as number });
    assert.equal(r.ok, false, String(now));
  }
  // a genuinely expired token stays expired whatever `now` the caller got wrong
  assert.ok(verifyToken(t, keys, { now: at(10) }).ok);
});
