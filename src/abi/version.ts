// Version information: xen/include/public/version.h (XENVER_* sub-ops of __HYPERVISOR_xen_version(cmd, arg) and their buffers).
// XENVER_version returns (major << 16) | minor directly; XENVER_pagesize returns the page size; the others fill `arg`.
import { layout } from './layout.js';

export const XENVER_version = 0; // arg == NULL; returns major:minor (16:16).
export const XENVER_extraversion = 1; // arg: xen_extraversion_t
export const XENVER_compile_info = 2; // arg: xen_compile_info
export const XENVER_capabilities = 3; // arg: xen_capabilities_info_t
export const XENVER_changeset = 4; // arg: xen_changeset_info_t
export const XENVER_platform_parameters = 5; // arg: xen_platform_parameters
export const XENVER_get_features = 6; // arg: xen_feature_info
export const XENVER_pagesize = 7; // arg == NULL; returns the page size.
export const XENVER_guest_handle = 8; // arg: xen_domain_handle_t
export const XENVER_commandline = 9; // arg: xen_commandline_t
export const XENVER_build_id = 10; // arg: xen_build_id
/** Xen 4.20+: variable-length versions of 1, 3, 4, 9 (arg: xen_varbuf). */
export const XENVER_extraversion2 = 11;
export const XENVER_capabilities2 = 12;
export const XENVER_changeset2 = 13;
export const XENVER_commandline2 = 14;

/** char[16] */
export const xen_extraversion_t = layout('xen_extraversion_t', 16, {}, { c: 'xen_extraversion_t' });
export const XEN_EXTRAVERSION_LEN = 16;

export const xen_compile_info = layout('xen_compile_info', 144, {
  compiler: [0, 'char', 64],
  compile_by: [64, 'char', 16],
  compile_domain: [80, 'char', 32],
  compile_date: [112, 'char', 32],
});

/** char[1024], e.g. "xen-3.0-x86_64 ..." */
export const xen_capabilities_info_t = layout('xen_capabilities_info_t', 1024, {}, { c: 'xen_capabilities_info_t' });
export const XEN_CAPABILITIES_INFO_LEN = 1024;

/** char[64] */
export const xen_changeset_info_t = layout('xen_changeset_info_t', 64, {}, { c: 'xen_changeset_info_t' });
export const XEN_CHANGESET_INFO_LEN = 64;

export const xen_platform_parameters = layout('xen_platform_parameters', 8, {
  virt_start: [0, 'u64'], // start of the hypervisor hole (HYPERVISOR_VIRT_START)
});

/** XENVER_get_features: bits of submap number submap_idx (XENFEAT_*, ./features.ts). */
export const xen_feature_info = layout('xen_feature_info', 8, {
  submap_idx: [0, 'u32'], // IN: which 32-bit submap to return
  submap: [4, 'u32'], // OUT: 32-bit submap
});

/** XENVER_guest_handle: the domain's 16-byte handle (UUID), xen_domain_handle_t (xen.h). */
export const xen_domain_handle_t = layout('xen_domain_handle_t', 16, {}, { c: 'xen_domain_handle_t' });

/** char[1024] */
export const xen_commandline_t = layout('xen_commandline_t', 1024, {}, { c: 'xen_commandline_t' });

/** XENVER_build_id: IN len = buffer size, OUT len = bytes written to buf[]. */
export const xen_build_id = layout('xen_build_id', 4, {
  len: [0, 'u32'], // IN: size of buf[]. OUT: length of the build id
  buf: [4, 'char', 0], // flexible array
});

/** Xen 4.20+ variable-length result of XENVER_*2. */
export const xen_varbuf = layout('xen_varbuf', 4, {
  len: [0, 'u32'],
  buf: [4, 'char', 0], // flexible array
});
