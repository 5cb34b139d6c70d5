// Benchmark: what the plan for one calendar message costs in process, stage by stage (cheap scan,
// structure pass, classification, target choice, links, footer, rewrite, output spool), without any
// SMTP around it; and, as the same run's baseline for the calendar stage, the calendar part read by
// the full ical.js parse against the slim parse the pipeline uses (lib/calendar-slim.ts).
// Usage: node --import tsx bench/plan.ts [--messages N] [--rounds R] [--calendar FILE.eml]
// Prints p50 and mean µs per stage (median over rounds) and the read ratio; not a test. Where the
// relay benchmark's calendar figures go: the filter spends about this plan on top of the plain path.

import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { opt, ROOT } from './harness.js';
import { loadConfig } from '../lib/config.js';
import { createApp } from '../lib/app.js';
import { classify } from '../lib/plan.js';
import { Spool, spoolFromBuffer } from '../lib/spool.js';
import { scanBuffer } from '../lib/candidate-scan.js';
import { analyzeMessage } from '../lib/mime-structure.js';
import { chooseTargets, MARKER_HEADER, rewriteChunks } from '../lib/footer-insert.js';
import { readCalendar } from '../lib/calendar-reader.js';
import type { Recipient } from '../lib/types.js';

const MESSAGES = Number(opt('messages', '5000'));
const ROUNDS = Number(opt('rounds', '5'));
const raw = readFileSync(resolve(ROOT, opt('calendar', 'fixtures/mail/exchange-12k.eml')));
const config = loadConfig({ flags: { web_server: 'cal.example.org' } });
const app = await createApp(config, () => undefined);
const to: Recipient[] = [{ address: 'bob@example.org' }];
const envelope = { from: 'alice@example.org', to };

const now = (): number => Number(process.hrtime.bigint()) / 1e3;
type Times = Record<string, number[]>;

/** One message through every stage of lib/plan.ts, each timed on its own. */
async function once(t: Times): Promise<void> {
  let at = now();
  const mark = (stage: string): void => {
    const n = now();
    (t[stage] ??= []).push(n - at);
    at = n;
  };
  scanBuffer(raw);
  mark('scan');
  const spool = spoolFromBuffer(raw);
  const { structure, headers } = await analyzeMessage(spool);
  mark('structure');
  const classification = await classify(app.hooks, structure, headers);
  mark('classify');
  const targets = chooseTargets(structure, classification);
  mark('targets');
  const links = await app.hooks.first('message:links', { classification, envelope, messageId: 'm1@example.org', structure, headers });
  mark('links');
  const link = links?.[0];
  if (!link?.url) throw new Error(`no link for the benchmark message (${link?.source ?? 'no resolution'})`);
  const footer = await app.hooks.first('message:footer', { classification, calendar: classification.calendar, link: { ...link, url: link.url } });
  mark('footer');
  const bytes = await rewriteChunks(spool, structure, targets, footer!, { markerHeader: `${MARKER_HEADER}: added` });
  mark('rewrite');
  const out = new Spool({ memoryLimit: config.spool_memory_limit });
  if (Array.isArray(bytes)) for (const c of bytes) await out.write(c);
  else for await (const c of bytes) await out.write(c);
  await out.finish();
  await out.dispose();
  mark('output spool');
}

const median = (v: number[]): number => [...v].sort((a, b) => a - b)[v.length >> 1]!;

for (let i = 0; i < Math.min(MESSAGES, 3000); i++) await once({}); // warm-up: V8 compiles the plan first
const rounds: Array<Record<string, { p50: number; mean: number }>> = [];
for (let r = 0; r < ROUNDS; r++) {
  const t: Times = {};
  for (let i = 0; i < MESSAGES; i++) await once(t);
  rounds.push(Object.fromEntries(Object.entries(t).map(([k, v]) => [k, { p50: median(v), mean: v.reduce((a, b) => a + b, 0) / v.length }])));
}

console.log(`plan stages for ${opt('calendar', 'fixtures/mail/exchange-12k.eml')}: ${MESSAGES} messages, median of ${ROUNDS} rounds (µs)`);
let total = 0;
for (const stage of Object.keys(rounds[0]!)) {
  const p50 = median(rounds.map((r) => r[stage]!.p50));
  const mean = median(rounds.map((r) => r[stage]!.mean));
  total += mean;
  console.log(`  ${stage.padEnd(14)} p50 ${p50.toFixed(1).padStart(7)}  mean ${mean.toFixed(1).padStart(7)}`);
}
console.log(`  ${'sum of means'.padEnd(14)}                ${total.toFixed(1).padStart(7)}`);

// The calendar stage's baseline: the same part, every line through ical.js, alternating with the slim read.
const { structure } = await analyzeMessage(spoolFromBuffer(raw));
const cal = structure.parts.find((p) => p.decoded && (p.contentType === 'text/calendar' || p.contentType === 'application/ics'));
if (cal) {
  const read = (slim: boolean): number => {
    const t0 = now();
    for (let i = 0; i < MESSAGES; i++) readCalendar(cal.decoded!, cal.params.method ?? null, cal.charset, { slim });
    return (now() - t0) / MESSAGES;
  };
  const slim: number[] = [];
  const full: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    full.push(read(false));
    slim.push(read(true));
  }
  const [s, f] = [median(slim), median(full)];
  console.log(`calendar part read: full parse ${f.toFixed(1)} µs, slim parse ${s.toFixed(1)} µs, ratio ${(s / f).toFixed(2)}`);
}
process.exit(0);
