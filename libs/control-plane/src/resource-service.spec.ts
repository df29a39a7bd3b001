// ResourceService against a real EmbeddedStore in a temp dir: what apply
// reports is what the store holds, dry runs and refused input write nothing,
// deletes leave the last-delete record the push cache resumes from.
import { after, afterEach, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseResources, type ConfigResource, type EndpointResource, type Resource } from '@amime/protocol';
import { EmbeddedStore } from '@amime/store';
import { ControlPlaneError } from './errors.js';
import { ResourceService, lastDeleteKey } from './resource-service.js';

const root = mkdtempSync(join(tmpdir(), 'amime-resource-service-'));
after(() => rmSync(root, { recursive: true, force: true }));

const SERVICE = `apiVersion: amime.dev/v1
kind: Service
metadata: { name: web, namespace: shop, labels: { tier: front, team: a } }
spec:
  identity: spiffe://amime.test/ns/shop/sa/web
  ports: [{ name: http, port: 8080, protocol: http }]
`;
const ROUTE = `apiVersion: amime.dev/v1
kind: Route
metadata: { name: web, namespace: shop }
spec:
  service: web
  rules:
    - backends: [{ service: web, weight: 90 }, { service: web-canary, weight: 10 }]
`;
const POLICY = `apiVersion: amime.dev/v1
kind: AuthorizationPolicy
metadata: { name: allow-front, namespace: shop }
spec:
  action: ALLOW
  target: db
  rules: [{ from: [{ namespace: shop }] }]
`;
const yaml = (...docs: string[]): ConfigResource[] => parseResources(docs.join('---\n'), 'yaml');

function endpoint(name = 'web-0123456789', address = '10.0.0.1'): EndpointResource {
  return {
    apiVersion: 'amime.dev/v1',
    kind: 'Endpoint',
    metadata: { name, namespace: 'shop' },
    spec: { service: 'web', node: 'vm-a', address, port: 8080, identity: 'spiffe://amime.test/ns/shop/sa/web', weight: 100, health: 'healthy' },
  };
}

function refused(code: string, reason?: string, message?: RegExp) {
  return (err: unknown) => {
    assert.ok(err instanceof ControlPlaneError, `a ControlPlaneError, got ${String(err)}`);
    assert.equal(err.code, code);
    if (reason) assert.equal(err.reason, reason);
    if (message) assert.match(err.message, message);
    return true;
  };
}

describe('ResourceService', () => {
  let store: EmbeddedStore;
  let service: ResourceService;
  let logged: Record<string, unknown>[];
  let n = 0;

  beforeEach(async () => {
    store = await EmbeddedStore.open(join(root, `store-${n++}`));
    logged = [];
    service = new ResourceService(store, { log: (e) => logged.push(e) });
  });
  afterEach(() => store.close());

  test('apply creates, then configures, and leaves an equal resource alone without a write', async () => {
    const first = await service.apply(yaml(SERVICE));
    assert.deepEqual(first.results, [{ kind: 'Service', namespace: 'shop', name: 'web', key: '/resources/Service/shop/web', action: 'created', version: String(await store.revision()) }]);
    assert.equal(first.dryRun, false);

    // same content, labels in another order and a stale client version: unchanged, no write
    const before = await store.revision();
    const reordered = SERVICE.replace('labels: { tier: front, team: a }', 'labels: { team: a, tier: front }, version: "1"');
    const again = await service.apply(yaml(reordered));
    assert.equal(again.results[0]!.action, 'unchanged');
    assert.equal(again.results[0]!.version, first.results[0]!.version);
    assert.equal(await store.revision(), before);

    const changed = await service.apply(yaml(SERVICE.replace('8080', '8081')));
    assert.equal(changed.results[0]!.action, 'configured');
    assert.ok(Number(changed.results[0]!.version) > Number(first.results[0]!.version), 'versions increase');

    const stored = await store.get('/resources/Service/shop/web');
    assert.equal(stored!.revision, Number(changed.results[0]!.version));
    assert.equal((stored!.value['metadata'] as Record<string, unknown>)['version'], undefined, 'stored without metadata.version');
  });

  test('a dry run reports what would happen and stores nothing', async () => {
    const dry = await service.apply(yaml(SERVICE), { dryRun: true });
    assert.equal(dry.dryRun, true);
    assert.deepEqual(
      dry.results.map((r) => [r.action, r.version]),
      [['created', '']],
    );
    assert.equal(await store.revision(), 0);

    const real = await service.apply(yaml(SERVICE));
    const rev = await store.revision();
    const dryChange = await service.apply(yaml(SERVICE.replace('8080', '9090'), ROUTE), { dryRun: true });
    assert.deepEqual(
      dryChange.results.map((r) => [r.kind, r.action, r.version]),
      [
        ['Service', 'configured', real.results[0]!.version],
        ['Route', 'created', ''],
      ],
    );
    assert.equal(await store.revision(), rev);
    assert.equal(((await service.get('Service', 'shop', 'web')).spec as { ports: { port: number }[] }).ports[0]!.port, 8080);
  });

  test('invalid input changes nothing and names every problem with document and field', async () => {
    const bad = { ...yaml(ROUTE)[0]!, spec: { service: 'web', rules: [] } } as unknown as ConfigResource;
    const worse = { apiVersion: 'amime.dev/v1', kind: 'Service', metadata: { name: 'Bad_Name' }, spec: {} } as unknown as ConfigResource;
    await assert.rejects(
      service.apply([yaml(SERVICE)[0]!, bad, worse]),
      refused('AMIME_ERR_CP_BAD_REQUEST', 'invalid_resource', /document 1: spec\.rules must not be empty[\s\S]*document 2: metadata\.name must be a DNS-1123 label[\s\S]*document 2: spec\.identity is required/),
    );
    await assert.rejects(service.apply([yaml(SERVICE)[0]!, yaml(SERVICE)[0]!]), refused('AMIME_ERR_CP_BAD_REQUEST', 'invalid_resource', /document 1: metadata\.name repeats/));
    assert.equal(await store.revision(), 0);
  });

  test('derived kinds are refused for apply and delete', async () => {
    await assert.rejects(service.apply([endpoint() as unknown as ConfigResource]), refused('AMIME_ERR_CP_BAD_REQUEST', 'invalid_resource', /document 0: kind must be one of Service, Route/));
    await service.putDerived(endpoint());
    await assert.rejects(service.delete('Endpoint', 'shop', 'web-0123456789'), refused('AMIME_ERR_CP_BAD_REQUEST', 'derived_kind', /derived by the control plane/));
    await assert.rejects(service.delete('Gateway', 'shop', 'x'), refused('AMIME_ERR_CP_BAD_REQUEST', 'bad_kind'));
    assert.equal((await service.get('Endpoint')).length, 1);
  });

  test('warnings name references to Services that do not exist, without refusing', async () => {
    const out = await service.apply(yaml(ROUTE, POLICY));
    assert.deepEqual(out.results.map((r) => r.action), ['created', 'created']);
    assert.deepEqual(out.warnings, [
      'Route shop/web: spec.service names Service shop/web, which does not exist (yet)',
      'Route shop/web: spec.rules[0].backends[0].service names Service shop/web, which does not exist (yet)',
      'Route shop/web: spec.rules[0].backends[1].service names Service shop/web-canary, which does not exist (yet)',
      'AuthorizationPolicy shop/allow-front: spec.target names Service shop/db, which does not exist (yet)',
    ]);
    // a Service in the same batch counts, and so does a stored one
    const withService = await service.apply(yaml(SERVICE, ROUTE));
    assert.deepEqual(withService.warnings, ['Route shop/web: spec.rules[0].backends[1].service names Service shop/web-canary, which does not exist (yet)']);
    const stored = await service.apply(yaml(ROUTE.replace('weight: 90', 'weight: 80')));
    assert.equal(stored.warnings.length, 1);
  });

  test('get returns resources with metadata.version, by kind, namespace and name', async () => {
    await service.apply(yaml(SERVICE, SERVICE.replace(/shop/g, 'blog'), ROUTE));
    const web = await service.get('Service', 'shop', 'web');
    assert.equal(web.metadata.version, String((await store.get('/resources/Service/shop/web'))!.revision));
    assert.deepEqual(web.metadata.labels, { tier: 'front', team: 'a' });
    assert.deepEqual(
      (await service.get('Service')).map((r) => `${r.metadata.namespace}/${r.metadata.name}@${r.metadata.version}`),
      ['blog/web@2', 'shop/web@1'],
    );
    assert.deepEqual((await service.get('Service', 'blog')).length, 1);
    assert.deepEqual(await service.get('MeshConfig'), []);
    await assert.rejects(service.get('Service', 'shop', 'nope'), refused('AMIME_ERR_CP_NOT_FOUND', 'not_found', /Service shop\/nope does not exist/));
    await assert.rejects(service.get('Service', '..', 'web'), refused('AMIME_ERR_CP_BAD_REQUEST', 'bad_namespace'));
    await assert.rejects(service.get('service'), refused('AMIME_ERR_CP_BAD_REQUEST', 'bad_kind'));

    // what get returns applies again as unchanged (the version is dropped)
    const again = await service.apply([web as ConfigResource]);
    assert.equal(again.results[0]!.action, 'unchanged');
  });

  test('get skips and logs stored values that are not valid resources', async () => {
    await service.apply(yaml(SERVICE));
    await store.put('/resources/Service/shop/broken', { apiVersion: 'amime.dev/v1', kind: 'Service', metadata: { name: 'broken', namespace: 'shop' }, spec: { ports: 'no' } });
    await store.put('/resources/Service/shop/moved', { ...yaml(SERVICE)[0]! });
    const list = await service.get('Service', 'shop');
    assert.deepEqual(list.map((r) => r.metadata.name), ['web']);
    assert.deepEqual(logged.map((e) => [e['event'], e['key']]), [
      ['stored_resource_corrupt', '/resources/Service/shop/broken'],
      ['stored_resource_corrupt', '/resources/Service/shop/moved'],
    ]);
    await assert.rejects(service.get('Service', 'shop', 'broken'), refused('AMIME_ERR_CP_NOT_FOUND'));
  });

  test('delete records /meta/last-delete/<Kind> with the revision after the delete; 404 when missing', async () => {
    await service.apply(yaml(SERVICE, ROUTE));
    const version = (await service.get('Route', 'shop', 'web')).metadata.version;

    const dry = await service.delete('Route', 'shop', 'web', { dryRun: true });
    assert.deepEqual(dry, { kind: 'Route', namespace: 'shop', name: 'web', key: '/resources/Route/shop/web', action: 'deleted', version, warnings: [], dryRun: true });
    assert.equal(await store.get(lastDeleteKey('Route')), undefined, 'a dry run writes nothing');

    const out = await service.delete('Route', 'shop', 'web');
    assert.equal(out.version, version);
    assert.equal(out.dryRun, false);
    assert.equal(await store.get('/resources/Route/shop/web'), undefined);
    const record = await store.get(lastDeleteKey('Route'));
    assert.deepEqual(record!.value, { revision: record!.revision - 1 }, 'the revision right after the delete, no longer pending');

    await assert.rejects(service.delete('Route', 'shop', 'web'), refused('AMIME_ERR_CP_NOT_FOUND', 'not_found'));
    await assert.rejects(service.delete('Route', 'shop', 'web/../x'), refused('AMIME_ERR_CP_BAD_REQUEST', 'bad_name'));
  });

  test('deleting a Service warns about Routes and policies that still name it', async () => {
    await service.apply(yaml(SERVICE, ROUTE, POLICY.replace('target: db', 'target: web')));
    const out = await service.delete('Service', 'shop', 'web', { dryRun: true });
    assert.deepEqual(out.warnings, ['Route shop/web still names Service shop/web', 'AuthorizationPolicy shop/allow-front still targets Service shop/web']);
  });

  test('putDerived writes only changes and returns the version; deleteDerived records the delete', async () => {
    const rev = await service.putDerived(endpoint());
    assert.equal(rev, await store.revision());
    assert.equal(await service.putDerived({ ...endpoint(), metadata: { ...endpoint().metadata, version: '77' } }), rev, 'unchanged: no write');
    assert.equal(await store.revision(), rev);
    const next = await service.putDerived(endpoint('web-0123456789', '10.0.0.2'));
    assert.ok(next > rev);
    assert.equal(((await service.get('Endpoint', 'shop', 'web-0123456789')) as EndpointResource).spec.address, '10.0.0.2');

    await assert.rejects(service.putDerived(yaml(SERVICE)[0]! as Resource), refused('AMIME_ERR_CP_BAD_REQUEST', 'operator_kind'));
    await assert.rejects(service.putDerived({ ...endpoint(), spec: { ...endpoint().spec, port: 0 } }), refused('AMIME_ERR_CP_BAD_REQUEST', 'invalid_resource', /spec\.port/));
    await assert.rejects(service.deleteDerived('Route', 'shop', 'web'), refused('AMIME_ERR_CP_BAD_REQUEST', 'operator_kind'));

    assert.equal(await service.deleteDerived('Endpoint', 'shop', 'web-0123456789'), true);
    assert.equal(await service.deleteDerived('Endpoint', 'shop', 'web-0123456789'), false);
    const record = await store.get(lastDeleteKey('Endpoint'));
    assert.equal(record!.value['pending'], undefined);
    assert.ok((record!.value['revision'] as number) > next);
  });

  test('concurrent writes are serialized: each reports what it did', async () => {
    const outs = await Promise.all([service.apply(yaml(SERVICE)), service.apply(yaml(SERVICE)), service.apply(yaml(SERVICE.replace('8080', '1234')))]);
    assert.deepEqual(outs.map((o) => o.results[0]!.action), ['created', 'unchanged', 'configured']);
    assert.equal(await store.revision(), 2);
  });
});
