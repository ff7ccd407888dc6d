// KVM objects (system, VM, vCPU) over /dev/kvm ioctls: thin wrappers, nothing else (Firecracker vstate/).
import { HostError } from '../errors.js';
import * as libc from './libc.js';

// ioctl numbers from <linux/kvm.h> (x86-64), checked by test/unit/kvm-abi.test.ts.
export const KVM_GET_API_VERSION = 0xae00;
export const KVM_CREATE_VM = 0xae01;
export const KVM_CHECK_EXTENSION = 0xae03;
export const KVM_GET_VCPU_MMAP_SIZE = 0xae04;
export const KVM_GET_SUPPORTED_CPUID = 0xc008ae05;
export const KVM_SET_USER_MEMORY_REGION = 0x4020ae46;
export const KVM_CREATE_VCPU = 0xae41;
export const KVM_RUN = 0xae80;
export const KVM_GET_REGS = 0x8090ae81;
export const KVM_SET_REGS = 0x4090ae82;
export const KVM_GET_SREGS = 0x8138ae83;
export const KVM_SET_SREGS = 0x4138ae84;
/** _IOR/_IOW(KVMIO, 0xa4/0xa5): struct kvm_xsave is 4096 bytes. */
export const KVM_GET_XSAVE = 0x9000aea4, KVM_SET_XSAVE = 0x5000aea5;
export const KVM_GET_MSRS = 0xc008ae88;
export const KVM_SET_MSRS = 0x4008ae89;
export const KVM_SET_CPUID2 = 0x4008ae90;
export const KVM_GET_TSC_KHZ = 0xaea3;
export const KVM_GET_XCRS = 0x8188aea6;
export const KVM_SET_XCRS = 0x4188aea7;
export const KVM_CAP_SYNC_REGS = 0x4a;
export const KVM_CAP_IMMEDIATE_EXIT = 0x88;
export const KVM_SYNC_X86_REGS = 1, KVM_SYNC_X86_SREGS = 2;

// struct kvm_run offsets
export const RUN_immediate_exit = 0x01;
export const RUN_exit_reason = 0x08;
export const RUN_io = 0x20;            // direction u8, size u8, port u16, count u32, data_offset u64
export const RUN_kvm_valid_regs = 0x120;
export const RUN_kvm_dirty_regs = 0x128;
export const RUN_regs = 0x130;         // struct kvm_regs: 18 x u64
export const RUN_sregs = 0x1c0;        // struct kvm_sregs

export const KVM_EXIT_UNKNOWN = 0, KVM_EXIT_EXCEPTION = 1, KVM_EXIT_IO = 2, KVM_EXIT_HLT = 5,
  KVM_EXIT_MMIO = 6, KVM_EXIT_SHUTDOWN = 8, KVM_EXIT_FAIL_ENTRY = 9, KVM_EXIT_INTR = 10,
  KVM_EXIT_INTERNAL_ERROR = 17, KVM_EXIT_SYSTEM_EVENT = 24;
export const EXIT_REASON_NAMES: Record<number, string> = {
  0: 'UNKNOWN', 1: 'EXCEPTION', 2: 'IO', 5: 'HLT', 6: 'MMIO', 8: 'SHUTDOWN', 9: 'FAIL_ENTRY',
  10: 'INTR', 17: 'INTERNAL_ERROR', 24: 'SYSTEM_EVENT',
};

/** Register indices in struct kvm_regs (and KVM sync regs). */
export const enum R { rax, rbx, rcx, rdx, rsi, rdi, rsp, rbp, r8, r9, r10, r11, r12, r13, r14, r15, rip, rflags }
export const REG_NAMES = ['rax', 'rbx', 'rcx', 'rdx', 'rsi', 'rdi', 'rsp', 'rbp', 'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15', 'rip', 'rflags'];

// struct kvm_sregs offsets: six data segments, tr, ldt (24 bytes each), then gdt/idt {base u64, limit u16}.
export const SREG = { cs: 0x00, ds: 0x18, es: 0x30, fs: 0x48, gs: 0x60, ss: 0x78, tr: 0x90, ldt: 0xa8 } as const;
export const SREGS_gdt = 0xc0, SREGS_idt = 0xd0, SREGS_cr0 = 0xe0, SREGS_cr2 = 0xe8, SREGS_cr3 = 0xf0,
  SREGS_cr4 = 0xf8, SREGS_cr8 = 0x100, SREGS_efer = 0x108, SREGS_apic_base = 0x110, SREGS_size = 0x138;

export interface Segment { base: bigint; limit: number; selector: number; type: number; present: number; dpl: number; db: number; s: number; l: number; g: number; avl?: number; unusable?: number }

export function writeSegment(dv: DataView, off: number, s: Segment): void {
  dv.setBigUint64(off, s.base, true);
  dv.setUint32(off + 8, s.limit, true);
  dv.setUint16(off + 12, s.selector, true);
  dv.setUint8(off + 14, s.type); dv.setUint8(off + 15, s.present); dv.setUint8(off + 16, s.dpl);
  dv.setUint8(off + 17, s.db); dv.setUint8(off + 18, s.s); dv.setUint8(off + 19, s.l);
  dv.setUint8(off + 20, s.g); dv.setUint8(off + 21, s.avl ?? 0); dv.setUint8(off + 22, s.unusable ?? 0);
}
export function readSegment(dv: DataView, off: number): Segment {
  return {
    base: dv.getBigUint64(off, true), limit: dv.getUint32(off + 8, true), selector: dv.getUint16(off + 12, true),
    type: dv.getUint8(off + 14), present: dv.getUint8(off + 15), dpl: dv.getUint8(off + 16), db: dv.getUint8(off + 17),
    s: dv.getUint8(off + 18), l: dv.getUint8(off + 19), g: dv.getUint8(off + 20), avl: dv.getUint8(off + 21), unusable: dv.getUint8(off + 22),
  };
}

function check(rc: number, what: string): number {
  if (rc < 0) throw new HostError(`${what} failed: ${libc.errnoMessage()}`);
  return rc;
}

export interface CpuidEntry { function: number; index: number; flags: number; eax: number; ebx: number; ecx: number; edx: number }

/** /dev/kvm itself. */
export class Kvm {
  readonly fd: number;
  constructor(path = '/dev/kvm') {
    const fd = libc.open(path, libc.O_RDWR | libc.O_CLOEXEC, 0);
    if (fd < 0) {
      const e = libc.errno();
      if (e === 2) throw new HostError(`${path} does not exist: this host has no KVM (load kvm_intel, kvm_amd or kvm_pvm)`);
      if (e === 13 || e === 1) throw new HostError(`no permission to open ${path}: run as root or join the group that owns it`);
      throw new HostError(`cannot open ${path}: ${libc.errnoMessage(e)}`);
    }
    this.fd = fd;
    const v = libc.ioctlInt(fd, KVM_GET_API_VERSION, 0);
    if (v !== 12) throw new HostError(`${path}: unexpected KVM API version ${v}`);
  }
  checkExtension(cap: number): number { return libc.ioctlInt(this.fd, KVM_CHECK_EXTENSION, cap); }
  vcpuMmapSize(): number { return check(libc.ioctlInt(this.fd, KVM_GET_VCPU_MMAP_SIZE, 0), 'KVM_GET_VCPU_MMAP_SIZE'); }
  supportedCpuid(): CpuidEntry[] {
    const n = 256;
    const buf = Buffer.alloc(8 + n * 40);
    buf.writeUInt32LE(n, 0);
    check(libc.ioctlPtr(this.fd, KVM_GET_SUPPORTED_CPUID, buf), 'KVM_GET_SUPPORTED_CPUID');
    const count = buf.readUInt32LE(0);
    const out: CpuidEntry[] = [];
    for (let i = 0; i < count; i++) {
      const o = 8 + i * 40;
      out.push({ function: buf.readUInt32LE(o), index: buf.readUInt32LE(o + 4), flags: buf.readUInt32LE(o + 8),
        eax: buf.readUInt32LE(o + 12), ebx: buf.readUInt32LE(o + 16), ecx: buf.readUInt32LE(o + 20), edx: buf.readUInt32LE(o + 24) });
    }
    return out;
  }
  /**
   * KVM_CREATE_VM can take long enough for a signal to interrupt it (kvm_create_vm's MMU setup
   * returns -EINTR when a signal is pending), e.g. the profiler's SIGPROF under `node --cpu-prof`:
   * retried then, as the call has no side effect when it fails.
   */
  createVm(): Vm {
    const EINTR = 4;
    let fd = libc.ioctlInt(this.fd, KVM_CREATE_VM, 0);
    for (let tries = 0; fd < 0 && libc.errno() === EINTR && tries < 100; tries++) fd = libc.ioctlInt(this.fd, KVM_CREATE_VM, 0);
    return new Vm(this, check(fd, 'KVM_CREATE_VM'));
  }
}

/** A VM: its fd and its memory slots. */
export class Vm {
  constructor(readonly kvm: Kvm, readonly fd: number) {}
  /** Map host memory at `hostAddr` as guest-physical [gpa, gpa+size). */
  setUserMemoryRegion(slot: number, gpa: number, size: number, hostAddr: bigint): void {
    const b = Buffer.alloc(32);
    b.writeUInt32LE(slot, 0); b.writeUInt32LE(0, 4);
    b.writeBigUInt64LE(BigInt(gpa), 8); b.writeBigUInt64LE(BigInt(size), 16); b.writeBigUInt64LE(hostAddr, 24);
    check(libc.ioctlPtr(this.fd, KVM_SET_USER_MEMORY_REGION, b), 'KVM_SET_USER_MEMORY_REGION');
  }
  createVcpu(id: number): number { return check(libc.ioctlInt(this.fd, KVM_CREATE_VCPU, id), 'KVM_CREATE_VCPU'); }
}

/** Anonymous, lazily backed memory for guest RAM: nothing is committed until touched. */
export function allocateGuestMemory(size: number): { addr: bigint; buffer: ArrayBuffer } {
  const p = libc.mmap(null, size, libc.PROT_READ | libc.PROT_WRITE, libc.MAP_PRIVATE | libc.MAP_ANONYMOUS | libc.MAP_NORESERVE, -1, 0);
  const addr = libc.address(p);
  if (addr === 0xffffffffffffffffn || addr === 0n) throw new HostError(`cannot reserve ${size >> 20} MiB of guest memory: ${libc.errnoMessage()}`);
  // SAFETY: the mapping lives as long as the process (guest memory is never unmapped while the VM exists).
  return { addr, buffer: libc.view(p, size) };
}

/** A vCPU: its fd and the shared kvm_run page (with sync regs). */
export class Vcpu {
  readonly fd: number;
  readonly run: ArrayBuffer;
  readonly runView: DataView;
  readonly runU8: Uint8Array;
  /** kvm_run.s.regs.regs as 18 u64: see enum R. */
  readonly regs: BigUint64Array;
  /** The vCPU's TSC frequency in kHz. */
  readonly tscKhz: number;
  constructor(readonly vm: Vm, readonly id: number, fd?: number) {
    this.fd = fd ?? vm.createVcpu(id);
    const size = vm.kvm.vcpuMmapSize();
    const p = libc.mmap(null, size, libc.PROT_READ | libc.PROT_WRITE, libc.MAP_SHARED, this.fd, 0);
    if (libc.address(p) === 0xffffffffffffffffn) throw new HostError(`mmap of kvm_run failed: ${libc.errnoMessage()}`);
    // SAFETY: kvm_run stays mapped for the life of the vCPU fd, which is the life of the process.
    this.run = libc.view(p, size);
    this.runView = new DataView(this.run);
    this.runU8 = new Uint8Array(this.run);
    this.regs = new BigUint64Array(this.run, RUN_regs, 18);
    this.tscKhz = libc.ioctlInt(this.fd, KVM_GET_TSC_KHZ, 0);
    if (vm.kvm.checkExtension(KVM_CAP_SYNC_REGS) & (KVM_SYNC_X86_REGS | KVM_SYNC_X86_SREGS)) {
      this.runView.setBigUint64(RUN_kvm_valid_regs, BigInt(KVM_SYNC_X86_REGS | KVM_SYNC_X86_SREGS), true);
    } else {
      throw new HostError('this KVM lacks KVM_CAP_SYNC_REGS, which pvbox needs');
    }
  }
  /** Enter the guest; returns the exit reason, or KVM_EXIT_INTR when a signal interrupted KVM_RUN. */
  runOnce(): number {
    const rc = libc.ioctlInt(this.fd, KVM_RUN, 0);
    if (rc < 0) {
      const e = libc.errno();
      if (e === libc.EINTR || e === libc.EAGAIN) return KVM_EXIT_INTR;
      throw new HostError(`KVM_RUN failed: ${libc.errnoMessage(e)}`);
    }
    return this.runView.getUint32(RUN_exit_reason, true);
  }
  /** Tell KVM which sync-reg sets the host changed before the next KVM_RUN. */
  markDirty(mask: number): void { this.runView.setBigUint64(RUN_kvm_dirty_regs, BigInt(mask), true); }
  /** The sync-regs copy of struct kvm_sregs, as a DataView offset. */
  get sregsOffset(): number { return RUN_sregs; }
  getSregs(): Buffer {
    const b = Buffer.alloc(SREGS_size);
    check(libc.ioctlPtr(this.fd, KVM_GET_SREGS, b), 'KVM_GET_SREGS');
    return b;
  }
  setSregs(b: Buffer): void { check(libc.ioctlPtr(this.fd, KVM_SET_SREGS, b), 'KVM_SET_SREGS'); }
  /** struct kvm_xsave (4 KiB): the FPU/SSE/AVX state, for save/restore. */
  getXsave(): Buffer { const b = Buffer.alloc(4096); check(libc.ioctlPtr(this.fd, KVM_GET_XSAVE, b), 'KVM_GET_XSAVE'); return b; }
  setXsave(b: Buffer): void { check(libc.ioctlPtr(this.fd, KVM_SET_XSAVE, b), 'KVM_SET_XSAVE'); }
  /** struct kvm_xcrs (XCR0), for save/restore. */
  getXcrs(): Buffer { const b = Buffer.alloc(392); check(libc.ioctlPtr(this.fd, KVM_GET_XCRS, b), 'KVM_GET_XCRS'); return b; }
  setXcrs(b: Buffer): void { check(libc.ioctlPtr(this.fd, KVM_SET_XCRS, b), 'KVM_SET_XCRS'); }
  setRegs(values: bigint[]): void {
    const b = Buffer.alloc(144);
    values.forEach((v, i) => b.writeBigUInt64LE(BigInt.asUintN(64, v), i * 8));
    check(libc.ioctlPtr(this.fd, KVM_SET_REGS, b), 'KVM_SET_REGS');
  }
  setMsrs(msrs: [number, bigint][]): void {
    const b = Buffer.alloc(8 + 16 * msrs.length);
    b.writeUInt32LE(msrs.length, 0);
    msrs.forEach(([i, v], k) => { b.writeUInt32LE(i, 8 + k * 16); b.writeBigUInt64LE(v, 8 + k * 16 + 8); });
    const n = libc.ioctlPtr(this.fd, KVM_SET_MSRS, b);
    if (n !== msrs.length) throw new HostError(`KVM_SET_MSRS set ${n} of ${msrs.length} (first failing: 0x${msrs[Math.max(n, 0)]?.[0].toString(16)})`);
  }
  getMsr(index: number): bigint | undefined {
    const b = Buffer.alloc(8 + 16);
    b.writeUInt32LE(1, 0); b.writeUInt32LE(index, 8);
    const n = libc.ioctlPtr(this.fd, KVM_GET_MSRS, b);
    return n === 1 ? b.readBigUInt64LE(16) : undefined;
  }
  setCpuid(entries: CpuidEntry[]): void {
    const b = Buffer.alloc(8 + entries.length * 40);
    b.writeUInt32LE(entries.length, 0);
    entries.forEach((e, i) => {
      const o = 8 + i * 40;
      b.writeUInt32LE(e.function, o); b.writeUInt32LE(e.index, o + 4); b.writeUInt32LE(e.flags, o + 8);
      b.writeUInt32LE(e.eax >>> 0, o + 12); b.writeUInt32LE(e.ebx >>> 0, o + 16); b.writeUInt32LE(e.ecx >>> 0, o + 20); b.writeUInt32LE(e.edx >>> 0, o + 24);
    });
    check(libc.ioctlPtr(this.fd, KVM_SET_CPUID2, b), 'KVM_SET_CPUID2');
  }
}
