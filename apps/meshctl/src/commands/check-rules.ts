// The judgments of `meshctl check`, as pure functions of what was gathered
// and the time, so that thresholds are tested with fixed clocks.
import type { AgentStatus, EndpointView } from '@amime/control-plane';
import { formatDuration } from '../duration.js';
import { table } from '../output.js';
import { certState, type CertRow } from './cert-expiry.js';

export type CheckStatus = 'ok' | 'warn' | 'fail' | 'skip';

export interface CheckResult {
  name: string;
  status: CheckStatus;
  detail: string;
  /** What to do next; set for every warn and fail. */
  next?: string;
}

/**
 * Clock skew thresholds. The CA backdates notBefore by 60 s, so a host up to
 * a minute behind the CA still accepts a fresh SVID; past that, new SVIDs are
 * "not yet valid" on it, and a host ahead sees SVIDs expire early and the
 * rotation gates open late. Failing at 30 s keeps half that margin; warning
 * at 1 s catches a host whose NTP has stopped long before it matters (NTP
 * keeps healthy hosts within milliseconds).
 */
export const SKEW_WARN_MS = 1_000;
export const SKEW_FAIL_MS = 30_000;

/**
 * The server's clock minus ours, from its `time` field (ISO, millisecond
 * resolution) and the request's send and receive times: the server read
 * its clock somewhere in between, so the midpoint is our best estimate and
 * half the round trip (plus the 1 ms resolution) is the uncertainty.
 */
export function measureSkew(serverTime: string, sentAt: number, receivedAt: number): { skewMs: number; uncertaintyMs: number } | undefined {
  const server = Date.parse(serverTime);
  if (Number.isNaN(server)) return undefined;
  return { skewMs: server - (sentAt + receivedAt) / 2, uncertaintyMs: (receivedAt - sentAt) / 2 + 1 };
}

const ms = (n: number): string => (Math.abs(n) >= 1000 ? `${(n / 1000).toFixed(1)} s` : `${Math.round(n)} ms`);

export function judgeSkew(name: string, server: string, m: { skewMs: number; uncertaintyMs: number } | undefined): CheckResult {
  if (!m) return { name, status: 'warn', detail: `${server} does not report its time (an older version?); skew not measured`, next: `check this host's clock by hand (timedatectl; chronyc tracking) and upgrade ${server}` };
  // Only what is certainly skew counts: |skew| less the measurement's uncertainty.
  const sure = Math.max(0, Math.abs(m.skewMs) - m.uncertaintyMs);
  const detail = `${server} is ${m.skewMs >= 0 ? 'ahead of' : 'behind'} this host by ${ms(Math.abs(m.skewMs))} (±${ms(m.uncertaintyMs)})`;
  const next = 'synchronize the clocks (NTP/chrony: timedatectl set-ntp true; chronyc tracking) on this host and the server: SVID validity and rotation gates depend on them';
  if (sure > SKEW_FAIL_MS) return { name, status: 'fail', detail: `${detail}: over ${SKEW_FAIL_MS / 1000} s, fresh SVIDs can be refused as not yet valid`, next };
  if (sure > SKEW_WARN_MS) return { name, status: 'warn', detail: `${detail}: over ${SKEW_WARN_MS / 1000} s`, next };
  return { name, status: 'ok', detail };
}

/** Most certificates named in one line; -o json has them all. */
const MAX_NAMED = 5;

const named = (rows: readonly CertRow[]): string =>
  rows
    .slice(0, MAX_NAMED)
    .map((r) => `${r.kind} ${r.name}${r.node ? ` on ${r.node}` : ''} (${r.state === 'expired' ? `expired ${r.notAfter}` : r.state === 'not_yet_valid' ? `valid only from ${r.notBefore}` : `expires ${r.notAfter}`})`)
    .join('; ') + (rows.length > MAX_NAMED ? `; and ${rows.length - MAX_NAMED} more` : '');

const RENEW_HINT: Readonly<Record<CertRow['kind'], string>> = {
  root: "rotate the root: 'meshctl ca rotate all'",
  intermediate: "the CA's intermediate is due: rotate with 'meshctl ca rotate all' (it issues a new intermediate)",
  agent: "the agent is not renewing: look at its log (svid_renewal_failed) and that it reaches the CA; if its SVID expired, install it again with a new token ('meshctl token create --node N')",
  workload: "the agent holding it is not renewing: look at its log (svid_renewal_failed) and the node's assignments ('meshctl assignments')",
  admin: "renew it: 'meshctl admin renew'",
};

/** Certificates anywhere in the chain: expired or not yet valid fail, close to expiry warns (see cert-expiry.ts). */
export function judgeCertificates(rows: readonly CertRow[], now: number): CheckResult {
  const name = 'certificates';
  // Re-judged at `now`, so a fixed clock decides, not the time the rows were made.
  const judged = rows.map((r) => ({ ...r, state: certState(r.notBefore, r.notAfter, now) }));
  const bad = judged.filter((r) => r.state === 'expired' || r.state === 'not_yet_valid');
  const due = judged.filter((r) => r.state === 'expiring');
  const kinds = (list: readonly CertRow[]) => [...new Set(list.map((r) => RENEW_HINT[r.kind]))].join('; ');
  if (bad.length > 0) return { name, status: 'fail', detail: `${bad.length} of ${rows.length} invalid now: ${named(bad)}`, next: kinds(bad) + (bad.some((r) => r.state === 'not_yet_valid') ? '; a certificate not yet valid means a clock is behind' : '') };
  if (due.length > 0) return { name, status: 'warn', detail: `${due.length} of ${rows.length} close to expiry: ${named(due)}`, next: kinds(due) };
  const soonest = judged[0];
  return { name, status: 'ok', detail: `${rows.length} valid${soonest ? `; the soonest to expire is ${soonest.kind} ${soonest.name} in ${formatDuration((Date.parse(soonest.notAfter) - now) / 1000)}` : ''}` };
}

/**
 * Agents expected but not connected. Expected: every node that joined the
 * CA and was not evicted (an agent that joined once is meant to run until an
 * operator evicts it with 'meshctl revoke --node'). A node counts as
 * connected when it is connected to this control plane, or when it has a
 * healthy Endpoint: healthy endpoints stay healthy only while some replica
 * receives its heartbeats (with several replicas, agents spread over them).
 */
export function judgeAgents(expected: readonly string[], connected: readonly AgentStatus[], endpoints: readonly EndpointView[]): CheckResult {
  const name = 'agents';
  const here = new Set(connected.map((a) => a.node));
  const elsewhere = new Set(endpoints.filter((e) => e.health === 'healthy').map((e) => e.node));
  const missing = expected.filter((n) => !here.has(n) && !elsewhere.has(n)).sort();
  if (missing.length > 0) {
    return {
      name,
      status: 'fail',
      detail: `${missing.length} of ${expected.length} joined node(s) not connected: ${missing.slice(0, 10).join(', ')}${missing.length > 10 ? ` and ${missing.length - 10} more` : ''}`,
      next: `start the agent on each (systemctl status amime-agent; journalctl -u amime-agent), or if a node is gone for good, evict it: 'meshctl revoke --node ${missing[0]}'`,
    };
  }
  const extra = connected.filter((a) => !expected.includes(a.node)).length;
  const others = [...elsewhere].filter((n) => !here.has(n)).length;
  return { name, status: 'ok', detail: `${here.size} connected here${others > 0 ? `, ${others} more through other replicas` : ''}; ${expected.length} joined at the CA${extra > 0 ? ` (${extra} connected not listed as joined)` : ''}` };
}

/**
 * NACKed config: the push server clears an agent's NACK when it ACKs, so a
 * NACK still present is newer than the agent's ACK: the agent runs an older
 * version than the control plane holds.
 */
export function judgeNacks(agents: readonly AgentStatus[]): CheckResult {
  const name = 'config';
  const nacks = agents.flatMap((a) => Object.entries(a.types).flatMap(([type, t]) => (t.nack && t.nack.version !== t.acked ? [{ node: a.node, type, ...t.nack, acked: t.acked }] : [])));
  if (nacks.length > 0) {
    const first = nacks[0]!;
    return {
      name,
      status: 'fail',
      detail: `${nacks.length} NACK(s): ${nacks
        .slice(0, MAX_NAMED)
        .map((n) => `${n.node} refused ${n.type} ${n.version} (holds ${n.acked ?? 'none'}): ${n.error.replace(/\s+/g, ' ').slice(0, 160)}`)
        .join('; ')}`,
      next: `fix the resource the error names and apply again ('meshctl get ${first.type} -o yaml'); 'meshctl config-dump ${first.node}' shows what was pushed`,
    };
  }
  const types = agents.reduce((n, a) => n + Object.keys(a.types).length, 0);
  return { name, status: 'ok', detail: `no NACKs (${agents.length} agent(s), ${types} subscription(s))` };
}

export function judgeEndpoints(endpoints: readonly EndpointView[]): CheckResult {
  const name = 'endpoints';
  const bad = endpoints.filter((e) => e.health !== 'healthy');
  if (bad.length > 0) {
    return {
      name,
      status: 'warn',
      detail: `${bad.length} of ${endpoints.length} unhealthy: ${bad
        .slice(0, MAX_NAMED)
        .map((e) => `${e.namespace}/${e.service} on ${e.node} (${e.reason ?? 'unhealthy'})`)
        .join(', ')}${bad.length > MAX_NAMED ? ` and ${bad.length - MAX_NAMED} more` : ''}`,
      next: 'check_failed: the workload fails its health check (is it running? its port?); heartbeat_lapsed: the agent stopped talking to the control plane (its log, the network)',
    };
  }
  return { name, status: 'ok', detail: `${endpoints.length} registered, all healthy` };
}

/** 0 when nothing failed, 3 (EXIT.checkFailed) otherwise. */
export function checkExitCode(results: readonly CheckResult[], failed: number): number {
  return results.some((r) => r.status === 'fail') ? failed : 0;
}

export function checkReport(results: readonly CheckResult[]): string {
  const lines = table(
    ['status', 'check', 'detail'],
    results.map((r) => [r.status, r.name, r.detail]),
  ).split('\n');
  // The next step under each warn and fail, indented under its line.
  const out: string[] = [lines[0]!];
  results.forEach((r, i) => {
    out.push(lines[i + 1]!);
    if (r.next && (r.status === 'warn' || r.status === 'fail')) out.push(`        next: ${r.next}`);
  });
  const count = (s: CheckStatus) => results.filter((r) => r.status === s).length;
  const fails = count('fail');
  out.push('', `${fails > 0 ? 'FAILED' : 'passed'}: ${count('ok')} ok, ${count('warn')} warn, ${fails} fail${count('skip') ? `, ${count('skip')} skipped` : ''}`);
  return out.join('\n') + '\n';
}
