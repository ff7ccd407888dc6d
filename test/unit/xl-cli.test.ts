// The xl verbs without booting a guest: output formats (xl_info.c), xl's memory sizes, and bad input through the CLI — a corpus of broken xl.cfg files, unknown domains, a host without enough memory — each one line and a non-zero exit with nothing left in the run directory.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { PVBOX } from '../guest/harness.js';
import { formatList, formatUptime, parseMemSizeKb, xmVerb } from '../../src/cli/xl.js';

const dir = mkdtempSync(join(tmpdir(), 'pvbox-xl-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const env = { ...process.env, PVBOX_RUNDIR: join(dir, 'run') };

function pvbox(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [PVBOX, ...args], { encoding: 'utf8', input: '', timeout: 120_000, env, cwd: dir });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function assertOneLine(r: { status: number | null; stderr: string }, pattern: RegExp): void {
  assert.notEqual(r.status, 0, 'exit status must be non-zero');
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, `expected one line, got:\n${r.stderr}`);
  assert.match(lines[0]!, /^pvbox: /);
  assert.match(lines[0]!, pattern);
}

/** Nothing half-created: no registry entry, socket or boot files left behind. */
function assertRunDirClean(): void {
  const run = env.PVBOX_RUNDIR;
  if (!existsSync(run)) return;
  const left = readdirSync(run).filter((e) => e !== 'log' && e !== 'domains' && e !== 'boot');
  assert.deepEqual(left, [], 'no sockets left');
  if (existsSync(join(run, 'domains'))) assert.deepEqual(readdirSync(join(run, 'domains')), [], 'no registry entries left');
  if (existsSync(join(run, 'boot'))) assert.deepEqual(readdirSync(join(run, 'boot')), [], 'no boot files left');
}

test('xl list layout: the header with its tabs, "%-40s %5d %5lu %5d     %c%c%c%c%c%c  %8.1f" rows', () => {
  const out = formatList([
    { name: 'Domain-0', domid: 0, memMiB: 24105, vcpus: 2, state: 'r-----', cpuSeconds: 1234.56 },
    { name: 'web1', domid: 3, memMiB: 512, vcpus: 1, state: '--p---', cpuSeconds: 7 },
  ]);
  assert.equal(out,
    'Name                                        ID   Mem VCPUs\tState\tTime(s)\n'
    + 'Domain-0                                     0 24105     2     r-----    1234.6\n'
    + 'web1                                         3   512     1     --p---       7.0\n');
});

test('uptime strings and memory sizes as xl reads them', () => {
  assert.equal(formatUptime(59), ' 0:00:59');
  assert.equal(formatUptime(86400 + 3661), '1 day,  1:01:01');
  assert.equal(formatUptime(3 * 86400 + 600), '3 days,  0:10:00');
  assert.equal(parseMemSizeKb('512'), 512 * 1024, 'no suffix: MiB');
  assert.equal(parseMemSizeKb('512m'), 512 * 1024);
  assert.equal(parseMemSizeKb('1g'), 1024 * 1024);
  assert.equal(parseMemSizeKb('2048k'), 2048);
  assert.equal(parseMemSizeKb('1048576b'), 1024);
  assert.equal(parseMemSizeKb('12q'), undefined);
  assert.equal(parseMemSizeKb('-5'), undefined);
  assert.equal(xmVerb('memset'), 'mem-set');
  assert.equal(xmVerb('vcpu-set'), 'vcpu-set');
  assert.throws(() => xmVerb('frob'), /xm: unknown verb 'frob'/);
});

test('list and info with no guests: Domain-0 alone, xl info keys', () => {
  const l = pvbox(['list']);
  assert.equal(l.status, 0, l.stderr);
  const lines = l.stdout.trimEnd().split('\n');
  assert.equal(lines.length, 2);
  assert.match(lines[1]!, /^Domain-0 {37}0 +\d+ +\d+ {5}r----- +\d+\.\d$/);
  const i = pvbox(['info']);
  assert.equal(i.status, 0, i.stderr);
  for (const key of ['host', 'nr_cpus', 'total_memory', 'free_memory', 'xen_major', 'xen_version', 'xen_caps', 'xend_config_format']) assert.match(i.stdout, new RegExp(`^${key} +: \\S`, 'm'), key);
  assert.match(i.stdout, /^xen_version {12}: 4\.17\.0-pvbox$/m);
});

test('unknown domains: one line each, for every verb that takes one', () => {
  for (const args of [['destroy', 'ghost'], ['pause', 'ghost'], ['unpause', '7'], ['shutdown', 'ghost'], ['reboot', 'ghost'], ['mem-set', 'ghost', '128m'],
    ['mem-max', 'ghost', '128'], ['domid', 'ghost'], ['domname', '9'], ['rename', 'ghost', 'x'], ['list', 'ghost'], ['xm', 'kill', 'ghost']]) {
    assertOneLine(pvbox(args), /no domain '(ghost|7|9)'/);
  }
  assertOneLine(pvbox(['mem-set', 'ghost', 'lots']), /invalid memory size: lots/);
  assertOneLine(pvbox(['shutdown']), /usage: pvbox shutdown/);
  assertOneLine(pvbox(['create']), /usage: pvbox create/);
  assertOneLine(pvbox(['xm', 'frob']), /xm: unknown verb 'frob'/);
});

test('broken xl.cfg files through `pvbox create`: one line naming file:line and key; nothing left behind', () => {
  const kernel = join(dir, 'vmlinuz');
  writeFileSync(kernel, 'not really a kernel');
  const corpus: [string, string, RegExp][] = [
    ['no-name.cfg', `kernel = "${kernel}"\nmemory = 128\n`, /no-name\.cfg: name: missing/],
    ['syntax.cfg', 'name = "a"\nmemory = = 128\n', /syntax\.cfg:2: /],
    ['unknown-key.cfg', `name = "a"\nkernel = "${kernel}"\nmemroy = 128\n`, /unknown-key\.cfg:3: memroy: unknown key \(did you mean 'memory'\?\)/],
    ['missing-kernel.cfg', 'name = "a"\nmemory = 128\n\nkernel = "/nonexistent/vmlinuz"\n', /missing-kernel\.cfg:4: kernel: \/nonexistent\/vmlinuz: no such file/],
    ['missing-ramdisk.cfg', `name = "a"\nmemory = 128\nkernel = "${kernel}"\nramdisk = "/nonexistent/initrd"\n`, /missing-ramdisk\.cfg:4: ramdisk: \/nonexistent\/initrd: no such file/],
    ['missing-disk.cfg', `name = "a"\nmemory = 128\nkernel = "${kernel}"\ndisk = [\n  "format=raw, vdev=xvda, access=rw, target=/nonexistent.img",\n]\n`, /missing-disk\.cfg:5: disk: \/nonexistent\.img: no such file/],
    ['small.cfg', `name = "a"\nkernel = "${kernel}"\nmemory = 32\n`, /small\.cfg:3: memory: 32 MiB is too little/],
    ['default-memory.cfg', `name = "a"\nkernel = "${kernel}"\n`, /default-memory\.cfg: memory: 32 MiB is too little.*xl's default/],
    ['vcpus.cfg', `name = "a"\nkernel = "${kernel}"\nmemory = 128\nvcpus = 4\n`, /vcpus\.cfg:4: vcpus: 4: pvbox runs one vCPU per guest/],
    ['hvm.cfg', `name = "a"\ntype = "hvm"\nkernel = "${kernel}"\n`, /hvm\.cfg:2: type: 'hvm': pvbox runs PV guests only/],
    ['vfb.cfg', `name = "a"\nkernel = "${kernel}"\nmemory = 128\nvfb = [ "vnc=1" ]\n`, /vfb\.cfg:4: vfb: pvbox has no framebuffer/],
    ['pygrub-nodisk.cfg', 'name = "a"\nmemory = 128\nbootloader = "pygrub"\n', /pygrub-nodisk\.cfg:3: bootloader: needs a disk/],
    ['pygrub-blank.cfg', `name = "a"\nmemory = 128\nbootloader = "pygrub"\ndisk = [ "${join(dir, 'blank.img')},raw,xvda,rw" ]\n`, /pygrub-blank\.cfg:3: bootloader: .*blank\.img: no ext2\/3\/4 file system or partition table/],
    ['huge.cfg', `name = "a"\nkernel = "${kernel}"\nmemory = 1000000\n`, /not enough memory for 'a': it needs 1000000 MiB/],
  ];
  writeFileSync(join(dir, 'blank.img'), Buffer.alloc(1 << 20));
  for (const [name, text, pattern] of corpus) {
    writeFileSync(join(dir, name), text);
    assertOneLine(pvbox(['create', name]), pattern);
    assertRunDirClean();
  }
  // The overrides of `xl create cfg key=value` are checked the same way, and named as such.
  writeFileSync(join(dir, 'ok.cfg'), `name = "a"\nkernel = "${kernel}"\nmemory = 128\n`);
  assertOneLine(pvbox(['create', 'ok.cfg', 'memory=lots']), /<command line>:1: memory/);
  assertOneLine(pvbox(['create', 'nonexistent.cfg']), /nonexistent\.cfg: cannot open: ENOENT/);
  // A file that is not a kernel fails in the domain process, whose error comes back as one line.
  assertOneLine(pvbox(['create', 'ok.cfg']), /vmlinuz/);
  assertRunDirClean();
});
