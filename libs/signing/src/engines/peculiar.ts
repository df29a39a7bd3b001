// Reference engine: the same SVID built with @peculiar/x509 (JavaScript
// ASN.1 schemas), for the benchmark and for cross-checking the DER engine.
// Not for production: it costs milliseconds per certificate.
//
// Two forms:
// - peculiarEngine: a synchronous SvidEngine. Per SVID it does what
//   X509CertificateGenerator.create does (extension objects, schema parse
//   of each extension, Name, SPKI, two serialisations), but signs with
//   node:crypto, since the generator's WebCrypto signature is async and the
//   engine interface is not. This is the library's cost minus its async hop.
// - peculiarPipeline: the library's own API end to end, async (CSR parse and
//   verify with Pkcs10CertificateRequest, X509CertificateGenerator.create on
//   WebCrypto): how the library is normally used, for the benchmark.
import 'reflect-metadata';
import { sign, webcrypto } from 'node:crypto';
import { AsnConvert } from '@peculiar/asn1-schema';
import * as asn1X509 from '@peculiar/asn1-x509';
import * as x509 from '@peculiar/x509';
import {
  IssueError,
  planSvid,
  prepareIssuer,
  type IssuedCertificate,
  type IssuerKey,
  type PreparedIssuer,
  type SvidEngineFactory,
  type SvidPlan,
} from '../issue.js';
import { KeyUsageBit, OID, serialToHex } from '@amime/identity';

// the workspace compiles without the DOM lib, so the Crypto type is borrowed from the library
x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[1]);

const KU_FLAG: Record<number, x509.KeyUsageFlags> = {
  [KeyUsageBit.digitalSignature]: x509.KeyUsageFlags.digitalSignature,
  [KeyUsageBit.keyEncipherment]: x509.KeyUsageFlags.keyEncipherment,
};

function extensionsFor(issuer: PreparedIssuer, plan: SvidPlan): x509.Extension[] {
  let flags = 0;
  for (const bit of plan.keyUsage) flags |= KU_FLAG[bit]!;
  return [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(flags, true),
    new x509.ExtendedKeyUsageExtension([OID.serverAuth, OID.clientAuth], false),
    new x509.SubjectKeyIdentifierExtension(plan.subjectKeyId.toString('hex')),
    new x509.AuthorityKeyIdentifierExtension(issuer.keyId.toString('hex')),
    new x509.SubjectAlternativeNameExtension([{ type: 'url', value: plan.spiffeId }], false),
  ];
}

const arrayBufferOf = (b: Buffer): ArrayBuffer => b.buffer.slice(b.byteOffset, b.byteOffset + b.length) as ArrayBuffer;

function issued(der: Buffer, plan: SvidPlan): IssuedCertificate {
  return { der, serialHex: serialToHex(plan.serial), notBefore: plan.notBefore, notAfter: plan.notAfter };
}

export const peculiarEngine: SvidEngineFactory = (issuerKey) => {
  const issuer = prepareIssuer(issuerKey);
  return {
    name: 'peculiar',
    issuer,
    issue(req) {
      const plan = planSvid(issuer, req);
      const cert = new asn1X509.Certificate({
        tbsCertificate: new asn1X509.TBSCertificate({
          version: asn1X509.Version.v3,
          serialNumber: arrayBufferOf(plan.serial),
          validity: new asn1X509.Validity({ notBefore: plan.notBefore, notAfter: plan.notAfter }),
          extensions: new asn1X509.Extensions(
            extensionsFor(issuer, plan).map((e) => AsnConvert.parse(e.rawData, asn1X509.Extension)),
          ),
          subjectPublicKeyInfo: AsnConvert.parse(plan.spki, asn1X509.SubjectPublicKeyInfo),
        }),
      });
      const tbsCert = cert.tbsCertificate;
      tbsCert.subject = AsnConvert.parse(new x509.Name('O=amime').toArrayBuffer(), asn1X509.Name);
      tbsCert.issuer = AsnConvert.parse(issuer.name, asn1X509.Name);
      tbsCert.signature = cert.signatureAlgorithm = AsnConvert.parse(issuer.sigAlg, asn1X509.AlgorithmIdentifier);
      const tbs = Buffer.from(AsnConvert.serialize(tbsCert));
      cert.signatureValue = arrayBufferOf(sign('sha256', tbs, issuer.privateKey));
      return issued(Buffer.from(AsnConvert.serialize(cert)), plan);
    },
  };
};

export interface PeculiarPipeline {
  /** CSR (DER) in, verified with the library, SVID out. */
  signCsr(csrDer: Buffer, spiffeId: string, ttlSeconds: number, now: Date): Promise<IssuedCertificate>;
}

/** The library's own async API end to end, for P-256 issuers (benchmark reference). */
export async function peculiarPipeline(issuerKey: IssuerKey | PreparedIssuer): Promise<PeculiarPipeline> {
  const issuer = prepareIssuer(issuerKey);
  if (issuer.keyAlgorithm !== 'ec-p256') {
    throw new IssueError('engine_unsupported', 'peculiarPipeline is wired for P-256 issuers only');
  }
  const ecdsa = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const signingKey = await webcrypto.subtle.importKey(
    'pkcs8',
    issuer.privateKey.export({ type: 'pkcs8', format: 'der' }),
    ecdsa,
    false,
    ['sign'],
  );
  const issuerName = new x509.Name(arrayBufferOf(issuer.name));
  return {
    async signCsr(csrDer, spiffeId, ttlSeconds, now) {
      const csr = new x509.Pkcs10CertificateRequest(csrDer);
      if (!(await csr.verify())) throw new IssueError('bad_public_key', 'CSR signature does not verify');
      const san = csr.getExtension(OID.subjectAltName);
      const names = san ? new x509.SubjectAlternativeNameExtension(san.rawData).names.toJSON() : [];
      if (names.length !== 1 || names[0]!.type !== 'url' || names[0]!.value !== spiffeId) {
        throw new IssueError('bad_spiffe_id', 'CSR must carry exactly the requested SPIFFE ID');
      }
      const plan = planSvid(issuer, { spiffeId, spki: Buffer.from(csr.publicKey.rawData), ttlSeconds, now });
      const cert = await x509.X509CertificateGenerator.create({
        serialNumber: plan.serial.toString('hex'),
        subject: 'O=amime',
        issuer: issuerName,
        notBefore: plan.notBefore,
        notAfter: plan.notAfter,
        publicKey: csr.publicKey,
        signingKey,
        signingAlgorithm: ecdsa,
        extensions: extensionsFor(issuer, plan),
      });
      return issued(Buffer.from(cert.rawData), plan);
    },
  };
}
