// deploy/systemd/calendar-link-filter.service: the hardening it promises, its ExecStart and
// Environment= accepted by our CLI, and the service started exactly that way (ports swapped for
// ephemeral ones) until /healthz answers and SIGTERM ends it. With systemd-analyze on the machine,
// `verify` must print nothing about the unit and `security --offline` must rate it OK or better.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parseFlags } from '../lib/cli.js';
import { loadConfig } from '../lib/config.js';
import { freePort, startFilter } from './helpers/filter-process.js';
import { startSink } from './helpers/sink.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const UNIT_PATH = join(ROOT, 'deploy', 'systemd', 'calendar-link-filter.service');
const UNIT_TEXT = readFileSync(UNIT_PATH, 'utf8');

/** [Section] key=value lines → section → key → every value, in order (systemd keys may repeat). */
function parseUnit(text: string): Map<string, Map<string, string[]>> {
  const out = new Map<string, Map<string, string[]>>();
  let section = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#') || line.startsWith(';')) continue;
    const s = /^\[(.+)\]$/.exec(line);
    if (s) {
      section = s[1]!;
      out.set(section, out.get(section) ?? new Map());
      continue;
    }
    const i = line.indexOf('=');
    assert.ok(i > 0, `unit line "${line}" is key=value`);
    const key = line.slice(0, i).trim();
    const values = out.get(section)!;
    values.set(key, [...(values.get(key) ?? []), line.slice(i + 1).trim()]);
  }
  return out;
}

const UNIT = parseUnit(UNIT_TEXT);
const service = UNIT.get('Service')!;
const one = (key: string) => {
  const v = service.get(key);
  assert.ok(v, `[Service] sets ${key}`);
  return v.at(-1)!;
};
/** Environment=K=V lines, as the service sees them before the EnvironmentFile. */
const unitEnv = (): Record<string, string> => Object.fromEntries((service.get('Environment') ?? []).map((kv) => {
  const i = kv.indexOf('=');
  return [kv.slice(0, i), kv.slice(i + 1)];
}));
const execStart = () => one('ExecStart').split(/\s+/);

const HARDENING: Array<[string, (v: string) => boolean, string]> = [
  ['NoNewPrivileges', (v) => v === 'yes', 'yes'],
  ['ProtectSystem', (v) => v === 'strict', 'strict'],
  ['ProtectHome', (v) => v === 'yes' || v === 'read-only', 'yes'],
  ['PrivateTmp', (v) => v === 'yes', 'yes'],
  ['PrivateDevices', (v) => v === 'yes', 'yes'],
  ['RestrictAddressFamilies', (v) => v.split(/\s+/).sort().join(' ') === 'AF_INET AF_INET6 AF_UNIX', 'AF_INET AF_INET6 AF_UNIX'],
  ['MemoryDenyWriteExecute', (v) => v === 'no', 'no (V8 JIT)'],
  ['CapabilityBoundingSet', (v) => v === '', 'empty'],
  ['SystemCallFilter', (v) => v === '@system-service', '@system-service (first line)'],
  ['Restart', (v) => v === 'on-failure', 'on-failure'],
  ['EnvironmentFile', (v) => v === '-/etc/calendar-link-filter/env', '-/etc/calendar-link-filter/env'],
];

describe('systemd unit', () => {
  for (const [key, ok, want] of HARDENING) {
    test(`${key}=${want}`, () => {
      const v = key === 'SystemCallFilter' ? service.get(key)?.[0] : one(key);
      assert.ok(v !== undefined && ok(v), `${key}=${v}`);
    });
  }

  test('a service user that is not root; no SystemCallFilter line re-allows a group', () => {
    const dynamic = service.get('DynamicUser')?.at(-1) === 'yes';
    const user = service.get('User')?.at(-1);
    assert.ok(dynamic || (user && user !== 'root' && user !== '0'), 'DynamicUser=yes or a dedicated User=');
    for (const f of (service.get('SystemCallFilter') ?? []).slice(1)) assert.ok(f.startsWith('~'), `later SystemCallFilter lines only deny (${f})`);
  });

  test('TimeoutStopSec leaves room for shutdown_timeout', () => {
    const config = loadConfig({ env: unitEnv() });
    const stop = Number(one('TimeoutStopSec'));
    assert.ok(stop > config.shutdown_timeout + 2, `TimeoutStopSec ${stop} > shutdown_timeout ${config.shutdown_timeout} + the listener's 2 s close grace`);
  });

  test('ExecStart and Environment= are accepted by the CLI; --http is on loopback', () => {
    const [bin, command, ...args] = execStart();
    assert.match(bin!, /^\/.*\/calendar-link-filter$/, 'an absolute path to our command');
    assert.equal(command, 'serve');
    const config = loadConfig({ env: unitEnv(), flags: parseFlags(args).flags });
    assert.equal(config.listen, '127.0.0.1:10025');
    assert.equal(config.next_hop, 'smtp://127.0.0.1:10026');
    assert.match(String(config.http), /^127\.0\.0\.1:\d+$/);
  });

  test('started as the unit starts it (ports swapped): /healthz 200, SIGTERM → exit 0', async () => {
    const [, ...args] = execStart();
    const sink = await startSink();
    const [smtp, http] = [await freePort(), await freePort()];
    const env = { ...unitEnv(), CALFILTER_LISTEN: `127.0.0.1:${smtp}`, CALFILTER_HTTP: `127.0.0.1:${http}`, CALFILTER_NEXT_HOP: `smtp://127.0.0.1:${sink.port}` };
    // startFilter wants --listen on the command line; the unit sets it in the environment, so the
    // flag repeats the environment's value (flags win, the value is the same)
    const filter = await startFilter([...args, '--listen', env.CALFILTER_LISTEN], { env });
    try {
      const res = await fetch(`http://127.0.0.1:${http}/healthz`, { signal: AbortSignal.timeout(10_000) });
      assert.equal(res.status, 200, await res.text());
    } finally {
      const exit = await filter.stop(Number(one('TimeoutStopSec')) * 1000);
      await sink.close();
      assert.deepEqual(exit, { code: 0, signal: null }, filter.stderrLines().join('\n'));
    }
  });

  describe('systemd-analyze', { skip: spawnSync('systemd-analyze', ['--version']).status === 0 ? false : 'systemd-analyze not installed' }, () => {
    const dir = mkdtempSync(join(tmpdir(), 'calfilter-unit-'));
    after(() => rmSync(dir, { recursive: true, force: true }));
    // verify insists that ExecStart's program exists: point it at node, keep everything else
    const copy = join(dir, 'calendar-link-filter.service');
    writeFileSync(copy, UNIT_TEXT.replace(/^ExecStart=\S+/m, `ExecStart=${process.execPath}`));

    test('verify: nothing to say about the unit', () => {
      const r = spawnSync('systemd-analyze', ['verify', copy], { encoding: 'utf8', timeout: 30_000 });
      const about = `${r.stdout}\n${r.stderr}`.split('\n').filter((l) => l.includes('calendar-link-filter.service'));
      assert.equal(r.status, 0, r.stderr);
      assert.deepEqual(about, []);
    });

    test('security --offline: exposure rated OK or better', (t) => {
      const r = spawnSync('systemd-analyze', ['security', '--offline=yes', '--no-pager', copy], { encoding: 'utf8', timeout: 30_000 });
      const m = /Overall exposure level for \S+: (\d+\.\d+)/.exec(r.stdout);
      if (r.status !== 0 && !m) return t.skip(`this systemd-analyze has no offline security check: ${r.stderr.trim()}`);
      assert.ok(m, r.stdout + r.stderr);
      assert.ok(Number(m[1]) <= 2.0, `exposure ${m[1]} (0 best, 10 worst)`);
    });
  });
});
