// demo-inventory: `main.ts --port N` (default 18082), on 127.0.0.1.
import { parseArgs } from 'node:util';
import { createInventoryServer } from './service.js';

const { values } = parseArgs({ options: { port: { type: 'string', default: '18082' } } });
const port = Number(values.port);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  process.stderr.write(`demo-inventory: --port must be 0-65535, not ${JSON.stringify(values.port)}\n`);
  process.exit(64);
}
const server = createInventoryServer();
server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ event: 'listening', service: 'inventory', port: (server.address() as { port: number }).port })}\n`);
});
const stop = () => server.close(() => process.exit(0)).closeAllConnections();
process.on('SIGTERM', stop).on('SIGINT', stop);
