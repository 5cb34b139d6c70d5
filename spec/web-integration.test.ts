// The built-in web view end to end on loopback: a real redis-server, the filter (in process) relaying to a
// sink, the `web` server on a real port, and a second sink standing in for the site MTA that submits
// REPLYs. Invite → footer link → page → RSVP POST → one REPLY at the organizer's sink (parsed with
// mailparser); double submit; update → "newer version"; cancel → struck through, no form; scanner
// simulation (GET/HEAD every link many times: no mail, no Redis change); Redis killed → 503, no crash.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { simpleParser } from 'mailparser';
import { startRedis, freePort, type RedisServer } from './helpers/redis.js';
import { startSink, type Sink } from './helpers/sink.js';
import { startInProcFilter, type InProcFilter } from './helpers/filter-inproc.js';
import { corpusFile, CORPUS_SKIP_MESSAGE } from './helpers/corpus.js';
import { ics, inviteMail, TEST_KEYS } from './helpers/web-fixtures.js';
import { relayOnce } from '../lib/relay.js';
import { loadConfig } from '../lib/config.js';
import { webSettings } from '../lib/snapshot-config.js';
import { openSnapshotStore, type SnapshotStore } from '../lib/snapshot-store.js';
import { startWebServer, type WebServer } from '../lib/web/server.js';
import { RateLimiter } from '../lib/web/rate-limit.js';

let redis: RedisServer;
let nextHop: Sink;
let mta: Sink;
let filter: InProcFilter;
let web: WebServer;
let store: SnapshotStore;
let base: string;
const webLogs: Array<Record<string, unknown>> = [];
const limiter = new RateLimiter();

const FUTURE = { start: '20271203T090000', end: '20271203T100000' };

before(async () => {
  redis = await startRedis();
  nextHop = await startSink();
  mta = await startSink();
  const webPort = await freePort();
  base = `http://127.0.0.1:${webPort}`;
  const flags = {
    redis: redis.url, web_view: true, web_base_url: base, ...TEST_KEYS, local_domains: 'example.net',
    rsvp_smtp_url: `smtp://127.0.0.1:${mta.port}`, rsvp_envelope_from: 'calendar-bounces@example.net',
    // The default budget is 50 ms; a cold test process (first EVAL, tsx) may need more, and this test is about the flow.
    web_store_timeout_ms: 2000,
  };
  filter = await startInProcFilter({ ...flags, next_hop: `smtp://127.0.0.1:${nextHop.port}` });
  const settings = webSettings(loadConfig({ flags }));
  store = openSnapshotStore(redis.url, settings.keyPrefix, 1000);
  await store.ready(2000);
  web = await startWebServer({ settings, store, limiter, log: (event, f = {}) => { webLogs.push({ event, ...f }); } }, '127.0.0.1', webPort);
});

after(async () => {
  await web?.close();
  await store?.close();
  await filter?.close();
  await nextHop?.close();
  await mta?.close();
  await redis?.stop();
});

/** Sends one mail through the filter; returns the footer link the recipient got (or null). */
async function send(raw: Buffer, to = 'ann@example.net'): Promise<string | null> {
  const n = nextHop.messages.length;
  const r = await relayOnce({ host: '127.0.0.1', port: filter.port, lmtp: false }, { from: 'olga@example.org', to: [{ address: to }] }, raw, raw.length, { connectTimeoutMs: 5000, totalTimeoutMs: 20_000 });
  assert.equal(r.recipients.get(to)?.code, 250, r.response);
  const [m] = (await nextHop.waitFor(n + 1)).slice(n);
  const parsed = await simpleParser(m!.raw);
  return new RegExp(`${base.replace(/[.:/]/g, '\\$&')}/m/[A-Za-z0-9_-]{40}\\.[A-Za-z0-9_-]{22}`).exec(parsed.text ?? '')?.[0] ?? null;
}

const get = (url: string, init?: RequestInit) => fetch(url.startsWith('http') ? url : `${base}${url}`, { redirect: 'manual', signal: AbortSignal.timeout(10_000), ...init });

function post(url: string, body: Record<string, string>): Promise<Response> {
  return get(url, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', origin: base, 'sec-fetch-site': 'same-origin' },
    body: new URLSearchParams(body).toString(),
  });
}

const formToken = (page: string) => /name="f" value="([A-Za-z0-9_-]+)"/.exec(page)?.[1] ?? '';

test('a corpus invite gets a view link whose page renders', async (t) => {
  const raw = corpusFile('thunderbird-comm-central/outlook-test-invite.eml');
  if (!raw) return t.skip(CORPUS_SKIP_MESSAGE);
  const link = await send(raw);
  assert.ok(link, `footer link to the built-in view: ${JSON.stringify(filter.logs.filter((l) => String(l.event).startsWith('webview') || l.event === 'message.relayed').slice(-3))}`);
  const res = await get(link);
  assert.equal(res.status, 200);
  const page = await res.text();
  assert.match(page, /<h1>Testaus<\/h1>/);
  assert.match(page, /This meeting is over/, 'a 2021 meeting: no RSVP, and the page says why');
  assert.doesNotMatch(page, /action="[^"]*\/rsvp"/);
});

test('invite → link → page → RSVP → one REPLY at the organizer; double submit sends one mail', async () => {
  const link = await send(inviteMail(ics({ ...FUTURE, sequence: 0 })));
  assert.ok(link);
  const page = await (await get(link)).text();
  assert.match(page, /You are answering as <strong>Ann@Example\.net<\/strong>/);
  const f = formToken(page);
  const res = await post(`${link}/rsvp`, { partstat: 'ACCEPTED', comment: 'See you; bring figures', f });
  assert.equal(res.status, 303);
  assert.equal(res.headers.get('location'), `${new URL(link).pathname}?sent=ACCEPTED`);
  const [reply] = await mta.waitFor(1);
  assert.equal(reply!.envelope.from, 'calendar-bounces@example.net');
  assert.deepEqual(reply!.envelope.to.map((r) => r.address), ['olga@example.org']);
  const m = await simpleParser(reply!.raw);
  assert.match(m.headers.get('from') ? String((m.headers.get('from') as { text: string }).text) : '', /<Ann@example\.net>/i, 'From = the ATTENDEE (nodemailer lower-cases the domain; the local part is kept)');
  assert.equal(m.from?.value[0]?.name, 'Ann Attendee');
  assert.equal((Array.isArray(m.to) ? m.to[0] : m.to)?.value[0]?.address, 'olga@example.org', 'To = the ORGANIZER');
  assert.equal(m.inReplyTo, '<invite-1@example.org>');
  assert.equal(m.subject, 'Accepted: Budget review');
  assert.equal(m.headers.get('x-calendar-link-filter'), 'rsvp; v=1');
  const ctype = /Content-Type: text\/calendar;[^\r\n]*method=([A-Z]+)/i.exec(reply!.raw.toString())?.[1];
  assert.equal(ctype, 'REPLY');
  const cal = m.attachments.find((a) => a.contentType === 'text/calendar' || a.contentType === 'application/ics');
  const text = cal!.content.toString('utf8');
  assert.match(text, /^METHOD:REPLY\r$/m, 'METHOD matches the part\'s method');
  assert.match(text.replace(/\r\n /g, ''), /^ATTENDEE;PARTSTAT=ACCEPTED;CN=Ann Attendee:mailto:Ann@Example\.net\r$/m);
  assert.match(text.replace(/\r\n /g, ''), /^COMMENT:See you\\; bring figures\r$/m);
  // The page now says so.
  const after = await (await get(`${link}?sent=ACCEPTED`)).text();
  assert.match(after, /Your reply \(Accepted\) was sent to Olga Organizer/);
  // Double submit: the same answer again → "already sent", no second mail.
  const again = await post(`${link}/rsvp`, { partstat: 'ACCEPTED', comment: 'See you; bring figures', f });
  assert.equal(again.status, 200);
  assert.match(await again.text(), /already sent/i);
  // Two clicks at once with a new answer → exactly one more mail.
  const both = await Promise.all([post(`${link}/rsvp`, { partstat: 'DECLINED', f }), post(`${link}/rsvp`, { partstat: 'DECLINED', f })]);
  const codes = both.map((r) => r.status);
  assert.equal(codes.filter((c) => c === 303).length, 1, `one of the two sends: ${codes}`);
  assert.ok(codes.every((c) => c === 303 || c === 409 || c === 200), String(codes));
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(mta.messages.length, 2);
});

test('update → old link says a newer version exists; cancel → struck through, form removed', async () => {
  const uid = 'web-update-1@example.org';
  const old = await send(inviteMail(ics({ ...FUTURE, uid, sequence: 0, summary: 'Planning' }), { messageId: 'u0@example.org' }));
  const upd = await send(inviteMail(ics({ ...FUTURE, uid, sequence: 1, summary: 'Planning (moved)', start: '20271204T090000', end: '20271204T100000' }), { messageId: 'u1@example.org' }));
  assert.ok(old && upd && old !== upd);
  const oldPage = await (await get(old)).text();
  assert.match(oldPage, /A newer version of this invitation exists/);
  const cur = /href="(\/m\/[^"]+)">See the current version/.exec(oldPage)?.[1];
  assert.equal(cur, new URL(upd).pathname);
  assert.doesNotMatch(await (await get(upd)).text(), /newer version/);
  // An RSVP from the old page answers the current version (SEQUENCE 1).
  const n = mta.messages.length;
  assert.equal((await post(`${old}/rsvp`, { partstat: 'TENTATIVE', f: formToken(oldPage) })).status, 303);
  const [reply] = (await mta.waitFor(n + 1)).slice(n);
  assert.match(reply!.raw.toString(), /SEQUENCE:1\r\n/);
  // The cancellation.
  await send(inviteMail(ics({ ...FUTURE, uid, sequence: 2, method: 'CANCEL', status: 'CANCELLED', summary: 'Planning (moved)' }), { messageId: 'u2@example.org' }));
  const cancelled = await (await get(upd)).text();
  assert.match(cancelled, /Cancelled by the organizer/);
  assert.match(cancelled, /<h1><del>Planning \(moved\)<\/del><\/h1>/);
  assert.doesNotMatch(cancelled, /action="[^"]*\/rsvp"/);
  const refused = await post(`${upd}/rsvp`, { partstat: 'ACCEPTED', f: formToken(await (await get(old)).text()) });
  assert.equal(refused.status, 409);
  assert.equal(mta.messages.length, n + 1);
});

test('an update or cancel with the same UID from another organizer never takes over the page', async () => {
  const uid = 'web-takeover-1@example.org';
  const mallory = (cal: string) => cal.replace('mailto:olga@example.org', 'mailto:mallory@evil.example');
  const legit = await send(inviteMail(ics({ ...FUTURE, uid, sequence: 0, summary: 'Budget' }), { messageId: 't0@example.org' }));
  const evil = await send(inviteMail(mallory(ics({ ...FUTURE, uid, sequence: 7, summary: 'Budget (moved)' })), { messageId: 't1@example.org' }));
  await send(inviteMail(mallory(ics({ ...FUTURE, uid, sequence: 8, method: 'CANCEL', status: 'CANCELLED', summary: 'Budget' })), { messageId: 't2@example.org' }));
  assert.ok(legit && evil && legit !== evil);
  const page = await (await get(legit)).text();
  assert.doesNotMatch(page, /newer version/);
  assert.doesNotMatch(page, /Cancelled by the organizer/);
  assert.match(page, /action="[^"]*\/rsvp"/, 'the reply form stays, addressed to the real organizer');
  assert.doesNotMatch(page, /mallory/);
});

test('scanner simulation: GET and HEAD every link many times → no mail, no state change', async () => {
  const link = await send(inviteMail(ics({ ...FUTURE, uid: 'scan-1@example.org' }), { messageId: 'scan@example.org' }));
  assert.ok(link);
  const page = await (await get(link)).text();
  const links = [link, ...[...page.matchAll(/(?:href|action)="(\/[^"]*)"/g)].map((m) => `${base}${m[1]!.replace(/&amp;/g, '&')}`)];
  assert.ok(links.some((l) => l.endsWith('/rsvp')) && links.some((l) => l.endsWith('/invite.ics')));
  const mails = mta.messages.length;
  const digest = await redis.cli('DEBUG', 'DIGEST');
  for (let round = 0; round < 20; round++) {
    for (const l of links) {
      for (const method of ['GET', 'HEAD']) {
        const r = await get(l, { method, headers: { 'user-agent': 'Mozilla/5.0 (compatible; SafeLinks scanner)' } });
        await r.arrayBuffer();
        assert.ok([200, 404, 429].includes(r.status), `${method} ${l}: ${r.status}`);
      }
    }
  }
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(mta.messages.length, mails, 'no mail sent');
  assert.equal(await redis.cli('DEBUG', 'DIGEST'), digest, 'no Redis write');
});

test('Redis killed → the page answers 503, the server lives on, and mail still flows (without a view link)', async () => {
  const link = await send(inviteMail(ics({ ...FUTURE, uid: 'down-1@example.org' }), { messageId: 'down@example.org' }));
  assert.ok(link);
  limiter.reset();
  await redis.kill();
  const res = await get(link);
  assert.equal(res.status, 503);
  assert.equal(res.headers.get('retry-after'), '30');
  assert.match(await res.text(), /temporarily unavailable/i);
  assert.equal((await get('/robots.txt')).status, 200);
  const started = Date.now();
  const none = await send(inviteMail(ics({ ...FUTURE, uid: 'down-2@example.org' }), { messageId: 'down2@example.org' }));
  assert.equal(none, null, 'no built-in link when the snapshot could not be stored');
  assert.ok(Date.now() - started < 5000, 'mail not held up');
  assert.ok(filter.logs.some((l) => l.event === 'webview.store_failed'));
  await redis.restart();
});
