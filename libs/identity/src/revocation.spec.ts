import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  EMPTY_REVOCATIONS,
  RevocationError,
  createRevocationSet,
  normalizeSerial,
  parseRevocationSet,
  revocationSetToJson,
  serializeRevocationSet,
} from './revocation.js';
import { parseCertificate } from './parse-certificate.js';
import { createRoot } from './testing/cert-factory.js';

describe('normalizeSerial', () => {
  const cases: [string, string][] = [
    ['C0FFEE', 'c0ffee'],
    ['00c0ffee', 'c0ffee'],
    ['0000a1b', '0a1b'], // odd length: a whole leading byte, as serialHex keeps it
    ['a', '0a'],
    ['00', '00'],
    ['0', '00'],
    ['01:02:0A', '01020a'],
    ['7f'.repeat(20), '7f'.repeat(20)],
  ];
  for (const [input, want] of cases) {
    test(`${input} → ${want}`, () => assert.equal(normalizeSerial(input), want));
  }
  for (const input of ['', 'xyz', '0x1f', '12 34', '-1', '7f'.repeat(21)]) {
    test(`refuses ${JSON.stringify(input)}`, () => assert.throws(() => normalizeSerial(input), RevocationError));
  }

  test('matches ParsedCertificate.serialHex for a leading-zero-nibble serial', async () => {
    const root = await createRoot({ serialHex: '0abcdef012' });
    const parsed = parseCertificate(root.der);
    assert.equal(parsed.serialHex, '0abcdef012');
    assert.ok(createRevocationSet({ version: 1, serials: ['ABCDEF012'] }).serials.has(parsed.serialHex));
  });
});

describe('RevocationSet', () => {
  test('create normalizes serials and validates SPIFFE IDs', () => {
    const set = createRevocationSet({ version: 4, serials: ['00FF', 'ff', '1'], spiffeIds: ['spiffe://amime.test/ns/a/sa/b'] });
    assert.equal(set.version, 4);
    assert.deepEqual([...set.serials].sort(), ['01', 'ff']);
    assert.ok(set.spiffeIds.has('spiffe://amime.test/ns/a/sa/b'));
    assert.equal(EMPTY_REVOCATIONS.serials.size, 0);
  });

  test('JSON round-trip, sorted so equal sets serialize equally', () => {
    const a = createRevocationSet({ version: 2, serials: ['bb', 'aa'], spiffeIds: ['spiffe://t/z', 'spiffe://t/a'] });
    const text = serializeRevocationSet(a);
    assert.equal(text, '{"version":2,"serials":["aa","bb"],"spiffeIds":["spiffe://t/a","spiffe://t/z"]}');
    const b = parseRevocationSet(text);
    assert.deepEqual(revocationSetToJson(b), revocationSetToJson(a));
    assert.deepEqual(revocationSetToJson(parseRevocationSet(JSON.parse(text))), revocationSetToJson(a));
  });

  const bad: { name: string; json: unknown; field: string }[] = [
    { name: 'not JSON', json: '{', field: '$' },
    { name: 'an array', json: [], field: '$' },
    { name: 'null', json: null, field: '$' },
    { name: 'missing version', json: { serials: [], spiffeIds: [] }, field: 'version' },
    { name: 'negative version', json: { version: -1, serials: [], spiffeIds: [] }, field: 'version' },
    { name: 'string version', json: { version: '1', serials: [], spiffeIds: [] }, field: 'version' },
    { name: 'serials missing', json: { version: 1, spiffeIds: [] }, field: 'serials' },
    { name: 'spiffeIds not an array', json: { version: 1, serials: [], spiffeIds: 'spiffe://t/a' }, field: 'spiffeIds' },
    { name: 'non-hex serial', json: { version: 1, serials: ['01', 'zz'], spiffeIds: [] }, field: 'serials[1]' },
    { name: 'numeric serial', json: { version: 1, serials: [12], spiffeIds: [] }, field: 'serials[0]' },
    { name: 'bad SPIFFE ID', json: { version: 1, serials: [], spiffeIds: ['https://t/a'] }, field: 'spiffeIds[0]' },
    { name: 'unknown field', json: { version: 1, serials: [], spiffeIds: [], crl: [] }, field: 'crl' },
  ];
  for (const c of bad) {
    test(`refuses ${c.name}, naming ${c.field}`, () => {
      assert.throws(
        () => parseRevocationSet(c.json),
        (e: unknown) => e instanceof RevocationError && e.field === c.field && e.code === 'AMIME_ERR_IDENTITY_REVOCATION',
      );
    });
  }
});
