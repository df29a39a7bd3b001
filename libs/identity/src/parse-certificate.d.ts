import { type Node } from './der.js';
export interface Extension {
    readonly critical: boolean;
    /** The extnValue OCTET STRING's content (the DER of the extension itself). */
    readonly value: Buffer;
}
export interface ParsedCertificate {
    readonly der: Buffer;
    /** tbsCertificate bytes, the signed part. */
    readonly tbs: Buffer;
    readonly version: number;
    /** Serial number as lowercase hex without leading zero bytes. */
    readonly serialHex: string;
    readonly signatureAlgorithm: string;
    readonly signature: Buffer;
    readonly issuerDer: Buffer;
    readonly subjectDer: Buffer;
    readonly notBefore: Date;
    readonly notAfter: Date;
    /** The SubjectPublicKeyInfo DER, usable with crypto.createPublicKey. */
    readonly spki: Buffer;
    readonly publicKeyAlgorithm: string;
    /** The subjectPublicKey BIT STRING's bytes (for key identifiers). */
    readonly publicKeyBits: Buffer;
    readonly extensions: ReadonlyMap<string, Extension>;
    readonly basicConstraints?: {
        readonly ca: boolean;
        readonly pathLen?: number;
    };
    /** Bit set of keyUsage (bit 0 = digitalSignature), or undefined when absent. */
    readonly keyUsage?: number;
    readonly extKeyUsage?: readonly string[];
    readonly uris: readonly string[];
    /** Count of SAN entries of any kind. */
    readonly sanCount: number;
    readonly subjectKeyId?: Buffer;
    readonly authorityKeyId?: Buffer;
}
export declare function serialToHex(bytes: Buffer): string;
/** Parse an AlgorithmIdentifier, returning its OID. */
export declare function readAlgorithm(node: Node): string;
export declare function parseSpki(node: Node): {
    algorithm: string;
    bits: Buffer;
    curve?: string;
};
/** Decode GeneralNames: URIs and a count of every name. */
export declare function parseGeneralNames(der: Buffer): {
    uris: string[];
    count: number;
};
export declare function parseCertificate(der: Buffer): ParsedCertificate;
