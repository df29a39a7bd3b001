// Test-only: crafts roots, intermediates and leaf SVIDs with @peculiar/x509,
// every property settable, so that specs can build each compliant and each
// deliberately non-compliant class of certificate. Never import this from
// production code: it is slow (JavaScript ASN.1) and signs whatever it is asked.
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { createPrivateKey, randomBytes, webcrypto, type KeyObject } from 'node:crypto';

// the workspace compiles without the DOM lib: WebCrypto types come from node:crypto
type CryptoKeyPair = webcrypto.CryptoKeyPair;

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[1]);

export type KeyKind = 'ec' | 'rsa';

/** keyUsage flags as @peculiar/x509 numbers them (bit n = 1 << n). */
export const KeyUsage = {
  digitalSignature: x509.KeyUsageFlags.digitalSignature,
  keyEncipherment: x509.KeyUsageFlags.keyEncipherment,
  keyAgreement: x509.KeyUsageFlags.keyAgreement,
  keyCertSign: x509.KeyUsageFlags.keyCertSign,
  cRLSign: x509.KeyUsageFlags.cRLSign,
} as const;

export const EKU = { serverAuth: '1.3.6.1.5.5.7.3.1', clientAuth: '1.3.6.1.5.5.7.3.2' } as const;

export interface TestKeyPair {
  readonly kind: KeyKind;
  readonly cryptoKeys: CryptoKeyPair;
  readonly privateKey: KeyObject;
  readonly privateKeyPem: string;
}

export interface CertOptions {
  /** Subject DN in @peculiar/x509 string form, e.g. `CN=root,O=amime`. */
  subject?: string;
  /** Serial as hex (positive); random 16 bytes by default. */
  serialHex?: string;
  notBefore?: Date;
  notAfter?: Date;
  /** Subject key; a fresh key of `keyKind` by default. */
  key?: TestKeyPair;
  keyKind?: KeyKind;
  /** null omits the extension. */
  basicConstraints?: { ca: boolean; pathLen?: number; critical?: boolean } | null;
  /** Flags from `KeyUsage`; null omits the extension. */
  keyUsage?: { flags: number; critical?: boolean } | null;
  /** OIDs; null omits the extension. */
  extKeyUsage?: readonly string[] | null;
  uris?: readonly string[];
  dnsNames?: readonly string[];
  /** Subject and authority key identifiers (default true). */
  keyIds?: boolean;
  /** Digest of the issuer's signature (default SHA-256), e.g. SHA-1 for an unsupported algorithm. */
  signatureHash?: 'SHA-1' | 'SHA-256' | 'SHA-384' | 'SHA-512';
  /** Appended as is, e.g. an unknown critical extension. */
  extraExtensions?: readonly { oid: string; critical: boolean; value: Buffer }[];
}

export interface TestCert {
  readonly der: Buffer;
  readonly pem: string;
  readonly key: TestKeyPair;
  readonly cert: x509.X509Certificate;
  readonly serialHex: string;
}

const HOUR = 3600_000;

export async function generateKeyPair(kind: KeyKind = 'ec'): Promise<TestKeyPair> {
  const alg =
    kind === 'ec'
      ? { name: 'ECDSA', namedCurve: 'P-256' }
      : { name: 'RSASSA-PKCS1-v1_5', modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' };
  const cryptoKeys = (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as CryptoKeyPair;
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', cryptoKeys.privateKey));
  const privateKey = createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' });
  return { kind, cryptoKeys, privateKey, privateKeyPem: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString() };
}

function randomSerial(): string {
  const b = randomBytes(16);
  b[0] = (b[0]! & 0x7f) | 0x10; // positive, no leading zero byte
  return b.toString('hex');
}

function signingAlgorithm(kind: KeyKind, hash = 'SHA-256'): webcrypto.EcdsaParams | webcrypto.RsaHashedImportParams {
  return kind === 'ec' ? { name: 'ECDSA', hash } : { name: 'RSASSA-PKCS1-v1_5', hash };
}

interface Defaults {
  subject: string;
  lifetimeMs: number;
  basicConstraints: NonNullable<CertOptions['basicConstraints']>;
  keyUsage: NonNullable<CertOptions['keyUsage']>;
  extKeyUsage: readonly string[] | null;
}

async function issue(issuer: TestCert | undefined, opts: CertOptions, d: Defaults): Promise<TestCert> {
  const key = opts.key ?? (await generateKeyPair(opts.keyKind ?? 'ec'));
  const signer = issuer?.key ?? key;
  const now = Date.now();
  const serialHex = opts.serialHex ?? randomSerial();
  const extensions: x509.Extension[] = [];
  const bc = opts.basicConstraints === undefined ? d.basicConstraints : opts.basicConstraints;
  if (bc) extensions.push(new x509.BasicConstraintsExtension(bc.ca, bc.pathLen, bc.critical ?? true));
  const ku = opts.keyUsage === undefined ? d.keyUsage : opts.keyUsage;
  if (ku) extensions.push(new x509.KeyUsagesExtension(ku.flags, ku.critical ?? true));
  const eku = opts.extKeyUsage === undefined ? d.extKeyUsage : opts.extKeyUsage;
  if (eku) extensions.push(new x509.ExtendedKeyUsageExtension([...eku], false));
  const names: x509.JsonGeneralNames = [
    ...(opts.uris ?? []).map((value) => ({ type: 'url' as const, value })),
    ...(opts.dnsNames ?? []).map((value) => ({ type: 'dns' as const, value })),
  ];
  if (names.length > 0) extensions.push(new x509.SubjectAlternativeNameExtension(names, false));
  if (opts.keyIds ?? true) {
    extensions.push(await x509.SubjectKeyIdentifierExtension.create(key.cryptoKeys.publicKey));
    if (issuer) extensions.push(await x509.AuthorityKeyIdentifierExtension.create(issuer.key.cryptoKeys.publicKey));
  }
  for (const e of opts.extraExtensions ?? []) extensions.push(new x509.Extension(e.oid, e.critical, e.value));

  const subject = opts.subject ?? d.subject;
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serialHex,
    subject,
    issuer: issuer ? issuer.cert.subjectName : subject,
    notBefore: opts.notBefore ?? new Date(now - HOUR),
    notAfter: opts.notAfter ?? new Date(now + d.lifetimeMs),
    publicKey: key.cryptoKeys.publicKey,
    signingKey: signer.cryptoKeys.privateKey,
    signingAlgorithm: signingAlgorithm(signer.kind, opts.signatureHash),
    extensions,
  });
  const der = Buffer.from(cert.rawData);
  return { der, pem: cert.toString('pem') + '\n', key, cert, serialHex: cert.serialNumber.toLowerCase() };
}

/** A self-signed root CA (CA=true, keyCertSign|cRLSign, critical). */
export function createRoot(opts: CertOptions = {}): Promise<TestCert> {
  return issue(undefined, opts, {
    subject: 'CN=amime test root,O=amime',
    lifetimeMs: 10 * 365 * 24 * HOUR,
    basicConstraints: { ca: true, critical: true },
    keyUsage: { flags: KeyUsage.keyCertSign | KeyUsage.cRLSign, critical: true },
    extKeyUsage: null,
  });
}

/** An intermediate CA signed by `issuer`. */
export function createIntermediate(issuer: TestCert, opts: CertOptions = {}): Promise<TestCert> {
  return issue(issuer, opts, {
    subject: 'CN=amime test intermediate,O=amime',
    lifetimeMs: 7 * 24 * HOUR,
    basicConstraints: { ca: true, critical: true },
    keyUsage: { flags: KeyUsage.keyCertSign | KeyUsage.cRLSign, critical: true },
    extKeyUsage: null,
  });
}

/**
 * A leaf X.509-SVID signed by `issuer`: CA=false, keyUsage digitalSignature
 * (critical), EKU serverAuth+clientAuth, one URI SAN `spiffeId` (set `uris`
 * to override).
 */
export function createLeaf(issuer: TestCert, spiffeId: string, opts: CertOptions = {}): Promise<TestCert> {
  return issue(issuer, { uris: [spiffeId], ...opts }, {
    subject: 'O=amime',
    lifetimeMs: HOUR,
    basicConstraints: { ca: false, critical: true },
    keyUsage: { flags: KeyUsage.digitalSignature, critical: true },
    extKeyUsage: [EKU.serverAuth, EKU.clientAuth],
  });
}

/** A copy of `der` with its last byte (inside the signature) flipped. */
export function flipSignatureByte(der: Buffer): Buffer {
  const out = Buffer.from(der);
  out[out.length - 1] ^= 0x01;
  return out;
}

export function toPemChain(certs: readonly TestCert[]): string {
  return certs.map((c) => c.pem).join('');
}

export interface TestPki {
  readonly trustDomain: string;
  readonly root: TestCert;
  readonly intermediate: TestCert;
  /** A compliant leaf under the intermediate; `opts` makes it non-compliant. */
  leaf(spiffePath: string, opts?: CertOptions): Promise<TestCert>;
}

/** Root → intermediate → leaves for `trustDomain`. */
export async function createTestPki(trustDomain = 'amime.test', keyKind: KeyKind = 'ec'): Promise<TestPki> {
  const root = await createRoot({ keyKind, subject: `CN=${trustDomain} root,O=amime` });
  const intermediate = await createIntermediate(root, { keyKind, subject: `CN=${trustDomain} intermediate,O=amime` });
  return {
    trustDomain,
    root,
    intermediate,
    leaf: (spiffePath, opts = {}) =>
      createLeaf(intermediate, `spiffe://${trustDomain}${spiffePath}`, { keyKind, ...opts }),
  };
}
