// The command line's contract: bad flags and bad values stop the start with a message naming
// them and a sysexits code; the config table, file and environment layer as documented.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ConfigError, describeConfig, loadConfig } from '../lib/config.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const TMP = mkdtempSync(join(tmpdir(), 'calfilter-cfg-'));
after(() => rmSync(TMP, { recursive: true, force: true }));
const run = (args: string[], env: Record<string, string> = {}, input?: Buffer) =>
  spawnSync(process.execPath, ['--import', 'tsx', 'bin/calendar-link-filter.ts', ...args], { cwd: ROOT, env: { ...process.env, ...env }, input, timeout: 30_000 });

test('config: defaults, then file, then environment, then flags', () => {
  const dir = TMP;
  const file = join(dir, 'c.yaml');
  writeFileSync(file, 'max_recipients: 10\nweb_server: file.example\nlocal_domains: [a.example, b.example]\n');
  const c = loadConfig({ file, env: { CALFILTER_WEB_SERVER: 'env.example', CALFILTER_MAX_RECIPIENTS: '20' }, flags: { max_recipients: '30' } });
  assert.equal(c.listen, '127.0.0.1:10025');
  assert.equal(c.web_server, 'env.example');
  assert.equal(c.max_recipients, 30);
  assert.deepEqual(c.local_domains, ['a.example', 'b.example']);
  const j = join(dir, 'c.json');
  writeFileSync(j, JSON.stringify({ lmtp: true, allowed_clients: '10.0.0.0/8' }));
  const cj = loadConfig({ file: j });
  assert.equal(cj.lmtp, true);
  assert.deepEqual(cj.allowed_clients, ['10.0.0.0/8']);
});

const bad: Array<[string, () => unknown, RegExp]> = [
  ['unknown key in a file', () => { writeFileSync(join(TMP, 'x.yaml'), 'lisen: 1\n'); return loadConfig({ file: join(TMP, 'x.yaml') }); }, /unknown configuration key "lisen"/],
  ['unknown environment key', () => loadConfig({ env: { CALFILTER_NOPE: '1' } }), /unknown configuration key "nope" \(from environment CALFILTER_NOPE\)/],
  ['size below the minimum', () => loadConfig({ flags: { max_message_size: '10' } }), /max_message_size.*below the minimum/],
  ['not a number', () => loadConfig({ flags: { max_recipients: 'many' } }), /max_recipients.*whole number/],
  ['bad boolean', () => loadConfig({ flags: { lmtp: 'perhaps' } }), /lmtp.*true or false/],
  ['bad next hop', () => loadConfig({ flags: { next_hop: 'http://x' } }), /next_hop.*smtp:\/\//],
  ['bad CIDR', () => loadConfig({ flags: { allowed_clients: '127.0.0.0/8,not-an-ip' } }), /allowed_clients.*not-an-ip/],
  ['bad listen', () => loadConfig({ flags: { listen: 'localhost' } }), /listen.*HOST:PORT/],
];
for (const [name, fn, re] of bad) {
  test(`config refuses: ${name}`, () => {
    assert.throws(fn, (e: unknown) => e instanceof ConfigError && re.test((e as Error).message));
  });
}

test('CLI: unknown flag → exit 64 naming it; bad value → exit 78 naming it; unknown command → 64', () => {
  const a = run(['serve', '--listne', '127.0.0.1:1']);
  assert.equal(a.status, 64);
  assert.match(a.stderr.toString(), /unknown option --listne/);
  const b = run(['serve', '--max-message-size', '12']);
  assert.equal(b.status, 78);
  assert.match(b.stderr.toString(), /max_message_size/);
  const c = run(['serve'], { CALFILTER_LISTEN: 'nowhere' });
  assert.equal(c.status, 78);
  assert.match(c.stderr.toString(), /environment CALFILTER_LISTEN/);
  const d = run(['frobnicate']);
  assert.equal(d.status, 64);
  assert.match(d.stderr.toString(), /unknown command "frobnicate"/);
  const e = run(['serve', '--config', '/nonexistent/calfilter.yaml']);
  assert.equal(e.status, 78);
  assert.match(e.stderr.toString(), /cannot read config file/);
});

test('README config table is exactly what `config --markdown` prints', () => {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const table = run(['config', '--markdown']);
  assert.equal(table.status, 0);
  const block = readme.slice(readme.indexOf('<!-- config-table:start -->\n') + '<!-- config-table:start -->\n'.length, readme.indexOf('<!-- config-table:end -->'));
  assert.equal(block, table.stdout.toString(), 'regenerate with: node --import tsx bin/calendar-link-filter.ts config --markdown');
  for (const row of describeConfig()) assert.ok(block.includes(`| \`${row.key}\` |`), `README lists ${row.key}`);
});

// --- review regressions: values kept as written, unknown keys always named, bounds that the start checks ---

test('config file: a number written for a string key is kept as written (YAML), or refused when it cannot be (JSON)', () => {
  const y = join(TMP, 'strings.yaml');
  const digits = '1234567890123456789012345678901234567890123456';
  writeFileSync(y, `link_key_id: 007\nlink_secret: ${digits}\nweb_server: 1e3\nlocal_domains: [007]\n`);
  const c = loadConfig({ file: y });
  assert.equal(c.link_key_id, '007');
  assert.equal(c.link_secret, digits, 'the secret is the text in the file, not a float rendering of it');
  assert.equal(c.web_server, '1e3');
  assert.deepEqual(c.local_domains, ['007']);
  // numbers still work for numeric keys
  writeFileSync(y, 'max_recipients: 12\n');
  assert.equal(loadConfig({ file: y }).max_recipients, 12);
  const j = join(TMP, 'strings.json');
  writeFileSync(j, '{"link_secret": 12345678901234567890123456789012345678901234567890}');
  assert.throws(() => loadConfig({ file: j }), (e: unknown) => e instanceof ConfigError && /link_secret/.test((e as Error).message) && /string/.test((e as Error).message));
});

test('config refuses keys that only exist on Object.prototype (file, environment)', () => {
  const y = join(TMP, 'proto.yaml');
  for (const key of ['constructor', 'toString', 'valueOf', '__proto__']) {
    writeFileSync(y, `${key}: 1\n`);
    assert.throws(() => loadConfig({ file: y }), (e: unknown) => e instanceof ConfigError && (e as Error).message.includes(`unknown configuration key "${key}"`), `file key ${key}`);
  }
  const j = join(TMP, 'proto.json');
  writeFileSync(j, '{"__proto__": {"web_server": "x"}}');
  assert.throws(() => loadConfig({ file: j }), (e: unknown) => e instanceof ConfigError && /unknown configuration key "__proto__"/.test((e as Error).message));
  assert.throws(() => loadConfig({ env: { CALFILTER_CONSTRUCTOR: '1' } }), (e: unknown) => e instanceof ConfigError && /unknown configuration key "constructor" \(from environment CALFILTER_CONSTRUCTOR\)/.test((e as Error).message));
});

test('config refuses list items that are not strings (null, mappings) instead of turning them into "null"', () => {
  const y = join(TMP, 'list.yaml');
  writeFileSync(y, 'footer_methods: [REQUEST, ~]\n');
  assert.throws(() => loadConfig({ file: y }), (e: unknown) => e instanceof ConfigError && /footer_methods/.test((e as Error).message));
  writeFileSync(y, 'hooks: [{calendar-classify: 1}]\n');
  assert.throws(() => loadConfig({ file: y }), (e: unknown) => e instanceof ConfigError && /hooks/.test((e as Error).message));
});

test('config refuses ports above 65535 and addresses that are not IP addresses, naming the key', () => {
  assert.throws(() => loadConfig({ flags: { listen: '127.0.0.1:99999' } }), (e: unknown) => e instanceof ConfigError && /listen.*99999/.test((e as Error).message));
  assert.throws(() => loadConfig({ flags: { next_hop: 'smtp://127.0.0.1:70000' } }), (e: unknown) => e instanceof ConfigError && /next_hop.*70000/.test((e as Error).message));
  assert.throws(() => loadConfig({ flags: { allowed_clients: '999.1.1.1' } }), (e: unknown) => e instanceof ConfigError && /allowed_clients.*999\.1\.1\.1/.test((e as Error).message));
  assert.throws(() => loadConfig({ flags: { allowed_clients: '10.0.0.0/33' } }), (e: unknown) => e instanceof ConfigError && /allowed_clients.*10\.0\.0\.0\/33/.test((e as Error).message));
  assert.equal(loadConfig({ flags: { listen: '127.0.0.1:0' } }).listen, '127.0.0.1:0', 'port 0 (ephemeral) stays allowed');
  assert.deepEqual(loadConfig({ flags: { allowed_clients: '::1/128,192.168.0.0/16,10.1.2.3' } }).allowed_clients, ['::1/128', '192.168.0.0/16', '10.1.2.3']);
  const a = run(['serve', '--listen', '127.0.0.1:99999']);
  assert.equal(a.status, 78, a.stderr.toString());
  assert.match(a.stderr.toString(), /listen/);
});

test('CLI: a flag whose value is missing does not swallow the next flag', () => {
  // without the check: recipient "--dry-run", and no dry run (the footer is added)
  const a = run(['filter', '--recipient', '--dry-run'], {}, Buffer.alloc(0));
  assert.equal(a.status, 64, a.stderr.toString());
  assert.match(a.stderr.toString(), /--recipient needs a value/);
  const s = run(['filter', '--spool-dir', '--dry-run'], {}, Buffer.alloc(0));
  assert.equal(s.status, 64, s.stderr.toString());
  assert.match(s.stderr.toString(), /--spool-dir needs a value/);
  const t = run(['config', '--web-server']);
  assert.equal(t.status, 64);
  const b = run(['config', '--markdwn']);
  assert.equal(b.status, 64, 'config with an unknown option is a usage error, not the plain table');
  assert.match(b.stderr.toString(), /--markdwn/);
});

test('CLI: `config | head` (stdout closed early) ends with one line, no stack trace', async () => {
  const { spawn } = await import('node:child_process');
  const child = spawn(process.execPath, ['--import', 'tsx', 'bin/calendar-link-filter.ts', 'config'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout.destroy();
  let stderr = '';
  child.stderr.on('data', (d) => { stderr += d; });
  const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
  assert.doesNotMatch(stderr, /Unhandled 'error' event|\n\s+at /, stderr);
  assert.notEqual(code, 0, 'the table was not written');
});

test('config file: a JSON file saved with a byte-order mark (Windows editors) is read like one without', () => {
  const j = join(TMP, 'bom.json');
  writeFileSync(j, Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('{"web_server": "bom.example"}')]));
  assert.equal(loadConfig({ file: j }).web_server, 'bom.example');
});

test('config file: a key given twice is refused naming it, in JSON as in YAML (not the last one silently winning)', () => {
  const j = join(TMP, 'dup.json');
  writeFileSync(j, '{"web_server": "a.example", "max_recipients": 5, "web_server": "b.example"}');
  assert.throws(() => loadConfig({ file: j }), (e: Error) => e instanceof ConfigError && /web_server/.test(e.message) && /twice|unique|duplicate/i.test(e.message));
  const y = join(TMP, 'dup.yaml');
  writeFileSync(y, 'web_server: a.example\nweb_server: b.example\n');
  assert.throws(() => loadConfig({ file: y }), (e: Error) => e instanceof ConfigError && /unique|duplicate|twice/i.test(e.message));
  // a value that merely repeats text stays fine
  writeFileSync(j, '{"web_server": "a.example", "local_domains": ["a.example", "a.example"]}');
  assert.equal(loadConfig({ file: j }).web_server, 'a.example');
});

test('CLI: an empty --config (an unset shell variable) is refused, not silently skipped', () => {
  for (const args of [['--config', ''], ['--config=']]) {
    const r = run(['explain', join(ROOT, 'fixtures/mail/reply.eml'), ...args]);
    assert.equal(r.status, 64, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr.toString(), /--config needs a file name/);
  }
});

test('CLI: --help (or -h) after a command prints the usage on stdout and exits 0, without starting anything', () => {
  for (const args of [['serve', '--help'], ['milter', '-h'], ['filter', '--help'], ['explain', '--help'], ['web', '--help'], ['config', '--help'], ['serve', '--listen', '127.0.0.1:0', '--help']]) {
    const r = run(args);
    assert.equal(r.status, 0, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stdout.toString(), /^usage: calendar-link-filter <command>/, args.join(' '));
    assert.equal(r.stderr.toString(), '', args.join(' '));
  }
  // a flag's value is still a value: `--recipient -h` is a recipient named "-h", not a help request
  const v = run(['explain', join(ROOT, 'fixtures/mail/google.eml'), '--web-server', 'cal.example.org', '--recipient', '-h']);
  assert.equal(v.status, 0, v.stderr.toString());
  assert.match(v.stdout.toString(), /"recipient": "-h"/);
});

// --- review regressions: empty values, values of the wrong shape, hooks released when the start fails, the log line ---

test('config: an empty value (CALFILTER_X= in an env file) is refused where empty means nothing, kept where it means "off"', () => {
  const refused: Array<[string, RegExp]> = [
    ['CALFILTER_NEXT_HOP', /next_hop/],
    ['CALFILTER_LISTEN', /listen/],
    ['CALFILTER_LINK_KEY_ID', /link_key_id/],
    ['CALFILTER_URL_TEMPLATE', /url_template/],
    ['CALFILTER_ALLOWED_CLIENTS', /allowed_clients/],
  ];
  for (const [name, re] of refused) {
    assert.throws(() => loadConfig({ env: { [name]: '' } }), (e: unknown) => e instanceof ConfigError && re.test((e as Error).message) && (e as Error).message.includes(name), `${name}=`);
  }
  // an allow-list of nothing turns every MTA away with 554 (a bounce): refused, also as " , "
  assert.throws(() => loadConfig({ flags: { allowed_clients: ' , ' } }), (e: unknown) => e instanceof ConfigError && /allowed_clients/.test((e as Error).message));
  // keys whose default is empty keep "empty: off"
  const c = loadConfig({ env: { CALFILTER_WEB_SERVER: '', CALFILTER_LINK_SECRET: '', CALFILTER_LOCAL_DOMAINS: '' } });
  assert.equal(c.web_server, '');
  assert.equal(c.link_secret, '');
  assert.deepEqual(c.local_domains, []);
  // the CLI: a bad value is a configuration error (78, not restarted by systemd), not a crash (70)
  const r = run(['serve', '--listen', '127.0.0.1:0'], { CALFILTER_NEXT_HOP: '' });
  assert.equal(r.status, 78, r.stderr.toString());
  assert.match(r.stderr.toString(), /next_hop/);
});

test('config file: a list or mapping given for a bool or enum key is refused, not flattened to its text', () => {
  const y = join(TMP, 'shape.yaml');
  for (const text of ['lmtp: [true]\n', 'dry_run: [false]\n', 'log_level: [info]\n', 'log_level: {info: 1}\n']) {
    writeFileSync(y, text);
    assert.throws(() => loadConfig({ file: y }), (e: unknown) => e instanceof ConfigError && /bad value for (lmtp|dry_run|log_level)/.test((e as Error).message), text);
  }
});

test('a hook that fails at start releases the hooks started before it (the Redis connection): `filter` exits 78, it does not hang', () => {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'bin/calendar-link-filter.ts', 'filter', '--redis', 'redis://127.0.0.1:1', '--web-server', 'cal.example.org', '--footer-text-template', '{nope}'], {
    cwd: ROOT, input: readFileSync(join(ROOT, 'fixtures/mail/google.eml')), timeout: 15_000,
  });
  assert.equal(r.signal, null, 'the process ended by itself (no kill after the timeout)');
  assert.equal(r.status, 78, r.stderr.toString());
  assert.match(r.stderr.toString(), /footer_text_template/);
});

test('log: one line per event whatever the fields hold (BigInt, cycles, a null prototype); fields cannot rename the event', async () => {
  const { createLogger } = await import('../lib/log.js');
  const { Writable } = await import('node:stream');
  const chunks: string[] = [];
  const out = new Writable({ write(c, _e, cb) { chunks.push(String(c)); cb(); } });
  const log = createLogger({ level: 'debug', out });
  const cyclic: Record<string, unknown> = { a: 1 };
  cyclic.self = cyclic;
  const bare = Object.assign(Object.create(null) as Record<string, unknown>, { id: 'n1', size: 5n });
  assert.doesNotThrow(() => log('message.relayed', { id: 'b1', queue_id: 'Q1', size: 10n, note: 'two\nlines' }));
  assert.doesNotThrow(() => log('message.relayed', { id: 'c1', cyclic }));
  assert.doesNotThrow(() => log('message.relayed', bare));
  assert.doesNotThrow(() => log('message.relayed', { id: 'e1', event: 'forged', ts: 'forged' }));
  const text = chunks.join('');
  assert.ok(text.endsWith('\n'));
  const lines = text.slice(0, -1).split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.equal(lines.length, 4, text);
  assert.deepEqual([lines[0]!.id, lines[0]!.queue_id, lines[0]!.size, lines[0]!.note], ['b1', 'Q1', '10', 'two\nlines'], 'the other fields survive a BigInt');
  assert.equal(lines[1]!.id, 'c1', 'the other fields survive a cycle');
  assert.deepEqual([lines[2]!.id, lines[2]!.size], ['n1', '5']);
  assert.equal(lines[3]!.event, 'message.relayed', 'a field named "event" does not rename the event');
  assert.notEqual(lines[3]!.ts, 'forged');
  for (const l of lines) assert.equal(l.event, 'message.relayed');
});

test('log: the listener failing (smtp.error) is an error, written also at log_level=warn', () => {
  const chunks: string[] = [];
  return import('../lib/log.js').then(async ({ createLogger }) => {
    const { Writable } = await import('node:stream');
    const log = createLogger({ level: 'warn', out: new Writable({ write(c, _e, cb) { chunks.push(String(c)); cb(); } }) });
    log('smtp.error', { error: 'listen EADDRINUSE: address already in use 127.0.0.1:25' });
    assert.equal(chunks.length, 1);
    assert.equal((JSON.parse(chunks[0]!) as { level: string }).level, 'error');
  });
});

test('log: wants(event) says exactly whether log(event) writes a line, at every level', async () => {
  const { createLogger } = await import('../lib/log.js');
  const { Writable } = await import('node:stream');
  for (const level of ['debug', 'info', 'warn', 'error']) {
    for (const event of ['message.relayed', 'message.deferred', 'message.rejected', 'smtp.connect', 'smtp.error', 'an.unlisted.event']) {
      const chunks: string[] = [];
      const log = createLogger({ level, out: new Writable({ write(c, _e, cb) { chunks.push(String(c)); cb(); } }) });
      log(event, { id: 'x' });
      assert.equal(log.wants?.(event), chunks.length === 1, `${event} at log_level=${level}`);
    }
  }
});
