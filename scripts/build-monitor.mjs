#!/usr/bin/env node
// Builds the ring-0 monitor (src/monitor/monitor.S) into build/monitor.bin with the system toolchain (GNU as + objcopy).
// Runs at `npm ci` (postinstall) and again lazily at run time if the binary is missing or older than its source.
import { buildMonitor } from './monitor-build-lib.mjs';
try {
  const out = buildMonitor({ force: process.argv.includes('--force') });
  if (!process.argv.includes('--quiet')) console.error(`pvbox: monitor ready: ${out}`);
} catch (e) {
  console.error(`pvbox: ${e.message}`);
  process.exit(1);
}
