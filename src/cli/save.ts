// pvbox save / pvbox restore (xl save, xl restore): a running guest's state to a file, and a new domain from that file.
import { resolve } from 'node:path';
import { HostError } from '../errors.js';
import { controlRequest } from '../toolstack/control-server.js';
import { formatUuid } from '../toolstack/domain-nodes.js';
import { spawnDomainProcess } from '../toolstack/domain-process.js';
import { SaveFile } from '../toolstack/save-restore.js';
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
  await spawnDomainProcess({
    name: c.name, uuid: formatUuid(Buffer.from(h.uuid, 'hex')), kernel: c.kernel, ramdisk: c.ramdisk, cmdline: c.cmdline,
    memoryMiB: c.memoryMiB, maxmemMiB: c.memoryMiB, vcpus: 1, disks: c.disks, vifs: c.vifs,
    onPoweroff: 'destroy', onReboot: 'restart', onCrash: 'destroy', restoreFrom: path,
  });
  return attach ? consoleCommand(c.name) : 0;
}
