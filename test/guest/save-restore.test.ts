// xl save / xl restore (issue 6): a guest with a disk is saved to a file (it suspends itself; the domain is gone), restored into a new domain, and carries on — its shell's variables and a tmpfs file survive, the clock goes on, the console and the disk work again.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { ensureDefaultImage } from '../../src/images/debian.js';
import { ConsoleClient, consoleSh, pvboxCli } from './harness.js';

const dir = mkdtempSync(join(tmpdir(), 'pvbox-save-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const env = { ...process.env, PVBOX_RUNDIR: join(dir, 'run') };

const { pvbox, ok } = pvboxCli(env, dir);
const sh = consoleSh;

test('save a running guest with a disk, restore it: shell state, tmpfs, clock, console and disk carry on', { timeout: 900_000 }, async () => {
  const img = await ensureDefaultImage();
  const disk = join(dir, 'disk.img');
  writeFileSync(disk, randomBytes(4 << 20));
  const md5 = createHash('md5').update(readFileSync(disk)).digest('hex');
  const cfg = join(dir, 'sr.cfg');
  writeFileSync(cfg, `name = "srguest"\nmemory = 256\nkernel = "${img.kernel}"\nramdisk = "${img.initrd}"\nextra = "console=hvc0"\ndisk = [ 'format=raw, vdev=xvda, access=rw, target=${disk}' ]\n`);
  ok('create', cfg);
  let c: ConsoleClient | undefined;
  try {
    c = new ConsoleClient('srguest', env);
    assert.ok(await c.sees('PVBOX-READY', 240_000), c.seen.slice(-2000));
    await sh(c, 'dmesg -n 1; KEEP=kept-$((6*7)); echo tmpfs-data > /tmp/state; cat /proc/uptime > /tmp/up0');
    assert.match(await sh(c, 'md5sum /dev/xvda'), new RegExp(md5));
    await c.close();
    c = undefined;

    // Bad input first: an unknown domain, a relative path is made absolute, a missing directory.
    assert.match(pvbox('save', 'nosuch', join(dir, 'x.sav')).stderr, /no running domain 'nosuch'/);
    const badDir = pvbox('save', 'srguest', join(dir, 'no', 'such', 'dir', 'x.sav'));
    assert.notEqual(badDir.status, 0);
    assert.equal(badDir.stderr.trim().split('\n').length, 1, badDir.stderr);

    const file = join(dir, 'srguest.sav');
    ok('save', 'srguest', file);
    assert.ok(statSync(file).size > 1 << 20);
    // The domain is gone: not listed, its control socket removed, its image unlocked.
    for (let i = 0; i < 50 && ok('list').includes('srguest'); i++) await new Promise((r) => setTimeout(r, 100));
    assert.doesNotMatch(ok('list'), /srguest/);

    // A file that is not a save file: one line.
    writeFileSync(join(dir, 'junk.sav'), 'not a save file');
    const junk = pvbox('restore', join(dir, 'junk.sav'));
    assert.notEqual(junk.status, 0);
    assert.match(junk.stderr, /is not a pvbox save file/);

    // A truncated save file: one line, and no domain is left behind.
    const cut = join(dir, 'cut.sav');
    writeFileSync(cut, readFileSync(file).subarray(0, statSync(file).size >> 1));
    const trunc = pvbox('restore', cut);
    assert.notEqual(trunc.status, 0);
    assert.match(trunc.stderr, /truncated/);
    assert.equal(trunc.stderr.trim().split('\n').length, 1, trunc.stderr);
    assert.doesNotMatch(ok('list'), /srguest/);

    ok('restore', file);
    const restoredAt = Date.now();
    assert.match(ok('list'), /^srguest +\d+ +256 +1 /m);
    c = new ConsoleClient('srguest', env);
    await new Promise((r) => setTimeout(r, 1000));
    // The shell is the same process: its variable and the tmpfs file are there, time went on.
    assert.match(await sh(c, 'echo $KEEP; cat /tmp/state'), /kept-42\ntmpfs-data/);
    const [up0, up1] = (await sh(c, 'cut -d" " -f1 /tmp/up0 /proc/uptime')).trim().split('\n').map(Number);
    assert.ok(up1! > up0!, `uptime ${up0} → ${up1}`);
    // The disk reconnected (blkfront resumed on a new backend) and reads the same bytes; new processes run.
    assert.match(await sh(c, 'md5sum /dev/xvda; ls /sys/block'), new RegExp(md5));
    assert.match(await sh(c, 'for i in 1 2 3; do sh -c "echo child-$i"; done'), /child-1\nchild-2\nchild-3/);
    // A reboot after the restore boots the guest again from its config (on_reboot = restart; not
    // within 10 s of a start, which the domain process treats as a crash loop).
    await new Promise((r) => setTimeout(r, Math.max(0, 11_000 - (Date.now() - restoredAt))));
    const mark = c.seen.length;
    c.proc.stdin.write('reboot -f\n');
    for (const end = Date.now() + 300_000; Date.now() < end && !c.seen.slice(mark).includes('PVBOX-READY'); await new Promise((r) => setTimeout(r, 200)));
    assert.match(c.seen.slice(mark), /PVBOX-READY/);
    await c.close();
    c = new ConsoleClient('srguest', env);
    await new Promise((r) => setTimeout(r, 1000));
    assert.match(await sh(c, 'echo "[$KEEP]"; ls /tmp/state 2>&1'), /\[\]\n.*No such file/);
    c.proc.stdin.write('poweroff -f\n');
    for (let i = 0; i < 100 && ok('list').includes('srguest'); i++) await new Promise((r) => setTimeout(r, 200));
    assert.doesNotMatch(ok('list'), /srguest/);
  } finally {
    await c?.close();
    if (ok('list').includes('srguest')) pvbox('destroy', 'srguest');
  }
  assert.ok(!existsSync(join(dir, 'srguest.sav.tmp')));
});
