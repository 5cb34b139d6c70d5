// The web view's pages, rendered on the server: message view, RSVP results, sign-in, agenda, errors.
// In: loaded data (lib/web/load.ts), the viewer's zone and locale, URLs the server computed.
// Out: complete HTML documents (SafeHtml). No script, no inline style (CSP: style-src 'self'), one <h1>,
// a <dl> of facts, <time datetime> for instants. Fails: never throws on stored data; every value from a
// calendar or a header goes through `html` escaping, and links only to http(s)/mailto.

import type { EventDetails, EventPerson, Occurrence } from '../calendar-event.js';
import { describeRule, formatDay, formatInstant, formatWhen, shortDate } from './format.js';
import { html, raw, safeUrl, textWithLinks, type SafeHtml } from './html.js';
import type { View } from './load.js';
import type { Offer } from './rsvp.js';

export const CSS_PATH = '/static/app.css';

export interface PageCtx {
  zone: string;
  locale: string;
  /** Path of this page (for the zone selector's GET form). */
  path: string;
}

export function layout(title: string, body: SafeHtml, ctx?: PageCtx): SafeHtml {
  return html`<!doctype html>
<html lang="en" dir="ltr">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex, nofollow">
<meta name="referrer" content="same-origin">
<title>${title}</title>
<link rel="stylesheet" href="${CSS_PATH}">
</head>
<body>
<main>
${body}
</main>
${ctx ? zoneForm(ctx) : ''}
</body>
</html>
`;
}

function zoneForm(ctx: PageCtx): SafeHtml {
  return html`<footer class="tz"><form method="get" action="${ctx.path}">
<label for="tz">Show times in time zone</label>
<input id="tz" name="tz" type="text" value="${ctx.zone}" autocomplete="off" spellcheck="false">
<button type="submit">Change</button>
</form></footer>`;
}

const KIND: Record<string, string> = {
  request: 'Meeting request', update: 'Updated meeting', cancel: 'Cancelled', reply: 'Response', counter: 'Counter-proposal',
  publish: 'Published event', add: 'Added occurrences', declinecounter: 'Counter-proposal declined', custom: 'Custom form', tnef: 'Outlook item',
};

const STATUS: Record<string, string> = {
  ACCEPTED: 'Accepted', TENTATIVE: 'Tentative', DECLINED: 'Declined', 'NEEDS-ACTION': 'Not answered', DELEGATED: 'Delegated',
};
const MARK: Record<string, string> = { ACCEPTED: '✔', TENTATIVE: '?', DECLINED: '✘', 'NEEDS-ACTION': '…', DELEGATED: '→' };

function personName(p: EventPerson, showAddress: boolean): string {
  if (showAddress) return p.cn ? `${p.cn} <${p.address}>` : p.address;
  return p.cn ?? 'Unnamed attendee';
}

function when(ev: EventDetails, ctx: PageCtx, struck: boolean): SafeHtml {
  if (!ev.start) return html`<dd>Not given</dd>`;
  const w = formatWhen(ev.start, ev.end, ctx.zone, ctx.locale);
  const iso = ev.start.utc !== null ? new Date(ev.start.utc).toISOString() : ev.start.local;
  const main = html`<time datetime="${iso}">${w.range}</time>${w.zone ? html` <span class="zone">(${w.zone})</span>` : ''}`;
  return html`<dd>${struck ? html`<del>${main}</del> <strong>Cancelled</strong>` : main}
${w.note === 'all-day' ? html`<br><span class="note">All day</span>` : ''}
${w.note === 'floating' ? html`<br><span class="note">Local time (no time zone given) — shown as written</span>` : ''}
${w.organizer ? html`<br><span class="note">Organizer's time: ${w.organizer}</span>` : ''}</dd>`;
}

function repeats(ev: EventDetails, v: View, ctx: PageCtx): SafeHtml | '' {
  if (!ev.rrule) return '';
  const ex = [...ev.exdates.map((t) => shortDate(t, ctx.zone, ctx.locale)), ...v.cancelledInstances.map((r) => r)];
  const moved = ev.moved.filter((m) => m.start && !m.cancelled).map((m) => `${shortDate(m.recurrenceId, ctx.zone, ctx.locale)} → ${m.start!.utc !== null ? formatInstant(m.start!.utc, ctx.zone, ctx.locale) : m.start!.local}`);
  return html`<dt>Repeats</dt><dd>${describeRule(ev.rrule, ctx.locale)}${ex.length ? html`, except ${ex.join(', ')}` : ''}${moved.length ? html`; moved: ${moved.join('; ')}` : ''}</dd>`;
}

function attendeesBlock(ev: EventDetails, showAddresses: boolean): SafeHtml | '' {
  if (!ev.attendees.length) return '';
  const counts = new Map<string, number>();
  for (const a of ev.attendees) counts.set(a.partstat ?? 'NEEDS-ACTION', (counts.get(a.partstat ?? 'NEEDS-ACTION') ?? 0) + 1);
  const summary = [...counts].map(([k, n]) => `${n} ${(STATUS[k] ?? k).toLowerCase()}`).join(', ');
  const items = ev.attendees.slice(0, 50).map((a) => {
    const st = a.partstat ?? 'NEEDS-ACTION';
    return html`<li><span aria-hidden="true">${MARK[st] ?? '·'}</span> ${personName(a, showAddresses)} — ${STATUS[st] ?? st}</li>`;
  });
  return html`<dt>Attendees</dt><dd>${ev.attendees.length} (${summary})<ul class="people">${items}</ul>${ev.attendees.length > 50 ? html`<p>and ${ev.attendees.length - 50} more</p>` : ''}</dd>`;
}

export interface MessagePageOpts {
  ctx: PageCtx;
  token: string;
  offer: Offer;
  formToken: string | null;
  /** Link to the current version (when this one is not). */
  currentUrl: string | null;
  sent: string | null;
  showAddresses: boolean;
  agenda: 'mail' | 'proxy' | 'link';
  signinToken: string | null;
  googleUrl: string | null;
  outlookUrl: string | null;
}

export function messagePage(v: View, o: MessagePageOpts): SafeHtml {
  const ev = v.event;
  const snap = v.snap;
  const title = ev?.summary ?? snap.subj ?? 'Untitled event';
  const struck = v.cancelled !== null;
  const base = `/m/${o.token}`;
  const banners: SafeHtml[] = [];
  if (v.cancelled === 'whole') banners.push(html`<p class="banner cancelled" role="status"><strong>Cancelled by the organizer.</strong></p>`);
  if (v.cancelled === 'instance') banners.push(html`<p class="banner cancelled" role="status"><strong>This occurrence was cancelled by the organizer.</strong></p>`);
  if (v.cancelled === 'future') banners.push(html`<p class="banner cancelled" role="status"><strong>This and later occurrences were cancelled by the organizer.</strong></p>`);
  if (!v.isCurrent) banners.push(html`<p class="banner newer" role="status">A newer version of this invitation exists — you are looking at an older one. ${o.currentUrl ? html`<a href="${o.currentUrl}">See the current version</a>` : ''}</p>`);
  if (v.over) banners.push(html`<p class="banner over" role="status">This meeting is over.</p>`);
  if (o.sent && STATUS[o.sent]) banners.push(html`<p class="banner ok" role="status">Your reply (${STATUS[o.sent]}) was sent to ${o.offer.ok ? o.offer.organizer.cn ?? 'the organizer' : 'the organizer'}.</p>`);
  const kind = KIND[snap.kind ?? ''] ?? 'Calendar message';
  const you = ev?.attendees.find((a) => a.value === (v.current.snap.att || snap.att));
  const body = html`
<p class="kind">${kind}</p>
${banners}
<h1>${struck ? html`<del>${title}</del>` : title}</h1>
<dl class="facts">
${snap.fromName ? html`<dt>From</dt><dd>${snap.fromName}</dd>` : ''}
${snap.subj && snap.subj !== title ? html`<dt>Subject</dt><dd>${snap.subj}</dd>` : ''}
${ev ? html`<dt>When</dt>${when(ev, o.ctx, struck)}` : ''}
${ev ? repeats(ev, v, o.ctx) : ''}
${ev?.location ? html`<dt>Where</dt><dd>${safeUrl(ev.location) ? html`<a href="${safeUrl(ev.location)}" rel="noopener noreferrer nofollow">${ev.location}</a>` : ev.location}</dd>` : ''}
${ev?.join ? html`<dt>Join</dt><dd><a href="${ev.join}" rel="noopener noreferrer nofollow">${ev.join}</a></dd>` : ''}
${ev?.organizer ? html`<dt>Organizer</dt><dd>${personName(ev.organizer, o.showAddresses)}</dd>` : ''}
${you ? html`<dt>Your answer</dt><dd>${STATUS[v.state.ps ?? you.partstat ?? 'NEEDS-ACTION'] ?? 'Not answered'}${you.rsvp ? ' (response requested)' : ''}</dd>` : ''}
${ev ? attendeesBlock(ev, o.showAddresses) : ''}
${snap.tnef && !ev ? html`<dt>Form</dt><dd>${snap.tnef}</dd>` : ''}
</dl>
${!ev && snap.ical === undefined ? html`<p class="note">Only the message's headers are known; open the original mail for the details.</p>` : ''}
${!ev && snap.ical !== undefined ? html`<p class="note">The calendar data could not be read. The .ics file below has it as received.</p>` : ''}
${ev?.description ? html`<section aria-labelledby="desc"><h2 id="desc">Description</h2><p class="description">${textWithLinks(ev.description)}</p></section>` : ''}
${rsvpBlock(o, base, v)}
${snap.ical !== undefined ? html`<section aria-labelledby="dl"><h2 id="dl">Add to your calendar</h2><ul class="downloads">
<li><a href="${base}/invite.ics">Open in your calendar app (.ics)</a></li>
<li><a href="${base}/event.ics">Add to my calendar (.ics)</a></li>
${o.googleUrl ? html`<li><a href="${o.googleUrl}" rel="noopener noreferrer nofollow">Add to Google Calendar</a></li>` : ''}
${o.outlookUrl ? html`<li><a href="${o.outlookUrl}" rel="noopener noreferrer nofollow">Add to Outlook.com</a></li>` : ''}
</ul></section>` : ''}
${agendaBlock(o, base)}
<p class="warning">Anyone with this link can see this invitation${o.offer.ok ? html` and answer as <strong>${o.offer.attendee.address}</strong>` : ''}. Don't forward it.</p>`;
  return layout(title, body, o.ctx);
}

function rsvpBlock(o: MessagePageOpts, base: string, v: View): SafeHtml {
  if (!o.offer.ok || !o.formToken) return html`<p class="why">${o.offer.ok ? '' : o.offer.why}</p>`;
  const cur = v.state.ps ?? o.offer.attendee.partstat ?? '';
  const radio = (value: string, label: string) =>
    html`<div class="choice"><input type="radio" id="ps-${value}" name="partstat" value="${value}" required${cur === value ? raw(' checked') : ''}><label for="ps-${value}">${label}</label></div>`;
  return html`<form method="post" action="${base}/rsvp" class="rsvp">
<fieldset>
<legend>Your answer</legend>
${radio('ACCEPTED', 'Accept')}${radio('TENTATIVE', 'Tentative')}${radio('DECLINED', 'Decline')}
</fieldset>
<label for="comment">Comment (optional)</label>
<textarea id="comment" name="comment" maxlength="500" rows="3"></textarea>
<input type="hidden" name="f" value="${o.formToken}">
<p>You are answering as <strong>${o.offer.attendee.address}</strong>.</p>
<button type="submit">Send reply to ${o.offer.organizer.cn ?? o.offer.organizer.address}</button>
</form>`;
}

function agendaBlock(o: MessagePageOpts, base: string): SafeHtml | '' {
  if (o.agenda === 'link') return html`<p><a href="${base}/calendar">Your calendar</a></p>`;
  if (o.agenda === 'proxy') return html`<p><a href="/c">Your calendar</a></p>`;
  if (!o.signinToken) return '';
  return html`<form method="post" action="${base}/signin" class="signin"><input type="hidden" name="f" value="${o.signinToken}"><p>See all invitations that reached you: <button type="submit">Email me a sign-in link</button></p></form>`;
}

export function statusPage(title: string, message: string, ctx?: PageCtx, extra?: SafeHtml): SafeHtml {
  return layout(title, html`<h1>${title}</h1><p>${message}</p>${extra ?? ''}`, ctx);
}

export function alreadySentPage(base: string, partstat: string, fields: { f: string; comment: string }): SafeHtml {
  return layout('Already sent', html`<h1>Already sent</h1><p>You already sent this answer (${STATUS[partstat] ?? partstat}) for this version of the invitation.</p>
<form method="post" action="${base}/rsvp"><input type="hidden" name="partstat" value="${partstat}"><input type="hidden" name="comment" value="${fields.comment}"><input type="hidden" name="f" value="${fields.f}"><input type="hidden" name="again" value="1"><button type="submit">Send it again</button></form>
<p><a href="${base}">Back to the invitation</a></p>`);
}

export function signinLanding(otpPath: string): SafeHtml {
  return layout('Continue to your calendar', html`<h1>Continue to your calendar</h1><p>This sign-in link works once.</p><form method="post" action="${otpPath}"><button type="submit">Continue</button></form>`);
}

export interface AgendaItem { occ: Occurrence; title: string; organizer: string | null; status: string; cancelled: boolean; url: string | null; overlaps: string[] }

export function agendaPage(items: AgendaItem[], o: { ctx: PageCtx; fromMs: number; days: number; who: string; since: string | null; prev: string; next: string; signout: boolean }): SafeHtml {
  const end = o.fromMs + o.days * 86_400_000;
  const byDay = new Map<string, AgendaItem[]>();
  for (const it of items) {
    const key = formatDay(it.occ.start.utc ?? it.occ.startMs, it.occ.start.utc !== null ? o.ctx.zone : 'UTC', o.ctx.locale);
    byDay.set(key, [...(byDay.get(key) ?? []), it]);
  }
  const today = formatDay(Date.now(), o.ctx.zone, o.ctx.locale);
  const days = [...byDay].map(([day, list]) => html`<h2${day === today ? raw(' aria-current="date"') : ''}>${day}${day === today ? ' (today)' : ''}</h2>
<ol class="agenda">${list.map((it) => html`<li>${it.occ.start.allDay ? 'All day' : it.occ.start.utc !== null ? `${formatInstant(it.occ.startMs, o.ctx.zone, o.ctx.locale, false)}–${formatInstant(it.occ.endMs, o.ctx.zone, o.ctx.locale, false)}` : it.occ.start.local.slice(11, 16)}
 ${it.url ? html`<a href="${it.url}">${it.cancelled ? html`<del>${it.title}</del>` : it.title}</a>` : it.title}
 ${it.organizer ? html`— ${it.organizer}` : ''} <span class="chip">${it.cancelled ? 'Cancelled' : it.status}</span>
 ${it.overlaps.length ? html`<span class="overlap">overlaps with ${it.overlaps.join(', ')}</span>` : ''}</li>`)}</ol>`);
  const range = `${formatDay(o.fromMs, o.ctx.zone, o.ctx.locale)} – ${formatDay(end - 1, o.ctx.zone, o.ctx.locale)}`;
  return layout('Your invitations', html`<h1>Your invitations, ${range}</h1>
<nav aria-label="Weeks"><a href="${o.prev}">Earlier</a> · <a href="${o.next}">Later</a></nav>
${days.length ? days : html`<p>No invitations in this period.</p>`}
<p class="note">This list shows only invitations that reached ${o.who} by mail through this server${o.since ? ` since ${o.since}` : ''}. It is not your full calendar.</p>
${o.signout ? html`<form method="post" action="/c/signout"><button type="submit">Sign out</button></form>` : ''}`, o.ctx);
}

export const STYLESHEET = `
:root { color-scheme: light; font-family: system-ui, sans-serif; line-height: 1.5; }
body { margin: 0 auto; max-width: 46rem; padding: 1rem; color: #1a1a1a; background: #fff; }
a { color: #0645ad; } a:focus, button:focus, input:focus, textarea:focus { outline: 3px solid #1a5fb4; outline-offset: 2px; }
.kind { text-transform: uppercase; letter-spacing: .05em; font-size: .85rem; color: #444; margin: 0; }
.banner { padding: .5rem .75rem; border-left: 4px solid #555; background: #f3f3f3; }
.banner.cancelled { border-color: #a51d2d; } .banner.newer { border-color: #9c6500; } .banner.ok { border-color: #26a269; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .25rem 1rem; } dt { font-weight: 600; } dd { margin: 0; }
.note, .zone { color: #444; } .people { padding-left: 1.2rem; margin: .25rem 0; }
.description { white-space: normal; overflow-wrap: anywhere; }
fieldset { border: 1px solid #767676; } .choice { min-height: 44px; display: flex; align-items: center; gap: .5rem; }
button, input[type=text] { min-height: 44px; font-size: 1rem; } textarea { width: 100%; font: inherit; }
button { padding: .5rem 1rem; background: #1a5fb4; color: #fff; border: 0; border-radius: 4px; cursor: pointer; }
.warning { font-size: .9rem; color: #444; border-top: 1px solid #ccc; padding-top: .5rem; }
.chip { border: 1px solid #767676; border-radius: 1rem; padding: 0 .5rem; font-size: .85rem; }
.overlap { color: #9c6500; } footer.tz { margin-top: 2rem; font-size: .9rem; }
@media print { footer.tz, form { display: none; } }
`;
