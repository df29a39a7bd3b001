// Client-side amime-mux/1 sessions, pooled per (source identity, endpoint,
// target service, expected peer identity): a new L4 connection to a peer
// agent becomes a stream on an open session, and callers arriving while the
// session's handshake runs share that handshake.

import type { TLSSocket } from 'node:tls';
import { TransportError, positiveInt } from './errors.js';
import { MuxSession, type MuxStream } from './mux.js';
import { ALPN_MUX } from './sni.js';
import type { PeerConnectRequest, PeerConnector } from './peer-connector.js';

export interface MuxPoolOptions {
  connector: PeerConnector;
  /** A session with no stream for this long is closed; default 30 000 ms. */
  idleTimeoutMs?: number;
  /** Streams per session before another session is opened; default 1024. */
  maxStreamsPerSession?: number;
  /** Per-stream credit; default the session's. */
  windowBytes?: number;
  /** Each new verified connection (for revocation tracking). */
  onConnection?(socket: TLSSocket, req: MuxTarget): void;
}

export type MuxTarget = Omit<PeerConnectRequest, 'alpn'>;

interface Entry {
  sessions: MuxSession[];
  connecting: Promise<MuxSession> | undefined;
}

export class MuxPool {
  readonly #opts: MuxPoolOptions;
  readonly #idleMs: number;
  readonly #maxStreams: number;
  readonly #entries = new Map<string, Entry>();
  #closed = false;

  constructor(opts: MuxPoolOptions) {
    this.#opts = opts;
    this.#idleMs = positiveInt('idleTimeoutMs', opts.idleTimeoutMs, 30_000);
    this.#maxStreams = positiveInt('maxStreamsPerSession', opts.maxStreamsPerSession, 1024);
  }

  /** Open sessions over all targets. */
  get sessionCount(): number {
    let n = 0;
    for (const e of this.#entries.values()) n += e.sessions.length;
    return n;
  }

  /** A new stream to the target; rejects with the PeerConnectError of a failed handshake. */
  async open(target: MuxTarget): Promise<MuxStream> {
    const key = `${target.sourceIdentity}\0${target.address}\0${target.port}\0${target.sni}\0${target.expectedIdentity}`;
    let e = this.#entries.get(key);
    if (e === undefined) {
      e = { sessions: [], connecting: undefined };
      this.#entries.set(key, e);
    }
    // A session that filled up while we waited for a handshake sends us round again (bounded).
    for (let round = 0; round < 8; round++) {
      for (const s of e.sessions) if (s.available) return s.open();
      if (e.connecting === undefined) e.connecting = this.#connect(key, e, target);
      const s = await e.connecting;
      if (s.available) return s.open();
    }
    throw new TransportError('AMIME_ERR_PROXY_MUX_UNAVAILABLE', 'session_unavailable', `no mux session to ${target.address}:${target.port} could take a stream`);
  }

  async #connect(key: string, e: Entry, target: MuxTarget): Promise<MuxSession> {
    try {
      if (this.#closed) throw new TransportError('AMIME_ERR_PROXY_MUX_CLOSED', 'pool_closed', 'the mux pool is closed');
      const socket = await this.#opts.connector.connect({ ...target, alpn: ALPN_MUX });
      if (this.#closed) {
        socket.destroy();
        throw new TransportError('AMIME_ERR_PROXY_MUX_CLOSED', 'pool_closed', 'the mux pool is closed');
      }
      const session: MuxSession = new MuxSession(socket, {
        role: 'client',
        maxStreams: this.#maxStreams,
        idleTimeoutMs: this.#idleMs,
        ...(this.#opts.windowBytes !== undefined && { windowBytes: this.#opts.windowBytes }),
        onClose: () => {
          const i = e.sessions.indexOf(session);
          if (i >= 0) e.sessions.splice(i, 1);
          if (e.sessions.length === 0 && e.connecting === undefined && this.#entries.get(key) === e) this.#entries.delete(key);
        },
      });
      e.sessions.push(session);
      // the entry may have been dropped while we connected (its last session closed)
      if (!this.#entries.has(key)) this.#entries.set(key, e);
      this.#opts.onConnection?.(socket, target);
      return session;
    } finally {
      e.connecting = undefined;
      if (e.sessions.length === 0 && this.#entries.get(key) === e) this.#entries.delete(key);
    }
  }

  /** Closes every session (their streams are reset). */
  close(): void {
    this.#closed = true;
    for (const e of this.#entries.values()) for (const s of [...e.sessions]) s.destroy();
    this.#entries.clear();
  }
}
