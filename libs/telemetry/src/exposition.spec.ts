// Every app's /metrics text, with every amime metric given a value, must pass
// `promtool check metrics` (exit 0, no lint output). promtool comes from
// Debian's prometheus package; without it these tests fail with the fix.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Registry } from 'prom-client';
import { ANOMALY_KINDS, RequestRecorder, createAgentMetrics, createCaMetrics, createControlPlaneMetrics, createProcessRegistry, isProcessMetric } from './index.js';
import { PromtoolMissingError, assertPromtoolClean, promtoolCheckMetrics } from './testing/promtool.js';

const DAY = 86_400_000;
const TYPES = ['Service', 'Endpoint', 'Route', 'AuthorizationPolicy', 'MeshConfig', 'TrustBundle', 'RevocationList'] as const;

function agentRegistry(): Registry {
  const m = createAgentMetrics({
    controlPlaneConnected: () => true,
    versions: () => ({ Service: 'cp-1-42', Endpoint: 'cp-1-43' }),
    certificates: () => [
      { identity: 'spiffe://td/agent/vm1', kind: 'agent', notAfter: new Date(Date.now() + DAY) },
      { identity: 'spiffe://td/ns/shop/sa/web', kind: 'workload', notAfter: new Date(Date.now() + 3_600_000) },
      { identity: 'CN=amime intermediate, O=amime', kind: 'intermediate', notAfter: new Date(Date.now() + 30 * DAY) },
      { identity: 'CN=amime root 2026-11-29-abcd, O=amime', kind: 'root', notAfter: new Date(Date.now() + 365 * DAY) },
    ],
  });
  for (const direction of ['inbound', 'outbound'] as const) {
    const r = new RequestRecorder(m, direction);
    r.record('shop/catalog', 'spiffe://td/ns/shop/sa/web', 200, 3.2, 'spiffe://td/ns/shop/sa/catalog');
    r.record('shop/catalog', 'spiffe://td/ns/shop/sa/web', 503, 1200, 'spiffe://td/ns/shop/sa/catalog');
    m.connectionsOpened.inc({ direction, service: 'shop/db' });
    m.connectionsClosed.inc({ direction, service: 'shop/db' });
    m.bytes.inc({ direction, service: 'shop/db', flow: 'sent' }, 1024);
    m.bytes.inc({ direction, service: 'shop/db', flow: 'received' }, 2048);
  }
  m.handshakeFailures.inc({ side: 'inbound', reason: 'revoked' });
  m.authz.inc({ service: 'shop/catalog', result: 'allow', policy: 'shop/catalog-from-web' });
  m.authz.inc({ service: 'shop/catalog', result: 'deny', policy: '' });
  m.retries.inc({ service: 'shop/catalog' }, 2);
  m.ejections.inc({ service: 'shop/catalog' });
  m.rateLimited.inc({ service: 'shop/catalog' });
  m.configRejected.inc({ type: 'Route' });
  m.revokedClosed.inc(3);
  return m.registry;
}

function controlPlaneRegistry(): Registry {
  const m = createControlPlaneMetrics({ resourceTypes: TYPES, revision: () => 7, count: () => 2, agents: () => 3, endpointsByHealth: () => ({ healthy: 4, unhealthy: 1 }) });
  m.pushLatency.observe({ type: 'Endpoint' }, 0.042);
  m.pushes.inc({ type: 'Endpoint', kind: 'snapshot' });
  m.pushes.inc({ type: 'Endpoint', kind: 'delta' });
  m.acks.inc({ type: 'Endpoint' });
  m.nacks.inc({ type: 'Route' });
  m.refused.inc({ reason: 'unauthenticated' });
  m.adminRequests.inc({ route: '/v1/resources', code: '200' });
  m.adminDuration.observe(0.003);
  m.anomalies.inc({ kind: 'new_edge' });
  m.monitorEdges.set(12);
  return m.registry;
}

function caRegistry(): Registry {
  const registry = createProcessRegistry('amime_ca_');
  const m = createCaMetrics(registry, {
    certificates: () => [
      { kind: 'root', slot: '2026-11-29-abcd', notAfter: new Date(Date.now() + 365 * DAY) },
      { kind: 'intermediate', slot: '2026-11-29-abcd', notAfter: new Date(Date.now() + 30 * DAY) },
    ],
    bundleSequence: () => 2,
    revocationListVersion: () => 1,
    issuedSinceStart: () => 5,
  });
  m.requests.inc({ route: '/v1/svid', code: '200' });
  m.duration.observe(0.002);
  m.refused.inc({ reason: 'not_assigned' });
  m.tlsErrors.inc({ reason: 'no_certificate' });
  return registry;
}

const REGISTRIES: [string, () => Registry][] = [
  ['agent', agentRegistry],
  ['control plane', controlPlaneRegistry],
  ['CA', caRegistry],
];

describe('exposition', () => {
  for (const [app, build] of REGISTRIES) {
    test(`${app}: every amime metric has a sample`, async () => {
      const metrics = await build().getMetricsAsJSON();
      const empty = metrics.filter((m) => !isProcessMetric(m.name) && m.values.length === 0).map((m) => m.name);
      assert.deepEqual(empty, [], 'give these a value in the test so promtool sees their samples');
    });

    test(`${app}: promtool check metrics passes with no lint output`, async () => {
      await assertPromtoolClean(await build().metrics(), `the ${app} registry`);
    });
  }

  test('names: amime_<app>_ prefix, counters end in _total and nothing else does', async () => {
    for (const [app, build] of REGISTRIES) {
      for (const m of await build().getMetricsAsJSON()) {
        assert.match(m.name, /^amime_(agent|cp|ca)_[a-z0-9_]+$/, `${app}: ${m.name}`);
        assert.equal(m.name.endsWith('_total'), String(m.type) === 'counter', `${app}: ${m.name} is a ${String(m.type)}`);
      }
    }
  });

  test('control plane: every anomaly kind is exported from start, at 0', async () => {
    const m = createControlPlaneMetrics({ resourceTypes: TYPES, revision: () => 0, count: () => 0, agents: () => 0, endpointsByHealth: () => ({ healthy: 0, unhealthy: 0 }) });
    const { values } = await m.anomalies.get();
    assert.deepEqual(values.map((v) => [v.labels['kind'], v.value]), ANOMALY_KINDS.map((k) => [k, 0]));
  });

  test('agent: certificate expiry is exported per identity and kind, in whole Unix seconds', async () => {
    const text = await agentRegistry().metrics();
    for (const kind of ['workload', 'agent', 'intermediate', 'root']) {
      assert.match(text, new RegExp(`^amime_agent_certificate_expiry_timestamp_seconds\\{identity="[^"]+",kind="${kind}"\\} \\d+$`, 'm'));
    }
  });

  test('promtool itself: a bad exposition is refused with its reason', async () => {
    const r = await promtoolCheckMetrics('# HELP amime_x_open_total Open things.\n# TYPE amime_x_open_total gauge\namime_x_open_total 1\n');
    assert.notEqual(r.code, 0);
    assert.match(r.output, /non-counter metrics should not have "_total" suffix/);
  });

  test('a missing promtool is an error that says which package to install', async () => {
    await assert.rejects(promtoolCheckMetrics('', '/nonexistent/promtool'), (err: unknown) => {
      assert.ok(err instanceof PromtoolMissingError);
      assert.match(err.message, /apt-get install -y --no-install-recommends prometheus/);
      return true;
    });
  });
});
