// Split-driver shared rings: xen/include/public/io/ring.h (the sring header every DEFINE_RING_TYPES page starts with, __RING_SIZE).
// Request/response entry layouts live with each protocol (./blkif.ts, ./netif.ts); FrontRing/BackRing logic lives in src/ring/.
import { layout } from '../layout.js';

/**
 * Header of a shared ring page (`struct <name>_sring` up to its `ring[]`): 64 bytes, then a
 * power-of-two array of request/response union entries. Indices are free-running u32s (RING_IDX).
 * Checked against blkif's instance; every DEFINE_RING_TYPES instance has the same header.
 */
export const sring = layout('sring', 64, {
  req_prod: [0, 'u32'],
  req_event: [4, 'u32'],
  rsp_prod: [8, 'u32'],
  rsp_event: [12, 'u32'],
  'pvt.pvt_pad': [16, 'u8', 4], // netif smartpoll_active / tapif_user msg
  __pad: [20, 'u8', 44],
  // then: union <name>_sring_entry ring[] at byte 64 (checked: offsetof(ring) is this layout's size)
}, { c: 'struct blkif_sring', cSizeof: 'offsetof(struct blkif_sring, ring)' });

/** Round down to a power of 2 (ring.h __RD32; 0 stays 0). */
export function __RD32(x: number): number {
  x >>>= 0;
  return x === 0 ? 0 : 2 ** (31 - Math.clz32(x));
}

/**
 * Number of entries of a shared ring occupying `sz` bytes (normally 4096 << ring-page-order),
 * given the size of one `union <name>_sring_entry`. ring.h computes it as
 * __RD32((sz - offsetof(sring, ring)) / sizeof(ring[0])); its __RING_SIZE(_s, _sz) takes the
 * sring pointer for the entry size, this takes the entry size itself.
 */
export function __RING_SIZE(entrySize: number, sz: number): number {
  return __RD32(Math.floor((sz - sring.size) / entrySize));
}

/** io/ring.h page size for flex rings. */
export const XEN_PAGE_SHIFT = 12;
/** Bytes in each direction of a DEFINE_XEN_FLEX_RING data area of 2^order pages. */
export function XEN_FLEX_RING_SIZE(order: number): number {
  return 2 ** (order + XEN_PAGE_SHIFT - 1);
}
