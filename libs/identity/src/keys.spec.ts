import assert from 'node:assert/strict';
import { createPublicKey, generateKeyPairSync, sign, verify } from 'node:crypto';
import { describe, it } from 'node:test';
import {
  KeyError,
  exportPrivateKeyPem,
  generateKeyPair,
  importPrivateKeyPem,
  inspectSpki,
  keyAlgorithmOf,
  keyPairFromPrivateKey,
  publicKeyFromSpki,
  signatureAlgorithmFor,
  spkiOf,
} from './keys.js';
import { bitString, nullValue, oid, seq, unsignedInteger } from './der.js';
import { OID } from './oids.js';
import { toPem } from './pem.js';

describe('generateKeyPair', () => {
  for (const algorithm of ['ec-p256', 'rsa-2048'] as const) {
    it(`makes a working ${algorithm} pair with its SPKI`, () => {
      const pair = generateKeyPair(algorithm);
      assert.equal(pair.algorithm, algorithm);
      assert.equal(pair.privateKey.type, 'private');
      assert.equal(pair.publicKey.type, 'public');
      assert.deepEqual(pair.spki, pair.publicKey.export({ type: 'spki', format: 'der' }));
      assert.equal(keyAlgorithmOf(pair.privateKey), algorithm);
      assert.equal(keyAlgorithmOf(pair.publicKey), algorithm);
      const sig = sign('sha256', Buffer.from('x'), pair.privateKey);
      assert.ok(verify('sha256', Buffer.from('x'), pair.publicKey, sig));
    });
  }

  it('refuses an unknown algorithm', () => {
    assert.throws(() => generateKeyPair('ec-p384' as never), (e: unknown) => e instanceof KeyError && e.reason === 'unsupported_key');
  });
});

describe('keyAlgorithmOf', () => {
  it('accepts RSA-3072', () => {
    const { publicKey } = generateKeyPairSync('rsa', { modulusLength: 3072 });
    assert.equal(keyAlgorithmOf(publicKey), 'rsa-3072');
  });

  const refused: [string, () => ReturnType<typeof generateKeyPairSync>, RegExp][] = [
    ['P-384', () => generateKeyPairSync('ec', { namedCurve: 'secp384r1' }), /curve secp384r1 is not supported/],
    ['RSA-1024', () => generateKeyPairSync('rsa', { modulusLength: 1024 }), /1024 bits is not supported/],
    ['RSA with e=3', () => generateKeyPairSync('rsa', { modulusLength: 2048, publicExponent: 3 }), /exponent 3/],
    ['Ed25519', () => generateKeyPairSync('ed25519'), /ed25519 is not supported/],
    ['RSA-PSS', () => generateKeyPairSync('rsa-pss', { modulusLength: 2048 }), /rsa-pss is not supported/],
  ];
  for (const [name, make, message] of refused) {
    it(`refuses ${name}`, () => {
      const { publicKey } = make();
      assert.throws(() => keyAlgorithmOf(publicKey), (e: unknown) => {
        assert.ok(e instanceof KeyError);
        assert.equal(e.code, 'AMIME_ERR_IDENTITY_KEY');
        assert.equal(e.reason, 'unsupported_key');
        assert.match(e.message, message);
        return true;
      });
    });
  }
});

describe('private key PEM', () => {
  it('round-trips PKCS#8 and restores the whole pair', () => {
    for (const algorithm of ['ec-p256', 'rsa-2048'] as const) {
      const pair = generateKeyPair(algorithm);
      const pem = exportPrivateKeyPem(pair.privateKey);
      assert.match(pem, /^-----BEGIN PRIVATE KEY-----\n/);
      const back = importPrivateKeyPem(pem);
      assert.equal(back.algorithm, algorithm);
      assert.deepEqual(back.spki, pair.spki);
      const sig = sign('sha256', Buffer.from('y'), back.privateKey);
      assert.ok(verify('sha256', Buffer.from('y'), pair.publicKey, sig));
    }
  });

  it('will not export a public key', () => {
    assert.throws(() => exportPrivateKeyPem(generateKeyPair('ec-p256').publicKey), KeyError);
  });

  const ec = generateKeyPair('ec-p256');
  const pkcs8 = exportPrivateKeyPem(ec.privateKey);
  const refused: [string, string, RegExp][] = [
    ['legacy SEC1 "EC PRIVATE KEY"', ec.privateKey.export({ type: 'sec1', format: 'pem' }) as string, /found 0/],
    ['two keys', pkcs8 + pkcs8, /found 2/],
    ['garbage', 'not a key', /expected "-----BEGIN/],
    ['a PRIVATE KEY block that is not PKCS#8', toPem('PRIVATE KEY', Buffer.from('3003020100', 'hex')), /not a valid PKCS#8 key/],
  ];
  for (const [name, pem, message] of refused) {
    it(`import refuses ${name}`, () => {
      assert.throws(() => importPrivateKeyPem(pem), (e: unknown) => {
        assert.ok(e instanceof KeyError);
        assert.equal(e.reason, 'malformed');
        assert.match(e.message, message);
        return true;
      });
    });
  }

  it('import refuses unsupported algorithms', () => {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'secp384r1' });
    assert.throws(() => keyPairFromPrivateKey(privateKey), (e: unknown) => e instanceof KeyError && e.reason === 'unsupported_key');
  });
});

describe('signatureAlgorithmFor', () => {
  it('encodes ecdsa-with-SHA256 without parameters and sha256WithRSAEncryption with NULL', () => {
    assert.equal(signatureAlgorithmFor('ec-p256').toString('hex'), '300a06082a8648ce3d040302');
    assert.equal(signatureAlgorithmFor('rsa-2048').toString('hex'), '300d06092a864886f70d01010b0500');
    assert.equal(signatureAlgorithmFor('rsa-4096').toString('hex'), '300d06092a864886f70d01010b0500');
  });
});

describe('inspectSpki + publicKeyFromSpki (the CSR fast path)', () => {
  it('reads P-256 and RSA 2048/3072 keys and imports them as the same key', () => {
    const keys = [
      generateKeyPair('ec-p256').publicKey,
      generateKeyPair('rsa-2048').publicKey,
      generateKeyPairSync('rsa', { modulusLength: 3072 }).publicKey,
    ];
    for (const key of keys) {
      const spki = spkiOf(key);
      const info = inspectSpki(spki);
      assert.equal(info.algorithm, keyAlgorithmOf(key));
      assert.ok(publicKeyFromSpki(info).equals(key));
      assert.ok(spki.subarray(spki.length - info.bits.length).equals(info.bits), 'bits are the BIT STRING tail');
    }
  });

  const ec = generateKeyPair('ec-p256');
  const point = ec.spki.subarray(ec.spki.length - 65);
  const ecSpki = (bits: Buffer) => seq(seq(oid(OID.ecPublicKey), oid(OID.prime256v1)), bitString(bits));
  const compressed = Buffer.concat([Buffer.from([2 + (point[64]! & 1)]), point.subarray(1, 33)]);
  const offCurve = Buffer.from(point);
  offCurve[64]! ^= 0x01;
  const rsaKey = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ format: 'jwk' });
  const n = Buffer.from(rsaKey.n!, 'base64url');
  const rsaSpki = (params: Buffer[], modulus: Buffer, e = Buffer.from([1, 0, 1])) =>
    seq(seq(oid(OID.rsaEncryption), ...params), bitString(seq(unsignedInteger(modulus), unsignedInteger(e))));

  it('control: the hand-built SPKIs below are accepted when well-formed', () => {
    assert.equal(inspectSpki(ecSpki(point)).algorithm, 'ec-p256');
    assert.equal(inspectSpki(rsaSpki([nullValue()], n)).algorithm, 'rsa-2048');
    assert.ok(inspectSpki(rsaSpki([nullValue()], n)).bits.length > 256);
  });

  const refused: [string, () => unknown, 'unsupported_key' | 'malformed', RegExp][] = [
    ['a compressed P-256 point', () => inspectSpki(ecSpki(compressed)), 'unsupported_key', /uncompressed/],
    ['a P-384 key', () => inspectSpki(spkiOf(generateKeyPairSync('ec', { namedCurve: 'secp384r1' }).publicKey)), 'unsupported_key', /1\.3\.132\.0\.34/],
    ['RSA without NULL parameters', () => inspectSpki(rsaSpki([], n)), 'malformed', /must be NULL/],
    ['RSA-2047', () => inspectSpki(rsaSpki([nullValue()], Buffer.concat([Buffer.from([0x7f]), n.subarray(1)]))), 'unsupported_key', /2047 bits/],
    ['RSA with e=3', () => inspectSpki(rsaSpki([nullValue()], n, Buffer.from([3]))), 'unsupported_key', /exponent 3/],
    ['trailing bytes', () => inspectSpki(Buffer.concat([rsaSpki([nullValue()], n), Buffer.from([0])])), 'malformed', /trailing/],
    ['an Ed25519 key', () => inspectSpki(spkiOf(generateKeyPairSync('ed25519').publicKey)), 'unsupported_key', /1\.3\.101\.112/],
    ['a point off the curve (on import)', () => publicKeyFromSpki(inspectSpki(ecSpki(offCurve))), 'malformed', /cannot be imported/],
  ];
  for (const [name, run, reason, message] of refused) {
    it(`refuses ${name}`, () => {
      assert.throws(run, (e: unknown) => {
        assert.ok(e instanceof KeyError, String(e));
        assert.equal(e.reason, reason, e.message);
        assert.match(e.message, message);
        return true;
      });
    });
  }

  it('agrees with OpenSSL on the RSA key it imports', () => {
    const spki = rsaSpki([nullValue()], n);
    assert.ok(publicKeyFromSpki(inspectSpki(spki)).equals(createPublicKey({ key: spki, format: 'der', type: 'spki' })));
  });
});
