import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, statSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Resource } from '@amime/protocol';
import { LastGoodConfig } from './last-good.js';

const route = {
  apiVersion: 'amime.dev/v1',
  kind: 'Route',
  metadata: { name: 'r', namespace: 'shop', version: '7' },
  spec: { service: 'catalog', rules: [{ backends: [{ service: 'catalog', weight: 100 }] }] },
} as Resource;

describe('last good config', () => {
  test('round-trips through an atomic 0600 file; absent means empty', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'amime-last-good-'));
    const store = new LastGoodConfig(dir);
    assert.deepEqual(await store.load(), { config: {} });
    await store.save({ Route: { version: 'e1-7', resources: [route] } });
    assert.equal(statSync(store.path).mode & 0o777, 0o600);
    const { config, problem } = await store.load();
    assert.equal(problem, undefined);
    assert.equal(config.Route?.version, 'e1-7');
    assert.deepEqual(config.Route?.resources, [route]);
  });

  test('writes coalesce and the last one wins', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'amime-last-good-'));
    const store = new LastGoodConfig(dir);
    const writes = [1, 2, 3, 4, 5].map((n) => store.save({ Route: { version: `e1-${n}`, resources: [] } }));
    await Promise.all(writes);
    assert.equal(JSON.parse(readFileSync(store.path, 'utf8')).Route.version, 'e1-5');
  });

  test('a damaged file or a type with an invalid resource is not trusted', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'amime-last-good-'));
    const store = new LastGoodConfig(dir);
    mkdirSync(join(dir, 'config'), { recursive: true });
    writeFileSync(store.path, '{"Route": ');
    const broken = await store.load();
    assert.deepEqual(broken.config, {});
    assert.match(broken.problem ?? '', /is not JSON/);
    const bad = { ...route, spec: { service: 'Catalog!', rules: [] } };
    writeFileSync(store.path, JSON.stringify({ Route: { version: 'e1-2', resources: [bad] }, Service: { version: 'e1-3', resources: [] } }));
    const partial = await store.load();
    assert.equal(partial.config.Route, undefined);
    assert.equal(partial.config.Service?.version, 'e1-3');
    assert.match(partial.problem ?? '', /Route\.resources\[0\] does not validate/);
  });
});
