// Tests for src/images: the cpio writer, depmod-style module files, apt parsing, progress output, and the built default image.

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { CpioWriter, parseCpio, S_IFCHR, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, TRAILER_NAME, type CpioEntry } from '../../src/images/cpio.js';
import { metapackageTarget, parseStanzas } from '../../src/images/deb.js';
import { cacheDir, findCachedImage, ensureDefaultImage, type KernelFlavour } from '../../src/images/debian.js';
import { INIT_SCRIPT } from '../../src/images/initramfs.js';
import { aliasMatches, depmodFiles, moduleName, parseModinfoStrings, type SelectedModule } from '../../src/images/kmod.js';
import { Progress } from '../../src/images/progress.js';

describe('cpio writer', () => {
  it('writes the exact newc header layout', () => {
    const w = new CpioWriter();
    w.addFile('a', 'xyz', 0o644);
    const buf = w.finish();
    const expectHeader =
      '070701' +
      ['00000001', '000081A4', '00000000', '00000000', '00000001', '00000000', '00000003', '00000000', '00000000', '00000000', '00000000', '00000002', '00000000'].join('');
    assert.equal(buf.toString('ascii', 0, 110), expectHeader);
    // 110-byte header + "a\0" = 112, already aligned; then "xyz" + 1 pad byte.
    assert.equal(buf.toString('latin1', 110, 112), 'a\0');
    assert.equal(buf.toString('latin1', 112, 116), 'xyz\0');
    assert.equal(buf.toString('ascii', 116, 122), '070701');
    const trailerName = buf.toString('latin1', 116 + 110, 116 + 110 + TRAILER_NAME.length + 1);
    assert.equal(trailerName, TRAILER_NAME + '\0');
    assert.equal(buf.length % 4, 0);
  });

  it('round-trips directories, files of every padding length, symlinks and device nodes', () => {
    const w = new CpioWriter(1234);
    w.addDirectory('etc', 0o755);
    w.addDirectory('tmp', 0o1777);
    const files: Record<string, Buffer> = {};
    for (let len = 0; len <= 9; len++) {
      // Names of varying length exercise every header padding case too.
      const name = `etc/f${'x'.repeat(len)}`;
      files[name] = Buffer.from(Array.from({ length: len }, (_, i) => (i * 37 + len) & 0xff));
      w.addFile(name, files[name]!, 0o640);
    }
    w.addFile('deep/nested/dir/file', 'hello\n', 0o755);
    w.addSymlink('bin/sh', '/bin/busybox');
    w.addCharDevice('dev/console', 5, 1, 0o600);
    w.addCharDevice('dev/hvc0', 229, 0, 0o620);
    const buf = w.finish();
    assert.equal(buf.length % 4, 0);

    const { entries, trailerOffset, end } = parseCpio(buf);
    assert.equal(end, buf.length, 'nothing after the trailer');
    assert.equal(trailerOffset % 4, 0);
    const by = new Map<string, CpioEntry>(entries.map((e) => [e.name, e]));
    assert.equal(by.size, entries.length, 'no duplicate names');

    assert.equal(by.get('etc')!.mode, S_IFDIR | 0o755);
    assert.equal(by.get('tmp')!.mode, S_IFDIR | 0o1777);
    for (const [name, data] of Object.entries(files)) {
      const e = by.get(name)!;
      assert.equal(e.mode, S_IFREG | 0o640, name);
      assert.deepEqual(e.data, data, name);
      assert.equal(e.mtime, 1234);
    }
    // Parents created automatically, before their children.
    for (const d of ['deep', 'deep/nested', 'deep/nested/dir', 'bin', 'dev']) {
      assert.equal((by.get(d)!.mode & S_IFMT), S_IFDIR, d);
    }
    const idx = (n: string) => entries.findIndex((e) => e.name === n);
    assert.ok(idx('deep') < idx('deep/nested') && idx('deep/nested/dir') < idx('deep/nested/dir/file'));
    assert.equal(by.get('deep/nested/dir/file')!.data.toString(), 'hello\n');
    assert.equal(by.get('deep/nested/dir/file')!.mode, S_IFREG | 0o755);

    const sh = by.get('bin/sh')!;
    assert.equal(sh.mode, S_IFLNK | 0o777);
    assert.equal(sh.data.toString(), '/bin/busybox');

    const con = by.get('dev/console')!;
    assert.equal(con.mode, S_IFCHR | 0o600);
    assert.deepEqual([con.rdevMajor, con.rdevMinor], [5, 1]);
    const hvc = by.get('dev/hvc0')!;
    assert.deepEqual([hvc.mode & S_IFMT, hvc.rdevMajor, hvc.rdevMinor], [S_IFCHR, 229, 0]);

    // Inode numbers are unique (the kernel would hard-link equal ones).
    assert.equal(new Set(entries.map((e) => e.ino)).size, entries.length);
  });

  it('rejects duplicates, ".." and writes after finish', () => {
    const w = new CpioWriter();
    w.addFile('x', 'a');
    assert.throws(() => w.addFile('x', 'b'), /duplicate/);
    assert.throws(() => w.addSymlink('/x/', 'y'), /duplicate/);
    assert.throws(() => w.addFile('a/../b', 'c'), /\.\./);
    w.addDirectory('d');
    w.addDirectory('d'); // directories are idempotent
    w.finish();
    assert.throws(() => w.addFile('z', ''), /finished/);
  });

  it('parser rejects corrupt archives', () => {
    const w = new CpioWriter();
    w.addFile('file', 'data');
    const good = w.finish();
    const badMagic = Buffer.from(good);
    badMagic.write('070707', 0, 'ascii');
    assert.throws(() => parseCpio(badMagic), /magic/);
    assert.throws(() => parseCpio(good.subarray(0, 120)), /truncated/);
    assert.throws(() => parseCpio(good.subarray(0, good.length - 12)), /truncated/);
  });
});

function mod(name: string, path: string, depends: string[] = [], aliases: string[] = []): SelectedModule {
  return { name, sourcePath: path, path, image: Buffer.alloc(0), depends, aliases, softdepPre: [], softdepPost: [] };
}

describe('depmod files', () => {
  it('lists transitive dependencies so that the last one loads first', () => {
    const sel = {
      modules: [
        mod('crc16', 'kernel/lib/crc16.ko'),
        mod('jbd2', 'kernel/fs/jbd2/jbd2.ko', ['crc16']),
        mod('mbcache', 'kernel/fs/mbcache.ko'),
        mod('ext4', 'kernel/fs/ext4/ext4.ko', ['jbd2', 'mbcache'], ['fs-ext4']),
        mod('xen_blkfront', 'kernel/drivers/block/xen-blkfront.ko', [], ['xen:vbd', 'block-major-202-*']),
      ],
      builtin: [],
      absent: [],
    };
    const { dep, alias } = depmodFiles(sel);
    const lines = new Map(dep.trim().split('\n').map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 1).trim().split(' ').filter(Boolean)]));
    assert.deepEqual(lines.get('kernel/drivers/block/xen-blkfront.ko'), []);
    const ext4 = lines.get('kernel/fs/ext4/ext4.ko')!;
    assert.deepEqual([...ext4].sort(), ['kernel/fs/jbd2/jbd2.ko', 'kernel/fs/mbcache.ko', 'kernel/lib/crc16.ko']);
    // modprobe loads the list back to front: crc16 must come after jbd2.
    assert.ok(ext4.indexOf('kernel/lib/crc16.ko') > ext4.indexOf('kernel/fs/jbd2/jbd2.ko'));
    assert.match(alias, /^alias xen:vbd xen_blkfront$/m);
    assert.match(alias, /^alias fs-ext4 ext4$/m);
  });

  it('matches alias globs and names modules like kmod', () => {
    assert.ok(aliasMatches('crc32c', 'crc32c'));
    assert.ok(!aliasMatches('crc32c', 'crc32'));
    assert.ok(aliasMatches('block-major-202-*', 'block-major-202-0'));
    assert.ok(aliasMatches('pci:v00004040d0000000[1-5]sv*', 'pci:v00004040d00000003sv0'));
    assert.ok(!aliasMatches('pci:v00004040d0000000[1-5]sv*', 'pci:v00004040d00000007sv0'));
    assert.ok(aliasMatches('x?z', 'xyz'));
    assert.equal(moduleName('kernel/drivers/block/xen-blkfront.ko.xz'), 'xen_blkfront');
    const info = parseModinfoStrings(Buffer.from('alias=a\0alias=b\0depends=x,y\0\0name=m\0'));
    assert.deepEqual(info.get('alias'), ['a', 'b']);
    assert.deepEqual(info.get('depends'), ['x,y']);
  });
});

describe('apt parsing', () => {
  it('resolves a kernel metapackage to its real package', () => {
    const [meta] = parseStanzas('Package: linux-image-amd64\nVersion: 6.1.192-2\nDepends: linux-image-6.1.0-56-amd64 (= 6.1.192-2)\nDescription: x\n more\n\n');
    assert.equal(meta!.Description, 'x\nmore');
    assert.deepEqual(metapackageTarget(meta!), { name: 'linux-image-6.1.0-56-amd64', version: '6.1.192-2' });
    assert.deepEqual(metapackageTarget({ Package: 'm', Depends: 'foo, linux-image-6.1.0-9-cloud-amd64 | bar' }), { name: 'linux-image-6.1.0-9-cloud-amd64' });
    assert.throws(() => metapackageTarget({ Package: 'm', Depends: 'foo' }));
  });
});

describe('progress', () => {
  it('prints plain lines when not a TTY and nothing when quiet', () => {
    let out = '';
    const p = new Progress(false, 2, { write: (s: string) => (out += s), isTTY: false });
    const t = p.task('downloading x');
    t.update(50, 100);
    t.end('1 MiB');
    p.skip('cached y');
    assert.doesNotMatch(out, /\r/);
    assert.match(out, /^pvbox: \[1\/2\] downloading x \.\.\.\n/);
    assert.match(out, /\[1\/2\] downloading x done, 1 MiB \(\d+ ms\)\n/);
    assert.match(out, /\[2\/2\] cached y\n$/);
    let q = '';
    const quiet = new Progress(true, 1, { write: (s: string) => (q += s), isTTY: false });
    quiet.task('x').end();
    quiet.note('n');
    assert.equal(q, '');
  });

  it('rewrites one line with a bar on a TTY', () => {
    let out = '';
    const p = new Progress(false, 1, { write: (s: string) => (out += s), isTTY: true, columns: 120 });
    const t = p.task('extracting');
    t.update(100, 100);
    t.end();
    assert.match(out, /\r\x1b\[K.*\[#{24}\] 100%/);
    assert.equal(out.split('\n').length, 2, 'a single finished line');
  });
});

describe('default guest image', () => {
  const wanted = process.env.PVBOX_TEST_IMAGES === '1';
  for (const flavour of ['amd64', 'cloud-amd64'] as KernelFlavour[]) {
    it(`${flavour}: kernel and initramfs have what a PV guest needs`, { timeout: 15 * 60_000 }, async (t) => {
      const cached = await findCachedImage({ flavour });
      if (!cached && !wanted) {
        t.skip(`not cached in ${cacheDir()}; set PVBOX_TEST_IMAGES=1 to build it`);
        return;
      }
      const t0 = Date.now();
      const img = await ensureDefaultImage({ flavour, quiet: true });
      if (cached) {
        assert.deepEqual(img, cached);
        assert.ok(Date.now() - t0 < 1000, 'a cached image comes back fast');
      }
      assert.ok(img.kernel.startsWith('/') && img.initrd.startsWith('/'));
      assert.match(img.kernelVersion, flavour === 'amd64' ? /^\d+\.\d+\.\d+-\d+-amd64$/ : /^\d+\.\d+\.\d+-\d+-cloud-amd64$/);
      assert.match(img.packageVersion, /^\d+\.\d+/);

      const kernel = await readFile(img.kernel);
      assert.equal(kernel.toString('latin1', 0x202, 0x206), 'HdrS', 'kernel is a bzImage');

      const { entries } = parseCpio(gunzipSync(await readFile(img.initrd)));
      const by = new Map(entries.map((e) => [e.name, e]));

      const init = by.get('init')!;
      assert.ok(init, '/init present');
      assert.equal(init.mode, S_IFREG | 0o755);
      assert.equal(init.data.toString(), INIT_SCRIPT);
      assert.match(INIT_SCRIPT, /echo "PVBOX-READY \$up"/);
      assert.match(INIT_SCRIPT, /setsid cttyhack sh/);

      const busybox = by.get('bin/busybox')!;
      assert.equal(busybox.mode, S_IFREG | 0o755);
      assert.equal(busybox.data.readUInt32BE(0), 0x7f454c46, 'busybox is an ELF binary');
      for (const applet of ['bin/sh', 'bin/mount', 'sbin/modprobe', 'bin/cttyhack', 'bin/setsid', 'sbin/poweroff', 'sbin/mdev']) {
        const e = by.get(applet);
        assert.ok(e, `${applet} present`);
        assert.equal(e.mode & S_IFMT, S_IFLNK, applet);
        assert.equal(e.data.toString(), '/bin/busybox', applet);
      }
      const con = by.get('dev/console')!;
      assert.deepEqual([con.mode & S_IFMT, con.rdevMajor, con.rdevMinor], [S_IFCHR, 5, 1]);
      const hvc = by.get('dev/hvc0')!;
      assert.deepEqual([hvc.mode & S_IFMT, hvc.rdevMajor, hvc.rdevMinor], [S_IFCHR, 229, 0]);
      for (const d of ['proc', 'sys', 'dev', 'run', 'tmp', 'root', 'etc']) assert.equal(by.get(d)!.mode & S_IFMT, S_IFDIR, d);
      assert.match(by.get('etc/passwd')!.data.toString(), /^root:x:0:0:/m);
      assert.match(by.get('etc/group')!.data.toString(), /^root:x:0:/m);

      const base = `lib/modules/${img.kernelVersion}`;
      const text = (name: string) => by.get(`${base}/${name}`)?.data.toString() ?? assert.fail(`${base}/${name} missing`);
      const dep = text('modules.dep');
      const alias = text('modules.alias');
      const builtin = new Set(text('modules.builtin').split('\n').filter(Boolean).map(moduleName));
      const depLines = dep.trim().split('\n');
      const shipped = new Set(depLines.map((l) => moduleName(l.slice(0, l.indexOf(':')))));
      // Every module and dependency named in modules.dep is in the archive, uncompressed.
      for (const line of depLines) {
        for (const p of line.replace(':', '').split(' ').filter(Boolean)) {
          const e = by.get(`${base}/${p}`);
          assert.ok(e, `${p} (from modules.dep) present`);
          assert.match(p, /\.ko$/);
          assert.equal(e.data.readUInt32BE(0), 0x7f454c46, `${p} is an uncompressed ELF module`);
        }
      }
      for (const [name, devAlias] of [
        ['xen_blkfront', 'xen:vbd'],
        ['xen_netfront', 'xen:vif'],
      ] as const) {
        assert.ok(shipped.has(name) || builtin.has(name), `${name} shipped or built in`);
        if (shipped.has(name)) assert.match(alias, new RegExp(`^alias ${devAlias} ${name}$`, 'm'));
      }
      // The cloud kernel is configured without xen-kbdfront at all.
      for (const name of ['xenfs', 'xen_privcmd', 'xen_fbfront', ...(flavour === 'amd64' ? ['xen_kbdfront'] : [])]) {
        assert.ok(shipped.has(name) || builtin.has(name), `${name} shipped or built in`);
      }
    });
  }
});
