// Disk images as the vbd backend's I/O thread sees them: raw files, host block devices and qcow2, behind one asynchronous interface (QEMU's BlockDriver, reduced to what blkback needs).

import { realpath } from 'node:fs/promises';
import { ImageError } from '../../errors.js';
import { openImageFile, readFully } from './image-file.js';
import { applyQemuLocks, qemuDiskLocks } from './image-lock.js';
import { Qcow2Image } from './qcow2.js';
import { RawImage } from './raw.js';

export type ImageFormat = 'raw' | 'qcow2';

export interface BlockImage {
  readonly path: string;
  readonly format: ImageFormat;
  /** The guest-visible size in bytes (a multiple of 512). */
  readonly sizeBytes: number;
  readonly readonly: boolean;
  /** True for a host block device (raw). */
  readonly isBlockDevice: boolean;
  /** discard() frees storage (raw: punches holes; qcow2: drops clusters); false if it cannot. */
  readonly canDiscard: boolean;
  /** The unit in which discard() frees storage (raw: the file system block; qcow2: the cluster). Parts of a discarded range smaller than this are zeroed instead (qcow2) or freed as far as the file system can (raw). */
  readonly discardGranularity: number;
  /** Read buf.length bytes at `offset` (both multiples of 512, inside sizeBytes). Unallocated areas read as zeros (or from the backing file). */
  read(offset: number, buf: Uint8Array): Promise<void>;
  /** Write buf at `offset`; resolves when the data has reached the file (not necessarily stable storage). */
  write(offset: number, buf: Uint8Array): Promise<void>;
  /** Everything written before this call is on stable storage when it resolves (data and metadata). */
  flush(): Promise<void>;
  /** Give back the storage of [offset, offset+len); reads of it return zeros afterwards (or backing data for qcow2 with a backing file… see the implementation). */
  discard(offset: number, len: number): Promise<void>;
  /** Flush metadata, release the lock, close the file(s). */
  close(): Promise<void>;
}

export interface OpenImageOptions {
  readonly: boolean;
  /** 'auto' (the default) probes the qcow2 magic; a qcow2 file opened as 'raw' is served raw, as xl's format=raw says. */
  format?: ImageFormat | 'auto';
}

/** What a qcow2 image needs of its backing file: its exact size and reads that see zeros past it (QEMU reads a shorter backing file as zeros). */
export interface VirtualDisk {
  /** The exact virtual size in bytes (not rounded to sectors). */
  readonly virtualSize: number;
  /** Read buf.length bytes at `offset`; bytes past virtualSize read as zeros. */
  readVirtual(offset: number, buf: Uint8Array): Promise<void>;
  close(): Promise<void>;
}

/** qcow2's magic, 'QFI\xfb' (docs/interop/qcow2.txt). */
const QCOW2_MAGIC = 0x514649fb;
/** A chain longer than this is refused (QEMU has no fixed limit; this only bounds work on a hostile chain). */
const MAX_BACKING_CHAIN = 32;

/**
 * Opens a disk image for the vbd backend: raw file, host block device or qcow2 (with its backing
 * chain), locked against QEMU and other pvbox processes the way a QEMU guest disk is. Every
 * problem a person can fix is an ImageError naming the file.
 */
export async function openImage(path: string, opts: OpenImageOptions): Promise<BlockImage> {
  return (await openChainMember(path, opts.readonly, opts.format ?? 'auto', 'disk', [], `disk image ${path}`)) as BlockImage & VirtualDisk;
}

/** Opens one member of a backing chain; `chain` holds the real paths of the images above it (loop detection). */
export async function openChainMember(path: string, readonly: boolean, format: ImageFormat | 'auto', role: 'disk' | 'backing', chain: string[], label: string): Promise<BlockImage & VirtualDisk> {
  if (chain.length > MAX_BACKING_CHAIN) throw new ImageError(`${label}: backing chain longer than ${MAX_BACKING_CHAIN} images`);
  let real: string;
  try {
    real = await realpath(path);
  } catch {
    real = path; // openImageFile reports the real problem
  }
  if (chain.includes(real)) throw new ImageError(`${label}: backing file loop (${[...chain, real].join(' -> ')})`);
  const file = await openImageFile(path, readonly, label);
  try {
    let fmt: ImageFormat;
    if (format === 'auto') {
      const magic = new Uint8Array(4);
      await readFully(file.fh, magic, 0);
      fmt = new DataView(magic.buffer).getUint32(0) === QCOW2_MAGIC ? 'qcow2' : 'raw';
    } else fmt = format;
    const conflict = applyQemuLocks(file.fh.fd, qemuDiskLocks(fmt, readonly, role));
    if (conflict !== undefined) throw new ImageError(`disk image ${path} is in use by another process (it is locked)`);
    if (fmt === 'raw') return new RawImage(path, file, readonly, label);
    return await Qcow2Image.open(path, file, readonly, label, [...chain, real]);
  } catch (err) {
    await file.fh.close().catch(() => undefined);
    throw err;
  }
}
