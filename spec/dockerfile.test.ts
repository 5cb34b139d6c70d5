// The Dockerfile without a Docker engine: parse it, check what it copies exists and is in the build
// context (.dockerignore), replay the build stage in a temporary directory, assemble the runtime
// stage there with the production dependencies only, and run its ENTRYPOINT+CMD and HEALTHCHECK
// with the environment the image sets. What cannot be checked here: the base image and its `node` user.

import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, posix } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { freePort } from './helpers/filter-process.js';
import { startSink, type Sink } from './helpers/sink.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

interface Instr { cmd: string; args: string }
interface Stage { from: string; name: string | null; instrs: Instr[] }

/** Dockerfile → stages of instructions (continuations joined, comments dropped, ARG defaults applied to FROM). */
function parseDockerfile(text: string): Stage[] {
  const logical: string[] = [];
  let cur = '';
  for (const raw of text.split('\n')) {
    const line = raw.trimEnd();
    if (/^\s*#/.test(line) || (cur === '' && line.trim() === '')) continue;
    if (line.endsWith('\\')) cur += line.slice(0, -1) + ' ';
    else {
      logical.push((cur + line).trim());
      cur = '';
    }
  }
  const args: Record<string, string> = {};
  const stages: Stage[] = [];
  for (const l of logical) {
    const [cmd = '', ...rest] = l.split(/\s+/);
    const argText = l.slice(cmd.length).trim();
    const c = cmd.toUpperCase();
    if (c === 'ARG' && stages.length === 0) {
      const [k, v = ''] = argText.split('=');
      args[k!] = v;
    } else if (c === 'FROM') {
      const from = rest[0]!.replace(/\$\{(\w+)\}/g, (_m, k: string) => args[k] ?? '');
      const as = rest.findIndex((w) => w.toUpperCase() === 'AS');
      stages.push({ from, name: as >= 0 ? rest[as + 1]! : null, instrs: [] });
    } else {
      assert.ok(stages.length, `instruction ${c} before FROM`);
      stages.at(-1)!.instrs.push({ cmd: c, args: argText });
    }
  }
  return stages;
}

/** COPY [--from=x] [--chown=…] src… dest */
function parseCopy(args: string): { from: string | null; sources: string[]; dest: string } {
  const words = args.split(/\s+/);
  const flags = words.filter((w) => w.startsWith('--'));
  const paths = words.filter((w) => !w.startsWith('--'));
  const from = flags.find((f) => f.startsWith('--from='))?.slice('--from='.length) ?? null;
  return { from, sources: paths.slice(0, -1), dest: paths.at(-1)! };
}

/** ENV K=V K2=V2 (the forms this Dockerfile uses). */
function parseEnv(args: string): Record<string, string> {
  return Object.fromEntries(args.split(/\s+/).filter(Boolean).map((kv) => {
    const i = kv.indexOf('=');
    return [kv.slice(0, i), kv.slice(i + 1).replace(/^"(.*)"$/, '$1')];
  }));
}

/** Go-style .dockerignore patterns relative to the context root: `*` within a segment, `**` across. */
function ignored(path: string, patterns: string[]): boolean {
  let out = false;
  for (const p of patterns) {
    const neg = p.startsWith('!');
    const pat = (neg ? p.slice(1) : p).replace(/^\/|\/$/g, '');
    const re = new RegExp('^' + pat.split('**').map((s) => s.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*').replace(/\?/g, '[^/]')).join('.*') + '(/.*)?$');
    if (re.test(path)) out = !neg;
  }
  return out;
}

const DOCKERFILE = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
const STAGES = parseDockerfile(DOCKERFILE);
const BUILD = STAGES[0]!;
const RUNTIME = STAGES.at(-1)!;
const IGNORE = readFileSync(join(ROOT, '.dockerignore'), 'utf8').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
const all = (s: Stage, cmd: string) => s.instrs.filter((i) => i.cmd === cmd);
const workdir = (s: Stage) => all(s, 'WORKDIR').at(-1)?.args ?? '/';
const imageEnv = (s: Stage) => Object.assign({}, ...all(s, 'ENV').map((i) => parseEnv(i.args))) as Record<string, string>;
const execForm = (args: string): string[] => JSON.parse(args) as string[];

test('Dockerfile: multi-stage, production install, non-root, healthcheck, port 10025, all interfaces', () => {
  assert.ok(STAGES.length >= 2, 'a build stage and a runtime stage');
  assert.ok(BUILD.name, 'the build stage is named (COPY --from refers to it)');
  assert.match(BUILD.from, /^node:20[.-]/, 'Node 20, as package.json engines and CI');
  assert.equal(RUNTIME.from, BUILD.from, 'same base for both stages');
  const runs = all(RUNTIME, 'RUN').map((r) => r.args).join('\n');
  assert.match(runs, /npm ci --omit=dev/);
  assert.match(all(BUILD, 'RUN').map((r) => r.args).join('\n'), /npm run build/);
  const user = all(RUNTIME, 'USER').at(-1)?.args;
  assert.ok(user && !/^(root|0)(:|$)/.test(user), `runs as a non-root user (USER ${user})`);
  const userAt = RUNTIME.instrs.findIndex((i) => i.cmd === 'USER');
  assert.ok(RUNTIME.instrs.slice(userAt).every((i) => i.cmd !== 'RUN' && i.cmd !== 'COPY'), 'the app files stay root-owned: nothing is written after USER');
  assert.ok(all(RUNTIME, 'EXPOSE').some((e) => e.args.split(/\s+/).includes('10025')));
  assert.equal(all(RUNTIME, 'HEALTHCHECK').length, 1);
  const env = imageEnv(RUNTIME);
  assert.match(env.CALFILTER_LISTEN ?? '', /^0\.0\.0\.0:10025$/);
  assert.equal(env.CALFILTER_ALLOWED_CLIENTS, undefined, 'the allow-list is never baked into the image');
  assert.match(env.CALFILTER_HTTP ?? '', /^127\.0\.0\.1:\d+$/, 'health/metrics on loopback by default');
  assert.equal(all(RUNTIME, 'ENTRYPOINT').length + all(RUNTIME, 'CMD').length, 2);
});

test('every COPY source exists and is in the build context; local state is not', () => {
  for (const stage of STAGES) {
    for (const c of all(stage, 'COPY').map((i) => parseCopy(i.args))) {
      if (c.from) {
        assert.ok(STAGES.some((s) => s.name === c.from), `COPY --from=${c.from} names a stage`);
        continue;
      }
      for (const src of c.sources) {
        assert.ok(existsSync(join(ROOT, src)), `COPY ${src}: exists in the repository`);
        assert.ok(!ignored(src, IGNORE), `COPY ${src}: not excluded by .dockerignore`);
      }
    }
  }
  for (const local of ['node_modules', 'dist', '.git', 'node_modules/tsx/package.json', '.tmp/x']) assert.ok(ignored(local, IGNORE), `.dockerignore keeps ${local} out`);
});

describe('the stages replayed outside Docker', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'calfilter-docker-'));
  const stageDir = (s: Stage) => join(tmp, s.name ?? 'final');
  /** An absolute path inside a stage's filesystem → our directory for it (only under its WORKDIR). */
  const inStage = (s: Stage, p: string) => {
    const abs = posix.resolve(workdir(s), p);
    assert.ok(abs.startsWith(workdir(s)), `${p} is under WORKDIR ${workdir(s)}`);
    return join(stageDir(s), posix.relative(workdir(s), abs));
  };
  const children = new Set<ChildProcess>();
  const killAll = () => { for (const c of children) c.kill('SIGKILL'); };
  process.on('exit', killAll);
  after(() => {
    killAll();
    rmSync(tmp, { recursive: true, force: true });
  });

  /**
   * COPY copies; RUN runs, except `npm ci`, which becomes a node_modules of the repository's own
   * installed packages (all of them for the build, the production closure only with --omit=dev).
   */
  function replay(stage: Stage): void {
    mkdirSync(stageDir(stage), { recursive: true });
    for (const i of stage.instrs) {
      if (i.cmd === 'COPY') {
        const c = parseCopy(i.args);
        for (const src of c.sources) {
          const from = c.from ? inStage(STAGES.find((s) => s.name === c.from)!, src) : join(ROOT, src);
          assert.ok(existsSync(from), `COPY ${c.from ? `--from=${c.from} ` : ''}${src}: the source exists`);
          // Docker: a directory's contents go into dest; a file goes into dest/ or becomes dest
          const to = !statSync(from).isDirectory() && c.dest.endsWith('/') ? join(inStage(stage, c.dest), posix.basename(src)) : inStage(stage, c.dest);
          cpSync(from, to, { recursive: true });
        }
      } else if (i.cmd === 'RUN') {
        for (const cmd of i.args.split('&&').map((s) => s.trim())) {
          if (/^npm ci\b/.test(cmd)) installModules(stageDir(stage), /--omit=dev/.test(cmd));
          else if (/^npm cache clean\b/.test(cmd)) continue;
          else {
            const r = spawnSync('sh', ['-c', cmd], { cwd: stageDir(stage), encoding: 'utf8', timeout: 120_000 });
            assert.equal(r.status, 0, `RUN ${cmd}:\n${r.stdout}\n${r.stderr}`);
          }
        }
      }
    }
  }

  before(() => {
    for (const s of STAGES) replay(s);
  });

  test('the build stage produces what the runtime stage copies from it', () => {
    const fromBuild = all(RUNTIME, 'COPY').map((i) => parseCopy(i.args)).filter((c) => c.from === BUILD.name);
    assert.ok(fromBuild.length > 0);
    const entry = execForm(all(RUNTIME, 'ENTRYPOINT')[0]!.args);
    assert.ok(existsSync(join(stageDir(RUNTIME), entry[1]!)), `${entry[1]} is in the runtime image`);
    for (const mod of ['lib/serve.js', 'lib/metrics.js', 'lib/http-status.js', 'hooks/link-resolve.js']) assert.ok(existsSync(join(stageDir(RUNTIME), 'dist', mod)), mod);
    assert.ok(!existsSync(join(stageDir(RUNTIME), 'node_modules', 'typescript')), 'no dev dependency in the runtime stage');
    assert.ok(!existsSync(join(stageDir(RUNTIME), 'dist', 'spec')), 'no tests in the image');
  });

  describe('ENTRYPOINT+CMD with the image environment', () => {
    let sink: Sink;
    let child: ChildProcess;
    let smtp: number;
    let http: number;
    const out: string[] = [];
    const start = (env: Record<string, string>) => {
      const argv = [...execForm(all(RUNTIME, 'ENTRYPOINT')[0]!.args), ...execForm(all(RUNTIME, 'CMD')[0]!.args)];
      assert.equal(argv[0], 'node');
      const c = spawn(process.execPath, argv.slice(1), { cwd: stageDir(RUNTIME), env: { PATH: process.env.PATH ?? '', ...imageEnv(RUNTIME), ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
      children.add(c);
      c.once('exit', () => children.delete(c));
      return c;
    };
    const healthcheck = (env: Record<string, string>) => {
      const hc = all(RUNTIME, 'HEALTHCHECK')[0]!.args;
      const argv = execForm(hc.slice(hc.indexOf('CMD') + 3).trim());
      assert.equal(argv[0], 'node', 'the healthcheck needs nothing but node');
      // asynchronous: the sink it probes lives in this process and must be able to answer
      const c = spawn(process.execPath, argv.slice(1), { cwd: stageDir(RUNTIME), env: { PATH: process.env.PATH ?? '', ...imageEnv(RUNTIME), ...env }, stdio: ['ignore', 'pipe', 'pipe'], timeout: 10_000 });
      children.add(c);
      let stdout = '';
      let stderr = '';
      c.stdout!.on('data', (d: Buffer) => { stdout += d.toString(); });
      c.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
      return new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => c.once('close', (status) => {
        children.delete(c);
        resolve({ status, stdout, stderr });
      }));
    };

    before(async () => {
      sink = await startSink();
      smtp = await freePort();
      http = await freePort();
      // The image listens on 0.0.0.0; the test stays on loopback and keeps only the port rule.
      child = start({
        CALFILTER_LISTEN: `127.0.0.1:${smtp}`, CALFILTER_HTTP: `127.0.0.1:${http}`,
        CALFILTER_ALLOWED_CLIENTS: '127.0.0.1/32', CALFILTER_NEXT_HOP: `smtp://127.0.0.1:${sink.port}`,
      });
      child.stdout!.on('data', (d: Buffer) => out.push(d.toString()));
      child.stderr!.on('data', (d: Buffer) => out.push(d.toString()));
      const until = Date.now() + 15_000;
      for (;;) {
        const ok = await fetch(`http://127.0.0.1:${http}/healthz`).then((r) => r.status === 200, () => false);
        if (ok) break;
        if (child.exitCode !== null || Date.now() > until) throw new Error(`the image command did not become healthy:\n${out.join('')}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    });
    after(async () => {
      await sink?.close();
      if (child && child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
    });

    test('starts, answers /healthz, HEALTHCHECK passes; next hop gone → HEALTHCHECK fails; SIGTERM → exit 0', async () => {
      const lines = out.join('').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
      assert.ok(lines.some((l) => l.event === 'server.listening' && l.listen === `127.0.0.1:${smtp}`), out.join(''));
      const env = { CALFILTER_HTTP: `127.0.0.1:${http}` };
      const ok = await healthcheck(env);
      assert.equal(ok.status, 0, ok.stdout + ok.stderr);
      assert.match(ok.stdout, /"status":"ok"/);
      await sink.close();
      const bad = await healthcheck(env);
      assert.equal(bad.status, 1, bad.stdout + bad.stderr);
      assert.match(bad.stdout, /"failed":\["next_hop"\]/);
      const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
      child.kill('SIGTERM');
      assert.equal(await exited, 0);
    });

    test('the image environment without CALFILTER_ALLOWED_CLIENTS stops the start (exit 78) before it binds', async () => {
      // A loopback listener on the port: should the check ever go, binding 0.0.0.0 fails instead of succeeding.
      const port = await freePort();
      const guard: Server = createServer();
      await new Promise<void>((r) => guard.listen(port, '127.0.0.1', () => r()));
      try {
        const env = imageEnv(RUNTIME);
        const c = start({ CALFILTER_LISTEN: env.CALFILTER_LISTEN!.replace(/:\d+$/, `:${port}`), CALFILTER_HTTP: `127.0.0.1:${await freePort()}` });
        let err = '';
        c.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
        const code = await new Promise<number | null>((r) => c.once('exit', (x) => r(x)));
        assert.equal(code, 78, err);
        assert.match(err, /listen 0\.0\.0\.0:\d+ accepts connections from other hosts.*CALFILTER_ALLOWED_CLIENTS/);
      } finally {
        guard.close();
      }
    });
  });
});

/** node_modules for a replayed `npm ci`: links to the repository's installed packages. */
function installModules(dir: string, prodOnly: boolean): void {
  const nm = join(dir, 'node_modules');
  if (!prodOnly) {
    symlinkSync(join(ROOT, 'node_modules'), nm);
    return;
  }
  // the production closure as npm resolves it; nested copies live inside their parents
  const r = spawnSync('npm', ['ls', '--omit=dev', '--all', '--parseable'], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.status, 0, r.stderr);
  const top = join(ROOT, 'node_modules') + '/';
  for (const p of r.stdout.split('\n').filter((l) => l.startsWith(top))) {
    const rel = p.slice(top.length);
    if (rel.includes('/node_modules/')) continue;
    mkdirSync(dirname(join(nm, rel)), { recursive: true });
    if (!existsSync(join(nm, rel))) symlinkSync(p, join(nm, rel));
  }
}
