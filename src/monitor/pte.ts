// x86-64 page-table entry bits (Intel SDM vol. 3 §4.5; Xen xen/arch/x86/include/asm/x86_64/page.h for _PAGE_GUEST_KERNEL).
export const _PAGE_PRESENT = 0x001n;
export const _PAGE_RW = 0x002n;
export const _PAGE_USER = 0x004n;
export const _PAGE_PWT = 0x008n;
export const _PAGE_PCD = 0x010n;
export const _PAGE_ACCESSED = 0x020n;
export const _PAGE_DIRTY = 0x040n;
export const _PAGE_PSE = 0x080n;
export const _PAGE_PAT = 0x080n;
export const _PAGE_GLOBAL = 0x100n;
export const _PAGE_NX = 1n << 63n;
/** Xen's marker for a kernel mapping that had _PAGE_USER added (bit 52; "_PAGE_GUEST_KERNEL"). */
export const _PAGE_GUEST_KERNEL = 1n << 52n;
export const PADDR_MASK = 0x000ffffffffff000n;
export const PTE_PFN = (pte: bigint): number => Number((pte & PADDR_MASK) >> 12n);
