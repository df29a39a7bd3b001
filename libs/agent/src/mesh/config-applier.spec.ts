import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { EMPTY_REVOCATIONS, type RevocationSet } from '@amime/identity';
import type { Resource, ResourceType } from '@amime/protocol';
import type { AppliedUpdate } from '@amime/protocol/client';
import type { HeldConfig } from '../config/last-good.js';
import { ConfigApplier, type TrustSink } from './config-applier.js';

const TD = 'example.org';
const WEB = `spiffe://${TD}/ns/shop/sa/web`;
const PEM = '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n';

class FakeTrust implements TrustSink {
  bundles: string[] = [];
  lists: RevocationSet[] = [];
  refuse = false;
  current: RevocationSet = EMPTY_REVOCATIONS;
  setTrustBundle(pem: string): boolean {
    if (this.refuse) throw new Error('roots do not parse');
    this.bundles.push(pem);
    return true;
  }
  setRevocations(set: RevocationSet): boolean {
    this.lists.push(set);
    this.current = set;
    return true;
  }
  revocations(): RevocationSet {
    return this.current;
  }
}

function update(resourceType: ResourceType, version: string, resources: Resource[]): AppliedUpdate {
  return { resourceType, kind: 'snapshot', version, previousVersion: undefined, upserts: resources, removals: [], resources: new Map(resources.map((r) => [resourceKeyOf(r), r])) };
}
const resourceKeyOf = (r: Resource) => `/resources/${r.kind}/${r.metadata.namespace}/${r.metadata.name}`;

const allow: Resource = { apiVersion: 'amime.dev/v1', kind: 'AuthorizationPolicy', metadata: { name: 'p', namespace: 'shop' }, spec: { action: 'ALLOW', target: 'catalog', rules: [{ from: [{ identity: WEB }] }] } } as Resource;
const bundle = (trustDomain: string): Resource => ({ apiVersion: 'amime.dev/v1', kind: 'TrustBundle', metadata: { name: 'mesh', namespace: 'default' }, spec: { trustDomain, roots: [PEM] } }) as Resource;
const revocations = (version: number): Resource => ({ apiVersion: 'amime.dev/v1', kind: 'RevocationList', metadata: { name: 'mesh', namespace: 'default' }, spec: { version, serials: ['0a'], identities: [WEB] } }) as Resource;

function applier(held: HeldConfig = {}) {
  const trust = new FakeTrust();
  const saved: HeldConfig[] = [];
  const revoked: RevocationSet[] = [];
  const a = new ConfigApplier({ held, trustDomain: TD, trust, save: async (h) => void saved.push(h), onRevocations: (s) => revoked.push(s), log: () => undefined });
  return { a, trust, saved, revoked };
}

const allowed = (a: ConfigApplier) => a.runtime.authorizer.decide({ service: 'catalog', namespace: 'shop' }, { source: WEB, method: 'GET', path: '/' }).allowed;

describe('ConfigApplier', () => {
  test('an update is compiled, swapped in and saved as the last good config', async () => {
    const { a, saved } = applier();
    assert.equal(allowed(a), false);
    await a.apply(update('AuthorizationPolicy', 'e-2', [allow]));
    assert.equal(allowed(a), true);
    assert.equal(a.held.AuthorizationPolicy?.version, 'e-2');
    assert.deepEqual(saved.at(-1)?.AuthorizationPolicy?.resources, [allow]);
  });

  test('a TrustBundle the agent cannot use is refused (NACK) and changes nothing', async () => {
    const { a, trust, saved } = applier();
    await a.apply(update('AuthorizationPolicy', 'e-2', [allow]));
    await assert.rejects(a.apply(update('TrustBundle', 'e-3', [bundle('other.org')])), /is for trust domain other\.org; this agent is in example\.org/);
    trust.refuse = true;
    await assert.rejects(a.apply(update('TrustBundle', 'e-3', [bundle(TD)])), /roots do not parse/);
    assert.equal(a.held.TrustBundle, undefined, 'held config unchanged');
    assert.equal(saved.length, 1, 'nothing saved for the refused pushes');
    assert.equal(allowed(a), true, 'the previous runtime still serves');
  });

  test('a RevocationList goes to the identity with the CA version and closes what it revokes', async () => {
    const { a, trust, revoked } = applier();
    await a.apply(update('RevocationList', 'e-9', [revocations(4)]));
    assert.equal(trust.lists.at(-1)?.version, 4);
    assert.ok(trust.lists.at(-1)?.spiffeIds.has(WEB));
    assert.equal(revoked.length, 1);
    assert.ok(revoked[0]!.serials.has('0a'));
  });

  test('starting from a last good config applies its trust material and policies', () => {
    const { a, trust } = applier({ TrustBundle: { version: 'e-1', resources: [bundle(TD)] }, AuthorizationPolicy: { version: 'e-2', resources: [allow] } });
    assert.deepEqual(trust.bundles, [PEM]);
    assert.equal(allowed(a), true);
  });
});
