// Every meshctl command, in the order `meshctl --help` lists them.
import { adminRenew } from './admin.js';
import { agentInstall } from './agent-install.js';
import { agents } from './agents.js';
import { anomalies, anomaliesAccept } from './anomalies.js';
import { apply } from './apply.js';
import { assign, assignments, unassign } from './assignments.js';
import { bundleShow } from './bundle.js';
import { certs } from './certs.js';
import { check } from './check.js';
import { configDump } from './config-dump.js';
import { endpoints } from './endpoints.js';
import { services } from './services.js';
import type { Command } from './command.js';
import { deleteResource } from './delete.js';
import { get } from './get.js';
import { init } from './init.js';
import { revoke, unrevoke } from './revoke.js';
import { caRotate, rotate } from './rotate.js';
import { status } from './status.js';
import { tokenCreate } from './token.js';
import { tap } from './tap.js';
import { top } from './top.js';

export const COMMANDS: readonly Command[] = [init, status, check, tokenCreate, assign, unassign, assignments, revoke, unrevoke, rotate, caRotate, bundleShow, adminRenew, apply, get, deleteResource, services, endpoints, certs, agents, configDump, agentInstall, anomalies, anomaliesAccept, top, tap];
