// bench/net: guest↔host TCP throughput (iperf3) and ping latency of a pvbox guest on a bridge, next to the same iperf3 between two network namespaces joined by a veth pair, and QEMU with virtio-net on the same kernel, in one run.
//
//   node --import tsx bench/net.ts [--seconds S] [--pings N] [--qemu-accel tcg|kvm] [--no-qemu] [--no-pvbox] [--no-veth]
//
// Prints a table and one `RESULT <name> <value> <unit>` line per figure. See bench/README.md.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release, tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { gzipSync } from 'node:zlib';
import { ConsoleProcess, installHandlers } from './lib/console-process.js';
import { BenchError, runBench } from './lib/run-bench.js';
import { statusText, table } from './lib/report.js';
import { CpioWriter } from '../src/images/cpio.js';
import { cacheDir, ensureDefaultImage } from '../src/images/debian.js';
import { ensureHostCommands } from '../src/images/host-packages.js';

const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));
const PVBOX = join(ROOT, 'bin', 'pvbox.js');
const QEMU = 'qemu-system-x86_64';
const MEMORY_MIB = 512;
/** Addresses: the bridge (host side) and the guest in the guest namespace; the two ends of the veth pair. */
const BRIDGE_IP = '10.198.0.1', GUEST_IP = '10.198.0.2';
const VETH_A_IP = '10.197.0.1', VETH_B_IP = '10.197.0.2';
/** Modules QEMU's guest needs for virtio-net (Debian builds them as modules), in load order. */
const VIRTIO_MODULES = ['virtio', 'virtio_ring', 'virtio_pci_legacy_dev', 'virtio_pci_modern_dev', 'virtio_pci', 'failover', 'net_failover', 'virtio_net'];

const USAGE = `usage: bench/net [options]

Measures TCP throughput both ways (iperf3, one stream) and ping round trips between the
host and a guest on a bridge: a pvbox guest (xen-netfront, TAP device), two network
namespaces joined by a veth pair (the ceiling), and QEMU with virtio-net on the same
kernel and initramfs. Everything runs in network namespaces the bench creates. Needs root.

options:
  --seconds S           length of each iperf3 run (default 10)
  --pings N             pings per latency figure (default 20)
  --qemu-accel MODE     tcg (default on PVM hosts and without /dev/kvm) or kvm
  --no-qemu, --no-pvbox, --no-veth   skip that system
  -h, --help            this text
`;

const say = (s = '') => process.stdout.write(`${s}\n`);
const note = (s: string) => process.stderr.write(`bench/net: ${s}\n`);
const pid = process.pid;
const NS_GUEST = `pvbox-bnet-g${pid}`, NS_A = `pvbox-bnet-a${pid}`, NS_B = `pvbox-bnet-b${pid}`;

function sh(cmd: string, args: string[], input?: string): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', input, maxBuffer: 64 << 20 });
  if (r.error || r.status !== 0) throw new BenchError(`${cmd} ${args.join(' ')}: ${(r.stderr || r.error?.message || `exit ${r.status}`).trim().split('\n')[0]}`);
  return r.stdout;
}
const inNs = (ns: string, cmd: string, args: string[]) => sh('ip', ['netns', 'exec', ns, cmd, ...args]);

// ---------------------------------------------------------------------------------------------
// Host facts (as bench/boot prints them)

function kvmFacts(): { lines: string[]; pvm: boolean; devKvm: boolean } {
  const has = (m: string) => existsSync(`/sys/module/${m}`);
  const devKvm = existsSync('/dev/kvm'), pvm = has('kvm_pvm');
  const yn = (b: boolean) => (b ? 'loaded' : 'absent');
  const lines = [`KVM modules (/sys/module): kvm_intel ${yn(has('kvm_intel'))}, kvm_amd ${yn(has('kvm_amd'))}, kvm_pvm ${yn(pvm)}; /dev/kvm ${devKvm ? 'present' : 'absent'}`];
  if (!devKvm) lines.push('  => no KVM on this host');
  else if (pvm) lines.push('  => /dev/kvm is the PVM backend (kvm_pvm): guests run in ring 3; QEMU runs with TCG (no vhost-net)');
  else if (has('kvm_intel')) lines.push('  => /dev/kvm is hardware KVM (Intel VMX)');
  else if (has('kvm_amd')) lines.push('  => /dev/kvm is hardware KVM (AMD SVM)');
  return { lines, pvm, devKvm };
}

function pvboxRevision(): string {
  const git = (args: string[]) => spawnSync('git', ['-C', ROOT, ...args], { encoding: 'utf8' });
  const head = git(['rev-parse', '--short', 'HEAD']);
  if (head.error || head.status !== 0) return 'not a git checkout';
  const dirty = git(['status', '--porcelain', '--', 'src', 'bin']).stdout.trim();
  return `commit ${head.stdout.trim()}${dirty ? ', with uncommitted changes under src/ or bin/' : ''}`;
}

// ---------------------------------------------------------------------------------------------
// The guest's initramfs: the default one, then a second archive with iperf3 (the host's Debian binary and the libraries it links) and QEMU's virtio-net modules

/** Shared libraries `bin` loads, from ldd: [path as the loader names it, real file]. */
function libraries(bin: string): string[] {
  const out = sh('ldd', [bin]);
  const paths: string[] = [];
  for (const line of out.split('\n')) {
    const m = /=>\s+(\/\S+)/.exec(line) ?? /^\s*(\/\S+)\s+\(/.exec(line);
    if (m) paths.push(m[1]!);
  }
  return paths;
}

function virtioModules(kernel: string, scratch: string): Map<string, Buffer> {
  const version = /vmlinuz-(.+)$/.exec(basename(kernel))?.[1];
  const debs = join(cacheDir(), 'debs');
  const deb = version && existsSync(debs) ? readdirSync(debs).find((f) => f.startsWith(`linux-image-${version}_`) && f.endsWith('.deb')) : undefined;
  if (!deb) throw new BenchError(`no linux-image .deb for ${basename(kernel)} in ${debs} (the image cache builds it); pass --no-qemu`);
  const out = join(scratch, 'modules');
  sh('mkdir', ['-p', out]);
  const tar = spawnSync('sh', ['-c', 'dpkg-deb --fsys-tarfile "$1" | tar -x -C "$2" --wildcards "*/drivers/virtio/*.ko" "*/drivers/net/virtio_net.ko" "*/drivers/net/net_failover.ko" "*/net/core/failover.ko"', 'sh', join(debs, deb), out], { encoding: 'utf8' });
  if (tar.status !== 0) throw new BenchError(`cannot extract the virtio modules from ${deb}: ${tar.stderr.trim().split('\n')[0]}`);
  const found = new Map<string, Buffer>();
  const walk = (d: string) => { for (const e of readdirSync(d, { withFileTypes: true })) e.isDirectory() ? walk(join(d, e.name)) : found.set(e.name.replace(/\.ko$/, ''), readFileSync(join(d, e.name))); };
  walk(out);
  return found;
}

function benchInitrd(defaultInitrd: string, kernel: string, scratch: string, qemu: boolean): string {
  const cpio = new CpioWriter();
  const iperf = sh('sh', ['-c', 'command -v iperf3']).trim();
  cpio.addFile('bin/iperf3', readFileSync(iperf), 0o755);
  for (const lib of libraries(iperf)) if (!cpio.has(lib.slice(1))) cpio.addFile(lib.slice(1), readFileSync(lib), 0o755);
  if (qemu) {
    const mods = virtioModules(kernel, scratch);
    for (const name of VIRTIO_MODULES) {
      const m = mods.get(name);
      if (m) cpio.addFile(`bench/${name}.ko`, m);
    }
  }
  const path = join(scratch, 'bench-initrd.img');
  // Linux unpacks concatenated (separately compressed) archives one after the other (init/initramfs.c unpack_to_rootfs).
  writeFileSync(path, Buffer.concat([readFileSync(defaultInitrd), gzipSync(cpio.finish())]));
  return path;
}

// ---------------------------------------------------------------------------------------------
// Measurements, all from inside a namespace

interface Figures { hostToGuest?: number; guestToHost?: number; rttMs?: number; problem?: string }

/** One iperf3 client run in `ns` against `server`; received Mbit/s. `reverse`: the server sends. */
function iperf(ns: string, server: string, seconds: number, reverse: boolean): number {
  for (let attempt = 1; ; attempt++) {
    try { return iperfOnce(ns, server, seconds, reverse); } catch (e) {
      // The server takes a moment after one test before it accepts the next.
      if (attempt === 3 || !/Connection refused|server is busy/.test((e as Error).message)) throw e;
      spawnSync('sleep', ['2']);
    }
  }
}

function iperfOnce(ns: string, server: string, seconds: number, reverse: boolean): number {
  const r = spawnSync('ip', ['netns', 'exec', ns, 'iperf3', '-c', server, '-t', String(seconds), '-J', ...(reverse ? ['-R'] : [])], { encoding: 'utf8', timeout: (seconds + 60) * 1000, maxBuffer: 64 << 20 });
  let j: { end?: { sum_received?: { bits_per_second?: number } }; error?: string };
  try { j = JSON.parse(r.stdout); } catch { throw new BenchError(`iperf3 -c ${server}${reverse ? ' -R' : ''}: ${(r.stderr || r.error?.message || 'no output').trim().split('\n')[0]}`); }
  const bps = j.end?.sum_received?.bits_per_second;
  if (j.error || bps === undefined) throw new BenchError(`iperf3 -c ${server}${reverse ? ' -R' : ''}: ${j.error ?? 'no result'}`);
  return bps / 1e6;
}

/** Average ping round trip from `ns` to `to`, ms. */
function pingAvg(ns: string, to: string, count: number): number {
  const r = spawnSync('ip', ['netns', 'exec', ns, 'ping', '-c', String(count), '-i', '0.2', '-q', '-W', '5', to], { encoding: 'utf8', timeout: count * 10_000 });
  const m = /= [\d.]+\/([\d.]+)\//.exec(r.stdout);
  if (!m) throw new BenchError(`ping ${to}: ${(r.stdout + r.stderr).trim().split('\n').pop()}`);
  return Number(m[1]);
}

function setUpGuestNamespace(): void {
  sh('ip', ['netns', 'add', NS_GUEST]);
  inNs(NS_GUEST, 'ip', ['link', 'set', 'lo', 'up']);
  inNs(NS_GUEST, 'ip', ['link', 'add', 'br0', 'type', 'bridge']);
  inNs(NS_GUEST, 'ip', ['addr', 'add', `${BRIDGE_IP}/24`, 'dev', 'br0']);
  inNs(NS_GUEST, 'ip', ['link', 'set', 'br0', 'up']);
}

function measureVeth(o: Options): Figures {
  sh('ip', ['netns', 'add', NS_A]);
  sh('ip', ['netns', 'add', NS_B]);
  sh('ip', ['link', 'add', 'bnet-a', 'netns', NS_A, 'type', 'veth', 'peer', 'name', 'bnet-b', 'netns', NS_B]);
  for (const [ns, dev, ip] of [[NS_A, 'bnet-a', VETH_A_IP], [NS_B, 'bnet-b', VETH_B_IP]] as const) {
    inNs(ns, 'ip', ['link', 'set', 'lo', 'up']);
    inNs(ns, 'ip', ['addr', 'add', `${ip}/24`, 'dev', dev]);
    inNs(ns, 'ip', ['link', 'set', dev, 'up']);
  }
  const server = new ConsoleProcess('ip', ['netns', 'exec', NS_B, 'iperf3', '-s', '-B', VETH_B_IP]);
  try {
    sh('sleep', ['0.5']);
    return { hostToGuest: iperf(NS_A, VETH_B_IP, o.seconds, false), guestToHost: iperf(NS_A, VETH_B_IP, o.seconds, true), rttMs: pingAvg(NS_A, VETH_B_IP, o.pings) };
  } finally { server.killNow(); }
}

/** A guest's console: run `cmd`, wait for its end marker; its output. */
async function guestSh(g: ConsoleProcess, cmd: string, timeoutMs = 60_000): Promise<string> {
  const tag = `B${Math.random().toString(36).slice(2, 9)}`;
  const from = g.out.length;
  g.type(`echo ${tag}-BEGIN; ${cmd}; echo ${tag}-END $?\n`);
  const b = await g.waitFor(new RegExp(`${tag}-BEGIN\\r?\\n`), timeoutMs, from);
  const e = b && await g.waitFor(new RegExp(`${tag}-END (\\d+)`), timeoutMs, b.end);
  if (!b || !e) throw new BenchError(`guest command '${cmd}' did not finish\n${g.tail()}`);
  return g.out.slice(b.end, e.match.index).replace(/\r/g, '');
}

/** Boot `command args` in the guest namespace, configure `iface`, run iperf3 -s in the guest, measure from the bridge side. */
async function measureGuest(label: string, command: string, args: string[], setup: string[], o: Options, runDir: string): Promise<Figures & { stats?: string; exitText?: string }> {
  const g = new ConsoleProcess('ip', ['netns', 'exec', NS_GUEST, command, ...args], { env: { ...process.env, PVBOX_RUNDIR: runDir } });
  try {
    if (!await g.waitFor(/PVBOX-READY /, 600_000)) throw new BenchError(`${label}: the guest did not boot\n${g.tail()}`);
    await g.waitFor(/# /, 30_000);
    await guestSh(g, 'dmesg -n 1');
    for (const c of setup) await guestSh(g, c, 120_000);
    await guestSh(g, `ip addr add ${GUEST_IP}/24 dev eth0; ip link set eth0 up; iperf3 -s -D -B ${GUEST_IP}; sleep 1`);
    const rttMs = pingAvg(NS_GUEST, GUEST_IP, o.pings);
    const hostToGuest = iperf(NS_GUEST, GUEST_IP, o.seconds, false);
    const guestToHost = iperf(NS_GUEST, GUEST_IP, o.seconds, true);
    g.type('poweroff -f\n');
    const exit = await g.waitExit(120_000);
    const stats = /\d+ exits in [\s\S]*/.exec(g.err)?.[0];
    return { hostToGuest, guestToHost, rttMs, stats, exitText: statusText(exit) };
  } catch (e) {
    return { problem: (e as Error).message };
  } finally { g.killNow(); }
}

// ---------------------------------------------------------------------------------------------

interface Options { seconds: number; pings: number; accel: 'tcg' | 'kvm' | undefined; qemu: boolean; pvbox: boolean; veth: boolean }

function options(argv: string[]): Options | undefined {
  const { values } = parseArgs({
    args: argv, strict: true, options: {
      seconds: { type: 'string' }, pings: { type: 'string' }, 'qemu-accel': { type: 'string' },
      'no-qemu': { type: 'boolean' }, 'no-pvbox': { type: 'boolean' }, 'no-veth': { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) return undefined;
  const int = (v: string | undefined, name: string, dflt: number) => {
    if (v === undefined) return dflt;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1 || n > 3600) throw new BenchError(`--${name} '${v}': expected a whole number from 1 to 3600`);
    return n;
  };
  const accel = values['qemu-accel'];
  if (accel !== undefined && accel !== 'tcg' && accel !== 'kvm') throw new BenchError(`--qemu-accel '${accel}': expected tcg or kvm`);
  return { seconds: int(values.seconds, 'seconds', 10), pings: int(values.pings, 'pings', 20), accel, qemu: !values['no-qemu'], pvbox: !values['no-pvbox'], veth: !values['no-veth'] };
}

async function main(): Promise<number> {
  const o = options(process.argv.slice(2));
  if (!o) { say(USAGE); return 0; }
  if (process.getuid?.() !== 0) throw new BenchError('needs root (network namespaces, TAP devices)');
  installHandlers();
  try {
    ensureHostCommands({ ip: 'iproute2', iperf3: 'iperf3', ping: 'iputils-ping', ...(o.qemu ? { [QEMU]: 'qemu-system-x86' } : {}) }, 'bench/net', note);
  } catch (e) { throw new BenchError((e as Error).message); }
  const kvm = kvmFacts();
  const accel = o.accel ?? (kvm.pvm || !kvm.devKvm ? 'tcg' : 'kvm');
  const [l0] = loadavg();
  say('bench/net: TCP throughput (iperf3, 1 stream) and ping between the host side of a bridge and a guest');
  say(`host: Linux ${release()}, ${cpus()[0]?.model ?? 'unknown CPU'}, ${cpus().length} CPUs; load average ${l0!.toFixed(2)} at start`);
  for (const l of kvm.lines) say(l);
  say(`pvbox: ${pvboxRevision()}`);
  say(`iperf3: ${sh('iperf3', ['--version']).split('\n')[0]!.trim()}, ${o.seconds} s per direction; ${o.pings} pings`);

  const scratch = mkdtempSync(join(tmpdir(), 'pvbox-bnet-'));
  const rows: string[][] = [['', 'host→guest Mbit/s', 'guest→host Mbit/s', 'ping avg ms']];
  const results: string[] = [];
  const problems: string[] = [];
  const record = (key: string, label: string, f: Figures) => {
    if (f.problem) { problems.push(`${label}: ${f.problem}`); rows.push([label, 'failed', 'failed', '—']); return; }
    rows.push([label, f.hostToGuest!.toFixed(1), f.guestToHost!.toFixed(1), f.rttMs!.toFixed(3)]);
    results.push(`RESULT ${key}_host_to_guest ${f.hostToGuest!.toFixed(1)} Mbit/s`, `RESULT ${key}_guest_to_host ${f.guestToHost!.toFixed(1)} Mbit/s`, `RESULT ${key}_ping_avg ${f.rttMs!.toFixed(3)} ms`);
  };
  let veth: Figures | undefined, pv: Figures | undefined;
  try {
    if (o.veth) {
      say('\nveth pair between two namespaces ...');
      try { veth = measureVeth(o); } catch (e) { veth = { problem: (e as Error).message }; }
      record('veth', 'veth pair (namespaces)', veth);
    }
    if (o.pvbox || o.qemu) {
      const img = await ensureDefaultImage();
      const initrd = benchInitrd(img.initrd, img.kernel, scratch, o.qemu);
      setUpGuestNamespace();
      if (o.pvbox) {
        say('pvbox guest (xen-netfront → netback → TAP → bridge) ...');
        const r = await measureGuest('pvbox', process.execPath, [PVBOX, 'run', '--kernel', img.kernel, '--ramdisk', initrd, '--memory', String(MEMORY_MIB), '--stats', '--vif', 'bridge=br0'], [], o, scratch);
        pv = r;
        record('pvbox', 'pvbox (netfront)', r);
        if (r.stats) say(`  pvbox --stats: ${r.stats.split('\n')[0]} (whole session, boot included)`);
      }
      if (o.qemu) {
        say(`QEMU guest (${accel}, virtio-net, TAP → bridge) ...`);
        inNs(NS_GUEST, 'ip', ['tuntap', 'add', 'dev', 'bnet-qtap', 'mode', 'tap']);
        inNs(NS_GUEST, 'ip', ['link', 'set', 'bnet-qtap', 'master', 'br0', 'up']);
        const qemuArgs = ['-accel', accel, '-m', String(MEMORY_MIB), '-smp', '1', '-nographic', '-no-reboot', '-kernel', img.kernel, '-initrd', initrd, '-append', 'console=ttyS0 panic=-1',
          '-netdev', `tap,id=n0,ifname=bnet-qtap,script=no,downscript=no${accel === 'kvm' ? ',vhost=on' : ''}`, '-device', 'virtio-net-pci,netdev=n0'];
        const load = `for p in 1 2 3; do for m in ${VIRTIO_MODULES.join(' ')}; do insmod /bench/$m.ko 2>/dev/null; done; done; [ -e /sys/class/net/eth0 ]`;
        const r = await measureGuest('QEMU', QEMU, qemuArgs, [load], o, scratch);
        record(`qemu_${accel}`, `QEMU ${accel} (virtio-net${accel === 'kvm' ? ', vhost' : ''})`, r);
      }
    }
  } finally {
    for (const ns of [NS_GUEST, NS_A, NS_B]) spawnSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
    rmSync(scratch, { recursive: true, force: true });
  }
  say('');
  say(table(rows));
  if (veth?.hostToGuest && pv?.hostToGuest && pv.guestToHost && veth.guestToHost) {
    const a = (100 * pv.hostToGuest) / veth.hostToGuest, b = (100 * pv.guestToHost) / veth.guestToHost;
    say(`\npvbox / veth: host→guest ${a.toFixed(1)}%, guest→host ${b.toFixed(1)}% (the issue's aim: 50%)`);
    results.push(`RESULT pvbox_over_veth_host_to_guest ${a.toFixed(1)} %`, `RESULT pvbox_over_veth_guest_to_host ${b.toFixed(1)} %`);
  }
  say(`load average ${loadavg()[0]!.toFixed(2)} at end`);
  for (const p of problems) process.stderr.write(`bench/net: ${p}\n`);
  say('');
  for (const r of results) say(r);
  return problems.length ? 1 : 0;
}

await runBench('bench/net', USAGE, main);
