// Benchmark: the cheap scan (lib/candidate-scan.ts) against the baseline it replaced, one
// case-insensitive regex pass over every byte, on the same messages in the same run: a 12 KB
// single-part note, the 12 KB Exchange invite, and a 26 MiB message with a base64 attachment.
// Usage: node --import tsx bench/scan.ts [--rounds R]
// Prints µs per message for both and the ratio; not a test. Messages are fed in 64 KiB chunks, as
// smtp-server hands them over.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createScanner } from '../lib/candidate-scan.js';
import { opt, plainMessage, ROOT } from './harness.js';

const ROUNDS = Number(opt('rounds', '5'));
const CHUNK = 64 * 1024;
const WORDS = /text\/calendar|application\/ics|\.ics\b|ms-tnef|winmail\.dat|content-class/i;

function chunks(buf: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < buf.length; i += CHUNK) out.push(buf.subarray(i, i + CHUNK));
  return out;
}

/** The baseline: every byte through the regex, a short tail carried over chunk edges. */
function everyByte(parts: Buffer[]): boolean {
  let tail = '';
  for (const p of parts) {
    const text = tail + p.toString('latin1');
    if (WORDS.test(text)) return true;
    tail = text.slice(-24);
  }
  return false;
}

function headerBlocks(parts: Buffer[]): boolean {
  const s = createScanner();
  for (const p of parts) s.push(p);
  return s.result().candidate;
}

const messages: Array<[string, Buffer, number]> = [
  ['plain 12 KB, single part', plainMessage(), 5000],
  ['Exchange invite 12 KB', readFileSync(join(ROOT, 'fixtures/mail/exchange-12k.eml')), 5000],
  [
    '26 MiB, base64 attachment',
    Buffer.from(
      'From: a@example.org\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee attachment\r\n' +
        '--b\r\nContent-Type: application/octet-stream; name="x.bin"\r\nContent-Transfer-Encoding: base64\r\n\r\n' +
        Buffer.alloc(19 * 1024 * 1024, 7).toString('base64').replace(/.{76}/g, '$&\r\n') +
        '\r\n--b--\r\n',
    ),
    5,
  ],
];

function time(fn: (p: Buffer[]) => boolean, parts: Buffer[], reps: number): { us: number; candidate: boolean } {
  let candidate = false;
  for (let i = 0; i < Math.min(reps, 50); i++) candidate = fn(parts);
  const runs: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < reps; i++) candidate = fn(parts);
    runs.push(Number(process.hrtime.bigint() - t0) / 1e3 / reps);
  }
  return { us: runs.sort((a, b) => a - b)[Math.floor(runs.length / 2)]!, candidate };
}

console.log(`median of ${ROUNDS} rounds, ${CHUNK / 1024} KiB chunks`);
for (const [name, buf, reps] of messages) {
  const parts = chunks(buf);
  const base = time(everyByte, parts, reps);
  const ours = time(headerBlocks, parts, reps);
  console.log(`  ${name.padEnd(28)} every byte ${base.us.toFixed(1).padStart(9)} µs (${base.candidate ? 'candidate' : 'pass'})   header blocks ${ours.us.toFixed(1).padStart(9)} µs (${ours.candidate ? 'candidate' : 'pass'})   ratio ${(ours.us / base.us).toFixed(2)}`);
}
