// The real guest: Debian 12's stock kernel boots under pvbox to a shell on hvc0 and does real work (issue: first boot).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ensureDefaultImage, type KernelFlavour } from '../../src/images/debian.js';
import { GuestSession } from './harness.js';
import { nxTestElf } from './nx-elf.js';

const BOOT_TIMEOUT = 240_000;

async function bootAndCheck(flavour: KernelFlavour, nx = false): Promise<void> {
  const img = await ensureDefaultImage({ flavour });
  const g = new GuestSession(['--kernel', img.kernel, '--ramdisk', img.initrd, '--memory', '512']);
  try {
    await g.waitFor('PVBOX-READY', BOOT_TIMEOUT);
    await g.waitFor('# ', 30_000);
    await g.sh('dmesg -n 1'); // kernel messages on the console would interleave with command output
    assert.equal((await g.sh('cat /sys/hypervisor/type')).trim(), 'xen');
    assert.equal((await g.sh('uname -r')).trim(), img.kernelVersion);
    // fork + exec 200 processes
    assert.equal((await g.sh('i=0; while [ $i -lt 200 ]; do /bin/true || break; i=$((i+1)); done; echo $i', 600_000)).trim(), '200');
    // 64 MiB through tmpfs, read back with matching checksums
    const sums = (await g.sh('dd if=/dev/urandom of=/tmp/a bs=1M count=64 2>/dev/null; cp /tmp/a /tmp/b; md5sum /tmp/a /tmp/b | cut -d" " -f1', 600_000))
      .split('\n').map((l) => l.trim()).filter((l) => /^[0-9a-f]{32}$/.test(l));
    assert.equal(sums.length, 2, `expected two checksums, got: ${sums.join(',')}`);
    assert.equal(sums[0], sums[1]);
    if (nx) {
      // Execshield: the same bytes run from the executable mapping (exit 0) and fault from the data mapping (SIGSEGV, 139).
      const b64 = Buffer.from(nxTestElf()).toString('base64');
      const out = await g.sh(`echo ${b64} | base64 -d > /tmp/nx; chmod +x /tmp/nx; /tmp/nx; echo rc=$?; /tmp/nx data; echo rc=$?`);
      assert.deepEqual(out.match(/rc=\d+/g), ['rc=0', 'rc=139'], out);
    }
    g.proc.stdin.write('poweroff -f\n');
    assert.equal(await g.exited, 0, `pvbox exit status (stderr: ${g.stderr.slice(-400)})`);
    assert.match(g.stderr, /powered off/);
  } finally {
    g.kill();
  }
}

test('default guest (XZ bzImage) boots to a shell, runs programs and powers off', { timeout: 1_200_000 }, () => bootAndCheck('amd64', true));
test('cloud kernel (LZ4 bzImage) boots and does the same', { timeout: 1_200_000 }, () => bootAndCheck('cloud-amd64'));
