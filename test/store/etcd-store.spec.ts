// The store conformance suite against a real etcd, each test in its own key
// namespace, plus what only the etcd backend has: namespace isolation.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Etcd3 } from 'etcd3';
import { EtcdStore } from '@amime/store';
import { runStoreConformance } from '@amime/store/testing';
import { startEtcd, stopEtcd, type EtcdProcess } from './fixtures/etcd-process.js';

let etcd: EtcdProcess | undefined;
let client: Etcd3;
let n = 0;

before(async () => {
  etcd = await startEtcd();
  client = new Etcd3({ hosts: etcd.clientUrl });
});

after(async () => {
  client?.close();
  await stopEtcd(etcd);
});

runStoreConformance('etcd', async () => new EtcdStore({ client, namespace: `amime-test-${n++}` }));

test('etcd: namespaces keep stores apart', async () => {
  const a = new EtcdStore({ hosts: etcd!.clientUrl, namespace: 'tenant-a' });
  const b = new EtcdStore({ client, namespace: 'tenant-b' });
  const seenByB: string[] = [];
  const stopB = await b.watch('', undefined, (e) => seenByB.push(e.key));
  try {
    await a.put('/resources/Route/ns/x', { owner: 'a' });
    await b.put('/mine', { owner: 'b' });
    assert.equal(await b.get('/resources/Route/ns/x'), undefined);
    assert.deepEqual((await b.list('')).map((e) => e.key), ['/mine']);
    assert.deepEqual((await a.list('/resources/')).map((e) => e.key), ['/resources/Route/ns/x']);
    const raw = await client.get('tenant-a/resources/Route/ns/x').json();
    assert.deepEqual(raw, { owner: 'a' }, 'stored under the namespace as plain JSON');
    const deadline = Date.now() + 5_000;
    while (seenByB.length < 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(seenByB, ['/mine'], "watching '' sees the whole namespace and only it");
  } finally {
    stopB();
    await a.close();
    await b.close();
  }
});
