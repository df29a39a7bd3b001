// `meshctl get KIND [NAME]`: resources from the control plane, as a table for
// people, or JSON / YAML that `meshctl apply -f` takes back unchanged (YAML
// as one document per resource; metadata.version is ignored on apply).
import { CONFIG_KINDS, DEFAULT_NAMESPACE, RESOURCE_TYPES, type Resource, type ResourceType } from '@amime/protocol';
import { UsageError } from '../errors.js';
import { table } from '../output.js';
import { str, type Command, type CommandContext } from './command.js';

/** Lowercase spellings people type for each kind (singular, plural, short). */
const KIND_ALIASES: Readonly<Record<string, ResourceType>> = (() => {
  const out: Record<string, ResourceType> = { svc: 'Service', authz: 'AuthorizationPolicy', ep: 'Endpoint' };
  for (const kind of RESOURCE_TYPES) {
    const lower = kind.toLowerCase();
    out[lower] = kind;
    out[lower.endsWith('y') ? `${lower.slice(0, -1)}ies` : `${lower}s`] = kind;
  }
  return out;
})();

/** The kind named by `word` (any case, singular or plural); usage error otherwise. */
export function resolveKind(word: string, kinds: readonly ResourceType[] = RESOURCE_TYPES): ResourceType {
  const kind = KIND_ALIASES[word.toLowerCase()];
  if (kind === undefined) throw new UsageError(`unknown kind ${JSON.stringify(word)}; kinds: ${RESOURCE_TYPES.join(', ')}`);
  if (!kinds.includes(kind)) {
    throw new UsageError(`${kind} resources are derived by the control plane and cannot be changed by hand; operators change ${CONFIG_KINDS.join(', ')}`);
  }
  return kind;
}

export const namespaceOption = { namespace: { type: 'string', short: 'n' } } as const;

/** -n, checked as a DNS-1123 label here so a typo is a usage error, not a round trip. */
export function namespaceOf(ctx: CommandContext): string | undefined {
  const ns = str(ctx.values, 'namespace');
  if (ns !== undefined && !/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(ns)) throw new UsageError(`-n/--namespace ${JSON.stringify(ns)} is not a namespace name (lowercase letters, digits and "-")`);
  return ns;
}

/** One YAML document per resource, as `apply -f` reads them. */
export async function toYamlDocuments(resources: readonly Resource[]): Promise<string> {
  // yaml is loaded only when YAML is printed, as in output.ts
  const { stringify } = await import('yaml');
  return resources.map((r) => stringify(r)).join('---\n');
}

const dash = (v: string | number | undefined): string => (v === undefined || v === '' ? '-' : String(v));

/** The columns after NAMESPACE and NAME that say most about each kind. */
function summary(kind: ResourceType): { headers: string[]; cells(r: Resource): string[] } {
  switch (kind) {
    case 'Service':
      return { headers: ['identity', 'ports'], cells: (r) => (r.kind === 'Service' ? [r.spec.identity, r.spec.ports.map((p) => `${p.name}:${p.port}/${p.protocol}`).join(',')] : []) };
    case 'Route':
      return {
        headers: ['service', 'rules', 'backends'],
        cells: (r) => {
          if (r.kind !== 'Route') return [];
          const backends = [...new Set(r.spec.rules.flatMap((rule) => rule.backends.map((b) => b.service)))];
          return [r.spec.service, String(r.spec.rules.length), backends.join(',')];
        },
      };
    case 'AuthorizationPolicy':
      return { headers: ['action', 'target', 'rules'], cells: (r) => (r.kind === 'AuthorizationPolicy' ? [r.spec.action, r.spec.target, String(r.spec.rules.length)] : []) };
    case 'MeshConfig':
      return { headers: ['mtls', 'load balancing'], cells: (r) => (r.kind === 'MeshConfig' ? [r.spec.mtls, r.spec.loadBalancing] : []) };
    case 'Endpoint':
      return {
        headers: ['service', 'node', 'address', 'health'],
        cells: (r) => (r.kind === 'Endpoint' ? [r.spec.service, r.spec.node, `${r.spec.address.includes(':') ? `[${r.spec.address}]` : r.spec.address}:${r.spec.port}`, r.spec.reason ? `${r.spec.health} (${r.spec.reason})` : r.spec.health] : []),
      };
    case 'TrustBundle':
      return { headers: ['trust domain', 'roots'], cells: (r) => (r.kind === 'TrustBundle' ? [r.spec.trustDomain, String(r.spec.roots.length)] : []) };
    case 'RevocationList':
      return { headers: ['serials', 'identities'], cells: (r) => (r.kind === 'RevocationList' ? [String(r.spec.serials.length), String(r.spec.identities.length)] : []) };
  }
}

export function resourceTable(kind: ResourceType, resources: readonly Resource[]): string {
  const { headers, cells } = summary(kind);
  return table(
    ['namespace', 'name', 'version', ...headers],
    resources.map((r) => [r.metadata.namespace, r.metadata.name, dash(r.metadata.version), ...cells(r).map(dash)]),
  );
}

export const get: Command = {
  name: 'get',
  synopsis: 'KIND [NAME] [-n NAMESPACE]',
  summary: 'show resources of KIND (every namespace unless -n; NAME is looked up in -n, default "default"); -o yaml feeds apply -f',
  options: { ...namespaceOption },
  positionals: { min: 1, max: 2, names: 'KIND [NAME]' },
  async run(ctx) {
    const kind = resolveKind(ctx.args[0]!);
    const name = ctx.args[1];
    const namespace = namespaceOf(ctx);
    const client = ctx.controlPlane();
    if (name !== undefined) {
      const r = await client.get(kind, namespace ?? DEFAULT_NAMESPACE, name);
      if (ctx.format === 'yaml') return { raw: await toYamlDocuments([r]) };
      return { data: r, human: resourceTable(kind, [r]) };
    }
    const items = await client.get(kind, namespace);
    if (ctx.format === 'yaml') return { raw: items.length === 0 ? '' : await toYamlDocuments(items) };
    const human = items.length === 0 ? `no ${kind} resources${namespace === undefined ? '' : ` in namespace ${namespace}`}\n` : resourceTable(kind, items);
    return { data: items, human };
  },
};
