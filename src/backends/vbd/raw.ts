// Raw images: regular files (sparse files stay sparse; discard punches holes, as QEMU's file-posix.c raw_co_pdiscard does) and host block devices.
import type { FileHandle } from 'node:fs/promises';
import { ImageError } from '../../errors.js';
import { EOPNOTSUPP, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, errno, errnoMessage, fallocate } from '../../kvm/libc.js';
import type { BlockImage, VirtualDisk } from './image.js';
import { type ImageFile, type ImageLabel, readFully, writeFully } from './image-file.js';

export class RawImage implements BlockImage, VirtualDisk {
  readonly format = 'raw' as const;
  readonly sizeBytes: number;
  readonly virtualSize: number;
  readonly isBlockDevice: boolean;
  readonly canDiscard: boolean;
  readonly discardGranularity: number;
  private readonly fh: FileHandle;
  private closed = false;

  constructor(readonly path: string, file: ImageFile, readonly readonly: boolean, private readonly label: ImageLabel) {
    this.fh = file.fh;
    this.virtualSize = file.size;
    // Xen's blkback serves vbd_sz = the size in whole sectors (xen-blkback/xenbus.c vbd_sz), so a tail shorter than 512 bytes is not visible to the guest.
    this.sizeBytes = Math.floor(file.size / 512) * 512;
    this.isBlockDevice = file.isBlockDevice;
    this.discardGranularity = file.blockSize;
    // Block devices: BLKDISCARD does not promise that reads return zeros afterwards, which discard() must, so it is not offered.
    this.canDiscard = !readonly && !file.isBlockDevice && this.punchHoleWorks();
  }

  /** Probes FALLOC_FL_PUNCH_HOLE with a hole past the end of the file (a no-op where it is supported; EOPNOTSUPP where it is not). */
  private punchHoleWorks(): boolean {
    // SAFETY: integer arguments only.
    return fallocate(this.fh.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, this.virtualSize + 4096, 4096) === 0;
  }

  private check(offset: number, len: number, what: string): void {
    if (this.closed) throw new ImageError(`${this.label} is closed`);
    if (!Number.isSafeInteger(offset) || offset < 0 || len < 0 || offset + len > this.sizeBytes) {
      throw new ImageError(`${this.label}: ${what} of ${len} bytes at ${offset} is outside the disk (${this.sizeBytes} bytes)`);
    }
  }

  async read(offset: number, buf: Uint8Array): Promise<void> {
    this.check(offset, buf.length, 'read');
    await readFully(this.fh, buf, offset);
  }

  async readVirtual(offset: number, buf: Uint8Array): Promise<void> {
    const inside = Math.max(0, Math.min(buf.length, this.virtualSize - offset));
    if (inside > 0) await readFully(this.fh, buf.subarray(0, inside), offset);
    buf.fill(0, inside);
  }

  async write(offset: number, buf: Uint8Array): Promise<void> {
    this.check(offset, buf.length, 'write');
    if (this.readonly) throw new ImageError(`${this.label} is read-only`);
    // A plain pwrite: holes of a sparse file are filled only where the guest writes (no preallocation).
    await writeFully(this.fh, buf, offset);
  }

  async flush(): Promise<void> {
    if (this.readonly || this.closed) return;
    // fdatasync: a raw file's metadata that matters for reading the data back (its size, block map) is included.
    await this.fh.datasync();
  }

  async discard(offset: number, len: number): Promise<void> {
    this.check(offset, len, 'discard');
    if (!this.canDiscard) throw new ImageError(`${this.label}: discard is not supported`);
    if (len === 0) return;
    // SAFETY: integer arguments only. Punching a hole is a metadata operation on the file (fast), so the synchronous call is acceptable.
    if (fallocate(this.fh.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, len) !== 0) {
      const e = errno();
      throw new ImageError(`${this.label}: discard failed: ${e === EOPNOTSUPP ? 'the file system cannot punch holes' : errnoMessage(e)}`);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      if (!this.readonly) await this.fh.datasync();
    } finally {
      await this.fh.close(); // drops the OFD locks with the last reference to the open file description
    }
  }
}
