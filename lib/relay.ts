// The relay: hands one group of recipients and one message body to the next hop.
// In: the next-hop URL (smtp:// or lmtp://), an envelope group, the message bytes as a stream.
// Out: the next hop's own reply per recipient (2xx accepted, its 4xx/5xx otherwise).
// Fails: never throws. Unreachable → 451 4.4.1; timeout, dropped connection, protocol trouble
// → 451 4.4.2; anything unexpected → 451 4.3.0. The only module that imports nodemailer.

import { hostname } from 'node:os';
import type { Readable } from 'node:stream';
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import { parseReply, REPLIES } from './replies.js';
import type { Envelope, Reply } from './types.js';

/** The EHLO name; looked up once, not per message. */
const EHLO_NAME = hostname();

export interface NextHop {
  host: string;
  port: number;
  lmtp: boolean;
}

export function parseNextHop(url: string): NextHop {
  const m = /^(smtp|lmtp):\/\/(\[[^\]]+\]|[^:/]+)(?::(\d+))?\/?$/i.exec(url.trim());
  if (!m) throw new Error(`next hop "${url}" is not smtp://HOST:PORT or lmtp://HOST:PORT`);
  const lmtp = m[1]!.toLowerCase() === 'lmtp';
  return { host: m[2]!.replace(/^\[|\]$/g, ''), port: m[3] ? Number(m[3]) : lmtp ? 24 : 25, lmtp };
}

export interface RelayOptions {
  connectTimeoutMs: number;
  /** Bound on the whole transaction, from connect to the reply to the final dot. */
  totalTimeoutMs: number;
  /** EHLO name; default: this host's name. */
  name?: string;
  /** Called when the relay is cut off from outside (shutdown), to abort a transaction in flight. */
  signal?: AbortSignal;
}

export interface RelayResult {
  /** Reply per recipient, keyed by address as given in the envelope. */
  recipients: Map<string, Reply>;
  /** The next hop's final reply line (for the log), or our own failure text. */
  response: string;
  ms: number;
}

/**
 * Send `message` to `group.to` with the envelope's parameters.
 * 8BITMIME is asked for when the client used it; SMTPUTF8 is added by nodemailer when an address
 * needs it; SIZE and DSN (RET, ENVID, and the group's common NOTIFY/ORCPT) go along when the
 * next hop announces them. nodemailer cannot send XFORWARD or per-recipient DSN parameters,
 * which is why the pipeline groups recipients by their DSN parameters first.
 */
export function relayMessage(hop: NextHop, group: Envelope, message: Readable | Buffer, size: number, opts: RelayOptions): Promise<RelayResult> {
  const started = Date.now();
  const addresses = group.to.map((r) => r.address);
  return new Promise((resolve) => {
    let done = false;
    const conn = new SMTPConnection({
      host: hop.host,
      port: hop.port,
      lmtp: hop.lmtp,
      name: opts.name ?? EHLO_NAME,
      ignoreTLS: true,
      connectionTimeout: opts.connectTimeoutMs,
      greetingTimeout: opts.connectTimeoutMs,
      socketTimeout: opts.totalTimeoutMs,
      socketCloseTimeout: 0,
      allowInternalNetworkInterfaces: true,
      logger: false,
    });

    const finish = (replies: Map<string, Reply>, response: string) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      if (!Buffer.isBuffer(message)) message.destroy();
      try {
        conn.quit();
      } catch {
        /* the connection may already be gone */
      }
      // QUIT is a courtesy; a next hop that does not answer it is cut off soon after. The timer goes
      // when the connection ends, so that it does not hold every connection for 5 s (memory, GC).
      const cutOff = setTimeout(() => conn.close(), 5000).unref();
      conn.once('end', () => clearTimeout(cutOff));
      resolve({ recipients: replies, response, ms: Date.now() - started });
    };
    const failAll = (r: Reply, why: string) => finish(new Map(addresses.map((a) => [a, { ...r }])), why);

    const timer = setTimeout(() => failAll(REPLIES.hopTimeout, 'next hop timeout'), opts.totalTimeoutMs);
    const onAbort = () => failAll(REPLIES.aborted, 'aborted by shutdown');
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    if (opts.signal?.aborted) return onAbort();

    // Before the greeting, any failure means "unreachable"; after it, "dropped or timed out".
    let connected = false;
    conn.once('error', (err: NodeJS.ErrnoException & { responseCode?: number; response?: string }) => {
      failAll(connected ? classifyError(err) : REPLIES.unreachable, err.message);
    });
    conn.once('end', () => failAll(connected ? REPLIES.hopTimeout : REPLIES.unreachable, 'next hop closed the connection'));

    conn.connect(() => {
      connected = true;
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
      conn.send(envelope as never, message, (err, info) => {
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
        finish(replies, info.response);
      });
    });
  });
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
