// One agent-simulating child of the push benchmark (tools/bench/push/main.ts).
// It opens its share of the agents' WebSocket connections (each with its own
// SVID), says hello, ACKs every snapshot/delta at once, sends heartbeats, and
// for each armed round records the wall time at which each agent sent the ACK
// of the first new Route version. Everything goes to the parent over IPC.
//
// Protocol with the parent (one JSON message each way per event):
//   parent → worker: connect, arm, collect, clock, close
//   worker → parent: progress, ready, armed, round, clock, fatal
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import type { TLSSocket } from 'node:tls';
import WebSocket from 'ws';
import { bundleFromPem, verifyPeer } from '@amime/identity';

export interface AgentFile {
  trustDomain: string;
  bundlePem: string;
  agents: { node: string; certPem: string; keyPem: string }[];
}

export type ToWorker =
  | { cmd: 'connect'; url: string; agentsFile: string; serverId: string; ratePerSecond: number; inflight: number; heartbeatMs: number; connectTimeoutMs: number }
  | { cmd: 'arm'; round: number }
  | { cmd: 'collect'; round: number }
  | { cmd: 'clock'; t: number }
  | { cmd: 'close' };

export interface ReadyReport {
  ev: 'ready';
  assigned: number;
  connected: number;
  synced: number;
  failed: number;
  /** Per-connection time from connect() to open (TLS + upgrade), ms. */
  openMs: number[];
  firstError?: string;
}

export type FromWorker =
  | { ev: 'progress'; connected: number; synced: number; failed: number }
  | ReadyReport
  | { ev: 'armed'; round: number; agents: number }
  | { ev: 'round'; round: number; times: number[]; versions: string[]; missing: number; dropped: number; errors: number; partial: boolean }
  | { ev: 'clock'; t: number; w: number }
  | { ev: 'fatal'; message: string };

/** Wall time in ms with sub-ms resolution, comparable across processes on one host. */
const wallNow = (): number => performance.timeOrigin + performance.now();

const HEARTBEAT = '{"type":"heartbeat"}';
const skipHostname = (() => undefined) as unknown as NonNullable<WebSocket.ClientOptions['checkServerIdentity']>;
/** Connection attempts per agent: a refused or timed-out handshake under load is retried, boundedly. */
const MAX_ATTEMPTS = 3;

interface Agent {
  node: string;
  certPem: string;
  keyPem: string;
  ws: WebSocket | undefined;
  open: boolean;
  synced: boolean;
  held: string | undefined;
  attempts: number;
  heartbeat: NodeJS.Timeout | undefined;
  lastSent: number;
  /** For the armed round: the version held when armed, and whether this agent has reported. */
  armedFrom: string | undefined;
  roundDone: boolean;
}

const send = (m: FromWorker): void => {
  process.send?.(m);
};

let agents: Agent[] = [];
let cfg: Extract<ToWorker, { cmd: 'connect' }> | undefined;
let ca = '';
let bundle: ReturnType<typeof bundleFromPem> | undefined;
let serverChecked = false;
let connected = 0;
let synced = 0;
let failed = 0;
let dropped = 0;
let errors = 0;
let firstError: string | undefined;
let readySent = false;
const openMs: number[] = [];

let round = 0;
let roundTimes: number[] = [];
let roundVersions = new Set<string>();
let roundPending = 0;
let roundReported = true;

function fatal(message: string): void {
  send({ ev: 'fatal', message });
}

function noteError(message: string): void {
  firstError ??= message;
}

function checkReady(): void {
  if (readySent || !cfg) return;
  if (synced + failed < agents.length) return;
  readySent = true;
  send({ ev: 'ready', assigned: agents.length, connected, synced, failed, openMs, ...(firstError ? { firstError } : {}) });
}

function connect(a: Agent): Promise<void> {
  const c = cfg!;
  a.attempts++;
  const started = performance.now();
  return new Promise<void>((settle) => {
    const ws = new WebSocket(c.url, {
      perMessageDeflate: false,
      cert: a.certPem,
      key: a.keyPem,
      ca,
      minVersion: 'TLSv1.3',
      // SVIDs name the server by URI SAN only; the SPIFFE ID is checked below. (ws types this
      // as returning boolean, but it goes to tls.connect, where any truthy return is an error.)
      checkServerIdentity: skipHostname,
      handshakeTimeout: c.connectTimeoutMs,
      maxPayload: 4 * 1024 * 1024,
    });
    a.ws = ws;
    let opened = false;
    ws.on('upgrade', (res) => {
      if (serverChecked) return;
      serverChecked = true;
      // Once per worker: the server proves the expected SPIFFE ID through our bundle.
      const peer = verifyPeer(res.socket as TLSSocket, { bundle: bundle! });
      if (!peer.ok) fatal(`server certificate refused: ${peer.reason} ${peer.message}`);
      else if (peer.spiffeId !== c.serverId) fatal(`server is ${peer.spiffeId}, expected ${c.serverId}`);
    });
    ws.on('open', () => {
      opened = true;
      a.open = true;
      connected++;
      openMs.push(performance.now() - started);
      ws.send(JSON.stringify({ type: 'hello', node: a.node, protocol: 1, versions: {}, subscribe: ['Route'] }));
      a.heartbeat = setInterval(() => {
        // As the agent's push client: heartbeat only when nothing else was sent lately.
        if (ws.readyState === WebSocket.OPEN && performance.now() - a.lastSent >= c.heartbeatMs / 2) {
          a.lastSent = performance.now();
          ws.send(HEARTBEAT);
        }
      }, c.heartbeatMs);
      settle();
    });
    ws.on('message', (data: Buffer, isBinary: boolean) => onMessage(a, ws, data, isBinary));
    ws.on('error', (err: Error) => noteError(`${a.node}: ${err.message}`));
    ws.on('close', (code: number, reason: Buffer) => {
      if (a.heartbeat) clearInterval(a.heartbeat);
      a.heartbeat = undefined;
      if (opened) {
        a.open = false;
        connected--;
        if (!closing) {
          dropped++;
          noteError(`${a.node}: closed ${code} ${reason.toString().slice(0, 200)}`);
          if (!a.synced) {
            failed++;
            checkReady();
          }
        }
        return;
      }
      settle();
      if (closing) return;
      if (a.attempts < MAX_ATTEMPTS) {
        setTimeout(() => void connect(a), 250 * a.attempts);
        // The retry is not counted against the in-flight bound: it is rare and spaced out.
      } else {
        failed++;
        checkReady();
      }
    });
  });
}

function onMessage(a: Agent, ws: WebSocket, data: Buffer, isBinary: boolean): void {
  if (isBinary) return;
  let m: { type?: string; nonce?: string; version?: string; resourceType?: string };
  try {
    m = JSON.parse(data.toString('utf8')) as typeof m;
  } catch {
    errors++;
    return;
  }
  if (m.type === 'snapshot' || m.type === 'delta') {
    ws.send(JSON.stringify({ type: 'ack', nonce: m.nonce, resourceType: m.resourceType, version: m.version }));
    a.lastSent = performance.now();
    const at = wallNow();
    if (m.resourceType !== 'Route' || m.version === undefined) return;
    if (!a.synced) {
      a.synced = true;
      synced++;
      checkReady();
    }
    if (!roundReported && !a.roundDone && m.version !== a.armedFrom) {
      a.roundDone = true;
      roundTimes.push(at);
      roundVersions.add(m.version);
      if (--roundPending === 0) report(false);
    }
    a.held = m.version;
  } else if (m.type === 'error') {
    errors++;
    noteError(`${a.node}: server error ${JSON.stringify(m).slice(0, 300)}`);
  }
  // heartbeats from the server need no answer
}

function report(partial: boolean): void {
  if (roundReported) return;
  roundReported = true;
  const missing = agents.filter((a) => a.armedFrom !== undefined && !a.roundDone).length;
  send({ ev: 'round', round, times: roundTimes, versions: [...roundVersions], missing, dropped, errors, partial });
}

let closing = false;

async function startConnecting(): Promise<void> {
  const c = cfg!;
  const file = JSON.parse(readFileSync(c.agentsFile, 'utf8')) as AgentFile;
  ca = file.bundlePem;
  bundle = bundleFromPem(file.bundlePem, file.trustDomain);
  agents = file.agents.map((x) => ({ ...x, ws: undefined, open: false, synced: false, held: undefined, attempts: 0, heartbeat: undefined, lastSent: 0, armedFrom: undefined, roundDone: true }));
  const progress = setInterval(() => send({ ev: 'progress', connected, synced, failed }), 1000);
  // Token bucket: at most ratePerSecond new connections a second and `inflight` handshakes at once.
  let next = 0;
  let inflight = 0;
  let tokens = 1;
  let last = performance.now();
  await new Promise<void>((done) => {
    const tick = setInterval(() => {
      const now = performance.now();
      tokens = Math.min(c.inflight, tokens + ((now - last) / 1000) * c.ratePerSecond);
      last = now;
      while (tokens >= 1 && inflight < c.inflight && next < agents.length && !closing) {
        tokens -= 1;
        inflight++;
        void connect(agents[next++]!).then(() => inflight--);
      }
      if (next >= agents.length || closing) {
        clearInterval(tick);
        done();
      }
    }, 5);
  });
  checkReady();
  // Progress stops once every agent is synced or given up on.
  const stop = setInterval(() => {
    if (readySent || closing) {
      clearInterval(progress);
      clearInterval(stop);
    }
  }, 200);
}

function arm(r: number): void {
  round = r;
  roundTimes = [];
  roundVersions = new Set();
  roundPending = 0;
  for (const a of agents) {
    if (a.open && a.synced) {
      a.armedFrom = a.held;
      a.roundDone = false;
      roundPending++;
    } else {
      a.armedFrom = undefined;
      a.roundDone = true;
    }
  }
  roundReported = false;
  send({ ev: 'armed', round: r, agents: roundPending });
  if (roundPending === 0) report(false);
}

function closeAll(): void {
  closing = true;
  for (const a of agents) {
    if (a.heartbeat) clearInterval(a.heartbeat);
    a.ws?.terminate();
  }
  // Give the IPC channel a moment to flush, then leave.
  setTimeout(() => process.exit(0), 50).unref();
  process.disconnect?.();
}

process.on('message', (m: ToWorker) => {
  try {
    if (m.cmd === 'connect') {
      cfg = m;
      startConnecting().catch((err: unknown) => fatal((err as Error).stack ?? String(err)));
    } else if (m.cmd === 'arm') arm(m.round);
    else if (m.cmd === 'collect') {
      if (m.round === round) report(true);
    } else if (m.cmd === 'clock') send({ ev: 'clock', t: m.t, w: wallNow() });
    else if (m.cmd === 'close') closeAll();
  } catch (err) {
    fatal((err as Error).stack ?? String(err));
  }
});
// Orphaned (the parent died): stop at once rather than hold sockets open.
process.on('disconnect', () => {
  if (!closing) closeAll();
});
