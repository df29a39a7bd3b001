import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  SPIFFE_ID_RULES,
  SpiffeIdError,
  type SpiffeId,
  type SpiffeIdRule,
  formatSpiffeId,
  isSpiffeId,
  isWorkloadId,
  memberOf,
  parseSpiffeId,
  parseTrustDomain,
  requireWorkloadId,
  sameSpiffeId,
  sameTrustDomain,
} from './spiffe-id.js';

const TD = 'example.org';
const PREFIX = `spiffe://${TD}/`;
/** A valid ID of exactly `length` characters (and bytes). */
const idOfLength = (length: number): string => PREFIX + 'a'.repeat(length - PREFIX.length);
const td255 = `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(63)}`; // 255 chars

function assertRule(fn: () => unknown, rule: SpiffeIdRule): SpiffeIdError {
  let caught: unknown;
  assert.throws(() => {
    try {
      fn();
    } catch (err) {
      caught = err;
      throw err;
    }
  });
  assert.ok(caught instanceof SpiffeIdError, `expected SpiffeIdError, got ${String(caught)}`);
  assert.equal(caught.rule, rule, caught.message);
  assert.equal(caught.code, 'AMIME_ERR_IDENTITY_SPIFFE_ID');
  assert.equal(caught.name, 'SpiffeIdError');
  assert.match(caught.message, new RegExp(`\\(rule ${rule}\\b`));
  return caught;
}

describe('parseSpiffeId accepts valid IDs', () => {
  const valid: ReadonlyArray<{ name: string; input: string; trustDomain: string; path: string }> = [
    { name: 'trust-domain-only ID', input: 'spiffe://example.org', trustDomain: 'example.org', path: '' },
    { name: 'one segment', input: 'spiffe://example.org/web', trustDomain: 'example.org', path: '/web' },
    {
      name: 'k8s-style path',
      input: 'spiffe://k8s-west.example.com/ns/staging/sa/default',
      trustDomain: 'k8s-west.example.com',
      path: '/ns/staging/sa/default',
    },
    {
      name: 'every allowed trust domain character',
      input: 'spiffe://abcdefghijklmnopqrstuvwxyz0123456789.-_/x',
      trustDomain: 'abcdefghijklmnopqrstuvwxyz0123456789.-_',
      path: '/x',
    },
    {
      name: 'every allowed path character, uppercase kept as is',
      input: 'spiffe://td/ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.-_',
      trustDomain: 'td',
      path: '/ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.-_',
    },
    { name: 'segments that only look like dot segments', input: 'spiffe://td/.../.a/..b/a.', trustDomain: 'td', path: '/.../.a/..b/a.' },
    { name: 'digits-only trust domain', input: 'spiffe://1.2.3.4/x', trustDomain: '1.2.3.4', path: '/x' },
    { name: 'opaque UUID path', input: 'spiffe://example.org/9eebccd2-12bf-40a6-b262-65fe0487d453', trustDomain: 'example.org', path: '/9eebccd2-12bf-40a6-b262-65fe0487d453' },
    { name: 'trust domain of 255 bytes', input: `spiffe://${td255}/w`, trustDomain: td255, path: '/w' },
    { name: 'exactly 2048 bytes', input: idOfLength(2048), trustDomain: TD, path: idOfLength(2048).slice(`spiffe://${TD}`.length) },
  ];
  for (const c of valid) {
    test(c.name, () => {
      const id = parseSpiffeId(c.input);
      assert.equal(id.trustDomain, c.trustDomain);
      assert.equal(id.path, c.path);
      assert.equal(id.toString(), c.input);
      assert.equal(isSpiffeId(c.input), true);
    });
  }
  test('the 2048-byte case really is 2048 bytes', () => {
    assert.equal(Buffer.byteLength(idOfLength(2048)), 2048);
  });
});

const invalid: ReadonlyArray<{ input: string; rule: SpiffeIdRule }> = [
  { input: '', rule: 'empty' },

  { input: idOfLength(2049), rule: 'too_long' },
  { input: idOfLength(100_000), rule: 'too_long' },

  { input: 'SPIFFE://example.org/a', rule: 'scheme' },
  { input: 'Spiffe://example.org/a', rule: 'scheme' },
  { input: 'https://example.org/a', rule: 'scheme' },
  { input: 'spiffe:/example.org/a', rule: 'scheme' },
  { input: 'spiffe:example.org', rule: 'scheme' },
  { input: 'example.org/a', rule: 'scheme' },
  { input: ' spiffe://example.org/a', rule: 'scheme' },

  { input: 'spiffe://', rule: 'trust_domain_empty' },
  { input: 'spiffe:///a', rule: 'trust_domain_empty' },

  { input: `spiffe://a${td255}/w`, rule: 'trust_domain_too_long' },

  { input: 'spiffe://Example.org/a', rule: 'trust_domain_chars' },
  { input: 'spiffe://EXAMPLE.ORG', rule: 'trust_domain_chars' },
  { input: 'spiffe://exa mple.org/a', rule: 'trust_domain_chars' },
  { input: 'spiffe://ex%61mple.org/a', rule: 'trust_domain_chars' },
  { input: 'spiffe://example.org\n/a', rule: 'trust_domain_chars' },
  { input: 'spiffe://exämple.org/a', rule: 'trust_domain_chars' },

  { input: 'spiffe://example.org:8443/a', rule: 'port' },
  { input: 'spiffe://example.org:/a', rule: 'port' },
  { input: 'spiffe://:80', rule: 'port' },

  { input: 'spiffe://user@example.org/a', rule: 'userinfo' },
  { input: 'spiffe://user:pass@example.org/a', rule: 'userinfo' },

  { input: 'spiffe://example.org/a?b=c', rule: 'query' },
  { input: 'spiffe://example.org?x', rule: 'query' },
  { input: 'spiffe://example.org/a/?x', rule: 'query' },

  { input: 'spiffe://example.org/a#frag', rule: 'fragment' },
  { input: 'spiffe://example.org#f', rule: 'fragment' },
  { input: 'spiffe://example.org/a#f?q', rule: 'fragment' },

  { input: 'spiffe://example.org//a', rule: 'path_empty_segment' },
  { input: 'spiffe://example.org/a//b', rule: 'path_empty_segment' },
  { input: 'spiffe://example.org/a//', rule: 'path_empty_segment' },

  { input: 'spiffe://example.org/.', rule: 'path_dot_segment' },
  { input: 'spiffe://example.org/..', rule: 'path_dot_segment' },
  { input: 'spiffe://example.org/a/./b', rule: 'path_dot_segment' },
  { input: 'spiffe://example.org/a/../b', rule: 'path_dot_segment' },

  { input: 'spiffe://example.org/', rule: 'path_trailing_slash' },
  { input: 'spiffe://example.org/a/b/', rule: 'path_trailing_slash' },

  { input: 'spiffe://example.org/a%2Fb', rule: 'path_chars' },
  { input: 'spiffe://example.org/a b', rule: 'path_chars' },
  { input: 'spiffe://example.org/a@b', rule: 'path_chars' },
  { input: 'spiffe://example.org/a:b', rule: 'path_chars' },
  { input: 'spiffe://example.org/a\\b', rule: 'path_chars' },
  { input: 'spiffe://example.org/caf\u00e9', rule: 'path_chars' },
  { input: 'spiffe://example.org/a\u0000', rule: 'path_chars' },
];

describe('parseSpiffeId refuses invalid IDs with the exact rule', () => {
  for (const c of invalid) {
    test(`${c.rule}: ${JSON.stringify(c.input.slice(0, 60))}`, () => {
      assertRule(() => parseSpiffeId(c.input), c.rule);
      assert.equal(isSpiffeId(c.input), false);
    });
  }

  test('every rule parseSpiffeId can break has a refusing case, and every case names a known rule', () => {
    const parseRules = SPIFFE_ID_RULES.filter((r) => r !== 'path_missing') // path_missing comes only from requireWorkloadId;
    const covered = new Set(invalid.map((c) => c.rule));
    for (const rule of parseRules) assert.ok(covered.has(rule), `no refusing case for ${rule}`);
    for (const rule of covered) assert.ok((SPIFFE_ID_RULES as readonly string[]).includes(rule), `unknown rule ${rule}`);
  });
});

describe('error messages', () => {
  test('name the rule and quote the input', () => {
    const err = assertRule(() => parseSpiffeId('spiffe://example.org:8443/a'), 'port');
    assert.match(err.message, /"spiffe:\/\/example\.org:8443\/a"/);
    assert.match(err.message, /offset 20/);
  });

  test('escape control, line-separator and bidi characters so they cannot forge log lines', () => {
    const input = 'spiffe://example.org/a\nlevel=error msg="forged"\u2028\u202e\u001b[31m';
    const err = assertRule(() => parseSpiffeId(input), 'path_chars');
    assert.doesNotMatch(err.message, /[^\x20-\x7e]/);
    assert.match(err.message, /\\n/);
    assert.match(err.message, /\\"forged\\"/);
    assert.match(err.message, /\\u2028\\u202e\\u001b/);
  });

  test('truncate long input to about 100 characters', () => {
    const input = idOfLength(100_000);
    const err = assertRule(() => parseSpiffeId(input), 'too_long');
    assert.ok(err.message.length < 400, `message is ${err.message.length} chars`);
    assert.match(err.message, /\.\.\. \(100000 chars\)/);
    assert.match(err.message, /length 100000/);
  });

  test('a truncated lone surrogate stays escaped ASCII', () => {
    const input = `spiffe://example.org/${'a'.repeat(78)}\u{1f600}`; // emoji straddles the 100-char cut
    const err = assertRule(() => parseSpiffeId(input), 'path_chars');
    assert.doesNotMatch(err.message, /[^\x20-\x7e]/);
    assert.match(err.message, /\\ud83d"/);
  });
});

describe('formatSpiffeId', () => {
  const valid: ReadonlyArray<{ name: string; trustDomain: string; segments: string[]; expected: string }> = [
    { name: 'trust-domain-only', trustDomain: TD, segments: [], expected: 'spiffe://example.org' },
    { name: 'segments joined with "/"', trustDomain: TD, segments: ['ns', 'prod', 'sa', 'Web_1'], expected: 'spiffe://example.org/ns/prod/sa/Web_1' },
    { name: 'dot-like segments that are allowed', trustDomain: TD, segments: ['...', '.a'], expected: 'spiffe://example.org/.../.a' },
    { name: 'trust domain given as spiffe://', trustDomain: 'spiffe://example.org', segments: ['x'], expected: 'spiffe://example.org/x' },
    { name: 'exactly 2048 bytes', trustDomain: TD, segments: [idOfLength(2048).slice(PREFIX.length)], expected: idOfLength(2048) },
  ];
  for (const c of valid) {
    test(`builds: ${c.name}`, () => {
      const id = formatSpiffeId(c.trustDomain, ...c.segments);
      assert.equal(id.toString(), c.expected);
      assert.equal(id.trustDomain, TD);
      const reparsed = parseSpiffeId(c.expected);
      assert.ok(sameSpiffeId(id, reparsed));
    });
  }

  const refused: ReadonlyArray<{ name: string; trustDomain: string; segments: string[]; rule: SpiffeIdRule }> = [
    { name: 'segment containing "/"', trustDomain: TD, segments: ['ns', 'a/b'], rule: 'path_chars' },
    { name: 'segment with percent-encoding', trustDomain: TD, segments: ['a%2Fb'], rule: 'path_chars' },
    { name: 'segment with "?"', trustDomain: TD, segments: ['a?b'], rule: 'path_chars' },
    { name: 'segment with "#"', trustDomain: TD, segments: ['a#b'], rule: 'path_chars' },
    { name: 'empty segment', trustDomain: TD, segments: ['a', ''], rule: 'path_empty_segment' },
    { name: '"." segment', trustDomain: TD, segments: ['.'], rule: 'path_dot_segment' },
    { name: '".." segment', trustDomain: TD, segments: ['a', '..'], rule: 'path_dot_segment' },
    { name: 'uppercase trust domain', trustDomain: 'Example.org', segments: ['a'], rule: 'trust_domain_chars' },
    { name: 'empty trust domain', trustDomain: '', segments: ['a'], rule: 'trust_domain_empty' },
    { name: 'trust domain with port', trustDomain: 'example.org:443', segments: ['a'], rule: 'port' },
    { name: 'trust domain with userinfo', trustDomain: 'u@example.org', segments: ['a'], rule: 'userinfo' },
    { name: 'one byte over 2048', trustDomain: TD, segments: [idOfLength(2049).slice(PREFIX.length)], rule: 'too_long' },
    { name: 'over 2048 across many segments', trustDomain: TD, segments: Array.from({ length: 700 }, () => 'ab'), rule: 'too_long' },
  ];
  for (const c of refused) {
    test(`refuses ${c.name} (${c.rule})`, () => {
      assertRule(() => formatSpiffeId(c.trustDomain, ...c.segments), c.rule);
    });
  }

  test('a refused segment is named by position in the message', () => {
    const err = assertRule(() => formatSpiffeId(TD, 'ok', 'a/b'), 'path_chars');
    assert.match(err.message, /segment #1 "a\/b"/);
  });
});

describe('parseTrustDomain', () => {
  const accepted: ReadonlyArray<{ input: string; expected: string }> = [
    { input: 'example.org', expected: 'example.org' },
    { input: 'spiffe://example.org', expected: 'example.org' },
    { input: 'td_1-a.b', expected: 'td_1-a.b' },
    { input: td255, expected: td255 },
  ];
  for (const c of accepted) {
    test(`accepts ${JSON.stringify(c.input.slice(0, 40))}`, () => {
      assert.equal(parseTrustDomain(c.input), c.expected);
    });
  }

  const refused: ReadonlyArray<{ input: string; rule: SpiffeIdRule }> = [
    { input: '', rule: 'trust_domain_empty' },
    { input: 'spiffe://', rule: 'trust_domain_empty' },
    { input: `a${td255}`, rule: 'trust_domain_too_long' },
    { input: 'Example.org', rule: 'trust_domain_chars' },
    { input: 'example.org/a', rule: 'trust_domain_chars' },
    { input: 'spiffe://example.org/a', rule: 'trust_domain_chars' },
    { input: 'exa%6dple.org', rule: 'trust_domain_chars' },
    { input: 'example.org:443', rule: 'port' },
    { input: 'user@example.org', rule: 'userinfo' },
    { input: 'https://example.org', rule: 'scheme' },
    { input: 'SPIFFE://example.org', rule: 'scheme' },
    { input: 'spiffe://example.org?x', rule: 'query' },
    { input: 'spiffe://example.org/', rule: 'path_trailing_slash' },
  ];
  for (const c of refused) {
    test(`refuses ${JSON.stringify(c.input.slice(0, 40))} (${c.rule})`, () => {
      const err = assertRule(() => parseTrustDomain(c.input), c.rule);
      assert.match(err.message, /^invalid trust domain /);
    });
  }
});

describe('SpiffeId values', () => {
  test('are frozen', () => {
    const id = parseSpiffeId('spiffe://example.org/a');
    assert.ok(Object.isFrozen(id));
    assert.throws(() => {
      (id as { trustDomain: string }).trustDomain = 'evil.org';
    }, TypeError);
    assert.equal(id.trustDomain, 'example.org');
  });

  test('stringify to the URI, including in templates and JSON', () => {
    const id = formatSpiffeId(TD, 'ns', 'web');
    assert.equal(String(id), 'spiffe://example.org/ns/web');
    assert.equal(`${id}`, 'spiffe://example.org/ns/web');
    assert.equal(JSON.stringify({ id }), '{"id":"spiffe://example.org/ns/web"}');
  });

  test('equals compares trust domain and path exactly', () => {
    const a = parseSpiffeId('spiffe://example.org/a') as SpiffeId & { equals(o: SpiffeId): boolean };
    assert.equal(a.equals(parseSpiffeId('spiffe://example.org/a')), true);
    assert.equal(a.equals({ trustDomain: 'example.org', path: '/a' }), true);
    assert.equal(a.equals(parseSpiffeId('spiffe://example.org/A')), false);
    assert.equal(a.equals(parseSpiffeId('spiffe://example.com/a')), false);
    assert.equal(a.equals(parseSpiffeId('spiffe://example.org')), false);
  });

  test('sameSpiffeId, sameTrustDomain and memberOf', () => {
    const a = parseSpiffeId('spiffe://example.org/a');
    const b = parseSpiffeId('spiffe://example.org/b');
    const c = parseSpiffeId('spiffe://example.com/a');
    assert.equal(sameSpiffeId(a, parseSpiffeId('spiffe://example.org/a')), true);
    assert.equal(sameSpiffeId(a, b), false);
    assert.equal(sameSpiffeId(a, c), false);
    assert.equal(sameTrustDomain(a, b), true);
    assert.equal(sameTrustDomain(a, c), false);
    assert.equal(memberOf(a, 'example.org'), true);
    assert.equal(memberOf(a, 'example.com'), false);
    assert.equal(memberOf(a, 'example.or'), false);
  });

  test('isWorkloadId and requireWorkloadId tell workload IDs from trust-domain-only IDs', () => {
    const workload = parseSpiffeId('spiffe://example.org/a');
    const domainOnly = parseSpiffeId('spiffe://example.org');
    assert.equal(isWorkloadId(workload), true);
    assert.equal(isWorkloadId(domainOnly), false);
    assert.equal(requireWorkloadId(workload), workload);
    assertRule(() => requireWorkloadId(domainOnly), 'path_missing');
  });
});
