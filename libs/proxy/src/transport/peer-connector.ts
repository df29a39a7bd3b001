// Outbound mTLS connections to peer agents.
//
// One SecureContext per source identity (built by the identity manager once
// per SVID rotation) is passed to every tls.connect; the target service rides
// in SNI and the protocol in ALPN. Node's hostname check is off (SVIDs name
// peers by URI SAN): our own verify() runs on secureConnect, and the socket
// reaches the caller only after verification, the identity match and the ALPN
// match, so no application byte is ever written to an unverified peer.
//
// TLS session resumption: sessions are cached per (endpoint, SNI, source
// identity) in a bounded LRU together with the peer they were verified
// against. On Node 20 a resumed client session carries no peer certificate
// (getPeerCertificate() is empty, so the identity verifier cannot run on
// it); a resumed session is instead bound to the peer verified in the full
// handshake that created it, which only the same server (holder of the
// session secret) can resume. Entries expire after sessionTtlMs or at the
// peer certificate's notAfter, and forgetPeers() drops them when a
// revocation arrives.

import tls, { type TLSSocket } from 'node:tls';
import { PeerConnectError, positiveInt, reasonOf } from './errors.js';
import { peerLeafFacts, type VerifiedPeer, type VerifyPeerFn } from './peer-verification.js';

export interface PeerConnectorOptions {
  /** The source identity's SVID context; built once per SVID rotation, never per connection. May throw (no SVID yet). */
  context(sourceIdentity: string): tls.SecureContext;
  /** Bundle + revocation check of the peer's SVID. */
  verify: VerifyPeerFn;
  /** Default 10 000 ms: TCP connect + TLS handshake + verification. */
  handshakeTimeoutMs?: number;
  /** Cached TLS sessions (LRU); default 1024, 0 disables resumption. */
  sessionCacheSize?: number;
  /** Longest a session is offered for resumption; default 300 000 ms (Node's server ticket lifetime). */
  sessionTtlMs?: number;
  /** Clock in ms for session expiry; default Date.now. */
  now?: () => number;
}

export interface PeerConnectRequest {
  readonly address: string;
  readonly port: number;
  /** Target service, e.g. serviceSni({ service, namespace }). */
  readonly sni: string;
  /** ALPN_TCP or ALPN_HTTP1: the one protocol offered, and required. */
  readonly alpn: string;
  /** SPIFFE ID of the calling workload: selects the SVID presented. */
  readonly sourceIdentity: string;
  /** SPIFFE ID the peer agent must present for this target. */
  readonly expectedIdentity: string;
}

export interface PeerConnectorStats {
  /** Connections that passed every check. */
  connected: number;
  fullHandshakes: number;
  resumedHandshakes: number;
  /** Refusals and failures, by PeerConnectError code. */
  failed: Record<string, number>;
  /** Sessions stored (each 'session' event of a verified connection). */
  sessionsStored: number;
  /** Sessions dropped by LRU bound, expiry, forgetSessions or forgetPeers. */
  sessionsDropped: number;
}

interface SessionEntry extends VerifiedPeer {
  readonly session: Buffer;
  readonly sourceIdentity: string;
  readonly expiresAt: number;
}

const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;
const DEFAULT_SESSION_CACHE_SIZE = 1024;
const DEFAULT_SESSION_TTL_MS = 300_000;

/** Node's hostname check does not apply to SVIDs: verify() decides. */
const skipHostnameCheck = (): undefined => undefined;

export class PeerConnector {
  readonly stats: PeerConnectorStats = {
    connected: 0,
    fullHandshakes: 0,
    resumedHandshakes: 0,
    failed: {},
    sessionsStored: 0,
    sessionsDropped: 0,
  };
  readonly #context: (sourceIdentity: string) => tls.SecureContext;
  readonly #verify: VerifyPeerFn;
  readonly #handshakeTimeoutMs: number;
  readonly #sessionCacheSize: number;
  readonly #sessionTtlMs: number;
  readonly #now: () => number;
  /** Insertion order = recency (a hit re-inserts). */
  readonly #sessions = new Map<string, SessionEntry>();
  /** Bumped by forgetSessions: sockets opened before it no longer store sessions. */
  readonly #generation = new Map<string, number>();
  /** Bumped by forgetPeers: a ticket arriving late on an older socket is not stored. */
  #peerEpoch = 0;

  constructor(opts: PeerConnectorOptions) {
    if (typeof opts?.context !== 'function') throw new TypeError('PeerConnector: options.context must be a function (sourceIdentity) => SecureContext');
    if (typeof opts.verify !== 'function') throw new TypeError('PeerConnector: options.verify must be a function (socket) => verification');
    this.#context = opts.context;
    this.#verify = opts.verify;
    this.#handshakeTimeoutMs = positiveInt('handshakeTimeoutMs', opts.handshakeTimeoutMs, DEFAULT_HANDSHAKE_TIMEOUT_MS);
    this.#sessionCacheSize = positiveInt('sessionCacheSize', opts.sessionCacheSize, DEFAULT_SESSION_CACHE_SIZE, 0);
    this.#sessionTtlMs = positiveInt('sessionTtlMs', opts.sessionTtlMs, DEFAULT_SESSION_TTL_MS);
    this.#now = opts.now ?? Date.now;
  }

  /** Cached sessions right now. */
  get sessionCount(): number {
    return this.#sessions.size;
  }

  /**
   * A verified mTLS connection to the peer agent, with `noDelay` set. Rejects
   * with a PeerConnectError (the socket destroyed) on any failure or refusal.
   */
  connect(req: PeerConnectRequest): Promise<TLSSocket> {
    return new Promise<TLSSocket>((resolve, reject) => {
      let secureContext: tls.SecureContext;
      try {
        secureContext = this.#context(req.sourceIdentity);
      } catch (err) {
        reject(this.#failure('AMIME_ERR_PEER_CONTEXT', 'no_context', `no TLS context for ${req.sourceIdentity}: ${(err as Error)?.message ?? String(err)}`));
        return;
      }
      const key = sessionKey(req);
      const cached = this.#takeSession(key);
      const generation = this.#generation.get(req.sourceIdentity) ?? 0;
      const peerEpoch = this.#peerEpoch;

      let socket: TLSSocket;
      try {
        socket = tls.connect({
          host: req.address,
          port: req.port,
          servername: req.sni,
          ALPNProtocols: [req.alpn],
          secureContext,
          // the context carries the version bounds; stated for readers
          minVersion: 'TLSv1.2',
          rejectUnauthorized: false,
          checkServerIdentity: skipHostnameCheck,
          session: cached?.session,
        });
        socket.setNoDelay(true); // applied once connected
      } catch (err) {
        reject(this.#failure('AMIME_ERR_PEER_CONNECT', reasonOf(err), `connect to ${req.address}:${req.port}: ${(err as Error)?.message ?? String(err)}`));
        return;
      }

      let settled = false;
      let verified: VerifiedPeer | undefined;
      let pendingSession: Buffer | undefined;
      let resumedFrom: SessionEntry | undefined;

      const fail = (err: PeerConnectError): void => {
        if (settled) return;
        settled = true;
        cleanup();
        socket.destroy();
        reject(err);
      };
      const onError = (err: Error): void => {
        fail(this.#failure('AMIME_ERR_PEER_CONNECT', reasonOf(err), `${req.address}:${req.port} (${req.sni}): ${err.message}`));
      };
      const onClose = (): void => {
        fail(this.#failure('AMIME_ERR_PEER_CONNECT', 'closed', `${req.address}:${req.port} (${req.sni}) closed the connection during the handshake`));
      };
      const timer = setTimeout(() => {
        fail(this.#failure('AMIME_ERR_PEER_TIMEOUT', 'handshake_timeout', `${req.address}:${req.port} (${req.sni}): no verified handshake within ${this.#handshakeTimeoutMs} ms`));
      }, this.#handshakeTimeoutMs);
      const cleanup = (): void => {
        clearTimeout(timer);
        socket.removeListener('error', onError);
        socket.removeListener('close', onClose);
        socket.removeListener('secureConnect', onSecure);
      };

      const store = (session: Buffer, peer: VerifiedPeer): void => {
        if (this.#sessionCacheSize === 0 || peerEpoch !== this.#peerEpoch || (this.#generation.get(req.sourceIdentity) ?? 0) !== generation) return;
        // a session resumed from a session never outlives the full handshake's verification
        const expiresAt = Math.min(resumedFrom?.expiresAt ?? this.#now() + this.#sessionTtlMs, peer.notAfter);
        if (expiresAt <= this.#now()) return;
        this.#putSession(key, { session, sourceIdentity: req.sourceIdentity, peerId: peer.peerId, serialHex: peer.serialHex, notAfter: peer.notAfter, expiresAt });
      };
      // TLS 1.3 tickets arrive after the handshake, possibly more than one; TLS 1.2 may announce one before secureConnect.
      socket.on('session', (session: Buffer) => {
        if (verified !== undefined) store(session, verified);
        else pendingSession = session;
      });

      const onSecure = (): void => {
        if (settled) return;
        try {
          socket.disableRenegotiation(); // the verified identity cannot change afterwards
        } catch {
          // destroyed meanwhile: the checks below fail
        }
        let peer: VerifiedPeer;
        const resumed = socket.isSessionReused();
        if (resumed && cached !== undefined) {
          // bound to the peer verified when this session was created (see the header)
          peer = cached;
          resumedFrom = cached;
        } else {
          const result = safeVerify(this.#verify, socket);
          if (!result.ok) {
            this.#sessions.delete(key);
            fail(this.#failure('AMIME_ERR_PEER_VERIFY', result.reason, `${req.address}:${req.port} (${req.sni}): ${result.message}`));
            return;
          }
          const facts = peerLeafFacts(socket);
          peer = { peerId: result.spiffeId, serialHex: facts?.serialHex ?? '', notAfter: facts?.notAfter ?? 0 };
        }
        if (peer.peerId !== req.expectedIdentity) {
          this.#sessions.delete(key);
          fail(this.#failure('AMIME_ERR_PEER_IDENTITY', 'identity_mismatch', `${req.address}:${req.port} (${req.sni}) is ${peer.peerId}, expected ${req.expectedIdentity}`));
          return;
        }
        if (socket.alpnProtocol !== req.alpn) {
          fail(this.#failure('AMIME_ERR_PEER_ALPN', 'alpn_mismatch', `${req.address}:${req.port} (${req.sni}) negotiated ALPN ${String(socket.alpnProtocol)}, expected ${req.alpn}`));
          return;
        }
        settled = true;
        cleanup();
        verified = peer;
        if (resumed) this.stats.resumedHandshakes++;
        else this.stats.fullHandshakes++;
        this.stats.connected++;
        if (pendingSession !== undefined) {
          store(pendingSession, peer);
          pendingSession = undefined;
        }
        resolve(socket);
      };

      socket.on('error', onError);
      socket.on('close', onClose);
      socket.on('secureConnect', onSecure);
    });
  }

  /** Drops every cached session of `sourceIdentity` (call when its SVID rotates); returns how many. */
  forgetSessions(sourceIdentity: string): number {
    this.#generation.set(sourceIdentity, (this.#generation.get(sourceIdentity) ?? 0) + 1);
    return this.#dropWhere((e) => e.sourceIdentity === sourceIdentity);
  }

  /** Drops cached sessions whose peer matches, e.g. its certificate serial was revoked; returns how many. */
  forgetPeers(pred: (peerId: string, serialHex: string) => boolean): number {
    this.#peerEpoch++;
    return this.#dropWhere((e) => pred(e.peerId, e.serialHex));
  }

  #dropWhere(match: (e: SessionEntry) => boolean): number {
    let n = 0;
    for (const [k, e] of this.#sessions) {
      if (match(e)) {
        this.#sessions.delete(k);
        n++;
      }
    }
    this.stats.sessionsDropped += n;
    return n;
  }

  #takeSession(key: string): SessionEntry | undefined {
    if (this.#sessionCacheSize === 0) return undefined;
    const e = this.#sessions.get(key);
    if (e === undefined) return undefined;
    this.#sessions.delete(key);
    if (e.expiresAt <= this.#now()) {
      this.stats.sessionsDropped++;
      return undefined;
    }
    this.#sessions.set(key, e); // most recently used
    return e;
  }

  #putSession(key: string, e: SessionEntry): void {
    this.#sessions.delete(key);
    this.#sessions.set(key, e);
    this.stats.sessionsStored++;
    while (this.#sessions.size > this.#sessionCacheSize) {
      const oldest = this.#sessions.keys().next().value as string;
      this.#sessions.delete(oldest);
      this.stats.sessionsDropped++;
    }
  }

  #failure(code: PeerConnectError['code'], reason: string, message: string): PeerConnectError {
    this.stats.failed[code] = (this.stats.failed[code] ?? 0) + 1;
    return new PeerConnectError(code, reason, message);
  }
}

function sessionKey(req: PeerConnectRequest): string {
  return `${req.address}\0${req.port}\0${req.sni}\0${req.sourceIdentity}`;
}

function safeVerify(verify: VerifyPeerFn, socket: TLSSocket): ReturnType<VerifyPeerFn> {
  try {
    return verify(socket);
  } catch (err) {
    return { ok: false, reason: 'verifier_error', message: `the verifier threw: ${(err as Error)?.message ?? String(err)}` };
  }
}
