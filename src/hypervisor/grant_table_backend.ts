// Grant access for in-process Domain-0 backends: map, unmap and copy a guest's v1 grants with Xen's checks and GTF_reading/GTF_writing protocol (xen/common/grant_table.c: map_grant_ref, unmap_common, acquire_grant_for_copy, gnttab_copy; cf. QEMU hw/i386/kvm/xen_gnttab.c).
//
// Backends run in pvbox's own process, so nothing is really mapped: a "mapping" is a pin on the
// guest's grant entry plus a Uint8Array view of the granted guest page. What the guest sees is
// what Xen does: GTF_reading (and GTF_writing for writable access) set in the entry with a bounded
// cmpxchg on the flags+domid word while any pin of that kind exists, cleared when the last goes
// away, and the entry refused with Xen's GNTST_* code when it is bad. Status codes and the Xen
// lines they follow are noted at each check (xen-project/xen c447b7308b13, as shared/reference/).
//
// Nothing here throws on guest-controlled data (entry contents, refs the guest wrote into a ring,
// offsets and lengths derived from its requests); only a malformed call from pvbox code throws.
import {
  GNTST_bad_copy_arg, GNTST_bad_gntref, GNTST_bad_handle, GNTST_bad_page, GNTST_general_error, GNTST_no_space, GNTST_okay,
  GTF_permit_access, GTF_readonly, GTF_reading, GTF_sub_page, GTF_type_mask, GTF_writing,
} from '../abi/grant_table.js';
import type { GrantTable } from './grant_table.js';
import { PGT_none, type PageTypes } from './mm.js';

const PAGE_SIZE = 4096;
/** _set_status_v1: the cmpxchg on the shared header is tried at most five times ("retries++ == 4"). */
export const SET_STATUS_TRIES = 5;
/** Pin counters are 8 bits; GNTPIN_incr2oflow_mask refuses a new pin once its counter has bit 7 set. */
export const GNTPIN_COUNTER_LIMIT = 0x80;
/** Xen's default maptrack size: opt_max_maptrack_frames (1024) × MAPTRACK_PER_PAGE (4096 / 16). */
export const MAX_MAPTRACK_ENTRIES = 1024 * (PAGE_SIZE / 16);

/** Any GNTST_* failure (public/grant_table.h: -1 … -13). */
export type GntstError = -1 | -2 | -3 | -4 | -5 | -6 | -7 | -8 | -9 | -10 | -11 | -12 | -13;
export type GntstStatus = typeof GNTST_okay | GntstError;

export type GrantMapResult =
  | { status: typeof GNTST_okay; handle: number; frame: number; bytes: Uint8Array }
  | { status: GntstError; handle?: undefined; frame?: undefined; bytes?: undefined };

/** One side of a copy: a grant ref of the guest, or host memory (Xen's local gmfn side). */
export type GrantCopyPtr = { ref: number; offset: number } | { bytes: Uint8Array; offset: number };
export interface GrantCopySegment {
  source: GrantCopyPtr;
  dest: GrantCopyPtr;
  len: number;
}

export interface GrantAccessOptions {
  /** The backend's domain id, which the guest puts in the entries it grants it (default 0, Domain-0). */
  backendDomid?: number;
  /**
   * The guest's page types (Hypervisor.mm.types). With them, writable access to a frame that is
   * currently a page table is refused, as Xen's get_page_type(PGT_writable_page) refuses it.
   */
  pageTypes?: Pick<PageTypes, 'type'>;
  /** Live mappings this backend may hold (Xen's maptrack limit). */
  maxMaptrackEntries?: number;
}

/** struct active_grant_entry, reduced to v1 host pins: shared by every backend of one guest. */
interface ActiveGrantEntry {
  /** GNTPIN_hstr: read-only pins (maps and source copies). */
  hstr: number;
  /** GNTPIN_hstw: writable pins (maps and destination copies). */
  hstw: number;
  /** act->domid: the grantee holding the pins. */
  domid: number;
  /** act->mfn: the frame read from the entry when it was first pinned; later pins use it. */
  frame: number;
}

/** struct grant_mapping: one map_grant_ref of this backend. */
interface GrantMapping {
  ref: number;
  readonly: boolean;
}

/** Per guest grant table, like rgt->active: pins of all backends accessing that guest. */
const activeTables = new WeakMap<GrantTable, Map<number, ActiveGrantEntry>>();

const pinOf = (act: ActiveGrantEntry | undefined): number => (act ? act.hstr + act.hstw : 0);

function assertU32(what: string, v: unknown): asserts v is number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new RangeError(`grant access: ${what} ${String(v)} is not a u32`);
}
function assertCount(what: string, v: unknown): asserts v is number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new RangeError(`grant access: ${what} ${String(v)} is not a non-negative integer`);
}

/** A claimed side of one copy segment (struct gnttab_copy_buf). */
type CopyBuf = { status: typeof GNTST_okay; view: Uint8Array; ref?: number; readonly: boolean } | { status: GntstError };

/**
 * A backend domain's access to one guest's grants: Xen's GNTTABOP_map_grant_ref,
 * unmap_grant_ref and copy as seen from Domain-0 (or another backend domain).
 */
export class GrantAccess {
  readonly backendDomid: number;
  private readonly active: Map<number, ActiveGrantEntry>;
  private readonly maptrack = new Map<number, GrantMapping>();
  private readonly pageTypes: Pick<PageTypes, 'type'> | undefined;
  private readonly maxMaptrack: number;
  private nextHandle = 0;

  constructor(readonly gt: GrantTable, opts: GrantAccessOptions = {}) {
    const domid = opts.backendDomid ?? 0;
    if (!Number.isInteger(domid) || domid < 0 || domid > 0xffff) throw new RangeError(`grant access: bad backend domid ${domid}`);
    this.backendDomid = domid;
    this.pageTypes = opts.pageTypes;
    this.maxMaptrack = opts.maxMaptrackEntries ?? MAX_MAPTRACK_ENTRIES;
    let active = activeTables.get(gt);
    if (!active) activeTables.set(gt, active = new Map());
    this.active = active;
  }

  /** Live mappings made through this object. */
  get mappings(): number { return this.maptrack.size; }

  /**
   * map_grant_ref with GNTMAP_host_map (| GNTMAP_readonly). On success `bytes` is a view of the
   * whole granted guest page (it aliases guest memory); drop it when calling unmap(handle).
   */
  map(ref: number, opts: { readonly: boolean }): GrantMapResult {
    assertU32('ref', ref);
    const readonly = opts.readonly;
    if (typeof readonly !== 'boolean') throw new TypeError('grant access: map needs { readonly: boolean }');
    // get_maptrack_handle failing: "Failed to obtain maptrack handle" → GNTST_no_space (grant_table.c:1066-1067).
    if (this.maptrack.size >= this.maxMaptrack) return this.fail(GNTST_no_space, ref, 'Failed to obtain maptrack handle');
    // "Bounds check on the grant ref" → GNTST_bad_gntref (grant_table.c:1076-1080).
    if (ref >= this.gt.nrEntries) return this.fail(GNTST_bad_gntref, ref, `Bad ref ${hex(ref)}`);

    let act = this.active.get(ref);
    // Already pinned by another grantee, or the counter would overflow → GNTST_general_error (grant_table.c:1089-1097).
    // v1 host pins are never sub-page (act->is_sub_page), so that third condition cannot arise here.
    if (act && (act.domid !== this.backendDomid || (readonly ? act.hstr : act.hstw) >= GNTPIN_COUNTER_LIMIT)) {
      return this.fail(GNTST_general_error, ref, `Bad domain (${act.domid} != ${this.backendDomid}), or risk of counter overflow`);
    }
    if (!act || (!readonly && act.hstw === 0)) {
      // _set_status with mapflag=1 (grant_table.c:1106-1111): GTF_sub_page entries are not mappable.
      const rc = this.setStatus(ref, act, readonly, true);
      if (rc !== GNTST_okay) return { status: rc };
      if (!act) {
        const frame = this.gt.d.mem.read32(this.gt.entryGpa(ref) + 4);
        const prc = this.getPagedFrame(frame);
        if (prc !== GNTST_okay) {
          // goto unlock_out_clear: the flags just set go again (grant_table.c:1120-1123, 1372-1373).
          this.reduceStatusForPin(ref, undefined, readonly);
          return this.fail(prc, ref, `frame ${hex(frame)} is not guest RAM`);
        }
        act = { hstr: 0, hstw: 0, domid: this.backendDomid, frame };
        this.active.set(ref, act);
      }
    }
    // act->pin += pin_incr (grant_table.c:1135).
    if (readonly) act.hstr++; else act.hstw++;
    // A writable host mapping takes a PGT_writable_page type reference; a page-table frame refuses it:
    // could_not_pin → GNTST_general_error, undo_out drops the pin and reduces the flags (grant_table.c:1215-1219, 1233-1238, 1369-1373).
    if (!readonly && !this.writableFrame(act.frame)) {
      this.unpin(ref, act, readonly);
      return this.fail(GNTST_general_error, ref, `Could not pin grant frame ${hex(act.frame)}`);
    }
    const handle = this.nextHandle++;
    this.maptrack.set(handle, { ref, readonly });
    return { status: GNTST_okay, handle, frame: act.frame, bytes: this.gt.d.mem.bytes(act.frame * PAGE_SIZE, PAGE_SIZE) };
  }

  /**
   * unmap_grant_ref: drop one mapping; the entry's GTF_writing goes with the last writable pin and
   * GTF_reading with the last pin. An unknown or already unmapped handle → GNTST_bad_handle
   * (grant_table.c:1426-1442) and changes nothing. Handles are never reused.
   */
  unmap(handle: number): GntstStatus {
    const m = this.maptrack.get(handle);
    if (!m) return GNTST_bad_handle;
    this.maptrack.delete(handle);
    const act = this.active.get(m.ref);
    if (!act) throw new Error(`grant access: mapping ${handle} of ref ${m.ref} has no active entry`);
    // unmap_common_complete: act->pin -= GNTPIN_hst{r,w}_inc; reduce_status_for_pin (grant_table.c:1663-1671).
    this.unpin(m.ref, act, m.readonly);
    return GNTST_okay;
  }

  /** Unmap every mapping this backend still holds (backend teardown; QEMU's xen_be_gnttab_close). */
  unmapAll(): void {
    for (const handle of [...this.maptrack.keys()]) this.unmap(handle);
  }

  /**
   * GNTTABOP_copy for an in-process backend: each segment copies `len` bytes between a grant ref
   * of the guest and host memory (or two refs). Returns one GNTST_* status per segment, as Xen
   * writes gnttab_copy.status. A grant is pinned (GTF_reading, plus GTF_writing for a destination)
   * only for the duration of its segment.
   */
  copy(segments: readonly GrantCopySegment[]): GntstStatus[] {
    if (!Array.isArray(segments)) throw new TypeError('grant access: copy needs an array of segments');
    return segments.map((seg) => this.copyOne(seg));
  }

  // ---- internals ----

  private copyOne(seg: GrantCopySegment): GntstStatus {
    checkCopyPtr('source', seg.source);
    checkCopyPtr('dest', seg.dest);
    assertCount('len', seg.len);
    // gnttab_copy_one: "if ( unlikely(!op->len) ) return GNTST_okay;" before anything is claimed (grant_table.c:3124-3125).
    if (seg.len === 0) return GNTST_okay;
    // gnttab_copy_claim_buf: the source is claimed read-only, then the destination writable (grant_table.c:3010-3067, 3138-3156).
    const src = this.claimBuf(seg.source, true);
    if (src.status !== GNTST_okay) return src.status;
    const dst = this.claimBuf(seg.dest, false);
    if (dst.status !== GNTST_okay) { this.releaseBuf(src); return dst.status; }
    const rc = copyBuf(seg, src, dst);
    // gnttab_copy_release_buf → release_grant_for_copy (grant_table.c:2986-3008, 2531-2590).
    this.releaseBuf(dst);
    this.releaseBuf(src);
    return rc;
  }

  private claimBuf(ptr: GrantCopyPtr, readonly: boolean): CopyBuf {
    if (!('ref' in ptr)) return { status: GNTST_okay, view: ptr.bytes, readonly };
    const acq = this.acquireGrantForCopy(ptr.ref, readonly);
    if (acq.status !== GNTST_okay) return acq;
    if (!readonly && !this.writableFrame(acq.frame)) {
      // get_page_type(buf->page, PGT_writable_page) failing → GNTST_general_error (grant_table.c:3048-3057);
      // gnttab_copy then releases the claimed grant.
      this.releaseGrantForCopy(ptr.ref, readonly);
      return this.fail(GNTST_general_error, ptr.ref, `Could not get writable frame ${hex(acq.frame)}`);
    }
    return { status: GNTST_okay, view: this.gt.d.mem.bytes(acq.frame * PAGE_SIZE, PAGE_SIZE), ref: ptr.ref, readonly };
  }

  private releaseBuf(buf: CopyBuf): void {
    if (buf.status === GNTST_okay && buf.ref !== undefined) this.releaseGrantForCopy(buf.ref, buf.readonly);
  }

  /** acquire_grant_for_copy for a v1 entry: pin `ref` for one copy. */
  private acquireGrantForCopy(ref: number, readonly: boolean): { status: typeof GNTST_okay; frame: number } | { status: GntstError } {
    // "Bad grant reference" → GNTST_bad_gntref (grant_table.c:2622-2628).
    if (ref >= this.gt.nrEntries) return this.fail(GNTST_bad_gntref, ref, `Bad grant reference ${hex(ref)}`);
    let act = this.active.get(ref);
    // Pinned by another grantee or counter overflow → GNTST_general_error (grant_table.c:2636-2645).
    if (act && (act.domid !== this.backendDomid || (readonly ? act.hstr : act.hstw) >= GNTPIN_COUNTER_LIMIT)) {
      return this.fail(GNTST_general_error, ref, `Bad domain (${act.domid} != ${this.backendDomid}), or risk of counter overflow`);
    }
    if (!act || (!readonly && act.hstw === 0)) {
      // _set_status with mapflag=0: a v1 GTF_sub_page entry may be copied (grant_table.c:2795-2798).
      const rc = this.setStatus(ref, act, readonly, false);
      if (rc !== GNTST_okay) return { status: rc };
      const frame = this.gt.d.mem.read32(this.gt.entryGpa(ref) + 4);
      const prc = this.getPagedFrame(frame);
      if (prc !== GNTST_okay) {
        // get_paged_frame failing → unlock_out_clear (grant_table.c:2806-2808, 2899-2900).
        this.reduceStatusForPin(ref, act, readonly);
        return this.fail(prc, ref, `frame ${hex(frame)} is not guest RAM`);
      }
      if (!act) {
        act = { hstr: 0, hstw: 0, domid: this.backendDomid, frame };
        this.active.set(ref, act);
      } else if (act.frame !== frame) {
        // Already pinned read-only, and the guest has changed the frame since → GNTST_general_error (grant_table.c:2850-2861).
        this.reduceStatusForPin(ref, act, readonly);
        return this.fail(GNTST_general_error, ref, `frame ${hex(frame)} differs from the pinned ${hex(act.frame)}`);
      }
    }
    // act->pin += pin_incr (grant_table.c:2889).
    if (readonly) act.hstr++; else act.hstw++;
    return { status: GNTST_okay, frame: act.frame };
  }

  /** release_grant_for_copy (grant_table.c:2531-2590). */
  private releaseGrantForCopy(ref: number, readonly: boolean): void {
    const act = this.active.get(ref);
    if (!act) throw new Error(`grant access: copy of ref ${ref} released without a pin`);
    this.unpin(ref, act, readonly);
  }

  private unpin(ref: number, act: ActiveGrantEntry, readonly: boolean): void {
    if (readonly) act.hstr--; else act.hstw--;
    if (act.hstr < 0 || act.hstw < 0) throw new Error(`grant access: pin count of ref ${ref} went negative`);
    this.reduceStatusForPin(ref, act, readonly);
    if (pinOf(act) === 0) this.active.delete(ref);
  }

  /**
   * _set_status_v1 (grant_table.c:743-823): set GTF_reading (and GTF_writing) with a cmpxchg on
   * the 32-bit flags+domid word, re-checking the entry each time the guest changed it under us,
   * and giving up after SET_STATUS_TRIES attempts so a guest cannot livelock the backend.
   */
  private setStatus(ref: number, act: ActiveGrantEntry | undefined, readonly: boolean, mapflag: boolean): GntstStatus {
    const mem = this.gt.d.mem;
    const gpa = this.gt.entryGpa(ref);
    const mask = GTF_type_mask | (mapflag ? GTF_sub_page : 0); // grant_table.c:767-768
    let scombo = mem.atomicLoad32(gpa);
    for (let retries = 0; ; retries++) {
      const flags = scombo & 0xffff, domid = scombo >>> 16;
      // Not pinned yet: type must be GTF_permit_access and domid ours, else GNTST_general_error (grant_table.c:778-790).
      if (!act && ((flags & mask) !== GTF_permit_access || domid !== this.backendDomid)) {
        return this.fail(GNTST_general_error, ref, `Bad flags (${hex(flags)}) or dom (${domid}); expected d${this.backendDomid}`).status;
      }
      let nflags = flags | GTF_reading;
      if (!readonly) {
        nflags |= GTF_writing;
        // "Attempt to write-pin a r/o grant entry" → GNTST_general_error (grant_table.c:795-805).
        if (flags & GTF_readonly) return this.fail(GNTST_general_error, ref, 'Attempt to write-pin a r/o grant entry').status;
      }
      const prev = mem.atomicCmpxchg32(gpa, scombo, ((domid << 16) | nflags) >>> 0);
      if (prev === scombo) return GNTST_okay;
      // "Shared grant entry is unstable" → GNTST_general_error (grant_table.c:812-817).
      if (retries === SET_STATUS_TRIES - 1) return this.fail(GNTST_general_error, ref, 'Shared grant entry is unstable').status;
      scombo = prev;
    }
  }

  /** reduce_status_for_pin (grant_table.c:934-948): drop the flags no remaining pin needs, touching only the 16-bit flags. */
  private reduceStatusForPin(ref: number, act: ActiveGrantEntry | undefined, readonly: boolean): void {
    let clear = pinOf(act) ? 0 : GTF_reading;
    if (!readonly && !act?.hstw) clear |= GTF_writing;
    // gnttab_clear_flags is "lock andw" on the flags alone; an atomic AND whose upper half is all ones leaves domid alone.
    if (clear) this.gt.d.mem.atomicAnd32(this.gt.entryGpa(ref), ~clear);
  }

  /**
   * get_paged_frame for a PV guest: the frame must be a page the guest owns (get_page(page, d)),
   * else GNTST_bad_page (grant_table.c:505-519). Here: guest RAM that is not ballooned out.
   * Xen-owned frames the guest can map (shared_info, its grant-table frames) are refused too.
   */
  private getPagedFrame(frame: number): GntstStatus {
    const d = this.gt.d;
    return d.isRam(frame) && !d.releasedFrames.has(frame) ? GNTST_okay : GNTST_bad_page;
  }

  /** Could the frame take a PGT_writable_page type reference? Not while it is a page table. */
  private writableFrame(frame: number): boolean {
    return !this.pageTypes || (this.pageTypes.type[frame] ?? PGT_none) === PGT_none;
  }

  /** PIN_FAIL: the gdprintk goes to the trace; the status goes back. */
  private fail<S extends GntstError>(status: S, ref: number, why: string): { status: S } {
    this.gt.d.trace.log(`  gnttab: d${this.backendDomid} → d${this.gt.d.domid} ref ${hex(ref)}: ${why} (GNTST ${status})`);
    return { status };
  }
}

function checkCopyPtr(what: string, p: GrantCopyPtr): void {
  if (typeof p !== 'object' || p === null) throw new TypeError(`grant access: copy ${what} is not a pointer`);
  if ('ref' in p) assertU32(`${what} ref`, p.ref);
  else if (!(p.bytes instanceof Uint8Array)) throw new TypeError(`grant access: copy ${what} has neither ref nor bytes`);
  assertCount(`${what} offset`, p.offset);
}

/**
 * gnttab_copy_buf (grant_table.c:3080-3116): a grant side must stay inside its page, else
 * GNTST_bad_copy_arg ("copy beyond page area"). The host side stands for Xen's local frame; here
 * it is the backend's buffer, so it must stay inside that buffer, with the same status.
 * (The "copy source/dest out of bounds" GNTST_general_error checks compare against a sub-page
 * grant's range; a v1 grant always covers the whole page, so they cannot fire after this one.)
 */
function copyBuf(seg: GrantCopySegment, src: CopyBuf & { status: 0 }, dst: CopyBuf & { status: 0 }): GntstStatus {
  const srcLimit = src.ref !== undefined ? PAGE_SIZE : src.view.length;
  const dstLimit = dst.ref !== undefined ? PAGE_SIZE : dst.view.length;
  if (seg.source.offset + seg.len > srcLimit || seg.dest.offset + seg.len > dstLimit) return GNTST_bad_copy_arg;
  dst.view.set(src.view.subarray(seg.source.offset, seg.source.offset + seg.len), seg.dest.offset);
  return GNTST_okay;
}

const hex = (n: number): string => `0x${n.toString(16)}`;
