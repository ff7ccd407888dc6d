// On a terminal the console is raw and Ctrl-] ends the session, as `xl console` detaches (run through util-linux `script` for a pty).
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { ensureDefaultImage } from '../../src/images/debian.js';
import { PVBOX } from './harness.js';

test('Ctrl-] on a terminal ends the session', { timeout: 600_000 }, async (t) => {
  if (spawnSync('script', ['--version']).status !== 0) { t.skip('util-linux script(1) not installed'); return; }
  const img = await ensureDefaultImage();
  const cmd = [process.execPath, PVBOX, 'run', '--kernel', img.kernel, '--ramdisk', img.initrd].map((a) => `'${a}'`).join(' ');
  const p = spawn('script', ['-qfec', cmd, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  p.stdout.setEncoding('latin1');
  p.stdout.on('data', (s: string) => { out += s; });
  const exited = new Promise<number>((r) => p.on('exit', (c) => r(c ?? 1)));
  try {
    const deadline = Date.now() + 300_000;
    while (!/PVBOX-READY[\s\S]*# /.test(out)) {
      if (Date.now() > deadline || p.exitCode !== null) assert.fail(`no shell prompt on the terminal:\n${out.slice(-2000)}`);
      await new Promise((r) => setTimeout(r, 250));
    }
    // Raw mode: a typed line reaches the guest's shell and is echoed by it.
    p.stdin.write('echo tty-$((6*7))\r');
    while (!out.includes('tty-42')) {
      if (Date.now() > deadline) assert.fail(`command did not run:\n${out.slice(-1000)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    p.stdin.write('\x1d');
    assert.equal(await exited, 0);
    assert.match(out, /console detached/);
  } finally {
    p.kill('SIGKILL');
  }
});
