// Byte-stream rings on a shared page: the PV console (xen/include/public/io/console.h struct
// xencons_interface) and XenStore (io/xs_wire.h struct xenstore_domain_interface); after mirage
// shared-memory-ring lib/{console_ring,xenstore_ring}.ml: one Layout, a Front and a Back view.
//
// Pure: works on a Uint8Array over the shared page. No notification here: whoever moved bytes
// notifies the other end (event channel) afterwards.
//
// Each direction is a power-of-two byte array with two u32 free-running indices: the producer
// advances `prod`, the consumer advances `cons`, and `prod - cons` (mod 2^32) is the number of
// bytes waiting. Positions in the array are `idx & (size - 1)` (MASK_XENSTORE_IDX,
// MASK_XENCONS_IDX). The indices are shared with the guest, so each is loaded exactly once per
// call with Atomics.load (the guest may change it at any moment) and stored with Atomics.store
// after the data is copied (the store publishes the bytes, as xen_mb() does in xenstored's
// writechn/readchn). A guest that moves its index so that `prod - cons` exceeds the array size
// has broken the ring (xenstored check_indexes; QEMU sets fatal_error): every later call returns
// the same error and the caller stops serving that ring. Nothing here throws at a guest.

import { xencons_interface } from '../abi/io/console.js';
import { xenstore_domain_interface } from '../abi/io/xs_wire.js';

/** One direction of a byte ring: where its bytes and its two indices are in the page. */
export interface BytePipeLayout {
  /** Byte offset and size (a power of two) of the data array. */
  readonly offset: number;
  readonly size: number;
  /** Byte offsets of the u32 consumer and producer indices (4-aligned). */
  readonly consOffset: number;
  readonly prodOffset: number;
}

/**
 * A shared page's byte ring, as the frontend (guest) sees it: `output` is what the front
 * produces and the back consumes (XenStore req[], console out[]), `input` the reverse.
 */
export interface ByteRingLayout {
  readonly name: string;
  readonly output: BytePipeLayout;
  readonly input: BytePipeLayout;
}

/** struct xenstore_domain_interface: req[] guest → xenstored, rsp[] replies and watch events. */
export const XENSTORE_RING_LAYOUT: ByteRingLayout = Object.freeze({
  name: 'xenstore',
  output: Object.freeze({
    offset: xenstore_domain_interface.off.req,
    size: xenstore_domain_interface.field.req.size,
    consOffset: xenstore_domain_interface.off.req_cons,
    prodOffset: xenstore_domain_interface.off.req_prod,
  }),
  input: Object.freeze({
    offset: xenstore_domain_interface.off.rsp,
    size: xenstore_domain_interface.field.rsp.size,
    consOffset: xenstore_domain_interface.off.rsp_cons,
    prodOffset: xenstore_domain_interface.off.rsp_prod,
  }),
});

/** struct xencons_interface: out[] guest → console backend, in[] backend (keyboard) → guest. */
export const XENCONS_RING_LAYOUT: ByteRingLayout = Object.freeze({
  name: 'console',
  output: Object.freeze({
    offset: xencons_interface.off.out,
    size: xencons_interface.field.out.size,
    consOffset: xencons_interface.off.out_cons,
    prodOffset: xencons_interface.off.out_prod,
  }),
  input: Object.freeze({
    offset: xencons_interface.off.in,
    size: xencons_interface.field.in.size,
    consOffset: xencons_interface.off.in_cons,
    prodOffset: xencons_interface.off.in_prod,
  }),
});

/** The ring is unusable: an index moved so that more bytes are "waiting" than the array holds. */
export interface ByteRingBroken {
  readonly broken: true;
  /** Which array: 'output' (front → back) or 'input' (back → front), in the front's terms. */
  readonly pipe: 'output' | 'input';
  /** The index values seen, as u32. */
  readonly cons: number;
  readonly prod: number;
}

export function isRingBroken(x: unknown): x is ByteRingBroken {
  return typeof x === 'object' && x !== null && (x as { broken?: unknown }).broken === true;
}

/** One direction over the shared page. */
class BytePipe {
  readonly #data: Uint8Array;
  readonly #idx: Int32Array;
  readonly #cons: number;
  readonly #prod: number;
  readonly #size: number;
  readonly #which: 'output' | 'input';

  constructor(page: Uint8Array, idx: Int32Array, l: BytePipeLayout, which: 'output' | 'input') {
    if (l.size <= 0 || (l.size & (l.size - 1)) !== 0) throw new RangeError(`byte ring size ${l.size} is not a power of two`);
    if (l.consOffset % 4 !== 0 || l.prodOffset % 4 !== 0) throw new RangeError('byte ring indices must be 4-aligned');
    if (l.offset + l.size > page.length || l.consOffset + 4 > page.length || l.prodOffset + 4 > page.length) {
      throw new RangeError(`byte ring layout does not fit a ${page.length}-byte page`);
    }
    this.#data = page.subarray(l.offset, l.offset + l.size);
    this.#idx = idx;
    this.#cons = l.consOffset / 4;
    this.#prod = l.prodOffset / 4;
    this.#size = l.size;
    this.#which = which;
  }

  get size(): number {
    return this.#size;
  }

  #load(): { cons: number; prod: number; used: number } | ByteRingBroken {
    const prod = Atomics.load(this.#idx, this.#prod) >>> 0;
    const cons = Atomics.load(this.#idx, this.#cons) >>> 0;
    const used = (prod - cons) >>> 0;
    if (used > this.#size) return { broken: true, pipe: this.#which, cons, prod };
    return { cons, prod, used };
  }

  /** Bytes waiting to be consumed. */
  pending(): number | ByteRingBroken {
    const s = this.#load();
    return isRingBroken(s) ? s : s.used;
  }

  /** Free space for the producer. */
  space(): number | ByteRingBroken {
    const s = this.#load();
    return isRingBroken(s) ? s : this.#size - s.used;
  }

  /** Consumer: copy out up to `max` waiting bytes and advance `cons`. */
  read(max: number): Uint8Array | ByteRingBroken {
    const s = this.#load();
    if (isRingBroken(s)) return s;
    const n = max > 0 ? Math.min(Math.floor(max), s.used) : 0;
    const out = new Uint8Array(n);
    const mask = this.#size - 1;
    const start = s.cons & mask;
    const first = Math.min(n, this.#size - start);
    out.set(this.#data.subarray(start, start + first), 0);
    if (n > first) out.set(this.#data.subarray(0, n - first), first);
    Atomics.store(this.#idx, this.#cons, (s.cons + n) | 0);
    return out;
  }

  /** Producer: copy in as many of `bytes` as fit and advance `prod`. Returns the count. */
  write(bytes: Uint8Array): number | ByteRingBroken {
    const s = this.#load();
    if (isRingBroken(s)) return s;
    const n = Math.min(bytes.length, this.#size - s.used);
    const mask = this.#size - 1;
    const start = s.prod & mask;
    const first = Math.min(n, this.#size - start);
    this.#data.set(bytes.subarray(0, first), start);
    if (n > first) this.#data.set(bytes.subarray(first, n), 0);
    Atomics.store(this.#idx, this.#prod, (s.prod + n) | 0);
    return n;
  }
}

/**
 * A byte ring on a shared page, usable from either end. The backend (pvbox) uses backRead /
 * backWrite; the front* methods play the guest in tests. Once either direction is found broken,
 * every call returns that ByteRingBroken.
 */
export class ByteRing {
  readonly layout: ByteRingLayout;
  readonly #output: BytePipe;
  readonly #input: BytePipe;
  #broken: ByteRingBroken | undefined;

  /**
   * `page` must start 4-byte aligned in its buffer (a guest page always does): the indices are
   * accessed through an Int32Array over the same memory.
   */
  constructor(page: Uint8Array, layout: ByteRingLayout) {
    if (page.byteOffset % 4 !== 0) throw new RangeError('byte ring page must be 4-byte aligned');
    const idx = new Int32Array(page.buffer, page.byteOffset, Math.floor(page.byteLength / 4));
    this.layout = layout;
    this.#output = new BytePipe(page, idx, layout.output, 'output');
    this.#input = new BytePipe(page, idx, layout.input, 'input');
  }

  /** Why the ring stopped being usable, if it did. */
  get broken(): ByteRingBroken | undefined {
    return this.#broken;
  }

  #check<T>(r: T | ByteRingBroken): T | ByteRingBroken {
    if (this.#broken) return this.#broken;
    if (isRingBroken(r)) this.#broken = r;
    return r;
  }

  #run<T>(f: () => T | ByteRingBroken): T | ByteRingBroken {
    return this.#broken ?? this.#check(f());
  }

  // --- back end (pvbox: xenstored, console backend) ---

  /** Consume up to `maxBytes` (default: all) of what the guest wrote. */
  backRead(maxBytes = Number.POSITIVE_INFINITY): Uint8Array | ByteRingBroken {
    return this.#run(() => this.#output.read(maxBytes));
  }

  /** Send bytes to the guest; returns how many fit (the rest must be retried later). */
  backWrite(bytes: Uint8Array): number | ByteRingBroken {
    return this.#run(() => this.#input.write(bytes));
  }

  /** Bytes the guest wrote that the back has not consumed yet. */
  backPending(): number | ByteRingBroken {
    return this.#run(() => this.#output.pending());
  }

  /** Room for backWrite(). */
  backSpace(): number | ByteRingBroken {
    return this.#run(() => this.#input.space());
  }

  // --- front end (the guest's side; for tests and in-host clients) ---

  frontWrite(bytes: Uint8Array): number | ByteRingBroken {
    return this.#run(() => this.#output.write(bytes));
  }

  frontRead(maxBytes = Number.POSITIVE_INFINITY): Uint8Array | ByteRingBroken {
    return this.#run(() => this.#input.read(maxBytes));
  }

  frontPending(): number | ByteRingBroken {
    return this.#run(() => this.#input.pending());
  }

  frontSpace(): number | ByteRingBroken {
    return this.#run(() => this.#output.space());
  }
}
