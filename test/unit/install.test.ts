// pvbox install without a guest: virt-install's options parsed and refused, the xl.cfg it writes read back by pvbox's xl.cfg parser, and a small ext4 image made bootable with debugfs (no mount) and read back by pvbox's pygrub-style bootloader.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { ImageError, UsageError } from '../../src/errors.js';
import { editExt4Image, ensureE2fsprogs, extlinuxConf, growExt4Image, makeBootable, ROOT_CMDLINE } from '../../src/images/guest-disk.js';
import { readBootFiles } from '../../src/toolstack/bootloader/pygrub.js';
import { installConfigText, osVariant, parseDiskOption, parseMemoryOption, parseNetworkOption, parseVcpusOption, type InstallRequest } from '../../src/toolstack/install.js';
import { parseXlConfig } from '../../src/toolstack/xl-cfg.js';

const dir = mkdtempSync(join(tmpdir(), 'pvbox-install-unit-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const GiB = 2 ** 30;

test("virt-install's --disk, --memory, --vcpus, --os and --network spellings", () => {
  assert.deepEqual(parseDiskOption('size=4'), { sizeBytes: 4 * GiB });
  assert.deepEqual(parseDiskOption('size=2.5,path=/srv/web1.img'), { sizeBytes: 2.5 * GiB, path: '/srv/web1.img' });
  assert.deepEqual(parseDiskOption('/srv/a.img,size=3,format=raw,bus=xen,sparse=yes'), { sizeBytes: 3 * GiB, path: '/srv/a.img' });
  // A fraction of a GiB is rounded up to whole MiB.
  assert.equal(parseDiskOption('size=2.0001').sizeBytes, 2 * GiB + 2 ** 20);
  for (const [bad, why] of [
    ['size=1', /at least 2/], ['size=big', /a size in GiB/], ['path=/x.img', /no size=/], ['size=4,colour=red', /unknown key 'colour'/],
    ['size=4,format=qcow2', /makes raw disks/], ['size=4,bus=virtio', /bus=xen/], ['size=20000', /at most 16384 GiB/], ['size=4,path=', /path= is empty/],
  ] as const) assert.throws(() => parseDiskOption(bad), (e: Error) => e instanceof UsageError && why.test(e.message), bad);

  assert.equal(parseMemoryOption('512'), 512);
  assert.equal(parseMemoryOption('memory=768,maxmemory=1024'), 768);
  for (const bad of ['32', '512m', '', 'lots']) assert.throws(() => parseMemoryOption(bad), UsageError, bad);
  assert.equal(parseVcpusOption('1'), 1);
  assert.throws(() => parseVcpusOption('2'), /one vCPU per guest/);
  assert.throws(() => parseVcpusOption('0'), /a number of vCPUs/);

  assert.equal(osVariant('debian12').suite, 'bookworm');
  assert.equal(osVariant('detect=on,name=debian12').id, 'debian12');
  assert.equal(osVariant('Bookworm').id, 'debian12');
  assert.throws(() => osVariant('win10'), /--os 'win10': pvbox installs debian12/);

  assert.equal(parseNetworkOption('none'), undefined);
  const vif = parseNetworkOption('bridge=br0,mac=00:16:3E:0A:0B:0C,model=virtio')!;
  assert.deepEqual([vif.bridge, vif.mac, vif.devid], ['br0', '00:16:3e:0a:0b:0c', 0]);
  assert.match(parseNetworkOption('bridge=br0')!.mac, /^00:16:3e:[0-7][0-9a-f](:[0-9a-f]{2}){2}$/, 'a MAC in Xen\'s OUI is chosen once, at install');
  assert.throws(() => parseNetworkOption('network=default'), /no libvirt networks/);
  assert.throws(() => parseNetworkOption('mac=00:16:3e:00:00:01'), /no bridge=/);
  assert.throws(() => parseNetworkOption('bridge=br0,mac=01:00:5e:00:00:01'), /multicast/);
  assert.throws(() => parseNetworkOption('bridge=br0,portgroup=x'), /unknown key 'portgroup'/);
});

test('the xl.cfg install writes is read back by pvbox create: pygrub, the disk, the vif and its MAC, on_reboot restart', () => {
  const req: InstallRequest = {
    name: 'web1', memoryMiB: 512, vcpus: 1, os: osVariant('debian12'), disk: { sizeBytes: 4 * GiB, path: '/var/lib/pvbox/images/web "1".img' },
    vif: parseNetworkOption('bridge=xenbr0,mac=00:16:3e:01:02:03')!, configPath: '/etc/pvbox/web1.cfg',
  };
  const text = installConfigText(req, '6.1.0-56-amd64', new Date('2025-01-02T03:04:05Z'));
  const cfg = parseXlConfig('/etc/pvbox/web1.cfg', text);
  assert.deepEqual(cfg.warnings, []);
  assert.equal(cfg.name, 'web1');
  assert.equal(cfg.memoryMiB, 512);
  assert.equal(cfg.vcpus, 1);
  assert.equal(cfg.bootloader?.key, 'bootloader');
  assert.deepEqual(cfg.disks.map((d) => [d.target, d.vdev, d.readonly, d.format]), [['/var/lib/pvbox/images/web "1".img', 'xvda', false, 'raw']]);
  assert.deepEqual(cfg.vifs.map((v) => [v.mac, v.bridge]), [['00:16:3e:01:02:03', 'xenbr0']]);
  assert.deepEqual([cfg.onPoweroff, cfg.onReboot, cfg.onCrash], ['destroy', 'restart', 'destroy']);
  assert.equal(parseXlConfig('x.cfg', installConfigText({ ...req, vif: undefined }, '6.1.0-56-amd64')).vifs.length, 0);
});

test('an unmounted ext4 image is grown, given /boot and a name with debugfs, and boots through the pygrub reader', async () => {
  ensureE2fsprogs('the install unit test');
  const root = join(dir, 'tree');
  mkdirSync(join(root, 'boot'), { recursive: true });
  mkdirSync(join(root, 'etc'));
  writeFileSync(join(root, 'etc', 'hostname'), 'pvbox\n');
  writeFileSync(join(root, 'etc', 'hosts'), '127.0.1.1\tpvbox\n');
  const img = join(dir, 'root.img');
  writeFileSync(img, '');
  execFileSync('truncate', ['-s', '64M', img]);
  execFileSync('mkfs.ext4', ['-q', '-F', '-b', '4096', '-L', 'root', '-d', root, img]); // 4 KiB blocks, as the root disk has

  await growExt4Image(img, 96 * 2 ** 20);
  assert.equal(statSync(img).size, 96 * 2 ** 20);
  assert.match(execFileSync('dumpe2fs', ['-h', img], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }), /^Block count:\s+24576$/m);

  // Files past ext4's inline extents (four in the inode): the reader must walk an extent tree.
  const kernel = randomBytes(5 * 2 ** 20 + 77), initrd = randomBytes(300_001);
  writeFileSync(join(dir, 'vmlinuz'), kernel);
  writeFileSync(join(dir, 'initrd with space.img'), initrd);
  await makeBootable(img, { kernel: join(dir, 'vmlinuz'), initrd: join(dir, 'initrd with space.img'), kernelVersion: '6.1.0-test', packageVersion: '6.1-1' }, { hostname: 'web1', osName: 'Debian GNU/Linux 12' });
  const boot = await readBootFiles({ target: img, vdev: 'xvda', devid: 51712, readonly: true, format: 'raw' });
  assert.equal(boot.args, ROOT_CMDLINE);
  assert.equal(boot.config, `${img}:/boot/extlinux/extlinux.conf`);
  assert.ok(Buffer.from(boot.kernel).equals(kernel), 'kernel read back');
  assert.ok(Buffer.from(boot.initrd!).equals(initrd), 'initrd read back');
  const cat = (p: string) => execFileSync('debugfs', ['-R', `cat ${p}`, img], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  assert.equal(cat('/etc/hostname'), 'web1\n');
  assert.match(cat('/etc/hosts'), /^127\.0\.1\.1\tweb1$/m);
  assert.equal(cat('/boot/extlinux/extlinux.conf'), extlinuxConf('6.1.0-test', 'Debian GNU/Linux 12'));
  assert.match(execFileSync('debugfs', ['-R', 'stat /boot/vmlinuz-6.1.0-test', img], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }), /Mode:\s+0644/);
  execFileSync('e2fsck', ['-fn', img], { stdio: 'ignore' }); // throws on a non-zero exit: the edits left the file system consistent

  // debugfs exits 0 when a command fails; the failure is still one line.
  await assert.rejects(editExt4Image(img, [{ op: 'rm', path: '/etc/nosuchfile' }]), (e: Error) => e instanceof ImageError && /debugfs -w .*nosuchfile/.test(e.message) && !e.message.includes('\n'));
  await assert.rejects(editExt4Image(img, [{ op: 'mkdir', path: 'boot/relative' }]), /not an absolute path/);
});
