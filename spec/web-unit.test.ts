// Unit tests of the built-in web view: tokens, the REPLY builder, supersede rules (memory and the real
// Lua script on redis-server), time formatting, escaping of hostile calendar values, and the status codes
// of the routes (404 before any store access, 410, 503), all through hono's app.request().

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildReply, readEvent, ReplyError } from '../lib/calendar-event.js';
import { mintViewToken, verifyViewToken, recipientTag, newSnapshotId, mintFormToken, verifyFormToken } from '../lib/snapshot-token.js';
import { MemorySnapshotStore, openSnapshotStore, type IngestArgs, type SnapshotStore } from '../lib/snapshot-store.js';
import { createWebApp, SECURITY_HEADERS } from '../lib/web/server.js';
import { formatWhen, describeRule } from '../lib/web/format.js';
import { expiry } from '../lib/snapshot-ingest.js';
import { loadConfig } from '../lib/config.js';
import { webSettings, type WebSettings } from '../lib/snapshot-config.js';
import { ConfigError } from '../lib/config.js';
import { ics, inviteMail } from './helpers/web-fixtures.js';
import { ingestMail, testSettings, viewPath } from './helpers/web-ingest.js';
import { startRedis } from './helpers/redis.js';
import { startSink, type Sink } from './helpers/sink.js';
import { simpleParser } from 'mailparser';
import ICAL from 'ical.js';
import { composeReply } from '../lib/web/reply-mail.js';

const { settings: S } = testSettings();
const silent = () => undefined;

/** A store that fails the test if anything touches it. */
function untouchable(): SnapshotStore {
  return new Proxy({} as SnapshotStore, { get: (_t, p) => (p === 'kind' ? 'memory' : () => { throw new Error(`store touched: ${String(p)}`); }) });
}

test('view token: round trip, 63 characters, bound to R and rid', () => {
  const r = recipientTag(S.rcptKey, 'Ann@Example.net');
  assert.equal(r, recipientTag(S.rcptKey, 'ann@example.net'));
  const rid = newSnapshotId();
  const t = mintViewToken(S.tokenKeys, 1, r, rid);
  assert.equal(t.length, 63);
  assert.deepEqual(verifyViewToken(t, S.tokenKeys), { kid: 1, r, rid });
});

test('view token: every single-byte tamper, wrong kid, truncation and padding → 404 without store access', async () => {
  const t = mintViewToken(S.tokenKeys, 1, recipientTag(S.rcptKey, 'ann@example.net'), newSnapshotId());
  const app = createWebApp({ settings: S, store: untouchable(), log: silent });
  const bad: string[] = [];
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  for (let i = 0; i < t.length; i++) {
    if (t[i] === '.') continue;
    const c = alphabet[(alphabet.indexOf(t[i]!) + 1 + (i % 7)) % 64]!;
    bad.push(t.slice(0, i) + c + t.slice(i + 1));
  }
  // Flipping bytes of the decoded payload (kid included) rather than characters.
  const [p, m] = t.split('.') as [string, string];
  const raw = Buffer.from(p, 'base64url');
  for (let i = 0; i < raw.length; i++) {
    const x = Buffer.from(raw);
    x[i] = (x[i]! ^ 0x01);
    bad.push(`${x.toString('base64url')}.${m}`);
  }
  const other = new Map([[2, S.tokenKeys.get(1)!]]);
  assert.equal(verifyViewToken(t, other), null, 'wrong kid');
  bad.push(t.slice(0, -1), t.slice(1), `${t}A`, `${t}=`, t.replace('.', ''), `${p}.`, '', 'x'.repeat(63));
  for (const b of bad) assert.equal(verifyViewToken(b, S.tokenKeys), null, b);
  // Through the server: 404 for all of them, and the store was never asked (it would throw → 500).
  const fresh = createWebApp({ settings: S, store: untouchable(), log: silent });
  for (const b of bad.slice(0, 15)) {
    const res = await fresh.request(`/m/${encodeURIComponent(b)}`);
    assert.equal(res.status, 404, b);
  }
  assert.equal((await app.request(`/m/${t}`.replace(/.$/, (c) => (c === 'A' ? 'B' : 'A')))).status, 404);
});

test('form token: bound to snapshot, action and sequence; expires after two hours', () => {
  const key = S.tokenKeys.get(1)!;
  const now = Date.UTC(2026, 10, 1);
  const f = mintFormToken(key, 'rid1', 'rsvp', 3, now);
  assert.ok(verifyFormToken(key, f, 'rid1', 'rsvp', 3, now + 1000));
  assert.ok(!verifyFormToken(key, f, 'rid2', 'rsvp', 3, now));
  assert.ok(!verifyFormToken(key, f, 'rid1', 'signin', 3, now));
  assert.ok(!verifyFormToken(key, f, 'rid1', 'rsvp', 4, now));
  assert.ok(!verifyFormToken(key, f, 'rid1', 'rsvp', 3, now + 2 * 3600_000 + 1000));
  assert.ok(!verifyFormToken(key, `${f.slice(0, -1)}A`, 'rid1', 'rsvp', 3, now));
});

test('start-up refuses missing or short keys, naming them', () => {
  const base = { web_base_url: 'https://cal.example.org', web_token_keys: `1=${'ab'.repeat(32)}`, web_rcpt_key: 'cd'.repeat(32) };
  const bad: Array<[Record<string, unknown>, RegExp]> = [
    [{ ...base, web_base_url: '' }, /web_base_url/],
    [{ ...base, web_token_keys: '' }, /web_token_keys/],
    [{ ...base, web_token_keys: `1=${'ab'.repeat(16)}` }, /web_token_keys.*16 bytes/],
    [{ ...base, web_rcpt_key: '' }, /web_rcpt_key/],
    [{ ...base, web_rcpt_key: 'cd'.repeat(31) }, /web_rcpt_key/],
    [{ ...base, web_token_kid: 2 }, /web_token_kid 2/],
  ];
  for (const [flags, re] of bad) assert.throws(() => webSettings(loadConfig({ flags })), (e: Error) => e instanceof ConfigError && re.test(e.message), JSON.stringify(flags));
  assert.equal(webSettings(loadConfig({ flags: base })).origin, 'https://cal.example.org');
});

test('REPLY builder follows RFC 5546 §3.2.3', () => {
  const req = ics({ sequence: 2 });
  const now = new Date(Date.UTC(2026, 10, 26, 11, 20, 26));
  const out = buildReply(req, { attendee: 'ann@example.net', partstat: 'ACCEPTED', comment: 'a;b,c\\ d', now });
  const lines = out.split('\r\n');
  assert.ok(out.endsWith('\r\n') && !/[^\r]\n/.test(out), 'CRLF only');
  for (const l of lines) assert.ok(Buffer.byteLength(l) <= 75, `folded: ${l}`);
  const unfolded = out.replace(/\r\n[ \t]/g, '');
  const has = (re: RegExp) => unfolded.split('\r\n').filter((l) => re.test(l));
  assert.deepEqual(has(/^METHOD:/), ['METHOD:REPLY']);
  const att = has(/^ATTENDEE/);
  assert.equal(att.length, 1, 'exactly one ATTENDEE');
  assert.match(att[0]!, /PARTSTAT=ACCEPTED/);
  assert.match(att[0]!, /:mailto:Ann@Example\.net$/, 'the value exactly as in the request');
  assert.deepEqual(has(/^ORGANIZER/), ['ORGANIZER;CN=Olga Organizer:mailto:olga@example.org']);
  assert.deepEqual(has(/^UID:/), ['UID:web-test-1@example.org']);
  assert.deepEqual(has(/^SEQUENCE:/), ['SEQUENCE:2']);
  assert.deepEqual(has(/^DTSTAMP/), ['DTSTAMP:20261126T112026Z']);
  assert.deepEqual(has(/^RECURRENCE-ID/), []);
  assert.deepEqual(has(/^DTSTART;TZID/), ['DTSTART;TZID=America/New_York:20261203T090000']);
  assert.deepEqual(has(/^COMMENT/), ['COMMENT:a\\;b\\,c\\\\ d']);
  assert.equal(has(/^BEGIN:VTIMEZONE/).length, 1, 'the referenced VTIMEZONE');
  assert.equal(has(/^BEGIN:VALARM/).length, 0, 'no VALARM');
  assert.equal(has(/^BEGIN:VEVENT/).length, 1);

  const zero = buildReply(ics({ sequence: 0, tzid: null, start: '20261203T140000Z', end: '20261203T150000Z' }), { attendee: 'mailto:ANN@example.net', partstat: 'DECLINED' });
  assert.doesNotMatch(zero, /^SEQUENCE/m, 'SEQUENCE 0 omitted');
  assert.doesNotMatch(zero, /VTIMEZONE/, 'no VTIMEZONE without a TZID');
  const inst = buildReply(ics({ recurrenceId: '20261210T090000', sequence: 1 }), { attendee: 'ann@example.net', partstat: 'TENTATIVE' });
  assert.match(inst, /^RECURRENCE-ID;TZID=America\/New_York:20261210T090000\r$/m);
  assert.throws(() => buildReply(ics(), { attendee: 'eve@example.net', partstat: 'ACCEPTED' }), ReplyError);
  assert.throws(() => buildReply(ics().replace(/^ORGANIZER.*\r\n/m, ''), { attendee: 'ann@example.net', partstat: 'ACCEPTED' }), ReplyError);
});

test('sequence falls back to X-MICROSOFT-CDO-APPT-SEQUENCE when SEQUENCE is 0', () => {
  assert.equal(readEvent(ics({ sequence: 0, extra: ['X-MICROSOFT-CDO-APPT-SEQUENCE:4'] }))?.sequence, 4);
  assert.equal(readEvent(ics({ sequence: 2, extra: ['X-MICROSOFT-CDO-APPT-SEQUENCE:4'] }))?.sequence, 2);
});

test('TTL: last occurrence plus grace, capped; endless series get the cap', () => {
  const rx = Date.UTC(2026, 10, 1);
  const d = 86_400;
  assert.deepEqual(expiry(Date.UTC(2026, 11, 3), rx, 30, 400).expireAt, Date.UTC(2026, 11, 3) / 1000 + 30 * d);
  assert.equal(expiry(Date.UTC(2030, 0, 1), rx, 30, 400).expireAt, rx / 1000 + 400 * d);
  assert.equal(expiry(null, rx, 30, 400).expireAt, rx / 1000 + 400 * d);
  assert.equal(expiry(Date.UTC(2020, 0, 1), rx, 30, 400).expireAt, rx / 1000 + 30 * d, 'a past meeting lives grace days from receipt');
  assert.equal(readEvent(ics({ rrule: 'FREQ=WEEKLY' }))?.lastEnd, null);
  assert.equal(readEvent(ics({ rrule: 'FREQ=WEEKLY;COUNT=3' }))?.lastEnd, Date.UTC(2026, 11, 17, 15));
});

async function supersede(store: SnapshotStore, name: string): Promise<void> {
  const r = recipientTag(S.rcptKey, `${name}@example.net`);
  const base = (rid: string, seq: number, stamp: string, method = 'REQUEST', recur = '', range = '', org = 'olga@example.org'): IngestArgs => ({
    r, rid, evkey: 'ev1', recur, seq, stamp, method, range, org, expireAt: Math.floor(Date.now() / 1000) + 3600,
    lastEnd: Math.floor(Date.now() / 1000) + 600, maxEvents: 10, pruneBefore: 0, fields: { kind: 'request', meth: method, evkey: 'ev1', recur },
  });
  assert.equal(await store.ingest(base('a', 0, '20261101T000000Z'), 1000), true, 'first');
  assert.equal(await store.ingest(base('b', 2, '20261102T000000Z'), 1000), true, 'higher SEQUENCE');
  assert.equal(await store.ingest(base('c', 1, '20261103T000000Z'), 1000), false, 'a late older REQUEST');
  assert.equal(await store.ingest(base('d', 2, '20261101T000000Z'), 1000), false, 'same SEQUENCE, older DTSTAMP');
  assert.equal(await store.ingest(base('e', 2, '20261104T000000Z'), 1000), true, 'same SEQUENCE, newer DTSTAMP');
  assert.equal((await store.event(r, 'ev1'))?.cur, 'e');
  // another organizer with the same UID (any other attendee knows it): stored, never current, cancels nothing
  assert.equal(await store.ingest(base('m1', 9, '20261109T000000Z', 'REQUEST', '', '', 'mallory@evil.example'), 1000), false, 'update from another organizer');
  assert.equal(await store.ingest(base('m2', 9, '20261109T000000Z', 'CANCEL', '', '', 'mallory@evil.example'), 1000), false, 'CANCEL from another organizer');
  assert.equal(await store.ingest(base('m3', 9, '20261109T000000Z', 'CANCEL', '20261210T090000', '', ''), 1000), false, 'an instance CANCEL naming no organizer');
  const bound = (await store.event(r, 'ev1'))!;
  assert.equal(bound.cur, 'e');
  assert.equal(bound['cur:cancelled'], undefined);
  assert.equal(bound.org, 'olga@example.org');
  assert.ok(await store.snapshot(r, 'm1'), 'the foreign version is kept under its own link');
  assert.equal(await store.ingest(base('f', 3, '20261105T000000Z', 'CANCEL', '20261210T090000'), 1000), true, 'instance CANCEL');
  let ev = (await store.event(r, 'ev1'))!;
  assert.equal(ev['x:20261210T090000:cancelled'], '1');
  assert.equal(ev['cur:cancelled'], undefined, 'the series stays');
  await store.ingest(base('g', 3, '20261105T000000Z', 'CANCEL', '20261217T090000', 'THISANDFUTURE'), 1000);
  assert.equal((await store.event(r, 'ev1'))!['x:20261217T090000:cancelled'], 'THISANDFUTURE');
  assert.equal(await store.ingest(base('h', 3, '20261106T000000Z', 'CANCEL'), 1000), true, 'whole CANCEL');
  ev = (await store.event(r, 'ev1'))!;
  assert.equal(ev.cur, 'h');
  assert.equal(ev['cur:cancelled'], '1');
  assert.deepEqual(await store.agenda(r, 0), ['ev1']);
  assert.ok(await store.snapshot(r, 'c'), 'older snapshots stay readable (their links say "newer version")');
}

/** The snapshot store on a real redis-server the test starts (its Lua scripts), closed whatever `run` does. */
async function withLuaStore(run: (store: SnapshotStore, redis: Awaited<ReturnType<typeof startRedis>>) => Promise<void>): Promise<void> {
  const redis = await startRedis();
  const store = openSnapshotStore(redis.url, 'calfilter:web:', 2000);
  try {
    assert.ok(await store.ready(2000));
    await run(store, redis);
  } finally {
    await store.close();
    await redis.stop();
  }
}

test('supersede rules: memory store', async () => {
  await supersede(new MemorySnapshotStore(), 'mem');
});

test('supersede rules: the Lua script on a real redis-server, every key in one slot, TTLs set', async () => {
  await withLuaStore(async (store, redis) => {
    await supersede(store, 'lua');
    const keys = (await redis.cli('KEYS', '*')).split('\n').filter(Boolean);
    assert.ok(keys.length >= 5);
    const tags = new Set(keys.map((k) => /\{([^}]+)\}/.exec(k)?.[1]));
    assert.equal(tags.size, 1, 'one hash tag');
    for (const k of keys) assert.ok(Number(await redis.cli('TTL', k)) > 0, `TTL on ${k}`);
  });
});

/** A store's ingest of one version of event 'ev1' for `who`, expiring `ttl` seconds from `nowS`. */
function version(r: string, rid: string, seq: number, stamp: string, method: string, nowS: number, ttl: number, org = 'olga@example.org'): IngestArgs {
  return {
    r, rid, evkey: 'ev1', recur: '', seq, stamp, method, range: '', org, expireAt: nowS + ttl, lastEnd: nowS + ttl - 60,
    maxEvents: 10, pruneBefore: 0, fields: { kind: method.toLowerCase(), meth: method, evkey: 'ev1', recur: '' },
  };
}

async function attendeeMessages(store: SnapshotStore, name: string): Promise<void> {
  const r = recipientTag(S.rcptKey, `${name}@example.net`);
  const now = Math.floor(Date.now() / 1000);
  assert.equal(await store.ingest(version(r, 'req', 1, '20261101T000000Z', 'REQUEST', now, 3600), 1000), true);
  // Anyone who knows the UID can write the organizer's address into a REPLY, COUNTER or REFRESH: none of
  // them is a version of the event (RFC 5546 §1.4: only the organizer's methods change it).
  for (const [rid, method] of [['rep', 'REPLY'], ['cou', 'COUNTER'], ['ref', 'REFRESH'], ['dec', 'DECLINECOUNTER']] as const) {
    assert.equal(await store.ingest(version(r, rid, 1, '20261109T000000Z', method, now, 3600), 1000), false, `${method} does not supersede the REQUEST`);
  }
  assert.equal((await store.event(r, 'ev1'))?.cur, 'req');
  assert.equal(await store.ingest(version(r, 'can', 1, '20261102T000000Z', 'CANCEL', now, 3600), 1000), true, 'the organizer cancels');
  assert.equal(await store.ingest(version(r, 'rep2', 1, '20261110T000000Z', 'REPLY', now, 3600), 1000), false, 'a later REPLY');
  const ev = (await store.event(r, 'ev1'))!;
  assert.equal(ev.cur, 'can');
  assert.equal(ev['cur:cancelled'], '1', 'a REPLY does not lift the cancellation');
  // Alone (the organizer's own copy gets only replies) a REPLY is shown, and a REQUEST arriving later still wins.
  const r2 = recipientTag(S.rcptKey, `${name}-org@example.net`);
  assert.equal(await store.ingest(version(r2, 'rep3', 1, '20261109T000000Z', 'REPLY', now, 3600), 1000), true, 'nothing to supersede');
  assert.equal(await store.ingest(version(r2, 'req3', 1, '20261101T000000Z', 'REQUEST', now, 3600), 1000), true, 'the REQUEST supersedes a reply');
  assert.equal((await store.event(r2, 'ev1'))?.cur, 'req3');
}

test('REPLY, COUNTER, REFRESH, DECLINECOUNTER never supersede the organizer\'s version nor lift a cancellation: memory store', async () => {
  await attendeeMessages(new MemorySnapshotStore(), 'mem-att');
});

test('REPLY, COUNTER, REFRESH, DECLINECOUNTER never supersede the organizer\'s version nor lift a cancellation: Lua on redis-server', async () => {
  await withLuaStore(async (store, redis) => {
    await attendeeMessages(store, 'lua-att');
  });
});

test('the current version outlives every older snapshot of its slot (else an old link reads as current again)', async () => {
  // memory store, with a clock
  let nowMs = Date.UTC(2026, 10, 1);
  const mem = new MemorySnapshotStore(() => nowMs);
  const now = nowMs / 1000;
  const r = recipientTag(S.rcptKey, 'ttl@example.net');
  await mem.ingest(version(r, 'v1', 0, '20261101T000000Z', 'REQUEST', now, 300 * 86_400));
  assert.equal(await mem.ingest(version(r, 'v2', 1, '20261102T000000Z', 'REQUEST', now, 3 * 86_400)), true, 'moved to the day after tomorrow');
  assert.equal(await mem.ingest(version(r, 'v0', 0, '20261031T000000Z', 'REQUEST', now, 330 * 86_400)), false, 'a late older copy');
  nowMs += 10 * 86_400_000;
  assert.ok(await mem.snapshot(r, 'v1'), 'the old version is still there');
  assert.ok(await mem.snapshot(r, 'v2'), 'and so is the current one it points to');
  assert.equal((await mem.event(r, 'ev1'))?.cur, 'v2');
  nowMs += 320 * 86_400_000;
  assert.equal(await mem.snapshot(r, 'v2'), null, 'nothing lives past the longest of them');

  await withLuaStore(async (store, redis) => {
    const t = Math.floor(Date.now() / 1000);
    await store.ingest(version(r, 'v1', 0, '20261101T000000Z', 'REQUEST', t, 300 * 86_400), 1000);
    await store.ingest(version(r, 'v2', 1, '20261102T000000Z', 'REQUEST', t, 3 * 86_400), 1000);
    await store.ingest(version(r, 'v0', 0, '20261031T000000Z', 'REQUEST', t, 330 * 86_400), 1000);
    const ttl = async (rid: string) => Number(await redis.cli('TTL', `calfilter:web:{${r}}:s:${rid}`));
    const [t0, t1, t2] = [await ttl('v0'), await ttl('v1'), await ttl('v2')];
    assert.ok(t2 >= t1 && t2 >= t0, `current v2 TTL ${t2} ≥ v1 ${t1}, v0 ${t0}`);
    assert.ok(t2 <= 330 * 86_400, 'but no longer than the longest');
  });
});

test('setEventFields on an event state that is gone creates no key without a TTL', async () => {
  const mem = new MemorySnapshotStore();
  await mem.setEventFields('AAAAAAAAAAAAAAAA', 'gone', { ps: 'ACCEPTED' });
  assert.deepEqual(mem.keys(), []);
  await withLuaStore(async (store, redis) => {
    const r = recipientTag(S.rcptKey, 'gone@example.net');
    await store.setEventFields(r, 'gone', { ps: 'ACCEPTED', 'sent:0:ACCEPTED': '1' });
    assert.equal(await redis.cli('EXISTS', `calfilter:web:{${r}}:e:gone`), '0', 'no immortal key (the state had expired or was evicted)');
    const now = Math.floor(Date.now() / 1000);
    await store.ingest(version(r, 'v1', 0, '20261101T000000Z', 'REQUEST', now, 3600), 1000);
    await store.setEventFields(r, 'ev1', { ps: 'ACCEPTED' });
    assert.equal((await store.event(r, 'ev1'))?.ps, 'ACCEPTED', 'a live state is updated');
    assert.ok(Number(await redis.cli('TTL', `calfilter:web:{${r}}:e:ev1`)) > 0);
  });
});

test('DTEND before DTSTART: a future meeting neither expires before it starts nor reads as over', async () => {
  const store = new MemorySnapshotStore(() => Date.UTC(2026, 10, 1));
  const now = Date.UTC(2026, 10, 1);
  const [d] = await ingestMail(inviteMail(ics({ start: '20270603T090000', end: '20200101T000000' })), ['ann@example.net'], store, S, now);
  const c = verifyViewToken(viewPath(d).slice(3), S.tokenKeys)!;
  const snap = (await store.snapshot(c.r, c.rid))!;
  const start = Date.UTC(2027, 5, 3, 13) / 1000;
  assert.ok(Number(snap.exp) >= Math.min(start + 30 * 86_400, now / 1000 + 400 * 86_400), `expires ${new Date(Number(snap.exp) * 1000).toISOString()}, after the meeting`);
  assert.ok(Number(snap.last) >= start * 1000, 'not "over" before it starts');
  assert.deepEqual(await store.agenda(c.r, now / 1000), [snap.evkey], 'on the agenda');
});

test('a large invitation to many recipients: the budget is not spent compressing the same calendar again per recipient', async () => {
  const { settings } = testSettings({ web_store_timeout_ms: 150 });
  const store = new MemorySnapshotStore();
  // ~240 KB of text that compresses poorly (a long pasted DESCRIPTION), just under the storage cap.
  const description = (await import('node:crypto')).randomBytes(175_000).toString('base64');
  const rcpts = Array.from({ length: 60 }, (_, i) => `user${i}@example.net`);
  const out = await ingestMail(inviteMail(ics({ description })), rcpts, store, settings);
  const missed = out.filter((d) => d.source !== 'web-view').length;
  assert.equal(missed, 0, `${missed} of ${rcpts.length} recipients got no view link`);
});

test('time formatting: DST edges, all-day, floating, Windows zone without VTIMEZONE', () => {
  const before = readEvent(ics({ start: '20261031T090000', end: '20261031T100000' }))!;
  const after = readEvent(ics({ start: '20261102T090000', end: '20261102T100000' }))!;
  assert.equal(before.start!.utc, Date.UTC(2026, 9, 31, 13));
  assert.equal(after.start!.utc, Date.UTC(2026, 10, 2, 14));
  const ny = formatWhen(after.start!, after.end, 'America/New_York', 'en-US');
  assert.match(ny.range, /November 2, 2026.*9:00\s?–\s?10:00\s?AM/);
  assert.equal(ny.zone, 'Eastern Time');
  assert.equal(ny.organizer, null, 'same zone: no second line');
  const berlin = formatWhen(after.start!, after.end, 'Europe/Berlin', 'de-DE');
  assert.match(berlin.range, /15:00\s?–\s?16:00/);
  assert.match(berlin.organizer ?? '', /09:00.*America\/New_York/);
  // Berlin spring-forward 2026-03-29: 09:00 in New York (EDT since 8 March) is 15:00 in Berlin before, 15:00 after.
  const spring = readEvent(ics({ start: '20260328T090000', end: '20260328T100000' }))!;
  assert.match(formatWhen(spring.start!, spring.end, 'Europe/Berlin', 'de-DE').range, /14:00/);
  const spring2 = readEvent(ics({ start: '20260330T090000', end: '20260330T100000' }))!;
  assert.match(formatWhen(spring2.start!, spring2.end, 'Europe/Berlin', 'de-DE').range, /15:00/);
  // Without its VTIMEZONE the IANA name is still honoured (not floating).
  const noTz = readEvent(ics({ withVtimezone: false }))!;
  assert.equal(noTz.start!.utc, Date.UTC(2026, 11, 3, 14));
  const win = readEvent(ics({ tzid: 'W. Europe Standard Time' }))!;
  assert.equal(win.start!.utc, Date.UTC(2026, 11, 3, 8));
  assert.equal(win.start!.zone, 'Europe/Berlin');
  const allDay = readEvent(ics({ tzid: null, start: '20261203', end: '20261204' }))!;
  const w = formatWhen(allDay.start!, allDay.end, 'Asia/Tokyo', 'en-GB');
  assert.equal(w.note, 'all-day');
  assert.equal(w.range, 'Thursday, 3 December 2026', 'exclusive DTEND: one day');
  const floating = readEvent(ics({ tzid: null }))!;
  const f = formatWhen(floating.start!, floating.end, 'Asia/Tokyo', 'en-GB');
  assert.equal(f.note, 'floating');
  assert.match(f.range, /09:00/);
  const unknown = readEvent(ics({ tzid: 'Mars/Olympus_Mons' }))!;
  assert.equal(unknown.start!.floating, true);
  assert.equal(describeRule(readEvent(ics({ rrule: 'FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,WE;COUNT=10' }))!.rrule!, 'en'), 'Every 2 weeks on Monday and Wednesday, 10 times');
  assert.match(describeRule(readEvent(ics({ rrule: 'FREQ=MONTHLY;BYDAY=-1FR' }))!.rrule!, 'de'), /^Every month on last Freitag$/);
});

test('hostile SUMMARY/LOCATION/DESCRIPTION/URL values are escaped; only http(s)/mailto become links', async () => {
  const store = new MemorySnapshotStore();
  const cal = ics({
    summary: '<script>alert(1)</script>\u202Egnp.exe',
    location: 'javascript:alert(1)',
    description: '"onmouseover=alert(1) <img src=x onerror=alert(1)> see https://ok.example/x?a=1&b=<2> and data:text/html\\,<b>x</b>',
    url: 'data:text/html;base64\\,PHNjcmlwdD4=',
  });
  const [d] = await ingestMail(inviteMail(cal), ['ann@example.net'], store, S);
  const app = createWebApp({ settings: S, store, log: silent });
  const res = await app.request(viewPath(d));
  assert.equal(res.status, 200);
  const body = await res.text();
  assert.doesNotMatch(body, /<script/i);
  assert.doesNotMatch(body, /<img/i);
  assert.doesNotMatch(body, /href="(javascript|data):/i);
  assert.doesNotMatch(body, /\u202E/);
  assert.match(body, /&lt;script&gt;alert\(1\)&lt;\/script&gt;/);
  assert.match(body, /&quot;onmouseover=alert\(1\)/);
  assert.match(body, /<a href="https:\/\/ok\.example\/x\?a=1&amp;b=" rel="noopener noreferrer nofollow">/);
  const big = ics({ summary: 'A'.repeat(1024 * 1024) });
  const [b] = await ingestMail(inviteMail(big), ['ann@example.net'], store, S);
  const r2 = await app.request(viewPath(b));
  assert.equal(r2.status, 200, 'a 1 MB SUMMARY (over the storage cap) still renders from the stored facts');
});

test('routes: headers on every answer, 410 for a deleted snapshot, 503 when the store is down, HEAD has no effect', async () => {
  const store = new MemorySnapshotStore();
  const [d] = await ingestMail(inviteMail(ics()), ['ann@example.net'], store, S);
  const app = createWebApp({ settings: S, store, log: silent });
  const path = viewPath(d);
  for (const p of [path, `${path}/invite.ics`, `${path}/event.ics`, '/robots.txt', '/nope', '/m/bad']) {
    const res = await app.request(p);
    for (const [k, v] of Object.entries(SECURITY_HEADERS)) assert.equal(res.headers.get(k), v, `${p} ${k}`);
  }
  const ical = await (await app.request(`${path}/invite.ics`)).text();
  assert.match(ical, /^METHOD:REQUEST\r$/m);
  const copy = await (await app.request(`${path}/event.ics`)).text();
  assert.doesNotMatch(copy, /METHOD|ATTENDEE|VALARM/);
  const before = store.keys();
  assert.equal((await app.request(path, { method: 'HEAD' })).status, 200);
  assert.deepEqual(store.keys(), before);
  store.down = true;
  const down = await app.request(path);
  assert.equal(down.status, 503);
  assert.equal(down.headers.get('retry-after'), '30');
  store.down = false;
  const { claims } = { claims: verifyViewToken(path.slice(3), S.tokenKeys)! };
  await store.deleteSnapshot(claims.r, claims.rid);
  assert.equal((await app.request(path)).status, 410);
});

test('POST checks: foreign Origin or Sec-Fetch-Site → 403, wrong type → 415, big body → 413', async () => {
  const store = new MemorySnapshotStore();
  const [d] = await ingestMail(inviteMail(ics()), ['ann@example.net'], store, S);
  const app = createWebApp({ settings: S, store, log: silent });
  const url = `${viewPath(d)}/rsvp`;
  const form = { 'content-type': 'application/x-www-form-urlencoded' };
  assert.equal((await app.request(url, { method: 'POST', headers: { ...form, origin: 'https://evil.example' }, body: 'partstat=ACCEPTED' })).status, 403);
  assert.equal((await app.request(url, { method: 'POST', headers: { ...form, 'sec-fetch-site': 'cross-site' }, body: 'partstat=ACCEPTED' })).status, 403);
  assert.equal((await app.request(url, { method: 'POST', headers: { ...form, origin: 'null' }, body: 'partstat=ACCEPTED' })).status, 403);
  assert.equal((await app.request(url, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'partstat=ACCEPTED' })).status, 415);
  assert.equal((await app.request(url, { method: 'POST', headers: { ...form, 'content-length': '9000' }, body: `comment=${'x'.repeat(9000)}` })).status, 413);
  assert.equal((await app.request(url, { method: 'POST', headers: { ...form, origin: S.origin, 'sec-fetch-site': 'same-origin' }, body: 'partstat=ACCEPTED&f=bad' })).status, 400, 'form token checked');
});

test('agenda: sign-in link by mail (GET does not consume it), session, agenda with the invitation; link mode', async () => {
  await withRsvpMta(async ({ mta, settings, store }) => {
    const [d] = await ingestMail(inviteMail(ics({ start: '20271203T090000', end: '20271203T100000' })), ['ann@example.net'], store, settings);
    const app = createWebApp({ settings, store, log: silent });
    const page = await (await app.request(viewPath(d))).text();
    const f = /action="[^"]*\/signin"[^>]*><input type="hidden" name="f" value="([^"]+)"/.exec(page)?.[1];
    assert.ok(f, 'sign-in form offered');
    const form = { 'content-type': 'application/x-www-form-urlencoded', origin: settings.origin, 'sec-fetch-site': 'same-origin' };
    assert.equal((await app.request(`${viewPath(d)}/signin`, { method: 'POST', headers: form, body: `f=${f}` })).status, 200);
    const [mail] = await mta.waitFor(1);
    assert.deepEqual(mail!.envelope.to.map((r) => r.address), ['ann@example.net']);
    const otpPath = /http:\/\/127\.0\.0\.1:8081(\/s\/[A-Za-z0-9_-]{43})/.exec(mail!.raw.toString())?.[1];
    assert.ok(otpPath);
    for (let i = 0; i < 5; i++) assert.equal((await app.request(otpPath)).status, 200, 'a scanner GET does not use the link up');
    const signed = await app.request(otpPath, { method: 'POST', headers: form, body: '' });
    assert.equal(signed.status, 303);
    const cookie = signed.headers.get('set-cookie')!.split(';')[0]!;
    assert.equal((await app.request(otpPath, { method: 'POST', headers: form, body: '' })).status, 410, 'works once');
    const agenda = await app.request('/c?from=2027-12-01&days=7', { headers: { cookie } });
    assert.equal(agenda.status, 200);
    const body = await agenda.text();
    assert.match(body, /Budget review/);
    assert.match(body, /reached ann@example\.net/);
    assert.equal((await app.request('/c')).status, 401);
    const linkMode = createWebApp({ settings: testSettings({ web_agenda_auth: 'link' }).settings, store, log: silent });
    assert.match(await (await linkMode.request(`${viewPath(d)}/calendar?from=2027-12-01&days=7`)).text(), /Budget review/);
    assert.equal((await app.request(`${viewPath(d)}/calendar`)).status, 404, 'link mode is opt-in');
  });
});

test('rate limits: a flood of client addresses in one scope does not reset the per-recipient and per-link limits', async () => {
  const { RateLimiter } = await import('../lib/web/rate-limit.js');
  let t = 1_000_000;
  const limits = new RateLimiter(() => t);
  for (let i = 0; i < 3; i++) assert.ok(limits.hit('signin-rcpt', 'R', 3, 3600_000));
  for (let i = 0; i < 5; i++) assert.ok(limits.hit('rsvp-tok', 'rid', 5, 60_000));
  assert.equal(limits.hit('signin-rcpt', 'R', 3, 3600_000), false);
  // Bad links from 100 001 IPv6 addresses of one /64: each a new key of the per-client scope.
  for (let i = 0; i <= 100_000; i++) limits.hit('badmac', `2001:db8::${i.toString(16)}`, 20, 60_000);
  t += 1000;
  assert.equal(limits.hit('signin-rcpt', 'R', 3, 3600_000), false, 'sign-in mails per recipient still limited');
  assert.equal(limits.hit('rsvp-tok', 'rid', 5, 60_000), false, 'RSVP posts per link still limited');
});

test('a malformed tz cookie (planted by a sibling host, say) falls back to the default zone, never a 500', async () => {
  const store = new MemorySnapshotStore();
  const [d] = await ingestMail(inviteMail(ics()), ['ann@example.net'], store, S);
  const app = createWebApp({ settings: S, store, log: silent });
  for (const cookie of ['tz=%E0%A4%A', 'tz=%', 'a=1; tz=%ZZ']) {
    const res = await app.request(viewPath(d), { headers: { cookie } });
    assert.equal(res.status, 200, cookie);
    assert.match(await res.text(), /name="tz" type="text" value="UTC"/, cookie);
  }
});

test('X-Forwarded-For: believed from web_trusted_proxies only, read from the right past every trusted proxy', async () => {
  const { settings } = testSettings({ web_trusted_proxies: '127.0.0.1,10.0.0.2' });
  const app = createWebApp({ settings, store: untouchable(), log: silent });
  const from = (peer: string, xff?: string) => app.request('/m/bad', { headers: xff ? { 'x-forwarded-for': xff } : {} }, { incoming: { socket: { remoteAddress: peer } } });
  // Client A behind two proxies (nginx → 10.0.0.2 → 127.0.0.1), forging a left-most entry of its own.
  for (let i = 0; i < 20; i++) assert.equal((await from('127.0.0.1', `6.6.6.6, 198.51.100.7, 10.0.0.2`)).status, 404);
  assert.equal((await from('127.0.0.1', '6.6.6.6, 198.51.100.7, 10.0.0.2')).status, 429, 'A is limited');
  assert.equal((await from('127.0.0.1', '198.51.100.8, 10.0.0.2')).status, 404, 'B behind the same proxies is not A');
  assert.equal((await from('127.0.0.1', '6.6.6.6, 198.51.100.8, 10.0.0.2')).status, 404, 'the forged entry is never the key');
  // An untrusted peer's header is ignored: its own address counts.
  for (let i = 0; i < 20; i++) await from('192.0.2.1', `203.0.113.${i}`);
  assert.equal((await from('192.0.2.1', '203.0.113.99')).status, 429);
});

test('a calendar over the storage cap keeps the facts only: no huge UID or Message-ID copied into every snapshot', async () => {
  const store = new MemorySnapshotStore();
  const uid = `${'u'.repeat(400_000)}@example.org`;
  const cal = ics({ uid, description: 'x'.repeat(100_000) });
  const rcpts = ['ann@example.net', 'bob@example.net'];
  const out = await ingestMail(inviteMail(cal, { messageId: `${'m'.repeat(5000)}@example.org` }), rcpts, store, S);
  for (const d of out) {
    const c = verifyViewToken(viewPath(d).slice(3), S.tokenKeys)!;
    const snap = (await store.snapshot(c.r, c.rid))!;
    assert.equal(snap.ical, undefined, 'over the cap: no calendar stored');
    const bytes = Object.entries(snap).reduce((n, [k, v]) => n + k.length + v.length, 0);
    assert.ok(bytes < 8 * 1024, `snapshot of the facts is ${bytes} bytes`);
  }
  // the event key still comes from the whole UID
  const again = await ingestMail(inviteMail(cal.replace('SEQUENCE:0', 'SEQUENCE:1')), ['ann@example.net'], store, S);
  const c = verifyViewToken(viewPath(again[0]).slice(3), S.tokenKeys)!;
  const first = verifyViewToken(viewPath(out[0]).slice(3), S.tokenKeys)!;
  assert.equal((await store.snapshot(c.r, c.rid))!.evkey, (await store.snapshot(first.r, first.rid))!.evkey);
});

/**
 * An RSVP setup: a real SMTP sink as the MTA the web view submits to, its settings and an empty
 * memory store; the sink is closed whatever `run` does.
 */
async function withRsvpMta(
  run: (x: { mta: Sink; settings: WebSettings; store: MemorySnapshotStore }) => Promise<void>,
  sinkOpts: Parameters<typeof startSink>[0] = {},
): Promise<void> {
  const mta = await startSink(sinkOpts);
  try {
    const { settings } = testSettings({ rsvp_smtp_url: `smtp://127.0.0.1:${mta.port}`, rsvp_envelope_from: 'calendar-bounces@example.net' });
    await run({ mta, settings, store: new MemorySnapshotStore() });
  } finally {
    await mta.close();
  }
}

/** The RSVP form's token on a message page. */
const rsvpToken = (page: string) => /action="[^"]*\/rsvp"[\s\S]*?name="f" value="([^"]+)"/.exec(page)?.[1];

test('RSVP mail: a valid iMIP REPLY; a failed submission records nothing; changing the answer back sends it', async () => {
  let refuse = true;
  await withRsvpMta(async ({ mta, settings, store }) => {
    const [d] = await ingestMail(inviteMail(ics({ start: '20271203T090000', end: '20271203T100000', sequence: 3 })), ['ann@example.net'], store, settings);
    const app = createWebApp({ settings, store, log: silent });
    const path = viewPath(d);
    const f = rsvpToken(await (await app.request(path)).text());
    assert.ok(f, 'the RSVP form is offered');
    const headers = { 'content-type': 'application/x-www-form-urlencoded', origin: settings.origin, 'sec-fetch-site': 'same-origin' };
    const post = (partstat: string) => app.request(`${path}/rsvp`, { method: 'POST', headers, body: new URLSearchParams({ partstat, f }).toString() });

    // The MTA refuses: the user is told, nothing is recorded as sent, and trying again sends.
    const failed = await post('ACCEPTED');
    assert.equal(failed.status, 503);
    assert.match(await failed.text(), /nothing was sent/);
    const c = verifyViewToken(path.slice(3), settings.tokenKeys)!;
    const evkey = (await store.snapshot(c.r, c.rid))!.evkey!;
    assert.deepEqual(Object.keys((await store.event(c.r, evkey))!).filter((k) => k.startsWith('ps') || k.startsWith('sent:')), [], 'nothing recorded');
    refuse = false;
    assert.equal((await post('ACCEPTED')).status, 303);
    assert.equal(mta.messages.length, 2, 'the refused try and the one that went out');
    const sent = mta.messages[1]!;
    assert.equal(sent.envelope.from, 'calendar-bounces@example.net');
    assert.deepEqual(sent.envelope.to.map((r) => r.address), ['olga@example.org']);
    const m = await simpleParser(sent.raw);
    assert.equal((Array.isArray(m.to) ? m.to[0] : m.to)?.value.length, 1);
    assert.ok(m.date instanceof Date && !Number.isNaN(m.date.getTime()), 'Date');
    assert.match(m.messageId ?? '', /^<[^<>@\s]+@127\.0\.0\.1>$/);
    assert.equal(m.inReplyTo, '<invite-1@example.org>');
    assert.equal(m.references, '<invite-1@example.org>');
    assert.match(m.text ?? '', /has accepted this invitation/);
    assert.match(sent.raw.toString('latin1'), /^Content-Type: text\/calendar; charset=utf-8; method=REPLY\r$/im);
    const part = m.attachments.find((a) => a.contentType === 'text/calendar');
    assert.ok(part, 'a text/calendar part');
    const root = new ICAL.Component(ICAL.parse(part.content.toString('utf8')));
    assert.equal(root.getFirstPropertyValue('method'), 'REPLY');
    const [ev, ...more] = root.getAllSubcomponents('vevent');
    assert.equal(more.length, 0);
    assert.equal(ev!.getAllSubcomponents('valarm').length, 0);
    assert.equal(ev!.getFirstPropertyValue('sequence'), 3);
    assert.equal((ev!.getFirstPropertyValue('dtstamp') as ICAL.Time).zone, ICAL.Timezone.utcTimezone);
    const atts = ev!.getAllProperties('attendee');
    assert.equal(atts.length, 1);
    assert.equal(atts[0]!.getParameter('partstat'), 'ACCEPTED');
    assert.equal(String(ev!.getFirstPropertyValue('organizer')), 'mailto:olga@example.org');
    assert.equal(root.getAllSubcomponents('vtimezone').length, 1);

    // A change of mind and back: every answer that differs from the last one sent goes out.
    assert.equal((await post('DECLINED')).status, 303);
    const back = await post('ACCEPTED');
    assert.equal(back.status, 303, 'the organizer last heard "declined": accepting again is not "already sent"');
    assert.equal(mta.messages.length, 4);
    assert.match((await simpleParser(mta.messages[3]!.raw)).subject ?? '', /^Accepted: /);
    // The same answer as the last one sent is still not sent twice.
    assert.equal((await post('ACCEPTED')).status, 200);
    assert.equal(mta.messages.length, 4);
  }, { behaviour: (q) => (q.phase === 'data' && refuse ? { code: 451, text: '4.3.0 try later' } : undefined) });
});

test('RSVP goes only to the organizer bound to the event: another sender\'s instance with the same UID gets no REPLY', async () => {
  await withRsvpMta(async ({ mta, settings, store }) => {
    const series = { start: '20271203T090000', end: '20271203T100000', rrule: 'FREQ=WEEKLY;COUNT=10', uid: 'bound-1@example.org' };
    await ingestMail(inviteMail(ics(series), { messageId: 'b0@example.org' }), ['ann@example.net'], store, settings);
    const mallory = ics({ ...series, rrule: undefined, recurrenceId: '20271210T090000', start: '20271210T100000', end: '20271210T110000', sequence: 1 })
      .replace('mailto:olga@example.org', 'mailto:mallory@evil.example');
    const [d] = await ingestMail(inviteMail(mallory, { messageId: 'b1@example.org' }), ['ann@example.net'], store, settings);
    const app = createWebApp({ settings, store, log: silent });
    const path = viewPath(d);
    const page = await (await app.request(path)).text();
    const f = rsvpToken(page) ?? mintFormToken(settings.tokenKeys.get(settings.tokenKid) as Buffer, verifyViewToken(path.slice(3), settings.tokenKeys)!.rid, 'rsvp', 1, Date.now());
    const headers = { 'content-type': 'application/x-www-form-urlencoded', origin: settings.origin, 'sec-fetch-site': 'same-origin' };
    const res = await app.request(`${path}/rsvp`, { method: 'POST', headers, body: new URLSearchParams({ partstat: 'ACCEPTED', f }).toString() });
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(mta.messages.map((m) => m.envelope.to.map((r) => r.address)), [], `no REPLY to anyone but the bound organizer (status ${res.status})`);
    assert.equal(res.status, 409);
  });
});

test('REPLY subject: a long SUMMARY is cut between characters, never inside a surrogate pair', async () => {
  const summary = `${'S'.repeat(299)}\u{1F600}tail`;
  const { raw } = await composeReply({
    attendee: { address: 'ann@example.net', cn: 'Ann' }, organizer: { address: 'olga@example.org', cn: 'Olga' }, partstat: 'ACCEPTED',
    summary, when: '', comment: null, ical: buildReply(ics(), { attendee: 'ann@example.net', partstat: 'ACCEPTED' }), inReplyTo: null, host: 'cal.example.org',
  });
  const m = await simpleParser(raw);
  assert.ok(!(m.subject ?? '').includes('\uFFFD'), `no replacement character: …${m.subject?.slice(-5)}`);
  assert.ok((m.subject ?? '').startsWith(`Accepted: ${'S'.repeat(299)}`));
});

test('RSVP comment: control characters from the form never reach the REPLY (RFC 5545 TEXT has no CTLs)', async () => {
  await withRsvpMta(async ({ mta, settings, store }) => {
    const [d] = await ingestMail(inviteMail(ics({ start: '20271203T090000', end: '20271203T100000' })), ['ann@example.net'], store, settings);
    const app = createWebApp({ settings, store, log: silent });
    const path = viewPath(d);
    const f = rsvpToken(await (await app.request(path)).text())!;
    const headers = { 'content-type': 'application/x-www-form-urlencoded', origin: settings.origin, 'sec-fetch-site': 'same-origin' };
    const body = new URLSearchParams({ partstat: 'TENTATIVE', comment: 'late\u0000 by\u001b[31m 10\u007f min\r\nsorry\ttoo', f }).toString();
    assert.equal((await app.request(`${path}/rsvp`, { method: 'POST', headers, body })).status, 303);
    const m = await simpleParser((await mta.waitFor(1))[0]!.raw);
    const cal = m.attachments.find((a) => a.contentType === 'text/calendar')!.content.toString('utf8');
    assert.doesNotMatch(cal, /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/, 'no control characters in the iCalendar');
    const comment = new ICAL.Component(ICAL.parse(cal)).getFirstSubcomponent('vevent')!.getFirstPropertyValue('comment');
    assert.equal(comment, 'late by[31m 10 min\nsorry\ttoo');
    assert.doesNotMatch(m.text ?? '', /[\u0000\u001b\u007f]/);
  });
});
