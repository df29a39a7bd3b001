import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  PROTOCOL_INVALID,
  ValidationError,
  array,
  enumOf,
  exactlyOne,
  integer,
  literal,
  object,
  optional,
  record,
  safeValidate,
  string,
  suggest,
  validate,
  withDefault,
  type Issue,
} from './validate.js';

const backend = object({ service: string({ minLength: 1, maxLength: 8 }), weight: integer(0, 100) });
const spec = object({
  kind: literal('Thing'),
  mode: enumOf(['a', 'b'] as const),
  name: string({ maxLength: 5, pattern: /^[a-z]+$/, patternName: 'lowercase letters', fix: 'use a-z only' }),
  backends: array(backend, { minItems: 1, maxItems: 3 }),
  note: optional(string()),
  retries: withDefault(integer(0, 10), 3),
  labels: optional(record(string({ maxLength: 3 }), string(), { maxKeys: 2 })),
});

const good = { kind: 'Thing', mode: 'a', name: 'abc', backends: [{ service: 'x', weight: 1 }] };

function issuesOf(value: unknown): Issue[] {
  const r = safeValidate(spec, value);
  assert.equal(r.ok, false, 'expected the value to be refused');
  return r.ok ? [] : r.issues;
}

describe('validate toolkit', () => {
  test('accepts a valid value, applies defaults, leaves absent optionals absent', () => {
    const out = validate(spec, good);
    assert.deepEqual(out, { ...good, retries: 3 });
    assert.equal('note' in out, false);
  });

  const cases: { name: string; value: unknown; path: string; message: RegExp }[] = [
    { name: 'integer out of range', value: { ...good, backends: [{ service: 'x', weight: 1 }, { service: 'y', weight: 101 }] }, path: 'backends[1].weight', message: /^must be an integer from 0 to 100, got 101$/ },
    { name: 'integer not integral', value: { ...good, retries: 1.5 }, path: 'retries', message: /integer from 0 to 10/ },
    { name: 'wrong type', value: { ...good, name: 5 }, path: 'name', message: /must be lowercase letters, got a number/ },
    { name: 'pattern', value: { ...good, name: 'AB' }, path: 'name', message: /must be lowercase letters, got "AB"/ },
    { name: 'maxLength', value: { ...good, name: 'abcdef' }, path: 'name', message: /at most 5 characters/ },
    { name: 'enum', value: { ...good, mode: 'c' }, path: 'mode', message: /must be one of a, b/ },
    { name: 'literal', value: { ...good, kind: 'Other' }, path: 'kind', message: /must be "Thing"/ },
    { name: 'empty array', value: { ...good, backends: [] }, path: 'backends', message: /must not be empty/ },
    { name: 'too many items', value: { ...good, backends: Array(4).fill({ service: 'x', weight: 1 }) }, path: 'backends', message: /at most 3 items/ },
    { name: 'unknown field', value: { ...good, extra: 1 }, path: 'extra', message: /not a known field/ },
    { name: 'unknown nested field', value: { ...good, backends: [{ service: 'x', weight: 1, wieght: 2 }] }, path: 'backends[0].wieght', message: /not a known field/ },
    { name: 'missing field', value: { kind: 'Thing', mode: 'a', name: 'abc' }, path: 'backends', message: /is required/ },
    { name: 'not an object', value: [], path: '', message: /must be an object, got an array/ },
    { name: 'record key', value: { ...good, labels: { toolong: 'x' } }, path: 'labels.toolong', message: /at most 3 characters/ },
    { name: 'record too many keys', value: { ...good, labels: { a: '', b: '', c: '' } }, path: 'labels', message: /at most 2 keys/ },
  ];
  for (const c of cases) {
    test(`refuses ${c.name} at ${c.path || '(root)'}`, () => {
      const issues = issuesOf(c.value);
      const hit = issues.find((i) => i.path === c.path);
      assert.ok(hit, `no issue at ${c.path}: ${JSON.stringify(issues)}`);
      assert.match(hit.message, c.message);
    });
  }

  test('collects every problem, not just the first', () => {
    const issues = issuesOf({ kind: 'Thing', mode: 'z', name: 'A', backends: [{ service: '', weight: -1 }], bogus: true });
    assert.deepEqual(issues.map((i) => i.path).sort(), ['backends[0].service', 'backends[0].weight', 'bogus', 'mode', 'name']);
  });

  test('unknown fields suggest the near miss, else list the allowed ones', () => {
    const [typo] = issuesOf({ ...good, nmae: 'x', name: undefined }).filter((i) => i.path === 'nmae');
    assert.equal(typo!.fix, 'did you mean "name"?');
    const [far] = issuesOf({ ...good, zzzzzz: 1 });
    assert.match(far!.fix!, /allowed fields: kind, mode, name/);
  });

  test('ValidationError has the stable code and names the first field and fix', () => {
    assert.throws(
      () => validate(spec, { ...good, name: 'AB', mode: 'c' }, 'thing'),
      (err: unknown) => {
        assert.ok(err instanceof ValidationError);
        assert.equal(err.code, PROTOCOL_INVALID);
        assert.equal(err.code, 'AMIME_ERR_PROTOCOL_INVALID');
        assert.match(err.message, /^invalid thing: mode must be one of a, b, got "c" \(and 1 more problem\)$/);
        assert.equal(err.issues.length, 2);
        return true;
      },
    );
    assert.throws(() => validate(spec, { ...good, name: 'AB' }), /name must be lowercase letters, got "AB" \(fix: use a-z only\)/);
  });

  test('exactlyOne refuses none and several', () => {
    const one = exactlyOne(object({ a: optional(string()), b: optional(string()) }), ['a', 'b']);
    assert.deepEqual(validate(one, { a: 'x' }), { a: 'x' });
    assert.throws(() => validate(one, {}), /must set one of a, b/);
    assert.throws(() => validate(one, { a: 'x', b: 'y' }), /must set only one of a, b, got a and b/);
  });

  test('output never carries __proto__ or unknown keys', () => {
    const evil = JSON.parse('{"kind":"Thing","mode":"a","name":"abc","backends":[{"service":"x","weight":1}],"__proto__":{"polluted":true}}');
    const issues = issuesOf(evil);
    assert.equal(issues[0]!.path, '__proto__');
    assert.equal(({} as Record<string, unknown>)['polluted'], undefined);
  });

  test('suggest finds case and edit-distance near misses only', () => {
    assert.equal(suggest('Prefix', ['exact', 'prefix']), 'prefix');
    assert.equal(suggest('prefx', ['exact', 'prefix']), 'prefix');
    assert.equal(suggest('zzz', ['exact', 'prefix']), undefined);
  });
});
