import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EmbeddedStore } from './embedded-store.js';
import { StoreError } from './store.js';
import { runStoreConformance } from './testing/conformance.js';

const root = mkdtempSync(join(tmpdir(), 'amime-store-'));
let n = 0;
const freshDir = () => join(root, `s${n++}`);
after(() => rmSync(root, { recursive: true, force: true }));

runStoreConformance('embedded', () => EmbeddedStore.open(freshDir()));
// Compacting after every few records exercises snapshot + truncate under the same cases.
runStoreConformance('embedded, compacting', () => EmbeddedStore.open(freshDir(), { compactAfterRecords: 3 }));

test('embedded: state and revision survive a reopen', async () => {
  const dir = freshDir();
  const s = await EmbeddedStore.open(dir);
  await s.put('/a', { v: 1 });
  const r = await s.put('/b', { v: 2 });
  await s.delete('/a');
  const last = await s.revision();
  await s.close();
  const s2 = await EmbeddedStore.open(dir);
  assert.equal(await s2.get('/a'), undefined);
  assert.deepEqual(await s2.get('/b'), { key: '/b', value: { v: 2 }, revision: r });
  assert.equal(await s2.revision(), last);
  assert.ok((await s2.put('/c', {})) > last, 'revisions continue after reopen');
  await s2.close();
});

test('embedded: a torn last record is dropped and the log repaired for the next append', async () => {
  const dir = freshDir();
  const s = await EmbeddedStore.open(dir);
  await s.put('/a', { v: 1 });
  await s.close();
  appendFileSync(join(dir, 'wal.log'), '{"r":2,"k":"/torn","v":{"x"');
  const s2 = await EmbeddedStore.open(dir);
  assert.equal(await s2.get('/torn'), undefined);
  assert.equal(await s2.revision(), 1);
  const r = await s2.put('/b', { v: 2 });
  assert.equal(r, 2);
  await s2.close();
  const s3 = await EmbeddedStore.open(dir);
  assert.deepEqual((await s3.list('')).map((e) => e.key), ['/a', '/b'], 'the append after the repair is not lost');
  await s3.close();
});

test('embedded: an unreadable record followed by readable ones is damage, not a torn tail', async () => {
  const dir = freshDir();
  const s = await EmbeddedStore.open(dir);
  await s.put('/a', { v: 1 });
  await s.put('/b', { v: 1 });
  await s.close();
  const wal = join(dir, 'wal.log');
  writeFileSync(wal, readFileSync(wal, 'utf8').replace('{"r":1', '{"r":1xx'));
  await assert.rejects(EmbeddedStore.open(dir), (err: unknown) => err instanceof StoreError && err.code === 'AMIME_ERR_STORE_CORRUPT');
});

test('embedded: compaction writes a snapshot, truncates the log, and reopens to the same state', async () => {
  const dir = freshDir();
  const s = await EmbeddedStore.open(dir, { compactAfterRecords: 4 });
  for (let i = 0; i < 10; i++) await s.put(`/k/${i}`, { i });
  await s.delete('/k/0');
  const state = await s.list('');
  const rev = await s.revision();
  await s.close();
  assert.ok(readdirSync(dir).includes('snapshot.json'));
  assert.ok(readFileSync(join(dir, 'wal.log'), 'utf8').split('\n').filter(Boolean).length < 4);
  const s2 = await EmbeddedStore.open(dir, { compactAfterRecords: 4 });
  assert.deepEqual(await s2.list(''), state);
  assert.equal(await s2.revision(), rev);
  await s2.close();
});

test('embedded: a crash between snapshot rename and log truncation replays nothing twice', async () => {
  const dir = freshDir();
  const s = await EmbeddedStore.open(dir, { compactAfterRecords: 3 });
  await s.put('/a', { v: 1 });
  await s.put('/b', { v: 1 });
  copyFileSync(join(dir, 'wal.log'), join(root, 'wal.before'));
  await s.put('/a', { v: 2 }); // third record: snapshot at revision 3, log truncated
  await s.close();
  // Put back the old log plus the third record, as if truncation never happened.
  copyFileSync(join(root, 'wal.before'), join(dir, 'wal.log'));
  appendFileSync(join(dir, 'wal.log'), '{"r":3,"k":"/a","v":{"v":2}}\n');
  const s2 = await EmbeddedStore.open(dir);
  assert.deepEqual(await s2.get('/a'), { key: '/a', value: { v: 2 }, revision: 3 });
  assert.equal(await s2.revision(), 3);
  assert.equal(await s2.put('/c', {}), 4);
  await s2.close();
});

test('embedded: watching from a revision no longer held is refused with COMPACTED', async () => {
  const s = await EmbeddedStore.open(freshDir(), { watchHistory: 2 });
  for (let i = 0; i < 6; i++) await s.put('/k', { i });
  await assert.rejects(
    s.watch('/', 0, () => undefined),
    (err: unknown) => err instanceof StoreError && err.code === 'AMIME_ERR_STORE_COMPACTED',
  );
  const seen: number[] = [];
  const stop = await s.watch('/', 5, (e) => seen.push(e.revision));
  stop();
  assert.deepEqual(seen, [6]);
  await s.close();
});

test('embedded: values read back are frozen, so callers cannot change stored state', async () => {
  const s = await EmbeddedStore.open(freshDir());
  const input = { nested: { v: 1 } };
  await s.put('/f', input);
  input.nested.v = 2;
  const got = (await s.get<{ nested: { v: number } }>('/f'))!;
  assert.equal(got.value.nested.v, 1);
  assert.throws(() => {
    got.value.nested.v = 3;
  }, TypeError);
  await s.close();
});
