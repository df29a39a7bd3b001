import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { MeshView, type ViewEvent } from './mesh-view.js';
import { FakeMeshSource } from './testing/fake-source.js';

const TD = 'spiffe://demo.test/ns/demo/sa';
const snapshot = (denials: number) => ({
  windowSeconds: 60,
  generatedAt: new Date().toISOString(),
  edges: [{ source: { identity: `${TD}/web` }, destination: { namespace: 'demo', service: 'catalog' }, requests: 10, rps: 1, errors: 0, errorRate: 0, denials, denialRate: denials / 10, p50Ms: 1, p99Ms: 2, bytesIn: 0, bytesOut: 0, mtls: true as const, nodes: ['vm2'], lastSeen: new Date().toISOString() }],
});

describe('MeshView', () => {
  test('without the traffic stream (an older control plane) traffic is polled with the listings', async () => {
    const src = new FakeMeshSource();
    src.missing.add('trafficStream');
    src.data.traffic = snapshot(0);
    const view = new MeshView({ refreshMs: 60_000 });
    try {
      await view.attach(src);
      assert.equal(view.section('graph').data.edges.length, 1);
      src.data.traffic = snapshot(4);
      await view.refresh();
      assert.equal(view.section('graph').data.edges[0]!.denials, 4, 'the next refresh read /v1/traffic again');
      assert.equal(src.calls.filter((c) => c === 'traffic').length, 2);
    } finally {
      view.close();
    }
  });

  test('with the stream, the graph follows its frames and the listings stop polling traffic', async () => {
    const src = new FakeMeshSource();
    const view = new MeshView({ refreshMs: 60_000 });
    const events: ViewEvent[] = [];
    view.onChange((e) => events.push(e));
    try {
      await view.attach(src);
      src.pushTraffic(snapshot(2));
      assert.equal(view.section('graph').data.edges[0]!.denials, 2);
      const before = src.calls.filter((c) => c === 'traffic').length;
      await view.refresh();
      assert.equal(src.calls.filter((c) => c === 'traffic').length, before, 'no GET /v1/traffic while the stream is live');
      assert.ok(events.some((e) => e.type === 'section' && e.name === 'graph'));
    } finally {
      view.close();
    }
  });

  test('a control plane that stops answering: unreachable, last data kept and marked stale; back: connected', async () => {
    const src = new FakeMeshSource();
    src.data.policies = [{ kind: 'AuthorizationPolicy', metadata: { name: 'p', namespace: 'demo' }, spec: { action: 'ALLOW', target: 'x', rules: [] } }];
    const view = new MeshView({ refreshMs: 60_000 });
    try {
      await view.attach(src);
      src.down = true;
      await view.refresh();
      assert.equal(view.section('connection').data.controlPlane, 'unreachable');
      assert.match(view.section('connection').data.message, /ECONNREFUSED/);
      const policies = view.section('policies');
      assert.equal(policies.data.length, 1, 'the last good rows stay');
      assert.match(policies.note ?? '', /^stale: /);
      src.down = false;
      await view.refresh();
      assert.equal(view.section('connection').data.controlPlane, 'connected');
      assert.equal(view.section('policies').note, undefined);
    } finally {
      view.close();
    }
  });

  test('findings: streamed ones are added once, newest first, bounded', async () => {
    const src = new FakeMeshSource();
    const view = new MeshView({ refreshMs: 60_000, maxAnomalies: 3 });
    const anomalies: string[] = [];
    view.onChange((e) => e.type === 'anomaly' && anomalies.push(e.finding.id));
    try {
      await view.attach(src);
      await sleep(10);
      const f = (id: string) => ({ id, kind: 'new_edge' as const, at: new Date().toISOString(), edge: { source: 's', namespace: 'n', service: 'x', sourceNode: 'vm1' }, node: 'vm1', baseline: 0, observed: 1, threshold: 0, unit: 'requests/s' as const, message: id });
      for (const id of ['a', 'b', 'b', 'c', 'd']) src.pushFinding(f(id));
      assert.deepEqual(anomalies, ['a', 'b', 'c', 'd'], 'a repeated finding is not sent twice');
      assert.deepEqual(view.section('anomalies').data.map((x) => x.id), ['d', 'c', 'b']);
    } finally {
      view.close();
    }
  });
});
