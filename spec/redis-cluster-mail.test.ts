// Mail through the filter with its overrides in a real Redis Cluster (3 masters + 3 replicas on loopback).
// In: a cluster started here; overrides imported with the real CLI (redis+cluster:// URL); the filter in this
// process with the same URL and no cache TTL (every message asks Redis); a sink. Out: every recipient's
// transaction carries its own link, before and after one master is SIGKILLed and its replica takes over;
// no message is lost or duplicated (one copy per recipient per message, counted at the sink).
// Run: node --import tsx --test spec/redis-cluster-mail.test.ts

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { simpleParser } from 'mailparser';
import { startInProcFilter, type InProcFilter } from './helpers/filter-inproc.js';
import { startRedisCluster, type RedisCluster } from './helpers/redis.js';
import { startSink, type Sink, type SinkMessage } from './helpers/sink.js';
import { transact } from './helpers/smtp-dialog.js';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const run = promisify(execFile);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const SITE = 'site-cal.example.org';
const FROM = 'ada@example.org';
const USERS = Array.from({ length: 24 }, (_, i) => `user${i}@example.org`);
const serverOf = (rcpt: string): string | null =>
  rcpt.endsWith('@partner.example') ? null : rcpt.endsWith('@sales.example.org') ? 'sales-cal.example.org' : /^user(\d+)@/.test(rcpt) ? `u${/^user(\d+)@/.exec(rcpt)![1]}-cal.example.org` : SITE;
const OTHERS = ['carol@sales.example.org', 'erin@example.org', 'dave@partner.example'];

let cluster: RedisCluster;
let sink: Sink;
let filter: InProcFilter;
let dir: string;
let fixture: Buffer;
let seq = 0;
/** The users whose override lives on each master (by port), as the cluster placed them. */
const byMaster = new Map<number, string[]>();
/** Every message sent: its number and recipients, to count the copies at the end. */
const sent: Array<{ n: number; to: string[] }> = [];

async function overrides(...args: string[]): Promise<string> {
  const { stdout } = await run(process.execPath, ['--import', 'tsx', 'bin/calendar-link-filter.ts', 'overrides', ...args, '--redis', cluster.url], { cwd: ROOT, timeout: 20_000 });
  return stdout;
}

const seqOf = (m: SinkMessage) => Number(/(?:^|\r\n)X-Test-Seq: (\d+)\r\n/.exec(m.raw.toString('latin1'))?.[1] ?? NaN);

/** One meeting request to `to`; 250 required; returns each recipient's copy. */
async function send(to: string[]): Promise<Map<string, SinkMessage>> {
  const n = ++seq;
  const r = await transact(filter.port, { from: FROM, to, data: Buffer.concat([Buffer.from(`X-Test-Seq: ${n}\r\n`), fixture]) });
  sent.push({ n, to });
  assert.match(r.final[0]!, /^250 /, `message ${n}`);
  const copies = new Map<string, SinkMessage>();
  for (const m of sink.messages.filter((x) => seqOf(x) === n)) for (const t of m.envelope.to) copies.set(t.address, m);
  return copies;
}

/** The server named by the plain and the HTML link, or null when the copy has no footer; both must agree. */
async function linkServer(m: SinkMessage): Promise<string | null> {
  const p = await simpleParser(m.raw);
  const text = (p.text ?? '').match(/https:\/\/[^\s<>"]+/g) ?? [];
  const html = [...(typeof p.html === 'string' ? p.html : '').matchAll(/href="(https:[^"]*)"/g)].map((x) => x[1]!.replace(/&amp;/g, '&'));
  assert.deepEqual(text, html, 'the plain and the HTML footer carry the same link');
  assert.ok(text.length <= 1, 'at most one link');
  return text[0] ? new URL(text[0]).hostname : null;
}

async function wrongLinks(copies: Map<string, SinkMessage>, to: string[]): Promise<string[]> {
  const wrong: string[] = [];
  for (const r of to) {
    const m = copies.get(r);
    assert.ok(m, `a copy for ${r}`);
    const got = await linkServer(m);
    if (got !== serverOf(r)) wrong.push(`${r}: ${got}`);
  }
  return wrong;
}

/** Until every replica holds as many keys as its master: what the CLI wrote survives a failover. */
async function replicasInSync(): Promise<void> {
  const end = Date.now() + 10_000;
  for (;;) {
    let ok = true;
    for (const port of cluster.ports) {
      const role = (await cluster.cli(port, 'ROLE')).split('\n');
      if (role[0] !== 'slave') continue;
      if ((await cluster.cli(port, 'DBSIZE')) !== (await cluster.cli(Number(role[2]), 'DBSIZE'))) ok = false;
    }
    if (ok) return;
    if (Date.now() > end) throw new Error('replicas did not catch up within 10 s');
    await sleep(50);
  }
}

before(async () => {
  fixture = await readFile(join(ROOT, 'fixtures/mail/exchange-online.eml'));
  dir = await mkdtemp(join(tmpdir(), 'calfilter-cluster-mail-'));
  cluster = await startRedisCluster();
  const csv = ['key,server', '@sales.example.org,sales-cal.example.org', ...USERS.map((u) => `${u},${serverOf(u)}`)].join('\n') + '\n';
  await writeFile(join(dir, 'overrides.csv'), csv);
  assert.match(await overrides('import', join(dir, 'overrides.csv')), /25 added, 0 changed, 0 unchanged, 0 removed/);
  await replicasInSync();
  for (const port of await cluster.masters()) {
    const held = (await cluster.cli(port, 'KEYS', 'calfilter:override:user*')).split('\n').map((k) => k.replace('calfilter:override:', ''));
    byMaster.set(port, USERS.filter((u) => held.includes(u)));
    assert.ok(byMaster.get(port)!.length >= 3, `master ${port} holds at least three of the overrides`);
  }
  sink = await startSink();
  filter = await startInProcFilter({
    next_hop: `smtp://127.0.0.1:${sink.port}`, next_hop_timeout: 5, connect_timeout: 2, web_server: SITE, local_domains: 'example.org,sales.example.org',
    // 500 ms, not 50: on a loaded test machine a slow answer must not pass for a failed node.
    redis: cluster.url, override_cache_ttl_ms: 0, redis_timeout_ms: 500,
  });
});
after(async () => {
  await filter?.close();
  await sink?.close();
  await cluster?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** Recipients looked up in the first test: three users from every master, and the others. */
const firstBatch = () => [...[...byMaster.values()].flatMap((users) => users.slice(0, 3)), ...OTHERS];

test('cluster: lookups on every master give each recipient its own link', async () => {
  const to = firstBatch();
  const copies = await send(to);
  assert.deepEqual(await wrongLinks(copies, to), []);
  const line = filter.logs.filter((l) => l.event === 'message.relayed').at(-1)!;
  assert.deepEqual((line.links as Array<{ source: string }>).map((l) => l.source), [...Array(9).fill('recipient'), 'domain', 'site', 'external']);
  assert.equal(line.groups, 12, 'one group per link, one for the external copy');
  assert.equal(filter.logs.filter((l) => l.event === 'redis.down').length, 0, 'no lookup met the fallback');
});

test('cluster: a master killed mid-stream: mail keeps flowing, links stay right, new lookups work after the failover', async (t) => {
  // Mail goes on while the master dies and its replica is promoted: one user from every master (the victim's
  // too), carol (domain override) and erin (site); all were looked up before.
  const seen = [...[...byMaster.values()].map((users) => users[0]!), 'carol@sales.example.org', 'erin@example.org'];
  let failingOver = true;
  const during: Array<Promise<string[]>> = [];
  const sender = async () => {
    while (failingOver) {
      const copies = await send(seen);
      during.push(wrongLinks(copies, seen).catch((e: Error) => [e.message]));
      await sleep(50);
    }
  };
  const stream = Promise.all([sender(), sender()]); // two MTA connections at once
  const started = Date.now();
  let victim: number;
  try {
    victim = await cluster.killMaster(0);
  } finally {
    failingOver = false;
    await stream;
  }
  assert.deepEqual((await Promise.all(during)).flat(), [], 'links during the failover');
  t.diagnostic(`master ${victim} killed; failover took ${Date.now() - started} ms; ${during.length} messages sent meanwhile`);
  assert.ok(during.length >= 2, 'mail was sent during the failover');

  // Recipients never looked up before: their links can only come from the cluster as it is now.
  const fresh = USERS.filter((u) => !firstBatch().includes(u));
  const end = Date.now() + 10_000;
  for (;;) {
    const wrong = await wrongLinks(await send(fresh), fresh);
    if (wrong.length === 0) break;
    assert.ok(Date.now() < end, `lookups not back 10 s after the failover: ${wrong.join('; ')}`);
    await sleep(200);
  }
  t.diagnostic(`lookups of new keys correct ${Date.now() - started} ms after the kill`);
  const everyone = [...USERS, ...OTHERS];
  assert.deepEqual(await wrongLinks(await send(everyone), everyone), []);

  // A change made with the CLI now is used (writes work on the promoted replica, and the filter reads them).
  await overrides('set', 'user3@example.org', '--server', 'u3-new.example.org');
  const changeEnd = Date.now() + 5000;
  for (;;) {
    const got = await linkServer((await send(['user3@example.org'])).get('user3@example.org')!);
    if (got === 'u3-new.example.org') break;
    assert.equal(got, 'u3-cal.example.org');
    assert.ok(Date.now() < changeEnd, 'the change after the failover was not used within 5 s');
    await sleep(50);
  }

  // Nothing lost, nothing duplicated: one copy per recipient per message, over the whole file.
  for (const { n, to } of sent) {
    const copies = sink.messages.filter((m) => seqOf(m) === n);
    const rcpts = copies.flatMap((m) => m.envelope.to.map((x) => x.address)).sort();
    assert.deepEqual(rcpts, [...to].sort(), `message ${n}: one copy per recipient`);
  }
  const downs = filter.logs.filter((l) => l.event === 'redis.down').length;
  t.diagnostic(`${sent.length} messages in all, ${downs} redis.down line(s)`);
  assert.ok(downs <= 1, `at most one redis.down (got ${downs})`);
  if (downs === 1) assert.equal(filter.logs.filter((l) => l.event === 'redis.up').length, 1);
});
