// Whole-event reading and writing for the built-in web view: the second (and last) module that imports
// ical.js. calendar-reader.ts answers "what is this message?" for the filter; this one reads the full
// event a page shows, expands recurrences (capped), and writes the iCalendar the view hands out: the
// "add to my calendar" copy, the stripped copy kept in storage, and the iTIP REPLY (RFC 5546 §3.2.3).
// In: iCalendar text (already decoded). Out: plain types (EventDetails …), never ical.js objects.
// Fails: readEvent/occurrences never throw (null / [] plus warnings); buildReply throws ReplyError
// when the request lacks what a REPLY must copy (UID, ORGANIZER, the attendee).

import ICAL from 'ical.js';
import { WINDOWS_ZONES, zonedTimeToUtc } from './calendar-reader.js';
import { zoneOffset } from './calendar-zone.js';

type Comp = InstanceType<typeof ICAL.Component>;
type Prop = InstanceType<typeof ICAL.Property>;
type ITime = InstanceType<typeof ICAL.Time>;

/** Iterations allowed per series per call (a weekday stand-up since 2015 is ~3,100). */
export const MAX_OCCURRENCES = 5000;

export interface EventTime {
  /** As written: "2026-12-01T10:00:00" or "2026-12-01" (all-day). */
  local: string;
  /** TZID as written, "UTC", or null (floating / all-day). */
  tzid: string | null;
  /** IANA name Intl knows for tzid (Windows names mapped), or null. */
  zone: string | null;
  /** Epoch ms of the instant; null for all-day and floating times (and unknown zones). */
  utc: number | null;
  allDay: boolean;
  /** No zone at all (RFC 5545 floating), or a TZID nobody knows: shown as written. */
  floating: boolean;
}

export interface EventPerson {
  /** The property value exactly as written ("mailto:Ann@Example.org"), echoed in a REPLY. */
  value: string;
  /** Address without mailto:, as written. */
  address: string;
  cn: string | null;
  partstat: string | null;
  role: string | null;
  cutype: string | null;
  rsvp: boolean;
}

export interface RecurrenceRule {
  freq: string;
  interval: number;
  count: number | null;
  until: EventTime | null;
  byDay: string[];
  byMonthDay: number[];
  byMonth: number[];
  /** The RRULE as written, for the fallback text. */
  text: string;
}

export interface EventDetails {
  method: string | null;
  component: string;
  uid: string | null;
  /** RECURRENCE-ID of the chosen component as written (instance requests/cancels), or null (master). */
  recurrenceId: string | null;
  /** RANGE=THISANDFUTURE on the RECURRENCE-ID. */
  thisAndFuture: boolean;
  /** SEQUENCE, falling back to X-MICROSOFT-CDO-APPT-SEQUENCE when 0 or absent. */
  sequence: number;
  /** DTSTAMP as "YYYYMMDDTHHMMSSZ" (sorts as text), or "". */
  stamp: string;
  status: string | null;
  summary: string | null;
  location: string | null;
  description: string | null;
  url: string | null;
  /** First https URL among the Teams/Google conference properties, URL and LOCATION. */
  join: string | null;
  start: EventTime | null;
  end: EventTime | null;
  rrule: RecurrenceRule | null;
  exdates: EventTime[];
  /** Exceptions in the same object: moved (new start) or cancelled instances. */
  moved: Array<{ recurrenceId: EventTime; start: EventTime | null; cancelled: boolean }>;
  organizer: EventPerson | null;
  attendees: EventPerson[];
  /** Epoch ms of the first start and the last end (null = never ends or unknown). */
  firstStart: number | null;
  lastEnd: number | null;
  warnings: string[];
}

export interface Occurrence {
  start: EventTime;
  end: EventTime | null;
  /** Sort/overlap key in epoch ms (all-day and floating read as UTC midnight / UTC wall time). */
  startMs: number;
  endMs: number;
  recurrenceId: string | null;
  summary: string | null;
}

export class ReplyError extends Error {}

const two = (n: number) => String(n).padStart(2, '0');

function zoneFor(tzid: string | null): string | null {
  if (!tzid) return null;
  const name = WINDOWS_ZONES.get(tzid.toLowerCase()) ?? tzid;
  try {
    new Intl.DateTimeFormat('en', { timeZone: name });
    return name;
  } catch {
    return null;
  }
}

/** No real event lasts longer; ical.js adds larger durations month by month (seconds of event loop). */
const MAX_DURATION_SECONDS = 100 * 366 * 86_400;

function checkDuration(dur: InstanceType<typeof ICAL.Duration>): void {
  if (Math.abs(dur.toSeconds()) > MAX_DURATION_SECONDS) throw new Error(`${dur.toString()} is longer than a century`);
}

/** Wall-clock fields read as UTC, in ms (years 0-99 stay themselves). */
function wallMs(t: ITime): number {
  const d = new Date(0);
  d.setUTCFullYear(t.year, t.month - 1, t.day);
  d.setUTCHours(t.hour, t.minute, t.second);
  return d.getTime();
}

/**
 * An ical.js time plus the TZID parameter it came with → EventTime (the instant computed as calendar-reader does:
 * through lib/calendar-zone.ts, never ical.js's own expansion of the zone from 1601, which a hostile VTIMEZONE
 * turns into seconds; a zone too costly to expand falls back to its name).
 */
function toEventTime(t: ITime, tzParam: string | null, warn: (m: string) => void = () => undefined): EventTime {
  const date = `${String(t.year).padStart(4, '0')}-${two(t.month)}-${two(t.day)}`;
  if (t.isDate) return { local: date, tzid: null, zone: null, utc: null, allDay: true, floating: false };
  const local = `${date}T${two(t.hour)}:${two(t.minute)}:${two(t.second)}`;
  const z = t.zone;
  const isUtc = z === ICAL.Timezone.utcTimezone || z?.tzid === 'UTC';
  const tzid = tzParam ?? (isUtc ? 'UTC' : null);
  const zone = isUtc ? 'UTC' : zoneFor(tzParam);
  if (z && z !== ICAL.Timezone.localTimezone && z.tzid !== 'floating') {
    const offset = zoneOffset(t, warn);
    if (offset !== null) return { local, tzid, zone, utc: wallMs(t) - offset * 1000, allDay: false, floating: false };
  }
  const iso = zone ? zonedTimeToUtc(local, zone) : null;
  return { local, tzid, zone, utc: iso ? Date.parse(iso) : null, allDay: false, floating: iso === null };
}

/** Milliseconds for ordering: the instant, else the wall time read as UTC. */
export function sortMs(t: EventTime): number {
  if (t.utc !== null) return t.utc;
  return Date.parse(t.allDay ? `${t.local}T00:00:00Z` : `${t.local}Z`);
}

function text(v: unknown): string | null {
  if (v === null || v === undefined) return null;
  const s = String(v);
  return s.trim() === '' ? null : s;
}

function parse(input: string): Comp | null {
  try {
    const jcal = ICAL.parse(input.replace(/^\uFEFF/, ''));
    const root = Array.isArray(jcal[0]) ? (jcal as unknown[])[0] : jcal;
    return new ICAL.Component(root as unknown[]);
  } catch {
    return null;
  }
}

function pickMain(root: Comp): Comp | null {
  const subs = root.name === 'vcalendar' ? root.getAllSubcomponents() : [root];
  const pool = subs.filter((c) => c.name === 'vevent' || c.name === 'vtodo');
  return pool.find((c) => !c.hasProperty('recurrence-id')) ?? pool[0] ?? null;
}

function person(p: Prop | null): EventPerson | null {
  if (!p) return null;
  const value = text(p.getFirstValue());
  if (!value) return null;
  const param = (n: string) => { const v = p.getParameter(n); return typeof v === 'string' && v.trim() ? v.trim() : null; };
  return {
    value,
    address: value.replace(/^mailto:/i, '').trim(),
    cn: param('cn'),
    partstat: param('partstat')?.toUpperCase() ?? null,
    role: param('role')?.toUpperCase() ?? null,
    cutype: param('cutype')?.toUpperCase() ?? null,
    rsvp: param('rsvp')?.toUpperCase() === 'TRUE',
  };
}

function timeProp(c: Comp, name: string, warn?: (m: string) => void): EventTime | null {
  const p = c.getFirstProperty(name);
  if (!p) return null;
  const v = p.getFirstValue();
  if (!(v instanceof ICAL.Time)) return null;
  const tz = p.getParameter('tzid');
  return toEventTime(v, typeof tz === 'string' && tz.trim() ? tz.trim() : null, warn);
}

function stampOf(c: Comp): string {
  const v = c.getFirstPropertyValue('dtstamp');
  if (!(v instanceof ICAL.Time)) return '';
  const t = toEventTime(v, null);
  if (t.utc === null) return '';
  return new Date(t.utc).toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');
}

function sequenceOf(c: Comp): number {
  const s = c.getFirstPropertyValue('sequence');
  const n = typeof s === 'number' && Number.isFinite(s) ? s : 0;
  if (n > 0) return n;
  const cdo = Number(text(c.getFirstPropertyValue('x-microsoft-cdo-appt-sequence')) ?? 'NaN');
  return Number.isSafeInteger(cdo) && cdo > 0 ? cdo : n;
}

function rruleOf(c: Comp, tzParam: string | null): RecurrenceRule | null {
  const r = c.getFirstPropertyValue('rrule');
  if (!(r instanceof ICAL.Recur)) return null;
  const parts = (r.parts ?? {}) as Record<string, unknown[]>;
  return {
    freq: String(r.freq ?? ''),
    interval: r.interval || 1,
    count: typeof r.count === 'number' ? r.count : null,
    until: r.until ? toEventTime(r.until, r.until.isDate ? null : tzParam) : null,
    byDay: (parts.BYDAY ?? []).map(String),
    byMonthDay: (parts.BYMONTHDAY ?? []).map(Number),
    byMonth: (parts.BYMONTH ?? []).map(Number),
    text: r.toString(),
  };
}

const JOIN_PROPS = ['x-microsoft-skypeteamsmeetingurl', 'x-google-conference', 'url', 'location'];

function joinUrl(c: Comp): string | null {
  for (const name of JOIN_PROPS) {
    const v = text(c.getFirstPropertyValue(name));
    const m = v ? /https:\/\/[^\s<>"]+/i.exec(v) : null;
    if (m) return m[0];
  }
  return null;
}

/** The event of one iCalendar object (master, else the first instance), or null when it does not parse. */
export function readEvent(input: string): EventDetails | null {
  const root = parse(input);
  if (!root) return null;
  const main = pickMain(root);
  if (!main) return null;
  const warnings: string[] = [];
  const get = <T>(what: string, fn: () => T, dflt: T): T => {
    try { return fn(); } catch (e) { warnings.push(`${what}: ${(e as Error).message.slice(0, 120)}`); return dflt; }
  };
  const zoneWarn = (m: string): void => { if (!warnings.includes(m)) warnings.push(m.slice(0, 200)); };
  const start = get('DTSTART', () => timeProp(main, 'dtstart', zoneWarn), null);
  let end = get('DTEND', () => timeProp(main, main.name === 'vtodo' ? 'due' : 'dtend', zoneWarn), null);
  if (!end && start) {
    end = get('DURATION', () => {
      const dur = main.getFirstPropertyValue('duration');
      const p = main.getFirstProperty('dtstart');
      const st = p?.getFirstValue();
      if (!(dur instanceof ICAL.Duration) || !(st instanceof ICAL.Time)) return null;
      checkDuration(dur);
      const t = st.clone();
      t.addDuration(dur);
      const tz = p?.getParameter('tzid');
      return toEventTime(t, typeof tz === 'string' ? tz : null, zoneWarn);
    }, null);
  }
  const ridProp = main.getFirstProperty('recurrence-id');
  const tzParam = start?.tzid && start.tzid !== 'UTC' ? start.tzid : null;
  const uid = text(main.getFirstPropertyValue('uid'));
  const siblings = root.name === 'vcalendar'
    ? root.getAllSubcomponents(main.name).filter((c) => c !== main && c.hasProperty('recurrence-id') && text(c.getFirstPropertyValue('uid')) === uid)
    : [];
  const details: EventDetails = {
    method: root.name === 'vcalendar' ? text(root.getFirstPropertyValue('method'))?.toUpperCase() ?? null : null,
    component: main.name.toUpperCase(),
    uid,
    recurrenceId: ridProp ? get('RECURRENCE-ID', () => text(ridProp.toICALString().replace(/^[^:]*:/, '')), null) : null,
    thisAndFuture: ridProp ? String(ridProp.getParameter('range') ?? '').toUpperCase() === 'THISANDFUTURE' : false,
    sequence: get('SEQUENCE', () => sequenceOf(main), 0),
    stamp: get('DTSTAMP', () => stampOf(main), ''),
    status: text(main.getFirstPropertyValue('status'))?.toUpperCase() ?? null,
    summary: get('SUMMARY', () => text(main.getFirstPropertyValue('summary')), null),
    location: get('LOCATION', () => text(main.getFirstPropertyValue('location')), null),
    description: get('DESCRIPTION', () => text(main.getFirstPropertyValue('description')), null),
    url: get('URL', () => text(main.getFirstPropertyValue('url')), null),
    join: get('join', () => joinUrl(main), null),
    start,
    end,
    rrule: get('RRULE', () => rruleOf(main, tzParam), null),
    exdates: get('EXDATE', () => main.getAllProperties('exdate').flatMap((p) => p.getValues().filter((v): v is ITime => v instanceof ICAL.Time).map((v) => toEventTime(v, v.isDate ? null : (p.getParameter('tzid') as string | undefined) ?? null))), []),
    moved: get('exceptions', () => siblings.map((c) => ({
      recurrenceId: timeProp(c, 'recurrence-id') as EventTime,
      start: timeProp(c, 'dtstart'),
      cancelled: String(c.getFirstPropertyValue('status') ?? '').toUpperCase() === 'CANCELLED',
    })).filter((m) => m.recurrenceId), []),
    organizer: get('ORGANIZER', () => person(main.getFirstProperty('organizer')), null),
    attendees: get('ATTENDEE', () => main.getAllProperties('attendee').map(person).filter((p): p is EventPerson => p !== null), []),
    firstStart: null,
    lastEnd: null,
    warnings,
  };
  details.firstStart = start ? sortMs(start) : null;
  const bounds = get('recurrence', () => lastEnd(root, main, details), null);
  details.lastEnd = bounds;
  return details;
}

/** End of the last occurrence in epoch ms; null for a rule without end (or one past the cap). */
function lastEnd(root: Comp, main: Comp, d: EventDetails): number | null {
  if (!d.start) return null;
  const len = d.end ? sortMs(d.end) - sortMs(d.start) : d.start.allDay ? 86_400_000 : 0;
  if (!d.rrule && !main.hasProperty('rdate')) {
    const ends = [sortMs(d.start) + len, ...d.moved.map((m) => (m.start ? sortMs(m.start) + len : 0))];
    return Math.max(...ends);
  }
  if (d.rrule && d.rrule.count === null && d.rrule.until === null) return null;
  const all = expand(root, main, -Infinity, Infinity, MAX_OCCURRENCES + 1);
  if (all.length > MAX_OCCURRENCES) return null;
  return all.length ? Math.max(...all.map((o) => o.endMs)) : sortMs(d.start) + len;
}

const SUB_DAILY: ReadonlySet<string> = new Set(['HOURLY', 'MINUTELY', 'SECONDLY']);
/** BY parts that only limit a DAILY rule: ical.js steps day by day past every date they reject. */
const DAILY_LIMITS = ['BYMONTH', 'BYMONTHDAY', 'BYYEARDAY', 'BYWEEKNO', 'BYSETPOS'];

/**
 * Why ical.js must not expand this event, or null. Its iterator steps one FREQ unit at a time past every
 * candidate the BY parts reject, inside a single next() call: FREQ=DAILY;BYMONTH=2;BYMONTHDAY=29 or an
 * HOURLY/MINUTELY/SECONDLY rule with any BY part keeps it busy for minutes (no real invitation uses them).
 * A huge DURATION is added month by month to every occurrence; a zone too costly for lib/calendar-zone.ts
 * is expanded from its DTSTART (1601) by ical.js's own UTC conversion of each occurrence.
 */
function expansionRefusal(main: Comp, start: ITime | null): string | null {
  for (const r of main.getAllProperties('rrule').map((p) => p.getFirstValue())) {
    if (!(r instanceof ICAL.Recur)) continue;
    const parts = Object.keys(r.parts ?? {});
    if ((SUB_DAILY.has(String(r.freq)) && parts.length > 0) || (r.freq === 'DAILY' && parts.some((p) => DAILY_LIMITS.includes(p)))) {
      return `RRULE ${r.toString().slice(0, 80)} would be stepped through unit by unit; not expanded`;
    }
  }
  const dur = main.getFirstPropertyValue('duration');
  if (dur instanceof ICAL.Duration) checkDuration(dur);
  const recurring = main.hasProperty('rrule') || main.hasProperty('rdate');
  if (recurring && start && !start.isDate && start.zone && start.zone !== ICAL.Timezone.localTimezone && start.zone.tzid !== 'floating') {
    let refusal: string | null = null;
    if (zoneOffset(start, (m) => { refusal = m; }) === null) return refusal ?? 'time zone not usable; not expanded';
  }
  return null;
}

function expand(root: Comp, main: Comp, fromMs: number, toMs: number, cap: number): Occurrence[] {
  const startValue = main.getFirstPropertyValue('dtstart');
  const refusal = expansionRefusal(main, startValue instanceof ICAL.Time ? startValue : null);
  if (refusal !== null) throw new Error(refusal);
  const uid = text(main.getFirstPropertyValue('uid'));
  const exceptions = root.name === 'vcalendar'
    ? root.getAllSubcomponents(main.name).filter((c) => c !== main && c.hasProperty('recurrence-id') && text(c.getFirstPropertyValue('uid')) === uid)
    : [];
  const ev = new ICAL.Event(main, { exceptions, strictExceptions: false });
  const tz = main.getFirstProperty('dtstart')?.getParameter('tzid');
  const tzParam = typeof tz === 'string' ? tz : null;
  const out: Occurrence[] = [];
  if (!ev.isRecurring()) {
    const s = toEventTime(ev.startDate, tzParam);
    const e = ev.endDate ? toEventTime(ev.endDate, tzParam) : null;
    const o = { start: s, end: e, startMs: sortMs(s), endMs: e ? sortMs(e) : sortMs(s), recurrenceId: null, summary: ev.summary ?? null };
    return o.endMs >= fromMs && o.startMs <= toMs ? [o] : [];
  }
  const it = ev.iterator();
  let next: ITime | null;
  let n = 0;
  while ((next = it.next()) && n < cap) {
    n++;
    const det = ev.getOccurrenceDetails(next);
    const sTz = det.item.component.getFirstProperty('dtstart')?.getParameter('tzid');
    const zoneParam = typeof sTz === 'string' ? sTz : tzParam;
    const s = toEventTime(det.startDate, zoneParam);
    const e = det.endDate ? toEventTime(det.endDate, zoneParam) : null;
    const startMs = sortMs(s);
    if (startMs > toMs) break;
    const endMs = e ? sortMs(e) : startMs;
    if (String(det.item.component.getFirstPropertyValue('status') ?? '').toUpperCase() === 'CANCELLED') continue;
    if (endMs < fromMs) continue;
    out.push({ start: s, end: e, startMs, endMs, recurrenceId: det.recurrenceId.toICALString(), summary: det.item.summary ?? null });
  }
  return out;
}

/** Occurrences of the object's main event that overlap [fromMs, toMs], at most `cap` iterations. */
export function occurrences(input: string, fromMs: number, toMs: number, cap = MAX_OCCURRENCES): Occurrence[] {
  const root = parse(input);
  const main = root ? pickMain(root) : null;
  if (!root || !main || !main.hasProperty('dtstart')) return [];
  try {
    return expand(root, main, fromMs, toMs, cap);
  } catch {
    return [];
  }
}

function serialize(c: Comp): string {
  const s = c.toString();
  return s.endsWith('\r\n') ? s : `${s}\r\n`;
}

const STRIP_PROPS = ['x-alt-desc'];

/** The copy kept in storage: no VALARM, no X-ALT-DESC, no inline binary ATTACH. Unparseable input is kept as is. */
export function stripForStorage(input: string): string {
  const root = parse(input);
  if (!root) return input;
  for (const c of root.getAllSubcomponents()) {
    for (const a of c.getAllSubcomponents('valarm')) c.removeSubcomponent(a);
    for (const name of STRIP_PROPS) c.removeAllProperties(name);
    for (const p of c.getAllProperties('attach')) if (p.type === 'binary' || p.getParameter('encoding')) c.removeProperty(p);
  }
  return serialize(root);
}

/** "Add to my calendar": no METHOD, only this UID's components and the zones they use. */
export function addToCalendarCopy(input: string): string | null {
  const root = parse(input);
  const main = root ? pickMain(root) : null;
  if (!root || !main) return null;
  const uid = text(main.getFirstPropertyValue('uid'));
  const out = new ICAL.Component(['vcalendar', [], []]);
  out.addPropertyWithValue('prodid', '-//calendar-link-filter//web view//EN');
  out.addPropertyWithValue('version', '2.0');
  for (const c of root.getAllSubcomponents()) {
    if (c.name === 'vtimezone') out.addSubcomponent(new ICAL.Component(c.toJSON()));
    else if ((c.name === 'vevent' || c.name === 'vtodo') && text(c.getFirstPropertyValue('uid')) === uid) {
      const copy = new ICAL.Component(c.toJSON());
      copy.removeAllProperties('attendee'); // a personal copy: no scheduling, no other people's addresses
      copy.removeAllProperties('organizer');
      for (const a of copy.getAllSubcomponents('valarm')) copy.removeSubcomponent(a);
      out.addSubcomponent(copy);
    }
  }
  return serialize(out);
}

export type PartStat = 'ACCEPTED' | 'TENTATIVE' | 'DECLINED';

export interface ReplyOptions {
  /** The ATTENDEE value as written in the request (matched case-insensitively, echoed exactly). */
  attendee: string;
  partstat: PartStat;
  comment?: string | null;
  now?: Date;
}

function copyProp(from: Comp, to: Comp, name: string): void {
  const p = from.getFirstProperty(name);
  // Via the text form: keeps TZID/VALUE/CN parameters and the value exactly as the request wrote it.
  if (p) to.addProperty(ICAL.Property.fromString(p.toICALString()));
}

/** Attendee values compared as mail systems do: without mailto:, case-insensitively. */
export function sameAddress(a: string, b: string): boolean {
  const n = (s: string) => s.trim().replace(/^mailto:/i, '').toLowerCase();
  return n(a) === n(b);
}

/**
 * The iTIP REPLY for one attendee (RFC 5546 §3.2.3): METHOD:REPLY; the referenced VTIMEZONEs; one VEVENT
 * with UID, SEQUENCE (omitted when 0), DTSTAMP in UTC, DTSTART/DTEND/DURATION and SUMMARY copied
 * verbatim, RECURRENCE-ID only when the request is for one instance, ORGANIZER verbatim, exactly one
 * ATTENDEE with PARTSTAT, COMMENT when given. No VALARM, no other attendees. CRLF, folded at 75 octets.
 */
export function buildReply(request: string, o: ReplyOptions): string {
  const root = parse(request);
  const main = root ? pickMain(root) : null;
  if (!root || !main) throw new ReplyError('the request does not parse');
  const uid = text(main.getFirstPropertyValue('uid'));
  if (!uid) throw new ReplyError('the request has no UID');
  const org = main.getFirstProperty('organizer');
  if (!org || !text(org.getFirstValue())) throw new ReplyError('the request has no ORGANIZER');
  const att = main.getAllProperties('attendee').find((p) => sameAddress(String(p.getFirstValue() ?? ''), o.attendee));
  if (!att) throw new ReplyError('the replier is not an ATTENDEE of the request');

  const out = new ICAL.Component(['vcalendar', [], []]);
  out.addPropertyWithValue('prodid', '-//calendar-link-filter//web view//EN');
  out.addPropertyWithValue('version', '2.0');
  out.addPropertyWithValue('method', 'REPLY');
  const ev = new ICAL.Component('vevent');
  ev.addPropertyWithValue('uid', uid);
  const seq = main.getFirstPropertyValue('sequence');
  if (typeof seq === 'number' && seq > 0) ev.addPropertyWithValue('sequence', seq);
  // ICAL.Time.now() is floating; fromJSDate(…, true) is UTC and serialises with the Z.
  ev.addPropertyWithValue('dtstamp', ICAL.Time.fromJSDate(o.now ?? new Date(), true));
  for (const name of ['dtstart', 'dtend', 'duration', 'summary', 'recurrence-id', 'organizer']) copyProp(main, ev, name);
  const a = new ICAL.Property('attendee');
  a.setValue(String(att.getFirstValue()));
  a.setParameter('partstat', o.partstat);
  const cn = att.getParameter('cn');
  if (typeof cn === 'string' && cn) a.setParameter('cn', cn);
  ev.addProperty(a);
  if (o.comment && o.comment.trim()) ev.addPropertyWithValue('comment', o.comment.trim());

  const used = new Set(ev.getAllProperties().map((p) => p.getParameter('tzid')).filter((t): t is string => typeof t === 'string'));
  for (const tz of root.getAllSubcomponents('vtimezone')) {
    if (used.has(String(tz.getFirstPropertyValue('tzid')))) out.addSubcomponent(new ICAL.Component(tz.toJSON()));
  }
  out.addSubcomponent(ev);
  return serialize(out);
}
