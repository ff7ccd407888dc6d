// bench/disk: fio inside a pvbox guest (xen-blkfront on a raw or qcow2 image) and the same fio jobs on the host against the same file, in one run.
//
//   node --import tsx bench/disk.ts [--size MiB] [--runtime S] [--formats raw[,qcow2]] [--seq-bs SIZE] [--seq-depth N] [--rand-depth N]
//                                   [--guest-extra ARGS] [--exit-profile] [--no-host] [--no-guest] [--timeout S] [--keep]
//
// Prints a table and one `RESULT <name> <value> <unit>` line per figure. See bench/README.md.
import { spawnSync } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { closeSync, fsyncSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { loadavg, release, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ConsoleProcess, installHandlers } from './lib/console-process.js';
import { cpuFacts, describeKvm, hostKvm, kvmKind, pvboxRevision } from './lib/host-facts.js';
import { statusText, table } from './lib/report.js';
import { BenchError, runBench } from './lib/run-bench.js';
import { ensureToolsDisk, type ToolsDisk } from './lib/tools-disk.js';

const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));
const PVBOX = join(ROOT, 'bin', 'pvbox.js');
const MEMORY_MIB = 512;
const TOOLS_MOUNT = '/tools';

const USAGE = `usage: bench/disk [options]

Runs fio (direct I/O, libaio) inside a pvbox guest on an xvdb image and the same
fio jobs on the host against the same file: sequential read/write MB/s and 4 KiB
random read/write IOPS, side by side, with the guest/host ratio.

options:
  --size MiB          size of the test image (default 256)
  --runtime S         seconds per fio job (default 8)
  --formats LIST      guest image formats, comma-separated: raw (default), qcow2
  --seq-bs SIZE       block size of the sequential jobs (default 1M)
  --seq-depth N       iodepth of the sequential jobs (default 8)
  --rand-depth N      iodepth of the random jobs (default 32)
  --guest-extra ARGS  appended to the guest's kernel command line
                      (e.g. xen_blkfront.max_indirect_segments=256)
  --exit-profile      also boot the guest twice more for the exits one 128 KiB
                      sequential read costs (fio at iodepth 1, two sizes, counters diffed)
  --no-host           skip the host runs
  --no-guest          skip the guest runs
  --timeout S         give up on a guest that is not at its prompt after S s (default 300)
  --keep              keep the scratch directory (images, fio output)
  -h, --help          this text
`;

const say = (s = '') => process.stdout.write(`${s}\n`);
const note = (s: string) => process.stderr.write(`bench/disk: ${s}\n`);

// ---------------------------------------------------------------------------------------------
// Jobs

interface Job { key: string; label: string; rw: 'read' | 'write' | 'randread' | 'randwrite'; bs: string; depth: number; unit: 'MB/s' | 'IOPS' }

function jobs(o: Options): Job[] {
  return [
    { key: 'seqread', label: `seq read ${o.seqBs} QD${o.seqDepth}`, rw: 'read', bs: o.seqBs, depth: o.seqDepth, unit: 'MB/s' },
    { key: 'seqwrite', label: `seq write ${o.seqBs} QD${o.seqDepth}`, rw: 'write', bs: o.seqBs, depth: o.seqDepth, unit: 'MB/s' },
    { key: 'randread', label: `rand read 4k QD${o.randDepth}`, rw: 'randread', bs: '4k', depth: o.randDepth, unit: 'IOPS' },
    { key: 'randwrite', label: `rand write 4k QD${o.randDepth}`, rw: 'randwrite', bs: '4k', depth: o.randDepth, unit: 'IOPS' },
  ];
}

/** The fio arguments of a job, the same on the host and in the guest but for the file. */
function fioArgs(j: Job, file: string, o: { sizeMiB: number; runtime: number; direct?: boolean }): string[] {
  return [
    `--name=${j.key}`, `--filename=${file}`, `--rw=${j.rw}`, `--bs=${j.bs}`, `--iodepth=${j.depth}`,
    '--ioengine=libaio', `--direct=${o.direct === false ? 0 : 1}`, `--size=${o.sizeMiB}M`,
    `--runtime=${o.runtime}`, '--time_based', '--ramp_time=1', '--randrepeat=0', '--norandommap',
    '--output-format=json', '--eta=never',
  ];
}

interface FioResult { bytesPerSec: number; iops: number; ios: number; latUs: number }

function parseFio(text: string, j: Job): FioResult {
  const start = text.indexOf('{'), end = text.lastIndexOf('}');
  if (start < 0 || end < start) throw new Error(`no JSON in fio's output: ${text.trim().slice(0, 300)}`);
  const doc = JSON.parse(text.slice(start, end + 1)) as { jobs?: { error?: number; read: FioSide; write: FioSide }[] };
  const job = doc.jobs?.[0];
  if (!job) throw new Error('fio reported no job');
  if (job.error) throw new Error(`fio job ${j.key} failed with error ${job.error}`);
  const side = j.rw === 'read' || j.rw === 'randread' ? job.read : job.write;
  return { bytesPerSec: side.bw_bytes, iops: side.iops, ios: side.total_ios, latUs: side.clat_ns.mean / 1000 };
}
interface FioSide { bw_bytes: number; iops: number; total_ios: number; clat_ns: { mean: number } }

const figure = (j: Job, r: FioResult | undefined) => (r === undefined ? undefined : j.unit === 'MB/s' ? r.bytesPerSec / 1e6 : r.iops);

// ---------------------------------------------------------------------------------------------
// Host side

/** Writes back and drops the file's page cache (GNU dd's nocache flags: posix_fadvise DONTNEED), so every job starts cold. */
function dropCache(file: string): void {
  spawnSync('dd', [`of=${file}`, 'oflag=nocache', 'conv=notrunc,fdatasync', 'count=0', 'status=none']);
  spawnSync('dd', [`if=${file}`, 'iflag=nocache', 'count=0', 'status=none']);
}

function hostFio(j: Job, file: string, o: Options, direct: boolean): FioResult {
  dropCache(file);
  const r = spawnSync('fio', fioArgs(j, file, { sizeMiB: o.sizeMiB, runtime: o.runtime, direct }), { encoding: 'utf8', timeout: (o.runtime + 120) * 1000 });
  if (r.status !== 0) throw new BenchError(`host fio ${j.key} failed (${r.error?.message ?? `exit ${r.status}`}): ${(r.stderr || r.stdout).trim().split('\n').slice(-3).join(' | ')}`);
  return parseFio(r.stdout, j);
}

/** Requirements on the host: fio, GNU dd, and qemu-img for qcow2. */
async function ensureHostTools(formats: string[]): Promise<void> {
  const { ensureHostCommands } = await import('../src/images/host-packages.js');
  const needs: Record<string, string> = { fio: 'fio', dd: 'coreutils' };
  if (formats.includes('qcow2')) needs['qemu-img'] = 'qemu-utils';
  try {
    ensureHostCommands(needs, 'bench/disk', note);
  } catch (e) {
    throw new BenchError((e as Error).message);
  }
}

function fioVersion(): string {
  const r = spawnSync('fio', ['--version'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : 'unknown';
}

/** The test image: random data (so nothing reads as a hole), written and synced once. */
function makeImage(path: string, mib: number): void {
  const fd = openSync(path, 'w');
  try {
    const chunk = Buffer.alloc(1 << 20);
    for (let i = 0; i < mib; i++) { randomFillSync(chunk); writeSync(fd, chunk); }
    fsyncSync(fd);
  } finally { closeSync(fd); }
}

// ---------------------------------------------------------------------------------------------
// Guest side

interface GuestStats { exits?: number; hypercalls: Map<string, number>; exitReasons: Map<string, number> }

function parseStats(stderr: string): GuestStats {
  const out: GuestStats = { hypercalls: new Map(), exitReasons: new Map() };
  let cur: Map<string, number> | undefined;
  for (const line of stderr.split('\n')) {
    const sum = /^pvbox: (\d+) exits in /.exec(line);
    if (sum) { out.exits = Number(sum[1]); continue; }
    if (/^exits by reason:/.test(line)) { cur = out.exitReasons; continue; }
    if (/^hypercalls by number:/.test(line)) { cur = out.hypercalls; continue; }
    if (/^\S/.test(line)) { cur = undefined; continue; }
    const row = /^\s+(.+?)\s+(\d+)\s*$/.exec(line);
    if (row && cur) cur.set(row[1]!, Number(row[2]));
  }
  return out;
}

/** /sys/block/xvdb/stat and the blkif interrupt count, read in the guest around a job. */
interface BlockCounters { reads: number; readSectors: number; writes: number; writeSectors: number; irqs: number }

function parseCounters(line: string): BlockCounters | undefined {
  const m = /@@STAT-2 ([\d ]+?)\s*@@IRQ(.*)/.exec(line);
  if (!m) return undefined;
  const f = m[1]!.trim().split(/\s+/).map(Number);
  // The interrupt line: "NN:  count  xen-dyn  -edge  blkif" (one column per vCPU).
  const irq = /^\s*\d+:\s+(\d+)/.exec(m[2]!.trim());
  return { reads: f[0] ?? 0, readSectors: f[2] ?? 0, writes: f[4] ?? 0, writeSectors: f[6] ?? 0, irqs: irq ? Number(irq[1]) : NaN };
}

interface GuestJob { result: FioResult; requests: number; avgRequestKiB: number; irqsPerRequest: number; cpuUsPerRequest: number }

/** User + system CPU of a process (all threads; a vCPU's time in the guest counts too), in µs. */
function cpuUs(pid: number | undefined): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(f[11]) + Number(f[12])) * 1e6) / 100; // utime, stime in clock ticks (USER_HZ 100)
  } catch { return NaN; }
}

class Guest {
  private readonly proc: ConsoleProcess;
  private seq = 0;
  private constructor(proc: ConsoleProcess, private readonly fio: string) { this.proc = proc; }

  static async boot(image: { kernel: string; initrd: string }, disks: string[], tools: ToolsDisk, o: Options, runDir: string): Promise<Guest> {
    const args = [PVBOX, 'run', '--name', `bench-disk-${process.pid}`, '--kernel', image.kernel, '--ramdisk', image.initrd, '--memory', String(MEMORY_MIB), '--stats',
      ...disks.flatMap((d) => ['--disk', d]), '--disk', `format=raw, vdev=xvdc, access=ro, target=${tools.image}`, ...(o.guestExtra ? ['--extra', o.guestExtra] : [])];
    // A run directory of its own: the bench's domain name never meets another pvbox's.
    const proc = new ConsoleProcess(process.execPath, args, { cwd: ROOT, env: { ...process.env, PVBOX_RUNDIR: runDir } });
    const g = new Guest(proc, tools.command(TOOLS_MOUNT));
    const ready = await proc.waitFor(/PVBOX-READY [0-9.]+\r?\n/, o.timeoutMs);
    if (!ready || !(await proc.waitFor(/\n# /, 30_000, ready.end))) {
      const why = proc.running ? `not at its prompt after ${o.timeoutMs / 1000} s` : `${statusText(proc.exitInfo)} before its prompt`;
      await proc.stop();
      throw new BenchError(`the guest was ${why}\n${proc.tail()}`);
    }
    // Kernel messages on the console would land inside fio's JSON.
    await g.sh(`dmesg -n 1; modprobe ext4; mkdir -p ${TOOLS_MOUNT} && mount -o ro /dev/xvdc ${TOOLS_MOUNT} && ${g.fio} --version`, 120_000);
    return g;
  }

  /** Runs a shell line; resolves with what it printed. Markers are built by the shell so the echoed command line never matches. */
  async sh(cmd: string, timeoutMs: number): Promise<string> {
    const n = ++this.seq;
    const from = this.proc.out.length;
    this.proc.type(`echo @@B${n}-$((1+1)); ${cmd}; echo @@E${n}-$((1+1)) rc=$?\n`);
    const end = await this.proc.waitFor(new RegExp(`@@E${n}-2 rc=(\\d+)`), timeoutMs, from);
    if (!end) throw new BenchError(`the guest did not finish '${cmd.slice(0, 80)}' within ${timeoutMs / 1000} s\n${this.proc.tail()}`);
    const begin = this.proc.out.indexOf(`@@B${n}-2`, from);
    const text = this.proc.out.slice(begin + `@@B${n}-2`.length, end.match.index);
    if (end.match[1] !== '0') throw new BenchError(`in the guest, '${cmd.slice(0, 80)}' failed (rc=${end.match[1]}): ${text.trim().slice(-500)}`);
    return text;
  }

  private async counters(): Promise<BlockCounters | undefined> {
    return parseCounters(await this.sh("echo @@STAT-$((1+1)) $(cat /sys/block/xvdb/stat) @@IRQ $(grep -m1 -E 'blkif|xvdb' /proc/interrupts)", 30_000));
  }

  async job(j: Job, o: Options, file: string): Promise<GuestJob> {
    dropCache(file);
    const before = await this.counters();
    const cpu0 = cpuUs(this.proc.child.pid);
    const text = await this.sh(`${this.fio} ${fioArgs(j, '/dev/xvdb', { sizeMiB: o.sizeMiB, runtime: o.runtime }).join(' ')}`, (o.runtime + 180) * 1000);
    const cpu = cpuUs(this.proc.child.pid) - cpu0;
    const after = await this.counters();
    const result = parseFio(text, j);
    let requests = NaN, avgRequestKiB = NaN, irqsPerRequest = NaN;
    if (before && after) {
      const read = j.rw === 'read' || j.rw === 'randread';
      requests = read ? after.reads - before.reads : after.writes - before.writes;
      const sectors = read ? after.readSectors - before.readSectors : after.writeSectors - before.writeSectors;
      avgRequestKiB = sectors / 2 / requests;
      irqsPerRequest = (after.irqs - before.irqs) / requests;
    }
    return { result, requests, avgRequestKiB, irqsPerRequest, cpuUsPerRequest: cpu / requests };
  }

  async fioRaw(args: string, timeoutMs: number): Promise<void> { await this.sh(`${this.fio} ${args} >/dev/null`, timeoutMs); }

  /** poweroff -f; the pvbox counters from --stats. */
  async poweroff(): Promise<GuestStats> {
    this.proc.type('poweroff -f\n');
    const exit = (await this.proc.waitExit(60_000)) ?? (await this.proc.stop());
    if (exit.code !== 0) note(`the guest ended with ${statusText(exit)} after poweroff -f`);
    return parseStats(this.proc.err);
  }

  kill(): void { this.proc.killNow(); }
}

// ---------------------------------------------------------------------------------------------
// Main

interface Options {
  sizeMiB: number; runtime: number; formats: ('raw' | 'qcow2')[]; seqBs: string; seqDepth: number; randDepth: number;
  guestExtra?: string; exitProfile: boolean; host: boolean; guest: boolean; timeoutMs: number; keep: boolean;
}

function options(argv: string[]): Options {
  const { values, positionals } = parseArgs({
    args: argv, allowPositionals: true, strict: true,
    options: {
      size: { type: 'string' }, runtime: { type: 'string' }, formats: { type: 'string' }, 'seq-bs': { type: 'string' },
      'seq-depth': { type: 'string' }, 'rand-depth': { type: 'string' }, 'guest-extra': { type: 'string' },
      'exit-profile': { type: 'boolean' }, 'no-host': { type: 'boolean' }, 'no-guest': { type: 'boolean' },
      timeout: { type: 'string' }, keep: { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) { process.stdout.write(USAGE); process.exit(0); }
  if (positionals.length) throw new BenchError(`unexpected argument '${positionals[0]}' (see --help)`);
  const int = (v: string | undefined, dflt: number, what: string, min = 1) => {
    if (v === undefined) return dflt;
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new BenchError(`${what} '${v}': expected a whole number ≥ ${min}`);
    return n;
  };
  const formats = (values.formats ?? 'raw').split(',').map((s) => s.trim()).filter(Boolean);
  for (const f of formats) if (f !== 'raw' && f !== 'qcow2') throw new BenchError(`--formats: '${f}' is not raw or qcow2`);
  const seqBs = values['seq-bs'] ?? '1M';
  if (!/^\d+[kKmM]?$/.test(seqBs)) throw new BenchError(`--seq-bs '${seqBs}': expected a size such as 128k or 1M`);
  if (values['guest-extra'] !== undefined && /['"\\\n]/.test(values['guest-extra'])) throw new BenchError('--guest-extra: no quotes, backslashes or newlines');
  if (values['no-host'] && values['no-guest']) throw new BenchError('--no-host and --no-guest leave nothing to run');
  return {
    sizeMiB: int(values.size, 256, '--size', 16), runtime: int(values.runtime, 8, '--runtime'), formats: [...new Set(formats)] as Options['formats'],
    seqBs, seqDepth: int(values['seq-depth'], 8, '--seq-depth'), randDepth: int(values['rand-depth'], 32, '--rand-depth'),
    guestExtra: values['guest-extra'], exitProfile: !!values['exit-profile'], host: !values['no-host'], guest: !values['no-guest'],
    timeoutMs: int(values.timeout, 300, '--timeout') * 1000, keep: !!values.keep,
  };
}

const fmt = (x: number | undefined, unit: string) => (x === undefined || !Number.isFinite(x) ? '—' : unit === 'IOPS' ? x.toFixed(0) : x.toFixed(1));
const pct = (a: number | undefined, b: number | undefined) => (a === undefined || b === undefined || !b ? '—' : `${((100 * a) / b).toFixed(0)}%`);

/** Boots a guest on `disk`, runs every job, powers off. */
async function guestRun(format: string, disk: string, js: Job[], o: Options, img: { kernel: string; initrd: string }, tools: ToolsDisk, runDir: string) {
  note(`booting the guest with xvdb = ${format} image ${disk} ...`);
  const g = await Guest.boot(img, [`format=${format}, vdev=xvdb, access=rw, target=${disk}`], tools, o, runDir);
  const results = new Map<string, GuestJob>();
  try {
    for (const j of js) {
      note(`guest ${format}: ${j.label} for ${o.runtime} s`);
      results.set(j.key, await g.job(j, o, disk));
    }
  } catch (e) { g.kill(); throw e; }
  const stats = await g.poweroff();
  return { results, stats };
}

/**
 * Exits per 128 KiB sequential read: two boots that differ only in how much fio reads at iodepth 1;
 * the difference of pvbox's counters divided by the difference in requests.
 */
async function exitProfile(data: string, o: Options, img: { kernel: string; initrd: string }, tools: ToolsDisk, runDir: string) {
  // The first 16 MiB of the disk, read once or 16 times (fio --loops).
  const loops = [1, 16];
  const runs: GuestStats[] = [];
  for (const n of loops) {
    note(`exit profile: booting a guest that reads 16 MiB ${n} time(s) in 128 KiB requests at iodepth 1 ...`);
    const g = await Guest.boot(img, [`format=raw, vdev=xvdb, access=rw, target=${data}`], tools, o, runDir);
    try {
      await g.fioRaw(`--name=p --filename=/dev/xvdb --rw=read --bs=128k --iodepth=1 --ioengine=libaio --direct=1 --size=16M --loops=${n} --eta=never`, 600_000);
    } catch (e) { g.kill(); throw e; }
    runs.push(await g.poweroff());
  }
  const requests = ((loops[1]! - loops[0]!) * (16 << 20)) / (128 << 10);
  const diff = (a: Map<string, number>, b: Map<string, number>) =>
    [...new Set([...a.keys(), ...b.keys()])].map((k) => [k, ((b.get(k) ?? 0) - (a.get(k) ?? 0)) / requests] as const).filter(([, v]) => Math.abs(v) >= 0.05).sort((x, y) => y[1] - x[1]);
  return { requests, exits: ((runs[1]!.exits ?? 0) - (runs[0]!.exits ?? 0)) / requests, reasons: diff(runs[0]!.exitReasons, runs[1]!.exitReasons), hypercalls: diff(runs[0]!.hypercalls, runs[1]!.hypercalls) };
}

async function main(): Promise<number> {
  const o = options(process.argv.slice(2));
  installHandlers();
  const k = hostKvm();
  say('bench/disk: fio in a pvbox guest (xen-blkfront → pvbox blkback) and on the host, same file, same jobs');
  say(`host: Linux ${release()}; ${cpuFacts()}; load average at start ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  for (const l of describeKvm(k)) say(l);
  say(`pvbox: ${pvboxRevision(ROOT)}`);
  await ensureHostTools(o.formats);
  say(`fio: host ${fioVersion()}; image ${o.sizeMiB} MiB of random data; ${o.runtime} s per job (after 1 s ramp), direct I/O, libaio; the file's page cache is dropped before each job`);
  if (!k.pvm && k.devKvm) say('(QEMU virtio-blk reference: not part of this bench yet)');

  const work = mkdtempSync(join(tmpdir(), 'pvbox-bench-disk-'));
  const data = join(work, 'data.raw');
  const js = jobs(o);
  const host = new Map<string, { direct: FioResult; cached: FioResult }>();
  const guest = new Map<string, Awaited<ReturnType<typeof guestRun>>>();
  let profile: Awaited<ReturnType<typeof exitProfile>> | undefined;
  try {
    note(`writing ${o.sizeMiB} MiB of random data to ${data}`);
    makeImage(data, o.sizeMiB);
    if (o.host) {
      for (const j of js) {
        note(`host: ${j.label} for ${o.runtime} s, O_DIRECT and through the page cache`);
        host.set(j.key, { direct: hostFio(j, data, o, true), cached: hostFio(j, data, o, false) });
      }
    }
    if (o.guest || o.exitProfile) {
      const { ensureDefaultImage } = await import('../src/images/debian.js');
      const img = await ensureDefaultImage();
      const tools = await ensureToolsDisk('fio', 'bin/fio', note);
      say(`guest: ${img.kernelVersion} (Debian ${img.packageVersion}), busybox initramfs, ${MEMORY_MIB} MiB${o.guestExtra ? `, extra '${o.guestExtra}'` : ''}; fio ${tools.packages['fio']} from a read-only tools disk (xvdc, ${tools.libraries} libraries)`);
      const runDir = join(work, 'run');
      if (o.guest) {
        for (const f of o.formats) {
          let disk = data;
          if (f === 'qcow2') {
            disk = join(work, 'data.qcow2');
            const r = spawnSync('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', data, disk], { encoding: 'utf8' });
            if (r.status !== 0) throw new BenchError(`qemu-img convert failed: ${r.stderr.trim()}`);
          }
          guest.set(f, await guestRun(f, disk, js, o, img, tools, runDir));
        }
      }
      if (o.exitProfile) profile = await exitProfile(data, o, img, tools, runDir);
    }
  } finally {
    if (o.keep) note(`scratch directory kept: ${work}`); else rmSync(work, { recursive: true, force: true });
  }

  // ---- report ----
  say('');
  const fmts = [...guest.keys()];
  const header = ['job', ...fmts.map((f) => `pvbox ${f}`), ...(o.host ? ['host O_DIRECT', 'host page cache'] : []), ...(o.host ? fmts.map((f) => `${f}/host`) : [])];
  const rows = [header];
  for (const j of js) {
    const h = host.get(j.key);
    const g = fmts.map((f) => figure(j, guest.get(f)!.results.get(j.key)?.result));
    rows.push([`${j.label} (${j.unit})`, ...g.map((x) => fmt(x, j.unit)), ...(o.host ? [fmt(figure(j, h?.direct), j.unit), fmt(figure(j, h?.cached), j.unit)] : []),
      ...(o.host ? g.map((x) => pct(x, figure(j, h?.direct))) : [])]);
  }
  say(table(rows));
  if (fmts.length) {
    say('');
    say('In the guest, per job (from /sys/block/xvdb/stat and /proc/interrupts):');
    const rows2 = [['job', 'format', 'requests', 'avg request', 'blkif irqs/request', 'pvbox CPU/request', 'fio mean completion latency']];
    for (const f of fmts) for (const j of js) {
      const r = guest.get(f)!.results.get(j.key);
      if (r) rows2.push([j.label, f, String(r.requests), `${fmt(r.avgRequestKiB, 'KiB')} KiB`, fmt(r.irqsPerRequest, ''), `${fmt(r.cpuUsPerRequest, 'IOPS')} µs`, `${r.result.latUs.toFixed(0)} µs`]);
    }
    say(table(rows2));
    for (const f of fmts) {
      const s = guest.get(f)!.stats;
      say(`pvbox counters, ${f} guest (boot + all jobs): ${s.exits ?? '?'} exits; ${[...s.exitReasons].map(([n, v]) => `${n} ${v}`).join(', ')}`);
    }
  }
  if (profile) {
    say('');
    say(`Exits per 128 KiB sequential read at iodepth 1 (difference of two boots, ${profile.requests} requests): ${profile.exits.toFixed(1)}`);
    say(`  by reason: ${profile.reasons.map(([n, v]) => `${n} ${v.toFixed(2)}`).join(', ')}`);
    say(`  hypercalls: ${profile.hypercalls.map(([n, v]) => `${n} ${v.toFixed(2)}`).join(', ')}`);
  }
  say(`load average at end ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  say('');
  const kind = kvmKind(k);
  say(`RESULT host_kvm_${kind} 1 flag`);
  for (const j of js) {
    const u = j.unit === 'MB/s' ? 'MBps' : 'iops';
    const h = host.get(j.key);
    for (const f of fmts) {
      const x = figure(j, guest.get(f)!.results.get(j.key)?.result);
      if (x !== undefined) say(`RESULT pvbox_${f}_${j.key} ${fmt(x, j.unit)} ${u}`);
      const gj = guest.get(f)!.results.get(j.key);
      if (gj && Number.isFinite(gj.cpuUsPerRequest)) say(`RESULT pvbox_${f}_${j.key}_cpu_per_request ${gj.cpuUsPerRequest.toFixed(0)} us`);
      if (x !== undefined && h) say(`RESULT pvbox_${f}_${j.key}_vs_host_direct ${((100 * x) / figure(j, h.direct)!).toFixed(1)} percent`);
    }
    if (h) {
      say(`RESULT host_direct_${j.key} ${fmt(figure(j, h.direct), j.unit)} ${u}`);
      say(`RESULT host_cached_${j.key} ${fmt(figure(j, h.cached), j.unit)} ${u}`);
    }
  }
  if (profile) say(`RESULT pvbox_exits_per_128k_seq_read ${profile.exits.toFixed(1)} exits`);
  return 0;
}

void runBench('bench/disk', USAGE, main);
