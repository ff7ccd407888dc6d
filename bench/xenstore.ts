// bench/xenstore: XenStore operations per second through the xenstored Unix socket, for pvbox's
// daemon and, in the same run, Debian's C xenstored and oxenstored (xen-utils-4.17) as references.
//
//   node --import tsx bench/xenstore.ts [--rounds N] [--duration S] [--depth N] [--cli-runs N]
//                                       [--no-c] [--no-oxenstored] [--keep-temp]
//
// Prints a table and one `RESULT <name> <value> <unit>` line per figure. See bench/README.md.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import { cpus, loadavg, release, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ConsoleProcess, installHandlers, type ExitInfo } from './lib/console-process.js';
import { errorName, XsClient, type XsReply } from './lib/xs-client.js';
import { BenchError, runBench } from './lib/run-bench.js';
import {
  latin1,
  splitStrings,
  XS_DIRECTORY,
  XS_READ,
  XS_RM,
  XS_TRANSACTION_END,
  XS_TRANSACTION_START,
  XS_UNWATCH,
  XS_WATCH,
  XS_WRITE,
  xsRequest,
} from '../src/xenstore/wire.js';
import { statusText, table } from './lib/report.js';

const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));
const PVBOX = join(ROOT, 'bin', 'pvbox.js');
const STUB_SOURCE = join(ROOT, 'bench', 'lib', 'xen-devices-stub.c');

/** Debian packages unpacked (not installed) for the reference daemons: the daemons and the libraries they load. */
const XEN_PACKAGES = [
  'xen-utils-4.17', // /usr/lib/xen-4.17/bin/{xenstored,oxenstored}
  'xen-utils-common', // /etc/xen/oxenstored.conf
  'libxenmisc4.17', // libxenctrl, libxenguest
  'libxencall1',
  'libxenevtchn1',
  'libxengnttab1',
  'libxenforeignmemory1',
  'libxendevicemodel1',
  'libxentoollog1',
  'libyajl2',
];
const XEN_BIN = 'usr/lib/xen-4.17/bin';
const XEN_LIB = 'usr/lib/x86_64-linux-gnu';

const USAGE = `usage: bench/xenstore [options]

Measures XenStore operations through the xenstored Unix socket with a pipelined client
written in TypeScript: XS_READ, XS_WRITE, XS_DIRECTORY, transactions (start+write+commit)
and watch events (rate and write->event latency), with 1 and with N requests in flight;
then Debian's xenstore-write / xenstore-read processes (client start-up cost included).
Daemons: pvbox xenstored, and Debian's C xenstored and oxenstored (xen-utils-4.17) as
references, unpacked from their packages and run without a Xen hypervisor.

options:
  --rounds N        rounds; each starts every daemon afresh and runs every figure (default 3)
  --duration S      seconds measured per figure, after a 0.3 s warm-up (default 1.5)
  --depth N         requests in flight for the pipelined figures (default 32)
  --cli-runs N      xenstore-write / xenstore-read invocations per daemon and round (default 200)
  --no-c            skip Debian's C xenstored
  --no-oxenstored   skip Debian's oxenstored
  --keep-temp       keep the temporary directory (packages, sockets, logs)
  -h, --help        this text
`;


// ---------------------------------------------------------------------------------------------
// Small helpers

const say = (s = '') => process.stdout.write(`${s}\n`);
const note = (s: string) => process.stderr.write(`bench/xenstore: ${s}\n`);
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function quantile(xs: readonly number[], q: number): number {
  if (xs.length === 0) return NaN;
  const s = Float64Array.from(xs).sort();
  const pos = (s.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return s[lo]! + (s[hi]! - s[lo]!) * (pos - lo);
}
const median = (xs: readonly number[]) => quantile(xs, 0.5);

/** 12345.6 -> "12 346". */
function grouped(x: number): string {
  if (!Number.isFinite(x)) return '—';
  return Math.round(x).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ' ');
}
const f1 = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : '—');
const f2 = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : '—');
const loadText = () => loadavg().map((x) => x.toFixed(2)).join(' ');



/** Non-empty lines of a child's output, trimmed, for quoting. */
function lines(s: string): string[] {
  return s.split('\n').map((l) => l.trim()).filter(Boolean);
}

function run(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', cwd: opts.cwd, env: opts.env, timeout: opts.timeoutMs ?? 120_000 });
  return { ok: !r.error && r.status === 0, status: r.status, signal: r.signal, stdout: r.stdout ?? '', stderr: r.stderr ?? '', error: r.error };
}

// ---------------------------------------------------------------------------------------------
// Host facts

function cpuFacts(): string {
  const info = (() => { try { return readFileSync('/proc/cpuinfo', 'utf8'); } catch { return ''; } })();
  const model = /^model name\s*:\s*(.*)$/m.exec(info)?.[1] ?? cpus()[0]?.model ?? 'unknown CPU';
  return `${model}, ${cpus().length} CPUs`;
}

function pvboxRevision(): string {
  const git = (args: string[]) => spawnSync('git', ['-C', ROOT, ...args], { encoding: 'utf8' });
  const head = git(['rev-parse', '--short', 'HEAD']);
  if (head.error || head.status !== 0) return 'not a git checkout';
  const dirty = git(['status', '--porcelain', '--', 'src', 'bin', 'package.json']).stdout.trim();
  return `commit ${head.stdout.trim()}${dirty ? ', with uncommitted changes under src/, bin/ or package.json' : ''}`;
}

const CLK_TCK = (() => {
  const r = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
  const n = Number(r.stdout?.trim());
  return Number.isInteger(n) && n > 0 ? n : 100;
})();

/** User + system CPU seconds of a process, all its threads (from /proc/PID/stat), or NaN. */
function processCpu(pid: number | undefined): number {
  if (pid === undefined) return NaN;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // Fields 14 and 15 of stat(5) (utime, stime); f[0] is field 3.
    return (Number(f[11]) + Number(f[12])) / CLK_TCK;
  } catch {
    return NaN;
  }
}

function selfCpu(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

// ---------------------------------------------------------------------------------------------
// Packages: Debian's xenstore-utils (installed) and xen-utils-4.17 (unpacked into the temp dir)

const isRoot = process.getuid?.() === 0;
const APT_ENV = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };

function aptInstall(pkgs: string[], why: string): void {
  if (!isRoot) throw new BenchError(`${why}: install ${pkgs.join(' ')} (apt-get install ${pkgs.join(' ')}), or run as root so the bench can`);
  say(`installing ${pkgs.join(' ')} with apt-get (${why})`);
  const apt = (args: string[]) => spawnSync('apt-get', args, { stdio: ['ignore', 2, 2], env: APT_ENV }).status === 0;
  const install = ['install', '-y', '--no-install-recommends', ...pkgs];
  if (apt(install)) return;
  note('apt-get install failed; running apt-get update and trying again');
  if (!apt(['update']) || !apt(install)) throw new BenchError(`could not install ${pkgs.join(' ')} with apt-get (see above)`);
}

const have = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;

function ensureXenstoreUtils(): string {
  if (!have('xenstore-write') || !have('xenstore-read')) aptInstall(['xenstore-utils'], "Debian's xenstore-write/xenstore-read are needed for the per-process figures");
  const v = run('dpkg-query', ['-W', '-f', '${Version}', 'xenstore-utils']);
  return v.ok ? v.stdout.trim() : 'version unknown';
}

interface XenRef {
  dir: string;
  version: string;
  xenstored: string;
  oxenstored: string;
  libDir: string;
  oxenstoredConf: string;
}

/** apt-get download + dpkg-deb -x of XEN_PACKAGES into `dir`; throws BenchError with the reason. */
function unpackXen(dir: string): XenRef {
  const debs = join(dir, 'debs');
  const root = join(dir, 'root');
  mkdirSync(debs, { recursive: true });
  say(`fetching ${XEN_PACKAGES.join(' ')} with 'apt-get download' (unpacked with dpkg-deb -x into ${root}, not installed)`);
  const download = () => run('apt-get', ['download', ...XEN_PACKAGES], { cwd: debs, env: APT_ENV, timeoutMs: 300_000 });
  let r = download();
  if (!r.ok) {
    note(`apt-get download failed (${lines(r.stderr).filter((l) => !l.startsWith('W:')).at(-1) ?? statusText({ code: r.status, signal: r.signal })}); running apt-get update and trying again`);
    if (isRoot) run('apt-get', ['update'], { env: APT_ENV, timeoutMs: 300_000 });
    r = download();
    if (!r.ok) throw new BenchError(`apt-get download ${XEN_PACKAGES.join(' ')} failed: ${lines(r.stderr).filter((l) => !l.startsWith('W:')).join(' / ') || statusText({ code: r.status, signal: r.signal })}`);
  }
  let version = 'version unknown';
  for (const f of readdirSync(debs).filter((f) => f.endsWith('.deb'))) {
    const x = run('dpkg-deb', ['-x', join(debs, f), root]);
    if (!x.ok) throw new BenchError(`dpkg-deb -x ${f} failed: ${x.stderr.trim()}`);
    if (f.startsWith('xen-utils-4.17_')) version = run('dpkg-deb', ['-f', join(debs, f), 'Version']).stdout.trim();
  }
  const ref: XenRef = {
    dir,
    version,
    xenstored: join(root, XEN_BIN, 'xenstored'),
    oxenstored: join(root, XEN_BIN, 'oxenstored'),
    libDir: join(root, XEN_LIB),
    oxenstoredConf: join(root, 'etc', 'xen', 'oxenstored.conf'),
  };
  for (const b of [ref.xenstored, ref.oxenstored]) {
    if (!existsSync(b)) throw new BenchError(`xen-utils-4.17 ${version} has no ${b.slice(root.length)}`);
    const l = run('ldd', [b], { env: { ...process.env, LD_LIBRARY_PATH: ref.libDir } });
    const missing = lines(l.stdout).filter((x) => /not found/.test(x));
    if (missing.length) throw new BenchError(`${b.slice(root.length + 1)} needs libraries not in the unpacked packages: ${missing.join(', ')}`);
  }
  return ref;
}

function buildStub(dir: string): string {
  if (!have('cc')) aptInstall(['gcc', 'libc6-dev'], 'a C compiler builds bench/lib/xen-devices-stub.c, which lets the reference daemons start without Xen');
  const out = join(dir, 'xen-devices-stub.so');
  const r = run('cc', ['-shared', '-fPIC', '-O2', '-Wall', '-o', out, STUB_SOURCE, '-ldl']);
  if (!r.ok) throw new BenchError(`cc failed to build ${STUB_SOURCE}: ${r.stderr.trim()}`);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Daemons

interface DaemonSpec {
  key: string;
  label: string;
  /** Command line for the header. */
  describe: string;
  start(dir: string): { proc: ConsoleProcess; socket: string };
}

/** Waits until `path` accepts a connection. */
async function waitSocket(proc: ConsoleProcess, path: string, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    if (!proc.running) throw new BenchError(`${statusText(proc.exitInfo)} before serving ${path}: ${lines(proc.err + proc.out).slice(-4).join(' / ') || 'no output'}`);
    const ok = await new Promise<boolean>((res) => {
      const s = net.connect({ path });
      s.once('connect', () => { s.destroy(); res(true); });
      s.once('error', () => { s.destroy(); res(false); });
    });
    if (ok) return;
    if (performance.now() > deadline) throw new BenchError(`nothing serves ${path} after ${timeoutMs / 1000} s`);
    await sleep(50);
  }
}

/** The daemon environment: no XENSTORED_PATH from the caller (C xenstored would bind it). */
function cleanEnv(extra: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const env = { ...process.env, ...extra };
  delete env.XENSTORED_PATH;
  return env;
}

function pvboxSpec(): DaemonSpec {
  return {
    key: 'pvbox',
    label: 'pvbox',
    describe: `node bin/pvbox.js xenstored --foreground --socket DIR/socket   (${pvboxRevision()})`,
    start(dir) {
      const socket = join(dir, 'socket');
      return { proc: new ConsoleProcess(process.execPath, [PVBOX, 'xenstored', '--foreground', '--socket', socket], { cwd: ROOT, env: cleanEnv({}) }), socket };
    },
  };
}

/** Files standing in for /proc/xen/xsd_port and /proc/xen/xsd_kva (see xen-devices-stub.c). */
function stubDir(dir: string): string {
  const d = join(dir, 'xen-stub');
  mkdirSync(d, { recursive: true });
  writeFileSync(join(d, 'xsd_port'), '1'); // oxenstored parses the whole file: no newline
  writeFileSync(join(d, 'xsd_kva'), Buffer.alloc(4096));
  return d;
}

function cSpec(ref: XenRef, stub: string): DaemonSpec {
  return {
    key: 'xenstored_c',
    label: 'C xenstored',
    describe: `LD_PRELOAD=xen-devices-stub.so XENSTORED_RUNDIR=DIR xenstored -N   (${ref.xenstored.slice(ref.dir.length + 1)}, ${ref.version})`,
    start(dir) {
      const env = cleanEnv({ LD_LIBRARY_PATH: ref.libDir, LD_PRELOAD: stub, XEN_STUB_DIR: stubDir(dir), XENSTORED_RUNDIR: dir, XENSTORED_ROOTDIR: dir });
      return { proc: new ConsoleProcess(ref.xenstored, ['-N'], { cwd: dir, env }), socket: join(dir, 'socket') };
    },
  };
}

/** oxenstored.conf as Debian ships it, with its files (pid, logs, xsd_*) moved into `dir`. */
function oxenstoredConf(ref: XenRef, dir: string, xenStub: string): string {
  const conf = readFileSync(ref.oxenstoredConf, 'utf8')
    .replace(/^pid-file\s*=.*$/m, `pid-file = ${dir}/oxenstored.pid`)
    .replace(/^xenstored-kva\s*=.*$/m, `xenstored-kva = ${xenStub}/xsd_kva`)
    .replace(/^xenstored-port\s*=.*$/m, `xenstored-port = ${xenStub}/xsd_port`);
  const path = join(dir, 'oxenstored.conf');
  writeFileSync(path, `${conf}\nxenstored-log-file = ${dir}/xenstored.log\naccess-log-file = ${dir}/xenstored-access.log\n`);
  return path;
}

/**
 * oxenstored's socket is fixed at build time (/var/run/xenstored/socket), so it runs in its own
 * mount namespace (unshare -m) with a tmpfs on /run and `dir` bind-mounted on /run/xenstored:
 * the socket it creates there is `dir`/socket for everyone else. The host's /run is not touched.
 */
function oxenstoredCommand(ref: XenRef, dir: string, extraMounts = ''): string[] {
  const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  const script = `mount -t tmpfs pvbox-bench /run && mkdir -p /run/xenstored && mount --bind ${q(dir)} /run/xenstored${extraMounts} && exec ${q(ref.oxenstored)} --no-fork --config-file ${q(join(dir, 'oxenstored.conf'))}`;
  return ['-m', '--propagation', 'private', 'sh', '-c', script];
}

function oxSpec(ref: XenRef, stub: string): DaemonSpec {
  return {
    key: 'oxenstored',
    label: 'oxenstored',
    describe: `unshare -m (DIR on /run/xenstored) LD_PRELOAD=xen-devices-stub.so oxenstored --no-fork --config-file DIR/oxenstored.conf   (Debian's config, files moved to DIR; ${ref.version})`,
    start(dir) {
      const xs = stubDir(dir);
      oxenstoredConf(ref, dir, xs);
      const env = cleanEnv({ LD_LIBRARY_PATH: ref.libDir, LD_PRELOAD: stub, XEN_STUB_DIR: xs });
      return { proc: new ConsoleProcess('unshare', oxenstoredCommand(ref, dir), { cwd: dir, env }), socket: join(dir, 'socket') };
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Can the reference daemons run here as they are? (printed every run)

async function probeReferences(ref: XenRef, tmp: string, wantC: boolean, wantOx: boolean): Promise<{ oxNamespace: string | undefined }> {
  say('Running the reference daemons as Debian ships them, without a Xen hypervisor:');
  say(`  this host: /dev/xen ${existsSync('/dev/xen') ? 'present' : 'absent'}, /proc/xen ${existsSync('/proc/xen') ? 'present' : 'absent'}, /dev/xen/privcmd ${existsSync('/dev/xen/privcmd') ? 'present' : 'absent'}, /dev/xen/evtchn ${existsSync('/dev/xen/evtchn') ? 'present' : 'absent'}`);
  const quote = (s: string) => lines(s).slice(0, 4).map((l) => `      | ${l}`).join('\n');

  if (wantC) {
    const dir = join(tmp, 'probe-c');
    mkdirSync(dir, { recursive: true });
    const env = cleanEnv({ LD_LIBRARY_PATH: ref.libDir, XENSTORED_RUNDIR: dir, XENSTORED_ROOTDIR: dir });
    const a = run(ref.xenstored, ['-N'], { env, timeoutMs: 5000 });
    say(`  C xenstored -N: ${a.error && (a.error as NodeJS.ErrnoException).code === 'ETIMEDOUT' ? 'still running after 5 s (stopped)' : statusText({ code: a.status, signal: a.signal })}`);
    if (a.stderr.trim()) say(quote(a.stderr));
    say('      needs /dev/xen/privcmd (xc_interface_open), /dev/xen/gntdev (xengnttab_open), /dev/xen/evtchn (xenevtchn_open),');
    say('      and /proc/xen/xsd_port + /proc/xen/xsd_kva (Domain-0\'s xenstore event channel and ring page; dom0_init)');
    // -D skips domain_init/dom0_init; see what the first request does.
    const p = new ConsoleProcess(ref.xenstored, ['-N', '-D'], { cwd: dir, env });
    let outcome: string;
    try {
      await waitSocket(p, join(dir, 'socket'), 5000);
      const c = await XsClient.connect(join(dir, 'socket'));
      const reply = await Promise.race([c.request(XS_READ, xsRequest.path('/')), sleep(3000).then(() => undefined)]);
      c.close();
      const exit = await p.waitExit(2000);
      if (exit) outcome = `serves the socket, then ${statusText(exit)} on the first request (XS_READ /)${reply ? '' : ', no reply'}`;
      else outcome = reply ? `answered XS_READ / with ${errorName(reply) ?? 'a reply'} and keeps running` : 'no reply to XS_READ / within 3 s';
    } catch (e) {
      outcome = `failed: ${(e as Error).message}`;
    }
    await p.stop(1000);
    say(`  C xenstored -N -D (--no-domain-init): ${outcome}`);
    if (/SIGSEGV/.test(outcome)) {
      say('      in 4.17 the store (TDB) is only set up when Domain-0 is introduced (introduce_domain -> setup_structure,');
      say('      xenstored_domain.c), which -D skips, so the first access goes through a NULL TDB context');
    }
  }

  let oxNamespace: string | undefined;
  if (wantOx) {
    const ns = run('unshare', ['-m', '--propagation', 'private', 'sh', '-c', 'mount -t tmpfs pvbox-bench /run']);
    if (!ns.ok) {
      oxNamespace = `unshare -m / mount failed (${lines(ns.stderr).at(-1) ?? statusText({ code: ns.status, signal: ns.signal })}): oxenstored's socket path is fixed at /var/run/xenstored/socket, and the bench needs a private mount namespace (CAP_SYS_ADMIN) to give it one of its own`;
      say(`  oxenstored: not run: ${oxNamespace}`);
    } else {
      const dir = join(tmp, 'probe-ox');
      mkdirSync(dir, { recursive: true });
      const xs = stubDir(dir);
      oxenstoredConf(ref, dir, xs);
      const env = cleanEnv({ LD_LIBRARY_PATH: ref.libDir });
      const a = run('unshare', oxenstoredCommand(ref, dir), { env, timeoutMs: 5000 });
      say(`  oxenstored --no-fork: ${statusText({ code: a.status, signal: a.signal })}`);
      if (a.stderr.trim() || a.stdout.trim()) say(quote(`${a.stdout}\n${a.stderr}`));
      if (/setrlimit/.test(a.stderr)) {
        // The same with the fd limit it asks for (nr_open) brought down to our hard limit.
        const hard = run('sh', ['-c', 'ulimit -Hn']).stdout.trim();
        writeFileSync(join(dir, 'nr_open'), `${hard}\n`);
        say(`      (it raises RLIMIT_NOFILE to /proc/sys/fs/nr_open; without CAP_SYS_RESOURCE that is EPERM. With nr_open shown as ${hard}, the hard limit:)`);
        const b = run('unshare', oxenstoredCommand(ref, dir, ` && mount --bind '${join(dir, 'nr_open')}' /proc/sys/fs/nr_open`), { env, timeoutMs: 5000 });
        say(`  oxenstored --no-fork: ${statusText({ code: b.status, signal: b.signal })}`);
        if (b.stderr.trim() || b.stdout.trim()) say(quote(`${b.stdout}\n${b.stderr}`));
      }
      say('      needs /dev/xen/privcmd (Xenctrl.interface_open) and /dev/xen/evtchn (Event.init), even with --no-domain-init;');
      say('      with Domain-0 (the default) also /proc/xen/xsd_port and /proc/xen/xsd_kva');
    }
  }
  say();
  say('So both run here with bench/lib/xen-devices-stub.c preloaded (LD_PRELOAD), the daemons themselves unmodified:');
  say('  the privcmd, gntdev and evtchn handles are dummies (an event channel that never fires, no grant mapping),');
  say('  and /proc/xen/xsd_port, /proc/xen/xsd_kva are files in a temp dir, so Domain-0\'s ring is a page no one writes.');
  say('  oxenstored\'s RLIMIT_NOFILE request is capped at the hard limit. None of this is on a socket request\'s path.');
  return { oxNamespace };
}

// ---------------------------------------------------------------------------------------------
// Measurements

interface Figure {
  /** Completed operations (or events) per second in the measured window. */
  rate: number;
  /** Per-operation latencies in the window, microseconds. */
  latUs: number[];
  /** Daemon CPU seconds per operation (µs). */
  daemonCpuUs: number;
  /** Bench (client) process CPU, % of one core, over the window. */
  clientCpuPct: number;
  /** XS_ERROR replies other than the expected, by name. */
  errors: Map<string, number>;
  /** Transactions only: commits refused with EAGAIN. */
  eagain: number;
  /** Watch only: events for writes the bench did not make, and writes whose event never came. */
  extraEvents: number;
  lostEvents: number;
  ops: number;
}

type OpDone = (r: { at: number; t: number } | { error: string; at: number } | { eagain: true; at: number }) => void;

interface PhaseOptions {
  depth: number;
  warmupMs: number;
  durationMs: number;
  daemonPid: number | undefined;
  clients: XsClient[];
  /** Starts operation `seq` on lane `lane`; calls `done` once. */
  op(lane: number, seq: number, done: OpDone): void;
}

/**
 * Closed loop: `depth` lanes, each starting its next operation when the previous one completes,
 * for warm-up + duration. Operations completing inside the measured window count.
 */
function phase(o: PhaseOptions): Promise<Figure> {
  return new Promise((resolvePhase, rejectPhase) => {
    const start = performance.now();
    const t0 = start + o.warmupMs;
    const t1 = t0 + o.durationMs;
    const fig: Figure = { rate: 0, latUs: [], daemonCpuUs: NaN, clientCpuPct: NaN, errors: new Map(), eagain: 0, extraEvents: 0, lostEvents: 0, ops: 0 };
    let cpu0 = { d: NaN, c: NaN, at: t0 };
    let cpu1 = { d: NaN, c: NaN, at: t1 };
    const t0Timer = setTimeout(() => { cpu0 = { d: processCpu(o.daemonPid), c: selfCpu(), at: performance.now() }; }, Math.max(0, t0 - performance.now()));
    const t1Timer = setTimeout(() => { cpu1 = { d: processCpu(o.daemonPid), c: selfCpu(), at: performance.now() }; }, Math.max(0, t1 - performance.now()));
    let seq = 0;
    let active = o.depth;
    let finished = false;
    const guard = setTimeout(() => fail(new BenchError(`operations still outstanding ${((o.durationMs + o.warmupMs) / 1000 + 20).toFixed(0)} s after the start (daemon stuck?)`)), o.warmupMs + o.durationMs + 20_000);
    const closers = o.clients.map((c) => { c.onClose = (e) => fail(new BenchError(`daemon connection lost: ${e.message}`)); return c; });
    function cleanup(): void {
      clearTimeout(guard);
      clearTimeout(t0Timer);
      clearTimeout(t1Timer);
      for (const c of closers) c.onClose = undefined;
    }
    function fail(e: Error): void {
      if (finished) return;
      finished = true;
      cleanup();
      rejectPhase(e);
    }
    function finish(): void {
      if (finished) return;
      finished = true;
      cleanup();
      const secs = (cpu1.at - cpu0.at) / 1000;
      fig.rate = fig.ops / (o.durationMs / 1000);
      fig.daemonCpuUs = ((cpu1.d - cpu0.d) / fig.ops) * 1e6;
      fig.clientCpuPct = ((cpu1.c - cpu0.c) / secs) * 100;
      resolvePhase(fig);
    }
    function kick(lane: number): void {
      if (finished) return;
      if (performance.now() >= t1) {
        if (--active === 0) {
          // Let the t1 CPU sample happen before finishing.
          setTimeout(finish, Math.max(0, t1 - performance.now()) + 1);
        }
        return;
      }
      const n = seq++;
      let called = false;
      o.op(lane, n, (r) => {
        if (called) return;
        called = true;
        const inWindow = r.at >= t0 && r.at < t1;
        if ('error' in r) {
          fig.errors.set(r.error, (fig.errors.get(r.error) ?? 0) + 1);
        } else if ('eagain' in r) {
          if (inWindow) fig.eagain++;
        } else if (inWindow) {
          fig.ops++;
          fig.latUs.push((r.at - r.t) * 1000);
        }
        kick(lane);
      });
    }
    for (let lane = 0; lane < o.depth; lane++) kick(lane);
  });
}

const VALUE32 = latin1('0123456789abcdef0123456789abcdef');
const DIR_CHILDREN = 16;

/** One request per operation, checked: a reply of the request's own type is success. */
function simpleOp(c: XsClient, type: number, payload: (lane: number, seq: number) => Uint8Array): PhaseOptions['op'] {
  return (lane, seq, done) => {
    const t = c.send(type, payload(lane, seq), 0, (r: XsReply) => {
      if (r.type === type) done({ at: r.at, t });
      else done({ error: errorName(r) ?? `reply type ${r.type}`, at: r.at });
    });
  };
}

/** XS_TRANSACTION_START, XS_WRITE in it (the lane's own existing node), XS_TRANSACTION_END "T". */
function transactionOp(c: XsClient): PhaseOptions['op'] {
  return (lane, seq, done) => {
    const t = c.send(XS_TRANSACTION_START, xsRequest.transactionStart(), 0, (r) => {
      if (r.type !== XS_TRANSACTION_START) return done({ error: `start: ${errorName(r) ?? r.type}`, at: r.at });
      const tx = Number(splitStrings(r.payload).strings[0]);
      c.send(XS_WRITE, xsRequest.write(`/bench/tx/c${lane}`, String(seq)), tx, (w) => {
        if (w.type !== XS_WRITE) return done({ error: `write: ${errorName(w) ?? w.type}`, at: w.at });
        c.send(XS_TRANSACTION_END, xsRequest.transactionEnd(true), tx, (e) => {
          if (e.type === XS_TRANSACTION_END) return done({ at: e.at, t });
          const name = errorName(e);
          if (name === 'EAGAIN') return done({ eagain: true, at: e.at });
          done({ error: `commit: ${name ?? e.type}`, at: e.at });
        });
      });
    });
  };
}

/** Buckets of 100 keys, so that no directory grows large (xenstore directories are small). */
const bucketed = (base: string, seq: number) => `${base}/b${Math.floor(seq / 100)}/k${seq}`;

interface DaemonRound {
  figures: Map<string, Figure>;
  cli: Map<string, { msPerProcess: number; ok: boolean; problem?: string }>;
  /** The same sh loop running /bin/true, just before the tools: ms per process. */
  spawnBaselineMs: number;
  /** Daemon CPU while nothing is asked of it, % of one core (1 s after the fixtures are written). */
  idleCpuPct: number;
  problems: string[];
}

/** The figures, in the order they are measured; `pipelined: false` ones run with 1 in flight only. */
const FIGURES = [
  { id: 'read', label: 'XS_READ', unit: 'ops/s', pipelined: true },
  { id: 'directory', label: `XS_DIRECTORY (${DIR_CHILDREN} children)`, unit: 'ops/s', pipelined: true },
  { id: 'write', label: 'XS_WRITE (new keys)', unit: 'ops/s', pipelined: true },
  { id: 'transaction', label: 'transaction start+write+commit', unit: 'commits/s', pipelined: true },
  { id: 'watch', label: 'watch events delivered', unit: 'events/s', pipelined: true },
  { id: 'connect', label: 'connect + XS_READ + close', unit: 'conns/s', pipelined: false },
] as const;
type FigureId = (typeof FIGURES)[number]['id'];

/** A new connection per operation: connect, one XS_READ, close (what each xenstore-read process does on the socket). */
function connectOp(socket: string, payload: Uint8Array): PhaseOptions['op'] {
  return (_lane, _seq, done) => {
    const t = performance.now();
    XsClient.connect(socket).then(
      (c) => {
        c.send(XS_READ, payload, 0, (r) => {
          c.close();
          if (r.type === XS_READ) done({ at: r.at, t });
          else done({ error: errorName(r) ?? `reply type ${r.type}`, at: r.at });
        });
      },
      (e: NodeJS.ErrnoException) => done({ error: `connect: ${e.code ?? e.message}`, at: performance.now() }),
    );
  };
}

async function measureDaemon(spec: DaemonSpec, o: Options, dir: string, round: number): Promise<DaemonRound> {
  const out: DaemonRound = { figures: new Map(), cli: new Map(), spawnBaselineMs: NaN, idleCpuPct: NaN, problems: [] };
  mkdirSync(dir, { recursive: true });
  const { proc, socket } = spec.start(dir);
  try {
    await waitSocket(proc, socket, 60_000);
    const pid = proc.child.pid;
    const a = await XsClient.connect(socket);
    const b = await XsClient.connect(socket);
    try {
      // Fixtures.
      const setup: Promise<XsReply>[] = [];
      for (let i = 0; i < DIR_CHILDREN; i++) {
        setup.push(a.ok(XS_WRITE, xsRequest.write(`/bench/read/k${i}`, VALUE32)));
        setup.push(a.ok(XS_WRITE, xsRequest.write(`/bench/dir/k${String(i).padStart(2, '0')}`, 'v')));
      }
      for (let lane = 0; lane < o.depth; lane++) setup.push(a.ok(XS_WRITE, xsRequest.write(`/bench/tx/c${lane}`, '0')));
      await Promise.all(setup);
      const dirList = await a.ok(XS_DIRECTORY, xsRequest.path('/bench/dir'));
      if (splitStrings(dirList.payload).strings.length !== DIR_CHILDREN) throw new BenchError(`XS_DIRECTORY /bench/dir gave ${splitStrings(dirList.payload).strings.length} children, expected ${DIR_CHILDREN}`);

      const i0 = { d: processCpu(pid), t: performance.now() };
      await sleep(1000);
      out.idleCpuPct = ((processCpu(pid) - i0.d) / ((performance.now() - i0.t) / 1000)) * 100;

      const readPaths = Array.from({ length: DIR_CHILDREN }, (_, i) => xsRequest.path(`/bench/read/k${i}`));
      const dirPath = xsRequest.path('/bench/dir');
      // A short pass of every figure first, not recorded (JIT warm-up, allocator, first-connection costs), then the measured pass.
      for (const pass of ['warm-up', 'measured'] as const) {
        const measured = pass === 'measured';
        for (const depth of [1, o.depth]) {
          const common = {
            depth, daemonPid: pid, clients: [a, b],
            warmupMs: measured ? o.warmupMs : 0,
            durationMs: measured ? o.durationMs : 200,
          };
          const tag = `r${round}${measured ? 'm' : 'w'}d${depth}`;
          const record = (id: FigureId, f: Figure) => { if (measured) out.figures.set(`${id}_d${depth}`, f); };
          record('read', await phase({ ...common, op: simpleOp(a, XS_READ, (_l, s) => readPaths[s % DIR_CHILDREN]!) }));
          record('directory', await phase({ ...common, op: simpleOp(a, XS_DIRECTORY, () => dirPath) }));
          const base = `/bench/write/${tag}`;
          record('write', await phase({ ...common, op: simpleOp(a, XS_WRITE, (_l, s) => xsRequest.write(bucketed(base, s), VALUE32)) }));
          await a.ok(XS_RM, xsRequest.path('/bench/write'));
          record('transaction', await phase({ ...common, op: transactionOp(a) }));
          record('watch', await watchPhase(a, b, common, `/bench/w/${tag}`));
          await a.ok(XS_RM, xsRequest.path('/bench/w'));
          if (depth === 1) record('connect', await phase({ ...common, op: connectOp(socket, readPaths[0]!) }));
        }
      }
    } finally {
      a.close();
      b.close();
    }
    // Debian's command-line clients, one process per operation; first the same loop with /bin/true,
    // which shows what fork+exec costs on this host at this moment.
    out.spawnBaselineMs = (await cliLoop('/bin/true', o.cliRuns, undefined)).msPerProcess;
    for (const [tool, cmd] of [['xenstore-write', 'xenstore-write /bench/cli/k$i v$i'], ['xenstore-read', 'xenstore-read /bench/cli/k$i']] as const) {
      const r = await cliLoop(cmd, o.cliRuns, socket);
      if (r.ok && tool === 'xenstore-read') {
        const got = lines(r.stdout);
        if (got.length !== o.cliRuns || got[0] !== 'v0' || got.at(-1) !== `v${o.cliRuns - 1}`) {
          r.ok = false;
          r.problem = `xenstore-read printed ${got.length} lines (${got[0]} ... ${got.at(-1)}), expected v0 ... v${o.cliRuns - 1}`;
        }
      }
      out.cli.set(tool, r);
      if (!r.ok) out.problems.push(`${tool}: ${r.problem}`);
    }
    if (!proc.running) out.problems.push(`daemon ${statusText(proc.exitInfo)} during the run`);
  } finally {
    await proc.stop(3000);
  }
  return out;
}

/**
 * One client (`w`) watches `base`; the other (`b`) writes new keys under it. Each lane's
 * operation is one write, complete when both its reply (to b) and its event (to w) have arrived;
 * its latency is write sent -> event read.
 */
async function watchPhase(w: XsClient, b: XsClient, common: Omit<PhaseOptions, 'op'>, base: string): Promise<Figure> {
  const pending = new Map<string, { t: number; replied: boolean; eventAt?: number; done: OpDone }>();
  let extra = 0;
  const token = `bench-${base}`;
  let initial: (() => void) | undefined;
  const gotInitial = new Promise<void>((r) => { initial = r; });
  w.onWatchEvent = (path, tok, at) => {
    if (tok !== token) return;
    if (path === base) { initial?.(); return; } // the event XS_WATCH itself fires
    const p = pending.get(path);
    if (!p || p.eventAt !== undefined) { extra++; return; }
    p.eventAt = at;
    if (p.replied) { pending.delete(path); p.done({ at, t: p.t }); }
  };
  await w.ok(XS_WATCH, xsRequest.watch(base, token));
  await Promise.race([gotInitial, sleep(5000)]);
  try {
    const fig = await phase({
      ...common,
      op(_lane, seq, done) {
        const path = bucketed(base, seq);
        const entry: { t: number; replied: boolean; eventAt?: number; done: OpDone } = { t: 0, replied: false, done };
        pending.set(path, entry);
        entry.t = b.send(XS_WRITE, xsRequest.write(path, VALUE32), 0, (r) => {
          if (r.type !== XS_WRITE) { pending.delete(path); return done({ error: errorName(r) ?? `reply type ${r.type}`, at: r.at }); }
          entry.replied = true;
          if (entry.eventAt !== undefined) { pending.delete(path); done({ at: entry.eventAt, t: entry.t }); }
        });
      },
      // A lane whose event never comes would stall; the guard in phase() reports it.
    });
    fig.extraEvents = extra;
    fig.lostEvents = pending.size;
    return fig;
  } finally {
    w.onWatchEvent = undefined;
    await w.request(XS_UNWATCH, xsRequest.watch(base, token));
  }
}

/** Runs `cmd` (with $i = 0..n-1) n times from one sh loop; ms per invocation. */
async function cliLoop(cmd: string, n: number, socket: string | undefined) {
  const script = `i=0; while [ $i -lt ${n} ]; do ${cmd} || exit 1; i=$((i+1)); done`;
  const env = { ...process.env, ...(socket ? { XENSTORED_PATH: socket } : {}) };
  const t0 = performance.now();
  const child = spawn('sh', ['-c', script], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => { stdout += s; });
  child.stderr.setEncoding('utf8').on('data', (s: string) => { stderr += s; });
  const exit = await new Promise<ExitInfo>((res) => child.on('close', (code, signal) => res({ code, signal })));
  const ms = performance.now() - t0;
  const ok = exit.code === 0;
  return {
    ok, stdout,
    msPerProcess: ms / n,
    ...(ok ? {} : { problem: `${statusText(exit)}: ${lines(stderr).at(-1) ?? ''}` }),
  } as { ok: boolean; stdout: string; msPerProcess: number; problem?: string };
}

// ---------------------------------------------------------------------------------------------
// Main

interface Options {
  rounds: number;
  durationMs: number;
  warmupMs: number;
  depth: number;
  cliRuns: number;
  c: boolean;
  ox: boolean;
  keepTemp: boolean;
}

function options(argv: string[]): Options {
  const { values, positionals } = parseArgs({
    args: argv, allowPositionals: true, strict: true,
    options: {
      rounds: { type: 'string' }, duration: { type: 'string' }, depth: { type: 'string' }, 'cli-runs': { type: 'string' },
      'no-c': { type: 'boolean' }, 'no-oxenstored': { type: 'boolean' }, 'keep-temp': { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) { process.stdout.write(USAGE); process.exit(0); }
  if (positionals.length) throw new BenchError(`unexpected argument '${positionals[0]}' (see --help)`);
  const num = (v: string | undefined, dflt: number, what: string, integer: boolean) => {
    if (v === undefined) return dflt;
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0 || (integer && !Number.isInteger(n))) throw new BenchError(`${what} '${v}': expected a positive ${integer ? 'whole ' : ''}number`);
    return n;
  };
  return {
    rounds: num(values.rounds, 3, '--rounds', true),
    durationMs: num(values.duration, 1.5, '--duration', false) * 1000,
    warmupMs: 300,
    depth: num(values.depth, 32, '--depth', true),
    cliRuns: num(values['cli-runs'], 200, '--cli-runs', true),
    c: !values['no-c'],
    ox: !values['no-oxenstored'],
    keepTemp: !!values['keep-temp'],
  };
}

interface Series { spec: DaemonSpec; rounds: DaemonRound[] }

function summarise(series: Series[], o: Options, results: string[]): void {
  const cols = series.map((s) => s.spec.label);
  const get = (s: Series, k: string) => s.rounds.map((r) => r.figures.get(k)).filter((f): f is Figure => !!f);
  const medOf = (xs: number[]) => (xs.length ? median(xs) : NaN);
  const range = (xs: number[], fmt: (x: number) => string) => (xs.length > 1 ? ` [${fmt(Math.min(...xs))}–${fmt(Math.max(...xs))}]` : '');
  const result = (name: string, value: number, digits: number, unit: string) => {
    if (Number.isFinite(value)) results.push(`RESULT ${name} ${value.toFixed(digits)} ${unit}`);
  };
  const figuresAt = (depth: number) => FIGURES.filter((f) => depth === 1 || f.pipelined);

  say(`Median over ${o.rounds} round${o.rounds === 1 ? '' : 's'} [min–max over rounds]; every figure measured for ${o.durationMs / 1000} s per daemon and round.`);
  const rows: string[][] = [['figure', ...cols]];
  for (const depth of [1, o.depth]) {
    rows.push([depth === 1
      ? '— 1 request in flight (latency-bound: request, reply, next request); in brackets the median µs per operation'
      : `— ${depth} requests pipelined on one connection (throughput)`]);
    for (const f of figuresAt(depth)) {
      const k = `${f.id}_d${depth}`;
      const showLat = depth === 1 && f.id !== 'watch';
      rows.push([`${f.label}, ${f.unit}`, ...series.map((s) => {
        const figs = get(s, k);
        if (!figs.length) return '—';
        const rates = figs.map((x) => x.rate);
        const lat = showLat ? ` (${f1(medOf(figs.map((x) => median(x.latUs))))} µs)` : '';
        return `${grouped(medOf(rates))}${lat}${range(rates, grouped)}`;
      })]);
      for (const s of series) {
        const figs = get(s, k);
        if (!figs.length) continue;
        result(`${s.spec.key}_${f.id}_d${depth}`, medOf(figs.map((x) => x.rate)), 0, f.unit);
        if (showLat) result(`${s.spec.key}_${f.id}_d1_latency_median`, medOf(figs.map((x) => median(x.latUs))), 1, 'us');
      }
      if (f.id === 'watch') {
        for (const [q, name] of [[0.5, 'median'], [0.99, 'p99']] as const) {
          rows.push([`  write → event latency, ${name}, µs`, ...series.map((s) => {
            const figs = get(s, k);
            if (!figs.length) return '—';
            const v = figs.map((x) => quantile(x.latUs, q));
            return `${f1(medOf(v))}${range(v, f1)}`;
          })]);
          for (const s of series) {
            const figs = get(s, k);
            if (figs.length) result(`${s.spec.key}_watch_d${depth}_latency_${name}`, medOf(figs.map((x) => quantile(x.latUs, q))), 1, 'us');
          }
        }
      }
    }
  }
  rows.push([`— Debian's xenstore-write / xenstore-read: one process per operation, ${o.cliRuns} in a row from a sh loop; CLIENT SPAWN COST INCLUDED`]);
  for (const tool of ['xenstore-write', 'xenstore-read']) {
    rows.push([`${tool} process, ms each`, ...series.map((s) => {
      const v = s.rounds.map((r) => r.cli.get(tool)).filter((x) => x?.ok).map((x) => x!.msPerProcess);
      return v.length ? `${f2(medOf(v))}${range(v, f2)}` : '—';
    })]);
    for (const s of series) {
      const v = s.rounds.map((r) => r.cli.get(tool)).filter((x) => x?.ok).map((x) => x!.msPerProcess);
      if (v.length) result(`${s.spec.key}_cli_${tool.replace('xenstore-', '')}_ms_per_process`, medOf(v), 2, 'ms');
    }
  }
  rows.push(['  /bin/true in the same loop just before (fork+exec alone), ms', ...series.map((s) => {
    const v = s.rounds.map((r) => r.spawnBaselineMs).filter(Number.isFinite);
    return v.length ? `${f2(medOf(v))}${range(v, f2)}` : '—';
  })]);
  result('host_spawn_true_ms_per_process', medOf(series.flatMap((s) => s.rounds.map((r) => r.spawnBaselineMs)).filter(Number.isFinite)), 2, 'ms');
  say(table(rows));

  say();
  say("Daemon CPU per operation (µs; the daemon process, all threads, from /proc/PID/stat in 10 ms ticks) and the bench client's");
  say('own CPU (% of one core) over the same window. A client near 100% would mean the figure is bounded by this TypeScript client.');
  const crows: string[][] = [['figure', ...series.flatMap((s) => [`${s.spec.label} µs/op`, 'client %'])]];
  crows.push(['daemon idle, % of a core (1 s, nothing asked)', ...series.flatMap((s) => [f1(medOf(s.rounds.map((r) => r.idleCpuPct).filter(Number.isFinite))), ''])]);
  for (const s of series) result(`${s.spec.key}_idle_cpu`, medOf(s.rounds.map((r) => r.idleCpuPct).filter(Number.isFinite)), 1, '%');
  for (const depth of [1, o.depth]) {
    for (const f of figuresAt(depth)) {
      const k = `${f.id}_d${depth}`;
      crows.push([`${f.label}, ${depth} in flight`, ...series.flatMap((s) => {
        const figs = get(s, k);
        return figs.length ? [f1(medOf(figs.map((x) => x.daemonCpuUs))), f1(medOf(figs.map((x) => x.clientCpuPct)))] : ['—', '—'];
      })]);
      for (const s of series) {
        const figs = get(s, k);
        if (figs.length) result(`${s.spec.key}_${f.id}_d${depth}_daemon_cpu`, medOf(figs.map((x) => x.daemonCpuUs)), 1, 'us/op');
      }
    }
  }
  say(table(crows));

  // Anything odd.
  for (const s of series) {
    for (const [i, r] of s.rounds.entries()) {
      for (const [k, fig] of r.figures) {
        const bits: string[] = [];
        for (const [e, n] of fig.errors) bits.push(`${n}× ${e}`);
        if (fig.eagain) bits.push(`${fig.eagain} commits refused with EAGAIN (not counted)`);
        if (fig.extraEvents) bits.push(`${fig.extraEvents} unexpected watch events`);
        if (fig.lostEvents) bits.push(`${fig.lostEvents} writes without their watch event`);
        if (bits.length) say(`note: ${s.spec.label}, round ${i + 1}, ${k}: ${bits.join(', ')}`);
      }
      for (const p of r.problems) say(`note: ${s.spec.label}, round ${i + 1}: ${p}`);
    }
  }
}

async function main(): Promise<number> {
  const o = options(process.argv.slice(2));
  installHandlers();
  say('bench/xenstore — XenStore operations through the xenstored Unix socket: pvbox, with Debian\'s C xenstored and oxenstored as references in the same run');
  say(`host: Linux ${release()}, ${cpuFacts()}, load average ${loadText()}`);
  const busy = loadavg()[0]!;
  if (busy > 0.5) say(`note: load average ${busy.toFixed(2)} before starting: other work is running on this host, so figures will be lower than on an idle machine`);
  say(`node ${process.version}; ${o.rounds} round${o.rounds === 1 ? '' : 's'}, ${o.durationMs / 1000} s per figure after a ${o.warmupMs / 1000} s warm-up; pipelined depth ${o.depth}; ${o.cliRuns} client processes per tool`);

  const tmp = mkdtempSync(join(tmpdir(), 'pvbox-bench-xenstore-'));
  if (!o.keepTemp) process.on('exit', () => { try { rmSync(tmp, { recursive: true, force: true }); } catch { /* best effort */ } });
  say(`temporary directory: ${tmp}${o.keepTemp ? ' (kept)' : ' (removed at the end)'}`);
  say();

  const utils = ensureXenstoreUtils();
  say(`client tools: Debian xenstore-utils ${utils} (xenstore-write, xenstore-read; libxenstore)`);

  const specs: DaemonSpec[] = [pvboxSpec()];
  const unavailable: string[] = [];
  if (o.c || o.ox) {
    let ref: XenRef | undefined;
    try {
      ref = unpackXen(join(tmp, 'xen'));
      say(`reference: Debian xen-utils-4.17 ${ref.version}`);
      say();
    } catch (e) {
      if (!(e instanceof BenchError)) throw e;
      const why = `Debian's xenstored / oxenstored not available: ${e.message}`;
      say(why);
      unavailable.push(why);
    }
    if (ref) {
      const { oxNamespace } = await probeReferences(ref, tmp, o.c, o.ox);
      let stub: string | undefined;
      try {
        stub = buildStub(tmp);
      } catch (e) {
        if (!(e instanceof BenchError)) throw e;
        const why = `reference daemons not measured: ${e.message}`;
        say(why);
        unavailable.push(why);
      }
      if (stub) {
        if (o.c) specs.push(cSpec(ref, stub));
        if (o.ox) {
          if (oxNamespace) unavailable.push(`oxenstored not measured: ${oxNamespace}`);
          else specs.push(oxSpec(ref, stub));
        }
      }
    }
    say();
  }
  say('daemons (each started afresh per round, its own socket in the temp dir; every socket client is Domain-0):');
  for (const s of specs) say(`  ${s.label.padEnd(12)} ${s.describe}`);
  say(`client: bench/lib/xs-client.ts, one process; fixtures /bench/read/k0..15 (32-byte values), /bench/dir (${DIR_CHILDREN} children), /bench/tx/c<lane>;`);
  say('  writes create new keys /bench/write/<run>/b<n/100>/k<n>; the watch figure: one connection watches /bench/w/<run>, the other');
  say('  writes new keys under it, and each operation ends when both the write\'s reply and its event have arrived.');
  say();

  const series: Series[] = specs.map((spec) => ({ spec, rounds: [] }));
  let failures = 0;
  for (let round = 0; round < o.rounds; round++) {
    // Rotate the order each round, so that a change in the host's load does not always hit the same daemon.
    const order = series.map((_, i) => series[(i + round) % series.length]!);
    for (const s of order) {
      const dir = join(tmp, `${s.spec.key}-${round + 1}`);
      const t = performance.now();
      try {
        const r = await measureDaemon(s.spec, o, dir, round + 1);
        s.rounds.push(r);
        const fig = (k: string) => r.figures.get(k);
        say(`  [round ${round + 1}/${o.rounds}] ${s.spec.label.padEnd(12)} read ${grouped(fig('read_d1')!.rate)} / ${grouped(fig(`read_d${o.depth}`)!.rate)}, write ${grouped(fig('write_d1')!.rate)} / ${grouped(fig(`write_d${o.depth}`)!.rate)}, watch ${grouped(fig('watch_d1')!.rate)} / ${grouped(fig(`watch_d${o.depth}`)!.rate)} per s (1 / ${o.depth} in flight); ${((performance.now() - t) / 1000).toFixed(0)} s; load ${loadText()}`);
        if (r.problems.length || [...r.figures.values()].some((f) => f.errors.size || f.lostEvents)) failures++;
      } catch (e) {
        if (!(e instanceof BenchError)) throw e;
        failures++;
        say(`  [round ${round + 1}/${o.rounds}] ${s.spec.label.padEnd(12)} FAILED: ${e.message}`);
      }
    }
  }

  say();
  const results: string[] = [];
  summarise(series.filter((s) => s.rounds.length > 0), o, results);
  for (const u of unavailable) say(u);
  say();
  say(`load average at the end: ${loadText()}`);
  if (failures) say(`${failures} daemon run${failures === 1 ? '' : 's'} failed or had problems (see above)`);
  say();
  for (const r of results) say(r);
  return failures ? 1 : 0;
}

await runBench('bench/xenstore', USAGE, main);
