// Which workload identities each node's agent may obtain SVIDs for.
import { UsageError } from '../errors.js';
import { table } from '../output.js';
import { str, type Command, type CommandContext } from './command.js';

function nodeAndId(ctx: CommandContext): [string, string] {
  const [node, spiffeId] = ctx.args as [string, string];
  if (!node.trim() || !spiffeId.trim()) throw new UsageError('NODE and SPIFFE_ID must not be empty');
  return [node, spiffeId];
}

export const assign: Command = {
  name: 'assign',
  synopsis: 'NODE SPIFFE_ID',
  summary: "let NODE's agent obtain SVIDs for the workload SPIFFE_ID (spiffe://TD/ns/NS/sa/SA)",
  positionals: { min: 2, max: 2, names: 'NODE SPIFFE_ID' },
  async run(ctx) {
    const a = await ctx.client().assign(...nodeAndId(ctx));
    return { data: a, human: `assigned ${a.spiffeId} to node ${a.node}\n` };
  },
};

export const unassign: Command = {
  name: 'unassign',
  synopsis: 'NODE SPIFFE_ID',
  summary: "stop NODE's agent from obtaining new SVIDs for SPIFFE_ID (issued ones stay valid: revoke them too if needed)",
  positionals: { min: 2, max: 2, names: 'NODE SPIFFE_ID' },
  async run(ctx) {
    const a = await ctx.client().unassign(...nodeAndId(ctx));
    return { data: a, human: `unassigned ${a.spiffeId} from node ${a.node}\n` };
  },
};

export const assignments: Command = {
  name: 'assignments',
  synopsis: '[--node N]',
  summary: 'list assignments, of every node or of one',
  options: { node: { type: 'string' } },
  async run(ctx) {
    const node = str(ctx.values, 'node');
    const client = ctx.client();
    const all = node === undefined ? await client.listAssignments() : await client.assignments(node);
    const rows = Object.entries(all)
      .sort(([a], [b]) => a.localeCompare(b))
      .flatMap(([n, ids]) => [...ids].sort().map((id) => [n, id]));
    const human = rows.length === 0 ? `no assignments${node === undefined ? '' : ` for node ${node}`}\n` : table(['node', 'spiffe id'], rows);
    return { data: all, human };
  },
};
