// Tests for lib/calendar-slim.ts and the reader's slim parse: what is cut and what makes it refuse, and
// that reading the cut calendar gives the same facts and warnings as parsing every line, for every
// calendar in the fixtures and the corpus and for hand-made zone cases.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { slimCalendar } from '../lib/calendar-slim.js';
import { readCalendar } from '../lib/calendar-reader.js';
import { analyzeMessage, isClassifierPart } from '../lib/mime-structure.js';
import { spoolFromBuffer } from '../lib/spool.js';
import { CORPUS_DIR, CORPUS_SKIP_MESSAGE, corpusFile, corpusFiles } from './helpers/corpus.js';
import { FIXTURE_DIR } from './helpers/mail-fixtures.js';

const crlf = (...lines: string[]) => lines.join('\r\n') + '\r\n';

const ZONE = [
  'BEGIN:VTIMEZONE', 'TZID:W. Europe Standard Time',
  'BEGIN:STANDARD', 'DTSTART:16010101T030000', 'TZOFFSETFROM:+0200', 'TZOFFSETTO:+0100', 'RRULE:FREQ=YEARLY;INTERVAL=1;BYDAY=-1SU;BYMONTH=10', 'END:STANDARD',
  'BEGIN:DAYLIGHT', 'DTSTART:16010101T020000', 'TZOFFSETFROM:+0100', 'TZOFFSETTO:+0200', 'RRULE:FREQ=YEARLY;INTERVAL=1;BYDAY=-1SU;BYMONTH=3', 'END:DAYLIGHT',
  'END:VTIMEZONE',
];

/** An Outlook-style invitation: zone first, attendees, folded description, alarm. */
function outlook(over: { zone?: string[]; start?: string; extra?: string[] } = {}): string {
  return crlf(
    'BEGIN:VCALENDAR', 'METHOD:REQUEST', 'PRODID:Microsoft Exchange Server 2010', 'VERSION:2.0',
    ...(over.zone ?? ZONE),
    'BEGIN:VEVENT',
    'ORGANIZER;CN=Ada:mailto:ada@example.org',
    'ATTENDEE;ROLE=REQ-PARTICIPANT;PARTSTAT=NEEDS-ACTION;RSVP=TRUE;CN=Bob:mailto:bob@example.net',
    'DESCRIPTION;LANGUAGE=en-US:Line one\\nline two', ' folded on', '\tand on',
    'UID:040000008200E00074C5B7101A82E008',
    'SUMMARY;LANGUAGE=en-US:Quarterly', '  review',
    over.start ?? 'DTSTART;TZID=W. Europe Standard Time:20261201T100000',
    'DTEND;TZID=W. Europe Standard Time:20261201T110000',
    'SEQUENCE:2',
    'X-MICROSOFT-CDO-BUSYSTATUS:TENTATIVE',
    ...(over.extra ?? []),
    'BEGIN:VALARM', 'DESCRIPTION:REMINDER', 'TRIGGER;RELATED=START:-PT15M', 'ACTION:DISPLAY', 'END:VALARM',
    'END:VEVENT', 'END:VCALENDAR',
  );
}

test('slimCalendar keeps the lines the reader reads, with their folds, and cuts the VTIMEZONE out whole', () => {
  const slim = slimCalendar(outlook());
  assert.ok(slim);
  assert.deepEqual(slim.zones, [crlf(...ZONE)]);
  assert.equal(slim.text, crlf(
    'BEGIN:VCALENDAR', 'METHOD:REQUEST',
    'BEGIN:VEVENT',
    'ORGANIZER;CN=Ada:mailto:ada@example.org',
    'UID:040000008200E00074C5B7101A82E008',
    'SUMMARY;LANGUAGE=en-US:Quarterly', '  review',
    'DTSTART;TZID=W. Europe Standard Time:20261201T100000',
    'DTEND;TZID=W. Europe Standard Time:20261201T110000',
    'SEQUENCE:2',
    'BEGIN:VALARM', 'END:VALARM',
    'END:VEVENT', 'END:VCALENDAR',
  ));
});

test('slimCalendar keeps RRULE (ical.js checks it while parsing) and reads LF-only and lower-case text', () => {
  const text = 'begin:vcalendar\nbegin:vevent\nuid:u1\nrrule:FREQ=WEEKLY\nattendee:mailto:x@example.org\nend:vevent\nend:vcalendar';
  assert.equal(slimCalendar(text)?.text, 'begin:vcalendar\nbegin:vevent\nuid:u1\nrrule:FREQ=WEEKLY\nend:vevent\nend:vcalendar');
});

test('slimCalendar refuses what it cannot cut the way ical.js reads it', () => {
  const base = outlook();
  const cases: Record<string, string> = {
    'two objects': base + base,
    'an event without VCALENDAR': crlf('BEGIN:VEVENT', 'UID:u', 'END:VEVENT'),
    'BEGIN with a parameter': base.replace('BEGIN:VEVENT', 'BEGIN;X=1:VEVENT'),
    'a folded BEGIN': base.replace('BEGIN:VEVENT', 'BEGIN:VEV\r\n ENT'),
    'a VTIMEZONE inside the event': outlook({ zone: [], extra: ZONE }),
    'a line without ":" or ";"': base.replace('SEQUENCE:2', 'SEQUENCE 2'),
    'a control character in a name': base.replace('SEQUENCE:2', 'SEQ\x15UENCE:2'),
    'a property group': base.replace('SEQUENCE:2', 'G1.SEQUENCE:2'),
    'a missing END': base.replace('END:VCALENDAR\r\n', ''),
    'an END too many': base + 'END:VCALENDAR\r\n',
    'a leading blank': ' ' + base,
    'an empty line before a fold': base.replace('SEQUENCE:2\r\n', 'SEQUENCE:2\r\n\r\n more\r\n'),
  };
  for (const [name, text] of Object.entries(cases)) assert.equal(slimCalendar(text), null, name);
  // an empty line on its own is skipped, as ical.js skips it
  assert.ok(slimCalendar(base.replace('BEGIN:VEVENT', '\r\nBEGIN:VEVENT')));
});

/** Both readings of one calendar; the slim one must have been possible for `expectSlim`. */
function assertSameReading(data: Buffer | string, label: string, methodParam: string | null = null, charset: string | null = null): void {
  const slim = readCalendar(data, methodParam, charset);
  const full = readCalendar(data, methodParam, charset, { slim: false });
  assert.deepEqual(slim, full, label);
}

test('hand-made zone cases read the same with and without the cut', () => {
  const cases: Record<string, string> = {
    'Outlook invitation': outlook(),
    'TZID with no VTIMEZONE of that name': outlook({ start: 'DTSTART;TZID=Romance Standard Time:20261201T100000' }),
    'UTC time with a TZID': outlook({ start: 'DTSTART;TZID=W. Europe Standard Time:20261201T100000Z' }),
    'date with a TZID': outlook({ start: 'DTSTART;TZID=W. Europe Standard Time;VALUE=DATE:20261201' }),
    'TZID=UTC with no zone': outlook({ zone: [], start: 'DTSTART;TZID=UTC:20261201T100000' }),
    'a VTIMEZONE named UTC': outlook({ zone: ZONE.map((l) => l.replace('W. Europe Standard Time', 'UTC')), start: 'DTSTART;TZID=UTC:20261201T100000' }),
    'two zones of the same name (the first counts)': outlook({ zone: [...ZONE.map((l) => l.replace('+0100', '+0300')), ...ZONE] }),
    'zone after the event': outlook({ zone: [] }).replace('END:VCALENDAR', [...ZONE, 'END:VCALENDAR'].join('\r\n')),
    'zone without TZID': outlook({ zone: ZONE.filter((l) => !l.startsWith('TZID')) }),
    'zone with a bad RRULE': outlook({ zone: ZONE.map((l) => l.replace('FREQ=YEARLY', 'FREQ=SOMETIMES')) }),
    'a bad RRULE in the event': outlook({ extra: ['RRULE:FREQ=SOMETIMES;WKST=XX'] }),
    'quoted TZID': outlook({ start: 'DTSTART;TZID="W. Europe Standard Time":20261201T100000' }),
    'DURATION instead of DTEND': outlook().replace(/DTEND[^\r]*\r\n/, 'DURATION:PT90M\r\n'),
    'a task with DUE': outlook().replace(/VEVENT/g, 'VTODO').replace('DTEND', 'DUE'),
    'an instance before its master': outlook().replace('BEGIN:VEVENT', 'BEGIN:VEVENT\r\nUID:x\r\nRECURRENCE-ID:20261208T100000Z\r\nSUMMARY:moved\r\nEND:VEVENT\r\nBEGIN:VEVENT'),
    'a zone with a daily rule since 1601 (too costly: name used)': outlook({ zone: ZONE.map((l) => l.replace('FREQ=YEARLY;INTERVAL=1;BYDAY=-1SU;BYMONTH=10', 'FREQ=DAILY')) }),
    'free/busy': crlf('BEGIN:VCALENDAR', 'METHOD:PUBLISH', 'BEGIN:VFREEBUSY', 'UID:f', 'DTSTART:20261201T000000Z', 'END:VFREEBUSY', 'END:VCALENDAR'),
  };
  for (const [name, text] of Object.entries(cases)) assertSameReading(text, name);
  assert.equal(readCalendar(outlook()).start?.utc, '2026-12-01T09:00:00Z');
  assert.equal(readCalendar(outlook({ zone: [...ZONE.map((l) => l.replace(/\+0100/g, '+0300')), ...ZONE] })).start?.utc, '2026-12-01T07:00:00Z');
});

test('an empty TZID binds no zone, as in the full parse (ical.js looks up only a non-empty TZID)', () => {
  const empty = ZONE.map((l) => l.replace('TZID:W. Europe Standard Time', 'TZID:'));
  const text = outlook({ zone: empty, start: 'DTSTART;TZID=:20261201T100000' }).replace(/DTEND;TZID=[^:]*/, 'DTEND;TZID=""');
  assertSameReading(text, 'empty TZID');
  assert.equal(readCalendar(text).start?.utc, null);
});

test('lines the reader does not read cannot stop the cut reading (the full parse gives up on them)', () => {
  const text = outlook({ extra: ['ATTENDEE;CN:mailto:broken@example.org'] });
  const full = readCalendar(text, null, null, { slim: false });
  assert.equal(full.summary, null);
  const slim = readCalendar(text);
  assert.equal(slim.summary, 'Quarterly review');
  assert.equal(slim.start?.utc, '2026-12-01T09:00:00Z');
  assert.deepEqual(slim.warnings, []);
});

/** Decoded calendar parts (.ics, text/calendar) of a message. */
async function calendarParts(eml: Buffer): Promise<Array<{ data: Buffer; method: string | null; charset: string | null }>> {
  const { structure } = await analyzeMessage(spoolFromBuffer(eml));
  return structure.parts
    .filter((p) => isClassifierPart(p) && p.decoded && !/tnef/.test(p.contentType) && (p.filename ?? '').toLowerCase() !== 'winmail.dat')
    .map((p) => ({ data: p.decoded!, method: p.params.method ?? null, charset: p.charset }));
}

test('every fixture calendar reads the same with and without the cut, and most are cut', async () => {
  let cut = 0;
  let all = 0;
  for (const name of readdirSync(FIXTURE_DIR).filter((f) => f.endsWith('.eml'))) {
    for (const [i, p] of (await calendarParts(readFileSync(join(FIXTURE_DIR, name)))).entries()) {
      all++;
      if (slimCalendar(p.data.toString('utf8').replace(/^\uFEFF/, ''))) cut++;
      assertSameReading(p.data, `${name} part ${i}`, p.method, p.charset);
    }
  }
  assert.ok(all >= 15, `fixtures hold calendars (${all})`);
  assert.ok(cut >= all * 0.8, `${cut} of ${all} fixture calendars take the cut path`);
  const exchange = await calendarParts(readFileSync(join(FIXTURE_DIR, 'exchange-12k.eml')));
  assert.ok(slimCalendar(exchange[0]!.data.toString('utf8')), 'the benchmark invitation takes the cut path');
});

test('every corpus calendar reads the same with and without the cut', { skip: CORPUS_DIR ? false : CORPUS_SKIP_MESSAGE }, async () => {
  let cut = 0;
  let all = 0;
  for (const f of corpusFiles('.ics')) {
    const data = corpusFile(f)!;
    all++;
    if (slimCalendar(data.toString('utf8').replace(/^\uFEFF/, ''))) cut++;
    assertSameReading(data, f);
  }
  for (const f of corpusFiles('.eml')) {
    for (const [i, p] of (await calendarParts(corpusFile(f)!)).entries()) {
      all++;
      if (slimCalendar(p.data.toString('utf8').replace(/^\uFEFF/, ''))) cut++;
      assertSameReading(p.data, `${f} part ${i}`, p.method, p.charset);
    }
  }
  assert.ok(all >= 20, `corpus holds calendars (${all})`);
  assert.ok(cut >= all * 0.6, `${cut} of ${all} corpus calendars take the cut path`);
});
