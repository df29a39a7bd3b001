// The multi-host scenario (scenario.ts) on Linux network namespaces: a hub
// and three VMs, each its own namespace and address on a bridge the test
// made. Skips, saying why, without root or the ip command.
import { multiHostSuite } from './scenario.js';
import { netnsDriver } from './netns-driver.js';

process.env['AMIME_CA_QUIET'] = '1';
multiHostSuite('Linux network namespaces', netnsDriver);
