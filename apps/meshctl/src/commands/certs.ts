// `meshctl certs`: every root, intermediate, agent SVID and workload SVID the
// control plane knows of (docs/api/control-plane.md, GET /v1/certs), plus
// meshctl's own admin SVID, soonest expiry first.
import { parseCertificate, fromPem } from '@amime/identity';
import { formatDuration, parseDuration } from '../duration.js';
import { UsageError } from '../errors.js';
import { table } from '../output.js';
import { certRows, type CertRow } from './cert-expiry.js';
import { str, type Command, type CommandContext } from './command.js';

/** The admin SVID in <credentials>/cert.pem, as a certificate entry. */
export function adminCert(ctx: CommandContext): { spiffeId: string; serial: string; notBefore: string; notAfter: string } {
  const cred = ctx.credential();
  const leaf = parseCertificate(fromPem(cred.certPem, 'CERTIFICATE')[0]!);
  return { spiffeId: cred.spiffeId, serial: leaf.serialHex, notBefore: leaf.notBefore.toISOString(), notAfter: leaf.notAfter.toISOString() };
}

/** "3d4h" / "expired 2h ago"; two units at most. */
export function left(seconds: number): string {
  const short = (s: number) => {
    const text = formatDuration(s);
    const parts = text.match(/\d+[dhms]/g) ?? [text];
    return parts.slice(0, 2).join('');
  };
  return seconds > 0 ? short(seconds) : `expired ${short(-seconds)} ago`;
}

const MARK: Readonly<Record<CertRow['state'], string>> = { expired: 'EXPIRED', not_yet_valid: 'NOT YET VALID', expiring: 'RENEW DUE', ok: '' };

export function certsTable(rows: readonly CertRow[]): string {
  if (rows.length === 0) return 'no certificates\n';
  return table(
    ['kind', 'name', 'node', 'serial', 'not after', 'left', 'status'],
    rows.map((r) => {
      const marks = [MARK[r.state], r.state !== 'expired' && r.leftSeconds < 86_400 ? '<24h' : ''].filter((m) => m !== '');
      return [r.kind, r.name, r.node ?? '-', r.serial.length > 16 ? `${r.serial.slice(0, 16)}...` : r.serial, r.notAfter, left(r.leftSeconds), marks.join(' ') || 'ok'];
    }),
  );
}

export const certs: Command = {
  name: 'certs',
  synopsis: '[--within 24h]',
  summary: 'every root, intermediate, agent and workload SVID (and your admin SVID) with its expiry, soonest first; --within keeps those expiring within that time',
  options: { within: { type: 'string' } },
  async run(ctx) {
    const withinText = str(ctx.values, 'within');
    const within = withinText === undefined ? undefined : parseDuration(withinText);
    if (withinText !== undefined && within === undefined) throw new UsageError(`--within must be a duration (24h, 7d, 90m), not ${JSON.stringify(withinText)}`);
    const inv = await ctx.controlPlane().certs();
    const now = Date.now();
    let rows = certRows(inv, now, adminCert(ctx));
    if (within !== undefined) rows = rows.filter((r) => r.leftSeconds < within);
    const human = certsTable(rows) + (within !== undefined ? `(${rows.length} expiring within ${withinText})\n` : '');
    return { data: { time: inv.time, items: rows }, human };
  },
};
