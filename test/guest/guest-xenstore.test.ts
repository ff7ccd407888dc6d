// Inside a standalone guest (no pvbox xenstored): /sys/hypervisor says Xen 4.17, and Debian's xenstore-utils in the default image talk to XenStore through /dev/xen/xenbus as the guest's own domain, with its permissions (issue 3, item 8).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ensureDefaultImage } from '../../src/images/debian.js';
import { GuestSession } from './harness.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

test('in the guest: /sys/hypervisor, xenfs, /dev/xen/xenbus and xenstore-utils as the domain itself', { timeout: 900_000 }, async () => {
  const img = await ensureDefaultImage();
  // A socket path nobody serves: the guest gets pvbox run's private store even if a daemon runs elsewhere.
  const dir = mkdtempSync(join(tmpdir(), 'pvbox-guestxs-'));
  const env = { ...process.env, XENSTORED_PATH: join(dir, 'socket') };
  const name = 'guest-xs';
  const g = new GuestSession(['--kernel', img.kernel, '--ramdisk', img.initrd, '--name', name], env);
  try {
    await g.waitFor('PVBOX-READY', 240_000);
    await g.waitFor('# ', 30_000);
    const sh = async (cmd: string) => (await g.sh(cmd)).trim();

    // /sys/hypervisor
    assert.equal(await sh('cat /sys/hypervisor/type'), 'xen');
    const uuid = await sh('cat /sys/hypervisor/uuid');
    assert.match(uuid, UUID);
    assert.notEqual(uuid, '00000000-0000-0000-0000-000000000000');
    assert.equal(await sh('echo $(cat /sys/hypervisor/version/major).$(cat /sys/hypervisor/version/minor)'), '4.17');
    assert.match(await sh('cat /sys/hypervisor/properties/capabilities'), /(^|\s)xen-3\.0-x86_64(\s|$)/);

    // xenfs on /proc/xen and the xenbus device libxenstore opens first.
    assert.match(await sh('grep " /proc/xen " /proc/mounts'), /^xenfs \/proc\/xen xenfs /);
    assert.match(await sh('ls /proc/xen'), /\bxenbus\b/);
    assert.match(await sh('ls -l /dev/xen/xenbus'), /^c.* 10, +\d+ .*\/dev\/xen\/xenbus$/);
    assert.equal(await sh('grep -c " xen/xenbus$" /proc/misc'), '1');

    // Relative paths are the domain's home, /local/domain/<domid>.
    assert.equal(await sh('xenstore-read name'), name);
    const domid = await sh('xenstore-read domid');
    assert.match(domid, /^[1-9]\d*$/);
    assert.equal(await sh(`xenstore-read /local/domain/${domid}/name`), name);
    assert.equal(await sh('xenstore-read vm'), `/vm/${uuid}`, 'the domain\'s vm node names the uuid /sys/hypervisor shows');
    // libxenstore's fallback device (xenfs) reaches the same store.
    assert.equal(await sh('XENSTORED_PATH=/proc/xen/xenbus xenstore-read name'), name);

    // xenstore-ls of the domain's home.
    const ls = await sh(`xenstore-ls /local/domain/${domid} | cat; echo rc=$?`);
    assert.match(ls, /rc=0$/, ls);
    assert.match(ls, new RegExp(`^name = "${name}"$`, 'm'), ls);
    assert.match(ls, new RegExp(`^domid = "${domid}"$`, 'm'), ls);
    assert.match(ls, /^memory = ""$/m, ls);
    assert.match(ls, /^ target = "\d+"$/m, ls);
    assert.match(ls, /^control = ""$/m, ls);
    assert.match(ls, /^ shutdown = ""$/m, ls);
    assert.match(ls, /^cpu = ""$/m, ls);
    assert.match(ls, /^store = ""$/m, ls);
    assert.match(ls, /^console = ""$/m, ls);
    // The guest's own drivers wrote here too (drivers/xen/manage.c).
    assert.match(ls, /^ feature-poweroff = "1"$/m, ls);

    // Write and read back in the guest-writable data/ directory.
    assert.equal(await sh('xenstore-write data/test hello; echo rc=$?'), 'rc=0');
    assert.equal(await sh('xenstore-read data/test'), 'hello');
    assert.equal(await sh(`xenstore-read /local/domain/${domid}/data/test`), 'hello');
    assert.equal(await sh('xenstore-exists data/test; echo rc=$?'), 'rc=0');
    assert.match(await sh('xenstore-list data'), /^test$/m);
    // It may set the permissions of a node it owns, but not give the node away (EPERM).
    assert.equal(await sh(`xenstore-chmod data/test n${domid} r0; echo rc=$?`), 'rc=0');
    assert.match(await sh('xenstore-ls -p data | cat'), new RegExp(`^test = "hello" .*\\(n${domid},r0\\)$`, 'm'));
    assert.match(await sh('xenstore-chmod data/test n0; echo rc=$?'), /Operation not permitted[\s\S]*rc=1$/);
    assert.equal(await sh('xenstore-rm data/test; xenstore-exists data/test; echo rc=$?'), 'rc=1');

    // A watch through the device: xenstore-watch sees its registration event and one write, then exits
    // cleanly (its reader thread is cancelled on exit, which needs libgcc_s in the image).
    const watch = await sh('(sleep 1; xenstore-write data/w 1) & timeout 30 xenstore-watch -n 2 data/w; echo rc=$?; wait');
    assert.deepEqual(watch.split('\n').map((l) => l.trim()).filter(Boolean), ['data/w', 'data/w', 'rc=0'], watch);

    // Nodes it may not write: Domain-0's name (owner 0, no access for others) and its own read-only name.
    const denied = await sh('xenstore-write /local/domain/0/name evil; echo rc=$?');
    assert.match(denied, /could not write path \/local\/domain\/0\/name/, denied);
    assert.match(denied, /rc=1$/, denied);
    assert.match(await sh('xenstore-write name evil; echo rc=$?'), /rc=1$/);
    assert.equal(await sh('xenstore-read name'), name, 'its name is unchanged');
    // The error is EACCES: send XS_WRITE (11) by hand through /dev/xen/xenbus and read XS_ERROR (16) back.
    // Header: type, req_id 0x1234, tx_id 0, len 25 ("/local/domain/0/name\0evil"), little-endian u32s.
    const raw = await sh(
      "exec 3<>/dev/xen/xenbus; " +
        "printf '\\013\\000\\000\\000\\064\\022\\000\\000\\000\\000\\000\\000\\031\\000\\000\\000/local/domain/0/name\\000evil' >&3; " +
        'dd bs=4096 count=1 <&3 2>/dev/null > /tmp/reply; exec 3<&-; ' +
        'od -An -tu4 -N16 /tmp/reply; tail -c +17 /tmp/reply | tr "\\000" "\\n"',
    );
    const [header, payload] = [raw.split('\n')[0]!.trim().split(/\s+/), raw.split('\n').slice(1).join('\n').trim()];
    assert.deepEqual(header, ['16', String(0x1234), '0', '7'], raw);
    assert.equal(payload, 'EACCES', raw);

    g.proc.stdin.write('poweroff -f\n');
    assert.equal(await g.exited, 0, `pvbox exit status (stderr: ${g.stderr.slice(-400)})`);
    assert.match(g.stderr, /powered off/);
  } finally {
    g.kill();
    rmSync(dir, { recursive: true, force: true });
  }
});
