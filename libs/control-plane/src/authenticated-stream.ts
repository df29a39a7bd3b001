// The server end of the admin API's one-way WebSocket routes (tap, traffic
// and anomaly streams): each upgrade is authenticated and checked before the
// WebSocket exists, and a refusal is the API's JSON error as a plain HTTP
// answer. StreamClients adds what the broadcast streams (traffic, anomaly)
// share: a cap on clients, pings, and cutting off a client that reads too
// slowly rather than buffering for it.
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { WebSocketServer, type WebSocket } from 'ws';
import { ControlPlaneError, cpError } from './errors.js';

const STATUS_TEXT: Readonly<Record<number, string>> = { 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 503: 'Service Unavailable' };

/** A WebSocket server for upgrades already authenticated by the route; clients only ever send control frames. */
export function oneWayServer(): WebSocketServer {
  return new WebSocketServer({ noServer: true, maxPayload: 1024, perMessageDeflate: false, clientTracking: false });
}

/** The query of an upgrade request's target. */
export function upgradeQuery(req: IncomingMessage): URLSearchParams {
  const raw = req.url ?? '';
  const q = raw.indexOf('?');
  return new URLSearchParams(q === -1 ? '' : raw.slice(q + 1));
}

/**
 * Answers an upgrade with the API's `{error:{code,reason,message}}` and closes
 * it. A ControlPlaneError keeps its status, but `busyReason` (the route's cap)
 * is 503; anything else is a 500 that says nothing of its cause.
 */
export function refuseUpgrade(socket: Duplex, err: unknown, busyReason: string): void {
  const e = err instanceof ControlPlaneError ? err : cpError('AMIME_ERR_CP_INTERNAL', 'internal error', 'internal');
  const status = e.reason === busyReason ? 503 : e.status;
  const body = JSON.stringify({ error: { code: e.code, reason: e.reason, message: e.message } });
  socket.end(`HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? 'Error'}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
}

export interface StreamClientsOptions {
  /** "traffic": names the stream in the cap's message and in log events (traffic_stream_dropped). */
  name: string;
  /** The caller's SPIFFE ID, or throws a ControlPlaneError (401/403). */
  authenticate(socket: TLSSocket): string;
  maxClients: number;
  maxBufferedBytes: number;
  /** Ping period; a client that misses two pongs is dropped. */
  pingMs: number;
  log?(event: Record<string, unknown>): void;
}

export interface StreamClient {
  caller: string;
}

/** The clients of one broadcast stream, each with the state `C` its route keeps. */
export class StreamClients<C extends StreamClient> {
  readonly #opts: StreamClientsOptions;
  readonly #wss = oneWayServer();
  readonly #clients = new Map<WebSocket, { c: C; alive: boolean }>();
  readonly #ping: NodeJS.Timeout;

  constructor(opts: StreamClientsOptions) {
    this.#opts = opts;
    this.#ping = setInterval(() => this.#beat(), opts.pingMs);
    this.#ping.unref();
  }

  get size(): number {
    return this.#clients.size;
  }

  /**
   * Authenticates the upgrade, lets `admit` check the request (a throw
   * refuses it) and make the client's state, enforces the cap, then
   * upgrades and calls `opened`.
   */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, admit: (caller: string) => C, opened: (ws: WebSocket, c: C) => void): void {
    let c: C;
    try {
      c = admit(this.#opts.authenticate(socket as TLSSocket));
      if (this.#clients.size >= this.#opts.maxClients) throw cpError('AMIME_ERR_CP_FORBIDDEN', `too many ${this.#opts.name} streams open; close one`, 'too_many_streams');
    } catch (err) {
      refuseUpgrade(socket, err, 'too_many_streams');
      return;
    }
    this.#wss.handleUpgrade(req, socket, head, (ws) => {
      const entry = { c, alive: true };
      this.#clients.set(ws, entry);
      ws.on('pong', () => (entry.alive = true));
      ws.on('message', () => ws.close(1008, 'the stream is one-way'));
      ws.on('close', () => this.#clients.delete(ws));
      ws.on('error', () => this.#clients.delete(ws));
      opened(ws, c);
    });
  }

  /** The open clients; a client being closed is left out. */
  *open(): Generator<[WebSocket, C]> {
    for (const [ws, { c }] of this.#clients) if (ws.readyState === ws.OPEN) yield [ws, c];
  }

  /** Sends `text`, or cuts the client off when more than maxBufferedBytes wait for it; false then. */
  send(ws: WebSocket, c: C, text: string): boolean {
    if (ws.bufferedAmount > this.#opts.maxBufferedBytes) {
      this.#opts.log?.({ event: `${this.#opts.name}_stream_dropped`, caller: c.caller, reason: 'slow_consumer' });
      ws.terminate();
      this.#clients.delete(ws);
      return false;
    }
    ws.send(text);
    return true;
  }

  close(): void {
    clearInterval(this.#ping);
    for (const ws of this.#clients.keys()) ws.terminate();
    this.#clients.clear();
    this.#wss.close();
  }

  #beat(): void {
    for (const [ws, entry] of this.#clients) {
      if (!entry.alive) {
        ws.terminate();
        this.#clients.delete(ws);
        continue;
      }
      entry.alive = false;
      ws.ping();
    }
  }
}
