// Test helper: runs one mail through the filter's classification and the web view's snapshot writer,
// without SMTP. In: mail bytes, recipients, a store. Out: the per-recipient decisions (url = view link).
// Fails: like the filter: a store that is down leaves the decisions unchanged.

import { createApp } from '../../lib/app.js';
import { loadConfig, type Config } from '../../lib/config.js';
import { analyzeMessage } from '../../lib/mime-structure.js';
import { classify } from '../../lib/plan.js';
import { spoolFromBuffer } from '../../lib/spool.js';
import { webSettings, type WebSettings } from '../../lib/snapshot-config.js';
import { WebViewLinks } from '../../lib/snapshot-ingest.js';
import type { SnapshotStore } from '../../lib/snapshot-store.js';
import type { LinkResolution } from '../../lib/types.js';
import { TEST_KEYS } from './web-fixtures.js';

export function testSettings(flags: Record<string, unknown> = {}): { config: Config; settings: WebSettings } {
  const config = loadConfig({ flags: { web_base_url: 'http://127.0.0.1:8081', ...TEST_KEYS, local_domains: 'example.net', web_store_timeout_ms: 2000, ...flags } });
  return { config, settings: webSettings(config) };
}

export async function ingestMail(raw: Buffer, recipients: string[], store: SnapshotStore, settings: WebSettings, now = Date.now()): Promise<LinkResolution[]> {
  const app = await createApp(loadConfig({ flags: {} }), () => undefined);
  const { structure, headers } = await analyzeMessage(spoolFromBuffer(raw));
  const classification = await classify(app.hooks, structure, headers);
  const messageId = headers.find(([k]) => k === 'message-id')?.[1]?.replace(/^\s*<|>\s*$/g, '') ?? null;
  const links = new WebViewLinks(settings, () => undefined, false, store);
  const decisions = recipients.map((recipient) => ({ recipient, url: null, source: 'site', server: null }));
  return links.apply({ classification, envelope: { from: '', to: recipients.map((address) => ({ address })) }, messageId, structure, headers }, decisions, now);
}

/** The path /m/<token> of a decision's url. */
export function viewPath(d: LinkResolution | undefined): string {
  if (!d?.url) throw new Error(`no view link (source ${d?.source})`);
  return new URL(d.url).pathname;
}
