// Active health checks the agent runs against its local instances: a TCP
// connect, or an HTTP GET where 2xx/3xx is healthy. Results pass through
// thresholds (N passes in a row to become healthy, M failures to become
// unhealthy) so one slow answer does not flap the registry; onChange fires
// only on a transition. The first result decides the initial state at once,
// so a fresh agent reports its instances without waiting for a threshold.
//
// Checks of one target never overlap (the next is scheduled intervalMs after
// one ends, so a timeout longer than the interval is harmless),
// every probe has its own timeout, and nothing here throws into a timer or
// socket callback.

import net from 'node:net';
import http from 'node:http';
import type { HealthState } from '../resources.js';

export interface HealthCheckTarget {
  /** Caller's identity for the instance, passed back to onChange. */
  key: string;
  host: string;
  port: number;
  kind: 'tcp' | 'http';
  /** HTTP path to GET. Default '/'. */
  path?: string;
  /** Default from the checker (10 s). */
  intervalMs?: number;
  /** Default from the checker (2 s). */
  timeoutMs?: number;
  /** Passes in a row to turn healthy. Default from the checker (2). */
  healthyThreshold?: number;
  /** Failures in a row to turn unhealthy. Default from the checker (3). */
  unhealthyThreshold?: number;
}

export interface HealthCheckDefaults {
  intervalMs: number;
  timeoutMs: number;
  healthyThreshold: number;
  unhealthyThreshold: number;
}

export interface HealthCheckerOptions {
  onChange: (key: string, state: HealthState) => void;
  defaults?: Partial<HealthCheckDefaults>;
  /** Most targets accepted. Default 256 (the most instances one register carries). */
  maxTargets?: number;
  log?(event: Record<string, unknown>): void;
}

export const DEFAULT_HEALTH_CHECK: HealthCheckDefaults = { intervalMs: 10_000, timeoutMs: 2000, healthyThreshold: 2, unhealthyThreshold: 3 };
export const DEFAULT_MAX_HEALTH_TARGETS = 256;
const USER_AGENT = 'amime-agent-health-check/1';

interface Probe {
  readonly target: Required<Omit<HealthCheckTarget, 'path'>> & { path: string };
  /** Identity of the probe settings: a changed target restarts, an unchanged one keeps its state. */
  readonly spec: string;
  state: HealthState | undefined;
  passes: number;
  failures: number;
  timer: NodeJS.Timeout | undefined;
  cancel: (() => void) | undefined;
  stopped: boolean;
}

export class HealthChecker {
  readonly #onChange: HealthCheckerOptions['onChange'];
  readonly #defaults: HealthCheckDefaults;
  readonly #maxTargets: number;
  readonly #log: HealthCheckerOptions['log'];
  readonly #probes = new Map<string, Probe>();
  #stopped = false;

  constructor(opts: HealthCheckerOptions) {
    if (typeof opts.onChange !== 'function') throw new TypeError('health checker: onChange must be a function');
    this.#onChange = opts.onChange;
    this.#defaults = { ...DEFAULT_HEALTH_CHECK, ...opts.defaults };
    this.#maxTargets = opts.maxTargets ?? DEFAULT_MAX_HEALTH_TARGETS;
    this.#log = opts.log;
    checkSettings(this.#defaults, 'defaults');
    if (!(Number.isSafeInteger(this.#maxTargets) && this.#maxTargets > 0)) throw new RangeError(`health checker: maxTargets must be a positive integer, got ${this.#maxTargets}`);
  }

  /**
   * Replaces the set of targets. Unchanged targets keep running with their
   * state; new or changed ones start with a check now; missing ones stop.
   * Throws (changing nothing) on an invalid target.
   */
  set(targets: readonly HealthCheckTarget[]): void {
    if (this.#stopped) throw new Error('health checker: stopped; create a new one');
    if (targets.length > this.#maxTargets) throw new RangeError(`health checker: ${targets.length} targets, more than maxTargets ${this.#maxTargets}`);
    const next = new Map<string, Probe['target']>();
    for (const t of targets) {
      if (next.has(t.key)) throw new Error(`health checker: key ${JSON.stringify(t.key)} is repeated; give every target its own key`);
      next.set(t.key, this.#resolve(t));
    }
    for (const [key, probe] of this.#probes) {
      const target = next.get(key);
      if (!target || specOf(target) !== probe.spec) {
        halt(probe);
        this.#probes.delete(key);
      }
    }
    for (const [key, target] of next) {
      if (this.#probes.has(key)) continue;
      const probe: Probe = { target, spec: specOf(target), state: undefined, passes: 0, failures: 0, timer: undefined, cancel: undefined, stopped: false };
      this.#probes.set(key, probe);
      this.#check(probe);
    }
  }

  /** The current state of a target; undefined before its first result. */
  status(key: string): HealthState | undefined {
    return this.#probes.get(key)?.state;
  }

  get size(): number {
    return this.#probes.size;
  }

  /** Stops every timer and aborts every probe in progress. */
  stop(): void {
    this.#stopped = true;
    for (const probe of this.#probes.values()) halt(probe);
    this.#probes.clear();
  }

  #resolve(t: HealthCheckTarget): Probe['target'] {
    const where = `target ${JSON.stringify(t.key)}`;
    if (typeof t.key !== 'string' || t.key.length === 0) throw new TypeError('health checker: every target needs a non-empty key');
    if (t.kind !== 'tcp' && t.kind !== 'http') throw new TypeError(`health checker: ${where} kind must be "tcp" or "http", got ${JSON.stringify(t.kind)}`);
    if (typeof t.host !== 'string' || t.host.length === 0) throw new TypeError(`health checker: ${where} needs a host`);
    if (!(Number.isInteger(t.port) && t.port >= 1 && t.port <= 65535)) throw new RangeError(`health checker: ${where} port must be 1-65535, got ${t.port}`);
    const path = t.path ?? '/';
    if (!/^\/[\x21-\x7e]*$/.test(path) || path.length > 1024) throw new TypeError(`health checker: ${where} path must start with "/" and be printable ASCII without spaces`);
    const settings: HealthCheckDefaults = {
      intervalMs: t.intervalMs ?? this.#defaults.intervalMs,
      timeoutMs: t.timeoutMs ?? this.#defaults.timeoutMs,
      healthyThreshold: t.healthyThreshold ?? this.#defaults.healthyThreshold,
      unhealthyThreshold: t.unhealthyThreshold ?? this.#defaults.unhealthyThreshold,
    };
    checkSettings(settings, where);
    return { key: t.key, host: t.host, port: t.port, kind: t.kind, path, ...settings };
  }

  #check(probe: Probe): void {
    probe.timer = undefined;
    if (probe.stopped) return;
    const run = probe.target.kind === 'tcp' ? tcpProbe : httpProbe;
    let done = false;
    const finish = (ok: boolean, detail: string) => {
      if (done) return;
      done = true;
      probe.cancel = undefined;
      if (probe.stopped) return;
      this.#record(probe, ok, detail);
      if (probe.stopped) return;
      probe.timer = setTimeout(() => this.#check(probe), probe.target.intervalMs);
    };
    try {
      probe.cancel = run(probe.target, finish);
    } catch (err) {
      finish(false, (err as Error).message);
    }
  }

  #record(probe: Probe, ok: boolean, detail: string): void {
    const t = probe.target;
    if (ok) {
      probe.passes++;
      probe.failures = 0;
    } else {
      probe.failures++;
      probe.passes = 0;
    }
    let next: HealthState | undefined;
    if (probe.state === undefined) next = ok ? 'healthy' : 'unhealthy';
    else if (probe.state === 'unhealthy' && ok && probe.passes >= t.healthyThreshold) next = 'healthy';
    else if (probe.state === 'healthy' && !ok && probe.failures >= t.unhealthyThreshold) next = 'unhealthy';
    if (next === undefined || next === probe.state) return;
    probe.state = next;
    this.#log?.({ event: 'health_check_changed', key: t.key, state: next, detail });
    try {
      this.#onChange(t.key, next);
    } catch (err) {
      this.#log?.({ event: 'health_check_listener_failed', key: t.key, error: (err as Error).message });
    }
  }
}

function checkSettings(s: HealthCheckDefaults, where: string): void {
  for (const name of ['intervalMs', 'timeoutMs', 'healthyThreshold', 'unhealthyThreshold'] as const) {
    const v = s[name];
    if (!(Number.isSafeInteger(v) && v > 0)) throw new RangeError(`health checker: ${where} ${name} must be a positive integer, got ${v}`);
  }
}

function specOf(t: Probe['target']): string {
  return `${t.kind} ${t.host} ${t.port} ${t.path} ${t.intervalMs} ${t.timeoutMs} ${t.healthyThreshold} ${t.unhealthyThreshold}`;
}

function halt(probe: Probe): void {
  probe.stopped = true;
  if (probe.timer) clearTimeout(probe.timer);
  probe.timer = undefined;
  probe.cancel?.();
  probe.cancel = undefined;
}

type Finish = (ok: boolean, detail: string) => void;

/** Healthy when a TCP connection is established within the timeout. */
function tcpProbe(t: Probe['target'], finish: Finish): () => void {
  const socket = net.connect({ host: t.host, port: t.port });
  const timer = setTimeout(() => {
    socket.destroy();
    finish(false, `no connection within ${t.timeoutMs} ms`);
  }, t.timeoutMs);
  socket.once('connect', () => {
    clearTimeout(timer);
    socket.destroy();
    finish(true, 'connected');
  });
  // `on`, not `once`: a destroyed socket may report a second error, which must not go unhandled.
  socket.on('error', (err) => {
    clearTimeout(timer);
    socket.destroy();
    finish(false, err.message);
  });
  return () => {
    clearTimeout(timer);
    socket.destroy();
  };
}

/** Healthy on a 2xx or 3xx status within the timeout; the body is not read. */
function httpProbe(t: Probe['target'], finish: Finish): () => void {
  const req = http.request({
    host: t.host,
    port: t.port,
    path: t.path,
    method: 'GET',
    // A fresh connection per check: a pooled one could hide a dead listener.
    agent: false,
    headers: { 'user-agent': USER_AGENT, connection: 'close' },
  });
  const timer = setTimeout(() => {
    req.destroy();
    finish(false, `no response within ${t.timeoutMs} ms`);
  }, t.timeoutMs);
  req.once('response', (res) => {
    clearTimeout(timer);
    const status = res.statusCode ?? 0;
    res.on('error', () => undefined);
    res.destroy();
    req.destroy();
    finish(status >= 200 && status < 400, `status ${status}`);
  });
  req.on('error', (err) => {
    clearTimeout(timer);
    finish(false, err.message);
  });
  req.end();
  return () => {
    clearTimeout(timer);
    req.destroy();
  };
}
