import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildGraph, MAX_GRAPH_NODES } from './graph.js';
import type { ResourceLike, TrafficEdge } from './mesh-types.js';
import { DEFAULT_STATIC_DIR } from './server.js';

const TD = 'spiffe://demo.test/ns/demo/sa';
const svc = (name: string, identity = `${TD}/${name}`): ResourceLike => ({ kind: 'Service', metadata: { name, namespace: 'demo' }, spec: { identity, ports: [] } });
const edge = (from: string, to: string, over: Partial<TrafficEdge> = {}): TrafficEdge => ({
  source: { identity: from.startsWith('spiffe://') ? from : `${TD}/${from}` },
  destination: { namespace: 'demo', service: to },
  requests: 100,
  rps: 5,
  errors: 1,
  errorRate: 0.01,
  denials: 0,
  denialRate: 0,
  p50Ms: 2,
  p99Ms: 9,
  bytesIn: 1,
  bytesOut: 2,
  mtls: true,
  nodes: ['vm1'],
  lastSeen: '2026-11-29T10:00:00.000Z',
  ...over,
});
const demo = [svc('web'), svc('catalog'), svc('inventory'), svc('reviews')];
const traffic = (edges: TrafficEdge[]) => ({ windowSeconds: 60, generatedAt: '2026-11-29T10:00:00.000Z', edges });

describe('buildGraph', () => {
  test('the demo: callers found by identity, columns by call depth, the denied edge carries its count', () => {
    const g = buildGraph({
      services: demo,
      traffic: traffic([edge('web', 'catalog'), edge('catalog', 'inventory'), edge('web', 'reviews'), edge('web', 'inventory', { denials: 7, denialRate: 1, requests: 7 })]),
    });
    const col = Object.fromEntries(g.nodes.map((n) => [n.label, n.column]));
    assert.deepEqual(col, { web: 0, catalog: 1, inventory: 2, reviews: 1 });
    assert.equal(g.columns, 3);
    const pairs = g.edges.map((e) => `${e.from}->${e.to}`).sort();
    assert.deepEqual(pairs, ['svc:demo/catalog->svc:demo/inventory', 'svc:demo/web->svc:demo/catalog', 'svc:demo/web->svc:demo/inventory', 'svc:demo/web->svc:demo/reviews']);
    const denied = g.edges.find((e) => e.to === 'svc:demo/inventory' && e.from === 'svc:demo/web')!;
    assert.equal(denied.denials, 7);
    assert.equal(g.traffic, true);
    const rows = g.nodes.filter((n) => n.column === 1).map((n) => [n.label, n.row]);
    assert.deepEqual(rows, [['catalog', 0], ['reviews', 1]]);
  });

  test('a source identity no service runs as becomes a node of its own; unknown destinations are added', () => {
    const g = buildGraph({ services: [svc('web')], traffic: traffic([edge('spiffe://demo.test/ns/ops/sa/curl', 'web'), edge('web', 'ghost')]) });
    const ids = g.nodes.map((n) => `${n.kind}:${n.label}`).sort();
    assert.deepEqual(ids, ['identity:spiffe://demo.test/ns/ops/sa/curl', 'service:ghost', 'service:web']);
    assert.equal(g.nodes.find((n) => n.label === 'ghost')!.column, 2);
  });

  test('two services sharing an identity: the source naming one picks it; counts of merged sources add up', () => {
    const shared = `${TD}/shared`;
    const g = buildGraph({
      services: [svc('a', shared), svc('b', shared), svc('c')],
      traffic: traffic([edge(shared, 'c', { source: { identity: shared, namespace: 'demo', service: 'b' } }), edge(shared, 'c', { source: { identity: shared, namespace: 'demo', service: 'zzz' }, errors: 3 })]),
    });
    const byFrom = Object.fromEntries(g.edges.map((e) => [e.from, e]));
    assert.equal(byFrom['svc:demo/b']!.requests, 100);
    assert.equal(byFrom['svc:demo/a']!.errors, 3, 'an unknown service name falls back to the first service with the identity');
  });

  test('cycles end (bounded relaxation), self-calls do not push a node right', () => {
    const g = buildGraph({ services: [svc('a'), svc('b')], traffic: traffic([edge('a', 'b'), edge('b', 'a'), edge('a', 'a')]) });
    for (const n of g.nodes) assert.ok(n.column >= 0 && n.column < 2, `${n.label} at ${n.column}`);
  });

  test('endpoints give instance and health counts; without them the counts are null', () => {
    const inst = (service: string, health: 'healthy' | 'unhealthy') => ({ service, namespace: 'demo', node: 'vm1', identity: '', address: '127.0.0.1', port: 1, health });
    const g = buildGraph({ services: demo, endpoints: [inst('web', 'healthy'), inst('web', 'unhealthy'), inst('reviews', 'healthy')] });
    const web = g.nodes.find((n) => n.label === 'web')!;
    assert.deepEqual([web.instances, web.healthy], [2, 1]);
    assert.deepEqual([g.nodes.find((n) => n.label === 'catalog')!.instances], [0]);
    assert.equal(buildGraph({ services: demo }).nodes[0]!.instances, null);
    assert.equal(buildGraph({ services: demo }).traffic, false);
  });

  test('malformed entries are skipped, not thrown on; the node count is bounded', () => {
    const junk = [null, {}, { source: {}, destination: { service: 'x' } }, { source: { identity: 5 }, destination: { namespace: 'demo', service: 'web' } }] as unknown as TrafficEdge[];
    const g = buildGraph({ services: [...demo, { kind: 'Service', metadata: {} } as ResourceLike], traffic: traffic([...junk, edge('web', 'catalog', { rps: Number.NaN as number })]) });
    assert.equal(g.edges.length, 1);
    assert.equal(g.edges[0]!.rps, 0, 'a non-finite number reads as 0');
    const many = Array.from({ length: MAX_GRAPH_NODES + 50 }, (_, i) => svc(`s${i}`));
    assert.equal(buildGraph({ services: many }).nodes.length, MAX_GRAPH_NODES);
  });

  test('names are carried as they are: escaping is the job of the page, which never parses them as HTML', () => {
    const evil = '<img src=x onerror=alert(1)>';
    const g = buildGraph({ services: [], traffic: traffic([edge(`spiffe://demo.test/ns/x/sa/${evil}`, evil)]) });
    assert.ok(g.nodes.some((n) => n.label === evil));
    // The page itself: mesh data only through textContent / createTextNode / setAttribute.
    const page = readFileSync(join(DEFAULT_STATIC_DIR, 'dashboard.mjs'), 'utf8');
    for (const sink of ['innerHTML', 'outerHTML', 'insertAdjacentHTML', 'document.write', 'eval(', 'new Function']) {
      assert.ok(!page.includes(sink), `dashboard.mjs uses ${sink}`);
    }
    const html = readFileSync(join(DEFAULT_STATIC_DIR, 'index.html'), 'utf8');
    assert.doesNotMatch(html, /<script(?![^>]*\bsrc=)[^>]*>/i, 'no inline script (the CSP forbids it)');
    assert.doesNotMatch(html, /\son[a-z]+=/i, 'no inline event handlers');
  });
});
