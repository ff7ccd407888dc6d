// Shared by scripts/build-monitor.mjs and src/monitor/image.ts: assemble monitor.S into a flat binary.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, statSync, renameSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
export const monitorSource = join(root, 'src', 'monitor', 'monitor.S');
export const monitorBinary = join(root, 'build', 'monitor.bin');

export function buildMonitor({ force = false } = {}) {
  if (!force && existsSync(monitorBinary) && statSync(monitorBinary).mtimeMs >= statSync(monitorSource).mtimeMs) return monitorBinary;
  mkdirSync(dirname(monitorBinary), { recursive: true });
  const obj = join(dirname(monitorBinary), `monitor.${process.pid}.o`);
  const tmp = `${monitorBinary}.${process.pid}.tmp`;
  try {
    execFileSync('as', ['--64', '-o', obj, monitorSource], { stdio: ['ignore', 'pipe', 'pipe'] });
    execFileSync('objcopy', ['-O', 'binary', '-j', '.text', obj, tmp], { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    const detail = e.code === 'ENOENT' ? 'the GNU assembler (as) or objcopy is missing: install binutils' : String(e.stderr || e.message).trim().split('\n')[0];
    throw new Error(`cannot build the ring-0 monitor from ${monitorSource}: ${detail}`);
  }
  renameSync(tmp, monitorBinary);
  try { execFileSync('rm', ['-f', obj]); } catch { /* best effort */ }
  return monitorBinary;
}
