// Lenient reading of MIME header values: "type/subtype; key=value; …" and RFC 2047 encoded words.
// In: one unfolded header value as a string. Out: the lower-case main value and a key→value map
// (keys lower-case; quotes, comments, RFC 2231 continuations and charsets resolved).
// Fails: never throws. Garbage yields what could be read (`method=REQUEST;;` → { method: "REQUEST" });
// a charset iconv-lite does not know leaves the bytes as latin1 text.

import iconv from 'iconv-lite';

export interface HeaderValue {
  value: string;
  params: Record<string, string>;
}

/** Splits `value` on `sep` outside double quotes and outside (comments); comments are dropped. */
function splitOutsideQuotes(value: string, sep: string): string[] {
  if (!value.includes('"') && !value.includes('(')) return value.split(sep); // the usual header: nothing to skip
  // text is taken in slices, not character by character: headers are parsed for every part of every message
  const out: string[] = [];
  const sepCode = sep.charCodeAt(0);
  let cur = ''; // text before the last comment
  let from = 0; // start of the text not in `cur` yet
  let quoted = false;
  let depth = 0;
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (quoted) {
      if (c === 0x5c && i + 1 < value.length) i++; // an escaped character stays, whatever it is
      else if (c === 0x22) quoted = false;
    } else if (depth > 0) {
      if (c === 0x28) depth++;
      else if (c === 0x29 && --depth === 0) from = i + 1;
    } else if (c === 0x22) {
      quoted = true;
    } else if (c === 0x28) {
      cur += value.slice(from, i); // comments are dropped, as mailsplit drops them for the structure
      depth = 1;
    } else if (c === sepCode) {
      out.push(cur + value.slice(from, i));
      cur = '';
      from = i + 1;
    }
  }
  out.push(depth > 0 ? cur : cur + value.slice(from));
  return out;
}

const unescapeQuoted = (v: string): string => (v.includes('\\') ? v.replace(/\\(.)/g, '$1') : v);

function unquote(v: string): string {
  v = v.trim();
  if (!v.startsWith('"')) return v;
  // a value is a token or a quoted string: what follows the closing quote is junk (as libmime and Python read it)
  for (let i = 1; i < v.length; i++) {
    const c = v.charCodeAt(i);
    if (c === 0x5c) i++;
    else if (c === 0x22) return unescapeQuoted(v.slice(1, i));
  }
  return unescapeQuoted(v.slice(1)); // unterminated quote: take the rest
}

function decodeBytes(bytes: Buffer, charset: string): string {
  const cs = charset.trim().toLowerCase() || 'us-ascii';
  try {
    if (cs === 'utf-8' || cs === 'utf8') return bytes.toString('utf8');
    if (iconv.encodingExists(cs)) return iconv.decode(bytes, cs);
  } catch {
    // fall through to latin1: a wrong character is better than a lost parameter
  }
  return bytes.toString('latin1');
}

/**
 * Bytes of a value where `escape` + two hex digits is one byte: "%" for RFC 2231, "=" for the Q
 * encoding of RFC 2047 4.2, where "_" is also a space. Anything else, the other escape too, stands
 * for itself; raw 8-bit text where only escapes belong is kept readable as UTF-8.
 */
function escapedBytes(s: string, escape: '%' | '='): Buffer {
  const out: number[] = [];
  const esc = escape.charCodeAt(0);
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === esc && /^[0-9a-fA-F]{2}$/.test(s.slice(i + 1, i + 3))) {
      out.push(parseInt(s.slice(i + 1, i + 3), 16));
      i += 2;
    } else if (c === 0x5f && escape === '=') {
      out.push(0x20);
    } else if (c < 0x80) {
      out.push(c);
    } else {
      out.push(...Buffer.from(s[i], 'utf8'));
    }
  }
  return Buffer.from(out);
}

/**
 * Decodes RFC 2047 encoded words (`=?charset?B|Q?…?=`); whitespace between adjacent words is dropped.
 * Adjacent words in one charset decode as one byte run: mailers split long names inside a character.
 */
export function decodeEncodedWords(s: string): string {
  if (!s.includes('=?')) return s;
  const re = /=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=/g;
  let out = '';
  let last = 0;
  let pending: Buffer[] = [];
  let pendingCharset = '';
  const flush = () => {
    if (pending.length) out += decodeBytes(Buffer.concat(pending), pendingCharset);
    pending = [];
  };
  for (let m = re.exec(s); m; m = re.exec(s)) {
    const between = s.slice(last, m.index);
    const charset = m[1].split('*')[0]; // RFC 2231 language suffix
    const adjacent = pending.length > 0 && /^\s*$/.test(between);
    if (!adjacent || charset.toLowerCase() !== pendingCharset.toLowerCase()) flush();
    if (!adjacent) out += between;
    pendingCharset = charset;
    // a B word decodes to whole bytes on its own (its padding may end it early); the bytes of adjacent words join
    pending.push(m[2].toLowerCase() === 'b' ? Buffer.from(m[3], 'base64') : escapedBytes(m[3], '='));
    last = re.lastIndex;
  }
  flush();
  return out + s.slice(last);
}

/**
 * Parses a structured header value. Parameters: first occurrence wins; `name*0`, `name*1*` … are
 * joined; `name*=charset'lang'%xx` is decoded; quoted values are unquoted; encoded words in
 * name/filename values are decoded.
 */
export function parseHeaderValue(raw: string): HeaderValue {
  const pieces = splitOutsideQuotes(raw ?? '', ';');
  const value = unquote(pieces[0] ?? '').trim().toLowerCase();
  const plain: Record<string, string> = {};
  let continued: Map<string, Array<{ n: number; v: string; enc: boolean }>> | null = null; // RFC 2231, rare
  for (let i = 1; i < pieces.length; i++) {
    const piece = pieces[i];
    const eq = piece.indexOf('=');
    if (eq <= 0) continue; // `;;`, a bare token, or `=value` without a key
    const key = piece.slice(0, eq).trim().toLowerCase();
    const val = piece.slice(eq + 1);
    if (!key) continue;
    const m = key.includes('*') ? /^([^*]+)\*(?:(\d+)\*?|)$/.exec(key) : null;
    if (m) {
      const base = m[1];
      const enc = key.endsWith('*');
      const n = m[2] === undefined ? 0 : Number(m[2]);
      continued ??= new Map();
      const list = continued.get(base) ?? [];
      if (!list.some((x) => x.n === n)) list.push({ n, v: unquote(val), enc });
      continued.set(base, list);
    } else if (!(key in plain)) {
      plain[key] = unquote(val);
    }
  }
  if (!continued) return withDecodedNames(value, plain, []);
  const params: Record<string, string> = {};
  for (const [base, list] of continued) {
    list.sort((a, b) => a.n - b.n);
    let charset = 'utf-8';
    let text = '';
    let pending: Buffer[] = []; // adjacent encoded segments decode together: a character may span two
    const flush = () => {
      if (pending.length) text += decodeBytes(Buffer.concat(pending), charset);
      pending = [];
    };
    list.forEach((seg, i) => {
      let v = seg.v;
      if (seg.enc) {
        if (i === 0) {
          const q = /^([^']*)'[^']*'(.*)$/s.exec(v);
          if (q) {
            charset = q[1] || 'utf-8';
            v = q[2];
          }
        }
        pending.push(escapedBytes(v, '%'));
      } else {
        flush();
        text += v;
      }
    });
    flush();
    params[base] = text;
  }
  // an RFC 2231 value is the better one when both forms are present
  for (const [k, v] of Object.entries(plain)) if (!(k in params)) params[k] = v;
  return withDecodedNames(value, params, [...continued.keys()]);
}

/**
 * Encoded words in name/filename values are decoded; not in a value given in RFC 2231 form, which is
 * decoded already (as mailsplit reads it: `filename*=utf-8''a%3D%3Futf-8%3FQ%3F%3D2Eics%3F%3D` is no .ics).
 */
function withDecodedNames(value: string, params: Record<string, string>, rfc2231: string[]): HeaderValue {
  if (params.name && !rfc2231.includes('name')) params.name = decodeEncodedWords(params.name);
  if (params.filename && !rfc2231.includes('filename')) params.filename = decodeEncodedWords(params.filename);
  return { value, params };
}
