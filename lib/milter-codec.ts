// The milter wire format (Sendmail libmilter protocol 2–6), both directions, pure: no sockets, no state.
// In: bytes from a socket in chunks of any size (FrameDecoder), or typed commands/replies to encode.
// Out: frames `uint32 len (BE, = 1 + data) | cmd byte | data`, typed MilterCommand / MilterReply values.
// Strings are byte strings: every char is one byte (latin1), so header bytes survive unchanged.
// Fails: len 0, len above the limit, an unknown command byte or a malformed payload throws
// MilterProtocolError with a text for the log; the caller closes the connection (no reply is possible).

/** Commands, MTA → milter (mfdef.h SMFIC_*). */
export const SMFIC = {
  ABORT: 0x41, BODY: 0x42, CONNECT: 0x43, MACRO: 0x44, BODYEOB: 0x45, HELO: 0x48, QUIT_NC: 0x4b,
  HEADER: 0x4c, MAIL: 0x4d, EOH: 0x4e, OPTNEG: 0x4f, QUIT: 0x51, RCPT: 0x52, DATA: 0x54, UNKNOWN: 0x55,
} as const;

/** Replies, milter → MTA (mfdef.h SMFIR_*). */
export const SMFIR = {
  ADDRCPT: 0x2b, DELRCPT: 0x2d, ADDRCPT_PAR: 0x32, SHUTDOWN: 0x34, ACCEPT: 0x61, REPLBODY: 0x62,
  CONTINUE: 0x63, DISCARD: 0x64, CHGFROM: 0x65, CONN_FAIL: 0x66, ADDHEADER: 0x68, INSHEADER: 0x69,
  SETSYMLIST: 0x6c, CHGHEADER: 0x6d, PROGRESS: 0x70, QUARANTINE: 0x71, REJECT: 0x72, SKIP: 0x73,
  TEMPFAIL: 0x74, REPLYCODE: 0x79, OPTNEG: 0x4f,
} as const;

/** Action flags: what the milter may change (mfapi.h SMFIF_*). */
export const SMFIF = {
  ADDHDRS: 0x001, CHGBODY: 0x002, ADDRCPT: 0x004, DELRCPT: 0x008, CHGHDRS: 0x010, QUARANTINE: 0x020,
  CHGFROM: 0x040, ADDRCPT_PAR: 0x080, SETSYMLIST: 0x100,
} as const;

/** Protocol flags: steps not sent, replies not given, features understood (mfdef.h SMFIP_*). */
export const SMFIP = {
  NOCONNECT: 0x1, NOHELO: 0x2, NOMAIL: 0x4, NORCPT: 0x8, NOBODY: 0x10, NOHDRS: 0x20, NOEOH: 0x40,
  NR_HDR: 0x80, NOUNKNOWN: 0x100, NODATA: 0x200, SKIP: 0x400, RCPT_REJ: 0x800, NR_CONN: 0x1000,
  NR_HELO: 0x2000, NR_MAIL: 0x4000, NR_RCPT: 0x8000, NR_DATA: 0x10000, NR_UNKN: 0x20000, NR_EOH: 0x40000,
  NR_BODY: 0x80000, HDR_LEADSPC: 0x100000, MDS_256K: 0x10000000, MDS_1M: 0x20000000,
} as const;

/** What an MTA means by actions = 0 / protocol = 0 in its offer: protocol version 1's sets. */
export const V1_ACTIONS = 0x0f;
export const V1_PROTOCOL = 0x3f;

/** libmilter's data limit per packet; what we send stays within it. */
export const MILTER_CHUNK_SIZE = 65535;
/** Largest data we accept in one packet: above libmilter's 64 KiB, since Postfix sends a whole header at once. */
export const MAX_DATA = 1024 * 1024;

export class MilterProtocolError extends Error {}

export interface Frame {
  cmd: number;
  data: Buffer;
}

/** One frame, ready for a single socket write (miltertest reads the 5-byte header with one read()). */
export function encodeFrame(cmd: number, data: Buffer = EMPTY): Buffer {
  const out = Buffer.allocUnsafe(5 + data.length);
  out.writeUInt32BE(data.length + 1, 0);
  out[4] = cmd;
  data.copy(out, 5);
  return out;
}

const EMPTY = Buffer.alloc(0);

/** Splits a byte stream into frames, whatever the chunk boundaries. */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  private size = 0;

  constructor(private readonly maxData = MAX_DATA) {}

  /** Bytes received and not yet part of a complete frame. */
  get buffered(): number {
    return this.size;
  }

  /** Every frame completed by `chunk`, in order. Throws MilterProtocolError on a bad length. */
  push(chunk: Buffer): Frame[] {
    if (chunk.length) {
      this.chunks.push(chunk);
      this.size += chunk.length;
    }
    const frames: Frame[] = [];
    while (this.size >= 4) {
      const len = this.peekLength();
      if (len < 1) throw new MilterProtocolError('packet length 0 (a packet holds at least its command byte)');
      if (len - 1 > this.maxData) throw new MilterProtocolError(`packet of ${len - 1} data bytes exceeds the limit of ${this.maxData}`);
      if (this.size < 4 + len) break;
      const bytes = this.take(4 + len);
      frames.push({ cmd: bytes[4]!, data: bytes.subarray(5) });
    }
    return frames;
  }

  private peekLength(): number {
    const first = this.chunks[0]!;
    if (first.length >= 4) return first.readUInt32BE(0);
    const head = Buffer.concat(this.chunks, Math.min(this.size, 4));
    this.chunks = [Buffer.concat(this.chunks)];
    return head.readUInt32BE(0);
  }

  private take(n: number): Buffer {
    const first = this.chunks[0]!;
    let out: Buffer;
    if (first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
    } else {
      const all = Buffer.concat(this.chunks, this.size);
      out = all.subarray(0, n);
      this.chunks = all.length > n ? [all.subarray(n)] : [];
    }
    this.size -= n;
    return out;
  }
}

// ---------------------------------------------------------------------------------------------
// Commands (MTA → milter)

export type ConnectFamily = 'U' | 'L' | '4' | '6';

export type MilterCommand =
  | { type: 'optneg'; version: number; actions: number; protocol: number }
  | { type: 'macro'; stage: number; macros: Array<[string, string]> }
  | { type: 'connect'; hostname: string; family: ConnectFamily; port: number | null; address: string | null }
  | { type: 'helo'; name: string }
  /** args[0] is the address as the MTA gives it ("<a@b>"), then the ESMTP parameters. */
  | { type: 'mail'; args: string[] }
  | { type: 'rcpt'; args: string[] }
  | { type: 'data' }
  /** Header value as sent: folded with LF; with SMFIP_HDR_LEADSPC including its leading space. */
  | { type: 'header'; name: string; value: string }
  | { type: 'eoh' }
  | { type: 'body'; chunk: Buffer }
  /** End of message; libmilter lets it carry the last body chunk (Postfix never does). */
  | { type: 'eob'; chunk: Buffer }
  | { type: 'abort' }
  | { type: 'quit' }
  | { type: 'quit_nc' }
  | { type: 'unknown'; line: string };

const str = (b: Buffer) => b.toString('latin1');

/** NUL-terminated strings filling the payload; a missing final NUL is tolerated for the last one. */
export function splitStrings(data: Buffer): string[] {
  const out: string[] = [];
  let i = 0;
  while (i < data.length) {
    const nul = data.indexOf(0, i);
    const end = nul < 0 ? data.length : nul;
    out.push(str(data.subarray(i, end)));
    i = end + 1;
  }
  return out;
}

function oneString(data: Buffer, what: string): string {
  const nul = data.indexOf(0);
  if (nul < 0) throw new MilterProtocolError(`${what}: string is not NUL-terminated`);
  return str(data.subarray(0, nul));
}

const cmdName = (cmd: number) => (cmd >= 0x20 && cmd < 0x7f ? `'${String.fromCharCode(cmd)}'` : `0x${cmd.toString(16).padStart(2, '0')}`);

/** The typed command in a frame. Throws MilterProtocolError for an unknown command or a malformed payload. */
export function decodeCommand(frame: Frame): MilterCommand {
  const d = frame.data;
  switch (frame.cmd) {
    case SMFIC.OPTNEG:
      if (d.length < 12) throw new MilterProtocolError(`option negotiation: ${d.length} data bytes, expected 12`);
      return { type: 'optneg', version: d.readUInt32BE(0), actions: d.readUInt32BE(4), protocol: d.readUInt32BE(8) };
    case SMFIC.MACRO: {
      if (d.length < 1) throw new MilterProtocolError('macro packet without its command code');
      const list = splitStrings(d.subarray(1));
      const macros: Array<[string, string]> = [];
      // an odd count leaves a name without a value: it is dropped, not fatal (libmilter does the same)
      for (let i = 0; i + 1 < list.length; i += 2) macros.push([list[i]!, list[i + 1]!]);
      return { type: 'macro', stage: d[0]!, macros };
    }
    case SMFIC.CONNECT: {
      const nul = d.indexOf(0);
      if (nul < 0 || nul + 1 >= d.length) throw new MilterProtocolError('connect: truncated host name or family');
      const hostname = str(d.subarray(0, nul));
      const family = String.fromCharCode(d[nul + 1]!);
      if (family === 'U') return { type: 'connect', hostname, family, port: null, address: null };
      if (family !== '4' && family !== '6' && family !== 'L') throw new MilterProtocolError(`connect: unknown address family ${cmdName(d[nul + 1]!)}`);
      const rest = d.subarray(nul + 2);
      if (rest.length < 3) throw new MilterProtocolError('connect: truncated port or address');
      return { type: 'connect', hostname, family, port: rest.readUInt16BE(0), address: oneString(rest.subarray(2), 'connect address') };
    }
    case SMFIC.HELO:
      return { type: 'helo', name: oneString(d, 'helo') };
    case SMFIC.MAIL:
    case SMFIC.RCPT: {
      const args = splitStrings(d);
      if (args.length < 1) throw new MilterProtocolError(`${frame.cmd === SMFIC.MAIL ? 'mail' : 'rcpt'}: no address`);
      return { type: frame.cmd === SMFIC.MAIL ? 'mail' : 'rcpt', args };
    }
    case SMFIC.DATA:
      return { type: 'data' };
    case SMFIC.HEADER: {
      const nul = d.indexOf(0);
      if (nul < 0) throw new MilterProtocolError('header: name is not NUL-terminated');
      const rest = d.subarray(nul + 1);
      const end = rest.length && rest[rest.length - 1] === 0 ? rest.length - 1 : rest.length;
      if (rest.subarray(0, end).includes(0)) throw new MilterProtocolError('header: NUL inside the value');
      return { type: 'header', name: str(d.subarray(0, nul)), value: str(rest.subarray(0, end)) };
    }
    case SMFIC.EOH:
      return { type: 'eoh' };
    case SMFIC.BODY:
      return { type: 'body', chunk: d };
    case SMFIC.BODYEOB:
      return { type: 'eob', chunk: d };
    case SMFIC.ABORT:
      return { type: 'abort' };
    case SMFIC.QUIT:
      return { type: 'quit' };
    case SMFIC.QUIT_NC:
      return { type: 'quit_nc' };
    case SMFIC.UNKNOWN:
      return { type: 'unknown', line: d.length ? oneString(d, 'unknown') : '' };
    default:
      throw new MilterProtocolError(`unknown command ${cmdName(frame.cmd)} (${d.length} data bytes)`);
  }
}

const z = (s: string) => Buffer.from(`${s}\0`, 'latin1');
const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0, 0);
  return b;
};

/** A command as the MTA sends it (the fake MTA in the tests, the benchmark). */
export function encodeCommand(c: MilterCommand): Buffer {
  switch (c.type) {
    case 'optneg':
      return encodeFrame(SMFIC.OPTNEG, Buffer.concat([u32(c.version), u32(c.actions), u32(c.protocol)]));
    case 'macro':
      return encodeFrame(SMFIC.MACRO, Buffer.concat([Buffer.from([c.stage]), ...c.macros.flatMap(([k, v]) => [z(k), z(v)])]));
    case 'connect': {
      const head = Buffer.concat([z(c.hostname), Buffer.from(c.family, 'latin1')]);
      if (c.family === 'U') return encodeFrame(SMFIC.CONNECT, head);
      const port = Buffer.alloc(2);
      port.writeUInt16BE(c.port ?? 0, 0);
      return encodeFrame(SMFIC.CONNECT, Buffer.concat([head, port, z(c.address ?? '')]));
    }
    case 'helo':
      return encodeFrame(SMFIC.HELO, z(c.name));
    case 'mail':
      return encodeFrame(SMFIC.MAIL, Buffer.concat(c.args.map(z)));
    case 'rcpt':
      return encodeFrame(SMFIC.RCPT, Buffer.concat(c.args.map(z)));
    case 'data':
      return encodeFrame(SMFIC.DATA);
    case 'header':
      return encodeFrame(SMFIC.HEADER, Buffer.concat([z(c.name), z(c.value)]));
    case 'eoh':
      return encodeFrame(SMFIC.EOH);
    case 'body':
      return encodeFrame(SMFIC.BODY, c.chunk);
    case 'eob':
      return encodeFrame(SMFIC.BODYEOB, c.chunk);
    case 'abort':
      return encodeFrame(SMFIC.ABORT);
    case 'quit':
      return encodeFrame(SMFIC.QUIT);
    case 'quit_nc':
      return encodeFrame(SMFIC.QUIT_NC);
    case 'unknown':
      return encodeFrame(SMFIC.UNKNOWN, z(c.line));
  }
}

// ---------------------------------------------------------------------------------------------
// Replies (milter → MTA)

/** Macro names the milter asks for, per stage (SMFIM_*: 0 connect … 5 eom, 6 eoh). */
export interface SymList {
  stage: number;
  names: string;
}

export type SimpleReplyType = 'continue' | 'accept' | 'reject' | 'tempfail' | 'discard' | 'shutdown' | 'conn_fail' | 'skip' | 'progress';

export type MilterReply =
  | { type: SimpleReplyType }
  | { type: 'optneg'; version: number; actions: number; protocol: number; symlists?: SymList[] }
  /** Complete reply text "4xx x.y.z text" (see formatReplyCode). */
  | { type: 'replycode'; text: string }
  | { type: 'addheader'; name: string; value: string }
  | { type: 'insheader'; index: number; name: string; value: string }
  | { type: 'chgheader'; index: number; name: string; value: string }
  | { type: 'replbody'; chunk: Buffer }
  | { type: 'addrcpt'; rcpt: string }
  | { type: 'delrcpt'; rcpt: string }
  | { type: 'addrcpt_par'; rcpt: string; args: string[] }
  | { type: 'chgfrom'; from: string; args: string[] }
  | { type: 'quarantine'; reason: string };

const SIMPLE: Record<SimpleReplyType, number> = {
  continue: SMFIR.CONTINUE, accept: SMFIR.ACCEPT, reject: SMFIR.REJECT, tempfail: SMFIR.TEMPFAIL, discard: SMFIR.DISCARD,
  shutdown: SMFIR.SHUTDOWN, conn_fail: SMFIR.CONN_FAIL, skip: SMFIR.SKIP, progress: SMFIR.PROGRESS,
};
const SIMPLE_BY_BYTE = new Map(Object.entries(SIMPLE).map(([k, v]) => [v, k as SimpleReplyType]));

/** Replies that end the MTA's wait for one event (everything else is an edit or PROGRESS). */
export const FINAL_REPLIES: ReadonlySet<MilterReply['type']> = new Set(['continue', 'accept', 'reject', 'tempfail', 'discard', 'shutdown', 'conn_fail', 'skip', 'replycode']);

function noNul(s: string, what: string): string {
  if (s.includes('\0')) throw new MilterProtocolError(`${what} contains a NUL byte`);
  return s;
}

function index(n: number): Buffer {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new MilterProtocolError(`header index ${n} is not a 32-bit unsigned integer`);
  return u32(n);
}

export function encodeReply(r: MilterReply): Buffer {
  switch (r.type) {
    case 'optneg': {
      const lists = (r.symlists ?? []).map((s) => Buffer.concat([u32(s.stage), z(noNul(s.names, 'macro list'))]));
      return encodeFrame(SMFIR.OPTNEG, Buffer.concat([u32(r.version), u32(r.actions), u32(r.protocol), ...lists]));
    }
    case 'replycode':
      return encodeFrame(SMFIR.REPLYCODE, z(noNul(r.text, 'reply text')));
    case 'addheader':
      return encodeFrame(SMFIR.ADDHEADER, Buffer.concat([z(noNul(r.name, 'header name')), z(noNul(r.value, 'header value'))]));
    case 'insheader':
      return encodeFrame(SMFIR.INSHEADER, Buffer.concat([index(r.index), z(noNul(r.name, 'header name')), z(noNul(r.value, 'header value'))]));
    case 'chgheader':
      return encodeFrame(SMFIR.CHGHEADER, Buffer.concat([index(r.index), z(noNul(r.name, 'header name')), z(noNul(r.value, 'header value'))]));
    case 'replbody':
      if (r.chunk.length > MAX_DATA) throw new MilterProtocolError(`body chunk of ${r.chunk.length} bytes is larger than ${MAX_DATA}`);
      return encodeFrame(SMFIR.REPLBODY, r.chunk);
    case 'addrcpt':
      return encodeFrame(SMFIR.ADDRCPT, z(noNul(r.rcpt, 'recipient')));
    case 'delrcpt':
      return encodeFrame(SMFIR.DELRCPT, z(noNul(r.rcpt, 'recipient')));
    case 'addrcpt_par':
      return encodeFrame(SMFIR.ADDRCPT_PAR, Buffer.concat([z(noNul(r.rcpt, 'recipient')), ...r.args.map((a) => z(noNul(a, 'argument')))]));
    case 'chgfrom':
      return encodeFrame(SMFIR.CHGFROM, Buffer.concat([z(noNul(r.from, 'sender')), ...r.args.map((a) => z(noNul(a, 'argument')))]));
    case 'quarantine':
      return encodeFrame(SMFIR.QUARANTINE, z(noNul(r.reason, 'quarantine reason')));
    default:
      return encodeFrame(SIMPLE[r.type]);
  }
}

/** The typed reply in a frame (the MTA side: fake MTA, benchmark). Throws MilterProtocolError when malformed. */
export function decodeReply(frame: Frame): MilterReply {
  const d = frame.data;
  const simple = SIMPLE_BY_BYTE.get(frame.cmd);
  if (simple) {
    if (d.length) throw new MilterProtocolError(`reply ${cmdName(frame.cmd)} was followed by ${d.length} data bytes`);
    return { type: simple };
  }
  const strings = () => splitStrings(d);
  const withIndex = (what: string) => {
    if (d.length < 5) throw new MilterProtocolError(`${what}: truncated`);
    const [name = '', value = ''] = splitStrings(d.subarray(4));
    return { index: d.readUInt32BE(0), name, value };
  };
  switch (frame.cmd) {
    case SMFIR.OPTNEG: {
      if (d.length < 12) throw new MilterProtocolError(`option negotiation reply: ${d.length} data bytes, expected at least 12`);
      const symlists: SymList[] = [];
      let i = 12;
      while (i + 4 < d.length) {
        const stage = d.readUInt32BE(i);
        const nul = d.indexOf(0, i + 4);
        const end = nul < 0 ? d.length : nul;
        symlists.push({ stage, names: str(d.subarray(i + 4, end)) });
        i = end + 1;
      }
      return { type: 'optneg', version: d.readUInt32BE(0), actions: d.readUInt32BE(4), protocol: d.readUInt32BE(8), ...(symlists.length ? { symlists } : {}) };
    }
    case SMFIR.REPLYCODE:
      return { type: 'replycode', text: oneString(d, 'reply code') };
    case SMFIR.ADDHEADER: {
      const [name = '', value = ''] = strings();
      return { type: 'addheader', name, value };
    }
    case SMFIR.INSHEADER:
      return { type: 'insheader', ...withIndex('insert header') };
    case SMFIR.CHGHEADER:
      return { type: 'chgheader', ...withIndex('change header') };
    case SMFIR.REPLBODY:
      return { type: 'replbody', chunk: d };
    case SMFIR.ADDRCPT:
      return { type: 'addrcpt', rcpt: oneString(d, 'add recipient') };
    case SMFIR.DELRCPT:
      return { type: 'delrcpt', rcpt: oneString(d, 'delete recipient') };
    case SMFIR.ADDRCPT_PAR: {
      const [rcpt = '', ...args] = strings();
      return { type: 'addrcpt_par', rcpt, args };
    }
    case SMFIR.CHGFROM: {
      const [from = '', ...args] = strings();
      return { type: 'chgfrom', from, args };
    }
    case SMFIR.QUARANTINE:
      return { type: 'quarantine', reason: oneString(d, 'quarantine') };
    default:
      throw new MilterProtocolError(`unknown reply ${cmdName(frame.cmd)} (${d.length} data bytes)`);
  }
}

/**
 * The text of an SMFIR_REPLYCODE: "4xx x.y.z text", continuation lines joined with CRLF and "ddd-".
 * Rules (Sendmail formats the text, Postfix ≥ 3.12 validates it): code 4xx or 5xx, status class equal
 * to the code's first digit, no CR, LF or NUL inside a line, "%" doubled.
 */
export function formatReplyCode(code: number, status: string | undefined, lines: string | string[]): string {
  if (!Number.isInteger(code) || code < 400 || code > 599) throw new MilterProtocolError(`reply code ${code} is not 4xx or 5xx`);
  if (status !== undefined) {
    if (!/^[45]\.\d{1,3}\.\d{1,3}$/.test(status)) throw new MilterProtocolError(`enhanced status "${status}" is not x.y.z`);
    if (status[0] !== String(code)[0]) throw new MilterProtocolError(`enhanced status ${status} does not match reply code ${code}`);
  }
  const list = typeof lines === 'string' ? [lines] : lines;
  if (list.length === 0) throw new MilterProtocolError('reply text is empty');
  for (const l of list) if (/[\r\n\0]/.test(l)) throw new MilterProtocolError('reply text contains CR, LF or NUL');
  return list
    .map((l, i) => `${code}${i < list.length - 1 ? '-' : ' '}${status ? `${status} ` : ''}${l.replace(/%/g, '%%')}`)
    .join('\r\n');
}
