// The after-queue recipe over LMTP (deploy/postfix/after-queue-lmtp), loaded verbatim by a private
// Postfix, with the filter CLI started with --lmtp on the content_filter port.
// In: messages submitted to Postfix's smtpd. Out: the sink's transactions and Postfix's own log
// lines per recipient. Proves: mail flows through the recipe (filter → reinjection smtpd → sink),
// and a recipient deferred by the next hop is retried alone while the other is delivered once.
// Fails: on a lost, duplicated or unfiltered message. Skips (outside CI only) without Postfix or root.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test, type TestContext } from 'node:test';
import nodemailer from 'nodemailer';
import { freePort, startFilter } from './helpers/filter-process.js';
import { postfixSkipReason, startPostfix, type PostfixInstance, type PostfixRecipe } from './helpers/postfix.js';
import { startSink, type Behaviour, type Sink } from './helpers/sink.js';
import { until } from './helpers/until.js';

const skip = postfixSkipReason();
const FROM = 'alice@example.org';
const BOB = 'bob@example.org';
const CAROL = 'carol@example.org';
const MEETING = readFileSync(new URL('../fixtures/mail/thunderbird.eml', import.meta.url));
const SITE = 'site-cal.example.org';

/** The recipe with only its two loopback endpoints replaced. */
const recipe = (filterPort: number): PostfixRecipe => ({
  dir: 'after-queue-lmtp',
  replace: {
    'main.cf.fragment': [[/^content_filter = calfilter:\[127\.0\.0\.1\]:10025$/m, `content_filter = calfilter:[127.0.0.1]:${filterPort}`]],
    'master.cf.fragment': [[/^127\.0\.0\.1:10026(?=\s)/m, '127.0.0.1:{reinjectPort}']],
  },
});

interface Rig { sink: Sink; postfix: PostfixInstance; filterPort: number }

async function rig(t: TestContext, behaviour?: Behaviour): Promise<Rig> {
  const sink = await startSink(behaviour ? { behaviour } : {});
  t.after(() => sink.close());
  const filterPort = await freePort();
  const postfix = await startPostfix({ filterPort, sinkPort: sink.port, recipe: recipe(filterPort) });
  t.after(() => postfix.stop());
  return { sink, postfix, filterPort };
}

async function submit(port: number, to: string[], raw: Buffer): Promise<void> {
  const transport = nodemailer.createTransport({ host: '127.0.0.1', port, secure: false, ignoreTLS: true });
  try {
    const info = await transport.sendMail({ envelope: { from: FROM, to }, raw });
    assert.deepEqual(info.rejected, [], 'Postfix refused a recipient');
  } finally {
    transport.close();
  }
}

const drained = (postfix: PostfixInstance) =>
  until('an empty queue', 20_000, async () => ((await postfix.queueIds()).length === 0 ? true : undefined), () => postfix.log());

/** Postfix's delivery lines for one recipient on the leg to the filter, by status. */
function legToFilter(log: string, rcpt: string, filterPort: number): string[] {
  const re = new RegExp(`postfix/calfilter/lmtp\\[\\d+\\]: \\w+: to=<${rcpt.replaceAll('.', '\\.')}>, relay=127\\.0\\.0\\.1\\[127\\.0\\.0\\.1\\]:${filterPort},.*status=(\\w+)`, 'g');
  return [...log.matchAll(re)].map((m) => m[1]!);
}

test('over LMTP a meeting request goes through the filter and the reinjection smtpd, with the footer', { skip, timeout: 60_000 }, async (t) => {
  const { sink, postfix, filterPort } = await rig(t);
  const filter = await startFilter(['serve', '--lmtp', '--listen', `127.0.0.1:${filterPort}`, '--next-hop', `smtp://127.0.0.1:${postfix.reinjectPort}`, '--web-server', SITE]);
  t.after(() => filter.stop());

  await submit(postfix.smtpPort, [BOB, CAROL], MEETING);
  await until('both recipients at the sink', 20_000, async () =>
    (sink.messages.flatMap((m) => m.envelope.to.map((r) => r.address)).sort().join() === [BOB, CAROL].join() ? true : undefined), () => postfix.log());
  await drained(postfix);

  for (const m of sink.messages) {
    assert.match(m.raw.toString('latin1'), /^X-Calendar-Link: /m, 'the marker header');
    assert.ok(m.raw.includes(`https://${SITE}/calendar/event?`), 'the footer link');
  }
  const log = await postfix.log();
  assert.deepEqual(legToFilter(log, BOB, filterPort), ['sent']);
  assert.deepEqual(legToFilter(log, CAROL, filterPort), ['sent']);
  // The filter spoke LMTP: Postfix's lmtp client, not smtp, delivered to it.
  assert.match(log, /postfix\/calfilter\/lmtp\[/);
  assert.equal(filter.stdoutLines().filter((l) => l.includes('"event":"message.relayed"')).length, 1);
});

test('over LMTP a recipient deferred by the next hop is retried alone; the other is delivered once', { skip, timeout: 60_000 }, async (t) => {
  // The next hop (a sink standing in for the reinjection smtpd, which cannot be told to defer one
  // recipient) answers 451 to carol's first RCPT, 250 to everything else.
  let deferred = 0;
  const { sink, postfix, filterPort } = await rig(t, (q) => {
    if (q.phase === 'rcpt' && q.rcpt === CAROL && deferred === 0) {
      deferred++;
      return { code: 451, text: '4.2.0 carol: mailbox busy, try later' };
    }
    return undefined;
  });
  const filter = await startFilter(['serve', '--lmtp', '--listen', `127.0.0.1:${filterPort}`, '--next-hop', `smtp://127.0.0.1:${sink.port}`]);
  t.after(() => filter.stop());
  const plain = Buffer.from(`From: ${FROM}\r\nTo: ${BOB}, ${CAROL}\r\nSubject: lmtp retry\r\nMessage-ID: <lmtp-retry@example.org>\r\nDate: Thu, 26 Nov 2026 10:00:00 +0000\r\n\r\nhello\r\n`);

  await submit(postfix.smtpPort, [BOB, CAROL], plain);
  // Postfix retries carol by itself within a second or two (queue_run_delay, minimal_backoff_time),
  // except when its queue scan meets the file while the delivery agent still holds it: then
  // qmgr logs "skipped, still being delivered" and waits 60 s. A flush (postqueue -f) now and
  // then keeps the test short either way; it retries what is queued, it adds no recipient.
  let flushed = Date.now();
  await until('carol retried and delivered', 20_000, async () => {
    if (legToFilter(await postfix.log(), CAROL, filterPort).includes('sent')) return true;
    if (Date.now() - flushed > 2_000) { flushed = Date.now(); await postfix.flush(); }
    return undefined;
  }, () => postfix.log());
  await drained(postfix);

  const log = await postfix.log();
  // Postfix heard one reply per recipient: bob 250 once, carol 451 (the next hop's own words), then 250.
  assert.deepEqual(legToFilter(log, BOB, filterPort), ['sent']);
  assert.deepEqual(legToFilter(log, CAROL, filterPort), ['deferred', 'sent']);
  assert.match(log, /to=<carol@example\.org>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:\d+,.*status=deferred \(host 127\.0\.0\.1\[127\.0\.0\.1\] said: 451 4\.2\.0 carol: mailbox busy/);
  // At the next hop: bob once (the first transaction), carol once (the retry, alone).
  const accepted = sink.messages.filter((m) => m.replies.every((r) => r === 250));
  assert.deepEqual(accepted.map((m) => m.envelope.to.map((r) => r.address)), [[BOB], [CAROL]]);
  assert.equal(deferred, 1);
  // The filter heard both recipients in one LMTP transaction, and then carol alone.
  const outcomes = filter.stdoutLines().map((l) => JSON.parse(l) as { event: string; to?: unknown }).filter((e) => /^message\./.test(e.event));
  assert.deepEqual(outcomes.map((e) => [e.event, e.to]), [['message.deferred', [BOB, CAROL]], ['message.relayed', [CAROL]]]);
});
