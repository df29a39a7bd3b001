// The agent's own config file (YAML or JSON): who it is, where the CA and the
// control plane are, its ports, and the local workloads it fronts with the
// upstreams each may call. Validated once at start; errors name the field.
import { readFileSync } from 'node:fs';
import { isAbsolute, resolve, dirname } from 'node:path';
import {
  array,
  dns1123Name,
  enumOf,
  exactlyOne,
  integer,
  ipAddress,
  labelMap,
  object,
  optional,
  refine,
  spiffeIdString,
  string,
  uniqueBy,
  validate,
  withDefault,
  zoneName,
  DEFAULT_NAMESPACE,
  duration,
  type Infer,
} from '@amime/protocol';

const port = integer(1, 65535);
const path = string({ minLength: 1, maxLength: 4096 });
const url = (scheme: 'https' | 'wss' | 'http') =>
  string({
    minLength: 1,
    maxLength: 2048,
    refine: (s) => {
      let u: URL;
      try {
        u = new URL(s);
      } catch {
        return { message: `is not a URL`, fix: `use ${scheme}://<host>:<port>` };
      }
      return u.protocol === `${scheme}:` ? undefined : { message: `must use ${scheme}:, got ${u.protocol}`, fix: `use ${scheme}://<host>:<port>` };
    },
  });

const upstream = object({
  service: dns1123Name,
  namespace: withDefault(dns1123Name, DEFAULT_NAMESPACE),
  /** The local listener: the workload calls 127.0.0.1:<port>. */
  port,
  /** Default: the protocol of the Service's first port, from the control plane. */
  protocol: optional(enumOf(['tcp', 'http'] as const)),
});

const check = exactlyOne(object({ http: optional(string({ minLength: 1, maxLength: 1024, pattern: /^\/\S*$/, patternName: 'a path' })), tcp: optional(enumOf(['connect'] as const)) }), ['http', 'tcp']);

const workload = object({
  service: dns1123Name,
  namespace: withDefault(dns1123Name, DEFAULT_NAMESPACE),
  identity: spiffeIdString({ workload: true }),
  /** Where the local app listens; the agent forwards inbound calls here. */
  address: withDefault(ipAddress, '127.0.0.1'),
  port,
  protocol: enumOf(['tcp', 'http'] as const),
  labels: optional(labelMap),
  check: optional(check),
  upstreams: withDefault(
    refine(array(upstream, { maxItems: 256 }), (ups, p, issues) => uniqueBy(ups, (u) => u.port, p, 'port', issues)),
    [],
  ),
  /** A local HTTP proxy listener for this workload that routes by Host (`<service>[.<namespace>]`). */
  httpProxyPort: optional(port),
});
export type WorkloadConfig = Infer<typeof workload>;

export const agentConfigSchema = object({
  node: dns1123Name,
  /** State: SVID and key, last good config. Relative paths are from the config file. */
  dataDir: path,
  zone: optional(zoneName),
  ca: object({ url: url('https'), bundle: path }),
  controlPlane: object({
    url: url('wss'),
    /** Push-channel heartbeat, at most: the agent follows a control plane that beats faster (its --heartbeat). */
    heartbeat: withDefault(duration(100, 60_000), '5s'),
  }),
  inbound: withDefault(
    object({
      address: withDefault(ipAddress, '0.0.0.0'),
      /** 0 picks a free port (tests); the bound port is what gets registered. */
      port: withDefault(integer(0, 65535), 15443),
      /** The address peers reach this agent on (registered with the control plane). */
      advertise: withDefault(ipAddress, '127.0.0.1'),
    }),
    { address: '0.0.0.0', port: 15443, advertise: '127.0.0.1' },
  ),
  admin: withDefault(object({ address: withDefault(ipAddress, '127.0.0.1'), port: withDefault(integer(0, 65535), 15000) }), { address: '127.0.0.1', port: 15000 }),
  /** JSON-lines access log of every request and TCP stream: "stdout", "stderr" or a file (relative to the config file). Off when absent. */
  accessLog: optional(object({ path })),
  /** Spans of each hop, exported as OTLP/HTTP JSON to `<otlpEndpoint>/v1/traces` (only sampled traces). Off when absent. */
  tracing: optional(object({ otlpEndpoint: string({ minLength: 1, maxLength: 2048, refine: (s) => (/^https?:\/\/[^\s]+$/.test(s) ? undefined : { message: 'must be an http(s) URL', fix: 'use http://<collector>:4318' }) }) })),
  workloads: refine(array(workload, { maxItems: 256 }), (ws, p, issues) => {
    uniqueBy(ws, (w) => `${w.namespace}/${w.service}`, p, 'service', issues);
    const ports = new Map<number, string>();
    ws.forEach((w, i) => {
      const mine = [...w.upstreams.map((u) => u.port), ...(w.httpProxyPort ? [w.httpProxyPort] : [])];
      for (const x of mine) {
        const other = ports.get(x);
        if (other) issues.push({ path: `${p}[${i}]`, message: `listener port ${x} is already used by ${other}`, fix: 'give every upstream and proxy listener its own port' });
        ports.set(x, `${p}[${i}]`);
      }
    });
  }),
});
export type AgentConfig = Infer<typeof agentConfigSchema>;

export class AgentConfigError extends Error {
  readonly code = 'AMIME_ERR_AGENT_CONFIG';
}

/** Parses and validates config text; relative paths resolve against `baseDir`. */
export async function parseAgentConfig(text: string, baseDir: string, what = 'agent config'): Promise<AgentConfig> {
  let doc = parseJsonStrict(text);
  if (doc === undefined) {
    // yaml is imported only here, not at startup: it is a few MB of resident
    // memory the agent would carry for its whole life, and a JSON config (JSON
    // is YAML, read the same way) never needs it.
    const { parse } = await import('yaml');
    try {
      doc = parse(text, { maxAliasCount: 0 });
    } catch (err) {
      throw new AgentConfigError(`${what}: not valid YAML or JSON: ${(err as Error).message}`);
    }
  }
  const cfg = validate(agentConfigSchema, doc, what);
  const abs = (p: string) => (isAbsolute(p) ? p : resolve(baseDir, p));
  const logPath = cfg.accessLog?.path;
  return {
    ...cfg,
    dataDir: abs(cfg.dataDir),
    ca: { ...cfg.ca, bundle: abs(cfg.ca.bundle) },
    ...(logPath !== undefined && { accessLog: { path: logPath === 'stdout' || logPath === 'stderr' ? logPath : abs(logPath) } }),
  };
}

/**
 * The document if `text` is JSON that the YAML parser would read the same way,
 * else undefined (YAML, invalid JSON, or duplicate keys, which JSON.parse lets
 * through but YAML refuses: those go to the YAML parser for its error).
 */
function parseJsonStrict(text: string): unknown {
  const t = text.trimStart();
  if (!t.startsWith('{')) return undefined;
  let doc: unknown;
  try {
    doc = JSON.parse(t);
  } catch {
    return undefined;
  }
  return hasDuplicateKeys(t) ? undefined : doc;
}

/** Scans valid JSON for an object holding the same key twice. */
function hasDuplicateKeys(json: string): boolean {
  const stack: (Set<string> | null)[] = [];
  for (let i = 0; i < json.length; i++) {
    const c = json[i];
    if (c === '{') stack.push(new Set());
    else if (c === '[') stack.push(null);
    else if (c === '}' || c === ']') stack.pop();
    else if (c === '"') {
      const start = i;
      for (i++; json[i] !== '"'; i++) if (json[i] === '\\') i++;
      const keys = stack[stack.length - 1];
      if (!keys) continue;
      let j = i + 1;
      while (json[j] === ' ' || json[j] === '\t' || json[j] === '\n' || json[j] === '\r') j++;
      if (json[j] !== ':') continue;
      const key = JSON.parse(json.slice(start, i + 1)) as string;
      if (keys.has(key)) return true;
      keys.add(key);
    }
  }
  return false;
}

export async function loadAgentConfig(file: string): Promise<AgentConfig> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new AgentConfigError(`cannot read the agent config ${file}: ${(err as Error).message}`);
  }
  if (text.length > 1024 * 1024) throw new AgentConfigError(`the agent config ${file} is over 1 MiB`);
  return parseAgentConfig(text, dirname(resolve(file)), file);
}
