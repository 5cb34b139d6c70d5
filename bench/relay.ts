// Benchmark: messages per second and latency through the filter, against a bare relay ceiling.
// Both relay to the same sink (Postfix's smtp-sink when installed, else a Node null sink), at
// concurrency 1, 10 and 50, in one run; then the filter's peak RSS for a 25 MiB message.
// Usage: npm run build && node --import tsx bench/relay.ts [--messages N] [--rounds R] [--only plain|calendar]
// Prints figures and ratios; not a test (no pass/fail). Every process it starts is stopped.

import type { ChildProcess } from 'node:child_process';
import { freePort, killAll, opt, quantile, ROOT, sendLoad, start, stop, waitPort } from './harness.js';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const MESSAGES = Number(opt('messages', '3000'));
const ONLY = opt('only', '');
const EXTRA = opt('filter-args', '').split(' ').filter(Boolean);

async function startSink(): Promise<{ port: number; child: ChildProcess; kind: string }> {
  const port = await freePort();
  const useSmtpSink = existsSync('/usr/sbin/smtp-sink');
  const child = useSmtpSink
    ? start('/usr/sbin/smtp-sink', ['-u', 'nobody', `127.0.0.1:${port}`, '1024'])
    : start(process.execPath, ['--import', 'tsx', 'bench/null-sink.ts', String(port)]);
  await waitPort(port);
  return { port, child, kind: useSmtpSink ? 'smtp-sink' : 'node null sink' };
}

interface Figures { rate: number; p50: number; p99: number; failed: number }

async function load(port: number, raw: Buffer, total: number, concurrency: number): Promise<Figures> {
  const r = await sendLoad(port, raw, { total, concurrency, from: 'alice@example.org', to: () => 'bob@example.org' });
  const lat = r.lat.sort((a, b) => a - b);
  return { rate: total / r.secs, p50: quantile(lat, 0.5), p99: quantile(lat, 0.99), failed: r.failed };
}

function plainMessage(): Buffer {
  const line = 'The quarterly numbers are attached; nothing here is calendar-related at all.\r\n';
  return Buffer.from(
    'From: Alice <alice@example.org>\r\nTo: Bob <bob@example.org>\r\nSubject: Numbers\r\n' +
      'Message-ID: <bench-plain@example.org>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n' +
      line.repeat(Math.ceil(12000 / line.length)),
  );
}

function calendarMessage(): Buffer | null {
  const path = join(ROOT, 'fixtures/mail/exchange-12k.eml');
  return existsSync(path) ? readFileSync(path) : null;
}

const ROUNDS = Number(opt('rounds', '3'));

/**
 * Both relays run side by side and take turns, ROUNDS times per concurrency; the median of each
 * is reported. On a 2-core machine shared by client, relay and sink, one-shot runs vary by ±20 %.
 */
async function measurePair(sinkPort: number, raw: Buffer) {
  const ports = [await freePort(), await freePort()];
  const procs = [bare(ports[0]!, sinkPort), filter(ports[1]!, sinkPort)];
  await Promise.all(ports.map((p) => waitPort(p)));
  for (const p of ports) await load(p, raw, 300, 10); // warm-up
  const result: Array<Record<number, Figures>> = [{}, {}];
  for (const c of [1, 10, 50]) {
    const runs: Figures[][] = [[], []];
    for (let r = 0; r < ROUNDS; r++) {
      for (const i of [0, 1]) runs[i]!.push(await load(ports[i]!, raw, c === 1 ? Math.ceil(MESSAGES / 3) : MESSAGES, c));
    }
    for (const i of [0, 1]) {
      const sorted = [...runs[i]!].sort((x, y) => x.rate - y.rate);
      result[i]![c] = sorted[Math.floor(sorted.length / 2)]!;
    }
  }
  for (const p of procs) await stop(p);
  return { ceil: { label: 'bare relay (ceiling)', out: result[0]! }, ours: { label: 'calendar-link-filter', out: result[1]! } };
}

const bare = (port: number, hop: number) => start(process.execPath, ['--import', 'tsx', 'bench/bare-relay.ts', String(port), `127.0.0.1:${hop}`]);
const filter = (port: number, hop: number) =>
  start(process.execPath, ['dist/bin/calendar-link-filter.js', 'serve', '--listen', `127.0.0.1:${port}`, '--next-hop', `smtp://127.0.0.1:${hop}`, '--web-server', 'cal.example.org', '--log-level', 'warn', ...EXTRA]);

function row(name: string, f: Figures, base?: Figures): string {
  const ratio = base ? `  ratio ${(f.rate / base.rate).toFixed(2)}` : '';
  return `  ${name.padEnd(34)} ${f.rate.toFixed(0).padStart(6)} msg/s  p50 ${f.p50.toFixed(2).padStart(6)} ms  p99 ${f.p99.toFixed(2).padStart(6)} ms${f.failed ? `  FAILED ${f.failed}` : ''}${ratio}`;
}

async function rss(hopPort: number): Promise<void> {
  const port = await freePort();
  const child = filter(port, hopPort);
  await waitPort(port);
  await load(port, plainMessage(), 50, 1);
  const status = () => readFileSync(`/proc/${child.pid}/status`, 'utf8');
  const kb = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status())?.[1] ?? NaN);
  const idle = kb('VmRSS');
  const big = Buffer.concat([
    Buffer.from('From: a@example.org\r\nTo: b@example.org\r\nSubject: big\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee attachment\r\n--b\r\nContent-Type: application/octet-stream; name="x.bin"\r\nContent-Transfer-Encoding: base64\r\n\r\n'),
    Buffer.from(Buffer.alloc(19 * 1024 * 1024, 7).toString('base64').replace(/.{76}/g, '$&\r\n')),
    Buffer.from('\r\n--b--\r\n'),
  ]);
  const f = await load(port, big, 1, 1);
  const peak = kb('VmHWM');
  console.log(`\npeak RSS, ${(big.length / 1048576).toFixed(1)} MiB message: idle ${(idle / 1024).toFixed(1)} MiB, peak ${(peak / 1024).toFixed(1)} MiB, ` +
    `peak above idle ${((peak - idle) / 1024).toFixed(1)} MiB (target < 100 MiB)${f.failed ? ' FAILED' : ''}`);
  await stop(child);
}

async function main() {
  if (!existsSync(join(ROOT, 'dist/bin/calendar-link-filter.js'))) throw new Error('run `npm run build` first');
  const sink = await startSink();
  console.log(`sink: ${sink.kind}; ${MESSAGES} messages per run (${Math.ceil(MESSAGES / 3)} at concurrency 1), median of ${ROUNDS} alternating runs`);
  const cases: Array<[string, Buffer]> = [['plain 12 KB (classification only)', plainMessage()]];
  const cal = calendarMessage();
  if (cal) cases.push([`calendar ${(cal.length / 1024).toFixed(0)} KB (rewrite path)`, cal]);
  for (const [name, raw] of cases) {
    if (ONLY && !name.startsWith(ONLY)) continue;
    const { ceil, ours } = await measurePair(sink.port, raw);
    console.log(`\n${name}`);
    for (const c of [1, 10, 50]) {
      console.log(` concurrency ${c}`);
      console.log(row(ceil.label, ceil.out[c]!));
      console.log(row(ours.label, ours.out[c]!, ceil.out[c]!));
    }
  }
  if (!ONLY) await rss(sink.port);
  await stop(sink.child);
}

main().catch(async (err) => {
  console.error(err);
  killAll();
  process.exit(1);
});
