// The filter as the next hop in front of a mailbox store (deploy/postfix/next-hop): a private
// Postfix loaded with the recipe's main.cf and master.cf fragments and transport table, the filter
// CLI started with the recipe's calendar-link-filter.env, and a private Dovecot as the store.
// In: a meeting request to two mailboxes and one address the store does not know. Out: the two
// copies read back over IMAP with the footer and the calendar unchanged; the unknown address
// bounced by Postfix with Dovecot's own 550, alone; the bounce delivered to the sender's mailbox.
// Fails: on a lost, duplicated or unfiltered message. Skips (outside CI only) without the packages or root.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { simpleParser } from 'mailparser';
import nodemailer from 'nodemailer';
import { dovecotSkipReason, startDovecot } from './helpers/dovecot.js';
import { freePort, startFilter } from './helpers/filter-process.js';
import { imapFetchAll } from './helpers/mailbox-clients.js';
import { postfixSkipReason, startPostfix } from './helpers/postfix.js';
import { startSink } from './helpers/sink.js';
import { until } from './helpers/until.js';

const skip = postfixSkipReason() ?? dovecotSkipReason();
const RECIPE = new URL('../deploy/postfix/next-hop/', import.meta.url);
const ALICE = 'alice@example.org';
const BOB = 'bob@example.org';
const CAROL = 'carol@example.org';
const NOBODY = 'nobody@example.org';
const FIXTURE = readFileSync(new URL('../fixtures/mail/exchange-online.eml', import.meta.url));
const LINK = 'https://site-cal.example.org/calendar/event?uid=040000008200E00074C5B7101A82E0080000000001&recurrence-id=&sequence=0';

/** The recipe's env file as the environment of the filter, its two ports replaced (each found once). */
function recipeEnv(filterPort: number, lmtpPort: number): Record<string, string> {
  let text = readFileSync(new URL('calendar-link-filter.env', RECIPE), 'utf8');
  for (const [re, value] of [[/^CALFILTER_LISTEN=127\.0\.0\.1:10025$/gm, `CALFILTER_LISTEN=127.0.0.1:${filterPort}`],
    [/^CALFILTER_NEXT_HOP=lmtp:\/\/127\.0\.0\.1:24$/gm, `CALFILTER_NEXT_HOP=lmtp://127.0.0.1:${lmtpPort}`]] as const) {
    assert.equal(text.match(re)?.length, 1, `calendar-link-filter.env: expected ${re} once`);
    text = text.replace(re, value);
  }
  const env: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^(CALFILTER_[A-Z_]+)=(.*)$/.exec(line);
    if (m) env[m[1]!] = m[2]!;
  }
  return env;
}

test('Postfix → filter (next hop, LMTP) → Dovecot: footers in the mailboxes, an unknown user bounced alone', { skip, timeout: 60_000 }, async (t) => {
  const dovecot = await startDovecot({ users: [ALICE, BOB, CAROL] });
  t.after(() => dovecot.stop());
  // Nothing may leave for elsewhere in this recipe; a sink catches it if something does.
  const elsewhere = await startSink();
  t.after(() => elsewhere.close());
  const filterPort = await freePort();
  const postfix = await startPostfix({
    filterPort,
    sinkPort: elsewhere.port,
    recipe: {
      dir: 'next-hop',
      replace: { calfilter_transport: [[/(?<=^example\.org\s+calfilter:\[127\.0\.0\.1\]:)10025$/m, String(filterPort)]] },
      tables: ['calfilter_transport'],
      postmap: ['calfilter_transport'],
    },
  });
  t.after(() => postfix.stop());
  const env = recipeEnv(filterPort, dovecot.lmtpPort);
  const filter = await startFilter(['serve', '--listen', env.CALFILTER_LISTEN!], { env });
  t.after(() => filter.stop());

  const transport = nodemailer.createTransport({ host: '127.0.0.1', port: postfix.smtpPort, secure: false, ignoreTLS: true });
  try {
    const info = await transport.sendMail({ envelope: { from: ALICE, to: [BOB, CAROL, NOBODY] }, raw: FIXTURE });
    assert.deepEqual(info.rejected, [], 'Postfix refused a recipient at the door');
  } finally {
    transport.close();
  }

  const arrived = async (who: string) => {
    try {
      await dovecot.waitFor(who, 1);
    } catch (e) {
      throw new Error(`${(e as Error).message}\n--- maillog ---\n${await postfix.log()}\n--- filter ---\n${filter.stdoutLines().join('\n')}`);
    }
  };
  await arrived(BOB);
  await arrived(CAROL);
  await arrived(ALICE); // the bounce for nobody, through the filter as well
  await until('an empty queue', 20_000, async () => ((await postfix.queueIds()).length === 0 ? true : undefined), () => postfix.log());

  const sent = await simpleParser(FIXTURE);
  for (const who of [BOB, CAROL]) {
    const [raw, ...more] = await imapFetchAll(dovecot.imapPort, who, dovecot.password);
    assert.equal(more.length, 0, `${who}: delivered once`);
    const got = await simpleParser(raw!);
    assert.ok(got.text?.includes(LINK), `${who}: link missing from text/plain`);
    assert.ok(typeof got.html === 'string' && got.html.includes(`href="${LINK.replaceAll('&', '&amp;')}"`), `${who}: link missing from text/html`);
    const cal = (m: typeof got) => m.attachments.find((a) => a.contentType === 'text/calendar')?.content;
    assert.ok(cal(got)?.equals(cal(sent)!), `${who}: text/calendar changed`);
  }

  const log = await postfix.log();
  const leg = (rcpt: string) => new RegExp(`postfix/calfilter/lmtp\\[\\d+\\]: \\w+: to=<${rcpt.replaceAll('.', '\\.')}>, relay=127\\.0\\.0\\.1\\[127\\.0\\.0\\.1\\]:${filterPort},.*status=(\\w+) \\(([^)]*)`, 'g');
  const legs = (rcpt: string) => [...log.matchAll(leg(rcpt))].map((m) => `${m[1]} ${m[2]}`);
  assert.equal(legs(BOB).length, 1);
  assert.match(legs(BOB)[0]!, /^sent 250 /);
  assert.equal(legs(CAROL).length, 1);
  assert.match(legs(CAROL)[0]!, /^sent 250 /);
  // Dovecot's refusal, passed back by the filter for that recipient only; Postfix bounced it.
  assert.equal(legs(NOBODY).length, 1);
  assert.match(legs(NOBODY)[0]!, /^bounced host 127\.0\.0\.1\[127\.0\.0\.1\] said: 550 5\.1\.1 <nobody@example\.org> User doesn't exist/);
  const [bounce] = await imapFetchAll(dovecot.imapPort, ALICE, dovecot.password);
  const report = bounce!.toString('latin1');
  assert.match(report, /^From: Mail Delivery System <MAILER-DAEMON@/m);
  assert.match(report, /<nobody@example\.org>: host 127\.0\.0\.1\[127\.0\.0\.1\] said: 550 5\.1\.1/);
  // The returned invitation sits inside message/rfc822: not a meeting request of its own, no footer.
  assert.doesNotMatch(report.slice(0, report.indexOf('\r\n\r\n')), /^X-Calendar-Link:/m);
  assert.equal(elsewhere.messages.length, 0, 'nothing went anywhere but the filter');
});
