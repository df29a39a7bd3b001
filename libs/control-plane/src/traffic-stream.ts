// GET /v1/traffic/stream: a WebSocket on the admin API's HTTPS server that
// sends the traffic view (the GET /v1/traffic object) at once on connect,
// then again whenever the view changed, at most once per interval (1 s) per
// client. `?window=` as on GET /v1/traffic. Same authentication as the API
// (an admin SVID, checked before the upgrade). Bounded: at most maxClients
// streams; a snapshot is computed once per distinct window per tick, not
// per client; a client that lets more than maxBufferedBytes pile up is cut
// off rather than buffered for.
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { WebSocketServer, type WebSocket } from 'ws';
import { ControlPlaneError, cpError } from './errors.js';
import { windowOf, type TrafficApi } from './traffic-api.js';

const STATUS_TEXT: Readonly<Record<number, string>> = { 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 503: 'Service Unavailable' };

export interface TrafficStreamOptions {
  /** The caller's SPIFFE ID, or throws a ControlPlaneError (401/403). */
  authenticate(socket: TLSSocket): string;
  view: TrafficApi;
  /** Default 64. */
  maxClients?: number;
  /** Default 4 MiB (a few snapshots of a large mesh). */
  maxBufferedBytes?: number;
  /** Least time between two frames to one client; default 1000 ms. */
  intervalMs?: number;
  /** Ping period; a client that misses two pongs is dropped. Default 30 s. */
  pingMs?: number;
  log?(event: Record<string, unknown>): void;
}

interface Client {
  caller: string;
  /** undefined: the view's default. */
  window: number | undefined;
  alive: boolean;
  sentVersion: number;
  sentAt: number;
}

export class TrafficStream {
  readonly #opts: TrafficStreamOptions;
  readonly #wss = new WebSocketServer({ noServer: true, maxPayload: 1024, perMessageDeflate: false, clientTracking: false });
  readonly #clients = new Map<WebSocket, Client>();
  readonly #tick: NodeJS.Timeout;
  readonly #ping: NodeJS.Timeout;
  readonly #intervalMs: number;

  constructor(opts: TrafficStreamOptions) {
    this.#opts = opts;
    this.#intervalMs = opts.intervalMs ?? 1000;
    this.#tick = setInterval(() => this.#send(), this.#intervalMs);
    this.#tick.unref();
    this.#ping = setInterval(() => this.#beat(), opts.pingMs ?? 30_000);
    this.#ping.unref();
  }

  get size(): number {
    return this.#clients.size;
  }

  /** For an upgrade request to TRAFFIC_STREAM_PATH. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    let caller: string;
    let window: number | undefined;
    try {
      caller = this.#opts.authenticate(socket as TLSSocket);
      const raw = req.url ?? '';
      if (raw.length > 1024) throw cpError('AMIME_ERR_CP_BAD_REQUEST', 'the request target is over 1024 characters', 'url_too_long');
      const q = raw.indexOf('?');
      const query = new URLSearchParams(q === -1 ? '' : raw.slice(q + 1));
      for (const k of new Set(query.keys())) if (k !== 'window') throw cpError('AMIME_ERR_CP_BAD_REQUEST', `unknown query parameter ${JSON.stringify(k.slice(0, 60))}; allowed: window`, 'bad_query');
      window = windowOf(query);
      if (this.#clients.size >= (this.#opts.maxClients ?? 64)) throw cpError('AMIME_ERR_CP_FORBIDDEN', 'too many traffic streams open; close one', 'too_many_streams');
    } catch (err) {
      const e = err instanceof ControlPlaneError ? err : cpError('AMIME_ERR_CP_INTERNAL', 'internal error', 'internal');
      const status = e.reason === 'too_many_streams' ? 503 : e.status;
      const body = JSON.stringify({ error: { code: e.code, reason: e.reason, message: e.message } });
      socket.end(`HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? 'Error'}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
      return;
    }
    this.#wss.handleUpgrade(req, socket, head, (ws) => {
      const c: Client = { caller, window, alive: true, sentVersion: -1, sentAt: 0 };
      this.#clients.set(ws, c);
      this.#opts.log?.({ event: 'traffic_stream_opened', caller, window });
      ws.on('pong', () => (c.alive = true));
      ws.on('message', () => ws.close(1008, 'the stream is one-way'));
      ws.on('close', () => this.#clients.delete(ws));
      ws.on('error', () => this.#clients.delete(ws));
      // the first frame at once: the client has something to show before the view next changes
      const version = this.#opts.view.version;
      this.#deliver(ws, c, JSON.stringify(this.#opts.view.snapshot(window)), version, Date.now());
    });
  }

  close(): void {
    clearInterval(this.#tick);
    clearInterval(this.#ping);
    for (const ws of this.#clients.keys()) ws.terminate();
    this.#clients.clear();
    this.#wss.close();
  }

  /** One tick: each client whose view changed and who was not sent one within the interval gets the new snapshot. */
  #send(): void {
    if (this.#clients.size === 0) return;
    const now = Date.now();
    const texts = new Map<number | undefined, { text: string; version: number }>();
    for (const [ws, c] of this.#clients) {
      if (ws.readyState !== ws.OPEN) continue;
      if (c.sentVersion === this.#opts.view.version || now - c.sentAt < this.#intervalMs) continue;
      let t = texts.get(c.window);
      if (!t) {
        // snapshot() may evict old slots (a new version): the version after it is the one sent
        const snap = this.#opts.view.snapshot(c.window);
        texts.set(c.window, (t = { text: JSON.stringify(snap), version: this.#opts.view.version }));
      }
      this.#deliver(ws, c, t.text, t.version, now);
    }
  }

  #deliver(ws: WebSocket, c: Client, text: string, version: number, now: number): void {
    if (ws.bufferedAmount > (this.#opts.maxBufferedBytes ?? 4 << 20)) {
      this.#opts.log?.({ event: 'traffic_stream_dropped', caller: c.caller, reason: 'slow_consumer' });
      ws.terminate();
      this.#clients.delete(ws);
      return;
    }
    c.sentVersion = version;
    c.sentAt = now;
    ws.send(text);
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
