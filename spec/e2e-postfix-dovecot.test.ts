// End to end with the real components, all on loopback: Postfix (deploy/postfix/after-queue) as
// the MTA with the filter CLI as its content filter, Dovecot as the mailbox store for example.org
// (Postfix delivers by LMTP), Redis holding bob's override (set with the real CLI), and Postfix's
// smtp-sink as the outside world (partner.example). Mail is read back over IMAP (imapflow) and POP3.
// In: a meeting request to bob, carol and dave@partner.example, a plain message, a meeting request
// submitted while the filter is stopped. Out: each person's own link in plain and HTML, calendar
// and other bytes unchanged, the held message delivered once with its footer, /metrics counts.
// Fails: on any lost, duplicated or altered message. Skips (outside CI only) without the packages or root.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { test, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { simpleParser } from 'mailparser';
import nodemailer from 'nodemailer';
import { dovecotSkipReason, startDovecot, type Dovecot } from './helpers/dovecot.js';
import { freePort, startFilter, type FilterProcess } from './helpers/filter-process.js';
import { imapFetchAll, pop3RetrieveAll } from './helpers/mailbox-clients.js';
import { postfixSkipReason, refusedWhileDown, startPostfix, type PostfixInstance } from './helpers/postfix.js';
import { startRedis } from './helpers/redis.js';
import { startSmtpSink } from './helpers/smtp-sink.js';
import { until } from './helpers/until.js';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const run = promisify(execFile);
const skip = postfixSkipReason() ?? dovecotSkipReason();

const ALICE = 'alice@example.org';
const BOB = 'bob@example.org';
const CAROL = 'carol@example.org';
const DAVE = 'dave@partner.example';
const SITE = 'site-cal.example.org';
const BOB_SERVER = 'bob-cal.example.org';

/** A fixture with the sender, recipients and Message-ID of this test; every other byte as in the file. */
function fixture(name: string, to: string[], id: string): Buffer {
  const raw = readFileSync(new URL(`../fixtures/mail/${name}`, import.meta.url)).toString('latin1');
  const end = raw.indexOf('\r\n\r\n');
  const head = raw.slice(0, end)
    .replace(/^From: .*$/m, `From: Alice <${ALICE}>`)
    .replace(/^To: .*$/m, `To: ${to.join(', ')}`)
    .replace(/^Message-ID: .*$/m, `Message-ID: <${id}@example.org>`);
  return Buffer.from(head + raw.slice(end), 'latin1');
}

const PLAIN = Buffer.from([
  `From: Alice <${ALICE}>`,
  `To: ${BOB}, ${CAROL}`,
  'Subject: lunch on Friday?',
  'Message-ID: <plain-e2e@example.org>',
  'Date: Thu, 26 Nov 2026 10:00:00 +0000',
  'MIME-Version: 1.0',
  'Content-Type: text/plain; charset=utf-8',
  'Content-Transfer-Encoding: 8bit',
  '',
  'Grüße — shall we have lunch on Friday? No meeting, no calendar.',
  '.a line that starts with a dot',
  '',
  '-- ',
  'Alice',
  '',
].join('\r\n'));

/** The link the default url_template builds for a fixture's event on `server`. */
const linkOn = (server: string, uid: string) => `https://${server}/calendar/event?uid=${encodeURIComponent(uid)}&recurrence-id=&sequence=0`;
const EXCHANGE_UID = '040000008200E00074C5B7101A82E0080000000001';

function split(raw: Buffer): { head: string; body: Buffer } {
  const i = raw.indexOf('\r\n\r\n');
  assert.ok(i >= 0, 'no header/body separator');
  return { head: raw.subarray(0, i + 2).toString('latin1'), body: raw.subarray(i + 4) };
}

/** The raw text/calendar part of a message (its headers and encoded body up to the next boundary). */
function calendarPart(raw: Buffer): string {
  const text = raw.toString('latin1');
  const start = text.search(/^Content-Type: text\/calendar/im);
  assert.ok(start >= 0, 'no text/calendar part');
  const end = text.indexOf('\r\n--', start);
  return text.slice(start, end);
}

/** The decoded calendar, text and HTML as a mail client shows them. */
async function read(raw: Buffer): Promise<{ text: string; html: string; calendar: Buffer }> {
  const m = await simpleParser(raw);
  const cal = m.attachments.find((a) => a.contentType === 'text/calendar');
  assert.ok(cal, 'no text/calendar part after parsing');
  return { text: m.text ?? '', html: typeof m.html === 'string' ? m.html : '', calendar: cal.content };
}

/** A copy in a mailbox: its own link in plain and HTML, no one else's, the calendar untouched. */
async function assertOwnLink(who: string, raw: Buffer, original: Buffer, own: string, other: string): Promise<void> {
  const got = await read(raw);
  const sent = await read(original);
  assert.ok(got.text.includes(own), `${who}: own link missing from text/plain:\n${got.text}`);
  assert.ok(got.html.includes(`href="${own.replaceAll('&', '&amp;')}"`), `${who}: own link missing from text/html:\n${got.html}`);
  assert.ok(!got.text.includes(other) && !got.html.includes(other.replaceAll('&', '&amp;')), `${who}: someone else's link`);
  assert.equal(got.text.split(own).length - 1, 1, `${who}: exactly one text footer`);
  assert.ok(got.calendar.equals(sent.calendar), `${who}: decoded text/calendar differs from the input's`);
  assert.ok(raw.toString('latin1').includes(calendarPart(original)), `${who}: the calendar part's bytes changed`);
  assert.match(split(raw).head, /^X-Calendar-Link: /m, `${who}: marker header missing`);
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

/** `name{labels} value` lines of a Prometheus exposition → value by "name{labels}" (labels as written). */
async function metrics(port: number): Promise<Map<string, number>> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(5_000) });
  assert.equal(res.status, 200);
  const out = new Map<string, number>();
  for (const line of (await res.text()).split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}

/** Every calfilter_messages_total series with a non-zero count, plus the footer and split counters. */
function counts(m: Map<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of m) {
    if ((k.startsWith('calfilter_messages_total{') && v > 0) || k === 'calfilter_footers_added_total' || k === 'calfilter_groups_split_total') out[k] = v;
  }
  return out;
}

async function filter(t: TestContext, args: string[]): Promise<FilterProcess> {
  const f = await startFilter(args);
  t.after(() => f.stop());
  return f;
}

/** Waits for ADDRESS's nth message; a timeout names Dovecot's and Postfix's logs, which say where it stuck. */
async function arrived(dovecot: Dovecot, postfix: PostfixInstance, address: string, n: number): Promise<void> {
  try {
    await dovecot.waitFor(address, n);
  } catch (err) {
    throw new Error(`${(err as Error).message}\n${await postfix.report()}`);
  }
}

/** Postfix's queue drained: nothing of this test is still on its way. */
async function drained(postfix: PostfixInstance): Promise<void> {
  await until('an empty Postfix queue', 20_000, async () => ((await postfix.queueIds()).length === 0 ? true : undefined), () => postfix.report());
}

test('Postfix → filter → Dovecot and the outside world: own links over IMAP and POP3, the rest unchanged, held mail delivered once', { skip, timeout: 180_000 }, async (t) => {
  const started = Date.now();
  const redis = await startRedis();
  t.after(() => redis.stop());
  const { stdout } = await run(process.execPath, ['--import', 'tsx', 'bin/calendar-link-filter.ts', 'overrides', '--redis', redis.url,
    'set', BOB, '--server', BOB_SERVER], { cwd: ROOT, timeout: 20_000 });
  assert.match(stdout, /^added bob@example.org server=bob-cal.example.org/);

  const dovecot: Dovecot = await startDovecot({ users: [ALICE, BOB, CAROL] });
  t.after(() => dovecot.stop());
  const outside = await startSmtpSink();
  t.after(() => outside.stop());
  const filterPort = await freePort();
  const httpPort = await freePort();
  const postfix = await startPostfix({ filterPort, sinkPort: outside.port, routes: { 'example.org': `lmtp:[127.0.0.1]:${dovecot.lmtpPort}` } });
  t.after(() => postfix.stop());
  const args = ['serve', '--listen', `127.0.0.1:${filterPort}`, '--next-hop', `smtp://127.0.0.1:${postfix.reinjectPort}`,
    '--web-server', SITE, '--local-domains', 'example.org', '--redis', redis.url, '--http', `127.0.0.1:${httpPort}`];
  const first = await filter(t, args);
  t.diagnostic(`rig up in ${Date.now() - started} ms`);

  // 1. A meeting request to bob (override), carol (site default) and dave (outside).
  const invite = fixture('exchange-online.eml', [BOB, CAROL, DAVE], 'invite-e2e');
  await submit(postfix.smtpPort, ALICE, [BOB, CAROL, DAVE], invite);
  // 2. A message that is not calendar-related.
  await submit(postfix.smtpPort, ALICE, [BOB, CAROL], PLAIN);

  await arrived(dovecot, postfix, BOB, 2);
  await arrived(dovecot, postfix, CAROL, 2);
  const [toDave] = await outside.waitFor(1);
  await drained(postfix);

  const imap = { bob: await imapFetchAll(dovecot.imapPort, BOB, dovecot.password), carol: await imapFetchAll(dovecot.imapPort, CAROL, dovecot.password) };
  const pop3 = { bob: await pop3RetrieveAll(dovecot.pop3Port, BOB, dovecot.password), carol: await pop3RetrieveAll(dovecot.pop3Port, CAROL, dovecot.password) };
  assert.equal(imap.bob.length, 2);
  assert.equal(imap.carol.length, 2);
  const isInvite = (raw: Buffer) => raw.includes('Message-ID: <invite-e2e@example.org>');
  const [bobInvite, bobPlain] = [imap.bob.find(isInvite)!, imap.bob.find((r) => !isInvite(r))!];
  const [carolInvite, carolPlain] = [imap.carol.find(isInvite)!, imap.carol.find((r) => !isInvite(r))!];

  await assertOwnLink('bob', bobInvite, invite, linkOn(BOB_SERVER, EXCHANGE_UID), linkOn(SITE, EXCHANGE_UID));
  await assertOwnLink('carol', carolInvite, invite, linkOn(SITE, EXCHANGE_UID), linkOn(BOB_SERVER, EXCHANGE_UID));
  // POP3 serves the very same bytes as IMAP.
  assert.deepEqual(pop3.bob.map((b) => b.toString('latin1')).sort(), imap.bob.map((b) => b.toString('latin1')).sort());
  assert.deepEqual(pop3.carol.map((b) => b.toString('latin1')).sort(), imap.carol.map((b) => b.toString('latin1')).sort());

  // The plain message: body byte for byte, and its whole header block after what the MTAs prepend.
  for (const raw of [bobPlain, carolPlain]) {
    assert.ok(split(raw).body.equals(split(PLAIN).body), `plain body changed:\n${split(raw).body.toString('utf8')}`);
    assert.ok(raw.subarray(raw.length - PLAIN.length).equals(PLAIN), 'plain message: original headers or body changed');
    assert.doesNotMatch(split(raw).head, /^X-Calendar-Link:/m);
  }

  // dave's copy left for the outside world as it came in: only Postfix's Received lines added.
  assert.deepEqual(toDave!.recipients, [DAVE]);
  const daveText = toDave!.raw.toString('latin1');
  const afterReceived = daveText.replace(/^(?:Received:[^\r\n]*\r\n(?:[ \t][^\r\n]*\r\n)*)+/, '');
  assert.notEqual(afterReceived.length, daveText.length, 'Postfix should have added Received:');
  assert.ok(Buffer.from(afterReceived, 'latin1').equals(invite), `dave's copy changed:\n${afterReceived}`);
  assert.ok(split(toDave!.raw).body.equals(split(invite).body), "dave's body changed");
  assert.equal((await outside.messages()).length, 1);

  // What the first filter process counted: one meeting (three bodies: bob's, carol's, dave's
  // unchanged), one plain message.
  assert.deepEqual(counts(await metrics(httpPort)), {
    'calfilter_messages_total{kind="meeting",outcome="relayed"}': 1,
    'calfilter_messages_total{kind="none",outcome="relayed"}': 1,
    calfilter_footers_added_total: 2,
    calfilter_groups_split_total: 1,
  });
  // Every outcome line names Postfix's queue id (XFORWARD), so both logs can be followed.
  const outcomes = first.stdoutLines().map((l) => JSON.parse(l) as Record<string, unknown>).filter((e) => e.event === 'message.relayed');
  assert.equal(outcomes.length, 2);
  const maillog = await postfix.log();
  for (const o of outcomes) assert.ok(typeof o.queue_id === 'string' && maillog.includes(`${o.queue_id}:`), `queue_id ${String(o.queue_id)} not in Postfix's log`);

  // 3. The filter stops: the next message waits in Postfix's queue, then arrives with its footers.
  await first.stop();
  const held = fixture('google.eml', [BOB, CAROL], 'held-e2e');
  await submit(postfix.smtpPort, ALICE, [BOB, CAROL], held);
  // Its first attempt and a retry find the filter down: deferred with "connection refused".
  const heldId = await refusedWhileDown(postfix, 'held-e2e@example.org', filterPort, 2, 2);
  assert.deepEqual(await postfix.queueIds(), [heldId], 'held in the queue');
  assert.equal(await dovecot.count(BOB), 2, 'nothing may arrive while the filter is down');
  assert.equal(await dovecot.count(CAROL), 2);

  await filter(t, args); // the same port again
  await postfix.flush();
  await arrived(dovecot, postfix, BOB, 3);
  await arrived(dovecot, postfix, CAROL, 3);
  await drained(postfix);
  const bobHeld = (await imapFetchAll(dovecot.imapPort, BOB, dovecot.password)).find((r) => r.includes('Message-ID: <held-e2e@example.org>'));
  const carolHeld = (await imapFetchAll(dovecot.imapPort, CAROL, dovecot.password)).find((r) => r.includes('Message-ID: <held-e2e@example.org>'));
  assert.ok(bobHeld && carolHeld, 'the held message did not arrive');
  const googleUid = /^UID:(.*)$/m.exec(held.toString('latin1'))![1]!.trim();
  await assertOwnLink('bob (held)', bobHeld, held, linkOn(BOB_SERVER, googleUid), linkOn(SITE, googleUid));
  await assertOwnLink('carol (held)', carolHeld, held, linkOn(SITE, googleUid), linkOn(BOB_SERVER, googleUid));
  assert.equal(await dovecot.count(BOB), 3, 'delivered once');
  assert.equal(await dovecot.count(CAROL), 3, 'delivered once');
  assert.equal((await outside.messages()).length, 1, 'nothing else went outside');
  assert.doesNotMatch(await postfix.log(), /status=bounced/);

  // What the second filter process counted: the held meeting, two different links.
  assert.deepEqual(counts(await metrics(httpPort)), {
    'calfilter_messages_total{kind="meeting",outcome="relayed"}': 1,
    calfilter_footers_added_total: 2,
    calfilter_groups_split_total: 1,
  });
  t.diagnostic(`whole run ${Date.now() - started} ms`);
});
