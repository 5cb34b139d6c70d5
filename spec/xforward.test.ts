// XFORWARD: Postfix's smtp client (smtp_send_xforward_command=yes) tells the filter who the original
// client was and Postfix's queue id before MAIL FROM. The outcome log line carries both, so an
// administrator can follow one message from Postfix's log into ours.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startFilterWithSink, type InProcFilter } from './helpers/filter-inproc.js';
import type { Sink } from './helpers/sink.js';
import { openDialog } from './helpers/smtp-dialog.js';

const MESSAGE = Buffer.from('From: a@example.org\r\nTo: b@example.org\r\nSubject: xforward\r\n\r\nHello\r\n.\r\n');

let sink: Sink;
let filter: InProcFilter;
let close: () => Promise<void>;
before(async () => {
  ({ sink, filter, close } = await startFilterWithSink());
});
after(() => close());

async function send(xforward: string[]): Promise<Record<string, unknown>> {
  const before = filter.logs.length;
  const d = await openDialog(filter.port);
  try {
    await d.read();
    const ehlo = await d.send('EHLO postfix.example.org');
    assert.match(ehlo[0]!, /XFORWARD NAME ADDR PORT PROTO HELO IDENT SOURCE/, 'XFORWARD is announced');
    for (const line of xforward) assert.match((await d.send(line))[0]!, /^250 /, line);
    assert.match((await d.send('MAIL FROM:<a@example.org>'))[0]!, /^250 /);
    assert.match((await d.send('RCPT TO:<b@example.org>'))[0]!, /^250 /);
    assert.match((await d.send('DATA'))[0]!, /^354 /);
    assert.match((await d.send(MESSAGE))[0]!, /^250 /);
    await d.send('QUIT').catch(() => undefined);
  } finally {
    d.close();
  }
  const outcome = filter.logs.slice(before).filter((l) => l.event === 'message.relayed');
  assert.equal(outcome.length, 1, 'exactly one outcome line');
  return outcome[0]!;
}

test('XFORWARD NAME=… ADDR=… IDENT=… before MAIL → queue_id and client in the outcome line', async () => {
  const line = await send(['XFORWARD NAME=mail.example.net ADDR=192.0.2.7 IDENT=ABC123']);
  assert.equal(line.queue_id, 'ABC123');
  assert.equal(line.client, '192.0.2.7');
  assert.equal(sink.messages.length, 1);
});

test('as Postfix sends it: attributes split over two XFORWARD commands', async () => {
  const line = await send([
    'XFORWARD NAME=mail.example.net ADDR=2001:db8::7 PORT=40123 HELO=mail.example.net',
    'XFORWARD PROTO=ESMTP SOURCE=REMOTE IDENT=4XyZ2k3hQvz9',
  ]);
  assert.equal(line.queue_id, '4XyZ2k3hQvz9');
  assert.equal(line.client, '2001:db8::7');
});

test('without XFORWARD the line has no queue_id and the connecting client', async () => {
  const line = await send([]);
  assert.equal(line.queue_id, undefined);
  assert.match(String(line.client), /127\.0\.0\.1$/);
});
