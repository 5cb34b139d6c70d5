// UTC offsets of times bound to a VTIMEZONE, computed by ical.js without expanding four centuries.
// In: an ical.js Time whose zone came from the calendar. Out: its UTC offset in seconds, or null when
// the zone would cost too much to expand (the caller then falls back to the zone's name).
// Why: ical.js turns a local time into UTC by expanding every observance rule from its DTSTART up to
// this year + 5. Outlook and Exchange write DTSTART:16010101 in every VTIMEZONE, so every invitation
// cost ~850 rule steps, about 10 ms of event loop (measured on corpus teams.request.ics). A steady
// yearly rule (see steadyRule; Outlook's, Google's, Apple's) gives the same transitions from any later
// year of its rhythm on, so a copy of the zone whose steady rules start a whole rule year before the
// time's previous year gives the same offset for a fraction of the work. Other rules stay as written.
// Fails: never throws on what a zone holds; a zone still too costly after that answers null with a warning.

import ICAL from 'ical.js';

type ICalTime = InstanceType<typeof ICAL.Time>;
type ICalTimezone = InstanceType<typeof ICAL.Timezone>;
type ICalComponent = InstanceType<typeof ICAL.Component>;
type ICalRecur = InstanceType<typeof ICAL.Recur>;

/** Rule parts real VTIMEZONE observances use (RFC 5545 3.6.5; Outlook, Google, Apple, tzurl). */
const ZONE_RULE_PARTS: ReadonlySet<string> = new Set(['BYMONTH', 'BYDAY', 'BYMONTHDAY', 'WKST']);
/** Onsets ical.js may generate for one zone: Outlook's two yearly rules since 1601 need about 860. */
const MAX_ZONE_ONSETS = 2_000;

/**
 * Shortened copies, expanded once, by year and VTIMEZONE text: a site sees the same few zones in mail
 * after mail (Exchange writes the same "W. Europe Standard Time" every time), so ical.js expands each
 * once per year asked, not once per message. Bounded; the least recently used goes first.
 */
const nearCopies = new Map<string, NearZone>();
const MAX_CACHED_ZONES = 256;
/** Larger zones (padded or with thousands of RDATEs, up to the 1 MiB calendar cap) are copied, not kept. */
const MAX_CACHED_ZONE_CHARS = 16 * 1024;

/** A shortened copy and, when it is still too costly for ical.js, why (judged once per copy). */
interface NearZone { zone: ICalTimezone; refusal: string | null }

/** Offset of `t` from UTC in seconds (ical.js's own answer, on a shortened copy of its zone), or null. */
export function zoneOffset(t: ICalTime, warn: (m: string) => void): number | null {
  const zone = t.zone as ICalTimezone | null;
  if (!zone) return null;
  if (zone === ICAL.Timezone.utcTimezone || !zone.component) return zone.utcOffset(t);
  const near = nearZone(zone, t.year);
  if (near.refusal !== null) {
    warn(near.refusal);
    return null;
  }
  return near.zone.utcOffset(t);
}

/**
 * A detached copy of the zone whose steady yearly observances (see steadyRule) start in a year of their
 * rhythm at least one whole rule year before `year` - 1, instead of centuries earlier. ical.js expands a
 * steady rule to the same onsets from any such DTSTART and gives it an onset in every year of its rhythm,
 * so from `year` - 1 on every observance's latest onset (and the one before it, which ical.js consults in
 * a repeated hour) is the original zone's: every offset from `year` on is the original zone's. Any other
 * observance is copied as written.
 */
function nearZone(zone: ICalTimezone, year: number): NearZone {
  // zone objects from zonesFromText serve message after message: their copies are found without the text key
  let years = nearByObject.get(zone);
  const known = years?.get(year);
  if (known) return known;
  const near = nearZoneByText(zone, year);
  if (!years || years.size >= 16) nearByObject.set(zone, (years = new Map()));
  years.set(year, near);
  return near;
}

/** nearZone's copies by zone object and year (a few years per zone; the text-keyed cache is the bounded one). */
const nearByObject = new WeakMap<ICalTimezone, Map<number, NearZone>>();

function nearZoneByText(zone: ICalTimezone, year: number): NearZone {
  const comp = zone.component as ICalComponent;
  const key = `${year}\n${zoneText(zone, comp)}`;
  const cached = nearCopies.get(key);
  if (cached) {
    nearCopies.delete(key);
    nearCopies.set(key, cached);
    return cached;
  }
  // a copy either way: the cache must not keep the message's whole calendar alive through `parent`
  const copy = new ICAL.Component(structuredClone(comp.toJSON()));
  for (const obs of copy.getAllSubcomponents()) {
    const start = shiftedStart(obs, year - 2);
    if (start) obs.updatePropertyWithValue('dtstart', start);
  }
  const shortened = new ICAL.Timezone({ component: copy, tzid: ownCopy(zone.tzid) });
  const near = { zone: shortened, refusal: costRefusal(shortened, year) };
  if (key.length > MAX_CACHED_ZONE_CHARS) return near;
  nearCopies.set(key, near);
  if (nearCopies.size > MAX_CACHED_ZONES) nearCopies.delete(nearCopies.keys().next().value as string);
  return near;
}

/**
 * VTIMEZONE components as written (lib/calendar-slim.ts cuts them out) → the zone ical.js makes of
 * them, or null when one does not parse or names no TZID. The same text gives the same zone object
 * every time, so neither ical.js's parse nor the cache key of nearZone is paid per message.
 */
const zonesByText = new Map<string, ICalTimezone | null>();

/** The zones of `blocks`, in order; null when any of them is unusable (the caller then parses the whole calendar). */
export function zonesFromText(blocks: string[]): ICalTimezone[] | null {
  const out: ICalTimezone[] = [];
  for (const block of blocks) {
    let zone = zonesByText.get(block);
    if (zone === undefined) {
      const own = ownCopy(block); // the key and the zone's strings must not be slices of the whole calendar
      zone = zoneOf(own);
      if (block.length <= MAX_CACHED_ZONE_CHARS) {
        zonesByText.set(own, zone);
        if (zonesByText.size > MAX_CACHED_ZONES) zonesByText.delete(zonesByText.keys().next().value as string);
      }
    }
    if (zone === null) return null;
    out.push(zone);
  }
  return out;
}

function zoneOf(block: string): ICalTimezone | null {
  try {
    const jcal = ICAL.parse(block);
    if (!Array.isArray(jcal) || jcal[0] !== 'vtimezone') return null;
    const comp = new ICAL.Component(jcal);
    // as ical.js's own lookup by TZID reads it (Component.getTimeZoneByID)
    const tzid = comp.getFirstProperty('tzid')?.getFirstValue();
    return typeof tzid === 'string' ? new ICAL.Timezone({ component: comp, tzid }) : null;
  } catch {
    return null;
  }
}

/**
 * A string that shares no memory with `s`. V8 makes a slice of 13 or more characters a view into the
 * whole string, so a cached TZID or VTIMEZONE cut from a 1 MiB calendar would keep the calendar alive.
 * UTF-16 keeps every code unit, lone surrogates included.
 */
function ownCopy(s: string): string {
  return Buffer.from(s, 'utf16le').toString('utf16le');
}

/** The zone's content as a cache key; once per zone object (a message asks for DTSTART and DTEND). */
const zoneTexts = new WeakMap<ICalTimezone, string>();
function zoneText(zone: ICalTimezone, comp: ICalComponent): string {
  let text = zoneTexts.get(zone);
  if (text === undefined) zoneTexts.set(zone, (text = JSON.stringify(comp.toJSON())));
  return text;
}

/** A later DTSTART for an observance whose steady yearly rule runs on past `year` (no COUNT, no RDATE), or null. */
function shiftedStart(obs: ICalComponent, year: number): ICalTime | null {
  const since = obs.getFirstPropertyValue('dtstart');
  const rule = obs.getFirstPropertyValue('rrule');
  if (!(since instanceof ICAL.Time) || !(rule instanceof ICAL.Recur) || obs.hasProperty('rdate')) return null;
  if (rule.freq !== 'YEARLY' || rule.count || (rule.until && rule.until.year <= year) || !steadyRule(rule, since)) return null;
  const step = Math.max(1, rule.interval || 1);
  // the rule year after the new DTSTART's (whole, with an onset) is no later than `year` - 2
  const from = year - 2 - step;
  const start = from - ((((from - since.year) % step) + step) % step);
  if (start <= since.year) return null;
  const shifted = since.clone(); // never 29 February (steadyRule)
  shifted.year = start;
  return shifted;
}

const WEEKDAY = /^([+-]?\d{1,2})?(MO|TU|WE|TH|FR|SA|SU)$/;
/** [ordinal or 0, weekday] of a BYDAY value, or null. */
function byDay(value: unknown): [number, string] | null {
  const m = WEEKDAY.exec(String(value));
  return m ? [Number(m[1] ?? 0), m[2]!] : null;
}
const dayNumbers = (values: unknown[] | undefined): number[] | null =>
  values && values.every((v) => Number.isInteger(v)) ? (values as number[]) : null;

/** Month days every year has in all of `months` (2001: a common year). */
const shortestMonth = (months: number[]): number => Math.min(...months.map((m) => ICAL.Time.daysInMonth(m, 2001)));
/** Whether one of `months` has seven of `monthDays` of distinct weekdays every year. */
const sevenWeekdays = (months: number[], monthDays: number[]): boolean =>
  months.some((m) => new Set(monthDays.filter((d) => d >= 1 && d <= shortestMonth([m])).map((d) => d % 7)).size === 7);

/**
 * A yearly rule whose ical.js expansion is a function of the year alone (DTSTART's time of day aside) and
 * yields an onset in every year of its rhythm: BYMONTH with BYDAY (each ordinal within ±5, one within ±4:
 * "-1SU", "2SU", as Outlook, Google, Apple and tzurl write them), with month days every year has, with bare
 * weekdays over seven such month days ("BYDAY=SU;BYMONTHDAY=25,…,31"), or DTSTART's own day and month.
 * Not steady: 29 February as DTSTART, days some years lack (ical.js rolls them into the next month or
 * skips them, depending on the DTSTART year), negative month days, BYSETPOS, BYYEARDAY, BYWEEKNO, a
 * fifth weekday alone (years go by without one).
 */
function steadyRule(rule: ICalRecur, since: ICalTime): boolean {
  if (since.month === 2 && since.day === 29) return false;
  const parts = rule.parts as Record<string, unknown[] | undefined>;
  const months = dayNumbers(parts.BYMONTH) ?? [];
  const monthDays = dayNumbers(parts.BYMONTHDAY) ?? [];
  const days = (parts.BYDAY ?? []).map(byDay);
  const validDays = monthDays.length > 0 && monthDays.every((d) => d >= 1 && d <= shortestMonth(months));
  switch (Object.keys(parts).filter((p) => p !== 'WKST').sort().join(',')) {
    case '': return true;
    case 'BYMONTH': return months.length > 0 && since.day <= shortestMonth(months);
    case 'BYMONTH,BYMONTHDAY': return months.length > 0 && validDays;
    case 'BYDAY,BYMONTH':
      return months.length > 0 && days.length > 0 && days.every((d) => d !== null && Math.abs(d[0]) <= 5) && days.some((d) => Math.abs(d![0]) <= 4);
    case 'BYDAY,BYMONTH,BYMONTHDAY':
      return months.length > 0 && days.length > 0 && days.every((d) => d !== null && d[0] === 0) && monthDays.every((d) => d >= 1) && sevenWeekdays(months, monthDays);
    default: return false;
  }
}

/**
 * ical.js expands every observance rule without any limit; a daily rule since 1601 or the year 9999
 * would block the event loop for seconds. Estimate the onsets first; too many: the warning, and ical.js
 * is not asked. Null: cheap enough.
 */
function costRefusal(zone: ICalTimezone, year: number): string | null {
  const comp = zone.component as ICalComponent | null;
  if (!comp) return null; // UTC: nothing to expand
  const until = Math.max(year, new Date().getUTCFullYear()) + 5;
  let onsets = 0;
  for (const obs of comp.getAllSubcomponents()) {
    const rule = obs.getFirstPropertyValue('rrule');
    const since = obs.getFirstPropertyValue('dtstart');
    if (!rule || !(since instanceof ICAL.Time)) { onsets++; continue; } // one onset, or skipped by ical.js
    onsets += rule instanceof ICAL.Recur ? ruleOnsets(rule, until - since.year + 1) : Infinity;
  }
  return onsets <= MAX_ZONE_ONSETS ? null : `VTIMEZONE "${zone.tzid}" would need ${onsets} transitions up to ${until}; not used`;
}

/**
 * Upper bound of the onsets a yearly observance rule yields over `years`; Infinity for any other rule, and
 * for a rule that may never occur: ical.js searches every year up to 20000 for its first onset (about
 * 150 ms a rule) before it gives up.
 */
function ruleOnsets(rule: ICalRecur, years: number): number {
  const parts = rule.parts as Record<string, unknown[] | undefined>;
  if (rule.freq !== 'YEARLY' || Object.keys(parts).some((p) => !ZONE_RULE_PARTS.has(p))) return Infinity;
  if (!occursYearly(parts)) return Infinity;
  const months = parts.BYMONTH?.length ?? (parts.BYDAY || parts.BYMONTHDAY ? 12 : 1);
  // "-1SU" is one day a month, a bare "SU" up to five.
  const days = parts.BYMONTHDAY?.length ?? (parts.BYDAY ? parts.BYDAY.reduce<number>((n, d) => n + (/^[+-]?\d/.test(String(d)) ? 1 : 5), 0) : 1);
  const perYear = months * days;
  const byCount = typeof rule.count === 'number' && rule.count > 0 ? rule.count : Infinity;
  return Math.min(byCount, perYear * Math.ceil(Math.max(1, years) / Math.max(1, rule.interval || 1)));
}

/**
 * Whether ical.js finds an onset within a few decades: any weekday ordinal that fits its period (±5 in a
 * month, ±53 in a year), and BYDAY with BYMONTHDAY only as bare weekdays over seven month days of
 * distinct weekdays in one of its months ("BYDAY=SU;BYMONTHDAY=25,…,31;BYMONTH=3": one of them is that
 * weekday every year).
 */
function occursYearly(parts: Record<string, unknown[] | undefined>): boolean {
  if (!parts.BYDAY) return true;
  const days = parts.BYDAY.map(byDay);
  if (days.some((d) => d === null)) return false;
  const limit = parts.BYMONTH ? 5 : 53;
  if (days.some((d) => Math.abs(d![0]) > limit)) return false;
  if (!parts.BYMONTHDAY) return true;
  const monthDays = dayNumbers(parts.BYMONTHDAY);
  if (!monthDays || days.some((d) => d![0] !== 0)) return false;
  return sevenWeekdays(dayNumbers(parts.BYMONTH) ?? [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], monthDays);
}
