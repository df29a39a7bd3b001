// A registry per process with prom-client's default process and Node.js
// metrics under the app's prefix. prom-client names three gauges *_total
// (active handles, requests, resources); promtool refuses a non-counter with
// that suffix, so they are left out (the same counts appear, by type, in
// <prefix>nodejs_active_{handles,requests,resources}).
import { Registry, collectDefaultMetrics } from 'prom-client';

/** The prefixes in use, one per app: amime_agent_, amime_cp_, amime_ca_. */
export type MetricsPrefix = 'amime_agent_' | 'amime_cp_' | 'amime_ca_';

const MISNAMED_GAUGES = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];

export function createProcessRegistry(prefix: MetricsPrefix): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix });
  for (const name of MISNAMED_GAUGES) registry.removeSingleMetric(prefix + name);
  return registry;
}

/** Whether `name` is one of the default process/Node.js metrics (not defined by amime). */
export function isProcessMetric(name: string): boolean {
  return /^amime_(agent|cp|ca)_(process_|nodejs_)/.test(name);
}
