// Link building: table-driven cases for each placeholder's encoding, the {server} rule, hostile values
// and the checks on the result (http(s) only, ASCII, no dot segments, length cap).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildLink, checkServer, checkTemplate, LinkError, MAX_LINK_LENGTH, PLACEHOLDERS, type LinkValues } from '../lib/url-template.js';

const DEFAULT_TEMPLATE = 'https://{server}/calendar/event?uid={uid}&recurrence-id={recurrenceId}&sequence={sequence}';
const ALL = 'https://{server}/e?u={uid}&r={recurrenceId}&s={sequence}&m={method}&i={messageId}&to={recipient}&t={token}';

test('every placeholder is URL-encoded (encodeURIComponent)', () => {
  const cases: Array<[keyof LinkValues, string | number, string]> = [
    ['uid', '040000008200E00074C5B7101A82E008', '040000008200E00074C5B7101A82E008'],
    ['uid', 'a b/c?d#e&f=g+h%i', 'a%20b%2Fc%3Fd%23e%26f%3Dg%2Bh%25i'],
    ['uid', 'ümlaut-会議', '%C3%BCmlaut-%E4%BC%9A%E8%AD%B0'],
    ['recurrenceId', '20261201T100000Z', '20261201T100000Z'],
    ['recurrenceId', 'TZID=Europe/Berlin:20261201T100000', 'TZID%3DEurope%2FBerlin%3A20261201T100000'],
    ['sequence', 7, '7'],
    ['sequence', 4294967295, '4294967295'],
    ['method', 'REQUEST', 'REQUEST'],
    ['messageId', 'calendar-1234@google.com', 'calendar-1234%40google.com'],
    ['recipient', 'Bob.Smith+cal@example.org', 'Bob.Smith%2Bcal%40example.org'],
    ['token', 'k1.AQVrCBtv_-x', 'k1.AQVrCBtv_-x'],
  ];
  for (const [name, value, encoded] of cases) {
    const url = buildLink(`https://{server}/x?v={${name}}`, { server: 'cal.example.org', [name]: value });
    assert.equal(url, `https://cal.example.org/x?v=${encoded}`, `${name}=${value}`);
  }
});

test('absent values expand to nothing; a non-integer sequence too', () => {
  const url = buildLink(ALL, { server: 'h.example', token: 't', uid: null, sequence: Number.NaN, recipient: undefined });
  assert.equal(url, 'https://h.example/e?u=&r=&s=&m=&i=&to=&t=t');
  assert.equal(buildLink(DEFAULT_TEMPLATE, { server: 'h.example', sequence: 1.5 }), 'https://h.example/calendar/event?uid=&recurrence-id=&sequence=');
});

test('hostile values cannot break out of their slot', () => {
  const hostile = ['a\r\nLocation: evil', '"><script>alert(1)</script>', "' onmouseover='x", 'x\u0000y', 'a\u2028b', '../../admin', 'javascript:alert(1)', '@evil.example', '#frag'];
  for (const v of hostile) {
    const url = buildLink(ALL, { server: 'cal.example.org', uid: v, recurrenceId: v, method: v, messageId: v, recipient: v, token: v });
    assert.doesNotMatch(url, /[\s\x00-\x1f\x7f"<>]/, v);
    const u = new URL(url);
    assert.equal(u.host, 'cal.example.org', v);
    assert.equal(u.pathname, '/e', v);
    assert.equal(u.searchParams.get('u'), v, `round trip of ${JSON.stringify(v)}`);
  }
});

test('a value that is a dot segment in the path is refused, not resolved', () => {
  for (const v of ['..', '.']) {
    assert.throws(() => buildLink('https://{server}/e/{uid}/view', { server: 'h.example', uid: v }), /"\." or "\.\." segment/, v);
  }
  // A value spelled "%2e%2e" is encoded to "%252e%252e": a plain name, not a dot segment.
  assert.equal(buildLink('https://{server}/e/{uid}/view', { server: 'h.example', uid: '%2e%2E' }), 'https://h.example/e/%252e%252E/view');
  assert.throws(() => buildLink('https://{server}/a/%2E%2e/b', { server: 'h.example' }), LinkError);
  assert.equal(buildLink('https://{server}/e/{uid}/view', { server: 'h.example', uid: '...' }), 'https://h.example/e/.../view');
  // In the query a dot is harmless.
  assert.equal(buildLink('https://{server}/e?u={uid}', { server: 'h.example', uid: '..' }), 'https://h.example/e?u=..');
});

test('{server}: HOST, HOST:PORT and base URLs, with and without a scheme in the template', () => {
  const cases: Array<[string, string, string]> = [
    // [template, server, link]
    ['https://{server}/cal', 'cal.example.org', 'https://cal.example.org/cal'],
    ['http://{server}/cal', 'cal.example.org', 'http://cal.example.org/cal'],
    ['{server}/cal', 'cal.example.org', 'https://cal.example.org/cal'],
    ['https://{server}/cal', 'cal.example.org:8443', 'https://cal.example.org:8443/cal'],
    ['https://{server}/cal', 'OWASERVER_1', 'https://OWASERVER_1/cal'],
    ['https://{server}/cal', '192.0.2.7:8080', 'https://192.0.2.7:8080/cal'],
    ['https://{server}/cal', '[2001:db8::1]:8443', 'https://[2001:db8::1]:8443/cal'],
    ['https://{server}/cal', 'kalender.bücher.de', 'https://kalender.xn--bcher-kva.de/cal'],
    ['https://{server}/cal', '  cal.example.org  ', 'https://cal.example.org/cal'],
    // A full URL replaces "scheme://{server}": its scheme, port and path win, never a doubled scheme.
    ['https://{server}/cal', 'https://cal.example.org/owa', 'https://cal.example.org/owa/cal'],
    ['https://{server}/cal', 'http://cal.example.org:8080/owa/', 'http://cal.example.org:8080/owa/cal'],
    ['http://{server}/cal', 'https://cal.example.org', 'https://cal.example.org/cal'],
    ['{server}/cal', 'http://cal.example.org/', 'http://cal.example.org/cal'],
    ['HTTPS://{server}/cal', 'HTTPS://Cal.Example.ORG/OWA', 'https://cal.example.org/OWA/cal'],
    ['https://{server}', 'https://cal.example.org/owa', 'https://cal.example.org/owa'],
    ['https://{server}?x={uid}', 'cal.example.org', 'https://cal.example.org?x=u'],
    // No {server}: a fixed link; the server setting only switches links on.
    ['https://fixed.example.net/m/{uid}', 'cal.example.org', 'https://fixed.example.net/m/u'],
  ];
  for (const [template, server, link] of cases) {
    assert.equal(buildLink(template, { server, uid: 'u' }), link, `${template} + ${server}`);
  }
});

test('bad servers are refused with a reason', () => {
  const cases: Array<[string, RegExp]> = [
    ['', /empty/],
    ['   ', /empty/],
    ['javascript:alert(1)', /scheme "javascript:"/],
    ['JavaScript://cal.example.org/%0aalert(1)', /scheme "javascript:"/],
    ['data:text/html,x', /scheme "data:"/],
    ['ftp://cal.example.org', /scheme "ftp:"/],
    ['https://user:pw@cal.example.org', /user name or password/],
    ['https://cal.example.org/owa?x=1', /base URL/],
    ['https://cal.example.org/#x', /base URL/],
    ['https:cal.example.org', /no host/],
    ['cal example.org', /whitespace/],
    ['cal.example.org\r\nX: y', /whitespace or control/],
    ['cal.example.org:99999', /port 99999/],
    ['cal.example.org:0', /port 0/],
    ['evil.example/@cal.example.org', /not HOST/],
    ['user@cal.example.org', /not HOST/],
    ['-bad-.example', /not HOST/],
    ['::1', /not HOST/],
    ['cal.example.org:abc', /scheme "cal.example.org:"/],
  ];
  for (const [server, why] of cases) {
    assert.match(checkServer(server) ?? '(accepted)', why, JSON.stringify(server));
    assert.throws(() => buildLink(DEFAULT_TEMPLATE, { server }), (e: unknown) => e instanceof LinkError && why.test(e.message), JSON.stringify(server));
  }
});

test('templates: unknown placeholders are named; non-http and misplaced {server} refused', () => {
  const cases: Array<[string, RegExp | null]> = [
    [DEFAULT_TEMPLATE, null],
    [ALL, null],
    ['{server}', null],
    ['https://{server}/x?u={UID}', /unknown placeholder \{UID\}/],
    ['https://{server}/x?u={foo}&v={bar}&w={foo}', /unknown placeholders \{foo\}, \{bar\} \(known: \{server\}/],
    ['https://{server}/x?u={}', /unknown placeholder \{\}/],
    ['https://{server}/x?u={uid', /unbalanced/],
    ['https://{server}/x?u=uid}', /unbalanced/],
    ['https://good.example/a\\{uid}/x', /contains "\\"/],
    ['', /empty/],
    ['javascript:alert({uid})', /must start with http/],
    ['ftp://files.example/{uid}', /must start with http/],
    ['//cal.example.org/{uid}', /must start with http/],
    ['mailto:{recipient}', /must start with http/],
    ['https://cal.example.org/{server}', /where the host goes/],
    ['ftp://{server}/x', /where the host goes/],
    ['https://{server}/{server}', /only once/],
    ['https://{server}{uid}', /followed by/],
    ['https://{server}.evil.example/', /followed by/],
    ['https://{server}:8443/', /followed by/],
    ['https://{uid}.example.org/', /host part/],
    ['https://cal.example.org:{sequence}/', /host part/],
    ['https://{server}/a b', /whitespace/],
    ['https://{server}/kalender/öffnen', /non-ASCII/],
    ['https://{server}/x\n', /control/],
  ];
  for (const [template, why] of cases) {
    const got = checkTemplate(template);
    if (why === null) assert.equal(got, null, template);
    else assert.match(got ?? '(accepted)', why, template);
    if (why !== null) assert.throws(() => buildLink(template, { server: 'h.example', token: 't' }), LinkError, template);
  }
});

test('{token}: refused at start-up without a secret, and a link needing one is never built without it', () => {
  assert.match(checkTemplate('https://{server}/m/{token}', { token: false }) ?? '', /link_secret/);
  assert.equal(checkTemplate('https://{server}/m/{token}', { token: true }), null);
  assert.equal(checkTemplate(DEFAULT_TEMPLATE, { token: false }), null);
  assert.throws(() => buildLink('https://{server}/m/{token}', { server: 'h.example' }), /no token/);
  assert.throws(() => buildLink('https://{server}/m/{token}', { server: 'h.example', token: '' }), /no token/);
});

test('the result is capped at MAX_LINK_LENGTH characters, counted after encoding', () => {
  const prefix = 'https://h.example/e?u='; // 22 characters
  const fits = 'a'.repeat(MAX_LINK_LENGTH - prefix.length);
  assert.equal(buildLink('https://{server}/e?u={uid}', { server: 'h.example', uid: fits }).length, MAX_LINK_LENGTH);
  assert.throws(() => buildLink('https://{server}/e?u={uid}', { server: 'h.example', uid: `${fits}a` }), /901 characters long, more than 900/);
  // "é" encodes to 6 characters: the cap applies to what goes into the mail.
  const wide = 'é'.repeat(Math.ceil((MAX_LINK_LENGTH - prefix.length) / 6) + 1);
  assert.throws(() => buildLink('https://{server}/e?u={uid}', { server: 'h.example', uid: wide }), /more than 900/);
});

test('every link built is absolute http(s), ASCII and free of whitespace', () => {
  assert.deepEqual([...PLACEHOLDERS], ['server', 'uid', 'recurrenceId', 'sequence', 'method', 'messageId', 'recipient', 'token']);
  const values: LinkValues = { server: 'cal.example.org', uid: 'ü \t\r\n', recurrenceId: '\u202e', sequence: 1, method: 'REQUEST', messageId: '<a@b>', recipient: 'a@b', token: 'k1.x' };
  const url = buildLink(ALL, values);
  assert.match(url, /^https:\/\/[\x21-\x7e]+$/);
  assert.ok(['http:', 'https:'].includes(new URL(url).protocol));
});

test('the URL check made once per origin agrees with parsing every link whole', () => {
  // Templates checkTemplate lets through, with origins the URL parser takes or refuses.
  const templates = [
    'https://h.example/x/{uid}', 'HTTPS://H.Example/x?u={uid}', 'http://h.example:8080#{uid}', 'https://user:pw@h.example/{uid}',
    'https://h.example:443?u={uid}', 'https://a@/x?u={uid}', 'https://[::1/x/{uid}', 'https://h.example:99999/x/{uid}', 'https://h.example:80x/{uid}',
  ];
  const whole = (url: string): string | null => {
    try {
      const u = new URL(url);
      return ['http:', 'https:'].includes(u.protocol) && u.hostname ? null : 'refused';
    } catch {
      return 'refused';
    }
  };
  for (const t of templates) {
    // the first link computes the origin's verdict, the next ones take it from what was remembered
    for (const uid of ['a', 'b c', 'x/y?z#w']) {
      const expected = t.replace('{uid}', encodeURIComponent(uid));
      let got: string | null;
      try {
        got = buildLink(t, { server: 'unused.example', uid }) === expected ? null : 'different link';
      } catch (err) {
        assert.match((err as Error).message, /not a valid absolute URL|no host|is not http or https/, t);
        got = 'refused';
      }
      assert.equal(got, whole(expected), `${t} with ${uid}`);
    }
  }
});

test('dot segments are found in one pass exactly where a split path has them', () => {
  const bySplit = (path: string) => path.split('/').some((seg) => /^(?:\.|%2e){1,2}$/i.test(seg));
  const paths = ['/a/./b', '/a/../b', '/a/.../b', '/a/%2e./b', '/a/.%2E', '/..', '/.', '/a..b/', '/a/b.', '/%2e%2e%2e', '/%2E', '/a//b', '/', '/a/%2e%2e/', '/.a/b./'];
  for (const path of paths) {
    const refused = (() => {
      try {
        buildLink(`https://{server}${path}?u={uid}`, { server: 'h.example', uid: 'u' });
        return false;
      } catch (err) {
        assert.match((err as Error).message, /"\." or "\.\." segment/, path);
        return true;
      }
    })();
    assert.equal(refused, bySplit(path), path);
  }
});
