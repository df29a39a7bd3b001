// meshctl's operator views as real processes: a CA, a control plane and one
// agent fronting a workload, all on loopback. `check` passes on the healthy
// mesh and fails (exit 3) once the control plane is stopped; `certs` lists the
// root, the agent's SVID and the workload's; `config-dump` shows the acked
// versions equal to the ones the control plane holds; `endpoints` and
// `services` show the registered instance.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { stop, type CaProcess } from '../ca/fixtures/ca-process.js';
import { type CpProcess } from '../control-plane/fixtures/cp-process.js';
import { runAgent, writeAgentConfig, type AgentProcess } from '../agent/fixtures/agent-process.js';
import { until } from '../fixtures/until.js';
import { agentCommon, meshctl as runMeshctl, meshctlOk, shopIdentities, shopYaml, startCaAndControlPlane, type Run } from '../fixtures/shop-mesh.js';

const TD = 'operator.test';
const ids = shopIdentities(TD);
const WEB = ids.web;

let root: string;
let adminDir: string;
let ca: CaProcess;
let cp: CpProcess | undefined;
let agent: AgentProcess | undefined;
let web: http.Server;

const meshctl = (...args: string[]): Promise<Run> => runMeshctl(adminDir, args, 50_000);
const ok = (...args: string[]): Promise<Run> => meshctlOk(adminDir, args, 50_000);
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const okJson = async (...args: string[]): Promise<any> => JSON.parse((await ok(...args, '-o', 'json')).stdout);

describe('meshctl check, certs, config-dump, endpoints and services against a running mesh', { concurrency: 1 }, () => {
  before(async () => {
    root = mkdtempSync(join(tmpdir(), 'amime-meshctl-operator-'));
    // The control plane writes control-plane-url into the admin directory, where meshctl finds it.
    // Heartbeats every 2 s (the fixture's 300 ms, overridden): a loaded test machine must not lapse the endpoints this test expects healthy.
    ({ ca, cp, adminDir } = await startCaAndControlPlane(root, TD, { cpFlags: ['--heartbeat', '2s'] }));
    await ok('assign', 'vm1', WEB);
    const svc = join(root, 'web.yaml');
    writeFileSync(svc, shopYaml(ids, { services: ['web'] }));
    await ok('apply', '-f', svc);
    web = http.createServer((_req, res) => res.end('web'));
    await new Promise<void>((r) => web.listen(0, '127.0.0.1', r));
    const token = (await okJson('token', 'create', '--node', 'vm1')).token as string;
    const config = writeAgentConfig(join(root, 'vm1'), {
      node: 'vm1',
      ...agentCommon(root, ca, cp, readFileSync(join(adminDir, 'bundle.pem'), 'utf8')),
      workloads: [{ service: 'web', namespace: 'shop', identity: WEB, port: (web.address() as AddressInfo).port, protocol: 'http' }],
    });
    agent = await runAgent('vm1', config, token);
    // Registered, and the workload SVID reported with it.
    await until('the agent registers its instance and reports its SVIDs', async () => {
      const certs = await meshctl('certs', '-o', 'json');
      return certs.code === 0 && (JSON.parse(certs.stdout).items as { kind: string }[]).some((c) => c.kind === 'workload');
    }, 30_000).catch((err: unknown) => {
      throw new Error(`${String(err)}\nagent: ${agent?.stderr().slice(-3000)}`);
    });
  });

  after(async () => {
    await stop(agent?.child);
    await stop(cp?.child);
    await stop(ca);
    await new Promise((r) => web?.close(r));
    rmSync(root, { recursive: true, force: true });
  });

  test('check -o json passes on the healthy mesh, each check named, with the clocks measured', async () => {
    const r = await meshctl('check', '-o', 'json');
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const out = JSON.parse(r.stdout) as { ok: boolean; exitCode: number; checks: { name: string; status: string; detail: string }[] };
    assert.equal(out.ok, true);
    assert.equal(out.exitCode, 0);
    const by = Object.fromEntries(out.checks.map((c) => [c.name, c]));
    for (const name of ['credential', 'ca', 'clock (CA)', 'control plane', 'clock (control plane)', 'certificates', 'agents', 'config', 'endpoints']) {
      assert.ok(by[name], `check ${name} is reported`);
      assert.equal(by[name]!.status, 'ok', `${name}: ${by[name]!.detail}`);
    }
    assert.match(by['clock (CA)']!.detail, /±/);
    assert.match(by['agents']!.detail, /1 connected here/);
    const table = await ok('check');
    assert.match(table.stdout, /^passed: 9 ok, 0 warn, 0 fail$/m);
  });

  test('certs -o json lists the root, the agent SVID and the workload SVID with notAfter, soonest first', async () => {
    const out = await okJson('certs');
    const items = out.items as { kind: string; name: string; node?: string; notAfter: string; leftSeconds: number; state: string }[];
    const rootCert = items.find((c) => c.kind === 'root');
    const agentSvid = items.find((c) => c.kind === 'agent');
    const workload = items.find((c) => c.kind === 'workload');
    assert.ok(rootCert && agentSvid && workload, JSON.stringify(items));
    assert.equal(agentSvid.name, `spiffe://${TD}/agent/vm1`);
    assert.equal(agentSvid.node, 'vm1');
    assert.equal(workload.name, WEB);
    assert.equal(workload.node, 'vm1');
    for (const c of [rootCert, agentSvid, workload]) {
      assert.ok(Date.parse(c.notAfter) > Date.now(), `${c.kind} notAfter ${c.notAfter}`);
      assert.equal(c.state, 'ok');
    }
    assert.ok(items.some((c) => c.kind === 'intermediate'), 'the intermediate the agent presents');
    const times = items.map((c) => Date.parse(c.notAfter));
    assert.deepEqual(times, [...times].sort((a, b) => a - b), 'sorted by expiry');
    // --within keeps the short-lived SVIDs and drops the root.
    const soon = (await okJson('certs', '--within', '2d')).items as { kind: string }[];
    assert.ok(soon.some((c) => c.kind === 'workload'));
    assert.ok(!soon.some((c) => c.kind === 'root'));
    assert.match((await ok('certs')).stdout, /^KIND\s+NAME\s+NODE/m);
  });

  test('config-dump shows every subscribed type acked at the version the control plane holds, and the instance', async () => {
    const dump = await until('the agent acks every type', async () => {
      const d = await okJson('config-dump', 'vm1');
      return Object.values(d.types as Record<string, { inSync: boolean }>).every((t) => t.inSync) ? d : undefined;
    });
    const types = dump.types as Record<string, { version: string; acked: string; resources: { kind: string; metadata: { name: string } }[] }>;
    assert.ok(Object.keys(types).length >= 5, Object.keys(types).join(','));
    for (const [type, t] of Object.entries(types)) assert.equal(t.acked, t.version, type);
    assert.deepEqual(types['Service']!.resources.map((r) => r.metadata.name), ['web']);
    assert.equal(dump.instances.length, 1);
    assert.equal(dump.instances[0].service, 'web');
    assert.equal(dump.svid.spiffeId, `spiffe://${TD}/agent/vm1`);
    // YAML by default, the same document.
    const yaml = parseYaml((await ok('config-dump', 'vm1')).stdout);
    assert.equal(yaml.node, 'vm1');
    assert.equal(yaml.types.Service.acked, types['Service']!.acked);
    // An unknown node: refused with the next step.
    const missing = await meshctl('config-dump', 'vm9');
    assert.equal(missing.code, 1, missing.stderr);
    assert.match(missing.stderr, /vm9 is not connected/);
    assert.match(missing.stderr, /next: .*meshctl agents/);
  });

  test('endpoints and services show the registered instance', async () => {
    const table = (await ok('endpoints')).stdout;
    assert.match(table, /^NAMESPACE\s+SERVICE\s+NODE\s+ADDRESS:PORT\s+IDENTITY\s+ZONE\s+HEALTH$/m);
    assert.match(table, new RegExp(`^shop\\s+web\\s+vm1\\s+127\\.0\\.0\\.1:${agent!.inbound}\\s+${WEB.replace(/[./]/g, '\\$&')}\\s+-\\s+healthy$`, 'm'));
    const json = await okJson('endpoints', 'web', '-n', 'shop');
    assert.equal(json.length, 1);
    assert.equal(json[0].port, agent!.inbound);
    assert.deepEqual(await okJson('endpoints', 'nothing'), []);
    const bad = await meshctl('endpoints', 'Bad_Name');
    assert.equal(bad.code, 64);
    assert.match((await ok('services', '-n', 'shop')).stdout, /^shop\s+web\s+http:8080\/http\s+1\/1\s+-\s+-$/m);
  });

  test('ca rotate is the rotation under its other name, and a single step shows its progress', async () => {
    const st = await okJson('ca', 'rotate', 'status');
    assert.equal(st.phase, 'steady');
    assert.deepEqual(st, await okJson('rotate', 'status'));
    // One step, with what it does and what the CA holds after it on stderr.
    const prepared = await ok('ca', 'rotate', 'prepare');
    assert.match(prepared.stderr, /^prepare: a new root and intermediate/m);
    assert.match(prepared.stderr, /done: phase prepared, .*2 root\(s\) in the bundle/);
    assert.match(prepared.stdout, /phase:\s+prepared/);
  });

  test('check fails with exit 3 when the control plane is stopped, and says what to do', async () => {
    await stop(cp!.child);
    cp = undefined;
    const r = await meshctl('check', '-o', 'json');
    assert.equal(r.code, 3, r.stdout + r.stderr);
    const out = JSON.parse(r.stdout) as { ok: boolean; checks: { name: string; status: string; detail: string; next?: string }[] };
    assert.equal(out.ok, false);
    const by = Object.fromEntries(out.checks.map((c) => [c.name, c]));
    assert.equal(by['control plane']!.status, 'fail');
    assert.match(by['control plane']!.next!, /start it|URL/);
    assert.equal(by['ca']!.status, 'ok', 'the CA still answers');
    assert.equal(by['agents']!.status, 'skip');
    const table = await meshctl('check');
    assert.equal(table.code, 3);
    assert.match(table.stdout, /^fail\s+control plane\s+/m);
    assert.match(table.stdout, /^FAILED: /m);
  });
});
