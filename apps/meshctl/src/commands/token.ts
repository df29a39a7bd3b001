// `meshctl token create`: a one-time join token bound to a node name.
import { parseDuration, formatDuration } from '../duration.js';
import { UsageError } from '../errors.js';
import { keyValues, when } from '../output.js';
import { str, type Command } from './command.js';

const MAX_TTL = 7 * 86400;

export const tokenCreate: Command = {
  name: 'token create',
  synopsis: '--node N [--ttl 10m]',
  summary: 'a one-time join token for node N (default TTL 10m, at most 7d)',
  options: { node: { type: 'string' }, ttl: { type: 'string' } },
  async run(ctx) {
    const node = str(ctx.values, 'node');
    if (!node) throw new UsageError('--node is required: the node name the token admits, e.g. --node vm-a');
    const ttlText = str(ctx.values, 'ttl') ?? '10m';
    const ttl = parseDuration(ttlText);
    if (ttl === undefined || ttl < 1 || ttl > MAX_TTL) {
      throw new UsageError(`--ttl must be a duration from 1s to 7d (e.g. 600, 10m, 1h), not ${JSON.stringify(ttlText)}`);
    }
    const client = ctx.client();
    const t = await client.createToken(node, ttl);
    const spiffeId = `spiffe://${client.trustDomain}/agent/${t.node}`;
    return {
      data: { ...t, spiffeId, ttlSeconds: ttl },
      human:
        keyValues([
          ['token', t.token],
          ['node', `${t.node} (joins as ${spiffeId})`],
          ['expires', `${when(t.expiresAt)}; usable once`],
        ]) +
        `\nto join, the agent on ${t.node} sends the token with a CSR for ${spiffeId}\n` +
        `to POST ${client.url.origin}/v1/join within ${formatDuration(ttl)}, trusting the CA's bundle:\n` +
        `  meshctl bundle show --format pem > bundle.pem\n` +
        `keep the token secret: whoever holds it can join as ${t.node}.\n`,
    };
  },
};
