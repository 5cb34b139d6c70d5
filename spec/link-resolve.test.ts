// Per-recipient link resolution: precedence, off, local vs external, normalisation, fallbacks.
// In: the real in-memory store and cache (no Redis needed here), a config from loadConfig.
// Out: assertions on LinkResolution per recipient. Run: node --import tsx --test spec/link-resolve.test.ts

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadConfig } from '../lib/config.js';
import { HookRegistry, type App, type LinksInput } from '../lib/hooks.js';
import type { Classification } from '../lib/types.js';
import linkResolve, { closeLinkResolve, decideLink, linkResolveState, resolveLinks, resolveLinksNow, resolveSettings } from '../hooks/link-resolve.js';
import { MemoryOverrideStore } from '../lib/override-store.js';
import { OverrideCache } from '../lib/override-cache.js';
import type { Override } from '../lib/override-model.js';
import { normaliseDomain, recipientKeys, parseOverrideKey } from '../lib/override-model.js';
import { verifyToken, parseSecret } from '../lib/token.js';

const SECRET = 'a'.repeat(64);
const classification: Classification = {
  kind: 'meeting', method: 'REQUEST', tnefClass: null, source: 'imip', calendarPart: 1, footer: true, reason: 'test',
  calendar: { method: 'REQUEST', component: 'VEVENT', uid: 'uid-1@x', recurrenceId: null, sequence: 2, summary: 'S', start: null, end: null, organizer: null, warnings: [] },
};
const input = (...to: string[]): LinksInput => ({ classification, envelope: { from: 'o@example.org', to: to.map((address) => ({ address })) }, messageId: 'm1@x' });

async function resolver(flags: Record<string, unknown>, overrides: Record<string, Override>) {
  const config = loadConfig({ flags: { web_server: 'site.example.org', ...flags } });
  const settings = resolveSettings(config);
  const store = new MemoryOverrideStore();
  for (const [k, v] of Object.entries(overrides)) await store.set(k, v);
  const cache = new OverrideCache(store, { ttlMs: 5000, maxEntries: 100, fallback: 'site' }, () => undefined);
  const asked: string[] = [];
  return async (...to: string[]) => resolveLinks(input(...to), (k) => { asked.push(k); return cache.lookup(k); }, settings).then((r) => ({ r, asked }));
}

const OVERRIDES: Record<string, Override> = {
  'alice@example.org': { server: 'alice.example.net' },
  '@example.org': { server: 'dom.example.net' },
  'carol@example.org': { off: true },
  '@quiet.example': { off: true },
  'dave@quiet.example': { server: 'dave.example.net' },
  'Erin@example.org': { urlTemplate: 'https://fixed.example.com/v?u={uid}' },
  'bob@example.org': { server: 'bob.example.net' },
  'bob+x@example.org': { server: 'bobx.example.net' },
  '@xn--bcher-kva.example': { server: 'idn.example.net' },
};

// [case, flags, recipient, expected source, expected server (or null), url prefix or null]
const CASES: Array<[string, Record<string, unknown>, string, string, string | null, string | null]> = [
  ['recipient override wins over domain', {}, 'alice@example.org', 'recipient', 'alice.example.net', 'https://alice.example.net/calendar/event?uid=uid-1%40x'],
  ['domain override', {}, 'zed@example.org', 'domain', 'dom.example.net', 'https://dom.example.net/'],
  ['site default', {}, 'someone@site.example', 'site', 'site.example.org', 'https://site.example.org/'],
  ['recipient off beats domain server', {}, 'carol@example.org', 'off', null, null],
  ['domain off', {}, 'x@quiet.example', 'off', null, null],
  ['recipient server beats domain off', {}, 'dave@quiet.example', 'recipient', 'dave.example.net', 'https://dave.example.net/'],
  ['template-only override keeps the site server', {}, 'Erin@example.org', 'recipient', 'site.example.org', 'https://fixed.example.com/v?u=uid-1%40x'],
  ['domain is case-insensitive', {}, 'alice@EXAMPLE.Org', 'recipient', 'alice.example.net', 'https://alice.example.net/'],
  ['angle brackets are ignored', {}, '<alice@example.org>', 'recipient', 'alice.example.net', 'https://alice.example.net/'],
  ['local part preserved: erin ≠ Erin', {}, 'erin@example.org', 'domain', 'dom.example.net', 'https://dom.example.net/'],
  ['local_part_case=lower: ALICE finds alice', { local_part_case: 'lower' }, 'ALICE@example.org', 'recipient', 'alice.example.net', 'https://alice.example.net/'],
  ['IDN U-label finds the A-label key', {}, 'u@Bücher.example', 'domain', 'idn.example.net', 'https://idn.example.net/'],
  ['delimiter off: bob+y is not bob', {}, 'bob+y@example.org', 'domain', 'dom.example.net', 'https://dom.example.net/'],
  ['delimiter +: bob+y finds bob', { recipient_delimiter: '+' }, 'bob+y@example.org', 'recipient', 'bob.example.net', 'https://bob.example.net/'],
  ['delimiter +: exact bob+x wins', { recipient_delimiter: '+' }, 'bob+x@example.org', 'recipient', 'bobx.example.net', 'https://bobx.example.net/'],
  ['delimiters -+: bob-y finds bob', { recipient_delimiter: '-+' }, 'bob-y@example.org', 'recipient', 'bob.example.net', 'https://bob.example.net/'],
  ['external recipient: no footer', { local_domains: 'example.org' }, 'ext@other.net', 'external', null, null],
  ['external even with an override for its domain', { local_domains: 'example.org' }, 'x@quiet.example', 'external', null, null],
  ['local domain listed', { local_domains: 'example.org,quiet.example' }, 'zed@example.org', 'domain', 'dom.example.net', 'https://dom.example.net/'],
  ['local domain match is case-insensitive', { local_domains: 'Example.ORG' }, 'zed@example.org', 'domain', 'dom.example.net', 'https://dom.example.net/'],
  ['".dom" covers subdomains', { local_domains: '.site.example' }, 'a@eu.site.example', 'site', 'site.example.org', 'https://site.example.org/'],
  ['"dom" does not cover subdomains', { local_domains: 'site.example' }, 'a@eu.site.example', 'external', null, null],
  ['external_recipients opts in', { local_domains: 'example.org', external_recipients: true }, 'ext@other.net', 'site', 'site.example.org', 'https://site.example.org/'],
  ['empty local_domains: everyone is local', {}, 'ext@other.net', 'site', 'site.example.org', 'https://site.example.org/'],
  ['no web_server: no footer by default', { web_server: '' }, 'someone@site.example', 'site', null, null],
  ['no web_server but an override server', { web_server: '' }, 'alice@example.org', 'recipient', 'alice.example.net', 'https://alice.example.net/'],
];

for (const [name, flags, rcpt, source, server, url] of CASES) {
  test(`resolution: ${name}`, async () => {
    const { r } = await (await resolver(flags, OVERRIDES))(rcpt);
    assert.equal(r.length, 1);
    assert.equal(r[0]!.recipient, rcpt);
    assert.equal(r[0]!.source, source, JSON.stringify(r[0]));
    assert.equal(r[0]!.server, server);
    if (url === null) assert.equal(r[0]!.url, null);
    else assert.ok(r[0]!.url?.startsWith(url), `${r[0]!.url} should start with ${url}`);
  });
}

test('one resolution per recipient, in envelope order; each key looked up once', async () => {
  const run = await resolver({ local_domains: 'example.org' }, OVERRIDES);
  const { r, asked } = await run('zed@example.org', 'alice@example.org', 'ext@other.net', 'yan@example.org');
  assert.deepEqual(r.map((x) => [x.recipient, x.source]), [['zed@example.org', 'domain'], ['alice@example.org', 'recipient'], ['ext@other.net', 'external'], ['yan@example.org', 'domain']]);
  assert.equal(asked.filter((k) => k === '@example.org').length, 1);
  assert.ok(!asked.some((k) => k.includes('other.net')), 'external recipients are not looked up');
});

test('link values: calendar facts and recipient are URL-encoded; {token} minted only with link_secret', async () => {
  const tpl = 'https://{server}/v?r={recipient}&m={messageId}&t={token}';
  const run = await resolver({ link_secret: SECRET, url_template: tpl }, {});
  const { r } = await run('a+b@site.example');
  const url = new URL(r[0]!.url!);
  assert.equal(url.searchParams.get('r'), 'a+b@site.example');
  const token = url.searchParams.get('t')!;
  assert.ok(verifyToken(token, { k1: parseSecret(SECRET) }, { recipient: 'a+b@site.example', uid: 'uid-1@x' }).ok);
  assert.ok(!JSON.stringify(r[0]).includes(token) || r[0]!.url!.includes(token), 'token only inside the url');
  assert.equal(r[0]!.server, 'site.example.org');
  // An override template with {token} and no secret cannot be built: that recipient gets no footer.
  const noSecret = await resolver({}, { '@site.example': { urlTemplate: tpl } });
  const { r: r2 } = await noSecret('a@site.example');
  assert.equal(r2[0]!.source, 'error');
  assert.equal(r2[0]!.url, null);
});

test('a site template with {token} but no link_secret stops the start', () => {
  assert.throws(() => resolveSettings(loadConfig({ flags: { url_template: 'https://{server}/x?t={token}' } })), /token/);
  assert.throws(() => resolveSettings(loadConfig({ flags: { web_server: 'ftp://x.example' } })), /web_server/);
});

test('fallback when the store fails and nothing is cached: site, none, tempfail; stale values are used', () => {
  const settings = resolveSettings(loadConfig({ flags: { web_server: 'site.example.org' } }));
  const keys = recipientKeys('a@example.org', settings.keys).keys;
  const fail = (fallback: 'site' | 'none' | 'tempfail') => keys.map((k) => ({ ...k, result: { ok: false as const, fallback, error: 'down' } }));
  const site = decideLink('a@example.org', fail('site'), input('a@example.org'), settings);
  assert.equal(site.source, 'fallback');
  assert.ok(site.url?.startsWith('https://site.example.org/'));
  assert.deepEqual([decideLink('a@example.org', fail('none'), input(), settings)].map((d) => [d.source, d.url]), [['fallback', null]]);
  assert.deepEqual([decideLink('a@example.org', fail('tempfail'), input(), settings)].map((d) => [d.source, d.url]), [['tempfail', null]]);
  // The recipient key is known (stale), so the failing domain key does not matter.
  const stale = decideLink('a@example.org', [
    { ...keys[0]!, result: { ok: true, value: { server: 'old.example.net' }, stale: true, from: 'cache' } },
    { ...keys[1]!, result: { ok: false, fallback: 'tempfail', error: 'down' } },
  ], input(), settings);
  assert.deepEqual([stale.source, stale.server, stale.stale], ['recipient', 'old.example.net', true]);
  // The recipient key is known absent, the domain key unknown: the answer is uncertain → fallback.
  const unsure = decideLink('a@example.org', [
    { ...keys[0]!, result: { ok: true, value: null, stale: true, from: 'cache' } },
    { ...keys[1]!, result: { ok: false, fallback: 'none', error: 'down' } },
  ], input(), settings);
  assert.equal(unsure.source, 'fallback');
});

test('admin keys: strict validation and the same normalisation as lookups', () => {
  const opts = { localPartCase: 'preserve' as const, recipientDelimiter: '' };
  assert.deepEqual(parseOverrideKey('Alice@Example.ORG', opts), { key: 'Alice@example.org', kind: 'recipient' });
  assert.deepEqual(parseOverrideKey('@Bücher.example', opts), { key: '@xn--bcher-kva.example', kind: 'domain' });
  assert.deepEqual(parseOverrideKey('"john doe"@example.org', opts), { key: '"john doe"@example.org', kind: 'recipient' });
  for (const bad of ['', 'nobody', '@', 'a@', 'a@b@', 'a..b@example.org', 'a@exa mple.org', 'a@-x.org', 'a\r\n@example.org', '<a@example.org>', 'a@example.org\n']) {
    assert.ok('error' in parseOverrideKey(bad, opts), `should refuse ${JSON.stringify(bad)}`);
  }
});

test('hook init: registers on message:links, logs config.all_local once, closes its store', async () => {
  const logs: string[] = [];
  const config = loadConfig({ flags: { web_server: 'site.example.org' } });
  const app: App = { config, log: (e) => logs.push(e), hooks: new HookRegistry(1000) };
  await linkResolve.init(app);
  assert.equal(logs.filter((e) => e === 'config.all_local').length, 1);
  const st = linkResolveState(app)!;
  assert.equal(st.store.kind, 'memory');
  await st.store.set('@example.org', { off: true });
  const r = await app.hooks.first('message:links', input('a@example.org', 'b@site.example'));
  assert.deepEqual(r!.map((x) => x.source), ['off', 'site']);
  await closeLinkResolve(app);
  assert.equal(linkResolveState(app), undefined);

  const logs2: string[] = [];
  const app2: App = { config: loadConfig({ flags: { local_domains: 'example.org' } }), log: (e) => logs2.push(e), hooks: new HookRegistry(1000) };
  await linkResolve.init(app2);
  assert.ok(!logs2.includes('config.all_local'));
  await closeLinkResolve(app2);
});

test('recipients whose keys are all cached are resolved at once, as resolveLinks resolves them', async () => {
  const settings = resolveSettings(loadConfig({ flags: { web_server: 'site.example.org', local_domains: 'example.org,quiet.example', recipient_delimiter: '+' } }));
  const store = new MemoryOverrideStore();
  for (const [k, v] of Object.entries(OVERRIDES)) await store.set(k, v);
  const options = { ttlMs: 60_000, maxEntries: 100, fallback: 'site' as const };
  const quick = new OverrideCache(store, options, () => undefined);
  const general = new OverrideCache(store, options, () => undefined);
  const to = input('alice@example.org', 'zed@example.org', 'carol@example.org', 'bob+y@example.org', 'ext@other.net', 'x@quiet.example', 'zed@example.org');
  const expected = await resolveLinks(to, (k) => general.lookup(k), settings);
  const cold = resolveLinksNow(to, (k) => quick.answer(k), settings);
  assert.ok(cold instanceof Promise, 'keys not cached yet: the store is asked');
  assert.deepEqual(await cold, expected);
  const warm = resolveLinksNow(to, (k) => quick.answer(k), settings);
  assert.ok(Array.isArray(warm), 'every key cached: answered at once');
  assert.deepEqual(warm, expected);
  assert.deepEqual(await resolveLinks(to, (k) => general.lookup(k), settings), expected, 'the general path, from its cache');
});

test('cache answer(): at once for a fresh entry or while the store is down, else what lookup() gives', async () => {
  const store = new MemoryOverrideStore();
  await store.set('a@example.org', { server: 'a.example.net' });
  const options = { ttlMs: 60_000, maxEntries: 100, fallback: 'none' as const };
  const quick = new OverrideCache(store, options, () => undefined);
  const general = new OverrideCache(store, options, () => undefined);
  for (const key of ['a@example.org', 'b@example.org']) {
    const first = quick.answer(key);
    assert.ok(first instanceof Promise, key);
    assert.deepEqual(await first, await general.lookup(key));
    const again = quick.answer(key);
    assert.ok(!(again instanceof Promise), key);
    assert.deepEqual(again, await general.lookup(key));
  }
  // The store fails: the first asking finds out, the next ones (no probe due yet) are answered at once.
  store.get = async () => { throw new Error('down'); };
  for (const c of [quick, general]) c.invalidate(null);
  assert.deepEqual(await quick.answer('c@example.org'), await general.lookup('c@example.org'));
  for (const key of ['a@example.org', 'c@example.org']) {
    const now = quick.answer(key);
    assert.ok(!(now instanceof Promise), key);
    assert.deepEqual(now, await general.lookup(key));
  }
  quick.close();
  general.close();
});

test('a domain normalised before is answered as it was the first time, also after the memo was emptied', () => {
  const cases: Array<[string, string | null]> = [
    ['Example.ORG', 'example.org'], ['example.org.', 'example.org'], [' Bücher.example ', 'xn--bcher-kva.example'], ['XN--BCHER-KVA.example', 'xn--bcher-kva.example'],
    ['', null], ['exa mple.org', null], ['-x.org', null], ['a\r\nb.org', null], ['x'.repeat(64) + '.org', null],
  ];
  for (let round = 0; round < 3; round++) {
    for (const [domain, expected] of cases) assert.equal(normaliseDomain(domain), expected, `${JSON.stringify(domain)}, round ${round}`);
    // enough other domains to fill the memo (bounded at 1000): the next round starts from an empty one
    if (round === 1) for (let i = 0; i < 1100; i++) assert.equal(normaliseDomain(`d${i}.Example`), `d${i}.example`);
  }
});

test('1000 recipients, nothing cached, a healthy Redis: every lookup is answered, none meets the fallback (default redis_timeout_ms)', async (t) => {
  const { startRedis } = await import('./helpers/redis.js');
  const redis = await startRedis();
  t.after(() => redis.stop());
  const logs: Array<[string, Record<string, unknown> | undefined]> = [];
  const config = loadConfig({ flags: { web_server: 'site.example.org', redis: redis.url, redis_fallback: 'tempfail', recipient_delimiter: '+' } });
  assert.equal(config.redis_timeout_ms, 50);
  const app: App = { config, log: (e, f) => logs.push([e, f]), hooks: new HookRegistry(config.hook_timeout) };
  await linkResolve.init(app);
  t.after(() => closeLinkResolve(app));
  await linkResolveState(app)!.store.set('u7@d7.example.org', { server: 'u7.example.net' });
  // 1000 recipients in 50 domains, each with a tag: 2050 distinct keys, none cached
  const to = Array.from({ length: 1000 }, (_, i) => `u${i}+t@d${i % 50}.example.org`);
  const r = await app.hooks.first('message:links', input(...to));
  assert.equal(r!.length, 1000);
  const sources: Record<string, number> = {};
  for (const x of r!) sources[x.source] = (sources[x.source] ?? 0) + 1;
  assert.deepEqual(sources, { site: 999, recipient: 1 }, 'a healthy Redis must not look down because one message has many recipients');
  assert.equal(r![7]!.server, 'u7.example.net');
  assert.ok(!logs.some(([e]) => e === 'redis.down'), 'no redis.down');
});

test('a recipient listed twice gets one link (one snapshot, one copy), also with web_view', async (t) => {
  const { startRedis } = await import('./helpers/redis.js');
  const { TEST_KEYS } = await import('./helpers/web-fixtures.js');
  const redis = await startRedis();
  t.after(() => redis.stop());
  const config = loadConfig({ flags: { web_server: 'site.example.org', redis: redis.url, web_view: true, web_base_url: 'https://cal.example.org', ...TEST_KEYS } });
  const app: App = { config, log: () => undefined, hooks: new HookRegistry(config.hook_timeout) };
  await linkResolve.init(app);
  t.after(() => closeLinkResolve(app));
  const r = await app.hooks.first('message:links', { ...input('x@example.org', 'y@example.org', 'x@example.org'), headers: [], structure: { parts: [], size: 0, damaged: false } });
  assert.deepEqual(r!.map((x) => [x.recipient, x.source]), [['x@example.org', 'web-view'], ['y@example.org', 'web-view'], ['x@example.org', 'web-view']]);
  assert.equal(r![0]!.url, r![2]!.url, 'the same recipient twice: the same link, so the same body and one transaction');
  assert.notEqual(r![0]!.url, r![1]!.url);
});
