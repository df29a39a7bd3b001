import { type ParsedCertificate } from './parse-certificate.js';
import type { RevocationSet } from './revocation.js';
import type { TrustBundle } from './trust-bundle.js';
/** Stable reason codes, snake_case so they can be Prometheus label values. */
export declare const SVID_REJECT_REASONS: readonly ["malformed", "empty_chain", "chain_too_long", "root_only", "leaf_is_ca", "leaf_missing_basic_constraints", "san_count", "bad_spiffe_id", "trust_domain_mismatch", "key_usage_missing", "key_usage_not_critical", "key_usage_no_digital_signature", "key_usage_cert_sign", "eku_incomplete", "unknown_critical_extension", "unknown_issuer", "unsupported_algorithm", "bad_signature", "issuer_not_ca", "issuer_key_usage", "path_len_exceeded", "name_constraints_violation", "unsupported_name_constraints", "expired", "not_yet_valid", "revoked", "no_peer_certificate", "tls_verify_failed"];
export type SvidRejectReason = (typeof SVID_REJECT_REASONS)[number];
export interface SvidAccepted {
    readonly ok: true;
    readonly spiffeId: string;
    readonly leaf: ParsedCertificate;
    /** Leaf first, ending with the bundle root that anchors it. */
    readonly path: readonly ParsedCertificate[];
}
export interface SvidRejected {
    readonly ok: false;
    readonly reason: SvidRejectReason;
    readonly message: string;
}
export type SvidVerification = SvidAccepted | SvidRejected;
export interface VerifySvidOptions {
    readonly bundle: TrustBundle;
    readonly revocations?: RevocationSet;
    /** Defaults to the current time. */
    readonly now?: Date;
    /** Expected trust domain of the leaf; defaults to the bundle's. */
    readonly trustDomain?: string;
}
/**
 * At most this many certificates are accepted from a peer, and a built path
 * (leaf … root, root included) is at most this long.
 */
export declare const MAX_CHAIN_LENGTH = 5;
/**
 * Verifies `chain` (DER, leaf first, then the intermediates as the peer sent
 * them) as an X.509-SVID of the expected trust domain, anchored in `bundle`.
 * Never throws.
 */
export declare function verifySvid(chain: readonly Buffer[], opts: VerifySvidOptions): SvidVerification;
