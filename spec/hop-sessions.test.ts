// Next-hop sessions kept between messages (lib/hop-sessions.ts): reuse must never cost a message.
// A session reused at once goes out unchecked and, if it fails before a byte of the message was
// read, the message goes once more over a new connection; one idle for over a second is checked
// with RSET first and replaced if the check fails; a failure after the data started gives 451,
// never 250 and never a second copy from us; idle, old and shutdown sessions say QUIT. Real filter
// in-process, a real smtp-server sink or a scripted raw next hop.

import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { startInProcFilter, type InProcFilter } from './helpers/filter-inproc.js';
import { startScriptedHop, type ScriptedHop } from './helpers/scripted-hop.js';
import { startSink } from './helpers/sink.js';
import { transact } from './helpers/smtp-dialog.js';

const msg = (n: number) => Buffer.from(`From: a@example.org\r\nTo: b@example.org\r\nSubject: note ${n}\r\nMessage-ID: <n${n}@example.org>\r\n\r\nplain text, nothing calendar-related\r\n`);
const send = (f: InProcFilter, n: number) => transact(f.port, { from: 'a@example.org', to: ['b@example.org'], data: msg(n) });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Longer than lib/hop-sessions.ts PROBE_AFTER_MS: the next reuse is checked with RSET. */
const IDLE = 1100;
const commandsOf = (hop: ScriptedHop) => hop.connections.map((c) => c.commands.map((l) => l.split(/[\s:]/)[0]!.toUpperCase()));

async function withHop(flags: Record<string, unknown>, body: (hop: ScriptedHop, filter: InProcFilter) => Promise<void>): Promise<void> {
  const hop = await startScriptedHop();
  const filter = await startInProcFilter({ next_hop: `smtp://127.0.0.1:${hop.port}`, next_hop_idle_time: 60, connect_timeout: 2, next_hop_timeout: 5, ...flags });
  try {
    await body(hop, filter);
  } finally {
    await filter.close();
    await hop.close();
  }
}

describe('next-hop sessions', () => {
  const cleanup: Array<() => Promise<void>> = [];
  after(async () => { for (const c of cleanup) await c(); });

  test('messages in a row share one connection, with no RSET round trip when reused at once', async () => {
    await withHop({}, async (hop, filter) => {
      for (const n of [1, 2, 3]) assert.match((await send(filter, n)).final[0]!, /^250 /);
      assert.equal(hop.connections.length, 1, 'one next-hop connection for three messages');
      assert.deepEqual(commandsOf(hop)[0], ['EHLO', 'MAIL', 'RCPT', 'DATA', 'MAIL', 'RCPT', 'DATA', 'MAIL', 'RCPT', 'DATA']);
      assert.deepEqual(hop.messages.map((m) => m.toString()), [1, 2, 3].map((n) => msg(n).toString()), 'each message once, byte-identical');
    });
  });

  test('a session idle for over a second answers RSET before MAIL FROM', async () => {
    await withHop({}, async (hop, filter) => {
      assert.match((await send(filter, 1)).final[0]!, /^250 /);
      await sleep(IDLE);
      assert.match((await send(filter, 2)).final[0]!, /^250 /);
      assert.deepEqual(commandsOf(hop), [['EHLO', 'MAIL', 'RCPT', 'DATA', 'RSET', 'MAIL', 'RCPT', 'DATA']]);
    });
  });

  for (const [what, answer] of [['closes the connection at', 'close'], ['answers 421 to', '421 4.4.2 too many messages']] as const) {
    test(`a session reused at once whose next hop ${what} MAIL FROM: the message goes once over a new connection, 250`, async () => {
      await withHop({}, async (hop, filter) => {
        assert.match((await send(filter, 1)).final[0]!, /^250 /);
        hop.setScript((cmd, conn) => (/^MAIL /.test(cmd) && conn.n === 1 && conn.commands.filter((c) => /^MAIL /.test(c)).length === 2 ? answer : undefined));
        assert.match((await send(filter, 2)).final[0]!, /^250 /);
        assert.equal(hop.connections.length, 2);
        assert.deepEqual(hop.messages.map((m) => m.toString()), [msg(1), msg(2)].map(String), 'each message once');
      });
    });
  }

  test('a session reused at once refused at RCPT (550): the refusal is the answer, no second try', async () => {
    await withHop({}, async (hop, filter) => {
      assert.match((await send(filter, 1)).final[0]!, /^250 /);
      hop.setScript((cmd, _c, tx) => (/^RCPT /.test(cmd) && tx === 2 ? '550 5.1.1 no such user' : undefined));
      assert.match((await send(filter, 2)).final[0]!, /^550 5\.1\.1 /);
      assert.equal(hop.connections.length, 1);
    });
  });

  test('a session reused at once cut after the data went out: 451 4.4.2, and the filter does not send it again', async () => {
    await withHop({}, async (hop, filter) => {
      assert.match((await send(filter, 1)).final[0]!, /^250 /);
      hop.setScript((cmd, _c, tx) => (cmd === '.' && tx === 2 ? 'close' : undefined));
      assert.match((await send(filter, 2)).final[0]!, /^451 4\.4\.2 /);
      assert.equal(hop.connections.length, 1, 'no second connection');
      assert.equal(hop.messages.length, 2, 'the hop got the bytes once (its answer never came: the MTA retries, a duplicate at worst)');
    });
  });

  test('200 messages from 20 clients at once: each reaches the next hop once, with its own envelope and bytes', async () => {
    const sink = await startSink();
    const filter = await startInProcFilter({ next_hop: `smtp://127.0.0.1:${sink.port}`, next_hop_idle_time: 60 });
    cleanup.push(async () => { await filter.close(); await sink.close(); });
    const body = (n: number) => Buffer.from(`From: a@example.org\r\nSubject: ${n}\r\n\r\n${`line of message ${n}\r\n`.repeat(50 + (n % 7) * 100)}`);
    let next = 0;
    const client = async () => {
      for (let n = next++; n < 200; n = next++) {
        const r = await transact(filter.port, { from: `s${n}@example.org`, to: [`r${n}@example.org`], data: body(n) });
        assert.match(r.final[0]!, /^250 /, `message ${n}`);
      }
    };
    await Promise.all(Array.from({ length: 20 }, client));
    assert.equal(sink.messages.length, 200);
    for (const m of sink.messages) {
      const n = Number(/^s(\d+)@/.exec(m.envelope.from)![1]);
      assert.deepEqual(m.envelope.to.map((r) => r.address), [`r${n}@example.org`]);
      assert.equal(m.raw.toString(), body(n).toString(), `message ${n} intact`);
    }
    assert.equal(filter.logs.filter((l) => l.event === 'message.relayed').length, 200);
    assert.ok(sink.connectionCount() <= 40, `next-hop connections were reused (${sink.connectionCount()} for 200 messages)`);
  });

  test('next_hop_idle_time 0: a connection per message, each ended with QUIT', async () => {
    await withHop({ next_hop_idle_time: 0 }, async (hop, filter) => {
      for (const n of [1, 2]) assert.match((await send(filter, n)).final[0]!, /^250 /);
      await sleep(100);
      assert.deepEqual(commandsOf(hop), [['EHLO', 'MAIL', 'RCPT', 'DATA', 'QUIT'], ['EHLO', 'MAIL', 'RCPT', 'DATA', 'QUIT']]);
    });
  });

  for (const [what, answer] of [['answers RSET with 421', '421 4.3.2 going away'], ['closes at RSET', 'close']] as const) {
    test(`a cached session that ${what} is replaced before MAIL FROM: 250, delivered once`, async () => {
      await withHop({}, async (hop, filter) => {
        assert.match((await send(filter, 1)).final[0]!, /^250 /);
        await sleep(IDLE);
        hop.setScript((cmd, conn) => (cmd === 'RSET' && conn.n === 1 ? answer : undefined));
        assert.match((await send(filter, 2)).final[0]!, /^250 /);
        assert.equal(hop.connections.length, 2);
        assert.deepEqual(commandsOf(hop)[0], ['EHLO', 'MAIL', 'RCPT', 'DATA', 'RSET'], 'no MAIL FROM on the session that failed the check');
        assert.equal(hop.messages.length, 2);
      });
    });
  }

  test('a cached session that never answers RSET is given up after connect_timeout: 250 over a new connection', async () => {
    await withHop({ connect_timeout: 1 }, async (hop, filter) => {
      assert.match((await send(filter, 1)).final[0]!, /^250 /);
      await sleep(IDLE);
      hop.setScript((cmd, conn) => (cmd === 'RSET' && conn.n === 1 ? 'silent' : undefined));
      const t0 = Date.now();
      assert.match((await send(filter, 2)).final[0]!, /^250 /);
      assert.ok(Date.now() - t0 >= 900, 'waited for the RSET reply up to connect_timeout');
      assert.equal(hop.connections.length, 2);
      assert.equal(hop.messages.length, 2);
      await sleep(100);
      assert.equal(hop.connections[0]!.closed, true, 'the silent session was closed, not put back');
    });
  });

  test('a session that passed its RSET check and is then cut at MAIL FROM: 451 4.4.2, never 250; the next message gets a new connection', async () => {
    await withHop({}, async (hop, filter) => {
      assert.match((await send(filter, 1)).final[0]!, /^250 /);
      await sleep(IDLE);
      hop.setScript((cmd, _conn, tx) => (/^MAIL /.test(cmd) && tx === 2 ? 'close' : undefined));
      const r = await send(filter, 2);
      assert.match(r.final[0]!, /^451 4\.4\.2 /);
      assert.equal(hop.messages.length, 1, 'nothing delivered for the deferred message');
      assert.match((await send(filter, 3)).final[0]!, /^250 /);
      assert.equal(hop.connections.length, 2);
    });
  });

  test('a cached session the next hop closed while idle is dropped from the cache, not tried', async () => {
    await withHop({}, async (hop, filter) => {
      assert.match((await send(filter, 1)).final[0]!, /^250 /);
      hop.dropConnections();
      await sleep(100);
      assert.match((await send(filter, 2)).final[0]!, /^250 /);
      assert.deepEqual(commandsOf(hop), [['EHLO', 'MAIL', 'RCPT', 'DATA'], ['EHLO', 'MAIL', 'RCPT', 'DATA']]);
    });
  });

  test('an unused session says QUIT after next_hop_idle_time', async () => {
    await withHop({ next_hop_idle_time: 1 }, async (hop, filter) => {
      assert.match((await send(filter, 1)).final[0]!, /^250 /);
      await sleep(400);
      assert.equal(hop.connections[0]!.closed, false, 'still cached within the idle time');
      await sleep(1100);
      assert.deepEqual(commandsOf(hop)[0]!.at(-1), 'QUIT');
      assert.equal(hop.connections[0]!.closed, true);
    });
  });

  test('a session older than next_hop_reuse_time is not reused', async () => {
    await withHop({ next_hop_reuse_time: 1 }, async (hop, filter) => {
      assert.match((await send(filter, 1)).final[0]!, /^250 /);
      await sleep(1100);
      assert.match((await send(filter, 2)).final[0]!, /^250 /);
      assert.equal(hop.connections.length, 2);
      assert.deepEqual(commandsOf(hop)[0], ['EHLO', 'MAIL', 'RCPT', 'DATA', 'QUIT']);
    });
  });

  test('closing the filter sends QUIT on cached sessions', async () => {
    const hop = await startScriptedHop();
    cleanup.push(() => hop.close());
    const filter = await startInProcFilter({ next_hop: `smtp://127.0.0.1:${hop.port}`, next_hop_idle_time: 60 });
    assert.match((await send(filter, 1)).final[0]!, /^250 /);
    await filter.close();
    await sleep(100);
    assert.equal(commandsOf(hop)[0]!.at(-1), 'QUIT');
    assert.equal(hop.connections[0]!.closed, true);
  });

  test('a real smtp-server next hop that restarted: the message after it goes out once, over a new connection', async () => {
    const sink = await startSink();
    const port = sink.port;
    const filter = await startInProcFilter({ next_hop: `smtp://127.0.0.1:${port}`, next_hop_idle_time: 60 });
    cleanup.push(() => filter.close());
    assert.match((await send(filter, 1)).final[0]!, /^250 /);
    await sink.close(); // cuts the cached session
    const again = await startSinkOn(port);
    cleanup.push(() => again.close());
    assert.match((await send(filter, 2)).final[0]!, /^250 /);
    assert.equal(again.messages.length, 1);
    assert.equal(again.messages[0]!.raw.toString(), msg(2).toString());
  });
});

/** The sink again on a port just freed (the restart case). */
async function startSinkOn(port: number) {
  const { SMTPServer } = await import('smtp-server');
  const messages: Array<{ raw: Buffer }> = [];
  const server = new SMTPServer({
    disabledCommands: ['AUTH', 'STARTTLS'], disableReverseLookup: true, logger: false,
    onData(stream, _s, cb) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => { messages.push({ raw: Buffer.concat(chunks) }); cb(); });
    },
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return { messages, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}
