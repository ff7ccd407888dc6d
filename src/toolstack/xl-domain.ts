// From a checked xl.cfg to what a domain process builds (xl_vmcontrol.c create_domain → libxl_domain_create_new): files checked against the host with the file:line of their key, pygrub's work for bootloader=, libxl's defaults.
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { ConfigError, ImageError } from '../errors.js';
import { readBootFiles } from './bootloader/pygrub.js';
import { runDir } from './console-server.js';
import type { DomainSpec } from './registry.js';
import { formatOrigin, type XlConfig, type XlOrigin } from './xl-cfg.js';

/** runDomain's floor (toolstack/create.ts MIN_MEMORY_MIB): smaller PV Linux guests do not boot. */
const MIN_MEMORY_MIB = 64;

function at(cfg: XlConfig, key: string): XlOrigin { return cfg.origins.get(key) ?? { file: cfg.file, line: 0 }; }
function fail(cfg: XlConfig, key: string, what: string): never {
  const o = at(cfg, key);
  throw new ConfigError(`${o.line ? formatOrigin(o) : o.file}: ${key.replace(/\[\d+\]$/, '')}: ${what}`);
}

/** A host file named in the config: relative names are taken from the current directory, as xl does. */
function hostFile(cfg: XlConfig, key: string, path: string): string {
  const abs = isAbsolute(path) ? path : resolve(path);
  let st;
  try { st = statSync(abs); } catch { fail(cfg, key, `${path}: no such file`); }
  if (!st.isFile() && !st.isBlockDevice()) fail(cfg, key, `${path}: not a file`);
  return abs;
}

/** Where bootloader-extracted kernels live while their domain runs (pygrub writes them to /var/run/xen/pygrub). */
export function bootDir(uuid: string, env: NodeJS.ProcessEnv = process.env): string { return join(runDir(env), 'boot', uuid); }

/**
 * The domain spec, or a ConfigError naming file:line and key. Warnings (settings pvbox takes but
 * does not act on) are returned for the caller to print.
 */
export async function domainSpecFromXl(cfg: XlConfig): Promise<{ spec: DomainSpec; warnings: string[] }> {
  const warnings = [...cfg.warnings];
  if (cfg.memoryMiB < MIN_MEMORY_MIB) fail(cfg, !cfg.origins.has('memory') && cfg.origins.has('maxmem') ? 'maxmem' : 'memory', `${cfg.memoryMiB} MiB is too little: a PV Linux guest needs at least ${MIN_MEMORY_MIB} MiB${cfg.origins.has('memory') || cfg.origins.has('maxmem') ? '' : ' (xl\'s default is 32 MiB; set memory =)'}`);
  if (cfg.vcpus > 1) fail(cfg, 'vcpus', `${cfg.vcpus}: pvbox runs one vCPU per guest for now (vcpus = 1)`);
  if (cfg.maxvcpus > 1) warnings.push(`${formatOrigin(at(cfg, 'maxvcpus'))}: maxvcpus: ${cfg.maxvcpus} ignored: pvbox runs one vCPU per guest for now`);
  if (cfg.vfbs.length) fail(cfg, cfg.origins.has('vfb[0]') ? 'vfb[0]' : 'vfb', 'pvbox has no framebuffer (vfb/vkbd) backend yet; remove vfb/vnc settings');
  const disks = cfg.disks.map((d, i) => {
    if (!existsSync(d.target)) fail(cfg, `disk[${i}]`, `${d.target}: no such file`);
    return { ...d, target: resolve(d.target) };
  });
  const uuid = cfg.uuid ?? randomUUID();
  let kernel: string, ramdisk: string | undefined, cmdline = cfg.cmdline ?? '';
  if (cfg.bootloader) {
    // pygrub: the first disk holds the boot menu; xl.cfg's kernel/ramdisk are paths inside it, its cmdline is appended.
    const key = cfg.bootloader.key;
    let files;
    try { files = await readBootFiles(disks[0]!, { ...(cfg.kernel ? { kernel: cfg.kernel } : {}), ...(cfg.ramdisk ? { ramdisk: cfg.ramdisk } : {}) }); } catch (e) {
      if (e instanceof ImageError) fail(cfg, key, e.message);
      throw e;
    }
    const dir = bootDir(uuid);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    kernel = join(dir, 'kernel');
    writeFileSync(kernel, files.kernel, { mode: 0o600 });
    if (files.initrd) { ramdisk = join(dir, 'ramdisk'); writeFileSync(ramdisk, files.initrd, { mode: 0o600 }); }
    cmdline = [files.args, cmdline].filter(Boolean).join(' ');
  } else {
    kernel = hostFile(cfg, 'kernel', cfg.kernel!);
    if (cfg.ramdisk !== undefined) ramdisk = hostFile(cfg, 'ramdisk', cfg.ramdisk);
  }
  // Linux picks hvc0 for a PV domU by itself (xen_start_kernel add_preferred_console); pvbox's own guests say it.
  if (!/(^|\s)console=/.test(cmdline)) cmdline = `console=hvc0 ${cmdline}`.trim();
  let maxmemMiB = cfg.maxmemMiB;
  if (maxmemMiB > cfg.memoryMiB) {
    warnings.push(`${formatOrigin(at(cfg, 'maxmem'))}: maxmem: ${maxmemMiB} MiB: pvbox cannot balloon a guest above the ${cfg.memoryMiB} MiB it starts with; using ${cfg.memoryMiB}`);
    maxmemMiB = cfg.memoryMiB;
  }
  const spec: DomainSpec = {
    name: cfg.name, uuid, kernel, ...(ramdisk ? { ramdisk } : {}), cmdline, memoryMiB: cfg.memoryMiB, maxmemMiB, vcpus: 1,
    disks, vifs: [...cfg.vifs], onPoweroff: cfg.onPoweroff, onReboot: cfg.onReboot, onCrash: cfg.onCrash, configPath: resolve(cfg.file),
    ...(cfg.bootloader ? { bootDir: bootDir(uuid) } : {}),
  };
  return { spec, warnings };
}
