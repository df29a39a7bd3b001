// The CA's metrics are defined in @amime/telemetry (catalog: docs/api/metrics.md);
// this reads their scrape-time values from the CA service.
import { createCaMetrics as defineCaMetrics, type CaMetrics } from '@amime/telemetry';
import type { Registry } from 'prom-client';
import type { CertificateAuthorityService } from './authority.js';
import { certFromPem } from './slots.js';

export type { CaMetrics };

export function createCaMetrics(registry: Registry, ca: CertificateAuthorityService): CaMetrics {
  return defineCaMetrics(registry, {
    certificates: () =>
      ca.state.slots.flatMap((s) => [
        { kind: 'root' as const, slot: s.id, notAfter: new Date(certFromPem(s.rootCertPem).validTo) },
        { kind: 'intermediate' as const, slot: s.id, notAfter: new Date(certFromPem(s.intermediateCertPem).validTo) },
      ]),
    bundleSequence: () => ca.state.bundleSequence,
    revocationListVersion: () => ca.state.revocations.version,
    issuedSinceStart: () => ca.issuedSinceStart,
  });
}
