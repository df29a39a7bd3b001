import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FindingLog } from './finding-log.js';
import type { Finding } from './finding.js';

const finding = (i: number): Finding => ({
  id: String(i),
  kind: 'new_edge',
  at: new Date(1_800_000_000_000 + i * 1000).toISOString(),
  edge: { source: 'spiffe://t/ns/a/sa/b', service: 's', namespace: 'a', sourceNode: 'n' },
  node: 'm',
  baseline: 0,
  observed: 1,
  threshold: 0,
  unit: 'requests/s',
  message: '',
});

test('the log keeps the newest findings, lists newest first and filters by time', () => {
  const log = new FindingLog(4);
  assert.deepEqual(log.list(), []);
  for (let i = 0; i < 6; i++) log.add(finding(i));
  assert.equal(log.size, 4);
  assert.deepEqual(log.list().map((f) => f.id), ['5', '4', '3', '2']);
  assert.deepEqual(log.list(1_800_000_004_000).map((f) => f.id), ['5', '4']);
  assert.deepEqual(log.list(undefined, 1).map((f) => f.id), ['5']);
  assert.throws(() => new FindingLog(0), /capacity must be a positive integer/);
});
