/** Stable rule names, usable as metric label values. */
export declare const SPIFFE_ID_RULES: readonly ["empty", "too_long", "scheme", "trust_domain_empty", "trust_domain_too_long", "trust_domain_chars", "port", "userinfo", "query", "fragment", "path_empty_segment", "path_dot_segment", "path_trailing_slash", "path_chars", "path_missing"];
export type SpiffeIdRule = (typeof SPIFFE_ID_RULES)[number];
export declare class SpiffeIdError extends Error {
    readonly rule: string;
    readonly code = "AMIME_ERR_IDENTITY_SPIFFE_ID";
    constructor(rule: string, message: string);
}
export interface SpiffeId {
    readonly trustDomain: string;
    readonly path: string;
    toString(): string;
}
export declare const SPIFFE_SCHEME_PREFIX = "spiffe://";
export declare const MAX_SPIFFE_ID_LENGTH = 2048;
export declare const MAX_TRUST_DOMAIN_LENGTH = 255;
/** Parses and validates a SPIFFE ID; throws SpiffeIdError naming the broken rule. */
export declare function parseSpiffeId(input: string): SpiffeId;
/** True when `input` is a valid SPIFFE ID. Never throws. */
export declare function isSpiffeId(input: string): boolean;
/**
 * Builds a SPIFFE ID from a trust domain and path segments, validating each.
 * Segments are taken verbatim: one containing "/" is refused (pass segments
 * separately), nothing is escaped.
 */
export declare function formatSpiffeId(trustDomain: string, ...segments: string[]): SpiffeId;
/**
 * Validates a trust domain name and returns it. Accepts the bare name
 * ("example.org") or the trust-domain-only ID form ("spiffe://example.org");
 * an ID with a path is refused, as is any other scheme.
 */
export declare function parseTrustDomain(input: string): string;
/** True when the ID names a workload (has a path), not just a trust domain. */
export declare function isWorkloadId(id: SpiffeId): boolean;
/** Returns the ID if it names a workload; throws SpiffeIdError('path_missing') otherwise. */
export declare function requireWorkloadId(id: SpiffeId): SpiffeId;
/** True when both IDs name the same identity (IDs are compared exactly; nothing is normalized). */
export declare function sameSpiffeId(a: SpiffeId, b: SpiffeId): boolean;
/** True when both IDs belong to the same trust domain. */
export declare function sameTrustDomain(a: SpiffeId, b: SpiffeId): boolean;
/** True when the ID belongs to the given (bare, already validated) trust domain name. */
export declare function memberOf(id: SpiffeId, trustDomain: string): boolean;
