// Link building: one URL template (url_template) plus one server (web_server or an override) → one link.
// In: a template with {server} {uid} {recurrenceId} {sequence} {method} {messageId} {recipient} {token},
// the server as HOST, HOST:PORT or an http(s) base URL, and the message's values (any of them hostile).
// Out: an absolute ASCII http(s) URL of at most MAX_LINK_LENGTH characters; every value is URL-encoded.
// Fails: a bad template, bad server or bad result throws LinkError with a clear text (the pipeline
// turns it into "no footer"); checkTemplate/checkServer return that text instead, for start-up checks.
//
// The {server} rule. {server} may appear once, only where a host goes: at the very start of the template
// (`{server}/…`) or right after its scheme (`https://{server}/…`).
//   - HOST or HOST:PORT (what Q273913 asks the admin to type): `https://{server}` keeps the template's
//     scheme; a template starting with a bare `{server}` gets https.
//   - An http(s) base URL (`http://cal.example.org:8080/owa`): it replaces the template's `scheme://{server}`
//     whole, so the server's own scheme, port and path prefix win and the scheme is never doubled;
//     trailing slashes are dropped so `{server}/calendar` does not become `…/owa//calendar`.
// A template without {server} is a fixed link and must start with http:// or https://.

import { domainToASCII } from 'node:url';

export const PLACEHOLDERS = ['server', 'uid', 'recurrenceId', 'sequence', 'method', 'messageId', 'recipient', 'token'] as const;
export type Placeholder = (typeof PLACEHOLDERS)[number];

/** A footer line "View it …: <url>" must stay well under the 998-byte line limit of RFC 5322. */
export const MAX_LINK_LENGTH = 900;

export interface LinkValues {
  server: string;
  uid?: string | null;
  recurrenceId?: string | null;
  sequence?: number | null;
  method?: string | null;
  messageId?: string | null;
  recipient?: string | null;
  token?: string | null;
}

export class LinkError extends Error {}

const PLACEHOLDER_RE = /\{([^{}]*)\}/g;
const SERVER_PREFIX_RE = /^(?:(https?):\/\/)?\{server\}/i;
// Labels of letters, digits, inner hyphens; "_" too, since Windows/NetBIOS-era server names carry it
// (Q273913's admin types such a name). A final dot (FQDN) is allowed.
const HOSTNAME_RE = /^(?=.{1,253}\.?$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?$/;
const IPV6_RE = /^\[[0-9A-Fa-f:.]+\]$/;
// Anything a URL in a mail body must not contain: whitespace, controls, non-ASCII.
const NOT_URL_SAFE_RE = /[^\x21-\x7e]/;
// The path of an absolute URL, and in it a segment that a browser resolves as "." or "..".
const PATH_RE = /^[a-z]+:\/\/[^/?#]*([^?#]*)/i;
const DOT_SEGMENT_RE = /(?:^|\/)(?:\.|%2e){1,2}(?=\/|$)/i;
// Scheme and authority of an http(s) URL: everything up to where the parser's path, query or fragment
// starts ("\\" too: http(s) reads it as "/"). A non-empty authority, so that "https:///x" (whose host
// the parser takes from after the extra slash) is not taken for an origin.
const ORIGIN_RE = /^https?:\/\/[^/?#\\]+/i;

/** Error text for a template, or null when it is usable. `opts.token: false` = no link_secret, so {token} is refused. */
export function checkTemplate(template: string, opts: { token?: boolean } = {}): string | null {
  if (typeof template !== 'string' || template === '') return 'the URL template is empty';
  const names = [...template.matchAll(PLACEHOLDER_RE)].map((m) => m[1] as string);
  const unknown = [...new Set(names.filter((n) => !(PLACEHOLDERS as readonly string[]).includes(n)))];
  if (unknown.length > 0) {
    return `unknown placeholder${unknown.length > 1 ? 's' : ''} ${unknown.map((n) => `{${n}}`).join(', ')} (known: ${PLACEHOLDERS.map((p) => `{${p}}`).join(' ')})`;
  }
  const literal = template.replace(PLACEHOLDER_RE, '');
  if (/[{}]/.test(literal)) return 'unbalanced "{" or "}" in the URL template';
  if (NOT_URL_SAFE_RE.test(literal)) return 'the URL template contains whitespace, control or non-ASCII characters (percent-encode them)';
  // browsers read "\" as "/": a value of ".." after one would climb out of the template's path
  if (literal.includes('\\')) return 'the URL template contains "\\" (browsers read it as "/"; write %5C)';
  const servers = names.filter((n) => n === 'server').length;
  if (servers > 1) return '{server} may appear only once';
  if (servers === 1) {
    const prefix = SERVER_PREFIX_RE.exec(template);
    if (!prefix) return '{server} must stand where the host goes: at the start ("{server}/…") or after the scheme ("https://{server}/…")';
    // Nothing may be glued to the host: "{server}{uid}" would let a value starting with "." pick the host.
    if (!/^(?:$|[/?#])/.test(template.slice(prefix[0].length))) return '{server} must be followed by "/", "?", "#" or the end of the template';
  } else {
    const authority = /^https?:\/\/([^/?#]*)/i.exec(template)?.[1];
    if (!authority) return 'a template without {server} must start with http:// or https:// and a host';
    if (authority.includes('{')) return 'placeholders other than {server} may not stand in the host part of the template';
  }
  if (opts.token === false && names.includes('token')) return 'the template uses {token} but no link_secret is configured';
  return null;
}

interface ServerParts {
  /** Scheme from a full URL, or null for HOST[:PORT]. */
  scheme: 'http' | 'https' | null;
  /** HOST[:PORT] for the bare form; scheme://host[:port]/path for the URL form (no trailing slash). */
  text: string;
}

function parseServer(server: string): ServerParts | string {
  if (typeof server !== 'string' || server.trim() === '') return 'the web server is empty';
  const s = server.trim();
  if (/[\x00-\x20\x7f]/.test(s)) return 'the web server contains whitespace or control characters';
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):/.exec(s)?.[1]?.toLowerCase();
  if (scheme !== undefined && !/^[^:]*:\d+$/.test(s)) {
    // Has a scheme (a bare "host:8080" also matches the scheme pattern, hence the port test above).
    if (scheme !== 'http' && scheme !== 'https') return `the web server's scheme "${scheme}:" is not http or https`;
    let u: URL;
    try {
      u = new URL(s);
    } catch {
      return `the web server "${s}" is not a valid URL`;
    }
    if (!/^https?:\/\/[^/?#]/i.test(s)) return `the web server "${s}" has no host`;
    if (u.username || u.password) return 'the web server URL must not carry a user name or password';
    if (u.search || u.hash || /[?#]/.test(s)) return 'the web server URL must be a base URL, without "?" or "#"';
    return { scheme: u.protocol === 'http:' ? 'http' : 'https', text: `${u.protocol}//${u.host}${u.pathname.replace(/\/+$/, '')}` };
  }
  const m = /^(.*?)(?::(\d{1,5}))?$/.exec(s) as RegExpExecArray;
  const host = m[1] as string;
  const port = m[2];
  if (port !== undefined && (Number(port) < 1 || Number(port) > 65535)) return `the web server's port ${port} is out of range`;
  let ascii = host;
  if (!IPV6_RE.test(host)) {
    // An internationalised name typed by the admin becomes its punycode form, so the link stays ASCII.
    ascii = NOT_URL_SAFE_RE.test(host) ? domainToASCII(host) : host;
    if (!ascii || !HOSTNAME_RE.test(ascii)) return `the web server "${s}" is not HOST, HOST:PORT or an http(s) URL`;
  }
  return { scheme: null, text: port !== undefined ? `${ascii}:${port}` : ascii };
}

/** Error text for a web server setting, or null when it is usable. */
export function checkServer(server: string): string | null {
  const p = parseServer(server);
  return typeof p === 'string' ? p : null;
}

function encodeValue(name: Placeholder, values: LinkValues): string {
  switch (name) {
    case 'sequence': {
      const n = values.sequence;
      return typeof n === 'number' && Number.isSafeInteger(n) ? String(n) : '';
    }
    case 'server':
      return ''; // handled by the caller
    default: {
      const v = values[name];
      return typeof v === 'string' ? encodeURIComponent(v) : '';
    }
  }
}

/** A template taken apart once: its check, the {server} prefix, and the rest as text and placeholders. */
interface Compiled {
  bad: string | null;
  token: boolean;
  /** The scheme written before {server} ("" for a bare "{server}…"), or null when there is no {server}. */
  serverScheme: string | null;
  /** After the prefix: literal text at even indexes, placeholder names at odd ones. */
  parts: string[];
}

function compile(template: string): Compiled {
  const prefix = SERVER_PREFIX_RE.exec(template);
  const rest = prefix ? template.slice(prefix[0].length) : template;
  return {
    bad: checkTemplate(template),
    token: /\{token\}/.test(template),
    serverScheme: prefix ? (prefix[1] ?? '') : null,
    parts: rest.split(PLACEHOLDER_RE), // the capture group keeps the names, at the odd indexes
  };
}

/**
 * Templates and servers taken apart and checked once per string: both depend on nothing else, and the
 * strings are config (site template and server, overrides), checked at init; the values of a message are not.
 */
const templates = new Map<string, Compiled>();
const servers = new Map<string, ServerParts | string>();
/** What urlProblem said about an origin (see checkResult). */
const origins = new Map<string, string | null>();

function remember<V>(cache: Map<string, V>, key: string, compute: (key: string) => V): V {
  let v = cache.get(key);
  if (v === undefined) {
    v = compute(key);
    if (cache.size >= 1000) cache.clear(); // bounded: overrides may name many servers
    cache.set(key, v);
  }
  return v;
}

/** Build one link; throws LinkError (never returns a link that failed a check). */
export function buildLink(template: string, values: LinkValues): string {
  if (typeof template !== 'string') throw new LinkError(`url_template: ${checkTemplate(template)}`);
  const t = remember(templates, template, compile);
  if (t.bad) throw new LinkError(`url_template: ${t.bad}`);
  if (t.token && !values.token) {
    throw new LinkError('url_template uses {token} but no token was minted (is link_secret set?)');
  }
  let url = '';
  if (t.serverScheme !== null) {
    const server = typeof values.server === 'string' ? remember(servers, values.server, parseServer) : parseServer(values.server);
    if (typeof server === 'string') throw new LinkError(`web_server: ${server}`);
    url = server.scheme ? server.text : `${t.serverScheme.toLowerCase() || 'https'}://${server.text}`;
  }
  for (let i = 0; i < t.parts.length; i++) url += i % 2 ? encodeValue(t.parts[i] as Placeholder, values) : t.parts[i];
  checkResult(url);
  return url;
}

function checkResult(url: string): void {
  if (NOT_URL_SAFE_RE.test(url)) throw new LinkError('the link contains whitespace, control or non-ASCII characters');
  if (url.length > MAX_LINK_LENGTH) throw new LinkError(`the link is ${url.length} characters long, more than ${MAX_LINK_LENGTH}`);
  // Whether the URL parser takes the link, and with which scheme and host, is decided by its scheme and
  // authority alone: after those the parser only reads a path, query and fragment, which never fail. Links
  // from one template and server share that origin, so it is parsed once, not once per message.
  const origin = ORIGIN_RE.exec(url)?.[0];
  const bad = origin === undefined ? urlProblem(url) : remember(origins, origin, urlProblem);
  if (bad) throw new LinkError(bad);
  // A value such as ".." would be a dot segment: the browser resolves it and the link points elsewhere
  // on the server. encodeURIComponent leaves dots alone and "%2e" counts as a dot, so refuse instead.
  const path = PATH_RE.exec(url)?.[1] ?? '';
  if (DOT_SEGMENT_RE.test(path)) throw new LinkError('the link path contains a "." or ".." segment');
}

/** Why the URL parser's reading of `url` is no link (not a URL, not http(s), no host), or null. */
function urlProblem(url: string): string | null {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return 'the link is not a valid absolute URL';
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return `the link's scheme "${u.protocol}" is not http or https`;
  if (!u.hostname) return 'the link has no host';
  return null;
}
