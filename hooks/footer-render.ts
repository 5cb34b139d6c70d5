// Hook footer-render (message:footer): says what the message is and gives the recipient's link.
// In: the classification, its calendar facts and one resolved link; templates footer_text_template and
// footer_html_template (empty = built-in) with {description} {summary} {start} {zone} {url} {kind}.
// Out: a Footer of Unicode strings (text with CRLF line ends; HTML with every value escaped).
// Fails: a template with an unknown placeholder throws at init (start-up stops, naming it); a link that
// is not an http(s) URL throws per message, which the pipeline turns into "no footer".

import type { App, FooterInput, HookModule } from '../lib/hooks.js';
import type { CalendarTime, Footer } from '../lib/types.js';
import { breakHtmlLines, breakTextLines, htmlStates, type HtmlState } from '../lib/footer-lines.js';

export const FOOTER_PLACEHOLDERS = ['description', 'summary', 'start', 'zone', 'url', 'kind'] as const;
type FooterPlaceholder = (typeof FOOTER_PLACEHOLDERS)[number];

/** Summaries are the organiser's free text; a footer line stays short. */
export const MAX_SUMMARY_CHARS = 200;
const MAX_ZONE_CHARS = 64;

// "-- " is the RFC 3676 signature separator: mutt, Thunderbird and others leave what follows out of
// quoted replies, so footers do not pile up in a thread.
export const DEFAULT_TEXT_TEMPLATE = '\n-- \n{description}\nView it and your calendar on the web: {url}\n';
export const DEFAULT_HTML_TEMPLATE =
  '<div data-calendar-link-footer="1" style="margin-top:1em;border-top:1px solid #ccc;padding-top:.5em;font-family:sans-serif;font-size:small;color:#555">' +
  '{description}<br><a href="{url}" style="color:#0b57d0;text-decoration:underline">View it and your calendar on the web</a></div>';

const PLACEHOLDER_RE = /\{([^{}]*)\}/g;
// C0/C1 controls, DEL, line/paragraph separators and bidi overrides/isolates (a summary must not be
// able to start a new line or make the footer read backwards).
const UNSAFE_CHARS_RE = /[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]/g;
// Invisible format characters (zero-width space, bidi marks, word joiner, interlinear annotations, tag
// characters, soft hyphen …): nothing a reader sees, so a summary cannot hide text in them. Kept: the
// joiners (ZWJ/ZWNJ: emoji sequences, Persian and Indic spelling) and variation selectors (emoji style,
// Mongolian).
const INVISIBLE_RE = /(?![\u180b-\u180d\u180f\u200c\u200d\ufe00-\ufe0f\u{e0100}-\u{e01ef}])\p{Default_Ignorable_Code_Point}|[\ufff9-\ufffb]/gu;
// Printable ASCII words separated by single spaces: a value cleanValue leaves as it is.
const PLAIN_VALUE_RE = /^[\x21-\x7e]+(?: [\x21-\x7e]+)*$/;
const LONE_SURROGATE_RE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;
const WEEKDAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** Error text for a footer template, or null when it is usable. */
export function checkFooterTemplate(template: string, format: 'text' | 'html'): string | null {
  const names = [...template.matchAll(PLACEHOLDER_RE)].map((m) => m[1] as string);
  const unknown = [...new Set(names.filter((n) => !(FOOTER_PLACEHOLDERS as readonly string[]).includes(n)))];
  if (unknown.length > 0) {
    return `unknown placeholder${unknown.length > 1 ? 's' : ''} ${unknown.map((n) => `{${n}}`).join(', ')} (known: ${FOOTER_PLACEHOLDERS.map((p) => `{${p}}`).join(' ')})`;
  }
  if (!names.includes('url')) return 'the template has no {url}, so the footer would carry no link';
  if (format === 'html') {
    // Escaping protects text and quoted attribute values only: in href={url}, title=x{summary} or <a {summary}>
    // a value's spaces would add attributes; inside <script>/<style> entities are not even decoded.
    const states = htmlStates(template);
    for (const m of template.matchAll(PLACEHOLDER_RE)) {
      const st = states[m.index as number] as HtmlState;
      if (st === 'before-value' || st === 'unquoted') return 'a placeholder stands in an unquoted attribute value; quote it ("{url}")';
      if (st === 'tag-name' || st === 'tag') return `a placeholder stands inside a tag outside a quoted attribute value (${m[0]})`;
      if (st === 'raw') return `a placeholder stands inside <script> or <style>, where escaping does not protect it (${m[0]})`;
      if (st === 'dq' || st === 'sq') {
        const bad = attributeProblem(template, states, m.index as number, m[0]);
        if (bad) return bad;
      }
    }
  }
  return null;
}

// Attributes whose value the browser reads as a URL: a value there could pick the scheme (javascript:) or host.
const URL_ATTRS = new Set([
  'href', 'src', 'action', 'formaction', 'background', 'cite', 'poster', 'data', 'longdesc', 'usemap', 'codebase',
  'xlink:href', 'srcset', 'ping', 'lowsrc', 'dynsrc', 'manifest', 'icon', 'profile', 'archive', 'classid', 'code',
]);
// A value in a URL attribute is safe after a fixed http(s) origin and a "/", "?" or "#", or after "{url}" and one of those.
const FIXED_URL_PREFIX_RE = /^\s*(?:https?:\/\/[^/?#{}\s]+|\{url\}[^{}]*?)[/?#]/i;

/**
 * Why a placeholder inside a quoted attribute value is unsafe, or null. HTML escaping is undone by the
 * parser before the value is used: in on…="" it is script, in style="" CSS, in srcdoc="" markup, and at
 * the start of href="" it could be a javascript: link.
 */
function attributeProblem(template: string, states: HtmlState[], at: number, placeholder: string): string | null {
  const st = states[at];
  let q = at;
  while (q > 0 && states[q - 1] === st) q--;
  const open = q - 1; // the opening quote (its state is the one before the value: "before-value" or "tag")
  const name = /([^\s"'<>/=]+)\s*=\s*$/.exec(template.slice(0, Math.max(open, 0)))?.[1]?.toLowerCase();
  if (name === undefined) return `a placeholder stands inside a tag outside a quoted attribute value (${placeholder})`;
  if (name.startsWith('on') || name === 'style' || name === 'srcdoc') {
    return `a placeholder stands in the ${name} attribute, where escaping does not protect it (${placeholder})`;
  }
  if (URL_ATTRS.has(name)) {
    const prefix = template.slice(q, at);
    if (placeholder === '{url}' && /^\s*$/.test(prefix)) return null;
    if (!FIXED_URL_PREFIX_RE.test(prefix)) {
      return `a placeholder stands in the ${name} attribute where it could choose the link's scheme or host; only {url} may start it (${placeholder})`;
    }
  }
  return null;
}

/** Strip controls (CR/LF included) and bidi tricks, collapse runs of spaces, cap the length. */
export function cleanValue(s: string | null | undefined, max = MAX_SUMMARY_CHARS): string {
  if (typeof s !== 'string') return '';
  if (s.length <= max && PLAIN_VALUE_RE.test(s)) return s; // the usual value: nothing to strip, collapse or cut
  const flat = s.replace(LONE_SURROGATE_RE, '\ufffd').replace(UNSAFE_CHARS_RE, ' ').replace(INVISIBLE_RE, '').replace(/\s+/g, ' ').trim();
  if (flat.length <= max) return flat; // no more code points than UTF-16 units: nothing to cut
  const chars = Array.from(flat); // by code point, so a cut never splits a surrogate pair
  return chars.length > max ? `${chars.slice(0, max - 1).join('').trimEnd()}…` : flat;
}

/**
 * A CalendarTime as people read it, from its `local` text only (never the host's zone):
 * "Tue 1 Dec 2026 10:00" with zone "Europe/Berlin"; all-day → date, no zone; floating → no zone.
 */
export function formatTime(t: CalendarTime | null | undefined): { start: string; zone: string } {
  if (!t || typeof t.local !== 'string') return { start: '', zone: '' };
  const m = /^(\d{4})-?(\d{2})-?(\d{2})(?:[T ](\d{2}):?(\d{2})(?::?(\d{2}))?(?:[.,]\d+)?(Z)?)?$/i.exec(t.local.trim());
  if (!m) return { start: '', zone: '' };
  const [y, mo, d] = [Number(m[1]), Number(m[2]), Number(m[3])];
  const date = new Date(0);
  date.setUTCFullYear(y, mo - 1, d); // not Date.UTC: it reads years 0-99 as 1900-1999
  if (date.getUTCMonth() !== mo - 1 || date.getUTCDate() !== d) return { start: '', zone: '' }; // e.g. 2026-02-30
  const day = `${WEEKDAYS[date.getUTCDay()]} ${d} ${MONTHS[mo - 1]} ${y}`;
  if (t.allDay || m[4] === undefined) return { start: day, zone: '' };
  const zone = m[7] ? 'UTC' : cleanValue(t.tzid, MAX_ZONE_CHARS);
  return { start: `${day} ${m[4]}:${m[5]}`, zone };
}

const TASK_CLASS_RE = /^IPM\.TaskRequest/i;

/** The label ({kind}): what the recipient is looking at, from the method, else the TNEF class. */
export function describeKind(input: Pick<FooterInput, 'classification' | 'calendar'>): string {
  const c = input.classification;
  const cls = c.tnefClass ?? '';
  const task = TASK_CLASS_RE.test(cls) || input.calendar?.component === 'VTODO';
  const noun = task ? 'Task' : 'Meeting';
  if (TASK_CLASS_RE.test(cls)) {
    if (/\.Accept/i.test(cls)) return 'Task accepted';
    if (/\.Decline/i.test(cls)) return 'Task declined';
    if (/\.Update/i.test(cls)) return 'Task update';
    return 'Task request';
  }
  if (c.kind === 'custom-form') return 'Form';
  const method = (c.method ?? input.calendar?.method ?? '').toUpperCase();
  switch (method) {
    case 'REQUEST': return `${noun} request`;
    case 'CANCEL': return task ? 'Task cancelled' : 'Meeting cancelled';
    case 'ADD': return `${noun} update`;
    case 'COUNTER': return 'Counter-proposal';
    case 'DECLINECOUNTER': return 'Counter-proposal declined';
    case 'REPLY': return `${noun} response`;
    case 'PUBLISH': return 'Calendar event';
    case 'REFRESH': return 'Request for an update';
  }
  // TNEF without a method: the class tells (modern names; the classifier maps the legacy ones).
  if (/^IPM\.Schedule\.Meeting\.Request/i.test(cls)) return 'Meeting request';
  if (/^IPM\.Schedule\.Meeting\.Canceled/i.test(cls)) return 'Meeting cancelled';
  if (/^IPM\.Schedule\.Meeting\.Resp/i.test(cls)) return 'Meeting response';
  if (/^IPM\.Appointment/i.test(cls)) return 'Appointment';
  return 'Calendar message';
}

/** The link must reach the footer as an absolute ASCII http(s) URL, whatever produced it. */
function cleanUrl(url: string): string {
  const stripped = String(url ?? '').replace(/[\s\x00-\x1f\x7f-\x9f]/g, '');
  let u: URL;
  try {
    u = new URL(stripped);
  } catch {
    throw new Error('footer: the link is not an absolute URL');
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error(`footer: the link's scheme "${u.protocol}" is not http or https`);
  // WHATWG serialisation percent-encodes non-ASCII path/query and punycodes the host.
  const ascii = /[^\x21-\x7e]/.test(stripped) ? u.href : stripped;
  if (/[^\x21-\x7e]/.test(ascii)) throw new Error('footer: the link is not ASCII');
  return ascii;
}

const NEEDS_ESCAPE_RE = /[&<>"'\u0080-\uffff]/;
const HTML_ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/**
 * Escape for HTML text and quoted attributes. Non-ASCII becomes a numeric reference: lossless in any
 * body charset, so a Japanese summary in an iso-8859-1 HTML part still shows right (not a transliteration).
 */
export function escapeHtml(s: string): string {
  if (!NEEDS_ESCAPE_RE.test(s)) return s; // most values: nothing to escape
  return s.replace(/[&<>"']/g, (ch) => HTML_ESCAPES[ch] as string).replace(/[^\x00-\x7f]/gu, (ch) => `&#x${(ch.codePointAt(0) as number).toString(16)};`);
}

/** A template cut at its placeholders: literals[0] name[0] literals[1] … literals[n]; or why it is unusable. */
interface ParsedTemplate {
  literals: string[];
  names: FooterPlaceholder[];
}
type CompiledTemplate = ParsedTemplate | { bad: string };

function compileTemplate(template: string, format: 'text' | 'html'): CompiledTemplate {
  const bad = checkFooterTemplate(template, format);
  if (bad) return { bad };
  const literals: string[] = [];
  const names: FooterPlaceholder[] = [];
  let at = 0;
  for (const m of template.matchAll(PLACEHOLDER_RE)) {
    const name = m[1] as string;
    if (!(FOOTER_PLACEHOLDERS as readonly string[]).includes(name)) continue; // the check refuses these; left as text
    literals.push(template.slice(at, m.index));
    names.push(name as FooterPlaceholder);
    at = (m.index as number) + m[0].length;
  }
  literals.push(template.slice(at));
  return { literals, names };
}

/** Templates compiled once per format and template: they are config (checked at init), and every message fills one. */
const compiledTemplates = { text: new Map<string, CompiledTemplate>(), html: new Map<string, CompiledTemplate>() };

/** The compiled template; throws when checkFooterTemplate refuses it. */
function usableTemplate(template: string, format: 'text' | 'html'): ParsedTemplate {
  const cache = compiledTemplates[format];
  let t = cache.get(template);
  if (t === undefined) {
    t = compileTemplate(template, format);
    if (cache.size >= 64) cache.clear(); // bounded: only tests pass many templates
    cache.set(template, t);
  }
  if ('bad' in t) throw new Error(`footer_${format}_template: ${t.bad}`);
  return t;
}

function fill(t: ParsedTemplate, values: Record<FooterPlaceholder, string>, escape: (s: string) => string): string {
  let out = t.literals[0] as string;
  for (let i = 0; i < t.names.length; i++) out += escape(values[t.names[i] as FooterPlaceholder]) + t.literals[i + 1];
  return out;
}

/** Pure: one footer for one link. Templates must have passed checkFooterTemplate (checked again here). */
export function renderFooter(input: FooterInput, templates: { text?: string; html?: string } = {}): Footer {
  const text = usableTemplate(templates.text || DEFAULT_TEXT_TEMPLATE, 'text');
  const html = usableTemplate(templates.html || DEFAULT_HTML_TEMPLATE, 'html');
  const url = cleanUrl(input.link.url);
  const kind = describeKind(input);
  // Outlook prefixes cancelled summaries itself ("Canceled: Standup"); do not say it twice.
  const rawSummary = cleanValue(input.calendar?.summary);
  const summary = kind.endsWith('cancelled') ? rawSummary.replace(/^\s*cancell?ed:\s*/i, '') : rawSummary;
  const { start, zone } = formatTime(input.calendar?.start);
  const when = start && zone ? `${start} (${zone})` : start;
  // A form has no calendar facts; its class name ("IPM.Note.Expense") is the best description we have.
  const what = summary || (kind === 'Form' ? cleanValue(input.classification.tnefClass, MAX_ZONE_CHARS) : '');
  const details = [what, when].filter((s) => s !== '').join(', ');
  const values = { description: details ? `${kind}: ${details}` : kind, summary, start, zone, url, kind };
  return {
    // MIME's canonical line end; template newlines (from YAML/JSON) are normalised too.
    // No line over what a 7bit/8bit part can carry (part-footer refuses longer ones: no footer at all).
    text: breakTextLines(fill(text, values, (s) => s).replace(/\r\n|\r|\n/g, '\r\n')),
    html: breakHtmlLines(fill(html, values, escapeHtml)),
  };
}

function configTemplate(app: App, key: 'footer_text_template' | 'footer_html_template'): string {
  const v = app.config[key];
  if (v === undefined || v === null || v === '') return '';
  if (typeof v !== 'string') throw new Error(`${key}: expected a string`);
  return v;
}

const footerRender: HookModule = {
  name: 'footer-render',
  init(app: App): void {
    const templates = { text: configTemplate(app, 'footer_text_template'), html: configTemplate(app, 'footer_html_template') };
    // checked and compiled here, so a bad template stops the start and no message pays for the parse
    usableTemplate(templates.text || DEFAULT_TEXT_TEMPLATE, 'text');
    usableTemplate(templates.html || DEFAULT_HTML_TEMPLATE, 'html');
    app.hooks.on('message:footer', 'footer-render', (input) => renderFooter(input, templates));
  },
};

export default footerRender;
