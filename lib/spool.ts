// The spool: one message's bytes, in memory while small, in a temporary file once large.
// In: chunks written as they arrive (from the SMTP data stream, stdin, or a rewrite).
// Out: the same bytes, as often as needed, whole or by byte range, as Buffers or streams.
// Fails: a file-system error rejects write()/finish(); dispose() always removes the temporary
// file (also after errors), so a spool never outlives its transaction.

import { createReadStream, createWriteStream, type WriteStream } from 'node:fs';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';

export interface SpoolOptions {
  /** Bytes kept in memory before spilling to a file. 0 = always a file. */
  memoryLimit: number;
  /** Directory for the temporary file; default: the system temporary directory. */
  dir?: string;
}

/** Read side of a finished spool; what the pipeline's steps take. */
export interface SpoolReader {
  readonly size: number;
  /** True when the bytes are in memory (then `buffer()` is free). */
  readonly inMemory: boolean;
  /** A stream of bytes [start, end) — end exclusive, default the whole message. */
  stream(start?: number, end?: number): Readable;
  /** Bytes [start, end) as one Buffer; for the small ranges a classifier or rewriter needs. */
  read(start: number, end: number): Promise<Buffer>;
  /** The whole message as one Buffer; only when inMemory (throws otherwise, to keep memory bounded). */
  buffer(): Buffer;
}

export class Spool implements SpoolReader {
  private chunks: Buffer[] = [];
  private mem = 0;
  private file: { dir: string; path: string; out: WriteStream } | null = null;
  private pending: Promise<void> = Promise.resolve();
  private finished = false;
  private disposed = false;
  /** Set synchronously when the first chunk goes to disk, so later chunks never overtake it. */
  private spilling = false;
  size = 0;

  constructor(private readonly opts: SpoolOptions) {}

  get inMemory(): boolean {
    return !this.spilling;
  }

  get path(): string | null {
    return this.file?.path ?? null;
  }

  /** Append a chunk. Resolves when the chunk is safe (in memory, or flushed to the file stream). */
  write(chunk: Buffer): Promise<void> {
    // after dispose() a write must not start a file that nothing would remove any more
    if (this.disposed) return Promise.reject(new Error('spool: write after dispose'));
    if (this.finished) return Promise.reject(new Error('spool: write after finish'));
    this.size += chunk.length;
    if (!this.spilling && this.mem + chunk.length <= this.opts.memoryLimit) {
      this.chunks.push(chunk);
      this.mem += chunk.length;
      return Promise.resolve();
    }
    this.spilling = true;
    this.pending = this.pending.then(() => this.writeToFile(chunk));
    return this.pending;
  }

  private async writeToFile(chunk: Buffer): Promise<void> {
    if (this.file === null) {
      const dir = await mkdtemp(join(this.opts.dir || tmpdir(), 'calfilter-'));
      const path = join(dir, 'message.eml');
      const out = createWriteStream(path, { flags: 'wx', mode: 0o600 });
      this.file = { dir, path, out };
      const held = Buffer.concat(this.chunks, this.mem);
      this.chunks = [];
      this.mem = 0;
      if (held.length) await writeStream(out, held);
    }
    await writeStream(this.file.out, chunk);
  }

  /** All bytes written; resolves once they are readable. */
  async finish(): Promise<SpoolReader> {
    await this.pending;
    this.finished = true;
    if (this.file) {
      const out = this.file.out;
      // 'close', not end()'s callback ('finish'): close(2) may still fail (NFS writes back then), and
      // a file that did not close cleanly must not be relayed as if it were whole
      await new Promise<void>((resolve, reject) => {
        if (out.destroyed) return reject(new Error('spool: the file was closed before finish'));
        out.once('error', reject);
        out.once('close', () => resolve());
        out.end();
      });
    }
    return this;
  }

  stream(start = 0, end = this.size): Readable {
    if (end <= start) return Readable.from([]);
    if (this.file) return createReadStream(this.file.path, { start, end: end - 1, highWaterMark: 64 * 1024 });
    return Readable.from(sliceChunks(this.chunks, start, end));
  }

  async read(start: number, end: number): Promise<Buffer> {
    end = Math.min(end, this.size);
    if (end <= start) return Buffer.alloc(0);
    if (!this.file) return Buffer.concat(sliceChunks(this.chunks, start, end));
    const fh = await open(this.file.path, 'r');
    try {
      const buf = Buffer.allocUnsafe(end - start);
      let got = 0;
      while (got < buf.length) {
        const { bytesRead } = await fh.read(buf, got, buf.length - got, start + got);
        if (bytesRead === 0) break;
        got += bytesRead;
      }
      return buf.subarray(0, got);
    } finally {
      await fh.close();
    }
  }

  buffer(): Buffer {
    if (this.file) throw new Error('spool: message is on disk; stream it');
    if (this.chunks.length !== 1) {
      this.chunks = [Buffer.concat(this.chunks, this.mem)];
    }
    return this.chunks[0] ?? Buffer.alloc(0);
  }

  /** Free memory and remove the temporary file. Safe to call more than once. */
  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    this.chunks = [];
    await this.pending.catch(() => undefined);
    if (this.file) {
      const { dir, out } = this.file;
      out.destroy();
      await rm(dir, { recursive: true, force: true });
    }
  }
}

/** Spool a readable stream fully. The spool is disposed if reading fails. */
export async function spoolStream(input: AsyncIterable<Buffer | string>, opts: SpoolOptions): Promise<Spool> {
  const spool = new Spool(opts);
  try {
    for await (const chunk of input) await spool.write(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
    await spool.finish();
    return spool;
  } catch (err) {
    await spool.dispose();
    throw err;
  }
}

/** A finished in-memory spool holding `buf` (tests, the `filter` command on small input). */
export function spoolFromBuffer(buf: Buffer): Spool {
  const spool = new Spool({ memoryLimit: Number.MAX_SAFE_INTEGER });
  void spool.write(buf);
  void spool.finish();
  return spool;
}

function writeStream(out: WriteStream, chunk: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    out.once('error', onError);
    const ok = out.write(chunk, (err) => {
      out.off('error', onError);
      if (err) reject(err);
      else if (ok) resolve();
    });
    if (!ok) out.once('drain', () => resolve());
  });
}

function sliceChunks(chunks: Buffer[], start: number, end: number): Buffer[] {
  const out: Buffer[] = [];
  let pos = 0;
  for (const c of chunks) {
    const cStart = pos;
    const cEnd = pos + c.length;
    pos = cEnd;
    if (cEnd <= start) continue;
    if (cStart >= end) break;
    out.push(c.subarray(Math.max(0, start - cStart), Math.min(c.length, end - cStart)));
  }
  return out;
}
