// XenStore failures and the one table that turns each into the xsd_errors name put on the wire
// (xen/include/public/io/xs_wire.h `xsd_errors`; tools/xenstored/core.c send_error; mirage's
// ocaml-xenstore server/call.ml `reply` plays the same role).
//
// Store and daemon code never spell an errno: they fail with an `XsFailure` (what went wrong,
// for people, logs and tests) and `xsErrorName()` below is the only place that decides which Xen
// error name the client sees. When Xen's implementations disagree, the choice is made and
// explained here, once.

/**
 * A name from xs_wire.h's xsd_errors[] (src/abi/io/xs_wire.ts), as xenstored sends it in an
 * XS_ERROR payload. test/unit/xenstore-wire.test.ts checks each is in the ABI table.
 */
export type XsdErrorName =
  | 'EINVAL'
  | 'EACCES'
  | 'EEXIST'
  | 'EISDIR'
  | 'ENOENT'
  | 'ENOMEM'
  | 'ENOSPC'
  | 'EIO'
  | 'ENOTEMPTY'
  | 'ENOSYS'
  | 'EROFS'
  | 'EBUSY'
  | 'EAGAIN'
  | 'EISCONN'
  | 'E2BIG'
  | 'EPERM';

/**
 * Every reason a XenStore request can fail, and the name the client is told.
 *
 * Quotas follow C xenstored as shipped with Xen 4.17 (Debian 12's xenstore-utils, the era of
 * Linux 6.1): node count, node size, permission-list length and open transactions answer
 * ENOSPC; the watch quota answers E2BIG (xenstored_watch.c do_watch; Xen >= 4.18 says ENOSPC).
 * oxenstored answers "EQUOTA" instead, but EQUOTA is not in xsd_errors: Linux's get_error()
 * would log "xen store gave: unknown error EQUOTA" and use EINVAL, so pvbox never sends it.
 */
export const XS_FAILURES = {
  // --- the request itself ---
  /** Payload is not the NUL-terminated strings the operation takes. */
  malformed: 'EINVAL',
  /** Path has bad characters, '//', a trailing '/', is empty, too long, or '@' where not allowed. */
  badPath: 'EINVAL',
  /** A domid argument is not a decimal number in 0..65535 (or names a domain the op refuses). */
  badDomid: 'EINVAL',
  /** A permission string is not [nrwb]<domid>, or the list is empty. */
  badPerms: 'EINVAL',
  /** TRANSACTION_END argument is neither "T" nor "F"; INTRODUCE's event channel is <= 0; ... */
  badArgument: 'EINVAL',
  /** RM of "/". */
  rmRoot: 'EINVAL',
  /** Message type unknown or not valid from a client (core.c process_message). */
  unknownType: 'ENOSYS',
  /** Privileged-only operation (INTRODUCE, RELEASE, ...) from an unprivileged domain. */
  privileged: 'EACCES',

  // --- the tree ---
  noEntry: 'ENOENT',
  /** Caller lacks read/write/owner permission (or may not learn whether the node exists). */
  denied: 'EACCES',
  /** An unprivileged owner tried to give its node away (SET_PERMS with another owner). */
  ownerChange: 'EPERM',

  // --- watches ---
  watchExists: 'EEXIST',
  noWatch: 'ENOENT',

  // --- transactions ---
  /** tx_id names no open transaction of this connection; TRANSACTION_END with tx_id 0. */
  noTransaction: 'ENOENT',
  /** TRANSACTION_START sent inside a transaction. */
  nestedTransaction: 'EBUSY',
  /** Something the transaction read or wrote changed since it started. */
  conflict: 'EAGAIN',

  // --- quotas and sizes ---
  quotaNodes: 'ENOSPC',
  quotaNodeSize: 'ENOSPC',
  quotaPerms: 'ENOSPC',
  quotaTransactions: 'ENOSPC',
  quotaWatches: 'E2BIG',
  /** The reply would exceed XENSTORE_PAYLOAD_MAX (core.c send_reply). */
  replyTooBig: 'E2BIG',

  // --- domains ---
  /** RELEASE / RESUME / SET_TARGET of a domain that was never introduced. */
  noDomain: 'ENOENT',

  /** A host bug while serving the request; logged by the daemon. */
  internal: 'EIO',
} as const satisfies Record<string, XsdErrorName>;

export type XsFailure = keyof typeof XS_FAILURES;

/** The one mapping from a failure to the name on the wire. */
export function xsErrorName(failure: XsFailure): XsdErrorName {
  return XS_FAILURES[failure];
}

/** Result of every store operation: a value, or why not. Nothing is thrown at a guest. */
export type XsResult<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly failure: XsFailure };

export function ok<T>(value: T): XsResult<T> {
  return { ok: true, value };
}

export const OK_VOID: XsResult<void> = Object.freeze({ ok: true, value: undefined });

export function fail<T = never>(failure: XsFailure): XsResult<T> {
  return { ok: false, failure };
}
