// Milter sessions as Postfix 3.7 and Sendmail 8.17 run them (notes §2.2, §6.2), against the milter in
// this process, driven by our fake MTA (spec/helpers/fake-mta.ts) over loopback.
// In: fixture messages sent as events. Out: the replies, checked for shape (REPLBODY run, then header
// edits, then the marker, then one final reply) and for content: the new body equals what the
// after-queue path (planDelivery on the same message) produces, byte for byte.

import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { closeApp, createApp } from '../lib/app.js';
import { scanBuffer } from '../lib/candidate-scan.js';
import { loadConfig } from '../lib/config.js';
import { SMFIC, SMFIF, SMFIP, V1_ACTIONS, type MilterReply } from '../lib/milter-codec.js';
import { planDelivery } from '../lib/plan.js';
import { spoolFromBuffer } from '../lib/spool.js';
import { linkResolveState } from '../hooks/link-resolve.js';
import {
  connectMta, eomEdits, headerValue, splitMessage, startInProcMilter, transaction, type FakeMta, type Field, type InProcMilter, type TransactionOptions,
} from './helpers/fake-mta.js';
import { readFixture } from './helpers/mail-fixtures.js';

const FLAGS = { web_server: 'cal.example.org' };
/** Quoted-printable soft breaks and "=3D" undone: enough to read a link in a QP body. */
const unQP = (b: Buffer | null) => (b ?? Buffer.alloc(0)).toString('latin1').replace(/=\r\n/g, '').replace(/=3D/g, '=');
const POSTFIX_DATE: Field = { name: 'Date', raw: ' Thu, 26 Nov 2026 11:21:52 +0000 (UTC)' };

async function milter(t: TestContext, flags: Record<string, unknown> = {}): Promise<InProcMilter> {
  const m = await startInProcMilter({ ...FLAGS, ...flags });
  t.after(() => m.close());
  return m;
}

async function mta(t: TestContext, m: InProcMilter, offer?: { version: number; actions: number; protocol: number }): Promise<FakeMta> {
  const c = await connectMta(m.port);
  t.after(() => c.close());
  await c.negotiate(offer);
  return c;
}

/** The message as the milter sees it: the fields the MTA sends (its own additions last), CRLF everywhere. */
function mtaView(raw: Buffer, extra: Field[] = [], leadspc = true): Buffer {
  const { fields, body } = splitMessage(raw);
  const head = [...fields, ...extra].map((f) => `${f.name}:${leadspc ? headerValue(f, true) : ` ${headerValue(f, false)}`}`.replace(/\n/g, '\r\n') + '\r\n').join('');
  return Buffer.concat([Buffer.from(head + '\r\n', 'latin1'), body]);
}

/** What the after-queue path makes of the same message: the new header block and body. */
async function afterQueue(raw: Buffer, to: string[], flags: Record<string, unknown> = {}): Promise<{ head: string; body: Buffer } | null> {
  const config = loadConfig({ flags: { ...FLAGS, ...flags } });
  const app = await createApp(config, () => undefined);
  try {
    const plan = await planDelivery({ config, log: () => undefined, hooks: app.hooks }, { from: 'alice@mtest.test', to: to.map((address) => ({ address })) }, spoolFromBuffer(raw), scanBuffer(raw), 'expected');
    const g = plan.groups.find((x) => x.body);
    if (!g?.body) return null;
    const out = g.body.buffer();
    for (const x of plan.groups) await x.body?.dispose();
    const at = out.indexOf('\r\n\r\n');
    return { head: out.subarray(0, at + 2).toString('latin1'), body: out.subarray(at + 4) };
  } finally {
    await closeApp(app);
  }
}

function assertEdited(replies: MilterReply[], expectedBody: Buffer, chunk = 65535, leadspc = true) {
  const e = eomEdits(replies);
  assert.equal(e.final.type, 'continue');
  assert.ok(e.body, 'a body replacement');
  assert.ok(e.bodyPackets.every((n, i) => n <= chunk && (i === e.bodyPackets.length - 1 || n === chunk)), `packets ${e.bodyPackets}`);
  assert.equal(e.body!.length, expectedBody.length);
  assert.ok(e.body!.equals(expectedBody), 'REPLBODY bytes equal the after-queue rewrite');
  const last = e.headers[e.headers.length - 1];
  assert.deepEqual(last, { type: 'addheader', name: 'X-Calendar-Link', value: leadspc ? ' added' : 'added' }, 'the marker comes last');
  return e;
}

/** An invitation shaped like the captured one: folded Subject, X-Lead with leading spaces, a 149,014-byte body. */
function bigInvitation(): Buffer {
  const base = readFixture('exchange-online').toString('latin1');
  const [head, body] = [base.slice(0, base.indexOf('\r\n\r\n')), base.slice(base.indexOf('\r\n\r\n') + 4)];
  const extraHead = head
    .replace('Subject: Planning review', 'Subject: Invitation: folded\r\n subject line e8')
    .replace('Thread-Topic: Planning review', 'X-Lead:    three leading spaces')
    .replace(/^Date: .*\r\n/m, ''); // Postfix adds its own Date:, shown to the milter after the others
  // a long quoted-printable-free preamble (ignored by MIME readers) with one 5,000-character line
  const line = 'Preamble text that MIME readers skip; it only makes the body large and cuts lines across chunks.\r\n';
  const long = `${'L'.repeat(5000)}\r\n`;
  let pre = long;
  while (Buffer.byteLength(pre + body, 'latin1') + line.length <= 149014) pre += line;
  pre += 'x'.repeat(149014 - Buffer.byteLength(pre + body, 'latin1') - 2) + '\r\n';
  const out = Buffer.from(`${extraHead}\r\n\r\n${pre}${body}`, 'latin1');
  return out;
}

test('negotiation: version min(6, offer), actions and steps only from what was offered', async (t) => {
  const m = await milter(t);
  const cases: Array<{ offer: { version: number; actions: number; protocol: number }; version: number; actions: number; idle?: boolean }> = [
    { offer: { version: 6, actions: 0x1ff, protocol: 0x1fffff }, version: 6, actions: 0x13 },
    { offer: { version: 2, actions: 0x3f, protocol: 0x7f }, version: 2, actions: 0x13 },
    { offer: { version: 4, actions: 0x3f, protocol: 0x3ff }, version: 4, actions: 0x13 },
    { offer: { version: 6, actions: 0, protocol: 0 }, version: 6, actions: SMFIF.ADDHDRS | SMFIF.CHGBODY }, // 0 = version 1 sets
    { offer: { version: 13, actions: 0x1ff, protocol: 0x1fffff }, version: 6, actions: 0x13 },
    { offer: { version: 6, actions: 0x1ff & ~SMFIF.CHGBODY, protocol: 0x1fffff }, version: 6, actions: 0, idle: true },
  ];
  for (const c of cases) {
    const conn = await mta(t, m, c.offer);
    const n = conn.negotiated!;
    const offeredActions = c.offer.actions || V1_ACTIONS;
    const offeredProtocol = c.offer.protocol || 0x3f;
    assert.equal(n.version, c.version, JSON.stringify(c.offer));
    assert.equal(n.actions, c.actions, JSON.stringify(c.offer));
    assert.equal(n.actions & ~offeredActions, 0, 'actions within the offer');
    assert.equal(n.protocol & ~offeredProtocol, 0, 'steps within the offer');
    if (c.idle) {
      // nothing can be edited: ask for as few events as possible, and pass the message
      assert.equal(n.protocol & (SMFIP.NOBODY | SMFIP.NOHDRS | SMFIP.NOMAIL | SMFIP.NORCPT), SMFIP.NOBODY | SMFIP.NOHDRS | SMFIP.NOMAIL | SMFIP.NORCPT);
      conn.send({ type: 'eob', chunk: Buffer.alloc(0) });
      assert.deepEqual(await conn.untilFinal(), [{ type: 'continue' }]);
    } else if (c.offer.protocol === 0x1fffff) {
      // over TCP every step is answered (milter_no_reply = auto): no reply-less write waits for a delayed ACK
      assert.equal(n.protocol, SMFIP.NOHELO | SMFIP.NOUNKNOWN | SMFIP.HDR_LEADSPC);
    }
  }
  assert.ok(m.logs.some((l) => l.event === 'milter.degraded'));
  const nr = await milter(t, { milter_no_reply: 'yes' });
  const conn = await mta(t, nr);
  assert.equal(conn.negotiated!.protocol, SMFIP.NOHELO | SMFIP.NODATA | SMFIP.NOUNKNOWN | SMFIP.NR_CONN | SMFIP.NR_MAIL | SMFIP.NR_RCPT | SMFIP.NR_HDR | SMFIP.HDR_LEADSPC);
  const v2 = await mta(t, nr, { version: 2, actions: 0x3f, protocol: 0x7f });
  assert.equal(v2.negotiated!.protocol, SMFIP.NOHELO, 'version 2 knows no NR flags');
});

test('no-reply steps (milter_no_reply = yes): nothing at all comes back for CONNECT, MAIL, RCPT and headers; EOH is answered', async (t) => {
  const m = await milter(t, { milter_no_reply: 'yes' });
  const conn = await mta(t, m);
  conn.send(
    { type: 'macro', stage: SMFIC.CONNECT, macros: [['j', 'mx.mtest.test']] },
    { type: 'connect', hostname: 'localhost', family: '4', port: 56246, address: '127.0.0.1' },
    { type: 'mail', args: ['<alice@mtest.test>'] },
    { type: 'rcpt', args: ['<bob@remote.test>'] },
    { type: 'header', name: 'Content-Type', value: ' multipart/mixed; boundary="x"' },
  );
  await conn.silence(200);
  conn.send({ type: 'eoh' });
  assert.deepEqual(await conn.next(), { type: 'continue' });
  conn.send({ type: 'abort' });
  await conn.silence(100);
});

for (const noReply of ['no', 'yes']) test(`postfix 3.7 replay (milter_no_reply = ${noReply}): RSET, then a 149,014-byte invitation in 65535-byte chunks, then plain mail, ABORT ABORT QUIT`, async (t) => {
  const m = await milter(t, { milter_no_reply: noReply });
  const conn = await mta(t, m);
  conn.send({ type: 'macro', stage: SMFIC.CONNECT, macros: [['j', 'mx.mtest.test'], ['{daemon_name}', 'mx.mtest.test'], ['{daemon_addr}', '127.0.0.1'], ['v', 'Postfix 3.7.11'], ['_', 'localhost [127.0.0.1]']] });
  const replies = [await conn.step({ type: 'connect', hostname: 'localhost', family: '4', port: 56246, address: '127.0.0.1' })];
  // NOHELO was negotiated: Postfix sends no HELO. First transaction: one RCPT, then RSET.
  conn.send({ type: 'macro', stage: SMFIC.MAIL, macros: [['{mail_addr}', 'alice@mtest.test']] });
  replies.push(await conn.step({ type: 'mail', args: ['<alice@mtest.test>'] }));
  conn.send({ type: 'macro', stage: SMFIC.RCPT, macros: [['{rcpt_addr}', 'carol@remote.test']] });
  replies.push(await conn.step({ type: 'rcpt', args: ['<carol@remote.test>'] }));
  assert.deepEqual(replies, noReply === 'yes' ? [undefined, undefined, undefined] : [{ type: 'continue' }, { type: 'continue' }, { type: 'continue' }]);
  conn.send({ type: 'abort' });
  await conn.silence(100);
  const raw = bigInvitation();
  const { body } = splitMessage(raw);
  assert.equal(body.length, 149014);
  assert.deepEqual([65535, 65535, 17944], [65535, 65535, body.length - 131070]);
  const opts: TransactionOptions = { from: 'alice@mtest.test', to: ['bob@remote.test', 'dave@remote.test'], raw, extraFields: [POSTFIX_DATE] };
  const r = await transaction(conn, opts);
  assert.equal(r.acceptedEarly, false);
  assert.deepEqual(r.eoh, { type: 'continue' });
  assert.deepEqual(r.body, [{ type: 'continue' }, { type: 'continue' }, { type: 'continue' }]);
  const expected = await afterQueue(mtaView(raw, [POSTFIX_DATE]), opts.to);
  assert.ok(expected);
  const e = assertEdited(r.eom, expected.body);
  assert.equal(e.headers.length, 1, 'only the marker: no header had to change');
  // the rebuilt header block kept the fold and every leading space (HDR_LEADSPC)
  assert.ok(expected.head.includes('Subject: Invitation: folded\r\n subject line e8\r\n'));
  assert.ok(expected.head.includes('X-Lead:    three leading spaces\r\n'));
  conn.send({ type: 'abort' });
  // second message on the same connection: plain text, accepted at the end of headers
  const plain = readFixture('non-calendar-meeting');
  const r2 = await transaction(conn, { from: 'alice@mtest.test', to: ['bob@remote.test'], raw: plain, queueId: '7A1B2C3D4E5' });
  assert.equal(r2.acceptedEarly, true);
  assert.deepEqual(r2.eoh, { type: 'accept' });
  conn.send({ type: 'abort' }, { type: 'abort' }, { type: 'quit' });
  await conn.closed;
  const outcomes = m.logs.filter((l) => /^milter\.(changed|unchanged|tempfail)$/.test(String(l.event)));
  assert.deepEqual(outcomes.map((l) => l.event), ['milter.changed', 'milter.unchanged']);
  assert.equal(outcomes[0]!.queue_id, '6F9D9216522');
  assert.deepEqual(outcomes[0]!.to, ['bob@remote.test', 'dave@remote.test']);
  assert.equal(outcomes[0]!.link_policy, 'uniform');
  assert.equal(outcomes[1]!.queue_id, '7A1B2C3D4E5');
  assert.equal(outcomes[1]!.stage, 'eoh');
  assert.deepEqual(m.server.stats().messages, { changed: 1, unchanged: 0, early: 1, tempfail: 0 });
});

for (const version of [6, 2] as const) {
  test(`sendmail-style session, protocol version ${version}: family U, i at MAIL, {msg_id} at EOM, no ABORT between messages`, async (t) => {
    const m = await milter(t);
    const offer = version === 6 ? { version: 6, actions: 0x1ff, protocol: 0x1fffff } : { version: 2, actions: 0x3f, protocol: 0x7f };
    const conn = await mta(t, m, offer);
    assert.equal(conn.negotiated!.version, version);
    conn.send({ type: 'macro', stage: SMFIC.CONNECT, macros: [['j', 'vm.sm.test'], ['_', 'localhost']] });
    conn.send({ type: 'connect', hostname: 'localhost', family: 'U', port: null, address: null });
    if (!conn.noReply(SMFIP.NR_CONN)) assert.deepEqual(await conn.next(), { type: 'continue' });
    for (const [i, name] of ['google', 'thunderbird'].entries()) {
      // Sendmail turns LF into CRLF and shows no Date: of its own
      const raw = readFixture(name);
      const to = ['bob@example.net'];
      const r = await transaction(conn, { profile: 'sendmail', from: 'ada@example.org', to, raw, queueId: `5AQ9xN0${i}` });
      const expected = await afterQueue(mtaView(raw, [], version === 6), to);
      assert.ok(expected, name);
      assertEdited(r.eom, expected.body, 65535, version === 6);
      if (version === 2) {
        // nothing was negotiated away: every step is answered
        assert.deepEqual(r.eoh, { type: 'continue' });
        assert.ok(r.body.length > 0 && r.body.every((x) => x.type === 'continue'));
      }
    }
    conn.send({ type: 'quit' });
    await conn.closed;
    const changed = m.logs.filter((l) => l.event === 'milter.changed');
    assert.deepEqual(changed.map((l) => l.queue_id), ['5AQ9xN00', '5AQ9xN01']);
  });
}

test('version 2: the marker value goes out without its leading space (the MTA writes "Name: value")', async (t) => {
  const m = await milter(t);
  const conn = await mta(t, m, { version: 2, actions: 0x3f, protocol: 0x7f });
  const r = await transaction(conn, { profile: 'sendmail', from: 'ada@example.org', to: ['bob@example.net'], raw: readFixture('cancel') });
  const e = eomEdits(r.eom);
  assert.deepEqual(e.headers, [{ type: 'addheader', name: 'X-Calendar-Link', value: 'added' }]);
});

test('several messages per connection with ABORT in every state, repeated, and no state leaking between them', async (t) => {
  const spoolDir = await mkdtemp(join(tmpdir(), 'calfilter-milter-spool-'));
  t.after(() => rm(spoolDir, { recursive: true, force: true }));
  // every message spills to a file, so a leak would show up in the directory
  const m = await milter(t, { spool_dir: spoolDir, milter_spool_memory_limit: 0 });
  const conn = await mta(t, m);
  const raw = readFixture('exchange-online');
  const { fields, body } = splitMessage(raw);
  const expected = (await afterQueue(mtaView(raw), ['bob@example.net']))!;
  const full = async () => {
    const r = await transaction(conn, { from: 'ada@example.org', to: ['bob@example.net'], raw });
    assertEdited(r.eom, expected.body);
  };
  const envelope = async () => {
    await conn.step({ type: 'mail', args: ['<x@example.org>'] });
    await conn.step({ type: 'rcpt', args: ['<y@example.net>'] });
  };
  const headers = async (n = fields.length) => {
    for (const f of fields.slice(0, n)) await conn.step({ type: 'header', name: f.name, value: f.raw });
  };
  const partials: Array<[string, () => Promise<void>]> = [
    ['after MAIL', async () => { await conn.step({ type: 'mail', args: ['<x@example.org>'] }); }],
    ['after RCPT', async () => { await conn.step({ type: 'mail', args: ['<x@example.org>'] }); await conn.step({ type: 'rcpt', args: ['<evil@example.net>'] }); }],
    ['after two headers', async () => { await envelope(); await headers(2); }],
    ['after EOH', async () => {
      await envelope();
      await headers();
      assert.deepEqual(await conn.step({ type: 'eoh' }), { type: 'continue' });
    }],
    ['after a body chunk', async () => {
      await envelope();
      await headers();
      await conn.step({ type: 'eoh' });
      assert.deepEqual(await conn.step({ type: 'body', chunk: body.subarray(0, 100) }), { type: 'continue' });
    }],
    ['after end of message (Postfix)', full],
    ['twice in a row', async () => { conn.send({ type: 'abort' }); }],
  ];
  for (const [name, partial] of partials) {
    await partial();
    conn.send({ type: 'abort' });
    await conn.silence(30);
    await full().catch((e: Error) => assert.fail(`after ABORT ${name}: ${e.message}`));
    conn.send({ type: 'abort' });
  }
  // QUIT_NC in the middle of a message: the next SMTP session follows on the same connection
  await envelope();
  conn.send({ type: 'quit_nc' });
  await conn.step({ type: 'connect', hostname: 'next.example', family: '4', port: 2525, address: '192.0.2.9' });
  await full();
  conn.send({ type: 'abort' });
  const changed = m.logs.filter((l) => l.event === 'milter.changed');
  assert.ok(changed.every((l) => JSON.stringify(l.to) === '["bob@example.net"]' && l.from === 'ada@example.org'), 'no recipient of an aborted message leaked');
  assert.equal(changed[changed.length - 1]!.client, '192.0.2.9');
  // QUIT in the middle of a message: the milter closes, the spool is gone
  await envelope();
  await conn.step({ type: 'eoh' });
  await conn.step({ type: 'body', chunk: body });
  conn.send({ type: 'quit' });
  await conn.closed;
  // and a peer that vanishes mid-message
  const gone = await mta(t, m);
  await gone.step({ type: 'mail', args: ['<x@example.org>'] });
  await gone.step({ type: 'rcpt', args: ['<y@example.net>'] });
  await gone.step({ type: 'eoh' });
  await gone.step({ type: 'body', chunk: body });
  gone.close();
  await new Promise((r) => setTimeout(r, 100));
  assert.deepEqual(await readdir(spoolDir), [], 'no temporary files left');
});

test('bodies with CRLF split across chunks and a 6,000-character line: exact replacement in 1000-byte packets', async (t) => {
  const m = await milter(t, { milter_body_chunk: 1000 });
  const conn = await mta(t, m);
  const base = readFixture('thunderbird').toString('latin1');
  const raw = Buffer.from(base.replace('Grillfest im Hof, Würstchen für alle.\r\n', `Grillfest im Hof.\r\n${'W'.repeat(6000)}\r\nEnde.\r\n`), 'latin1');
  const to = ['bob@example.net'];
  const expected = (await afterQueue(mtaView(raw), to))!;
  const { body } = splitMessage(raw);
  // cut points right between CR and LF, and odd chunk sizes
  const crlfCuts = [...body.toString('latin1').matchAll(/\r\n/g)].map((x) => x.index! + 1);
  for (const size of [997, 2, 65535]) {
    const r = await transaction(conn, { from: 'ada@example.org', to, raw, chunkSize: size });
    assertEdited(r.eom, expected.body, 1000);
    conn.send({ type: 'abort' });
  }
  // chunks that end exactly between every CR and its LF
  await conn.step({ type: 'mail', args: ['<ada@example.org>'] });
  await conn.step({ type: 'rcpt', args: ['<bob@example.net>'] });
  for (const f of splitMessage(raw).fields) await conn.step({ type: 'header', name: f.name, value: f.raw });
  assert.deepEqual(await conn.step({ type: 'eoh' }), { type: 'continue' });
  let at = 0;
  for (const cut of [...crlfCuts, body.length]) {
    assert.deepEqual(await conn.step({ type: 'body', chunk: body.subarray(at, cut) }), { type: 'continue' });
    at = cut;
  }
  conn.send({ type: 'eob', chunk: Buffer.alloc(0) });
  const e = assertEdited(await conn.untilFinal(), expected.body, 1000);
  // no new line over 998 bytes: the only long line is the one that was there
  const long = (buf: Buffer) => buf.toString('latin1').split('\r\n').filter((l) => l.length > 998);
  assert.deepEqual(long(e.body!), long(body));
});

test('one body for all recipients: the same link is used, differing links become a recipient-neutral link or no footer', async (t) => {
  const raw = readFixture('exchange-online');
  for (const policy of ['neutral', 'none'] as const) {
    const m = await milter(t, { milter_link_policy: policy });
    const store = linkResolveState(m.server.app)!.store;
    await store.set('carol@example.net', { server: 'carol-private.example.net' });
    const conn = await mta(t, m);
    // uniform: two recipients without overrides share the site link
    const r1 = await transaction(conn, { from: 'ada@example.org', to: ['bob@example.net', 'dave@example.net'], raw });
    const e1 = eomEdits(r1.eom);
    assert.match(unQP(e1.body), /https:\/\/cal\.example\.org\/calendar\/event\?uid=[^&]+&recurrence-id=&sequence=0\s/, 'site link');
    conn.send({ type: 'abort' });
    // carol (think Bcc) has a personal server: her link must not reach bob
    const r2 = await transaction(conn, { from: 'ada@example.org', to: ['bob@example.net', 'carol@example.net'], raw });
    const e2 = eomEdits(r2.eom);
    const log = m.logs.filter((l) => /^milter\.(changed|unchanged)$/.test(String(l.event)));
    if (policy === 'neutral') {
      assert.ok(e2.body, 'a footer');
      const text = unQP(e2.body);
      assert.ok(!text.includes('carol'), 'nothing of carol in the shared body');
      assert.match(text, /https:\/\/cal\.example\.org\/calendar\/event\?uid=[^&]+&recurrence-id=&sequence=0&message-id=planning-review%40example\.org/);
      assert.equal(log[1]!.link_policy, 'neutral');
      assert.equal(log[1]!.links, 2);
    } else {
      assert.equal(e2.body, null);
      assert.deepEqual(r2.eom, [{ type: 'continue' }]);
      assert.equal(log[1]!.link_policy, 'none');
    }
    assert.equal(log[0]!.link_policy, 'uniform');
    assert.deepEqual(m.server.stats().link_policy, { uniform: 1, neutral: policy === 'neutral' ? 1 : 0, none: policy === 'none' ? 1 : 0, tempfail: 0 });
    conn.send({ type: 'quit' });
  }
});

test('encodings: a 7bit message gets no 8-bit byte; calendar and TNEF parts are untouched; a lone calendar is wrapped with header edits', async (t) => {
  const m = await milter(t);
  const conn = await mta(t, m);
  // exchange-online is pure ASCII (QP text, base64 calendar); its summary has accents
  const raw = readFixture('exchange-online');
  const r = await transaction(conn, { from: 'ada@example.org', to: ['bob@example.net'], mailArgs: ['BODY=7BIT'], raw });
  const e = eomEdits(r.eom);
  assert.ok(e.body && !e.body.some((c) => c >= 0x80), 'no 8-bit byte in a 7bit message');
  const calendar = /Content-Type: text\/calendar[\s\S]*?\r\n\r\n([\s\S]*?)\r\n--_000_/.exec(raw.toString('latin1'))![1]!;
  assert.ok(e.body!.toString('latin1').includes(calendar), 'the base64 calendar part is byte-identical');
  conn.send({ type: 'abort' });

  const tnef = readFixture('tnef-meeting');
  const rt = await transaction(conn, { from: 'ada@example.org', to: ['bob@example.net'], raw: tnef });
  const et = eomEdits(rt.eom);
  const winmail = /filename="winmail.dat"\r\nContent-Transfer-Encoding: base64\r\n\r\n([\s\S]*?)\r\n\r\n--tnef-b--/.exec(tnef.toString('latin1'))![1]!;
  assert.ok(et.body!.toString('latin1').includes(winmail), 'the TNEF part is byte-identical');
  conn.send({ type: 'abort' });

  const lone = readFixture('lone-calendar');
  const rl = await transaction(conn, { from: 'ada@example.org', to: ['bob@example.net'], raw: lone });
  const el = eomEdits(rl.eom);
  const ct = el.headers.find((h) => h.type === 'chgheader' && h.name === 'Content-Type');
  assert.ok(ct && ct.type === 'chgheader' && ct.index === 1 && /^ multipart\/mixed; boundary="(=_calfilter_[0-9a-f]+)"$/.test(ct.value), JSON.stringify(el.headers));
  const boundary = /boundary="([^"]+)"/.exec((ct as { value: string }).value)![1]!;
  assert.ok(el.headers.some((h) => h.type === 'chgheader' && h.name === 'Content-Transfer-Encoding' && h.value === ''), 'the CTE moved into the part');
  assert.ok(!el.body!.some((c) => c >= 0x80));
  const text = el.body!.toString('latin1');
  assert.ok(text.startsWith(`--${boundary}\r\n`));
  assert.ok(text.includes('Content-Type: text/calendar; method=REQUEST;\r\n charset=UTF-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\nBEGIN:VCALENDAR'), 'the calendar part kept its own header and bytes');
  assert.ok(text.endsWith(`--${boundary}--\r\n`));
  // the order the MTA must see: body run, header changes, marker
  const kinds = rl.eom.map((x) => x.type);
  assert.ok(kinds.lastIndexOf('replbody') < kinds.indexOf('chgheader'));
});

test('fast paths: plain and already-marked mail are accepted at end of headers; multipart mail without calendar passes unchanged', async (t) => {
  const m = await milter(t);
  const conn = await mta(t, m);
  for (const name of ['non-calendar-meeting', 'already-marked', 'content-class-custom']) {
    const r = await transaction(conn, { from: 'ada@example.org', to: ['bob@example.net'], raw: readFixture(name) });
    if (name === 'content-class-custom') {
      assert.equal(r.acceptedEarly, false, 'a Content-Class header needs the whole message');
      assert.ok(eomEdits(r.eom).body, 'custom form gets its footer');
    } else {
      assert.equal(r.acceptedEarly, true, name);
      assert.deepEqual(r.eoh, { type: 'accept' });
    }
    conn.send({ type: 'abort' });
  }
  const mixed = Buffer.from('From: a@example.org\r\nTo: b@example.net\r\nSubject: report\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="m"\r\n\r\n--m\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--m\r\nContent-Type: application/pdf; name="r.pdf"\r\n\r\nPDF\r\n--m--\r\n');
  const r = await transaction(conn, { from: 'a@example.org', to: ['b@example.net'], raw: mixed });
  assert.equal(r.acceptedEarly, false);
  assert.deepEqual(r.eom, [{ type: 'continue' }]);
  // a single part whose name says .ics (RFC 2231-encoded, so the cheap scan cannot see it) waits for the body
  const encoded = Buffer.from("From: a@example.org\r\nMIME-Version: 1.0\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename*=utf-8''invite%2Eics\r\n\r\nQkVHSU4=\r\n");
  conn.send({ type: 'abort' });
  const re = await transaction(conn, { from: 'a@example.org', to: ['b@example.net'], raw: encoded });
  assert.equal(re.acceptedEarly, false);
});

test('progress replies during slow work, a deadline that answers 451 without any edit, and size limits', async (t) => {
  const m = await milter(t, { milter_progress_ms: 200, milter_timeout: 2, milter_max_rewrite_bytes: 4096 });
  let delay = 900;
  m.server.app.hooks.on('message:classify', 'slow-test', async () => { await new Promise((r) => setTimeout(r, delay)); return null; });
  const conn = await mta(t, m);
  const raw = readFixture('exchange-online');
  const r = await transaction(conn, { from: 'ada@example.org', to: ['bob@example.net'], raw });
  const e = eomEdits(r.eom);
  assert.ok(e.progress >= 3, `progress replies: ${e.progress}`);
  assert.ok(e.body);
  conn.send({ type: 'abort' });
  delay = 3000;
  const r2 = await transaction(conn, { from: 'ada@example.org', to: ['bob@example.net'], raw });
  const e2 = eomEdits(r2.eom);
  assert.equal(e2.body, null, 'no body packet');
  assert.equal(e2.headers.length, 0, 'no header edit');
  assert.deepEqual(e2.final, { type: 'replycode', text: '451 4.3.0 Temporary filter failure, try again later' });
  assert.ok(m.logs.some((l) => l.event === 'milter.tempfail' && /milter_timeout/.test(String(l.decision))));
  conn.send({ type: 'abort' });
  delay = 0;
  // larger than milter_max_rewrite_bytes: accepted as soon as a chunk passes the limit
  const big = Buffer.concat([raw, Buffer.alloc(0)]);
  const bigText = Buffer.from(big.toString('latin1').replace('\r\n\r\n', `\r\n\r\n${'pad line\r\n'.repeat(500)}`), 'latin1');
  const r3 = await transaction(conn, { from: 'ada@example.org', to: ['bob@example.net'], raw: bigText, chunkSize: 1000 });
  assert.equal(r3.acceptedEarly, true);
  assert.equal(r3.body[r3.body.length - 1]!.type, 'accept');
  // the connection still works afterwards
  conn.send({ type: 'abort' });
  const r4 = await transaction(conn, { from: 'ada@example.org', to: ['bob@example.net'], raw });
  assert.ok(eomEdits(r4.eom).body);
});

test('dry run: the plan is made and logged, the message passes without edits', async (t) => {
  const m = await milter(t, { dry_run: true });
  const conn = await mta(t, m);
  const r = await transaction(conn, { from: 'ada@example.org', to: ['bob@example.net'], raw: readFixture('google') });
  assert.deepEqual(r.eom, [{ type: 'continue' }]);
  const line = m.logs.find((l) => l.event === 'milter.unchanged');
  assert.equal(line?.would_change, true);
  assert.equal(line?.dry_run, true);
});

test('override store down with redis_fallback = tempfail: 451 4.3.0 for the message, no edit', async (t) => {
  // link-resolve replaced by a stand-in that answers as it does when Redis fails under "tempfail"
  const m = await milter(t, { hooks: 'calendar-classify,custom-form-classify,footer-render' });
  m.server.app.hooks.on('message:links', 'store-down', ({ envelope }) => envelope.to.map((r, i) => (
    i === 0 ? { recipient: r.address, url: 'https://cal.example.org/x', source: 'site', server: 'cal.example.org' }
      : { recipient: r.address, url: null, source: 'tempfail', server: null })));
  const conn = await mta(t, m);
  const r = await transaction(conn, { from: 'ada@example.org', to: ['bob@example.net', 'carol@example.net'], raw: readFixture('cancel') });
  assert.deepEqual(r.eom, [{ type: 'replycode', text: '451 4.3.0 Link override store unavailable, try again later' }]);
  const line = m.logs.find((l) => l.event === 'milter.tempfail');
  assert.equal(line?.link_policy, 'tempfail');
});

test('listening: a Unix socket works (mode 0660, removed on close); a non-loopback address is refused at start', async (t) => {
  const { stat } = await import('node:fs/promises');
  const dir = await mkdtemp(join(tmpdir(), 'calfilter-milter-sock-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const path = join(dir, 'milter.sock');
  const m = await startInProcMilter({ milter_listen: `unix:${path}` });
  assert.equal(m.server.address, `unix:${path}`);
  assert.equal((await stat(path)).mode & 0o777, 0o660);
  const conn = await connectMta(path);
  await conn.negotiate();
  const r = await transaction(conn, { from: 'ada@example.org', to: ['bob@example.net'], raw: readFixture('cancel') });
  assert.ok(eomEdits(r.eom).body);
  conn.close();
  await m.close();
  await assert.rejects(stat(path), /ENOENT/);
  for (const bad of ['0.0.0.0:10027', '192.0.2.1:10027', 'unix:relative.sock']) {
    await assert.rejects(startInProcMilter({ milter_listen: bad }), /milter_listen/, bad);
  }
  // Sendmail's own spelling is understood too
  const sm = await startInProcMilter({ milter_listen: 'inet:0@127.0.0.1' });
  assert.match(sm.server.address, /^127\.0\.0\.1:\d+$/);
  await sm.close();
});

test('a Unix socket never exists with a wider mode than milter_socket_mode, whatever the umask (no window before a chmod)', async (t) => {
  const { spawn } = await import('node:child_process');
  const dir = await mkdtemp(join(tmpdir(), 'calfilter-milter-umask-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const path = join(dir, 'milter.sock');
  // another process (the other core) watches the path in a tight loop and reports every mode it
  // saw the socket with, from the moment it appears until 300 ms later
  const watcher = spawn(process.execPath, ['-e', `
    const { lstatSync } = require('node:fs');
    const seen = new Set(); let first = 0;
    process.stdout.write('ready\\n');
    for (;;) {
      try { seen.add(lstatSync(process.argv[1]).mode & 0o777); first ||= Date.now(); } catch {}
      if (first && Date.now() - first > 300) break;
    }
    process.stdout.write(JSON.stringify([...seen]) + '\\n');
  `, path], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.after(() => watcher.kill());
  let out = '';
  watcher.stdout.on('data', (c: Buffer) => (out += String(c)));
  await new Promise<void>((resolve) => watcher.stdout.on('data', () => out.startsWith('ready') && resolve()));
  const before = process.umask(0); // the widest umask there is: a socket made under it is 0777
  let m: InProcMilter;
  try {
    m = await startInProcMilter({ milter_listen: `unix:${path}`, milter_socket_mode: '0600' });
  } finally {
    assert.equal(process.umask(before), 0, 'the filter put the process umask back');
  }
  t.after(() => m.close());
  await new Promise((resolve) => watcher.once('exit', resolve));
  const seen = JSON.parse(out.split('\n')[1] ?? '[]') as number[];
  assert.ok(seen.length > 0, `the socket was seen as it was created (${out})`);
  assert.deepEqual(seen, [0o600], `modes seen: ${seen.map((x) => x.toString(8)).join(', ')}`);
});

test('a header after end of headers or after a body chunk (out of order): 451 for the message, never a header deletion', async (t) => {
  const m = await milter(t);
  const conn = await mta(t, m);
  const raw = readFixture('exchange-online');
  const { fields, body } = splitMessage(raw);
  for (const late of ['after EOH', 'after a body chunk'] as const) {
    await conn.step({ type: 'mail', args: ['<ada@example.org>'] });
    await conn.step({ type: 'rcpt', args: ['<bob@example.net>'] });
    for (const f of fields) await conn.step({ type: 'header', name: f.name, value: f.raw });
    assert.deepEqual(await conn.step({ type: 'eoh' }), { type: 'continue' });
    if (late === 'after a body chunk') await conn.step({ type: 'body', chunk: body });
    await conn.step({ type: 'header', name: 'X-Late', value: ' late' });
    if (late === 'after EOH') await conn.step({ type: 'body', chunk: body });
    conn.send({ type: 'eob', chunk: Buffer.alloc(0) });
    const e = eomEdits(await conn.untilFinal());
    assert.equal(e.body, null, `${late}: no body replacement`);
    assert.deepEqual(e.headers, [], `${late}: no header edit (X-Late must not be deleted)`);
    assert.deepEqual(e.final, { type: 'replycode', text: '451 4.3.0 Temporary filter failure, try again later' }, late);
    conn.send({ type: 'abort' });
  }
  // the body first, then the header block: end of headers must not judge (and accept) on what came before
  await conn.step({ type: 'mail', args: ['<ada@example.org>'] });
  await conn.step({ type: 'rcpt', args: ['<bob@example.net>'] });
  await conn.step({ type: 'header', name: 'Subject', value: ' hi' });
  await conn.step({ type: 'body', chunk: body });
  for (const f of fields) await conn.step({ type: 'header', name: f.name, value: f.raw });
  assert.deepEqual(await conn.step({ type: 'eoh' }), { type: 'continue' });
  conn.send({ type: 'eob', chunk: Buffer.alloc(0) });
  assert.deepEqual(await conn.untilFinal(), [{ type: 'replycode', text: '451 4.3.0 Temporary filter failure, try again later' }]);
  conn.send({ type: 'abort' });
  // the connection still serves an ordinary message
  const r = await transaction(conn, { from: 'ada@example.org', to: ['bob@example.net'], raw });
  assert.ok(eomEdits(r.eom).body);
});

test('a hook that throws at end of message: 451 4.3.0 and no edit, not a silent pass without the footer', async (t) => {
  const m = await milter(t);
  let fail = true;
  m.server.app.hooks.on('message:classify', 'breaks-once', () => {
    if (fail) throw new Error('classifier exploded');
    return null;
  });
  const conn = await mta(t, m);
  const raw = readFixture('exchange-online');
  const r = await transaction(conn, { from: 'ada@example.org', to: ['bob@example.net'], raw });
  assert.deepEqual(r.eom, [{ type: 'replycode', text: '451 4.3.0 Temporary filter failure, try again later' }]);
  const line = m.logs.find((l) => l.event === 'milter.tempfail');
  assert.match(String(line?.decision), /classifier exploded/);
  assert.deepEqual(m.server.stats().messages, { changed: 0, unchanged: 0, early: 0, tempfail: 1 });
  conn.send({ type: 'abort' });
  // the retry, once the hook works again, gets its footer
  fail = false;
  const r2 = await transaction(conn, { from: 'ada@example.org', to: ['bob@example.net'], raw });
  assert.ok(eomEdits(r2.eom).body);
});
