// ControlPlaneClient against the real admin handler on 127.0.0.1: each call,
// refusals as ControlPlaneClientError with the server's code, reason and
// issues, and a server that is not the controller gets no request at all.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import https from 'node:https';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bundleFromPem } from '@amime/identity';
import { createTestPki, toPemChain, type TestCert, type TestPki } from '@amime/identity/testing';
import { EmbeddedStore } from '@amime/store';
import { createAdminHandler } from './admin-api.js';
import { ControlPlaneClient, ControlPlaneClientError, type ControlPlaneClientOptions } from './client.js';
import { ResourceService } from './resource-service.js';

const TD = 'client.test';
const SERVICE = `apiVersion: amime.dev/v1
kind: Service
metadata: { name: web, namespace: shop }
spec:
  identity: spiffe://${TD}/ns/shop/sa/web
  ports: [{ name: http, port: 8080, protocol: http }]
`;

let pki: TestPki;
let admin: TestCert;
const root = mkdtempSync(join(tmpdir(), 'amime-cp-client-'));
const closers: (() => Promise<void>)[] = [];
let seen = 0;

async function server(identity: string): Promise<string> {
  const cert = await pki.leaf(identity);
  const store = await EmbeddedStore.open(join(root, `store-${closers.length}`));
  const bundle = bundleFromPem(pki.root.pem, TD);
  const handler = createAdminHandler({
    resources: new ResourceService(store),
    trust: () => ({ bundle }),
    trustDomain: TD,
    agents: () => [],
    status: () => ({ ok: true }),
    onRequest: () => void seen++,
  });
  const s = https.createServer({ cert: toPemChain([cert, pki.intermediate]), key: cert.key.privateKeyPem, ca: pki.root.pem, minVersion: 'TLSv1.3', requestCert: true, rejectUnauthorized: false }, handler);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  closers.push(async () => {
    await new Promise<void>((r) => {
      s.close(() => r());
      s.closeAllConnections();
    });
    await store.close();
  });
  return `https://127.0.0.1:${(s.address() as AddressInfo).port}`;
}

const options = (url: string, extra: Partial<ControlPlaneClientOptions> = {}): ControlPlaneClientOptions => ({
  url,
  bundlePem: pki.root.pem,
  credential: { certPem: toPemChain([admin, pki.intermediate]), keyPem: admin.key.privateKeyPem },
  ...extra,
});

before(async () => {
  pki = await createTestPki(TD);
  admin = await pki.leaf('/admin/operator');
});
after(async () => {
  for (const c of closers) await c();
  rmSync(root, { recursive: true, force: true });
});

function isError(code: string, reason?: string) {
  return (err: unknown) => {
    assert.ok(err instanceof ControlPlaneClientError, String(err));
    assert.equal(err.code, code);
    if (reason) assert.equal(err.reason, reason);
    return true;
  };
}

describe('ControlPlaneClient', () => {
  test('apply, get, delete, agents and status', async () => {
    const client = new ControlPlaneClient(options(await server('/control-plane/controller')));
    try {
      assert.equal(client.expectedServerId, `spiffe://${TD}/control-plane/controller`);
      const dry = await client.apply(SERVICE, 'yaml', true);
      assert.equal(dry.dryRun, true);
      assert.equal(dry.results[0]!.action, 'created');
      const applied = await client.apply(SERVICE, 'yaml');
      assert.equal(applied.results[0]!.action, 'created');
      const asJson = await client.apply(JSON.stringify(await client.get('Service', 'shop', 'web')), 'json');
      assert.equal(asJson.results[0]!.action, 'unchanged');
      assert.equal((await client.get('Service')).length, 1);
      assert.equal((await client.get('Service', 'blog')).length, 0);
      assert.equal((await client.get('Service', 'shop', 'web')).metadata.version, applied.results[0]!.version);
      assert.equal((await client.delete('Service', 'shop', 'web', true)).dryRun, true);
      assert.equal((await client.delete('Service', 'shop', 'web')).action, 'deleted');
      assert.deepEqual(await client.agents(), []);
      assert.deepEqual(await client.status(), { ok: true });
    } finally {
      client.close();
    }
  });

  test("refusals carry the server's code, reason, status and issues", async () => {
    const client = new ControlPlaneClient(options(await server('/control-plane/controller')));
    try {
      await assert.rejects(client.get('Service', 'shop', 'nope'), (err: unknown) => {
        assert.ok(err instanceof ControlPlaneClientError);
        assert.equal(err.code, 'AMIME_ERR_CP_NOT_FOUND');
        assert.equal(err.reason, 'not_found');
        assert.equal(err.status, 404);
        assert.equal(err.refused, true);
        assert.match(err.message, /Service shop\/nope does not exist/);
        return true;
      });
      await assert.rejects(client.apply(SERVICE.replace('8080', '0'), 'yaml'), (err: unknown) => {
        assert.ok(err instanceof ControlPlaneClientError);
        assert.equal(err.status, 400);
        assert.deepEqual(err.issues?.map((i) => [i.document, i.path]), [[0, 'spec.ports[0].port']]);
        return true;
      });
      // names are sent encoded, so the server refuses them instead of seeing another path
      await assert.rejects(client.get('Service', 'shop', '../../agents'), isError('AMIME_ERR_CP_BAD_REQUEST', 'bad_name'));
    } finally {
      client.close();
    }
  });

  test('a server that is not the controller gets no request', async () => {
    const url = await server('/control-plane/ca');
    const before = seen;
    const client = new ControlPlaneClient(options(url));
    try {
      await assert.rejects(client.status(), isError('AMIME_ERR_CP_CLIENT_SERVER_IDENTITY', 'server_identity'));
      assert.equal(seen, before);
    } finally {
      client.close();
    }
    const other = new ControlPlaneClient(options(url, { expectedServerId: `spiffe://${TD}/control-plane/ca` }));
    try {
      assert.deepEqual(await other.status(), { ok: true });
    } finally {
      other.close();
    }
  });

  test('transport failures and bad options', async () => {
    const free = net.createServer();
    await new Promise<void>((r) => free.listen(0, '127.0.0.1', r));
    const port = (free.address() as AddressInfo).port;
    await new Promise<void>((r) => free.close(() => r()));
    const client = new ControlPlaneClient(options(`https://127.0.0.1:${port}`, { timeoutMs: 2000 }));
    try {
      await assert.rejects(client.status(), (err: unknown) => {
        assert.ok(err instanceof ControlPlaneClientError);
        assert.equal(err.reason, 'unreachable');
        assert.equal(err.refused, false);
        assert.equal(err.status, 0);
        return true;
      });
    } finally {
      client.close();
    }
    assert.throws(() => new ControlPlaneClient(options('http://127.0.0.1:1')), isError('AMIME_ERR_CP_CLIENT_BAD_OPTIONS'));
    assert.throws(() => new ControlPlaneClient(options('not a url')), isError('AMIME_ERR_CP_CLIENT_BAD_OPTIONS'));
    assert.throws(() => new ControlPlaneClient(options('https://127.0.0.1:1', { bundlePem: 'nope' })), isError('AMIME_ERR_CP_CLIENT_BAD_OPTIONS'));
  });
});
