// Every meshctl command, in the order `meshctl --help` lists them.
import { adminRenew } from './admin.js';
import { agentInstall } from './agent-install.js';
import { agents } from './agents.js';
import { anomalies, anomaliesAccept } from './anomalies.js';
import { apply } from './apply.js';
import { assign, assignments, unassign } from './assignments.js';
import { bundleShow } from './bundle.js';
import type { Command } from './command.js';
import { deleteResource } from './delete.js';
import { get } from './get.js';
import { init } from './init.js';
import { revoke, unrevoke } from './revoke.js';
import { rotate } from './rotate.js';
import { status } from './status.js';
import { tokenCreate } from './token.js';

export const COMMANDS: readonly Command[] = [init, status, tokenCreate, assign, unassign, assignments, revoke, unrevoke, rotate, bundleShow, adminRenew, apply, get, deleteResource, agents, agentInstall, anomalies, anomaliesAccept];
