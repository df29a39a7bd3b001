// MeshRuntime reports outlier ejections by service (for amime_agent_outlier_ejections_total).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { EndpointResource, Resource, ServiceResource } from '@amime/protocol';
import { MeshState } from './mesh-state.js';
import { MeshRuntime } from './mesh-runtime.js';

const TD = 'example.org';
const svc = (name: string): ServiceResource => ({
  apiVersion: 'amime.dev/v1',
  kind: 'Service',
  metadata: { name, namespace: 'shop' },
  spec: { identity: `spiffe://${TD}/ns/shop/sa/${name}`, ports: [{ name: 'http', port: 8080, protocol: 'http' }] },
});
const ep = (service: string, node: string): EndpointResource => ({
  apiVersion: 'amime.dev/v1',
  kind: 'Endpoint',
  metadata: { name: `${service}-${node}`, namespace: 'shop' },
  spec: { service, node, address: '10.0.0.1', port: 15443, identity: `spiffe://${TD}/ns/shop/sa/${service}`, weight: 100, health: 'healthy' },
});
const state = (resources: Partial<Record<string, Resource[]>>) => new MeshState({ versions: { Service: 'e-1' }, resources });

test('a new balancer reports its service with count 0 (the series exists); an ejection once with 1, also to a listener set later', () => {
  const s = state({ Service: [svc('catalog')], Endpoint: [ep('catalog', 'vm1'), ep('catalog', 'vm2'), ep('catalog', 'vm3'), ep('catalog', 'vm4')] });
  const first: string[] = [];
  const rt = new MeshRuntime(s, { trustDomain: TD, onEject: (service, n) => first.push(`${service} ${n}`) });
  const b = rt.balancer('shop', 'catalog')!;
  assert.deepEqual(first, ['shop/catalog 0']);
  first.length = 0;
  const failures = s.outlier().consecutiveFailures;
  const failOut = (key: string) => {
    const e = b.snapshot().find((x) => x.key === key)!;
    // P2C picks at random: keep picking until this endpoint comes up (bounded)
    let handle = b.pick()!;
    for (let i = 0; i < 10_000 && handle.key !== e.key; i++) handle = b.pick()!;
    assert.equal(handle.key, e.key, `${key} never picked`);
    for (let i = 0; i < failures; i++) {
      b.start(handle);
      b.finish(handle, false, 1);
    }
  };
  failOut('catalog-vm1');
  assert.deepEqual(first, ['shop/catalog 1']);

  const later: string[] = [];
  rt.onEjection((service, n) => later.push(`${service} ${n}`));
  failOut('catalog-vm2');
  assert.deepEqual(first, ['shop/catalog 1'], 'the first listener was replaced');
  assert.deepEqual(later, ['shop/catalog 1']);
});
