// demo-catalog: `main.ts --port N --inventory URL` (the agent's local upstream port for inventory).
import { parseArgs } from 'node:util';
import { createCatalogServer } from './service.js';

const { values } = parseArgs({ options: { port: { type: 'string', default: '18081' }, inventory: { type: 'string', default: 'http://127.0.0.1:19011' } } });
const port = Number(values.port);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  process.stderr.write(`demo-catalog: --port must be 0-65535, not ${JSON.stringify(values.port)}\n`);
  process.exit(64);
}
const server = createCatalogServer({ inventory: values.inventory });
server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ event: 'listening', service: 'catalog', port: (server.address() as { port: number }).port })}\n`);
});
const stop = () => server.close(() => process.exit(0)).closeAllConnections();
process.on('SIGTERM', stop).on('SIGINT', stop);
