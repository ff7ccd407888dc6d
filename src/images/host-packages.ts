// Host programs pvbox's tools and tests need from Debian (qemu-img, debootstrap, dnsmasq, fio…): found on PATH, or installed with apt-get when running as root.
import { spawnSync } from 'node:child_process';
import { HostError } from '../errors.js';

/** True if `cmd` is on PATH (or an absolute path that exists). */
export function haveCommand(cmd: string): boolean {
  return spawnSync('sh', ['-c', 'command -v "$1"', 'sh', cmd], { stdio: 'ignore' }).status === 0;
}

/**
 * Makes every command in `needs` (command → Debian package) available. Missing ones are installed
 * with `apt-get install --no-install-recommends` when running as root (after `apt-get update` if
 * the first attempt fails: a fresh machine has no package lists); otherwise a HostError says
 * what to install. apt's progress goes to stderr, so a slow install is visible.
 */
export function ensureHostCommands(needs: Record<string, string>, why: string, say: (line: string) => void = (l) => process.stderr.write(`${l}\n`)): void {
  const missing = [...new Set(Object.entries(needs).filter(([cmd]) => !haveCommand(cmd)).map(([, pkg]) => pkg))];
  if (missing.length === 0) return;
  if (process.getuid?.() !== 0) throw new HostError(`${why} needs ${missing.join(', ')}: install with 'apt-get install ${missing.join(' ')}' (or run as root)`);
  say(`pvbox: installing ${missing.join(' ')} with apt-get (${why})`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive', LC_ALL: 'C' };
  const apt = (args: string[]) => spawnSync('apt-get', args, { stdio: ['ignore', 2, 2], env }).status === 0;
  const install = ['install', '-y', '--no-install-recommends', ...missing];
  if (!apt(install) && !(apt(['update']) && apt(install))) throw new HostError(`could not install ${missing.join(' ')} with apt-get (see its output above)`);
  const still = Object.keys(needs).filter((cmd) => !haveCommand(cmd));
  if (still.length) throw new HostError(`${missing.join(', ')} installed, but ${still.join(', ')} still not found`);
}
