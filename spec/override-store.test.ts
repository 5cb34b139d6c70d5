// The override store and its cache, in memory and against a real redis-server on an ephemeral port.
// In: a redis-server started here (and killed, paused, restarted here). Out: assertions on values,
// change propagation between two instances, timeouts, fallback and the once-per-incident log lines.
// Run: node --import tsx --test spec/override-store.test.ts

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startRedis, startSentinel, type RedisServer } from './helpers/redis.js';
import { MemoryOverrideStore, openOverrideStore, StoreUnavailableError, type OverrideStore } from '../lib/override-store.js';
import { OverrideCache, type CacheLookup } from '../lib/override-cache.js';
import { OverrideDataError } from '../lib/override-model.js';
import { parseRedisUrl, redact } from '../lib/override-config.js';
import { ConfigError, loadConfig } from '../lib/config.js';
import { until as untilEvery } from './helpers/until.js';

/** Polled every 20 ms: these waits are short (Redis notifications, cache expiry). */
const until = <T>(what: string, ms: number, probe: () => Promise<T | undefined>) => untilEvery(what, ms, probe, undefined, 20);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const PREFIX = 'test:override:';

let redis: RedisServer;
const opened: OverrideStore[] = [];
function open(log: (e: string, f?: Record<string, unknown>) => void = () => undefined, timeoutMs = 50): OverrideStore {
  const s = openOverrideStore(redis.url, { keyPrefix: PREFIX, timeoutMs }, log);
  opened.push(s);
  return s;
}
async function collect(store: OverrideStore) {
  const out: Record<string, unknown> = {};
  for await (const [k, v] of store.list()) out[k] = v;
  return out;
}
before(async () => { redis = await startRedis(); });
after(async () => {
  for (const s of opened) await s.close();
  await redis?.stop();
});

test('Redis URL forms, redaction, and the registered config keys', () => {
  assert.deepEqual(parseRedisUrl(''), { mode: 'memory' });
  assert.deepEqual(parseRedisUrl('redis://:pw@10.0.0.1:6380/2'), { mode: 'standalone', url: 'redis://:pw@10.0.0.1:6380/2' });
  assert.deepEqual(parseRedisUrl('unix:///run/redis/redis.sock?db=3'), { mode: 'standalone', path: '/run/redis/redis.sock', db: 3 });
  assert.deepEqual(parseRedisUrl('redis+sentinel://u:p%40ss@s1:26379,[::1],s3:26380/mymaster/1'), {
    mode: 'sentinel', name: 'mymaster', db: 1, username: 'u', password: 'p@ss',
    sentinels: [{ host: 's1', port: 26379 }, { host: '::1', port: 26379 }, { host: 's3', port: 26380 }],
  });
  assert.equal(parseRedisUrl('sentinel://s1:26379/m').mode, 'sentinel');
  assert.deepEqual(parseRedisUrl('redis+cluster://n1:7000,n2'), { mode: 'cluster', nodes: [{ host: 'n1', port: 7000 }, { host: 'n2', port: 6379 }] });
  for (const [bad, why] of [['http://x', /unsupported/], ['redis+sentinel://s1:26379', /must name the master/], ['redis+cluster://n1:7000/3', /no path/],
    ['redis+cluster://n1:99999', /bad port/], ['redis://h/x', /database/], ['redis://h\r\nX:1', /control/]] as const) {
    assert.throws(() => parseRedisUrl(bad), why, bad);
  }
  assert.equal(redact('redis://user:secret@h:1'), 'redis://user:***@h:1');
  assert.equal(redact('redis+sentinel://:secret@h:1,h:2/m'), 'redis+sentinel://:***@h:1,h:2/m');
  assert.throws(() => parseRedisUrl('redis+cluster://:secret@bad host'), (e: Error) => !e.message.includes('secret'));
  const c = loadConfig({ flags: { redis: 'redis+cluster://n1:7000' } });
  assert.deepEqual([c.redis, c.redis_prefix, c.redis_timeout_ms, c.redis_fallback, c.override_cache_ttl_ms, c.override_cache_size, c.local_part_case, c.recipient_delimiter],
    ['redis+cluster://n1:7000', 'calfilter:', 50, 'site', 5000, 10000, 'preserve', '']);
  assert.throws(() => loadConfig({ flags: { redis: 'http://x' } }), ConfigError);
  assert.throws(() => loadConfig({ flags: { redis_timeout_ms: 1 } }), /below the minimum 5/);
  assert.throws(() => loadConfig({ flags: { redis_fallback: 'maybe' } }), /site, none, tempfail/);
  assert.throws(() => loadConfig({ flags: { recipient_delimiter: '@' } }), ConfigError);
});

test('memory store: set, get, unset, list, change notifications, invalid values refused', async () => {
  const s = new MemoryOverrideStore();
  const changes: Array<string | null> = [];
  s.onChange((k) => changes.push(k));
  await s.set('a@example.org', { server: 'cal.example.org' });
  await s.set('@example.org', { off: true });
  assert.deepEqual(await s.get('a@example.org'), { server: 'cal.example.org' });
  assert.equal(await s.get('b@example.org'), null);
  assert.deepEqual(await collect(s), { 'a@example.org': { server: 'cal.example.org' }, '@example.org': { off: true } });
  assert.equal(await s.unset('a@example.org'), true);
  assert.equal(await s.unset('a@example.org'), false);
  assert.deepEqual(changes, ['a@example.org', '@example.org', 'a@example.org', 'a@example.org']);
  await assert.rejects(s.set('x@example.org', { server: 'ftp://x' }), OverrideDataError);
  await assert.rejects(s.set('x@example.org', { off: true, server: 'x.example' }), OverrideDataError);
  assert.equal(await s.ready(), true);
  await s.close();
});

test('redis store: set, get, unset, list over many SCAN pages, other keys untouched', async () => {
  const s = open(undefined, 2000);
  assert.equal(await s.ready(3000), true);
  await redis.cli('SET', 'unrelated:key', 'x');
  await s.set('a@example.org', { server: 'cal.example.org', urlTemplate: 'https://{server}/e?u={uid}' });
  await s.set('@example.org', { off: true });
  assert.deepEqual(await s.get('a@example.org'), { server: 'cal.example.org', urlTemplate: 'https://{server}/e?u={uid}' });
  assert.equal(await s.get('nobody@example.org'), null);
  assert.equal(await redis.cli('GET', `${PREFIX}@example.org`), '{"v":1,"off":true}');
  for (let i = 0; i < 1200; i++) await s.set(`u${i}@bulk.example`, { server: `s${i % 7}.example.org` });
  const all = await collect(s);
  assert.equal(Object.keys(all).length, 1202);
  assert.deepEqual(all['u77@bulk.example'], { server: 's0.example.org' });
  assert.ok(!('unrelated:key' in all));
  assert.equal(await s.unset('a@example.org'), true);
  assert.equal(await s.unset('a@example.org'), false);
  assert.equal(await s.get('a@example.org'), null);
  await assert.rejects(s.set('x@example.org', { server: 'javascript:alert(1)' }), OverrideDataError);
  await redis.cli('FLUSHALL');
});

test('a corrupt value is ignored (read as absent) with one log line, however often it is read', async () => {
  const logs: Array<[string, Record<string, unknown> | undefined]> = [];
  const s = open((e, f) => logs.push([e, f]), 2000);
  assert.equal(await s.ready(3000), true);
  await redis.cli('SET', `${PREFIX}bad@example.org`, '{not json');
  await redis.cli('SET', `${PREFIX}old@example.org`, '{"v":99,"server":"x.example"}');
  await redis.cli('SET', `${PREFIX}evil@example.org`, '{"v":1,"server":"javascript:alert(1)"}');
  await s.set('good@example.org', { server: 'ok.example.org' });
  for (let i = 0; i < 20; i++) assert.equal(await s.get('bad@example.org'), null);
  assert.equal(await s.get('old@example.org'), null);
  assert.equal(await s.get('evil@example.org'), null);
  assert.deepEqual(await collect(s), { 'good@example.org': { server: 'ok.example.org' } });
  const corrupt = logs.filter(([e]) => e === 'redis.corrupt').map(([, f]) => f?.key);
  assert.deepEqual(corrupt.sort(), [`${PREFIX}bad@example.org`, `${PREFIX}evil@example.org`, `${PREFIX}old@example.org`]);
  await redis.cli('FLUSHALL');
});

test('a key of another type or a huge value is corrupt data about that key, not an outage: other lookups are unaffected', async () => {
  const logs: Array<[string, Record<string, unknown> | undefined]> = [];
  const s = open((e, f) => logs.push([e, f]), 2000);
  assert.equal(await s.ready(3000), true);
  await redis.cli('HSET', `${PREFIX}hash@example.org`, 'server', 'x.example.org');
  await redis.cli('SET', `${PREFIX}huge@example.org`, `{"v":1,"server":"ok.example.org","pad":"${'x'.repeat(100_000)}"}`);
  await s.set('good@example.org', { server: 'ok.example.org' });
  const cache = new OverrideCache(s, { ttlMs: 0, maxEntries: 100, fallback: 'tempfail' }, (e, f) => logs.push([e, f]));
  for (let i = 0; i < 5; i++) {
    assert.deepEqual(await cache.lookup('hash@example.org'), { ok: true, value: null, stale: false, from: 'store' });
    assert.deepEqual(await cache.lookup('huge@example.org'), { ok: true, value: null, stale: false, from: 'store' });
    assert.deepEqual(await cache.lookup('good@example.org'), { ok: true, value: { server: 'ok.example.org' }, stale: false, from: 'store' });
  }
  assert.equal(cache.down, false);
  assert.deepEqual(logs.filter(([e]) => e === 'redis.down'), []);
  assert.deepEqual(logs.filter(([e]) => e === 'redis.corrupt').map(([, f]) => f?.key).sort(), [`${PREFIX}hash@example.org`, `${PREFIX}huge@example.org`]);
  assert.deepEqual(await collect(s), { 'good@example.org': { server: 'ok.example.org' } }, 'list skips both');
  // the admin side refuses what would read back as corrupt
  await assert.rejects(s.set('long@example.org', { server: 'ok.example.org', urlTemplate: `https://{server}/${'a'.repeat(5000)}` }), OverrideDataError);
  cache.close();
  await redis.cli('FLUSHALL');
});

test('ready() answers false as soon as the connection is refused, not after its whole timeout', async () => {
  const s = openOverrideStore('redis://127.0.0.1:1', { keyPrefix: PREFIX, timeoutMs: 50 }, () => undefined);
  opened.push(s);
  const t0 = Date.now();
  assert.equal(await s.ready(5000), false);
  assert.ok(Date.now() - t0 < 2000, `took ${Date.now() - t0} ms of the 5000 allowed`);
});

test('a change made through one instance reaches another instance\'s cache within a second (pub/sub)', async () => {
  const a = open(undefined, 2000);
  const b = open();
  assert.equal(await a.ready(3000), true);
  assert.equal(await b.ready(3000), true);
  // A TTL of a minute: only the notification can make B see the change in time.
  const cacheB = new OverrideCache(b, { ttlMs: 60_000, maxEntries: 100, fallback: 'site' }, () => undefined);
  await sleep(100); // let B's subscription settle
  assert.deepEqual(await cacheB.lookup('p@example.org'), { ok: true, value: null, stale: false, from: 'store' });
  assert.deepEqual(await cacheB.lookup('p@example.org'), { ok: true, value: null, stale: false, from: 'cache' });
  const t0 = Date.now();
  await a.set('p@example.org', { server: 'new.example.org' });
  const seen = await until('B sees the set', 1000, async () => {
    const r = await cacheB.lookup('p@example.org');
    return r.ok && r.value ? r : undefined;
  });
  assert.deepEqual(seen.ok && seen.value, { server: 'new.example.org' });
  assert.ok(Date.now() - t0 < 1000);
  await a.unset('p@example.org');
  await until('B sees the unset', 1000, async () => {
    const r = await cacheB.lookup('p@example.org');
    return r.ok && r.value === null ? r : undefined;
  });
  cacheB.close();
  await redis.cli('FLUSHALL');
});

test('lookups stay bounded by the timeout while Redis sleeps (DEBUG SLEEP) or is stopped (SIGSTOP)', async () => {
  const s = open(undefined, 50);
  assert.equal(await s.ready(3000), true);
  const sleeping = redis.cli('DEBUG', 'SLEEP', '1');
  await sleep(50);
  let t = Date.now();
  await assert.rejects(s.get('x@example.org'), StoreUnavailableError);
  assert.ok(Date.now() - t < 250, `DEBUG SLEEP lookup took ${Date.now() - t} ms`);
  await sleeping;
  await until('answers after DEBUG SLEEP', 2000, async () => (await s.get('x@example.org').then(() => true, () => false)) || undefined);

  redis.pause();
  try {
    t = Date.now();
    await assert.rejects(s.get('x@example.org'), StoreUnavailableError);
    assert.ok(Date.now() - t < 250, `paused lookup took ${Date.now() - t} ms`);
  } finally {
    redis.resume();
  }
  await until('answers after SIGCONT', 2000, async () => (await s.get('x@example.org').then(() => true, () => false)) || undefined);
});

test('Redis killed: cached values (even stale), else the fallback; one redis.down; restarted: recovers by itself, one redis.up', async () => {
  const logs: string[] = [];
  const log = (e: string) => logs.push(e);
  const writer = open(undefined, 2000);
  const s = open(log);
  assert.equal(await writer.ready(3000), true);
  assert.equal(await s.ready(3000), true);
  await writer.set('cached@example.org', { server: 'cached.example.org' });
  await sleep(100); // the set's own change notification has arrived
  const caches = (['site', 'none', 'tempfail'] as const).map((fallback) => new OverrideCache(s, { ttlMs: 100, maxEntries: 100, fallback, probeIntervalMs: 200 }, log));
  for (const c of caches) assert.deepEqual(await c.lookup('cached@example.org'), { ok: true, value: { server: 'cached.example.org' }, stale: false, from: 'store' });
  // an override the admin then removes: known to be replaced, it is never served stale
  await writer.set('changed@example.org', { off: true });
  await until('the site cache sees it', 1000, async () => ((r) => (r.ok && r.value?.off ? r : undefined))(await caches[0]!.lookup('changed@example.org')));
  await writer.unset('changed@example.org');
  await sleep(200); // the unset's notification has arrived
  await sleep(150); // the cached entries are now past their TTL

  await redis.kill();
  const [site] = caches;
  const removed = await site!.lookup('changed@example.org');
  assert.ok(!removed.ok && removed.fallback === 'site', `the fallback, not the removed value: ${JSON.stringify(removed)}`);
  const answers: CacheLookup[] = [];
  const t0 = Date.now();
  for (let i = 0; i < 50; i++) {
    answers.push(await site!.lookup('cached@example.org'));
    answers.push(await site!.lookup(`unknown${i}@example.org`));
  }
  assert.ok(Date.now() - t0 < 1000, `100 lookups with Redis dead took ${Date.now() - t0} ms`);
  assert.deepEqual(answers.filter((_, i) => i % 2 === 0).filter((a) => !(a.ok && a.stale && a.value?.server === 'cached.example.org')), [], 'stale cached value');
  assert.deepEqual(answers.filter((_, i) => i % 2 === 1).filter((a) => !(!a.ok && a.fallback === 'site')), [], 'fallback');
  for (const c of caches.slice(1)) {
    const r = await c.lookup('nobody@example.org');
    assert.equal(r.ok, false);
    assert.equal(!r.ok && r.fallback, c.fallback);
  }
  assert.equal(logs.filter((e) => e === 'redis.down').length, 3, 'one redis.down per cache, not per lookup');
  assert.ok(caches.every((c) => c.down), 'all down');

  await redis.restart();
  await writer.ready(5000);
  // The restarted server is empty (no persistence); the writer sets again through the same store.
  await until('writer reconnects', 5000, async () => (await writer.set('cached@example.org', { server: 'after.example.org' }).then(() => true, () => false)) || undefined);
  for (const c of caches) {
    await until('lookups work again', 5000, async () => {
      const r = await c.lookup('cached@example.org');
      return r.ok && !r.stale && r.value?.server === 'after.example.org' ? r : undefined;
    });
    assert.equal(c.down, false);
  }
  assert.equal(logs.filter((e) => e === 'redis.down').length, 3);
  assert.equal(logs.filter((e) => e === 'redis.up').length, 3);
  for (const c of caches) c.close();
});

test('cache: bounded size, least recently used goes first', async () => {
  const m = new MemoryOverrideStore();
  let gets = 0;
  const counting: OverrideStore = Object.assign(Object.create(m) as OverrideStore, { get: (k: string) => { gets++; return m.get(k); } });
  const c = new OverrideCache(counting, { ttlMs: 60_000, maxEntries: 2, fallback: 'site' }, () => undefined);
  await c.lookup('a@x.example');
  await c.lookup('b@x.example');
  await c.lookup('a@x.example'); // a is now the most recent
  await c.lookup('c@x.example'); // evicts b
  assert.equal(c.size, 2);
  gets = 0;
  await c.lookup('a@x.example');
  await c.lookup('c@x.example');
  assert.equal(gets, 0);
  await c.lookup('b@x.example');
  assert.equal(gets, 1);
  c.close();
});

test('a redis+sentinel:// URL finds the master through Sentinel; changes are announced as usual', async () => {
  const sentinel = await startSentinel(redis);
  const a = openOverrideStore(sentinel.url, { keyPrefix: PREFIX, timeoutMs: 2000 }, () => undefined);
  const b = openOverrideStore(sentinel.url, { keyPrefix: PREFIX, timeoutMs: 50 }, () => undefined);
  try {
    assert.equal(await a.ready(5000), true);
    assert.equal(await b.ready(5000), true);
    const changed: Array<string | null> = [];
    b.onChange((k) => changed.push(k));
    await sleep(100);
    await a.set('s@example.org', { server: 'sentinel.example.org' });
    assert.deepEqual(await b.get('s@example.org'), { server: 'sentinel.example.org' });
    assert.equal(await redis.cli('GET', `${PREFIX}s@example.org`), '{"v":1,"server":"sentinel.example.org"}');
    await until('notification via Sentinel-found master', 1000, async () => (changed.includes('s@example.org') ? true : undefined));
  } finally {
    await a.close();
    await b.close();
    await sentinel.stop();
    await redis.cli('FLUSHALL');
  }
});

test('an answer fetched before its key changed is not kept, not even as the fallback while Redis is down', async () => {
  const writer = open(undefined, 2000);
  const s = open(undefined, 300);
  assert.equal(await writer.ready(3000), true);
  assert.equal(await s.ready(3000), true);
  await writer.set('race@example.org', { server: 'old.example.org' });
  const cache = new OverrideCache(s, { ttlMs: 60_000, maxEntries: 100, fallback: 'site', probeIntervalMs: 0 }, () => undefined);
  let inflight: Promise<CacheLookup>;
  redis.pause();
  try {
    inflight = cache.lookup('race@example.org'); // its GET waits in the stopped server
    cache.invalidate('race@example.org'); // what the admin's change notification does meanwhile
  } finally {
    redis.resume();
  }
  const first = await inflight;
  assert.deepEqual(first.ok && first.value, { server: 'old.example.org' }, 'the lookup begun before the change answers as it found');
  redis.pause();
  try {
    const r = await cache.lookup('race@example.org');
    assert.ok(!r.ok && r.fallback === 'site', `the fallback, not the replaced value: ${JSON.stringify(r)}`);
  } finally {
    redis.resume();
  }
  cache.close();
  await until('answers after SIGCONT', 2000, async () => (await s.get('x@example.org').then(() => true, () => false)) || undefined);
  await redis.cli('FLUSHALL');
});

test('redact hides the whole password, also one holding "@" or "/"', () => {
  assert.equal(redact('redis://:s3@cret@h:1'), 'redis://:***@h:1');
  assert.equal(redact('redis://user:p@ss/w@h:1/2'), 'redis://user:***@h:1/2');
  assert.equal(redact('redis+sentinel://u:se@cret@h:1,h:2/m'), 'redis+sentinel://u:***@h:1,h:2/m');
  assert.equal(redact('unix:///run/redis.sock?db=1'), 'unix:///run/redis.sock?db=1');
  assert.throws(() => parseRedisUrl('redis://:pa/ss@'), (e: Error) => !e.message.includes('ss'));
});

test('apply: all changes in one transaction, announced; an invalid value writes nothing', async () => {
  const s = open(undefined, 2000);
  const other = open();
  assert.equal(await s.ready(3000), true);
  assert.equal(await other.ready(3000), true);
  const heard: Array<string | null> = [];
  other.onChange((k) => heard.push(k));
  await sleep(100);
  await s.set('gone@example.org', { off: true });
  await s.apply([{ key: 'a@example.org', value: { server: 'a.example.org' } }, { key: 'gone@example.org', value: null }]);
  assert.deepEqual(await collect(s), { 'a@example.org': { server: 'a.example.org' } });
  await until('both changes announced', 1000, async () => (heard.includes('a@example.org') && heard.filter((k) => k === 'gone@example.org').length === 2 ? true : undefined));
  await assert.rejects(s.apply([{ key: 'b@example.org', value: { server: 'b.example.org' } }, { key: 'c@example.org', value: { server: 'ftp://x' } }]), OverrideDataError);
  assert.equal(await s.get('b@example.org'), null);
  assert.equal(s.atomic, true);
  await redis.cli('FLUSHALL');
});
