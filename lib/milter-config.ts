// Settings of milter mode, registered into the config table (so flags, CALFILTER_* and files know them).
// In: the config table (registerConfigKeys at module load) and, later, a loaded Config.
// Out: typed MilterSettings, and parseMilterListen: `milter_listen` → a TCP address or a Unix socket path.
// Fails: a value out of bounds, a neutral template that could name a recipient, or a listen address that
// is not loopback or an absolute Unix socket path is a ConfigError at start (the protocol has no
// authentication, so nothing but this host may reach it).

import { ConfigError, registerConfigKeys, type Config } from './config.js';
import { isLoopbackAddress } from './net-allow.js';
import { checkTemplate } from './url-template.js';

const MiB = 1024 * 1024;

export type LinkPolicy = 'neutral' | 'none';

export const DEFAULT_NEUTRAL_TEMPLATE = 'https://{server}/calendar/event?uid={uid}&recurrence-id={recurrenceId}&sequence={sequence}&message-id={messageId}';

/** The one body every recipient sees must never name one of them. */
export function checkNeutralTemplate(v: string): string | null {
  if (/\{(recipient|token)\}/.test(v)) return 'a recipient-neutral link may not use {recipient} or {token} (a token names its recipient)';
  return checkTemplate(v, { token: false });
}

export type ListenAddress = { kind: 'tcp'; host: string; port: number } | { kind: 'unix'; path: string };

/** "HOST:PORT", "[v6]:PORT", "inet:PORT@HOST" (Sendmail's spelling) or "unix:/path" ("local:/path"). */
export function parseMilterListen(v: string): ListenAddress | string {
  const unix = /^(?:unix|local):(.+)$/.exec(v);
  if (unix) {
    const path = unix[1]!;
    if (!path.startsWith('/')) return 'a Unix socket path must be absolute (unix:/run/calendar-link-filter/milter.sock)';
    if (/[\x00-\x1f\x7f]/.test(path)) return 'control characters are not allowed in the socket path';
    return { kind: 'unix', path };
  }
  const sm = /^inet6?:(\d{1,5})@\[?([^\]]+)\]?$/.exec(v);
  const hp = sm ? { host: sm[2]!, port: sm[1]! } : (() => {
    const m = /^\[?([^\]]*?)\]?:(\d{1,5})$/.exec(v);
    return m ? { host: m[1]!, port: m[2]! } : null;
  })();
  if (!hp || !hp.host) return 'expected HOST:PORT or unix:/path';
  const port = Number(hp.port);
  if (port > 65535) return `port ${port} is out of range`;
  if (!isLoopbackAddress(hp.host) && hp.host !== 'localhost') {
    return `${hp.host} is not a loopback address: the milter protocol has no authentication, listen on 127.0.0.1, ::1 or a Unix socket`;
  }
  return { kind: 'tcp', host: hp.host === 'localhost' ? '127.0.0.1' : hp.host, port };
}

registerConfigKeys({
  milter_listen: {
    kind: 'string', default: '127.0.0.1:10027', check: (v) => { const r = parseMilterListen(v); return typeof r === 'string' ? r : null; },
    doc: 'milter mode: where the milter listens, loopback HOST:PORT or unix:/path (`milter --listen` sets it)',
  },
  milter_socket_mode: {
    kind: 'string', default: '0660', check: (v) => (/^0?[0-7]{3}$/.test(v) ? null : 'expected an octal mode such as 0660'),
    doc: 'milter mode: permissions of the Unix socket (the MTA user must be able to write to it)',
  },
  milter_link_policy: {
    kind: 'enum', default: 'neutral', values: ['neutral', 'none'],
    doc: 'milter mode, one body for all recipients: when their links differ, a recipient-neutral link (neutral) or no footer (none)',
  },
  milter_neutral_url_template: {
    kind: 'string', default: DEFAULT_NEUTRAL_TEMPLATE, check: checkNeutralTemplate,
    doc: 'milter mode: the recipient-neutral link on web_server (no {recipient}, no {token})',
  },
  milter_no_reply: {
    kind: 'enum', default: 'auto', values: ['auto', 'yes', 'no'],
    doc: 'milter mode: let the MTA skip waiting for replies before end of headers (auto: yes on a Unix socket, no on TCP, where it costs about 40 ms per message)',
  },
  milter_body_chunk: { kind: 'int', default: 65535, min: 1, max: 65535, doc: 'milter mode: bytes per body-replacement packet (miltertest needs 1000 or less)' },
  milter_progress_ms: { kind: 'int', default: 5000, min: 100, max: 60000, doc: 'milter mode: a progress reply this often while the end of a message is worked on, milliseconds' },
  milter_timeout: { kind: 'int', default: 120, min: 1, max: 3600, doc: 'milter mode: seconds allowed for the end-of-message work; then tempfail (451), never a partial edit' },
  milter_max_rewrite_bytes: { kind: 'int', default: 50 * MiB, min: 1024, max: 2048 * MiB, doc: 'milter mode: larger messages are accepted unchanged as soon as they pass this size' },
  milter_spool_memory_limit: { kind: 'int', default: 256 * 1024, min: 0, max: 256 * MiB, doc: 'milter mode: bytes of a message kept in memory before it spills to a temporary file' },
});

export interface MilterSettings {
  listen: ListenAddress;
  socketMode: number;
  /** Negotiate SMFIP_NR_* (no replies for connect, MAIL, RCPT, headers) and NODATA. */
  noReply: boolean;
  linkPolicy: LinkPolicy;
  neutralTemplate: string;
  bodyChunk: number;
  progressMs: number;
  timeoutMs: number;
  maxRewriteBytes: number;
  spoolMemoryLimit: number;
}

/** Typed view of the keys above; throws ConfigError for a listen address that is not allowed. */
export function milterSettings(config: Config): MilterSettings {
  const num = (k: string, d: number) => (typeof config[k] === 'number' ? (config[k] as number) : d);
  const str = (k: string, d: string) => (typeof config[k] === 'string' ? (config[k] as string) : d);
  const listen = parseMilterListen(str('milter_listen', '127.0.0.1:10027'));
  if (typeof listen === 'string') throw new ConfigError(`bad value for milter_listen: ${JSON.stringify(config.milter_listen)}: ${listen}`);
  const noReply = str('milter_no_reply', 'auto');
  return {
    listen,
    socketMode: parseInt(str('milter_socket_mode', '0660'), 8),
    noReply: noReply === 'yes' || (noReply === 'auto' && listen.kind === 'unix'),
    linkPolicy: str('milter_link_policy', 'neutral') as LinkPolicy,
    neutralTemplate: str('milter_neutral_url_template', DEFAULT_NEUTRAL_TEMPLATE),
    bodyChunk: num('milter_body_chunk', 65535),
    progressMs: num('milter_progress_ms', 5000),
    timeoutMs: num('milter_timeout', 120) * 1000,
    maxRewriteBytes: num('milter_max_rewrite_bytes', 50 * MiB),
    spoolMemoryLimit: num('milter_spool_memory_limit', 256 * 1024),
  };
}
