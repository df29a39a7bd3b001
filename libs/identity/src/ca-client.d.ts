import { type SpiffeBundleDocument } from './trust-bundle.js';
/** Reasons a request failed before the CA could answer it. */
export declare const CA_CLIENT_TRANSPORT_REASONS: readonly ["unreachable", "timeout", "server_identity", "tls", "bad_response"];
export type CaClientTransportReason = (typeof CA_CLIENT_TRANSPORT_REASONS)[number];
/**
 * Either the CA's refusal (code, reason, message and HTTP status from its
 * `{error:{code,reason,message}}` body) or a transport failure (status 0,
 * code AMIME_ERR_CA_CLIENT_<REASON>, reason one of CA_CLIENT_TRANSPORT_REASONS).
 */
export declare class CaClientError extends Error {
    readonly code: string;
    readonly reason: string;
    /** HTTP status; 0 when the CA never answered. */
    readonly status: number;
    constructor(code: string, reason: string, message: string, 
    /** HTTP status; 0 when the CA never answered. */
    status?: number);
    /** True when the CA itself refused the request (it answered with its error JSON). */
    get refused(): boolean;
}
export interface CaCredential {
    /** Our SVID chain, leaf first (PEM). */
    certPem: string;
    /** PKCS#8 private key (PEM). */
    keyPem: string;
}
export interface CaClientOptions {
    /** https://host:port of the CA API. */
    url: string;
    /** Trust roots (PEM) the CA's server certificate must chain to. */
    bundlePem: string;
    /** Our SVID for mTLS; absent only for join-token bootstrap. */
    credential?: CaCredential;
    /** Trust domain; by default taken from the credential's SPIFFE ID, else from the bundle roots' URI SAN. */
    trustDomain?: string;
    /** The server must prove this SPIFFE ID; default spiffe://<td>/control-plane/ca. */
    expectedServerId?: string;
    /** Per request, connect included; default 10 s. */
    timeoutMs?: number;
}
export interface JoinResult {
    spiffeId: string;
    node: string;
    serial: string;
    notAfter: string;
    /** Leaf then intermediate (PEM). */
    svid: string;
    /** The trust bundle's roots (PEM). */
    bundle: string;
}
export interface SvidResult {
    spiffeId: string;
    serial: string;
    notAfter: string;
    svid: string;
}
export interface RevocationList {
    version: number;
    serials: string[];
    spiffeIds: string[];
}
export type Assignments = Record<string, string[]>;
export interface JoinToken {
    token: string;
    node: string;
    expiresAt: string;
}
export interface Assignment {
    node: string;
    spiffeId: string;
}
export type RevokeTarget = ({
    serial: string;
} | {
    spiffeId: string;
} | {
    node: string;
}) & {
    reason?: string;
};
export interface RevokeResult {
    version: number;
    /** Only when a node was evicted. */
    revokedSerials?: number;
}
export type RotationStep = 'prepare' | 'activate' | 'retire';
export interface RotationStatus {
    phase: 'steady' | 'prepared' | 'activated';
    newSlot?: string;
    oldSlot?: string;
    preparedAt?: string;
    activatedAt?: string;
    retireAfter?: string;
    activeSlot: string;
    bundleSequence: number;
    roots: {
        slot: string;
        fingerprint: string;
        notAfter: string;
    }[];
    canActivateAfter?: string;
}
export interface CaStatus {
    trustDomain: string;
    keyAlgorithm: string;
    bundleSequence: number;
    revocationVersion: number;
    rotation: RotationStatus['phase'];
    roots: string[];
    activeSlot: string;
    nodes: Record<string, {
        joinedAt?: string;
        evictedAt?: string;
    }>;
    assignments: number;
    pendingTokens: number;
    ttl: Record<string, number>;
}
/** Sorts a socket-level failure into a transport reason. */
export declare function classifyTransportError(err: Error & {
    code?: string;
}): CaClientError;
/** Trust domain named by the first spiffe:// URI SAN in the PEM certificates, if any. */
export declare function trustDomainFromPem(pem: string): string | undefined;
export declare class CaClient {
    #private;
    readonly url: URL;
    readonly trustDomain: string;
    readonly expectedServerId: string;
    readonly timeoutMs: number;
    constructor(opts: CaClientOptions);
    /** The trust roots in use (PEM). */
    get bundlePemInUse(): string;
    /** Trust new roots (after a bundle refresh or a rotation step); open connections are dropped. */
    updateTrust(bundlePem: string): void;
    /** Authenticate with a renewed SVID from now on; open connections are dropped. */
    updateCredential(credential: CaCredential): void;
    /** Close idle keep-alive connections. The client stays usable. */
    close(): void;
    /** Bootstrap: spend a join token for the SVID spiffe://<td>/agent/<node>. */
    join(token: string, csr: string | Buffer): Promise<JoinResult>;
    /** An SVID for `spiffeId` (our own, an assigned workload's, or an admin's control-plane/admin ID). */
    svid(csr: string | Buffer, spiffeId: string): Promise<SvidResult>;
    /** The trust bundle as a SPIFFE bundle document (JWKS with spiffe_sequence). */
    bundle(): Promise<SpiffeBundleDocument>;
    /** The trust bundle's roots as PEM. */
    bundlePem(): Promise<string>;
    revocations(): Promise<RevocationList>;
    /** Assignments of `node` (an agent always gets its own node's). */
    assignments(node?: string): Promise<Assignments>;
    createToken(node: string, ttlSeconds?: number): Promise<JoinToken>;
    assign(node: string, spiffeId: string): Promise<Assignment>;
    unassign(node: string, spiffeId: string): Promise<Assignment>;
    listAssignments(): Promise<Assignments>;
    /** Revoke one serial, one SPIFFE ID, or evict a node (every SVID whose key lives there). */
    revoke(target: RevokeTarget): Promise<RevokeResult>;
    unrevoke(spiffeId: string): Promise<{
        version: number;
    }>;
    rotation(): Promise<RotationStatus>;
    rotate(step: RotationStep, force?: boolean): Promise<RotationStatus>;
    status(): Promise<CaStatus>;
}
/** The CA's `{error:{code,reason,message}}` answer as a CaClientError. */
export declare function errorFromBody(method: string, path: string, status: number, text: string): CaClientError;
