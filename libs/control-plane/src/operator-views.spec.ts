// GET /v1/endpoints, /v1/certs and /v1/agents/:node/config: the views built
// from resources and push sessions (certificates from a test PKI), and the
// routes on a real HTTPS server with test SVIDs (who may call, bad queries
// and node names, a node that is not connected), read through the client.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bundleFromPem, parseCertificate, type ParsedCertificate } from '@amime/identity';
import { createTestPki, toPemChain, type TestCert, type TestPki } from '@amime/identity/testing';
import { API_VERSION, type EndpointResource, type Resource, type ResourceType } from '@amime/protocol';
import type { PushSessionStatus } from '@amime/protocol/server';
import { EmbeddedStore } from '@amime/store';
import { createAdminHandler } from './admin-api.js';
import { ControlPlaneClient, ControlPlaneClientError } from './client.js';
import { certInventory, configDump, endpointViews, peerCertificates } from './operator-views.js';
import { ResourceService } from './resource-service.js';

const TD = 'views.test';
const WEB = `spiffe://${TD}/ns/shop/sa/web`;
const DB = `spiffe://${TD}/ns/shop/sa/db`;

function endpoint(service: string, node: string, port: number, health: 'healthy' | 'unhealthy' = 'healthy', ns = 'shop'): EndpointResource {
  return {
    apiVersion: API_VERSION,
    kind: 'Endpoint',
    metadata: { name: `${service}-${node}-${port}`, namespace: ns, labels: { version: 'v1' } },
    spec: { service, node, address: '10.0.0.1', port, identity: WEB, zone: 'z1', weight: 100, health, ...(health === 'unhealthy' && { reason: 'check_failed' as const }) },
  } as EndpointResource;
}
const ENDPOINTS: Resource[] = [endpoint('web', 'vm-b', 8443), endpoint('web', 'vm-a', 8443, 'unhealthy'), endpoint('db', 'vm-a', 9443), endpoint('web', 'vm-c', 8443, 'healthy', 'blog')];

let pki: TestPki;
let agentCert: TestCert;
let adminCert: TestCert;
let serverCert: TestCert;
let chain: ParsedCertificate[];
const root = mkdtempSync(join(tmpdir(), 'amime-operator-views-'));
after(() => rmSync(root, { recursive: true, force: true }));

before(async () => {
  pki = await createTestPki(TD);
  agentCert = await pki.leaf('/agent/vm-a', { notBefore: new Date('2026-01-01T00:00:00Z'), notAfter: new Date('2026-01-01T01:00:00Z') });
  adminCert = await pki.leaf('/admin/operator');
  serverCert = await pki.leaf('/control-plane/controller');
  chain = [agentCert, pki.intermediate, pki.root].map((c) => parseCertificate(c.der));
});

const STATUS: PushSessionStatus = {
  node: 'vm-a',
  spiffeId: `spiffe://${TD}/agent/vm-a`,
  address: '127.0.0.1',
  connectedAt: '2026-01-01T00:00:00.000Z',
  types: { Service: { acked: 'e-2' }, Endpoint: { acked: 'e-1', inFlight: 'e-3', nack: { version: 'e-2', error: 'bad endpoint', at: '2026-01-01T00:00:05.000Z' } } },
};
const VIEW = {
  snapshot: (type: ResourceType) => (type === 'Endpoint' ? { version: 'e-3', resources: ENDPOINTS } : { version: 'e-2', resources: [] }),
};

describe('operator views', () => {
  test('endpoints: filtered by service, namespace and node, sorted, flattened', () => {
    const all = endpointViews(ENDPOINTS);
    assert.deepEqual(
      all.map((e) => `${e.namespace}/${e.service}@${e.node}`),
      ['blog/web@vm-c', 'shop/db@vm-a', 'shop/web@vm-a', 'shop/web@vm-b'],
    );
    assert.deepEqual(endpointViews(ENDPOINTS, { service: 'web', namespace: 'shop' }).map((e) => e.node), ['vm-a', 'vm-b']);
    const a = endpointViews(ENDPOINTS, { node: 'vm-a', service: 'web' })[0]!;
    assert.deepEqual(a, { service: 'web', namespace: 'shop', node: 'vm-a', identity: WEB, address: '10.0.0.1', port: 8443, zone: 'z1', labels: { version: 'v1' }, health: 'unhealthy', reason: 'check_failed' });
  });

  test("an agent's SVID and intermediates come from its connection's chain; the root is left to the bundle", () => {
    const p = peerCertificates({ node: 'vm-a', certificates: chain });
    assert.equal(p.svid?.spiffeId, `spiffe://${TD}/agent/vm-a`);
    assert.equal(p.svid?.serial, parseCertificate(agentCert.der).serialHex);
    assert.equal(p.svid?.notAfter, '2026-01-01T01:00:00.000Z');
    assert.match(p.svid!.fingerprint, /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
    assert.equal(p.intermediates?.length, 1);
    assert.match(p.intermediates![0]!.subject!, /intermediate/);
    assert.deepEqual(peerCertificates(undefined), {});
  });

  test('certs: roots, intermediates (deduplicated, with the nodes presenting them), agents and workloads by expiry', () => {
    const reported = [
      { spiffeId: DB, serial: 'bb', notBefore: '2026-01-01T00:00:00.000Z', notAfter: '2026-01-01T00:30:00.000Z' },
      { spiffeId: WEB, serial: 'aa', notBefore: '2026-01-01T00:00:00.000Z', notAfter: '2026-01-01T00:20:00.000Z' },
    ];
    const inv = certInventory({
      roots: [parseCertificate(pki.root.der)],
      sessions: [
        { session: { node: 'vm-a', spiffeId: `spiffe://${TD}/agent/vm-a`, certificates: chain }, reported },
        { session: { node: 'vm-b', spiffeId: `spiffe://${TD}/agent/vm-b`, certificates: chain.slice(0, 2) }, reported: [] },
      ],
      own: [parseCertificate(serverCert.der), parseCertificate(pki.intermediate.der)],
      now: new Date('2026-01-01T00:10:00Z'),
    });
    assert.equal(inv.time, '2026-01-01T00:10:00.000Z');
    assert.equal(inv.roots.length, 1);
    assert.equal(inv.roots[0]!.source, 'bundle');
    assert.match(inv.roots[0]!.subject!, /views\.test root/);
    assert.equal(inv.roots[0]!.serial, parseCertificate(pki.root.der).serialHex);
    assert.equal(inv.intermediates.length, 1, 'one intermediate, however many present it');
    assert.deepEqual(inv.intermediates[0]!.nodes, ['vm-a', 'vm-b']);
    assert.equal(inv.intermediates[0]!.source, 'control-plane');
    assert.deepEqual(inv.agents.map((a) => [a.node, a.source]), [['vm-a', 'connection'], ['vm-b', 'connection']]);
    assert.deepEqual(inv.workloads.map((w) => [w.spiffeId, w.serial, w.node]), [[WEB, 'aa', 'vm-a'], [DB, 'bb', 'vm-a']], 'soonest expiry first');
  });

  test('certs: an agent SVID renewed since the connection opened is the one listed', () => {
    const renewed = { spiffeId: `spiffe://${TD}/agent/vm-a`, serial: 'cc', notBefore: '2026-01-01T00:30:00.000Z', notAfter: '2026-01-01T01:30:00.000Z' };
    const inv = certInventory({ roots: [], sessions: [{ session: { node: 'vm-a', spiffeId: renewed.spiffeId, certificates: chain }, reported: [renewed] }] });
    assert.deepEqual(inv.agents.map((a) => [a.serial, a.source, a.notAfter]), [['cc', 'reported', '2026-01-01T01:30:00.000Z']]);
    assert.equal(inv.workloads.length, 0, "the agent's own SVID is not a workload's");
  });

  test("certs: reported SVIDs of identities not the node's are left out", () => {
    const reported = [
      { spiffeId: WEB, serial: 'aa', notBefore: '2026-01-01T00:00:00.000Z', notAfter: '2026-01-01T01:00:00.000Z' },
      { spiffeId: DB, serial: 'bb', notBefore: '2026-01-01T00:00:00.000Z', notAfter: '2026-01-01T01:00:00.000Z' },
      { spiffeId: `spiffe://${TD}/agent/vm-b`, serial: 'cc', notBefore: '2026-01-01T00:00:00.000Z', notAfter: '2026-01-01T02:00:00.000Z' },
    ];
    const owns = (node: string, id: string) => id === `spiffe://${TD}/agent/${node}` || (node === 'vm-a' && id === WEB);
    const inv = certInventory({ roots: [], sessions: [{ session: { node: 'vm-a', spiffeId: `spiffe://${TD}/agent/vm-a`, certificates: chain }, reported }], owns });
    assert.deepEqual(inv.workloads.map((w) => w.serial), ['aa'], 'DB is not assigned to vm-a; another agent\'s SVID is not a workload of vm-a');
    assert.deepEqual(inv.agents.map((a) => a.source), ['connection']);
  });

  test('config dump: per subscribed type the version to push, acked, in flight, NACK and resources; the node\'s instances', () => {
    const d = configDump({ status: STATUS, session: { node: 'vm-a', certificates: chain }, view: VIEW, endpoints: ENDPOINTS, now: new Date('2026-01-01T00:10:00Z') });
    assert.deepEqual(Object.keys(d.types), ['Service', 'Endpoint'], 'only what the agent subscribed to');
    assert.deepEqual(d.types['Service'], { version: 'e-2', acked: 'e-2', inSync: true, count: 0, resources: [] });
    const ep = d.types['Endpoint']!;
    assert.equal(ep.version, 'e-3');
    assert.equal(ep.acked, 'e-1');
    assert.equal(ep.inFlight, 'e-3');
    assert.equal(ep.inSync, false);
    assert.equal(ep.nack?.error, 'bad endpoint');
    assert.equal(ep.count, 4);
    assert.deepEqual(d.instances.map((i) => `${i.service}:${i.port}`), ['db:9443', 'web:8443']);
    assert.equal(d.svid?.spiffeId, `spiffe://${TD}/agent/vm-a`);
  });
});

describe('operator routes', () => {
  let server: https.Server;
  let store: EmbeddedStore;
  let url: string;
  let client: ControlPlaneClient;

  before(async () => {
    store = await EmbeddedStore.open(join(root, 'store'));
    const bundle = bundleFromPem(pki.root.pem, TD);
    const handler = createAdminHandler({
      resources: new ResourceService(store),
      trust: () => ({ bundle }),
      trustDomain: TD,
      agents: () => [],
      status: () => ({}),
      endpoints: (filter) => endpointViews(ENDPOINTS, filter),
      certs: () => certInventory({ roots: bundle.roots, sessions: [{ session: { node: 'vm-a', spiffeId: STATUS.spiffeId, certificates: chain }, reported: [] }] }),
      agentConfig: (node) => (node === 'vm-a' ? configDump({ status: STATUS, view: VIEW, endpoints: ENDPOINTS }) : undefined),
    });
    server = https.createServer({ cert: toPemChain([serverCert, pki.intermediate]), key: serverCert.key.privateKeyPem, ca: pki.root.pem, minVersion: 'TLSv1.3', requestCert: true, rejectUnauthorized: false }, handler);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
    client = new ControlPlaneClient({ url, bundlePem: pki.root.pem, credential: { certPem: toPemChain([adminCert, pki.intermediate]), keyPem: adminCert.key.privateKeyPem } });
  });
  after(async () => {
    client.close();
    await new Promise<void>((r) => {
      server.close(() => r());
      server.closeAllConnections();
    });
    await store.close();
  });

  /** A raw request (hostile paths and queries the client would never send). */
  function raw(path: string, as: TestCert | null = adminCert): Promise<{ status: number; body: { error?: { reason: string; message: string } } }> {
    return new Promise((resolve, reject) => {
      const req = https.request({
        host: '127.0.0.1',
        port: new URL(url).port,
        path,
        agent: false,
        rejectUnauthorized: false,
        ...(as ? { cert: toPemChain([as, pki.intermediate]), key: as.key.privateKeyPem } : {}),
      });
      req.on('error', reject);
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(Buffer.concat(chunks).toString('utf8')) }));
      });
      req.end();
    });
  }

  test('the client reads endpoints (filtered), certs and a node\'s config', async () => {
    assert.equal((await client.endpoints()).length, 4);
    assert.deepEqual((await client.endpoints({ service: 'web', namespace: 'shop' })).map((e) => e.node), ['vm-a', 'vm-b']);
    assert.deepEqual((await client.endpoints({ namespace: 'blog' })).map((e) => e.node), ['vm-c']);
    const certs = await client.certs();
    assert.equal(certs.roots.length, 1);
    assert.equal(certs.agents[0]?.node, 'vm-a');
    assert.equal(certs.intermediates.length, 1);
    const dump = await client.agentConfig('vm-a');
    assert.equal(dump.types['Endpoint']?.acked, 'e-1');
  });

  test('a node that is not connected is a 404 that says where to look; a bad node name a 400', async () => {
    await assert.rejects(client.agentConfig('vm-z'), (err: ControlPlaneClientError) => {
      assert.equal(err.status, 404);
      assert.equal(err.reason, 'agent_not_connected');
      assert.match(err.message, /meshctl agents/);
      return true;
    });
    for (const bad of ['VM', '..', '%2e%2e', 'a%2Fb', '-x', 'x'.repeat(64)]) {
      const r = await raw(`/v1/agents/${bad}/config`);
      assert.equal(r.status, 400, bad);
      assert.equal(r.body.error?.reason, 'bad_node', bad);
    }
    assert.equal((await raw('/v1/agents/vm-a/config/extra')).status, 404);
  });

  test('bad queries are refused with the parameter named', async () => {
    for (const [q, name] of [
      ['service=web&service=db', 'service'],
      ['service=Web', 'service'],
      ['namespace=a%2Fb', 'namespace'],
      [`namespace=${'n'.repeat(64)}`, 'namespace'],
      ['node=vm-a', 'node'],
    ] as const) {
      const r = await raw(`/v1/endpoints?${q}`);
      assert.equal(r.status, 400, q);
      assert.equal(r.body.error?.reason, 'bad_query', q);
      assert.match(r.body.error!.message, new RegExp(name), q);
    }
    assert.equal((await raw('/v1/certs?x=1')).status, 400);
  });

  test('every route needs an admin SVID', async () => {
    const agent = await pki.leaf('/agent/vm-a');
    for (const path of ['/v1/endpoints', '/v1/certs', '/v1/agents/vm-a/config', '/v1/agents/vm-z/config']) {
      const none = await raw(path, null);
      assert.equal(none.status, 401, path);
      const notAdmin = await raw(path, agent);
      assert.equal(notAdmin.status, 403, path);
      assert.equal(notAdmin.body.error?.reason, 'not_admin');
    }
  });
});
