// Test peer: a real SMTP (or LMTP) server on 127.0.0.1 that records what it receives and answers
// as a test tells it. In: sessions from Postfix, the filter or any client. Out: `messages`, one
// per DATA (envelope with every MAIL/RCPT parameter, the raw bytes, the replies given).
// Fails on purpose only: a behaviour can answer 451/550, drop the connection after N bytes of
// DATA or never answer; close() destroys connections still open after a short grace.

import type { Socket } from 'node:net';
import { SMTPServer, type SMTPServerAddress, type SMTPServerSession } from 'smtp-server';

export interface SinkRecipient {
  address: string;
  /** RCPT TO parameters as sent, keys upper-case (NOTIFY, ORCPT, …). */
  params: Record<string, string | true>;
}

export interface SinkEnvelope {
  /** MAIL FROM; "" is the null sender. */
  from: string;
  /** MAIL FROM parameters as sent, keys upper-case (BODY, SMTPUTF8, SIZE, RET, ENVID, …). */
  params: Record<string, string | true>;
  to: SinkRecipient[];
  /** The EHLO/LHLO name the client gave. */
  helo: string;
}

/** 250/451/550 or any code; `drop`: destroy the socket once N bytes of DATA arrived; `silent`: never answer. */
export type SinkAnswer = number | { code: number; text?: string } | { drop: number } | 'silent';

export interface SinkQuestion {
  /** `rcpt`: one RCPT TO (`rcpt` set). `data`: after DATA, once per transaction, or in LMTP once per recipient. */
  phase: 'rcpt' | 'data';
  rcpt?: string | undefined;
  envelope: SinkEnvelope;
  /** 1 for the first transaction this sink has seen (counted at MAIL FROM), 2 for the next, … */
  transaction: number;
}

/** Returns what to answer; `undefined` means 250. */
export type Behaviour = (q: SinkQuestion) => SinkAnswer | undefined;

export interface SinkMessage {
  envelope: SinkEnvelope;
  /** The message as received (dot-unstuffed); only the first bytes when the sink dropped it. */
  raw: Buffer;
  /** What the sink answered after DATA: one entry, or one per recipient in LMTP. */
  replies: Array<number | 'drop' | 'silent'>;
}

export interface Sink {
  port: number;
  /** Recorded when DATA ends, just before the sink's reply goes out. */
  messages: SinkMessage[];
  setBehaviour(fn: Behaviour): void;
  /** TCP connections accepted so far. */
  connectionCount(): number;
  /** Resolves with `messages` once it holds at least `n`; rejects after `timeoutMs`. */
  waitFor(n: number, timeoutMs?: number): Promise<SinkMessage[]>;
  close(): Promise<void>;
}

export interface SinkOptions {
  lmtp?: boolean;
  behaviour?: Behaviour;
  /** EHLO keywords not to announce, as a peer without them would (like smtp-sink -8 / -N). */
  hide?: Array<'8BITMIME' | 'SMTPUTF8' | 'DSN' | 'PIPELINING' | 'SIZE'>;
  /** The SIZE limit announced (default 100 MiB). */
  size?: number;
}

interface SessionState { transaction: number }

export async function startSink(opts: SinkOptions = {}): Promise<Sink> {
  let behaviour: Behaviour = opts.behaviour ?? (() => undefined);
  const messages: SinkMessage[] = [];
  const waiters = new Set<() => void>();
  const sockets = new Map<number, Socket>(); // by client port: the session knows it, smtp-server hides the socket
  const state = new WeakMap<SMTPServerSession, SessionState>();
  let transactions = 0;
  let accepted = 0;
  const hide = new Set(opts.hide ?? []);

  const record = (m: SinkMessage) => { messages.push(m); for (const w of waiters) w(); };

  const server = new SMTPServer({
    lmtp: opts.lmtp ?? false,
    // The defaults are wrong for a peer that must see everything a real MTA sends: no AUTH
    // (530 would be a 5xx), DSN visible, no reverse DNS. Enhanced status codes stay off so a reply
    // goes out exactly as the test wrote it; tests write their own ('5.1.1 No such user').
    disabledCommands: ['AUTH', 'STARTTLS'],
    hideDSN: hide.has('DSN'),
    hideENHANCEDSTATUSCODES: true,
    hide8BITMIME: hide.has('8BITMIME'),
    hideSMTPUTF8: hide.has('SMTPUTF8'),
    hidePIPELINING: hide.has('PIPELINING'),
    size: hide.has('SIZE') ? 0 : opts.size ?? 100 * 1024 * 1024, // 0: SIZE not announced at all
    disableReverseLookup: true,
    // A silent sink must stay silent for as long as the test wants (Postfix waits 600 s after ".").
    socketTimeout: 15 * 60_000,
    logger: false,
    onMailFrom(_address, session, callback) {
      state.set(session, { transaction: ++transactions });
      callback();
    },
    onRcptTo(address, session, callback) {
      const envelope = snapshot(session, address);
      const answer = ask({ phase: 'rcpt', rcpt: address.address, envelope, transaction: txOf(session) });
      if (answer === 'silent') return;
      if (typeof answer === 'object' && 'drop' in answer) return void sockets.get(session.remotePort)?.destroy();
      callback(toError(answer));
    },
    onData(stream, session, callback) {
      const envelope = snapshot(session);
      const transaction = txOf(session);
      const rcpts = opts.lmtp ? envelope.to.map((r) => r.address) : [undefined];
      const answers = rcpts.map((rcpt) => ask({ phase: 'data', rcpt, envelope, transaction }));
      // In LMTP a drop or silence for any recipient applies to the whole connection.
      const drop = answers.find((a): a is { drop: number } => typeof a === 'object' && 'drop' in a);
      const silent = answers.includes('silent');
      const chunks: Buffer[] = [];
      let bytes = 0;
      let dropped = false;
      const cut = () => {
        dropped = true;
        sockets.get(session.remotePort)?.destroy();
        record({ envelope, raw: Buffer.concat(chunks), replies: rcpts.map(() => 'drop') });
      };
      stream.on('data', (chunk: Buffer) => {
        if (dropped) return;
        chunks.push(chunk);
        bytes += chunk.length;
        if (drop && bytes >= drop.drop) cut();
      });
      stream.on('end', () => {
        if (dropped) return;
        if (drop) return cut(); // the message was shorter than the drop point
        const raw = Buffer.concat(chunks);
        if (silent) return record({ envelope, raw, replies: rcpts.map(() => 'silent') });
        record({ envelope, raw, replies: answers.map(codeOf) });
        if (opts.lmtp) callback(null, answers.map((a) => toError(a) ?? 'OK: delivered'));
        else callback(toError(answers[0] ?? 250), 'OK: queued');
      });
    },
  });
  // Resets and dropped sockets are what tests do to a sink on purpose, not failures of the sink.
  server.on('error', () => undefined);
  // The raw sockets, to drop a connection on purpose and to end the ones close() would wait for.
  server.server.on('connection', (socket: Socket) => {
    const port = socket.remotePort ?? 0;
    accepted++;
    sockets.set(port, socket);
    socket.once('close', () => { if (sockets.get(port) === socket) sockets.delete(port); });
  });

  const ask = (q: SinkQuestion): SinkAnswer => behaviour(q) ?? 250;
  const txOf = (session: SMTPServerSession) => state.get(session)?.transaction ?? transactions;

  await new Promise<void>((resolve, reject) => {
    server.server.once('error', reject);
    server.listen(0, '127.0.0.1', () => { server.server.off('error', reject); resolve(); });
  });
  const { port } = server.server.address() as { port: number };

  return {
    port,
    messages,
    setBehaviour(fn) { behaviour = fn; },
    connectionCount: () => accepted,
    waitFor(n, timeoutMs = 10_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          if (messages.length < n) return;
          clearTimeout(timer);
          waiters.delete(check);
          resolve(messages);
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`sink on port ${port}: waited ${timeoutMs} ms for ${n} message(s), got ${messages.length}`));
        }, timeoutMs);
        waiters.add(check);
        check();
      });
    },
    close() {
      return new Promise<void>((resolve) => {
        // smtp-server's close() waits for clients to leave (Postfix caches idle connections);
        // give them a moment, then cut them off.
        const timer = setTimeout(() => { for (const s of sockets.values()) s.destroy(); }, 200);
        server.close(() => { clearTimeout(timer); resolve(); });
      });
    },
  };
}

function snapshot(session: SMTPServerSession, pending?: SMTPServerAddress): SinkEnvelope {
  const { mailFrom, rcptTo } = session.envelope;
  const to = pending ? [...rcptTo, pending] : rcptTo;
  return {
    from: mailFrom ? mailFrom.address : '',
    params: mailFrom && mailFrom.args ? { ...mailFrom.args } : {},
    to: to.map((r) => ({ address: r.address, params: r.args ? { ...r.args } : {} })),
    helo: session.hostNameAppearsAs ?? '',
  };
}

function codeOf(answer: SinkAnswer): number {
  return typeof answer === 'number' ? answer : typeof answer === 'object' && 'code' in answer ? answer.code : 250;
}

/** smtp-server turns an Error with `responseCode` into the reply; a 2xx is no error at all. */
function toError(answer: SinkAnswer): (Error & { responseCode: number }) | null {
  const code = codeOf(answer);
  if (code < 400) return null;
  const text = typeof answer === 'object' && 'text' in answer && answer.text ? answer.text : code >= 500 ? '5.0.0 Rejected by the sink' : '4.0.0 Try again later (sink)';
  return Object.assign(new Error(text), { responseCode: code });
}
