// Emulation of what a ring-3 PV kernel cannot execute: privileged instructions (#GP) and Xen's forced-emulation CPUID (#UD) (xen/arch/x86/pv/emul-priv-op.c, emul-inv-op.c, xen/arch/x86/msr.c).
import { R } from '../kvm/kvm.js';
import { GuestFault } from '../memory/fault.js';
import { isCanonical } from '../memory/guest-virt.js';
import { XEN_EMULATE_PREFIX } from '../abi/xen.js';
import { hex } from '../trace/trace.js';
import { cpuidLookup } from './cpuid.js';
import type { Domain } from './domain.js';
import type { Platform } from './platform.js';
import { do_fpu_taskswitch, MSR_FS_BASE, MSR_GS_BASE, MSR_SHADOW_GS_BASE } from './traps.js';
import type { Mm } from './mm.js';
import type { Vcpu } from './vcpu.js';
import { decode, X86_REG_TO_KVM } from './x86_decode.js';

export const MSR_IA32_TSC = 0x10, MSR_IA32_APIC_BASE = 0x1b, MSR_IA32_UCODE_REV = 0x8b, MSR_IA32_MISC_ENABLE = 0x1a0,
  MSR_IA32_CR_PAT = 0x277, MSR_EFER = 0xc0000080, MSR_STAR = 0xc0000081, MSR_LSTAR = 0xc0000082, MSR_CSTAR = 0xc0000083,
  MSR_SYSCALL_MASK = 0xc0000084, MSR_TSC_AUX = 0xc0000103, MSR_IA32_BIOS_SIGN_ID = 0x8b, MSR_AMD64_PATCH_LEVEL = 0x8b;
/** Xen's PAT for PV guests: WB, WT, UC-, UC, WC, WP, UC, UC (XEN_MSR_PAT). */
export const XEN_MSR_PAT = 0x0000050100070406n;
export const GUEST_EFER = 0xd01n; // SCE | LME | LMA | NXE

const CR0_BASE = 0x80050033n; // PG | AM | WP | NE | ET | MP | PE

/** Read `n` instruction bytes at the guest's RIP (through its current page tables). */
function fetch(d: Domain, v: Vcpu, n: number): Uint8Array | undefined {
  try { return d.guestVirt(v).copyFrom(v.frame.rip, n); } catch (e) {
    if (e instanceof GuestFault) {
      // The instruction may end right before an unmapped page: fetch what is there.
      for (let k = n - 1; k > 0; k--) { try { return d.guestVirt(v).copyFrom(v.frame.rip, k); } catch { /* shorter */ } }
      return undefined;
    }
    throw e;
  }
}

const regGet = (v: Vcpu, x86reg: number): bigint => x86reg === 4 ? v.frame.rsp : v.regs[X86_REG_TO_KVM[x86reg]!]!;
const regSet = (v: Vcpu, x86reg: number, val: bigint): void => {
  if (x86reg === 4) v.frame.rsp = BigInt.asUintN(64, val); else v.regs[X86_REG_TO_KVM[x86reg]!] = BigInt.asUintN(64, val);
};

/** Forced-emulation CPUID: ud2; .ascii "xen"; cpuid. Returns true if handled. */
export function emulateForcedInvalidOp(d: Domain, v: Vcpu, p: Platform): boolean {
  const b = fetch(d, v, 7);
  if (!b || b.length < 7) return false;
  for (let i = 0; i < 5; i++) if (b[i] !== XEN_EMULATE_PREFIX[i]) return false;
  if (b[5] !== 0x0f || b[6] !== 0xa2) return false;
  const leaf = Number(v.regs[R.rax]! & 0xffffffffn), sub = Number(v.regs[R.rcx]! & 0xffffffffn);
  const [a, bx, c, dx] = cpuidLookup(p.cpuid, leaf, sub, true, v.xcr0);
  v.regs[R.rax] = BigInt(a); v.regs[R.rbx] = BigInt(bx); v.regs[R.rcx] = BigInt(c); v.regs[R.rdx] = BigInt(dx);
  v.frame.rip += 7n;
  d.trace.log(`  cpuid(${hex(leaf)}, ${sub}) = ${hex(a)} ${hex(bx)} ${hex(c)} ${hex(dx)}`);
  return true;
}

export type MsrResult = bigint | undefined; // undefined → #GP

export function readMsr(d: Domain, v: Vcpu, p: Platform, msr: number): MsrResult {
  switch (msr) {
    // The guest kernel only runs in kernel mode here: GS_BASE is the kernel's, SHADOW_GS_BASE the user's.
    case MSR_FS_BASE: return v.fsBase;
    case MSR_GS_BASE: return v.gsBase;
    case MSR_SHADOW_GS_BASE: return v.inactiveGsBase;
    case MSR_IA32_TSC: case MSR_TSC_AUX: {
      v.flushOps();
      return p.readHardwareMsr(v, msr);
    }
    case MSR_EFER: return GUEST_EFER;
    case MSR_IA32_APIC_BASE: return 0xfee00800n | (v.id === 0 ? 0x100n : 0n);
    case MSR_IA32_CR_PAT: return XEN_MSR_PAT;
    case MSR_IA32_MISC_ENABLE: return (1n << 11n) | (1n << 12n); // BTS and PEBS unavailable
    case MSR_IA32_UCODE_REV: return 0n;
    case MSR_STAR: case MSR_LSTAR: case MSR_CSTAR: case MSR_SYSCALL_MASK: return 0n;
    default: return undefined;
  }
}

/** Returns false when the write must raise #GP. */
export function writeMsr(d: Domain, v: Vcpu, msr: number, val: bigint): boolean {
  switch (msr) {
    case MSR_FS_BASE: case MSR_GS_BASE: case MSR_SHADOW_GS_BASE:
      if (!isCanonical(val)) return false;
      if (msr === MSR_FS_BASE) v.fsBase = val; else if (msr === MSR_GS_BASE) v.gsBase = val; else v.inactiveGsBase = val;
      return true;
    case MSR_EFER: return (val & ~0x400n) === (GUEST_EFER & ~0x400n); // only the current value (LMA is read-only)
    case MSR_IA32_UCODE_REV: return true;                               // microcode-revision probe writes 0
    case MSR_STAR: case MSR_LSTAR: case MSR_CSTAR: case MSR_SYSCALL_MASK: return true; // Xen drops these
    case MSR_IA32_CR_PAT: return val === XEN_MSR_PAT;
    case MSR_IA32_MISC_ENABLE: return true;
    case MSR_TSC_AUX: v.queueWrmsr(msr, val & 0xffffffffn); return true;
    default: return false;
  }
}

export type EmulateResult = 'done' | 'gp' | 'unhandled';

/** A #GP with error code 0 at CPL3: emulate the privileged instruction at RIP (pv_emulate_privileged_op). */
export function emulatePrivilegedOp(d: Domain, v: Vcpu, p: Platform, mm: Mm): EmulateResult {
  const bytes = fetch(d, v, 15);
  if (!bytes) return 'unhandled';
  const ins = decode(bytes);
  if (!ins) return 'unhandled';
  const op = ins.opcode;
  const kernel = v.kernelMode;
  // Virtual IOPL: the kernel counts as CPL1 (pv-abi.md §4.12).
  const ioOk = (kernel ? 1 : 3) <= (v.iopl >> 12);
  const next = () => { v.frame.rip += BigInt(ins.length); return 'done' as const; };
  if (op[0] === 0x0f) {
    const b2 = op[1];
    if (!kernel) return 'gp';
    switch (b2) {
      case 0x32: { // rdmsr
        const msr = Number(v.regs[R.rcx]! & 0xffffffffn);
        const val = readMsr(d, v, p, msr);
        d.trace.log(`  rdmsr ${hex(msr)} = ${val === undefined ? '#GP' : hex(val)}`);
        if (val === undefined) return 'gp';
        v.regs[R.rax] = val & 0xffffffffn; v.regs[R.rdx] = val >> 32n;
        return next();
      }
      case 0x30: { // wrmsr
        const msr = Number(v.regs[R.rcx]! & 0xffffffffn);
        const val = ((v.regs[R.rdx]! & 0xffffffffn) << 32n) | (v.regs[R.rax]! & 0xffffffffn);
        const ok = writeMsr(d, v, msr, val);
        d.trace.log(`  wrmsr ${hex(msr)} <- ${hex(val)}${ok ? '' : ' #GP'}`);
        return ok ? next() : 'gp';
      }
      case 0x20: { // mov from crN
        const cr = ins.reg, dst = ins.rm;
        let val: bigint;
        if (cr === 0) val = CR0_BASE | (v.cr0Ts ? 8n : 0n);
        else if (cr === 2) val = v.cr2;
        else if (cr === 3) val = BigInt(v.guestTable) << 12n;
        else if (cr === 4) val = v.cr4;
        else return 'gp';
        regSet(v, dst, val);
        return next();
      }
      case 0x22: { // mov to crN
        const cr = ins.reg, val = regGet(v, ins.rm);
        if (d.trace.enabled) {
          let st = ''; try { const gv = d.guestVirt(v); st = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9].map((i) => hex(gv.read64(v.frame.rsp + BigInt(i * 8)))).join(' '); } catch { /* unmapped */ }
          d.trace.log(`  mov cr${cr} <- ${hex(val)} (stack ${st})`);
        }
        if (cr === 0) {
          if ((val ^ (CR0_BASE | (v.cr0Ts ? 8n : 0n))) & ~8n) { d.trace.warn('cr0', `guest tried to change CR0 to ${hex(val)}: only TS may change`); return 'gp'; }
          do_fpu_taskswitch(v, val & 8n);
          return next();
        }
        if (cr === 2) { v.cr2 = val; return next(); }
        if (cr === 4) { v.cr4 = p.fixupGuestCr4(val); return next(); }
        if (cr === 3) return mm.newBaseptr(v, Number((val & 0x000ffffffffff000n) >> 12n)) === 0 ? next() : 'gp'; // new_guest_cr3
        return 'gp';
      }
      case 0x01:
        if (bytes[ins.length - 1] === 0xd1 && ins.mod === 3) { // xsetbv
          const xcr = Number(v.regs[R.rcx]! & 0xffffffffn);
          const val = ((v.regs[R.rdx]! & 0xffffffffn) << 32n) | (v.regs[R.rax]! & 0xffffffffn);
          if (xcr !== 0 || !p.xcr0Valid(val)) return 'gp';
          v.xcr0 = val;
          v.queueXsetbv(0, val);
          return next();
        }
        return 'gp';
      case 0x06: v.cr0Ts = false; return next(); // clts
      case 0x09: case 0x08: return next();       // wbinvd, invd: caches are coherent here
      default: return 'gp';
    }
  }
  // Port I/O: no devices, reads as all-ones, writes ignored (guest_io_read/guest_io_write for a domU without I/O rights).
  const b = op[0]!;
  if (b === 0xe4 || b === 0xe5 || b === 0xec || b === 0xed || b === 0xe6 || b === 0xe7 || b === 0xee || b === 0xef) {
    if (!ioOk) return 'gp';
    const isIn = b === 0xe4 || b === 0xe5 || b === 0xec || b === 0xed;
    const size = (b === 0xe4 || b === 0xec || b === 0xe6 || b === 0xee) ? 1 : ins.opsize16 ? 2 : 4;
    const port = (b === 0xec || b === 0xed || b === 0xee || b === 0xef) ? Number(v.regs[R.rdx]! & 0xffffn) : Number(ins.imm & 0xffn);
    const pit = size === 1 && (port === 0x42 || port === 0x43 || port === 0x61);
    if (isIn) {
      const mask = size === 1 ? 0xffn : size === 2 ? 0xffffn : 0xffffffffn;
      const val = pit ? BigInt(d.pit.read(port)) : mask;
      const rax = v.regs[R.rax]!;
      v.regs[R.rax] = size === 4 ? val : (rax & ~mask) | val;
    } else if (pit) {
      d.pit.write(port, Number(v.regs[R.rax]! & 0xffn));
    }
    return next();
  }
  if (b === 0xfa || b === 0xfb) return ioOk ? next() : 'gp'; // cli/sti: no-ops under virtual IOPL
  return 'gp';
}
