// The pipeline, top to bottom: receive → spool → classify → resolve links per recipient →
// rewrite → relay → reply. The listener (lib/server.ts) does the first two; this file the rest.
// In: a spooled Transaction. Out: the replies the MTA hears (one, or one per LMTP recipient).
// Fails: any failure while classifying, resolving or rewriting relays the original bytes
// unchanged and logs why (message.passthrough); relay failures are the next hop's own replies
// or 451 (lib/replies.ts). Nothing is ever answered 250 before the next hop said 250.

import type { Config } from './config.js';
import type { HookRegistry } from './hooks.js';
import type { LogFn } from './log.js';
import { planDelivery, type DeliveryGroup, type DeliveryPlan } from './plan.js';
import { relayMessage, type HopSessions } from './relay.js';
import { combineForSmtp, REPLIES } from './replies.js';
import type { Transaction } from './server.js';
import type { Envelope, Recipient, Reply } from './types.js';

export interface PipelineDeps {
  config: Config;
  log: LogFn;
  hooks: HookRegistry;
  /** The next hop, with its sessions kept for reuse. */
  hop: HopSessions;
  /** Optional observer (metrics); never affects replies. */
  observe?: (event: string, fields: Record<string, unknown>) => void;
}

export async function handleTransaction(deps: PipelineDeps, tx: Transaction): Promise<Reply[]> {
  const { config, log } = deps;
  const started = Date.now();
  // One bound for the whole message, however many bodies it goes out as: the MTA waits a fixed
  // time for the reply to "." (Postfix: smtp_data_done_timeout), and one that gives up may deliver twice.
  const deadline = started + config.next_hop_timeout * 1000;
  const plan = await planDelivery(deps, tx.envelope, tx.spool, tx.scan, tx.id);
  try {
    const replies = new Map<string, Reply>();
    let groups: DeliveryGroup[] = config.dry_run ? [{ recipients: tx.envelope.to, body: null, url: null }] : plan.groups;
    // An SMTP client hears one reply: defer the whole message rather than relay part of it.
    const deferral = groups.find((g) => g.defer)?.defer;
    if (deferral && !config.lmtp) groups = [{ recipients: tx.envelope.to, body: null, url: null, defer: deferral }];
    let response = '';
    for (const group of groups) {
      if (group.defer) {
        for (const r of group.recipients) replies.set(r.address, group.defer);
        continue;
      }
      for (const part of splitByDsn(group.recipients)) {
        const left = deadline - Date.now();
        if (left <= 0) {
          for (const r of part) replies.set(r.address, { ...REPLIES.hopTimeout });
          continue;
        }
        const body = group.body ?? tx.spool;
        // a small message goes as one Buffer: one write, no stream plumbing per chunk; a large one
        // streams from its file (opened again if the relay has to try a second connection)
        const bytes = body.inMemory ? body.buffer() : () => body.stream();
        const result = await relayMessage(deps.hop, { ...tx.envelope, to: part }, bytes, body.size, {
          totalTimeoutMs: left,
          signal: tx.signal,
        });
        for (const [addr, r] of result.recipients) replies.set(addr, r);
        response = result.response;
        deps.observe?.('relay', { ms: result.ms, reused: result.reused, code: Math.max(0, ...[...result.recipients.values()].map((r) => r.code)) });
      }
    }
    const perRecipient = tx.envelope.to.map((r) => replies.get(r.address) ?? { ...REPLIES.internal });
    const out = config.lmtp ? perRecipient : [combineForSmtp(perRecipient)];
    const accepted = perRecipient.filter((r) => r.code < 300).length;
    const event = accepted === perRecipient.length ? 'message.relayed' : accepted === 0 && out.every((r) => r.code >= 500) ? 'message.rejected' : 'message.deferred';
    // the outcome line's fields are only built when it is written (with log_level warn a relayed
    // message writes nothing: eighteen fields, two arrays and two strings per message for nothing)
    if (log.wants?.(event) !== false) log(event, {
      id: tx.id,
      queue_id: tx.xforward.IDENT,
      client: tx.xforward.ADDR ?? tx.client,
      from: tx.envelope.from,
      to: tx.envelope.to.map((r) => r.address),
      size: tx.spool.size,
      kind: plan.classification?.kind ?? 'none',
      method: plan.classification?.method ?? undefined,
      decision: plan.decision,
      dry_run: config.dry_run || undefined,
      // dry run: the plan was made in full, then the original went out; say what it would have changed
      would_change: config.dry_run ? plan.groups.some((g) => g.body !== null) : undefined,
      would_defer: config.dry_run ? plan.groups.find((g) => g.defer)?.defer?.code : undefined,
      links: plan.resolutions?.map((r) => ({ rcpt: r.recipient, source: r.source, server: r.server })),
      groups: groups.length,
      reply: out.length === 1 ? `${out[0]!.code} ${out[0]!.message}` : out.map((r) => r.code),
      next_hop: response.slice(0, 200),
      ms: Date.now() - started,
    });
    deps.observe?.(event, { kind: plan.classification?.kind ?? 'none', groups: groups.length, footers: plan.groups.filter((g) => g.url).length, dry_run: config.dry_run, ms: Date.now() - started });
    return out;
  } finally {
    if (plan.groups.some((g) => g.body)) await disposePlan(plan);
  }
}

export async function disposePlan(plan: DeliveryPlan): Promise<void> {
  for (const g of plan.groups) await g.body?.dispose().catch(() => undefined);
}

/**
 * nodemailer sends one NOTIFY/ORCPT for every RCPT of a transaction, so recipients with
 * different DSN parameters go in different transactions. An ORCPT that only repeats the
 * recipient's own address says nothing and does not split a group.
 */
export function splitByDsn(recipients: Recipient[]): Recipient[][] {
  if (recipients.every((r) => !r.notify && !r.orcpt)) return [recipients];
  const groups = new Map<string, Recipient[]>();
  for (const r of recipients) {
    const orcpt = r.orcpt && r.orcpt.toLowerCase() !== `rfc822;${r.address.toLowerCase()}` ? r.orcpt : '';
    const key = `${r.notify ?? ''}\n${orcpt}`;
    const list = groups.get(key) ?? [];
    list.push(orcpt ? r : { address: r.address, ...(r.notify ? { notify: r.notify } : {}) });
    groups.set(key, list);
  }
  return [...groups.values()];
}

export type { Envelope };
