// A guest's own root disk for `pvbox install`: a copy of the cached root disk grown to its size (resize2fs) and made to boot by itself, with the kernel, pvbox's initramfs and an extlinux.conf written into its /boot without mounting it (debugfs -w), where pvbox's pygrub-style bootloader looks.
import { mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ImageError } from '../errors.js';
import { run } from './deb.js';
import type { GuestImage } from './debian.js';
import { ensureHostCommands } from './host-packages.js';

/** One change to an ext4 image, as debugfs(8) makes it. */
export type Ext4Edit =
  | { op: 'mkdir'; path: string }
  /** A new file at `path` with `content`; the path must not exist (remove it first). */
  | { op: 'write'; path: string; content: Uint8Array | string; mode?: number }
  /** A new file at `path` copied from the host file `from`. */
  | { op: 'copy'; path: string; from: string; mode?: number }
  | { op: 'rm'; path: string };

/** The e2fsprogs programs the functions below run. */
export function ensureE2fsprogs(why: string): void {
  ensureHostCommands({ debugfs: 'e2fsprogs', resize2fs: 'e2fsprogs' }, why);
}

/**
 * debugfs's command parser (lib/ss/parse.c) splits on blanks and takes a double-quoted word
 * whole, a doubled quote inside it standing for one; there is no backslash escape, so a newline
 * cannot be written at all.
 */
function debugfsWord(text: string): string {
  if (/[\n\r\0]/.test(text)) throw new ImageError(`cannot pass '${text.replace(/[\n\r\0]/g, '?')}' to debugfs (newline or NUL in a path)`);
  return `"${text.replace(/"/g, '""')}"`;
}

/** Guest paths are absolute and plain (debugfs resolves relative ones against its cwd). */
function guestPath(path: string): string {
  if (!path.startsWith('/') || path.split('/').some((c) => c === '.' || c === '..')) throw new ImageError(`${path}: not an absolute path inside the guest's file system`);
  return debugfsWord(path);
}

/** One debugfs request on the image; debugfs exits 0 even when the request fails (debugfs.c reports on stderr and goes on), so anything on stderr besides its version banner is the error. */
async function debugfs(image: string, request: string, what: string): Promise<void> {
  let stderr: string;
  try {
    ({ stderr } = await run('debugfs', ['-w', '-R', request, image]));
  } catch (e) {
    throw new ImageError(`debugfs -w ${image}: ${(e as Error).message.split('\n')[0]}`);
  }
  const problems = stderr.split('\n').map((l) => l.trim()).filter((l) => l && !/^debugfs \d+\.\d+/.test(l));
  if (problems.length) throw new ImageError(`debugfs -w ${image}: ${what}: ${problems.join('; ')}`);
}

/**
 * Applies `edits` in order to the unmounted ext2/3/4 image at `image`, one debugfs run each (a
 * run takes milliseconds, and a failure then names the edit that failed).
 */
export async function editExt4Image(image: string, edits: readonly Ext4Edit[]): Promise<void> {
  const scratch = await mkdtemp(join(tmpdir(), 'pvbox-debugfs-'));
  try {
    let n = 0;
    for (const e of edits) {
      const to = guestPath(e.path);
      if (e.op === 'mkdir' || e.op === 'rm') { await debugfs(image, `${e.op} ${to}`, `${e.op} ${e.path}`); continue; }
      const from = e.op === 'copy' ? e.from : join(scratch, `file-${n++}`);
      if (e.op === 'write') await writeFile(from, e.content);
      await debugfs(image, `write ${debugfsWord(from)} ${to}`, `write ${e.path}`);
      // debugfs write copies the host file's permission bits (create_inode.c do_write_internal); set the ones asked for.
      if (e.mode !== undefined) await debugfs(image, `sif ${to} mode 0${(0o100000 | e.mode).toString(8)}`, `chmod ${e.path}`);
    }
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

/**
 * Grows the image file to `sizeBytes` (sparse: the new space takes nothing until written) and its
 * ext4 file system with it. resize2fs works offline on a file system that was never mounted
 * since its last check, as a fresh copy of the cached disk is.
 */
export async function growExt4Image(image: string, sizeBytes: number): Promise<void> {
  await truncate(image, sizeBytes);
  try {
    await run('resize2fs', [image]);
  } catch (e) {
    throw new ImageError(`resize2fs ${image}: ${(e as Error).message.split('\n')[0]}`);
  }
}

/** Where the boot files go in the guest, named as Debian's kernel and initramfs-tools packages name them. */
export function bootPaths(kernelVersion: string): { kernel: string; initrd: string; menu: string } {
  return { kernel: `/boot/vmlinuz-${kernelVersion}`, initrd: `/boot/initrd.img-${kernelVersion}`, menu: '/boot/extlinux/extlinux.conf' };
}

/** The root disk's kernel command line: the initramfs mounts /dev/xvda (read-only; the disk's init checks and remounts it), the console is Xen's. */
export const ROOT_CMDLINE = 'root=/dev/xvda console=hvc0';

/** An extlinux.conf (syslinux's format, which pygrub's ExtLinuxConf.py and pvbox's bootloader read) whose default entry boots the kernel and initramfs in /boot. */
export function extlinuxConf(kernelVersion: string, osName: string): string {
  const p = bootPaths(kernelVersion);
  return [
    '# Written by pvbox install. pvbox (bootloader = "pygrub" in the guest\'s xl.cfg) boots the',
    '# DEFAULT entry: the kernel and initramfs below, with the APPEND line as command line.',
    'DEFAULT debian',
    'LABEL debian',
    `  MENU LABEL ${osName}, Linux ${kernelVersion}`,
    `  LINUX ${p.kernel}`,
    `  INITRD ${p.initrd}`,
    `  APPEND ${ROOT_CMDLINE}`,
    '',
  ].join('\n');
}

/**
 * Makes a copy of the cached root disk boot by itself and carry the guest's name: the kernel and
 * pvbox's initramfs (which mounts `root=`) into /boot, the boot menu, and /etc/hostname and
 * /etc/hosts for `hostname` (the cached disk says 'pvbox').
 */
export async function makeBootable(image: string, kernel: GuestImage, opts: { hostname: string; osName: string }): Promise<void> {
  const p = bootPaths(kernel.kernelVersion);
  const hosts = `127.0.0.1\tlocalhost\n127.0.1.1\t${opts.hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n`;
  await editExt4Image(image, [
    // Debian's base-files ships /boot; the cached disk has it, empty.
    { op: 'mkdir', path: '/boot/extlinux' },
    { op: 'copy', path: p.kernel, from: kernel.kernel, mode: 0o644 },
    { op: 'copy', path: p.initrd, from: kernel.initrd, mode: 0o644 },
    { op: 'write', path: p.menu, content: extlinuxConf(kernel.kernelVersion, opts.osName), mode: 0o644 },
    { op: 'rm', path: '/etc/hostname' },
    { op: 'write', path: '/etc/hostname', content: `${opts.hostname}\n`, mode: 0o644 },
    { op: 'rm', path: '/etc/hosts' },
    { op: 'write', path: '/etc/hosts', content: hosts, mode: 0o644 },
  ]);
}
