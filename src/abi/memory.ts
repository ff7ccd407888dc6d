// Memory reservation and physmap: xen/include/public/memory.h (XENMEM_* sub-ops of __HYPERVISOR_memory_op and their structs).
// Tools-only sub-ops (#if __XEN__ || __XEN_TOOLS__: 18-22 paging/access/sharing, 24 claim_pages,
// 27 reserved_device_memory_map) are left out. Also: the e820 entry format used by XENMEM_memory_map.
import { layout } from './layout.js';

export const XENMEM_increase_reservation = 0;
export const XENMEM_decrease_reservation = 1;
export const XENMEM_maximum_ram_page = 2;
export const XENMEM_current_reservation = 3;
export const XENMEM_maximum_reservation = 4;
export const XENMEM_machphys_mfn_list = 5;
export const XENMEM_populate_physmap = 6;
export const XENMEM_add_to_physmap = 7;
export const XENMEM_memory_map = 9;
export const XENMEM_machine_memory_map = 10;
export const XENMEM_exchange = 11;
export const XENMEM_machphys_mapping = 12;
export const XENMEM_set_memory_map = 13;
export const XENMEM_maximum_gpfn = 14;
export const XENMEM_remove_from_physmap = 15;
export const XENMEM_set_pod_target = 16;
export const XENMEM_get_pod_target = 17;
export const XENMEM_add_to_physmap_batch = 23;
export const XENMEM_machphys_compat_mfn_list = 25;
export const XENMEM_get_vnumainfo = 26;
export const XENMEM_acquire_resource = 28;

// xen_memory_reservation.mem_flags (XENMEMF_address_bits(x) = x in bits 0-7, XENMEMF_node(x) = (x+1) << 8).
export const XENMEMF_populate_on_demand = 1 << 16;
export const XENMEMF_exact_node_request = 1 << 17;
export const XENMEMF_vnode = 1 << 18;
export function XENMEMF_get_address_bits(x: number): number {
  return x & 0xff;
}
export function XENMEMF_get_node(x: number): number {
  return ((x >>> 8) - 1) & 0xff;
}

/** increase/decrease_reservation, populate_physmap. */
export const xen_memory_reservation = layout('xen_memory_reservation', 32, {
  extent_start: [0, 'u64'], // guest handle (VA) of xen_pfn_t[]: IN GMFNs / OUT MFNs
  nr_extents: [8, 'u64'],
  extent_order: [16, 'u32'], // size/alignment of each extent: 2^extent_order pages
  mem_flags: [20, 'u32'], // XENMEMF_*
  domid: [24, 'u16'], // DOMID_SELF for a guest
});

export const xen_memory_exchange = layout('xen_memory_exchange', 72, {
  in: [0, xen_memory_reservation],
  out: [32, xen_memory_reservation],
  nr_exchanged: [64, 'u64'],
});

/** Argument of current/maximum_reservation and maximum_gpfn. */
export const xen_memory_domain = layout('xen_memory_domain', 2, {
  domid: [0, 'u16'],
});

export const xen_machphys_mfn_list = layout('xen_machphys_mfn_list', 24, {
  max_extents: [0, 'u32'],
  extent_start: [8, 'u64'], // guest handle (VA) of xen_pfn_t[]
  nr_extents: [16, 'u32'],
});

/** XENMEM_machphys_mapping result: where the read-only M2P is mapped. */
export const xen_machphys_mapping = layout('xen_machphys_mapping', 24, {
  v_start: [0, 'u64'],
  v_end: [8, 'u64'], // Start and end virtual addresses.
  max_mfn: [16, 'u64'], // Maximum MFN that can be looked up.
});

export const XENMAPSPACE_shared_info = 0; // shared info page
export const XENMAPSPACE_grant_table = 1; // grant table page
export const XENMAPSPACE_gmfn = 2; // GMFN
export const XENMAPSPACE_gmfn_range = 3; // GMFN range, XENMEM_add_to_physmap only.
export const XENMAPSPACE_gmfn_foreign = 4; // GMFN from another dom
export const XENMAPSPACE_dev_mmio = 5; // device mmio region
export const XENMAPIDX_grant_table_status = 0x80000000;

export const xen_add_to_physmap = layout('xen_add_to_physmap', 24, {
  domid: [0, 'u16'],
  size: [2, 'u16'], // Number of pages to go through for gmfn_range
  space: [4, 'u32'], // XENMAPSPACE_*
  idx: [8, 'u64'],
  gpfn: [16, 'u64'],
});

export const xen_remove_from_physmap = layout('xen_remove_from_physmap', 16, {
  domid: [0, 'u16'],
  gpfn: [8, 'u64'],
});

/** XENMEM_memory_map / machine_memory_map: buffer holds e820entry[nr_entries]. */
export const xen_memory_map = layout('xen_memory_map', 16, {
  nr_entries: [0, 'u32'], // IN: capacity of buffer; OUT: entries written
  buffer: [8, 'u64'], // guest handle (VA) of the e820 entries
});

export const xen_foreign_memory_map = layout('xen_foreign_memory_map', 24, {
  domid: [0, 'u16'],
  map: [8, xen_memory_map],
});

/**
 * One entry of the XENMEM_memory_map buffer: the BIOS e820 format, packed, 20 bytes. Xen's own
 * `struct e820entry` (xen/arch/x86/include/asm/e820.h) is not in the public headers, so the test
 * checks this against Linux's identical uapi `struct boot_e820_entry` (<asm/bootparam.h>).
 */
export const e820entry = layout('e820entry', 20, {
  addr: [0, 'u64'], // start of memory segment
  size: [8, 'u64'], // size of memory segment
  type: [16, 'u32'], // E820_*
}, { c: 'struct boot_e820_entry' });

// e820entry.type (xen/arch/x86/include/asm/e820.h; not in the public headers).
export const E820_RAM = 1;
export const E820_RESERVED = 2;
export const E820_ACPI = 3;
export const E820_NVS = 4;
export const E820_UNUSABLE = 5;
