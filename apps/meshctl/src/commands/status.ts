// `meshctl status`: what the CA holds, and who we are to it.
import { formatDuration } from '../duration.js';
import { keyValues, table, when } from '../output.js';
import type { Command } from './command.js';

export const status: Command = {
  name: 'status',
  synopsis: '',
  summary: "the CA's trust domain, roots, rotation phase, nodes, assignments and TTLs",
  async run(ctx) {
    const client = ctx.client();
    const cred = ctx.credential();
    const s = await client.status();
    const nodes = Object.entries(s.nodes).sort(([a], [b]) => a.localeCompare(b));
    const ttl = Object.entries(s.ttl)
      .map(([k, v]) => `${k.replace(/Seconds$/, '')} ${formatDuration(v)}`)
      .join(', ');
    let human = keyValues([
      ['CA', `${client.url.origin} (${client.expectedServerId})`],
      ['trust domain', s.trustDomain],
      ['key algorithm', s.keyAlgorithm],
      ['roots', `${s.roots.length} (${s.roots.join(', ')}; active ${s.activeSlot})`],
      ['rotation', s.rotation],
      ['bundle sequence', String(s.bundleSequence)],
      ['revocation list', `version ${s.revocationVersion}`],
      ['nodes', String(nodes.length)],
      ['assignments', String(s.assignments)],
      ['pending tokens', String(s.pendingTokens)],
      ['TTLs', ttl],
      ['you', `${cred.spiffeId} (SVID until ${when(cred.notAfter.toISOString())})`],
    ]);
    if (nodes.length > 0) {
      human += '\n' + table(['node', 'joined', 'evicted'], nodes.map(([n, v]) => [n, v.joinedAt ?? '-', v.evictedAt ?? '-']));
    }
    return { data: { url: client.url.origin, serverId: client.expectedServerId, caller: cred.spiffeId, callerNotAfter: cred.notAfter.toISOString(), ...s }, human };
  },
};
