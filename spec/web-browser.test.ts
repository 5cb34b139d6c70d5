// The web view in a real browser: Debian's Chromium driven by playwright-core (never a downloaded
// browser). JavaScript off: the page renders and the RSVP flow completes by clicking; the POST carried
// the right Origin and Sec-Fetch-Site. axe-core (WCAG 2.1 AA) on the message, sign-in, agenda and error
// pages, and on an agenda populated by signing in through the mailed link. The zone selector and Accept-Language give the right times for three locale/zone pairs.
// Skips (saying so) when /usr/bin/chromium is absent; .ci/run installs the `chromium` package.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { chromium, type Browser, type Page } from 'playwright-core';
import { MemorySnapshotStore } from '../lib/snapshot-store.js';
import { startWebServer, type WebServer } from '../lib/web/server.js';
import { startSink, type Sink } from './helpers/sink.js';
import { freePort } from './helpers/redis.js';
import { ics, inviteMail } from './helpers/web-fixtures.js';
import { ingestMail, testSettings, viewPath } from './helpers/web-ingest.js';

const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const HAVE = existsSync(CHROMIUM);
const AXE = HAVE ? readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8') : '';

let browser: Browser;
let web: WebServer;
let mta: Sink;
let store: MemorySnapshotStore;
let base: string;
let path: string;
let settings: ReturnType<typeof testSettings>['settings'];

before(async () => {
  if (!HAVE) return;
  mta = await startSink();
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  ({ settings } = testSettings({ web_base_url: base, rsvp_smtp_url: `smtp://127.0.0.1:${mta.port}`, web_default_tz: 'America/New_York' }));
  store = new MemorySnapshotStore();
  const [d] = await ingestMail(inviteMail(ics({ start: '20271203T090000', end: '20271203T100000', description: 'Agenda:\nhttps://example.org/doc' })), ['ann@example.net'], store, settings);
  path = viewPath(d);
  web = await startWebServer({ settings, store, log: () => undefined }, '127.0.0.1', port);
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--headless', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    timeout: 30_000,
  });
});

after(async () => {
  await browser?.close();
  await web?.close();
  await mta?.close();
});

async function axe(page: Page): Promise<string[]> {
  // Runs through the DevTools protocol, which the page's CSP (no script at all) does not govern.
  await page.evaluate(AXE);
  const r = await page.evaluate(() => (globalThis as unknown as { axe: { run(o: unknown): Promise<{ violations: Array<{ id: string; nodes: unknown[] }> }> } }).axe.run({ runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21aa'] } }));
  return r.violations.map((v) => `${v.id} (${v.nodes.length})`);
}

test('no JavaScript: the page renders and RSVP completes by clicking', { skip: !HAVE && 'no /usr/bin/chromium' }, async () => {
  const ctx = await browser.newContext({ javaScriptEnabled: false, locale: 'en-US', timezoneId: 'America/New_York' });
  try {
    const page = await ctx.newPage();
    // allHeaders(): the Sec-Fetch-* headers are added by the network stack, after headers() is taken.
    const posted: Array<Promise<Record<string, string>>> = [];
    page.on('request', (r) => { if (r.method() === 'POST') posted.push(r.allHeaders()); });
    await page.goto(`${base}${path}`, { timeout: 10_000 });
    assert.equal(await page.locator('h1').textContent(), 'Budget review');
    await page.getByLabel('Accept').check();
    await page.getByLabel('Comment (optional)').fill('Fine by me');
    await Promise.all([page.waitForURL(/\?sent=ACCEPTED$/, { timeout: 15_000 }), page.getByRole('button', { name: /Send reply to Olga Organizer/ }).click()]);
    assert.match(await page.locator('.banner.ok').textContent() ?? '', /Your reply \(Accepted\) was sent/);
    await mta.waitFor(1);
    const [post] = await Promise.all(posted);
    assert.equal(post?.origin, base, 'Origin is the base origin (Referrer-Policy: same-origin)');
    assert.equal(post?.['sec-fetch-site'], 'same-origin');
  } finally {
    await ctx.close();
  }
});

test('axe-core: no WCAG 2.1 AA violations on message, sign-in, agenda and error pages', { skip: !HAVE && 'no /usr/bin/chromium' }, async () => {
  const ctx = await browser.newContext({ locale: 'en-US' });
  try {
    const page = await ctx.newPage();
    for (const p of [path, '/s/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA', '/c', '/m/not-a-token']) {
      await page.goto(`${base}${p}`, { timeout: 10_000 });
      assert.deepEqual(await axe(page), [], p);
    }
  } finally {
    await ctx.close();
  }
});

test('axe-core: no WCAG 2.1 AA violations on a populated agenda (signed in by clicking the mailed link)', { skip: !HAVE && 'no /usr/bin/chromium', timeout: 90_000 }, async () => {
  // More of ann's invitations: one overlapping the Budget review, a weekly series, an all-day event,
  // and one cancelled; so the agenda shows several days, an overlap, recurrences and a struck-through entry.
  const more = [
    ics({ uid: 'agenda-overlap@example.org', start: '20271203T093000', end: '20271203T103000', summary: 'Vendor call', location: 'Room 2' }),
    ics({ uid: 'agenda-weekly@example.org', start: '20271201T140000', end: '20271201T143000', summary: 'Weekly sync', rrule: 'FREQ=WEEKLY;COUNT=4' }),
    ics({ uid: 'agenda-allday@example.org', start: '20271206', end: '20271207', tzid: null, summary: 'Offsite' }),
    ics({ uid: 'agenda-cancel@example.org', start: '20271204T110000', end: '20271204T120000', summary: 'Dropped meeting' }),
  ];
  for (const [i, cal] of more.entries()) await ingestMail(inviteMail(cal, { messageId: `agenda-${i}@example.org` }), ['ann@example.net'], store, settings);
  await ingestMail(inviteMail(ics({ uid: 'agenda-cancel@example.org', sequence: 1, method: 'CANCEL', status: 'CANCELLED', start: '20271204T110000', end: '20271204T120000', summary: 'Dropped meeting' }), { messageId: 'agenda-c@example.org' }), ['ann@example.net'], store, settings);

  // JavaScript on, as in the test above: axe runs through page.evaluate (the page itself has no script).
  const ctx = await browser.newContext({ locale: 'en-US', timezoneId: 'America/New_York' });
  try {
    const page = await ctx.newPage();
    const n = mta.messages.length;
    await page.goto(`${base}${path}`, { timeout: 10_000 });
    await Promise.all([page.waitForLoadState('load'), page.getByRole('button', { name: 'Email me a sign-in link' }).click()]);
    const mail = (await mta.waitFor(n + 1))[n]!;
    const otpPath = new RegExp(`${base.replace(/[.:/]/g, '\\$&')}(/s/[A-Za-z0-9_-]{43})`).exec(mail.raw.toString())?.[1];
    assert.ok(otpPath, 'the sign-in mail carries the link');
    await page.goto(`${base}${otpPath}`, { timeout: 10_000 });
    await Promise.all([page.waitForURL(`${base}/c`, { timeout: 10_000 }), page.getByRole('button', { name: 'Continue' }).click()]);
    await page.goto(`${base}/c?from=2027-12-01&days=14`, { timeout: 10_000 });
    const body = (await page.locator('body').textContent()) ?? '';
    for (const summary of ['Budget review', 'Vendor call', 'Weekly sync', 'Offsite', 'Dropped meeting']) assert.match(body, new RegExp(summary), `agenda shows ${summary}`);
    assert.ok((body.match(/Weekly sync/g)?.length ?? 0) >= 2, 'the series is expanded');
    assert.deepEqual(await axe(page), [], 'populated agenda');
  } finally {
    await ctx.close();
  }
});

test('zones and locales: the zone selector and Accept-Language give the right wall times', { skip: !HAVE && 'no /usr/bin/chromium' }, async () => {
  // 09:00 in New York on 3 Dec 2027 is 14:00 UTC: 15:00 in Berlin, 23:00 in Tokyo.
  const cases: Array<[string, string, RegExp, RegExp]> = [
    ['de-DE', 'Europe/Berlin', /15:00/, /Mitteleuropäische/],
    ['ja-JP', 'Asia/Tokyo', /23:00/, /日本/],
    ['en-US', 'America/New_York', /9:00/, /Eastern Time/],
  ];
  for (const [locale, zone, time, label] of cases) {
    const ctx = await browser.newContext({ javaScriptEnabled: false, locale, timezoneId: zone });
    try {
      const page = await ctx.newPage();
      await page.goto(`${base}${path}`, { timeout: 10_000 });
      await page.getByLabel('Show times in time zone').fill(zone);
      await Promise.all([page.waitForURL(`${base}${path}`, { timeout: 10_000 }), page.getByRole('button', { name: 'Change' }).click()]);
      const when = (await page.locator('time').first().textContent()) ?? '';
      const zoneText = (await page.locator('.zone').first().textContent()) ?? '';
      assert.match(when, time, `${locale} ${zone}: ${when}`);
      assert.match(zoneText, label, `${locale} ${zone}: ${zoneText}`);
    } finally {
      await ctx.close();
    }
  }
});
