// The override store on a real Redis Cluster (3 masters + 3 replicas on loopback, node timeout 1 s).
// In: a cluster started here, the store opened by a redis+cluster:// URL, the CLI against the same URL.
// Out: lookups, SCAN over every master, pub/sub between instances, and lookups working again within a
// few seconds after a master is killed and its replica took over. Run: node --import tsx --test spec/redis-cluster.test.ts

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startRedisCluster, type RedisCluster } from './helpers/redis.js';
import { openOverrideStore, type OverrideStore } from '../lib/override-store.js';
import { OverrideCache } from '../lib/override-cache.js';
import { runOverrides } from '../lib/overrides-command.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const KEYS = Array.from({ length: 40 }, (_, i) => `user${i}@example.org`);
let cluster: RedisCluster;
let writer: OverrideStore;
let reader: OverrideStore;

before(async () => {
  cluster = await startRedisCluster();
  writer = openOverrideStore(cluster.url, { timeoutMs: 2000 }, () => undefined);
  reader = openOverrideStore(cluster.url, { timeoutMs: 100 }, () => undefined);
  assert.equal(await writer.ready(5000), true);
  assert.equal(await reader.ready(5000), true);
});
after(async () => {
  await writer?.close();
  await reader?.close();
  await cluster?.stop();
});

async function allReadable(store: OverrideStore): Promise<boolean> {
  const got = await Promise.all(KEYS.map((k) => store.get(k).then((v) => v?.server, () => undefined)));
  return got.every((s, i) => s === `s${i}.example.org`);
}

test('cluster: keys spread over the masters are set, read and listed (SCAN on every master)', async () => {
  for (const [i, k] of KEYS.entries()) await writer.set(k, { server: `s${i}.example.org` });
  assert.ok(await allReadable(reader));
  const listed = new Map<string, unknown>();
  for await (const [k, v] of writer.list()) listed.set(k, v);
  assert.equal(listed.size, KEYS.length);
  // The keys really are spread: every master holds some.
  for (const port of await cluster.masters()) assert.ok(Number(await cluster.cli(port, 'DBSIZE')) > 0, `master ${port} holds keys`);
});

test('cluster: a change through one instance reaches the other instance\'s cache within a second', async () => {
  const cache = new OverrideCache(reader, { ttlMs: 60_000, maxEntries: 100, fallback: 'site' }, () => undefined);
  await sleep(200);
  assert.deepEqual(await cache.lookup('p@example.org'), { ok: true, value: null, stale: false, from: 'store' });
  const t0 = Date.now();
  await writer.set('p@example.org', { off: true });
  for (;;) {
    const r = await cache.lookup('p@example.org');
    if (r.ok && r.value?.off) break;
    assert.ok(Date.now() - t0 < 1000, 'change not seen within 1 s');
    await sleep(20);
  }
  cache.close();
});

test('cluster: the CLI works with a redis+cluster:// URL', async () => {
  let out = '';
  const io = { stdout: { write: (s: string) => (out += s) }, stderr: { write: () => true }, env: {} };
  assert.equal(await runOverrides(['--redis', cluster.url, 'set', '@cluster.example', '--server', 'c.example.org'], io), 0);
  out = '';
  assert.equal(await runOverrides(['--redis', cluster.url, 'get', '@cluster.example'], io), 0);
  assert.equal(out, '@cluster.example server=c.example.org\n');
});

test('cluster: after a master is killed, lookups stay bounded and work again once its replica took over', async () => {
  const logs: string[] = [];
  const cache = new OverrideCache(reader, { ttlMs: 0, maxEntries: 1000, fallback: 'none', probeIntervalMs: 200 }, (e) => logs.push(e));
  // Prefer the master that carries a subscriber connection, so the test also covers resubscribing.
  const masters = await cluster.masters();
  const withSub = [];
  for (const port of masters) if (/ sub=[1-9]/.test(await cluster.cli(port, 'CLIENT', 'LIST'))) withSub.push(port);
  const victim = await cluster.killMaster(Math.max(0, masters.indexOf(withSub[0] ?? masters[0]!)));
  const failedOver = Date.now();
  // Lookups during the switch answer within the timeout (from Redis, the stale cache or the fallback).
  let slowest = 0;
  for (;;) {
    const t = Date.now();
    const answers = await Promise.all(KEYS.map((k) => cache.lookup(k)));
    slowest = Math.max(slowest, Date.now() - t);
    if (answers.every((a, i) => a.ok && !a.stale && a.value?.server === `s${i}.example.org`)) break;
    assert.ok(Date.now() - failedOver < 8000, `lookups not back 8 s after the failover of ${victim}`);
    await sleep(100);
  }
  assert.ok(slowest < 500, `a lookup round took ${slowest} ms`);
  assert.ok(await allReadable(reader));
  assert.ok(logs.filter((e) => e === 'redis.down').length <= 1);
  // Writes work again, and so do the change notifications (the subscriber may have had to move).
  await writer.set('after@example.org', { server: 'after.example.org' });
  assert.deepEqual(await reader.get('after@example.org'), { server: 'after.example.org' });
  const fresh = new OverrideCache(reader, { ttlMs: 60_000, maxEntries: 100, fallback: 'site' }, () => undefined);
  assert.deepEqual(await fresh.lookup('after@example.org'), { ok: true, value: { server: 'after.example.org' }, stale: false, from: 'store' });
  const t0 = Date.now();
  for (;;) {
    await writer.set('after@example.org', { server: `t${Date.now() - t0}.example.org` });
    await sleep(100);
    const r = await fresh.lookup('after@example.org');
    if (r.ok && r.value?.server !== 'after.example.org') break;
    assert.ok(Date.now() - t0 < 8000, 'notifications not back 8 s after the failover');
  }
  fresh.close();
  cache.close();
});
