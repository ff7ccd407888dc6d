// Exception, event and syscall bounce frames, the iret hypercall, mode switching and the trap/callback hypercalls (xen/arch/x86/pv/traps.c, iret.c, callback.c, domain.c toggle_guest_mode, x86_64/entry.S create_bounce_frame).
import { GuestFault } from '../memory/fault.js';
import { isCanonical } from '../memory/guest-virt.js';
import { R } from '../kvm/kvm.js';
import { XEN_EINVAL, XEN_ENODEV, XEN_ENOSYS, XEN_EPERM } from '../abi/errno.js';
import {
  CALLBACKF_mask_events, CALLBACKOP_register, CALLBACKOP_unregister, CALLBACKTYPE_event, CALLBACKTYPE_failsafe,
  CALLBACKTYPE_nmi, CALLBACKTYPE_syscall, CALLBACKTYPE_syscall32, CALLBACKTYPE_sysenter,
} from '../abi/callback.js';
import { HYPERVISOR_VIRT_END, HYPERVISOR_VIRT_START, SEGBASE_FS, SEGBASE_GS_KERNEL, SEGBASE_GS_USER, SEGBASE_GS_USER_SEL, VGCF_in_syscall } from '../abi/xen.js';
import { hex } from '../trace/trace.js';
import type { Domain } from './domain.js';
import {
  type GuestFrame, type Vcpu, X86_EFLAGS_AC, X86_EFLAGS_IF, X86_EFLAGS_IOPL, X86_EFLAGS_MBS,
  X86_EFLAGS_NT, X86_EFLAGS_RF, X86_EFLAGS_TF, X86_EFLAGS_VM, X86_EFLAGS_ALL,
} from './vcpu.js';

export const FLAT_KERNEL_CS = 0xe033, FLAT_KERNEL_SS = 0xe02b, FLAT_USER_CS32 = 0xe023;
export const MSR_FS_BASE = 0xc0000100, MSR_GS_BASE = 0xc0000101, MSR_SHADOW_GS_BASE = 0xc0000102;

/** Vectors for which the CPU pushes an error code (X86_EXC_HAVE_EC). */
export const HAVE_EC = new Set([8, 10, 11, 12, 13, 14, 17, 21, 29, 30]);
export const TRAP_NAMES = ['#DE', '#DB', 'NMI', '#BP', '#OF', '#BR', '#UD', '#NM', '#DF', 'CSO', '#TS', '#NP', '#SS', '#GP', '#PF', '15', '#MF', '#AC', '#MC', '#XM', '#VE', '#CP'];

// ---- vcpu_info access ----
export function upcallMask(d: Domain, v: Vcpu): number { return d.mem.read8(v.vcpuInfoGpa + 1); }
export function setUpcallMask(d: Domain, v: Vcpu, m: number): void { d.mem.write8(v.vcpuInfoGpa + 1, m); }
export function upcallPending(d: Domain, v: Vcpu): number { return d.mem.read8(v.vcpuInfoGpa); }

/** Xen's toggle_guest_mode: switch page-table root and swap the GS bases (as SWAPGS would). */
export function toggleGuestMode(d: Domain, v: Vcpu): void {
  v.kernelMode = !v.kernelMode;
  const active = v.gsBase;
  v.gsBase = v.inactiveGsBase;
  v.inactiveGsBase = active;
  const root = v.kernelMode ? v.guestTable : v.guestTableUser;
  if (!root) { d.crash(`no ${v.kernelMode ? 'kernel' : 'user'} page table to switch to`); return; }
  v.switchCr3(root);
}

/** The kernel's and the user's GS base, wherever each is held now. */
export function setGsBase(v: Vcpu, which: 'kernel' | 'user', base: bigint): void {
  if ((which === 'kernel') === v.kernelMode) v.gsBase = base; else v.inactiveGsBase = base;
}

/**
 * create_bounce_frame: deliver to the guest kernel at `handler` with the interrupted `frame`
 * (and `errorCode` if any). Returns false if the domain had to be crashed.
 */
export function createBounceFrame(d: Domain, v: Vcpu, handler: bigint, errorCode: bigint | undefined, maskEvents: boolean, frame: GuestFrame = v.frame): boolean {
  const wasKernel = v.kernelMode;
  const interruptedRcx = v.regs[R.rcx]!, interruptedR11 = v.regs[R.r11]!;
  const saved = { ...frame };
  let sp: bigint;
  if (wasKernel) sp = saved.rsp;
  else { toggleGuestMode(d, v); sp = v.kernelSp; }
  if (d.shutdownReason) return false;
  sp = BigInt.asUintN(64, sp) & ~15n;
  const slots: bigint[] = [];
  const mask = BigInt(upcallMask(d, v));
  const cs = wasKernel ? saved.cs & ~3 : saved.cs;
  const rflags = (saved.rflags & ~(X86_EFLAGS_IF | X86_EFLAGS_IOPL)) | (mask ? 0n : X86_EFLAGS_IF);
  // Lowest address first: RCX, R11, [error code], RIP, CS|mask<<32, RFLAGS, RSP, SS.
  slots.push(interruptedRcx, interruptedR11);
  if (errorCode !== undefined) slots.push(errorCode);
  slots.push(saved.rip, BigInt(cs) | (mask << 32n), rflags, saved.rsp, BigInt(saved.ss));
  sp -= BigInt(slots.length * 8);
  if (sp >= HYPERVISOR_VIRT_START && sp < HYPERVISOR_VIRT_END + 64n) { d.crash(`bounce frame at ${hex(sp)} inside the hypervisor hole`); return false; }
  const buf = new Uint8Array(slots.length * 8);
  const dv = new DataView(buf.buffer);
  slots.forEach((s, i) => dv.setBigUint64(i * 8, BigInt.asUintN(64, s), true));
  try {
    d.guestVirt(v).copyTo(sp, buf);
  } catch (e) {
    if (e instanceof GuestFault) { d.crash(`cannot write bounce frame at ${hex(sp)} (kernel stack not mapped writable): ${e.message}`); return false; }
    throw e;
  }
  v.frame = {
    rip: handler,
    cs: FLAT_KERNEL_CS,
    rflags: (saved.rflags & ~(X86_EFLAGS_TF | X86_EFLAGS_NT | X86_EFLAGS_RF | X86_EFLAGS_VM | X86_EFLAGS_AC | X86_EFLAGS_IOPL)) | X86_EFLAGS_IF | X86_EFLAGS_MBS,
    rsp: sp,
    ss: FLAT_KERNEL_SS,
  };
  if (maskEvents) setUpcallMask(d, v, 1);
  return true;
}

/** pv_inject_event for an exception vector through the guest's trap table. */
export function injectTrap(d: Domain, v: Vcpu, vector: number, errorCode?: bigint): boolean {
  const ti = v.trapCtxt[vector];
  if (!ti || ti.address === 0n) {
    let stack = '';
    try { const gv = d.guestVirt(v); stack = [0, 1, 2, 3, 4, 5, 6, 7].map((i) => hex(gv.read64(v.frame.rsp + BigInt(i * 8)))).join(' '); } catch { stack = '(unreadable)'; }
    d.crash(`unhandled trap ${TRAP_NAMES[vector] ?? vector} (vector ${vector}) ec=${hex(errorCode ?? 0n)} at rip ${hex(v.frame.rip)} rsp ${hex(v.frame.rsp)} cr2 ${hex(v.cr2)}: no handler registered; stack: ${stack}`);
    return false;
  }
  if (vector === 14) d.mem.write64(v.vcpuInfoGpa + 0x10, v.cr2); // vcpu_info.arch.cr2
  d.trace.log(`  inject ${TRAP_NAMES[vector] ?? vector}${errorCode !== undefined ? ` ec=${hex(errorCode)}` : ''} -> ${hex(ti.address)}`);
  return createBounceFrame(d, v, ti.address, HAVE_EC.has(vector) ? (errorCode ?? 0n) : undefined, (ti.flags & 4) !== 0);
}

/** Deliver a pending event upcall if events are unmasked (entry.S test_guest_events). */
export function deliverPendingEvents(d: Domain, v: Vcpu): void {
  if (d.shutdownReason || v.eventCallback === 0n) return;
  if (upcallPending(d, v) && !upcallMask(d, v)) {
    d.trace.log(`  upcall -> ${hex(v.eventCallback)}`);
    createBounceFrame(d, v, v.eventCallback, undefined, true);
  }
}

/** The iret hypercall (xen/arch/x86/pv/iret.c do_iret). Returns false if the domain crashed. */
export function do_iret(d: Domain, v: Vcpu): boolean {
  const gv = d.guestVirt(v);
  let ctx: DataView;
  try {
    ctx = gv.view(v.frame.rsp, 72);
  } catch (e) {
    if (e instanceof GuestFault) { d.crash(`iret: unreadable iret_context at ${hex(v.frame.rsp)}`); return false; }
    throw e;
  }
  const g = (o: number) => ctx.getBigUint64(o, true);
  const rax = g(0), r11 = g(8), rcx = g(0x10), flags = g(0x18), rip = g(0x20), cs = Number(g(0x28) & 0xffffn), rflags = g(0x30), rsp = g(0x38), ss = Number(g(0x40) & 0xffffn);
  if ((cs & 3) === 3 && v.kernelMode) {
    if (!v.guestTableUser) { d.crash('iret to user mode with no user page table'); return false; }
    toggleGuestMode(d, v);
  }
  if (!isCanonical(rip) || !isCanonical(rsp)) { d.crash(`iret to non-canonical rip ${hex(rip)} / rsp ${hex(rsp)}`); return false; }
  v.frame = {
    rip, rsp,
    cs: cs | 3, ss: ss | 3,
    rflags: (rflags & X86_EFLAGS_ALL & ~(X86_EFLAGS_IOPL | X86_EFLAGS_VM)) | X86_EFLAGS_IF | X86_EFLAGS_MBS,
  };
  setUpcallMask(d, v, (rflags & X86_EFLAGS_IF) ? 0 : 1);
  v.regs[R.rax] = rax;
  if (!(flags & BigInt(VGCF_in_syscall))) { v.regs[R.r11] = r11; v.regs[R.rcx] = rcx; }
  return true;
}

// ---- hypercalls ----

/** set_trap_table (xen/arch/x86/pv/callback.c do_set_trap_table). */
export function do_set_trap_table(d: Domain, v: Vcpu, traps: bigint): number {
  if (traps === 0n) { v.trapCtxt = new Array(256); return 0; }
  const gv = d.guestVirt(v);
  for (let i = 0; i < 256 * 2; i++) {
    const e = gv.view(traps + BigInt(i * 16), 16);
    const address = e.getBigUint64(8, true);
    if (address === 0n) return 0;
    if (!isCanonical(address)) return -XEN_EINVAL;
    const vector = e.getUint8(0);
    v.trapCtxt[vector] = { address, flags: e.getUint8(1), cs: e.getUint16(2, true) | 3 };
  }
  return 0;
}

/** callback_op (xen/arch/x86/pv/callback.c). */
export function do_callback_op(d: Domain, v: Vcpu, cmd: bigint, arg: bigint): number {
  const gv = d.guestVirt(v);
  if (cmd === BigInt(CALLBACKOP_register)) {
    const c = gv.view(arg, 16);
    const type = c.getUint16(0, true), flags = c.getUint16(2, true), address = c.getBigUint64(8, true);
    if (!isCanonical(address)) return -XEN_EINVAL;
    const mask = (flags & CALLBACKF_mask_events) !== 0;
    switch (type) {
      case CALLBACKTYPE_event: v.eventCallback = address; return 0;
      case CALLBACKTYPE_failsafe: v.failsafeCallback = address; return 0;
      case CALLBACKTYPE_syscall: v.syscallCallback = address; v.syscallMaskEvents = mask; return 0;
      case CALLBACKTYPE_syscall32: v.syscall32Callback = address; v.syscall32MaskEvents = mask; return 0;
      case CALLBACKTYPE_sysenter: v.sysenterCallback = address; v.sysenterMaskEvents = mask; return 0;
      case CALLBACKTYPE_nmi: v.trapCtxt[2] = { address, flags: 0, cs: FLAT_KERNEL_CS }; return 0;
      default: return -XEN_ENOSYS;
    }
  }
  if (cmd === BigInt(CALLBACKOP_unregister)) {
    const type = gv.read16(arg);
    if (type === CALLBACKTYPE_nmi) { v.trapCtxt[2] = undefined; return 0; }
    return -XEN_EINVAL;
  }
  return -XEN_ENOSYS;
}

/** stack_switch (xen/arch/x86/pv/misc-hypercalls.c). */
export function do_stack_switch(v: Vcpu, ss: bigint, sp: bigint): number {
  v.kernelSs = Number(ss & 0xffffn) | 3;
  v.kernelSp = sp;
  return 0;
}

/** set_segment_base (xen/arch/x86/pv/misc-hypercalls.c do_set_segment_base). */
export function do_set_segment_base(d: Domain, v: Vcpu, which: bigint, base: bigint): number {
  switch (Number(which)) {
    case SEGBASE_FS:
      if (!isCanonical(base)) return -XEN_EINVAL;
      v.fsBase = base; return 0;
    case SEGBASE_GS_USER:
      if (!isCanonical(base)) return -XEN_EINVAL;
      setGsBase(v, 'user', base); return 0;
    case SEGBASE_GS_KERNEL:
      if (!isCanonical(base)) return -XEN_EINVAL;
      setGsBase(v, 'kernel', base); return 0;
    case SEGBASE_GS_USER_SEL: {
      // Load a selector into the user %gs. Only the null selector (what Linux's load_gs_index uses
      // for 64-bit tasks) is supported by this monitor version; a 64-bit null load keeps the base.
      const sel = Number(base & 0xffffn);
      if ((sel & ~3) === 0) return 0;
      d.trace.warn('gs_user_sel', `set_segment_base(GS_USER_SEL, ${hex(sel)}): non-null user %gs selectors not supported yet`);
      return -XEN_EINVAL;
    }
    default: return -XEN_EINVAL;
  }
}

/** fpu_taskswitch: CR0.TS as the guest sees it. */
export function do_fpu_taskswitch(v: Vcpu, set: bigint): number { v.cr0Ts = set !== 0n; return 0; }

/** set_debugreg / get_debugreg (misc-hypercalls.c): values are kept, not programmed into hardware. */
export function do_set_debugreg(v: Vcpu, reg: bigint, value: bigint): number {
  const r = Number(reg);
  if (r > 7) return -XEN_ENODEV;
  if (r === 4 || r === 5) return -XEN_EINVAL;
  if (r < 4 && !isCanonical(value)) return -XEN_EPERM;
  if (r === 7 && (value >> 32n) !== 0n) return -XEN_EINVAL;
  v.debugreg[r] = value;
  return 0;
}
export function do_get_debugreg(v: Vcpu, reg: bigint): bigint | number {
  const r = Number(reg);
  if (r > 7) return -XEN_ENODEV;
  if (r === 4 || r === 5) return -XEN_EINVAL;
  return v.debugreg[r]!;
}

