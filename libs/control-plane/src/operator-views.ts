// What operators read about the mesh beyond its resources (docs/api/control-plane.md):
// every registered instance (GET /v1/endpoints), every certificate with its
// expiry (GET /v1/certs) and what the control plane holds for one node
// (GET /v1/agents/:node/config). Built per request from the cache and the
// push sessions; nothing here is on the push path.
import { X509Certificate } from 'node:crypto';
import type { ParsedCertificate } from '@amime/identity';
import { RESOURCE_TYPES, type EndpointResource, type HeldSvid, type Resource, type ResourceType } from '@amime/protocol';
import type { PushSession, PushSessionStatus } from '@amime/protocol/server';

/** One registered instance (an Endpoint resource, flattened). */
export interface EndpointView {
  service: string;
  namespace: string;
  node: string;
  identity: string;
  address: string;
  port: number;
  zone?: string;
  labels?: Record<string, string>;
  health: 'healthy' | 'unhealthy';
  /** Why it is unhealthy: check_failed or heartbeat_lapsed. */
  reason?: string;
}

/** One certificate of GET /v1/certs. Times are ISO 8601; serials lowercase hex; fingerprint SHA-256 as AA:BB:... */
export interface CertEntry {
  /** The X.509 subject (roots, intermediates). */
  subject?: string;
  /** The URI SAN (SVIDs; roots carry the trust domain's). */
  spiffeId?: string;
  serial: string;
  notBefore: string;
  notAfter: string;
  fingerprint?: string;
  /** The node that holds it (agent and workload SVIDs). */
  node?: string;
  /** Intermediates: the agents whose connection presented it. */
  nodes?: string[];
  /**
   * Where the control plane learnt of it: `bundle` (its trust bundle),
   * `connection` (the agent's mTLS push connection), `reported` (the agent's
   * registration), `control-plane` (its own SVID's chain).
   */
  source: 'bundle' | 'connection' | 'reported' | 'control-plane';
}

export interface CertInventory {
  /** When the inventory was taken (the control plane's clock). */
  time: string;
  roots: CertEntry[];
  intermediates: CertEntry[];
  agents: CertEntry[];
  workloads: CertEntry[];
}

/** An agent session's SVID as seen on its push connection, and the certificates above it (root excluded). */
export interface PeerCertificates {
  svid?: { spiffeId: string; serial: string; notBefore: string; notAfter: string; fingerprint: string };
  intermediates?: CertEntry[];
}

export interface AgentConfigDump {
  node: string;
  spiffeId: string;
  address: string;
  connectedAt: string;
  /** When this dump was taken. */
  time: string;
  svid?: PeerCertificates['svid'];
  /**
   * Per subscribed resource type: the version the control plane would push
   * (current), the one the agent acked, the push in flight, the last NACK,
   * and the resources at the current version (what a push brings the agent to).
   */
  types: Record<string, { version: string; acked?: string; inFlight?: string; nack?: { version: string; error: string; at: string }; inSync: boolean; count: number; resources: readonly Resource[] }>;
  /** Its registered instances. */
  instances: EndpointView[];
}

/** Most intermediates listed; a mesh has one or two (two during a rotation). */
const MAX_INTERMEDIATES = 64;
/** Most nodes named per intermediate; the count says the rest. */
const MAX_NODES_PER_INTERMEDIATE = 100;

export function endpointView(e: EndpointResource): EndpointView {
  const s = e.spec;
  return {
    service: s.service,
    namespace: e.metadata.namespace,
    node: s.node,
    identity: s.identity,
    address: s.address,
    port: s.port,
    ...(s.zone !== undefined && { zone: s.zone }),
    ...(e.metadata.labels && { labels: e.metadata.labels }),
    health: s.health,
    ...(s.reason !== undefined && { reason: s.reason }),
  };
}

/** Endpoint resources as views, filtered, sorted by namespace, service, node, address, port. */
export function endpointViews(resources: readonly Resource[], filter: { service?: string; namespace?: string; node?: string } = {}): EndpointView[] {
  const out: EndpointView[] = [];
  for (const r of resources) {
    if (r.kind !== 'Endpoint') continue;
    if (filter.namespace !== undefined && r.metadata.namespace !== filter.namespace) continue;
    if (filter.service !== undefined && r.spec.service !== filter.service) continue;
    if (filter.node !== undefined && r.spec.node !== filter.node) continue;
    out.push(endpointView(r));
  }
  const key = (e: EndpointView) => [e.namespace, e.service, e.node, e.address, String(e.port).padStart(5, '0')].join('\0');
  return out.sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
}

/** A certificate as a CertEntry. */
export function certEntry(cert: ParsedCertificate, source: CertEntry['source'], extra: Partial<CertEntry> = {}): CertEntry {
  const x = new X509Certificate(cert.der);
  const spiffeId = cert.uris.find((u) => u.startsWith('spiffe://'));
  return {
    subject: x.subject.replace(/\n/g, ', '),
    ...(spiffeId !== undefined && { spiffeId }),
    serial: cert.serialHex,
    notBefore: cert.notBefore.toISOString(),
    notAfter: cert.notAfter.toISOString(),
    fingerprint: x.fingerprint256,
    source,
    ...extra,
  };
}

const isSelfSigned = (c: ParsedCertificate): boolean => c.issuerDer.equals(c.subjectDer);

/** A session's peer SVID and the intermediates of its chain (roots are listed from the bundle). */
export function peerCertificates(session: Pick<PushSession, 'node' | 'certificates'> | undefined): PeerCertificates {
  const leaf = session?.certificates[0];
  if (!session || !leaf) return {};
  const e = certEntry(leaf, 'connection');
  return {
    svid: { spiffeId: e.spiffeId ?? '', serial: e.serial, notBefore: e.notBefore, notAfter: e.notAfter, fingerprint: e.fingerprint! },
    intermediates: session.certificates
      .slice(1)
      .filter((c) => !isSelfSigned(c))
      .map((c) => certEntry(c, 'connection', { node: session.node })),
  };
}

export interface InventorySources {
  roots: readonly ParsedCertificate[];
  /** Connected agents, each with the SVIDs it reported (already filtered to its own identities). */
  sessions: Iterable<{ session: Pick<PushSession, 'node' | 'spiffeId' | 'certificates'>; reported: readonly HeldSvid[] }>;
  /**
   * Whether `spiffeId` belongs on `node` (its agent ID or an identity assigned
   * to it, as of now); reported SVIDs that do not are left out, so an agent
   * cannot list certificates of others. Default: every reported one is kept.
   */
  owns?(node: string, spiffeId: string): boolean;
  /** The control plane's own SVID chain (leaf first), for the intermediate it holds. */
  own?: readonly ParsedCertificate[];
  now?: Date;
}

const byExpiry = (a: CertEntry, b: CertEntry): number => (a.notAfter < b.notAfter ? -1 : a.notAfter > b.notAfter ? 1 : 0);

export function certInventory(src: InventorySources): CertInventory {
  const roots = src.roots.map((r) => certEntry(r, 'bundle'));
  const intermediates = new Map<string, CertEntry>();
  const addIntermediate = (c: ParsedCertificate, source: CertEntry['source'], node?: string) => {
    if (isSelfSigned(c)) return;
    const e = certEntry(c, source);
    const held = intermediates.get(e.fingerprint!);
    if (held) {
      if (node !== undefined && (held.nodes ??= []).length < MAX_NODES_PER_INTERMEDIATE) held.nodes.push(node);
      return;
    }
    if (intermediates.size >= MAX_INTERMEDIATES) return;
    intermediates.set(e.fingerprint!, { ...e, ...(node !== undefined && { nodes: [node] }) });
  };
  for (const c of src.own?.slice(1) ?? []) addIntermediate(c, 'control-plane');
  const agents: CertEntry[] = [];
  const workloads: CertEntry[] = [];
  for (const { session, reported: all } of src.sessions) {
    const reported = src.owns ? all.filter((r) => src.owns!(session.node, r.spiffeId)) : all;
    const leaf = session.certificates[0];
    for (const c of session.certificates.slice(1)) addIntermediate(c, 'connection', session.node);
    // The connection keeps the SVID it was opened with; a renewal since then is what the agent holds now.
    const own = reported.find((r) => r.spiffeId === session.spiffeId);
    if (leaf && !(own && Date.parse(own.notAfter) > leaf.notAfter.getTime())) {
      agents.push(certEntry(leaf, 'connection', { node: session.node }));
    } else if (own) {
      agents.push({ spiffeId: own.spiffeId, serial: own.serial, notBefore: own.notBefore, notAfter: own.notAfter, node: session.node, source: 'reported' });
    }
    for (const r of reported) {
      if (r.spiffeId !== session.spiffeId) workloads.push({ spiffeId: r.spiffeId, serial: r.serial, notBefore: r.notBefore, notAfter: r.notAfter, node: session.node, source: 'reported' });
    }
  }
  return {
    time: (src.now ?? new Date()).toISOString(),
    roots: roots.sort(byExpiry),
    intermediates: [...intermediates.values()].sort(byExpiry),
    agents: agents.sort(byExpiry),
    workloads: workloads.sort(byExpiry),
  };
}

/** What GET /v1/agents/:node/config needs. */
export interface ConfigDumpSources {
  status: PushSessionStatus;
  session?: Pick<PushSession, 'node' | 'certificates'>;
  view: { snapshot(type: ResourceType): { version: string; resources: readonly Resource[] } };
  endpoints: readonly Resource[];
  now?: Date;
}

export function configDump(src: ConfigDumpSources): AgentConfigDump {
  const s = src.status;
  const types: AgentConfigDump['types'] = {};
  for (const type of RESOURCE_TYPES) {
    const t = s.types[type];
    if (!t) continue;
    const snap = src.view.snapshot(type);
    types[type] = {
      version: snap.version,
      ...(t.acked !== undefined && { acked: t.acked }),
      ...(t.inFlight !== undefined && { inFlight: t.inFlight }),
      ...(t.nack !== undefined && { nack: t.nack }),
      inSync: t.acked === snap.version,
      count: snap.resources.length,
      resources: snap.resources,
    };
  }
  const { svid } = peerCertificates(src.session);
  return {
    node: s.node,
    spiffeId: s.spiffeId,
    address: s.address,
    connectedAt: s.connectedAt,
    time: (src.now ?? new Date()).toISOString(),
    ...(svid && { svid }),
    types,
    instances: endpointViews(src.endpoints, { node: s.node }),
  };
}
