// src/hypervisor/grant_table_backend.ts: Domain-0 backends mapping and copying a guest's v1 grants. Every status is
// the one Xen's xen/common/grant_table.c (xen-project/xen c447b7308b13) gives, the GTF_reading/GTF_writing bits
// follow its pin counts, a guest racing the flags cannot livelock the backend, and no entry raises a host exception.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Worker } from 'node:worker_threads';

import {
  GNTST_bad_copy_arg, GNTST_bad_gntref, GNTST_bad_handle, GNTST_bad_page, GNTST_general_error, GNTST_no_space, GNTST_okay,
  GTF_PCD, GTF_PWT, GTF_accept_transfer, GTF_invalid, GTF_permit_access, GTF_readonly, GTF_reading, GTF_sub_page,
  GTF_transitive, GTF_writing,
} from '../../src/abi/grant_table.js';
import { Domain } from '../../src/hypervisor/domain.js';
import { GrantTable } from '../../src/hypervisor/grant_table.js';
import {
  GNTPIN_COUNTER_LIMIT, GrantAccess, SET_STATUS_TRIES, type GrantAccessOptions, type GrantMapResult,
} from '../../src/hypervisor/grant_table_backend.js';
import { PageTypes, PGT_l1 } from '../../src/hypervisor/mm.js';
import { GuestMemory } from '../../src/memory/guest-memory.js';
import { planMemory } from '../../src/monitor/layout.js';
import { Trace } from '../../src/trace/trace.js';

const PAGE = 4096;
const GUEST = 3;
/** Frames of guest RAM the tests grant. */
const F1 = 0x40, F2 = 0x41, F3 = 0x42;
const ACCESS = GTF_reading | GTF_writing;

/** Guest memory whose header cmpxchg and page views the tests can watch or race. */
class WatchedMemory extends GuestMemory {
  cmpxchgs = 0;
  /** Runs just before each cmpxchg: the guest writing the entry between the backend's read and its cmpxchg. */
  race: ((gpa: number) => void) | undefined;
  /** Runs when a page view is taken (the copy is about to touch guest memory). */
  onBytes: ((gpa: number) => void) | undefined;
  override atomicCmpxchg32(gpa: number, expected: number, v: number): number {
    this.cmpxchgs++;
    this.race?.(gpa);
    return super.atomicCmpxchg32(gpa, expected, v);
  }
  override bytes(gpa: number, len: number): Uint8Array {
    this.onBytes?.(gpa);
    return super.bytes(gpa, len);
  }
}

function setup(opts: GrantAccessOptions & { buffer?: ArrayBuffer } = {}) {
  const plan = planMemory(2 << 20);
  const mem = new WatchedMemory(opts.buffer ?? new ArrayBuffer(plan.totalBytes));
  const log: string[] = [];
  const d = new Domain(GUEST, 'gnttab-backend-test', mem, plan, new Trace(true, (l) => log.push(l)), {
    onShutdown: () => assert.fail('no shutdown expected'),
    onConsoleIo: () => {},
  });
  const gt = new GrantTable(d);
  const ga = new GrantAccess(gt, opts);
  const hdr = (ref: number) => gt.entryGpa(ref);
  const guest = {
    /** gnttab_grant_foreign_access_ref_v1: frame and domid first, then the flags. */
    grant(ref: number, frame: number, o: { domid?: number; readonly?: boolean; type?: number; extra?: number } = {}): void {
      mem.write32(hdr(ref) + 4, frame);
      mem.write16(hdr(ref) + 2, o.domid ?? 0);
      mem.write16(hdr(ref), (o.type ?? GTF_permit_access) | (o.readonly ? GTF_readonly : 0) | (o.extra ?? 0));
    },
    flags: (ref: number): number => mem.read16(hdr(ref)),
    domid: (ref: number): number => mem.read16(hdr(ref) + 2),
    frame: (ref: number): number => mem.read32(hdr(ref) + 4),
    /** gnttab_end_foreign_access_ref_v1: zero the flags unless the grantee is reading or writing. */
    endForeignAccess(ref: number): boolean {
      let word = mem.atomicLoad32(hdr(ref));
      for (;;) {
        if (word & ACCESS) return false;
        const prev = mem.atomicCmpxchg32(hdr(ref), word, word & 0xffff0000);
        if (prev === word) return true;
        word = prev;
      }
    },
    page: (frame: number): Uint8Array => mem.u8.subarray(frame * PAGE, (frame + 1) * PAGE),
  };
  return { plan, mem, d, gt, ga, log, guest };
}

function ok(r: GrantMapResult): Extract<GrantMapResult, { status: 0 }> {
  if (r.status !== GNTST_okay) assert.fail(`map failed with GNTST ${r.status}`);
  return r;
}

const pattern = (n: number, seed: number): Uint8Array => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff);

describe('map and unmap (map_grant_ref, unmap_common)', () => {
  it('grant → map → the view aliases the guest page → unmap clears GTF_reading/GTF_writing', () => {
    const { ga, guest, mem } = setup();
    guest.grant(10, F1);
    const m = ok(ga.map(10, { readonly: false }));
    assert.equal(m.frame, F1);
    assert.equal(m.bytes.length, PAGE);
    assert.equal(guest.flags(10), GTF_permit_access | GTF_reading | GTF_writing);
    // Both ways: the backend's writes land in guest RAM, the guest's writes show in the view.
    m.bytes[0] = 0xab; m.bytes[PAGE - 1] = 0xcd;
    assert.equal(mem.read8(F1 * PAGE), 0xab);
    assert.equal(mem.read8(F1 * PAGE + PAGE - 1), 0xcd);
    mem.write8(F1 * PAGE + 100, 0x5a);
    assert.equal(m.bytes[100], 0x5a);
    assert.equal(ga.unmap(m.handle), GNTST_okay);
    assert.equal(guest.flags(10), GTF_permit_access);
    assert.equal(guest.domid(10), 0);
    assert.equal(guest.frame(10), F1);
    assert.equal(ga.mappings, 0);
  });

  it('a read-only map sets GTF_reading only', () => {
    const { ga, guest } = setup();
    guest.grant(11, F1);
    const m = ok(ga.map(11, { readonly: true }));
    assert.equal(guest.flags(11), GTF_permit_access | GTF_reading);
    ga.unmap(m.handle);
    assert.equal(guest.flags(11), GTF_permit_access);
  });

  it('a GTF_readonly grant refuses a writable map with GNTST_general_error (_set_status_v1 "write-pin a r/o grant") and allows a read-only one', () => {
    const { ga, guest } = setup();
    guest.grant(12, F1, { readonly: true });
    assert.equal(ga.map(12, { readonly: false }).status, GNTST_general_error);
    assert.equal(guest.flags(12), GTF_permit_access | GTF_readonly, 'a refused map leaves no flag behind');
    const m = ok(ga.map(12, { readonly: true }));
    assert.equal(guest.flags(12), GTF_permit_access | GTF_readonly | GTF_reading);
    // Pinned read-only: a writable map still goes through _set_status and is still refused.
    assert.equal(ga.map(12, { readonly: false }).status, GNTST_general_error);
    assert.equal(guest.flags(12), GTF_permit_access | GTF_readonly | GTF_reading);
    ga.unmap(m.handle);
    assert.equal(guest.flags(12), GTF_permit_access | GTF_readonly);
  });

  it('an entry granted to another domain is GNTST_general_error ("Bad flags or dom"), for maps and copies', () => {
    const { ga, guest } = setup();
    guest.grant(13, F1, { domid: 7 });
    assert.equal(ga.map(13, { readonly: true }).status, GNTST_general_error);
    assert.deepEqual(ga.copy([{ source: { ref: 13, offset: 0 }, dest: { bytes: new Uint8Array(8), offset: 0 }, len: 8 }]), [GNTST_general_error]);
    assert.equal(guest.flags(13), GTF_permit_access);
    // The same entry granted to domain 7 is good for a backend running as domain 7.
    const { ga: ga7, guest: guest7 } = setup({ backendDomid: 7 });
    guest7.grant(13, F1, { domid: 7 });
    ok(ga7.map(13, { readonly: true }));
  });

  it('a ref beyond the table is GNTST_bad_gntref; growing the table makes it valid', () => {
    const { ga, gt, guest } = setup();
    assert.equal(gt.nrEntries, 512);
    for (const ref of [512, 513, 0x7fffffff, 0xffffffff]) {
      assert.equal(ga.map(ref, { readonly: true }).status, GNTST_bad_gntref, `ref ${ref}`);
      assert.deepEqual(ga.copy([{ source: { ref, offset: 0 }, dest: { bytes: new Uint8Array(4), offset: 0 }, len: 4 }]), [GNTST_bad_gntref]);
      assert.deepEqual(ga.copy([{ source: { bytes: new Uint8Array(4), offset: 0 }, dest: { ref, offset: 0 }, len: 4 }]), [GNTST_bad_gntref]);
    }
    gt.nrFrames = 2; // GNTTABOP_setup_table with nr_frames 2
    guest.grant(512, F1);
    ok(ga.map(512, { readonly: true }));
  });

  it('an entry whose type is not GTF_permit_access is GNTST_general_error', () => {
    const { ga, guest } = setup();
    for (const type of [GTF_invalid, GTF_accept_transfer, GTF_transitive]) {
      guest.grant(14, F1, { type });
      assert.equal(ga.map(14, { readonly: true }).status, GNTST_general_error, `type ${type}`);
      assert.equal(ga.map(14, { readonly: false }).status, GNTST_general_error, `type ${type}`);
      assert.deepEqual(ga.copy([{ source: { ref: 14, offset: 0 }, dest: { bytes: new Uint8Array(4), offset: 0 }, len: 4 }]), [GNTST_general_error]);
      assert.equal(guest.flags(14), type);
    }
  });

  it('GTF_sub_page makes a v1 entry unmappable (mapflag adds it to the mask) but still copyable', () => {
    const { ga, guest } = setup();
    guest.grant(15, F1, { extra: GTF_sub_page });
    guest.page(F1).set(pattern(16, 1));
    assert.equal(ga.map(15, { readonly: true }).status, GNTST_general_error);
    const out = new Uint8Array(16);
    assert.deepEqual(ga.copy([{ source: { ref: 15, offset: 0 }, dest: { bytes: out, offset: 0 }, len: 16 }]), [GNTST_okay]);
    assert.deepEqual(out, pattern(16, 1));
    assert.equal(guest.flags(15), GTF_permit_access | GTF_sub_page);
  });

  it('a frame that is not the guest\'s RAM is GNTST_bad_page (get_paged_frame), and the flags set first are cleared again', () => {
    const { ga, guest, d, plan, gt } = setup();
    const notRam = [plan.nrPages, plan.hvBase / PAGE, gt.frameMfn(0), plan.m2pBase / PAGE, 0xffffffff];
    for (const frame of notRam) {
      guest.grant(16, frame);
      assert.equal(ga.map(16, { readonly: false }).status, GNTST_bad_page, `frame ${frame.toString(16)}`);
      assert.equal(guest.flags(16), GTF_permit_access);
      assert.deepEqual(ga.copy([{ source: { bytes: new Uint8Array(4), offset: 0 }, dest: { ref: 16, offset: 0 }, len: 4 }]), [GNTST_bad_page]);
      assert.equal(guest.flags(16), GTF_permit_access);
    }
    // A ballooned-out frame (XENMEM_decrease_reservation) no longer belongs to the guest.
    d.releasedFrames.add(F2);
    guest.grant(17, F2);
    assert.equal(ga.map(17, { readonly: true }).status, GNTST_bad_page);
    assert.equal(guest.flags(17), GTF_permit_access);
    d.releasedFrames.delete(F2);
    ok(ga.map(17, { readonly: true }));
  });

  it('a revoked grant is refused for new maps and copies', () => {
    const { ga, guest } = setup();
    guest.grant(18, F1);
    const m = ok(ga.map(18, { readonly: false }));
    ga.unmap(m.handle);
    assert.equal(guest.endForeignAccess(18), true);
    assert.equal(guest.flags(18), 0);
    assert.equal(ga.map(18, { readonly: true }).status, GNTST_general_error);
    assert.equal(ga.map(18, { readonly: false }).status, GNTST_general_error);
    assert.deepEqual(ga.copy([
      { source: { ref: 18, offset: 0 }, dest: { bytes: new Uint8Array(4), offset: 0 }, len: 4 },
      { source: { bytes: new Uint8Array(4), offset: 0 }, dest: { ref: 18, offset: 0 }, len: 4 },
    ]), [GNTST_general_error, GNTST_general_error]);
    assert.equal(guest.flags(18), 0, 'nothing set on a revoked entry');
  });

  it('the guest cannot revoke while a mapping is live: the flags stay set until the last unmap', () => {
    const { ga, guest } = setup();
    guest.grant(19, F1);
    const m = ok(ga.map(19, { readonly: false }));
    assert.equal(guest.endForeignAccess(19), false);
    assert.equal(guest.flags(19), GTF_permit_access | GTF_reading | GTF_writing);
    assert.equal(guest.frame(19), F1);
    ga.unmap(m.handle);
    assert.equal(guest.endForeignAccess(19), true);
  });

  it('unmapping twice is GNTST_bad_handle and leaves the other mappings of the ref alone; unknown handles likewise', () => {
    const { ga, guest } = setup();
    guest.grant(20, F1);
    const a = ok(ga.map(20, { readonly: false }));
    const b = ok(ga.map(20, { readonly: false }));
    assert.notEqual(a.handle, b.handle);
    assert.equal(ga.unmap(a.handle), GNTST_okay);
    assert.equal(ga.unmap(a.handle), GNTST_bad_handle);
    assert.equal(ga.unmap(a.handle), GNTST_bad_handle);
    assert.equal(guest.flags(20), GTF_permit_access | ACCESS, 'b still holds the entry');
    for (const h of [-1, 1.5, NaN, 0xffffffff, 12345]) assert.equal(ga.unmap(h), GNTST_bad_handle);
    assert.equal(ga.unmap(b.handle), GNTST_okay);
    assert.equal(guest.flags(20), GTF_permit_access);
    assert.equal(ga.unmap(b.handle), GNTST_bad_handle);
    assert.equal(guest.flags(20), GTF_permit_access);
    // A handle is not reused, so a stale one cannot drop a newer mapping.
    const c = ok(ga.map(20, { readonly: true }));
    assert.equal(ga.unmap(a.handle), GNTST_bad_handle);
    assert.equal(guest.flags(20), GTF_permit_access | GTF_reading);
    ga.unmap(c.handle);
  });

  it('many mappings of one ref: GTF_writing goes with the last writable one, GTF_reading with the last of all', () => {
    const { ga, guest } = setup();
    guest.grant(21, F1);
    const ro = Array.from({ length: 5 }, () => ok(ga.map(21, { readonly: true })));
    assert.equal(guest.flags(21), GTF_permit_access | GTF_reading);
    const rw = Array.from({ length: 3 }, () => ok(ga.map(21, { readonly: false })));
    assert.equal(guest.flags(21), GTF_permit_access | ACCESS);
    for (const m of rw.slice(0, 2)) { ga.unmap(m.handle); assert.equal(guest.flags(21), GTF_permit_access | ACCESS); }
    ga.unmap(rw[2]!.handle);
    assert.equal(guest.flags(21), GTF_permit_access | GTF_reading);
    for (const m of ro.slice(0, 4)) { ga.unmap(m.handle); assert.equal(guest.flags(21), GTF_permit_access | GTF_reading); }
    ga.unmap(ro[4]!.handle);
    assert.equal(guest.flags(21), GTF_permit_access);
    // Writable first, read-only last: GTF_writing goes, GTF_reading stays with the read-only pin.
    const w = ok(ga.map(21, { readonly: false }));
    const r = ok(ga.map(21, { readonly: true }));
    ga.unmap(w.handle);
    assert.equal(guest.flags(21), GTF_permit_access | GTF_reading);
    ga.unmap(r.handle);
    assert.equal(guest.flags(21), GTF_permit_access);
  });

  it('pins are shared by every backend of the guest: a second backend domain is refused while the first holds the entry', () => {
    const { ga, gt, guest } = setup();
    const other = new GrantAccess(gt, { backendDomid: 5 });
    guest.grant(22, F1);
    const m = ok(ga.map(22, { readonly: true }));
    guest.grant(22, F1, { domid: 5, extra: GTF_reading }); // a guest re-granting a pinned entry to someone else
    assert.equal(other.map(22, { readonly: true }).status, GNTST_general_error);
    assert.deepEqual(other.copy([{ source: { ref: 22, offset: 0 }, dest: { bytes: new Uint8Array(4), offset: 0 }, len: 4 }]), [GNTST_general_error]);
    ga.unmap(m.handle);
    ok(other.map(22, { readonly: true }));
  });

  it('once pinned, further read-only maps use the frame captured at the first pin (act->mfn), not what the guest rewrote', () => {
    const { ga, guest, mem } = setup();
    guest.grant(23, F1);
    mem.write8(F1 * PAGE, 0x11); mem.write8(F2 * PAGE, 0x22);
    const a = ok(ga.map(23, { readonly: true }));
    mem.write32(ga.gt.entryGpa(23) + 4, F2); // the guest rewrites the frame of a pinned entry
    assert.equal(guest.frame(23), F2);
    const b = ok(ga.map(23, { readonly: true }));
    assert.equal(b.frame, F1);
    assert.equal(b.bytes[0], 0x11);
    // A writable copy needs _set_status again, re-reads the frame and refuses the change (acquire_grant_for_copy).
    assert.deepEqual(ga.copy([{ source: { bytes: new Uint8Array(4), offset: 0 }, dest: { ref: 23, offset: 0 }, len: 4 }]), [GNTST_general_error]);
    assert.equal(guest.flags(23), GTF_permit_access | GTF_reading, 'GTF_writing dropped again');
    ga.unmap(a.handle); ga.unmap(b.handle);
    assert.equal(guest.flags(23), GTF_permit_access);
  });

  it(`a pin counter stops at ${GNTPIN_COUNTER_LIMIT} (GNTPIN_incr2oflow_mask) with GNTST_general_error`, () => {
    const { ga, guest } = setup();
    guest.grant(24, F1);
    const ro = Array.from({ length: GNTPIN_COUNTER_LIMIT }, () => ok(ga.map(24, { readonly: true })));
    assert.equal(ga.map(24, { readonly: true }).status, GNTST_general_error);
    assert.deepEqual(ga.copy([{ source: { ref: 24, offset: 0 }, dest: { bytes: new Uint8Array(4), offset: 0 }, len: 4 }]), [GNTST_general_error]);
    const w = ok(ga.map(24, { readonly: false })); // the writable counter is separate
    ga.unmap(ro[0]!.handle);
    ok(ga.map(24, { readonly: true }));
    ga.unmap(w.handle);
    assert.equal(guest.flags(24), GTF_permit_access | GTF_reading);
  });

  it('with the page types, a writable map of a page-table frame is GNTST_general_error (could_not_pin); read-only is allowed', () => {
    const plan = planMemory(2 << 20);
    const types = new PageTypes(plan.nrPages);
    const { ga, guest } = setup({ pageTypes: types });
    types.type[F1] = PGT_l1;
    guest.grant(25, F1);
    assert.equal(ga.map(25, { readonly: false }).status, GNTST_general_error);
    assert.equal(guest.flags(25), GTF_permit_access);
    assert.deepEqual(ga.copy([{ source: { bytes: new Uint8Array(4), offset: 0 }, dest: { ref: 25, offset: 0 }, len: 4 }]), [GNTST_general_error]);
    assert.equal(guest.flags(25), GTF_permit_access);
    const r = ok(ga.map(25, { readonly: true }));
    assert.equal(ga.map(25, { readonly: false }).status, GNTST_general_error);
    assert.equal(guest.flags(25), GTF_permit_access | GTF_reading);
    ga.unmap(r.handle);
    types.type[F1] = 0;
    ok(ga.map(25, { readonly: false }));
  });

  it('running out of maptrack entries is GNTST_no_space, checked before the ref', () => {
    const { ga, guest } = setup({ maxMaptrackEntries: 3 });
    guest.grant(26, F1);
    const ms = Array.from({ length: 3 }, () => ok(ga.map(26, { readonly: true })));
    assert.equal(ga.map(26, { readonly: true }).status, GNTST_no_space);
    assert.equal(ga.map(99999, { readonly: true }).status, GNTST_no_space);
    ga.unmap(ms[0]!.handle);
    ok(ga.map(26, { readonly: true }));
  });

  it('unmapAll drops every mapping and clears the flags', () => {
    const { ga, guest } = setup();
    guest.grant(27, F1); guest.grant(28, F2, { readonly: true });
    ok(ga.map(27, { readonly: false })); ok(ga.map(27, { readonly: true })); ok(ga.map(28, { readonly: true }));
    ga.unmapAll();
    assert.equal(ga.mappings, 0);
    assert.equal(guest.flags(27), GTF_permit_access);
    assert.equal(guest.flags(28), GTF_permit_access | GTF_readonly);
  });
});

describe('a guest racing the flags word (_set_status_v1 bounded cmpxchg)', () => {
  it(`a guest changing the word on every attempt gets GNTST_general_error after ${SET_STATUS_TRIES} tries, nothing left set`, () => {
    const { ga, guest, mem, gt, log } = setup();
    guest.grant(30, F1);
    mem.race = (gpa) => { if (gpa === gt.entryGpa(30)) mem.atomicStore32(gpa, mem.atomicLoad32(gpa) ^ GTF_PWT); };
    mem.cmpxchgs = 0;
    assert.equal(ga.map(30, { readonly: false }).status, GNTST_general_error);
    assert.equal(mem.cmpxchgs, SET_STATUS_TRIES);
    assert.equal(guest.flags(30) & ACCESS, 0);
    assert.ok(log.some((l) => l.includes('unstable')));
    mem.cmpxchgs = 0;
    assert.deepEqual(ga.copy([{ source: { ref: 30, offset: 0 }, dest: { bytes: new Uint8Array(4), offset: 0 }, len: 4 }]), [GNTST_general_error]);
    assert.equal(mem.cmpxchgs, SET_STATUS_TRIES);
    assert.equal(guest.flags(30) & ACCESS, 0);
    mem.race = undefined;
    ok(ga.map(30, { readonly: false }));
  });

  it('a guest changing a flag once (a legitimate race) is retried and its change kept', () => {
    const { ga, guest, mem, gt } = setup();
    guest.grant(31, F1);
    let once = true;
    mem.race = (gpa) => { if (once && gpa === gt.entryGpa(31)) { once = false; mem.atomicOr32(gpa, GTF_PCD); } };
    mem.cmpxchgs = 0;
    ok(ga.map(31, { readonly: false }));
    assert.equal(mem.cmpxchgs, 2);
    assert.equal(guest.flags(31), GTF_permit_access | GTF_PCD | ACCESS);
  });

  it('a guest that revokes, makes the entry read-only or re-grants it elsewhere mid-race is re-checked and refused', () => {
    const cases: [string, (mem: GuestMemory, gpa: number) => void][] = [
      ['revoke', (mem, gpa) => mem.atomicStore32(gpa, 0)],
      ['readonly', (mem, gpa) => mem.atomicOr32(gpa, GTF_readonly)],
      ['domid', (mem, gpa) => mem.atomicStore32(gpa, ((9 << 16) | GTF_permit_access) >>> 0)],
    ];
    for (const [what, change] of cases) {
      const { ga, guest, mem, gt } = setup();
      guest.grant(32, F1);
      let once = true;
      mem.race = (gpa) => { if (once && gpa === gt.entryGpa(32)) { once = false; change(mem, gpa); } };
      assert.equal(ga.map(32, { readonly: false }).status, GNTST_general_error, what);
      assert.equal(guest.flags(32) & ACCESS, 0, what);
    }
  });

  it('a guest thread flipping a flag bit as fast as it can never livelocks map/unmap, and no access bit leaks', async () => {
    const plan = planMemory(2 << 20);
    const sab = new SharedArrayBuffer(plan.totalBytes);
    const { ga, guest, gt } = setup({ buffer: sab as unknown as ArrayBuffer });
    guest.grant(33, F1);
    const stop = new Int32Array(new SharedArrayBuffer(4));
    const worker = new Worker(`
      const { workerData } = require('node:worker_threads');
      const words = new Int32Array(workerData.sab), stop = new Int32Array(workerData.stop);
      Atomics.store(stop, 0, 1);
      while (Atomics.load(stop, 0) === 1) Atomics.xor(words, workerData.index, workerData.bit);
    `, { eval: true, workerData: { sab, stop: stop.buffer, index: gt.entryGpa(33) / 4, bit: GTF_PWT } });
    try {
      while (Atomics.load(stop, 0) === 0) await new Promise((r) => setTimeout(r, 1));
      let okays = 0, errors = 0;
      const started = Date.now();
      for (let i = 0; i < 20000; i++) {
        const r = ga.map(33, { readonly: (i & 1) === 0 });
        if (r.status === GNTST_okay) { okays++; assert.equal(ga.unmap(r.handle), GNTST_okay); } else { errors++; assert.equal(r.status, GNTST_general_error); }
        assert.equal(guest.flags(33) & ACCESS, 0);
      }
      assert.equal(okays + errors, 20000);
      assert.ok(Date.now() - started < 20000, 'bounded time');
    } finally {
      Atomics.store(stop, 0, 2);
      await worker.terminate();
    }
    assert.equal(guest.flags(33) & ~(GTF_PWT), GTF_permit_access);
  });
});

describe('copy (gnttab_copy, acquire_grant_for_copy, release_grant_for_copy)', () => {
  it('copies into and out of granted pages; the flags are set while the page is touched and cleared after', () => {
    const { ga, guest, mem, gt } = setup();
    guest.grant(40, F1); guest.grant(41, F2);
    guest.page(F2).set(pattern(PAGE, 7));
    const seen: number[] = [];
    mem.onBytes = (gpa) => { if (gpa === F1 * PAGE) seen.push(guest.flags(40)); if (gpa === F2 * PAGE) seen.push(guest.flags(41)); };
    // To the guest (a backend's read completion): destination ref, writable.
    const data = pattern(600, 3);
    assert.deepEqual(ga.copy([{ source: { bytes: data, offset: 100 }, dest: { ref: 40, offset: 3000 }, len: 500 }]), [GNTST_okay]);
    assert.deepEqual(guest.page(F1).subarray(3000, 3500), data.subarray(100, 600));
    assert.equal(guest.page(F1)[2999], 0);
    assert.equal(guest.page(F1)[3500], 0);
    // From the guest (a write request): source ref, read-only.
    const out = new Uint8Array(8192);
    assert.deepEqual(ga.copy([{ source: { ref: 41, offset: 0 }, dest: { bytes: out, offset: 4096 }, len: PAGE }]), [GNTST_okay]);
    assert.deepEqual(out.subarray(4096), pattern(PAGE, 7));
    assert.deepEqual(seen, [GTF_permit_access | ACCESS, GTF_permit_access | GTF_reading]);
    assert.equal(guest.flags(40), GTF_permit_access);
    assert.equal(guest.flags(41), GTF_permit_access);
    // Ref to ref within the guest (both pinned for the segment).
    guest.grant(42, F3);
    assert.deepEqual(ga.copy([{ source: { ref: 41, offset: 8 }, dest: { ref: 42, offset: 16 }, len: 32 }]), [GNTST_okay]);
    assert.deepEqual(guest.page(F3).subarray(16, 48), pattern(PAGE, 7).subarray(8, 40));
    assert.equal(guest.flags(41) | guest.flags(42), GTF_permit_access);
    assert.equal(gt.d.mem, mem);
  });

  it('offset + len beyond the page is GNTST_bad_copy_arg, on either side, with nothing copied and the flags cleared', () => {
    const { ga, guest } = setup();
    guest.grant(43, F1);
    const host = new Uint8Array(PAGE).fill(0xee);
    const st = ga.copy([
      { source: { bytes: host, offset: 0 }, dest: { ref: 43, offset: 4095 }, len: 2 },
      { source: { bytes: host, offset: 0 }, dest: { ref: 43, offset: 0 }, len: PAGE + 1 },
      { source: { ref: 43, offset: 4000 }, dest: { bytes: new Uint8Array(PAGE), offset: 0 }, len: 97 },
      { source: { ref: 43, offset: 0xffff }, dest: { bytes: new Uint8Array(PAGE), offset: 0 }, len: 1 },
      { source: { bytes: host, offset: 0 }, dest: { ref: 43, offset: 4095 }, len: 1 },
      { source: { bytes: host, offset: 0 }, dest: { ref: 43, offset: 0 }, len: PAGE },
    ]);
    assert.deepEqual(st, [GNTST_bad_copy_arg, GNTST_bad_copy_arg, GNTST_bad_copy_arg, GNTST_bad_copy_arg, GNTST_okay, GNTST_okay]);
    assert.equal(guest.flags(43), GTF_permit_access);
  });

  it('the host side must stay inside its buffer (GNTST_bad_copy_arg)', () => {
    const { ga, guest } = setup();
    guest.grant(44, F1);
    guest.page(F1).fill(0x77);
    const small = new Uint8Array(64);
    assert.deepEqual(ga.copy([
      { source: { ref: 44, offset: 0 }, dest: { bytes: small, offset: 0 }, len: 65 },
      { source: { ref: 44, offset: 0 }, dest: { bytes: small, offset: 60 }, len: 5 },
      { source: { bytes: small, offset: 64 }, dest: { ref: 44, offset: 0 }, len: 1 },
      { source: { ref: 44, offset: 0 }, dest: { bytes: small, offset: 60 }, len: 4 },
    ]), [GNTST_bad_copy_arg, GNTST_bad_copy_arg, GNTST_bad_copy_arg, GNTST_okay]);
    assert.deepEqual(small.subarray(0, 60), new Uint8Array(60));
    assert.deepEqual(small.subarray(60), new Uint8Array(4).fill(0x77));
    assert.equal(guest.flags(44), GTF_permit_access);
  });

  it('a read-only grant may be a source but not a destination (GNTST_general_error)', () => {
    const { ga, guest } = setup();
    guest.grant(45, F1, { readonly: true });
    guest.page(F1).set([1, 2, 3, 4]);
    const out = new Uint8Array(4);
    assert.deepEqual(ga.copy([
      { source: { ref: 45, offset: 0 }, dest: { bytes: out, offset: 0 }, len: 4 },
      { source: { bytes: new Uint8Array([9, 9, 9, 9]), offset: 0 }, dest: { ref: 45, offset: 0 }, len: 4 },
    ]), [GNTST_okay, GNTST_general_error]);
    assert.deepEqual(out, new Uint8Array([1, 2, 3, 4]));
    assert.deepEqual(guest.page(F1).subarray(0, 4), new Uint8Array([1, 2, 3, 4]));
    assert.equal(guest.flags(45), GTF_permit_access | GTF_readonly);
  });

  it('a zero-length segment is GNTST_okay without looking at the grant; statuses are per segment', () => {
    const { ga, guest } = setup();
    guest.grant(46, F1);
    const st = ga.copy([
      { source: { ref: 47, offset: 0 }, dest: { bytes: new Uint8Array(1), offset: 0 }, len: 0 }, // ref 47 never granted
      { source: { ref: 999, offset: 0 }, dest: { bytes: new Uint8Array(1), offset: 0 }, len: 0 },
      { source: { ref: 47, offset: 0 }, dest: { bytes: new Uint8Array(1), offset: 0 }, len: 1 },
      { source: { ref: 46, offset: 0 }, dest: { bytes: new Uint8Array(1), offset: 0 }, len: 1 },
      { source: { ref: 999, offset: 0 }, dest: { bytes: new Uint8Array(1), offset: 0 }, len: 1 },
    ]);
    assert.deepEqual(st, [GNTST_okay, GNTST_okay, GNTST_general_error, GNTST_okay, GNTST_bad_gntref]);
  });

  it('a copy into a mapped entry keeps the map\'s pin: GTF_writing comes and goes, GTF_reading stays', () => {
    const { ga, guest, mem } = setup();
    guest.grant(48, F1);
    const m = ok(ga.map(48, { readonly: true }));
    let during = -1;
    mem.onBytes = (gpa) => { if (gpa === F1 * PAGE) during = guest.flags(48); };
    assert.deepEqual(ga.copy([{ source: { bytes: new Uint8Array([5]), offset: 0 }, dest: { ref: 48, offset: 0 }, len: 1 }]), [GNTST_okay]);
    assert.equal(during, GTF_permit_access | ACCESS);
    assert.equal(guest.flags(48), GTF_permit_access | GTF_reading);
    assert.equal(m.bytes[0], 5);
    ga.unmap(m.handle);
    assert.equal(guest.flags(48), GTF_permit_access);
  });
});

describe('robustness', () => {
  it('no entry contents raise a host exception, and every status is a GNTST_* code', () => {
    const { ga, gt, mem } = setup();
    gt.nrFrames = 2;
    let seed = 12345;
    const rand = () => { seed = (Math.imul(seed, 1103515245) + 12345) >>> 0; return seed; };
    const valid = new Set<number>([GNTST_okay, GNTST_general_error, GNTST_bad_gntref, GNTST_bad_page, GNTST_bad_copy_arg]);
    const handles: number[] = [];
    for (let i = 0; i < 4000; i++) {
      const ref = rand() % 1100;
      if (ref < gt.nrEntries) {
        const r = rand();
        // Mostly plausible entries (domid 0, small frames) so that some succeed.
        const frame = r & 1 ? rand() % 600 : rand();
        const flags = r & 2 ? (rand() & 0xffff) & ~ACCESS : GTF_permit_access | (rand() & (GTF_readonly | GTF_sub_page));
        const domid = r & 4 ? rand() & 0xffff : 0;
        mem.write32(gt.entryGpa(ref) + 4, frame);
        if (!(mem.read16(gt.entryGpa(ref)) & ACCESS)) mem.atomicStore32(gt.entryGpa(ref), ((domid << 16) | flags) >>> 0);
      }
      const readonly = (rand() & 1) === 0;
      assert.doesNotThrow(() => {
        const m = ga.map(ref, { readonly });
        assert.ok(valid.has(m.status), `map status ${m.status}`);
        if (m.status === GNTST_okay) handles.push(m.handle);
        const st = ga.copy([{ source: { ref, offset: rand() % 5000 }, dest: { bytes: new Uint8Array(64), offset: 0 }, len: rand() % 80 },
          { source: { bytes: new Uint8Array(64), offset: 0 }, dest: { ref, offset: rand() % 5000 }, len: rand() % 80 }]);
        for (const s of st) assert.ok(valid.has(s), `copy status ${s}`);
        if (handles.length > 50) assert.equal(ga.unmap(handles.splice(rand() % handles.length, 1)[0]!), GNTST_okay);
      });
    }
    for (const h of handles) assert.equal(ga.unmap(h), GNTST_okay);
    for (let ref = 0; ref < gt.nrEntries; ref++) assert.equal(mem.read16(gt.entryGpa(ref)) & ACCESS, 0, `ref ${ref} left pinned`);
  });

  it('malformed calls from pvbox code throw', () => {
    const { ga, gt } = setup();
    assert.throws(() => ga.map(-1, { readonly: true }), RangeError);
    assert.throws(() => ga.map(1.5, { readonly: true }), RangeError);
    assert.throws(() => ga.map(2 ** 32, { readonly: true }), RangeError);
    assert.throws(() => ga.map(1, {} as { readonly: boolean }), TypeError);
    assert.throws(() => ga.copy([{ source: { ref: 1, offset: -1 }, dest: { bytes: new Uint8Array(1), offset: 0 }, len: 1 }]), RangeError);
    assert.throws(() => ga.copy([{ source: { ref: 1, offset: 0 }, dest: { bytes: new Uint8Array(1), offset: 0 }, len: -1 }]), RangeError);
    assert.throws(() => ga.copy([{ source: { ref: 1, offset: 0 }, dest: {} as { bytes: Uint8Array; offset: number }, len: 1 }]), TypeError);
    assert.throws(() => new GrantAccess(gt, { backendDomid: 0x10000 }), RangeError);
  });
});
