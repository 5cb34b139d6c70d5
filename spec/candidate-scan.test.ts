// The cheap scan (lib/candidate-scan.ts): a "no" must never hide a message that would get a footer.
// Single-part messages are judged by their header alone, multipart ones by every byte; the answer
// must not depend on how the bytes were cut into chunks. Checked on our fixtures and, when present,
// on every email of the shared corpus against the full plan with the scan forced to "yes".

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { createApp } from '../lib/app.js';
import { createScanner, scanBuffer } from '../lib/candidate-scan.js';
import { loadConfig } from '../lib/config.js';
import { planDelivery } from '../lib/plan.js';
import { Spool } from '../lib/spool.js';
import { CORPUS_DIR, CORPUS_SKIP_MESSAGE, corpusFile, expectedRows } from './helpers/corpus.js';
import { fixtureNames, readFixture } from './helpers/mail-fixtures.js';

const scanChunked = (buf: Buffer, size: number): boolean => {
  const s = createScanner();
  for (let i = 0; i < buf.length; i += size) s.push(buf.subarray(i, i + size));
  return s.result().candidate;
};

const mail = (head: string, body: string, eol = '\r\n') => Buffer.from(`${head.split('\n').join(eol)}${eol}${eol}${body.split('\n').join(eol)}`);

describe('cheap scan', () => {
  test('a single-part message is judged by its header: "text/calendar" in the body alone is not a candidate', () => {
    const prose = mail('From: a@example.org\nSubject: notes\nContent-Type: text/plain', 'We should send a text/calendar invite with an .ics file.\n');
    assert.equal(scanBuffer(prose).candidate, false);
    const lone = mail('From: a@example.org\nContent-Type: text/calendar; method=REQUEST', 'BEGIN:VCALENDAR\n');
    assert.equal(scanBuffer(lone).candidate, true);
    const tnef = mail('From: a@example.org\nContent-Type: application/ms-tnef; name="winmail.dat"', 'eJ8+IgAAAA==\n');
    assert.equal(scanBuffer(tnef).candidate, true);
    const form = mail('From: a@example.org\nContent-Class: urn:content-class:custom.Expense', 'see form\n');
    assert.equal(scanBuffer(form).candidate, true);
  });

  test('a multipart message: every part header is read to the end, body text is not; a folded type still counts', () => {
    const body = '--b\nContent-Type: text/plain\n\nhello\n' + 'filler line\n'.repeat(2000) + '--b\nContent-Type: text/calendar; method=CANCEL\n\nBEGIN:VCALENDAR\n--b--\n';
    assert.equal(scanBuffer(mail('From: a@example.org\nContent-Type: multipart/mixed; boundary="b"', body)).candidate, true);
    assert.equal(scanBuffer(mail('From: a@example.org\nContent-Type:\n multipart/mixed;\n boundary="b"', body)).candidate, true);
    assert.equal(scanBuffer(mail('From: a@example.org\nContent-Type: multipart/mixed; boundary="b"', body.replace('text/calendar; method=CANCEL', 'text/plain'))).candidate, false);
    const prose = '--b\nContent-Type: text/plain\n\nPlease send a text/calendar invite, invite.ics, or winmail.dat.\n-- \nAda\n--b--\n';
    assert.equal(scanBuffer(mail('From: a@example.org\nContent-Type: multipart/mixed; boundary="b"', prose)).candidate, false, 'words in body text are not part headers');
    const nested = '--o\nContent-Type: multipart/alternative; boundary="i"\n\n--i\nContent-Type: text/plain\n\nhi\n--i\nContent-Type: application/octet-stream;\n name="invite.ics"\n\nQkVHSU4=\n--i--\n--o--\n';
    assert.equal(scanBuffer(mail('From: a@example.org\nContent-Type: multipart/mixed; boundary="o"', nested)).candidate, true, 'an inner part header');
    // an encoded file name may hide ".ics": RFC 2231 (whole or in sections) and RFC 2047 words count
    for (const name of ['name*=utf-8\'\'invite.i%63s', 'name*0="invite.i"; name*1="cs"', 'name="=?utf-8?B?aW52aXRlLmljcw==?="']) {
      const octet = `--b\nContent-Type: text/plain\n\nsee attached\n--b\nContent-Type: application/octet-stream;\n ${name}\n\nQkVHSU4=\n--b--\n`;
      assert.equal(scanBuffer(mail('From: a@example.org\nContent-Type: multipart/mixed; boundary="b"', octet)).candidate, true, name);
    }
  });

  test('a calendar part after a 5 MB attachment is found, in 64 KB chunks as in 1 MB ones', () => {
    const b64 = Buffer.alloc(3_900_000, 0xa5).toString('base64').replace(/.{76}/g, '$&\r\n');
    const raw = mail('From: a@example.org\nContent-Type: multipart/mixed; boundary="b"', `--b\nContent-Type: application/pdf\nContent-Transfer-Encoding: base64\n\n${b64}\n--b\nContent-Type: text/calendar; method=REQUEST\n\nBEGIN:VCALENDAR\n--b--\n`);
    assert.ok(raw.length > 5_000_000);
    assert.equal(scanChunked(raw, 64 * 1024), true);
    assert.equal(scanChunked(raw, 1024 * 1024), true);
    assert.equal(scanChunked(Buffer.from(raw.toString('latin1').replace('text/calendar; method=REQUEST', 'text/plain'), 'latin1'), 64 * 1024), false);
  });

  test('bare LF line ends, a header that never ends, and a message with no header at all', () => {
    const lf = mail('From: a@example.org\nContent-Type: multipart/mixed; boundary="b"', '--b\nContent-Type: text/calendar\n\nX\n--b--\n', '\n');
    assert.equal(scanBuffer(lf).candidate, true);
    assert.equal(scanBuffer(Buffer.from('From: a@example.org\r\nContent-Type: text/calendar')).candidate, true, 'truncated inside the header');
    assert.equal(scanBuffer(Buffer.from('From: a@example.org\r\nSubject: x')).candidate, false);
    assert.equal(scanBuffer(Buffer.from('\r\nno header, then text/calendar in the body\r\n')).candidate, false, 'no header: a text/plain leaf');
  });

  test('a header longer than the cap is still scanned, as body text is', () => {
    const long = 'X-Filler: ' + 'y'.repeat(300 * 1024) + '\r\nContent-Type: application/ics\r\n\r\nbody\r\n';
    assert.equal(scanBuffer(Buffer.from(long)).candidate, true);
    assert.equal(scanChunked(Buffer.from(long), 64 * 1024), true);
  });

  test('every chunk size from 1 byte up gives the whole-buffer answer, for every fixture', () => {
    for (const name of fixtureNames()) {
      const raw = readFixture(name);
      const whole = scanBuffer(raw).candidate;
      for (const size of [1, 2, 3, 5, 7, 13, 64, 1000, 4096]) assert.equal(scanChunked(raw, size), whole, `${name}, chunks of ${size}`);
    }
  });

  test('the blank line that ends the header split across chunks in every way', () => {
    const raw = mail('From: a@example.org\nContent-Type: text/plain', 'text/calendar in prose only\n');
    const at = raw.indexOf('\r\n\r\n');
    for (let cut = at - 2; cut <= at + 5; cut++) {
      const s = createScanner();
      s.push(raw.subarray(0, cut));
      s.push(raw.subarray(cut));
      assert.equal(s.result().candidate, false, `cut at ${cut}`);
    }
  });
});

describe('a "no" from the scan never hides a footer', async () => {
  const config = loadConfig({ flags: { web_server: 'cal.example.org', log_level: 'error' } });
  const app = await createApp(config, () => undefined);
  const forcedPlan = async (raw: Buffer) => {
    const spool = new Spool({ memoryLimit: 64 * 1024 * 1024 });
    await spool.write(raw);
    const reader = await spool.finish();
    const plan = await planDelivery({ config, log: () => undefined, hooks: app.hooks }, { from: 'a@example.org', to: [{ address: 'b@example.org' }] }, reader, { candidate: true, bytes: raw.length }, 't');
    for (const g of plan.groups) await g.body?.dispose();
    return plan.groups.some((g) => g.body !== null);
  };

  test('fixtures: every message the scan lets pass unparsed gets no footer from the full plan either', async () => {
    const samples: Array<[string, Buffer]> = fixtureNames().map((n) => [n, readFixture(n)]);
    samples.push(['prose', mail('From: a@example.org\nContent-Type: text/plain', 'BEGIN:VCALENDAR\nMETHOD:REQUEST\nEND:VCALENDAR\n')]);
    samples.push(['no header', Buffer.from('\r\nContent-Type: text/calendar; method=REQUEST\r\n\r\nBEGIN:VCALENDAR\r\n')]);
    let passed = 0;
    for (const [name, raw] of samples) {
      if (scanBuffer(raw).candidate) continue;
      passed++;
      assert.equal(await forcedPlan(raw), false, `${name}: the scan said no, the plan would add a footer`);
    }
    assert.ok(passed >= 3, `some samples take the fast path (${passed})`);
  });

  test('calendar messages in unusual but valid MIME dress are candidates, in every chunking', async () => {
    const cal = Buffer.from('BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//x//y//EN\r\nMETHOD:REQUEST\r\nBEGIN:VEVENT\r\nUID:1@x\r\nDTSTAMP:20261120T090000Z\r\nDTSTART:20261201T090000Z\r\nSUMMARY:Meet\r\nORGANIZER:mailto:a@example.org\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n').toString('base64');
    const part = (head: string) => `--b\nContent-Type: text/plain\n\nhello\n--b\n${head}\nContent-Transfer-Encoding: base64\n\n${cal}\n--b--\n`;
    const multi = (body: string, type = 'multipart/mixed; boundary="b"') => mail(`From: a@example.org\nContent-Type: ${type}`, body);
    const samples: Array<[string, Buffer]> = [
      // mailsplit (and lib/mime-structure.ts) take a line opening with CR "--" as a delimiter
      ['lone CR before the delimiter', multi(part('Content-Type: text/calendar; method=REQUEST').replace('\n--b\nContent-Type: text/cal', '\n\r--b\nContent-Type: text/cal'))],
      ['lone CR before the first delimiter', multi(`\r--b\nContent-Type: text/calendar; method=REQUEST\nContent-Transfer-Encoding: base64\n\n${cal}\n--b--\n`)],
      // comments are dropped from MIME header values, quoted-pairs unescaped, before type and name are read
      ['a comment inside the type', multi(part('Content-Type: text/(iMIP)calendar; method=REQUEST'))],
      ['a comment inside application/ics', multi(part('Content-Type: application/(x)ics'))],
      ['a comment inside the TNEF type', Buffer.from(readFixture('tnef-meeting').toString('latin1').replace(/Content-Type: application\/ms-tnef; name="winmail.dat"\r?\nContent-Disposition: attachment; filename="winmail.dat"/, 'Content-Type: application/ms(x)-tnef'), 'latin1')],
      ['a quoted-pair in the type', multi(part('Content-Type: "text/c\\alendar"; method=REQUEST'))],
      ['a comment inside an unquoted file name', multi(part('Content-Type: application/octet-stream; name=invite.(1)ics'))],
      ['a quoted-pair in a quoted file name', multi(part('Content-Type: application/octet-stream; name="invite.i\\cs"'))],
      ['a comment in the RFC 2231 key', multi(part("Content-Type: application/octet-stream; name*(x)=utf-8''invite.i%63s"))],
      ['a comment in the root multipart type', multi(part('Content-Type: text/calendar; method=REQUEST'), 'multi(x)part/mixed; boundary="b"')],
      // an RFC 2047 word anywhere in a name value is decoded, not only at its start
      ['an encoded word after plain text', multi(part('Content-Type: application/octet-stream; name="invite=?utf-8?Q?=2Eics?="'))],
      ['an encoded word in a filename', multi(part('Content-Type: application/octet-stream\nContent-Disposition: attachment; filename="a =?utf-8?Q?b=2Eics?="'))],
    ];
    for (const [name, raw] of samples) {
      assert.equal(await forcedPlan(raw), true, `${name}: the full plan adds a footer`);
      assert.equal(scanBuffer(raw).candidate, true, `${name}: whole`);
      for (const size of [1, 2, 3, 7, 64, 1000]) assert.equal(scanChunked(raw, size), true, `${name}: chunks of ${size}`);
    }
  });

  test('a header block longer than the cap: what follows the cap is still read, in every chunking', async () => {
    const cal = 'BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//x//y//EN\r\nMETHOD:REQUEST\r\nBEGIN:VEVENT\r\nUID:1@x\r\nDTSTAMP:20261120T090000Z\r\nDTSTART:20261201T090000Z\r\nSUMMARY:Meet\r\nORGANIZER:mailto:a@example.org\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n';
    const filler = 'X-Filler: ' + 'y'.repeat(300 * 1024) + '\r\n';
    const samples: Array<[string, Buffer]> = [
      ['top header', Buffer.from(`From: a@example.org\r\n${filler}Content-Type: text/calendar; method=REQUEST\r\n\r\n${cal}`)],
      ['part header', Buffer.from(`From: a@example.org\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n${filler}Content-Type: text/calendar; method=REQUEST\r\n\r\n${cal}--b--\r\n`)],
    ];
    for (const [name, raw] of samples) {
      assert.equal(await forcedPlan(raw), true, `${name}: the full plan adds a footer`);
      for (const size of [1000, 4096, 65536]) assert.equal(scanChunked(raw, size), true, `${name}: chunks of ${size}`);
      // the signal itself cut where the cap is crossed
      const at = raw.indexOf('text/calendar') + 6;
      const s = createScanner();
      s.push(raw.subarray(0, at));
      s.push(raw.subarray(at));
      assert.equal(s.result().candidate, true, `${name}: cut inside "text/calendar"`);
    }
  });

  test('corpus: the same over every email', { skip: CORPUS_DIR === null ? CORPUS_SKIP_MESSAGE : false }, async () => {
    let passed = 0;
    for (const row of expectedRows()) {
      const raw = corpusFile(row.path);
      if (!raw || scanBuffer(raw).candidate) continue;
      passed++;
      assert.equal(row.expected, 'U', `${row.path}: expected a footer, the scan said no`);
      assert.equal(await forcedPlan(raw), false, `${row.path}: the scan said no, the plan would add a footer`);
    }
    assert.ok(passed >= 5, `the fast path is taken by some corpus emails (${passed})`);
  });
});
