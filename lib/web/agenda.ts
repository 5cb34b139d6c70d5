// The recipient's calendar: sign-in by a one-time link mailed to the address an invitation reached,
// sessions, and the agenda of the invitations stored for that address (current versions, cancellations
// applied, recurrences expanded with a cap, overlaps marked).
// In: a View (sign-in request), an otp, a session cookie, or an address (proxy/link mode). Out: a session
// id, an address, or the agenda page. Fails: store trouble rejects (503 by the server); a used or expired
// otp answers null; a stored event that does not parse is listed by its subject only, never an error.

import { occurrences, type Occurrence } from '../calendar-event.js';
import type { SnapshotStore } from '../snapshot-store.js';
import type { WebSettings } from '../snapshot-config.js';
import { mintViewToken, newSecret, openAddress, recipientTag, sealAddress, secretHash, verifyFormToken } from '../snapshot-token.js';
import { agendaPage, type AgendaItem, type PageCtx } from './pages.js';
import type { SafeHtml } from './html.js';
import type { View } from './load.js';
import { version } from './load.js';
import type { RateLimiter } from './rate-limit.js';
import { composeSignIn, submit } from './reply-mail.js';

const OTP_TTL_S = 15 * 60;
const SESSION_TTL_S = 30 * 86_400;
const DAY = 86_400_000;
const MAX_SERIES = 500;

export function cookieName(s: WebSettings): string {
  // __Host- needs Secure, which a browser only keeps on https.
  return s.baseUrl.startsWith('https:') ? '__Host-clf' : 'clf';
}

function cookieValue(header: string | undefined, name: string): string | null {
  const m = new RegExp(`(?:^|;\\s*)${name.replace(/[-_]/g, '\\$&')}=([A-Za-z0-9_-]{43})(?:;|$)`).exec(header ?? '');
  return m?.[1] ?? null;
}

interface Deps { settings: WebSettings; store: SnapshotStore }

export async function requestSignIn(v: View, f: string | undefined, d: Deps & { formKey: Buffer; limits: RateLimiter; ip: string; now: number }): Promise<{ kind: 'sent' | 'limited' | 'bad-form' | 'failed' }> {
  if (!verifyFormToken(d.formKey, f, v.rid, 'signin', 0, d.now)) return { kind: 'bad-form' };
  const to = v.recipient as string;
  if (!d.limits.hit('signin-rcpt', v.r, 3, 3600_000) || !d.limits.hit('signin-ip', d.ip, 10, 3600_000)) return { kind: 'limited' };
  const otp = newSecret();
  await d.store.putOnce('otp', secretHash(otp), { a: sealAddress(d.settings.rcptKey, to) }, OTP_TTL_S);
  const host = new URL(d.settings.baseUrl).hostname;
  const from = d.settings.rsvp.envelopeFrom || `calendar-web@${host}`;
  const raw = await composeSignIn({ to, from, link: `${d.settings.baseUrl}/s/${otp}`, host });
  const r = await submit(d.settings.rsvp.smtpUrl, from, to, raw);
  return { kind: r.ok ? 'sent' : 'failed' };
}

/** Consumes the otp (GETDEL) and opens a session; the session id, or null. */
export async function signIn(otp: string | undefined, d: Deps & { now: number }): Promise<string | null> {
  if (!otp || !/^[A-Za-z0-9_-]{43}$/.test(otp)) return null;
  const rec = await d.store.take('otp', secretHash(otp), true);
  if (!rec?.a) return null;
  const sid = newSecret();
  await d.store.putOnce('sess', secretHash(sid), { a: rec.a, created: String(d.now) }, SESSION_TTL_S);
  return sid;
}

export async function signOut(cookie: string | undefined, d: Deps): Promise<void> {
  const sid = cookieValue(cookie, cookieName(d.settings));
  if (sid) await d.store.drop('sess', secretHash(sid));
}

export async function sessionAddress(cookie: string | undefined, d: Deps): Promise<string | null> {
  const sid = cookieValue(cookie, cookieName(d.settings));
  if (!sid) return null;
  const rec = await d.store.take('sess', secretHash(sid), false);
  return openAddress(d.settings.rcptKey, rec?.a);
}

function windowOf(from: string | undefined, days: string | undefined, now: number): { fromMs: number; days: number } {
  const n = Math.min(62, Math.max(1, Number.parseInt(days ?? '14', 10) || 14));
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(from ?? '');
  const start = m ? Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!) : Math.floor(now / DAY) * DAY;
  return { fromMs: Number.isFinite(start) ? start : Math.floor(now / DAY) * DAY, days: n };
}

const STATUS: Record<string, string> = { ACCEPTED: 'Accepted', TENTATIVE: 'Tentative', DECLINED: 'Declined' };

export async function agendaFor(address: string, from: string | undefined, days: string | undefined, d: Deps & { ctx: PageCtx; now: number; signout: boolean }): Promise<SafeHtml> {
  const s = d.settings;
  const w = windowOf(from, days, d.now);
  const endMs = w.fromMs + w.days * DAY;
  const r = recipientTag(s.rcptKey, address);
  const evkeys = (await d.store.agenda(r, Math.floor(w.fromMs / 1000) - 86_400)).slice(0, MAX_SERIES);
  const items: AgendaItem[] = [];
  for (const evkey of evkeys) {
    const state = await d.store.event(r, evkey);
    if (!state) continue;
    const rid = state.cur ?? Object.entries(state).find(([k]) => /^x:[^:]+$/.test(k))?.[1];
    if (!rid) continue;
    const snap = await d.store.snapshot(r, rid);
    if (!snap) continue; // expired or removed: skipped
    const v = version(rid, snap);
    const title = v.event?.summary ?? snap.subj ?? 'Untitled event';
    const whole = !!state['cur:cancelled'] || snap.meth === 'CANCEL';
    const me = v.event?.attendees.find((a) => a.value === snap.att);
    const status = STATUS[state.ps ?? me?.partstat ?? ''] ?? 'Not answered';
    const occs: Occurrence[] = v.ical ? occurrences(v.ical, w.fromMs, endMs) : [];
    for (const occ of occs) {
      const cancelled = whole || !!(occ.recurrenceId && state[`x:${occ.recurrenceId}:cancelled`]);
      items.push({
        occ, title: occ.summary ?? title, organizer: v.event?.organizer?.cn ?? null, status, cancelled,
        url: `/m/${mintViewToken(s.tokenKeys, s.tokenKid, r, rid)}`, overlaps: [],
      });
    }
  }
  items.sort((a, b) => a.occ.startMs - b.occ.startMs);
  const busy = items.filter((i) => !i.cancelled && i.status !== 'Declined' && !i.occ.start.allDay);
  for (const a of busy) for (const b of busy) if (a !== b && a.occ.startMs < b.occ.endMs && b.occ.startMs < a.occ.endMs) a.overlaps.push(b.title);
  const q = (ms: number) => `?from=${new Date(ms).toISOString().slice(0, 10)}&days=${w.days}`;
  return agendaPage(items, {
    ctx: d.ctx, fromMs: w.fromMs, days: w.days, who: address, since: null,
    prev: `${d.ctx.path}${q(w.fromMs - w.days * DAY)}`, next: `${d.ctx.path}${q(endMs)}`, signout: d.signout,
  });
}
