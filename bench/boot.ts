// bench/boot: boot time of the default guest under pvbox, with the same kernel and initramfs booted by QEMU as a plain guest in the same run for reference.
//
//   node --import tsx bench/boot.ts [--runs N] [--flavour amd64[,cloud-amd64]] [--timeout S] [--qemu-accel auto|probe|kvm|tcg] [--no-qemu] [--no-pvbox]
//
// Prints a table and one `RESULT <name> <value> <unit>` line per figure. See bench/README.md.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { cpus, loadavg, release } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ConsoleProcess, installHandlers, type ExitInfo } from './lib/console-process.js';
import { BenchError, runBench } from './lib/run-bench.js';
import { statusText, table } from './lib/report.js';

const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));
const PVBOX = join(ROOT, 'bin', 'pvbox.js');
const SHARED_README = resolve(ROOT, '..', 'shared', 'bench', 'README.md');
const QEMU = 'qemu-system-x86_64';
const QEMU_PACKAGE = 'qemu-system-x86';
const MEMORY_MIB = 512;
const QEMU_APPEND = 'console=ttyS0 panic=-1';
const FLAVOURS = ['amd64', 'cloud-amd64'] as const;
type Flavour = (typeof FLAVOURS)[number];

const USAGE = `usage: bench/boot [options]

Boots the default pvbox guest (Debian 12 kernel + busybox initramfs) N times under
pvbox and N times under QEMU as a plain guest, and prints launch -> PVBOX-READY
wall time, the guest's uptime at that line and pvbox's exit counters.

options:
  --runs N              boots per system and flavour (default 3)
  --flavour LIST        kernel flavours, comma-separated: amd64 (default), cloud-amd64
  --timeout S           give up on a boot that has not printed PVBOX-READY after S s (default 300)
  --qemu-accel MODE     auto (default): tcg on a PVM host or without /dev/kvm, otherwise a
                        probe boot with KVM decides; probe: always run the KVM probe boot;
                        kvm or tcg: use that one
  --probe-timeout S     how long the KVM probe boot may take to reach PVBOX-READY (default 30)
  --no-qemu             skip the QEMU reference
  --no-pvbox            skip pvbox (QEMU reference only)
  -h, --help            this text
`;


// ---------------------------------------------------------------------------------------------
// Small helpers

const say = (s = '') => process.stdout.write(`${s}\n`);
const note = (s: string) => process.stderr.write(`bench/boot: ${s}\n`);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}
const min = (xs: number[]) => Math.min(...xs);
const secs = (ms: number) => ms / 1000;
const f2 = (x: number | undefined) => (x === undefined || !Number.isFinite(x) ? '—' : x.toFixed(2));
const f3 = (x: number) => x.toFixed(3);

/** RESULT-name component: letters, digits and underscores only. */
const ident = (s: string) => s.replace(/[^A-Za-z0-9]+/g, '_').replace(/^_+|_+$/g, '');



function lastLine(s: string): string {
  const lines = s.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '').split(/\r?\n/).map((l) => l.trim()).filter(Boolean);
  return lines.at(-1) ?? '';
}

// ---------------------------------------------------------------------------------------------
// Host facts

interface HostKvm { devKvm: boolean; intel: boolean; amd: boolean; pvm: boolean }

function hostKvm(): HostKvm {
  return {
    devKvm: existsSync('/dev/kvm'),
    intel: existsSync('/sys/module/kvm_intel'),
    amd: existsSync('/sys/module/kvm_amd'),
    pvm: existsSync('/sys/module/kvm_pvm'),
  };
}

function describeKvm(k: HostKvm): string[] {
  const yn = (b: boolean) => (b ? 'loaded' : 'absent');
  const lines = [`KVM modules (/sys/module): kvm_intel ${yn(k.intel)}, kvm_amd ${yn(k.amd)}, kvm_pvm ${yn(k.pvm)}; /dev/kvm ${k.devKvm ? 'present' : 'absent'}`];
  if (!k.devKvm) lines.push('  => no KVM on this host');
  else if (k.pvm) lines.push('  => /dev/kvm is the PVM backend (kvm_pvm): guests run in ring 3, no hardware-virtualised (HVM) guests at speed');
  else if (k.intel) lines.push('  => /dev/kvm is hardware KVM (Intel VMX)');
  else if (k.amd) lines.push('  => /dev/kvm is hardware KVM (AMD SVM)');
  return lines;
}

function cpuFacts(): string {
  const info = (() => { try { return readFileSync('/proc/cpuinfo', 'utf8'); } catch { return ''; } })();
  const model = /^model name\s*:\s*(.*)$/m.exec(info)?.[1] ?? cpus()[0]?.model ?? 'unknown CPU';
  const flags = ` ${/^flags\s*:\s*(.*)$/m.exec(info)?.[1] ?? ''} `;
  const virt = flags.includes(' vmx ') ? 'vmx' : flags.includes(' svm ') ? 'svm' : 'no vmx/svm';
  return `${model}, ${cpus().length} CPUs (${virt})`;
}

/** The checkout pvbox runs from: commit, and whether src/ or bin/ have uncommitted changes. */
function pvboxRevision(): string {
  const git = (args: string[]) => spawnSync('git', ['-C', ROOT, ...args], { encoding: 'utf8' });
  const head = git(['rev-parse', '--short', 'HEAD']);
  if (head.error || head.status !== 0) return 'not a git checkout';
  const dirty = git(['status', '--porcelain', '--', 'src', 'bin', 'package.json']).stdout.trim();
  return `commit ${head.stdout.trim()}${dirty ? ', with uncommitted changes under src/, bin/ or package.json' : ''}`;
}

function qemuVersion(): string | undefined {
  const r = spawnSync(QEMU, ['--version'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) return undefined;
  return r.stdout.split('\n')[0]!.trim();
}

/** Installs qemu-system-x86 with apt-get when QEMU is missing (root only). */
function ensureQemu(): string {
  const v = qemuVersion();
  if (v) return v;
  if (process.getuid?.() !== 0) {
    throw new BenchError(`${QEMU} not found and not running as root: install it with 'apt-get install ${QEMU_PACKAGE}', or pass --no-qemu`);
  }
  note(`${QEMU} not found: installing the Debian package ${QEMU_PACKAGE} with apt-get (for the reference boot)`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const apt = (args: string[]) => spawnSync('apt-get', args, { stdio: ['ignore', 2, 2], env }).status === 0;
  const install = ['install', '-y', '--no-install-recommends', QEMU_PACKAGE];
  if (!apt(install)) {
    note('apt-get install failed; running apt-get update and trying again');
    if (!apt(['update']) || !apt(install)) throw new BenchError(`could not install ${QEMU_PACKAGE} with apt-get (see above); pass --no-qemu to skip the reference`);
  }
  const after = qemuVersion();
  if (!after) throw new BenchError(`${QEMU_PACKAGE} installed but ${QEMU} --version still fails`);
  return after;
}

// ---------------------------------------------------------------------------------------------
// Reference figures from shared/bench/README.md (measured earlier, not in this run)

function referenceFigures(): string[] {
  let text: string;
  try {
    text = readFileSync(SHARED_README, 'utf8');
  } catch {
    return [`(reference figures not available: cannot read ${SHARED_README})`];
  }
  const start = text.search(/^Reference figures/m);
  if (start < 0) return [`(no "Reference figures" section in ${SHARED_README})`];
  const rest = text.slice(start).split('\n');
  const intro: string[] = [];
  let i = 0;
  for (; i < rest.length && !rest[i]!.startsWith('|'); i++) if (rest[i]!.trim()) intro.push(rest[i]!.trim());
  const rows: string[][] = [];
  for (; i < rest.length && rest[i]!.startsWith('|'); i++) {
    const cells = rest[i]!.split('|').slice(1, -1).map((c) => c.trim());
    if (cells.every((c) => /^:?-+:?$/.test(c))) continue;
    rows.push(cells);
  }
  const header = rows[0];
  const boot = rows.filter((r) => /READY/.test(r[0] ?? ''));
  if (!header || boot.length === 0) return [`(could not find the boot rows in ${SHARED_README})`];
  return [
    `Reference figures MEASURED EARLIER, not in this run (from ${SHARED_README}):`,
    ...intro.map((l) => `  ${l}`),
    table([header, ...boot], '    '),
    '  Their guest ran shared/bench/guest-init, which prints GUEST-READY right after mounting /proc, /sys and /dev;',
    "  this bench's guest runs pvbox's initramfs /init, which also loads Xen frontend drivers (when on Xen) before PVBOX-READY.",
  ];
}

// ---------------------------------------------------------------------------------------------
// One boot: launch, wait for PVBOX-READY, type `poweroff -f`, collect the exit

const READY_AT = /(?:^|\n)PVBOX-READY /;
const READY_LINE = /(?:^|\n)PVBOX-READY ([0-9]+(?:\.[0-9]+)?)\r?\n/;
const PROMPT = /\n# /;

interface PvboxStats {
  /** Total exits from pvbox's summary line. */
  exits?: number;
  /** pvbox's own timer: domain thread start -> readiness line, seconds. */
  readyInternal?: number;
  /** section ("exits", "hypercalls", "traps") -> counter name -> count, in pvbox's order. */
  sections: Map<string, Map<string, number>>;
}

interface BootResult {
  ok: boolean;
  /** Launch -> PVBOX-READY on the console, seconds. */
  wall?: number;
  /** The guest's /proc/uptime printed in the line, seconds. */
  uptime?: number;
  exit?: ExitInfo;
  /** READY -> process exit, seconds. */
  shutdown?: number;
  cleanExit: boolean;
  problem?: string;
  stats?: PvboxStats;
  proc: ConsoleProcess;
}

function parsePvboxStats(stderr: string): PvboxStats | undefined {
  const sections = new Map<string, Map<string, number>>();
  let exits: number | undefined, readyInternal: number | undefined;
  let cur: Map<string, number> | undefined;
  let seen = false;
  for (const line of stderr.split('\n')) {
    const sum = /^pvbox: (\d+) exits in [0-9.]+ s; readiness line (?:after ([0-9.]+) s|never seen)/.exec(line);
    if (sum) { seen = true; exits = Number(sum[1]); if (sum[2]) readyInternal = Number(sum[2]); cur = undefined; continue; }
    const head = /^(\S+) by [^:]+:$/.exec(line);
    if (head && seen) { cur = new Map(); sections.set(head[1]!, cur); continue; }
    const row = /^\s+(.+?)\s+(\d+)\s*$/.exec(line);
    if (row && cur) { cur.set(row[1]!, Number(row[2])); continue; }
    if (line.trim()) cur = undefined;
  }
  return seen ? { exits, readyInternal, sections } : undefined;
}

async function bootOnce(command: string, args: string[], o: { timeoutMs: number; shutdownMs: number; pvbox: boolean }): Promise<BootResult> {
  const p = new ConsoleProcess(command, args, { cwd: ROOT });
  const [mark, line] = await Promise.all([p.waitFor(READY_AT, o.timeoutMs), p.waitFor(READY_LINE, o.timeoutMs)]);
  if (!mark || !line) {
    const why = p.running ? `no PVBOX-READY within ${secs(o.timeoutMs)} s` : `${statusText(p.exitInfo)} before PVBOX-READY`;
    const exit = await p.stop();
    return { ok: false, cleanExit: false, problem: why, exit, proc: p };
  }
  const wall = secs(mark.at - p.t0);
  const uptime = Number(line.match[1]);
  // Type the command once the shell's prompt is up (typed earlier it would wait in the tty buffer anyway), and again now and then.
  await p.waitFor(PROMPT, 10_000, line.end);
  const deadline = Date.now() + o.shutdownMs;
  let exit: ExitInfo | undefined;
  while (!exit && Date.now() < deadline) {
    p.type('poweroff -f\n');
    exit = await p.waitExit(Math.min(15_000, Math.max(0, deadline - Date.now())));
  }
  let problem: string | undefined;
  if (!exit) {
    exit = await p.stop();
    problem = `did not exit within ${secs(o.shutdownMs)} s of 'poweroff -f' (killed)`;
  } else if (exit.code !== 0) {
    problem = `ended with ${statusText(exit)} after 'poweroff -f' (expected 0)`;
  }
  const stats = o.pvbox ? parsePvboxStats(p.err) : undefined;
  if (o.pvbox && !stats && !problem) problem = 'no --stats counters on stderr';
  return { ok: true, wall, uptime, exit, shutdown: secs(p.exitAt! - mark.at), cleanExit: !problem, problem, stats, proc: p };
}

function qemuArgs(accel: 'kvm' | 'tcg', kernel: string, initrd: string): string[] {
  return ['-accel', accel, '-m', String(MEMORY_MIB), '-smp', '1', '-nographic', '-no-reboot', '-kernel', kernel, '-initrd', initrd, '-append', QEMU_APPEND];
}

function pvboxArgs(kernel: string, initrd: string): string[] {
  return [PVBOX, 'run', '--kernel', kernel, '--ramdisk', initrd, '--memory', String(MEMORY_MIB), '--stats'];
}

// ---------------------------------------------------------------------------------------------
// QEMU acceleration

async function chooseAccel(mode: string, k: HostKvm, kernel: string, initrd: string, probeMs: number): Promise<{ accel: 'kvm' | 'tcg'; why: string }> {
  if (mode === 'kvm') return { accel: 'kvm', why: 'forced with --qemu-accel kvm' };
  if (mode === 'tcg') return { accel: 'tcg', why: 'forced with --qemu-accel tcg' };
  if (!k.devKvm) return { accel: 'tcg', why: 'no /dev/kvm on this host' };
  if (mode === 'auto' && k.pvm) {
    return {
      accel: 'tcg',
      why: '/sys/module/kvm_pvm is loaded, so /dev/kvm is the PVM backend, on which QEMU\'s KVM guests fail or crawl (no probe boot; --qemu-accel probe runs one)',
    };
  }
  say(`probing QEMU with -accel kvm: booting the guest, up to ${secs(probeMs)} s to PVBOX-READY ...`);
  const r = await bootOnce(QEMU, qemuArgs('kvm', kernel, initrd), { timeoutMs: probeMs, shutdownMs: 20_000, pvbox: false });
  if (r.ok) return { accel: 'kvm', why: `probe boot with -accel kvm reached PVBOX-READY after ${f2(r.wall)} s` };
  // Leave out the line QEMU prints when we stop it.
  const said = r.proc.err.split('\n').map((l) => l.trim()).filter((l) => l && !/terminating on signal/.test(l));
  const seen = lastLine(r.proc.out);
  const detail = `${said.length ? `; qemu said: ${said.at(-1)}` : ''}${seen ? `; last console line: '${seen.slice(0, 100)}'` : '; no console output'}`;
  return { accel: 'tcg', why: `probe boot with -accel kvm failed: ${r.problem}${detail}` };
}

// ---------------------------------------------------------------------------------------------
// Main

interface Options { runs: number; flavours: Flavour[]; timeoutMs: number; accelMode: string; probeMs: number; qemu: boolean; pvbox: boolean }

function options(argv: string[]): Options {
  const { values, positionals } = parseArgs({
    args: argv, allowPositionals: true, strict: true,
    options: {
      runs: { type: 'string' }, flavour: { type: 'string', multiple: true }, timeout: { type: 'string' },
      'qemu-accel': { type: 'string' }, 'probe-timeout': { type: 'string' },
      'no-qemu': { type: 'boolean' }, 'no-pvbox': { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) { process.stdout.write(USAGE); process.exit(0); }
  if (positionals.length) throw new BenchError(`unexpected argument '${positionals[0]}' (see --help)`);
  const num = (v: string | undefined, dflt: number, what: string) => {
    if (v === undefined) return dflt;
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0) throw new BenchError(`${what} '${v}': expected a positive number`);
    return n;
  };
  const runs = num(values.runs, 3, '--runs');
  if (!Number.isInteger(runs)) throw new BenchError(`--runs '${values.runs}': expected a whole number`);
  const flavours: Flavour[] = [];
  for (const f of (values.flavour ?? ['amd64']).flatMap((s) => s.split(',')).map((s) => s.trim()).filter(Boolean)) {
    if (!(FLAVOURS as readonly string[]).includes(f)) throw new BenchError(`--flavour '${f}': expected one of ${FLAVOURS.join(', ')}`);
    if (!flavours.includes(f as Flavour)) flavours.push(f as Flavour);
  }
  const accelMode = values['qemu-accel'] ?? 'auto';
  if (!['auto', 'probe', 'kvm', 'tcg'].includes(accelMode)) throw new BenchError(`--qemu-accel '${accelMode}': expected auto, probe, kvm or tcg`);
  if (values['no-qemu'] && values['no-pvbox']) throw new BenchError('--no-qemu and --no-pvbox leave nothing to run');
  return {
    runs, flavours, accelMode,
    timeoutMs: num(values.timeout, 300, '--timeout') * 1000,
    probeMs: num(values['probe-timeout'], 30, '--probe-timeout') * 1000,
    qemu: !values['no-qemu'], pvbox: !values['no-pvbox'],
  };
}

interface FlavourImage { flavour: Flavour; kernel: string; initrd: string; kernelVersion: string; packageVersion: string }

async function images(flavours: Flavour[]): Promise<FlavourImage[]> {
  let ensureDefaultImage: typeof import('../src/images/debian.js').ensureDefaultImage;
  try {
    ({ ensureDefaultImage } = await import('../src/images/debian.js'));
  } catch (e) {
    throw new BenchError(`cannot load pvbox's image builder (src/images/debian.ts): ${(e as Error).message}`);
  }
  const out: FlavourImage[] = [];
  for (const flavour of flavours) {
    try {
      const img = await ensureDefaultImage({ flavour });
      out.push({ flavour, ...img });
    } catch (e) {
      throw new BenchError(`cannot build the guest image for flavour ${flavour} (linux-image-${flavour} + busybox-static via apt): ${(e as Error).message}`);
    }
  }
  return out;
}

interface Series { label: string; key: string; results: BootResult[] }

function reportRun(tag: string, name: string, r: BootResult): void {
  const head = `  [${tag}] ${name.padEnd(11)}`;
  if (!r.ok) {
    say(`${head} FAILED: ${r.problem}`);
    process.stderr.write(`=== [${tag}] ${name}: ${r.problem}\n${r.proc.tail()}\n`);
    return;
  }
  const counters = r.stats?.exits !== undefined ? `, ${r.stats.exits} exits` : '';
  say(`${head} PVBOX-READY after ${f2(r.wall)} s, guest uptime ${f2(r.uptime)} s; poweroff → ${statusText(r.exit)} after ${f2(r.shutdown)} s${counters}${r.problem ? `  (!) ${r.problem}` : ''}`);
  if (r.problem) process.stderr.write(`=== [${tag}] ${name}: ${r.problem}\n${r.proc.tail()}\n`);
}

function summarise(img: FlavourImage, series: Series[], results: string[]): void {
  say();
  say(`${img.flavour}: linux-image-${img.kernelVersion} ${img.packageVersion}, ${MEMORY_MIB} MiB, 1 vCPU — median / min over the runs that reached PVBOX-READY`);
  const fl = ident(img.flavour);
  const rows: string[][] = [['figure', ...series.map((s) => s.label)]];
  const cell = (xs: number[]) => (xs.length ? `${f2(median(xs))} / ${f2(min(xs))} s` : '—');
  const good = (s: Series) => s.results.filter((r) => r.ok);
  const pick = (s: Series, f: (r: BootResult) => number | undefined) => good(s).map(f).filter((x): x is number => x !== undefined && Number.isFinite(x));
  const figure = (label: string, name: string, f: (r: BootResult) => number | undefined, only?: (s: Series) => boolean) => {
    if (!series.some((s) => !only || only(s))) return;
    rows.push([label, ...series.map((s) => (only && !only(s) ? '—' : cell(pick(s, f))))]);
    for (const s of series) {
      if (only && !only(s)) continue;
      const xs = pick(s, f);
      if (!xs.length) continue;
      results.push(`RESULT ${s.key}_${fl}_${name}_median ${f3(median(xs))} s`, `RESULT ${s.key}_${fl}_${name}_min ${f3(min(xs))} s`);
    }
  };
  const isPvbox = (s: Series) => s.key === 'pvbox';
  figure('launch → PVBOX-READY (wall)', 'launch_to_ready', (r) => r.wall);
  figure('guest uptime at PVBOX-READY', 'guest_uptime_at_ready', (r) => r.uptime);
  figure('launch → guest clock start (wall − uptime)', 'launch_to_guest_clock', (r) => (r.wall !== undefined && r.uptime !== undefined ? r.wall - r.uptime : undefined));
  figure("domain thread → PVBOX-READY (pvbox's timer)", 'thread_to_ready', (r) => r.stats?.readyInternal, isPvbox);
  rows.push(['boots reaching PVBOX-READY / clean poweroff', ...series.map((s) => `${good(s).length}/${s.results.length} / ${s.results.filter((r) => r.cleanExit).length}/${s.results.length}`)]);
  say(table(rows));

  // pvbox's exit counters, per run and median.
  const pv = series.find(isPvbox);
  const withStats = pv ? pv.results.filter((r) => r.stats) : [];
  if (!pv || withStats.length === 0) return;
  say();
  say('pvbox exit counters (--stats: from launch to poweroff, so they include the shell prompt and poweroff)');
  const keys: [string, string][] = [];
  for (const r of withStats) for (const [sec, m] of r.stats!.sections) for (const k of m.keys()) if (!keys.some(([a, b]) => a === sec && b === k)) keys.push([sec, k]);
  const crows: string[][] = [['counter', ...pv.results.map((_, i) => `run ${i + 1}`), 'median']];
  const line = (label: string, name: string, get: (r: BootResult) => number | undefined) => {
    const vals = pv.results.map((r) => (r.stats ? get(r) ?? 0 : undefined));
    const xs = vals.filter((v): v is number => v !== undefined);
    const med = median(xs);
    crows.push([label, ...vals.map((v) => (v === undefined ? '—' : String(v))), Number.isInteger(med) ? String(med) : med.toFixed(1)]);
    results.push(`RESULT pvbox_${fl}_${name} ${Number.isInteger(med) ? med : med.toFixed(1)} count`);
  };
  line('exits (total)', 'exits_total', (r) => r.stats!.exits);
  let last = '';
  for (const [sec, k] of keys) {
    const header = withStats.find((r) => r.stats!.sections.has(sec));
    if (sec !== last && header) { crows.push([`${sec} by ${sec === 'exits' ? 'reason' : sec === 'hypercalls' ? 'number' : sec === 'traps' ? 'vector' : '…'}:`]); last = sec; }
    line(`  ${k}`, `${ident(sec)}_${ident(k)}`, (r) => r.stats!.sections.get(sec)?.get(k));
  }
  say(table(crows));
}

async function main(): Promise<number> {
  const opt = options(process.argv.slice(2));
  installHandlers();
  const kvm = hostKvm();

  say('bench/boot — boot time of the default guest: pvbox, and QEMU as a plain-guest reference, in the same run');
  say(`host: Linux ${release()}, ${cpuFacts()}, load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  for (const l of describeKvm(kvm)) say(l);
  const busy = loadavg()[0]!;
  if (busy > 0.5) say(`note: load average ${busy.toFixed(2)} before starting: other work is running on this host, so timings will be higher than on an idle machine`);
  say(`node ${process.version}; ${opt.runs} run${opt.runs === 1 ? '' : 's'} per system and flavour; boot timeout ${secs(opt.timeoutMs)} s`);
  say();
  for (const l of referenceFigures()) say(l);
  say();

  const qemuVer = opt.qemu ? ensureQemu() : undefined;
  if (qemuVer) say(`qemu: ${qemuVer}`);
  const imgs = await images(opt.flavours);

  let accel: 'kvm' | 'tcg' = 'tcg';
  if (opt.qemu) {
    const c = await chooseAccel(opt.accelMode, kvm, imgs[0]!.kernel, imgs[0]!.initrd, opt.probeMs);
    accel = c.accel;
    say(`QEMU acceleration: ${accel} — ${c.why}`);
  }
  const revision = pvboxRevision();
  say(`pvbox:   ${ROOT} (${revision})`);
  say(`         node bin/pvbox.js run --kernel K --ramdisk R --memory ${MEMORY_MIB} --stats`);
  if (opt.qemu) say(`QEMU:    ${QEMU} ${qemuArgs(accel, 'K', 'R').map((a) => (a.includes(' ') ? `'${a}'` : a)).join(' ')}`);
  say("each boot: launch → PVBOX-READY on the console, then 'poweroff -f' typed into the guest shell");

  const results: string[] = [];
  let failures = 0;
  for (const img of imgs) {
    say();
    say(`== ${img.flavour}: ${img.kernel}`);
    say(`   initrd ${img.initrd}`);
    const series: Series[] = [];
    const pv: Series = { label: 'pvbox', key: 'pvbox', results: [] };
    const qe: Series = { label: `QEMU (${accel})`, key: `qemu_${accel}`, results: [] };
    if (opt.pvbox) series.push(pv);
    if (opt.qemu) series.push(qe);
    // Interleaved, so a change in the machine's load during the bench affects both alike.
    for (let i = 0; i < opt.runs; i++) {
      const tag = `${img.flavour} ${i + 1}/${opt.runs}`;
      if (opt.pvbox) {
        const r = await bootOnce(process.execPath, pvboxArgs(img.kernel, img.initrd), { timeoutMs: opt.timeoutMs, shutdownMs: 60_000, pvbox: true });
        pv.results.push(r);
        reportRun(tag, 'pvbox', r);
      }
      if (opt.qemu) {
        const r = await bootOnce(QEMU, qemuArgs(accel, img.kernel, img.initrd), { timeoutMs: opt.timeoutMs, shutdownMs: 60_000, pvbox: false });
        qe.results.push(r);
        reportRun(tag, `QEMU ${accel}`, r);
      }
    }
    for (const s of series) failures += s.results.filter((r) => !r.cleanExit).length;
    summarise(img, series, results);
  }

  say();
  say(`load average at the end: ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  const after = pvboxRevision();
  if (opt.pvbox && after !== revision) say(`note: the pvbox checkout changed during the bench (now ${after}): runs may differ for that reason`);
  if (failures) say(`${failures} boot${failures === 1 ? '' : 's'} did not reach PVBOX-READY or did not power off cleanly (details on stderr)`);
  say();
  for (const r of results) say(r);
  return failures ? 1 : 0;
}

await runBench('bench/boot', USAGE, main);
