// Test helper for the MIME side: the fixture list, a fixed test footer, a stand-in classification
// (so these tests do not depend on the classifier hooks) and the same decisions lib/plan.ts takes
// around the rewrite (damaged or marked → original; no target → original; nothing placed → original).
// In: fixture names / raw bytes. Out: the bytes a recipient would get, plus what was decided.

import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Readable } from 'node:stream';
import { analyzeMessage, isClassifierPart } from '../../lib/mime-structure.js';
import { chooseTargets, hasMarker, MARKER_HEADER, planRewrite, type RewritePlan, type Targets } from '../../lib/footer-insert.js';
import type { SpoolReader } from '../../lib/spool.js';
import type { Classification, Footer, MessageStructure } from '../../lib/types.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const FIXTURE_DIR = join(ROOT, 'fixtures', 'mail');
export const GOLDEN_DIR = join(ROOT, 'fixtures', 'golden');
export const MARKER_LINE = `${MARKER_HEADER}: added`;
/** Pinned so that the wrap of a lone calendar body is reproducible in golden files. */
export const TEST_BOUNDARY = '=_calfilter_test_boundary';

/** Non-ASCII on purpose: é fits latin1, ’ – fit windows-1252 but not latin1, ✓ fits only Unicode. */
export const TEST_FOOTER: Footer = {
  text: '-- \nMeeting request: Réunion d’équipe – Q3 ✓, 1 Dec 2026 09:00 (UTC)\nView it on the web: https://cal.example.org/m/k1.AbC-123_x?x=1&y=2',
  html: '<div data-calfooter="v1" style="margin-top:1em"><a href="https://cal.example.org/m/k1.AbC-123_x?x=1&amp;y=2">Meeting request: Réunion d’équipe – Q3 ✓</a></div>',
};

/** Fixtures whose stand-in classification says "no footer" (the policy's answer for them). */
const NO_FOOTER = new Set(['reply', 'forwarded-invite', 'non-calendar-meeting']);

export function fixtureNames(): string[] {
  return readdirSync(FIXTURE_DIR).filter((f) => f.endsWith('.eml')).map((f) => f.slice(0, -4)).sort();
}

export const readFixture = (name: string): Buffer => readFileSync(join(FIXTURE_DIR, `${name}.eml`));

/**
 * A SpoolReader over `buf` whose stream() yields chunks of `chunk` bytes (1 = byte by byte). Without
 * `chunk` it behaves like an in-memory spool; with one, like a file-backed one (buffer() throws), so
 * that the structure pass really reads it chunk by chunk.
 */
export function chunkedReader(buf: Buffer, chunk?: number): SpoolReader {
  const size = chunk ?? 65536;
  return {
    size: buf.length,
    inMemory: chunk === undefined,
    stream(start = 0, end = buf.length) {
      const parts: Buffer[] = [];
      for (let i = start; i < end; i += size) parts.push(buf.subarray(i, Math.min(end, i + size)));
      return Readable.from(parts, { objectMode: false });
    },
    read: async (start, end) => buf.subarray(start, Math.min(end, buf.length)),
    buffer: () => {
      if (chunk !== undefined) throw new Error('test reader: stream it');
      return buf;
    },
  };
}

/** Stand-in for the classify hooks: first text/calendar with method=, else any calendar/TNEF part. */
export function stubClassification(structure: MessageStructure, headers: Array<[string, string]>, footer = true): Classification {
  const parts = structure.parts;
  const cal = parts.find((p) => p.contentType === 'text/calendar' && p.params.method) ?? parts.find((p) => !p.multipart && isClassifierPart(p));
  const customForm = headers.some(([k, v]) => k === 'content-class' && /^urn:content-class:custom\./i.test(v));
  const kind = cal ? 'meeting' : customForm ? 'custom-form' : 'none';
  return {
    kind, method: null, tnefClass: null, source: cal ? 'imip' : customForm ? 'content-class' : null,
    calendarPart: cal?.index ?? null, calendar: null, footer: footer && kind !== 'none', reason: 'test stand-in',
  };
}

export interface Processed {
  out: Buffer;
  changed: boolean;
  decision: string;
  structure: MessageStructure;
  targets?: Targets;
  plan?: RewritePlan;
}

export async function collect(chunks: AsyncIterable<Buffer>): Promise<Buffer> {
  const out: Buffer[] = [];
  for await (const c of chunks) out.push(c);
  return Buffer.concat(out);
}

/** What a recipient gets for `buf`, decided the way lib/plan.ts decides it. */
export async function processMessage(buf: Buffer, opts: { footer?: Footer; wantFooter?: boolean; chunk?: number } = {}): Promise<Processed> {
  const src = chunkedReader(buf, opts.chunk);
  const { structure, headers } = await analyzeMessage(src);
  const same = (decision: string, extra: Partial<Processed> = {}): Processed => ({ out: buf, changed: false, decision, structure, ...extra });
  if (structure.damaged) return same('damaged');
  if (hasMarker(headers)) return same('marked');
  const classification = stubClassification(structure, headers, opts.wantFooter ?? true);
  if (!classification.footer) return same('no footer by policy');
  const targets = chooseTargets(structure, classification);
  if (targets.plain === null && targets.html === null && !targets.wrap) return same(`no target: ${targets.reason}`, { targets });
  const plan = await planRewrite(src, structure, targets, opts.footer ?? TEST_FOOTER, { markerHeader: MARKER_LINE, boundary: TEST_BOUNDARY });
  if (!plan.changed) return same(`nothing placed: ${plan.skipped.join('; ')}`, { targets, plan });
  return { out: await collect(plan.chunks()), changed: true, decision: targets.reason, structure, targets, plan };
}

export const wantsFooter = (name: string): boolean => !NO_FOOTER.has(name);
