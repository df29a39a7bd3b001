// `meshctl top`: live per-edge traffic from the control plane's traffic view
// (GET /v1/traffic): who calls whom, how often, how many fail or are denied,
// how fast, highest rps first. `--watch` follows the stream and redraws (a
// terminal) or prints each update (a pipe: plain lines; -o json: one JSON
// object per line).
import { createRequire } from 'node:module';
import type { TrafficEdge, TrafficSnapshot } from '@amime/traffic';
import { formatDuration, parseDuration } from '../duration.js';
import { UsageError } from '../errors.js';
import { table } from '../output.js';
import { str, type Command, type CommandContext } from './command.js';
import { namespaceOf, namespaceOption } from './get.js';

const HEADERS = ['source', 'destination', 'rps', 'err%', 'denied', 'p50', 'p99', 'mtls'];
const MIN_WINDOW = 10;
const MAX_WINDOW = 3600;

/** `--window`: a duration of 10s to 1h; undefined for the control plane's default. */
export function windowOf(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const s = parseDuration(text);
  if (s === undefined || s < MIN_WINDOW || s > MAX_WINDOW) throw new UsageError(`--window must be a duration from 10s to 1h (e.g. 60s, 5m), not ${JSON.stringify(text)}`);
  return s;
}

export function formatRps(rps: number): string {
  if (rps >= 100) return rps.toFixed(0);
  if (rps >= 1) return rps.toFixed(1);
  return rps.toFixed(2);
}

/** Milliseconds for a column: 0.42ms, 4.5ms, 95ms, 1.25s; '-' without samples. */
export function formatMs(ms: number | null): string {
  if (ms === null) return '-';
  if (ms >= 1000) return `${(ms / 1000).toFixed(2)}s`;
  if (ms >= 10) return `${Math.round(ms)}ms`;
  if (ms >= 1) return `${ms.toFixed(1)}ms`;
  return `${ms.toFixed(2)}ms`;
}

const sourceName = (e: TrafficEdge): string => (e.source.namespace !== undefined && e.source.service !== undefined ? `${e.source.namespace}/${e.source.service}` : e.source.identity);

export function topRow(e: TrafficEdge): string[] {
  return [
    sourceName(e),
    `${e.destination.namespace}/${e.destination.service}`,
    formatRps(e.rps),
    `${(e.errorRate * 100).toFixed(1)}%`,
    String(e.denials),
    formatMs(e.p50Ms),
    formatMs(e.p99Ms),
    e.mtls ? 'yes' : 'no',
  ];
}

/** Edges touching namespace `ns` (as source or destination), highest rps first. */
export function filterSnapshot(s: TrafficSnapshot, ns: string | undefined): TrafficSnapshot {
  const edges = ns === undefined ? [...s.edges] : s.edges.filter((e) => e.destination.namespace === ns || e.source.namespace === ns);
  edges.sort((a, b) => b.rps - a.rps || b.requests - a.requests);
  return { ...s, edges };
}

/** What to tell someone who sees no edges. */
export function emptyMessage(s: TrafficSnapshot, ns: string | undefined, total: number): string {
  const window = formatDuration(s.windowSeconds);
  if (ns !== undefined && total > 0) return `no traffic to or from namespace ${ns} in the last ${window} (${total} edge${total === 1 ? '' : 's'} in other namespaces: drop -n to see them)\n`;
  return (
    `no traffic in the last ${window}.\n` +
    `  agents report the calls they receive every reportInterval (MeshConfig spec.monitor.reportInterval, 10s by default):\n` +
    `  new traffic shows within one interval. If it never does, check that 'meshctl agents' lists the callee's agent\n` +
    `  and that calls go through the mesh (the caller's agent outbound port), or widen --window.\n`
  );
}

export function topTable(s: TrafficSnapshot, ns: string | undefined, total = s.edges.length): string {
  if (s.edges.length === 0) return emptyMessage(s, ns, total);
  return table(HEADERS, s.edges.map(topRow));
}

function positiveInt(ctx: CommandContext, name: string): number | undefined {
  const text = str(ctx.values, name);
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < 1 || n > 1_000_000) throw new UsageError(`--${name} must be a whole number from 1 to 1000000, not ${JSON.stringify(text)}`);
  return n;
}

export const top: Command = {
  name: 'top',
  synopsis: '[-n NAMESPACE] [--window 60s] [--watch [--count N]]',
  summary: 'live traffic per edge (source → destination): rps, error %, denials, p50/p99 latency, mTLS; highest rps first; --watch follows it',
  options: { ...namespaceOption, window: { type: 'string' }, watch: { type: 'boolean', short: 'w' }, count: { type: 'string' } },
  async run(ctx) {
    const ns = namespaceOf(ctx);
    const window = windowOf(str(ctx.values, 'window'));
    const watch = ctx.values['watch'] === true;
    const count = positiveInt(ctx, 'count');
    if (count !== undefined && !watch) throw new UsageError('--count goes with --watch (stop after that many updates)');
    const cp = ctx.controlPlane();
    if (!watch) {
      const snap = await cp.traffic(window);
      const shown = filterSnapshot(snap, ns);
      return { data: shown, human: topTable(shown, ns, snap.edges.length) };
    }
    // A terminal gets the table redrawn in place; a pipe gets each update as plain lines.
    const tty = ctx.format === 'table' && process.stdout.isTTY === true;
    if (tty) ctx.progress('watching traffic (Ctrl-C to stop)');
    const ac = new AbortController();
    const stop = () => ac.abort();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    let seen = 0;
    try {
      await cp.watchTraffic(
        (snap) => {
          const shown = filterSnapshot(snap, ns);
          if (ctx.format === 'json') ctx.write(`${JSON.stringify(shown)}\n`);
          else if (ctx.format === 'yaml') ctx.write(`---\n${toYaml(shown)}`);
          else if (tty) ctx.write(`\x1b[H\x1b[2J${shown.generatedAt}  window ${formatDuration(shown.windowSeconds)}\n\n${topTable(shown, ns, snap.edges.length)}`);
          else ctx.write(`# ${shown.generatedAt} window ${formatDuration(shown.windowSeconds)}\n${topTable(shown, ns, snap.edges.length)}`);
          if (count !== undefined && ++seen >= count) ac.abort();
        },
        { ...(window !== undefined && { windowSeconds: window }), signal: ac.signal },
      );
    } finally {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
    }
    return { raw: '' };
  },
};

function toYaml(value: unknown): string {
  // loaded only when YAML is printed, as output.ts does
  return (createRequire(import.meta.url)('yaml') as typeof import('yaml')).stringify(value);
}
