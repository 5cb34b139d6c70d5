// The milter codec: framing, every command and every reply, byte for byte (notes §2.1–2.5, §6.1).
// In: golden packets from the captured Postfix 3.7.11 session and hand-made payloads. Out: decoded values.
// Also the listener's answer to broken input: a clear log line, the connection closed, the next
// connection served as usual.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { connect } from 'node:net';
import {
  decodeCommand, decodeReply, encodeCommand, encodeFrame, encodeReply, FINAL_REPLIES, formatReplyCode, FrameDecoder,
  MAX_DATA, MilterProtocolError, SMFIC, SMFIR, type Frame, type MilterCommand, type MilterReply,
} from '../lib/milter-codec.js';
import { connectMta, startInProcMilter } from './helpers/fake-mta.js';

const b = (s: string) => Buffer.from(s, 'latin1');
const frame = (cmd: string, data: string | Buffer = '') => encodeFrame(cmd.charCodeAt(0), typeof data === 'string' ? b(data) : data);
const decodeAll = (bytes: Buffer) => new FrameDecoder().push(bytes);

/** The MTA side of the captured Postfix 3.7.11 session (notes §2.2), with the length each packet had. */
function postfixCapture(): Array<{ bytes: Buffer; len: number }> {
  const qi = 'i\x006F9D9216522\x00';
  const mailMacros = 'M{mail_addr}\x00alice@mtest.test\x00{mail_host}\x00[127.0.0.1]:2592\x00{mail_mailer}\x00smtp\x00';
  const rcptMacros = (who: string, i = '') => `R${i}{rcpt_addr}\x00${who}\x00{rcpt_host}\x00[127.0.0.1]:2592\x00{rcpt_mailer}\x00smtp\x00`;
  const port = Buffer.alloc(2);
  port.writeUInt16BE(56246);
  const body = Buffer.from('x'.repeat(5732) + '\r\n');
  const list: Array<[Buffer, number]> = [
    [encodeCommand({ type: 'optneg', version: 6, actions: 0x1ff, protocol: 0x1fffff }), 13],
    [frame('D', 'Cj\x00mx.mtest.test\x00{daemon_name}\x00mx.mtest.test\x00{daemon_addr}\x00127.0.0.1\x00v\x00Postfix 3.7.11\x00_\x00localhost [127.0.0.1]\x00'), 111],
    [frame('C', Buffer.concat([b('localhost\x004'), port, b('127.0.0.1\x00')])), 24],
    [frame('D', 'H'), 2],
    [frame('H', 'client.mtest.test\x00'), 19],
    [frame('D', mailMacros), 79],
    [frame('M', '<alice@mtest.test>\x00'), 20],
    [frame('D', rcptMacros('carol@remote.test')), 80],
    [frame('R', '<carol@remote.test>\x00'), 21],
    [frame('A'), 1],
    [frame('D', mailMacros), 79],
    [frame('M', '<alice@mtest.test>\x00'), 20],
    [frame('D', rcptMacros('bob@remote.test')), 78],
    [frame('R', '<bob@remote.test>\x00'), 19],
    [frame('D', rcptMacros('dave@remote.test', qi)), 93],
    [frame('R', '<dave@remote.test>\x00'), 20],
    [frame('D', `T${qi}`), 16],
    [frame('T'), 1],
    [frame('D', `L${qi}`), 16],
    [frame('L', 'From\x00Alice <alice@mtest.test>\x00'), 31],
    [frame('D', `L${qi}`), 16],
    [frame('L', 'Date\x00Thu, 26 Nov 2026 11:21:52 +0000 (UTC)\x00'), 44],
    [frame('D', `N${qi}`), 16],
    [frame('N'), 1],
    [frame('D', `B${qi}`), 16],
    [frame('B', body), 5735],
    [frame('D', `E${qi}`), 16],
    [frame('E'), 1],
    [frame('A'), 1],
    [frame('A'), 1],
    [frame('Q'), 1],
  ];
  return list.map(([bytes, len]) => ({ bytes, len }));
}

test('the reconstructed Postfix capture has the packet lengths the notes recorded', () => {
  for (const { bytes, len } of postfixCapture()) assert.equal(bytes.readUInt32BE(0), len, bytes.subarray(4, 40).toString('latin1'));
  // purepythonmilter's fixture holds the same OPTNEG bytes
  assert.deepEqual(postfixCapture()[0]!.bytes, b('\x00\x00\x00\rO\x00\x00\x00\x06\x00\x00\x01\xff\x00\x1f\xff\xff'));
});

test('framing: the capture split at every byte boundary, byte by byte, and all at once gives the same frames', () => {
  const all = Buffer.concat(postfixCapture().map((p) => p.bytes));
  const expected = decodeAll(all);
  assert.equal(expected.length, postfixCapture().length);
  for (let i = 0; i <= all.length; i++) {
    const d = new FrameDecoder();
    const got = [...d.push(all.subarray(0, i)), ...d.push(all.subarray(i))];
    if (got.length !== expected.length || got.some((f, k) => f.cmd !== expected[k]!.cmd || !f.data.equals(expected[k]!.data))) {
      assert.fail(`split at byte ${i} changed the frames`);
    }
    assert.equal(d.buffered, 0);
  }
  const d = new FrameDecoder();
  const one: Frame[] = [];
  for (const byte of all) one.push(...d.push(Buffer.from([byte])));
  assert.deepEqual(one.map((f) => [f.cmd, f.data.length]), expected.map((f) => [f.cmd, f.data.length]));
  // three chunks cut inside the length field, the command byte and the data
  const cuts = [2, 4, 5, 300, 301, all.length - 3];
  const d3 = new FrameDecoder();
  const got3: Frame[] = [];
  let at = 0;
  for (const c of [...cuts, all.length]) { got3.push(...d3.push(all.subarray(at, c))); at = c; }
  assert.equal(got3.length, expected.length);
});

test('framing: length 0 and lengths over the limit are errors; 65536 and 102400 data bytes are fine', () => {
  assert.throws(() => new FrameDecoder().push(Buffer.from([0, 0, 0, 0])), (e: Error) => e instanceof MilterProtocolError && /length 0/.test(e.message));
  const huge = Buffer.alloc(5);
  huge.writeUInt32BE(MAX_DATA + 2, 0);
  huge[4] = SMFIC.BODY;
  assert.throws(() => new FrameDecoder().push(huge), /exceeds the limit/);
  // the limit is checked from the length field alone: nothing of the data has to arrive first
  assert.throws(() => new FrameDecoder().push(huge.subarray(0, 4)), /exceeds the limit/);
  for (const n of [65535, 65536, 102400]) {
    const f = decodeAll(encodeFrame(SMFIC.HEADER, Buffer.alloc(n, 0x41)));
    assert.equal(f.length, 1);
    assert.equal(f[0]!.data.length, n);
  }
  assert.equal(new FrameDecoder(10).push(encodeFrame(SMFIC.BODY, Buffer.alloc(10))).length, 1);
  assert.throws(() => new FrameDecoder(10).push(encodeFrame(SMFIC.BODY, Buffer.alloc(11))), /exceeds/);
});

test('every command: golden payloads decode, and encode back to the same bytes', () => {
  const port = (n: number) => { const p = Buffer.alloc(2); p.writeUInt16BE(n); return p; };
  const cases: Array<[Buffer, MilterCommand]> = [
    [frame('O', Buffer.from([0, 0, 0, 6, 0, 0, 1, 0xff, 0, 0x1f, 0xff, 0xff])), { type: 'optneg', version: 6, actions: 0x1ff, protocol: 0x1fffff }],
    [frame('D', 'Ci\x00QID\x00{daemon_name}\x00mx\x00'), { type: 'macro', stage: SMFIC.CONNECT, macros: [['i', 'QID'], ['{daemon_name}', 'mx']] }],
    [frame('D', 'H'), { type: 'macro', stage: SMFIC.HELO, macros: [] }],
    [frame('C', Buffer.concat([b('localhost\x004'), port(56246), b('127.0.0.1\x00')])), { type: 'connect', hostname: 'localhost', family: '4', port: 56246, address: '127.0.0.1' }],
    [frame('C', Buffer.concat([b('[::1]\x006'), port(25), b('::1\x00')])), { type: 'connect', hostname: '[::1]', family: '6', port: 25, address: '::1' }],
    [frame('C', Buffer.concat([b('local\x00L'), port(0), b('/run/smtp.sock\x00')])), { type: 'connect', hostname: 'local', family: 'L', port: 0, address: '/run/smtp.sock' }],
    [frame('C', 'localhost\x00U'), { type: 'connect', hostname: 'localhost', family: 'U', port: null, address: null }],
    [frame('H', 'client.mtest.test\x00'), { type: 'helo', name: 'client.mtest.test' }],
    [frame('M', '<alice@mtest.test>\x00BODY=7BIT\x00'), { type: 'mail', args: ['<alice@mtest.test>', 'BODY=7BIT'] }],
    [frame('M', '<j\xc3\xb6rg@m\xc3\xbcller.test>\x00SMTPUTF8\x00BODY=8BITMIME\x00'), { type: 'mail', args: ['<j\xc3\xb6rg@m\xc3\xbcller.test>', 'SMTPUTF8', 'BODY=8BITMIME'] }],
    [frame('R', '<bob@remote.test>\x00NOTIFY=SUCCESS,FAILURE\x00ORCPT=rfc822;bob@remote.test\x00'), { type: 'rcpt', args: ['<bob@remote.test>', 'NOTIFY=SUCCESS,FAILURE', 'ORCPT=rfc822;bob@remote.test'] }],
    [frame('T'), { type: 'data' }],
    [frame('L', 'Subject\x00Invitation: folded\n subject line e8\x00'), { type: 'header', name: 'Subject', value: 'Invitation: folded\n subject line e8' }],
    [frame('L', 'From\x00 Alice <alice@mtest.test>\x00'), { type: 'header', name: 'From', value: ' Alice <alice@mtest.test>' }],
    [frame('L', 'X-Lead\x00   three leading spaces\x00'), { type: 'header', name: 'X-Lead', value: '   three leading spaces' }],
    [frame('L', 'X-Empty\x00\x00'), { type: 'header', name: 'X-Empty', value: '' }],
    [frame('N'), { type: 'eoh' }],
    [frame('B', b('a\x00b\r\n\x00')), { type: 'body', chunk: b('a\x00b\r\n\x00') }],
    [frame('E'), { type: 'eob', chunk: Buffer.alloc(0) }],
    [frame('E', 'last\r\n'), { type: 'eob', chunk: b('last\r\n') }],
    [frame('A'), { type: 'abort' }],
    [frame('Q'), { type: 'quit' }],
    [frame('K'), { type: 'quit_nc' }],
    [frame('U', 'HELP\x00'), { type: 'unknown', line: 'HELP' }],
  ];
  const seen = new Set<string>();
  for (const [bytes, want] of cases) {
    const [f] = decodeAll(bytes);
    assert.deepEqual(decodeCommand(f!), want);
    assert.deepEqual(encodeCommand(want), bytes, `encode ${want.type}`);
    seen.add(want.type);
  }
  assert.equal(seen.size, 15, 'all 15 commands');
});

test('commands: tolerated oddities and malformed payloads', () => {
  // an odd number of macro strings: the name without a value is dropped (emersion panicked on this)
  assert.deepEqual(decodeCommand({ cmd: SMFIC.MACRO, data: b('Mi\x00Q1\x00{lonely}\x00') }), { type: 'macro', stage: SMFIC.MAIL, macros: [['i', 'Q1']] });
  // a last string without its NUL is read to the end
  assert.deepEqual(decodeCommand({ cmd: SMFIC.RCPT, data: b('<a@b>') }), { type: 'rcpt', args: ['<a@b>'] });
  assert.deepEqual(decodeCommand({ cmd: SMFIC.HEADER, data: b('X\x00v') }), { type: 'header', name: 'X', value: 'v' });
  // longer option negotiation payloads (future fields) are read for their first 12 bytes
  assert.deepEqual(decodeCommand({ cmd: SMFIC.OPTNEG, data: Buffer.alloc(16) }), { type: 'optneg', version: 0, actions: 0, protocol: 0 });
  const bad: Array<[number, Buffer, RegExp]> = [
    [SMFIC.OPTNEG, Buffer.alloc(11), /expected 12/],
    [SMFIC.MACRO, Buffer.alloc(0), /command code/],
    [SMFIC.CONNECT, b('host'), /truncated/],
    [SMFIC.CONNECT, b('host\x004\x00'), /truncated port/],
    [SMFIC.CONNECT, b('host\x00X\x00\x00a\x00'), /unknown address family/],
    [SMFIC.HELO, b('no-nul'), /not NUL-terminated/],
    [SMFIC.MAIL, Buffer.alloc(0), /no address/],
    [SMFIC.HEADER, b('no-nul'), /not NUL-terminated/],
    [SMFIC.HEADER, b('X\x00a\x00b\x00'), /NUL inside/],
    [0x7a, Buffer.alloc(3), /unknown command 'z'/],
    [0x00, Buffer.alloc(0), /unknown command 0x00/],
  ];
  for (const [cmd, data, re] of bad) assert.throws(() => decodeCommand({ cmd, data }), (e: Error) => e instanceof MilterProtocolError && re.test(e.message), `${cmd} ${re}`);
});

test('every reply: empty ones are 00 00 00 01 xx, the others have their exact layout, and decode back', () => {
  const simple: Array<[MilterReply['type'], number]> = [
    ['continue', SMFIR.CONTINUE], ['accept', SMFIR.ACCEPT], ['reject', SMFIR.REJECT], ['tempfail', SMFIR.TEMPFAIL], ['discard', SMFIR.DISCARD],
    ['shutdown', SMFIR.SHUTDOWN], ['conn_fail', SMFIR.CONN_FAIL], ['skip', SMFIR.SKIP], ['progress', SMFIR.PROGRESS],
  ];
  for (const [type, byte] of simple) {
    const bytes = encodeReply({ type } as MilterReply);
    assert.deepEqual(bytes, Buffer.from([0, 0, 0, 1, byte]), type);
    assert.deepEqual(decodeReply(decodeAll(bytes)[0]!), { type });
  }
  assert.equal(String.fromCharCode(SMFIR.SHUTDOWN), '4');
  const idx = (n: number) => { const x = Buffer.alloc(4); x.writeUInt32BE(n); return x; };
  const body = Buffer.alloc(70000, 0x61);
  body[3] = 0;
  const cases: Array<[MilterReply, Buffer]> = [
    [{ type: 'optneg', version: 6, actions: 0x13, protocol: 0x10d382 }, frame('O', Buffer.from([0, 0, 0, 6, 0, 0, 0, 0x13, 0, 0x10, 0xd3, 0x82]))],
    [{ type: 'optneg', version: 6, actions: 0x113, protocol: 0, symlists: [{ stage: 5, names: 'i {auth_authen}' }] },
      frame('O', Buffer.concat([Buffer.from([0, 0, 0, 6, 0, 0, 1, 0x13, 0, 0, 0, 0, 0, 0, 0, 5]), b('i {auth_authen}\x00')]))],
    [{ type: 'replycode', text: '451 4.3.0 Try later' }, frame('y', '451 4.3.0 Try later\x00')],
    [{ type: 'addheader', name: 'X-Calendar-Link', value: ' added' }, frame('h', 'X-Calendar-Link\x00 added\x00')],
    [{ type: 'insheader', index: 0x01020304, name: 'X-A', value: 'v\n w' }, frame('i', Buffer.concat([idx(0x01020304), b('X-A\x00v\n w\x00')]))],
    [{ type: 'chgheader', index: 1, name: 'Content-Type', value: '' }, frame('m', Buffer.concat([idx(1), b('Content-Type\x00\x00')]))],
    [{ type: 'replbody', chunk: body }, frame('b', body)],
    [{ type: 'addrcpt', rcpt: '<x@y>' }, frame('+', '<x@y>\x00')],
    [{ type: 'delrcpt', rcpt: '<x@y>' }, frame('-', '<x@y>\x00')],
    [{ type: 'addrcpt_par', rcpt: '<x@y>', args: ['NOTIFY=NEVER'] }, frame('2', '<x@y>\x00NOTIFY=NEVER\x00')],
    [{ type: 'chgfrom', from: '<s@y>', args: ['RET=HDRS'] }, frame('e', '<s@y>\x00RET=HDRS\x00')],
    [{ type: 'quarantine', reason: 'held' }, frame('q', 'held\x00')],
  ];
  for (const [reply, bytes] of cases) {
    assert.deepEqual(encodeReply(reply), bytes, reply.type);
    assert.deepEqual(decodeReply(decodeAll(bytes)[0]!), reply, reply.type);
  }
  assert.throws(() => encodeReply({ type: 'addheader', name: 'X', value: 'a\0b' }), /NUL/);
  assert.throws(() => encodeReply({ type: 'chgheader', index: -1, name: 'X', value: '' }), /index/);
  assert.throws(() => decodeReply({ cmd: SMFIR.CONTINUE, data: Buffer.alloc(1) }), /followed by 1 data bytes/);
  assert.throws(() => decodeReply({ cmd: 0x5a, data: Buffer.alloc(0) }), /unknown reply/);
  assert.ok(FINAL_REPLIES.has('replycode') && !FINAL_REPLIES.has('replbody') && !FINAL_REPLIES.has('progress'));
});

test('REPLBODY chunking: packets of the configured size concatenate to the body exactly', () => {
  const body = Buffer.from(Array.from({ length: 3001 }, (_, i) => String.fromCharCode(32 + (i % 90))).join('') + '\r\n');
  for (const size of [1, 7, 1000, 65535]) {
    const packets: Buffer[] = [];
    for (let i = 0; i < body.length; i += size) packets.push(encodeReply({ type: 'replbody', chunk: body.subarray(i, i + size) }));
    const frames = decodeAll(Buffer.concat(packets));
    assert.ok(frames.every((f) => f.cmd === SMFIR.REPLBODY && f.data.length <= size));
    assert.deepEqual(Buffer.concat(frames.map((f) => f.data)), body);
  }
});

test('REPLYCODE text: class checks, multi-line with ddd-, no bare CR/LF, % doubled', () => {
  assert.equal(formatReplyCode(451, '4.3.0', 'Temporary filter failure, try again later'), '451 4.3.0 Temporary filter failure, try again later');
  assert.equal(formatReplyCode(550, undefined, '100% sure'), '550 100%% sure');
  assert.equal(formatReplyCode(421, '4.7.0', ['one', 'two']), '421-4.7.0 one\r\n421 4.7.0 two');
  assert.throws(() => formatReplyCode(250, undefined, 'ok'), /4xx or 5xx/);
  assert.throws(() => formatReplyCode(451, '5.3.0', 'x'), /does not match/);
  assert.throws(() => formatReplyCode(451, '4.3', 'x'), /x\.y\.z/);
  assert.throws(() => formatReplyCode(451, '4.3.0', 'a\r\nb'), /CR, LF or NUL/);
  assert.throws(() => formatReplyCode(451, '4.3.0', 'a\nb'), /CR, LF or NUL/);
  assert.throws(() => formatReplyCode(451, '4.3.0', []), /empty/);
});

test('the listener: oversized, zero-length and unknown packets get a log line and a closed connection, nothing else', async (t) => {
  const m = await startInProcMilter();
  t.after(() => m.close());
  const attempts: Array<[string, Buffer, RegExp]> = [
    ['oversized', (() => { const h = Buffer.alloc(5); h.writeUInt32BE(MAX_DATA + 100); h[4] = SMFIC.BODY; return h; })(), /exceeds the limit/],
    ['zero length', Buffer.from([0, 0, 0, 0]), /length 0/],
    ['unknown command', encodeFrame(0x7a, b('junk')), /unknown command 'z'/],
    ['before negotiation', encodeCommand({ type: 'mail', args: ['<a@b>'] }), /mail before option negotiation/],
    ['malformed negotiation', encodeFrame(SMFIC.OPTNEG, Buffer.alloc(4)), /expected 12/],
    ['version 1', encodeCommand({ type: 'optneg', version: 1, actions: 0, protocol: 0 }), /version 1; 2 or later/],
  ];
  for (const [name, bytes, re] of attempts) {
    const before = m.logs.length;
    const socket = connect(m.port, '127.0.0.1');
    const got: Buffer[] = [];
    socket.on('data', (d: Buffer) => got.push(d));
    socket.on('error', () => undefined);
    await new Promise<void>((resolve) => socket.once('connect', resolve));
    socket.write(bytes);
    const closed = await Promise.race([
      new Promise<boolean>((resolve) => socket.once('close', () => resolve(true))),
      new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 3000)),
    ]);
    socket.destroy();
    assert.ok(closed, `${name}: the milter closed the connection`);
    assert.equal(Buffer.concat(got).length, 0, `${name}: no reply bytes`);
    const line = m.logs.slice(before).find((l) => l.event === 'milter.protocol_error');
    assert.ok(line && re.test(String(line.error)), `${name}: log line ${JSON.stringify(m.logs.slice(before))}`);
  }
  // a packet cut off by the peer is no error at all, and the server still serves
  const half = connect(m.port, '127.0.0.1');
  await new Promise<void>((resolve) => half.once('connect', resolve));
  half.end(encodeCommand({ type: 'optneg', version: 6, actions: 0x1ff, protocol: 0x1fffff }).subarray(0, 7));
  await new Promise((r) => setTimeout(r, 100));
  const mta = await connectMta(m.port);
  t.after(() => mta.close());
  const neg = await mta.negotiate();
  assert.equal(neg.version, 6);
});
