import { type KeyObject } from 'node:crypto';
import { type AcceptedKeyAlgorithm, type KeyPair } from './keys.js';
import { type Extension } from './parse-certificate.js';
import { type SpiffeId } from './spiffe-id.js';
/** Stable refusal reasons, snake_case for metric labels. */
export declare const CSR_REJECT_REASONS: readonly ["malformed", "too_large", "bad_signature", "unsupported_key", "unsupported_algorithm", "san_count", "bad_spiffe_id", "spiffe_id_mismatch", "foreign_trust_domain"];
export type CsrRejectReason = (typeof CSR_REJECT_REASONS)[number];
export declare class CsrError extends Error {
    readonly reason: CsrRejectReason;
    readonly code = "AMIME_ERR_IDENTITY_CSR";
    constructor(reason: CsrRejectReason, message: string);
}
/** A P-256 CSR is ~300 bytes and an RSA-4096 one ~1.7 KB; anything near 8 KB is not ours. */
export declare const DEFAULT_MAX_CSR_BYTES: number;
export interface ParseCsrOptions {
    /** Largest accepted DER size; PEM text may be up to twice this. */
    readonly maxBytes?: number;
}
export interface ParsedCsr {
    readonly der: Buffer;
    /** The requester's SubjectPublicKeyInfo (checked canonical, so certificates can carry it verbatim). */
    readonly spki: Buffer;
    readonly publicKey: KeyObject;
    readonly keyAlgorithm: AcceptedKeyAlgorithm;
    /** The subject Name DER as sent (informational; the CA sets its own). */
    readonly subjectDer: Buffer;
    /** Exactly one entry, the SPIFFE ID (validated). */
    readonly uris: readonly string[];
    readonly spiffeId: SpiffeId;
    /** SAN entries of every kind (always 1 for an accepted CSR). */
    readonly sanCount: number;
    /** All requested extensions. Informational: the CA never copies them. */
    readonly extensions: ReadonlyMap<string, Extension>;
}
/** GeneralNames with one uniformResourceIdentifier ([6] IMPLICIT IA5String). */
export declare function uriGeneralNames(uri: string): Buffer;
/**
 * A DER PKCS#10 request for `spiffeId`, signed with the pair's private key:
 * subject O=amime, the SPIFFE ID as the only SAN in an extensionRequest.
 */
export declare function createCsr(keyPair: KeyPair, spiffeId: string): Buffer;
/**
 * Parses and verifies a CSR (DER Buffer, or PEM "CERTIFICATE REQUEST" as
 * string or Buffer). Throws CsrError; never returns a CSR whose signature,
 * key, algorithm or SAN is unacceptable.
 */
export declare function parseCsr(input: Buffer | string, opts?: ParseCsrOptions): ParsedCsr;
