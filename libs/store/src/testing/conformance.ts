// The behaviour every Store backend must show, as node:test tests. A backend's
// spec calls `runStoreConformance('embedded', factory)`; `factory` returns a
// fresh, empty store for each test (a new directory, a new etcd namespace).
// Revisions are compared relative to each other, never to absolute numbers:
// an etcd namespace shares its revision counter with the whole cluster.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MAX_KEY_BYTES, MAX_VALUE_BYTES, StoreError, type Store, type StoreErrorCode, type WatchEvent } from '../store.js';

export type StoreFactory = () => Promise<Store>;

async function withStore(factory: StoreFactory, fn: (s: Store) => Promise<void>): Promise<void> {
  const store = await factory();
  try {
    await fn(store);
  } finally {
    await store.close();
  }
}

function isStoreError(code: StoreErrorCode, mentions?: RegExp) {
  return (err: unknown): true => {
    assert.ok(err instanceof StoreError, `expected a StoreError, got ${err}`);
    assert.equal(err.code, code, err.message);
    if (mentions) assert.match(err.message, mentions);
    return true;
  };
}

/** Collects watch events; `until(n)` waits for n of them. */
function collector(): { events: WatchEvent[]; listener: (e: WatchEvent) => void; until: (n: number) => Promise<WatchEvent[]> } {
  const events: WatchEvent[] = [];
  return {
    events,
    listener: (e) => void events.push(e),
    async until(n) {
      const deadline = Date.now() + 5_000;
      while (events.length < n) {
        if (Date.now() > deadline) assert.fail(`waited for ${n} watch events, got ${events.length}: ${JSON.stringify(events)}`);
        await new Promise((r) => setTimeout(r, 5));
      }
      return events;
    },
  };
}

const brief = (events: WatchEvent[]) => events.map((e) => ({ type: e.type, key: e.key, revision: e.revision, ...(e.value ? { value: e.value } : {}) }));

export function runStoreConformance(name: string, factory: StoreFactory): void {
  const t = (title: string, fn: (s: Store) => Promise<void>) => test(`${name}: ${title}`, () => withStore(factory, fn));

  t('put, get, list and delete', async (s) => {
    assert.equal(await s.get('/resources/Route/ns/a'), undefined);
    const r1 = await s.put('/resources/Route/ns/a', { port: 80, hosts: ['a.example'] });
    const got = await s.get('/resources/Route/ns/a');
    assert.deepEqual(got, { key: '/resources/Route/ns/a', value: { port: 80, hosts: ['a.example'] }, revision: r1 });
    assert.equal(await s.delete('/resources/Route/ns/a'), true);
    assert.equal(await s.get('/resources/Route/ns/a'), undefined);
    assert.equal(await s.delete('/resources/Route/ns/a'), false, 'deleting a missing key reports false');
  });

  t('list is sorted by key and limited to the prefix', async (s) => {
    for (const k of ['/r/b/2', '/r/a/1', '/r/b/1', '/rr/x', '/r/a/10', '/q/z']) await s.put(k, { k });
    const listed = await s.list('/r/');
    assert.deepEqual(
      listed.map((e) => e.key),
      ['/r/a/1', '/r/a/10', '/r/b/1', '/r/b/2'],
    );
    assert.deepEqual(listed[0]!.value, { k: '/r/a/1' });
    assert.deepEqual((await s.list('/r/b/')).map((e) => e.key), ['/r/b/1', '/r/b/2']);
    assert.deepEqual(await s.list('/none/'), []);
    assert.equal((await s.list('')).length, 6);
  });

  t('revisions increase with every write, globally', async (s) => {
    const start = await s.revision();
    const r1 = await s.put('/a', { v: 1 });
    const r2 = await s.put('/b', { v: 1 });
    const r3 = await s.put('/a', { v: 2 });
    assert.ok(start < r1 && r1 < r2 && r2 < r3, `${start} < ${r1} < ${r2} < ${r3}`);
    assert.equal((await s.get('/a'))!.revision, r3);
    assert.equal((await s.get('/b'))!.revision, r2);
    assert.equal(await s.revision(), r3);
    await s.delete('/b');
    assert.ok((await s.revision()) > r3, 'a delete is a write');
  });

  t('compare-and-swap: matching revision succeeds, stale one conflicts', async (s) => {
    const r1 = await s.put('/cas', { v: 1 });
    const r2 = await s.put('/cas', { v: 2 }, { expectRevision: r1 });
    assert.ok(r2 > r1);
    await assert.rejects(s.put('/cas', { v: 3 }, { expectRevision: r1 }), isStoreError('AMIME_ERR_STORE_CONFLICT', /\/cas/));
    assert.deepEqual(await s.get('/cas'), { key: '/cas', value: { v: 2 }, revision: r2 }, 'a conflict changes nothing');
    await assert.rejects(s.delete('/cas', { expectRevision: r1 }), isStoreError('AMIME_ERR_STORE_CONFLICT'));
    assert.ok(await s.get('/cas'));
    assert.equal(await s.delete('/cas', { expectRevision: r2 }), true);
    assert.equal(await s.get('/cas'), undefined);
    await assert.rejects(s.put('/cas', { v: 4 }, { expectRevision: r2 }), isStoreError('AMIME_ERR_STORE_CONFLICT'), 'a deleted key is at no revision');
  });

  t('compare-and-swap: expectRevision 0 creates only', async (s) => {
    const r1 = await s.put('/once', { v: 1 }, { expectRevision: 0 });
    await assert.rejects(s.put('/once', { v: 2 }, { expectRevision: 0 }), isStoreError('AMIME_ERR_STORE_CONFLICT', /not exist/));
    assert.deepEqual(await s.get('/once'), { key: '/once', value: { v: 1 }, revision: r1 });
  });

  const badKeys: [string, unknown, RegExp][] = [
    ['empty', '', /start with '\/'/],
    ['relative', 'resources/x', /start with '\/'/],
    ['double slash', '/resources//x', /'\/\/'/],
    ['space', '/resources/a b', /printable ASCII/],
    ['non-ASCII', '/resources/é', /printable ASCII/],
    ['control character', '/resources/a\n', /printable ASCII/],
    ['too long', '/' + 'k'.repeat(MAX_KEY_BYTES), /limit is 512/],
    ['not a string', 42, /must be a string/],
  ];
  t('bad keys are refused, naming the cause, and nothing is stored', async (s) => {
    const before = await s.revision();
    await s.put('/' + 'k'.repeat(MAX_KEY_BYTES - 1), { ok: true });
    const after = await s.revision();
    for (const [what, key, cause] of badKeys) {
      await assert.rejects(s.put(key as string, { v: 1 }), isStoreError('AMIME_ERR_STORE_BAD_KEY', cause), what);
      await assert.rejects(s.get(key as string), isStoreError('AMIME_ERR_STORE_BAD_KEY'), what);
      await assert.rejects(s.delete(key as string), isStoreError('AMIME_ERR_STORE_BAD_KEY'), what);
    }
    assert.ok(after > before);
    assert.equal(await s.revision(), after, 'no refused write took a revision');
    assert.equal((await s.list('')).length, 1);
  });

  const cyclic: Record<string, unknown> = { a: 1 };
  cyclic.self = cyclic;
  const badValues: [string, unknown, StoreErrorCode, RegExp][] = [
    ['array', [1, 2], 'AMIME_ERR_STORE_BAD_VALUE', /JSON object/],
    ['null', null, 'AMIME_ERR_STORE_BAD_VALUE', /JSON object/],
    ['string', 'x', 'AMIME_ERR_STORE_BAD_VALUE', /JSON object/],
    ['NaN inside', { n: Number.NaN }, 'AMIME_ERR_STORE_BAD_VALUE', /\$\.n is NaN/],
    ['undefined inside', { a: [undefined] }, 'AMIME_ERR_STORE_BAD_VALUE', /\$\.a\[0\] is undefined/],
    ['Date inside', { d: new Date(0) }, 'AMIME_ERR_STORE_BAD_VALUE', /Date/],
    ['cycle', cyclic, 'AMIME_ERR_STORE_BAD_VALUE', /cycle/],
    ['over 1 MiB', { s: 'x'.repeat(MAX_VALUE_BYTES) }, 'AMIME_ERR_STORE_TOO_LARGE', /limit is 1048576/],
  ];
  t('bad and oversized values are refused, naming the cause, and nothing is stored', async (s) => {
    const before = await s.revision();
    for (const [what, value, code, cause] of badValues) {
      await assert.rejects(s.put('/v', value as object), isStoreError(code, cause), what);
    }
    assert.equal(await s.get('/v'), undefined);
    assert.equal(await s.revision(), before);
    // Exactly at the limit is allowed.
    const big = { s: 'x'.repeat(MAX_VALUE_BYTES - '{"s":""}'.length) };
    await s.put('/v', big);
    assert.equal(((await s.get<{ s: string }>('/v'))!.value.s).length, big.s.length);
  });

  t('watch delivers puts and deletes under the prefix in revision order', async (s) => {
    const c = collector();
    const stop = await s.watch('/w/', undefined, c.listener);
    const r1 = await s.put('/w/a', { v: 1 });
    await s.put('/other', { v: 1 });
    const r2 = await s.put('/w/b', { v: 2 });
    await s.delete('/w/a');
    const r3 = await s.revision();
    const r4 = await s.put('/w/a', { v: 3 });
    await c.until(4);
    assert.deepEqual(brief(c.events), [
      { type: 'put', key: '/w/a', value: { v: 1 }, revision: r1 },
      { type: 'put', key: '/w/b', value: { v: 2 }, revision: r2 },
      { type: 'delete', key: '/w/a', revision: r3 },
      { type: 'put', key: '/w/a', value: { v: 3 }, revision: r4 },
    ]);
    stop();
    await new Promise((r) => setTimeout(r, 50));
    await s.put('/w/c', { v: 4 });
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(c.events.length, 4, 'no events after unsubscribing');
  });

  t('watch from a revision replays what followed it, then continues live', async (s) => {
    const r1 = await s.put('/h/a', { v: 1 });
    const r2 = await s.put('/h/b', { v: 2 });
    await s.put('/x', { v: 0 });
    const r3 = await s.put('/h/a', { v: 3 });
    const c = collector();
    const stop = await s.watch('/h/', r1, c.listener);
    const r4 = await s.put('/h/c', { v: 4 });
    await c.until(3);
    stop();
    assert.deepEqual(
      brief(c.events).map((e) => [e.key, e.revision]),
      [
        ['/h/b', r2],
        ['/h/a', r3],
        ['/h/c', r4],
      ],
    );
  });

  t('concurrent puts all land, each with its own revision', async (s) => {
    const n = 64;
    const revs = await Promise.all(Array.from({ length: n }, (_, i) => s.put(`/c/${String(i).padStart(3, '0')}`, { i })));
    assert.equal(new Set(revs).size, n);
    const listed = await s.list('/c/');
    assert.equal(listed.length, n);
    listed.forEach((e, i) => {
      assert.deepEqual(e.value, { i });
      assert.equal(e.revision, revs[i]);
    });
    assert.equal(await s.revision(), Math.max(...revs));
  });

  t('concurrent create-only puts on one key: exactly one wins', async (s) => {
    const results = await Promise.allSettled(Array.from({ length: 16 }, (_, i) => s.put('/leader', { i }, { expectRevision: 0 })));
    const won = results.filter((r) => r.status === 'fulfilled');
    assert.equal(won.length, 1);
    for (const r of results) if (r.status === 'rejected') isStoreError('AMIME_ERR_STORE_CONFLICT')(r.reason);
    assert.equal((await s.get('/leader'))!.revision, (won[0] as PromiseFulfilledResult<number>).value);
  });

  t('a closed store refuses calls', async (s) => {
    await s.close();
    await assert.rejects(s.get('/a'), isStoreError('AMIME_ERR_STORE_CLOSED'));
    await assert.rejects(s.put('/a', {}), isStoreError('AMIME_ERR_STORE_CLOSED'));
  });
}
