// Settings of the built-in web view (snapshots, tokens, the `web` server, RSVP), registered into the
// config table at module load, and their checked, typed form.
// In: a loaded Config. Out: WebSettings with the key material decoded.
// Fails: webSettings() throws ConfigError naming the setting when a required key is missing, short
// (< 32 bytes) or malformed — there is no empty or default key, ever. Nothing here is secret-logging.

import { ConfigError, registerConfigKeys, type Config } from './config.js';
import { parseSecret } from './token.js';

const noControl = (v: string): string | null => (/[\x00-\x1f\x7f]/.test(v) ? 'control characters are not allowed' : null);
const hostPort = (v: string): string | null =>
  /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/.test(v) ? null : 'expected HOST:PORT';
const baseUrl = (v: string): string | null =>
  /^https?:\/\/[A-Za-z0-9.-]+(:\d{1,5})?$|^https?:\/\/\[[0-9a-fA-F:.]+\](:\d{1,5})?$/.test(v.replace(/\/+$/, '')) ? null : 'expected http(s)://HOST[:PORT] without a path';
const keyItem = (v: string): string | null => (/^\d{1,3}=\S+$/.test(v) && Number(v.split('=')[0]) <= 255 ? null : 'expected KID=KEY with KID 0-255');

registerConfigKeys({
  web_view: { kind: 'bool', default: false, doc: 'filter: store a snapshot per footer recipient and link to the built-in web view (needs the web_* keys)' },
  web_listen: { kind: 'string', default: '127.0.0.1:8081', check: hostPort, doc: '`web`: address the web view listens on (put a TLS proxy in front)' },
  web_base_url: { kind: 'string', default: '', check: baseUrl, doc: 'public origin of the web view, e.g. https://cal.example.org (required for web_view and `web`)' },
  web_token_keys: { kind: 'list', default: [], check: keyItem, doc: 'view-link MAC keys as KID=KEY (KID 0-255, KEY ≥ 32 bytes hex or base64); keep old kids until web_cap_days passed' },
  web_token_kid: { kind: 'int', default: 1, min: 0, max: 255, doc: 'kid of web_token_keys that signs new links' },
  web_rcpt_key: { kind: 'string', default: '', check: noControl, doc: 'key (≥ 32 bytes) for recipient pseudonyms and the stored recipient address; long-lived' },
  web_grace_days: { kind: 'int', default: 30, min: 1, max: 365, doc: 'snapshots live until the last occurrence plus this many days' },
  web_cap_days: { kind: 'int', default: 400, min: 7, max: 3650, doc: 'and never longer than this many days after receipt' },
  web_max_events: { kind: 'int', default: 500, min: 1, max: 100000, doc: 'events kept per recipient agenda (oldest dropped)' },
  web_store_timeout_ms: { kind: 'int', default: 50, min: 5, max: 5000, doc: 'time one message may spend storing snapshots; then no built-in link (mail is never delayed)' },
  web_default_tz: { kind: 'string', default: 'UTC', check: noControl, doc: 'time zone pages use when the viewer chose none (IANA name)' },
  web_default_locale: { kind: 'string', default: 'en', check: noControl, doc: 'locale for dates when the browser asks for none we know' },
  web_show_attendee_addresses: { kind: 'bool', default: false, doc: 'show attendee addresses on pages (default: names and statuses only)' },
  web_agenda_auth: { kind: 'enum', default: 'mail', values: ['mail', 'proxy', 'link'], doc: "agenda access: one-time sign-in link by mail, the proxy's user header, or the message link itself (forwarding risk)" },
  web_proxy_user_header: { kind: 'string', default: '', check: noControl, doc: 'web_agenda_auth=proxy: header carrying the signed-in address (trusted only from web_trusted_proxies)' },
  web_trusted_proxies: { kind: 'list', default: [], check: noControl, doc: 'peer addresses whose X-Forwarded-For and user header are believed' },
  rsvp_enabled: { kind: 'bool', default: true, doc: 'offer accept/tentative/decline on the web view' },
  rsvp_from_domains: { kind: 'list', default: [], check: noControl, doc: 'attendee domains the site may send REPLYs for (empty: local_domains)' },
  rsvp_smtp_url: { kind: 'string', default: 'smtp://127.0.0.1:25', check: (v) => (/^smtp:\/\/[^\s/]+\/?$/.test(v) ? null : 'expected smtp://HOST:PORT'), doc: 'MTA that submits (and DKIM-signs) REPLYs and sign-in mail; not the filter reinjection port' },
  rsvp_envelope_from: { kind: 'string', default: '', check: noControl, doc: 'MAIL FROM of REPLYs and sign-in mail (empty: calendar-bounces@<first local domain>)' },
  rsvp_sender: { kind: 'string', default: '', check: noControl, doc: 'Sender: header on REPLYs (empty: none)' },
});

export interface WebSettings {
  baseUrl: string;
  origin: string;
  /** kid → key bytes. */
  tokenKeys: Map<number, Buffer>;
  tokenKid: number;
  rcptKey: Buffer;
  graceDays: number;
  capDays: number;
  maxEvents: number;
  storeTimeoutMs: number;
  defaultTz: string;
  defaultLocale: string;
  showAddresses: boolean;
  agendaAuth: 'mail' | 'proxy' | 'link';
  proxyUserHeader: string;
  trustedProxies: string[];
  rsvp: { enabled: boolean; fromDomains: string[]; smtpUrl: string; envelopeFrom: string; sender: string };
  keyPrefix: string;
  redis: string;
}

function key(name: string, raw: string): Buffer {
  try {
    return parseSecret(raw);
  } catch (e) {
    throw new ConfigError(`${name}: ${(e as Error).message.replace(/^link_secret/, 'the key')}`);
  }
}

/** Checked web settings; throws ConfigError naming the first missing or bad key. */
export function webSettings(config: Config | Readonly<Record<string, unknown>>): WebSettings {
  const s = (k: string) => (typeof config[k] === 'string' ? (config[k] as string).trim() : '');
  const n = (k: string) => config[k] as number;
  const list = (k: string) => (Array.isArray(config[k]) ? (config[k] as string[]) : []);
  const base = s('web_base_url').replace(/\/+$/, '');
  if (!base) throw new ConfigError('web_base_url is not set: the web view needs its public origin, e.g. https://cal.example.org');
  const tokenKeys = new Map<number, Buffer>();
  for (const item of list('web_token_keys')) {
    const kid = Number(item.slice(0, item.indexOf('=')));
    if (tokenKeys.has(kid)) throw new ConfigError(`web_token_keys: kid ${kid} appears twice`);
    tokenKeys.set(kid, key(`web_token_keys (kid ${kid})`, item.slice(item.indexOf('=') + 1)));
  }
  if (tokenKeys.size === 0) throw new ConfigError('web_token_keys is empty: set at least one KID=KEY (e.g. 1=$(openssl rand -hex 32))');
  const kid = n('web_token_kid');
  if (!tokenKeys.has(kid)) throw new ConfigError(`web_token_kid ${kid} has no key in web_token_keys`);
  if (!s('web_rcpt_key')) throw new ConfigError('web_rcpt_key is not set: it keys recipient pseudonyms (e.g. $(openssl rand -hex 32))');
  const rcptKey = key('web_rcpt_key', s('web_rcpt_key'));
  const tz = s('web_default_tz') || 'UTC';
  try { new Intl.DateTimeFormat('en', { timeZone: tz }); } catch { throw new ConfigError(`web_default_tz: "${tz}" is not a time zone Intl knows`); }
  const local = list('local_domains').map((d) => d.replace(/^\./, '').toLowerCase());
  const from = list('rsvp_from_domains').map((d) => d.toLowerCase());
  return {
    baseUrl: base,
    origin: new URL(base).origin,
    tokenKeys,
    tokenKid: kid,
    rcptKey,
    graceDays: n('web_grace_days'),
    capDays: n('web_cap_days'),
    maxEvents: n('web_max_events'),
    storeTimeoutMs: n('web_store_timeout_ms'),
    defaultTz: tz,
    defaultLocale: s('web_default_locale') || 'en',
    showAddresses: config.web_show_attendee_addresses === true,
    agendaAuth: (s('web_agenda_auth') || 'mail') as WebSettings['agendaAuth'],
    proxyUserHeader: s('web_proxy_user_header').toLowerCase(),
    trustedProxies: list('web_trusted_proxies'),
    rsvp: {
      enabled: config.rsvp_enabled !== false,
      fromDomains: from.length ? from : local,
      smtpUrl: s('rsvp_smtp_url') || 'smtp://127.0.0.1:25',
      envelopeFrom: s('rsvp_envelope_from') || (local[0] ? `calendar-bounces@${local[0]}` : ''),
      sender: s('rsvp_sender'),
    },
    keyPrefix: `${s('redis_prefix') || 'calfilter:'}web:`,
    redis: s('redis'),
  };
}
