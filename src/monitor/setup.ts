// Writes the ring-0 monitor into a fresh VM: code, IDT, per-vCPU GDT/TSS, its page tables and the M2P (Xen: xen/arch/x86/setup.c, desc.c, traps.c init).
import { readFileSync } from 'node:fs';
import type { GuestMemory } from '../memory/guest-memory.js';
import {
  HV, MONITOR, MONITOR_SLOTS, M2P_SLOT, HV_SLOT, PHYSMAP_SLOT, PAGE_SIZE, MiB, GiB, SEL, VCPU_AREA,
  hvVirt, vcpuAreaOffset, type MemoryPlan,
} from './layout.js';
import { _PAGE_ACCESSED, _PAGE_DIRTY, _PAGE_NX, _PAGE_PRESENT, _PAGE_PSE, _PAGE_RW, _PAGE_USER } from './pte.js';

/** Descriptors of Xen's reserved GDT page (offsets from 0xe000). */
const RESERVED_GDT: [number, bigint][] = [
  [SEL.HYPERVISOR_CS, 0x00af9a000000ffffn],     // ring-0 code, 64-bit
  [SEL.HYPERVISOR_DS, 0x00cf92000000ffffn],     // ring-0 data
  [SEL.FLAT_RING3_CS32 & ~3, 0x00cffa000000ffffn], // ring-3 code, compat
  [SEL.FLAT_RING3_DS & ~3, 0x00cff2000000ffffn],   // ring-3 data
  [SEL.FLAT_RING3_CS64 & ~3, 0x00affa000000ffffn], // ring-3 code, 64-bit (FLAT_KERNEL_CS)
  [SEL.HYPERVISOR_CS32, 0x00cf9a000000ffffn],   // ring-0 code, compat
];

export interface MonitorInfo {
  /** The L4 entries (slot → value) that every guest L4 must carry. */
  l4Entries: Map<number, bigint>;
  /** GPA of the IDT. */
  idtGpa: number;
}

/** Build the monitor's own page tables: one L3 per slot, 2 MiB leaves. */
function buildPageTables(mem: GuestMemory, plan: MemoryPlan): Map<number, bigint> {
  let next = plan.hvBase + HV.pageTables;
  const limit = plan.hvBase + HV.pageTablesEnd;
  const alloc = (): number => {
    if (next >= limit) throw new Error('monitor page-table pool exhausted');
    const p = next; next += PAGE_SIZE; mem.fill(p, PAGE_SIZE, 0); return p;
  };
  const entries = new Map<number, bigint>();
  /** Map [gpa, gpa+len) at the start of `slot` with 2 MiB pages and the given leaf flags. */
  const mapSlot = (slot: number, gpa: number, len: number, leaf: bigint, upper: bigint) => {
    const l3 = alloc();
    entries.set(slot, BigInt(l3) | upper);
    const l2s = new Map<number, number>();
    for (let off = 0; off < len; off += 2 * MiB) {
      const l3i = Math.floor(off / GiB);
      let l2 = l2s.get(l3i);
      if (l2 === undefined) { l2 = alloc(); l2s.set(l3i, l2); mem.write64(l3 + l3i * 8, BigInt(l2) | upper); }
      const l2i = Math.floor((off % GiB) / (2 * MiB));
      mem.write64(l2 + l2i * 8, BigInt(gpa + off) | leaf | _PAGE_PSE);
    }
  };
  const A = _PAGE_PRESENT | _PAGE_ACCESSED;
  // M2P: readable by the guest kernel (which runs at CPL3), never writable.
  mapSlot(M2P_SLOT, plan.m2pBase, plan.m2pBytes, A | _PAGE_USER | _PAGE_NX | _PAGE_DIRTY, A | _PAGE_RW | _PAGE_USER);
  // Hypervisor area: supervisor only; executable (monitor code lives here).
  mapSlot(HV_SLOT, plan.hvBase, HV.size, A | _PAGE_RW | _PAGE_DIRTY, A | _PAGE_RW | _PAGE_USER);
  // The first 2 MiB with 4 KiB pages: only the SYSCALL entry page is guest-executable (read-only),
  // everything else stays supervisor-only (see monitor.S on SYSCALL under PVM).
  {
    const l3 = Number(entries.get(HV_SLOT)! & 0x000ffffffffff000n);
    const l2 = Number(mem.read64(l3) & 0x000ffffffffff000n);
    const l1 = alloc();
    for (let i = 0; i < 512; i++) {
      const off = i * PAGE_SIZE;
      const user = off === HV.monitorCode ? _PAGE_USER : 0n;
      mem.write64(l1 + i * 8, BigInt(plan.hvBase + off) | A | _PAGE_DIRTY | (user ? user : _PAGE_RW));
    }
    mem.write64(l2, BigInt(l1) | A | _PAGE_RW | _PAGE_USER);
  }
  // Direct map of all guest-physical memory for the monitor's own accesses (page-table writes).
  mapSlot(PHYSMAP_SLOT, 0, plan.totalBytes, A | _PAGE_RW | _PAGE_DIRTY | _PAGE_NX, A | _PAGE_RW);
  for (const s of MONITOR_SLOTS) if (!entries.has(s)) throw new Error(`monitor slot ${s} unmapped`);
  return entries;
}

function writeGate(mem: GuestMemory, gpa: number, handler: bigint, dpl: number): void {
  const lo = (handler & 0xffffn) | (BigInt(SEL.HYPERVISOR_CS) << 16n) | (BigInt(0x8e | (dpl << 5)) << 40n) | (((handler >> 16n) & 0xffffn) << 48n);
  mem.write64(gpa, lo);
  mem.write64(gpa + 8, handler >> 32n);
}

export function monitorImage(path: string): Uint8Array { return readFileSync(path); }

export function setupMonitor(mem: GuestMemory, plan: MemoryPlan, code: Uint8Array, nrVcpus: number): MonitorInfo {
  mem.fill(plan.hvBase, HV.size, 0);
  mem.copyIn(plan.hvBase + HV.monitorCode, code);
  // IDT: every vector to its stub. #BP, #OF and INT 0x80 may be raised by CPL3 software (Xen: traps.c init_idt_traps).
  const idtGpa = plan.hvBase + HV.idt;
  for (let v = 0; v < 256; v++) {
    const dpl = v === 3 || v === 4 || v === 0x80 ? 3 : 0;
    writeGate(mem, idtGpa + v * 16, hvVirt(HV.monitorCode + MONITOR.idtStubs + v * MONITOR.idtStubSize), dpl);
  }
  for (let id = 0; id < nrVcpus; id++) {
    const area = plan.hvBase + vcpuAreaOffset(id);
    for (const [sel, desc] of RESERVED_GDT) mem.write64(area + VCPU_AREA.gdt + sel, desc);
    // 64-bit available TSS descriptor at 0xe040 (the CPU marks it busy on LTR; KVM loads TR from sregs).
    const tssVirt = hvVirt(vcpuAreaOffset(id) + VCPU_AREA.tss);
    const limit = 0x67n;
    const lo = limit | ((tssVirt & 0xffffffn) << 16n) | (0x8bn << 40n) | (((tssVirt >> 24n) & 0xffn) << 56n);
    mem.write64(area + VCPU_AREA.gdt + SEL.TSS, lo);
    mem.write64(area + VCPU_AREA.gdt + SEL.TSS + 8, tssVirt >> 32n);
    const tss = area + VCPU_AREA.tss;
    mem.write64(tss + 4, hvVirt(vcpuAreaOffset(id) + VCPU_AREA.stackTop)); // RSP0
    mem.write16(tss + 102, 0x68);                                           // no I/O bitmap
  }
  // M2P: identity for every frame (the P2M is the identity, pv-abi.md §1); unused frames read as INVALID.
  const INVALID_M2P_ENTRY = 0xffffffffffffffffn;
  for (let mfn = 0; mfn <= plan.maxMfn; mfn++) mem.write64(plan.m2pBase + mfn * 8, mfn < plan.nrPages ? BigInt(mfn) : INVALID_M2P_ENTRY);
  return { l4Entries: buildPageTables(mem, plan), idtGpa };
}
