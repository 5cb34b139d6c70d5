// Test peer: the MTA side of the milter protocol, speaking like Postfix 3.7 or Sendmail 8.17 (notes §2.2).
// In: a milter on a loopback port or a Unix socket; raw messages to send as header and body events.
// Out: every reply, decoded; a whole transaction's end-of-message replies; and silence checks for the
// steps negotiated as "no reply". Also an in-process milter (startInProcMilter) with its log captured.
// Fails: a reply that does not come in time, a malformed reply, or a close while waiting rejects.

import { connect, type Socket } from 'node:net';
import { loadConfig } from '../../lib/config.js';
import {
  decodeReply, encodeCommand, FINAL_REPLIES, FrameDecoder, SMFIC, SMFIP, type MilterCommand, type MilterReply,
} from '../../lib/milter-codec.js';
import { startMilter, type MilterServer } from '../../lib/milter-server.js';

export const POSTFIX_OFFER = { version: 6, actions: 0x1ff, protocol: 0x1fffff } as const;

/** The no-reply flag of each command that is answered (0: end of message, always answered). */
const NR_FLAG: Partial<Record<MilterCommand['type'], number>> = {
  connect: SMFIP.NR_CONN, helo: SMFIP.NR_HELO, mail: SMFIP.NR_MAIL, rcpt: SMFIP.NR_RCPT, data: SMFIP.NR_DATA,
  header: SMFIP.NR_HDR, eoh: SMFIP.NR_EOH, body: SMFIP.NR_BODY, unknown: SMFIP.NR_UNKN, eob: 0,
};

export interface FakeMta {
  /** Encode and write each command as one frame; a Buffer is written as it is. */
  send(...cmds: Array<MilterCommand | Buffer>): void;
  /** The next reply (PROGRESS included). */
  next(timeoutMs?: number): Promise<MilterReply>;
  /** Replies up to and including the next final one (CONTINUE, ACCEPT, TEMPFAIL, REPLYCODE …). */
  untilFinal(timeoutMs?: number): Promise<MilterReply[]>;
  /** Rejects if any byte arrives within `ms`. */
  silence(ms: number): Promise<void>;
  /** The negotiation result, after negotiate(). */
  negotiated: { version: number; actions: number; protocol: number } | null;
  negotiate(offer?: { version: number; actions: number; protocol: number }): Promise<{ version: number; actions: number; protocol: number }>;
  /** True when the step `flag` (SMFIP_NR_*) was negotiated as "no reply". */
  noReply(flag: number): boolean;
  /** Send one command and, when the negotiation says a reply is due for it, return that reply. */
  step(cmd: MilterCommand): Promise<MilterReply | undefined>;
  close(): void;
  closed: Promise<void>;
  isClosed(): boolean;
  /** Bytes received in total (to check nothing more came). */
  bytesIn(): number;
}

export async function connectMta(where: number | string, timeoutMs = 10_000): Promise<FakeMta> {
  const socket: Socket = typeof where === 'number' ? connect(where, '127.0.0.1') : connect(where);
  socket.setNoDelay(true);
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  const decoder = new FrameDecoder(64 * 1024 * 1024);
  const queue: MilterReply[] = [];
  let error: Error | null = null;
  let ended = false;
  let bytes = 0;
  let wake: (() => void) | null = null;
  const closed = new Promise<void>((resolve) => socket.once('close', () => { ended = true; wake?.(); resolve(); }));
  socket.on('error', () => undefined);
  socket.on('data', (chunk: Buffer) => {
    bytes += chunk.length;
    try {
      for (const f of decoder.push(chunk)) queue.push(decodeReply(f));
    } catch (e) {
      error = e as Error;
    }
    wake?.();
  });

  const next = async (ms = timeoutMs): Promise<MilterReply> => {
    const until = Date.now() + ms;
    for (;;) {
      if (error) throw error;
      const r = queue.shift();
      if (r) return r;
      if (ended) throw new Error('the milter closed the connection while a reply was awaited');
      const left = until - Date.now();
      if (left <= 0) throw new Error(`no reply from the milter within ${ms} ms`);
      await new Promise<void>((resolve) => {
        wake = resolve;
        setTimeout(resolve, Math.min(left, 100)).unref();
      });
      wake = null;
    }
  };

  const mta: FakeMta = {
    negotiated: null,
    send(...cmds) {
      for (const c of cmds) socket.write(Buffer.isBuffer(c) ? c : encodeCommand(c));
    },
    next,
    async untilFinal(ms = timeoutMs) {
      const out: MilterReply[] = [];
      for (;;) {
        const r = await next(ms);
        out.push(r);
        if (FINAL_REPLIES.has(r.type)) return out;
      }
    },
    async silence(ms) {
      const before = bytes;
      await new Promise((r) => setTimeout(r, ms));
      if (bytes !== before || queue.length) throw new Error(`the milter sent ${bytes - before} bytes where no reply was due: ${JSON.stringify(queue.map((q) => q.type))}`);
    },
    async negotiate(offer = POSTFIX_OFFER) {
      mta.send({ type: 'optneg', ...offer });
      const r = await next();
      if (r.type !== 'optneg') throw new Error(`expected an option negotiation reply, got ${r.type}`);
      mta.negotiated = { version: r.version, actions: r.actions, protocol: r.protocol };
      return mta.negotiated;
    },
    noReply(flag) {
      return Boolean(mta.negotiated && mta.negotiated.protocol & flag);
    },
    async step(cmd) {
      mta.send(cmd);
      const flag = NR_FLAG[cmd.type];
      if (flag === undefined || mta.noReply(flag)) return undefined;
      return flag === 0 ? (await mta.untilFinal()).pop() : next();
    },
    close: () => socket.destroy(),
    closed,
    isClosed: () => ended,
    bytesIn: () => bytes,
  };
  return mta;
}

// ---------------------------------------------------------------------------------------------
// Messages as events

export interface Field {
  name: string;
  /** After the colon, as in the message (leading space included), folded lines joined with LF. */
  raw: string;
}

/** Raw message → header fields (as the MTA would send them) and the body after the blank line, CRLF. */
export function splitMessage(raw: Buffer): { fields: Field[]; body: Buffer } {
  const text = raw.toString('latin1');
  const m = /\r?\n\r?\n/.exec(text);
  const head = m ? text.slice(0, m.index) : text;
  const body = m ? raw.subarray(m.index + m[0].length) : Buffer.alloc(0);
  const fields: Field[] = [];
  for (const line of head.split(/\r?\n/)) {
    if (/^[ \t]/.test(line) && fields.length) fields[fields.length - 1]!.raw += `\n${line}`;
    else {
      const colon = line.indexOf(':');
      fields.push({ name: line.slice(0, colon), raw: line.slice(colon + 1) });
    }
  }
  // Postfix and Sendmail give the milter CRLF line ends in the body
  const crlf = Buffer.from(body.toString('latin1').replace(/\r?\n/g, '\r\n'), 'latin1');
  return { fields, body: crlf };
}

/** A header value as sent: with SMFIP_HDR_LEADSPC exactly, else with one leading space eaten. */
export function headerValue(f: Field, leadspc: boolean): string {
  return leadspc ? f.raw : f.raw.replace(/^ /, '');
}

/** Body chunks as Postfix cuts them: exactly `size` bytes each, wherever a line is. */
export function chunks(body: Buffer, size = 65535): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < body.length; i += size) out.push(body.subarray(i, i + size));
  return out;
}

export type Profile = 'postfix' | 'sendmail';

export interface TransactionOptions {
  profile?: Profile;
  from: string;
  to: string[];
  mailArgs?: string[];
  raw: Buffer;
  /** Postfix queue id for the "i" macro. */
  queueId?: string;
  chunkSize?: number;
  /** Headers the MTA adds that the message lacks (Postfix shows its own Date:). */
  extraFields?: Field[];
}

export interface TransactionResult {
  /** The reply at end of headers (undefined when it was not due). */
  eoh?: MilterReply;
  /** Replies to body chunks. */
  body: MilterReply[];
  /** End-of-message replies in order, the final one last; empty when the milter accepted earlier. */
  eom: MilterReply[];
  /** The message was accepted before end of message (ACCEPT at EOH or a body chunk). */
  acceptedEarly: boolean;
}

/**
 * One message the way the profile's MTA sends it, waiting for a reply wherever one is due under the
 * negotiated flags; after an ACCEPT it stops sending events for the message, as Postfix does.
 */
export async function transaction(mta: FakeMta, o: TransactionOptions): Promise<TransactionResult> {
  const neg = mta.negotiated;
  if (!neg) throw new Error('negotiate first');
  const pf = (o.profile ?? 'postfix') === 'postfix';
  const qid = o.queueId ?? '6F9D9216522';
  const leadspc = Boolean(neg.protocol & SMFIP.HDR_LEADSPC);
  const result: TransactionResult = { body: [], eom: [], acceptedEarly: false };
  const step = async (cmd: MilterCommand, noStep: number, nr: number): Promise<MilterReply | undefined> => {
    if (noStep && neg.protocol & noStep) return undefined;
    mta.send(cmd);
    if (nr && neg.protocol & nr) return undefined;
    const r = await mta.next();
    if (r.type === 'accept') result.acceptedEarly = true;
    return r;
  };
  // MAIL
  mta.send(pf
    ? { type: 'macro', stage: SMFIC.MAIL, macros: [['{mail_addr}', o.from], ['{mail_host}', '[127.0.0.1]:2592'], ['{mail_mailer}', 'smtp']] }
    : { type: 'macro', stage: SMFIC.MAIL, macros: [['i', qid], ['{mail_mailer}', 'esmtp'], ['{mail_host}', 'remote.test'], ['{mail_addr}', o.from]] });
  await step({ type: 'mail', args: [`<${o.from}>`, ...(o.mailArgs ?? [])] }, SMFIP.NOMAIL, SMFIP.NR_MAIL);
  // RCPT: Postfix has a queue id only from the second recipient on
  for (const [i, rcpt] of o.to.entries()) {
    const macros: Array<[string, string]> = [['{rcpt_addr}', rcpt], ['{rcpt_host}', '[127.0.0.1]:2592'], ['{rcpt_mailer}', 'smtp']];
    mta.send({ type: 'macro', stage: SMFIC.RCPT, macros: pf && i > 0 ? [['i', qid], ...macros] : macros });
    await step({ type: 'rcpt', args: [`<${rcpt}>`] }, SMFIP.NORCPT, SMFIP.NR_RCPT);
  }
  if (neg.version >= 4) {
    if (pf) mta.send({ type: 'macro', stage: SMFIC.DATA, macros: [['i', qid]] });
    await step({ type: 'data' }, SMFIP.NODATA, SMFIP.NR_DATA);
  }
  const { fields, body } = splitMessage(o.raw);
  for (const f of [...fields, ...(o.extraFields ?? [])]) {
    if (pf) mta.send({ type: 'macro', stage: SMFIC.HEADER, macros: [['i', qid]] }); // repeated before every header
    const r = await step({ type: 'header', name: f.name, value: headerValue(f, leadspc) }, SMFIP.NOHDRS, SMFIP.NR_HDR);
    if (result.acceptedEarly) return result;
    void r;
  }
  if (pf) mta.send({ type: 'macro', stage: SMFIC.EOH, macros: [['i', qid]] });
  result.eoh = await step({ type: 'eoh' }, SMFIP.NOEOH, SMFIP.NR_EOH);
  if (result.acceptedEarly) return result;
  for (const c of chunks(body, o.chunkSize ?? 65535)) {
    if (pf) mta.send({ type: 'macro', stage: SMFIC.BODY, macros: [['i', qid]] });
    const r = await step({ type: 'body', chunk: c }, SMFIP.NOBODY, SMFIP.NR_BODY);
    if (r) result.body.push(r);
    if (result.acceptedEarly) return result;
    if (r?.type === 'skip') break;
  }
  mta.send(pf ? { type: 'macro', stage: SMFIC.BODYEOB, macros: [['i', qid]] } : { type: 'macro', stage: SMFIC.BODYEOB, macros: [['{msg_id}', `<${qid}@mx.sm.test>`]] });
  mta.send({ type: 'eob', chunk: Buffer.alloc(0) });
  result.eom = await mta.untilFinal();
  return result;
}

/** The edits of an end-of-message reply list, checked for shape: REPLBODY run first, then headers, one final. */
export function eomEdits(replies: MilterReply[]): { body: Buffer | null; bodyPackets: number[]; headers: MilterReply[]; final: MilterReply; progress: number } {
  const final = replies[replies.length - 1]!;
  let progress = 0;
  const packets: Buffer[] = [];
  const headers: MilterReply[] = [];
  let seenHeader = false;
  for (const r of replies.slice(0, -1)) {
    if (r.type === 'progress') {
      if (packets.length || headers.length) throw new Error('PROGRESS between edits');
      progress++;
    } else if (r.type === 'replbody') {
      if (seenHeader) throw new Error('REPLBODY after a header edit: the body run must be consecutive');
      packets.push(r.chunk);
    } else if (r.type === 'addheader' || r.type === 'chgheader' || r.type === 'insheader') {
      seenHeader = true;
      headers.push(r);
    } else {
      throw new Error(`unexpected reply ${r.type} before the final one`);
    }
  }
  return { body: packets.length ? Buffer.concat(packets) : null, bodyPackets: packets.map((p) => p.length), headers, final, progress };
}

// ---------------------------------------------------------------------------------------------
// The milter in this process

export interface InProcMilter {
  port: number;
  server: MilterServer;
  logs: Array<Record<string, unknown>>;
  close(): Promise<void>;
}

export async function startInProcMilter(flags: Record<string, unknown> = {}): Promise<InProcMilter> {
  const config = loadConfig({ flags: { milter_listen: '127.0.0.1:0', web_server: 'cal.example.org', ...flags } });
  const logs: Array<Record<string, unknown>> = [];
  const server = await startMilter(config, (event, fields = {}) => { logs.push({ event, ...fields }); });
  return { port: server.port!, server, logs, close: () => server.close() };
}
