export declare class PemError extends Error {
    readonly code = "AMIME_ERR_IDENTITY_PEM";
    constructor(message: string);
}
/** One PEM block, lines of 64 characters, ending with a newline. */
export declare function toPem(label: string, der: Buffer): string;
/** Certificates as one PEM string, in the given order (leaf first for a chain). */
export declare function certsToPem(ders: readonly Buffer[]): string;
/**
 * Every block labelled `label`, decoded, in file order. Blocks with other
 * labels are skipped (a file may hold a key and its certificate); an empty
 * array means there was none. Throws PemError on anything that is not
 * well-formed PEM.
 */
export declare function fromPem(text: string, label: string): Buffer[];
/** Exactly one block of `label`; throws PemError naming what was found otherwise. */
export declare function fromPemSingle(text: string, label: string): Buffer;
