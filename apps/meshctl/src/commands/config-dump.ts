// `meshctl config-dump NODE`: what the control plane holds for one connected
// agent (GET /v1/agents/:node/config): per resource type the version it
// would push, the version acked, a push in flight, the last NACK, and the
// resources themselves; plus the node's registered instances. YAML by
// default (it is long and nested), JSON with -o json.
import type { AgentConfigDump } from '@amime/control-plane';
import { UsageError } from '../errors.js';
import { table } from '../output.js';
import type { Command } from './command.js';

const NODE = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

/** The per-type summary printed before the YAML in table mode. */
export function configSummary(d: AgentConfigDump): string {
  return table(
    ['type', 'version', 'acked', 'in flight', 'in sync', 'resources', 'last nack'],
    Object.entries(d.types).map(([type, t]) => [type, t.version, t.acked ?? '-', t.inFlight ?? '-', t.inSync ? 'yes' : 'no', String(t.count), t.nack ? `${t.nack.version} at ${t.nack.at}: ${t.nack.error.replace(/\s+/g, ' ').slice(0, 120)}` : '-']),
  );
}

export const configDump: Command = {
  name: 'config-dump',
  synopsis: 'NODE',
  summary: "what the control plane holds for a connected agent: versions pushed, acked, in flight, last NACK, the resources and its instances (YAML unless -o json)",
  positionals: { min: 1, max: 1, names: 'NODE' },
  async run(ctx) {
    const node = ctx.args[0]!;
    if (!NODE.test(node)) throw new UsageError(`NODE ${JSON.stringify(node)} is not a node name (lowercase letters, digits and "-"); 'meshctl agents' lists them`);
    const dump = await ctx.controlPlane().agentConfig(node);
    if (ctx.format === 'table') {
      // The default: the summary on stderr for people, the whole dump as YAML on stdout.
      ctx.progress(configSummary(dump).trimEnd());
      const { stringify } = await import('yaml');
      return { raw: stringify(dump) };
    }
    return { data: dump };
  },
};
