// `meshctl tap` as real processes: a CA, a control plane, two agents ("vm1"
// fronting web, "vm2" fronting catalog) and meshctl itself. While meshctl
// taps shop/catalog, the test drives web → catalog requests through vm1's
// outbound listener, one allowed and one denied by policy, each with a
// secret in its query string. meshctl prints both agents' events as JSON
// lines (outbound at vm1, inbound at vm2, the denial with its cause), stops
// after --max events with exit 0, and no query string reaches its output.
// A TCP service (db) shows one event per stream at both ends, with bytes.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { request, stop, type CaProcess } from '../ca/fixtures/ca-process.js';
import { type CpProcess } from '../control-plane/fixtures/cp-process.js';
import { freePort, runAgent, writeAgentConfig, type AgentProcess } from '../agent/fixtures/agent-process.js';
import { until } from '../fixtures/until.js';
import { agentCommon, getStatus, listenHttp, meshctl as runMeshctl, meshctlOk, shopIdentities, shopYaml, startCaAndControlPlane, type Run } from '../fixtures/shop-mesh.js';
import { ControlPlaneClient, ControlPlaneClientError } from '@amime/control-plane';

const TD = 'tap.test';
const ids = shopIdentities(TD);
const { web: WEB, catalog: CATALOG, db: DB } = ids;

let root: string;
let adminDir: string;
let ca: CaProcess;
let cp: CpProcess | undefined;
const agents: AgentProcess[] = [];
const servers: http.Server[] = [];
let upstreamPort: number;
let dbUpstreamPort: number;
let echo: net.Server | undefined;
const keepAlive = new http.Agent({ keepAlive: true, maxSockets: 4 });

const meshctl = (...args: string[]): Promise<Run> => runMeshctl(adminDir, args, 60_000);
const ok = (...args: string[]): Promise<Run> => meshctlOk(adminDir, args, 60_000);

/** One request from "web" to catalog through vm1's outbound listener. */
const call = (path: string): Promise<number> => getStatus(upstreamPort, path, keepAlive);

/** Runs meshctl with `args` while driving an allowed and a denied request every 150 ms, until meshctl exits. */
async function tapWhileDriving(args: string[]): Promise<Run> {
  const run = meshctl(...args);
  let exited: Run | undefined;
  void run.then((r) => (exited = r));
  const deadline = Date.now() + 55_000;
  while (!exited && Date.now() < deadline) {
    await Promise.all([call('/items/7?token=s3cret').catch(() => 0), call('/admin?key=hunter2').catch(() => 0)]);
    await sleep(150);
  }
  return run;
}

const YAML = shopYaml(ids, { services: ['web', 'catalog', 'db'], policies: ['db-from-web', 'catalog-from-web', 'catalog-no-admin'] });

describe('meshctl tap against a running mesh', { concurrency: 1 }, () => {
  before(async () => {
    root = mkdtempSync(join(tmpdir(), 'amime-meshctl-tap-'));
    // The control plane writes control-plane-url into the admin directory, where meshctl finds it.
    ({ ca, cp, adminDir } = await startCaAndControlPlane(root, TD));
    await Promise.all([ok('assign', 'vm1', WEB), ok('assign', 'vm2', CATALOG), ok('assign', 'vm2', DB)]);
    writeFileSync(join(root, 'mesh.yaml'), YAML);
    await ok('apply', '-f', join(root, 'mesh.yaml'));
    const catalogPort = await listenHttp(servers, (req, res) => res.end(JSON.stringify({ service: 'catalog', path: req.url })));
    const webPort = await listenHttp(servers, (_req, res) => res.end('web'));
    upstreamPort = await freePort();
    dbUpstreamPort = await freePort();
    // db: a TCP echo server
    echo = net.createServer((sock) => {
      sock.on('data', (d) => sock.write(d));
      sock.on('error', () => undefined);
    });
    await new Promise<void>((r) => echo!.listen(0, '127.0.0.1', r));
    // No access log configured: taps must work without one.
    const common = agentCommon(root, ca, cp, readFileSync(join(adminDir, 'bundle.pem'), 'utf8'));
    const vm1 = writeAgentConfig(join(root, 'vm1'), {
      node: 'vm1',
      ...common,
      workloads: [{ service: 'web', namespace: 'shop', identity: WEB, port: webPort, protocol: 'http', upstreams: [{ service: 'catalog', namespace: 'shop', port: upstreamPort }, { service: 'db', namespace: 'shop', port: dbUpstreamPort }] }],
    });
    const vm2 = writeAgentConfig(join(root, 'vm2'), {
      node: 'vm2',
      ...common,
      workloads: [
        { service: 'catalog', namespace: 'shop', identity: CATALOG, port: catalogPort, protocol: 'http' },
        { service: 'db', namespace: 'shop', identity: DB, port: (echo.address() as AddressInfo).port, protocol: 'tcp' },
      ],
    });
    const token = async (node: string) => JSON.parse((await ok('token', 'create', '--node', node, '-o', 'json')).stdout).token as string;
    agents.push(...(await Promise.all([runAgent('vm1', vm1, await token('vm1')), runAgent('vm2', vm2, await token('vm2'))])));
    await until('web reaches catalog through the mesh, and /admin is denied', async () => (await call('/probe')) === 200 && (await call('/admin')) === 403, 30_000).catch((err: unknown) => {
      throw new Error(`${String(err)}\nvm1: ${agents[0]?.stderr().slice(-2000)}\nvm2: ${agents[1]?.stderr().slice(-2000)}`);
    });
  });

  after(async () => {
    keepAlive.destroy();
    for (const a of agents) await stop(a.child);
    await stop(cp?.child);
    await stop(ca);
    for (const s of servers) {
      s.closeAllConnections();
      s.close();
    }
    echo?.close();
    rmSync(root, { recursive: true, force: true });
  });

  test('-o json --max N: events from both agents, the denial with its cause, no query string; exit 0 after N', async () => {
    const r = await tapWhileDriving(['tap', 'catalog', '-n', 'shop', '-o', 'json', '--max', '12', '--duration', '50s']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /tapping shop\/catalog on 2 agents \(vm1, vm2\)/);
    const lines = r.stdout.trimEnd().split('\n');
    assert.equal(lines.length, 12, r.stdout);
    const events = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    for (const e of events) {
      assert.equal(e['service'], 'catalog');
      assert.equal(e['namespace'], 'shop');
      assert.equal(e['protocol'], 'http');
      assert.equal(e['method'], 'GET');
      assert.match(String(e['time']), /^\d{4}-\d\d-\d\dT/);
      assert.equal(typeof e['durationMs'], 'number');
      assert.match(String(e['traceId']), /^[0-9a-f]{32}$/);
    }
    const inbound = events.filter((e) => e['direction'] === 'inbound');
    const outbound = events.filter((e) => e['direction'] === 'outbound');
    assert.ok(inbound.length > 0 && inbound.every((e) => e['node'] === 'vm2' && e['source'] === WEB && e['destination'] === CATALOG), JSON.stringify(inbound));
    assert.ok(outbound.length > 0 && outbound.every((e) => e['node'] === 'vm1' && e['source'] === WEB), JSON.stringify(outbound));
    const denied = inbound.find((e) => e['status'] === 403);
    assert.ok(denied, `a denied request among ${JSON.stringify(events)}`);
    assert.equal(denied['path'], '/admin');
    assert.match(String(denied['error']), /denied/);
    const allowed = inbound.find((e) => e['status'] === 200);
    assert.ok(allowed);
    assert.equal(allowed['path'], '/items/7');
    assert.match(String(allowed['upstream']), /^127\.0\.0\.1:\d+$/, 'inbound: the local app');
    assert.doesNotMatch(r.stdout, /\?|s3cret|hunter2|token=|key=/, 'no query string reaches the tap');
  });

  test('for people: one line per request, source → destination, method, path, status, duration', async () => {
    const r = await tapWhileDriving(['tap', 'catalog', '-n', 'shop', '--max', '4']);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trimEnd().split('\n');
    assert.equal(lines.length, 4, r.stdout);
    for (const l of lines) assert.match(l, /^\d\d:\d\d:\d\d\.\d{3} (inbound |outbound) vm[12] shop\/web -> shop\/catalog GET \/(items\/7|admin) (200|403) [\d.]+ms/);
    assert.doesNotMatch(r.stdout, /\?|s3cret|hunter2/);
  });

  test('TCP: one event per stream, at both ends, with bytes and duration', async () => {
    /** One stream through vm1's db listener: "ping" echoed back, then closed by us. */
    const stream = () =>
      new Promise<string>((resolve, reject) => {
        const sock = net.connect({ host: '127.0.0.1', port: dbUpstreamPort });
        let got = '';
        sock.setEncoding('utf8');
        sock.on('data', (d: string) => {
          got += d;
          if (got === 'ping') sock.end();
        });
        sock.on('connect', () => sock.write('ping'));
        sock.on('close', () => resolve(got));
        sock.on('error', reject);
        sock.setTimeout(10_000, () => sock.destroy(new Error('tcp timeout')));
      });
    await until('db reachable over L4', async () => (await stream().catch(() => '')) === 'ping', 30_000);
    const run = meshctl('tap', 'db', '-n', 'shop', '-o', 'json', '--max', '4', '--duration', '50s');
    let exited = false;
    void run.then(() => (exited = true));
    for (let i = 0; i < 300 && !exited; i++) {
      await stream().catch(() => '');
      await sleep(150);
    }
    const r = await run;
    assert.equal(r.code, 0, r.stderr);
    const events = r.stdout.trimEnd().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.equal(events.length, 4, r.stdout);
    for (const e of events) {
      assert.equal(e['protocol'], 'tcp');
      assert.equal(e['service'], 'db');
      assert.equal(e['method'], undefined);
      assert.equal(e['path'], undefined);
      assert.equal(typeof e['durationMs'], 'number');
    }
    const inbound = events.find((e) => e['direction'] === 'inbound' && e['node'] === 'vm2');
    const outbound = events.find((e) => e['direction'] === 'outbound' && e['node'] === 'vm1');
    assert.ok(inbound && outbound, JSON.stringify(events));
    // 4 bytes each way: the agent counts what it carried (inbound: from the peer, to the app)
    assert.equal(inbound['bytesIn'], 4);
    assert.equal(inbound['bytesOut'], 4);
    assert.equal(outbound['bytesOut'], 4);
    assert.equal(outbound['bytesIn'], 4);
    assert.equal(inbound['source'], WEB);
    assert.equal(inbound['destination'], DB);
  });

  test('a service nobody calls: meshctl says so and what to check, and exits 0 after --duration', async () => {
    const started = Date.now();
    const r = await meshctl('tap', 'nosuch', '-n', 'shop', '--duration', '2s');
    assert.equal(r.code, 0, r.stderr);
    assert.ok(Date.now() - started >= 2000);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /no requests to or from shop\/nosuch in 2s on 2 agents/);
    assert.match(r.stderr, /meshctl agents/);
  });

  test('bad flags are usage errors (64) naming the flag; the control plane checks its query too', async () => {
    const bad = await meshctl('tap', 'catalog', '--rate', '0');
    assert.equal(bad.code, 64);
    assert.match(bad.stderr, /--rate must be a whole number from 1 to 1000/);
    const long = await meshctl('tap', 'catalog', '--duration', '1h');
    assert.equal(long.code, 64);
    assert.match(long.stderr, /--duration must be from 1s to 10m/);
    // Past meshctl: the route itself refuses before the upgrade, naming the parameter.
    const read = (f: string) => readFileSync(join(adminDir, f), 'utf8');
    const client = new ControlPlaneClient({ url: cp!.url, bundlePem: read('bundle.pem'), credential: { certPem: read('cert.pem'), keyPem: read('key.pem') } });
    for (const [request, message] of [
      [{ service: 'catalog', duration: '1h' }, /^duration: must be from 1s to 10m/],
      [{ service: 'catalog', rate: 5000 }, /^rate: must be a whole number/],
      [{ service: 'Catalog!' }, /^service: must be a DNS-1123 label/],
    ] as const) {
      await assert.rejects(client.tap(request, () => assert.fail('no frame for a refused tap')), (err: unknown) => err instanceof ControlPlaneClientError && err.status === 400 && err.reason === 'bad_query' && message.test(err.message));
    }
    client.close();
    const plain = await request(cp!.url, { path: '/v1/tap?service=catalog', trust: read('bundle.pem'), trustDomain: TD, cred: { certPem: read('cert.pem'), keyPem: read('key.pem') }, serverId: `spiffe://${TD}/control-plane/controller` });
    assert.equal(plain.status, 400, plain.text);
    assert.equal(plain.json.error.reason, 'websocket_required');
  });
});
