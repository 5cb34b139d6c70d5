// Target choice: which body parts get the footer ("main" body: the alternatives next to the calendar part,
// else the message's first inline text body; wrap only when there is no text body at all).
// In: small hand-built messages through the real structure pass. Run: node --import tsx --test spec/footer-targets.test.ts

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { analyzeMessage } from '../lib/mime-structure.js';
import { chooseTargets, type Targets } from '../lib/footer-targets.js';
import type { MessageStructure } from '../lib/types.js';
import { chunkedReader } from './helpers/mail-fixtures.js';

const CAL = 'Content-Type: text/calendar; method=REQUEST; charset=utf-8\r\n\r\nBEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\nEND:VCALENDAR\r\n';
const mp = (type: string, b: string, parts: string[]) =>
  `Content-Type: multipart/${type}; boundary="${b}"\r\n\r\n` + parts.map((p) => `--${b}\r\n${p}\r\n`).join('') + `--${b}--\r\n`;
const plain = (t: string, h = '') => `Content-Type: text/plain; charset=utf-8\r\n${h}\r\n${t}\r\n`;
const html = (t: string, h = '') => `Content-Type: text/html; charset=utf-8\r\n${h}\r\n<html><body>${t}</body></html>\r\n`;
const png = (h = '') => `Content-Type: image/png\r\n${h}\r\niVBORw0KGgo=\r\n`;
const rfc822 = (inner: string) => `Content-Type: message/rfc822\r\n\r\nSubject: inner\r\nMIME-Version: 1.0\r\n${inner}`;

async function targets(body: string): Promise<{ t: Targets; s: MessageStructure; at: (type: string, n?: number) => number }> {
  const raw = Buffer.from(`From: a@example.org\r\nTo: b@example.org\r\nSubject: t\r\nMIME-Version: 1.0\r\n${body}`);
  const { structure: s } = await analyzeMessage(chunkedReader(raw));
  assert.equal(s.damaged, false);
  const cal = s.parts.find((p) => p.contentType === 'text/calendar');
  const t = chooseTargets(s, {
    kind: 'meeting', method: 'REQUEST', tnefClass: null, source: 'imip', calendarPart: cal ? cal.index : null, calendar: null, footer: true, reason: 'test',
  });
  const at = (type: string, n = 0) => s.parts.filter((p) => p.contentType === type)[n]!.index;
  return { t, s, at };
}

test('mixed: a forwarded message first is passed over, the text body after it is chosen (not a wrap)', async () => {
  const { t, s, at } = await targets(mp('mixed', 'b1', [rfc822(mp('alternative', 'b2', [plain('inner'), html('inner')])), plain('outer body'), CAL]));
  assert.deepEqual([t.plain, t.html, t.wrap], [at('text/plain'), null, false], t.reason);
  assert.equal(s.parts[t.plain!]!.parent, 0, 'never a part inside message/rfc822');
});

test('mixed: an inline image or an unnamed-disposition attachment first does not hide the text body', async () => {
  for (const first of [png('Content-Disposition: inline\r\n'), 'Content-Type: application/pdf; name="a.pdf"\r\n\r\nJVBERi0=\r\n']) {
    const { t, at } = await targets(mp('mixed', 'b1', [first, plain('body'), CAL]));
    assert.deepEqual([t.plain, t.html, t.wrap], [at('text/plain'), null, false], t.reason);
  }
});

test('calendar alone in an alternative, the text body elsewhere in the message: that body, no wrap', async () => {
  const { t, at } = await targets(mp('mixed', 'b1', [mp('alternative', 'b2', [CAL]), plain('body')]));
  assert.deepEqual([t.plain, t.html, t.wrap], [at('text/plain'), null, false], t.reason);
});

test('unchanged choices: next to the calendar, at depth, Zoom-style, attachments and wraps', async () => {
  // the alternatives next to the calendar part win over an earlier text body
  let r = await targets(mp('mixed', 'b1', [plain('first'), mp('alternative', 'b2', [plain('alt'), html('alt'), CAL])]));
  assert.deepEqual([r.t.plain, r.t.html, r.t.wrap], [r.at('text/plain', 1), r.at('text/html'), false]);
  // calendar at depth, text bodies elsewhere
  r = await targets(mp('mixed', 'b1', [mp('alternative', 'b2', [plain('body'), html('body')]), mp('mixed', 'b3', [CAL])]));
  assert.deepEqual([r.t.plain, r.t.html, r.t.wrap], [r.at('text/plain'), r.at('text/html'), false]);
  // Zoom: html + calendar → HTML only
  r = await targets(mp('alternative', 'b1', [html('zoom'), CAL]));
  assert.deepEqual([r.t.plain, r.t.html, r.t.wrap], [null, r.at('text/html'), false]);
  // a text attachment is never a body; only the calendar left → wrap
  r = await targets(mp('mixed', 'b1', [plain('att', 'Content-Disposition: attachment; filename="a.txt"\r\n'), CAL]));
  assert.deepEqual([r.t.plain, r.t.html, r.t.wrap], [null, null, true]);
  // inside a forwarded message only: never chosen, wrap
  r = await targets(mp('mixed', 'b1', [CAL, rfc822(plain('inner'))]));
  assert.deepEqual([r.t.plain, r.t.html, r.t.wrap], [null, null, true]);
  // a named inline text part is a body
  r = await targets(mp('mixed', 'b1', [plain('notes', 'Content-Disposition: inline; filename="notes.txt"\r\n'), CAL]));
  assert.deepEqual([r.t.plain, r.t.wrap], [r.at('text/plain'), false]);
  // lone calendar and alternative holding only the calendar: wrap
  r = await targets(CAL);
  assert.deepEqual([r.t.plain, r.t.html, r.t.wrap, r.t.wrapPart], [null, null, true, 0]);
  r = await targets(mp('alternative', 'b1', [CAL]));
  assert.deepEqual([r.t.plain, r.t.html, r.t.wrap, r.t.wrapPart], [null, null, true, 0]);
});

test('an unknown disposition is an attachment (RFC 2183 2.8, as mailparser shows it): never a body, with or without a name', async () => {
  for (const disp of ['attachement', 'file', 'x-attached; filename="notes.txt"', 'form-data; name="notes"']) {
    const { t, at } = await targets(mp('mixed', 'b1', [plain('attached text', `Content-Disposition: ${disp}\r\n`), plain('body'), CAL]));
    assert.deepEqual([t.plain, t.html, t.wrap], [at('text/plain', 1), null, false], `${disp}: ${t.reason}`);
    const alone = await targets(mp('alternative', 'b1', [plain('attached text', `Content-Disposition: ${disp}\r\n`), html('body'), CAL]));
    assert.deepEqual([alone.t.plain, alone.t.html, alone.t.wrap], [null, alone.at('text/html'), false], `${disp}: ${alone.t.reason}`);
  }
  // case and comments do not matter for the two known ones
  const r = await targets(mp('mixed', 'b1', [plain('body', 'Content-Disposition: INLINE (shown)\r\n'), CAL]));
  assert.deepEqual([r.t.plain, r.t.wrap], [r.at('text/plain'), false], r.t.reason);
});
