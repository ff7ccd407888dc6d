// Bad input for `pvbox run`: each case gets one line naming the problem and a non-zero exit, never a stack trace.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { PVBOX } from '../guest/harness.js';
import { findCachedImage } from '../../src/images/debian.js';

const dir = mkdtempSync(join(tmpdir(), 'pvbox-bad-'));

function pvbox(args: string[], env: Record<string, string> = {}): { status: number | null; stderr: string } {
  const r = spawnSync(process.execPath, [PVBOX, ...args], { encoding: 'utf8', input: '', timeout: 120_000, env: { ...process.env, ...env } });
  return { status: r.status, stderr: r.stderr };
}

function assertOneLine(r: { status: number | null; stderr: string }, pattern: RegExp): void {
  assert.notEqual(r.status, 0, 'exit status must be non-zero');
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, `expected one line, got:\n${r.stderr}`);
  assert.match(lines[0]!, /^pvbox: /);
  assert.match(lines[0]!, pattern);
  assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
}

test('missing kernel file', () => assertOneLine(pvbox(['run', '--kernel', join(dir, 'nope')]), /kernel .*nope.*no such file/));
test('unknown command and option', () => {
  assertOneLine(pvbox(['frobnicate']), /unknown command 'frobnicate'/);
  assertOneLine(pvbox(['run', '--bogus']), /bogus/);
  assertOneLine(pvbox(['run', '--memory', 'lots']), /--memory 'lots'/);
});
test('a kernel without Xen notes is refused', () => {
  assertOneLine(pvbox(['run', '--kernel', process.execPath]), /Xen/i);
});
test('not a kernel at all', () => {
  const f = join(dir, 'junk'); writeFileSync(f, Buffer.alloc(4096, 0x41));
  assertOneLine(pvbox(['run', '--kernel', f]), /junk/);
});
test('a truncated bzImage payload is refused', async (t) => {
  const img = await findCachedImage({ flavour: 'amd64' });
  if (!img) { t.skip('no cached default image (built by the guest tests)'); return; }
  const k = readFileSync(img.kernel);
  const f = join(dir, 'truncated'); writeFileSync(f, k.subarray(0, Math.floor(k.length * 0.6)));
  assertOneLine(pvbox(['run', '--kernel', f]), /truncated|payload|corrupt|past|end/i);
});
test('too little memory', async (t) => {
  assertOneLine(pvbox(['run', '--kernel', process.execPath, '--memory', '16']), /at least 64 MiB/);
  const img = await findCachedImage({ flavour: 'amd64' });
  if (!img) { t.skip('no cached default image'); return; }
  assertOneLine(pvbox(['run', '--kernel', img.kernel, '--ramdisk', img.initrd, '--memory', '64']), /memory/);
});
test('no KVM device', async (t) => {
  const img = await findCachedImage({ flavour: 'amd64' });
  if (!img) { t.skip('no cached default image'); return; }
  assert.ok(existsSync(img.kernel));
  assertOneLine(pvbox(['run', '--kernel', img.kernel], { PVBOX_KVM_DEVICE: join(dir, 'kvm') }), /kvm.* does not exist/);
});
