// Durability (issue 4): SIGKILL pvbox during a write-heavy guest workload with periodic syncs. After a restart (the guest kernel replays the ext4 journal), e2fsck finds the filesystem clean and every file written before a completed sync is intact: a flush is only answered once the data is on stable storage, and no write is acknowledged before it reaches the image.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { ensureDefaultImage } from '../../src/images/debian.js';
import { ensureHostCommands } from '../../src/images/host-packages.js';
import { GuestSession } from './harness.js';

const dir = mkdtempSync(join(tmpdir(), 'pvbox-vbd-crash-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const FILE_BYTES = 128 * 1024;
/** What `yes "pvbox N" | head -c FILE_BYTES` writes. */
const expected = (i: number) => Buffer.from(`pvbox ${i}\n`.repeat(Math.ceil(FILE_BYTES / 8))).subarray(0, FILE_BYTES);

test('SIGKILL during writes with periodic sync: after restart e2fsck is clean and every synced file is intact', { timeout: 900_000 }, async () => {
  ensureHostCommands({ 'mkfs.ext4': 'e2fsprogs', e2fsck: 'e2fsprogs', debugfs: 'e2fsprogs' }, 'the crash test');
  const img = await ensureDefaultImage();
  const disk = join(dir, 'data.img');
  writeFileSync(disk, '');
  let r = spawnSync('mkfs.ext4', ['-q', '-F', '-E', 'lazy_itable_init=0,lazy_journal_init=0', disk, '64M'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const args = ['--kernel', img.kernel, '--ramdisk', img.initrd, '--disk', `format=raw, vdev=xvda, access=rw, target=${disk}`];

  // Boot 1: write files forever, `sync` after every fourth and say so; killed at a random moment.
  const g = new GuestSession(args);
  let lastSynced = -1;
  try {
    await g.waitFor('PVBOX-READY', 240_000);
    await g.waitFor('# ', 30_000);
    await g.sh('dmesg -n 1; mkdir -p /mnt && mount -t ext4 /dev/xvda /mnt');
    g.proc.stdin.write('i=0; while true; do yes "pvbox $i" | head -c ' + FILE_BYTES + ' > /mnt/f$i; i=$((i+1)); if [ $((i % 4)) = 0 ]; then sync; echo SYNCED $((i-1)); fi; done\n');
    await g.waitFor(/SYNCED 23\b/, 600_000);
    await new Promise((res) => setTimeout(res, Math.floor(Math.random() * 1500)));
    g.proc.kill('SIGKILL');
    await g.exited;
    for (const m of g.output.matchAll(/SYNCED (\d+)/g)) lastSynced = Math.max(lastSynced, Number(m[1]));
  } finally { g.kill(); }
  assert.ok(lastSynced >= 23, `last synced file ${lastSynced}`);

  // Boot 2: the guest kernel mounts the filesystem (replaying its journal) and unmounts it cleanly.
  const g2 = new GuestSession(args);
  try {
    await g2.waitFor('PVBOX-READY', 240_000);
    await g2.waitFor('# ', 30_000);
    const out = await g2.sh('dmesg -n 1; mkdir -p /mnt && mount -t ext4 /dev/xvda /mnt && ls /mnt | wc -l && umount /mnt && echo UMOUNTED');
    assert.match(out, /UMOUNTED/);
    g2.proc.stdin.write('poweroff -f\n');
    assert.equal(await g2.exited, 0);
  } finally { g2.kill(); }

  r = spawnSync('e2fsck', ['-fn', disk], { encoding: 'utf8' });
  assert.equal(r.status, 0, `e2fsck: ${r.stdout}${r.stderr}`);
  // Every file up to the last completed sync, byte for byte.
  const outDir = mkdtempSync(join(dir, 'dump-'));
  r = spawnSync('debugfs', ['-R', `rdump / ${outDir}`, disk], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  for (let i = 0; i <= lastSynced; i++) {
    const got = readFileSync(join(outDir, `f${i}`));
    assert.ok(got.equals(expected(i)), `f${i} differs after the crash (synced up to f${lastSynced})`);
  }
});
