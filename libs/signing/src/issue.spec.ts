// The X.509-SVID profile, asserted field by field for every engine and key
// type, plus the CA certificates and the issuer checks.
import assert from 'node:assert/strict';
import { X509Certificate, createHash, generateKeyPairSync, verify } from 'node:crypto';
import { describe, it } from 'node:test';
import { forgeEngine } from './engines/forge.js';
import { peculiarEngine } from './engines/peculiar.js';
import {
  IssueError,
  createIntermediateCa,
  createRootCa,
  derEngine,
  issueSvid,
  prepareIssuer,
  type IssueErrorReason,
  type IssuerKey,
  type SvidEngineFactory,
} from './issue.js';
import { type KeyAlgorithm, type KeyPair, KeyUsageBit, OID, type ParsedCertificate, der, generateKeyPair, parseCertificate, spkiOf } from '@amime/identity';

const { children, readRoot, whole } = der;

const TD = 'amime.test';
const ID = `spiffe://${TD}/ns/default/sa/web`;
const NOW = new Date('2030-06-01T12:00:00.250Z');
const HOUR = 3600;
const DAY = 24 * HOUR;

interface Pki {
  root: Buffer;
  rootKey: KeyPair;
  inter: Buffer;
  interKey: KeyPair;
  issuer: IssuerKey;
}

function makePki(alg: KeyAlgorithm, interTtl = 30 * DAY): Pki {
  const rootKey = generateKeyPair(alg);
  const root = createRootCa({ trustDomain: TD, keyPair: rootKey, ttlSeconds: 365 * DAY, now: NOW });
  const interKey = generateKeyPair(alg);
  const inter = createIntermediateCa({
    trustDomain: TD,
    keyPair: interKey,
    parent: { certDer: root, privateKey: rootKey.privateKey },
    ttlSeconds: interTtl,
    now: NOW,
  });
  return { root, rootKey, inter, interKey, issuer: { certDer: inter, privateKey: interKey.privateKey } };
}

const pkis = { 'ec-p256': makePki('ec-p256'), 'rsa-2048': makePki('rsa-2048') };
const leafKeys = { 'ec-p256': generateKeyPair('ec-p256'), 'rsa-2048': generateKeyPair('rsa-2048') };

const bit = (b: number): number => 1 << b;

/** The signatureAlgorithm field's exact bytes (parameters included). */
function sigAlgBytes(der: Buffer): string {
  return whole(children(readRoot(der))[1]!).toString('hex');
}
const ECDSA_SHA256 = '300a06082a8648ce3d040302';
const RSA_SHA256 = '300d06092a864886f70d01010b0500';

/** Every rule of the SVID profile this CA promises, one assertion each. */
function assertSvidProfile(der: Buffer, issuerDer: Buffer, leafKey: KeyPair, ttlSeconds: number): ParsedCertificate {
  const c = parseCertificate(der);
  const issuer = parseCertificate(issuerDer);
  assert.equal(c.version, 3, 'v3');
  const serial = Buffer.from(c.serialHex.length % 2 ? `0${c.serialHex}` : c.serialHex, 'hex');
  assert.ok(serial.length >= 8 && serial.length <= 16, `serial of ${serial.length} bytes: 128 random bits`);
  assert.equal(
    sigAlgBytes(der),
    issuer.publicKeyAlgorithm === OID.ecPublicKey ? ECDSA_SHA256 : RSA_SHA256,
    'signature algorithm follows the issuer key (RSA with NULL parameters)',
  );
  assert.deepEqual(c.issuerDer, issuer.subjectDer, 'issuer is the issuer subject, byte for byte');
  assert.equal(c.notBefore.getTime(), Math.floor(NOW.getTime() / 1000) * 1000 - 60_000, 'notBefore = now - 60 s');
  assert.equal(c.notAfter.getTime(), Math.floor(NOW.getTime() / 1000) * 1000 + ttlSeconds * 1000, 'notAfter = now + ttl');
  assert.notEqual(c.subjectDer.toString('hex'), '3000', 'subject is not empty');
  assert.equal(new X509Certificate(der).subject, 'O=amime');
  assert.deepEqual(c.spki, leafKey.spki, 'the requested key');

  assert.deepEqual(
    [...c.extensions.keys()].sort(),
    [
      OID.basicConstraints,
      OID.keyUsage,
      OID.extKeyUsage,
      OID.subjectKeyIdentifier,
      OID.authorityKeyIdentifier,
      OID.subjectAltName,
    ].sort(),
    'exactly the profile extensions',
  );
  const bc = c.extensions.get(OID.basicConstraints)!;
  assert.equal(bc.critical, true, 'basicConstraints critical');
  assert.equal(bc.value.toString('hex'), '3000', 'basicConstraints CA=false, as the empty SEQUENCE');
  assert.deepEqual(c.basicConstraints, { ca: false });

  assert.equal(c.extensions.get(OID.keyUsage)!.critical, true, 'keyUsage critical');
  const rsaLeaf = leafKey.algorithm !== 'ec-p256';
  assert.equal(
    c.keyUsage,
    bit(KeyUsageBit.digitalSignature) | (rsaLeaf ? bit(KeyUsageBit.keyEncipherment) : 0),
    'digitalSignature (+keyEncipherment for RSA), never keyCertSign/cRLSign',
  );
  assert.equal(c.extensions.get(OID.keyUsage)!.value.toString('hex'), rsaLeaf ? '030205a0' : '03020780', 'minimal BIT STRING');

  assert.deepEqual(c.extKeyUsage, [OID.serverAuth, OID.clientAuth]);
  const sha1 = createHash('sha1').update(c.publicKeyBits).digest();
  assert.deepEqual(c.subjectKeyId, sha1, 'SKI = SHA-1 of the subjectPublicKey bits');
  assert.deepEqual(c.authorityKeyId, issuer.subjectKeyId, 'AKI = issuer SKI');
  assert.equal(c.extensions.get(OID.subjectKeyIdentifier)!.critical, false);
  assert.equal(c.extensions.get(OID.authorityKeyIdentifier)!.critical, false);

  assert.equal(c.sanCount, 1, 'exactly one SAN');
  assert.deepEqual(c.uris, [ID], 'the SPIFFE ID as URI SAN');
  assert.equal(c.extensions.get(OID.subjectAltName)!.critical, false, 'SAN not critical (subject is non-empty)');

  const issuerKey = new X509Certificate(issuerDer).publicKey;
  assert.ok(verify('sha256', c.tbs, issuerKey, c.signature), 'signature over tbs verifies under the issuer key');
  assert.ok(new X509Certificate(der).verify(issuerKey), 'node:crypto verifies it too');
  return c;
}

const combos: [string, SvidEngineFactory, KeyAlgorithm, KeyAlgorithm][] = [
  ['der', derEngine, 'ec-p256', 'ec-p256'],
  ['der', derEngine, 'ec-p256', 'rsa-2048'],
  ['der', derEngine, 'rsa-2048', 'rsa-2048'],
  ['der', derEngine, 'rsa-2048', 'ec-p256'],
  ['peculiar', peculiarEngine, 'ec-p256', 'ec-p256'],
  ['peculiar', peculiarEngine, 'rsa-2048', 'ec-p256'],
  ['forge', forgeEngine, 'rsa-2048', 'rsa-2048'],
];

describe('SVID profile, per engine', () => {
  for (const [name, factory, issuerAlg, leafAlg] of combos) {
    it(`${name} engine, ${issuerAlg} issuer, ${leafAlg} leaf: every field`, () => {
      const engine = factory(pkis[issuerAlg].issuer);
      assert.equal(engine.name, name);
      const leafKey = leafKeys[leafAlg];
      const out = engine.issue({ spiffeId: ID, spki: leafKey.spki, ttlSeconds: HOUR, now: NOW });
      const c = assertSvidProfile(out.der, pkis[issuerAlg].inter, leafKey, HOUR);
      assert.equal(out.serialHex, c.serialHex);
      assert.deepEqual(out.notBefore, c.notBefore);
      assert.deepEqual(out.notAfter, c.notAfter);
      const again = engine.issue({ spiffeId: ID, spki: leafKey.spki, ttlSeconds: HOUR, now: NOW });
      assert.notEqual(again.serialHex, out.serialHex, 'fresh serial per SVID');
    });
  }
});

describe('issueSvid', () => {
  const { issuer, inter } = pkis['ec-p256'];
  const spki = leafKeys['ec-p256'].spki;

  it('issues with a raw IssuerKey, preparing it once per object', () => {
    const out = issueSvid({ spiffeId: ID, spki, issuer, ttlSeconds: HOUR, now: NOW });
    assertSvidProfile(out.der, inter, leafKeys['ec-p256'], HOUR);
    assert.equal(prepareIssuer(issuer), prepareIssuer(issuer));
  });

  it('uses a given skew', () => {
    const c = parseCertificate(issueSvid({ spiffeId: ID, spki, issuer, ttlSeconds: HOUR, now: NOW, skewSeconds: 0 }).der);
    assert.equal(c.notBefore.getTime(), Math.floor(NOW.getTime() / 1000) * 1000);
  });

  it('never outlives the issuer: notAfter is clamped to the issuer notAfter', () => {
    const issuerNotAfter = parseCertificate(inter).notAfter;
    const out = issueSvid({ spiffeId: ID, spki, issuer, ttlSeconds: 365 * DAY, now: NOW });
    assert.deepEqual(out.notAfter, issuerNotAfter);
    assert.deepEqual(parseCertificate(out.der).notAfter, issuerNotAfter);
  });

  it('never starts before the issuer: notBefore is clamped to the issuer notBefore', () => {
    const issuerNotBefore = parseCertificate(inter).notBefore;
    const out = issueSvid({ spiffeId: ID, spki, issuer, ttlSeconds: HOUR, now: new Date(issuerNotBefore.getTime() + 5000) });
    assert.deepEqual(out.notBefore, issuerNotBefore);
  });

  it('uses GeneralizedTime from 2050 on (RFC 5280 §4.1.2.5)', () => {
    const far = makePki('ec-p256');
    const farRoot = createRootCa({ trustDomain: TD, keyPair: far.rootKey, ttlSeconds: 40 * 365 * DAY, now: NOW });
    const farIssuer = { certDer: farRoot, privateKey: far.rootKey.privateKey };
    const out = issueSvid({ spiffeId: ID, spki, issuer: farIssuer, ttlSeconds: HOUR, now: new Date('2055-01-01T00:00:00Z') });
    const c = parseCertificate(out.der);
    assert.equal(c.notAfter.toISOString(), '2055-01-01T01:00:00.000Z');
    assert.ok(out.der.includes(Buffer.from('20550101010000Z')), 'GeneralizedTime with a four-digit year');
  });

  const p384 = spkiOf(generateKeyPairSync('ec', { namedCurve: 'secp384r1' }).publicKey);
  const leafCert = issueSvid({ spiffeId: ID, spki, issuer, ttlSeconds: HOUR, now: NOW }).der;
  const otherKey = generateKeyPair('ec-p256');
  const refused: [string, () => unknown, IssueErrorReason][] = [
    ['an issuer that has expired', () => issueSvid({ spiffeId: ID, spki, issuer, ttlSeconds: HOUR, now: new Date(NOW.getTime() + 31 * DAY * 1000) }), 'issuer_expired'],
    ['an issuer not yet valid', () => issueSvid({ spiffeId: ID, spki, issuer, ttlSeconds: HOUR, now: new Date(NOW.getTime() - DAY * 1000) }), 'issuer_not_yet_valid'],
    ['a zero TTL', () => issueSvid({ spiffeId: ID, spki, issuer, ttlSeconds: 0, now: NOW }), 'bad_ttl'],
    ['a fractional TTL', () => issueSvid({ spiffeId: ID, spki, issuer, ttlSeconds: 1.5, now: NOW }), 'bad_ttl'],
    ['an invalid date', () => issueSvid({ spiffeId: ID, spki, issuer, ttlSeconds: HOUR, now: new Date(NaN) }), 'bad_option'],
    ['a trust-domain-only ID', () => issueSvid({ spiffeId: `spiffe://${TD}`, spki, issuer, ttlSeconds: HOUR, now: NOW }), 'bad_spiffe_id'],
    ['a non-SPIFFE ID', () => issueSvid({ spiffeId: 'https://amime.test/x', spki, issuer, ttlSeconds: HOUR, now: NOW }), 'bad_spiffe_id'],
    ['an ID outside the issuer trust domain', () => issueSvid({ spiffeId: 'spiffe://other.test/x', spki, issuer, ttlSeconds: HOUR, now: NOW }), 'foreign_trust_domain'],
    ['a P-384 leaf key', () => issueSvid({ spiffeId: ID, spki: p384, issuer, ttlSeconds: HOUR, now: NOW }), 'unsupported_key'],
    ['a garbage SPKI', () => issueSvid({ spiffeId: ID, spki: Buffer.from('3003020101', 'hex'), issuer, ttlSeconds: HOUR, now: NOW }), 'bad_public_key'],
    ['a leaf certificate as issuer', () => prepareIssuer({ certDer: leafCert, privateKey: leafKeys['ec-p256'].privateKey }), 'issuer_not_ca'],
    ['an issuer key that does not match', () => prepareIssuer({ certDer: inter, privateKey: otherKey.privateKey }), 'issuer_key_mismatch'],
    ['an issuer key given as PEM text', () => prepareIssuer({ certDer: inter, privateKey: 'pem' as never }), 'bad_issuer'],
    ['an unparsable issuer', () => prepareIssuer({ certDer: Buffer.from('3000', 'hex'), privateKey: otherKey.privateKey }), 'bad_issuer'],
  ];
  for (const [name, run, reason] of refused) {
    it(`refuses ${name}`, () => {
      assert.throws(run, (err: unknown) => {
        assert.ok(err instanceof IssueError, String(err));
        assert.equal(err.code, 'AMIME_ERR_IDENTITY_ISSUE');
        assert.equal(err.reason, reason, err.message);
        return true;
      });
    });
  }
});

describe('createRootCa / createIntermediateCa', () => {
  for (const alg of ['ec-p256', 'rsa-2048'] as const) {
    it(`${alg}: a self-signed root with the CA profile`, () => {
      const { root, rootKey } = pkis[alg];
      const c = parseCertificate(root);
      assert.equal(c.version, 3);
      assert.deepEqual(c.issuerDer, c.subjectDer, 'self-issued');
      assert.equal(new X509Certificate(root).subject, `O=amime\nCN=amime root ${TD}`);
      assert.deepEqual(c.spki, rootKey.spki);
      assert.equal(c.extensions.get(OID.basicConstraints)!.critical, true);
      assert.deepEqual(c.basicConstraints, { ca: true });
      assert.equal(c.extensions.get(OID.keyUsage)!.critical, true);
      assert.equal(c.keyUsage, bit(KeyUsageBit.keyCertSign) | bit(KeyUsageBit.cRLSign));
      assert.equal(c.extensions.get(OID.keyUsage)!.value.toString('hex'), '03020106');
      assert.deepEqual(c.subjectKeyId, createHash('sha1').update(c.publicKeyBits).digest());
      assert.equal(c.authorityKeyId, undefined, 'no AKI on a self-signed root');
      assert.deepEqual(c.uris, [`spiffe://${TD}`]);
      assert.equal(c.notBefore.getTime(), Math.floor(NOW.getTime() / 1000) * 1000 - 60_000);
      assert.equal(c.notAfter.getTime(), Math.floor(NOW.getTime() / 1000) * 1000 + 365 * DAY * 1000);
      assert.ok(new X509Certificate(root).verify(rootKey.publicKey), 'self-signature verifies');
    });

    it(`${alg}: an intermediate with pathLen 0, AKI = root SKI, validity inside the root's`, () => {
      const { root, inter, interKey, rootKey } = pkis[alg];
      const c = parseCertificate(inter);
      const r = parseCertificate(root);
      assert.deepEqual(c.issuerDer, r.subjectDer);
      assert.deepEqual(c.spki, interKey.spki);
      assert.deepEqual(c.basicConstraints, { ca: true, pathLen: 0 });
      assert.equal(c.extensions.get(OID.basicConstraints)!.critical, true);
      assert.equal(c.keyUsage, bit(KeyUsageBit.keyCertSign) | bit(KeyUsageBit.cRLSign));
      assert.deepEqual(c.authorityKeyId, r.subjectKeyId);
      assert.deepEqual(c.subjectKeyId, createHash('sha1').update(c.publicKeyBits).digest());
      assert.deepEqual(c.uris, [`spiffe://${TD}`]);
      assert.equal(c.notAfter.getTime(), Math.floor(NOW.getTime() / 1000) * 1000 + 30 * DAY * 1000);
      assert.ok(new X509Certificate(inter).verify(rootKey.publicKey));
      assert.ok(new X509Certificate(inter).checkIssued(new X509Certificate(root)));
    });
  }

  it('clamps an intermediate into its parent validity', () => {
    const rootKey = generateKeyPair('ec-p256');
    const root = createRootCa({ trustDomain: TD, keyPair: rootKey, ttlSeconds: DAY, now: NOW });
    const inter = createIntermediateCa({
      trustDomain: TD,
      keyPair: generateKeyPair('ec-p256'),
      parent: { certDer: root, privateKey: rootKey.privateKey },
      ttlSeconds: 30 * DAY,
      now: NOW,
    });
    assert.deepEqual(parseCertificate(inter).notAfter, parseCertificate(root).notAfter);
  });

  const { inter, interKey, root, rootKey } = pkis['ec-p256'];
  const refused: [string, () => unknown, IssueErrorReason][] = [
    [
      'an intermediate under a pathLen-0 intermediate',
      () => createIntermediateCa({ trustDomain: TD, keyPair: generateKeyPair('ec-p256'), parent: { certDer: inter, privateKey: interKey.privateKey }, ttlSeconds: DAY, now: NOW }),
      'path_len',
    ],
    [
      'an intermediate for another trust domain',
      () => createIntermediateCa({ trustDomain: 'other.test', keyPair: generateKeyPair('ec-p256'), parent: { certDer: root, privateKey: rootKey.privateKey }, ttlSeconds: DAY, now: NOW }),
      'foreign_trust_domain',
    ],
    [
      'a key pair whose halves do not match',
      () => createRootCa({ trustDomain: TD, keyPair: { ...rootKey, spki: interKey.spki }, ttlSeconds: DAY, now: NOW }),
      'issuer_key_mismatch',
    ],
    ['a bad trust domain', () => createRootCa({ trustDomain: 'Amime', keyPair: rootKey, ttlSeconds: DAY, now: NOW }), 'bad_spiffe_id'],
    ['an overlong common name', () => createRootCa({ trustDomain: TD, keyPair: rootKey, ttlSeconds: DAY, now: NOW, commonName: 'x'.repeat(65) }), 'bad_option'],
    ['a P-384 CA key', () => createRootCa({ trustDomain: TD, keyPair: { ...rootKey, privateKey: generateKeyPairSync('ec', { namedCurve: 'secp384r1' }).privateKey }, ttlSeconds: DAY, now: NOW }), 'unsupported_key'],
  ];
  for (const [name, run, reason] of refused) {
    it(`refuses ${name}`, () => {
      assert.throws(run, (err: unknown) => err instanceof IssueError && err.reason === reason);
    });
  }
});
