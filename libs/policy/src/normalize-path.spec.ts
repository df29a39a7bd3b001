import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  MAX_REQUEST_TARGET_LENGTH,
  PATH_REJECT_REASONS,
  isNormalizedPath,
  isValidMethod,
  normalizePath,
  type NormalizePathOptions,
  type PathRejectReason,
} from './normalize-path.js';

const DECODE: NormalizePathOptions = { encodedSlashes: 'decode' };

interface Accepted {
  readonly input: string;
  readonly path: string;
  readonly query?: string;
  readonly opts?: NormalizePathOptions;
}

const accepted: readonly Accepted[] = [
  // already normal (fast path)
  { input: '/', path: '/' },
  { input: '/a/b', path: '/a/b' },
  { input: '/a/b/', path: '/a/b/' },
  { input: '/.well-known/x', path: '/.well-known/x' },
  { input: '/..a/b...', path: '/..a/b...' },
  { input: '/a:b@c!$&\'()*+,;=', path: '/a:b@c!$&\'()*+,;=' },
  // query kept raw, fragment dropped
  { input: '/a/b?x=1', path: '/a/b', query: 'x=1' },
  { input: '/a?b=c#d', path: '/a', query: 'b=c' },
  { input: '/a#d', path: '/a' },
  { input: '/a#d?x=1', path: '/a' },
  { input: '/a?', path: '/a' },
  { input: '/a?b?c/../d', path: '/a', query: 'b?c/../d' },
  { input: '/a?x=%zz&y=%2F', path: '/a', query: 'x=%zz&y=%2F' },
  { input: '//a/../b?q', path: '/b', query: 'q' },
  // unreserved escapes decoded exactly once
  { input: '/%61', path: '/a' },
  { input: '/%61dmin', path: '/admin' },
  { input: '/%41%5A%30%2D%2E%5F%7E', path: '/AZ0-._~' },
  { input: '/%7E', path: '/~' },
  { input: '/%7e', path: '/~' },
  { input: '/%2561', path: '/%2561' },
  { input: '/%25', path: '/%25' },
  // other escapes stay encoded, upper-case hex
  { input: '/%3a', path: '/%3A' },
  { input: '/%c3%a9t%C3%A9', path: '/%C3%A9t%C3%A9' },
  { input: '/a%20b', path: '/a%20b' },
  { input: '/a%3Fb', path: '/a%3Fb' },
  // dot segments (RFC 3986 remove_dot_segments; ".." at the root stays there)
  { input: '/a/./b', path: '/a/b' },
  { input: '/a/../b', path: '/b' },
  { input: '/a/../../b', path: '/b' },
  { input: '/../a', path: '/a' },
  { input: '/..', path: '/' },
  { input: '/.', path: '/' },
  { input: '/./', path: '/' },
  { input: '/a/b/..', path: '/a/' },
  { input: '/a/.', path: '/a/' },
  { input: '/a/b/../', path: '/a/' },
  { input: '/%2e%2e/admin', path: '/admin' },
  { input: '/a/%2E%2E/b', path: '/b' },
  { input: '/a/%2e/b', path: '/a/b' },
  { input: '/a/.%2e/b', path: '/b' },
  // slashes merge (before dot segments resolve)
  { input: '//a//b', path: '/a/b' },
  { input: '///', path: '/' },
  { input: '/a//', path: '/a/' },
  { input: '/a//../b', path: '/b' },
  // backslashes are slashes
  { input: '\\a\\b', path: '/a/b' },
  { input: '/a\\..\\b', path: '/b' },
  { input: '/a\\\\b', path: '/a/b' },
  // encoded slashes, when decoding is asked for
  { input: '/a%2Fb', path: '/a/b', opts: DECODE },
  { input: '/a%2fb', path: '/a/b', opts: DECODE },
  { input: '/a%5Cb', path: '/a/b', opts: DECODE },
  { input: '/a%5c%5cb', path: '/a/b', opts: DECODE },
  { input: '/a%2f..%2fb', path: '/b', opts: DECODE },
  { input: '/%2e%2e%2fadmin', path: '/admin', opts: DECODE },
  // length bound is inclusive
  { input: `/${'a'.repeat(MAX_REQUEST_TARGET_LENGTH - 1)}`, path: `/${'a'.repeat(MAX_REQUEST_TARGET_LENGTH - 1)}` },
  { input: '/abcdefghi', path: '/abcdefghi', opts: { maxLength: 10 } },
];

describe('normalizePath accepts and normalises', () => {
  for (const { input, path, query = '', opts } of accepted) {
    test(`${JSON.stringify(input.length > 40 ? `${input.slice(0, 40)}...` : input)}${opts ? ` ${JSON.stringify(opts)}` : ''}`, () => {
      const r = normalizePath(input, opts);
      assert.deepEqual(r, { ok: true, path, query });
      // the result is a fixed point, and isNormalizedPath agrees
      assert.ok(isNormalizedPath(path), `isNormalizedPath(${JSON.stringify(path)})`);
      assert.deepEqual(normalizePath(path, opts), { ok: true, path, query: '' });
    });
  }
});

const refused: ReadonlyArray<{ readonly input: string; readonly reason: PathRejectReason; readonly opts?: NormalizePathOptions }> = [
  { input: '', reason: 'not_origin_form' },
  { input: '*', reason: 'not_origin_form' },
  { input: 'http://h/x', reason: 'not_origin_form' },
  { input: 'h/x', reason: 'not_origin_form' },
  { input: 'example.com:443', reason: 'not_origin_form' },
  { input: '?x=1', reason: 'not_origin_form' },
  { input: '/a%00', reason: 'null_byte' },
  { input: '/%00/a', reason: 'null_byte' },
  { input: '/a\u0000b', reason: 'null_byte' },
  { input: '/a?x\u0000', reason: 'null_byte' },
  { input: '/a%00', reason: 'null_byte', opts: DECODE },
  { input: '/a%zz', reason: 'invalid_escape' },
  { input: '/a%4', reason: 'invalid_escape' },
  { input: '/a%', reason: 'invalid_escape' },
  { input: '/a%4?x', reason: 'invalid_escape' },
  { input: '/a%g1', reason: 'invalid_escape' },
  { input: '/a%%41', reason: 'invalid_escape' },
  { input: '/a%2F', reason: 'encoded_slash' },
  { input: '/a%2f', reason: 'encoded_slash' },
  { input: '/a%5C', reason: 'encoded_slash' },
  { input: '/a%5c', reason: 'encoded_slash' },
  { input: '/a%2F', reason: 'encoded_slash', opts: { encodedSlashes: 'refuse' } },
  { input: '/a b', reason: 'control_char' },
  { input: '/a\tb', reason: 'control_char' },
  { input: '/a\r\n', reason: 'control_char' },
  { input: '/a\u0001', reason: 'control_char' },
  { input: '/a\u007f', reason: 'control_char' },
  { input: '/a?x y', reason: 'control_char' },
  { input: '/a#x y', reason: 'control_char' },
  { input: '/é', reason: 'non_ascii' },
  { input: '/a?q=é', reason: 'non_ascii' },
  { input: '/\u2215admin', reason: 'non_ascii' },
  { input: `/${'a'.repeat(MAX_REQUEST_TARGET_LENGTH)}`, reason: 'too_long' },
  { input: '/abcdefghij', reason: 'too_long', opts: { maxLength: 10 } },
];

describe('normalizePath refuses', () => {
  for (const { input, reason, opts } of refused) {
    test(`${JSON.stringify(input.length > 40 ? `${input.slice(0, 40)}...` : input)} as ${reason}${opts ? ` ${JSON.stringify(opts)}` : ''}`, () => {
      const r = normalizePath(input, opts);
      assert.equal(r.ok, false, JSON.stringify(r));
      if (r.ok) return;
      assert.equal(r.reason, reason, r.message);
      assert.ok(PATH_REJECT_REASONS.includes(r.reason));
      assert.ok(r.message.length > 0);
    });
  }

  test('every refusal reason is exercised by the table', () => {
    assert.deepEqual(new Set(refused.map((r) => r.reason)), new Set(PATH_REJECT_REASONS));
  });

  test('a non-string never throws', () => {
    assert.equal(normalizePath(undefined as unknown as string).ok, false);
    assert.equal(normalizePath(42 as unknown as string).ok, false);
  });
});

describe('isNormalizedPath', () => {
  const cases: ReadonlyArray<readonly [string, boolean]> = [
    ['/', true],
    ['/a', true],
    ['/a/', true],
    ['/.well-known', true],
    ['/a/..b', true],
    ['/%3A%C3%A9', true],
    ['/%2561', true],
    ['', false],
    ['a', false],
    ['//a', false],
    ['/a//', false],
    ['/a/./b', false],
    ['/a/.', false],
    ['/a/..', false],
    ['/../a', false],
    ['/%61', false],
    ['/%7E', false],
    ['/%3a', false],
    ['/%2F', false],
    ['/%5C', false],
    ['/%00', false],
    ['/%4', false],
    ['/a?b', false],
    ['/a#b', false],
    ['/a\\b', false],
    ['/a b', false],
    ['/é', false],
  ];
  for (const [path, expected] of cases) {
    test(`${JSON.stringify(path)} is ${expected ? '' : 'not '}normal`, () => {
      assert.equal(isNormalizedPath(path), expected);
    });
  }
});

describe('isValidMethod', () => {
  const cases: ReadonlyArray<readonly [string, boolean]> = [
    ['GET', true],
    ['DELETE', true],
    ['PROPFIND', true],
    ['M-SEARCH', true],
    ['get', false],
    ['Get', false],
    ['gET', false],
    ['GE T', false],
    ['GET ', false],
    ['', false],
    ['GET\r\n', false],
    ['GÉT', false],
    ['G(ET', false],
    ['A'.repeat(33), false],
  ];
  for (const [method, expected] of cases) {
    test(`${JSON.stringify(method)} is ${expected ? 'valid' : 'refused'}`, () => {
      assert.equal(isValidMethod(method), expected);
    });
  }
  test('a non-string is refused', () => {
    assert.equal(isValidMethod(undefined as unknown as string), false);
  });
});
