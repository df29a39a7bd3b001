// Two control-plane replicas on one real etcd: a Route applied through
// replica A reaches an agent connected to replica B (each replica watches the
// shared store), and both report the same epoch and versions.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { PushClient } from '@amime/protocol/client';
import { adminCredential, initCa, keyAndCsr, request, serveCa, stop, type CaProcess, type Credential, type Reply } from '../ca/fixtures/ca-process.js';
import { startEtcd, stopEtcd, type EtcdProcess } from '../store/fixtures/etcd-process.js';
import { serveControlPlane, type CpProcess } from './fixtures/cp-process.js';

process.env['AMIME_CA_QUIET'] = '1';
const TD = 'replicas.test';
const SERVER = `spiffe://${TD}/control-plane/controller`;

let root: string;
let etcd: EtcdProcess;
let ca: CaProcess;
let admin: Credential & { bundlePem: string };
const cps: CpProcess[] = [];
let client: PushClient | undefined;

before(async () => {
  root = mkdtempSync(join(tmpdir(), 'amime-cp-etcd-'));
  etcd = await startEtcd();
  initCa(join(root, 'ca'), TD);
  admin = adminCredential(join(root, 'ca'));
  ca = await serveCa(join(root, 'ca'));
  for (const name of ['a', 'b']) cps.push(await serveControlPlane(join(root, `cp-${name}`), ca.url, join(root, 'ca', 'admin'), ['--etcd', etcd.clientUrl, '--etcd-prefix', 'test/']));
});

after(async () => {
  await client?.stop();
  for (const cp of cps) await stop(cp.child);
  await stop(ca);
  await stopEtcd(etcd);
  rmSync(root, { recursive: true, force: true });
});

const call = (cp: CpProcess, path: string, raw?: string): Promise<Reply> =>
  request(cp.url, { path, trust: admin.bundlePem, trustDomain: TD, cred: admin, serverId: SERVER, ...(raw !== undefined && { raw, method: 'POST', headers: { 'content-type': 'application/yaml' } }) });

test('a Route applied on replica A reaches an agent on replica B', { timeout: 60_000 }, async () => {
  const [a, b] = cps as [CpProcess, CpProcess];
  const token = (await request(ca.url, { path: '/v1/admin/tokens', trust: admin.bundlePem, trustDomain: TD, cred: admin, body: { node: 'vm1' } })).json.token;
  const { keyPem, csr } = keyAndCsr(`spiffe://${TD}/agent/vm1`);
  const joined = await request(ca.url, { path: '/v1/join', trust: admin.bundlePem, trustDomain: TD, body: { token, csr } });
  const routes: string[] = [];
  client = new PushClient({
    url: `${b.url.replace('https:', 'wss:')}/v1/push`,
    node: 'vm1',
    credential: () => ({ certPem: joined.json.svid, keyPem, bundlePem: admin.bundlePem }),
    heartbeatMs: 300,
    subscribe: ['Route'],
    apply: (u) => {
      routes.splice(0, routes.length, ...[...u.resources.values()].map((r) => r.metadata.name));
    },
  });
  client.start();
  const applied = await call(a, '/v1/resources', 'apiVersion: amime.dev/v1\nkind: Route\nmetadata: {name: shared, namespace: shop}\nspec:\n  service: web\n  rules: [{backends: [{service: web, weight: 100}]}]\n');
  assert.equal(applied.status, 200, applied.text);
  const deadline = Date.now() + 10_000;
  while (!routes.includes('shared') && Date.now() < deadline) await sleep(50);
  assert.deepEqual(routes, ['shared']);
  const [sa, sb] = await Promise.all([call(a, '/v1/status'), call(b, '/v1/status')]);
  assert.equal(sa.json.store, 'etcd');
  assert.equal(sa.json.epoch, sb.json.epoch, 'one store, one epoch');
  assert.equal(sa.json.versions.Route, sb.json.versions.Route);
  assert.equal(sb.json.versions.Route, `${sb.json.epoch}-${applied.json.results[0].version}`, 'the type version is the apply\'s store revision');
  const fromB = await call(b, '/v1/resources/Route/shop/shared');
  assert.equal(fromB.status, 200, fromB.text);
});
