// The decision for one message: which recipients get which body.
// In: the envelope, the spooled bytes and the cheap scan. Out: delivery groups — recipients that
// share a footer link share one rewritten body; recipients without a footer get the original.
// Steps: cheap scan → structure pass → classify hooks → link hook per recipient → footer hook →
// rewrite. Fails: never throws; any error becomes "everyone gets the original bytes" with the
// reason in `decision` and one message.passthrough log line.

import type { Config } from './config.js';
import { chooseTargets, hasMarker, MARKER_HEADER, rewriteChunks } from './footer-insert.js';
import type { HookRegistry } from './hooks.js';
import type { LogFn } from './log.js';
import { analyzeMessage } from './mime-structure.js';
import { Spool, type SpoolReader } from './spool.js';
import { REPLIES } from './replies.js';
import type { Classification, Envelope, LinkResolution, MessageStructure, Recipient, Reply } from './types.js';
import type { ScanResult } from './candidate-scan.js';

export interface DeliveryGroup {
  recipients: Recipient[];
  /** null: the original bytes. */
  body: Spool | null;
  url: string | null;
  /** Set when these recipients must not be relayed now (override store down, policy tempfail). */
  defer?: Reply;
}

export interface DeliveryPlan {
  groups: DeliveryGroup[];
  /** One short phrase for the log: why the message changed or not. */
  decision: string;
  classification?: Classification;
  resolutions?: LinkResolution[];
  /** For explain: the chosen body parts. */
  targets?: { plain: number | null; html: number | null; wrap: boolean; reason: string };
  structure?: MessageStructure;
}

interface PlanDeps {
  config: Config;
  log: LogFn;
  hooks: HookRegistry;
}

const original = (envelope: Envelope, decision: string, extra: Partial<DeliveryPlan> = {}): DeliveryPlan => ({
  groups: [{ recipients: envelope.to, body: null, url: null }],
  decision,
  ...extra,
});

export async function planDelivery(deps: PlanDeps, envelope: Envelope, spool: SpoolReader, scan: ScanResult, id: string): Promise<DeliveryPlan> {
  if (!scan.candidate) return original(envelope, 'not calendar-related (scan)');
  const made: Spool[] = [];
  try {
    return await decide(deps, envelope, spool, made);
  } catch (err) {
    for (const s of made) await s.dispose().catch(() => undefined);
    // a hook may throw anything (null, a string): reading `.message` of it must not reject the plan
    const why = err instanceof Error ? err.message : `a hook threw ${String(err)}`;
    deps.log('message.passthrough', { id, reason: why });
    return original(envelope, `unchanged after error: ${why}`);
  }
}

async function decide(deps: PlanDeps, envelope: Envelope, spool: SpoolReader, made: Spool[]): Promise<DeliveryPlan> {
  const { structure, headers } = await analyzeMessage(spool);
  if (structure.damaged) return original(envelope, 'MIME structure damaged', { structure });
  if (hasMarker(headers)) return original(envelope, `already carries ${MARKER_HEADER}`, { structure });

  const classification = await classify(deps.hooks, structure, headers);
  if (!classification.footer) return original(envelope, classification.reason, { classification, structure });

  const targets = chooseTargets(structure, classification);
  if (targets.plain === null && targets.html === null && !targets.wrap) {
    return original(envelope, `no body part to carry a footer: ${targets.reason}`, { classification, targets, structure });
  }

  const messageId = headerValue(headers, 'message-id')?.replace(/^\s*<|>\s*$/g, '') ?? null;
  const resolutions = await deps.hooks.first('message:links', { classification, envelope, messageId, structure, headers });
  if (!Array.isArray(resolutions) || resolutions.length !== envelope.to.length) throw new Error('link hook gave no resolution per recipient');
  // Matched by position: one answered for another recipient (another order) would hand out that one's link.
  envelope.to.forEach((r, i) => {
    if (resolutions[i]?.recipient !== r.address) throw new Error(`link hook answered for another recipient at position ${i + 1}`);
  });

  // One body per distinct link: no recipient ever receives another recipient's link.
  const byUrl = new Map<string | null, Recipient[]>();
  const deferred: Recipient[] = [];
  envelope.to.forEach((r, i) => {
    if (resolutions[i]!.source === 'tempfail') return void deferred.push(r);
    const url = resolutions[i]!.url;
    const list = byUrl.get(url) ?? [];
    list.push(r);
    byUrl.set(url, list);
  });

  const groups: DeliveryGroup[] = [];
  // The rewritten copies share one memory budget (spool_memory_limit), the rest spills to files: with
  // {recipient} or {token} every recipient has a copy of their own, and 1000 copies of up to
  // spool_memory_limit each would hold a thousand times what one connection may cost.
  const copies = [...byUrl.keys()].filter((u) => u !== null).length;
  const memoryLimit = Math.floor(deps.config.spool_memory_limit / Math.max(1, copies));
  if (deferred.length) groups.push({ recipients: deferred, body: null, url: null, defer: { ...REPLIES.storeDown } });
  for (const [url, recipients] of byUrl) {
    if (url === null) {
      groups.push({ recipients, body: null, url: null });
      continue;
    }
    const link = resolutions[envelope.to.indexOf(recipients[0]!)]!;
    const footer = await deps.hooks.first('message:footer', { classification, calendar: classification.calendar, link: { ...link, url } });
    if (!footer) throw new Error('footer hook gave no footer');
    const out = new Spool({ memoryLimit, dir: deps.config.spool_dir || undefined });
    made.push(out);
    const bytes = await rewriteChunks(spool, structure, targets, footer, { markerHeader: `${MARKER_HEADER}: added` });
    // in memory: the Buffers at once (a spool keeps writes in order); else read and written chunk by chunk
    if (Array.isArray(bytes)) await Promise.all(bytes.map((chunk) => out.write(chunk)));
    else for await (const chunk of bytes) await out.write(chunk);
    await out.finish();
    groups.push({ recipients, body: out, url });
  }
  const footers = groups.filter((g) => g.url).length;
  const held = `${deferred.length} recipient${deferred.length === 1 ? '' : 's'}`;
  const decision = footers > 0 ? `footer added (${footers} link${footers === 1 ? '' : 's'})${deferred.length ? `; ${held} deferred: the override store did not answer` : ''}`
    : deferred.length ? `deferred: the override store did not answer (${held})`
    : `no footer: ${whyNoLink(resolutions)}`;
  return { groups, decision, classification, resolutions, targets, structure };
}

const WHY_NO_LINK: Record<string, string> = {
  site: 'no web calendar server',
  external: 'not in local_domains',
  off: 'turned off by an override',
  fallback: 'override store unavailable (redis_fallback)',
  error: 'the link could not be built',
};

/** Why no recipient got a link, from the sources of their resolutions (each reason once). */
function whyNoLink(resolutions: LinkResolution[]): string {
  const reasons = [...new Set(resolutions.map((r) => WHY_NO_LINK[r.source] ?? r.source))];
  if (reasons.length === 1 && reasons[0] === WHY_NO_LINK.site) return 'no web calendar server for any recipient';
  return reasons.join('; ');
}

/** Every classifier runs; the first that wants a footer wins, else the first that recognised something. */
export async function classify(hooks: HookRegistry, structure: MessageStructure, headers: Array<[string, string]>): Promise<Classification> {
  const results = (await hooks.all('message:classify', { structure, headers })).filter((c): c is Classification => c !== null);
  return (
    results.find((c) => c.footer) ??
    results.find((c) => c.kind !== 'none') ??
    results[0] ?? {
      kind: 'none', method: null, tnefClass: null, source: null, calendarPart: null, calendar: null, footer: false,
      reason: 'no calendar data, TNEF class or custom-form header found',
    }
  );
}

function headerValue(headers: Array<[string, string]>, key: string): string | null {
  return headers.find(([k]) => k === key)?.[1] ?? null;
}
