// Test clients: read a mailbox back the way a person's mail client does, over IMAP and POP3.
// In: a loopback port, a user and a password. Out: every message of the INBOX as raw bytes
// (RFC 5322, CRLF), in delivery order. IMAP goes through imapflow (the only module that imports
// it); POP3 is a small client over a raw socket (USER, PASS, LIST, RETR, QUIT).
// Fails: rejects on a refused login, a -ERR, or no answer within the timeout; sockets are closed
// on every path.

import { ImapFlow } from 'imapflow';
import { connect, type Socket } from 'node:net';

const TIMEOUT_MS = 10_000;

/** Every INBOX message's full source (IMAP `BODY[]`), by ascending UID. */
export async function imapFetchAll(port: number, user: string, pass: string): Promise<Buffer[]> {
  const client = new ImapFlow({
    host: '127.0.0.1',
    port,
    secure: false,
    doSTARTTLS: false, // our private Dovecot runs with ssl = no, on loopback only
    auth: { user, pass },
    logger: false,
    disableAutoIdle: true,
    connectionTimeout: TIMEOUT_MS,
    greetingTimeout: TIMEOUT_MS,
    socketTimeout: TIMEOUT_MS,
  });
  client.on('error', () => undefined); // a late socket error must not crash the test process
  await client.connect();
  try {
    const box = await client.mailboxOpen('INBOX', { readOnly: true });
    if (box.exists === 0) return [];
    const messages = await client.fetchAll('1:*', { uid: true, source: true });
    return messages.sort((a, b) => a.uid - b.uid).map((m) => {
      if (!m.source) throw new Error(`IMAP: no source for UID ${m.uid}`);
      return m.source;
    });
  } finally {
    await client.logout().catch(() => client.close());
  }
}

/** Every message of the maildrop over POP3 (RETR, dot-unstuffed), in the server's order. Deletes nothing. */
export async function pop3RetrieveAll(port: number, user: string, pass: string): Promise<Buffer[]> {
  const session = await Pop3Session.open(port);
  try {
    await session.command(`USER ${user}`);
    await session.command(`PASS ${pass}`);
    const list = await session.command('LIST', true);
    const numbers = list.body!.toString('latin1').split('\r\n').filter(Boolean).map((l) => Number(l.split(' ')[0]));
    const out: Buffer[] = [];
    for (const n of numbers) out.push((await session.command(`RETR ${n}`, true)).body!);
    await session.command('QUIT');
    return out;
  } finally {
    session.close();
  }
}

interface Pop3Reply { status: string; body?: Buffer }

/** One POP3 connection: a reply is one +OK/-ERR line, multi-line ones end with CRLF.CRLF (RFC 1939). */
class Pop3Session {
  private buf = Buffer.alloc(0);
  private wake: (() => void) | null = null;
  private closed = false;

  private constructor(private readonly socket: Socket) {
    socket.on('data', (d: Buffer) => { this.buf = Buffer.concat([this.buf, d]); this.wake?.(); });
    socket.on('close', () => { this.closed = true; this.wake?.(); });
    socket.on('error', () => undefined);
  }

  static async open(port: number): Promise<Pop3Session> {
    const s = new Pop3Session(connect({ host: '127.0.0.1', port }));
    try {
      await s.reply(false); // greeting
    } catch (e) {
      s.close();
      throw e;
    }
    return s;
  }

  async command(line: string, multiline = false): Promise<Pop3Reply> {
    this.socket.write(`${line}\r\n`);
    const r = await this.reply(multiline);
    return r;
  }

  close(): void {
    this.socket.destroy();
  }

  private async reply(multiline: boolean): Promise<Pop3Reply> {
    const until = Date.now() + TIMEOUT_MS;
    const status = (await this.take(until, Buffer.from('\r\n'))).toString('latin1');
    if (!status.startsWith('+OK')) throw new Error(`POP3: ${status}`);
    if (!multiline) return { status };
    // The terminating line is ".\r\n" right after a CRLF; the status line's CRLF counts for an empty body.
    this.buf = Buffer.concat([Buffer.from('\r\n'), this.buf]);
    const block = await this.take(until, Buffer.from('\r\n.\r\n'));
    const body = Buffer.from(block.subarray(2).toString('latin1').replace(/(^|\r\n)\.\./g, '$1.') + (block.length > 2 ? '\r\n' : ''), 'latin1');
    return { status, body };
  }

  /** Bytes up to (not including) `end`, consumed together with it. */
  private async take(until: number, end: Buffer): Promise<Buffer> {
    for (;;) {
      const i = this.buf.indexOf(end);
      if (i >= 0) {
        const head = this.buf.subarray(0, i);
        this.buf = this.buf.subarray(i + end.length);
        return head;
      }
      if (this.closed) throw new Error('POP3: connection closed early');
      const left = until - Date.now();
      if (left <= 0) throw new Error('POP3: no reply in time');
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        setTimeout(resolve, Math.min(left, 200)).unref();
      });
      this.wake = null;
    }
  }
}
