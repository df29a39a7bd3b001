// The demo's traffic: a steady, bounded-rate stream of requests to web (at
// most `rate` in flight; a tick with that many outstanding is skipped), with a
// one-line summary every interval. It runs until stopped.
import http from 'node:http';

export interface TrafficStats {
  sent: number;
  ok: number;
  failed: number;
  skipped: number;
  reviews: Record<string, number>;
  /** web's direct calls to inventory, by status (403: the mesh refused them). */
  direct: Record<string, number>;
}

export interface Traffic {
  readonly stats: TrafficStats;
  stop(): Promise<void>;
}

const emptyStats = (): TrafficStats => ({ sent: 0, ok: 0, failed: 0, skipped: 0, reviews: {}, direct: {} });

export function summarize(s: TrafficStats): string {
  const kv = (o: Record<string, number>) => Object.entries(o).map(([k, v]) => `${k} ${v}`).join(', ') || 'none';
  return `${s.sent} requests to web, ${s.ok} ok, ${s.failed} failed${s.skipped ? `, ${s.skipped} ticks skipped (busy)` : ''}; reviews: ${kv(s.reviews)}; web → inventory direct: ${kv(s.direct)}`;
}

export function startTraffic(url: string, rate: number, report: (line: string) => void, reportEveryMs = 30_000): Traffic {
  const agent = new http.Agent({ keepAlive: true, maxSockets: Math.max(1, rate) });
  const total = emptyStats();
  let window = emptyStats();
  let inFlight = 0;
  let idle: (() => void) | undefined;
  const count = (s: TrafficStats, f: (s: TrafficStats) => void) => (f(s), f(window));
  const one = () => {
    if (inFlight >= Math.max(1, rate)) return void count(total, (s) => s.skipped++);
    inFlight++;
    count(total, (s) => s.sent++);
    let settled = false;
    const done = (failed: boolean) => {
      if (settled) return;
      settled = true;
      if (failed) count(total, (s) => s.failed++);
      if (--inFlight === 0) idle?.();
    };
    const req = http.get(url, { agent, timeout: 10_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body.length < 64 * 1024 ? (body += d) : undefined));
      res.on('end', () => {
        try {
          const page = JSON.parse(body) as { reviews?: { version?: string }; inventoryDirect?: { status?: number } };
          const version = page.reviews?.version;
          const direct = page.inventoryDirect?.status;
          count(total, (s) => {
            if (res.statusCode === 200) s.ok++;
            else s.failed++;
            if (version) s.reviews[version] = (s.reviews[version] ?? 0) + 1;
            if (direct !== undefined) s.direct[direct] = (s.direct[direct] ?? 0) + 1;
          });
          done(false);
        } catch {
          done(true);
        }
      });
      res.on('error', () => undefined);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => done(true));
  };
  const ticker = rate > 0 ? setInterval(one, 1000 / rate) : undefined;
  const reporter = setInterval(() => {
    if (window.sent > 0) report(`last ${reportEveryMs / 1000} s: ${summarize(window)}`);
    window = emptyStats();
  }, reportEveryMs);
  return {
    stats: total,
    async stop() {
      clearInterval(ticker);
      clearInterval(reporter);
      if (inFlight > 0) await new Promise<void>((r) => ((idle = r), setTimeout(r, 5000).unref()));
      agent.destroy();
    },
  };
}
