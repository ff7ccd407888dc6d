// Guest-virtual access for hypercall arguments: a 4-level page walk of the guest's own tables and copy_from_guest/copy_to_guest (Xen: xen/include/xen/guest_access.h, arch/x86/usercopy.c).
import { GuestFault } from './fault.js';
import type { GuestMemory } from './guest-memory.js';
import { HYPERVISOR_VIRT_END, HYPERVISOR_VIRT_START } from '../abi/xen.js';

const P = 1n, RW = 2n, PS = 0x80n;
const ADDR = 0x000ffffffffff000n;

export interface WalkResult {
  /** GPA of the byte `va` maps to. */
  gpa: number;
  /** Writable at every level. */
  writable: boolean;
  /** GPA of the L1 entry (0 for superpages, which PV guests do not have). */
  l1eGpa: number;
  /** The leaf entry. */
  leaf: bigint;
}

export type PteReader = (gpa: number) => bigint;

/** Xen's __addr_ok: a guest pointer must be canonical and outside the hypervisor's range. */
export function guestAddrOk(va: bigint): boolean {
  const u = BigInt.asUintN(64, va);
  return isCanonical(u) && !(u >= HYPERVISOR_VIRT_START && u < HYPERVISOR_VIRT_END);
}

export function isCanonical(va: bigint): boolean {
  const top = va >> 47n;
  return top === 0n || top === 0x1ffffn;
}

/** Walk the tables rooted at `rootMfn` for `va`; undefined if not mapped. */
export function walk(mem: GuestMemory, readPte: PteReader, rootMfn: number, va: bigint): WalkResult | undefined {
  va = BigInt.asUintN(64, va);
  if (!isCanonical(va)) return undefined;
  let table = rootMfn * 4096;
  let writable = true;
  for (let level = 4; level >= 1; level--) {
    const shift = BigInt(12 + 9 * (level - 1));
    const idx = Number((va >> shift) & 511n);
    const eGpa = table + idx * 8;
    if (eGpa < 0 || eGpa + 8 > mem.size) return undefined;
    const e = readPte(eGpa);
    if (!(e & P)) return undefined;
    if (!(e & RW)) writable = false;
    if (level > 1 && (e & PS)) {
      // Superpage (only the monitor's own slots use them).
      const size = 1n << shift;
      const gpa = Number((e & ADDR & ~(size - 1n)) + (va & (size - 1n)));
      return gpa < mem.size ? { gpa, writable, l1eGpa: 0, leaf: e } : undefined;
    }
    const next = Number(e & ADDR);
    if (level === 1) {
      const gpa = next + Number(va & 0xfffn);
      return gpa < mem.size ? { gpa, writable, l1eGpa: eGpa, leaf: e } : undefined;
    }
    table = next;
  }
  return undefined;
}

/** copy_from_guest / copy_to_guest over the current guest page tables. */
export class GuestVirt {
  constructor(private readonly mem: GuestMemory, private readonly readPte: PteReader, private readonly root: () => number) {}

  translate(va: bigint, write: boolean): number {
    // Guest pointers never reach into the hypervisor's range (Xen's __addr_ok, x86_64/uaccess.h):
    // the monitor, its direct map and the M2P live there.
    const u = BigInt.asUintN(64, va);
    if (u >= HYPERVISOR_VIRT_START && u < HYPERVISOR_VIRT_END) throw new GuestFault(va, `guest address 0x${u.toString(16)} is inside the hypervisor range`);
    const w = walk(this.mem, this.readPte, this.root(), va);
    if (!w) throw new GuestFault(va, `guest address 0x${BigInt.asUintN(64, va).toString(16)} is not mapped`);
    if (write && !w.writable) throw new GuestFault(va, `guest address 0x${BigInt.asUintN(64, va).toString(16)} is read-only`);
    return w.gpa;
  }

  /** Copy `len` bytes from guest VA `va` (may cross pages). */
  copyFrom(va: bigint, len: number): Uint8Array {
    const out = new Uint8Array(len);
    let done = 0;
    while (done < len) {
      const cur = BigInt.asUintN(64, va + BigInt(done));
      const inPage = 4096 - Number(cur & 0xfffn);
      const n = Math.min(inPage, len - done);
      out.set(this.mem.bytes(this.translate(cur, false), n), done);
      done += n;
    }
    return out;
  }

  copyTo(va: bigint, data: Uint8Array): void {
    let done = 0;
    while (done < data.length) {
      const cur = BigInt.asUintN(64, va + BigInt(done));
      const inPage = 4096 - Number(cur & 0xfffn);
      const n = Math.min(inPage, data.length - done);
      this.mem.copyIn(this.translate(cur, true), data.subarray(done, done + n));
      done += n;
    }
  }

  read64(va: bigint): bigint {
    if ((va & 7n) === 0n) return this.mem.read64(this.translate(va, false));
    return new DataView(this.copyFrom(va, 8).buffer).getBigUint64(0, true);
  }
  read32(va: bigint): number {
    if ((va & 0xfffn) <= 0xffcn) return this.mem.read32(this.translate(va, false));
    return new DataView(this.copyFrom(va, 4).buffer).getUint32(0, true);
  }
  read16(va: bigint): number {
    if ((va & 0xfffn) <= 0xffen) return this.mem.read16(this.translate(va, false));
    return new DataView(this.copyFrom(va, 2).buffer).getUint16(0, true);
  }
  write64(va: bigint, v: bigint): void {
    if ((va & 7n) === 0n) { this.mem.write64(this.translate(va, true), v); return; }
    const b = new Uint8Array(8); new DataView(b.buffer).setBigUint64(0, BigInt.asUintN(64, v), true); this.copyTo(va, b);
  }
  write32(va: bigint, v: number): void {
    if ((va & 0xfffn) <= 0xffcn) { this.mem.write32(this.translate(va, true), v); return; }
    const b = new Uint8Array(4); new DataView(b.buffer).setUint32(0, v >>> 0, true); this.copyTo(va, b);
  }
  write16(va: bigint, v: number): void {
    if ((va & 0xfffn) <= 0xffen) { this.mem.write16(this.translate(va, true), v); return; }
    const b = new Uint8Array(2); new DataView(b.buffer).setUint16(0, v, true); this.copyTo(va, b);
  }
  /**
   * A guest struct as a DataView (copy_from_guest of a whole struct). Within one page it is a view
   * of guest memory, not a copy: the vCPU that passed it is stopped while its hypercall runs.
   */
  view(va: bigint, len: number): DataView {
    if (Number(BigInt.asUintN(64, va) & 0xfffn) + len <= 4096) {
      const gpa = this.translate(va, false);
      return new DataView(this.mem.buffer, gpa, len);
    }
    const b = this.copyFrom(va, len);
    return new DataView(b.buffer, b.byteOffset, b.byteLength);
  }
}
