// Hook `link-resolve` on message:links: one LinkResolution per envelope recipient, in envelope order.
// In: the classification (calendar facts for the link), the envelope, the Message-ID; overrides from the
// store through the in-process cache. Order per recipient: recipient override → domain override → site
// default (web_server + url_template). Out: a link, or url null with the reason in `source`.
// Fails: never throws per message. Redis trouble → stale cache, else redis_fallback (source "fallback", or
// "tempfail" for the pipeline to answer 451); a link that cannot be built → no footer, source "error".

import type { App, HookModule, LinksInput } from '../lib/hooks.js';
import type { Config } from '../lib/config.js';
import type { LinkResolution } from '../lib/types.js';
import { overrideSettings, type RedisFallback } from '../lib/override-config.js';
import { normaliseDomain, recipientKeys, type KeyKind, type KeyOptions, type Override, type RecipientKeys } from '../lib/override-model.js';
import { openOverrideStore, type OverrideStore } from '../lib/override-store.js';
import { OverrideCache, type CacheLookup } from '../lib/override-cache.js';
import { buildLink, checkServer, checkTemplate } from '../lib/url-template.js';
import { mintToken, parseSecret } from '../lib/token.js';
import { webSettings } from '../lib/snapshot-config.js';
import { WebViewLinks } from '../lib/snapshot-ingest.js';

/** What explain and the log show beyond LinkResolution: which key decided, and whether it was stale. */
export interface LinkDecision extends LinkResolution {
  /** The override key that decided ("user@dom" or "@dom"), or null (site default, external, fallback). */
  key: string | null;
  /** True when the override came from the cache because Redis did not answer. */
  stale: boolean;
  /** Why a link could not be built (source "error") or why Redis was not asked (fallback). */
  detail?: string;
}

export interface ResolveSettings {
  webServer: string;
  urlTemplate: string;
  /** Normalised; ".example.org" matches its subdomains (not example.org itself: list both, as in Postfix). Empty: every recipient is local. */
  localDomains: string[];
  externalRecipients: boolean;
  keys: KeyOptions;
  token: { key: Buffer; keyId: string; ttlSeconds: number } | null;
}

/** Settings from the config; throws (stopping the start) on a bad site template, server or secret. */
export function resolveSettings(config: Readonly<Record<string, unknown>> | Config): ResolveSettings {
  const o = overrideSettings(config);
  const str = (k: string) => (typeof config[k] === 'string' ? (config[k] as string) : '');
  const secret = str('link_secret');
  const urlTemplate = str('url_template');
  const webServer = str('web_server').trim();
  const badTemplate = checkTemplate(urlTemplate, { token: secret !== '' });
  if (badTemplate) throw new Error(`url_template: ${badTemplate}`);
  const badServer = webServer ? checkServer(webServer) : null;
  if (badServer) throw new Error(`web_server: ${badServer}`);
  const domains = Array.isArray(config.local_domains) ? (config.local_domains as string[]) : [];
  return {
    webServer,
    urlTemplate,
    localDomains: domains.map((d) => {
      const sub = d.trim().startsWith('.');
      const n = normaliseDomain(d.trim().replace(/^\./, ''));
      if (!n) throw new Error(`local_domains: "${d}" is not a domain name`);
      return sub ? `.${n}` : n;
    }),
    externalRecipients: config.external_recipients === true,
    keys: { localPartCase: o.localPartCase, recipientDelimiter: o.recipientDelimiter },
    token: secret
      ? { key: parseSecret(secret), keyId: str('link_key_id') || 'k1', ttlSeconds: (typeof config.link_ttl_days === 'number' ? config.link_ttl_days : 400) * 86400 }
      : null,
  };
}

function isLocal(domain: string | null, s: ResolveSettings): boolean {
  if (s.localDomains.length === 0) return true;
  if (domain === null) return false;
  return s.localDomains.some((d) => (d.startsWith('.') ? domain.endsWith(d) : domain === d));
}

/** The link for one recipient from a server and template; never throws (a failure is source "error"). */
function link(recipient: string, server: string, template: string, input: LinksInput, s: ResolveSettings): { url: string | null; detail?: string } {
  const cal = input.classification.calendar;
  try {
    const token = s.token && template.includes('{token}')
      ? mintToken({ key: s.token.key, keyId: s.token.keyId, recipient, uid: cal?.uid ?? null, recurrenceId: cal?.recurrenceId ?? null, messageId: input.messageId, ttlSeconds: s.token.ttlSeconds })
      : null;
    const url = buildLink(template, {
      server, token, recipient, messageId: input.messageId,
      uid: cal?.uid ?? null, recurrenceId: cal?.recurrenceId ?? null, sequence: cal?.sequence ?? null,
      method: input.classification.method ?? cal?.method ?? null,
    });
    return { url };
  } catch (err) {
    return { url: null, detail: (err as Error).message };
  }
}

/**
 * Pure decision for one recipient, given what each lookup key answered (most specific first).
 * Exported for tests and for `explain`.
 */
export function decideLink(
  recipient: string,
  answers: Array<{ key: string; kind: KeyKind; result: CacheLookup }>,
  input: LinksInput,
  s: ResolveSettings,
): LinkDecision {
  return decide(recipient, recipientKeys(recipient, s.keys).domain, answers, input, s);
}

/** decideLink, with the recipient's normalised domain already known (resolveLinks has it from its keys). */
function decide(
  recipient: string,
  domain: string | null,
  answers: Array<{ key: string; kind: KeyKind; result: CacheLookup }>,
  input: LinksInput,
  s: ResolveSettings,
): LinkDecision {
  const rcpt = recipient.trim().replace(/^<(.*)>$/, '$1');
  if (!s.externalRecipients && !isLocal(domain, s)) return { recipient, url: null, source: 'external', server: null, key: null, stale: false };
  for (const { key, kind, result } of answers) {
    if (!result.ok) return fallback(recipient, rcpt, result.fallback, result.error, input, s);
    if (!result.value) continue;
    return fromOverride(recipient, rcpt, key, kind, result.value, result.stale, input, s);
  }
  return site(recipient, rcpt, 'site', input, s);
}

/** The site default (web_server + url_template) for one recipient; `source` names why it applies. */
function site(recipient: string, rcpt: string, source: string, input: LinksInput, s: ResolveSettings, detail?: string): LinkDecision {
  // No site server and a template that needs one: the site default is "no footer".
  if (!s.webServer && s.urlTemplate.includes('{server}')) return { recipient, url: null, source, server: null, key: null, stale: false, detail: detail ?? 'no web_server configured' };
  const l = link(rcpt, s.webServer, s.urlTemplate, input, s);
  return { recipient, url: l.url, source: l.url ? source : 'error', server: s.webServer || null, key: null, stale: false, detail: l.detail ?? detail };
}

function fallback(recipient: string, rcpt: string, mode: RedisFallback, error: string, input: LinksInput, s: ResolveSettings): LinkDecision {
  const detail = `override store unavailable: ${error}`;
  if (mode === 'site') return site(recipient, rcpt, 'fallback', input, s, detail);
  return { recipient, url: null, source: mode === 'tempfail' ? 'tempfail' : 'fallback', server: null, key: null, stale: false, detail };
}

function fromOverride(recipient: string, rcpt: string, key: string, kind: KeyKind, o: Override, stale: boolean, input: LinksInput, s: ResolveSettings): LinkDecision {
  if (o.off) return { recipient, url: null, source: 'off', server: null, key, stale };
  const server = o.server ?? s.webServer;
  const l = link(rcpt, server, o.urlTemplate ?? s.urlTemplate, input, s);
  return { recipient, url: l.url, source: l.url ? kind : 'error', server: server || null, key, stale, ...(l.detail ? { detail: l.detail } : {}) };
}

export type Lookup = (key: string) => Promise<CacheLookup>;
/** A lookup that may answer at once (OverrideCache.answer): a cached key needs no turn of the event loop. */
export type QuickLookup = (key: string) => CacheLookup | Promise<CacheLookup>;

/**
 * Lookups of one message that may wait for the store at the same time. Each is bounded by
 * redis_timeout_ms from the moment it is asked: thousands asked at once (1000 recipients, their
 * delimiter and domain keys) would all outlast it before the first answer was read, and a healthy
 * Redis would pass for a dead one (every recipient on the fallback, or 451 with tempfail).
 */
export const MAX_LOOKUPS_IN_FLIGHT = 64;

/** Every recipient of a message, in envelope order; each distinct key is looked up once, at most MAX_LOOKUPS_IN_FLIGHT at a time. */
export async function resolveLinks(input: LinksInput, lookup: Lookup, s: ResolveSettings): Promise<LinkDecision[]> {
  return resolveLinksNow(input, lookup, s);
}

/**
 * resolveLinks, answering at once (not in a promise) when every lookup did: the hook then returns
 * synchronously, and the registry needs no timer for it. The same lookups in the same order.
 * A recipient listed more than once is decided once: every copy of it gets the same decision.
 */
export function resolveLinksNow(input: LinksInput, lookup: QuickLookup, s: ResolveSettings): LinkDecision[] | Promise<LinkDecision[]> {
  const plans = new Map<string, { address: string; domain: string | null; asks: RecipientKeys['keys'] }>();
  for (const r of input.envelope.to) {
    if (plans.has(r.address)) continue;
    const rk = recipientKeys(r.address, s.keys);
    const asks = !s.externalRecipients && !isLocal(rk.domain, s) ? [] : rk.keys;
    plans.set(r.address, { address: r.address, domain: rk.domain, asks });
  }
  const answers = new Map<string, CacheLookup>();
  const keys: string[] = [];
  const asked = new Set<string>();
  for (const p of plans.values()) {
    for (const { key } of p.asks) {
      if (asked.has(key)) continue;
      asked.add(key);
      keys.push(key);
    }
  }
  // fields by name, not `{ ...k, result }`: that spread cost as much as the rest of a cached resolution
  const decideAll = () => {
    const decided = new Map<string, LinkDecision>();
    for (const p of plans.values()) {
      decided.set(p.address, decide(p.address, p.domain, p.asks.map(({ key, kind }) => ({ key, kind, result: answers.get(key) as CacheLookup })), input, s));
    }
    return input.envelope.to.map((r) => decided.get(r.address) as LinkDecision);
  };
  // Cached answers come at once and take no slot; at most MAX_LOOKUPS_IN_FLIGHT wait at a time, each
  // one that comes back asks the next key.
  const waits: Array<PromiseLike<void>> = [];
  let next = 0;
  while (next < keys.length && waits.length < MAX_LOOKUPS_IN_FLIGHT) {
    const key = keys[next++] as string;
    const a = lookup(key);
    if (isPending(a)) waits.push(a.then((r) => void answers.set(key, r)));
    else answers.set(key, a);
  }
  if (waits.length === 0) return decideAll();
  const more = async (): Promise<void> => {
    while (next < keys.length) {
      const key = keys[next++] as string;
      answers.set(key, await lookup(key));
    }
  };
  return Promise.all(waits.map((w) => w.then(more))).then(decideAll);
}

function isPending<T>(v: T | PromiseLike<T>): v is PromiseLike<T> {
  return typeof (v as PromiseLike<T>)?.then === 'function';
}

export interface LinkResolveState {
  store: OverrideStore;
  cache: OverrideCache;
  settings: ResolveSettings;
  /** The built-in web view's snapshot writer (web_view=true), else null. */
  webView?: WebViewLinks | null;
}

const STATES = new WeakMap<App, LinkResolveState>();

/** The store, cache and settings the hook uses in this app (for explain, tests, and the admin of a memory store). */
export function linkResolveState(app: App): LinkResolveState | undefined {
  return STATES.get(app);
}

/** Close the hook's store connection (Redis sockets would keep the process alive); call on shutdown. */
export async function closeLinkResolve(app: App): Promise<void> {
  const st = STATES.get(app);
  if (!st) return;
  STATES.delete(app);
  st.cache.close();
  await st.store.close();
  await st.webView?.close();
}

/** The web view's links: one snapshot per distinct recipient, shared by every copy of it in the envelope. */
async function viewLinks(webView: WebViewLinks, input: LinksInput, links: LinkDecision[]): Promise<LinkResolution[]> {
  const first = new Map<string, number>();
  const unique: LinkDecision[] = [];
  for (const d of links) {
    if (first.has(d.recipient)) continue;
    first.set(d.recipient, unique.length);
    unique.push(d);
  }
  if (unique.length === links.length) return webView.apply(input, links);
  const applied = await webView.apply(input, unique);
  return links.map((d) => applied[first.get(d.recipient) as number] as LinkResolution);
}

const linkResolve: HookModule = {
  name: 'link-resolve',
  async init(app: App): Promise<void> {
    const settings = resolveSettings(app.config);
    const o = overrideSettings(app.config);
    if (settings.localDomains.length === 0) {
      app.log('config.all_local', { note: 'local_domains is empty: every recipient counts as local and may get a footer' });
    }
    const store = openOverrideStore(o.redis, { keyPrefix: o.keyPrefix, timeoutMs: o.timeoutMs }, app.log);
    const cache = new OverrideCache(store, { ttlMs: o.cacheTtlMs, maxEntries: o.cacheSize, fallback: o.fallback }, app.log);
    // web_view: the site default becomes a link to the built-in view, with a snapshot per recipient.
    const webView = app.config.web_view === true ? new WebViewLinks(webSettings(app.config), app.log, app.config.dry_run === true) : null;
    STATES.set(app, { store, cache, settings, webView });
    // Give Redis a moment at start, so the first messages do not all meet the fallback; never block longer.
    const ready = await store.ready(1000);
    app.log('overrides.store', { store: store.description, ready, fallback: o.fallback });
    if (webView) app.log('webview.store', { store: webView.store.description, base_url: webSettings(app.config).baseUrl, ready: await webView.store.ready(1000) });
    const answer: QuickLookup = (k) => cache.answer(k);
    // No async function here: with every key cached the hook answers synchronously (see resolveLinksNow).
    app.hooks.on('message:links', 'link-resolve', (input) => {
      const links = resolveLinksNow(input, answer, settings);
      if (!webView) return links;
      return isPending(links) ? links.then((l) => viewLinks(webView, input, l)) : viewLinks(webView, input, links);
    });
  },
};

export default linkResolve;
