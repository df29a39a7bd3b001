// The CA's metrics, registered into a registry the caller gives (the CA app
// passes createProcessRegistry('amime_ca_')). Labels are bounded: API routes
// (the route pattern; 'unknown' for anything else), refusal and TLS failure
// reasons, and the CA's key slots.
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

export interface CaMetrics {
  requests: Counter<'route' | 'code'>;
  duration: Histogram<string>;
  refused: Counter<'reason'>;
  tlsErrors: Counter<'reason'>;
}

/** Values read at scrape time. */
export interface CaMetricsSources {
  /** The root and intermediate of every slot in the trust bundle. */
  certificates(): readonly { kind: 'root' | 'intermediate'; slot: string; notAfter: Date }[];
  /** spiffe_sequence of the published trust bundle. */
  bundleSequence(): number;
  revocationListVersion(): number;
  /** SVIDs issued since the process started. */
  issuedSinceStart(): number;
}

export const CA_REQUEST_DURATION_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];

export function createCaMetrics(registry: Registry, sources: CaMetricsSources): CaMetrics {
  const registers = [registry];
  new Gauge({
    name: 'amime_ca_certificate_expiry_timestamp_seconds',
    help: 'Expiry (Unix seconds) of the CA certificates in the trust bundle and their intermediates, by kind and slot.',
    labelNames: ['kind', 'slot'],
    registers,
    collect() {
      this.reset();
      for (const c of sources.certificates()) this.set({ kind: c.kind, slot: c.slot }, Math.floor(c.notAfter.getTime() / 1000));
    },
  });
  new Gauge({
    name: 'amime_ca_bundle_sequence',
    help: 'spiffe_sequence of the published trust bundle.',
    registers,
    collect() {
      this.set(sources.bundleSequence());
    },
  });
  new Gauge({
    name: 'amime_ca_revocation_list_version',
    help: 'Version of the published revocation list.',
    registers,
    collect() {
      this.set(sources.revocationListVersion());
    },
  });
  new Counter({
    name: 'amime_ca_svids_issued_total',
    help: 'SVIDs issued since start.',
    registers,
    collect() {
      this.reset();
      this.inc(sources.issuedSinceStart());
    },
  });
  return {
    requests: new Counter({ name: 'amime_ca_requests_total', help: 'CA API requests by route and status code.', labelNames: ['route', 'code'], registers }),
    duration: new Histogram({ name: 'amime_ca_request_duration_seconds', help: 'CA API request duration.', buckets: CA_REQUEST_DURATION_BUCKETS, registers }),
    refused: new Counter({ name: 'amime_ca_requests_refused_total', help: 'CA API requests refused, by reason.', labelNames: ['reason'], registers }),
    tlsErrors: new Counter({ name: 'amime_ca_tls_handshake_failures_total', help: 'TLS handshakes that failed before a request, by reason.', labelNames: ['reason'], registers }),
  };
}
