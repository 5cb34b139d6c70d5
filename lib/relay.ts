// The relay: hands one group of recipients and one message body to the next hop.
// In: the next hop's session cache (lib/hop-sessions.ts), an envelope group, the message bytes.
// Out: the next hop's own reply per recipient (2xx accepted, its 4xx/5xx otherwise).
// Fails: never throws. Unreachable → 451 4.4.1; timeout, dropped connection, protocol trouble
// → 451 4.4.2; anything unexpected → 451 4.3.0. A session that failed in any way is closed, not
// reused; only a transaction that ended with the next hop's reply to the final dot gives it back.
// The one retry: a cached session handed out without its RSET check that fails before a byte of
// the message was read goes once more over a new connection (nothing can have been delivered).

import type { Readable } from 'node:stream';
import { ConnectError, HopSessions, type HopSession, type NextHop } from './hop-sessions.js';
import { parseReply, REPLIES } from './replies.js';
import type { Cutoff, Envelope, Reply } from './types.js';

export { HopSessions, type NextHop };

export function parseNextHop(url: string): NextHop {
  const m = /^(smtp|lmtp):\/\/(\[[^\]]+\]|[^:/]+)(?::(\d+))?\/?$/i.exec(url.trim());
  if (!m) throw new Error(`next hop "${url}" is not smtp://HOST:PORT or lmtp://HOST:PORT`);
  const lmtp = m[1]!.toLowerCase() === 'lmtp';
  return { host: m[2]!.replace(/^\[|\]$/g, ''), port: m[3] ? Number(m[3]) : lmtp ? 24 : 25, lmtp };
}

export interface RelayOptions {
  /** Bound on the whole transaction, from asking for a session to the reply to the final dot. */
  totalTimeoutMs: number;
  /** Called when the relay is cut off from outside (shutdown), to abort a transaction in flight. */
  signal?: Cutoff;
}

export interface RelayResult {
  /** Reply per recipient, keyed by address as given in the envelope. */
  recipients: Map<string, Reply>;
  /** The next hop's final reply line (for the log), or our own failure text. */
  response: string;
  ms: number;
  /** The transaction went over a session that had carried a message before. */
  reused: boolean;
}

/**
 * Send `message` (the bytes, or a function that opens them as a stream, again for a second
 * attempt) to `group.to` with the envelope's parameters.
 * 8BITMIME is asked for when the client used it; SMTPUTF8 is added by nodemailer when an address
 * needs it; SIZE and DSN (RET, ENVID, and the group's common NOTIFY/ORCPT) go along when the
 * next hop announces them. nodemailer cannot send XFORWARD or per-recipient DSN parameters,
 * which is why the pipeline groups recipients by their DSN parameters first.
 */
export function relayMessage(sessions: HopSessions, group: Envelope, message: Buffer | (() => Readable), size: number, opts: RelayOptions): Promise<RelayResult> {
  const started = Date.now();
  const addresses = group.to.map((r) => r.address);
  return new Promise((resolve) => {
    let done = false;
    let session: HopSession | null = null;
    /** The message source of the current attempt, when it tells whether it was read (else null). */
    let stream: Readable | BufferSource | null = null;
    let reused = false;
    /** Bumped per attempt: events of an abandoned attempt's session are ignored. */
    let attempt = 0;
    let unsubscribe = () => undefined as void;

    const finish = (replies: Map<string, Reply>, response: string, clean = false) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      unsubscribe();
      stream?.destroy();
      if (session) sessions.release(session, clean);
      resolve({ recipients: replies, response, ms: Date.now() - started, reused });
    };
    // an LMTP hop's reply for a recipient, when it came before the failure, is that recipient's answer
    const failAll = (r: Reply, why: string) =>
      finish(new Map(addresses.map((a) => {
        const got = session?.lmtpReplies?.get(a);
        return [a, got ? parseReply(got) : { ...r }];
      })), why);

    /**
     * A session reused without the RSET check that failed at the connection level (closed, reset,
     * 421) before a byte of the message was read: the next hop cannot have the message, so it goes
     * once more over a new connection. Anything else is the answer.
     */
    const retryable = (transient: boolean) => transient && attempt === 1 && session?.unverified === true && stream !== null && !stream.readableDidRead;
    const retry = () => {
      sessions.release(session!, false);
      session = null;
      stream?.destroy();
      stream = null;
      begin(true);
    };

    const timer = setTimeout(() => failAll(REPLIES.hopTimeout, 'next hop timeout'), opts.totalTimeoutMs);
    const onAbort = () => failAll(REPLIES.aborted, 'aborted by shutdown');
    if (opts.signal) unsubscribe = opts.signal.onAbort(onAbort);
    if (done) return; // already cut off

    const begin = (fresh: boolean) => {
      const mine = ++attempt;
      sessions.acquire(fresh).then(
        (s) => {
          if (done) return sessions.release(s, false); // timed out or aborted while connecting
          session = s;
          reused = s.reused;
          s.onError = (err: Error & { code?: string; responseCode?: number }) => {
            if (mine !== attempt || done) return;
            if (retryable(isTransient(err))) return retry();
            failAll(classifyError(err), err.message);
          };
          s.onEnd = () => {
            if (mine !== attempt || done) return;
            if (retryable(true)) return retry();
            failAll(REPLIES.hopTimeout, 'next hop closed the connection');
          };
          send(s, mine);
        },
        // Before the greeting, any failure means "unreachable"; after it, "dropped or timed out".
        (err: Error) => failAll(err instanceof ConnectError && err.reached ? REPLIES.hopTimeout : REPLIES.unreachable, err.message),
      );
    };

    const send = (s: HopSession, mine: number) => {
      const dsn = group.ret || group.envid || group.to[0]?.notify || group.to[0]?.orcpt
        ? { ret: group.ret, envid: group.envid, notify: group.to[0]?.notify, orcpt: group.to[0]?.orcpt }
        : undefined;
      const envelope = {
        from: group.from,
        to: addresses,
        size,
        use8BitMime: (group.body ?? '').toUpperCase() === '8BITMIME',
        dsn,
      };
      s.lmtpReplies?.clear();
      // a Buffer goes as it is, unless a retry may need to know whether any of it was read
      let payload: Readable | BufferSource | Buffer;
      if (!Buffer.isBuffer(message)) payload = stream = message();
      else payload = s.unverified ? (stream = new BufferSource(message)) : message;
      s.conn.send(envelope as never, payload as Readable | Buffer, (err, info) => {
        if (mine !== attempt || done) return;
        if (err) {
          const e = err as typeof err & { rejectedErrors?: Array<{ recipient?: string; response?: string }>; response?: string; responseCode?: number };
          if (retryable(isTransient(e))) return retry();
          const replies = new Map<string, Reply>();
          // nodemailer's own check against the SIZE the next hop announced: it would refuse the
          // message with 552 itself, so the MTA hears that (as Postfix's smtp client bounces it)
          const tooBig = e.code === 'EMESSAGE' && (e as { command?: string }).command === 'MAIL FROM' && !e.response;
          const base = tooBig ? { ...REPLIES.tooBigForHop } : e.response ? parseReply(e.response) : classifyError(e);
          for (const a of addresses) replies.set(a, base);
          // "all recipients were rejected": each recipient gets its own RCPT reply
          for (const re of e.rejectedErrors ?? []) if (re.recipient) replies.set(re.recipient, parseReply(re.response, base));
          return finish(replies, e.response ?? e.message);
        }
        const replies = new Map<string, Reply>();
        const ok = parseReply(info.response, { code: 250, message: 'OK' });
        for (const a of info.accepted) {
          // LMTP: each recipient's own reply (the last one is the response nodemailer reports)
          const own = s.lmtpReplies?.get(a);
          const r = own ? parseReply(own) : ok;
          replies.set(a, r.code < 300 ? r : { code: 250, message: 'OK' });
        }
        for (const re of (info.rejectedErrors ?? []) as Array<{ recipient?: string; response?: string }>) {
          if (re.recipient) replies.set(re.recipient, parseReply(re.response));
        }
        for (const a of addresses) if (!replies.has(a)) replies.set(a, { ...REPLIES.internal });
        finish(replies, info.response, true);
      });
    };

    begin(false);
  });
}

/**
 * A Buffer handed to nodemailer as a one-shot stream, so the relay can tell whether the data phase
 * began: nodemailer pipes a stream message only once DATA was answered 354. A Readable would tell
 * too, but its plumbing costs more per message than the rest of a reused transaction. It offers
 * what nodemailer's SMTPConnection calls on a stream message: on/removeListener('error'), pipe,
 * destroy (the relay tests run every path through it).
 */
class BufferSource {
  readableDidRead = false;
  constructor(private readonly buf: Buffer) {}
  pipe<T extends NodeJS.WritableStream>(dest: T): T {
    this.readableDidRead = true;
    dest.write(this.buf);
    dest.end();
    return dest;
  }
  on(): this {
    return this;
  }
  removeListener(): this {
    return this;
  }
  destroy(): void {}
}

/** A failure of the connection itself (closed, reset, "421 closing"), not an answer about this message. */
function isTransient(err: { code?: string; responseCode?: number }): boolean {
  return err.code === 'ECONNECTION' || err.code === 'ESOCKET' || err.responseCode === 421;
}

/** One message over a connection of its own, closed after it (web RSVP submissions, tests). */
export function relayOnce(hop: NextHop, group: Envelope, message: Buffer, size: number, opts: RelayOptions & { connectTimeoutMs: number }): Promise<RelayResult> {
  const sessions = new HopSessions(hop, { connectTimeoutMs: opts.connectTimeoutMs, socketTimeoutMs: opts.totalTimeoutMs, idleMs: 0, maxAgeMs: 0, maxIdle: 0 });
  return relayMessage(sessions, group, message, size, opts);
}

function classifyError(err: { code?: string; responseCode?: number; response?: string; message?: string }): Reply {
  if (err.response && /^[45]\d\d/.test(err.response)) return parseReply(err.response);
  switch (err.code) {
    case 'ECONNECTION':
    case 'ETIMEDOUT':
    case 'ESOCKET':
    case 'EPROTOCOL':
      return { ...REPLIES.hopTimeout };
    default:
      return { ...REPLIES.internal };
  }
}
