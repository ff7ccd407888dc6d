// The xl toolstack end to end with one guest booted once: create from an xl.cfg, list beside Domain-0, console replay and shell, pause/unpause, mem-set through the balloon, rename, a refused duplicate, destroy of a second domain, and shutdown -w leaving nothing behind.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ensureDefaultImage } from '../../src/images/debian.js';
import { ConsoleClient, consoleSh, pvboxCli } from './harness.js';

const dir = mkdtempSync(join(tmpdir(), 'pvbox-xl-guest-'));
const UUID = 'c0ffee00-1234-4abc-8def-0123456789ab';
const env = { ...process.env, PVBOX_RUNDIR: join(dir, 'run') };

const { pvbox, ok } = pvboxCli(env, dir);
const pidOf = (domid: number): number => (JSON.parse(readFileSync(join(env.PVBOX_RUNDIR, 'domains', `${domid}.json`), 'utf8')) as { pid: number }).pid;
const alive = (pid: number) => { try { process.kill(pid, 0); return true; } catch { return false; } };
const row = (name: string) => ok('list').split('\n').find((l) => l.startsWith(`${name} `));

const sh = (c: ConsoleClient, cmd: string) => consoleSh(c, cmd);
const memTotalKiB = async (c: ConsoleClient) => Number(/MemTotal:\s+(\d+) kB/.exec(await sh(c, 'grep MemTotal /proc/meminfo'))?.[1]);

test('xl create, list, console, pause/unpause, mem-set, rename, destroy and shutdown -w on one guest', { timeout: 900_000 }, async () => {
  const img = await ensureDefaultImage();
  const cfg = join(dir, 'tsguest.cfg');
  writeFileSync(cfg, `# an xl.cfg as a user writes one\nname = "tsguest"\ntype = "pv"\nmemory = 256\nvcpus = 1\nuuid = "${UUID}"\nkernel = "${img.kernel}"\nramdisk = "${img.initrd}"\nextra = "console=hvc0"\non_poweroff = "destroy"\non_reboot = "restart"\non_crash = "destroy"\n`);
  ok('create', cfg);
  const pid = pidOf(1);
  let c: ConsoleClient | undefined;
  try {
    // list: Domain-0 first, the guest with its id, memory and one vCPU.
    const listing = ok('list').split('\n');
    assert.equal(listing[0], 'Name                                        ID   Mem VCPUs\tState\tTime(s)');
    assert.match(listing[1]!, /^Domain-0 +0 +\d+ +\d+ +r----- +\d+\.\d$/);
    assert.match(row('tsguest') ?? '', /^tsguest {34} {4}1 {3}256 {5}1 {5}[r-][b-]---- +\d+\.\d$/);
    assert.equal(ok('domid', 'tsguest').trim(), '1');
    assert.equal(ok('domname', '1').trim(), 'tsguest');

    // A duplicate name is refused in one line, and the running guest is untouched.
    const dup = pvbox('create', cfg);
    assert.notEqual(dup.status, 0);
    assert.equal(dup.stderr.trim(), "pvbox: a domain named 'tsguest' already exists (domain 1)");

    // The console: output from before the attach is replayed, and the shell answers.
    c = new ConsoleClient('tsguest', env);
    assert.ok(await c.sees('PVBOX-READY', 300_000), `no readiness line: ${c.seen.slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 2000));
    assert.equal((await sh(c, 'echo hi-$((6*7))')).trim(), 'hi-42');
    // The domain handle is the xl.cfg's uuid, as the guest reads it (XENVER_guest_handle) and in its vm node.
    assert.equal((await sh(c, 'cat /sys/hypervisor/uuid')).trim(), UUID);
    assert.equal((await sh(c, 'xenstore-read vm')).trim(), `/vm/${UUID}`);

    // pause: the vCPU stops, so a ticker in the guest stops printing; unpause: it goes on.
    c.proc.stdin.write('(i=0; while :; do i=$((i+1)); echo TICK$i; sleep 0.2; done) &\n');
    assert.ok(await c.sees('TICK5', 60_000), 'the ticker runs');
    ok('pause', 'tsguest');
    assert.match(row('tsguest') ?? '', / --p--- /);
    await new Promise((r) => setTimeout(r, 1000));
    const ticksAtPause = (c.seen.match(/TICK\d+/g) ?? []).length;
    await new Promise((r) => setTimeout(r, 3000));
    assert.equal((c.seen.match(/TICK\d+/g) ?? []).length, ticksAtPause, 'no ticks while paused');
    ok('unpause', 'tsguest');
    const deadline = Date.now() + 30_000;
    while ((c.seen.match(/TICK\d+/g) ?? []).length <= ticksAtPause + 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    assert.ok((c.seen.match(/TICK\d+/g) ?? []).length > ticksAtPause + 2, 'ticks again after unpause');
    assert.doesNotMatch(row('tsguest') ?? '', / --p--- /);
    c.proc.stdin.write('kill $!\n');
    await new Promise((r) => setTimeout(r, 1000));

    // mem-set: memory/target goes down, the guest's balloon gives the memory back, MemTotal drops.
    const before = await memTotalKiB(c);
    assert.ok(before > 150_000, `MemTotal ${before}`);
    ok('mem-set', 'tsguest', '160m');
    let after = before;
    for (const end = Date.now() + 60_000; Date.now() < end && before - after < 80 * 1024; await new Promise((r) => setTimeout(r, 1000))) after = await memTotalKiB(c);
    assert.ok(before - after >= 80 * 1024, `MemTotal went from ${before} to ${after} kB after mem-set 160m`);
    assert.match(row('tsguest') ?? '', /^tsguest +1 +16\d /, 'list shows the ballooned size');
    const tooMuch = pvbox('mem-set', 'tsguest', '1g');
    assert.notEqual(tooMuch.status, 0);
    assert.match(tooMuch.stderr.trim(), /^pvbox: mem-set: 1024 MiB is more than domain 1 can have \(256 MiB/);
    const vcpus = pvbox('vcpu-set', 'tsguest', '2');
    assert.match(vcpus.stderr.trim(), /^pvbox: vcpu-set: domain 1 has 1 vCPU; pvbox runs one vCPU per guest for now$/);

    // rename: the registry, the sockets and the guest's own XenStore name follow.
    ok('rename', 'tsguest', 'tsrenamed');
    assert.equal(ok('domid', 'tsrenamed').trim(), '1');
    assert.equal((await sh(c, 'xenstore-read name')).trim(), 'tsrenamed');
    await c.close();
    c = undefined;

    // A second domain, destroyed as soon as it exists: its process and entry are gone.
    writeFileSync(join(dir, 'second.cfg'), readFileSync(cfg, 'utf8').replace('"tsguest"', '"second"').replace('memory = 256', 'memory = 128').replace(/^uuid = .*\n/m, ''));
    ok('create', join(dir, 'second.cfg'));
    const secondPid = pidOf(2);
    assert.ok(row('second'));
    ok('destroy', 'second');
    assert.equal(alive(secondPid), false, 'destroyed domain process gone');
    assert.equal(row('second'), undefined);

    // shutdown -w: the guest powers off, on_poweroff=destroy ends its process, nothing is left.
    ok('shutdown', '-w', 'tsrenamed');
    assert.equal(alive(pid), false, 'no domain process left');
    assert.deepEqual(readdirSync(join(env.PVBOX_RUNDIR, 'domains')).filter((e) => !e.startsWith('.')), []);
    assert.deepEqual(readdirSync(env.PVBOX_RUNDIR).filter((e) => e !== 'domains' && e !== 'log'), [], 'no sockets left');
    assert.equal(ok('list').trim().split('\n').length, 2, 'only Domain-0 listed');
    assert.match(readFileSync(join(env.PVBOX_RUNDIR, 'log', 'pvbox.log'), 'utf8'), /domain 1 \(tsrenamed\) shut down: poweroff; action destroy/);
    assert.match(ok('dmesg'), /domain 2 \(second\) destroyed: xl destroy/);
  } finally {
    await c?.close();
    for (const p of [pid]) if (alive(p)) process.kill(p, 'SIGKILL');
    if (existsSync(join(env.PVBOX_RUNDIR, 'domains', '2.json'))) { try { process.kill(pidOf(2), 'SIGKILL'); } catch { /* gone */ } }
  }
});
