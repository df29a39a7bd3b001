// Live taps (`meshctl tap`): GET /v1/tap?service=&namespace=&duration=&rate=
// upgrades to a WebSocket (admin SVID, checked before the upgrade, like every
// admin route). The broker sends `tap` to every connected agent (the service's
// callers can be on any node), and to agents that connect while the tap is
// live; it forwards their tapEvents to the client as JSON text frames and
// sends `untap` when the client leaves or the duration ends.
//
// Frames to the client, one JSON object each:
//   {type:'started', id, service, namespace, durationMs, maxEventsPerSecond, agents:[node...]}
//   {type:'events', node, events:[...], dropped?:{rateLimited, slowClient, excess}}   (totals so far)
//   {type:'agent', node, state:'joined'|'left'}
//   {type:'error', node, code, message}      (an agent refused the tap)
//   {type:'end', reason:'duration'|'shutdown', events, dropped:{...}}
//
// Agents are untrusted: events are taken only for a tap id the broker sent to
// that very node, every event must name the sender's node and the tapped
// service, and each node's events are held to the tap's rate (the excess is
// dropped and counted). A client that reads too slowly loses events (counted)
// instead of growing our memory. At most maxTaps taps at once.
import { randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import type { WebSocket } from 'ws';
import {
  DEFAULT_NAMESPACE,
  MAX_TAP_DURATION_MS,
  MAX_TAP_EVENTS_PER_SECOND,
  MIN_TAP_DURATION_MS,
  dns1123Name,
  durationMs,
  safeValidate,
  type TapEvent,
  type TapEventsMessage,
  type TapMessage,
  type UntapMessage,
} from '@amime/protocol';
import { oneWayServer, refuseUpgrade, upgradeQuery } from './authenticated-stream.js';
import { cpError, type ControlPlaneError } from './errors.js';

export const TAP_PATH = '/v1/tap';
export const TAP_DEFAULTS = Object.freeze({ durationMs: 60_000, maxEventsPerSecond: 100, maxTaps: 16, maxBufferedBytes: 1 << 20 });
const TAP_QUERY = ['service', 'namespace', 'duration', 'rate'] as const;
const MAX_URL_LENGTH = 1024;
/** Ended tap ids remembered, so an agent's frame that crossed our untap is ignored rather than refused. */
const RECENT_IDS = 256;

export interface TapRequest {
  service: string;
  namespace: string;
  durationMs: number;
  maxEventsPerSecond: number;
}

/** The connected agents, as the push server knows them. */
export interface TapAgents {
  nodes(): Iterable<string>;
  /** Sends to the node's agent; false when it is not connected. */
  send(node: string, message: TapMessage | UntapMessage): boolean;
}

/** Where a tap's frames go: a WebSocket, or a test's fake. */
export interface TapSink {
  /** Bytes queued and not yet written. */
  readonly bufferedAmount: number;
  send(text: string): void;
  close(code: number, reason: string): void;
}

export interface TapTimer {
  cancel(): void;
}

export interface TapBrokerOptions {
  agents: TapAgents;
  /** The caller's SPIFFE ID, or throws a ControlPlaneError (401/403); needed for handleUpgrade only. */
  authenticate?(socket: TLSSocket): string;
  /** Default 16. */
  maxTaps?: number;
  /** Per client; past it events are dropped (and counted). Default 1 MiB. */
  maxBufferedBytes?: number;
  /** Monotonic ms. Default performance.now. */
  now?: () => number;
  schedule?: (fn: () => void, ms: number) => TapTimer;
  log?(event: Record<string, unknown>): void;
}

interface NodeState {
  tokens: number;
  refilledAt: number;
}

interface Dropped {
  /** By the agents' rate limit (they report it). */
  rateLimited: number;
  /** Because the client read too slowly. */
  slowClient: number;
  /** Sent by an agent beyond the tap's rate: refused here. */
  excess: number;
}

interface LiveTap {
  readonly id: string;
  readonly req: TapRequest;
  readonly sink: TapSink;
  readonly caller: string;
  readonly deadline: number;
  readonly timer: TapTimer;
  /** Nodes sent `tap` on their current connection. */
  readonly nodes: Map<string, NodeState>;
  events: number;
  readonly dropped: Dropped;
}

const badQuery = (message: string): ControlPlaneError => cpError('AMIME_ERR_CP_BAD_REQUEST', message, 'bad_query');

/** Checks /v1/tap's query; every error names the parameter. */
export function parseTapQuery(query: URLSearchParams): TapRequest {
  for (const k of new Set(query.keys())) {
    if (!(TAP_QUERY as readonly string[]).includes(k)) throw badQuery(`${JSON.stringify(k.slice(0, 64))} is not a query parameter of ${TAP_PATH}; allowed: ${TAP_QUERY.join(', ')}`);
    if (query.getAll(k).length > 1) throw badQuery(`${k}: give it once`);
  }
  const service = query.get('service');
  if (service === null || service === '') throw badQuery('service: required, the name of the service to tap (e.g. ?service=catalog&namespace=shop)');
  const name = (what: string, v: string) => {
    const r = safeValidate(dns1123Name, v);
    if (!r.ok) throw badQuery(`${what}: must be a DNS-1123 label (lowercase letters, digits and "-"), got ${JSON.stringify(v.slice(0, 80))}`);
    return r.value;
  };
  const durationText = query.get('duration');
  let duration: number = TAP_DEFAULTS.durationMs;
  if (durationText !== null) {
    duration = durationMs(durationText);
    if (!Number.isSafeInteger(duration) || duration < MIN_TAP_DURATION_MS || duration > MAX_TAP_DURATION_MS) {
      throw badQuery(`duration: must be from 1s to 10m (e.g. 30s, 2m, 1500ms), got ${JSON.stringify(durationText.slice(0, 40))}`);
    }
  }
  const rateText = query.get('rate');
  let rate: number = TAP_DEFAULTS.maxEventsPerSecond;
  if (rateText !== null) {
    rate = /^\d{1,7}$/.test(rateText) ? Number(rateText) : Number.NaN;
    if (!(rate >= 1 && rate <= MAX_TAP_EVENTS_PER_SECOND)) throw badQuery(`rate: must be a whole number of events per second per agent from 1 to ${MAX_TAP_EVENTS_PER_SECOND}, got ${JSON.stringify(rateText.slice(0, 40))}`);
  }
  return { service: name('service', service), namespace: name('namespace', query.get('namespace') ?? DEFAULT_NAMESPACE), durationMs: duration, maxEventsPerSecond: rate };
}

const defaultSchedule = (fn: () => void, ms: number): TapTimer => {
  const t = setTimeout(fn, ms);
  t.unref();
  return { cancel: () => clearTimeout(t) };
};

export class TapBroker {
  readonly #opts: TapBrokerOptions;
  readonly #now: () => number;
  readonly #schedule: (fn: () => void, ms: number) => TapTimer;
  readonly #taps = new Map<string, LiveTap>();
  readonly #recent = new Set<string>();
  readonly #wss = oneWayServer();
  #closed = false;

  constructor(opts: TapBrokerOptions) {
    this.#opts = opts;
    this.#now = opts.now ?? (() => performance.now());
    this.#schedule = opts.schedule ?? defaultSchedule;
  }

  get size(): number {
    return this.#taps.size;
  }

  /** Starts a tap whose frames go to `sink`; throws a ControlPlaneError (503 too_many_taps) at the cap. */
  open(req: TapRequest, sink: TapSink, caller: string): string {
    if (this.#closed) throw cpError('AMIME_ERR_CP_INTERNAL', 'the control plane is shutting down', 'closing');
    const max = this.#opts.maxTaps ?? TAP_DEFAULTS.maxTaps;
    if (this.#taps.size >= max) throw tooMany(max);
    const id = `tap-${randomBytes(12).toString('base64url')}`;
    const tap: LiveTap = {
      id,
      req,
      sink,
      caller,
      deadline: this.#now() + req.durationMs,
      timer: this.#schedule(() => this.#end(tap, 'duration'), req.durationMs),
      nodes: new Map(),
      events: 0,
      dropped: { rateLimited: 0, slowClient: 0, excess: 0 },
    };
    this.#taps.set(id, tap);
    for (const node of this.#opts.agents.nodes()) this.#sendTap(tap, node);
    this.#opts.log?.({ event: 'tap_opened', id, caller, service: `${req.namespace}/${req.service}`, durationMs: req.durationMs, rate: req.maxEventsPerSecond, agents: tap.nodes.size });
    this.#write(tap, { type: 'started', id, service: req.service, namespace: req.namespace, durationMs: req.durationMs, maxEventsPerSecond: req.maxEventsPerSecond, agents: [...tap.nodes.keys()] });
    return id;
  }

  /** The client went away: untap everywhere, nothing more is written. */
  clientClosed(id: string): void {
    const tap = this.#taps.get(id);
    if (tap) this.#end(tap, 'client_closed');
  }

  /** An agent connected (or reconnected): it gets every live tap, for the time left. */
  nodeConnected(node: string): void {
    for (const tap of this.#taps.values()) {
      tap.nodes.delete(node);
      if (this.#sendTap(tap, node)) this.#write(tap, { type: 'agent', node, state: 'joined' });
    }
  }

  nodeDisconnected(node: string): void {
    for (const tap of this.#taps.values()) if (tap.nodes.delete(node)) this.#write(tap, { type: 'agent', node, state: 'left' });
  }

  /**
   * A tapEvents frame from `node`'s agent (already schema-checked). Returns a
   * refusal (sent back to the agent as an error) or undefined.
   */
  onTapEvents(node: string, msg: TapEventsMessage): string | undefined {
    const tap = this.#taps.get(msg.id);
    const state = tap?.nodes.get(node);
    if (!tap || !state) {
      // A frame that crossed our untap, or a tap that ended: not the agent's fault.
      if (this.#recent.has(msg.id) || (tap && !state && this.#recent.has(`${msg.id}\0${node}`))) return undefined;
      return `tap ${msg.id} was not opened on this agent`;
    }
    for (let i = 0; i < msg.events.length; i++) {
      const e = msg.events[i]!;
      if (e.node !== node) return `events[${i}].node is ${JSON.stringify(e.node)}, but this agent is ${node}`;
      if (e.service !== tap.req.service || e.namespace !== tap.req.namespace) return `events[${i}] is for ${e.namespace}/${e.service}, but tap ${msg.id} is for ${tap.req.namespace}/${tap.req.service}`;
    }
    if (msg.error) {
      this.#write(tap, { type: 'error', node, code: msg.error.code, message: msg.error.message });
      tap.nodes.delete(node);
      this.#remember(`${msg.id}\0${node}`);
      return undefined;
    }
    if (msg.dropped) tap.dropped.rateLimited += msg.dropped;
    // The agent's own bucket allows a second of burst; a frame more than that is an agent ignoring the rate.
    const now = this.#now();
    const rate = tap.req.maxEventsPerSecond;
    state.tokens = Math.min(2 * rate, state.tokens + ((now - state.refilledAt) / 1000) * rate);
    state.refilledAt = now;
    let events: TapEvent[] = msg.events;
    if (events.length > state.tokens) {
      const keep = Math.max(0, Math.floor(state.tokens));
      tap.dropped.excess += events.length - keep;
      events = events.slice(0, keep);
    }
    state.tokens -= events.length;
    if (events.length === 0 && !msg.dropped) return undefined;
    if (tap.sink.bufferedAmount > (this.#opts.maxBufferedBytes ?? TAP_DEFAULTS.maxBufferedBytes)) {
      tap.dropped.slowClient += events.length;
      return undefined;
    }
    tap.events += events.length;
    const d = tap.dropped;
    this.#write(tap, { type: 'events', node, events, ...(d.rateLimited + d.slowClient + d.excess > 0 && { dropped: { ...d } }) });
    return undefined;
  }

  /** For an upgrade request to TAP_PATH: authenticate, validate, then stream. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    let caller: string;
    let tapReq: TapRequest;
    try {
      if (!this.#opts.authenticate) throw cpError('AMIME_ERR_CP_INTERNAL', 'tap streams are not served here', 'internal');
      caller = this.#opts.authenticate(socket as TLSSocket);
      const url = req.url ?? '';
      if (url.length > MAX_URL_LENGTH) throw badQuery(`the request target is ${url.length} characters, more than ${MAX_URL_LENGTH}`);
      tapReq = parseTapQuery(upgradeQuery(req));
      const max = this.#opts.maxTaps ?? TAP_DEFAULTS.maxTaps;
      if (this.#taps.size >= max) throw tooMany(max);
    } catch (err) {
      refuseUpgrade(socket, err, 'too_many_taps');
      return;
    }
    this.#wss.handleUpgrade(req, socket, head, (ws: WebSocket) => {
      let id: string | undefined;
      try {
        id = this.open(tapReq, ws, caller);
      } catch (err) {
        ws.close(1013, (err as Error).message.slice(0, 120));
        return;
      }
      ws.on('message', () => ws.close(1008, 'the tap stream is one-way'));
      ws.on('close', () => this.clientClosed(id));
      ws.on('error', () => this.clientClosed(id));
    });
  }

  /** Ends every tap (the control plane is stopping). */
  close(): void {
    this.#closed = true;
    for (const tap of [...this.#taps.values()]) this.#end(tap, 'shutdown');
    this.#wss.close();
  }

  #sendTap(tap: LiveTap, node: string): boolean {
    const left = Math.floor(tap.deadline - this.#now());
    if (left < MIN_TAP_DURATION_MS) return false;
    const msg: TapMessage = { type: 'tap', id: tap.id, service: tap.req.service, namespace: tap.req.namespace, maxEventsPerSecond: tap.req.maxEventsPerSecond, durationMs: Math.min(left, MAX_TAP_DURATION_MS) };
    if (!this.#opts.agents.send(node, msg)) return false;
    tap.nodes.set(node, { tokens: 2 * tap.req.maxEventsPerSecond, refilledAt: this.#now() });
    return true;
  }

  #end(tap: LiveTap, reason: 'duration' | 'shutdown' | 'client_closed'): void {
    if (this.#taps.get(tap.id) !== tap) return;
    this.#taps.delete(tap.id);
    tap.timer.cancel();
    this.#remember(tap.id);
    for (const node of tap.nodes.keys()) this.#opts.agents.send(node, { type: 'untap', id: tap.id });
    this.#opts.log?.({ event: 'tap_ended', id: tap.id, reason, events: tap.events, dropped: tap.dropped });
    if (reason === 'client_closed') return;
    this.#write(tap, { type: 'end', reason, events: tap.events, dropped: tap.dropped });
    try {
      tap.sink.close(1000, reason === 'duration' ? 'tap duration ended' : 'control plane shutting down');
    } catch {
      // already closed
    }
  }

  #remember(key: string): void {
    this.#recent.add(key);
    if (this.#recent.size > RECENT_IDS) this.#recent.delete(this.#recent.values().next().value!);
  }

  #write(tap: LiveTap, frame: Record<string, unknown>): void {
    try {
      tap.sink.send(JSON.stringify(frame));
    } catch {
      // a closing socket: its close handler ends the tap
    }
  }
}

function tooMany(max: number): ControlPlaneError {
  return cpError('AMIME_ERR_CP_FORBIDDEN', `${max} taps are open on this control plane, its limit; wait for one to end`, 'too_many_taps');
}
