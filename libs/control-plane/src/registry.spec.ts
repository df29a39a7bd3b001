import { afterEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import type { EndpointResource, Instance, Resource, ServiceResource } from '@amime/protocol';
import { Registry, type RegistryDeps } from './registry.js';

const TD = 'reg.test';
const WEB = `spiffe://${TD}/ns/shop/sa/web`;
const DB = `spiffe://${TD}/ns/shop/sa/db`;

const inst = (over: Partial<Instance> = {}): Instance => ({ service: 'web', namespace: 'shop', identity: WEB, address: '10.0.0.1', port: 8080, health: 'healthy', ...over });

class Fake implements RegistryDeps {
  readonly assigned = new Map<string, Set<string>>([['vm1', new Set([WEB])]]);
  readonly services = new Map<string, ServiceResource>();
  readonly stored = new Map<string, EndpointResource>();
  readonly writes: string[] = [];
  loaded: Resource[] = [];
  async isAssigned(node: string, id: string) {
    return this.assigned.get(node)?.has(id) ?? false;
  }
  service(ns: string, name: string) {
    return this.services.get(`${ns}/${name}`);
  }
  endpoints() {
    return this.loaded;
  }
  async putEndpoint(e: EndpointResource) {
    this.writes.push(`put ${e.metadata.name} ${e.spec.health}${e.spec.reason ? ` ${e.spec.reason}` : ''}`);
    this.stored.set(`${e.metadata.namespace}/${e.metadata.name}`, e);
  }
  async deleteEndpoint(ns: string, name: string) {
    this.writes.push(`delete ${name}`);
    this.stored.delete(`${ns}/${name}`);
  }
}

let reg: Registry | undefined;
afterEach(() => reg?.close());

describe('Registry', () => {
  test('an assigned instance becomes a healthy Endpoint; the same set again writes nothing', async () => {
    const f = new Fake();
    reg = new Registry(f);
    reg.connected('vm1');
    assert.equal(await reg.register('vm1', [inst({ zone: 'z1', labels: { version: 'v2' } })]), undefined);
    assert.equal(f.stored.size, 1);
    const e = [...f.stored.values()][0]!;
    assert.match(e.metadata.name, /^web-[0-9a-f]{10}$/);
    assert.deepEqual(e.metadata.labels, { version: 'v2' });
    assert.deepEqual(
      { ...e.spec },
      { service: 'web', node: 'vm1', address: '10.0.0.1', port: 8080, identity: WEB, zone: 'z1', weight: 100, health: 'healthy' },
    );
    const writes = f.writes.length;
    await reg.register('vm1', [inst({ zone: 'z1', labels: { version: 'v2' } })]);
    assert.equal(f.writes.length, writes);
  });

  test('an unassigned identity refuses the whole registration and changes nothing', async () => {
    const f = new Fake();
    reg = new Registry(f);
    await reg.register('vm1', [inst()]);
    const before = [...f.writes];
    const refusal = await reg.register('vm1', [inst({ port: 9090 }), inst({ service: 'db', identity: DB, port: 5432 })]);
    assert.match(refusal ?? '', /instances\[1\].*spiffe:\/\/reg\.test\/ns\/shop\/sa\/db is not assigned to node vm1.*meshctl assign vm1/);
    assert.deepEqual(f.writes, before);
  });

  test('an identity other than the Service says is refused; duplicates are refused', async () => {
    const f = new Fake();
    f.services.set('shop/web', { apiVersion: 'amime.dev/v1', kind: 'Service', metadata: { name: 'web', namespace: 'shop' }, spec: { identity: DB, ports: [{ name: 'http', port: 80, protocol: 'http' }] } });
    f.assigned.get('vm1')!.add(DB);
    reg = new Registry(f);
    assert.match((await reg.register('vm1', [inst()])) ?? '', /Service shop\/web runs as .*sa\/db, not .*sa\/web/);
    assert.match((await reg.register('vm1', [inst({ identity: DB }), inst({ identity: DB })])) ?? '', /instances\[1\].*repeats the service, address and port of instances\[0\]/);
    assert.equal(f.writes.length, 0);
  });

  test('workloads of one node share the agent inbound address and port: one instance per service there', async () => {
    const f = new Fake();
    f.assigned.get('vm1')!.add(DB);
    reg = new Registry(f);
    assert.equal(await reg.register('vm1', [inst({ port: 15443 }), inst({ service: 'db', identity: DB, port: 15443 })]), undefined);
    assert.deepEqual([...f.stored.values()].map((e) => `${e.spec.service}@${e.spec.address}:${e.spec.port}`).sort(), ['db@10.0.0.1:15443', 'web@10.0.0.1:15443']);
  });

  test('a smaller set removes the missing Endpoints; a failed check is unhealthy with its reason', async () => {
    const f = new Fake();
    reg = new Registry(f);
    await reg.register('vm1', [inst(), inst({ port: 8081 })]);
    assert.equal(f.stored.size, 2);
    await reg.register('vm1', [inst({ health: 'unhealthy' })]);
    assert.equal(f.stored.size, 1);
    const e = [...f.stored.values()][0]!;
    assert.equal(e.spec.health, 'unhealthy');
    assert.equal(e.spec.reason, 'check_failed');
  });

  test('a lapsed heartbeat marks the node unhealthy; the next heartbeat restores it', async () => {
    const f = new Fake();
    reg = new Registry(f, { heartbeatTtlMs: 100, tickMs: 20, graceMs: 60_000 });
    reg.connected('vm1');
    await reg.register('vm1', [inst()]);
    await sleep(250);
    await reg.settle();
    assert.equal([...f.stored.values()][0]!.spec.reason, 'heartbeat_lapsed');
    reg.heartbeat('vm1');
    await reg.settle();
    const e = [...f.stored.values()][0]!;
    assert.equal(e.spec.health, 'healthy');
    assert.equal(e.spec.reason, undefined);
  });

  test('a node gone for the grace period loses its Endpoints, also ones loaded from the store', async () => {
    const f = new Fake();
    f.loaded = [
      { apiVersion: 'amime.dev/v1', kind: 'Endpoint', metadata: { name: 'old-0123456789', namespace: 'shop', version: '7' }, spec: { service: 'old', node: 'vm9', address: '10.0.0.9', port: 1, identity: WEB, weight: 100, health: 'healthy' } },
    ];
    reg = new Registry(f, { heartbeatTtlMs: 10_000, tickMs: 20, graceMs: 150 });
    reg.connected('vm1');
    await reg.register('vm1', [inst()]);
    reg.disconnected('vm1');
    await sleep(100);
    assert.equal(f.writes.filter((w) => w.startsWith('delete')).length, 0, 'still within grace');
    await sleep(200);
    await reg.settle();
    assert.deepEqual(f.writes.filter((w) => w.startsWith('delete')).sort(), ['delete old-0123456789', `delete ${[...f.writes][0]!.split(' ')[1]}`].sort());
  });

  test('a node that reconnects within the grace period keeps its Endpoints', async () => {
    const f = new Fake();
    reg = new Registry(f, { tickMs: 20, graceMs: 150 });
    reg.connected('vm1');
    await reg.register('vm1', [inst()]);
    reg.disconnected('vm1');
    await sleep(60);
    reg.connected('vm1');
    await sleep(200);
    await reg.settle();
    assert.equal(f.stored.size, 1);
  });
});
