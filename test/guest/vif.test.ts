// PV network (issue 5): xen-netfront in the stock guest reaches a host bridge through pvbox's netback and a TAP device. Everything runs inside a network
// namespace this test creates (bridge, dnsmasq, pvbox itself), never on the host's own interfaces: the guest gets an address by DHCP, pings the host, moves
// 200 MiB of TCP both ways with matching checksums, and gets a NIC hot-plugged and taken away (network-attach/-detach); two guests, one under pvbox
// xenstored (with a hot-plugged NIC there too), ping each other and move data, then one is saved and restored and moves data again. Bad vif specs and a
// missing bridge: one line. A guest booted without a NIC gets one on a bridge network-attach creates, once it loads xen-netfront.
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, test } from 'node:test';
import { ensureDefaultImage } from '../../src/images/debian.js';
import { ensureHostCommands } from '../../src/images/host-packages.js';
import { ConsoleClient, consoleSh, PVBOX } from './harness.js';

const NS = `pvbox-vif-${process.pid}`;
const HOST_IP = '10.199.0.1', HOST_IP2 = '10.199.1.1';
const BULK_MIB = Number(process.env.PVBOX_VIF_TEST_MIB ?? 200);
const dir = mkdtempSync(join(tmpdir(), 'pvbox-vif-'));
const children: ChildProcess[] = [];
/** One run directory for every guest of this test: standalone guests then take distinct domain ids, so their TAP names (vif<domid>.0) differ. */
const runDir = mkdtempSync(join(tmpdir(), 'pvbox-vif-run-'));
/** pvbox xenstored for the guest that joins it (test 2); every other guest has a store of its own (no daemon at its XENSTORED_PATH). */
const XS_SOCKET = join(dir, 'xenstored', 'socket');
/** The domain link is looked for beside the XenStore socket (toolstack/domain-link.ts domainLinkPath): a directory without a daemon. */
const STANDALONE = { XENSTORED_PATH: join(dir, 'socket') };

function sh(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr || r.error?.message}`);
  return r.stdout;
}
const inNs = (cmd: string, args: string[]) => sh('ip', ['netns', 'exec', NS, cmd, ...args]);
/** The pvbox CLI inside the namespace, as a user's shell there runs it. */
function pvboxInNs(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync('ip', ['netns', 'exec', NS, process.execPath, PVBOX, ...args], { encoding: 'utf8', input: '', timeout: 120_000, env: { ...process.env, PVBOX_RUNDIR: runDir, ...STANDALONE } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A process inside the namespace, killed at the end whatever happens. */
function spawnInNs(cmd: string, args: string[], env: NodeJS.ProcessEnv = STANDALONE): ChildProcessWithoutNullStreams {
  const p = spawn('ip', ['netns', 'exec', NS, cmd, ...args], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, PVBOX_RUNDIR: runDir, ...env } });
  children.push(p);
  return p;
}

/** `pvbox run` inside the namespace, driven through its console as harness.ts's GuestSession does. */
class NsGuest {
  readonly proc: ChildProcessWithoutNullStreams;
  output = '';
  stderr = '';
  readonly exited: Promise<number>;
  constructor(args: string[], env: NodeJS.ProcessEnv = STANDALONE) {
    this.proc = spawnInNs(process.execPath, [PVBOX, 'run', ...args], env);
    this.exited = new Promise((resolve) => this.proc.on('exit', (code, sig) => resolve(code ?? (sig ? 128 : 1))));
    this.proc.stdout.setEncoding('latin1');
    this.proc.stderr.setEncoding('utf8');
    this.proc.stdout.on('data', (s: string) => { this.output += s; });
    this.proc.stderr.on('data', (s: string) => { this.stderr += s; });
  }
  async waitFor(pattern: RegExp | string, timeoutMs: number, from = 0): Promise<number> {
    for (const deadline = Date.now() + timeoutMs; ; await new Promise((r) => setTimeout(r, 100))) {
      const hay = this.output.slice(from);
      const m = typeof pattern === 'string' ? (hay.includes(pattern) ? { index: hay.indexOf(pattern), 0: pattern } : null) : hay.match(pattern);
      if (m && m.index !== undefined) return from + m.index + m[0].length;
      if (this.proc.exitCode !== null || Date.now() > deadline) throw new Error(`timed out waiting for ${pattern}\n--- console ---\n${this.output.slice(-3000)}\n--- stderr ---\n${this.stderr.slice(-2000)}`);
    }
  }
  async sh(cmd: string, timeoutMs = 120_000): Promise<string> {
    const tag = `M${Math.random().toString(36).slice(2, 10)}`;
    const start = this.output.length;
    this.proc.stdin.write(`echo ${tag}-BEGIN; ${cmd}; echo ${tag}-END $?\n`);
    const b = await this.waitFor(new RegExp(`(^|\\n)${tag}-BEGIN\\r?\\n`), timeoutMs, start);
    const e = await this.waitFor(new RegExp(`${tag}-END (\\d+)`), timeoutMs, b);
    const text = this.output.slice(b, e);
    return text.slice(0, text.lastIndexOf(`${tag}-END`)).replace(/\r/g, '');
  }
  async boot(): Promise<void> {
    await this.waitFor('PVBOX-READY', 240_000);
    await this.waitFor('# ', 30_000);
    await this.sh('dmesg -n 1');
  }
  /** DHCP through busybox udhcpc with a minimal script (the image has none); the address it got. */
  async dhcp(): Promise<string> {
    await this.sh(`printf '%s\\n' '#!/bin/sh' '[ "$1" = bound ] || exit 0' 'ip addr add $ip/$mask dev $interface' > /tmp/dhcp.sh; chmod +x /tmp/dhcp.sh; ip link set eth0 up`);
    await this.sh('udhcpc -i eth0 -s /tmp/dhcp.sh -q -n -t 20 -T 1 >/dev/null 2>&1', 60_000);
    const m = /inet (10\.199\.0\.\d+)/.exec(await this.sh('ip -4 addr show dev eth0'));
    assert.ok(m, `no DHCP address on eth0\n${await this.sh('ip addr; dmesg | tail -20')}`);
    return m[1]!;
  }
  kill(): void { this.proc.kill('SIGKILL'); }
}

/** A node helper inside the namespace; resolves with its first stdout line. */
function nodeHelper(script: string): { ready: Promise<void>; result: Promise<string>; proc: ChildProcessWithoutNullStreams } {
  const p = spawnInNs(process.execPath, ['-e', script]);
  let out = '', err = '';
  p.stdout.setEncoding('utf8'); p.stderr.setEncoding('utf8');
  p.stderr.on('data', (s: string) => { err += s; });
  let onReady!: () => void;
  const ready = new Promise<void>((r) => { onReady = r; });
  const result = new Promise<string>((resolve, reject) => {
    p.stdout.on('data', (s: string) => {
      out += s;
      if (out.includes('LISTENING\n')) { onReady(); out = out.replace('LISTENING\n', ''); }
      if (out.includes('\n')) resolve(out.split('\n')[0]!);
    });
    p.on('exit', (code) => reject(new Error(`helper exited ${code}: ${err}`)));
  });
  return { ready, result, proc: p };
}

before(() => {
  ensureHostCommands({ ip: 'iproute2', dnsmasq: 'dnsmasq-base' }, 'the vif guest test');
  sh('ip', ['netns', 'add', NS]);
  inNs('ip', ['link', 'set', 'lo', 'up']);
  inNs('ip', ['link', 'add', 'br0', 'type', 'bridge']);
  inNs('ip', ['addr', 'add', `${HOST_IP}/24`, 'dev', 'br0']);
  inNs('ip', ['addr', 'add', `${HOST_IP2}/24`, 'dev', 'br0']); // the subnet of hot-plugged NICs
  inNs('ip', ['link', 'set', 'br0', 'up']);
  const dnsmasq = spawnInNs('dnsmasq', ['--no-daemon', '--conf-file=/dev/null', '--port=0', '--interface=br0', '--bind-interfaces',
    '--dhcp-range=10.199.0.10,10.199.0.99,1h', `--dhcp-leasefile=${join(dir, 'leases')}`, '--pid-file']);
  dnsmasq.stderr.setEncoding('utf8');
});

after(() => {
  for (const c of children) c.kill('SIGKILL');
  spawnSync('ip', ['netns', 'del', NS]);
});

test('a guest on a bridge: DHCP, ping, bulk TCP both ways with matching checksums', { timeout: 1_800_000 }, async () => {
  const img = await ensureDefaultImage();
  const g = new NsGuest(['--kernel', img.kernel, '--ramdisk', img.initrd, '--memory', String(512 + BULK_MIB), '--name', 'vif-a', '--vif', 'bridge=br0, mac=00:16:3e:00:00:0a']);
  try {
    await g.boot();
    // The host side: a TAP device named as Xen names it, on the bridge, up.
    assert.match(inNs('ip', ['-o', 'link', 'show', 'master', 'br0']), /vif\d+\.0: <[^>]*\bUP\b[^>]*>.* master br0 .*link\/ether fe:ff:ff:ff:ff:ff/);
    assert.equal((await g.sh('cat /sys/class/net/eth0/address')).trim(), '00:16:3e:00:00:0a');
    const addr = await g.dhcp();
    assert.match(await g.sh(`ping -c 3 -W 5 ${HOST_IP}`, 60_000), / 0% packet loss/);
    // The same random bytes both ways, so that the guest checksums once: the host serves them, the guest stores them (busybox wget, 64 KiB reads) and
    // checks them; then busybox httpd sends the file back with one sendfile() and the host compares. (busybox nc writes 1 KiB per system call: 248 s for
    // 200 MiB guest → host here, against 4 s; and busybox md5sum reading a pipe in 4 KiB reads costs a context switch each: 20 s per 100 MiB.)
    const source = nodeHelper(`const c=require('crypto');const h=c.createHash('md5');const chunk=c.randomBytes(1<<20);let left=${BULK_MIB};require('http').createServer((q,r)=>{r.writeHead(200,{'content-length':${BULK_MIB << 20}});const more=()=>{while(left>0){left--;const b=Buffer.from(chunk);b.writeUInt32LE(left,0);h.update(b);if(!r.write(b)){r.once('drain',more);return;}}r.end(()=>console.log(h.digest('hex')));};more();}).listen(5002,'${HOST_IP}',()=>console.log('LISTENING'));`);
    await source.ready;
    const t1 = Date.now();
    await g.sh(`wget -q -O /tmp/blob http://${HOST_IP}:5002/`, 1_200_000);
    const downMs = Date.now() - t1;
    const sent = await source.result;
    assert.equal(/[0-9a-f]{32}/.exec(await g.sh('md5sum /tmp/blob', 600_000))?.[0], sent);
    await g.sh(`httpd -p ${addr}:8080 -h /tmp`);
    const t0 = Date.now();
    const sink = nodeHelper(`require('http').get('http://${addr}:8080/blob',(r)=>{const h=require('crypto').createHash('md5');let n=0;r.on('data',(b)=>{h.update(b);n+=b.length;});r.on('end',()=>console.log(r.statusCode+' '+n+' '+h.digest('hex')));}).on('error',(e)=>{console.error(e.message);process.exit(1);});`);
    const [status, n, back] = (await sink.result).split(' ');
    const upMs = Date.now() - t0;
    assert.equal(status, '200');
    assert.equal(Number(n), BULK_MIB << 20);
    assert.equal(back, sent);
    await g.sh('rm /tmp/blob');
    process.stderr.write(`vif: ${addr}: ${BULK_MIB} MiB guest→host in ${(upMs / 1000).toFixed(1)} s, host→guest in ${(downMs / 1000).toFixed(1)} s\n`);

    // Hot-plug (xl network-attach / network-detach): a second NIC appears in the running guest (its netfront is loaded: the guest booted with a vif),
    // on a second subnet of the bridge, and reaches the host through its own TAP device; detached by MAC, it disappears on both sides.
    const att = pvboxInNs('network-attach', 'vif-a', 'bridge=br0', 'mac=00:16:3e:00:00:0b');
    assert.equal(att.status, 0, att.stderr);
    assert.match(inNs('ip', ['-o', 'link', 'show', 'master', 'br0']), /vif\d+\.1: <[^>]*\bUP\b/);
    assert.equal((await g.sh('i=0; while [ ! -e /sys/class/net/eth1 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; cat /sys/class/net/eth1/address')).trim(), '00:16:3e:00:00:0b');
    assert.match(await g.sh(`ip link set eth1 up; ip addr add 10.199.1.2/24 dev eth1; ping -c 3 -W 5 ${HOST_IP2}`, 60_000), / 0% packet loss/);
    for (const [args, pattern] of [
      [['network-attach', 'vif-a', 'bridge=br0, mac=00:16:3e:00:00:0b'], /mac 00:16:3e:00:00:0b is used by vif 1/],
      [['network-attach', 'vif-a', 'bridge=nosuchbr'], /bridge nosuchbr does not exist/],
      [['network-attach', 'vif-a', 'bridge=br0, colour=blue'], /unknown key 'colour'/],
      [['network-attach', 'nosuchguest', 'bridge=br0'], /no running domain 'nosuchguest'/],
      [['network-detach', 'vif-a', '7'], /no vif '7'/],
    ] as const) {
      const r = pvboxInNs(...args);
      assert.notEqual(r.status, 0, args.join(' '));
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
      assert.match(r.stderr, pattern);
    }
    const det = pvboxInNs('network-detach', 'vif-a', '00:16:3E:00:00:0B');
    assert.equal(det.status, 0, det.stderr);
    assert.equal((await g.sh('[ -e /sys/class/net/eth1 ] && echo present || echo gone')).trim(), 'gone');
    assert.doesNotMatch(inNs('ip', ['-o', 'link', 'show']), /vif\d+\.1[:@]/);
    assert.match(await g.sh(`ping -c 2 -W 5 ${HOST_IP}`, 60_000), / 0% packet loss/);
    g.proc.stdin.write('poweroff -f\n');
    assert.equal(await g.exited, 0);
  } finally { g.kill(); }
});

test('two guests on the bridge (one under pvbox xenstored, with a hot-plugged NIC) ping each other and move data; one is saved and restored and goes on', { timeout: 900_000 }, async () => {
  const img = await ensureDefaultImage();
  const common = ['--kernel', img.kernel, '--ramdisk', img.initrd, '--memory', '256'];
  // Guest a joins pvbox xenstored: the daemon runs netback's xenbus half, the domain process the rings and the TAP device.
  mkdirSync(dirname(XS_SOCKET), { recursive: true });
  const daemon = spawn(process.execPath, [PVBOX, 'xenstored', '--foreground', '--socket', XS_SOCKET], { stdio: 'ignore' });
  children.push(daemon);
  for (let i = 0; i < 100 && !existsSync(join(dirname(XS_SOCKET), 'pvbox-domains')); i++) await new Promise((r) => setTimeout(r, 100));
  const a = new NsGuest([...common, '--name', 'vif-b1', '--vif', 'bridge=br0'], { XENSTORED_PATH: XS_SOCKET });
  let b: NsGuest | undefined;
  let restoredB: ConsoleClient | undefined;
  try {
    await a.boot();
    b = new NsGuest([...common, '--name', 'vif-b2', '--vif', 'bridge=br0, vifname=guest2']);
    await b.boot();
    assert.match(inNs('ip', ['-o', 'link', 'show', 'master', 'br0']), /guest2:/);
    // Generated MACs: Xen's OUI, different from each other.
    const macA = (await a.sh('cat /sys/class/net/eth0/address')).trim(), macB = (await b.sh('cat /sys/class/net/eth0/address')).trim();
    assert.match(macA, /^00:16:3e:[0-7]/); assert.match(macB, /^00:16:3e:[0-7]/); assert.notEqual(macA, macB);
    await a.sh('ip link set eth0 up; ip addr add 10.199.0.201/24 dev eth0');
    await b.sh('ip link set eth0 up; ip addr add 10.199.0.202/24 dev eth0');
    assert.match(await a.sh('ping -c 3 -W 5 10.199.0.202', 60_000), / 0% packet loss/);
    assert.match(await b.sh('ping -c 3 -W 5 10.199.0.201', 60_000), / 0% packet loss/);
    const md5 = (text: string) => /[0-9a-f]{32}/.exec(text)?.[0];
    const sent = md5(await a.sh('dd if=/dev/urandom of=/tmp/x bs=1M count=16 2>/dev/null; md5sum /tmp/x; httpd -p 10.199.0.201:8080 -h /tmp', 600_000));
    assert.ok(sent);
    assert.equal(md5(await b.sh('wget -q -O - http://10.199.0.201:8080/x | md5sum', 600_000)), sent);

    // Hot-plug under the daemon: the vif's xenbus device is created in pvbox xenstored's store (device-add over the domain link), the rings in a's process.
    const att = pvboxInNs('network-attach', 'vif-b1', 'bridge=br0, mac=00:16:3e:00:00:1b');
    assert.equal(att.status, 0, att.stderr);
    assert.equal((await a.sh('i=0; while [ ! -e /sys/class/net/eth1 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; cat /sys/class/net/eth1/address')).trim(), '00:16:3e:00:00:1b');
    assert.equal((await a.sh('xenstore-read "$(xenstore-read device/vif/1/backend)/state"')).trim(), '4');
    assert.match(await a.sh(`ip link set eth1 up; ip addr add 10.199.1.3/24 dev eth1; ping -c 3 -W 5 ${HOST_IP2}`, 60_000), / 0% packet loss/);
    assert.equal(pvboxInNs('network-detach', 'vif-b1', '1').status, 0);
    assert.equal((await a.sh('[ -e /sys/class/net/eth1 ] && echo present || echo gone')).trim(), 'gone');

    // xl save / xl restore of guest b: the new domain makes its TAP device again (same vifname, on the bridge), b's netfront reconnects by itself
    // (netfront_resume), and packets flow both ways again.
    const saveFile = join(dir, 'b.sav');
    const saved = pvboxInNs('save', 'vif-b2', saveFile);
    assert.equal(saved.status, 0, saved.stderr);
    assert.equal(await b.exited, 4); // pvbox run's status for a suspended (saved) guest
    const restored = pvboxInNs('restore', saveFile);
    assert.equal(restored.status, 0, restored.stderr);
    restoredB = new ConsoleClient('vif-b2', { ...process.env, PVBOX_RUNDIR: runDir });
    assert.match(inNs('ip', ['-o', 'link', 'show', 'master', 'br0']), /guest2: <[^>]*\bUP\b/);
    assert.match(await consoleSh(restoredB, 'ping -c 3 -W 5 10.199.0.201', 120_000), / 0% packet loss/);
    assert.match(await a.sh('ping -c 3 -W 5 10.199.0.202', 60_000), / 0% packet loss/);
    assert.equal(md5(await consoleSh(restoredB, 'wget -q -O - http://10.199.0.201:8080/x | md5sum', 600_000)), sent);
    const fromB = md5(await consoleSh(restoredB, 'dd if=/dev/urandom of=/tmp/y bs=1M count=16 2>/dev/null; md5sum /tmp/y; httpd -p 10.199.0.202:8080 -h /tmp', 600_000));
    assert.equal(md5(await a.sh('wget -q -O - http://10.199.0.202:8080/y | md5sum', 600_000)), fromB);
  } finally {
    daemon.kill();
    a.kill(); b?.kill();
    if (restoredB) { await restoredB.close(); pvboxInNs('destroy', 'vif-b2'); }
  }
});

test('bad vif specs, a missing bridge and a taken interface name: one line each; a NIC attached to a guest booted without one', { timeout: 600_000 }, async () => {
  const run = (...args: string[]) => spawnSync('ip', ['netns', 'exec', NS, process.execPath, PVBOX, 'run', ...args], { encoding: 'utf8', input: '', timeout: 120_000, env: { ...process.env, PVBOX_RUNDIR: runDir, ...STANDALONE } });
  for (const [spec, pattern] of [
    ['mac=00:16:3e:zz:00:01', /mac '00:16:3e:zz:00:01' is not six hex octets/],
    ['mac=01:16:3e:00:00:01', /multicast/],
    ['bridge=br0, colour=blue', /unknown key 'colour'/],
    ['bridge=br0, type=ioemu', /type 'ioemu' is not supported/],
    ['vifname=this-name-is-far-too-long', /vifname .* is not an interface name/],
    ['bridge=br0, mtu=20', /mtu '20'/],
  ] as const) {
    const r = run('--kernel', process.execPath, '--vif', spec);
    assert.notEqual(r.status, 0);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, pattern);
  }
  const img = await ensureDefaultImage();
  const missing = run('--kernel', img.kernel, '--ramdisk', img.initrd, '--vif', 'bridge=nosuchbr');
  assert.notEqual(missing.status, 0);
  assert.equal(missing.stderr.trim().split('\n').length, 1, missing.stderr);
  assert.match(missing.stderr, /bridge nosuchbr does not exist/);
  // br0 is a bridge, not a name a TAP device can take.
  const taken = run('--kernel', img.kernel, '--ramdisk', img.initrd, '--vif', 'vifname=br0');
  assert.notEqual(taken.status, 0);
  assert.equal(taken.stderr.trim().split('\n').length, 1, taken.stderr);
  assert.match(taken.stderr, /vif br0: cannot create the TAP device/);
  // A guest booted without a NIC gets one: create-bridge=1 makes the missing bridge. The default image loads xen-netfront at boot only when a vif
  // exists then and has no udev, so the NIC shows up once the guest loads the driver (README: network-attach), and then works.
  const g = new NsGuest(['--kernel', img.kernel, '--ramdisk', img.initrd, '--memory', '256', '--name', 'vif-c']);
  try {
    await g.boot();
    const att = pvboxInNs('network-attach', 'vif-c', 'bridge=newbr, create-bridge=1');
    assert.equal(att.status, 0, att.stderr);
    assert.ok(inNs('ls', ['/sys/class/net/newbr/bridge']).length > 0);
    assert.match(inNs('ip', ['-o', 'link', 'show', 'master', 'newbr']), /vif\d+\.0: <[^>]*\bUP\b/);
    assert.equal((await g.sh('ls /sys/class/net')).trim(), 'lo');
    assert.match(await g.sh('modprobe xen-netfront; i=0; while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; ls /sys/class/net'), /eth0/);
    inNs('ip', ['addr', 'add', '10.199.2.1/24', 'dev', 'newbr']);
    assert.match(await g.sh('ip link set eth0 up; ip addr add 10.199.2.2/24 dev eth0; ping -c 3 -W 5 10.199.2.1', 60_000), / 0% packet loss/);
    g.proc.stdin.write('poweroff -f\n');
    assert.equal(await g.exited, 0);
  } finally { g.kill(); }
});

test('multi-queue: netfront asked for 4 queues gets them, one TAP queue each, and every queue carries traffic; it reconnects with one', { timeout: 600_000 }, async () => {
  const img = await ensureDefaultImage();
  // A one-vCPU guest's netfront takes one queue unless told otherwise (xennet_max_queues defaults to its online CPUs).
  const g = new NsGuest(['--kernel', img.kernel, '--ramdisk', img.initrd, '--memory', '384', '--name', 'vif-mq', '--stats',
    '--extra', 'xen_netfront.max_queues=4', '--vif', 'bridge=br0, vifname=mqvif']);
  try {
    await g.boot();
    assert.equal((await g.sh('ls /sys/class/net/eth0/queues | tr "\\n" " "')).trim(), 'rx-0 rx-1 rx-2 rx-3 tx-0 tx-1 tx-2 tx-3');
    assert.match(inNs('ip', ['-d', 'link', 'show', 'mqvif']), /multi_queue numqueues 4 /);
    // 64 TCP flows at once: netfront picks a queue per flow (skb hash), the host kernel answers each flow on the TAP queue it came from
    // (tun's flow steering), so with 64 flows every queue is used (all but one queue left idle: 4·(3/4)^64 ≈ 4e-8).
    const blob = nodeHelper(`const c=require('crypto');const b=c.randomBytes(256<<10);require('http').createServer((q,r)=>r.end(b)).listen(5003,'${HOST_IP}',()=>{console.log('LISTENING');console.log(c.createHash('md5').update(b).digest('hex'));});`);
    await blob.ready;
    const sum = await blob.result;
    await g.sh('ip link set eth0 up; ip addr add 10.199.0.200/24 dev eth0');
    // One md5sum process over every file afterwards: the guest checksums in one process, not 64 at once.
    const sums = await g.sh(`for i in $(seq 64); do wget -q -O /tmp/mq.$i http://${HOST_IP}:5003/ & done; wait; md5sum /tmp/mq.* | cut -d' ' -f1 | sort | uniq -c; rm /tmp/mq.*`, 300_000);
    assert.match(sums.trim(), new RegExp(`^64 ${sum}$`));
    // The device rebound with netfront's max_queues at 1 (its parameter is writable): netfront closes, the backend lets its four ring pairs and
    // TAP queues go, and the new connection has one of each; traffic flows.
    await g.sh('echo 1 > /sys/module/xen_netfront/parameters/max_queues; echo vif-0 > /sys/bus/xen/drivers/vif/unbind; echo vif-0 > /sys/bus/xen/drivers/vif/bind; i=0; while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done');
    assert.equal((await g.sh('ls /sys/class/net/eth0/queues | tr "\\n" " "')).trim(), 'rx-0 tx-0');
    assert.match(await g.sh(`ip link set eth0 up; ip addr add 10.199.0.200/24 dev eth0; ping -c 3 -W 5 ${HOST_IP}`, 60_000), / 0% packet loss/);
    assert.match(inNs('ip', ['-d', 'link', 'show', 'mqvif']), /multi_queue numqueues 1 /);
    g.proc.stdin.write('poweroff -f\n');
    assert.equal(await g.exited, 0);
    // --stats: each vif queue's counters over both connections; every one of the four moved packets both ways.
    for (let q = 0; q < 4; q++) {
      assert.match(g.stderr, new RegExp(`mqvif q${q} txPackets\\s+[1-9]`), g.stderr);
      assert.match(g.stderr, new RegExp(`mqvif q${q} rxPackets\\s+[1-9]`), g.stderr);
    }
  } finally { g.kill(); }
});
