// RSVP: whether a page may offer accept/tentative/decline, and what a POST does.
// In: a loaded View, the form fields, the settings and the store. Out: an RsvpOutcome the server turns
// into a 303, a page, or a 503. The REPLY always targets the newest version we hold.
// Fails: never throws for a bad form (outcome "bad-form"); store trouble rejects (the server's 503);
// a submit failure unlocks and answers "failed" with nothing stored, so trying again is safe.

import { buildReply, type EventPerson, type PartStat } from '../calendar-event.js';
import type { SnapshotStore } from '../snapshot-store.js';
import type { WebSettings } from '../snapshot-config.js';
import { verifyFormToken } from '../snapshot-token.js';
import { formatWhen } from './format.js';
import type { Version, View } from './load.js';
import { composeReply, submit } from './reply-mail.js';

export const PARTSTATS: readonly PartStat[] = ['ACCEPTED', 'TENTATIVE', 'DECLINED'];
export const MAX_COMMENT = 500;
/** The same answer for the same SEQUENCE is not re-sent within this window unless asked. */
const RESEND_WINDOW_MS = 24 * 3600_000;

export type Offer =
  | { ok: true; attendee: EventPerson; organizer: EventPerson; target: Version; seq: number }
  | { ok: false; why: string };

export function rsvpOffer(v: View, s: WebSettings): Offer {
  const no = (why: string): Offer => ({ ok: false, why });
  if (!s.rsvp.enabled) return no('Answering from this page is turned off on this server.');
  const t = v.current;
  const meth = t.snap.meth;
  if (v.cancelled) return no('The organizer cancelled this meeting, so there is nothing to answer.');
  if (meth !== 'REQUEST' && meth !== 'ADD') return no('This message is not an invitation you can answer.');
  if (v.over) return no('This meeting is over.');
  const ev = t.event;
  if (!ev || !ev.uid || !ev.organizer) return no('The invitation lacks what a reply needs (its organizer or identifier).');
  // The REPLY goes only to the organizer the event is bound to (a version from anyone else can still be
  // current for its own link: an instance of a series nobody else updated, or when the bound one expired).
  const bound = v.state.org ?? '';
  if (bound && ev.organizer.address.trim().replace(/^mailto:/i, '').toLowerCase() !== bound) {
    return no('This version did not come from the meeting\'s organizer, so it cannot be answered here.');
  }
  const want = (t.snap.att || v.snap.att || v.recipient || '').toLowerCase().replace(/^mailto:/, '');
  const attendee = ev.attendees.find((a) => a.address.toLowerCase() === want);
  if (!attendee) return no('You are not on the attendee list: this invitation probably reached you through a list or an alias.');
  if (attendee.cutype === 'ROOM' || attendee.cutype === 'RESOURCE') return no('This address is a room or resource; it does not answer invitations.');
  if (!(attendee.rsvp || attendee.role === null || attendee.role === 'REQ-PARTICIPANT' || attendee.role === 'OPT-PARTICIPANT')) {
    return no('The organizer did not ask this address for an answer.');
  }
  const domain = attendee.address.split('@').pop()?.toLowerCase() ?? '';
  if (s.rsvp.fromDomains.length && !s.rsvp.fromDomains.some((d) => d === domain || (d.startsWith('.') && domain.endsWith(d)))) {
    return no(`This server cannot send mail for ${domain}, so it cannot answer for you. Use the .ics file in your calendar program.`);
  }
  return { ok: true, attendee, organizer: ev.organizer, target: t, seq: ev.sequence };
}

export type RsvpOutcome =
  | { kind: 'sent'; partstat: PartStat }
  | { kind: 'already-sent'; partstat: PartStat }
  | { kind: 'busy' }
  | { kind: 'bad-form'; why: string }
  | { kind: 'refused'; why: string }
  | { kind: 'failed'; response: string };

export interface RsvpForm { partstat?: unknown; comment?: unknown; f?: unknown; again?: unknown }

export async function handleRsvp(v: View, form: RsvpForm, s: WebSettings, store: SnapshotStore, formKey: Buffer, now = Date.now()): Promise<RsvpOutcome> {
  const offer = rsvpOffer(v, s);
  if (!offer.ok) return { kind: 'refused', why: offer.why };
  if (!verifyFormToken(formKey, form.f, v.rid, 'rsvp', offer.seq, now)) return { kind: 'bad-form', why: 'The form has expired or was not issued for this version. Reload the page and try again.' };
  const partstat = String(form.partstat ?? '').toUpperCase() as PartStat;
  if (!PARTSTATS.includes(partstat)) return { kind: 'bad-form', why: 'Choose accept, tentative or decline.' };
  // RFC 5545 TEXT allows no control characters but HTAB (and the newline it escapes)
  const comment = typeof form.comment === 'string' ? form.comment.replace(/\r\n?/g, '\n').replace(/[\u0000-\u0008\u000b-\u001f\u007f]/g, '').trim() : '';
  if ([...comment].length > MAX_COMMENT) return { kind: 'bad-form', why: `The comment is longer than ${MAX_COMMENT} characters.` };
  const sentKey = `sent:${offer.seq}:${partstat}`;
  // "Already sent" only when it is the last answer sent for this version: accepted → declined → accepted
  // must reach the organizer again.
  const alreadySent = (st: Partial<Record<string, string>>) => {
    const at = Number(st[sentKey] ?? NaN);
    return form.again !== '1' && st.ps === partstat && st['ps:seq'] === String(offer.seq) && Number.isFinite(at) && now - at < RESEND_WINDOW_MS;
  };
  if (alreadySent(v.state)) return { kind: 'already-sent', partstat };
  if (!(await store.lock(v.r, v.evkey, 15))) return { kind: 'busy' };
  try {
    // Re-read under the lock: a concurrent submit may have finished between our read and the lock.
    const state = (await store.event(v.r, v.evkey)) ?? {};
    if (alreadySent(state)) return { kind: 'already-sent', partstat };
    const t = offer.target;
    const ical = buildReply(t.ical as string, { attendee: offer.attendee.value, partstat, comment: comment || null, now: new Date(now) });
    const ev = t.event!;
    const when = ev.start ? formatWhen(ev.start, ev.end, ev.start.zone ?? s.defaultTz, 'en') : null;
    const { raw, messageId } = await composeReply({
      attendee: { address: offer.attendee.address, cn: offer.attendee.cn },
      organizer: { address: offer.organizer.address, cn: offer.organizer.cn },
      partstat, summary: ev.summary ?? t.snap.subj ?? '', when: when ? `${when.range}${when.zone ? ` (${when.zone})` : ''}` : '',
      comment: comment || null, ical, inReplyTo: t.snap.msgid || null, host: new URL(s.baseUrl).hostname, sender: s.rsvp.sender || undefined,
    });
    const from = s.rsvp.envelopeFrom || offer.attendee.address;
    const r = await submit(s.rsvp.smtpUrl, from, offer.organizer.address, raw);
    if (!r.ok) return { kind: 'failed', response: r.response };
    // The mail is out: a store hiccup now must not turn it into an error page that invites a second send.
    await store.setEventFields(v.r, v.evkey, { ps: partstat, 'ps:seq': String(offer.seq), 'ps:at': String(now), 'ps:msgid': messageId, [sentKey]: String(now) }).catch(() => undefined);
    return { kind: 'sent', partstat };
  } finally {
    await store.unlock(v.r, v.evkey).catch(() => undefined);
  }
}
