// The vbd backend's data plane: a blkif ring served from an image file (Linux drivers/block/xen-blkback/blkback.c do_block_io_op/dispatch_rw_block_io; public/io/blkif.h, io/ring.h).
import { fsyncSync, readSync, writeSync } from 'node:fs';
import {
  BLKIF_MAX_SEGMENTS_PER_REQUEST, BLKIF_OP_FLUSH_DISKCACHE, BLKIF_OP_READ, BLKIF_OP_WRITE, BLKIF_RSP_EOPNOTSUPP,
  BLKIF_RSP_ERROR, BLKIF_RSP_OKAY,
} from '../../abi/io/blkif.js';
import type { GrantAccess } from '../../hypervisor/grant_table_backend.js';

const SLOT = 112, HEADER = 64, RING_SIZE = 32; // __RING_SIZE for blkif on one 4 KiB page
const SECTOR = 512;

export interface DiskFile { fd: number; sizeBytes: number; readonly: boolean }

export class BlkBack {
  private reqCons = 0;
  private rspProdPvt = 0;
  private broken = false;
  private readonly idx: Int32Array;   // req_prod, req_event, rsp_prod, rsp_event
  private readonly dv: DataView;
  requests = 0;

  constructor(private readonly ring: Uint8Array, private readonly grants: GrantAccess, private readonly disk: DiskFile,
    private readonly notify: () => void, private readonly log: (l: string) => void) {
    this.idx = new Int32Array(ring.buffer, ring.byteOffset, 4);
    this.dv = new DataView(ring.buffer, ring.byteOffset, ring.byteLength);
  }

  /** The frontend notified: serve until no request is left (RING_FINAL_CHECK_FOR_REQUESTS), then notify once. */
  onNotify(): void {
    if (this.broken) return;
    const before = this.rspProdPvt;
    for (;;) {
      const prod = Atomics.load(this.idx, 0) >>> 0;
      if (((prod - this.reqCons) >>> 0) > RING_SIZE) {
        this.broken = true;
        this.log(`vbd: frontend's req_prod ${prod} is more than a ring ahead of ${this.reqCons}; ring no longer served`);
        return;
      }
      while (this.reqCons !== prod) {
        const slot = HEADER + (this.reqCons & (RING_SIZE - 1)) * SLOT;
        const req = new DataView(this.ring.slice(slot, slot + SLOT).buffer); // a private copy: the guest may change the slot
        this.reqCons = (this.reqCons + 1) >>> 0;
        const status = this.handle(req);
        const rsp = HEADER + (this.rspProdPvt & (RING_SIZE - 1)) * SLOT;
        this.dv.setBigUint64(rsp, req.getBigUint64(8, true), true);  // id
        this.dv.setUint8(rsp + 8, req.getUint8(0));                   // operation
        this.dv.setInt16(rsp + 10, status, true);                     // status
        this.rspProdPvt = (this.rspProdPvt + 1) >>> 0;
        this.requests++;
      }
      Atomics.store(this.idx, 1, (this.reqCons + 1) | 0); // req_event: wake us for the next one
      if ((Atomics.load(this.idx, 0) >>> 0) === this.reqCons) break;
    }
    if (this.rspProdPvt !== before) {
      // RING_PUSH_RESPONSES_AND_CHECK_NOTIFY
      const old = Atomics.load(this.idx, 2) >>> 0;
      Atomics.store(this.idx, 2, this.rspProdPvt | 0);
      const event = Atomics.load(this.idx, 3) >>> 0;
      if (((this.rspProdPvt - event) >>> 0) < ((this.rspProdPvt - old) >>> 0)) this.notify();
    }
  }

  private handle(req: DataView): number {
    const op = req.getUint8(0), nseg = req.getUint8(1);
    if (op === BLKIF_OP_FLUSH_DISKCACHE) {
      try { fsyncSync(this.disk.fd); return BLKIF_RSP_OKAY; } catch (e) { this.log(`vbd: flush failed: ${(e as Error).message}`); return BLKIF_RSP_ERROR; }
    }
    if (op !== BLKIF_OP_READ && op !== BLKIF_OP_WRITE) return op <= 6 ? BLKIF_RSP_EOPNOTSUPP : BLKIF_RSP_ERROR;
    if (op === BLKIF_OP_WRITE && this.disk.readonly) return BLKIF_RSP_ERROR;
    if (nseg === 0 || nseg > BLKIF_MAX_SEGMENTS_PER_REQUEST) return BLKIF_RSP_ERROR;
    let pos = Number(req.getBigUint64(16, true)) * SECTOR;
    for (let i = 0; i < nseg; i++) {
      const o = 24 + i * 8;
      const gref = req.getUint32(o, true), first = req.getUint8(o + 4), last = req.getUint8(o + 5);
      if (first > last || last > 7) return BLKIF_RSP_ERROR;
      const len = (last - first + 1) * SECTOR;
      if (!Number.isSafeInteger(pos) || pos + len > this.disk.sizeBytes) return BLKIF_RSP_ERROR;
      const buf = new Uint8Array(len);
      try {
        if (op === BLKIF_OP_READ) {
          if (readSync(this.disk.fd, buf, 0, len, pos) !== len) return BLKIF_RSP_ERROR;
          const [st] = this.grants.copy([{ source: { bytes: buf, offset: 0 }, dest: { ref: gref, offset: first * SECTOR }, len }]);
          if (st !== 0) return BLKIF_RSP_ERROR;
        } else {
          const [st] = this.grants.copy([{ source: { ref: gref, offset: first * SECTOR }, dest: { bytes: buf, offset: 0 }, len }]);
          if (st !== 0) return BLKIF_RSP_ERROR;
          if (writeSync(this.disk.fd, buf, 0, len, pos) !== len) return BLKIF_RSP_ERROR;
        }
      } catch (e) {
        this.log(`vbd: I/O at ${pos} failed: ${(e as Error).message}`);
        return BLKIF_RSP_ERROR;
      }
      pos += len;
    }
    return BLKIF_RSP_OKAY;
  }
}
