// Push benchmark: how long a Route change takes to reach every connected
// agent, through the real CA and control-plane processes, beside a bare WSS
// broadcast server (reference.ts) measured the same way in the same run.
//
//   node --import tsx tools/bench/push/main.ts [--agents 1000,5000[,10000]] [--rounds 5] [--warmup 1] [--workers 4]
//        [--spacing-ms 1000] [--connect-rate 400] [--round-timeout-ms 30000] [--only amime|reference]
//        [--out dist/bench/push.json] [--keep]      (AMIME_BENCH_PROF=dir: CPU profiles of servers and workers)
//
// Setup (temp dir): an operator root (P-256) plugged into `ca init`, a bench
// intermediate from the same root and N agent SVIDs spiffe://bench.test/agent/bench-<i>
// (minting them directly is far faster than N joins; verifiers accept any
// chain to the bundle root). The CA, the control plane and the reference run
// as child processes; W worker processes (worker.ts) hold the agents.
//
// A round: every worker is armed, T0 is taken just before the admin request
// (POST /v1/resources with a changed Route; POST /v1/broadcast for the
// reference) and an agent's latency is the wall time at which it sent its
// ACK of the new version minus T0. Workers and this process share the host
// clock (performance.timeOrigin + now); the measured IPC skew is reported.
//
// Bounded: every wait has a deadline, every loop a count; traffic stays on
// 127.0.0.1; every child is stopped by its PID at the end, on error and on
// SIGINT/SIGTERM.
import { fork, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { TLSSocket } from 'node:tls';
import { parseArgs } from 'node:util';
import { bundleFromPem, certsToPem, exportPrivateKeyPem, generateKeyPair, toPem, verifyPeer } from '@amime/identity';
import { createIntermediateCa, createRootCa, issueSvid, prepareIssuer } from '@amime/signing';
import type { AgentFile, FromWorker, ReadyReport, ToWorker } from './worker.js';

const root = resolve(import.meta.dirname, '../../..');
const CA_MAIN = join(root, 'apps/ca/src/main.ts');
const CP_MAIN = join(root, 'apps/control-plane/src/main.ts');
const WORKER = join(import.meta.dirname, 'worker.ts');
const REFERENCE = join(import.meta.dirname, 'reference.ts');
const TD = 'bench.test';
const CP_ID = `spiffe://${TD}/control-plane/controller`;
const REF_ID = `spiffe://${TD}/bench/reference`;
const HEARTBEAT_MS = 5000;
const MAX_AGENTS = 20_000;
/** Targets from the design: p99 under 250 ms up to 1,000 agents, under 1 s up to 10,000. */
const TARGETS = [
  { upTo: 1000, p99Ms: 250 },
  { upTo: 10_000, p99Ms: 1000 },
];
const USAGE =
  'usage: node --import tsx tools/bench/push/main.ts [--agents 1000,5000[,10000]] [--rounds 5] [--warmup 1] [--workers 4] [--spacing-ms 1000] ' +
  '[--connect-rate 400] [--round-timeout-ms 30000] [--only amime|reference] [--out dist/bench/push.json] [--keep]';

type Target = 'amime' | 'reference';

interface RoundResult {
  round: number;
  version: string;
  agents: number;
  /** Agents the server counted just before the round. */
  serverAgents: number;
  acked: number;
  missing: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  lastAckMs: number;
  /** Server CPU from T0 until every report was in. */
  cpuS: number;
  /** Admin request round trip. */
  requestMs: number;
}

interface PhaseResult {
  target: Target;
  agents: number;
  connected: number;
  failedConnections: number;
  firstError?: string;
  /** From the first connect until every agent held the snapshot. */
  setupS: number;
  connectionsPerS: number;
  setupCpuS: number;
  /** Per connection, connect() to WebSocket open. */
  openP50Ms: number;
  openP99Ms: number;
  rssMiB: number;
  hwmMiB: number;
  /** Server CPU per second while idle with every agent connected (heartbeats). */
  idleCpuPerS: number;
  clockSkewMs: number;
  rounds: RoundResult[];
  warmupRounds: RoundResult[];
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  lastAckMedianMs: number;
  cpuRoundsS: number;
  dropped: number;
  serverErrors: number;
  /** The host's 1-minute load average before connecting and after the last round (other work on the host skews every number). */
  loadAvg: { before: number; after: number };
  /** CPU of the agent workers (the load generator) during the rounds. */
  workersCpuRoundsS: number;
}

// ---------------------------------------------------------------- helpers

const wallNow = (): number => performance.timeOrigin + performance.now();
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

/** Clock ticks per second of /proc/<pid>/stat (100 on every Linux we run, but ask). */
const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout?.trim()) || 100;

function procStat(pid: number): { cpuS: number } {
  // utime and stime are fields 14 and 15; the command name may hold spaces, so split after ')'.
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return { cpuS: (Number(f[11]) + Number(f[12])) / CLK_TCK };
}

function procMem(pid: number): { rssMiB: number; hwmMiB: number } {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(s)?.[1] ?? NaN);
  return { rssMiB: kb('VmRSS') / 1024, hwmMiB: kb('VmHWM') / 1024 };
}

/** Resolves with a deadline; the timer never keeps the process alive. */
function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise<T>((ok, fail) => {
    const t = setTimeout(() => fail(new Error(`${what}: no result within ${ms} ms`)), ms);
    t.unref();
    p.then(
      (v) => {
        clearTimeout(t);
        ok(v);
      },
      (e: unknown) => {
        clearTimeout(t);
        fail(e as Error);
      },
    );
  });
}

// ---------------------------------------------------------------- children

/**
 * AMIME_BENCH_PROF=<dir>: CPU profiles of the servers and workers (written when
 * they exit, which they do on SIGTERM / close), to see where a round's time goes.
 */
function profFlags(name: string): string[] {
  const dir = process.env['AMIME_BENCH_PROF'];
  return dir && name !== 'ca' ? ['--cpu-prof', `--cpu-prof-dir=${resolve(dir)}`] : [];
}

/** Every process we start, so that exit paths stop exactly those, by PID. */
const children = new Map<number, { name: string; child: ChildProcess }>();

function track(name: string, child: ChildProcess): ChildProcess {
  if (child.pid === undefined) throw new Error(`${name} did not start`);
  children.set(child.pid, { name, child });
  child.once('exit', () => children.delete(child.pid!));
  return child;
}

async function stopChild(pid: number, graceMs = 5000): Promise<void> {
  const c = children.get(pid);
  if (!c || c.child.exitCode !== null || c.child.signalCode !== null) return;
  const exited = new Promise<void>((r) => c.child.once('exit', () => r()));
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  const t = setTimeout(() => {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }, graceMs);
  await exited;
  clearTimeout(t);
}

async function stopAll(): Promise<void> {
  await Promise.all([...children.keys()].map((pid) => stopChild(pid)));
}

/** Spawns `node --import tsx <main> ...` and waits for a JSON stdout line with `event`. */
async function serveProcess(name: string, main: string, args: string[], event: string, timeoutMs: number): Promise<{ child: ChildProcess; line: Record<string, unknown>; stderr: () => string }> {
  const child = track(
    name,
    spawn(process.execPath, [...profFlags(name), '--import', 'tsx', main, ...args], { cwd: root, env: { ...process.env, AMIME_CA_QUIET: '1' }, stdio: ['ignore', 'pipe', 'pipe'] }),
  );
  let err = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (d: string) => {
    // Keep the tail only: the control plane logs per agent.
    err = (err + d).slice(-20_000);
  });
  let out = '';
  let found = false;
  child.stdout!.setEncoding('utf8');
  const line = await withTimeout(
    new Promise<Record<string, unknown>>((ok, fail) => {
      child.stdout!.on('data', (d: string) => {
        if (found) return; // later output is not needed (the pipe is still drained)
        out += d;
        for (const l of out.split('\n')) {
          if (!l.startsWith('{')) continue;
          try {
            const j = JSON.parse(l) as Record<string, unknown>;
            if (j['event'] === event) {
              found = true;
              ok(j);
            }
          } catch {
            // a partial line; the next chunk completes it
          }
        }
      });
      child.once('exit', (code, sig) => fail(new Error(`${name} exited (${code ?? sig}) before "${event}": ${err.slice(-4000)}`)));
    }),
    timeoutMs,
    `${name} start`,
  );
  servers.set(child.pid!, { name, stderr: () => err });
  return { child, line, stderr: () => err };
}

/** The long-running servers, so that a round can tell "the server died" from "the agents are slow". */
const servers = new Map<number, { name: string; stderr: () => string }>();

function ensureAlive(pid: number): void {
  const s = servers.get(pid);
  if (s && !children.has(pid)) throw new Error(`${s.name} (pid ${pid}) exited during the run: ${s.stderr().slice(-3000)}`);
}

// ---------------------------------------------------------------- HTTPS client

interface Client {
  request(method: string, path: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }>;
  close(): void;
}

/** One kept-alive mTLS connection (so rounds do not pay a handshake); the server must prove `serverId`. */
function client(url: string, cred: { certPem: string; keyPem: string; bundlePem: string }, serverId: string): Client {
  const bundle = bundleFromPem(cred.bundlePem, TD);
  // No TLS session cache: a resumed session shows no peer certificate, so the server's ID could not be checked.
  const agent = new https.Agent({ keepAlive: true, maxSockets: 1, maxCachedSessions: 0, cert: cred.certPem, key: cred.keyPem, ca: cred.bundlePem, minVersion: 'TLSv1.3', checkServerIdentity: () => undefined });
  return {
    request: (method, path, body) =>
      new Promise((ok, fail) => {
        const data = body === undefined ? undefined : JSON.stringify(body);
        const req = https.request(
          `${url}${path}`,
          { method, agent, timeout: 30_000, headers: data ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) } : {} },
          (res) => {
            const peer = verifyPeer(res.socket as TLSSocket, { bundle });
            if (!peer.ok || peer.spiffeId !== serverId) {
              res.destroy();
              fail(new Error(`server at ${url} is not ${serverId}: ${peer.ok ? peer.spiffeId : peer.message}`));
              return;
            }
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('error', fail);
            res.on('end', () => {
              const text = Buffer.concat(chunks).toString('utf8');
              let json: Record<string, unknown> = {};
              try {
                json = JSON.parse(text) as Record<string, unknown>;
              } catch {
                json = { text };
              }
              ok({ status: res.statusCode ?? 0, json });
            });
          },
        );
        req.on('timeout', () => req.destroy(new Error(`${method} ${path} timed out`)));
        req.on('error', fail);
        req.end(data);
      }),
    close: () => agent.destroy(),
  };
}

// ---------------------------------------------------------------- setup

interface Material {
  dir: string;
  adminCred: { certPem: string; keyPem: string; bundlePem: string };
  bundlePem: string;
  /** Agent credentials, minted up to the largest N. */
  agents: AgentFile['agents'];
  refCertFile: string;
  refKeyFile: string;
  bundleFile: string;
}

function route(round: number): Record<string, unknown> {
  // The weights change every round so each apply is a real change (an unchanged apply pushes nothing).
  const w = 10 + (round % 80);
  return {
    apiVersion: 'amime.dev/v1',
    kind: 'Route',
    metadata: { name: 'bench', namespace: 'default' },
    spec: { service: 'bench', rules: [{ match: { path: { prefix: '/' } }, backends: [{ service: 'bench-v1', weight: 100 - w }, { service: 'bench-v2', weight: w }] }] },
  };
}

function makeMaterial(dir: string, maxAgents: number): Material {
  const now = new Date();
  const rootKey = generateKeyPair('ec-p256');
  const rootDer = createRootCa({ trustDomain: TD, keyPair: rootKey, ttlSeconds: 86400 * 30, now, commonName: 'amime bench operator root' });
  writeFileSync(join(dir, 'root.pem'), toPem('CERTIFICATE', rootDer));
  writeFileSync(join(dir, 'root-key.pem'), exportPrivateKeyPem(rootKey.privateKey), { mode: 0o600 });
  const init = spawnSync(
    process.execPath,
    ['--import', 'tsx', CA_MAIN, 'init', '--dir', join(dir, 'ca'), '--trust-domain', TD, '--root-cert', join(dir, 'root.pem'), '--root-key', join(dir, 'root-key.pem')],
    { cwd: root, env: { ...process.env, AMIME_CA_QUIET: '1' }, encoding: 'utf8', timeout: 60_000 },
  );
  if (init.status !== 0) throw new Error(`ca init exited ${init.status}: ${init.stderr}`);

  const interKey = generateKeyPair('ec-p256');
  const interDer = createIntermediateCa({ trustDomain: TD, keyPair: interKey, parent: { certDer: rootDer, privateKey: rootKey.privateKey }, ttlSeconds: 86400, now, commonName: 'amime bench intermediate' });
  const issuer = prepareIssuer({ certDer: interDer, privateKey: interKey.privateKey });
  const interPem = toPem('CERTIFICATE', interDer);
  const mint = (spiffeId: string) => {
    const key = generateKeyPair('ec-p256');
    const leaf = issueSvid({ issuer, spiffeId, spki: key.spki, ttlSeconds: 86400, now });
    return { certPem: certsToPem([leaf.der]) + interPem, keyPem: exportPrivateKeyPem(key.privateKey) };
  };
  const agents = Array.from({ length: maxAgents }, (_, i) => ({ node: `bench-${i}`, ...mint(`spiffe://${TD}/agent/bench-${i}`) }));
  const ref = mint(REF_ID);
  const read = (f: string) => readFileSync(join(dir, 'ca', 'admin', f), 'utf8');
  const adminCred = { certPem: read('cert.pem'), keyPem: read('key.pem'), bundlePem: read('bundle.pem') };
  writeFileSync(join(dir, 'ref-cert.pem'), ref.certPem);
  writeFileSync(join(dir, 'ref-key.pem'), ref.keyPem, { mode: 0o600 });
  writeFileSync(join(dir, 'bundle.pem'), adminCred.bundlePem);
  return {
    dir,
    adminCred,
    bundlePem: adminCred.bundlePem,
    agents,
    refCertFile: join(dir, 'ref-cert.pem'),
    refKeyFile: join(dir, 'ref-key.pem'),
    bundleFile: join(dir, 'bundle.pem'),
  };
}

// ---------------------------------------------------------------- workers

class Workers {
  readonly procs: ChildProcess[] = [];
  readonly #waiters = new Set<(w: number, m: FromWorker) => void>();
  fatal: string | undefined;

  constructor(count: number, name: string) {
    for (let w = 0; w < count; w++) {
      const child = track(`${name}-worker-${w}`, fork(WORKER, [], { execArgv: [...profFlags('worker'), '--import', 'tsx'], cwd: root, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }));
      child.on('message', (m: FromWorker) => {
        if (m.ev === 'fatal') this.fatal ??= `worker ${w}: ${m.message}`;
        for (const f of [...this.#waiters]) f(w, m);
      });
      child.once('exit', (code) => {
        if (code !== 0 && code !== null) this.fatal ??= `worker ${w} exited ${code}`;
      });
      this.procs.push(child);
    }
  }

  send(w: number, m: ToWorker): void {
    this.procs[w]!.send(m);
  }

  broadcast(m: ToWorker): void {
    for (let w = 0; w < this.procs.length; w++) this.send(w, m);
  }

  /** Collects one message per worker matching `pick`, within `ms`; `onOther` sees the rest. */
  collect<T>(pick: (m: FromWorker) => T | undefined, ms: number, what: string, onOther?: (w: number, m: FromWorker) => void): Promise<T[]> {
    const got = new Map<number, T>();
    let fn: ((w: number, m: FromWorker) => void) | undefined;
    const p = new Promise<T[]>((ok, fail) => {
      fn = (w, m) => {
        if (this.fatal) return fail(new Error(this.fatal));
        const v = pick(m);
        if (v === undefined) return onOther?.(w, m);
        got.set(w, v);
        if (got.size === this.procs.length) ok([...got.values()]);
      };
      this.#waiters.add(fn);
    });
    return withTimeout(p, ms, what).finally(() => this.#waiters.delete(fn!));
  }

  /**
   * Gathers one message per worker matching `pick` from now on; wait(ms)
   * resolves true once all are in, false at the deadline (or a worker failing).
   */
  gather<T>(pick: (m: FromWorker) => T | undefined): { wait(ms: number): Promise<boolean>; missing(): number[]; done(): T[] } {
    const got = new Map<number, T>();
    let wake: (() => void) | undefined;
    const fn = (w: number, m: FromWorker) => {
      const v = pick(m);
      if (v !== undefined) got.set(w, v);
      if (got.size === this.procs.length || this.fatal) wake?.();
    };
    this.#waiters.add(fn);
    const complete = () => got.size === this.procs.length;
    return {
      wait: (ms) =>
        new Promise<boolean>((ok) => {
          if (complete()) return ok(true);
          const t = setTimeout(() => {
            wake = undefined;
            ok(false);
          }, ms);
          wake = () => {
            clearTimeout(t);
            wake = undefined;
            ok(complete());
          };
        }).then((all) => {
          if (all) this.#waiters.delete(fn);
          if (this.fatal) throw new Error(this.fatal);
          return all;
        }),
      missing: () => this.procs.map((_, w) => w).filter((w) => !got.has(w)),
      done: () => {
        this.#waiters.delete(fn);
        return [...got.values()];
      },
    };
  }

  /** Worker w's wall clock, asked at our time t. */
  clock(w: number, t: number): Promise<number> {
    const p = this.collectOne(w, (m) => (m.ev === 'clock' && m.t === t ? m.w : undefined), 5000, 'clock');
    this.send(w, { cmd: 'clock', t });
    return p;
  }

  collectOne<T>(w: number, pick: (m: FromWorker) => T | undefined, ms: number, what: string): Promise<T> {
    let fn: ((from: number, m: FromWorker) => void) | undefined;
    const p = new Promise<T>((ok) => {
      fn = (from, m) => {
        const v = from === w ? pick(m) : undefined;
        if (v !== undefined) ok(v);
      };
      this.#waiters.add(fn);
    });
    return withTimeout(p, ms, what).finally(() => this.#waiters.delete(fn!));
  }

  async close(): Promise<void> {
    for (const c of this.procs) {
      if (c.connected) c.send({ cmd: 'close' } satisfies ToWorker);
    }
    await Promise.all(
      this.procs.map(async (c) => {
        if (c.exitCode !== null || c.signalCode !== null) return;
        const exited = new Promise<void>((r) => c.once('exit', () => r()));
        const t = setTimeout(() => c.pid !== undefined && void stopChild(c.pid, 2000), 10_000);
        await exited;
        clearTimeout(t);
      }),
    );
  }
}

// ---------------------------------------------------------------- one phase

interface PhaseOptions {
  target: Target;
  agents: number;
  workers: number;
  connectRate: number;
  roundTimeoutMs: number;
  pushUrl: string;
  serverId: string;
  serverPid: number;
  /** Applies the change of round r; returns the version suffix agents must reach, or undefined. */
  trigger(round: number): Promise<string | undefined>;
  connectedCount(): Promise<number>;
}

/** One server with its N agents connected: the rounds run against it, interleaved with the other server's. */
interface Phase {
  o: PhaseOptions;
  label: string;
  workers: Workers;
  files: string[];
  base: Omit<PhaseResult, 'rounds' | 'warmupRounds' | 'p50Ms' | 'p99Ms' | 'maxMs' | 'lastAckMedianMs' | 'cpuRoundsS' | 'dropped' | 'serverErrors' | 'loadAvg' | 'workersCpuRoundsS'>;
  loadBefore: number;
  rounds: RoundResult[];
  warmups: RoundResult[];
  all: number[];
  dropped: number;
  serverErrors: number;
  workersCpuRoundsS: number;
}

/** Starts the workers and connects every agent; resolves once all hold the snapshot (or gave up). */
async function connectPhase(m: Material, o: PhaseOptions): Promise<Phase> {
  const label = `${o.target} ${o.agents.toLocaleString('en-US')}`;
  // Agents round-robin over workers, each worker's share in a file of its own.
  const files: string[] = [];
  for (let w = 0; w < o.workers; w++) {
    const f = join(m.dir, `agents-${o.target}-${o.agents}-${w}.json`);
    const mine = m.agents.slice(0, o.agents).filter((_, i) => i % o.workers === w);
    writeFileSync(f, JSON.stringify({ trustDomain: TD, bundlePem: m.bundlePem, agents: mine } satisfies AgentFile));
    files.push(f);
  }
  const workers = new Workers(o.workers, o.target);
  const p = { o, label, workers, files } as Phase;
  const loadBefore = loadavg()[0]!;
  // Generous but bounded: on a busy host, handshakes have run at ~25/s (8 ms server CPU each).
  const setupTimeoutMs = 120_000 + o.agents * 100;
  const cpu0 = procStat(o.serverPid).cpuS;
  const t0 = performance.now();
  const progress = { at: performance.now() };
  const readyP = workers.collect(
    (x) => (x.ev === 'ready' ? x : undefined),
    setupTimeoutMs,
    `${label}: connection setup`,
    (_w, x) => {
      if (x.ev === 'progress' && performance.now() - progress.at > 10_000) {
        progress.at = performance.now();
        process.stdout.write(`  ${label}: connecting (${((performance.now() - t0) / 1000).toFixed(0)} s)\n`);
      }
    },
  );
  for (let w = 0; w < o.workers; w++) {
    workers.send(w, {
      cmd: 'connect',
      url: o.pushUrl,
      agentsFile: files[w]!,
      serverId: o.serverId,
      ratePerSecond: o.connectRate / o.workers,
      inflight: 16,
      heartbeatMs: HEARTBEAT_MS,
      connectTimeoutMs: 30_000,
    });
  }
  const ready: ReadyReport[] = await readyP;
  const setupS = (performance.now() - t0) / 1000;
  const setupCpuS = procStat(o.serverPid).cpuS - cpu0;
  const connected = ready.reduce((s, r) => s + r.connected, 0);
  const failed = ready.reduce((s, r) => s + r.failed, 0);
  const opens = ready.flatMap((r) => r.openMs).sort((a, b) => a - b);
  const firstError = ready.find((r) => r.firstError)?.firstError;
  process.stdout.write(`  ${label}: ${connected} connected, ${failed} failed in ${setupS.toFixed(1)} s${firstError ? ` (first error: ${firstError})` : ''}\n`);
  if (connected === 0) throw new Error(`${label}: no agent connected${firstError ? `: ${firstError}` : ''}`);
  const serverSees = await o.connectedCount();
  if (serverSees !== connected) process.stdout.write(`  ${label}: the server counts ${serverSees} agents, the workers ${connected}\n`);

  // Steady state: let stragglers' ACKs drain, then idle CPU over 2 s and memory.
  await sleep(1000);
  const idle0 = procStat(o.serverPid).cpuS;
  const i0 = performance.now();
  await sleep(2000);
  const idleCpuPerS = (procStat(o.serverPid).cpuS - idle0) / ((performance.now() - i0) / 1000);
  const mem = procMem(o.serverPid);

  // Clock skew between this process and the workers over IPC (min-RTT sample per worker).
  let skew = 0;
  for (let w = 0; w < o.workers; w++) {
    let best = { rtt: Infinity, off: 0 };
    for (let k = 0; k < 5; k++) {
      const t = wallNow();
      const r = await workers.clock(w, t);
      const t2 = wallNow();
      if (t2 - t < best.rtt) best = { rtt: t2 - t, off: r - (t + t2) / 2 };
    }
    skew = Math.max(skew, Math.abs(best.off));
  }
  return Object.assign(p, {
    base: {
      target: o.target,
      agents: o.agents,
      connected,
      failedConnections: failed,
      ...(firstError ? { firstError } : {}),
      setupS,
      connectionsPerS: connected / setupS,
      setupCpuS,
      openP50Ms: percentile(opens, 50),
      openP99Ms: percentile(opens, 99),
      rssMiB: mem.rssMiB,
      hwmMiB: mem.hwmMiB,
      idleCpuPerS,
      clockSkewMs: skew,
    },
    loadBefore,
    rounds: [],
    warmups: [],
    all: [],
    dropped: 0,
    serverErrors: 0,
    workersCpuRoundsS: 0,
  });
}

/** One round: arm every worker, T0, trigger, wait (bounded) for every agent's ACK time. */
async function runRound(p: Phase, r: number, warm: boolean): Promise<void> {
  const { o, label, workers } = p;
  const workersCpu = () => workers.procs.reduce((sum, c) => sum + (c.pid !== undefined && c.exitCode === null ? procStat(c.pid).cpuS : 0), 0);
  ensureAlive(o.serverPid);
  // The server's own count; this also keeps the admin connection warm, so T0 never pays a handshake.
  const serverAgents = await o.connectedCount();
  // Listen for reports before arming: a worker whose agents are all gone reports at once.
  const reports = workers.gather((x) => (x.ev === 'round' && x.round === r ? x : undefined));
  const armedP = workers.collect((x) => (x.ev === 'armed' && x.round === r ? x.agents : undefined), 10_000, `${label}: arm round ${r}`);
  workers.broadcast({ cmd: 'arm', round: r });
  const expected = (await armedP).reduce((s, n) => s + n, 0);
  const cpuR0 = procStat(o.serverPid).cpuS;
  const wCpu0 = workersCpu();
  const T0 = wallNow();
  const tReq = performance.now();
  const want = await o.trigger(r);
  const requestMs = performance.now() - tReq;
  if (!(await reports.wait(o.roundTimeoutMs))) {
    // Timed out: ask the workers still out for what they have.
    ensureAlive(o.serverPid);
    for (const w of reports.missing()) workers.send(w, { cmd: 'collect', round: r });
    if (!(await reports.wait(5000))) throw new Error(`${label}: round ${r}: workers ${reports.missing().join(', ')} did not report`);
  }
  const cpuS = procStat(o.serverPid).cpuS - cpuR0;
  if (!warm) p.workersCpuRoundsS += workersCpu() - wCpu0;
  const got = reports.done();
  const lat = got.flatMap((x) => x.times.map((t) => t - T0)).sort((a, b) => a - b);
  const versions = [...new Set(got.flatMap((x) => x.versions))];
  if (versions.length > 1) process.stdout.write(`  ${label}: round ${r}: agents reached several versions: ${versions.join(', ')}\n`);
  if (want !== undefined && versions.some((v) => !v.endsWith(want))) {
    throw new Error(`${label}: round ${r}: agents reported ${versions.join(', ')}, the apply wrote ${want}`);
  }
  p.dropped = Math.max(p.dropped, ...got.map((x) => x.dropped));
  p.serverErrors = Math.max(p.serverErrors, ...got.map((x) => x.errors));
  const missing = got.reduce((s, x) => s + x.missing, 0);
  if (!warm) p.all.push(...lat);
  const rr: RoundResult = {
    round: r,
    version: versions.join(','),
    agents: expected,
    serverAgents,
    acked: lat.length,
    missing,
    p50Ms: percentile(lat, 50),
    p99Ms: percentile(lat, 99),
    maxMs: lat[lat.length - 1] ?? NaN,
    lastAckMs: lat[lat.length - 1] ?? NaN,
    cpuS,
    requestMs,
  };
  (warm ? p.warmups : p.rounds).push(rr);
  process.stdout.write(
    `  ${label}: ${warm ? 'warm-up' : 'round'} ${r}: ${rr.acked}/${expected} acked, p50 ${rr.p50Ms.toFixed(1)} ms, p99 ${rr.p99Ms.toFixed(1)} ms, last ${rr.lastAckMs.toFixed(1)} ms, request ${requestMs.toFixed(1)} ms, CPU ${cpuS.toFixed(2)} s${missing ? `, ${missing} MISSING` : ''}\n`,
  );
}

function finishPhase(p: Phase): PhaseResult {
  const all = [...p.all].sort((a, b) => a - b);
  const lastAcks = p.rounds.map((x) => x.lastAckMs).sort((a, b) => a - b);
  return {
    ...p.base,
    rounds: p.rounds,
    warmupRounds: p.warmups,
    p50Ms: percentile(all, 50),
    p99Ms: percentile(all, 99),
    maxMs: all[all.length - 1] ?? NaN,
    lastAckMedianMs: percentile(lastAcks, 50),
    cpuRoundsS: p.rounds.reduce((s, x) => s + x.cpuS, 0),
    dropped: p.dropped,
    serverErrors: p.serverErrors,
    loadAvg: { before: p.loadBefore, after: loadavg()[0]! },
    workersCpuRoundsS: p.workersCpuRoundsS,
  };
}

async function closePhase(p: Phase): Promise<void> {
  await p.workers.close();
  for (const f of p.files) rmSync(f, { force: true });
}

/** Waits until the server counts at most `n` agents (the previous phase's sockets have closed). */
async function drained(count: () => Promise<number>, n: number, ms: number): Promise<void> {
  const deadline = performance.now() + ms;
  while (performance.now() < deadline) {
    if ((await count()) <= n) return;
    await sleep(250);
  }
}

// ---------------------------------------------------------------- output

function targetFor(agents: number): { upTo: number; p99Ms: number } | undefined {
  return TARGETS.find((t) => agents <= t.upTo);
}

function fmt(n: number, digits = 0): string {
  return Number.isFinite(n) ? n.toFixed(digits) : '-';
}

function table(rows: PhaseResult[]): string {
  const head = ['server', 'agents', 'setup s', 'p50 ms', 'p99 ms', 'max ms', 'last-ACK ms', 'CPU s', 'RSS MiB', 'load', 'p99 x ref', 'target', 'result'];
  const ref = (agents: number) => rows.find((r) => r.target === 'reference' && r.agents === agents);
  const body = rows.map((r) => {
    const t = targetFor(r.agents);
    const refRow = r.target === 'amime' ? ref(r.agents) : undefined;
    const pass = t ? r.p99Ms < t.p99Ms && r.rounds.every((x) => x.missing === 0) : undefined;
    return [
      r.target,
      r.agents.toLocaleString('en-US'),
      fmt(r.setupS, 1),
      fmt(r.p50Ms, 1),
      fmt(r.p99Ms, 1),
      fmt(r.maxMs, 1),
      fmt(r.lastAckMedianMs, 1),
      fmt(r.cpuRoundsS, 2),
      fmt(r.rssMiB, 0),
      fmt(Math.max(r.loadAvg.before, r.loadAvg.after), 1),
      refRow ? fmt(r.p99Ms / refRow.p99Ms, 1) : '',
      r.target === 'amime' && t ? `p99 < ${t.p99Ms} ms` : '',
      r.target === 'amime' && pass !== undefined ? (pass ? 'pass' : 'FAIL') : '',
    ];
  });
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 || i >= 11 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)].join('\n');
}

// ---------------------------------------------------------------- main

function parse(): {
  agents: number[];
  rounds: number;
  warmup: number;
  workers: number;
  spacingMs: number;
  connectRate: number;
  roundTimeoutMs: number;
  only: Target | undefined;
  out: string;
  keep: boolean;
} {
  let v;
  try {
    v = parseArgs({
      options: {
        agents: { type: 'string', default: '1000,5000' },
        rounds: { type: 'string', default: '5' },
        warmup: { type: 'string', default: '1' },
        workers: { type: 'string', default: '4' },
        'spacing-ms': { type: 'string', default: '1000' },
        'connect-rate': { type: 'string', default: '400' },
        'round-timeout-ms': { type: 'string', default: '30000' },
        only: { type: 'string' },
        out: { type: 'string', default: 'dist/bench/push.json' },
        keep: { type: 'boolean', default: false },
        help: { type: 'boolean', default: false },
      },
      strict: true,
    }).values;
  } catch (err) {
    console.error(`${(err as Error).message}\n${USAGE}`);
    process.exit(64);
  }
  if (v.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const int = (s: string, flag: string, min: number, max: number): number => {
    const n = Number(s);
    if (!Number.isInteger(n) || n < min || n > max) {
      console.error(`${flag} must be an integer from ${min} to ${max}, got ${JSON.stringify(s)}\n${USAGE}`);
      process.exit(64);
    }
    return n;
  };
  const agents = v.agents.split(',').map((s) => int(s.trim(), '--agents', 1, MAX_AGENTS));
  if (v.only !== undefined && v.only !== 'amime' && v.only !== 'reference') {
    console.error(`--only must be amime or reference\n${USAGE}`);
    process.exit(64);
  }
  return {
    agents,
    rounds: int(v.rounds, '--rounds', 1, 100),
    warmup: int(v.warmup, '--warmup', 0, 10),
    workers: int(v.workers, '--workers', 1, 32),
    spacingMs: int(v['spacing-ms'], '--spacing-ms', 0, 60_000),
    connectRate: int(v['connect-rate'], '--connect-rate', 1, 10_000),
    roundTimeoutMs: int(v['round-timeout-ms'], '--round-timeout-ms', 1000, 600_000),
    only: v.only as Target | undefined,
    out: resolve(root, v.out),
    keep: v.keep,
  };
}

async function main(): Promise<void> {
  const opts = parse();
  const dir = mkdtempSync(join(tmpdir(), 'amime-bench-push-'));
  let stopping = false;
  const cleanup = async () => {
    await stopAll();
    if (!opts.keep) rmSync(dir, { recursive: true, force: true });
  };
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      if (stopping) return;
      stopping = true;
      console.error(`\n${sig}: stopping ${children.size} child process(es)`);
      void cleanup().finally(() => process.exit(130));
    });
  }
  const results: PhaseResult[] = [];
  let mintS = NaN;
  let caUrl = '';
  let cpUrl = '';
  let refUrl = '';
  try {
    const maxN = Math.max(...opts.agents);
    const tm = performance.now();
    console.log(`setting up in ${dir}: operator root, plug-in CA, ${maxN.toLocaleString('en-US')} agent SVIDs...`);
    const m = makeMaterial(dir, maxN);
    mintS = (performance.now() - tm) / 1000;

    const ca = await serveProcess('ca', CA_MAIN, ['serve', '--dir', join(dir, 'ca'), '--port', '0'], 'listening', 60_000);
    caUrl = String(ca.line['url']);
    const cp = await serveProcess(
      'control-plane',
      CP_MAIN,
      ['serve', '--dir', join(dir, 'cp'), '--ca', caUrl, '--credentials', join(dir, 'ca', 'admin'), '--port', '0', '--metrics-port', '0', '--heartbeat', `${HEARTBEAT_MS}ms`],
      'serving',
      90_000,
    );
    cpUrl = String(cp.line['url']);
    const ref = await serveProcess(
      'reference',
      REFERENCE,
      ['--cert', m.refCertFile, '--key', m.refKeyFile, '--ca', m.bundleFile, '--route', writeRoute(dir)],
      'serving',
      60_000,
    );
    refUrl = String(ref.line['url']);
    console.log(`CA ${caUrl} (pid ${ca.child.pid}), control plane ${cpUrl} (pid ${cp.child.pid}), reference ${refUrl} (pid ${ref.child.pid})`);

    const cpAdmin = client(cpUrl, m.adminCred, CP_ID);
    const refAdmin = client(refUrl, m.adminCred, REF_ID);
    // The Route exists before agents connect, so the snapshot carries it and every round is an update.
    const created = await cpAdmin.request('POST', '/v1/resources', route(0));
    if (created.status !== 200) throw new Error(`creating the Route: ${created.status} ${JSON.stringify(created.json)}`);
    const cpCount = async () => Number(((await cpAdmin.request('GET', '/v1/status')).json['agents'] as number | undefined) ?? NaN);
    const refCount = async () => Number(((await refAdmin.request('GET', '/v1/status')).json['agents'] as number | undefined) ?? NaN);
    let roundSeq = 0;
    const cpTrigger = async (): Promise<string> => {
      const r = await cpAdmin.request('POST', '/v1/resources', route(++roundSeq));
      const res = (r.json['results'] as { version?: string; action?: string }[] | undefined)?.[0];
      if (r.status !== 200 || !res?.version || res.action !== 'configured') throw new Error(`apply: ${r.status} ${JSON.stringify(r.json).slice(0, 500)}`);
      // The Route type's version is <epoch>-<store revision>; the apply reports the revision.
      return `-${res.version}`;
    };
    const refTrigger = async (): Promise<undefined> => {
      const r = await refAdmin.request('POST', '/v1/broadcast', route(0));
      if (r.status !== 200) throw new Error(`broadcast: ${r.status}`);
      return undefined;
    };

    console.log(`${cpus().length} core(s) (${cpus()[0]?.model ?? 'unknown CPU'}), ${opts.workers} agent workers, ${opts.warmup} warm-up + ${opts.rounds} rounds ${opts.spacingMs} ms apart\n`);
    const targets = (['amime', 'reference'] as const).filter((t) => !opts.only || opts.only === t);
    for (const n of opts.agents) {
      const phases: Phase[] = [];
      try {
        // Both servers hold their N agents at once and their rounds alternate (order flipped
        // each round), so load from elsewhere on the host hits both alike.
        for (const target of targets) {
          const isCp = target === 'amime';
          const count = isCp ? cpCount : refCount;
          await drained(count, 0, 30_000);
          phases.push(
            await connectPhase(m, {
              target,
              agents: n,
              workers: Math.min(opts.workers, n),
              connectRate: opts.connectRate,
              roundTimeoutMs: opts.roundTimeoutMs,
              pushUrl: `${(isCp ? cpUrl : refUrl).replace('https:', 'wss:')}/v1/push`,
              serverId: isCp ? CP_ID : REF_ID,
              serverPid: (isCp ? cp : ref).child.pid!,
              trigger: isCp ? cpTrigger : refTrigger,
              connectedCount: count,
            }),
          );
        }
        const total = opts.warmup + opts.rounds;
        for (let r = 1; r <= total; r++) {
          const order = r % 2 === 1 ? phases : [...phases].reverse();
          for (const p of order) {
            await runRound(p, r, r <= opts.warmup);
            await sleep(opts.spacingMs);
          }
        }
        for (const p of phases) results.push(finishPhase(p));
      } finally {
        for (const p of phases) await closePhase(p);
      }
    }
    cpAdmin.close();
    refAdmin.close();

    console.log(`\n${table(results)}\n`);
    console.log('p50/p99/max over all agent-rounds: admin request sent (T0) -> agent sent its ACK of the new Route version');
    console.log('last-ACK = median over rounds of the time to the last agent\'s ACK; CPU s = server CPU summed over the rounds (T0 -> all ACKs in)');
    console.log('RSS = server VmRSS with every agent connected and synced; reference = bare WSS broadcast, same TLS, no protocol logic');
    console.log(`load = host 1-min load average (max of before/after the phase) on ${cpus().length} core(s): above the core count, other work competed for the CPU`);

    writeReport(opts, results, mintS);
  } catch (err) {
    if (results.length > 0) writeReport(opts, results, mintS, (err as Error).message);
    throw err;
  } finally {
    if (!stopping) await cleanup();
  }
}

/** dist/bench/push.json; after a failure, with what was measured so far and the error. */
function writeReport(opts: ReturnType<typeof parse>, results: PhaseResult[], mintS: number, error?: string): void {
  const out = opts.out;
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(
    out,
    `${JSON.stringify(
      {
        generatedAt: new Date().toISOString(),
        ...(error ? { error, partial: true } : {}),
        node: process.version,
        cpu: { model: cpus()[0]?.model ?? 'unknown', cores: cpus().length },
        options: { agents: opts.agents, rounds: opts.rounds, warmupRounds: opts.warmup, workers: opts.workers, spacingMs: opts.spacingMs, connectRate: opts.connectRate, roundTimeoutMs: opts.roundTimeoutMs, heartbeatMs: HEARTBEAT_MS },
        setup: { mintS, svids: Math.max(...opts.agents) },
        targets: TARGETS,
        results: results.map((r) => {
          const t = targetFor(r.agents);
          const refRow = results.find((x) => x.target === 'reference' && x.agents === r.agents);
          return {
            ...r,
            ...(r.target === 'amime' && refRow ? { p99RatioToReference: r.p99Ms / refRow.p99Ms, p50RatioToReference: r.p50Ms / refRow.p50Ms } : {}),
            ...(r.target === 'amime' && t ? { goal: { p99Ms: t.p99Ms, met: r.p99Ms < t.p99Ms && r.rounds.every((x) => x.missing === 0) } } : {}),
          };
        }),
      },
      null,
      2,
    )}\n`,
  );
  console.log(`wrote ${out}`);
}

function writeRoute(dir: string): string {
  const f = join(dir, 'route.json');
  writeFileSync(f, JSON.stringify(route(0)));
  return f;
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
