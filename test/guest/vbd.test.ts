// PV block devices (issue 4, first step): xen-blkfront in the stock guest reads and writes raw images through pvbox's blkback; a read-only disk refuses writes; bad specs and images get one line.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ensureDefaultImage } from '../../src/images/debian.js';
import { GuestSession, PVBOX } from './harness.js';

const dir = mkdtempSync(join(tmpdir(), 'pvbox-vbd-'));
const md5 = (b: Uint8Array) => createHash('md5').update(b).digest('hex');

test('a raw image as xvda (rw) and xvdb (ro): checksums match the host, writes reach the file, the read-only disk refuses writes', { timeout: 900_000 }, async () => {
  const img = await ensureDefaultImage();
  const a = join(dir, 'a.img'), b = join(dir, 'b.img');
  writeFileSync(a, randomBytes(32 << 20));
  writeFileSync(b, randomBytes(8 << 20));
  const g = new GuestSession(['--kernel', img.kernel, '--ramdisk', img.initrd,
    '--disk', `format=raw, vdev=xvda, access=rw, target=${a}`, '--disk', `file:${b},xvdb,r`]);
  try {
    await g.waitFor('PVBOX-READY', 240_000);
    await g.waitFor('# ', 30_000);
    await g.sh('dmesg -n 1'); // kernel messages on the console would interleave with command output
    const hash = (out: string) => /[0-9a-f]{32}/.exec(out)?.[0];
    assert.equal((await g.sh('cat /sys/block/xvda/size /sys/block/xvdb/size /sys/block/xvdb/ro')).trim().split('\n').join(' '), `${(32 << 20) / 512} ${(8 << 20) / 512} 1`);
    assert.equal(hash(await g.sh('md5sum /dev/xvda', 600_000)), md5(readFileSync(a)));
    assert.equal(hash(await g.sh('md5sum /dev/xvdb', 600_000)), md5(readFileSync(b)));
    // 1 MiB of new data at 4 MiB, flushed; the host file must hold it.
    const out = await g.sh('dd if=/dev/urandom of=/tmp/w bs=1M count=1 2>/dev/null; dd if=/tmp/w of=/dev/xvda bs=1M seek=4 conv=fsync 2>/dev/null; md5sum /tmp/w | cut -c1-32', 600_000);
    const file = readFileSync(a);
    assert.equal(md5(file.subarray(4 << 20, 5 << 20)), hash(out));
    // The read-only disk: the write fails inside the guest (blkfront sees BLKIF_RSP_ERROR or the ro flag), the image is unchanged.
    const before = md5(readFileSync(b));
    const ro = await g.sh('dd if=/dev/zero of=/dev/xvdb bs=4k count=1 conv=fsync 2>&1; echo rc=$?');
    assert.match(ro, /rc=[1-9]/, ro);
    assert.equal(md5(readFileSync(b)), before);
    g.proc.stdin.write('poweroff -f\n');
    assert.equal(await g.exited, 0);
  } finally { g.kill(); }
});

test('bad disk specs and images: one line each', () => {
  const run = (...args: string[]) => spawnSync(process.execPath, [PVBOX, 'run', '--kernel', process.execPath, ...args], { encoding: 'utf8', input: '', timeout: 60_000 });
  for (const [spec, pattern] of [
    ['format=vhd, vdev=xvda, target=/x', /format 'vhd' is not supported/],
    ['target=/x, vdev=sda', /vdev 'sda' is not xvda/],
    ['vdev=xvda', /no target/],
    ['target=/x, vdev=xvda, access=maybe', /access 'maybe'/],
    ['target=/x, vdev=xvda, colour=blue', /unknown key 'colour'/],
  ] as const) {
    const r = run('--disk', spec);
    assert.notEqual(r.status, 0);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, pattern);
  }
  const dup = run('--disk', 'target=/x,vdev=xvda', '--disk', 'target=/y,vdev=xvda');
  assert.match(dup.stderr, /same vdev/);
});

test('a missing image is refused before the guest starts', async () => {
  const img = await ensureDefaultImage();
  const r = spawnSync(process.execPath, [PVBOX, 'run', '--kernel', img.kernel, '--ramdisk', img.initrd, '--disk', `target=${join(dir, 'nope.img')},vdev=xvda`], { encoding: 'utf8', input: '', timeout: 120_000, env: { ...process.env, PVBOX_RUNDIR: dir } });
  assert.notEqual(r.status, 0);
  assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  assert.match(r.stderr, /disk xvda: disk image .*nope\.img does not exist/);
});
