// The dashboard server against a fake control plane (FakeMeshSource): its JSON
// routes, "not available" for routes an older control plane lacks, the Host
// and Origin checks, the WebSocket's pushes, the client cap and the bound on
// what a slow client may hold.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { WebSocket } from 'ws';
import type { Finding } from '@amime/monitor';
import { FakeMeshSource } from './testing/fake-source.js';
import { MeshView } from './mesh-view.js';
import { startDashboardServer, type RunningDashboard } from './server.js';

const TD = 'spiffe://demo.test/ns/demo/sa';
const finding = (id: string): Finding => ({
  id,
  kind: 'new_edge',
  at: new Date().toISOString(),
  edge: { source: `${TD}/web`, namespace: 'demo', service: 'inventory', sourceNode: 'vm1' },
  node: 'vm3',
  baseline: 0,
  observed: 1,
  threshold: 0,
  unit: 'requests/s',
  message: `new edge ${id}`,
});

/** A GET with a chosen Host header (fetch will not let us set it). */
function get(port: number, path: string, opts: { host?: string; method?: string } = {}): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, method: opts.method ?? 'GET', headers: { host: opts.host ?? `127.0.0.1:${port}` }, timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** Opens /ws and collects its frames; resolves once open or with the refusal status. */
function socket(port: number, headers: Record<string, string>): Promise<{ ws?: WebSocket; status?: number; frames: { type: string; [k: string]: unknown }[] }> {
  return new Promise((resolve) => {
    const frames: { type: string }[] = [];
    const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`, { headers, handshakeTimeout: 5000 });
    ws.on('message', (d) => frames.push(JSON.parse(String(d))));
    ws.on('open', () => resolve({ ws, frames }));
    ws.on('unexpected-response', (_req, res) => {
      resolve({ status: res.statusCode, frames });
      res.resume();
    });
    ws.on('error', () => resolve({ status: -1, frames }));
  });
}

async function until<T>(what: string, f: () => T | undefined, ms = 5000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v) return v;
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

describe('the dashboard server', () => {
  let source: FakeMeshSource;
  let view: MeshView;
  let server: RunningDashboard;
  let origin: string;

  before(async () => {
    source = new FakeMeshSource();
    source.data.services = ['web', 'catalog'].map((name) => ({ kind: 'Service', metadata: { name, namespace: 'demo' }, spec: { identity: `${TD}/${name}` } }));
    source.data.policies = [{ kind: 'AuthorizationPolicy', metadata: { name: 'catalog-from-web', namespace: 'demo' }, spec: { action: 'ALLOW', target: 'catalog', rules: [{ from: [{ identity: `${TD}/web` }], to: { methods: ['GET'], paths: ['/items/*'] } }] } }];
    source.data.routes = [{ kind: 'Route', metadata: { name: 'reviews-split', namespace: 'demo' }, spec: { service: 'reviews', rules: [{ backends: [{ service: 'reviews', subset: 'v1', weight: 90 }, { service: 'reviews', subset: 'v2', weight: 10 }] }] } }];
    source.data.certs.roots = [{ subject: 'CN=amime root', spiffeId: 'spiffe://demo.test', serial: '01', notBefore: '2026-01-01T00:00:00Z', notAfter: '2036-01-01T00:00:00Z', fingerprint: 'AA', source: 'bundle' }];
    source.missing.add('endpoints'); // as an older control plane: the page must still work
    source.data.agents = [{ node: 'vm1', spiffeId: 'spiffe://demo.test/agent/vm1', connectedAt: new Date().toISOString(), address: '127.0.0.1', types: {}, instances: 2 }];
    view = new MeshView({ refreshMs: 60_000 });
    server = await startDashboardServer({ view, port: 0, maxClients: 3 });
    origin = `http://127.0.0.1:${server.port}`;
    await view.attach(source, 'https://127.0.0.1:1');
  });

  after(async () => {
    await server.close();
    view.close();
  });

  test('serves the page with a strict CSP and the JSON of every section', async () => {
    const page = await get(server.port, '/');
    assert.equal(page.status, 200);
    assert.match(page.headers['content-security-policy'] as string, /script-src 'self'/);
    assert.doesNotMatch(page.headers['content-security-policy'] as string, /unsafe-inline/);
    assert.equal(page.headers['x-content-type-options'], 'nosniff');
    assert.match(page.body, /<script type="module" src="\/dashboard.mjs">/);
    const js = await get(server.port, '/dashboard.mjs');
    assert.equal(js.status, 200);
    assert.match(js.headers['content-type'] as string, /^text\/javascript/);
    assert.equal((await get(server.port, '/favicon.ico')).status, 204, 'no 404 in the browser console');

    const graph = JSON.parse((await get(server.port, '/api/graph')).body);
    assert.deepEqual(graph.data.nodes.map((n: { label: string }) => n.label).sort(), ['catalog', 'web']);
    const certs = JSON.parse((await get(server.port, '/api/certs')).body);
    assert.equal(certs.available, true);
    assert.deepEqual([certs.data[0].kind, certs.data[0].name, certs.data[0].notAfter], ['root', 'CN=amime root', '2036-01-01T00:00:00Z']);
    const policies = JSON.parse((await get(server.port, '/api/policies')).body);
    assert.deepEqual(policies.data[0].rules, [`${TD}/web → GET /items/*`]);
    const routes = JSON.parse((await get(server.port, '/api/routes')).body);
    assert.deepEqual(routes.data[0].rules, ['every request → reviews/v1 90%, reviews/v2 10%']);
    const agents = JSON.parse((await get(server.port, '/api/agents')).body);
    assert.equal(agents.data[0].node, 'vm1');
    const state = JSON.parse((await get(server.port, '/api/state')).body);
    assert.deepEqual(Object.keys(state).sort(), ['agents', 'anomalies', 'certs', 'connection', 'graph', 'policies', 'routes']);
    assert.equal(state.connection.data.controlPlane, 'connected');
  });

  test('a route the control plane lacks (404) leaves the rest working: instance counts are unknown, not zero', async () => {
    const graph = JSON.parse((await get(server.port, '/api/graph')).body);
    assert.equal(graph.available, true);
    assert.equal(graph.data.nodes[0].instances, null);
    source.missing.add('certs');
    await view.refresh();
    const certs = JSON.parse((await get(server.port, '/api/certs')).body);
    assert.deepEqual([certs.available, certs.note, certs.data], [false, 'not available on this control plane', []]);
    source.missing.delete('certs');
    await view.refresh();
    assert.equal(JSON.parse((await get(server.port, '/api/certs')).body).available, true);
  });

  test('refuses foreign Host names (DNS rebinding), writes and unknown paths with a reason', async () => {
    const rebound = await get(server.port, '/api/state', { host: `evil.example:${server.port}` });
    assert.equal(rebound.status, 421);
    assert.match(JSON.parse(rebound.body).error.message, /evil\.example.*--allow-host/);
    assert.equal((await get(server.port, '/api/state', { host: `localhost:${server.port}` })).status, 200);
    assert.equal((await get(server.port, '/api/state', { host: 'localhost:8080' })).status, 200, 'through a port forward (ssh -L 8080:127.0.0.1:PORT)');
    assert.equal((await get(server.port, '/api/state', { host: '[::1]:8080' })).status, 200);
    assert.equal((await get(server.port, '/api/state', { method: 'POST' })).status, 405);
    const traversal = await get(server.port, '/../../etc/passwd');
    assert.equal(traversal.status, 404);
    assert.equal((await get(server.port, `/api/state?${'a'.repeat(3000)}`)).status, 414);
  });

  test('the WebSocket: cross-site and Origin-less upgrades are refused; the page gets the state, then changes live', async () => {
    assert.equal((await socket(server.port, { origin: 'http://evil.example' })).status, 403);
    assert.equal((await socket(server.port, { origin: `http://127.0.0.1:${server.port + 1}` })).status, 403, 'Origin and Host must agree on the port');
    assert.equal((await socket(server.port, {})).status, 403, 'no Origin: not a page of ours');
    assert.equal((await socket(server.port, { origin: 'http://evil.example', host: `evil.example:${server.port}` })).status, 421, 'a rebound name with a matching Origin still fails on Host');

    const c = await socket(server.port, { origin });
    assert.ok(c.ws, `same-origin socket refused (${c.status})`);
    const first = await until('the state frame', () => c.frames.find((f) => f.type === 'state'));
    assert.ok((first['sections'] as { graph: unknown }).graph);

    source.pushFinding(finding('f-1'));
    const a = await until('the anomaly frame', () => c.frames.find((f) => f.type === 'anomaly'));
    assert.equal((a['finding'] as Finding).id, 'f-1');

    const n = source.pushTraffic({
      windowSeconds: 60,
      generatedAt: new Date().toISOString(),
      edges: [{ source: { identity: `${TD}/web` }, destination: { namespace: 'demo', service: 'catalog' }, requests: 9, rps: 1, errors: 0, errorRate: 0, denials: 2, denialRate: 0.2, p50Ms: 1, p99Ms: 3, bytesIn: 0, bytesOut: 0, mtls: true, nodes: ['vm2'], lastSeen: new Date().toISOString() }],
    });
    assert.equal(n, 1, 'the view follows the traffic stream');
    const g = await until('a graph frame with the edge', () => c.frames.find((f) => f.type === 'section' && f['name'] === 'graph' && (f['section'] as { data: { edges: unknown[] } }).data.edges.length === 1));
    const edge = (g['section'] as { data: { edges: { from: string; to: string; denials: number }[] } }).data.edges[0]!;
    assert.deepEqual([edge.from, edge.to, edge.denials], ['svc:demo/web', 'svc:demo/catalog', 2]);

    c.ws!.send('hello'); // the socket is one-way
    const [code] = (await once(c.ws!, 'close')) as [number];
    assert.equal(code, 1008);
  });

  test('at most maxClients sockets; the next is told why', async () => {
    const open = await Promise.all([1, 2, 3].map(() => socket(server.port, { origin })));
    assert.ok(open.every((o) => o.ws));
    await until('three clients', () => server.clients() === 3);
    assert.equal((await socket(server.port, { origin })).status, 503);
    for (const o of open) o.ws!.close();
    await until('the clients to go', () => server.clients() === 0);
  });
});

describe('a slow browser', () => {
  test('is dropped once its unsent updates pass the bound, instead of growing the server', async () => {
    const source = new FakeMeshSource();
    const view = new MeshView({ refreshMs: 60_000 });
    const server = await startDashboardServer({ view, port: 0, maxClientBufferBytes: 64 * 1024 });
    await view.attach(source);
    try {
      const c = await socket(server.port, { origin: `http://127.0.0.1:${server.port}` });
      assert.ok(c.ws);
      (c.ws as unknown as { _socket: { pause(): void } })._socket.pause(); // stops reading, so the server's buffer fills
      const closed = once(c.ws!, 'close');
      const big = 'x'.repeat(8 * 1024);
      for (let i = 0; i < 2000 && server.clients() > 0; i++) {
        source.pushFinding({ ...finding(`slow-${i}`), message: big });
        if (i % 50 === 0) await sleep(5);
      }
      assert.equal(server.clients(), 0, 'the slow client was dropped');
      (c.ws as unknown as { _socket: { resume(): void } })._socket.resume();
      await closed;
    } finally {
      await server.close();
      view.close();
    }
  });
});
