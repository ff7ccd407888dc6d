// Finds Xen's public C headers (Debian's libxen-dev) for the ABI tests, fetching and unpacking the package if needed.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** An include directory `dir` with `dir/xen/xen.h`, or why there is none. */
export type XenHeaders = { dir: string; source: string } | { dir: null; reason: string };

function hasXenH(dir: string): boolean {
  return existsSync(join(dir, 'xen', 'xen.h'));
}

function onPath(cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

function run(cmd: string, args: string[], cwd: string): void {
  execFileSync(cmd, args, { cwd, stdio: ['ignore', 'ignore', 'pipe'], timeout: 300_000 });
}

function firstLine(e: unknown): string {
  const err = e as { stderr?: Buffer | string; message?: string };
  const text = err.stderr ? String(err.stderr) : String(err.message ?? e);
  return text.trim().split('\n').filter((l) => !l.startsWith('W: ')).slice(-1)[0] ?? 'failed';
}

/**
 * Where Xen's public headers are, in this order:
 * 1. $PVBOX_XEN_INCLUDE (any tree with xen/xen.h, e.g. a Xen checkout's xen/include/public linked as `xen`);
 * 2. /usr/include, if libxen-dev is installed (/usr/include/xen/xen.h);
 * 3. a cached unpack of Debian's libxen-dev under $PVBOX_CACHE or <tmpdir>/pvbox-cache;
 * 4. otherwise `apt-get download libxen-dev` (after `apt-get update` if that fails) and
 *    `dpkg-deb -x` into that cache. Nothing is installed system-wide.
 */
export function locateXenHeaders(): XenHeaders {
  const env = process.env['PVBOX_XEN_INCLUDE'];
  if (env) {
    return hasXenH(env)
      ? { dir: env, source: `$PVBOX_XEN_INCLUDE (${env})` }
      : { dir: null, reason: `$PVBOX_XEN_INCLUDE=${env} has no xen/xen.h` };
  }
  if (hasXenH('/usr/include')) return { dir: '/usr/include', source: 'installed libxen-dev (/usr/include/xen)' };

  const cacheRoot = process.env['PVBOX_CACHE'] ?? join(tmpdir(), 'pvbox-cache');
  const unpacked = join(cacheRoot, 'libxen-dev');
  const include = join(unpacked, 'usr', 'include');
  if (hasXenH(include)) return { dir: include, source: `cached libxen-dev (${unpacked})` };

  for (const tool of ['apt-get', 'dpkg-deb']) {
    if (!onPath(tool)) return { dir: null, reason: `no Xen headers: libxen-dev is not installed and ${tool} is not available` };
  }
  mkdirSync(cacheRoot, { recursive: true });
  const work = mkdtempSync(join(cacheRoot, 'libxen-dev-'));
  try {
    try {
      run('apt-get', ['download', 'libxen-dev'], work);
    } catch {
      try {
        run('apt-get', ['update'], work);
        run('apt-get', ['download', 'libxen-dev'], work);
      } catch (e) {
        return { dir: null, reason: `no Xen headers: apt-get download libxen-dev failed: ${firstLine(e)}` };
      }
    }
    const deb = readdirSync(work).find((f) => f.startsWith('libxen-dev_') && f.endsWith('.deb'));
    if (!deb) return { dir: null, reason: 'no Xen headers: apt-get download libxen-dev produced no .deb' };
    const out = join(work, 'root');
    try {
      run('dpkg-deb', ['-x', deb, out], work);
    } catch (e) {
      return { dir: null, reason: `no Xen headers: dpkg-deb -x ${deb} failed: ${firstLine(e)}` };
    }
    if (!hasXenH(join(out, 'usr', 'include'))) return { dir: null, reason: `no Xen headers: ${deb} has no usr/include/xen/xen.h` };
    try {
      renameSync(out, unpacked); // atomic publish; a concurrent run may have won the race, which is fine
    } catch {
      if (!hasXenH(include)) throw new Error(`cannot move unpacked libxen-dev to ${unpacked}`);
    }
    return { dir: include, source: `Debian ${deb} (unpacked into ${unpacked})` };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** The include directory holding xen/xen.h, or null if the headers cannot be had. */
export function xenIncludeDir(): string | null {
  return locateXenHeaders().dir;
}
