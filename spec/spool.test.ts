// Tests for lib/spool.ts: a spilled message never outlives dispose(), also when a write races it.
// Run: node --import tsx --test spec/spool.test.ts

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Spool } from '../lib/spool.js';

async function withDir(run: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'calfilter-spooltest-'));
  try {
    await run(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test('spool: a spilled message is read back whole and its file is gone after dispose', () =>
  withDir(async (dir) => {
    const spool = new Spool({ memoryLimit: 8, dir });
    for (const s of ['0123456', '789abcdef', 'ghij']) await spool.write(Buffer.from(s));
    assert.equal(spool.inMemory, false);
    await spool.finish();
    assert.equal((await spool.read(0, spool.size)).toString(), '0123456789abcdefghij');
    assert.equal((await readdir(dir)).length, 1);
    await spool.dispose();
    assert.deepEqual(await readdir(dir), []);
  }));

test('spool: a write that arrives while dispose() runs is refused and leaves no file behind', () =>
  withDir(async (dir) => {
    for (const spilledFirst of [true, false]) {
      const spool = new Spool({ memoryLimit: 8, dir });
      if (spilledFirst) await spool.write(Buffer.from('0123456789'));
      const disposing = spool.dispose();
      const late = assert.rejects(spool.write(Buffer.from('x'.repeat(64))), /dispose/); // spills, after dispose began
      await disposing;
      await late;
      await new Promise((r) => setTimeout(r, 50)); // anything still queued would have made its file by now
      assert.deepEqual(await readdir(dir), [], spilledFirst ? 'spilled before dispose' : 'in memory before dispose');
    }
  }));

test('spool: finish() resolves only once the spilled file is closed, so an error at close (NFS writes back then) is not missed', () =>
  withDir(async (dir) => {
    for (let i = 0; i < 5; i++) {
      const spool = new Spool({ memoryLimit: 8, dir });
      await spool.write(Buffer.from('0123456789abcdef'));
      await spool.finish();
      // checked at once: the file stream (private) must have closed its descriptor already
      const out = (spool as unknown as { file: { out: { closed: boolean } } }).file.out;
      assert.equal(out.closed, true, 'the spool file was still open when finish() resolved');
      await spool.dispose();
    }
  }));
