// The inbound side: a tls.Server that accepts mTLS connections from peer
// agents, picks the target workload's SVID by SNI, verifies the caller's SVID
// with our own verifier (OpenSSL's rejection is deferred so that every refusal
// has a reason), and hands verified connections to the agent.
//
// Node facts this relies on (Node 20; tests pin each):
// - A tls.Server serves new connections with `server._sharedCreds`; it has no
//   public way to take a prebuilt SecureContext, so the default context is
//   installed there (setDefaultContext swaps it for new connections only).
// - SNICallback runs only on full handshakes: a resumed session skips it, so
//   the SNI is checked again after the handshake.
// - A resumed session has no peer chain (only the leaf, from the ticket), so
//   the identity verifier cannot run on it. Leaves that passed verification
//   in a full handshake are remembered (bounded LRU, by SHA-256 fingerprint);
//   a resumed session is accepted only for a remembered leaf. The ticket is
//   sealed with our ticket key, so its leaf is one the client proved it holds
//   the key of. closeWhere() forgets matching leaves, so a revoked peer
//   cannot resume; a new default context brings new ticket keys.
// - TLS 1.2 sessions need a session id context when client certificates are
//   requested: one is set on every context served (with the session timeout).

import tls, { type TLSSocket } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { TransportError, positiveInt } from './errors.js';
import { peerLeafFacts, type VerifiedPeer, type VerifyPeerFn } from './peer-verification.js';
import { INBOUND_ALPN_PROTOCOLS, parseServiceSni, type ServiceTarget } from './sni.js';

export interface InboundConnection {
  readonly socket: TLSSocket;
  /** The caller's verified SPIFFE ID. */
  readonly peerId: string;
  /** The caller's leaf serial (normalized lower-case hex). */
  readonly serialHex: string;
  /** From SNI; undefined when the client sent none (default context) or a name that is not a service. */
  readonly target: ServiceTarget | undefined;
  readonly servername: string | undefined;
  /** ALPN_TCP, ALPN_HTTP1, or false when the client offered no ALPN. */
  readonly alpn: string | false;
  readonly resumed: boolean;
}

export interface InboundServerOptions {
  /** SNI → the target workload's SVID context; undefined refuses the handshake (unknown_service). */
  contexts(servername: string): tls.SecureContext | undefined;
  /** Served to clients that send no SNI. */
  defaultContext: tls.SecureContext;
  /** Bundle + revocation check of the caller's SVID. */
  verify: VerifyPeerFn;
  /** TCP accept → verified; default 10 000 ms. */
  handshakeTimeoutMs?: number;
  /** A verified connection: the agent authorizes and forwards it. Must not throw (a throw destroys the socket). */
  onConnection(conn: InboundConnection): void;
  /** A refused or failed handshake: reason is snake_case (verifier reasons, unknown_service, handshake_failed, ...). */
  onRefused?(reason: string, message: string, remote: string): void;
  /** Verified leaves remembered for resumption (>= 1: a resumed session of a forgotten leaf is refused); default 4096. */
  verifiedSessionCacheSize?: number;
  /** Ticket lifetime and the longest a verified leaf is remembered without use; default 300 000 ms. */
  sessionTtlMs?: number;
  /** Clock in ms; default Date.now. */
  now?: () => number;
}

export interface InboundServerStats {
  accepted: number;
  resumed: number;
  /** By reason. */
  refused: Record<string, number>;
  /** Connections closed by closeWhere. */
  closedByPredicate: number;
  /** Errors on accepted sockets (handled here so none is ever unhandled). */
  socketErrors: number;
}

class InboundRefusal extends TransportError {
  constructor(reason: string, message: string) {
    super('AMIME_ERR_PROXY_INBOUND_REFUSED', reason, message);
  }
}

interface OpenConnection {
  readonly peerId: string;
  readonly serialHex: string;
}

interface RememberedLeaf extends VerifiedPeer {
  expiresAt: number;
}

/** One value for every context: sessions must resume across the SNI contexts of one server. */
const SESSION_ID_CONTEXT = 'amime-inbound-v1';

type ServerInternals = tls.Server & { _sharedCreds?: tls.SecureContext };

export class InboundServer {
  readonly server: tls.Server;
  readonly stats: InboundServerStats = { accepted: 0, resumed: 0, refused: {}, closedByPredicate: 0, socketErrors: 0 };
  readonly #opts: InboundServerOptions;
  readonly #cacheSize: number;
  readonly #ttlMs: number;
  readonly #now: () => number;
  readonly #open = new Map<TLSSocket, OpenConnection>();
  /** Fingerprint → verified peer; insertion order = recency. */
  readonly #leaves = new Map<string, RememberedLeaf>();
  readonly #prepared = new WeakSet<tls.SecureContext>();

  constructor(opts: InboundServerOptions) {
    for (const f of ['contexts', 'verify', 'onConnection'] as const) {
      if (typeof opts?.[f] !== 'function') throw new TypeError(`createInboundServer: options.${f} must be a function`);
    }
    if (opts.defaultContext?.context === undefined) throw new TypeError('createInboundServer: options.defaultContext must be a tls.SecureContext');
    this.#opts = opts;
    this.#cacheSize = positiveInt('verifiedSessionCacheSize', opts.verifiedSessionCacheSize, 4096);
    this.#ttlMs = positiveInt('sessionTtlMs', opts.sessionTtlMs, 300_000, 1000);
    this.#now = opts.now ?? Date.now;
    this.server = tls.createServer({
      requestCert: true,
      // OpenSSL's verdict is deferred to verify(), which refuses with a reason
      rejectUnauthorized: false,
      minVersion: 'TLSv1.2',
      ALPNProtocols: [...INBOUND_ALPN_PROTOCOLS],
      handshakeTimeout: positiveInt('handshakeTimeoutMs', opts.handshakeTimeoutMs, 10_000),
      SNICallback: (servername, cb) => this.#sni(servername, cb),
    });
    if (!('_sharedCreds' in this.server)) throw new Error('createInboundServer: this Node version has no tls.Server._sharedCreds; the default context cannot be installed');
    this.setDefaultContext(opts.defaultContext);
    this.server.on('secureConnection', (socket: TLSSocket) => this.#onSecure(socket));
    this.server.on('tlsClientError', (err: Error, socket: TLSSocket) => this.#onClientError(err, socket));
  }

  /** Verified connections open right now. */
  get connectionCount(): number {
    return this.#open.size;
  }

  /** Leaves remembered for resumption right now. */
  get verifiedSessionCount(): number {
    return this.#leaves.size;
  }

  listen(port = 0, host = '127.0.0.1'): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => reject(err);
      this.server.once('error', onError);
      this.server.listen(port, host, () => {
        this.server.removeListener('error', onError);
        resolve(this.server.address() as AddressInfo);
      });
    });
  }

  address(): AddressInfo | null {
    return this.server.address() as AddressInfo | null;
  }

  /** Stops accepting, destroys every open connection, resolves once the listener is closed. */
  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      for (const socket of this.#open.keys()) socket.destroy();
      this.#open.clear();
      this.#leaves.clear();
    });
  }

  /**
   * Destroys open connections whose caller matches (e.g. its serial was just
   * revoked) and forgets matching verified leaves so that they cannot resume.
   * Synchronous; returns the number of connections closed.
   */
  closeWhere(pred: (peerId: string, serialHex: string) => boolean): number {
    let n = 0;
    for (const [socket, c] of this.#open) {
      if (!pred(c.peerId, c.serialHex)) continue;
      this.#open.delete(socket);
      socket.destroy();
      n++;
    }
    for (const [fp, leaf] of this.#leaves) {
      if (pred(leaf.peerId, leaf.serialHex)) this.#leaves.delete(fp);
    }
    this.stats.closedByPredicate += n;
    return n;
  }

  /**
   * The context for clients without SNI, and the holder of the session ticket
   * keys. New connections use it; open ones keep theirs. Sessions issued
   * under the previous one no longer resume.
   */
  setDefaultContext(ctx: tls.SecureContext): void {
    if (ctx?.context === undefined) throw new TypeError('setDefaultContext: not a tls.SecureContext');
    this.#prepare(ctx);
    (this.server as ServerInternals)._sharedCreds = ctx;
  }

  #prepare(ctx: tls.SecureContext): void {
    if (this.#prepared.has(ctx)) return;
    const native = ctx.context as { setSessionIdContext?(id: string): void; setSessionTimeout?(seconds: number): void };
    native.setSessionIdContext?.(SESSION_ID_CONTEXT);
    native.setSessionTimeout?.(Math.floor(this.#ttlMs / 1000));
    this.#prepared.add(ctx);
  }

  #context(servername: string): tls.SecureContext | undefined {
    try {
      return this.#opts.contexts(servername) ?? undefined;
    } catch {
      return undefined;
    }
  }

  #sni(servername: string, cb: (err: Error | null, ctx?: tls.SecureContext) => void): void {
    const ctx = this.#context(servername);
    if (ctx === undefined) {
      cb(new InboundRefusal('unknown_service', `no service is served for SNI ${JSON.stringify(servername.slice(0, 253))}`));
      return;
    }
    this.#prepare(ctx);
    cb(null, ctx);
  }

  #onSecure(socket: TLSSocket): void {
    socket.on('error', this.#onSocketError);
    try {
      socket.disableRenegotiation();
    } catch {
      // destroyed meanwhile: verification below fails
    }
    socket.setNoDelay(true);
    const servername = typeof socket.servername === 'string' && socket.servername !== '' ? socket.servername : undefined;
    // a resumed session skipped SNICallback
    if (servername !== undefined && socket.isSessionReused() && this.#context(servername) === undefined) {
      this.#refuse(socket, 'unknown_service', `no service is served for SNI ${JSON.stringify(servername.slice(0, 253))}`);
      return;
    }
    const resumed = socket.isSessionReused();
    let peer: VerifiedPeer | undefined;
    if (resumed) peer = this.#rememberedPeer(socket);
    if (peer === undefined) {
      const result = safeVerify(this.#opts.verify, socket);
      if (!result.ok) {
        if (resumed) this.#refuse(socket, 'session_not_verified', `a resumed session of a peer not verified (or since forgotten): ${result.message}`);
        else this.#refuse(socket, result.reason, result.message);
        return;
      }
      const facts = peerLeafFacts(socket);
      peer = { peerId: result.spiffeId, serialHex: facts?.serialHex ?? '', notAfter: facts?.notAfter ?? 0 };
      if (facts !== undefined) this.#remember(facts.fingerprint, peer);
    }
    this.#open.set(socket, { peerId: peer.peerId, serialHex: peer.serialHex });
    socket.once('close', () => this.#open.delete(socket));
    this.stats.accepted++;
    if (resumed) this.stats.resumed++;
    try {
      this.#opts.onConnection({
        socket,
        peerId: peer.peerId,
        serialHex: peer.serialHex,
        target: parseServiceSni(servername),
        servername,
        alpn: socket.alpnProtocol ?? false,
        resumed,
      });
    } catch {
      socket.destroy();
    }
  }

  #rememberedPeer(socket: TLSSocket): VerifiedPeer | undefined {
    const facts = peerLeafFacts(socket);
    if (facts === undefined) return undefined;
    const leaf = this.#leaves.get(facts.fingerprint);
    if (leaf === undefined) return undefined;
    this.#leaves.delete(facts.fingerprint);
    const now = this.#now();
    if (leaf.expiresAt <= now) return undefined;
    // a resumed session extends the memory, never past the certificate
    leaf.expiresAt = Math.min(now + this.#ttlMs, leaf.notAfter);
    this.#leaves.set(facts.fingerprint, leaf);
    return leaf;
  }

  #remember(fingerprint: string, peer: VerifiedPeer): void {
    const expiresAt = Math.min(this.#now() + this.#ttlMs, peer.notAfter);
    this.#leaves.delete(fingerprint);
    this.#leaves.set(fingerprint, { ...peer, expiresAt });
    while (this.#leaves.size > this.#cacheSize) this.#leaves.delete(this.#leaves.keys().next().value as string);
  }

  #refuse(socket: TLSSocket, reason: string, message: string): void {
    const remote = remoteOf(socket);
    socket.destroy();
    this.#count(reason);
    this.#report(reason, message, remote);
  }

  #onClientError(err: Error, socket: TLSSocket): void {
    let reason: string;
    if (err instanceof InboundRefusal) reason = err.reason;
    else if ((err as { code?: string }).code === 'ERR_TLS_HANDSHAKE_TIMEOUT') reason = 'handshake_timeout';
    else if ((err as { code?: string }).code === 'ECONNRESET') reason = 'handshake_aborted';
    else reason = 'handshake_failed';
    this.#count(reason);
    this.#report(reason, err.message, remoteOf(socket));
    if (!socket.destroyed) socket.destroy();
  }

  #count(reason: string): void {
    this.stats.refused[reason] = (this.stats.refused[reason] ?? 0) + 1;
  }

  #report(reason: string, message: string, remote: string): void {
    try {
      this.#opts.onRefused?.(reason, message, remote);
    } catch {
      // a reporting hook must not break the listener
    }
  }

  /** An error on an accepted socket is terminal (e.g. a refused renegotiation, which Node only reports): destroy it. */
  readonly #onSocketError = (() => {
    const stats = this.stats;
    return function (this: TLSSocket): void {
      stats.socketErrors++;
      this.destroy();
    };
  })();
}

export function createInboundServer(opts: InboundServerOptions): InboundServer {
  return new InboundServer(opts);
}

function remoteOf(socket: TLSSocket): string {
  const s = socket as TLSSocket & { _parent?: { remoteAddress?: string; remotePort?: number } };
  const address = s.remoteAddress ?? s._parent?.remoteAddress;
  const port = s.remotePort ?? s._parent?.remotePort;
  if (address === undefined) return 'unknown';
  return address.includes(':') ? `[${address}]:${port ?? 0}` : `${address}:${port ?? 0}`;
}

function safeVerify(verify: VerifyPeerFn, socket: TLSSocket): ReturnType<VerifyPeerFn> {
  try {
    return verify(socket);
  } catch (err) {
    return { ok: false, reason: 'verifier_error', message: `the verifier threw: ${(err as Error)?.message ?? String(err)}` };
  }
}
