// Test peer: a private Postfix instance on loopback, configured by deploy/postfix/after-queue
// (or another recipe folder of deploy/postfix, loaded the same way: see PostfixRecipe).
// In: the filter's port and a sink's port. Out: Postfix's submission and reinjection ports, its
// queue (postqueue -j), flush, and its log; all of it in one fresh temporary directory.
// Fails: a refused start rejects with Postfix's own log; stop() (also run when the test process
// exits) stops the master and removes the directory. Needs root and the postfix package.
//
// How the instance is private (Postfix >= 3.4, checked on Debian 12's 3.7 as root):
// - `postfix -c DIR/etc start` with our own main.cf and master.cf. As root, Postfix accepts any
//   config directory: neither alternate_config_directories in /etc/postfix/main.cf nor postmulti
//   is needed, and the system instance (if any) is left alone.
// - queue_directory and data_directory point into DIR; `postfix start` creates what it needs in
//   them, owned by the postfix user (post-install create-missing). DIR is 0755 so that user can
//   reach them.
// - Our master.cf runs nothing chrooted (no copies of /etc files needed) and only on 127.0.0.1.
// - maillog_file (with the postlog service) writes the log to DIR/maillog: no syslog needed.
// - Every destination goes to the sink (transport_maps = static:…), nothing is delivered locally,
//   no DNS is asked, and deferred mail is retried every second or two.

import { execFile, spawnSync } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from './filter-process.js';
import { until } from './until.js';

const run = promisify(execFile);
const FRAGMENTS = new URL('../../deploy/postfix/after-queue/', import.meta.url);
const MILTER_FRAGMENTS = new URL('../../deploy/milter/', import.meta.url);
// Postfix's commands live in /usr/sbin, which a non-root PATH may lack.
const ENV = { ...process.env, PATH: `${process.env.PATH ?? '/usr/bin:/bin'}:/usr/sbin:/sbin` };
const TIMEOUT = 30_000;

const LIVE = new Map<string, string>(); // temp dir → config dir
process.on('exit', () => {
  for (const [dir, etc] of LIVE) {
    spawnSync('postfix', ['-c', etc, 'stop'], { env: ENV, stdio: 'ignore', timeout: 10_000 });
    rmSync(dir, { recursive: true, force: true });
  }
});

export interface QueueEntry {
  queue_name: string; // incoming | active | deferred | hold | maildrop
  queue_id: string;
  sender: string;
  recipients: Array<{ address: string; delay_reason?: string }>;
}

export interface PostfixInstance {
  /** The public smtpd (where tests submit mail). */
  smtpPort: number;
  /** The after-filter smtpd of master.cf.fragment (where the filter reinjects). */
  reinjectPort: number;
  configDir: string;
  queueDir: string;
  /** `postfix stop` and remove the directory; safe to call twice. */
  stop(): Promise<void>;
  /** `postqueue -f`: attempt every queued message now. */
  flush(): Promise<void>;
  /** `postqueue -j`, parsed. */
  queue(): Promise<QueueEntry[]>;
  queueIds(): Promise<string[]>;
  /** The whole maillog so far. */
  log(): Promise<string>;
  /**
   * For a failure message: the queue now, then the maillog's last lines (CI shows only the start
   * of a long failure text, and the start of the whole log is Postfix starting up).
   */
  report(lines?: number): Promise<string>;
}

export interface PostfixOptions {
  /** Where the content filter listens (replaces 10025 in main.cf.fragment). */
  filterPort: number;
  /** Where every message finally goes. */
  sinkPort: number;
  /** Extra main.cf settings, applied last with `postconf -e` (e.g. `{ soft_bounce: 'yes' }`). */
  main?: Record<string, string>;
  /**
   * Domains delivered elsewhere than the sink, e.g. `{ 'example.org': 'lmtp:[127.0.0.1]:24' }`
   * (an inline: transport map); every other destination still goes to the sink.
   */
  routes?: Record<string, string>;
  /** Another recipe folder of deploy/postfix instead of after-queue (see PostfixRecipe). */
  recipe?: PostfixRecipe;
  /**
   * Milter mode: deploy/milter/main.cf.fragment (smtpd_milters) with this port instead of the
   * after-queue recipe; filterPort is then ignored and nothing listens on reinjectPort.
   */
  milterPort?: number;
}

/**
 * A recipe folder loaded verbatim except its loopback endpoints, like after-queue. Its
 * main.cf.fragment and master.cf.fragment are appended to the base files; its lookup tables are
 * copied into the config directory, and `/etc/postfix/NAME` in main.cf.fragment points there.
 */
export interface PostfixRecipe {
  /** Folder under deploy/postfix/, e.g. 'after-queue-lmtp'. */
  dir: string;
  /**
   * Substitutions per file of the folder ('main.cf.fragment', 'master.cf.fragment', a table):
   * each pattern must match exactly once, or the recipe drifted and the start fails. The
   * replacement may say {reinjectPort} (the port picked for the reinjection smtpd).
   */
  replace: Record<string, Array<[RegExp, string]>>;
  /** Lookup tables of the folder (file names) that main.cf.fragment names as /etc/postfix/NAME. */
  tables?: string[];
  /** Those of `tables` to compile with postmap (hash:, btree:, cdb:). */
  postmap?: string[];
}

/**
 * Why the Postfix tests cannot run here, or undefined when they can. Under CI (CI set) this is
 * always undefined: CI must install Postfix (.ci/run), and a missing one must fail, not skip.
 */
/**
 * Mail held because the content filter on PORT is down: waits until Postfix logged, for the queue
 * file that cleanup gave MESSAGE_ID, `attempts` delivery attempts that each deferred every one of
 * its `recipients` with "connection refused" for that port, and answers the queue id. Read from
 * the log, not from `postqueue -j`: between attempts the file moves between the deferred and the
 * active queue, and a poll can miss the former. A flush every 3 s, because a queue scan that meets
 * the file while it is still in delivery skips it and Postfix then waits far longer than the
 * backoff times of this instance.
 */
export async function refusedWhileDown(postfix: PostfixInstance, messageId: string, port: number,
  recipients: number, attempts: number, ms = 75_000): Promise<string> {
  const id = await until(`Postfix to queue ${messageId}`, 15_000, async () =>
    new RegExp(`: ([0-9A-Za-z]+): message-id=<${escapeRegExp(messageId)}>$`, 'm').exec(await postfix.log())?.[1], () => postfix.report());
  const refused = new RegExp(`: ${id}: to=<[^>]+>, relay=none, .*status=deferred \\(connect to 127\\.0\\.0\\.1\\[127\\.0\\.0\\.1\\]:${port}: Connection refused\\)$`, 'gm');
  let flushed = Date.now();
  await until(`${attempts} attempts to deliver ${messageId} that found the filter down`, ms, async () => {
    if (((await postfix.log()).match(refused)?.length ?? 0) >= attempts * recipients) return true;
    if (Date.now() - flushed > 3_000) { flushed = Date.now(); await postfix.flush(); }
    return undefined;
  }, () => postfix.report());
  return id;
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

export function postfixSkipReason(): string | undefined {
  if (process.env.CI) return undefined;
  const probe = spawnSync('postconf', ['-d', '-h', 'mail_version'], { env: ENV, encoding: 'utf8' });
  if (probe.error) return 'postfix is not installed (apt-get install postfix; see .ci/run)';
  if (process.getuid?.() !== 0) return 'a private Postfix instance must be started as root';
  return undefined;
}

export async function startPostfix(opts: PostfixOptions): Promise<PostfixInstance> {
  const version = await postconf(['-d', '-h', 'mail_version']).catch((err: Error) => {
    throw new Error(`postfix is not usable here (install it as .ci/run does): ${err.message}`);
  });
  const [major = 0, minor = 0] = version.split('.').map(Number);
  if (major < 3 || (major === 3 && minor < 4)) throw new Error(`Postfix ${version}: maillog_file needs 3.4 or later`);

  const [smtpPort, reinjectPort] = await twoPorts();
  const dir = await mkdtemp(join(tmpdir(), 'calfilter-postfix-'));
  await chmod(dir, 0o755);
  const etc = join(dir, 'etc');
  const queueDir = join(dir, 'queue');
  const maillog = join(dir, 'maillog');
  LIVE.set(dir, etc);

  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    // "not running" is an error exit too; either way nothing of this instance is left.
    await run('postfix', ['-c', etc, 'stop'], { env: ENV, timeout: TIMEOUT }).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
    LIVE.delete(dir);
  };

  try {
    await mkdir(etc);
    await mkdir(queueDir, { mode: 0o755 }); // Postfix fills it; data_directory it makes itself
    let main: string;
    let master: string;
    if (opts.recipe) {
      ({ main, master } = await loadRecipe(opts.recipe, etc, reinjectPort));
      // A parameter the recipe sets (relay_domains, transport_maps) replaces the base line, so
      // Postfix reads each once and warns about no "overriding earlier entry".
      const own = new Set([...main.matchAll(/^([a-z0-9_]+)\s*=/gm)].map((m) => m[1]));
      const base = baseMain(dir, opts.sinkPort, routing(opts)).split('\n')
        .filter((line) => !own.has(/^([a-z0-9_]+)\s*=/.exec(line)?.[1] ?? '')).join('\n');
      main = base + main;
      master = baseMaster(smtpPort) + master;
    } else if (opts.milterPort !== undefined) {
      main = baseMain(dir, opts.sinkPort, routing(opts)) + fragment('milter/main', await readFile(new URL('main.cf.fragment', MILTER_FRAGMENTS), 'utf8'),
        /inet:127\.0\.0\.1:10027(?=[\s,}])/g, `inet:127.0.0.1:${opts.milterPort}`);
      master = baseMaster(smtpPort);
    } else {
      main = baseMain(dir, opts.sinkPort, routing(opts)) + fragment('main', await readFragment('main.cf.fragment'),
        /^content_filter = calfilter:\[127\.0\.0\.1\]:10025$/gm, `content_filter = calfilter:[127.0.0.1]:${opts.filterPort}`);
      master = baseMaster(smtpPort) + fragment('master', await readFragment('master.cf.fragment'),
        /^127\.0\.0\.1:10026(?=\s)/gm, `127.0.0.1:${reinjectPort}`);
    }
    await writeFile(join(etc, 'main.cf'), main);
    await writeFile(join(etc, 'master.cf'), master);
    const extra = Object.entries(opts.main ?? {}).map(([k, v]) => `${k}=${v}`);
    if (extra.length) await postconf(['-c', etc, '-e', ...extra]);
    for (const table of opts.recipe?.postmap ?? []) await run('postmap', ['-c', etc, join(etc, table)], { env: ENV, timeout: TIMEOUT });
    await run('postfix', ['-c', etc, 'start'], { env: ENV, timeout: TIMEOUT });
  } catch (err) {
    const log = await readFile(maillog, 'utf8').catch(() => '(no maillog)');
    await stop();
    throw new Error(`private Postfix did not start: ${(err as Error).message}\n--- maillog ---\n${log}`);
  }

  const queue = async (): Promise<QueueEntry[]> => {
    const { stdout } = await run('postqueue', ['-c', etc, '-j'], { env: ENV, timeout: TIMEOUT });
    return stdout.split('\n').filter(Boolean).map((line) => JSON.parse(line) as QueueEntry);
  };
  return {
    smtpPort,
    reinjectPort,
    configDir: etc,
    queueDir,
    stop,
    flush: async () => { await run('postqueue', ['-c', etc, '-f'], { env: ENV, timeout: TIMEOUT }); },
    queue,
    queueIds: async () => (await queue()).map((e) => e.queue_id),
    log: () => readFile(maillog, 'utf8').catch(() => ''),
    report: async (lines = 60) => {
      const q = await run('postqueue', ['-c', etc, '-j'], { env: ENV, timeout: TIMEOUT }).then((r) => r.stdout.trim() || '(empty)', (e: Error) => `(postqueue -j failed: ${e.message})`);
      const log = (await readFile(maillog, 'utf8').catch(() => '')).split('\n');
      return `queue now: ${q}\n--- maillog, last ${lines} of ${log.length} lines ---\n${log.slice(-lines - 1).join('\n')}`;
    },
  };
}

function baseMain(dir: string, sinkPort: number, route = `transport_maps = static:smtp:[127.0.0.1]:${sinkPort}\n`): string {
  return `# Private test instance written by spec/helpers/postfix.ts; the recipe's fragment follows.
compatibility_level = 3.6
queue_directory = ${dir}/queue
data_directory = ${dir}/data
maillog_file = ${dir}/maillog
maillog_file_prefixes = ${dir}
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = postfix.calfilter.test
mynetworks = 127.0.0.0/8
# Nothing is local, nothing is relayed by domain (loopback clients may relay anywhere via
# mynetworks): every recipient, bounces included, goes to the sink.
mydestination =
relay_domains =
local_transport = error:5.1.1 local delivery is disabled in this test instance
alias_maps =
alias_database =
${route}# No DNS: the sink and the filter are IP literals, and reverse lookups would only add delay.
smtp_dns_support_level = disabled
smtp_host_lookup = native
smtpd_peername_lookup = no
# Deferred mail is retried within a second or two, so "filter down, then back" takes seconds.
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s

`;
}

function baseMaster(smtpPort: number): string {
  // The services a Postfix 3.x instance needs, none chrooted; the fragment adds the filter's two.
  return `# Private test instance written by spec/helpers/postfix.ts; the recipe's fragment follows.
127.0.0.1:${smtpPort} inet n - n - - smtpd
pickup     unix  n - n 60 1 pickup
cleanup    unix  n - n -  0 cleanup
qmgr       unix  n - n 300 1 qmgr
rewrite    unix  - - n -  - trivial-rewrite
bounce     unix  - - n -  0 bounce
defer      unix  - - n -  0 bounce
trace      unix  - - n -  0 bounce
verify     unix  - - n -  1 verify
flush      unix  n - n 1000? 0 flush
proxymap   unix  - - n -  - proxymap
proxywrite unix  - - n -  1 proxymap
smtp       unix  - - n -  - smtp
relay      unix  - - n -  - smtp
lmtp       unix  - - n -  - lmtp
showq      unix  n - n -  - showq
error      unix  - - n -  - error
retry      unix  - - n -  - error
discard    unix  - - n -  - discard
anvil      unix  - - n -  1 anvil
scache     unix  - - n -  1 scache
postlog    unix-dgram n - n - 1 postlogd

`;
}

/**
 * Where mail goes after Postfix (or after the filter): everything to the sink, unless a test
 * routes domains elsewhere or loads a recipe (which may bring its own transport_maps). A static:
 * transport map cannot be combined with others (it matches the full address first), so those
 * cases use default_transport and relay_transport for the sink instead.
 */
function routing(opts: PostfixOptions): string | undefined {
  if (!opts.routes && !opts.recipe) return undefined;
  const sink = `smtp:[127.0.0.1]:${opts.sinkPort}`;
  const routes = Object.entries(opts.routes ?? {}).map(([domain, transport]) => `${domain}=${transport}`);
  return (routes.length ? `transport_maps = inline:{ ${routes.join(', ')} }\n` : '') +
    `default_transport = ${sink}\nrelay_transport = ${sink}\n`;
}

/** A recipe's two fragments with their endpoints replaced, and its tables in the config directory. */
async function loadRecipe(recipe: PostfixRecipe, etc: string, reinjectPort: number): Promise<{ main: string; master: string }> {
  const folder = new URL(`../../deploy/postfix/${recipe.dir}/`, import.meta.url);
  const load = async (name: string) => {
    let text = await readFile(new URL(name, folder), 'utf8');
    for (const [pattern, value] of recipe.replace[name] ?? []) {
      text = fragment(`${recipe.dir}/${name}`, text, pattern, value.replaceAll('{reinjectPort}', String(reinjectPort)));
    }
    return text;
  };
  let main = await load('main.cf.fragment');
  const master = await load('master.cf.fragment');
  for (const table of recipe.tables ?? []) {
    const path = `/etc/postfix/${table}`;
    if (!main.includes(path)) throw new Error(`${recipe.dir}/main.cf.fragment does not name ${path}`);
    main = main.replaceAll(path, join(etc, table));
    await writeFile(join(etc, table), await load(table));
  }
  return { main, master };
}

function readFragment(name: string): Promise<string> {
  return readFile(new URL(name, FRAGMENTS), 'utf8');
}

/** The fragment verbatim except one endpoint; anything but exactly one match is a broken fragment. */
function fragment(which: string, text: string, pattern: RegExp, replacement: string): string {
  const endpoint = pattern.global ? pattern : new RegExp(pattern.source, `${pattern.flags}g`);
  const n = text.match(endpoint)?.length ?? 0;
  if (n !== 1) throw new Error(`${which}${which.includes('/') ? '' : '.cf.fragment'}: expected the endpoint ${endpoint} once, found it ${n} times`);
  return text.replace(endpoint, () => replacement);
}

async function postconf(args: string[]): Promise<string> {
  const { stdout } = await run('postconf', args, { env: ENV, timeout: TIMEOUT });
  return stdout.trim();
}

async function twoPorts(): Promise<[number, number]> {
  const a = await freePort();
  let b = await freePort();
  while (b === a) b = await freePort();
  return [a, b];
}
