// Opening an image file for the vbd backend: one-line errors for the person, full positional reads and writes, and the host block device's size (Linux include/uapi/linux/fs.h BLKGETSIZE64).
import { open, type FileHandle } from 'node:fs/promises';
import { ImageError } from '../../errors.js';
import { BLKGETSIZE64, errnoMessage, ioctlPtr } from '../../kvm/libc.js';

export interface ImageFile {
  readonly fh: FileHandle;
  /** Size in bytes: the file's length, or the block device's capacity. */
  readonly size: number;
  readonly isBlockDevice: boolean;
  /** The file system's preferred I/O size (st_blksize). */
  readonly blockSize: number;
}

/** The person's name for an image in messages: "disk image /x.qcow2" or "disk image /base.raw (backing file of /x.qcow2)". */
export type ImageLabel = string;

function describeOpenError(label: ImageLabel, err: NodeJS.ErrnoException, readonly: boolean): ImageError {
  switch (err.code) {
    case 'ENOENT': return new ImageError(`${label} does not exist`);
    case 'EACCES': case 'EPERM': return new ImageError(`${label}: permission denied (opening it ${readonly ? 'read-only' : 'read-write'})`);
    case 'EISDIR': return new ImageError(`${label} is a directory, not an image file`);
    case 'EROFS': return new ImageError(`${label} is on a read-only file system (use access=ro)`);
    case 'ENOTDIR': return new ImageError(`${label}: a component of the path is not a directory`);
    case 'ELOOP': return new ImageError(`${label}: too many levels of symbolic links`);
    default: return new ImageError(`${label}: cannot open (${err.code ?? err.message})`);
  }
}

/** Opens `path` read-only or read-write and checks it is a regular file or a block device with at least one 512-byte sector. */
export async function openImageFile(path: string, readonly: boolean, label: ImageLabel): Promise<ImageFile> {
  let fh: FileHandle;
  try {
    fh = await open(path, readonly ? 'r' : 'r+');
  } catch (err) {
    throw describeOpenError(label, err as NodeJS.ErrnoException, readonly);
  }
  try {
    const st = await fh.stat();
    if (st.isDirectory()) throw new ImageError(`${label} is a directory, not an image file`);
    const isBlockDevice = st.isBlockDevice();
    if (!isBlockDevice && !st.isFile()) throw new ImageError(`${label} is neither a regular file nor a block device`);
    const size = isBlockDevice ? blockDeviceSize(fh.fd, label) : st.size;
    if (size === 0) throw new ImageError(`${label} is empty (0 bytes)`);
    if (size < 512) throw new ImageError(`${label} is smaller than one 512-byte sector (${size} bytes)`);
    return { fh, size, isBlockDevice, blockSize: st.blksize > 0 ? st.blksize : 4096 };
  } catch (err) {
    await fh.close();
    throw err;
  }
}

function blockDeviceSize(fd: number, label: ImageLabel): number {
  const out = Buffer.alloc(8);
  // SAFETY: BLKGETSIZE64 writes one u64 into `out`, which lives across this synchronous call.
  if (ioctlPtr(fd, BLKGETSIZE64, out) < 0) throw new ImageError(`${label}: cannot read the block device's size (${errnoMessage()})`);
  const size = out.readBigUInt64LE(0);
  if (size > BigInt(Number.MAX_SAFE_INTEGER)) throw new ImageError(`${label}: block device too large`);
  return Number(size);
}

/** Reads buf.length bytes at `pos`, looping over short reads; bytes past the end of the file read as zeros. */
export async function readFully(fh: FileHandle, buf: Uint8Array, pos: number): Promise<void> {
  let done = 0;
  while (done < buf.length) {
    const { bytesRead } = await fh.read(buf, done, buf.length - done, pos + done);
    if (bytesRead === 0) { buf.fill(0, done); return; }
    done += bytesRead;
  }
}

/** Writes all of buf at `pos`, looping over short writes. */
export async function writeFully(fh: FileHandle, buf: Uint8Array, pos: number): Promise<void> {
  let done = 0;
  while (done < buf.length) {
    const { bytesWritten } = await fh.write(buf, done, buf.length - done, pos + done);
    if (bytesWritten === 0) throw new Error('write returned 0 bytes');
    done += bytesWritten;
  }
}

/** A simple FIFO async mutex: run() calls fn after every earlier fn has settled. */
export class Mutex {
  private tail: Promise<void> = Promise.resolve();
  run<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.tail.then(fn);
    this.tail = result.then(() => undefined, () => undefined);
    return result;
  }
}
