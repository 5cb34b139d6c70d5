// The mails the web view sends: the iMIP REPLY (From the attendee, To the organizer, threaded to the
// invitation) and the one-time sign-in link. Composed with nodemailer's MailComposer (the only import of
// it), submitted through relay.ts (nodemailer's SMTP client) to rsvp_smtp_url, the site's signing MTA.
// In: plain values. Out: raw RFC 5322 bytes; a submit result. Fails: submit never throws; it answers
// { ok: false, response } for anything but 250 from the MTA within the timeout.

import MailComposer from 'nodemailer/lib/mail-composer';
import { randomUUID } from 'node:crypto';
import { parseNextHop, relayOnce } from '../relay.js';

export const RSVP_HEADER = 'X-Calendar-Link-Filter';

export interface ReplyMail {
  attendee: { address: string; cn: string | null };
  organizer: { address: string; cn: string | null };
  partstat: 'ACCEPTED' | 'TENTATIVE' | 'DECLINED';
  summary: string;
  when: string;
  comment: string | null;
  ical: string;
  inReplyTo: string | null;
  /** Host for the Message-ID (web_base_url's). */
  host: string;
  sender?: string;
}

const VERB = { ACCEPTED: ['Accepted', 'accepted'], TENTATIVE: ['Tentative', 'tentatively accepted'], DECLINED: ['Declined', 'declined'] } as const;

function build(opts: ConstructorParameters<typeof MailComposer>[0]): Promise<Buffer> {
  return new Promise((resolve, reject) => new MailComposer(opts).compile().build((err, msg) => (err ? reject(err) : resolve(msg))));
}

// cut by code points: slicing UTF-16 units could split a surrogate pair into a U+FFFD in the header
const oneLine = (s: string) => Array.from(s.replace(/[\r\n\t]+/g, ' ')).slice(0, 300).join('');

export async function composeReply(m: ReplyMail): Promise<{ raw: Buffer; messageId: string }> {
  const [subj, verb] = VERB[m.partstat];
  const who = m.attendee.cn || m.attendee.address;
  const messageId = `<${randomUUID()}@${m.host}>`;
  const lines = [`${who} has ${verb} this invitation.`, '', `Title: ${m.summary}`, `When: ${m.when}`];
  if (m.comment) lines.push('', `Comment: ${m.comment}`);
  const text = lines.join('\n') + '\n';
  const esc = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
  const htmlBody = `<p>${esc(lines[0] as string)}</p><p>Title: ${esc(m.summary)}<br>When: ${esc(m.when)}</p>${m.comment ? `<p>Comment: ${esc(m.comment)}</p>` : ''}`;
  const raw = await build({
    from: { name: oneLine(m.attendee.cn ?? ''), address: m.attendee.address },
    ...(m.sender ? { sender: m.sender } : {}),
    to: { name: oneLine(m.organizer.cn ?? ''), address: m.organizer.address },
    subject: `${subj}: ${oneLine(m.summary)}`,
    messageId,
    ...(m.inReplyTo ? { inReplyTo: `<${m.inReplyTo}>`, references: `<${m.inReplyTo}>` } : {}),
    headers: { [RSVP_HEADER]: 'rsvp; v=1' },
    text,
    html: htmlBody,
    icalEvent: { method: 'REPLY', filename: 'invite.ics', content: m.ical },
  });
  return { raw, messageId };
}

export async function composeSignIn(o: { to: string; from: string; link: string; host: string }): Promise<Buffer> {
  return build({
    from: o.from, to: o.to, subject: 'Your calendar sign-in link', messageId: `<${randomUUID()}@${o.host}>`,
    headers: { [RSVP_HEADER]: 'signin; v=1', 'Auto-Submitted': 'auto-generated' },
    text: `Someone (hopefully you) asked to see the invitations that reached ${o.to}.\n\nOpen this link within 15 minutes; it works once:\n${o.link}\n\nIf it was not you, ignore this mail.\n`,
  });
}

export async function submit(smtpUrl: string, from: string, to: string, raw: Buffer, timeoutMs = 10_000): Promise<{ ok: boolean; response: string }> {
  try {
    const hop = parseNextHop(smtpUrl);
    const r = await relayOnce(hop, { from, to: [{ address: to }] }, raw, raw.length, { connectTimeoutMs: Math.min(5000, timeoutMs), totalTimeoutMs: timeoutMs });
    const reply = r.recipients.get(to);
    return { ok: !!reply && reply.code >= 200 && reply.code < 300, response: r.response };
  } catch (err) {
    return { ok: false, response: (err as Error).message };
  }
}
