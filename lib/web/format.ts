// Dates and recurrences as people read them, with Intl only (no host zone, no JS in the browser).
// In: EventTime values from lib/calendar-event.ts, the viewer's zone and locale. Out: strings.
// Fails: never throws; an unknown zone or locale falls back to UTC / "en", an odd RRULE to its raw text.

import type { EventTime, RecurrenceRule } from '../calendar-event.js';

export function validZone(tz: string | null | undefined): string | null {
  if (!tz) return null;
  try { return new Intl.DateTimeFormat('en', { timeZone: tz }).resolvedOptions().timeZone; } catch { return null; }
}

export function validLocale(l: string | null | undefined): string | null {
  if (!l || !/^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$/.test(l)) return null;
  try { return Intl.DateTimeFormat.supportedLocalesOf([l])[0] ?? null; } catch { return null; }
}

const DATE_TIME: Intl.DateTimeFormatOptions = { weekday: 'long', year: 'numeric', month: 'long', day: 'numeric', hour: '2-digit', minute: '2-digit' };
const DATE_ONLY: Intl.DateTimeFormatOptions = { weekday: 'long', year: 'numeric', month: 'long', day: 'numeric' };

/** Long generic zone name ("Central European Time"), or the IANA name. */
export function zoneName(zone: string, locale: string, at = Date.now()): string {
  if (zone === 'UTC' || zone === 'Etc/UTC') return 'UTC';
  try {
    const p = new Intl.DateTimeFormat(locale, { timeZone: zone, timeZoneName: 'longGeneric' }).formatToParts(at);
    return p.find((x) => x.type === 'timeZoneName')?.value ?? zone;
  } catch {
    return zone;
  }
}

function wall(t: EventTime): number {
  return Date.parse(t.allDay ? `${t.local}T00:00:00Z` : `${t.local}Z`);
}

export interface WhenText {
  /** The range in the viewer's zone (or as written for all-day/floating). */
  range: string;
  /** "(Central European Time)" or null for all-day/floating. */
  zone: string | null;
  /** The organizer's wall time and TZID when their zone differs from the viewer's. */
  organizer: string | null;
  note: 'all-day' | 'floating' | null;
}

function range(f: Intl.DateTimeFormat, a: number, b: number | null): string {
  if (b === null || b <= a) return f.format(a);
  try { return f.formatRange(a, b); } catch { return `${f.format(a)} – ${f.format(b)}`; }
}

export function formatWhen(start: EventTime, end: EventTime | null, viewerZone: string, locale: string): WhenText {
  if (start.allDay) {
    const f = new Intl.DateTimeFormat(locale, { ...DATE_ONLY, timeZone: 'UTC' });
    // DTEND of an all-day event is exclusive: a one-day event ends the next day.
    const last = end && end.allDay ? wall(end) - 86_400_000 : null;
    return { range: range(f, wall(start), last !== null && last > wall(start) ? last : null), zone: null, organizer: null, note: 'all-day' };
  }
  if (start.utc === null) {
    const f = new Intl.DateTimeFormat(locale, { ...DATE_TIME, timeZone: 'UTC' });
    return { range: range(f, wall(start), end ? wall(end) : null), zone: null, organizer: null, note: 'floating' };
  }
  const f = new Intl.DateTimeFormat(locale, { ...DATE_TIME, timeZone: viewerZone });
  const text = range(f, start.utc, end?.utc ?? null);
  let organizer: string | null = null;
  if (start.zone && start.zone !== viewerZone && start.tzid) {
    const of = new Intl.DateTimeFormat(locale, { ...DATE_TIME, timeZone: 'UTC' });
    const same = (zoneOffset(start.zone, start.utc) === zoneOffset(viewerZone, start.utc));
    if (!same) organizer = `${range(of, wall(start), end && !end.allDay ? wall(end) : null)} (${zoneName(start.zone, locale, start.utc)}, “${start.tzid}”)`;
  }
  return { range: text, zone: zoneName(viewerZone, locale, start.utc), organizer, note: null };
}

function zoneOffset(zone: string, at: number): string {
  try {
    return new Intl.DateTimeFormat('en-US', { timeZone: zone, timeZoneName: 'longOffset' }).formatToParts(at).find((p) => p.type === 'timeZoneName')?.value ?? zone;
  } catch {
    return zone;
  }
}

/** A short date-time in the viewer's zone (banners, agenda). */
export function formatInstant(ms: number, zone: string, locale: string, withDate = true): string {
  const opts: Intl.DateTimeFormatOptions = withDate ? { day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit', timeZone: zone } : { hour: '2-digit', minute: '2-digit', timeZone: zone };
  return new Intl.DateTimeFormat(locale, opts).format(ms);
}

export function formatDay(ms: number, zone: string, locale: string): string {
  return new Intl.DateTimeFormat(locale, { weekday: 'long', day: 'numeric', month: 'long', year: 'numeric', timeZone: zone }).format(ms);
}

const DAYS: Record<string, number> = { SU: 0, MO: 1, TU: 2, WE: 3, TH: 4, FR: 5, SA: 6 };
const UNIT: Record<string, [string, string]> = { DAILY: ['day', 'days'], WEEKLY: ['week', 'weeks'], MONTHLY: ['month', 'months'], YEARLY: ['year', 'years'] };
const ORD = ['last', '', 'first', 'second', 'third', 'fourth', 'fifth'];

/** "Every 2 weeks on Monday and Wednesday, 10 times" — English words, localized day/month names. */
export function describeRule(r: RecurrenceRule, locale: string): string {
  const unit = UNIT[r.freq];
  if (!unit) return `Repeats (${r.text})`;
  const list = (items: string[]) => { try { return new Intl.ListFormat('en', { type: 'conjunction' }).format(items); } catch { return items.join(', '); } };
  const dayName = (d: number) => new Intl.DateTimeFormat(locale, { weekday: 'long', timeZone: 'UTC' }).format(Date.UTC(2026, 0, 4 + d));
  const monthName = (m: number) => new Intl.DateTimeFormat(locale, { month: 'long', timeZone: 'UTC' }).format(Date.UTC(2026, m - 1, 1));
  let s = r.interval > 1 ? `Every ${r.interval} ${unit[1]}` : `Every ${unit[0]}`;
  if (r.byDay.length) {
    const days = r.byDay.map((d) => {
      const m = /^([+-]?\d{1,2})?(SU|MO|TU|WE|TH|FR|SA)$/.exec(d.toUpperCase());
      if (!m) return d;
      const n = m[1] ? Number(m[1]) : 0;
      const name = dayName(DAYS[m[2] as string] as number);
      return n === 0 ? name : `${n === -1 ? 'last' : ORD[n + 1] ?? `${n}.`} ${name}`;
    });
    s += ` on ${list(days)}`;
  }
  if (r.byMonthDay.length) s += ` on day ${list(r.byMonthDay.map(String))}`;
  if (r.byMonth.length) s += ` in ${list(r.byMonth.map(monthName))}`;
  if (r.count !== null) s += `, ${r.count} ${r.count === 1 ? 'time' : 'times'}`;
  else if (r.until) s += `, until ${new Intl.DateTimeFormat(locale, { ...DATE_ONLY, timeZone: r.until.utc !== null ? 'UTC' : 'UTC' }).format(r.until.utc ?? wall(r.until))}`;
  return s;
}

/** "16 Nov" style date for exceptions. */
export function shortDate(t: EventTime, zone: string, locale: string): string {
  const ms = t.utc ?? wall(t);
  return new Intl.DateTimeFormat(locale, { day: 'numeric', month: 'short', year: 'numeric', timeZone: t.utc !== null ? zone : 'UTC' }).format(ms);
}
