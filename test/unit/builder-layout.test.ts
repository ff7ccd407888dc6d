// Layout invariants of the PV domain builder (src/builder/xc_dom.ts, start_info.ts) on a plain ArrayBuffer, no KVM:
// what tools/libs/guest/xg_dom_core.c + xg_dom_x86.c produce and what Linux's xen_start_kernel /
// xen_setup_kernel_pagetable (arch/x86/xen/enlighten_pv.c, mmu_pv.c) rely on (shared/reference/pv-abi.md §3.4–3.6, §12.16).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { __HYPERVISOR_iret, SIF_MOD_START_PFN, start_info } from '../../src/abi/xen.js';
import type { XenKernel } from '../../src/builder/elf.js';
import { writeStartInfo } from '../../src/builder/start_info.js';
import { type BootLayout, buildPvDomain, fillHypercallPage } from '../../src/builder/xc_dom.js';
import { ImageError } from '../../src/errors.js';
import { GuestMemory } from '../../src/memory/guest-memory.js';
import { walk } from '../../src/memory/guest-virt.js';
import { HV, type MemoryPlan, planMemory } from '../../src/monitor/layout.js';
import { _PAGE_ACCESSED, _PAGE_DIRTY, _PAGE_PRESENT, _PAGE_RW, _PAGE_USER, PTE_PFN } from '../../src/monitor/pte.js';

const MiB = 1 << 20;
const PAGE = 4096;
const VIRT_BASE = 0xffffffff80000000n;
const INIT_P2M = 0x8000000000n;
const KSTART = 0x1000000; // Linux's p_paddr of .text (pv-abi.md §3.3)
const CMDLINE = 'console=hvc0 root=/dev/xvda1 earlyprintk=xen';
const STORE_EVTCHN = 1, CONSOLE_EVTCHN = 2;

// Xen's page-table protections (xg_dom_x86.c alloc_pgtables_x86_64: lvl_prot[0] / lvl_prot[1..3]).
const L1_PROT = _PAGE_PRESENT | _PAGE_RW | _PAGE_ACCESSED;
const UPPER_PROT = _PAGE_PRESENT | _PAGE_RW | _PAGE_ACCESSED | _PAGE_DIRTY | _PAGE_USER;
const FLAGS = 0xfff0000000000fffn;

interface KernelOpts { memsz?: number; hypercallPage?: boolean; modStartPfn?: boolean; initP2m?: bigint | null }

/** A synthetic parsed kernel: text segment (2 pages) + data with .bss, placed at p_paddr 0x1000000. */
function makeKernel(o: KernelOpts = {}): XenKernel {
  const elf = new Uint8Array(3 * PAGE);
  for (let i = 0; i < elf.length; i++) elf[i] = (i * 7 + 3) & 0xff || 1;
  const dataMemsz = o.memsz ?? 3 * PAGE;
  const segments = [
    { paddr: BigInt(KSTART), vaddr: VIRT_BASE + BigInt(KSTART), fileOffset: 0, filesz: 2 * PAGE, memsz: 2 * PAGE, flags: 5 },
    { paddr: BigInt(KSTART + 2 * PAGE), vaddr: VIRT_BASE + BigInt(KSTART + 2 * PAGE), fileOffset: 2 * PAGE, filesz: 0x800, memsz: dataMemsz, flags: 6 },
  ];
  const pend = BigInt(KSTART + 2 * PAGE + dataMemsz);
  const entry = VIRT_BASE + BigInt(KSTART) + 0x100n;
  return {
    elf, entry, segments,
    notes: {
      entry, virtBase: VIRT_BASE, paddrOffset: 0n, features: [], fSupported: 0, fRequired: 0,
      modStartPfn: o.modStartPfn ?? true,
      initP2m: o.initP2m === null ? undefined : (o.initP2m ?? INIT_P2M),
      hypercallPage: o.hypercallPage ? VIRT_BASE + BigInt(KSTART + PAGE) : undefined,
    },
    pstart: BigInt(KSTART), pend, virtKstart: VIRT_BASE + BigInt(KSTART), virtKend: VIRT_BASE + pend,
  };
}

function ramdisk(len: number): Uint8Array {
  const r = new Uint8Array(len);
  for (let i = 0; i < len; i++) r[i] = (i * 13 + 5) & 0xff;
  return r;
}

interface Built { mem: GuestMemory; plan: MemoryPlan; layout: BootLayout; kernel: XenKernel; rd?: Uint8Array; si: number }

/** planMemory + buildPvDomain with start_info written as src/toolstack/create.ts does. RAM is pre-filled with garbage. */
function build(ramMiB: number, k: XenKernel, rd?: Uint8Array, cmdline = CMDLINE): Built {
  const plan = planMemory(ramMiB * MiB);
  const mem = new GuestMemory(new ArrayBuffer(plan.totalBytes));
  if (ramMiB <= 256) mem.fill(0, plan.ramBytes, 0x5a);
  let si = -1;
  const layout = buildPvDomain(mem, plan, { kernel: k, ramdisk: rd, cmdline, consoleEvtchn: CONSOLE_EVTCHN, storeEvtchn: STORE_EVTCHN }, (gpa, l) => {
    si = gpa;
    writeStartInfo(mem, gpa, l, {
      nrPages: plan.nrPages, sharedInfoMaddr: plan.hvBase + HV.sharedInfo, storeEvtchn: STORE_EVTCHN,
      consoleEvtchn: CONSOLE_EVTCHN, virtBase: k.notes.virtBase, cmdline,
    });
  });
  return { mem, plan, layout, kernel: k, rd, si };
}

const sif = (b: Built, f: Parameters<typeof start_info.get>[2]) => start_info.get(b.mem.dv, b.si, f);
const u64 = (x: unknown): bigint => x as bigint;
const num = (x: unknown): number => Number(x as bigint | number);
const pte = (b: Built, tablePfn: number, i: number): bigint => b.mem.read64(tablePfn * PAGE + i * 8);
const l4Pfn = (b: Built): number => b.layout.l4Pfn;
const walkVa = (b: Built, va: bigint) => walk(b.mem, (g) => b.mem.read64(g), l4Pfn(b), va);
const vEndPfn = (b: Built): number => Number((b.layout.vEnd - VIRT_BASE) / BigInt(PAGE));
/** Frames of the kernel mapping's own tables (L4, L3, L2, L1…): start_info.nr_pt_frames from pt_base. */
const kernelPtFrames = (b: Built): number[] => Array.from({ length: num(sif(b, 'nr_pt_frames')) }, (_, i) => l4Pfn(b) + i);

/**
 * Xen's alloc_pgtables_pv + count_pgtables for the kernel mapping (xg_dom_x86.c), as a reference model:
 * from the first free pfn after the magic pages, the v_end (pfns from virt_base) and page-table count Xen picks.
 */
function xenVirtEnd(allocEndPfn: number): { vEndPfn: number; nrPt: number } {
  const extra = 1 /* boot stack */ + (512 * 1024) / PAGE;
  let pages = extra;
  for (;;) {
    const tryEnd = ((allocEndPfn + pages) * PAGE) | (4 * MiB - 1); // round_up(.., bits_to_mask(22))
    const nrPt = 1 /* L4 */ + 1 /* L3 */ + 1 /* L2 */ + (Math.floor(tryEnd / (2 * MiB)) + 1) /* L1s */;
    pages = nrPt + extra;
    if ((allocEndPfn + pages) * PAGE <= tryEnd + 1) return { vEndPfn: (tryEnd + 1) / PAGE, nrPt };
  }
}

describe('builder layout: start_info (xg_dom_x86.c start_info_x86_64, public/xen.h struct start_info)', () => {
  const b = build(64, makeKernel(), ramdisk(3 * PAGE + 123));
  const l = b.layout;
  const kernelEndPfn = Math.ceil(Number(b.kernel.pend) / PAGE);

  it('magic pages follow the kernel image: start_info, xenstore, console, then the page tables (alloc_magic_pages_pv)', () => {
    assert.equal(l.startInfoPfn, kernelEndPfn);
    assert.equal(l.storePfn, kernelEndPfn + 1);
    assert.equal(l.consolePfn, kernelEndPfn + 2);
    assert.equal(l.l4Pfn, kernelEndPfn + 3);
    assert.equal(b.si, l.startInfoPfn * PAGE);
    assert.equal(l.startInfoVa, VIRT_BASE + BigInt(l.startInfoPfn * PAGE), 'RSI = VA of start_info (vcpu_x86_64)');
    assert.equal(l.entry, b.kernel.notes.entry);
  });

  it('magic is "xen-3.0-x86_64", NUL-terminated', () => {
    const magic = sif(b, 'magic') as Uint8Array;
    assert.equal(new TextDecoder().decode(magic.subarray(0, 14)), 'xen-3.0-x86_64');
    assert.ok(magic.subarray(14).every((x) => x === 0));
  });

  it('nr_pages, shared_info (a machine address, not a VA), store and console', () => {
    assert.equal(num(sif(b, 'nr_pages')), b.plan.nrPages);
    assert.equal(num(sif(b, 'shared_info')), b.plan.hvBase + HV.sharedInfo);
    assert.equal(num(sif(b, 'shared_info')) % PAGE, 0);
    assert.equal(num(sif(b, 'store_mfn')), l.storePfn, 'identity P2M: store_mfn = xc_dom_p2m(xenstore_pfn)');
    assert.equal(sif(b, 'store_evtchn'), STORE_EVTCHN);
    assert.equal(num(sif(b, 'console.domU.mfn')), l.consolePfn);
    assert.equal(sif(b, 'console.domU.evtchn'), CONSOLE_EVTCHN);
  });

  it('store, console and boot stack pages start zeroed (alloc_magic_pages_pv xc_clear_domain_page)', () => {
    const stackPfn = Number((l.stackTop - VIRT_BASE) / BigInt(PAGE)) - 1;
    for (const pfn of [l.storePfn, l.consolePfn, stackPfn]) assert.ok(b.mem.bytes(pfn * PAGE, PAGE).every((x) => x === 0), `pfn ${pfn} not zero`);
  });

  it('pt_base is the VA of the L4; nr_pt_frames counts only the kernel mapping\'s tables (maps[0].area.pgtables)', () => {
    assert.equal(u64(sif(b, 'pt_base')), VIRT_BASE + BigInt(l.l4Pfn * PAGE));
    const x = xenVirtEnd(l.storePfn + 2);
    assert.equal(num(sif(b, 'nr_pt_frames')), x.nrPt);
    assert.equal(num(sif(b, 'nr_pt_frames')), 3 + vEndPfn(b) / 512);
  });

  it('mfn_list is INIT_P2M; first_p2m_pfn / nr_p2m_frames describe the P2M block', () => {
    assert.equal(u64(sif(b, 'mfn_list')), INIT_P2M);
    assert.equal(num(sif(b, 'first_p2m_pfn')), l.firstP2mPfn);
    assert.equal(num(sif(b, 'nr_p2m_frames')), l.nrP2mFrames);
  });

  it('flags = SIF_MOD_START_PFN and mod_start is the initrd\'s first pfn (xc_dom_build_image, unmapped_initrd)', () => {
    assert.equal(sif(b, 'flags'), SIF_MOD_START_PFN);
    assert.equal(num(sif(b, 'mod_start')), l.ramdiskPfn);
    assert.ok(num(sif(b, 'mod_len')) >= b.rd!.length, 'mod_len covers the whole initrd');
  });

  it('mod_len is the initrd rounded up to whole pages, as Xen reports it (initrd_len = page_size * seg.pages)', () => {
    assert.equal(num(sif(b, 'mod_len')), Math.ceil(b.rd!.length / PAGE) * PAGE);
  });

  it('cmd_line is NUL-terminated; 1023 bytes fit and more is refused with a message (MAX_GUEST_CMDLINE 1024)', () => {
    const c = sif(b, 'cmd_line') as Uint8Array;
    assert.equal(new TextDecoder().decode(c.subarray(0, CMDLINE.length)), CMDLINE);
    assert.equal(c[CMDLINE.length], 0);
    const long = 'x'.repeat(1023);
    const ok = build(64, makeKernel(), undefined, long);
    assert.equal((sif(ok, 'cmd_line') as Uint8Array)[1022], 0x78);
    assert.equal((sif(ok, 'cmd_line') as Uint8Array)[1023], 0);
    assert.throws(() => build(64, makeKernel(), undefined, long + 'y'), (e: unknown) => e instanceof ImageError && /1024 bytes.*1023/.test(e.message));
  });

  it('no initrd: flags 0, mod_start = mod_len = 0', () => {
    const n = build(64, makeKernel());
    assert.equal(sif(n, 'flags'), 0);
    assert.equal(num(sif(n, 'mod_start')), 0);
    assert.equal(num(sif(n, 'mod_len')), 0);
    assert.equal(n.layout.firstP2mPfn, vEndPfn(n), 'without an initrd the P2M block starts at v_end');
  });
});

describe('builder layout: the initial kernel mapping (setup_pgtables_pv, xen_setup_kernel_pagetable)', () => {
  // A second, bigger image crosses several L1 tables.
  for (const [name, b] of [['small kernel', build(64, makeKernel(), ramdisk(5000))], ['40 MiB kernel', build(128, makeKernel({ memsz: 40 * MiB }))]] as const) {
    describe(name, () => {
      const l = b.layout;
      const endPfn = vEndPfn(b);

      it('kernel segments are loaded by p_paddr, .bss and the 16 MiB below the kernel zeroed', () => {
        assert.deepEqual(b.mem.bytes(KSTART, 2 * PAGE + 0x800), b.kernel.elf.subarray(0, 2 * PAGE + 0x800));
        const s = b.kernel.segments[1]!;
        assert.ok(b.mem.bytes(Number(s.paddr) + s.filesz, s.memsz - s.filesz).every((x) => x === 0), '.bss not zeroed');
        assert.ok(new BigUint64Array(b.mem.buffer, 0, KSTART / 8).every((x) => x === 0n), 'padding below the kernel not zeroed');
      });

      it('pfn N maps at virt_base + N*4K for every N in [0, v_end), and nothing beyond', () => {
        for (let pfn = 0; pfn < endPfn; pfn++) {
          const w = walkVa(b, VIRT_BASE + BigInt(pfn * PAGE) + 0x123n);
          assert.ok(w, `pfn ${pfn} unmapped`);
          assert.equal(w.gpa, pfn * PAGE + 0x123, `pfn ${pfn} maps elsewhere`);
        }
        assert.equal(walkVa(b, b.layout.vEnd), undefined, 'v_end itself must be unmapped');
        assert.equal(walkVa(b, VIRT_BASE - BigInt(PAGE)), undefined);
      });

      it('v_end is 4 MiB aligned with ≥ 512 KiB after the boot stack, and equals what Xen\'s alloc_pgtables_pv picks', () => {
        assert.equal((l.vEnd - VIRT_BASE) % BigInt(4 * MiB), 0n);
        assert.ok(l.vEnd - l.stackTop >= 512n * 1024n, `only ${l.vEnd - l.stackTop} bytes after the stack`);
        const stackPfn = Number((l.stackTop - VIRT_BASE) / BigInt(PAGE)) - 1;
        assert.equal(stackPfn, l.l4Pfn + num(sif(b, 'nr_pt_frames')), 'boot stack follows the page tables');
        assert.deepEqual({ vEndPfn: endPfn, nrPt: num(sif(b, 'nr_pt_frames')) }, xenVirtEnd(l.storePfn + 2));
      });

      it('the whole initial mapping lives under pgd[511] → L3[510] → one L2 (≤ 1 GiB)', () => {
        assert.ok(l.vEnd - VIRT_BASE <= 1n << 30n);
        const present = (pfn: number) => Array.from({ length: 512 }, (_, i) => i).filter((i) => pte(b, pfn, i) & _PAGE_PRESENT);
        assert.deepEqual(present(l.l4Pfn), [1, 511], 'L4: only the P2M slot and the kernel slot');
        assert.equal(PTE_PFN(pte(b, l.l4Pfn, 511)), l.l4Pfn + 1, 'pt_base+1 is the kernel L3 (check_pt_base)');
        assert.deepEqual(present(l.l4Pfn + 1), [510]);
        assert.equal(PTE_PFN(pte(b, l.l4Pfn + 1, 510)), l.l4Pfn + 2, 'pt_base+2 is the only L2');
        const l2 = present(l.l4Pfn + 2);
        assert.deepEqual(l2, Array.from({ length: endPfn / 512 }, (_, i) => i));
        l2.forEach((i) => assert.equal(PTE_PFN(pte(b, l.l4Pfn + 2, i)), l.l4Pfn + 3 + i, 'L1 tables follow in order'));
      });

      it('L4/L3/L2 entries are PRESENT|RW|ACCESSED|DIRTY|USER; L1 entries PRESENT|RW|ACCESSED, no USER, no DIRTY', () => {
        const upper = [[l.l4Pfn, 511], [l.l4Pfn, 1], [l.l4Pfn + 1, 510]] as [number, number][];
        for (let i = 0; i < endPfn / 512; i++) upper.push([l.l4Pfn + 2, i]);
        for (const [t, i] of upper) assert.equal(pte(b, t, i) & FLAGS, UPPER_PROT, `table ${t}[${i}]`);
        const ptSet = new Set(kernelPtFrames(b));
        for (let pfn = 0; pfn < endPfn; pfn++) {
          const e = pte(b, l.l4Pfn + 3 + (pfn >> 9), pfn & 511);
          assert.equal(e & FLAGS, ptSet.has(pfn) ? L1_PROT & ~_PAGE_RW : L1_PROT, `L1 entry for pfn ${pfn}`);
        }
      });

      it('every boot page-table frame is mapped read-only in the initial mapping (get_pg_prot)', () => {
        const frames = kernelPtFrames(b);
        assert.deepEqual(l.ptFrames.slice(0, frames.length), frames);
        for (const pfn of frames) {
          const w = walkVa(b, VIRT_BASE + BigInt(pfn * PAGE));
          assert.ok(w && !w.writable, `page-table frame ${pfn} is writable at its VA`);
        }
        for (const pfn of l.ptFrames) if (pfn >= endPfn) assert.ok(pfn >= l.firstP2mPfn, 'frames beyond v_end are the P2M tables');
      });

      it('the P2M list at INIT_P2M (pgd[1]) holds the identity for every pfn', () => {
        const nr = b.plan.nrPages;
        const step = 97;
        for (let pfn = 0; pfn < nr; pfn += pfn + step < nr ? step : Math.max(1, nr - 1 - pfn)) {
          const w = walkVa(b, INIT_P2M + BigInt(pfn * 8));
          assert.ok(w && w.writable, `P2M entry ${pfn} not mapped writable`);
          assert.equal(b.mem.read64(w.gpa), BigInt(pfn));
          if (pfn === nr - 1) break;
        }
        assert.equal(walkVa(b, INIT_P2M + BigInt(Math.ceil(nr * 8 / PAGE) * PAGE)), undefined, 'nothing mapped past the P2M array');
      });

      it('the P2M block [first_p2m_pfn, +nr_p2m_frames) holds the array and every table mapping it, after v_end and the initrd', () => {
        const first = l.firstP2mPfn, n = l.nrP2mFrames;
        const inBlock = (pfn: number) => pfn >= first && pfn < first + n;
        const arrayPages = Math.ceil(b.plan.nrPages * 8 / PAGE);
        assert.ok(first >= endPfn && first >= l.ramdiskPfn + Math.ceil(l.ramdiskLen / PAGE));
        assert.ok(first + n <= b.plan.nrPages, 'P2M block inside RAM');
        const l3 = PTE_PFN(pte(b, l.l4Pfn, 1));
        const tables = new Set([l3]);
        let leaves = 0;
        for (let i = 0; i < 512; i++) {
          const e3 = pte(b, l3, i); if (!(e3 & _PAGE_PRESENT)) continue;
          assert.equal(e3 & FLAGS, UPPER_PROT);
          const l2 = PTE_PFN(e3); tables.add(l2);
          for (let j = 0; j < 512; j++) {
            const e2 = pte(b, l2, j); if (!(e2 & _PAGE_PRESENT)) continue;
            assert.equal(e2 & FLAGS, UPPER_PROT);
            const l1 = PTE_PFN(e2); tables.add(l1);
            for (let k = 0; k < 512; k++) {
              const e1 = pte(b, l1, k); if (!(e1 & _PAGE_PRESENT)) continue;
              assert.equal(e1 & FLAGS, L1_PROT);
              assert.equal(PTE_PFN(e1), first + leaves, 'array pages in order at the start of the block');
              leaves++;
            }
          }
        }
        assert.equal(leaves, arrayPages);
        for (const t of tables) assert.ok(inBlock(t) && t >= first + arrayPages, `P2M table frame ${t} outside the accounted block`);
        assert.equal(n, arrayPages + tables.size, 'nr_p2m_frames = array pages + their tables (alloc_p2m_list_x86_64)');
        assert.deepEqual(l.ptFrames.slice(num(sif(b, 'nr_pt_frames'))).sort((a, c) => a - c), [...tables].sort((a, c) => a - c));
      });
    });
  }
});

describe('builder layout: v_end for every kernel size in a 4 MiB window (xg_dom_x86.c alloc_pgtables_pv)', () => {
  it('matches Xen\'s choice of v_end and page-table count, and always leaves ≥ 512 KiB after the boot stack', () => {
    const plan = planMemory(64 * MiB);
    const mem = new GuestMemory(new ArrayBuffer(plan.totalBytes));
    const firstDataPage = KSTART / PAGE + 2;
    for (let endPfn = firstDataPage + 0x360; endPfn < firstDataPage + 0x360 + 1024; endPfn++) {
      const k = makeKernel({ memsz: (endPfn - firstDataPage) * PAGE });
      const l = buildPvDomain(mem, plan, { kernel: k, cmdline: '', consoleEvtchn: 1, storeEvtchn: 2 }, () => {});
      const nrPt = l.ptFrames.length - (l.nrP2mFrames - Math.ceil(plan.nrPages * 8 / PAGE));
      const got = { vEndPfn: Number((l.vEnd - VIRT_BASE) / BigInt(PAGE)), nrPt };
      assert.deepEqual(got, xenVirtEnd(endPfn + 3), `kernel ending at pfn ${endPfn.toString(16)}`);
      assert.ok(l.vEnd - l.stackTop >= 512n * 1024n, `kernel ending at pfn ${endPfn.toString(16)}: ${l.vEnd - l.stackTop} bytes of slack`);
      assert.equal(got.vEndPfn % 1024, 0);
    }
  });
});

describe('builder layout: the initrd (XEN_ELFNOTE_MOD_START_PFN: placed after v_end, unmapped)', () => {
  const rd = ramdisk(2 * MiB + 77);
  const b = build(64, makeKernel(), rd);
  it('starts at the first pfn after v_end and holds the image', () => {
    assert.equal(b.layout.ramdiskPfn, vEndPfn(b));
    assert.deepEqual(b.mem.bytes(b.layout.ramdiskPfn * PAGE, rd.length), rd);
  });
  it('is not mapped in the initial page tables', () => {
    for (let p = 0; p < Math.ceil(rd.length / PAGE); p += 37) assert.equal(walkVa(b, VIRT_BASE + BigInt((b.layout.ramdiskPfn + p) * PAGE)), undefined);
  });
  it('a kernel without MOD_START_PFN is refused with a message, not laid out wrongly', () => {
    assert.throws(() => build(64, makeKernel({ modStartPfn: false }), rd), (e: unknown) => e instanceof ImageError && /MOD_START_PFN/.test(e.message));
  });
});

describe('builder layout: hypercall page (xen/arch/x86/pv/hypercall.c pv_ring3_init_hypercall_page, domain.c init_hypercall_page)', () => {
  const pageVa = VIRT_BASE + BigInt(KSTART + PAGE);
  /** The 32-byte stub Xen writes for hypercall `i` (0xcc fill after it). */
  const xenSlot = (i: number): number[] => {
    const s = new Array<number>(32).fill(0xcc);
    const put = (o: number, ...b: number[]) => b.forEach((x, k) => { s[o + k] = x; });
    if (i === __HYPERVISOR_iret) {
      put(0, 0x51); put(1, 0x41, 0x53); put(3, 0x50); put(4, 0xb8, 23, 0, 0, 0); put(9, 0x0f, 0x05);
    } else {
      put(0, 0x51); put(1, 0x41, 0x53); put(3, 0xb8, i, 0, 0, 0); put(8, 0x0f, 0x05); put(10, 0x41, 0x5b); put(12, 0x59); put(13, 0xc3);
    }
    return s;
  };

  it('is filled when the kernel declares XEN_ELFNOTE_HYPERCALL_PAGE (≤ 6.1.120)', () => {
    const b = build(64, makeKernel({ hypercallPage: true }));
    const w = walkVa(b, pageVa);
    assert.ok(w);
    const page = b.mem.bytes(w.gpa, PAGE);
    for (const i of [0, 1, 17, 23, 24, 29, 32, 127]) assert.deepEqual([...page.subarray(i * 32, i * 32 + 32)], xenSlot(i), `slot ${i}`);
  });

  it('is left alone when the note is absent (6.1.121+, XSA-466)', () => {
    const b = build(64, makeKernel());
    assert.deepEqual(b.mem.bytes(KSTART + PAGE, PAGE), b.kernel.elf.subarray(PAGE, 2 * PAGE));
  });

  it('fillHypercallPage writes the same bytes into any page', () => {
    const p = new Uint8Array(PAGE);
    fillHypercallPage(p);
    for (let i = 0; i < 128; i++) assert.deepEqual([...p.subarray(i * 32, i * 32 + 32)], xenSlot(i), `slot ${i}`);
  });
});

describe('builder layout: memory that is too small is an ImageError that says what to do', () => {
  const helpful = (re: RegExp) => (e: unknown) => e instanceof ImageError && re.test(e.message) && /increase --memory/.test(e.message);
  it('kernel image larger than RAM', () => {
    assert.throws(() => build(16, makeKernel()), helpful(/kernel needs 17 MiB/));
  });
  it('kernel fits, initial mapping does not', () => {
    assert.throws(() => build(18, makeKernel()), helpful(/initial mapping \(20 MiB needed\)/));
  });
  it('initrd does not fit after v_end', () => {
    assert.throws(() => build(24, makeKernel(), ramdisk(5 * MiB)), helpful(/initrd \(5 MiB\)/));
  });
  it('no room left for the P2M list', () => {
    // 20 MiB of initial mapping + an initrd that leaves less than the P2M needs.
    assert.throws(() => build(24, makeKernel(), ramdisk(4 * MiB - 2 * PAGE)), helpful(/P2M/));
  });
  it('a kernel that needs more than the 1 GiB initial mapping Linux accepts', () => {
    // Image just under 1 GiB: with the magic pages, tables and 512 KiB slack v_end passes 1 GiB.
    assert.throws(() => build(1040, makeKernel({ memsz: 1024 * MiB - KSTART - 2 * PAGE - 256 * 1024 })), (e: unknown) => e instanceof ImageError && /1 GiB/.test(e.message));
  });
  it('a kernel without INIT_P2M is refused', () => {
    assert.throws(() => build(64, makeKernel({ initP2m: null })), (e: unknown) => e instanceof ImageError && /INIT_P2M/.test(e.message));
  });
});
