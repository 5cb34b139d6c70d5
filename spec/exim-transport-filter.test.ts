// Exim's transport_filter (deploy/exim): a real Exim 4 (the unpacked Debian binary) loaded with the
// recipe's router and transport, running "calendar-link-filter filter" once per recipient with
// the recipe's exim.yaml, delivering by LMTP to a private Dovecot; Redis holds bob's override.
// In: a meeting request to bob, carol and an unknown address; then one while the filter fails.
// Out: bob's and carol's own links read back over IMAP, nothing of the filter's log inside the
// mail, the unknown address bounced by Exim; exit 75 → deferred, nothing stored, delivered once
// on the retry. Skips (outside CI only) without Exim, Dovecot, redis-server or root.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { chmod, chown, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { simpleParser } from 'mailparser';
import { dovecotSkipReason, startDovecot } from './helpers/dovecot.js';
import { eximRecipe, eximSkipReason, startExim } from './helpers/exim.js';
import { imapFetchAll } from './helpers/mailbox-clients.js';
import { startRedis } from './helpers/redis.js';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const run = promisify(execFile);
const skip = eximSkipReason() ?? dovecotSkipReason();
const ALICE = 'alice@example.org';
const BOB = 'bob@example.org';
const CAROL = 'carol@example.org';
const NOBODY = 'nobody@example.org';
const UID = '040000008200E00074C5B7101A82E0080000000001';
const linkOn = (server: string) => `https://${server}/calendar/event?uid=${UID}&recurrence-id=&sequence=0`;
const FIXTURE = readFileSync(new URL('../fixtures/mail/exchange-online.eml', import.meta.url));
const message = (id: string) => Buffer.from(FIXTURE.toString('latin1').replace(/^Message-ID: .*$/m, `Message-ID: <${id}@example.org>`), 'latin1');

test('Exim transport_filter: each recipient gets their own link, the log stays out of the mail, exit 75 defers', { skip, timeout: 120_000 }, async (t) => {
  const redis = await startRedis();
  t.after(() => redis.stop());
  await run(process.execPath, ['--import', 'tsx', 'bin/calendar-link-filter.ts', 'overrides', '--redis', redis.url, 'set', BOB, '--server', 'bob-cal.example.org'], { cwd: ROOT, timeout: 20_000 });
  const dovecot = await startDovecot({ users: [ALICE, BOB, CAROL] });
  t.after(() => dovecot.stop());

  // What an installation has in /usr/local/bin, /etc/calendar-link-filter and /var/log: the CLI
  // (this checkout through tsx), the recipe's exim.yaml, and a log file the Exim user may write.
  const etc = await mkdtemp(join(tmpdir(), 'calfilter-exim-etc-'));
  t.after(() => rm(etc, { recursive: true, force: true }));
  await chmod(etc, 0o755);
  const bin = join(etc, 'calendar-link-filter');
  await writeFile(bin, `#!/bin/sh\ncd '${ROOT}' && exec '${process.execPath}' --import tsx bin/calendar-link-filter.ts "$@"\n`, { mode: 0o755 });
  const yaml = readFileSync(new URL('../deploy/exim/exim.yaml', import.meta.url), 'utf8');
  assert.equal(yaml.match(/^redis: redis:\/\/127\.0\.0\.1:6379$/gm)?.length, 1, 'exim.yaml: the redis line');
  const config = join(etc, 'exim.yaml');
  const recipeConfig = yaml.replace(/^redis: redis:\/\/127\.0\.0\.1:6379$/m, `redis: ${redis.url}`);
  await writeFile(config, recipeConfig, { mode: 0o644 });
  const logDir = join(etc, 'log');
  await mkdir(logDir);
  const exim = await startExim({
    localDomains: ['example.org'],
    routers: eximRecipe('router.conf.fragment', [['/etc/dovecot/users', dovecot.passwdFile]]),
    transports: eximRecipe('transport.conf.fragment', [
      ['/run/dovecot/lmtp', dovecot.lmtpSocket],
      ['/usr/local/bin/calendar-link-filter', bin],
      ['/etc/calendar-link-filter/exim.yaml', config],
      ['/var/log/calendar-link-filter/exim.log', join(logDir, 'exim.log')],
    ]),
  });
  t.after(() => exim.stop());
  const { stdout: eximUid } = await run('id', ['-u', 'Debian-exim']);
  await chown(logDir, Number(eximUid.trim()), 0);

  // 1. A meeting request to two mailboxes and an address the store does not have.
  const invite = message('exim-invite');
  await exim.submit(ALICE, [BOB, CAROL, NOBODY], invite);
  const mainlog = await exim.log();
  assert.match(mainlog, /=> bob <bob@example\.org> R=calfilter_store T=calfilter_store_lmtp C="250 /);
  assert.match(mainlog, /=> carol <carol@example\.org> R=calfilter_store T=calfilter_store_lmtp C="250 /);
  assert.match(mainlog, /\*\* nobody@example\.org: Unrouteable address/, 'unknown users never reach the filter or the store');
  const sent = await simpleParser(invite);
  const sentCal = sent.attachments.find((a) => a.contentType === 'text/calendar')!.content;
  for (const [who, own, other] of [[BOB, linkOn('bob-cal.example.org'), linkOn('site-cal.example.org')], [CAROL, linkOn('site-cal.example.org'), linkOn('bob-cal.example.org')]] as const) {
    const box = await imapFetchAll(dovecot.imapPort, who, dovecot.password);
    assert.equal(box.length, 1, `${who}: one copy`);
    const raw = box[0]!;
    const got = await simpleParser(raw);
    assert.ok(got.text?.includes(own), `${who}: own link missing from text/plain:\n${got.text}`);
    assert.ok(typeof got.html === 'string' && got.html.includes(`href="${own.replaceAll('&', '&amp;')}"`), `${who}: own link missing from text/html`);
    assert.ok(!raw.toString('latin1').includes(other.split('/calendar')[0]!), `${who}: someone else's link`);
    assert.ok(got.attachments.find((a) => a.contentType === 'text/calendar')?.content.equals(sentCal), `${who}: text/calendar changed`);
    // Every header line is a header line: nothing the filter logged slipped into the message.
    const head = raw.subarray(0, raw.indexOf('\r\n\r\n')).toString('latin1');
    for (const line of head.split('\r\n')) assert.match(line, /^([A-Za-z0-9-]+: |[ \t])/, `${who}: a stray line in the header: ${line}`);
    assert.doesNotMatch(raw.toString('latin1'), /"event":/, `${who}: the filter's log inside the message`);
    // Dovecot's lines, the filter's marker on top of what Exim handed it (its Received line, then
    // the original header block, unchanged and last).
    assert.match(head, /\r\nX-Calendar-Link: added\r\nReceived: from root by exim\.calfilter\.test /, `${who}: marker or Exim's Received line`);
    assert.ok(head.endsWith(`\r\n${invite.subarray(0, invite.indexOf('\r\n\r\n')).toString('latin1')}`), `${who}: the original header block changed:\n${head}`);
  }
  // The bounce for nobody went through the same transport to alice's mailbox.
  await dovecot.waitFor(ALICE, 1, 10_000);
  const filterLog = await readFile(join(logDir, 'exim.log'), 'utf8');
  assert.match(filterLog, /"event":"overrides\.store"/, "the filter's log went to its own file");

  // 2. The filter fails for the next message (its spool directory cannot be created): it exits 75,
  // Exim defers carol, nothing reaches the store. Fixed, the retry delivers it once.
  await writeFile(config, `${recipeConfig}\nspool_dir: ${join(etc, 'missing', 'spool')}\nspool_memory_limit: 0\n`);
  await exim.submit(ALICE, [CAROL], message('exim-held'));
  assert.match(await exim.log(), /== carol@example\.org R=calfilter_store T=calfilter_store_lmtp defer \(-24\): transport filter process failed \(75\)/);
  assert.equal(await exim.queueCount(), 1, 'deferred, still queued');
  assert.equal(await dovecot.count(CAROL), 1, 'nothing stored for the failed attempt');

  await writeFile(config, recipeConfig);
  await exim.runQueue();
  assert.equal(await exim.queueCount(), 0);
  const box = await imapFetchAll(dovecot.imapPort, CAROL, dovecot.password);
  assert.equal(box.length, 2, 'delivered once on the retry');
  const held = box.find((r) => r.includes('Message-ID: <exim-held@example.org>'));
  assert.ok(held && (await simpleParser(held)).text?.includes(linkOn('site-cal.example.org')), 'the retried copy has its footer');
});
