// Footer rendering: descriptions per kind and method, time formatting from the written local time,
// escaping of hostile summaries and links, configurable templates and their start-up checks, the hook.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseDocument } from 'htmlparser2';
import type { ChildNode, Element, Text } from 'domhandler';
import footerRender, { checkFooterTemplate, cleanValue, describeKind, escapeHtml, formatTime, renderFooter } from '../hooks/footer-render.js';
import { appendTextFooter, insertHtmlFooter } from '../lib/part-footer.js';
import { HookRegistry, type App, type FooterInput } from '../lib/hooks.js';
import type { CalendarFacts, CalendarTime, Classification, MimePart } from '../lib/types.js';

const URL_ = 'https://cal.example.org/calendar/event?uid=abc&sequence=0';
const BERLIN: CalendarTime = { local: '2026-12-01T10:00:00', tzid: 'Europe/Berlin', utc: '2026-12-01T09:00:00Z', allDay: false };

function calendar(over: Partial<CalendarFacts> = {}): CalendarFacts {
  return { method: 'REQUEST', component: 'VEVENT', uid: 'abc', recurrenceId: null, sequence: 0, summary: 'Team sync', start: BERLIN, end: null, organizer: null, warnings: [], ...over };
}

function input(c: Partial<Classification> = {}, cal: CalendarFacts | null = calendar(), url = URL_): FooterInput {
  const classification: Classification = { kind: 'meeting', method: 'REQUEST', tnefClass: null, source: 'imip', calendarPart: 1, calendar: cal, footer: true, reason: 'test', ...c };
  return { classification, calendar: cal, link: { recipient: 'bob@example.org', url, source: 'site', server: 'cal.example.org' } };
}

const lines = (text: string) => text.split('\r\n');

test('built-in text footer: blank line, signature separator, description, link; CRLF line ends', () => {
  const f = renderFooter(input());
  assert.equal(f.text, `\r\n-- \r\nMeeting request: Team sync, Tue 1 Dec 2026 10:00 (Europe/Berlin)\r\nView it and your calendar on the web: ${URL_}\r\n`);
  assert.doesNotMatch(f.text.replace(/\r\n/g, ''), /[\r\n]/, 'no bare CR or LF');
});

test('built-in HTML footer: marked div, escaped description and href', () => {
  const f = renderFooter(input());
  assert.match(f.html, /^<div data-calendar-link-footer="1" style="[^"]*">/);
  assert.ok(f.html.includes('Meeting request: Team sync, Tue 1 Dec 2026 10:00 (Europe/Berlin)<br>'));
  assert.ok(f.html.includes('<a href="https://cal.example.org/calendar/event?uid=abc&amp;sequence=0" style="color:#0b57d0;text-decoration:underline">View it and your calendar on the web</a></div>'));
});

test('descriptions by kind, method and TNEF class', () => {
  const cases: Array<[Partial<Classification>, Partial<CalendarFacts> | null, string]> = [
    [{ method: 'REQUEST' }, {}, 'Meeting request: Team sync, Tue 1 Dec 2026 10:00 (Europe/Berlin)'],
    [{ method: 'CANCEL' }, { method: 'CANCEL' }, 'Meeting cancelled: Team sync, Tue 1 Dec 2026 10:00 (Europe/Berlin)'],
    [{ method: 'ADD' }, {}, 'Meeting update: Team sync, Tue 1 Dec 2026 10:00 (Europe/Berlin)'],
    [{ method: 'COUNTER' }, {}, 'Counter-proposal: Team sync, Tue 1 Dec 2026 10:00 (Europe/Berlin)'],
    [{ method: 'DECLINECOUNTER' }, {}, 'Counter-proposal declined: Team sync, Tue 1 Dec 2026 10:00 (Europe/Berlin)'],
    [{ method: 'REPLY' }, {}, 'Meeting response: Team sync, Tue 1 Dec 2026 10:00 (Europe/Berlin)'],
    [{ method: 'PUBLISH' }, {}, 'Calendar event: Team sync, Tue 1 Dec 2026 10:00 (Europe/Berlin)'],
    [{ method: 'request' }, {}, 'Meeting request: Team sync, Tue 1 Dec 2026 10:00 (Europe/Berlin)'],
    // The classification's method is null (a calendar that parsed but the part had no parameter): METHOD inside.
    [{ method: null }, { method: 'CANCEL' }, 'Meeting cancelled: Team sync, Tue 1 Dec 2026 10:00 (Europe/Berlin)'],
    [{ method: 'REQUEST' }, { component: 'VTODO', summary: 'Write report' }, 'Task request: Write report, Tue 1 Dec 2026 10:00 (Europe/Berlin)'],
    [{ method: 'CANCEL' }, { component: 'VTODO', summary: 'Write report' }, 'Task cancelled: Write report, Tue 1 Dec 2026 10:00 (Europe/Berlin)'],
    // TNEF: no method, the class says what it is.
    [{ method: null, source: 'tnef', tnefClass: 'IPM.Schedule.Meeting.Request' }, null, 'Meeting request'],
    [{ method: null, source: 'tnef', tnefClass: 'IPM.Schedule.Meeting.Canceled' }, null, 'Meeting cancelled'],
    [{ method: null, source: 'tnef', tnefClass: 'IPM.Appointment' }, null, 'Appointment'],
    [{ method: null, source: 'tnef', tnefClass: 'IPM.Schedule.Meeting.Resp.Pos' }, null, 'Meeting response'],
    [{ kind: 'custom-form', method: null, source: 'tnef', tnefClass: 'IPM.TaskRequest' }, null, 'Task request'],
    [{ kind: 'custom-form', method: null, source: 'tnef', tnefClass: 'IPM.TaskRequest.Update' }, null, 'Task update'],
    [{ kind: 'custom-form', method: null, source: 'tnef', tnefClass: 'IPM.Note.Expense Report' }, null, 'Form: IPM.Note.Expense Report'],
    [{ kind: 'custom-form', method: null, source: 'content-class', tnefClass: null }, null, 'Form'],
    [{ method: null, tnefClass: null }, { method: null, summary: null, start: null }, 'Calendar message'],
    // Missing pieces are left out, not shown as "null".
    [{ method: 'REQUEST' }, { summary: null }, 'Meeting request: Tue 1 Dec 2026 10:00 (Europe/Berlin)'],
    [{ method: 'REQUEST' }, { start: null }, 'Meeting request: Team sync'],
    [{ method: 'REQUEST' }, { summary: '   ', start: null }, 'Meeting request'],
  ];
  for (const [c, cal, want] of cases) {
    const f = renderFooter(input(c, cal === null ? null : calendar(cal)));
    assert.equal(lines(f.text)[2], want, JSON.stringify(c));
    assert.ok(f.html.includes(`>${want}<br>`), `html: ${want}`);
  }
  assert.equal(describeKind(input({ method: 'COUNTER' })), 'Counter-proposal');
});

test('times come from the written local time and zone, never the host zone', () => {
  const t = (local: string, tzid: string | null, allDay = false): CalendarTime => ({ local, tzid, utc: null, allDay });
  const cases: Array<[CalendarTime | null, string, string]> = [
    [BERLIN, 'Tue 1 Dec 2026 10:00', 'Europe/Berlin'],
    [t('2026-12-01T10:00:00', 'W. Europe Standard Time'), 'Tue 1 Dec 2026 10:00', 'W. Europe Standard Time'],
    [t('20261201T100000', 'America/New_York'), 'Tue 1 Dec 2026 10:00', 'America/New_York'],
    [t('2026-12-01T10:00:00Z', null), 'Tue 1 Dec 2026 10:00', 'UTC'],
    [t('20261201T233000Z', 'UTC'), 'Tue 1 Dec 2026 23:30', 'UTC'],
    [t('2026-12-01T10:00:00', 'UTC'), 'Tue 1 Dec 2026 10:00', 'UTC'],
    // Floating: no zone.
    [t('2026-12-01T10:00:00', null), 'Tue 1 Dec 2026 10:00', ''],
    // All-day: the date only, whatever zone is attached.
    [t('2026-12-01', null, true), 'Tue 1 Dec 2026', ''],
    [t('20261201', 'Europe/Berlin', true), 'Tue 1 Dec 2026', ''],
    [t('2026-12-01T00:00:00', 'Europe/Berlin', true), 'Tue 1 Dec 2026', ''],
    [t('2024-02-29T09:05:00', 'Asia/Tokyo'), 'Thu 29 Feb 2024 09:05', 'Asia/Tokyo'],
    [t('2027-01-03', null, true), 'Sun 3 Jan 2027', ''],
    // Unreadable → left out rather than guessed.
    [t('2026-02-30T10:00:00', 'Europe/Berlin'), '', ''],
    [t('next tuesday', null), '', ''],
    [null, '', ''],
    // A zone name carrying control characters is cleaned like any value.
    [t('2026-12-01T10:00:00', 'Europe/Berlin\r\nX-Injected: 1'), 'Tue 1 Dec 2026 10:00', 'Europe/Berlin X-Injected: 1'],
  ];
  for (const [time, start, zone] of cases) assert.deepEqual(formatTime(time), { start, zone }, JSON.stringify(time));
  const floating = renderFooter(input({}, calendar({ start: t('2026-12-01T10:00:00', null) })));
  assert.equal(lines(floating.text)[2], 'Meeting request: Team sync, Tue 1 Dec 2026 10:00');
  const allDay = renderFooter(input({}, calendar({ start: t('2026-12-01', null, true) })));
  assert.equal(lines(allDay.text)[2], 'Meeting request: Team sync, Tue 1 Dec 2026');
});

test('hostile SUMMARY: no markup, no attribute break-out, no header or line injection', () => {
  const hostile = [
    '<script>alert(1)</script>',
    '"onmouseover="alert(1)',
    "x' onmouseover='alert(1)",
    'Lunch\r\n\r\n<html><body>fake</body></html>',
    'Lunch\r\nBcc: victim@example.org',
    'a\u2028b\u2029c\u0085d\u000be\u0000f',
    'pay \u202eexe.gpj\u202c now',
    '</div><a href="javascript:alert(1)">click</a>',
    '&amp;&lt;',
  ];
  for (const summary of hostile) {
    const f = renderFooter(input({}, calendar({ summary })));
    // Text: the template's four line breaks and no more; no control characters inside the lines.
    assert.equal(lines(f.text).length, 5, JSON.stringify(summary));
    assert.doesNotMatch(f.text.replace(/\r\n/g, ''), /[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e]/, JSON.stringify(summary));
    // HTML: exactly the built-in's tags and attributes; the summary's markup arrives as text.
    assert.deepEqual(f.html.match(/<[a-z/][^>]*>/g), [
      f.html.match(/^<div[^>]*>/)?.[0], '<br>', `<a href="${URL_.replace(/&/g, '&amp;')}" style="color:#0b57d0;text-decoration:underline">`, '</a>', '</div>',
    ], JSON.stringify(summary));
    assert.doesNotMatch(f.html, /<script|javascript:alert[^<]*<\/a>|onmouseover="/);
    assert.doesNotMatch(f.html, /[\r\n\x00]/);
  }
  const f = renderFooter(input({}, calendar({ summary: '"onmouseover="alert(1) <b>&' })));
  assert.ok(f.html.includes('Meeting request: &quot;onmouseover=&quot;alert(1) &lt;b&gt;&amp;, Tue'));
  assert.ok(lines(f.text)[2]?.startsWith('Meeting request: "onmouseover="alert(1) <b>&, Tue'), 'text is not HTML-escaped');
  const amp = renderFooter(input({}, calendar({ summary: '&amp;&lt;' })));
  assert.ok(amp.html.includes('&amp;amp;&amp;lt;'), 'already-escaped text is escaped again, shown literally');
});

test('summary is capped at 200 characters without splitting a character; non-ASCII stays Unicode in text', () => {
  const long = '会議'.repeat(150) + '😀'.repeat(10);
  const v = cleanValue(long);
  assert.equal(Array.from(v).length, 200);
  assert.ok(v.endsWith('…'));
  assert.doesNotMatch(v, /[\ud800-\udbff](?![\udc00-\udfff])/);
  const emoji = cleanValue('a' + '😀'.repeat(300));
  assert.doesNotMatch(emoji, /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/, 'no half pair at the cut');
  assert.equal(cleanValue('bad \ud800 half'), 'bad \ufffd half');
  const f = renderFooter(input({}, calendar({ summary: 'Réunion 会議' })));
  assert.equal(lines(f.text)[2], 'Meeting request: Réunion 会議, Tue 1 Dec 2026 10:00 (Europe/Berlin)', 'no transliteration');
  // In HTML, non-ASCII becomes numeric references: lossless in whatever charset the HTML part has.
  assert.ok(f.html.includes('R&#xe9;union &#x4f1a;&#x8b70;'));
  assert.match(f.html, /^[\x20-\x7e]*$/);
});

test('the link: only http(s), ASCII, control characters stripped, escaped for the attribute', () => {
  for (const bad of ['javascript:alert(1)', 'data:text/html,<script>', 'mailto:a@b', '/relative/path', '', 'vbscript:x']) {
    assert.throws(() => renderFooter(input({}, calendar(), bad)), /footer: the link/, bad);
  }
  const crlf = renderFooter(input({}, calendar(), 'https://cal.example.org/e?u=1\r\nX-Evil: 1'));
  assert.ok(crlf.text.includes('web: https://cal.example.org/e?u=1X-Evil:1\r\n'));
  const quote = renderFooter(input({}, calendar(), `https://cal.example.org/e?u="><script>'`));
  assert.ok(quote.html.includes(`href="https://cal.example.org/e?u=&quot;&gt;&lt;script&gt;&#39;"`));
  const unicode = renderFooter(input({}, calendar(), 'https://kalender.bücher.de/e?u=ü'));
  assert.ok(unicode.text.includes('web: https://kalender.xn--bcher-kva.de/e?u=%C3%BC\r\n'));
});

test('configurable templates: every placeholder, values escaped in HTML only, newlines become CRLF', () => {
  const text = '\n--\n{kind} | {summary} | {start} | {zone}\n{description}\n<{url}>\n';
  const html = '<p class="cal" title="{summary}">{kind}: <a href="{url}">{summary}</a> {start} {zone}</p>';
  const f = renderFooter(input({}, calendar({ summary: 'A&B "q"' })), { text, html });
  assert.equal(f.text, `\r\n--\r\nMeeting request | A&B "q" | Tue 1 Dec 2026 10:00 | Europe/Berlin\r\nMeeting request: A&B "q", Tue 1 Dec 2026 10:00 (Europe/Berlin)\r\n<${URL_}>\r\n`);
  assert.equal(f.html, `<p class="cal" title="A&amp;B &quot;q&quot;">Meeting request: <a href="${URL_.replace('&', '&amp;')}">A&amp;B &quot;q&quot;</a> Tue 1 Dec 2026 10:00 Europe/Berlin</p>`);
  // Empty template = built-in.
  assert.deepEqual(renderFooter(input(), { text: '', html: '' }), renderFooter(input()));
});

test('template checks: unknown placeholders named, {url} required, unquoted attributes refused', () => {
  const cases: Array<[string, 'text' | 'html', RegExp | null]> = [
    ['{description} {url}', 'text', null],
    ['{description} {uRl}', 'text', /unknown placeholder \{uRl\}/],
    ['{summary} {organizer} {location} {url}', 'text', /unknown placeholders \{organizer\}, \{location\} \(known: \{description\}/],
    ['{description}', 'text', /no \{url\}/],
    ['<a href="{url}">{description}</a>', 'html', null],
    ["<a href='{url}'>x</a>", 'html', null],
    ['<a href={url}>x</a>', 'html', /unquoted attribute/],
    ['<a href = {url} title="{summary}">x</a>', 'html', /unquoted attribute/],
    ['<a href="{url}">{subject}</a>', 'html', /unknown placeholder \{subject\}/],
  ];
  for (const [t, format, why] of cases) {
    const got = checkFooterTemplate(t, format);
    if (why === null) assert.equal(got, null, t);
    else {
      assert.match(got ?? '(accepted)', why, t);
      assert.throws(() => renderFooter(input(), { [format]: t }), new RegExp(`footer_${format}_template`), t);
    }
  }
});

function appWith(config: Record<string, unknown>): App & { hooks: HookRegistry } {
  return { config, log: () => {}, hooks: new HookRegistry(1000) };
}

test('hook: init checks the configured templates and fails start-up naming the key and placeholder', () => {
  assert.equal(footerRender.name, 'footer-render');
  assert.throws(() => footerRender.init(appWith({ footer_text_template: 'x {bogus} {url}', footer_html_template: '' })), /footer_text_template: unknown placeholder \{bogus\}/);
  assert.throws(() => footerRender.init(appWith({ footer_text_template: '', footer_html_template: '<a href="{url}">{when}</a>' })), /footer_html_template: unknown placeholder \{when\}/);
  assert.throws(() => footerRender.init(appWith({ footer_text_template: 42 })), /footer_text_template: expected a string/);
});

test('hook: registers on message:footer and renders with the configured templates', async () => {
  const app = appWith({ footer_text_template: 'Calendar: {url}', footer_html_template: '' });
  await footerRender.init(app);
  assert.ok(app.hooks.has('message:footer'));
  const f = await app.hooks.first('message:footer', input());
  assert.equal(f?.text, `Calendar: ${URL_}`);
  assert.match(f?.html ?? '', /data-calendar-link-footer="1"/);
  const bare = appWith({});
  await footerRender.init(bare);
  assert.deepEqual(await bare.hooks.first('message:footer', input()), renderFooter(input()));
});

test('a cancellation whose summary already says "Canceled:" is not labelled twice; the link keeps its own colour', () => {
  const f = renderFooter({
    classification: { kind: 'meeting', method: 'CANCEL', tnefClass: null, source: 'imip', calendarPart: 1, calendar: null, footer: true, reason: '' },
    calendar: { method: 'CANCEL', component: 'VEVENT', uid: 'u', recurrenceId: null, sequence: 1, summary: 'Canceled: Platform sync', start: null, end: null, organizer: null, warnings: [] },
    link: { recipient: 'b@example.org', url: 'https://cal.example.org/x', source: 'site', server: 'cal.example.org' },
  });
  assert.match(f.text, /Meeting cancelled: Platform sync/);
  assert.doesNotMatch(f.text, /Canceled:/);
  assert.match(f.html, /<a href="https:\/\/cal\.example\.org\/x" style="color:#[0-9a-f]{6}/);
});

// ----- review regressions ---------------------------------------------------------------------------

const worstBytes = (line: string) => Array.from(line).reduce((n, ch) => n + (ch.charCodeAt(0) < 0x80 ? 1 : 4), 0);
const part = (over: Partial<MimePart>): MimePart => ({
  index: 1, parent: 0, depth: 1, contentType: 'text/html', params: {}, disposition: null, filename: null, charset: 'utf-8',
  encoding: '8bit', multipart: false, headerStart: 0, bodyStart: 0, bodyEnd: 0, headers: [], ...over,
});

/** Element names, attributes and text of an HTML fragment: what a reader sees, whatever the line breaks. */
function dom(html: string): unknown {
  const walk = (nodes: ChildNode[]): unknown[] => {
    const merged: unknown[] = [];
    for (const n of nodes) {
      if (n.type === 'text') {
        const data = (n as Text).data.replace(/\s+/g, ' ');
        if (typeof merged[merged.length - 1] === 'string') merged[merged.length - 1] += data;
        else merged.push(data);
      } else if (n.type === 'tag') merged.push({ name: (n as Element).name, attribs: (n as Element).attribs, children: walk((n as Element).children) });
      // comments: not shown
    }
    return merged;
  };
  return walk(parseDocument(html, { decodeEntities: true }).children);
}

test('HTML footer: a long non-ASCII summary and the longest link still give lines a 7bit/8bit part can carry, read the same', () => {
  const longUrl = `https://cal.example.org/e?x=${'a'.repeat(860)}&y=1`;
  for (const [summary, url] of [['会'.repeat(300), URL_], ['😀'.repeat(300), longUrl], ['x '.repeat(150), longUrl], ['Team sync', longUrl]] as const) {
    const f = renderFooter(input({}, calendar({ summary }), url));
    for (const l of f.html.split(/\r\n|\n/)) assert.ok(Buffer.byteLength(l) <= 998, `html line of ${l.length} for ${summary.slice(0, 4)}`);
    const placed = insertHtmlFooter(part({}), Buffer.from('<html><body><p>Hi</p></body></html>\r\n'), f.html, '\r\n', []);
    assert.ok(placed.ok, placed.ok ? '' : placed.why);
    // the breaks are invisible: same elements, attributes and text as the footer on one line
    const oneLine = renderFooter(input({}, calendar({ summary: 'PLACEHOLDER' }), url)).html
      .replace('PLACEHOLDER', escapeHtml(cleanValue(summary)));
    assert.deepEqual(dom(f.html), dom(oneLine));
  }
  // the usual footer keeps its one line
  assert.doesNotMatch(renderFooter(input()).html, /[\r\n]/);
});

test('text footer: no line over 998 bytes in any charset, even with a long emoji summary and a non-ASCII zone', () => {
  const cal = calendar({ summary: '😀'.repeat(300), start: { local: '2026-12-01T10:00:00', tzid: 'Ж'.repeat(100), utc: null, allDay: false } });
  for (const text of [undefined, '{description} | {summary} | {zone}\n{url}']) {
    const f = renderFooter(input({}, cal), { text });
    for (const l of lines(f.text)) assert.ok(worstBytes(l) <= 998, `text line of ${worstBytes(l)} worst-case bytes`);
    const placed = appendTextFooter(part({ contentType: 'text/plain' }), Buffer.from('Hi\r\n'), f.text, '\r\n', []);
    assert.ok(placed.ok, placed.ok ? '' : placed.why);
  }
  // short lines are left alone
  assert.equal(lines(renderFooter(input()).text).length, 5);
});

test('template checks: a placeholder anywhere in a tag outside a quoted value, or in script/style, is refused', () => {
  const cases: Array<[string, RegExp | null]> = [
    ['<a href="{url}" title=x{summary}>x</a>', /unquoted attribute/],
    ['<a href="{url}">x</a><img alt=a{summary}>', /unquoted attribute/],
    ['<a href="{url}" {summary}>x</a>', /inside a tag/],
    ['<{kind} href="{url}">x</{kind}>', /inside a tag/],
    ['<style>{summary}</style><a href="{url}">x</a>', /style/],
    ['<script>var s = "{summary}"</script><a href="{url}">x</a>', /script/],
    // still fine: text, quoted values (either quote), comments, an "=" in text
    ['<a href="{url}" title=\'{summary}\' data-x="a{kind}b">x</a>', null],
    ['<p>a=b {summary}</p><a href="{url}">x</a><!-- {kind} -->', null],
    ['<title>{summary}</title><a href="{url}">x</a>', null],
  ];
  for (const [t, why] of cases) {
    const got = checkFooterTemplate(t, 'html');
    if (why === null) assert.equal(got, null, t);
    else assert.match(got ?? '(accepted)', why, t);
  }
});

test('years before 100 get their own weekday (not 1900 + year)', () => {
  const t = (local: string): CalendarTime => ({ local, tzid: 'UTC', utc: null, allDay: false });
  assert.deepEqual(formatTime(t('0001-01-01T10:00:00')), { start: 'Mon 1 Jan 1 10:00', zone: 'UTC' });
  assert.deepEqual(formatTime(t('0050-01-01T10:00:00')), { start: 'Sat 1 Jan 50 10:00', zone: 'UTC' });
  assert.deepEqual(formatTime({ local: '0099-01-01', tzid: null, utc: null, allDay: true }), { start: 'Thu 1 Jan 99', zone: '' });
  assert.deepEqual(formatTime(t('9999-12-31T23:59:00')), { start: 'Fri 31 Dec 9999 23:59', zone: 'UTC' });
  assert.deepEqual(formatTime({ local: '0000-02-29', tzid: null, utc: null, allDay: true }), { start: 'Tue 29 Feb 0', zone: '' });
});

test('invisible characters (zero-width, bidi marks, tags) are dropped; joiners and variation selectors kept', () => {
  assert.equal(cleanValue('Pay\u200b\u200e\u200f\u061c\u2060\u2064\u180e\ufff9 now\u{e0041}\u{e0042}\u00ad!'), 'Pay now!');
  assert.equal(cleanValue('family 👨\u200d👩\u200d👧 ❤\ufe0f, می\u200cخواهم'), 'family 👨\u200d👩\u200d👧 ❤\ufe0f, می\u200cخواهم');
  const f = renderFooter(input({}, calendar({ summary: 'a\u200bb\u200fc' })));
  assert.equal(lines(f.text)[2], 'Meeting request: abc, Tue 1 Dec 2026 10:00 (Europe/Berlin)');
});

test('cleanValue: a plain value (printable ASCII words, single spaces) comes back as it is; others go the full way', () => {
  for (const v of ['Team sync', 'Q3 review: budget & plan (draft)', 'W. Europe Standard Time', 'x', 'a'.repeat(200)]) assert.equal(cleanValue(v), v);
  assert.equal(cleanValue('a'.repeat(201)), `${'a'.repeat(199)}…`, 'too long: cut even when plain');
  assert.equal(cleanValue('  Team   sync '), 'Team sync');
  assert.equal(cleanValue('Team\tsync'), 'Team sync');
  assert.equal(cleanValue(''), '');
  assert.equal(cleanValue('Zone', 3), 'Zo…');
});

test('template checks: a value in an event handler, style or srcdoc attribute, or at the start of a URL attribute, is refused', () => {
  // HTML escaping is undone by the parser before the attribute is used: in onclick="…" the value is
  // script, in style="…" CSS, in srcdoc="…" markup, and href="{summary}" can be javascript:.
  const refused = [
    '<a href="{url}" onclick="x(\'{summary}\')">x</a>',
    '<a href="{url}" ONMOUSEOVER = "{kind}">x</a>',
    '<a href="{url}" style="color:{summary}">x</a>',
    '<iframe srcdoc="{summary}"></iframe><a href="{url}">x</a>',
    '<a href="{summary}">x</a><a href="{url}">y</a>',
    '<a href="{url}">x</a><img src=\'{description}\'>',
    '<a href="{url}">x</a><form action="{kind}"></form>',
    '<a href=" {summary}">x</a><a href="{url}">y</a>',
  ];
  for (const t of refused) {
    assert.match(checkFooterTemplate(t, 'html') ?? '(accepted)', /attribute/, t);
    assert.throws(() => renderFooter(input(), { html: t }), /footer_html_template/, t);
  }
  // Still fine: {url} itself, a value after a fixed http(s) prefix, values in harmless attributes.
  for (const t of [
    '<a href="{url}" title="{summary}" data-x="a{kind}b">x</a>',
    '<a href=\'{url}\'>x</a><a href="https://help.example.org/?q={summary}">help</a>',
    '<a href="{url}#{kind}">x</a>',
  ]) assert.equal(checkFooterTemplate(t, 'html'), null, t);
  // Hostile summary through an accepted template: no script-bearing attribute appears.
  const f = renderFooter(input({}, calendar({ summary: 'javascript:alert(1)' })), { html: '<a href="{url}" title="{summary}">x</a>' });
  assert.doesNotMatch(f.html, /href="javascript:/);
});
