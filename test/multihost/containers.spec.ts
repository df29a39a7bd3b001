// The multi-host scenario (scenario.ts) on containers through testcontainers:
// a hub and three VMs, each a container of the local base image on a network
// of their own. Skips, saying what is missing, when no container engine
// answers (tools/scripts/podman-setup.sh sets podman up; docs/operations/docker.md).
import { multiHostSuite } from './scenario.js';
import { containerDriver } from './container-driver.js';

process.env['AMIME_CA_QUIET'] = '1';
multiHostSuite('containers (testcontainers)', containerDriver);
