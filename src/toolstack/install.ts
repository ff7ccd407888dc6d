// `pvbox install`, virt-install's one-command deployment for a PV guest (virt-install --paravirt on a Xen host: virtinst/cli.py, virtinst/install/installer.py): checks everything it can before it creates anything, then the guest's disk (a copy of the cached Debian root disk, grown, made to boot by itself) and its xl.cfg, which `pvbox create` starts.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { HostError, UsageError } from '../errors.js';
import { parseDiskSpec } from '../backends/vbd/disk-spec.js';
import { parseVifSpec, type VifSpec } from '../backends/vif/vif-spec.js';
import { ensureDefaultImage } from '../images/debian.js';
import { bootPaths, ensureE2fsprogs, growExt4Image, makeBootable, ROOT_CMDLINE } from '../images/guest-disk.js';
import { Progress } from '../images/progress.js';
import { copyRootDisk, DEFAULT_SIZE, ensureRootDisk } from '../images/rootfs.js';
import { readBootFiles } from './bootloader/pygrub.js';
import { runDir, socketIsLive } from './console-server.js';
import { hostMemory } from './domain-process.js';
import { listDomains } from './registry.js';

/** What `--os` (virt-install's --os-variant / --osinfo short ids) names: the Debian suite debootstrap installs. */
export interface OsVariant { id: string; name: string; suite: string }
const OS_VARIANTS: readonly OsVariant[] = [{ id: 'debian12', name: 'Debian GNU/Linux 12 (bookworm)', suite: 'bookworm' }];
/** Other spellings people use for the same system. */
const OS_ALIASES: Record<string, string> = { 'debian-12': 'debian12', bookworm: 'debian12', 'debian12-x86_64': 'debian12' };

/** The domain process's NAME_RE: what xl and pvbox accept as a domain name. */
const NAME_RE = /^[A-Za-z0-9_.-]{1,64}$/;
/** runDomain's floor: a PV Linux guest needs this much. */
const MIN_MEMORY_MIB = 64;
const DEFAULT_MEMORY_MIB = 512;
/** The host's largest sparse file on ext4 (16 TiB with 4 KiB blocks); parseSize's limit for root disks too. */
const MAX_DISK_BYTES = 16 * 2 ** 40;

export interface InstallRequest {
  name: string;
  memoryMiB: number;
  vcpus: number;
  os: OsVariant;
  disk: { sizeBytes: number; path: string };
  /** The guest's NIC, with its MAC fixed now so it keeps it across boots (virt-install writes one into the domain XML). */
  vif?: VifSpec;
  /** Where the xl.cfg goes. */
  configPath: string;
}

/** Where installed guests' disks go: $PVBOX_IMAGEDIR, else /var/lib/pvbox/images (virt-install's /var/lib/libvirt/images). */
export function imageDir(env: NodeJS.ProcessEnv = process.env): string { return env.PVBOX_IMAGEDIR ?? '/var/lib/pvbox/images'; }
/** Where their xl.cfg files go: $PVBOX_CONFDIR, else /etc/pvbox (xl's /etc/xen). */
export function confDir(env: NodeJS.ProcessEnv = process.env): string { return env.PVBOX_CONFDIR ?? '/etc/pvbox'; }

export function osVariant(text: string): OsVariant {
  // --osinfo takes name=ID among other keys (virt-install --osinfo detect=on,name=debian12).
  const id = /(^|,)name=([^,]*)/.exec(text)?.[2] ?? text.trim();
  const key = OS_ALIASES[id.toLowerCase()] ?? id.toLowerCase();
  const v = OS_VARIANTS.find((o) => o.id === key);
  if (!v) throw new UsageError(`--os '${text}': pvbox installs ${OS_VARIANTS.map((o) => o.id).join(', ')}`);
  return v;
}

/** virt-install's `--memory 512` (MiB; `--ram` is its old name); `memory=N` and `currentMemory` forms take the first number. */
export function parseMemoryOption(text: string): number {
  const m = /^(?:memory=)?(\d+)(?:,.*)?$/.exec(text.trim());
  const mib = m ? Number(m[1]) : NaN;
  if (!Number.isSafeInteger(mib) || mib < MIN_MEMORY_MIB || mib > 1 << 20) throw new UsageError(`--memory '${text}': a size in MiB, at least ${MIN_MEMORY_MIB} (e.g. 512)`);
  return mib;
}

export function parseVcpusOption(text: string): number {
  const m = /^(\d+)(?:,.*)?$/.exec(text.trim());
  if (!m || Number(m[1]) < 1) throw new UsageError(`--vcpus '${text}': a number of vCPUs (1)`);
  if (Number(m[1]) > 1) throw new UsageError(`--vcpus ${m[1]}: pvbox runs one vCPU per guest for now (--vcpus 1)`);
  return 1;
}

/**
 * virt-install's `--disk size=4[,path=FILE]` (size in GiB, fractions allowed; `--disk FILE,size=4`
 * names the path first). The disk is always a new raw file.
 */
export function parseDiskOption(text: string): { sizeBytes: number; path?: string } {
  let sizeText: string | undefined, path: string | undefined;
  const parts = text.split(',').map((p) => p.trim()).filter(Boolean);
  parts.forEach((part, i) => {
    const eq = part.indexOf('=');
    if (eq < 0 && i === 0) { path = part; return; }
    const key = part.slice(0, eq), value = part.slice(eq + 1);
    switch (key) {
      case 'size': sizeText = value; break;
      case 'path': path = value; break;
      case 'format': if (value !== 'raw') throw new UsageError(`--disk '${text}': format=${value}: pvbox install makes raw disks`); break;
      case 'bus': if (value !== 'xen') throw new UsageError(`--disk '${text}': bus=${value}: a PV guest's disks are on bus=xen`); break;
      case 'sparse': if (!['yes', 'true', 'on'].includes(value)) throw new UsageError(`--disk '${text}': sparse=${value}: pvbox install makes sparse disks`); break;
      case 'device': if (value !== 'disk') throw new UsageError(`--disk '${text}': device=${value}: only device=disk`); break;
      default: throw new UsageError(`--disk '${text}': unknown key '${eq < 0 ? part : key}' (known: size, path, format=raw, bus=xen, sparse=yes, device=disk)`);
    }
  });
  if (sizeText === undefined) throw new UsageError(`--disk '${text}': no size= (in GiB, e.g. --disk size=4)`);
  const gib = /^\d+(\.\d+)?$/.test(sizeText) ? Number(sizeText) : NaN;
  // Whole MiB, as virt-install rounds a fractional GiB size to its allocation unit.
  const sizeBytes = Math.ceil((gib * 2 ** 30) / 2 ** 20) * 2 ** 20;
  if (!Number.isFinite(gib) || sizeBytes < DEFAULT_SIZE) throw new UsageError(`--disk size=${sizeText}: a size in GiB, at least ${DEFAULT_SIZE / 2 ** 30} (the installed system's disk)`);
  if (sizeBytes > MAX_DISK_BYTES) throw new UsageError(`--disk size=${sizeText}: at most ${MAX_DISK_BYTES / 2 ** 30} GiB`);
  if (path === '') throw new UsageError(`--disk '${text}': path= is empty`);
  return { sizeBytes, ...(path !== undefined ? { path } : {}) };
}

/** virt-install's `--network bridge=BR[,mac=MAC][,model=…]` as an xl vif; `none` (or no option) is no NIC. */
export function parseNetworkOption(text: string): VifSpec | undefined {
  if (text === 'none') return undefined;
  const kv = text.split(',').map((p) => p.trim()).filter(Boolean).map((p) => {
    const eq = p.indexOf('=');
    return eq < 0 ? ['', p] as const : [p.slice(0, eq), p.slice(eq + 1)] as const;
  });
  const out: string[] = [];
  for (const [key, value] of kv) {
    if (key === 'bridge' || key === 'mac' || key === 'model') out.push(`${key}=${value}`);
    else if (key === 'network') throw new UsageError(`--network '${text}': pvbox has no libvirt networks; name a host bridge (--network bridge=BR)`);
    else throw new UsageError(`--network '${text}': unknown key '${key || value}' (known: bridge, mac, model)`);
  }
  if (!kv.some(([k]) => k === 'bridge')) throw new UsageError(`--network '${text}': no bridge= (e.g. --network bridge=br0)`);
  try { return parseVifSpec(out.join(', '), 0); } catch (e) { throw new UsageError(`--network '${text}': ${(e as Error).message.replace(/^vif '[^']*': /, '')}`); }
}

/** A name a live guest has: registered domains, and `pvbox run` guests, known by their console sockets. */
async function liveDomainNamed(name: string): Promise<number | undefined> {
  const registered = listDomains().find((d) => d.name === name);
  if (registered) return registered.domid;
  let entries: string[] = [];
  try { entries = readdirSync(runDir()); } catch { /* none */ }
  for (const e of entries) {
    const m = /^console-(\d+)-([^@]+)$/.exec(e);
    if (m && m[2] === name && (await socketIsLive(join(runDir(), e)))) return Number(m[1]);
  }
  return undefined;
}

/**
 * Everything that can be refused is refused here, before anything is created: the name (a live
 * domain, an installed config or disk), the paths, the memory the host has, the bridge, root.
 */
export async function checkInstall(opts: { name: string; memoryMiB?: number; vcpus: number; os: OsVariant; disk: { sizeBytes: number; path?: string }; vif?: VifSpec }): Promise<InstallRequest> {
  const { name } = opts;
  if (!NAME_RE.test(name)) throw new UsageError(`--name '${name}': use letters, digits, '.', '_' and '-' (at most 64)`);
  const memoryMiB = opts.memoryMiB ?? DEFAULT_MEMORY_MIB;
  if (process.getuid?.() !== 0) throw new HostError(`pvbox install needs root (it writes ${confDir()} and ${imageDir()}, and builds the Debian disk with debootstrap)`);
  const domid = await liveDomainNamed(name);
  if (domid !== undefined) throw new UsageError(`a domain named '${name}' already exists (domain ${domid})`);
  const configPath = resolve(confDir(), `${name}.cfg`);
  if (existsSync(configPath)) throw new UsageError(`${configPath} exists: a guest named '${name}' is installed already ('pvbox create ${configPath}' starts it)`);
  const diskPath = resolve(opts.disk.path ?? join(imageDir(), `${name}.img`));
  if (existsSync(diskPath)) throw new UsageError(`${diskPath} exists: pvbox install makes a new disk (remove it, or --disk path= another file)`);
  // The default image directory is made on the way; a path the user named must have its directory.
  if (opts.disk.path !== undefined && !statSync(dirname(diskPath), { throwIfNoEntry: false })?.isDirectory()) throw new UsageError(`--disk path=${opts.disk.path}: no directory ${dirname(diskPath)}`);
  const { availableMiB } = hostMemory();
  if (memoryMiB > availableMiB) throw new HostError(`not enough memory for '${name}': it needs ${memoryMiB} MiB, the host has ${availableMiB} MiB available`);
  const bridge = opts.vif?.bridge;
  if (bridge !== undefined && !existsSync(`/sys/class/net/${bridge}/bridge`)) {
    throw new HostError(existsSync(`/sys/class/net/${bridge}`) ? `--network bridge=${bridge}: ${bridge} is not a bridge` : `--network bridge=${bridge}: no such bridge on this host (create it, e.g. 'ip link add ${bridge} type bridge && ip link set ${bridge} up')`);
  }
  return { name, memoryMiB, vcpus: opts.vcpus, os: opts.os, disk: { sizeBytes: opts.disk.sizeBytes, path: diskPath }, ...(opts.vif ? { vif: opts.vif } : {}), configPath };
}

/** The guest's xl.cfg(5): what `pvbox create` (and xl create on a Xen host) reads back. */
export function installConfigText(req: InstallRequest, kernelVersion: string, now = new Date()): string {
  const q = (s: string) => `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
  const lines = [
    `# ${req.name}: ${req.os.name}, installed by pvbox install on ${now.toISOString().slice(0, 10)}.`,
    `# Start it with 'pvbox create ${req.configPath}'. Its disk boots by itself: bootloader = "pygrub" reads`,
    `# /boot/extlinux/extlinux.conf on it (Linux ${kernelVersion} and pvbox's initramfs, ${ROOT_CMDLINE}).`,
    `name = ${q(req.name)}`,
    'type = "pv"',
    `memory = ${req.memoryMiB}`,
    `vcpus = ${req.vcpus}`,
    'bootloader = "pygrub"',
    `disk = [ ${q(`format=raw, vdev=xvda, access=rw, target=${req.disk.path}`)} ]`,
  ];
  if (req.vif) lines.push(`vif = [ ${q([`mac=${req.vif.mac}`, `bridge=${req.vif.bridge}`, ...(req.vif.model ? [`model=${req.vif.model}`] : [])].join(', '))} ]`);
  lines.push('on_poweroff = "destroy"', 'on_reboot = "restart"', 'on_crash = "destroy"', '');
  return lines.join('\n');
}

/**
 * Creates the guest's disk and config: the cached root disk (built with debootstrap on first use)
 * copied, grown, given /boot and the guest's name, checked with pvbox's own bootloader, then the
 * xl.cfg. On any failure what was made is removed again. Returns a function that removes both,
 * for a start that fails afterwards.
 */
export async function installGuest(req: InstallRequest, opts: { quiet?: boolean } = {}): Promise<{ undo: () => Promise<void> }> {
  const progress = new Progress(!!opts.quiet, 0);
  ensureE2fsprogs('pvbox install');
  const kernel = await ensureDefaultImage({ quiet: opts.quiet });
  const base = await ensureRootDisk({ suite: req.os.suite, quiet: opts.quiet });
  const made: string[] = [];
  const undo = async () => { for (const p of made.reverse()) await rm(p, { force: true }); };
  try {
    // The config first, created exclusively: two installs of one name cannot both get past here.
    await mkdir(dirname(req.configPath), { recursive: true, mode: 0o755 });
    try {
      await writeFile(req.configPath, installConfigText(req, kernel.kernelVersion), { flag: 'wx', mode: 0o644 });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') throw new UsageError(`${req.configPath} exists: a guest named '${req.name}' is installed already`);
      throw new HostError(`cannot write ${req.configPath}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    made.push(req.configPath);

    await mkdir(dirname(req.disk.path), { recursive: true, mode: 0o755 });
    made.push(req.disk.path);
    await copyRootDisk(base, req.disk.path, { quiet: opts.quiet });
    const gib = (n: number) => `${(n / 2 ** 30).toFixed(2).replace(/\.?0+$/, '')} GiB`;
    if (req.disk.sizeBytes > base.record.sizeBytes) {
      const grow = progress.task(`growing the disk and its file system to ${gib(req.disk.sizeBytes)} (resize2fs)`);
      try { await growExt4Image(req.disk.path, req.disk.sizeBytes); grow.end(); } catch (e) { grow.fail(); throw e; }
    }
    const p = bootPaths(kernel.kernelVersion);
    const boot = progress.task(`installing Linux ${kernel.kernelVersion} and pvbox's initramfs in /boot, boot menu ${p.menu} (debugfs)`);
    try {
      await makeBootable(req.disk.path, kernel, { hostname: req.name, osName: req.os.name });
      // What `pvbox create` will do with bootloader = "pygrub", done once now so a disk that would not boot is never left as installed.
      const found = await readBootFiles(parseDiskSpec(`format=raw, vdev=xvda, access=ro, target=${req.disk.path}`));
      if (found.args !== ROOT_CMDLINE || !found.initrd) throw new HostError(`${req.disk.path}: the boot menu written reads back as '${found.args}'`);
      boot.end();
    } catch (e) { boot.fail(); throw e; }
  } catch (e) {
    await undo();
    throw e;
  }
  return { undo };
}
