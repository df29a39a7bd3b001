// The pure helpers behind checkRequest: absolute-form authorities and target splitting.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { absoluteFormAuthority, serverOptions, splitTarget } from './server-options.js';

test('absoluteFormAuthority', () => {
  const cases: Array<[string, string | undefined]> = [
    ['http://cart/x', 'cart'],
    ['HTTP://cart:8080?q', 'cart:8080'],
    ['http://cart', 'cart'],
    ['http:///x', undefined],
    ['http://u@cart/x', undefined],
    ['https://cart/x', undefined],
    ['/x', undefined],
    ['cart:80', undefined],
  ];
  for (const [url, want] of cases) assert.equal(absoluteFormAuthority(url), want, url);
});

test('splitTarget', () => {
  const cases: Array<[string, string, string]> = [
    ['/a/b?x=1&y', '/a/b', 'x=1&y'],
    ['/a?', '/a', ''],
    ['/', '/', ''],
    ['http://cart/p?q=1', '/p', 'q=1'],
    ['http://cart?q=1', '/', 'q=1'],
    ['http://cart', '/', ''],
    ['*', '*', ''],
  ];
  for (const [url, path, query] of cases) assert.deepEqual(splitTarget(url), { path, query }, url);
});

test('serverOptions keeps requestTimeout at or above headersTimeout and the parser strict', () => {
  const o = serverOptions({ headersTimeoutMs: 5000, requestTimeoutMs: 1000 });
  assert.equal(o.requestTimeout, 5000);
  assert.equal(o.insecureHTTPParser, false);
  assert.equal(o.maxHeaderSize, 16 * 1024);
  assert.equal(o.requireHostHeader, true);
});
