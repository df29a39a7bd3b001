// When a certificate is due: the one rule `meshctl certs` marks and
// `meshctl check` judges by.
//
// A certificate warns when less than a third of its lifetime is left: SVIDs
// renew at half their lifetime (with jitter), so one under a third has missed
// its renewal. Certificates that live three days or more also warn under 24 h
// (an operator needs a working day to act), and the third is capped at 30
// days, so a ten-year root is flagged a month ahead, not for three years.
import type { CertEntry, CertInventory } from '@amime/control-plane';

export const HOUR_MS = 3_600_000;
export const DAY_MS = 24 * HOUR_MS;
/** Long-lived certificates warn at least this long before they expire. */
export const EXPIRY_FLOOR_MS = DAY_MS;
/** ... and at most this long. */
export const EXPIRY_CAP_MS = 30 * DAY_MS;

export type CertKind = 'root' | 'intermediate' | 'agent' | 'workload' | 'admin';
export type CertState = 'expired' | 'not_yet_valid' | 'expiring' | 'ok';

/** One certificate of any kind, as `meshctl certs` lists them. */
export interface CertRow {
  kind: CertKind;
  /** SPIFFE ID for SVIDs, subject for CA certificates. */
  name: string;
  node?: string;
  serial: string;
  notBefore?: string;
  notAfter: string;
  fingerprint?: string;
  source: string;
  /** Seconds from now to notAfter (negative once expired). */
  leftSeconds: number;
  state: CertState;
}

/** How long before notAfter a certificate of this lifetime warns. */
export function warnBeforeMs(lifetimeMs: number | undefined): number {
  if (lifetimeMs === undefined || !(lifetimeMs > 0)) return EXPIRY_FLOOR_MS;
  const third = lifetimeMs / 3;
  return lifetimeMs >= 3 * DAY_MS ? Math.max(EXPIRY_FLOOR_MS, Math.min(third, EXPIRY_CAP_MS)) : third;
}

export function certState(notBefore: string | undefined, notAfter: string, now: number): CertState {
  const end = Date.parse(notAfter);
  const start = notBefore === undefined ? NaN : Date.parse(notBefore);
  if (!(end > now)) return 'expired';
  if (start > now) return 'not_yet_valid';
  const lifetime = Number.isNaN(start) ? undefined : end - start;
  return end - now < warnBeforeMs(lifetime) ? 'expiring' : 'ok';
}

function row(kind: CertKind, e: Omit<CertEntry, 'source'> & { source: string }, now: number): CertRow {
  const name = kind === 'root' || kind === 'intermediate' ? (e.subject ?? e.spiffeId ?? '') : (e.spiffeId ?? e.subject ?? '');
  return {
    kind,
    name,
    ...(e.node !== undefined && { node: e.node }),
    serial: e.serial,
    ...(e.notBefore !== undefined && { notBefore: e.notBefore }),
    notAfter: e.notAfter,
    ...(e.fingerprint !== undefined && { fingerprint: e.fingerprint }),
    source: e.source,
    leftSeconds: Math.round((Date.parse(e.notAfter) - now) / 1000),
    state: certState(e.notBefore, e.notAfter, now),
  };
}

/** Every certificate, soonest expiry first; `admin` is meshctl's own credential. */
export function certRows(inv: CertInventory, now: number, admin?: { spiffeId: string; serial: string; notBefore: string; notAfter: string }): CertRow[] {
  const rows = [
    ...inv.roots.map((e) => row('root', e, now)),
    ...inv.intermediates.map((e) => row('intermediate', e, now)),
    ...inv.agents.map((e) => row('agent', e, now)),
    ...inv.workloads.map((e) => row('workload', e, now)),
  ];
  if (admin) rows.push(row('admin', { ...admin, source: 'local' }, now));
  return rows.sort((a, b) => Date.parse(a.notAfter) - Date.parse(b.notAfter) || a.name.localeCompare(b.name));
}
