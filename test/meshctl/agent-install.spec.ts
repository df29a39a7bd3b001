// `meshctl agent install` for real, all real processes: a CA and a control
// plane on loopback; meshctl (a process) installs into temp paths, fetching the
// bundle from the CA with the admin credential; then the unit's ExecStart line
// is run by hand (the bundled agent under plain node with the agent's node
// flags): it joins with the one-time token, becomes ready and registers with
// the control plane. Restarted (SIGTERM, the same command) without the token,
// it comes back with its stored SVID. A VM without any trust cannot fetch the
// CA's bundle with only a pinned fingerprint (GET /v1/bundle is for peers):
// meshctl says how to get the bundle instead.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fromPem } from '@amime/identity';
import { adminCredential, initCa, request, serveCa, stop, workspace, type CaProcess, type Credential } from '../ca/fixtures/ca-process.js';
import { serveControlPlane, type CpProcess } from '../control-plane/fixtures/cp-process.js';
import { freePort } from '../agent/fixtures/agent-process.js';

process.env['AMIME_CA_QUIET'] = '1';
const TD = 'install.e2e';
const NODE = 'vm-install';
const MESHCTL = join(workspace, 'apps', 'meshctl', 'src', 'main.ts');
const AGENT_BUNDLE = join(workspace, 'dist', 'apps', 'agent', 'main.mjs');

let root: string;
let ca: CaProcess;
let cp: CpProcess | undefined;
let admin: Credential & { bundlePem: string };
let agent: Agent | undefined;
const paths = { prefix: '', data: '', opt: '', unit: '' };
let adminPort: number;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function meshctl(args: string[]): Promise<Run> {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const k of ['AMIME_CA_URL', 'AMIME_CREDENTIALS', 'AMIME_CONTROL_PLANE_URL']) delete env[k];
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', MESHCTL, ...args], { cwd: workspace, env, timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
    });
  });
}

/** ExecStart's value split as systemd does for our lines: words, "double quotes" with \-escapes, %% and $$. */
function splitExecStart(line: string): string[] {
  const out: string[] = [];
  const re = /"((?:[^"\\]|\\.)*)"|(\S+)/g;
  for (let m = re.exec(line); m; m = re.exec(line)) out.push((m[1] !== undefined ? m[1].replace(/\\(.)/g, '$1') : m[2]!).replace(/%%/g, '%').replace(/\$\$/g, '$'));
  return out;
}

interface Agent {
  child: ChildProcess;
  admin: string;
  stderr(): string;
}

/** Runs argv exactly (no tsx) and waits for the agent's "serving" line. */
async function runExecStart(argv: string[], timeoutMs = 40_000): Promise<Agent> {
  const child = spawn(argv[0]!, argv.slice(1), { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.setEncoding('utf8');
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (d: string) => {
    if (err.length < 1_000_000) err += d;
  });
  const line = await new Promise<{ admin: string }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the agent was not serving within ${timeoutMs} ms: ${err.slice(-4000)}`)), timeoutMs);
    child.stdout!.on('data', (d: string) => {
      out += d;
      const l = out.split('\n').find((x) => x.includes('"serving"'));
      if (l) {
        clearTimeout(timer);
        resolve(JSON.parse(l) as { admin: string });
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`the agent exited (${code ?? signal}) before serving: ${err.slice(-4000)}`));
    });
  });
  return { child, admin: line.admin, stderr: () => err };
}

async function until(what: string, check: () => Promise<unknown>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      if (await check()) return;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}${agent ? `\nagent: ${agent.stderr().slice(-3000)}` : ''}`);
    await sleep(150);
  }
}

async function registered(): Promise<boolean> {
  const r = await request(cp!.url, { path: '/v1/agents', trust: admin.bundlePem, trustDomain: TD, cred: admin, serverId: `spiffe://${TD}/control-plane/controller` });
  return r.status === 200 && (r.json.agents as { node: string }[]).some((a) => a.node === NODE);
}

const ready = async (): Promise<boolean> => (await fetch(`${agent!.admin}/ready`)).status === 200;

before(async () => {
  // The bundle under test, built fresh with the agent project's own build command (not through nx:
  // this spec may itself run under nx).
  const command = (JSON.parse(readFileSync(join(workspace, 'apps', 'agent', 'project.json'), 'utf8')) as { targets: { build: { options: { command: string } } } }).targets.build.options.command;
  const build = spawnSync(command, { cwd: workspace, shell: true, encoding: 'utf8', timeout: 120_000, env: { ...process.env, PATH: `${join(workspace, 'node_modules', '.bin')}:${process.env['PATH'] ?? ''}` } });
  assert.equal(build.status, 0, `${command}: ${build.stdout}${build.stderr}`);
  root = mkdtempSync(join(tmpdir(), 'amime-agent-install-e2e-'));
  Object.assign(paths, { prefix: join(root, 'etc'), data: join(root, 'data'), opt: join(root, 'opt'), unit: join(root, 'systemd', 'amime-agent.service') });
  initCa(join(root, 'ca'), TD);
  admin = adminCredential(join(root, 'ca'));
  ca = await serveCa(join(root, 'ca'));
  cp = await serveControlPlane(join(root, 'cp'), ca.url, join(root, 'ca', 'admin'), ['--port', String(await freePort())]);
  adminPort = await freePort();
});

after(async () => {
  await stop(agent?.child);
  await stop(cp?.child);
  await stop(ca);
  if (root) rmSync(root, { recursive: true, force: true });
});

describe('meshctl agent install, then the unit command run by hand', { concurrency: 1 }, () => {
  test('a VM with only a pinned fingerprint cannot fetch the bundle (peers only): 1, saying how to get it', async () => {
    const fp = new X509Certificate(fromPem(admin.bundlePem, 'CERTIFICATE')[0]!).fingerprint256;
    const r = await meshctl(['agent', 'install', '--credentials', join(root, 'no-admin'), '--node', NODE, '--ca', ca.url, '--control-plane', cp!.url, '--token', 'x', '--advertise', '127.0.0.1', '--ca-fingerprint', fp, '--agent-bundle', AGENT_BUNDLE, '--dry-run']);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /serves its bundle only to mesh members[\s\S]*meshctl bundle show --format pem > bundle.pem/);
  });

  test('install (bundle fetched with the admin credential), run ExecStart: joins, ready, registered', async () => {
    const tok = await request(ca.url, { path: '/v1/admin/tokens', body: { node: NODE }, trust: admin.bundlePem, trustDomain: TD, cred: admin });
    assert.equal(tok.status, 200, tok.text);
    writeFileSync(join(root, 'join-token'), `${tok.json.token as string}\n`, { mode: 0o600 });
    const r = await meshctl([
      'agent', 'install',
      '--credentials', join(root, 'ca', 'admin'),
      '--node', NODE,
      '--ca', ca.url,
      '--control-plane', cp!.url, // https://HOST:PORT: the push URL is derived
      '--token-file', join(root, 'join-token'),
      '--advertise', '127.0.0.1',
      '--inbound-port', '0',
      '--admin-port', String(adminPort),
      '--prefix', paths.prefix,
      '--data-dir', paths.data,
      '--install-dir', paths.opt,
      '--unit-path', paths.unit,
      '--agent-bundle', AGENT_BUNDLE,
      '--user', userInfo().username,
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(readFileSync(join(paths.prefix, 'bundle.pem'), 'utf8'), admin.bundlePem);
    const exec = /^ExecStart=(.*)$/m.exec(readFileSync(paths.unit, 'utf8'))![1]!;
    const argv = splitExecStart(exec);
    assert.equal(argv[0], process.execPath);
    assert.ok(argv.includes('--max-semi-space-size=2'));
    assert.deepEqual(argv.slice(-6), [join(paths.opt, 'agent.mjs'), 'run', '--config', join(paths.prefix, 'agent.yaml'), '--token-file', join(paths.prefix, 'token')]);
    agent = await runExecStart(argv);
    assert.equal(agent.admin, `http://127.0.0.1:${adminPort}`);
    await until('the agent is ready', ready);
    await until('the control plane lists the agent', registered);
    assert.ok(existsSync(join(paths.data, 'identity', 'agent.crt')), 'the agent stored its SVID in --data-dir');
  });

  test('restarted with the same command and no token, it rejoins with its SVID', async () => {
    assert.ok(agent, 'the previous test started the agent');
    const svid = readFileSync(join(paths.data, 'identity', 'agent.crt'), 'utf8');
    const exited = new Promise<number | null>((r) => agent!.child.once('exit', (code) => r(code)));
    agent.child.kill('SIGTERM');
    assert.equal(await exited, 0, `the agent did not drain cleanly: ${agent.stderr().slice(-2000)}`);
    await until('the control plane drops the agent', async () => !(await registered()));
    // The token is gone (emptied here; deleted in the next test): only the stored SVID can get the agent back in.
    writeFileSync(join(paths.prefix, 'token'), '');
    const argv = splitExecStart(/^ExecStart=(.*)$/m.exec(readFileSync(paths.unit, 'utf8'))![1]!);
    agent = await runExecStart(argv);
    await until('the agent is ready again', ready);
    await until('the control plane lists the agent again', registered);
    assert.equal(readFileSync(join(paths.data, 'identity', 'agent.crt'), 'utf8'), svid, 'it came back with the SVID it had (no new join)');
    assert.doesNotMatch(agent.stderr(), /no_token|agent_expired/);
  });

  test(
    'restarted after the token file was deleted: a missing --token-file means no token',
    async () => {
      assert.ok(agent, 'the previous tests started the agent');
      const exited = new Promise<number | null>((r) => agent!.child.once('exit', (code) => r(code)));
      agent!.child.kill('SIGTERM');
      await exited;
      unlinkSync(join(paths.prefix, 'token'));
      agent = await runExecStart(splitExecStart(/^ExecStart=(.*)$/m.exec(readFileSync(paths.unit, 'utf8'))![1]!), 15_000);
      await until('the agent is ready after the token file was deleted', ready);
    },
  );
});
