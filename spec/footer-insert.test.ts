// The footer rewriter: golden files for every fixture (fixtures/golden, regenerated on purpose only with
// spec/helpers/regen-golden.ts), property checks against an independent parser (mailparser) that do not
// depend on the golden files, target choice, and the per-encoding edge cases.
// Run: node --import tsx --test spec/footer-insert.test.ts

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { simpleParser, type ParsedMail } from 'mailparser';
import { analyzeMessage, isClassifierPart } from '../lib/mime-structure.js';
import { chooseTargets, hasMarker, planRewrite, rewriteMessage, RewriteRefused, type Targets } from '../lib/footer-insert.js';
import { appendTextFooter, footerLines, insertHtmlFooter } from '../lib/part-footer.js';
import { breakTextLines } from '../lib/footer-lines.js';
import { charsetInfo, decodeQP } from '../lib/part-codec.js';
import { Spool } from '../lib/spool.js';
import type { MessageStructure, MimePart } from '../lib/types.js';
import { CORPUS_DIR, CORPUS_SKIP_MESSAGE, corpusFile, expectedRows } from './helpers/corpus.js';
import {
  chunkedReader, collect, fixtureNames, GOLDEN_DIR, MARKER_LINE, processMessage, readFixture, stubClassification, TEST_BOUNDARY, TEST_FOOTER,
  wantsFooter,
} from './helpers/mail-fixtures.js';

const URL = 'https://cal.example.org/m/k1.AbC-123_x?x=1&y=2';
const BODY_FIELDS = new Set(['content-type', 'content-transfer-encoding', 'content-disposition', 'content-id', 'content-description', 'mime-version']);

const partBytes = (raw: Buffer, p: MimePart) => raw.subarray(p.headerStart, p.bodyEnd);
const headBytes = (raw: Buffer, p: MimePart) => raw.subarray(p.headerStart, p.bodyStart);

/** Every property a rewritten message must have; `name` for messages. Independent of golden files. */
async function checkProperties(name: string, before: Buffer, after: Buffer, s1: MessageStructure): Promise<void> {
  const { structure: s2 } = await analyzeMessage(chunkedReader(after));
  assert.equal(s2.damaged, false, `${name}: output parses whole`);
  const [a, b]: ParsedMail[] = [await simpleParser(before), await simpleParser(after)];

  // headers: exactly one added line (the marker) first; a wrapped lone body only moves its body fields
  const wrappedRoot = !s1.parts[0].multipart && s2.parts[0].multipart;
  assert.deepEqual(b.headerLines[0], { key: 'x-calendar-link', line: MARKER_LINE }, `${name}: marker first`);
  const keep = (l: { key: string }) => !wrappedRoot || !BODY_FIELDS.has(l.key);
  assert.deepEqual(b.headerLines.slice(1).filter(keep), a.headerLines.filter(keep), `${name}: original headers unchanged`);
  assert.equal(b.headerLines.filter((l) => l.key === 'x-calendar-link').length, 1, `${name}: one marker`);

  // attachments and calendar parts decode identically, and keep their raw bytes
  assert.equal(b.attachments.length, a.attachments.length, `${name}: attachment count`);
  a.attachments.forEach((att, i) => {
    assert.ok(b.attachments[i].content.equals(att.content), `${name}: attachment ${i} content`);
    assert.equal(b.attachments[i].contentType, att.contentType, `${name}: attachment ${i} type`);
  });
  const raw1 = s1.parts.filter((p) => !p.multipart && (isClassifierPart(p) || p.disposition === 'attachment')).map((p) => (wrappedRoot && p.index === 0 ? before.subarray(p.bodyStart, p.bodyEnd) : partBytes(before, p)));
  const raw2 = s2.parts.filter((p) => !p.multipart && (isClassifierPart(p) || p.disposition === 'attachment')).map((p) => (wrappedRoot ? after.subarray(p.bodyStart, p.bodyEnd) : partBytes(after, p)));
  assert.deepEqual(raw2.map((x) => x.toString('base64')), raw1.map((x) => x.toString('base64')), `${name}: calendar/attachment bytes identical`);

  // every original part keeps its header block byte for byte: charset, CTE and format=flowed unchanged
  if (!wrappedRoot) {
    const added = s2.parts.length - s1.parts.length;
    assert.ok(added === 0 || added === 1, `${name}: at most one part added`);
    const heads2 = s2.parts.map((p) => headBytes(after, p).toString('latin1'));
    let j = 0;
    for (const p of s1.parts) {
      const h = headBytes(before, p).toString('latin1');
      if (p.index === 0) {
        assert.equal(heads2[0], MARKER_LINE + (h.includes('\r\n') ? '\r\n' : '\n') + h, `${name}: root header`);
        j = 1;
        continue;
      }
      while (j < heads2.length && heads2[j] !== h) j++;
      assert.ok(j < heads2.length, `${name}: part ${p.index} header block kept`);
      j++;
    }
  }

  // text: the original text with the footer block added after a line break; nothing mis-encoded
  if (a.text !== undefined && b.text !== undefined && !wrappedRoot && s2.parts.length === s1.parts.length) {
    const at = b.text.indexOf('-- \nMeeting request:');
    if (at >= 0) {
      const urlEnd = b.text.indexOf(URL, at);
      assert.ok(urlEnd > at, `${name}: link in text`);
      const block = b.text.slice(at, urlEnd + URL.length);
      assert.ok(!block.includes('\uFFFD') && !block.replace(URL, '').includes('?'), `${name}: nothing mis-encoded in text footer`);
      assert.ok(at === 0 || b.text[at - 1] === '\n', `${name}: footer starts on a line of its own`);
      const squash = (x: string) => x.replace(/\s+/g, ' ').trim();
      assert.equal(squash(b.text.slice(0, at) + b.text.slice(urlEnd + URL.length)), squash(a.text), `${name}: text otherwise unchanged`);
      assert.ok(b.text.slice(0, at).replace(/\s+$/, '').length > 0 || a.text.trim() === '', `${name}: footer after the text`);
    }
  } else if (b.text !== undefined) {
    assert.ok(b.text.includes(URL), `${name}: link in the added text part`);
  }

  // html: the footer sits right before </body> (else </html>, else the end); without it the html is the original
  if (typeof a.html === 'string' && typeof b.html === 'string' && a.html !== b.html) {
    const m = /<div data-calfooter="v1"[\s\S]*?<\/div>/.exec(b.html);
    assert.ok(m, `${name}: html footer present`);
    const after2 = b.html.slice(m.index + m[0].length);
    // mailparser joins several html parts into one string: the position check needs a single html part
    const texts = s1.parts.filter((p) => !p.multipart && /^text\/(?:plain|html)$/.test(p.contentType) && p.disposition !== 'attachment');
    const single = texts.length === 1 || (texts.length === 2 && texts[0].parent === texts[1].parent && s1.parts[texts[0].parent ?? 0].contentType === 'multipart/alternative');
    if (!single) { /* position checked by the golden files and the part-level tests */ }
    else if (/<\/body\s*>/i.test(a.html)) assert.match(after2, /^\s*<\/body\s*>/i, `${name}: footer right before </body>`);
    else if (/<\/html\s*>/i.test(a.html)) assert.match(after2, /^\s*<\/html\s*>/i, `${name}: footer right before </html>`);
    else assert.match(after2, /^\s*$/, `${name}: footer at the end`);
    // the footer may have been given lines of its own (7bit/8bit, to stay under 998 bytes)
    const pre = b.html.slice(0, m.index);
    const candidates = [pre + after2, pre + after2.replace(/^\r?\n/, ''), pre.replace(/\r?\n$/, '') + after2.replace(/^\r?\n/, '')];
    assert.ok(candidates.includes(a.html), `${name}: html otherwise unchanged`);
    assert.ok(m[0].includes(URL.replace('&', '&amp;')), `${name}: link in html`);
  }

  // transport rules
  for (const line of after.toString('latin1').split('\n')) assert.ok(line.replace(/\r$/, '').length <= 998, `${name}: a line over 998 bytes`);
  for (const p of s2.parts.filter((q) => !q.multipart && q.encoding === '7bit')) {
    const body = after.subarray(p.bodyStart, p.bodyEnd);
    const was = s1.parts.find((q) => headBytes(before, q).equals(headBytes(after, p)));
    if (was && before.subarray(was.bodyStart, was.bodyEnd).every((c) => c < 0x80)) assert.ok(body.every((c) => c < 0x80), `${name}: 7bit part ${p.index} stays ASCII`);
  }

  // a second pass changes nothing
  const again = await processMessage(after);
  assert.equal(again.changed, false, `${name}: second pass`);
  assert.ok(again.out.equals(after));
}

test('golden files: every fixture, byte for byte', async () => {
  for (const name of fixtureNames()) {
    const golden = join(GOLDEN_DIR, `${name}.eml`);
    assert.ok(existsSync(golden), `${golden} missing: run node --import tsx spec/helpers/regen-golden.ts`);
    const r = await processMessage(readFixture(name), { wantFooter: wantsFooter(name) });
    assert.ok(r.out.equals(readFileSync(golden)), `${name}: output differs from its golden file (${r.decision})`);
  }
});

test('fixtures: which parts get the footer', async () => {
  const expect: Record<string, string> = {
    'exchange-online': 'plain+html', 'exchange-12k': 'plain+html', google: 'plain+html', thunderbird: 'plain', sogo: 'html', zoom: 'html',
    'lone-calendar': 'wrap', 'alternative-calendar-only': 'wrap', 'ics-attachment-only': 'plain', cancel: 'plain', 'html-no-body-tag': 'html',
    'html-only-html-close': 'html', 'shift-jis': 'plain', 'iso-2022-jp': 'plain+html', 'base64-text': 'plain+html', 'long-lines': 'plain+html',
    'content-class-custom': 'plain', 'tnef-meeting': 'plain', 'tnef-custom-form': 'plain', 'qp-edges': 'plain+html', 'lf-only': 'plain+html',
    'related-html': 'plain+html', reply: 'same', 'forwarded-invite': 'same', 'smime-signed': 'same', 'already-marked': 'same',
    'non-calendar-meeting': 'same', 'utf16-text': 'same',
  };
  for (const name of fixtureNames()) {
    const r = await processMessage(readFixture(name), { wantFooter: wantsFooter(name) });
    const a = r.plan?.applied;
    const got = !r.changed || !a ? 'same' : a.wrap ? 'wrap' : [a.plain !== null ? 'plain' : '', a.html !== null ? 'html' : ''].filter(Boolean).join('+');
    assert.equal(got, expect[name] ?? '(add to the table)', `${name}: ${r.decision}`);
    if (!r.changed) assert.ok(r.out.equals(readFixture(name)), `${name}: unchanged bytes`);
  }
});

test('fixtures: properties checked with mailparser', async () => {
  for (const name of fixtureNames()) {
    const raw = readFixture(name);
    const r = await processMessage(raw, { wantFooter: wantsFooter(name) });
    if (r.changed) await checkProperties(name, raw, r.out, r.structure);
  }
});

test('format=flowed stays flowed: empty line before the footer, no footer line ends in a space but "-- "', async () => {
  const r = await processMessage(readFixture('google'));
  const { structure } = await analyzeMessage(chunkedReader(r.out));
  const p = structure.parts.find((q) => q.contentType === 'text/plain')!;
  assert.equal(p.params.format, 'flowed');
  const text = r.out.subarray(p.bodyStart, p.bodyEnd).toString('utf8');
  const tail = text.slice(text.indexOf('guest list. \r\n'));
  assert.match(tail, /^guest list\. \r\n\r\n-- \r\n/);
  for (const line of tail.split('\r\n').slice(2)) if (line !== '-- ') assert.doesNotMatch(line, / $/);
});

test('corpus: footer placed with the stand-in classification keeps every property', async (t) => {
  if (!CORPUS_DIR) return t.skip(CORPUS_SKIP_MESSAGE);
  let changed = 0;
  for (const row of expectedRows()) {
    const raw = corpusFile(row.path);
    if (!raw) continue;
    const r = await processMessage(raw);
    if (row.expected === 'F') assert.ok(r.changed, `${row.path}: F row but nothing placed (${r.decision})`);
    if (!r.changed) {
      assert.ok(r.out.equals(raw));
      continue;
    }
    changed++;
    await checkProperties(row.path, raw, r.out, r.structure);
  }
  t.diagnostic(`${changed} corpus emails rewritten and checked`);
});

// ----- edge cases of single parts -------------------------------------------------------------

const part = (over: Partial<MimePart>): MimePart => ({
  index: 1, parent: 0, depth: 1, contentType: 'text/plain', params: {}, disposition: null, filename: null, charset: 'utf-8',
  encoding: '7bit', multipart: false, headerStart: 0, bodyStart: 0, bodyEnd: 0, headers: [], ...over,
});
const body = (r: ReturnType<typeof appendTextFooter>) => (r.ok ? r.body.toString('latin1') : `SKIP: ${r.why}`);

test('quoted-printable text: existing encoded lines untouched, soft break at the end completed', () => {
  const p = part({ encoding: 'quoted-printable' });
  const f = 'Footer';
  assert.equal(body(appendTextFooter(p, Buffer.from('a=\r\nb'), f, '\r\n', [])), 'a=\r\nb\r\n\r\nFooter');
  assert.equal(body(appendTextFooter(p, Buffer.from('a soft end='), f, '\r\n', [])), 'a soft end=\r\n\r\n\r\nFooter');
  assert.equal(body(appendTextFooter(p, Buffer.from('line\r\n'), f, '\r\n', [])), 'line\r\n\r\nFooter\r\n');
  assert.equal(body(appendTextFooter(p, Buffer.from('soft then break=\r\n'), f, '\r\n', [])), 'soft then break=\r\n\r\n\r\nFooter');
  assert.equal(body(appendTextFooter(p, Buffer.from(''), f, '\r\n', [])), 'Footer');
  // bodies that decode to nothing still leave a physical line open: it is ended before the footer
  assert.equal(body(appendTextFooter(p, Buffer.from('='), f, '\r\n', [])), '=\r\nFooter');
  assert.equal(body(appendTextFooter(p, Buffer.from('  '), f, '\r\n', [])), '  \r\nFooter');
  for (const b of ['a=\r\nb', 'a soft end=', 'line\r\n', 'soft then break=\r\n', 'x\r\n\r\n', '=', '= ', '  ', '=\r\n']) {
    const r = appendTextFooter(p, Buffer.from(b), f, '\r\n', []);
    assert.ok(r.ok);
    const decoded = decodeQP(r.body).toString('latin1');
    assert.ok(decoded.startsWith(decodeQP(Buffer.from(b)).toString('latin1')), b);
    assert.match(decoded, /(?:^(?:\r\n)?|\r\n\r\n)Footer(?:\r\n)?$/, b); // blanks alone: a blank line first
  }
});

test('quoted-printable: footer wrapped at 76, never inside a character, no line starting with "-"', () => {
  const long = `${'é'.repeat(60)} -- ${'x'.repeat(200)}`;
  const r = appendTextFooter(part({ encoding: 'quoted-printable' }), Buffer.from('body'), `-- \n${long}`, '\r\n', []);
  assert.ok(r.ok);
  const lines = r.body.toString('latin1').split('\r\n');
  for (const l of lines) {
    assert.ok(l.length <= 76, l);
    assert.doesNotMatch(l, /^-/);
    assert.doesNotMatch(l, /=C3=?$/, 'a soft break right after a lead byte');
  }
  assert.equal(decodeQP(r.body).toString('utf8'), `body\r\n\r\n-- \r\n${long}`);
});

test('quoted-printable html: inserted with soft breaks right before </body>, even when </body> is encoded', () => {
  const p = part({ contentType: 'text/html', encoding: 'quoted-printable' });
  const src = '<p>caf=C3=A9</p>=3C/body></html>';
  const r = insertHtmlFooter(p, Buffer.from(src), '<div>Ünï</div>', '\r\n', []);
  assert.ok(r.ok);
  assert.equal(decodeQP(r.body).toString('utf8'), '<p>café</p><div>Ünï</div></body></html>');
  assert.ok(r.body.toString('latin1').startsWith('<p>caf=C3=A9</p>=\r\n'));
});

test('html: a </body> or </html> inside a comment is not where the footer goes', () => {
  const p = part({ contentType: 'text/html', encoding: '8bit' });
  const cases: Array<[string, string]> = [
    ['<html><body>x</body></html><!-- </body> -->', '<html><body>x<div>F</div></body></html><!-- </body> -->'],
    ['<html><body>x<!--[if mso]></body><![endif]--></body></html>', '<html><body>x<!--[if mso]></body><![endif]--><div>F</div></body></html>'],
    ['<p>x</p><!-- </html> unclosed', '<p>x</p><!-- </html> unclosed<div>F</div>'],
    ['<!-- a --><p>x</p></body>', '<!-- a --><p>x</p><div>F</div></body>'],
  ];
  for (const [src, want] of cases) assert.equal(body(insertHtmlFooter(p, Buffer.from(src), '<div>F</div>', '\r\n', [])), want, src);
});

test('quoted-printable html: a </body> inside a comment that opens long before the end is not where the footer goes', () => {
  const p = part({ contentType: 'text/html', encoding: 'quoted-printable' });
  const filler = 'x'.repeat(70);
  // the comment opens more than a few hundred bytes before the end, the </body> in it lies near the end
  const ways: Record<string, string> = {
    plain: '<!--',
    'soft break after <': '<=\r\n!--',
    'soft break after <!': '<!=\r\n--',
    'encoded <': '=3C!--',
    'encoded !': '<=21--',
  };
  for (const [how, opener] of Object.entries(ways)) {
    for (const closed of [true, false]) {
      const lines = ['<html><body><p>hi</p></body>', opener, ...Array(8).fill(filler), `old </body>${closed ? ' -->' : ''}`, '</html>'];
      const src = lines.join('\r\n');
      const r = insertHtmlFooter(p, Buffer.from(src, 'latin1'), '<div>F</div>', '\r\n', []);
      assert.ok(r.ok, how);
      const out = decodeQP(r.body).toString('latin1');
      assert.ok(out.startsWith('<html><body><p>hi</p><div>F</div></body>'), `${how}, ${closed ? 'closed' : 'unclosed'}: ${out.slice(0, 60)}`);
    }
  }
});

test('base64: the original line length is kept', () => {
  const text = Buffer.from('x'.repeat(200)).toString('base64');
  const b64 = text.match(/.{1,60}/g)!.join('\r\n');
  const r = appendTextFooter(part({ encoding: 'base64' }), Buffer.from(b64), 'Footer', '\r\n', []);
  assert.ok(r.ok);
  const lines = r.body.toString('latin1').split('\r\n');
  assert.ok(lines.slice(0, -1).every((l) => l.length === 60));
  assert.equal(Buffer.from(r.body.toString('latin1'), 'base64').toString(), `${'x'.repeat(200)}\r\n\r\nFooter`);
});

test('charsets: latin1 gets latin1 bytes, us-ascii and 7bit get transliteration, HTML gets &#N;', () => {
  const f = 'Réunion – ✓ ok';
  const latin = appendTextFooter(part({ charset: 'iso-8859-1', encoding: '8bit' }), Buffer.from('x\r\n'), f, '\r\n', []);
  assert.ok(latin.ok && latin.body.equals(Buffer.from('x\r\n\r\nR\xe9union - ok\r\n', 'latin1')));
  const ascii7 = appendTextFooter(part({ charset: 'utf-8', encoding: '7bit' }), Buffer.from('x\r\n'), f, '\r\n', []);
  assert.ok(ascii7.ok && ascii7.body.equals(Buffer.from('x\r\n\r\nReunion - ok\r\n')));
  const html = insertHtmlFooter(part({ contentType: 'text/html', charset: 'us-ascii' }), Buffer.from('<body></body>'), `<b>${f}</b>`, '\r\n', []);
  assert.ok(html.ok && html.body.toString() === '<body><b>R&#233;union &#8211; &#10003; ok</b></body>');
  // EBCDIC, however spelled, is not ASCII-compatible: target choice gives such a part no footer
  for (const cs of ['IBM037', 'IBM-037', 'cp037', 'ibm-1047', 'x-EBCDIC-International']) assert.equal(charsetInfo(cs).compatible, false, cs);
  const sjis = appendTextFooter(part({ charset: 'shift_jis', encoding: '8bit' }), Buffer.from('x'), '会議 ok', '\r\n', []);
  assert.ok(sjis.ok && sjis.body.equals(Buffer.from([0x78, 0x0d, 0x0a, 0x0d, 0x0a, 0x89, 0xef, 0x8b, 0x63, 0x20, 0x6f, 0x6b])));
});

test('ISO-2022-JP: appended ASCII is switched to ASCII mode when the body ends in JIS mode', () => {
  const p = part({ charset: 'iso-2022-jp' });
  const open = appendTextFooter(p, Buffer.from('\x1b$B2q5D', 'latin1'), 'Footer', '\r\n', []);
  // back to ASCII before the added line breaks (RFC 1468: a line ends in ASCII), not after them
  assert.ok(open.ok && open.body.toString('latin1').endsWith('\x1b(B\r\n\r\nFooter'));
  const closed = appendTextFooter(p, Buffer.from('\x1b$B2q5D\x1b(B', 'latin1'), 'Footer', '\r\n', []);
  assert.ok(closed.ok && closed.body.toString('latin1').endsWith('\r\n\r\nFooter'));
  // HTML with nothing to go before: the same switch, in 7bit and in quoted-printable
  for (const encoding of ['7bit', 'quoted-printable']) {
    const html = insertHtmlFooter(part({ contentType: 'text/html', charset: 'iso-2022-jp', encoding }), Buffer.from('<p>\x1b$B2q5D', 'latin1'), '<div>F</div>', '\r\n', []);
    assert.ok(html.ok);
    const decoded = encoding === '7bit' ? html.body : decodeQP(html.body);
    assert.equal(decoded.toString('latin1'), '<p>\x1b$B2q5D\x1b(B<div>F</div>', encoding);
  }
});

test('ISO-2022 text left in a two-byte mode: switched back before the added line breaks, in every transfer encoding', async () => {
  const jis = '\x1b$B2q5D'; // 会議, the body ends still in JIS X 0208 mode
  const bodies: Record<string, string[]> = {
    '7bit': [jis], '8bit': [jis], base64: [Buffer.from(jis, 'latin1').toString('base64')],
    'quoted-printable': ['=1B$B2q5D', '=1B$B2q5D=', '=1B$B2q=\r\n5D', '=1B$B2q=\r\n5D='],
  };
  for (const [encoding, list] of Object.entries(bodies)) {
    for (const src of list) {
      const r = appendTextFooter(part({ charset: 'iso-2022-jp', encoding }), Buffer.from(src, 'latin1'), 'Footer', '\r\n', []);
      assert.ok(r.ok, src);
      const decoded = encoding === 'quoted-printable' ? decodeQP(r.body) : encoding === 'base64' ? Buffer.from(r.body.toString('latin1'), 'base64') : r.body;
      assert.equal(decoded.toString('latin1'), `${jis}\x1b(B\r\n\r\nFooter`, `${encoding}: ${JSON.stringify(src)}`);
      if (encoding === 'quoted-printable') for (const l of r.body.toString('latin1').split('\r\n')) assert.ok(l.length <= 76, l);
      // an independent reader sees the original text, then the footer on a line of its own
      const head = `MIME-Version: 1.0\r\nContent-Type: text/plain; charset=iso-2022-jp\r\nContent-Transfer-Encoding: ${encoding}\r\n\r\n`;
      const parsed = await simpleParser(Buffer.concat([Buffer.from(head), r.body]));
      assert.equal(parsed.text, '会議\n\nFooter', `${encoding}: ${JSON.stringify(src)}`);
    }
  }
});

test('ISO-2022-KR/-CN: a G1 designation (ESC $ ) C) is no mode switch, SO/SI are; a shifted body ends with SI, not ESC ( B', () => {
  const p = part({ charset: 'iso-2022-kr' });
  const designated = appendTextFooter(p, Buffer.from('\x1b$)Chello', 'latin1'), 'Footer', '\r\n', []);
  assert.ok(designated.ok);
  assert.equal(designated.body.toString('latin1'), '\x1b$)Chello\r\n\r\nFooter');
  const shifted = appendTextFooter(p, Buffer.from('\x1b$)Chi \x0e\x48\x21', 'latin1'), 'Footer', '\r\n', []);
  assert.ok(shifted.ok);
  assert.equal(shifted.body.toString('latin1'), '\x1b$)Chi \x0e\x48\x21\x0f\r\n\r\nFooter');
  const html = insertHtmlFooter(part({ contentType: 'text/html', charset: 'iso-2022-kr' }), Buffer.from('\x1b$)C<html><body>x</body></html>', 'latin1'), '<div>F</div>', '\r\n', []);
  assert.ok(html.ok);
  assert.equal(html.body.toString('latin1'), '\x1b$)C<html><body>x<div>F</div></body></html>');
});

test('quoted-printable html appended at the end: the soft break never makes a line of 77 columns', () => {
  const p = part({ contentType: 'text/html', encoding: 'quoted-printable' });
  for (const last of ['a'.repeat(76), 'a'.repeat(75), `${'a'.repeat(73)}=3D`, `${'a'.repeat(74)} `, `${'a'.repeat(75)}=`]) {
    const src = `<p>\r\n${last}`;
    const r = insertHtmlFooter(p, Buffer.from(src), '<div>F</div>', '\r\n', []);
    assert.ok(r.ok, last);
    for (const l of r.body.toString('latin1').split('\r\n')) assert.ok(l.length <= 76, `${l.length} columns: ${l}`);
    const before = decodeQP(Buffer.from(src)).toString('latin1');
    assert.ok([`${before}<div>F</div>`, `${before}\r\n<div>F</div>`].includes(decodeQP(r.body).toString('latin1')), last);
  }
});

test('html: a </body> in the text of script, style, title or textarea is not where the footer goes', () => {
  const filler = 'x'.repeat(70);
  for (const el of ['script', 'STYLE', 'title', 'textarea']) {
    const cases: Array<[string, string]> = [
      [`<html><body>x</body></html><${el}>s = "</body>";</${el}>`, `<html><body>x<div>F</div></body></html><${el}>s = "</body>";</${el}>`],
      [`<html><body>x<${el} type="t">a</body>b</${el}></body></html>`, `<html><body>x<${el} type="t">a</body>b</${el}><div>F</div></body></html>`],
    ];
    for (const [src, want] of cases) {
      assert.equal(body(insertHtmlFooter(part({ contentType: 'text/html', encoding: '8bit' }), Buffer.from(src), '<div>F</div>', '\r\n', [])), want, src);
    }
    // quoted-printable: the element opens long before the tail that is decoded first
    const lines = ['<html><body><p>hi</p></body></html>', `<${el}>`, ...Array(8).fill(filler), 'old </body>', `</${el}>`];
    const r = insertHtmlFooter(part({ contentType: 'text/html', encoding: 'quoted-printable' }), Buffer.from(lines.join('\r\n')), '<div>F</div>', '\r\n', []);
    assert.ok(r.ok);
    assert.ok(decodeQP(r.body).toString('latin1').startsWith('<html><body><p>hi</p><div>F</div></body>'), el);
  }
  // noscript is markup in a reader that runs no scripts: a </body> there is real
  const ns = '<html><body>x<noscript>y</body></noscript></html>';
  assert.equal(body(insertHtmlFooter(part({ contentType: 'text/html', encoding: '8bit' }), Buffer.from(ns), '<div>F</div>', '\r\n', [])), '<html><body>x<noscript>y<div>F</div></body></noscript></html>');
});

test('html: the abrupt empty comments <!--> and <!---> are closed, the </body> after them is real', () => {
  const p = part({ contentType: 'text/html', encoding: '8bit' });
  for (const c of ['<!-->', '<!--->']) {
    assert.equal(body(insertHtmlFooter(p, Buffer.from(`<html><body>x${c}</body></html>`), '<div>F</div>', '\r\n', [])), `<html><body>x${c}<div>F</div></body></html>`, c);
  }
});

test('ISO-2022-JP HTML: only ASCII-mode </body> counts, found in one pass even with thousands of JIS-mode look-alikes', () => {
  const p = part({ contentType: 'text/html', charset: 'iso-2022-jp', encoding: '7bit' });
  const src = Buffer.from(`<html><body>x</body>\x1b$B${'</body>'.repeat(40_000)}\x1b(B</html>`, 'latin1');
  const t0 = performance.now();
  const r = insertHtmlFooter(p, src, '<div>F</div>', '\r\n', []);
  const ms = performance.now() - t0;
  assert.ok(r.ok);
  const out = r.body.toString('latin1');
  assert.ok(out.indexOf('<div>F</div>') < out.indexOf('</body>'), 'before the ASCII-mode </body>');
  // (on lines of its own: the source is one line of 280 KB)
  assert.equal(out.replace('\r\n<div>F</div>\r\n', ''), src.toString('latin1'));
  // a scan from the start per look-alike took seconds here (40 000 × 280 KB); one pass takes milliseconds
  assert.ok(ms < 500, `${ms.toFixed(0)} ms`);
});

test('format=flowed footer lines are space-stuffed, and a dropped character takes its space along', () => {
  const p = part({ params: { format: 'flowed' }, charset: 'us-ascii' });
  const r = appendTextFooter(p, Buffer.from('para \r\n'), 'From here\n> quote\n ok ✓', '\r\n', []);
  assert.equal(body(r), 'para \r\n\r\n From here\r\n > quote\r\n  ok\r\n');
});

test('7bit/8bit: a footer line that reads as a delimiter, or one over 998 bytes, is refused; QP wraps it', () => {
  const p = part({ encoding: '8bit' });
  assert.match(body(appendTextFooter(p, Buffer.from('x'), '--outer-b', '\r\n', ['outer-b'])), /^SKIP: .*boundary/);
  const url = `https://cal.example.org/${'a'.repeat(990)}`;
  assert.match(body(appendTextFooter(p, Buffer.from('x'), url, '\r\n', [])), /^SKIP: .*998/);
  const okUrl = `https://cal.example.org/${'a'.repeat(960)}`;
  assert.ok(appendTextFooter(p, Buffer.from('x'), okUrl, '\r\n', []).ok);
  const qp = appendTextFooter(part({ encoding: 'quoted-printable' }), Buffer.from('x'), url, '\r\n', []);
  assert.ok(qp.ok && qp.body.toString().split('\r\n').every((l) => l.length <= 76));
});

test('html in 7bit/8bit: a line that would pass 998 bytes gets the footer on lines of its own', () => {
  const src = `<html><body>${'y'.repeat(900)}</body></html>`;
  const r = insertHtmlFooter(part({ contentType: 'text/html', encoding: '8bit' }), Buffer.from(src), `<div>${'z'.repeat(200)}</div>`, '\r\n', []);
  assert.ok(r.ok);
  assert.equal(r.body.toString(), `<html><body>${'y'.repeat(900)}\r\n<div>${'z'.repeat(200)}</div>\r\n</body></html>`);
  // </body> first in the body, a long line after it: the line it joins is measured from the body's start
  const first = insertHtmlFooter(part({ contentType: 'text/html', encoding: '8bit' }), Buffer.from(`</body>${'x'.repeat(850)}\r\n<p>more</p>`), `<div>${'z'.repeat(200)}</div>`, '\r\n', []);
  assert.ok(first.ok);
  assert.ok(first.body.toString().split('\r\n').every((l) => l.length <= 998), 'no line over 998');
});

// ----- target choice and the stream API ------------------------------------------------------------

test('footerLines: the split at LF (CR cut) gives what normalising every CRLF, LF and lone CR gives', () => {
  // the rule written out plainly, as a reference for the faster split
  const reference = (text: string) => {
    const lines = text.replace(/\r\n?/g, '\n').split('\n').map((l) => l.replace(/[\x00-\x08\x0b-\x1f\x7f]/g, ''))
      .map((l) => (l === '-- ' ? l : l.replace(/[ \t]+$/, '')));
    while (lines.length && lines[0] === '') lines.shift();
    while (lines.length && lines[lines.length - 1] === '') lines.pop();
    return lines;
  };
  const pieces = ['a', ' ', '\t', '\r', '\n', '\r\n', '\r\r\n', '\n\r', '-- ', '\x01', '\x0b', '\x7f', 'é', ' \t\r\n'];
  let seed = 3;
  const random = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x80000000;
  for (let i = 0; i < 5000; i++) {
    const text = Array.from({ length: Math.floor(random() * 10) }, () => pieces[Math.floor(random() * pieces.length)]).join('');
    assert.deepEqual(footerLines(text), reference(text), JSON.stringify(text));
  }
  assert.deepEqual(footerLines('\r\n-- \r\nA  \r\nB\rC\n'), ['-- ', 'A', 'B', 'C']);
});

test('chooseTargets: never an attachment, the calendar part or a signed message; reasons given', async () => {
  const { structure, headers } = await analyzeMessage(chunkedReader(readFixture('ics-attachment-only')));
  const t1 = chooseTargets(structure, stubClassification(structure, headers));
  assert.equal(t1.plain, 1);
  assert.equal(t1.html, null);
  const signed = await analyzeMessage(chunkedReader(readFixture('smime-signed')));
  const t2 = chooseTargets(signed.structure, stubClassification(signed.structure, signed.headers));
  assert.deepEqual([t2.plain, t2.html, t2.wrap], [null, null, false]);
  assert.match(t2.reason, /signed/);
  const t3 = chooseTargets(structure, { ...stubClassification(structure, headers), footer: false });
  assert.match(t3.reason, /no footer/);
  assert.equal(hasMarker([['x-calendar-link', 'added']]), true);
  assert.equal(hasMarker(headers), false);
});

test('rewriteMessage: marker plus input with no targets; refuses (stream error) when nothing can be placed', async () => {
  const raw = readFixture('exchange-online');
  const src = chunkedReader(raw);
  const { structure } = await analyzeMessage(src);
  const none: Targets = { plain: null, html: null, wrap: false, reason: '' };
  const out = await collect(rewriteMessage(src, structure, none, TEST_FOOTER, { markerHeader: MARKER_LINE }));
  assert.ok(out.equals(Buffer.concat([Buffer.from(`${MARKER_LINE}\r\n`), raw])));
  const t = chooseTargets(structure, stubClassification(structure, []));
  await assert.rejects(collect(rewriteMessage(src, structure, t, TEST_FOOTER, { markerHeader: MARKER_LINE, maxPartBytes: 10 })), RewriteRefused);
  await assert.rejects(collect(rewriteMessage(src, { ...structure, damaged: true }, t, TEST_FOOTER, { markerHeader: MARKER_LINE })), RewriteRefused);
  const plan = await planRewrite(src, structure, t, TEST_FOOTER, { markerHeader: MARKER_LINE });
  const full = await collect(rewriteMessage(src, structure, t, TEST_FOOTER, { markerHeader: MARKER_LINE }));
  assert.equal(full.length, plan.size);
});

test('a file-backed spool gives the same bytes as the golden file', async () => {
  for (const name of ['exchange-online', 'google', 'lone-calendar', 'alternative-calendar-only', 'zoom']) {
    const spool = new Spool({ memoryLimit: 0 });
    await spool.write(readFixture(name));
    await spool.finish();
    try {
      assert.equal(spool.inMemory, false);
      const { structure, headers } = await analyzeMessage(spool);
      const t = chooseTargets(structure, stubClassification(structure, headers));
      const out = await collect(rewriteMessage(spool, structure, t, TEST_FOOTER, { markerHeader: MARKER_LINE, boundary: TEST_BOUNDARY }));
      assert.ok(out.equals(readFileSync(join(GOLDEN_DIR, `${name}.eml`))), name);
    } finally {
      await spool.dispose();
    }
  }
});

test('a lone 8bit or binary body wrapped in multipart/mixed: the new root says 8bit/binary too (RFC 2045 6.4)', async () => {
  for (const cte of ['8bit', 'binary', '7bit']) {
    const raw = Buffer.from(
      'From: a@example.org\r\nTo: b@example.org\r\nSubject: Besprechung\r\nMIME-Version: 1.0\r\n' +
        `Content-Type: text/calendar; charset=utf-8; method=REQUEST\r\nContent-Transfer-Encoding: ${cte}\r\n\r\n` +
        'BEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\nBEGIN:VEVENT\r\nUID:u1\r\nSUMMARY:Grüße\r\nDTSTART:20261201T100000Z\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n',
    );
    const r = await processMessage(raw);
    assert.equal(r.targets?.wrap, true, `${cte}: wrapped`);
    const out = r.out.toString('utf8');
    const root = out.slice(0, out.indexOf('\r\n\r\n'));
    const calendarHead = out.slice(out.lastIndexOf(`--${TEST_BOUNDARY}\r\n`));
    assert.match(calendarHead, new RegExp(`Content-Transfer-Encoding: ${cte}\\r\\n`), `${cte}: the calendar part keeps its own encoding`);
    if (cte === '7bit') assert.doesNotMatch(root, /Content-Transfer-Encoding/i, '7bit: the root needs none');
    else assert.match(root, new RegExp(`^Content-Transfer-Encoding: ${cte}$`, 'm'), `${cte}: the multipart root is labelled as its content`);
    await checkProperties(`lone ${cte}`, raw, r.out, r.structure);
  }
});

test('an empty text/plain alternative next to the calendar gets the footer as its whole text', async () => {
  for (const lb of ['\r\n', '\n']) {
    const raw = Buffer.from(['From: a@example.org', 'To: b@example.org', 'Subject: x', 'MIME-Version: 1.0', 'Content-Type: multipart/alternative; boundary="b1"', '', '--b1',
      'Content-Type: text/plain; charset=utf-8', '', '', '--b1', 'Content-Type: text/calendar; charset=utf-8; method=REQUEST', '',
      'BEGIN:VCALENDAR', 'METHOD:REQUEST', 'BEGIN:VEVENT', 'UID:u1', 'END:VEVENT', 'END:VCALENDAR', '', '--b1--', ''].join(lb));
    const r = await processMessage(raw);
    assert.equal(r.changed, true, `${JSON.stringify(lb)}: ${r.decision}`);
    assert.equal(r.targets?.plain, 1);
    await checkProperties(`empty text ${JSON.stringify(lb)}`, raw, r.out, r.structure);
    const parsed = await simpleParser(r.out);
    assert.ok(parsed.text?.includes(URL) || parsed.text?.includes('cal.example.org'), 'the footer is the text');
  }
});

test('footer text lines: no line passes the limit, also when the text after the last blank is long', () => {
  // bytes a line may take: 4 for each non-ASCII code point (UTF-8, GB18030), as footer-lines counts them
  const bytes = (l: string) => Array.from(l).reduce((n, c) => n + (c.codePointAt(0)! < 0x80 ? 1 : 4), 0);
  const cases: Array<[string, number]> = [['a €€€', 10], ['a b€€€€€€€€', 10], ['a ' + 'b' + '会'.repeat(230), 900], ['会議 x ' + '会'.repeat(500) + ' end', 900]];
  for (const [text, max] of cases) {
    const out = breakTextLines(text, max);
    for (const line of out.split('\r\n')) assert.ok(bytes(line) <= max, `${JSON.stringify(text.slice(0, 12))} at ${max}: a line of ${bytes(line)} bytes`);
    assert.equal(out.replace(/\r\n/g, '').replace(/ /g, ''), text.replace(/ /g, ''), 'nothing but blanks lost');
  }
});
