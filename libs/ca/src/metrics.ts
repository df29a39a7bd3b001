// The CA's Prometheus metrics, registered into a registry the caller gives
// (prom-client's global one is never touched by a library).
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { CertificateAuthorityService } from './authority.js';
import { certFromPem } from './slots.js';

export interface CaMetrics {
  requests: Counter<'route' | 'code'>;
  duration: Histogram<string>;
  refused: Counter<'reason'>;
  tlsErrors: Counter<'reason'>;
}

export function createCaMetrics(registry: Registry, ca: CertificateAuthorityService): CaMetrics {
  const registers = [registry];
  new Gauge({
    name: 'amime_ca_certificate_expiry_timestamp_seconds',
    help: 'Expiry of the CA certificates in the trust bundle and the active intermediate',
    labelNames: ['kind', 'slot'],
    registers,
    collect() {
      this.reset();
      for (const s of ca.state.slots) {
        this.set({ kind: 'root', slot: s.id }, Date.parse(certFromPem(s.rootCertPem).validTo) / 1000);
        this.set({ kind: 'intermediate', slot: s.id }, Date.parse(certFromPem(s.intermediateCertPem).validTo) / 1000);
      }
    },
  });
  new Gauge({
    name: 'amime_ca_bundle_sequence',
    help: 'spiffe_sequence of the published trust bundle',
    registers,
    collect() {
      this.set(ca.state.bundleSequence);
    },
  });
  new Gauge({
    name: 'amime_ca_revocation_list_version',
    help: 'Version of the published revocation list',
    registers,
    collect() {
      this.set(ca.state.revocations.version);
    },
  });
  new Counter({
    name: 'amime_ca_svids_issued_total',
    help: 'SVIDs issued since start',
    registers,
    collect() {
      this.reset();
      this.inc(ca.issuedSinceStart);
    },
  });
  return {
    requests: new Counter({ name: 'amime_ca_requests_total', help: 'CA API requests by route and status code', labelNames: ['route', 'code'], registers }),
    duration: new Histogram({
      name: 'amime_ca_request_duration_seconds',
      help: 'CA API request duration',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers,
    }),
    refused: new Counter({ name: 'amime_ca_requests_refused_total', help: 'CA API requests refused, by cause', labelNames: ['reason'], registers }),
    tlsErrors: new Counter({ name: 'amime_ca_tls_handshake_failures_total', help: 'TLS handshakes that failed before a request', labelNames: ['reason'], registers }),
  };
}
