// Block device rings: xen/include/public/io/blkif.h (BLKIF_OP_*, request/response layouts, VDISK_* info bits).
import { layout } from '../layout.js';

export const BLKIF_OP_READ = 0;
export const BLKIF_OP_WRITE = 1;
/** Only if the backend advertises feature-barrier. */
export const BLKIF_OP_WRITE_BARRIER = 2;
/** Only if the backend advertises feature-flush-cache. */
export const BLKIF_OP_FLUSH_DISKCACHE = 3;
/** Used in SLES sources for device specific command packet; never to be used by anyone else. */
export const BLKIF_OP_RESERVED_1 = 4;
/** Only if the backend advertises feature-discard (request is blkif_request_discard). */
export const BLKIF_OP_DISCARD = 5;
/** Only if the backend advertises feature-max-indirect-segments (request is blkif_request_indirect). */
export const BLKIF_OP_INDIRECT = 6;

/** Maximum scatter/gather segments per request (without indirect descriptors). */
export const BLKIF_MAX_SEGMENTS_PER_REQUEST = 11;
/** Maximum number of indirect pages to use per request. */
export const BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST = 8;

/** One segment: sectors first_sect..last_sect (512-byte units, inclusive) of the granted 4 KiB frame. */
export const blkif_request_segment = layout('blkif_request_segment', 8, {
  gref: [0, 'u32'], // reference to I/O buffer frame
  first_sect: [4, 'u8'], // first sector in frame to transfer (inclusive).
  last_sect: [5, 'u8'], // last sector in frame to transfer (inclusive).
});

export const blkif_request = layout('blkif_request', 112, {
  operation: [0, 'u8'], // BLKIF_OP_???
  nr_segments: [1, 'u8'], // number of segments
  handle: [2, 'u16'], // only for read/write requests (blkif_vdev_t)
  id: [8, 'u64'], // private guest value, echoed in resp
  sector_number: [16, 'u64'], // start sector idx on disk (r/w only), 512-byte units
  seg: [24, blkif_request_segment, BLKIF_MAX_SEGMENTS_PER_REQUEST],
});

export const BLKIF_DISCARD_SECURE = 1 << 0; // ignored if discard-secure=0

export const blkif_request_discard = layout('blkif_request_discard', 32, {
  operation: [0, 'u8'], // BLKIF_OP_DISCARD
  flag: [1, 'u8'], // BLKIF_DISCARD_SECURE or zero
  handle: [2, 'u16'], // same as for read/write requests
  id: [8, 'u64'], // private guest value, echoed in resp
  sector_number: [16, 'u64'], // start sector idx on disk
  nr_sectors: [24, 'u64'], // number of contiguous sectors to discard
});

/** Each indirect page holds 4096 / 8 = 512 blkif_request_segment entries. */
export const blkif_request_indirect = layout('blkif_request_indirect', 64, {
  operation: [0, 'u8'], // BLKIF_OP_INDIRECT
  indirect_op: [1, 'u8'], // BLKIF_OP_{READ/WRITE}
  nr_segments: [2, 'u16'], // number of segments
  id: [8, 'u64'], // private guest value, echoed in resp
  sector_number: [16, 'u64'], // start sector idx on disk (r/w only)
  handle: [24, 'u16'], // same as for read/write requests
  indirect_grefs: [28, 'u32', BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST],
});

export const blkif_response = layout('blkif_response', 16, {
  id: [0, 'u64'], // copied from request
  operation: [8, 'u8'], // copied from request
  status: [10, 'i16'], // BLKIF_RSP_???
});

export const BLKIF_RSP_EOPNOTSUPP = -2; // Operation not supported (only happens on barrier writes).
export const BLKIF_RSP_ERROR = -1; // Operation failed for some unspecified reason (-EIO).
export const BLKIF_RSP_OKAY = 0; // Operation completed successfully.

/** One ring slot, `union blkif_sring_entry` of DEFINE_RING_TYPES(blkif, ...): 32 per 4 KiB page. */
export const blkif_sring_entry = layout('blkif_sring_entry', 112, {
  req: [0, blkif_request],
  rsp: [0, blkif_response],
}, { c: 'union blkif_sring_entry' });

// Backend "info" node bits.
export const VDISK_CDROM = 0x1;
export const VDISK_REMOVABLE = 0x2;
export const VDISK_READONLY = 0x4;
