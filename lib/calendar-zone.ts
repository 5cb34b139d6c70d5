// UTC offsets of times bound to a VTIMEZONE, computed by ical.js without expanding four centuries.
// In: an ical.js Time whose zone came from the calendar. Out: its UTC offset in seconds, or null when
// the zone would cost too much to expand (the caller then falls back to the zone's name).
// Why: ical.js turns a local time into UTC by expanding every observance rule from its DTSTART up to
// this year + 5. Outlook and Exchange write DTSTART:16010101 in every VTIMEZONE, so every invitation
// cost ~850 rule steps, about 10 ms of event loop (measured on corpus teams.request.ics). A yearly
// rule gives the same transitions from any later year on, so a copy of the zone starting two years
// before the time gives the same offset for a fraction of the work.
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
const nearCopies = new Map<string, ICalTimezone>();
const MAX_CACHED_ZONES = 256;

/** Offset of `t` from UTC in seconds (ical.js's own answer, on a shortened copy of its zone), or null. */
export function zoneOffset(t: ICalTime, warn: (m: string) => void): number | null {
  const zone = t.zone as ICalTimezone | null;
  if (!zone) return null;
  if (zone === ICAL.Timezone.utcTimezone || !zone.component) return zone.utcOffset(t);
  const near = nearZone(zone, t.year);
  if (!zoneIsCheap(near, t.year, warn)) return null;
  return near.utcOffset(t);
}

/**
 * A detached copy of the zone with every open-ended yearly observance starting in `year` - 2 (or the
 * year before that keeps an INTERVAL's rhythm) instead of centuries earlier. Its DTSTART becomes one
 * extra onset in that year, which may be on a day the rule would not give; the whole year after it
 * holds only the rule's own onsets, so from `year` on every offset is the original zone's.
 */
function nearZone(zone: ICalTimezone, year: number): ICalTimezone {
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
  const near = new ICAL.Timezone({ component: copy, tzid: zone.tzid });
  nearCopies.set(key, near);
  if (nearCopies.size > MAX_CACHED_ZONES) nearCopies.delete(nearCopies.keys().next().value as string);
  return near;
}

/** The zone's content as a cache key; once per zone object (a message asks for DTSTART and DTEND). */
const zoneTexts = new WeakMap<ICalTimezone, string>();
function zoneText(zone: ICalTimezone, comp: ICalComponent): string {
  let text = zoneTexts.get(zone);
  if (text === undefined) zoneTexts.set(zone, (text = JSON.stringify(comp.toJSON())));
  return text;
}

/** A later DTSTART for an observance whose yearly rule runs on past `from` (no COUNT, no RDATE), or null. */
function shiftedStart(obs: ICalComponent, from: number): ICalTime | null {
  const since = obs.getFirstPropertyValue('dtstart');
  const rule = obs.getFirstPropertyValue('rrule');
  if (!(since instanceof ICAL.Time) || !(rule instanceof ICAL.Recur) || obs.hasProperty('rdate')) return null;
  if (rule.freq !== 'YEARLY' || rule.count || (rule.until && rule.until.year <= from + 2)) return null;
  const step = Math.max(1, rule.interval || 1);
  const year = from - ((((from - since.year) % step) + step) % step);
  if (year <= since.year) return null;
  const start = since.clone();
  // 29 February moved to a common year would roll into March
  if (start.month === 2 && start.day === 29 && !ICAL.Time.isLeapYear(year)) start.day = 28;
  start.year = year;
  return start;
}

/**
 * ical.js expands every observance rule without any limit; a daily rule since 1601 or the year 9999
 * would block the event loop for seconds. Estimate the onsets first; too many: do not ask ical.js.
 */
function zoneIsCheap(zone: ICalTimezone, year: number, warn: (m: string) => void): boolean {
  const comp = zone.component as ICalComponent | null;
  if (!comp) return true; // UTC: nothing to expand
  const until = Math.max(year, new Date().getUTCFullYear()) + 5;
  let onsets = 0;
  for (const obs of comp.getAllSubcomponents()) {
    const rule = obs.getFirstPropertyValue('rrule');
    const since = obs.getFirstPropertyValue('dtstart');
    if (!rule || !(since instanceof ICAL.Time)) { onsets++; continue; } // one onset, or skipped by ical.js
    onsets += rule instanceof ICAL.Recur ? ruleOnsets(rule, until - since.year + 1) : Infinity;
  }
  if (onsets <= MAX_ZONE_ONSETS) return true;
  warn(`VTIMEZONE "${zone.tzid}" would need ${onsets} transitions up to ${until}; not used`);
  return false;
}

/** Upper bound of the onsets a yearly observance rule yields over `years`; Infinity for any other rule. */
function ruleOnsets(rule: ICalRecur, years: number): number {
  const parts = rule.parts as Record<string, unknown[] | undefined>;
  if (rule.freq !== 'YEARLY' || Object.keys(parts).some((p) => !ZONE_RULE_PARTS.has(p))) return Infinity;
  const months = parts.BYMONTH?.length ?? (parts.BYDAY || parts.BYMONTHDAY ? 12 : 1);
  // "-1SU" is one day a month, a bare "SU" up to five.
  const days = parts.BYMONTHDAY?.length ?? (parts.BYDAY ? parts.BYDAY.reduce<number>((n, d) => n + (/^[+-]?\d/.test(String(d)) ? 1 : 5), 0) : 1);
  const perYear = months * days;
  const byCount = typeof rule.count === 'number' && rule.count > 0 ? rule.count : Infinity;
  return Math.min(byCount, perYear * Math.ceil(Math.max(1, years) / Math.max(1, rule.interval || 1)));
}
