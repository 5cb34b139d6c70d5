// Interop with OpenDKIM's miltertest (Debian package `miltertest`): a real libmilter-era MTA simulator
// runs the Lua scripts in spec/miltertest/ against `calendar-link-filter milter` as a child process.
// In: fixtures sent as events by miltertest. Out: its verdicts (exit status, "…: ok"), and the milter's log.
// Skips (outside CI only) when miltertest is not installed; .ci/run installs it.

import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { test, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { closeApp, createApp } from '../lib/app.js';
import { scanBuffer } from '../lib/candidate-scan.js';
import { loadConfig } from '../lib/config.js';
import { planDelivery } from '../lib/plan.js';
import { spoolFromBuffer } from '../lib/spool.js';
import { freePort } from './helpers/filter-process.js';
import { FIXTURE_DIR, readFixture } from './helpers/mail-fixtures.js';
import { startMilterProcess, type MilterProcess } from './helpers/milter-process.js';

const run = promisify(execFile);
const SCRIPTS = fileURLToPath(new URL('./miltertest', import.meta.url));
const CHUNK = 1000; // miltertest 2.11 overflows a 1024-byte buffer on larger replies at end of message
const MISSING = spawnSync('miltertest', ['-V'], { encoding: 'utf8' }).error;
const skip = !process.env.CI && MISSING ? 'miltertest is not installed (apt-get install miltertest; see .ci/run)' : undefined;

async function milter(t: TestContext, extra: string[] = []): Promise<MilterProcess> {
  const port = await freePort();
  const m = await startMilterProcess(['--listen', `127.0.0.1:${port}`, '--web-server', 'cal.example.org', '--milter-body-chunk', String(CHUNK), '--log-level', 'debug', ...extra]);
  t.after(() => m.stop());
  return m;
}

/** The after-queue rewrite of the same message, as the packets the milter should send. */
async function expectedPackets(name: string): Promise<string[]> {
  const raw = readFixture(name);
  const config = loadConfig({ flags: { web_server: 'cal.example.org' } });
  const app = await createApp(config, () => undefined);
  try {
    const plan = await planDelivery({ config, log: () => undefined, hooks: app.hooks }, { from: 'ada@example.org', to: [{ address: 'bob@example.net' }] }, spoolFromBuffer(raw), scanBuffer(raw), 'x');
    const out = plan.groups[0]!.body!.buffer();
    const body = out.subarray(out.indexOf('\r\n\r\n') + 4);
    const packets: string[] = [];
    for (let i = 0; i < body.length; i += CHUNK) packets.push(body.subarray(i, i + CHUNK).toString('latin1'));
    return packets;
  } finally {
    await closeApp(app);
  }
}

async function miltertest(script: string, vars: Record<string, string>): Promise<string> {
  const defs = Object.entries({ SCRIPTS, ...vars }).flatMap(([k, v]) => ['-D', `${k}=${v}`]);
  try {
    const { stdout } = await run('miltertest', [...defs, '-s', `${SCRIPTS}/${script}`], { timeout: 30_000, encoding: 'latin1' });
    return stdout;
  } catch (e) {
    const err = e as Error & { stdout?: string; stderr?: string };
    assert.fail(`miltertest ${script} failed: ${err.message}\n${err.stdout ?? ''}\n${err.stderr ?? ''}`);
  }
}

const outcomes = (m: MilterProcess) => m.logs().filter((l) => /^milter\.(changed|unchanged|tempfail)$/.test(String(l.event)));

for (const nr of ['no', 'yes']) test(`miltertest: a meeting request gets the marker and exactly the after-queue body (no-reply steps: ${nr})`, { skip }, async (t) => {
  const m = await milter(t, ['--milter-no-reply', nr]);
  const packets = await expectedPackets('exchange-online');
  assert.ok(packets.length > 1, 'the body needs several 1000-byte packets');
  const vars: Record<string, string> = { PORT: String(m.where), MSG: `${FIXTURE_DIR}/exchange-online.eml`, N: String(packets.length), NR: nr };
  packets.forEach((p, i) => { vars[`EXP${i + 1}`] = p; });
  const out = await miltertest('meeting.lua', vars);
  assert.match(out, /meeting: ok/);
  await m.waitForLog((l) => l.event === 'milter.changed');
  const [o] = outcomes(m);
  assert.equal(o?.event, 'milter.changed');
  assert.equal(o?.queue_id, 'MTQ1');
  assert.equal(o?.client, '192.0.2.7');
  assert.equal(o?.kind, 'meeting');
});

test('miltertest: plain mail is accepted at the end of headers, multipart mail without calendar is not edited', { skip }, async (t) => {
  const m = await milter(t);
  const out = await miltertest('noncalendar.lua', {
    PORT: String(m.where), MSG: `${FIXTURE_DIR}/non-calendar-meeting.eml`, MIXED: `${FIXTURE_DIR}/forwarded-invite.eml`,
  });
  assert.match(out, /noncalendar: ok/);
  await m.waitForLog((l) => l.event === 'milter.unchanged' && l.stage === undefined);
  const o = outcomes(m);
  assert.deepEqual(o.map((l) => [l.event, l.stage ?? 'eom']), [['milter.unchanged', 'eoh'], ['milter.unchanged', 'eom']]);
});

test('miltertest: ABORT after the body and after MAIL, then a full message on the same connection', { skip }, async (t) => {
  const m = await milter(t);
  const packets = await expectedPackets('exchange-online');
  const vars: Record<string, string> = { PORT: String(m.where), MSG: `${FIXTURE_DIR}/exchange-online.eml`, N: String(packets.length) };
  packets.forEach((p, i) => { vars[`EXP${i + 1}`] = p; });
  const out = await miltertest('abort.lua', vars);
  assert.match(out, /abort: ok/);
  await m.waitForLog((l) => l.event === 'milter.changed');
  const o = outcomes(m);
  assert.equal(o.length, 1, 'the aborted transactions left no outcome');
  assert.deepEqual(o[0]!.to, ['bob@example.net']);
  assert.equal(o[0]!.from, 'ada@example.org');
});
