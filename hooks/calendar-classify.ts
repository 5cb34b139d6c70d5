// Built-in hook "calendar-classify": is this message a meeting message, and does it get a footer?
// In: ClassifyInput (MIME structure with decoded calendar/TNEF bodies, root headers) and the policy
// from the config keys footer_methods and footer_tnef_meetings.
// Out: a Classification for iMIP parts, .ics attachments and TNEF meeting classes; null when the
// message carries none of them. Fails soft: unreadable calendars and TNEF streams become warnings
// or "no footer", never an exception (the pipeline would relay the original anyway).

import type { App, ClassifyInput, HookModule } from '../lib/hooks.js';
import { normalizeMethod, readCalendar } from '../lib/calendar-reader.js';
import { isTnefPart, readTnef } from '../lib/tnef-reader.js';
import type { CalendarFacts, Classification, MessageStructure, MimePart } from '../lib/types.js';

export interface ClassifyPolicy {
  /** Upper-case iTIP methods that get a footer (config footer_methods). */
  footerMethods: ReadonlySet<string>;
  footerTnefMeetings: boolean;
  footerCustomForms: boolean;
  footerTaskRequests: boolean;
}

export const DEFAULT_FOOTER_METHODS = ['REQUEST', 'CANCEL', 'ADD', 'COUNTER', 'DECLINECOUNTER'] as const;

export const DEFAULT_POLICY: ClassifyPolicy = Object.freeze({
  footerMethods: new Set<string>(DEFAULT_FOOTER_METHODS),
  footerTnefMeetings: true,
  footerCustomForms: true,
  footerTaskRequests: true,
});

/** Builds the policy from the app config; a missing or mistyped key keeps its default. */
export function policyFromConfig(config: Readonly<Record<string, unknown>>): ClassifyPolicy {
  const bool = (key: string, dflt: boolean): boolean => (typeof config[key] === 'boolean' ? (config[key] as boolean) : dflt);
  const list = config.footer_methods;
  const methods = Array.isArray(list)
    ? list.filter((m): m is string => typeof m === 'string').map((m) => m.trim().toUpperCase())
    : [...DEFAULT_FOOTER_METHODS];
  return {
    footerMethods: new Set(methods),
    footerTnefMeetings: bool('footer_tnef_meetings', true),
    footerCustomForms: bool('footer_custom_forms', true),
    footerTaskRequests: bool('footer_task_requests', true),
  };
}

const SECURE_TYPES = new Set(['multipart/signed', 'multipart/encrypted', 'application/pkcs7-mime', 'application/x-pkcs7-mime']);

/** The signing/encryption wrapper found anywhere in the tree (root included), or null. */
export function secureWrapper(structure: MessageStructure): string | null {
  return structure.parts.find((p) => SECURE_TYPES.has(p.contentType) && !isEmbedded(structure, p))?.contentType ?? null;
}

function ancestors(structure: MessageStructure, part: MimePart): MimePart[] {
  const out: MimePart[] = [];
  const seen = new Set<number>([part.index]);
  for (let i = part.parent; i !== null && !seen.has(i); ) {
    seen.add(i); // guards against a cyclic parent chain in a hand-built structure
    const p = structure.parts[i];
    if (!p) break;
    out.push(p);
    i = p.parent;
  }
  return out;
}

/**
 * Calendar data inside a bounce/DSN (multipart/report) or a forwarded message is not addressed to
 * this recipient. The structure pass does not descend into message/*, but stay safe if it ever does.
 */
export function isEmbedded(structure: MessageStructure, part: MimePart): boolean {
  return ancestors(structure, part).some((a) => a.contentType === 'multipart/report' || a.contentType.startsWith('message/'));
}

/** The first TNEF part with decoded bytes outside reports and forwards. */
export function findTnefPart(structure: MessageStructure): MimePart | null {
  return structure.parts.find((p) => isTnefPart(p) && p.decoded !== undefined && !isEmbedded(structure, p)) ?? null;
}

export function headerValue(headers: Array<[string, string]>, name: string): string | null {
  return headers.find(([k]) => k === name)?.[1] ?? null;
}

const isIcsFile = (p: MimePart): boolean => (p.filename ?? '').trim().toLowerCase().endsWith('.ics');
/** The method parameter as a method name ("REQUEST;;" → REQUEST); junk counts as absent. */
const methodParam = (p: MimePart): string | null => normalizeMethod(p.params.method);

/** iMIP: text/calendar with a method parameter (RFC 6047 2.4). */
const isImip = (p: MimePart): boolean => p.contentType === 'text/calendar' && methodParam(p) !== null;

/** A calendar attachment whose METHOD has to be read from inside. */
const isIcsAttachment = (p: MimePart): boolean =>
  p.contentType === 'application/ics' ||
  (p.contentType === 'text/calendar' && methodParam(p) === null) ||
  (p.contentType === 'application/octet-stream' && isIcsFile(p));

function result(fields: Omit<Classification, 'tnefClass'> & { tnefClass?: string | null }): Classification {
  return { tnefClass: null, ...fields };
}

/** The decision for iTIP data, shared by the iMIP and .ics paths. */
function decideMethod(method: string, calendar: CalendarFacts | null, policy: ClassifyPolicy, secure: string | null): { footer: boolean; reason: string } {
  if (secure) return { footer: false, reason: `Signed or encrypted message (${secure}) is never changed.` };
  if (calendar?.component === 'VFREEBUSY') return { footer: false, reason: `Free/busy data (METHOD:${method}) never gets a footer.` };
  // RFC 5546: REFRESH is a machine request to the organizer; there is nothing for a person to view.
  if (method === 'REFRESH') return { footer: false, reason: 'METHOD:REFRESH is machine traffic and never gets a footer.' };
  if (policy.footerMethods.has(method)) return { footer: true, reason: `Calendar message with METHOD:${method} gets a footer.` };
  return { footer: false, reason: `METHOD:${method} is not in footer_methods.` };
}

/** Pure decision for iMIP parts, .ics attachments and TNEF meeting classes. Never throws. */
export function classifyCalendar(input: ClassifyInput, policy: ClassifyPolicy = DEFAULT_POLICY): Classification | null {
  try {
    const { structure } = input;
    const secure = secureWrapper(structure);
    const usable = structure.parts.filter((p) => !isEmbedded(structure, p));

    // Google/Thunderbird send the same event twice (inline text/calendar + invite.ics): the part in
    // the multipart/alternative is the one clients act on.
    const imip = usable.filter(isImip);
    const inAlternative = imip.find((p) => p.parent !== null && structure.parts[p.parent]?.contentType === 'multipart/alternative');
    const chosen = inAlternative ?? imip[0];
    if (chosen) {
      const calendar = chosen.decoded ? readCalendar(chosen.decoded, methodParam(chosen), chosen.charset) : null;
      const method = calendar?.method ?? methodParam(chosen)!;
      const kind = calendar?.component === 'VFREEBUSY' ? 'none' : 'meeting';
      return result({ kind, method, source: 'imip', calendarPart: chosen.index, calendar, ...decideMethod(method, calendar, policy, secure) });
    }

    let methodless: { part: MimePart; calendar: CalendarFacts } | null = null;
    for (const part of usable.filter(isIcsAttachment)) {
      if (!part.decoded) continue;
      const calendar = readCalendar(part.decoded, null, part.charset);
      if (calendar.method === null) { methodless ??= { part, calendar }; continue; }
      const kind = calendar.component === 'VFREEBUSY' ? 'none' : 'meeting';
      return result({ kind, method: calendar.method, source: 'ics-attachment', calendarPart: part.index, calendar, ...decideMethod(calendar.method, calendar, policy, secure) });
    }

    const tnef = classifyTnefMeeting(structure, policy, secure);
    if (tnef) return tnef;

    if (methodless) {
      return result({
        kind: 'none', method: null, source: 'ics-attachment', calendarPart: methodless.part.index, calendar: methodless.calendar, footer: false,
        reason: 'Calendar attachment without METHOD is not a scheduling message.',
      });
    }
    return null;
  } catch (err) {
    return result({ kind: 'none', method: null, source: null, calendarPart: null, calendar: null, footer: false, reason: `Calendar classification failed: ${(err as Error).message}.` });
  }
}

const MEETING_CLASS = /^IPM\.(?:Schedule\.Meeting\.(?:Request|Canceled)|Appointment)(?:\.|$)/i;
const MEETING_REPLY_CLASS = /^IPM\.Schedule\.Meeting\.(?:Resp\.|Notification\.)/i;

function classifyTnefMeeting(structure: MessageStructure, policy: ClassifyPolicy, secure: string | null): Classification | null {
  const part = findTnefPart(structure);
  if (!part?.decoded) return null;
  const cls = readTnef(part.decoded).messageClass;
  if (cls === null) return null;
  const base = { kind: 'meeting' as const, method: null, tnefClass: cls, source: 'tnef' as const, calendarPart: part.index, calendar: null };
  if (MEETING_REPLY_CLASS.test(cls)) return result({ ...base, footer: false, reason: `TNEF meeting response or notification (${cls}) gets no footer.` });
  if (!MEETING_CLASS.test(cls)) return null;
  if (secure) return result({ ...base, footer: false, reason: `Signed or encrypted message (${secure}) is never changed.` });
  if (!policy.footerTnefMeetings) return result({ ...base, footer: false, reason: `TNEF meeting (${cls}) but footer_tnef_meetings is off.` });
  return result({ ...base, footer: true, reason: `TNEF meeting message (${cls}) gets a footer.` });
}

const calendarClassify: HookModule = {
  name: 'calendar-classify',
  init(app: App) {
    const policy = policyFromConfig(app.config);
    app.hooks.on('message:classify', 'calendar-classify', (input) => classifyCalendar(input, policy));
  },
};

export default calendarClassify;
