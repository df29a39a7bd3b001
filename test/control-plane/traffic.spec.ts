// The live traffic view end to end, all real processes: a CA, a control
// plane and two agents ("vm1" fronting web, "vm2" fronting catalog). web
// calls catalog through vm1's outbound listener over mTLS; vm2's inbound
// side reports the edge (with latency) every second; GET /v1/traffic and
// `meshctl top` show it.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PushClient } from '@amime/protocol/client';
import { adminCredential, keyAndCsr, request, stop, type CaProcess, type Credential, type Reply } from '../ca/fixtures/ca-process.js';
import { type CpProcess } from './fixtures/cp-process.js';
import { freePort, runAgent, writeAgentConfig, type AgentProcess } from '../agent/fixtures/agent-process.js';
import { until } from '../fixtures/until.js';
import { agentCommon, getStatus, listenHttp, meshctl as runMeshctl, shopIdentities, shopYaml, startCaAndControlPlane, type Run } from '../fixtures/shop-mesh.js';

process.env['AMIME_CA_QUIET'] = '1';
const TD = 'traffic.e2e';
const SERVER = `spiffe://${TD}/control-plane/controller`;
const ids = shopIdentities(TD);
const { web: WEB, catalog: CATALOG } = ids;
/** catalog answers after this long, so the edge's p50 is at least this. */
const CATALOG_DELAY_MS = 30;

let root: string;
let ca: CaProcess;
let cp: CpProcess | undefined;
let admin: Credential & { bundlePem: string };
let vm1: AgentProcess | undefined;
let vm2: AgentProcess | undefined;
let upstreamPort: number;
const servers: http.Server[] = [];
const keepAlive = new http.Agent({ keepAlive: true, maxSockets: 4 });

const cpGet = (path: string): Promise<Reply> => request(cp!.url, { path, trust: admin.bundlePem, trustDomain: TD, cred: admin, serverId: SERVER });
const apply = async (yaml: string): Promise<void> => {
  const r = await request(cp!.url, { path: '/v1/resources', trust: admin.bundlePem, trustDomain: TD, cred: admin, serverId: SERVER, raw: yaml, method: 'POST', headers: { 'content-type': 'application/yaml' } });
  assert.equal(r.status, 200, `apply: ${r.status} ${r.text}`);
};

const call = (path: string): Promise<number> => getStatus(upstreamPort, path, keepAlive);

const meshctl = (args: string[]): Promise<Run> => runMeshctl(join(root, 'ca', 'admin'), ['--control-plane', cp!.url, ...args], 50_000);

const SETUP = shopYaml(ids, { services: ['web', 'catalog'], policies: ['catalog-from-web'], extra: ['apiVersion: amime.dev/v1\nkind: MeshConfig\nmetadata: { name: mesh }\nspec:\n  monitor: { reportInterval: 1s }\n'] });

interface Edge {
  source: { identity: string; namespace?: string; service?: string };
  destination: { namespace: string; service: string };
  requests: number;
  rps: number;
  errors: number;
  errorRate: number;
  p50Ms: number | null;
  p99Ms: number | null;
  mtls: boolean;
  nodes: string[];
}
const webToCatalog = (edges: Edge[]) => edges.find((e) => e.source.identity === WEB && e.destination.service === 'catalog' && e.destination.namespace === 'shop');

before(async () => {
  root = mkdtempSync(join(tmpdir(), 'amime-traffic-e2e-'));
  const cpPort = await freePort();
  ({ ca, cp } = await startCaAndControlPlane(root, TD, { cpFlags: ['--port', String(cpPort)] }));
  admin = adminCredential(join(root, 'ca'));
  for (const [node, id] of [['vm1', WEB], ['vm2', CATALOG]] as const) {
    const r = await request(ca.url, { path: '/v1/admin/assignments', trust: admin.bundlePem, trustDomain: TD, cred: admin, body: { node, spiffeId: id } });
    assert.equal(r.status, 200, r.text);
  }
  await apply(SETUP);
  const catalogPort = await listenHttp(servers, (req, res) => {
    setTimeout(() => {
      res.statusCode = req.url === '/fail' ? 503 : 200;
      res.end('catalog');
    }, req.url === '/healthz' ? 0 : CATALOG_DELAY_MS);
  });
  const webPort = await listenHttp(servers, (_req, res) => res.end('web'));
  upstreamPort = await freePort();
  const common = agentCommon(root, ca, cp, admin.bundlePem);
  const vm1Config = writeAgentConfig(join(root, 'vm1'), {
    node: 'vm1',
    ...common,
    workloads: [{ service: 'web', namespace: 'shop', identity: WEB, port: webPort, protocol: 'http', upstreams: [{ service: 'catalog', namespace: 'shop', port: upstreamPort }] }],
  });
  const vm2Config = writeAgentConfig(join(root, 'vm2'), {
    node: 'vm2',
    ...common,
    workloads: [{ service: 'catalog', namespace: 'shop', identity: CATALOG, port: catalogPort, protocol: 'http', check: { http: '/healthz' } }],
  });
  const token = async (node: string) => (await request(ca.url, { path: '/v1/admin/tokens', trust: admin.bundlePem, trustDomain: TD, cred: admin, body: { node } })).json.token as string;
  [vm1, vm2] = await Promise.all([runAgent('vm1', vm1Config, await token('vm1')), runAgent('vm2', vm2Config, await token('vm2'))]);
  await until('web reaches catalog through the mesh', async () => (await call('/probe').catch(() => 0)) === 200, 30_000).catch((err: unknown) => {
    throw new Error(`${String(err)}\nvm1: ${vm1!.stderr().slice(-2000)}\nvm2: ${vm2!.stderr().slice(-2000)}`);
  });
});

after(async () => {
  keepAlive.destroy();
  await stop(vm1?.child);
  await stop(vm2?.child);
  await stop(cp?.child);
  await stop(ca);
  for (const s of servers) {
    s.closeAllConnections();
    s.close();
  }
  rmSync(root, { recursive: true, force: true });
});

describe('traffic view end to end', () => {
  test('GET /v1/traffic shows web → catalog with requests, errors, a latency p99, mTLS and the reporting node', async (t) => {
    // 20 calls, 4 of which catalog answers 503
    for (let i = 0; i < 20; i++) assert.equal(await call(i % 5 === 0 ? '/fail' : '/items'), i % 5 === 0 ? 503 : 200);
    // the probes before count too: wait until the view holds at least these 20 (reports every 1 s)
    const e = await until(
      'the edge in GET /v1/traffic',
      async () => {
        const r = await cpGet('/v1/traffic');
        assert.equal(r.status, 200, r.text);
        const found = webToCatalog(r.json.edges as Edge[]);
        return found && found.errors >= 4 && found.requests >= 21 ? { found, body: r.json as Record<string, unknown> } : undefined;
      },
      30_000,
    );
    assert.deepEqual(Object.keys(e.body).sort(), ['edges', 'generatedAt', 'windowSeconds']);
    assert.equal(e.body['windowSeconds'], 60);
    const edge = e.found;
    t.diagnostic(`web → catalog: ${JSON.stringify(edge)}`);
    assert.deepEqual(edge.source, { identity: WEB, namespace: 'shop', service: 'web' }, 'the source is named from the instance vm1 registered');
    assert.deepEqual(edge.nodes, ['vm2']);
    assert.equal(edge.mtls, true);
    assert.ok(edge.rps > 0, `rps ${edge.rps}`);
    assert.equal(edge.errors, 4);
    assert.ok(edge.errorRate > 0 && edge.errorRate < 1);
    assert.equal(typeof edge.p99Ms, 'number');
    // every answer took at least CATALOG_DELAY_MS at catalog: p50 and p99 lie in or above its bucket (25..50 ms)
    assert.ok(edge.p50Ms! >= 25 && edge.p99Ms! >= edge.p50Ms!, `p50 ${edge.p50Ms} p99 ${edge.p99Ms}`);
    const bad = await cpGet('/v1/traffic?window=5');
    assert.equal(bad.status, 400);
    assert.match(bad.json.error.message, /window/);
  });

  test('meshctl top: JSON for scripts, a table for people, --watch from the stream, usage errors', async (t) => {
    const json = await meshctl(['top', '-o', 'json', '--window', '2m']);
    assert.equal(json.code, 0, json.stderr);
    const snap = JSON.parse(json.stdout) as { windowSeconds: number; edges: Edge[] };
    assert.equal(snap.windowSeconds, 120);
    const edge = webToCatalog(snap.edges);
    assert.ok(edge && edge.requests > 0, json.stdout);
    assert.equal(typeof edge.p99Ms, 'number');

    const tableOut = await meshctl(['top', '-n', 'shop']);
    assert.equal(tableOut.code, 0, tableOut.stderr);
    t.diagnostic(`meshctl top -n shop:\n${tableOut.stdout}`);
    const lines = tableOut.stdout.trimEnd().split('\n');
    assert.match(lines[0]!, /^SOURCE\s+DESTINATION\s+RPS\s+ERR%\s+DENIED\s+P50\s+P99\s+MTLS$/);
    assert.ok(lines.some((l) => /^shop\/web\s+shop\/catalog\s+[\d.]+\s+[\d.]+%\s+0\s+\S+ms\s+\S+\s+yes$/.test(l)), tableOut.stdout);
    const other = await meshctl(['top', '-n', 'billing']);
    assert.equal(other.code, 0);
    assert.match(other.stdout, /no traffic to or from namespace billing/);

    const watched = await meshctl(['top', '--watch', '--count', '1', '-o', 'json']);
    assert.equal(watched.code, 0, watched.stderr);
    const frames = watched.stdout.trim().split('\n').map((l) => JSON.parse(l) as { edges: Edge[] });
    assert.equal(frames.length, 1);
    assert.ok(webToCatalog(frames[0]!.edges));

    const usage = await meshctl(['top', '--window', '5s']);
    assert.equal(usage.code, 64);
    assert.match(usage.stderr, /--window must be a duration from 10s to 1h/);
  });

  test('an agent speaks only for the services it fronts: a report into catalog from another node is not shown', async () => {
    const token = (await request(ca.url, { path: '/v1/admin/tokens', trust: admin.bundlePem, trustDomain: TD, cred: admin, body: { node: 'vm9' } })).json.token as string;
    const { keyPem, csr } = keyAndCsr(`spiffe://${TD}/agent/vm9`);
    const joined = await request(ca.url, { path: '/v1/join', trust: admin.bundlePem, trustDomain: TD, body: { token, csr } });
    assert.equal(joined.status, 200, joined.text);
    const liar = new PushClient({
      url: `${cp!.url.replace('https:', 'wss:')}/v1/push`,
      node: 'vm9',
      credential: () => ({ certPem: joined.json.svid as string, keyPem, bundlePem: admin.bundlePem }),
      heartbeatMs: 300,
      apply: () => undefined,
    });
    liar.start();
    try {
      await until('vm9 connected', () => liar.connected);
      const fake = { source: WEB, namespace: 'shop', peerAddress: '127.0.0.1', requests: 1_000_000, errors: 0, denials: 0, bytesIn: 0, bytesOut: 0 };
      // catalog's identity is assigned to vm2 only; "ghost" has no Service resource, so nothing says whose it is
      assert.equal(liar.sendReport({ seq: 1, intervalMs: 1000, edges: [{ ...fake, service: 'catalog' }, { ...fake, service: 'ghost' }] }), true);
      const edges = await until('the ghost edge from vm9', async () => {
        const list = (await cpGet('/v1/traffic')).json.edges as Edge[];
        return list.some((e) => e.destination.service === 'ghost') && list;
      });
      const catalog = webToCatalog(edges)!;
      assert.deepEqual(catalog.nodes, ['vm2']);
      assert.ok(catalog.requests < 1_000_000, `catalog requests ${catalog.requests}`);
    } finally {
      await liar.stop();
    }
  });
});
