// newc ("070701") cpio archive writer and reader, as used for Linux initramfs images.

/** File type bits of st_mode. */
export const S_IFMT = 0o170000;
export const S_IFDIR = 0o040000;
export const S_IFREG = 0o100000;
export const S_IFLNK = 0o120000;
export const S_IFCHR = 0o020000;
export const S_IFBLK = 0o060000;

const MAGIC = '070701';
const HEADER_LEN = 110;
export const TRAILER_NAME = 'TRAILER!!!';

export interface CpioEntry {
  /** Path inside the archive, without a leading '/' (e.g. 'bin/busybox'). */
  name: string;
  /** Full st_mode: type bits | permission bits. */
  mode: number;
  uid: number;
  gid: number;
  nlink: number;
  mtime: number;
  ino: number;
  /** For device nodes. */
  rdevMajor: number;
  rdevMinor: number;
  /** File contents, or the link target for a symlink. */
  data: Buffer;
}

export interface EntryOptions {
  uid?: number;
  gid?: number;
  mtime?: number;
}

function normalise(path: string): string {
  const parts = path.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.length === 0) throw new Error(`cpio: empty path ${JSON.stringify(path)}`);
  if (parts.includes('..')) throw new Error(`cpio: '..' in path ${JSON.stringify(path)}`);
  return parts.join('/');
}

function pad4(n: number): number {
  return (4 - (n % 4)) % 4;
}

function hex8(n: number): string {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new Error(`cpio: field out of range: ${n}`);
  return n.toString(16).toUpperCase().padStart(8, '0');
}

/**
 * Builds a newc cpio archive in memory. Parent directories are created
 * automatically (mode 0755) unless added explicitly first; adding the same
 * path twice is an error, so the archive never contains ambiguous entries.
 */
export class CpioWriter {
  private readonly chunks: Buffer[] = [];
  private readonly seen = new Set<string>();
  private readonly dirs = new Set<string>();
  private nextIno = 1;
  private finished = false;
  /** Default mtime for entries (0 keeps the archive reproducible). */
  constructor(private readonly defaultMtime = 0) {}

  addDirectory(path: string, perm = 0o755, opts: EntryOptions = {}): void {
    const name = normalise(path);
    if (this.dirs.has(name)) return; // idempotent for directories
    this.ensureParents(name);
    this.push(name, S_IFDIR | (perm & 0o7777), Buffer.alloc(0), 2, 0, 0, opts);
    this.dirs.add(name);
  }

  addFile(path: string, data: Uint8Array | string, perm = 0o644, opts: EntryOptions = {}): void {
    const name = normalise(path);
    this.ensureParents(name);
    const buf = typeof data === 'string' ? Buffer.from(data, 'utf8') : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    this.push(name, S_IFREG | (perm & 0o7777), buf, 1, 0, 0, opts);
  }

  addSymlink(path: string, target: string, opts: EntryOptions = {}): void {
    const name = normalise(path);
    if (target === '') throw new Error(`cpio: empty symlink target for ${name}`);
    this.ensureParents(name);
    this.push(name, S_IFLNK | 0o777, Buffer.from(target, 'utf8'), 1, 0, 0, opts);
  }

  addCharDevice(path: string, major: number, minor: number, perm = 0o600, opts: EntryOptions = {}): void {
    const name = normalise(path);
    this.ensureParents(name);
    this.push(name, S_IFCHR | (perm & 0o7777), Buffer.alloc(0), 1, major, minor, opts);
  }

  has(path: string): boolean {
    const name = normalise(path);
    return this.seen.has(name);
  }

  /** Appends the trailer and returns the whole archive. */
  finish(): Buffer {
    if (!this.finished) {
      this.chunks.push(this.header(TRAILER_NAME, 0, 0, 0, 1, 0, 0, 0, 0, 0));
      this.finished = true;
    }
    return Buffer.concat(this.chunks);
  }

  private ensureParents(name: string): void {
    const parts = name.split('/');
    for (let i = 1; i < parts.length; i++) {
      const dir = parts.slice(0, i).join('/');
      if (!this.dirs.has(dir)) this.addDirectory(dir);
    }
  }

  private push(name: string, mode: number, data: Buffer, nlink: number, rmaj: number, rmin: number, opts: EntryOptions): void {
    if (this.finished) throw new Error('cpio: archive already finished');
    if (this.seen.has(name)) throw new Error(`cpio: duplicate entry ${name}`);
    this.seen.add(name);
    const hdr = this.header(name, this.nextIno++, mode, opts.uid ?? 0, opts.gid ?? 0, nlink, opts.mtime ?? this.defaultMtime, data.length, rmaj, rmin);
    this.chunks.push(hdr);
    if (data.length > 0) {
      this.chunks.push(data);
      const p = pad4(data.length);
      if (p) this.chunks.push(Buffer.alloc(p));
    }
  }

  private header(name: string, ino: number, mode: number, uid: number, gid: number, nlink: number, mtime: number, filesize: number, rmaj: number, rmin: number): Buffer {
    const nameBuf = Buffer.from(name + '\0', 'utf8');
    const fields = [ino, mode, uid, gid, nlink, mtime, filesize, 0, 0, rmaj, rmin, nameBuf.length, 0];
    const text = MAGIC + fields.map(hex8).join('');
    const out = Buffer.alloc(HEADER_LEN + nameBuf.length + pad4(HEADER_LEN + nameBuf.length));
    out.write(text, 0, 'ascii');
    nameBuf.copy(out, HEADER_LEN);
    return out;
  }
}

/**
 * Parses a newc cpio archive (uncompressed), stopping at the trailer.
 * Strict: rejects bad magic, misalignment and truncation. The trailer is not
 * returned; `trailerOffset` says where it was found.
 */
export function parseCpio(buf: Uint8Array): { entries: CpioEntry[]; trailerOffset: number; end: number } {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const entries: CpioEntry[] = [];
  let off = 0;
  for (;;) {
    if (off % 4 !== 0) throw new Error(`cpio: header at unaligned offset ${off}`);
    if (off + HEADER_LEN > b.length) throw new Error(`cpio: truncated header at ${off}`);
    const magic = b.toString('ascii', off, off + 6);
    if (magic !== MAGIC) throw new Error(`cpio: bad magic ${JSON.stringify(magic)} at ${off}`);
    const f: number[] = [];
    for (let i = 0; i < 13; i++) {
      const s = b.toString('ascii', off + 6 + i * 8, off + 14 + i * 8);
      if (!/^[0-9A-Fa-f]{8}$/.test(s)) throw new Error(`cpio: bad header field ${i} at ${off}`);
      f.push(parseInt(s, 16));
    }
    const [ino, mode, uid, gid, nlink, mtime, filesize, , , rdevMajor, rdevMinor, namesize] = f as [number, number, number, number, number, number, number, number, number, number, number, number];
    const nameStart = off + HEADER_LEN;
    if (namesize < 1) throw new Error(`cpio: bad name size at ${off}`);
    if (nameStart + namesize > b.length) throw new Error(`cpio: truncated name at ${off}`);
    if (b[nameStart + namesize - 1] !== 0) throw new Error(`cpio: name not NUL-terminated at ${off}`);
    const name = b.toString('utf8', nameStart, nameStart + namesize - 1);
    const dataStart = nameStart + namesize + pad4(HEADER_LEN + namesize);
    if (dataStart + filesize > b.length) throw new Error(`cpio: truncated data for ${name}`);
    if (name === TRAILER_NAME) return { entries, trailerOffset: off, end: dataStart + filesize + pad4(filesize) };
    const data = Buffer.from(b.subarray(dataStart, dataStart + filesize));
    entries.push({ name, mode, uid, gid, nlink, mtime, ino, rdevMajor, rdevMinor, data });
    off = dataStart + filesize + pad4(filesize);
  }
}
