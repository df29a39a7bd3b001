import { type ParsedCertificate } from './parse-certificate.js';
export interface TrustBundle {
    readonly trustDomain: string;
    readonly roots: readonly ParsedCertificate[];
    readonly sequence: number;
    readonly refreshHintSeconds: number;
}
export declare class TrustBundleError extends Error {
    readonly field: string;
    readonly code = "AMIME_ERR_IDENTITY_TRUST_BUNDLE";
    /** The offending field, e.g. `keys[1].x5c` or `spiffe_sequence`. */
    constructor(field: string, message: string);
}
export declare const DEFAULT_REFRESH_HINT_SECONDS = 300;
export declare const MAX_BUNDLE_ROOTS = 64;
/** Largest SPIFFE bundle document accepted, in bytes of JSON. */
export declare const MAX_BUNDLE_JSON_BYTES: number;
export interface CreateTrustBundleOptions {
    trustDomain: string;
    /** Root CA certificates, DER. */
    roots: readonly Buffer[];
    sequence?: number;
    refreshHintSeconds?: number;
}
export declare function createTrustBundle(opts: CreateTrustBundleOptions): TrustBundle;
export interface SpiffeBundleKey {
    readonly use: 'x509-svid';
    readonly kty: 'EC' | 'RSA';
    readonly crv?: string;
    readonly x?: string;
    readonly y?: string;
    readonly n?: string;
    readonly e?: string;
    /** Exactly one certificate, standard base64 DER. */
    readonly x5c: readonly [string];
}
export interface SpiffeBundleDocument {
    readonly keys: readonly SpiffeBundleKey[];
    readonly spiffe_sequence: number;
    readonly spiffe_refresh_hint: number;
}
/** The SPIFFE bundle (a JWK Set) for `bundle`; JSON.stringify it to publish. */
export declare function toSpiffeBundle(bundle: TrustBundle): SpiffeBundleDocument;
/**
 * Parses and validates a SPIFFE bundle (object or JSON text) for
 * `trustDomain`. Keys whose `use` is not `x509-svid` (e.g. `jwt-svid`) are
 * ignored, as the specification asks; anything malformed is refused with a
 * TrustBundleError naming the field.
 */
export declare function parseSpiffeBundle(json: unknown, trustDomain: string): TrustBundle;
/** The roots as concatenated PEM, e.g. for node:tls `ca`. */
export declare function bundleToPem(bundle: TrustBundle): string;
/** A bundle from PEM text holding only CERTIFICATE blocks (anything else is refused). */
export declare function bundleFromPem(pem: string, trustDomain: string, sequence?: number, refreshHintSeconds?: number): TrustBundle;
/**
 * SHA-256 (hex) over the roots, independent of their order: the digest of the
 * sorted per-root digests. Equal fingerprints mean equal root sets.
 */
export declare function bundleFingerprint(bundle: TrustBundle): string;
