// One milter connection: negotiation, then any number of messages, each rebuilt and run through planDelivery.
// In: frames from the MTA (through push()); the app's hooks and config. Out: replies through the wire:
// the negotiation, CONTINUE/ACCEPT for the steps that want a reply, and at end of message either
// CONTINUE alone, or every REPLBODY packet, then the header edits, then the marker, then CONTINUE.
// Fails: a malformed packet closes the connection (milter.protocol_error; the MTA applies its
// default_action). Anything else that goes wrong with a message (spool, hooks, deadline) answers
// 451 for that message before any edit was sent (milter.tempfail); the connection stays usable.

import type { Config } from './config.js';
import type { HookRegistry } from './hooks.js';
import type { LogFn } from './log.js';
import { createScanner, type Scanner } from './candidate-scan.js';
import {
  decodeCommand, encodeReply, formatReplyCode, FrameDecoder, MilterProtocolError, SMFIF, SMFIP, V1_ACTIONS, V1_PROTOCOL,
  type Frame, type MilterCommand, type MilterReply,
} from './milter-codec.js';
import type { MilterSettings } from './milter-config.js';
import { computeEdits, earlyVerdict, rebuildHeaders, type HeaderField, type MilterEdits } from './milter-edits.js';
import { OneBodyHooks, type PolicyOutcome } from './milter-policy.js';
import { planDelivery, type DeliveryPlan } from './plan.js';
import { REPLIES } from './replies.js';
import { Spool, type SpoolReader } from './spool.js';
import type { Envelope, Recipient, Reply } from './types.js';

/** The socket side, so tests can drive a session without one. */
export interface SessionWire {
  /** Write one whole frame; resolves once the socket takes more (backpressure); never rejects. */
  write(frame: Buffer): Promise<void>;
  /** Close after what was written (QUIT). */
  end(): void;
  /** Close now (protocol error). */
  destroy(): void;
}

export type MessageResult = 'changed' | 'unchanged' | 'early' | 'tempfail';

export interface SessionDeps {
  config: Config;
  settings: MilterSettings;
  log: LogFn;
  hooks: HookRegistry;
  nextId(): string;
  /** One call per message that reached a decision (counters); never affects replies. */
  count(result: MessageResult, policy: PolicyOutcome['applied']): void;
}

/** What we ask for: add the marker, change a wrapped message's Content-Type, replace the body. */
const WANT_ACTIONS = SMFIF.ADDHDRS | SMFIF.CHGHDRS | SMFIF.CHGBODY;
/**
 * Steps we skip (HELO, unknown commands), and with milter_no_reply the steps we do not answer before
 * end of headers (no DATA either: its macros would still come, alone). Over TCP the MTA's writes
 * that get no reply wait for our delayed ACK behind its Nagle algorithm: about 40 ms per message on
 * Linux, measured with Postfix 3.7 (README, "Milter mode"). So no-reply is the default on Unix
 * sockets only. End of headers and body chunks are always answered: ACCEPT there ends a transfer early.
 */
const WANT_PROTOCOL = SMFIP.NOHELO | SMFIP.NOUNKNOWN | SMFIP.HDR_LEADSPC;
const NO_REPLY_PROTOCOL = WANT_PROTOCOL | SMFIP.NODATA | SMFIP.NR_CONN | SMFIP.NR_MAIL | SMFIP.NR_RCPT | SMFIP.NR_HDR;
/** When the MTA cannot let us edit: ask for as little as possible and pass everything. */
const IDLE_PROTOCOL = SMFIP.NOCONNECT | SMFIP.NOHELO | SMFIP.NOMAIL | SMFIP.NORCPT | SMFIP.NOBODY | SMFIP.NOHDRS | SMFIP.NOEOH | SMFIP.NODATA | SMFIP.NOUNKNOWN;

/** Macro stages in protocol order: a macro packet for a stage is cleared when an earlier event comes. */
const STAGE_LEVEL: Record<string, number> = { C: 0, H: 1, M: 2, R: 3, T: 4, L: 5, N: 5, B: 6, E: 6 };

const CRLF = Buffer.from('\r\n');
const PROGRESS = encodeReply({ type: 'progress' });
const CONTINUE = encodeReply({ type: 'continue' });
const ACCEPT = encodeReply({ type: 'accept' });

interface Tx {
  id: string;
  started: number;
  envelope: Envelope;
  fields: HeaderField[];
  headerBytes: number;
  spool: Spool;
  scanner: Scanner;
  bodyBytes: number;
  headersWritten: boolean;
  /** Set once the message is decided early (accepted) or logged; later events only get CONTINUE. */
  done: boolean;
  failed: Error | null;
}

type Decision =
  | { kind: 'unchanged'; decision: string; plan: DeliveryPlan | null; wouldChange?: boolean }
  | { kind: 'edit'; decision: string; plan: DeliveryPlan; body: SpoolReader; edits: MilterEdits }
  | { kind: 'tempfail'; decision: string; plan: DeliveryPlan | null; reply: Reply };

class DeadlineError extends Error {}

export class MilterSession {
  private readonly decoder = new FrameDecoder();
  private chain: Promise<void> = Promise.resolve();
  private neg: { version: number; actions: number; protocol: number; idle: boolean } | null = null;
  private macros = new Map<string, Map<string, string>>();
  private client: { host: string; address: string | null } | null = null;
  private tx: Tx | null = null;
  private closed = false;
  /** True while an end of message is being worked on (shutdown waits for it). */
  busy = false;

  constructor(private readonly wire: SessionWire, private readonly deps: SessionDeps, private readonly peer: string) {}

  /** Bytes from the socket, in any chunking. */
  push(chunk: Buffer): void {
    if (this.closed) return;
    let frames: Frame[];
    try {
      frames = this.decoder.push(chunk);
    } catch (err) {
      this.fail(err as Error);
      return;
    }
    for (const f of frames) {
      this.chain = this.chain.then(() => (this.closed ? undefined : this.handle(f))).catch((err: Error) => this.fail(err));
    }
  }

  /** The socket closed (or errored): drop the message in progress; an end of message in progress finishes and discards. */
  closedByPeer(): void {
    if (this.closed) return;
    this.closed = true;
    this.dropAfterCurrent();
  }

  /** Frames still queued are skipped (closed); the spool goes once the frame being handled is done with it. */
  private dropAfterCurrent(): void {
    this.chain = this.chain.then(() => this.dropTx(), () => this.dropTx());
  }

  private fail(err: Error): void {
    if (this.closed) return;
    const protocol = err instanceof MilterProtocolError;
    this.deps.log(protocol ? 'milter.protocol_error' : 'milter.error', { client: this.peer, error: err.message, tx: this.tx?.id });
    this.closed = true;
    this.wire.destroy();
    this.dropAfterCurrent();
  }

  private send(frame: Buffer): Promise<void> {
    return this.closed ? Promise.resolve() : this.wire.write(frame);
  }

  private reply(r: MilterReply): Promise<void> {
    return this.send(encodeReply(r));
  }

  /** CONTINUE unless the step was negotiated as "no reply". */
  private ack(noReplyFlag: number): Promise<void> {
    if (this.neg && this.neg.protocol & noReplyFlag) return Promise.resolve();
    return this.send(CONTINUE);
  }

  private get leadspc(): boolean {
    return Boolean(this.neg && this.neg.protocol & SMFIP.HDR_LEADSPC);
  }

  private async handle(frame: Frame): Promise<void> {
    const c = decodeCommand(frame);
    if (!this.neg && c.type !== 'optneg') throw new MilterProtocolError(`${c.type} before option negotiation`);
    if (c.type !== 'macro') this.clearMacrosAfter(c);
    switch (c.type) {
      case 'optneg':
        return this.negotiate(c);
      case 'macro': {
        const stage = String.fromCharCode(c.stage);
        this.macros.set(stage, new Map(c.macros));
        return;
      }
      case 'connect':
        await this.dropTx();
        this.client = { host: c.hostname, address: c.address };
        return this.ack(SMFIP.NR_CONN);
      case 'helo':
        return this.ack(SMFIP.NR_HELO);
      case 'mail':
        await this.dropTx();
        this.tx = this.newTx(c.args);
        return this.ack(SMFIP.NR_MAIL);
      case 'rcpt':
        this.currentTx().envelope.to.push(recipient(c.args));
        return this.ack(SMFIP.NR_RCPT);
      case 'data':
        return this.ack(SMFIP.NR_DATA);
      case 'header': {
        const tx = this.currentTx();
        tx.headerBytes += c.name.length + c.value.length + 3;
        // out of order (after end of headers or a body chunk): the spooled copy no longer has every
        // field, and an edit computed from it would delete this one; the message gets 451 instead
        if (!tx.done && tx.headersWritten) tx.failed ??= new Error(`header ${c.name} after the end of the header block`);
        // past the limit nothing more is kept: end of headers accepts the message unchanged
        else if (!tx.done && !this.tooBig(tx)) tx.fields.push({ name: c.name, value: c.value });
        return this.ack(SMFIP.NR_HDR);
      }
      case 'eoh':
        return this.endOfHeaders(this.currentTx());
      case 'body':
        return this.body(this.currentTx(), c.chunk, true);
      case 'eob':
        return this.endOfMessage(this.currentTx(), c.chunk);
      case 'abort':
        return this.dropTx();
      case 'quit':
        await this.dropTx();
        this.closed = true;
        this.wire.end();
        return;
      case 'quit_nc':
        await this.dropTx();
        this.macros.clear();
        this.client = null;
        return;
      case 'unknown':
        return this.ack(SMFIP.NR_UNKN);
    }
  }

  private clearMacrosAfter(c: MilterCommand): void {
    const stage = { connect: 'C', helo: 'H', mail: 'M', rcpt: 'R', data: 'T', header: 'L', eoh: 'N', body: 'B', eob: 'E' }[c.type as string];
    if (!stage) return;
    const level = STAGE_LEVEL[stage]!;
    for (const k of [...this.macros.keys()]) if ((STAGE_LEVEL[k] ?? -1) > level) this.macros.delete(k);
  }

  private macro(name: string): string | undefined {
    for (const stage of ['E', 'B', 'N', 'L', 'T', 'R', 'M', 'H', 'C']) {
      const v = this.macros.get(stage)?.get(name);
      if (v !== undefined) return v;
    }
    return undefined;
  }

  private async negotiate(c: Extract<MilterCommand, { type: 'optneg' }>): Promise<void> {
    if (c.version < 2) throw new MilterProtocolError(`the MTA offers milter protocol version ${c.version}; 2 or later is needed`);
    const version = Math.min(6, c.version);
    const offeredActions = c.actions || V1_ACTIONS;
    const offeredProtocol = c.protocol || V1_PROTOCOL;
    const idle = (offeredActions & (SMFIF.ADDHDRS | SMFIF.CHGBODY)) !== (SMFIF.ADDHDRS | SMFIF.CHGBODY);
    const actions = idle ? 0 : WANT_ACTIONS & offeredActions;
    const protocol = (idle ? IDLE_PROTOCOL : this.deps.settings.noReply ? NO_REPLY_PROTOCOL : WANT_PROTOCOL) & offeredProtocol;
    this.neg = { version, actions, protocol, idle };
    this.deps.log(idle ? 'milter.degraded' : 'milter.negotiated', {
      client: this.peer, version, offered: { version: c.version, actions: hex(c.actions), protocol: hex(c.protocol) },
      actions: hex(actions), protocol: hex(protocol),
      ...(idle ? { note: 'the MTA does not allow adding a header and replacing the body: every message passes unchanged' } : {}),
    });
    await this.reply({ type: 'optneg', version, actions, protocol });
  }

  private newTx(mailArgs: string[]): Tx {
    const params = esmtpParams(mailArgs.slice(1));
    const envelope: Envelope = {
      from: address(mailArgs[0] ?? ''),
      to: [],
      body: typeof params.BODY === 'string' ? params.BODY.toUpperCase() : undefined,
      smtputf8: params.SMTPUTF8 !== undefined,
      ret: typeof params.RET === 'string' ? params.RET : undefined,
      envid: typeof params.ENVID === 'string' ? params.ENVID : undefined,
      size: typeof params.SIZE === 'string' && /^\d+$/.test(params.SIZE) ? Number(params.SIZE) : undefined,
    };
    return {
      id: this.deps.nextId(), started: Date.now(), envelope, fields: [], headerBytes: 0,
      spool: new Spool({ memoryLimit: this.deps.settings.spoolMemoryLimit, dir: this.deps.config.spool_dir || undefined }),
      scanner: createScanner(), bodyBytes: 0, headersWritten: false, done: false, failed: null,
    };
  }

  /** The message in progress; events without a MAIL first (a lenient MTA, a test tool) start one. */
  private currentTx(): Tx {
    this.tx ??= this.newTx(['<>']);
    return this.tx;
  }

  private async dropTx(): Promise<void> {
    const tx = this.tx;
    this.tx = null;
    if (tx) await tx.spool.dispose().catch(() => undefined);
  }

  private tooBig(tx: Tx): boolean {
    return tx.headerBytes + tx.bodyBytes > this.deps.settings.maxRewriteBytes;
  }

  /** Accept the message now: no more events for it, no edits. */
  private async acceptEarly(tx: Tx, why: string, stage: string): Promise<void> {
    tx.done = true;
    await tx.spool.dispose().catch(() => undefined);
    this.outcome(tx, 'milter.unchanged', 'early', null, { decision: why, stage });
    await this.send(ACCEPT);
  }

  private async endOfHeaders(tx: Tx): Promise<void> {
    // failed (a header out of order): no early verdict on an incomplete header block; 451 at the end
    if (tx.done || this.neg!.idle || tx.failed) return this.ack(SMFIP.NR_EOH);
    if (this.tooBig(tx)) return this.acceptEarly(tx, 'headers larger than milter_max_rewrite_bytes', 'eoh');
    const why = await earlyVerdict(tx.fields, this.leadspc).catch(() => null);
    if (why) return this.acceptEarly(tx, why, 'eoh');
    await this.writeHeaders(tx);
    return this.ack(SMFIP.NR_EOH);
  }

  private async writeHeaders(tx: Tx): Promise<void> {
    if (tx.headersWritten) return;
    tx.headersWritten = true;
    const block = Buffer.concat([rebuildHeaders(tx.fields, this.leadspc), CRLF]);
    tx.scanner.push(block);
    await tx.spool.write(block).catch((err: Error) => { tx.failed ??= err; });
  }

  private async body(tx: Tx, chunk: Buffer, replies: boolean): Promise<void> {
    if (!tx.done && !this.neg!.idle && !tx.failed) {
      tx.bodyBytes += chunk.length;
      if (this.tooBig(tx)) {
        if (replies && !(this.neg!.protocol & SMFIP.NR_BODY)) return this.acceptEarly(tx, 'larger than milter_max_rewrite_bytes', 'body');
        tx.done = true;
        await tx.spool.dispose().catch(() => undefined);
        this.outcome(tx, 'milter.unchanged', 'early', null, { decision: 'larger than milter_max_rewrite_bytes', stage: 'body' });
      } else {
        await this.writeHeaders(tx);
        tx.scanner.push(chunk);
        await tx.spool.write(chunk).catch((err: Error) => { tx.failed ??= err; });
      }
    }
    if (replies) return this.ack(SMFIP.NR_BODY);
  }

  private async endOfMessage(tx: Tx, last: Buffer): Promise<void> {
    if (last.length) await this.body(tx, last, false);
    if (tx.done || this.neg!.idle) {
      this.tx = null;
      await tx.spool.dispose().catch(() => undefined);
      return this.send(CONTINUE);
    }
    this.busy = true;
    this.deps.log('milter.eom', { id: tx.id, queue_id: this.macro('i'), size: tx.headerBytes + tx.bodyBytes });
    const policy = new OneBodyHooks(this.deps.hooks, {
      policy: this.deps.settings.linkPolicy,
      webServer: this.deps.config.web_server.trim(),
      neutralTemplate: this.deps.settings.neutralTemplate,
    });
    const progress = setInterval(() => void this.send(PROGRESS), this.deps.settings.progressMs);
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new DeadlineError(`end of message took longer than milter_timeout (${this.deps.settings.timeoutMs / 1000} s)`)), this.deps.settings.timeoutMs);
    });
    const work = this.decide(tx, policy);
    try {
      let decision: Decision;
      try {
        decision = await Promise.race([work, deadline]);
      } finally {
        clearInterval(progress);
        clearTimeout(timer);
      }
      await this.apply(tx, decision, policy.outcome);
    } catch (err) {
      // a late result of work that lost the race still holds spools
      work.then((d) => disposePlan(d.plan), () => undefined);
      await this.tempfail(tx, REPLIES.internal, (err as Error).message, policy.outcome);
    } finally {
      if (this.tx === tx) this.tx = null;
      // busy until the spilled message is gone: a stop waits for that (lib/milter-server.ts close)
      await tx.spool.dispose().catch(() => undefined);
      this.busy = false;
    }
  }

  private async decide(tx: Tx, hooks: OneBodyHooks): Promise<Decision> {
    await this.writeHeaders(tx);
    if (tx.failed) throw tx.failed;
    const reader = await tx.spool.finish();
    if (tx.envelope.to.length === 0) return { kind: 'unchanged', decision: 'no recipients', plan: null };
    const config = { ...this.deps.config, spool_memory_limit: this.deps.settings.spoolMemoryLimit } as Config;
    // planDelivery turns its own failures (a hook that throws or overruns, a rewrite or spool error)
    // into an unchanged pass-through and says so with message.passthrough: fine after queue, but here
    // it would accept a message we failed to process. The milter answers 451 instead.
    let failure: string | null = null;
    const log: LogFn = (event, fields) => {
      if (event === 'message.passthrough') failure ??= String(fields?.reason ?? 'unknown error');
      else this.deps.log(event, fields);
    };
    const plan = await planDelivery({ config, log, hooks }, tx.envelope, reader, tx.scanner.result(), tx.id);
    if (failure !== null) {
      await disposePlan(plan);
      throw new Error(`the pipeline failed: ${failure}`);
    }
    try {
      return await this.decideOnPlan(tx, plan);
    } catch (err) {
      // the caller only sees the error: the rewritten copy (maybe a file) goes here
      await disposePlan(plan);
      throw err;
    }
  }

  private async decideOnPlan(tx: Tx, plan: DeliveryPlan): Promise<Decision> {
    const defer = plan.groups.find((g) => g.defer)?.defer;
    if (defer) return { kind: 'tempfail', decision: plan.decision, plan, reply: defer };
    const bodies = plan.groups.filter((g) => g.body !== null);
    if (bodies.length === 0) return { kind: 'unchanged', decision: plan.decision, plan };
    if (bodies.length > 1 || bodies[0]!.recipients.length !== tx.envelope.to.length) {
      throw new Error(`one body for all recipients: the plan has ${bodies.length} bodies for ${tx.envelope.to.length} recipients`);
    }
    if (this.deps.config.dry_run) return { kind: 'unchanged', decision: plan.decision, plan, wouldChange: true };
    const body = bodies[0]!.body!;
    const edits = await computeEdits(tx.fields, this.leadspc, body);
    if (edits.headerEdits.length && !(this.neg!.actions & SMFIF.CHGHDRS)) {
      return { kind: 'unchanged', decision: 'the footer needs header changes, and the MTA does not offer SMFIF_CHGHDRS', plan };
    }
    return { kind: 'edit', decision: plan.decision, plan, body, edits };
  }

  private async apply(tx: Tx, d: Decision, policy: PolicyOutcome): Promise<void> {
    try {
      if (this.closed) return;
      if (d.kind === 'tempfail') return await this.tempfail(tx, d.reply, d.decision, policy, d.plan);
      if (d.kind === 'unchanged') {
        await this.send(CONTINUE);
        this.outcome(tx, 'milter.unchanged', 'unchanged', policy, { decision: d.decision, plan: d.plan, would_change: d.wouldChange });
        return;
      }
      const sent = await this.sendBody(d.body, d.edits.bodyStart);
      for (const e of d.edits.headerEdits) await this.reply(e);
      await this.reply({ type: 'addheader', name: d.edits.marker.name, value: d.edits.marker.value });
      await this.send(CONTINUE);
      this.outcome(tx, 'milter.changed', 'changed', policy, { decision: d.decision, plan: d.plan, body_bytes: sent, header_edits: d.edits.headerEdits.length });
    } finally {
      await disposePlan(d.plan);
    }
  }

  /** The new body as consecutive REPLBODY packets of milter_body_chunk bytes; nothing else in between. */
  private async sendBody(body: SpoolReader, start: number): Promise<number> {
    const size = this.deps.settings.bodyChunk;
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    let sent = 0;
    const flush = async (all: boolean) => {
      let buf = Buffer.concat(pending, pendingBytes);
      while (buf.length >= size || (all && buf.length > 0)) {
        const chunk = buf.subarray(0, Math.min(size, buf.length));
        await this.reply({ type: 'replbody', chunk });
        sent += chunk.length;
        buf = buf.subarray(chunk.length);
      }
      pending = buf.length ? [buf] : [];
      pendingBytes = buf.length;
    };
    for await (const c of body.stream(start)) {
      if (this.closed) throw new Error('the MTA closed the connection during the body replacement');
      pending.push(c as Buffer);
      pendingBytes += (c as Buffer).length;
      if (pendingBytes >= size) await flush(false);
    }
    await flush(true);
    return sent;
  }

  private async tempfail(tx: Tx, r: Reply, why: string, policy: PolicyOutcome, plan: DeliveryPlan | null = null): Promise<void> {
    await this.reply({ type: 'replycode', text: formatReplyCode(r.code, r.status, r.message) });
    this.outcome(tx, 'milter.tempfail', 'tempfail', policy, { decision: why, plan, reply: `${r.code} ${r.status ?? ''} ${r.message}`.replace(/ {2}/, ' ') });
  }

  /** The one log line per message, and its count. */
  private outcome(tx: Tx, event: string, result: MessageResult, policy: PolicyOutcome | null, f: Record<string, unknown> & { plan?: DeliveryPlan | null }): void {
    tx.done = true;
    const { plan, ...fields } = f;
    const applied = policy?.applied ?? null;
    this.deps.count(result, applied);
    this.deps.log(event, {
      id: tx.id,
      queue_id: this.macro('i') ?? null,
      client: this.client?.address ?? this.client?.host ?? this.peer,
      from: tx.envelope.from,
      to: tx.envelope.to.map((r) => r.address),
      size: tx.headerBytes + tx.bodyBytes,
      kind: plan?.classification?.kind ?? 'none',
      method: plan?.classification?.method ?? undefined,
      link_policy: applied ?? undefined,
      links: policy && policy.distinct > 1 ? policy.distinct : undefined,
      policy_detail: policy?.detail,
      dry_run: this.deps.config.dry_run || undefined,
      ...fields,
      ms: Date.now() - tx.started,
    });
  }
}

async function disposePlan(plan: DeliveryPlan | null): Promise<void> {
  for (const g of plan?.groups ?? []) await g.body?.dispose().catch(() => undefined);
}

const hex = (n: number) => `0x${n.toString(16)}`;

/** "<a@b>" → "a@b"; the protocol's byte strings read as UTF-8 (SMTPUTF8 addresses). */
function address(arg: string): string {
  const s = Buffer.from(arg, 'latin1').toString('utf8').trim();
  return s.replace(/^<(.*)>$/, '$1');
}

function esmtpParams(args: string[]): Record<string, string | true> {
  const out: Record<string, string | true> = {};
  for (const a of args) {
    const eq = a.indexOf('=');
    if (eq < 0) out[a.toUpperCase()] = true;
    else out[a.slice(0, eq).toUpperCase()] = Buffer.from(a.slice(eq + 1), 'latin1').toString('utf8');
  }
  return out;
}

function recipient(args: string[]): Recipient {
  const p = esmtpParams(args.slice(1));
  return {
    address: address(args[0] ?? ''),
    ...(typeof p.NOTIFY === 'string' ? { notify: p.NOTIFY } : {}),
    ...(typeof p.ORCPT === 'string' ? { orcpt: p.ORCPT } : {}),
  };
}
