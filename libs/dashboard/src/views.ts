// Table rows for the page, from the admin API's answers: flat, display-ready
// strings and numbers, so that the browser only writes text into cells.
import type { CertEntry, CertsAnswer, ResourceLike } from './mesh-types.js';

const str = (v: unknown): string => (typeof v === 'string' ? v : v === undefined || v === null ? '' : String(v));
const MAX_ROWS = 5000;

export interface CertRow {
  kind: 'root' | 'intermediate' | 'agent' | 'workload';
  name: string;
  node: string;
  serial: string;
  notBefore: string;
  notAfter: string;
  fingerprint: string;
}

export function certRows(a: CertsAnswer): CertRow[] {
  const rows: CertRow[] = [];
  const add = (kind: CertRow['kind'], list: unknown) => {
    if (!Array.isArray(list)) return;
    for (const c of list as CertEntry[]) {
      if (!c || typeof c !== 'object' || rows.length >= MAX_ROWS) continue;
      rows.push({
        kind,
        name: str(kind === 'root' || kind === 'intermediate' ? (c.subject ?? c.spiffeId) : (c.spiffeId ?? c.subject)),
        node: str(c.node),
        serial: str(c.serial),
        notBefore: str(c.notBefore),
        notAfter: str(c.notAfter),
        fingerprint: str(c.fingerprint),
      });
    }
  };
  add('root', a.roots);
  add('intermediate', a.intermediates);
  add('agent', a.agents);
  add('workload', a.workloads);
  return rows;
}

export interface PolicyRow {
  namespace: string;
  name: string;
  action: string;
  target: string;
  /** One line per rule: `from → to`. */
  rules: string[];
}

export function policyRows(items: readonly ResourceLike[]): PolicyRow[] {
  return items.slice(0, MAX_ROWS).map((p) => {
    const rules = Array.isArray(p.spec?.['rules']) ? (p.spec['rules'] as unknown[]) : [];
    return {
      namespace: str(p.metadata?.namespace),
      name: str(p.metadata?.name),
      action: str(p.spec?.['action']),
      target: str(p.spec?.['target']),
      rules: rules.slice(0, 64).map((r) => {
        const rule = (r ?? {}) as { from?: { identity?: string; namespace?: string }[]; to?: { methods?: string[]; paths?: string[] } };
        const from = (rule.from ?? []).map((f) => (f.identity ? f.identity : f.namespace ? `namespace ${f.namespace}` : '?')).join(', ');
        const to = [rule.to?.methods?.join('|'), rule.to?.paths?.join(', ')].filter(Boolean).join(' ');
        return `${from || 'nobody'} → ${to || 'any request'}`;
      }),
    };
  });
}

export interface RouteRow {
  namespace: string;
  name: string;
  service: string;
  /** One line per rule: match, then backends with weights. */
  rules: string[];
}

export function routeRows(items: readonly ResourceLike[]): RouteRow[] {
  return items.slice(0, MAX_ROWS).map((r) => {
    const rules = Array.isArray(r.spec?.['rules']) ? (r.spec['rules'] as unknown[]) : [];
    return {
      namespace: str(r.metadata?.namespace),
      name: str(r.metadata?.name),
      service: str(r.spec?.['service']),
      rules: rules.slice(0, 64).map((x) => {
        const rule = (x ?? {}) as {
          match?: { method?: string; path?: Record<string, string>; headers?: unknown[] };
          backends?: { service?: string; subset?: string; weight?: number }[];
          timeout?: string;
        };
        const path = rule.match?.path ? Object.entries(rule.match.path).map(([k, v]) => `${k} ${v}`)[0] : undefined;
        const match = [rule.match?.method, path, rule.match?.headers?.length ? `${rule.match.headers.length} header match(es)` : undefined].filter(Boolean).join(' ');
        const backends = (rule.backends ?? []).map((b) => `${str(b.service)}${b.subset ? `/${b.subset}` : ''} ${str(b.weight)}%`).join(', ');
        return `${match || 'every request'} → ${backends}${rule.timeout ? ` (timeout ${rule.timeout})` : ''}`;
      }),
    };
  });
}
