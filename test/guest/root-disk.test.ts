// Root disks (issue 4, items 6-7): `pvbox image` builds a Debian 12 ext4 root disk; the default initramfs boots it with root=/dev/xvda; data written survives a reboot; poweroff and reboot end pvbox with 0 and 3; the filesystem is clean afterwards.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { ensureHostCommands } from '../../src/images/host-packages.js';
import { CONFIG_FILES, hostMirror, parseSize } from '../../src/images/rootfs.js';
import { GuestSession, PVBOX } from './harness.js';

const dir = mkdtempSync(join(tmpdir(), 'pvbox-root-disk-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const pvbox = (args: string[], timeoutMs: number) => spawnSync(process.execPath, [PVBOX, ...args], { encoding: 'utf8', input: '', timeout: timeoutMs });
const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

describe('pvbox image: arguments and the pieces of the recipe', () => {
  test('sizes are parsed in binary units and bad ones refused', () => {
    assert.equal(parseSize('2G'), 2 * 2 ** 30);
    assert.equal(parseSize('1536M'), 1536 * 2 ** 20);
    assert.equal(parseSize('1.5GiB'), 1.5 * 2 ** 30);
    for (const bad of ['', 'big', '2X', '1M', '17T', '268435457']) assert.throws(() => parseSize(bad), /--size/);
  });

  test("the host's Debian mirror is found in deb822 and one-line sources, skipping security and other archives", async () => {
    const apt = join(dir, 'apt');
    mkdirSync(join(apt, 'sources.list.d'), { recursive: true });
    const known = (s: string) => ['bookworm', 'trixie'].includes(s);
    assert.equal(await hostMirror(apt, known), 'http://deb.debian.org/debian');
    writeFileSync(join(apt, 'sources.list.d', 'a.sources'), [
      'Types: deb', 'URIs: https://deb.nodesource.com/node_20.x', 'Suites: nodistro', 'Components: main', '',
      'Types: deb', 'URIs: http://security.debian.org/debian-security', 'Suites: bookworm-security', '',
      'Types: deb', 'URIs: http://mirror.example/debian/', 'Suites: bookworm bookworm-updates', 'Enabled: no', '',
      'Types: deb-src deb', '# URIs: http://commented.example/debian', 'URIs: http://ftp.example/debian/', 'Suites: bookworm', '',
    ].join('\n'));
    assert.equal(await hostMirror(apt, known), 'http://ftp.example/debian');
    writeFileSync(join(apt, 'sources.list'), 'deb [arch=amd64] http://list.example/debian trixie main\n');
    assert.equal(await hostMirror(apt, known), 'http://list.example/debian', 'sources.list comes first');
  });

  test('the sysinit script and inittab are valid for the shells that run them', () => {
    const sysinit = CONFIG_FILES['usr/local/sbin/pvbox-sysinit']!;
    const file = join(dir, 'pvbox-sysinit');
    writeFileSync(file, sysinit);
    const check = spawnSync('sh', ['-n', file], { encoding: 'utf8' });
    assert.equal(check.status, 0, check.stderr);
    const inittab = CONFIG_FILES['etc/inittab']!;
    assert.match(inittab, /^si::sysinit:\/usr\/local\/sbin\/pvbox-sysinit$/m);
    assert.match(inittab, /^hv:2345:respawn:\/sbin\/agetty --autologin root .*hvc0/m);
    assert.match(inittab, /^ca:12345:ctrlaltdel:/m, 'Xen control/shutdown reboot arrives as ctrl-alt-del');
  });

  test('bad options are one line each, before anything is built', () => {
    writeFileSync(join(dir, 'exists.img'), '');
    for (const [args, pattern] of [
      [['--size', '3 bananas'], /--size '3 bananas'/],
      [['--packages', 'ok,Not_A_Package'], /'Not_A_Package' is not a Debian package name/],
      [['--suite', 'Bookworm!'], /--suite 'Bookworm!'/],
      [['--out', join(dir, 'exists.img')], /exists \(pass --force/],
      [['--out', join(dir, 'no', 'such', 'dir.img')], /no directory/],
      [['--colour', 'blue'], /Unknown option '--colour'/],
    ] as const) {
      const r = pvbox(['image', ...args], 120_000);
      assert.notEqual(r.status, 0, r.stderr);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
      assert.match(r.stderr, pattern);
    }
  });
});

describe('a Debian 12 root disk booted with root=/dev/xvda', () => {
  const img = join(dir, 'root.img');
  const disk = `format=raw, vdev=xvda, access=rw, target=${img}`;

  /** Boots the disk, waits for the autologin shell; returns the session and the time it took. */
  async function boot(extra: string): Promise<{ g: GuestSession; ms: number }> {
    const t0 = Date.now();
    const g = new GuestSession(['--disk', disk, '--extra', extra]);
    await g.waitFor('PVBOX-READY', 600_000);
    await g.waitFor(/root@pvbox:~# /, 300_000);
    const ms = Date.now() - t0;
    await g.sh('dmesg -n 1'); // kernel messages on the console would interleave with command output
    return { g, ms };
  }

  test('pvbox image, boot, write, reboot (exit 3), boot, read back, poweroff (exit 0), e2fsck clean', { timeout: 60 * 60_000 }, async (t) => {
    const t0 = Date.now();
    const built = pvbox(['image', '--out', img], 50 * 60_000);
    assert.equal(built.status, 0, built.stderr);
    assert.equal(built.stdout.trim(), img);
    t.diagnostic(`pvbox image: ${seconds(Date.now() - t0)} (${/debootstrap/.test(built.stderr) ? 'built with debootstrap' : 'from the cache'})`);

    const first = await boot('root=/dev/xvda');
    t.diagnostic(`first boot to the autologin shell: ${seconds(first.ms)}`);
    let data: string;
    try {
      const { g } = first;
      assert.match(await g.sh('cat /proc/cmdline'), /(^| )root=\/dev\/xvda( |$)/m);
      // Mounted read-only by the initramfs, fsck'd and remounted read-write by pvbox-sysinit from fstab.
      const mount = (await g.sh('findmnt -n -o SOURCE,FSTYPE,OPTIONS /')).trim().split(/\s+/);
      assert.deepEqual(mount.slice(0, 2), ['/dev/xvda', 'ext4']);
      assert.match(mount[2]!, /^rw,/);
      assert.match((await g.sh('cat /etc/debian_version')).trim(), /^12\./);
      assert.equal((await g.sh('cat /proc/1/comm')).trim(), 'init', 'PID 1 is the disk\'s init, not the initramfs shell');
      // The guest kernel's own modules are on the disk.
      assert.match(await g.sh('modprobe -v loop && grep -c "^loop " /proc/modules'), /^1$/m);
      data = /^([0-9a-f]{32}) /m.exec(await g.sh('head -c 1048576 /dev/urandom > /root/survivor && sync && md5sum /root/survivor'))?.[1] ?? '';
      assert.match(data, /^[0-9a-f]{32}$/);
      g.proc.stdin.write('reboot\n');
      assert.equal(await g.exited, 3, 'reboot ends pvbox run with 3');
    } finally { first.g.kill(); }

    // Again, found by its label (busybox findfs) and mounted read-write from the start this time:
    // the boot must not fsck a mounted filesystem.
    const second = await boot('root=LABEL=root rw');
    t.diagnostic(`second boot (root=LABEL=root rw) to the autologin shell: ${seconds(second.ms)}`);
    try {
      const { g } = second;
      assert.match(second.g.output, /pvbox-sysinit: root is mounted read-write .*: not checked/);
      assert.match((await g.sh('findmnt -n -o SOURCE,OPTIONS /')).trim(), /^\/dev\/xvda\s+rw,/);
      assert.equal(/^([0-9a-f]{32}) /m.exec(await g.sh('md5sum /root/survivor'))?.[1], data);
      const t1 = Date.now();
      g.proc.stdin.write('poweroff\n');
      assert.equal(await g.exited, 0, 'poweroff ends pvbox run with 0');
      t.diagnostic(`poweroff: ${seconds(Date.now() - t1)}`);
    } finally { second.g.kill(); }

    ensureHostCommands({ e2fsck: 'e2fsprogs' }, 'checking the root disk');
    const fsck = spawnSync('e2fsck', ['-fn', img], { encoding: 'utf8' });
    assert.equal(fsck.status, 0, fsck.stdout + fsck.stderr);
  });

  test('the same root disk as qcow2 (made by qemu-img) boots, reads and writes; qemu-img check is clean', { timeout: 20 * 60_000 }, async (t) => {
    if (!existsSync(img)) { t.skip('no root disk (the previous test failed)'); return; }
    ensureHostCommands({ 'qemu-img': 'qemu-utils' }, 'the qcow2 root disk test');
    const q = join(dir, 'root.qcow2');
    const conv = spawnSync('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', img, q], { encoding: 'utf8' });
    assert.equal(conv.status, 0, conv.stderr);
    const g = new GuestSession(['--disk', `format=qcow2, vdev=xvda, access=rw, target=${q}`, '--extra', 'root=/dev/xvda']);
    try {
      await g.waitFor('PVBOX-READY', 600_000);
      await g.waitFor(/root@pvbox:~# /, 300_000);
      await g.sh('dmesg -n 1');
      assert.match((await g.sh('findmnt -n -o SOURCE,FSTYPE /')).trim(), /^\/dev\/xvda\s+ext4$/);
      // Reads: a file written before the conversion; writes: new clusters in the qcow2 file.
      assert.match(await g.sh('test -s /root/survivor && echo present'), /present/);
      assert.match(await g.sh('head -c 4194304 /dev/urandom > /root/in-qcow2 && sync && md5sum /root/in-qcow2 | cut -c1-32'), /^[0-9a-f]{32}$/m);
      g.proc.stdin.write('poweroff\n');
      assert.equal(await g.exited, 0);
    } finally { g.kill(); }
    const chk = spawnSync('qemu-img', ['check', q], { encoding: 'utf8' });
    assert.equal(chk.status, 0, chk.stdout + chk.stderr);
    assert.match(chk.stdout, /No errors were found/);
  });

  test('a root= device that never appears: one clear line, then the initramfs shell', { timeout: 600_000 }, async () => {
    const g = new GuestSession(['--extra', 'root=/dev/xvdz rootdelay=2']);
    try {
      await g.waitFor('PVBOX-READY', 300_000);
      assert.match(g.output, /pvbox-init: root device \/dev\/xvdz did not appear within 2 s/);
      assert.match(g.output, /pvbox-init: root=\/dev\/xvdz not mounted; starting the initramfs shell instead/);
      await g.waitFor('# ', 30_000);
      g.proc.stdin.write('poweroff -f\n');
      assert.equal(await g.exited, 0);
    } finally { g.kill(); }
  });
});
