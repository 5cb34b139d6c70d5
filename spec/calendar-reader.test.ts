// Tests for lib/calendar-reader.ts: every .ics file in the shared corpus, then broken and tricky input.
// Expected instants are worked out by hand from the zone rules (CET = UTC+1, CEST = UTC+2, …).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  MAX_CALENDAR_BYTES, normalizeMethod, organizerAddress, readCalendar, readCalendarMethod, zonedTimeToUtc,
} from '../lib/calendar-reader.js';
import { CORPUS_DIR, CORPUS_SKIP_MESSAGE, corpusFile, corpusFiles, manifestRows } from './helpers/corpus.js';

const skipCorpus = CORPUS_DIR ? false : CORPUS_SKIP_MESSAGE;

/** A small calendar; `event` lines go inside the VEVENT, `extra` lines after it (VTIMEZONE …). */
function ics(opts: { method?: string; event?: string[]; extra?: string[]; component?: string }): string {
  const comp = opts.component ?? 'VEVENT';
  return [
    'BEGIN:VCALENDAR', 'VERSION:2.0', 'PRODID:-//test//EN',
    ...(opts.method ? [`METHOD:${opts.method}`] : []),
    `BEGIN:${comp}`, 'UID:uid-1@example.org', 'DTSTAMP:20260101T000000Z', ...(opts.event ?? []), `END:${comp}`,
    ...(opts.extra ?? []),
    'END:VCALENDAR', '',
  ].join('\r\n');
}

/** A made-up zone at a fixed offset, to prove the file's own VTIMEZONE is used. */
function fixedZone(tzid: string, offset: string): string[] {
  return ['BEGIN:VTIMEZONE', `TZID:${tzid}`, 'BEGIN:STANDARD', 'DTSTART:16010101T000000',
    `TZOFFSETFROM:${offset}`, `TZOFFSETTO:${offset}`, 'END:STANDARD', 'END:VTIMEZONE'];
}

test('every corpus .ics: METHOD as the MANIFEST records it, never a throw', { skip: skipCorpus }, () => {
  const files = corpusFiles('.ics');
  assert.ok(files.length >= 10, 'the corpus holds at least ten .ics files');
  const manifest = new Map(manifestRows().map((r) => [r.local_path, r.notes ?? '']));
  for (const f of files) {
    const facts = readCalendar(corpusFile(f)!);
    const recorded = /METHOD:(\w+)/.exec(manifest.get(f) ?? '')?.[1];
    assert.ok(recorded, `${f} has a METHOD fact in MANIFEST`);
    assert.equal(facts.method, recorded === 'none' ? null : recorded, f);
    assert.equal(facts.component, 'VEVENT', f);
  }
});

test('corpus: zones from VTIMEZONE (Windows and IANA names), Z times and an IANA name without VTIMEZONE', { skip: skipCorpus }, () => {
  const cases: Array<[string, string, string | null, string]> = [
    // Romance Standard Time defined in the file; February is CET (UTC+1).
    ['nylas-sync-engine/windows_event.ics', '2015-02-20T09:30:00', 'Romance Standard Time', '2015-02-20T08:30:00Z'],
    // Teams invite, May is CEST (UTC+2).
    ['bluemind/teams.request.ics', '2020-05-29T18:00:00', 'Romance Standard Time', '2020-05-29T16:00:00Z'],
    ['nylas-sync-engine/iphone_through_exchange.ics', '2014-12-27T16:00:00', 'Europe/Paris', '2014-12-27T15:00:00Z'],
    ['nylas-sync-engine/google_cancelled1.ics', '2015-04-01T14:00:00', 'UTC', '2015-04-01T14:00:00Z'],
    // Asia/Ho_Chi_Minh is UTC+7.
    ['bluemind/bluemind.counter.ics', '2022-02-14T00:00:00', 'Asia/Ho_Chi_Minh', '2022-02-13T17:00:00Z'],
    // No VTIMEZONE in this file: Los Angeles in April is PDT (UTC-7).
    ['nylas-sync-engine/meetup_infinite.ics', '2011-04-19T17:00:00', 'America/Los_Angeles', '2011-04-20T00:00:00Z'],
  ];
  for (const [file, local, tzid, utc] of cases) {
    const facts = readCalendar(corpusFile(file)!);
    assert.deepEqual(facts.start, { local, tzid, utc, allDay: false }, file);
  }
  const win = readCalendar(corpusFile('nylas-sync-engine/windows_event.ics')!);
  assert.equal(win.sequence, 4);
  assert.equal(win.summary, 'Pommes');
  assert.equal(win.organizer, 'inbox.apptest2@inboxapp.onmicrosoft.com', 'MAILTO: in upper case is removed');
  assert.equal(win.end?.utc, '2015-02-20T09:00:00Z');
});

test('corpus: importLatin1.ics is not UTF-8; it is read as windows-1252 with a warning', { skip: skipCorpus }, () => {
  const facts = readCalendar(corpusFile('thunderbird-comm-central/importLatin1.ics')!);
  assert.equal(facts.method, null);
  assert.equal(facts.summary, 'Event One');
  assert.deepEqual(facts.start, { local: '2019-01-01T15:00:00', tzid: null, utc: null, allDay: false }, 'floating time has no instant');
  assert.ok(facts.warnings.some((w) => /not valid UTF-8/.test(w)));
});

test('UTF-8 BOM is stripped (ical.js would throw on it)', () => {
  const text = ics({ method: 'REQUEST', event: ['SUMMARY:Café'] });
  for (const data of ['\uFEFF' + text, Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(text)])]) {
    const facts = readCalendar(data);
    assert.equal(facts.method, 'REQUEST');
    assert.equal(facts.summary, 'Café');
  }
});

test('garbage and empty input: no facts, a warning; the method parameter still counts', () => {
  for (const data of ['garbage', '<html><body>hi</body></html>', '', Buffer.alloc(0), Buffer.from([0, 1, 2, 255])]) {
    const facts = readCalendar(data, 'REQUEST;;');
    assert.equal(facts.method, 'REQUEST');
    assert.equal(facts.component, null);
    assert.ok(facts.warnings.length > 0);
  }
  assert.equal(readCalendar('garbage').method, null);
  // ical.js quotes the bad line in its error; the warning stays short anyway.
  const long = readCalendar('x'.repeat(100_000));
  assert.ok(long.warnings.length > 0 && long.warnings.every((w) => w.length <= 200));
});

test('unterminated calendar (a cut-off part) is closed and read, with a warning', () => {
  const full = ics({ method: 'CANCEL', event: ['SUMMARY:Gone', 'DTSTART:20261201T100000Z'] });
  const cut = full.slice(0, full.indexOf('END:VEVENT'));
  const facts = readCalendar(cut, 'CANCEL');
  assert.equal(facts.method, 'CANCEL');
  assert.equal(facts.summary, 'Gone');
  assert.ok(facts.warnings.some((w) => /unterminated/.test(w)));
  // Cut in the middle of a line: that partial line is dropped, the rest is read.
  const mid = full.slice(0, full.indexOf('SUMMARY:Gone') + 9);
  assert.equal(readCalendar(mid).uid, 'uid-1@example.org');
});

test('a bad RRULE (ical.js throws at parse time) is dropped; the event is still read', () => {
  const facts = readCalendar(ics({ method: 'REQUEST', event: ['SUMMARY:Weekly', 'DTSTART:20261201T100000Z', 'RRULE:FREQ=SOMETIMES;WKST=XX'] }));
  assert.equal(facts.method, 'REQUEST');
  assert.equal(facts.summary, 'Weekly');
  assert.equal(facts.start?.utc, '2026-12-01T10:00:00Z');
  assert.ok(facts.warnings.some((w) => /recurrence rules dropped/.test(w)));
});

test('lower-case and decorated methods are upper-cased', () => {
  assert.equal(readCalendar(ics({ method: 'request' })).method, 'REQUEST');
  assert.equal(readCalendar(ics({ method: 'Cancel' })).method, 'CANCEL');
  assert.equal(normalizeMethod('REQUEST;;'), 'REQUEST');
  assert.equal(normalizeMethod(' "request" '), 'REQUEST');
  assert.equal(normalizeMethod(''), null);
  assert.equal(normalizeMethod(';;'), null);
  assert.equal(normalizeMethod('<script>'), null);
  assert.equal(normalizeMethod(null), null);
});

test('METHOD inside wins over the method parameter, with a warning', () => {
  const facts = readCalendar(ics({ method: 'CANCEL' }), 'REQUEST');
  assert.equal(facts.method, 'CANCEL');
  assert.ok(facts.warnings.some((w) => /disagrees/.test(w)));
});

test('no METHOD inside: the method parameter is used (Domino-style invites)', () => {
  const facts = readCalendar(ics({}), 'request');
  assert.equal(facts.method, 'REQUEST');
  assert.equal(readCalendar(ics({})).method, null);
});

test('Windows zone name with its VTIMEZONE: the file definition wins over any name mapping', () => {
  // Deliberately +05:00, which W. Europe Standard Time never is.
  const facts = readCalendar(ics({
    method: 'REQUEST',
    event: ['DTSTART;TZID=W. Europe Standard Time:20261201T100000', 'DTEND;TZID="W. Europe Standard Time":20261201T110000'],
    extra: fixedZone('W. Europe Standard Time', '+0500'),
  }));
  assert.deepEqual(facts.start, { local: '2026-12-01T10:00:00', tzid: 'W. Europe Standard Time', utc: '2026-12-01T05:00:00Z', allDay: false });
  assert.equal(facts.end?.utc, '2026-12-01T06:00:00Z');
});

test('the same TZID in two messages resolves to each file’s own definition (no global registry)', () => {
  const a = readCalendar(ics({ event: ['DTSTART;TZID=Custom Zone:20261201T100000'], extra: fixedZone('Custom Zone', '+0500') }));
  const b = readCalendar(ics({ event: ['DTSTART;TZID=Custom Zone:20261201T100000'], extra: fixedZone('Custom Zone', '-0300') }));
  const c = readCalendar(ics({ event: ['DTSTART;TZID=Custom Zone:20261201T100000'] }));
  assert.equal(a.start?.utc, '2026-12-01T05:00:00Z');
  assert.equal(b.start?.utc, '2026-12-01T13:00:00Z');
  assert.equal(c.start?.utc, null, 'a zone defined only in other messages stays unknown');
});

test('TZID without VTIMEZONE: IANA names and common Windows names resolve, unknown names do not', () => {
  const start = (tzid: string): ReturnType<typeof readCalendar>['start'] =>
    readCalendar(ics({ event: [`DTSTART;TZID=${tzid}:20260715T090000`] })).start;
  assert.equal(start('Europe/Berlin')?.utc, '2026-07-15T07:00:00Z'); // CEST
  assert.equal(start('America/New_York')?.utc, '2026-07-15T13:00:00Z'); // EDT
  assert.equal(start('W. Europe Standard Time')?.utc, '2026-07-15T07:00:00Z');
  assert.equal(start('Eastern Standard Time')?.utc, '2026-07-15T13:00:00Z');
  assert.equal(start('Tokyo Standard Time')?.utc, '2026-07-15T00:00:00Z'); // JST, no DST
  const unknown = readCalendar(ics({ event: ['DTSTART;TZID=Mars/Olympus Mons:20260715T090000'] }));
  assert.deepEqual(unknown.start, { local: '2026-07-15T09:00:00', tzid: 'Mars/Olympus Mons', utc: null, allDay: false });
  assert.ok(unknown.warnings.some((w) => /Mars\/Olympus Mons/.test(w)));
});

test('all-day events: date only, no instant', () => {
  const facts = readCalendar(ics({ method: 'PUBLISH', event: ['DTSTART;VALUE=DATE:20261224', 'DTEND;VALUE=DATE:20261225'] }));
  assert.deepEqual(facts.start, { local: '2026-12-24', tzid: null, utc: null, allDay: true });
  assert.deepEqual(facts.end, { local: '2026-12-25', tzid: null, utc: null, allDay: true });
});

test('DURATION gives the end; VTODO uses DUE', () => {
  const dur = readCalendar(ics({ event: ['DTSTART:20261201T100000Z', 'DURATION:PT90M'] }));
  assert.equal(dur.end?.utc, '2026-12-01T11:30:00Z');
  const todo = readCalendar(ics({ method: 'REQUEST', component: 'VTODO', event: ['DTSTART:20261201T100000Z', 'DUE:20261203T170000Z'] }));
  assert.equal(todo.component, 'VTODO');
  assert.equal(todo.end?.utc, '2026-12-03T17:00:00Z');
});

test('master event: the one without RECURRENCE-ID, even when an exception comes first', () => {
  const text = [
    'BEGIN:VCALENDAR', 'METHOD:REQUEST',
    'BEGIN:VEVENT', 'UID:series', 'RECURRENCE-ID:20261208T100000Z', 'SUMMARY:Moved', 'DTSTART:20261208T120000Z', 'SEQUENCE:3', 'END:VEVENT',
    'BEGIN:VEVENT', 'UID:series', 'SUMMARY:Weekly', 'DTSTART:20261201T100000Z', 'RRULE:FREQ=WEEKLY', 'SEQUENCE:2', 'END:VEVENT',
    'END:VCALENDAR',
  ].join('\n');
  const facts = readCalendar(text);
  assert.equal(facts.summary, 'Weekly');
  assert.equal(facts.recurrenceId, null);
  assert.equal(facts.sequence, 2);
  // A naked exception (no master in the message) is read as it is.
  const naked = readCalendar(ics({ method: 'REQUEST', event: ['RECURRENCE-ID:20261208T100000Z', 'SUMMARY:Only'] }));
  assert.equal(naked.summary, 'Only');
  assert.match(naked.recurrenceId ?? '', /^2026-12-08T10:00:00/);
});

test('VFREEBUSY is reported as the component', () => {
  const facts = readCalendar(ics({ method: 'REQUEST', component: 'VFREEBUSY', event: ['DTSTART:20261201T000000Z', 'DTEND:20261202T000000Z'] }));
  assert.equal(facts.component, 'VFREEBUSY');
  assert.equal(facts.method, 'REQUEST');
});

test('bad property values become warnings, the rest is read', () => {
  const facts = readCalendar(ics({ method: 'REQUEST', event: ['SUMMARY:Still here', 'DTSTART:2026-99-99', 'SEQUENCE:abc'] }));
  assert.equal(facts.summary, 'Still here');
  assert.equal(facts.start, null);
  assert.ok(facts.warnings.some((w) => /DTSTART/.test(w)));
  assert.equal(facts.sequence, 0, 'ical.js coerces a non-numeric SEQUENCE to 0');
});

test('organizer: mailto: in any case removed, bare addresses kept (Zoom)', () => {
  assert.equal(readCalendar(ics({ event: ['ORGANIZER;CN=Ann:mailto:ann@example.org'] })).organizer, 'ann@example.org');
  assert.equal(readCalendar(ics({ event: ['ORGANIZER;CN=Zoom:no-reply@zoom.us'] })).organizer, 'no-reply@zoom.us');
  assert.equal(organizerAddress('MAILTO:Bob@Example.org'), 'Bob@Example.org');
  assert.equal(organizerAddress('mailto:'), null);
  assert.equal(organizerAddress(undefined), null);
});

test('several VCALENDAR objects: the first with an event is read', () => {
  const two = ['BEGIN:VCALENDAR', 'METHOD:PUBLISH', 'END:VCALENDAR', ics({ method: 'REQUEST', event: ['SUMMARY:Second'] })].join('\r\n');
  const facts = readCalendar(two);
  assert.equal(facts.method, 'REQUEST');
  assert.equal(facts.summary, 'Second');
});

test('charset: a declared charset is honoured; invalid UTF-8 falls back to windows-1252', () => {
  const latin1 = Buffer.from(ics({ method: 'REQUEST', event: ['SUMMARY:Réunion'] }), 'latin1');
  assert.equal(readCalendar(latin1, null, 'iso-8859-1').summary, 'Réunion');
  assert.equal(readCalendar(latin1).summary, 'Réunion');
  const utf8 = Buffer.from(ics({ event: ['SUMMARY:Réunion'] }), 'utf8');
  assert.equal(readCalendar(utf8, null, 'utf-8').summary, 'Réunion');
  const odd = readCalendar(utf8, null, 'x-no-such-charset');
  assert.equal(odd.summary, 'Réunion');
  assert.ok(odd.warnings.some((w) => /unknown charset/.test(w)));
});

test('input over the cap is not parsed; METHOD comes from the parameter, else a quick scan', () => {
  const big = ics({ method: 'CANCEL', event: ['X-ALT-DESC:' + 'x'.repeat(MAX_CALENDAR_BYTES)] });
  const facts = readCalendar(big, 'CANCEL');
  assert.equal(facts.method, 'CANCEL');
  assert.equal(facts.component, null);
  assert.ok(facts.warnings.some((w) => /cap/.test(w)));
  assert.equal(readCalendar(Buffer.from(big)).method, 'CANCEL');
});

test('readCalendarMethod: cheap scan of the METHOD line', () => {
  assert.equal(readCalendarMethod(ics({ method: 'request' })), 'REQUEST');
  assert.equal(readCalendarMethod(Buffer.from('BEGIN:VCALENDAR\nMETHOD;X-P=1: Add\nEND:VCALENDAR')), 'ADD');
  assert.equal(readCalendarMethod(ics({ event: ['DESCRIPTION:see\\nMETHOD:CANCEL'] })), null, 'escaped text is not a line');
  assert.equal(readCalendarMethod('garbage'), null);
});

test('zonedTimeToUtc: ordinary times, DST gap and overlap (RFC 5545 3.3.5), unknown zones', () => {
  assert.equal(zonedTimeToUtc('2026-01-15T12:00:00', 'Europe/Berlin'), '2026-01-15T11:00:00Z');
  assert.equal(zonedTimeToUtc('2026-07-01T12:00:00', 'America/New_York'), '2026-07-01T16:00:00Z');
  assert.equal(zonedTimeToUtc('2026-07-01T12:00:00', 'UTC'), '2026-07-01T12:00:00Z');
  // 2026-03-29 02:30 does not exist in Berlin: read with the offset before the gap (+01:00).
  assert.equal(zonedTimeToUtc('2026-03-29T02:30:00', 'Europe/Berlin'), '2026-03-29T01:30:00Z');
  // 2026-10-25 02:30 happens twice in Berlin: the first one (+02:00).
  assert.equal(zonedTimeToUtc('2026-10-25T02:30:00', 'Europe/Berlin'), '2026-10-25T00:30:00Z');
  assert.equal(zonedTimeToUtc('2026-07-01T12:00:00', 'Not/AZone'), null);
  assert.equal(zonedTimeToUtc('not a time', 'UTC'), null);
});

test('mutated calendars never throw', () => {
  const base = ics({
    method: 'REQUEST',
    event: ['SUMMARY:Fuzz', 'DTSTART;TZID=Custom Zone:20261201T100000', 'RRULE:FREQ=WEEKLY;COUNT=3', 'ORGANIZER:mailto:a@b'],
    extra: fixedZone('Custom Zone', '+0100'),
  });
  let seed = 7;
  const rand = (): number => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed; };
  const alphabet = ':;="\r\n \\ZT0-BEGINEND';
  for (let i = 0; i < 1500; i++) {
    const chars = base.split('');
    for (let k = 0; k < 1 + (rand() % 5); k++) chars[rand() % chars.length] = alphabet[rand() % alphabet.length]!;
    const mutated = chars.join('').slice(0, rand() % (base.length + 1));
    assert.doesNotThrow(() => readCalendar(mutated, i % 2 ? 'REQUEST' : null));
  }
});

// Review regressions: hostile input must not keep ical.js busy (serve mode runs every message in one thread).

test('a huge DURATION is not added (ical.js steps through it month by month)', () => {
  const t = performance.now();
  const facts = readCalendar(ics({ method: 'REQUEST', event: ['DTSTART:20261201T100000Z', 'DURATION:P199999999W'] }));
  assert.ok(performance.now() - t < 1000, `took ${Math.round(performance.now() - t)} ms`);
  assert.equal(facts.start?.utc, '2026-12-01T10:00:00Z');
  assert.equal(facts.end, null);
  assert.ok(facts.warnings.some((w) => /DURATION/.test(w)));
});

/** A VTIMEZONE whose two observances follow `rule` from `since`. */
function ruledZone(tzid: string, rule: string, since = '16010101T000000'): string[] {
  return ['BEGIN:VTIMEZONE', `TZID:${tzid}`,
    'BEGIN:STANDARD', `DTSTART:${since}`, 'TZOFFSETFROM:+0200', 'TZOFFSETTO:+0100', `RRULE:${rule};BYMONTH=10`, 'END:STANDARD',
    'BEGIN:DAYLIGHT', `DTSTART:${since}`, 'TZOFFSETFROM:+0100', 'TZOFFSETTO:+0200', `RRULE:${rule};BYMONTH=3`, 'END:DAYLIGHT',
    'END:VTIMEZONE'];
}

test('a VTIMEZONE too costly for ical.js to expand is not used; the zone name still resolves', () => {
  // FREQ=DAILY since 1601: ical.js expands every day up to now + 5 years before it answers.
  const t = performance.now();
  const daily = readCalendar(ics({ event: ['DTSTART;TZID=Europe/Berlin:20261201T100000'], extra: ruledZone('Europe/Berlin', 'FREQ=DAILY') }));
  // A yearly rule for the year 9999 with a COUNT (so it cannot start later): 8400 years of transitions.
  const far = readCalendar(ics({ event: ['DTSTART;TZID=Custom Zone:99991201T100000'], extra: ruledZone('Custom Zone', 'FREQ=YEARLY;BYDAY=-1SU;COUNT=9000') }));
  // Without a COUNT the rule starts two years before 9999 (lib/calendar-zone.ts): cheap, and converted.
  const farOpen = readCalendar(ics({ event: ['DTSTART;TZID=Custom Zone:99991201T100000'], extra: ruledZone('Custom Zone', 'FREQ=YEARLY;BYDAY=-1SU') }));
  assert.ok(performance.now() - t < 1000, `took ${Math.round(performance.now() - t)} ms`);
  assert.equal(daily.start?.utc, '2026-12-01T09:00:00Z', 'read by its IANA name instead');
  assert.ok(daily.warnings.some((w) => /Europe\/Berlin/.test(w)));
  assert.deepEqual(far.start, { local: '9999-12-01T10:00:00', tzid: 'Custom Zone', utc: null, allDay: false });
  assert.deepEqual(farOpen.start, { local: '9999-12-01T10:00:00', tzid: 'Custom Zone', utc: '9999-12-01T09:00:00Z', allDay: false });
  // An ordinary Outlook-style zone (yearly, since 1601) is still used.
  const usual = readCalendar(ics({ event: ['DTSTART;TZID=Custom Zone:20260715T100000'], extra: ruledZone('Custom Zone', 'FREQ=YEARLY;BYDAY=-1SU') }));
  assert.equal(usual.start?.utc, '2026-07-15T08:00:00Z');
});

test('a content line with a huge parameter list is not handed to ical.js (it rescans the line per parameter)', () => {
  const t = performance.now();
  const facts = readCalendar(ics({ method: 'CANCEL', event: ['SUMMARY' + ';X=1'.repeat(200_000) + ':hi'] }), 'REQUEST');
  assert.ok(performance.now() - t < 1000, `took ${Math.round(performance.now() - t)} ms`);
  assert.equal(facts.method, 'CANCEL', 'the METHOD line is still found');
  assert.ok(facts.warnings.some((w) => /parameter/.test(w)));
});

test('unparsed calendars: a readable METHOD line still wins over the method parameter', () => {
  const big = ics({ method: 'REPLY', event: ['X-ALT-DESC:' + 'x'.repeat(MAX_CALENDAR_BYTES)] });
  assert.equal(readCalendar(big, 'REQUEST').method, 'REPLY', 'over the cap');
  const broken = 'BEGIN:VCALENDAR\r\nMETHOD:CANCEL\r\nBEGIN:VEVENT\r\nthis line has no colon\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n';
  const facts = readCalendar(broken, 'REQUEST');
  assert.equal(facts.component, null, 'the sample really does not parse');
  assert.equal(facts.method, 'CANCEL', 'unparseable');
  assert.equal(readCalendar('garbage', 'REQUEST').method, 'REQUEST', 'no METHOD line: the parameter counts');
});

test('a UTC time with a stray TZID is labelled UTC (RFC 5545 3.3.5: TZID does not apply to UTC times)', () => {
  const facts = readCalendar(ics({ event: ['DTSTART;TZID=Europe/Berlin:20261201T100000Z'] }));
  // The footer shows local + tzid: "10:00 (Europe/Berlin)" would be an hour off.
  assert.deepEqual(facts.start, { local: '2026-12-01T10:00:00', tzid: 'UTC', utc: '2026-12-01T10:00:00Z', allDay: false });
  // years 0-99 stay themselves (Date.UTC would read them as 1900-1999)
  assert.equal(readCalendar(ics({ event: ['DTSTART:00010101T100000Z'] })).start?.utc, '0001-01-01T10:00:00Z');
});

// Review regressions: lib/calendar-event.ts runs on the filter path too (lib/snapshot-ingest.ts reads every
// calendar part with readEvent when the web view is on), so hostile input must not keep it busy either.

test('readEvent: a huge DURATION is not added, a VTIMEZONE too costly to expand is not expanded', async () => {
  const { readEvent } = await import('../lib/calendar-event.js');
  const t = performance.now();
  const dur = readEvent(ics({ method: 'REQUEST', event: ['DTSTART:20261201T100000Z', 'DURATION:P199999999W'] }));
  const zone = readEvent(ics({ method: 'REQUEST', event: ['DTSTART;TZID=Europe/Berlin:20261201T100000'], extra: ruledZone('Europe/Berlin', 'FREQ=DAILY') }));
  assert.ok(performance.now() - t < 1000, `took ${Math.round(performance.now() - t)} ms`);
  assert.equal(dur?.start?.utc, Date.UTC(2026, 11, 1, 10));
  assert.equal(dur?.end, null);
  assert.equal(zone?.start?.utc, Date.UTC(2026, 11, 1, 9), 'read by its IANA name instead');
  // an ordinary Outlook-style zone (yearly, since 1601) is still the file's own definition
  const usual = readEvent(ics({ event: ['DTSTART;TZID=Custom Zone:20260715T100000'], extra: ruledZone('Custom Zone', 'FREQ=YEARLY;BYDAY=-1SU') }));
  assert.equal(usual?.start?.utc, Date.UTC(2026, 6, 15, 8));
});

test('readEvent and occurrences: rules ical.js would step through unit by unit are not expanded', async () => {
  const { readEvent, occurrences } = await import('../lib/calendar-event.js');
  for (const rule of ['FREQ=DAILY;COUNT=5000;BYMONTH=2;BYMONTHDAY=29', 'FREQ=HOURLY;COUNT=5000;BYMONTH=2;BYMONTHDAY=29',
    'FREQ=SECONDLY;UNTIL=20991231T000000Z;BYMONTH=12;BYDAY=-1SU;BYHOUR=23']) {
    const text = ics({ method: 'REQUEST', event: ['DTSTART:20261201T100000Z', 'DTEND:20261201T110000Z', `RRULE:${rule}`] });
    const t = performance.now();
    const ev = readEvent(text);
    occurrences(text, Date.UTC(2026, 0, 1), Date.UTC(2030, 0, 1));
    assert.ok(performance.now() - t < 1000, `${rule}: took ${Math.round(performance.now() - t)} ms`);
    assert.equal(ev?.start?.utc, Date.UTC(2026, 11, 1, 10), rule);
    assert.equal(ev?.lastEnd, null, `${rule}: treated as a series without a known end`);
  }
  // ordinary rules still expand
  const weekdays = ics({ event: ['DTSTART:20261201T100000Z', 'DTEND:20261201T110000Z', 'RRULE:FREQ=DAILY;BYDAY=MO,TU,WE,TH,FR;COUNT=10'] });
  assert.equal(readEvent(weekdays)?.lastEnd, Date.UTC(2026, 11, 14, 11));
  assert.equal(occurrences(weekdays, Date.UTC(2026, 0, 1), Date.UTC(2027, 0, 1)).length, 10);
});
