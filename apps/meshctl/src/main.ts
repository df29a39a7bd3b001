#!/usr/bin/env node
// meshctl: the operator CLI. A thin shell over cli.ts; see `meshctl --help`.
import { run } from './cli.js';

process.exitCode = await run(process.argv.slice(2), { env: process.env, cwd: process.cwd(), stdout: process.stdout, stderr: process.stderr });
