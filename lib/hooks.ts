// The hook registry: the pipeline's extension points, in one place.
// In: hook modules ({ name, init(app) }) that register handlers on the names below.
// Out: `call*` helpers that run the handlers in registration order, each under a timeout.
// Fails: an unknown hook name throws at start-up; a handler that throws or overruns its timeout
// rejects the call, and the pipeline turns that into an unchanged pass-through (never a lost message).

import type { CalendarFacts, Classification, Envelope, Footer, LinkResolution, MessageStructure } from './types.js';

/** Hook names, in the order a message meets them. */
export const HOOK_ORDER = ['message:classify', 'message:links', 'message:footer', 'message:relayed'] as const;
export type HookName = (typeof HOOK_ORDER)[number];

/** What a classifier sees: the MIME structure (with decoded calendar/TNEF bodies) and the root headers. */
export interface ClassifyInput {
  structure: MessageStructure;
  /** Root header lines, unfolded, keys lower-case. */
  headers: Array<[string, string]>;
}

export interface LinksInput {
  classification: Classification;
  envelope: Envelope;
  /** Message-ID of the message, without angle brackets, or null. */
  messageId: string | null;
  /** The MIME structure and root headers (the web view's snapshots read them); absent in older callers. */
  structure?: MessageStructure;
  headers?: Array<[string, string]>;
}

export interface FooterInput {
  classification: Classification;
  calendar: CalendarFacts | null;
  link: LinkResolution & { url: string };
}

export interface RelayedInput {
  id: string;
  envelope: Envelope;
  outcome: string;
}

export interface HookHandlers {
  /** Returns a classification, or null when this classifier has nothing to say. */
  'message:classify': (input: ClassifyInput) => Classification | null | Promise<Classification | null>;
  /** Returns one resolution per envelope recipient, in envelope order. */
  'message:links': (input: LinksInput) => LinkResolution[] | Promise<LinkResolution[]>;
  'message:footer': (input: FooterInput) => Footer | Promise<Footer>;
  'message:relayed': (input: RelayedInput) => void | Promise<void>;
}

export interface HookModule {
  name: string;
  init(app: App): void | Promise<void>;
}

/** The object a hook module is given: config, logger and the registry. */
export interface App {
  config: Readonly<Record<string, unknown>>;
  log: (event: string, fields?: Record<string, unknown>) => void;
  hooks: HookRegistry;
}

export class HookTimeoutError extends Error {
  constructor(readonly hook: string, readonly ms: number) {
    super(`hook ${hook} did not answer within ${ms} ms`);
  }
}

export class HookRegistry {
  private readonly handlers = new Map<HookName, Array<{ owner: string; fn: HookHandlers[HookName] }>>();

  constructor(private readonly timeoutMs: number) {}

  on<N extends HookName>(name: N, owner: string, fn: HookHandlers[N]): void {
    if (!(HOOK_ORDER as readonly string[]).includes(name)) {
      throw new Error(`unknown hook name "${name}" (known: ${HOOK_ORDER.join(', ')})`);
    }
    const list = this.handlers.get(name) ?? [];
    list.push({ owner, fn: fn as HookHandlers[HookName] });
    this.handlers.set(name, list);
  }

  has(name: HookName): boolean {
    return (this.handlers.get(name)?.length ?? 0) > 0;
  }

  /** All handlers of `name`, in order, each under the timeout; results in the same order. */
  async all<N extends HookName>(name: N, input: Parameters<HookHandlers[N]>[0]): Promise<Array<Awaited<ReturnType<HookHandlers[N]>>>> {
    const out: Array<Awaited<ReturnType<HookHandlers[N]>>> = [];
    for (const { fn } of this.handlers.get(name) ?? []) {
      out.push(await this.withTimeout(name, () => (fn as (i: unknown) => unknown)(input)) as Awaited<ReturnType<HookHandlers[N]>>);
    }
    return out;
  }

  /** The first handler's result that is not null/undefined. */
  async first<N extends HookName>(name: N, input: Parameters<HookHandlers[N]>[0]): Promise<Awaited<ReturnType<HookHandlers[N]>> | null> {
    for (const { fn } of this.handlers.get(name) ?? []) {
      const r = await this.withTimeout(name, () => (fn as (i: unknown) => unknown)(input));
      if (r !== null && r !== undefined) return r as Awaited<ReturnType<HookHandlers[N]>>;
    }
    return null;
  }

  /**
   * Runs the handler on a fresh microtask. A handler that answers synchronously cannot overrun (no timer
   * fires while it runs, and its answer is taken before any could), so only a pending answer is timed,
   * against the deadline from the call: the timer per call was most of the cost of a synchronous hook.
   */
  private withTimeout<T>(name: string, run: () => T | Promise<T>): Promise<T> {
    const deadline = performance.now() + this.timeoutMs;
    return new Promise<T>((resolve, reject) => {
      queueMicrotask(() => {
        let answer: T | Promise<T>;
        let pending: boolean;
        try {
          answer = run();
          // inside the try: an answer whose `then` throws when read must reject, not crash the process
          pending = isThenable(answer);
        } catch (e) {
          return reject(e);
        }
        if (!pending) return resolve(answer);
        // Not unref'd: while a hook is pending this timer may be all that keeps the process alive (the
        // `filter` command, one message per process); unref'd, node would exit with the message unwritten.
        // It is cleared as soon as the hook answers.
        const timer = setTimeout(() => reject(new HookTimeoutError(name, this.timeoutMs)), Math.max(0, deadline - performance.now()));
        Promise.resolve(answer).then(
          (v) => { clearTimeout(timer); resolve(v); },
          (e) => { clearTimeout(timer); reject(e); },
        );
      });
    });
  }
}

function isThenable<T>(v: T | PromiseLike<T>): v is PromiseLike<T> {
  return v !== null && (typeof v === 'object' || typeof v === 'function') && typeof (v as PromiseLike<T>).then === 'function';
}
