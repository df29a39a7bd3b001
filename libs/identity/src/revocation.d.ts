export interface RevocationSet {
    readonly version: number;
    /** Lowercase hex of whole bytes without leading zero bytes, as ParsedCertificate.serialHex. */
    readonly serials: ReadonlySet<string>;
    readonly spiffeIds: ReadonlySet<string>;
}
export interface RevocationSetJson {
    version: number;
    serials: string[];
    spiffeIds: string[];
}
export declare class RevocationError extends Error {
    readonly field: string;
    readonly code = "AMIME_ERR_IDENTITY_REVOCATION";
    constructor(field: string, message: string);
}
/** Bound on entries of each kind; a list beyond it is refused, not truncated. */
export declare const MAX_REVOCATION_ENTRIES = 100000;
/**
 * Normalizes a serial to the canonical form: accepts upper or lower case
 * hex, optional `:` separators and leading zeros; refuses anything else.
 */
export declare function normalizeSerial(serial: string, field?: string): string;
export interface CreateRevocationSetOptions {
    version: number;
    serials?: Iterable<string>;
    spiffeIds?: Iterable<string>;
}
export declare function createRevocationSet(opts: CreateRevocationSetOptions): RevocationSet;
export declare const EMPTY_REVOCATIONS: RevocationSet;
/** Parses `{version, serials, spiffeIds}` (object or JSON text), refusing unknown fields. */
export declare function parseRevocationSet(json: unknown): RevocationSet;
/** The JSON form, with entries sorted so equal sets serialize equally. */
export declare function revocationSetToJson(set: RevocationSet): RevocationSetJson;
export declare function serializeRevocationSet(set: RevocationSet): string;
