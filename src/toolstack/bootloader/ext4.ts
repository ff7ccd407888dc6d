// A small read-only ext2/3/4 reader for the bootloader: superblock, group descriptors, inodes, extent trees and block maps, linear directories, symlinks (Linux fs/ext4/ext4.h and ext4_extents.h layouts; what pygrub's libfsimage ext2fs plugin does). Inline data, encryption and meta_bg are refused by name.
import { ImageError } from '../../errors.js';

/** Reads bytes of the file system (already offset to its partition). */
export type ByteReader = (offset: number, length: number) => Promise<Uint8Array>;

const EXT4_SUPER_MAGIC = 0xef53;
const INCOMPAT_FILETYPE = 0x2, INCOMPAT_RECOVER = 0x4, INCOMPAT_META_BG = 0x10, INCOMPAT_EXTENTS = 0x40, INCOMPAT_64BIT = 0x80, INCOMPAT_MMP = 0x100;
const INCOMPAT_FLEX_BG = 0x200, INCOMPAT_EA_INODE = 0x400, INCOMPAT_CSUM_SEED = 0x2000, INCOMPAT_LARGEDIR = 0x4000, INCOMPAT_INLINE_DATA = 0x8000, INCOMPAT_ENCRYPT = 0x10000;
/** What this reader understands; inline data and encryption only matter for the inodes that use them. */
const INCOMPAT_KNOWN = INCOMPAT_FILETYPE | INCOMPAT_RECOVER | INCOMPAT_EXTENTS | INCOMPAT_64BIT | INCOMPAT_MMP | INCOMPAT_FLEX_BG | INCOMPAT_EA_INODE
  | INCOMPAT_CSUM_SEED | INCOMPAT_LARGEDIR | INCOMPAT_INLINE_DATA | INCOMPAT_ENCRYPT;
const EXT4_EXTENTS_FL = 0x80000, EXT4_INLINE_DATA_FL = 0x10000000, EXT4_ENCRYPT_FL = 0x800;
const EXT4_EXT_MAGIC = 0xf30a;
const S_IFMT = 0o170000, S_IFDIR = 0o040000, S_IFREG = 0o100000, S_IFLNK = 0o120000;
const ROOT_INO = 2;
/** Kernels and initramfs images are tens of MiB; a larger "file" is a corrupt inode. */
const MAX_FILE_BYTES = 1 << 30;
const MAX_SYMLINKS = 8;

export interface Inode { ino: number; mode: number; size: number; flags: number; block: Uint8Array }

/** Whether the bytes at `offset` start an ext2/3/4 file system (the superblock magic at 1024 + 0x38). */
export async function hasExtSuperblock(read: ByteReader): Promise<boolean> {
  const sb = await read(1024, 1024);
  return new DataView(sb.buffer, sb.byteOffset, sb.byteLength).getUint16(0x38, true) === EXT4_SUPER_MAGIC;
}

export class Ext4 {
  private constructor(
    private readonly read: ByteReader,
    readonly blockSize: number,
    private readonly inodesPerGroup: number,
    private readonly inodeSize: number,
    private readonly descSize: number,
    private readonly groupCount: number,
    private readonly gdtBlock: number,
    private readonly fileType: boolean,
    private readonly label: string,
  ) {}

  static async open(read: ByteReader, label: string): Promise<Ext4> {
    const sb = await read(1024, 1024);
    const v = new DataView(sb.buffer, sb.byteOffset, sb.byteLength);
    if (v.getUint16(0x38, true) !== EXT4_SUPER_MAGIC) throw new ImageError(`${label}: no ext2/3/4 file system`);
    const logBlock = v.getUint32(0x18, true);
    if (logBlock > 6) throw new ImageError(`${label}: ext4 block size 2^${10 + logBlock} is not valid`);
    const blockSize = 1024 << logBlock;
    const rev = v.getUint32(0x4c, true);
    const inodeSize = rev >= 1 ? v.getUint16(0x58, true) : 128;
    const incompat = v.getUint32(0x60, true);
    if (incompat & INCOMPAT_META_BG) throw new ImageError(`${label}: ext4 meta_bg layout is not supported by pvbox's boot loader`);
    const unknown = incompat & ~INCOMPAT_KNOWN;
    if (unknown) throw new ImageError(`${label}: ext4 incompatible features 0x${unknown.toString(16)} are not supported by pvbox's boot loader`);
    const descSize = incompat & INCOMPAT_64BIT ? Math.max(32, v.getUint16(0xfe, true)) : 32;
    const blocksPerGroup = v.getUint32(0x20, true), inodesPerGroup = v.getUint32(0x28, true);
    const blocksCount = v.getUint32(0x04, true) + (incompat & INCOMPAT_64BIT ? v.getUint32(0x150, true) * 2 ** 32 : 0);
    const firstDataBlock = v.getUint32(0x14, true);
    if (!blocksPerGroup || !inodesPerGroup || inodeSize < 128 || inodeSize > blockSize || (inodeSize & (inodeSize - 1))) throw new ImageError(`${label}: corrupt ext4 superblock`);
    const groupCount = Math.ceil((blocksCount - firstDataBlock) / blocksPerGroup);
    const nameBytes = sb.subarray(0x78, 0x88);
    const volName = new TextDecoder().decode(nameBytes.subarray(0, nameBytes.indexOf(0) < 0 ? 16 : nameBytes.indexOf(0)));
    return new Ext4(read, blockSize, inodesPerGroup, inodeSize, descSize, groupCount, firstDataBlock + 1, (incompat & INCOMPAT_FILETYPE) !== 0, volName ? `${label} (${volName})` : label);
  }

  private async readBlock(n: number, count = 1): Promise<Uint8Array> { return this.read(n * this.blockSize, count * this.blockSize); }

  async inode(ino: number): Promise<Inode> {
    const group = Math.floor((ino - 1) / this.inodesPerGroup), index = (ino - 1) % this.inodesPerGroup;
    if (ino < 1 || group >= this.groupCount) throw new ImageError(`${this.label}: inode ${ino} out of range (corrupt file system)`);
    const descOff = this.gdtBlock * this.blockSize + group * this.descSize;
    const d = await this.read(descOff, this.descSize);
    const dv = new DataView(d.buffer, d.byteOffset, d.byteLength);
    const table = dv.getUint32(0x08, true) + (this.descSize >= 64 ? dv.getUint32(0x28, true) * 2 ** 32 : 0);
    const raw = await this.read(table * this.blockSize + index * this.inodeSize, 128);
    const iv = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    const size = iv.getUint32(0x04, true) + iv.getUint32(0x6c, true) * 2 ** 32;
    return { ino, mode: iv.getUint16(0, true), size, flags: iv.getUint32(0x20, true), block: raw.slice(0x28, 0x28 + 60) };
  }

  /** The file's bytes (extent tree or ext2/3 block map; holes read as zeros). */
  async readFile(ino: Inode): Promise<Uint8Array> {
    if (ino.flags & EXT4_INLINE_DATA_FL) throw new ImageError(`${this.label}: inode ${ino.ino} keeps its data inline (ext4 inline_data), which pvbox's boot loader does not read`);
    if (ino.flags & EXT4_ENCRYPT_FL) throw new ImageError(`${this.label}: inode ${ino.ino} is encrypted`);
    if (ino.size > MAX_FILE_BYTES) throw new ImageError(`${this.label}: inode ${ino.ino} claims ${ino.size} bytes (corrupt file system?)`);
    const out = new Uint8Array(ino.size);
    const nBlocks = Math.ceil(ino.size / this.blockSize);
    const put = async (logical: number, physical: number, count: number) => {
      const n = Math.min(count, nBlocks - logical);
      if (n <= 0 || logical < 0) return;
      const data = await this.readBlock(physical, n);
      const at = logical * this.blockSize;
      out.set(data.subarray(0, Math.min(data.length, out.length - at)), at);
    };
    if (ino.flags & EXT4_EXTENTS_FL) await this.walkExtents(ino.block, put, 0);
    else await this.walkBlockMap(ino.block, nBlocks, put);
    return out;
  }

  /** ext4_extents.h: a header, then leaves (ee_block, ee_len, ee_start) or indexes (ei_block, ei_leaf). */
  private async walkExtents(node: Uint8Array, put: (l: number, p: number, n: number) => Promise<void>, level: number): Promise<void> {
    const v = new DataView(node.buffer, node.byteOffset, node.byteLength);
    if (v.getUint16(0, true) !== EXT4_EXT_MAGIC || level > 5) throw new ImageError(`${this.label}: corrupt extent tree`);
    const entries = v.getUint16(2, true), depth = v.getUint16(6, true);
    if (12 + entries * 12 > node.length) throw new ImageError(`${this.label}: corrupt extent tree`);
    for (let i = 0; i < entries; i++) {
      const e = 12 + i * 12;
      if (depth === 0) {
        const len = v.getUint16(e + 4, true);
        if (len > 32768) continue; // an unwritten extent (length - 32768 blocks) reads as zeros
        await put(v.getUint32(e, true), v.getUint16(e + 6, true) * 2 ** 32 + v.getUint32(e + 8, true), len);
      } else {
        const leaf = v.getUint32(e + 4, true) + v.getUint16(e + 8, true) * 2 ** 32;
        await this.walkExtents(await this.readBlock(leaf), put, level + 1);
      }
    }
  }

  /** ext2/3: 12 direct blocks, then single, double and triple indirect blocks. */
  private async walkBlockMap(iblock: Uint8Array, nBlocks: number, put: (l: number, p: number, n: number) => Promise<void>): Promise<void> {
    const direct = new DataView(iblock.buffer, iblock.byteOffset, iblock.byteLength);
    const perBlock = this.blockSize / 4;
    let logical = 0;
    const walk = async (block: number, level: number): Promise<void> => {
      if (logical >= nBlocks) return;
      if (level === 0) { if (block) await put(logical, block, 1); logical++; return; }
      if (!block) { logical += perBlock ** level; return; }
      const b = await this.readBlock(block);
      const bv = new DataView(b.buffer, b.byteOffset, b.byteLength);
      for (let i = 0; i < perBlock && logical < nBlocks; i++) await walk(bv.getUint32(i * 4, true), level - 1);
    };
    for (let i = 0; i < 12; i++) await walk(direct.getUint32(i * 4, true), 0);
    for (let level = 1; level <= 3; level++) await walk(direct.getUint32((11 + level) * 4, true), level);
  }

  async readDir(ino: Inode): Promise<Map<string, number>> {
    const data = await this.readFile(ino);
    const v = new DataView(data.buffer, data.byteOffset, data.byteLength);
    const entries = new Map<string, number>();
    for (let off = 0; off + 8 <= data.length;) {
      const inode = v.getUint32(off, true), recLen = v.getUint16(off + 4, true);
      const nameLen = this.fileType ? data[off + 6]! : v.getUint16(off + 6, true);
      if (recLen < 8 || off + recLen > data.length || 8 + nameLen > recLen) throw new ImageError(`${this.label}: corrupt directory (inode ${ino.ino})`);
      if (inode) entries.set(new TextDecoder().decode(data.subarray(off + 8, off + 8 + nameLen)), inode);
      off += recLen;
    }
    return entries;
  }

  private async readLink(ino: Inode): Promise<string> {
    // A "fast" symlink keeps its target in i_block (less than 60 bytes, no extents, no inline data).
    if (ino.size < 60 && !(ino.flags & (EXT4_EXTENTS_FL | EXT4_INLINE_DATA_FL))) return new TextDecoder().decode(ino.block.subarray(0, ino.size));
    return new TextDecoder().decode(await this.readFile(ino));
  }

  /** Follow an absolute path from the root, symlinks included; undefined when it does not exist. */
  async lookup(path: string): Promise<Inode | undefined> {
    let links = 0;
    let parts = path.split('/').filter((p) => p && p !== '.');
    const stack: Inode[] = [await this.inode(ROOT_INO)];
    while (parts.length) {
      const name = parts.shift()!;
      const dir = stack[stack.length - 1]!;
      if (name === '..') { if (stack.length > 1) stack.pop(); continue; }
      if ((dir.mode & S_IFMT) !== S_IFDIR) return undefined;
      const ino = (await this.readDir(dir)).get(name);
      if (ino === undefined) return undefined;
      const node = await this.inode(ino);
      if ((node.mode & S_IFMT) === S_IFLNK) {
        if (++links > MAX_SYMLINKS) throw new ImageError(`${this.label}: too many symbolic links in ${path}`);
        const target = await this.readLink(node);
        if (target.startsWith('/')) stack.splice(1);
        parts = [...target.split('/').filter((p) => p && p !== '.'), ...parts];
        continue;
      }
      stack.push(node);
    }
    return stack[stack.length - 1];
  }

  /** A regular file's bytes by path; undefined when there is no such file. */
  async readPath(path: string): Promise<Uint8Array | undefined> {
    const ino = await this.lookup(path);
    if (!ino || (ino.mode & S_IFMT) !== S_IFREG) return undefined;
    return this.readFile(ino);
  }
}
