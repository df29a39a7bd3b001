// The agent's end of the push protocol: one WebSocket over mTLS with the
// agent's SVID, reconnected with backoff for as long as the client runs.
//
// Per connection: verify the server's SVID (exactly `expectedServerId`, under
// the current bundle) when the upgrade answer arrives, and only then say hello
// with the versions held, so the server resumes with a delta or nothing. Each
// snapshot or delta is checked, applied through `apply`, and answered: ack
// (the new state and version are committed) or nack (the previous ones kept).
//
// Pushes are handled strictly in order through one bounded queue: an async
// `apply` holds the later frames (and the next hello) back, so acks go out in
// order and a resumed hello always names what was really applied. The server
// keeps at most one push in flight per type, so the queue stays short; a
// server that overruns it is broken and the connection is dropped.

import { EventEmitter } from 'node:events';
import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { performance } from 'node:perf_hooks';
import { WebSocket, type ClientOptions, type RawData } from 'ws';
import {
  bundleFromPem,
  parseSpiffeId,
  parseTrustDomain,
  svidTlsOptions,
  trustDomainFromPem,
  verifyPeer,
  type RevocationSet,
} from '@amime/identity';
import { RESOURCE_TYPES, resourceKey, type Resource, type ResourceType } from '../resources.js';
import {
  DEFAULT_MAX_FRAME_BYTES,
  MAX_CLIENT_FRAME_BYTES,
  PROTOCOL_VERSION,
  clientMessage,
  decodeServerMessage,
  type ClientMessage,
  type DeltaMessage,
  type ErrorMessage,
  type Instance,
  type HeldSvid,
  MAX_HELD_SVIDS,
  type ReportMessage,
  type SnapshotMessage,
} from '../messages.js';
import { INVALID, ValidationError, formatIssues, type Issue } from '../validate.js';
import type { TapEventsMessage, TapMessage, UntapMessage } from '../tap-messages.js';
import { Backoff, type BackoffOptions } from './backoff.js';

/** The agent's current SVID and trust roots, all PEM. */
export interface PushCredential {
  /** Leaf first, then intermediates. */
  certPem: string;
  keyPem: string;
  /** The trust domain's root certificates. */
  bundlePem: string;
}

/** What the agent holds for one resource type. */
export interface HeldState {
  readonly version: string;
  /** By key `/resources/<Kind>/<namespace>/<name>`; never mutated once handed out. */
  readonly resources: ReadonlyMap<string, Resource>;
}

/**
 * One change handed to `apply`. For a delta, `upserts` and `removals` are the
 * frame's; for a snapshot, `upserts` is every resource in it and `removals`
 * the keys held before that the snapshot no longer has, so consumers can
 * update incrementally either way. `resources` is the full state after it.
 */
export interface AppliedUpdate {
  readonly resourceType: ResourceType;
  readonly kind: 'snapshot' | 'delta';
  readonly version: string;
  /** The version held before, if any. */
  readonly previousVersion: string | undefined;
  readonly upserts: readonly Resource[];
  readonly removals: readonly string[];
  readonly resources: ReadonlyMap<string, Resource>;
}

export interface RejectedUpdate {
  readonly resourceType: ResourceType;
  readonly version: string;
  readonly nonce: string;
  /** The error sent in the nack (at most MAX_NACK_ERROR_LENGTH characters). */
  readonly error: string;
}

export const DISCONNECT_REASONS = [
  'stopped',
  'credential_unavailable',
  'connect_failed',
  'peer_refused',
  'heartbeat_timeout',
  'frame_too_large',
  'protocol_violation',
  'closed',
] as const;
export type DisconnectReason = (typeof DISCONNECT_REASONS)[number];

export interface DisconnectInfo {
  readonly reason: DisconnectReason;
  readonly message: string;
  /** Whether hello had been sent on the connection that ended. */
  readonly wasConnected: boolean;
  /** When the next attempt starts; absent once stopped. */
  readonly retryInMs?: number;
}

export interface ConnectedInfo {
  readonly serverId: string;
  /** The versions said in hello. */
  readonly versions: Partial<Record<ResourceType, string>>;
}

export interface ProtocolErrorInfo {
  /** A decode error code (`too_large`, `malformed_json`, ...) or a client-side check (`delta_before_snapshot`, ...). */
  readonly code: string;
  readonly message: string;
  /** A nack was sent for it (the frame named a nonce, type and version). */
  readonly nacked: boolean;
}

export interface PushClientEvents {
  connected: [ConnectedInfo];
  disconnected: [DisconnectInfo];
  applied: [AppliedUpdate];
  rejected: [RejectedUpdate];
  server_error: [ErrorMessage];
  /** The control plane opened a live tap (or renewed one with the same id). */
  tap: [TapMessage];
  untap: [UntapMessage];
  protocol_error: [ProtocolErrorInfo];
}

export interface PushClientOptions {
  /** `wss://<host>:<port>/v1/push`. */
  url: string;
  /** This agent's node name (the `<node>` of its `/agent/<node>` SVID). */
  node: string;
  /** Read at every connect, so a renewed SVID or rotated bundle is used from the next connection on. */
  credential: () => PushCredential;
  /** Default: the trust domain of `expectedServerId`, else of the credential's SVID. */
  trustDomain?: string;
  /** The server must present exactly this SPIFFE ID. Default `spiffe://<td>/control-plane/controller`. */
  expectedServerId?: string;
  /** Serials and identities to refuse in the server's chain; read at every connect. */
  revocations?: () => RevocationSet | undefined;
  /** Types to subscribe to; all when absent. */
  subscribe?: readonly ResourceType[];
  /**
   * Where this agent serves /metrics ("host:port"), said in hello for
   * Prometheus discovery; a function is read at every hello (the admin port
   * may be bound after the client is made). A value hello's schema refuses is
   * left out (and logged).
   */
  metrics?: string | (() => string | undefined);
  /** The last good config (e.g. from disk): its versions go into hello, so the server can resume. */
  initial?: Partial<Record<ResourceType, { version: string; resources: readonly Resource[] }>>;
  /** Applies a change; throw (or reject) to refuse it: a nack is sent and the previous state kept. */
  apply: (update: AppliedUpdate) => void | Promise<void>;
  /** Heartbeat period; a server silent for 3 periods is dead. Default 5 s. */
  heartbeatMs?: number;
  /** Largest frame accepted from the server. Default DEFAULT_MAX_FRAME_BYTES (4 MiB). */
  maxPayload?: number;
  /** TCP + TLS + upgrade must finish within this. Default 10 s. */
  connectTimeoutMs?: number;
  /** Reconnect delays; a Backoff instance or its options. */
  backoff?: Backoff | BackoffOptions;
  log?(event: Record<string, unknown>): void;
}

export const DEFAULT_HEARTBEAT_MS = 5000;
/** The shortest heartbeat period the client follows a server down to. */
const MIN_HEARTBEAT_MS = 50;
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
export const SERVER_PATH_ID = '/control-plane/controller';
/** The `error` field of nack is bounded by the wire schema. */
export const MAX_NACK_ERROR_LENGTH = 4096;
/** Frames waiting for an apply; the server's flow control keeps this at one per type. */
export const MAX_QUEUED_FRAMES = 64;

const HEARTBEAT = '{"type":"heartbeat"}';
const CLOSE_NORMAL = 1000;
/** After stop(), a server that does not answer the close frame is cut off after this. */
const CLOSE_GRACE_MS = 1000;

class Connection {
  verified = false;
  helloSent = false;
  closed = false;
  serverId = '';
  lastReceived = performance.now();
  lastSent = performance.now();
  heartbeat: NodeJS.Timeout | undefined;
  /** This connection's heartbeat period: the configured one, shortened to the server's if it beats faster. */
  beatMs = 0;
  /** Why it is ending, when we decided it (otherwise derived from the close). */
  failure: { reason: DisconnectReason; message: string } | undefined;
  error: string | undefined;
  constructor(readonly ws: WebSocket) {}

  fail(reason: DisconnectReason, message: string): void {
    this.failure ??= { reason, message };
  }
}

type Task =
  | { kind: 'hello'; conn: Connection }
  | { kind: 'push'; conn: Connection; msg: SnapshotMessage | DeltaMessage }
  | { kind: 'refuse'; conn: Connection; nonce: string; resourceType: ResourceType; version: string; error: string };

export class PushClient extends EventEmitter<PushClientEvents> {
  readonly #opts: PushClientOptions;
  readonly #heartbeatMs: number;
  readonly #maxPayload: number;
  readonly #connectTimeoutMs: number;
  readonly #subscribed: ReadonlySet<ResourceType>;
  readonly #backoff: Backoff;
  readonly #state = new Map<ResourceType, HeldState>();
  readonly #queue: Task[] = [];
  #draining = false;
  #running = false;
  #conn: Connection | undefined;
  #reconnect: NodeJS.Timeout | undefined;
  #registerText: string | undefined;

  constructor(opts: PushClientOptions) {
    super();
    this.#opts = opts;
    this.#heartbeatMs = positive(opts.heartbeatMs ?? DEFAULT_HEARTBEAT_MS, 'heartbeatMs');
    this.#maxPayload = positive(opts.maxPayload ?? DEFAULT_MAX_FRAME_BYTES, 'maxPayload');
    this.#connectTimeoutMs = positive(opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS, 'connectTimeoutMs');
    this.#backoff = opts.backoff instanceof Backoff ? opts.backoff : new Backoff(opts.backoff);
    if (typeof opts.apply !== 'function') throw new TypeError('push client: apply must be a function that applies an update');
    if (typeof opts.credential !== 'function') throw new TypeError('push client: credential must be a function returning { certPem, keyPem, bundlePem }');
    let url: URL;
    try {
      url = new URL(opts.url);
    } catch {
      throw new TypeError(`push client: url ${JSON.stringify(opts.url)} is not a URL; use wss://<host>:<port>/v1/push`);
    }
    if (url.protocol !== 'wss:') throw new TypeError(`push client: url must use wss: (mTLS), got ${url.protocol}`);
    if (opts.expectedServerId !== undefined) parseSpiffeId(opts.expectedServerId);
    if (opts.trustDomain !== undefined) parseTrustDomain(opts.trustDomain);
    this.#subscribed = new Set(opts.subscribe ?? RESOURCE_TYPES);
    for (const [type, held] of Object.entries(opts.initial ?? {}) as [ResourceType, { version: string; resources: readonly Resource[] }][]) {
      if (held === undefined) continue;
      this.#state.set(type, { version: held.version, resources: new Map(held.resources.map((r) => [resourceKey(r), r])) });
    }
    // node, subscribe and the initial versions are checked once, by the wire schema hello must pass.
    checkMessage(this.#hello(), 'push client options');
  }

  /** Connects (and keeps reconnecting) until stop(). */
  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#backoff.reset();
    this.#connect();
  }

  /** Closes the connection and stops reconnecting; resolves once the socket is closed. */
  stop(): Promise<void> {
    this.#running = false;
    if (this.#reconnect) clearTimeout(this.#reconnect);
    this.#reconnect = undefined;
    const conn = this.#conn;
    if (!conn) return Promise.resolve();
    conn.fail('stopped', 'the client was stopped');
    return new Promise((resolve) => {
      conn.ws.once('close', () => resolve());
      if (conn.ws.readyState === WebSocket.OPEN) {
        conn.ws.close(CLOSE_NORMAL, 'agent stopping');
        setTimeout(() => conn.ws.terminate(), CLOSE_GRACE_MS).unref();
      } else {
        conn.ws.terminate();
      }
    });
  }

  /**
   * Replaces the instance set this agent registers; sent now if connected and
   * again after every reconnect. Throws a ValidationError if the set would not
   * pass the server's schema or frame bound. `svids`: the SVIDs the agent
   * holds, for operators' expiry views (optional, best effort).
   */
  register(instances: readonly Instance[], svids?: readonly HeldSvid[]): void {
    const msg = checkMessage({ type: 'register', instances: [...instances] }, 'register');
    let text = JSON.stringify(msg);
    // The SVID list is informational: left out when invalid or when the frame would be too large; the instances never are.
    if (svids && svids.length > 0) {
      const issues: Issue[] = [];
      const withSvids = clientMessage.check({ ...msg, svids: svids.slice(0, MAX_HELD_SVIDS) }, '', issues);
      const t = withSvids === INVALID || issues.length > 0 ? undefined : JSON.stringify(withSvids);
      if (t !== undefined && Buffer.byteLength(t) <= MAX_CLIENT_FRAME_BYTES) text = t;
    }
    if (Buffer.byteLength(text) > MAX_CLIENT_FRAME_BYTES) {
      throw new ValidationError([{ path: 'instances', message: `encode to ${Buffer.byteLength(text)} bytes, more than the ${MAX_CLIENT_FRAME_BYTES} an agent frame may carry`, fix: 'register fewer instances or shorter labels' }], 'register');
    }
    this.#registerText = text;
    const conn = this.#conn;
    if (conn?.helloSent) this.#send(conn, text);
  }

  /**
   * Sends one frame of edge traffic (the communication-pattern monitor's
   * input) if connected; returns whether it was sent. Reports are not
   * queued: an interval lost to a disconnect is simply missing. Throws a
   * ValidationError if the frame would not pass the server's schema or bound.
   */
  sendReport(report: Omit<ReportMessage, 'type'>): boolean {
    const msg = checkMessage({ type: 'report', seq: report.seq, intervalMs: report.intervalMs, edges: [...report.edges] }, 'report');
    const text = JSON.stringify(msg);
    if (Buffer.byteLength(text) > MAX_CLIENT_FRAME_BYTES) {
      throw new ValidationError([{ path: 'edges', message: `encode to ${Buffer.byteLength(text)} bytes, more than the ${MAX_CLIENT_FRAME_BYTES} an agent frame may carry`, fix: 'send fewer edges per frame' }], 'report');
    }
    const conn = this.#conn;
    if (!conn?.helloSent || conn.closed) return false;
    this.#send(conn, text);
    return true;
  }

  /**
   * Sends one frame of a live tap's events if connected; returns whether it
   * was sent (never queued: a tap is live or nothing). Throws a
   * ValidationError if the frame would not pass the server's schema or bound.
   */
  sendTapEvents(frame: Omit<TapEventsMessage, 'type'>): boolean {
    const msg = checkMessage({ type: 'tapEvents', ...frame, events: [...frame.events] }, 'tapEvents');
    const text = JSON.stringify(msg);
    if (Buffer.byteLength(text) > MAX_CLIENT_FRAME_BYTES) {
      throw new ValidationError([{ path: 'events', message: `encode to ${Buffer.byteLength(text)} bytes, more than the ${MAX_CLIENT_FRAME_BYTES} an agent frame may carry`, fix: 'send fewer events per frame' }], 'tapEvents');
    }
    const conn = this.#conn;
    if (!conn?.helloSent || conn.closed) return false;
    this.#send(conn, text);
    return true;
  }

  /** Hello has been sent on a verified connection. */
  get connected(): boolean {
    return this.#conn?.helloSent === true && !this.#conn.closed;
  }

  /** The versions held now, by type. */
  versions(): Partial<Record<ResourceType, string>> {
    const out: Partial<Record<ResourceType, string>> = {};
    for (const [type, held] of this.#state) out[type] = held.version;
    return out;
  }

  state(type: ResourceType): HeldState | undefined {
    return this.#state.get(type);
  }

  // ---------------------------------------------------------------- connections

  #connect(): void {
    this.#reconnect = undefined;
    if (!this.#running || this.#conn) return;
    let tlsOptions: ReturnType<typeof svidTlsOptions>;
    let verify: { bundle: ReturnType<typeof bundleFromPem>; revocations?: RevocationSet; trustDomain: string };
    let expected: string;
    try {
      const cred = this.#opts.credential();
      const td =
        this.#opts.trustDomain ??
        (this.#opts.expectedServerId !== undefined ? parseSpiffeId(this.#opts.expectedServerId).trustDomain : undefined) ??
        trustDomainFromPem(cred.certPem);
      if (td === undefined) throw new Error('the SVID names no SPIFFE ID; pass trustDomain');
      expected = this.#opts.expectedServerId ?? `spiffe://${td}${SERVER_PATH_ID}`;
      const bundle = bundleFromPem(cred.bundlePem, td);
      const revocations = this.#opts.revocations?.();
      verify = { bundle, trustDomain: td, ...(revocations && { revocations }) };
      tlsOptions = svidTlsOptions({ certChain: cred.certPem, privateKey: cred.keyPem, bundle });
    } catch (err) {
      return this.#attemptFailed('credential_unavailable', `cannot build the TLS credential: ${messageOf(err)}`);
    }
    let ws: WebSocket;
    try {
      ws = new WebSocket(this.#opts.url, {
        ...tlsOptions,
        // Compression off: CPU for little gain, and a compression oracle on a TLS channel.
        perMessageDeflate: false,
        maxPayload: this.#maxPayload,
        handshakeTimeout: this.#connectTimeoutMs,
        followRedirects: false,
      } as ClientOptions);
    } catch (err) {
      return this.#attemptFailed('connect_failed', messageOf(err));
    }
    const conn = new Connection(ws);
    this.#conn = conn;
    // The answer to the upgrade is the first moment the TLS peer is known and
    // nothing of ours beyond the upgrade request has been sent.
    ws.on('upgrade', (res: IncomingMessage) => {
      const peer = verifyPeer(res.socket as TLSSocket, verify);
      if (!peer.ok) {
        conn.fail('peer_refused', `the server's certificate was refused: ${peer.reason}: ${peer.message}`);
        ws.terminate();
      } else if (peer.spiffeId !== expected) {
        conn.fail('peer_refused', `the server is ${peer.spiffeId}, not ${expected}`);
        ws.terminate();
      } else {
        conn.verified = true;
        conn.serverId = peer.spiffeId;
      }
    });
    ws.on('open', () => this.#onOpen(conn));
    ws.on('message', (data: RawData) => this.#onFrame(conn, data));
    ws.on('ping', () => (conn.lastReceived = performance.now()));
    ws.on('error', (err: Error & { code?: string }) => this.#onError(conn, err));
    ws.on('close', (code: number, reason: Buffer) => this.#onClose(conn, code, reason.toString()));
  }

  /** A connect attempt that never got a socket: count it and retry. */
  #attemptFailed(reason: DisconnectReason, message: string): void {
    this.#log({ event: 'push_connect_failed', reason, message });
    const retryInMs = this.#scheduleReconnect();
    this.#emit('disconnected', { reason, message, wasConnected: false, ...(retryInMs !== undefined && { retryInMs }) });
  }

  #scheduleReconnect(): number | undefined {
    if (!this.#running) return undefined;
    const delay = this.#backoff.next();
    this.#reconnect = setTimeout(() => this.#connect(), delay);
    return delay;
  }

  #onOpen(conn: Connection): void {
    if (!conn.verified) {
      // Unreachable with ws (open follows upgrade), but never say hello unverified.
      conn.fail('peer_refused', 'the connection opened without a verified server certificate');
      conn.ws.terminate();
      return;
    }
    this.#schedule(conn, this.#heartbeatMs);
    // Hello waits behind an apply still running from the previous connection;
    // the silence clock starts with hello, since the server says nothing before it.
    this.#enqueue({ kind: 'hello', conn });
  }

  #schedule(conn: Connection, ms: number): void {
    if (conn.heartbeat) clearInterval(conn.heartbeat);
    conn.beatMs = ms;
    conn.heartbeat = setInterval(() => this.#beat(conn), ms);
    conn.heartbeat.unref();
  }

  #beat(conn: Connection): void {
    // Before hello the server sends nothing (and times the connection out itself).
    if (!conn.helloSent) return;
    const silentMs = performance.now() - conn.lastReceived;
    if (silentMs > 3 * this.#heartbeatMs) {
      conn.fail('heartbeat_timeout', `nothing received from the server for ${Math.round(silentMs)} ms`);
      conn.ws.terminate();
      return;
    }
    // Only when idle: an ACK or register sent lately already proves we live.
    if (performance.now() - conn.lastSent >= conn.beatMs / 2) this.#send(conn, HEARTBEAT);
  }

  #onError(conn: Connection, err: Error & { code?: string }): void {
    conn.error ??= err.message;
    if (err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') {
      conn.fail('frame_too_large', `the server sent a frame over ${this.#maxPayload} bytes`);
      this.#emit('protocol_error', { code: 'too_large', message: err.message, nacked: false });
    } else if (err.code?.startsWith('WS_ERR_')) {
      conn.fail('protocol_violation', err.message);
      this.#emit('protocol_error', { code: err.code.slice(7).toLowerCase(), message: err.message, nacked: false });
    }
  }

  #onClose(conn: Connection, code: number, text: string): void {
    if (conn.closed) return;
    conn.closed = true;
    if (conn.heartbeat) clearInterval(conn.heartbeat);
    if (this.#conn === conn) this.#conn = undefined;
    // Its waiting pushes die with it (the next hello resumes from what is held);
    // an apply already running finishes and is committed.
    for (let i = this.#queue.length - 1; i >= 0; i--) if (this.#queue[i]!.conn === conn) this.#queue.splice(i, 1);
    const failure = conn.failure ?? {
      reason: conn.helloSent ? ('closed' as const) : ('connect_failed' as const),
      message: conn.error ?? `closed with code ${code}${text ? `: ${text}` : ''}`,
    };
    this.#log({ event: 'push_disconnected', ...failure, code });
    const retryInMs = this.#scheduleReconnect();
    this.#emit('disconnected', { ...failure, wasConnected: conn.helloSent, ...(retryInMs !== undefined && { retryInMs }) });
  }

  // ---------------------------------------------------------------- frames

  #onFrame(conn: Connection, data: RawData): void {
    const now = performance.now();
    const quietMs = now - conn.lastReceived;
    conn.lastReceived = now;
    if (conn.closed) return;
    const raw = Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
    const decoded = decodeServerMessage(raw, { maxBytes: this.#maxPayload });
    if (!decoded.ok) {
      const push = decoded.code === 'invalid_message' ? pushFields(raw) : undefined;
      this.#emit('protocol_error', { code: decoded.code, message: decoded.message, nacked: push !== undefined });
      if (push) this.#enqueue({ kind: 'refuse', conn, ...push, error: `invalid ${push.type}: ${decoded.message}` });
      return;
    }
    const msg = decoded.message;
    switch (msg.type) {
      case 'heartbeat':
        // The server beats after a quiet period of its own interval: a server configured to beat
        // faster than we do would cut us for silence, so follow it (never slower than configured).
        if (conn.helloSent && quietMs >= MIN_HEARTBEAT_MS && quietMs < conn.beatMs * 0.8) {
          this.#schedule(conn, Math.floor(quietMs));
          // Be heard now, not a period from now: the server's silence clock is already running.
          if (now - conn.lastSent >= conn.beatMs / 2) this.#send(conn, HEARTBEAT);
        }
        return;
      case 'error':
        this.#emit('server_error', msg);
        return;
      case 'tap':
        // Out of band of the config queue: a tap changes no config and needs no ack.
        if (conn.helloSent) this.#emit('tap', msg);
        return;
      case 'untap':
        if (conn.helloSent) this.#emit('untap', msg);
        return;
      default:
        this.#enqueue({ kind: 'push', conn, msg });
    }
  }

  #enqueue(task: Task): void {
    if (this.#queue.length >= MAX_QUEUED_FRAMES) {
      task.conn.fail('protocol_violation', `more than ${MAX_QUEUED_FRAMES} pushes waiting for an answer; the server ignores flow control`);
      task.conn.ws.terminate();
      return;
    }
    this.#queue.push(task);
    if (!this.#draining) this.#drain();
  }

  /** Runs tasks in order; synchronous applies never leave this loop. */
  #drain(): void {
    this.#draining = true;
    while (this.#queue.length > 0) {
      let pending: Promise<void> | undefined;
      try {
        pending = this.#run(this.#queue.shift()!);
      } catch (err) {
        // A bug here must not wedge the queue or escape into a socket callback.
        this.#log({ event: 'push_task_failed', error: messageOf(err) });
      }
      if (pending) {
        const next = () => this.#drain();
        void pending.then(next, next);
        return;
      }
    }
    this.#draining = false;
  }

  #run(task: Task): Promise<void> | undefined {
    const { conn } = task;
    if (task.kind === 'hello') {
      if (conn.closed) return undefined;
      const hello = this.#hello();
      this.#send(conn, JSON.stringify(hello));
      conn.helloSent = true;
      conn.lastReceived = performance.now();
      if (this.#registerText !== undefined) this.#send(conn, this.#registerText);
      this.#backoff.connected();
      this.#log({ event: 'push_connected', server: conn.serverId, versions: hello.versions });
      this.#emit('connected', { serverId: conn.serverId, versions: hello.versions });
      return undefined;
    }
    if (task.kind === 'refuse') {
      this.#nack(conn, task.resourceType, task.version, task.nonce, task.error);
      return undefined;
    }
    // A push for a dead connection is dropped: the next hello resumes from what is held.
    if (conn.closed) return undefined;
    return this.#push(conn, task.msg);
  }

  #push(conn: Connection, msg: SnapshotMessage | DeltaMessage): Promise<void> | undefined {
    const type = msg.resourceType;
    const refuse = (code: string, error: string) => {
      this.#emit('protocol_error', { code, message: error, nacked: true });
      this.#nack(conn, type, msg.version, msg.nonce, error);
      return undefined;
    };
    if (!this.#subscribed.has(type)) return refuse('not_subscribed', `${type} is not subscribed to`);
    const held = this.#state.get(type);
    let update: AppliedUpdate;
    if (msg.type === 'snapshot') {
      const resources = new Map<string, Resource>();
      for (const r of msg.resources) resources.set(resourceKey(r), r);
      if (resources.size !== msg.resources.length) return refuse('duplicate_key', `the ${type} snapshot names a resource twice`);
      const removals: string[] = [];
      if (held) for (const key of held.resources.keys()) if (!resources.has(key)) removals.push(key);
      update = { resourceType: type, kind: 'snapshot', version: msg.version, previousVersion: held?.version, upserts: msg.resources, removals, resources };
    } else {
      if (!held) return refuse('delta_before_snapshot', `a ${type} delta arrived but no ${type} snapshot is held; send a snapshot`);
      // Copy on write: the held map may still be in use by the consumer.
      const resources = new Map(held.resources);
      const removed = msg.removals.length > 0 && msg.upserts.length > 0 ? new Set(msg.removals) : undefined;
      for (const key of msg.removals) resources.delete(key);
      for (const r of msg.upserts) {
        const key = resourceKey(r);
        if (removed?.has(key)) return refuse('conflicting_delta', `the ${type} delta both upserts and removes ${key}`);
        resources.set(key, r);
      }
      update = { resourceType: type, kind: 'delta', version: msg.version, previousVersion: held.version, upserts: msg.upserts, removals: msg.removals, resources };
    }
    let result: void | Promise<void>;
    try {
      result = this.#opts.apply(update);
    } catch (err) {
      this.#settle(conn, msg.nonce, update, err, true);
      return undefined;
    }
    if (!isThenable(result)) {
      this.#settle(conn, msg.nonce, update, undefined, false);
      return undefined;
    }
    return Promise.resolve(result).then(
      () => this.#settle(conn, msg.nonce, update, undefined, false),
      (err: unknown) => this.#settle(conn, msg.nonce, update, err, true),
    );
  }

  /** Commits and acks, or keeps the held state and nacks. Acks for a dead connection are not sent (the nonce died with it). */
  #settle(conn: Connection, nonce: string, update: AppliedUpdate, err: unknown, failed: boolean): void {
    const { resourceType, version } = update;
    if (failed) {
      const error = (messageOf(err) || 'apply failed').slice(0, MAX_NACK_ERROR_LENGTH);
      this.#nack(conn, resourceType, version, nonce, error);
      this.#log({ event: 'push_rejected', resourceType, version, error: error.slice(0, 500) });
      this.#emit('rejected', { resourceType, version, nonce, error });
      return;
    }
    this.#state.set(resourceType, { version, resources: update.resources });
    this.#send(conn, JSON.stringify({ type: 'ack', nonce, resourceType, version }));
    this.#emit('applied', update);
  }

  #nack(conn: Connection, resourceType: ResourceType, version: string, nonce: string, error: string): void {
    this.#send(conn, JSON.stringify({ type: 'nack', nonce, resourceType, version, error: error.slice(0, MAX_NACK_ERROR_LENGTH) }));
  }

  #hello(): Extract<ClientMessage, { type: 'hello' }> {
    const versions: Partial<Record<ResourceType, string>> = {};
    for (const [type, held] of this.#state) if (this.#subscribed.has(type)) versions[type] = held.version;
    return {
      type: 'hello',
      node: this.#opts.node,
      protocol: PROTOCOL_VERSION,
      versions,
      ...(this.#opts.subscribe && { subscribe: [...this.#opts.subscribe] }),
      ...this.#metricsField(),
    };
  }

  #metricsField(): { metrics?: string } {
    const m = typeof this.#opts.metrics === 'function' ? this.#opts.metrics() : this.#opts.metrics;
    if (m === undefined) return {};
    const issues: Issue[] = [];
    clientMessage.check({ type: 'hello', node: this.#opts.node, protocol: PROTOCOL_VERSION, versions: {}, metrics: m }, '', issues);
    if (issues.length === 0) return { metrics: m };
    this.#log({ event: 'push_metrics_address_invalid', metrics: m.slice(0, 300), error: formatIssues(issues, 'metrics') });
    return {};
  }

  #send(conn: Connection, text: string): void {
    if (conn.closed || conn.ws.readyState !== WebSocket.OPEN) return;
    conn.lastSent = performance.now();
    conn.ws.send(text);
  }

  /** Listener exceptions must not unwind into socket callbacks. */
  #emit<K extends keyof PushClientEvents>(event: K, ...args: PushClientEvents[K]): void {
    try {
      (this.emit as (e: K, ...a: PushClientEvents[K]) => boolean)(event, ...args);
    } catch (err) {
      this.#log({ event: 'push_listener_failed', listener: event, error: messageOf(err) });
    }
  }

  #log(event: Record<string, unknown>): void {
    try {
      this.#opts.log?.(event);
    } catch {
      // a broken logger must not break the connection
    }
  }
}

function positive(n: number, name: string): number {
  if (!(Number.isSafeInteger(n) && n > 0)) throw new RangeError(`push client: ${name} must be a positive integer, got ${n}`);
  return n;
}

function checkMessage<M extends ClientMessage>(msg: M, what: string): M {
  const issues: Issue[] = [];
  const out = clientMessage.check(msg, '', issues);
  if (out === INVALID || issues.length > 0) throw new ValidationError(issues, what);
  return out as M;
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function isThenable(v: unknown): v is PromiseLike<void> {
  return typeof v === 'object' && v !== null && typeof (v as { then?: unknown }).then === 'function';
}

/**
 * The nonce, type and version of a push frame that failed validation, if
 * they themselves are valid: enough to nack it. Only called on the error path,
 * for frames the decoder already bounded and parsed once.
 */
function pushFields(raw: Buffer): { type: 'snapshot' | 'delta'; nonce: string; resourceType: ResourceType; version: string } | undefined {
  let value: unknown;
  try {
    value = JSON.parse(raw.toString('utf8'));
  } catch {
    return undefined;
  }
  if (value === null || typeof value !== 'object') return undefined;
  const { type, nonce, resourceType, version } = value as Record<string, unknown>;
  if (type !== 'snapshot' && type !== 'delta') return undefined;
  // The ack schema holds exactly the wire rules for these three fields.
  const issues: Issue[] = [];
  clientMessage.check({ type: 'ack', nonce, resourceType, version }, '', issues);
  if (issues.length > 0) return undefined;
  return { type, nonce: nonce as string, resourceType: resourceType as ResourceType, version: version as string };
}
