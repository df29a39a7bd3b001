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
import type { WebSocket } from 'ws';
import { StreamClients, upgradeQuery } from './authenticated-stream.js';
import { cpError } from './errors.js';
import { windowOf, type TrafficApi } from './traffic-api.js';

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
  sentVersion: number;
  sentAt: number;
}

export class TrafficStream {
  readonly #opts: TrafficStreamOptions;
  readonly #clients: StreamClients<Client>;
  readonly #tick: NodeJS.Timeout;
  readonly #intervalMs: number;

  constructor(opts: TrafficStreamOptions) {
    this.#opts = opts;
    this.#clients = new StreamClients({ name: 'traffic', authenticate: opts.authenticate, maxClients: opts.maxClients ?? 64, maxBufferedBytes: opts.maxBufferedBytes ?? 4 << 20, pingMs: opts.pingMs ?? 30_000, log: opts.log });
    this.#intervalMs = opts.intervalMs ?? 1000;
    this.#tick = setInterval(() => this.#send(), this.#intervalMs);
    this.#tick.unref();
  }

  get size(): number {
    return this.#clients.size;
  }

  /** For an upgrade request to TRAFFIC_STREAM_PATH. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const admit = (caller: string): Client => {
      if ((req.url ?? '').length > 1024) throw cpError('AMIME_ERR_CP_BAD_REQUEST', 'the request target is over 1024 characters', 'url_too_long');
      const query = upgradeQuery(req);
      for (const k of new Set(query.keys())) if (k !== 'window') throw cpError('AMIME_ERR_CP_BAD_REQUEST', `unknown query parameter ${JSON.stringify(k.slice(0, 60))}; allowed: window`, 'bad_query');
      return { caller, window: windowOf(query), sentVersion: -1, sentAt: 0 };
    };
    this.#clients.handleUpgrade(req, socket, head, admit, (ws, c) => {
      this.#opts.log?.({ event: 'traffic_stream_opened', caller: c.caller, window: c.window });
      // the first frame at once: the client has something to show before the view next changes
      const version = this.#opts.view.version;
      this.#deliver(ws, c, JSON.stringify(this.#opts.view.snapshot(c.window)), version, Date.now());
    });
  }

  close(): void {
    clearInterval(this.#tick);
    this.#clients.close();
  }

  /** One tick: each client whose view changed and who was not sent one within the interval gets the new snapshot. */
  #send(): void {
    if (this.#clients.size === 0) return;
    const now = Date.now();
    const texts = new Map<number | undefined, { text: string; version: number }>();
    for (const [ws, c] of this.#clients.open()) {
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
    if (!this.#clients.send(ws, c, text)) return;
    c.sentVersion = version;
    c.sentAt = now;
  }
}
