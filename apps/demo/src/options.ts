// The orchestrator's flags, validated once (exit 64 with the fix on a bad one).
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';

export const USAGE = `usage: demo [--state DIR] [--credentials DIR] [--ca URL] [--control-plane URL]
            [--free-ports] [--rate N] [--deny-every N] [--wait SECONDS] [--learning-window 2m]
            [--cp-metrics URL] [--ca-metrics URL] [--dashboard URL] [--verbose]
  --state            where the demo keeps agent configs, SVIDs, access logs, ports (default var/demo; AMIME_DEMO_STATE)
  --credentials      the CA admin directory (default var/ca/admin; AMIME_CREDENTIALS); ca-url and
                     control-plane-url in it say where the CA and the control plane are
  --ca, --control-plane   override those URLs (AMIME_CA_URL, AMIME_CONTROL_PLANE_URL)
  --free-ports       on first start pick free loopback ports instead of the fixed ones (tests); kept in <state>/ports.json
  --rate             traffic generator requests per second to web (default 5; 0: none)
  --deny-every       web calls inventory directly (a denied edge) on every N-th request (default 20; 0: never)
  --wait             how long to wait for the CA, the control plane and the agents (default 90)
  --learning-window  the monitor's learning window set in the MeshConfig (default 2m)
  --cp-metrics, --ca-metrics   where their /metrics are, for the printout and the Prometheus config
                     (default http://127.0.0.1:9444 and http://127.0.0.1:9443, as npm start runs them)
  --dashboard        where the dashboard is, for the printout (default http://127.0.0.1:18090/, as npm start runs it)
  --verbose          pass every line of the agents' logs through (default: warnings, errors, lifecycle)`;

export interface DemoOptions {
  stateDir: string;
  credentialsDir: string;
  caUrl: string | undefined;
  controlPlaneUrl: string | undefined;
  freePorts: boolean;
  rate: number;
  denyEvery: number;
  waitMs: number;
  learningWindow: string;
  cpMetrics: string;
  caMetrics: string;
  dashboard: string;
  verbose: boolean;
}

export class UsageError extends Error {}

const DURATION = /^\d{1,6}(ms|s|m|h)$/;

export function parseOptions(argv: string[], env: NodeJS.ProcessEnv, cwd: string): DemoOptions {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      options: {
        state: { type: 'string' },
        credentials: { type: 'string' },
        ca: { type: 'string' },
        'control-plane': { type: 'string' },
        'free-ports': { type: 'boolean' },
        rate: { type: 'string' },
        'deny-every': { type: 'string' },
        wait: { type: 'string' },
        'learning-window': { type: 'string' },
        'cp-metrics': { type: 'string' },
        'ca-metrics': { type: 'string' },
        dashboard: { type: 'string' },
        verbose: { type: 'boolean' },
      },
    }));
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const str = (k: string) => values[k] as string | undefined;
  const whole = (k: string, dflt: number, max: number): number => {
    const v = str(k);
    if (v === undefined) return dflt;
    const n = Number(v);
    if (!/^\d+$/.test(v) || n > max) throw new UsageError(`--${k} must be a whole number 0-${max}, not ${JSON.stringify(v)}`);
    return n;
  };
  const url = (k: string, v: string | undefined, scheme: RegExp): string | undefined => {
    if (v === undefined) return undefined;
    if (!scheme.test(v)) throw new UsageError(`--${k} must look like ${scheme.source.replace(/\\/g, '')}, not ${JSON.stringify(v)}`);
    return v.replace(/\/+$/, '');
  };
  const learningWindow = str('learning-window') ?? '2m';
  if (!DURATION.test(learningWindow)) throw new UsageError(`--learning-window must be a duration like 2m or 30s, not ${JSON.stringify(learningWindow)}`);
  const wait = whole('wait', 90, 3600);
  if (wait < 1) throw new UsageError('--wait must be at least 1 second');
  return {
    stateDir: resolve(cwd, str('state') ?? env['AMIME_DEMO_STATE'] ?? 'var/demo'),
    credentialsDir: resolve(cwd, str('credentials') ?? env['AMIME_CREDENTIALS'] ?? 'var/ca/admin'),
    caUrl: url('ca', str('ca') ?? env['AMIME_CA_URL'], /^https:\/\/[^/]+\/?$/),
    controlPlaneUrl: url('control-plane', str('control-plane') ?? env['AMIME_CONTROL_PLANE_URL'], /^https:\/\/[^/]+\/?$/),
    freePorts: values['free-ports'] === true,
    rate: whole('rate', 5, 100),
    denyEvery: whole('deny-every', 20, 1_000_000),
    waitMs: wait * 1000,
    learningWindow,
    cpMetrics: url('cp-metrics', str('cp-metrics'), /^http:\/\/[^/]+\/?$/) ?? 'http://127.0.0.1:9444',
    caMetrics: url('ca-metrics', str('ca-metrics'), /^http:\/\/[^/]+\/?$/) ?? 'http://127.0.0.1:9443',
    dashboard: `${url('dashboard', str('dashboard'), /^http:\/\/[^/]+\/?$/) ?? 'http://127.0.0.1:18090'}/`,
    verbose: values['verbose'] === true,
  };
}
