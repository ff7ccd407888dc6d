// pvbox save / pvbox restore (xl save, xl restore): a running guest's state to a file, and a new domain from that file.
import { resolve } from 'node:path';
import { HostError } from '../errors.js';
import { controlRequest } from '../toolstack/control-server.js';
import { formatUuid } from '../toolstack/domain-nodes.js';
import { spawnDomainProcess } from '../toolstack/domain-process.js';
import { SaveFile } from '../toolstack/save-restore.js';
import { readXlConfigFile } from '../toolstack/xl-cfg.js';
import { domainSpecFromXl } from '../toolstack/xl-domain.js';
import { existsSync, rmSync } from 'node:fs';
import { consoleCommand } from './console.js';

/** xl save <domain> <file>: the guest suspends, pvbox writes the file, the domain is gone. */
export async function saveCommand(domain: string, file: string): Promise<number> {
  const r = await controlRequest(domain, { op: 'save', path: resolve(file) }, 240_000);
  if (!r.ok) throw new HostError(`save: ${r.error}`);
  return 0;
}

/** xl restore [-c] <file>: a new domain (detached, as pvbox create makes them) resumes the saved guest. */
export async function restoreCommand(file: string, attach: boolean): Promise<number> {
  const path = resolve(file);
  const f = SaveFile.open(path);
  const h = f.header;
  f.close();
  const c = h.config;
  const uuid = formatUuid(Buffer.from(h.uuid, 'hex'));
  // A domain made from an xl.cfg that is still there restarts (on_reboot) as that file says — for a
  // pygrub guest, with a kernel read from its disk again (the saved path was a copy that is gone).
  const fromCfg = c.configPath && existsSync(c.configPath) ? (await domainSpecFromXl(readXlConfigFile(c.configPath, []))).spec : undefined;
  try {
    await spawnDomainProcess(fromCfg
    ? { ...fromCfg, name: c.name, uuid, memoryMiB: c.memoryMiB, maxmemMiB: Math.max(c.memoryMiB, fromCfg.maxmemMiB), disks: c.disks, vifs: c.vifs, restoreFrom: path }
    : {
      name: c.name, uuid, kernel: c.kernel, ramdisk: c.ramdisk, cmdline: c.cmdline,
      memoryMiB: c.memoryMiB, maxmemMiB: c.memoryMiB, vcpus: 1, disks: c.disks, vifs: c.vifs,
      onPoweroff: 'destroy', onReboot: 'restart', onCrash: 'destroy', restoreFrom: path,
    });
  } catch (e) {
    if (fromCfg?.bootDir) rmSync(fromCfg.bootDir, { recursive: true, force: true });
    throw e;
  }
  return attach ? consoleCommand(c.name) : 0;
}
