// The guest's CPUID policy: KVM's supported leaves filtered as Xen filters them for PV guests, plus Xen's hypervisor leaves (xen/arch/x86/cpu-policy.c, cpuid.c cpuid_hypervisor_leaves; public/arch-x86/cpufeatureset.h).
import type { CpuidEntry } from '../kvm/kvm.js';

export const XEN_MAJOR = 4, XEN_MINOR = 17;
const bit = (n: number) => (1 << n) >>> 0;
const clear = (v: number, bits: number[]) => bits.reduce((acc, b) => (acc & ~bit(b)) >>> 0, v >>> 0);

/**
 * Build the table given to KVM_SET_CPUID2. One table serves native CPUID (which KVM answers at
 * any CPL) and Xen's forced-emulation CPUID (which pvbox answers from the same entries), so the
 * two views cannot disagree (pv-abi.md §4.11).
 */
export function buildCpuidPolicy(supported: CpuidEntry[], tscKhz: number): CpuidEntry[] {
  const out: CpuidEntry[] = [];
  // XSAVE state components the host can save (leaf 0xD.0 EAX: bit 0 x87, 1 SSE, 2 AVX).
  const xsaveMask = supported.find((e) => e.function === 0xd && e.index === 0)?.eax ?? 0;
  for (const e0 of supported) {
    if (e0.function >= 0x40000000 && e0.function < 0x50000000) continue; // KVM's own leaves: Xen's replace them
    const e = { ...e0 };
    switch (e.function) {
      case 1:
        // ECX: MONITOR 3, VMX 5, SMX 6, EIST 7, TM2 8, SDBG 11, PDCM 15, PCID 17, DCA 18, X2APIC 21, TSC_DEADLINE 24.
        e.ecx = (clear(e.ecx, [3, 5, 6, 7, 8, 11, 15, 17, 18, 21, 24]) | bit(31)) >>> 0; // + HYPERVISOR
        // XSAVE 26 and AVX 28, whenever the host can save x87+SSE (+AVX) state, even where KVM's
        // supported leaf 1 leaves them out (PVM hosts report a bare leaf 1). Guest user code sees
        // the host's CPUID natively on PVM (CPUID does not exit at CPL3) and so uses AVX whatever
        // this table says; the guest kernel must then context-switch YMM with XSAVE as under Xen
        // (Linux xen_check_xsave keeps XSAVE when CPUID shows XSAVE and OSXSAVE). With FXSAVE it
        // switches only the low 128 bits and YMM upper halves leak between guest processes.
        if ((xsaveMask & 3) === 3) e.ecx = (e.ecx | bit(26)) >>> 0;
        if ((xsaveMask & 7) === 7) e.ecx = (e.ecx | bit(28)) >>> 0;
        // EDX: VME 1, PSE 3, MCE 7, MTRR 12, PGE 13, MCA 14, PSE36 17, DS 21, ACPI 22, TM 29, PBE 31.
        e.edx = clear(e.edx, [1, 3, 7, 12, 13, 14, 17, 21, 22, 29, 31]);
        break;
      case 5: case 6: case 0xa:
        e.eax = e.ebx = e.ecx = e.edx = 0; // MONITOR/MWAIT, power management, PMU: not for PV guests
        break;
      case 7:
        if (e.index === 0) {
          // EBX: FSGSBASE 0, TSC_ADJUST 1, SGX 2, SMEP 7, INVPCID 10, RTM 11, PQM 12, MPX 14, PQE 15, SMAP 20, PT 25.
          e.ebx = clear(e.ebx, [0, 1, 2, 7, 10, 11, 12, 14, 15, 20, 25]);
          // ECX: UMIP 2, PKU 3, OSPKE 4, WAITPKG 5, CET_SS 7, LA57 16, SGX_LC 30, PKS 31.
          e.ecx = clear(e.ecx, [2, 3, 4, 5, 7, 16, 30, 31]);
          // EDX: speculation controls and CET_IBT: no MSR_SPEC_CTRL/ARCH_CAPS emulation yet.
          e.edx = clear(e.edx, [10, 11, 14, 18, 20, 26, 27, 28, 29, 30, 31]);
        } else {
          e.eax = e.index === 0 ? e.eax : 0; e.ebx = e.ecx = e.edx = 0;
        }
        break;
      case 0xd:
        if (e.index === 1) e.eax = clear(e.eax, [3]); // XSAVES (needs IA32_XSS)
        break;
      case 0x80000001:
        e.ecx = clear(e.ecx, [2, 3, 9, 10, 22, 23]); // SVM, EXTAPIC, OSVW, IBS, TOPOEXT-perf, PERFCTR_CORE
        e.edx = clear(e.edx, [26]);                  // PAGE1GB
        break;
      case 0x80000008:
        e.ebx = clear(e.ebx, [12, 14, 15, 16, 17, 18, 24, 25, 26]); // AMD IBPB/IBRS/STIBP/SSBD controls
        break;
      case 0x8000000a:
        e.eax = e.ebx = e.ecx = e.edx = 0;
        break;
    }
    out.push(e);
  }
  const sig = { ebx: 0x566e6558, ecx: 0x65584d4d, edx: 0x4d4d566e }; // "XenVMMXenVMM"
  const leaf = (fn: number, eax: number, ebx = 0, ecx = 0, edx = 0, index = 0, flags = 0) =>
    out.push({ function: fn, index, flags, eax: eax >>> 0, ebx: ebx >>> 0, ecx: ecx >>> 0, edx: edx >>> 0 });
  leaf(0x40000000, 0x40000005, sig.ebx, sig.ecx, sig.edx);
  leaf(0x40000001, (XEN_MAJOR << 16) | XEN_MINOR);
  leaf(0x40000002, 1, 0x40000000, 1 /* XEN_CPUID_FEAT1_MMU_PT_UPDATE_PRESERVE_AD */, 0);
  leaf(0x40000003, 0, 0, tscKhz, 0, 0, 1);
  leaf(0x40000004, 0);
  leaf(0x40000005, 0, 0);
  return out;
}

/**
 * XSAVE area size (standard format) for the components in `xcr0`: the legacy region and header
 * (576 bytes), or the end of the furthest enabled component (leaf 0xD.i: EAX size, EBX offset).
 * Xen's xstate_uncompressed_size(), which its CPUID answers in leaf 0xD.0 EBX.
 */
export function xstateSize(table: CpuidEntry[], xcr0: bigint): number {
  let size = 576;
  for (let i = 2; i < 63; i++) {
    if (!((xcr0 >> BigInt(i)) & 1n)) continue;
    const e = table.find((t) => t.function === 0xd && t.index === i);
    if (e) size = Math.max(size, (e.ebx >>> 0) + (e.eax >>> 0));
  }
  return size;
}

/**
 * Answer CPUID(leaf, subleaf) from the policy table, as KVM would (KVM's rules for subleaves and
 * out-of-range leaves). `xcr0` is the guest's XCR0: leaf 0xD.0 EBX is the XSAVE size for the
 * components it enables (Xen cpu-policy.c guest_cpuid: xstate_uncompressed_size(v->arch.xcr0)),
 * which Linux checks against its own computation (fpu__init_system_xstate; a mismatch turns
 * XSAVE off).
 */
export function cpuidLookup(table: CpuidEntry[], leaf: number, subleaf: number, cr4Osxsave: boolean, xcr0 = 1n): [number, number, number, number] {
  const find = (fn: number, idx: number) => table.find((e) => e.function === fn && (!(e.flags & 1) || e.index === idx));
  let e = find(leaf, subleaf);
  if (!e) {
    // Intel: leaves above the basic maximum return the highest basic leaf; simpler and AMD-like: zeros.
    return [0, 0, 0, 0];
  }
  let { eax, ebx, ecx, edx } = e;
  if (leaf === 1 && cr4Osxsave && (ecx & bit(26))) ecx = (ecx | bit(27)) >>> 0;
  if (leaf === 0xd && subleaf === 0) ebx = xstateSize(table, xcr0);
  return [eax >>> 0, ebx >>> 0, ecx >>> 0, edx >>> 0];
}
