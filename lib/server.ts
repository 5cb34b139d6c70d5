// The listener: an SMTP or LMTP server that takes messages from the MTA for the pipeline.
// In: connections on `listen` from the allowed client networks; each message's DATA stream.
// Out: a spooled Transaction handed to `onMessage`, and its reply (one, or one per recipient
// in LMTP mode) sent back only after `onMessage` settled — so 250 means the next hop took it.
// Fails: a refused client gets 554 5.7.1 and is disconnected; a message over the size limit
// gets 552; a spool or pipeline error gets 451. The only module that imports smtp-server.

import { SMTPServer, type SMTPServerDataStream, type SMTPServerSession } from 'smtp-server';
import type { LogFn } from './log.js';
import { buildAllowList } from './net-allow.js';
import { REPLIES, replyText } from './replies.js';
import { Spool, type SpoolReader } from './spool.js';
import { Cutoff, type Envelope, type Reply } from './types.js';
import { createScanner, type ScanResult } from './candidate-scan.js';

export interface ListenerOptions {
  host: string;
  port: number;
  lmtp: boolean;
  allowedClients: string[];
  maxMessageSize: number;
  maxRecipients: number;
  maxConnections: number;
  socketTimeoutMs: number;
  spool: { memoryLimit: number; dir?: string };
  /** Grace period on close() for transactions in flight. */
  shutdownTimeoutMs: number;
}

export interface Transaction {
  id: string;
  envelope: Envelope;
  spool: SpoolReader;
  scan: ScanResult;
  /** XFORWARD attributes from the MTA (IDENT is Postfix's queue id), upper-case keys. */
  xforward: Record<string, string>;
  client: string;
  /** Aborted when shutdown cuts the transaction off. */
  signal: Cutoff;
}

/** The pipeline answers with one Reply (SMTP) or one per envelope recipient, in order (LMTP). */
export type OnMessage = (tx: Transaction) => Promise<Reply[]>;

export interface Listener {
  port: number;
  /** Stop accepting, let transactions in flight finish within the grace period, then cut them off. */
  close(): Promise<void>;
  inFlight(): number;
  connections(): number;
}

type ReplyError = Error & { responseCode?: number };

function asError(r: Reply): ReplyError {
  const e = new Error(replyText(r)) as ReplyError;
  e.responseCode = r.code;
  return e;
}

export async function startListener(opts: ListenerOptions, onMessage: OnMessage, log: LogFn): Promise<Listener> {
  const allowed = buildAllowList(opts.allowedClients);
  const inflight = new Set<Cutoff>();
  let seq = 0;

  const server = new SMTPServer({
    lmtp: opts.lmtp,
    name: undefined,
    banner: 'calendar-link-filter',
    disabledCommands: ['AUTH', 'STARTTLS'],
    authOptional: true,
    hideDSN: false,
    // smtp-server would prefix its own default enhanced code to every reply; we put the next
    // hop's own code (or ours, lib/replies.ts) into the text instead, so it reaches the MTA unchanged
    hideENHANCEDSTATUSCODES: true,
    disableReverseLookup: true,
    useXForward: true,
    size: opts.maxMessageSize,
    rejectOversized: true,
    maxRecipients: opts.maxRecipients,
    maxClients: opts.maxConnections,
    socketTimeout: opts.socketTimeoutMs,
    closeTimeout: opts.shutdownTimeoutMs + 2000,
    logger: false,

    onConnect(session, callback) {
      if (!allowed(session.remoteAddress)) {
        log('smtp.refused', { client: session.remoteAddress, reason: 'not in allowed_clients' });
        return callback(asError(REPLIES.refusedClient));
      }
      log('smtp.connect', { client: session.remoteAddress });
      callback();
    },

    onData(stream: SMTPServerDataStream, session: SMTPServerSession, callback) {
      const id = `${Date.now().toString(36)}.${(++seq).toString(36)}`;
      const envelope = toEnvelope(session);
      const spool = new Spool(opts.spool);
      const scanner = createScanner();
      const ctl = new Cutoff();
      inflight.add(ctl);
      let failed: Error | null = null;
      let ended = false;

      // A client that leaves in the middle of DATA: smtp-server destroys the stream, 'end' never
      // comes and nobody is answered, but the spool (a file, maybe) and the in-flight entry must go.
      stream.once('close', () => {
        if (ended) return;
        log('message.incomplete', { id, client: session.remoteAddress, from: envelope.from, to: envelope.to.map((r) => r.address), bytes: spool.size });
        void spool.dispose().catch(() => undefined).finally(() => inflight.delete(ctl));
      });

      stream.on('data', (chunk: Buffer) => {
        if (failed || stream.sizeExceeded) return; // keep draining, keep nothing
        scanner.push(chunk);
        const p = spool.write(chunk);
        if (!spool.inMemory) {
          stream.pause();
          p.then(() => stream.resume(), (err: Error) => { failed = err; stream.resume(); });
        } else {
          p.catch((err: Error) => { failed = err; });
        }
      });
      stream.once('end', () => {
        ended = true;
        void (async () => {
          const send = (answers: Reply[]) => {
            // a next hop's 421 means it closed its own connection; ours stays open (smtp-server would
            // close it after a 421, and an LMTP client would never hear the replies after that one)
            const replies = answers.map((r) => (r.code === 421 ? { ...r, code: 451 } : r));
            if (opts.lmtp) {
              callback(null, replies.map((r) => (r.code < 300 ? replyText(r) : asError(r))) as never);
            } else {
              const r = replies[0] ?? REPLIES.internal;
              if (r.code < 300) callback(null, replyText(r));
              else callback(asError(r));
            }
          };
          try {
            if (stream.sizeExceeded) {
              log('message.rejected', { id, reason: 'size', size: stream.byteLength, limit: opts.maxMessageSize });
              return callback(asError(REPLIES.tooBig)); // rejectOversized sends 552 anyway
            }
            if (failed) throw failed;
            const reader = await spool.finish();
            {
              const replies = await onMessage({
                id,
                envelope,
                spool: reader,
                scan: scanner.result(),
                xforward: session.xForward.size ? Object.fromEntries([...session.xForward.entries()].filter(([k]) => !k.includes(':')).map(([k, v]) => [String(k).toUpperCase(), String(v)])) : {},
                client: session.remoteAddress,
                signal: ctl,
              });
              send(replies);
            }
          } catch (err) {
            log('message.error', { id, error: (err as Error).message });
            send(envelope.to.map(() => REPLIES.internal));
          } finally {
            // still "in flight" until the temporary file is gone: close() waits for it, so a
            // stop right after the reply does not exit with the spilled message left on disk
            await spool.dispose().catch(() => undefined);
            inflight.delete(ctl);
          }
        })();
      });
    },
  });

  server.on('error', (err: Error) => log('smtp.error', { error: err.message }));

  await new Promise<void>((resolve, reject) => {
    server.server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.server.off('error', reject);
      resolve();
    });
  });
  const addr = server.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : opts.port;

  return {
    port,
    inFlight: () => inflight.size,
    connections: () => (server as unknown as { connections: Set<unknown> }).connections.size,
    close: () =>
      new Promise<void>((resolve) => {
        const deadline = setTimeout(() => {
          // transactions still running get 451 from their own relay abort, never a 250
          for (const ctl of inflight) ctl.abort();
        }, opts.shutdownTimeoutMs);
        deadline.unref();
        server.close(() => {
          clearTimeout(deadline);
          // the clients are gone: a transaction still relaying (its client left after the final
          // dot) has nobody to answer and is cut off now, so it removes its spilled message
          // before the process exits instead of outliving the wait below
          for (const ctl of inflight) ctl.abort();
          // a transaction may still be removing its spilled message
          const until = Date.now() + 10_000;
          const settled = () => (inflight.size === 0 || Date.now() > until ? resolve() : void setTimeout(settled, 10));
          settled();
        });
        // close() waits for clients to leave; idle ones are told 421 by smtp-server after
        // closeTimeout, so poll for "nothing in flight" and end the wait early
        const poll = setInterval(() => {
          if (inflight.size === 0) {
            clearInterval(poll);
            for (const c of (server as unknown as { connections: Set<{ send(code: number, text: string): void; close(): void }> }).connections) {
              c.send(421, replyText(REPLIES.shuttingDown));
              c.close();
            }
          }
        }, 50);
        poll.unref();
      }),
  };
}

function toEnvelope(session: SMTPServerSession): Envelope {
  const env = session.envelope;
  const from = env.mailFrom === false ? '' : env.mailFrom.address;
  const mailDsn = (env as { dsn?: { ret?: string | null; envid?: string | null } }).dsn;
  return {
    from,
    to: env.rcptTo.map((r) => {
      const dsn = (r as { dsn?: { notify?: string[] | string; orcpt?: string } }).dsn;
      const notify = Array.isArray(dsn?.notify) ? dsn?.notify.join(',') : dsn?.notify;
      return { address: r.address, ...(notify ? { notify } : {}), ...(dsn?.orcpt ? { orcpt: dsn.orcpt } : {}) };
    }),
    body: (env as { bodyType?: string }).bodyType?.toUpperCase(),
    smtputf8: (env as { smtpUtf8?: boolean }).smtpUtf8 ?? false,
    ret: mailDsn?.ret ?? undefined,
    envid: mailDsn?.envid ?? undefined,
  };
}

export type { ScanResult };
