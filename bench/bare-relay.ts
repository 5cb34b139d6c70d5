// The ceiling: the barest smtp-server → nodemailer relay a Node filter could be.
// In: SMTP on 127.0.0.1:PORT (argv[2]). Out: each message, buffered whole, relayed to the next
// hop (argv[3], host:port); the next hop's reply is passed back. With argv[4] = "reuse", finished
// next-hop connections go back on a stack for the next message (no RSET, no age limit, no idle
// timeout: the cheapest reuse there is); without it, a new connection per message.
// argv[5] makes it a floor instead of a ceiling: before relaying the message unchanged it does what
// the libraries the filter must use cost at the cheapest use we know, and nothing of our own beyond
// that: "split" runs mailsplit over the message's skeleton (lib/mime-skeleton.ts); "read" also
// decodes each text/calendar part and reads it with ical.js through lib/calendar-reader.ts.
// Fails: any relay error answers 451. For benchmarks only: no spool, no limits, no allow-list.

import { SMTPServer } from 'smtp-server';
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import type { MimeNode, SplitterChunk } from '@zone-eu/mailsplit';

const [listenPort, hop] = [Number(process.argv[2]), process.argv[3] ?? '127.0.0.1:10026'];
const reuse = process.argv[4] === 'reuse';
const floor = process.argv[5] === 'split' || process.argv[5] === 'read' ? await floorWork(process.argv[5]) : null;
const [hopHost, hopPort] = hop.split(':');
const idle: SMTPConnection[] = [];
/** Who hears a connection's error: the transaction using it (nobody while it is idle). */
const onError = new Map<SMTPConnection, (e: Error) => void>();

function session(cb: (err: Error | null, conn: SMTPConnection) => void): void {
  const cached = idle.pop();
  if (cached) return cb(null, cached);
  const conn = new SMTPConnection({ host: hopHost, port: Number(hopPort), ignoreTLS: true, logger: false, socketCloseTimeout: 0 });
  onError.set(conn, (e) => cb(e, conn));
  conn.on('error', (e: Error) => {
    const i = idle.indexOf(conn);
    if (i >= 0) idle.splice(i, 1);
    onError.get(conn)?.(e);
    onError.delete(conn);
  });
  conn.on('end', () => onError.delete(conn));
  conn.connect(() => cb(null, conn));
}

const server = new SMTPServer({
  disabledCommands: ['AUTH', 'STARTTLS'],
  authOptional: true,
  disableReverseLookup: true,
  hideDSN: false,
  logger: false,
  onData(stream, sess, callback) {
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    const relay = () => {
      let answered = false;
      session((e, conn) => {
        const fail = (err: Error) => {
          conn.close();
          if (answered) return;
          answered = true;
          const r = new Error(err.message) as Error & { responseCode: number };
          r.responseCode = 451;
          callback(r);
        };
        if (e) return fail(e);
        onError.set(conn, fail);
        const env = { from: sess.envelope.mailFrom ? sess.envelope.mailFrom.address : '', to: sess.envelope.rcptTo.map((r) => r.address) };
        conn.send(env, Buffer.concat(chunks), (err, info) => {
          if (err) return fail(err);
          onError.set(conn, () => undefined);
          if (reuse) idle.push(conn);
          else conn.quit();
          answered = true;
          callback(null, info.response);
        });
      });
    };
    stream.on('end', () => (floor ? floor(Buffer.concat(chunks), relay) : relay()));
  },
});
server.listen(listenPort, '127.0.0.1', () => process.stdout.write(`listening ${listenPort}\n`));
process.on('SIGTERM', () => {
  for (const c of idle) c.quit();
  server.close(() => process.exit(0));
});

/**
 * The floor's work per message; calls `then` once mailsplit has emitted everything. Loaded only for
 * a floor, so the ceilings import nothing more.
 */
async function floorWork(mode: string): Promise<(raw: Buffer, then: () => void) => void> {
  const { Splitter } = await import('@zone-eu/mailsplit');
  const { skeleton, SkeletonMap } = await import('../lib/mime-skeleton.js');
  const { createBodyDecoder } = await import('../lib/part-codec.js');
  const { readCalendar } = await import('../lib/calendar-reader.js');
  return (raw, then) => {
    const skel = skeleton(raw);
    const map = new SkeletonMap(raw, skel);
    const calendars = new Map<MimeNode, Buffer[]>();
    const splitter = new Splitter({ ignoreEmbedded: true });
    splitter.on('data', (obj: SplitterChunk) => {
      if (obj.type === 'node') {
        map.take(obj._headerlen);
        if (mode === 'read' && obj.contentType === 'text/calendar') calendars.set(obj, []);
        return;
      }
      const value = map.take(obj.value.length);
      if (obj.type === 'body') calendars.get(obj.node)?.push(value);
    });
    (splitter as unknown as NodeJS.EventEmitter).once('end', () => {
      for (const [node, body] of calendars) {
        const decoder = createBodyDecoder(String(node.encoding || '7bit').toLowerCase());
        const facts = readCalendar(Buffer.concat([decoder.write(Buffer.concat(body)), decoder.end()]), null, node.charset || null);
        if (!facts.method) process.stderr.write('floor: a calendar part without METHOD\n'); // the work was real
      }
      then();
    });
    splitter.end(skel.bytes);
  };
}
