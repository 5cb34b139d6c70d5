// The relay, end to end with real servers: client → filter (in this process) → sink.
// Every case checks what the client heard AND what the next hop got: the same bytes and
// envelope, or nothing, never a 250 for a message the next hop did not take.

import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startFilterWithSink, startInProcFilter, type InProcFilter } from './helpers/filter-inproc.js';
import { startSink, type Sink } from './helpers/sink.js';
import { openData, openDialog, transact } from './helpers/smtp-dialog.js';
import { until } from './helpers/until.js';

const CRLF = '\r\n';
const msg = (headers: string, body: string | Buffer): Buffer =>
  Buffer.concat([Buffer.from(headers.replace(/\n/g, CRLF) + CRLF), Buffer.isBuffer(body) ? body : Buffer.from(body.replace(/\r?\n/g, CRLF))]);

const PLAIN = msg('From: a@example.org\nTo: b@example.org\nSubject: hello\nMessage-ID: <1@example.org>\n', 'Hello Bob,\nsee you.\n');

async function withPair(flags: Record<string, unknown>, sinkOpts: Parameters<typeof startSink>[0], fn: (f: InProcFilter, s: Sink) => Promise<void>) {
  const pair = await startFilterWithSink({ next_hop_timeout: 3, connect_timeout: 2, ...flags }, sinkOpts);
  try {
    await fn(pair.filter, pair.sink);
  } finally {
    await pair.close();
  }
}

describe('byte-identical relay', () => {
  let sink: Sink;
  let filter: InProcFilter;
  let close: () => Promise<void>;
  before(async () => {
    ({ sink, filter, close } = await startFilterWithSink());
  });
  after(() => close());

  const cases: Array<[string, { from: string; to: string[]; data: Buffer; mailParams?: string }]> = [
    ['8bit body', { from: 'a@example.org', to: ['b@example.org'], mailParams: 'BODY=8BITMIME', data: msg('From: a@example.org\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n', 'Grüße aus Köln — 会議\n') }],
    ['SMTPUTF8 addresses', { from: 'jörg@bücher.example', to: ['用户@例子.example'], mailParams: 'SMTPUTF8 BODY=8BITMIME', data: msg('From: jörg@bücher.example\nTo: 用户@例子.example\nSubject: 你好\n', 'hi\n') }],
    ['long lines', { from: 'a@example.org', to: ['b@example.org'], data: msg('From: a@example.org\nSubject: long\n', `${'x'.repeat(998)}\n${'y'.repeat(4000)}\n.leading dot\n..two dots\n`) }],
    ['null sender', { from: '', to: ['b@example.org'], data: msg('From: MAILER-DAEMON@example.org\nSubject: Undelivered\n', 'bounce\n') }],
    ['many recipients', { from: 'a@example.org', to: Array.from({ length: 300 }, (_, i) => `r${i}@example.org`), data: PLAIN }],
    ['no final CRLF', { from: 'a@example.org', to: ['b@example.org'], data: Buffer.from('Subject: x\r\n\r\nno newline at the end') }],
  ];
  for (const [name, c] of cases) {
    test(name, async () => {
      const before = sink.messages.length;
      const r = await transact(filter.port, c);
      assert.match(r.final[0]!, /^250 /, r.final.join());
      const got = sink.messages[before]!;
      assert.ok(got, 'the sink got the message');
      assert.equal(sink.messages.length, before + 1, 'exactly one transaction');
      const expected = c.data.subarray(-2).toString() === '\r\n' ? c.data : Buffer.concat([c.data, Buffer.from('\r\n')]);
      assert.ok(got.raw.equals(expected) || got.raw.equals(c.data), 'bytes identical');
      assert.equal(got.envelope.from, c.from);
      assert.deepEqual(got.envelope.to.map((r) => r.address), c.to);
    });
  }

  test('40 MiB message, byte-identical, spilled to disk and removed', async () => {
    const line = Buffer.from('QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0\r\n');
    const body = Buffer.concat(Array.from({ length: Math.ceil((40 * 1024 * 1024) / line.length) }, () => line));
    const data = Buffer.concat([Buffer.from('From: a@example.org\r\nSubject: big\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n'), body]);
    const before = sink.messages.length;
    const r = await transact(filter.port, { from: 'a@example.org', to: ['b@example.org'], data });
    assert.match(r.final[0]!, /^250 /);
    assert.ok(sink.messages[before]!.raw.equals(data));
  });

  test('ESMTP parameters reach the next hop: BODY, SMTPUTF8, SIZE, RET, ENVID, NOTIFY', async () => {
    const before = sink.messages.length;
    const r = await transact(filter.port, {
      from: 'ä@example.org', to: ['b@example.org', 'c@example.org'], data: PLAIN,
      mailParams: `BODY=8BITMIME SMTPUTF8 SIZE=${PLAIN.length} RET=HDRS ENVID=QQ314159`,
      // Postfix sends ORCPT with each recipient's own address: it says nothing and must not split
      rcptParams: ['NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b@example.org', 'NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;C@example.org'],
    });
    assert.match(r.final[0]!, /^250 /);
    const got = sink.messages[before]!;
    assert.equal(sink.messages.length, before + 1, 'same DSN parameters: one transaction');
    assert.equal(got.envelope.params.BODY, '8BITMIME');
    assert.equal(got.envelope.params.SMTPUTF8, true);
    assert.equal(Number(got.envelope.params.SIZE), PLAIN.length);
    assert.equal(got.envelope.params.RET, 'HDRS');
    assert.equal(got.envelope.params.ENVID, 'QQ314159');
    for (const rc of got.envelope.to) assert.equal(rc.params.NOTIFY, 'SUCCESS,FAILURE');
  });

  test('an ORCPT that differs from the recipient (an alias) is carried, in its own transaction', async () => {
    const before = sink.messages.length;
    const r = await transact(filter.port, {
      from: 'a@example.org', to: ['b@example.org', 'c@example.org'], data: PLAIN,
      rcptParams: ['NOTIFY=FAILURE ORCPT=rfc822;team@example.org', 'NOTIFY=FAILURE'],
    });
    assert.match(r.final[0]!, /^250 /);
    const got = sink.messages.slice(before);
    assert.equal(got.length, 2);
    const b = got.find((m) => m.envelope.to[0]!.address === 'b@example.org')!;
    assert.equal(String(b.envelope.to[0]!.params.ORCPT).toLowerCase(), 'rfc822;team@example.org');
    const c = got.find((m) => m.envelope.to[0]!.address === 'c@example.org')!;
    assert.equal(c.envelope.to[0]!.params.ORCPT, undefined);
    assert.equal(c.envelope.to[0]!.params.NOTIFY, 'FAILURE');
  });

  test('recipients with different NOTIFY go in separate transactions, each with its own', async () => {
    const before = sink.messages.length;
    const r = await transact(filter.port, { from: 'a@example.org', to: ['b@example.org', 'c@example.org'], data: PLAIN, rcptParams: ['NOTIFY=NEVER', 'NOTIFY=SUCCESS'] });
    assert.match(r.final[0]!, /^250 /);
    const got = sink.messages.slice(before);
    assert.equal(got.length, 2);
    const notify = Object.fromEntries(got.map((m) => [m.envelope.to[0]!.address, m.envelope.to[0]!.params.NOTIFY]));
    assert.deepEqual(notify, { 'b@example.org': 'NEVER', 'c@example.org': 'SUCCESS' });
  });

  test('one outcome log line per message with id, envelope, reply and time', async () => {
    const r = await transact(filter.port, { from: 'log@example.org', to: ['b@example.org'], data: PLAIN });
    assert.match(r.final[0]!, /^250 /);
    const line = filter.logs.find((l) => l.event === 'message.relayed' && l.from === 'log@example.org')!;
    assert.ok(line);
    assert.equal(typeof line.id, 'string');
    assert.deepEqual(line.to, ['b@example.org']);
    assert.match(String(line.reply), /^250 /);
    assert.equal(typeof line.ms, 'number');
  });
});

describe('next-hop failures', () => {
  const send = (f: InProcFilter, to = ['b@example.org']) => transact(f.port, { from: 'a@example.org', to, data: PLAIN });

  test('451 from the next hop is passed back with its text', () =>
    withPair({}, { behaviour: (q) => (q.phase === 'data' ? { code: 451, text: '4.7.1 Greylisted, come back later' } : undefined) }, async (f) => {
      const r = await send(f);
      assert.match(r.final[0]!, /^451 4\.7\.1 Greylisted/);
    }));

  test('550 from the next hop is passed back with its text', () =>
    withPair({}, { behaviour: (q) => (q.phase === 'data' ? { code: 550, text: '5.7.1 Content rejected' } : undefined) }, async (f) => {
      const r = await send(f);
      assert.match(r.final[0]!, /^550 5\.7\.1 Content rejected/);
    }));

  test('every recipient refused at RCPT with 550: the 550 comes back', () =>
    withPair({}, { behaviour: (q) => (q.phase === 'rcpt' ? { code: 550, text: '5.1.1 No such user' } : undefined) }, async (f, s) => {
      const r = await send(f);
      assert.match(r.final[0]!, /^550 5\.1\.1 No such user/);
      assert.equal(s.messages.length, 0);
    }));

  test('some recipients refused in SMTP mode: 451, never a 250 for the refused one', () =>
    withPair({}, { behaviour: (q) => (q.phase === 'rcpt' && q.rcpt === 'c@example.org' ? { code: 550, text: '5.1.1 No such user' } : undefined) }, async (f, s) => {
      const r = await send(f, ['b@example.org', 'c@example.org']);
      assert.match(r.final[0]!, /^451 4\.3\.0/);
      assert.equal(s.messages.length, 1, 'b got it (and will get a duplicate on retry: documented)');
    }));

  test('some recipients refused in LMTP mode: one reply per recipient', () =>
    withPair({ lmtp: true }, { behaviour: (q) => (q.phase === 'rcpt' && q.rcpt === 'c@example.org' ? { code: 550, text: '5.1.1 No such user' } : undefined) }, async (f) => {
      const r = await transact(f.port, { from: 'a@example.org', to: ['b@example.org', 'c@example.org'], data: PLAIN, lmtp: true });
      assert.equal(r.final.length, 2);
      assert.match(r.final[0]!, /^250 /);
      assert.match(r.final[1]!, /^550 5\.1\.1 No such user/);
    }));

  test('LMTP next hop deferring one recipient: per-recipient 250 and 451 to an LMTP client', async () => {
    const sink = await startSink({ lmtp: true, behaviour: (q) => (q.phase === 'data' && q.rcpt === 'c@example.org' ? { code: 451, text: '4.2.0 Mailbox busy' } : undefined) });
    const f = await startInProcFilter({ lmtp: true, next_hop: `lmtp://127.0.0.1:${sink.port}` });
    try {
      const r = await transact(f.port, { from: 'a@example.org', to: ['b@example.org', 'c@example.org'], data: PLAIN, lmtp: true });
      assert.deepEqual(r.final.map((x) => x.slice(0, 3)), ['250', '451']);
      assert.match(r.final[1]!, /Mailbox busy/);
    } finally {
      await f.close();
      await sink.close();
    }
  });

  // A 421 is the next hop closing its own connection; passed on as it is, it would make the listener
  // close the MTA's connection after that reply, and an LMTP client would never hear the replies of
  // the recipients after it (delivered, so they would get a second copy on the retry).
  test('LMTP client: the next hop says 421 at the dot for one transaction and 250 for the next: each recipient hears its own, the 421 as 451', () =>
    withPair({ lmtp: true }, { behaviour: (q) => (q.phase === 'data' && q.transaction === 1 ? { code: 421, text: '4.3.2 hop going down' } : undefined) }, async (f, s) => {
      const r = await transact(f.port, { from: 'a@example.org', to: ['b@example.org', 'c@example.org'], data: PLAIN, lmtp: true, rcptParams: ['NOTIFY=NEVER', 'NOTIFY=SUCCESS'] });
      assert.equal(s.messages.length, 2, 'one transaction per DSN group');
      assert.equal(r.final.length, 2);
      assert.match(r.final[0]!, /^451 4\.3\.2 hop going down/);
      assert.match(r.final[1]!, /^250 /);
    }));

  // A raw LMTP hop: smtp-server answers all recipients after the dot at once, and cannot stop between them.
  for (const [what, after] of [
    ['closes the connection', (sock: Socket) => sock.destroy()],
    ['says 421 and closes', (sock: Socket) => sock.end('421 4.3.2 lmtp.test going down\r\n')],
    ['falls silent', () => undefined],
  ] as Array<[string, (sock: Socket) => void]>) {
    test(`LMTP next hop that answers the first recipient after the dot, then ${what}: that 250 reaches the LMTP client, 451 for the other`, async () => {
      const sockets = new Set<Socket>();
      const hop = createServer((sock) => {
        sockets.add(sock);
        sock.on('error', () => undefined);
        let buf = '';
        let inData = false;
        sock.write('220 lmtp.test LMTP\r\n');
        sock.on('data', (d: Buffer) => {
          buf += d.toString('latin1');
          for (let i = buf.indexOf('\r\n'); i >= 0; i = buf.indexOf('\r\n')) {
            const line = buf.slice(0, i);
            buf = buf.slice(i + 2);
            if (inData) {
              if (line !== '.') continue;
              inData = false;
              sock.write('250 2.0.0 <b@example.org> delivered\r\n');
              setTimeout(() => after(sock), 20);
            } else if (/^LHLO/i.test(line)) sock.write('250-lmtp.test\r\n250 PIPELINING\r\n');
            else if (/^DATA/i.test(line)) { inData = true; sock.write('354 go ahead\r\n'); }
            else if (/^QUIT/i.test(line)) sock.end('221 bye\r\n');
            else sock.write('250 2.1.0 ok\r\n');
          }
        });
      });
      await new Promise<void>((r) => hop.listen(0, '127.0.0.1', r));
      const f = await startInProcFilter({ lmtp: true, next_hop: `lmtp://127.0.0.1:${(hop.address() as AddressInfo).port}`, next_hop_timeout: 2 });
      try {
        const r = await transact(f.port, { from: 'a@example.org', to: ['b@example.org', 'c@example.org'], data: PLAIN, lmtp: true });
        assert.match(r.final[0]!, /^250 2\.0\.0 <b@example\.org> delivered/);
        assert.match(r.final[1]!, /^4\d\d /);
      } finally {
        await f.close();
        for (const sock of sockets) sock.destroy();
        await new Promise((r) => hop.close(r));
      }
    });
  }

  // RFC 5321 4.5.3.1.5: a reply line is at most 512 octets with its code and CRLF. The next hop's
  // text is passed on, but a long one in UTF-8 (or 8-bit) must still fit in one lawful line.
  test('a next-hop refusal with very long non-ASCII text: passed on in one reply line of at most 512 octets', () =>
    withPair({}, { behaviour: (q) => (q.phase === 'data' ? { code: 550, text: `5.7.1 ${'Grüße, 会議 '.repeat(200)}` } : undefined) }, async (f) => {
      const d = await openData(f.port);
      try {
        await d.send(Buffer.concat([PLAIN, Buffer.from('.\r\n')]), 0);
        const [line] = await d.read(); // read as latin1: one character per octet
        assert.match(line!, /^550 5\.7\.1 Gr/);
        assert.ok(line!.length + 2 <= 512, `reply line of ${line!.length + 2} octets`);
      } finally {
        d.close();
      }
    }));

  test('next hop drops the connection mid-DATA: 451 4.4.2', () =>
    withPair({}, { behaviour: (q) => (q.phase === 'data' ? { drop: 100 } : undefined) }, async (f) => {
      const r = await send(f);
      assert.match(r.final[0]!, /^451 4\.4\.2/);
    }));

  test('a message larger than the SIZE the next hop announces: 552 5.3.4, nothing sent', () =>
    withPair({}, { size: 2048 }, async (f, s) => {
      const r = await transact(f.port, { from: 'a@example.org', to: ['b@example.org'], data: msg('Subject: big\n', 'z'.repeat(5000) + '\n') });
      assert.match(r.final[0]!, /^552 5\.3\.4 .*next hop/);
      assert.equal(s.messages.length, 0);
    }));

  test('next hop silent past the timeout: 451 4.4.2 within the bound', () =>
    withPair({ next_hop_timeout: 2 }, { behaviour: (q) => (q.phase === 'data' ? 'silent' : undefined) }, async (f) => {
      const t0 = Date.now();
      const r = await send(f);
      assert.match(r.final[0]!, /^451 4\.4\.2/);
      assert.ok(Date.now() - t0 < 6000, 'answered within the timeout plus a margin');
    }));

  // Postfix waits smtp_data_done_timeout for the reply to "."; a message relayed as several bodies
  // must not take next_hop_timeout once per body, or Postfix gives up first and may deliver twice.
  test('a message relayed as several bodies still answers within one next_hop_timeout', () =>
    withPair({ next_hop_timeout: 2 }, { behaviour: (q) => (q.phase === 'data' ? 'silent' : undefined) }, async (f, s) => {
      const t0 = Date.now();
      const r = await transact(f.port, { from: 'a@example.org', to: ['b@example.org', 'c@example.org', 'd@example.org'], data: PLAIN, rcptParams: ['NOTIFY=NEVER', 'NOTIFY=SUCCESS', 'NOTIFY=FAILURE'] });
      const took = Date.now() - t0;
      assert.match(r.final[0]!, /^451 4\.4\.2/);
      assert.ok(took < 3500, `answered after ${took} ms, not within next_hop_timeout (2 s) plus a margin`);
      // the silent hop holds the first body for the whole bound; the others are not tried after it
      assert.equal(s.messages.length, 1, 'only the first body reached the next hop');
    }));

  test('next hop unreachable: 451 4.4.1', async () => {
    const f = await startInProcFilter({ next_hop: 'smtp://127.0.0.1:1', connect_timeout: 2 });
    try {
      const r = await send(f);
      assert.match(r.final[0]!, /^451 4\.4\.1/);
    } finally {
      await f.close();
    }
  });

  // reached but unwell: the connection was made, then no greeting, a refusing greeting, or a drop
  for (const [what, onConnect] of [
    ['never greets', () => undefined],
    ['greets with 421', (sock: Socket) => sock.write('421 hop.test busy\r\n')],
    ['greets with 554', (sock: Socket) => sock.write('554 hop.test no service here\r\n')],
    ['closes before greeting', (sock: Socket) => sock.destroy()],
  ] as Array<[string, (sock: Socket) => void]>) {
    test(`next hop that accepts the connection but ${what}: 451 4.4.2, not "unreachable"`, async () => {
      const sockets = new Set<Socket>();
      const hop = createServer((sock) => { sockets.add(sock); sock.on('error', () => undefined); onConnect(sock); });
      await new Promise<void>((r) => hop.listen(0, '127.0.0.1', r));
      const f = await startInProcFilter({ next_hop: `smtp://127.0.0.1:${(hop.address() as AddressInfo).port}`, connect_timeout: 1, next_hop_timeout: 5 });
      try {
        const r = await send(f);
        assert.match(r.final[0]!, /^451 4\.4\.2/);
      } finally {
        await f.close();
        for (const sock of sockets) sock.destroy();
        await new Promise((r) => hop.close(r));
      }
    });
  }
});

describe('limits and refusals', () => {
  test('a client outside allowed_clients gets 554 and nothing reaches the next hop', () =>
    withPair({ allowed_clients: '192.0.2.0/24' }, {}, async (f, s) => {
      const d = await openDialog(f.port);
      const greeting = await d.read().catch((e: Error) => [e.message]);
      d.close();
      assert.match(greeting[0]!, /^554 5\.7\.1/);
      await assert.rejects(transact(f.port, { from: 'a@example.org', to: ['b@example.org'], data: PLAIN }));
      assert.equal(s.messages.length, 0);
      assert.ok(f.logs.some((l) => l.event === 'smtp.refused'));
    }));

  test('an allow-list entry that admits every address is logged as config.wide_allow_list however it is written', async () => {
    for (const wide of ['0.0.0.0/00', '::ffff:0.0.0.0/96', '::/0', '0.0.0.0/0']) {
      await withPair({ allowed_clients: `127.0.0.0/8,${wide}` }, {}, async (f) => {
        assert.ok(f.logs.some((l) => l.event === 'config.wide_allow_list'), `${wide} admits every IPv4 or IPv6 address`);
      });
    }
    await withPair({ allowed_clients: '127.0.0.0/8,10.0.0.0/8,::1/128' }, {}, async (f) => {
      assert.ok(!f.logs.some((l) => l.event === 'config.wide_allow_list'));
    });
  });

  test('a message over max_message_size gets 552 and nothing reaches the next hop', () =>
    withPair({ max_message_size: 4096 }, {}, async (f, s) => {
      const r = await transact(f.port, { from: 'a@example.org', to: ['b@example.org'], data: msg('Subject: big\n', 'z'.repeat(10000) + '\n') });
      assert.match(r.final[0]!, /^552 /);
      assert.equal(s.messages.length, 0);
    }));

  test('recipients over max_recipients get 452; the accepted ones go through', () =>
    withPair({ max_recipients: 2 }, {}, async (f, s) => {
      const r = await transact(f.port, { from: 'a@example.org', to: ['b@example.org', 'c@example.org', 'd@example.org'], data: PLAIN });
      assert.deepEqual(r.rcpt.map((x) => x.slice(0, 3)), ['250', '250', '452']);
      assert.match(r.final[0]!, /^250 /);
      assert.deepEqual(s.messages[0]!.envelope.to.map((x) => x.address), ['b@example.org', 'c@example.org']);
    }));

  test('a client that leaves in the middle of DATA: nothing relayed, the spilled part removed at once, nothing left in flight', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'calfilter-spec-'));
    const { filter: f, sink: s, close } = await startFilterWithSink({ spool_memory_limit: 0, spool_dir: dir, shutdown_timeout: 5 });
    let closed = false;
    try {
      const d = await openData(f.port);
      d.closed.catch(() => undefined);
      await d.send(Buffer.from('Subject: cut\r\n\r\n' + 'line\r\n'.repeat(20000)), 0);
      // the part sent so far is on disk, in a message file of its own
      await until('the partial message to spill to disk', 5000, async () => ((await readdir(dir)).length ? true : undefined), undefined, 20);
      d.close();
      await until('the transaction to leave the in-flight set', 5000, async () => (f.listener.inFlight() === 0 ? true : undefined), undefined, 20);
      await until('the spool directory to be empty', 5000, async () => ((await readdir(dir)).length === 0 ? true : undefined), undefined, 20);
      const t0 = Date.now();
      await close();
      closed = true;
      assert.ok(Date.now() - t0 < 3000, `close() did not wait for the abandoned transaction (${Date.now() - t0} ms)`);
      assert.equal(s.messages.length, 0);
      const line = f.logs.find((l) => l.event === 'message.incomplete');
      assert.ok(line, 'message.incomplete logged');
      assert.deepEqual(line.to, ['b@example.org']);
      assert.ok((line.bytes as number) > 0);
    } finally {
      if (!closed) await close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('AUTH is not offered and not required', () =>
    withPair({}, {}, async (f) => {
      const d = await openDialog(f.port);
      await d.read();
      const ehlo = await d.send('EHLO client.test');
      d.close();
      assert.doesNotMatch(ehlo[0]!, /AUTH/);
      assert.match(ehlo[0]!, /DSN/);
      assert.match(ehlo[0]!, /8BITMIME/);
    }));
});

describe('SMTP smuggling', () => {
  const attempts: Array<[string, string]> = [
    ['<LF>.<LF>', '\n.\n'],
    ['<CR>.<CR>', '\r.\r'],
    ['<LF>.<CR><LF>', '\n.\r\n'],
    ['<CR><LF>.<LF>', '\r\n.\n'],
  ];
  for (const [name, seq] of attempts) {
    test(`${name} inside DATA never produces a second message`, () =>
      withPair({}, {}, async (f, s) => {
        const d = await openData(f.port);
        const payload = `Subject: first\r\n\r\nbody${seq}MAIL FROM:<evil@example.org>\r\nRCPT TO:<victim@example.org>\r\nDATA\r\nSubject: smuggled\r\n\r\nsmuggled${seq}`;
        const final = await d.send(Buffer.from(payload + '\r\n.\r\n'));
        await d.send('QUIT').catch(() => undefined);
        d.close();
        assert.match(final[0]!, /^250 /);
        assert.equal(s.messages.length, 1, 'one message at the next hop');
        assert.deepEqual(s.messages[0]!.envelope.to.map((x) => x.address), ['b@example.org']);
        assert.match(s.messages[0]!.raw.toString('latin1'), /smuggled/, 'the smuggled text stayed inside the one message');
      }));
  }
});
