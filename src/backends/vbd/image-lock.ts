// Image locking compatible with QEMU's (block/file-posix.c raw_apply_lock_bytes / raw_check_lock_bytes): open-file-description byte locks that say which permissions a user holds and which it denies others.
import { EAGAIN, F_OFD_GETLK, F_OFD_SETLK, F_RDLCK, F_UNLCK, F_WRLCK, SEEK_SET, errno, errnoMessage, fcntlPtr } from '../../kvm/libc.js';
import { HostError } from '../../errors.js';

/**
 * QEMU's block permissions (include/block/block-common.h BLK_PERM_*), by bit number. QEMU < 6.2
 * also had graph-mod (bit 4); pvbox neither takes it nor denies it, as QEMU's guest devices did.
 */
export const BLK_PERM_CONSISTENT_READ = 0, BLK_PERM_WRITE = 1, BLK_PERM_WRITE_UNCHANGED = 2, BLK_PERM_RESIZE = 3;
const EACCES = 13;
const PERM_NAMES = ['consistent read', 'write', 'write unchanged', 'resize'] as const;
/** file-posix.c RAW_LOCK_PERM_BASE / RAW_LOCK_SHARED_BASE: byte base+bit is read-locked by every holder of (resp. every denier of) permission bit. */
const RAW_LOCK_PERM_BASE = 100, RAW_LOCK_SHARED_BASE = 200;

export interface LockRequest {
  /** Permission bits this user takes ("I use"). */
  perms: number[];
  /** Permission bits this user denies to everyone else ("I don't share"). */
  denied: number[];
}

/**
 * What a QEMU guest disk (virtio-blk, share-rw=off) holds on the image file, as seen in /proc/locks
 * with QEMU 7.2: the device takes consistent-read (+write) and shares read, write-unchanged and
 * resize (blkconf_apply_backend_options); qcow2 takes write+resize on its file and never shares
 * them (block.c bdrv_default_perms_for_storage, BDRV_CHILD_METADATA); a raw format node passes the
 * device's permissions through; a backing file is consistent-read only, denying write and resize
 * (bdrv_default_perms_for_cow).
 */
export function qemuDiskLocks(format: 'raw' | 'qcow2', readonly: boolean, role: 'disk' | 'backing'): LockRequest {
  if (role === 'backing') return { perms: [BLK_PERM_CONSISTENT_READ], denied: [BLK_PERM_WRITE, BLK_PERM_RESIZE] };
  if (format === 'qcow2') {
    return readonly
      ? { perms: [BLK_PERM_CONSISTENT_READ], denied: [BLK_PERM_WRITE, BLK_PERM_RESIZE] }
      : { perms: [BLK_PERM_CONSISTENT_READ, BLK_PERM_WRITE, BLK_PERM_RESIZE], denied: [BLK_PERM_WRITE, BLK_PERM_RESIZE] };
  }
  return { perms: readonly ? [BLK_PERM_CONSISTENT_READ] : [BLK_PERM_CONSISTENT_READ, BLK_PERM_WRITE], denied: [BLK_PERM_WRITE] };
}

/** struct flock on x86_64: l_type (short) 0, l_whence (short) 2, l_start 8, l_len 16, l_pid 24; 32 bytes. */
function flock(type: number, start: number): Buffer {
  const b = Buffer.alloc(32);
  b.writeInt16LE(type, 0);
  b.writeInt16LE(SEEK_SET, 2);
  b.writeBigInt64LE(BigInt(start), 8);
  b.writeBigInt64LE(1n, 16);
  return b; // l_pid stays 0, as F_OFD_* requires
}

/** Why the lock cannot be had, in QEMU's words (raw_check_lock_bytes), or undefined if it can. */
export type LockConflict = string;

/**
 * Takes `req` on `fd` the way raw_handle_perm_lock does: read-lock every byte first (they never
 * conflict with other read locks), then test with a write lock whether anyone else holds the bytes
 * that conflict. Returns the conflict (QEMU's message) or undefined; on a conflict the caller closes
 * the fd, which drops the locks taken here (they belong to this open file description only).
 */
export function applyQemuLocks(fd: number, req: LockRequest): LockConflict | undefined {
  for (const bit of req.perms) if (!setReadLock(fd, RAW_LOCK_PERM_BASE + bit)) return `Failed to lock byte ${RAW_LOCK_PERM_BASE + bit}`;
  for (const bit of req.denied) if (!setReadLock(fd, RAW_LOCK_SHARED_BASE + bit)) return `Failed to lock byte ${RAW_LOCK_SHARED_BASE + bit}`;
  for (const bit of req.perms) {
    if (lockedByOthers(fd, RAW_LOCK_SHARED_BASE + bit)) return `Failed to get "${PERM_NAMES[bit]}" lock`;
  }
  for (const bit of req.denied) {
    if (lockedByOthers(fd, RAW_LOCK_PERM_BASE + bit)) return `Failed to get shared "${PERM_NAMES[bit]}" lock`;
  }
  return undefined;
}

/** False if another open file description holds a write lock on the byte (QEMU never keeps one, but be exact). */
function setReadLock(fd: number, byte: number): boolean {
  const fl = flock(F_RDLCK, byte);
  // SAFETY: `fl` is a 32-byte struct flock kept alive by this frame for the synchronous call.
  if (fcntlPtr(fd, F_OFD_SETLK, fl) === 0) return true;
  const e = errno();
  if (e === EAGAIN || e === EACCES) return false;
  throw new HostError(`cannot lock byte ${byte} of a disk image: ${errnoMessage(e)}`);
}

function lockedByOthers(fd: number, byte: number): boolean {
  const fl = flock(F_WRLCK, byte);
  // SAFETY: as above; F_OFD_GETLK writes back into the same 32 bytes.
  if (fcntlPtr(fd, F_OFD_GETLK, fl) < 0) throw new HostError(`cannot test the lock on byte ${byte} of a disk image: ${errnoMessage()}`);
  return fl.readInt16LE(0) !== F_UNLCK;
}
