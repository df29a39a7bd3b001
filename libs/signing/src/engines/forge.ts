// Reference engine: the same SVID built and signed with node-forge (pure
// JavaScript ASN.1 and RSA), for the benchmark and for cross-checking the
// DER engine. RSA only: forge can neither sign with nor encode EC keys.
// Not for production: its RSA signature alone costs ~20 ms.
import forge from 'node-forge';
import { IssueError, planSvid, prepareIssuer, type SvidEngineFactory } from '../issue.js';
import { OID, exportPrivateKeyPem, serialToHex } from '@amime/identity';

const binary = (b: Buffer): string => b.toString('binary');

// O=amime as a UTF8String, like the DER engine. @types/node-forge types
// valueTagClass as an asn1.Class, but forge uses it as the universal tag.
const SUBJECT: forge.pki.CertificateField[] = [
  { type: OID.organization, value: 'amime', valueTagClass: forge.asn1.Type.UTF8 as unknown as forge.asn1.Class },
];

export const forgeEngine: SvidEngineFactory = (issuerKey) => {
  const issuer = prepareIssuer(issuerKey);
  if (issuer.keyAlgorithm === 'ec-p256') {
    throw new IssueError('engine_unsupported', 'the forge engine needs an RSA issuer (node-forge cannot sign with EC keys)');
  }
  const signingKey = forge.pki.privateKeyFromPem(exportPrivateKeyPem(issuer.privateKey)) as forge.pki.rsa.PrivateKey;
  // forge keeps each attribute's string type, so the issuer Name re-encodes byte for byte
  const issuerCert = forge.pki.certificateFromAsn1(forge.asn1.fromDer(binary(issuer.certDer)));
  const issuerAttributes = issuerCert.subject.attributes;
  const authorityKeyId = binary(issuer.keyId);

  return {
    name: 'forge',
    issuer,
    issue(req) {
      const plan = planSvid(issuer, req);
      if (plan.leafKeyAlgorithm === 'ec-p256') {
        throw new IssueError('engine_unsupported', 'the forge engine cannot encode EC public keys; use an RSA leaf key');
      }
      const cert = forge.pki.createCertificate();
      cert.publicKey = forge.pki.publicKeyFromAsn1(forge.asn1.fromDer(binary(plan.spki)));
      cert.serialNumber = plan.serial.toString('hex');
      cert.validity.notBefore = plan.notBefore;
      cert.validity.notAfter = plan.notAfter;
      cert.setSubject(SUBJECT);
      cert.setIssuer(issuerAttributes);
      cert.setExtensions([
        { name: 'basicConstraints', critical: true, cA: false },
        { name: 'keyUsage', critical: true, digitalSignature: true, keyEncipherment: true },
        { name: 'extKeyUsage', serverAuth: true, clientAuth: true },
        // forge derives it from cert.publicKey: SHA-1 of the RSAPublicKey, i.e. of the key bits
        { name: 'subjectKeyIdentifier' },
        { name: 'authorityKeyIdentifier', keyIdentifier: authorityKeyId },
        { name: 'subjectAltName', altNames: [{ type: 6, value: plan.spiffeId }] },
      ]);
      cert.sign(signingKey, forge.md.sha256.create());
      const der = Buffer.from(forge.asn1.toDer(forge.pki.certificateToAsn1(cert)).getBytes(), 'binary');
      return { der, serialHex: serialToHex(plan.serial), notBefore: plan.notBefore, notAfter: plan.notAfter };
    },
  };
};
