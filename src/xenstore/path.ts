// XenStore path rules: validation, relative-path resolution, parent/child relations
// (docs/misc/xenstore.txt "Paths are /-separated..."; tools/xenstored/core.c canonicalize,
// valid_chars, get_parent; watch.c is_child).

import { XENSTORE_ABS_PATH_MAX, XENSTORE_REL_PATH_MAX } from './wire.js';

/** /local/domain/<domid>: a domain's home, and the base of its relative paths. */
export function domainPath(domid: number): string {
  return `/local/domain/${domid}`;
}

/** ASCII alphanumerics and -/_@ (core.c valid_chars). */
const VALID_CHARS = /^[A-Za-z0-9\-/_@]*$/;

/** "/local/domain/<up to 5 digits>/" prefix, not counted against XENSTORE_REL_PATH_MAX. */
const LOCAL_DOMAIN_PREFIX = /^\/local\/domain\/[0-9]{1,5}\//;

/** A path that names a node is absolute ('/'); a special watch path starts with '@'. */
export function isRelativePath(path: string): boolean {
  return !path.startsWith('/') && !path.startsWith('@');
}

export function isSpecialPath(path: string): boolean {
  return path.startsWith('@');
}

/**
 * The absolute form of `path` as sent by `domid`, or undefined if it is invalid (EINVAL).
 *
 * - only [A-Za-z0-9-/_@]; a leading '@' only when `allowSpecial` (watches, GET/SET_PERMS);
 * - a path not starting with '/' or '@' is relative to /local/domain/<domid>;
 * - no "//", no trailing '/' except "/" itself, not empty;
 * - at most XENSTORE_REL_PATH_MAX chars after a leading "/local/domain/<id>/" (Xen 4.17
 *   is_valid_nodename; the quota applies to every caller there), and never more than
 *   XENSTORE_ABS_PATH_MAX in all.
 */
export function canonicalize(domid: number, path: string, allowSpecial: boolean): string | undefined {
  if (!VALID_CHARS.test(path)) return undefined;
  if (path.startsWith('@') && !allowSpecial) return undefined;
  const name = isRelativePath(path) ? `${domainPath(domid)}/${path}` : path;
  if (name.endsWith('/') && name !== '/') return undefined;
  if (name.includes('//')) return undefined;
  if (name.length > XENSTORE_ABS_PATH_MAX) return undefined;
  const localOff = LOCAL_DOMAIN_PREFIX.exec(name)?.[0].length ?? 0;
  if (name.length - localOff > XENSTORE_REL_PATH_MAX) return undefined;
  return name;
}

/** Parent of an absolute or special path; "/" for "/x" and for "@x" (core.c get_parent). */
export function parentPath(path: string): string {
  const slash = path.lastIndexOf('/');
  return slash <= 0 ? '/' : path.slice(0, slash);
}

/** Last component of a path other than "/". */
export function basename(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1);
}

/** `parent/name`, with "/" handled. */
export function childPath(parent: string, name: string): string {
  return parent === '/' ? `/${name}` : `${parent}/${name}`;
}

/**
 * xenstore.txt: <child> is a child of <parent> if they are identical, or <parent> is "/" (for a
 * '/'-path), or "<parent>/" is an initial substring of <child>. A path is a child of itself.
 */
export function isChildPath(child: string, parent: string): boolean {
  if (child === parent) return true;
  if (parent === '/') return child.startsWith('/');
  return child.startsWith(parent) && child.charCodeAt(parent.length) === 0x2f; /* '/' */
}

/** Components of an absolute path: "/" → [], "/a/b" → ["a", "b"]. */
export function pathComponents(path: string): string[] {
  return path === '/' ? [] : path.slice(1).split('/');
}

/**
 * A domid argument (core.c/domain.c parse_domid: strtoul base 10, whole string, <= 65535).
 * As in xenstored, the empty string parses as 0.
 */
export function parseDomid(s: string): number | undefined {
  if (!/^[0-9]*$/.test(s)) return undefined;
  const v = s === '' ? 0 : Number(s);
  return v <= 65535 ? v : undefined;
}
