// Dry run (`--dry-run`): every message goes out byte-identical, and its outcome line says what the
// filter would have done (`dry_run: true`, `would_change`, the decision). Run over the real-world
// corpus against EXPECTED.tsv, and over our own fixtures; a live filter beside it shows that the
// prediction is what live mode then does.

import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { CORPUS_SKIP_MESSAGE, corpusFile, expectedRows } from './helpers/corpus.js';
import { freePort, startFilter, type FilterProcess } from './helpers/filter-process.js';
import { startSink, type Sink } from './helpers/sink.js';
import { transact } from './helpers/smtp-dialog.js';

const OUTCOMES = new Set(['message.relayed', 'message.deferred', 'message.rejected', 'message.error']);
const FIXTURES = new URL('../fixtures/mail/', import.meta.url);

interface Run { sink: Sink; filter: FilterProcess }

async function startRun(extra: string[]): Promise<Run> {
  const sink = await startSink();
  const port = await freePort();
  const filter = await startFilter(['serve', '--listen', `127.0.0.1:${port}`, '--next-hop', `smtp://127.0.0.1:${sink.port}`, '--web-server', 'cal.example.org', ...extra]);
  return { sink, filter };
}

async function stopRun(r: Run | undefined): Promise<void> {
  await r?.filter.stop();
  await r?.sink.close();
}

/** The outcome lines so far, parsed. */
const outcomes = (f: FilterProcess) => f.stdoutLines().map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => OUTCOMES.has(String(l.event)));

async function nthOutcome(f: FilterProcess, n: number): Promise<Record<string, unknown>> {
  const until = Date.now() + 10_000;
  for (;;) {
    const lines = outcomes(f);
    if (lines.length > n) return lines[n]!;
    if (Date.now() > until) throw new Error(`no outcome line #${n + 1} (have ${lines.length})`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * What the sink should hold for `data`: the same bytes once written as SMTP requires (RFC 5321: lines
 * end in CRLF; a bare LF or CR becomes CRLF, as Postfix's smtpd and nodemailer's client both do), with
 * the CRLF the client adds before "." when the last line had none. Several corpus files are stored
 * with LF line ends; a real MTA hands them to the filter as CRLF already.
 */
function sameBytes(got: Buffer, data: Buffer): boolean {
  const wire = Buffer.from(data.toString('latin1').replace(/\r\n|\r|\n/g, '\r\n'), 'latin1');
  return got.equals(wire) || got.equals(Buffer.concat([wire, Buffer.from('\r\n')]));
}

/** Sends one message through the dry-run and the live filter; returns what each logged and relayed. */
async function both(dry: Run, live: Run, i: number, data: Buffer) {
  const env = { from: 'alice@example.org', to: ['bob@example.org'], data };
  const d = await transact(dry.filter.port, env);
  const l = await transact(live.filter.port, env);
  return {
    dryReply: d.final[0]!, liveReply: l.final[0]!,
    dryLine: await nthOutcome(dry.filter, i), liveLine: await nthOutcome(live.filter, i),
    dryRaw: dry.sink.messages[i]?.raw, liveRaw: live.sink.messages[i]?.raw,
  };
}

describe('dry run over the real-world corpus', () => {
  const rows = expectedRows();
  let dry: Run;
  let live: Run;
  before(async () => {
    if (rows.length === 0) return;
    dry = await startRun(['--dry-run']);
    live = await startRun([]);
  });
  after(async () => {
    await stopRun(dry);
    await stopRun(live);
  });

  test('every email relayed byte-identical; would_change exactly for the F rows; live mode agrees', { skip: rows.length === 0 ? CORPUS_SKIP_MESSAGE : false }, async () => {
    const wrong: string[] = [];
    for (const [i, row] of rows.entries()) {
      const data = corpusFile(row.path)!;
      assert.ok(data, `${row.path} is in the corpus`);
      const r = await both(dry, live, i, data);
      assert.match(r.dryReply, /^250 /, `${row.path}: dry run relayed it`);
      assert.ok(r.dryRaw && sameBytes(r.dryRaw, data), `${row.path}: dry run relayed the bytes unchanged`);
      assert.equal(r.dryLine.dry_run, true, `${row.path}: the line says it was a dry run`);
      assert.equal(typeof r.dryLine.would_change, 'boolean', `${row.path}: the line says whether it would have changed`);
      // the decision of a dry run is the decision live mode takes
      assert.equal(r.dryLine.decision, r.liveLine.decision, `${row.path}: same decision dry and live`);
      assert.equal(r.dryLine.would_change, /^footer added/.test(String(r.dryLine.decision)), `${row.path}: would_change matches the decision "${r.dryLine.decision}"`);
      assert.equal(r.dryLine.would_change, !(r.liveRaw && sameBytes(r.liveRaw, data)), `${row.path}: would_change is what live mode did`);
      if (r.dryLine.would_change !== (row.expected === 'F')) wrong.push(`${row.path}: expected ${row.expected}, dry run decided "${r.dryLine.decision}"`);
    }
    assert.deepEqual(wrong, [], 'dry-run decisions that differ from EXPECTED.tsv');
  });
});

describe('dry run over fixtures/mail', () => {
  const names = readdirSync(FIXTURES).filter((f) => f.endsWith('.eml')).sort();
  let dry: Run;
  let live: Run;
  before(async () => {
    dry = await startRun(['--dry-run']);
    live = await startRun([]);
  });
  after(async () => {
    await stopRun(dry);
    await stopRun(live);
  });

  test('byte-identical, and the log predicts what live mode does', async () => {
    let changes = 0;
    for (const [i, name] of names.entries()) {
      const data = readFileSync(new URL(name, FIXTURES));
      const r = await both(dry, live, i, data);
      assert.match(r.dryReply, /^250 /, name);
      assert.ok(r.dryRaw && sameBytes(r.dryRaw, data), `${name}: relayed unchanged`);
      assert.equal(r.dryLine.dry_run, true, name);
      assert.equal(r.dryLine.decision, r.liveLine.decision, `${name}: same decision dry and live`);
      assert.equal(r.dryLine.would_change, !(r.liveRaw && sameBytes(r.liveRaw, data)), `${name}: would_change is what live mode did`);
      assert.equal(r.liveLine.dry_run, undefined, `${name}: a live line does not claim to be a dry run`);
      assert.equal(r.liveLine.would_change, undefined, name);
      if (r.dryLine.would_change) changes++;
    }
    assert.ok(changes >= 5, `several fixtures would get a footer (got ${changes})`);
  });
});
