// Test client: a scripted SMTP/LMTP conversation over a raw socket, byte for byte.
// In: a port and steps (a command line, or raw DATA bytes sent as they are — for smuggling and
// bare-LF cases that a real client library would repair). Out: every reply, as "code text" lines.
// Fails: rejects if the server closes early or a reply does not come within the timeout.

import { connect, type Socket } from 'node:net';

export interface Dialog {
  /** Send a line (CRLF added) or raw bytes (sent as is), then read `replies` replies (default 1). */
  send(data: string | Buffer, replies?: number): Promise<string[]>;
  /** Read `n` replies without sending (e.g. the greeting). */
  read(n?: number): Promise<string[]>;
  close(): void;
  closed: Promise<void>;
}

export async function openDialog(port: number, timeoutMs = 15000): Promise<Dialog> {
  const socket: Socket = connect(port, '127.0.0.1');
  socket.setNoDelay(true);
  let buf = '';
  const lines: string[] = [];
  let wake: (() => void) | null = null;
  let ended = false;
  const closed = new Promise<void>((resolve) => socket.once('close', () => { ended = true; wake?.(); resolve(); }));
  socket.on('data', (d: Buffer) => {
    buf += d.toString('latin1');
    let i;
    while ((i = buf.indexOf('\r\n')) >= 0) {
      lines.push(buf.slice(0, i));
      buf = buf.slice(i + 2);
    }
    wake?.();
  });
  socket.on('error', () => undefined);

  const readReply = async (): Promise<string> => {
    const until = Date.now() + timeoutMs;
    const parts: string[] = [];
    for (;;) {
      while (lines.length) {
        const l = lines.shift()!;
        parts.push(l.slice(4));
        if (l[3] !== '-') return `${l.slice(0, 3)} ${parts.join(' | ')}`;
      }
      if (ended) throw new Error(`connection closed while waiting for a reply (got so far: ${parts.join(' | ')})`);
      const left = until - Date.now();
      if (left <= 0) throw new Error('no reply in time');
      await new Promise<void>((resolve) => {
        wake = resolve;
        setTimeout(resolve, Math.min(left, 200)).unref();
      });
      wake = null;
    }
  };
  const read = async (n = 1) => {
    const out: string[] = [];
    for (let i = 0; i < n; i++) out.push(await readReply());
    return out;
  };
  return {
    read,
    async send(data, replies = 1) {
      socket.write(typeof data === 'string' ? data + '\r\n' : data);
      return read(replies);
    },
    close: () => socket.destroy(),
    closed,
  };
}

/** A whole transaction: greeting, EHLO/LHLO, MAIL, RCPTs, DATA, message, and the final reply(s). */
/** A dialog from a@example.org to b@example.org, up to the 354 after DATA (the body is the caller's). */
export async function openData(port: number): Promise<Dialog> {
  const d = await openDialog(port);
  await d.read();
  await d.send('EHLO client.test');
  await d.send('MAIL FROM:<a@example.org>');
  await d.send('RCPT TO:<b@example.org>');
  await d.send('DATA');
  return d;
}

export async function transact(port: number, opts: { from: string; to: string[]; data: Buffer; lmtp?: boolean; mailParams?: string; rcptParams?: string[] }): Promise<{ rcpt: string[]; final: string[] }> {
  const d = await openDialog(port);
  try {
    await d.read();
    await d.send(`${opts.lmtp ? 'LHLO' : 'EHLO'} client.test`);
    const mail = await d.send(`MAIL FROM:<${opts.from}>${opts.mailParams ? ' ' + opts.mailParams : ''}`);
    if (!mail[0]!.startsWith('250')) return { rcpt: [], final: mail };
    const rcpt: string[] = [];
    for (let i = 0; i < opts.to.length; i++) {
      rcpt.push(...(await d.send(`RCPT TO:<${opts.to[i]}>${opts.rcptParams?.[i] ? ' ' + opts.rcptParams[i] : ''}`)));
    }
    const data = await d.send('DATA');
    if (!data[0]!.startsWith('354')) return { rcpt, final: data };
    const body = dotStuff(opts.data);
    const accepted = rcpt.filter((r) => r.startsWith('250')).length;
    const final = await d.send(Buffer.concat([body, Buffer.from(body.subarray(-2).toString() === '\r\n' ? '.\r\n' : '\r\n.\r\n')]), opts.lmtp ? accepted : 1);
    await d.send('QUIT').catch(() => undefined);
    return { rcpt, final };
  } finally {
    d.close();
  }
}

/** RFC 5321 §4.5.2 transparency: a line starting with "." gets one more. */
export function dotStuff(data: Buffer): Buffer {
  const s = data.toString('latin1').replace(/(^|\r\n)\./g, '$1..');
  return Buffer.from(s, 'latin1');
}
