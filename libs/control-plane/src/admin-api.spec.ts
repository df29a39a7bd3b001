// The admin API on a real HTTPS server (127.0.0.1, port 0) with test SVIDs:
// who may call it, what each route answers, and how it refuses hostile
// requests (odd paths, wrong methods and media types, big or slow bodies).
import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import https from 'node:https';
import type { IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { bundleFromPem, createRevocationSet } from '@amime/identity';
import { createLeaf, createTestPki, toPemChain, type TestCert, type TestPki } from '@amime/identity/testing';
import { EmbeddedStore } from '@amime/store';
import { createAdminHandler, type AdminApiDeps, type AgentStatus } from './admin-api.js';
import { ResourceService } from './resource-service.js';

const TD = 'amime.test';
const SERVICE_YAML = `apiVersion: amime.dev/v1
kind: Service
metadata: { name: web, namespace: shop }
spec:
  identity: spiffe://${TD}/ns/shop/sa/web
  ports: [{ name: http, port: 8080, protocol: http }]
---
apiVersion: amime.dev/v1
kind: Route
metadata: { name: web, namespace: shop }
spec:
  service: web
  rules: [{ backends: [{ service: web-v2, weight: 100 }] }]
`;
const POLICY_JSON = JSON.stringify([
  { apiVersion: 'amime.dev/v1', kind: 'AuthorizationPolicy', metadata: { name: 'p', namespace: 'shop' }, spec: { action: 'ALLOW', target: 'web', rules: [{ from: [{ namespace: 'shop' }] }] } },
]);
const AGENTS: AgentStatus[] = [
  { node: 'vm-a', spiffeId: `spiffe://${TD}/agent/vm-a`, connectedAt: '2026-01-01T00:00:00.000Z', address: '127.0.0.1', types: { Route: { acked: 'e-3', nack: { version: 'e-4', error: 'bad', at: '2026-01-01T00:00:01.000Z' } } }, instances: 2 },
];

let pki: TestPki;
let certs: Record<'server' | 'admin' | 'agent' | 'bareAdmin' | 'crossDomain' | 'foreign', TestCert>;
let foreignPki: TestPki;
const root = mkdtempSync(join(tmpdir(), 'amime-admin-api-'));

interface Served {
  url: URL;
  store: EmbeddedStore;
  requests: [string, string][];
  logged: Record<string, unknown>[];
  close(): Promise<void>;
}
let n = 0;

async function serve(overrides: Partial<AdminApiDeps> = {}): Promise<Served> {
  const store = await EmbeddedStore.open(join(root, `store-${n++}`));
  const requests: [string, string][] = [];
  const logged: Record<string, unknown>[] = [];
  const bundle = bundleFromPem(pki.root.pem, TD);
  const handler = createAdminHandler({
    resources: new ResourceService(store),
    trust: () => ({ bundle }),
    trustDomain: TD,
    agents: () => AGENTS,
    status: () => ({ trustDomain: TD, agents: 1 }),
    onRequest: (route, code) => requests.push([route, code]),
    log: (e) => logged.push(e),
    ...overrides,
  });
  const server = https.createServer(
    {
      cert: toPemChain([certs.server, pki.intermediate]),
      key: certs.server.key.privateKeyPem,
      ca: pki.root.pem,
      minVersion: 'TLSv1.3',
      requestCert: true,
      rejectUnauthorized: false,
    },
    handler,
  );
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: new URL(`https://127.0.0.1:${(server.address() as AddressInfo).port}`),
    store,
    requests,
    logged,
    close: async () => {
      await new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      });
      await store.close();
    },
  };
}

interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  body: any;
}

interface CallOptions {
  as?: TestCert | null;
  chain?: TestCert[];
  body?: string | Buffer;
  type?: string;
  headers?: Record<string, string>;
}

function call(s: Served, method: string, path: string, opts: CallOptions = {}): Promise<Reply> {
  const as = opts.as === undefined ? certs.admin : opts.as;
  return new Promise((resolve, reject) => {
    const req = https.request({
      host: '127.0.0.1',
      port: s.url.port,
      method,
      path,
      agent: false,
      // these specs test the server; the client's own checks are in client.spec.ts
      rejectUnauthorized: false,
      ...(as ? { cert: toPemChain([as, ...(opts.chain ?? [pki.intermediate])]), key: as.key.privateKeyPem } : {}),
      headers: { ...(opts.body !== undefined ? { 'content-type': opts.type ?? 'application/yaml' } : {}), ...opts.headers },
    });
    req.on('error', reject);
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        resolve({ status: res.statusCode!, headers: res.headers, body: text ? JSON.parse(text) : undefined });
      });
    });
    req.end(opts.body);
  });
}

function assertError(r: Reply, status: number, code: string, reason?: string | RegExp): void {
  assert.equal(r.status, status, JSON.stringify(r.body));
  assert.equal(r.body.error.code, code);
  if (typeof reason === 'string') assert.equal(r.body.error.reason, reason);
  else if (reason) assert.match(r.body.error.reason, reason);
  assert.equal(typeof r.body.error.message, 'string');
}

before(async () => {
  pki = await createTestPki(TD);
  foreignPki = await createTestPki('other.test');
  certs = {
    server: await pki.leaf('/control-plane/controller'),
    admin: await pki.leaf('/admin/operator'),
    agent: await pki.leaf('/agent/vm-a'),
    bareAdmin: await pki.leaf('/admin'),
    crossDomain: await createLeaf(pki.intermediate, 'spiffe://other.test/admin/operator'),
    foreign: await foreignPki.leaf('/admin/operator'),
  };
});
after(() => rmSync(root, { recursive: true, force: true }));

describe('admin API', () => {
  let s: Served;
  beforeEach(async () => {
    s = await serve();
  });
  const done = async () => s.close();

  test('an admin applies YAML and JSON, reads back with versions, and deletes', async (t) => {
    t.after(done);
    const applied = await call(s, 'POST', '/v1/resources', { body: SERVICE_YAML });
    assert.equal(applied.status, 200, JSON.stringify(applied.body));
    assert.deepEqual(applied.body.results.map((r: { action: string }) => r.action), ['created', 'created']);
    assert.deepEqual(applied.body.warnings, ['Route shop/web: spec.rules[0].backends[0].service names Service shop/web-v2, which does not exist (yet)']);
    assert.equal(applied.headers['content-type'], 'application/json');
    assert.equal(applied.headers['cache-control'], 'no-store');
    assert.match(String(applied.headers['x-request-id']), /^[0-9a-f-]{36}$/);

    const json = await call(s, 'POST', '/v1/resources', { body: POLICY_JSON, type: 'application/json; charset=utf-8' });
    assert.equal(json.status, 200, JSON.stringify(json.body));
    assert.equal(json.body.results[0].action, 'created');
    assert.deepEqual(json.body.warnings, []);

    const again = await call(s, 'POST', '/v1/resources', { body: SERVICE_YAML, type: 'text/yaml' });
    assert.deepEqual(again.body.results.map((r: { action: string }) => r.action), ['unchanged', 'unchanged']);

    const list = await call(s, 'GET', '/v1/resources/Service');
    assert.equal(list.status, 200);
    assert.equal(list.body.items.length, 1);
    assert.equal(list.body.items[0].metadata.version, applied.body.results[0].version);
    assert.deepEqual((await call(s, 'GET', '/v1/resources/Service/blog')).body, { items: [] });
    const one = await call(s, 'GET', '/v1/resources/Route/shop/web');
    assert.equal(one.body.kind, 'Route');
    assert.equal(one.body.metadata.version, applied.body.results[1].version);
    assertError(await call(s, 'GET', '/v1/resources/Route/shop/nope'), 404, 'AMIME_ERR_CP_NOT_FOUND', 'not_found');

    const deleted = await call(s, 'DELETE', '/v1/resources/Route/shop/web');
    assert.equal(deleted.status, 200);
    assert.equal(deleted.body.action, 'deleted');
    assertError(await call(s, 'DELETE', '/v1/resources/Route/shop/web'), 404, 'AMIME_ERR_CP_NOT_FOUND');
    assertError(await call(s, 'DELETE', '/v1/resources/Endpoint/shop/web'), 400, 'AMIME_ERR_CP_BAD_REQUEST', 'derived_kind');
    assert.deepEqual(s.requests.slice(0, 3), [
      ['POST /v1/resources', '200'],
      ['POST /v1/resources', '200'],
      ['POST /v1/resources', '200'],
    ]);
    assert.ok(s.requests.some(([r, c]) => r === 'DELETE /v1/resources/:kind/:namespace/:name' && c === '404'));
  });

  test('dry runs change nothing', async (t) => {
    t.after(done);
    const dry = await call(s, 'POST', '/v1/resources?dryRun=true', { body: SERVICE_YAML });
    assert.equal(dry.status, 200);
    assert.equal(dry.body.dryRun, true);
    assert.deepEqual(dry.body.results.map((r: { action: string; version: string }) => [r.action, r.version]), [
      ['created', ''],
      ['created', ''],
    ]);
    assert.equal(await s.store.revision(), 0);
    await call(s, 'POST', '/v1/resources?dryRun=false', { body: SERVICE_YAML });
    const rev = await s.store.revision();
    const dryDelete = await call(s, 'DELETE', '/v1/resources/Service/shop/web?dryRun=true');
    assert.equal(dryDelete.status, 200);
    assert.equal(dryDelete.body.dryRun, true);
    assert.equal(await s.store.revision(), rev);
    assertError(await call(s, 'POST', '/v1/resources?dryRun=yes', { body: SERVICE_YAML }), 400, 'AMIME_ERR_CP_BAD_REQUEST', 'bad_query');
    assertError(await call(s, 'POST', '/v1/resources?dryRun=true&dryRun=false', { body: SERVICE_YAML }), 400, 'AMIME_ERR_CP_BAD_REQUEST', 'bad_query');
    assertError(await call(s, 'POST', '/v1/resources?force=true', { body: SERVICE_YAML }), 400, 'AMIME_ERR_CP_BAD_REQUEST', 'bad_query');
    assertError(await call(s, 'GET', '/v1/resources/Service?dryRun=true'), 400, 'AMIME_ERR_CP_BAD_REQUEST', 'bad_query');
  });

  test('invalid resources: 400 naming every problem with its document and field; nothing stored', async (t) => {
    t.after(done);
    const bad = SERVICE_YAML.replace('port: 8080', 'port: 0').replace('weight: 100', 'weight: 0');
    const r = await call(s, 'POST', '/v1/resources', { body: bad });
    assertError(r, 400, 'AMIME_ERR_CP_BAD_REQUEST', 'invalid_resource');
    assert.match(r.body.error.message, /2 problems/);
    assert.match(r.body.error.message, /document 0: spec\.ports\[0\]\.port must be an integer from 1 to 65535/);
    assert.match(r.body.error.message, /document 1: spec\.rules\[0\]\.backends must have weights that sum to more than 0 \(fix: /);
    assert.deepEqual(r.body.error.issues.map((i: { document: number; path: string }) => [i.document, i.path]), [
      [0, 'spec.ports[0].port'],
      [1, 'spec.rules[0].backends'],
    ]);
    assertError(await call(s, 'POST', '/v1/resources', { body: 'a: [' }), 400, 'AMIME_ERR_CP_BAD_REQUEST', 'invalid_resource');
    assertError(await call(s, 'POST', '/v1/resources', { body: '{', type: 'application/json' }), 400, 'AMIME_ERR_CP_BAD_REQUEST', 'invalid_resource');
    assertError(await call(s, 'POST', '/v1/resources', { body: '' }), 400, 'AMIME_ERR_CP_BAD_REQUEST', 'empty');
    assertError(await call(s, 'POST', '/v1/resources', { body: '---\n---\n' }), 400, 'AMIME_ERR_CP_BAD_REQUEST', 'empty');
    assertError(await call(s, 'POST', '/v1/resources', { body: Buffer.from([0x61, 0x3a, 0x20, 0xff]) }), 400, 'AMIME_ERR_CP_BAD_REQUEST', 'bad_encoding');
    const alias = `a: &x [1]\nb: *x\n`;
    assertError(await call(s, 'POST', '/v1/resources', { body: alias }), 400, 'AMIME_ERR_CP_BAD_REQUEST', 'invalid_resource');
    assert.equal(await s.store.revision(), 0);
  });

  test('only admins of our trust domain: agent 403, no certificate 401, foreign trust domains refused', async (t) => {
    t.after(done);
    assertError(await call(s, 'GET', '/v1/status', { as: certs.agent }), 403, 'AMIME_ERR_CP_FORBIDDEN', 'not_admin');
    assertError(await call(s, 'GET', '/v1/status', { as: certs.bareAdmin }), 403, 'AMIME_ERR_CP_FORBIDDEN', 'not_admin');
    assertError(await call(s, 'GET', '/v1/status', { as: null }), 401, 'AMIME_ERR_CP_UNAUTHENTICATED', 'peer_no_peer_certificate');
    // signed by our CA but naming another trust domain
    assertError(await call(s, 'GET', '/v1/status', { as: certs.crossDomain }), 401, 'AMIME_ERR_CP_UNAUTHENTICATED', 'peer_trust_domain_mismatch');
    // another trust domain's CA altogether
    assertError(await call(s, 'GET', '/v1/status', { as: certs.foreign, chain: [foreignPki.intermediate] }), 401, 'AMIME_ERR_CP_UNAUTHENTICATED', /^peer_/);
    // unknown routes too are behind authentication: nothing is learnt without an SVID
    assertError(await call(s, 'GET', '/v1/nope', { as: null }), 401, 'AMIME_ERR_CP_UNAUTHENTICATED');
    const refused = await call(s, 'POST', '/v1/resources', { as: certs.agent, body: SERVICE_YAML });
    assert.equal(refused.status, 403);
    assert.equal(await s.store.revision(), 0);
    assert.ok(s.logged.some((e) => e['event'] === 'admin_refused' && e['caller'] === `spiffe://${TD}/agent/vm-a`));
  });

  test('unknown paths 404, wrong methods 405 with allow, odd segments 400 before the store is read', async (t) => {
    t.after(done);
    assertError(await call(s, 'GET', '/v1/nope'), 404, 'AMIME_ERR_CP_NOT_FOUND', 'no_route');
    assertError(await call(s, 'GET', '/'), 404, 'AMIME_ERR_CP_NOT_FOUND');
    assertError(await call(s, 'GET', '/v1/resources/Service/shop/web/extra'), 404, 'AMIME_ERR_CP_NOT_FOUND');
    assertError(await call(s, 'GET', '/v1/agents/'), 404, 'AMIME_ERR_CP_NOT_FOUND');
    assertError(await call(s, 'GET', '/v2/status'), 404, 'AMIME_ERR_CP_NOT_FOUND');

    const put = await call(s, 'PUT', '/v1/resources', { body: SERVICE_YAML });
    assertError(put, 405, 'AMIME_ERR_CP_METHOD_NOT_ALLOWED');
    assert.equal(put.headers['allow'], 'POST');
    assert.equal(put.headers['connection'], 'close', 'an unread body closes the connection');
    assert.equal((await call(s, 'GET', '/v1/resources')).headers['allow'], 'POST');
    assert.equal((await call(s, 'DELETE', '/v1/resources/Route')).headers['allow'], 'GET');
    assert.equal((await call(s, 'POST', '/v1/agents')).headers['allow'], 'GET');
    assert.equal((await call(s, 'PATCH', '/v1/resources/Route/shop/web')).headers['allow'], 'GET, DELETE');

    // no URL normalization: dot segments and encoded slashes stay what they are, and are refused
    for (const [path, reason] of [
      ['/v1/resources/../agents', 'bad_kind'],
      ['/v1/resources/Service/%2e%2e/web', 'bad_namespace'],
      ['/v1/resources/Service/shop/web%2Fx', 'bad_name'],
      ['/v1/resources/Service/shop/..', 'bad_name'],
      ['/v1/resources/Service//web', 'bad_namespace'],
      ['/v1/resources/Service/Shop', 'bad_namespace'],
      ['/v1/resources/Service/shop/' + 'a'.repeat(64), 'bad_name'],
      ['/v1/resources/Gateway', 'bad_kind'],
      ['/v1/resources/service', 'bad_kind'],
      ['/v1/resources/%53ervice', 'bad_kind'],
      ['/v1/resources/', 'bad_kind'],
      ['/v1/resources/Service/shop/' + 'a'.repeat(2000), 'url_too_long'],
    ] as const) {
      assertError(await call(s, 'GET', path), 400, 'AMIME_ERR_CP_BAD_REQUEST', reason);
    }
    assertError(await call(s, 'DELETE', '/v1/resources/Service/shop/%2e%2e'), 400, 'AMIME_ERR_CP_BAD_REQUEST', 'bad_name');
    assert.ok(s.requests.every(([route]) => route === 'unknown' || /^[A-Z]+ \/v1\/[a-z:/]+$/.test(route)), 'route labels are patterns, never raw paths');
  });

  test('the request target must be a path', async (t) => {
    t.after(done);
    // an absolute-form target, written on a raw TLS socket (https.request would not send it)
    const socket = tls.connect({ host: '127.0.0.1', port: Number(s.url.port), cert: toPemChain([certs.admin, pki.intermediate]), key: certs.admin.key.privateKeyPem, rejectUnauthorized: false });
    await new Promise<void>((r) => socket.once('secureConnect', () => r()));
    socket.write(`GET https://example.com/v1/status HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n`);
    const chunks: Buffer[] = [];
    for await (const c of socket) chunks.push(c as Buffer);
    const text = Buffer.concat(chunks).toString('utf8');
    assert.match(text, /^HTTP\/1\.1 400 /);
    assert.match(text, /"reason":"bad_path"/);
  });

  test('bodies: only YAML or JSON media types, at most 1 MiB (413, connection closed)', async (t) => {
    t.after(done);
    for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'application/json; charset=latin1', 'multipart/form-data; boundary=x']) {
      const r = await call(s, 'POST', '/v1/resources', { body: SERVICE_YAML, type });
      assertError(r, 415, 'AMIME_ERR_CP_UNSUPPORTED_MEDIA_TYPE', 'content_type');
    }
    assertError(await call(s, 'POST', '/v1/resources', { body: SERVICE_YAML, headers: { 'content-type': '' } }), 415, 'AMIME_ERR_CP_UNSUPPORTED_MEDIA_TYPE');

    const big = Buffer.alloc(1024 * 1024 + 1, 0x20);
    const declared = await call(s, 'POST', '/v1/resources', { body: big });
    assertError(declared, 413, 'AMIME_ERR_CP_TOO_LARGE', 'body_too_large');
    assert.equal(declared.headers['connection'], 'close');

    // chunked, so the size is known only while reading
    const streamed = await new Promise<Reply>((resolve, reject) => {
      const req = https.request({
        host: '127.0.0.1',
        port: s.url.port,
        method: 'POST',
        path: '/v1/resources',
        agent: false,
        rejectUnauthorized: false,
        cert: toPemChain([certs.admin, pki.intermediate]),
        key: certs.admin.key.privateKeyPem,
        headers: { 'content-type': 'application/yaml', 'transfer-encoding': 'chunked' },
      });
      req.on('error', reject);
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: JSON.parse(Buffer.concat(chunks).toString()) }));
      });
      const piece = Buffer.alloc(64 * 1024, 0x20);
      let sent = 0;
      const pump = () => {
        while (sent < 32) {
          sent++;
          if (!req.write(piece)) return void req.once('drain', pump);
        }
        req.end();
      };
      pump();
    });
    assertError(streamed, 413, 'AMIME_ERR_CP_TOO_LARGE', 'body_too_large');
    assert.equal(streamed.headers['connection'], 'close');
    assert.equal(await s.store.revision(), 0);
  });

  test('agents and status come from the deps', async (t) => {
    t.after(done);
    assert.deepEqual((await call(s, 'GET', '/v1/agents')).body, { agents: AGENTS });
    assert.deepEqual((await call(s, 'GET', '/v1/status')).body, { trustDomain: TD, agents: 1 });
  });
});

describe('admin API failures', () => {
  test('a body that does not arrive in time: 408 and the connection closed', async (t) => {
    const s = await serve({ bodyTimeoutMs: 150 });
    t.after(() => s.close());
    const reply = await new Promise<Reply>((resolve, reject) => {
      const req = https.request({
        host: '127.0.0.1',
        port: s.url.port,
        method: 'POST',
        path: '/v1/resources',
        agent: false,
        rejectUnauthorized: false,
        cert: toPemChain([certs.admin, pki.intermediate]),
        key: certs.admin.key.privateKeyPem,
        headers: { 'content-type': 'application/yaml', 'content-length': '1000' },
      });
      req.on('error', reject);
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: JSON.parse(Buffer.concat(chunks).toString()) }));
      });
      req.write('apiVersion: amime.dev/v1\n'); // and then nothing more
    });
    assertError(reply, 408, 'AMIME_ERR_CP_TIMEOUT', 'body_timeout');
    assert.equal(reply.headers['connection'], 'close');
  });

  test('an internal failure is a 500 with the request ID, logged, without details', async (t) => {
    const s = await serve({
      status: () => {
        throw new Error('secret detail');
      },
    });
    t.after(() => s.close());
    const r = await call(s, 'GET', '/v1/status');
    assertError(r, 500, 'AMIME_ERR_CP_INTERNAL', 'internal');
    assert.ok(r.body.error.message.includes(String(r.headers['x-request-id'])));
    assert.doesNotMatch(r.body.error.message, /secret/);
    assert.ok(s.logged.some((e) => e['event'] === 'admin_internal_error' && String(e['error']).includes('secret detail')));
    assert.deepEqual(s.requests, [['GET /v1/status', '500']]);
  });

  test('revoked admin certificates are refused', async (t) => {
    const revoked = await pki.leaf('/admin/former');
    const bundle = bundleFromPem(pki.root.pem, TD);
    const s = await serve({ trust: () => ({ bundle, revocations: createRevocationSet({ serials: [revoked.serialHex], version: 1 }) }) });
    t.after(() => s.close());
    assertError(await call(s, 'GET', '/v1/status', { as: revoked }), 401, 'AMIME_ERR_CP_UNAUTHENTICATED', 'peer_revoked');
    assert.equal((await call(s, 'GET', '/v1/status')).status, 200);
  });
});
