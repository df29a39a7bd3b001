import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';
import { describe, it } from 'node:test';
import { CsrError, createCsr, parseCsr, uriGeneralNames, type CsrRejectReason } from './csr.js';
import { bitString, boolean, explicit, nullValue, octetString, oid, seq, set, smallInteger, tlv, utf8String } from './der.js';
import { generateKeyPair, signatureAlgorithmFor, spkiOf, type KeyPair } from './keys.js';
import { OID } from './oids.js';
import { toPem } from './pem.js';

const ID = 'spiffe://amime.test/ns/default/sa/web';
const ec = generateKeyPair('ec-p256');
const rsa = generateKeyPair('rsa-2048');

const uri = (u: string): Buffer => tlv(0x86, Buffer.from(u, 'ascii'));
const dns = (d: string): Buffer => tlv(0x82, Buffer.from(d, 'ascii'));

interface CsrShape {
  key?: { privateKey: KeyObject; spki: Buffer };
  /** GeneralName DERs for the SAN; null leaves the SAN out. */
  sans?: Buffer[] | null;
  sigAlg?: Buffer;
  version?: number;
  /** Replaces the whole Extensions list. */
  extensions?: Buffer[];
}

/** A CSR laid out field by field, so each test can break exactly one thing. */
function buildCsr(shape: CsrShape = {}): Buffer {
  const key = shape.key ?? ec;
  const sans = shape.sans === undefined ? [uri(ID)] : shape.sans;
  const exts = shape.extensions ?? (sans ? [seq(oid(OID.subjectAltName), octetString(seq(...sans)))] : []);
  const attrs = exts.length > 0 ? [seq(oid(OID.extensionRequest), set(seq(...exts)))] : [];
  const info = seq(
    smallInteger(shape.version ?? 0),
    seq(set(seq(oid(OID.organization), utf8String('amime')))),
    key.spki,
    explicit(0, ...attrs),
  );
  const sigAlg = shape.sigAlg ?? signatureAlgorithmFor('ec-p256');
  const digest = key.privateKey.asymmetricKeyType === 'ed25519' ? null : 'sha256'; // EdDSA hashes internally
  return seq(info, sigAlg, bitString(sign(digest, info, key.privateKey)));
}

function keyOf(pair: ReturnType<typeof generateKeyPairSync>): { privateKey: KeyObject; spki: Buffer } {
  return { privateKey: pair.privateKey, spki: spkiOf(pair.publicKey) };
}

describe('createCsr + parseCsr', () => {
  for (const pair of [ec, rsa] as KeyPair[]) {
    it(`round-trips a ${pair.algorithm} request with its SPIFFE ID`, () => {
      const der = createCsr(pair, ID);
      const csr = parseCsr(der);
      assert.deepEqual(csr.der, der);
      assert.deepEqual(csr.spki, pair.spki);
      assert.equal(csr.keyAlgorithm, pair.algorithm);
      assert.ok(csr.publicKey.equals(pair.publicKey));
      assert.deepEqual(csr.uris, [ID]);
      assert.equal(csr.sanCount, 1);
      assert.equal(csr.spiffeId.toString(), ID);
      assert.deepEqual([...csr.extensions.keys()], [OID.subjectAltName]);
      assert.equal(csr.extensions.get(OID.subjectAltName)!.critical, false);
      assert.deepEqual(csr.extensions.get(OID.subjectAltName)!.value, uriGeneralNames(ID));
    });
  }

  it('accepts PEM as a string and as a Buffer', () => {
    const der = createCsr(ec, ID);
    const pem = toPem('CERTIFICATE REQUEST', der);
    assert.deepEqual(parseCsr(pem).der, der);
    assert.deepEqual(parseCsr(Buffer.from(pem)).der, der);
  });

  it('createCsr refuses an invalid SPIFFE ID', () => {
    assert.throws(() => createCsr(ec, 'spiffe://Amime.test/x'), { code: 'AMIME_ERR_IDENTITY_SPIFFE_ID' });
  });

  it('accepts RSA signatures with absent parameters (some encoders omit the NULL)', () => {
    const csr = parseCsr(buildCsr({ key: rsa, sigAlg: seq(oid(OID.sha256WithRsa)) }));
    assert.equal(csr.keyAlgorithm, 'rsa-2048');
  });

  it('ignores attributes other than extensionRequest and returns other requested extensions', () => {
    const bc = seq(oid(OID.basicConstraints), boolean(true), octetString(seq(boolean(true))));
    const csr = parseCsr(buildCsr({ extensions: [bc, seq(oid(OID.subjectAltName), octetString(seq(uri(ID))))] }));
    // informational only: the CA never copies requested extensions
    assert.deepEqual(csr.extensions.get(OID.basicConstraints), { critical: true, value: seq(boolean(true)) });
  });
});

describe('parseCsr refuses', () => {
  const valid = createCsr(ec, ID);
  const flipped = Buffer.from(valid);
  flipped[flipped.length - 1]! ^= 0x01;
  // same length, different (still valid) SPIFFE ID: the signature no longer covers it
  const tampered = Buffer.from(valid.toString('latin1').replace('/sa/web', '/sa/wex'), 'latin1');
  const p384 = keyOf(generateKeyPairSync('ec', { namedCurve: 'secp384r1' }));
  const rsa1024 = keyOf(generateKeyPairSync('rsa', { modulusLength: 1024 }));
  const ed = keyOf(generateKeyPairSync('ed25519'));
  const offCurve = Buffer.from(ec.spki);
  offCurve[offCurve.length - 1]! ^= 0x01;

  const cases: [string, () => Buffer | string, CsrRejectReason, RegExp][] = [
    ['random garbage', () => randomBytes(200), 'malformed', /neither DER nor valid PEM/],
    ['an empty buffer', () => Buffer.alloc(0), 'malformed', /neither DER nor valid PEM|exactly one/],
    ['a non-PEM string', () => 'hello', 'malformed', /neither DER nor valid PEM/],
    ['a certificate PEM instead of a request', () => toPem('CERTIFICATE', valid), 'malformed', /found 0/],
    ['two requests in one PEM', () => toPem('CERTIFICATE REQUEST', valid).repeat(2), 'malformed', /found 2/],
    ['truncated DER', () => valid.subarray(0, valid.length - 10), 'malformed', /truncated/],
    ['truncated PEM', () => toPem('CERTIFICATE REQUEST', valid).split('\n').slice(0, 3).join('\n'), 'malformed', /no END line/],
    ['trailing bytes', () => Buffer.concat([valid, Buffer.from([0])]), 'malformed', /trailing bytes/],
    ['version 2', () => buildCsr({ version: 1 }), 'malformed', /version must be 0/],
    ['critical=FALSE encoded', () => buildCsr({ extensions: [seq(oid(OID.subjectAltName), boolean(false), octetString(seq(uri(ID))))] }), 'malformed', /must be omitted/],
    ['a flipped signature byte', () => flipped, 'bad_signature', /does not verify/],
    ['a SAN changed after signing', () => tampered, 'bad_signature', /does not verify/],
    ['a signature by another key', () => buildCsr({ key: { privateKey: rsa.privateKey, spki: ec.spki } }), 'bad_signature', /does not verify/],
    ['no SAN', () => buildCsr({ sans: null }), 'san_count', /requests no subjectAltName/],
    ['two URI SANs', () => buildCsr({ sans: [uri(ID), uri(`${ID}2`)] }), 'san_count', /2 URI SAN\(s\) and 0 other/],
    ['a URI and a DNS SAN', () => buildCsr({ sans: [uri(ID), dns('web.example.com')] }), 'san_count', /1 URI SAN\(s\) and 1 other/],
    ['only a DNS SAN', () => buildCsr({ sans: [dns('web.example.com')] }), 'san_count', /0 URI SAN\(s\) and 1 other/],
    ['a non-SPIFFE URI', () => buildCsr({ sans: [uri('https://amime.test/web')] }), 'bad_spiffe_id', /rule scheme/],
    ['an uppercase trust domain', () => buildCsr({ sans: [uri('spiffe://Amime.test/web')] }), 'bad_spiffe_id', /rule trust_domain_chars/],
    ['a P-384 key', () => buildCsr({ key: p384 }), 'unsupported_key', /curve 1\.3\.132\.0\.34 is not supported/],
    ['an RSA-1024 key', () => buildCsr({ key: rsa1024, sigAlg: signatureAlgorithmFor('rsa-2048') }), 'unsupported_key', /1024 bits/],
    ['an Ed25519 key', () => buildCsr({ key: ed }), 'unsupported_key', /1\.3\.101\.112/],
    ['a P-256 point off the curve', () => buildCsr({ key: { privateKey: ec.privateKey, spki: offCurve } }), 'malformed', /cannot be imported/],
    ['ecdsa-with-SHA384', () => buildCsr({ sigAlg: seq(oid('1.2.840.10045.4.3.3')) }), 'unsupported_algorithm', /1\.2\.840\.10045\.4\.3\.3/],
    ['an RSA algorithm on an EC key', () => buildCsr({ sigAlg: signatureAlgorithmFor('rsa-2048') }), 'unsupported_algorithm', /ec-p256/],
    ['ECDSA with parameters', () => buildCsr({ sigAlg: seq(oid(OID.ecdsaWithSha256), nullValue()) }), 'malformed', /invalid parameters/],
    ['an oversized DER request', () => buildCsr({ sans: [uri(`${ID}/${'a'.repeat(900)}`)] }), 'too_large', /exceeds the limit of 1024 bytes/],
    ['an oversized PEM text', () => 'A'.repeat(2049), 'too_large', /2049 bytes exceeds/],
  ];

  for (const [name, input, reason, message] of cases) {
    it(name, () => {
      assert.throws(
        () => parseCsr(input(), { maxBytes: 1024 }),
        (err: unknown) => {
          assert.ok(err instanceof CsrError, `expected CsrError, got ${String(err)}`);
          assert.equal(err.code, 'AMIME_ERR_IDENTITY_CSR');
          assert.equal(err.reason, reason, err.message);
          assert.match(err.message, message);
          return true;
        },
      );
    });
  }

  it('the valid request used above is accepted (the table tests what it claims)', () => {
    assert.equal(parseCsr(valid, { maxBytes: 1024 }).spiffeId.toString(), ID);
    assert.equal(parseCsr(buildCsr(), { maxBytes: 1024 }).spiffeId.toString(), ID);
  });
});
