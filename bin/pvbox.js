#!/usr/bin/env node
// pvbox entry point: loads the TypeScript sources through tsx and runs the CLI.
import { register } from 'tsx/esm/api';
register();
const { cli } = await import('../src/cli/main.ts');
await cli(process.argv.slice(2));
