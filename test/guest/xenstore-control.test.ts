// Guests under `pvbox xenstored`: they appear in the daemon's store by name, Debian's xenstore-utils see them, and host-side control/shutdown and control/sysrq drive them as under Xen (issue 3).
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { ensureDefaultImage } from '../../src/images/debian.js';
import { ConsoleClient, GuestSession, PVBOX } from './harness.js';

const dir = mkdtempSync(join(tmpdir(), 'pvbox-xsctl-'));
const SOCK = join(dir, 'socket');
const env = { ...process.env, XENSTORED_PATH: SOCK };
let daemon: ReturnType<typeof spawn> | undefined;
let skip: string | undefined;

function ensureClients(): string | undefined {
  if (spawnSync('xenstore-write', ['--help']).error === undefined) return undefined;
  const aptEnv = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const install = () => spawnSync('apt-get', ['install', '-y', '--no-install-recommends', 'xenstore-utils'], { stdio: 'ignore', env: aptEnv, timeout: 600_000 }).status === 0;
  if (install()) return undefined;
  spawnSync('apt-get', ['update'], { stdio: 'ignore', env: aptEnv, timeout: 600_000 });
  return install() ? undefined : 'apt-get install xenstore-utils failed';
}
const xs = (...a: string[]): string => execFileSync(a[0]!, a.slice(1), { encoding: 'utf8', env });

before(async () => {
  skip = ensureClients();
  if (skip) return;
  daemon = spawn(process.execPath, [PVBOX, 'xenstored', '--foreground', '--socket', SOCK], { stdio: 'ignore', env });
  for (let i = 0; i < 100 && spawnSync('xenstore-read', ['/local/domain/0/name'], { env }).status !== 0; i++) await new Promise((r) => setTimeout(r, 100));
});
after(() => { daemon?.kill('SIGTERM'); });

async function boot(name: string): Promise<{ g: GuestSession; domid: string }> {
  const img = await ensureDefaultImage();
  const g = new GuestSession(['--kernel', img.kernel, '--ramdisk', img.initrd, '--name', name], env);
  await g.waitFor('PVBOX-READY', 240_000);
  await g.waitFor('# ', 30_000);
  const ids = xs('xenstore-list', '/local/domain').split('\n').filter(Boolean);
  const domid = ids.find((id) => spawnSync('xenstore-read', [`/local/domain/${id}/name`], { env, encoding: 'utf8' }).stdout.trim() === name);
  assert.ok(domid, `domain ${name} not under /local/domain (have ${ids.join(',')})`);
  return { g, domid };
}

test('a guest appears by name; control/sysrq and control/shutdown poweroff work; its nodes go away', { timeout: 900_000 }, async (t) => {
  if (skip) { t.skip(skip); return; }
  const { g, domid } = await boot('ctl-a');
  try {
    assert.equal(xs('xenstore-read', `/local/domain/${domid}/domid`).trim(), domid);
    // The primary console is a xenbus device as libxl makes it: console 0's keys, its backend Connected.
    assert.match(xs('xenstore-read', `/local/domain/${domid}/console/ring-ref`).trim(), /^\d+$/);
    assert.match(xs('xenstore-read', `/local/domain/${domid}/console/port`).trim(), /^\d+$/);
    assert.equal(xs('xenstore-read', `/local/domain/0/backend/console/${domid}/0/state`).trim(), '4');
    // The guest's own drivers announced themselves (Linux manage.c writes control/feature-*).
    assert.equal(xs('xenstore-read', `/local/domain/${domid}/control/feature-poweroff`).trim(), '1');
    assert.equal((await g.sh('cat /sys/hypervisor/uuid')).trim(), xs('xenstore-read', `/local/domain/${domid}/vm`).trim().replace('/vm/', ''));
    const mark = g.output.length;
    xs('xenstore-write', `/local/domain/${domid}/control/sysrq`, 'h');
    await g.waitFor(/sysrq: HELP/i, 60_000, mark);
    assert.equal(xs('xenstore-read', `/local/domain/${domid}/control/sysrq`).replace(/\0/g, '').trim(), '', 'the guest acknowledges by clearing the key');
    xs('xenstore-write', `/local/domain/${domid}/control/shutdown`, 'poweroff');
    assert.equal(await g.exited, 0, g.stderr);
    assert.match(g.stderr, /powered off/);
    for (let i = 0; i < 50 && xs('xenstore-list', '/local/domain').split('\n').includes(domid); i++) await new Promise((r) => setTimeout(r, 100));
    assert.ok(!xs('xenstore-list', '/local/domain').split('\n').includes(domid), 'domain nodes removed');
  } finally { g.kill(); }
});

test('control/shutdown reboot reboots the guest (pvbox run ends with status 3)', { timeout: 900_000 }, async (t) => {
  if (skip) { t.skip(skip); return; }
  const { g, domid } = await boot('ctl-b');
  try {
    xs('xenstore-write', `/local/domain/${domid}/control/shutdown`, 'reboot');
    assert.equal(await g.exited, 3, g.stderr);
    assert.match(g.stderr, /rebooted/);
  } finally { g.kill(); }
});

test('a second guest with the same name is refused with one line', { timeout: 600_000 }, async (t) => {
  if (skip) { t.skip(skip); return; }
  const { g } = await boot('ctl-c');
  try {
    const img = await ensureDefaultImage();
    const r = spawnSync(process.execPath, [PVBOX, 'run', '--kernel', img.kernel, '--ramdisk', img.initrd, '--name', 'ctl-c'], { env, encoding: 'utf8', input: '', timeout: 120_000 });
    assert.notEqual(r.status, 0);
    assert.match(r.stderr.trim(), /^pvbox: .*already exists/);
    assert.equal(r.stderr.trim().split('\n').length, 1);
    g.proc.stdin.write('poweroff -f\n');
    assert.equal(await g.exited, 0);
  } finally { g.kill(); }
});

test('secondary console under the daemon: xenstored runs the backend state machine, the domain process the ring', { timeout: 900_000 }, async (t) => {
  if (skip) { t.skip(skip); return; }
  const img = await ensureDefaultImage();
  const runEnv = { ...env, PVBOX_RUNDIR: join(dir, 'run') };
  const g = new GuestSession(['--kernel', img.kernel, '--ramdisk', img.initrd, '--name', 'ctl-d', '--consoles', '1'], runEnv);
  try {
    await g.waitFor('PVBOX-READY', 240_000);
    await g.waitFor('# ', 30_000);
    const ids = xs('xenstore-list', '/local/domain').split('\n').filter(Boolean);
    const domid = ids.find((id) => spawnSync('xenstore-read', [`/local/domain/${id}/name`], { env, encoding: 'utf8' }).stdout.trim() === 'ctl-d');
    assert.ok(domid);
    assert.equal(xs('xenstore-read', `/local/domain/0/backend/console/${domid}/1/state`).trim(), '4');
    assert.equal(xs('xenstore-read', `/local/domain/${domid}/device/console/1/state`).trim(), '4');
    const c = new ConsoleClient('ctl-d', runEnv, 1);
    await new Promise((r) => setTimeout(r, 1000));
    await g.sh('echo via-daemon-$((40+2)) > /dev/hvc1');
    assert.ok(await c.sees('via-daemon-42'), c.seen);
    await c.close();
    g.proc.stdin.write('poweroff -f\n');
    assert.equal(await g.exited, 0);
    for (let i = 0; i < 50 && spawnSync('xenstore-read', [`/local/domain/0/backend/console/${domid}/1/state`], { env }).status === 0; i++) await new Promise((r) => setTimeout(r, 100));
    assert.notEqual(spawnSync('xenstore-read', [`/local/domain/0/backend/console/${domid}/1/state`], { env }).status, 0, 'backend directory removed');
  } finally { g.kill(); }
});

test('disks under the daemon: a boot disk and a hot-plugged one; xenstored runs their control plane, the domain process serves the rings', { timeout: 900_000 }, async (t) => {
  if (skip) { t.skip(skip); return; }
  const img = await ensureDefaultImage();
  const runEnv = { ...env, PVBOX_RUNDIR: join(dir, 'run-vbd') };
  const a = join(dir, 'a.img'), b = join(dir, 'b.img');
  writeFileSync(a, randomBytes(4 << 20));
  writeFileSync(b, randomBytes(2 << 20));
  const md5 = (p: string) => createHash('md5').update(readFileSync(p)).digest('hex');
  const g = new GuestSession(['--kernel', img.kernel, '--ramdisk', img.initrd, '--name', 'ctl-v', '--disk', `format=raw, vdev=xvda, access=rw, target=${a}`], runEnv);
  try {
    await g.waitFor('PVBOX-READY', 240_000);
    await g.waitFor('# ', 30_000);
    await g.sh('dmesg -n 1');
    const ids = xs('xenstore-list', '/local/domain').split('\n').filter(Boolean);
    const domid = ids.find((id) => spawnSync('xenstore-read', [`/local/domain/${id}/name`], { env, encoding: 'utf8' }).stdout.trim() === 'ctl-v');
    assert.ok(domid);
    assert.equal(xs('xenstore-read', `/local/domain/0/backend/vbd/${domid}/51712/state`).trim(), '4');
    assert.equal(xs('xenstore-read', `/local/domain/0/backend/vbd/${domid}/51712/params`).trim(), a);
    assert.match(await g.sh('md5sum /dev/xvda', 300_000), new RegExp(md5(a)));
    const att = spawnSync(process.execPath, [PVBOX, 'block-attach', 'ctl-v', `file:${b},xvdb,r`], { env: runEnv, encoding: 'utf8' });
    assert.equal(att.status, 0, att.stderr);
    assert.match(await g.sh('i=0; while [ ! -e /sys/block/xvdb ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; md5sum /dev/xvdb', 300_000), new RegExp(md5(b)));
    assert.equal(xs('xenstore-read', `/local/domain/0/backend/vbd/${domid}/51728/state`).trim(), '4');
    const det = spawnSync(process.execPath, [PVBOX, 'block-detach', 'ctl-v', 'xvdb'], { env: runEnv, encoding: 'utf8' });
    assert.equal(det.status, 0, det.stderr);
    assert.notEqual(spawnSync('xenstore-read', [`/local/domain/0/backend/vbd/${domid}/51728/state`], { env }).status, 0, 'xvdb backend removed');
    assert.doesNotMatch(await g.sh('ls /sys/block'), /xvdb/);
    g.proc.stdin.write('poweroff -f\n');
    assert.equal(await g.exited, 0);
  } finally { g.kill(); }
});
