// The after-queue recipe end to end: a private Postfix loaded with deploy/postfix/after-queue,
// our filter CLI on the content_filter port, a sink behind Postfix's reinjection smtpd.
// In: one message submitted to Postfix's smtpd. Out: the same message at the sink, once.
// Fails: when mail is lost, altered, duplicated, or not held in the queue while the filter is
// down. Skips (outside CI only) when Postfix is missing or the test does not run as root.

import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import nodemailer from 'nodemailer';
import { freePort, startFilter, type FilterProcess } from './helpers/filter-process.js';
import { postfixSkipReason, refusedWhileDown, startPostfix, type PostfixInstance } from './helpers/postfix.js';
import { startSink, type Sink, type SinkMessage } from './helpers/sink.js';
import { until } from './helpers/until.js';

const skip = postfixSkipReason();

// Headers a sender's client writes itself, so Postfix's cleanup has nothing to add; the body
// has 8-bit UTF-8 and a line starting with a dot, bytes an MTA hop must carry unchanged.
function message(id: string): Buffer {
  return Buffer.from([
    'From: Alice <alice@example.org>',
    'To: Bob <bob@example.com>, Carol <carol@example.net>',
    'Subject: after-queue test',
    `Message-ID: <${id}@example.org>`,
    'Date: Thu, 26 Nov 2026 10:00:00 +0000',
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=utf-8',
    'Content-Transfer-Encoding: 8bit',
    '',
    'Grüße aus dem Kalender — ünïcödé.',
    '.a line that starts with a dot',
    '',
  ].join('\r\n'));
}

const FROM = 'alice@example.org';
const TO = ['bob@example.com', 'carol@example.net'];

interface Rig { sink: Sink; postfix: PostfixInstance; filterPort: number; filterArgs: string[] }

/** Sink, then Postfix pointing at a filter port, all torn down by the test even when it fails. */
async function rig(t: TestContext): Promise<Rig> {
  const sink = await startSink();
  t.after(() => sink.close());
  const filterPort = await freePort();
  const postfix = await startPostfix({ filterPort, sinkPort: sink.port });
  t.after(() => postfix.stop());
  const filterArgs = ['serve', '--listen', `127.0.0.1:${filterPort}`, '--next-hop', `smtp://127.0.0.1:${postfix.reinjectPort}`];
  return { sink, postfix, filterPort, filterArgs };
}

async function filter(t: TestContext, args: string[]): Promise<FilterProcess> {
  const f = await startFilter(args);
  t.after(() => f.stop());
  return f;
}

async function submit(port: number, raw: Buffer): Promise<void> {
  const transport = nodemailer.createTransport({ host: '127.0.0.1', port, secure: false, ignoreTLS: true });
  try {
    // DSN parameters must survive both legs: Postfix passes them on only to a peer that
    // announces DSN, which the filter and the reinjection smtpd both must.
    const dsn = { ret: 'HDRS', envid: 'calfilter-test', notify: ['SUCCESS', 'FAILURE'] };
    const info = await transport.sendMail({ envelope: { from: FROM, to: TO }, raw, dsn });
    assert.deepEqual(info.rejected, [], 'Postfix refused a recipient');
  } finally {
    transport.close();
  }
}

/** The received bytes minus the Received: fields Postfix prepends at each smtpd. */
function withoutReceived(raw: Buffer): Buffer {
  const text = raw.toString('latin1');
  const m = /^(?:Received:[^\r\n]*\r\n(?:[ \t][^\r\n]*\r\n)*)*/i.exec(text);
  return raw.subarray(m ? m[0].length : 0);
}

function assertDelivered(m: SinkMessage, original: Buffer): void {
  assert.equal(m.envelope.from, FROM);
  assert.deepEqual(m.envelope.to.map((r) => r.address).sort(), [...TO].sort());
  assert.equal(m.envelope.params.RET, 'HDRS');
  assert.equal(m.envelope.params.ENVID, 'calfilter-test');
  for (const r of m.envelope.to) assert.equal(r.params.NOTIFY, 'SUCCESS,FAILURE', r.address);
  assert.equal(m.envelope.params.BODY, '8BITMIME', 'the 8-bit body must travel as 8BITMIME');
  assert.ok(/^Received:/.test(m.raw.toString('latin1')), 'Postfix should have added Received:');
  assert.ok(withoutReceived(m.raw).equals(original),
    `headers or body changed on the way:\n${withoutReceived(m.raw).toString('utf8')}`);
}

/** The sink's first message; on timeout the error carries Postfix's log, which says where it stuck. */
async function firstAtSink(sink: Sink, postfix: PostfixInstance): Promise<SinkMessage> {
  try {
    const [m] = await sink.waitFor(1, 20_000);
    return m!;
  } catch (err) {
    throw new Error(`${(err as Error).message}\n--- maillog ---\n${await postfix.log()}`);
  }
}

test('a message submitted to Postfix reaches the sink through the filter, unchanged', { skip, timeout: 60_000 }, async (t) => {
  const { sink, postfix, filterPort, filterArgs } = await rig(t);
  await filter(t, filterArgs);
  const original = message('through');

  await submit(postfix.smtpPort, original);
  const m = await firstAtSink(sink, postfix);

  assertDelivered(m, original);
  // Both legs in Postfix's own words: to the filter, then from the reinjection smtpd to the
  // sink. Polled: a line is written after the peer's reply, which can trail the sink's record.
  const leg = (port: number) => new RegExp(`relay=127\\.0\\.0\\.1\\[127\\.0\\.0\\.1\\]:${port},.*status=sent`);
  await until('both legs logged as sent', 10_000, async () => {
    const log = await postfix.log();
    return leg(filterPort).test(log) && leg(sink.port).test(log) ? true : undefined;
  });
  await until('an empty queue', 10_000, async () => ((await postfix.queueIds()).length === 0 ? true : undefined));
  assert.equal(sink.messages.length, 1);
});

test('with the filter down, mail waits in the Postfix queue and is delivered once when it is back', { skip, timeout: 150_000 }, async (t) => {
  const { sink, postfix, filterPort, filterArgs } = await rig(t);
  const first = await filter(t, filterArgs);
  await first.stop();
  const original = message('held');

  await submit(postfix.smtpPort, original);
  // Held, not bounced: its first attempt and two retries (one every second or two) are deferred
  // with Postfix's "connection refused" for the filter's port; still queued, nothing at the sink.
  const heldId = await refusedWhileDown(postfix, 'held@example.org', filterPort, TO.length, 3);
  assert.deepEqual(await postfix.queueIds(), [heldId]);
  assert.equal(sink.messages.length, 0);

  await filter(t, filterArgs); // the same port again
  await postfix.flush();
  const m = await firstAtSink(sink, postfix);
  assertDelivered(m, original);

  // Once the queue is empty nothing else can be on its way: exactly one copy arrived.
  await until('an empty queue', 15_000, async () => ((await postfix.queueIds()).length === 0 ? true : undefined));
  assert.equal(sink.messages.length, 1);
  assert.doesNotMatch(await postfix.log(), /status=bounced/);
});
