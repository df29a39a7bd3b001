// The control plane's end of the push protocol: WebSocket over the control
// plane's mTLS HTTPS server, one session per agent.
//
// Per session and resource type at most one push is in flight (as xDS): a
// change that lands meanwhile only marks the type dirty, and the ACK or NACK
// releases one push from what the agent holds to the latest version. So a
// slow agent is coalesced to its latest state, and a fast one never waits for
// it. Fan-out is debounced: a burst of changes becomes one push.
//
// Frames are shared: the delta from version A to B is encoded once per
// (type, A) and every session at A gets the same text with its own nonce.

import type { IncomingMessage } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { performance } from 'node:perf_hooks';
import { WebSocketServer, type WebSocket, type RawData } from 'ws';
import { parseSpiffeId, verifyPeer, type ParsedCertificate, type RevocationSet, type TrustBundle } from '@amime/identity';
import { RESOURCE_TYPES, type Resource, type ResourceType } from '../resources.js';
import type { TapEventsMessage, TapMessage, UntapMessage } from '../tap-messages.js';
import { decodeClientMessage, MAX_CLIENT_FRAME_BYTES, PROTOCOL_VERSION, type ClientMessage, type HeldSvid, type Instance, type ReportMessage } from '../messages.js';

export const PUSH_PATH = '/v1/push';
export const DEFAULT_MAX_CLIENT_FRAME_BYTES = MAX_CLIENT_FRAME_BYTES;

/** What the server pushes from: the control plane's resource cache. */
export interface ResourceView {
  /** The type's current version. */
  version(type: ResourceType): string;
  /** Every resource of the type at the current version. */
  snapshot(type: ResourceType): { version: string; resources: readonly Resource[] };
  /**
   * The changes from version `from` to the current one; undefined when `from`
   * cannot be resumed (another epoch, too old, or ahead of us): send a snapshot.
   */
  delta(type: ResourceType, from: string): { version: string; upserts: readonly Resource[]; removals: readonly string[] } | undefined;
}

export interface PushTypeStatus {
  /** The version the agent holds (said in hello or ACKed since). */
  acked?: string;
  /** The version of the push awaiting an answer. */
  inFlight?: string;
  /** The last NACK since the last ACK. */
  nack?: { version: string; error: string; at: string };
}

export interface PushSessionStatus {
  node: string;
  spiffeId: string;
  address: string;
  connectedAt: string;
  types: Partial<Record<ResourceType, PushTypeStatus>>;
}

export interface PushSession {
  readonly id: number;
  readonly node: string;
  readonly spiffeId: string;
  readonly address: string;
  /** The agent's /metrics listener ("host:port"), as its hello said. */
  readonly metrics: string | undefined;
  readonly connectedAt: Date;
  /** The peer's chain as verified at the upgrade: its SVID first, ending with the bundle root that anchors it. */
  readonly certificates: readonly ParsedCertificate[];
}

export interface PushServerHooks {
  /** After hello. */
  onConnect?(session: PushSession): void;
  onDisconnect?(session: PushSession, reason: string): void;
  /** Returns an error message to refuse (nothing is changed), or undefined. */
  onRegister?(session: PushSession, instances: Instance[], svids?: HeldSvid[]): Promise<string | undefined>;
  onHeartbeat?(session: PushSession): void;
  /** Edge traffic an agent saw (for the communication-pattern monitor); must not throw. */
  onReport?(session: PushSession, report: ReportMessage): void;
  /** Events of a live tap; returns an error message to refuse the frame (answered with an error), or undefined. */
  onTapEvents?(session: PushSession, message: TapEventsMessage): string | undefined;
  onPush?(type: ResourceType, kind: 'snapshot' | 'delta'): void;
  /** `latencyMs`: from the first change the agent lacked to its ACK; undefined for the initial sync. */
  onAck?(type: ResourceType, latencyMs: number | undefined): void;
  onNack?(session: PushSession, type: ResourceType, version: string, error: string): void;
  /** A refused connection or frame, by a short snake_case reason. */
  onRefused?(reason: string): void;
}

export interface PushServerOptions {
  view: ResourceView;
  trustDomain: string;
  /** The current roots and revocations; read on every connection. */
  trust(): { bundle: TrustBundle; revocations?: RevocationSet };
  hooks?: PushServerHooks;
  /** Both ends send a heartbeat this often; 3 silent intervals end a session. Default 5 s. */
  heartbeatMs?: number;
  /** Quiet time after a change before the fan-out. Default 10 ms. */
  debounceMs?: number;
  /** Longest a fan-out waits during a steady stream of changes. Default 100 ms. */
  maxDebounceMs?: number;
  /** Largest frame accepted from an agent. Default 64 KiB. */
  maxClientFrameBytes?: number;
  /** Bad frames in a row before the session is closed. Default 20. */
  maxBadFrames?: number;
  log?(event: Record<string, unknown>): void;
}

interface TypeState {
  acked: string | undefined;
  inFlight: { nonce: string; version: string; changeAt: number | undefined } | undefined;
  dirty: boolean;
  /** Earliest change the agent does not hold yet (performance.now()), for the latency metric. */
  pendingSince: number | undefined;
  nack: { version: string; error: string; at: string } | undefined;
}

class Session implements PushSession {
  readonly connectedAt = new Date();
  readonly types = new Map<ResourceType, TypeState>();
  hello = false;
  metrics: string | undefined;
  seq = 0;
  lastSeen = performance.now();
  /** Last frame sent: a heartbeat goes only to a session idle this long (any frame proves we live). */
  lastSent = performance.now();
  badFrames = 0;
  registerTokens = REGISTER_BURST;
  registerRefill = performance.now();
  closed = false;
  constructor(
    readonly id: number,
    readonly ws: WebSocket,
    readonly socket: TLSSocket,
    readonly node: string,
    readonly spiffeId: string,
    readonly address: string,
    readonly certificates: readonly ParsedCertificate[],
  ) {}
}

const REGISTER_BURST = 20;
const REGISTER_PER_SECOND = 2;

/** Close codes (4000-4999 are the application's). */
export const CLOSE_REPLACED = 4000;
export const CLOSE_POLICY = 1008;
export const CLOSE_REVOKED = 4003;

export class PushServer {
  readonly #opts: Required<Pick<PushServerOptions, 'heartbeatMs' | 'debounceMs' | 'maxDebounceMs' | 'maxClientFrameBytes' | 'maxBadFrames'>> & PushServerOptions;
  readonly #wss: WebSocketServer;
  readonly #sessions = new Map<string, Session>();
  readonly #hooks: PushServerHooks;
  readonly #frames = new Map<string, { version: string; body: string; kind: 'snapshot' | 'delta' }>();
  #nextId = 1;
  #pending = new Set<ResourceType>();
  #pendingAt: number | undefined;
  #debounce: NodeJS.Timeout | undefined;
  #heartbeat: NodeJS.Timeout;
  #closed = false;

  constructor(opts: PushServerOptions) {
    this.#opts = { heartbeatMs: 5000, debounceMs: 10, maxDebounceMs: 100, maxClientFrameBytes: DEFAULT_MAX_CLIENT_FRAME_BYTES, maxBadFrames: 20, ...opts };
    this.#hooks = opts.hooks ?? {};
    // Compression off: CPU on the fan-out path, and a compression oracle on a TLS channel.
    this.#wss = new WebSocketServer({ noServer: true, maxPayload: this.#opts.maxClientFrameBytes, perMessageDeflate: false, clientTracking: false });
    // Ticks at a quarter interval and beats only idle sessions, so 10k sessions' heartbeats
    // spread out instead of landing in one burst that could delay a push.
    this.#heartbeat = setInterval(() => this.#beat(), Math.max(1, Math.floor(this.#opts.heartbeatMs / 4)));
    this.#heartbeat.unref();
  }

  /** Serve the push endpoint on an mTLS HTTPS server (client certificates requested). */
  attach(server: HttpsServer): void {
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.#upgrade(req, socket as TLSSocket, head));
  }

  /** The resource types changed (the cache calls this); the fan-out follows after the debounce. */
  notify(types: Iterable<ResourceType>, at = performance.now()): void {
    if (this.#closed) return;
    for (const t of types) this.#pending.add(t);
    const now = performance.now();
    this.#pendingAt ??= at;
    if (this.#debounce) clearTimeout(this.#debounce);
    const waited = now - this.#pendingAt;
    const delay = Math.max(0, Math.min(this.#opts.debounceMs, this.#opts.maxDebounceMs - waited));
    this.#debounce = setTimeout(() => this.#fanOut(), delay);
  }

  /** Re-verify every session's peer (after a revocation or bundle change); revoked ones are closed. */
  revalidate(): number {
    const trust = this.#opts.trust();
    let closed = 0;
    for (const s of this.#sessions.values()) {
      const peer = verifyPeer(s.socket, trust);
      if (!peer.ok) {
        closed++;
        this.#log({ event: 'push_session_revoked', node: s.node, reason: peer.reason });
        s.ws.close(CLOSE_REVOKED, `credential no longer accepted: ${peer.reason}`);
        setTimeout(() => s.ws.terminate(), 1000).unref();
      }
    }
    return closed;
  }

  get size(): number {
    return this.#sessions.size;
  }

  status(): PushSessionStatus[] {
    return [...this.#sessions.values()].map((s) => ({
      node: s.node,
      spiffeId: s.spiffeId,
      address: s.address,
      connectedAt: s.connectedAt.toISOString(),
      types: Object.fromEntries(
        [...s.types].map(([t, st]) => [
          t,
          { ...(st.acked !== undefined && { acked: st.acked }), ...(st.inFlight && { inFlight: st.inFlight.version }), ...(st.nack && { nack: st.nack }) },
        ]),
      ),
    }));
  }

  session(node: string): PushSession | undefined {
    return this.#sessions.get(node);
  }

  close(): void {
    this.#closed = true;
    clearInterval(this.#heartbeat);
    if (this.#debounce) clearTimeout(this.#debounce);
    for (const s of this.#sessions.values()) s.ws.terminate();
    this.#sessions.clear();
    this.#wss.close();
  }

  // ---------------------------------------------------------------- connections

  #upgrade(req: IncomingMessage, socket: TLSSocket, head: Buffer): void {
    const refuse = (status: number, reason: string, message: string) => {
      this.#hooks.onRefused?.(reason);
      this.#log({ event: 'push_refused', reason, message, address: socket.remoteAddress });
      const body = JSON.stringify({ error: { code: 'AMIME_ERR_CP_PUSH_REFUSED', reason, message } });
      socket.end(`HTTP/1.1 ${status} ${status === 401 ? 'Unauthorized' : status === 403 ? 'Forbidden' : 'Not Found'}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
      socket.destroySoon?.();
    };
    if (this.#closed) return refuse(404, 'closing', 'the control plane is shutting down');
    const path = (req.url ?? '').split('?')[0];
    if (path !== PUSH_PATH) return refuse(404, 'not_found', `no WebSocket endpoint at ${JSON.stringify((req.url ?? '').slice(0, 100))}; agents connect to ${PUSH_PATH}`);
    const peer = verifyPeer(socket, this.#opts.trust());
    if (!peer.ok) return refuse(401, `peer_${peer.reason}`, `client certificate refused: ${peer.message}`);
    const id = parseSpiffeId(peer.spiffeId);
    const m = /^\/agent\/([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)$/.exec(id.path);
    if (id.trustDomain !== this.#opts.trustDomain || !m) {
      return refuse(403, 'not_agent', `${peer.spiffeId} is not an agent of ${this.#opts.trustDomain}; the push channel serves spiffe://${this.#opts.trustDomain}/agent/<node>`);
    }
    this.#wss.handleUpgrade(req, socket, head, (ws) => this.#accept(ws, socket, m[1]!, peer.spiffeId, peer.path));
  }

  #accept(ws: WebSocket, socket: TLSSocket, node: string, spiffeId: string, certificates: readonly ParsedCertificate[]): void {
    const s = new Session(this.#nextId++, ws, socket, node, spiffeId, socket.remoteAddress ?? '', certificates);
    // A connection that never says hello holds a socket and nothing else: cut it.
    const helloTimer = setTimeout(() => {
      if (!s.hello) {
        this.#hooks.onRefused?.('hello_timeout');
        ws.close(CLOSE_POLICY, 'no hello');
        setTimeout(() => ws.terminate(), 1000).unref();
      }
    }, 3 * this.#opts.heartbeatMs);
    helloTimer.unref();
    ws.on('message', (data: RawData, isBinary: boolean) => this.#onFrame(s, data, isBinary));
    ws.on('close', (code: number) => {
      clearTimeout(helloTimer);
      this.#onClose(s, code === CLOSE_REPLACED ? 'replaced' : `closed_${code}`);
    });
    ws.on('error', (err: Error) => this.#log({ event: 'push_socket_error', node, error: err.message }));
  }

  #onClose(s: Session, reason: string): void {
    if (s.closed) return;
    s.closed = true;
    if (this.#sessions.get(s.node) === s) {
      this.#sessions.delete(s.node);
      if (s.hello) this.#hooks.onDisconnect?.(s, reason);
    }
  }

  // ---------------------------------------------------------------- frames

  #onFrame(s: Session, data: RawData, isBinary: boolean): void {
    s.lastSeen = performance.now();
    const raw = isBinary || Array.isArray(data) || data instanceof ArrayBuffer ? toBuffer(data) : (data as Buffer);
    const decoded = decodeClientMessage(raw, { maxBytes: this.#opts.maxClientFrameBytes });
    if (!decoded.ok) return this.#bad(s, decoded.code, decoded.message);
    const msg = decoded.message;
    // Any valid frame proves the agent alive; agents heartbeat only when otherwise idle.
    if (s.hello) this.#hooks.onHeartbeat?.(s);
    if (msg.type === 'heartbeat') return;
    if (msg.type === 'hello') return this.#hello(s, msg);
    if (!s.hello) return this.#bad(s, 'hello_required', `say hello before ${msg.type}`);
    s.badFrames = 0;
    if (msg.type === 'ack' || msg.type === 'nack') return this.#answer(s, msg);
    if (msg.type === 'report') {
      this.#hooks.onReport?.(s, msg);
      return;
    }
    if (msg.type === 'tapEvents') return this.#tapEvents(s, msg);
    this.#register(s, msg.instances, msg.svids);
  }

  #tapEvents(s: Session, msg: TapEventsMessage): void {
    let refusal: string | undefined;
    try {
      refusal = this.#hooks.onTapEvents ? this.#hooks.onTapEvents(s, msg) : `tap ${msg.id} was never opened on this connection`;
    } catch (err) {
      refusal = `tap events not accepted: ${(err as Error).message}`;
    }
    if (refusal !== undefined) this.#bad(s, 'tap_refused', refusal);
  }

  /** Sends a tap or untap to the node's agent; false when it is not connected. */
  sendTap(node: string, message: TapMessage | UntapMessage): boolean {
    const s = this.#sessions.get(node);
    if (!s || !s.hello || s.closed) return false;
    this.#send(s, JSON.stringify(message));
    return true;
  }

  #bad(s: Session, code: string, message: string, nonce?: string): void {
    this.#hooks.onRefused?.(code);
    this.#send(s, JSON.stringify({ type: 'error', code, message: message.slice(0, 4096), ...(nonce !== undefined && { nonce }) }));
    if (++s.badFrames >= this.#opts.maxBadFrames) {
      this.#log({ event: 'push_session_closed', node: s.node, reason: 'too_many_bad_frames' });
      s.ws.close(CLOSE_POLICY, 'too many invalid frames');
    }
  }

  #hello(s: Session, msg: Extract<ClientMessage, { type: 'hello' }>): void {
    if (s.hello) return this.#bad(s, 'duplicate_hello', 'hello was already said on this connection');
    if (msg.protocol !== PROTOCOL_VERSION) return this.#bad(s, 'protocol_version', `protocol ${msg.protocol} is not served; use ${PROTOCOL_VERSION}`);
    if (msg.node !== s.node) {
      this.#bad(s, 'node_mismatch', `hello names node ${JSON.stringify(msg.node)} but the certificate is ${s.spiffeId}`);
      s.ws.close(CLOSE_POLICY, 'node mismatch');
      return;
    }
    s.hello = true;
    s.metrics = msg.metrics;
    s.badFrames = 0;
    const previous = this.#sessions.get(s.node);
    if (previous && previous !== s) {
      // The newer connection wins: the old one is usually a half-open socket
      // the agent already gave up on.
      this.#sessions.delete(s.node);
      previous.closed = true;
      previous.ws.close(CLOSE_REPLACED, 'replaced by a newer connection from the same node');
      this.#hooks.onDisconnect?.(previous, 'replaced');
    }
    this.#sessions.set(s.node, s);
    const subscribed = msg.subscribe ?? RESOURCE_TYPES;
    for (const type of subscribed) {
      s.types.set(type, { acked: msg.versions[type], inFlight: undefined, dirty: false, pendingSince: undefined, nack: undefined });
    }
    this.#hooks.onConnect?.(s);
    for (const type of subscribed) this.#push(s, type);
  }

  #answer(s: Session, msg: Extract<ClientMessage, { type: 'ack' | 'nack' }>): void {
    const st = s.types.get(msg.resourceType);
    const inFlight = st?.inFlight;
    if (!st || !inFlight || inFlight.nonce !== msg.nonce || inFlight.version !== msg.version) {
      return this.#bad(s, 'stale_nonce', `${msg.type} for ${msg.resourceType} ${msg.version} nonce ${msg.nonce} answers no push in flight`, msg.nonce);
    }
    st.inFlight = undefined;
    if (msg.type === 'ack') {
      st.acked = msg.version;
      st.nack = undefined;
      this.#hooks.onAck?.(msg.resourceType, inFlight.changeAt === undefined ? undefined : performance.now() - inFlight.changeAt);
    } else {
      st.nack = { version: msg.version, error: msg.error, at: new Date().toISOString() };
      this.#log({ event: 'push_nack', node: s.node, resourceType: msg.resourceType, version: msg.version, error: msg.error.slice(0, 500) });
      this.#hooks.onNack?.(s, msg.resourceType, msg.version, msg.error);
      // The latency clock keeps running for changes the agent still lacks.
      st.pendingSince = st.dirty ? st.pendingSince : undefined;
    }
    if (st.dirty) {
      st.dirty = false;
      this.#push(s, msg.resourceType);
    }
  }

  #register(s: Session, instances: Instance[], svids: HeldSvid[] | undefined): void {
    const now = performance.now();
    s.registerTokens = Math.min(REGISTER_BURST, s.registerTokens + ((now - s.registerRefill) / 1000) * REGISTER_PER_SECOND);
    s.registerRefill = now;
    if (s.registerTokens < 1) return this.#bad(s, 'rate_limited', `more than ${REGISTER_PER_SECOND} registrations a second; send the whole set when it changes`);
    s.registerTokens -= 1;
    const hook = this.#hooks.onRegister;
    if (!hook) return;
    hook(s, instances, svids).then(
      (refusal) => {
        if (refusal !== undefined) this.#bad(s, 'registration_refused', refusal);
      },
      (err: unknown) => {
        this.#log({ event: 'push_register_failed', node: s.node, error: (err as Error).message });
        this.#send(s, JSON.stringify({ type: 'error', code: 'registration_failed', message: 'the control plane could not store the registration; it will be retried on the next register' }));
      },
    );
  }

  // ---------------------------------------------------------------- pushing

  #fanOut(): void {
    this.#debounce = undefined;
    const types = this.#pending;
    const at = this.#pendingAt;
    this.#pending = new Set();
    this.#pendingAt = undefined;
    for (const s of this.#sessions.values()) {
      for (const type of types) {
        const st = s.types.get(type);
        if (!st) continue;
        st.pendingSince ??= at;
        if (st.inFlight) st.dirty = true;
        else this.#push(s, type);
      }
    }
  }

  /** Sends what moves the session's type from what it holds to the current version, if anything. */
  #push(s: Session, type: ResourceType): void {
    const st = s.types.get(type)!;
    const current = this.#opts.view.version(type);
    if (st.acked === current) {
      st.pendingSince = undefined;
      return;
    }
    // After a NACK of exactly this version, wait for the next change.
    if (st.nack?.version === current) return;
    const frame = this.#frame(type, st.acked, current);
    const nonce = (++s.seq).toString(36);
    st.inFlight = { nonce, version: frame.version, changeAt: st.pendingSince };
    this.#send(s, `{"type":"${frame.kind}","nonce":"${nonce}",${frame.body}`);
    this.#hooks.onPush?.(type, frame.kind);
  }

  #frame(type: ResourceType, from: string | undefined, current: string): { version: string; body: string; kind: 'snapshot' | 'delta' } {
    const key = `${type}\0${from ?? ''}`;
    const cached = this.#frames.get(key);
    if (cached && cached.version === current) return cached;
    const delta = from === undefined ? undefined : this.#opts.view.delta(type, from);
    let out: { version: string; body: string; kind: 'snapshot' | 'delta' };
    if (delta) {
      const json = JSON.stringify({ resourceType: type, version: delta.version, upserts: delta.upserts, removals: delta.removals });
      out = { version: delta.version, body: json.slice(1), kind: 'delta' };
    } else {
      const snap = this.#opts.view.snapshot(type);
      const json = JSON.stringify({ resourceType: type, version: snap.version, resources: snap.resources });
      out = { version: snap.version, body: json.slice(1), kind: 'snapshot' };
    }
    // Frames for an older version are useless; a few hundred distinct
    // starting points is plenty for any fleet.
    if (this.#frames.size >= 512) this.#frames.clear();
    this.#frames.set(key, out);
    return out;
  }

  #send(s: Session, text: string): void {
    if (s.closed || s.ws.readyState !== 1) return;
    s.lastSent = performance.now();
    s.ws.send(text);
  }

  #beat(): void {
    const now = performance.now();
    const deadline = 3 * this.#opts.heartbeatMs;
    for (const s of [...this.#sessions.values()]) {
      if (now - s.lastSeen > deadline) {
        this.#log({ event: 'push_session_dead', node: s.node, silentMs: Math.round(now - s.lastSeen) });
        s.ws.terminate();
        this.#onClose(s, 'heartbeat_lapsed');
        continue;
      }
      if (now - s.lastSent >= this.#opts.heartbeatMs) this.#send(s, HEARTBEAT);
    }
  }

  #log(event: Record<string, unknown>): void {
    this.#opts.log?.(event);
  }
}

const HEARTBEAT = '{"type":"heartbeat"}';

function toBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}
