// The service graph the page draws: services (and callers that are no
// service) as nodes laid out in columns by call depth, traffic edges between
// them. Built here rather than in the browser so that it is tested without a
// DOM and the page only places boxes.
import type { EndpointInstance, ResourceLike, TrafficEdge, TrafficSnapshot } from './mesh-types.js';

export interface GraphNode {
  /** `svc:<ns>/<name>` or `id:<spiffe id>`. */
  id: string;
  kind: 'service' | 'identity';
  label: string;
  namespace?: string;
  /** The workload identity a service runs as (from its Service resource). */
  identity?: string;
  /** Registered instances, and how many of them are healthy (null: endpoints not available). */
  instances: number | null;
  healthy: number | null;
  /** Call depth: 0 for nodes nothing calls. */
  column: number;
  /** Position within its column, by label. */
  row: number;
}

export interface GraphEdge {
  id: string;
  from: string;
  to: string;
  requests: number;
  rps: number;
  errors: number;
  errorRate: number;
  denials: number;
  denialRate: number;
  p50Ms: number | null;
  p99Ms: number | null;
  mtls: boolean;
  nodes: string[];
  lastSeen: string;
}

export interface Graph {
  nodes: GraphNode[];
  edges: GraphEdge[];
  columns: number;
  windowSeconds: number | null;
  generatedAt: string | null;
  /** Whether the traffic half is real: false while /v1/traffic is not available. */
  traffic: boolean;
}

/** Bounds: a page with more than this is unreadable anyway, and the browser must not be flooded. */
export const MAX_GRAPH_NODES = 500;
export const MAX_GRAPH_EDGES = 2000;

const str = (v: unknown): v is string => typeof v === 'string' && v.length > 0 && v.length <= 1024;
const num = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) ? v : 0);
const numOrNull = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);

export interface GraphInput {
  services: readonly ResourceLike[];
  /** undefined: /v1/endpoints not available. */
  endpoints?: readonly EndpointInstance[];
  /** undefined: /v1/traffic not available (yet). */
  traffic?: TrafficSnapshot;
}

export function buildGraph(input: GraphInput): Graph {
  const nodes = new Map<string, GraphNode>();
  const byIdentity = new Map<string, string[]>();
  const addService = (namespace: string, name: string, identity?: string): string => {
    const id = `svc:${namespace}/${name}`;
    if (!nodes.has(id) && nodes.size < MAX_GRAPH_NODES) {
      nodes.set(id, { id, kind: 'service', label: name, namespace, ...(identity && { identity }), instances: null, healthy: null, column: 0, row: 0 });
      if (identity) byIdentity.set(identity, [...(byIdentity.get(identity) ?? []), id]);
    }
    return id;
  };
  for (const s of input.services) {
    if (!s || s.kind !== 'Service' || !str(s.metadata?.name)) continue;
    const identity = s.spec?.['identity'];
    addService(str(s.metadata.namespace) ? s.metadata.namespace : 'default', s.metadata.name, str(identity) ? identity : undefined);
  }
  if (input.endpoints) {
    for (const n of nodes.values()) {
      n.instances = 0;
      n.healthy = 0;
    }
    for (const e of input.endpoints) {
      if (!e || !str(e.service) || !str(e.namespace)) continue;
      const n = nodes.get(`svc:${e.namespace}/${e.service}`);
      if (!n) continue;
      n.instances = (n.instances ?? 0) + 1;
      if (e.health === undefined || e.health === 'healthy') n.healthy = (n.healthy ?? 0) + 1;
    }
  }

  const edges = new Map<string, GraphEdge>();
  for (const e of input.traffic?.edges ?? []) {
    if (edges.size >= MAX_GRAPH_EDGES) break;
    if (!e || !str(e.source?.identity) || !str(e.destination?.service) || !str(e.destination?.namespace)) continue;
    const to = addService(e.destination.namespace, e.destination.service);
    const from = callerOf(e, byIdentity, nodes);
    if (!nodes.has(to) || !nodes.has(from)) continue; // over MAX_GRAPH_NODES
    const id = `${from}->${to}`;
    const prev = edges.get(id);
    const edge: GraphEdge = {
      id,
      from,
      to,
      requests: num(e.requests),
      rps: num(e.rps),
      errors: num(e.errors),
      errorRate: num(e.errorRate),
      denials: num(e.denials),
      denialRate: num(e.denialRate),
      p50Ms: numOrNull(e.p50Ms),
      p99Ms: numOrNull(e.p99Ms),
      mtls: e.mtls === true,
      nodes: Array.isArray(e.nodes) ? e.nodes.filter(str).slice(0, 64) : [],
      lastSeen: str(e.lastSeen) ? e.lastSeen : '',
    };
    // Two sources mapped onto one caller (one identity for two services): add up, keep the worse p99.
    edges.set(id, prev ? merge(prev, edge) : edge);
  }
  const columns = layout([...nodes.values()], [...edges.values()]);
  return {
    nodes: [...nodes.values()],
    edges: [...edges.values()],
    columns,
    windowSeconds: input.traffic ? num(input.traffic.windowSeconds) : null,
    generatedAt: input.traffic && str(input.traffic.generatedAt) ? input.traffic.generatedAt : null,
    traffic: input.traffic !== undefined,
  };
}

/**
 * The caller of an edge: the service that runs as the source identity (the
 * one the source names when several share it), else the identity itself as
 * a node of its own.
 */
function callerOf(e: TrafficEdge, byIdentity: Map<string, string[]>, nodes: Map<string, GraphNode>): string {
  const services = byIdentity.get(e.source.identity);
  if (services && services.length > 0) {
    const named = str(e.source.service) && str(e.source.namespace) ? `svc:${e.source.namespace}/${e.source.service}` : undefined;
    return named && services.includes(named) ? named : services[0]!;
  }
  const id = `id:${e.source.identity}`;
  if (!nodes.has(id) && nodes.size < MAX_GRAPH_NODES) nodes.set(id, { id, kind: 'identity', label: e.source.identity, instances: null, healthy: null, column: 0, row: 0 });
  return id;
}

function merge(a: GraphEdge, b: GraphEdge): GraphEdge {
  const requests = a.requests + b.requests;
  const errors = a.errors + b.errors;
  const denials = a.denials + b.denials;
  const worse = (x: number | null, y: number | null) => (x === null ? y : y === null ? x : Math.max(x, y));
  return {
    ...a,
    requests,
    rps: a.rps + b.rps,
    errors,
    errorRate: requests > 0 ? errors / requests : 0,
    denials,
    denialRate: requests > 0 ? denials / requests : 0,
    p50Ms: worse(a.p50Ms, b.p50Ms),
    p99Ms: worse(a.p99Ms, b.p99Ms),
    mtls: a.mtls && b.mtls,
    nodes: [...new Set([...a.nodes, ...b.nodes])],
    lastSeen: a.lastSeen > b.lastSeen ? a.lastSeen : b.lastSeen,
  };
}

/**
 * Columns by call depth: a node sits one column right of its deepest
 * caller. Cycles are cut by relaxing at most `nodes` times (a node in a
 * cycle ends up at most nodes-1 deep). Returns the number of columns.
 */
export function layout(nodes: GraphNode[], edges: readonly GraphEdge[]): number {
  const depth = new Map(nodes.map((n) => [n.id, 0]));
  const real = edges.filter((e) => e.from !== e.to);
  for (let pass = 0; pass < nodes.length; pass++) {
    let changed = false;
    for (const e of real) {
      const d = (depth.get(e.from) ?? 0) + 1;
      if (d > (depth.get(e.to) ?? 0) && d < nodes.length) {
        depth.set(e.to, d);
        changed = true;
      }
    }
    if (!changed) break;
  }
  const byColumn = new Map<number, GraphNode[]>();
  for (const n of nodes) {
    n.column = depth.get(n.id) ?? 0;
    byColumn.set(n.column, [...(byColumn.get(n.column) ?? []), n]);
  }
  for (const col of byColumn.values()) {
    col.sort((a, b) => (a.label < b.label ? -1 : a.label > b.label ? 1 : a.id < b.id ? -1 : 1));
    col.forEach((n, i) => (n.row = i));
  }
  return nodes.length === 0 ? 0 : Math.max(...byColumn.keys()) + 1;
}
