// Reading an override file for `overrides import`: CSV with a header, or JSON (what `export` writes).
// In: the file's text. CSV columns (any order, header required): key, server, url_template, off.
// JSON: [{ "key": …, "server": …, "urlTemplate": …, "off": true }, …] or { "KEY": { … }, … }.
// Out: normalised rows, or every problem found, each naming its line or entry, so the import can refuse
// as a whole (nothing half-imported). Fails: never throws.

import { checkOverride, canonicalOverride, parseOverrideKey, type KeyOptions, type Override } from './override-model.js';

export interface ImportRow {
  key: string;
  value: Override;
  /** "line 3" or "entry 2", for messages. */
  where: string;
}

const TRUE = ['true', '1', 'yes', 'on'];
const FALSE = ['', 'false', '0', 'no'];
const FIELD_ALIASES: Record<string, keyof Override | 'key'> = { key: 'key', server: 'server', url_template: 'urlTemplate', urltemplate: 'urlTemplate', off: 'off' };

/** RFC 4180 records: quoted fields may hold commas, quotes ("") and line breaks. */
function csvRecords(text: string): { records: Array<{ line: number; fields: string[] }>; error?: string } {
  const out: Array<{ line: number; fields: string[]; firstQuoted: boolean }> = [];
  let fields: string[] = [];
  let field = '';
  let quoted = false;
  let firstQuoted = false;
  let line = 1;
  let start = 1;
  let quoteLine = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i] as string;
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') { field += '"'; i++; }
      else if (c === '"') quoted = false;
      else { if (c === '\n') line++; field += c; }
    } else if (c === '"' && field === '') { quoted = true; quoteLine = line; if (fields.length === 0) firstQuoted = true; }
    else if (c === ',') { fields.push(field); field = ''; }
    else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i++;
      fields.push(field);
      out.push({ line: start, fields, firstQuoted });
      fields = []; field = ''; firstQuoted = false; line++; start = line;
    } else field += c;
  }
  // An unclosed quote would swallow the rest of the file into one field.
  if (quoted) return { records: [], error: `line ${quoteLine}: a quoted field is not closed (a " is missing)` };
  if (field !== '' || fields.length > 0) { fields.push(field); out.push({ line: start, fields, firstQuoted }); }
  // Blank lines and "#" comment lines carry nothing; a quoted "#…" is data (a key such as "#team@dom").
  const records = out.filter((r) => !(r.fields.length === 1 && r.fields[0]?.trim() === '') && !(!r.firstQuoted && r.fields[0]?.trimStart().startsWith('#')));
  return { records: records.map(({ line: l, fields: f }) => ({ line: l, fields: f })) };
}

/** The canonical name of an import field (any case, either spelling), or undefined when unknown. */
function fieldName(name: string): keyof Override | 'key' | undefined {
  // hasOwn: "constructor" or "toString" must not pass as known through the prototype.
  return Object.hasOwn(FIELD_ALIASES, name.toLowerCase()) ? FIELD_ALIASES[name.toLowerCase()] : undefined;
}

function toRow(raw: Record<string, unknown>, where: string, keyOpts: KeyOptions, errors: string[]): ImportRow | null {
  const bad = (m: string) => { errors.push(`${where}: ${m}`); return null; };
  const given: Record<string, unknown> = {};
  const spelt: Record<string, string> = {};
  for (const [name, v] of Object.entries(raw)) {
    if (name === 'v') continue; // the stored version, in a raw dump
    const canon = fieldName(name);
    if (!canon) return bad(`unknown field "${name}" (known: key, server, url_template, off)`);
    const label = canon === 'urlTemplate' ? 'url_template' : canon;
    if (Object.hasOwn(given, canon)) return bad(`${label} is given twice ("${spelt[canon]}", "${name}")`);
    given[canon] = v;
    spelt[canon] = name;
  }
  raw = given;
  const keyText = raw.key;
  if (typeof keyText !== 'string') return bad('no key (expected ADDRESS or @DOMAIN)');
  const k = parseOverrideKey(keyText, keyOpts);
  if ('error' in k) return bad(k.error);
  const str = (v: unknown, name: string): string | undefined | null => {
    if (v === undefined || v === null || v === '') return undefined;
    if (typeof v !== 'string') { bad(`${k.key}: ${name} must be a string`); return null; }
    return v;
  };
  const server = str(raw.server, 'server');
  const urlTemplate = str(raw.urlTemplate, 'url_template');
  if (server === null || urlTemplate === null) return null;
  let off = false;
  if (typeof raw.off === 'boolean') off = raw.off;
  else if (typeof raw.off === 'string' && TRUE.includes(raw.off.trim().toLowerCase())) off = true;
  else if (!(raw.off === undefined || raw.off === null || (typeof raw.off === 'string' && FALSE.includes(raw.off.trim().toLowerCase())))) {
    return bad(`${k.key}: off must be true or false (got ${JSON.stringify(raw.off)})`);
  }
  const value: Override = off ? { off: true, ...(server ? { server } : {}), ...(urlTemplate ? { urlTemplate } : {}) } : { ...(server ? { server } : {}), ...(urlTemplate ? { urlTemplate } : {}) };
  const why = checkOverride(value);
  if (why) return bad(`${k.key}: ${why}`);
  return { key: k.key, value: canonicalOverride(value), where };
}

export function parseImport(text: string, file: string, keyOpts: KeyOptions): { rows: ImportRow[]; errors: string[] } {
  const errors: string[] = [];
  const body = text.replace(/^\uFEFF/, '');
  const raws: Array<{ where: string; raw: Record<string, unknown> }> = [];
  if (/^\s*[[{]/.test(body)) {
    let data: unknown;
    try {
      data = JSON.parse(body);
    } catch (e) {
      return { rows: [], errors: [`not valid JSON: ${(e as Error).message}`] };
    }
    const entries = Array.isArray(data)
      ? data.map((d, i) => ({ where: `entry ${i + 1}`, raw: d }))
      : Object.entries(data as Record<string, unknown>).map(([key, d], i) => ({
        where: `entry ${i + 1} ("${key}")`,
        raw: typeof d === 'object' && d !== null && !Array.isArray(d) ? { ...(d as object), key } : d,
      }));
    for (const { where, raw } of entries) {
      if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) errors.push(`${where}: expected an object`);
      else raws.push({ where, raw: raw as Record<string, unknown> });
    }
  } else {
    const { records, error } = csvRecords(body);
    if (error) return { rows: [], errors: [error] };
    const header = records.shift();
    if (!header) return { rows: [], errors: [`${file} is empty (expected a CSV header "key,server,url_template,off" or JSON)`] };
    const names = header.fields.map((f) => f.trim().toLowerCase());
    const unknown = names.filter((n) => !fieldName(n));
    if (unknown.length > 0 || !names.includes('key')) {
      return { rows: [], errors: [`line ${header.line}: the CSV header must name the columns key,server,url_template,off (got "${header.fields.join(',')}")`] };
    }
    // A second column of the same field would silently win over the first.
    const twice = names.find((n, i) => names.findIndex((m) => fieldName(m) === fieldName(n)) !== i);
    if (twice !== undefined) return { rows: [], errors: [`line ${header.line}: the CSV header has the column "${twice}" given twice`] };
    for (const r of records) {
      if (r.fields.length > names.length) { errors.push(`line ${r.line}: ${r.fields.length} fields, the header has ${names.length}`); continue; }
      const raw: Record<string, unknown> = {};
      names.forEach((n, i) => { raw[fieldName(n) as string] = r.fields[i]?.trim() ?? ''; });
      raws.push({ where: `line ${r.line}`, raw });
    }
  }
  const rows: ImportRow[] = [];
  const first = new Map<string, ImportRow>();
  for (const { where, raw } of raws) {
    const row = toRow(raw, where, keyOpts, errors);
    if (!row) continue;
    const dup = first.get(row.key);
    if (dup) { errors.push(`${where}: ${row.key} is already given at ${dup.where}`); continue; }
    first.set(row.key, row);
    rows.push(row);
  }
  return { rows, errors };
}
