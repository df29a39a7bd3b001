// The CA's signing front: CSR in (parsed, proof of possession verified,
// SPIFFE ID checked against the request and the trust domain), signed SVID
// and chain out. Everything per-signer is checked and precomputed in the
// constructor, which then signs and verifies a throwaway SVID (as SPIRE
// does before activating a CA) so that a broken signer fails at load time,
// not on the first workload.
//
// Who may get which ID is not decided here (that is the CA service's
// policy); this class only guarantees that what it signs is what was asked
// for, for a key that proved possession, in its own trust domain.
import { X509Certificate, type KeyObject } from 'node:crypto';
import {
  DEFAULT_SKEW_SECONDS,
  IssueError,
  derEngine,
  prepareIssuer,
  type PreparedIssuer,
  type SvidEngine,
  type SvidEngineFactory,
} from './issue.js';
import { CsrError, DEFAULT_MAX_CSR_BYTES, type KeyAlgorithm, SpiffeIdError, certsToPem, createCsr, generateKeyPair, parseCsr, parseSpiffeId, parseTrustDomain, requireWorkloadId } from '@amime/identity';

export interface CaSigner {
  /** The signing (intermediate) CA certificate. */
  readonly certDer: Buffer;
  readonly privateKey: KeyObject;
  /**
   * The signer's certificate followed by its issuers toward the root
   * (default: just certDer). A self-signed root at the end is used only to
   * check the chain and is never sent: peers hold roots in their bundle.
   */
  readonly chainDer?: readonly Buffer[];
}

export interface CertificateAuthorityOptions {
  readonly trustDomain: string;
  readonly signer: CaSigner;
  /** Default derEngine; the reference engines (engines/*.ts) for benchmarks and cross-checks. */
  readonly engine?: SvidEngineFactory;
  readonly clock?: () => Date;
  readonly maxCsrBytes?: number;
  readonly skewSeconds?: number;
}

export interface SignCsrOptions {
  /** The identity the caller has decided this requester gets; the CSR must ask for exactly it. */
  readonly spiffeId: string;
  readonly ttlSeconds: number;
}

export interface SignedSvid {
  readonly certDer: Buffer;
  /** Leaf first, then the intermediate(s); never the root. */
  readonly chainDer: readonly Buffer[];
  readonly chainPem: string;
  readonly serialHex: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly spiffeId: string;
}

const SELF_TEST_PATH = '/amime-ca/self-test';
const SELF_TEST_TTL_SECONDS = 60;

export class CertificateAuthority {
  readonly trustDomain: string;
  readonly engineName: string;
  readonly #engine: SvidEngine;
  readonly #issuer: PreparedIssuer;
  /** Intermediates sent after the leaf. */
  readonly #chainDer: readonly Buffer[];
  readonly #chainPem: string;
  readonly #root: X509Certificate | undefined;
  readonly #clock: () => Date;
  readonly #maxCsrBytes: number;
  readonly #skewSeconds: number;

  constructor(opts: CertificateAuthorityOptions) {
    try {
      this.trustDomain = parseTrustDomain(opts.trustDomain);
    } catch (err) {
      throw new IssueError('bad_option', `trustDomain: ${(err as Error).message}`);
    }
    const { signer } = opts;
    if (!signer || !Buffer.isBuffer(signer.certDer)) throw new IssueError('bad_option', 'signer.certDer must be the DER of the signing CA certificate');
    this.#issuer = prepareIssuer({ certDer: signer.certDer, privateKey: signer.privateKey });
    if (this.#issuer.trustDomain !== undefined && this.#issuer.trustDomain !== this.trustDomain) {
      throw new IssueError(
        'foreign_trust_domain',
        `signer certificate names trust domain ${this.#issuer.trustDomain}, but this CA serves ${this.trustDomain}`,
      );
    }
    const { intermediates, root } = checkChain(signer.certDer, signer.chainDer ?? [signer.certDer]);
    this.#chainDer = intermediates;
    this.#chainPem = certsToPem(intermediates);
    this.#root = root;
    this.#engine = (opts.engine ?? derEngine)(this.#issuer);
    this.engineName = this.#engine.name;
    this.#clock = opts.clock ?? (() => new Date());
    this.#maxCsrBytes = opts.maxCsrBytes ?? DEFAULT_MAX_CSR_BYTES;
    this.#skewSeconds = opts.skewSeconds ?? DEFAULT_SKEW_SECONDS;
    this.selfTest();
  }

  /** The signing certificate's notAfter: SVIDs never outlive it. */
  get signerNotAfter(): Date {
    return this.#issuer.cert.notAfter;
  }

  /**
   * Parses and verifies `csr`, checks that it asks for exactly
   * `opts.spiffeId` in this trust domain, and issues the SVID. Throws
   * CsrError (bad CSR, mismatch) or IssueError (bad request, signer expired).
   */
  signCsr(csr: Buffer | string, opts: SignCsrOptions): SignedSvid {
    const requested = this.#requestedId(opts.spiffeId);
    const parsed = parseCsr(csr, { maxBytes: this.#maxCsrBytes });
    if (parsed.spiffeId.trustDomain !== this.trustDomain) {
      throw new CsrError(
        'foreign_trust_domain',
        `CSR asks for ${parsed.spiffeId.toString()}, outside this CA's trust domain ${this.trustDomain}`,
      );
    }
    if (parsed.spiffeId.toString() !== requested) {
      throw new CsrError('spiffe_id_mismatch', `CSR asks for ${parsed.spiffeId.toString()}, but the request is for ${requested}`);
    }
    const leaf = this.#engine.issue({
      spiffeId: requested,
      spki: parsed.spki,
      ttlSeconds: opts.ttlSeconds,
      now: this.#clock(),
      skewSeconds: this.#skewSeconds,
    });
    return {
      certDer: leaf.der,
      chainDer: [leaf.der, ...this.#chainDer],
      chainPem: certsToPem([leaf.der]) + this.#chainPem,
      serialHex: leaf.serialHex,
      notBefore: leaf.notBefore,
      notAfter: leaf.notAfter,
      spiffeId: requested,
    };
  }

  /**
   * Signs an SVID for a throwaway key and verifies it natively: signature
   * under the signer (and the chain up to the root when one was given), the
   * issuer/AKI link, the SPIFFE ID and the key. Throws
   * IssueError('self_test_failed'); returns the test SVID.
   */
  selfTest(): SignedSvid {
    // forge cannot encode EC keys, so test it with the key type it supports
    const keyAlgorithm: KeyAlgorithm = this.engineName === 'forge' ? 'rsa-2048' : 'ec-p256';
    const key = generateKeyPair(keyAlgorithm);
    const spiffeId = `spiffe://${this.trustDomain}${SELF_TEST_PATH}`;
    let svid: SignedSvid;
    try {
      svid = this.signCsr(createCsr(key, spiffeId), { spiffeId, ttlSeconds: SELF_TEST_TTL_SECONDS });
    } catch (err) {
      throw new IssueError('self_test_failed', `CA self-test: signing a test SVID failed: ${(err as Error).message}`);
    }
    const leaf = new X509Certificate(svid.certDer);
    const signer = new X509Certificate(this.#issuer.certDer);
    const failures: string[] = [];
    if (!leaf.verify(signer.publicKey)) failures.push('the signature does not verify under the signer certificate');
    if (!leaf.checkIssued(signer)) failures.push('the issuer name or key identifier does not match the signer');
    if (leaf.subjectAltName !== `URI:${spiffeId}`) failures.push(`the SAN is ${leaf.subjectAltName}, expected URI:${spiffeId}`);
    if (!leaf.publicKey.equals(key.publicKey)) failures.push('the certified key is not the requested key');
    if (leaf.ca) failures.push('the test SVID is a CA certificate');
    const chain = [...svid.chainDer.slice(1).map((d) => new X509Certificate(d)), ...(this.#root ? [this.#root] : [])];
    for (let i = 0; i + 1 < chain.length; i++) {
      if (!chain[i]!.verify(chain[i + 1]!.publicKey)) failures.push(`chain certificate ${i + 1} is not signed by the next one`);
    }
    if (failures.length > 0) throw new IssueError('self_test_failed', `CA self-test: ${failures.join('; ')}`);
    return svid;
  }

  #requestedId(spiffeId: string): string {
    let id;
    try {
      id = requireWorkloadId(parseSpiffeId(spiffeId));
    } catch (err) {
      if (err instanceof SpiffeIdError) throw new IssueError('bad_spiffe_id', `requested SPIFFE ID: ${err.message}`);
      throw err;
    }
    if (id.trustDomain !== this.trustDomain) {
      throw new IssueError('foreign_trust_domain', `requested SPIFFE ID ${spiffeId} is outside this CA's trust domain ${this.trustDomain}`);
    }
    return id.toString();
  }
}

/**
 * Checks that chainDer starts with the signer and that each certificate is
 * signed by the next; splits off a trailing self-signed root.
 */
function checkChain(certDer: Buffer, chainDer: readonly Buffer[]): { intermediates: Buffer[]; root: X509Certificate | undefined } {
  if (chainDer.length === 0 || !chainDer[0]!.equals(certDer)) {
    throw new IssueError('bad_option', 'signer.chainDer must start with signer.certDer');
  }
  let certs: X509Certificate[];
  try {
    certs = chainDer.map((d) => new X509Certificate(d));
  } catch (err) {
    throw new IssueError('bad_option', `signer.chainDer: ${(err as Error).message}`);
  }
  for (let i = 0; i + 1 < certs.length; i++) {
    if (!certs[i]!.checkIssued(certs[i + 1]!) || !certs[i]!.verify(certs[i + 1]!.publicKey)) {
      throw new IssueError('bad_option', `signer.chainDer[${i}] is not issued by signer.chainDer[${i + 1}]`);
    }
  }
  const last = certs[certs.length - 1]!;
  const selfSigned = certs.length > 1 && last.checkIssued(last) && last.verify(last.publicKey);
  return {
    intermediates: (selfSigned ? chainDer.slice(0, -1) : chainDer).map((d) => Buffer.from(d)),
    root: selfSigned ? last : undefined,
  };
}
