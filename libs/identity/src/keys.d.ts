import { type JsonWebKey, type KeyObject } from 'node:crypto';
/** Algorithms amime generates keys for: P-256 by default, RSA-2048 for interop. */
export type KeyAlgorithm = 'ec-p256' | 'rsa-2048';
/**
 * Algorithms accepted from elsewhere (CSRs, operator-supplied CA keys): what
 * we generate plus the larger usual RSA sizes.
 */
export type AcceptedKeyAlgorithm = KeyAlgorithm | 'rsa-3072' | 'rsa-4096';
export declare const KEY_ALGORITHMS: readonly KeyAlgorithm[];
export interface KeyPair {
    readonly algorithm: AcceptedKeyAlgorithm;
    readonly privateKey: KeyObject;
    readonly publicKey: KeyObject;
    /** DER SubjectPublicKeyInfo, as it goes into CSRs and certificates. */
    readonly spki: Buffer;
}
export type KeyErrorReason = 'unsupported_key' | 'malformed';
export declare class KeyError extends Error {
    readonly reason: KeyErrorReason;
    readonly code = "AMIME_ERR_IDENTITY_KEY";
    constructor(reason: KeyErrorReason, message: string);
}
export declare function generateKeyPair(algorithm: KeyAlgorithm): KeyPair;
/**
 * The amime name of a key's algorithm (private or public KeyObject). Throws
 * KeyError('unsupported_key') for anything but P-256 and RSA 2048/3072/4096
 * with a standard public exponent.
 */
export declare function keyAlgorithmOf(key: KeyObject): AcceptedKeyAlgorithm;
/** DER SubjectPublicKeyInfo of a public (or private) key, in canonical form. */
export declare function spkiOf(key: KeyObject): Buffer;
/** The private key as unencrypted PKCS#8 PEM ("PRIVATE KEY"). Store it 0600. */
export declare function exportPrivateKeyPem(key: KeyObject): string;
/**
 * Reads exactly one unencrypted PKCS#8 "PRIVATE KEY" PEM block and returns
 * the full key pair. Legacy "EC PRIVATE KEY"/"RSA PRIVATE KEY" files are
 * refused: convert them with `openssl pkcs8 -topk8 -nocrypt`.
 */
export declare function importPrivateKeyPem(pem: string): KeyPair;
/** Completes a private KeyObject into a KeyPair, checking that the algorithm is supported. */
export declare function keyPairFromPrivateKey(privateKey: KeyObject): KeyPair;
/**
 * DER AlgorithmIdentifier of the signatures this key makes with
 * `crypto.sign('sha256', data, key)` (ECDSA: DER-encoded, as X.509 wants;
 * RSA: PKCS#1 v1.5). Shared constant buffers: do not modify.
 */
export declare function signatureAlgorithmFor(algorithm: AcceptedKeyAlgorithm): Buffer;
export interface SpkiInfo {
    readonly algorithm: AcceptedKeyAlgorithm;
    /** The subjectPublicKey BIT STRING bytes (for key identifiers). */
    readonly bits: Buffer;
    /** The key as a public JWK, for a cheap import. */
    readonly jwk: JsonWebKey;
}
/**
 * Checks a DER SubjectPublicKeyInfo without OpenSSL: P-256 (uncompressed
 * point) or RSA 2048/3072/4096 with a standard exponent, in canonical DER.
 * Throws KeyError ('unsupported_key' or 'malformed'). Does not check that an
 * EC point is on the curve: importing it (publicKeyFromSpki) does.
 */
export declare function inspectSpki(spki: Buffer): SpkiInfo;
/**
 * A public KeyObject for an SPKI already checked by inspectSpki, imported
 * through JWK (which also checks that an EC point is on the curve).
 */
export declare function publicKeyFromSpki(info: SpkiInfo): KeyObject;
