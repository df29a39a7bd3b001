// ReplicaDirectory over the embedded store (its watchers see a write before
// the write resolves, so no test waits on time): replicas see each other's
// agents, dead and malformed entries are left out, one agent per node.
import { after, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EmbeddedStore, type Store } from '@amime/store';
import { REPLICAS_PREFIX, ReplicaDirectory, type ReplicaDirectoryOptions } from './replica-directory.js';
import type { TargetGroup } from './metrics-server.js';

const root = mkdtempSync(join(tmpdir(), 'amime-replicas-'));
let store: EmbeddedStore;
let clock: number;
const now = () => clock;
const open: ReplicaDirectory[] = [];

after(async () => {
  for (const d of open.splice(0)) await d.stop();
  rmSync(root, { recursive: true, force: true });
});

beforeEach(async () => {
  for (const d of open.splice(0)) await d.stop();
  store = await EmbeddedStore.open(mkdtempSync(join(root, 's-')));
  clock = Date.parse('2026-01-01T00:00:00Z');
});

type Agents = Map<string, string | undefined>;

async function replica(id: string, agents: Agents, extra: Partial<ReplicaDirectoryOptions> = {}): Promise<ReplicaDirectory> {
  const d = new ReplicaDirectory({ store, id, metrics: `${id}.cp:9464`, agents: () => [...agents].map(([node, metrics]) => ({ node, metrics })), now, ...extra });
  open.push(d);
  await d.start();
  return d;
}

const agentsOf = (groups: TargetGroup[]) => groups.filter((g) => g.labels['amime_component'] === 'agent').map((g) => `${g.labels['amime_node']}=${g.targets[0]}`);
const replicasOf = (groups: TargetGroup[]) => groups.filter((g) => g.labels['amime_component'] === 'control-plane').map((g) => g.labels['amime_replica']);

describe('ReplicaDirectory', () => {
  test('two replicas on one store list each other and each other\'s agents', async () => {
    const onA: Agents = new Map([['vm1', '10.1.0.1:15000']]);
    const onB: Agents = new Map([['vm2', '10.1.0.2:15000'], ['vm3', undefined]]);
    const a = await replica('aaaa0001', onA, { ca: '10.0.0.9:9465' });
    const b = await replica('bbbb0002', onB);
    const expected = ['vm1=10.1.0.1:15000', 'vm2=10.1.0.2:15000'];
    assert.deepEqual(agentsOf(a.targets()), expected);
    assert.deepEqual(agentsOf(b.targets()), expected);
    assert.deepEqual(replicasOf(a.targets()), ['aaaa0001', 'bbbb0002']);
    assert.deepEqual(replicasOf(b.targets()), ['aaaa0001', 'bbbb0002']);
    assert.deepEqual(a.targets().at(-1), { targets: ['10.0.0.9:9465'], labels: { amime_component: 'ca' } });
    assert.equal(b.targets().some((g) => g.labels['amime_component'] === 'ca'), false, 'B was given no CA');
    const entry = await store.get(`${REPLICAS_PREFIX}bbbb0002`);
    assert.deepEqual(a.targets().find((g) => g.labels['amime_replica'] === 'bbbb0002'), { targets: ['bbbb0002.cp:9464'], labels: { amime_component: 'control-plane', amime_replica: 'bbbb0002' } });
    assert.deepEqual(entry?.value, { metrics: 'bbbb0002.cp:9464', agents: [{ node: 'vm2', metrics: '10.1.0.2:15000' }], updatedAt: new Date(clock).toISOString() });

    // A change on B reaches A once B publishes it.
    onB.set('vm4', '10.1.0.4:15000');
    onB.delete('vm2');
    b.changed();
    await b.flush();
    assert.deepEqual(agentsOf(a.targets()), ['vm1=10.1.0.1:15000', 'vm4=10.1.0.4:15000']);
  });

  test('changes are written at most once per debounce interval, and only when the agents differ', async () => {
    const puts: string[] = [];
    const put = store.put.bind(store);
    store.put = (key, value, o) => (puts.push(key), put(key, value, o));
    const onA: Agents = new Map();
    const a = await replica('aaaa0001', onA, { debounceMs: 60_000 });
    assert.equal(puts.length, 1, 'the entry at start');
    for (let i = 0; i < 50; i++) {
      onA.set(`vm${i}`, `10.1.0.${i}:15000`);
      a.changed();
    }
    await a.flush();
    assert.equal(puts.length, 2, 'fifty changes, one write');
    a.changed();
    await a.flush();
    assert.equal(puts.length, 2, 'nothing changed, nothing written');
    onA.set('vm-no-metrics', undefined);
    a.changed();
    await a.flush();
    assert.equal(puts.length, 2, 'an agent without a metrics address changes nothing published');
  });

  test('a replica not seen to change for 60 s is left out with its agents, and back once it refreshes', async () => {
    await replica('aaaa0001', new Map([['vm1', '10.1.0.1:15000']]));
    const b = await replica('bbbb0002', new Map([['vm2', '10.1.0.2:15000']]));
    clock += 60_000;
    assert.deepEqual(replicasOf(b.targets()), ['aaaa0001', 'bbbb0002'], 'at 60 s still fresh');
    clock += 1;
    assert.deepEqual(agentsOf(b.targets()), ['vm2=10.1.0.2:15000']);
    assert.deepEqual(replicasOf(b.targets()), ['bbbb0002'], 'B always lists itself');
    await store.put(`${REPLICAS_PREFIX}aaaa0001`, { metrics: '10.0.0.1:9464', agents: [{ node: 'vm1', metrics: '10.1.0.1:15000' }], updatedAt: new Date(clock).toISOString() });
    assert.deepEqual(agentsOf(b.targets()), ['vm1=10.1.0.1:15000', 'vm2=10.1.0.2:15000']);
  });

  test('an entry already in the store at start is aged by its updatedAt', async () => {
    await store.put(`${REPLICAS_PREFIX}dead0001`, { metrics: '10.0.0.7:9464', agents: [{ node: 'vm7', metrics: '10.1.0.7:15000' }], updatedAt: new Date(clock - 61_000).toISOString() });
    await store.put(`${REPLICAS_PREFIX}live0001`, { metrics: '10.0.0.8:9464', agents: [{ node: 'vm8', metrics: '10.1.0.8:15000' }], updatedAt: new Date(clock - 5_000).toISOString() });
    // A clock ahead of ours does not make an entry fresh for longer.
    await store.put(`${REPLICAS_PREFIX}ahead001`, { metrics: '10.0.0.6:9464', agents: [], updatedAt: new Date(clock + 3_600_000).toISOString() });
    const b = await replica('bbbb0002', new Map());
    assert.deepEqual(agentsOf(b.targets()), ['vm8=10.1.0.8:15000']);
    assert.deepEqual(replicasOf(b.targets()), ['ahead001', 'bbbb0002', 'live0001']);
    clock += 60_001;
    assert.deepEqual(replicasOf(b.targets()), ['bbbb0002']);
  });

  test('one agent per node: a local session first, then the newest entry', async () => {
    const b = await replica('bbbb0002', new Map([['vm9', '10.9.9.9:15000']]));
    await store.put(`${REPLICAS_PREFIX}aaaa0001`, { metrics: '10.0.0.1:9464', agents: [{ node: 'vm1', metrics: '10.1.0.1:1' }, { node: 'vm9', metrics: '10.1.0.9:1' }], updatedAt: new Date(clock).toISOString() });
    await store.put(`${REPLICAS_PREFIX}cccc0003`, { metrics: '10.0.0.3:9464', agents: [{ node: 'vm1', metrics: '10.1.0.1:3' }], updatedAt: new Date(clock).toISOString() });
    assert.deepEqual(agentsOf(b.targets()), ['vm1=10.1.0.1:3', 'vm9=10.9.9.9:15000']);
    await store.put(`${REPLICAS_PREFIX}aaaa0001`, { metrics: '10.0.0.1:9464', agents: [{ node: 'vm1', metrics: '10.1.0.1:1' }], updatedAt: new Date(clock).toISOString() });
    assert.deepEqual(agentsOf(b.targets()), ['vm1=10.1.0.1:1', 'vm9=10.9.9.9:15000'], 'A wrote last');
  });

  test('stop() deletes the entry, and the others drop the replica', async () => {
    const a = await replica('aaaa0001', new Map([['vm1', '10.1.0.1:15000']]));
    const b = await replica('bbbb0002', new Map());
    await a.stop();
    assert.equal(await store.get(`${REPLICAS_PREFIX}aaaa0001`), undefined);
    assert.deepEqual(agentsOf(b.targets()), []);
    assert.deepEqual(replicasOf(b.targets()), ['bbbb0002']);
    assert.equal(a.ready, false);
    a.changed();
    await a.flush();
    assert.equal(await store.get(`${REPLICAS_PREFIX}aaaa0001`), undefined, 'nothing written after stop');
  });

  test('malformed entries are refused and logged; a valid entry turned malformed is dropped', async () => {
    const logged: Record<string, unknown>[] = [];
    const b = await replica('bbbb0002', new Map(), { maxAgents: 2, log: (e) => logged.push(e) });
    const at = new Date(clock).toISOString();
    const good = { metrics: '10.0.0.1:9464', agents: [{ node: 'vm1', metrics: '10.1.0.1:15000' }], updatedAt: at };
    const bad: [string, object][] = [
      ['not-array', { metrics: '10.0.0.2:9464', agents: { vm2: '10.1.0.2:1' }, updatedAt: at }],
      ['extra-field', { ...good, agents: [], owner: 'x' }],
      ['bad-node', { ...good, agents: [{ node: 'VM_2', metrics: '10.1.0.2:1' }] }],
      ['bad-target', { ...good, agents: [{ node: 'vm2', metrics: 'http://10.1.0.2/metrics' }] }],
      ['bad-port', { ...good, metrics: '10.0.0.2:0' }],
      ['bad-time', { ...good, updatedAt: 'yesterday' }],
      ['too-many', { ...good, agents: ['a', 'b', 'c'].map((n) => ({ node: n, metrics: '10.1.0.3:1' })) }],
      ['Upper/Case', good],
    ];
    for (const [id, value] of bad) await store.put(`${REPLICAS_PREFIX}${id}`, value);
    assert.deepEqual(replicasOf(b.targets()), ['bbbb0002']);
    assert.deepEqual(agentsOf(b.targets()), []);
    assert.equal(logged.filter((e) => e['event'] === 'sd_replica_refused').length, bad.length);

    await store.put(`${REPLICAS_PREFIX}aaaa0001`, good);
    assert.deepEqual(agentsOf(b.targets()), ['vm1=10.1.0.1:15000']);
    await store.put(`${REPLICAS_PREFIX}aaaa0001`, { ...good, agents: 'vm1' });
    assert.deepEqual(agentsOf(b.targets()), []);
    assert.deepEqual(replicasOf(b.targets()), ['bbbb0002']);
  });

  test('the published entry is bounded: past maxAgents the rest stay local, logged once', async () => {
    const logged: Record<string, unknown>[] = [];
    const onA: Agents = new Map(['vm1', 'vm2', 'vm3'].map((n, i) => [n, `10.1.0.${i}:15000`]));
    const a = await replica('aaaa0001', onA, { maxAgents: 2, log: (e) => logged.push(e) });
    const entry = await store.get<{ agents: unknown[] }>(`${REPLICAS_PREFIX}aaaa0001`);
    assert.equal(entry?.value.agents.length, 2);
    assert.equal(agentsOf(a.targets()).length, 3, 'its own view still lists all three');
    assert.deepEqual(logged.map((e) => e['event']), ['sd_agents_truncated']);
  });

  test('without the store it serves its own view and logs why', async () => {
    const unreachable = () => Promise.reject(new Error('etcd unreachable'));
    const broken = { revision: async () => 7, list: unreachable, watch: unreachable, put: unreachable, delete: unreachable } as unknown as Store;
    const logged: Record<string, unknown>[] = [];
    const d = new ReplicaDirectory({ store: broken, id: 'aaaa0001', metrics: '10.0.0.1:9464', agents: () => [{ node: 'vm1', metrics: '10.1.0.1:1' }], now, log: (e) => logged.push(e) });
    open.push(d);
    await d.start();
    assert.equal(d.ready, false);
    assert.deepEqual(logged.map((e) => e['event']), ['sd_directory_unavailable']);
    assert.deepEqual(agentsOf(d.targets()), ['vm1=10.1.0.1:1']);
    assert.deepEqual(replicasOf(d.targets()), ['aaaa0001']);
  });

  test('options are checked when constructed', () => {
    const base = { store, metrics: '10.0.0.1:9464', agents: () => [] };
    assert.throws(() => new ReplicaDirectory({ ...base, id: 'A/B' }), /replica id must be/);
    assert.throws(() => new ReplicaDirectory({ ...base, staleMs: 0 }), /staleMs must be a positive integer/);
    assert.match(new ReplicaDirectory(base).id, /^[0-9a-f]{8}$/);
  });
});
