// The host side of a vif: a TAP device with virtio_net_hdr (Linux drivers/net/tun.c TUNSETIFF/TUNSETOFFLOAD; include/uapi/linux/if_tun.h), joined to a bridge and announced to a hotplug script as xl's vif-bridge would be (xen tools/hotplug/Linux/vif-bridge, vif-common.sh; libxl_linux.c get_hotplug_env).
import { spawnSync } from 'node:child_process';
import { closeSync, constants, existsSync, openSync, readSync, writeSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import koffi from 'koffi';
import { HostError } from '../../errors.js';
import { NETBACK_MAX_QUEUES } from './netback.js';

const libc = koffi.load('libc.so.6');
// SAFETY (bindings below): ioctl's pointer argument is a Buffer the caller keeps alive for the call;
// poll's is a Buffer of pollfd entries alive for the call; eventfd takes integers only.
const ioctlPtr = libc.func('ioctl', 'int', ['int', 'ulong', 'void *']);
const ioctlInt = libc.func('ioctl', 'int', ['int', 'ulong', 'ulong']);
export const poll = libc.func('int poll(void *fds, unsigned long nfds, int timeout)');
const eventfdCall = libc.func('int eventfd(unsigned int initval, int flags)');
const strerror = libc.func('const char *strerror(int errnum)');

// include/uapi/linux/if_tun.h
const TUNSETIFF = 0x400454ca; // _IOW('T', 202, int)
const TUNSETOFFLOAD = 0x400454d0; // _IOW('T', 208, unsigned int)
const IFF_TAP = 0x0002, IFF_MULTI_QUEUE = 0x0100, IFF_NO_PI = 0x1000, IFF_VNET_HDR = 0x4000;
export const TUN_F_CSUM = 0x01, TUN_F_TSO4 = 0x02, TUN_F_TSO6 = 0x04;
const IFNAMSIZ = 16;
export const POLLIN = 0x001, POLLERR = 0x008, POLLHUP = 0x010;
const EFD_NONBLOCK = 0o4000, EFD_CLOEXEC = 0o2000000;

/**
 * Who reads a vif queue's TAP queue next. DISARMED: the domain thread (it has frames to move or waits for rx
 * buffers). ARMED: this thread polls the fd. READABLE: this thread saw frames and gives the domain
 * thread RX_COALESCE_MS to find them at its next vCPU exit (DomainVifs.poll) before kicking it.
 */
export const TapReaderState = { DISARMED: 0, ARMED: 1, READABLE: 2 } as const;

/**
 * The TAP reader's shared control block (Int32 slots): [0] stop, then per queue slot (tapQueueSlot:
 * one per vif and queue) its TapReaderState, then per queue slot its TAP queue's fd (-1: none).
 * The fds live here rather than in the thread's start data so that vifs and queues can come and go
 * while the domain runs (network-attach, a frontend reconnecting with another queue count).
 */
export const TAP_SLOTS = 32;
/** Queue slots: NETBACK_MAX_QUEUES per vif. An INPUT_NET record names one in a byte. */
export const TAP_QUEUE_SLOTS = TAP_SLOTS * NETBACK_MAX_QUEUES;
export const tapQueueSlot = (devid: number, queue: number): number => devid * NETBACK_MAX_QUEUES + queue;
export const tapStateSlot = (slot: number): number => 1 + slot;
export const tapFdSlot = (slot: number): number => 1 + TAP_QUEUE_SLOTS + slot;
export function tapControlBlock(): Int32Array {
  const ctl = new Int32Array(new SharedArrayBuffer(4 * (1 + 2 * TAP_QUEUE_SLOTS)));
  for (let i = 0; i < TAP_QUEUE_SLOTS; i++) ctl[tapFdSlot(i)] = -1;
  return ctl;
}

const errnoText = () => { const e = koffi.errno(); return `${strerror(e)} (errno ${e})`; };

/** A non-blocking eventfd: the domain thread writes it to wake the TAP reader thread out of poll(). */
export function eventfd(): number {
  const fd = eventfdCall(0, EFD_NONBLOCK | EFD_CLOEXEC) as number;
  if (fd < 0) throw new HostError(`eventfd failed: ${errnoText()}`);
  return fd;
}

const ONE = new Uint8Array(new BigUint64Array([1n]).buffer);
export function signalEventfd(fd: number): void {
  try { writeSync(fd, ONE); } catch { /* EAGAIN: the counter is already non-zero, the reader wakes anyway */ }
}

/** Run `ip` with `args`; its error output (one line) or undefined. */
function ip(args: string[]): string | undefined {
  const r = spawnSync('ip', args, { encoding: 'utf8' });
  if (r.error) return `cannot run ip (${(r.error as NodeJS.ErrnoException).code}): install iproute2`;
  return r.status === 0 ? undefined : (r.stderr.trim().split('\n')[0] || `exit ${r.status}`);
}

/** Open /dev/net/tun and attach it to the TAP device `name` (created if missing) as one more queue; the fd. */
function openTapQueue(name: string): number {
  let fd: number;
  try { fd = openSync('/dev/net/tun', constants.O_RDWR | constants.O_NONBLOCK); } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new HostError(`vif ${name}: cannot open /dev/net/tun: ${code}${code === 'ENOENT' ? ' (load the tun module: modprobe tun)' : code === 'EACCES' || code === 'EPERM' ? ' (TAP devices need root or CAP_NET_ADMIN)' : ''}`);
  }
  const ifr = Buffer.alloc(40);
  ifr.write(name, 0, IFNAMSIZ - 1, 'latin1');
  ifr.writeUInt16LE(IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | IFF_MULTI_QUEUE, IFNAMSIZ);
  // SAFETY: ifr is a 40-byte struct ifreq alive for the call.
  if ((ioctlPtr(fd, TUNSETIFF, ifr) as number) < 0) {
    const why = errnoText();
    closeSync(fd);
    throw new HostError(`vif ${name}: cannot create the TAP device: ${why}${why.includes('errno 16') || why.includes('errno 22') ? ' (an interface of that name exists)' : ''}`);
  }
  return fd;
}

/**
 * A TAP device with one queue per netback queue (IFF_MULTI_QUEUE, as QEMU's multi-queue tap): each
 * queue is a file descriptor; the host kernel spreads frames for the guest over the queues by flow
 * (tun_automq_select_queue, which follows the queue a flow was last sent from), and what the guest
 * sends on netif queue q is written to TAP queue q. Queue 0 lives as long as the device.
 */
export class TapDevice {
  private closed = false;
  writeErrors = 0;
  private readonly fds: number[];
  private constructor(readonly name: string, fd: number) { this.fds = [fd]; }

  /** Queue 0's fd. */
  get fd(): number { return this.fds[0]!; }
  /** How many queues are attached. */
  get queues(): number { return this.fds.length; }
  queueFd(queue: number): number { return this.fds[queue]!; }

  /** Create the TAP device `name` (non-persistent: it goes away with this process), with virtio_net_hdr, up, with `mtu`. */
  static open(name: string, mtu: number): TapDevice {
    const tap = new TapDevice(name, openTapQueue(name));
    // Linux netback's dummy_addr: the numerically largest non-broadcast MAC, so a bridge never takes the vif's address as its own.
    const err = ip(['link', 'set', 'dev', name, 'address', 'fe:ff:ff:ff:ff:ff', 'mtu', String(mtu), 'up']);
    if (err) { tap.close(); throw new HostError(`vif ${name}: cannot bring it up with mtu ${mtu}: ${err}`); }
    return tap;
  }

  /**
   * Attach or close queues until there are `n` (a frontend connected with n netif queues). Callers
   * take a queue's fd away from the reader thread before it is closed here.
   */
  setQueues(n: number): void {
    while (this.fds.length > Math.max(1, n)) { try { closeSync(this.fds.pop()!); } catch { /* already gone */ } }
    while (this.fds.length < n) this.fds.push(openTapQueue(this.name));
  }

  /** TUNSETOFFLOAD: what the host kernel may hand us unfinished (blank checksums, TSO frames); only what the frontend takes. */
  setOffload(flags: number): void {
    // SAFETY: integer argument.
    if ((ioctlInt(this.fd, TUNSETOFFLOAD, flags) as number) < 0) throw new HostError(`vif ${this.name}: TUNSETOFFLOAD ${flags}: ${errnoText()}`);
  }

  /** Join `bridge`; create it first if it is missing and `create` says so. */
  joinBridge(bridge: string, create: boolean): void {
    if (!existsSync(`/sys/class/net/${bridge}`)) {
      if (!create) throw new HostError(`vif ${this.name}: bridge ${bridge} does not exist (create it, e.g. 'ip link add ${bridge} type bridge', or add create-bridge=1 to the vif)`);
      const err = ip(['link', 'add', 'name', bridge, 'type', 'bridge']) ?? ip(['link', 'set', 'dev', bridge, 'up']);
      if (err) throw new HostError(`vif ${this.name}: cannot create bridge ${bridge}: ${err}`);
    } else if (!existsSync(`/sys/class/net/${bridge}/bridge`)) {
      throw new HostError(`vif ${this.name}: ${bridge} is not a bridge`);
    }
    const err = ip(['link', 'set', 'dev', this.name, 'master', bridge]);
    if (err) throw new HostError(`vif ${this.name}: cannot join bridge ${bridge}: ${err}`);
  }

  /** One frame (virtio_net_hdr first) to the host on `queue`; a frame the kernel refuses is counted and dropped, as a NIC drops it. */
  write(frame: Uint8Array, queue = 0): void {
    try { writeSync(this.fds[queue]!, frame); } catch { this.writeErrors++; }
  }

  /** Read one frame from `queue` into `buf`: its length, 0 if none is waiting (EAGAIN), -1 if the device failed. */
  read(buf: Uint8Array, queue = 0): number {
    try { return readSync(this.fds[queue]!, buf, 0, buf.length, null); } catch (e) {
      return (e as NodeJS.ErrnoException).code === 'EAGAIN' ? 0 : -1;
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const fd of this.fds.splice(0).reverse()) { try { closeSync(fd); } catch { /* already gone */ } }
  }
}

/** What a hotplug script is told about its vif (libxl_linux.c get_hotplug_env, plus the nodes vif-common.sh would read from XenStore). */
export interface HotplugInfo { script: string; vif: string; backendPath: string; bridge?: string; ip?: string; mac: string; mtu: number }

/** The script's path: absolute as given, else in /etc/xen/scripts as xl resolves it (libxl__abs_path with XEN_SCRIPT_DIR). */
export function scriptPath(script: string): string {
  return isAbsolute(script) ? script : join('/etc/xen/scripts', script);
}

/**
 * Run the vif's script with `online` or `offline`, as libxl runs vif-bridge: $1 the action,
 * `type_if=vif`, and the environment script, XENBUS_PATH, XENBUS_TYPE, XENBUS_BASE_PATH, vif. Xen's
 * scripts read bridge, ip and mac from XenStore and fall back to variables of those names, which are
 * set too, since without `pvbox xenstored` the store is not reachable from a host process.
 * `online` failing is a HostError; `offline` failing is only reported.
 */
export function runHotplugScript(action: 'online' | 'offline', info: HotplugInfo, log: (line: string) => void): void {
  const path = scriptPath(info.script);
  const env: NodeJS.ProcessEnv = {
    ...process.env, script: path, XENBUS_PATH: info.backendPath, XENBUS_TYPE: 'vif', XENBUS_BASE_PATH: 'backend',
    vif: info.vif, mac: info.mac, mtu: String(info.mtu), ...(info.bridge ? { bridge: info.bridge } : {}), ...(info.ip ? { ip: info.ip } : {}),
  };
  const r = spawnSync(path, [action, 'type_if=vif'], { env, encoding: 'utf8', timeout: 30_000 });
  const why = r.error ? `${(r.error as NodeJS.ErrnoException).code ?? r.error.message}` : r.status !== 0 ? `exit ${r.status ?? r.signal}${r.stderr.trim() ? `: ${r.stderr.trim().split('\n').pop()}` : ''}` : undefined;
  if (!why) return;
  if (action === 'online') throw new HostError(`vif ${info.vif}: script ${path} online failed: ${why}`);
  log(`vif ${info.vif}: script ${path} offline failed: ${why}`);
}
