// The small types every step of the pipeline speaks. No third-party type crosses a module
// boundary: smtp-server, nodemailer, mailsplit, ical.js and ioredis stay inside their own file.

/** One envelope recipient as the MTA gave it, with its DSN parameters. */
export interface Recipient {
  address: string;
  /** RFC 3461 NOTIFY (e.g. "SUCCESS,FAILURE"), as received. */
  notify?: string;
  /** RFC 3461 ORCPT ("rfc822;user@example.org"), as received. */
  orcpt?: string;
}

export interface Envelope {
  /** MAIL FROM; "" is the null sender. */
  from: string;
  to: Recipient[];
  /** BODY= parameter: "7BIT" | "8BITMIME" | undefined. */
  body?: string;
  smtputf8?: boolean;
  /** RFC 3461 RET and ENVID. */
  ret?: string;
  envid?: string;
  /** SIZE= as announced by the client. */
  size?: number;
}

/** One MIME node, in document order, as found by the structure pass (lib/mime-structure.ts). */
export interface MimePart {
  /** Position in MessageStructure.parts; the root is 0. */
  index: number;
  /** Index of the enclosing multipart, or null for the root. */
  parent: number | null;
  /** Nesting depth, root = 0. */
  depth: number;
  /** Lower-case "type/subtype"; "text/plain" when the header is absent. */
  contentType: string;
  /** Content-Type parameters, keys lower-case, values as written (lenient: `method=REQUEST;;` → REQUEST). */
  params: Record<string, string>;
  /** Lower-case disposition ("inline" | "attachment") or null when absent. */
  disposition: string | null;
  /** File name from Content-Disposition filename / Content-Type name (RFC 2231 and 2047 decoded). */
  filename: string | null;
  /** Lower-case charset parameter, or null. */
  charset: string | null;
  /** Lower-case Content-Transfer-Encoding; "7bit" when absent. */
  encoding: string;
  /** True for multipart/* nodes. */
  multipart: boolean;
  /** Byte offsets in the raw message: the header block starts at headerStart, the body spans [bodyStart, bodyEnd). */
  headerStart: number;
  bodyStart: number;
  bodyEnd: number;
  /** The part's own header lines, unfolded, keys lower-case (first value wins for get()). */
  headers: Array<[string, string]>;
  /**
   * Decoded body bytes (transfer encoding removed, charset untouched), kept only for the parts the
   * classifiers read (calendar, .ics, TNEF), capped at MAX_DECODED_BYTES; `truncated` says if cut.
   */
  decoded?: Buffer;
  truncated?: boolean;
}

export interface MessageStructure {
  parts: MimePart[];
  /** Total size of the raw message in bytes. */
  size: number;
  /** True when the MIME structure looked broken (missing closing boundary, truncated headers …). */
  damaged: boolean;
}

export type MessageKind = 'meeting' | 'custom-form' | 'none';

/** A point in time as written in the calendar, plus its instant when it could be computed. */
export interface CalendarTime {
  /** As written, e.g. "2026-12-01T10:00:00" or "2026-12-01" (all-day). */
  local: string;
  /** TZID as written (may be a Windows name such as "W. Europe Standard Time"), "UTC", or null (floating). */
  tzid: string | null;
  /** ISO 8601 UTC instant when the zone resolved (VTIMEZONE in the file, UTC, or a known IANA name). */
  utc: string | null;
  allDay: boolean;
}

export interface CalendarFacts {
  /** Upper-cased METHOD from inside the calendar, or from the part's method parameter when the data does not parse. */
  method: string | null;
  /** "VEVENT" | "VTODO" | … */
  component: string | null;
  uid: string | null;
  recurrenceId: string | null;
  sequence: number | null;
  summary: string | null;
  start: CalendarTime | null;
  end: CalendarTime | null;
  organizer: string | null;
  /** Non-fatal problems met while reading (never thrown). */
  warnings: string[];
}

export interface Classification {
  kind: MessageKind;
  /** Effective method (METHOD inside wins over the parameter), upper case; null for TNEF/custom forms without one. */
  method: string | null;
  /** TNEF message class, modern name (e.g. "IPM.Schedule.Meeting.Request"), if a TNEF part was read. */
  tnefClass: string | null;
  /** What the decision rests on. */
  source: 'imip' | 'ics-attachment' | 'tnef' | 'content-class' | null;
  /** Index of the part that carried the calendar data (text/calendar, .ics or TNEF), or null. */
  calendarPart: number | null;
  calendar: CalendarFacts | null;
  /** Policy outcome: does this message get a footer at all? */
  footer: boolean;
  /** One short human sentence: why the message does or does not get a footer. */
  reason: string;
}

/** Result of resolving one envelope recipient's link (hooks/link-resolve.ts). */
export interface LinkResolution {
  recipient: string;
  /** null = no footer for this recipient. */
  url: string | null;
  /** Where the decision came from: "recipient" | "domain" | "site" | "external" | "off" | "fallback". */
  source: string;
  /** The server used, for logs and explain (never a token). */
  server: string | null;
}

/** Unicode footer strings; the rewriter encodes them into each part's charset and transfer encoding. */
export interface Footer {
  text: string;
  /** Already HTML-escaped markup. */
  html: string;
}

/** SMTP reply as the pipeline decides it. */
export interface Reply {
  code: number;
  /** Enhanced status code, e.g. "4.4.1". */
  status?: string;
  message: string;
}

/**
 * A transaction's cut-off switch (shutdown past its grace period). Not an AbortController: one
 * is made per message, and an EventTarget costs several microseconds to make and to listen on.
 */
export class Cutoff {
  aborted = false;
  private listener: (() => void) | null = null;

  /** Call `fn` on abort (now, if already aborted); one listener at a time; returns the unsubscribe. */
  onAbort(fn: () => void): () => void {
    if (this.aborted) {
      fn();
      return () => undefined;
    }
    this.listener = fn;
    return () => {
      if (this.listener === fn) this.listener = null;
    };
  }

  abort(): void {
    if (this.aborted) return;
    this.aborted = true;
    const fn = this.listener;
    this.listener = null;
    fn?.();
  }
}
