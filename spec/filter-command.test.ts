// `filter` and `explain` as an administrator (or Exim's transport_filter) runs them: real processes,
// stdin/stdout, exit codes. Unparseable input comes out unchanged with one stderr line and exit 0;
// a temporary failure exits 75; bad flags and unreadable files exit non-zero with a clear message.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { simpleParser } from 'mailparser';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const fixture = (name: string) => readFileSync(join(ROOT, 'fixtures/mail', `${name}.eml`));
const run = (args: string[], input?: Buffer) =>
  spawnSync(process.execPath, ['--import', 'tsx', 'bin/calendar-link-filter.ts', ...args], { cwd: ROOT, input, timeout: 30_000, env: { ...process.env, CALFILTER_LOG_LEVEL: 'error' } });

test('filter: a meeting request gets the footer with the recipient\'s link, in plain and HTML', async () => {
  const r = run(['filter', '--web-server', 'cal.example.org', '--recipient', 'bob@example.org', '--url-template', 'https://{server}/m?u={uid}&r={recipient}'], fixture('exchange-online'));
  assert.equal(r.status, 0, r.stderr.toString());
  assert.match(r.stdout.subarray(0, 40).toString(), /^X-Calendar-Link: added\r\n/);
  const m = await simpleParser(r.stdout);
  assert.match(m.text ?? '', /https:\/\/cal\.example\.org\/m\?u=[^&\s]+&r=bob%40example\.org/);
  assert.match(String(m.html), /href="https:\/\/cal\.example\.org\/m\?u=[^"&]+&amp;r=bob%40example\.org"/);
});

test('filter: a message that gets nothing is written byte for byte, exit 0', () => {
  for (const name of ['reply', 'non-calendar-meeting', 'smime-signed', 'forwarded-invite', 'already-marked']) {
    const input = fixture(name);
    const r = run(['filter', '--web-server', 'cal.example.org'], input);
    assert.equal(r.status, 0, `${name}: ${r.stderr}`);
    assert.ok(r.stdout.equals(input), `${name} unchanged`);
  }
});

test('filter: garbage, truncated MIME and empty input come out unchanged with one clear stderr line', () => {
  const garbage = Buffer.from([0, 1, 2, 255, 254, 10, 13, 10, 0x41]);
  const truncated = fixture('google').subarray(0, 700);
  const broken = Buffer.from('Content-Type: multipart/mixed; boundary="x"\r\n\r\n--x\r\nContent-Type: text/calendar; method=REQUEST\r\n\r\nBEGIN:VCALENDAR\r\n');
  for (const [name, input] of [['garbage', garbage], ['truncated', truncated], ['broken', broken], ['empty', Buffer.alloc(0)]] as const) {
    const r = run(['filter', '--web-server', 'cal.example.org'], input);
    assert.equal(r.status, 0, `${name}: exit 0`);
    assert.ok(r.stdout.equals(input), `${name}: unchanged`);
  }
  const r = run(['filter', '--web-server', 'cal.example.org'], broken);
  const lines = r.stderr.toString().trim().split('\n').filter((l) => l.startsWith('calendar-link-filter:'));
  assert.equal(lines.length, 1, `one line: ${r.stderr}`);
  assert.match(lines[0]!, /not a well-formed MIME message|unchanged/);
});

test('filter: LF-only input (as Exim hands it over) gets a footer too', async () => {
  const r = run(['filter', '--web-server', 'cal.example.org'], fixture('lf-only'));
  assert.equal(r.status, 0);
  const m = await simpleParser(r.stdout);
  assert.match(m.text ?? '', /https:\/\/cal\.example\.org\//);
});

test('filter: a temporary failure exits 75 (EX_TEMPFAIL) so the MTA retries', () => {
  const r = run(['filter', '--spool-memory-limit', '0', '--spool-dir', '/nonexistent/calfilter-spool'], fixture('google'));
  assert.equal(r.status, 75);
  assert.match(r.stderr.toString(), /cannot read the message/);
  assert.equal(r.stdout.length, 0, 'nothing half-written');
});

test('filter: a bad flag exits 64, a bad value 78, both naming it', () => {
  const a = run(['filter', '--web-servr', 'x'], Buffer.alloc(0));
  assert.equal(a.status, 64);
  assert.match(a.stderr.toString(), /--web-servr/);
  const b = run(['filter', '--local-domains', 'bad domain'], Buffer.alloc(0));
  assert.equal(b.status, 78);
  assert.match(b.stderr.toString(), /local_domains/);
});

test('explain: JSON with kind, calendar facts, chosen parts and the reason', () => {
  const r = run(['explain', join(ROOT, 'fixtures/mail/google.eml'), '--web-server', 'cal.example.org', '--recipient', 'bob@example.org']);
  assert.equal(r.status, 0, r.stderr.toString());
  const j = JSON.parse(r.stdout.toString());
  assert.equal(j.kind, 'meeting');
  assert.equal(j.changes, true);
  assert.equal(j.calendar.method, 'REQUEST');
  assert.ok(j.calendar.uid);
  assert.equal(typeof j.targets.plain, 'number');
  assert.equal(j.parts[j.targets.plain].type, 'text/plain');
  assert.deepEqual(j.recipients.map((x: { recipient: string; footer: boolean }) => [x.recipient, x.footer]), [['bob@example.org', true]]);
  assert.match(j.decision, /footer added/);
  assert.doesNotMatch(r.stdout.toString(), /token/i, 'never a token in explain');

  const reply = JSON.parse(run(['explain', join(ROOT, 'fixtures/mail/reply.eml'), '--web-server', 'cal.example.org']).stdout.toString());
  assert.equal(reply.changes, false);
  assert.match(reply.decision, /REPLY/i);

  // no web server anywhere: the invitation stays as it is, and the decision must not say otherwise
  const bare = JSON.parse(run(['explain', join(ROOT, 'fixtures/mail/google.eml'), '--recipient', 'bob@example.org']).stdout.toString());
  assert.equal(bare.changes, false);
  assert.doesNotMatch(bare.decision, /footer added/);
  assert.match(bare.decision, /no web calendar server/);
});

test('explain: an unreadable file exits 66 with its name; no file exits 64', () => {
  const a = run(['explain', '/nonexistent/x.eml']);
  assert.equal(a.status, 66);
  assert.match(a.stderr.toString(), /cannot read \/nonexistent\/x\.eml/);
  const b = run(['explain']);
  assert.equal(b.status, 64);
});

test('filter: override store unreachable with redis_fallback=tempfail exits 75 and writes nothing', () => {
  const r = run(['filter', '--web-server', 'cal.example.org', '--redis', 'redis://127.0.0.1:1', '--redis-fallback', 'tempfail', '--recipient', 'bob@example.org'], fixture('google'));
  assert.equal(r.status, 75, r.stderr.toString());
  assert.equal(r.stdout.length, 0);
  assert.match(r.stderr.toString(), /temporary failure: Link override store unavailable/);
  const s = run(['filter', '--web-server', 'cal.example.org', '--redis', 'redis://127.0.0.1:1', '--recipient', 'bob@example.org'], fixture('google'));
  assert.equal(s.status, 0, 'the default fallback (site) still adds the site link');
  assert.match(s.stdout.toString('latin1'), /cal\.example\.org/);
});

// --- review regressions: the output is either complete with exit 0, or the MTA hears 75 ---

import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';

/** A 3 MiB non-calendar message: larger than any pipe buffer, so a dead reader shows as a write error. */
const large = () => Buffer.concat([Buffer.from('From: a@example.org\r\nTo: b@example.org\r\nSubject: big\r\n\r\n'), Buffer.alloc(3 * 1024 * 1024, 'x\r\n')]);

function runWithStdout(args: string[], input: Buffer, stdout: 'pipe' | number, closeEarly: boolean): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'bin/calendar-link-filter.ts', ...args], {
      cwd: ROOT, stdio: ['pipe', stdout, 'pipe'], env: { ...process.env, CALFILTER_LOG_LEVEL: 'error' },
    });
    if (closeEarly) child.stdout!.destroy();
    let stderr = '';
    child.stderr!.on('data', (d) => { stderr += d; });
    child.stdin!.on('error', () => undefined);
    child.stdin!.end(input);
    child.on('close', (code) => resolve({ code, stderr }));
  });
}

test('filter: the reader of stdout goes away (EPIPE) → exit 75 with one clear line, not a crash with exit 1', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'calfilter-epipe-'));
  try {
    const r = await runWithStdout(['filter', '--spool-dir', dir], large(), 'pipe', true);
    assert.equal(r.code, 75, r.stderr);
    assert.match(r.stderr, /calendar-link-filter: .*(cannot write|standard output).*EPIPE/);
    assert.doesNotMatch(r.stderr, /Unhandled 'error' event|\n\s+at /, 'no stack trace');
    assert.deepEqual(readdirSync(dir), [], 'the spooled copy of the message is removed');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('filter: stdout on a full disk (ENOSPC) → exit 75, not 0 or 1', { skip: !existsSync('/dev/full') && 'no /dev/full' }, async () => {
  const fd = openSync('/dev/full', 'w');
  try {
    for (const input of [large(), fixture('google')]) {
      const r = await runWithStdout(['filter', '--web-server', 'cal.example.org'], input, fd, false);
      assert.equal(r.code, 75, r.stderr);
      assert.match(r.stderr, /ENOSPC/);
      assert.doesNotMatch(r.stderr, /Unhandled 'error' event|\n\s+at /, 'no stack trace');
    }
  } finally {
    closeSync(fd);
  }
});

test('filter: stdin on a terminal is a usage error, not a wait for typing (or an empty message)', { skip: !existsSync('/usr/bin/script') && 'no script(1)' }, () => {
  const cmd = `${JSON.stringify(process.execPath)} --import tsx bin/calendar-link-filter.ts filter`;
  const r = spawnSync('/usr/bin/script', ['-qec', cmd, '/dev/null'], { cwd: ROOT, input: '', timeout: 30_000 });
  assert.equal(r.status, 64, r.stdout.toString());
  assert.match(r.stdout.toString(), /standard input is a terminal/);
});

test('filter: a value that starts with "-- " (a signature separator) is still a value', () => {
  const r = run(['filter', '--web-server', 'cal.example.org', '--footer-text-template', '-- \nCalendar: {url}'], fixture('google'));
  assert.equal(r.status, 0, r.stderr.toString());
  const inline = run(['filter', '--web-server=cal.example.org', '--footer-text-template=--calendar {url}'], fixture('google'));
  assert.equal(inline.status, 0, inline.stderr.toString());
});

test('filter: standard input that cannot be read as a message (a directory) exits 66 with a clear line, not 0 with nothing', () => {
  // Node hands a directory on fd 0 to the program as an empty stream: without the check, `filter < dir` wrote nothing and exited 0.
  const fd = openSync(join(ROOT, 'fixtures/mail'), 'r');
  try {
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'bin/calendar-link-filter.ts', 'filter', '--web-server', 'cal.example.org'], {
      cwd: ROOT, stdio: [fd, 'pipe', 'pipe'], timeout: 30_000, env: { ...process.env, CALFILTER_LOG_LEVEL: 'error' },
    });
    assert.equal(r.status, 66, r.stderr.toString());
    assert.match(r.stderr.toString(), /^calendar-link-filter: cannot read the message: standard input is a directory\n$/);
    assert.equal(r.stdout.length, 0);
  } finally {
    closeSync(fd);
  }
});
