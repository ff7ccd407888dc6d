// Dynamically linked Debian programs for the initramfs: the programs of a few packages plus every library their ELF DT_NEEDED entries reach, taken from extracted .debs.

import { lstat, readFile, readdir, readlink } from 'node:fs/promises';
import { posix } from 'node:path';
import { EM_X86_64, readElfDynamic } from './elf.js';

/** Packages whose programs (bin, sbin, usr/bin, usr/sbin) go into the image. */
export const PROGRAM_PACKAGES = ['xenstore-utils'] as const;
/**
 * Packages the programs' libraries come from (ELF DT_NEEDED, resolved like
 * ld.so does). libgcc-s1 is there for DLOPENED.
 */
export const LIBRARY_PACKAGES = ['libxenstore4', 'libxentoolcore1', 'libc6', 'libgcc-s1'] as const;
/** Every Debian package the userland is built from (part of the image recipe). */
export const USERLAND_PACKAGES = [...PROGRAM_PACKAGES, ...LIBRARY_PACKAGES] as const;
/**
 * Libraries loaded with dlopen rather than named in DT_NEEDED: glibc's
 * pthread_cancel loads libgcc_s.so.1 for unwinding and aborts without it
 * (libxenstore cancels its watch reader thread in xs_close, e.g. when
 * `xenstore-watch -n N` ends).
 */
export const DLOPENED = ['libgcc_s.so.1'] as const;

const MULTIARCH = 'x86_64-linux-gnu';
/** Where ld.so looks for a soname with no ld.so.cache (Debian's glibc system directories), in order. */
const LIBRARY_DIRS = [`lib/${MULTIARCH}`, `usr/lib/${MULTIARCH}`, 'lib64', 'usr/lib64', 'lib', 'usr/lib'];
const PROGRAM_DIRS = ['bin', 'sbin', 'usr/bin', 'usr/sbin'];

export interface ExtractedPackage {
  name: string;
  version: string;
  /** Directory the .deb was extracted into. */
  root: string;
}

export type UserlandEntry =
  | { kind: 'file'; path: string; data: Buffer; perm: number; from: string }
  | { kind: 'symlink'; path: string; target: string; from: string };

export interface Userland {
  /** Archive entries (paths relative to /, with usr/ folded away as the image does), in a stable order. */
  entries: UserlandEntry[];
  /** Programs by image path, e.g. bin/xenstore-ls. */
  programs: string[];
  /** Shared objects shipped: soname → image path and the package it came from. */
  libraries: { soname: string; path: string; package: string }[];
  /** The ELF interpreter the programs ask for, e.g. /lib64/ld-linux-x86-64.so.2. */
  interpreter?: string;
  /** Package symlinks left out because they point at nothing shipped (e.g. xenstore-control → xen-utils-wrapper). */
  skipped: string[];
  /** Bytes of regular files added. */
  bytes: number;
}

/**
 * The initramfs has /usr/bin → /bin and /usr/sbin → /sbin (and /usr/lib →
 * /lib): a package path under usr/ lands in the top-level directory.
 */
export function foldUsr(rel: string): string {
  const m = /^usr\/(bin|sbin|lib|lib64)(\/.*)?$/.exec(rel);
  return m ? `${m[1]}${m[2] ?? ''}` : rel;
}

function isWithin(rel: string): boolean {
  return rel !== '..' && !rel.startsWith('../') && !posix.isAbsolute(rel);
}

/** One step of a symlink chain inside an extracted package (absolute targets are relative to the package root). */
function symlinkStep(rel: string, target: string): string {
  const next = target.startsWith('/') ? posix.normalize(target.slice(1)) : posix.normalize(posix.join(posix.dirname(rel), target));
  if (!isWithin(next)) throw new Error(`symlink ${rel} → ${target} leaves the package`);
  return next;
}

async function lstatOrUndef(p: string) {
  return lstat(p).catch(() => undefined);
}

/** Follows `rel` through symlinks inside `root`: the chain of paths, the last being a regular file; undefined if it dangles. */
async function chain(root: string, rel: string): Promise<string[] | undefined> {
  const out: string[] = [];
  for (let hops = 0; hops < 40; hops++) {
    out.push(rel);
    const st = await lstatOrUndef(posix.join(root, rel));
    if (!st) return undefined;
    if (st.isFile()) return out;
    if (!st.isSymbolicLink()) return undefined;
    rel = symlinkStep(rel, await readlink(posix.join(root, rel)));
  }
  throw new Error(`too many symlinks resolving ${rel}`);
}

/**
 * Collects the programs of `programPackages` and the closure of the shared
 * libraries they need (DT_NEEDED, recursively, plus DLOPENED and the ELF
 * interpreter), all from the extracted `packages`. Fails with the missing
 * soname if a dependency is in none of them.
 */
export async function collectUserland(packages: ExtractedPackage[], programPackages: readonly string[] = PROGRAM_PACKAGES, dlopened: readonly string[] = DLOPENED): Promise<Userland> {
  const entries = new Map<string, UserlandEntry>();
  const elfQueue: { path: string; data: Buffer }[] = [];
  const result: Userland = { entries: [], programs: [], libraries: [], skipped: [], bytes: 0 };

  const add = (e: UserlandEntry): boolean => {
    const prev = entries.get(e.path);
    if (prev) {
      const same = prev.kind === e.kind && (prev.kind === 'symlink' ? prev.target === (e as typeof prev).target : prev.data.equals((e as typeof prev).data));
      if (!same) throw new Error(`${e.path} comes from both ${prev.from} and ${e.from}`);
      return false;
    }
    entries.set(e.path, e);
    if (e.kind === 'file') result.bytes += e.data.length;
    return true;
  };

  /** Ships a package path with its symlink chain; returns the image path of the regular file at its end. */
  const ship = async (pkg: ExtractedPackage, rel: string): Promise<string> => {
    const links = await chain(pkg.root, rel);
    if (!links) throw new Error(`${pkg.name}: ${rel} dangles`);
    for (let i = 0; i + 1 < links.length; i++) {
      const from = links[i]!;
      const to = links[i + 1]!;
      const target = posix.dirname(foldUsr(from)) === posix.dirname(foldUsr(to)) ? posix.basename(to) : `/${foldUsr(to)}`;
      add({ kind: 'symlink', path: foldUsr(from), target, from: pkg.name });
    }
    const real = links[links.length - 1]!;
    const path = foldUsr(real);
    const st = await lstat(posix.join(pkg.root, real));
    const data = await readFile(posix.join(pkg.root, real));
    if (add({ kind: 'file', path, data, perm: st.mode & 0o777, from: pkg.name }) && data.length >= 4 && data.readUInt32BE(0) === 0x7f454c46) elfQueue.push({ path, data });
    return path;
  };

  const find = async (rel: string): Promise<{ pkg: ExtractedPackage; rel: string } | undefined> => {
    for (const pkg of packages) if (await chain(pkg.root, rel)) return { pkg, rel };
    return undefined;
  };

  // Programs. Hard links (xenstore-ls, -read, ... are all one multi-call binary) become symlinks to the first name.
  for (const name of programPackages) {
    const pkg = packages.find((p) => p.name === name);
    if (!pkg) throw new Error(`package ${name} was not extracted`);
    const byInode = new Map<string, string>();
    for (const dir of PROGRAM_DIRS) {
      const names = (await readdir(posix.join(pkg.root, dir)).catch(() => [] as string[])).sort();
      for (const n of names) {
        const rel = `${dir}/${n}`;
        const st = await lstat(posix.join(pkg.root, rel));
        if (st.isFile()) {
          const key = `${st.dev}:${st.ino}`;
          const first = byInode.get(key);
          if (first) {
            add({ kind: 'symlink', path: foldUsr(rel), target: posix.dirname(first) === posix.dirname(foldUsr(rel)) ? posix.basename(first) : `/${first}`, from: pkg.name });
          } else {
            byInode.set(key, await ship(pkg, rel));
          }
          result.programs.push(foldUsr(rel));
        } else if (st.isSymbolicLink()) {
          if (!(await chain(pkg.root, rel).catch(() => undefined))) {
            result.skipped.push(`${rel} → ${await readlink(posix.join(pkg.root, rel))}`);
            continue;
          }
          await ship(pkg, rel);
          result.programs.push(foldUsr(rel));
        }
      }
    }
  }

  // Libraries: what the dynamic loader would load, searched as ld.so searches without a cache.
  const shippedSonames = new Map<string, string>();
  const needLibrary = async (soname: string, runpath: string[], by: string): Promise<void> => {
    if (shippedSonames.has(soname)) return;
    const dirs = [...runpath.map((d) => d.replace(/^\/+/, '')), ...LIBRARY_DIRS];
    for (const dir of dirs) {
      const hit = await find(`${dir}/${soname}`);
      if (!hit) continue;
      const path = await ship(hit.pkg, hit.rel);
      shippedSonames.set(soname, path);
      result.libraries.push({ soname, path: foldUsr(hit.rel), package: hit.pkg.name });
      return;
    }
    throw new Error(`${by} needs ${soname}, which none of ${packages.map((p) => p.name).join(', ')} provides`);
  };

  const done = new Set<string>();
  const drain = async (): Promise<void> => {
    while (elfQueue.length) {
      const { path, data } = elfQueue.shift()!;
      if (done.has(path)) continue;
      done.add(path);
      const dyn = readElfDynamic(data);
      if (dyn.machine !== EM_X86_64) throw new Error(`${path} is not an x86-64 ELF file (e_machine ${dyn.machine})`);
      if (dyn.interp !== undefined) {
        if (result.interpreter !== undefined && result.interpreter !== dyn.interp) throw new Error(`${path} wants interpreter ${dyn.interp}, others ${result.interpreter}`);
        if (result.interpreter === undefined) {
          result.interpreter = dyn.interp;
          const hit = await find(dyn.interp.replace(/^\/+/, ''));
          if (!hit) throw new Error(`${path} wants interpreter ${dyn.interp}, which none of ${packages.map((p) => p.name).join(', ')} provides`);
          const real = await ship(hit.pkg, hit.rel);
          result.libraries.push({ soname: posix.basename(dyn.interp), path: foldUsr(hit.rel), package: hit.pkg.name });
          // The loader is already mapped: a DT_NEEDED on its soname (libc.so.6 → ld-linux-x86-64.so.2) is satisfied by it.
          shippedSonames.set(readElfDynamic(entryData(entries, real)).soname ?? posix.basename(dyn.interp), real);
          shippedSonames.set(posix.basename(dyn.interp), real);
        }
      }
      for (const soname of dyn.needed) await needLibrary(soname, dyn.runpath, path);
    }
  };
  await drain();
  for (const soname of dlopened) await needLibrary(soname, [], 'dlopen');
  await drain();

  result.entries = [...entries.values()].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  result.programs.sort();
  return result;
}

function entryData(entries: Map<string, UserlandEntry>, path: string): Buffer {
  const e = entries.get(path);
  if (!e || e.kind !== 'file') throw new Error(`${path} is not a shipped file`);
  return e.data;
}
