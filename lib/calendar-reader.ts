// Calendar reader: with lib/calendar-zone.ts the only module that imports ical.js. Turns iCalendar bytes into CalendarFacts.
// In: the decoded body of a text/calendar or .ics part, its method parameter and charset (optional).
// Out: METHOD, the master VEVENT/VTODO's identity, summary, start/end (with UTC when the zone resolves)
// and organizer. Fails soft: input over 1 MiB (or that would keep ical.js busy) is only scanned for METHOD,
// a parse error leaves that scan (else the method parameter) as the only fact, and every property is read
// in its own try/catch (warnings, never throws). Zones and durations ical.js would expand for seconds are not used.

import ICAL from 'ical.js';
import type { CalendarFacts, CalendarTime } from './types.js';
import { slimCalendar } from './calendar-slim.js';
import { zoneOffset, zonesFromText } from './calendar-zone.js';

/** Calendars larger than this are not parsed (Outlook embeds HTML and attachments in them). */
export const MAX_CALENDAR_BYTES = 1024 * 1024;

type ICalComponent = InstanceType<typeof ICAL.Component>;
type ICalTime = InstanceType<typeof ICAL.Time>;
type ICalTimezone = InstanceType<typeof ICAL.Timezone>;

// Windows zone names Outlook writes as TZID, for the rare file that omits its VTIMEZONE
// (CLDR windowsZones, territory 001).
export const WINDOWS_ZONES: ReadonlyMap<string, string> = new Map([
  ['utc', 'UTC'],
  ['gmt standard time', 'Europe/London'],
  ['w. europe standard time', 'Europe/Berlin'],
  ['romance standard time', 'Europe/Paris'],
  ['central europe standard time', 'Europe/Budapest'],
  ['central european standard time', 'Europe/Warsaw'],
  ['e. europe standard time', 'Europe/Chisinau'],
  ['fle standard time', 'Europe/Kiev'],
  ['gtb standard time', 'Europe/Bucharest'],
  ['russian standard time', 'Europe/Moscow'],
  ['eastern standard time', 'America/New_York'],
  ['central standard time', 'America/Chicago'],
  ['mountain standard time', 'America/Denver'],
  ['pacific standard time', 'America/Los_Angeles'],
  ['india standard time', 'Asia/Calcutta'],
  ['china standard time', 'Asia/Shanghai'],
  ['tokyo standard time', 'Asia/Tokyo'],
  ['korea standard time', 'Asia/Seoul'],
  ['singapore standard time', 'Asia/Singapore'],
  ['aus eastern standard time', 'Australia/Sydney'],
]);

const METHOD_NAME = /^[A-Za-z][A-Za-z0-9-]*$/;

/** "REQUEST;;", " request ", "\"Cancel\"" → "REQUEST" / "CANCEL"; anything that is not a method name → null. */
export function normalizeMethod(value: string | null | undefined): string | null {
  if (typeof value !== 'string') return null;
  if (METHOD_NAME.test(value)) return value.toUpperCase(); // the usual "REQUEST": nothing to clean
  const word = value.split(/[;,\s]/).find((w) => w.replace(/"/g, '') !== '')?.replace(/"/g, '').toUpperCase() ?? '';
  return /^[A-Z][A-Z0-9-]*$/.test(word) ? word : null;
}

/** "mailto:Ann@Example.org" / "MAILTO:…" / a bare address (Zoom) → "Ann@Example.org"; empty → null. */
export function organizerAddress(value: string | null | undefined): string | null {
  if (typeof value !== 'string') return null;
  const address = value.trim().replace(/^mailto:/i, '').trim();
  return address === '' ? null : address;
}

/**
 * Cheap METHOD scan without ical.js, for deciding whether a part is worth parsing.
 * METHOD is a VCALENDAR property; a line starting with it cannot come from escaped text values.
 */
export function readCalendarMethod(data: Buffer | string): string | null {
  const text = typeof data === 'string' ? data.slice(0, MAX_CALENDAR_BYTES) : data.subarray(0, MAX_CALENDAR_BYTES).toString('latin1');
  const m = /^METHOD(?:;[^:\r\n]*)?:[ \t]*([^\r\n]*)/im.exec(text);
  return m ? normalizeMethod(m[1]) : null;
}

/** Reads the facts of an iCalendar object. Never throws. `slim: false` parses every line (tests compare the two). */
export function readCalendar(data: Buffer | string, methodParam?: string | null, charset?: string | null, opts: { slim?: boolean } = {}): CalendarFacts {
  const facts: CalendarFacts = {
    method: null, component: null, uid: null, recurrenceId: null, sequence: null,
    summary: null, start: null, end: null, organizer: null, warnings: [],
  };
  // ical.js quotes the offending line in its errors; keep log lines short whatever the input.
  const warn = (msg: string): void => { facts.warnings.push(msg.length > 200 ? `${msg.slice(0, 199)}…` : msg); };
  const param = normalizeMethod(methodParam);
  try {
    const size = typeof data === 'string' ? Buffer.byteLength(data) : data.length;
    if (size > MAX_CALENDAR_BYTES) {
      warn(`calendar is ${size} bytes, over the ${MAX_CALENDAR_BYTES}-byte cap; not parsed`);
      facts.method = unparsedMethod(data, param, warn);
      return facts;
    }
    const text = decode(data, charset, warn).replace(/^\uFEFF/, '');
    const parsed = parseRoot(text, warn, opts.slim !== false);
    if (parsed === null) {
      facts.method = unparsedMethod(text, param, warn);
      return facts;
    }
    readFacts(parsed.root, facts, warn, parsed.zones);
    if (facts.method === null && param !== null) {
      warn('no METHOD inside the calendar; the method parameter was used');
      facts.method = param;
    } else if (param !== null && facts.method !== null && facts.method !== param) {
      warn(`method parameter ${param} disagrees with METHOD:${facts.method} inside; METHOD inside wins`);
    }
  } catch (err) {
    // Belt and braces: nothing above should throw, but a calendar must never stop delivery.
    warn(`calendar read failed: ${(err as Error).message}`);
    facts.method ??= param;
  }
  return facts;
}

/** METHOD of a calendar that was not parsed: a METHOD line inside still wins over the parameter. */
function unparsedMethod(data: Buffer | string, param: string | null, warn: (m: string) => void): string | null {
  const inside = readCalendarMethod(data);
  if (inside !== null && param !== null && inside !== param) {
    warn(`method parameter ${param} disagrees with METHOD:${inside} inside; METHOD inside wins`);
  }
  return inside ?? param;
}

// Made once: a decoder is stateless between whole-buffer decode() calls, and building one costs more than a small calendar.
const UTF8_STRICT = new TextDecoder('utf-8', { fatal: true });
const WINDOWS_1252 = new TextDecoder('windows-1252');

/** Bytes → text. RFC 5545 says UTF-8; a declared other charset is honoured, invalid UTF-8 falls back to windows-1252. */
function decode(data: Buffer | string, charset: string | null | undefined, warn: (m: string) => void): string {
  if (typeof data === 'string') return data;
  const label = (charset ?? '').trim().toLowerCase();
  if (label !== '' && !['utf-8', 'utf8', 'us-ascii', 'ascii'].includes(label)) {
    try {
      return new TextDecoder(label).decode(data);
    } catch {
      warn(`unknown charset "${charset}"; read as UTF-8`);
    }
  }
  try {
    return UTF8_STRICT.decode(data);
  } catch {
    warn('calendar is not valid UTF-8; read as windows-1252');
    return WINDOWS_1252.decode(data);
  }
}

/**
 * The VCALENDAR to read, or null when the text does not parse. `zones`: the calendar's VTIMEZONEs
 * when they were cut out before parsing (see parseSlim), else null (ical.js found them itself).
 */
function parseRoot(text: string, warn: (m: string) => void, trySlim: boolean): { root: ICalComponent; zones: ICalTimezone[] | null } | null {
  const scan = parameterScanCost(text);
  if (scan > MAX_PARAMETER_SCAN) {
    warn(`calendar has content lines with thousands of parameters (cost ${scan}); not parsed`);
    return null;
  }
  const slim = trySlim ? parseSlim(text) : null;
  if (slim) return slim;
  const root = parseFull(text, warn);
  return root ? { root, zones: null } : null;
}

/**
 * The plain, well-formed case, cheaply: ical.js parses only the lines readFacts reads, and the zones
 * come from the cache of lib/calendar-zone.ts. Null for anything else (several objects, a line ical.js
 * rejects, an unusable VTIMEZONE …): parseFull then reads it as it always did, warnings included.
 */
function parseSlim(text: string): { root: ICalComponent; zones: ICalTimezone[] } | null {
  const slim = slimCalendar(text);
  const zones = slim ? zonesFromText(slim.zones) : null;
  if (!slim || !zones) return null;
  try {
    const jcal: unknown = ICAL.parse(slim.text);
    if (!Array.isArray(jcal) || jcal[0] !== 'vcalendar') return null;
    return { root: new ICAL.Component(jcal), zones };
  } catch {
    return null;
  }
}

/** The whole text through ical.js (repaired once when it throws); the VCALENDAR to read, or null. */
function parseFull(text: string, warn: (m: string) => void): ICalComponent | null {
  let jcal: unknown;
  try {
    jcal = ICAL.parse(text);
  } catch (err) {
    // ical.js rejects the whole object for one bad RRULE or a missing END (a truncated part);
    // the rest is usually worth reading, so try once more on a repaired copy.
    const repaired = repair(text);
    try {
      if (repaired.fixes.length === 0) throw err;
      jcal = ICAL.parse(repaired.text);
      warn(`calendar repaired (${repaired.fixes.join('; ')}) after: ${(err as Error).message}`);
    } catch {
      warn(`calendar does not parse: ${(err as Error).message}`);
      return null;
    }
  }
  if (!Array.isArray(jcal) || jcal.length === 0) { warn('calendar is empty'); return null; }
  // One object parses to ['vcalendar', props, comps]; several to an array of those.
  const roots: unknown[] = Array.isArray(jcal[0]) ? jcal : [jcal];
  if (roots.length > 1) warn(`${roots.length} calendar objects; the first with an event or task is read`);
  let chosen: ICalComponent | null = null;
  for (const r of roots) {
    try {
      const c = new ICAL.Component(r as unknown[]);
      chosen ??= c;
      if (c.getFirstSubcomponent('vevent') || c.getFirstSubcomponent('vtodo')) { chosen = c; break; }
    } catch {
      // a malformed jCal root: try the next one
    }
  }
  if (chosen === null) warn('calendar has no readable object');
  return chosen;
}

/** Beyond this, ical.js's parameter parsing costs more than a millisecond or two (measured ~1e11 per second). */
const MAX_PARAMETER_SCAN = 100_000_000;

/**
 * What ical.js's parameter parser will cost: for each parameter it searches the rest of the line for
 * ':' again, so a line with n parameters in a name-and-parameter section of length L costs about n × L.
 * Summed over content lines; values (after the first ':' outside quotes) are skipped, they are not rescanned.
 */
function parameterScanCost(text: string): number {
  // every ';' counted against the whole text bounds the sum from above: ordinary calendars stop here,
  // with one native pass instead of a JavaScript loop over every character
  let semicolons = 0;
  for (let i = text.indexOf(';'); i >= 0; i = text.indexOf(';', i + 1)) semicolons++;
  if (semicolons * text.length <= MAX_PARAMETER_SCAN) return semicolons * text.length;
  let cost = 0;
  for (let i = 0; i < text.length; i = lineEnd(text, i) + 1) {
    let params = 0;
    let quoted = false;
    const start = i;
    for (; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c === 0x0a && !isFold(text, i)) break;
      if (c === 0x22) quoted = !quoted;
      else if (c === 0x3b && !quoted) params++;
      else if (c === 0x3a && !quoted) break;
    }
    cost += params * (i - start);
  }
  return cost;
}

const isFold = (text: string, nl: number): boolean => text[nl + 1] === ' ' || text[nl + 1] === '\t';

/** Index of the LF ending the (unfolded) content line that contains `from`, or the text length. */
function lineEnd(text: string, from: number): number {
  let nl = text.indexOf('\n', from);
  while (nl >= 0 && isFold(text, nl)) nl = text.indexOf('\n', nl + 1);
  return nl < 0 ? text.length : nl;
}

/** Drops recurrence lines (ical.js throws on a bad RRULE at parse time) and closes unterminated components. */
function repair(text: string): { text: string; fixes: string[] } {
  const fixes: string[] = [];
  let out = text.replace(/^(?:RRULE|EXRULE|RDATE|EXDATE)[;:][^\r\n]*(?:\r?\n[ \t][^\r\n]*)*(?:\r?\n|$)/gim, '');
  if (out !== text) fixes.push('recurrence rules dropped');
  const open: string[] = [];
  for (const m of out.matchAll(/^(BEGIN|END):([A-Za-z0-9-]+)[ \t]*\r?$/gim)) {
    if (m[1].toUpperCase() === 'BEGIN') open.push(m[2].toUpperCase());
    else if (open.length > 0 && open[open.length - 1] === m[2].toUpperCase()) open.pop();
  }
  if (open.length > 0) {
    // A cut-off body may end mid-line: drop that partial line before closing.
    if (!/\n$/.test(out)) out = out.replace(/[^\n]*$/, '');
    out += open.reverse().map((name) => `END:${name}\r\n`).join('');
    fixes.push(`unterminated ${open.join(', ')} closed`);
  }
  return { text: out, fixes };
}

function readFacts(root: ICalComponent, facts: CalendarFacts, warn: (m: string) => void, zones: ICalTimezone[] | null): void {
  const get = <T>(what: string, read: () => T): T | null => {
    try {
      return read();
    } catch (err) {
      warn(`${what} unreadable: ${(err as Error).message}`);
      return null;
    }
  };
  const isCalendar = root.name === 'vcalendar';
  if (!isCalendar) warn(`top-level object is ${root.name.toUpperCase()}, not VCALENDAR`);
  facts.method = isCalendar ? get('METHOD', () => normalizeMethod(asText(root.getFirstPropertyValue('method')))) : null;

  const master = get('component', () => pickMaster(root));
  if (!master) { warn('no VEVENT, VTODO, VJOURNAL or VFREEBUSY inside'); return; }
  facts.component = master.name.toUpperCase();
  facts.uid = get('UID', () => asText(master.getFirstPropertyValue('uid')));
  facts.summary = get('SUMMARY', () => asText(master.getFirstPropertyValue('summary')));
  facts.recurrenceId = get('RECURRENCE-ID', () => {
    const prop = master.getFirstProperty('recurrence-id');
    return prop ? asText(prop.jCal[3]) : null;
  });
  facts.sequence = get('SEQUENCE', () => {
    const v = master.getFirstPropertyValue('sequence');
    return typeof v === 'number' && Number.isFinite(v) ? v : null;
  });
  facts.organizer = get('ORGANIZER', () => organizerAddress(asText(master.getFirstPropertyValue('organizer'))));
  const start = get('DTSTART', () => readTime(master, 'dtstart', zones));
  facts.start = start ? toCalendarTime(start.time, start.tzid, warn) : null;
  const end = get('DTEND', () => readTime(master, master.name === 'vtodo' ? 'due' : 'dtend', zones));
  if (end) {
    facts.end = toCalendarTime(end.time, end.tzid, warn);
  } else if (start) {
    facts.end = get('DURATION', () => {
      const dur = master.getFirstPropertyValue('duration');
      if (!(dur instanceof ICAL.Duration)) return null;
      // ical.js adds days month by month: P199999999W would keep it busy for seconds.
      if (Math.abs(dur.toSeconds()) > MAX_DURATION_SECONDS) throw new Error(`${dur.toString()} is longer than a century`);
      const t = start.time.clone();
      t.addDuration(dur);
      return toCalendarTime(t, start.tzid, warn);
    });
  }
}

/** The master VEVENT (or VTODO …): the first one without RECURRENCE-ID, else the first. */
function pickMaster(root: ICalComponent): ICalComponent | null {
  const subs = root.name === 'vcalendar' ? root.getAllSubcomponents() : [root];
  for (const names of [['vevent', 'vtodo'], ['vjournal', 'vfreebusy']]) {
    const pool = subs.filter((c) => names.includes(c.name));
    if (pool.length === 0) continue;
    const same = pool.filter((c) => c.name === pool[0].name);
    return same.find((c) => !c.hasProperty('recurrence-id')) ?? same[0];
  }
  return null;
}

function asText(v: unknown): string | null {
  if (v === null || v === undefined) return null;
  const s = String(v).trim();
  return s === '' ? null : s;
}

function readTime(comp: ICalComponent, name: string, zones: ICalTimezone[] | null): { time: ICalTime; tzid: string | null } | null {
  const prop = comp.getFirstProperty(name);
  if (!prop) return null;
  const value = prop.getFirstValue(); // decodes lazily: a bad date throws here
  if (!(value instanceof ICAL.Time)) throw new Error(`not a date or date-time`);
  const tz = prop.getParameter('tzid');
  // zones cut out before parsing: bind the time as ical.js would have (a UTC "Z" time and a date keep no zone;
  // ical.js looks up only a non-empty TZID, and a VTIMEZONE may have an empty one)
  const written = prop.jCal[3];
  if (zones && typeof tz === 'string' && tz !== '' && !value.isDate && !(typeof written === 'string' && written.endsWith('Z'))) {
    const zone = zones.find((z) => z.tzid === tz);
    if (zone) value.zone = zone;
  }
  return { time: value, tzid: typeof tz === 'string' && tz.trim() !== '' ? tz.trim() : null };
}

/** No real event lasts longer; larger durations are only added by looping. */
const MAX_DURATION_SECONDS = 100 * 366 * 86_400;

const two = (n: number): string => String(n).padStart(2, '0');

function toCalendarTime(t: ICalTime, tzParam: string | null, warn: (m: string) => void): CalendarTime {
  const date = `${String(t.year).padStart(4, '0')}-${two(t.month)}-${two(t.day)}`;
  if (t.isDate) return { local: date, tzid: tzParam, utc: null, allDay: true };
  const local = `${date}T${two(t.hour)}:${two(t.minute)}:${two(t.second)}`;
  const zone = t.zone;
  const isUtc = zone === ICAL.Timezone.utcTimezone || zone?.tzid === 'UTC';
  // RFC 5545 3.3.5: a TZID does not apply to a UTC ("Z") time; labelling it with the TZID would shift it.
  const tzid = isUtc ? 'UTC' : tzParam;
  let utc: string | null = null;
  try {
    const offset = zone && zone !== ICAL.Timezone.localTimezone && zone.tzid !== 'floating' ? zoneOffset(t, warn) : null;
    if (offset !== null) {
      // Z, a VTIMEZONE in the same file, or UTC/GMT: ical.js knows the offset.
      utc = isoSeconds(utcDate(t.year, t.month, t.day, t.hour, t.minute, t.second - offset));
    } else if (tzParam !== null) {
      const iana = WINDOWS_ZONES.get(tzParam.toLowerCase()) ?? tzParam;
      utc = zonedTimeToUtc(local, iana);
      if (utc === null) warn(`time zone "${tzParam}" has no VTIMEZONE and is not a known zone name`);
    }
  } catch (err) {
    warn(`time ${local} ${tzid ?? ''} could not be converted to UTC: ${(err as Error).message}`);
    utc = null;
  }
  return { local, tzid, utc, allDay: false };
}

/** Date.UTC, but years 0-99 stay themselves (Date.UTC reads them as 1900-1999). */
function utcDate(year: number, month: number, day: number, hour: number, minute: number, second: number): Date {
  const d = new Date(0);
  d.setUTCFullYear(year, month - 1, day);
  d.setUTCHours(hour, minute, second);
  return d;
}

function isoSeconds(d: Date): string {
  return d.toISOString().slice(0, -5) + 'Z'; // toISOString always ends in ".sssZ"
}

const formatters = new Map<string, Intl.DateTimeFormat>();

function formatterFor(timeZone: string): Intl.DateTimeFormat | null {
  let f = formatters.get(timeZone);
  if (f) return f;
  try {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone, hourCycle: 'h23', year: 'numeric', month: '2-digit', day: '2-digit',
      hour: '2-digit', minute: '2-digit', second: '2-digit',
    });
  } catch {
    return null; // RangeError: not a zone name Intl knows
  }
  if (formatters.size < 500) formatters.set(timeZone, f); // bounded: TZIDs come from mail
  return f;
}

/** Offset (ms) of the zone at an instant: its wall clock read as if it were UTC, minus the instant. */
function offsetAt(f: Intl.DateTimeFormat, instant: number): number {
  const p: Record<string, number> = {};
  for (const part of f.formatToParts(new Date(instant))) {
    if (part.type !== 'literal') p[part.type] = Number(part.value);
  }
  return Date.UTC(p.year, p.month - 1, p.day, p.hour, p.minute, p.second) - Math.floor(instant / 1000) * 1000;
}

/**
 * Wall-clock time ("2026-12-01T10:00:00") in an IANA zone → UTC ISO string, or null when the zone
 * is unknown. As RFC 5545 3.3.5 asks: a time that occurs twice is the first one, a time skipped
 * by a DST gap is read with the offset from before the gap.
 */
export function zonedTimeToUtc(local: string, timeZone: string): string | null {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})$/.exec(local);
  const f = formatterFor(timeZone);
  if (!m || !f) return null;
  const wall = Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6]);
  if (!Number.isFinite(wall)) return null;
  // Zones change offset at most once within a day, so the offsets a day before and after are the
  // only candidates; a candidate is right when the zone really has that offset at the result.
  const DAY = 86_400_000;
  const before = offsetAt(f, wall - DAY);
  const after = offsetAt(f, wall + DAY);
  const valid = [wall - before, wall - after].filter((i) => offsetAt(f, i) === wall - i);
  const instant = valid.length > 0 ? Math.min(...valid) : wall - before;
  return isoSeconds(new Date(instant));
}
