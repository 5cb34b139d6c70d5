// The command line: serve | milter | filter | explain | overrides | web | config.
// In: argv and the environment. Out: a running listener (serve, milter), a processed message on stdout
// (filter), a JSON report (explain), or an administration result (overrides).
// Fails: a bad flag or value exits 64 (EX_USAGE) or 78 (EX_CONFIG) with a message naming it;
// a temporary failure in `filter` exits 75 (EX_TEMPFAIL) so Exim/Postfix pipe retry later; so does
// a message that could not be written whole to stdout (EPIPE, ENOSPC): never exit 0 on a cut copy.

import { fstatSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { closeApp, createApp } from './app.js';
import { stopSignal } from './stop-signals.js';
import { ConfigError, configKeyKind, describeConfig, loadConfig, readConfigFile, type Config } from './config.js';
import { createLogger, type LogFn } from './log.js';
import { planDelivery } from './plan.js';
import { startServe } from './serve.js';
import { startMilter } from './milter-server.js';
import { spoolFromBuffer, spoolStream } from './spool.js';
import { scanBuffer } from './candidate-scan.js';
import { runOverrides } from './overrides-command.js';
import type { Envelope } from './types.js';
import { runWeb } from './web/command.js';

export const EXIT = { ok: 0, usage: 64, dataErr: 65, noInput: 66, software: 70, ioErr: 74, tempFail: 75, config: 78 } as const;

class UsageError extends Error {}
/** `--help` or `-h` among a command's options: the usage on stdout, exit 0, nothing started. */
class HelpRequest extends Error {}
/** stdout refused a write (reader gone, disk full): what was written is incomplete. */
class OutputError extends Error {}

const USAGE = `usage: calendar-link-filter <command> [options]
  serve     [--listen HOST:PORT] [--next-hop smtp://HOST:PORT|lmtp://HOST:PORT] [--lmtp]
            [--allowed-clients CIDR[,CIDR…]] [--web-server HOST] [--local-domains D,…] [--config FILE]
  milter    [--listen HOST:PORT|unix:/path] [--web-server HOST] [--local-domains D,…] [--redis URL]
            [--milter-link-policy neutral|none] [--config FILE]   (Postfix smtpd_milters / Sendmail)
  filter    [--web-server HOST] [--recipient ADDR]… [--local-domains D,…] [--config FILE] < in.eml > out.eml
  explain   FILE.eml [--recipient ADDR]… [same options as filter]
  overrides set|get|unset|list|import|export …   (see README)
  web       [--listen HOST:PORT] [--web-base-url URL] [--config FILE]   the built-in web view (see README)
  config    [--markdown] print every setting with its default and bounds
Every setting in the config table is also a flag (--max-message-size 1048576) and a
CALFILTER_* environment variable (CALFILTER_MAX_MESSAGE_SIZE=1048576).`;

interface Parsed {
  flags: Record<string, unknown>;
  configFile?: string;
  recipients: string[];
  positional: string[];
}

/** Flags are config keys with "-" for "_"; booleans take no value (or =true/=false). */
export function parseFlags(args: string[]): Parsed {
  const out: Parsed = { flags: {}, recipients: [], positional: [] };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === '--help' || arg === '-h') throw new HelpRequest();
    if (!arg.startsWith('--')) {
      out.positional.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const name = arg.slice(2, eq < 0 ? undefined : eq);
    const inline = eq < 0 ? undefined : arg.slice(eq + 1);
    const value = (): string => {
      if (inline !== undefined) return inline;
      const next = args[++i];
      if (next === undefined) throw new UsageError(`--${name} needs a value`);
      // `--recipient --dry-run` is a forgotten value, not a recipient named "--dry-run"
      if (/^--[A-Za-z][A-Za-z0-9-]*(=|$)/.test(next)) {
        throw new UsageError(`--${name} needs a value (got the option ${next}; write --${name}=VALUE for a value that starts with --)`);
      }
      return next;
    };
    if (name === 'config') {
      // `--config "$UNSET"` would otherwise start with the defaults as if no file had been named
      out.configFile = value();
      if (out.configFile === '') throw new UsageError('--config needs a file name');
    }
    else if (name === 'recipient') out.recipients.push(value());
    else {
      const key = name.replace(/-/g, '_');
      const kind = configKeyKind(key);
      if (!kind) throw new UsageError(`unknown option --${name}`);
      out.flags[key] = kind === 'bool' ? (inline ?? true) : value();
    }
  }
  return out;
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  const err = process.stderr;
  try {
    switch (command) {
      case 'serve':
        return await serve(parseFlags(rest));
      case 'milter':
        // --listen names the milter's own address here (milter_listen: HOST:PORT or unix:/path)
        return await milter(parseFlags(rest.map((a) => a.replace(/^--listen(?==|$)/, '--milter-listen'))));
      case 'filter':
        return await filter(parseFlags(rest));
      case 'explain':
        return await explain(parseFlags(rest));
      case 'web':
        return await web(parseFlags(rest));
      case 'overrides':
        return await runOverrides(rest, { stdout: process.stdout, stderr: process.stderr, env: process.env });
      case 'config': {
        if (rest.includes('--help') || rest.includes('-h')) throw new HelpRequest();
        const unknown = rest.find((a) => a !== '--markdown');
        if (unknown !== undefined) throw new UsageError(unknown.startsWith('--') ? `unknown option ${unknown} for config` : `unexpected argument "${unknown}"`);
        let text = '';
        if (rest.includes('--markdown')) {
          text += '| key | default | bounds | meaning |\n|---|---|---|---|\n';
          const cell = (v: string) => v.replace(/\|/g, '\\|');
          for (const row of describeConfig()) text += `| \`${row.key}\` | \`${cell(row.default) || '(empty)'}\` | ${cell(row.bounds)} | ${cell(row.doc)} |\n`;
        } else {
          for (const row of describeConfig()) text += `${row.key}\t${row.default}\t${row.bounds}\t${row.doc}\n`;
        }
        await writeOut(process.stdout, text);
        return EXIT.ok;
      }
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        process.stdout.write(USAGE + '\n');
        return command === undefined ? EXIT.usage : EXIT.ok;
      default:
        throw new UsageError(`unknown command "${command}"`);
    }
  } catch (e) {
    if (e instanceof HelpRequest) {
      process.stdout.write(USAGE + '\n');
      return EXIT.ok;
    }
    if (e instanceof UsageError) {
      err.write(`calendar-link-filter: ${e.message}\n${USAGE}\n`);
      return EXIT.usage;
    }
    if (e instanceof ConfigError) {
      err.write(`calendar-link-filter: ${e.message}\n`);
      return EXIT.config;
    }
    if (e instanceof OutputError) {
      err.write(`calendar-link-filter: ${e.message}\n`);
      return EXIT.ioErr;
    }
    err.write(`calendar-link-filter: ${(e as Error).message}\n`);
    return EXIT.software;
  }
}

function configFrom(p: Parsed): Config {
  return loadConfig({ file: p.configFile, env: process.env, flags: p.flags });
}

async function serve(p: Parsed): Promise<number> {
  if (p.positional.length) throw new UsageError(`unexpected argument "${p.positional[0]}"`);
  const config = configFrom(p);
  const log = createLogger({ level: config.log_level });
  const { listener, host, app } = await startServe(config, log);
  if (!config.web_server) log('config.no_web_server', { note: 'web_server is empty: messages get no footer unless an override names a server' });
  log('server.listening', {
    listen: `${host}:${listener.port}`,
    lmtp: config.lmtp,
    next_hop: config.next_hop,
    allowed_clients: config.allowed_clients,
    web_server: config.web_server || null,
    dry_run: config.dry_run,
  });
  const signal = await stopSignal(log, 'server');
  log('server.stopping', { signal, in_flight: listener.inFlight(), grace_s: config.shutdown_timeout });
  await listener.close().catch(() => undefined);
  await closeApp(app);
  log('server.stopped', {});
  return EXIT.ok;
}

async function milter(p: Parsed): Promise<number> {
  if (p.positional.length) throw new UsageError(`unexpected argument "${p.positional[0]}"`);
  const config = configFrom(p);
  const log = createLogger({ level: config.log_level });
  const server = await startMilter(config, log);
  if (!config.web_server) log('config.no_web_server', { note: 'web_server is empty: messages get no footer unless an override names a server' });
  log('milter.listening', { listen: server.address, web_server: config.web_server || null, link_policy: config.milter_link_policy, dry_run: config.dry_run });
  const signal = await stopSignal(log, 'milter');
  log('milter.stopping', { signal, connections: server.connections(), grace_s: config.shutdown_timeout });
  await server.close().catch(() => undefined);
  log('milter.stopped', { ...server.stats() });
  return EXIT.ok;
}

async function web(p: Parsed): Promise<number> {
  if (p.positional.length) throw new UsageError(`unexpected argument "${p.positional[0]}"`);
  // `web --listen` is the web view's address (web_listen), not the SMTP listener's.
  if (p.flags.listen !== undefined) { p.flags.web_listen = p.flags.listen; delete p.flags.listen; }
  const config = configFrom(p);
  await runWeb(config, createLogger({ level: config.log_level }));
  return EXIT.ok;
}

function stdinIsDirectory(): boolean {
  try {
    return fstatSync(0).isDirectory();
  } catch {
    return false; // not stat-able: reading it reports the problem (exit 75)
  }
}

function envelopeFor(recipients: string[]): Envelope {
  // Without --recipient the message is processed as for one local recipient with no override.
  return { from: '', to: (recipients.length ? recipients : ['']).map((address) => ({ address })) };
}

async function filter(p: Parsed): Promise<number> {
  if (p.positional.length) throw new UsageError(`unexpected argument "${p.positional[0]}" (filter reads stdin)`);
  // Interactively, without "< in.eml", it would wait for typing and then write a typed "message".
  if (process.stdin.isTTY) throw new UsageError('standard input is a terminal: filter reads the message from standard input (filter < in.eml > out.eml)');
  // Node reads a directory on fd 0 (`filter < dir`) as an empty stream: that would write nothing and exit 0.
  if (stdinIsDirectory()) {
    process.stderr.write('calendar-link-filter: cannot read the message: standard input is a directory\n');
    return EXIT.noInput;
  }
  const config = configFrom(p);
  // A pipe filter runs once per message, and Exim may merge stderr into the message: only
  // warnings and errors by default (log_level=debug or info set explicitly still wins).
  const explicit = p.flags.log_level !== undefined || process.env.CALFILTER_LOG_LEVEL !== undefined ||
    (p.configFile !== undefined && 'log_level' in readConfigFile(p.configFile));
  const log: LogFn = createLogger({ level: explicit ? config.log_level : 'error', out: process.stderr });
  const app = await createApp(config, log).catch((e: Error) => { throw new ConfigError(e.message); });
  let spool;
  try {
    spool = await spoolStream(process.stdin, { memoryLimit: config.spool_memory_limit, dir: config.spool_dir || undefined });
  } catch (e) {
    await closeApp(app);
    process.stderr.write(`calendar-link-filter: cannot read the message: ${(e as Error).message}\n`);
    return EXIT.tempFail;
  }
  const envelope = envelopeFor(p.recipients);
  try {
    const head = await spool.read(0, Math.min(spool.size, 64 * 1024));
    const scan = spool.size <= 64 * 1024 ? scanBuffer(head) : { candidate: true, bytes: spool.size };
    const plan = await planDelivery({ config, log, hooks: app.hooks }, envelope, spool, scan, 'filter');
    const deferral = plan.groups.find((g) => g.defer)?.defer;
    if (deferral && !config.dry_run) {
      for (const g of plan.groups) await g.body?.dispose();
      process.stderr.write(`calendar-link-filter: temporary failure: ${deferral.message}\n`);
      return EXIT.tempFail;
    }
    const bodies = new Set(plan.groups.map((g) => g.url));
    let source = plan.groups[0]?.body ?? null;
    if (bodies.size > 1) {
      process.stderr.write('calendar-link-filter: the recipients resolve to different links; the message is written unchanged (run once per recipient)\n');
      source = null;
    }
    if (config.dry_run) source = null;
    if (!plan.structure && !plan.classification && plan.decision.startsWith('unchanged after error')) {
      process.stderr.write(`calendar-link-filter: ${plan.decision}\n`);
    } else if (plan.structure?.damaged) {
      process.stderr.write('calendar-link-filter: the input is not a well-formed MIME message; written unchanged\n');
    }
    await copyOut((source ?? spool).stream(), process.stdout);
    for (const g of plan.groups) await g.body?.dispose();
    return EXIT.ok;
  } catch (e) {
    process.stderr.write(`calendar-link-filter: temporary failure: ${(e as Error).message}\n`);
    return EXIT.tempFail;
  } finally {
    // the answer is decided: a cleanup failure must not turn it into 70, which Postfix's pipe bounces
    await spool.dispose().catch(() => undefined);
    await closeApp(app).catch(() => undefined);
  }
}

async function explain(p: Parsed): Promise<number> {
  const [file, extra] = p.positional;
  if (!file) throw new UsageError('explain needs a FILE');
  if (extra) throw new UsageError(`unexpected argument "${extra}"`);
  // explain reports, it never writes: no web-view snapshots.
  const config = configFrom({ ...p, flags: { ...p.flags, web_view: false } });
  const log: LogFn = createLogger({ level: config.log_level, out: process.stderr });
  const app = await createApp(config, log).catch((e: Error) => { throw new ConfigError(e.message); });
  let raw: Buffer;
  try {
    raw = await readFile(file);
  } catch (e) {
    await closeApp(app);
    process.stderr.write(`calendar-link-filter: cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}\n`);
    return EXIT.noInput;
  }
  const spool = spoolFromBuffer(raw);
  const scan = scanBuffer(raw);
  const plan = await planDelivery({ config, log, hooks: app.hooks }, envelopeFor(p.recipients), spool, scan, 'explain');
  const parts = plan.structure?.parts.map((pt) => ({
    index: pt.index, parent: pt.parent, type: pt.contentType, method: pt.params.method, charset: pt.charset,
    encoding: pt.encoding, disposition: pt.disposition, filename: pt.filename, bytes: pt.bodyEnd - pt.bodyStart,
  }));
  const report = {
    file,
    size: raw.length,
    candidate: scan.candidate,
    changes: plan.groups.some((g) => g.body !== null) && !config.dry_run,
    decision: plan.decision,
    kind: plan.classification?.kind ?? 'none',
    classification: plan.classification ? { ...plan.classification, calendar: undefined } : null,
    calendar: plan.classification?.calendar ?? null,
    targets: plan.targets ?? null,
    recipients: plan.resolutions?.map((r) => ({ recipient: r.recipient, source: r.source, server: r.server, footer: r.url !== null })) ?? null,
    parts: parts ?? null,
  };
  for (const g of plan.groups) await g.body?.dispose();
  await closeApp(app);
  await writeOut(process.stdout, JSON.stringify(report, null, 2) + '\n');
  return EXIT.ok;
}

const watched = new WeakSet<NodeJS.WritableStream>();

/**
 * Write one chunk; resolves once the stream took it, rejects (OutputError) when it failed.
 * The stream's 'error' event is absorbed (the callback reports it), so an EPIPE is an answer, not a crash.
 */
function writeOut(dst: NodeJS.WritableStream, chunk: Buffer | string): Promise<void> {
  if (!watched.has(dst)) {
    watched.add(dst);
    dst.on('error', () => undefined);
  }
  return new Promise((resolve, reject) => {
    dst.write(chunk, (err?: Error | null) => {
      if (!err) return resolve();
      reject(new OutputError(`cannot write to standard output: ${(err as NodeJS.ErrnoException).code ?? err.message}`));
    });
  });
}

/** Copy a stream to stdout chunk by chunk; resolves only when the last byte was written. */
async function copyOut(src: NodeJS.ReadableStream, dst: NodeJS.WritableStream): Promise<void> {
  for await (const chunk of src) await writeOut(dst, chunk as Buffer);
}
