// xl's domain verbs over detached domain processes (tools/xl/xl_vmcontrol.c, xl_info.c, xl_mem.c, xl_misc.c; xentop for `top`), and xm's spellings of them (`pvbox xm …`).
import { existsSync, readFileSync, rmSync, truncateSync } from 'node:fs';
import { cpus, hostname, release, version as osVersion, machine } from 'node:os';
import { parseArgs } from 'node:util';
import { HostError, UsageError } from '../errors.js';
import { consoleCommand } from './console.js';
import { controlRequest, type ControlReply, type ControlRequest } from '../toolstack/control-server.js';
import { dmesgPath, hostMemory, spawnDomainProcess } from '../toolstack/domain-process.js';
import { type DomainRecord, findDomain, listDomains, pidAlive, removeRecord } from '../toolstack/registry.js';
import { readXlConfigFile } from '../toolstack/xl-cfg.js';
import { domainSpecFromXl } from '../toolstack/xl-domain.js';
import { XEN_MAJOR, XEN_MINOR } from '../hypervisor/cpuid.js';
import { HYPERVISOR_VIRT_START } from '../abi/xen.js';
import { daemonSocketPath, ensureDaemon, serveDaemon } from '../toolstack/daemon.js';

/** Linux's USER_HZ: /proc's CPU times are in these ticks. */
const CLK_TCK = 100;

export const XL_VERBS = new Set(['create', 'list', 'shutdown', 'reboot', 'destroy', 'pause', 'unpause', 'mem-set', 'mem-max', 'vcpu-set', 'info', 'dmesg',
  'uptime', 'top', 'domid', 'domname', 'rename']);

/** xm's names for the same verbs (xm(1)): `xm mem-set` was also spelled `xm memset`, `xm vcpu-set` `xm vcpuset`… */
const XM_SPELLINGS: Record<string, string> = {
  memset: 'mem-set', 'mem-set': 'mem-set', memmax: 'mem-max', 'mem-max': 'mem-max', vcpuset: 'vcpu-set', 'vcpu-set': 'vcpu-set',
  start: 'create', new: 'create', halt: 'shutdown', kill: 'destroy', suspend: 'pause', resume: 'unpause',
};

const usage = (line: string) => new UsageError(`usage: pvbox ${line}`);

function parse(verb: string, args: string[], options: Record<string, { type: 'boolean' | 'string'; short?: string }>, min: number, max: number, line: string) {
  let r;
  try { r = parseArgs({ args, allowPositionals: true, strict: true, options }); } catch (e) { throw new UsageError(`${verb}: ${(e as Error).message}`); }
  if (r.positionals.length < min || r.positionals.length > max) throw usage(line);
  return { values: r.values as Record<string, string | boolean | undefined>, positionals: r.positionals };
}

/** A request to the domain's process; its refusal is one line. */
async function ask(verb: string, d: DomainRecord, req: ControlRequest, timeoutMs?: number): Promise<ControlReply & { ok: true }> {
  const r = await controlRequest(String(d.domid), req, timeoutMs);
  if (!r.ok) throw new HostError(`${verb}: ${r.error}`);
  return r;
}

/** Wait until a domain process has gone (its record goes with it). */
async function waitGone(d: DomainRecord, timeoutMs: number): Promise<boolean> {
  for (const end = Date.now() + timeoutMs; Date.now() < end; await new Promise((r) => setTimeout(r, 100))) if (!pidAlive(d.pid)) return true;
  return !pidAlive(d.pid);
}

/** /proc/<pid>/task/<tid>/stat: the state letter and utime+stime in seconds. */
function threadStat(pid: number, tid: number): { state: string; cpuSeconds: number } | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return { state: f[0]!, cpuSeconds: (Number(f[11]) + Number(f[12])) / CLK_TCK };
  } catch { return undefined; }
}

/** Xen's shutdown codes (sched.h SHUTDOWN_*) in xl list's letters "-rscwS". */
const SHUTDOWN_LETTER: Record<string, string> = { poweroff: '-', reboot: 'r', suspend: 's', crash: 'c', watchdog: 'w', soft_reset: 'S' };

interface DomainRow { name: string; domid: number; memMiB: number; vcpus: number; state: string; cpuSeconds: number; record?: DomainRecord }

async function guestRow(d: DomainRecord): Promise<DomainRow> {
  let memMiB = d.targetMiB;
  const st = d.vcpuTid ? threadStat(d.pid, d.vcpuTid) : undefined;
  if (d.state === 'running' || d.state === 'paused') {
    // The guest's own count (tot_pages: ballooned-out frames excluded), when its process answers quickly.
    const r = await controlRequest(String(d.domid), { op: 'status' }, 2000).catch(() => undefined);
    if (r?.ok && typeof r.currentPages === 'number') memMiB = Math.floor(r.currentPages / 256);
  }
  const running = d.state === 'running' && st?.state === 'R';
  const blocked = d.state === 'running' && !running;
  const state = `${running ? 'r' : '-'}${blocked ? 'b' : '-'}${d.state === 'paused' ? 'p' : '-'}${d.state === 'shutdown' ? 's' : '-'}${d.state === 'shutdown' ? SHUTDOWN_LETTER[d.shutdownReason ?? ''] ?? '?' : '-'}${d.state === 'dying' ? 'd' : '-'}`;
  return { name: d.name, domid: d.domid, memMiB, vcpus: d.vcpus, state, cpuSeconds: st?.cpuSeconds ?? 0, record: d };
}

function dom0Row(): DomainRow {
  const stat = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.split(/\s+/).slice(1).map(Number);
  const busy = (stat[0] ?? 0) + (stat[1] ?? 0) + (stat[2] ?? 0) + (stat[5] ?? 0) + (stat[6] ?? 0) + (stat[7] ?? 0);
  return { name: 'Domain-0', domid: 0, memMiB: hostMemory().totalMiB, vcpus: cpus().length, state: 'r-----', cpuSeconds: busy / CLK_TCK };
}

async function rows(targets: string[]): Promise<DomainRow[]> {
  if (!targets.length) return [dom0Row(), ...await Promise.all(listDomains().map(guestRow))];
  const out: DomainRow[] = [];
  for (const t of targets) out.push(t === '0' || t === 'Domain-0' ? dom0Row() : await guestRow(findDomain(t)));
  return out;
}

/** xl_info.c list_domains: the header and "%-40s %5d %5lu %5d     %c%c%c%c%c%c  %8.1f". */
export function formatList(list: readonly DomainRow[]): string {
  let out = 'Name                                        ID   Mem VCPUs\tState\tTime(s)\n';
  for (const r of list) out += `${r.name.padEnd(40)} ${String(r.domid).padStart(5)} ${String(r.memMiB).padStart(5)} ${String(r.vcpus).padStart(5)}     ${r.state}  ${r.cpuSeconds.toFixed(1).padStart(8)}\n`;
  return out;
}

/** xl_info.c uptime_to_string (long form). */
export function formatUptime(seconds: number): string {
  const day = Math.floor(seconds / 86400), hour = Math.floor((seconds % 86400) / 3600), min = Math.floor((seconds % 3600) / 60), sec = Math.floor(seconds % 60);
  const hms = `${String(hour).padStart(2)}:${String(min).padStart(2, '0')}:${String(sec).padStart(2, '0')}`;
  return day > 1 ? `${day} days, ${hms}` : day === 1 ? `${day} day, ${hms}` : hms;
}

/** xl's memory sizes (xl_parse.c parse_mem_size_kb): a number in MiB, or with a b/k/m/g/t suffix. Returns KiB. */
export function parseMemSizeKb(text: string): number | undefined {
  const m = /^(\d+)([bkmgtBKMGT]?)$/.exec(text);
  if (!m) return undefined;
  const n = Number(m[1]);
  const kib = { b: n / 1024, k: n, '': n * 1024, m: n * 1024, g: n * 1024 ** 2, t: n * 1024 ** 3 }[m[2]!.toLowerCase()]!;
  return Number.isSafeInteger(Math.floor(kib)) ? Math.floor(kib) : undefined;
}

function info(): string {
  const mem = hostMemory();
  const c = cpus();
  const kvmCaps = existsSync('/dev/kvm') ? ' pv' : '';
  const lines: [string, string | number][] = [
    ['host', hostname()], ['release', release()], ['version', osVersion()], ['machine', machine()],
    ['nr_cpus', c.length], ['max_cpu_id', c.length - 1], ['nr_nodes', 1], ['cores_per_socket', c.length], ['threads_per_core', 1],
    ['cpu_mhz', (c[0]?.speed ?? 0).toFixed(3)], ['hw_caps', '00000000:00000000:00000000:00000000:00000000:00000000:00000000:00000000'],
    ['virt_caps', kvmCaps.trim() ? `${kvmCaps} gnttab-v1` : ''],
    ['total_memory', mem.totalMiB], ['free_memory', Math.max(0, mem.availableMiB - listDomains().reduce((s, d) => s + d.memoryMiB, 0))],
    ['sharing_freed_memory', 0], ['sharing_used_memory', 0], ['outstanding_claims', 0], ['free_cpus', 0],
    ['xen_major', XEN_MAJOR], ['xen_minor', XEN_MINOR], ['xen_extra', '.0-pvbox'], ['xen_version', `${XEN_MAJOR}.${XEN_MINOR}.0-pvbox`],
    ['xen_caps', 'xen-3.0-x86_64'], ['xen_scheduler', 'null'], ['xen_pagesize', 4096],
    ['platform_params', `virt_start=0x${HYPERVISOR_VIRT_START.toString(16)}`], ['xen_changeset', 'pvbox'], ['xen_commandline', ''],
    ['cc_compiler', `node ${process.version}`], ['cc_compile_by', 'pvbox'], ['cc_compile_domain', 'pvbox'], ['cc_compile_date', ''], ['build_id', ''],
    ['xend_config_format', 4],
  ];
  return lines.map(([k, v]) => `${k.padEnd(23)}: ${v}\n`).join('').replace(/: \n/g, ':\n').replace(/^(virt_caps\s+):(\S)/m, '$1: $2');
}

async function shutdownVerb(verb: 'shutdown' | 'reboot', args: string[]): Promise<number> {
  const { values, positionals } = parse(verb, args, { wait: { type: 'boolean', short: 'w' }, all: { type: 'boolean', short: 'a' }, force: { type: 'boolean', short: 'F' } },
    0, 1, `${verb} [-w] [-a] [-F] <domain>`);
  if (values.all ? positionals.length : positionals.length !== 1) throw usage(`${verb} [-w] [-a] [-F] <domain>  (or -a for all domains)`);
  const targets = values.all ? listDomains() : [findDomain(positionals[0]!)];
  for (const d of targets) {
    process.stderr.write(`${verb === 'shutdown' ? 'Shutting down' : 'Rebooting'} domain ${d.domid}\n`);
    await ask(verb, d, { op: 'shutdown', reason: verb === 'shutdown' ? 'poweroff' : 'reboot' });
  }
  if (values.wait && verb === 'shutdown') {
    process.stderr.write(`Waiting for ${targets.length} domains\n`);
    for (const d of targets) {
      // The guest powers off, its process applies on_poweroff (destroy) and exits.
      if (!(await waitGone(d, 300_000))) throw new HostError(`shutdown: domain ${d.domid} (${d.name}) did not shut down within 300 s`);
      process.stderr.write(`Domain ${d.domid} has been shut down, reason code 0\n`);
    }
    process.stderr.write('All domains have been shut down\n');
  }
  return 0;
}

async function destroyVerb(target: string): Promise<number> {
  const d = findDomain(target);
  await controlRequest(String(d.domid), { op: 'destroy' }, 10_000).catch(() => undefined);
  if (!(await waitGone(d, 10_000))) {
    // A domain process that does not answer is killed; its leftovers go with it.
    try { process.kill(d.pid, 'SIGKILL'); } catch { /* gone */ }
    await waitGone(d, 5000);
    removeRecord(d.domid);
  }
  return 0;
}

async function createVerb(args: string[]): Promise<number> {
  const { values, positionals } = parse('create', args, { console: { type: 'boolean', short: 'c' }, quiet: { type: 'boolean', short: 'q' }, verbose: { type: 'boolean', short: 'v' }, file: { type: 'string', short: 'f' } },
    0, Infinity, 'create [-c] [-q] <config file> [key=value...]');
  const file = values.file as string | undefined ?? positionals.shift();
  if (!file) throw usage('create [-c] [-q] <config file> [key=value...]');
  // xl says "Parsing config from <file>" first; pvbox keeps stderr to the one line of an error, so says it only with -v.
  if (values.verbose) process.stderr.write(`Parsing config from ${file}\n`);
  const cfg = readXlConfigFile(file, positionals);
  const { spec, warnings } = await domainSpecFromXl(cfg);
  if (!values.quiet) for (const w of warnings) process.stderr.write(`pvbox: warning: ${w}\n`);
  try { await spawnDomainProcess(spec); } catch (e) { if (spec.bootDir) rmSync(spec.bootDir, { recursive: true, force: true }); throw e; }
  return values.console ? consoleCommand(spec.name) : 0;
}

async function top(): Promise<string> {
  const list = await rows([]);
  let out = '      NAME  STATE   CPU(sec) CPU(%)     MEM(k) MEM(%)  MAXMEM(k) MAXMEM(%) VCPUS NETS NETTX(k) NETRX(k) VBDS   VBD_OO   VBD_RD   VBD_WR  VBD_RSECT  VBD_WSECT SSID\n';
  const total = hostMemory().totalMiB * 1024;
  for (const r of list) {
    const memK = r.memMiB * 1024, maxK = r.record ? r.record.maxmemMiB * 1024 : total;
    out += `${r.name.slice(0, 10).padStart(10)} ${r.state.padStart(6)} ${r.cpuSeconds.toFixed(0).padStart(10)} ${'0.0'.padStart(6)} ${String(memK).padStart(10)} ${(memK * 100 / total).toFixed(1).padStart(6)} `
      + `${String(maxK).padStart(10)} ${(maxK * 100 / total).toFixed(1).padStart(9)} ${String(r.vcpus).padStart(5)} ${'0'.padStart(4)} ${'0'.padStart(8)} ${'0'.padStart(8)} `
      + `${'0'.padStart(4)} ${'0'.padStart(8)} ${'0'.padStart(8)} ${'0'.padStart(8)} ${'0'.padStart(10)} ${'0'.padStart(10)} ${'0'.padStart(4)}\n`;
  }
  return out;
}

export async function xlCommand(verb: string, args: string[]): Promise<number> {
  switch (verb) {
    case 'create': return createVerb(args);
    case 'list': {
      const { positionals } = parse(verb, args, {}, 0, Infinity, 'list [domain...]');
      process.stdout.write(formatList(await rows(positionals)));
      return 0;
    }
    case 'shutdown': case 'reboot': return shutdownVerb(verb, args);
    case 'destroy': return destroyVerb(parse(verb, args, {}, 1, 1, 'destroy <domain>').positionals[0]!);
    case 'pause': case 'unpause': {
      const d = findDomain(parse(verb, args, {}, 1, 1, `${verb} <domain>`).positionals[0]!);
      await ask(verb, d, { op: verb });
      return 0;
    }
    case 'mem-set': case 'mem-max': {
      const [target, size] = parse(verb, args, {}, 2, 2, `${verb} <domain> <size[bkmgt]>`).positionals as [string, string];
      const kib = parseMemSizeKb(size);
      if (kib === undefined || kib < 1024) throw new UsageError(`invalid memory size: ${size} (e.g. 512m)`);
      const d = findDomain(target);
      await ask(verb, d, verb === 'mem-set' ? { op: verb, targetKiB: kib } : { op: verb, maxMiB: Math.floor(kib / 1024) });
      return 0;
    }
    case 'vcpu-set': {
      const [target, count] = parse(verb, args, {}, 2, 2, 'vcpu-set <domain> <vcpus>').positionals as [string, string];
      const d = findDomain(target);
      if (!/^\d+$/.test(count) || Number(count) < 1) throw new UsageError(`vcpu-set: '${count}' is not a vCPU count`);
      if (Number(count) > d.vcpus) throw new HostError(`vcpu-set: domain ${d.domid} has ${d.vcpus} vCPU; pvbox runs one vCPU per guest for now`);
      return 0;
    }
    case 'info': parse(verb, args, {}, 0, 0, 'info'); process.stdout.write(info()); return 0;
    case 'dmesg': {
      const { values } = parse(verb, args, { clear: { type: 'boolean', short: 'c' } }, 0, 0, 'dmesg [-c]');
      try { process.stdout.write(readFileSync(dmesgPath(), 'utf8')); } catch { /* nothing logged yet */ }
      if (values.clear) { try { truncateSync(dmesgPath()); } catch { /* nothing to clear */ } }
      return 0;
    }
    case 'uptime': {
      const { positionals } = parse(verb, args, {}, 0, Infinity, 'uptime [domain...]');
      const now = Date.now() / 1000;
      const hostUp = Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]);
      const list = positionals.length ? positionals.map((t) => (t === '0' || t === 'Domain-0' ? undefined : findDomain(t))) : [undefined, ...listDomains()];
      let out = `${'Name'.padEnd(33)} ${'ID'.padStart(4)} Uptime\n`;
      for (const d of list) out += d ? `${d.name.padEnd(33)} ${String(d.domid).padStart(4)} ${formatUptime(now - d.startTime)}\n` : `${'Domain-0'.padEnd(33)} ${'0'.padStart(4)} ${formatUptime(hostUp)}\n`;
      process.stdout.write(out);
      return 0;
    }
    case 'top': {
      parse(verb, args, { batch: { type: 'boolean', short: 'b' }, iterations: { type: 'string', short: 'i' } }, 0, 0, 'top [-b] [-i 1]');
      process.stdout.write(await top());
      return 0;
    }
    case 'domid': {
      const name = parse(verb, args, {}, 1, 1, 'domid <name>').positionals[0]!;
      process.stdout.write(`${name === 'Domain-0' ? 0 : findDomain(name).domid}\n`);
      return 0;
    }
    case 'domname': {
      const id = parse(verb, args, {}, 1, 1, 'domname <domid>').positionals[0]!;
      if (!/^\d+$/.test(id)) throw new UsageError(`domname: '${id}' is not a domain id`);
      process.stdout.write(`${id === '0' ? 'Domain-0' : findDomain(id).name}\n`);
      return 0;
    }
    case 'rename': {
      const [target, name] = parse(verb, args, {}, 2, 2, 'rename <domain> <new name>').positionals as [string, string];
      await ask(verb, findDomain(target), { op: 'rename', name });
      return 0;
    }
    case 'daemon': {
      const { values } = parse(verb, args, { foreground: { type: 'boolean' } }, 0, 0, 'daemon [--foreground]');
      if (values.foreground) return serveDaemon();
      await ensureDaemon();
      process.stdout.write(`pvbox daemon: serving ${daemonSocketPath()}\n`);
      return 0;
    }
    default: throw new UsageError(`unknown command '${verb}'`);
  }
}

/** `pvbox xm <verb> …`: xm's spellings mapped onto the xl verbs (console, block-* and network-* are shared). */
export function xmVerb(verb: string | undefined): string {
  if (!verb) throw new UsageError('usage: pvbox xm <verb> [args...]');
  const v = XM_SPELLINGS[verb] ?? verb;
  if (!XL_VERBS.has(v) && !['console', 'block-attach', 'block-detach', 'network-attach', 'network-detach'].includes(v)) throw new UsageError(`xm: unknown verb '${verb}'`);
  return v;
}
