import assert from 'node:assert/strict';
import { X509Certificate, randomBytes, sign } from 'node:crypto';
import { describe, it } from 'node:test';
import { CertificateAuthority, type CertificateAuthorityOptions } from './certificate-authority.js';
import { forgeEngine } from './engines/forge.js';
import { peculiarEngine } from './engines/peculiar.js';
import { IssueError, createIntermediateCa, createRootCa } from './issue.js';
import { CsrError, type KeyAlgorithm, OID, createCsr, der, fromPem, generateKeyPair, parseCertificate, signatureAlgorithmFor, toPem } from '@amime/identity';

const { bitString, explicit, octetString, oid, seq, set, smallInteger, tlv, utf8String } = der;

const TD = 'amime.test';
const ID = `spiffe://${TD}/ns/default/sa/web`;
const START = new Date('2030-06-01T12:00:00Z');
const HOUR = 3600;
const DAY = 24 * HOUR;

function makeSigner(alg: KeyAlgorithm, trustDomain = TD) {
  const rootKey = generateKeyPair(alg);
  const root = createRootCa({ trustDomain, keyPair: rootKey, ttlSeconds: 365 * DAY, now: START });
  const interKey = generateKeyPair(alg);
  const inter = createIntermediateCa({
    trustDomain,
    keyPair: interKey,
    parent: { certDer: root, privateKey: rootKey.privateKey },
    ttlSeconds: 7 * DAY,
    now: START,
  });
  return { root, rootKey, inter, interKey };
}

/** A clock the test moves by hand. */
function fakeClock(start: Date) {
  let t = start.getTime();
  return { now: () => new Date(t), advance: (seconds: number) => (t += seconds * 1000) };
}

const ec = makeSigner('ec-p256');
const clock = fakeClock(START);
const ca = new CertificateAuthority({
  trustDomain: TD,
  signer: { certDer: ec.inter, privateKey: ec.interKey.privateKey, chainDer: [ec.inter, ec.root] },
  clock: clock.now,
});
const leafKey = generateKeyPair('ec-p256');

describe('CertificateAuthority.signCsr', () => {
  it('signs a CSR into an SVID with its chain (leaf, intermediate; never the root)', () => {
    const out = ca.signCsr(createCsr(leafKey, ID), { spiffeId: ID, ttlSeconds: HOUR });
    assert.equal(out.spiffeId, ID);
    assert.equal(out.chainDer.length, 2);
    assert.deepEqual(out.chainDer[0], out.certDer);
    assert.deepEqual(out.chainDer[1], ec.inter);
    assert.deepEqual(fromPem(out.chainPem, 'CERTIFICATE'), out.chainDer);
    const c = parseCertificate(out.certDer);
    assert.equal(out.serialHex, c.serialHex);
    assert.deepEqual(out.notAfter, new Date(START.getTime() + HOUR * 1000));
    assert.deepEqual(c.notAfter, out.notAfter);
    assert.deepEqual(c.uris, [ID]);
    assert.deepEqual(c.spki, leafKey.spki);

    const leaf = new X509Certificate(out.certDer);
    const inter = new X509Certificate(ec.inter);
    const root = new X509Certificate(ec.root);
    assert.equal(leaf.verify(inter.publicKey), true);
    assert.equal(leaf.verify(root.publicKey), false, 'control: the root did not sign the leaf');
    assert.equal(inter.verify(root.publicKey), true);
    assert.ok(leaf.checkIssued(inter));
    assert.equal(leaf.subjectAltName, `URI:${ID}`);
    assert.equal(leaf.ca, false);
  });

  it('accepts PEM CSRs', () => {
    const out = ca.signCsr(toPem('CERTIFICATE REQUEST', createCsr(leafKey, ID)), { spiffeId: ID, ttlSeconds: HOUR });
    assert.deepEqual(parseCertificate(out.certDer).uris, [ID]);
  });

  it('follows the injected clock and clamps to the signer, then refuses once it expired', () => {
    const c = fakeClock(START);
    const local = new CertificateAuthority({ trustDomain: TD, signer: { certDer: ec.inter, privateKey: ec.interKey.privateKey }, clock: c.now });
    c.advance(DAY);
    const a = local.signCsr(createCsr(leafKey, ID), { spiffeId: ID, ttlSeconds: HOUR });
    assert.deepEqual(a.notBefore, new Date(START.getTime() + (DAY - 60) * 1000));
    c.advance(7 * DAY - DAY - 10 * 60); // 10 minutes before the intermediate expires
    const b = local.signCsr(createCsr(leafKey, ID), { spiffeId: ID, ttlSeconds: HOUR });
    assert.deepEqual(b.notAfter, local.signerNotAfter, 'clamped to the intermediate');
    c.advance(HOUR);
    assert.throws(
      () => local.signCsr(createCsr(leafKey, ID), { spiffeId: ID, ttlSeconds: HOUR }),
      (e: unknown) => e instanceof IssueError && e.reason === 'issuer_expired',
    );
  });

  const otherKey = generateKeyPair('ec-p256');
  const valid = createCsr(leafKey, ID);
  const flipped = Buffer.from(valid);
  flipped[flipped.length - 1]! ^= 0x01;
  /** A CSR with several SANs (createCsr refuses to make one). */
  function csrWithSans(...names: Buffer[]): Buffer {
    const ext = seq(oid(OID.subjectAltName), octetString(seq(...names)));
    const info = seq(
      smallInteger(0),
      seq(set(seq(oid(OID.organization), utf8String('amime')))),
      leafKey.spki,
      explicit(0, seq(oid(OID.extensionRequest), set(seq(ext)))),
    );
    return seq(info, signatureAlgorithmFor('ec-p256'), bitString(sign('sha256', info, leafKey.privateKey)));
  }
  const uri = (u: string): Buffer => tlv(0x86, Buffer.from(u));

  const csrRefusals: [string, () => Buffer | string, string, RegExp][] = [
    ['garbage', () => randomBytes(64), 'malformed', /neither DER nor valid PEM/],
    ['a truncated CSR', () => valid.subarray(0, valid.length - 1), 'malformed', /truncated/],
    ['a bad signature', () => flipped, 'bad_signature', /proof of possession/],
    ['two URI SANs', () => csrWithSans(uri(ID), uri(`spiffe://${TD}/ns/default/sa/db`)), 'san_count', /2 URI SAN/],
    ['a DNS SAN next to the URI', () => csrWithSans(uri(ID), tlv(0x82, Buffer.from('web.amime.test'))), 'san_count', /1 other SAN/],
    ['a non-SPIFFE URI', () => csrWithSans(uri('https://amime.test/ns/default/sa/web')), 'bad_spiffe_id', /rule scheme/],
    ['a foreign trust domain', () => createCsr(otherKey, 'spiffe://evil.test/ns/default/sa/web'), 'foreign_trust_domain', /outside this CA's trust domain amime\.test/],
    ['a different SPIFFE ID than requested', () => createCsr(otherKey, `spiffe://${TD}/ns/default/sa/admin`), 'spiffe_id_mismatch', /but the request is for/],
    ['an oversized CSR', () => Buffer.concat([valid, Buffer.alloc(600)]), 'too_large', /exceeds the limit of 512 bytes/],
  ];
  const small = new CertificateAuthority({
    trustDomain: TD,
    signer: { certDer: ec.inter, privateKey: ec.interKey.privateKey },
    clock: () => START,
    maxCsrBytes: 512,
  });
  for (const [name, input, reason, message] of csrRefusals) {
    it(`refuses ${name} (CsrError ${reason})`, () => {
      assert.throws(
        () => small.signCsr(input(), { spiffeId: ID, ttlSeconds: HOUR }),
        (e: unknown) => {
          assert.ok(e instanceof CsrError, String(e));
          assert.equal(e.code, 'AMIME_ERR_IDENTITY_CSR');
          assert.equal(e.reason, reason, e.message);
          assert.match(e.message, message);
          return true;
        },
      );
    });
  }

  const requestRefusals: [string, string, number, string][] = [
    ['a requested ID that is not a SPIFFE ID', 'web', HOUR, 'bad_spiffe_id'],
    ['a requested trust-domain-only ID', `spiffe://${TD}`, HOUR, 'bad_spiffe_id'],
    ['a requested ID in another trust domain', 'spiffe://evil.test/ns/default/sa/web', HOUR, 'foreign_trust_domain'],
    ['a zero TTL', ID, 0, 'bad_ttl'],
  ];
  for (const [name, spiffeId, ttlSeconds, reason] of requestRefusals) {
    it(`refuses ${name} (IssueError ${reason})`, () => {
      assert.throws(
        () => small.signCsr(valid, { spiffeId, ttlSeconds }),
        (e: unknown) => e instanceof IssueError && e.reason === reason,
      );
    });
  }
});

describe('CertificateAuthority construction and self-test', () => {
  it('selfTest signs and verifies a throwaway SVID', () => {
    const svid = ca.selfTest();
    assert.deepEqual(parseCertificate(svid.certDer).uris, [`spiffe://${TD}/amime-ca/self-test`]);
  });

  it('works with each engine (forge with an RSA signer)', () => {
    const rsa = makeSigner('rsa-2048');
    const cases: [CertificateAuthorityOptions['engine'], ReturnType<typeof makeSigner>, KeyAlgorithm][] = [
      [peculiarEngine, ec, 'ec-p256'],
      [forgeEngine, rsa, 'rsa-2048'],
    ];
    for (const [engine, s, leafAlg] of cases) {
      const local = new CertificateAuthority({
        trustDomain: TD,
        signer: { certDer: s.inter, privateKey: s.interKey.privateKey, chainDer: [s.inter, s.root] },
        engine,
        clock: () => START,
      });
      const key = generateKeyPair(leafAlg);
      const out = local.signCsr(createCsr(key, ID), { spiffeId: ID, ttlSeconds: HOUR });
      assert.ok(new X509Certificate(out.certDer).verify(new X509Certificate(s.inter).publicKey), local.engineName);
    }
  });

  const rsa = makeSigner('rsa-2048');
  const foreign = makeSigner('ec-p256', 'other.test');
  const leaf = ca.signCsr(createCsr(leafKey, ID), { spiffeId: ID, ttlSeconds: HOUR }).certDer;
  const refused: [string, () => CertificateAuthorityOptions, string, RegExp][] = [
    ['a bad trust domain', () => ({ trustDomain: 'Amime.Test', signer: { certDer: ec.inter, privateKey: ec.interKey.privateKey } }), 'bad_option', /trustDomain/],
    ['a leaf as signer', () => ({ trustDomain: TD, signer: { certDer: leaf, privateKey: leafKey.privateKey } }), 'issuer_not_ca', /not a CA/],
    ['a key that does not match the signer', () => ({ trustDomain: TD, signer: { certDer: ec.inter, privateKey: rsa.interKey.privateKey } }), 'issuer_key_mismatch', /does not match/],
    ['a signer from another trust domain', () => ({ trustDomain: TD, signer: { certDer: foreign.inter, privateKey: foreign.interKey.privateKey } }), 'foreign_trust_domain', /other\.test/],
    ['a chain that does not start with the signer', () => ({ trustDomain: TD, signer: { certDer: ec.inter, privateKey: ec.interKey.privateKey, chainDer: [ec.root] } }), 'bad_option', /must start with/],
    ['a chain to the wrong root', () => ({ trustDomain: TD, signer: { certDer: ec.inter, privateKey: ec.interKey.privateKey, chainDer: [ec.inter, foreign.root] } }), 'bad_option', /not issued by/],
    ['an expired signer (the self-test fails)', () => ({ trustDomain: TD, signer: { certDer: ec.inter, privateKey: ec.interKey.privateKey }, clock: () => new Date(START.getTime() + 8 * DAY * 1000) }), 'self_test_failed', /expired/],
    ['the forge engine with an EC signer', () => ({ trustDomain: TD, signer: { certDer: ec.inter, privateKey: ec.interKey.privateKey }, engine: forgeEngine }), 'engine_unsupported', /RSA issuer/],
  ];
  for (const [name, opts, reason, message] of refused) {
    it(`refuses ${name}`, () => {
      assert.throws(
        () => new CertificateAuthority({ clock: () => START, ...opts() }),
        (e: unknown) => {
          assert.ok(e instanceof IssueError, String(e));
          assert.equal(e.reason, reason, e.message);
          assert.match(e.message, message);
          return true;
        },
      );
    });
  }
});
