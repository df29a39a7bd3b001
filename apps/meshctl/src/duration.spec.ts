import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatDuration, parseDuration } from './duration.js';

const parses: [string, number | undefined][] = [
  ['600', 600],
  ['0', 0],
  ['45s', 45],
  ['10m', 600],
  ['1h30m', 5400],
  ['7d', 604800],
  ['1d2h3m4s', 93784],
  ['', undefined],
  ['10', 10],
  ['-5', undefined],
  ['1.5h', undefined],
  ['10 m', undefined],
  ['m', undefined],
  ['10x', undefined],
  ['ten', undefined],
];
for (const [text, seconds] of parses) {
  test(`parseDuration(${JSON.stringify(text)}) = ${seconds}`, () => assert.equal(parseDuration(text), seconds));
}

const formats: [number, string][] = [
  [0, '0s'],
  [59, '59s'],
  [600, '10m'],
  [5400, '1h30m'],
  [93784, '1d2h3m4s'],
  [-3, '0s'],
];
for (const [seconds, text] of formats) {
  test(`formatDuration(${seconds}) = ${text}`, () => assert.equal(formatDuration(seconds), text));
}
