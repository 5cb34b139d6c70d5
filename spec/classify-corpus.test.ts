// Corpus-wide check of the two classification hooks: every email in ../shared/corpus goes through the
// real structure pass (lib/mime-structure.ts) and the hook registry, and the footer decision must
// match EXPECTED.tsv (F = footer true). Skips with a message when the corpus is not on this machine.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import calendarClassify from '../hooks/calendar-classify.js';
import customFormClassify from '../hooks/custom-form-classify.js';
import { HookRegistry, type App } from '../lib/hooks.js';
import { analyzeMessage } from '../lib/mime-structure.js';
import { classify } from '../lib/plan.js';
import { spoolFromBuffer } from '../lib/spool.js';
import { CORPUS_DIR, CORPUS_SKIP_MESSAGE, corpusFile, expectedRows } from './helpers/corpus.js';

// EXPECTED.tsv's kind column says what the message is; these kinds pin the Classification kind too.
const KIND_OF: Record<string, string> = { request: 'meeting', cancel: 'meeting', reply: 'meeting', 'non-calendar': 'none' };

test('corpus: footer decision of the classify hooks matches EXPECTED.tsv', { skip: CORPUS_DIR ? false : CORPUS_SKIP_MESSAGE }, async (t) => {
  const rows = expectedRows();
  assert.ok(rows.length >= 40, 'EXPECTED.tsv lists the corpus emails');
  const hooks = new HookRegistry(5000);
  const app: App = { config: {}, log: () => undefined, hooks };
  await calendarClassify.init(app);
  await customFormClassify.init(app);

  const failures: string[] = [];
  for (const row of rows) {
    const raw = corpusFile(row.path);
    assert.ok(raw, `${row.path} is listed but missing`);
    const { structure, headers } = await analyzeMessage(spoolFromBuffer(raw));
    const c = await classify(hooks, structure, headers);
    const want = row.expected === 'F';
    if (c.footer !== want) failures.push(`${row.path}: expected ${row.expected}, classified footer=${c.footer} (${c.reason})`);
    const kind = KIND_OF[row.kind];
    if (kind && c.kind !== kind) failures.push(`${row.path}: expected kind ${kind}, got ${c.kind} (${c.reason})`);
    // Not this hook's decision, but worth seeing: a damaged structure makes the pipeline pass the message unchanged.
    if (want && structure.damaged) t.diagnostic(`${row.path}: structure pass reports damage, so the pipeline would not add the footer`);
  }
  assert.deepEqual(failures, []);
});
