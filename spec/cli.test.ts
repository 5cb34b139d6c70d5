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
