// Cross-checks between the DER engine and node-forge (RSA only).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import forge from 'node-forge';
import { IssueError, createIntermediateCa, createRootCa, derEngine, type IssuerKey } from '../issue.js';
import { forgeEngine } from './forge.js';
import { type KeyAlgorithm, generateKeyPair, parseCertificate, parseCsr } from '@amime/identity';

const TD = 'amime.test';
const ID = `spiffe://${TD}/ns/default/sa/web`;
const NOW = new Date('2030-06-01T12:00:00Z');

function makeIssuer(alg: KeyAlgorithm): IssuerKey {
  const rootKey = generateKeyPair(alg);
  const root = createRootCa({ trustDomain: TD, keyPair: rootKey, ttlSeconds: 86400 * 365, now: NOW });
  const interKey = generateKeyPair(alg);
  const certDer = createIntermediateCa({
    trustDomain: TD,
    keyPair: interKey,
    parent: { certDer: root, privateKey: rootKey.privateKey },
    ttlSeconds: 86400,
    now: NOW,
  });
  return { certDer, privateKey: interKey.privateKey };
}

const issuer = makeIssuer('rsa-2048');
const leafKey = generateKeyPair('rsa-2048');
const req = { spiffeId: ID, spki: leafKey.spki, ttlSeconds: 3600, now: NOW };
const fromDer = (der: Buffer) => forge.pki.certificateFromAsn1(forge.asn1.fromDer(der.toString('binary')));

describe('forge engine vs DER engine', () => {
  it('issues the same certificate apart from serial and signature', () => {
    const a = parseCertificate(derEngine(issuer).issue(req).der);
    const b = parseCertificate(forgeEngine(issuer).issue(req).der);
    for (const field of ['version', 'signatureAlgorithm', 'issuerDer', 'subjectDer', 'notBefore', 'notAfter', 'spki'] as const) {
      assert.deepEqual(b[field], a[field], field);
    }
    assert.deepEqual(new Map(b.extensions), new Map(a.extensions), 'extensions, byte for byte');
  });

  it('node-forge reads and verifies what the DER engine writes', () => {
    const leaf = fromDer(derEngine(issuer).issue(req).der);
    const ca = fromDer(issuer.certDer);
    assert.equal(ca.verify(leaf), true);
    assert.equal((leaf.getExtension('basicConstraints') as { cA?: boolean }).cA, false);
    assert.deepEqual((leaf.getExtension('subjectAltName') as { altNames: { type: number; value: string }[] }).altNames.map((n) => [n.type, n.value]), [[6, ID]]);
  });

  it('parseCsr accepts a CSR made by node-forge', () => {
    const keys = forge.pki.rsa.generateKeyPair({ bits: 2048, e: 0x10001 });
    const csr = forge.pki.createCertificationRequest();
    csr.publicKey = keys.publicKey;
    csr.setSubject([{ name: 'organizationName', value: 'amime' }]);
    csr.setAttributes([{ name: 'extensionRequest', extensions: [{ name: 'subjectAltName', altNames: [{ type: 6, value: ID }] }] }]);
    csr.sign(keys.privateKey, forge.md.sha256.create());
    const parsed = parseCsr(forge.pki.certificationRequestToPem(csr));
    assert.deepEqual(parsed.uris, [ID]);
    assert.equal(parsed.keyAlgorithm, 'rsa-2048');
  });

  it('refuses EC issuers and EC leaf keys, which forge cannot handle', () => {
    assert.throws(() => forgeEngine(makeIssuer('ec-p256')), (e: unknown) => e instanceof IssueError && e.reason === 'engine_unsupported');
    const ecLeaf = generateKeyPair('ec-p256');
    assert.throws(
      () => forgeEngine(issuer).issue({ ...req, spki: ecLeaf.spki }),
      (e: unknown) => e instanceof IssueError && e.reason === 'engine_unsupported',
    );
  });
});
