// What the main thread and a domain thread share: the start message and a ring of host → guest records (console input, XenStore replies) in a SharedArrayBuffer.
import type { DomainConfig } from '../toolstack/create.js';

export interface WorkerInit {
  config: DomainConfig;
  /** Int32[0]: wake flag; [1]: write index; [2]: read index; [3]: introduction (0 pending, 1 go, 2 refused); records from byte 16. */
  input: SharedArrayBuffer;
  readyMarker: string;
}
export const INPUT_RING = 256 * 1024;
/** Record tags: primary console input, XenStore bytes, secondary console input (first byte: devid), a JSON request from xenstored. */
export const INPUT_CONSOLE = 1, INPUT_XS = 2, INPUT_CONSOLE_N = 3, INPUT_CONTROL = 4;
const HDR = 3; // tag u8, length u16

export function newInputBuffer(): SharedArrayBuffer { return new SharedArrayBuffer(16 + INPUT_RING); }

/** Main-thread side: append records and wake the domain thread. */
export class InputRingWriter {
  private readonly ctl: Int32Array;
  private readonly ring: Uint8Array;
  constructor(sab: SharedArrayBuffer) { this.ctl = new Int32Array(sab, 0, 4); this.ring = new Uint8Array(sab, 16, INPUT_RING); }
  /** Returns false (and writes nothing more) when the ring is full: the guest is not reading. */
  push(tag: number, bytes: Uint8Array): boolean {
    for (let off = 0; off < bytes.length || (off === 0 && bytes.length === 0); ) {
      const n = Math.min(bytes.length - off, 0xffff);
      const w = Atomics.load(this.ctl, 1), r = Atomics.load(this.ctl, 2);
      const used = (w - r + INPUT_RING) % INPUT_RING;
      if (INPUT_RING - 1 - used < HDR + n) return false;
      const put = (i: number, b: number) => { this.ring[(w + i) % INPUT_RING] = b; };
      put(0, tag); put(1, n & 0xff); put(2, n >> 8);
      for (let i = 0; i < n; i++) put(HDR + i, bytes[off + i]!);
      Atomics.store(this.ctl, 1, (w + HDR + n) % INPUT_RING);
      off += n;
      if (n === 0) break;
    }
    Atomics.store(this.ctl, 0, 1);
    Atomics.notify(this.ctl, 0);
    return true;
  }
  /** Answer the domain thread's introduction request (see InputRingReader.awaitIntroduction). */
  introduced(ok: boolean): void { Atomics.store(this.ctl, 3, ok ? 1 : 2); Atomics.notify(this.ctl, 3); }
}

const NOTHING: readonly { tag: number; bytes: Uint8Array }[] = Object.freeze([]) as never;

/** Domain-thread side. */
export class InputRingReader {
  private readonly ctl: Int32Array;
  private readonly ring: Uint8Array;
  constructor(sab: SharedArrayBuffer) { this.ctl = new Int32Array(sab, 0, 4); this.ring = new Uint8Array(sab, 16, INPUT_RING); }
  take(): readonly { tag: number; bytes: Uint8Array }[] {
    let r = Atomics.load(this.ctl, 2);
    const w = Atomics.load(this.ctl, 1);
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
    Atomics.store(this.ctl, 2, r);
    return out;
  }
  wait(ms: number): void {
    if (Atomics.load(this.ctl, 1) !== Atomics.load(this.ctl, 2)) return;
    Atomics.wait(this.ctl, 0, 0, ms);
    Atomics.store(this.ctl, 0, 0);
  }
  /** Block until the main thread has introduced the domain to xenstored; true if it was accepted. */
  awaitIntroduction(timeoutMs: number): boolean {
    Atomics.wait(this.ctl, 3, 0, timeoutMs);
    return Atomics.load(this.ctl, 3) === 1;
  }
}
