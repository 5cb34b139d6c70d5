// The skeleton of an in-memory message: the bytes mailsplit's decisions depend on, for the structure pass.
// In: the raw message. Out: a shorter copy in which long runs of body lines are cut down to their first
// and last line, plus the gaps, so that every chunk mailsplit emits maps back to the original bytes.
// Why: mailsplit looks at every byte and every line in JavaScript, and body lines only ever pass through;
// a 12 KB meeting request has ~1 KB that can matter. Fails: never; the caller checks the result (a
// structure that comes out damaged, or chunks that do not line up, are made again from the whole message).
//
// What mailsplit decides per line: a line opening with "--" (or CR "--") may be a delimiter; in a header
// block (from the message start, or a delimiter, to the first empty line) every line is a header. Every
// other line is body text that only extends the body (or preamble/epilogue) chunk it belongs to. So the
// skeleton keeps every "--" line, every line that may be in a header block, and the first and last line
// of each run of other lines: chunk boundaries and the line break trimmed in front of a delimiter stay
// where they were, only the middle of a run is left out. The last line, if unterminated, stays whole.

export interface Skeleton {
  /** What mailsplit reads: the message itself when nothing was worth leaving out. */
  bytes: Buffer;
  /** Left-out runs in order: `at` is the skeleton offset they were cut at, `len` their length. */
  gaps: Array<{ at: number; len: number }>;
}

/** A run shorter than this stays whole: cutting it saves less than it costs. */
const MIN_GAP = 256;

/** End of the first empty line ("\n" or "\r\n") at or after line start `from`; the message end when none. */
function headerBlockEnd(buf: Buffer, from: number): number {
  for (let i = from; i < buf.length; ) {
    const nl = buf.indexOf(0x0a, i);
    if (nl < 0) break;
    if (nl === i || (nl === i + 1 && buf[i] === 0x0d)) return nl + 1;
    i = nl + 1;
  }
  return buf.length;
}

const DASHES = Buffer.from('--');

/** Byte ranges that stay as they are: the root header block, and each "--" line with the header block after it. */
function keptRanges(buf: Buffer): Array<[number, number]> {
  const kept: Array<[number, number]> = [[0, headerBlockEnd(buf, 0)]];
  // One search for "--", then a look at what stands in front: a line opening with "--" follows an LF,
  // one opening with CR "--" follows LF CR. Found in order, so the ranges come sorted.
  for (let at = buf.indexOf(DASHES, 1); at >= 0; at = buf.indexOf(DASHES, at + 1)) {
    const lineStart = buf[at - 1] === 0x0a ? at : buf[at - 1] === 0x0d && buf[at - 2] === 0x0a ? at - 1 : -1;
    if (lineStart < 0) continue;
    const nl = buf.indexOf(0x0a, lineStart);
    kept.push([lineStart, nl < 0 ? buf.length : headerBlockEnd(buf, nl + 1)]);
  }
  return kept;
}

/** Collects the skeleton: copied ranges of the message, and the gaps left between them. */
class SkeletonWriter {
  private readonly pieces: Buffer[] = [];
  readonly gaps: Skeleton['gaps'] = [];
  private size = 0;

  constructor(private readonly buf: Buffer) {}

  copy(s: number, e: number): void {
    this.pieces.push(this.buf.subarray(s, e));
    this.size += e - s;
  }

  /** [s, e) holds whole lines only: keep the first and the last, leave out what lies between. */
  run(s: number, e: number): void {
    const firstEnd = this.buf.indexOf(0x0a, s) + 1;
    const lastStart = this.buf.lastIndexOf(0x0a, e - 2) + 1;
    if (lastStart - firstEnd < MIN_GAP) return this.copy(s, e);
    this.copy(s, firstEnd);
    this.gaps.push({ at: this.size, len: lastStart - firstEnd });
    this.copy(lastStart, e);
  }

  result(): Skeleton {
    return { bytes: this.gaps.length ? Buffer.concat(this.pieces, this.size) : this.buf, gaps: this.gaps };
  }
}

export function skeleton(buf: Buffer): Skeleton {
  const w = new SkeletonWriter(buf);
  let pos = 0;
  for (const [s, e] of keptRanges(buf)) {
    if (s > pos) w.run(pos, s);
    if (e > pos) w.copy(Math.max(s, pos), e);
    pos = Math.max(pos, e);
  }
  const lastLineEnd = buf.lastIndexOf(0x0a) + 1;
  if (lastLineEnd > pos) w.run(pos, lastLineEnd);
  if (buf.length > Math.max(pos, lastLineEnd)) w.copy(Math.max(pos, lastLineEnd), buf.length);
  return w.result();
}

/**
 * Maps what mailsplit emits for a skeleton back to the original bytes, chunk by chunk in order.
 * A gap lies strictly inside a run, so a chunk that ends at a gap's offset ends after the gap (the
 * run's last line was trimmed away as the delimiter's line break) and the next one starts after it.
 * The map counts the bytes it is asked for: on broken input mailsplit may emit some twice, and then
 * the chunks no longer line up with the skeleton (exact() is false) and the mapping means nothing.
 */
export class SkeletonMap {
  private at = 0;
  private shift = 0;
  private next = 0;

  constructor(private readonly raw: Buffer, private readonly skel: Skeleton) {}

  /** True when mailsplit emitted every skeleton byte exactly once, in order. */
  exact(): boolean {
    return this.at === this.skel.bytes.length;
  }

  private toOriginal(at: number): number {
    const gaps = this.skel.gaps;
    while (this.next < gaps.length && gaps[this.next].at <= at) this.shift += gaps[this.next++].len;
    return at + this.shift;
  }

  /** The original bytes behind the next `len` skeleton bytes. */
  take(len: number): Buffer {
    const start = this.toOriginal(this.at);
    this.at += len;
    return this.raw.subarray(start, this.toOriginal(this.at));
  }
}
