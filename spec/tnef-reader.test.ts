// Tests for lib/tnef-reader.ts: real TNEF streams from the shared corpus, synthetic streams from
// spec/helpers/tnef-fixture.ts, and damaged input (truncation at every length, garbage, absurd counts).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isTnefPart, modernClass, readTnef, TNEF_SIGNATURE } from '../lib/tnef-reader.js';
import { attribute, buildTnef, propertyList, tnefFixtures } from './helpers/tnef-fixture.js';
import { CORPUS_DIR, CORPUS_SKIP_MESSAGE, corpusFile, extractBase64Part } from './helpers/corpus.js';

const TNEF_TYPE = /application\/(vnd\.)?ms-tnef/i;

function corpusStream(rel: string): Buffer {
  const raw = corpusFile(rel);
  assert.ok(raw, `${rel} is missing from the corpus`);
  if (rel.endsWith('.eml')) {
    const part = extractBase64Part(raw, TNEF_TYPE);
    assert.ok(part, `${rel} has no TNEF part`);
    return part;
  }
  return raw;
}

// Facts from the corpus MANIFEST (and the files' own attMessageClass text), not from this reader.
const CORPUS_CASES: Array<{ file: string; legacy: string | null; cls: string }> = [
  { file: 'horde-compress/winmail2.dat', legacy: 'IPM.Microsoft Schedule.MtgReq', cls: 'IPM.Schedule.Meeting.Request' },
  { file: 'tnef-verdammelt/triples.tnef', legacy: 'IPM.Appointment', cls: 'IPM.Appointment' },
  { file: 'tnef-verdammelt/multi-value-attribute.tnef', legacy: 'IPM.Note.Microsoft.Voicemail.UM.CA', cls: 'IPM.Note.Microsoft.Voicemail.UM.CA' },
  { file: 'tnefparse/IPM-DistList.tnef', legacy: 'IPM.Microsoft Mail.Note', cls: 'IPM.Note' },
  { file: 'horde-compress/tnef_task.eml', legacy: 'IPM.TaskRequest', cls: 'IPM.TaskRequest' },
  { file: 'roundcube/tnef1.eml', legacy: 'IPM.Microsoft Mail.Note', cls: 'IPM.Note' },
  // tnef2 has no attMessageClass at all: its class exists only as a UTF-16 PR_MESSAGE_CLASS.
  { file: 'roundcube/tnef2.eml', legacy: null, cls: 'IPM.Note' },
  { file: 'lore-lkml/recall-ipm-outlook-recall.eml', legacy: 'IPM.Outlook.Recall', cls: 'IPM.Outlook.Recall' },
  { file: 'lore-openbmc/m_6e8a57bbd29d.eml', legacy: 'IPM.Microsoft Mail.Note', cls: 'IPM.Note' },
  { file: 'mimekit/ukr.eml', legacy: 'IPM.Microsoft Mail.Note', cls: 'IPM.Note' },
];

test('corpus TNEF streams: legacy and effective message class', { skip: CORPUS_DIR ? false : CORPUS_SKIP_MESSAGE }, () => {
  for (const c of CORPUS_CASES) {
    const facts = readTnef(corpusStream(c.file));
    assert.equal(facts.legacyClass, c.legacy, c.file);
    assert.equal(facts.messageClass, c.cls, c.file);
  }
});

test('corpus: TnefMeetingRequest.txt is base64 text, not a raw stream', { skip: CORPUS_DIR ? false : CORPUS_SKIP_MESSAGE }, () => {
  const raw = corpusStream('horde-compress/TnefMeetingRequest.txt');
  assert.notEqual(raw.readUInt32LE(0), TNEF_SIGNATURE);
  assert.equal(readTnef(raw).messageClass, null);
  const decoded = Buffer.from(raw.toString('latin1').replace(/\s+/g, ''), 'base64');
  assert.equal(decoded.readUInt32LE(0), TNEF_SIGNATURE);
  const facts = readTnef(decoded);
  assert.equal(facts.legacyClass, 'IPM.Microsoft Schedule.MtgReq');
  assert.equal(facts.messageClass, 'IPM.Schedule.Meeting.Request');
});

test('corpus: every real stream survives truncation at many lengths', { skip: CORPUS_DIR ? false : CORPUS_SKIP_MESSAGE }, () => {
  for (const c of CORPUS_CASES) {
    const buf = corpusStream(c.file);
    const step = Math.max(1, Math.floor(buf.length / 300));
    for (let n = 0; n < buf.length; n += step) {
      const facts = readTnef(buf.subarray(0, n));
      assert.ok(Array.isArray(facts.warnings));
      // A cut stream may lose the class, but never invents one.
      if (facts.messageClass !== null) assert.ok([c.cls, modernClass(c.legacy ?? '')].includes(facts.messageClass), `${c.file} @${n}`);
    }
  }
});

test('synthetic streams: the class each fixture was built with', () => {
  const cases: Array<[string, Buffer, string | null, string | null]> = [
    ['meeting request', tnefFixtures.meetingRequest(), 'IPM.Schedule.Meeting.Request', 'IPM.Microsoft Schedule.MtgReq'],
    ['cancel (legacy only)', tnefFixtures.meetingCancel(), 'IPM.Schedule.Meeting.Canceled', 'IPM.Microsoft Schedule.MtgCncl'],
    ['accept (legacy only)', tnefFixtures.meetingAccept(), 'IPM.Schedule.Meeting.Resp.Pos', 'IPM.Microsoft Schedule.MtgRespP'],
    ['appointment', tnefFixtures.appointment(), 'IPM.Appointment', 'IPM.Appointment'],
    ['custom form: MAPI wins over legacy', tnefFixtures.customForm(), 'IPM.Note.MyCompany.Expense', 'IPM.Microsoft Mail.Note'],
    ['custom post, PT_STRING8, no legacy', tnefFixtures.customPost(), 'IPM.Post.Travel', null],
    ['task request', tnefFixtures.taskRequest(), 'IPM.TaskRequest', 'IPM.TaskRequest'],
    ['task accept', tnefFixtures.taskAccept(), 'IPM.TaskRequest.Accept', null],
    ['S/MIME note', tnefFixtures.smime(), 'IPM.Note.SMIME', 'IPM.Microsoft Mail.Note'],
    ['plain note with attachment', tnefFixtures.note(), 'IPM.Note', 'IPM.Microsoft Mail.Note'],
    ['recall', tnefFixtures.recall(), 'IPM.Outlook.Recall', 'IPM.Outlook.Recall'],
  ];
  for (const [name, buf, cls, legacy] of cases) {
    const facts = readTnef(buf);
    assert.equal(facts.messageClass, cls, name);
    assert.equal(facts.legacyClass, legacy, name);
    assert.deepEqual(facts.warnings, [], name);
  }
});

test('truncated meeting request: the MAPI class is cut off, the legacy class still answers', () => {
  const facts = readTnef(tnefFixtures.truncated());
  assert.equal(facts.messageClass, 'IPM.Schedule.Meeting.Request');
  assert.ok(facts.warnings.some((w) => /truncated/.test(w)));
});

test('garbage, empty and signature-only input: null class, a warning, no exception', () => {
  for (const buf of [tnefFixtures.garbage(), Buffer.alloc(0), Buffer.from([0x78, 0x9f]), Buffer.from([0x78, 0x9f, 0x3e, 0x22, 1, 0])]) {
    const facts = readTnef(buf);
    assert.equal(facts.messageClass, null);
    assert.equal(facts.legacyClass, null);
    assert.ok(facts.warnings.length > 0);
  }
});

test('synthetic streams truncated at every length never throw', () => {
  for (const full of [tnefFixtures.meetingRequest(), tnefFixtures.customForm(), tnefFixtures.customPost()]) {
    for (let n = 0; n <= full.length; n++) assert.doesNotThrow(() => readTnef(full.subarray(0, n)));
  }
});

test('random byte flips never throw', () => {
  let seed = 12345;
  const rand = (): number => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed; };
  const base = tnefFixtures.customForm();
  for (let i = 0; i < 2000; i++) {
    const buf = Buffer.from(base);
    for (let k = 0; k < 1 + (rand() % 4); k++) buf[6 + (rand() % (buf.length - 6))] = rand() & 0xff;
    assert.doesNotThrow(() => readTnef(buf));
  }
});

const header = (): Buffer => { const b = Buffer.alloc(6); b.writeUInt32LE(TNEF_SIGNATURE); b.writeUInt16LE(1, 4); return b; };

test('absurd lengths and counts are bounded', () => {
  // An attribute announcing 4 GiB of data.
  const huge = Buffer.concat([header(), Buffer.from([1]), Buffer.from([0x08, 0x80, 0x07, 0x00]), Buffer.from([0xff, 0xff, 0xff, 0xff]), Buffer.from('IPM')]);
  assert.equal(readTnef(huge).messageClass, null, 'a cut-off class name is not used');
  assert.ok(readTnef(huge).warnings.some((w) => /truncated/.test(w)));
  // A property block claiming four billion properties.
  const props = Buffer.alloc(4, 0xff);
  const many = Buffer.concat([header(), attribute(1, 0x00069003, props)]);
  const facts = readTnef(many);
  assert.equal(facts.messageClass, null);
  assert.ok(facts.warnings.some((w) => /over the cap/.test(w)));
});

test('an unknown MAPI property type stops the property walk but keeps the legacy class', () => {
  // Two properties announced; the first has type 0x0999, which no MAPI type table knows.
  const block = Buffer.concat([Buffer.from([2, 0, 0, 0]), Buffer.from([0x99, 0x09, 0x01, 0x00]), Buffer.alloc(8)]);
  const stream = Buffer.concat([header(), attribute(1, 0x00078008, Buffer.from('IPM.Microsoft Schedule.MtgCncl\0', 'latin1')), attribute(1, 0x00069003, block)]);
  const facts = readTnef(stream);
  assert.equal(facts.messageClass, 'IPM.Schedule.Meeting.Canceled');
  assert.ok(facts.warnings.some((w) => /unknown MAPI property type/.test(w)));
});

test('a bad checksum is reported but the data is still used', () => {
  const stream = buildTnef({ legacyClass: 'IPM.Appointment' });
  // The attMessageClass checksum sits right after its data: flip it.
  const at = stream.indexOf(Buffer.from('IPM.Appointment\0', 'latin1')) + 'IPM.Appointment\0'.length;
  stream[at] ^= 0xff;
  const facts = readTnef(stream);
  assert.equal(facts.messageClass, 'IPM.Appointment');
  assert.ok(facts.warnings.some((w) => /checksum/.test(w)));
});

test('attachment-level attributes do not count as the message class', () => {
  const stream = Buffer.concat([header(), attribute(2, 0x00078008, Buffer.from('IPM.Schedule.Meeting.Request\0', 'latin1'))]);
  assert.equal(readTnef(stream).messageClass, null);
});

test('modernClass maps the Microsoft Mail names (MS-OXTNEF 2.3.3.4) and leaves others alone', () => {
  const table: Array<[string, string]> = [
    ['IPM.Microsoft Schedule.MtgReq', 'IPM.Schedule.Meeting.Request'],
    ['IPM.Microsoft Schedule.MtgCncl', 'IPM.Schedule.Meeting.Canceled'],
    ['IPM.Microsoft Schedule.MtgRespP', 'IPM.Schedule.Meeting.Resp.Pos'],
    ['IPM.Microsoft Schedule.MtgRespN', 'IPM.Schedule.Meeting.Resp.Neg'],
    ['IPM.Microsoft Schedule.MtgRespA', 'IPM.Schedule.Meeting.Resp.Tent'],
    ['IPM.Microsoft Mail.Note', 'IPM.Note'],
    ['IPM.Microsoft Mail.Read Receipt', 'REPORT.IPM.Note.IPNRN'],
    ['IPM.Microsoft Mail.Non-Delivery', 'REPORT.IPM.Note.NDR'],
    ['ipm.microsoft schedule.mtgreq', 'IPM.Schedule.Meeting.Request'],
    ['Microsoft Mail v3.0 IPM.Microsoft Mail.Note', 'IPM.Note'],
    ['IPM.Note.MyCompany.Expense', 'IPM.Note.MyCompany.Expense'],
    ['IPM.TaskRequest', 'IPM.TaskRequest'],
  ];
  for (const [legacy, modern] of table) assert.equal(modernClass(legacy), modern, legacy);
});

test('isTnefPart: content types and the winmail.dat file name', () => {
  assert.equal(isTnefPart({ contentType: 'application/ms-tnef', filename: null }), true);
  assert.equal(isTnefPart({ contentType: 'application/vnd.ms-tnef', filename: 'x.bin' }), true);
  assert.equal(isTnefPart({ contentType: 'application/octet-stream', filename: 'WINMAIL.DAT' }), true);
  assert.equal(isTnefPart({ contentType: 'application/octet-stream', filename: 'invite.ics' }), false);
  assert.equal(isTnefPart({ contentType: 'text/plain', filename: null }), false);
});

test('a named property whose name length wraps around 32 bits stops the walk instead of shifting it', () => {
  // Name length 0xFFFFFFFD: padded to 4 with 32-bit arithmetic it becomes 0, and the walker would go on
  // reading the following bytes as properties, finding a class the stream does not really announce.
  const guid = Buffer.alloc(16, 0x22);
  const named = Buffer.concat([Buffer.from([0x03, 0x00, 0x01, 0x80]), guid, Buffer.from([1, 0, 0, 0]), Buffer.from([0xfd, 0xff, 0xff, 0xff])]);
  const planted = propertyList([{ type: 0x001f, id: 0x001a, values: [Buffer.from('IPM.Note.Planted\0', 'utf16le')] }]).subarray(4);
  const block = Buffer.concat([Buffer.from([2, 0, 0, 0]), named, Buffer.alloc(4), planted]);
  const stream = Buffer.concat([header(), attribute(1, 0x00078008, Buffer.from('IPM.Microsoft Mail.Note\0', 'latin1')), attribute(1, 0x00069003, block)]);
  const facts = readTnef(stream);
  assert.equal(facts.messageClass, 'IPM.Note');
  assert.ok(facts.warnings.some((w) => /ends early/.test(w)));
});
