// HTTP/1.1 to peer agents over pooled, verified mTLS connections.
//
// An http.Agent whose createConnection goes through the PeerConnector
// (callback form, so the handshake and verification are asynchronous): the
// ClientRequest gets the socket only once the peer is verified, and keep-alive
// reuses it for later requests. Pools are keyed by endpoint, SNI, source
// identity and expected peer identity, so a connection presenting one
// workload's SVID (or verified as one peer) never carries another's request.
//
// Usage: http.request({ agent, peer: { address, port, sni, sourceIdentity, expectedIdentity }, path, headers })

import http from 'node:http';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { TransportConfigError, positiveInt } from './errors.js';
import type { PeerConnector } from './peer-connector.js';
import { ALPN_HTTP1 } from './sni.js';

/** Where a request goes: the peer agent's endpoint, the target (SNI) and both identities. */
export interface PeerRoute {
  readonly address: string;
  readonly port: number;
  readonly sni: string;
  readonly sourceIdentity: string;
  readonly expectedIdentity: string;
}

export interface PeerRequestOptions extends http.RequestOptions {
  peer: PeerRoute;
}

export interface PeerHttpAgentOptions {
  connector: PeerConnector;
  /** Default true. */
  keepAlive?: boolean;
  /** TCP keep-alive initial delay on pooled sockets; default 1000 ms. */
  keepAliveMsecs?: number;
  /** Per pool (endpoint + SNI + identities); default 64. */
  maxSockets?: number;
  /** Idle sockets kept per pool; default 16. */
  maxFreeSockets?: number;
  /** Socket idle timeout in ms (idle pooled sockets are closed); default 30 000, 0 = none. */
  timeout?: number;
  /** Default 'lifo' (keeps fewer sockets warm). */
  scheduling?: 'fifo' | 'lifo';
}

export class PeerHttpAgent extends http.Agent {
  readonly #connector: PeerConnector;
  readonly #timeout: number;
  #destroyed = false;

  constructor(opts: PeerHttpAgentOptions) {
    if (opts?.connector === undefined) throw new TypeError('PeerHttpAgent: options.connector (a PeerConnector) is required');
    const timeout = positiveInt('timeout', opts.timeout, 30_000, 0);
    super({
      keepAlive: opts.keepAlive ?? true,
      keepAliveMsecs: positiveInt('keepAliveMsecs', opts.keepAliveMsecs, 1000),
      maxSockets: positiveInt('maxSockets', opts.maxSockets, 64),
      maxFreeSockets: positiveInt('maxFreeSockets', opts.maxFreeSockets, 16),
      scheduling: opts.scheduling ?? 'lifo',
      timeout,
    });
    this.#connector = opts.connector;
    this.#timeout = timeout;
  }

  override getName(options?: http.ClientRequestArgs): string {
    const peer = (options as Partial<PeerRequestOptions> | undefined)?.peer;
    if (peer === undefined) return super.getName(options);
    return `${peer.address}:${peer.port}|${peer.sni}|${peer.sourceIdentity}|${peer.expectedIdentity}`;
  }

  override createConnection(options: http.ClientRequestArgs, callback?: (err: Error | null, stream: Duplex) => void): undefined {
    const cb = callback ?? noop;
    const peer = (options as Partial<PeerRequestOptions>).peer;
    if (peer === undefined || typeof peer.address !== 'string') {
      cb(new TransportConfigError('PeerHttpAgent: request options need `peer: { address, port, sni, sourceIdentity, expectedIdentity }`'), undefined as unknown as Duplex);
      return undefined;
    }
    this.#connector
      .connect({ address: peer.address, port: peer.port, sni: peer.sni, alpn: ALPN_HTTP1, sourceIdentity: peer.sourceIdentity, expectedIdentity: peer.expectedIdentity })
      .then(
        (socket: TLSSocket) => {
          if (this.#destroyed) {
            socket.destroy();
            cb(new Error('PeerHttpAgent was destroyed'), undefined as unknown as Duplex);
            return;
          }
          if (this.#timeout > 0) socket.setTimeout(this.#timeout);
          try {
            cb(null, socket);
          } catch {
            socket.destroy();
          }
        },
        (err: Error) => cb(err, undefined as unknown as Duplex),
      );
    return undefined;
  }

  /** Closes every idle pooled connection (e.g. after the peer's identity or the source SVID changed); returns how many. */
  closeIdle(): number {
    let n = 0;
    for (const list of Object.values(this.freeSockets)) {
      for (const s of list ?? []) {
        s.destroy();
        n++;
      }
    }
    return n;
  }

  /** Closes all connections, busy and idle; connections still handshaking are closed when they complete. */
  override destroy(): void {
    this.#destroyed = true;
    super.destroy();
  }
}

function noop(): void {
  // createConnection is always given a callback by http.Agent
}
