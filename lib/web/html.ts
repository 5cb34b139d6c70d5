// HTML escaping for the web view's pages: a tagged template that escapes every interpolated value
// unless it is already SafeHtml (the output of another `html` call or of `raw`).
// In: strings, numbers, null, arrays and SafeHtml. Out: SafeHtml. Fails: never; anything unknown is
// turned into text and escaped. Every ICS-derived value reaches a page only through this file.

export class SafeHtml {
  constructor(readonly value: string) {}
  toString(): string { return this.value; }
}

const ESC: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
// Controls and bidi overrides/isolates: a SUMMARY must not reorder the page around it.
const UNSAFE = /[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u202a-\u202e\u2066-\u2069]/g;

export function escapeHtml(s: string): string {
  return s.replace(UNSAFE, '\ufffd').replace(/[&<>"']/g, (c) => ESC[c] as string);
}

export type HtmlValue = SafeHtml | string | number | null | undefined | false | HtmlValue[];

function render(v: HtmlValue): string {
  if (v === null || v === undefined || v === false) return '';
  if (v instanceof SafeHtml) return v.value;
  if (Array.isArray(v)) return v.map(render).join('');
  return escapeHtml(String(v));
}

export function html(strings: TemplateStringsArray, ...values: HtmlValue[]): SafeHtml {
  let out = strings[0] ?? '';
  values.forEach((v, i) => { out += render(v) + (strings[i + 1] ?? ''); });
  return new SafeHtml(out);
}

export function raw(s: string): SafeHtml {
  return new SafeHtml(s);
}

/** http(s)/mailto URL allowed as a link target, else null (javascript:, data:, anything else). */
export function safeUrl(u: string | null | undefined): string | null {
  if (!u) return null;
  const t = u.trim();
  if (!/^(https?:\/\/[^\s<>"]+|mailto:[^\s<>"]+)$/i.test(t)) return null;
  try { new URL(t); return t; } catch { return null; }
}

/** Plain text with line breaks; http(s) and mailto URLs become links showing the full URL. */
export function textWithLinks(text: string): SafeHtml {
  const parts: SafeHtml[] = [];
  const re = /(https?:\/\/[^\s<>"]+|mailto:[^\s<>"]+)/gi;
  let at = 0;
  for (const m of text.matchAll(re)) {
    parts.push(html`${text.slice(at, m.index)}`);
    const url = safeUrl(m[0].replace(/[).,;]+$/, ''));
    const shown = url ?? m[0];
    parts.push(url ? html`<a href="${url}" rel="noopener noreferrer nofollow">${shown}</a>` : html`${shown}`);
    at = (m.index ?? 0) + shown.length;
  }
  parts.push(html`${text.slice(at)}`);
  return raw(parts.map(String).join('').replace(/\r?\n/g, '<br>\n'));
}
