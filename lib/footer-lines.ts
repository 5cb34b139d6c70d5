// Footer lines a part can carry, and where a placeholder stands in an HTML template.
// In: a filled footer (text or HTML), or a template. Out: the same footer with no line over 900
// bytes in any charset, broken only where a reader sees no difference; the HTML tokenizer state in
// front of each character. Why: part-footer refuses a 7bit/8bit part whose footer line would pass
// RFC 5322's 998 bytes, so one long summary would cost the recipient the whole footer.
// Fails: never; a line with no place to break is broken between characters.

export type HtmlState = 'text' | 'ref' | 'tag-name' | 'tag' | 'before-value' | 'unquoted' | 'dq' | 'sq' | 'comment' | 'decl' | 'raw' | 'rcdata';

/** Elements whose content is not markup: a comment or tag inserted there would show (or run) as text. */
const RAW_TEXT = new Set(['script', 'style', 'xmp', 'iframe', 'noembed', 'noframes', 'plaintext', 'noscript']);
const RCDATA = new Set(['title', 'textarea']);

/**
 * The tokenizer state in front of each UTF-16 unit of `html` (a small subset of the HTML tokenizer: text,
 * character references, tags and their quoted/unquoted attribute values, comments, raw-text elements).
 */
export function htmlStates(html: string): HtmlState[] {
  const out: HtmlState[] = new Array(html.length);
  let st: HtmlState = 'text';
  let name = '';
  let closing = false;
  let inRaw: string | null = null; // raw-text or RCDATA element we are inside of
  const startsTag = (i: number) => /^<\/?[a-z{]/i.test(html.slice(i, i + 3)); // "{": a placeholder as the tag name
  for (let i = 0; i < html.length; i++) {
    const c = html[i] as string;
    if (st === 'ref') {
      out[i] = st;
      if (c === ';') { st = 'text'; continue; }
      if (/[#a-z0-9]/i.test(c)) continue;
      st = 'text'; // the reference ended without ";": this character is text again
    }
    out[i] = st;
    switch (st) {
      case 'text':
        if (c === '&') st = 'ref';
        else if (c === '<' && html.startsWith('<!--', i)) { st = 'comment'; i += 3; for (let k = 1; k <= 3; k++) out[i - 3 + k] = 'comment'; }
        else if (c === '<' && (html[i + 1] === '!' || html[i + 1] === '?')) st = 'decl';
        else if (c === '<' && startsTag(i)) { st = 'tag-name'; closing = html[i + 1] === '/'; name = ''; if (closing) { i++; out[i] = 'tag-name'; } }
        break;
      case 'raw':
      case 'rcdata':
        if (c === '<' && html.slice(i, i + 2 + (inRaw as string).length).toLowerCase() === `</${inRaw}`) {
          st = 'tag-name'; closing = true; name = ''; i++; out[i] = 'tag-name';
        }
        break;
      case 'comment':
        if (html.startsWith('-->', i)) { out[i + 1] = out[i + 2] = 'comment'; i += 2; st = 'text'; }
        break;
      case 'decl':
        if (c === '>') st = 'text';
        break;
      case 'tag-name':
        if (/[\s/]/.test(c)) st = 'tag';
        else if (c === '>') st = 'text';
        else name += c.toLowerCase();
        break;
      case 'tag':
        if (c === '"') st = 'dq';
        else if (c === "'") st = 'sq';
        else if (c === '=') st = 'before-value';
        else if (c === '>') st = 'text';
        break;
      case 'before-value':
        if (c === '"') st = 'dq';
        else if (c === "'") st = 'sq';
        else if (c === '>') st = 'text';
        else if (!/\s/.test(c)) st = 'unquoted';
        break;
      case 'unquoted':
        if (/\s/.test(c)) st = 'tag';
        else if (c === '>') st = 'text';
        break;
      case 'dq':
        if (c === '"') st = 'tag';
        break;
      case 'sq':
        if (c === "'") st = 'tag';
        break;
    }
    // the ">" that ends a start tag of a raw-text element opens its content; an end tag closes it
    if (c === '>' && st === 'text' && out[i] !== 'text' && out[i] !== 'comment' && out[i] !== 'decl') {
      if (closing) inRaw = null;
      else if (RAW_TEXT.has(name)) { inRaw = name; st = 'raw'; }
      else if (RCDATA.has(name)) { inRaw = name; st = 'rcdata'; }
    }
  }
  return out;
}

/** Longest footer line we let through: RFC 5322 allows 998 bytes; the body line it joins is measured by part-footer. */
const MAX_FOOTER_LINE = 900;
/** Bytes one code point may take in a part: UTF-8 and GB18030 need 4; in HTML part-footer writes &#N; (up to 10). */
const weight = (cp: number, html: boolean) => (cp < 0x80 ? 1 : html ? 10 : 4);

/** True when no line can pass `max` bytes whatever its characters become: the usual footer, checked without tokenizing. */
function allLinesFit(s: string, max: number, html: boolean): boolean {
  const heavy = html ? 10 : 4;
  for (let start = 0; start <= s.length; ) {
    let end = s.indexOf('\n', start);
    if (end < 0) end = s.length;
    const len = end - start;
    // UTF-16 units over-count astral characters, never under-count: a safe bound
    if (len * heavy > max && !(len <= max && /^[\x00-\x7f]*$/.test(s.slice(start, end)))) return false;
    start = end + 1;
  }
  return true;
}

/**
 * Long HTML lines broken where a line break changes nothing a reader sees: between attributes inside a
 * tag (the blank becomes the line break), else in text by an empty comment holding the line break (not
 * inside a character reference, an attribute value or a raw-text element). Lines that fit stay as they are.
 */
export function breakHtmlLines(html: string, max = MAX_FOOTER_LINE): string {
  if (allLinesFit(html, max, true)) return html;
  const states = htmlStates(html);
  const out: string[] = [];
  let lineLen = 0;
  let opp = -1; // index in `out` of the last break opportunity on this line
  let oppInTag = false;
  let afterOpp = 0; // line length from the opportunity on
  for (let i = 0; i < html.length; ) {
    const cp = html.codePointAt(i) as number;
    const ch = String.fromCodePoint(cp);
    const st = states[i] as HtmlState;
    const prev = i > 0 ? (states[i - 1] as HtmlState) : 'text';
    i += ch.length;
    if (ch === '\n') { out.push(ch); lineLen = 0; opp = -1; continue; }
    const inTagBlank = (st === 'tag' || st === 'tag-name') && /[ \t]/.test(ch);
    const textBoundary = st === 'text' && (prev === 'text' || prev === 'ref' || i === ch.length) && lineLen > 0;
    if (inTagBlank || textBoundary) { opp = out.length; oppInTag = inTagBlank; afterOpp = 0; }
    out.push(ch);
    const w = weight(cp, true);
    lineLen += w;
    if (opp >= 0) afterOpp += w;
    if (lineLen > max && opp >= 0 && lineLen - afterOpp > 0) {
      if (oppInTag) { out[opp] = '\r\n'; lineLen = afterOpp - 1; }
      else { out[opp] = `<!--\r\n-->${out[opp]}`; lineLen = afterOpp + 3; }
      opp = -1;
    }
  }
  return out.join('');
}

/** Text lines longer than a part can carry broken at the last blank that fits, else between characters. */
export function breakTextLines(text: string, max = MAX_FOOTER_LINE): string {
  if (allLinesFit(text, max, false)) return text;
  return text.split('\r\n').map((line) => {
    const out: string[] = [];
    let cur: string[] = [];
    let len = 0;
    for (const ch of line) {
      cur.push(ch);
      len += weight(ch.codePointAt(0) as number, false);
      // after a cut at a blank, what follows it may still pass max (a short word, a blank, then wide characters):
      // then it is cut again, between characters
      while (len > max && cur.length > 1) {
        const blank = cur.lastIndexOf(' ', cur.length - 2);
        const cut = blank > 0 ? blank : cur.length - 1;
        out.push(cur.slice(0, cut).join('').trimEnd());
        cur = cur.slice(blank > 0 ? cut + 1 : cut);
        len = cur.reduce((n, c) => n + weight(c.codePointAt(0) as number, false), 0);
      }
    }
    out.push(cur.join(''));
    return out.join('\r\n');
  }).join('\r\n');
}
