// The ceiling: the barest smtp-server → nodemailer relay a Node filter could be.
// In: SMTP on 127.0.0.1:PORT (argv[2]). Out: each message, buffered whole, relayed to the next
// hop (argv[3], host:port) on a new connection; the next hop's reply is passed back.
// Fails: any relay error answers 451. For benchmarks only: no spool, no limits, no allow-list.

import { SMTPServer } from 'smtp-server';
import SMTPConnection from 'nodemailer/lib/smtp-connection';

const [listenPort, hop] = [Number(process.argv[2]), process.argv[3] ?? '127.0.0.1:10026'];
const [hopHost, hopPort] = hop.split(':');

const server = new SMTPServer({
  disabledCommands: ['AUTH', 'STARTTLS'],
  authOptional: true,
  disableReverseLookup: true,
  hideDSN: false,
  logger: false,
  onData(stream, session, callback) {
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => {
      const conn = new SMTPConnection({ host: hopHost, port: Number(hopPort), ignoreTLS: true, logger: false, socketCloseTimeout: 0 });
      const fail = (e: Error) => {
        conn.close();
        const err = new Error(e.message) as Error & { responseCode: number };
        err.responseCode = 451;
        callback(err);
      };
      conn.once('error', fail);
      conn.connect(() => {
        const env = { from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '', to: session.envelope.rcptTo.map((r) => r.address) };
        conn.send(env, Buffer.concat(chunks), (err, info) => {
          conn.quit();
          if (err) return fail(err);
          callback(null, info.response);
        });
      });
    });
  },
});
server.listen(listenPort, '127.0.0.1', () => process.stdout.write(`listening ${listenPort}\n`));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
