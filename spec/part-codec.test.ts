// Quoted-printable encoding of footer lines: physical lines of at most 76 columns, no "-" opening a
// line, no character (unit) split by a soft break, decoding back to the line; the same text whether a
// line of one-byte units comes with its unit starts or without them (the usual footer, no bookkeeping),
// and whether "=" is found as the only escape of a printable line or byte by byte.
// Run: node --import tsx --test spec/part-codec.test.ts

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createBodyDecoder, decodeBase64, decodeQP, qpEncodeLine, type FooterLine, type LineBreak } from '../lib/part-codec.js';

const PRINTABLE = /^[\t\x20-\x7e]*$/;

/** Checks the QP rules for `line` and returns its encoding. */
function checkRules(line: FooterLine, lb: LineBreak, lineEnd: boolean, label: string): string {
  const enc = qpEncodeLine(line, lb, lineEnd);
  const physical = enc.split(lb);
  const unitStarts = new Set(line.starts ?? [...line.bytes.keys()]);
  let decodedSoFar = 0;
  for (const [i, l] of physical.entries()) {
    assert.ok(l.length <= 76, `${label}: ${l.length} columns`);
    assert.notEqual(l[0], '-', `${label}: a line opens with "-"`);
    decodedSoFar += decodeQP(Buffer.from(l, 'latin1')).length; // a final "=" is the soft break
    if (i < physical.length - 1) assert.ok(unitStarts.has(decodedSoFar), `${label}: soft break inside a unit at ${decodedSoFar}`);
  }
  // without lineEnd a final blank stays literal, and a decoder drops blanks at the end of the input
  if (lineEnd || !/[ \t]$/.test(line.bytes.toString('latin1'))) assert.ok(decodeQP(Buffer.from(enc, 'latin1')).equals(line.bytes), label);
  return enc;
}

/** One-byte units: with and without starts, printable flag set or not, the same text. */
function checkOneByteUnits(bytes: Buffer, lb: LineBreak, lineEnd: boolean): void {
  const label = JSON.stringify({ line: bytes.toString('latin1'), lb, lineEnd });
  const printable = PRINTABLE.test(bytes.toString('latin1'));
  const want = checkRules({ bytes, starts: null, printable }, lb, lineEnd, label);
  assert.equal(qpEncodeLine({ bytes, starts: [...bytes.keys()], printable: false }, lb, lineEnd), want, label);
  assert.equal(qpEncodeLine({ bytes, starts: null, printable: false }, lb, lineEnd), want, label);
}

test('QP footer lines: lines made to hit each rule', () => {
  const lines = [
    '', 'a', '-', '=', ' ', 'a ', '-- ', 'x'.repeat(75), 'x'.repeat(76), 'x'.repeat(300),
    '='.repeat(100), '-'.repeat(100), ' '.repeat(100), '\t'.repeat(90) + 'end',
    `${'x'.repeat(73)}=y${'z'.repeat(80)}`, `${'x'.repeat(74)}=y`, `${'x'.repeat(72)}==y`, `${'x'.repeat(75)}-y`,
    `${'word '.repeat(40)}tail`, `${'a'.repeat(60)} ${'b'.repeat(30)}`, `${'a'.repeat(70)} ${'b'.repeat(10)}`,
    `${'a'.repeat(50)} ${'='.repeat(9)}${'b'.repeat(20)}`, `${'a'.repeat(74)} -dash`,
    '<div data-x="1" style="margin-top:1em;border-top:1px solid #ccc">Meeting request: Review, Tue 1 Dec 2026 10:00 (W. Europe Standard Time)<br><a href="https://cal.example.org/e?uid=0400&amp;seq=0">View it</a></div>',
    'View it and your calendar on the web: https://cal.example.org/calendar/event?uid=040000008200E00074C5B7101A82E0080000000099&recurrence-id=&sequence=0',
    'caf\xe9 '.repeat(30), `${'\xe9'.repeat(40)} ${'x'.repeat(40)}`, '\x1b(B' + 'y'.repeat(80), 'a\xa0'.repeat(50),
  ];
  for (const line of lines) {
    for (const lb of ['\r\n', '\n'] as const) for (const lineEnd of [true, false]) checkOneByteUnits(Buffer.from(line, 'latin1'), lb, lineEnd);
  }
});

test('QP footer lines: random lines of one-byte units and of wider units (UTF-8, &#N;, ISO-2022 escapes)', () => {
  let seed = 7;
  const random = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x80000000;
  const pick = <T>(a: readonly T[]): T => a[Math.floor(random() * a.length)] as T;
  const alphabets = [[0x61, 0x20], [0x61, 0x20, 0x3d, 0x2d], [0x3d, 0x2d, 0x20, 0x09], [0x61, 0xe9, 0x20, 0x3d], Array.from({ length: 256 }, (_, c) => c)];
  for (let i = 0; i < 2000; i++) {
    const alphabet = alphabets[i % alphabets.length] as number[];
    const bytes = Buffer.from(Array.from({ length: Math.floor(random() * 400) }, () => pick(alphabet)));
    checkOneByteUnits(bytes, random() < 0.5 ? '\r\n' : '\n', random() < 0.5);
  }
  const wide = ['é', '’', '✓', '😀', '&#8217;', '\x1b(B'].map((c) => (c.length > 1 && c.charCodeAt(0) < 0x80 ? Buffer.from(c, 'latin1') : Buffer.from(c)));
  const narrow = ['a', ' ', '-', '=', '\t'].map((c) => Buffer.from(c));
  for (let i = 0; i < 2000; i++) {
    const units = Array.from({ length: Math.floor(random() * 150) }, () => (random() < 0.3 ? pick(wide) : pick(narrow)));
    const starts: number[] = [];
    units.reduce((at, u) => (starts.push(at), at + u.length), 0);
    const bytes = Buffer.concat(units);
    checkRules({ bytes, starts, printable: false }, random() < 0.5 ? '\r\n' : '\n', random() < 0.5, JSON.stringify(bytes.toString('latin1')));
  }
});

/** The cleaning reading of base64 every fast path must agree with: junk dropped, each padded piece decoded on its own. */
function base64Oracle(buf: Buffer): Buffer {
  const clean = buf.toString('latin1').replace(/[^A-Za-z0-9+/=]/g, '');
  return Buffer.concat(clean.split(/(?<==)(?=[^=])/).map((s) => Buffer.from(s, 'base64')));
}

test('base64: whole and chunked decoding read every body as the cleaning oracle does', () => {
  let seed = 7;
  const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2147483648), seed % n);
  const bodies: Buffer[] = [];
  for (let k = 0; k < 400; k++) {
    const data = Buffer.from(Array.from({ length: rand(300) }, () => rand(256)));
    let b64 = data.toString('base64');
    if (rand(4) === 0) b64 += Buffer.from([rand(256)]).toString('base64'); // padding in the middle
    if (rand(4) === 0) b64 = b64.replace(/=+$/, ''); // padding left out
    const width = [76, 64, 72, 4, 5, 998][rand(6)]!;
    const lb = ['\r\n', '\n', '\r'][rand(3)]!;
    let text = b64.replace(new RegExp(`.{1,${width}}`, 'g'), (l) => l + lb);
    if (rand(5) === 0) text = text.slice(0, rand(text.length + 1)); // cut anywhere
    if (rand(6) === 0) text = text.replace(/(.{10})/, `$1${[' ', '\t', '*', '\u00e9', '=\r\n='][rand(5)]}`); // junk
    bodies.push(Buffer.from(text, 'latin1'));
  }
  for (const [i, body] of bodies.entries()) {
    const want = base64Oracle(body);
    assert.ok(decodeBase64(body).equals(want), `body ${i} whole`);
    for (const size of [body.length || 1, 1, 3, 4, 57, 78, 80]) {
      const d = createBodyDecoder('base64');
      const out: Buffer[] = [];
      for (let at = 0; at < body.length; at += size) out.push(d.write(body.subarray(at, at + size)));
      out.push(d.end());
      assert.ok(Buffer.concat(out).equals(want), `body ${i} in chunks of ${size}`);
    }
  }
});
