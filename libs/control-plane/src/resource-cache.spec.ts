import { afterEach, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EmbeddedStore } from '@amime/store';
import type { Resource } from '@amime/protocol';
import { LAST_DELETE_PREFIX, ResourceCache } from './resource-cache.js';

const route = (name: string, service = name) => ({
  apiVersion: 'amime.dev/v1',
  kind: 'Route',
  metadata: { name, namespace: 'default' },
  spec: { service, rules: [{ backends: [{ service, weight: 100 }] }] },
});
const key = (name: string) => `/resources/Route/default/${name}`;

let dir: string;
let store: EmbeddedStore;
let cache: ResourceCache | undefined;

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'amime-cache-'));
  store = await EmbeddedStore.open(dir);
});
afterEach(async () => {
  cache?.close();
  cache = undefined;
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Resolves once the cache has seen a change. */
const changed = (c: ResourceCache) => new Promise<ReadonlySet<string>>((resolve) => {
  const off = c.onChange((types) => {
    off();
    resolve(types);
  });
});

describe('ResourceCache', () => {
  test('loads what is stored, with versions from store revisions under one epoch', async () => {
    const r1 = await store.put(key('a'), route('a'));
    cache = await ResourceCache.open(store);
    assert.match(cache.epoch, /^[a-z0-9]{12}$/);
    assert.equal(cache.version('Route'), `${cache.epoch}-${r1}`);
    assert.equal(cache.version('Service'), `${cache.epoch}-0`);
    const snap = cache.snapshot('Route');
    assert.equal(snap.resources.length, 1);
    assert.equal(snap.resources[0]!.metadata.version, String(r1));
  });

  test('the epoch survives a reopen', async () => {
    cache = await ResourceCache.open(store);
    const epoch = cache.epoch;
    cache.close();
    await store.close();
    store = await EmbeddedStore.open(dir);
    cache = await ResourceCache.open(store);
    assert.equal(cache.epoch, epoch);
  });

  test('live puts and deletes notify, bump the version and appear in deltas', async () => {
    await store.put(key('a'), route('a'));
    cache = await ResourceCache.open(store);
    const v0 = cache.version('Route');
    let seen = changed(cache);
    await store.put(key('b'), route('b'));
    assert.deepEqual([...(await seen)], ['Route']);
    seen = changed(cache);
    await store.delete(key('a'));
    await seen;
    const d = cache.delta('Route', v0)!;
    assert.deepEqual(d.upserts.map((r: Resource) => r.metadata.name), ['b']);
    assert.deepEqual(d.removals, [key('a')]);
    assert.equal(d.version, cache.version('Route'));
    assert.deepEqual(cache.delta('Route', cache.version('Route')), { version: cache.version('Route'), upserts: [], removals: [] });
  });

  test('versions it cannot resume from give undefined (snapshot)', async () => {
    await store.put(key('a'), route('a'));
    cache = await ResourceCache.open(store);
    const rev = cache.revision('Route');
    assert.equal(cache.delta('Route', `otherepoch-${rev}`), undefined, 'another epoch');
    assert.equal(cache.delta('Route', `${cache.epoch}-${rev + 5}`), undefined, 'ahead of us');
    assert.equal(cache.delta('Route', 'garbage'), undefined);
    assert.equal(cache.delta('Route', `${cache.epoch}-1e3`), undefined);
  });

  test('after a restart, a delete recorded in /meta/last-delete forces a snapshot for older versions only', async () => {
    await store.put(key('a'), route('a'));
    const old = await store.put(key('b'), route('b'));
    await store.put(`${LAST_DELETE_PREFIX}Route`, { revision: 0, pending: true });
    await store.delete(key('a'));
    const after = await store.revision();
    await store.put(`${LAST_DELETE_PREFIX}Route`, { revision: after });
    cache = await ResourceCache.open(store);
    assert.equal(cache.delta('Route', `${cache.epoch}-${old}`), undefined, 'the agent may still hold a');
    assert.ok(cache.delta('Route', cache.version('Route')), 'an agent that saw the delete resumes');
    assert.equal(cache.revision('Route') >= after, true, 'a delete is a change of the type');
  });

  test('a pending last-delete record (crash mid-delete) forces snapshots for every older version', async () => {
    const r = await store.put(key('a'), route('a'));
    await store.put(`${LAST_DELETE_PREFIX}Route`, { revision: 0, pending: true });
    cache = await ResourceCache.open(store);
    assert.equal(cache.delta('Route', `${cache.epoch}-${r}`), undefined);
  });

  test('invalid values in the store are skipped, not pushed', async () => {
    await store.put(key('bad'), { apiVersion: 'amime.dev/v1', kind: 'Route', metadata: { name: 'bad' }, spec: { rules: 'nope' } });
    await store.put(key('mismatch'), route('other'));
    await store.put(key('good'), route('good'));
    const logged: unknown[] = [];
    cache = await ResourceCache.open(store, { log: (e) => logged.push(e) });
    assert.deepEqual(cache.list('Route').map((r) => r.metadata.name), ['good']);
    assert.equal(logged.length, 2);
  });
});
