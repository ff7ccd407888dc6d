// Xen's hypervisor CPUID leaves: xen/include/public/arch-x86/cpuid.h (XEN_CPUID_* leaves, signature and bits).
//
// Leaf numbers below are for base 0x40000000 (Xen moves the range to 0x40000100 when it also offers Viridian).
// Leaf 1 (0x40000000): EAX = largest leaf, EBX/ECX/EDX = "XenVMMXenVMM" signature.
// Leaf 2 (0x40000001): EAX[31:16] = major, EAX[15:0] = minor Xen version.
// Leaf 3 (0x40000002): EAX = number of hypercall transfer pages, EBX = base of the hypercall MSRs,
//                      ECX = XEN_CPUID_FEAT1_* bits.
// Leaf 4 (0x40000003): TSC information (sub-leaf 0: XEN_CPUID_TSC_* flags in EAX, tsc_mode in EBX, kHz
//                      in ECX, incarnation in EDX; sub-leaf 1: offset and scaling; sub-leaf 2: host kHz).
// Leaf 5 (0x40000004): HVM-specific (XEN_HVM_CPUID_*).
// Leaf 6 (0x40000005): PV-specific: EAX = max sub-leaf; sub-leaf 0 EBX[7:0] = machine address width.

export const XEN_CPUID_FIRST_LEAF = 0x40000000;
/** XEN_CPUID_LEAF(i): leaf number i (0-based) of Xen's range. */
export function XEN_CPUID_LEAF(i: number): number {
  return XEN_CPUID_FIRST_LEAF + i;
}

/** "XenVMMXenVMM" */
export const XEN_CPUID_SIGNATURE_EBX = 0x566e6558; // "XenV"
export const XEN_CPUID_SIGNATURE_ECX = 0x65584d4d; // "MMXe"
export const XEN_CPUID_SIGNATURE_EDX = 0x4d4d566e; // "nVMM"

/** Leaf 3, ECX bit 0: MMU_PT_UPDATE_PRESERVE_AD is supported. */
export const _XEN_CPUID_FEAT1_MMU_PT_UPDATE_PRESERVE_AD = 0;
export const XEN_CPUID_FEAT1_MMU_PT_UPDATE_PRESERVE_AD = 1 << 0;

// Leaf 4, sub-leaf 0, EAX (Xen 4.18+).
export const XEN_CPUID_TSC_EMULATED = 1 << 0;
export const XEN_CPUID_HOST_TSC_RELIABLE = 1 << 1;
export const XEN_CPUID_RDTSCP_INSTR_AVAIL = 1 << 2;
// Leaf 4, sub-leaf 0, EBX: tsc_mode (Xen 4.18+).
export const XEN_CPUID_TSC_MODE_DEFAULT = 0;
export const XEN_CPUID_TSC_MODE_ALWAYS_EMULATE = 1;
export const XEN_CPUID_TSC_MODE_NEVER_EMULATE = 2;
export const XEN_CPUID_TSC_MODE_PVRDTSCP = 3;

// Leaf 5 (HVM only), EAX.
export const XEN_HVM_CPUID_APIC_ACCESS_VIRT = 1 << 0; // Virtualized APIC registers
export const XEN_HVM_CPUID_X2APIC_VIRT = 1 << 1; // Virtualized x2APIC accesses
export const XEN_HVM_CPUID_IOMMU_MAPPINGS = 1 << 2; // Memory mapped from other domains has valid IOMMU entries
export const XEN_HVM_CPUID_VCPU_ID_PRESENT = 1 << 3; // vcpu id is present in EBX
export const XEN_HVM_CPUID_DOMID_PRESENT = 1 << 4; // domid is present in ECX
export const XEN_HVM_CPUID_EXT_DEST_ID = 1 << 5; // MSI address bits 11:5 (IO-APIC RTE bits 55:49) extend the Destination ID to 15 bits
export const XEN_HVM_CPUID_UPCALL_VECTOR = 1 << 6; // Per-vCPU event channel upcalls work correctly with physical IRQs bound to event channels

/** Leaf 6 (PV), sub-leaf 0, EBX bits 7:0. */
export const XEN_CPUID_MACHINE_ADDRESS_WIDTH_MASK = 0xff << 0;

export const XEN_CPUID_MAX_NUM_LEAVES = 5;
