// `pvbox console <domain>` from another process: it sees the guest's console and types into it; detaching leaves the guest running. A `pvbox run` guest
// is a domain like any other for the toolstack: `pvbox list` shows it, pause/unpause/mem-set act on it, `pvbox destroy` ends it.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ensureDefaultImage } from '../../src/images/debian.js';
import { ConsoleClient, GuestSession, PVBOX, pvboxCli } from './harness.js';

test('pvbox console attaches to a running guest, and the guest outlives the detach', { timeout: 600_000 }, async () => {
  const env = { ...process.env, PVBOX_RUNDIR: mkdtempSync(join(tmpdir(), 'pvbox-run-')) };
  const img = await ensureDefaultImage();
  const g = new GuestSession(['--kernel', img.kernel, '--ramdisk', img.initrd, '--name', 'attach-me'], env);
  try {
    await g.waitFor('PVBOX-READY', 240_000);
    await g.waitFor('# ', 30_000);
    const c = new ConsoleClient('attach-me', env);
    await new Promise((r) => setTimeout(r, 1000));
    c.proc.stdin.write('echo attached-$((6*7))\n');
    assert.ok(await c.sees('attached-42', 60_000), 'the attached console shows the guest\'s answer');
    assert.match(g.output, /attached-42/, 'and so does the pvbox run terminal');
    await c.close();
    assert.equal((await g.sh('echo still-$((1+1))')).trim(), 'still-2');
    // Without xenstored, a second guest may not take a live guest's name.
    const dup = spawn(process.execPath, [PVBOX, 'run', '--kernel', img.kernel, '--ramdisk', img.initrd, '--name', 'attach-me'], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let dupErr = '';
    dup.stderr.setEncoding('utf8'); dup.stderr.on('data', (s: string) => { dupErr += s; });
    assert.notEqual(await new Promise((res) => dup.on('exit', res)), 0);
    assert.match(dupErr.trim(), /^pvbox: a domain named 'attach-me' already exists \(domain 1\)$/);
    // The toolstack sees it: xl list's row (state r or b), pause (p) and unpause, a balloon target.
    const { ok } = pvboxCli(env);
    assert.match(ok('list'), /^Domain-0 +0 /m);
    assert.match(ok('list'), /^attach-me +1 +5\d\d +1 +[rb-]{6} +\d+\.\d$/m);
    ok('pause', 'attach-me');
    assert.match(ok('list', 'attach-me'), /^attach-me +1 +5\d\d +1 +--p--- /m);
    ok('unpause', 'attach-me');
    assert.equal((await g.sh('echo resumed-$((2+3))')).trim(), 'resumed-5');
    // The balloon driver gives the memory back at its own pace: the row follows.
    ok('mem-set', 'attach-me', '448m');
    let row = '';
    for (const end = Date.now() + 60_000; Date.now() < end && !/^attach-me +1 +448 /m.test(row); await new Promise((res) => setTimeout(res, 500))) row = ok('list', 'attach-me');
    assert.match(row, /^attach-me +1 +448 /m);
    const r = spawn(process.execPath, [PVBOX, 'console', 'no-such-domain'], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let err = '';
    r.stderr.setEncoding('utf8'); r.stderr.on('data', (s: string) => { err += s; });
    assert.notEqual(await new Promise((res) => r.on('exit', res)), 0);
    assert.match(err, /^pvbox: no running domain 'no-such-domain'/);
    // xl destroy: the pvbox run process ends and says so; the domain is no longer listed.
    ok('destroy', 'attach-me');
    assert.equal(await g.exited, 0);
    assert.match(g.stderr, /guest attach-me destroyed \(xl destroy\)/);
    assert.doesNotMatch(ok('list'), /attach-me/);
  } finally { g.kill(); }
});

test('secondary consoles: device/console/1 connects through xenbus and pvbox console --num 1 carries it both ways', { timeout: 600_000 }, async () => {
  const env = { ...process.env, PVBOX_RUNDIR: mkdtempSync(join(tmpdir(), 'pvbox-run-')) };
  const img = await ensureDefaultImage();
  const g = new GuestSession(['--kernel', img.kernel, '--ramdisk', img.initrd, '--name', 'two-consoles', '--consoles', '1'], env);
  try {
    await g.waitFor('PVBOX-READY', 240_000);
    await g.waitFor('# ', 30_000);
    // The guest's hvc_xen granted a ring and an event channel, and both ends are Connected (XenbusStateConnected = 4).
    const fe = await g.sh('xenstore-read device/console/1/state device/console/1/ring-ref device/console/1/port');
    const [state, ref, port] = fe.trim().split('\n');
    assert.equal(state, '4');
    assert.match(ref ?? '', /^\d+$/);
    assert.match(port ?? '', /^\d+$/);
    const c = new ConsoleClient('two-consoles', env, 1);
    await new Promise((r) => setTimeout(r, 1000));
    await g.sh('echo out-$((40+2)) > /dev/hvc1');
    assert.ok(await c.sees('out-42'), c.seen);
    // Typed into the attached console, read by the guest from /dev/hvc1.
    const reader = g.sh('head -c 6 /dev/hvc1', 120_000);
    await new Promise((r) => setTimeout(r, 1000));
    c.proc.stdin.write('in-123\n'); // the tty is in canonical mode: a line
    assert.match(await reader, /in-123/);
    await c.close();
    g.proc.stdin.write('poweroff -f\n');
    assert.equal(await g.exited, 0);
  } finally { g.kill(); }
});
