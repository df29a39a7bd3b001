// CaClient (@amime/identity) against the real CA API served in-process by
// @amime/ca: bootstrap with a join token, an agent's own calls, the admin
// calls, the CA's refusals as CaClientErrors, server identity checks, and
// a rotation the client follows with updateTrust/updateCredential.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initCa, startCaServer, type CertificateAuthorityService, type RunningCaServer } from '@amime/ca';
import {
  CaClient,
  CaClientError,
  bundleFromPem,
  createCsr,
  exportPrivateKeyPem,
  fromPem,
  generateKeyPair,
  verifySvid,
  type CaClientOptions,
  type CaCredential,
} from '@amime/identity';

process.env['AMIME_CA_QUIET'] = '1';
const TD = 'client-int.test';
const API = `spiffe://${TD}/ns/shop/sa/api`;
const agentId = (node: string) => `spiffe://${TD}/agent/${node}`;

interface Ca {
  dir: string;
  ca: CertificateAuthorityService;
  server: RunningCaServer;
  admin: CaCredential;
  bundlePem: string;
  connections: () => number;
}

const roots: string[] = [];
const cas: Ca[] = [];
const clients: CaClient[] = [];

async function startCa(trustDomain: string): Promise<Ca> {
  const dir = mkdtempSync(join(tmpdir(), 'amime-ca-client-'));
  roots.push(dir);
  const { ca } = await initCa(dir, { trustDomain });
  const server = await startCaServer(ca, { port: 0 });
  let connections = 0;
  server.server.on('secureConnection', () => connections++);
  const read = (f: string) => readFileSync(join(dir, 'admin', f), 'utf8');
  const made = { dir, ca, server, admin: { certPem: read('cert.pem'), keyPem: read('key.pem') }, bundlePem: read('bundle.pem'), connections: () => connections };
  cas.push(made);
  return made;
}

function client(c: Ca, o: Partial<CaClientOptions> = {}): CaClient {
  const made = new CaClient({ url: c.server.url, bundlePem: c.bundlePem, credential: c.admin, timeoutMs: 5_000, ...o });
  clients.push(made);
  return made;
}

async function refusal(p: Promise<unknown>): Promise<CaClientError> {
  const err = await p.then(
    () => assert.fail('expected a CaClientError'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof CaClientError, `not a CaClientError: ${String(err)}`);
  return err;
}

function keyAndCsr(spiffeId: string): { keyPem: string; csr: Buffer } {
  const key = generateKeyPair('ec-p256');
  return { keyPem: exportPrivateKeyPem(key.privateKey), csr: createCsr(key, spiffeId) };
}

let main: Ca;

before(async () => {
  main = await startCa(TD);
});

after(async () => {
  for (const c of clients) c.close();
  for (const c of cas) {
    await c.server.close();
    c.ca.close();
  }
  for (const r of roots) rmSync(r, { recursive: true, force: true });
});

describe('CaClient against the CA API', () => {
  let agent: CaCredential;

  test('admin status over one verified, kept-alive connection', async () => {
    const admin = client(main);
    const before = main.connections();
    const s = await admin.status();
    assert.equal(s.trustDomain, TD);
    assert.equal(s.rotation, 'steady');
    assert.deepEqual(await admin.listAssignments(), {});
    assert.equal((await admin.rotation()).phase, 'steady');
    assert.equal(main.connections() - before, 1, 'three requests, one TLS connection');
  });

  test('join: a token and a CSR, with no credential, give an agent SVID that then authenticates', async () => {
    const admin = client(main);
    const { token } = await admin.createToken('vm-a', 120);
    const bootstrap = client(main, { credential: undefined, trustDomain: TD });
    const { keyPem, csr } = keyAndCsr(agentId('vm-a'));
    const joined = await bootstrap.join(token, csr);
    assert.equal(joined.spiffeId, agentId('vm-a'));
    assert.equal(joined.node, 'vm-a');
    assert.equal(joined.bundle, main.bundlePem);
    const v = verifySvid(fromPem(joined.svid, 'CERTIFICATE'), { bundle: bundleFromPem(joined.bundle, TD) });
    assert.ok(v.ok && v.spiffeId === agentId('vm-a'));
    agent = { certPem: joined.svid, keyPem };

    const replay = await refusal(bootstrap.join(token, keyAndCsr(agentId('vm-a')).csr));
    assert.deepEqual([replay.code, replay.reason, replay.status, replay.refused], ['AMIME_ERR_CA_TOKEN', 'token_reused', 403, true]);
  });

  test("an agent reads its bundle, revocations and assignments and gets SVIDs for what is assigned", async () => {
    const admin = client(main);
    const a = client(main, { credential: agent });
    assert.equal(a.trustDomain, TD);
    assert.deepEqual(await a.assignments(), { 'vm-a': [] });
    const refused = await refusal(a.svid(keyAndCsr(API).csr, API));
    assert.equal(refused.reason, 'not_assigned');
    assert.match(refused.message, /meshctl assign vm-a/);

    assert.deepEqual(await admin.assign('vm-a', API), { node: 'vm-a', spiffeId: API });
    assert.deepEqual(await a.assignments(), { 'vm-a': [API] });
    const issued = await a.svid(keyAndCsr(API).csr, API);
    assert.equal(issued.spiffeId, API);
    const own = await a.svid(keyAndCsr(agentId('vm-a')).csr, agentId('vm-a'));
    assert.equal(own.spiffeId, agentId('vm-a'));

    assert.equal(await a.bundlePem(), main.bundlePem);
    const doc = await a.bundle();
    assert.equal(doc.keys.length, 1);
    assert.equal(typeof (await a.revocations()).version, 'number');
    assert.deepEqual(await admin.unassign('vm-a', API), { node: 'vm-a', spiffeId: API });
  });

  test('roles: an agent is no admin, and no credential reaches only join', async () => {
    const a = client(main, { credential: agent });
    const notAdmin = await refusal(a.status());
    assert.deepEqual([notAdmin.code, notAdmin.reason, notAdmin.status], ['AMIME_ERR_CA_FORBIDDEN', 'not_admin', 403]);
    const anonymous = client(main, { credential: undefined, trustDomain: TD });
    const unauthenticated = await refusal(anonymous.bundlePem());
    assert.deepEqual([unauthenticated.code, unauthenticated.reason, unauthenticated.status], ['AMIME_ERR_CA_UNAUTHENTICATED', 'peer_no_peer_certificate', 401]);
  });

  test('revoke and unrevoke an identity; evicting a node revokes its SVIDs and the agent is refused at once', async () => {
    const admin = client(main);
    const r = await admin.revoke({ spiffeId: API, reason: 'test' });
    assert.ok((await admin.revocations()).spiffeIds.includes(API));
    assert.equal((await admin.unrevoke(API)).version, r.version + 1);
    const bad = await refusal(admin.revoke({ spiffeId: 'spiffe://other.test/ns/a/sa/b' }));
    assert.deepEqual([bad.reason, bad.status], ['foreign_trust_domain', 403]);

    const evicted = await admin.revoke({ node: 'vm-a' });
    assert.ok((evicted.revokedSerials ?? 0) >= 2, JSON.stringify(evicted));
    const a = client(main, { credential: agent });
    const refused = await refusal(a.bundlePem());
    assert.deepEqual([refused.reason, refused.status], ['peer_revoked', 401]);
  });

  test('a rotation step out of order is a 409 with its reason', async () => {
    const e = await refusal(client(main).rotate('activate'));
    assert.deepEqual([e.code, e.reason, e.status], ['AMIME_ERR_CA_CONFLICT', 'rotation_state', 409]);
  });

  test('a wrong expected server ID is refused with reason server_identity, and nothing reaches the CA', async () => {
    const before = (await client(main).status()).pendingTokens;
    const c = client(main, { expectedServerId: `spiffe://${TD}/control-plane/registry` });
    const e = await refusal(c.createToken('vm-z'));
    assert.equal(e.reason, 'server_identity');
    assert.equal(e.status, 0);
    assert.match(e.message, /is spiffe:\/\/client-int\.test\/control-plane\/ca, not spiffe:\/\/client-int\.test\/control-plane\/registry/);
    assert.equal((await client(main).status()).pendingTokens, before, 'the token was never created');
  });

  test("another trust domain's CA is refused: its roots are not ours", async () => {
    const other = await startCa('other.test');
    const e = await refusal(client(main, { url: other.server.url }).status());
    assert.equal(e.reason, 'tls');
  });
});

test('a client follows a root rotation with updateTrust and updateCredential', async () => {
  const c = await startCa('rotating.test');
  const admin = client(c);
  await admin.rotate('prepare');
  const both = await admin.bundlePem();
  assert.equal(bundleFromPem(both, 'rotating.test').roots.length, 2);
  admin.updateTrust(both);
  await admin.rotate('activate', true);
  // the CA now serves an SVID under the new root: a client with only the old root cannot connect
  const stale = client(c);
  assert.equal((await refusal(stale.status())).reason, 'tls');
  assert.equal((await admin.status()).rotation, 'activated');
  // renew the admin SVID under the new root before the old one goes
  const key = generateKeyPair('ec-p256');
  const id = 'spiffe://rotating.test/admin/operator';
  const renewed = await admin.svid(createCsr(key, id), id);
  admin.updateCredential({ certPem: renewed.svid, keyPem: exportPrivateKeyPem(key.privateKey) });
  await admin.rotate('retire', true);
  const after = await admin.bundlePem();
  admin.updateTrust(after);
  assert.equal(bundleFromPem(after, 'rotating.test').roots.length, 1);
  assert.equal((await admin.status()).rotation, 'steady');
});
