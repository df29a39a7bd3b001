// `meshctl anomalies`: what the control plane's communication-pattern monitor
// flagged (new edges, denial and error spikes, volume far from its baseline,
// identities calling from new nodes), newest first; `--watch` follows the
// stream. `meshctl anomalies accept SOURCE NS/SERVICE` marks an edge normal.
import { AnomalyClient } from '@amime/control-plane';
import type { Finding } from '@amime/monitor';
import { parseDuration } from '../duration.js';
import { UsageError } from '../errors.js';
import { table } from '../output.js';
import { str, type Command, type CommandContext } from './command.js';

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

function value(f: Finding, v: number | string | string[]): string {
  if (Array.isArray(v)) return v.length === 0 ? '-' : v.join(',');
  if (typeof v === 'string') return v;
  if (f.unit === 'ratio') return `${Math.round(v * 1000) / 10}%`;
  if (f.unit === 'requests/s') return `${v}/s`;
  return String(v);
}

const HEADERS = ['time', 'kind', 'service', 'source', 'from node', 'observed', 'baseline', 'threshold'];

function row(f: Finding): string[] {
  const threshold = f.kind === 'new_edge' || f.kind === 'new_node' ? '-' : value(f, f.threshold);
  return [f.at, f.kind, `${f.edge.namespace}/${f.edge.service}`, f.edge.source, f.edge.sourceNode, value(f, f.observed), value(f, f.baseline), threshold];
}

export function anomaliesTable(findings: readonly Finding[]): string {
  if (findings.length === 0) return 'no anomalies\n';
  return table(HEADERS, findings.map(row));
}

/** `--since`: a duration back from now (1h, 90m) or an ISO time; as epoch ms text. */
export function sinceOf(text: string | undefined, now = Date.now()): string | undefined {
  if (text === undefined) return undefined;
  const seconds = parseDuration(text);
  if (seconds !== undefined) return String(now - seconds * 1000);
  const ms = Date.parse(text);
  if (Number.isNaN(ms)) throw new UsageError(`--since must be a duration (1h, 30m) or an ISO time, not ${JSON.stringify(text)}`);
  return String(ms);
}

function positiveInt(ctx: CommandContext, name: string): number | undefined {
  const text = str(ctx.values, name);
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < 1 || n > 10_000) throw new UsageError(`--${name} must be a whole number from 1 to 10000, not ${JSON.stringify(text)}`);
  return n;
}

/** A client for the anomaly routes, with the same URL, trust and credential as ctx.controlPlane(). */
function anomalyClient(ctx: CommandContext): AnomalyClient {
  const cp = ctx.controlPlane();
  const c = ctx.credential();
  return new AnomalyClient({
    url: cp.url,
    bundlePem: c.bundlePem,
    credential: { certPem: c.certPem, keyPem: c.keyPem },
    trustDomain: cp.trustDomain,
    expectedServerId: cp.expectedServerId,
    timeoutMs: cp.timeoutMs,
  });
}

export const anomalies: Command = {
  name: 'anomalies',
  synopsis: '[--since 1h|ISO] [--limit N] [--watch [--count N]]',
  summary: 'findings of the communication-pattern monitor, newest first; --watch prints each new one as it happens',
  options: { since: { type: 'string' }, limit: { type: 'string' }, watch: { type: 'boolean', short: 'w' }, count: { type: 'string' } },
  async run(ctx) {
    const since = sinceOf(str(ctx.values, 'since'));
    const limit = positiveInt(ctx, 'limit');
    const count = positiveInt(ctx, 'count');
    const watch = ctx.values['watch'] === true;
    if (count !== undefined && !watch) throw new UsageError('--count goes with --watch (stop after that many new findings)');
    if (ctx.format === 'yaml' && watch) throw new UsageError('--watch prints a table or JSON lines (-o json), not YAML');
    const client = anomalyClient(ctx);
    try {
      if (!watch) {
        const list = await client.list({ ...(since !== undefined && { since }), ...(limit !== undefined && { limit }) });
        const learning = list.monitor['learning'] === true ? `(the monitor is still learning the normal pattern until ${String(list.monitor['learningEndsAt'])}; nothing is flagged before)\n` : '';
        return { data: list.items, human: anomaliesTable(list.items) + learning };
      }
      // Rows are printed as findings arrive: the header once, columns sized for typical values.
      if (ctx.format === 'table') ctx.write(HEADERS.map((h) => h.toUpperCase()).join('  ') + '\n');
      ctx.progress('watching for anomalies (Ctrl-C to stop)');
      const ac = new AbortController();
      const stop = () => ac.abort();
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      let seen = 0;
      try {
        await client.watch((f) => {
          ctx.write(ctx.format === 'json' ? `${JSON.stringify(f)}\n` : `${row(f).join('  ')}\n`);
          if (count !== undefined && ++seen >= count) ac.abort();
        }, ac.signal);
      } finally {
        process.off('SIGINT', stop);
        process.off('SIGTERM', stop);
      }
      return { raw: '' };
    } finally {
      client.close();
    }
  },
};

/** `NS/SERVICE` → its parts; usage error otherwise. */
export function parseService(text: string): { namespace: string; service: string } {
  const [namespace, service, ...rest] = text.split('/');
  if (rest.length > 0 || !namespace || !service || !DNS_LABEL.test(namespace) || !DNS_LABEL.test(service)) {
    throw new UsageError(`the destination must be NAMESPACE/SERVICE (lowercase letters, digits and "-"), not ${JSON.stringify(text)}`);
  }
  return { namespace, service };
}

export const anomaliesAccept: Command = {
  name: 'anomalies accept',
  synopsis: 'SOURCE-SPIFFE-ID NAMESPACE/SERVICE',
  summary: 'accept an edge as normal: it is not flagged as new again, and its current traffic becomes its baseline',
  positionals: { min: 2, max: 2, names: 'SOURCE-SPIFFE-ID NAMESPACE/SERVICE' },
  async run(ctx) {
    const source = ctx.args[0]!;
    if (!/^spiffe:\/\/[^/]+\/.+/.test(source)) throw new UsageError(`the source must be a SPIFFE ID (spiffe://<trust-domain>/ns/<ns>/sa/<sa>), not ${JSON.stringify(source)}`);
    const { namespace, service } = parseService(ctx.args[1]!);
    const client = anomalyClient(ctx);
    try {
      const r = await client.accept({ source, service, namespace });
      const what = `${namespace}/${service} <- ${source}`;
      return { data: r, human: r.changed ? `accepted ${what}: it is no longer flagged as new\n` : `${what} was already accepted\n` };
    } finally {
      client.close();
    }
  },
};
