// Prometheus discovery across two control-plane replicas on one real etcd:
// an agent connected to each, and the discovery of EITHER replica lists both
// agents and both replicas (each replica publishes its agents under
// /sd/replicas/ and watches the others). A cleanly stopped replica takes its
// entry, and so itself and its agents, out of the other's discovery.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PushClient } from '@amime/protocol/client';
import { adminCredential, initCa, keyAndCsr, request, serveCa, stop, type CaProcess, type Credential } from '../ca/fixtures/ca-process.js';
import { startEtcd, stopEtcd, type EtcdProcess } from '../store/fixtures/etcd-process.js';
import { serveControlPlane, type CpProcess } from './fixtures/cp-process.js';
import { until } from '../fixtures/until.js';

process.env['AMIME_CA_QUIET'] = '1';
const TD = 'sd.test';

type Group = { targets: string[]; labels: Record<string, string> };

let root: string;
let etcd: EtcdProcess;
let ca: CaProcess;
let admin: Credential & { bundlePem: string };
const cps: CpProcess[] = [];
const agents: PushClient[] = [];


const sd = async (cp: CpProcess): Promise<Group[]> => (await (await fetch(`${cp.metricsUrl}/v1/sd/prometheus`)).json()) as Group[];

async function connectAgent(node: string, cp: CpProcess, metrics: string): Promise<PushClient> {
  const token = (await request(ca.url, { path: '/v1/admin/tokens', trust: admin.bundlePem, trustDomain: TD, cred: admin, body: { node } })).json.token as string;
  const { keyPem, csr } = keyAndCsr(`spiffe://${TD}/agent/${node}`);
  const joined = await request(ca.url, { path: '/v1/join', trust: admin.bundlePem, trustDomain: TD, body: { token, csr } });
  const client = new PushClient({
    url: `${cp.url.replace('https:', 'wss:')}/v1/push`,
    node,
    metrics,
    credential: () => ({ certPem: joined.json.svid as string, keyPem, bundlePem: admin.bundlePem }),
    heartbeatMs: 300,
    apply: () => undefined,
  });
  agents.push(client);
  client.start();
  await until(`${node} connected`, () => client.connected);
  return client;
}

before(async () => {
  root = mkdtempSync(join(tmpdir(), 'amime-cp-sd-'));
  etcd = await startEtcd();
  initCa(join(root, 'ca'), TD);
  admin = adminCredential(join(root, 'ca'));
  ca = await serveCa(join(root, 'ca'));
  for (const name of ['a', 'b']) {
    cps.push(await serveControlPlane(join(root, `cp-${name}`), ca.url, join(root, 'ca', 'admin'), ['--etcd', etcd.clientUrl, '--etcd-prefix', 'sd/', '--ca-metrics', '127.0.0.1:9465']));
  }
});

after(async () => {
  for (const a of agents) await a.stop();
  for (const cp of cps) await stop(cp.child);
  await stop(ca);
  if (etcd) await stopEtcd(etcd);
  rmSync(root, { recursive: true, force: true });
});

test('each replica\'s discovery lists the agents of both and both replicas; a stopped replica drops out', { timeout: 90_000 }, async () => {
  const [a, b] = cps as [CpProcess, CpProcess];
  assert.notEqual(a.replica, b.replica);
  await connectAgent('vm1', a, '127.0.0.1:19101');
  await connectAgent('vm2', b, '127.0.0.1:19102');
  const replicaGroup = (cp: CpProcess): Group => ({ targets: [new URL(cp.metricsUrl).host], labels: { amime_component: 'control-plane', amime_replica: cp.replica } });
  const whole: Group[] = [
    { targets: ['127.0.0.1:19101'], labels: { amime_component: 'agent', amime_node: 'vm1' } },
    { targets: ['127.0.0.1:19102'], labels: { amime_component: 'agent', amime_node: 'vm2' } },
    ...[a, b].sort((x, y) => (x.replica < y.replica ? -1 : 1)).map(replicaGroup),
    { targets: ['127.0.0.1:9465'], labels: { amime_component: 'ca' } },
  ];
  const same = (groups: Group[]) => JSON.stringify(groups) === JSON.stringify(whole);
  for (const cp of [a, b]) {
    const seen = await until(`replica ${cp.replica} lists the whole mesh`, async () => {
      const groups = await sd(cp);
      return same(groups) && groups;
    }).catch(async (err: Error) => assert.fail(`${err.message}: ${JSON.stringify(await sd(cp))}`));
    assert.deepEqual(seen, whole);
  }

  // A clean stop deletes B's entry: A drops B and the agent connected to it.
  // (vm2 stays connected: the stop must not wait for it.)
  await stop(b.child);
  assert.equal(b.child.exitCode, 0, b.stderr());
  const left = await until('A without B', async () => {
    const groups = await sd(a);
    return !groups.some((g) => g.labels['amime_replica'] === b.replica || g.labels['amime_node'] === 'vm2') && groups;
  });
  assert.deepEqual(left, [whole[0], replicaGroup(a), whole.at(-1)]);
});
