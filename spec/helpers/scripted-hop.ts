// Test peer: a next hop that speaks just enough SMTP on a raw socket to misbehave at exactly one
// command (RSET answered 421, or never; the connection cut after MAIL FROM), which smtp-server
// cannot be made to do. In: sessions from the filter. Out: every command line per connection, and
// every message received (dot-unstuffed). Fails on purpose only, as `answer` tells it.

import { createServer, type Socket } from 'node:net';

export interface HopConnection {
  /** 1 for the first connection the hop accepted. */
  n: number;
  commands: string[];
  closed: boolean;
}

/** What to do with one command: a reply line, 'silent' (never answer), 'close' (cut the socket), or undefined for the usual reply. */
export type Script = (command: string, conn: HopConnection, transaction: number) => string | 'silent' | 'close' | undefined;

export interface ScriptedHop {
  port: number;
  connections: HopConnection[];
  messages: Buffer[];
  setScript(s: Script): void;
  /** Cut every open connection, as a restarting or idle-timing-out server would. */
  dropConnections(): void;
  close(): Promise<void>;
}

export async function startScriptedHop(script: Script = () => undefined): Promise<ScriptedHop> {
  let current = script;
  const connections: HopConnection[] = [];
  const messages: Buffer[] = [];
  const sockets = new Set<Socket>();
  let transactions = 0;

  const server = createServer((socket) => {
    sockets.add(socket);
    const conn: HopConnection = { n: connections.length + 1, commands: [], closed: false };
    connections.push(conn);
    socket.once('close', () => { conn.closed = true; sockets.delete(socket); });
    socket.on('error', () => undefined);
    let buffered = Buffer.alloc(0);
    let data: Buffer[] | null = null;
    const reply = (line: string) => socket.write(`${line}\r\n`);
    const usual = (cmd: string): string => {
      const verb = cmd.split(/[\s:]/)[0]!.toUpperCase();
      if (verb === 'EHLO' || verb === 'LHLO') return '250-scripted-hop\r\n250-PIPELINING\r\n250 8BITMIME';
      if (verb === 'DATA') return '354 go ahead';
      if (verb === 'QUIT') return '221 bye';
      return '250 OK';
    };
    socket.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      for (let i = buffered.indexOf('\r\n'); i >= 0; i = buffered.indexOf('\r\n')) {
        const line = buffered.subarray(0, i).toString('latin1');
        buffered = buffered.subarray(i + 2);
        if (data) {
          if (line === '.') {
            messages.push(Buffer.concat(data));
            data = null;
            const r = current('.', conn, transactions);
            if (r === 'close') return void socket.destroy();
            if (r !== 'silent') reply(r ?? '250 queued');
          } else data.push(Buffer.from(`${line.startsWith('..') ? line.slice(1) : line}\r\n`, 'latin1'));
          continue;
        }
        conn.commands.push(line);
        if (/^MAIL /i.test(line)) transactions++;
        const r = current(line, conn, transactions);
        if (r === 'close') return void socket.destroy();
        if (r === 'silent') continue;
        const out = r ?? usual(line);
        if (/^DATA$/i.test(line) && out.startsWith('354')) data = [];
        reply(out);
        if (/^QUIT$/i.test(line)) socket.end();
      }
    });
    reply('220 scripted-hop ESMTP');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    port,
    connections,
    messages,
    setScript(s) { current = s; },
    dropConnections() { for (const s of sockets) s.destroy(); },
    close: () => new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
    }),
  };
}
