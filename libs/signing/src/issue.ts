// The fast issuing path: X.509-SVIDs (and the CA certificates above them)
// laid out by hand with der.ts and signed with node:crypto. Everything that
// depends only on the issuer (signature AlgorithmIdentifier, issuer Name,
// authorityKeyIdentifier) is encoded once in prepareIssuer(); an SVID then
// costs a few small buffers, one SHA-1 and one native signature.
//
// Profile (SPIFFE X.509-SVID §4, RFC 5280):
//   leaf: v3; 128-bit random positive serial; issuer = the issuer's subject
//   bytes, copied; notBefore = now - skew, notAfter = min(now + ttl, issuer
//   notAfter); subject O=amime (non-empty, so the SAN is not critical);
//   basicConstraints critical CA=false; keyUsage critical digitalSignature
//   (+keyEncipherment for RSA keys); extKeyUsage serverAuth+clientAuth;
//   SKI = SHA-1 of the subjectPublicKey bits; AKI = the issuer's SKI;
//   exactly one SAN, the SPIFFE ID.
//   CA: basicConstraints critical CA=true (+pathLen for intermediates);
//   keyUsage critical keyCertSign+cRLSign; SKI; AKI on intermediates; the
//   trust domain ID as URI SAN (X.509-SVID §3 allows it on signing certs).
import { KeyObject, createHash, createPublicKey, randomBytes, sign } from 'node:crypto';
import { type AcceptedKeyAlgorithm, KeyError, type KeyPair, KeyUsageBit, OID, type ParsedCertificate, SpiffeIdError, type SpkiInfo, der, inspectSpki, keyAlgorithmOf, parseCertificate, parseSpiffeId, parseTrustDomain, requireWorkloadId, serialToHex, signatureAlgorithmFor, spkiOf, uriGeneralNames } from '@amime/identity';

const { bitString, boolean, explicit, octetString, oid, seq, set, smallInteger, tlv, time, utf8String } = der;

export const ISSUE_ERROR_REASONS = [
  'bad_issuer',
  'issuer_not_ca',
  'issuer_key_mismatch',
  'issuer_expired',
  'issuer_not_yet_valid',
  'path_len',
  'unsupported_key',
  'bad_public_key',
  'bad_spiffe_id',
  'foreign_trust_domain',
  'bad_ttl',
  'bad_option',
  'engine_unsupported',
  'self_test_failed',
] as const;

export type IssueErrorReason = (typeof ISSUE_ERROR_REASONS)[number];

export class IssueError extends Error {
  readonly code = 'AMIME_ERR_IDENTITY_ISSUE';
  constructor(
    readonly reason: IssueErrorReason,
    message: string,
  ) {
    super(message);
    this.name = 'IssueError';
  }
}

export const DEFAULT_SKEW_SECONDS = 60;
const MAX_SKEW_SECONDS = 3600;
const MAX_COMMON_NAME = 64; // ub-common-name, RFC 5280 Appendix A

// ------------------------------------------------------------ constant DER

const V3 = explicit(0, smallInteger(2));

function extension(id: string, critical: boolean, value: Buffer): Buffer {
  return critical ? seq(oid(id), boolean(true), octetString(value)) : seq(oid(id), octetString(value));
}

/** keyUsage BIT STRING, DER-minimal: trailing zero bits dropped (X.690 §11.2.2). */
function keyUsageValue(bits: readonly number[]): Buffer {
  let v = 0;
  for (const b of bits) v |= 0x8000 >> b;
  const bytes = v & 0xff ? Buffer.from([v >> 8, v & 0xff]) : Buffer.from([v >> 8]);
  const last = bytes[bytes.length - 1]!;
  let unused = 0;
  while (unused < 7 && (last & (1 << unused)) === 0) unused++;
  return bitString(bytes, unused);
}

const BC_LEAF = extension(OID.basicConstraints, true, seq());
const KU_LEAF_EC = extension(OID.keyUsage, true, keyUsageValue([KeyUsageBit.digitalSignature]));
const KU_LEAF_RSA = extension(
  OID.keyUsage,
  true,
  keyUsageValue([KeyUsageBit.digitalSignature, KeyUsageBit.keyEncipherment]),
);
const KU_CA = extension(OID.keyUsage, true, keyUsageValue([KeyUsageBit.keyCertSign, KeyUsageBit.cRLSign]));
const EKU_LEAF = extension(OID.extKeyUsage, false, seq(oid(OID.serverAuth), oid(OID.clientAuth)));
const SUBJECT_LEAF = seq(set(seq(oid(OID.organization), utf8String('amime'))));

function caName(commonName: string): Buffer {
  if (commonName.length === 0 || commonName.length > MAX_COMMON_NAME) {
    throw new IssueError('bad_option', `commonName must be 1..${MAX_COMMON_NAME} characters, got ${commonName.length}`);
  }
  return seq(
    set(seq(oid(OID.organization), utf8String('amime'))),
    set(seq(oid(OID.commonName), utf8String(commonName))),
  );
}

const skiExtension = (keyId: Buffer): Buffer => extension(OID.subjectKeyIdentifier, false, octetString(keyId));
const akiExtension = (keyId: Buffer): Buffer => extension(OID.authorityKeyIdentifier, false, seq(tlv(0x80, keyId)));
const sanExtension = (uri: string): Buffer => extension(OID.subjectAltName, false, uriGeneralNames(uri));

// ------------------------------------------------------------------ helpers

/** RFC 5280 §4.2.1.2 method (1): SHA-1 of the subjectPublicKey BIT STRING bytes. */
export function keyIdentifier(publicKeyBits: Buffer): Buffer {
  return createHash('sha1').update(publicKeyBits).digest();
}

/**
 * A fresh serial: 128 random bits as a positive, minimal INTEGER's content
 * bytes (a 0x00 is prefixed when the top bit is set; at most 17 bytes, well
 * under RFC 5280's 20).
 */
export function randomSerial(): Buffer {
  const b = randomBytes(16);
  let i = 0;
  while (i < 15 && b[i] === 0) i++;
  const body = b.subarray(i);
  return body[0]! & 0x80 ? Buffer.concat([Buffer.from([0]), body]) : body;
}

const floorSecond = (ms: number): number => Math.floor(ms / 1000) * 1000;

function checkNow(now: Date): number {
  const t = now instanceof Date ? now.getTime() : NaN;
  if (!Number.isFinite(t)) throw new IssueError('bad_option', 'now must be a valid Date');
  return t;
}

function checkSeconds(value: number, name: string, reason: IssueErrorReason, min: number, max = Number.MAX_SAFE_INTEGER / 1000): number {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new IssueError(reason, `${name} must be an integer from ${min} to ${max}, got ${value}`);
  }
  return value;
}

/** Signs `tbs` and wraps it into a Certificate. */
function signCertificate(tbs: Buffer, signer: { privateKey: KeyObject; sigAlg: Buffer }): Buffer {
  return seq(tbs, signer.sigAlg, bitString(sign('sha256', tbs, signer.privateKey)));
}

// ------------------------------------------------------------------ issuers

/** A CA certificate with its private key, as given to the issuing functions. */
export interface IssuerKey {
  readonly certDer: Buffer;
  /** parseCertificate(certDer), when the caller already has it. */
  readonly cert?: ParsedCertificate;
  readonly privateKey: KeyObject;
}

/**
 * An issuer checked once (is a CA, may sign certificates, key matches the
 * certificate) with its per-issuer DER precomputed. Immutable; reuse it.
 */
export class PreparedIssuer {
  readonly certDer: Buffer;
  readonly cert: ParsedCertificate;
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
  readonly keyAlgorithm: AcceptedKeyAlgorithm;
  /** AlgorithmIdentifier of this issuer's signatures. */
  readonly sigAlg: Buffer;
  /** The issuer's subject Name, copied into every certificate's issuer field. */
  readonly name: Buffer;
  /** The issuer's SKI (or the RFC 5280 method-1 key ID when it has none). */
  readonly keyId: Buffer;
  readonly akiExtension: Buffer;
  /** The issuer's trust domain, when its certificate names one in a URI SAN. */
  readonly trustDomain: string | undefined;
  readonly notBeforeMs: number;
  readonly notAfterMs: number;

  constructor(issuer: IssuerKey) {
    let cert: ParsedCertificate;
    try {
      cert = issuer.cert ?? parseCertificate(issuer.certDer);
    } catch (err) {
      throw new IssueError('bad_issuer', `issuer certificate cannot be parsed: ${(err as Error).message}`);
    }
    if (!cert.basicConstraints?.ca) {
      throw new IssueError('issuer_not_ca', 'issuer certificate is not a CA (basicConstraints CA=true is required)');
    }
    if (cert.keyUsage === undefined || (cert.keyUsage & (1 << KeyUsageBit.keyCertSign)) === 0) {
      throw new IssueError('issuer_not_ca', 'issuer certificate lacks keyUsage keyCertSign');
    }
    if (!(issuer.privateKey instanceof KeyObject) || issuer.privateKey.type !== 'private') {
      throw new IssueError('bad_issuer', 'issuer privateKey must be a private KeyObject (see importPrivateKeyPem)');
    }
    try {
      this.keyAlgorithm = keyAlgorithmOf(issuer.privateKey);
    } catch (err) {
      throw new IssueError('unsupported_key', `issuer key: ${(err as Error).message}`);
    }
    const certKey = spkiOf(createPublicKey({ key: cert.spki, format: 'der', type: 'spki' }));
    if (!spkiOf(issuer.privateKey).equals(certKey)) {
      throw new IssueError('issuer_key_mismatch', 'issuer private key does not match the issuer certificate');
    }
    const tdUri = cert.uris.find((u) => u.startsWith('spiffe://'));
    this.trustDomain = tdUri ? parseSpiffeId(tdUri).trustDomain : undefined;
    this.certDer = issuer.certDer;
    this.cert = cert;
    this.privateKey = issuer.privateKey;
    this.publicKey = createPublicKey(issuer.privateKey);
    this.sigAlg = signatureAlgorithmFor(this.keyAlgorithm);
    this.name = Buffer.from(cert.subjectDer);
    this.keyId = cert.subjectKeyId ?? keyIdentifier(cert.publicKeyBits);
    this.akiExtension = akiExtension(this.keyId);
    this.notBeforeMs = cert.notBefore.getTime();
    this.notAfterMs = cert.notAfter.getTime();
    Object.freeze(this);
  }
}

const prepared = new WeakMap<IssuerKey, PreparedIssuer>();

/** The PreparedIssuer for `issuer`, built once per issuer object. */
export function prepareIssuer(issuer: IssuerKey | PreparedIssuer): PreparedIssuer {
  if (issuer instanceof PreparedIssuer) return issuer;
  let p = prepared.get(issuer);
  if (!p) {
    p = new PreparedIssuer(issuer);
    prepared.set(issuer, p);
  }
  return p;
}

/**
 * Validity under `issuer`: [now - skew, now + ttl], clamped into the
 * issuer's own validity, whole seconds (what DER times can say).
 */
function validityUnder(
  issuer: PreparedIssuer,
  nowMs: number,
  ttlSeconds: number,
  skewSeconds: number,
): { notBefore: Date; notAfter: Date } {
  if (issuer.notAfterMs <= nowMs) {
    throw new IssueError('issuer_expired', `issuer certificate expired at ${issuer.cert.notAfter.toISOString()}`);
  }
  if (issuer.notBeforeMs > nowMs) {
    throw new IssueError('issuer_not_yet_valid', `issuer certificate is valid only from ${issuer.cert.notBefore.toISOString()}`);
  }
  const notBefore = Math.max(floorSecond(nowMs - skewSeconds * 1000), issuer.notBeforeMs);
  const notAfter = Math.min(floorSecond(nowMs + ttlSeconds * 1000), issuer.notAfterMs);
  return { notBefore: new Date(notBefore), notAfter: new Date(notAfter) };
}

// --------------------------------------------------------------------- SVIDs

export interface SvidRequest {
  readonly spiffeId: string;
  /** DER SubjectPublicKeyInfo of the workload's key (e.g. ParsedCsr.spki). */
  readonly spki: Buffer;
  readonly ttlSeconds: number;
  readonly now: Date;
  /** Back-dating of notBefore against clock skew; default 60. */
  readonly skewSeconds?: number;
}

export interface IssuedCertificate {
  readonly der: Buffer;
  /** Lowercase hex, no leading zero bytes (as ParsedCertificate.serialHex). */
  readonly serialHex: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
}

/**
 * Everything about an SVID that does not depend on how it is encoded,
 * validated. Shared by every engine so that they issue the same certificate.
 */
export interface SvidPlan {
  readonly spiffeId: string;
  readonly spki: Buffer;
  readonly leafKeyAlgorithm: AcceptedKeyAlgorithm;
  /** keyUsage bits for this leaf key. */
  readonly keyUsage: readonly number[];
  readonly subjectKeyId: Buffer;
  /** Serial INTEGER content bytes. */
  readonly serial: Buffer;
  readonly notBefore: Date;
  readonly notAfter: Date;
}

export function planSvid(issuer: PreparedIssuer, req: SvidRequest): SvidPlan {
  let spiffeId: string;
  try {
    const id = requireWorkloadId(parseSpiffeId(req.spiffeId));
    if (issuer.trustDomain !== undefined && id.trustDomain !== issuer.trustDomain) {
      throw new IssueError(
        'foreign_trust_domain',
        `${req.spiffeId} is not in the issuer's trust domain ${issuer.trustDomain}`,
      );
    }
    spiffeId = id.toString();
  } catch (err) {
    if (err instanceof SpiffeIdError) throw new IssueError('bad_spiffe_id', err.message);
    throw err;
  }
  const nowMs = checkNow(req.now);
  const ttlSeconds = checkSeconds(req.ttlSeconds, 'ttlSeconds', 'bad_ttl', 1);
  const skewSeconds = checkSeconds(req.skewSeconds ?? DEFAULT_SKEW_SECONDS, 'skewSeconds', 'bad_option', 0, MAX_SKEW_SECONDS);

  let key: SpkiInfo;
  try {
    key = inspectSpki(req.spki);
  } catch (err) {
    if (err instanceof KeyError && err.reason === 'unsupported_key') throw new IssueError('unsupported_key', `SVID key: ${err.message}`);
    throw new IssueError('bad_public_key', `SVID key: ${(err as Error).message}`);
  }
  const leafKeyAlgorithm = key.algorithm;
  const keyUsage =
    leafKeyAlgorithm === 'ec-p256'
      ? [KeyUsageBit.digitalSignature]
      : [KeyUsageBit.digitalSignature, KeyUsageBit.keyEncipherment];
  return {
    spiffeId,
    spki: req.spki,
    leafKeyAlgorithm,
    keyUsage,
    subjectKeyId: keyIdentifier(key.bits),
    serial: randomSerial(),
    ...validityUnder(issuer, nowMs, ttlSeconds, skewSeconds),
  };
}

/** The DER engine's encoder: the SVID for an already validated plan. */
function encodeSvid(issuer: PreparedIssuer, plan: SvidPlan): Buffer {
  const tbs = seq(
    V3,
    tlv(0x02, plan.serial),
    issuer.sigAlg,
    issuer.name,
    seq(time(plan.notBefore), time(plan.notAfter)),
    SUBJECT_LEAF,
    plan.spki,
    explicit(
      3,
      seq(
        BC_LEAF,
        plan.leafKeyAlgorithm === 'ec-p256' ? KU_LEAF_EC : KU_LEAF_RSA,
        EKU_LEAF,
        skiExtension(plan.subjectKeyId),
        issuer.akiExtension,
        sanExtension(plan.spiffeId),
      ),
    ),
  );
  return signCertificate(tbs, issuer);
}

export interface IssueSvidOptions extends SvidRequest {
  readonly issuer: IssuerKey | PreparedIssuer;
}

/** Issues one X.509-SVID (DER) with the fast DER engine. */
export function issueSvid(opts: IssueSvidOptions): IssuedCertificate {
  const issuer = prepareIssuer(opts.issuer);
  const plan = planSvid(issuer, opts);
  return { der: encodeSvid(issuer, plan), serialHex: serialToHex(plan.serial), notBefore: plan.notBefore, notAfter: plan.notAfter };
}

// ------------------------------------------------------------------- engines

/** Something that turns validated SVID requests into signed certificates for one issuer. */
export interface SvidEngine {
  readonly name: string;
  readonly issuer: PreparedIssuer;
  issue(req: SvidRequest): IssuedCertificate;
}

export type SvidEngineFactory = (issuer: IssuerKey | PreparedIssuer) => SvidEngine;

/** The fast engine: hand-laid DER, native signatures. The default everywhere. */
export const derEngine: SvidEngineFactory = (issuerKey) => {
  const issuer = prepareIssuer(issuerKey);
  return {
    name: 'der',
    issuer,
    issue(req) {
      const plan = planSvid(issuer, req);
      return { der: encodeSvid(issuer, plan), serialHex: serialToHex(plan.serial), notBefore: plan.notBefore, notAfter: plan.notAfter };
    },
  };
};

// ----------------------------------------------------------------------- CAs

export interface CreateRootCaOptions {
  readonly trustDomain: string;
  readonly keyPair: KeyPair;
  readonly ttlSeconds: number;
  readonly now: Date;
  /** Default `amime root <trust domain>`; make it unique per root (rotation). */
  readonly commonName?: string;
  readonly skewSeconds?: number;
}

/** A self-signed root CA certificate (DER) for `trustDomain`. */
export function createRootCa(opts: CreateRootCaOptions): Buffer {
  const td = checkTrustDomain(opts.trustDomain);
  const nowMs = checkNow(opts.now);
  const ttlSeconds = checkSeconds(opts.ttlSeconds, 'ttlSeconds', 'bad_ttl', 1);
  const skewSeconds = checkSeconds(opts.skewSeconds ?? DEFAULT_SKEW_SECONDS, 'skewSeconds', 'bad_option', 0, MAX_SKEW_SECONDS);
  const key = checkKeyPair(opts.keyPair);
  const name = caName(opts.commonName ?? `amime root ${td}`);
  const sigAlg = signatureAlgorithmFor(key.algorithm);
  const tbs = seq(
    V3,
    tlv(0x02, randomSerial()),
    sigAlg,
    name,
    seq(time(new Date(floorSecond(nowMs - skewSeconds * 1000))), time(new Date(floorSecond(nowMs + ttlSeconds * 1000)))),
    name,
    key.spki,
    explicit(
      3,
      seq(
        extension(OID.basicConstraints, true, seq(boolean(true))),
        KU_CA,
        skiExtension(key.keyId),
        sanExtension(`spiffe://${td}`),
      ),
    ),
  );
  return signCertificate(tbs, { privateKey: key.privateKey, sigAlg });
}

export interface CreateIntermediateCaOptions {
  readonly trustDomain: string;
  readonly keyPair: KeyPair;
  /** The CA that signs the intermediate (usually the root). */
  readonly parent: IssuerKey | PreparedIssuer;
  readonly ttlSeconds: number;
  /** basicConstraints pathLenConstraint; 0 (default) = may sign only leaves. */
  readonly pathLen?: number;
  readonly now: Date;
  /** Default `amime intermediate <trust domain>`. */
  readonly commonName?: string;
  readonly skewSeconds?: number;
}

/** An intermediate CA certificate (DER) signed by `parent`, validity clamped into the parent's. */
export function createIntermediateCa(opts: CreateIntermediateCaOptions): Buffer {
  const td = checkTrustDomain(opts.trustDomain);
  const parent = prepareIssuer(opts.parent);
  if (parent.trustDomain !== undefined && parent.trustDomain !== td) {
    throw new IssueError('foreign_trust_domain', `parent CA belongs to trust domain ${parent.trustDomain}, not ${td}`);
  }
  const pathLen = opts.pathLen ?? 0;
  checkSeconds(pathLen, 'pathLen', 'bad_option', 0, 8);
  const parentPathLen = parent.cert.basicConstraints?.pathLen;
  if (parentPathLen !== undefined && parentPathLen <= pathLen) {
    throw new IssueError('path_len', `parent CA allows ${parentPathLen} CA(s) below it; an intermediate with pathLen ${pathLen} would exceed that`);
  }
  const nowMs = checkNow(opts.now);
  const ttlSeconds = checkSeconds(opts.ttlSeconds, 'ttlSeconds', 'bad_ttl', 1);
  const skewSeconds = checkSeconds(opts.skewSeconds ?? DEFAULT_SKEW_SECONDS, 'skewSeconds', 'bad_option', 0, MAX_SKEW_SECONDS);
  const key = checkKeyPair(opts.keyPair);
  const { notBefore, notAfter } = validityUnder(parent, nowMs, ttlSeconds, skewSeconds);
  const tbs = seq(
    V3,
    tlv(0x02, randomSerial()),
    parent.sigAlg,
    parent.name,
    seq(time(notBefore), time(notAfter)),
    caName(opts.commonName ?? `amime intermediate ${td}`),
    key.spki,
    explicit(
      3,
      seq(
        extension(OID.basicConstraints, true, seq(boolean(true), smallInteger(pathLen))),
        KU_CA,
        skiExtension(key.keyId),
        parent.akiExtension,
        sanExtension(`spiffe://${td}`),
      ),
    ),
  );
  return signCertificate(tbs, parent);
}

function checkTrustDomain(trustDomain: string): string {
  try {
    return parseTrustDomain(trustDomain);
  } catch (err) {
    throw new IssueError('bad_spiffe_id', (err as Error).message);
  }
}

/** A KeyPair whose parts agree, with its canonical SPKI and key ID. */
function checkKeyPair(pair: KeyPair): { algorithm: AcceptedKeyAlgorithm; privateKey: KeyObject; spki: Buffer; keyId: Buffer } {
  let algorithm: AcceptedKeyAlgorithm;
  try {
    algorithm = keyAlgorithmOf(pair.privateKey);
  } catch (err) {
    throw new IssueError('unsupported_key', `CA key: ${(err as Error).message}`);
  }
  const spki = spkiOf(pair.privateKey);
  if (!Buffer.isBuffer(pair.spki) || !spki.equals(pair.spki)) {
    throw new IssueError('issuer_key_mismatch', 'keyPair.spki does not belong to keyPair.privateKey');
  }
  // spkiOf's output is OpenSSL's own canonical encoding of a supported key
  return { algorithm, privateKey: pair.privateKey, spki, keyId: keyIdentifier(inspectSpki(spki).bits) };
}
