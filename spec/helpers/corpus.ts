// Test helper: reads the shared real-world corpus (../shared/corpus next to the repository) at test time.
// In: paths relative to the corpus. Out: file bytes, EXPECTED.tsv rows, MANIFEST facts, and a tiny
// extractor for one base64 part of an email (enough for TNEF attachments before the structure pass).
// Fails soft: when the corpus is absent every loader returns [] / null and CORPUS_DIR is null, so the
// tests can print a skip message instead of failing. The corpus is never copied into the repo.

import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const CANDIDATE = join(REPO_ROOT, '..', 'shared', 'corpus');

/** Absolute corpus directory, or null when it is not present on this machine. */
export const CORPUS_DIR: string | null = existsSync(join(CANDIDATE, 'EXPECTED.tsv')) ? CANDIDATE : null;

export const CORPUS_SKIP_MESSAGE = `corpus not found at ${CANDIDATE}; corpus tests skipped`;

export function corpusFile(rel: string): Buffer | null {
  if (CORPUS_DIR === null) return null;
  const p = join(CORPUS_DIR, rel);
  return existsSync(p) ? readFileSync(p) : null;
}

export interface ExpectedRow {
  path: string;
  /** F = footer added, U = unchanged. */
  expected: 'F' | 'U';
  kind: string;
}

/** Rows of EXPECTED.tsv (the emails), or [] without the corpus. */
export function expectedRows(): ExpectedRow[] {
  const text = corpusFile('EXPECTED.tsv')?.toString('utf8');
  if (!text) return [];
  return text.split(/\r?\n/).slice(1).filter((l) => l.trim() !== '').map((line) => {
    const [path, expected, kind] = line.split('\t');
    return { path: path!, expected: expected === 'F' ? 'F' : 'U', kind: kind ?? '' };
  });
}

/** MANIFEST.tsv rows as { local_path, generator, kind, notes, … }, or []. */
export function manifestRows(): Array<Record<string, string>> {
  const text = corpusFile('MANIFEST.tsv')?.toString('utf8');
  if (!text) return [];
  const [head, ...lines] = text.split(/\r?\n/).filter((l) => l.trim() !== '');
  const keys = head!.split('\t');
  return lines.map((l) => Object.fromEntries(l.split('\t').map((v, i) => [keys[i] ?? String(i), v])));
}

/** Corpus-relative paths of files whose name ends with `suffix`. */
export function corpusFiles(suffix: string): string[] {
  if (CORPUS_DIR === null) return [];
  return (readdirSync(CORPUS_DIR, { recursive: true }) as string[])
    .filter((f) => f.toLowerCase().endsWith(suffix))
    .map((f) => f.split('\\').join('/'))
    .sort();
}

/**
 * The base64 body of the first part whose Content-Type matches `type`, decoded. Deliberately naive
 * (header block up to the blank line, body up to the next boundary-looking line): test use only.
 */
export function extractBase64Part(eml: Buffer, type: RegExp): Buffer | null {
  const text = eml.toString('latin1');
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    if (!/^content-type:/i.test(lines[i]!)) continue;
    let header = lines[i]!;
    let j = i + 1;
    // the rest of this part's header block (other fields and folded lines)
    for (; j < lines.length && lines[j] !== ''; j++) header += '\n' + lines[j];
    if (!type.test(header)) continue;
    const body: string[] = [];
    for (j += 1; j < lines.length && !/^\s?--/.test(lines[j]!); j++) body.push(lines[j]!);
    return Buffer.from(body.join(''), 'base64');
  }
  return null;
}
