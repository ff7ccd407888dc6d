// XenStore node permissions: the ACL, its string form and the access a caller gets
// (docs/misc/xenstore.txt "Permissions"; tools/xenstored/core.c perm_for_conn;
// tools/include/xen-tools/xenstore-common.h xenstore_strings_to_perms / xenstore_perm_to_string).
//
// A node's ACL is a list of {domid, perm}. The first entry names the owner, who always has full
// access, and its perm is the default for every domain without an entry of its own. The
// privileged domain (dom0) may do anything.

/** enum xs_perm_type (xenstore_lib.h). OWNER is internal: it is never on the wire. */
export const XS_PERM_NONE = 0;
export const XS_PERM_READ = 1;
export const XS_PERM_WRITE = 2;
export const XS_PERM_OWNER = 8;

import { DOMID_ANY } from '../abi/xen.js';

// DOMID_ANY in an ACL entry matches every domain (Xen 4.22 XENSTORE_SERVER_FEATURE_DOMID_ANY).
export { DOMID_ANY, DOMID_FIRST_RESERVED, DOMID_SELF } from '../abi/xen.js';

/** n: none, r: read, w: write, b: both. */
export type XsPermLetter = 'n' | 'r' | 'w' | 'b';

export interface XsPerm {
  readonly domid: number;
  readonly perm: XsPermLetter;
}

const LETTER_MASK: Record<XsPermLetter, number> = {
  n: XS_PERM_NONE,
  r: XS_PERM_READ,
  w: XS_PERM_WRITE,
  b: XS_PERM_READ | XS_PERM_WRITE,
};

export function permMask(letter: XsPermLetter): number {
  return LETTER_MASK[letter];
}

/** "r5" → {domid: 5, perm: 'r'}; undefined if not [nrwb] followed by a domid in 0..65535. */
export function parsePerm(s: string): XsPerm | undefined {
  const m = /^([nrwb])([0-9]{1,5})$/.exec(s);
  if (!m) return undefined;
  const domid = Number(m[2]);
  if (domid > 65535) return undefined;
  return { domid, perm: m[1] as XsPermLetter };
}

/** {domid: 5, perm: 'r'} → "r5". */
export function formatPerm(p: XsPerm): string {
  return `${p.perm}${p.domid}`;
}

/** Who is asking: a domain, possibly privileged, possibly the target-holder of another domain. */
export interface XsCaller {
  readonly domid: number;
  /** dom0 (xenstored's priv_domid): every access allowed, no quotas. */
  readonly privileged: boolean;
  /** XS_SET_TARGET: this domain acts with the rights of `target` (a stub domain for its guest). */
  readonly target?: number | undefined;
}

function entryMatches(caller: XsCaller, id: number): boolean {
  return id === caller.domid || (caller.target !== undefined && id === caller.target) || id === DOMID_ANY;
}

/**
 * The access `caller` has to a node with ACL `perms`: a mask of XS_PERM_READ | XS_PERM_WRITE |
 * XS_PERM_OWNER (core.c perm_for_conn). Privileged callers and the owner get everything; else the
 * first later entry naming the caller decides; else the owner entry's perm, the default.
 */
export function permFor(caller: XsCaller, perms: readonly XsPerm[]): number {
  const all = XS_PERM_READ | XS_PERM_WRITE | XS_PERM_OWNER;
  const owner = perms[0];
  if (caller.privileged || owner === undefined || entryMatches(caller, owner.domid)) return all;
  for (let i = 1; i < perms.length; i++) {
    const p = perms[i] as XsPerm;
    if (entryMatches(caller, p.domid)) return permMask(p.perm);
  }
  return permMask(owner.perm);
}
