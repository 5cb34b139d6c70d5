// Test peer: Postfix's own smtp-sink(1) standing in for the outside world, dumping each mail
// transaction to a file (-d). In: SMTP on a loopback port. Out: the transactions it received,
// parsed back from its dump files (envelope arguments and the message with CRLF line ends).
// Fails: a sink that does not greet in time rejects the start; stop() (also run when the test
// process exits) kills it and removes the dump directory. Needs the postfix package, and root
// only because smtp-sink then insists on -u (it runs as nobody).
//
// The dump holds lines ended with LF (smtp-sink stores lines, not bytes); Postfix's smtp client
// always sends CRLF, so turning every LF back into CRLF gives the bytes as they were sent.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmod, chown, mkdir, mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './filter-process.js';

const SMTP_SINK = '/usr/sbin/smtp-sink';
const RUN_AS = 'nobody';

const LIVE = new Map<ChildProcess, string>();
process.on('exit', () => {
  for (const [child, dir] of LIVE) {
    try { child.kill('SIGKILL'); } catch { /* gone */ }
    rmSync(dir, { recursive: true, force: true });
  }
});

export interface DumpedMessage {
  file: string;
  /** The MAIL FROM arguments as sent, e.g. "<alice@example.org> SIZE=1234 BODY=8BITMIME". */
  mailArgs: string;
  /** One RCPT TO argument string per recipient, in order. */
  rcptArgs: string[];
  /** The recipients' addresses, without brackets and parameters. */
  recipients: string[];
  /** The message as received (header and body), CRLF line ends. */
  raw: Buffer;
}

export interface SmtpSink {
  port: number;
  /** Every complete dump so far, oldest first. */
  messages(): Promise<DumpedMessage[]>;
  /** Resolves with the dumps once there are at least n; rejects after timeoutMs. */
  waitFor(n: number, timeoutMs?: number): Promise<DumpedMessage[]>;
  stop(): Promise<void>;
}

export async function startSmtpSink(): Promise<SmtpSink> {
  const port = await freePort();
  const dir = await mkdtemp(join(tmpdir(), 'calfilter-smtp-sink-'));
  await chmod(dir, 0o755);
  const dumps = join(dir, 'dump');
  await mkdir(dumps);
  if (process.getuid?.() === 0) {
    const id = spawnSync('id', ['-u', RUN_AS], { encoding: 'utf8' });
    const gid = spawnSync('id', ['-g', RUN_AS], { encoding: 'utf8' });
    await chown(dumps, Number(id.stdout.trim()), Number(gid.stdout.trim()));
  }
  // -u is required as root; -h names the host in its Received line; backlog 10.
  const args = [...(process.getuid?.() === 0 ? ['-u', RUN_AS] : []), '-d', `${dumps}/%Y%m%d%H%M%S.`, '-h', 'sink.partner.example', `127.0.0.1:${port}`, '10'];
  const child = spawn(SMTP_SINK, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  LIVE.set(child, dir);
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => { stderr += d.toString(); });
  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => resolve());
    child.once('error', (e) => { stderr += String(e); resolve(); });
  });

  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
    LIVE.delete(child);
    await rm(dir, { recursive: true, force: true });
  };

  try {
    await waitForGreeting(port, 10_000, () => child.exitCode !== null || child.signalCode !== null);
  } catch (e) {
    await stop();
    throw new Error(`smtp-sink did not start: ${(e as Error).message}\n${stderr}`);
  }

  const messages = async () => {
    const names = (await readdir(dumps)).sort();
    const out: DumpedMessage[] = [];
    for (const name of names) {
      const parsed = parseDump(name, await readFile(join(dumps, name)));
      if (parsed) out.push(parsed);
    }
    return out;
  };
  return {
    port,
    messages,
    async waitFor(n, timeoutMs = 20_000) {
      const until = Date.now() + timeoutMs;
      for (;;) {
        const m = await messages();
        if (m.length >= n) return m;
        if (Date.now() > until) throw new Error(`smtp-sink on port ${port}: waited ${timeoutMs} ms for ${n} message(s), got ${m.length}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    stop,
  };
}

/** The dump format of smtp-sink(1): X-* envelope lines, its 3-line Received, the message, an empty line. */
function parseDump(file: string, dump: Buffer): DumpedMessage | undefined {
  const text = dump.toString('latin1');
  // Still being written (smtp-sink appends the empty line when DATA ends): not complete yet.
  if (!text.endsWith('\n\n')) return undefined;
  const lines = text.split('\n');
  let i = 0;
  let mailArgs = '';
  const rcptArgs: string[] = [];
  for (; i < lines.length && !lines[i]!.startsWith('Received: '); i++) {
    const [name, ...rest] = lines[i]!.split(': ');
    if (name === 'X-Mail-Args') mailArgs = rest.join(': ');
    if (name === 'X-Rcpt-Args') rcptArgs.push(rest.join(': '));
  }
  i += 3; // smtp-sink's own Received: ends its headers
  const message = lines.slice(i, -2).join('\r\n') + '\r\n';
  return {
    file,
    mailArgs,
    rcptArgs,
    recipients: rcptArgs.map((a) => /^<([^>]*)>/.exec(a)?.[1] ?? a),
    raw: Buffer.from(message, 'latin1'),
  };
}

async function waitForGreeting(port: number, timeoutMs: number, gone: () => boolean): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (gone()) throw new Error('smtp-sink exited');
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect({ host: '127.0.0.1', port });
      const done = (v: boolean) => { s.destroy(); resolve(v); };
      s.setTimeout(2_000, () => done(false));
      s.once('error', () => done(false));
      s.once('data', (d) => {
        if (!d.toString('latin1').startsWith('220')) return done(false);
        s.end('QUIT\r\n', () => done(true));
      });
    });
    if (ok) return;
    if (Date.now() > until) throw new Error(`nothing greeted on 127.0.0.1:${port} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
