import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { EndpointResource, Resource, ServiceResource } from '@amime/protocol';
import { MeshState } from './mesh-state.js';
import { MeshRuntime } from './mesh-runtime.js';

const TD = 'example.org';
const svc = (name: string, trafficPolicy?: ServiceResource['spec']['trafficPolicy']): ServiceResource => ({
  apiVersion: 'amime.dev/v1',
  kind: 'Service',
  metadata: { name, namespace: 'shop' },
  spec: { identity: `spiffe://${TD}/ns/shop/sa/${name}`, ports: [{ name: 'http', port: 8080, protocol: 'http' }], ...(trafficPolicy && { trafficPolicy }) },
});
const ep = (service: string, node: string, labels?: Record<string, string>, health: 'healthy' | 'unhealthy' = 'healthy'): EndpointResource => ({
  apiVersion: 'amime.dev/v1',
  kind: 'Endpoint',
  metadata: { name: `${service}-${node}`, namespace: 'shop', ...(labels && { labels }) },
  spec: { service, node, address: '10.0.0.1', port: 15443, identity: `spiffe://${TD}/ns/shop/sa/${service}`, weight: 100, health },
});
const state = (resources: Partial<Record<string, Resource[]>>) => new MeshState({ versions: { Service: 'e-1' }, resources });

describe('MeshState', () => {
  test('indexes endpoints and routes by service; defaults the mesh config; resolves Host names', () => {
    const s = state({ Service: [svc('catalog'), svc('web')], Endpoint: [ep('catalog', 'vm2'), ep('catalog', 'vm1'), ep('web', 'vm1')] });
    assert.deepEqual(s.endpoints.get('shop/catalog')?.map((e) => e.spec.node), ['vm1', 'vm2']);
    assert.equal(s.mesh.loadBalancing, 'p2c-ewma');
    assert.equal(s.protocolOf('shop', 'catalog'), 'http');
    assert.equal(s.protocolOf('shop', 'nope'), 'tcp');
    for (const host of ['catalog', 'catalog:8080', 'catalog.shop', 'catalog.shop.svc', 'catalog.shop.svc.cluster.local', 'CATALOG.shop']) {
      assert.deepEqual(s.resolveHost(host, 'shop'), { namespace: 'shop', name: 'catalog' }, host);
    }
    for (const host of ['catalog.other', 'catalog.shop.com', 'nope', '', undefined]) assert.equal(s.resolveHost(host, 'shop'), undefined, String(host));
  });
});

describe('MeshRuntime', () => {
  test('deny by default until a policy allows; the authorizer follows updates', () => {
    const rt = new MeshRuntime(state({ Service: [svc('catalog')] }), { trustDomain: TD });
    const web = `spiffe://${TD}/ns/shop/sa/web`;
    assert.equal(rt.authorizer.decide({ service: 'catalog', namespace: 'shop' }, { source: web, method: 'GET', path: '/' }).allowed, false);
    rt.update(
      state({
        Service: [svc('catalog')],
        AuthorizationPolicy: [{ apiVersion: 'amime.dev/v1', kind: 'AuthorizationPolicy', metadata: { name: 'p', namespace: 'shop' }, spec: { action: 'ALLOW', target: 'catalog', rules: [{ from: [{ identity: web }] }] } }],
      }),
    );
    assert.equal(rt.authorizer.decide({ service: 'catalog', namespace: 'shop' }, { source: web, method: 'GET', path: '/' }).allowed, true);
  });

  test('balancers keep endpoint state across pushes, follow membership and health, and rebuild on a new algorithm', () => {
    const rt = new MeshRuntime(state({ Service: [svc('catalog')], Endpoint: [ep('catalog', 'vm1'), ep('catalog', 'vm2')] }), { trustDomain: TD });
    const b = rt.balancer('shop', 'catalog')!;
    assert.equal(b.size, 2);
    const picked = b.pick()!;
    b.start(picked);
    rt.update(state({ Service: [svc('catalog')], Endpoint: [ep('catalog', 'vm1'), ep('catalog', 'vm2'), ep('catalog', 'vm3', undefined, 'unhealthy')] }));
    const same = rt.balancer('shop', 'catalog')!;
    assert.equal(same, b, 'the same balancer object');
    assert.equal(same.size, 3);
    assert.equal(same.available, 2, 'the unhealthy endpoint is not available');
    assert.equal(same.snapshot().find((s) => s.key === picked.key)?.inFlight, 1, 'in-flight state survived the push');
    rt.update(state({ Service: [svc('catalog', { loadBalancing: { algorithm: 'round-robin' } })], Endpoint: [ep('catalog', 'vm1')] }));
    const rebuilt = rt.balancer('shop', 'catalog')!;
    assert.notEqual(rebuilt, b);
    assert.equal(rebuilt.algorithm, 'round-robin');
    assert.equal(rebuilt.size, 1);
  });

  test('subsets select endpoints by label; an unknown subset has no balancer', () => {
    const tp = { subsets: [{ name: 'v1', labels: { version: 'v1' } }, { name: 'v2', labels: { version: 'v2' } }] };
    const rt = new MeshRuntime(state({ Service: [svc('reviews', tp)], Endpoint: [ep('reviews', 'a', { version: 'v1' }), ep('reviews', 'b', { version: 'v2' }), ep('reviews', 'c', { version: 'v2' })] }), { trustDomain: TD });
    assert.equal(rt.balancer('shop', 'reviews', 'v1')?.size, 1);
    assert.equal(rt.balancer('shop', 'reviews', 'v2')?.size, 2);
    assert.equal(rt.balancer('shop', 'reviews')?.size, 3);
    assert.equal(rt.balancer('shop', 'reviews', 'v3'), undefined);
  });

  test('routes compile per service; no Route means the default rule to the service itself', () => {
    const rt = new MeshRuntime(
      state({
        Service: [svc('reviews')],
        Route: [{ apiVersion: 'amime.dev/v1', kind: 'Route', metadata: { name: 'split', namespace: 'shop' }, spec: { service: 'reviews', rules: [{ match: { path: { prefix: '/v2' } }, backends: [{ service: 'reviews', subset: 'v2', weight: 100 }] }] } }],
      }),
      { trustDomain: TD },
    );
    assert.equal(rt.routes('shop', 'reviews').match('GET', '/v2/x', {})?.backends[0]?.subset, 'v2');
    assert.equal(rt.routes('shop', 'reviews').match('GET', '/other', {}), undefined);
    assert.equal(rt.routes('shop', 'web').match('GET', '/', {})?.backends[0]?.service.name, 'web');
  });
});
