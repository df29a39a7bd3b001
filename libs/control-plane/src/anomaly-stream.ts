// GET /v1/anomalies/stream: a WebSocket on the admin API's HTTPS server that
// sends each new finding as one JSON text frame. Same authentication as the
// API (an admin SVID, checked before the upgrade). Bounded: at most
// maxClients streams, and a client that lets more than maxBufferedBytes pile
// up is cut off rather than buffered for.
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import type { Finding } from '@amime/monitor';
import { StreamClients, type StreamClient } from './authenticated-stream.js';

export const ANOMALY_STREAM_PATH = '/v1/anomalies/stream';

export interface AnomalyStreamOptions {
  /** The caller's SPIFFE ID, or throws a ControlPlaneError (401/403). */
  authenticate(socket: TLSSocket): string;
  subscribe(fn: (f: Finding) => void): () => void;
  /** Default 64. */
  maxClients?: number;
  /** Default 1 MiB. */
  maxBufferedBytes?: number;
  /** Ping period; a client that misses two pongs is dropped. Default 30 s. */
  pingMs?: number;
  log?(event: Record<string, unknown>): void;
}

export class AnomalyStream {
  readonly #opts: AnomalyStreamOptions;
  readonly #clients: StreamClients<StreamClient>;
  readonly #unsubscribe: () => void;

  constructor(opts: AnomalyStreamOptions) {
    this.#opts = opts;
    this.#clients = new StreamClients({ name: 'anomaly', authenticate: opts.authenticate, maxClients: opts.maxClients ?? 64, maxBufferedBytes: opts.maxBufferedBytes ?? 1 << 20, pingMs: opts.pingMs ?? 30_000, log: opts.log });
    this.#unsubscribe = opts.subscribe((f) => this.#broadcast(f));
  }

  get size(): number {
    return this.#clients.size;
  }

  /** For an upgrade request to ANOMALY_STREAM_PATH. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    this.#clients.handleUpgrade(
      req,
      socket,
      head,
      (caller) => ({ caller }),
      (_ws, c) => this.#opts.log?.({ event: 'anomaly_stream_opened', caller: c.caller }),
    );
  }

  close(): void {
    this.#unsubscribe();
    this.#clients.close();
  }

  #broadcast(f: Finding): void {
    if (this.#clients.size === 0) return;
    const text = JSON.stringify(f);
    for (const [ws, c] of this.#clients.open()) this.#clients.send(ws, c, text);
  }
}
