// Graceful stop with the real CLI as a child process: SIGTERM never turns into a 250 for a
// message the next hop did not take, and a transaction that finishes within the grace period
// is answered normally.

import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { freePort, startFilter } from './helpers/filter-process.js';
import { startSink } from './helpers/sink.js';
import { openData, transact } from './helpers/smtp-dialog.js';

const DATA = Buffer.from('From: a@example.org\r\nSubject: stop\r\n\r\nbody\r\n');

/** A filter relaying to a sink that accepts everything; both stopped when the test ends. */
async function servingFilter(t: TestContext, args: string[] = []) {
  const sink = await startSink();
  t.after(() => sink.close());
  const port = await freePort();
  const f = await startFilter(['serve', '--listen', `127.0.0.1:${port}`, '--next-hop', `smtp://127.0.0.1:${sink.port}`, ...args]);
  t.after(() => f.stop());
  return { f, port, sink };
}

/**
 * A filter whose next hop took the message and stays silent (a 60 s next_hop_timeout, a 1 s grace
 * period), and the client's pending reply ("closed: …" when its connection dropped instead).
 */
async function heldTransaction(t: TestContext): Promise<{ f: Awaited<ReturnType<typeof startFilter>>; pending: Promise<string> }> {
  const sink = await startSink({ behaviour: (q) => (q.phase === 'data' ? 'silent' : undefined) });
  t.after(() => sink.close());
  const port = await freePort();
  const f = await startFilter(['serve', '--listen', `127.0.0.1:${port}`, '--next-hop', `smtp://127.0.0.1:${sink.port}`, '--shutdown-timeout', '1', '--next-hop-timeout', '60']);
  t.after(() => f.stop());
  const pending = transact(port, { from: 'a@example.org', to: ['b@example.org'], data: DATA }).then((r) => r.final[0]!, (e: Error) => `closed: ${e.message}`);
  await sink.waitFor(1, 10_000).catch(() => undefined); // the sink has the bytes and stays silent
  await new Promise((r) => setTimeout(r, 200));
  return { f, pending };
}

test('SIGTERM while the next hop holds the message: 451 or 421, never 250; the filter exits', async (t) => {
  const { f, pending } = await heldTransaction(t);
  f.kill('SIGTERM');
  const reply = await pending;
  assert.doesNotMatch(reply, /^250/);
  assert.match(reply, /^(451|421)|^closed/);
  const exit = await f.exited;
  assert.equal(exit.code, 0);
  assert.ok(f.stdoutLines().some((l) => l.includes('"server.stopping"')));
});

test('SIGTERM while a relay is in flight that finishes within the grace period: normal 250', async (t) => {
  const { f, port, sink } = await servingFilter(t, ['--shutdown-timeout', '10']);
  // hold the client inside DATA: send the command, then the body after the signal
  const d = await openData(port);
  f.kill('SIGTERM');
  await new Promise((r) => setTimeout(r, 300));
  const final = await d.send(Buffer.concat([DATA, Buffer.from('.\r\n')]));
  d.close();
  assert.match(final[0]!, /^250 /);
  assert.equal(sink.messages.length, 1);
  const exit = await f.exited;
  assert.equal(exit.code, 0);
});

test('after SIGTERM no new connection is served', async (t) => {
  const { f, port, sink } = await servingFilter(t);
  f.kill('SIGTERM');
  await f.exited;
  await assert.rejects(transact(port, { from: 'a@example.org', to: ['b@example.org'], data: DATA }));
  assert.equal(sink.messages.length, 0);
});

test('SIGTERM right after the reply to a message that spilled to disk: the filter exits with no temporary file left', async (t) => {
  const sink = await startSink();
  t.after(() => sink.close());
  const spool = await mkdtemp(join(tmpdir(), 'calfilter-spool-test-'));
  t.after(() => rm(spool, { recursive: true, force: true }));
  const port = await freePort();
  const f = await startFilter(['serve', '--listen', `127.0.0.1:${port}`, '--next-hop', `smtp://127.0.0.1:${sink.port}`, '--spool-memory-limit', '0', '--spool-dir', spool]);
  t.after(() => f.stop());
  const big = Buffer.concat([Buffer.from('From: a@example.org\r\nSubject: big\r\n\r\n'), Buffer.alloc(8 * 1024 * 1024, 'line of text\r\n')]);
  for (let i = 0; i < 3; i++) {
    const r = await transact(port, { from: 'a@example.org', to: ['b@example.org'], data: big });
    assert.match(r.final[0]!, /^250 /);
  }
  f.kill('SIGTERM'); // at once, while the last spool may still be being removed
  assert.equal((await f.exited).code, 0);
  assert.deepEqual(await readdir(spool), [], 'every spilled message was removed before the exit');
});

test('SIGTERM after the client left while its spilled message is still with a silent next hop: the filter exits at once, no temporary file left', async (t) => {
  const sink = await startSink({ behaviour: (q) => (q.phase === 'data' ? 'silent' : undefined) });
  t.after(() => sink.close());
  const spool = await mkdtemp(join(tmpdir(), 'calfilter-spool-test-'));
  t.after(() => rm(spool, { recursive: true, force: true }));
  const port = await freePort();
  const f = await startFilter(['serve', '--listen', `127.0.0.1:${port}`, '--next-hop', `smtp://127.0.0.1:${sink.port}`, '--spool-memory-limit', '0', '--spool-dir', spool, '--shutdown-timeout', '1', '--next-hop-timeout', '60']);
  t.after(() => f.stop());
  const d = await openData(port);
  d.closed.catch(() => undefined);
  void d.send(Buffer.concat([DATA, Buffer.from('.\r\n')]), 0);
  await sink.waitFor(1, 10_000); // the filter relays; the next hop keeps it without an answer
  assert.equal((await readdir(spool)).length, 1, 'the message is spilled while it is relayed');
  d.close(); // the MTA gave up waiting for the reply to "."
  await new Promise((r) => setTimeout(r, 200));
  const t0 = Date.now();
  f.kill('SIGTERM');
  assert.equal((await f.exited).code, 0);
  assert.deepEqual(await readdir(spool), [], 'the spilled message was removed before the exit');
  assert.ok(Date.now() - t0 < 6000, `exited ${Date.now() - t0} ms after SIGTERM, not within the 1 s grace period and a margin`);
});

test('a second SIGTERM (or SIGINT) during the stop is ignored: the transaction still gets 451/421, never a dropped connection; exit 0', async (t) => {
  const { f, pending } = await heldTransaction(t);
  f.kill('SIGTERM');
  await new Promise((r) => setTimeout(r, 100));
  f.kill('SIGTERM');
  f.kill('SIGINT');
  const reply = await pending;
  assert.match(reply, /^(451|421)/, `the client heard a reply, not a dropped connection: ${reply}`);
  const exit = await f.exited;
  assert.deepEqual([exit.code, exit.signal], [0, null]);
});

test('SIGHUP neither stops nor kills the filter (there is no reload): it keeps serving, then stops on SIGTERM', async (t) => {
  const { f, port } = await servingFilter(t);
  f.kill('SIGHUP');
  await new Promise((r) => setTimeout(r, 300));
  const r = await transact(port, { from: 'a@example.org', to: ['b@example.org'], data: DATA });
  assert.match(r.final[0]!, /^250 /);
  assert.ok(f.stdoutLines().some((l) => l.includes('"server.sighup"')), 'SIGHUP is logged');
  f.kill('SIGTERM');
  const exit = await f.exited;
  assert.deepEqual([exit.code, exit.signal], [0, null]);
});
