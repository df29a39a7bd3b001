// The monitor against synthetic traffic on a fake clock: a small mesh with
// Poisson noise, a slow daily-like drift and a bursty edge. Steady traffic
// must never be flagged; each departure must be flagged as exactly its kind,
// in the first report after it.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { MAX_EDGES_PER_REPORT, type EdgeCounts } from '@amime/protocol';
import { PatternMonitor, type PatternMonitorOptions } from './pattern-monitor.js';
import type { Finding } from './finding.js';

const TD = 'spiffe://amime.test';
const id = (sa: string, ns = 'shop') => `${TD}/ns/${ns}/sa/${sa}`;
const INTERVAL = 10_000;
const LEARN = 10 * 60_000;

/** Node → its agent's address; identity → the node it is assigned to. */
const NODE_IP: Record<string, string> = { 'vm-a': '10.0.0.1', 'vm-b': '10.0.0.2', 'vm-c': '10.0.0.3', 'vm-x': '10.0.0.9' };
const ASSIGNED: Record<string, string> = { [id('web')]: 'vm-a', [id('cron')]: 'vm-a', [id('api')]: 'vm-b', [id('batch')]: 'vm-c' };
const resolve = (ip: string): string => Object.keys(NODE_IP).find((n) => NODE_IP[n] === ip) ?? `unknown:${ip}`;
const assigned = (node: string, identity: string): boolean => ASSIGNED[identity] === node;

/** A deterministic PRNG (mulberry32). */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function poisson(r: () => number, lambda: number): number {
  if (lambda <= 0) return 0;
  if (lambda > 50) return Math.max(0, Math.round(lambda + Math.sqrt(lambda) * normal(r)));
  const l = Math.exp(-lambda);
  let k = 0;
  let p = 1;
  do {
    k++;
    p *= r();
  } while (p > l);
  return k - 1;
}

function normal(r: () => number): number {
  return Math.sqrt(-2 * Math.log(r() || 1e-12)) * Math.cos(2 * Math.PI * r());
}

function binomial(r: () => number, n: number, p: number): number {
  let k = 0;
  for (let i = 0; i < n; i++) if (r() < p) k++;
  return k;
}

interface Flow {
  from: string;
  /** Source identity's service account. */
  sa: string;
  to: { node: string; service: string };
  /** Mean requests per interval. */
  rate: number;
  errorRate: number;
  denialRate: number;
  /** Probability the flow is active in an interval (bursty edges). */
  activity?: number;
}

const FLOWS: Flow[] = [
  { from: 'vm-a', sa: 'web', to: { node: 'vm-b', service: 'api' }, rate: 100, errorRate: 0.01, denialRate: 0 },
  { from: 'vm-a', sa: 'web', to: { node: 'vm-b', service: 'auth' }, rate: 20, errorRate: 0.005, denialRate: 0.001 },
  { from: 'vm-b', sa: 'api', to: { node: 'vm-c', service: 'db' }, rate: 300, errorRate: 0.002, denialRate: 0 },
  { from: 'vm-c', sa: 'batch', to: { node: 'vm-b', service: 'api' }, rate: 3, errorRate: 0.02, denialRate: 0 },
  { from: 'vm-a', sa: 'cron', to: { node: 'vm-b', service: 'api' }, rate: 5, errorRate: 0, denialRate: 0, activity: 0.1 },
];

type Override = (flow: Flow, counts: EdgeCounts) => EdgeCounts | undefined;

class Mesh {
  readonly r: () => number;
  t = 1_800_000_000_000;
  seq = 0;
  readonly findings: Finding[] = [];
  readonly monitor: PatternMonitor;

  constructor(seed = 1, opts: PatternMonitorOptions = {}) {
    this.r = rng(seed);
    this.monitor = new PatternMonitor({ now: () => this.t, assigned, settings: { learningWindowMs: LEARN, reportIntervalMs: INTERVAL }, ...opts });
  }

  /** One interval of steady traffic (with noise and a slow ±20 % drift), as each destination agent reports it. */
  interval(override?: Override, extra: Record<string, EdgeCounts[]> = {}): Finding[] {
    this.t += INTERVAL;
    const seq = this.seq++;
    const drift = 1 + 0.2 * Math.sin((2 * Math.PI * seq) / 360);
    const byNode = new Map<string, EdgeCounts[]>(Object.keys(NODE_IP).map((n) => [n, []]));
    for (const f of FLOWS) {
      if (f.activity !== undefined && this.r() > f.activity) continue;
      const requests = poisson(this.r, f.rate * drift);
      if (requests === 0) continue;
      const denials = binomial(this.r, requests, f.denialRate);
      let c: EdgeCounts | undefined = {
        source: id(f.sa),
        service: f.to.service,
        namespace: 'shop',
        peerAddress: NODE_IP[f.from]!,
        requests,
        errors: binomial(this.r, requests - denials, f.errorRate),
        denials,
        bytesIn: requests * 300,
        bytesOut: requests * 1200,
      };
      if (override) c = override(f, c);
      if (c) byNode.get(f.to.node)!.push(c);
    }
    for (const [node, edges] of Object.entries(extra)) byNode.get(node)!.push(...edges);
    const out: Finding[] = [];
    for (const [node, edges] of byNode) out.push(...this.monitor.ingest(node, { seq, intervalMs: INTERVAL, edges }, resolve));
    this.findings.push(...out);
    return out;
  }

  run(n: number): Finding[] {
    const out: Finding[] = [];
    for (let i = 0; i < n; i++) out.push(...this.interval());
    return out;
  }

  /** Through the learning window and some steady intervals after it. */
  trained(): this {
    this.run(LEARN / INTERVAL + 30);
    assert.deepEqual(this.findings, [], 'no findings while training');
    return this;
  }
}

const edge = (sa: string, service: string, ip: string, counts: Partial<EdgeCounts>): EdgeCounts => ({
  source: id(sa),
  service,
  namespace: 'shop',
  peerAddress: ip,
  requests: 0,
  errors: 0,
  denials: 0,
  bytesIn: 0,
  bytesOut: 0,
  ...counts,
});

const kinds = (fs: readonly Finding[]) => fs.map((f) => f.kind);
const isWebApi = (f: Flow) => f.sa === 'web' && f.to.service === 'api';

describe('steady traffic', () => {
  for (const [seed, sensitivity] of [
    [1, 'medium'],
    [2, 'medium'],
    [3, 'medium'],
    [4, 'low'],
  ] as const) {
    test(`${sensitivity}, seed ${seed}: 12 hours of noisy, drifting, bursty traffic produce no finding`, () => {
      const mesh = new Mesh(seed, { settings: { learningWindowMs: LEARN, reportIntervalMs: INTERVAL, sensitivity } });
      const out = mesh.run(12 * 360);
      assert.deepEqual(
        out.map((f) => f.message),
        [],
      );
      assert.equal(mesh.monitor.size, FLOWS.length);
    });
  }
});

describe('each departure is exactly its finding, in the first report after it', () => {
  test('new_edge: a known identity calls a service it never called', () => {
    const mesh = new Mesh().trained();
    const out = mesh.interval(undefined, { 'vm-c': [edge('web', 'payments', NODE_IP['vm-a']!, { requests: 50 })] });
    assert.deepEqual(kinds(out), ['new_edge']);
    const f = out[0]!;
    assert.deepEqual(f.edge, { source: id('web'), service: 'payments', namespace: 'shop', sourceNode: 'vm-a' });
    assert.equal(f.node, 'vm-c');
    assert.equal(f.baseline, 0);
    assert.equal(f.observed, 5);
    assert.equal(f.unit, 'requests/s');
    assert.equal(f.at, new Date(mesh.t).toISOString());
    // once: the edge is new only the first time
    assert.deepEqual(mesh.interval(undefined, { 'vm-c': [edge('web', 'payments', NODE_IP['vm-a']!, { requests: 50 })] }), []);
  });

  test('denial_spike: 40 % of an edge is refused by policy', () => {
    const mesh = new Mesh().trained();
    const out = mesh.interval((f, c) => (isWebApi(f) ? { ...c, requests: 100, denials: 40, errors: 0 } : c));
    assert.deepEqual(kinds(out), ['denial_spike']);
    const f = out[0]!;
    assert.equal(f.edge.service, 'api');
    assert.equal(f.edge.sourceNode, 'vm-a');
    assert.equal(f.observed, 0.4);
    assert.ok((f.baseline as number) < 0.01);
    assert.ok(f.threshold > (f.baseline as number) && f.threshold < 0.4);
    assert.equal(f.detail?.['denials'], 40);
  });

  test('error_spike: 30 % of an edge fails', () => {
    const mesh = new Mesh().trained();
    const out = mesh.interval((f, c) => (isWebApi(f) ? { ...c, requests: 100, errors: 30, denials: 0 } : c));
    assert.deepEqual(kinds(out), ['error_spike']);
    assert.equal(out[0]!.observed, 0.3);
    assert.equal(out[0]!.unit, 'ratio');
  });

  test('volume_deviation: four times the usual traffic on an edge', () => {
    const mesh = new Mesh().trained();
    const out = mesh.interval((f, c) => (f.to.service === 'db' ? { ...c, requests: c.requests * 4, errors: c.errors * 4 } : c));
    assert.deepEqual(kinds(out), ['volume_deviation']);
    const f = out[0]!;
    assert.equal(f.edge.service, 'db');
    assert.equal(f.edge.sourceNode, 'vm-b');
    assert.equal(f.detail?.['direction'], 'above');
    assert.ok((f.observed as number) > f.threshold && f.threshold > (f.baseline as number));
    assert.ok(Math.abs((f.baseline as number) - 30) < 8, `baseline ${f.baseline} near 30 requests/s`);
  });

  test('volume_deviation: an edge goes silent (absent from the report)', () => {
    const mesh = new Mesh().trained();
    const out = mesh.interval((f, c) => (f.to.service === 'db' ? undefined : c));
    assert.deepEqual(kinds(out), ['volume_deviation']);
    assert.equal(out[0]!.observed, 0);
    assert.equal(out[0]!.detail?.['direction'], 'below');
  });

  test('new_node: an identity calls from a node it is not assigned to, and from an address no node owns', () => {
    const mesh = new Mesh().trained();
    const out = mesh.interval(undefined, { 'vm-b': [edge('web', 'api', NODE_IP['vm-x']!, { requests: 3 })] });
    assert.deepEqual(kinds(out), ['new_node']);
    const f = out[0]!;
    assert.deepEqual(f.edge, { source: id('web'), service: 'api', namespace: 'shop', sourceNode: 'vm-x' });
    assert.deepEqual(f.baseline, ['vm-a']);
    assert.equal(f.observed, 'vm-x');
    assert.equal(f.detail?.['assigned'], false);

    const unknown = mesh.interval(undefined, { 'vm-b': [edge('web', 'api', '192.0.2.7', { requests: 2 })] });
    assert.deepEqual(kinds(unknown), ['new_node']);
    assert.equal(unknown[0]!.observed, 'unknown:192.0.2.7');
    // seen now: not flagged again
    assert.deepEqual(mesh.interval(undefined, { 'vm-b': [edge('web', 'api', NODE_IP['vm-x']!, { requests: 3 })] }), []);
  });

  test('a new identity on the node it is assigned to is a new edge only', () => {
    ASSIGNED[id('report')] = 'vm-c';
    const mesh = new Mesh().trained();
    const out = mesh.interval(undefined, { 'vm-b': [edge('report', 'api', NODE_IP['vm-c']!, { requests: 10 })] });
    assert.deepEqual(kinds(out), ['new_edge']);
  });
});

describe('learning, de-duplication, acceptance', () => {
  test('nothing is flagged during the learning window, though baselines learn', () => {
    const mesh = new Mesh();
    mesh.run(20);
    assert.equal(mesh.monitor.learning, true);
    const out = [
      ...mesh.interval(undefined, { 'vm-c': [edge('web', 'payments', NODE_IP['vm-a']!, { requests: 50 })] }),
      ...mesh.interval((f, c) => (isWebApi(f) ? { ...c, errors: c.requests / 2 } : c)),
      ...mesh.interval(undefined, { 'vm-b': [edge('web', 'api', NODE_IP['vm-x']!, { requests: 3 })] }),
    ];
    assert.deepEqual(out, []);
    mesh.run(LEARN / INTERVAL);
    assert.equal(mesh.monitor.learning, false);
    // learned during the window: not new any more (its volume is judged: seen once, then silent)
    assert.deepEqual(kinds(mesh.interval(undefined, { 'vm-c': [edge('web', 'payments', NODE_IP['vm-a']!, { requests: 50 })] })), ['volume_deviation']);
  });

  test('a lasting spike is one finding; after it returns to normal, a new spike is another', () => {
    const mesh = new Mesh().trained();
    const spike: Override = (f, c) => (isWebApi(f) ? { ...c, requests: 100, errors: 40, denials: 0 } : c);
    const first = [...mesh.interval(spike), ...mesh.interval(spike), ...mesh.interval(spike), ...mesh.interval(spike)];
    assert.deepEqual(kinds(first), ['error_spike']);
    assert.deepEqual(mesh.run(10), []);
    assert.deepEqual(kinds(mesh.interval(spike)), ['error_spike']);
  });

  test('accepting a new edge: no more new_edge for it, and its traffic so far is its baseline', () => {
    const mesh = new Mesh().trained();
    const pay = (counts: Partial<EdgeCounts>) => ({ 'vm-c': [edge('web', 'payments', NODE_IP['vm-a']!, { requests: 50, ...counts })] });
    assert.deepEqual(kinds(mesh.interval(undefined, pay({}))), ['new_edge']);
    const key = { source: id('web'), service: 'payments', namespace: 'shop' };
    assert.equal(mesh.monitor.accept(key), true);
    assert.equal(mesh.monitor.accept(key), false);
    assert.equal(mesh.monitor.isAccepted(key), true);
    assert.deepEqual(mesh.interval(undefined, pay({ errors: 1 })), []);
    // judged from now on, on the baseline it had
    assert.deepEqual(kinds(mesh.interval(undefined, pay({ errors: 30 }))), ['error_spike']);
  });

  test('a new edge that is not accepted is judged once it has a baseline (5 intervals)', () => {
    const mesh = new Mesh().trained();
    const pay = (counts: Partial<EdgeCounts>) => ({ 'vm-c': [edge('web', 'payments', NODE_IP['vm-a']!, { requests: 50, ...counts })] });
    assert.deepEqual(kinds(mesh.interval(undefined, pay({}))), ['new_edge']);
    for (let i = 0; i < 5; i++) assert.deepEqual(mesh.interval(undefined, pay({ errors: i % 2 })), []);
    assert.deepEqual(kinds(mesh.interval(undefined, pay({ errors: 30 }))), ['error_spike']);
  });

  test('an accepted edge is never new, even when first seen after the learning window or after eviction', () => {
    const accepted = [{ source: id('web'), service: 'payments', namespace: 'shop' }];
    const mesh = new Mesh(1, { accepted, maxEdges: FLOWS.length + 1 }).trained();
    const pay = { 'vm-c': [edge('web', 'payments', NODE_IP['vm-a']!, { requests: 50 })] };
    assert.deepEqual(mesh.interval(undefined, pay), []);
    // a burst of new edges evicts the least recently seen ones
    const burst = Array.from({ length: 5 }, (_, i) => edge(`svc-${i}`, 'api', NODE_IP['vm-a']!, { requests: 1 }));
    for (const e of burst) ASSIGNED[e.source] = 'vm-a';
    const flagged = mesh.interval(undefined, { 'vm-b': burst }).filter((f) => f.kind === 'new_edge' && f.edge.source.includes('/sa/svc-'));
    assert.equal(flagged.length, 5);
    assert.ok(mesh.monitor.size <= FLOWS.length + 1);
    // payments was evicted; it is accepted, so it is not new
    const again = mesh.interval(undefined, pay);
    assert.deepEqual(again.filter((f) => f.edge.service === 'payments'), []);
    // evicted edges that were not accepted are new again
    assert.ok(again.some((f) => f.kind === 'new_edge'));
  });
});

describe('reports', () => {
  test('an interval spread over several frames is judged once, when its last frame arrives; a repeated frame is dropped', () => {
    let t = 0;
    const m = new PatternMonitor({ now: () => t, settings: { learningWindowMs: 0, reportIntervalMs: INTERVAL } });
    const edges = Array.from({ length: MAX_EDGES_PER_REPORT + 50 }, (_, i) => edge(`sa-${i}`, 'api', '10.0.0.1', { requests: 10 }));
    t += INTERVAL;
    const a = m.ingest('vm-b', { seq: 1, intervalMs: INTERVAL, edges: edges.slice(0, MAX_EDGES_PER_REPORT) }, resolve);
    assert.equal(a.length, MAX_EDGES_PER_REPORT);
    const b = m.ingest('vm-b', { seq: 1, intervalMs: INTERVAL, edges: edges.slice(MAX_EDGES_PER_REPORT) }, resolve);
    assert.equal(b.length, 50);
    assert.equal(m.size, MAX_EDGES_PER_REPORT + 50);
    assert.deepEqual(m.ingest('vm-b', { seq: 1, intervalMs: INTERVAL, edges: edges.slice(MAX_EDGES_PER_REPORT) }, resolve), []);
    assert.equal(m.stats().repeatedFrames, 1);
  });

  test('memory is bounded: beyond maxEdges the least recently seen edge goes', () => {
    const m = new PatternMonitor({ settings: { learningWindowMs: 0 }, maxEdges: 100 });
    for (let i = 0; i < 1000; i++) m.ingest('vm-b', { seq: i, intervalMs: INTERVAL, edges: [edge(`sa-${i}`, 'api', '10.0.0.1', { requests: 1 })] }, resolve);
    assert.equal(m.size, 100);
  });

  test('settings are checked', () => {
    assert.throws(() => new PatternMonitor({ settings: { sensitivity: 0.5 } }), /sensitivity must be low, medium, high or a number from 1 to 20/);
    assert.throws(() => new PatternMonitor({ settings: { reportIntervalMs: 10 } }), /reportIntervalMs must be at least 1000/);
    const m = new PatternMonitor();
    m.configure({ sensitivity: 'high', learningWindowMs: 0 });
    assert.equal(m.settings.sensitivity, 'high');
    assert.equal(m.learning, false);
  });
});
