// "Add to Google Calendar" and "Add to Outlook.com" links for one event (parameters as documented in
// InteractionDesignFoundation/add-event-to-calendar-docs, services/google.md and outlook-web.md).
// In: EventDetails. Out: https URLs, or null when the event has no start. Fails: never. The details
// travel to the third party only when the person clicks (rel=noopener noreferrer nofollow on the page).

import type { EventDetails, EventTime } from '../calendar-event.js';

const MAX_DETAILS = 1000;

function compact(t: EventTime): string {
  if (t.allDay) return t.local.replace(/-/g, '');
  if (t.utc !== null) return new Date(t.utc).toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');
  return t.local.replace(/[-:]/g, '');
}

function iso(t: EventTime): string {
  if (t.allDay) return t.local;
  return t.utc !== null ? new Date(t.utc).toISOString().replace(/\.\d{3}/, '') : t.local;
}

export function addLinks(ev: EventDetails, zone: string): { google: string | null; outlook: string | null } {
  if (!ev.start) return { google: null, outlook: null };
  const end = ev.end ?? ev.start;
  const details = (ev.description ?? '').slice(0, MAX_DETAILS);
  const g = new URLSearchParams({ action: 'TEMPLATE', text: ev.summary ?? '', dates: `${compact(ev.start)}/${compact(end)}` });
  if (details) g.set('details', details);
  if (ev.location) g.set('location', ev.location);
  g.set('ctz', ev.start.zone ?? zone);
  if (ev.rrule) g.set('recur', `RRULE:${ev.rrule.text}`);
  const o = new URLSearchParams({ path: '/calendar/action/compose', rru: 'addevent', startdt: iso(ev.start), enddt: iso(end), subject: ev.summary ?? '' });
  if (ev.start.allDay) o.set('allday', 'true');
  if (details) o.set('body', details);
  if (ev.location) o.set('location', ev.location);
  return {
    google: `https://calendar.google.com/calendar/render?${g.toString()}`,
    outlook: `https://outlook.live.com/calendar/0/deeplink/compose?${o.toString()}`,
  };
}
