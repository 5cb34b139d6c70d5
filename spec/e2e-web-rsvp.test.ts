// The built-in web view end to end with the real components, all on loopback: Postfix
// (deploy/postfix/after-queue) with the filter CLI as its content filter (web_view on, snapshots in a
// private Redis), Dovecot holding alice's and bob's mailboxes (Postfix delivers by LMTP), and the `web`
// server on a loopback port whose RSVP submission URL is Postfix's own smtpd, so the REPLY goes through
// the site's MTA and through the filter again.
// In: a meeting request from alice (organizer) to bob (attendee). Out: bob's copy read over IMAP with
// its footer link → the page → the RSVP form posted as a browser does (accept) → alice's mailbox, read
// over IMAP, holds the REPLY: From bob, To alice, method=REPLY, ATTENDEE bob PARTSTAT=ACCEPTED, the
// invite's UID, In-Reply-To the invite's Message-ID, and no footer (a REPLY gets none, by policy).
// Fails: on a missing link, a refused RSVP, or no REPLY in time. Skips (outside CI only) without the
// packages or root.

import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { simpleParser } from 'mailparser';
import nodemailer from 'nodemailer';
import { dovecotSkipReason, startDovecot, type Dovecot } from './helpers/dovecot.js';
import { freePort, startFilter, type FilterProcess } from './helpers/filter-process.js';
import { imapFetchAll } from './helpers/mailbox-clients.js';
import { postfixSkipReason, startPostfix } from './helpers/postfix.js';
import { startRedis } from './helpers/redis.js';
import { startSmtpSink } from './helpers/smtp-sink.js';
import { ics, inviteMail, TEST_KEYS } from './helpers/web-fixtures.js';
import { loadConfig } from '../lib/config.js';
import { webSettings } from '../lib/snapshot-config.js';
import { openSnapshotStore } from '../lib/snapshot-store.js';
import { startWebServer } from '../lib/web/server.js';
import { until } from './helpers/until.js';

const skip = postfixSkipReason() ?? dovecotSkipReason();

const ALICE = 'alice@example.org';
const BOB = 'bob@example.org';
const UID = 'e2e-web-rsvp-1@example.org';
const INVITE_ID = 'invite-web-e2e@example.org';

/** A meeting request from alice to bob, a year ahead (so RSVP is offered), built like web-integration's. */
function invite(): Buffer {
  const cal = ics({
    uid: UID,
    sequence: 0,
    start: '20271203T090000',
    end: '20271203T100000',
    summary: 'Quarterly planning',
    attendees: [`ATTENDEE;CN=Bob;PARTSTAT=NEEDS-ACTION;RSVP=TRUE;ROLE=REQ-PARTICIPANT:mailto:${BOB}`],
  }).replace(/^ORGANIZER;.*$/m, `ORGANIZER;CN=Alice:mailto:${ALICE}`);
  assert.match(cal, new RegExp(`^ORGANIZER;CN=Alice:mailto:${ALICE}\r$`, 'm'));
  const raw = inviteMail(cal, { messageId: INVITE_ID, to: `Bob <${BOB}>`, subject: 'Invitation: Quarterly planning' }).toString('utf8')
    .replace(/^From: .*$/m, `From: Alice <${ALICE}>`);
  return Buffer.from(raw, 'utf8');
}

async function submit(port: number, from: string, to: string[], raw: Buffer): Promise<void> {
  const transport = nodemailer.createTransport({ host: '127.0.0.1', port, secure: false, ignoreTLS: true });
  try {
    const info = await transport.sendMail({ envelope: { from, to }, raw });
    assert.deepEqual(info.rejected, [], 'Postfix refused a recipient');
  } finally {
    transport.close();
  }
}

/** Polls `probe` until it yields; flushes Postfix's queue every few seconds; a timeout shows the logs. */
const headOf = (raw: Buffer) => raw.subarray(0, raw.indexOf('\r\n\r\n') + 2).toString('latin1');

test('Postfix + Dovecot: invite in → footer link over IMAP → page → RSVP → REPLY in the organizer\'s mailbox', { skip, timeout: 60_000 }, async (t: TestContext) => {
  const started = Date.now();
  const redis = await startRedis();
  t.after(() => redis.stop());
  const dovecot: Dovecot = await startDovecot({ users: [ALICE, BOB] });
  t.after(() => dovecot.stop());
  const outside = await startSmtpSink(); // nothing should go there
  t.after(() => outside.stop());
  const filterPort = await freePort();
  const postfix = await startPostfix({ filterPort, sinkPort: outside.port, routes: { 'example.org': `lmtp:[127.0.0.1]:${dovecot.lmtpPort}` } });
  t.after(() => postfix.stop());

  const webPort = await freePort();
  const base = `http://127.0.0.1:${webPort}`;
  const filter: FilterProcess = await startFilter(['serve', '--listen', `127.0.0.1:${filterPort}`, '--next-hop', `smtp://127.0.0.1:${postfix.reinjectPort}`,
    '--web-view', '--web-base-url', base, '--web-token-keys', TEST_KEYS.web_token_keys, '--web-rcpt-key', TEST_KEYS.web_rcpt_key,
    // The default budget is 50 ms; a cold child (first EVAL) may need more, and this test is about the flow.
    '--web-store-timeout-ms', '2000',
    '--redis', redis.url, '--local-domains', 'example.org']);
  t.after(() => filter.stop());

  // The `web` server, with the same keys and Redis, submitting REPLYs to the site's MTA (Postfix's smtpd).
  const webFlags = {
    redis: redis.url, web_view: true, web_base_url: base, ...TEST_KEYS, local_domains: 'example.org',
    rsvp_smtp_url: `smtp://127.0.0.1:${postfix.smtpPort}`,
  };
  const settings = webSettings(loadConfig({ flags: webFlags }));
  const store = openSnapshotStore(redis.url, settings.keyPrefix, 1000);
  t.after(() => store.close());
  assert.ok(await store.ready(2000), 'the web view reaches Redis');
  const webLogs: Array<Record<string, unknown>> = [];
  const web = await startWebServer({ settings, store, log: (event, f = {}) => { webLogs.push({ event, ...f }); } }, '127.0.0.1', webPort);
  t.after(() => web.close());
  t.diagnostic(`rig up in ${Date.now() - started} ms`);

  const logs = async () => `--- maillog ---\n${await postfix.log()}\n--- filter stdout ---\n${filter.stdoutLines().slice(-10).join('\n')}\n--- filter stderr ---\n${filter.stderrLines().slice(-10).join('\n')}\n--- web ---\n${JSON.stringify(webLogs.slice(-10))}`;
  const mailbox = (who: string) => imapFetchAll(dovecot.imapPort, who, dovecot.password);
  // a flush every few seconds while waiting: a queue scan that met a file still in delivery costs Postfix 60 s
  let flushed = Date.now();
  const flushNowAndThen = async () => {
    if (Date.now() - flushed > 3_000) { flushed = Date.now(); await postfix.flush(); }
  };

  // 1. The invite in, through Postfix and the filter, into bob's mailbox; read over IMAP.
  const sent = invite();
  await submit(postfix.smtpPort, ALICE, [BOB], sent);
  const bobCopy = await until('the invite in bob\'s mailbox', 20_000, async () => { await flushNowAndThen(); return (await mailbox(BOB))[0]; }, logs, 200);
  assert.match(headOf(bobCopy), /^X-Calendar-Link: /m, 'bob\'s copy has the footer marker');
  const bobMail = await simpleParser(bobCopy);
  const link = new RegExp(`${base.replace(/[.:/]/g, '\\$&')}/m/[A-Za-z0-9_-]{40}\\.[A-Za-z0-9_-]{22}`).exec(bobMail.text ?? '')?.[0];
  assert.ok(link, `a footer link to the built-in view in bob's text part:\n${bobMail.text}\n${await logs()}`);

  // 2. The page, as a browser GETs it.
  const get = (url: string, init?: RequestInit) => fetch(url, { redirect: 'manual', signal: AbortSignal.timeout(10_000), ...init });
  const res = await get(link);
  assert.equal(res.status, 200);
  const page = await res.text();
  assert.match(page, /<h1>Quarterly planning<\/h1>/);
  assert.match(page, /You are answering as <strong>bob@example\.org<\/strong>/);
  const action = /<form[^>]*method="post"[^>]*action="([^"]*\/rsvp)"|<form[^>]*action="([^"]*\/rsvp)"[^>]*method="post"/.exec(page);
  const path = (action?.[1] ?? action?.[2])?.replace(/&amp;/g, '&');
  assert.ok(path, 'the page offers the RSVP form');
  const f = /name="f" value="([A-Za-z0-9_-]+)"/.exec(page)?.[1];
  assert.ok(f, 'the form carries its token');

  // 3. Accept, posted as a browser posts the form.
  const posted = await get(new URL(path, base).href, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', origin: base, 'sec-fetch-site': 'same-origin' },
    body: new URLSearchParams({ partstat: 'ACCEPTED', f }).toString(),
  });
  assert.equal(posted.status, 303, `RSVP accepted: ${await posted.text()}\n${await logs()}`);
  assert.equal(posted.headers.get('location'), `${new URL(link).pathname}?sent=ACCEPTED`);

  // 4. The REPLY went web → Postfix → filter → Postfix → Dovecot: alice reads it over IMAP.
  const replyRaw = await until('the REPLY in alice\'s mailbox', 30_000, async () => { await flushNowAndThen(); return (await mailbox(ALICE))[0]; }, logs, 200);
  const reply = await simpleParser(replyRaw);
  assert.equal(reply.from?.value[0]?.address?.toLowerCase(), BOB, 'From = the attendee');
  assert.equal((Array.isArray(reply.to) ? reply.to[0] : reply.to)?.value[0]?.address?.toLowerCase(), ALICE, 'To = the organizer');
  assert.equal(reply.inReplyTo, `<${INVITE_ID}>`, 'In-Reply-To = the invite\'s Message-ID');
  assert.equal(reply.headers.get('x-calendar-link-filter'), 'rsvp; v=1');
  assert.match(replyRaw.toString('latin1'), /^Content-Type: text\/calendar;[^\r\n]*method=("?)REPLY\1/im, 'the part says method=REPLY');
  const cal = reply.attachments.find((a) => a.contentType === 'text/calendar' || a.contentType === 'application/ics');
  assert.ok(cal, 'a text/calendar part');
  const text = cal.content.toString('utf8').replace(/\r\n[ \t]/g, '');
  assert.match(text, /^METHOD:REPLY\r$/m);
  assert.match(text, new RegExp(`^UID:${UID.replace(/\./g, '\\.')}\r$`, 'm'), 'the invite\'s UID');
  const attendees = text.split('\r\n').filter((l) => l.startsWith('ATTENDEE'));
  assert.equal(attendees.length, 1, `one ATTENDEE:\n${text}`);
  assert.match(attendees[0]!, /PARTSTAT=ACCEPTED/);
  assert.match(attendees[0]!, /:mailto:bob@example\.org$/i);

  // The REPLY passed the filter (Postfix's content_filter) and got no footer: REPLYs get none, by policy.
  assert.doesNotMatch(headOf(replyRaw), /^X-Calendar-Link:/m, 'no footer marker on the REPLY');
  assert.ok(!(reply.text ?? '').includes(`${base}/m/`) && !String(reply.html || '').includes(`${base}/m/`), 'no view link in the REPLY');
  const relayed = filter.stdoutLines().map((l) => JSON.parse(l) as Record<string, unknown>).filter((e) => e.event === 'message.relayed');
  assert.equal(relayed.length, 2, `the filter relayed the invite and the REPLY: ${JSON.stringify(relayed)}`);
  assert.equal((await mailbox(BOB)).length, 1, 'nothing more for bob');
  assert.equal((await outside.messages()).length, 0, 'nothing left the site');
  const [inLine, replyLine] = relayed;
  assert.deepEqual([inLine!.method, inLine!.to], ['REQUEST', [BOB]]);
  assert.deepEqual([replyLine!.method, replyLine!.from, replyLine!.to], ['REPLY', 'calendar-bounces@example.org', [ALICE]], 'the REPLY went through the filter');
  assert.match(String(replyLine!.decision), /METHOD:REPLY is not in footer_methods/, 'no footer by policy');
  t.diagnostic(`filter: ${JSON.stringify(relayed.map((e) => ({ method: e.method, decision: e.decision, from: e.from, to: e.to })))}; total ${Date.now() - started} ms`);
});
