// xl.cfg parsing (src/toolstack/xl-cfg.ts): libxlu's syntax, xl's keys and defaults, Debian's example files, and a corpus of broken files that must each fail with one line naming file:line and the key.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, ftruncateSync, mkdtempSync, openSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ConfigError } from '../../src/errors.js';
import { parseDiskSpec } from '../../src/backends/vbd/disk-spec.js';
import { COMMAND_LINE, LIBXL_DEFAULT_MEMORY_MIB, MAX_CONFIG_BYTES, parseXlConfig, parseXlSettings, readXlConfigFile, type XlConfig, type XlValue } from '../../src/toolstack/xl-cfg.js';
import { formatUuid, parseUuid } from '../../src/toolstack/domain-nodes.js';

const FIXTURES = fileURLToPath(new URL('../fixtures/xl-cfg/', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'pvbox-xl-cfg-'));
let fileCount = 0;
const scratch = [dir];
after(() => { for (const d of scratch) rmSync(d, { recursive: true, force: true }); });

/** A file in the temporary directory holding `lines` (each ended by a newline) or raw bytes. */
function writeCfg(content: readonly string[] | Uint8Array): string {
  const path = join(dir, `case-${++fileCount}.cfg`);
  writeFileSync(path, content instanceof Uint8Array ? content : content.map((l) => `${l}\n`).join(''));
  return path;
}

/** The two lines every valid PV configuration needs. */
const BASE = ['name = "guest"', 'kernel = "/boot/vmlinuz"'];

function parse(lines: readonly string[], overrides: readonly string[] = []): XlConfig {
  return parseXlConfig('t.cfg', lines.map((l) => `${l}\n`).join(''), overrides);
}

/** An atom's text, or the atoms of a list as [text, line]. */
function atomText(v: XlValue): string { assert.equal(v.kind, 'atom'); return v.kind === 'atom' ? v.text : ''; }
function listAtoms(v: XlValue): [string, number][] {
  assert.equal(v.kind, 'list');
  return v.kind === 'list' ? v.items.map((i) => [atomText(i), i.line]) : [];
}

const escapeRe = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** Fails with a ConfigError of one line that starts `<file>:<line>: <key>: ` and matches `pattern`. */
function assertRefused(run: () => unknown, file: string, line: number | undefined, key: string | undefined, pattern: RegExp): string {
  let message = '';
  assert.throws(run, (e: unknown) => {
    assert.ok(e instanceof ConfigError, `expected a ConfigError, got ${String(e)}`);
    message = e.message;
    assert.doesNotMatch(message, /\n/, 'one line');
    const head = `${escapeRe(file)}${line === undefined ? '' : `:${line}`}: ${key === undefined ? '' : `${escapeRe(key)}: `}`;
    assert.match(message, new RegExp(`^${head}`), message);
    assert.match(message, pattern);
    return true;
  });
  return message;
}

/** The broken-file corpus goes through the file reader, as a user's file would. */
function refuse(lines: readonly string[] | Uint8Array, line: number | undefined, key: string | undefined, pattern: RegExp, overrides: readonly string[] = []): string {
  const path = writeCfg(lines);
  return assertRefused(() => readXlConfigFile(path, overrides), path, line, key, pattern);
}

// ---------------------------------------------------------------------------------------------
// Fixtures written from xl.cfg(5)

test('fixture: direct kernel boot with disks, a vif and actions', () => {
  const c = readXlConfigFile(join(FIXTURES, 'direct-kernel.cfg'));
  assert.equal(c.name, 'web-1');
  assert.equal(c.uuid, '3f2504e0-4f89-11d3-9a0c-0305e82c3301');
  assert.equal(c.type, 'pv');
  assert.deepEqual([c.memoryMiB, c.maxmemMiB, c.vcpus, c.maxvcpus], [256, 512, 1, 2]);
  assert.equal(c.kernel, '/var/lib/pvbox/vmlinuz');
  assert.equal(c.ramdisk, '/var/lib/pvbox/initrd.img');
  assert.equal(c.cmdline, 'root=/dev/xvda1 ro console=hvc0 quiet');
  assert.deepEqual(c.disks.map((d) => [d.target, d.vdev, d.readonly]), [['/srv/web-1/root.img', 'xvda', false], ['/srv/web-1/data.img', 'xvdb', true]]);
  assert.equal(c.vifs.length, 1);
  assert.equal(c.vifs[0]!.mac, '00:16:3e:12:34:56');
  assert.equal(c.vifs[0]!.bridge, 'xenbr0');
  assert.deepEqual([c.onPoweroff, c.onReboot, c.onCrash, c.onWatchdog, c.onSoftReset], ['destroy', 'restart', 'preserve', 'destroy', 'soft-reset']);
  assert.equal(c.localtime, false);
  assert.deepEqual(c.warnings, []);
  // Origins: keys and list items, each on its own line.
  assert.equal(c.origins.get('memory')!.line, 10);
  assert.equal(c.origins.get('disk')!.line, 16);
  assert.equal(c.origins.get('disk[0]')!.line, 17);
  assert.equal(c.origins.get('disk[1]')!.line, 18);
  assert.equal(c.origins.get('vif[0]')!.line, 20);
  assert.equal(c.origins.get('on_crash')!.file, join(FIXTURES, 'direct-kernel.cfg'));
});

test('fixture: pygrub boot, hex memory, semicolons', () => {
  const c = readXlConfigFile(join(FIXTURES, 'pygrub.cfg'));
  assert.deepEqual(c.bootloader, { program: '/usr/lib/xen-4.17/bin/pygrub', args: ['--entry=1'], key: 'bootloader' });
  assert.equal(c.kernel, undefined);
  assert.equal(c.memoryMiB, 0x200);
  assert.deepEqual([c.vcpus, c.maxvcpus], [2, 2]);
  assert.equal(c.disks[0]!.target, '/srv/mail.img');
  // vif = [ "" ]: one NIC with a generated MAC in Xen's OUI.
  assert.equal(c.vifs.length, 1);
  assert.match(c.vifs[0]!.mac, /^00:16:3e:[0-7][0-9a-f]:[0-9a-f]{2}:[0-9a-f]{2}$/);
  assert.equal(c.origins.get('on_crash')!.line, 9);
  assert.equal(c.origins.get('on_reboot')!.line, 9);
  assert.equal(c.onCrash, 'destroy');
});

test('fixture: host hints are accepted with one warning each, naming file:line and key', () => {
  const path = join(FIXTURES, 'host-hints.cfg');
  const c = readXlConfigFile(path);
  assert.equal(c.cmdline, 'root=/dev/xvda ro console=hvc0');
  assert.equal(c.memoryMiB, 1024, 'a quoted number is a number, as in xl');
  const warned = c.warnings.map((w) => /^(.*):(\d+): ([a-z_]+): /.exec(w)!.slice(1));
  assert.deepEqual(warned, [[path, '6', 'cpu_weight'], [path, '7', 'cpus'], [path, '8', 'serial'], [path, '9', 'device_model_version'], [path, '10', 'dhcp']]);
});

test('fixture: a VNC framebuffer', () => {
  const c = readXlConfigFile(join(FIXTURES, 'framebuffer.cfg'));
  assert.deepEqual(c.vfbs, [{ vnc: true, vnclisten: '0.0.0.0', vncdisplay: 3, vncunused: true, vncpasswd: 's3cret', keymap: 'de' }]);
  assert.equal(c.cmdline, 'console=tty0');
});

// ---------------------------------------------------------------------------------------------
// Debian's examples (xen-utils-common: /etc/xen/xlexample.*)

let debianExamples: string | undefined;
function debianExampleDir(): string {
  if (debianExamples) return debianExamples;
  const work = mkdtempSync(join(tmpdir(), 'pvbox-xen-utils-common-'));
  scratch.push(work);
  const download = () => spawnSync('apt-get', ['download', 'xen-utils-common'], { cwd: work, encoding: 'utf8', timeout: 300_000 });
  let r = download();
  if (r.status !== 0) {
    // A fresh machine may have no package lists yet.
    spawnSync('apt-get', ['update'], { encoding: 'utf8', timeout: 600_000 });
    r = download();
  }
  assert.equal(r.status, 0, `apt-get download xen-utils-common: ${r.stderr}`);
  const deb = readdirSync(work).find((f) => f.endsWith('.deb'));
  assert.ok(deb, 'no .deb downloaded');
  const x = spawnSync('dpkg-deb', ['-x', deb, 'root'], { cwd: work, encoding: 'utf8' });
  assert.equal(x.status, 0, x.stderr);
  debianExamples = join(work, 'root/etc/xen');
  return debianExamples;
}

test('Debian xlexample.pvlinux: every key but its disk, which is replaced on the command line', () => {
  const path = join(debianExampleDir(), 'xlexample.pvlinux');
  const c = readXlConfigFile(path, ['disk = [ "/dev/vg/guest-volume,xvda,w" ]']);
  assert.equal(c.name, 'example.pvlinux');
  assert.equal(c.kernel, '/boot/vmlinuz');
  assert.equal(c.ramdisk, undefined, 'commented out in the example');
  assert.equal(c.cmdline, 'root=/dev/xvda1');
  assert.deepEqual([c.memoryMiB, c.maxmemMiB, c.vcpus, c.maxvcpus], [128, 128, 2, 2]);
  assert.equal(c.vifs.length, 1);
  assert.equal(c.disks[0]!.target, '/dev/vg/guest-volume');
  assert.equal(c.origins.get('disk')!.file, COMMAND_LINE);
  assert.equal(c.origins.get('memory')!.file, path);
  assert.deepEqual(c.warnings, []);
});

const positionalFormat = (() => { try { parseDiskSpec('/dev/vg/guest-volume,raw,xvda,rw'); return true; } catch { return false; } })();
test('Debian xlexample.pvlinux as shipped', {
  todo: positionalFormat ? false : "parseDiskSpec does not yet read xl's positional form target,format,vdev,access (libxlu_disk_l.l)",
}, () => {
  const c = readXlConfigFile(join(debianExampleDir(), 'xlexample.pvlinux'));
  assert.deepEqual(c.disks.map((d) => [d.target, d.vdev, d.readonly]), [['/dev/vg/guest-volume', 'xvda', false]]);
});

test('Debian xlexample.hvm and xlexample.pvhlinux are refused at their type line', () => {
  const hvm = join(debianExampleDir(), 'xlexample.hvm');
  assertRefused(() => readXlConfigFile(hvm), hvm, 9, 'type', /'hvm': pvbox runs PV guests/);
  const pvh = join(debianExampleDir(), 'xlexample.pvhlinux');
  assertRefused(() => readXlConfigFile(pvh), pvh, 9, 'type', /'pvh': pvbox runs PV guests/);
});

// ---------------------------------------------------------------------------------------------
// Syntax as libxlu reads it

test('values: numbers, both quotes, escapes, empty strings, nested lists', () => {
  const s = parseXlSettings('t.cfg', [
    'a = 12', "b = 'single \"inner\"'", 'c = "double \\t\\"q\\" \\\\ \\n"', 'd = ""', 'e = [ ]', 'f = [ "x", [ "y", 1 ], ]', 'g.h_2 = 0x1f',
  ].join('\n'));
  assert.deepEqual(s.get('a')!.value, { kind: 'atom', text: '12', quoted: false, line: 1 });
  assert.equal(atomText(s.get('b')!.value), 'single "inner"');
  assert.equal(atomText(s.get('c')!.value), 'double \t"q" \\ \n');
  assert.equal(atomText(s.get('d')!.value), '');
  assert.deepEqual(s.get('e')!.value, { kind: 'list', items: [], line: 5 });
  const f = s.get('f')!.value;
  assert.equal(f.kind, 'list');
  assert.equal(f.kind === 'list' && f.items[1]!.kind, 'list');
  assert.equal(atomText(s.get('g.h_2')!.value), '0x1f');
});

test('statements: semicolons, blank lines, comments everywhere, a last line without newline', () => {
  const s = parseXlSettings('t.cfg', '\n\n# c\n a = 1 ; b = "2";;\n\tc = [ # open\n  "x" # item\n\n  , "y" # more\n ] # close\nd = 4');
  assert.deepEqual([...s.keys()], ['a', 'b', 'c', 'd']);
  assert.equal(s.get('b')!.origin.line, 4);
  assert.deepEqual(listAtoms(s.get('c')!.value), [['x', 6], ['y', 8]]);
  assert.equal(s.get('d')!.origin.line, 10);
  // xl refuses a last comment without a newline; pvbox accepts it.
  assert.equal(parseXlSettings('t.cfg', 'a = 1\n# the end').size, 1);
});

test('duplicate keys: the last one wins (libxlu find() sees the newest first), with a warning', () => {
  const c = parse([...BASE, 'memory = 256', 'memory = 512']);
  assert.equal(c.memoryMiB, 512);
  assert.equal(c.origins.get('memory')!.line, 4);
  assert.deepEqual(c.warnings, ['t.cfg:4: memory: set again; this value replaces the one at line 3 (the last one wins, as in xl)']);
});

test("'+=' joins strings and appends lists (xlu__cfg_concat_vals); alone it is a plain assignment", () => {
  const c = parse([...BASE, 'extra = "console=hvc0"', 'extra += " quiet"', 'disk = [ "/a,xvda,w" ]', 'disk += [ "/b,xvdb,r" ]', 'root += "/dev/xvda1"']);
  assert.equal(c.cmdline, 'root=/dev/xvda1 console=hvc0 quiet');
  assert.deepEqual(c.disks.map((d) => d.vdev), ['xvda', 'xvdb']);
  assert.equal(c.origins.get('disk[1]')!.line, 6, 'appended items keep their own line');
  assert.deepEqual(c.warnings, []);
});

test('numbers are read as strtol(…, 0) reads them; a leading 0 is octal and says so', () => {
  assert.equal(parse([...BASE, 'memory = 0x100']).memoryMiB, 256);
  assert.equal(parse([...BASE, 'memory = "  +300"']).memoryMiB, 300);
  const octal = parse([...BASE, 'memory = 0400']);
  assert.equal(octal.memoryMiB, 256);
  assert.match(octal.warnings[0]!, /^t\.cfg:3: memory: '0400' is octal \(256\)/);
});

test('command-line overrides are parsed as lines after the file (xl create cfg key=value…)', () => {
  const c = parse([...BASE, 'memory = 256', 'extra = "a"'], ['memory=1024', 'extra+=" b"', 'vcpus=2; maxvcpus=4']);
  assert.deepEqual([c.memoryMiB, c.vcpus, c.maxvcpus, c.cmdline], [1024, 2, 4, 'a b']);
  assert.deepEqual(c.origins.get('memory'), { file: COMMAND_LINE, line: 1 });
  assert.deepEqual(c.origins.get('maxvcpus'), { file: COMMAND_LINE, line: 3 });
  assert.deepEqual(c.warnings, [], 'overriding the file is what the command line is for');
  assertRefused(() => parse(BASE, ['memory=256', 'memory 512']), COMMAND_LINE, 2, undefined, /'memory 512' is not key=value/);
  assertRefused(() => parse(BASE, ['name="a/b"']), COMMAND_LINE, 1, 'name', /contains '\/'/);
  assertRefused(() => parse(BASE, ['memory=[1']), COMMAND_LINE, 1, 'memory', /not closed/);
  assertRefused(() => parse(BASE, ['memory=256', 'vcpus=[1']), COMMAND_LINE, 2, 'vcpus', /not closed/);
  assertRefused(() => parse(BASE, ['extra="a\nb"']), COMMAND_LINE, 1, undefined, /newline/);
});

// ---------------------------------------------------------------------------------------------
// Keys, defaults and checks

test('memory and vcpus defaults are libxl\'s; maxmem alone sets memory', () => {
  const d = parse(BASE);
  assert.deepEqual([d.memoryMiB, d.maxmemMiB, d.vcpus, d.maxvcpus], [LIBXL_DEFAULT_MEMORY_MIB, LIBXL_DEFAULT_MEMORY_MIB, 1, 1]);
  const m = parse([...BASE, 'maxmem = 768']);
  assert.deepEqual([m.memoryMiB, m.maxmemMiB], [768, 768]);
  assert.equal(parse([...BASE, 'vcpus = 3']).maxvcpus, 3);
});

test('the command line: cmdline wins over root and extra (xl_parse.c parse_cmdline)', () => {
  assert.equal(parse([...BASE, 'root = "/dev/xvda1"']).cmdline, 'root=/dev/xvda1');
  assert.equal(parse([...BASE, 'extra = "quiet"']).cmdline, 'quiet');
  assert.equal(parse(BASE).cmdline, undefined);
  const c = parse([...BASE, 'root = "/dev/xvda1"', 'cmdline = "ro"']);
  assert.equal(c.cmdline, 'ro');
  assert.match(c.warnings[0]!, /^t\.cfg:4: cmdline: root= and extra= are ignored/);
});

test('guest type: absent and "pv" are PV; builder "generic" too, "linux" with a warning', () => {
  assert.equal(parse([...BASE, 'type = "pv"']).type, 'pv');
  assert.deepEqual(parse([...BASE, 'builder = "generic"']).warnings, []);
  assert.match(parse([...BASE, 'builder = "linux"']).warnings[0]!, /^t\.cfg:3: builder: 'linux' is xm's name/);
});

test('boot from the disk: pygrub by name or path, firmware pvgrub64; bootloader_args as a string is deprecated', () => {
  const c = parse(['name = "g"', 'bootloader = "pygrub"', 'bootloader_args = "-q  --entry=2"', 'disk = [ "/a,xvda,w" ]']);
  assert.deepEqual(c.bootloader, { program: 'pygrub', args: ['-q', '--entry=2'], key: 'bootloader' });
  assert.match(c.warnings[0]!, /^t\.cfg:3: bootloader_args: a string is deprecated/);
  assert.equal(parse(['name = "g"', 'bootloader = "/usr/bin/pygrub"', 'disk = [ "/a,xvda,w" ]']).bootloader!.program, '/usr/bin/pygrub');
  assert.deepEqual(parse(['name = "g"', 'firmware = "pvgrub64"', 'disk = [ "/a,xvda,w" ]']).bootloader, { program: 'pvgrub64', args: [], key: 'firmware' });
  // With a bootloader, kernel= names a file inside the guest (pygrub --kernel).
  assert.equal(parse(['name = "g"', 'bootloader = "pygrub"', 'kernel = "/vmlinuz"', 'disk = [ "/a,xvda,w" ]']).kernel, '/vmlinuz');
});

test('top-level vnc= builds the framebuffer of a PV guest without vfb= (as xl does)', () => {
  const c = parse([...BASE, 'vnc = 1', 'vncdisplay = 2', 'keymap = "fr"']);
  assert.deepEqual(c.vfbs, [{ vnc: true, vnclisten: '127.0.0.1', vncdisplay: 2, vncunused: true, keymap: 'fr' }]);
  assert.equal(c.origins.get('vfb[0]')!.line, 3);
  const off = parse([...BASE, 'vnc = 0', 'vnclisten = "0.0.0.0"']);
  assert.deepEqual(off.vfbs, []);
  assert.match(off.warnings[0]!, /^t\.cfg:4: vnclisten: ignored: vnc is not on/);
  const both = parse([...BASE, 'vfb = [ "vnc=1" ]', 'vnc = 1']);
  assert.equal(both.vfbs.length, 1);
  assert.match(both.warnings[0]!, /^t\.cfg:4: vnc: ignored because vfb is set/);
  assert.deepEqual(parse([...BASE, 'vfb = [ "vnc=0,type=vnc" ]']).vfbs, [{ vnc: false, vncunused: false }]);
});

test('actions, localtime, rtc_timeoffset, devices that are off', () => {
  const c = parse([...BASE, 'on_reboot = "destroy"', 'on_watchdog = "restart"', 'on_soft_reset = "destroy"', 'localtime = 1', 'rtc_timeoffset = "-3600"',
    'pci = []', 'e820_host = 0', 'tsc_mode = "default"', 'passthrough = "disabled"']);
  assert.deepEqual([c.onReboot, c.onWatchdog, c.onSoftReset, c.localtime, c.rtcTimeoffset], ['destroy', 'restart', 'destroy', true, -3600]);
  assert.deepEqual(c.warnings, []);
});

test("a file in the style xen-tools writes: quoted numbers, xm's dhcp, vif ip= and mac=", () => {
  const c = parse(["kernel = '/boot/vmlinuz-6.1.0-pv'", "ramdisk = '/boot/initrd.img-6.1.0-pv'", "vcpus = '2'", "memory = '512'", "type = 'pv'",
    "root = '/dev/xvda ro'", "extra = 'elevator=noop'", "disk = [ 'file:/srv/xen/domains/h1/disk.img,xvda,w', 'file:/srv/xen/domains/h1/swap.img,xvdb,w' ]",
    "name = 'h1'", "dhcp = 'dhcp'", "vif = [ 'ip=192.0.2.10,mac=00:16:3E:0A:0B:0C' ]", "on_poweroff = 'destroy'", "on_reboot = 'restart'", "on_crash = 'restart'"]);
  assert.deepEqual([c.vcpus, c.memoryMiB, c.cmdline, c.onCrash], [2, 512, 'root=/dev/xvda ro elevator=noop', 'restart']);
  assert.deepEqual(c.disks.map((d) => d.vdev), ['xvda', 'xvdb']);
  assert.equal(c.vifs[0]!.mac, '00:16:3e:0a:0b:0c');
  assert.equal(c.vifs[0]!.ip, '192.0.2.10');
  assert.deepEqual(c.warnings, ["t.cfg:10: dhcp: ignored: an xm setting that xl ignores"]);
});

test('names: what pvbox run --name takes', () => {
  for (const name of ['a', 'web-01', 'example.pvlinux', 'x_y', 'a'.repeat(64)]) assert.equal(parse([`name = "${name}"`, 'kernel = "/k"']).name, name);
});

// ---------------------------------------------------------------------------------------------
// The broken corpus: each names file:line and the key

test('broken: strings', () => {
  refuse(['name = "abc', 'kernel = "/k"'], 1, 'name', /unterminated string '"abc'/);
  refuse([...BASE, "extra = 'console=hvc0"], 3, 'extra', /unterminated string/);
  refuse([...BASE, 'extra = "a\\'], 3, 'extra', /backslash ends the line/);
  refuse([...BASE, 'extra = "\\x41"'], 3, 'extra', /numeric escapes/);
  refuse([...BASE, 'extra = "\\101"'], 3, 'extra', /numeric escapes/);
  refuse([...BASE, 'extra = "\\q"'], 3, 'extra', /invalid character after backslash/);
});

test('broken: lists', () => {
  refuse([...BASE, "disk = [ 'a' 'b' ]"], 3, 'disk', /expected ',' or '\]' in the list opened at line 3, found the string 'b'/);
  refuse([...BASE, 'disk = [ , ]'], 3, 'disk', /expected a value/);
  refuse([...BASE, "disk = [ 'a',", "  'b'", ''], 3, 'disk', /the list opened on this line is not closed/);
  refuse([...BASE, "disk = [ 'a'; ]"], 3, 'disk', /found ';'/);
  refuse([...BASE, 'disk = "/a,xvda,w"'], 3, 'disk', /is a single value but should be a list/);
  refuse([...BASE, 'disk = [ [ "/a,xvda,w" ] ]'], 3, 'disk', /item 1 is a list/);
  refuse([...BASE, 'kernel = [ "/k" ]'], 3, 'kernel', /is a list but should be a single value/);
  refuse([...BASE, 'disk = [ "/a,xvda,w" ]', 'disk += "/b,xvdb,w"'], 4, 'disk', /'\+=' cannot add a string to a list/);
});

test('broken: statements and lexical errors', () => {
  refuse([...BASE, 'memory = 512 vcpus = 2'], 3, 'memory', /expected the end of the line or ';' after the value, found 'vcpus'/);
  refuse([...BASE, '= 5'], 3, undefined, /expected a key at the start of a statement, found '='/);
  refuse([...BASE, 'memory 512'], 3, 'memory', /expected '=' after the key, found the number 512/);
  refuse([...BASE, 'memory ='], 3, 'memory', /expected a value .* found the end of the line/);
  refuse([...BASE, 'Memory = 512'], 3, undefined, /unexpected 'Memory': keys are lower case/);
  refuse([...BASE, 'on-crash = "destroy"'], 3, 'on', /unexpected '-crash'.*not Python/);
  refuse([...BASE, 'rtc_timeoffset = -3600'], 3, 'rtc_timeoffset', /a negative number must be quoted in xl \("-3600"\)/);
  refuse([...BASE, 'memory = 1.5'], 3, 'memory', /unexpected '\.5'.*not Python/);
  refuse([...BASE, 'memory = 512M'], 3, 'memory', /unexpected 'M'/);
  refuse([...BASE, 'extra = True'], 3, 'extra', /unexpected 'True'/);
  refuse(['name = "g"\r', 'kernel = "/k"'], 1, 'name', /DOS line endings/);
});

test('broken: unknown and unsupported keys', () => {
  refuse([...BASE, 'memroy = 512'], 3, 'memroy', /unknown key \(did you mean 'memory'\?\)/);
  refuse([...BASE, 'frobnicate = 1'], 3, 'frobnicate', /^[^(]*unknown key$/);
  refuse([...BASE, "pci = [ '0000:01:00.0' ]"], 3, 'pci', /unsupported key: pvbox has no PCI passthrough/);
  refuse([...BASE, 'e820_host = 1'], 3, 'e820_host', /unsupported key/);
  refuse([...BASE, 'tsc_mode = "native"'], 3, 'tsc_mode', /unsupported key/);
  refuse([...BASE, 'cpuid = "host,tm=0"'], 3, 'cpuid', /unsupported key: pvbox has no CPUID policies/);
  refuse([...BASE, 'timer_mode = "no_delay_for_missed_ticks"'], 3, 'timer_mode', /not for PV guests/);
});

test('broken: guest type', () => {
  refuse(['type = "hvm"', ...BASE], 1, 'type', /'hvm': pvbox runs PV guests only/);
  refuse([...BASE, 'type = "pvh"'], 3, 'type', /'pvh': pvbox runs PV guests only/);
  refuse([...BASE, 'type = "xen"'], 3, 'type', /'xen' is not a guest type/);
  refuse([...BASE, 'builder = "hvm"'], 3, 'builder', /pvbox runs PV guests only/);
});

test('broken: numbers and memory', () => {
  refuse([...BASE, "memory = 'lots'"], 3, 'memory', /'lots' is not a number/);
  refuse([...BASE, 'memory = 0'], 3, 'memory', /'0' is not between 1 and 1048576 MiB/);
  refuse([...BASE, 'memory = 99999999999999999999'], 3, 'memory', /out of range/);
  refuse([...BASE, 'memory = 08'], 3, 'memory', /'08' is not a number/);
  refuse([...BASE, 'memory = 0x'], 3, 'memory', /'0x' is not a number/);
  refuse([...BASE, 'memory = 512', 'memory += 1'], 4, 'memory', /'\+=' cannot be used with numbers/);
  refuse([...BASE, 'memory = 1024', 'maxmem = 512'], 4, 'maxmem', /512 MiB is less than memory \(1024 MiB at .*:3\)/);
  refuse([...BASE, 'vcpus = 4', 'maxvcpus = 2'], 4, 'maxvcpus', /2 is less than vcpus \(4 at .*:3\)/);
  refuse([...BASE, 'vcpus = 0'], 3, 'vcpus', /not between 1 and 128/);
  refuse([...BASE, 'localtime = "yes"'], 3, 'localtime', /'yes' is not a number/);
});

test('broken: name and uuid', () => {
  refuse(['kernel = "/k"'], undefined, 'name', /missing/);
  refuse(['name = "web/1"', 'kernel = "/k"'], 1, 'name', /'web\/1' contains '\/'/);
  refuse(['kernel = "/k"', 'name = "a\\tb"'], 2, 'name', /'a\\x09b' contains a control character/);
  refuse(['name = ".."', 'kernel = "/k"'], 1, 'name', /cannot be a file name/);
  refuse(['name = "my guest"', 'kernel = "/k"'], 1, 'name', /use letters, digits/);
  refuse(['name = "a@2"', 'kernel = "/k"'], 1, 'name', /use letters, digits/);
  refuse(['name = "123"', 'kernel = "/k"'], 1, 'name', /all digits/);
  refuse([`name = "${'n'.repeat(65)}"`, 'kernel = "/k"'], 1, 'name', /65 characters long \(at most 64\)/);
  refuse(['name = ""', 'kernel = "/k"'], 1, 'name', /is empty/);
  refuse(['name = [ "a" ]', 'kernel = "/k"'], 1, 'name', /is a list/);
  refuse([...BASE, 'uuid = "3F2504E0-4F89-11D3-9A0C-0305E82C330"'], 3, 'uuid', /is not a UUID/);
});

test('broken: boot', () => {
  refuse(['name = "g"', 'memory = 128'], undefined, 'kernel', /neither kernel nor bootloader/);
  refuse(['name = "g"', 'bootloader = "/usr/local/bin/my-loader"', 'disk = [ "/a,xvda,w" ]'], 2, 'bootloader', /is not supported: pvbox reads grub\.cfg/);
  refuse(['name = "g"', 'bootloader = "pygrub"'], 2, 'bootloader', /needs a disk/);
  refuse(['name = "g"', 'kernel = "/k"', 'firmware = "pvgrub64"'], 3, 'firmware', /both kernel .* and firmware/);
  refuse(['name = "g"', 'firmware = "pvgrub32"', 'disk = [ "/a,xvda,w" ]'], 2, 'firmware', /32-bit/);
  refuse(['name = "g"', 'firmware = "ovmf"'], 2, 'firmware', /only pvgrub64/);
  refuse(['name = "g"', 'kernel = ""'], 2, 'kernel', /is empty/);
});

test('broken: actions', () => {
  refuse([...BASE, 'on_crash = "coredump-restart"'], 3, 'on_crash', /'coredump-restart' is an xl action pvbox does not support \(use destroy, restart, preserve\)/);
  refuse([...BASE, 'on_reboot = "rename-restart"'], 3, 'on_reboot', /does not support/);
  refuse([...BASE, 'on_poweroff = "explode"'], 3, 'on_poweroff', /'explode' is not an action \(xl knows destroy, restart, rename-restart/);
});

test('broken: devices', () => {
  refuse([...BASE, 'vif = [ "mac=00:16:3e:zz:00:01" ]'], 3, undefined, /vif '.*': mac '00:16:3e:zz:00:01' is not six hex octets/);
  refuse([...BASE, 'vif = [', '  "bridge=xenbr0",', '  "mac=01:00:5e:00:00:01",', ']'], 5, undefined, /vif '.*': mac .* is a multicast address/);
  refuse([...BASE, 'vif = [ "mac=00:16:3e:00:00:01", "mac=00:16:3e:00:00:01" ]'], 3, 'vif', /mac 00:16:3e:00:00:01 is used twice/);
  refuse([...BASE, 'disk = [ "/a,xvda,w",', '"/b,xvdz9,w" ]'], 4, undefined, /disk '\/b,xvdz9,w': vdev 'xvdz9'/);
  refuse([...BASE, 'disk = [ "/a,xvda,w", "/b,xvda,r" ]'], 3, 'disk', /xvda is used twice/);
  refuse([...BASE, 'vfb = [ "sdl=1" ]'], 3, undefined, /vfb 'sdl=1': sdl=1: pvbox has no SDL/);
  refuse([...BASE, 'vfb = [ "vnc=1,colour=blue" ]'], 3, undefined, /vfb '.*': unknown key 'colour'/);
  refuse([...BASE, 'vfb = [ "vncdisplay=x" ]'], 3, undefined, /vncdisplay 'x' is not a display number/);
  refuse([...BASE, 'vnc = 1', 'sdl = 1'], 4, 'sdl', /no SDL window/);
  // Values with escaped control characters still make one-line messages (refuse checks it).
  refuse([...BASE, 'disk = [ "/a\\n,xvdq,w" ]'], 3, undefined, /disk '\/a\\x0a,xvdq,w'/);
  refuse([...BASE, 'vif = [ "mac=\\n" ]'], 3, undefined, /vif 'mac=\\x0a'/);
  refuse([...BASE, 'vfb = [ "vnc=\\t" ]'], 3, undefined, /vfb 'vnc=\\x09'/);
});

test('broken: bytes that are not an xl.cfg text', () => {
  refuse(Buffer.from('name = "g"\nkernel = "/k"\nextra = "a\0b"\n'), 3, undefined, /NUL byte/);
  refuse(Buffer.concat([Buffer.from('name = "g"\nkernel = "/k"\n# caf'), Buffer.from([0xe9]), Buffer.from('\n')]), 3, undefined, /not valid UTF-8/);
  refuse(Buffer.from([0xff, 0xfe, 0x6e, 0x00]), 1, undefined, /NUL byte/);
});

test('broken: very large and pathological inputs fail fast, reading at most 1 MiB', () => {
  const t0 = performance.now();
  // 10 MB of garbage, in memory and in a file.
  const garbage = randomBytes(10 << 20);
  assertRefused(() => parseXlConfig('garbage.cfg', garbage), 'garbage.cfg', undefined, undefined, /more than 1 MiB/);
  const big = writeCfg(garbage);
  assertRefused(() => readXlConfigFile(big), big, undefined, undefined, /10485760 bytes, too large/);
  // A 64 GiB sparse file is refused from its size; /dev/zero (no size) after 1 MiB + 1 byte.
  const sparse = join(dir, 'sparse.cfg');
  const fd = openSync(sparse, 'w');
  ftruncateSync(fd, 64 * 2 ** 30);
  closeSync(fd);
  assertRefused(() => readXlConfigFile(sparse), sparse, undefined, undefined, /too large/);
  assertRefused(() => readXlConfigFile('/dev/zero'), '/dev/zero', undefined, undefined, /more than 1 MiB/);
  // Printable garbage just under the limit stops at its first token.
  const printable = Buffer.from(Array.from(randomBytes(MAX_CONFIG_BYTES - 1), (b) => 0x21 + (b % 94)));
  printable[0] = 0x2a; // '*'
  assertRefused(() => parseXlConfig('printable.cfg', printable), 'printable.cfg', 1, undefined, /unexpected/);
  // Half a million '[' would exhaust a recursive parser's stack.
  assertRefused(() => parseXlConfig('deep.cfg', `${BASE.join('\n')}\nextra = ${'['.repeat(500_000)}`), 'deep.cfg', 3, 'extra', /nested more than 16 deep/);
  // A string of almost 1 MiB and a list of 100,000 items are fine.
  assert.equal(parseXlConfig('long.cfg', `${BASE.join('\n')}\nextra = "${'x'.repeat(MAX_CONFIG_BYTES - 100)}"\n`).cmdline!.length, MAX_CONFIG_BYTES - 100);
  const many = parseXlConfig('many.cfg', `${BASE.join('\n')}\nbootloader_args = [ ${Array(100_000).fill('"-v"').join(', ')} ]\n`);
  assert.equal(many.warnings.length, 1);
  // 40,000 appends to one list, and 100,000 repeats of one key (one warning, not 100,000).
  const appends = parseXlConfig('appends.cfg', `${BASE.join('\n')}\nbootloader_args = []\n${'bootloader_args+=["-v"]\n'.repeat(40_000)}`);
  assert.equal(appends.origins.get('bootloader_args')!.line, 40_003);
  const repeats = parseXlConfig('repeats.cfg', `${BASE.join('\n')}\n${'memory=64\n'.repeat(100_000)}`);
  assert.equal(repeats.warnings.length, 1);
  assert.equal(repeats.origins.get('memory')!.line, 100_002);
  const ms = performance.now() - t0;
  assert.ok(ms < 5000, `took ${ms.toFixed(0)} ms`);
});

test('every error of the corpus is a single line without a stack trace', () => {
  // One case through the real CLI-facing type: the message is what a person sees.
  const message = refuse([...BASE, 'memory = "lots"'], 3, 'memory', /not a number/);
  assert.doesNotMatch(message, /\bat .*\.ts:\d+/);
});

test('the uuid string and the 16-byte domain handle the guest reads (XENVER_guest_handle) convert both ways', () => {
  const text = 'c0ffee00-1234-4abc-8def-0123456789ab';
  const bytes = parseUuid(text)!;
  assert.deepEqual([...bytes.subarray(0, 4)], [0xc0, 0xff, 0xee, 0x00]);
  assert.equal(bytes.length, 16);
  assert.equal(formatUuid(bytes), text);
  assert.equal(formatUuid(parseUuid(text.toUpperCase())!), text);
  for (const bad of ['', 'c0ffee00123444abc8def0123456789ab', 'c0ffee00-1234-4abc-8def-0123456789a', 'g0ffee00-1234-4abc-8def-0123456789ab']) assert.equal(parseUuid(bad), undefined, bad);
});
