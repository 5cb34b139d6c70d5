// Test data for the web view: iCalendar objects and whole invitation mails built in code, so each test
// states what it changes (SEQUENCE, METHOD, hostile values …). In: options. Out: CRLF text.
// Fails: never. Keys and settings for tests are fixed, non-secret values.

export const NY_TZ = [
  'BEGIN:VTIMEZONE', 'TZID:America/New_York',
  'BEGIN:DAYLIGHT', 'TZOFFSETFROM:-0500', 'TZOFFSETTO:-0400', 'TZNAME:EDT', 'DTSTART:19700308T020000', 'RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=2SU', 'END:DAYLIGHT',
  'BEGIN:STANDARD', 'TZOFFSETFROM:-0400', 'TZOFFSETTO:-0500', 'TZNAME:EST', 'DTSTART:19701101T020000', 'RRULE:FREQ=YEARLY;BYMONTH=11;BYDAY=1SU', 'END:STANDARD',
  'END:VTIMEZONE',
];

export interface IcsOptions {
  method?: string;
  uid?: string;
  sequence?: number;
  dtstamp?: string;
  summary?: string;
  location?: string;
  description?: string;
  url?: string;
  start?: string;
  end?: string;
  tzid?: string | null;
  withVtimezone?: boolean;
  rrule?: string;
  recurrenceId?: string;
  range?: string;
  attendees?: string[];
  extra?: string[];
  status?: string;
}

export function ics(o: IcsOptions = {}): string {
  const tz = o.tzid === undefined ? 'America/New_York' : o.tzid;
  const dt = (name: string, v: string) => (tz && !v.endsWith('Z') && v.length > 8 ? `${name};TZID=${tz}:${v}` : v.length === 8 ? `${name};VALUE=DATE:${v}` : `${name}:${v}`);
  const lines = [
    'BEGIN:VCALENDAR', 'VERSION:2.0', 'PRODID:-//test//web view//EN', `METHOD:${o.method ?? 'REQUEST'}`,
    ...(tz === 'America/New_York' && o.withVtimezone !== false ? NY_TZ : []),
    'BEGIN:VEVENT',
    `UID:${o.uid ?? 'web-test-1@example.org'}`,
    `SEQUENCE:${o.sequence ?? 0}`,
    `DTSTAMP:${o.dtstamp ?? '20261101T120000Z'}`,
    dt('DTSTART', o.start ?? '20261203T090000'),
    dt('DTEND', o.end ?? '20261203T100000'),
    `SUMMARY:${o.summary ?? 'Budget review'}`,
    ...(o.location ? [`LOCATION:${o.location}`] : []),
    ...(o.description ? [`DESCRIPTION:${o.description}`] : []),
    ...(o.url ? [`URL:${o.url}`] : []),
    ...(o.rrule ? [`RRULE:${o.rrule}`] : []),
    ...(o.recurrenceId ? [`RECURRENCE-ID${o.range ? `;RANGE=${o.range}` : ''}${tz ? `;TZID=${tz}` : ''}:${o.recurrenceId}`] : []),
    ...(o.status ? [`STATUS:${o.status}`] : []),
    'ORGANIZER;CN=Olga Organizer:mailto:olga@example.org',
    ...(o.attendees ?? ['ATTENDEE;CN=Ann Attendee;PARTSTAT=NEEDS-ACTION;RSVP=TRUE;ROLE=REQ-PARTICIPANT:mailto:Ann@Example.net', 'ATTENDEE;CN=Bob;PARTSTAT=ACCEPTED:mailto:bob@example.net']),
    'BEGIN:VALARM', 'ACTION:DISPLAY', 'DESCRIPTION:Reminder', 'TRIGGER:-PT15M', 'END:VALARM',
    ...(o.extra ?? []),
    'END:VEVENT', 'END:VCALENDAR', '',
  ];
  return lines.join('\r\n');
}

/** A whole iMIP mail around a calendar object. */
export function inviteMail(cal: string, o: { method?: string; messageId?: string; subject?: string; to?: string } = {}): Buffer {
  const method = o.method ?? (/^METHOD:(\S+)/m.exec(cal)?.[1] ?? 'REQUEST');
  return Buffer.from([
    'From: Olga Organizer <olga@example.org>',
    `To: ${o.to ?? 'ann@example.net'}`,
    `Subject: ${o.subject ?? 'Invitation: Budget review'}`,
    `Message-ID: <${o.messageId ?? 'invite-1@example.org'}>`,
    'Date: Sun, 1 Nov 2026 12:00:00 +0000',
    'MIME-Version: 1.0',
    'Content-Type: multipart/alternative; boundary="b1"',
    '',
    '--b1',
    'Content-Type: text/plain; charset=utf-8',
    '',
    'You are invited.',
    '',
    '--b1',
    `Content-Type: text/calendar; charset=utf-8; method=${method}`,
    '',
    cal.replace(/\r\n$/, ''),
    '--b1--',
    '',
  ].join('\r\n'));
}

export const TEST_KEYS = {
  web_token_keys: `1=${'ab'.repeat(32)}`,
  web_rcpt_key: 'cd'.repeat(32),
};
