// The domain registry: each detached domain process describes itself in $PVBOX_RUNDIR/domains/<domid>.json, so any toolstack process (and a restarted daemon) finds the running guests there (the role of libxl's /local/domain + /vm/<uuid> + xl's per-domain userdata files under /var/lib/xen).
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmdirSync, statSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { HostError, UsageError } from '../errors.js';
import type { DiskSpec } from '../backends/vbd/disk-spec.js';
import type { VifSpec } from '../backends/vif/vif-spec.js';
import type { XlShutdownAction } from './xl-cfg.js';
import { runDir, socketIsLive } from './console-server.js';

/** Everything a domain process needs to build (and rebuild, on_reboot=restart) its guest. */
export interface DomainSpec {
  name: string;
  uuid: string;
  kernel: string;
  ramdisk?: string;
  cmdline: string;
  memoryMiB: number;
  maxmemMiB: number;
  vcpus: number;
  disks: DiskSpec[];
  vifs: VifSpec[];
  onPoweroff: XlShutdownAction;
  onReboot: XlShutdownAction;
  onCrash: XlShutdownAction;
  /** The xl.cfg it came from (absolute), for `list -l` and messages. */
  configPath?: string;
  /** The first start restores this pvbox save file instead of booting (pvbox restore); later restarts boot. */
  restoreFrom?: string;
  /** A directory of boot files the bootloader copied out of the guest's disk; removed with the domain. */
  bootDir?: string;
}

/** xl's domain states, as `xl list` prints them (r b p s c d), reduced to what pvbox knows. */
export type DomainRunState = 'starting' | 'running' | 'paused' | 'shutdown' | 'dying';

export interface DomainRecord {
  domid: number;
  name: string;
  uuid: string;
  /** The memory the guest was built with (static-max), MiB. */
  memoryMiB: number;
  /** The balloon target (memory/target), MiB. */
  targetMiB: number;
  maxmemMiB: number;
  vcpus: number;
  /** Unix time in seconds when the guest was (last) built. */
  startTime: number;
  /** The domain process; the record is stale once it is dead. */
  pid: number;
  /** The thread running vCPU 0 (its CPU time is the domain's Time(s)); 0 until built. */
  vcpuTid: number;
  state: DomainRunState;
  /** Why the guest stopped, when state is 'shutdown' (on_*=preserve). */
  shutdownReason?: string;
  configPath?: string;
  logFile: string;
}

export function registryDir(env: NodeJS.ProcessEnv = process.env): string { return join(runDir(env), 'domains'); }
function recordPath(domid: number, env: NodeJS.ProcessEnv = process.env): string { return join(registryDir(env), `${domid}.json`); }

/** Where domain processes log (xl: /var/log/xen/xl-<name>.log): $PVBOX_LOGDIR, else <rundir>/log when $PVBOX_RUNDIR is set, else /var/log/pvbox. */
export function logDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.PVBOX_LOGDIR ?? (env.PVBOX_RUNDIR ? join(env.PVBOX_RUNDIR, 'log') : '/var/log/pvbox');
}

export function pidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try { process.kill(pid, 0); return true; } catch (e) { return (e as NodeJS.ErrnoException).code === 'EPERM'; }
}

function parseRecord(text: string): DomainRecord | undefined {
  try {
    const r = JSON.parse(text) as DomainRecord;
    if (typeof r !== 'object' || r === null || !Number.isInteger(r.domid) || typeof r.name !== 'string' || !Number.isInteger(r.pid)) return undefined;
    return r;
  } catch { return undefined; }
}

/** Live domains, by domid. Records of dead processes (a domain process killed with SIGKILL) are removed on the way. */
export function listDomains(env: NodeJS.ProcessEnv = process.env): DomainRecord[] {
  let names: string[];
  try { names = readdirSync(registryDir(env)); } catch { return []; }
  const out: DomainRecord[] = [];
  for (const n of names) {
    if (!/^\d+\.json$/.test(n)) continue;
    const path = join(registryDir(env), n);
    let text: string;
    try { text = readFileSync(path, 'utf8'); } catch { continue; }
    const r = parseRecord(text);
    if (!r || !pidAlive(r.pid)) {
      // A record being written is replaced by rename, so a parse failure is a corrupt leftover; but
      // leave young files alone in case their writer is mid-way.
      try { if (r || Date.now() - statSync(path).mtimeMs > 10_000) unlinkSync(path); } catch { /* raced */ }
      continue;
    }
    out.push(r);
  }
  return out.sort((a, b) => a.domid - b.domid);
}

/** A domain by name or id (xl's find_domain): UsageError naming it when there is none. */
export function findDomain(target: string, env: NodeJS.ProcessEnv = process.env): DomainRecord {
  const all = listDomains(env);
  const r = /^\d+$/.test(target) ? all.find((d) => d.domid === Number(target)) : all.find((d) => d.name === target);
  if (!r) {
    if (target === '0' || target === 'Domain-0') throw new UsageError(`${target} is Domain-0 (the host): that verb acts on guests`);
    throw new UsageError(`no domain '${target}'`);
  }
  return r;
}

/** Write (replace) a record atomically: readers see the old or the new file, never half of one. */
export function writeRecord(r: DomainRecord, env: NodeJS.ProcessEnv = process.env): void {
  const path = recordPath(r.domid, env), tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(r)}\n`, { mode: 0o600 });
  renameSync(tmp, path);
}

export function removeRecord(domid: number, env: NodeJS.ProcessEnv = process.env): void {
  try { unlinkSync(recordPath(domid, env)); } catch { /* gone */ }
}

/**
 * Hold the registry lock while choosing a domid and name: a directory created with mkdir (atomic),
 * holding the holder's pid; a lock whose holder died is broken.
 */
async function withRegistryLock<T>(env: NodeJS.ProcessEnv, fn: () => Promise<T>): Promise<T> {
  const dir = registryDir(env);
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const lock = join(dir, '.lock');
  for (let tries = 0; ; tries++) {
    try {
      mkdirSync(lock);
      const fd = openSync(join(lock, 'pid'), 'w'); writeSync(fd, String(process.pid)); closeSync(fd);
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw new HostError(`cannot lock the domain registry ${lock}: ${(e as NodeJS.ErrnoException).code}`);
      let holder = 0;
      try { holder = Number(readFileSync(join(lock, 'pid'), 'utf8')); } catch { /* being written */ }
      if ((holder && !pidAlive(holder)) || tries > 200) { try { unlinkSync(join(lock, 'pid')); } catch { /* */ } try { rmdirSync(lock); } catch { /* */ } continue; }
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  try { return await fn(); } finally { try { unlinkSync(join(lock, 'pid')); } catch { /* */ } try { rmdirSync(lock); } catch { /* */ } }
}

/**
 * Reserve a domain id and name for `record` (pid = this process): refuses a name a live domain has
 * (registered, or a `pvbox run` guest serving a console socket), takes the lowest free id >= 1.
 */
export async function registerDomain(record: Omit<DomainRecord, 'domid'>, env: NodeJS.ProcessEnv = process.env): Promise<DomainRecord> {
  return withRegistryLock(env, async () => {
    const live = listDomains(env);
    const used = new Set(live.map((d) => d.domid));
    const clash = live.find((d) => d.name === record.name);
    if (clash) throw new UsageError(`a domain named '${record.name}' already exists (domain ${clash.domid})`);
    // `pvbox run` guests are known only by their console sockets.
    let entries: string[] = [];
    try { entries = readdirSync(runDir(env)); } catch { /* none yet */ }
    for (const e of entries) {
      const m = /^console-(\d+)-([^@]+)$/.exec(e);
      if (!m || used.has(Number(m[1])) || !(await socketIsLive(join(runDir(env), e)))) continue;
      if (m[2] === record.name) throw new UsageError(`a domain named '${record.name}' already exists (domain ${m[1]})`);
      used.add(Number(m[1]));
    }
    let domid = 1;
    while (used.has(domid)) domid++;
    const r: DomainRecord = { ...record, domid };
    writeRecord(r, env);
    return r;
  });
}

/** Rename under the lock, refusing a name in use (xl rename → libxl_domain_rename); the caller is the domain's own process. */
export async function renameDomain(record: DomainRecord, newName: string, env: NodeJS.ProcessEnv = process.env): Promise<void> {
  await withRegistryLock(env, async () => {
    const clash = listDomains(env).find((d) => d.name === newName && d.domid !== record.domid);
    if (clash) throw new UsageError(`a domain named '${newName}' already exists (domain ${clash.domid})`);
    record.name = newName;
    writeRecord(record, env);
  });
}
