// What a domain thread and its block I/O thread exchange (io-thread.ts): image operations through a shared submission queue, control requests (open, close, slabs) by postMessage, completions as records in the domain's input ring (the domain thread has no event loop while its vCPU runs).

export const IO_READ = 0, IO_WRITE = 1, IO_FLUSH = 2, IO_DISCARD = 3;
export type IoOp = typeof IO_READ | typeof IO_WRITE | typeof IO_FLUSH | typeof IO_DISCARD;

export interface ImageInfo { sizeBytes: number; format: string; canDiscard: boolean; isBlockDevice: boolean; readonly: boolean }

export type IoRequest =
  | { type: 'open'; disk: number; path: string; readonly: boolean; format: 'raw' | 'qcow2' | 'auto' }
  /** A data buffer shared with the domain thread; `io` requests name it by `slab`. */
  | { type: 'slab'; slab: number; sab: SharedArrayBuffer }
  | { type: 'drop-slab'; slab: number }
  /** One image operation; `len` bytes at `slabOffset` of the slab carry the data (read/write). */
  | { type: 'io'; tag: number; disk: number; op: IoOp; offset: number; len: number; slab: number; slabOffset: number }
  | { type: 'close'; disk: number };

export type IoReply =
  | { type: 'opened'; disk: number; info: ImageInfo }
  | { type: 'open-failed'; disk: number; message: string }
  | { type: 'closed'; disk: number; error?: string };

/** Completion records (tag INPUT_BLKIO): pairs of (tag u32, status i32); status 0 or a negative errno. */
export const COMPLETION_BYTES = 8;

export function encodeCompletions(done: readonly (readonly [number, number])[]): Uint8Array {
  const b = new DataView(new ArrayBuffer(done.length * COMPLETION_BYTES));
  done.forEach(([tag, status], i) => { b.setUint32(i * 8, tag, true); b.setInt32(i * 8 + 4, status, true); });
  return new Uint8Array(b.buffer);
}

export function decodeCompletions(bytes: Uint8Array, each: (tag: number, status: number) => void): void {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let o = 0; o + COMPLETION_BYTES <= bytes.length; o += COMPLETION_BYTES) each(dv.getUint32(o, true), dv.getInt32(o + 4, true));
}

/**
 * The submission queue: a single-producer (the domain thread), single-consumer (the I/O thread)
 * ring of image operations in a SharedArrayBuffer, with a doorbell rung once per batch (a ring
 * notification's worth of requests). Why not postMessage per request: on a busy host each
 * postMessage cost the vCPU's thread 0.1–0.5 ms (structured clone, waking the I/O thread's
 * loop, which may preempt the sender) — more than the read itself; here a request is eight
 * stores and a batch one Atomics.notify.
 *
 * Header (Int32): [0] head (producer, free-running), [1] tail (consumer), [2] doorbell sequence.
 * Entries of 32 bytes: tag, disk, op, slab (u32), offset (f64), len, slabOffset (u32).
 */
export const SQ_ENTRIES = 1024;
/** Atomics.waitAsync (ES2024; in Node since 16), typed here because the project's lib is older. */
const waitAsync = (Atomics as unknown as { waitAsync(a: Int32Array, i: number, v: number): { async: boolean; value: Promise<string> | string } }).waitAsync;
const SQ_HEADER = 16, SQ_ENTRY = 32;
const HEAD = 0, TAIL = 1, BELL = 2;

export function newSubmissionQueue(): SharedArrayBuffer { return new SharedArrayBuffer(SQ_HEADER + SQ_ENTRIES * SQ_ENTRY); }

export interface QueuedIo { tag: number; disk: number; op: IoOp; slab: number; offset: number; len: number; slabOffset: number }

export class SubmissionQueue {
  private readonly ctl: Int32Array;
  private readonly u32: Uint32Array;
  private readonly f64: Float64Array;
  private unrung = false;
  constructor(sab: SharedArrayBuffer) {
    this.ctl = new Int32Array(sab, 0, SQ_HEADER / 4);
    this.u32 = new Uint32Array(sab, SQ_HEADER);
    this.f64 = new Float64Array(sab, SQ_HEADER);
  }

  /** Producer: queue one operation; false if the queue is full (the caller sends it another way). */
  push(tag: number, disk: number, op: IoOp, offset: number, len: number, slab: number, slabOffset: number): boolean {
    const head = Atomics.load(this.ctl, HEAD), tail = Atomics.load(this.ctl, TAIL);
    if (((head - tail) >>> 0) >= SQ_ENTRIES) return false;
    const e = (head & (SQ_ENTRIES - 1)) * (SQ_ENTRY / 4);
    const u = this.u32;
    u[e] = tag; u[e + 1] = disk; u[e + 2] = op; u[e + 3] = slab; u[e + 6] = len; u[e + 7] = slabOffset;
    this.f64[e / 2 + 2] = offset;
    Atomics.store(this.ctl, HEAD, (head + 1) | 0); // publishes the entry's plain stores
    this.unrung = true;
    return true;
  }

  /** Producer: wake the consumer once for everything pushed since the last call. */
  ring(): void {
    if (!this.unrung) return;
    this.unrung = false;
    Atomics.add(this.ctl, BELL, 1);
    Atomics.notify(this.ctl, BELL);
  }

  /** Consumer: the doorbell's value, to wait on after draining. */
  get bell(): number { return Atomics.load(this.ctl, BELL); }

  /** Consumer: wait (asynchronously) until the doorbell moves past `seen`. */
  async waitBell(seen: number): Promise<void> {
    const w = waitAsync(this.ctl, BELL, seen);
    if (w.async) await w.value;
  }

  /** Consumer: take every queued operation, oldest first. */
  drain(each: (io: QueuedIo) => void): void {
    const head = Atomics.load(this.ctl, HEAD);
    let tail = Atomics.load(this.ctl, TAIL);
    while (tail !== head) {
      const e = (tail & (SQ_ENTRIES - 1)) * (SQ_ENTRY / 4);
      const u = this.u32;
      const io: QueuedIo = { tag: u[e]!, disk: u[e + 1]!, op: u[e + 2]! as IoOp, slab: u[e + 3]!, offset: this.f64[e / 2 + 2]!, len: u[e + 6]!, slabOffset: u[e + 7]! };
      tail = (tail + 1) | 0;
      Atomics.store(this.ctl, TAIL, tail); // the slot may be reused from now on
      each(io);
    }
  }
}
