// Table-driven tests for hooks/calendar-classify.ts and hooks/custom-form-classify.ts, on hand-built
// MessageStructure objects. Each row states what the rules in the brief say the outcome must be.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import calendarClassify, { classifyCalendar, DEFAULT_POLICY, policyFromConfig, type ClassifyPolicy } from '../hooks/calendar-classify.js';
import customFormClassify, { classifyCustomForm, customContentClass, judgeClass } from '../hooks/custom-form-classify.js';
import { HookRegistry, type App, type ClassifyInput } from '../lib/hooks.js';
import type { Classification, MessageStructure, MimePart } from '../lib/types.js';
import { buildTnef, tnefFixtures } from './helpers/tnef-fixture.js';

interface Node {
  type: string;
  params?: Record<string, string>;
  disposition?: string;
  filename?: string;
  charset?: string;
  body?: string | Buffer;
  children?: Node[];
}

/** Flattens a tree into MimePart[] in document order, as the structure pass does. */
function structure(root: Node): MessageStructure {
  const parts: MimePart[] = [];
  const walk = (n: Node, parent: number | null, depth: number): void => {
    const index = parts.length;
    const multipart = n.type.startsWith('multipart/');
    parts.push({
      index, parent, depth, contentType: n.type, params: n.params ?? {}, disposition: n.disposition ?? null,
      filename: n.filename ?? null, charset: n.charset ?? null, encoding: '7bit', multipart,
      headerStart: 0, bodyStart: 0, bodyEnd: 0, headers: [['content-type', n.type]],
      ...(n.body !== undefined ? { decoded: Buffer.isBuffer(n.body) ? n.body : Buffer.from(n.body) } : {}),
    });
    for (const c of n.children ?? []) walk(c, index, depth + 1);
  };
  walk(root, null, 0);
  return { parts, size: 1000, damaged: false };
}

const input = (root: Node, headers: Array<[string, string]> = []): ClassifyInput => ({ structure: structure(root), headers });

function ics(method: string | null, component = 'VEVENT'): string {
  return ['BEGIN:VCALENDAR', 'VERSION:2.0', ...(method ? [`METHOD:${method}`] : []), `BEGIN:${component}`,
    'UID:u1', 'DTSTART:20261201T100000Z', `END:${component}`, 'END:VCALENDAR', ''].join('\r\n');
}

const plain: Node = { type: 'text/plain', charset: 'utf-8' };
const html: Node = { type: 'text/html', charset: 'utf-8' };
const cal = (method: string | null, param: string | null = method, extra: Partial<Node> = {}): Node =>
  ({ type: 'text/calendar', params: param ? { method: param } : {}, charset: 'utf-8', body: ics(method), ...extra });
const icsFile = (method: string | null, type = 'application/ics', filename = 'invite.ics'): Node =>
  ({ type, disposition: 'attachment', filename, body: ics(method) });
const tnef = (body: Buffer, type = 'application/ms-tnef', filename = 'winmail.dat'): Node =>
  ({ type, disposition: 'attachment', filename, body });
const alt = (...children: Node[]): Node => ({ type: 'multipart/alternative', children });
const mixed = (...children: Node[]): Node => ({ type: 'multipart/mixed', children });

type Expect = Partial<Pick<Classification, 'kind' | 'method' | 'footer' | 'source' | 'calendarPart' | 'tnefClass'>> | null;

function check(name: string, got: Classification | null, want: Expect): void {
  if (want === null) { assert.equal(got, null, name); return; }
  assert.ok(got, `${name}: expected a classification`);
  for (const [k, v] of Object.entries(want)) assert.deepEqual(got[k as keyof Classification], v, `${name}: ${k}`);
  assert.equal(typeof got.reason, 'string');
  assert.ok(got.reason.length > 0 && got.reason.length < 140 && !got.reason.includes('\n'), `${name}: reason is one short sentence`);
}

const CALENDAR_CASES: Array<{ name: string; msg: ClassifyInput; policy?: ClassifyPolicy; want: Expect }> = [
  // Exchange Online: top-level alternative, calendar is part 3.
  { name: 'EXO REQUEST', msg: input(alt(plain, html, cal('REQUEST'))), want: { kind: 'meeting', method: 'REQUEST', footer: true, source: 'imip', calendarPart: 3 } },
  // Google: the text/calendar in the alternative (part 4) wins over invite.ics (part 5).
  { name: 'Google REQUEST + invite.ics', msg: input(mixed(alt(plain, html, cal('REQUEST')), icsFile('REQUEST'))), want: { method: 'REQUEST', footer: true, source: 'imip', calendarPart: 4 } },
  { name: 'alternative preferred even after another iMIP part', msg: input(mixed(cal('REQUEST', 'REQUEST', { disposition: 'attachment' }), alt(plain, cal('REQUEST')))), want: { source: 'imip', calendarPart: 4 } },
  { name: 'CANCEL', msg: input(alt(plain, cal('CANCEL'))), want: { kind: 'meeting', method: 'CANCEL', footer: true } },
  { name: 'ADD', msg: input(alt(plain, cal('ADD'))), want: { method: 'ADD', footer: true } },
  { name: 'COUNTER', msg: input(alt(plain, cal('COUNTER'))), want: { method: 'COUNTER', footer: true } },
  { name: 'DECLINECOUNTER', msg: input(alt(plain, cal('DECLINECOUNTER'))), want: { method: 'DECLINECOUNTER', footer: true } },
  { name: 'REPLY', msg: input(alt(plain, cal('REPLY'))), want: { kind: 'meeting', method: 'REPLY', footer: false } },
  { name: 'PUBLISH', msg: input(alt(plain, cal('PUBLISH'))), want: { kind: 'meeting', method: 'PUBLISH', footer: false } },
  { name: 'REFRESH', msg: input(alt(plain, cal('REFRESH'))), want: { kind: 'meeting', method: 'REFRESH', footer: false } },
  { name: 'SOGo mixed(html, calendar)', msg: input(mixed(html, cal('REQUEST'))), want: { footer: true, calendarPart: 2 } },
  { name: 'calendar nested deep (mixed > related > alternative)', msg: input(mixed({ type: 'multipart/related', children: [alt(plain, html, cal('REQUEST'))] })), want: { footer: true, calendarPart: 5 } },
  { name: 'Zoom "REQUEST;;" parameter left raw', msg: input(alt(html, cal('REQUEST', 'REQUEST;;'))), want: { method: 'REQUEST', footer: true } },
  { name: 'lower-case parameter and METHOD', msg: input(alt(plain, cal('request', 'request'))), want: { method: 'REQUEST', footer: true } },
  { name: 'METHOD inside wins over the parameter', msg: input(alt(plain, cal('REPLY', 'REQUEST'))), want: { method: 'REPLY', footer: false } },
  { name: 'no METHOD inside: the parameter counts (Domino)', msg: input(alt(plain, cal(null, 'REQUEST'))), want: { method: 'REQUEST', footer: true } },
  { name: 'unparseable calendar counts by its parameter', msg: input(alt(plain, cal('REQUEST', 'REQUEST', { body: 'this is not iCalendar' }))), want: { kind: 'meeting', method: 'REQUEST', footer: true, source: 'imip' } },
  { name: 'no decoded body: the parameter counts', msg: input(alt(plain, { type: 'text/calendar', params: { method: 'CANCEL' } })), want: { method: 'CANCEL', footer: true } },
  { name: 'VFREEBUSY never gets a footer', msg: input(alt(plain, { ...cal('REQUEST'), body: ics('REQUEST', 'VFREEBUSY') })), want: { footer: false, method: 'REQUEST' } },
  { name: 'ignored under multipart/report', msg: input({ type: 'multipart/report', children: [plain, cal('REQUEST')] }), want: null },
  { name: 'ignored under message/rfc822', msg: input(mixed(plain, { type: 'message/rfc822', children: [alt(plain, cal('REQUEST'))] })), want: null },
  { name: 'ics attachment only, REQUEST', msg: input(mixed(plain, icsFile('REQUEST'))), want: { kind: 'meeting', method: 'REQUEST', footer: true, source: 'ics-attachment', calendarPart: 2 } },
  { name: 'ics attachment only, PUBLISH', msg: input(mixed(plain, icsFile('PUBLISH', 'text/calendar', 'event.ics'))), want: { kind: 'meeting', method: 'PUBLISH', footer: false, source: 'ics-attachment' } },
  { name: 'text/calendar without method param (Proton)', msg: input(mixed(alt(plain, cal('REQUEST', null)))), want: { method: 'REQUEST', footer: true, source: 'ics-attachment', calendarPart: 3 } },
  { name: 'application/ics inside the alternative', msg: input(mixed(alt(plain, { type: 'application/ics', filename: 'invite.ics', body: ics('REQUEST') }))), want: { method: 'REQUEST', footer: true } },
  { name: '*.ics as octet-stream', msg: input(mixed(plain, icsFile('CANCEL', 'application/octet-stream', 'Meeting.ICS'))), want: { method: 'CANCEL', footer: true, source: 'ics-attachment' } },
  { name: 'octet-stream not named .ics is not looked at', msg: input(mixed(plain, icsFile('CANCEL', 'application/octet-stream', 'data.bin'))), want: null },
  { name: 'ics without METHOD anywhere: not a scheduling message', msg: input(mixed(alt(plain, html, cal(null, null)), icsFile(null, 'text/calendar'))), want: { kind: 'none', footer: false, method: null } },
  { name: 'unparseable ics attachment without parameter', msg: input(mixed(plain, { ...icsFile(null), body: 'garbage' })), want: { kind: 'none', footer: false } },
  { name: 'plain mail', msg: input(alt(plain, html)), want: null },
  { name: 'signed iMIP: detected, no footer', msg: input({ type: 'multipart/signed', children: [alt(plain, cal('REQUEST')), { type: 'application/pkcs7-signature' }] }), want: { kind: 'meeting', method: 'REQUEST', footer: false } },
  { name: 'encrypted wrapper deep in the tree', msg: input(mixed(alt(plain, cal('CANCEL')), { type: 'application/x-pkcs7-mime' })), want: { kind: 'meeting', footer: false } },
  { name: 'S/MIME opaque root: nothing visible', msg: input({ type: 'application/pkcs7-mime' }), want: null },
  { name: 'TNEF meeting request', msg: input(mixed(plain, tnef(tnefFixtures.meetingRequest()))), want: { kind: 'meeting', method: null, footer: true, source: 'tnef', calendarPart: 2, tnefClass: 'IPM.Schedule.Meeting.Request' } },
  { name: 'TNEF as vnd.ms-tnef', msg: input(mixed(plain, tnef(tnefFixtures.meetingRequest(), 'application/vnd.ms-tnef', 'x.dat'))), want: { kind: 'meeting', footer: true } },
  { name: 'TNEF by file name only', msg: input(mixed(plain, tnef(tnefFixtures.meetingCancel(), 'application/octet-stream', 'winmail.dat'))), want: { footer: true, tnefClass: 'IPM.Schedule.Meeting.Canceled' } },
  { name: 'TNEF appointment', msg: input(mixed(plain, tnef(tnefFixtures.appointment()))), want: { kind: 'meeting', footer: true, tnefClass: 'IPM.Appointment' } },
  { name: 'TNEF meeting response', msg: input(mixed(plain, tnef(tnefFixtures.meetingAccept()))), want: { kind: 'meeting', footer: false, tnefClass: 'IPM.Schedule.Meeting.Resp.Pos' } },
  { name: 'TNEF meetings switched off', msg: input(mixed(plain, tnef(tnefFixtures.meetingRequest()))), policy: { ...DEFAULT_POLICY, footerTnefMeetings: false }, want: { kind: 'meeting', footer: false } },
  { name: 'TNEF meeting in a signed message', msg: input({ type: 'multipart/signed', children: [mixed(plain, tnef(tnefFixtures.meetingRequest()))] }), want: { kind: 'meeting', footer: false } },
  { name: 'TNEF plain note is not the calendar hook’s', msg: input(mixed(plain, tnef(tnefFixtures.note()))), want: null },
  { name: 'TNEF custom form is not the calendar hook’s', msg: input(mixed(plain, tnef(tnefFixtures.customForm()))), want: null },
  { name: 'garbage TNEF', msg: input(mixed(plain, tnef(tnefFixtures.garbage()))), want: null },
  { name: 'truncated TNEF meeting still has its legacy class', msg: input(mixed(plain, tnef(tnefFixtures.truncated()))), want: { footer: true, tnefClass: 'IPM.Schedule.Meeting.Request' } },
  { name: 'footer_methods = [REQUEST]: CANCEL gets none', msg: input(alt(plain, cal('CANCEL'))), policy: policyFromConfig({ footer_methods: ['REQUEST'] }), want: { method: 'CANCEL', footer: false } },
  { name: 'footer_methods with REPLY', msg: input(alt(plain, cal('REPLY'))), policy: policyFromConfig({ footer_methods: ['reply'] }), want: { method: 'REPLY', footer: true } },
  { name: 'REFRESH never, even when configured', msg: input(alt(plain, cal('REFRESH'))), policy: policyFromConfig({ footer_methods: ['REFRESH'] }), want: { footer: false } },
];

test('calendar classification: every rule', () => {
  for (const c of CALENDAR_CASES) check(c.name, classifyCalendar(c.msg, c.policy), c.want);
});

test('METHOD/parameter disagreement is recorded as a calendar warning', () => {
  const got = classifyCalendar(input(alt(plain, cal('CANCEL', 'REQUEST'))));
  assert.equal(got?.method, 'CANCEL');
  assert.ok(got?.calendar?.warnings.some((w) => /disagrees/.test(w)));
});

test('signed messages give a reason that says so', () => {
  const got = classifyCalendar(input({ type: 'multipart/signed', children: [alt(plain, cal('REQUEST'))] }));
  assert.match(got?.reason ?? '', /signed or encrypted/i);
});

const FORM_CASES: Array<{ name: string; msg: ClassifyInput; policy?: ClassifyPolicy; want: Expect }> = [
  { name: 'custom form IPM.Note.MyCompany.Expense', msg: input(mixed(plain, tnef(tnefFixtures.customForm()))), want: { kind: 'custom-form', footer: true, source: 'tnef', calendarPart: 2, tnefClass: 'IPM.Note.MyCompany.Expense', method: null } },
  { name: 'custom post IPM.Post.Travel', msg: input(mixed(plain, tnef(tnefFixtures.customPost()))), want: { kind: 'custom-form', footer: true, tnefClass: 'IPM.Post.Travel' } },
  { name: 'custom forms switched off', msg: input(mixed(plain, tnef(tnefFixtures.customForm()))), policy: { ...DEFAULT_POLICY, footerCustomForms: false }, want: { kind: 'custom-form', footer: false } },
  { name: 'task request', msg: input(mixed(plain, tnef(tnefFixtures.taskRequest()))), want: { kind: 'custom-form', footer: true, tnefClass: 'IPM.TaskRequest' } },
  { name: 'task requests switched off', msg: input(mixed(plain, tnef(tnefFixtures.taskRequest()))), policy: { ...DEFAULT_POLICY, footerTaskRequests: false }, want: { kind: 'custom-form', footer: false } },
  { name: 'task accept is a response', msg: input(mixed(plain, tnef(tnefFixtures.taskAccept()))), want: { kind: 'custom-form', footer: false, tnefClass: 'IPM.TaskRequest.Accept' } },
  { name: 'S/MIME note is built in', msg: input(mixed(plain, tnef(tnefFixtures.smime()))), want: { kind: 'none', footer: false, tnefClass: 'IPM.Note.SMIME' } },
  { name: 'recall', msg: input(mixed(plain, tnef(tnefFixtures.recall()))), want: { kind: 'none', footer: false, tnefClass: 'IPM.Outlook.Recall' } },
  { name: 'plain note', msg: input(mixed(plain, tnef(tnefFixtures.note()))), want: null },
  // MS-OXCMAIL: a form class ending in .SMIME travels encrypted; still a form, never changed.
  { name: 'S/MIME InfoPath form', msg: input(mixed(plain, tnef(buildTnef({ mapiClass: 'IPM.InfoPathForm.Travel.SMIME' })))), want: { kind: 'custom-form', footer: false } },
  { name: 'meeting class is the calendar hook’s', msg: input(mixed(plain, tnef(tnefFixtures.meetingRequest()))), want: null },
  { name: 'custom form in a signed message', msg: input({ type: 'multipart/signed', children: [mixed(plain, tnef(tnefFixtures.customForm()))] }), want: { kind: 'custom-form', footer: false } },
  { name: 'Content-Class custom.<X>', msg: input(alt(plain, html), [['content-class', 'urn:content-class:custom.Expense']]), want: { kind: 'custom-form', footer: true, source: 'content-class', tnefClass: null, calendarPart: null } },
  { name: 'Content-Class InfoPathForm.<X>', msg: input(alt(plain, html), [['content-class', 'InfoPathForm.5D1C8BD0.Travel']]), want: { kind: 'custom-form', footer: true, source: 'content-class' } },
  { name: 'Content-Class custom, signed', msg: input({ type: 'multipart/signed', children: [plain] }, [['content-class', 'urn:content-class:custom.Expense']]), want: { kind: 'custom-form', footer: false } },
  { name: 'calendarmessage alone is a weak hint', msg: input(alt(plain, html), [['content-class', 'urn:content-classes:calendarmessage']]), want: { kind: 'none', footer: false, source: 'content-class' } },
  { name: 'Content-Class message is nothing', msg: input(alt(plain, html), [['content-class', 'urn:content-classes:message']]), want: null },
  { name: 'Content-Class fax is nothing', msg: input(plain, [['content-class', 'fax']]), want: null },
  { name: 'garbage TNEF, no header', msg: input(mixed(plain, tnef(tnefFixtures.garbage()))), want: null },
  { name: 'TNEF under multipart/report is ignored', msg: input({ type: 'multipart/report', children: [plain, tnef(tnefFixtures.customForm())] }), want: null },
];

test('custom-form classification: every rule', () => {
  for (const c of FORM_CASES) check(c.name, classifyCustomForm(c.msg, c.policy), c.want);
});

test('judgeClass: built-in classes, custom forms, task requests and recalls', () => {
  const table: Array<[string, string]> = [
    ['IPM.Note.MyCompany.Expense', 'custom-form'],
    ['ipm.note.mycompany.expense', 'custom-form'],
    ['IPM.Post.Travel', 'custom-form'],
    ['IPM.Contact.Customer', 'custom-form'],
    ['IPM.Note.Custom.Expense', 'custom-form'],
    ['IPM.InfoPathForm.Travel', 'custom-form'],
    ['IPM.Note.SMIME', 'built-in'],
    ['IPM.Note.SMIME.MultipartSigned', 'built-in'],
    ['IPM.Note.Secure.Sign', 'built-in'],
    ['IPM.Note.Receipt.SMIME', 'built-in'],
    ['IPM.Note.Microsoft.Voicemail.UM.CA', 'built-in'],
    ['IPM.Note.Microsoft.Fax', 'built-in'],
    ['IPM.Note.Rules.OofTemplate.Microsoft', 'built-in'],
    ['IPM.Note.Mobile.SMS', 'built-in'],
    ['IPM.Note.IMC.Notification', 'built-in'],
    ['IPM.Post.RSS', 'built-in'],
    ['IPM.TaskRequest', 'task-request'],
    ['IPM.TaskRequest.Update', 'task-request'],
    ['IPM.TaskRequest.Accept', 'task-response'],
    ['IPM.TaskRequest.Decline', 'task-response'],
    ['IPM.Outlook.Recall', 'recall'],
    ['IPM.Recall.Report.Success', 'recall'],
    ['IPM.Note', 'other'],
    ['IPM.Post', 'other'],
    ['IPM.Schedule.Meeting.Request', 'other'],
    ['REPORT.IPM.Note.NDR', 'other'],
  ];
  for (const [cls, kind] of table) assert.equal(judgeClass(cls).kind, kind, cls);
});

test('customContentClass maps header values to MAPI classes (MS-OXCMAIL)', () => {
  const msg = input(plain);
  assert.equal(customContentClass('InfoPathForm.X.Y'), 'IPM.InfoPathForm.X.Y');
  assert.equal(customContentClass('urn:content-class:custom.Expense'), 'IPM.Note.Custom.Expense');
  assert.equal(customContentClass('urn:content-classes:calendarmessage'), null);
  assert.equal(customContentClass(null), null);
  assert.equal(classifyCustomForm(msg), null);
});

test('policyFromConfig: defaults, overrides, wrong types keep defaults', () => {
  const d = policyFromConfig({});
  assert.deepEqual([...d.footerMethods].sort(), ['ADD', 'CANCEL', 'COUNTER', 'DECLINECOUNTER', 'REQUEST']);
  assert.deepEqual([d.footerTnefMeetings, d.footerCustomForms, d.footerTaskRequests], [true, true, true]);
  const o = policyFromConfig({ footer_methods: ['publish', ' Reply '], footer_tnef_meetings: false, footer_custom_forms: false, footer_task_requests: false });
  assert.deepEqual([...o.footerMethods].sort(), ['PUBLISH', 'REPLY']);
  assert.deepEqual([o.footerTnefMeetings, o.footerCustomForms, o.footerTaskRequests], [false, false, false]);
  const bad = policyFromConfig({ footer_methods: 'REQUEST', footer_tnef_meetings: 'no' });
  assert.equal(bad.footerMethods.has('CANCEL'), true);
  assert.equal(bad.footerTnefMeetings, true);
  assert.equal(policyFromConfig({ footer_methods: [] }).footerMethods.size, 0);
});

test('nothing throws: broken structures and bodies', () => {
  const broken: MessageStructure[] = [
    { parts: [], size: 0, damaged: true },
    // A parent pointing at itself and one pointing nowhere.
    { parts: [{ ...structure(cal('REQUEST')).parts[0]!, parent: 0 }, { ...structure(cal('REQUEST')).parts[0]!, index: 1, parent: 7 }], size: 1, damaged: true },
    structure(mixed(plain, { ...cal('REQUEST'), body: Buffer.from([0xff, 0xfe, 0, 0, 0x80]) }, tnef(Buffer.from([0x78, 0x9f, 0x3e, 0x22, 0, 0, 1, 8, 0x80, 7, 0, 0xff, 0xff, 0xff, 0x7f])))),
    structure(mixed({ type: 'text/calendar', params: { method: '' }, body: '' }, { type: 'application/ics' })),
  ];
  for (const s of broken) {
    assert.doesNotThrow(() => classifyCalendar({ structure: s, headers: [] }));
    assert.doesNotThrow(() => classifyCustomForm({ structure: s, headers: [['content-class', '']] }));
  }
});

test('hook modules register on message:classify and answer through the registry', async () => {
  const hooks = new HookRegistry(1000);
  const app: App = { config: { footer_methods: ['REQUEST'] }, log: () => undefined, hooks };
  await calendarClassify.init(app);
  await customFormClassify.init(app);
  assert.equal(calendarClassify.name, 'calendar-classify');
  assert.equal(customFormClassify.name, 'custom-form-classify');
  const meeting = await hooks.all('message:classify', input(alt(plain, cal('CANCEL'))));
  assert.equal(meeting.length, 2);
  assert.equal(meeting[0]?.kind, 'meeting');
  assert.equal(meeting[0]?.footer, false, 'the app config (footer_methods = [REQUEST]) is honoured');
  assert.equal(meeting[1], null);
  const form = await hooks.all('message:classify', input(mixed(plain, tnef(tnefFixtures.customForm()))));
  assert.equal(form[0], null);
  assert.equal(form[1]?.kind, 'custom-form');
  assert.equal(form[1]?.footer, true);
});

test('judgeClass: built-in names match whole class segments, not any custom name that starts the same', () => {
  const table: Array<[string, string]> = [
    ['IPM.Note.SecureTransfer.Expense', 'custom-form'],
    ['IPM.Post.RSSFeedback', 'custom-form'],
    ['IPM.Note.SMIMEDemoForm', 'custom-form'],
    ['IPM.Note.StorageQuotaWarningAck', 'custom-form'],
    ['IPM.Note.Secure', 'built-in'],
    ['IPM.Note.SMIME.MultipartSigned', 'built-in'],
    ['IPM.Note.rpmsg.Microsoft.Voicemail.UM.CA', 'built-in'],
    ['IPM.Note.StorageQuotaWarning.Warning', 'built-in'],
    ['IPM.Post.Rss', 'built-in'],
  ];
  for (const [cls, kind] of table) assert.equal(judgeClass(cls).kind, kind, cls);
});

/** Runs `body` (ESM, top-level await allowed) in a fresh node with only the registry loaded: nothing else keeps it alive. */
async function inFreshProcess(body: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const { spawn } = await import('node:child_process');
  const { fileURLToPath } = await import('node:url');
  const code = `import { HookRegistry, HookTimeoutError } from './lib/hooks.js';\n${body}`;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { cwd: fileURLToPath(new URL('../', import.meta.url)) });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => { stdout += d; });
    child.stderr.on('data', (d: Buffer) => { stderr += d; });
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`no exit within 20 s: ${stdout} ${stderr}`)); }, 20_000);
    child.on('exit', (c) => { clearTimeout(timer); resolve({ code: c, stdout, stderr }); });
  });
}

test('registry: a hook that never answers is cut off at the timeout, also when nothing else keeps the process alive (the filter command)', async () => {
  const r = await inFreshProcess(`
    const hooks = new HookRegistry(100);
    hooks.on('message:links', 'hangs', () => new Promise(() => {}));
    const started = Date.now();
    try { await hooks.first('message:links', {}); console.log('answered'); }
    catch (e) { console.log(e instanceof HookTimeoutError ? 'timeout' : 'other ' + e, Date.now() - started < 5000); }
  `);
  assert.equal(r.stdout.trim(), 'timeout true', `exit ${r.code}, stderr: ${r.stderr}`);
  assert.equal(r.code, 0);
});

test('registry: a hook whose answer breaks when looked at rejects the call instead of crashing the process', async () => {
  const r = await inFreshProcess(`
    const hooks = new HookRegistry(100);
    hooks.on('message:classify', 'odd', () => ({ get then() { throw new Error('boom'); } }));
    try { await hooks.all('message:classify', {}); console.log('answered'); }
    catch (e) { console.log('rejected: ' + e.message); }
  `);
  assert.equal(r.stdout.trim(), 'rejected: boom', `exit ${r.code}, stderr: ${r.stderr}`);
  assert.equal(r.code, 0);
});
