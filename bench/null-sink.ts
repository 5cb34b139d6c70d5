// A null SMTP sink for benchmarks where Postfix's smtp-sink is not installed.
// In: SMTP on 127.0.0.1:PORT (argv[2]). Out: 250 for every message, whose bytes are dropped.
// Fails: never on purpose; it is a peer for measurements, not a test double.

import { SMTPServer } from 'smtp-server';

const port = Number(process.argv[2]);
const server = new SMTPServer({
  disabledCommands: ['AUTH', 'STARTTLS'],
  authOptional: true,
  disableReverseLookup: true,
  hideDSN: false,
  logger: false,
  onData(stream, _session, callback) {
    stream.on('end', () => callback(null, 'OK'));
    stream.resume();
  },
});
server.listen(port, '127.0.0.1');
process.on('SIGTERM', () => server.close(() => process.exit(0)));
