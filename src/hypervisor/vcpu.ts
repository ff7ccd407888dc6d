// A PV vCPU's state as Xen keeps it (xen/include/xen/sched.h struct vcpu, arch/x86 struct pv_vcpu) plus the frame pvbox resumes the guest with.
import { R, RUN_sregs as SREGS_BASE, type Vcpu as KvmVcpu } from '../kvm/kvm.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import type { GuestVirt } from '../memory/guest-virt.js';
import {
  HV, MONITOR, OP_CONTINUE, OP_INVLPG, OP_WRITE64, OP_WRITE_CR3, OP_WRMSR, OP_XSETBV, 
  VCPU_AREA, hvVirt, physmapVirt, vcpuAreaOffset,
} from '../monitor/layout.js';

/** Xen's trap_info for one vector (public/xen.h). */
export interface TrapInfo { address: bigint; flags: number; cs: number }

export const X86_EFLAGS_CF = 0x1n, X86_EFLAGS_ZF = 0x40n, X86_EFLAGS_TF = 0x100n, X86_EFLAGS_IF = 0x200n,
  X86_EFLAGS_DF = 0x400n, X86_EFLAGS_IOPL = 0x3000n, X86_EFLAGS_NT = 0x4000n, X86_EFLAGS_RF = 0x10000n,
  X86_EFLAGS_VM = 0x20000n, X86_EFLAGS_AC = 0x40000n, X86_EFLAGS_MBS = 0x2n;
/** Flags a guest may hold (Xen X86_EFLAGS_ALL semantics: arithmetic, TF, IF, DF, IOPL, NT, RF, AC, ID…). */
export const X86_EFLAGS_ALL = 0x3f7fd5n;

/**
 * The guest frame pvbox will resume to, in CPL3 terms. GPRs other than RIP/RSP/RFLAGS live in
 * the KVM sync-regs array (`regs`), which handlers change in place.
 */
export interface GuestFrame { rip: bigint; cs: number; rflags: bigint; rsp: bigint; ss: number }

export class Vcpu {
  /** kernel vs user mode: Xen's TF_kernel_mode. */
  kernelMode = true;
  /** Kernel and user page-table roots (MFNs): Xen's guest_table / guest_table_user. */
  guestTable = 0;
  guestTableUser = 0;
  /** The CR3 the hardware will have once the queued operations ran. */
  cr3 = 0;
  kernelSs = 0xe02b;
  kernelSp = 0n;
  trapCtxt: (TrapInfo | undefined)[] = new Array(256);
  eventCallback = 0n;
  failsafeCallback = 0n;
  syscallCallback = 0n;
  syscall32Callback = 0n;
  sysenterCallback = 0n;
  syscallMaskEvents = false;
  syscall32MaskEvents = false;
  sysenterMaskEvents = false;
  /** GPA of this vCPU's vcpu_info (inside shared_info until VCPUOP_register_vcpu_info). */
  vcpuInfoGpa: number;
  vcpuInfoRegistered = false;
  /** Guest VA of vcpu_runstate_info, or 0. */
  runstateVa = 0n;
  /** Virtual CR0.TS, CR2 and CR4 (Xen pv.ctrlreg). */
  cr0Ts = false;
  cr2 = 0n;
  cr4 = 0n;
  /** The XCR0 the guest loaded with XSETBV (Xen's v->arch.xcr0); 1 (x87 only) until it does. */
  xcr0 = 1n;
  /** Virtual IOPL (PHYSDEVOP_set_iopl) as iopl << 12. */
  iopl = 0;
  debugreg: bigint[] = [0n, 0n, 0n, 0n, 0n, 0n, 0xffff0ff0n, 0x400n];
  /** Singleshot timer deadline in guest system time (ns), or undefined. */
  singleshotDeadline: bigint | undefined;
  /** 10 ms periodic timer that PV vCPUs start with (xen/arch/x86/pv/domain.c), or 0 when stopped. */
  periodicPeriod = 10_000_000n;
  periodicNext = 0n;
  online = true;
  /** GDT frames and entry count (set_gdt). */
  gdtFrames: number[] = [];
  gdtEnts = 0;
  ldtBase = 0n;
  ldtEnts = 0;

  /**
   * The GS base not currently loaded (user GS in kernel mode, kernel GS in user mode). Xen swaps
   * them with SWAPGS on every mode switch; pvbox keeps this one here and loads the other
   * through KVM's sregs, which costs no ring-0 instruction.
   */
  inactiveGsBase = 0n;
  /** KVM's sync-regs copy of sregs was changed and must be loaded on the next entry. */
  private sregsDirty = false;
  private opsHaveCr3 = false;
  private onlyWrites = true;
  private readonly resumeWritesVirt = hvVirt(HV.monitorCode + MONITOR.resumeWrites);

  /** copy_from_guest over this vCPU's current page tables (Domain.guestVirt). */
  guestVirt: GuestVirt | undefined;

  /** The frame to resume with. */
  frame: GuestFrame = { rip: 0n, cs: 0xe033, rflags: 0x202n, rsp: 0n, ss: 0xe02b };

  // ---- the resume list (see monitor.S) ----
  private readonly listGpa: number;
  private readonly listVirt: bigint;
  private readonly listCap: number;
  private readonly iretOnlyVirt = hvVirt(HV.monitorCode + MONITOR.iretOnly);
  private ops: bigint[] = [];
  /** Page-table writes queued but not yet executed: GPA → value (readers must see them). */
  readonly pendingWrites = new Map<number, bigint>();

  constructor(readonly id: number, readonly kvm: KvmVcpu, readonly mem: GuestMemory, readonly hvBase: number) {
    this.vcpuInfoGpa = hvBase + HV.sharedInfo + id * 64;
    const area = vcpuAreaOffset(id);
    // Leave a page of headroom below the list: a fault inside `resume` pushes its frame there.
    this.listGpa = hvBase + area + VCPU_AREA.resume + 0x1000;
    this.listVirt = hvVirt(area + VCPU_AREA.resume + 0x1000);
    this.listCap = Math.floor((VCPU_AREA.resumeEnd - VCPU_AREA.resume - 0x1000) / 8) - 16;
  }

  get regs(): BigUint64Array { return this.kvm.regs; }

  // ---- queueing privileged work for the monitor ----
  private push(op: number, a: bigint, b: bigint): void {
    if (this.ops.length + 3 > this.listCap - 16) this.flushOps();
    if (op === OP_WRITE_CR3) this.opsHaveCr3 = true;
    if (op !== OP_WRITE64) this.onlyWrites = false;
    this.ops.push(BigInt(op), a, b);
  }
  /** Write a page-table entry (or any page KVM may shadow) from inside the guest. */
  queuePteWrite(gpa: number, value: bigint): void {
    this.pendingWrites.set(gpa, value);
    this.push(OP_WRITE64, physmapVirt(gpa), value);
  }
  readPte(gpa: number): bigint { return this.pendingWrites.get(gpa) ?? this.mem.read64(gpa); }
  queueInvlpg(va: bigint): void { this.push(OP_INVLPG, va, 0n); }
  queueCr3(mfn: number): void { this.cr3 = mfn; this.push(OP_WRITE_CR3, BigInt(mfn) << 12n, 0n); }
  /** Switch page-table root without a TLB-flush request: through sregs, unless queued CR3 loads must stay in order. */
  switchCr3(mfn: number): void {
    if (this.opsHaveCr3) { this.queueCr3(mfn); return; }
    this.cr3 = mfn;
    this.kvm.runView.setBigUint64(SREGS_BASE + 0xf0, BigInt(mfn) << 12n, true);
    this.sregsDirty = true;
  }
  get fsBase(): bigint { return this.kvm.runView.getBigUint64(SREGS_BASE + 0x48, true); }
  set fsBase(v: bigint) { this.kvm.runView.setBigUint64(SREGS_BASE + 0x48, BigInt.asUintN(64, v), true); this.sregsDirty = true; }
  /** The GS base currently loaded. */
  get gsBase(): bigint { return this.kvm.runView.getBigUint64(SREGS_BASE + 0x60, true); }
  set gsBase(v: bigint) { this.kvm.runView.setBigUint64(SREGS_BASE + 0x60, BigInt.asUintN(64, v), true); this.sregsDirty = true; }
  queueFlushTlb(): void { this.push(OP_WRITE_CR3, BigInt(this.cr3) << 12n, 0n); }
  queueWrmsr(msr: number, value: bigint): void { this.push(OP_WRMSR, BigInt(msr), BigInt.asUintN(64, value)); }
  queueXsetbv(xcr: number, value: bigint): void { this.push(OP_XSETBV, BigInt(xcr), value); }

  private markDirty(): void {
    this.kvm.markDirty(this.sregsDirty ? 3 : 1);
    this.sregsDirty = false;
  }

  /** monitor.S resume_writes: only page-table stores queued, the shorter loop. */
  private writeWritesList(frame: GuestFrame): void {
    const u64 = this.mem.u64, ops = this.ops, regs = this.kvm.regs;
    let i = this.listGpa / 8;
    u64[i++] = BigInt(ops.length / 3);
    for (let k = 0; k < ops.length; k += 3) { u64[i++] = ops[k + 1]!; u64[i++] = ops[k + 2]!; }
    u64[i++] = regs[R.rax]!; u64[i++] = regs[R.rcx]!; u64[i++] = regs[R.rdx]!;
    u64[i++] = frame.rip; u64[i++] = BigInt(frame.cs); u64[i++] = frame.rflags; u64[i++] = frame.rsp; u64[i++] = BigInt(frame.ss);
    this.ops = [];
    this.onlyWrites = true;
    regs[R.rip] = this.resumeWritesVirt;
    regs[R.rsp] = this.listVirt;
    regs[R.rflags] = 0x2n;
  }

  /** Write the list and an IRETQ frame, and point the vCPU at monitor.S `resume`. */
  private writeList(frame: GuestFrame | undefined): void {
    const u64 = this.mem.u64;
    let i = this.listGpa / 8;
    const ops = this.ops;
    for (let k = 0; k < ops.length; k++) u64[i++] = ops[k]!;
    const regs = this.kvm.regs;
    if (frame) {
      u64[i++] = 0n;
      u64[i++] = regs[R.rax]!; u64[i++] = regs[R.rcx]!; u64[i++] = regs[R.rdx]!;
      u64[i++] = frame.rip; u64[i++] = BigInt(frame.cs); u64[i++] = frame.rflags; u64[i++] = frame.rsp; u64[i++] = BigInt(frame.ss);
    } else {
      u64[i++] = BigInt(OP_CONTINUE); u64[i++] = 0n; u64[i++] = 0n;
    }
    this.ops = [];
    this.opsHaveCr3 = false;
    this.onlyWrites = true;
    regs[R.rip] = hvVirt(HV.monitorCode + MONITOR.resume);
    regs[R.rsp] = this.listVirt;
    regs[R.rflags] = 0x2n;
  }

  /** Prepare KVM state so the next KVM_RUN executes the queued operations and returns to `frame`. */
  prepareResume(): void {
    if (this.ops.length === 0) {
      // Nothing privileged to do: one IRETQ (every ring-0 instruction is costly on PVM).
      const u64 = this.mem.u64, f = this.frame, regs = this.kvm.regs;
      let i = this.listGpa / 8;
      u64[i++] = f.rip; u64[i++] = BigInt(f.cs); u64[i++] = f.rflags; u64[i++] = f.rsp; u64[i++] = BigInt(f.ss);
      regs[R.rip] = this.iretOnlyVirt; regs[R.rsp] = this.listVirt; regs[R.rflags] = 0x2n;
      this.markDirty();
      return;
    }
    if (this.onlyWrites) this.writeWritesList(this.frame); else this.writeList(this.frame);
    this.pendingWrites.clear();
    this.markDirty();
  }

  /** Run the queued operations now (the list is full, or later work must see them in memory). */
  flushOps(): void {
    if (this.ops.length === 0) return;
    const saved = this.kvm.regs.slice();
    this.writeList(undefined);
    let dirty = this.sregsDirty ? 3 : 1;
    this.sregsDirty = false;
    for (;;) {
      this.kvm.markDirty(dirty);
      dirty = 0;
      const reason = this.kvm.runOnce();
      if (reason === 10 /* KVM_EXIT_INTR */) continue;
      const port = this.kvm.runView.getUint16(0x20 + 2, true);
      if (reason === 2 /* IO */ && port === 0xf2) break;
      throw new Error(`monitor did not return from a list flush (exit ${reason}, port 0x${port.toString(16)}, rip 0x${this.kvm.regs[R.rip]!.toString(16)})`);
    }
    this.kvm.regs.set(saved);
    this.kvm.markDirty(1);
    this.pendingWrites.clear();
  }


}
