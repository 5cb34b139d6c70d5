// Calendar mail only (deploy/postfix/calendar-only): a private Postfix loaded with the recipe's
// fragments and its two regexp: tables, the filter CLI on the FILTER port, a sink behind the
// reinjection smtpd. In: an iMIP invitation, a TNEF meeting request, an Outlook custom form
// (Content-Class header only) and a plain message. Out: the three calendar-related ones at the
// sink through the filter (footer), the plain one straight from Postfix, byte for byte.
// Fails: when a calendar message bypasses the filter or a plain one reaches it. Skips (outside CI
// only) without Postfix or root.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import nodemailer from 'nodemailer';
import { freePort, startFilter } from './helpers/filter-process.js';
import { postfixSkipReason, startPostfix } from './helpers/postfix.js';
import { startSink } from './helpers/sink.js';
import { until } from './helpers/until.js';

const skip = postfixSkipReason();
const FROM = 'alice@example.org';
const TO = 'bob@example.org';
const SITE = 'site-cal.example.org';
const fixture = (name: string) => readFileSync(new URL(`../fixtures/mail/${name}`, import.meta.url));
// Message-ID → fixture; each through the filter (footer) or not.
const MAIL = [
  { id: 'planning-review@example.org', raw: fixture('exchange-online.eml'), filtered: true, why: 'text/calendar (mime_header_checks)', rule: 'Content-Type: text/calendar' },
  { id: 'staff-meeting@example.org', raw: fixture('tnef-meeting.eml'), filtered: true, why: 'application/ms-tnef (mime_header_checks)', rule: 'Content-Type: application/ms-tnef' },
  { id: 'expense-report@example.org', raw: fixture('content-class-custom.eml'), filtered: true, why: 'Content-Class (header_checks)', rule: 'Content-Class: urn:content-class:custom.Expense' },
  { rule: undefined, id: 'plain-calendar-only@example.org', raw: Buffer.from(`From: ${FROM}\r\nTo: ${TO}\r\nSubject: no calendar here\r\nMessage-ID: <plain-calendar-only@example.org>\r\nDate: Thu, 26 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nLunch? Not a meeting, and nothing here says text/calendar in a header.\r\n`), filtered: false, why: 'plain text' },
];

test('mime_header_checks/header_checks FILTER: calendar mail goes through the filter, other mail bypasses it', { skip, timeout: 60_000 }, async (t) => {
  const sink = await startSink();
  t.after(() => sink.close());
  const filterPort = await freePort();
  const port = () => [[/(?<=FILTER calfilter:\[127\.0\.0\.1\]:)10025$/m, String(filterPort)]] as Array<[RegExp, string]>;
  const postfix = await startPostfix({
    filterPort,
    sinkPort: sink.port,
    recipe: {
      dir: 'calendar-only',
      replace: {
        'master.cf.fragment': [[/^127\.0\.0\.1:10026(?=\s)/m, '127.0.0.1:{reinjectPort}']],
        calfilter_mime_header_checks: port(),
        calfilter_header_checks: port(),
      },
      tables: ['calfilter_mime_header_checks', 'calfilter_header_checks'],
    },
  });
  t.after(() => postfix.stop());
  const filter = await startFilter(['serve', '--listen', `127.0.0.1:${filterPort}`, '--next-hop', `smtp://127.0.0.1:${postfix.reinjectPort}`, '--web-server', SITE]);
  t.after(() => filter.stop());

  const transport = nodemailer.createTransport({ host: '127.0.0.1', port: postfix.smtpPort, secure: false, ignoreTLS: true });
  try {
    for (const m of MAIL) assert.deepEqual((await transport.sendMail({ envelope: { from: FROM, to: [TO] }, raw: m.raw })).rejected, []);
  } finally {
    transport.close();
  }
  await sink.waitFor(MAIL.length, 20_000).catch(async (e: Error) => { throw new Error(`${e.message}\n--- maillog ---\n${await postfix.log()}`); });
  await until('an empty queue', 20_000, async () => ((await postfix.queueIds()).length === 0 ? true : undefined), () => postfix.log());
  assert.equal(sink.messages.length, MAIL.length, 'each message once');

  const log = await postfix.log();
  const queueIdOf = (id: string) => new RegExp(`cleanup\\[\\d+\\]: (\\w+): message-id=<${id.replaceAll('.', '\\.')}>`).exec(log)?.[1];
  const outcomes = filter.stdoutLines().map((l) => JSON.parse(l) as Record<string, unknown>).filter((e) => /^message\./.test(String(e.event)));
  for (const m of MAIL) {
    const got = sink.messages.find((s) => s.raw.includes(`Message-ID: <${m.id}>`));
    assert.ok(got, `${m.id} did not arrive`);
    const text = got.raw.toString('latin1');
    // The first queue id is the one smtpd gave on the way in: its FILTER decision shows in the log.
    const first = queueIdOf(m.id)!;
    const filterLeg = new RegExp(`postfix/calfilter/smtp\\[\\d+\\]: ${first}: to=<${TO.replaceAll('.', '\\.')}>, relay=127\\.0\\.0\\.1\\[127\\.0\\.0\\.1\\]:${filterPort},.*status=sent`);
    if (m.filtered) {
      // cleanup's own word for which header matched which table's FILTER rule.
      assert.ok(new RegExp(`: ${first}: filter: header ${m.rule!.replaceAll('.', '\\.')}.*: calfilter:\\[127\\.0\\.0\\.1\\]:${filterPort}$`, 'm').test(log), `${m.why}: no FILTER log line`);
      assert.match(log, filterLeg, `${m.why}: not routed to the filter`);
      assert.match(text, /^X-Calendar-Link: /m, `${m.why}: no marker`);
      assert.ok(text.includes(`https://${SITE}/`), `${m.why}: no footer link`);
    } else {
      assert.doesNotMatch(log, filterLeg, `${m.why}: routed to the filter`);
      assert.doesNotMatch(log, new RegExp(`: ${first}: filter: `), `${m.why}: a FILTER rule matched`);
      assert.match(log, new RegExp(`postfix/smtp\\[\\d+\\]: ${first}: to=<${TO.replaceAll('.', '\\.')}>, relay=127\\.0\\.0\\.1\\[127\\.0\\.0\\.1\\]:${sink.port},.*status=sent`), 'straight to the sink');
      const rest = text.replace(/^(?:Received:[^\r\n]*\r\n(?:[ \t][^\r\n]*\r\n)*)+/, '');
      assert.ok(Buffer.from(rest, 'latin1').equals(m.raw), 'the plain message changed');
    }
  }
  // The filter saw exactly the three calendar-related messages: one outcome line each, no plain one.
  assert.equal(outcomes.length, 3, JSON.stringify(outcomes));
  assert.ok(outcomes.every((o) => o.event === 'message.relayed'));
  const seen = new Set(outcomes.map((o) => o.queue_id));
  for (const m of MAIL) assert.equal(seen.has(queueIdOf(m.id)), m.filtered, `${m.why}: filter log`);
});
