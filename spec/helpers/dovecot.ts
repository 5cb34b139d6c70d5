// Test peer: a private Dovecot (the mailbox store) on loopback, in one fresh temporary directory.
// In: the addresses of the mailboxes to create (one static password for all). Out: its LMTP, IMAP
// and POP3 ports (and the LMTP unix socket), a message count per mailbox, and its log.
// Fails: a refused start rejects with Dovecot's own log; stop() (also run when the test process
// exits) stops the master and removes the directory. Needs root and dovecot-{imapd,pop3d,lmtpd}.
//
// How the instance is private (Dovecot 2.3, checked on Debian 12's 2.3.19 as root):
// - `dovecot -c FILE` with our own config and no include of /etc/dovecot: base_dir (sockets,
//   master.pid), state_dir and log_path all point into the temporary directory, so a system
//   instance, if any, is neither seen nor disturbed. `doveadm -c FILE stop` stops exactly this one.
// - Every listener is on 127.0.0.1 with a port picked here; ssl = no and plaintext PLAIN/LOGIN
//   are allowed, on loopback only.
// - Mail is stored as maildir under DIR/mail/DOMAIN/USER, owned by the system user `mail` (uid 8,
//   hence first_valid_uid = 8: Dovecot refuses uids below 500 by default). Users and the password
//   live in a passwd-file used as passdb and userdb, so LMTP refuses unknown users with 550.
// - Login processes run as Debian's `dovenull`, auth as `dovecot` (both made by dovecot-core).

import { execFile, spawn, spawnSync } from 'node:child_process';
import { chmod, chown, mkdir, mkdtemp, open, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { readFileSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from './filter-process.js';

const run = promisify(execFile);
// dovecot and doveadm live in /usr/sbin and /usr/bin; a non-root PATH may lack /usr/sbin.
const ENV = { ...process.env, PATH: `${process.env.PATH ?? '/usr/bin:/bin'}:/usr/sbin:/sbin` };
const TIMEOUT = 15_000;
/** The system user that owns the mail files; exists on every Debian (base-passwd). */
const MAIL_USER = 'mail';

const LIVE = new Map<string, string>(); // temp dir → config file
process.on('exit', () => {
  for (const [dir, conf] of LIVE) {
    const r = spawnSync('doveadm', ['-c', conf, 'stop'], { env: ENV, stdio: 'ignore', timeout: 10_000 });
    if (r.status !== 0) killMaster(dir, 'SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});

export interface Dovecot {
  lmtpPort: number;
  imapPort: number;
  pop3Port: number;
  /** Dovecot's LMTP unix socket (mode 0666), for MTAs that deliver over a socket (Exim's lmtp). */
  lmtpSocket: string;
  /** The password of every mailbox. */
  password: string;
  /** The passwd-file of the mailboxes ("user@domain:{PLAIN}password:…", mode 0644). */
  passwdFile: string;
  configFile: string;
  /** Messages in ADDRESS's INBOX now (new/ and cur/ of its maildir), 0 when it has none yet. */
  count(address: string): Promise<number>;
  /** Resolves once ADDRESS's INBOX holds at least n messages; rejects after timeoutMs with the log. */
  waitFor(address: string, n: number, timeoutMs?: number): Promise<void>;
  /** The whole log so far. */
  log(): Promise<string>;
  /** `doveadm stop` (SIGKILL if that fails) and remove the directory; safe to call twice. */
  stop(): Promise<void>;
}

export interface DovecotOptions {
  /** Mailboxes to create, e.g. ['bob@example.org']; any other recipient gets 550 over LMTP. */
  users: string[];
  password?: string;
}

/**
 * Why the Dovecot tests cannot run here, or undefined when they can. Under CI (CI set) this is
 * always undefined: CI must install Dovecot (.ci/run), and a missing one must fail, not skip.
 */
export function dovecotSkipReason(): string | undefined {
  if (process.env.CI) return undefined;
  const probe = spawnSync('dovecot', ['--version'], { env: ENV, encoding: 'utf8' });
  if (probe.error || probe.status !== 0) return 'dovecot is not installed (apt-get install dovecot-imapd dovecot-pop3d dovecot-lmtpd; see .ci/run)';
  if (process.getuid?.() !== 0) return 'a private Dovecot instance must be started as root';
  return undefined;
}

export async function startDovecot(opts: DovecotOptions): Promise<Dovecot> {
  const password = opts.password ?? 'calfilter-test-password';
  const [lmtpPort, imapPort, pop3Port] = await distinctPorts(3);
  const dir = await mkdtemp(join(tmpdir(), 'calfilter-dovecot-'));
  await chmod(dir, 0o755); // the mail user must reach DIR/mail
  const conf = join(dir, 'dovecot.conf');
  const logFile = join(dir, 'dovecot.log');
  const mailDir = join(dir, 'mail');
  const passwd = join(dir, 'passwd');
  LIVE.set(dir, conf);

  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    // doveadm stop sends SIGTERM and waits for the master to go; not running is an error exit.
    await run('doveadm', ['-c', conf, 'stop'], { env: ENV, timeout: TIMEOUT }).catch(() => killMaster(dir, 'SIGKILL'));
    await rm(dir, { recursive: true, force: true });
    LIVE.delete(dir);
  };

  try {
    const { uid, gid } = systemUser(MAIL_USER);
    await mkdir(mailDir, { mode: 0o700 });
    await chown(mailDir, uid, gid);
    for (const u of opts.users) if (!/^[^\s:@]+@[^\s:@]+$/.test(u)) throw new Error(`not a mailbox address: ${u}`);
    // user:password:uid:gid:gecos:home:shell:extra — uid, gid and home come from default_fields.
    await writeFile(passwd, opts.users.map((u) => `${u}:{PLAIN}${password}::::::\n`).join(''), { mode: 0o644 });
    await writeFile(conf, config({ dir, mailDir, passwd, logFile, lmtpPort, imapPort, pop3Port, uid, gid }));
    await launch(conf, join(dir, 'start.log'));
    // The master returns once it forked; the login and lmtp listeners answer right after.
    await waitForGreeting(imapPort, '* OK', 10_000);
    await waitForGreeting(pop3Port, '+OK', 10_000);
    await waitForGreeting(lmtpPort, '220', 10_000);
  } catch (err) {
    const log = await readFile(logFile, 'utf8').catch(() => '(no log)');
    await stop();
    throw new Error(`private Dovecot did not start: ${(err as Error).message}\n--- dovecot.log ---\n${log}`);
  }

  const count = async (address: string) => {
    const [user, domain] = address.split('@');
    const box = join(mailDir, domain ?? '', user ?? '', 'Maildir');
    let n = 0;
    for (const sub of ['new', 'cur']) n += (await readdir(join(box, sub)).catch(() => [])).length;
    return n;
  };
  const log = () => readFile(logFile, 'utf8').catch(() => '');
  return {
    lmtpPort,
    imapPort,
    pop3Port,
    lmtpSocket: join(dir, 'run', 'lmtp'),
    password,
    passwdFile: passwd,
    configFile: conf,
    count,
    async waitFor(address, n, timeoutMs = 20_000) {
      const until = Date.now() + timeoutMs;
      while ((await count(address)) < n) {
        if (Date.now() > until) throw new Error(`Dovecot: ${address} did not get ${n} message(s) within ${timeoutMs} ms\n--- dovecot.log ---\n${await log()}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    log,
    stop,
  };
}

interface ConfigParams {
  dir: string; mailDir: string; passwd: string; logFile: string;
  lmtpPort: number; imapPort: number; pop3Port: number; uid: number; gid: number;
}

function config(p: ConfigParams): string {
  return `# Private test instance written by spec/helpers/dovecot.ts.
base_dir = ${p.dir}/run
state_dir = ${p.dir}/state
instance_name = calfilter-test
log_path = ${p.logFile}
hostname = mail.calfilter.test
protocols = imap pop3 lmtp
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = ${p.uid}
first_valid_gid = ${p.gid}
mail_uid = ${p.uid}
mail_gid = ${p.gid}
mail_location = maildir:~/Maildir
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u ${p.passwd}
}
userdb {
  driver = passwd-file
  args = username_format=%u ${p.passwd}
  default_fields = uid=${p.uid} gid=${p.gid} home=${p.mailDir}/%d/%n
}
protocol lmtp {
  postmaster_address = postmaster@example.org
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = ${p.imapPort}
  }
  inet_listener imaps {
    port = 0
  }
}
service pop3-login {
  inet_listener pop3 {
    address = 127.0.0.1
    port = ${p.pop3Port}
  }
  inet_listener pop3s {
    port = 0
  }
}
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = ${p.lmtpPort}
  }
  unix_listener lmtp {
    mode = 0666
  }
}
`;
}

/**
 * `dovecot -c FILE`: the master forks into the background and the command returns. Its output
 * goes to a file, not a pipe: processes the master starts keep inherited descriptors open for a
 * while, and waiting for a pipe to close would wait for them (15 s, measured).
 */
async function launch(conf: string, outFile: string): Promise<void> {
  const out = await open(outFile, 'w');
  try {
    const child = spawn('dovecot', ['-c', conf], { env: ENV, stdio: ['ignore', out.fd, out.fd] });
    const code = await new Promise<number | null>((resolve, reject) => {
      const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`dovecot -c did not return within ${TIMEOUT} ms`)); }, TIMEOUT);
      child.once('error', (e) => { clearTimeout(timer); reject(e); });
      child.once('exit', (c) => { clearTimeout(timer); resolve(c); });
    });
    if (code !== 0) throw new Error(`dovecot -c ${conf} exited with ${code}: ${await readFile(outFile, 'utf8')}`);
  } finally {
    await out.close();
  }
}

function systemUser(name: string): { uid: number; gid: number } {
  const line = readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.startsWith(`${name}:`));
  const [, , uid, gid] = line?.split(':') ?? [];
  if (uid === undefined || gid === undefined) throw new Error(`no system user "${name}" in /etc/passwd`);
  return { uid: Number(uid), gid: Number(gid) };
}

/** The last resort when doveadm cannot stop it: the master's pid from base_dir. */
function killMaster(dir: string, signal: NodeJS.Signals): void {
  try {
    const pid = Number(readFileSync(join(dir, 'run', 'master.pid'), 'utf8').trim());
    if (pid > 1) process.kill(pid, signal);
  } catch { /* not running, or already gone */ }
}

async function distinctPorts(n: number): Promise<number[]> {
  const ports: number[] = [];
  while (ports.length < n) {
    const p = await freePort();
    if (!ports.includes(p)) ports.push(p);
  }
  return ports;
}

async function waitForGreeting(port: number, prefix: string, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (await greets(port, prefix)) return;
    if (Date.now() > until) throw new Error(`nothing greeted with "${prefix}" on 127.0.0.1:${port} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function greets(port: number, prefix: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    const done = (ok: boolean) => { socket.destroy(); resolve(ok); };
    socket.setTimeout(2_000, () => done(false));
    socket.once('error', () => done(false));
    socket.once('data', (d) => done(d.toString('latin1').startsWith(prefix)));
  });
}
