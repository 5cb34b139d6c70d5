// Filter side of the built-in web view: for each recipient whose link is the site default, store a
// snapshot of what they received and give them a link to it (web_base_url/m/<token>).
// In: the message's classification, MIME structure and root headers, and link-resolve's decisions.
// Out: the same decisions, with url = the view link and source "web-view" where a snapshot was stored.
// Fails: never throws and never delays mail beyond web_store_timeout_ms: when the store is down, slow
// or full (OOM), those recipients keep the link link-resolve chose (web_server, or none) and the log
// says `webview.store_failed` once per message. Dry runs store nothing.

import { gzipSync } from 'node:zlib';
import type { LinksInput } from './hooks.js';
import type { LogFn } from './log.js';
import type { LinkResolution, MessageStructure } from './types.js';
import { readEvent, sameAddress, sortMs, stripForStorage, type EventDetails } from './calendar-event.js';
import { decodeEncodedWords } from './mime-params.js';
import { eventKey, mintViewToken, newSnapshotId, recipientTag, sealAddress } from './snapshot-token.js';
import { openSnapshotStore, type SnapshotStore } from './snapshot-store.js';
import type { WebSettings } from './snapshot-config.js';

/** Calendar parts larger than this keep the facts only ("too large to show"). */
export const MAX_STORED_CALENDAR = 256 * 1024;
const DAY_S = 86_400;
/** Longest UID or Message-ID copied into a snapshot (one header line); longer ones are left out ('' = unknown). */
const MAX_STORED_ID = 998;
const storedId = (v: string): string => (v.length <= MAX_STORED_ID ? v : '');

export interface MessageFacts {
  kind: string;
  method: string;
  event: EventDetails | null;
  /** Stored calendar text (stripped), or null. */
  ical: string | null;
  subject: string;
  fromName: string;
  date: string;
  messageId: string;
  tnef: string;
}

function header(headers: Array<[string, string]> | undefined, name: string): string {
  return headers?.find(([k]) => k === name)?.[1] ?? '';
}

function displayName(from: string): string {
  const m = /^\s*"?([^"<]*?)"?\s*<[^>]*>\s*$/.exec(from);
  const name = m?.[1]?.trim() || from.replace(/<[^>]*>/, '').trim() || from.trim();
  return name.slice(0, 200);
}

/** What the snapshot says about the message, computed once for every recipient. */
export function messageFacts(input: LinksInput, structure?: MessageStructure, headers?: Array<[string, string]>): MessageFacts {
  const c = input.classification;
  const part = c.calendarPart !== null ? structure?.parts[c.calendarPart] : undefined;
  let ical: string | null = null;
  let event: EventDetails | null = null;
  if (part?.decoded && part.contentType !== 'application/ms-tnef' && !part.truncated && part.decoded.length <= MAX_STORED_CALENDAR) {
    let text: string;
    try { text = new TextDecoder(part.charset && !/^utf-?8$/i.test(part.charset) ? part.charset : 'utf-8').decode(part.decoded); } catch { text = part.decoded.toString('utf8'); }
    event = readEvent(text);
    if (event) ical = stripForStorage(text);
  }
  const method = (c.method ?? event?.method ?? '').toUpperCase();
  const seq = event?.sequence ?? c.calendar?.sequence ?? 0;
  const kind = c.kind === 'custom-form' ? 'custom'
    : method === 'REQUEST' ? (seq > 0 ? 'update' : 'request')
    : method ? method.toLowerCase()
    : c.tnefClass ? 'tnef' : 'unknown';
  return {
    kind, method, event, ical,
    subject: decodeEncodedWords(header(headers, 'subject')).slice(0, 998),
    fromName: displayName(decodeEncodedWords(header(headers, 'from'))),
    date: header(headers, 'date').slice(0, 100),
    messageId: input.messageId ?? '',
    tnef: c.tnefClass ?? '',
  };
}

/** expireAt = min(max(lastEnd, received) + grace, received + cap); an endless series gets the cap. */
export function expiry(lastEndMs: number | null, receivedMs: number, graceDays: number, capDays: number): { expireAt: number; lastEnd: number } {
  const received = Math.floor(receivedMs / 1000);
  const cap = received + capDays * DAY_S;
  if (lastEndMs === null) return { expireAt: cap, lastEnd: cap };
  const last = Math.floor(lastEndMs / 1000);
  return { expireAt: Math.min(Math.max(last, received) + graceDays * DAY_S, cap), lastEnd: last };
}

/**
 * End of the last occurrence as the store uses it (TTL, agenda, "over"): a DTEND (or DURATION) before
 * DTSTART would otherwise end every occurrence before it starts — years before, when it is badly wrong —
 * and expire a future meeting's link (and call it over) before it takes place. Unknown → null (the cap).
 */
export function lastEndOf(ev: EventDetails | null): number | null {
  if (!ev || ev.lastEnd === null || !Number.isFinite(ev.lastEnd)) return null;
  const back = ev.start && ev.end ? sortMs(ev.start) - sortMs(ev.end) : 0;
  return Number.isFinite(back) && back > 0 ? ev.lastEnd + back : ev.lastEnd;
}

/** The organizer as the store compares it: the address without mailto:, lower case ('' when none). */
function organizerKey(address: string | undefined): string {
  return (address ?? '').trim().replace(/^mailto:/i, '').toLowerCase();
}

export class WebViewLinks {
  readonly store: SnapshotStore;
  constructor(private readonly s: WebSettings, private readonly log: LogFn, private readonly dryRun: boolean, store?: SnapshotStore) {
    this.store = store ?? openSnapshotStore(s.redis, s.keyPrefix, s.storeTimeoutMs);
  }

  /** Decisions with the built-in view link for every "site"/"fallback" recipient whose snapshot was stored. */
  async apply(input: LinksInput, decisions: LinkResolution[], now = Date.now()): Promise<LinkResolution[]> {
    if (this.dryRun) return decisions;
    const wanted = decisions.map((d, i) => (d.source === 'site' || d.source === 'fallback' ? i : -1)).filter((i) => i >= 0);
    if (wanted.length === 0) return decisions;
    let facts: MessageFacts;
    try {
      facts = messageFacts(input, input.structure, input.headers);
    } catch (err) {
      this.log('webview.store_failed', { reason: `message facts: ${(err as Error).message}` });
      return decisions;
    }
    const ev = facts.event;
    const last = lastEndOf(ev);
    const { expireAt, lastEnd } = expiry(last, now, this.s.graceDays, this.s.capDays);
    // The same for every recipient: compressed once, before the budget (up to ~10 ms for MAX_STORED_CALENDAR).
    const ical = facts.ical ? gzipSync(facts.ical).toString('base64') : null;
    // The budget covers storing (Redis round trips), not parsing: that is CPU bounded by MAX_STORED_CALENDAR.
    const deadline = Date.now() + this.s.storeTimeoutMs;
    const out = decisions.slice();
    const errors: string[] = [];
    await Promise.all(wanted.map(async (i) => {
      const d = decisions[i]!;
      const rcpt = d.recipient.trim().replace(/^<(.*)>$/, '$1');
      if (!rcpt) return;
      try {
        const r = recipientTag(this.s.rcptKey, rcpt);
        const rid = newSnapshotId();
        const uid = ev?.uid ?? input.classification.calendar?.uid ?? null;
        const evkey = eventKey(uid ?? `msg:${facts.messageId || rid}`);
        const att = ev?.attendees.find((a) => sameAddress(a.value, rcpt))?.value ?? '';
        const fields: Record<string, string> = {
          v: '1', kind: facts.kind, meth: facts.method, uid: storedId(uid ?? ''), recur: ev?.recurrenceId ?? '',
          seq: String(ev?.sequence ?? 0), stamp: ev?.stamp ?? '', subj: facts.subject, fromName: facts.fromName,
          date: facts.date, msgid: storedId(facts.messageId), att, rcpt: sealAddress(this.s.rcptKey, rcpt), tnef: facts.tnef,
          first: String(ev?.firstStart ?? ''), last: String(last ?? ''), evkey, at: String(now), exp: String(expireAt),
        };
        if (ical !== null) fields.ical = ical;
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`no time left within ${this.s.storeTimeoutMs} ms`);
        await this.store.ingest({
          r, rid, evkey, recur: ev?.recurrenceId ?? '', seq: ev?.sequence ?? 0, stamp: ev?.stamp ?? '', method: facts.method,
          range: ev?.thisAndFuture ? 'THISANDFUTURE' : '', org: organizerKey(ev?.organizer?.address), expireAt, lastEnd, maxEvents: this.s.maxEvents,
          pruneBefore: Math.floor(now / 1000) - this.s.graceDays * DAY_S, fields,
        }, left);
        const token = mintViewToken(this.s.tokenKeys, this.s.tokenKid, r, rid);
        out[i] = { ...d, url: `${this.s.baseUrl}/m/${token}`, source: 'web-view', server: this.s.baseUrl };
      } catch (err) {
        errors.push((err as Error).message);
      }
    }));
    if (errors.length) this.log('webview.store_failed', { recipients: errors.length, reason: errors[0], note: 'those recipients keep the site link (or none)' });
    return out;
  }

  async close(): Promise<void> {
    await this.store.close();
  }
}
