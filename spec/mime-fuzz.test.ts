// Bounded, reproducible fuzzing of the structure pass and the rewriter: fixtures and corpus emails
// truncated, byte-flipped, with damaged or doubled boundaries and mixed line endings, fed in chunks of
// 1 byte up. Never throws, never loses or duplicates bytes, keeps calendar parts whole.
// Seeded (FUZZ_SEED=<n> to vary, FUZZ_ROUNDS=<n> for more); about 7 s with the defaults.
// Run: node --import tsx --test spec/mime-fuzz.test.ts

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { analyzeMessage, isClassifierPart } from '../lib/mime-structure.js';
import { chooseTargets, planRewrite, rewriteMessage, type Targets } from '../lib/footer-insert.js';
import type { MessageStructure } from '../lib/types.js';
import { CORPUS_DIR, corpusFile, expectedRows } from './helpers/corpus.js';
import { chunkedReader, collect, fixtureNames, MARKER_LINE, readFixture, stubClassification, TEST_FOOTER } from './helpers/mail-fixtures.js';

const SEED = Number(process.env.FUZZ_SEED ?? 20261201);
const ROUNDS = Number(process.env.FUZZ_ROUNDS ?? 2500);

/** mulberry32: small, fast, and the same sequence on every machine. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Rand = () => number;
const pick = <T>(r: Rand, xs: T[]): T => xs[Math.floor(r() * xs.length)];
const int = (r: Rand, n: number) => Math.floor(r() * n);

/** Positions of lines that look like delimiters ("--" at a line start). */
function delimiterLines(buf: Buffer): number[] {
  const out: number[] = [];
  for (let i = buf.indexOf('\n--'); i >= 0 && out.length < 200; i = buf.indexOf('\n--', i + 1)) out.push(i + 1);
  return out;
}

const MUTATIONS: Array<[string, (b: Buffer, r: Rand) => Buffer]> = [
  ['truncate', (b, r) => b.subarray(0, int(r, b.length + 1))],
  ['flip bytes', (b, r) => {
    const c = Buffer.from(b);
    for (let k = 1 + int(r, 8); k > 0 && c.length; k--) c[int(r, c.length)] = int(r, 256);
    return c;
  }],
  ['damage a boundary', (b, r) => {
    const at = delimiterLines(b);
    if (!at.length) return b;
    const c = Buffer.from(b);
    const p = pick(r, at) + 2 + int(r, 6);
    if (p < c.length) c[p] = pick(r, [0x2d, 0x20, 0x0a, 0x41, 0x00]);
    return c;
  }],
  ['drop a delimiter line', (b, r) => {
    const at = delimiterLines(b);
    if (!at.length) return b;
    const s = pick(r, at);
    const e = b.indexOf(0x0a, s);
    return Buffer.concat([b.subarray(0, s), e < 0 ? Buffer.alloc(0) : b.subarray(e + 1)]);
  }],
  ['double a delimiter line', (b, r) => {
    const at = delimiterLines(b);
    if (!at.length) return b;
    const s = pick(r, at);
    const e = b.indexOf(0x0a, s);
    const line = b.subarray(s, e < 0 ? b.length : e + 1);
    return Buffer.concat([b.subarray(0, s), line, line, b.subarray(s + line.length)]);
  }],
  ['CRLF to LF in a region', (b, r) => {
    const s = int(r, b.length);
    const e = Math.min(b.length, s + 1 + int(r, 2000));
    return Buffer.concat([b.subarray(0, s), Buffer.from(b.subarray(s, e).toString('latin1').replace(/\r\n/g, '\n'), 'latin1'), b.subarray(e)]);
  }],
  ['junk inserted', (b, r) => {
    const s = int(r, b.length + 1);
    const junk = Buffer.from(Array.from({ length: 1 + int(r, 300) }, () => int(r, 256)));
    return Buffer.concat([b.subarray(0, s), junk, b.subarray(s)]);
  }],
  ['unchanged', (b) => b],
];

function sane(s: MessageStructure, size: number, where: string): void {
  assert.equal(s.size, size, where);
  assert.ok(s.parts.length >= 1, where);
  for (const p of s.parts) {
    assert.ok(p.headerStart >= 0 && p.headerStart <= p.bodyStart && p.bodyStart <= p.bodyEnd && p.bodyEnd <= size, `${where}: part ${p.index} offsets`);
    if (p.parent !== null) assert.ok(p.parent < p.index, `${where}: parent order`);
  }
}

const shape = (s: MessageStructure) => JSON.stringify(s.parts.map((p) => [p.contentType, p.headerStart, p.bodyStart, p.bodyEnd]));

test(`fuzz: ${ROUNDS} mutated messages, seed ${SEED}`, async (t) => {
  const r = prng(SEED);
  const seeds: Array<[string, Buffer]> = fixtureNames().map((n) => [n, readFixture(n)]);
  if (CORPUS_DIR) {
    for (const row of expectedRows()) {
      const b = corpusFile(row.path);
      if (b && b.length < 120_000) seeds.push([row.path, b]);
    }
  } else t.diagnostic('corpus absent: fuzzing the fixtures only');
  const none: Targets = { plain: null, html: null, wrap: false, reason: '' };
  const stats = { damaged: 0, rewritten: 0, chunkingMatters: 0 };
  const started = Date.now();

  for (let round = 0; round < ROUNDS; round++) {
    const [name, original] = pick(r, seeds);
    const [mutation, mutate] = pick(r, MUTATIONS);
    let input = mutate(original, r);
    if (r() < 0.3) input = mutate(input, r); // sometimes two at once
    const small = input.length <= 8000;
    const chunk = pick(r, small ? [1, 2, 3, 5, 13, 64, 4096, 1 << 20] : [3, 13, 64, 997, 4096, 1 << 20]);
    const where = `round ${round}: ${name} / ${mutation} / chunks of ${chunk}`;
    if (process.env.FUZZ_DUMP) writeFileSync(process.env.FUZZ_DUMP, input); // the input of the last (failing) round

    const src = chunkedReader(input, chunk);
    const { structure } = await analyzeMessage(src);
    sane(structure, input.length, where);
    // Broken input can split differently by chunking: mailsplit repeats the header lines of a part that a
    // closing delimiter ends before its blank line when both sit in one chunk; the byte count catches that
    // as damaged. Two whole answers must agree.
    const whole = chunk === 1 << 20 ? structure : (await analyzeMessage(chunkedReader(input))).structure;
    if (structure.damaged) stats.damaged++;
    else if (whole.damaged) stats.chunkingMatters++;
    else assert.equal(shape(structure), shape(whole), `${where}: chunking changed the structure`);

    // nothing asked: the marker and every input byte, once (read back like a file-backed spool half the
    // time; the tiny chunks are for the structure pass, the copy would only get slow with them)
    const out = r() < 0.5 ? chunkedReader(input, 4096) : chunkedReader(input);
    const copy = await collect(rewriteMessage(out, structure, none, TEST_FOOTER, { markerHeader: MARKER_LINE }));
    assert.ok(copy.subarray(copy.indexOf(0x0a) + 1).equals(input), `${where}: bytes lost or duplicated`);

    // asked for a footer: never throws; when placed, the output is whole and keeps every calendar part
    const cls = stubClassification(structure, []);
    const targets = chooseTargets(structure, cls);
    const plan = await planRewrite(out, structure, targets, TEST_FOOTER, { markerHeader: MARKER_LINE, boundary: '=_fuzz' });
    if (!plan.changed) continue;
    stats.rewritten++;
    const rewritten = await collect(plan.chunks());
    assert.equal(rewritten.length, plan.size, where);
    const again = (await analyzeMessage(chunkedReader(rewritten))).structure;
    if (whole.damaged) continue; // the output would carry the same unlucky bytes
    assert.equal(again.damaged, false, `${where}: rewrite broke the structure`);
    for (const p of structure.parts.filter((q) => !q.multipart && isClassifierPart(q) && q.index !== 0)) {
      assert.ok(rewritten.includes(input.subarray(p.headerStart, p.bodyEnd)), `${where}: calendar/TNEF part ${p.index} not copied whole`);
    }
    const wrapped = plan.applied.wrap ? structure.parts[targets.wrapPart ?? 0] : undefined;
    assert.equal(again.parts.length - structure.parts.length, wrapped ? (wrapped.multipart ? 1 : 2) : 0, `${where}: parts lost or added`);
  }
  t.diagnostic(`${ROUNDS} rounds in ${Date.now() - started} ms: ${stats.damaged} damaged, ${stats.rewritten} rewritten, ${stats.chunkingMatters} damaged only when whole`);
});
