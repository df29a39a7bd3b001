// Revocation: one certificate (serial), one identity, or a whole node.
import type { RevokeTarget } from '@amime/identity';
import { UsageError } from '../errors.js';
import { str, type Command } from './command.js';

export const revoke: Command = {
  name: 'revoke',
  synopsis: '--serial HEX | --spiffe-id ID | --node N [--reason TEXT]',
  summary: 'revoke one SVID by serial, every SVID of an identity, or evict a node (--node: all its SVIDs, assignments and tokens)',
  options: { serial: { type: 'string' }, 'spiffe-id': { type: 'string' }, node: { type: 'string' }, reason: { type: 'string' } },
  async run(ctx) {
    const given = (['serial', 'spiffe-id', 'node'] as const).filter((k) => ctx.values[k] !== undefined);
    if (given.length !== 1) {
      throw new UsageError(`give exactly one of --serial, --spiffe-id or --node${given.length ? ` (got ${given.map((g) => `--${g}`).join(' and ')})` : ''}`);
    }
    const reason = str(ctx.values, 'reason');
    const which = given[0]!;
    const value = str(ctx.values, which)!;
    const target: RevokeTarget =
      which === 'serial' ? { serial: value } : which === 'spiffe-id' ? { spiffeId: value } : { node: value };
    if (reason !== undefined) target.reason = reason;
    const r = await ctx.client().revoke(target);
    const what = which === 'node' ? `evicted node ${value}: ${r.revokedSerials ?? 0} SVID(s) revoked, its assignments and tokens dropped` : `revoked ${which} ${value}`;
    const next = which === 'node' ? `\nto readmit ${value}, create a new join token: meshctl token create --node ${value}` : '';
    return { data: { revoked: { [which === 'spiffe-id' ? 'spiffeId' : which]: value }, ...r }, human: `${what} (revocation list version ${r.version})${next}\n` };
  },
};

export const unrevoke: Command = {
  name: 'unrevoke',
  synopsis: 'SPIFFE_ID',
  summary: 'take an identity off the revocation list (serial revocations are permanent)',
  positionals: { min: 1, max: 1, names: 'SPIFFE_ID' },
  async run(ctx) {
    const spiffeId = ctx.args[0]!;
    const r = await ctx.client().unrevoke(spiffeId);
    return { data: { unrevoked: spiffeId, ...r }, human: `unrevoked ${spiffeId} (revocation list version ${r.version})\n` };
  },
};
