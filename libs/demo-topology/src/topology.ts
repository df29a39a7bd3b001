// What the demo runs, as data: the three "hosts" (agents), the services on
// each, the ports, the agent config files and the mesh resources.
//
//   vm1: web                    ──▶ catalog, reviews (and, denied, inventory)
//   vm2: catalog, reviews v1    catalog ──▶ inventory
//   vm3: inventory, reviews v2
import { join } from 'node:path';

export const NAMESPACE = 'demo';
export const NODES = ['vm1', 'vm2', 'vm3'] as const;
export type Node = (typeof NODES)[number];
export const SERVICES = ['web', 'catalog', 'inventory', 'reviews'] as const;
export type ServiceName = (typeof SERVICES)[number];

export interface DemoPorts {
  /** Where each app listens (plain HTTP, 127.0.0.1). */
  apps: { web: number; catalog: number; inventory: number; reviewsV1: number; reviewsV2: number };
  /** Each agent's mTLS inbound and admin (metrics, config_dump) port. */
  agents: Record<Node, { inbound: number; admin: number }>;
  /** The agents' local upstream ports the apps call. */
  upstreams: { webCatalog: number; webReviews: number; webInventory: number; catalogInventory: number };
}

export const DEFAULT_PORTS: DemoPorts = {
  apps: { web: 18080, catalog: 18081, inventory: 18082, reviewsV1: 18083, reviewsV2: 18084 },
  agents: { vm1: { inbound: 15001, admin: 15101 }, vm2: { inbound: 15002, admin: 15102 }, vm3: { inbound: 15003, admin: 15103 } },
  upstreams: { webCatalog: 19001, webReviews: 19002, webInventory: 19003, catalogInventory: 19011 },
};

/** Every port, flattened (to allocate free ones, or to check a ports.json). */
export function listPorts(p: DemoPorts): number[] {
  return [...Object.values(p.apps), ...NODES.flatMap((n) => [p.agents[n].inbound, p.agents[n].admin]), ...Object.values(p.upstreams)];
}

/** The same shape with the ports replaced, in listPorts order. */
export function withPorts(ports: number[]): DemoPorts {
  if (ports.length !== listPorts(DEFAULT_PORTS).length) throw new Error(`need ${listPorts(DEFAULT_PORTS).length} ports, got ${ports.length}`);
  const it = ports[Symbol.iterator]();
  const next = () => it.next().value as number;
  return {
    apps: { web: next(), catalog: next(), inventory: next(), reviewsV1: next(), reviewsV2: next() },
    agents: { vm1: { inbound: next(), admin: next() }, vm2: { inbound: next(), admin: next() }, vm3: { inbound: next(), admin: next() } },
    upstreams: { webCatalog: next(), webReviews: next(), webInventory: next(), catalogInventory: next() },
  };
}

/** A ports.json read back: the right shape with valid port numbers, else undefined. */
export function parsePorts(doc: unknown): DemoPorts | undefined {
  try {
    const p = withPorts(listPorts(doc as DemoPorts));
    return listPorts(p).every((n) => Number.isInteger(n) && n > 0 && n < 65536) && new Set(listPorts(p)).size === listPorts(p).length ? p : undefined;
  } catch {
    return undefined;
  }
}

export const identity = (trustDomain: string, service: ServiceName): string => `spiffe://${trustDomain}/ns/${NAMESPACE}/sa/${service}`;

/** The workload identities each node's agent is assigned at the CA. */
export const ASSIGNMENTS: Record<Node, ServiceName[]> = { vm1: ['web'], vm2: ['catalog', 'reviews'], vm3: ['inventory', 'reviews'] };

export const nodeDir = (stateDir: string, node: Node): string => join(stateDir, node);
/** The agent's dataDir; it holds identity/agent.crt once the agent joined. */
export const dataDir = (stateDir: string, node: Node): string => join(stateDir, node, 'data');

export interface MeshLocation {
  trustDomain: string;
  caUrl: string;
  /** wss://host:port/v1/push */
  pushUrl: string;
  /** The CA's roots, as a file the agents read at first contact. */
  bundleFile: string;
}

/** The three agent config files' contents (JSON; YAML reads it the same). */
export function agentConfigs(stateDir: string, p: DemoPorts, mesh: MeshLocation): Record<Node, Record<string, unknown>> {
  const id = (s: ServiceName) => identity(mesh.trustDomain, s);
  const common = (node: Node) => ({
    node,
    dataDir: dataDir(stateDir, node),
    ca: { url: mesh.caUrl, bundle: mesh.bundleFile },
    controlPlane: { url: mesh.pushUrl },
    inbound: { address: '127.0.0.1', port: p.agents[node].inbound, advertise: '127.0.0.1' },
    admin: { address: '127.0.0.1', port: p.agents[node].admin },
    accessLog: { path: join(nodeDir(stateDir, node), 'access.log') },
  });
  const workload = (service: ServiceName, port: number, extra: Record<string, unknown> = {}) => ({
    service,
    namespace: NAMESPACE,
    identity: id(service),
    port,
    protocol: 'http',
    check: { http: '/healthz' },
    ...extra,
  });
  const upstream = (service: ServiceName, port: number) => ({ service, namespace: NAMESPACE, port });
  return {
    vm1: {
      ...common('vm1'),
      workloads: [
        workload('web', p.apps.web, {
          upstreams: [upstream('catalog', p.upstreams.webCatalog), upstream('reviews', p.upstreams.webReviews), upstream('inventory', p.upstreams.webInventory)],
        }),
      ],
    },
    vm2: {
      ...common('vm2'),
      workloads: [
        workload('catalog', p.apps.catalog, { upstreams: [upstream('inventory', p.upstreams.catalogInventory)] }),
        workload('reviews', p.apps.reviewsV1, { labels: { version: 'v1' } }),
      ],
    },
    vm3: {
      ...common('vm3'),
      workloads: [workload('inventory', p.apps.inventory), workload('reviews', p.apps.reviewsV2, { labels: { version: 'v2' } })],
    },
  };
}

export interface AppProcess {
  name: string;
  /** Path of the app's main.ts, relative to the workspace. */
  main: string;
  args: string[];
}

/** The demo services, each pointed at its agent's upstream ports. */
export function appProcesses(p: DemoPorts, denyEvery: number): AppProcess[] {
  const url = (port: number) => `http://127.0.0.1:${port}`;
  return [
    { name: 'inventory', main: 'apps/demo-inventory/src/main.ts', args: ['--port', String(p.apps.inventory)] },
    { name: 'catalog', main: 'apps/demo-catalog/src/main.ts', args: ['--port', String(p.apps.catalog), '--inventory', url(p.upstreams.catalogInventory)] },
    { name: 'reviews-v1', main: 'apps/demo-reviews/src/main.ts', args: ['--port', String(p.apps.reviewsV1), '--version', 'v1'] },
    { name: 'reviews-v2', main: 'apps/demo-reviews/src/main.ts', args: ['--port', String(p.apps.reviewsV2), '--version', 'v2'] },
    {
      name: 'web',
      main: 'apps/demo-web/src/main.ts',
      args: ['--port', String(p.apps.web), '--catalog', url(p.upstreams.webCatalog), '--reviews', url(p.upstreams.webReviews), '--inventory', url(p.upstreams.webInventory), '--deny-every', String(denyEvery)],
    },
  ];
}

/**
 * The mesh resources (YAML): the four Services, reviews split 90/10 between
 * subsets v1 and v2, policies allowing exactly web → catalog, web → reviews
 * and catalog → inventory (so web → inventory is denied by default), and the
 * monitor's settings. Applying them again changes nothing.
 */
export function demoResources(trustDomain: string, monitor: { learningWindow: string; reportInterval: string }): string {
  const id = (s: ServiceName) => identity(trustDomain, s);
  const service = (name: ServiceName, extra = '') => `apiVersion: amime.dev/v1
kind: Service
metadata: { name: ${name}, namespace: ${NAMESPACE} }
spec:
  identity: ${id(name)}
  ports: [{ name: http, port: 8080, protocol: http }]
${extra}`;
  const allow = (target: ServiceName, from: ServiceName) => `apiVersion: amime.dev/v1
kind: AuthorizationPolicy
metadata: { name: ${target}-from-${from}, namespace: ${NAMESPACE} }
spec:
  action: ALLOW
  target: ${target}
  rules: [{ from: [{ identity: ${id(from)} }] }]
`;
  return [
    service('web'),
    service('catalog'),
    service('inventory'),
    service('reviews', '  trafficPolicy: { subsets: [{ name: v1, labels: { version: v1 } }, { name: v2, labels: { version: v2 } }] }\n'),
    `apiVersion: amime.dev/v1
kind: Route
metadata: { name: reviews-split, namespace: ${NAMESPACE} }
spec:
  service: reviews
  rules:
    - backends: [{ service: reviews, subset: v1, weight: 90 }, { service: reviews, subset: v2, weight: 10 }]
`,
    allow('catalog', 'web'),
    allow('reviews', 'web'),
    allow('inventory', 'catalog'),
    `apiVersion: amime.dev/v1
kind: MeshConfig
metadata: { name: mesh }
spec:
  monitor: { learningWindow: ${monitor.learningWindow}, reportInterval: ${monitor.reportInterval} }
`,
  ].join('---\n');
}
