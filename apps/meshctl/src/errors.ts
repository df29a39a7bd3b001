// Exit codes and the one error type commands throw. Every failure tells the
// operator what happened and, where we know it, what to do next.
import { CaClientError } from '@amime/identity';

export const EXIT = {
  ok: 0,
  /** The CA refused the request (or a rotation could not finish within --max-wait). */
  refused: 1,
  /** The CA could not be reached, or did not prove it is the CA. */
  unreachable: 2,
  /** `meshctl check`: at least one check failed (warnings alone exit 0). */
  checkFailed: 3,
  /** Bad flags or arguments, or local setup missing (no CA URL, no credential). */
  usage: 64,
  /** A local failure (e.g. writing the credential files): EX_SOFTWARE. */
  internal: 70,
  /** A file or directory cannot be written (agent install): EX_CANTCREAT. */
  cantCreate: 73,
  /** Invalid agent config, bundle or workloads (agent install): EX_CONFIG. */
  config: 78,
} as const;
export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: ExitCode,
    /** What to do next. */
    readonly hint?: string,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

/** Bad invocation; main prints the command's usage after the message. */
export class UsageError extends CliError {
  constructor(message: string, hint?: string) {
    super(message, EXIT.usage, hint);
    this.name = 'UsageError';
  }
}

/** What an operator can do about a refusal, by the CA's reason (then code). */
const NEXT_STEP: Readonly<Record<string, string>> = {
  bad_spiffe_id: 'check the SPIFFE ID: spiffe://<trust-domain>/<path>, lowercase trust domain, no empty segments',
  bad_workload_id: 'workload identities look like spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>',
  bad_node_name: 'node names are 1-63 lowercase letters, digits, ".", "-" or "_", starting and ending with a letter or digit',
  foreign_trust_domain: "use the CA's own trust domain (see 'meshctl status')",
  not_admin: 'this credential is not an admin of the CA: pass --credentials with the admin directory that `init` wrote',
  peer_expired: "the admin SVID has expired: renew it before it does next time ('meshctl admin renew'); an expired one needs a new admin credential made on the CA host",
  peer_revoked: 'this credential is revoked; use another admin credential',
  peer_no_peer_certificate: 'the request needs a client certificate: pass --credentials DIR holding cert.pem and key.pem',
  peer_unknown_issuer: "the CA no longer trusts this credential's root (a rotation retired it?): make a new admin credential on the CA host",
  rotation_too_early: "wait until the time above, or pass --force if every peer already holds the new bundle ('meshctl rotate status')",
  rotation_in_progress: "see 'meshctl rotate status', then finish it with 'meshctl rotate activate' / 'retire' (or 'meshctl rotate all')",
  rotation_state: "see 'meshctl rotate status' for the phase the rotation is in",
  admin_scope: 'admins get SVIDs only for /admin/* (their own) and /control-plane/* identities',
  id_revoked: "the identity is revoked: 'meshctl unrevoke <spiffe-id>' readmits it",
  not_found: "nothing to change: the CA holds no such entry (see 'meshctl assignments' or 'meshctl status')",
  unknown_field: 'this meshctl and the CA disagree about the API: use matching versions',
  internal: "the CA failed internally: its log (stderr, JSON lines) has the request ID above",
  AMIME_ERR_CA_TOO_LARGE: 'the request is over the 64 KiB limit',
};

const TRANSPORT_STEP: Readonly<Record<string, string>> = {
  unreachable: 'check that the CA is running and the URL is right (--ca, AMIME_CA_URL or <credentials>/ca-url)',
  timeout: 'the CA did not answer in time: check it is running and not overloaded, or raise --timeout',
  server_identity: "the server is not this trust domain's CA: check --ca and that bundle.pem belongs to this CA",
  tls: "TLS failed: check that --ca points at the CA's HTTPS port and that bundle.pem holds the CA's current roots",
  bad_response: 'the server did not answer like the CA: check --ca',
};

/** A CaClientError as a CliError with the exit code and the next step. */
export function fromClientError(err: CaClientError): CliError {
  if (err.refused) {
    const hint = NEXT_STEP[err.reason] ?? NEXT_STEP[err.code];
    return new CliError(`the CA refused: ${err.code} (${err.reason}, HTTP ${err.status}): ${err.message}`, EXIT.refused, hint);
  }
  return new CliError(`${err.message} [${err.code}]`, EXIT.unreachable, TRANSPORT_STEP[err.reason]);
}

/** Any error as a CliError; anything else is a local failure. */
export function toCliError(err: unknown): CliError {
  if (err instanceof CliError) return err;
  if (err instanceof CaClientError) return fromClientError(err);
  const e = err as Error & { code?: string };
  return new CliError(`${e.code ? `${e.code}: ` : ''}${e.message ?? String(err)}`, EXIT.internal);
}
