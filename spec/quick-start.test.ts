// The README's quick start as written: `npm start` (with options after `--`) builds, listens, relays,
// and a SIGTERM to npm stops the filter gracefully instead of leaving it running behind npm's back.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { freePort } from './helpers/filter-process.js';
import { startSink } from './helpers/sink.js';
import { transact } from './helpers/smtp-dialog.js';
import { until } from './helpers/until.js';

const ROOT = join(import.meta.dirname, '..');

const listening = (port: number) =>
  new Promise<boolean>((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });

test('quick start: npm start relays with the embedded defaults, and SIGTERM to npm stops the filter', { timeout: 180_000 }, async (t) => {
  const readme = await readFile(join(ROOT, 'README.md'), 'utf8');
  assert.match(readme, /^npm ci && npm start\b/m, 'the README still starts the filter with npm start');
  const sink = await startSink();
  t.after(() => sink.close());
  const port = await freePort();
  // its own process group, so that whatever is left can be killed in one go if the test fails
  const npm = spawn('npm', ['start', '--silent', '--', '--listen', `127.0.0.1:${port}`, '--next-hop', `smtp://127.0.0.1:${sink.port}`], {
    cwd: ROOT, detached: true, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  npm.stdout.on('data', (c: Buffer) => { out += c.toString(); });
  npm.stderr.on('data', (c: Buffer) => { out += c.toString(); });
  const exited = new Promise<number | null>((resolve) => npm.once('exit', (code) => resolve(code)));
  t.after(() => { try { process.kill(-npm.pid!, 'SIGKILL'); } catch { /* already gone */ } });

  const output = async () => out;
  await until('the server.listening line', 150_000, async () => (out.includes('"server.listening"') ? true : undefined), output);
  const r = await transact(port, { from: 'a@example.org', to: ['b@example.org'], data: Buffer.from('From: a@example.org\r\nSubject: hi\r\n\r\nhello\r\n') });
  assert.match(r.final[0]!, /^250 /);
  assert.equal(sink.messages.length, 1);

  npm.kill('SIGTERM');
  await exited;
  await until(`port ${port} to close after SIGTERM to npm`, 10_000, async () => ((await listening(port)) ? undefined : true), output);
  assert.match(out, /"server\.stopped"/, 'the filter itself stopped gracefully');
});
