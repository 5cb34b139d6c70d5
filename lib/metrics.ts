// Metrics: counters and histograms of what the filter did, in Prometheus text format.
// In: pipeline observations (outcome of each message, each relay to the next hop), Redis lookup
// timings from the override cache, and live gauges read from the listener when scraped.
// Out: one per-instance Registry (never prom-client's global one, so several filters can share a
// process); `text()` for /metrics. The ONLY module that imports prom-client.
// Fails: never throws into the mail path; an unknown observation is ignored.

import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/** Seconds; relays to a local Postfix take milliseconds, a slow mailbox store seconds. */
const RELAY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];
/** Seconds; a lookup is bounded by redis_timeout_ms (50 ms by default). */
const REDIS_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5];

/** What the metrics read from the listener at scrape time. */
export interface LiveGauges {
  connections(): number;
  inFlight(): number;
}

export interface Metrics {
  /** The pipeline's observer (PipelineDeps.observe). */
  observe(event: string, fields: Record<string, unknown>): void;
  /** Outcomes the listener decides before the pipeline runs (size refusal, spool failure). */
  listenerOutcome(outcome: 'rejected' | 'error'): void;
  /** One override lookup that went to Redis: how long it took and whether Redis answered. */
  redisLookup(ms: number, ok: boolean): void;
  /** Where the gauges read from; set once the listener is up. */
  bind(live: LiveGauges): void;
  /** Prometheus text exposition of every metric. */
  text(): Promise<string>;
  readonly contentType: string;
}

/** The metric names, for the README and the tests. */
export const METRIC_NAMES = {
  messages: 'calfilter_messages_total',
  footers: 'calfilter_footers_added_total',
  wouldFooter: 'calfilter_dry_run_footers_total',
  splits: 'calfilter_groups_split_total',
  relay: 'calfilter_relay_duration_seconds',
  message: 'calfilter_message_duration_seconds',
  redis: 'calfilter_redis_lookup_duration_seconds',
  redisFailures: 'calfilter_redis_lookup_failures_total',
  connections: 'calfilter_connections',
  inFlight: 'calfilter_transactions_in_flight',
} as const;

const OUTCOMES: Record<string, string> = { 'message.relayed': 'relayed', 'message.deferred': 'deferred', 'message.rejected': 'rejected' };

export function createMetrics(): Metrics {
  const registry = new Registry();
  let live: LiveGauges = { connections: () => 0, inFlight: () => 0 };
  const messages = new Counter({
    name: METRIC_NAMES.messages,
    help: 'Messages by kind (meeting, custom-form, none; unknown when refused before classification) and outcome (relayed, deferred, rejected, error)',
    labelNames: ['kind', 'outcome'] as const,
    registers: [registry],
  });
  const footers = new Counter({
    name: METRIC_NAMES.footers,
    help: 'Rewritten copies (one per distinct link) in messages the next hop accepted for every recipient',
    registers: [registry],
  });
  const wouldFooter = new Counter({
    name: METRIC_NAMES.wouldFooter,
    help: 'Dry run: rewritten copies that would have been relayed (the original went instead)',
    registers: [registry],
  });
  const splits = new Counter({
    name: METRIC_NAMES.splits,
    help: 'Messages whose recipients were relayed as more than one body (different links, or some without a footer)',
    registers: [registry],
  });
  const relay = new Histogram({
    name: METRIC_NAMES.relay,
    help: 'One transaction with the next hop, from asking for a session to the reply to the final dot, by reply class (2xx, 4xx, 5xx) and session (new connection or reused)',
    labelNames: ['result', 'session'] as const,
    buckets: RELAY_BUCKETS,
    registers: [registry],
  });
  const message = new Histogram({
    name: METRIC_NAMES.message,
    help: 'End of DATA to the reply the MTA hears: classify, rewrite and every relay of one message',
    buckets: RELAY_BUCKETS,
    registers: [registry],
  });
  const redis = new Histogram({
    name: METRIC_NAMES.redis,
    help: 'Override lookups that went to Redis (cache misses), answered or failed',
    buckets: REDIS_BUCKETS,
    registers: [registry],
  });
  const redisFailures = new Counter({
    name: METRIC_NAMES.redisFailures,
    help: 'Override lookups Redis did not answer in time (down, paused, too slow)',
    registers: [registry],
  });
  new Gauge({
    name: METRIC_NAMES.connections,
    help: 'Client (MTA) connections open now',
    registers: [registry],
    collect() { this.set(live.connections()); },
  });
  new Gauge({
    name: METRIC_NAMES.inFlight,
    help: 'Transactions between the end of DATA and the reply, now',
    registers: [registry],
    collect() { this.set(live.inFlight()); },
  });
  // process_* and nodejs_* (memory, CPU, event loop lag, file descriptors), into this registry only.
  collectDefaultMetrics({ register: registry });

  return {
    contentType: registry.contentType,
    bind(l) { live = l; },
    text: () => registry.metrics(),
    listenerOutcome(outcome) { messages.inc({ kind: 'unknown', outcome }); },
    redisLookup(ms, ok) {
      redis.observe(ms / 1000);
      if (!ok) redisFailures.inc();
    },
    observe(event, f) {
      const num = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : 0);
      if (event === 'relay') {
        const code = num(f.code);
        relay.observe({ result: code >= 200 && code < 600 ? `${Math.floor(code / 100)}xx` : 'other', session: f.reused === true ? 'reused' : 'new' }, num(f.ms) / 1000);
        return;
      }
      const outcome = OUTCOMES[event];
      if (!outcome) return;
      messages.inc({ kind: typeof f.kind === 'string' ? f.kind : 'none', outcome });
      message.observe(num(f.ms) / 1000);
      const bodies = num(f.footers);
      if (f.dry_run === true) {
        if (bodies) wouldFooter.inc(bodies);
        return;
      }
      if (bodies && outcome === 'relayed') footers.inc(bodies);
      if (num(f.groups) > 1) splits.inc();
    },
  };
}
