// Debian package plumbing via the host's apt/dpkg: resolve candidates, download .debs with progress, extract them.

import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { ProgressTask } from './progress.js';

export type AptRecord = Record<string, string>;

export interface RunResult {
  stdout: string;
  stderr: string;
}

/** Runs a command to completion; rejects with its stderr on a non-zero exit. */
export function run(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', (e) => reject(new Error(`${cmd}: ${e.message}`)));
    child.on('close', (code, signal) => {
      const stdout = Buffer.concat(out).toString('utf8');
      const stderr = Buffer.concat(err).toString('utf8');
      if (code === 0) resolve({ stdout, stderr });
      else reject(new CommandError(`${cmd} ${args.join(' ')} failed (${signal ?? `exit ${code}`}): ${stderr.trim().split('\n').slice(-5).join(' | ')}`, stdout, stderr));
    });
  });
}

export class CommandError extends Error {
  constructor(message: string, readonly stdout: string, readonly stderr: string) {
    super(message);
    this.name = 'CommandError';
  }
}

/** apt-get/apt-cache environment: no translations of messages, no interactive prompts. */
function aptEnv(): NodeJS.ProcessEnv {
  return { ...process.env, LC_ALL: 'C', DEBIAN_FRONTEND: 'noninteractive' };
}

/** When root, apt would drop to the _apt user, which cannot write into our cache; keep root. */
function aptOptions(): string[] {
  return process.getuid?.() === 0 ? ['-o', 'APT::Sandbox::User=root'] : [];
}

/** Parses deb822 stanzas (apt-cache show output). */
export function parseStanzas(text: string): AptRecord[] {
  const out: AptRecord[] = [];
  let cur: AptRecord = {};
  let last = '';
  for (const line of text.split('\n')) {
    if (line.trim() === '') {
      if (Object.keys(cur).length) out.push(cur);
      cur = {};
      last = '';
    } else if (/^[ \t]/.test(line)) {
      if (last) cur[last] += '\n' + line.trim();
    } else {
      const i = line.indexOf(':');
      if (i > 0) {
        last = line.slice(0, i);
        cur[last] = line.slice(i + 1).trim();
      }
    }
  }
  if (Object.keys(cur).length) out.push(cur);
  return out;
}

/** Candidate versions of packages, as `apt-cache show --no-all-versions` reports them. Local only, no network. */
export async function aptShow(pkgs: string[]): Promise<Map<string, AptRecord>> {
  const { stdout } = await run('apt-cache', ['show', '--no-all-versions', ...pkgs], { env: aptEnv() });
  const map = new Map<string, AptRecord>();
  for (const r of parseStanzas(stdout)) if (r.Package && !map.has(r.Package)) map.set(r.Package, r);
  for (const p of pkgs) {
    const name = p.replace(/=.*$/, '');
    if (!map.has(name)) throw new Error(`apt-cache: no candidate for ${p}`);
  }
  return map;
}

/** The package a kernel metapackage depends on, e.g. linux-image-amd64 → linux-image-6.1.0-56-amd64 (= 6.1.192-2). */
export function metapackageTarget(meta: AptRecord, prefix = 'linux-image-'): { name: string; version?: string } {
  for (const clause of (meta.Depends ?? '').split(',')) {
    const first = clause.split('|')[0]!.trim();
    const m = /^([a-z0-9][a-z0-9+.-]*)(?::\S+)?\s*(?:\(\s*=\s*([^)\s]+)\s*\))?/.exec(first);
    if (m && m[1]!.startsWith(prefix)) return m[2] ? { name: m[1]!, version: m[2] } : { name: m[1]! };
  }
  throw new Error(`${meta.Package}: no ${prefix}* dependency in "${meta.Depends ?? ''}"`);
}

export async function aptUpdate(): Promise<void> {
  await run('apt-get', ['update', '-q', ...aptOptions()], { env: aptEnv() });
}

/** A cheap fingerprint of apt's package lists: changes whenever `apt-get update` fetched something new. */
export async function aptListsFingerprint(listsDir = '/var/lib/apt/lists'): Promise<string> {
  const h = createHash('sha256');
  let names: string[];
  try {
    names = (await readdir(listsDir)).filter((n) => /_(Packages|InRelease|Release)(\.[a-z0-9]+)?$/.test(n)).sort();
  } catch {
    return 'no-lists';
  }
  for (const n of names) {
    const s = await stat(join(listsDir, n)).catch(() => undefined);
    if (s) h.update(`${n}\0${s.size}\0${s.mtimeMs}\n`);
  }
  for (const p of ['/etc/apt/preferences', '/etc/apt/preferences.d']) {
    const s = await stat(p).catch(() => undefined);
    if (s) h.update(`${p}\0${s.mtimeMs}\n`);
  }
  return h.digest('hex').slice(0, 16);
}

/** apt's file name for a downloaded package (epoch colon escaped as %3a). */
export function debFileName(pkg: string, version: string, arch: string): string {
  return `${pkg}_${version.replace(/:/g, '%3a')}_${arch}.deb`;
}

async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

/** Checks a .deb against the size and SHA256 apt knows for it. */
export async function verifyDeb(path: string, rec: AptRecord): Promise<boolean> {
  const s = await stat(path).catch(() => undefined);
  if (!s || (rec.Size && s.size !== Number(rec.Size))) return false;
  if (rec.SHA256) return (await sha256File(path)) === rec.SHA256;
  return true;
}

/**
 * Downloads the exact versions of `recs` with one `apt-get download` into a
 * scratch directory (reporting bytes as they arrive), verifies each against
 * apt's size and SHA256 and moves it to `destDir`. Returns the final paths,
 * in the order of `recs`.
 */
export async function aptDownload(recs: AptRecord[], destDir: string, scratchDir: string, task?: ProgressTask): Promise<string[]> {
  const total = recs.reduce((n, r) => n + Number(r.Size ?? 0), 0);
  await mkdir(scratchDir, { recursive: true });
  await mkdir(destDir, { recursive: true });
  const poll = setInterval(() => {
    void readdir(scratchDir)
      .then(async (names) => {
        let sum = 0;
        for (const n of names) sum += (await stat(join(scratchDir, n)).catch(() => ({ size: 0 }))).size;
        task?.update(sum, total);
      })
      .catch(() => undefined);
  }, 100);
  try {
    await run('apt-get', ['download', '-q', ...aptOptions(), ...recs.map((r) => `${r.Package}=${r.Version}`)], { cwd: scratchDir, env: aptEnv() });
  } finally {
    clearInterval(poll);
  }
  const out: string[] = [];
  for (const rec of recs) {
    const name = debFileName(rec.Package!, rec.Version!, rec.Architecture ?? 'amd64');
    const path = join(scratchDir, name);
    if (!(await verifyDeb(path, rec))) throw new Error(`apt-get download: ${name} is missing or does not match apt's size/SHA256`);
    await rename(path, join(destDir, name));
    out.push(join(destDir, name));
  }
  task?.update(total, total);
  await rm(scratchDir, { recursive: true, force: true });
  return out;
}

/**
 * Extracts a .deb's file tree into `dest` (`dpkg-deb --fsys-tarfile | tar -x`),
 * counting the tar stream to report progress against `approxBytes`.
 */
export async function extractDeb(deb: string, dest: string, approxBytes: number, task?: ProgressTask): Promise<void> {
  await mkdir(dest, { recursive: true });
  const dpkg = spawn('dpkg-deb', ['--fsys-tarfile', deb], { stdio: ['ignore', 'pipe', 'pipe'] });
  const tar = spawn('tar', ['-x', '-f', '-', '-C', dest, '--no-same-owner', '--delay-directory-restore'], { stdio: ['pipe', 'ignore', 'pipe'] });
  let seen = 0;
  const errs: string[] = [];
  dpkg.stderr.on('data', (b: Buffer) => errs.push(b.toString()));
  tar.stderr.on('data', (b: Buffer) => errs.push(b.toString()));
  dpkg.stdout.on('data', (b: Buffer) => {
    seen += b.length;
    task?.update(Math.min(seen, approxBytes), approxBytes);
  });
  dpkg.stdout.pipe(tar.stdin);
  tar.stdin.on('error', () => undefined); // reported through tar's exit status
  const exit = (p: ReturnType<typeof spawn>, name: string) =>
    new Promise<void>((resolve, reject) => {
      p.on('error', (e) => reject(new Error(`${name}: ${e.message}`)));
      p.on('close', (code, signal) => (code === 0 ? resolve() : reject(new Error(`${name} failed (${signal ?? `exit ${code}`}) extracting ${deb}: ${errs.join('').trim()}`))));
    });
  await Promise.all([exit(dpkg, 'dpkg-deb'), exit(tar, 'tar')]);
  task?.update(approxBytes, approxBytes);
}
