import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { TrafficEdge, TrafficSnapshot } from '@amime/traffic';
import { filterSnapshot, formatMs, formatRps, topTable, windowOf } from './top.js';

const WEB = 'spiffe://amime.test/ns/shop/sa/web';
const edge = (over: Partial<TrafficEdge>): TrafficEdge => ({
  source: { identity: WEB, namespace: 'shop', service: 'web' },
  destination: { namespace: 'shop', service: 'catalog' },
  requests: 600,
  rps: 10,
  errors: 12,
  errorRate: 0.02,
  denials: 0,
  denialRate: 0,
  p50Ms: 4.5,
  p99Ms: 95,
  bytesIn: 0,
  bytesOut: 0,
  mtls: true,
  nodes: ['vm2'],
  lastSeen: '2026-01-01T00:01:00.000Z',
  ...over,
});
const snap = (edges: TrafficEdge[]): TrafficSnapshot => ({ windowSeconds: 60, generatedAt: '2026-01-01T00:01:00.000Z', edges });

describe('meshctl top', () => {
  test('--window takes 10s to 1h', () => {
    assert.equal(windowOf(undefined), undefined);
    assert.equal(windowOf('60s'), 60);
    assert.equal(windowOf('5m'), 300);
    assert.equal(windowOf('1h'), 3600);
    for (const bad of ['9s', '2h', 'soon', '-5s', '1.5m']) assert.throws(() => windowOf(bad), /--window must be a duration from 10s to 1h/);
  });

  test('numbers are shortened for the columns', () => {
    assert.deepEqual([formatRps(1234.4), formatRps(12.34), formatRps(0.0166)], ['1234', '12.3', '0.02']);
    assert.deepEqual([formatMs(null), formatMs(0.423), formatMs(4.5), formatMs(95.4), formatMs(1250)], ['-', '0.42ms', '4.5ms', '95ms', '1.25s']);
  });

  test('a table by rps; unknown sources by SPIFFE ID; -n keeps edges touching the namespace', () => {
    const s = snap([
      edge({ rps: 2, destination: { namespace: 'ops', service: 'db' }, source: { identity: 'spiffe://amime.test/ns/ops/sa/cron' }, p50Ms: null, p99Ms: null, errorRate: 0, denials: 3 }),
      edge({}),
    ]);
    assert.equal(
      topTable(filterSnapshot(s, undefined), undefined),
      [
        'SOURCE                              DESTINATION   RPS   ERR%  DENIED  P50    P99   MTLS',
        'shop/web                            shop/catalog  10.0  2.0%  0       4.5ms  95ms  yes',
        'spiffe://amime.test/ns/ops/sa/cron  ops/db        2.0   0.0%  3       -      -     yes',
        '',
      ].join('\n'),
    );
    assert.deepEqual(filterSnapshot(s, 'ops').edges.map((e) => e.destination.service), ['db']);
    assert.match(topTable(filterSnapshot(s, 'billing'), 'billing', 2), /no traffic to or from namespace billing in the last 1m \(2 edges in other namespaces/);
  });

  test('no traffic at all says when reports arrive', () => {
    assert.match(topTable(snap([]), undefined), /no traffic in the last 1m\.\n.*every reportInterval \(MeshConfig spec\.monitor\.reportInterval, 10s by default\)/);
  });
});
