// The skeleton (lib/mime-skeleton.ts) is only a faster way to feed mailsplit: the structure pass must give
// exactly what the whole message gives — offsets, headers, decoded calendar bytes, damage and its reasons.
// In memory the pass reads the skeleton; streamed in one chunk it reads every byte: the two must agree.
// Run: node --import tsx --test spec/mime-skeleton.test.ts

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { analyzeMessage, damageReasons, type AnalyzeResult } from '../lib/mime-structure.js';
import { skeleton, SkeletonMap } from '../lib/mime-skeleton.js';
import { chunkedReader, fixtureNames, readFixture } from './helpers/mail-fixtures.js';
import { corpusFile, expectedRows } from './helpers/corpus.js';

const everything = (r: AnalyzeResult) =>
  JSON.stringify({ ...r, why: damageReasons.get(r.structure) }, (_k, v) => (v?.type === 'Buffer' ? Buffer.from(v.data).toString('base64') : v));

async function agree(raw: Buffer, what: string): Promise<void> {
  const viaSkeleton = await analyzeMessage(chunkedReader(raw));
  const whole = await analyzeMessage(chunkedReader(raw, 1 << 20)); // one write of every byte
  assert.equal(everything(viaSkeleton), everything(whole), what);
}

const body = (line: string, n: number) => Array.from({ length: n }, (_, i) => `${line} ${i} ${'words of body text '.repeat(3)}`).join('\r\n');

// shapes the skeleton has to get right: runs cut right before a delimiter, an empty last line (the
// delimiter's line break), LF-only mail, a "\r--" delimiter, a header block without its empty line,
// "--" lines that are not delimiters, an unterminated last line, nested multiparts
const CRAFTED: Array<[string, string]> = [
  ['empty line before the delimiter', `Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n${body('text', 40)}\r\n\r\n--b--\r\n`],
  ['LF only', `Content-Type: multipart/alternative; boundary="b"\n\n--b\nContent-Type: text/plain\n\n${body('text', 40).replace(/\r/g, '')}\n--b\nContent-Type: text/calendar; method=REQUEST\n\nBEGIN:VCALENDAR\nMETHOD:REQUEST\nEND:VCALENDAR\n--b--\n`],
  ['lone CR before a delimiter', `Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\n${body('x', 30)}\r\n\r--b\r\nContent-Type: text/calendar\r\n\r\n${body('y', 30)}\r\n--b--\r\n`],
  ['no empty line after part headers', `Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\n${body('t', 30)}\r\n--b\r\nContent-Type: text/plain\r\n${body('Header-ish: value', 30)}\r\n--b--\r\n`],
  ['dash lines in a body', `Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\n${body('a', 20)}\r\n--not-the-boundary\r\n${body('b', 20)}\r\n-- \r\n${body('c', 20)}\r\n--b--\r\n`],
  ['unterminated last line', `Content-Type: text/plain\r\n\r\n${body('text', 40)}\r\nno line break at the end`],
  ['nested, preamble and epilogue', `Content-Type: multipart/mixed; boundary=o\r\n\r\n${body('preamble', 20)}\r\n--o\r\nContent-Type: multipart/alternative; boundary=i\r\n\r\n--i\r\n\r\n${body('p', 30)}\r\n--i\r\nContent-Type: text/html\r\n\r\n${body('<p>h</p>', 30)}\r\n--i--\r\n${body('between', 20)}\r\n--o--\r\n${body('epilogue', 20)}\r\n`],
  ['closing delimiter ends a header block', `Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n${body('t', 30)}\r\n--b\r\nContent-Type: text/calendar\r\nX-A: 1\r\n${body('Y', 30)}\r\n--b--\r\n`],
];

test('skeleton: the structure of every fixture, corpus email and crafted shape is the whole message\'s', async () => {
  for (const name of fixtureNames()) await agree(readFixture(name), name);
  for (const row of expectedRows()) {
    const raw = corpusFile(row.path);
    if (raw) await agree(raw, row.path);
  }
  for (const [what, text] of CRAFTED) {
    const raw = Buffer.from(text, 'latin1');
    assert.ok(skeleton(raw).gaps.length > 0, `${what}: nothing left out, the case tests nothing`);
    await agree(raw, what);
    // cut anywhere, the same holds (damaged or not)
    for (let cut = 1; cut < raw.length; cut += 97) await agree(raw.subarray(0, cut), `${what}, first ${cut} bytes`);
  }
});

test('skeleton: leaves out only whole lines inside runs, and maps every byte back once', () => {
  const raw = Buffer.from(CRAFTED[6]![1], 'latin1');
  const skel = skeleton(raw);
  assert.ok(skel.bytes.length < raw.length / 2, 'the runs are cut down');
  const map = new SkeletonMap(raw, skel);
  const back: Buffer[] = [];
  for (let at = 0; at < skel.bytes.length; at += 50) back.push(map.take(Math.min(50, skel.bytes.length - at)));
  assert.ok(map.exact());
  assert.ok(Buffer.concat(back).equals(raw), 'the chunks map back to the whole message');
  // a chunk that ends where a run was cut (its last line trimmed away as a delimiter's line break) takes the run along
  const first = skel.gaps[0]!;
  assert.equal(new SkeletonMap(raw, skel).take(first.at).length, first.at + first.len);
  for (const g of skel.gaps) {
    assert.equal(skel.bytes[g.at - 1], 0x0a, 'a gap starts at a line start');
    assert.notEqual(skel.bytes[g.at], undefined, 'a run keeps its last line');
  }
  assert.equal(skeleton(Buffer.from('Subject: short\r\n\r\nhi\r\n')).gaps.length, 0, 'a short message is read as it is');
});
