#!/usr/bin/env node
// Thin launcher: the compiled CLI lives in dist/ (built by `npm ci` through the prepare script).
import { runCli } from '../dist/cli.js';

const code = await runCli(process.argv.slice(2));
// `start` keeps serving until a signal ends it; every other outcome ends the process here.
if (process.argv[2] !== 'start' || code !== 0) process.exit(code);
