// The communication-pattern monitor as wired into a real control-plane
// process (beside a real CA): MeshConfig sets its learning window, an
// agent's report over the push channel becomes a finding in GET
// /v1/anomalies, on the WebSocket stream and in amime_cp_anomalies_total,
// and Prometheus discovery lists the agent at the address its hello gave.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { AnomalyClient } from '@amime/control-plane';
import type { Finding } from '@amime/monitor';
import { PushClient } from '@amime/protocol/client';
import { adminCredential, initCa, keyAndCsr, request, serveCa, stop, type CaProcess, type Credential, type Reply } from '../ca/fixtures/ca-process.js';
import { metric, serveControlPlane, type CpProcess } from './fixtures/cp-process.js';
import { until } from '../fixtures/until.js';

process.env['AMIME_CA_QUIET'] = '1';
const TD = 'monitor.e2e';
const SERVER = `spiffe://${TD}/control-plane/controller`;
const WEB = `spiffe://${TD}/ns/shop/sa/web`;

let root: string;
let ca: CaProcess;
let cp: CpProcess;
let admin: Credential & { bundlePem: string };
let agent: PushClient;


const ok = async (r: Promise<Reply>, what: string): Promise<Reply> => {
  const reply = await r;
  assert.equal(reply.status, 200, `${what}: ${reply.status} ${reply.text}`);
  return reply;
};

before(async () => {
  root = mkdtempSync(join(tmpdir(), 'amime-cp-monitor-'));
  initCa(join(root, 'ca'), TD);
  admin = adminCredential(join(root, 'ca'));
  ca = await serveCa(join(root, 'ca'));
  cp = await serveControlPlane(join(root, 'cp'), ca.url, join(root, 'ca', 'admin'));
  const token = (await ok(request(ca.url, { path: '/v1/admin/tokens', trust: admin.bundlePem, trustDomain: TD, cred: admin, body: { node: 'vm1' } }), 'token')).json.token as string;
  const { keyPem, csr } = keyAndCsr(`spiffe://${TD}/agent/vm1`);
  const joined = await ok(request(ca.url, { path: '/v1/join', trust: admin.bundlePem, trustDomain: TD, body: { token, csr } }), 'join');
  agent = new PushClient({
    url: `${cp.url.replace('https:', 'wss:')}/v1/push`,
    node: 'vm1',
    metrics: '127.0.0.1:9102',
    credential: () => ({ certPem: joined.json.svid as string, keyPem, bundlePem: admin.bundlePem }),
    heartbeatMs: 300,
    apply: () => undefined,
  });
  agent.start();
  await until('agent connected', () => agent.connected);
});

after(async () => {
  await agent?.stop();
  await stop(cp?.child);
  await stop(ca);
  rmSync(root, { recursive: true, force: true });
});

describe('pattern monitor in the control plane', () => {
  test('Prometheus discovery lists the connected agent and the control plane', async () => {
    const groups = (await (await fetch(`${cp.metricsUrl}/v1/sd/prometheus`)).json()) as { targets: string[]; labels: Record<string, string> }[];
    assert.deepEqual(groups, [
      { targets: ['127.0.0.1:9102'], labels: { amime_component: 'agent', amime_node: 'vm1' } },
      { targets: [new URL(cp.metricsUrl).host], labels: { amime_component: 'control-plane', amime_replica: cp.replica } },
    ]);
  });

  test('after MeshConfig ends the learning window, a report from the agent is a finding: listed, streamed, counted', async () => {
    const yaml = `apiVersion: amime.dev/v1\nkind: MeshConfig\nmetadata: { name: mesh }\nspec:\n  monitor: { learningWindow: 0s, reportInterval: 1s }\n`;
    await ok(
      request(cp.url, { path: '/v1/resources', trust: admin.bundlePem, trustDomain: TD, cred: admin, serverId: SERVER, raw: yaml, method: 'POST', headers: { 'content-type': 'application/yaml' } }),
      'apply MeshConfig',
    );
    const client = new AnomalyClient({ url: cp.url, bundlePem: admin.bundlePem, credential: admin, trustDomain: TD });
    try {
      await until('monitor configured', async () => (await client.list()).monitor['learning'] === false);
      const streamed: Finding[] = [];
      const ac = new AbortController();
      const watching = client.watch((f) => streamed.push(f), ac.signal);
      await sleep(200);
      assert.equal(
        agent.sendReport({ seq: 1, intervalMs: 1000, edges: [{ source: WEB, service: 'api', namespace: 'shop', peerAddress: '192.0.2.7', requests: 12, errors: 0, denials: 0, bytesIn: 100, bytesOut: 200 }] }),
        true,
      );
      await until('streamed finding', () => streamed.length > 0);
      ac.abort();
      await watching;
      const kinds = streamed.map((f) => f.kind).sort();
      // a brand-new identity from an address no node owns: a new edge, and a node it is not assigned to
      assert.deepEqual(kinds.slice(0, 1), ['new_edge']);
      const listed = await client.list();
      assert.deepEqual(listed.items.map((f) => f.kind).sort(), ['new_edge', 'new_node']);
      const edge = listed.items.find((f) => f.kind === 'new_edge')!;
      assert.deepEqual(edge.edge, { source: WEB, service: 'api', namespace: 'shop', sourceNode: 'unknown:192.0.2.7' });
      assert.equal(edge.node, 'vm1');
      assert.equal(await metric(cp.metricsUrl, 'amime_cp_anomalies_total', 'kind="new_edge"'), 1);
      assert.equal(await metric(cp.metricsUrl, 'amime_cp_monitor_edges'), 1);
    } finally {
      client.close();
    }
  });
});
