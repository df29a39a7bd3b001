// The small pieces that wire the pattern monitor into the control plane:
// the report rate limit, source-node resolution, MeshConfig settings and
// Prometheus service discovery on the loopback metrics listener.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Registry } from 'prom-client';
import type { EndpointResource, Resource } from '@amime/protocol';
import { meshMonitorSpec, monitorSettingsOf } from './anomaly-service.js';
import { PROMETHEUS_SD_PATH, prometheusTargets, serveMetrics } from './metrics-server.js';
import { MAX_FRAMES_PER_REPORT, ReportGate } from './report-gate.js';
import { SourceNodes, normalizeIp } from './source-nodes.js';

describe('report rate limit', () => {
  test('one report per interval passes; faster ones are dropped; three in a row ban the node', () => {
    let t = 0;
    const gate = new ReportGate(10_000, { now: () => t });
    assert.equal(gate.check('vm-a', 1), 'ok');
    assert.equal(gate.check('vm-a', 1), 'ok', 'more frames of the same interval');
    t += 6000;
    assert.equal(gate.check('vm-a', 2), 'ok');
    t += 1000;
    assert.equal(gate.check('vm-a', 3), 'too_fast');
    t += 1000;
    assert.equal(gate.check('vm-a', 4), 'too_fast');
    assert.equal(gate.check('vm-b', 1), 'ok', 'other nodes are not affected');
    t += 1000;
    assert.equal(gate.check('vm-a', 5), 'banned');
    t += 50_000;
    assert.equal(gate.check('vm-a', 6), 'banned', 'banned for 10 intervals');
    t += 60_000;
    assert.equal(gate.check('vm-a', 7), 'ok');
  });

  test('an interval spread over too many frames is cut off', () => {
    const gate = new ReportGate(10_000, { now: () => 0 });
    for (let i = 0; i < MAX_FRAMES_PER_REPORT; i++) assert.equal(gate.check('vm-a', 1), 'ok');
    assert.equal(gate.check('vm-a', 1), 'too_many_frames');
  });
});

describe('source nodes', () => {
  const ep = (node: string, address: string): EndpointResource =>
    ({ apiVersion: 'amime.dev/v1', kind: 'Endpoint', metadata: { name: `x-${node}`, namespace: 'shop' }, spec: { service: 'x', node, address, port: 1, identity: 'spiffe://t/ns/shop/sa/x', weight: 100, health: 'healthy' } }) as EndpointResource;

  test('an address resolves to the node that registered it or connected from it; shared ones prefer the assigned node', () => {
    let endpoints: Resource[] = [ep('vm-a', '10.0.0.1'), ep('vm-b', '10.0.0.2'), ep('vm-c', '127.0.0.1'), ep('vm-d', '127.0.0.1')];
    const sessions = [{ node: 'vm-e', address: '::ffff:10.0.0.5' }];
    const nodes = new SourceNodes({ endpoints: () => endpoints, sessions: () => sessions, assigned: (node, id) => node === 'vm-d' && id === 'spiffe://t/ns/shop/sa/d' });
    assert.equal(nodes.resolve('10.0.0.1', 'any'), 'vm-a');
    assert.equal(nodes.resolve('::ffff:10.0.0.2', 'any'), 'vm-b');
    assert.equal(nodes.resolve('10.0.0.5', 'any'), 'vm-e');
    assert.equal(nodes.resolve('127.0.0.1', 'spiffe://t/ns/shop/sa/d'), 'vm-d');
    assert.equal(nodes.resolve('127.0.0.1', 'spiffe://t/ns/shop/sa/other'), 'vm-c');
    assert.equal(nodes.resolve('192.0.2.9', 'any'), 'unknown:192.0.2.9');
    endpoints = [ep('vm-f', '192.0.2.9')];
    assert.equal(nodes.resolve('192.0.2.9', 'any'), 'unknown:192.0.2.9', 'cached until invalidated');
    nodes.invalidate();
    assert.equal(nodes.resolve('192.0.2.9', 'any'), 'vm-f');
    assert.equal(normalizeIp('FE80::1'), 'fe80::1');
  });
});

describe('MeshConfig monitor settings', () => {
  test('absent block: defaults; the first MeshConfig by namespace/name wins', () => {
    assert.deepEqual(monitorSettingsOf(undefined), { learningWindowMs: 600_000, sensitivity: 'medium', reportIntervalMs: 10_000 });
    assert.deepEqual(monitorSettingsOf({ learningWindow: '1h', sensitivity: 3, reportInterval: '5s' }), { learningWindowMs: 3_600_000, sensitivity: 3, reportIntervalMs: 5000 });
    const mesh = (ns: string, name: string, monitor?: object) => ({ apiVersion: 'amime.dev/v1', kind: 'MeshConfig', metadata: { name, namespace: ns }, spec: { monitor } }) as unknown as Resource;
    assert.deepEqual(meshMonitorSpec([mesh('b', 'mesh', { sensitivity: 'low' }), mesh('a', 'mesh', { sensitivity: 'high' })]), { sensitivity: 'high' });
    assert.equal(meshMonitorSpec([]), undefined);
  });
});

describe('Prometheus service discovery', () => {
  test('the metrics listener lists connected agents, itself and the CA as http_sd target groups', async () => {
    const connected = new Map<string, string | undefined>([
      ['vm-b', '10.0.0.2:9102'],
      ['vm-a', '10.0.0.1:9102'],
      ['vm-c', undefined],
    ]);
    const server = await serveMetrics({
      registry: new Registry(),
      port: 0,
      targets: { agents: () => [...connected].map(([node, metrics]) => ({ node, metrics })), ca: '127.0.0.1:9100' },
    });
    try {
      const port = (server.address() as { port: number }).port;
      const res = await fetch(`http://127.0.0.1:${port}${PROMETHEUS_SD_PATH}`);
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('content-type'), 'application/json');
      assert.deepEqual(await res.json(), [
        { targets: ['10.0.0.1:9102'], labels: { amime_component: 'agent', amime_node: 'vm-a' } },
        { targets: ['10.0.0.2:9102'], labels: { amime_component: 'agent', amime_node: 'vm-b' } },
        { targets: [`127.0.0.1:${port}`], labels: { amime_component: 'control-plane' } },
        { targets: ['127.0.0.1:9100'], labels: { amime_component: 'ca' } },
      ]);
      connected.delete('vm-b');
      const after = (await (await fetch(`http://127.0.0.1:${port}${PROMETHEUS_SD_PATH}`)).json()) as { labels: Record<string, string> }[];
      assert.deepEqual(after.map((g) => g.labels['amime_node'] ?? g.labels['amime_component']), ['vm-a', 'control-plane', 'ca']);
      assert.equal((await fetch(`http://127.0.0.1:${port}/metrics`)).status, 200);
      assert.equal((await fetch(`http://127.0.0.1:${port}/nope`)).status, 404);
      assert.equal((await fetch(`http://127.0.0.1:${port}/metrics`, { method: 'POST' })).status, 405);
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
    }
  });

  test('without a CA address the CA is left out', () => {
    assert.deepEqual(prometheusTargets({ agents: () => [], controlPlane: '127.0.0.1:1' }), [{ targets: ['127.0.0.1:1'], labels: { amime_component: 'control-plane' } }]);
  });
});
