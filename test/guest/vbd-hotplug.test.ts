// Block devices while the guest runs (issue 4: hot-plug, qcow2, locking): `pvbox block-attach` gives the running Debian guest a qcow2 disk made by qemu-img on a backing file, the guest reads what the host sees and writes to it, QEMU's tools are locked out meanwhile, `pvbox block-detach` takes it away, and `qemu-img check` is clean afterwards.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { ensureDefaultImage } from '../../src/images/debian.js';
import { ensureHostCommands } from '../../src/images/host-packages.js';
import { GuestSession, PVBOX } from './harness.js';

const dir = mkdtempSync(join(tmpdir(), 'pvbox-vbd-hotplug-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const md5 = (b: Uint8Array) => createHash('md5').update(b).digest('hex');
const hash = (out: string) => /[0-9a-f]{32}/.exec(out)?.[0];

function sh(cmd: string, args: string[]): { status: number | null; stdout: string; stderr: string } {
  return spawnSync(cmd, args, { encoding: 'utf8', timeout: 120_000 });
}

/** The qcow2 image's guest-visible bytes, as QEMU reads them (backing file included). */
function qcowBytes(path: string): Buffer {
  const out = join(dir, `flat-${randomBytes(3).toString('hex')}.raw`);
  const r = sh('qemu-img', ['convert', '-U', '-f', 'qcow2', '-O', 'raw', path, out]);
  assert.equal(r.status, 0, r.stderr);
  return readFileSync(out);
}

test('block-attach a qcow2 disk (on a raw backing file) to a running guest, use it, block-detach it; qemu-img check is clean', { timeout: 900_000 }, async () => {
  ensureHostCommands({ 'qemu-img': 'qemu-utils' }, 'the qcow2 hot-plug test');
  const img = await ensureDefaultImage();
  const a = join(dir, 'a.img'), base = join(dir, 'base.raw'), top = join(dir, 'top.qcow2');
  writeFileSync(a, randomBytes(4 << 20));
  writeFileSync(base, randomBytes(16 << 20));
  let r = sh('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'raw', '-b', base, top, '16M']);
  assert.equal(r.status, 0, r.stderr);
  // Some clusters of the top image written by QEMU itself, the rest still from the backing file.
  r = sh('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x5a 1M 192k', top]);
  assert.equal(r.status, 0, r.stderr);
  const runDir = mkdtempSync(join(dir, 'run-'));
  const env = { ...process.env, PVBOX_RUNDIR: runDir };
  const pvbox = (...args: string[]) => spawnSync(process.execPath, [PVBOX, ...args], { encoding: 'utf8', env, timeout: 120_000 });

  // xvda at boot loads xen-blkfront (the busybox guest has no udev to load it for a hot-plugged disk).
  const g = new GuestSession(['--kernel', img.kernel, '--ramdisk', img.initrd, '--name', 'hot', '--disk', `format=raw, vdev=xvda, access=rw, target=${a}`], env);
  try {
    await g.waitFor('PVBOX-READY', 240_000);
    await g.waitFor('# ', 30_000);
    await g.sh('dmesg -n 1');
    assert.equal((await g.sh('ls /sys/block')).includes('xvdb'), false);

    const att = pvbox('block-attach', 'hot', `format=qcow2, vdev=xvdb, access=rw, target=${top}`);
    assert.equal(att.status, 0, att.stderr);
    assert.match(await g.sh('i=0; while [ ! -e /sys/block/xvdb ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; cat /sys/block/xvdb/size'), /^32768$/m);
    // The guest reads exactly what QEMU reads from the chain.
    assert.equal(hash(await g.sh('md5sum /dev/xvdb', 300_000)), md5(qcowBytes(top)));

    // While pvbox holds it, QEMU's tools cannot take it for writing (QEMU-compatible image locks).
    const locked = sh('qemu-io', ['-f', 'qcow2', '-c', 'read 0 4k', top]);
    assert.notEqual(locked.status, 0);
    assert.match(locked.stderr, /lock/i);
    // A second attach of the same vdev, a missing image and an unknown disk: one line each.
    for (const [args, pattern] of [
      [['block-attach', 'hot', `format=raw, vdev=xvda, target=${a}`], /xvda is already attached/],
      [['block-attach', 'hot', `format=raw, vdev=xvdc, target=${join(dir, 'nope.img')}`], /nope\.img does not exist/],
      [['block-attach', 'hot', `format=raw, vdev=xvdc, target=${top}`], /in use by another process/],
      [['block-detach', 'hot', 'xvdz'], /no disk 'xvdz'/],
      [['block-attach', 'nosuchguest', `format=raw, vdev=xvdc, target=${a}`], /no running domain 'nosuchguest'/],
    ] as const) {
      const e = pvbox(...args);
      assert.notEqual(e.status, 0, args.join(' '));
      assert.equal(e.stderr.trim().split('\n').length, 1, e.stderr);
      assert.match(e.stderr, pattern);
    }

    // Writes: 256 KiB across the QEMU-written clusters and backing-only ones, flushed.
    const w = await g.sh('dd if=/dev/urandom of=/tmp/w bs=64k count=4 2>/dev/null; dd if=/tmp/w of=/dev/xvdb bs=64k seek=17 conv=fsync 2>/dev/null; md5sum /tmp/w', 300_000);
    const det = pvbox('block-detach', 'hot', 'xvdb');
    assert.equal(det.status, 0, det.stderr);
    assert.match(await g.sh('ls /sys/block'), /xvda/);
    assert.doesNotMatch(await g.sh('ls /sys/block'), /xvdb/);

    const chk = sh('qemu-img', ['check', top]);
    assert.equal(chk.status, 0, chk.stdout + chk.stderr);
    assert.match(chk.stdout, /No errors were found/);
    const flat = qcowBytes(top);
    assert.equal(md5(flat.subarray(17 * 65536, 21 * 65536)), hash(w));
    // Outside the written range: QEMU's pattern and the backing file, untouched.
    assert.ok(flat.subarray((1 << 20), (1 << 20) + 65536).every((x) => x === 0x5a));
    assert.equal(md5(flat.subarray(4 << 20)), md5(readFileSync(base).subarray(4 << 20)));

    g.proc.stdin.write('poweroff -f\n');
    assert.equal(await g.exited, 0);
  } finally { g.kill(); }
});
