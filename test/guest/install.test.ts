// pvbox install end to end (issue 6, "Deploy" and its first proof): bad input refused before anything exists; one command installs Debian 12 on a new disk, writes its xl.cfg and starts it; the guest is listed beside Domain-0, its console is a root shell on its own disk; shutdown -w leaves nothing running; pvbox create boots the same disk again (what was written is there); save → restore, pause/unpause, mem-set and destroy on it.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { ensureHostCommands } from '../../src/images/host-packages.js';
import { listDomains } from '../../src/toolstack/registry.js';
import { ConsoleClient, consoleSh, PVBOX } from './harness.js';

const dir = mkdtempSync(join(tmpdir(), 'pvbox-install-'));
const env = { ...process.env, PVBOX_RUNDIR: join(dir, 'run'), PVBOX_IMAGEDIR: join(dir, 'images'), PVBOX_CONFDIR: join(dir, 'conf') };
after(() => {
  // Whatever a failed assertion left running goes before the directory does.
  for (const d of listDomains(env)) { try { process.kill(d.pid, 'SIGKILL'); } catch { /* gone */ } }
  rmSync(dir, { recursive: true, force: true });
});

function pvbox(args: string[], timeoutMs = 360_000): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [PVBOX, ...args], { encoding: 'utf8', input: '', timeout: timeoutMs, env, cwd: dir });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}
function ok(args: string[], timeoutMs?: number): string {
  const r = pvbox(args, timeoutMs);
  assert.equal(r.status, 0, `pvbox ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}
/** A refusal: non-zero, one line on stderr matching `pattern`. */
function refused(args: string[], pattern: RegExp): void {
  const r = pvbox(args);
  assert.notEqual(r.status, 0, `pvbox ${args.join(' ')} succeeded`);
  assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  assert.match(r.stderr.trim(), pattern);
}
const row = (name: string) => ok(['list']).split('\n').find((l) => l.startsWith(`${name} `));
const alive = (pid: number) => { try { process.kill(pid, 0); return true; } catch { return false; } };
const entries = (d: string) => (existsSync(d) ? readdirSync(d) : []);

const sh = (c: ConsoleClient, cmd: string, timeoutMs = 120_000) => consoleSh(c, cmd, timeoutMs);

/** Attaches to the guest's console and waits for the autologin shell of the installed system. */
async function shell(name: string): Promise<ConsoleClient> {
  const c = new ConsoleClient(name, env);
  assert.ok(await c.sees(`root@${name}:~# `, 600_000), `no root shell on ${name}'s console: ${c.seen.slice(-3000)}`);
  await sh(c, 'dmesg -n 1'); // kernel messages would interleave with command output
  return c;
}
/** The md5 that `cmd` (ending in an md5sum) prints. */
const md5Of = async (c: ConsoleClient, cmd: string) => /^([0-9a-f]{32}) /m.exec(await sh(c, cmd))?.[1];
const memTotalKiB = async (c: ConsoleClient) => Number(/MemTotal:\s+(\d+) kB/.exec(await sh(c, 'grep MemTotal /proc/meminfo'))?.[1]);

test('pvbox install: refused input, then install, console, shutdown -w, create from its disk, save/restore, pause, mem-set, destroy', { timeout: 60 * 60_000 }, async (t) => {
  const name = 'web1';
  const cfg = join(env.PVBOX_CONFDIR, `${name}.cfg`);
  const img = join(env.PVBOX_IMAGEDIR, `${name}.img`);

  // Bad input: one line each, before any disk, config or domain exists.
  refused(['install', '--name', name, '--disk', 'size=0.5'], /^pvbox: --disk size=0\.5: a size in GiB, at least 2 /);
  refused(['install', '--name', name, '--disk', 'size=4', '--os', 'win10'], /^pvbox: --os 'win10': pvbox installs debian12$/);
  refused(['install', '--name', name, '--disk', 'size=4', '--network', 'bridge=pvboxnobr0'], /^pvbox: --network bridge=pvboxnobr0: no such bridge on this host/);
  refused(['install', '--name', name, '--disk', 'size=4', '--vcpus', '2'], /one vCPU per guest/);
  refused(['install', '--name', name, '--memory', '16', '--disk', 'size=4'], /^pvbox: --memory '16'/);
  refused(['install', '--name', 'bad name', '--disk', 'size=4'], /^pvbox: --name 'bad name'/);
  refused(['install', '--name', name], /--disk size=GiB is needed/);
  assert.deepEqual([...entries(env.PVBOX_CONFDIR), ...entries(env.PVBOX_IMAGEDIR)], [], 'nothing created by refused installs');

  // The install: the disk (a copy of the cached root disk, debootstrapped on first use), its xl.cfg, the guest started.
  const t0 = Date.now();
  const installed = pvbox(['install', '--name', name, '--ram', '384', '--vcpus', '1', '--disk', 'size=3', '--os-variant', 'debian12', '--noautoconsole'], 50 * 60_000);
  assert.equal(installed.status, 0, installed.stderr);
  t.diagnostic(`pvbox install: ${((Date.now() - t0) / 1000).toFixed(1)} s${/debootstrap/.test(installed.stderr) ? ' (root disk built with debootstrap)' : ''}`);
  assert.match(installed.stderr, /resize2fs/, 'progress of the slow steps is shown');
  assert.match(installed.stderr, /'web1' installed .* started as domain 1/);
  assert.equal(statSync(img).size, 3 * 2 ** 30);
  assert.ok(statSync(img).blocks * 512 < 2 ** 30, 'the disk is sparse');
  const config = readFileSync(cfg, 'utf8');
  assert.match(config, /^bootloader = "pygrub"$/m);
  assert.match(config, /^on_reboot = "restart"$/m);
  assert.ok(config.includes(`target=${img}`), config);

  // A second install of the same name is refused while it runs, and the guest is untouched.
  refused(['install', '--name', name, '--disk', 'size=4'], /^pvbox: a domain named 'web1' already exists \(domain 1\)$/);

  const listing = ok(['list']).split('\n');
  assert.match(listing[1]!, /^Domain-0 +0 /);
  assert.match(row(name) ?? '', /^web1 +1 +384 +1 +[r-][b-]---- /);
  const firstPid = listDomains(env)[0]!.pid;

  let c: ConsoleClient | undefined = await shell(name);
  let data: string | undefined;
  try {
    // The installed Debian, on its own disk, booted from its own /boot by the pygrub-style loader.
    assert.match((await sh(c, 'cat /etc/debian_version')).trim(), /^12\.\d+$/);
    assert.equal((await sh(c, 'findmnt -n -o SOURCE /')).trim(), '/dev/xvda');
    assert.match(await sh(c, 'cat /proc/cmdline'), /(^| )root=\/dev\/xvda( |$)/m);
    assert.equal((await sh(c, 'hostname')).trim(), name);
    assert.ok(Number((await sh(c, 'df -B1 --output=size / | tail -1')).trim()) > 2.5 * 2 ** 30, 'the file system was grown to the disk');
    data = await md5Of(c, 'head -c 1048576 /dev/urandom > /root/kept && sync && md5sum /root/kept');
    assert.match(data ?? '', /^[0-9a-f]{32}$/);
    await c.close();
    c = undefined;

    // shutdown -w: the guest powers off, its domain process ends, nothing is left running.
    ok(['shutdown', '-w', name]);
    assert.equal(alive(firstPid), false, 'no domain process left');
    assert.equal(ok(['list']).trim().split('\n').length, 2, 'only Domain-0 listed');
    assert.deepEqual(entries(env.PVBOX_RUNDIR).filter((e) => !['domains', 'log', 'boot'].includes(e)), [], 'no sockets left');
    ensureHostCommands({ e2fsck: 'e2fsprogs' }, 'checking the installed disk');
    const fsck = spawnSync('e2fsck', ['-fn', img], { encoding: 'utf8' });
    assert.equal(fsck.status, 0, fsck.stdout + fsck.stderr);
    // Installed already: its config is there.
    refused(['install', '--name', name, '--disk', 'size=4'], /web1\.cfg exists: a guest named 'web1' is installed already/);

    // pvbox create of the written config boots the disk again; the file written before is there.
    ok(['create', cfg]);
    c = await shell(name);
    assert.equal(await md5Of(c, 'md5sum /root/kept'), data);
    await c.close();
    c = undefined;

    // save → restore: the same running system comes back, answers on its console and uses its disk.
    const saved = join(dir, 'web1.sav');
    ok(['save', name, saved]);
    for (let i = 0; i < 50 && row(name); i++) await new Promise((r) => setTimeout(r, 100));
    assert.equal(row(name), undefined, 'saved: the domain is gone');
    ok(['restore', saved]);
    assert.match(row(name) ?? '', /^web1 +\d+ +384 +1 /);
    c = new ConsoleClient(name, env);
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal((await sh(c, 'echo alive-$((6*7))')).trim(), 'alive-42');
    // Read from the disk itself, not the page cache; and a write that reaches it.
    assert.equal(await md5Of(c, 'echo 3 > /proc/sys/vm/drop_caches; md5sum /root/kept'), data);
    assert.equal((await sh(c, 'echo restored > /root/after && sync && cat /root/after')).trim(), 'restored');

    // pause: typed input gets no answer until unpause.
    ok(['pause', name]);
    assert.match(row(name) ?? '', / --p--- /);
    const from = c.seen.length;
    c.proc.stdin.write('echo PAUSED-$((40+2))\n');
    await new Promise((r) => setTimeout(r, 3000));
    assert.ok(!c.seen.slice(from).includes('PAUSED-42'), 'a paused guest does not run');
    ok(['unpause', name]);
    assert.ok(await c.sees('PAUSED-42', 60_000), 'the guest answers after unpause');
    assert.doesNotMatch(row(name) ?? '', / --p--- /);

    // mem-set: the balloon gives memory back and MemTotal drops.
    const before = await memTotalKiB(c);
    ok(['mem-set', name, '256m']);
    let afterKiB = before;
    for (const end = Date.now() + 90_000; Date.now() < end && before - afterKiB < 80 * 1024; await new Promise((r) => setTimeout(r, 1000))) afterKiB = await memTotalKiB(c);
    assert.ok(before - afterKiB >= 80 * 1024, `MemTotal went from ${before} to ${afterKiB} kB after mem-set 256m`);
    await c.close();
    c = undefined;

    // destroy: the domain and its process are gone; its disk and config stay for the next create.
    const pid = listDomains(env).find((d) => d.name === name)!.pid;
    ok(['destroy', name]);
    assert.equal(alive(pid), false);
    assert.equal(row(name), undefined);
    assert.ok(existsSync(img) && existsSync(cfg));
  } finally {
    await c?.close();
  }
});
