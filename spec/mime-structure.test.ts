// The structure pass: offsets that add up to the raw bytes (fixtures and every corpus email), the
// same answer whatever the chunking, decoded classifier bodies, lenient parameters, ignoreEmbedded,
// and "damaged, never thrown" for garbage and truncated MIME.
// Run: node --import tsx --test spec/mime-structure.test.ts

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { simpleParser } from 'mailparser';
import { analyzeMessage, isClassifierPart } from '../lib/mime-structure.js';
import { parseHeaderValue } from '../lib/mime-params.js';
import { decodeBase64, decodeQP } from '../lib/part-codec.js';
import { Spool, spoolFromBuffer } from '../lib/spool.js';
import type { MessageStructure, MimePart } from '../lib/types.js';
import { chunkedReader, fixtureNames, readFixture } from './helpers/mail-fixtures.js';
import { CORPUS_DIR, CORPUS_SKIP_MESSAGE, corpusFile, expectedRows } from './helpers/corpus.js';

const CRLF_OR_LF = /^(?:\r\n|\n)?$/;

/** Checks every offset against the raw bytes; returns a problem description or null. */
function offsetProblems(raw: Buffer, s: MessageStructure): string | null {
  const { parts } = s;
  if (s.size !== raw.length) return 'size';
  let prevStart = -1;
  for (const p of parts) {
    if (!(p.headerStart <= p.bodyStart && p.bodyStart <= p.bodyEnd && p.bodyEnd <= raw.length)) return `part ${p.index} offsets out of order`;
    if (p.headerStart <= prevStart && p.index > 0) return `part ${p.index} not in document order`;
    prevStart = p.headerStart;
    const head = raw.subarray(p.headerStart, p.bodyStart).toString('latin1');
    if (p.bodyStart < raw.length && !/(?:^|\n)\r?\n$/.test(head) && head !== '') return `part ${p.index} header block does not end with an empty line`;
    if (p.parent !== null) {
      const b = parts[p.parent].params.boundary;
      // what precedes a child: "--boundary", optional blanks, a line break
      const before = raw.subarray(Math.max(0, p.headerStart - b.length - 1100), p.headerStart).toString('latin1');
      const line = before.slice(before.lastIndexOf('\n', before.length - 2) + 1);
      if (!new RegExp(`^--${b.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}[ \\t]*\\r*\\n$`).test(line)) return `part ${p.index} is not preceded by its delimiter`;
      if (p.bodyEnd > parts[p.parent].bodyEnd) return `part ${p.index} ends after its parent`;
    }
    if (!p.multipart) {
      // what follows a leaf in a multipart: a line break and some delimiter (the last one may sit at the end)
      const next = raw.subarray(p.bodyEnd, p.bodyEnd + 2 + 1000).toString('latin1');
      if (p.parent !== null && !/^(?:\r\n|\n)--/.test(next) && !/^--/.test(next) && !CRLF_OR_LF.test(next)) return `part ${p.index} body does not end at a delimiter`;
    }
  }
  return null;
}

async function analyzeBuf(buf: Buffer, chunk?: number) {
  return analyzeMessage(chunk ? chunkedReader(buf, chunk) : spoolFromBuffer(buf));
}

const shape = (s: MessageStructure) => s.parts.map((p) => [p.contentType, p.headerStart, p.bodyStart, p.bodyEnd, p.decoded?.toString('base64') ?? null]);

function decodeLeaf(raw: Buffer, p: MimePart): Buffer {
  const body = raw.subarray(p.bodyStart, p.bodyEnd);
  return p.encoding === 'base64' ? decodeBase64(body) : p.encoding === 'quoted-printable' ? decodeQP(body) : body;
}

test('fixtures: offsets match the raw bytes and the structure is whole', async () => {
  for (const name of fixtureNames()) {
    const raw = readFixture(name);
    const { structure } = await analyzeBuf(raw);
    assert.equal(structure.damaged, false, `${name} damaged`);
    assert.equal(offsetProblems(raw, structure), null, name);
    assert.equal(structure.parts[0].bodyEnd, raw.length, `${name}: root body runs to the end`);
  }
});

test('fixtures: the same structure whatever the chunk size (1 byte up), and from a file-backed spool', async () => {
  for (const name of fixtureNames()) {
    const raw = readFixture(name);
    const whole = shape((await analyzeBuf(raw)).structure);
    for (const k of [1, 2, 3, 7, 64, 1000]) assert.deepEqual(shape((await analyzeBuf(raw, k)).structure), whole, `${name} in chunks of ${k}`);
    const spool = new Spool({ memoryLimit: 0 });
    await spool.write(raw);
    await spool.finish();
    try {
      assert.deepEqual(shape((await analyzeMessage(spool)).structure), whole, `${name} from a file`);
    } finally {
      await spool.dispose();
    }
  }
});

test('corpus: every email adds up to its size; undamaged ones match mailparser for calendar parts and attachments', async (t) => {
  if (!CORPUS_DIR) return t.skip(CORPUS_SKIP_MESSAGE);
  let checked = 0;
  for (const row of expectedRows()) {
    const raw = corpusFile(row.path);
    if (!raw) continue;
    const { structure } = await analyzeBuf(raw);
    if (structure.damaged) {
      t.diagnostic(`${row.path}: damaged (${row.kind})`);
      continue;
    }
    assert.equal(offsetProblems(raw, structure), null, row.path);
    assert.deepEqual(shape((await analyzeBuf(raw, 7)).structure), shape(structure), `${row.path} in chunks of 7`);
    const parsed = await simpleParser(raw);
    for (const p of structure.parts.filter((q) => !q.multipart && (isClassifierPart(q) || q.disposition === 'attachment'))) {
      const mine = decodeLeaf(raw, p);
      const theirs = parsed.attachments.filter((a) => a.contentType === p.contentType);
      if (p.decoded && !p.truncated) assert.ok(p.decoded.equals(mine), `${row.path} part ${p.index}: kept decoded bytes`);
      // mailparser may strip a trailing line break, or read a part as text: accept any of its attachments of the type
      if (theirs.length) assert.ok(theirs.some((a) => a.content.equals(mine) || a.content.toString('latin1').trimEnd() === mine.toString('latin1').trimEnd()), `${row.path} part ${p.index} (${p.contentType}) decodes like mailparser`);
    }
    checked++;
  }
  assert.ok(checked >= 30, `only ${checked} corpus emails checked`);
});

test('classifier parts keep decoded bytes (transfer encoding removed), capped with truncated set', async () => {
  const raw = readFixture('exchange-online');
  const { structure } = await analyzeBuf(raw);
  const cal = structure.parts.find((p) => p.contentType === 'text/calendar')!;
  assert.match(cal.decoded!.toString('utf8'), /^BEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\n[\s\S]*SUMMARY:Réunion de planification/);
  assert.equal(cal.truncated, false);
  assert.equal(structure.parts.find((p) => p.contentType === 'text/plain')!.decoded, undefined, 'text bodies are not kept');
  const capped = (await analyzeMessage(spoolFromBuffer(raw), { maxDecoded: 20 })).structure.parts[cal.index];
  assert.equal(capped.decoded!.length, 20);
  assert.equal(capped.truncated, true);
  const tnef = (await analyzeBuf(readFixture('tnef-meeting'))).structure.parts.find((p) => p.filename === 'winmail.dat')!;
  assert.equal(tnef.decoded!.readUInt32LE(0), 0x223e9f78, 'TNEF signature');
});

test('message/rfc822 stays opaque: a forwarded invite shows no calendar part', async () => {
  const { structure } = await analyzeBuf(readFixture('forwarded-invite'));
  assert.deepEqual(structure.parts.map((p) => p.contentType), ['multipart/mixed', 'text/plain', 'message/rfc822']);
  assert.equal(structure.parts[2].multipart, false);
});

test('part fields: lenient parameters, filenames, lower-case charset and encoding, root headers', async () => {
  const zoom = (await analyzeBuf(readFixture('zoom'))).structure.parts;
  const cal = zoom.find((p) => p.contentType === 'text/calendar' && p.params.method)!;
  assert.equal(cal.params.method, 'REQUEST');
  assert.equal(cal.charset, 'utf-8');
  assert.equal(cal.encoding, 'base64');
  const ics = zoom.find((p) => p.filename === 'invite.ics')!;
  assert.equal(ics.disposition, 'attachment');
  const { structure, headers } = await analyzeBuf(readFixture('exchange-online'));
  assert.equal(structure.parts[0].params.boundary, '_000_AM0PR01MB1234_', 'folded Content-Type header');
  assert.ok(headers.some(([k, v]) => k === 'thread-topic' && v === 'Planning review'));
  assert.deepEqual(structure.parts.map((p) => p.depth), [0, 1, 1, 1]);
});

test('parseHeaderValue: lenient and RFC 2231 / 2047 aware', () => {
  assert.deepEqual(parseHeaderValue('text/calendar; method=REQUEST;;'), { value: 'text/calendar', params: { method: 'REQUEST' } });
  assert.deepEqual(parseHeaderValue('Text/Plain; CharSet="ISO-8859-1" (latin); format=flowed').params, { charset: 'ISO-8859-1', format: 'flowed' });
  assert.equal(parseHeaderValue("attachment; filename*0*=utf-8''R%C3%A9union; filename*1=.ics").params.filename, 'Réunion.ics');
  assert.equal(parseHeaderValue("attachment; filename*=iso-8859-1'fr'caf%E9.ics").params.filename, 'café.ics');
  assert.equal(parseHeaderValue('attachment; filename="=?UTF-8?B?w6l0w6kuaWNz?="').params.filename, 'été.ics');
  assert.equal(parseHeaderValue('application/octet-stream; name="=?iso-8859-1?Q?caf=E9_1.ics?="').params.name, 'café 1.ics');
  assert.deepEqual(parseHeaderValue('garbage'), { value: 'garbage', params: {} });
  assert.deepEqual(parseHeaderValue(''), { value: '', params: {} });
});

test('parseHeaderValue: encoded words split inside a character, RFC 2231 decoded once, junk after a closing quote', () => {
  // mailers split a long name into words at byte boundaries: adjacent words of one charset decode together (libmime does)
  assert.equal(parseHeaderValue('attachment; filename="=?UTF-8?B?ww==?= =?UTF-8?B?qQ==?=.ics"').params.filename, 'é.ics');
  assert.equal(parseHeaderValue('attachment; filename="=?UTF-8?Q?=C3?= =?UTF-8?Q?=A9t=C3=A9.ics?="').params.filename, 'été.ics');
  assert.equal(parseHeaderValue('attachment; filename="=?UTF-8?Q?caf?= =?ISO-8859-1?Q?=E9?=.ics"').params.filename, 'café.ics');
  // Q: only "=XX" is an escape, a literal "%" stays
  assert.equal(parseHeaderValue('attachment; filename="=?UTF-8?Q?50%41_off.ics?="').params.filename, '50%41 off.ics');
  // an RFC 2231 value is decoded once, as mailsplit does: what it decodes to is not read for encoded words again
  assert.equal(parseHeaderValue("attachment; filename*=utf-8''a%3D%3Futf-8%3FQ%3F%3D2Eics%3F%3D").params.filename, 'a=?utf-8?Q?=2Eics?=');
  assert.equal(parseHeaderValue("text/plain; name*0*=utf-8''a%3D%3Futf-8%3FQ%3F; name*1=%3D2Eics?=").params.name, 'a=?utf-8?Q?%3D2Eics?=');
  // a parameter value is a token or a quoted string: what follows the closing quote is not part of it (libmime, Python)
  assert.equal(parseHeaderValue('text/plain; charset="utf-8"x; format=flowed').params.charset, 'utf-8');
  assert.equal(parseHeaderValue('attachment; filename="a \\"b\\".txt"junk').params.filename, 'a "b".txt');
  assert.equal(parseHeaderValue('attachment; filename="a.txt').params.filename, 'a.txt'); // unterminated: the rest
});

test('garbage and truncated MIME: never throws, says damaged', async () => {
  const cases: Array<[string, Buffer, boolean]> = [
    ['empty', Buffer.alloc(0), false],
    ['binary junk', Buffer.from(Array.from({ length: 5000 }, (_, i) => (i * 7919) % 256)), false],
    ['headers only, no blank line', Buffer.from('Subject: x\r\nFrom: a@b'), false],
    ['no closing boundary', Buffer.from('Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\ntext\r\n'), true],
    ['multipart without boundary', Buffer.from('Content-Type: multipart/mixed\r\n\r\n--b\r\n\r\ntext\r\n--b--\r\n'), true],
    ['child headers never end', Buffer.from('Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n--b--\r\n'), false],
    ['inner multipart left open', Buffer.from('Content-Type: multipart/mixed; boundary=o\r\n\r\n--o\r\nContent-Type: multipart/alternative; boundary=i\r\n\r\n--i\r\n\r\nx\r\n--o--\r\n'), true],
    ['message cut inside a part', Buffer.from('Content-Type: multipart/mixed; boundary=o\r\n\r\n--o\r\nContent-Type: multipart/alternative; boundary=i\r\n\r\n--i\r\n\r\nx\r\n--i--\r\n--o\r\n\r\ncut'), true],
  ];
  for (const [name, raw, damaged] of cases) {
    const { structure } = await analyzeBuf(raw);
    assert.equal(structure.size, raw.length, name);
    assert.ok(structure.parts.length >= 1, name);
    if (damaged) assert.equal(structure.damaged, true, `${name} should be damaged`);
  }
  const full = readFixture('google');
  const bodyStart = (await analyzeBuf(full)).structure.parts[0].bodyStart;
  for (let cut = bodyStart; cut < full.length; cut += 97) {
    const { structure } = await analyzeBuf(full.subarray(0, cut));
    if (cut < full.length - 30) assert.equal(structure.damaged, true, `google cut at ${cut}`);
  }
});

test('an outer multipart left open at the very end is tolerated when the inner one closed', async () => {
  const raw = Buffer.from(
    'Content-Type: multipart/mixed; boundary=o\r\n\r\n--o\r\nContent-Type: multipart/alternative; boundary=i\r\n\r\n' +
      '--i\r\nContent-Type: text/plain\r\n\r\nhello\r\n--i\r\nContent-Type: text/calendar; method=REQUEST\r\n\r\nBEGIN:VCALENDAR\r\n--i--\r\n',
  );
  const { structure } = await analyzeBuf(raw);
  assert.equal(structure.damaged, false);
  assert.equal(offsetProblems(raw, structure), null);
});

test('an empty body followed by the delimiter line break is an empty body, not damage (CRLF and LF, any chunking)', async () => {
  for (const lb of ['\r\n', '\n']) {
    const raw = Buffer.from(['From: a@example.org', 'MIME-Version: 1.0', 'Content-Type: multipart/alternative; boundary="b1"', '', '--b1',
      'Content-Type: text/plain; charset=utf-8', '', '', '--b1', 'Content-Type: text/calendar; method=REQUEST', '',
      'BEGIN:VCALENDAR', 'METHOD:REQUEST', 'END:VCALENDAR', '', '--b1--', ''].join(lb));
    for (const chunk of [1, 7, 64, raw.length]) {
      const { structure } = await analyzeMessage(chunkedReader(raw, chunk));
      assert.equal(structure.damaged, false, `${JSON.stringify(lb)} chunk ${chunk}: not damaged`);
      assert.equal(offsetProblems(raw, structure), null);
      const text = structure.parts[1]!;
      assert.equal(text.contentType, 'text/plain');
      assert.equal(text.bodyEnd - text.bodyStart, 0, 'the text body is empty');
      assert.equal(raw.subarray(text.bodyEnd, text.bodyEnd + lb.length + 4).toString(), `${lb}--b1`, 'the delimiter keeps its line break');
    }
  }
});
