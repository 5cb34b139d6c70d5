// Heap tuning for a long-running relay: the entry point imports this module before any other, so it
// applies before the first message. In: process.execArgv (Node does not let NODE_OPTIONS carry these
// flags). Out: two V8 heuristics turned off, each unless the operator named it on node's command line
// (`node --memory-reducer dist/bin/calendar-link-filter.js serve` keeps V8's default). Fails: never.
//
// Both heuristics suit a program whose objects live long; a filter's live mostly for one message.
// - Allocation-site pretenuring: V8 places a site's objects straight in the old generation once
//   nearly all of them survive a young collection. In the filter's first thousands of messages a
//   few per-message sites cross that line for good; from then on every message's short-lived
//   objects land in the old generation, keep the young ones they point to alive, and bring a full
//   mark-compact every few hundred messages instead of every few thousand.
// - The memory reducer: after some seconds of little allocation V8 shrinks the heap with a full
//   collection and drops compiled code. Mail comes in bursts; each burst after a quiet spell then
//   pays for a small heap and a cold compiler again. The heap stays at its working size instead
//   (tens of MiB, README "Memory").
// Measured by bench/relay.ts (README, Benchmarks).

import { setFlagsFromString } from 'node:v8';

const given = process.execArgv.join(' ');
for (const flag of ['allocation-site-pretenuring', 'memory-reducer']) {
  if (!given.includes(flag)) setFlagsFromString(`--no-${flag}`);
}
