// The default guest image: Debian 12's kernel, busybox-static and xenstore-utils (with its libraries) packages, fetched with apt and built into a cached initramfs.

import { createHash, randomBytes } from 'node:crypto';
import { mkdir, open, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { aptDownload, aptListsFingerprint, aptShow, aptUpdate, debFileName, extractDeb, metapackageTarget, verifyDeb, type AptRecord } from './deb.js';
import { buildInitramfs, EXTRA_MODULES, INIT_SCRIPT, XEN_FRONTEND_MODULES } from './initramfs.js';
import { fmtBytes, Progress, type ProgressTask } from './progress.js';
import { collectUserland, DLOPENED, PROGRAM_PACKAGES, USERLAND_PACKAGES, type ExtractedPackage } from './userland.js';

export interface GuestImage {
  /** Absolute path of the package's unmodified /boot/vmlinuz-<ver> (bzImage). */
  kernel: string;
  /** Absolute path of the gzip-compressed newc initramfs. */
  initrd: string;
  /** `uname -r` of the kernel, e.g. 6.1.0-56-amd64. */
  kernelVersion: string;
  /** Debian version of the kernel package, e.g. 6.1.192-2. */
  packageVersion: string;
}

export type KernelFlavour = 'amd64' | 'cloud-amd64';

export interface EnsureImageOptions {
  flavour?: KernelFlavour;
  /** No progress output on stderr. */
  quiet?: boolean;
}

/** Bump when the image layout changes in a way the recipe hash below does not capture. */
const IMAGE_FORMAT = 2; // 2: dynamically linked Debian programs (/lib, /lib64, /usr/lib → /lib) and their record in image.json
const BUSYBOX_PACKAGE = 'busybox-static';

/** Identifies how an image is built from its packages: changes to /init, the module list or the userland packages give a new image. */
export const RECIPE = createHash('sha256')
  .update(JSON.stringify({ IMAGE_FORMAT, INIT_SCRIPT, XEN_FRONTEND_MODULES, EXTRA_MODULES, USERLAND_PACKAGES, PROGRAM_PACKAGES, DLOPENED }))
  .digest('hex')
  .slice(0, 10);

/** Everything about a built image, stored as image.json inside its directory. */
export interface ImageRecord {
  format: number;
  recipe: string;
  flavour: KernelFlavour;
  kernelPackage: string;
  packageVersion: string;
  kernelVersion: string;
  busyboxVersion: string;
  /** Debian packages the userland programs and libraries come from, name → version. */
  userlandPackages: Record<string, string>;
  /** Programs beyond busybox (image paths) and the shared objects they load. */
  userland: { programs: string[]; libraries: { soname: string; path: string; package: string }[]; bytes: number };
  kernel: string;
  kernelBytes: number;
  initrd: string;
  initrdBytes: number;
  modules: { included: string[]; builtin: string[]; absent: string[] };
  builtAt: string;
}

/** What a flavour resolved to the last time apt's lists looked like `fingerprint`. */
interface ResolutionMemo {
  fingerprint: string;
  recipe: string;
  dir: string;
}

/** $PVBOX_CACHE or ~/.cache/pvbox, absolute. */
export function cacheDir(): string {
  const env = process.env.PVBOX_CACHE;
  return env ? resolve(env) : join(homedir(), '.cache', 'pvbox');
}

/** A package version as a plain path component: epoch dropped, nothing a shell or URL would trip on. */
function safe(s: string): string {
  return s.replace(/^\d+:/, '').replace(/[^A-Za-z0-9.+~_-]/g, '_');
}

/**
 * e.g. linux-image-6.1.0-56-amd64_6.1.192-2__busybox-static_1.35.0-4+deb12u1+b1__<recipe>-<userland>,
 * where <userland> hashes the versions of USERLAND_PACKAGES (a libc6 security update gives a new image).
 */
function imageDirName(res: Resolved): string {
  const userland = createHash('sha256')
    .update(res.userland.map((r) => `${r.Package}=${r.Version}`).join('\n'))
    .digest('hex')
    .slice(0, 8);
  return `${safe(res.kernel.Package!)}_${safe(res.kernel.Version!)}__${BUSYBOX_PACKAGE}_${safe(res.busybox.Version!)}__${RECIPE}-${userland}`;
}

async function readJson<T>(path: string): Promise<T | undefined> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as T;
  } catch {
    return undefined;
  }
}

/** Writes a file so readers see either the old or the new contents, never a partial one. */
async function writeAtomic(path: string, data: string): Promise<void> {
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  await writeFile(tmp, data);
  await rename(tmp, path);
}

/** Loads a finished image directory, checking its files are all there and whole. */
async function loadImage(dir: string, flavour?: KernelFlavour): Promise<(GuestImage & { record: ImageRecord }) | undefined> {
  const rec = await readJson<ImageRecord>(join(dir, 'image.json'));
  if (!rec || rec.format !== IMAGE_FORMAT || rec.recipe !== RECIPE || (flavour && rec.flavour !== flavour)) return undefined;
  const kernel = join(dir, rec.kernel);
  const initrd = join(dir, rec.initrd);
  const [ks, is] = await Promise.all([stat(kernel).catch(() => undefined), stat(initrd).catch(() => undefined)]);
  if (!ks || !is || ks.size !== rec.kernelBytes || is.size !== rec.initrdBytes) return undefined;
  return { kernel, initrd, kernelVersion: rec.kernelVersion, packageVersion: rec.packageVersion, record: rec };
}

function strip(img: GuestImage): GuestImage {
  return { kernel: img.kernel, initrd: img.initrd, kernelVersion: img.kernelVersion, packageVersion: img.packageVersion };
}

interface Resolved {
  kernel: AptRecord;
  busybox: AptRecord;
  /** USERLAND_PACKAGES, in that order. */
  userland: AptRecord[];
}

/** Asks apt (locally, ~1-2 s) which kernel, busybox-static and userland package versions the flavour means now. */
async function resolvePackages(flavour: KernelFlavour): Promise<Resolved> {
  const meta = `linux-image-${flavour}`;
  const first = await aptShow([meta, BUSYBOX_PACKAGE, ...USERLAND_PACKAGES]);
  const target = metapackageTarget(first.get(meta)!);
  const spec = target.version ? `${target.name}=${target.version}` : target.name;
  const kernel = (await aptShow([spec])).get(target.name)!;
  return { kernel, busybox: first.get(BUSYBOX_PACKAGE)!, userland: USERLAND_PACKAGES.map((p) => first.get(p)!) };
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Runs `fn` holding an exclusive lock file (stale locks of dead processes are taken over). */
async function withLock<T>(path: string, progress: Progress, fn: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + 30 * 60_000;
  let told = false;
  for (;;) {
    try {
      const fh = await open(path, 'wx');
      await fh.writeFile(`${process.pid}\n`);
      await fh.close();
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const owner = Number.parseInt((await readFile(path, 'utf8').catch(() => '')).trim(), 10);
      if (!Number.isFinite(owner) || !pidAlive(owner)) {
        // Stale (or being written this instant: then it is fresh, so only drop it if still unreadable after a moment).
        if (!Number.isFinite(owner)) await new Promise((r) => setTimeout(r, 200));
        const again = Number.parseInt((await readFile(path, 'utf8').catch(() => '')).trim(), 10);
        if (!Number.isFinite(again) || !pidAlive(again)) await rm(path, { force: true });
        continue;
      }
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${path} (held by pid ${owner})`);
      if (!told) progress.note(`waiting for another pvbox (pid ${owner}) that is building the guest image`);
      told = true;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
  try {
    return await fn();
  } finally {
    await rm(path, { force: true });
  }
}

/** Removes build scratch directories left by processes that no longer exist. */
async function sweepScratch(tmpDir: string): Promise<void> {
  for (const n of await readdir(tmpDir).catch(() => [] as string[])) {
    const m = /^build-(\d+)-/.exec(n);
    if (m && !pidAlive(Number(m[1]))) await rm(join(tmpDir, n), { recursive: true, force: true });
  }
}

/** Deletes cached .debs of other versions of the packages just used. */
async function pruneDebs(debDir: string, flavour: KernelFlavour, keep: string[]): Promise<void> {
  const kernelRe = new RegExp(`^linux-image-\\d+\\.\\d+\\.\\d+-\\d+-${flavour.replace(/-/g, '\\-')}_`);
  for (const n of await readdir(debDir).catch(() => [] as string[])) {
    if (keep.includes(n)) continue;
    if (kernelRe.test(n) || [BUSYBOX_PACKAGE, ...USERLAND_PACKAGES].some((p) => n.startsWith(`${p}_`))) await rm(join(debDir, n), { force: true });
  }
}

async function firstExisting(paths: string[]): Promise<string | undefined> {
  for (const p of paths) if (await stat(p).catch(() => undefined)) return p;
  return undefined;
}

/** Runs one progress step, closing its line as done or failed. */
async function runTask<T>(task: ProgressTask, fn: (task: ProgressTask) => Promise<T>, note?: (result: T) => string): Promise<T> {
  try {
    const result = await fn(task);
    task.end(note?.(result));
    return result;
  } catch (e) {
    task.fail((e as Error).message.split('\n')[0]);
    throw e;
  }
}

/** Cached, verified .debs for `recs`, downloading the missing ones in one go. */
async function obtainDebs(recs: AptRecord[], cache: string, scratch: string, progress: Progress): Promise<string[]> {
  const debDir = join(cache, 'debs');
  const paths = recs.map((r) => join(debDir, debFileName(r.Package!, r.Version!, r.Architecture ?? 'amd64')));
  const missing: AptRecord[] = [];
  for (let i = 0; i < recs.length; i++) if (!(await verifyDeb(paths[i]!, recs[i]!))) missing.push(recs[i]!);
  if (missing.length === 0) {
    progress.skip(`packages already downloaded: ${recs.map((r) => r.Package).join(', ')}`);
    return paths;
  }
  const total = missing.reduce((n, r) => n + Number(r.Size ?? 0), 0);
  // Versions only while the line stays short (the kernel and busybox); the userland packages by name.
  const task = progress.task(`downloading ${missing.map((r) => (missing.length <= 2 ? `${r.Package} ${r.Version}` : r.Package)).join(', ')}`);
  try {
    await aptDownload(missing, debDir, join(scratch, 'download'), task);
    task.end(fmtBytes(total));
  } catch (e) {
    task.fail();
    throw e;
  }
  return paths;
}

async function buildImage(flavour: KernelFlavour, res: Resolved, cache: string, finalDir: string, progress: Progress): Promise<void> {
  const tmpDir = join(cache, 'tmp');
  await mkdir(tmpDir, { recursive: true });
  await sweepScratch(tmpDir);
  const scratch = join(tmpDir, `build-${process.pid}-${randomBytes(4).toString('hex')}`);
  await mkdir(scratch, { recursive: true });
  try {
    const debs = await obtainDebs([res.kernel, res.busybox, ...res.userland], cache, scratch, progress);
    const [kernelDeb, busyboxDeb] = debs as [string, string];

    const kroot = join(scratch, 'kernel');
    await runTask(progress.task(`extracting ${res.kernel.Package}`), (t) => extractDeb(kernelDeb, kroot, Number(res.kernel['Installed-Size'] ?? 0) * 1024, t));
    const bbroot = join(scratch, 'busybox');
    await runTask(progress.task(`extracting ${BUSYBOX_PACKAGE}`), (t) => extractDeb(busyboxDeb, bbroot, Number(res.busybox['Installed-Size'] ?? 0) * 1024, t));

    // Debian 12 ships /lib/modules and /bin/busybox; later releases (merged /usr) put them under /usr.
    const modulesBase = (await firstExisting([join(kroot, 'lib', 'modules'), join(kroot, 'usr', 'lib', 'modules')])) ?? join(kroot, 'lib', 'modules');
    const versions = await readdir(modulesBase).catch(() => [] as string[]);
    const expected = res.kernel.Package!.replace(/^linux-image-/, '');
    const kernelVersion = versions.includes(expected) ? expected : versions.length === 1 ? versions[0]! : undefined;
    if (!kernelVersion) throw new Error(`${res.kernel.Package}: cannot tell the kernel version (lib/modules has ${versions.join(', ') || 'nothing'})`);
    const vmlinuz = join(kroot, 'boot', `vmlinuz-${kernelVersion}`);
    await stat(vmlinuz);
    const busybox = await firstExisting([join(bbroot, 'bin', 'busybox'), join(bbroot, 'usr', 'bin', 'busybox')]);
    if (!busybox) throw new Error(`${BUSYBOX_PACKAGE} has no bin/busybox`);

    // xenstore-utils and the libraries it loads (found through ELF DT_NEEDED), each package in its own tree.
    const extracted: ExtractedPackage[] = res.userland.map((r) => ({ name: r.Package!, version: r.Version!, root: join(scratch, 'userland', r.Package!) }));
    const userland = await runTask(
      progress.task(`extracting ${USERLAND_PACKAGES.join(', ')}`),
      async (t) => {
        const total = res.userland.reduce((n, r) => n + Number(r['Installed-Size'] ?? 0) * 1024, 0);
        let base = 0;
        for (let i = 0; i < extracted.length; i++) {
          const size = Number(res.userland[i]!['Installed-Size'] ?? 0) * 1024;
          const sub: ProgressTask = { update: (done) => t.update(base + Math.min(done, size), total), end: () => undefined, fail: () => undefined };
          await extractDeb(debs[2 + i]!, extracted[i]!.root, size, sub);
          base += size;
        }
        return collectUserland(extracted);
      },
      (u) => `${u.programs.length} programs, ${u.libraries.length} libraries, ${fmtBytes(u.bytes)}`,
    );

    const built = await runTask(progress.task('building initramfs', 'items'), () => buildInitramfs({ modulesDir: join(modulesBase, kernelVersion), kernelVersion, busybox, userland }), (b) =>
      `${b.modules.modules.length} modules, ${fmtBytes(b.gz.length)} gzip (${fmtBytes(b.cpioBytes)} cpio)`,
    );

    const out = join(scratch, 'out');
    await mkdir(out);
    const kernelName = `vmlinuz-${kernelVersion}`;
    const initrdName = `initrd.img-${kernelVersion}`;
    await rename(vmlinuz, join(out, kernelName));
    await writeFile(join(out, initrdName), built.gz);
    const rec: ImageRecord = {
      format: IMAGE_FORMAT,
      recipe: RECIPE,
      flavour,
      kernelPackage: res.kernel.Package!,
      packageVersion: res.kernel.Version!,
      kernelVersion,
      busyboxVersion: res.busybox.Version!,
      userlandPackages: Object.fromEntries(res.userland.map((r) => [r.Package!, r.Version!])),
      userland: { programs: userland.programs, libraries: userland.libraries, bytes: userland.bytes },
      kernel: kernelName,
      kernelBytes: (await stat(join(out, kernelName))).size,
      initrd: initrdName,
      initrdBytes: built.gz.length,
      modules: {
        included: built.modules.modules.map((m) => m.name),
        builtin: built.modules.builtin,
        absent: built.modules.absent,
      },
      builtAt: new Date().toISOString(),
    };
    await writeFile(join(out, 'image.json'), JSON.stringify(rec, null, 2) + '\n');
    await mkdir(join(cache, 'images'), { recursive: true });
    // The image becomes visible in one step; a stale copy (e.g. with missing files) is replaced.
    await rm(finalDir, { recursive: true, force: true });
    await rename(out, finalDir);
    await pruneDebs(join(cache, 'debs'), flavour, debs.map((p) => p.slice(p.lastIndexOf('/') + 1)));
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

/** The newest complete image of a flavour in the cache, whatever apt says now. */
async function newestCached(cache: string, flavour: KernelFlavour): Promise<(GuestImage & { record: ImageRecord }) | undefined> {
  const root = join(cache, 'images');
  let best: (GuestImage & { record: ImageRecord }) | undefined;
  for (const n of await readdir(root).catch(() => [] as string[])) {
    const img = await loadImage(join(root, n), flavour);
    if (img && (!best || img.record.builtAt > best.record.builtAt)) best = img;
  }
  return best;
}

function memoPath(cache: string, flavour: KernelFlavour): string {
  return join(cache, 'images', `${flavour}.json`);
}

async function writeMemo(cache: string, flavour: KernelFlavour, fingerprint: string, dir: string): Promise<void> {
  await mkdir(join(cache, 'images'), { recursive: true });
  await writeAtomic(memoPath(cache, flavour), JSON.stringify({ fingerprint, recipe: RECIPE, dir } satisfies ResolutionMemo) + '\n');
}

/** The image the memo points at, if apt's lists have not changed since it was written. A few stat calls. */
async function memoHit(cache: string, flavour: KernelFlavour, fingerprint: string): Promise<GuestImage | undefined> {
  const memo = await readJson<ResolutionMemo>(memoPath(cache, flavour));
  if (!memo || memo.fingerprint !== fingerprint || memo.recipe !== RECIPE) return undefined;
  const img = await loadImage(join(cache, 'images', memo.dir), flavour);
  return img && strip(img);
}

function checkFlavour(flavour: string): asserts flavour is KernelFlavour {
  if (flavour !== 'amd64' && flavour !== 'cloud-amd64') throw new Error(`unknown kernel flavour ${JSON.stringify(flavour)}`);
}

/**
 * The image apt's current lists call for, if it is already built: no network,
 * no building. Fast (a few stat calls) when apt's lists have not changed since
 * the last resolution; otherwise asks apt-cache (local, ~1-2 s). When apt
 * cannot resolve the packages at all, the newest cached image of the flavour.
 */
export async function findCachedImage(opts: { flavour?: KernelFlavour } = {}): Promise<GuestImage | undefined> {
  const flavour = opts.flavour ?? 'amd64';
  checkFlavour(flavour);
  const cache = cacheDir();
  const fingerprint = await aptListsFingerprint();
  const hit = await memoHit(cache, flavour, fingerprint);
  if (hit) return hit;
  const newest = await newestCached(cache, flavour);
  if (!newest) return undefined; // nothing built at all: no need to ask apt
  let res: Resolved;
  try {
    res = await resolvePackages(flavour);
  } catch {
    return strip(newest);
  }
  const dir = imageDirName(res);
  const img = await loadImage(join(cache, 'images', dir), flavour);
  if (!img) return undefined;
  await writeMemo(cache, flavour, fingerprint, dir);
  return strip(img);
}

/**
 * Returns the default guest image (Debian 12 kernel + busybox initramfs),
 * downloading and building it into the cache first if needed. A warm call
 * does no network and no building (and, unless apt's lists changed since,
 * does not even run apt-cache).
 */
export async function ensureDefaultImage(opts: EnsureImageOptions = {}): Promise<GuestImage> {
  const flavour = opts.flavour ?? 'amd64';
  checkFlavour(flavour);
  const cache = cacheDir();
  const fingerprint = await aptListsFingerprint();
  const hit = await memoHit(cache, flavour, fingerprint);
  if (hit) return hit;

  let progress = new Progress(!!opts.quiet, 5);
  let updated = false;
  const resolveOrUpdate = async (): Promise<Resolved> => {
    const task = progress.task(`resolving linux-image-${flavour}, ${BUSYBOX_PACKAGE} and ${USERLAND_PACKAGES.join(', ')} with apt-cache`, 'items', false);
    try {
      const res = await resolvePackages(flavour);
      task.end(`${res.kernel.Package} ${res.kernel.Version}`);
      return res;
    } catch (e) {
      task.fail((e as Error).message.split('\n')[0]);
      if (updated) throw e;
    }
    updated = true;
    const upd = progress.task('apt-get update', 'items', false);
    try {
      await aptUpdate();
      upd.end();
    } catch (e) {
      upd.fail((e as Error).message.split('\n')[0]);
      throw e;
    }
    return resolvePackages(flavour);
  };

  let res: Resolved;
  try {
    res = await resolveOrUpdate();
  } catch (e) {
    const old = await newestCached(cache, flavour);
    if (!old) throw e;
    progress.note(`cannot resolve packages (${(e as Error).message}); using cached ${old.record.kernelPackage} ${old.packageVersion}`);
    return strip(old);
  }
  const ready = await loadImage(join(cache, 'images', imageDirName(res)), flavour);
  if (ready) {
    await writeMemo(cache, flavour, await aptListsFingerprint(), imageDirName(res));
    return strip(ready);
  }

  await mkdir(cache, { recursive: true });
  return withLock(join(cache, '.build.lock'), progress, async () => {
    for (let attempt = 0; ; attempt++) {
      const dir = imageDirName(res);
      const finalDir = join(cache, 'images', dir);
      let img = await loadImage(finalDir, flavour); // built by another process while we waited?
      if (!img) {
        progress.note(`building guest image from ${res.kernel.Package} ${res.kernel.Version} and ${BUSYBOX_PACKAGE} ${res.busybox.Version} in ${cache}`);
        try {
          await buildImage(flavour, res, cache, finalDir, progress);
        } catch (e) {
          // Lists may be stale (the mirror dropped that version): refresh once and retry.
          if (attempt === 0 && !updated && /apt-get download/.test((e as Error).message)) {
            updated = true;
            progress.note('download failed; running apt-get update and retrying');
            await aptUpdate();
            res = await resolvePackages(flavour);
            progress = new Progress(!!opts.quiet, 5);
            continue;
          }
          throw e;
        }
        img = await loadImage(finalDir, flavour);
        if (!img) throw new Error(`image in ${finalDir} failed verification right after being built`);
        progress.note(`guest image ready in ${finalDir}`);
      }
      await writeMemo(cache, flavour, await aptListsFingerprint(), dir);
      return strip(img);
    }
  });
}
