// Zone offsets from shortened VTIMEZONE copies (lib/calendar-zone.ts) against ical.js's own answer on
// the zone as written, hour by hour around every transition, for the shapes real zones take.
// Run: node --import tsx --test spec/calendar-zone.test.ts

import { test } from 'node:test';
import assert from 'node:assert/strict';
import ICAL from 'ical.js';
import { performance } from 'node:perf_hooks';
import { zoneOffset } from '../lib/calendar-zone.js';

type Obs = { kind: 'STANDARD' | 'DAYLIGHT'; start: string; from: string; to: string; rule?: string };
const zone = (tzid: string, obs: Obs[]) => [
  `BEGIN:VTIMEZONE`, `TZID:${tzid}`,
  ...obs.flatMap((o) => [`BEGIN:${o.kind}`, `DTSTART:${o.start}`, `TZOFFSETFROM:${o.from}`, `TZOFFSETTO:${o.to}`, ...(o.rule ? [`RRULE:${o.rule}`] : []), `END:${o.kind}`]),
  'END:VTIMEZONE',
].join('\r\n');

const ZONES: Record<string, string> = {
  // Outlook/Exchange: both observances from 1 January 1601
  outlookEurope: zone('Romance Standard Time', [
    { kind: 'STANDARD', start: '16010101T030000', from: '+0200', to: '+0100', rule: 'FREQ=YEARLY;INTERVAL=1;BYDAY=-1SU;BYMONTH=10' },
    { kind: 'DAYLIGHT', start: '16010101T020000', from: '+0100', to: '+0200', rule: 'FREQ=YEARLY;INTERVAL=1;BYDAY=-1SU;BYMONTH=3' },
  ]),
  outlookUS: zone('Pacific Standard Time', [
    { kind: 'STANDARD', start: '16010101T020000', from: '-0700', to: '-0800', rule: 'FREQ=YEARLY;INTERVAL=1;BYDAY=1SU;BYMONTH=11' },
    { kind: 'DAYLIGHT', start: '16010101T020000', from: '-0800', to: '-0700', rule: 'FREQ=YEARLY;INTERVAL=1;BYDAY=2SU;BYMONTH=3' },
  ]),
  // southern hemisphere: summer time across the new year
  outlookSydney: zone('AUS Eastern Standard Time', [
    { kind: 'STANDARD', start: '16010101T030000', from: '+1100', to: '+1000', rule: 'FREQ=YEARLY;INTERVAL=1;BYDAY=1SU;BYMONTH=4' },
    { kind: 'DAYLIGHT', start: '16010101T020000', from: '+1000', to: '+1100', rule: 'FREQ=YEARLY;INTERVAL=1;BYDAY=1SU;BYMONTH=10' },
  ]),
  // Google/tzurl style: DTSTART on the first real onset
  google: zone('Europe/Berlin', [
    { kind: 'DAYLIGHT', start: '19700329T020000', from: '+0100', to: '+0200', rule: 'FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU' },
    { kind: 'STANDARD', start: '19701025T030000', from: '+0200', to: '+0100', rule: 'FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU' },
  ]),
  // a rule that ended (UNTIL) next to one that runs on, and a one-off change
  history: zone('America/Example', [
    { kind: 'DAYLIGHT', start: '19670430T020000', from: '-0500', to: '-0400', rule: 'FREQ=YEARLY;BYMONTH=4;BYDAY=-1SU;UNTIL=20060430T070000Z' },
    { kind: 'DAYLIGHT', start: '20070311T020000', from: '-0500', to: '-0400', rule: 'FREQ=YEARLY;BYMONTH=3;BYDAY=2SU' },
    { kind: 'STANDARD', start: '20071104T020000', from: '-0400', to: '-0500', rule: 'FREQ=YEARLY;BYMONTH=11;BYDAY=1SU' },
    { kind: 'STANDARD', start: '19671029T020000', from: '-0400', to: '-0500', rule: 'FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU;UNTIL=20061029T060000Z' },
  ]),
  // odd shapes: every other year, a 29 February start, a fixed date
  odd: zone('Odd/Zone', [
    { kind: 'DAYLIGHT', start: '19000229T020000', from: '+0000', to: '+0100', rule: 'FREQ=YEARLY;INTERVAL=3;BYMONTH=5;BYMONTHDAY=15' },
    { kind: 'STANDARD', start: '19000101T030000', from: '+0100', to: '+0000', rule: 'FREQ=YEARLY;BYMONTH=9;BYMONTHDAY=1' },
  ]),
};

/** The zone as ical.js binds it when it parses a calendar holding this VTIMEZONE. */
function parsedZone(vtimezone: string): InstanceType<typeof ICAL.Timezone> {
  const root = new ICAL.Component(ICAL.parse(['BEGIN:VCALENDAR', 'VERSION:2.0', vtimezone, 'END:VCALENDAR', ''].join('\r\n')));
  return new ICAL.Timezone(root.getFirstSubcomponent('vtimezone')!);
}

function at(zone: InstanceType<typeof ICAL.Timezone>, year: number, month: number, day: number, hour: number): InstanceType<typeof ICAL.Time> {
  return new ICAL.Time({ year, month, day, hour, minute: 0, second: 0, isDate: false }, zone);
}

test('offsets from the shortened zone equal ical.js on the zone as written, every 3 hours of 2019-2032 transitions months', () => {
  for (const [name, vtz] of Object.entries(ZONES)) {
    // one zone object each side, as within one message: ical.js expands the full zone once
    const full = parsedZone(vtz);
    const ours = parsedZone(vtz);
    let checked = 0;
    for (let year = 2019; year <= 2032; year++) {
      for (const month of [1, 2, 3, 4, 5, 9, 10, 11, 12]) {
        for (let day = 1; day <= 28; day += 3) {
          for (let hour = 0; hour < 24; hour += 3) {
            const want = full.utcOffset(at(full, year, month, day, hour));
            const got = zoneOffset(at(ours, year, month, day, hour), () => assert.fail('no warning expected'));
            assert.equal(got, want, `${name} ${year}-${month}-${day} ${hour}:00`);
            checked++;
          }
        }
      }
    }
    assert.ok(checked > 1000);
  }
});

test('an Outlook zone (DTSTART 1601) costs well under a millisecond, not ~850 rule steps per invitation', () => {
  const vtz = ZONES.outlookEurope!;
  const runs: number[] = [];
  for (let i = 0; i < 30; i++) {
    const t = at(parsedZone(vtz), 2026, 12, 1, 10);
    const t0 = performance.now();
    assert.equal(zoneOffset(t, () => undefined), 3600);
    runs.push(performance.now() - t0);
  }
  runs.sort((a, b) => a - b);
  const full = runs.map(() => 0).map(() => {
    const t = at(parsedZone(vtz), 2026, 12, 1, 10);
    const t0 = performance.now();
    t.zone!.utcOffset(t);
    return performance.now() - t0;
  }).sort((a, b) => a - b);
  // the median of each: the shortened copy does at least 5 times less work than the full expansion
  assert.ok(runs[15]! * 5 < full[15]!, `shortened ${runs[15]!.toFixed(3)} ms vs full ${full[15]!.toFixed(3)} ms`);
});
