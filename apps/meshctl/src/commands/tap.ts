// `meshctl tap SERVICE`: a live stream of the requests (and TCP streams) to
// and from one service, from every agent that hosts or calls it, like
// `linkerd viz tap`. One line per request for people, JSON lines with -o
// json. Ends by itself after --duration or --max events (exit 0); Ctrl-C ends
// it cleanly. Metadata only: no headers beyond the authority, no bodies, and
// paths arrive without their query string.
import type { TapEvent } from '@amime/protocol';
import type { TapDropped, TapFrame } from '@amime/control-plane';
import { formatDuration, parseDuration } from '../duration.js';
import { UsageError } from '../errors.js';
import { str, type Command, type CommandContext } from './command.js';
import { namespaceOf, namespaceOption } from './get.js';

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const DEFAULT_DURATION_S = 60;
const MAX_DURATION_S = 600;

interface TapFlags {
  service: string;
  namespace: string;
  durationS: number;
  max: number | undefined;
  rate: number | undefined;
}

function wholeNumber(ctx: CommandContext, name: string, max: number, what: string): number | undefined {
  const text = str(ctx.values, name);
  if (text === undefined) return undefined;
  const n = /^\d{1,9}$/.test(text) ? Number(text) : Number.NaN;
  if (!(n >= 1 && n <= max)) throw new UsageError(`--${name} must be a whole number from 1 to ${max} (${what}), not ${JSON.stringify(text)}`);
  return n;
}

export function tapFlags(ctx: CommandContext): TapFlags {
  const service = ctx.args[0]!;
  if (!DNS_LABEL.test(service)) throw new UsageError(`the service must be a service name (lowercase letters, digits and "-"), not ${JSON.stringify(service)}; give its namespace with -n`);
  const durationText = str(ctx.values, 'duration');
  const durationS = durationText === undefined ? DEFAULT_DURATION_S : parseDuration(durationText);
  if (durationS === undefined || durationS < 1 || durationS > MAX_DURATION_S) {
    throw new UsageError(`--duration must be from 1s to 10m (e.g. 30s, 2m), not ${JSON.stringify(durationText)}`);
  }
  return {
    service,
    namespace: namespaceOf(ctx) ?? 'default',
    durationS,
    max: wholeNumber(ctx, 'max', 1_000_000, 'events to print before exiting'),
    rate: wholeNumber(ctx, 'rate', 1000, 'events per second per agent'),
  };
}

/** spiffe://td/ns/shop/sa/web → shop/web; other IDs whole. */
export function shortIdentity(id: string | undefined): string {
  if (id === undefined) return '(no identity)';
  const m = /^spiffe:\/\/[^/]+\/ns\/([^/]+)\/sa\/([^/]+)$/.exec(id);
  return m ? `${m[1]}/${m[2]}` : id;
}

function ms(n: number): string {
  return n < 10 ? `${n.toFixed(2)}ms` : n < 100 ? `${n.toFixed(1)}ms` : `${Math.round(n)}ms`;
}

function bytes(n: number | undefined): string {
  if (n === undefined) return '-';
  return n < 1024 ? `${n}B` : n < 1 << 20 ? `${(n / 1024).toFixed(1)}KiB` : `${(n / (1 << 20)).toFixed(1)}MiB`;
}

// eslint-disable-next-line no-control-regex -- finding control characters is the point
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/g;

/**
 * One line for people: time, direction, node, source → destination, request,
 * status, duration, route/upstream, cause. Control characters are removed
 * (the control plane refuses them already; a terminal must never act on one).
 */
export function tapLine(e: TapEvent): string {
  return tapText(e).replace(CONTROL, '');
}

function tapText(e: TapEvent): string {
  const time = e.time.slice(11, 23);
  const request = e.protocol === 'tcp' ? `TCP in=${bytes(e.bytesIn)} out=${bytes(e.bytesOut)}` : `${e.method ?? '-'} ${e.path ?? '-'}`;
  const via = [e.route ? `route=${e.route}` : '', e.upstream ? `upstream=${e.upstream}` : ''].filter(Boolean).join(' ');
  const cause = e.error ? ` ${e.status === 403 || /denied|no_matching_allow/.test(e.error) ? 'DENIED' : 'error'}=${e.error}` : '';
  const retries = e.retries ? ` retries=${e.retries}` : '';
  const status = e.status === undefined ? (e.protocol === 'tcp' ? (e.error ? 'fail' : 'ok') : '-') : String(e.status);
  return `${time} ${e.direction.padEnd(8)} ${e.node} ${shortIdentity(e.source)} -> ${e.namespace}/${e.service} ${request} ${status} ${ms(e.durationMs)}${via ? ` ${via}` : ''}${retries}${cause}`;
}

function droppedNote(d: TapDropped | undefined, rate: number): string | undefined {
  if (!d) return undefined;
  const parts: string[] = [];
  if (d.rateLimited > 0) parts.push(`${d.rateLimited} over the ${rate}/s per agent rate (raise --rate)`);
  if (d.slowClient > 0) parts.push(`${d.slowClient} because this terminal read too slowly`);
  if (d.excess > 0) parts.push(`${d.excess} an agent sent beyond the rate`);
  return parts.length > 0 ? `dropped: ${parts.join('; ')}` : undefined;
}

export const tap: Command = {
  name: 'tap',
  synopsis: 'SERVICE [-n NAMESPACE] [--duration 60s] [--max N] [--rate N]',
  summary: 'live stream of the requests to and from a service, from every agent (paths without query strings, no headers or bodies); ends after --duration or --max events',
  options: { ...namespaceOption, duration: { type: 'string' }, max: { type: 'string' }, rate: { type: 'string' } },
  positionals: { min: 1, max: 1, names: 'SERVICE' },
  async run(ctx) {
    const f = tapFlags(ctx);
    if (ctx.format === 'yaml') throw new UsageError('tap prints lines for people or JSON lines (-o json), not YAML');
    const target = `${f.namespace}/${f.service}`;
    const ac = new AbortController();
    const stop = () => ac.abort();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    let printed = 0;
    let agents = 0;
    let rate = f.rate ?? 100;
    let lastDropped: TapDropped | undefined;
    const onFrame = (fr: TapFrame) => {
      switch (fr.type) {
        case 'started':
          agents = fr.agents.length;
          rate = fr.maxEventsPerSecond;
          ctx.progress(
            agents === 0
              ? `tapping ${target} for ${formatDuration(fr.durationMs / 1000)}: no agent is connected to the control plane yet; agents that connect in that time are tapped too`
              : `tapping ${target} on ${agents} agent${agents === 1 ? '' : 's'} (${fr.agents.join(', ')}) for ${formatDuration(fr.durationMs / 1000)} (Ctrl-C to stop)`,
          );
          return;
        case 'agent':
          if (fr.state === 'joined') agents++;
          ctx.progress(`agent ${fr.node} ${fr.state === 'joined' ? 'connected and is tapped too' : 'disconnected'}`);
          return;
        case 'error':
          ctx.progress(`agent ${fr.node} refused the tap (${fr.code}): ${fr.message}`);
          return;
        case 'events':
          if (fr.dropped) lastDropped = fr.dropped;
          for (const e of fr.events) {
            if (f.max !== undefined && printed >= f.max) break;
            ctx.write(ctx.format === 'json' ? `${JSON.stringify(e)}\n` : `${tapLine(e)}\n`);
            printed++;
          }
          if (f.max !== undefined && printed >= f.max) ac.abort();
          return;
        case 'end':
          lastDropped = fr.dropped;
          return;
      }
    };
    try {
      await ctx.controlPlane().tap({ service: f.service, namespace: f.namespace, duration: `${f.durationS}s`, ...(f.rate !== undefined && { rate: f.rate }) }, onFrame, ac.signal);
    } finally {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
    }
    const note = droppedNote(lastDropped, rate);
    if (note) ctx.progress(note);
    if (printed === 0 && !ac.signal.aborted) {
      ctx.progress(
        `no requests to or from ${target} in ${formatDuration(f.durationS)} on ${agents} agent${agents === 1 ? '' : 's'}.\n` +
          `  check: that ${target} gets traffic now; that -n names its namespace (meshctl get Service -n ${f.namespace}); ` +
          `that the agents hosting or calling it are connected (meshctl agents)`,
      );
    }
    return { raw: '' };
  },
};
