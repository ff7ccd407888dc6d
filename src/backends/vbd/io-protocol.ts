// What a domain thread and its block I/O thread exchange (io-thread.ts): requests by postMessage (the I/O thread has an event loop), completions as records in the domain's input ring (the domain thread has none while its vCPU runs).

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
