// The PV domain builder: lays out kernel, start_info, XenStore and console pages, boot page tables, stack, initrd and P2M as libxenguest does (tools/libs/guest/xg_dom_core.c, xg_dom_x86.c; public/xen.h "Start-of-day memory layout").
import { ImageError } from '../errors.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import { _PAGE_ACCESSED, _PAGE_DIRTY, _PAGE_PRESENT, _PAGE_RW, _PAGE_USER } from '../monitor/pte.js';
import type { MemoryPlan } from '../monitor/layout.js';
import type { XenKernel } from './elf.js';

export const PAGE = 4096;
const MiB = 1 << 20;

export interface BuildRequest {
  kernel: XenKernel;
  ramdisk?: Uint8Array;
  cmdline: string;
  /** Ports the toolstack allocated for the console and XenStore rings. */
  consoleEvtchn: number;
  storeEvtchn: number;
}

export interface BootLayout {
  entry: bigint;
  stackTop: bigint;
  startInfoVa: bigint;
  startInfoPfn: number;
  storePfn: number;
  consolePfn: number;
  l4Pfn: number;
  /** All frames of boot page tables (kernel mapping and P2M mapping), for pinning and RO marking. */
  ptFrames: number[];
  vEnd: bigint;
  p2mVa: bigint;
  firstP2mPfn: number;
  nrP2mFrames: number;
  ramdiskPfn: number;
  ramdiskLen: number;
}

/** VA ↔ pfn in the initial mapping: pfn N at virt_base + N*4K. */
class Alloc {
  next: number;
  constructor(first: number) { this.next = first; }
  take(n = 1): number { const p = this.next; this.next += n; return p; }
}

/** Number of page-table frames to map [virtBase, virtBase + pages*4K) with 4 KiB pages in one L4/L3/L2 (count_pgtables). */
function tablesFor(pages: number): number { return 3 + Math.ceil(pages / 512); }

export function buildPvDomain(mem: GuestMemory, plan: MemoryPlan, req: BuildRequest, writeStartInfo: (gpa: number, layout: BootLayout) => void): BootLayout {
  const k = req.kernel;
  const virtBase = k.notes.virtBase;
  const nrPages = plan.nrPages;
  const pend = Number(k.pend);
  if (pend > plan.ramBytes) throw new ImageError(`kernel needs ${Math.ceil(pend / MiB)} MiB of guest memory just for its image: increase --memory`);
  // 1. kernel image, placed by physical address.
  mem.fill(0, Math.ceil(pend / PAGE) * PAGE, 0);
  for (const s of k.segments) {
    const pa = Number(s.paddr - k.notes.paddrOffset);
    mem.copyIn(pa, k.elf.subarray(s.fileOffset, s.fileOffset + s.filesz));
    if (s.memsz > s.filesz) mem.fill(pa + s.filesz, s.memsz - s.filesz, 0);
  }
  const alloc = new Alloc(Math.ceil(pend / PAGE));
  // 2. magic pages.
  const startInfoPfn = alloc.take();
  const storePfn = alloc.take();
  const consolePfn = alloc.take();
  for (const p of [startInfoPfn, storePfn, consolePfn]) mem.fill(p * PAGE, PAGE, 0);
  // 3. boot page tables for [virtBase, vEnd): solve vEnd (alloc_pgtables_pv: ≥ 512 KiB slack, 4 MiB rounding).
  const ptFirst = alloc.next;
  let nrPt = 4;
  let vEndPfn = 0;
  for (let i = 0; i < 8; i++) {
    const end = ptFirst + nrPt + 1; // + boot stack
    vEndPfn = Math.ceil((end * PAGE + 512 * 1024) / (4 * MiB)) * (4 * MiB) / PAGE;
    const need = tablesFor(vEndPfn);
    if (need === nrPt) break;
    nrPt = need;
  }
  if (vEndPfn * PAGE > 1 << 30) throw new ImageError('kernel and boot data exceed the 1 GiB initial mapping Linux accepts');
  if (vEndPfn > nrPages) throw new ImageError(`guest memory too small for the kernel's initial mapping (${Math.ceil(vEndPfn * PAGE / MiB)} MiB needed): increase --memory`);
  const pt = alloc.take(nrPt);
  const stackPfn = alloc.take();
  mem.fill(pt * PAGE, nrPt * PAGE, 0);
  mem.fill(stackPfn * PAGE, PAGE, 0);
  const l4 = pt, l3 = pt + 1, l2 = pt + 2, l1First = pt + 3;
  const upper = _PAGE_PRESENT | _PAGE_RW | _PAGE_ACCESSED | _PAGE_DIRTY | _PAGE_USER;
  const e = (pfn: number, flags: bigint) => (BigInt(pfn) << 12n) | flags;
  const idx = (va: bigint, level: number) => Number((va >> BigInt(12 + 9 * (level - 1))) & 511n);
  if (idx(virtBase, 2) !== 0 || (virtBase & 0xfffn) !== 0n) throw new ImageError('kernel VIRT_BASE is not 1 GiB aligned');
  mem.write64(l4 * PAGE + idx(virtBase, 4) * 8, e(l3, upper));
  mem.write64(l3 * PAGE + idx(virtBase, 3) * 8, e(l2, upper));
  const ptFrames: number[] = [];
  for (let i = 0; i < nrPt; i++) ptFrames.push(pt + i);
  const ptSet = new Set(ptFrames);
  for (let pfn = 0; pfn < vEndPfn; pfn++) {
    const l1 = l1First + (pfn >> 9);
    if ((pfn & 511) === 0) mem.write64(l2 * PAGE + (pfn >> 9) * 8, e(l1, upper));
    mem.write64(l1 * PAGE + (pfn & 511) * 8, e(pfn, _PAGE_PRESENT | _PAGE_ACCESSED | (ptSet.has(pfn) ? 0n : _PAGE_RW)));
  }
  const vEnd = virtBase + BigInt(vEndPfn * PAGE);
  // 4. initrd after vEnd, unmapped (XEN_ELFNOTE_MOD_START_PFN).
  let next = vEndPfn;
  let ramdiskPfn = 0, ramdiskLen = 0;
  if (req.ramdisk) {
    if (!k.notes.modStartPfn) throw new ImageError('this kernel cannot take an unmapped initrd (no XEN_ELFNOTE_MOD_START_PFN); such kernels are not supported');
    ramdiskPfn = next; ramdiskLen = req.ramdisk.length;
    next += Math.ceil(ramdiskLen / PAGE);
    if (next > nrPages) throw new ImageError(`guest memory too small for the initrd (${Math.ceil(ramdiskLen / MiB)} MiB): increase --memory`);
    mem.copyIn(ramdiskPfn * PAGE, req.ramdisk);
  }
  // 5. P2M list at INIT_P2M with its own tables hanging off the same L4 (alloc_p2m_list_x86_64).
  const p2mVa = k.notes.initP2m;
  if (p2mVa === undefined) throw new ImageError('kernel lacks XEN_ELFNOTE_INIT_P2M: only kernels that take the P2M list at a separate address are supported');
  if (p2mVa >= virtBase || idx(p2mVa, 4) === idx(virtBase, 4)) throw new ImageError('XEN_ELFNOTE_INIT_P2M overlaps the kernel mapping');
  const p2mPages = Math.ceil(nrPages * 8 / PAGE);
  const p2mL1s = Math.ceil(p2mPages / 512), p2mL2s = Math.ceil(p2mL1s / 512);
  const p2mFirst = next;
  const p2mTables = 1 + p2mL2s + p2mL1s;
  next += p2mPages + p2mTables;
  if (next > nrPages) throw new ImageError('guest memory too small for the P2M list: increase --memory');
  const u64 = mem.u64;
  for (let pfn = 0; pfn < nrPages; pfn++) u64[(p2mFirst * PAGE) / 8 + pfn] = BigInt(pfn);
  mem.fill(p2mFirst * PAGE + nrPages * 8, p2mPages * PAGE - nrPages * 8, 0xff);
  const pl3 = p2mFirst + p2mPages, pl2 = pl3 + 1, pl1 = pl2 + p2mL2s;
  mem.fill(pl3 * PAGE, p2mTables * PAGE, 0);
  mem.write64(l4 * PAGE + idx(p2mVa, 4) * 8, e(pl3, upper));
  for (let i = 0; i < p2mL2s; i++) mem.write64(pl3 * PAGE + (idx(p2mVa, 3) + i) * 8, e(pl2 + i, upper));
  for (let i = 0; i < p2mL1s; i++) mem.write64(pl2 * PAGE + (idx(p2mVa, 2) + i) * 8, e(pl1 + i, upper));
  for (let i = 0; i < p2mPages; i++) mem.write64(pl1 * PAGE + i * 8, e(p2mFirst + i, _PAGE_PRESENT | _PAGE_RW | _PAGE_ACCESSED));
  for (let i = 0; i < p2mTables; i++) ptFrames.push(pl3 + i);
  // 6. hypercall page for kernels that still declare one (≤ 6.1.120; pv-abi.md §3.9).
  if (k.notes.hypercallPage !== undefined) {
    const pfn = Number((k.notes.hypercallPage - virtBase) >> 12n);
    if (pfn < 0 || pfn >= vEndPfn) throw new ImageError('XEN_ELFNOTE_HYPERCALL_PAGE outside the kernel mapping');
    fillHypercallPage(mem.bytes(pfn * PAGE, PAGE));
  }
  const layout: BootLayout = {
    entry: k.notes.entry || k.entry,
    stackTop: virtBase + BigInt((stackPfn + 1) * PAGE),
    startInfoVa: virtBase + BigInt(startInfoPfn * PAGE),
    startInfoPfn, storePfn, consolePfn, l4Pfn: l4, ptFrames, vEnd, p2mVa,
    firstP2mPfn: p2mFirst, nrP2mFrames: p2mPages + p2mTables, ramdiskPfn, ramdiskLen,
  };
  writeStartInfo(startInfoPfn * PAGE, layout);
  return layout;
}

/** xen/arch/x86/pv/hypercall.c pv_ring3_init_hypercall_page: 32-byte stubs that SYSCALL with EAX = number. */
export function fillHypercallPage(page: Uint8Array): void {
  page.fill(0xcc);
  for (let i = 0; i < 128; i++) {
    const o = i * 32;
    if (i === 23) { page.set([0x51, 0x41, 0x53, 0x50, 0xb8, 23, 0, 0, 0, 0x0f, 0x05], o); continue; }
    page.set([0x51, 0x41, 0x53, 0xb8, i & 0xff, 0, 0, 0, 0x0f, 0x05, 0x41, 0x5b, 0x59, 0xc3], o);
  }
}
