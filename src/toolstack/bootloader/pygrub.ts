// bootloader = "pygrub" done in-process: find the boot menu on the guest's first disk (MBR/GPT partitions or a bare file system), pick the default entry of grub.cfg, menu.lst or extlinux.conf, and copy its kernel and initrd out (Xen tools/pygrub/src/pygrub: get_partition_offsets, run_grub, GrubConf.py/ExtLinuxConf.py).
import { ImageError } from '../../errors.js';
import { openImage } from '../../backends/vbd/image.js';
import type { DiskSpec } from '../../backends/vbd/disk-spec.js';
import { type ByteReader, Ext4, hasExtSuperblock } from './ext4.js';

export interface BootEntry { title: string; kernel: string; initrd?: string; args: string }
export interface BootFiles { kernel: Uint8Array; initrd?: Uint8Array; args: string; title: string; config: string }

/** pygrub's search order (run_grub: cfg_list), then extlinux. */
const MENU_FILES = [
  '/boot/grub/grub.cfg', '/grub/grub.cfg', '/boot/grub2/grub.cfg', '/grub2/grub.cfg',
  '/boot/grub/menu.lst', '/grub/menu.lst', '/boot/grub/grub.conf', '/grub/grub.conf',
  '/boot/extlinux/extlinux.conf', '/extlinux/extlinux.conf', '/boot/extlinux.conf', '/extlinux.conf',
];

/** Split a line as GRUB's shell does, enough for menu files: quotes, backslashes, blanks. */
function words(line: string): string[] {
  const out: string[] = [];
  let cur = '', inWord = false, quote: string | undefined;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (quote) { if (c === quote) quote = undefined; else if (c === '\\' && quote === '"' && i + 1 < line.length) cur += line[++i]; else cur += c; continue; }
    if (c === '"' || c === "'") { quote = c; inWord = true; continue; }
    if (c === '\\' && i + 1 < line.length) { cur += line[++i]; inWord = true; continue; }
    if (c === ' ' || c === '\t') { if (inWord) { out.push(cur); cur = ''; inWord = false; } continue; }
    if (c === '#' && !inWord) break;
    cur += c; inWord = true;
  }
  if (inWord) out.push(cur);
  return out;
}

/** `(hd0,msdos1)/vmlinuz` → `/vmlinuz`: pvbox reads the partition the menu came from. */
const stripDevice = (p: string) => p.replace(/^\([^)]*\)/, '');

/** GRUB 2 grub.cfg (pygrub GrubConf.Grub2ConfigFile): menuentry blocks, `set default=`. Submenus are flattened. */
export function parseGrub2(text: string): { entries: BootEntry[]; defaultEntry: string } {
  const entries: BootEntry[] = [];
  let defaultEntry = '0';
  let cur: BootEntry | undefined;
  for (const raw of text.split('\n')) {
    const w = words(raw.trim());
    if (!w.length) continue;
    if (w[0] === 'set' && w[1]?.startsWith('default=')) defaultEntry = w[1].slice(8);
    else if (w[0]!.startsWith('default=')) defaultEntry = w[0]!.slice(8);
    else if (w[0] === 'menuentry') { cur = { title: w[1] ?? '', kernel: '', args: '' }; entries.push(cur); }
    else if (cur && (w[0] === 'linux' || w[0] === 'linux16' || w[0] === 'multiboot')) { cur.kernel = stripDevice(w[1] ?? ''); cur.args = w.slice(2).join(' '); }
    else if (cur && (w[0] === 'initrd' || w[0] === 'initrd16') && w[1]) cur.initrd = stripDevice(w[1]);
    else if (w[0] === '}') cur = undefined;
  }
  return { entries: entries.filter((e) => e.kernel), defaultEntry };
}

/** GRUB legacy menu.lst (pygrub GrubConf.GrubConfigFile): `default N`, `title`, `kernel path args`, `initrd path`. */
export function parseGrubLegacy(text: string): { entries: BootEntry[]; defaultEntry: string } {
  const entries: BootEntry[] = [];
  let defaultEntry = '0';
  let cur: BootEntry | undefined;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const m = /^([^\s=]+)\s*=?\s*(.*)$/.exec(line)!;
    const key = m[1]!.toLowerCase(), rest = m[2]!;
    if (key === 'default') defaultEntry = rest.trim();
    else if (key === 'title') { cur = { title: rest, kernel: '', args: '' }; entries.push(cur); }
    else if (cur && key === 'kernel') { const [k, ...a] = rest.split(/\s+/); cur.kernel = stripDevice(k ?? ''); cur.args = a.join(' '); }
    else if (cur && key === 'initrd') cur.initrd = stripDevice(rest.split(/\s+/)[0] ?? '');
  }
  return { entries: entries.filter((e) => e.kernel), defaultEntry };
}

/** extlinux.conf (pygrub ExtLinuxConf.py): DEFAULT label, LABEL, KERNEL/LINUX, APPEND (initrd= inside it too), INITRD; paths relative to the file's directory. */
export function parseExtlinux(text: string, dir: string): { entries: BootEntry[]; defaultEntry: string } {
  const entries: BootEntry[] = [];
  let defaultEntry = '';
  let cur: BootEntry | undefined;
  const abs = (p: string) => (p.startsWith('/') ? p : `${dir}/${p}`);
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const m = /^(\S+)\s*(.*)$/.exec(line)!;
    const key = m[1]!.toLowerCase(), rest = m[2]!.trim();
    if (key === 'default') defaultEntry = rest;
    else if (key === 'label') { cur = { title: rest, kernel: '', args: '' }; entries.push(cur); }
    else if (cur && (key === 'kernel' || key === 'linux')) cur.kernel = abs(rest);
    else if (cur && key === 'initrd') cur.initrd = abs(rest.split(',')[0]!);
    else if (cur && key === 'append') {
      const args = rest.split(/\s+/).filter((a) => { const i = /^initrd=(.*)$/.exec(a); if (i) { cur!.initrd = abs(i[1]!.split(',')[0]!); return false; } return true; });
      cur.args = args.join(' ');
    }
  }
  return { entries: entries.filter((e) => e.kernel), defaultEntry };
}

/** The default entry as GRUB picks it: an index, or a title (GRUB 2 also takes `saved`, which pvbox reads as 0). */
export function pickEntry(menu: { entries: BootEntry[]; defaultEntry: string }, where: string): BootEntry {
  if (!menu.entries.length) throw new ImageError(`${where}: no boot entry with a kernel`);
  const d = menu.defaultEntry.trim();
  if (/^\d+$/.test(d)) return menu.entries[Number(d)] ?? menu.entries[0]!;
  return menu.entries.find((e) => e.title === d) ?? menu.entries[0]!;
}

/** Byte offsets of the file systems to try: the disk itself, or its MBR/GPT partitions (pygrub get_partition_offsets). */
async function partitionOffsets(read: ByteReader, size: number): Promise<number[]> {
  if (await hasExtSuperblock(read)) return [0];
  const mbr = await read(0, 512);
  const mv = new DataView(mbr.buffer, mbr.byteOffset, mbr.byteLength);
  if (mv.getUint16(510, true) !== 0xaa55) return [];
  const out: number[] = [];
  for (let i = 0; i < 4; i++) {
    const e = 446 + i * 16;
    const type = mbr[e + 4]!, start = mv.getUint32(e + 8, true);
    if (type === 0xee) {
      // A protective MBR: the GPT header at LBA 1, its entries where it says.
      const h = await read(512, 512);
      const hv = new DataView(h.buffer, h.byteOffset, h.byteLength);
      if (new TextDecoder().decode(h.subarray(0, 8)) !== 'EFI PART') continue;
      const entriesLba = Number(hv.getBigUint64(0x48, true)), count = Math.min(hv.getUint32(0x50, true), 128), esize = hv.getUint32(0x54, true);
      if (esize < 128 || esize > 4096) continue;
      const table = await read(entriesLba * 512, Math.ceil((count * esize) / 512) * 512);
      const tv = new DataView(table.buffer, table.byteOffset, table.byteLength);
      for (let j = 0; j < count; j++) {
        const first = Number(tv.getBigUint64(j * esize + 32, true));
        if (first && first * 512 < size) out.push(first * 512);
      }
    } else if (type !== 0 && start && start * 512 < size) out.push(start * 512);
  }
  return out;
}

/**
 * The kernel, initrd and arguments of the default boot entry on `disk`. `kernel`/`ramdisk` (xl.cfg's,
 * paths inside the disk) override the entry's, as pygrub --kernel/--ramdisk do.
 */
export async function readBootFiles(disk: DiskSpec, override: { kernel?: string; ramdisk?: string } = {}): Promise<BootFiles> {
  const img = await openImage(disk.target, { readonly: true, format: disk.format });
  try {
    const read: ByteReader = async (offset, length) => {
      // openImage reads whole sectors.
      const start = Math.floor(offset / 512) * 512, end = Math.ceil((offset + length) / 512) * 512;
      if (end > img.sizeBytes) throw new ImageError(`${disk.target}: read past the end of the disk (corrupt file system?)`);
      const buf = new Uint8Array(end - start);
      await img.read(start, buf);
      return buf.subarray(offset - start, offset - start + length);
    };
    const offsets = await partitionOffsets(read, img.sizeBytes);
    if (!offsets.length) throw new ImageError(`${disk.target}: no ext2/3/4 file system or partition table found for the boot loader`);
    for (const base of offsets) {
      const part: ByteReader = (o, l) => read(base + o, l);
      if (!(await hasExtSuperblock(part))) continue;
      const fs = await Ext4.open(part, `${disk.target}${base ? ` (partition at ${base})` : ''}`);
      for (const config of MENU_FILES) {
        const bytes = await fs.readPath(config);
        if (!bytes) continue;
        const text = new TextDecoder().decode(bytes);
        const where = `${disk.target}:${config}`;
        const menu = config.endsWith('grub.cfg') ? parseGrub2(text) : config.includes('extlinux') ? parseExtlinux(text, config.slice(0, config.lastIndexOf('/'))) : parseGrubLegacy(text);
        const entry = pickEntry(menu, where);
        // A separate /boot partition names files without /boot; a root file system names them with it.
        const get = async (p: string, what: string) => {
          const found = (await fs.readPath(p)) ?? (p.startsWith('/boot/') ? await fs.readPath(p.slice(5)) : await fs.readPath(`/boot${p}`));
          if (!found) throw new ImageError(`${where}: ${what} ${p} (entry '${entry.title}') is not on the disk`);
          return found;
        };
        const kernel = await get(override.kernel ?? entry.kernel, 'kernel');
        const initrdPath = override.ramdisk ?? entry.initrd;
        const initrd = initrdPath ? await get(initrdPath, 'initrd') : undefined;
        return { kernel, ...(initrd ? { initrd } : {}), args: entry.args, title: entry.title, config: where };
      }
    }
    throw new ImageError(`${disk.target}: no grub.cfg, menu.lst or extlinux.conf on the disk`);
  } finally {
    await img.close();
  }
}
