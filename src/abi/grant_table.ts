// Grant tables: xen/include/public/grant_table.h (entries, GTF_* flags, GNTTABOP_* sub-ops and structs, GNTMAP_*, GNTST_*).
import { layout } from './layout.js';

// ---- Shared grant entries --------------------------------------------------------------------
/** Version 1 entry, 8 bytes, 512 per 4 KiB frame. */
export const grant_entry_v1 = layout('grant_entry_v1', 8, {
  flags: [0, 'u16'], // GTF_xxx: various type and flag information.
  domid: [2, 'u16'], // The domain being granted foreign privileges.
  frame: [4, 'u32'], // GTF_permit_access: GFN the grantee may map.
});

/** Entries reserved by the toolstack: 0 = console, 1 = xenstore (ring pages). */
export const GNTTAB_NR_RESERVED_ENTRIES = 8;
export const GNTTAB_RESERVED_CONSOLE = 0;
export const GNTTAB_RESERVED_XENSTORE = 1;

// Type field (bits 0-1) of grant_entry_{v1,v2}.flags.
export const GTF_invalid = 0 << 0;
export const GTF_permit_access = 1 << 0;
export const GTF_accept_transfer = 2 << 0;
export const GTF_transitive = 3 << 0;
export const GTF_type_mask = 3 << 0;
// Subflags for GTF_permit_access and GTF_transitive.
export const _GTF_readonly = 2;
export const GTF_readonly = 1 << _GTF_readonly;
export const _GTF_reading = 3;
export const GTF_reading = 1 << _GTF_reading;
export const _GTF_writing = 4;
export const GTF_writing = 1 << _GTF_writing;
export const _GTF_PWT = 5;
export const GTF_PWT = 1 << _GTF_PWT;
export const _GTF_PCD = 6;
export const GTF_PCD = 1 << _GTF_PCD;
export const _GTF_PAT = 7;
export const GTF_PAT = 1 << _GTF_PAT;
export const _GTF_sub_page = 8;
export const GTF_sub_page = 1 << _GTF_sub_page;
// Subflags for GTF_accept_transfer.
export const _GTF_transfer_committed = 2;
export const GTF_transfer_committed = 1 << _GTF_transfer_committed;
export const _GTF_transfer_completed = 3;
export const GTF_transfer_completed = 1 << _GTF_transfer_completed;

/** Version 2 (16-byte union) entries. */
export const grant_entry_header = layout('grant_entry_header', 4, {
  flags: [0, 'u16'],
  domid: [2, 'u16'],
});
export const grant_entry_v2 = layout('grant_entry_v2', 16, {
  hdr: [0, grant_entry_header],
  'full_page.frame': [8, 'u64'],
  'sub_page.page_off': [4, 'u16'],
  'sub_page.length': [6, 'u16'],
  'sub_page.frame': [8, 'u64'],
  'transitive.trans_domid': [4, 'u16'],
  'transitive.gref': [8, 'u32'],
}, { c: 'union grant_entry_v2' });

// ---- GNTTABOP_* (__HYPERVISOR_grant_table_op(cmd, arg, count)) --------------------------------
export const GNTTABOP_map_grant_ref = 0;
export const GNTTABOP_unmap_grant_ref = 1;
export const GNTTABOP_setup_table = 2;
export const GNTTABOP_dump_table = 3;
export const GNTTABOP_transfer = 4;
export const GNTTABOP_copy = 5;
export const GNTTABOP_query_size = 6;
export const GNTTABOP_unmap_and_replace = 7;
export const GNTTABOP_set_version = 8;
export const GNTTABOP_get_status_frames = 9;
export const GNTTABOP_get_version = 10;
export const GNTTABOP_swap_grant_ref = 11;
export const GNTTABOP_cache_flush = 12;

export const gnttab_map_grant_ref = layout('gnttab_map_grant_ref', 32, {
  host_addr: [0, 'u64'], // IN
  flags: [8, 'u32'], // IN: GNTMAP_*
  ref: [12, 'u32'], // IN
  dom: [16, 'u16'], // IN
  status: [18, 'i16'], // OUT: GNTST_*
  handle: [20, 'u32'], // OUT
  dev_bus_addr: [24, 'u64'], // OUT
});

export const gnttab_unmap_grant_ref = layout('gnttab_unmap_grant_ref', 24, {
  host_addr: [0, 'u64'], // IN
  dev_bus_addr: [8, 'u64'], // IN
  handle: [16, 'u32'], // IN
  status: [20, 'i16'], // OUT: GNTST_*
});

export const gnttab_setup_table = layout('gnttab_setup_table', 24, {
  dom: [0, 'u16'], // IN
  nr_frames: [4, 'u32'], // IN
  status: [8, 'i16'], // OUT: GNTST_*
  frame_list: [16, 'u64'], // OUT: guest handle (VA) of xen_pfn_t[nr_frames]
});

export const gnttab_dump_table = layout('gnttab_dump_table', 4, {
  dom: [0, 'u16'], // IN
  status: [2, 'i16'], // OUT: GNTST_*
});

export const gnttab_transfer = layout('gnttab_transfer', 24, {
  mfn: [0, 'u64'], // IN
  domid: [8, 'u16'], // IN
  ref: [12, 'u32'], // IN
  status: [16, 'i16'], // OUT: GNTST_*
});

export const _GNTCOPY_source_gref = 0;
export const GNTCOPY_source_gref = 1 << _GNTCOPY_source_gref;
export const _GNTCOPY_dest_gref = 1;
export const GNTCOPY_dest_gref = 1 << _GNTCOPY_dest_gref;

/** One side of a GNTTABOP_copy: a grant ref (if the GNTCOPY_*_gref flag is set) or a GMFN. */
export const gnttab_copy_ptr = layout('gnttab_copy_ptr', 16, {
  'u.ref': [0, 'u32'],
  'u.gmfn': [0, 'u64'],
  domid: [8, 'u16'],
  offset: [10, 'u16'],
});

export const gnttab_copy = layout('gnttab_copy', 40, {
  source: [0, gnttab_copy_ptr], // IN
  dest: [16, gnttab_copy_ptr], // IN
  len: [32, 'u16'], // IN
  flags: [34, 'u16'], // IN: GNTCOPY_*
  status: [36, 'i16'], // OUT: GNTST_*
});

export const gnttab_query_size = layout('gnttab_query_size', 16, {
  dom: [0, 'u16'], // IN
  nr_frames: [4, 'u32'], // OUT
  max_nr_frames: [8, 'u32'], // OUT
  status: [12, 'i16'], // OUT: GNTST_*
});

export const gnttab_unmap_and_replace = layout('gnttab_unmap_and_replace', 24, {
  host_addr: [0, 'u64'], // IN
  new_addr: [8, 'u64'], // IN
  handle: [16, 'u32'], // IN
  status: [20, 'i16'], // OUT: GNTST_*
});

export const gnttab_set_version = layout('gnttab_set_version', 4, {
  version: [0, 'u32'], // IN/OUT
});

export const gnttab_get_status_frames = layout('gnttab_get_status_frames', 16, {
  nr_frames: [0, 'u32'], // IN
  dom: [4, 'u16'], // IN
  status: [6, 'i16'], // OUT: GNTST_*
  frame_list: [8, 'u64'], // OUT: guest handle (VA) of uint64_t[nr_frames]
});

export const gnttab_get_version = layout('gnttab_get_version', 8, {
  dom: [0, 'u16'], // IN
  pad: [2, 'u16'],
  version: [4, 'u32'], // OUT
});

export const gnttab_swap_grant_ref = layout('gnttab_swap_grant_ref', 12, {
  ref_a: [0, 'u32'], // IN/OUT
  ref_b: [4, 'u32'], // IN/OUT
  status: [8, 'i16'], // OUT: GNTST_*
});

export const GNTTAB_CACHE_CLEAN = 1 << 0;
export const GNTTAB_CACHE_INVAL = 1 << 1;
export const GNTTAB_CACHE_SOURCE_GREF = 2 ** 31; // (1u << 31)

export const gnttab_cache_flush = layout('gnttab_cache_flush', 16, {
  'a.dev_bus_addr': [0, 'u64'],
  'a.ref': [0, 'u32'],
  offset: [8, 'u16'],
  length: [10, 'u16'],
  op: [12, 'u32'], // GNTTAB_CACHE_*
});

// ---- GNTMAP_* (gnttab_map_grant_ref.flags) ----------------------------------------------------
export const _GNTMAP_device_map = 0;
export const GNTMAP_device_map = 1 << _GNTMAP_device_map;
export const _GNTMAP_host_map = 1;
export const GNTMAP_host_map = 1 << _GNTMAP_host_map;
export const _GNTMAP_readonly = 2;
export const GNTMAP_readonly = 1 << _GNTMAP_readonly;
export const _GNTMAP_application_map = 3;
export const GNTMAP_application_map = 1 << _GNTMAP_application_map;
export const _GNTMAP_contains_pte = 4;
export const GNTMAP_contains_pte = 1 << _GNTMAP_contains_pte;
export const _GNTMAP_guest_avail0 = 16;
export const GNTMAP_guest_avail_mask = 0xffffffff - (2 ** _GNTMAP_guest_avail0 - 1); // ((uint32_t)~0 << 16)

// ---- GNTST_* (status of each grant operation) -------------------------------------------------
export const GNTST_okay = 0; // Normal return.
export const GNTST_general_error = -1; // General undefined error.
export const GNTST_bad_domain = -2; // Unrecognsed domain id.
export const GNTST_bad_gntref = -3; // Unrecognised or inappropriate gntref.
export const GNTST_bad_handle = -4; // Unrecognised or inappropriate handle.
export const GNTST_bad_virt_addr = -5; // Inappropriate virtual address to map.
export const GNTST_bad_dev_addr = -6; // Inappropriate device address to unmap.
export const GNTST_no_device_space = -7; // Out of space in I/O MMU.
export const GNTST_permission_denied = -8; // Not enough privilege for operation.
export const GNTST_bad_page = -9; // Specified page was invalid for op.
export const GNTST_bad_copy_arg = -10; // copy arguments cross page boundary.
export const GNTST_address_too_big = -11; // transfer page address too large.
export const GNTST_eagain = -12; // Operation not done; try again.
export const GNTST_no_space = -13; // Out of space (handles etc).

/** GNTTABOP_error_msgs: message for GNTST_x at index -x. */
export const GNTTABOP_error_msgs: readonly string[] = Object.freeze([
  'okay',
  'undefined error',
  'unrecognised domain id',
  'invalid grant reference',
  'invalid mapping handle',
  'invalid virtual address',
  'invalid device address',
  'no spare translation slot in the I/O MMU',
  'permission denied',
  'bad page',
  'copy arguments cross page boundary',
  'page address size too large',
  'operation not done; try again',
  'out of space',
]);
