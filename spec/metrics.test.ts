// The status listener: /metrics counts what went through, /healthz says whether mail can flow.
// The CLI filter runs as a child with --http; a sink is its next hop; a real redis-server backs the
// override store in the Redis case. Every count asserted is one this file sent.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { spawnSync } from 'node:child_process';
import { loadConfig } from '../lib/config.js';
import { startServe, type Served } from '../lib/serve.js';
import { freePort, startFilter, type FilterProcess } from './helpers/filter-process.js';
import { startRedis, type RedisServer } from './helpers/redis.js';
import { startSink, type Sink } from './helpers/sink.js';
import { transact } from './helpers/smtp-dialog.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const MEETING = readFileSync(new URL('../fixtures/mail/thunderbird.eml', import.meta.url));
const plain = (n: number) => Buffer.from(`From: a@example.org\r\nTo: b@example.org\r\nSubject: plain ${n}\r\nMessage-ID: <p${n}@example.org>\r\n\r\nHello ${n}\r\n`);

/** `name{labels} value` lines of a Prometheus text exposition → value by "name{labels}". */
function parseMetrics(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}

async function get(port: number, path: string, method = 'GET'): Promise<{ status: number; type: string; body: string }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, { method, signal: AbortSignal.timeout(10_000) });
  return { status: res.status, type: res.headers.get('content-type') ?? '', body: await res.text() };
}

describe('CLI filter with --http: /metrics and /healthz', () => {
  let sink: Sink;
  let filter: FilterProcess;
  let http: number;
  before(async () => {
    sink = await startSink({ behaviour: (q) => (q.phase === 'data' && q.envelope.to.some((r) => r.address === 'refuse@example.org') ? 550 : undefined) });
    const [smtp, h] = [await freePort(), await freePort()];
    http = h;
    filter = await startFilter([
      'serve', '--listen', `127.0.0.1:${smtp}`, '--next-hop', `smtp://127.0.0.1:${sink.port}`, '--http', `127.0.0.1:${http}`,
      '--web-server', 'cal.example.org', '--max-message-size', '65536', '--connect-timeout', '2', '--next-hop-timeout', '5', '--next-hop-idle-time', '60',
    ]);
  });
  after(async () => {
    await filter?.stop();
    await sink?.close();
  });

  test('counts by kind and outcome, footers, relay latency; /healthz 200', async () => {
    for (const n of [1, 2]) assert.match((await transact(filter.port, { from: 'a@example.org', to: ['b@example.org'], data: plain(n) })).final[0]!, /^250 /);
    assert.match((await transact(filter.port, { from: 'alice@example.org', to: ['bob@example.org', 'carol@example.org'], data: MEETING })).final[0]!, /^250 /);
    assert.match((await transact(filter.port, { from: 'a@example.org', to: ['refuse@example.org'], data: plain(3) })).final[0]!, /^550 /);
    const big = Buffer.concat([Buffer.from('Subject: big\r\n\r\n'), Buffer.alloc(100_000, 'x\r\n')]);
    assert.match((await transact(filter.port, { from: 'a@example.org', to: ['b@example.org'], data: big })).final[0]!, /^552 /);
    assert.equal(sink.messages.length, 4, 'the sink saw the two plain messages, the meeting and the refused one');
    assert.match(sink.messages[2]!.raw.toString('latin1'), /cal\.example\.org/, 'the meeting got its footer');

    const res = await get(http, '/metrics');
    assert.equal(res.status, 200);
    assert.match(res.type, /^text\/plain; version=0\.0\.4/);
    const m = parseMetrics(res.body);
    assert.equal(m.get('calfilter_messages_total{kind="none",outcome="relayed"}'), 2);
    assert.equal(m.get('calfilter_messages_total{kind="meeting",outcome="relayed"}'), 1);
    assert.equal(m.get('calfilter_messages_total{kind="none",outcome="rejected"}'), 1);
    assert.equal(m.get('calfilter_messages_total{kind="unknown",outcome="rejected"}'), 1, 'the oversized message, refused by the listener');
    assert.equal(m.get('calfilter_footers_added_total'), 1, 'one rewritten copy, shared by bob and carol');
    assert.equal(m.get('calfilter_groups_split_total'), 0);
    assert.equal(m.get('calfilter_dry_run_footers_total'), 0);
    // one next-hop connection carried all four: the first message opened it, the others reused it
    assert.equal(m.get('calfilter_relay_duration_seconds_count{result="2xx",session="new"}'), 1);
    assert.equal(m.get('calfilter_relay_duration_seconds_count{result="2xx",session="reused"}'), 2);
    assert.equal(m.get('calfilter_relay_duration_seconds_count{result="5xx",session="reused"}'), 1);
    assert.equal(m.get('calfilter_message_duration_seconds_count'), 4);
    assert.equal(m.get('calfilter_transactions_in_flight'), 0);
    assert.ok((m.get('calfilter_connections') ?? -1) >= 0);
    assert.equal(m.get('calfilter_redis_lookup_failures_total'), 0, 'no Redis configured: nothing failed');
    assert.ok(m.has('process_resident_memory_bytes'), 'process metrics in the same registry');

    const h = await get(http, '/healthz');
    assert.equal(h.status, 200, h.body);
    assert.match(h.type, /^application\/json/);
    const body = JSON.parse(h.body) as { status: string; failed: string[]; checks: Record<string, { ok: boolean; target: string }> };
    assert.equal(body.status, 'ok');
    assert.deepEqual(body.failed, []);
    assert.deepEqual(Object.keys(body.checks), ['next_hop'], 'no Redis configured: no Redis check');
    assert.equal(body.checks.next_hop!.target, `smtp://127.0.0.1:${sink.port}`);
    assert.equal((await get(http, '/nothing')).status, 404);
    assert.equal((await get(http, '/metrics', 'POST')).status, 405);
  });

  test('a connection open now shows in calfilter_connections', async () => {
    const { openDialog } = await import('./helpers/smtp-dialog.js');
    const d = await openDialog(filter.port);
    try {
      await d.read();
      const m = parseMetrics((await get(http, '/metrics')).body);
      assert.equal(m.get('calfilter_connections'), 1);
    } finally {
      d.close();
    }
  });

  test('/healthz: next hop gone → 503 naming it, and one health.changed log line', async () => {
    await sink.close();
    const h = await get(http, '/healthz');
    assert.equal(h.status, 503);
    const body = JSON.parse(h.body) as { status: string; failed: string[]; checks: Record<string, { ok: boolean; target: string; error?: string }> };
    assert.equal(body.status, 'fail');
    assert.deepEqual(body.failed, ['next_hop']);
    assert.equal(body.checks.next_hop!.ok, false);
    assert.match(body.checks.next_hop!.error!, /ECONNREFUSED/);
    assert.equal((await get(http, '/healthz')).status, 503);
    const changes = filter.stdoutLines().map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.event === 'health.changed');
    assert.deepEqual(changes.map((c) => [c.status, c.level]), [['ok', 'info'], ['fail', 'warn']]);
  });
});

describe('Redis: lookup latency and failures, /healthz names Redis', () => {
  let redis: RedisServer;
  let sink: Sink;
  let served: Served;
  let http: number;
  const logs: Array<Record<string, unknown>> = [];
  before(async () => {
    redis = await startRedis();
    sink = await startSink();
    const config = loadConfig({ flags: {
      listen: '127.0.0.1:0', next_hop: `smtp://127.0.0.1:${sink.port}`, http: '127.0.0.1:0', redis: redis.url,
      web_server: 'cal.example.org', override_cache_ttl_ms: '0', redis_timeout_ms: '200',
    } });
    served = await startServe(config, (event, fields = {}) => { logs.push({ event, ...fields }); });
    http = served.http!.port;
  });
  after(async () => {
    await served?.listener.close();
    const { closeApp } = await import('../lib/app.js');
    if (served) await closeApp(served.app);
    await sink?.close();
    await redis?.stop();
  });

  test('lookups are timed; a dead Redis counts failures and fails /healthz with "redis"', async () => {
    const ok = await get(http, '/healthz');
    assert.equal(ok.status, 200, ok.body);
    assert.deepEqual(Object.keys((JSON.parse(ok.body) as { checks: object }).checks), ['next_hop', 'redis']);

    assert.match((await transact(served.listener.port, { from: 'alice@example.org', to: ['bob@example.org'], data: MEETING })).final[0]!, /^250 /);
    let m = parseMetrics((await get(http, '/metrics')).body);
    // bob@example.org, then @example.org: two keys, two lookups, both answered
    assert.equal(m.get('calfilter_redis_lookup_duration_seconds_count'), 2);
    assert.equal(m.get('calfilter_redis_lookup_failures_total'), 0);

    await redis.stop();
    const down = await get(http, '/healthz');
    assert.equal(down.status, 503);
    const body = JSON.parse(down.body) as { failed: string[]; checks: Record<string, { target: string }> };
    assert.deepEqual(body.failed, ['redis']);
    assert.equal(body.checks.redis!.target, redis.url);

    // redis_fallback=site: the message still goes out with the site link
    assert.match((await transact(served.listener.port, { from: 'alice@example.org', to: ['bob@example.org'], data: MEETING })).final[0]!, /^250 /);
    m = parseMetrics((await get(http, '/metrics')).body);
    assert.ok((m.get('calfilter_redis_lookup_failures_total') ?? 0) >= 1, 'the failed lookup is counted');
    assert.ok((m.get('calfilter_redis_lookup_duration_seconds_count') ?? 0) >= 3);
    assert.equal(m.get('calfilter_messages_total{kind="meeting",outcome="relayed"}'), 2);
  });
});

describe('exposure rules', () => {
  const run = (args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', 'bin/calendar-link-filter.ts', ...args], { cwd: ROOT, timeout: 30_000 });

  test('--http on a non-loopback address without http_allow_remote → exit 78 naming the setting', () => {
    const r = run(['serve', '--listen', '127.0.0.1:1', '--http', '0.0.0.0:1']);
    assert.equal(r.status, 78, r.stderr.toString());
    assert.match(r.stderr.toString(), /http 0\.0\.0\.0:1 is not a loopback address.*http_allow_remote/);
  });

  test('--listen 0.0.0.0 with the default loopback-only allowed_clients → exit 78 before binding', () => {
    const r = run(['serve', '--listen', '0.0.0.0:1']);
    assert.equal(r.status, 78, r.stderr.toString());
    assert.match(r.stderr.toString(), /admits only loopback clients.*allowed_clients/);
  });
});
