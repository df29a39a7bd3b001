// Route matching (path exact / prefix / regex, headers, method, rule order, default
// rule), compiled settings, and the weighted backend pick.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingHttpHeaders } from 'node:http';
import type { RouteResource } from '@amime/protocol';
import { compileRoutes, DEFAULT_CONNECT_RETRIES, DEFAULT_RETRY_ON, RETRY_ON_5XX, RETRY_ON_CONNECT_FAILURE, RETRY_ON_RESET } from './route-table.js';

type Rule = RouteResource['spec']['rules'][number];
function route(name: string, service: string, rules: Rule[], namespace = 'shop'): RouteResource {
  return { apiVersion: 'amime.dev/v1', kind: 'Route', metadata: { name, namespace, labels: {} }, spec: { service, rules } } as unknown as RouteResource;
}
const to = (service: string, weight = 100) => ({ service, weight });
const SVC = { name: 'cart', namespace: 'shop' };

const table = compileRoutes(SVC, [
  route('cart-main', 'cart', [
    { match: { path: { exact: '/exact' } }, backends: [to('r0')] },
    { match: { path: { prefix: '/api' } }, backends: [to('r1')] },
    { match: { path: { prefix: '/static/' } }, backends: [to('r2')] },
    { match: { path: { regex: '/items/[0-9]+' } }, backends: [to('r3')] },
    { match: { headers: [{ name: 'X-Canary', exact: 'yes' }] }, backends: [to('r4')] },
    { match: { headers: [{ name: 'user-agent', prefix: 'curl/' }, { name: 'x-team', regex: 'a|b' }] }, backends: [to('r5')] },
    { match: { method: 'DELETE' }, backends: [to('r6')] },
    { match: { path: { prefix: '/' }, method: 'POST' }, backends: [to('r7')] },
  ]),
  // another Route for the same service sorts after "cart-main"
  route('cart-zz', 'cart', [{ match: { path: { prefix: '/late' } }, backends: [to('r8')] }]),
  // other services' and namespaces' Routes are ignored
  route('aaa-other', 'payments', [{ backends: [to('nope')] }]),
  route('aaa-other-ns', 'cart', [{ backends: [to('nope')] }], 'elsewhere'),
]);

const cases: Array<[string, string, string, IncomingHttpHeaders, string | undefined]> = [
  ['exact path', 'GET', '/exact', {}, 'r0'],
  ['exact is not a prefix', 'GET', '/exact/more', {}, undefined],
  ['prefix: the path itself', 'GET', '/api', {}, 'r1'],
  ['prefix: below it', 'GET', '/api/v1/x', {}, 'r1'],
  ['prefix is per segment', 'GET', '/apix', {}, undefined],
  ['prefix ending in /', 'GET', '/static/app.js', {}, 'r2'],
  ['regex full match', 'GET', '/items/42', {}, 'r3'],
  ['regex is anchored at the end', 'GET', '/items/42/x', {}, undefined],
  ['regex is anchored at the start', 'GET', '/v1/items/42', {}, undefined],
  ['header exact (names are case-insensitive)', 'GET', '/other', { 'x-canary': 'yes' }, 'r4'],
  ['header exact mismatch', 'GET', '/other', { 'x-canary': 'yes!' }, undefined],
  ['all headers must match', 'GET', '/other', { 'user-agent': 'curl/8', 'x-team': 'b' }, 'r5'],
  ['header regex is anchored', 'GET', '/other', { 'user-agent': 'curl/8', 'x-team': 'ab' }, undefined],
  ['missing header', 'GET', '/other', { 'user-agent': 'curl/8' }, undefined],
  ['method', 'DELETE', '/other', {}, 'r6'],
  ['method and path', 'POST', '/anything', {}, 'r7'],
  ['first match wins', 'DELETE', '/exact', {}, 'r0'],
  ['rules of a later Route', 'GET', '/late/x', {}, 'r8'],
  ['no rule matches', 'GET', '/other', {}, undefined],
];

for (const [name, method, path, headers, backend] of cases) {
  test(`match: ${name}`, () => {
    const rule = table.match(method, path, headers);
    assert.equal(rule?.backends[0]!.service.name, backend);
    if (rule) assert.equal(rule.backends[0]!.service.namespace, 'shop', 'backends live in the Route namespace');
  });
}

test('rules keep their Route name and index', () => {
  assert.deepEqual([table.match('GET', '/late', {})!.route, table.match('GET', '/late', {})!.index], ['cart-zz', 0]);
  assert.deepEqual([table.match('GET', '/items/1', {})!.route, table.match('GET', '/items/1', {})!.index], ['cart-main', 3]);
});

test('no Route for the service: the default rule sends everything to the service itself', () => {
  const t = compileRoutes({ name: 'payments', namespace: 'shop' }, [route('r', 'cart', [{ backends: [to('x')] }])]);
  const rule = t.match('PATCH', '/any', {})!;
  assert.deepEqual(rule.backends, [{ service: { name: 'payments', namespace: 'shop' }, subset: undefined, weight: 100 }]);
  // Only connection failures are retried by default (the request was never sent).
  assert.equal(rule.retries, DEFAULT_CONNECT_RETRIES);
  assert.equal(rule.retryOn, RETRY_ON_CONNECT_FAILURE);
  assert.equal(rule.timeoutMs, 0);
  assert.equal(rule.perTryTimeoutMs, 0);
  assert.equal(rule.mirror, undefined);
  assert.equal(rule.fault, undefined);
  assert.equal(rule.index, -1);
});

test('a rule without a retries policy retries connection failures only; an explicit attempts: 0 means none', () => {
  const t = compileRoutes(SVC, [route('r', 'cart', [{ match: { method: 'GET' }, backends: [to('cart')] }, { backends: [to('cart')], retries: { attempts: 0 } }])]);
  const plain = t.match('GET', '/', {})!;
  assert.equal(plain.retries, DEFAULT_CONNECT_RETRIES);
  assert.equal(plain.retryOn, RETRY_ON_CONNECT_FAILURE);
  assert.equal(t.match('POST', '/', {})!.retries, 0);
});

test('timeouts, retries, mirror and fault are compiled to numbers and bits', () => {
  const t = compileRoutes(SVC, [
    route('r', 'cart', [
      {
        backends: [{ service: 'cart', subset: 'v2', weight: 1 }],
        timeout: '2s',
        retries: { attempts: 3, perTryTimeout: '250ms', on: ['5xx', 'reset'] },
        mirror: { service: 'cart-shadow', percent: 10 },
        fault: { delay: { fixed: '1m', percent: 5 }, abort: { status: 503, percent: 1 } },
      },
      { backends: [to('cart')], retries: { attempts: 1 } },
    ]),
  ]);
  const [a, b] = t.rules;
  assert.equal(a!.timeoutMs, 2000);
  assert.equal(a!.retries, 3);
  assert.equal(a!.perTryTimeoutMs, 250);
  assert.equal(a!.retryOn, RETRY_ON_5XX | RETRY_ON_RESET);
  assert.equal(a!.retryOn & RETRY_ON_CONNECT_FAILURE, 0);
  assert.deepEqual(a!.mirror, { service: { name: 'cart-shadow', namespace: 'shop' }, percent: 10 });
  assert.deepEqual(a!.fault, { delayMs: 60_000, delayPercent: 5, abortStatus: 503, abortPercent: 1 });
  assert.equal(a!.backends[0]!.subset, 'v2');
  assert.equal(b!.retryOn, DEFAULT_RETRY_ON);
});

test('pickBackend splits by weight with an injected random', () => {
  const t = compileRoutes(SVC, [route('r', 'cart', [{ backends: [to('a', 70), to('zero', 0), to('b', 20), to('c', 10)] }])]);
  const rule = t.match('GET', '/', {})!;
  const counts: Record<string, number> = {};
  for (let i = 0; i < 1000; i++) {
    const b = rule.pickBackend(() => i / 1000);
    counts[b.service.name] = (counts[b.service.name] ?? 0) + 1;
  }
  assert.deepEqual(counts, { a: 700, b: 200, c: 100 });
  assert.equal(rule.pickBackend(() => 0.99999999).service.name, 'c');
  assert.equal(rule.pickBackend(() => 1).service.name, 'c', 'an out-of-range random still picks a weighted backend');
  assert.equal(rule.pickBackend(() => 0).service.name, 'a');
});

test('a zero-weight last backend is never picked', () => {
  const rule = compileRoutes(SVC, [route('r', 'cart', [{ backends: [to('a', 50), to('b', 0)] }])]).match('GET', '/', {})!;
  for (const r of [0, 0.5, 0.999, 1]) assert.equal(rule.pickBackend(() => r).service.name, 'a');
});
