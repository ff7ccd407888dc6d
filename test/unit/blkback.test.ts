// src/backends/vbd (blkback, blkif-ring, dataplane, the I/O thread): a test frontend plays xen-blkfront against the real data plane over a fake guest's memory and grant table, on real image files. Every request kind Linux 6.1's blkfront sends (plain, indirect, persistent grants, multi-page rings, several queues, flush, barrier, discard) and the bad ones a hostile frontend can write.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';

import { GTF_permit_access, GTF_readonly, GTF_reading, GTF_writing } from '../../src/abi/grant_table.js';
import {
  BLKIF_OP_DISCARD, BLKIF_OP_FLUSH_DISKCACHE, BLKIF_OP_INDIRECT, BLKIF_OP_READ, BLKIF_OP_WRITE, BLKIF_OP_WRITE_BARRIER, BLKIF_RSP_EOPNOTSUPP,
  BLKIF_RSP_ERROR, BLKIF_RSP_OKAY,
} from '../../src/abi/io/blkif.js';
import { __RING_SIZE } from '../../src/abi/io/ring.js';
import { VbdDataplane, type VbdAttach } from '../../src/backends/vbd/dataplane.js';
import { parseDiskSpec } from '../../src/backends/vbd/disk-spec.js';
import { Domain } from '../../src/hypervisor/domain.js';
import type { EventChannels } from '../../src/hypervisor/event_channel.js';
import { GrantTable } from '../../src/hypervisor/grant_table.js';
import { GrantAccess } from '../../src/hypervisor/grant_table_backend.js';
import { GuestMemory } from '../../src/memory/guest-memory.js';
import { planMemory } from '../../src/monitor/layout.js';
import { Trace } from '../../src/trace/trace.js';
import { INPUT_BLKIO, InputRingReader, newInputBuffer } from '../../src/vcpu/worker-protocol.js';

const PAGE = 4096, SECTOR = 512, SLOT = 112, HEADER = 64;
const dir = mkdtempSync(join(tmpdir(), 'pvbox-blkback-'));
after(() => rmSync(dir, { recursive: true, force: true }));

interface Response { id: bigint; op: number; status: number }

/** A guest with memory, a grant table and xen-blkfront's side of one disk. */
async function setup(opts: { sizeBytes?: number; readonly?: boolean; order?: number; queues?: number; persistent?: boolean; image?: string; sparse?: boolean } = {}) {
  const plan = planMemory(16 << 20);
  const mem = new GuestMemory(new ArrayBuffer(plan.totalBytes));
  const log: string[] = [];
  const d = new Domain(5, 'blkback-test', mem, plan, new Trace(false, () => {}), { onShutdown: () => assert.fail('no shutdown'), onConsoleIo: () => {} });
  const gt = new GrantTable(d);
  gt.nrFrames = 8;
  const grants = new GrantAccess(gt);
  const notified: number[] = [];
  const handlers = new Map<number, () => void>();
  const evtchn = {
    connectHost: (port: number, fn: () => void) => { if (handlers.has(port)) return -1; handlers.set(port, fn); return 0; },
    disconnectHost: (port: number) => { handlers.delete(port); },
    setPending: (port: number) => { notified.push(port); },
  } as unknown as EventChannels;

  const image = opts.image ?? join(dir, `disk-${randomBytes(4).toString('hex')}.img`);
  if (!opts.image) {
    const size = opts.sizeBytes ?? 4 << 20;
    if (opts.sparse) execFileSync('truncate', ['-s', String(size), image]); else writeFileSync(image, randomBytes(size));
  }
  const spec = parseDiskSpec(`format=raw, vdev=xvda, access=${opts.readonly ? 'ro' : 'rw'}, target=${image}`);
  const input = newInputBuffer();
  const reader = new InputRingReader(input);
  const dp = await VbdDataplane.open([spec], input, grants, evtchn, (_devid, l) => log.push(l));

  // Frames: the guest's RAM from frame 0x100 on is handed out by `frame()`; grant refs from 8 on.
  let nextFrame = 0x100, nextRef = 8;
  const frame = () => nextFrame++;
  const grant = (f: number, readonly = false) => {
    const ref = nextRef++;
    const e = gt.entryGpa(ref);
    mem.write32(e + 4, f); mem.write16(e + 2, 0); mem.write16(e, GTF_permit_access | (readonly ? GTF_readonly : 0));
    return ref;
  };
  const flags = (ref: number) => mem.read16(gt.entryGpa(ref));

  const order = opts.order ?? 0, nq = opts.queues ?? 1;
  const rings = Array.from({ length: nq }, (_, q) => {
    const frames = Array.from({ length: 1 << order }, frame);
    return { frames, refs: frames.map((f) => grant(f)), port: 10 + q, reqProd: 0, rspCons: 0, size: __RING_SIZE(SLOT, (1 << order) * PAGE) };
  });
  // Ring bytes are addressed across the (non-contiguous) ring frames.
  const ringAddr = (q: number, off: number) => rings[q]!.frames[off >> 12]! * PAGE + (off & (PAGE - 1));
  const ringWrite = (q: number, off: number, bytes: Uint8Array) => { for (let i = 0; i < bytes.length; i++) mem.write8(ringAddr(q, off + i), bytes[i]!); };
  const ringRead = (q: number, off: number, n: number) => Uint8Array.from({ length: n }, (_, i) => mem.read8(ringAddr(q, off + i)));
  const idx = (q: number, i: number) => ringAddr(q, i * 4);
  // SHARED_RING_INIT: req_event = rsp_event = 1.
  for (let q = 0; q < nq; q++) { mem.atomicStore32(idx(q, 1), 1); mem.atomicStore32(idx(q, 3), 1); }

  const attach: VbdAttach = { devid: spec.devid, persistent: opts.persistent ?? false, queues: rings.map((r) => ({ ringRefs: r.refs, port: r.port })) };
  const err = dp.attach(attach);
  assert.equal(err, undefined);

  const f = {
    mem, grants, dp, log, notified, image, frame, grant, flags, rings,
    /** Put a raw 112-byte request into the next slot of queue q (not yet published). */
    put(q: number, req: Uint8Array): void {
      const r = rings[q]!;
      ringWrite(q, HEADER + (r.reqProd % r.size) * SLOT, req);
      r.reqProd++;
    },
    publish(q = 0, prod?: number): void {
      mem.atomicStore32(idx(q, 0), prod ?? rings[q]!.reqProd);
      handlers.get(rings[q]!.port)?.();
    },
    /** Run the domain thread's side until `n` responses are on queue q. */
    async responses(q: number, n: number): Promise<Response[]> {
      const out: Response[] = [];
      const deadline = Date.now() + 10_000;
      while (out.length < n) {
        const prod = mem.atomicLoad32(idx(q, 2));
        const r = rings[q]!;
        while (r.rspCons !== prod && out.length < n) {
          const b = ringRead(q, HEADER + (r.rspCons % r.size) * SLOT, 16);
          const dv = new DataView(b.buffer);
          out.push({ id: dv.getBigUint64(0, true), op: dv.getUint8(8), status: dv.getInt16(10, true) });
          r.rspCons++;
        }
        mem.atomicStore32(idx(q, 3), r.rspCons + 1); // RING_FINAL_CHECK_FOR_RESPONSES
        if (out.length >= n) break;
        if (Date.now() > deadline) assert.fail(`only ${out.length} of ${n} responses`);
        reader.wait(20);
        for (const rec of reader.take()) if (rec.tag === INPUT_BLKIO) dp.onCompletions(rec.bytes);
        await new Promise((res) => setImmediate(res));
      }
      return out;
    },
    async close(): Promise<void> { await dp.shutdown(); },
  };
  return f;
}

/** struct blkif_request: op, nr_segments, handle, id, sector, segments (gref, first, last). */
function rw(op: number, id: number, sector: number, segs: { ref: number; first?: number; last?: number }[]): Uint8Array {
  const b = new DataView(new ArrayBuffer(SLOT));
  b.setUint8(0, op); b.setUint8(1, segs.length); b.setUint16(2, 0x100, true);
  b.setBigUint64(8, BigInt(id), true); b.setBigUint64(16, BigInt(sector), true);
  segs.forEach((s, i) => { b.setUint32(24 + i * 8, s.ref, true); b.setUint8(28 + i * 8, s.first ?? 0); b.setUint8(29 + i * 8, s.last ?? 7); });
  return new Uint8Array(b.buffer);
}

/** struct blkif_request_indirect. */
function indirect(op: number, id: number, sector: number, nseg: number, tableRefs: number[]): Uint8Array {
  const b = new DataView(new ArrayBuffer(SLOT));
  b.setUint8(0, BLKIF_OP_INDIRECT); b.setUint8(1, op); b.setUint16(2, nseg, true);
  b.setBigUint64(8, BigInt(id), true); b.setBigUint64(16, BigInt(sector), true); b.setUint16(24, 0x100, true);
  tableRefs.forEach((r, i) => b.setUint32(28 + i * 4, r, true));
  return new Uint8Array(b.buffer);
}

function discard(id: number, sector: number, nr: number): Uint8Array {
  const b = new DataView(new ArrayBuffer(SLOT));
  b.setUint8(0, BLKIF_OP_DISCARD); b.setBigUint64(8, BigInt(id), true); b.setBigUint64(16, BigInt(sector), true); b.setBigUint64(24, BigInt(nr), true);
  return new Uint8Array(b.buffer);
}

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const fileBytes = (path: string, off: number, n: number) => readFileSync(path).subarray(off, off + n);

describe('blkback: reads and writes', () => {
  it('a one-segment write lands in the image; a read returns what the image holds; responses echo id and operation', async () => {
    const f = await setup();
    try {
      const data = randomBytes(PAGE);
      const fw = f.frame(); f.mem.copyIn(fw * PAGE, data);
      f.put(0, rw(BLKIF_OP_WRITE, 1, 16, [{ ref: f.grant(fw, true) }]));
      f.publish();
      assert.deepEqual(await f.responses(0, 1), [{ id: 1n, op: BLKIF_OP_WRITE, status: BLKIF_RSP_OKAY }]);
      assert.equal(sha(fileBytes(f.image, 16 * SECTOR, PAGE)), sha(data));
      // A partial-page read (sectors 2..5) of a region the test knows.
      const fr = f.frame();
      f.put(0, rw(BLKIF_OP_READ, 2, 100, [{ ref: f.grant(fr), first: 2, last: 5 }]));
      f.publish();
      assert.deepEqual(await f.responses(0, 1), [{ id: 2n, op: BLKIF_OP_READ, status: BLKIF_RSP_OKAY }]);
      assert.equal(sha(f.mem.bytes(fr * PAGE + 2 * SECTOR, 4 * SECTOR)), sha(fileBytes(f.image, 100 * SECTOR, 4 * SECTOR)));
      assert.equal(f.notified.length > 0, true);
    } finally { await f.close(); }
  });

  it('eleven segments, a full ring of requests in flight at once, all answered', async () => {
    const f = await setup({ sizeBytes: 8 << 20 });
    try {
      const size = f.rings[0]!.size;
      const expect = new Map<number, string>();
      for (let i = 0; i < size; i++) {
        const segs = Array.from({ length: 11 }, () => { const fr = f.frame(); f.mem.copyIn(fr * PAGE, randomBytes(PAGE)); return fr; });
        const all = Buffer.concat(segs.map((fr) => f.mem.bytes(fr * PAGE, PAGE)));
        expect.set(i, sha(all));
        f.put(0, rw(BLKIF_OP_WRITE, i, i * 88, segs.map((fr) => ({ ref: f.grant(fr, true) }))));
      }
      f.publish();
      const rsp = await f.responses(0, size);
      assert.equal(rsp.length, size);
      assert.ok(rsp.every((r) => r.status === BLKIF_RSP_OKAY));
      for (const [i, h] of expect) assert.equal(sha(fileBytes(f.image, i * 88 * SECTOR, 11 * PAGE)), h, `request ${i}`);
    } finally { await f.close(); }
  });

  it('indirect descriptors: 200 segments in two indirect frames, written and read back', async () => {
    const f = await setup({ sizeBytes: 8 << 20 });
    try {
      const nseg = 200;
      const frames = Array.from({ length: nseg }, () => { const fr = f.frame(); f.mem.copyIn(fr * PAGE, randomBytes(PAGE)); return fr; });
      const want = sha(Buffer.concat(frames.map((fr) => f.mem.bytes(fr * PAGE, PAGE))));
      const table = (fs: number[], readonly: boolean) => {
        const t0 = f.frame(), t1 = f.frame();
        fs.forEach((fr, i) => {
          const at = (i < 512 ? t0 : t1) * PAGE + (i % 512) * 8;
          f.mem.write32(at, f.grant(fr, readonly)); f.mem.write8(at + 4, 0); f.mem.write8(at + 5, 7);
        });
        return [f.grant(t0, true), f.grant(t1, true)];
      };
      f.put(0, indirect(BLKIF_OP_WRITE, 7, 2048, nseg, table(frames, true).slice(0, 1)));
      f.publish();
      assert.deepEqual(await f.responses(0, 1), [{ id: 7n, op: BLKIF_OP_WRITE, status: BLKIF_RSP_OKAY }]);
      assert.equal(sha(fileBytes(f.image, 2048 * SECTOR, nseg * PAGE)), want);
      const back = Array.from({ length: nseg }, () => f.frame());
      f.put(0, indirect(BLKIF_OP_READ, 8, 2048, nseg, table(back, false).slice(0, 1)));
      f.publish();
      assert.deepEqual(await f.responses(0, 1), [{ id: 8n, op: BLKIF_OP_READ, status: BLKIF_RSP_OKAY }]);
      assert.equal(sha(Buffer.concat(back.map((fr) => f.mem.bytes(fr * PAGE, PAGE)))), want);
    } finally { await f.close(); }
  });

  it('persistent grants: pages stay mapped (GTF_reading|GTF_writing) and are reused; detaching unmaps them', async () => {
    const f = await setup({ persistent: true });
    try {
      const fr = f.frame(), ref = f.grant(fr);
      for (let i = 0; i < 5; i++) {
        const data = randomBytes(PAGE);
        f.mem.copyIn(fr * PAGE, data);
        f.put(0, rw(BLKIF_OP_WRITE, i, i * 8, [{ ref }]));
        f.publish();
        assert.equal((await f.responses(0, 1))[0]!.status, BLKIF_RSP_OKAY);
        assert.equal(sha(fileBytes(f.image, i * 8 * SECTOR, PAGE)), sha(data));
      }
      assert.equal(f.flags(ref) & (GTF_reading | GTF_writing), GTF_reading | GTF_writing);
      f.dp.detach(0xca00);
      assert.equal(f.flags(ref) & (GTF_reading | GTF_writing), 0);
    } finally { await f.close(); }
  });

  it('a four-page ring (ring-page-order 2) serves more requests than one page holds; slots straddle pages', async () => {
    const f = await setup({ order: 2 });
    try {
      const size = f.rings[0]!.size;
      assert.equal(size, 128);
      for (let round = 0; round < 2; round++) {
        for (let i = 0; i < size; i++) {
          const fr = f.frame(); f.mem.write32(fr * PAGE, i);
          f.put(0, rw(BLKIF_OP_WRITE, i, i * 8, [{ ref: f.grant(fr, true), last: 0 }]));
        }
        f.publish();
        const rsp = await f.responses(0, size);
        assert.deepEqual(rsp.map((r) => Number(r.id)).sort((a, b) => a - b), Array.from({ length: size }, (_, i) => i));
        assert.ok(rsp.every((r) => r.status === BLKIF_RSP_OKAY));
      }
      const img = readFileSync(f.image);
      for (let i = 0; i < size; i++) assert.equal(img.readUInt32LE(i * 8 * SECTOR), i);
    } finally { await f.close(); }
  });

  it('two queues: each ring is served and notified on its own event channel', async () => {
    const f = await setup({ queues: 2 });
    try {
      for (const q of [0, 1]) {
        const fr = f.frame(); f.mem.write32(fr * PAGE, 0xabc0 + q);
        f.put(q, rw(BLKIF_OP_WRITE, q, q * 8, [{ ref: f.grant(fr, true) }]));
        f.publish(q);
        assert.deepEqual(await f.responses(q, 1), [{ id: BigInt(q), op: BLKIF_OP_WRITE, status: BLKIF_RSP_OKAY }]);
      }
      assert.ok(f.notified.includes(10) && f.notified.includes(11));
      const img = readFileSync(f.image);
      assert.equal(img.readUInt32LE(0), 0xabc0);
      assert.equal(img.readUInt32LE(8 * SECTOR), 0xabc1);
    } finally { await f.close(); }
  });
});

describe('blkback: flush, barrier, discard', () => {
  it('FLUSH_DISKCACHE with and without data, WRITE_BARRIER after writes in flight: all complete, data lands', async () => {
    const f = await setup();
    try {
      const a = f.frame(), b = f.frame();
      f.mem.fill(a * PAGE, PAGE, 0x11); f.mem.fill(b * PAGE, PAGE, 0x22);
      f.put(0, rw(BLKIF_OP_WRITE, 1, 0, [{ ref: f.grant(a, true) }]));
      f.put(0, rw(BLKIF_OP_WRITE_BARRIER, 2, 8, [{ ref: f.grant(b, true) }]));
      // A flush without data: its sector_number means nothing (blkfront leaves it as it was) and is not checked.
      f.put(0, rw(BLKIF_OP_FLUSH_DISKCACHE, 3, 0xffffffffff, []));
      f.put(0, rw(BLKIF_OP_FLUSH_DISKCACHE, 4, 16, [{ ref: f.grant(a, true) }]));
      f.publish();
      const rsp = await f.responses(0, 4);
      assert.deepEqual(rsp.map((r) => r.status), [0, 0, 0, 0]);
      // The barrier is answered after the write before it.
      assert.ok(rsp.findIndex((r) => r.id === 1n) < rsp.findIndex((r) => r.id === 2n));
      const img = readFileSync(f.image);
      assert.equal(img[0], 0x11); assert.equal(img[8 * SECTOR], 0x22); assert.equal(img[16 * SECTOR], 0x11);
    } finally { await f.close(); }
  });

  it('discard punches a hole in a sparse raw image (allocated blocks shrink, the range reads as zeros)', async () => {
    const f = await setup({ sizeBytes: 4 << 20, sparse: true });
    try {
      const frames = Array.from({ length: 11 }, () => { const fr = f.frame(); f.mem.fill(fr * PAGE, PAGE, 0x5a); return fr; });
      for (let i = 0; i < 16; i++) f.put(0, rw(BLKIF_OP_WRITE, i, i * 88, frames.map((fr) => ({ ref: f.grant(fr, true) }))));
      f.publish();
      await f.responses(0, 16);
      const before = statSync(f.image).blocks;
      f.put(0, discard(100, 0, 16 * 88));
      f.publish();
      assert.deepEqual(await f.responses(0, 1), [{ id: 100n, op: BLKIF_OP_DISCARD, status: BLKIF_RSP_OKAY }]);
      const afterBlocks = statSync(f.image).blocks;
      assert.ok(afterBlocks < before / 4, `blocks ${before} → ${afterBlocks}`);
      assert.ok(fileBytes(f.image, 0, 16 * 88 * SECTOR).every((x) => x === 0));
    } finally { await f.close(); }
  });
});

describe('blkback: bad requests get an error and the ring keeps working', () => {
  it('each malformed request → its error status; a good request after them succeeds', async () => {
    const f = await setup({ sizeBytes: 1 << 20 });
    try {
      const fr = f.frame(), ref = f.grant(fr);
      const sectors = (1 << 20) / SECTOR;
      const cases: [string, Uint8Array, number][] = [
        ['read past the end', rw(BLKIF_OP_READ, 1, sectors - 4, [{ ref }]), BLKIF_RSP_ERROR],
        ['sector near 2^64', rw(BLKIF_OP_READ, 2, 0, [{ ref }]).map((x, i) => (i >= 16 && i < 24 ? 0xff : x)), BLKIF_RSP_ERROR],
        ['first_sect > last_sect', rw(BLKIF_OP_READ, 3, 0, [{ ref, first: 5, last: 2 }]), BLKIF_RSP_ERROR],
        ['last_sect past the page', rw(BLKIF_OP_READ, 4, 0, [{ ref, first: 0, last: 8 }]), BLKIF_RSP_ERROR],
        ['no segments', rw(BLKIF_OP_READ, 5, 0, []), BLKIF_RSP_ERROR],
        ['12 segments', (() => { const r = rw(BLKIF_OP_READ, 6, 0, [{ ref }]); r[1] = 12; return r; })(), BLKIF_RSP_ERROR],
        ['bad grant ref', rw(BLKIF_OP_READ, 7, 0, [{ ref: 60000 }]), BLKIF_RSP_ERROR],
        ['write into a read-only grant', rw(BLKIF_OP_READ, 8, 0, [{ ref: f.grant(f.frame(), true) }]), BLKIF_RSP_ERROR],
        ['unknown operation', (() => { const r = rw(BLKIF_OP_READ, 9, 0, [{ ref }]); r[0] = 0x42; return r; })(), BLKIF_RSP_EOPNOTSUPP],
        ['indirect with 300 segments', indirect(BLKIF_OP_READ, 10, 0, 300, [ref]), BLKIF_RSP_ERROR],
        ['indirect flush', indirect(BLKIF_OP_FLUSH_DISKCACHE, 11, 0, 1, [ref]), BLKIF_RSP_ERROR],
        ['indirect table grant bad', indirect(BLKIF_OP_READ, 12, 0, 1, [60001]), BLKIF_RSP_ERROR],
        ['discard past the end', discard(13, sectors - 1, 2), BLKIF_RSP_ERROR],
      ];
      for (const [, req] of cases) f.put(0, req);
      f.publish();
      const rsp = await f.responses(0, cases.length);
      const byId = new Map(rsp.map((r) => [r.id, r]));
      cases.forEach(([what, req, status]) => {
        const r = byId.get(new DataView(req.buffer).getBigUint64(8, true));
        assert.equal(r?.status, status, what);
        // Indirect requests are answered with their indirect_op (blkfront refuses anything else).
        assert.equal(r?.op, req[0] === BLKIF_OP_INDIRECT ? req[1] : req[0], what);
      });
      f.put(0, rw(BLKIF_OP_READ, 99, 0, [{ ref }]));
      f.publish();
      assert.deepEqual(await f.responses(0, 1), [{ id: 99n, op: BLKIF_OP_READ, status: BLKIF_RSP_OKAY }]);
    } finally { await f.close(); }
  });

  it('a read-only disk answers writes, flushes and discards with an error and still serves reads', async () => {
    const f = await setup({ readonly: true });
    try {
      const before = sha(readFileSync(f.image));
      const fr = f.frame(), ref = f.grant(fr);
      f.put(0, rw(BLKIF_OP_WRITE, 1, 0, [{ ref }]));
      f.put(0, rw(BLKIF_OP_FLUSH_DISKCACHE, 2, 0, []));
      f.put(0, discard(3, 0, 8));
      f.put(0, rw(BLKIF_OP_READ, 4, 0, [{ ref }]));
      f.publish();
      const st = new Map((await f.responses(0, 4)).map((r) => [r.id, r.status]));
      assert.equal(st.get(1n), BLKIF_RSP_ERROR);
      assert.equal(st.get(2n), BLKIF_RSP_ERROR);
      assert.notEqual(st.get(3n), BLKIF_RSP_OKAY);
      assert.equal(st.get(4n), BLKIF_RSP_OKAY);
      assert.equal(sha(readFileSync(f.image)), before);
    } finally { await f.close(); }
  });

  it('a req_prod more than a ring ahead stops serving that ring, without a crash', async () => {
    const f = await setup();
    try {
      f.publish(0, 1000);
      assert.ok(f.log.some((l) => /more than a ring ahead/.test(l)));
    } finally { await f.close(); }
  });
});
