// One body for all recipients: the link policy of milter mode, as a wrapper around the hook registry.
// In: the app's hooks; per message, the links the link hook resolved for every envelope recipient.
// Out: the same resolutions when they all agree ("uniform"); otherwise one recipient-neutral link on
// web_server for everyone ("neutral") or no footer for anyone ("none"), so planDelivery (unchanged)
// makes exactly one body. `outcome` says which applied, for the log line and the counters.
// Why: a milter can replace the body only once, for every recipient, Bcc included: a personal link
// in it would show one recipient's identity to all the others. Fails: never throws on its own; a
// neutral link that cannot be built becomes "none" with the reason in `outcome.detail`.

import { HookRegistry, type HookHandlers, type HookName, type LinksInput } from './hooks.js';
import type { LinkPolicy } from './milter-config.js';
import type { LinkResolution } from './types.js';
import { buildLink } from './url-template.js';

export type PolicyApplied = 'uniform' | 'neutral' | 'none' | 'tempfail';

export interface PolicyOutcome {
  /** null: no link was asked for (not a footer message), or every recipient resolved to no footer. */
  applied: PolicyApplied | null;
  /** Distinct links (no footer counts as one) the recipients resolved to before the policy. */
  distinct: number;
  detail?: string;
}

export interface PolicySettings {
  policy: LinkPolicy;
  /** The site server (web_server); empty: no neutral link is possible. */
  webServer: string;
  neutralTemplate: string;
}

/** A per-message view of the app's registry whose `message:links` answer obeys the one-body policy. */
export class OneBodyHooks extends HookRegistry {
  outcome: PolicyOutcome = { applied: null, distinct: 0 };

  constructor(private readonly inner: HookRegistry, private readonly settings: PolicySettings) {
    super(1);
  }

  override on(): void {
    throw new Error('OneBodyHooks is a per-message view; register hooks on the app');
  }

  override has(name: HookName): boolean {
    return this.inner.has(name);
  }

  override all<N extends HookName>(name: N, input: Parameters<HookHandlers[N]>[0]): Promise<Array<Awaited<ReturnType<HookHandlers[N]>>>> {
    return this.inner.all(name, input);
  }

  override async first<N extends HookName>(name: N, input: Parameters<HookHandlers[N]>[0]): Promise<Awaited<ReturnType<HookHandlers[N]>> | null> {
    const answer = await this.inner.first(name, input);
    if (name !== 'message:links' || !Array.isArray(answer)) return answer;
    return this.apply(answer as LinkResolution[], input as LinksInput) as Awaited<ReturnType<HookHandlers[N]>>;
  }

  private apply(resolutions: LinkResolution[], input: LinksInput): LinkResolution[] {
    const urls = new Set(resolutions.map((r) => r.url));
    this.outcome = { applied: null, distinct: urls.size };
    // the store is down and some recipient needs it: planDelivery defers, the milter answers 451
    if (resolutions.some((r) => r.source === 'tempfail')) {
      this.outcome.applied = 'tempfail';
      return resolutions;
    }
    if (urls.size <= 1) {
      if (resolutions[0]?.url) this.outcome.applied = 'uniform';
      return resolutions;
    }
    const none = (detail: string): LinkResolution[] => {
      this.outcome = { applied: 'none', distinct: urls.size, detail };
      return resolutions.map((r) => ({ recipient: r.recipient, url: null, source: 'milter-policy', server: null }));
    };
    if (this.settings.policy === 'none') return none('milter_link_policy is none');
    if (!this.settings.webServer) return none('a recipient-neutral link needs web_server');
    const cal = input.classification.calendar;
    let url: string;
    try {
      url = buildLink(this.settings.neutralTemplate, {
        server: this.settings.webServer, messageId: input.messageId,
        uid: cal?.uid ?? null, recurrenceId: cal?.recurrenceId ?? null, sequence: cal?.sequence ?? null,
        method: input.classification.method ?? cal?.method ?? null,
      });
    } catch (err) {
      return none(`neutral link: ${(err as Error).message}`);
    }
    this.outcome = { applied: 'neutral', distinct: urls.size };
    return resolutions.map((r) => ({ recipient: r.recipient, url, source: 'neutral', server: this.settings.webServer }));
  }
}
