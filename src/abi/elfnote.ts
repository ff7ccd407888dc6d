// ELF note types a PV kernel carries in its "Xen" notes: xen/include/public/elfnote.h (XEN_ELFNOTE_*).
// XEN_ELFNOTE_MAX is left out: it grows with each Xen release (18 in 4.17, 19 later).
export const XEN_ELFNOTE_INFO = 0; // NAME=VALUE pair (string); legacy __xen_guest section
export const XEN_ELFNOTE_ENTRY = 1; // virtual address of the entry point (numeric)
export const XEN_ELFNOTE_HYPERCALL_PAGE = 2; // virtual address of the hypercall transfer page (numeric)
export const XEN_ELFNOTE_VIRT_BASE = 3; // virtual address where the kernel image should be mapped (numeric)
export const XEN_ELFNOTE_PADDR_OFFSET = 4; // offset of ELF paddr fields from the actual physical address (numeric)
export const XEN_ELFNOTE_XEN_VERSION = 5; // version of Xen the kernel is compatible with (string)
export const XEN_ELFNOTE_GUEST_OS = 6; // name of the guest operating system (string)
export const XEN_ELFNOTE_GUEST_VERSION = 7; // version of the guest operating system (string)
export const XEN_ELFNOTE_LOADER = 8; // loader type (string), "generic"
export const XEN_ELFNOTE_PAE_MODE = 9; // x86-32 PAE mode (string)
export const XEN_ELFNOTE_FEATURES = 10; // XENFEAT names, '|'-separated; '!' = required (string)
export const XEN_ELFNOTE_BSD_SYMTAB = 11; // kernel wants the symbol table loaded (string "yes")
export const XEN_ELFNOTE_HV_START_LOW = 12; // lowest address the hypervisor hole can begin at (numeric)
export const XEN_ELFNOTE_L1_MFN_VALID = 13; // mask/value pairs: non-present L1 entries that hold MFNs
export const XEN_ELFNOTE_SUSPEND_CANCEL = 14; // kernel supports cooperative suspend cancellation (numeric)
export const XEN_ELFNOTE_INIT_P2M = 15; // VA at which to map the initial P2M table (numeric)
export const XEN_ELFNOTE_MOD_START_PFN = 16; // start_info.mod_start may be a PFN (numeric)
export const XEN_ELFNOTE_SUPPORTED_FEATURES = 17; // XENFEAT bitmap the kernel supports (numeric, 32-bit)
export const XEN_ELFNOTE_PHYS32_ENTRY = 18; // PVH 32-bit physical entry point (numeric)
/** Xen 4.19+: PVH relocation range (numeric). */
export const XEN_ELFNOTE_PHYS32_RELOC = 19;

// Notes in the "Xen" namespace of crash dumps and xen-dumpcore files.
export const XEN_ELFNOTE_CRASH_INFO = 0x1000001;
export const XEN_ELFNOTE_CRASH_REGS = 0x1000002;
export const XEN_ELFNOTE_DUMPCORE_NONE = 0x2000000;
export const XEN_ELFNOTE_DUMPCORE_HEADER = 0x2000001;
export const XEN_ELFNOTE_DUMPCORE_XEN_VERSION = 0x2000002;
export const XEN_ELFNOTE_DUMPCORE_FORMAT_VERSION = 0x2000003;
