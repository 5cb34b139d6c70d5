// The ceiling: the barest smtp-server → nodemailer relay a Node filter could be.
// In: SMTP on 127.0.0.1:PORT (argv[2]). Out: each message, buffered whole, relayed to the next
// hop (argv[3], host:port); the next hop's reply is passed back. With argv[4] = "reuse", finished
// next-hop connections go back on a stack for the next message (no RSET, no age limit, no idle
// timeout: the cheapest reuse there is); without it, a new connection per message.
// Fails: any relay error answers 451. For benchmarks only: no spool, no limits, no allow-list.

import { SMTPServer } from 'smtp-server';
import SMTPConnection from 'nodemailer/lib/smtp-connection';

const [listenPort, hop] = [Number(process.argv[2]), process.argv[3] ?? '127.0.0.1:10026'];
const reuse = process.argv[4] === 'reuse';
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
    stream.on('end', () => {
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
    });
  },
});
server.listen(listenPort, '127.0.0.1', () => process.stdout.write(`listening ${listenPort}\n`));
process.on('SIGTERM', () => {
  for (const c of idle) c.quit();
  server.close(() => process.exit(0));
});
