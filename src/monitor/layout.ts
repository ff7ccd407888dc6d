// Where pvbox puts Xen-owned frames and the ring-0 monitor, in guest-physical and guest-virtual space (Xen: xen/arch/x86/include/asm/config.h layout).
//
// Guest "machine frames" are KVM guest-physical frames and the P2M is the identity for RAM.
// Frames Xen would own (shared_info, grant-table frames, the M2P, the monitor itself) sit
// above the guest's RAM so nothing aliases (shared/reference/pv-abi.md §1).
//
// Virtual: L4 slot 256 is unusable on PVM hosts (shared/tools/kvm-probe), so
//   slot 257  0xffff808000000000  read-only M2P, guest-visible (U=1)
//   slot 258  0xffff810000000000  the hypervisor area: monitor code, IDT, GDT, TSS, stacks (U=0)
//   slot 259  0xffff818000000000  monitor direct map of all guest-physical memory (U=0, NX)
// These three L4 entries are written into every guest L4 the PV MMU validates.

export const PAGE_SIZE = 4096;
export const MiB = 1 << 20;
export const GiB = 1 << 30;

export const M2P_SLOT = 257;
export const HV_SLOT = 258;
export const PHYSMAP_SLOT = 259;
export const MONITOR_SLOTS = [M2P_SLOT, HV_SLOT, PHYSMAP_SLOT] as const;
export const slotBase = (slot: number): bigint => 0xffff000000000000n | (BigInt(slot) << 39n);
export const M2P_VIRT_START = slotBase(M2P_SLOT);
export const HV_VIRT_START = slotBase(HV_SLOT);
export const PHYSMAP_VIRT_START = slotBase(PHYSMAP_SLOT);

/** Offsets inside the hypervisor area (which is mapped at HV_VIRT_START). */
export const HV = {
  sharedInfo: 0x0000,               // 1 page
  grantFrames: 0x1000,              // up to MAX_GRANT_FRAMES pages
  monitorCode: 0x100000,            // build/monitor.bin (offsets below)
  idt: 0x110000,                    // 256 gates
  pageTables: 0x120000,             // the monitor's own L3/L2 pages (pool up to 0x1f0000)
  pageTablesEnd: 0x1f0000,
  vcpuBase: 0x200000,               // per-vCPU areas
  vcpuStride: 0x200000,             // 2 MiB each
  size: 0x1000000,                  // 16 MiB in all (room for 7 vCPUs)
} as const;
export const MAX_GRANT_FRAMES = 64;

/** Inside a per-vCPU area. */
export const VCPU_AREA = {
  gdt: 0x00000,                     // 16 pages: guest entries, then Xen's reserved page at 0xe000
  tss: 0x10000,
  stackTop: 0x18000,                // ring-0 stack for IDT entries from CPL3 (TSS.RSP0)
  resume: 0x20000,                  // resume list area (grows up to the end of the 2 MiB area)
  resumeEnd: 0x1f0000,
} as const;

/** Entry points in monitor.S (fixed by .org there). */
export const MONITOR = {
  lstar: 0x000,
  cstar: 0x010,
  sysenter: 0x020,
  iretOnly: 0x030,
  resume: 0x040,
  resumeWrites: 0x0c0,
  idtStubs: 0x1000,
  idtStubSize: 16,
} as const;

/** Exit ports used by monitor.S: ports below PORT_SYSCALL are exception vectors. */
export const PORT_SYSCALL = 0xf0, PORT_TRAP = 0xf1, PORT_CONTINUE = 0xf2, PORT_SYSCALL32 = 0xf3, PORT_SYSENTER = 0xf4;

/** Resume-list operations understood by monitor.S `resume`. */
export const OP_WRITE64 = 1, OP_INVLPG = 2, OP_WRITE_CR3 = 3, OP_WRMSR = 4, OP_XSETBV = 5, OP_SWAPGS = 6, OP_WRITE_CR0 = 7, OP_CONTINUE = 8;

/** Xen's reserved GDT selectors (xen/arch/x86/desc.c boot_gdt; public/arch-x86/xen-x86_64.h). */
export const SEL = {
  HYPERVISOR_CS: 0xe008, HYPERVISOR_DS: 0xe010,
  FLAT_RING3_CS32: 0xe023, FLAT_RING3_DS: 0xe02b, FLAT_RING3_CS64: 0xe033,
  HYPERVISOR_CS32: 0xe038, TSS: 0xe040, LDT: 0xe050,
} as const;
export const FIRST_RESERVED_GDT_BYTE = 0xe000;
export const FIRST_RESERVED_GDT_ENTRY = 7168;
export const GDT_LIMIT = 0xe000 + 0x60 - 1;

/** The whole guest-physical plan for a domain. */
export interface MemoryPlan {
  ramBytes: number;       // nr_pages * 4096
  nrPages: number;
  hvBase: number;         // GPA of the hypervisor area (2 MiB aligned, above RAM)
  m2pBase: number;        // GPA of the M2P table
  m2pBytes: number;
  maxMfn: number;         // last frame covered by the M2P
  totalBytes: number;     // size of the single KVM memory slot
}

export function planMemory(ramBytes: number): MemoryPlan {
  const align2m = (x: number) => Math.ceil(x / (2 * MiB)) * 2 * MiB;
  const nrPages = Math.floor(ramBytes / PAGE_SIZE);
  const hvBase = align2m(nrPages * PAGE_SIZE);
  const m2pBase = hvBase + HV.size;
  // The M2P covers every frame including its own: solve for the fixed point generously.
  let totalFrames = (m2pBase + 2 * MiB) / PAGE_SIZE;
  let m2pBytes = align2m(totalFrames * 8);
  totalFrames = (m2pBase + m2pBytes) / PAGE_SIZE;
  m2pBytes = align2m(totalFrames * 8);
  const totalBytes = m2pBase + m2pBytes;
  return { ramBytes: nrPages * PAGE_SIZE, nrPages, hvBase, m2pBase, m2pBytes, maxMfn: totalBytes / PAGE_SIZE - 1, totalBytes };
}

export const hvVirt = (off: number): bigint => HV_VIRT_START + BigInt(off);
export const physmapVirt = (gpa: number): bigint => PHYSMAP_VIRT_START + BigInt(gpa);
export const vcpuAreaOffset = (vcpuId: number): number => HV.vcpuBase + vcpuId * HV.vcpuStride;
