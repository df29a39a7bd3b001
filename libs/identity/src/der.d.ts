export declare class DerError extends Error {
    readonly code = "AMIME_ERR_IDENTITY_DER";
    constructor(message: string);
}
export declare const Tag: {
    readonly BOOLEAN: 1;
    readonly INTEGER: 2;
    readonly BIT_STRING: 3;
    readonly OCTET_STRING: 4;
    readonly NULL: 5;
    readonly OID: 6;
    readonly UTF8_STRING: 12;
    readonly PRINTABLE_STRING: 19;
    readonly IA5_STRING: 22;
    readonly UTC_TIME: 23;
    readonly GENERALIZED_TIME: 24;
    readonly SEQUENCE: 48;
    readonly SET: 49;
};
export declare function tlv(tag: number, content: Buffer): Buffer;
export declare const seq: (...parts: Buffer[]) => Buffer;
export declare const set: (...parts: Buffer[]) => Buffer;
/** [n] EXPLICIT wrapper (context-specific, constructed). */
export declare const explicit: (n: number, ...parts: Buffer[]) => Buffer;
export declare const octetString: (b: Buffer) => Buffer;
export declare const nullValue: () => Buffer;
export declare const boolean: (v: boolean) => Buffer;
export declare const utf8String: (s: string) => Buffer;
export declare const ia5String: (s: string) => Buffer;
export declare function bitString(bytes: Buffer, unusedBits?: number): Buffer;
/** A non-negative INTEGER from big-endian magnitude bytes (minimal, sign-safe). */
export declare function unsignedInteger(magnitude: Buffer): Buffer;
export declare function smallInteger(n: number): Buffer;
export declare function oid(dotted: string): Buffer;
/** RFC 5280 §4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050; whole seconds, Zulu. */
export declare function time(d: Date): Buffer;
/** One decoded TLV: positions are offsets into `buf`. */
export interface Node {
    readonly buf: Buffer;
    readonly tag: number;
    /** Offset of the tag byte. */
    readonly start: number;
    /** Offset of the first content byte. */
    readonly contentStart: number;
    /** Offset one past the last content byte. */
    readonly end: number;
}
export declare function readNode(buf: Buffer, offset: number, limit?: number): Node;
/** Parse a whole buffer that must be exactly one element. */
export declare function readRoot(buf: Buffer): Node;
export declare function children(node: Node): Node[];
export declare function expectTag(node: Node, tag: number, what: string): Node;
export declare const content: (n: Node) => Buffer;
export declare const whole: (n: Node) => Buffer;
export declare function readOid(node: Node): string;
export declare function readBoolean(node: Node): boolean;
/** INTEGER as its raw two's-complement bytes (checked minimal). */
export declare function readIntegerBytes(node: Node): Buffer;
export declare function readSmallInteger(node: Node): number;
/** BIT STRING: returns the bytes and the number of unused trailing bits. */
export declare function readBitString(node: Node): {
    bytes: Buffer;
    unusedBits: number;
};
export declare function readTime(node: Node): Date;
