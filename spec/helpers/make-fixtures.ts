// Writes fixtures/mail/*.eml: small messages in the shapes real calendar generators send, written
// from scratch for this project (MIT; nothing copied from the corpus). Run on purpose only:
//   node --import tsx spec/helpers/make-fixtures.ts
// In: nothing. Out: byte-exact .eml files (CRLF unless the name says lf); existing files are overwritten,
// so review the git diff afterwards and regenerate the golden files (spec/helpers/regen-golden.ts).

import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import iconv from 'iconv-lite';
import { tnefFixtures } from './tnef-fixture.js';

const OUT = join(resolve(dirname(fileURLToPath(import.meta.url)), '..', '..'), 'fixtures', 'mail');

type Piece = string | Buffer;

function eml(pieces: Piece[], lb = '\r\n'): Buffer {
  const out: Buffer[] = [];
  pieces.forEach((p, i) => {
    if (i) out.push(Buffer.from(lb));
    out.push(Buffer.isBuffer(p) ? p : Buffer.from(p, 'utf8'));
  });
  return Buffer.concat(out);
}

function b64(data: string | Buffer, width = 76): string[] {
  const s = (Buffer.isBuffer(data) ? data : Buffer.from(data, 'utf8')).toString('base64');
  const lines: string[] = [];
  for (let i = 0; i < s.length; i += width) lines.push(s.slice(i, i + width));
  return lines;
}

function ics(method: string, summary: string, uid: string, lb = '\r\n'): string {
  return [
    'BEGIN:VCALENDAR', `METHOD:${method}`, 'PRODID:-//calendar-link-filter//fixtures//EN', 'VERSION:2.0',
    'BEGIN:VEVENT', `UID:${uid}`, 'SEQUENCE:0', 'DTSTAMP:20261120T090000Z', 'DTSTART:20261201T090000Z',
    'DTEND:20261201T100000Z', `SUMMARY:${summary}`, 'ORGANIZER;CN=Ada Organizer:mailto:ada@example.org',
    'ATTENDEE;RSVP=TRUE:mailto:bob@example.net', 'END:VEVENT', 'END:VCALENDAR', '',
  ].join(lb);
}

/**
 * A calendar as Exchange and Outlook write it: a VTIMEZONE whose rules start in 1601 (what ical.js must
 * expand to convert the time), local times with TZID, the Microsoft properties, a reminder.
 */
function outlookIcs(summary: string, uid: string): string {
  return [
    'BEGIN:VCALENDAR', 'METHOD:REQUEST', 'PRODID:Microsoft Exchange Server 2010', 'VERSION:2.0',
    'BEGIN:VTIMEZONE', 'TZID:W. Europe Standard Time',
    'BEGIN:STANDARD', 'DTSTART:16010101T030000', 'TZOFFSETFROM:+0200', 'TZOFFSETTO:+0100', 'RRULE:FREQ=YEARLY;INTERVAL=1;BYDAY=-1SU;BYMONTH=10', 'END:STANDARD',
    'BEGIN:DAYLIGHT', 'DTSTART:16010101T020000', 'TZOFFSETFROM:+0100', 'TZOFFSETTO:+0200', 'RRULE:FREQ=YEARLY;INTERVAL=1;BYDAY=-1SU;BYMONTH=3', 'END:DAYLIGHT',
    'END:VTIMEZONE',
    'BEGIN:VEVENT', 'ORGANIZER;CN=Ada Organizer:mailto:ada@example.org',
    'ATTENDEE;ROLE=REQ-PARTICIPANT;PARTSTAT=NEEDS-ACTION;RSVP=TRUE;CN=Bob:mailto:bob@example.net',
    'DESCRIPTION;LANGUAGE=fr-FR:Revue des chiffres du trimestre\\, d\u00e9cisions et suites \u00e0 donner.\\n\\n',
    ` ${'_'.repeat(72)}\\nMicrosoft Teams meeting\\nJoin on your computer or mobile app\\n`,
    ' Click here to join the meeting<https://teams.example.org/l/meetup-join/19%3ameeting>\\n',
    `UID:${uid}`, `SUMMARY;LANGUAGE=fr-FR:${summary}`,
    'DTSTART;TZID=W. Europe Standard Time:20261201T100000', 'DTEND;TZID=W. Europe Standard Time:20261201T110000',
    'CLASS:PUBLIC', 'PRIORITY:5', 'DTSTAMP:20261120T090000Z', 'TRANSP:OPAQUE', 'STATUS:CONFIRMED', 'SEQUENCE:0',
    'LOCATION;LANGUAGE=fr-FR:Microsoft Teams Meeting',
    'X-MICROSOFT-CDO-APPT-SEQUENCE:0', 'X-MICROSOFT-CDO-OWNERAPPTID:2121234567', 'X-MICROSOFT-CDO-BUSYSTATUS:TENTATIVE',
    'X-MICROSOFT-CDO-INTENDEDSTATUS:BUSY', 'X-MICROSOFT-CDO-ALLDAYEVENT:FALSE', 'X-MICROSOFT-CDO-IMPORTANCE:1',
    'X-MICROSOFT-CDO-INSTTYPE:0', 'X-MICROSOFT-DONOTFORWARDMEETING:FALSE', 'X-MICROSOFT-DISALLOW-COUNTER:FALSE',
    'X-MICROSOFT-LOCATIONS:[{"DisplayName":"Microsoft Teams Meeting","LocationAnnotation":"","LocationSource":0}]',
    'BEGIN:VALARM', 'DESCRIPTION:REMINDER', 'TRIGGER;RELATED=START:-PT15M', 'ACTION:DISPLAY', 'END:VALARM',
    'END:VEVENT', 'END:VCALENDAR', '',
  ].join('\r\n');
}

const head = (subject: string, extra: string[] = []): string[] => [
  'From: Ada Organizer <ada@example.org>', 'To: Bob <bob@example.net>', `Subject: ${subject}`,
  'Date: Fri, 20 Nov 2026 09:00:00 +0000', `Message-ID: <${subject.toLowerCase().replace(/[^a-z0-9]+/g, '-')}@example.org>`,
  'MIME-Version: 1.0', ...extra,
];

const fixtures: Record<string, Buffer> = {};

fixtures['exchange-online'] = eml([
  ...head('Planning review', ['Thread-Topic: Planning review', 'x-ms-exchange-calendar-series-instance-id: BAAAAJ0x', 'Content-Type: multipart/alternative;', '\tboundary="_000_AM0PR01MB1234_"']),
  '', '--_000_AM0PR01MB1234_',
  'Content-Type: text/plain; charset="iso-8859-1"', 'Content-Transfer-Encoding: quoted-printable', '',
  'Bonjour =E0 tous, r=E9union de planification pour le trimestre prochain, merci d=',
  "e pr=E9parer vos chiffres.", '', '=C0 bient=F4t', '',
  '--_000_AM0PR01MB1234_',
  'Content-Type: text/html; charset="iso-8859-1"', 'Content-Transfer-Encoding: quoted-printable', '',
  '<html><head><meta http-equiv=3D"Content-Type" content=3D"text/html; charset=3D=',
  'iso-8859-1"></head>', '<body><p>Bonjour =E0 tous, r=E9union de planification.</p>', '</body>', '</html>', '',
  '--_000_AM0PR01MB1234_',
  'Content-Type: text/calendar; charset="utf-8"; method=REQUEST', 'Content-Transfer-Encoding: base64', '',
  ...b64(ics('REQUEST', 'Réunion de planification', '040000008200E00074C5B7101A82E0080000000001'), 73), '',
  '--_000_AM0PR01MB1234_--', '',
]);

const flowedText = [
  'You have been invited to the following event.', '', 'Title: Design sync', 'When: Tue 1 Dec 2026 09:00 – 10:00 (UTC)',
  '', 'Invitation from Google Calendar: https://calendar.google.com/calendar/', '', '~~//~~',
  // delsp=yes: the last space of a soft line is deleted when unwrapping, so a word gap needs two
  'Forwarding this invitation could allow any recipient to send a response to  ', 'the organizer and be added to the guest list. ',
].join('\r\n');
fixtures['google'] = eml([
  ...head('Invitation: Design sync', ['Auto-Submitted: auto-generated', 'Content-Type: multipart/mixed; boundary="000000000000aaaa"']),
  '', '--000000000000aaaa', 'Content-Type: multipart/alternative; boundary="000000000000bbbb"', '',
  '--000000000000bbbb', 'Content-Type: text/plain; charset="UTF-8"; format=flowed; delsp=yes', 'Content-Transfer-Encoding: 8bit', '',
  flowedText, '--000000000000bbbb', 'Content-Type: text/html; charset="UTF-8"', 'Content-Transfer-Encoding: base64', '',
  ...b64('<html><body><div itemscope itemtype="http://schema.org/Event"><p>Design sync – Tue 1 Dec</p></div>\r\n</body></html>\r\n'),
  '--000000000000bbbb', 'Content-Type: text/calendar; charset="UTF-8"; method=REQUEST', 'Content-Transfer-Encoding: 7bit', '',
  ics('REQUEST', 'Design sync', 'abc123@google.com'), '--000000000000bbbb--', '',
  '--000000000000aaaa', 'Content-Type: application/ics; name="invite.ics"', 'Content-Disposition: attachment; filename="invite.ics"',
  'Content-Transfer-Encoding: base64', '', ...b64(ics('REQUEST', 'Design sync', 'abc123@google.com')), '--000000000000aaaa--', '',
]);

fixtures['thunderbird'] = eml([
  ...head('Einladung: Grillfest', ['User-Agent: Mozilla Thunderbird', 'Content-Type: multipart/mixed; boundary="------------tb01"']),
  '', 'This is a multi-part message in MIME format.', '--------------tb01',
  'Content-Type: multipart/alternative; boundary="------------tb02"', '', '--------------tb02',
  'Content-Type: text/plain; charset=UTF-8', 'Content-Transfer-Encoding: 8bit', '',
  'Grillfest im Hof, Würstchen für alle.', '', '--------------tb02',
  'Content-Type: text/calendar; method=REQUEST; charset=UTF-8', 'Content-Transfer-Encoding: 8bit', '',
  ics('REQUEST', 'Grillfest für alle', 'tb-0001@example.org'), '--------------tb02--', '', '--------------tb01',
  'Content-Type: application/ics; name="invite.ics"', 'Content-Disposition: attachment; filename="invite.ics"',
  'Content-Transfer-Encoding: 8bit', '', ics('REQUEST', 'Grillfest für alle', 'tb-0001@example.org'), '--------------tb01--', '',
]);

fixtures['sogo'] = eml([
  ...head('Invitation: Budget', ['x-sogo-message-type: calendar:invitation', 'Content-Type: multipart/mixed; boundary="----=_sogo_1"']),
  '', '------=_sogo_1', 'Content-Type: text/html; charset=utf-8', 'Content-Transfer-Encoding: quoted-printable', '',
  '<html><body><p>Ada Organizer vous invite =C3=A0 une r=C3=A9union.</p></body></html>', '------=_sogo_1',
  'Content-Type: text/calendar; method=REQUEST; charset=utf-8', 'Content-Class: urn:content-classes:calendarmessage',
  'Content-Transfer-Encoding: quoted-printable', '', ics('REQUEST', 'Budget', 'sogo-1@example.org').replace('Budget', 'Budget =3D 2027'),
  '------=_sogo_1--', '',
]);

fixtures['zoom'] = eml([
  ...head('Zoom meeting invitation', ['Content-Type: multipart/mixed; boundary="zm1"']), '', '--zm1',
  'Content-Type: multipart/alternative; boundary="zm2"', '', '--zm2', 'Content-Type: text/html; charset=UTF-8',
  'Content-Transfer-Encoding: quoted-printable', '', '<html><body><p>Join Zoom Meeting: https://zoom.us/j/123</p>', '</BODY></html>',
  '--zm2', 'Content-Type: text/calendar; method=REQUEST;; charset="UTF-8"', 'Content-Transfer-Encoding: base64', '',
  ...b64(ics('REQUEST', 'Zoom meeting', 'zoom-1@zoom.us')), '--zm2--', '', '--zm1',
  'Content-Type: text/calendar; name="invite.ics"; charset="UTF-8"', 'Content-Disposition: attachment; filename="invite.ics"',
  'Content-Transfer-Encoding: base64', '', ...b64(ics('REQUEST', 'Zoom meeting', 'zoom-1@zoom.us')), '--zm1--', '',
]);

fixtures['lone-calendar'] = eml([
  ...head('Lone calendar', ['Content-Type: text/calendar; method=REQUEST;', ' charset=UTF-8', 'Content-Transfer-Encoding: 7bit']),
  '', ics('REQUEST', 'Lone calendar', 'lone-1@example.org'),
]);

fixtures['alternative-calendar-only'] = eml([
  ...head('Calendar only', ['Content-Type: multipart/alternative; boundary="alt-only"']), '', '--alt-only',
  'Content-Type: text/calendar; method=REQUEST; charset=UTF-8', 'Content-Transfer-Encoding: base64', '',
  ...b64(ics('REQUEST', 'Calendar only', 'alt-only-1@example.org')), '--alt-only--', '',
]);

fixtures['ics-attachment-only'] = eml([
  ...head('Meeting file attached', ['Content-Type: multipart/mixed; boundary="mix-ics"']), '', '--mix-ics',
  'Content-Type: text/plain; charset=us-ascii', '', 'Please find the meeting attached.', '--mix-ics',
  'Content-Type: application/ics; name="meeting.ics"', 'Content-Disposition: attachment; filename="meeting.ics"',
  'Content-Transfer-Encoding: base64', '', ...b64(ics('REQUEST', 'Attached meeting', 'ics-1@example.org')), '--mix-ics--', '',
]);

for (const [name, method] of [['cancel', 'CANCEL'], ['reply', 'REPLY']] as const) {
  fixtures[name] = eml([
    ...head(`${method === 'CANCEL' ? 'Canceled' : 'Accepted'}: Planning review`, ['Content-Type: multipart/alternative; boundary="b-' + name + '"']),
    '', '--b-' + name, 'Content-Type: text/plain; charset=us-ascii', 'Content-Transfer-Encoding: 7bit', '',
    method === 'CANCEL' ? 'The meeting has been canceled.' : 'Bob has accepted.', '', '--b-' + name,
    `Content-Type: text/calendar; charset=utf-8; method=${method}`, 'Content-Transfer-Encoding: base64', '',
    ...b64(ics(method, 'Planning review', '040000008200E00074C5B7101A82E0080000000002')), '', '--b-' + name + '--', '',
  ]);
}

const inner = eml([...head('Team offsite', ['Content-Type: multipart/alternative; boundary="inner-b"']), '', '--inner-b',
  'Content-Type: text/plain; charset=us-ascii', '', 'Offsite in March.', '--inner-b', 'Content-Type: text/calendar; method=REQUEST; charset=utf-8',
  '', ics('REQUEST', 'Team offsite', 'fwd-1@example.org'), '--inner-b--', '']);
fixtures['forwarded-invite'] = eml([
  ...head('Fwd: Team offsite', ['Content-Type: multipart/mixed; boundary="fwd-outer"']), '', '--fwd-outer',
  'Content-Type: text/plain; charset=us-ascii', '', 'FYI, see the invite below.', '--fwd-outer',
  'Content-Type: message/rfc822', 'Content-Disposition: inline', '', inner, '--fwd-outer--', '',
]);

fixtures['smime-signed'] = eml([
  ...head('Signed invite', ['Content-Type: multipart/signed; protocol="application/pkcs7-signature"; micalg=sha-256; boundary="sig-b"']),
  '', '--sig-b', 'Content-Type: multipart/alternative; boundary="sig-alt"', '', '--sig-alt', 'Content-Type: text/plain; charset=us-ascii', '',
  'Signed meeting request.', '--sig-alt', 'Content-Type: text/calendar; method=REQUEST; charset=utf-8', '',
  ics('REQUEST', 'Signed', 'sig-1@example.org'), '--sig-alt--', '', '--sig-b',
  'Content-Type: application/pkcs7-signature; name="smime.p7s"', 'Content-Transfer-Encoding: base64', 'Content-Disposition: attachment; filename="smime.p7s"',
  '', ...b64(Buffer.from('not a real signature, only its shape')), '--sig-b--', '',
]);

for (const [name, html] of [['html-no-body-tag', '<p>Meeting about the roof.</p><p>Bring plans.</p>'], ['html-only-html-close', '<html><p>Meeting about the roof.</p></html>']]) {
  fixtures[name] = eml([
    ...head('Roof meeting', ['Content-Type: multipart/alternative; boundary="nb"']), '', '--nb',
    'Content-Type: text/html; charset=utf-8', 'Content-Transfer-Encoding: 7bit', '', html, '--nb',
    'Content-Type: text/calendar; method=REQUEST; charset=utf-8', 'Content-Transfer-Encoding: 7bit', '',
    ics('REQUEST', 'Roof meeting', `${name}@example.org`), '--nb--', '',
  ]);
}

fixtures['already-marked'] = eml([
  'X-Calendar-Link: added', ...head('Already marked', ['Content-Type: multipart/alternative; boundary="mk"']), '', '--mk',
  'Content-Type: text/plain; charset=us-ascii', '', 'Body.', '', '-- ', 'Meeting request: earlier footer', '--mk',
  'Content-Type: text/calendar; method=REQUEST; charset=utf-8', '', ics('REQUEST', 'Marked', 'marked-1@example.org'), '--mk--', '',
]);

fixtures['non-calendar-meeting'] = eml([
  ...head('Meeting notes', ['Content-Type: text/plain; charset=us-ascii']), '',
  'Notes from the meeting: METHOD:REQUEST is what an invite says, but this is not one.', 'text/calendar appears here as words only.', '',
]);

const sjisBody = iconv.encode('会議のお知らせです。\r\n資料を準備してください。\r\n', 'shift_jis');
fixtures['shift-jis'] = eml([
  ...head('Shift_JIS meeting', ['Content-Type: multipart/alternative; boundary="sj"']), '', '--sj',
  'Content-Type: text/plain; charset=Shift_JIS', 'Content-Transfer-Encoding: 8bit', '', sjisBody, '--sj',
  'Content-Type: text/calendar; method=REQUEST; charset=utf-8', 'Content-Transfer-Encoding: base64', '',
  ...b64(ics('REQUEST', '会議', 'sjis-1@example.jp')), '--sj--', '',
]);

// ISO-2022-JP by hand: ESC $ B enters JIS X 0208, ESC ( B returns to ASCII. The HTML part ends with a
// comment whose two-byte characters are the bytes of "</body>" in JIS mode: a decoy no footer may follow.
const ESC = '\x1b';
const jis = (pairs: string) => `${ESC}$B${pairs}${ESC}(B`;
fixtures['iso-2022-jp'] = eml([
  ...head('ISO-2022-JP meeting', ['Content-Type: multipart/alternative; boundary="jp"']), '', '--jp',
  'Content-Type: text/plain; charset=ISO-2022-JP', 'Content-Transfer-Encoding: 7bit', '', Buffer.from(`${jis('2q5D')} (kaigi)`, 'latin1'),
  '--jp', 'Content-Type: text/html; charset=ISO-2022-JP', 'Content-Transfer-Encoding: 7bit', '',
  Buffer.from(`<html><body><p>${jis('2q5D')}</p></body>`, 'latin1'), Buffer.from(`<!-- ${jis('</body>!')} -->`, 'latin1'), '</html>', '--jp',
  'Content-Type: text/calendar; method=REQUEST; charset=utf-8', 'Content-Transfer-Encoding: base64', '',
  ...b64(ics('REQUEST', '会議', 'jis-1@example.jp')), '--jp--', '',
]);

fixtures['base64-text'] = eml([
  ...head('Base64 bodies', ['Content-Type: multipart/alternative; boundary="b64"']), '', '--b64',
  'Content-Type: text/plain; charset=utf-8', 'Content-Transfer-Encoding: base64', '', ...b64('Déjeuner de travail, salle 3.\r\n', 60),
  '--b64', 'Content-Type: text/html; charset=utf-8', 'Content-Transfer-Encoding: base64', '',
  ...b64('<html><body><p>Déjeuner de travail, salle 3.</p></body></html>', 60), '--b64',
  'Content-Type: text/calendar; method=REQUEST; charset=utf-8', 'Content-Transfer-Encoding: base64', '',
  ...b64(ics('REQUEST', 'Déjeuner', 'b64-1@example.org'), 60), '--b64--', '',
]);

const longText = 'Agenda: ' + Array.from({ length: 200 }, (_, i) => `item${i}`).join(' ').slice(0, 980);
fixtures['long-lines'] = eml([
  ...head('Long lines', ['Content-Type: multipart/alternative; boundary="long"']), '', '--long',
  'Content-Type: text/plain; charset=utf-8', 'Content-Transfer-Encoding: 8bit', '', longText, '--long',
  'Content-Type: text/html; charset=utf-8', 'Content-Transfer-Encoding: 8bit', '',
  `<html><body><p>${longText.slice(0, 900)}</p></body></html>`, '--long',
  'Content-Type: text/calendar; method=REQUEST; charset=utf-8', '', ics('REQUEST', 'Long lines', 'long-1@example.org'), '--long--', '',
]);

fixtures['content-class-custom'] = eml([
  ...head('Expense report', ['Content-Class: urn:content-class:custom.Expense', 'Content-Type: text/plain; charset=us-ascii', 'Content-Transfer-Encoding: 7bit']),
  '', 'Please approve the attached expense form.', '',
]);

for (const [name, tnef] of [['tnef-meeting', tnefFixtures.meetingRequest()], ['tnef-custom-form', tnefFixtures.customForm()]] as const) {
  fixtures[name] = eml([
    ...head(name === 'tnef-meeting' ? 'Staff meeting' : 'Expense form', ['X-MS-TNEF-Correlator: <00000000A1B2@example.org>', 'Content-Type: multipart/mixed; boundary="tnef-b"']),
    '', '--tnef-b', 'Content-Type: text/plain; charset=windows-1252', 'Content-Transfer-Encoding: quoted-printable', '',
    'Caf=E9 at ten.', '', '--tnef-b', 'Content-Type: application/ms-tnef; name="winmail.dat"',
    'Content-Disposition: attachment; filename="winmail.dat"', 'Content-Transfer-Encoding: base64', '', ...b64(tnef), '', '--tnef-b--', '',
  ]);
}

fixtures['qp-edges'] = eml([
  ...head('QP edges', ['Content-Type: multipart/alternative; boundary="qpe"']), '', '--qpe',
  'Content-Type: text/plain; charset=utf-8', 'Content-Transfer-Encoding: quoted-printable', '', 'Line one ends in a soft break=',
  '--qpe', 'Content-Type: text/html; charset=utf-8', 'Content-Transfer-Encoding: quoted-printable', '',
  '<html><body><p>caf=C3=A9</p>=', '</body></html>', '--qpe',
  'Content-Type: text/calendar; method=REQUEST; charset=utf-8', '', ics('REQUEST', 'QP edges', 'qpe-1@example.org'), '--qpe--', '',
]);

fixtures['lf-only'] = eml([
  ...head('LF only', ['Content-Type: multipart/alternative; boundary="lf"']), '', '--lf',
  'Content-Type: text/plain; charset=iso-8859-1', 'Content-Transfer-Encoding: 8bit', '', Buffer.from('Caf\xe9 meeting.', 'latin1'), '--lf',
  'Content-Type: text/html; charset=iso-8859-1', 'Content-Transfer-Encoding: 8bit', '', Buffer.from('<html><body>Caf\xe9</body></html>', 'latin1'), '--lf',
  'Content-Type: text/calendar; method=REQUEST; charset=utf-8', '', ics('REQUEST', 'LF only', 'lf-1@example.org', '\n'), '--lf--', '',
], '\n');

fixtures['related-html'] = eml([
  ...head('Related HTML', ['Content-Type: multipart/alternative; boundary="rel-alt"']), '', '--rel-alt',
  'Content-Type: text/plain; charset=us-ascii', '', 'Plain body.', '--rel-alt', 'Content-Type: multipart/related; boundary="rel-rel"', '',
  '--rel-rel', 'Content-Type: text/html; charset=us-ascii', '', '<html><body><img src="cid:logo"></body></html>', '--rel-rel',
  'Content-Type: image/png', 'Content-ID: <logo>', 'Content-Transfer-Encoding: base64', '', ...b64(Buffer.from([0x89, 0x50, 0x4e, 0x47, 1, 2, 3])),
  '--rel-rel--', '', '--rel-alt', 'Content-Type: text/calendar; method=REQUEST; charset=utf-8', '',
  ics('REQUEST', 'Related', 'rel-1@example.org'), '--rel-alt--', '',
]);

fixtures['utf16-text'] = eml([
  ...head('UTF-16 body', ['Content-Type: multipart/alternative; boundary="u16"']), '', '--u16',
  'Content-Type: text/plain; charset=utf-16', 'Content-Transfer-Encoding: base64', '', ...b64(iconv.encode('Meeting body', 'utf-16')),
  '--u16', 'Content-Type: text/calendar; method=REQUEST; charset=utf-8', '', ics('REQUEST', 'UTF-16', 'u16-1@example.org'), '--u16--', '',
]);

// about 12 KB, the size the relay benchmark uses: Exchange shape with a long HTML body and a Teams block
const paragraphs = Array.from({ length: 46 }, (_, i) => `<p style=3D"margin:0">Point ${i + 1}: revue des =
chiffres du trimestre, d=E9cisions et suites =E0 donner.</p>`).join('\r\n');
fixtures['exchange-12k'] = eml([
  ...head('Quarterly review', ['Thread-Topic: Quarterly review', 'Content-Type: multipart/alternative;', '\tboundary="_000_AM0PR01MB9999_"']),
  '', '--_000_AM0PR01MB9999_', 'Content-Type: text/plain; charset="iso-8859-1"', 'Content-Transfer-Encoding: quoted-printable', '',
  ...Array.from({ length: 46 }, (_, i) => `Point ${i + 1}: revue des chiffres du trimestre, d=E9cisions et suites =E0 donner.`),
  '', '________________________________________________________________________________', 'Microsoft Teams meeting',
  'Join on your computer or mobile app', 'Click here to join the meeting<https://teams.example.org/l/meetup-join/19%3ameeting>', '',
  '--_000_AM0PR01MB9999_', 'Content-Type: text/html; charset="iso-8859-1"', 'Content-Transfer-Encoding: quoted-printable', '',
  '<html><head><meta http-equiv=3D"Content-Type" content=3D"text/html; charset=3Diso-8859-1"></head>', '<body>', paragraphs,
  '<div><a href=3D"https://teams.example.org/l/meetup-join/19%3ameeting">Click here to join the meeting</a></div>', '</body>', '</html>', '',
  '--_000_AM0PR01MB9999_', 'Content-Type: text/calendar; charset="utf-8"; method=REQUEST', 'Content-Transfer-Encoding: base64', '',
  ...b64(outlookIcs('Quarterly review', '040000008200E00074C5B7101A82E0080000000099'), 73), '', '--_000_AM0PR01MB9999_--', '',
]);

mkdirSync(OUT, { recursive: true });
for (const [name, bytes] of Object.entries(fixtures)) writeFileSync(join(OUT, `${name}.eml`), bytes);
console.log(`wrote ${Object.keys(fixtures).length} fixtures to ${OUT}`);
