// What the main thread and a domain thread share: the start message and a ring of host → guest records (console input, XenStore replies, I/O completions) in a SharedArrayBuffer.
import * as libc from '../kvm/libc.js';
import { KICK_SIGNAL } from './kick.js';
import type { DomainConfig } from '../toolstack/create.js';

export interface WorkerInit {
  config: DomainConfig;
  /**
   * Int32[0]: wake flag; [1]: write index; [2]: read index; [3]: introduction (0 pending, 1 go,
   * 2 refused); [4]: the vCPU thread's tid (0 until it runs); [5]: kick sent since the last take;
   * [6]: writers' lock. Records from byte 32.
   */
  input: SharedArrayBuffer;
  readyMarker: string;
}
export const INPUT_RING = 256 * 1024;
/**
 * Record tags: primary console input, XenStore bytes, secondary console input (first byte: devid),
 * a JSON request from xenstored, block I/O completions (backends/vbd/io-thread.ts), network
 * packets from a vif's host side.
 */
export const INPUT_CONSOLE = 1, INPUT_XS = 2, INPUT_CONSOLE_N = 3, INPUT_CONTROL = 4, INPUT_BLKIO = 5, INPUT_NET = 6;
const HDR = 3; // tag u8, length u16
const CTL_BYTES = 32;
const WAKE = 0, WRITE = 1, READ = 2, INTRO = 3, TID = 4, KICKED = 5, LOCK = 6;

export function newInputBuffer(): SharedArrayBuffer { return new SharedArrayBuffer(CTL_BYTES + INPUT_RING); }

/** The vCPU thread's tid once the domain is built and its vCPU about to run (published for kicks), else 0. */
export function vcpuThreadId(input: SharedArrayBuffer): number { return Atomics.load(new Int32Array(input, 0, CTL_BYTES / 4), TID); }

/**
 * Writer side (main thread, I/O threads; several at once): append records, wake the domain
 * thread if it sleeps, and kick its vCPU out of KVM_RUN if it runs, so input is seen at once
 * rather than at the guest's next exit. One kick per take(): a burst costs one exit.
 */
export class InputRingWriter {
  private readonly ctl: Int32Array;
  private readonly ring: Uint8Array;
  constructor(sab: SharedArrayBuffer) { this.ctl = new Int32Array(sab, 0, CTL_BYTES / 4); this.ring = new Uint8Array(sab, CTL_BYTES, INPUT_RING); }
  /** Returns false (and writes nothing more) when the ring is full: the guest is not reading. */
  push(tag: number, bytes: Uint8Array): boolean {
    // Writers are few and pushes short: a spin lock, never held across anything that blocks.
    while (Atomics.compareExchange(this.ctl, LOCK, 0, 1) !== 0) { /* spin */ }
    try { return this.pushLocked(tag, bytes); } finally { Atomics.store(this.ctl, LOCK, 0); this.wake(); }
  }
  private wake(): void {
    Atomics.store(this.ctl, WAKE, 1);
    Atomics.notify(this.ctl, WAKE);
    const tid = Atomics.load(this.ctl, TID);
    // SAFETY: plain integer arguments; a tid that exited makes tgkill fail with ESRCH, harmlessly.
    if (tid > 0 && Atomics.compareExchange(this.ctl, KICKED, 0, 1) === 0) libc.tgkill(process.pid, tid, KICK_SIGNAL);
  }
  private pushLocked(tag: number, bytes: Uint8Array): boolean {
    for (let off = 0; off < bytes.length || (off === 0 && bytes.length === 0); ) {
      const n = Math.min(bytes.length - off, 0xffff);
      const w = Atomics.load(this.ctl, WRITE), r = Atomics.load(this.ctl, READ);
      const used = (w - r + INPUT_RING) % INPUT_RING;
      if (INPUT_RING - 1 - used < HDR + n) return false;
      const put = (i: number, b: number) => { this.ring[(w + i) % INPUT_RING] = b; };
      put(0, tag); put(1, n & 0xff); put(2, n >> 8);
      for (let i = 0; i < n; i++) put(HDR + i, bytes[off + i]!);
      Atomics.store(this.ctl, WRITE, (w + HDR + n) % INPUT_RING);
      off += n;
      if (n === 0) break;
    }
    return true;
  }
  /** Answer the domain thread's introduction request (see InputRingReader.awaitIntroduction). */
  introduced(ok: boolean): void { Atomics.store(this.ctl, INTRO, ok ? 1 : 2); Atomics.notify(this.ctl, INTRO); }
}

const NOTHING: readonly { tag: number; bytes: Uint8Array }[] = Object.freeze([]) as never;

/** Domain-thread side. */
export class InputRingReader {
  private readonly ctl: Int32Array;
  private readonly ring: Uint8Array;
  constructor(sab: SharedArrayBuffer) { this.ctl = new Int32Array(sab, 0, CTL_BYTES / 4); this.ring = new Uint8Array(sab, CTL_BYTES, INPUT_RING); }
  /** Writers may kick this thread (the vCPU's) out of KVM_RUN from now on. */
  setKickTarget(tid: number): void { Atomics.store(this.ctl, TID, tid); }
  take(): readonly { tag: number; bytes: Uint8Array }[] {
    if (Atomics.load(this.ctl, KICKED) !== 0) Atomics.store(this.ctl, KICKED, 0);
    let r = Atomics.load(this.ctl, READ);
    const w = Atomics.load(this.ctl, WRITE);
    if (r === w) return NOTHING; // the common case, on every exit
    const out: { tag: number; bytes: Uint8Array }[] = [];
    while (r !== w) {
      const at = (i: number) => this.ring[(r + i) % INPUT_RING]!;
      const tag = at(0), n = at(1) | (at(2) << 8);
      const bytes = new Uint8Array(n);
      for (let i = 0; i < n; i++) bytes[i] = at(HDR + i);
      out.push({ tag, bytes });
      r = (r + HDR + n) % INPUT_RING;
    }
    Atomics.store(this.ctl, READ, r);
    return out;
  }
  wait(ms: number): void {
    if (Atomics.load(this.ctl, WRITE) !== Atomics.load(this.ctl, READ)) return;
    Atomics.wait(this.ctl, WAKE, 0, ms);
    Atomics.store(this.ctl, WAKE, 0);
  }
  /** Block until the main thread has introduced the domain to xenstored; true if it was accepted. */
  awaitIntroduction(timeoutMs: number): boolean {
    Atomics.wait(this.ctl, INTRO, 0, timeoutMs);
    return Atomics.load(this.ctl, INTRO) === 1;
  }
}
