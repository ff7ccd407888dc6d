// XenStore wire protocol and ring page: xen/include/public/io/xs_wire.h (enum xsd_sockmsg_type, xsd_errors, struct xenstore_domain_interface).
import { layout } from '../layout.js';

// ---- enum xsd_sockmsg_type ----------------------------------------------------------------------
export const XS_CONTROL = 0;
export const XS_DEBUG = XS_CONTROL;
export const XS_DIRECTORY = 1;
export const XS_READ = 2;
export const XS_GET_PERMS = 3;
export const XS_WATCH = 4;
export const XS_UNWATCH = 5;
export const XS_TRANSACTION_START = 6;
export const XS_TRANSACTION_END = 7;
export const XS_INTRODUCE = 8;
export const XS_RELEASE = 9;
export const XS_GET_DOMAIN_PATH = 10;
export const XS_WRITE = 11;
export const XS_MKDIR = 12;
export const XS_RM = 13;
export const XS_SET_PERMS = 14;
export const XS_WATCH_EVENT = 15;
export const XS_ERROR = 16;
export const XS_IS_DOMAIN_INTRODUCED = 17;
export const XS_RESUME = 18;
export const XS_SET_TARGET = 19;
// 20 was XS_RESTRICT, removed.
export const XS_RESET_WATCHES = XS_SET_TARGET + 2;
export const XS_DIRECTORY_PART = 22;
/** Xen 4.21+ */
export const XS_GET_FEATURE = 23;
export const XS_SET_FEATURE = 24;
export const XS_GET_QUOTA = 25;
export const XS_SET_QUOTA = 26;
// XS_TYPE_COUNT is left out: it grows with each Xen release (23 in 4.17, 27 in 4.21).
/** Guaranteed to remain an invalid type. */
export const XS_INVALID = 0xffff;

/**
 * xsd_errors: the errno names a server sends as the payload of an XS_ERROR reply, with their
 * (Linux) errno numbers, in Xen's order.
 */
export const xsd_errors: readonly { readonly errnum: number; readonly errstring: string }[] = Object.freeze(
  ([
    [22, 'EINVAL'],
    [13, 'EACCES'],
    [17, 'EEXIST'],
    [21, 'EISDIR'],
    [2, 'ENOENT'],
    [12, 'ENOMEM'],
    [28, 'ENOSPC'],
    [5, 'EIO'],
    [39, 'ENOTEMPTY'],
    [38, 'ENOSYS'],
    [30, 'EROFS'],
    [16, 'EBUSY'],
    [11, 'EAGAIN'],
    [106, 'EISCONN'],
    [7, 'E2BIG'],
    [1, 'EPERM'],
  ] as const).map(([errnum, errstring]) => Object.freeze({ errnum, errstring })),
);

/** Message header; `len` payload bytes (at most XENSTORE_PAYLOAD_MAX) follow. */
export const xsd_sockmsg = layout('xsd_sockmsg', 16, {
  type: [0, 'u32'], // XS_*
  req_id: [4, 'u32'], // Request identifier, echoed in daemon's response.
  tx_id: [8, 'u32'], // Transaction id (0 if not related to a transaction).
  len: [12, 'u32'], // Length of data following this.
});

/** enum xs_watch_type: field order of an XS_WATCH_EVENT payload. */
export const XS_WATCH_PATH = 0;
export const XS_WATCH_TOKEN = 1;

// ---- Inter-domain shared memory communications --------------------------------------------------
export const XENSTORE_RING_SIZE = 1024;
/** MASK_XENSTORE_IDX(idx): position of free-running index `idx` in req[] / rsp[]. */
export function MASK_XENSTORE_IDX(idx: number): number {
  return idx & (XENSTORE_RING_SIZE - 1);
}

export const xenstore_domain_interface = layout('xenstore_domain_interface', 2080, {
  req: [0x000, 'char', XENSTORE_RING_SIZE], // Requests to xenstore daemon.
  rsp: [0x400, 'char', XENSTORE_RING_SIZE], // Replies and async watch events.
  req_cons: [0x800, 'u32'],
  req_prod: [0x804, 'u32'],
  rsp_cons: [0x808, 'u32'],
  rsp_prod: [0x80c, 'u32'],
  server_features: [0x810, 'u32'], // Bitmap of features supported by the server (XENSTORE_SERVER_FEATURE_*)
  connection: [0x814, 'u32'], // XENSTORE_CONNECTED / XENSTORE_RECONNECT
  error: [0x818, 'u32'], // XENSTORE_ERROR_*
  evtchn_port: [0x81c, 'u32'], // Xen 4.21+: xenstored's port, if non-zero (dom0less); else the one from XS_INTRODUCE
});

/** Violating this is very bad. See docs/misc/xenstore.txt. */
export const XENSTORE_PAYLOAD_MAX = 4096;
/** Violating these just gets you an error back. */
export const XENSTORE_ABS_PATH_MAX = 3072;
export const XENSTORE_REL_PATH_MAX = 2048;

/** The ability to reconnect a ring. */
export const XENSTORE_SERVER_FEATURE_RECONNECTION = 1;
/** The presence of the "error" field in the ring page. */
export const XENSTORE_SERVER_FEATURE_ERROR = 2;
/** Xen 4.22+: the XS_WATCH command can be used with a <depth> parameter. */
export const XENSTORE_SERVER_FEATURE_WATCHDEPTH = 4;
/** Xen 4.22+: the capability to use DOMID_ANY for node permissions. */
export const XENSTORE_SERVER_FEATURE_DOMID_ANY = 8;

// Valid values for the connection field.
export const XENSTORE_CONNECTED = 0; // the steady-state
export const XENSTORE_RECONNECT = 1; // reconnect in progress

// Valid values for the error field.
export const XENSTORE_ERROR_NONE = 0; // No error
export const XENSTORE_ERROR_COMM = 1; // Communication problem
export const XENSTORE_ERROR_RINGIDX = 2; // Invalid ring index
export const XENSTORE_ERROR_PROTO = 3; // Protocol violation (payload too long)
