// meshctl tap's pure parts: the flags and the line printed per event.
// (test/meshctl/tap.spec.ts runs the command against a real mesh.)
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { TapEvent } from '@amime/protocol';
import { UsageError } from '../errors.js';
import type { CommandContext } from './command.js';
import { shortIdentity, tapFlags, tapLine } from './tap.js';

const ctx = (args: string[], values: Record<string, string>) => ({ args, values }) as unknown as CommandContext;

const event: TapEvent = {
  time: '2026-11-29T14:30:00.123Z',
  direction: 'inbound',
  protocol: 'http',
  node: 'vm2',
  source: 'spiffe://example.org/ns/shop/sa/web',
  service: 'catalog',
  namespace: 'shop',
  method: 'GET',
  path: '/items',
  status: 200,
  durationMs: 1.234,
  upstream: '127.0.0.1:9000',
};

describe('meshctl tap', () => {
  test('flags: defaults, and errors that name the flag', () => {
    assert.deepEqual(tapFlags(ctx(['catalog'], {})), { service: 'catalog', namespace: 'default', durationS: 60, max: undefined, rate: undefined });
    assert.deepEqual(tapFlags(ctx(['catalog'], { namespace: 'shop', duration: '2m', max: '5', rate: '20' })), { service: 'catalog', namespace: 'shop', durationS: 120, max: 5, rate: 20 });
    const cases: [string[], Record<string, string>, RegExp][] = [
      [['Catalog'], {}, /the service must be a service name/],
      [['catalog'], { namespace: 'a/b' }, /-n\/--namespace "a\/b"/],
      [['catalog'], { duration: '0s' }, /--duration must be from 1s to 10m/],
      [['catalog'], { duration: '11m' }, /--duration/],
      [['catalog'], { duration: 'soon' }, /--duration/],
      [['catalog'], { max: '0' }, /--max must be a whole number from 1/],
      [['catalog'], { max: '-3' }, /--max/],
      [['catalog'], { rate: '1001' }, /--rate must be a whole number from 1 to 1000/],
      [['catalog'], { rate: '1.5' }, /--rate/],
    ];
    for (const [args, values, msg] of cases) assert.throws(() => tapFlags(ctx(args, values)), (err: unknown) => err instanceof UsageError && msg.test(err.message), JSON.stringify(values));
  });

  test('one line per request: time, direction, node, source → destination, request, status, duration, upstream, cause', () => {
    assert.equal(tapLine(event), '14:30:00.123 inbound  vm2 shop/web -> shop/catalog GET /items 200 1.23ms upstream=127.0.0.1:9000');
    assert.equal(
      tapLine({ ...event, direction: 'outbound', node: 'vm1', status: 403, path: '/admin', route: 'catalog', upstream: 'catalog-vm2', durationMs: 12.5, retries: 1, error: 'denied_by_policy' }),
      '14:30:00.123 outbound vm1 shop/web -> shop/catalog GET /admin 403 12.5ms route=catalog upstream=catalog-vm2 retries=1 DENIED=denied_by_policy',
    );
    assert.equal(
      tapLine({ ...event, protocol: 'tcp', method: undefined, path: undefined, status: undefined, bytesIn: 10, bytesOut: 4096, durationMs: 1500 }),
      '14:30:00.123 inbound  vm2 shop/web -> shop/catalog TCP in=10B out=4.0KiB ok 1500ms upstream=127.0.0.1:9000',
    );
    assert.match(tapLine({ ...event, status: 503, error: 'no_endpoint' }), / 503 .* error=no_endpoint$/);
    assert.equal(tapLine({ ...event, path: '/x\u001b[2J\u009b1m' }), '14:30:00.123 inbound  vm2 shop/web -> shop/catalog GET /x[2J1m 200 1.23ms upstream=127.0.0.1:9000', 'no control character reaches the terminal');
  });

  test('identities: workload IDs shortened to namespace/account, others whole', () => {
    assert.equal(shortIdentity('spiffe://td/ns/shop/sa/web'), 'shop/web');
    assert.equal(shortIdentity('spiffe://td/agent/vm1'), 'spiffe://td/agent/vm1');
    assert.equal(shortIdentity(undefined), '(no identity)');
  });
});
