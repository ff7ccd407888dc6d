// The few libc calls pvbox needs (open, ioctl, mmap, timers, thread ids), bound through koffi.
import koffi from 'koffi';

const libc = koffi.load('libc.so.6');

// SAFETY (all bindings below): every pointer argument is either a Node Buffer/TypedArray that
// the caller keeps alive for the duration of the call (koffi passes its backing store), or an
// address we obtained from mmap and never unmap while a view over it exists.
export const open = libc.func('int open(const char *path, int flags, int mode)');
/** ioctl with a pointer argument: the buffer is read/written in place by the kernel. */
export const ioctlPtr = libc.func('ioctl', 'int', ['int', 'ulong', 'void *']);
/** ioctl with an integer argument (KVM_RUN, KVM_CREATE_VCPU, KVM_CHECK_EXTENSION…). */
export const ioctlInt = libc.func('ioctl', 'int', ['int', 'ulong', 'ulong']);
export const mmap = libc.func('void *mmap(void *addr, size_t len, int prot, int flags, int fd, int64_t off)');
export const gettid = libc.func('int gettid()');
export const tgkill = libc.func('int tgkill(int tgid, int tid, int sig)');
export const strerror = libc.func('const char *strerror(int errnum)');
export const timer_create = libc.func('int timer_create(int clockid, void *sevp, _Out_ void *timerid)');
export const timer_settime = libc.func('int timer_settime(intptr_t timerid, int flags, void *new_value, void *old_value)');

export const O_RDWR = 2;
export const O_CLOEXEC = 0o2000000;
export const PROT_READ = 1, PROT_WRITE = 2;
export const MAP_SHARED = 1, MAP_PRIVATE = 2, MAP_ANONYMOUS = 0x20, MAP_NORESERVE = 0x4000;
export const EINTR = 4, EAGAIN = 11;
export const CLOCK_MONOTONIC = 1;
export const SIGEV_THREAD_ID = 4;
export const SIGUSR2 = 12;
export const TIMER_ABSTIME = 1;

export function errno(): number { return koffi.errno(); }
export function errnoMessage(e = errno()): string { return `${strerror(e)} (errno ${e})`; }
export function view(ptr: unknown, len: number): ArrayBuffer { return koffi.view(ptr, len); }
export function address(ptr: unknown): bigint { return koffi.address(ptr); }
export const pthread_sigmask = libc.func('int pthread_sigmask(int how, void *set, void *oldset)');
export const sigtimedwait = libc.func('int sigtimedwait(void *set, void *info, void *timeout)');
export const SIG_BLOCK = 0;

// Disk images (backends/vbd): byte-range locks as QEMU takes them, hole punching, block-device size.
/** fcntl with a pointer argument (struct flock for F_OFD_SETLK/F_OFD_GETLK). */
export const fcntlPtr = libc.func('fcntl', 'int', ['int', 'int', 'void *']);
export const fallocate = libc.func('int fallocate(int fd, int mode, int64_t offset, int64_t len)');
export const F_OFD_GETLK = 36, F_OFD_SETLK = 37;
export const F_RDLCK = 0, F_WRLCK = 1, F_UNLCK = 2;
export const SEEK_SET = 0;
export const FALLOC_FL_KEEP_SIZE = 0x01, FALLOC_FL_PUNCH_HOLE = 0x02;
/** _IOR(0x12, 114, size_t): a block device's size in bytes (linux/fs.h). */
export const BLKGETSIZE64 = 0x80081272;
export const EOPNOTSUPP = 95;
