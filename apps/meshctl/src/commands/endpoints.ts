// `meshctl endpoints [SERVICE] [-n NS]`: every registered instance (one row
// each), from GET /v1/endpoints.
import type { EndpointView } from '@amime/control-plane';
import { UsageError } from '../errors.js';
import { table } from '../output.js';
import type { Command } from './command.js';
import { namespaceOf, namespaceOption } from './get.js';

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

export const hostPort = (address: string, port: number): string => `${address.includes(':') ? `[${address}]` : address}:${port}`;

export function endpointsTable(items: readonly EndpointView[]): string {
  return table(
    ['namespace', 'service', 'node', 'address:port', 'identity', 'zone', 'health'],
    items.map((e) => [e.namespace, e.service, e.node, hostPort(e.address, e.port), e.identity, e.zone ?? '-', e.reason ? `${e.health} (${e.reason})` : e.health]),
  );
}

export const endpoints: Command = {
  name: 'endpoints',
  synopsis: '[SERVICE] [-n NAMESPACE]',
  summary: 'registered instances, one row each: service, node, address, identity, zone and health (every namespace unless -n)',
  options: { ...namespaceOption },
  positionals: { min: 0, max: 1, names: '[SERVICE]' },
  async run(ctx) {
    const service = ctx.args[0];
    if (service !== undefined && !DNS_LABEL.test(service)) throw new UsageError(`SERVICE ${JSON.stringify(service)} is not a service name (lowercase letters, digits and "-")`);
    const namespace = namespaceOf(ctx);
    const items = await ctx.controlPlane().endpoints({ ...(service !== undefined && { service }), ...(namespace !== undefined && { namespace }) });
    const where = [service !== undefined ? `of service ${service}` : '', namespace !== undefined ? `in namespace ${namespace}` : ''].filter((w) => w !== '').join(' ');
    return { data: items, human: items.length === 0 ? `no endpoints${where ? ` ${where}` : ''}\n` : endpointsTable(items) };
  },
};
