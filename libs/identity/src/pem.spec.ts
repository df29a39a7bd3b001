import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { PemError, certsToPem, fromPem, fromPemSingle, toPem } from './pem.js';

describe('toPem', () => {
  it('writes 64-character base64 lines between BEGIN and END, ending with a newline', () => {
    const der = randomBytes(100);
    const pem = toPem('CERTIFICATE', der);
    const lines = pem.split('\n');
    // 100 bytes = 136 base64 characters = 64 + 64 + 8
    assert.deepEqual(
      lines.map((l) => (l.startsWith('-----') ? l : l.length)),
      ['-----BEGIN CERTIFICATE-----', 64, 64, 8, '-----END CERTIFICATE-----', 0],
    );
    assert.deepEqual(fromPem(pem, 'CERTIFICATE'), [der]);
  });

  it('refuses labels that are not PEM labels', () => {
    assert.throws(() => toPem('certificate', Buffer.from([1])), PemError);
    assert.throws(() => toPem('A--B', Buffer.from([1])), PemError);
  });

  it('certsToPem concatenates blocks in order', () => {
    const a = randomBytes(10);
    const b = randomBytes(20);
    assert.deepEqual(fromPem(certsToPem([a, b]), 'CERTIFICATE'), [a, b]);
  });
});

describe('fromPem', () => {
  const a = randomBytes(300);
  const b = randomBytes(1);
  const key = randomBytes(50);

  it('round-trips, returns every block of the label in order and skips other labels', () => {
    const text = toPem('CERTIFICATE', a) + toPem('PRIVATE KEY', key) + '\n\n' + toPem('CERTIFICATE', b);
    assert.deepEqual(fromPem(text, 'CERTIFICATE'), [a, b]);
    assert.deepEqual(fromPem(text, 'PRIVATE KEY'), [key]);
    assert.deepEqual(fromPem(text, 'CERTIFICATE REQUEST'), []);
    assert.deepEqual(fromPem('', 'CERTIFICATE'), []);
  });

  it('accepts CRLF line endings and other line lengths', () => {
    const b64 = a.toString('base64');
    const text = `-----BEGIN CERTIFICATE-----\r\n${b64.slice(0, 76)}\r\n${b64.slice(76)}\r\n-----END CERTIFICATE-----\r\n`;
    assert.deepEqual(fromPem(text, 'CERTIFICATE'), [a]);
  });

  const good = toPem('CERTIFICATE', a);
  const body = good.split('\n').slice(1, -2);
  const refused: [string, string, RegExp][] = [
    ['text before a block', `hello\n${good}`, /line 1: expected "-----BEGIN/],
    ['text after a block', `${good}trailing`, /expected "-----BEGIN/],
    ['a missing END line', good.replace('-----END CERTIFICATE-----\n', ''), /no END line/],
    ['mismatched labels', good.replace('END CERTIFICATE', 'END PRIVATE KEY'), /does not match/],
    ['a non-base64 character', good.replace(body[1]!, `${body[1]!.slice(0, 10)}!${body[1]!.slice(11)}`), /not a base64 line/],
    ['padding in the middle', `-----BEGIN CERTIFICATE-----\nAA==\nAAAA\n-----END CERTIFICATE-----\n`, /not valid base64/],
    ['a body that is not a multiple of 4', `-----BEGIN CERTIFICATE-----\nAAAAA\n-----END CERTIFICATE-----\n`, /not valid base64/],
    ['an empty body', `-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n`, /not valid base64/],
    ['RFC 1421 headers', `-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\nAAAA\n-----END RSA PRIVATE KEY-----\n`, /headers/],
    ['a lowercase label', good.replace(/CERTIFICATE/g, 'certificate'), /expected "-----BEGIN/],
  ];
  for (const [name, text, message] of refused) {
    it(`refuses ${name}`, () => {
      assert.throws(() => fromPem(text, 'CERTIFICATE'), (err: unknown) => {
        assert.ok(err instanceof PemError);
        assert.equal(err.code, 'AMIME_ERR_IDENTITY_PEM');
        assert.match(err.message, message);
        return true;
      });
    });
  }

  it('fromPemSingle wants exactly one block', () => {
    assert.deepEqual(fromPemSingle(good, 'CERTIFICATE'), a);
    assert.throws(() => fromPemSingle(good + good, 'CERTIFICATE'), /exactly one CERTIFICATE PEM block, found 2/);
    assert.throws(() => fromPemSingle('', 'CERTIFICATE'), /found 0/);
  });
});
