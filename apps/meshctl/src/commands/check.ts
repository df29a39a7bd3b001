// `meshctl check`: preflight and health in one run, one line per check (ok,
// warn, fail, or skip when what it needs failed first), with what to do next
// under every warn and fail. Exit 0 when nothing failed (warnings allowed),
// 3 when something did; an unreachable CA or control plane is a failed
// check, not an error. -o json for scripts. docs/operations/meshctl.md has
// the checks and their thresholds.
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { ControlPlaneClientError, type AgentStatus, type CertInventory, type EndpointView } from '@amime/control-plane';
import { CaClientError, bundleFromPem, fromPem, parseCertificate, verifySvid, type CaStatus } from '@amime/identity';
import type { AdminCredential } from '../credentials.js';
import { EXIT, toCliError } from '../errors.js';
import { certRows, certState } from './cert-expiry.js';
import { adminCert } from './certs.js';
import { checkExitCode, checkReport, judgeAgents, judgeCertificates, judgeEndpoints, judgeNacks, judgeSkew, measureSkew, type CheckResult } from './check-rules.js';
import type { Command, CommandContext } from './command.js';

/** The admin credential: files present, key matching, chaining to bundle.pem, valid and not close to expiry. */
export function judgeCredential(cred: AdminCredential, now: number): CheckResult {
  const name = 'credential';
  const where = cred.dir;
  let verified;
  try {
    const chain = fromPem(cred.certPem, 'CERTIFICATE');
    const bundle = bundleFromPem(cred.bundlePem, cred.trustDomain);
    // The chain and key are judged at a time inside the leaf's validity; its expiry is judged below, with a clearer message.
    const leaf = parseCertificate(chain[0]!);
    const at = Math.min(Math.max(now, leaf.notBefore.getTime() + 1000), leaf.notAfter.getTime() - 1000);
    verified = verifySvid(chain, { bundle, now: new Date(at) });
    if (!verified.ok) return { name, status: 'fail', detail: `${where}/cert.pem does not chain to ${where}/bundle.pem: ${verified.message}`, next: "the CA's roots changed (a rotation?) or the files are mixed up: 'meshctl bundle show --format pem' with a working credential, or make a new admin credential on the CA host" };
    const pub = createPublicKey(createPrivateKey(cred.keyPem)).export({ type: 'spki', format: 'der' });
    if (!Buffer.from(pub).equals(verified.leaf.spki)) return { name, status: 'fail', detail: `${where}/key.pem is not the key of ${where}/cert.pem`, next: 'restore the matching key.pem, or renew the credential on the CA host' };
  } catch (err) {
    return { name, status: 'fail', detail: `${where}: ${(err as Error).message}`, next: `repair the files in ${where} (cert.pem, key.pem, bundle.pem), or make a new admin credential on the CA host` };
  }
  const leaf = verified.leaf;
  const state = certState(leaf.notBefore.toISOString(), leaf.notAfter.toISOString(), now);
  const id = `${cred.spiffeId} in ${where}`;
  if (state === 'expired') return { name, status: 'fail', detail: `${id} expired at ${leaf.notAfter.toISOString()}`, next: 'an expired admin SVID cannot renew itself: make a new admin credential on the CA host (ca admin)' };
  if (state === 'not_yet_valid') return { name, status: 'fail', detail: `${id} is valid only from ${leaf.notBefore.toISOString()}`, next: "this host's clock is behind: synchronize it (timedatectl set-ntp true)" };
  if (state === 'expiring') return { name, status: 'warn', detail: `${id} expires at ${leaf.notAfter.toISOString()}`, next: "renew it now: 'meshctl admin renew'" };
  return { name, status: 'ok', detail: `${id}, valid until ${leaf.notAfter.toISOString()}` };
}

const TRANSPORT_NEXT: Readonly<Record<string, string>> = {
  unreachable: 'start it, or check the URL (--ca / --control-plane, AMIME_CA_URL / AMIME_CONTROL_PLANE_URL, or <credentials>/ca-url and control-plane-url)',
  timeout: 'it did not answer in time: check it is running and not overloaded, or raise --timeout',
  server_identity: "the server is not the expected one for this trust domain: check the URL and that bundle.pem belongs to this mesh's CA",
  tls: "TLS failed: check the URL points at its HTTPS port and bundle.pem holds the CA's current roots",
  bad_response: 'the server did not answer as expected: check the URL and that versions match',
};

function unreachable(name: string, err: unknown): CheckResult {
  if (err instanceof ControlPlaneClientError || err instanceof CaClientError) {
    const next = err.refused ? (err.reason === 'not_admin' ? 'pass --credentials with an admin directory' : `the server refused (${err.reason}): see its log`) : (TRANSPORT_NEXT[err.reason] ?? 'check the URL');
    return { name, status: 'fail', detail: `${err.message} [${err.code}]`, next };
  }
  const e = toCliError(err);
  return { name, status: 'fail', detail: e.message, next: e.hint ?? 'see the message' };
}

/** A check whose inputs are local files: a broken file fails the check, it does not end the run. */
function guarded(name: string, judge: () => CheckResult): CheckResult {
  try {
    return judge();
  } catch (err) {
    return { name, status: 'fail', detail: (err as Error).message, next: 'repair the admin credential files (see the credential check)' };
  }
}

const skip = (name: string, why: string): CheckResult => ({ name, status: 'skip', detail: `not checked: ${why}` });

/** Times a call: its result and when it was sent and answered. */
async function timed<T>(call: () => Promise<T>): Promise<{ value: T; sentAt: number; receivedAt: number }> {
  const sentAt = Date.now();
  const value = await call();
  return { value, sentAt, receivedAt: Date.now() };
}

async function settle<T>(call: () => Promise<T>): Promise<{ ok: true; value: T } | { ok: false; error: unknown }> {
  try {
    return { ok: true, value: await call() };
  } catch (error) {
    return { ok: false, error };
  }
}

export async function runChecks(ctx: CommandContext): Promise<CheckResult[]> {
  const results: CheckResult[] = [];
  let cred: AdminCredential;
  try {
    cred = ctx.credential();
  } catch (err) {
    const e = toCliError(err);
    results.push({ name: 'credential', status: 'fail', detail: e.message, next: e.hint ?? 'pass --credentials DIR' });
    for (const n of ['ca', 'clock (CA)', 'control plane', 'clock (control plane)', 'certificates', 'agents', 'config', 'endpoints']) results.push(skip(n, 'no admin credential'));
    return results;
  }
  results.push(judgeCredential(cred, Date.now()));

  // The CA and the control plane are asked at the same time: two timeouts at most, not four.
  const [ca, cp] = await Promise.all([settle(() => timed(() => ctx.client().status())), settle(() => timed(() => ctx.controlPlane().status()))]);
  let caStatus: CaStatus | undefined;
  if (ca.ok) {
    caStatus = ca.value.value;
    const client = ctx.client();
    results.push({ name: 'ca', status: 'ok', detail: `${client.url.origin} proved it is ${client.expectedServerId} (${ca.value.receivedAt - ca.value.sentAt} ms; rotation ${caStatus.rotation})` });
    results.push(judgeSkew('clock (CA)', 'the CA', caStatus.time === undefined ? undefined : measureSkew(caStatus.time, ca.value.sentAt, ca.value.receivedAt)));
  } else {
    results.push(unreachable('ca', ca.error), skip('clock (CA)', 'the CA did not answer'));
  }
  if (!cp.ok) {
    results.push(unreachable('control plane', cp.error), skip('clock (control plane)', 'the control plane did not answer'));
    // What can be judged without it: our own SVID and the roots in bundle.pem.
    results.push(
      guarded('certificates', () => {
        const roots = bundleFromPem(cred.bundlePem, cred.trustDomain).roots.map((r) => ({ spiffeId: r.uris[0] ?? '', serial: r.serialHex, notBefore: r.notBefore.toISOString(), notAfter: r.notAfter.toISOString(), source: 'bundle' as const }));
        const inv: CertInventory = { time: new Date().toISOString(), roots, intermediates: [], agents: [], workloads: [] };
        const c = judgeCertificates(certRows(inv, Date.now(), adminCert(ctx)), Date.now());
        return { ...c, detail: `${c.detail} (only your admin SVID and bundle.pem: the control plane did not answer)` };
      }),
    );
    for (const n of ['agents', 'config', 'endpoints']) results.push(skip(n, 'the control plane did not answer'));
    return results;
  }
  const client = ctx.controlPlane();
  const st = cp.value.value as { time?: unknown; agents?: unknown };
  results.push({ name: 'control plane', status: 'ok', detail: `${client.url.origin} proved it is ${client.expectedServerId} (${cp.value.receivedAt - cp.value.sentAt} ms; ${String(st.agents ?? '?')} agent(s) connected)` });
  results.push(judgeSkew('clock (control plane)', 'the control plane', typeof st.time === 'string' ? measureSkew(st.time, cp.value.sentAt, cp.value.receivedAt) : undefined));

  const [certs, agents, endpoints] = await Promise.all([settle(() => client.certs()), settle(() => client.agents()), settle(() => client.endpoints())]);
  results.push(certs.ok ? guarded('certificates', () => judgeCertificates(certRows(certs.value, Date.now(), adminCert(ctx)), Date.now())) : unreachable('certificates', certs.error));
  const eps: EndpointView[] | undefined = endpoints.ok ? endpoints.value : undefined;
  const list: AgentStatus[] | undefined = agents.ok ? agents.value : undefined;
  if (!list) results.push(unreachable('agents', (agents as { error: unknown }).error));
  else if (!caStatus) results.push(skip('agents', 'the CA did not answer, so which nodes joined is unknown'));
  else {
    const expected = Object.entries(caStatus.nodes)
      .filter(([, n]) => n.joinedAt !== undefined && n.evictedAt === undefined)
      .map(([node]) => node);
    results.push(judgeAgents(expected, list, eps ?? []));
  }
  results.push(list ? judgeNacks(list) : skip('config', 'the agent list did not load'));
  results.push(eps ? judgeEndpoints(eps) : unreachable('endpoints', (endpoints as { error: unknown }).error));
  return results;
}

export const check: Command = {
  name: 'check',
  synopsis: '',
  summary: 'preflight and health: credential, CA and control plane reachable, clock skew, certificates near expiry, disconnected agents, NACKed config, unhealthy endpoints; exit 3 when a check fails',
  async run(ctx) {
    const results = await runChecks(ctx);
    const exitCode = checkExitCode(results, EXIT.checkFailed);
    return { data: { ok: exitCode === 0, exitCode, checks: results }, human: checkReport(results), exitCode };
  },
};
