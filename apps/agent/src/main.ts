// agent: a thin CLI over @amime/agent. Loads and validates the config before
// binding anything (exit 78 on a bad config, 64 on bad flags), starts the
// agent, prints one "serving" line, and drains on SIGTERM/SIGINT.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { AgentConfigError, loadAgentConfig, startAgent, type AgentConfig } from '@amime/agent';
import { ValidationError } from '@amime/protocol';

const USAGE = `usage:
  agent run --config FILE [--token TOKEN | --token-file FILE] [--drain 10s]
      --config       the agent config (YAML or JSON): node, dataDir, ca, controlPlane, inbound, admin, workloads
      --token        one-time join token (meshctl token create --node NODE); only needed on first start
      --token-file   read the token from a file instead (keeps it out of the process list)
      --drain        how long SIGTERM waits for open requests (default 10s)`;

function fail(message: string, code = 64): never {
  process.stderr.write(`agent: ${message}\n${code === 64 ? `${USAGE}\n` : ''}`);
  process.exit(code);
}

const [command, ...rest] = process.argv.slice(2);
if (command === '--help' || command === '-h') {
  process.stdout.write(`${USAGE}\n`);
  process.exit(0);
}
if (command !== 'run') fail(`unknown command ${JSON.stringify(command ?? '')}`);
let values: Record<string, string | undefined>;
try {
  ({ values } = parseArgs({ args: rest, strict: true, options: { config: { type: 'string' }, token: { type: 'string' }, 'token-file': { type: 'string' }, drain: { type: 'string' } } }) as { values: Record<string, string | undefined> });
} catch (err) {
  fail((err as Error).message);
}
if (!values['config']) fail('--config is required');
if (values['token'] && values['token-file']) fail('give --token or --token-file, not both');
const drain = /^(\d{1,6})(ms|s)?$/.exec(values['drain'] ?? '10s') ?? fail(`--drain must be a duration like 500ms or 10s, not ${JSON.stringify(values['drain'])}`);
const drainMs = drain[2] === 'ms' ? Number(drain[1]) : Number(drain[1]) * 1000;

let config: AgentConfig;
try {
  config = await loadAgentConfig(values['config']);
} catch (err) {
  if (err instanceof ValidationError || err instanceof AgentConfigError) fail(err.message, 78);
  throw err;
}
let token = values['token'];
if (values['token-file']) {
  try {
    token = readFileSync(values['token-file'], 'utf8').trim();
  } catch (err) {
    // The token is needed for the first join only: once it is used (and removed), the
    // stored SVID rejoins. Without a stored SVID the agent says to create a new token.
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') fail(`cannot read --token-file: ${(err as Error).message}`, 78);
  }
}

try {
  const agent = await startAgent({ config, ...(token && { token }) });
  process.stdout.write(`${JSON.stringify({ event: 'serving', node: agent.node, admin: agent.adminUrl, inbound: agent.inboundPort, listeners: agent.listeners })}\n`);
  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    process.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), component: 'agent', event: 'draining', signal, drainMs })}\n`);
    agent.stop(drainMs).then(
      () => process.exit(0),
      (err: unknown) => {
        process.stderr.write(`agent: stop failed: ${String(err)}\n`);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
} catch (err) {
  fail((err as Error).message, 1);
}
