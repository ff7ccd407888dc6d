// Locates the ring-0 monitor binary, building it from monitor.S with the system toolchain if it is missing or stale.
import { HostError } from '../errors.js';
// @ts-expect-error — plain ESM helper shared with the npm install step (scripts/monitor-build-lib.mjs).
import { buildMonitor } from '../../scripts/monitor-build-lib.mjs';

export function ensureMonitorBinary(): string {
  try { return buildMonitor() as string; } catch (e) { throw new HostError((e as Error).message); }
}
