// Target service in SNI, protocol in ALPN: `<service>.<namespace>.svc.amime`.

import { TransportConfigError } from './errors.js';

/** Raw byte stream (L4) between agents. */
export const ALPN_TCP = 'amime-tcp/1';
/** Many L4 streams over one pooled connection (see mux.ts). */
export const ALPN_MUX = 'amime-mux/1';
/** HTTP/1.1 between agents, pooled and kept alive. */
export const ALPN_HTTP1 = 'http/1.1';
export const INBOUND_ALPN_PROTOCOLS: readonly string[] = [ALPN_MUX, ALPN_TCP, ALPN_HTTP1];

export const SNI_SUFFIX = '.svc.amime';

export interface ServiceTarget {
  readonly service: string;
  readonly namespace: string;
}

/** RFC 1123 label as Kubernetes uses it: lower-case alphanumerics and '-', 1–63 chars, alphanumeric at both ends. */
const DNS1123_LABEL = /^[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?$/;

export function isDns1123Label(s: string): boolean {
  return DNS1123_LABEL.test(s);
}

/** The SNI name for a target; throws TransportConfigError on a name that is not a DNS-1123 label. */
export function serviceSni(target: ServiceTarget): string {
  for (const [field, v] of [['service', target.service], ['namespace', target.namespace]] as const) {
    if (typeof v !== 'string' || !DNS1123_LABEL.test(v)) {
      throw new TransportConfigError(`${field} ${JSON.stringify(v)} is not a DNS-1123 label (a-z, 0-9, '-', 1-63 chars, alphanumeric at both ends)`);
    }
  }
  return `${target.service}.${target.namespace}${SNI_SUFFIX}`;
}

/**
 * The target named by an SNI value, or undefined for anything else. SNI is
 * case-insensitive (RFC 6066 §3), so upper case is folded; then exactly two
 * DNS-1123 labels must precede `.svc.amime`.
 */
export function parseServiceSni(name: string | false | null | undefined): ServiceTarget | undefined {
  if (typeof name !== 'string' || name.length > 253) return undefined;
  const lower = name.toLowerCase();
  if (!lower.endsWith(SNI_SUFFIX)) return undefined;
  const head = lower.slice(0, lower.length - SNI_SUFFIX.length);
  const dot = head.indexOf('.');
  if (dot < 0 || head.indexOf('.', dot + 1) >= 0) return undefined;
  const service = head.slice(0, dot);
  const namespace = head.slice(dot + 1);
  if (!DNS1123_LABEL.test(service) || !DNS1123_LABEL.test(namespace)) return undefined;
  return { service, namespace };
}
