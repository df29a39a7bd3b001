// The node agent, wired from its parts: identity (SVIDs, trust, revocation),
// config (push client → validated MeshState → compiled MeshRuntime, last good
// copy on disk), the inbound mTLS port, the outbound listeners, health checks
// and registration, and the admin port. Start order makes the agent useful as
// early as possible: with a stored SVID and last good config it serves even
// when the control plane is unreachable.
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { bundleToPem, trustDomainFromPem } from '@amime/identity';
import { MONITOR_DEFAULTS, RESOURCE_TYPES, durationMs, type HeldSvid, type Instance, type HealthState } from '@amime/protocol';
import { HealthChecker, PushClient } from '@amime/protocol/client';
import type { AgentConfig, WorkloadConfig } from './config/agent-config.js';
import { LastGoodConfig } from './config/last-good.js';
import { IdentityManager, type IdentityLogger } from './identity/index.js';
import { ConfigApplier } from './mesh/config-applier.js';
import type { MeshRuntime } from './mesh/mesh-runtime.js';
import { createAgentMetrics, type AgentMetrics } from './metrics.js';
import { startAdminServer, type AdminServer } from './admin-server.js';
import { startInbound, type Inbound } from './inbound.js';
import { startOutbound, type Outbound } from './outbound.js';
import { openAccessLog, type AccessLog } from './access-log.js';
import { OtlpExporter, spanOf } from './otlp.js';
import { EdgeReporter } from './edge-reporter.js';
import { TapHub } from './tap.js';

export type AgentLog = (event: Record<string, unknown>) => void;

export interface StartAgentOptions {
  config: AgentConfig;
  /** One-time join token; needed only when no usable agent SVID is stored. */
  token?: string;
  log?: AgentLog;
}

export interface RunningAgent {
  readonly node: string;
  readonly adminUrl: string;
  readonly inboundPort: number;
  /** Bound outbound listeners: workload service, upstream service (or '*' for the HTTP proxy), port. */
  readonly listeners: readonly { workload: string; upstream: string; port: number }[];
  readonly identity: IdentityManager;
  readonly runtime: MeshRuntime;
  readonly metrics: AgentMetrics;
  /** Stops accepting, lets open requests finish for up to drainMs, then closes everything. */
  stop(drainMs?: number): Promise<void>;
}

export async function startAgent(opts: StartAgentOptions): Promise<RunningAgent> {
  const { config } = opts;
  const log: AgentLog = opts.log ?? ((e) => process.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), component: 'agent', ...e })}\n`));
  let bundlePem: string;
  try {
    bundlePem = readFileSync(config.ca.bundle, 'utf8');
  } catch (err) {
    throw new Error(`cannot read the trust bundle ${config.ca.bundle} (ca.bundle): ${(err as Error).message}`);
  }
  const trustDomain = trustDomainFromPem(bundlePem);
  if (!trustDomain) throw new Error(`the trust bundle ${config.ca.bundle} has no root with a spiffe:// URI SAN; use the bundle the CA serves`);

  // 1. Identity: the stored SVID, or a join with the token; then workload SVIDs.
  const identityLog: IdentityLogger = (f) => log({ ...f, component: 'agent-identity' });
  const identity = new IdentityManager({
    dir: config.dataDir,
    caUrl: config.ca.url,
    bundlePem,
    node: config.node,
    ...(opts.token !== undefined && { token: opts.token }),
    workloads: config.workloads.map((w) => w.identity),
    trustDomain,
    log: identityLog,
  });
  await identity.start();
  // Pushes carry trust changes; this poll of the CA covers a control plane that is down.
  const caRefresh = setInterval(() => identity.refresh().catch(() => undefined), CA_REFRESH_MS);
  caRefresh.unref();
  const agentId = `spiffe://${trustDomain}/agent/${config.node}`;

  // 2. The last good config, so the data plane serves before (or without) the control plane.
  const lastGood = new LastGoodConfig(config.dataDir);
  const loaded = await lastGood.load();
  if (loaded.problem) log({ level: 'warn', event: 'last_good_config_ignored', problem: loaded.problem });
  const applier = new ConfigApplier({
    held: loaded.config,
    trustDomain,
    ...(config.zone !== undefined && { localZone: config.zone }),
    trust: identity,
    save: (h) => lastGood.save(h),
    onRevocations: (set) => {
      const closed = inbound.closeRevoked(set) + outbound.closeRevoked(set);
      if (closed > 0) {
        metrics.revokedClosed.inc(closed);
        log({ level: 'info', event: 'revoked_connections_closed', count: closed });
      }
    },
    log,
  });
  const runtime = applier.runtime;

  let admin: AdminServer | undefined = undefined;
  const push: PushClient = new PushClient({
    url: config.controlPlane.url,
    node: config.node,
    credential: () => {
      const c = identity.credential(agentId);
      return { certPem: c.certPem, keyPem: c.keyPem, bundlePem: currentBundlePem(identity, bundlePem) };
    },
    revocations: () => identity.revocations(),
    initial: applier.held,
    apply: (u) => applier.apply(u),
    heartbeatMs: durationMs(config.controlPlane.heartbeat),
    // Read at every hello: the admin port is bound later.
    metrics: () => (admin ? metricsAddress(config.admin.address, config.inbound.advertise, Number(new URL(admin.url).port)) : undefined),
    log: (e) => log({ component: 'agent-push', ...e }),
  });
  // Traffic per edge for the control plane's communication-pattern monitor, at MeshConfig's interval.
  const reportInterval = () => durationMs(runtime.state.mesh.monitor?.reportInterval ?? MONITOR_DEFAULTS.reportInterval);
  const edges = new EdgeReporter({ send: (r) => push.sendReport(r), intervalMs: reportInterval(), log });
  const followInterval = setInterval(() => {
    if (edges.intervalMs !== reportInterval()) edges.setInterval(reportInterval());
  }, 5000);
  followInterval.unref();
  push.on('rejected', (r) => {
    metrics.configRejected.inc({ type: r.resourceType });
    log({ level: 'warn', event: 'config_rejected', type: r.resourceType, version: r.version, error: r.error });
  });
  push.on('server_error', (e) => log({ level: 'warn', event: 'control_plane_error', code: e.code, message: e.message }));
  // Live taps (meshctl tap): opened and ended by the control plane; dropped with the connection (it re-sends live ones).
  const taps = new TapHub({ node: config.node, send: (f) => push.sendTapEvents(f), log: (e) => log({ component: 'agent-tap', ...e }) });
  push.on('tap', (m) => taps.open(m));
  push.on('untap', (m) => taps.close(m.id));
  push.on('disconnected', () => taps.clear());
  push.on('connected', (c) => log({ level: 'info', event: 'control_plane_connected', server: c.serverId }));
  push.on('disconnected', (d) => log({ level: d.wasConnected ? 'warn' : 'info', event: 'control_plane_disconnected', reason: d.reason, message: d.message, retryInMs: d.retryInMs }));

  const metrics = createAgentMetrics({
    controlPlaneConnected: () => push.connected,
    versions: () => runtime.state.versions,
    certificates: () => identity.certificateExpiries(),
  });
  runtime.onEjection((service, n) => metrics.ejections.inc({ service }, n));
  // Every series from the start: a counter first seen at 1 shows no increase to rate() or alerts.
  for (const type of RESOURCE_TYPES) metrics.configRejected.inc({ type }, 0);

  // 4. Data plane: inbound mTLS port, outbound listeners.
  // What each request and stream leaves behind: an access log line and, with a collector configured, a span.
  const accessLog = config.accessLog ? await openAccessLog(config.accessLog.path) : undefined;
  const spans = config.tracing ? new OtlpExporter({ endpoint: config.tracing.otlpEndpoint, resource: { 'service.name': 'amime-agent', 'host.name': config.node } }) : undefined;
  const access: AccessLog | undefined =
    accessLog || spans
      ? {
          log: (r) => {
            accessLog?.log(r);
            const span = spans && spanOf(r);
            if (span) spans!.add(span);
          },
          close: async () => {
            await accessLog?.close();
            await spans?.close();
          },
        }
      : undefined;
  const inbound: Inbound = await startInbound({ config, identity, runtime: () => runtime, metrics, log, access, edges, taps });
  const outbound: Outbound = await startOutbound({ config, identity, runtime: () => runtime, metrics, log, access, taps });

  // 5. Registration, with health from active checks where configured.
  const health = new Map<string, HealthState>();
  const instances = (): Instance[] =>
    config.workloads.map((w) => ({
      service: w.service,
      namespace: w.namespace,
      identity: w.identity,
      address: config.inbound.advertise,
      port: inbound.port,
      ...(config.zone !== undefined && { zone: config.zone }),
      ...(w.labels && { labels: w.labels }),
      health: health.get(key(w)) ?? 'healthy',
    }));
  const checker = new HealthChecker({
    onChange: (k, state) => {
      health.set(k, state);
      log({ level: state === 'healthy' ? 'info' : 'warn', event: 'workload_health', workload: k, state });
      push.register(instances(), heldSvids(identity));
    },
    log: (e) => log({ component: 'agent-health', ...e }),
  });
  checker.set(
    config.workloads.flatMap((w) =>
      w.check ? [{ key: key(w), host: w.address, port: w.port, kind: w.check.http !== undefined ? ('http' as const) : ('tcp' as const), ...(w.check.http !== undefined && { path: w.check.http }) }] : [],
    ),
  );
  push.register(instances(), heldSvids(identity));
  // Renewed SVIDs go with the next registration, so operators see current expiries; a burst of renewals sends one.
  let svidsTimer: NodeJS.Timeout | undefined;
  identity.on('rotated', () => {
    svidsTimer ??= setTimeout(() => {
      svidsTimer = undefined;
      push.register(instances(), heldSvids(identity));
    }, 200).unref();
  });
  push.start();
  edges.start();

  // 6. Admin port.
  const started = performance.now();
  admin = await startAdminServer(config.admin.address, config.admin.port, {
    registry: metrics.registry,
    ready: () => {
      const reasons: string[] = [];
      if (identity.list().some((c) => c.state !== 'ready')) reasons.push('an SVID is not ready');
      if (!push.connected && Object.keys(applier.held).length === 0) reasons.push('no config yet: the control plane has not been reached and no last good config is stored');
      return { ready: reasons.length === 0, reasons };
    },
    configDump: () => ({
      node: config.node,
      uptimeSeconds: Math.round((performance.now() - started) / 1000),
      controlPlane: { url: config.controlPlane.url, connected: push.connected },
      versions: runtime.state.versions,
      resources: Object.fromEntries(RESOURCE_TYPES.filter((t) => t !== 'TrustBundle' && t !== 'RevocationList').map((t) => [t, applier.held[t]?.resources ?? []])),
      balancers: runtime.balancerStats(),
      listeners: outbound.listeners,
      inboundPort: inbound.port,
      workloads: config.workloads.map((w) => ({ service: w.service, namespace: w.namespace, identity: w.identity, health: health.get(key(w)) ?? 'unknown' })),
    }),
    certificates: () => identity.list(),
  });
  log({ level: 'info', event: 'agent_started', node: config.node, inbound: inbound.port, admin: admin.url, listeners: outbound.listeners });

  let stopping: Promise<void> | undefined;
  return {
    node: config.node,
    adminUrl: admin.url,
    inboundPort: inbound.port,
    listeners: outbound.listeners,
    identity,
    runtime,
    metrics,
    stop: (drainMs = 5000) =>
      (stopping ??= (async () => {
        clearInterval(caRefresh);
        clearInterval(followInterval);
        clearTimeout(svidsTimer);
        edges.stop();
        taps.clear();
        checker.stop();
        await Promise.all([outbound.drain(drainMs), inbound.drain(drainMs)]);
        await push.stop();
        await identity.stop();
        await admin?.close();
        await access?.close();
      })()),
  };
}

/** "host:port" where Prometheus reaches this agent's /metrics: the admin address, or the advertised one when it listens on all. */
function metricsAddress(adminAddress: string, advertise: string, port: number): string {
  const host = adminAddress === '0.0.0.0' || adminAddress === '::' ? advertise : adminAddress;
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** How often the agent also asks the CA for its bundle and revocation list (the CA's refresh hint is 5 min). */
const CA_REFRESH_MS = 300_000;

const key = (w: WorkloadConfig) => `${w.namespace}/${w.service}`;

/** The SVIDs this agent holds (its own, then its workloads'), for the control plane's certificate view. */
function heldSvids(identity: IdentityManager): HeldSvid[] {
  return identity.list().flatMap((c) => (c.serialHex && c.notBefore && c.notAfter ? [{ spiffeId: c.spiffeId, serial: c.serialHex, notBefore: c.notBefore.toISOString(), notAfter: c.notAfter.toISOString() }] : []));
}

/** The roots in use now (the CA's or a pushed TrustBundle), falling back to the install's. */
function currentBundlePem(identity: IdentityManager, fallback: string): string {
  try {
    return bundleToPem(identity.bundle());
  } catch {
    return fallback;
  }
}
