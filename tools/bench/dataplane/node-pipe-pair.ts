// Starts the naive Node mTLS pipe pair (node-pipe.ts) or the bare Node HTTP pair (node-http.ts) on the HAProxy pair's certificates.
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { spawnReady } from './children.js';
import { freePort } from './fixtures.js';

export interface NodePipePair {
  port: number;
  client: ChildProcess;
  server: ChildProcess;
}

export async function startNodePipePair(certDir: string, backendPort: number, kind: 'pipe' | 'http' = 'pipe'): Promise<NodePipePair> {
  const script = join(import.meta.dirname, kind === 'pipe' ? 'node-pipe.ts' : 'node-http.ts');
  const [front, back] = [await freePort(), await freePort()];
  const server = await spawnReady<{ port: number }>(process.execPath, ['--import', 'tsx', script, 'server', String(back), String(backendPort), certDir], 'listening');
  const client = await spawnReady<{ port: number }>(process.execPath, ['--import', 'tsx', script, 'client', String(front), String(back), certDir], 'listening');
  return { port: client.line.port, client: client.child, server: server.child };
}
