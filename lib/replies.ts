// Reply codes live here and nowhere else: what the MTA hears for every outcome.
// In: relay results per recipient (the next hop's own replies) or a failure of ours.
// Out: one Reply for an SMTP client, or one Reply per recipient for an LMTP client.
// Rule: we never invent a 5xx. A 5xx is the next hop's own (or 552 for size, 554 for a refused
// client); whatever we cannot handle is 451, so the MTA keeps the message and retries.

import type { Reply } from './types.js';

export const REPLIES = {
  refusedClient: { code: 554, status: '5.7.1', message: 'Client address not allowed to use this filter' },
  tooBig: { code: 552, status: '5.3.4', message: 'Message size exceeds the fixed limit' },
  tooBigForHop: { code: 552, status: '5.3.4', message: 'Message size exceeds the fixed limit of the next hop' },
  unreachable: { code: 451, status: '4.4.1', message: 'Next hop unreachable, try again later' },
  hopTimeout: { code: 451, status: '4.4.2', message: 'Next hop timed out or dropped the connection, try again later' },
  internal: { code: 451, status: '4.3.0', message: 'Temporary filter failure, try again later' },
  storeDown: { code: 451, status: '4.3.0', message: 'Link override store unavailable, try again later' },
  partial: { code: 451, status: '4.3.0', message: 'Next hop refused some recipients; the message will be retried for all (duplicates possible, no loss)' },
  shuttingDown: { code: 421, status: '4.3.2', message: 'Filter shutting down, try again later' },
  aborted: { code: 451, status: '4.3.2', message: 'Transaction cut off by shutdown, try again later' },
} as const satisfies Record<string, Reply>;

/** The outcome of handing one group of recipients to the next hop. */
export interface HopResult {
  /** Per recipient: the next hop's reply (2xx = accepted). */
  recipients: Map<string, Reply>;
}

/** Parse "451 4.7.1 Try later" (possibly multi-line) into a Reply; unknown shapes become 451. */
export function parseReply(text: string | undefined, fallback: Reply = REPLIES.internal): Reply {
  if (!text) return { ...fallback };
  // nearly every reply is one line: no split for it
  const lines = text.includes('\n') ? text.split(/\r?\n/).filter((l) => l.length > 0) : [text];
  const first = /^([245]\d\d)[ -](?:([245]\.\d{1,3}\.\d{1,3}) )?(.*)$/.exec(lines[0] ?? '');
  if (!first) return { ...fallback };
  const code = Number(first[1]);
  const message = lines
    .map((l) => l.replace(/^[245]\d\d[ -](?:[245]\.\d{1,3}\.\d{1,3} )?/, ''))
    .join(' ')
    .replace(/[\x00-\x1f\x7f]/g, ' ');
  return { code, status: first[2], message: clip(message || first[3] || '', MAX_TEXT_OCTETS) };
}

/**
 * The most octets of next-hop text passed on: RFC 5321 4.5.3.1.5 allows 512 per reply line with the
 * code, the enhanced status code and CRLF; text in UTF-8 (or 8-bit, re-encoded) takes up to 3 octets
 * a character, so the bound is on octets, not characters.
 */
const MAX_TEXT_OCTETS = 400;

/** `s` cut to at most `max` octets of UTF-8, at a character boundary. */
function clip(s: string, max: number): string {
  if (s.length * 3 <= max || Buffer.byteLength(s) <= max) return s;
  let out = '';
  let octets = 0;
  for (const ch of s) {
    octets += Buffer.byteLength(ch);
    if (octets > max) break;
    out += ch;
  }
  return out;
}

/** A text for smtp-server: it prefixes the code itself, so the status code goes into the message. */
export function replyText(r: Reply): string {
  return r.status ? `${r.status} ${r.message}` : r.message;
}

export function isSuccess(r: Reply): boolean {
  return r.code >= 200 && r.code < 300;
}

/**
 * The single reply an SMTP client gets for the whole message.
 * All accepted → the next hop's 250. None accepted → the first temporary failure if there is
 * one (a retry may still succeed), else the next hop's own permanent failure. Some accepted,
 * some refused → 451: the MTA retries everyone. A duplicate for the accepted recipients is
 * better than a loss for the refused ones (LMTP, or Postfix's
 * `<transport>_destination_recipient_limit = 1`, avoids the question: see README).
 */
export function combineForSmtp(perRecipient: Reply[]): Reply {
  if (perRecipient.length === 0) return { ...REPLIES.internal };
  const ok = perRecipient.filter(isSuccess);
  if (ok.length === perRecipient.length) return ok[0]!;
  if (ok.length > 0) return { ...REPLIES.partial };
  const temp = perRecipient.find((r) => r.code >= 400 && r.code < 500);
  if (temp) return temp;
  return perRecipient.find((r) => r.code >= 500) ?? { ...REPLIES.internal };
}
