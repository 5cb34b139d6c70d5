// The HTML footer as people see it: real-world messages (corpus) and our fixtures run through the
// filter's own planDelivery, then the HTML part before and after (mailparser) rendered in Debian's
// Chromium (playwright-core, JavaScript off, every network request aborted). Proves: one footer, visible,
// readable, its link the planned URL and clickable at its centre, below all original content, and the
// page above it pixel-identical to the original. Screenshots: artifacts/footer-render/<name>-{before,after}.png.
// Skips (saying so) when /usr/bin/chromium is absent; corpus cases skip without ../shared/corpus.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { simpleParser } from 'mailparser';
import { PNG } from 'pngjs';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { closeApp, createApp, type FilterApp } from '../lib/app.js';
import { scanBuffer } from '../lib/candidate-scan.js';
import { loadConfig } from '../lib/config.js';
import { planDelivery } from '../lib/plan.js';
import { spoolFromBuffer } from '../lib/spool.js';
import { CORPUS_SKIP_MESSAGE, corpusFile } from './helpers/corpus.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const ARTIFACTS = join(ROOT, 'artifacts', 'footer-render');
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const HAVE = existsSync(CHROMIUM);
const SKIP = !HAVE && `no ${CHROMIUM} (Debian package chromium; .ci/run installs it)`;
const FOOTER = '[data-calendar-link-footer]';
const VIEWPORT = { width: 800, height: 600 };
const RECIPIENT = 'bob@example.org';
/** WCAG 2.1 minimum for large text and UI components: far above "invisible", below every sane design. */
const MIN_CONTRAST = 3;

interface Case {
  name: string;
  /** Corpus-relative path, or a file under fixtures/mail. */
  corpus?: string;
  fixture?: string;
  /** What the URL must say about this message (beside equalling the planned link). */
  uid: string;
}

// HTML-bearing calendar mail from several producers: Outlook/Word, Google Calendar, Exchange 6.5's
// RTF conversion, an Outlook cancellation in ks_c_5601-1987, Exchange with a <font> wrapper around the
// body, a 98 KB Outlook body with an inline image and disclaimers, and two fixtures of ours (SOGo's
// QP body with <body>; an HTML part with no <html>/<body> at all).
const CASES: Case[] = [
  { name: 'outlook-test-invite', corpus: 'thunderbird-comm-central/outlook-test-invite.eml', uid: '030000008200E00074C5B7101A82E0080000000060B608D090DDD7010000000000000000100000004BE0CFFA54BCF64E956E34143362C3C0' },
  { name: 'meet-meeting-invite', corpus: 'thunderbird-comm-central/meet-meeting-invite.eml', uid: '65m17hsdolmotv3kvmrtg40ont%40google.com' },
  { name: 'zoom-vtimezone', corpus: 'bluemind/zoom.vtimezone.eml', uid: '040000008200E00074C5B7101A82E00800000000E043CD87B486D60100000000000000001000000078E34F56EE69B94BAA6BDBDDEC654149' },
  { name: 'openbmc-cancel-ks_c_5601', corpus: 'lore-openbmc/m_e4f51e211561.eml', uid: '040000008200E00074C5B7101A82E008000000003040AB905072D5010000000000000000100000006F400595F64BE64F9B3BE5C86142E3B7' },
  { name: 'exchange-font-wrapper', corpus: 'bluemind/exchange.invite.to_alias.eml', uid: '040000008200E00074C5B7101A82E00800000000407EB9A3546BCD01000000000000000010000000378CCE8CAC0E894DAF6ECC7C2C95A8BB' },
  { name: 'bluemind-inline-image', corpus: 'bluemind/bluemind_mapi_invitation_inline.eml', uid: '040000008200e00074c5b7101a82e00800000000e015ba780bfcd7010000000000000000100000000bfbc82d3f1c81458f25ba118ea29e2d' },
  // The fixture's calendar part is QP with an unencoded "CN=Ada" (decodes to 0xAD): the calendar does
  // not parse, so the link has an empty uid. The footer must still render; the uid is checked as empty.
  { name: 'sogo', fixture: 'sogo.eml', uid: '' },
  { name: 'html-no-body-tag', fixture: 'html-no-body-tag.eml', uid: 'html-no-body-tag%40example.org' },
];

/** What Postfix hands a content filter: CRLF line ends. */
const toWire = (b: Buffer) => Buffer.from(b.toString('latin1').replace(/\r?\n/g, '\r\n'), 'latin1');

let browser: Browser;
let app: FilterApp;
const config = loadConfig({ flags: { web_server: 'cal.example.org' } });

before(async () => {
  if (!HAVE) return;
  mkdirSync(ARTIFACTS, { recursive: true });
  app = await createApp(config, () => undefined);
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--headless', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    timeout: 30_000,
  });
});

after(async () => {
  await browser?.close();
  if (app) await closeApp(app);
});

/** The message through the real plan (classify → link → footer → rewrite): output bytes and the planned link. */
async function runFilter(raw: Buffer): Promise<{ out: Buffer; url: string }> {
  const spool = spoolFromBuffer(raw);
  const plan = await planDelivery({ config, log: () => undefined, hooks: app.hooks }, { from: '', to: [{ address: RECIPIENT }] }, spool, scanBuffer(raw), 'footer-browser');
  try {
    assert.equal(plan.groups.length, 1, `one delivery group (${plan.decision})`);
    const g = plan.groups[0]!;
    assert.ok(g.body && g.url, `the filter added a footer (${plan.decision})`);
    return { out: await g.body.read(0, g.body.size), url: g.url };
  } finally {
    for (const g of plan.groups) await g.body?.dispose();
    await spool.dispose();
  }
}

async function htmlOf(raw: Buffer): Promise<string> {
  const m = await simpleParser(raw);
  assert.equal(typeof m.html, 'string', 'the message has an HTML body');
  return m.html as string;
}

/** A page with the given HTML, no script, no network; resolves once every (aborted) load settled. */
async function render(ctx: BrowserContext, html: string): Promise<Page> {
  const page = await ctx.newPage();
  await page.setContent(html, { waitUntil: 'load', timeout: 15_000 });
  // tsx (esbuild keepNames) wraps named helpers in the functions we evaluate with __name(): give the
  // page an identity stand-in. Through the DevTools protocol, which "JavaScript off" does not govern.
  await page.evaluate('globalThis.__name = (f) => f');
  return page;
}

async function screenshot(page: Page, file: string): Promise<PNG> {
  const buf = await page.screenshot({ fullPage: true, type: 'png', animations: 'disabled', caret: 'hide', timeout: 15_000 });
  writeFileSync(join(ARTIFACTS, file), buf);
  return PNG.sync.read(buf);
}

interface Box { x: number; y: number; width: number; height: number }

const inside = (x: number, y: number, b: Box) => x >= Math.floor(b.x) && x < Math.ceil(b.x + b.width) && y >= Math.floor(b.y) && y < Math.ceil(b.y + b.height);

/**
 * Rows [0, rows) of two screenshots: how many pixels differ (any channel), and the first one. Pixels
 * inside `masked` boxes are not compared: images, whose boxes the caller checked are identical, since an
 * animated GIF (corpus: bluemind's 6-frame one) shows whichever frame was current at the screenshot.
 */
function diffRows(a: PNG, b: PNG, rows: number, masked: Box[]): { differing: number; first: string | null } {
  assert.equal(a.width, b.width, 'screenshots of equal width');
  let differing = 0;
  let first: string | null = null;
  for (let y = 0; y < rows; y++) {
    for (let x = 0; x < a.width; x++) {
      if (masked.some((m) => inside(x, y, m))) continue;
      const i = (y * a.width + x) * 4;
      if (a.data[i] !== b.data[i] || a.data[i + 1] !== b.data[i + 1] || a.data[i + 2] !== b.data[i + 2] || a.data[i + 3] !== b.data[i + 3]) {
        differing++;
        first ??= `(${x},${y})`;
      }
    }
  }
  return { differing, first };
}

/** Pixels inside a box that differ from the box's most common colour: the glyphs actually drawn. */
function inkPixels(png: PNG, box: { x: number; y: number; width: number; height: number }): number {
  const x0 = Math.max(0, Math.floor(box.x)), y0 = Math.max(0, Math.floor(box.y));
  const x1 = Math.min(png.width, Math.ceil(box.x + box.width)), y1 = Math.min(png.height, Math.ceil(box.y + box.height));
  const counts = new Map<number, number>();
  const colour = (x: number, y: number) => png.data.readUInt32BE((y * png.width + x) * 4);
  for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) counts.set(colour(x, y), (counts.get(colour(x, y)) ?? 0) + 1);
  const [bg] = [...counts.entries()].sort((p, q) => q[1] - p[1])[0] ?? [0];
  let ink = 0;
  for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) if (colour(x, y) !== bg) ink++;
  return ink;
}

interface Geometry {
  /** Page coordinates (scroll 0). */
  footer: { x: number; y: number; width: number; height: number };
  link: { x: number; y: number; width: number; height: number; href: string | null; text: string };
  scroll: { width: number; height: number };
  /** Lowest bottom edge of every element and text node outside the footer (its ancestors aside). */
  contentBottom: number;
  /** Why the footer or its link would be unseen, from computed style; [] when none. */
  hidden: string[];
  contrast: { text: number; link: number };
  /** Backgrounds drawn by images, which the contrast figure cannot take into account. */
  notes: string[];
  /** The document with the footer removed, whitespace runs collapsed: must equal the original. */
  withoutFooter: string;
}

/** Page-coordinate boxes of the images outside the footer, in document order. */
function imageBoxes(page: Page): Promise<Box[]> {
  return page.evaluate((sel) => [...document.querySelectorAll('img, input[type=image]')]
    .filter((e) => !e.closest(sel))
    .map((e) => { const r = e.getBoundingClientRect(); return { x: r.x + window.scrollX, y: r.y + window.scrollY, width: r.width, height: r.height }; }), FOOTER);
}

/** Lowest bottom edge of the original document's content (elements and text nodes with a box). */
function contentBottomIn(page: Page): Promise<number> {
  return page.evaluate(() => {
    let bottom = 0;
    const walker = document.createTreeWalker(document.documentElement, NodeFilter.SHOW_ELEMENT | NodeFilter.SHOW_TEXT);
    for (let n: Node | null = walker.currentNode; n; n = walker.nextNode()) {
      if (n === document.documentElement || n === document.body) continue;
      const r = n.nodeType === Node.TEXT_NODE ? (() => { const g = document.createRange(); g.selectNodeContents(n); return g.getBoundingClientRect(); })() : (n as Element).getBoundingClientRect();
      if (r.width > 0 || r.height > 0) bottom = Math.max(bottom, r.bottom + window.scrollY);
    }
    return bottom;
  });
}

function geometry(page: Page): Promise<Geometry> {
  return page.evaluate((sel) => {
    const footer = document.querySelector(sel) as HTMLElement;
    const a = footer.querySelector('a') as HTMLAnchorElement;
    const abs = (r: DOMRect) => ({ x: r.x + window.scrollX, y: r.y + window.scrollY, width: r.width, height: r.height });

    // Content outside the footer: every node except the footer's subtree and the footer's ancestors
    // (html, body and any wrapper it was inserted into, whose boxes now include the footer).
    const ancestors = new Set<Node>();
    for (let p: Node | null = footer.parentNode; p; p = p.parentNode) ancestors.add(p);
    let contentBottom = 0;
    const walker = document.createTreeWalker(document.documentElement, NodeFilter.SHOW_ELEMENT | NodeFilter.SHOW_TEXT);
    for (let n: Node | null = walker.currentNode; n; n = walker.nextNode()) {
      if (ancestors.has(n) || footer.contains(n)) continue;
      const r = n.nodeType === Node.TEXT_NODE ? (() => { const g = document.createRange(); g.selectNodeContents(n); return g.getBoundingClientRect(); })() : (n as Element).getBoundingClientRect();
      if (r.width > 0 || r.height > 0) contentBottom = Math.max(contentBottom, r.bottom + window.scrollY);
    }

    const hidden: string[] = [];
    const notes: string[] = [];
    let opacity = 1;
    for (let e: Element | null = a; e; e = e.parentElement) {
      const s = getComputedStyle(e);
      const tag = e.tagName.toLowerCase();
      if (s.display === 'none') hidden.push(`${tag}: display none`);
      if (e === a || e === footer) {
        if (s.visibility !== 'visible') hidden.push(`${tag}: visibility ${s.visibility}`);
        if (parseFloat(s.fontSize) < 8) hidden.push(`${tag}: font-size ${s.fontSize}`);
        if (s.clipPath !== 'none' || s.clip !== 'auto') hidden.push(`${tag}: clipped`);
      }
      opacity *= parseFloat(s.opacity);
    }
    if (opacity < 0.5) hidden.push(`effective opacity ${opacity}`);

    // WCAG relative luminance; the background is the first opaque-ish one up the tree, else white.
    const rgba = (c: string) => (c.match(/[\d.]+/g) ?? ['0', '0', '0', '0']).map(Number).concat(1).slice(0, 4) as [number, number, number, number];
    const lum = ([r, g, b]: number[]) => {
      const f = (v: number) => { const c = v / 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
      return 0.2126 * f(r!) + 0.7152 * f(g!) + 0.0722 * f(b!);
    };
    const background = (e: Element) => {
      for (let p: Element | null = e; p; p = p.parentElement) {
        const s = getComputedStyle(p);
        if (s.backgroundImage !== 'none') notes.push(`${p.tagName.toLowerCase()}: background image (contrast not computed from it)`);
        const c = rgba(s.backgroundColor);
        if (c[3] > 0.5) return c;
      }
      return [255, 255, 255, 1] as [number, number, number, number];
    };
    const contrast = (e: Element) => {
      const [l1, l2] = [lum(rgba(getComputedStyle(e).color)), lum(background(e))];
      return (Math.max(l1, l2) + 0.05) / (Math.min(l1, l2) + 0.05);
    };

    const clone = document.documentElement.cloneNode(true) as HTMLElement;
    clone.querySelector(sel)?.remove();
    return {
      footer: abs(footer.getBoundingClientRect()),
      link: { ...abs(a.getBoundingClientRect()), href: a.getAttribute('href'), text: a.textContent ?? '' },
      scroll: { width: document.documentElement.scrollWidth, height: document.documentElement.scrollHeight },
      contentBottom,
      hidden,
      contrast: { text: contrast(footer), link: contrast(a) },
      notes,
      withoutFooter: clone.outerHTML.replace(/\s+/g, ' ').replace(/> </g, '><'),
    };
  }, FOOTER);
}

for (const c of CASES) {
  const raw = c.corpus ? corpusFile(c.corpus) : readFileSync(join(ROOT, 'fixtures', 'mail', c.fixture!));
  const skip = SKIP || (raw === null && CORPUS_SKIP_MESSAGE);
  test(`footer in Chromium: ${c.name} (${c.corpus ?? `fixtures/mail/${c.fixture}`})`, { skip, timeout: 30_000 }, async (t) => {
    const { out, url } = await runFilter(toWire(raw!));
    assert.match(url, new RegExp(`^https://cal\\.example\\.org/calendar/event\\?uid=${c.uid}&`), 'the planned link is this message\'s');
    const [htmlBefore, htmlAfter] = await Promise.all([htmlOf(toWire(raw!)), htmlOf(out)]);

    const ctx = await browser.newContext({ javaScriptEnabled: false, viewport: VIEWPORT, deviceScaleFactor: 1, colorScheme: 'light', locale: 'en-US', reducedMotion: 'reduce' });
    const blocked: string[] = [];
    await ctx.route('**/*', (r) => { blocked.push(r.request().url()); return r.abort(); });
    try {
      const original = await render(ctx, htmlBefore);
      const shotBefore = await screenshot(original, `${c.name}-before.png`);
      const bottomBefore = await contentBottomIn(original);
      const imagesBefore = await imageBoxes(original);
      const withoutFooterBefore = await original.evaluate(() => document.documentElement.outerHTML.replace(/\s+/g, ' ').replace(/> </g, '><'));
      await original.close();

      const page = await render(ctx, htmlAfter);
      const shotAfter = await screenshot(page, `${c.name}-after.png`);
      // One footer, with a box, inside the page's scroll area, not hidden by the message's CSS.
      assert.equal(await page.locator(FOOTER).count(), 1, 'exactly one footer element');
      const g = await geometry(page);
      const images = await imageBoxes(page);
      for (const [what, b] of [['footer', g.footer], ['link', g.link]] as const) {
        assert.ok(b.width > 0 && b.height > 0, `${what} has a box: ${JSON.stringify(b)}`);
        assert.ok(b.x >= 0 && b.y >= 0 && b.x + b.width <= g.scroll.width + 0.5 && b.y + b.height <= g.scroll.height + 0.5,
          `${what} inside the scroll area ${g.scroll.width}x${g.scroll.height}: ${JSON.stringify(b)}`);
      }
      assert.deepEqual(g.hidden, [], 'nothing hides the footer or its link');
      assert.ok(g.contrast.link >= MIN_CONTRAST && g.contrast.text >= MIN_CONTRAST, `readable: contrast ${JSON.stringify(g.contrast)}`);
      assert.ok(inkPixels(shotAfter, g.link) > 50, 'the link text is actually drawn (pixels differ from its background)');

      // The link: the planned URL, and a click at its centre lands on it.
      assert.equal(g.link.href, url, 'href is the planned link');
      assert.equal(g.link.text, 'View it and your calendar on the web');
      const link = page.locator(`${FOOTER} a`);
      await link.click({ trial: true, timeout: 5_000 });
      await link.scrollIntoViewIfNeeded({ timeout: 5_000 });
      const hit = await link.evaluate((a) => {
        const r = a.getBoundingClientRect();
        const e = document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2);
        return { onLink: e !== null && a.contains(e), at: e ? e.outerHTML.slice(0, 80) : null };
      });
      assert.ok(hit.onLink, `the element at the link's centre is the link, not ${hit.at}`);

      // Below the original content, and the original content unchanged (DOM and pixels).
      assert.ok(g.footer.y >= g.contentBottom - 0.01, `footer top ${g.footer.y} ≥ bottom of the original content ${g.contentBottom}`);
      assert.ok(g.footer.y >= bottomBefore - 0.01, `footer top ${g.footer.y} ≥ bottom of the original page's content ${bottomBefore}`);
      assert.equal(g.withoutFooter, withoutFooterBefore, 'the document minus the footer is the original document');
      // Rows above the footer's top edge (the row it starts in may be antialiased with the border):
      // exact equality, same browser, same fonts, same viewport: any difference is a layout change.
      // Images are compared by box only (same place, same size; same src by the DOM check above).
      assert.deepEqual(images, imagesBefore, 'every image at the same place and size');
      const rows = Math.min(shotBefore.height, Math.floor(g.footer.y));
      assert.ok(rows > 0 && shotAfter.height >= rows);
      const diff = diffRows(shotBefore, shotAfter, rows, images);
      assert.equal(diff.differing, 0, `original page and rewritten page above the footer differ in ${diff.differing} pixels (first ${diff.first}); see artifacts/footer-render/${c.name}-*.png`);
      t.diagnostic(`${c.name}: ${shotBefore.height}px → ${shotAfter.height}px, footer at y=${g.footer.y.toFixed(1)}, contrast text ${g.contrast.text.toFixed(1)} link ${g.contrast.link.toFixed(1)}, ${images.length} image(s) masked, ${blocked.length} request(s) blocked${g.notes.length ? `; ${[...new Set(g.notes)].join('; ')}` : ''}`);
      await page.close();
    } finally {
      await ctx.close();
    }
  });
}
