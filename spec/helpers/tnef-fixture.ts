// Test-only TNEF writer: builds small synthetic winmail.dat streams for the reader and classifier tests.
// In: a description (legacy attMessageClass, MAPI PR_MESSAGE_CLASS, filler properties before it).
// Out: a Buffer laid out as MS-OXTNEF describes (signature, key, attributes with checksums).
// Not for production: it writes only what the tests need and trusts its input.

export const TNEF_SIGNATURE = 0x223e9f78;
const ATT_TNEF_VERSION = 0x00089006;
const ATT_OEM_CODEPAGE = 0x00069007;
const ATT_MESSAGE_CLASS = 0x00078008;
const ATT_SUBJECT = 0x00018004;
const ATT_MSG_PROPS = 0x00069003;
const ATT_ATTACH_RENDDATA = 0x00069002;

const PT_LONG = 0x0003;
const PT_BOOLEAN = 0x000b;
const PT_SYSTIME = 0x0040;
const PT_STRING8 = 0x001e;
const PT_UNICODE = 0x001f;
const PT_BINARY = 0x0102;
const PT_OBJECT = 0x000d;
const MV = 0x1000;

export interface MapiProp {
  type: number;
  id: number;
  /** For named properties (id >= 0x8000): numeric id or string name, with a GUID. */
  named?: { guid: Buffer; id?: number; name?: string };
  /** One Buffer per value: fixed-size values unpadded, variable ones as raw bytes. */
  values: Buffer[];
}

export interface TnefSpec {
  legacyClass?: string;
  mapiClass?: string;
  /** PR_MESSAGE_CLASS as PT_UNICODE (default) or PT_STRING8. */
  mapiUnicode?: boolean;
  /** Write named, multi-valued, binary and object properties before the class to exercise the walker. */
  filler?: boolean;
  subject?: string;
  attachments?: number;
}

const pad4 = (b: Buffer): Buffer => (b.length % 4 === 0 ? b : Buffer.concat([b, Buffer.alloc(4 - (b.length % 4))]));
const u16 = (n: number): Buffer => { const b = Buffer.alloc(2); b.writeUInt16LE(n); return b; };
const u32 = (n: number): Buffer => { const b = Buffer.alloc(4); b.writeUInt32LE(n >>> 0); return b; };

/** One attribute: level, id, length, data, checksum (sum of data bytes mod 65536). */
export function attribute(level: 1 | 2, id: number, data: Buffer): Buffer {
  let sum = 0;
  for (const byte of data) sum = (sum + byte) & 0xffff;
  return Buffer.concat([Buffer.from([level]), u32(id), u32(data.length), data, u16(sum)]);
}

const VARIABLE = new Set([PT_STRING8, PT_UNICODE, PT_BINARY, PT_OBJECT]);

/** A counted MAPI property list (the body of attMsgProps). */
export function propertyList(props: MapiProp[]): Buffer {
  const chunks: Buffer[] = [u32(props.length)];
  for (const p of props) {
    chunks.push(u16(p.type), u16(p.id));
    if (p.named) {
      chunks.push(p.named.guid);
      if (p.named.name !== undefined) {
        const name = Buffer.from(p.named.name + '\0', 'utf16le');
        chunks.push(u32(1), u32(name.length), pad4(name));
      } else {
        chunks.push(u32(0), u32(p.named.id ?? 0));
      }
    }
    const base = p.type & ~MV;
    if ((p.type & MV) !== 0 || VARIABLE.has(base)) chunks.push(u32(p.values.length));
    for (const v of p.values) {
      if (VARIABLE.has(base)) chunks.push(u32(v.length));
      chunks.push(pad4(v));
    }
  }
  return Buffer.concat(chunks);
}

const unicode = (s: string): Buffer => Buffer.from(s + '\0', 'utf16le');
const ansi = (s: string): Buffer => Buffer.from(s + '\0', 'latin1');

function fillerProps(): MapiProp[] {
  const guid = Buffer.from('00062002000000000000C00000000046', 'hex');
  return [
    { type: PT_BOOLEAN, id: 0x0002, values: [u16(1)] },
    { type: PT_LONG, id: 0x0017, values: [u32(1)] },
    { type: PT_SYSTIME, id: 0x0039, values: [Buffer.alloc(8, 7)] },
    { type: PT_UNICODE, id: 0x0037, values: [unicode('Synthetic subject')] },
    { type: PT_BINARY, id: 0x0071, values: [Buffer.from([1, 2, 3, 4, 5])] },
    { type: PT_OBJECT, id: 0x3701, values: [Buffer.concat([Buffer.alloc(16, 0x11), Buffer.from('obj')])] },
    { type: PT_LONG | MV, id: 0x1234, values: [u32(1), u32(2), u32(3)] },
    { type: PT_UNICODE | MV, id: 0x1235, values: [unicode('a'), unicode('bc')] },
    { type: PT_LONG, id: 0x8205, named: { guid, id: 0x8205 }, values: [u32(2)] },
    { type: PT_STRING8, id: 0x8001, named: { guid, name: 'Keywords' }, values: [ansi('x')] },
  ];
}

/** Builds a TNEF stream from a description. */
export function buildTnef(spec: TnefSpec): Buffer {
  const parts: Buffer[] = [u32(TNEF_SIGNATURE), u16(0x0001)];
  parts.push(attribute(1, ATT_TNEF_VERSION, u32(0x00010000)));
  parts.push(attribute(1, ATT_OEM_CODEPAGE, Buffer.concat([u32(1252), u32(0)])));
  if (spec.legacyClass !== undefined) parts.push(attribute(1, ATT_MESSAGE_CLASS, ansi(spec.legacyClass)));
  if (spec.subject !== undefined) parts.push(attribute(1, ATT_SUBJECT, ansi(spec.subject)));
  const props: MapiProp[] = spec.filler ? fillerProps() : [];
  if (spec.mapiClass !== undefined) {
    const asUnicode = spec.mapiUnicode ?? true;
    props.push({ type: asUnicode ? PT_UNICODE : PT_STRING8, id: 0x001a, values: [asUnicode ? unicode(spec.mapiClass) : ansi(spec.mapiClass)] });
  }
  if (props.length > 0) parts.push(attribute(1, ATT_MSG_PROPS, propertyList(props)));
  for (let i = 0; i < (spec.attachments ?? 0); i++) parts.push(attribute(2, ATT_ATTACH_RENDDATA, Buffer.alloc(14, i)));
  return Buffer.concat(parts);
}

/** Ready-made streams for the tests. */
export const tnefFixtures = {
  meetingRequest: (): Buffer => buildTnef({ legacyClass: 'IPM.Microsoft Schedule.MtgReq', mapiClass: 'IPM.Schedule.Meeting.Request', filler: true }),
  meetingCancel: (): Buffer => buildTnef({ legacyClass: 'IPM.Microsoft Schedule.MtgCncl' }),
  meetingAccept: (): Buffer => buildTnef({ legacyClass: 'IPM.Microsoft Schedule.MtgRespP' }),
  appointment: (): Buffer => buildTnef({ legacyClass: 'IPM.Appointment', filler: true }),
  customForm: (): Buffer => buildTnef({ legacyClass: 'IPM.Microsoft Mail.Note', mapiClass: 'IPM.Note.MyCompany.Expense', filler: true }),
  customPost: (): Buffer => buildTnef({ mapiClass: 'IPM.Post.Travel', mapiUnicode: false }),
  taskRequest: (): Buffer => buildTnef({ legacyClass: 'IPM.TaskRequest', mapiClass: 'IPM.TaskRequest', filler: true }),
  taskAccept: (): Buffer => buildTnef({ mapiClass: 'IPM.TaskRequest.Accept' }),
  smime: (): Buffer => buildTnef({ legacyClass: 'IPM.Microsoft Mail.Note', mapiClass: 'IPM.Note.SMIME', filler: true }),
  note: (): Buffer => buildTnef({ legacyClass: 'IPM.Microsoft Mail.Note', attachments: 1 }),
  recall: (): Buffer => buildTnef({ legacyClass: 'IPM.Outlook.Recall', mapiClass: 'IPM.Outlook.Recall' }),
  /** A meeting request cut in the middle of its property block. */
  truncated: (): Buffer => { const full = tnefFixtures.meetingRequest(); return full.subarray(0, full.length - 40); },
  garbage: (): Buffer => Buffer.from('this is not a TNEF stream at all, just text\r\n'),
};
