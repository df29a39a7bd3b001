import { test } from 'node:test';
import assert from 'node:assert/strict';
import { keyValues, render, table, when } from './output.js';

test('table pads columns to the widest cell and capitalises the header', () => {
  assert.equal(table(['node', 'spiffe id'], [['vm-a', 'spiffe://t/ns/a/sa/b'], ['long-node', 'x']]), 'NODE       SPIFFE ID\nvm-a       spiffe://t/ns/a/sa/b\nlong-node  x\n');
  assert.equal(table(['a'], []), 'A\n');
});

test('keyValues aligns values', () => {
  assert.equal(keyValues([['a', '1'], ['long', '2']]), 'a:     1\nlong:  2\n');
});

test('render: json and yaml from data, table from human, raw for every format', () => {
  const out = { data: { a: 1 }, human: 'A 1' };
  assert.equal(render(out, 'json'), '{\n  "a": 1\n}\n');
  assert.equal(render(out, 'yaml'), 'a: 1\n');
  assert.equal(render(out, 'table'), 'A 1\n');
  assert.equal(render({ raw: 'PEM' }, 'json'), 'PEM\n');
  assert.equal(render({ raw: '' }, 'json'), '', 'a streaming command printed its output already');
  assert.equal(render({ data: { b: [1] } }, 'table'), 'b:\n  - 1\n', 'no human form: YAML for people');
});

test('when says how far a time is from now', () => {
  const now = Date.parse('2030-01-01T00:00:00.000Z');
  assert.equal(when('2030-01-01T00:10:00.000Z', now), '2030-01-01T00:10:00.000Z (in 10m)');
  assert.equal(when('2029-12-30T00:00:00.000Z', now), '2029-12-30T00:00:00.000Z (2d ago)');
  assert.equal(when(undefined, now), '-');
});
