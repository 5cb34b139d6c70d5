// The relay: hands one group of recipients and one message body to the next hop.
// In: the next hop's session cache (lib/hop-sessions.ts), an envelope group, the message bytes.
// Out: the next hop's own reply per recipient (2xx accepted, its 4xx/5xx otherwise).
// Fails: never throws. Unreachable → 451 4.4.1; timeout, dropped connection, protocol trouble
// → 451 4.4.2; anything unexpected → 451 4.3.0. A session that failed in any way is closed, not
// reused; only a transaction that ended with the next hop's reply to the final dot gives it back.

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
 * Send `message` to `group.to` with the envelope's parameters.
 * 8BITMIME is asked for when the client used it; SMTPUTF8 is added by nodemailer when an address
 * needs it; SIZE and DSN (RET, ENVID, and the group's common NOTIFY/ORCPT) go along when the
 * next hop announces them. nodemailer cannot send XFORWARD or per-recipient DSN parameters,
 * which is why the pipeline groups recipients by their DSN parameters first.
 */
export function relayMessage(sessions: HopSessions, group: Envelope, message: Readable | Buffer, size: number, opts: RelayOptions): Promise<RelayResult> {
  const started = Date.now();
  const addresses = group.to.map((r) => r.address);
  return new Promise((resolve) => {
    let done = false;
    let session: HopSession | null = null;
    let reused = false;
    let unsubscribe = () => undefined as void;

    const finish = (replies: Map<string, Reply>, response: string, clean = false) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      unsubscribe();
      if (!Buffer.isBuffer(message)) message.destroy();
      if (session) sessions.release(session, clean);
      resolve({ recipients: replies, response, ms: Date.now() - started, reused });
    };
    const failAll = (r: Reply, why: string) => finish(new Map(addresses.map((a) => [a, { ...r }])), why);

    const timer = setTimeout(() => failAll(REPLIES.hopTimeout, 'next hop timeout'), opts.totalTimeoutMs);
    const onAbort = () => failAll(REPLIES.aborted, 'aborted by shutdown');
    if (opts.signal) unsubscribe = opts.signal.onAbort(onAbort);
    if (done) return; // already cut off

    sessions.acquire().then(
      (s) => {
        if (done) return sessions.release(s, false); // timed out or aborted while connecting
        session = s;
        reused = s.reused;
        s.onError = (err: Error & { code?: string; response?: string }) => failAll(classifyError(err), err.message);
        s.onEnd = () => failAll(REPLIES.hopTimeout, 'next hop closed the connection');
        send(s);
      },
      // Before the greeting, any failure means "unreachable"; after it, "dropped or timed out".
      (err: Error) => failAll(err instanceof ConnectError && err.reached ? REPLIES.hopTimeout : REPLIES.unreachable, err.message),
    );

    const send = (s: HopSession) => {
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
      s.conn.send(envelope as never, message, (err, info) => {
        if (err) {
          const e = err as typeof err & { rejectedErrors?: Array<{ recipient?: string; response?: string }>; response?: string };
          const replies = new Map<string, Reply>();
          const base = e.response ? parseReply(e.response) : classifyError(e);
          for (const a of addresses) replies.set(a, base);
          // "all recipients were rejected": each recipient gets its own RCPT reply
          for (const re of e.rejectedErrors ?? []) if (re.recipient) replies.set(re.recipient, parseReply(re.response, base));
          return finish(replies, e.response ?? e.message);
        }
        const replies = new Map<string, Reply>();
        const ok = parseReply(info.response, { code: 250, message: 'OK' });
        for (const a of info.accepted) replies.set(a, ok.code < 300 ? ok : { code: 250, message: 'OK' });
        for (const re of (info.rejectedErrors ?? []) as Array<{ recipient?: string; response?: string }>) {
          if (re.recipient) replies.set(re.recipient, parseReply(re.response));
        }
        for (const a of addresses) if (!replies.has(a)) replies.set(a, { ...REPLIES.internal });
        finish(replies, info.response, true);
      });
    };
  });
}

/** One message over a connection of its own, closed after it (web RSVP submissions, tests). */
export function relayOnce(hop: NextHop, group: Envelope, message: Readable | Buffer, size: number, opts: RelayOptions & { connectTimeoutMs: number }): Promise<RelayResult> {
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
