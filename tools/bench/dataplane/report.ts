// Medians across repeats, ratios against direct and against the HAProxy
// pair, the issue's targets with pass/fail, and the printed tables.

export const PATHS = ['direct', 'haproxy', 'nodepipe', 'l4', 'nodehttp', 'l7'] as const;
export type PathName = (typeof PATHS)[number];
export const PATH_LABEL: Record<PathName, string> = { direct: 'direct', haproxy: 'haproxy pair', nodepipe: 'node pipe pair', nodehttp: 'node http pair', l4: 'amime L4 pair', l7: 'amime L7 pair' };

export const SHAPES = ['keepalive', 'single', 'close'] as const;
export type ShapeName = (typeof SHAPES)[number];

/** One wrk run of one path with one load shape. */
export interface RunResult {
  path: PathName;
  shape: ShapeName;
  repeat: number;
  requests: number;
  seconds: number;
  rps: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
  /** CPU seconds during the run: the two proxies (client side, server side), the backend, wrk. */
  cpuS: { proxyClient: number; proxyServer: number; backend: number; wrk: number };
  /** Peak VmRSS during the run of the two proxies (client, server), MiB. */
  peakRssMiB: { client: number; server: number };
}

export interface Summary {
  path: PathName;
  shape: ShapeName;
  runs: number;
  rps: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
  /** Proxies' CPU seconds (both processes) per 10,000 requests; 0 for direct. */
  proxyCpuPer10kS: number;
  /** CPU microseconds per request of each process. */
  cpuUsPerRequest: { proxyClient: number; proxyServer: number; backend: number; wrk: number };
  /** Cores busy on average during the run, per process. */
  cores: { proxyClient: number; proxyServer: number; backend: number; wrk: number };
  /** Largest peak VmRSS of the pair (sum) over the repeats, MiB; 0 for direct. */
  peakRssMiB: number;
  peakRssPerProcessMiB: { client: number; server: number };
}

export interface Ratios {
  rpsVsDirect: number;
  p50VsDirect: number;
  p99VsDirect: number;
  rpsVsHaproxy: number;
  p50VsHaproxy: number;
  p99VsHaproxy: number;
  cpuPerRequestVsHaproxy: number;
  rssVsHaproxy: number;
}

export interface TargetResult {
  name: string;
  path: PathName;
  shape: ShapeName | 'idle' | 'all';
  /** The measured ratio (or MiB for memory). */
  value: number;
  op: '>=' | '<=';
  limit: number;
  unit: 'x haproxy' | 'MiB';
  pass: boolean;
}

export function median(xs: readonly number[]): number {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export function summarize(runs: readonly RunResult[], path: PathName, shape: ShapeName): Summary {
  const rs = runs.filter((r) => r.path === path && r.shape === shape);
  const per = (k: keyof RunResult['cpuS']) => median(rs.map((r) => (r.cpuS[k] / r.requests) * 1e6));
  const cores = (k: keyof RunResult['cpuS']) => median(rs.map((r) => r.cpuS[k] / r.seconds));
  return {
    path,
    shape,
    runs: rs.length,
    rps: median(rs.map((r) => r.rps)),
    p50Ms: median(rs.map((r) => r.p50Ms)),
    p99Ms: median(rs.map((r) => r.p99Ms)),
    errors: rs.reduce((a, r) => a + r.errors, 0),
    proxyCpuPer10kS: median(rs.map((r) => ((r.cpuS.proxyClient + r.cpuS.proxyServer) / r.requests) * 10_000)),
    cpuUsPerRequest: { proxyClient: per('proxyClient'), proxyServer: per('proxyServer'), backend: per('backend'), wrk: per('wrk') },
    cores: { proxyClient: cores('proxyClient'), proxyServer: cores('proxyServer'), backend: cores('backend'), wrk: cores('wrk') },
    peakRssMiB: Math.max(0, ...rs.map((r) => r.peakRssMiB.client + r.peakRssMiB.server)),
    peakRssPerProcessMiB: { client: Math.max(0, ...rs.map((r) => r.peakRssMiB.client)), server: Math.max(0, ...rs.map((r) => r.peakRssMiB.server)) },
  };
}

export function ratios(s: Summary, direct: Summary, haproxy: Summary): Ratios {
  return {
    rpsVsDirect: s.rps / direct.rps,
    p50VsDirect: s.p50Ms / direct.p50Ms,
    p99VsDirect: s.p99Ms / direct.p99Ms,
    rpsVsHaproxy: s.rps / haproxy.rps,
    p50VsHaproxy: s.p50Ms / haproxy.p50Ms,
    p99VsHaproxy: s.p99Ms / haproxy.p99Ms,
    cpuPerRequestVsHaproxy: s.path === 'direct' ? NaN : s.proxyCpuPer10kS / haproxy.proxyCpuPer10kS,
    rssVsHaproxy: s.path === 'direct' ? NaN : s.peakRssMiB / haproxy.peakRssMiB,
  };
}

type Get = (path: PathName, shape: ShapeName) => { s: Summary; r: Ratios };

/** The issue's targets, against the HAProxy pair of the same run. */
export function evaluateTargets(get: Get, agentIdleRssMiB: number, agentPeakRssMiB: number): TargetResult[] {
  const t = (name: string, path: PathName, shape: TargetResult['shape'], value: number, op: TargetResult['op'], limit: number, unit: TargetResult['unit'] = 'x haproxy'): TargetResult => ({
    name,
    path,
    shape,
    value,
    op,
    limit,
    unit,
    pass: Number.isFinite(value) && (op === '>=' ? value >= limit : value <= limit),
  });
  return [
    t('L4 rps at keep-alive connections', 'l4', 'keepalive', get('l4', 'keepalive').r.rpsVsHaproxy, '>=', 0.8),
    t('L4 proxy CPU per request', 'l4', 'keepalive', get('l4', 'keepalive').r.cpuPerRequestVsHaproxy, '<=', 1.25),
    t('L4 p99 at one connection', 'l4', 'single', get('l4', 'single').r.p99VsHaproxy, '<=', 1.2),
    t('L7 rps at keep-alive connections', 'l7', 'keepalive', get('l7', 'keepalive').r.rpsVsHaproxy, '>=', 0.6),
    t('L7 new connections/s (Connection: close)', 'l7', 'close', get('l7', 'close').r.rpsVsHaproxy, '>=', 2),
    t('agent RSS idle (largest agent)', 'l4', 'idle', agentIdleRssMiB, '<=', 60, 'MiB'),
    t('agent RSS under load (largest agent, peak)', 'l4', 'all', agentPeakRssMiB, '<=', 100, 'MiB'),
  ];
}

// ---------------------------------------------------------------- printing

const f = (x: number, digits = 2) => (Number.isFinite(x) ? x.toFixed(digits) : '-');
const k = (x: number) => (Number.isFinite(x) ? (x >= 10_000 ? `${(x / 1000).toFixed(1)}k` : x.toFixed(0)) : '-');

function table(header: string[], rows: string[][]): string {
  const w = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join('  ');
  return [line(header), w.map((n) => '-'.repeat(n)).join('  '), ...rows.map(line)].join('\n');
}

export function shapeTable(shape: ShapeName, title: string, get: Get, targets: readonly TargetResult[]): string {
  const rows = PATHS.map((p) => {
    const { s, r } = get(p, shape);
    const mine = targets.filter((t) => t.path === p && t.shape === shape);
    const target = mine.map((t) => `${t.name.startsWith('L4 proxy CPU') ? 'cpu' : t.name.includes('p99') ? 'p99' : 'rps'} ${t.op === '>=' ? '≥' : '≤'}${t.limit}x: ${f(t.value)} ${t.pass ? 'PASS' : 'FAIL'}`).join('; ');
    return [
      PATH_LABEL[p],
      k(s.rps),
      f(s.p50Ms),
      f(s.p99Ms),
      p === 'direct' ? '-' : f(s.proxyCpuPer10kS),
      p === 'direct' ? '-' : `${f(s.cores.proxyClient)}+${f(s.cores.proxyServer)}`,
      f(s.cores.backend),
      p === 'direct' ? '-' : f(s.peakRssMiB, 0),
      f(r.rpsVsDirect),
      f(r.p99VsDirect),
      f(r.rpsVsHaproxy),
      f(r.p50VsHaproxy),
      f(r.p99VsHaproxy),
      f(r.cpuPerRequestVsHaproxy),
      f(r.rssVsHaproxy),
      String(s.errors),
      target || '-',
    ];
  });
  const header = ['path', 'rps', 'p50 ms', 'p99 ms', 'CPU s/10k', 'cores c+s', 'backend', 'RSS MiB', 'rps/dir', 'p99/dir', 'rps/hap', 'p50/hap', 'p99/hap', 'CPU/hap', 'RSS/hap', 'errors', 'target'];
  return `${title}\n${table(header, rows)}`;
}

export function targetsTable(targets: readonly TargetResult[]): string {
  return `targets (against the HAProxy pair of this run)\n${table(
    ['target', 'measured', 'limit', 'result'],
    targets.map((t) => [t.name, `${f(t.value)} ${t.unit}`, `${t.op === '>=' ? '≥' : '≤'} ${t.limit} ${t.unit}`, t.pass ? 'PASS' : 'FAIL']),
  )}`;
}
