// Header names the data plane owns, and the hop-by-hop set a proxy must not forward
// (RFC 9110 §7.6.1, plus the de-facto Proxy-Connection and Keep-Alive).

/** The caller's verified SPIFFE ID, set by the inbound agent after it strips any copy from the request. */
export const SOURCE_IDENTITY_HEADER = 'x-amime-source-identity';

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'proxy-authenticate', 'proxy-authorization']);

export function isHopByHop(name: string): boolean {
  return HOP_BY_HOP.has(name);
}

/**
 * Copies Node's raw header list (`req.rawHeaders`) into a new flat list without hop-by-hop
 * headers, without headers named in Connection, and without `drop` (lower-case names).
 * Keeps order and repeated fields as received.
 */
export function forwardableHeaders(rawHeaders: readonly string[], drop?: ReadonlySet<string>): string[] {
  let named: Set<string> | undefined;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    if (rawHeaders[i]!.toLowerCase() !== 'connection') continue;
    for (const token of rawHeaders[i + 1]!.split(',')) {
      const t = token.trim().toLowerCase();
      if (t) (named ??= new Set()).add(t);
    }
  }
  const out: string[] = [];
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!;
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower) || named?.has(lower) || drop?.has(lower)) continue;
    out.push(name, rawHeaders[i + 1]!);
  }
  return out;
}

/** Set on every response the agent makes up itself (never on a passed-through upstream response): a short snake_case cause. */
export const ERROR_HEADER = 'x-amime-error';

/** Set on mirrored copies of a request so the mirror's owner can tell them from live traffic. */
export const MIRROR_HEADER = 'x-amime-mirror';
