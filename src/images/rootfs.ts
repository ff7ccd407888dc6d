// Root disks for pvbox guests (`pvbox image`): a Debian root filesystem installed by debootstrap, set up for a Xen PV console and the guest kernel's modules, made into an ext4 image with `mkfs.ext4 -d` (no loop devices), cached by recipe.

import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, readFile, readdir, rename, rm, stat, statfs, symlink, truncate, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { HostError, ImageError, UsageError } from '../errors.js';
import { aptDownload, aptShow, debFileName, extractDeb, run } from './deb.js';
import { cacheDir, ensureDefaultImage, type GuestImage } from './debian.js';
import { ensureHostCommands } from './host-packages.js';
import { fmtBytes as fmtSmall, Progress, type ProgressTask } from './progress.js';

/** Bump when the way a root disk is built changes in a way the recipe below does not capture. */
const ROOTFS_FORMAT = 1;

/**
 * What `--variant=minbase` lacks for a system that boots by itself: an init, kmod (modprobe of
 * the kernel's modules), e2fsprogs (fsck.ext4 for checkroot.sh) and iproute2 (`ip`, for the
 * network devices to come). The init is Debian's sysvinit, not systemd: measured under pvbox on
 * a PVM host (every exit ~45 µs), systemd 252 took 10 s from its start to queueing its first job
 * and ~60 s to reach sysinit.target, its udev coldplug was too slow for the 90 s device job
 * timeout of dev-hvc0.device (so no getty), and twice PID 1 then aborted ("Assertion 'm' failed
 * at src/libsystemd/sd-bus/bus-objects.c:1665, function vtable_member_hash_func()") when
 * getty-static.service's systemctl called it over its private bus — a corruption that points at
 * pvbox, still to be found. sysvinit with SYSINIT reaches a shell ~10 s after the kernel starts
 * /init (see test/guest/root-disk.test.ts). Without udev, /dev is the devtmpfs the initramfs
 * mounted (xen-blkfront and the other frontends are already loaded by then).
 */
export const BASE_PACKAGES = ['sysvinit-core', 'kmod', 'e2fsprogs', 'iproute2'] as const;

export const DEFAULT_SUITE = 'bookworm';
export const DEFAULT_SIZE = 2 * 2 ** 30;
const FALLBACK_MIRROR = 'http://deb.debian.org/debian';
const HOSTNAME = 'pvbox';
/** What the guest prints on its console once booted, the marker the default initramfs prints too. */
const READY_PREFIX = 'PVBOX-READY';

/** Where SYSINIT goes in the tree: site-local, outside /etc/init.d where insserv would want LSB headers. */
const SYSINIT_PATH = 'usr/local/sbin/pvbox-sysinit';

/**
 * The boot's sysinit step in place of Debian's /etc/init.d/rcS. Every fork+exec costs ~140 ms
 * in a guest on a PVM host (measured: ten /bin/true take 1.4 s, nearly all in the guest kernel's
 * page-table hypercalls), and rcS's scripts are made of hundreds: checkroot.sh alone took 23.7 s,
 * mountall.sh 17.6 s, the whole of rcS ~100 s. This does the same work for this disk with about
 * ten programs (checkroot.sh, mountkernfs.sh, mountdevsubfs.sh, mountall.sh, hostname.sh and
 * bootmisc.sh, in their order), then runs whatever else packages put in /etc/rcS.d (ifupdown's
 * networking, kmod's /etc/modules loading, ...) as rcS would. Shell builtins where a program
 * would do, for the same reason.
 */
const RCS_SCRIPTS_REPLACED = [
  'mountkernfs.sh', 'hostname.sh', 'mountdevsubfs.sh', 'checkroot.sh', 'checkroot-bootclean.sh', 'checkfs.sh', 'mountall.sh', 'mountall-bootclean.sh',
  'mountnfs.sh', 'mountnfs-bootclean.sh', 'bootmisc.sh', 'hwclock.sh', 'brightness', 'urandom', 'mount-configfs',
];
const SYSINIT = `#!/bin/sh
# pvbox-sysinit: the sysinit step of a pvbox root disk (written by pvbox image), run by init from
# /etc/inittab instead of /etc/init.d/rcS; see src/images/rootfs.ts in pvbox for why.
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
umask 022
mounted() { while read -r _ m _; do [ "$m" = "$1" ] && return 0; done < /proc/mounts; return 1; }

# Kernel filesystems: the initramfs moved its /proc /sys /dev /run here; mount what is missing.
[ -e /proc/self ] || mount -t proc -o nosuid,nodev,noexec proc /proc
[ -d /sys/kernel ] || mount -t sysfs -o nosuid,nodev,noexec sysfs /sys
mounted /run || mount -t tmpfs -o nosuid,nodev,mode=0755 tmpfs /run
mounted /dev || mount -t devtmpfs -o mode=0755,nosuid devtmpfs /dev
[ -d /dev/pts ] && [ -d /dev/shm ] || mkdir -p /dev/pts /dev/shm
mounted /dev/pts || mount -t devpts -o noexec,nosuid,gid=5,mode=0620 devpts /dev/pts
mounted /dev/shm || mount -t tmpfs -o nosuid,nodev tmpfs /dev/shm
[ -d /run/lock ] || mkdir -m 1777 /run/lock
: > /run/utmp

# checkroot.sh: fsck the root filesystem while it is read-only (fstab pass > 0), then remount
# it as fstab says. fsck exit codes (fsck(8)): 1 errors corrected, 2/3 reboot needed, >= 4 left.
rootdev= rootopts=defaults rootpass=0 swap=
while read -r dev mnt type opts dump pass; do
    case "$dev" in ''|'#'*) continue ;; esac
    [ "$mnt" = / ] && rootdev=$dev rootopts=$opts rootpass=\${pass:-0}
    [ "$type" = swap ] && swap=yes
done < /etc/fstab
fsckopts=-a
read -r cmdline < /proc/cmdline
for arg in $cmdline; do
    case "$arg" in fastboot|fsck.mode=skip) rootpass=0 ;; forcefsck|fsck.mode=force) fsckopts="-a -f" ;; esac
done
# Booted with "rw" the root is mounted read-write already, and fsck must not touch it (as
# checkroot.sh, which only warns then).
rootrw=
while read -r dev mnt type opts rest; do
    [ "$mnt" = / ] && [ "$dev" != rootfs ] && case ",$opts," in *,rw,*) rootrw=yes ;; *) rootrw= ;; esac
done < /proc/mounts
[ -n "$rootrw" ] && [ "$rootpass" != 0 ] && echo "pvbox-sysinit: root is mounted read-write (rw on the kernel command line): not checked"
if [ -n "$rootdev" ] && [ "$rootpass" != 0 ] && [ -z "$rootrw" ] && [ ! -f /fastboot ]; then
    fsck $fsckopts -T "$rootdev"
    rc=$?
    if [ $rc -ge 4 ]; then
        echo "pvbox-sysinit: fsck of $rootdev left errors (exit $rc); fix them in this shell, then exit to reboot"
        sulogin --force
        reboot -f
    elif [ $rc -ge 2 ]; then
        echo "pvbox-sysinit: fsck repaired $rootdev; rebooting"
        reboot -f
    fi
fi
case ",$rootopts," in *,ro,*) ;; *) mount -o remount,rw / ;; esac
[ -L /etc/mtab ] || ln -sf ../proc/self/mounts /etc/mtab 2>/dev/null

# mountall.sh: the rest of fstab, and swap.
mount -a -t nonfs,nfs4,smbfs,cifs,ncp,ncpfs,coda,ocfs2,gfs,gfs2,ceph -O no_netdev
[ -n "$swap" ] && swapon -a -e

# hostname.sh without a process.
if read -r name < /etc/hostname 2>/dev/null && [ -n "$name" ]; then echo "$name" > /proc/sys/kernel/hostname; fi
ip link set lo up 2>/dev/null

# Whatever else is in rcS.d, as /etc/init.d/rcS would run it.
for script in /etc/rcS.d/S*; do
    [ -x "$script" ] || continue
    case " ${RCS_SCRIPTS_REPLACED.join(' ')} " in *" \${script#/etc/rcS.d/S[0-9][0-9]} "*) continue ;; esac
    "$script" start
done
exit 0
`;

/** Files written into the tree after debootstrap, path → contents (mode 0644, 0755 in sbin). Part of the recipe. */
export const CONFIG_FILES: Readonly<Record<string, string>> = {
  // initramfs /init mounts it read-only; SYSINIT checks it and remounts it read-write from this
  // line, as checkroot.sh does on a Debian install.
  'etc/fstab': '# <file system> <mount point> <type> <options> <dump> <pass>\n/dev/xvda / ext4 errors=remount-ro 0 1\n',
  'etc/hostname': `${HOSTNAME}\n`,
  'etc/hosts': `127.0.0.1\tlocalhost\n127.0.1.1\t${HOSTNAME}\n::1\tlocalhost ip6-localhost ip6-loopback\n`,
  // No network yet (the host's resolv.conf that debootstrap copied in means nothing to the guest).
  'etc/resolv.conf': '',
  // Debian's inittab (sysvinit-core) with one getty, on the Xen console, logging root in
  // without a password so scripts and tests get a shell, instead of six on VTs nobody sees.
  // Xen's control/shutdown "reboot" reaches init as SIGINT (drivers/xen/manage.c → ctrl_alt_del),
  // hence the ctrlaltdel line; "poweroff" runs /sbin/poweroff (orderly_poweroff). The `once`
  // entry runs when the runlevel's `wait` scripts are done: the readiness line pvbox's --stats
  // and tests look for, as the default initramfs prints it.
  'etc/inittab': [
    '# /etc/inittab of a pvbox root disk (written by pvbox image; see inittab(5)).',
    'id:2:initdefault:',
    `si::sysinit:/${SYSINIT_PATH}`,
    '~~:S:wait:/sbin/sulogin --force',
    ...[0, 1, 2, 3, 4, 5, 6].map((n) => `l${n}:${n}:wait:/etc/init.d/rc ${n}`),
    'z6:6:respawn:/sbin/sulogin --force',
    'ca:12345:ctrlaltdel:/sbin/shutdown -t1 -a -r now',
    `rd:2345:once:/bin/sh -c 'read up idle < /proc/uptime; echo "${READY_PREFIX} $up" > /dev/console'`,
    'hv:2345:respawn:/sbin/agetty --autologin root --noclear hvc0 vt220',
    '',
  ].join('\n'),
  [SYSINIT_PATH]: SYSINIT,
  // bash 5.2 turns on bracketed paste, whose escape sequences around every command line get in
  // the way of scripts reading the serial console.
  'root/.inputrc': 'set enable-bracketed-paste off\n',
};
export interface RootDiskOptions {
  suite?: string;
  sizeBytes?: number;
  /** Packages beyond BASE_PACKAGES. */
  packages?: readonly string[];
  /** Build again even if the cache has this recipe. */
  rebuild?: boolean;
  quiet?: boolean;
}

/** What is stored as rootfs.json beside a cached root.img. */
export interface RootDiskRecord {
  format: number;
  recipe: string;
  suite: string;
  mirror: string;
  packages: string[];
  sizeBytes: number;
  kernelVersion: string;
  kernelPackageVersion: string;
  /** Installed packages, name → version. */
  installed: Record<string, string>;
  /** Bytes the tree took before mkfs. */
  treeBytes: number;
  buildSeconds: number;
  builtAt: string;
}

export interface RootDisk {
  /** The cached image: copy it before booting it read-write. */
  path: string;
  record: RootDiskRecord;
}

function fmtBytes(n: number): string {
  return n >= 2 ** 30 ? `${(n / 2 ** 30).toFixed(1).replace(/\.0$/, '')} GiB` : fmtSmall(n);
}

/** Sizes as people write them: 2G, 512M, 1.5GiB, 4096 (bytes); binary units. */
export function parseSize(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?$/i.exec(text.trim());
  if (!m) throw new UsageError(`--size '${text}': expected a size such as 2G or 1536M`);
  const unit = { '': 1, k: 1 << 10, m: 1 << 20, g: 1 << 30, t: 2 ** 40 }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g' | 't'];
  const bytes = Math.round(Number(m[1]) * unit);
  if (bytes < 256 << 20 || bytes > 16 * 2 ** 40) throw new UsageError(`--size '${text}': a root disk is 256M to 16T`);
  if (bytes % 4096) throw new UsageError(`--size '${text}': not a whole number of 4 KiB blocks`);
  return bytes;
}

/** Debian package names (policy §5.6.1). */
export function checkPackageName(name: string): string {
  if (!/^[a-z0-9][a-z0-9+.-]+$/.test(name)) throw new UsageError(`--packages: '${name}' is not a Debian package name`);
  return name;
}

/**
 * The Debian mirror the host's apt uses for `suite`-like archives (one-line `.list` files and
 * deb822 `.sources` files), so the image comes from where the host's packages come from; else
 * deb.debian.org. Security and third-party archives are skipped: a candidate must serve a suite
 * debootstrap has a script for.
 */
export async function hostMirror(aptDir = '/etc/apt', knownSuite: (s: string) => boolean = debootstrapKnowsSuite): Promise<string> {
  const files = [join(aptDir, 'sources.list')];
  for (const n of (await readdir(join(aptDir, 'sources.list.d')).catch(() => [] as string[])).sort()) {
    if (n.endsWith('.list') || n.endsWith('.sources')) files.push(join(aptDir, 'sources.list.d', n));
  }
  const candidates: { uri: string; suites: string[] }[] = [];
  for (const f of files) {
    const text = await readFile(f, 'utf8').catch(() => '');
    if (f.endsWith('.sources')) {
      for (const stanza of text.split(/\n\s*\n/)) {
        const field = (k: string) => new RegExp(`^${k}:[ \\t]*(.*)$`, 'mi').exec(stanza.replace(/^#.*$/gm, ''))?.[1]?.trim() ?? '';
        if (!field('Types').split(/\s+/).includes('deb') || /^(no|false)$/i.test(field('Enabled'))) continue;
        for (const uri of field('URIs').split(/\s+/).filter(Boolean)) candidates.push({ uri, suites: field('Suites').split(/\s+/) });
      }
    } else {
      for (const line of text.split('\n')) {
        const m = /^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)/.exec(line);
        if (m) candidates.push({ uri: m[1]!, suites: [m[2]!] });
      }
    }
  }
  for (const c of candidates) {
    if (!/^https?:\/\//.test(c.uri) || /security/.test(c.uri)) continue;
    if (c.suites.some((s) => knownSuite(s))) return c.uri.replace(/\/+$/, '');
  }
  return FALLBACK_MIRROR;
}

function debootstrapKnowsSuite(suite: string): boolean {
  return /^[a-z]+$/.test(suite) && existsSync(join('/usr/share/debootstrap/scripts', suite));
}

/** Release suites with -updates and -security archives (everything but sid/unstable/experimental). */
function sourcesList(mirror: string, suite: string): string {
  const lines = [`deb ${mirror} ${suite} main`];
  if (!/^(sid|unstable|experimental)$/.test(suite)) {
    lines.push(`deb ${mirror} ${suite}-updates main`, `deb http://deb.debian.org/debian-security ${suite}-security main`);
  }
  return lines.join('\n') + '\n';
}

function recipeOf(suite: string, packages: readonly string[], sizeBytes: number, kernel: GuestImage): string {
  return createHash('sha256')
    .update(JSON.stringify({ ROOTFS_FORMAT, suite, packages, sizeBytes, CONFIG_FILES, kernel: kernel.kernelVersion, kernelPackage: kernel.packageVersion }))
    .digest('hex')
    .slice(0, 10);
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Mount points at or below `dir`, deepest first (debootstrap mounts /proc and /sys in its target and may leave them after a failure). */
async function mountsUnder(dir: string): Promise<string[]> {
  const info = await readFile('/proc/self/mountinfo', 'utf8').catch(() => '');
  const unescape = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
  return info
    .split('\n')
    .map((l) => unescape(l.split(' ')[4] ?? ''))
    .filter((p) => p === dir || p.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
}

/** Removes a scratch tree, unmounting first whatever is mounted inside it so `rm` never reaches the host's /proc or /dev. */
async function removeScratch(dir: string): Promise<void> {
  for (const m of await mountsUnder(dir)) await run('umount', ['-l', m]).catch(() => undefined);
  if ((await mountsUnder(dir)).length) throw new HostError(`cannot unmount what debootstrap left mounted under ${dir}; remove it by hand`);
  await rm(dir, { recursive: true, force: true });
}

/** Scratch trees of builds whose process is gone. */
async function sweepScratch(tmpDir: string): Promise<void> {
  for (const n of await readdir(tmpDir).catch(() => [] as string[])) {
    const m = /^rootfs-(\d+)-/.exec(n);
    if (m && !pidAlive(Number(m[1]))) await removeScratch(join(tmpDir, n)).catch(() => undefined);
  }
}

async function readRecord(dir: string, recipe: string): Promise<RootDisk | undefined> {
  try {
    const record = JSON.parse(await readFile(join(dir, 'rootfs.json'), 'utf8')) as RootDiskRecord;
    const path = join(dir, 'root.img');
    if (record.format !== ROOTFS_FORMAT || record.recipe !== recipe || (await stat(path)).size !== record.sizeBytes) return undefined;
    return { path, record };
  } catch {
    return undefined;
  }
}

/** Cached root disks kept besides the newest build (each takes ~0.6 GiB of real space). */
const KEEP_OTHER_BUILDS = 2;

/** Drops all but the most recently built KEEP_OTHER_BUILDS cached disks other than `keep` (older recipes, kernels, sizes). */
async function pruneCache(rootfsDir: string, keep: string): Promise<void> {
  const builds: { dir: string; at: string }[] = [];
  for (const n of await readdir(rootfsDir).catch(() => [] as string[])) {
    const dir = join(rootfsDir, n);
    if (dir === keep) continue;
    const at = await readFile(join(dir, 'rootfs.json'), 'utf8').then((t) => (JSON.parse(t) as RootDiskRecord).builtAt, () => '');
    builds.push({ dir, at });
  }
  builds.sort((a, b) => b.at.localeCompare(a.at));
  for (const b of builds.slice(KEEP_OTHER_BUILDS)) await rm(b.dir, { recursive: true, force: true });
}

/** The guest kernel's package (cached by the default image's build, else fetched with apt). */
async function kernelDeb(kernel: GuestImage, scratch: string, progress: Progress): Promise<string> {
  const name = `linux-image-${kernel.kernelVersion}`;
  const debs = join(cacheDir(), 'debs');
  const path = join(debs, debFileName(name, kernel.packageVersion, 'amd64'));
  if (existsSync(path)) return path;
  const rec = (await aptShow([`${name}=${kernel.packageVersion}`])).get(name)!;
  const task = progress.task(`downloading ${name} ${kernel.packageVersion} for its modules`);
  try {
    const [got] = await aptDownload([rec], debs, join(scratch, 'download'), task);
    task.end(fmtBytes(Number(rec.Size ?? 0)));
    return got!;
  } catch (e) {
    task.fail();
    throw e;
  }
}

/** One line out of debootstrap's failure: its E: line, with a hint for the usual causes. */
function debootstrapFailure(log: string, mirror: string, suite: string): string {
  const e = log.split('\n').filter((l) => /^E: /.test(l)).pop()?.slice(3).trim();
  const text = e ?? log.trim().split('\n').pop() ?? 'no output';
  const hint = /release file|Release signed|resolve|connect|Could not|Temporary failure/i.test(text) ? ` (is ${mirror} reachable?)` : /No space left/i.test(text) ? ' (disk full)' : '';
  return `debootstrap ${suite} from ${mirror} failed: ${text}${hint}`;
}

/**
 * Runs debootstrap, turning its "I: Retrieving/Validating/Extracting/Unpacking/Configuring"
 * lines into two progress steps (download; install), and keeping the whole output for the
 * error message.
 */
function debootstrap(args: string[], progress: Progress, packagesHint: number): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn('debootstrap', args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C', DEBIAN_FRONTEND: 'noninteractive' } });
    let log = '';
    let pending = '';
    let downloaded = 0;
    let installed = 0;
    let download: ProgressTask | undefined = progress.task('debootstrap: fetching packages', 'items');
    let install: ProgressTask | undefined;
    const line = (l: string) => {
      // Every package is validated once, whether downloaded now or found in --cache-dir.
      if (/^I: Validating (?!InRelease|Release|Packages)/.test(l)) {
        download?.update(++downloaded, packagesHint);
      } else if (/^I: (Extracting|Unpacking|Configuring|Installing)/.test(l)) {
        if (download) {
          download.end(`${downloaded} packages`);
          download = undefined;
          install = progress.task('debootstrap: installing packages', 'items');
        }
        // Each package is unpacked and configured, the required ones extracted first too.
        install?.update(++installed, Math.ceil(downloaded * 2.8));
      }
    };
    const feed = (b: Buffer) => {
      const s = b.toString('utf8');
      log += s;
      pending += s;
      const lines = pending.split('\n');
      pending = lines.pop()!;
      for (const l of lines) line(l);
    };
    child.stdout.on('data', feed);
    child.stderr.on('data', feed);
    child.on('error', (e) => reject(new HostError(`debootstrap: ${e.message}`)));
    child.on('close', (code, signal) => {
      if (code === 0) {
        download?.end();
        install?.end(`${installed} steps`);
        resolvePromise(log);
      } else {
        (install ?? download)?.fail(signal ?? `exit ${code}`);
        reject(Object.assign(new Error(log), { debootstrapLog: log }));
      }
    });
  });
}

/** Bytes a tree takes on disk (du). */
async function treeBytes(dir: string): Promise<number> {
  const { stdout } = await run('du', ['-s', '-x', '--block-size=1', dir]);
  return Number(stdout.split(/\s/)[0]);
}

/** Writes the configuration, the kernel modules and the cleanups into a debootstrapped tree. */
async function configureTree(root: string, opts: { mirror: string; suite: string; kernel: GuestImage; kernelDebPath: string; scratch: string; task: ProgressTask }): Promise<void> {
  for (const [rel, content] of Object.entries(CONFIG_FILES)) {
    const p = join(root, rel);
    await mkdir(dirname(p), { recursive: true });
    await rm(p, { force: true }); // resolv.conf may be a symlink
    const mode = /(^|\/)s?bin\//.test(rel) ? 0o755 : 0o644;
    await writeFile(p, content, { mode });
    await chmod(p, mode);
  }
  // What checkroot.sh would otherwise create at every boot until it exists.
  await rm(join(root, 'etc/mtab'), { force: true });
  await symlink('../proc/self/mounts', join(root, 'etc/mtab'));
  await writeFile(join(root, 'etc/apt/sources.list'), sourcesList(opts.mirror, opts.suite));
  // root without a password (login on other consoles, `su`): a test guest, not a server.
  const shadow = join(root, 'etc/shadow');
  await writeFile(shadow, (await readFile(shadow, 'utf8')).replace(/^root:[^:]*:/m, 'root::'));
  // debootstrap leaves its .debs and package lists (~90 MiB); apt-get update brings fresh lists.
  for (const d of ['var/cache/apt/archives', 'var/lib/apt/lists']) {
    for (const n of await readdir(join(root, d)).catch(() => [] as string[])) if (n.endsWith('.deb') || n.includes('_')) await rm(join(root, d, n), { force: true });
  }
  await rm(join(root, 'var/cache/apt/pkgcache.bin'), { force: true });
  await rm(join(root, 'var/cache/apt/srcpkgcache.bin'), { force: true });

  // The guest kernel's modules, so modprobe works inside; depmod of the tree's own kmod builds
  // modules.dep & co. (the package's postinst would run it on an installed system).
  const kx = join(opts.scratch, 'kernel');
  await extractDeb(opts.kernelDebPath, kx, 400 << 20, opts.task);
  const kver = opts.kernel.kernelVersion;
  const from = [join(kx, 'lib/modules', kver), join(kx, 'usr/lib/modules', kver)].find((p) => existsSync(p));
  if (!from) throw new ImageError(`linux-image-${kver} has no lib/modules/${kver}`);
  await mkdir(join(root, 'lib/modules'), { recursive: true });
  await rm(join(root, 'lib/modules', kver), { recursive: true, force: true });
  await rename(from, join(root, 'lib/modules', kver));
  await run('chroot', [root, '/sbin/depmod', '-a', kver]);
}

async function installedPackages(root: string): Promise<Record<string, string>> {
  const { stdout } = await run('dpkg-query', [`--admindir=${join(root, 'var/lib/dpkg')}`, '-W', '-f', '${Package} ${Version}\n']);
  return Object.fromEntries(stdout.trim().split('\n').map((l) => l.split(' ') as [string, string]));
}

/** Checks before a long build that the cache's filesystem has room for the tree, the image's data and the downloads. */
async function checkFreeSpace(dir: string, sizeBytes: number): Promise<void> {
  const s = await statfs(dir);
  const free = s.bavail * s.bsize;
  // Tree (~0.7 GiB with all the kernel's modules) + the same again in the image + downloads.
  const need = Math.min(sizeBytes, 1536 << 20) + (256 << 20);
  if (free < need) throw new HostError(`not enough space in ${dir} to build a root disk: ${fmtBytes(free)} free, about ${fmtBytes(need)} needed`);
}

async function build(suite: string, packages: string[], sizeBytes: number, kernel: GuestImage, finalDir: string, recipe: string, progress: Progress): Promise<RootDisk> {
  const started = Date.now();
  const cache = cacheDir();
  const tmpDir = join(cache, 'tmp');
  await mkdir(tmpDir, { recursive: true });
  await sweepScratch(tmpDir);
  await checkFreeSpace(tmpDir, sizeBytes);
  const scratch = join(tmpDir, `rootfs-${process.pid}-${randomBytes(4).toString('hex')}`);
  const root = join(scratch, 'root');
  await mkdir(root, { recursive: true });
  try {
    const mirror = await hostMirror();
    // debootstrap keeps its downloads here, so a rebuild (another size, more packages) downloads only what is new.
    const debCache = join(cache, 'debootstrap', suite);
    await mkdir(debCache, { recursive: true });
    progress.note(`installing Debian ${suite} (minbase + ${packages.join(', ')}) from ${mirror}`);
    try {
      await debootstrap(['--variant=minbase', `--include=${packages.join(',')}`, `--cache-dir=${debCache}`, suite, root, mirror], progress, 100 + packages.length);
    } catch (e) {
      const log = (e as { debootstrapLog?: string }).debootstrapLog;
      if (log === undefined) throw e;
      const saved = join(cache, 'debootstrap', 'last-failure.log');
      await writeFile(saved, log).catch(() => undefined);
      throw new ImageError(`${debootstrapFailure(log, mirror, suite)} [log: ${saved}]`);
    }

    const configure = progress.task(`configuring: inittab with hvc0 autologin, fstab, modules of ${kernel.kernelVersion}`);
    try {
      await configureTree(root, { mirror, suite, kernel, kernelDebPath: await kernelDeb(kernel, scratch, progress), scratch, task: configure });
      configure.end();
    } catch (e) {
      configure.fail((e as Error).message.split('\n')[0]);
      throw e;
    }

    const bytes = await treeBytes(root);
    // ext4's inode tables, journal and reserved blocks need room beside the files.
    if (bytes * 1.1 + (Math.min(sizeBytes / 32, 128 << 20)) + (64 << 20) > sizeBytes) {
      throw new UsageError(`the Debian tree takes ${fmtBytes(bytes)}; --size ${fmtBytes(sizeBytes)} leaves no room (try --size ${Math.ceil((bytes * 1.5) / 2 ** 30)}G)`);
    }
    const out = join(scratch, 'out');
    await mkdir(out);
    const img = join(out, 'root.img');
    const mkfs = progress.task(`mkfs.ext4 -d: ${fmtBytes(bytes)} into a ${fmtBytes(sizeBytes)} image`);
    try {
      await writeFile(img, '');
      await truncate(img, sizeBytes); // sparse: only what mkfs writes takes space
      await run('mkfs.ext4', ['-q', '-F', '-L', 'root', '-d', root, img]);
      mkfs.end();
    } catch (e) {
      mkfs.fail();
      throw new ImageError(`mkfs.ext4 -d ${root}: ${(e as Error).message.split('\n')[0]}`);
    }
    const record: RootDiskRecord = {
      format: ROOTFS_FORMAT,
      recipe,
      suite,
      mirror,
      packages,
      sizeBytes,
      kernelVersion: kernel.kernelVersion,
      kernelPackageVersion: kernel.packageVersion,
      installed: await installedPackages(root),
      treeBytes: bytes,
      buildSeconds: Math.round((Date.now() - started) / 1000),
      builtAt: new Date().toISOString(),
    };
    await writeFile(join(out, 'rootfs.json'), JSON.stringify(record, null, 2) + '\n');
    await mkdir(dirname(finalDir), { recursive: true });
    // Visible in one step; another process that finished the same recipe first wins.
    await rm(finalDir, { recursive: true, force: true });
    try {
      await rename(out, finalDir);
    } catch (e) {
      const other = await readRecord(finalDir, recipe);
      if (!other) throw e;
      return other;
    }
    await pruneCache(dirname(finalDir), finalDir);
    return { path: join(finalDir, 'root.img'), record };
  } finally {
    await removeScratch(scratch);
  }
}

/**
 * The cached root disk for a recipe (suite, packages, size, the default guest kernel whose
 * modules it carries), building it first if needed: debootstrap (~1 min), configuration, mkfs.
 * Needs root (debootstrap installs packages in a chroot).
 */
export async function ensureRootDisk(opts: RootDiskOptions = {}): Promise<RootDisk> {
  const suite = opts.suite ?? DEFAULT_SUITE;
  if (!/^[a-z]+$/.test(suite)) throw new UsageError(`--suite '${suite}': expected a Debian suite name such as bookworm`);
  const extra = (opts.packages ?? []).map(checkPackageName);
  const packages = [...new Set([...BASE_PACKAGES, ...extra])];
  const sizeBytes = opts.sizeBytes ?? DEFAULT_SIZE;
  const progress = new Progress(!!opts.quiet, 0);

  const kernel = await ensureDefaultImage({ quiet: opts.quiet });
  const recipe = recipeOf(suite, packages, sizeBytes, kernel);
  const finalDir = join(cacheDir(), 'rootfs', `debian-${suite}_${kernel.kernelVersion}_${recipe}`);
  if (!opts.rebuild) {
    const cached = await readRecord(finalDir, recipe);
    if (cached) return cached;
  }
  if (process.getuid?.() !== 0) throw new HostError('building a root disk needs root (debootstrap installs packages in a chroot); run pvbox image as root once, later copies come from the cache');
  ensureHostCommands({ debootstrap: 'debootstrap', 'mkfs.ext4': 'e2fsprogs', chroot: 'coreutils', 'dpkg-query': 'dpkg' }, 'building a root disk', (l) => progress.note(l.replace(/^pvbox: /, '')));
  if (!debootstrapKnowsSuite(suite)) throw new UsageError(`--suite '${suite}': debootstrap has no script for it (see /usr/share/debootstrap/scripts)`);
  return build(suite, packages, sizeBytes, kernel, finalDir, recipe, progress);
}

/** Refuses an --out that cannot be written, before any slow work. Returns the absolute path. */
export async function checkOutPath(out: string, force = false): Promise<string> {
  const target = resolve(out);
  const existing = await stat(target).catch(() => undefined);
  if (existing?.isDirectory()) throw new UsageError(`--out ${out}: is a directory`);
  if (existing && !force) throw new UsageError(`--out ${out}: exists (pass --force to replace it)`);
  if (!(await stat(dirname(target)).catch(() => undefined))?.isDirectory()) throw new UsageError(`--out ${out}: no directory ${dirname(target)}`);
  return target;
}

/**
 * Copies the cached image to `out` (sparse, or a reflink where the filesystem can), through a
 * temporary name in the same directory so `out` is never half-written.
 */
export async function copyRootDisk(disk: RootDisk, out: string, opts: { force?: boolean; quiet?: boolean } = {}): Promise<void> {
  const target = await checkOutPath(out, opts.force);
  const tmp = `${target}.pvbox-${process.pid}.tmp`;
  const progress = new Progress(!!opts.quiet, 0);
  const task = progress.task(`copying the root disk to ${out}`);
  try {
    await run('cp', ['--reflink=auto', '--sparse=always', disk.path, tmp]);
    await rename(tmp, target);
    task.end();
  } catch (e) {
    task.fail();
    await rm(tmp, { force: true });
    const text = (e as Error).message;
    throw new HostError(`cannot write ${out}: ${/No space left/.test(text) ? 'no space left on device' : text.split('\n')[0]}`);
  }
}
