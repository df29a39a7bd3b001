// `meshctl services [-n NS]`: Service resources joined with their endpoints
// and the Routes that send traffic to them.
import type { EndpointView } from '@amime/control-plane';
import type { Resource, RouteResource, ServiceResource } from '@amime/protocol';
import { table } from '../output.js';
import type { Command } from './command.js';
import { namespaceOf, namespaceOption } from './get.js';

export interface ServiceSummary {
  namespace: string;
  name: string;
  identity: string;
  ports: { name: string; port: number; protocol: string }[];
  endpoints: { healthy: number; total: number };
  subsets: string[];
  /** Routes (namespace/name) with a backend on this service. */
  routes: string[];
}

export function summarizeServices(services: readonly Resource[], endpoints: readonly EndpointView[], routes: readonly Resource[]): ServiceSummary[] {
  const out: ServiceSummary[] = [];
  for (const r of services) {
    if (r.kind !== 'Service') continue;
    const s = r as ServiceResource;
    const ns = s.metadata.namespace;
    const mine = endpoints.filter((e) => e.namespace === ns && e.service === s.metadata.name);
    const targeting = routes.filter(
      (x): x is RouteResource => x.kind === 'Route' && x.metadata.namespace === ns && (x as RouteResource).spec.rules.some((rule) => rule.backends.some((b) => b.service === s.metadata.name)),
    );
    out.push({
      namespace: ns,
      name: s.metadata.name,
      identity: s.spec.identity,
      ports: s.spec.ports.map((p) => ({ name: p.name, port: p.port, protocol: p.protocol })),
      endpoints: { healthy: mine.filter((e) => e.health === 'healthy').length, total: mine.length },
      subsets: (s.spec.trafficPolicy?.subsets ?? []).map((x) => x.name),
      routes: targeting.map((x) => `${x.metadata.namespace}/${x.metadata.name}`),
    });
  }
  return out.sort((a, b) => a.namespace.localeCompare(b.namespace) || a.name.localeCompare(b.name));
}

export function servicesTable(items: readonly ServiceSummary[]): string {
  return table(
    ['namespace', 'name', 'ports', 'endpoints', 'subsets', 'routes'],
    items.map((s) => [
      s.namespace,
      s.name,
      s.ports.map((p) => `${p.name}:${p.port}/${p.protocol}`).join(','),
      `${s.endpoints.healthy}/${s.endpoints.total}`,
      s.subsets.join(',') || '-',
      s.routes.join(',') || '-',
    ]),
  );
}

export const services: Command = {
  name: 'services',
  synopsis: '[-n NAMESPACE]',
  summary: 'services with their ports, healthy/total endpoints, subsets and the routes that target them (every namespace unless -n)',
  options: { ...namespaceOption },
  async run(ctx) {
    const namespace = namespaceOf(ctx);
    const cp = ctx.controlPlane();
    const [svcs, eps, routes] = await Promise.all([cp.get('Service', namespace), cp.endpoints(namespace !== undefined ? { namespace } : {}), cp.get('Route', namespace)]);
    const items = summarizeServices(svcs, eps, routes);
    return { data: items, human: items.length === 0 ? `no services${namespace !== undefined ? ` in namespace ${namespace}` : ''}\n` : servicesTable(items) };
  },
};
