// A "tools disk" for benches: Debian's own build of a program (fio) with the shared libraries it loads, in an ext4 image the guest mounts read-only and runs through the dynamic loader, so the busybox initramfs need not grow.
//
// Packages come from apt (apt-get download, dpkg-deb -x) into pvbox's cache; the libraries are
// picked by following ELF DT_NEEDED from the program (src/images/userland.ts collectUserland, as
// for xenstore-utils in the initramfs); the image is made by `mkfs.ext4 -d DIR` (no loop mount).
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { aptDownload, aptShow, aptUpdate, debFileName, extractDeb, verifyDeb, type AptRecord } from '../../src/images/deb.js';
import { cacheDir } from '../../src/images/debian.js';
import { ensureHostCommands } from '../../src/images/host-packages.js';
import { collectUserland, DLOPENED, type ExtractedPackage, type Userland } from '../../src/images/userland.js';

/** Bump when the layout of the disk changes. */
const TOOLS_FORMAT = 2;

export interface ToolsDisk {
  /** The ext4 image (attach read-only). */
  image: string;
  /** The command line prefix that runs `program` from the disk mounted at `mountPoint` in the guest. */
  command(mountPoint: string): string;
  /** Package name → version the disk was built from. */
  packages: Record<string, string>;
  /** Shared objects on the disk. */
  libraries: number;
  bytes: number;
}

interface ToolsRecord { format: number; program: string; interpreter: string; libraryDirs: string[]; packages: Record<string, string>; libraries: number; bytes: number }

/** Name of the first alternative of each Depends/Pre-Depends clause. */
function dependsOf(rec: AptRecord): string[] {
  const out: string[] = [];
  for (const field of ['Pre-Depends', 'Depends']) {
    for (const clause of (rec[field] ?? '').split(',')) {
      const m = /^\s*([a-z0-9][a-z0-9+.-]*)/.exec(clause.split('|')[0] ?? '');
      if (m) out.push(m[1]!);
    }
  }
  return out;
}

/**
 * The package and the closure of its library dependencies: only packages named lib* / zlib* are
 * followed (python3, perl, init-system-helpers… hold no shared object a binary links to). Which
 * of their libraries are really loaded is decided later by DT_NEEDED.
 */
async function libraryClosure(pkg: string): Promise<AptRecord[]> {
  const found = new Map<string, AptRecord>();
  let wave = [pkg];
  while (wave.length) {
    const recs = await aptShow(wave);
    const next = new Set<string>();
    for (const name of wave) {
      const rec = recs.get(name)!;
      found.set(name, rec);
      for (const dep of dependsOf(rec)) if (/^(lib|zlib)/.test(dep) && !found.has(dep)) next.add(dep);
    }
    wave = [...next].filter((n) => !found.has(n));
  }
  return [...found.values()];
}

/** Makes an absolute symlink target relative, so links stay inside the disk wherever it is mounted. */
function relativeTarget(path: string, target: string): string {
  return target.startsWith('/') ? posix.relative(posix.dirname(`/${path}`), target) || '.' : target;
}

async function writeTree(root: string, userland: Userland): Promise<void> {
  for (const e of userland.entries) {
    const at = join(root, e.path);
    await mkdir(posix.dirname(at), { recursive: true });
    if (e.kind === 'file') { await writeFile(at, e.data); await chmod(at, e.perm); } else await symlink(relativeTarget(e.path, e.target), at);
  }
}

function mkfsExt4(dir: string, image: string, bytes: number): void {
  // Room for the files, their inodes and the journal; ext4's own overhead is a few percent.
  const mib = Math.ceil((bytes * 1.25) / (1 << 20)) + 16;
  const r = spawnSync('mkfs.ext4', ['-q', '-F', '-L', 'pvbox-tools', '-d', dir, image, `${mib}M`], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`mkfs.ext4 -d ${dir} ${image} failed: ${(r.stderr || r.error?.message || '').trim()}`);
}

/**
 * Returns the tools disk with `pkg`'s programs (e.g. fio) and their libraries, building it into
 * the cache ($PVBOX_CACHE/tools/) the first time for the package versions apt offers now.
 */
export async function ensureToolsDisk(pkg: string, program: string, say: (line: string) => void): Promise<ToolsDisk> {
  ensureHostCommands({ 'mkfs.ext4': 'e2fsprogs', 'dpkg-deb': 'dpkg', 'apt-get': 'apt' }, 'building the bench tools disk', say);
  let recs: AptRecord[];
  try {
    recs = await libraryClosure(pkg);
  } catch {
    say('apt-cache knows no candidate: running apt-get update');
    await aptUpdate();
    recs = await libraryClosure(pkg);
  }
  const packages = Object.fromEntries(recs.map((r) => [r.Package!, r.Version!]).sort(([a], [b]) => (a! < b! ? -1 : 1)));
  const id = createHash('sha256').update(JSON.stringify({ TOOLS_FORMAT, program, packages, DLOPENED })).digest('hex').slice(0, 12);
  const dir = join(cacheDir(), 'tools');
  const image = join(dir, `${pkg}-${packages[pkg]!.replace(/[^A-Za-z0-9.+~_-]/g, '_')}-${id}.ext4`);
  const recordPath = `${image}.json`;
  const result = (rec: ToolsRecord): ToolsDisk => ({
    image,
    // The loader from the disk with every directory it holds libraries in (the RUNPATHs too, e.g.
    // librados's /usr/lib/x86_64-linux-gnu/ceph): nothing of the guest's own /lib is used.
    command: (m) => `${m}${rec.interpreter} --library-path ${rec.libraryDirs.map((d) => `${m}/${d}`).join(':')} ${m}/${program}`,
    packages: rec.packages, libraries: rec.libraries, bytes: rec.bytes,
  });
  const cached = JSON.parse(await readFile(recordPath, 'utf8').catch(() => 'null')) as ToolsRecord | null;
  if (cached?.format === TOOLS_FORMAT && (await stat(image).catch(() => undefined))) return result(cached);

  await mkdir(join(dir), { recursive: true });
  const scratch = join(dir, `build-${process.pid}-${randomBytes(4).toString('hex')}`);
  try {
    const debDir = join(cacheDir(), 'debs');
    const paths = recs.map((r) => join(debDir, debFileName(r.Package!, r.Version!, r.Architecture ?? 'amd64')));
    const missing: AptRecord[] = [];
    for (const [i, r] of recs.entries()) if (!(await verifyDeb(paths[i]!, r))) missing.push(r);
    if (missing.length) {
      say(`downloading ${missing.length} Debian packages for the tools disk (${(missing.reduce((n, r) => n + Number(r.Size ?? 0), 0) / 1e6).toFixed(1)} MB): ${missing.map((r) => r.Package).join(' ')}`);
      await aptDownload(missing, debDir, join(scratch, 'download'));
    }
    const extracted: ExtractedPackage[] = [];
    for (const [i, r] of recs.entries()) {
      const root = join(scratch, 'pkg', r.Package!);
      await extractDeb(paths[i]!, root, 0);
      extracted.push({ name: r.Package!, version: r.Version!, root });
    }
    const userland = await collectUserland(extracted, [pkg], DLOPENED);
    if (!userland.interpreter) throw new Error(`${pkg}: ${program} names no ELF interpreter`);
    if (!userland.programs.includes(program)) throw new Error(`${pkg} has no ${program} (it has ${userland.programs.join(', ')})`);
    const tree = join(scratch, 'tree');
    await writeTree(tree, userland);
    const tmpImage = join(scratch, 'tools.ext4');
    mkfsExt4(tree, tmpImage, userland.bytes);
    const libraryDirs = [...new Set(userland.libraries.map((l) => posix.dirname(l.path)))].sort();
    const rec: ToolsRecord = { format: TOOLS_FORMAT, program, interpreter: userland.interpreter, libraryDirs, packages, libraries: userland.libraries.length, bytes: userland.bytes };
    await rename(tmpImage, image);
    await writeFile(recordPath, `${JSON.stringify(rec, null, 2)}\n`);
    say(`tools disk ${image}: ${program}, ${rec.libraries} libraries, ${(rec.bytes / (1 << 20)).toFixed(1)} MiB`);
    return result(rec);
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}
