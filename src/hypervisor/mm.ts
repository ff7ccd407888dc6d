// The PV MMU: page types and validation, mmu_update, mmuext_op, update_va_mapping and writable-page-table emulation (xen/arch/x86/mm.c, pv/mm.h, pv/ro-page-fault.c).
//
// Guest page tables hold machine frame numbers, which here are KVM guest-physical frames,
// so the CPU walks them directly. What Xen adds and pvbox must add too:
//  - every entry of a validated table gets Xen's adjustments (_PAGE_USER on every level,
//    since the kernel runs at CPL3; pv/mm.h adjust_guest_l*e),
//  - every L4 carries the hypervisor's own slots (M2P, monitor, monitor direct map),
//  - a frame has one page-table type at a time, counted by references (get/put_page_type),
//  - writes to live tables are made from inside the guest by the monitor (Vcpu.queuePteWrite),
//    because KVM's shadow MMU does not see the host's own writes to guest memory.
// Simplification recorded in docs/architecture.md: writable mappings of page-table frames are
// not refused (Xen refuses them); a guest that makes one only corrupts itself.
import { XEN_EINVAL, XEN_EFAULT, XEN_ENOSYS, XEN_EPERM, XEN_ESRCH } from '../abi/errno.js';
import {
  DOMID_SELF, MMU_MACHPHYS_UPDATE, MMU_NORMAL_PT_UPDATE, MMU_PT_UPDATE_NO_TRANSLATE, MMU_PT_UPDATE_PRESERVE_AD,
  MMUEXT_COPY_PAGE, MMUEXT_CLEAR_PAGE, MMUEXT_FLUSH_CACHE, MMUEXT_FLUSH_CACHE_GLOBAL, MMUEXT_INVLPG_ALL, MMUEXT_INVLPG_LOCAL,
  MMUEXT_INVLPG_MULTI, MMUEXT_NEW_BASEPTR, MMUEXT_NEW_USER_BASEPTR, MMUEXT_PIN_L1_TABLE, MMUEXT_PIN_L2_TABLE,
  MMUEXT_PIN_L3_TABLE, MMUEXT_PIN_L4_TABLE, MMUEXT_SET_LDT, MMUEXT_TLB_FLUSH_ALL, MMUEXT_TLB_FLUSH_LOCAL,
  MMUEXT_TLB_FLUSH_MULTI, MMUEXT_UNPIN_TABLE, UVMF_FLUSHTYPE_MASK, UVMF_INVLPG, UVMF_TLB_FLUSH,
} from '../abi/xen.js';
import { GuestFault } from '../memory/fault.js';
import { walk } from '../memory/guest-virt.js';
import { HV, MAX_GRANT_FRAMES } from '../monitor/layout.js';
import {
  _PAGE_ACCESSED, _PAGE_DIRTY, _PAGE_GUEST_KERNEL, _PAGE_PRESENT, _PAGE_PSE, _PAGE_RW, _PAGE_USER, PADDR_MASK,
} from '../monitor/pte.js';
import { hex } from '../trace/trace.js';
import type { Domain } from './domain.js';
import type { Vcpu } from './vcpu.js';
import { decode, X86_REG_TO_KVM } from './x86_decode.js';

export const PGT_none = 0, PGT_l1 = 1, PGT_l2 = 2, PGT_l3 = 3, PGT_l4 = 4;
const LEVEL_NAME = ['none', 'L1', 'L2', 'L3', 'L4'];

/** Per-frame page-type bookkeeping (Xen's struct page_info type_info, reduced). */
export class PageTypes {
  readonly type: Uint8Array;
  readonly count: Uint32Array;
  readonly pinned: Uint8Array;
  /** The frame has been a page table at some time, so KVM may hold a shadow of it. */
  readonly everPt: Uint8Array;
  constructor(frames: number) {
    this.type = new Uint8Array(frames); this.count = new Uint32Array(frames);
    this.pinned = new Uint8Array(frames); this.everPt = new Uint8Array(frames);
  }
}

export class Mm {
  readonly types: PageTypes;
  /** The L4 entries of the hypervisor's slots, written into every validated L4. */
  monitorL4: Map<number, bigint> = new Map();
  constructor(readonly d: Domain) { this.types = new PageTypes(d.plan.nrPages); }

  // ---- entry checks and adjustments (get_page_from_lNe, adjust_guest_lNe) ----

  /** May a guest L1 entry map this frame? RAM, or Xen frames shared with the guest. */
  private l1TargetOk(mfn: number): boolean {
    if (this.d.isRam(mfn)) return true;
    const off = mfn * 4096 - this.d.plan.hvBase;
    return off === HV.sharedInfo || (off >= HV.grantFrames && off < HV.grantFrames + MAX_GRANT_FRAMES * 4096);
  }

  adjustL1(e: bigint): bigint {
    if (!(e & _PAGE_PRESENT)) return e;
    return (e & _PAGE_USER) ? e : e | _PAGE_USER | _PAGE_GUEST_KERNEL;
  }
  adjustUpper(e: bigint, level: number): bigint {
    if (!(e & _PAGE_PRESENT)) return e;
    return level === 4 ? e | _PAGE_USER | _PAGE_ACCESSED : e | _PAGE_USER;
  }

  /** Write an entry of a page-table frame: through the monitor if KVM may shadow it. */
  private writeEntry(v: Vcpu, gpa: number, value: bigint): void {
    const mfn = gpa >>> 12;
    if (this.types.everPt[mfn]) v.queuePteWrite(gpa, value);
    else this.d.mem.write64(gpa, value);
  }

  // ---- page types (get_page_type / put_page_type) ----

  /** Take a type reference on `mfn` as a level-`level` table, validating it if it had no type. 0 or -errno. */
  getPageType(v: Vcpu, mfn: number, level: number): number {
    const t = this.types;
    if (!this.d.isRam(mfn)) return -XEN_EINVAL;
    if (t.type[mfn] === level) { t.count[mfn]!++; return 0; }
    if (t.type[mfn] !== PGT_none) {
      this.d.trace.log(`  mm: frame ${hex(mfn)} is ${LEVEL_NAME[t.type[mfn]!]}, wanted ${LEVEL_NAME[level]}`);
      return -XEN_EINVAL;
    }
    // Claim the type first: a table that (wrongly) references itself must not recurse forever.
    t.type[mfn] = level; t.count[mfn] = 1;
    const rc = this.validate(v, mfn, level);
    if (rc) { t.type[mfn] = PGT_none; t.count[mfn] = 0; return rc; }
    t.everPt[mfn] = 1;
    return 0;
  }

  putPageType(v: Vcpu, mfn: number): void {
    const t = this.types;
    if (!this.d.isRam(mfn) || t.count[mfn] === 0) return;
    if (--t.count[mfn]! > 0) return;
    const level = t.type[mfn]!;
    t.type[mfn] = PGT_none;
    if (level > PGT_l1) {
      const base = mfn * 4096;
      for (let i = 0; i < 512; i++) {
        if (level === 4 && i >= 256 && i < 272) continue;
        const e = v.readPte(base + i * 8);
        if (e & _PAGE_PRESENT) this.putPageType(v, Number((e & PADDR_MASK) >> 12n));
      }
    }
  }

  /** alloc_lN_table: check and adjust every entry of a frame becoming a level-`level` table. */
  private validate(v: Vcpu, mfn: number, level: number): number {
    const base = mfn * 4096;
    const wasPt = this.types.everPt[mfn] !== 0;
    const taken: number[] = [];
    const writes: [number, bigint][] = [];
    for (let i = 0; i < 512; i++) {
      const gpa = base + i * 8;
      const e = v.readPte(gpa);
      if (level === 4 && i >= 256 && i < 272) {
        const want = this.monitorL4.get(i) ?? 0n;
        if (e !== want) writes.push([gpa, want]);
        continue;
      }
      if (!(e & _PAGE_PRESENT)) continue;
      const target = Number((e & PADDR_MASK) >> 12n);
      if (level === 1) {
        if (!this.l1TargetOk(target)) { this.d.trace.log(`  mm: L1 ${hex(mfn)}[${i}] maps bad frame ${hex(target)}`); this.undo(v, taken); return -XEN_EINVAL; }
        const a = this.adjustL1(e);
        if (a !== e) writes.push([gpa, a]);
        continue;
      }
      if (e & _PAGE_PSE) { this.d.trace.log(`  mm: superpage in ${LEVEL_NAME[level]} ${hex(mfn)}[${i}]`); this.undo(v, taken); return -XEN_EINVAL; }
      const rc = this.getPageType(v, target, level - 1);
      if (rc) { this.undo(v, taken); return rc; }
      taken.push(target);
      const a = this.adjustUpper(e, level);
      if (a !== e) writes.push([gpa, a]);
    }
    for (const [gpa, val] of writes) {
      if (wasPt) v.queuePteWrite(gpa, val); else this.d.mem.write64(gpa, val);
    }
    return 0;
  }
  private undo(v: Vcpu, taken: number[]): void { for (const t of taken) this.putPageType(v, t); }

  // ---- single-entry updates (mod_lN_entry) ----

  /** Update one entry of a frame typed as `level`. */
  modEntry(v: Vcpu, gpa: number, newVal: bigint, level: number, preserveAd: boolean): number {
    const old = v.readPte(gpa);
    if (preserveAd) newVal |= old & (_PAGE_ACCESSED | _PAGE_DIRTY);
    if (level === 1) {
      if (newVal & _PAGE_PRESENT) {
        const target = Number((newVal & PADDR_MASK) >> 12n);
        if (!this.l1TargetOk(target)) return -XEN_EINVAL;
        newVal = this.adjustL1(newVal);
      }
      this.writeEntry(v, gpa, newVal);
      return 0;
    }
    const slot = (gpa & 0xfff) >>> 3;
    if (level === 4 && slot >= 256 && slot < 272) return -XEN_EINVAL;
    const oldTarget = (old & _PAGE_PRESENT) ? Number((old & PADDR_MASK) >> 12n) : -1;
    let newTarget = -1;
    if (newVal & _PAGE_PRESENT) {
      if (newVal & _PAGE_PSE) return -XEN_EINVAL;
      newTarget = Number((newVal & PADDR_MASK) >> 12n);
      if (newTarget !== oldTarget) {
        const rc = this.getPageType(v, newTarget, level - 1);
        if (rc) return rc;
      }
      newVal = this.adjustUpper(newVal, level);
    }
    this.writeEntry(v, gpa, newVal);
    if (oldTarget >= 0 && oldTarget !== newTarget) this.putPageType(v, oldTarget);
    return 0;
  }

  // ---- hypercalls ----

  /** get_pg_owner (xen/arch/x86/mm.c): only DOMID_SELF; naming oneself is refused too ("Cannot specify itself as foreign domain"). */
  private pgOwner(foreigndom: bigint): number {
    const dom = Number(foreigndom & 0xffffn);
    if (dom === DOMID_SELF) return 0;
    return dom === 0 || dom >= 0x7ff0 ? -XEN_EPERM : -XEN_ESRCH;
  }

  /** mmu_update(reqs, count, pdone, foreigndom). */
  do_mmu_update(v: Vcpu, reqs: bigint, count: bigint, pdone: bigint, foreigndom: bigint): number {
    { const rc = this.pgOwner(foreigndom); if (rc) return rc; }
    const gv = this.d.guestVirt(v);
    const n = Number(count & 0xffffffffn);
    let done = 0, rc = 0;
    for (; done < n; done++) {
      const req = gv.view(reqs + BigInt(done * 16), 16);
      const ptr = req.getBigUint64(0, true), val = req.getBigUint64(8, true);
      const cmd = Number(ptr & 7n); // Xen: req.ptr & (sizeof(l1_pgentry_t)-1)
      const ma = Number(ptr & ~7n);
      if (cmd === MMU_MACHPHYS_UPDATE) {
        const mfn = ma >>> 12;
        if (!this.d.isRam(mfn)) { rc = -XEN_EINVAL; break; }
        this.d.mem.write64(this.d.plan.m2pBase + mfn * 8, val);
        continue;
      }
      if (cmd !== MMU_NORMAL_PT_UPDATE && cmd !== MMU_PT_UPDATE_PRESERVE_AD && cmd !== MMU_PT_UPDATE_NO_TRANSLATE) { rc = -XEN_ENOSYS; break; }
      if ((ma & 7) !== 0 || !this.d.isRam(ma >>> 12)) { rc = -XEN_EINVAL; break; }
      const mfn = ma >>> 12;
      const level = this.types.type[mfn]!;
      if (level === PGT_none) {
        // A plain write to a page that is not a page table (Xen: PGT_writable_page).
        this.writeEntry(v, ma, val);
        continue;
      }
      rc = this.modEntry(v, ma, val, level, cmd === MMU_PT_UPDATE_PRESERVE_AD);
      this.d.trace.log(`  mmu_update ${LEVEL_NAME[level]} ${hex(ma)} <- ${hex(val)}${rc ? ` rc=${rc}` : ''}`);
      if (rc) break;
    }
    if (pdone !== 0n) { try { gv.write32(pdone, done); } catch { return -XEN_EFAULT; } }
    return rc;
  }

  private validMfnArg(arg: bigint): number { const m = Number(arg & 0xfffffffffn); return this.d.isRam(m) ? m : -1; }

  /** mmuext_op(ops, count, pdone, foreigndom). */
  do_mmuext_op(v: Vcpu, ops: bigint, count: bigint, pdone: bigint, foreigndom: bigint): number {
    { const rc = this.pgOwner(foreigndom); if (rc) return rc; }
    const gv = this.d.guestVirt(v);
    const n = Number(count & 0xffffffffn);
    let done = 0, rc = 0;
    const t = this.types;
    for (; done < n && rc === 0; done++) {
      const o = gv.view(ops + BigInt(done * 24), 24);
      const cmd = o.getUint32(0, true), arg1 = o.getBigUint64(8, true), arg2 = o.getBigUint64(16, true);
      switch (cmd) {
        case MMUEXT_PIN_L1_TABLE: case MMUEXT_PIN_L2_TABLE: case MMUEXT_PIN_L3_TABLE: case MMUEXT_PIN_L4_TABLE: {
          const mfn = this.validMfnArg(arg1);
          if (mfn < 0) { rc = -XEN_EINVAL; break; }
          if (t.pinned[mfn]) { rc = -XEN_EINVAL; break; }
          rc = this.getPageType(v, mfn, cmd - MMUEXT_PIN_L1_TABLE + 1);
          if (!rc) t.pinned[mfn] = 1;
          this.d.trace.log(`  pin ${LEVEL_NAME[cmd + 1]} ${hex(mfn)}${rc ? ` rc=${rc}` : ''}`);
          break;
        }
        case MMUEXT_UNPIN_TABLE: {
          const mfn = this.validMfnArg(arg1);
          if (mfn < 0 || !t.pinned[mfn]) { rc = -XEN_EINVAL; break; }
          t.pinned[mfn] = 0;
          this.putPageType(v, mfn);
          break;
        }
        case MMUEXT_NEW_BASEPTR: {
          const mfn = this.validMfnArg(arg1);
          rc = mfn < 0 ? -XEN_EINVAL : this.newBaseptr(v, mfn);
          break;
        }
        case MMUEXT_NEW_USER_BASEPTR: {
          const raw = Number(arg1 & 0xfffffffffn);
          if (raw === 0) { const old = v.guestTableUser; v.guestTableUser = 0; if (old) this.putPageType(v, old); break; }
          const mfn = this.validMfnArg(arg1);
          if (mfn < 0) { rc = -XEN_EINVAL; break; }
          rc = this.getPageType(v, mfn, PGT_l4);
          if (rc) break;
          const old = v.guestTableUser;
          v.guestTableUser = mfn;
          if (old) this.putPageType(v, old);
          break;
        }
        case MMUEXT_TLB_FLUSH_LOCAL: case MMUEXT_TLB_FLUSH_MULTI: case MMUEXT_TLB_FLUSH_ALL:
          v.queueFlushTlb(); break;
        case MMUEXT_INVLPG_LOCAL: case MMUEXT_INVLPG_MULTI: case MMUEXT_INVLPG_ALL:
          v.queueInvlpg(arg1); break;
        case MMUEXT_FLUSH_CACHE: case MMUEXT_FLUSH_CACHE_GLOBAL:
          break;
        case MMUEXT_SET_LDT: {
          const ents = Number(arg2 & 0xffffffffn);
          if ((arg1 & 0xfffn) !== 0n || ents > 8192) { rc = -XEN_EINVAL; break; }
          v.ldtBase = arg1; v.ldtEnts = ents;
          if (ents) this.d.trace.warn('set_ldt', `MMUEXT_SET_LDT with ${ents} entries: LDTs are not loaded yet; LDT selectors will fault`);
          break;
        }
        case MMUEXT_CLEAR_PAGE: {
          const mfn = this.validMfnArg(arg1);
          if (mfn < 0 || t.type[mfn]) { rc = -XEN_EINVAL; break; }
          this.d.mem.fill(mfn * 4096, 4096, 0); break;
        }
        case MMUEXT_COPY_PAGE: {
          const dst = this.validMfnArg(arg1), src = this.validMfnArg(arg2);
          if (dst < 0 || src < 0 || t.type[dst]) { rc = -XEN_EINVAL; break; }
          this.d.mem.u8.copyWithin(dst * 4096, src * 4096, src * 4096 + 4096); break;
        }
        default:
          this.d.trace.warn(`mmuext_${cmd}`, `mmuext_op: unimplemented command ${cmd}`);
          rc = -XEN_ENOSYS;
      }
      if (rc) break;
    }
    if (pdone !== 0n) { try { gv.write32(pdone, done); } catch { return -XEN_EFAULT; } }
    return rc;
  }

  /** new_guest_cr3: load a new kernel root (MMUEXT_NEW_BASEPTR, or MOV to CR3). */
  newBaseptr(v: Vcpu, mfn: number): number {
    if (!this.d.isRam(mfn) || !v.kernelMode) return -XEN_EINVAL;
    const rc = this.getPageType(v, mfn, PGT_l4);
    if (rc) return rc;
    const old = v.guestTable;
    v.guestTable = mfn;
    v.queueCr3(mfn);
    if (old) this.putPageType(v, old);
    return 0;
  }

  /** update_va_mapping(va, val, flags) (__do_update_va_mapping). */
  do_update_va_mapping(v: Vcpu, va: bigint, val: bigint, flags: bigint): number {
    const l1e = this.l1eFor(v, va);
    if (l1e < 0) return -XEN_EINVAL;
    const rc = this.modEntry(v, l1e, val, 1, false);
    if (rc) return rc;
    const f = Number(flags & BigInt(UVMF_FLUSHTYPE_MASK));
    if (f === UVMF_TLB_FLUSH) v.queueFlushTlb();
    else if (f === UVMF_INVLPG) v.queueInvlpg(va);
    return 0;
  }

  /** GPA of the L1 entry mapping `va` in the current kernel tables, if that L1 is a validated L1 table; -1 otherwise. */
  l1eFor(v: Vcpu, va: bigint): number {
    let table = v.guestTable * 4096;
    if (!table) return -1;
    for (let level = 4; level > 1; level--) {
      const idx = Number((va >> BigInt(12 + 9 * (level - 1))) & 511n);
      const e = v.readPte(table + idx * 8);
      if (!(e & _PAGE_PRESENT) || (e & _PAGE_PSE)) return -1;
      table = Number(e & PADDR_MASK);
      if (!this.d.isRam(table >>> 12)) return -1;
    }
    if (this.types.type[table >>> 12] !== PGT_l1) return -1;
    return table + Number((va >> 12n) & 511n) * 8;
  }

  /**
   * A write fault by the kernel on a read-only mapping: if the page is a validated L1 table,
   * emulate the write (ptwr_do_page_fault). Returns true if handled.
   */
  ptwrFault(v: Vcpu, cr2: bigint, errorCode: bigint): boolean {
    if ((errorCode & 3n) !== 3n || !v.kernelMode) return false; // present + write
    const w = walk(this.d.mem, (g) => v.readPte(g), v.cr3, cr2);
    if (!w) return false;
    const frame = w.gpa >>> 12;
    if (this.types.type[frame] !== PGT_l1) return false;
    let bytes: Uint8Array;
    try { bytes = this.d.guestVirt(v).copyFrom(v.frame.rip, 15); } catch (e) {
      if (e instanceof GuestFault) return false; throw e;
    }
    const ins = decode(bytes);
    if (!ins) return false;
    const pteGpa = w.gpa & ~7;
    const off = (w.gpa & 7) * 8;
    const old = v.readPte(pteGpa);
    const byteOp = ins.opcode.length === 1 ? [0x80, 0x88, 0x20, 0x08, 0x86, 0xc6].includes(ins.opcode[0]!) : ins.opcode[1] === 0xb0;
    const width = byteOp ? 8 : ins.rex & 8 ? 64 : ins.opsize16 ? 16 : 32;
    const mask = width === 64 ? (1n << 64n) - 1n : (1n << BigInt(width)) - 1n;
    if (off + width > 64) return false; // straddles two entries
    const oldPart = (old >> BigInt(off)) & mask;
    const reg = (x: number) => x === 4 ? v.frame.rsp : v.regs[X86_REG_TO_KVM[x]!]!;
    const setReg = (x: number, val: bigint) => { if (x !== 4) v.regs[X86_REG_TO_KVM[x]!] = val; };
    let newPart: bigint;
    let after: (() => void) | undefined;
    const op = ins.opcode;
    if (op.length === 1 && (op[0] === 0x89 || op[0] === 0x88)) newPart = reg(ins.reg) & mask;        // mov r, m
    else if (op.length === 1 && (op[0] === 0xc7 || op[0] === 0xc6) && ins.reg === 0) newPart = BigInt.asUintN(width, ins.imm); // mov imm, m
    else if (op.length === 1 && op[0] === 0x87) {                                                   // xchg r, m
      newPart = reg(ins.reg) & mask;
      after = () => setReg(ins.reg, width === 64 ? oldPart : (reg(ins.reg) & ~mask) | oldPart);
    } else if (op.length === 2 && op[0] === 0x0f && op[1] === 0xb1) {                               // cmpxchg r, m
      const acc = v.regs[0]! & mask;
      if (acc === oldPart) { newPart = reg(ins.reg) & mask; v.frame.rflags |= 0x40n; }
      else { v.frame.rflags &= ~0x40n; v.regs[0] = width === 64 ? oldPart : (v.regs[0]! & ~mask) | oldPart; v.frame.rip += BigInt(ins.length); return true; }
    } else if (op.length === 1 && (op[0] === 0x80 || op[0] === 0x81 || op[0] === 0x83) && (ins.reg & 7) === 4) newPart = oldPart & BigInt.asUintN(width, ins.imm); // and imm
    else if (op.length === 1 && (op[0] === 0x80 || op[0] === 0x81 || op[0] === 0x83) && (ins.reg & 7) === 1) newPart = oldPart | BigInt.asUintN(width, ins.imm);  // or imm
    else if (op.length === 1 && (op[0] === 0x21 || op[0] === 0x20)) newPart = oldPart & reg(ins.reg) & mask;                     // and r, m
    else if (op.length === 1 && (op[0] === 0x09 || op[0] === 0x08)) newPart = (oldPart | reg(ins.reg)) & mask;                     // or r, m
    else if (op.length === 2 && op[0] === 0x0f && op[1] === 0xba && (ins.reg & 7) === 6) {          // btr imm, m
      const b = ins.imm & BigInt(width - 1);
      if ((oldPart >> b) & 1n) v.frame.rflags |= 1n; else v.frame.rflags &= ~1n;
      newPart = oldPart & ~(1n << b);
    } else if (op.length === 2 && op[0] === 0x0f && op[1] === 0xb3) {                               // btr r, m
      const b = reg(ins.reg) & BigInt(width - 1);
      if ((oldPart >> b) & 1n) v.frame.rflags |= 1n; else v.frame.rflags &= ~1n;
      newPart = oldPart & ~(1n << b);
    } else {
      this.d.trace.warn('ptwr_insn', `ptwr: cannot emulate instruction ${[...bytes.subarray(0, ins.length)].map((x) => x.toString(16).padStart(2, '0')).join(' ')} at ${hex(v.frame.rip)}`);
      return false;
    }
    const newVal = (old & ~(mask << BigInt(off))) | ((newPart & mask) << BigInt(off));
    const rc = this.modEntry(v, pteGpa, newVal, 1, false);
    this.d.trace.log(`  ptwr ${hex(pteGpa)}: ${hex(old)} -> ${hex(newVal)}${rc ? ` rc=${rc}` : ''}`);
    if (rc) return false;
    after?.();
    v.frame.rip += BigInt(ins.length);
    return true;
  }

  /**
   * A kernel-mode protection fault where the mapping is present at every level but some level
   * lacks _PAGE_USER: an entry escaped Xen's adjustments (written while its table was untyped).
   * Adjust it and retry. Returns true if something was fixed.
   */
  fixupUserBits(v: Vcpu, va: bigint): boolean {
    let table = v.cr3 * 4096;
    let fixed = false;
    for (let level = 4; level >= 1; level--) {
      const gpa = table + Number((va >> BigInt(12 + 9 * (level - 1))) & 511n) * 8;
      if (gpa + 8 > this.d.mem.size) return false;
      const e = v.readPte(gpa);
      if (!(e & _PAGE_PRESENT)) return false;
      if (!(e & _PAGE_USER)) {
        if (level === 4 && ((gpa & 0xfff) >>> 3) >= 256 && ((gpa & 0xfff) >>> 3) < 272) return false;
        v.queuePteWrite(gpa, level === 1 ? this.adjustL1(e) : this.adjustUpper(e, level));
        this.types.everPt[table >>> 12] = 1;
        fixed = true;
      }
      table = Number(e & PADDR_MASK);
    }
    if (fixed) v.queueInvlpg(va);
    return fixed;
  }

  /** Used by the builder: the boot tables are pinned as the toolstack pins them (bootlate_pv). */
  pinBootTable(v: Vcpu, l4mfn: number): number {
    const rc = this.getPageType(v, l4mfn, PGT_l4);
    if (!rc) this.types.pinned[l4mfn] = 1;
    return rc;
  }
}

