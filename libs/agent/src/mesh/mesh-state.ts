// The config the agent holds, indexed for the data plane: services, their
// endpoints and routes, the policies, the mesh settings and the trust material.
// Built from the push client's held state (or the last good config) on each
// applied change; immutable once built, so a request sees one consistent view.
import {
  MESH_CONFIG_DEFAULTS,
  durationMs,
  type AuthorizationPolicyResource,
  type EndpointResource,
  type MeshConfigResource,
  type MeshConfigSpec,
  type Resource,
  type ResourceType,
  type RevocationListResource,
  type RouteResource,
  type ServiceResource,
  type TrustBundleResource,
} from '@amime/protocol';

export type ServiceKey = `${string}/${string}`;
export const serviceKey = (namespace: string, name: string): ServiceKey => `${namespace}/${name}`;

export interface MeshSnapshot {
  readonly versions: Partial<Record<ResourceType, string>>;
  readonly resources: Partial<Record<ResourceType, readonly Resource[]>>;
}

export class MeshState {
  readonly services = new Map<ServiceKey, ServiceResource>();
  readonly endpoints = new Map<ServiceKey, EndpointResource[]>();
  /** Routes by the service they apply to, ordered by name for a stable first match. */
  readonly routes = new Map<ServiceKey, RouteResource[]>();
  readonly policies: readonly AuthorizationPolicyResource[];
  readonly mesh: MeshConfigSpec;
  readonly trustBundle: TrustBundleResource | undefined;
  readonly revocations: RevocationListResource | undefined;
  readonly versions: Partial<Record<ResourceType, string>>;

  constructor(snapshot: MeshSnapshot) {
    this.versions = { ...snapshot.versions };
    const r = snapshot.resources;
    for (const s of (r.Service ?? []) as ServiceResource[]) this.services.set(serviceKey(s.metadata.namespace, s.metadata.name), s);
    for (const e of (r.Endpoint ?? []) as EndpointResource[]) {
      const k = serviceKey(e.metadata.namespace, e.spec.service);
      let list = this.endpoints.get(k);
      if (!list) this.endpoints.set(k, (list = []));
      list.push(e);
    }
    for (const list of this.endpoints.values()) list.sort((a, b) => (a.metadata.name < b.metadata.name ? -1 : 1));
    for (const rt of (r.Route ?? []) as RouteResource[]) {
      const k = serviceKey(rt.metadata.namespace, rt.spec.service);
      let list = this.routes.get(k);
      if (!list) this.routes.set(k, (list = []));
      list.push(rt);
    }
    for (const list of this.routes.values()) list.sort((a, b) => (a.metadata.name < b.metadata.name ? -1 : 1));
    this.policies = (r.AuthorizationPolicy ?? []) as AuthorizationPolicyResource[];
    // One MeshConfig is meant to exist; with several, the first by namespace/name wins, deterministically.
    const meshes = [...((r.MeshConfig ?? []) as readonly MeshConfigResource[])]
      .sort((a, b) => (`${a.metadata.namespace}/${a.metadata.name}` < `${b.metadata.namespace}/${b.metadata.name}` ? -1 : 1));
    this.mesh = meshes[0]?.spec ?? (structuredClone(MESH_CONFIG_DEFAULTS) as unknown as MeshConfigSpec);
    this.trustBundle = (r.TrustBundle?.[0] as TrustBundleResource | undefined) ?? undefined;
    this.revocations = (r.RevocationList?.[0] as RevocationListResource | undefined) ?? undefined;
  }

  service(namespace: string, name: string): ServiceResource | undefined {
    return this.services.get(serviceKey(namespace, name));
  }

  /** The protocol callers use for a service: its first port's, `tcp` when unknown. */
  protocolOf(namespace: string, name: string): 'tcp' | 'http' {
    return this.service(namespace, name)?.spec.ports[0]?.protocol ?? 'tcp';
  }

  /**
   * The service a Host header names: `name`, `name.ns`, `name.ns.svc` or
   * `name.ns.svc.<anything>`, with an optional port; `defaultNamespace` for a bare name.
   */
  resolveHost(host: string | undefined, defaultNamespace: string): { namespace: string; name: string } | undefined {
    if (!host) return undefined;
    let h = host.toLowerCase();
    const colon = h.lastIndexOf(':');
    if (colon > 0 && !h.includes(']')) h = h.slice(0, colon);
    const parts = h.split('.');
    if (parts.length === 0 || parts.length > 8) return undefined;
    const name = parts[0]!;
    const namespace = parts.length >= 2 ? parts[1]! : defaultNamespace;
    if (parts.length >= 3 && parts[2] !== 'svc') return undefined;
    return this.services.has(serviceKey(namespace, name)) ? { namespace, name } : undefined;
  }

  outlier(): { consecutiveFailures: number; baseEjectionMs: number; maxEjectionPercent: number } {
    const o = this.mesh.outlier;
    return { consecutiveFailures: o.consecutiveFailures, baseEjectionMs: durationMs(o.baseEjectionTime), maxEjectionPercent: o.maxEjectionPercent };
  }
}
