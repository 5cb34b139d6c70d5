// Regenerates fixtures/golden/<name>.eml from fixtures/mail/<name>.eml with the fixed test footer.
// Run on purpose only, after a deliberate change to the rewriter, then review `git diff fixtures/golden`:
//   node --import tsx spec/helpers/regen-golden.ts
// In: the fixtures. Out: one golden file per fixture (byte-identical to the input when nothing is added).

import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fixtureNames, GOLDEN_DIR, processMessage, readFixture, wantsFooter } from './mail-fixtures.js';

mkdirSync(GOLDEN_DIR, { recursive: true });
for (const name of fixtureNames()) {
  const r = await processMessage(readFixture(name), { wantFooter: wantsFooter(name) });
  writeFileSync(join(GOLDEN_DIR, `${name}.eml`), r.out);
  console.log(`${name.padEnd(28)} ${r.changed ? 'footer ' : 'same   '} ${r.decision}`);
}
