// `meshctl delete KIND NAME`: remove a Service, Route, AuthorizationPolicy
// or MeshConfig. Derived kinds (Endpoint, TrustBundle, RevocationList) are
// refused here already: the control plane owns them.
import { CONFIG_KINDS, DEFAULT_NAMESPACE } from '@amime/protocol';
import { namespaceOf, namespaceOption, resolveKind } from './get.js';
import type { Command } from './command.js';

export const deleteResource: Command = {
  name: 'delete',
  synopsis: 'KIND NAME [-n NAMESPACE] [--dry-run]',
  summary: 'delete a Service, Route, AuthorizationPolicy or MeshConfig (in -n, default "default")',
  options: { ...namespaceOption, 'dry-run': { type: 'boolean' } },
  positionals: { min: 2, max: 2, names: 'KIND NAME' },
  async run(ctx) {
    const kind = resolveKind(ctx.args[0]!, CONFIG_KINDS);
    const namespace = namespaceOf(ctx) ?? DEFAULT_NAMESPACE;
    const out = await ctx.controlPlane().delete(kind, namespace, ctx.args[1]!, ctx.values['dry-run'] === true);
    for (const w of out.warnings) ctx.progress(`warning: ${w}`);
    return { data: out, human: `${out.kind} ${out.namespace}/${out.name} deleted${out.dryRun ? ' (dry run)' : ''}\n` };
  },
};
