// Next-hop sessions kept open between messages, as Postfix's own SMTP client caches them: on
// loopback, connecting, the greeting and EHLO cost more than relaying a 12 KB message.
// In: the next hop and its limits. Out: acquire() → a session ready for MAIL FROM; release() puts a
// session that ended its transaction cleanly back for the next message, or closes it.
// Fails: acquire() rejects when no new connection can be made (`reached` tells whether the next
// hop greeted first). A cached session idle for a while must answer RSET before it is handed out,
// as Postfix checks its cached sessions (smtp_rset_timeout); one that does not is closed and the
// next cached or a new one is tried, before any MAIL FROM. One reused within PROBE_AFTER_MS goes
// out unchecked (`unverified`): the relay sends its message once more over a new connection if
// that session fails before a byte of the message went out (lib/relay.ts).

import { hostname } from 'node:os';
import SMTPConnection from 'nodemailer/lib/smtp-connection';

/**
 * A session given back less than this long ago is reused without the RSET round trip: a next hop
 * that closed it meanwhile is seen at once ('end'), and one that fails it at MAIL FROM costs a retry,
 * never a message. Idle longer, it is checked first (a silent peer would otherwise hold the message
 * until next_hop_timeout).
 */
const PROBE_AFTER_MS = 1000;

/** The EHLO name; looked up once, not per message. */
const EHLO_NAME = hostname();

export interface NextHop {
  host: string;
  port: number;
  lmtp: boolean;
}

export interface SessionOptions {
  connectTimeoutMs: number;
  /** Socket inactivity bound while a session is in use. */
  socketTimeoutMs: number;
  /** How long an unused session waits for the next message; 0: one connection per message. */
  idleMs: number;
  /** A session older than this is not reused (Postfix: smtp_connection_reuse_time_limit). */
  maxAgeMs: number;
  /** Most unused sessions kept. */
  maxIdle: number;
  name?: string;
}

export interface HopSession {
  conn: SMTPConnection;
  /** True when this session carried a message before. */
  reused: boolean;
  /** Handed out from the cache without an RSET check (see PROBE_AFTER_MS). */
  unverified: boolean;
  /** When it was last given back. */
  idleSince: number;
  /** The current user's handlers for the connection's 'error' and 'end'. */
  onError: ((err: Error) => void) | null;
  onEnd: (() => void) | null;
  born: number;
  idleTimer: NodeJS.Timeout | null;
  /** LMTP next hop: each recipient's reply after the final dot, noted as it arrives (see noteLmtpReplies). */
  lmtpReplies: Map<string, string> | null;
}

/**
 * nodemailer hands an LMTP hop's replies after the final dot to send()'s callback only all together,
 * once the last has come. A hop that answers some recipients (and has delivered to them) and then
 * drops the connection would leave those replies unknown, and a 451 for them means a second copy in
 * their mailboxes; Postfix's own LMTP client keeps every reply it got. So each is noted as it arrives,
 * by wrapping the (internal) method nodemailer calls per reply. spec/relay.test.ts fails if a
 * nodemailer upgrade renames it.
 */
function noteLmtpReplies(conn: SMTPConnection, into: Map<string, string>): void {
  const c = conn as unknown as { _actionLMTPStream?: (recipient: string, final: boolean, str: string, done: unknown) => unknown };
  const original = c._actionLMTPStream;
  if (typeof original !== 'function') return;
  c._actionLMTPStream = function (this: unknown, recipient, final, str, done) {
    into.set(recipient, str);
    return original.call(this, recipient, final, str, done);
  };
}

/** System errors and nodemailer's timeout that mean no TCP connection to the next hop was made. */
const NOT_REACHED = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'EADDRNOTAVAIL', 'CONNECT_TIMEOUT']);

/**
 * Whether a failed connection attempt got as far as the next hop: anything after the TCP handshake
 * (no greeting in time, a 421/554 greeting, a refused EHLO, a drop) says it is there but unwell.
 */
function reachedBefore(err: Error & { code?: string; originalCode?: string; timeoutType?: string; response?: string }): boolean {
  if (err.response) return true;
  return ![err.code, err.originalCode, err.timeoutType].some((c) => c !== undefined && NOT_REACHED.has(c));
}

export class ConnectError extends Error {
  constructor(message: string, readonly reached: boolean) {
    super(message);
  }
}

export class HopSessions {
  private idle: HopSession[] = [];
  private closed = false;

  constructor(readonly hop: NextHop, private readonly opts: SessionOptions) {}

  /** A session ready for a transaction: a cached one (checked if idle for long), else a new connection; `fresh`: always new. */
  async acquire(fresh = false): Promise<HopSession> {
    for (let s = fresh ? undefined : this.idle.pop(); s; s = this.idle.pop()) {
      clearTimeout(s.idleTimer!);
      s.idleTimer = null;
      const now = Date.now();
      if (now - s.born > this.opts.maxAgeMs) {
        this.quit(s);
        continue;
      }
      s.unverified = now - s.idleSince < PROBE_AFTER_MS;
      if (s.unverified || (await this.probe(s))) return s;
    }
    return this.connect();
  }

  /** After a transaction: `clean` (the next hop answered the final dot) keeps the session for reuse. */
  release(s: HopSession, clean: boolean): void {
    s.onError = null;
    s.onEnd = null;
    s.reused = true;
    s.idleSince = Date.now();
    const keep = clean && !this.closed && this.opts.idleMs > 0 && this.idle.length < this.opts.maxIdle && Date.now() - s.born < this.opts.maxAgeMs;
    if (!keep) return clean ? this.quit(s) : s.conn.close();
    s.idleTimer = setTimeout(() => {
      this.forget(s);
      this.quit(s);
    }, this.opts.idleMs).unref();
    this.idle.push(s);
  }

  /** QUIT every unused session; sessions in use are closed when released. */
  close(): void {
    this.closed = true;
    for (const s of this.idle.splice(0)) {
      clearTimeout(s.idleTimer!);
      this.quit(s);
    }
  }

  private connect(): Promise<HopSession> {
    return new Promise((resolve, reject) => {
      const conn = new SMTPConnection({
        host: this.hop.host,
        port: this.hop.port,
        lmtp: this.hop.lmtp,
        name: this.opts.name ?? EHLO_NAME,
        ignoreTLS: true,
        connectionTimeout: this.opts.connectTimeoutMs,
        greetingTimeout: this.opts.connectTimeoutMs,
        socketTimeout: this.opts.socketTimeoutMs,
        socketCloseTimeout: 0,
        allowInternalNetworkInterfaces: true,
        logger: false,
      });
      const s: HopSession = { conn, reused: false, unverified: false, idleSince: 0, onError: null, onEnd: null, born: Date.now(), idleTimer: null, lmtpReplies: null };
      if (this.hop.lmtp) noteLmtpReplies(conn, (s.lmtpReplies = new Map()));
      let settled = false;
      const fail = (why: string, reached: boolean) => {
        if (settled) return;
        settled = true;
        conn.close();
        reject(new ConnectError(why, reached));
      };
      // One listener each for the session's life: it goes to the current user, or, while the
      // session is unused, drops it from the cache (the next hop closed an idle session).
      conn.on('error', (err: Error) => {
        if (!settled) return fail(err.message, reachedBefore(err));
        if (s.onError) s.onError(err);
        else this.drop(s);
      });
      conn.on('end', () => {
        if (!settled) return fail('next hop closed the connection', true);
        if (s.onEnd) s.onEnd();
        else this.drop(s);
      });
      conn.connect((err?: Error) => {
        if (err) return fail(err.message, reachedBefore(err));
        settled = true;
        resolve(s);
      });
    });
  }

  /** RSET on a cached session; false (and the session closed) when it does not answer 2xx in time. */
  private probe(s: HopSession): Promise<boolean> {
    return new Promise((resolve) => {
      let done = false;
      const end = (ok: boolean) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        s.onError = null;
        s.onEnd = null;
        if (!ok) s.conn.close();
        resolve(ok);
      };
      const timer = setTimeout(() => end(false), this.opts.connectTimeoutMs);
      s.onError = () => end(false);
      s.onEnd = () => end(false);
      try {
        s.conn.reset((err) => end(!err));
      } catch {
        end(false);
      }
    });
  }

  private forget(s: HopSession): void {
    const i = this.idle.indexOf(s);
    if (i >= 0) this.idle.splice(i, 1);
  }

  private drop(s: HopSession): void {
    this.forget(s);
    clearTimeout(s.idleTimer!);
    s.conn.close();
  }

  /** QUIT is a courtesy; a next hop that does not answer it is cut off soon after. */
  private quit(s: HopSession): void {
    s.onError = () => undefined;
    s.onEnd = () => undefined;
    try {
      s.conn.quit();
    } catch {
      s.conn.close();
      return;
    }
    const cutOff = setTimeout(() => s.conn.close(), 5000).unref();
    s.conn.once('end', () => clearTimeout(cutOff));
  }
}
