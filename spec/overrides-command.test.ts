// `overrides …` against a real redis-server on an ephemeral port: every command, idempotent import with
// its change report, export → import round trip, and every bad input refused with a named problem.
// In: runOverrides(argv, io) with captured stdout/stderr. Out: assertions on output and exit codes.
// Run: node --import tsx --test spec/overrides-command.test.ts

import { after, before, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, startRedis, type RedisServer } from './helpers/redis.js';
import { runOverrides } from '../lib/overrides-command.js';

let redis: RedisServer;
let dir: string;

before(async () => {
  redis = await startRedis();
  dir = await mkdtemp(join(tmpdir(), 'calfilter-overrides-'));
});
after(async () => {
  await redis?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});
beforeEach(async () => { await redis.cli('FLUSHALL'); });

async function run(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await runOverrides(args, { stdout: { write: (s: string) => (out += s) }, stderr: { write: (s: string) => (err += s) }, env });
  return { code, out, err };
}
const ov = (...args: string[]) => run(['--redis', redis.url, ...args]);
async function file(name: string, text: string): Promise<string> {
  const p = join(dir, name);
  await writeFile(p, text);
  return p;
}

test('set / get / unset / list, with normalised keys and change reports', async () => {
  assert.deepEqual(await ov('set', 'Alice@EXAMPLE.org', '--server', 'cal.example.org'), { code: 0, out: 'added Alice@example.org server=cal.example.org\n', err: '' });
  assert.equal((await ov('set', 'Alice@example.org', '--server', 'cal.example.org')).out, 'unchanged Alice@example.org server=cal.example.org\n');
  assert.equal((await ov('set', 'Alice@example.org', '--server', 'https://owa.example.org/owa')).out,
    'changed Alice@example.org server=https://owa.example.org/owa (was server=cal.example.org)\n');
  await ov('set', '@example.org', '--off');
  await ov('set', '@Bücher.example', '--url-template', 'https://cal.example.com/e?u={uid}');
  await ov('set', 'bob@example.org', '--server', 'b.example.org', '--url-template', 'https://{server}/x?u={uid}&t={token}');
  assert.deepEqual(await ov('get', 'alice@example.org'), { code: 1, out: '', err: 'overrides: no override for alice@example.org\n' });
  assert.equal((await ov('get', '@EXAMPLE.org')).out, '@example.org off\n');
  assert.equal((await ov('list')).out, [
    '@example.org off',
    'Alice@example.org server=https://owa.example.org/owa',
    'bob@example.org server=b.example.org url_template=https://{server}/x?u={uid}&t={token}',
    '@xn--bcher-kva.example url_template=https://cal.example.com/e?u={uid}',
  ].join('\n') + '\n');
  assert.deepEqual(await ov('unset', '@example.org'), { code: 0, out: 'removed @example.org\n', err: '' });
  assert.deepEqual(await ov('unset', '@example.org'), { code: 0, out: 'no override for @example.org (nothing to remove)\n', err: '' });
  assert.equal(await redis.cli('GET', 'calfilter:override:bob@example.org'), '{"v":1,"server":"b.example.org","urlTemplate":"https://{server}/x?u={uid}&t={token}"}');
});

test('Redis from CALFILTER_REDIS or from --config FILE (with its prefix and local_part_case)', async () => {
  assert.equal((await run(['set', 'a@example.org', '--off'], { CALFILTER_REDIS: redis.url })).code, 0);
  const cfg = await file('c.yaml', `redis: ${redis.url}\nredis_prefix: "site2:"\nlocal_part_case: lower\n`);
  assert.equal((await run(['--config', cfg, 'set', 'B@Example.org', '--server', 'x.example.org'])).out, 'added b@example.org server=x.example.org\n');
  assert.equal(await redis.cli('GET', 'site2:override:b@example.org'), '{"v":1,"server":"x.example.org"}');
  assert.equal((await run(['list'], { CALFILTER_REDIS: redis.url })).out, 'a@example.org off\n');
});

test('import CSV: idempotent, reports what changed, --dry-run writes nothing, --replace removes the rest', async () => {
  await ov('set', 'old@example.org', '--server', 'old.example.org');
  const csv = await file('o.csv', '\uFEFFkey,server,url_template,off\r\n' +
    'alice@example.org,a.example.org,,\r\n"@example.org",,"https://{server}/e?u={uid}",\r\n# a comment\r\n\r\ncarol@example.org,,,true\r\n');
  assert.deepEqual(await ov('import', csv, '--dry-run'), { code: 0, err: '', out:
    `added alice@example.org server=a.example.org\nadded @example.org url_template=https://{server}/e?u={uid}\nadded carol@example.org off\nwould import ${csv}: 3 added, 0 changed, 0 unchanged, 0 removed\n` });
  assert.equal((await ov('list')).out, 'old@example.org server=old.example.org\n');
  assert.match((await ov('import', csv)).out, /imported .*: 3 added, 0 changed, 0 unchanged, 0 removed\n$/);
  assert.deepEqual(await ov('import', csv), { code: 0, err: '', out: `imported ${csv}: 0 added, 0 changed, 3 unchanged, 0 removed\n` });
  const csv2 = await file('o2.csv', 'off,key,server\n,alice@example.org,a2.example.org\n,@example.org,\ntrue,carol@example.org,\n');
  // "@example.org" with no value at all is bad data: refused as a whole.
  const bad = await ov('import', csv2);
  assert.equal(bad.code, 65);
  assert.match(bad.err, /line 3: @example\.org: an override needs a server, a URL template, or off/);
  const csv3 = await file('o3.csv', 'off,key,server\n,alice@example.org,a2.example.org\n,@example.org,dom.example.org\ntrue,carol@example.org,\n');
  assert.deepEqual(await ov('import', csv3, '--replace'), { code: 0, err: '', out: [
    'changed alice@example.org: server a.example.org → a2.example.org',
    'changed @example.org: server (none) → dom.example.org; url_template https://{server}/e?u={uid} → (none)',
    'removed old@example.org',
    `imported ${csv3}: 0 added, 2 changed, 1 unchanged, 1 removed`,
  ].join('\n') + '\n' });
});

test('import JSON (array and object forms); export → import round trip', async () => {
  const arr = await file('a.json', JSON.stringify([{ key: 'a@example.org', server: 'a.example.org' }, { key: '@example.net', off: true }]));
  assert.match((await ov('import', arr)).out, /2 added/);
  const obj = await file('o.json', JSON.stringify({ 'b@example.org': { url_template: 'https://x.example.com/{uid}' }, '@example.net': { off: true } }));
  assert.match((await ov('import', obj)).out, /1 added, 0 changed, 1 unchanged/);
  const exported = await ov('export');
  assert.equal(exported.code, 0);
  assert.deepEqual(JSON.parse(exported.out), [
    { key: '@example.net', off: true },
    { key: 'a@example.org', server: 'a.example.org' },
    { key: 'b@example.org', urlTemplate: 'https://x.example.com/{uid}' },
  ]);
  const listed = (await ov('list')).out;
  const back = await file('e.json', exported.out);
  await redis.cli('FLUSHALL');
  assert.match((await ov('import', back)).out, /3 added, 0 changed, 0 unchanged, 0 removed/);
  assert.equal((await ov('list')).out, listed);
  assert.match((await ov('import', back)).out, /0 added, 0 changed, 3 unchanged/);
});

test('bad arguments are refused with the problem named and exit 64, before anything is written', async () => {
  const cases: Array<[string[], RegExp]> = [
    [['set', 'a@example.org', '--server', 'ftp://x.example.org'], /--server: .*"ftp:" is not http or https/],
    [['set', 'a@example.org', '--server', 'javascript:alert(1)'], /not http or https/],
    [['set', 'a@example.org', '--url-template', 'gopher://x.example.org/{uid}'], /--url-template: .*http/],
    [['set', 'a@example.org', '--url-template', 'https://{server}/{nope}'], /unknown placeholder \{nope\}/],
    [['set', 'a@example.org', '--server', 'cal.example.org\r\nX-Evil: 1'], /control characters/],
    [['set', 'a@example.org', '--url-template', 'https://{server}/a\nb'], /control characters/],
    [['set', 'a\n@example.org', '--off'], /control characters/],
    [['set', 'not-an-address', '--off'], /"not-an-address" is not a valid address/],
    [['set', 'a@exa mple.org', '--off'], /not a valid address: bad domain/],
    [['set', '@-bad-.example', '--off'], /not a valid @DOMAIN/],
    [['set', 'a..b@example.org', '--off'], /bad local part/],
    [['set', 'a@example.org', '--server', 'x.example.org', '--off'], /--off cannot be combined/],
    [['set', 'a@example.org'], /needs --server HOST, --url-template T, or --off/],
    [['set', 'a@example.org', '--frobnicate'], /unknown option --frobnicate/],
    [['set', 'a@example.org', '--server'], /--server needs a value/],
    [['set', 'a@example.org', '--off', '--off'], /--off given twice/],
    [['get', 'a@example.org', '--off'], /--off does not apply to "get"/],
    [['get'], /"get" needs ADDRESS or @DOMAIN/],
    [['get', 'a@example.org', 'b@example.org'], /takes one argument/],
    [['list', 'extra'], /"list" takes no arguments/],
    [['frob'], /unknown command "frob"/],
    [[], /no command given/],
  ];
  for (const [args, why] of cases) {
    const r = await ov(...args);
    assert.equal(r.code, 64, `${JSON.stringify(args)} → ${r.code} ${r.err}`);
    assert.match(r.err, why, JSON.stringify(args));
    assert.equal(r.out, '');
  }
  assert.equal(await redis.cli('DBSIZE'), '0');
  const badUrl = await run(['--redis', 'http://x.example', 'list']);
  assert.equal(badUrl.code, 64);
  assert.match(badUrl.err, /--redis: unsupported Redis URL http:\/\/x\.example/);
});

test('bad data in an import file exits 65 naming each line; nothing is imported', async () => {
  await ov('set', 'keep@example.org', '--off');
  const csv = await file('bad.csv', 'key,server,url_template,off\n' +
    'ok@example.org,ok.example.org,,\nbad@example.org,ftp://x,,\nnot an address,x.example.org,,\n' +
    'c@example.org,,,maybe\nok@EXAMPLE.org,other.example.org,,\ne@example.org,"x.example.org\r\nX: y",,\n');
  const r = await ov('import', csv);
  assert.equal(r.code, 65);
  for (const m of [/5 bad entries, nothing imported/, /line 3: bad@example\.org: server: .*"ftp:"/, /line 4: "not an address" is not a valid address/,
    /line 5: c@example\.org: off must be true or false/, /line 6: ok@example\.org is already given at line 2/, /line 7: e@example\.org: the server .* control characters/]) {
    assert.match(r.err, m);
  }
  assert.equal((await ov('list')).out, 'keep@example.org off\n');
  for (const [text, m] of [['{"a@example.org": 1', /not valid JSON/], ['[{"key":"a@example.org","sever":"x.example.org"}]', /entry 1: unknown field "sever"/],
    ['[42]', /entry 1: expected an object/], ['', /is empty/], ['address,host\n', /CSV header must name the columns/]] as const) {
    const res = await ov('import', await file('x.data', text));
    assert.equal(res.code, 65, text);
    assert.match(res.err, m);
  }
  const missing = await ov('import', join(dir, 'nope.csv'));
  assert.equal(missing.code, 66);
  assert.match(missing.err, /cannot read .*nope\.csv: ENOENT/);
});

test('no Redis configured, Redis unreachable, bad config file: clear refusals', async () => {
  const none = await run(['list']);
  assert.equal(none.code, 64);
  assert.match(none.err, /no Redis configured: give --redis URL/);
  const port = await freePort();
  const t0 = Date.now();
  const down = await run(['--redis', `redis://127.0.0.1:${port}`, 'list']);
  assert.equal(down.code, 69);
  assert.match(down.err, new RegExp(`cannot reach Redis at redis://127\\.0\\.0\\.1:${port}`));
  assert.ok(Date.now() - t0 < 5000);
  const cfg = await file('bad.yaml', 'redis: redis://127.0.0.1:1\nno_such_key: 1\n');
  const badCfg = await run(['--config', cfg, 'list']);
  assert.equal(badCfg.code, 78);
  assert.match(badCfg.err, /unknown configuration key "no_such_key"/);
  const pw = await run(['--redis', `redis://:s3cret@127.0.0.1:${port}`, 'list']);
  assert.equal(pw.code, 69);
  assert.ok(!pw.err.includes('s3cret'), 'the password is never printed');
});

test('an override too long to store or to ever make a link is bad input: set exits 64, import 65, nothing written', async () => {
  const huge = `https://{server}/e?u=${'{uid}'.repeat(900)}`;
  const r = await ov('set', 'a@example.org', '--url-template', huge);
  assert.equal(r.code, 64, r.err);
  assert.match(r.err, /too long/);
  const literal = await ov('set', 'a@example.org', '--url-template', `https://{server}/${'a'.repeat(1000)}`);
  assert.equal(literal.code, 64, literal.err);
  assert.match(literal.err, /--url-template: .*longer than/);
  const csv = await file('long.csv', `key,server,url_template\nfirst@example.org,a.example.org,\nsecond@example.org,,${huge}\n`);
  const imp = await ov('import', csv);
  assert.equal(imp.code, 65, imp.err);
  assert.match(imp.err, /line 3: second@example\.org: .*too long/);
  assert.equal(await redis.cli('DBSIZE'), '0');
});

test('a bad ADDRESS is refused (64) before Redis is asked, even when Redis is down', async () => {
  const port = await freePort();
  for (const cmd of ['get', 'unset']) {
    const r = await run(['--redis', `redis://127.0.0.1:${port}`, cmd, 'not-an-address']);
    assert.equal(r.code, 64, `${cmd}: ${r.code} ${r.err}`);
    assert.match(r.err, /"not-an-address" is not a valid address/);
  }
  const s = await run(['--redis', `redis://127.0.0.1:${port}`, 'set', '@-bad-.example', '--off']);
  assert.equal(s.code, 64, s.err);
  assert.match(s.err, /not a valid @DOMAIN/);
});

test('a flag whose value is missing does not take the next option as its value', async () => {
  const r = await ov('set', 'a@example.org', '--server', '--off');
  assert.equal(r.code, 64);
  assert.match(r.err, /--server needs a value/);
  assert.equal((await ov('set', 'a@example.org', '--url-template=--x')).code, 64, '--flag=VALUE still passes a value starting with --');
});

test('import field names: unknown ones are refused even when they name Object properties; aliases in any case count once', async () => {
  const refused: Array<[string, RegExp]> = [
    ['[{"key":"a@example.org","server":"x.example.org","constructor":"y"}]', /entry 1: unknown field "constructor"/],
    ['{"a@example.org":{"server":"x.example.org","toString":"y"}}', /unknown field "toString"/],
    ['[{"key":"a@example.org","url_template":"https://{server}/a","urlTemplate":"https://{server}/b","server":"x.example.org"}]', /entry 1: .*url_template.* given twice/],
    ['key,server,constructor\na@example.org,x.example.org,y\n', /CSV header must name the columns/],
    ['key,server,server\na@example.org,x.example.org,y.example.org\n', /line 1: .*"server" given twice/],
    ['key,server\nc@example.org,"z.example.org\n', /line 2: a quoted field is not closed/],
  ];
  for (const [text, why] of refused) {
    const r = await ov('import', await file('f.data', text));
    assert.equal(r.code, 65, `${text} → ${r.code} ${r.out}`);
    assert.match(r.err, why, text);
  }
  assert.equal(await redis.cli('DBSIZE'), '0');
  // a JSON field written as a CSV header would be (any case, url_template or urltemplate) is used, not dropped
  const j = await file('ok.json', '[{"Key":"b@example.org","SERVER":"x.example.org","URL_TEMPLATE":"https://{server}/e?u={uid}"},{"key":"c@example.org","urltemplate":"https://c.example.org/{uid}"}]');
  assert.equal((await ov('import', j)).code, 0);
  assert.equal((await ov('list')).out, 'b@example.org server=x.example.org url_template=https://{server}/e?u={uid}\nc@example.org url_template=https://c.example.org/{uid}\n');
});

test('a quoted CSV key starting with "#" is data, not a comment', async () => {
  const csv = await file('hash.csv', 'key,server\n# a comment\n"#team@example.org",t.example.org\n');
  const r = await ov('import', csv);
  assert.equal(r.code, 0, r.err);
  assert.equal((await ov('list')).out, '#team@example.org server=t.example.org\n');
});

test('an import that Redis refuses part-way writes nothing (one transaction) and says so', async () => {
  // A user that may write only keys starting with "a": the third row is refused (NOPERM).
  await redis.cli('ACL', 'SETUSER', 'limited', 'on', '>limitedpw', '~calfilter:override:a*', '&*', '+@all');
  try {
    const csv = await file('part.csv', 'key,server\na1@example.org,a.example.org\na2@example.org,a.example.org\nb@example.org,b.example.org\na3@example.org,a.example.org\n');
    const r = await run(['--redis', redis.url.replace('redis://', 'redis://limited:limitedpw@'), 'import', csv]);
    assert.equal(r.code, 75, `${r.code} ${r.out} ${r.err}`);
    assert.match(r.err, /Redis failed.*nothing imported/s);
    assert.equal(r.out, '', 'no change is reported as made');
    assert.equal(await redis.cli('DBSIZE'), '0', 'nothing half-written');
  } finally {
    await redis.cli('ACL', 'DELUSER', 'limited');
  }
});
