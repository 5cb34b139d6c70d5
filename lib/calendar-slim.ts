// The lines of an iCalendar object that the calendar reader reads, before ical.js parses it.
// In: calendar text (decoded, BOM removed). Out: the same text with only the component lines and the
// properties the reader looks at (plus RRULE/EXRULE, which ical.js checks while parsing), and every
// top-level VTIMEZONE cut out whole, in order; or null when the text is not plain enough to cut safely.
// Why: ical.js parses every line into jCal; a real invitation is mostly ATTENDEE lists, long
// DESCRIPTIONs, X-MICROSOFT properties, alarms and a VTIMEZONE that is the same in every message from a
// site. Parsing only what is read made an Outlook invitation's read about 3 times cheaper (see
// lib/calendar-reader.ts). Fails: never throws; null sends the caller to the full parse, which then
// gives exactly the warnings it always gave.

/** Properties the reader reads (lib/calendar-reader.ts readFacts), and ones ical.js may reject at parse time. */
const KEPT = new Set([
  'BEGIN', 'END', 'METHOD', 'UID', 'SUMMARY', 'RECURRENCE-ID', 'SEQUENCE', 'ORGANIZER', 'DTSTART', 'DTEND', 'DUE', 'DURATION',
  'RRULE', 'EXRULE',
]);

export interface SlimCalendar {
  /** The VCALENDAR with only kept lines (each as written, folds and line breaks included). */
  text: string;
  /** The top-level VTIMEZONE components as written, "BEGIN:VTIMEZONE" to "END:VTIMEZONE" and its line break. */
  zones: string[];
}

const SPACE = 0x20;
const TAB = 0x09;
const CR = 0x0d;
const LF = 0x0a;

/** Length of the property name at `at` (letters, digits, "-"), which must end in ";" or ":"; -1 otherwise. */
function nameLength(text: string, at: number): number {
  let i = at;
  for (; i < text.length; i++) {
    const c = text.charCodeAt(i);
    const letter = c >= 0x41 && c <= 0x5a ? c | 0x20 : c; // upper-case letters only, so no control code slips in
    if (!((letter >= 0x61 && letter <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2d)) break;
  }
  const end = text.charCodeAt(i);
  return i > at && (end === 0x3a || end === 0x3b) ? i - at : -1;
}

/**
 * Cuts the calendar down as described in the file header. Only a single VCALENDAR whose every line is
 * a folded continuation, a blank line, or a name followed by ":" or ";" is cut; BEGIN and END must
 * have no parameters and no folds, and a VTIMEZONE must sit directly in the VCALENDAR.
 */
export function slimCalendar(text: string): SlimCalendar | null {
  const c0 = text.charCodeAt(0);
  if (c0 === SPACE || c0 === TAB) return null; // ical.js skips leading blanks: not worth matching
  const pieces: string[] = [];
  const zones: string[] = [];
  let keepFrom = -1; // start of the run of kept lines being collected
  let keeping = false; // decision for the current logical line (its folds follow it)
  let depth = 0;
  let roots = 0;
  let zoneFrom = -1; // start of the VTIMEZONE being cut, while inside one
  let afterComponentLine = false; // a fold after BEGIN/END would change the component name
  for (let s = 0; s < text.length; ) {
    const nl = text.indexOf('\n', s);
    const next = nl < 0 ? text.length : nl + 1;
    const c = text.charCodeAt(s);
    if (c === SPACE || c === TAB) {
      if (afterComponentLine) return null;
      // a fold belongs to the line before it: kept with it or dropped with it
    } else if (c === LF || (c === CR && text.charCodeAt(s + 1) === LF)) {
      // an empty line: ical.js skips it, unless a fold follows (it would start a line of its own)
      const f = text.charCodeAt(next);
      if (f === SPACE || f === TAB) return null;
      keeping = false;
      afterComponentLine = false;
    } else {
      const n = nameLength(text, s);
      if (n < 0) return null;
      const name = text.slice(s, s + n).toUpperCase();
      afterComponentLine = false;
      if (name === 'BEGIN' || name === 'END') {
        if (text.charCodeAt(s + n) !== 0x3a) return null; // BEGIN;X=1:… is a property to ical.js
        afterComponentLine = true;
        const lineEnd = nl < 0 ? text.length : text.charCodeAt(nl - 1) === CR ? nl - 1 : nl;
        const component = text.slice(s + n + 1, lineEnd).toLowerCase();
        if (name === 'BEGIN') {
          if (depth === 0 && ++roots > 1) return null;
          if (depth === 0 && component !== 'vcalendar') return null;
          if (component === 'vtimezone') {
            if (depth !== 1 || zoneFrom >= 0) return null;
            zoneFrom = s;
          }
          depth++;
        } else {
          if (--depth < 0) return null;
          if (depth === 1 && zoneFrom >= 0) {
            zones.push(text.slice(zoneFrom, next));
            zoneFrom = -1;
            keeping = false;
            if (keepFrom >= 0) keepFrom = -1;
            s = next;
            continue;
          }
        }
      }
      keeping = zoneFrom < 0 && KEPT.has(name);
    }
    if (zoneFrom < 0) {
      if (keeping && keepFrom < 0) keepFrom = s;
      else if (!keeping && keepFrom >= 0) {
        pieces.push(text.slice(keepFrom, s));
        keepFrom = -1;
      }
    } else if (keepFrom >= 0) {
      pieces.push(text.slice(keepFrom, s));
      keepFrom = -1;
    }
    s = next;
  }
  if (depth !== 0 || zoneFrom >= 0) return null; // unterminated: the full parse repairs and says so
  if (keepFrom >= 0) pieces.push(text.slice(keepFrom));
  return { text: pieces.join(''), zones };
}
