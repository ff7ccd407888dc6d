// A filesystem on a pvbox disk (issue 4): ext4 on a sparse raw image, 256 MiB of random data copied in by the guest and synced, the checksum the guest computes equals the one the host computes from the image's file; deleting it and fstrim (discard) shrink the image's allocated blocks.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { ensureDefaultImage } from '../../src/images/debian.js';
import { ensureHostCommands } from '../../src/images/host-packages.js';
import { GuestSession } from './harness.js';

const dir = mkdtempSync(join(tmpdir(), 'pvbox-vbd-ext4-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const MIB = 256;

test(`ext4 on xvdb: ${MIB} MiB of random data, synced, checksums agree with the host; fstrim gives the space back to the image`, { timeout: 1_200_000 }, async () => {
  ensureHostCommands({ 'mkfs.ext4': 'e2fsprogs', debugfs: 'e2fsprogs', e2fsck: 'e2fsprogs' }, 'the ext4 disk test');
  const img = await ensureDefaultImage();
  // xvdb: a sparse 512 MiB image with a fresh ext4 (made on the host: the busybox guest has no mkfs.ext4).
  const fs = join(dir, 'fs.img'), src = join(dir, 'random.img');
  spawnSync('truncate', ['-s', '512M', fs]);
  const mk = spawnSync('mkfs.ext4', ['-q', '-F', '-E', 'lazy_itable_init=0,lazy_journal_init=0,discard', fs], { encoding: 'utf8' });
  assert.equal(mk.status, 0, mk.stderr);
  // xvdc: the random data, generated on the host (the guest kernel's RNG runs in emulated ring 0 here).
  const data = randomBytes(MIB << 20);
  writeFileSync(src, data);
  const want = createHash('sha256').update(data).digest('hex');
  const blocks0 = statSync(fs).blocks;

  const g = new GuestSession(['--kernel', img.kernel, '--ramdisk', img.initrd, '--memory', '768',
    '--disk', `format=raw, vdev=xvdb, access=rw, target=${fs}`, '--disk', `format=raw, vdev=xvdc, access=ro, target=${src}`]);
  try {
    await g.waitFor('PVBOX-READY', 240_000);
    await g.waitFor('# ', 30_000);
    await g.sh('dmesg -n 1; mkdir -p /mnt && mount -t ext4 /dev/xvdb /mnt');
    await g.sh(`dd if=/dev/xvdc of=/mnt/random bs=1M count=${MIB} 2>/dev/null; sync`, 900_000);
    // Read back through a cold cache: the checksum comes from the disk, not from memory.
    const inGuest = await g.sh('echo 3 > /proc/sys/vm/drop_caches; sha256sum /mnt/random', 900_000);
    assert.equal(/[0-9a-f]{64}/.exec(inGuest)?.[0], want);
    const blocksFull = statSync(fs).blocks;
    assert.ok(blocksFull * 512 > (MIB << 20), `image allocated ${blocksFull * 512} bytes after the copy`);

    // The host reads the same file out of the image.
    const out = join(dir, 'dumped');
    const dump = spawnSync('debugfs', ['-R', `dump /random ${out}`, fs], { encoding: 'utf8' });
    assert.equal(dump.status, 0, dump.stderr);
    assert.equal(createHash('sha256').update(readFileSync(out)).digest('hex'), want);
    rmSync(out);

    // Delete and trim: blkfront's discards punch holes in the sparse image.
    await g.sh('rm /mnt/random; sync; fstrim /mnt', 300_000);
    const blocksTrimmed = statSync(fs).blocks;
    assert.ok(blocksTrimmed < blocksFull - ((MIB - 16) << 20) / 512, `allocated blocks ${blocks0} → ${blocksFull} → ${blocksTrimmed} after fstrim`);
    await g.sh('umount /mnt');
    g.proc.stdin.write('poweroff -f\n');
    assert.equal(await g.exited, 0);
  } finally { g.kill(); }
  const fsck = spawnSync('e2fsck', ['-fn', fs], { encoding: 'utf8' });
  assert.equal(fsck.status, 0, fsck.stdout + fsck.stderr);
});
