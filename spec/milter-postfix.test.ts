// The milter recipe end to end: a private Postfix 3.x loaded with deploy/milter/main.cf.fragment
// (smtpd_milters, protocol 6, default_action=tempfail), our `milter` CLI on its port, a sink as the
// destination of every message. In: messages submitted to Postfix's smtpd. Out: what the client
// hears and what arrives at the sink. Fails when a footer is missing or misplaced, a byte outside it
// changes, an 8-bit byte appears in a 7bit message, or mail is delivered while the milter is
// unavailable. Skips (outside CI only) when Postfix is missing or the test does not run as root.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { test, type TestContext } from 'node:test';
import { promisify } from 'node:util';
import { simpleParser } from 'mailparser';
import { freePort } from './helpers/filter-process.js';
import { readFixture } from './helpers/mail-fixtures.js';
import { startMilterProcess, type MilterProcess } from './helpers/milter-process.js';
import { postfixSkipReason, startPostfix, type PostfixInstance } from './helpers/postfix.js';
import { startRedis } from './helpers/redis.js';
import { startSink, type Sink, type SinkMessage } from './helpers/sink.js';
import { transact } from './helpers/smtp-dialog.js';

const skip = postfixSkipReason();
const run = promisify(execFile);
const ENV = { ...process.env, PATH: `${process.env.PATH ?? '/usr/bin:/bin'}:/usr/sbin:/sbin` };
const FROM = 'ada@example.org';

interface Rig { sink: Sink; postfix: PostfixInstance; milterPort: number; args: string[] }

async function rig(t: TestContext): Promise<Rig> {
  const sink = await startSink();
  t.after(() => sink.close());
  const milterPort = await freePort();
  const postfix = await startPostfix({ filterPort: 0, sinkPort: sink.port, milterPort });
  t.after(() => postfix.stop());
  const args = ['--listen', `127.0.0.1:${milterPort}`, '--web-server', 'cal.example.org', '--log-level', 'debug'];
  return { sink, postfix, milterPort, args };
}

async function milter(t: TestContext, args: string[]): Promise<MilterProcess> {
  const m = await startMilterProcess(args);
  t.after(() => m.stop());
  return m;
}

/** The next message at the sink; on timeout the error carries Postfix's log. */
async function nextAtSink(sink: Sink, postfix: PostfixInstance, n: number): Promise<SinkMessage> {
  try {
    return (await sink.waitFor(n, 20_000))[n - 1]!;
  } catch (err) {
    throw new Error(`${(err as Error).message}\n--- maillog ---\n${await postfix.log()}`);
  }
}

const split = (raw: Buffer) => {
  const at = raw.indexOf('\r\n\r\n');
  return { head: raw.subarray(0, at + 2).toString('latin1'), body: raw.subarray(at + 4) };
};

/** The body after the header block (Postfix prepends Received:, which is not part of it). */
function bodyOf(raw: Buffer): Buffer {
  return split(raw).body;
}

async function send(port: number, to: string[], data: Buffer, mailParams?: string) {
  return transact(port, { from: FROM, to, data, mailParams });
}

async function settle(postfix: PostfixInstance): Promise<void> {
  const end = Date.now() + 10_000;
  while (Date.now() < end) {
    if ((await postfix.queueIds()).length === 0) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`Postfix queue not empty: ${JSON.stringify(await postfix.queue())}`);
}

test('milter mode with a real Postfix: footers, untouched mail, 7bit, and 451 whenever the milter is not there', { skip, timeout: 60_000 }, async (t) => {
  const { sink, postfix, args } = await rig(t);
  const m = await milter(t, args);
  let delivered = 0;

  await t.test('a meeting request arrives with the footer in plain and HTML, the calendar part unchanged', async () => {
    const raw = readFixture('exchange-online');
    const r = await send(postfix.smtpPort, ['bob@example.net', 'carol@example.net'], raw);
    assert.match(r.final[0]!, /^250 /);
    const got = await nextAtSink(sink, postfix, ++delivered);
    const { head } = split(got.raw);
    assert.match(head, /^X-Calendar-Link: added\r$/m, 'the marker header');
    const mail = await simpleParser(got.raw);
    assert.match(mail.text ?? '', /View it and your calendar on the web: https:\/\/cal\.example\.org\/calendar\/event\?uid=040000008200E00074C5B7101A82E0080000000001&recurrence-id=&sequence=0/);
    assert.match(String(mail.html), /<a href="https:\/\/cal\.example\.org\/calendar\/event\?uid=040000008200E00074C5B7101A82E0080000000001&amp;recurrence-id=&amp;sequence=0"[^>]*>View it and your calendar on the web<\/a><\/div>\s*<\/body>/);
    const calendar = /Content-Type: text\/calendar[^]*?\r\n\r\n([^]*?)\r\n--_000_/.exec(raw.toString('latin1'))![1]!;
    assert.ok(got.raw.toString('latin1').includes(`Content-Transfer-Encoding: base64\r\n\r\n${calendar}\r\n`), 'calendar part byte-identical');
    assert.deepEqual(got.envelope.to.map((x) => x.address).sort(), ['bob@example.net', 'carol@example.net']);
    // the original text lines are still there, in front of the footer
    assert.ok(bodyOf(got.raw).toString('latin1').includes('Bonjour =E0 tous, r=E9union de planification pour le trimestre prochain, merci d=\r\ne pr=E9parer vos chiffres.\r\n'));
  });

  await t.test('mail without calendar data arrives with a byte-identical body (early accept and full pass)', async () => {
    const plain = Buffer.from('From: Ada <ada@example.org>\r\nTo: Bob <bob@example.net>\r\nSubject: lunch\r\nDate: Thu, 26 Nov 2026 10:00:00 +0000\r\nMessage-ID: <lunch@example.org>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGrüße — see you at noon.\r\n.a line that starts with a dot\r\n');
    const mixed = Buffer.from('From: a@example.org\r\nTo: b@example.net\r\nSubject: report\r\nDate: Thu, 26 Nov 2026 10:00:00 +0000\r\nMessage-ID: <report@example.org>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="m"\r\n\r\n--m\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--m\r\nContent-Type: application/pdf; name="r.pdf"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--m--\r\n');
    for (const [name, raw] of [['plain', plain], ['multipart', mixed]] as const) {
      const r = await send(postfix.smtpPort, ['bob@example.net'], raw, name === 'plain' ? 'BODY=8BITMIME' : undefined);
      assert.match(r.final[0]!, /^250 /, name);
      const got = await nextAtSink(sink, postfix, ++delivered);
      assert.ok(bodyOf(got.raw).equals(bodyOf(raw)), `${name}: body byte-identical`);
      assert.doesNotMatch(split(got.raw).head, /X-Calendar-Link/);
    }
    const stages = m.logs().filter((l) => l.event === 'milter.unchanged').map((l) => l.stage ?? 'eom');
    assert.deepEqual(stages, ['eoh', 'eom']);
  });

  await t.test('a 7bit message stays 7bit, also when a lone calendar body is wrapped (header changes)', async () => {
    for (const name of ['exchange-online', 'lone-calendar']) {
      const raw = readFixture(name);
      const r = await send(postfix.smtpPort, ['bob@example.net'], raw, 'BODY=7BIT');
      assert.match(r.final[0]!, /^250 /, name);
      const got = await nextAtSink(sink, postfix, ++delivered);
      assert.notEqual(got.envelope.params.BODY, '8BITMIME', `${name}: relayed as 7bit`);
      assert.ok(!got.raw.some((c) => c >= 0x80), `${name}: no 8-bit byte`);
      assert.match(split(got.raw).head, /^X-Calendar-Link: added\r$/m);
      if (name === 'lone-calendar') {
        const mail = await simpleParser(got.raw);
        assert.match(split(got.raw).head, /^Content-Type: multipart\/mixed; boundary="=_calfilter_[0-9a-f]+"\r$/m);
        assert.doesNotMatch(split(got.raw).head, /Content-Transfer-Encoding/);
        assert.match(mail.text ?? '', /View it and your calendar on the web/);
        const cal = mail.attachments.find((a) => a.contentType === 'text/calendar');
        assert.ok(cal && cal.content.toString('utf8').startsWith('BEGIN:VCALENDAR\r\nMETHOD:REQUEST'), 'calendar part kept');
      }
    }
    await settle(postfix);
  });

  await t.test('the milter stopped: the client hears 451 and nothing is delivered', async () => {
    await m.stop();
    const r = await send(postfix.smtpPort, ['bob@example.net'], readFixture('exchange-online'));
    assert.match(r.final[0]!, /^451 4\.7\.1 /);
    await new Promise((res) => setTimeout(res, 1000));
    assert.equal(sink.messages.length, delivered, 'nothing new at the sink');
    await settle(postfix);
  });
});

test('a real Postfix: the milter killed during end of message gives 451, progress replies outlast content_timeout', { skip, timeout: 60_000 }, async (t) => {
  const { sink, postfix, milterPort, args } = await rig(t);
  const redis = await startRedis();
  t.after(() => redis.stop());
  // Redis paused: every override lookup waits redis_timeout_ms, which keeps end of message busy
  const slow = [...args, '--redis', redis.url, '--redis-timeout-ms', '4000', '--override-cache-ttl-ms', '0', '--milter-progress-ms', '500'];

  await t.test('killed while it works on end of message: 451, nothing delivered', async () => {
    const m = await startMilterProcess(slow);
    t.after(() => m.stop());
    redis.pause();
    try {
      const sent = send(postfix.smtpPort, ['bob@example.net'], readFixture('exchange-online'));
      await m.waitForLog((l) => l.event === 'milter.eom', 15_000);
      await new Promise((r) => setTimeout(r, 300));
      m.kill('SIGKILL');
      const r = await sent;
      assert.match(r.final[0]!, /^451 4\.7\.1 /);
    } finally {
      redis.resume();
    }
    await new Promise((res) => setTimeout(res, 1000));
    assert.equal(sink.messages.length, 0);
    assert.deepEqual(await postfix.queueIds(), []);
    assert.match(await postfix.log(), /milter/);
  });

  await t.test('content_timeout 2 s, 4 s of work: progress every 0.5 s keeps Postfix waiting, the message is delivered', async () => {
    const cf = postfix.configDir;
    await run('postconf', ['-c', cf, '-e', `smtpd_milters={ inet:127.0.0.1:${milterPort}, default_action=tempfail, protocol=6, content_timeout=2s }`], { env: ENV });
    await run('postfix', ['-c', cf, 'reload'], { env: ENV });
    await new Promise((r) => setTimeout(r, 500));
    const m = await startMilterProcess(slow);
    t.after(() => m.stop());
    redis.pause();
    let r;
    const t0 = Date.now();
    try {
      r = await send(postfix.smtpPort, ['bob@example.net'], readFixture('exchange-online'));
    } finally {
      redis.resume();
    }
    assert.ok(Date.now() - t0 > 3500, 'the work did take longer than content_timeout');
    assert.match(r.final[0]!, /^250 /, JSON.stringify(r));
    const got = await nextAtSink(sink, postfix, 1);
    assert.match(split(got.raw).head, /^X-Calendar-Link: added\r$/m);
    // Redis did not answer in time: the site link (redis_fallback = site)
    assert.match((await simpleParser(got.raw)).text ?? '', /https:\/\/cal\.example\.org\/calendar\/event/);
  });
});

test('a real Postfix through a Unix socket (no-reply steps negotiated): the footer arrives', { skip, timeout: 60_000 }, async (t) => {
  const { chmod, mkdtemp, rm } = await import('node:fs/promises');
  const { tmpdir } = await import('node:os');
  const dir = await mkdtemp(`${tmpdir()}/calfilter-milter-`);
  t.after(() => rm(dir, { recursive: true, force: true }));
  await chmod(dir, 0o755); // Postfix's smtpd runs as the postfix user
  const path = `${dir}/milter.sock`;
  const sink = await startSink();
  t.after(() => sink.close());
  const postfix = await startPostfix({ filterPort: 0, sinkPort: sink.port, milterPort: 0, main: { smtpd_milters: `{ unix:${path}, default_action=tempfail, protocol=6 }` } });
  t.after(() => postfix.stop());
  const m = await milter(t, ['--listen', `unix:${path}`, '--milter-socket-mode', '0666', '--web-server', 'cal.example.org', '--log-level', 'debug']);
  const r = await send(postfix.smtpPort, ['bob@example.net'], readFixture('google'));
  assert.match(r.final[0]!, /^250 /);
  const got = await nextAtSink(sink, postfix, 1);
  assert.match(split(got.raw).head, /^X-Calendar-Link: added\r$/m);
  assert.match((await simpleParser(got.raw)).text ?? '', /View it and your calendar on the web/);
  const neg = m.logs().find((l) => l.event === 'milter.negotiated');
  assert.equal(neg?.protocol, '0x10d382', 'no-reply steps on a Unix socket');
});
