// src/ring/byte-ring.ts: the console and XenStore byte rings. Offsets against Xen's structs,
// data through both directions, index wraparound at 2^32, and a guest that breaks the ring.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import {
  ByteRing,
  isRingBroken,
  XENCONS_RING_LAYOUT,
  XENSTORE_RING_LAYOUT,
  type ByteRingBroken,
  type ByteRingLayout,
} from '../../src/ring/byte-ring.js';

function page(): Uint8Array {
  return new Uint8Array(new ArrayBuffer(4096));
}

/** Read a u32 index straight from the page, little-endian, as the guest would. */
function u32(p: Uint8Array, off: number): number {
  return new DataView(p.buffer, p.byteOffset).getUint32(off, true);
}

function setU32(p: Uint8Array, off: number, v: number): void {
  new DataView(p.buffer, p.byteOffset).setUint32(off, v >>> 0, true);
}

function bytes(n: number, seed = 0): Uint8Array {
  return Uint8Array.from({ length: n }, (_, i) => (i * 7 + seed) & 0xff);
}

function ok<T>(r: T): Exclude<T, ByteRingBroken> {
  if (isRingBroken(r)) assert.fail(`ring broken: ${JSON.stringify(r)}`);
  return r as Exclude<T, ByteRingBroken>;
}

describe('layouts match Xen', () => {
  it('xenstore_domain_interface: req[1024] @0, rsp[1024] @1024, req_cons/prod @2048/2052, rsp_cons/prod @2056/2060', () => {
    assert.deepEqual(XENSTORE_RING_LAYOUT.output, { offset: 0, size: 1024, consOffset: 2048, prodOffset: 2052 });
    assert.deepEqual(XENSTORE_RING_LAYOUT.input, { offset: 1024, size: 1024, consOffset: 2056, prodOffset: 2060 });
  });
  it('xencons_interface: in[1024] @0, out[2048] @1024, in_cons/prod @3072/3076, out_cons/prod @3080/3084', () => {
    assert.deepEqual(XENCONS_RING_LAYOUT.output, { offset: 1024, size: 2048, consOffset: 3080, prodOffset: 3084 });
    assert.deepEqual(XENCONS_RING_LAYOUT.input, { offset: 0, size: 1024, consOffset: 3072, prodOffset: 3076 });
  });
});

for (const layout of [XENSTORE_RING_LAYOUT, XENCONS_RING_LAYOUT] as ByteRingLayout[]) {
  describe(`${layout.name} ring`, () => {
    it('front → back: bytes land in the output array and the producer index moves', () => {
      const p = page();
      const r = new ByteRing(p, layout);
      assert.equal(ok(r.frontWrite(Uint8Array.of(1, 2, 3))), 3);
      assert.deepEqual(p.subarray(layout.output.offset, layout.output.offset + 3), Uint8Array.of(1, 2, 3));
      assert.equal(u32(p, layout.output.prodOffset), 3);
      assert.equal(ok(r.backPending()), 3);
      assert.deepEqual(ok(r.backRead(2)), Uint8Array.of(1, 2));
      assert.equal(u32(p, layout.output.consOffset), 2);
      assert.deepEqual(ok(r.backRead()), Uint8Array.of(3));
      assert.deepEqual(ok(r.backRead()), new Uint8Array(0));
    });

    it('back → front: replies land in the input array', () => {
      const p = page();
      const r = new ByteRing(p, layout);
      assert.equal(ok(r.backWrite(Uint8Array.of(9, 8))), 2);
      assert.deepEqual(p.subarray(layout.input.offset, layout.input.offset + 2), Uint8Array.of(9, 8));
      assert.equal(u32(p, layout.input.prodOffset), 2);
      assert.deepEqual(ok(r.frontRead()), Uint8Array.of(9, 8));
      assert.equal(u32(p, layout.input.consOffset), 2);
    });

    it('a full ring takes no more; writes report how much fit', () => {
      const r = new ByteRing(page(), layout);
      const size = layout.input.size;
      assert.equal(ok(r.backWrite(bytes(size + 10))), size);
      assert.equal(ok(r.backSpace()), 0);
      assert.equal(ok(r.backWrite(Uint8Array.of(1))), 0);
      assert.deepEqual(ok(r.frontRead(10)), bytes(10));
      assert.equal(ok(r.backWrite(bytes(20, 3))), 10);
      const rest = ok(r.frontRead());
      assert.equal(rest.length, size);
      assert.deepEqual(rest.subarray(0, size - 10), bytes(size).subarray(10));
      assert.deepEqual(rest.subarray(size - 10), bytes(10, 3));
    });

    it('wraps the array and the u32 indices at 2^32', () => {
      const p = page();
      const start = 0xffffffff - 5; // 6 bytes before the index wraps
      for (const l of [layout.output, layout.input]) {
        setU32(p, l.consOffset, start);
        setU32(p, l.prodOffset, start);
      }
      const r = new ByteRing(p, layout);
      let sent = 0;
      let got = 0;
      const all = bytes(5 * layout.output.size + 123, 1);
      // Move the data through in odd-sized steps so copies split at every position.
      while (got < all.length) {
        sent += ok(r.frontWrite(all.subarray(sent, Math.min(all.length, sent + 333))));
        const chunk = ok(r.backRead(201));
        assert.deepEqual(chunk, all.subarray(got, got + chunk.length));
        got += chunk.length;
      }
      assert.equal(u32(p, layout.output.prodOffset), (start + all.length) >>> 0);
      assert.equal(u32(p, layout.output.consOffset), (start + all.length) >>> 0);
      assert.ok(u32(p, layout.output.prodOffset) < start, 'index wrapped');
      // The masked position is (idx & (size - 1)): byte 0 of the stream went to slot start & mask.
      const p2 = page();
      setU32(p2, layout.input.consOffset, 0xfffffffe);
      setU32(p2, layout.input.prodOffset, 0xfffffffe);
      const r2 = new ByteRing(p2, layout);
      ok(r2.backWrite(Uint8Array.of(0xa1, 0xa2, 0xa3, 0xa4)));
      const mask = layout.input.size - 1;
      assert.equal(p2[layout.input.offset + (0xfffffffe & mask)], 0xa1);
      assert.equal(p2[layout.input.offset + (0xffffffff & mask)], 0xa2);
      assert.equal(p2[layout.input.offset + 0], 0xa3);
      assert.equal(p2[layout.input.offset + 1], 0xa4);
      assert.equal(u32(p2, layout.input.prodOffset), 2);
      assert.deepEqual(ok(r2.frontRead()), Uint8Array.of(0xa1, 0xa2, 0xa3, 0xa4));
    });

    it('exactly size bytes outstanding across the wrap is full, not broken', () => {
      const p = page();
      setU32(p, layout.output.consOffset, 0xffffff00);
      setU32(p, layout.output.prodOffset, (0xffffff00 + layout.output.size) >>> 0);
      const r = new ByteRing(p, layout);
      assert.equal(ok(r.backPending()), layout.output.size);
      assert.equal(ok(r.frontSpace()), 0);
    });

    it('a guest producer index more than size ahead breaks the ring, for good', () => {
      const p = page();
      const r = new ByteRing(p, layout);
      ok(r.frontWrite(Uint8Array.of(1)));
      setU32(p, layout.output.prodOffset, layout.output.size + 2); // 1 + size + 1 "waiting"
      const b = r.backRead();
      assert.ok(isRingBroken(b));
      assert.deepEqual(b, { broken: true, pipe: 'output', cons: 0, prod: layout.output.size + 2 });
      assert.equal(u32(p, layout.output.consOffset), 0, 'cons not moved');
      // Even after the guest "fixes" it, and in the other direction too.
      setU32(p, layout.output.prodOffset, 1);
      assert.ok(isRingBroken(r.backRead()));
      assert.ok(isRingBroken(r.backWrite(Uint8Array.of(1))));
      assert.deepEqual(r.broken, b);
    });

    it('a guest consumer index that runs past the producer breaks the ring (backWrite)', () => {
      const p = page();
      const r = new ByteRing(p, layout);
      setU32(p, layout.input.consOffset, 5); // cons ahead of prod 0: prod - cons wraps huge
      const w = r.backWrite(Uint8Array.of(1, 2));
      assert.ok(isRingBroken(w));
      assert.equal(w.pipe, 'input');
      assert.equal(u32(p, layout.input.prodOffset), 0, 'nothing written');
      assert.deepEqual(p.subarray(layout.input.offset, layout.input.offset + 2), Uint8Array.of(0, 0));
    });

    it('odd reads are harmless', () => {
      const r = new ByteRing(page(), layout);
      ok(r.frontWrite(Uint8Array.of(1, 2)));
      assert.equal(ok(r.backRead(0)).length, 0);
      assert.equal(ok(r.backRead(-3)).length, 0);
      assert.equal(ok(r.backRead(Number.NaN)).length, 0);
      assert.deepEqual(ok(r.backRead(1.7)), Uint8Array.of(1));
      assert.equal(ok(r.backPending()), 1);
    });
  });
}

describe('construction', () => {
  it('rejects an unaligned page and layouts that do not fit', () => {
    const buf = new ArrayBuffer(8192);
    assert.throws(() => new ByteRing(new Uint8Array(buf, 2, 4096), XENSTORE_RING_LAYOUT), RangeError);
    assert.throws(() => new ByteRing(new Uint8Array(buf, 0, 2060), XENSTORE_RING_LAYOUT), RangeError);
    assert.throws(
      () => new ByteRing(page(), { ...XENSTORE_RING_LAYOUT, output: { ...XENSTORE_RING_LAYOUT.output, size: 1000 } }),
      RangeError,
    );
    // A page at a 4-aligned offset inside a larger buffer (guest RAM) works.
    const r = new ByteRing(new Uint8Array(buf, 4096, 4096), XENSTORE_RING_LAYOUT);
    assert.equal(ok(r.frontWrite(Uint8Array.of(7))), 1);
    assert.equal(new Uint8Array(buf)[4096], 7);
  });

  it('works over a SharedArrayBuffer (guest RAM shared with vCPU workers)', () => {
    const r = new ByteRing(new Uint8Array(new SharedArrayBuffer(4096)), XENCONS_RING_LAYOUT);
    ok(r.frontWrite(Uint8Array.of(104, 105)));
    assert.deepEqual(ok(r.backRead()), Uint8Array.of(104, 105));
  });
});
