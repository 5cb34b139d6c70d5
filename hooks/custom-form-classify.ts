// Built-in hook "custom-form-classify": Outlook custom forms and task requests.
// In: ClassifyInput (the TNEF part's decoded bytes, the root Content-Class header) and the policy
// (footer_custom_forms, footer_task_requests).
// Out: a Classification for a custom TNEF class (IPM.Note.<X>, IPM.Post.<X> …), a task request or a
// custom Content-Class header; kind "none" with a reason for recalls, built-in classes and the weak
// calendarmessage hint; null otherwise. Fails soft: a damaged TNEF stream simply has no class.

import type { App, ClassifyInput, HookModule } from '../lib/hooks.js';
import { readTnef } from '../lib/tnef-reader.js';
import type { Classification } from '../lib/types.js';
import { DEFAULT_POLICY, findTnefPart, headerValue, policyFromConfig, secureWrapper, type ClassifyPolicy } from './calendar-classify.js';

/**
 * Standard Outlook form classes a custom form can derive from. A class with one more segment
 * (IPM.Note.MyCompany.Expense) is a published form unless it is one of Microsoft's own below.
 */
const FORM_BASES = /^IPM\.(Note|Post|Contact|Task|Activity|StickyNote|DistList|InfoPathForm)\.(.+)$/i;

/**
 * Subclasses Microsoft itself uses for ordinary mail, reports, security and system items
 * (case-insensitive, whole leading segments of what follows the base class). Not custom forms.
 */
const BUILT_IN_SUFFIXES = [
  'SMIME', // IPM.Note.SMIME, .SMIME.MultipartSigned: S/MIME encrypted or signed
  'Secure', // IPM.Note.Secure, .Secure.Sign: Outlook's older encryption/signing classes
  'Receipt.SMIME', // signed read receipt
  'rpmsg', // rights-protected (IRM) mail: as opaque as encryption
  'Microsoft.', // fax, voicemail, missed call, conversation, approval (moderation) …
  'Rules.', // out-of-office and reply templates
  'Mobile.', // SMS / MMS from Outlook Mobile Service
  'IMC.', // Internet Mail Connector reports
  'StorageQuotaWarning', // Exchange quota warnings
  'Exchange.', // Exchange system messages
  'RSS', // IPM.Post.RSS: Outlook's RSS feed items
];

/** "smime" covers "smime" and "smime.multipartsigned", not a custom "smimedemoform"; "microsoft." already ends a segment. */
const isSegmentPrefix = (suffix: string, prefix: string): boolean =>
  suffix.startsWith(prefix) && (prefix.endsWith('.') || suffix.length === prefix.length || suffix[prefix.length] === '.');

export type FormVerdict =
  | { kind: 'task-request' | 'task-response' | 'custom-form'; cls: string }
  | { kind: 'built-in' | 'recall' | 'other'; cls: string };

/** Sorts a (modern) TNEF message class into what this hook cares about. */
export function judgeClass(cls: string): FormVerdict {
  // Task responses answer a request; like meeting responses they get no footer.
  if (/^IPM\.TaskRequest\.(Accept|Decline)(\.|$)/i.test(cls)) return { kind: 'task-response', cls };
  if (/^IPM\.TaskRequest(\.|$)/i.test(cls)) return { kind: 'task-request', cls };
  if (/^IPM\.(Outlook\.Recall|Recall\.)/i.test(cls)) return { kind: 'recall', cls };
  const m = FORM_BASES.exec(cls);
  if (!m) return { kind: 'other', cls };
  const suffix = m[2]!.toLowerCase();
  if (BUILT_IN_SUFFIXES.some((b) => isSegmentPrefix(suffix, b.toLowerCase()))) return { kind: 'built-in', cls };
  return { kind: 'custom-form', cls };
}

/** Root Content-Class values that name a custom form (MS-OXCMAIL: custom.<X> → IPM.Note.Custom.<X>). */
export function customContentClass(value: string | null): string | null {
  const v = (value ?? '').trim();
  const custom = /^urn:content-class:custom\.(.+)$/i.exec(v);
  if (custom) return `IPM.Note.Custom.${custom[1]}`;
  const infoPath = /^InfoPathForm\.(.+)$/i.exec(v);
  if (infoPath) return `IPM.InfoPathForm.${infoPath[1]}`;
  return null;
}

/** Pure decision for custom forms, task requests and Content-Class headers. Never throws. */
export function classifyCustomForm(input: ClassifyInput, policy: ClassifyPolicy = DEFAULT_POLICY): Classification | null {
  const none = { method: null, calendar: null } as const;
  try {
    const { structure, headers } = input;
    const part = findTnefPart(structure);
    const cls = part?.decoded ? readTnef(part.decoded).messageClass : null;
    // MS-OXCMAIL: a form class ending in .SMIME / .SMIME.MultipartSigned travels signed or encrypted.
    const secure = secureWrapper(structure) ?? (cls && /\.SMIME(\.MultipartSigned)?$/i.test(cls) ? cls : null);
    const blocked = secure ? `Signed or encrypted message (${secure}) is never changed.` : null;
    if (part && cls) {
      const v = judgeClass(cls);
      const base = { ...none, tnefClass: cls, source: 'tnef' as const, calendarPart: part.index };
      switch (v.kind) {
        case 'task-request':
          return { ...base, kind: 'custom-form', footer: !blocked && policy.footerTaskRequests,
            reason: blocked ?? (policy.footerTaskRequests ? `Task request (${cls}) gets a footer.` : `Task request (${cls}) but footer_task_requests is off.`) };
        case 'task-response':
          return { ...base, kind: 'custom-form', footer: false, reason: `Task response (${cls}) gets no footer.` };
        case 'custom-form':
          return { ...base, kind: 'custom-form', footer: !blocked && policy.footerCustomForms,
            reason: blocked ?? (policy.footerCustomForms ? `Custom form (${cls}) gets a footer.` : `Custom form (${cls}) but footer_custom_forms is off.`) };
        case 'recall':
          return { ...base, kind: 'none', footer: false, reason: `Outlook recall (${cls}) gets no footer.` };
        case 'built-in':
          return { ...base, kind: 'none', footer: false, reason: `${cls} is a built-in Outlook class, not a custom form.` };
        case 'other':
          break; // plain notes, meetings (the calendar hook's), reports: fall through to the header
      }
    }

    const contentClass = headerValue(headers, 'content-class');
    const formClass = customContentClass(contentClass);
    if (formClass) {
      return { ...none, kind: 'custom-form', tnefClass: null, source: 'content-class', calendarPart: null,
        footer: !blocked && policy.footerCustomForms,
        reason: blocked ?? (policy.footerCustomForms ? `Custom form (Content-Class ${contentClass!.trim()}) gets a footer.` : 'Custom form but footer_custom_forms is off.') };
    }
    if (/^urn:content-classes:calendarmessage$/i.test((contentClass ?? '').trim())) {
      // Outlook/Exchange set it on meeting mail, but alone it proves nothing: log-worthy, no footer.
      return { ...none, kind: 'none', tnefClass: null, source: 'content-class', calendarPart: null, footer: false,
        reason: 'Content-Class calendarmessage alone is only a hint; no calendar data found.' };
    }
    return null;
  } catch (err) {
    return { ...none, kind: 'none', tnefClass: null, source: null, calendarPart: null, footer: false, reason: `Custom-form classification failed: ${(err as Error).message}.` };
  }
}

const customFormClassify: HookModule = {
  name: 'custom-form-classify',
  init(app: App) {
    const policy = policyFromConfig(app.config);
    app.hooks.on('message:classify', 'custom-form-classify', (input) => classifyCustomForm(input, policy));
  },
};

export default customFormClassify;
