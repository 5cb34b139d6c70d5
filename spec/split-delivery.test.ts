// Split delivery end to end: overrides set with the real CLI in a real redis-server, one meeting request
// relayed by the filter once per footer group to a real sink (SMTP or LMTP), with Redis killed and restarted.
// In: fixtures/mail/exchange-online.eml with a sequence header; Redis, sinks and filters started here
// (in this process, or as CLI children for scale-out). Out: assertions on each transaction's envelope,
// the link in its decoded plain AND HTML part, what the client heard, counts per recipient, log lines.
// Run: node --import tsx --test spec/split-delivery.test.ts

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { simpleParser } from 'mailparser';
import { startInProcFilter, type InProcFilter } from './helpers/filter-inproc.js';
import { freePort, startFilter, type FilterProcess } from './helpers/filter-process.js';
import { startRedis, type RedisServer } from './helpers/redis.js';
import { startSink, type Sink, type SinkMessage } from './helpers/sink.js';
import { transact } from './helpers/smtp-dialog.js';
import { until as untilEvery } from './helpers/until.js';

/** Polled every 20 ms: these waits are short (Redis notifications, cache expiry). */
const until = <T>(what: string, ms: number, probe: () => Promise<T | undefined>) => untilEvery(what, ms, probe, undefined, 20);

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const run = promisify(execFile);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const FIXTURE = readFileSync(join(ROOT, 'fixtures/mail/exchange-online.eml'));
const UID = '040000008200E00074C5B7101A82E0080000000001';

const SITE = 'site-cal.example.org';
const SERVERS = ['bob-cal.example.org', 'sales-cal.example.org', SITE, 'bob-new.example.org', 'gina-cal.example.org', 'hank-cal.example.org', 'ivy-cal.example.org'];
const BOB = 'bob@example.org';
const CAROL = 'carol@sales.example.org';
const ERIN = 'erin@example.org';
const DAVE = 'dave@partner.example';
const FOUR = [BOB, CAROL, ERIN, DAVE];
const FROM = 'ada@example.org';
// redis_timeout_ms 500 instead of 50: on a loaded test machine a slow answer must not pass for Redis trouble
// (a dead Redis refuses at once, so the outage tests take no longer for it).
const BASE = { web_server: SITE, local_domains: 'example.org,sales.example.org', next_hop_timeout: 5, connect_timeout: 2, redis_timeout_ms: 500 };

/** The link the default url_template builds for the fixture's event on `server`. */
const linkOn = (server: string) => `https://${server}/calendar/event?uid=${UID}&recurrence-id=&sequence=0`;

let seq = 0;
/** The fixture with a header of its own, so every message (and its copies at the sink) can be told apart. */
function meeting(): { n: number; data: Buffer } {
  const n = ++seq;
  return { n, data: Buffer.concat([Buffer.from(`X-Test-Seq: ${n}\r\n`), FIXTURE]) };
}
const seqOf = (m: SinkMessage) => Number(/(?:^|\r\n)X-Test-Seq: (\d+)\r\n/.exec(m.raw.toString('latin1'))?.[1] ?? NaN);

/** The real CLI, as an administrator runs it; every wait is bounded. */
async function overrides(redis: { url: string }, ...args: string[]): Promise<string> {
  const { stdout } = await run(process.execPath, ['--import', 'tsx', 'bin/calendar-link-filter.ts', 'overrides', ...args, '--redis', redis.url], { cwd: ROOT, timeout: 20_000 });
  return stdout;
}

/** The links a recipient would click: every URL of the decoded text/plain, every href of the decoded HTML. */
async function links(raw: Buffer): Promise<{ text: string[]; html: string[]; decoded: string }> {
  const parsed = await simpleParser(raw);
  const text = parsed.text ?? '';
  const html = typeof parsed.html === 'string' ? parsed.html : '';
  return {
    text: text.match(/https?:\/\/[^\s<>"]+/g) ?? [],
    html: [...html.matchAll(/href="([^"]*)"/g)].map((m) => m[1]!.replace(/&amp;/g, '&')),
    decoded: `${text}\n${html}`,
  };
}

/** Exactly `server`'s link in plain and HTML, and no other server's name anywhere in either. */
async function assertOnlyLink(m: SinkMessage, server: string, who: string): Promise<void> {
  const l = await links(m.raw);
  assert.deepEqual(l.text, [linkOn(server)], `${who}: the plain footer carries ${server}'s link, once`);
  assert.deepEqual(l.html, [linkOn(server)], `${who}: the HTML footer carries ${server}'s link, once`);
  for (const other of SERVERS.filter((s) => s !== server)) {
    assert.ok(!l.decoded.includes(other) && !m.raw.toString('latin1').includes(other), `${who}: no trace of ${other}`);
  }
}

/** The one transaction for `rcpt` among `msgs`, which holds `group` (default: `rcpt` alone); fails if there are none or several. */
function only(msgs: SinkMessage[], rcpt: string, group: string[] = [rcpt]): SinkMessage {
  const mine = msgs.filter((m) => m.envelope.to.some((t) => t.address === rcpt));
  assert.equal(mine.length, 1, `exactly one transaction for ${rcpt} (got ${mine.length})`);
  assert.deepEqual(mine[0]!.envelope.to.map((t) => t.address), group, `${rcpt}'s transaction holds ${group.join(', ')}`);
  assert.equal(mine[0]!.envelope.from, FROM);
  return mine[0]!;
}

/** Send one meeting request; return the reply(ies) and the transactions it produced at the sink. */
async function send(port: number, sink: Sink, to: string[], lmtp = false) {
  const { n, data } = meeting();
  const r = await transact(port, { from: FROM, to, data, lmtp });
  return { n, data, final: r.final, got: sink.messages.filter((m) => seqOf(m) === n) };
}

let redis: RedisServer;
let sink: Sink;
let filter: InProcFilter;

before(async () => {
  redis = await startRedis();
  assert.match(await overrides(redis, 'set', BOB, '--server', 'bob-cal.example.org'), /^added bob@example.org server=bob-cal.example.org/);
  assert.match(await overrides(redis, 'set', '@sales.example.org', '--server', 'sales-cal.example.org'), /^added @sales.example.org/);
  sink = await startSink();
  // A long cache TTL: within these tests a change can only arrive through the change notification.
  filter = await startInProcFilter({ ...BASE, next_hop: `smtp://127.0.0.1:${sink.port}`, redis: redis.url, override_cache_ttl_ms: 60_000 });
});
after(async () => {
  await filter?.close();
  await sink?.close();
  await redis?.stop();
});

describe('footer groups', () => {
  test('four recipients: one transaction per group, each with only its own link in plain and HTML; the external copy byte-identical', async () => {
    const { final, got, data } = await send(filter.port, sink, FOUR);
    assert.match(final[0]!, /^250 /);
    assert.equal(got.length, 4, 'four groups, four transactions');
    await assertOnlyLink(only(got, BOB), 'bob-cal.example.org', 'bob (recipient override)');
    await assertOnlyLink(only(got, CAROL), 'sales-cal.example.org', 'carol (domain override)');
    await assertOnlyLink(only(got, ERIN), SITE, 'erin (site default)');
    for (const r of [BOB, CAROL, ERIN]) assert.match(only(got, r).raw.toString('latin1'), /\r\nX-Calendar-Link: added\r\n|^X-Calendar-Link: added\r\n/);
    assert.ok(only(got, DAVE).raw.equals(data), 'the external recipient gets the input byte for byte');
    const line = filter.logs.find((l) => l.event === 'message.relayed' && Array.isArray(l.links) && l.groups === 4);
    assert.ok(line, 'one outcome line with the links');
    assert.deepEqual((line.links as Array<{ rcpt: string; source: string; server: string | null }>).map((x) => [x.rcpt, x.source, x.server]), [
      [BOB, 'recipient', 'bob-cal.example.org'], [CAROL, 'domain', 'sales-cal.example.org'], [ERIN, 'site', SITE], [DAVE, 'external', null],
    ]);
  });

  test('an override changed with the CLI while the filter runs is used within one second', async (t) => {
    // bob's old override is in the cache now (TTL 60 s): only the change notification can replace it.
    const warm = await send(filter.port, sink, [BOB]);
    await assertOnlyLink(only(warm.got, BOB), 'bob-cal.example.org', 'bob before the change');
    assert.match(await overrides(redis, 'set', BOB, '--server', 'bob-new.example.org'), /^changed bob@example.org server=bob-new.example.org \(was server=bob-cal.example.org\)/);
    const changed = Date.now();
    const m = await until('the new server in bob\'s footer', 1000, async () => {
      const { got } = await send(filter.port, sink, [BOB]);
      const l = await links(only(got, BOB).raw);
      return l.text[0] === linkOn('bob-new.example.org') ? only(got, BOB) : undefined;
    });
    assert.ok(Date.now() - changed < 1000, `seen after ${Date.now() - changed} ms`);
    t.diagnostic(`the change was used ${Date.now() - changed} ms after the CLI returned`);
    await assertOnlyLink(m, 'bob-new.example.org', 'bob after the change');
    // and back, so the other tests see the original setup
    await overrides(redis, 'set', BOB, '--server', 'bob-cal.example.org');
    await until('bob\'s old server again', 1000, async () => {
      const { got } = await send(filter.port, sink, [BOB]);
      return (await links(only(got, BOB).raw)).text[0] === linkOn('bob-cal.example.org') ? true : undefined;
    });
  });
});

describe('the next hop disagrees between groups', () => {
  test('LMTP: one group accepted, one deferred by the LMTP next hop → per-recipient 250 and 451', async () => {
    const lsink = await startSink({ lmtp: true, behaviour: (q) => (q.phase === 'data' && q.rcpt === CAROL ? { code: 451, text: '4.2.0 Mailbox busy' } : undefined) });
    const lf = await startInProcFilter({ ...BASE, lmtp: true, next_hop: `lmtp://127.0.0.1:${lsink.port}`, redis: redis.url });
    try {
      const { final, got } = await send(lf.port, lsink, FOUR, true);
      assert.equal(final.length, 4, 'one reply per recipient');
      assert.match(final[0]!, /^250 /, 'bob');
      assert.match(final[1]!, /^451 4\.2\.0 Mailbox busy/, 'carol: the next hop\'s own deferral');
      assert.match(final[2]!, /^250 /, 'erin');
      assert.match(final[3]!, /^250 /, 'dave');
      assert.equal(got.length, 4);
      await assertOnlyLink(only(got, BOB), 'bob-cal.example.org', 'bob');
      await assertOnlyLink(only(got, CAROL), 'sales-cal.example.org', 'carol');
      assert.deepEqual(only(got, CAROL).replies, [451]);
      assert.ok(lf.logs.some((l) => l.event === 'message.deferred' && Array.isArray(l.reply) && (l.reply as number[]).join() === '250,451,250,250'));
    } finally {
      await lf.close();
      await lsink.close();
    }
  });

  test('SMTP: one group accepted, another deferred → 451 for the whole message (duplicates over loss), as the README says', async () => {
    const ssink = await startSink({ behaviour: (q) => (q.phase === 'data' && q.envelope.to.some((t) => t.address === CAROL) ? { code: 451, text: '4.2.0 Mailbox busy' } : undefined) });
    const sf = await startInProcFilter({ ...BASE, next_hop: `smtp://127.0.0.1:${ssink.port}`, redis: redis.url });
    try {
      const { final, got } = await send(sf.port, ssink, FOUR);
      assert.equal(final.length, 1);
      assert.match(final[0]!, /^451 4\.3\.0 .*duplicates possible/);
      // The other groups were delivered: the MTA's retry will deliver them again (a duplicate, never a loss).
      assert.equal(got.length, 4);
      assert.deepEqual(only(got, CAROL).replies, [451]);
      for (const r of [BOB, ERIN, DAVE]) assert.deepEqual(only(got, r).replies, [250]);
    } finally {
      await sf.close();
      await ssink.close();
    }
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    const section = /\*\*Some recipients refused \(SMTP mode\)\.\*\*[\s\S]*?(?=\n\n\*\*|\n## )/.exec(readme)?.[0] ?? '';
    assert.match(section, /451 4\.3\.0/);
    assert.match(section, /footer group/i, 'the README section covers footer groups');
    assert.match(section, /duplicate/i);
    assert.match(section, /_destination_recipient_limit = 1/);
    assert.match(section, /LMTP/);
  });
});

describe('scale-out', () => {
  test('two filter processes share one Redis: an override set with the CLI is used by both within a second', async (t) => {
    const ports = [await freePort(), await freePort()];
    const args = (port: number) => ['serve', '--listen', `127.0.0.1:${port}`, '--next-hop', `smtp://127.0.0.1:${sink.port}`, '--redis', redis.url,
      '--web-server', SITE, '--local-domains', 'example.org,sales.example.org', '--override-cache-ttl-ms', '60000', '--redis-timeout-ms', '500', '--log-level', 'warn'];
    const procs: FilterProcess[] = [];
    try {
      procs.push(...(await Promise.all(ports.map((p) => startFilter(args(p))))));
      // Both cache "hank has no override" for 60 s.
      for (const p of procs) await assertOnlyLink(only((await send(p.port, sink, ['hank@example.org'])).got, 'hank@example.org'), SITE, `hank via ${p.port}`);
      await overrides(redis, 'set', 'hank@example.org', '--server', 'hank-cal.example.org');
      const changed = Date.now();
      for (const p of procs) {
        const m = await until(`hank's override through the instance on ${p.port}`, 1000, async () => {
          const got = only((await send(p.port, sink, ['hank@example.org'])).got, 'hank@example.org');
          return (await links(got.raw)).text[0] === linkOn('hank-cal.example.org') ? got : undefined;
        });
        await assertOnlyLink(m, 'hank-cal.example.org', `hank via ${p.port}`);
      }
      assert.ok(Date.now() - changed < 1000, `both instances used it within ${Date.now() - changed} ms`);
      t.diagnostic(`both instances used the change within ${Date.now() - changed} ms of the CLI returning`);
    } finally {
      await Promise.all(procs.map((p) => p.stop(5000)));
    }
  });
});

describe('Redis killed and restarted (redis_fallback=site, the default)', () => {
  test('mail keeps flowing with cached overrides else the site link, nothing lost or duplicated, one redis.down; overrides apply again after the restart', async (t) => {
    // TTL 1 s: the outage covers both a fresh cache entry and one past its TTL (kept as the stale fallback).
    const kf = await startInProcFilter({ ...BASE, next_hop: `smtp://127.0.0.1:${sink.port}`, redis: redis.url, override_cache_ttl_ms: 1000 });
    try {
      await overrides(redis, 'set', 'gina@example.org', '--server', 'gina-cal.example.org');
      const warm = await send(kf.port, sink, FOUR);
      const warmedAt = Date.now();
      assert.match(warm.final[0]!, /^250 /);
      await assertOnlyLink(only(warm.got, BOB), 'bob-cal.example.org', 'bob before the outage');
      // Redis persists to disk and crashes: what it held is back after the restart.
      await redis.cli('SAVE');
      await redis.kill();

      const RCPTS = [...FOUR, 'gina@example.org'];
      const sent: number[] = [];
      for (let i = 0; i < 8; i++) {
        const { n, final, got } = await send(kf.port, sink, RCPTS);
        sent.push(n);
        assert.match(final[0]!, /^250 /, `message ${i} during the outage`);
        await assertOnlyLink(only(got, BOB), 'bob-cal.example.org', `bob (cached) during the outage, message ${i}`);
        await assertOnlyLink(only(got, CAROL), 'sales-cal.example.org', `carol (cached) during the outage, message ${i}`);
        // gina's override was never looked up: the fallback gives her the site link, so she shares erin's body.
        await assertOnlyLink(only(got, ERIN, [ERIN, 'gina@example.org']), SITE, `erin and gina during the outage, message ${i}`);
        assert.equal(only(got, DAVE).raw.length, FIXTURE.length + `X-Test-Seq: ${n}\r\n`.length, 'dave: original bytes');
        await sleep(200); // spread over the cache TTL: fresh entries first, stale ones after
      }
      assert.ok(Date.now() - warmedAt > 1500, 'the last messages came after the cache TTL: bob and carol came from the stale copy');
      // erin's "no override" is cached too (site); gina's key never was: the fallback answered for her.
      const lastLine = kf.logs.filter((l) => l.event === 'message.relayed').at(-1)!;
      assert.deepEqual((lastLine.links as Array<{ source: string }>).map((x) => x.source), ['recipient', 'domain', 'site', 'external', 'fallback']);

      // Nothing lost, nothing duplicated: exactly one transaction per recipient per message.
      for (const n of sent) {
        const copies = sink.messages.filter((m) => seqOf(m) === n);
        for (const r of RCPTS) assert.equal(copies.filter((m) => m.envelope.to.some((t) => t.address === r)).length, 1, `message ${n}: one copy for ${r}`);
        assert.equal(copies.reduce((k, m) => k + m.envelope.to.length, 0), RCPTS.length, `message ${n}: no extra copies`);
      }
      assert.equal(kf.logs.filter((l) => l.event === 'redis.down').length, 1, 'one redis.down for the whole incident');

      await redis.restart();
      const restarted = Date.now();
      await until('gina\'s override after the restart', 8000, async () => {
        const { final, got } = await send(kf.port, sink, ['gina@example.org']);
        assert.match(final[0]!, /^250 /);
        return (await links(only(got, 'gina@example.org').raw)).text[0] === linkOn('gina-cal.example.org') ? true : undefined;
      });
      const recovered = Date.now() - restarted;
      assert.ok(recovered < 5000, `overrides applied again ${recovered} ms after the restart`);
      t.diagnostic(`overrides applied again ${recovered} ms after Redis answered PING`);
      // A change made after the restart arrives too (the subscriber is back): ivy is new to this filter.
      const { got: before } = await send(kf.port, sink, ['ivy@example.org']);
      await assertOnlyLink(only(before, 'ivy@example.org'), SITE, 'ivy before her override');
      await overrides(redis, 'set', 'ivy@example.org', '--server', 'ivy-cal.example.org');
      await until('ivy\'s new override', 1500, async () => {
        const got = only((await send(kf.port, sink, ['ivy@example.org'])).got, 'ivy@example.org');
        return (await links(got.raw)).text[0] === linkOn('ivy-cal.example.org') ? true : undefined;
      });
      const after = await send(kf.port, sink, FOUR);
      await assertOnlyLink(only(after.got, BOB), 'bob-cal.example.org', 'bob after the restart');
      await assertOnlyLink(only(after.got, ERIN), SITE, 'erin after the restart');
      assert.equal(kf.logs.filter((l) => l.event === 'redis.down').length, 1, 'still one redis.down');
      assert.equal(kf.logs.filter((l) => l.event === 'redis.up').length, 1, 'one redis.up');
    } finally {
      await kf.close();
    }
  });
});

describe('Redis down with redis_fallback=tempfail', () => {
  test('SMTP client: 451 and nothing reaches the sink; LMTP client: 451 only for recipients that need a lookup', async () => {
    if ((await redis.cli('PING').catch(() => '')) !== 'PONG') await redis.restart(); // whatever the test before left
    const flags = { ...BASE, next_hop: `smtp://127.0.0.1:${sink.port}`, redis: redis.url, redis_fallback: 'tempfail' };
    const smtp = await startInProcFilter(flags);
    const lmtp = await startInProcFilter({ ...flags, lmtp: true });
    try {
      // Both remember bob's override (cache TTL 5 s, the default); nobody has asked for carol or erin.
      for (const f of [smtp, lmtp]) assert.match((await send(f.port, sink, [BOB], f === lmtp)).final[0]!, /^250 /);
      await redis.kill();

      const s = await send(smtp.port, sink, FOUR);
      assert.equal(s.final.length, 1);
      assert.match(s.final[0]!, /^451 4\.3\.0 Link override store unavailable/);
      assert.equal(s.got.length, 0, 'nothing reached the sink');
      // Mail that needs no lookup is not held up: a plain message goes through.
      const before = sink.messages.length;
      const plain = Buffer.from('From: ada@example.org\r\nTo: erin@example.org\r\nSubject: lunch\r\n\r\nNoon?\r\n');
      assert.match((await transact(smtp.port, { from: FROM, to: [ERIN], data: plain })).final[0]!, /^250 /);
      assert.ok(sink.messages[before]!.raw.equals(plain));

      const l = await send(lmtp.port, sink, FOUR, true);
      assert.equal(l.final.length, 4);
      assert.match(l.final[0]!, /^250 /, 'bob: served from the cache');
      assert.match(l.final[1]!, /^451 4\.3\.0 Link override store unavailable/, 'carol: needs a lookup');
      assert.match(l.final[2]!, /^451 4\.3\.0 Link override store unavailable/, 'erin: needs a lookup (she may have an override)');
      assert.match(l.final[3]!, /^250 /, 'dave: external, no lookup');
      assert.equal(l.got.length, 2, 'only the recipients answered 250 were relayed');
      await assertOnlyLink(only(l.got, BOB), 'bob-cal.example.org', 'bob');
      assert.ok(only(l.got, DAVE).raw.equals(l.data));
      for (const f of [smtp, lmtp]) assert.equal(f.logs.filter((x) => x.event === 'redis.down').length, 1);
    } finally {
      await smtp.close();
      await lmtp.close();
    }
  });
});

describe('the plan itself (planDelivery with the real hooks, no SMTP)', () => {
  async function planner(flags: Record<string, unknown>) {
    const { loadConfig: load } = await import('../lib/config.js');
    const { createApp, closeApp } = await import('../lib/app.js');
    const { planDelivery } = await import('../lib/plan.js');
    const { spoolFromBuffer } = await import('../lib/spool.js');
    const { scanBuffer } = await import('../lib/candidate-scan.js');
    const config = load({ flags: { web_server: SITE, ...flags } });
    const logs: Array<Record<string, unknown>> = [];
    const app = await createApp(config, (event, fields = {}) => { logs.push({ event, ...fields }); });
    const plan = (to: string[]) => planDelivery({ config, log: app.log, hooks: app.hooks }, { from: FROM, to: to.map((address) => ({ address })) }, spoolFromBuffer(FIXTURE), scanBuffer(FIXTURE), 'plan-test');
    return { app, logs, plan, close: () => closeApp(app) };
  }
  const NO_LINKS = 'calendar-classify,custom-form-classify,footer-render';

  test('a link hook that answers in another order than the envelope: nobody gets another recipient\'s link', async (t) => {
    const p = await planner({ hooks: NO_LINKS });
    t.after(p.close);
    // right count, wrong order (an extension that sorted its answers)
    p.app.hooks.on('message:links', 'sorted', ({ envelope }) => envelope.to.map((r) => ({ recipient: r.address, url: `https://cal.example.org/for/${r.address}`, source: 'site', server: 'cal.example.org' })).reverse());
    const plan = await p.plan([BOB, ERIN]);
    for (const g of plan.groups) {
      for (const r of g.recipients) assert.ok(g.url === null || g.url === `https://cal.example.org/for/${r.address}`, `${r.address} must not get ${g.url}`);
    }
    for (const g of plan.groups) await g.body?.dispose();
  });

  test('a hook that throws something that is not an Error: the original bytes for everyone, never a rejected plan', async (t) => {
    const p = await planner({ hooks: NO_LINKS });
    t.after(p.close);
    p.app.hooks.on('message:links', 'throws-null', () => { throw null; });
    const plan = await p.plan([BOB, ERIN]);
    assert.deepEqual(plan.groups.map((g) => [g.recipients.map((r) => r.address), g.body, g.url]), [[[BOB, ERIN], null, null]]);
    assert.match(plan.decision, /^unchanged after error/);
    assert.ok(p.logs.some((l) => l.event === 'message.passthrough'));
  });

  test('the decision says why: deferred recipients are named next to the footers; external recipients are not "no web calendar server"', async (t) => {
    const p = await planner({ hooks: NO_LINKS });
    t.after(p.close);
    p.app.hooks.on('message:links', 'store-down', ({ envelope }) => envelope.to.map((r, i) => (
      i === 0 ? { recipient: r.address, url: linkOn(SITE), source: 'site', server: SITE } : { recipient: r.address, url: null, source: 'tempfail', server: null })));
    const plan = await p.plan([BOB, ERIN]);
    assert.ok(plan.groups.some((g) => g.defer), 'erin is deferred');
    assert.match(plan.decision, /defer/, `an SMTP client hears 451 for this message; the decision must not only say "${plan.decision}"`);
    for (const g of plan.groups) await g.body?.dispose();

    const q = await planner({ local_domains: 'example.org' });
    t.after(q.close);
    const ext = await q.plan([DAVE]);
    assert.doesNotMatch(ext.decision, /no web calendar server/, `web_server is set: ${ext.decision}`);
    assert.match(ext.decision, /external|local/);
  });

  test('per-recipient links for many recipients: the copies together stay within spool_memory_limit in memory, each carrying only its own recipient', async (t) => {
    const limit = 8192;
    const p = await planner({ url_template: 'https://{server}/e?uid={uid}&r={recipient}', spool_memory_limit: limit });
    t.after(p.close);
    const to = Array.from({ length: 40 }, (_, i) => `user${i}@example.org`);
    const plan = await p.plan(to);
    t.after(async () => { for (const g of plan.groups) await g.body?.dispose(); });
    assert.equal(plan.groups.length, 40, 'one copy per recipient');
    for (const g of plan.groups) {
      assert.equal(g.recipients.length, 1);
      assert.equal(new URL(g.url!).searchParams.get('r'), g.recipients[0]!.address);
      const text = (await links(await readAll(g.body!))).text;
      assert.deepEqual(text.map((u) => new URL(u).searchParams.get('r')), [g.recipients[0]!.address]);
    }
    const inMemory = plan.groups.filter((g) => g.body?.inMemory).reduce((n, g) => n + g.body!.size, 0);
    assert.ok(inMemory <= limit, `${inMemory} bytes of rewritten copies held in memory, spool_memory_limit is ${limit}`);
  });
});

async function readAll(body: { stream(): NodeJS.ReadableStream }): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of body.stream()) chunks.push(Buffer.from(c as Buffer));
  return Buffer.concat(chunks);
}
