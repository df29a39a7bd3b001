// The judgments of `meshctl check` and the expiry rule `meshctl certs` marks
// by, on fixed clocks; and the tables of services, endpoints and certs.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { AgentStatus, CertInventory, EndpointView } from '@amime/control-plane';
import { API_VERSION, type Resource } from '@amime/protocol';
import { DAY_MS, HOUR_MS, certRows, certState, warnBeforeMs } from './cert-expiry.js';
import { certsTable, left } from './certs.js';
import { checkExitCode, checkReport, judgeAgents, judgeCertificates, judgeEndpoints, judgeNacks, judgeSkew, measureSkew, SKEW_FAIL_MS, SKEW_WARN_MS } from './check-rules.js';
import { endpointsTable } from './endpoints.js';
import { servicesTable, summarizeServices } from './services.js';

const NOW = Date.parse('2026-06-01T12:00:00.000Z');
const iso = (ms: number) => new Date(ms).toISOString();

describe('certificate expiry', () => {
  test('warns under a third of the lifetime; long-lived ones at least 24 h and at most 30 days ahead', () => {
    const table: [string, number, number][] = [
      // lifetime, how long before expiry it warns
      ['1 h SVID', HOUR_MS, HOUR_MS / 3],
      ['2 day certificate', 2 * DAY_MS, (2 * DAY_MS) / 3],
      ['3 day intermediate', 3 * DAY_MS, DAY_MS],
      ['7 day intermediate', 7 * DAY_MS, (7 * DAY_MS) / 3],
      ['10 year root', 3650 * DAY_MS, 30 * DAY_MS],
    ];
    for (const [what, lifetime, before] of table) assert.equal(warnBeforeMs(lifetime), before, what);
    assert.equal(warnBeforeMs(undefined), DAY_MS, 'unknown lifetime: 24 h');
  });

  test('states at the thresholds', () => {
    const svid = (leftMs: number) => certState(iso(NOW + leftMs - HOUR_MS), iso(NOW + leftMs), NOW);
    assert.equal(svid(HOUR_MS / 3 + 1000), 'ok', 'just above a third left');
    assert.equal(svid(HOUR_MS / 3 - 1000), 'expiring', 'just below');
    assert.equal(svid(0), 'expired', 'notAfter now is expired');
    assert.equal(svid(-1), 'expired');
    assert.equal(certState(iso(NOW + 1000), iso(NOW + HOUR_MS), NOW), 'not_yet_valid');
    const root = (leftMs: number) => certState(iso(NOW + leftMs - 3650 * DAY_MS), iso(NOW + leftMs), NOW);
    assert.equal(root(31 * DAY_MS), 'ok');
    assert.equal(root(29 * DAY_MS), 'expiring');
  });

  test('rows: every kind, soonest first, with seconds left', () => {
    const e = (notAfterMs: number, extra: object = {}) => ({ serial: 'ab', notBefore: iso(NOW - HOUR_MS), notAfter: iso(notAfterMs), source: 'bundle' as const, ...extra });
    const inv: CertInventory = {
      time: iso(NOW),
      roots: [e(NOW + 3650 * DAY_MS, { subject: 'CN=root' })],
      intermediates: [e(NOW + 7 * DAY_MS, { subject: 'CN=intermediate' })],
      agents: [e(NOW + 40 * 60_000, { spiffeId: 'spiffe://t/agent/vm-a', node: 'vm-a', source: 'connection' })],
      workloads: [e(NOW - 60_000, { spiffeId: 'spiffe://t/ns/a/sa/b', node: 'vm-a', source: 'reported' })],
    };
    const rows = certRows(inv, NOW, { spiffeId: 'spiffe://t/admin/me', serial: 'cd', notBefore: iso(NOW - DAY_MS), notAfter: iso(NOW + 2 * DAY_MS) });
    assert.deepEqual(
      rows.map((r) => [r.kind, r.state, r.leftSeconds]),
      [
        ['workload', 'expired', -60],
        ['agent', 'ok', 2400],
        ['admin', 'ok', 2 * 86400],
        ['intermediate', 'ok', 7 * 86400],
        ['root', 'ok', 3650 * 86400],
      ],
    );
    assert.equal(rows[0]!.name, 'spiffe://t/ns/a/sa/b');
    assert.equal(rows[4]!.name, 'CN=root');
    const text = certsTable(rows);
    assert.match(text, /^KIND\s+NAME\s+NODE\s+SERIAL\s+NOT AFTER\s+LEFT\s+STATUS$/m);
    assert.match(text, /^workload .* expired 1m ago\s+EXPIRED$/m);
    assert.match(text, /^agent .* 40m\s+<24h$/m);
    assert.match(text, /^root .* 3650d\s+ok$/m);
    assert.equal(left(90_061), '1d1h');
  });
});

describe('check rules', () => {
  test('clock skew: the midpoint of the request, less its uncertainty, against 1 s and 30 s', () => {
    const m = measureSkew(iso(NOW + 2000), NOW - 100, NOW + 100)!;
    assert.equal(m.skewMs, 2000);
    assert.equal(m.uncertaintyMs, 101);
    assert.equal(measureSkew('not a time', NOW, NOW), undefined);
    const at = (skewMs: number, uncertaintyMs = 1) => judgeSkew('clock', 'the CA', { skewMs, uncertaintyMs }).status;
    assert.equal(at(0), 'ok');
    assert.equal(at(SKEW_WARN_MS), 'ok', 'exactly 1 s less the uncertainty is not over 1 s');
    assert.equal(at(SKEW_WARN_MS + 2), 'warn');
    assert.equal(at(-(SKEW_WARN_MS + 2)), 'warn', 'behind counts as ahead');
    assert.equal(at(SKEW_WARN_MS + 400, 500), 'ok', 'within the uncertainty it is not certainly skew');
    assert.equal(at(SKEW_FAIL_MS + 2), 'fail');
    const fail = judgeSkew('clock', 'the control plane', { skewMs: -45_000, uncertaintyMs: 3 });
    assert.match(fail.detail, /behind this host by 45\.0 s/);
    assert.match(fail.next!, /NTP|chrony/);
    assert.equal(judgeSkew('clock', 'the CA', undefined).status, 'warn', 'a server without a time field');
  });

  test('certificates: expired fails, due warns, each with the next step for its kind', () => {
    const row = (kind: 'root' | 'agent' | 'workload', notBeforeMs: number, notAfterMs: number) =>
      certRows({ time: '', roots: [], intermediates: [], agents: [], workloads: [] }, NOW).concat([
        { kind, name: `${kind}-x`, serial: 'ab', notBefore: iso(notBeforeMs), notAfter: iso(notAfterMs), source: 's', leftSeconds: 0, state: 'ok' },
      ]);
    assert.equal(judgeCertificates(row('agent', NOW - 10 * 60_000, NOW + 50 * 60_000), NOW).status, 'ok');
    const due = judgeCertificates(row('agent', NOW - 50 * 60_000, NOW + 10 * 60_000), NOW);
    assert.equal(due.status, 'warn');
    assert.match(due.detail, /agent agent-x/);
    assert.match(due.next!, /renew/);
    const expired = judgeCertificates(row('workload', NOW - HOUR_MS, NOW - 1), NOW);
    assert.equal(expired.status, 'fail');
    assert.match(expired.detail, /expired/);
    assert.match(judgeCertificates(row('root', NOW - 3640 * DAY_MS, NOW + 10 * DAY_MS), NOW).next!, /ca rotate/);
    // The same row judged an hour later: the clock decides.
    assert.equal(judgeCertificates(row('agent', NOW - 10 * 60_000, NOW + 50 * 60_000), NOW + HOUR_MS).status, 'fail');
  });

  const agent = (node: string, types: AgentStatus['types'] = {}): AgentStatus => ({ node, spiffeId: `spiffe://t/agent/${node}`, connectedAt: iso(NOW), address: '127.0.0.1', types, instances: 1 });
  const ep = (node: string, health: 'healthy' | 'unhealthy', reason?: string): EndpointView => ({ service: 'web', namespace: 'shop', node, identity: 'spiffe://t/ns/shop/sa/web', address: '127.0.0.1', port: 1, health, ...(reason && { reason }) });

  test('agents: joined nodes neither connected here nor healthy through another replica fail', () => {
    assert.equal(judgeAgents(['vm-a'], [agent('vm-a')], []).status, 'ok');
    assert.equal(judgeAgents(['vm-a', 'vm-b'], [agent('vm-a')], [ep('vm-b', 'healthy')]).status, 'ok', 'vm-b heartbeats through another replica');
    const r = judgeAgents(['vm-a', 'vm-b', 'vm-c'], [agent('vm-a')], [ep('vm-b', 'unhealthy', 'heartbeat_lapsed')]);
    assert.equal(r.status, 'fail');
    assert.match(r.detail, /2 of 3 joined node\(s\) not connected: vm-b, vm-c/);
    assert.match(r.next!, /meshctl revoke --node vm-b/);
  });

  test('config: a NACK still held (newer than the ack) fails and names the node, type and error', () => {
    assert.equal(judgeNacks([agent('vm-a', { Route: { acked: 'e-2' } })]).status, 'ok');
    const r = judgeNacks([agent('vm-a', { Route: { acked: 'e-2', inFlight: 'e-4', nack: { version: 'e-3', error: 'route  web:\nno backend', at: iso(NOW) } } })]);
    assert.equal(r.status, 'fail');
    assert.match(r.detail, /vm-a refused Route e-3 \(holds e-2\): route web: no backend/);
    assert.match(r.next!, /meshctl config-dump vm-a/);
  });

  test('endpoints: unhealthy ones warn with their reason', () => {
    assert.equal(judgeEndpoints([ep('vm-a', 'healthy')]).status, 'ok');
    const r = judgeEndpoints([ep('vm-a', 'healthy'), ep('vm-b', 'unhealthy', 'check_failed')]);
    assert.equal(r.status, 'warn');
    assert.match(r.detail, /1 of 2 unhealthy: shop\/web on vm-b \(check_failed\)/);
  });

  test('exit code and report: warnings pass, a failure exits with the code given', () => {
    const ok = { name: 'a', status: 'ok' as const, detail: 'fine' };
    const warn = { name: 'b', status: 'warn' as const, detail: 'hmm', next: 'do x' };
    const fail = { name: 'c', status: 'fail' as const, detail: 'broken', next: 'do y' };
    assert.equal(checkExitCode([ok, warn], 3), 0);
    assert.equal(checkExitCode([ok, warn, fail], 3), 3);
    const text = checkReport([ok, warn, fail]);
    assert.match(text, /^ok\s+a\s+fine$/m);
    assert.match(text, /^warn\s+b\s+hmm\n\s+next: do x$/m);
    assert.match(text, /^fail\s+c\s+broken\n\s+next: do y$/m);
    assert.match(text, /^FAILED: 1 ok, 1 warn, 1 fail$/m);
    assert.match(checkReport([ok]), /^passed: 1 ok, 0 warn, 0 fail$/m);
  });
});

describe('services and endpoints tables', () => {
  const svc = (name: string, subsets?: string[]): Resource =>
    ({
      apiVersion: API_VERSION,
      kind: 'Service',
      metadata: { name, namespace: 'shop' },
      spec: { identity: `spiffe://t/ns/shop/sa/${name}`, ports: [{ name: 'http', port: 8080, protocol: 'http' }], ...(subsets && { trafficPolicy: { subsets: subsets.map((s) => ({ name: s, labels: { version: s } })) } }) },
    }) as Resource;
  const route = (name: string, backends: string[], ns = 'shop'): Resource =>
    ({ apiVersion: API_VERSION, kind: 'Route', metadata: { name, namespace: ns }, spec: { service: backends[0], rules: [{ backends: backends.map((b) => ({ service: b, weight: 50 })) }] } }) as Resource;
  const ep = (service: string, node: string, health: 'healthy' | 'unhealthy'): EndpointView => ({ service, namespace: 'shop', node, identity: 'spiffe://t/ns/shop/sa/x', address: '::1', port: 8443, health, ...(health === 'unhealthy' && { reason: 'check_failed' }) });

  test('services join endpoints (healthy/total), subsets and the routes targeting them', () => {
    const items = summarizeServices([svc('reviews', ['v1', 'v2']), svc('catalog')], [ep('reviews', 'vm-a', 'healthy'), ep('reviews', 'vm-b', 'unhealthy'), ep('web', 'vm-a', 'healthy')], [route('reviews', ['reviews']), route('split', ['reviews', 'catalog']), route('other', ['catalog'], 'blog')]);
    assert.deepEqual(items.map((s) => [s.name, `${s.endpoints.healthy}/${s.endpoints.total}`, s.subsets.join(','), s.routes.join(',')]), [
      ['catalog', '0/0', '', 'shop/split'],
      ['reviews', '1/2', 'v1,v2', 'shop/reviews,shop/split'],
    ]);
    const text = servicesTable(items);
    assert.match(text, /^NAMESPACE\s+NAME\s+PORTS\s+ENDPOINTS\s+SUBSETS\s+ROUTES$/m);
    assert.match(text, /^shop\s+reviews\s+http:8080\/http\s+1\/2\s+v1,v2\s+shop\/reviews,shop\/split$/m);
    assert.match(text, /^shop\s+catalog\s+http:8080\/http\s+0\/0\s+-\s+shop\/split$/m);
  });

  test('endpoints: one row per instance, IPv6 bracketed, the reason beside unhealthy', () => {
    const text = endpointsTable([ep('reviews', 'vm-b', 'unhealthy')]);
    assert.match(text, /^shop\s+reviews\s+vm-b\s+\[::1\]:8443\s+spiffe:\/\/t\/ns\/shop\/sa\/x\s+-\s+unhealthy \(check_failed\)$/m);
  });
});
