// The dashboard's flags, validated once: a bad one exits 64 with the fix.
import { isIP } from 'node:net';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { DEFAULT_DASHBOARD_PORT } from './server.js';

export const DASHBOARD_USAGE = `usage: dashboard [--host 127.0.0.1] [--port ${DEFAULT_DASHBOARD_PORT}] [--credentials DIR] [--control-plane URL]
                 [--allow-host NAME]... [--refresh 5s] [--wait 120] [--max-clients 16]
  --host           address to listen on (default 127.0.0.1). Anything else exposes the page, and the page
                   gives read access to the mesh's state (services, certificates, policies, traffic)
  --port           port (default ${DEFAULT_DASHBOARD_PORT}; 0: any free port)
  --credentials    the admin credential directory (default var/ca/admin; AMIME_CREDENTIALS); its
                   control-plane-url says where the control plane is
  --control-plane  https://HOST:PORT of the admin API (AMIME_CONTROL_PLANE_URL), instead of that file
  --allow-host     a host name the page may be opened by besides IP addresses and localhost (repeat it)
  --refresh        how often certificates, policies, routes and agents are read again (default 5s)
  --wait           seconds to wait at start for the credential and the control plane (default 120)
  --max-clients    browsers connected at once (default 16)`;

export class DashboardUsageError extends Error {}

export interface DashboardOptions {
  host: string;
  port: number;
  credentialsDir: string;
  controlPlaneUrl: string | undefined;
  allowedHosts: string[];
  refreshMs: number;
  waitMs: number;
  maxClients: number;
}

const HOST_NAME = /^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$/i;

export function parseDashboardOptions(argv: string[], env: NodeJS.ProcessEnv, cwd: string): DashboardOptions {
  let values: Record<string, string | string[] | undefined>;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        host: { type: 'string' },
        port: { type: 'string' },
        credentials: { type: 'string' },
        'control-plane': { type: 'string' },
        'allow-host': { type: 'string', multiple: true },
        refresh: { type: 'string' },
        wait: { type: 'string' },
        'max-clients': { type: 'string' },
      },
    }));
  } catch (err) {
    throw new DashboardUsageError((err as Error).message);
  }
  const str = (k: string) => values[k] as string | undefined;
  const whole = (k: string, dflt: number, min: number, max: number): number => {
    const v = str(k);
    if (v === undefined) return dflt;
    const n = Number(v);
    if (!/^\d{1,7}$/.test(v) || n < min || n > max) throw new DashboardUsageError(`--${k} must be a whole number ${min}-${max}, not ${JSON.stringify(v)}`);
    return n;
  };
  const host = str('host') ?? '127.0.0.1';
  if (isIP(host) === 0 && !HOST_NAME.test(host)) throw new DashboardUsageError(`--host must be an IP address (IPv6 without brackets) or a host name, not ${JSON.stringify(host)}`);
  const allowedHosts = (values['allow-host'] as string[] | undefined) ?? [];
  for (const h of allowedHosts) if (!HOST_NAME.test(h)) throw new DashboardUsageError(`--allow-host must be a host name like dashboard.example.com, not ${JSON.stringify(h)}`);
  const refresh = str('refresh') ?? '5s';
  const m = /^(\d{1,6})(ms|s|m)$/.exec(refresh);
  const refreshMs = m ? Number(m[1]) * (m[2] === 'ms' ? 1 : m[2] === 's' ? 1000 : 60_000) : NaN;
  if (!(refreshMs >= 500 && refreshMs <= 3_600_000)) throw new DashboardUsageError(`--refresh must be a duration from 500ms to 60m like 5s, not ${JSON.stringify(refresh)}`);
  const cp = str('control-plane') ?? env['AMIME_CONTROL_PLANE_URL'];
  if (cp !== undefined && !/^https:\/\/[^/]+\/?$/.test(cp)) throw new DashboardUsageError(`--control-plane must be https://HOST:PORT, not ${JSON.stringify(cp)}`);
  return {
    host,
    port: whole('port', DEFAULT_DASHBOARD_PORT, 0, 65535),
    credentialsDir: resolve(cwd, str('credentials') ?? env['AMIME_CREDENTIALS'] ?? 'var/ca/admin'),
    controlPlaneUrl: cp?.replace(/\/+$/, ''),
    allowedHosts,
    refreshMs,
    waitMs: whole('wait', 120, 1, 86_400) * 1000,
    maxClients: whole('max-clients', 16, 1, 1000),
  };
}

/** True when --host lets other machines reach the page. */
export function isExposed(host: string): boolean {
  return !(host === 'localhost' || host === '::1' || /^127\./.test(host));
}
