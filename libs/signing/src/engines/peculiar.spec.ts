// Cross-checks between the DER engine and @peculiar/x509: both engines
// produce the same extensions byte for byte, and each side reads what the
// other writes (certificates and CSRs).
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { webcrypto } from 'node:crypto';
import { describe, it } from 'node:test';
import * as x509 from '@peculiar/x509';
import { createIntermediateCa, createRootCa, derEngine, type IssuerKey } from '../issue.js';
import { peculiarEngine, peculiarPipeline } from './peculiar.js';
import { OID, createCsr, generateKeyPair, parseCertificate, parseCsr } from '@amime/identity';

const TD = 'amime.test';
const ID = `spiffe://${TD}/ns/default/sa/web`;
const NOW = new Date('2030-06-01T12:00:00Z');

const rootKey = generateKeyPair('ec-p256');
const root = createRootCa({ trustDomain: TD, keyPair: rootKey, ttlSeconds: 86400 * 365, now: NOW });
const interKey = generateKeyPair('ec-p256');
const inter = createIntermediateCa({
  trustDomain: TD,
  keyPair: interKey,
  parent: { certDer: root, privateKey: rootKey.privateKey },
  ttlSeconds: 86400,
  now: NOW,
});
const issuer: IssuerKey = { certDer: inter, privateKey: interKey.privateKey };
const leafKey = generateKeyPair('ec-p256');
const req = { spiffeId: ID, spki: leafKey.spki, ttlSeconds: 3600, now: NOW };

describe('peculiar engine vs DER engine', () => {
  it('issues the same certificate apart from serial and signature', () => {
    const a = parseCertificate(derEngine(issuer).issue(req).der);
    const b = parseCertificate(peculiarEngine(issuer).issue(req).der);
    for (const field of ['version', 'signatureAlgorithm', 'issuerDer', 'notBefore', 'notAfter', 'spki'] as const) {
      assert.deepEqual(b[field], a[field], field);
    }
    assert.deepEqual(new Map(b.extensions), new Map(a.extensions), 'extensions, byte for byte');
    assert.notEqual(b.serialHex, a.serialHex);
  });

  it('@peculiar/x509 reads and verifies what the DER engine writes', async () => {
    const cert = new x509.X509Certificate(derEngine(issuer).issue(req).der);
    const issuerCert = new x509.X509Certificate(inter);
    assert.equal(await cert.verify({ publicKey: issuerCert.publicKey, signatureOnly: true }), true);
    assert.equal(cert.issuer, issuerCert.subject);
    assert.equal(cert.subject, 'O=amime');
    const bc = cert.getExtension(x509.BasicConstraintsExtension)!;
    assert.equal(bc.ca, false);
    assert.equal(bc.critical, true);
    const ku = cert.getExtension(x509.KeyUsagesExtension)!;
    assert.equal(ku.usages, x509.KeyUsageFlags.digitalSignature);
    const eku = cert.getExtension(x509.ExtendedKeyUsageExtension)!;
    assert.deepEqual([...eku.usages], [OID.serverAuth, OID.clientAuth]);
    const san = cert.getExtension(x509.SubjectAlternativeNameExtension)!;
    assert.deepEqual(san.names.toJSON(), [{ type: 'url', value: ID }]);
    const aki = cert.getExtension(x509.AuthorityKeyIdentifierExtension)!;
    assert.equal(aki.keyId, issuerCert.getExtension(x509.SubjectKeyIdentifierExtension)!.keyId);
  });

  it('@peculiar/x509 verifies our CSRs, and parseCsr accepts its CSRs', async () => {
    const ours = new x509.Pkcs10CertificateRequest(createCsr(leafKey, ID));
    assert.equal(await ours.verify(), true);
    const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
    const keys = (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
    const theirs = await x509.Pkcs10CertificateRequestGenerator.create({
      name: 'CN=web',
      keys,
      signingAlgorithm: alg,
      extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: ID }])],
    });
    const parsed = parseCsr(Buffer.from(theirs.rawData));
    assert.deepEqual(parsed.uris, [ID]);
    assert.equal(parsed.keyAlgorithm, 'ec-p256');
  });
});

describe('peculiarPipeline (the library API end to end)', () => {
  it('signs a CSR into an SVID equal in content to the DER engine output', async () => {
    const pipeline = await peculiarPipeline(issuer);
    const out = await pipeline.signCsr(createCsr(leafKey, ID), ID, 3600, NOW);
    const a = parseCertificate(derEngine(issuer).issue(req).der);
    const b = parseCertificate(out.der);
    assert.deepEqual(b.issuerDer, a.issuerDer);
    assert.deepEqual(b.spki, a.spki);
    assert.deepEqual(b.notAfter, a.notAfter);
    assert.deepEqual(new Map(b.extensions), new Map(a.extensions));
    assert.equal(out.serialHex, b.serialHex);
  });

  it('refuses a CSR for another ID', async () => {
    const pipeline = await peculiarPipeline(issuer);
    await assert.rejects(pipeline.signCsr(createCsr(leafKey, `${ID}2`), ID, 3600, NOW), { reason: 'bad_spiffe_id' });
  });
});
