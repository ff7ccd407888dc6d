// The vbd backend's data plane: one blkif ring (one queue of a disk) served through the domain's block I/O thread (Linux drivers/block/xen-blkback/blkback.c: __do_block_io_op, dispatch_rw_block_io, xen_blkbk_parse_indirect, make_response; public/io/blkif.h).
//
// A request is checked, its data staged in a shared slab (grant copies, or plain copies through
// persistent grant mappings), and the I/O submitted; the vCPU never waits for the disk. Responses
// are pushed, and the frontend notified, once per batch of completions (RING_PUSH_RESPONSES_AND_CHECK_NOTIFY).
import {
  BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST, BLKIF_MAX_SEGMENTS_PER_REQUEST, BLKIF_OP_DISCARD, BLKIF_OP_FLUSH_DISKCACHE, BLKIF_OP_INDIRECT,
  BLKIF_OP_READ, BLKIF_OP_WRITE, BLKIF_OP_WRITE_BARRIER, BLKIF_RSP_EOPNOTSUPP, BLKIF_RSP_ERROR, BLKIF_RSP_OKAY,
} from '../../abi/io/blkif.js';
import type { GrantAccess, GrantCopySegment } from '../../hypervisor/grant_table_backend.js';
import type { BlkifRing } from './blkif-ring.js';
import type { BlockIoThread } from './io-client.js';
import { IO_DISCARD, IO_FLUSH, IO_READ, IO_WRITE } from './io-protocol.js';

const PAGE = 4096, SECTOR = 512;
/** Segments per indirect page (4096 / sizeof(struct blkif_request_segment)). */
const SEGS_PER_INDIRECT_FRAME = PAGE / 8;
/** What pvbox advertises as feature-max-indirect-segments: Linux blkback's MAX_INDIRECT_SEGMENTS. */
export const MAX_INDIRECT_SEGMENTS = 256;
/** Persistent grants kept mapped per ring: Linux blkback's xen_blkif_max_pgrants default. */
export const MAX_PERSISTENT_GRANTS = 1056;
/** Staging memory per ring, in pages: bounds the data in flight (Linux: xen_blkif_reqs). */
const SLAB_PAGES = 2048;

/** The disk as the I/O thread opened it. */
export interface BlkDisk { disk: number; sizeBytes: number; readonly: boolean; canDiscard: boolean }

export interface BlkBackOptions {
  /** The frontend agreed to feature-persistent: its grants stay valid, so keep them mapped. */
  persistent: boolean;
  notify(): void;
  log(line: string): void;
}

interface Segment { gref: number; first: number; last: number }
interface Parsed {
  id: bigint;
  /** The operation the response carries (for an indirect request, its indirect_op). */
  operation: number;
  /** READ, WRITE, FLUSH_DISKCACHE (data then flush), WRITE_BARRIER (drain, data, flush), DISCARD. */
  kind: number;
  sector: number;
  segs: Segment[];
  bytes: number;
  discardSectors: number;
}

/** First-fit allocator of slab pages (a request's data is one contiguous run). */
class SlabPages {
  private readonly used: Uint8Array;
  free: number;
  constructor(readonly pages: number) { this.used = new Uint8Array(pages); this.free = pages; }
  alloc(n: number): number {
    if (n === 0) return 0;
    if (n > this.free) return -1;
    for (let i = 0, run = 0; i < this.pages; i++) {
      run = this.used[i] ? 0 : run + 1;
      if (run === n) { this.used.fill(1, i - n + 1, i + 1); this.free -= n; return i - n + 1; }
    }
    return -1;
  }
  release(at: number, n: number): void { this.used.fill(0, at, at + n); this.free += n; }
}

export class BlkBack {
  private reqCons = 0;
  private rspProdPvt = 0;
  private broken = false;
  private closed = false;
  private inflight = 0;
  private barrier: Parsed | undefined;
  private barrierRunning = false;
  private readonly slab = new SharedArrayBuffer(SLAB_PAGES * PAGE);
  private readonly slabBytes = new Uint8Array(this.slab);
  private readonly slabId: number;
  private readonly pages = new SlabPages(SLAB_PAGES);
  private readonly persistentMaps = new Map<number, { handle: number; bytes: Uint8Array }>();
  private dirty = false;
  readonly stats = { requests: 0, readBytes: 0, writeBytes: 0, flushes: 0, discards: 0, errors: 0, persistentHits: 0 };

  constructor(private readonly ring: BlkifRing, private readonly grants: GrantAccess, private readonly disk: BlkDisk,
    private readonly io: BlockIoThread, private readonly opts: BlkBackOptions) {
    this.slabId = io.addSlab(this.slab);
  }

  /** The frontend notified. */
  onNotify(): void {
    this.consume();
    this.io.doorbell(); // everything this notification brought goes to the I/O thread in one batch
    this.settle();
  }

  /** Stop serving: no further requests are taken; outstanding I/O completes into nothing; grants are unmapped. */
  close(): void {
    this.closed = true;
    for (const m of this.persistentMaps.values()) this.grants.unmap(m.handle);
    this.persistentMaps.clear();
    if (this.inflight === 0) this.io.dropSlab(this.slabId);
  }

  /** Push responses written since the last call and notify the frontend if it asked (RING_PUSH_RESPONSES_AND_CHECK_NOTIFY). */
  settle(): void {
    if (!this.dirty || this.closed) return;
    this.dirty = false;
    const old = this.ring.rspProd, now = this.rspProdPvt;
    this.ring.rspProd = now;
    const event = this.ring.rspEvent;
    if (((now - event) >>> 0) < ((now - old) >>> 0)) this.opts.notify();
  }

  private consume(): void {
    const ring = this.ring;
    while (!this.broken && !this.closed && !this.barrier && !this.barrierRunning) {
      const prod = ring.reqProd;
      if (((prod - this.reqCons) >>> 0) > ring.size) {
        this.broken = true;
        this.opts.log(`vbd: frontend's req_prod ${prod} is more than a ring ahead of ${this.reqCons}; ring no longer served`);
        return;
      }
      while (this.reqCons !== prod) {
        // RING_REQUEST_CONS_OVERFLOW: never take more requests than there are response slots.
        if (((this.reqCons - this.rspProdPvt) >>> 0) >= ring.size) return;
        const req = ring.readRequest(this.reqCons);
        const parsed = this.parse(req);
        if (typeof parsed === 'number') {
          this.reqCons = (this.reqCons + 1) >>> 0;
          // An indirect request is answered with its indirect_op, as blkback's req_operation (blkfront checks it).
          const op = req.getUint8(0);
          this.respond(req.getBigUint64(8, true), op === BLKIF_OP_INDIRECT ? req.getUint8(1) : op, parsed);
          continue;
        }
        if (parsed.kind === BLKIF_OP_WRITE_BARRIER && this.inflight > 0) {
          // Everything before a barrier completes first (blkif.h "feature-barrier"); hold it and take nothing after it.
          this.reqCons = (this.reqCons + 1) >>> 0;
          this.barrier = parsed;
          return;
        }
        const npages = Math.ceil(parsed.bytes / PAGE);
        const at = this.pages.alloc(npages);
        if (at < 0) return; // staging memory full: completions will resume us (req_event left as is)
        this.reqCons = (this.reqCons + 1) >>> 0;
        this.start(parsed, at, npages);
        if (this.barrierRunning) return;
      }
      ring.reqEvent = (this.reqCons + 1) >>> 0; // RING_FINAL_CHECK_FOR_REQUESTS
      if (ring.reqProd === this.reqCons) break;
    }
  }

  /** A request checked against the protocol and the disk, or the BLKIF_RSP_* status to answer at once. */
  private parse(req: DataView): Parsed | number {
    const op = req.getUint8(0);
    const id = req.getBigUint64(8, true);
    const disk = this.disk;
    const sectors = Math.floor(disk.sizeBytes / SECTOR);
    const p: Parsed = { id, operation: op, kind: op, sector: 0, segs: [], bytes: 0, discardSectors: 0 };
    switch (op) {
      case BLKIF_OP_READ: case BLKIF_OP_WRITE: case BLKIF_OP_FLUSH_DISKCACHE: case BLKIF_OP_WRITE_BARRIER: {
        const nseg = req.getUint8(1);
        // Read/write need data; flush and barrier may carry some (blkback: "Bad number of segments").
        if (nseg > BLKIF_MAX_SEGMENTS_PER_REQUEST || (nseg === 0 && (op === BLKIF_OP_READ || op === BLKIF_OP_WRITE))) return this.bad(`${nseg} segments`);
        for (let i = 0; i < nseg; i++) p.segs.push({ gref: req.getUint32(24 + i * 8, true), first: req.getUint8(28 + i * 8), last: req.getUint8(29 + i * 8) });
        p.sector = Number(req.getBigUint64(16, true));
        break;
      }
      case BLKIF_OP_INDIRECT: {
        const indirectOp = req.getUint8(1), nseg = req.getUint16(2, true);
        // xen_blkbk_parse_indirect / dispatch_rw_block_io: only reads and writes, 1..max segments.
        if (indirectOp !== BLKIF_OP_READ && indirectOp !== BLKIF_OP_WRITE) return this.bad(`indirect operation ${indirectOp}`);
        if (nseg === 0 || nseg > MAX_INDIRECT_SEGMENTS) return this.bad(`${nseg} indirect segments`);
        const frames = Math.ceil(nseg / SEGS_PER_INDIRECT_FRAME);
        if (frames > BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST) return this.bad(`${frames} indirect frames`);
        const table = new Uint8Array(nseg * 8);
        const copies: GrantCopySegment[] = [];
        for (let f = 0; f < frames; f++) {
          const len = Math.min(SEGS_PER_INDIRECT_FRAME, nseg - f * SEGS_PER_INDIRECT_FRAME) * 8;
          copies.push({ source: { ref: req.getUint32(28 + f * 4, true), offset: 0 }, dest: { bytes: table, offset: f * PAGE }, len });
        }
        if (this.grants.copy(copies).some((st) => st !== 0)) return this.bad('an indirect frame grant');
        const tv = new DataView(table.buffer);
        for (let i = 0; i < nseg; i++) p.segs.push({ gref: tv.getUint32(i * 8, true), first: tv.getUint8(i * 8 + 4), last: tv.getUint8(i * 8 + 5) });
        p.kind = p.operation = indirectOp;
        p.sector = Number(req.getBigUint64(16, true));
        break;
      }
      case BLKIF_OP_DISCARD: {
        if (!disk.canDiscard) return BLKIF_RSP_EOPNOTSUPP;
        if (disk.readonly) return this.bad('discard on a read-only disk');
        p.sector = Number(req.getBigUint64(16, true));
        p.discardSectors = Number(req.getBigUint64(24, true));
        // dispatch_discard_io: "access beyond end of device" → error.
        if (!Number.isSafeInteger(p.sector + p.discardSectors) || p.sector + p.discardSectors > sectors) return this.bad('discard beyond the end of the disk');
        return p;
      }
      default:
        // dispatch_other_io: anything else is answered EOPNOTSUPP.
        return BLKIF_RSP_EOPNOTSUPP;
    }
    if (p.kind !== BLKIF_OP_READ && disk.readonly) return this.bad('write to a read-only disk');
    for (const s of p.segs) {
      // xen_blkbk_parse_indirect / dispatch_rw_block_io: last_sect >= first_sect, both inside the page.
      if (s.last < s.first || s.last >= PAGE / SECTOR) return this.bad(`segment sectors ${s.first}..${s.last}`);
      p.bytes += (s.last - s.first + 1) * SECTOR;
    }
    // vbd_translate: only a request that moves data is checked against the disk's size (a flush's sector_number is not meaningful).
    if (p.bytes > 0 && (!Number.isSafeInteger(p.sector) || p.sector * SECTOR + p.bytes > sectors * SECTOR)) return this.bad(`operation ${op}: sectors ${p.sector}+${p.bytes / SECTOR} beyond the end of the disk (${sectors})`);
    return p;
  }

  private bad(what: string): number {
    this.stats.errors++;
    this.opts.log(`vbd: bad request (${what}): answered BLKIF_RSP_ERROR`);
    return BLKIF_RSP_ERROR;
  }

  private start(p: Parsed, at: number, npages: number): void {
    this.inflight++;
    if (p.kind === BLKIF_OP_WRITE_BARRIER) this.barrierRunning = true;
    const slabOffset = at * PAGE;
    const finish = (status: number) => {
      this.inflight--;
      this.pages.release(at, npages);
      if (p.kind === BLKIF_OP_WRITE_BARRIER) this.barrierRunning = false;
      if (this.closed) { if (this.inflight === 0) this.io.dropSlab(this.slabId); return; }
      let st = status === 0 ? BLKIF_RSP_OKAY : BLKIF_RSP_ERROR;
      if (status !== 0) this.opts.log(`vbd: I/O at sector ${p.sector} failed (errno ${-status})`);
      if (st === BLKIF_RSP_OKAY && p.kind === BLKIF_OP_READ && !this.scatter(p, slabOffset)) st = BLKIF_RSP_ERROR;
      this.respond(p.id, p.operation, st);
      this.stats.requests++;
      if (this.barrier && this.inflight === 0) {
        const b = this.barrier;
        this.barrier = undefined;
        const n = Math.ceil(b.bytes / PAGE), bat = this.pages.alloc(n);
        if (bat < 0) this.respond(b.id, b.operation, BLKIF_RSP_ERROR); else this.start(b, bat, n);
      }
      this.consume();
      this.io.touch(this);
    };
    const offset = p.sector * SECTOR, disk = this.disk.disk;
    switch (p.kind) {
      case BLKIF_OP_READ:
        this.stats.readBytes += p.bytes;
        this.io.submit(disk, IO_READ, offset, p.bytes, this.slabId, slabOffset, finish);
        return;
      case BLKIF_OP_DISCARD:
        this.stats.discards++;
        this.io.submit(disk, IO_DISCARD, offset, p.discardSectors * SECTOR, this.slabId, 0, finish);
        return;
    }
    // Writes (plain, or the data of a flush/barrier): stage the guest's data first.
    if (p.bytes > 0 && !this.gather(p, slabOffset)) { finish(-14); return; }
    this.stats.writeBytes += p.bytes;
    if (p.kind === BLKIF_OP_WRITE) { this.io.submit(disk, IO_WRITE, offset, p.bytes, this.slabId, slabOffset, finish); return; }
    // FLUSH_DISKCACHE and WRITE_BARRIER: the data (if any), then a flush to stable storage; answered after both.
    this.stats.flushes++;
    const flush = () => this.io.submit(disk, IO_FLUSH, 0, 0, this.slabId, 0, finish);
    if (p.bytes === 0) flush();
    else this.io.submit(disk, IO_WRITE, offset, p.bytes, this.slabId, slabOffset, (st) => (st === 0 ? flush() : finish(st)));
  }

  /** Copy the request's data from the guest's granted pages into the slab. */
  private gather(p: Parsed, slabOffset: number): boolean { return this.transfer(p, slabOffset, false); }
  /** Copy read data from the slab into the guest's granted pages. */
  private scatter(p: Parsed, slabOffset: number): boolean { return this.transfer(p, slabOffset, true); }

  private transfer(p: Parsed, slabOffset: number, toGuest: boolean): boolean {
    const copies: GrantCopySegment[] = [];
    let off = slabOffset;
    for (const s of p.segs) {
      const len = (s.last - s.first + 1) * SECTOR, pageOff = s.first * SECTOR;
      const mapped = this.opts.persistent ? this.persistentPage(s.gref) : undefined;
      if (mapped) {
        if (toGuest) mapped.set(this.slabBytes.subarray(off, off + len), pageOff);
        else this.slabBytes.set(mapped.subarray(pageOff, pageOff + len), off);
      } else {
        const host = { bytes: this.slabBytes, offset: off }, guest = { ref: s.gref, offset: pageOff };
        copies.push(toGuest ? { source: host, dest: guest, len } : { source: guest, dest: host, len });
      }
      off += len;
    }
    return copies.length === 0 || this.grants.copy(copies).every((st) => st === 0);
  }

  /** A persistent grant's page, mapped on first use and kept until the ring goes (blkback's persistent_gnt tree). */
  private persistentPage(gref: number): Uint8Array | undefined {
    const m = this.persistentMaps.get(gref);
    if (m) { this.stats.persistentHits++; return m.bytes; }
    if (this.persistentMaps.size >= MAX_PERSISTENT_GRANTS) return undefined;
    const r = this.grants.map(gref, { readonly: false });
    if (r.status !== 0 || !r.bytes) return undefined; // e.g. granted read-only: fall back to a grant copy
    this.persistentMaps.set(gref, { handle: r.handle, bytes: r.bytes });
    return r.bytes;
  }

  private respond(id: bigint, operation: number, status: number): void {
    this.ring.writeResponse(this.rspProdPvt, id, operation, status);
    this.rspProdPvt = (this.rspProdPvt + 1) >>> 0;
    this.dirty = true;
  }
}
