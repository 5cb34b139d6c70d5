// What a token opens: the snapshot, the event's state, the current version, and the facts a page and an
// RSVP need (cancelled, newer version, over, who the recipient is).
// In: a verified token's claims and the snapshot store. Out: a View, or null when the snapshot is gone (410).
// Fails: store trouble rejects with StoreUnavailableError (the server answers 503); a stored calendar that
// does not inflate or parse gives event = null and the page shows the stored facts only.

import { gunzipSync } from 'node:zlib';
import { readEvent, type EventDetails } from '../calendar-event.js';
import type { Fields, SnapshotStore } from '../snapshot-store.js';
import { openAddress, type ViewClaims } from '../snapshot-token.js';
import type { WebSettings } from '../snapshot-config.js';

export interface Version {
  rid: string;
  snap: Fields;
  ical: string | null;
  event: EventDetails | null;
}

export interface View extends Version {
  r: string;
  evkey: string;
  state: Fields;
  /** The newest version of the same event (same slot: master or this instance); this one when current. */
  current: Version;
  isCurrent: boolean;
  cancelled: 'whole' | 'instance' | 'future' | null;
  /** RECURRENCE-IDs of cancelled single occurrences (shown with the series). */
  cancelledInstances: string[];
  over: boolean;
  recipient: string | null;
}

function inflate(f: Fields): string | null {
  if (!f.ical) return null;
  try { return gunzipSync(Buffer.from(f.ical, 'base64')).toString('utf8'); } catch { return null; }
}

export function version(rid: string, snap: Fields): Version {
  const ical = inflate(snap);
  return { rid, snap, ical, event: ical ? readEvent(ical) : null };
}

export async function loadView(store: SnapshotStore, s: WebSettings, c: ViewClaims, now = Date.now()): Promise<View | null> {
  const snap = await store.snapshot(c.r, c.rid);
  if (!snap) return null;
  const evkey = snap.evkey ?? '';
  const state = (evkey ? await store.event(c.r, evkey) : null) ?? {};
  const me = version(c.rid, snap);
  const slot = snap.recur ? `x:${snap.recur}` : 'cur';
  const curRid = state[slot];
  let current = me;
  if (curRid && curRid !== c.rid) {
    const cs = await store.snapshot(c.r, curRid);
    if (cs) current = version(curRid, cs);
  }
  const whole = state['cur:cancelled'];
  const inst = snap.recur ? state[`${slot}:cancelled`] : undefined;
  const selfCancel = current.snap.meth === 'CANCEL' || current.event?.status === 'CANCELLED';
  const cancelled = whole ? (whole === 'THISANDFUTURE' ? 'future' : 'whole') : inst ? 'instance' : selfCancel ? (snap.recur ? 'instance' : 'whole') : null;
  const cancelledInstances = Object.keys(state).filter((k) => /^x:.+:cancelled$/.test(k)).map((k) => k.slice(2, -':cancelled'.length));
  const last = Number(current.snap.last || me.snap.last || NaN);
  return {
    ...me, r: c.r, evkey, state, current, isCurrent: current.rid === c.rid, cancelled, cancelledInstances,
    over: Number.isFinite(last) && last > 0 && last < now,
    recipient: openAddress(s.rcptKey, snap.rcpt),
  };
}
