// The CA's HTTPS API against a real `ca serve` process: join and issuance
// over mTLS, every kind of bad request answered with the right status and
// reason while the process stays up and state.json stays byte-identical, and
// a revoked agent refused on its very next request.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CertificateAuthorityService } from '@amime/ca';
import { bundleFromPem, fromPem, generateKeyPair, verifySvid } from '@amime/identity';
import { adminCredential, initCa, keyAndCsr, request, serveCa, stop, type CaProcess, type Credential, type Reply, type RequestOptions } from './fixtures/ca-process.js';
import { csrPem, csrWithBadSignature, csrWithUris } from './fixtures/csr.js';

process.env['AMIME_CA_QUIET'] = '1';
const TD = 'api.test';
const agentId = (node: string) => `spiffe://${TD}/agent/${node}`;
const API = `spiffe://${TD}/ns/shop/sa/api`;
const DB = `spiffe://${TD}/ns/shop/sa/db`;

let root: string;
let dir: string;
let ca: CaProcess;
let admin: Credential;
let trust: string;

before(async () => {
  root = mkdtempSync(join(tmpdir(), 'amime-ca-api-'));
  dir = join(root, 'ca');
  initCa(dir, TD);
  const a = adminCredential(dir);
  admin = a;
  trust = a.bundlePem;
  ca = await serveCa(dir);
});

after(async () => {
  await stop(ca);
  rmSync(root, { recursive: true, force: true });
});

const call = (o: Omit<RequestOptions, 'trust' | 'trustDomain'>): Promise<Reply> => request(ca.url, { trust, trustDomain: TD, ...o });
const stateBytes = (): Buffer => readFileSync(join(dir, 'state.json'));

function ok(r: Reply, what: string): void {
  assert.equal(r.status, 200, `${what}: ${r.status} ${r.text}`);
}

async function createToken(node: string, ttlSeconds?: number): Promise<{ token: string; expiresAt: string }> {
  const r = await call({ path: '/v1/admin/tokens', cred: admin, body: { node, ...(ttlSeconds ? { ttlSeconds } : {}) } });
  ok(r, 'create token');
  return r.json;
}

interface Agent extends Credential {
  spiffeId: string;
  serial: string;
}

async function joinAgent(node: string): Promise<Agent> {
  const { token } = await createToken(node);
  const { keyPem, csr } = keyAndCsr(agentId(node));
  const r = await call({ path: '/v1/join', body: { token, csr } });
  ok(r, `join ${node}`);
  return { certPem: r.json.svid, keyPem, spiffeId: r.json.spiffeId, serial: r.json.serial };
}

function assertVerifies(chainPem: string, bundlePem: string, spiffeId: string): void {
  const result = verifySvid(fromPem(chainPem, 'CERTIFICATE'), { bundle: bundleFromPem(bundlePem, TD) });
  assert.equal(result.ok, true, JSON.stringify(result));
  if (result.ok) assert.equal(result.spiffeId, spiffeId);
}

describe('CA API over HTTPS', () => {
  let agent: Agent;

  test('join with a token and a CSR gives an agent SVID that verifies against the bundle', async () => {
    const { token } = await createToken('vm-a');
    const { keyPem, csr } = keyAndCsr(agentId('vm-a'));
    const r = await call({ path: '/v1/join', body: { token, csr } });
    ok(r, 'join');
    assert.equal(r.serverId, `spiffe://${TD}/control-plane/ca`);
    assert.equal(r.json.spiffeId, agentId('vm-a'));
    assert.equal(r.json.node, 'vm-a');
    assert.match(r.json.serial, /^[0-9a-f]+$/);
    assert.equal(r.json.bundle, trust, 'the join answer carries the bundle');
    assertVerifies(r.json.svid, r.json.bundle, agentId('vm-a'));
    agent = { certPem: r.json.svid, keyPem, spiffeId: r.json.spiffeId, serial: r.json.serial };

    // the agent now authenticates with its SVID
    const pem = await call({ path: '/v1/bundle?format=pem', cred: agent });
    ok(pem, 'bundle');
    assert.equal(pem.text, trust);
    const json = await call({ path: '/v1/bundle', cred: agent });
    ok(json, 'bundle json');
    assert.equal(json.json.keys.length, 1);
    assert.ok(json.json.spiffe_sequence >= 1);
  });

  test('an agent gets an SVID for an assigned workload over mTLS', async () => {
    ok(await call({ path: '/v1/admin/assignments', cred: admin, body: { node: 'vm-a', spiffeId: API } }), 'assign');
    const mine = await call({ path: '/v1/assignments', cred: agent });
    assert.deepEqual(mine.json, { 'vm-a': [API] });
    const { csr, keyPem } = keyAndCsr(API);
    const r = await call({ path: '/v1/svid', cred: agent, body: { csr, spiffeId: API } });
    ok(r, 'issue');
    assert.equal(r.json.spiffeId, API);
    assertVerifies(r.json.svid, trust, API);
    // the workload's own SVID may not read the identity assignments
    const workload = { certPem: r.json.svid as string, keyPem };
    const refused = await call({ path: '/v1/assignments', cred: workload });
    assert.equal(refused.status, 403, refused.text);
    assert.equal(refused.json?.error?.reason, 'caller_not_allowed');
    // and its own renewal
    const renewal = keyAndCsr(agent.spiffeId);
    const own = await call({ path: '/v1/svid', cred: agent, body: { csr: renewal.csr, spiffeId: agent.spiffeId } });
    ok(own, 'renew');
    assertVerifies(own.json.svid, trust, agent.spiffeId);
  });

  test('bad requests get the right status and reason, change nothing, and the process stays up', async (t) => {
    // tokens for the token cases (made before the state snapshot)
    const used = await createToken('vm-used');
    const usedCsr = keyAndCsr(agentId('vm-used')).csr;
    ok(await call({ path: '/v1/join', body: { token: used.token, csr: usedCsr } }), 'first use');
    const expiring = await createToken('vm-exp', 1);
    const spare = await createToken('vm-spare');
    // a same-trust-domain impostor: an agent SVID from another CA's root
    const impostorCa = CertificateAuthorityService.init(join(root, 'impostor'), { trustDomain: TD });
    const impostorKey = keyAndCsr(agentId('vm-a'));
    const { token: impToken } = impostorCa.createJoinToken('vm-a');
    const impostor = { certPem: (await impostorCa.join(impToken, impostorKey.csr)).chainPem, keyPem: impostorKey.keyPem };
    impostorCa.close();
    const wait = Date.parse(expiring.expiresAt) + 100 - Date.now();
    if (wait > 0) await sleep(wait);

    const key = generateKeyPair('ec-p256');
    const snapshot = stateBytes();
    const big = JSON.stringify({ token: spare.token, csr: 'A'.repeat(70 * 1024) });
    const cases: [string, Omit<RequestOptions, 'trust' | 'trustDomain'>, number, string][] = [
      ['garbage CSR', { path: '/v1/svid', cred: agent, body: { csr: 'garbage', spiffeId: API } }, 400, 'csr_malformed'],
      ['garbage CSR at join', { path: '/v1/join', body: { token: spare.token, csr: '-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n' } }, 400, 'csr_malformed'],
      ['CSR as a number', { path: '/v1/svid', cred: agent, body: { csr: 7, spiffeId: API } }, 400, 'bad_request'],
      ['wrong signature', { path: '/v1/svid', cred: agent, body: { csr: csrPem(csrWithBadSignature(key, API)), spiffeId: API } }, 400, 'csr_bad_signature'],
      ['wrong signature at join', { path: '/v1/join', body: { token: spare.token, csr: csrPem(csrWithBadSignature(key, agentId('vm-spare'))) } }, 400, 'csr_bad_signature'],
      ['second URI SAN', { path: '/v1/svid', cred: agent, body: { csr: csrPem(csrWithUris(key, [API, DB])), spiffeId: API } }, 400, 'csr_san_count'],
      ['foreign trust domain in the CSR', { path: '/v1/svid', cred: agent, body: { csr: keyAndCsr('spiffe://evil.test/ns/shop/sa/api').csr, spiffeId: API } }, 400, 'csr_foreign_trust_domain'],
      ['foreign trust domain requested', { path: '/v1/svid', cred: agent, body: { csr: keyAndCsr('spiffe://evil.test/ns/shop/sa/api').csr, spiffeId: 'spiffe://evil.test/ns/shop/sa/api' } }, 403, 'foreign_trust_domain'],
      ['CSR for another identity', { path: '/v1/svid', cred: agent, body: { csr: keyAndCsr(DB).csr, spiffeId: API } }, 400, 'csr_spiffe_id_mismatch'],
      ['unassigned identity', { path: '/v1/svid', cred: agent, body: { csr: keyAndCsr(DB).csr, spiffeId: DB } }, 403, 'not_assigned'],
      ["another node's agent identity", { path: '/v1/svid', cred: agent, body: { csr: keyAndCsr(agentId('vm-b')).csr, spiffeId: agentId('vm-b') } }, 403, 'not_assigned'],
      ['admin asks for a workload SVID', { path: '/v1/svid', cred: admin, body: { csr: keyAndCsr(API).csr, spiffeId: API } }, 403, 'admin_scope'],
      ['reused token', { path: '/v1/join', body: { token: used.token, csr: keyAndCsr(agentId('vm-used')).csr } }, 403, 'token_reused'],
      ['expired token', { path: '/v1/join', body: { token: expiring.token, csr: keyAndCsr(agentId('vm-exp')).csr } }, 403, 'token_expired'],
      ['wrong-node token', { path: '/v1/join', body: { token: spare.token, csr: keyAndCsr(agentId('vm-other')).csr } }, 400, 'csr_spiffe_id_mismatch'],
      ['unknown token', { path: '/v1/join', body: { token: 'amime-jt.nope', csr: keyAndCsr(agentId('vm-spare')).csr } }, 403, 'token_unknown'],
      ['token as a number', { path: '/v1/join', body: { token: 5, csr: keyAndCsr(agentId('vm-spare')).csr } }, 400, 'bad_request'],
      ['oversized body (content-length)', { path: '/v1/join', raw: big, headers: { 'content-type': 'application/json' } }, 413, 'too_large'],
      ['oversized body on an mTLS route', { path: '/v1/svid', cred: agent, raw: big, headers: { 'content-type': 'application/json' } }, 413, 'too_large'],
      ['malformed JSON', { path: '/v1/join', raw: '{"token": ', headers: { 'content-type': 'application/json' } }, 400, 'malformed_json'],
      ['JSON that is not an object', { path: '/v1/join', raw: '["token"]', headers: { 'content-type': 'application/json' } }, 400, 'malformed_json'],
      ['not JSON at all', { path: '/v1/join', raw: 'token=x', headers: { 'content-type': 'application/x-www-form-urlencoded' } }, 400, 'content_type'],
      ['unknown field', { path: '/v1/join', body: { token: spare.token, csr: keyAndCsr(agentId('vm-spare')).csr, node: 'vm-a' } }, 400, 'unknown_field'],
      ['unknown field on an admin route', { path: '/v1/admin/tokens', cred: admin, body: { node: 'vm-z', admin: true } }, 400, 'unknown_field'],
      ['no client certificate on an authenticated route', { path: '/v1/svid', body: { csr: keyAndCsr(API).csr, spiffeId: API } }, 401, 'peer_no_peer_certificate'],
      ['no client certificate on an admin route', { path: '/v1/admin/status' }, 401, 'peer_no_peer_certificate'],
      ['client certificate from another root', { path: '/v1/bundle', cred: impostor }, 401, 'peer_unknown_issuer'],
      ['agent calling an admin route', { path: '/v1/admin/tokens', cred: agent, body: { node: 'vm-z' } }, 403, 'not_admin'],
      ['agent reading admin status', { path: '/v1/admin/status', cred: agent }, 403, 'not_admin'],
      ['agent starting a rotation', { path: '/v1/admin/rotation/prepare', cred: agent, body: {} }, 403, 'not_admin'],
      ["agent reading another node's assignments", { path: '/v1/assignments?node=vm-b', cred: agent }, 403, 'forbidden'],
      ['unknown route', { path: '/v1/nope', cred: admin }, 404, 'not_found'],
      ['unknown route without a certificate', { path: '/v1/admin/nope' }, 404, 'not_found'],
      ['wrong method', { path: '/v1/join', method: 'GET' }, 405, 'method_not_allowed'],
      ['wrong method on an admin route', { path: '/v1/admin/status', method: 'DELETE', cred: admin }, 405, 'method_not_allowed'],
      ['bad node name', { path: '/v1/admin/tokens', cred: admin, body: { node: 'Bad Node' } }, 400, 'bad_node_name'],
      ['token TTL out of range', { path: '/v1/admin/tokens', cred: admin, body: { node: 'vm-z', ttlSeconds: 0 } }, 400, 'bad_request'],
      ['reserved identity assigned', { path: '/v1/admin/assignments', cred: admin, body: { node: 'vm-a', spiffeId: agentId('vm-b') } }, 400, 'bad_workload_id'],
      ['unassigning what is not assigned', { path: '/v1/admin/assignments', method: 'DELETE', cred: admin, body: { node: 'vm-a', spiffeId: DB } }, 404, 'not_found'],
      ['two revocation selectors', { path: '/v1/admin/revocations', cred: admin, body: { serial: 'ab', spiffeId: API } }, 400, 'bad_request'],
      ['bad serial', { path: '/v1/admin/revocations', cred: admin, body: { serial: 'zz' } }, 400, 'bad_request'],
      ['revoking the admin identity', { path: '/v1/admin/revocations', cred: admin, body: { spiffeId: `spiffe://${TD}/admin/operator` } }, 403, 'forbidden'],
      ['activating with nothing prepared', { path: '/v1/admin/rotation/activate', cred: admin, body: {} }, 409, 'rotation_state'],
      ['retiring with nothing activated', { path: '/v1/admin/rotation/retire', cred: admin, body: { force: true } }, 409, 'rotation_state'],
    ];
    for (const [name, req, status, reason] of cases) {
      await t.test(name, async () => {
        const r = await call(req);
        assert.equal(r.status, status, `${name}: ${r.text}`);
        assert.match(String(r.headers['content-type']), /^application\/json/);
        assert.equal(r.json?.error?.reason, reason, r.text);
        assert.match(r.json.error.code, /^AMIME_ERR_CA_[A-Z_]+$/);
        assert.ok(typeof r.json.error.message === 'string' && r.json.error.message.length > 10, r.text);
        if (status === 405) assert.ok(r.headers['allow'], 'a 405 names the allowed methods');
        assert.ok(ca.alive(), `the CA process died on: ${name}\n${ca.stderr()}`);
      });
    }
    // a body sent in chunks with no content-length is bounded too
    await t.test('oversized chunked body', async () => {
      const r = await call({ path: '/v1/join', raw: big, chunked: true, headers: { 'content-type': 'application/json' } });
      assert.equal(r.status, 413, r.text);
    });

    assert.ok(stateBytes().equals(snapshot), 'state.json is byte-identical after the bad requests');
    assert.ok(ca.alive());
    const status = await call({ path: '/v1/admin/status', cred: admin });
    ok(status, 'status');
    assert.equal(status.json.trustDomain, TD);
    // the spare token was never spent by the refusals: it still joins
    const r = await call({ path: '/v1/join', body: { token: spare.token, csr: keyAndCsr(agentId('vm-spare')).csr } });
    ok(r, 'spare token joins');
  });

  test('a revoked agent is refused on its very next request, even on a kept-alive connection', async () => {
    const b = await joinAgent('vm-b');
    const keepAlive = new https.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const first = await call({ path: '/v1/bundle', cred: b, agent: keepAlive });
      ok(first, 'before revocation');
      const rev = await call({ path: '/v1/admin/revocations', cred: admin, body: { serial: b.serial, reason: 'test' } });
      ok(rev, 'revoke');
      const list = await call({ path: '/v1/revocations', cred: agent });
      assert.ok(list.json.serials.includes(b.serial));
      assert.equal(list.json.version, rev.json.version);

      const next = await call({ path: '/v1/bundle', cred: b, agent: keepAlive });
      assert.equal(next.localPort, first.localPort, 'the same connection was reused');
      assert.equal(next.status, 401, next.text);
      assert.equal(next.json.error.reason, 'peer_revoked');
      const fresh = await call({ path: '/v1/svid', cred: b, body: { csr: keyAndCsr(b.spiffeId).csr, spiffeId: b.spiffeId } });
      assert.equal(fresh.status, 401, fresh.text);
      assert.equal(fresh.json.error.reason, 'peer_revoked');
      // the other agent is unaffected
      ok(await call({ path: '/v1/bundle', cred: agent }), 'vm-a still served');
    } finally {
      keepAlive.destroy();
    }
  });

  test('an evicted node is refused at once and readmitted by a new join token', async () => {
    const c = await joinAgent('vm-c');
    ok(await call({ path: '/v1/admin/assignments', cred: admin, body: { node: 'vm-c', spiffeId: DB } }), 'assign');
    const evict = await call({ path: '/v1/admin/revocations', cred: admin, body: { node: 'vm-c' } });
    ok(evict, 'evict');
    assert.equal(evict.json.revokedSerials, 1);
    const refused = await call({ path: '/v1/svid', cred: c, body: { csr: keyAndCsr(DB).csr, spiffeId: DB } });
    assert.equal(refused.status, 401);
    const all = await call({ path: '/v1/admin/assignments', cred: admin });
    assert.equal(all.json['vm-c'], undefined, 'its assignments are gone');
    const back = await joinAgent('vm-c');
    ok(await call({ path: '/v1/bundle', cred: back }), 'readmitted');
    assert.ok(ca.alive());
  });
});
