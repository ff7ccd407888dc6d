// The shared blkif ring as the backend sees it: one or 2^order granted pages (ring-page-order, io/blkif.h "Multi-page rings"), which need not be contiguous in guest memory (public/io/ring.h DEFINE_RING_TYPES; Linux xen-blkback xen_blkif_map).
import { blkif_sring_entry } from '../../abi/io/blkif.js';
import { __RING_SIZE } from '../../abi/io/ring.js';

const PAGE = 4096;
/** struct blkif_sring header: req_prod, req_event, rsp_prod, rsp_event, then padding to 64 bytes. */
const HEADER = 64;
const ENTRY = blkif_sring_entry.size;

export class BlkifRing {
  readonly size: number;
  private readonly idx: Int32Array; // the header lives in the first page
  private readonly resp = new DataView(new ArrayBuffer(16));

  /** `pages` are views of the granted ring pages, in ring-ref order. */
  constructor(private readonly pages: readonly Uint8Array[]) {
    if (pages.length === 0 || (pages.length & (pages.length - 1)) !== 0) throw new RangeError(`blkif ring: ${pages.length} pages is not a power of two`);
    for (const p of pages) if (p.byteLength !== PAGE) throw new RangeError('blkif ring: pages must be 4 KiB views');
    this.size = __RING_SIZE(ENTRY, pages.length * PAGE);
    const first = pages[0]!;
    this.idx = new Int32Array(first.buffer, first.byteOffset, 4);
  }

  get reqProd(): number { return Atomics.load(this.idx, 0) >>> 0; }
  set reqEvent(v: number) { Atomics.store(this.idx, 1, v | 0); }
  get rspProd(): number { return Atomics.load(this.idx, 2) >>> 0; }
  set rspProd(v: number) { Atomics.store(this.idx, 2, v | 0); }
  get rspEvent(): number { return Atomics.load(this.idx, 3) >>> 0; }

  /** A private copy of request slot `index` (free-running): the guest may rewrite the slot at any moment. */
  readRequest(index: number): DataView {
    const out = new Uint8Array(ENTRY);
    this.copy(this.slotOffset(index), out, true);
    return new DataView(out.buffer);
  }

  /** Write struct blkif_response into slot `index` (free-running). */
  writeResponse(index: number, id: bigint, operation: number, status: number): void {
    const r = this.resp;
    r.setBigUint64(0, id, true);
    r.setUint32(8, 0, true); r.setUint32(12, 0, true);
    r.setUint8(8, operation);
    r.setInt16(10, status, true);
    this.copy(this.slotOffset(index), new Uint8Array(r.buffer), false);
  }

  private slotOffset(index: number): number { return HEADER + (index & (this.size - 1)) * ENTRY; }

  /** Copy between ring bytes at `offset` and `buf`; a slot may straddle two pages. */
  private copy(offset: number, buf: Uint8Array, fromRing: boolean): void {
    let done = 0;
    while (done < buf.length) {
      const page = this.pages[(offset + done) >> 12]!, at = (offset + done) & (PAGE - 1);
      const n = Math.min(buf.length - done, PAGE - at);
      if (fromRing) buf.set(page.subarray(at, at + n), done);
      else page.set(buf.subarray(done, done + n), at);
      done += n;
    }
  }
}
