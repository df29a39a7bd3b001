// GET /v1/anomalies/stream: a WebSocket on the admin API's HTTPS server that
// sends each new finding as one JSON text frame. Same authentication as the
// API (an admin SVID, checked before the upgrade). Bounded: at most
// maxClients streams, and a client that lets more than maxBufferedBytes pile
// up is cut off rather than buffered for.
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { WebSocketServer, type WebSocket } from 'ws';
import type { Finding } from '@amime/monitor';
import { ControlPlaneError, cpError } from './errors.js';

export const ANOMALY_STREAM_PATH = '/v1/anomalies/stream';
const STATUS_TEXT: Readonly<Record<number, string>> = { 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 503: 'Service Unavailable' };

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
  readonly #wss = new WebSocketServer({ noServer: true, maxPayload: 1024, perMessageDeflate: false, clientTracking: false });
  readonly #clients = new Map<WebSocket, { caller: string; alive: boolean }>();
  readonly #unsubscribe: () => void;
  readonly #ping: NodeJS.Timeout;

  constructor(opts: AnomalyStreamOptions) {
    this.#opts = opts;
    this.#unsubscribe = opts.subscribe((f) => this.#broadcast(f));
    this.#ping = setInterval(() => this.#beat(), opts.pingMs ?? 30_000);
    this.#ping.unref();
  }

  get size(): number {
    return this.#clients.size;
  }

  /** For an upgrade request to ANOMALY_STREAM_PATH. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    let caller: string;
    try {
      caller = this.#opts.authenticate(socket as TLSSocket);
      if (this.#clients.size >= (this.#opts.maxClients ?? 64)) throw cpError('AMIME_ERR_CP_FORBIDDEN', 'too many anomaly streams open; close one', 'too_many_streams');
    } catch (err) {
      const e = err instanceof ControlPlaneError ? err : cpError('AMIME_ERR_CP_INTERNAL', 'internal error', 'internal');
      const status = e.reason === 'too_many_streams' ? 503 : e.status;
      const body = JSON.stringify({ error: { code: e.code, reason: e.reason, message: e.message } });
      socket.end(`HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? 'Error'}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
      return;
    }
    this.#wss.handleUpgrade(req, socket, head, (ws) => {
      this.#clients.set(ws, { caller, alive: true });
      this.#opts.log?.({ event: 'anomaly_stream_opened', caller });
      ws.on('pong', () => {
        const c = this.#clients.get(ws);
        if (c) c.alive = true;
      });
      ws.on('message', () => ws.close(1008, 'the stream is one-way'));
      ws.on('close', () => this.#clients.delete(ws));
      ws.on('error', () => this.#clients.delete(ws));
    });
  }

  close(): void {
    clearInterval(this.#ping);
    this.#unsubscribe();
    for (const ws of this.#clients.keys()) ws.terminate();
    this.#clients.clear();
    this.#wss.close();
  }

  #broadcast(f: Finding): void {
    if (this.#clients.size === 0) return;
    const text = JSON.stringify(f);
    const max = this.#opts.maxBufferedBytes ?? 1 << 20;
    for (const [ws, c] of this.#clients) {
      if (ws.readyState !== ws.OPEN) continue;
      if (ws.bufferedAmount > max) {
        this.#opts.log?.({ event: 'anomaly_stream_dropped', caller: c.caller, reason: 'slow_consumer' });
        ws.terminate();
        this.#clients.delete(ws);
        continue;
      }
      ws.send(text);
    }
  }

  #beat(): void {
    for (const [ws, c] of this.#clients) {
      if (!c.alive) {
        ws.terminate();
        this.#clients.delete(ws);
        continue;
      }
      c.alive = false;
      ws.ping();
    }
  }
}
