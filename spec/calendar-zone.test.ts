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

// Review regressions: zone shapes whose ical.js expansion is not the same from any later year on.

/** ours against ical.js on a fresh zone as written, every day (at `hours`) of `y0`..`y1`. */
function assertSameOffsets(name: string, vtz: string, y0: number, y1: number, hours = [1, 13]): void {
  const bad: string[] = [];
  for (let year = y0; year <= y1; year++) {
    const full = parsedZone(vtz);
    const ours = parsedZone(vtz);
    for (let month = 1; month <= 12; month++) {
      for (let day = 1; day <= ICAL.Time.daysInMonth(month, year); day++) {
        for (const hour of hours) {
          const want = full.utcOffset(at(full, year, month, day, hour));
          const got = zoneOffset(at(ours, year, month, day, hour), (m) => bad.push(`warning ${m}`));
          if (got !== want) bad.push(`${year}-${month}-${day} ${hour}:00 want ${want} got ${got}`);
        }
      }
    }
  }
  assert.deepEqual(bad.slice(0, 5), [], `${name}: ${bad.length} differences`);
}

test('a 29 February DTSTART or a leap-day rule keeps ical.js\'s own onsets (its expansion depends on DTSTART there)', () => {
  // FREQ=YEARLY without BYMONTHDAY takes the day from DTSTART: moved to the 28th it would give other onsets
  assertSameOffsets('day from DTSTART', zone('Leap/A', [
    { kind: 'DAYLIGHT', start: '20000229T020000', from: '+0000', to: '+0100', rule: 'FREQ=YEARLY;BYMONTH=2' },
    { kind: 'STANDARD', start: '20001001T030000', from: '+0100', to: '+0000', rule: 'FREQ=YEARLY;BYMONTH=10' },
  ]), 2019, 2031);
  // 29 February: ical.js gives 1 March in common years or nothing, depending on the DTSTART year
  assertSameOffsets('leap day rule', zone('Leap/B', [
    { kind: 'DAYLIGHT', start: '16010101T020000', from: '+0000', to: '+0100', rule: 'FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29' },
    { kind: 'STANDARD', start: '16010101T030000', from: '+0100', to: '+0000', rule: 'FREQ=YEARLY;BYMONTH=3;BYMONTHDAY=29' },
  ]), 2019, 2031);
});

test('INTERVAL > 1: the shortened copy still holds the last onset of every observance', () => {
  // southern-hemisphere order (summer time from September), DTSTART late in the year, every third year
  assertSameOffsets('interval 3', zone('Interval/South', [
    { kind: 'DAYLIGHT', start: '19001201T020000', from: '+0100', to: '+0200', rule: 'FREQ=YEARLY;INTERVAL=3;BYMONTH=9;BYDAY=1SU' },
    { kind: 'STANDARD', start: '19000101T030000', from: '+0200', to: '+0100', rule: 'FREQ=YEARLY;INTERVAL=3;BYMONTH=5;BYDAY=1SU' },
  ]), 2019, 2031);
});

test('rules that skip years (a fifth Sunday of February) keep the onset from years back', () => {
  assertSameOffsets('fifth weekday', zone('Rare/Zone', [
    { kind: 'DAYLIGHT', start: '16010101T020000', from: '+0100', to: '+0200', rule: 'FREQ=YEARLY;BYMONTH=2;BYDAY=5SU' },
    { kind: 'STANDARD', start: '16010101T030000', from: '+0200', to: '+0100', rule: 'FREQ=YEARLY;BYMONTH=2;BYDAY=5MO' },
  ]), 2019, 2031);
});

test('a rule that can never occur is not handed to ical.js (it searches every year up to 20000 for one)', () => {
  const never = Array.from({ length: 8 }, (_, i): Obs => ({ kind: 'DAYLIGHT', start: `20${10 + i}0101T020000`, from: '+0100', to: '+0200', rule: 'FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=31;BYDAY=SU' }));
  const vtz = zone('Never/Zone', [...never, { kind: 'STANDARD', start: '20200101T030000', from: '+0200', to: '+0100', rule: 'FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU' }]);
  const warnings: string[] = [];
  const t0 = performance.now();
  const got = zoneOffset(at(parsedZone(vtz), 2026, 6, 1, 0), (m) => warnings.push(m));
  assert.ok(performance.now() - t0 < 500, `took ${Math.round(performance.now() - t0)} ms`);
  assert.equal(got, null);
  assert.equal(warnings.length, 1);
});

test('steady shapes other than Outlook\'s are still shortened: same offsets, and usable in the year 9999', () => {
  const shapes: Record<string, string> = {
    lastSundayAsMonthDays: zone('Lotus/Zone', [
      { kind: 'DAYLIGHT', start: '16010101T020000', from: '+0100', to: '+0200', rule: 'FREQ=YEARLY;BYMONTH=3;BYDAY=SU;BYMONTHDAY=25,26,27,28,29,30,31' },
      { kind: 'STANDARD', start: '16010101T030000', from: '+0200', to: '+0100', rule: 'FREQ=YEARLY;BYMONTH=10;BYDAY=SU;BYMONTHDAY=25,26,27,28,29,30,31' },
    ]),
    dayFromDtstart: zone('Plain/Zone', [
      { kind: 'DAYLIGHT', start: '16010330T020000', from: '+0100', to: '+0200', rule: 'FREQ=YEARLY' },
      { kind: 'STANDARD', start: '16011030T030000', from: '+0200', to: '+0100', rule: 'FREQ=YEARLY;BYMONTH=10' },
    ]),
  };
  for (const [name, vtz] of Object.entries(shapes)) {
    assertSameOffsets(name, vtz, 2024, 2028);
    assert.equal(zoneOffset(at(parsedZone(vtz), 9999, 7, 1, 12), () => assert.fail('no warning expected')), 7200, name);
  }
});

/** MB of heap still in use after `run`, both measured after a full garbage collection. */
async function retainedBy(run: () => void): Promise<number> {
  const { setFlagsFromString } = await import('node:v8');
  const { runInNewContext } = await import('node:vm');
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  gc();
  const before = process.memoryUsage().heapUsed;
  run();
  gc();
  return (process.memoryUsage().heapUsed - before) / 1e6;
}

test('the zone cache does not keep large VTIMEZONEs (up to the 1 MiB calendar cap, 256 of them)', async () => {
  const retained = await retainedBy(() => {
    for (let i = 0; i < 64; i++) {
      // a VTIMEZONE padded with an X- property: each one its own cache key
      const vtz = ZONES.outlookEurope!.replace('TZID:Romance Standard Time', `TZID:Romance Standard Time\r\nX-PAD-${i}:${'x'.repeat(900_000)}`);
      assert.equal(zoneOffset(at(parsedZone(vtz), 2026, 12, 1, 10), () => undefined), 3600);
    }
  });
  assert.ok(retained < 30, `${Math.round(retained)} MB retained`);
});

test('cached zones do not keep the calendar they came from (a zone cut out of a 1 MiB calendar is a slice of it)', async () => {
  const { readCalendar } = await import('../lib/calendar-reader.js');
  const pad = Array(10_000).fill(`DESCRIPTION:${'x'.repeat(70)}`).join('\r\n');
  const retained = await retainedBy(() => {
    for (const slim of [true, false]) {
      for (let i = 0; i < 32; i++) {
        // a small zone of its own name in each large calendar: the zone is cached, the calendar must not be
        const tzid = `Romance Standard Time ${slim} ${i}`;
        const text = ['BEGIN:VCALENDAR', ZONES.outlookEurope!.replace('Romance Standard Time', tzid), 'BEGIN:VEVENT', 'UID:u',
          `DTSTART;TZID=${tzid}:20261201T100000`, pad, 'END:VEVENT', 'END:VCALENDAR', ''].join('\r\n');
        assert.equal(readCalendar(text, null, null, { slim }).start?.utc, '2026-12-01T09:00:00Z');
      }
    }
  });
  assert.ok(retained < 15, `${Math.round(retained)} MB retained`);
});
