// `meshctl agents` as a table: the SVID column says how long each agent's
// SVID has left and marks one past its renewal, by the rule `meshctl certs` uses.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { AgentStatus } from '@amime/control-plane';
import { agentsTables, svidLeft } from './agents.js';

const NOW = Date.parse('2026-06-01T12:00:00.000Z');
const iso = (offsetMs: number) => new Date(NOW + offsetMs).toISOString();
const H = 3_600_000;
const svid = (notBefore: number, notAfter: number) => ({ spiffeId: 'spiffe://example.org/agent/x', serial: '01', notBefore: iso(notBefore), notAfter: iso(notAfter), fingerprint: 'ab'.repeat(32) });
const agent = (node: string, s?: AgentStatus['svid']): AgentStatus => ({ node, spiffeId: `spiffe://example.org/agent/${node}`, connectedAt: iso(-60_000), address: '10.0.0.1', types: {}, instances: 1, ...(s && { svid: s }) });

test('svidLeft: time left, RENEW DUE under a third of the lifetime, expired, and none', () => {
  assert.equal(svidLeft(svid(-H, 3 * H), NOW), '3h');
  assert.equal(svidLeft(svid(-3 * H, 90 * 60_000), NOW), '1h30m');
  assert.equal(svidLeft(svid(-3 * H, 10 * 60_000), NOW), '10m RENEW DUE');
  assert.equal(svidLeft(svid(-3 * H, -2 * 60_000), NOW), 'expired 2m ago');
  assert.equal(svidLeft(svid(H, 4 * H), NOW), '4h NOT YET VALID');
  assert.equal(svidLeft(undefined, NOW), '-');
  assert.equal(svidLeft({ ...svid(0, 0), notAfter: 'garbage' }, NOW), '-');
});

test('the summary table has one SVID cell per agent, in node order', () => {
  const out = agentsTables([agent('vm2', svid(-3 * H, 10 * 60_000)), agent('vm1', svid(-H, 23 * H)), agent('vm3')], NOW);
  const lines = out.trimEnd().split('\n');
  assert.match(lines[0]!, /^NODE\s+ADDRESS\s+CONNECTED\s+INSTANCES\s+NACKS\s+SVID LEFT$/);
  assert.match(lines[1]!, /^vm1\s.*\s23h$/);
  assert.match(lines[2]!, /^vm2\s.*\s10m RENEW DUE$/);
  assert.match(lines[3]!, /^vm3\s.*\s-$/);
  assert.equal(lines.length, 4, 'no per-type table when no agent reported types');
});
