// meshctl apply, get, delete and agents, run in-process (cli.ts `run`)
// against the real admin API handler on 127.0.0.1 with test SVIDs: what
// people and scripts see, `get -o yaml | apply -f -` round trips, and the
// exit codes (0 ok, 1 refused, 2 unreachable, 64 usage).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { createAdminHandler, ResourceService, type AgentStatus } from '@amime/control-plane';
import { bundleFromPem } from '@amime/identity';
import { createTestPki, toPemChain, type TestPki } from '@amime/identity/testing';
import { EmbeddedStore } from '@amime/store';
import { run } from '../cli.js';

const TD = 'meshctl-cp.test';
const RESOURCES = `apiVersion: amime.dev/v1
kind: Service
metadata: { name: web, namespace: shop, labels: { tier: front } }
spec:
  identity: spiffe://${TD}/ns/shop/sa/web
  ports: [{ name: http, port: 8080, protocol: http }]
---
apiVersion: amime.dev/v1
kind: Route
metadata: { name: web, namespace: shop }
spec:
  service: web
  rules:
    - match: { path: { prefix: /api } }
      backends: [{ service: web, weight: 90 }, { service: web-canary, weight: 10 }]
      timeout: 2s
`;
const AGENTS: AgentStatus[] = [
  {
    node: 'vm-b',
    spiffeId: `spiffe://${TD}/agent/vm-b`,
    connectedAt: new Date(Date.now() - 120_000).toISOString(),
    address: '10.0.0.2',
    types: { Service: { acked: 'ab-4' }, Route: { acked: 'ab-4', inFlight: 'ab-6', nack: { version: 'ab-5', error: 'route web: unknown\nbackend', at: '2026-01-01T00:00:00.000Z' } } },
    instances: 3,
    svid: { spiffeId: `spiffe://${TD}/agent/vm-b`, serial: '0a1b', notBefore: new Date(Date.now() - 3_600_000).toISOString(), notAfter: new Date(Date.now() + 3 * 3_600_000 + 1_800_000).toISOString(), fingerprint: 'ab'.repeat(32) },
  },
];

let pki: TestPki;
let root: string;
let creds: string;
let url: string;
let store: EmbeddedStore;
let server: https.Server;

interface Out {
  code: number;
  stdout: string;
  stderr: string;
}

async function meshctl(args: string[], opts: { stdin?: string; env?: Record<string, string>; credentials?: string } = {}): Promise<Out> {
  let stdout = '';
  let stderr = '';
  const code = await run(['--credentials', opts.credentials ?? creds, ...args], {
    env: opts.env ?? {},
    cwd: root,
    stdout: { write: (s: string) => (stdout += s) },
    stderr: { write: (s: string) => (stderr += s) },
    stdin: Readable.from(opts.stdin === undefined ? [] : [Buffer.from(opts.stdin)]),
  });
  return { code, stdout, stderr };
}

async function ok(args: string[], opts: Parameters<typeof meshctl>[1] = {}): Promise<Out> {
  const r = await meshctl(args, opts);
  assert.equal(r.code, 0, `meshctl ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return r;
}

before(async () => {
  pki = await createTestPki(TD);
  root = mkdtempSync(join(tmpdir(), 'amime-meshctl-cp-'));
  const [serverCert, admin] = await Promise.all([pki.leaf('/control-plane/controller'), pki.leaf('/admin/operator', { notAfter: new Date(Date.now() + 5 * 86400_000) })]) // past the renewal warning;
  store = await EmbeddedStore.open(join(root, 'store'));
  const bundle = bundleFromPem(pki.root.pem, TD);
  server = https.createServer(
    { cert: toPemChain([serverCert, pki.intermediate]), key: serverCert.key.privateKeyPem, ca: pki.root.pem, minVersion: 'TLSv1.3', requestCert: true, rejectUnauthorized: false },
    createAdminHandler({ resources: new ResourceService(store), trust: () => ({ bundle }), trustDomain: TD, agents: () => AGENTS, status: () => ({}) }),
  );
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  creds = join(root, 'admin');
  mkdirSync(creds);
  writeFileSync(join(creds, 'cert.pem'), toPemChain([admin, pki.intermediate]));
  writeFileSync(join(creds, 'key.pem'), admin.key.privateKeyPem);
  writeFileSync(join(creds, 'bundle.pem'), pki.root.pem);
  writeFileSync(join(creds, 'control-plane-url'), `${url}\n`);
  writeFileSync(join(root, 'mesh.yaml'), RESOURCES);
});

after(async () => {
  await new Promise<void>((r) => {
    server.close(() => r());
    server.closeAllConnections();
  });
  await store.close();
  rmSync(root, { recursive: true, force: true });
});

describe('meshctl apply, get, delete, agents', { concurrency: 1 }, () => {
  test('apply --dry-run stores nothing; apply -f creates; again is unchanged; warnings go to stderr', async () => {
    const dry = await ok(['apply', '-f', 'mesh.yaml', '--dry-run']);
    assert.equal(dry.stdout, 'Service shop/web created (dry run)\nRoute shop/web created (dry run)\n');
    assert.equal(await store.revision(), 0);

    const applied = await ok(['apply', '-f', join(root, 'mesh.yaml')]);
    assert.match(applied.stdout, /^Service shop\/web created \(version 1\)\nRoute shop\/web created \(version 2\)\n$/);
    assert.equal(applied.stderr, 'warning: Route shop/web: spec.rules[0].backends[1].service names Service shop/web-canary, which does not exist (yet)\n');

    const again = await ok(['apply', '-f', 'mesh.yaml', '-o', 'json']);
    const out = JSON.parse(again.stdout);
    assert.deepEqual(out.results.map((r: { action: string }) => r.action), ['unchanged', 'unchanged']);
    assert.equal(out.warnings.length, 1);
  });

  test('get: a table per kind, JSON, and YAML that apply -f - takes back unchanged', async () => {
    const services = await ok(['get', 'services']);
    assert.match(services.stdout, /^NAMESPACE\s+NAME\s+VERSION\s+IDENTITY\s+PORTS$/m);
    assert.match(services.stdout, new RegExp(`^shop\\s+web\\s+1\\s+spiffe://${TD}/ns/shop/sa/web\\s+http:8080/http$`, 'm'));
    const routes = await ok(['get', 'Route', '-n', 'shop']);
    assert.match(routes.stdout, /^shop\s+web\s+2\s+web\s+1\s+web,web-canary$/m);
    assert.equal((await ok(['get', 'route', '-n', 'blog'])).stdout, 'no Route resources in namespace blog\n');

    const json = JSON.parse((await ok(['get', 'svc', 'web', '-n', 'shop', '-o', 'json'])).stdout);
    assert.equal(json.kind, 'Service');
    assert.equal(json.metadata.version, '1');
    assert.deepEqual(json.metadata.labels, { tier: 'front' });
    assert.equal(JSON.parse((await ok(['get', 'Service', '-o', 'json'])).stdout).length, 1);

    const yaml = (await ok(['get', 'Service', '-o', 'yaml'])).stdout + '---\n' + (await ok(['get', 'routes', 'web', '-n', 'shop', '-o', 'yaml'])).stdout;
    assert.match(yaml, /^apiVersion: amime.dev\/v1$/m);
    assert.match(yaml, /^ {2}version: "1"$/m);
    const back = await ok(['apply', '-f', '-'], { stdin: yaml });
    assert.equal(back.stdout, 'Service shop/web unchanged (version 1)\nRoute shop/web unchanged (version 2)\n');
    const fromJson = await ok(['apply', '-f', '-'], { stdin: JSON.stringify(json) });
    assert.equal(fromJson.stdout, 'Service shop/web unchanged (version 1)\n');
  });

  test('refusals exit 1 with the code and what to do; usage errors exit 64 before any request', async () => {
    const missing = await meshctl(['get', 'Route', 'nope', '-n', 'shop']);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /the control plane refused: AMIME_ERR_CP_NOT_FOUND \(not_found, HTTP 404\): Route shop\/nope does not exist/);
    assert.match(missing.stderr, /next: see what exists/);

    const invalid = await meshctl(['apply', '-f', '-'], { stdin: RESOURCES.replace('port: 8080', 'port: 0').replace('timeout: 2s', 'timeout: 2 seconds') });
    assert.equal(invalid.code, 1);
    assert.match(invalid.stderr, /invalid resources: 2 problems:/);
    assert.match(invalid.stderr, /document 0: spec\.ports\[0\]\.port must be an integer from 1 to 65535/);
    assert.match(invalid.stderr, /document 1: spec\.rules\[0\]\.timeout must be a duration/);
    assert.match(invalid.stderr, /next: fix the fields named above/);
    assert.equal(await store.revision(), 2);

    for (const [args, message] of [
      [['get', 'Gateway'], /unknown kind "Gateway"/],
      [['get'], /expected KIND \[NAME\]/],
      [['apply'], /-f FILE is required/],
      [['apply', '-f', 'nope.yaml'], /-f nope\.yaml: no such file/],
      [['delete', 'Endpoint', 'web-1', '-n', 'shop'], /Endpoint resources are derived by the control plane/],
      [['get', 'Service', '-n', 'Shop'], /-n\/--namespace "Shop" is not a namespace name/],
      [['apply', '-f', '-'], /standard input is empty/],
    ] as const) {
      const r = await meshctl([...args]);
      assert.equal(r.code, 64, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, message);
    }
  });

  test('delete: --dry-run keeps it, then it is gone; a deleted Service warns about its Route', async () => {
    const dry = await ok(['delete', 'route', 'web', '-n', 'shop', '--dry-run']);
    assert.equal(dry.stdout, 'Route shop/web deleted (dry run)\n');
    await ok(['get', 'Route', 'web', '-n', 'shop']);
    const svc = await ok(['delete', 'Service', 'web', '-n', 'shop', '-o', 'json']);
    assert.equal(JSON.parse(svc.stdout).action, 'deleted');
    assert.match(svc.stderr, /warning: Route shop\/web still names Service shop\/web/);
    assert.equal((await ok(['delete', 'Route', 'web', '-n', 'shop'])).stdout, 'Route shop/web deleted\n');
    assert.equal((await meshctl(['delete', 'Route', 'web', '-n', 'shop'])).code, 1);
    assert.equal((await ok(['get', 'routes'])).stdout, 'no Route resources\n');
  });

  test('agents: since when, acked versions per type, NACKs with their error', async () => {
    const r = await ok(['agents']);
    assert.match(r.stdout, /^NODE\s+ADDRESS\s+CONNECTED\s+INSTANCES\s+NACKS\s+SVID LEFT$/m);
    assert.match(r.stdout, /^vm-b\s+10\.0\.0\.2\s+\S+ \(2m ago\)\s+3\s+1\s+3h(29m|30m)$/m);
    assert.match(r.stdout, /^vm-b\s+Route\s+ab-4\s+ab-6\s+ab-5 at 2026-01-01T00:00:00.000Z$/m);
    assert.match(r.stdout, /^vm-b\s+Service\s+ab-4\s+-\s+-$/m);
    assert.match(r.stdout, /^ {2}vm-b Route ab-5: route web: unknown backend$/m);
    assert.deepEqual(JSON.parse((await ok(['agents', '-o', 'json'])).stdout), AGENTS);
  });

  test('the URL comes from --control-plane, AMIME_CONTROL_PLANE_URL or <credentials>/control-plane-url', async () => {
    const bare = join(root, 'bare');
    mkdirSync(bare, { recursive: true });
    for (const f of ['cert.pem', 'key.pem', 'bundle.pem']) writeFileSync(join(bare, f), readFileSync(join(creds, f)));
    const none = await meshctl(['agents'], { credentials: bare });
    assert.equal(none.code, 64);
    assert.match(none.stderr, /no control plane URL/);
    await ok(['--control-plane', url, 'agents'], { credentials: bare });
    await ok(['agents'], { credentials: bare, env: { AMIME_CONTROL_PLANE_URL: url } });
    const bad = await meshctl(['--control-plane', 'http://127.0.0.1:1', 'agents'], { credentials: bare });
    assert.equal(bad.code, 64);

    const free = net.createServer();
    await new Promise<void>((r) => free.listen(0, '127.0.0.1', r));
    const port = (free.address() as AddressInfo).port;
    await new Promise<void>((r) => free.close(() => r()));
    const down = await meshctl(['--control-plane', `https://127.0.0.1:${port}`, 'agents'], { credentials: bare });
    assert.equal(down.code, 2);
    assert.match(down.stderr, /cannot reach the control plane/);
    assert.match(down.stderr, /next: check that the control plane is running/);
  });
});
