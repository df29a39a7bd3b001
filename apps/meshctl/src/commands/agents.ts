// `meshctl agents`: the agents connected to the control plane, and per
// resource type the version each acked, the push in flight and its last
// NACK (the agent kept its previous version; the error says why), and how
// long its SVID has left, judged as `meshctl certs` judges it.
import type { AgentStatus } from '@amime/control-plane';
import { table, when } from '../output.js';
import { certState } from './cert-expiry.js';
import { left } from './certs.js';
import type { Command } from './command.js';

/** Longest NACK error shown in the table; -o json has all of it. */
const MAX_ERROR_CHARS = 160;

const SVID_MARK = { expired: '', not_yet_valid: ' NOT YET VALID', expiring: ' RENEW DUE', ok: '' } as const;

/** "23h59m", "5m RENEW DUE", "expired 2m ago"; "-" when the control plane has no SVID for it. */
export function svidLeft(svid: AgentStatus['svid'], now: number): string {
  if (svid === undefined) return '-';
  const end = Date.parse(svid.notAfter);
  if (Number.isNaN(end)) return '-';
  return left(Math.round((end - now) / 1000)) + SVID_MARK[certState(svid.notBefore, svid.notAfter, now)];
}

export function agentsTables(agents: readonly AgentStatus[], now = Date.now()): string {
  if (agents.length === 0) return 'no agents connected\n';
  const sorted = [...agents].sort((a, b) => a.node.localeCompare(b.node));
  const summary = table(
    ['node', 'address', 'connected', 'instances', 'nacks', 'svid left'],
    sorted.map((a) => [a.node, a.address, when(a.connectedAt, now), String(a.instances), String(Object.values(a.types).filter((t) => t.nack).length), svidLeft(a.svid, now)]),
  );
  const rows = sorted.flatMap((a) =>
    Object.entries(a.types)
      .sort(([x], [y]) => x.localeCompare(y))
      .map(([type, t]) => [a.node, type, t.acked ?? '-', t.inFlight ?? '-', t.nack ? `${t.nack.version} at ${t.nack.at}` : '-']),
  );
  const versions = rows.length === 0 ? '' : '\n' + table(['node', 'type', 'acked', 'in flight', 'nacked'], rows);
  const nacks = sorted.flatMap((a) =>
    Object.entries(a.types)
      .filter(([, t]) => t.nack)
      .map(([type, t]) => {
        const error = t.nack!.error.replace(/\s+/g, ' ');
        return `  ${a.node} ${type} ${t.nack!.version}: ${error.length > MAX_ERROR_CHARS ? `${error.slice(0, MAX_ERROR_CHARS)}...` : error}\n`;
      }),
  );
  return summary + versions + (nacks.length === 0 ? '' : `\nNACK errors (the agent kept its previous version):\n${nacks.join('')}`);
}

export const agents: Command = {
  name: 'agents',
  synopsis: '',
  summary: 'connected agents: since when, how long their SVID has left, the version of each resource type they acked, and NACKs with the error',
  async run(ctx) {
    const list = await ctx.controlPlane().agents();
    return { data: list, human: agentsTables(list) };
  },
};
