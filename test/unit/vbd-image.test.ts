// The vbd backend's disk images (src/backends/vbd/image.ts, raw.ts, qcow2.ts, image-lock.ts), checked against QEMU's own tools: qemu-img and qemu-io write what pvbox reads, and read back (and check) what pvbox writes.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openImage, type BlockImage } from '../../src/backends/vbd/image.js';
import { ImageError } from '../../src/errors.js';
import { ensureHostCommands } from '../../src/images/host-packages.js';

let dir = '';
before(() => {
  ensureHostCommands({ 'qemu-img': 'qemu-utils', 'qemu-io': 'qemu-utils' }, 'the qcow2 tests');
  dir = mkdtempSync(join(tmpdir(), 'pvbox-vbd-image-'));
});
after(() => { if (dir) rmSync(dir, { recursive: true, force: true }); });

const KiB = 1024, MiB = 1024 * 1024;

function run(cmd: string, args: string[]): { status: number | null; out: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 30_000 });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}
function qemuImg(...args: string[]): string {
  const r = run('qemu-img', args);
  assert.equal(r.status, 0, `qemu-img ${args.join(' ')}: ${r.out}`);
  return r.out;
}
/** qemu-io with -c commands; fails the test if a pattern check fails. */
function qemuIo(file: string, fmt: string, ...cmds: string[]): string {
  const r = run('qemu-io', ['-f', fmt, ...cmds.flatMap((c) => ['-c', c]), file]);
  assert.equal(r.status, 0, r.out);
  assert.doesNotMatch(r.out, /Pattern verification failed|error|failed/i, r.out);
  return r.out;
}
function assertClean(file: string): void {
  const r = run('qemu-img', ['check', '-f', 'qcow2', file]);
  assert.equal(r.status, 0, `qemu-img check ${file}: ${r.out}`);
  assert.match(r.out, /No errors were found/);
}
/** The guest-visible bytes of an image as QEMU sees them. */
function qemuContents(file: string, fmt: string): Buffer {
  const out = `${file}.converted.raw`;
  qemuImg('convert', '-f', fmt, '-O', 'raw', file, out);
  const b = readFileSync(out);
  rmSync(out);
  return b;
}
async function readAll(img: BlockImage): Promise<Uint8Array> {
  const b = new Uint8Array(img.sizeBytes);
  await img.read(0, b);
  return b;
}
function pattern(len: number, seed: number): Uint8Array {
  const b = new Uint8Array(len);
  let x = seed * 2654435761 + 1;
  for (let i = 0; i < len; i++) { x = (x * 1103515245 + 12345) >>> 0; b[i] = x >>> 24; }
  return b;
}
/** A deterministic PRNG for offsets and sizes. */
function rng(seed: number): (n: number) => number {
  let x = seed >>> 0 || 1;
  return (n) => { x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0; return x % n; };
}
function equalBytes(actual: Uint8Array, expected: Uint8Array, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  const i = actual.findIndex((v, k) => v !== expected[k]);
  assert.equal(i, -1, `${what}: first difference at byte ${i}`);
}
async function rejectsImage(p: Promise<unknown>, re: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof ImageError, `not an ImageError: ${String(e)}`);
    assert.match(e.message, re);
    assert.equal(e.message.split('\n').length, 1);
    return true;
  });
}

// ---- raw -----------------------------------------------------------------------------------

test('raw: sparse stays sparse, reads and writes at offsets, discard punches holes and reads zeros', async () => {
  const f = join(dir, 'sparse.raw');
  writeFileSync(f, ''); truncateSync(f, 64 * MiB);
  const img = await openImage(f, { readonly: false });
  assert.equal(img.format, 'raw'); assert.equal(img.sizeBytes, 64 * MiB); assert.equal(img.canDiscard, true);
  const data = pattern(2 * MiB, 1);
  // Views of a SharedArrayBuffer, as the blkback I/O thread passes them.
  const shared = new Uint8Array(new SharedArrayBuffer(3 * MiB), 4096, 2 * MiB);
  shared.set(data);
  await img.write(10 * MiB, shared);
  await img.flush();
  assert.ok(statSync(f).blocks * 512 < 4 * MiB, 'the write allocated only what it wrote');
  const back = new Uint8Array(new SharedArrayBuffer(2 * MiB));
  await img.read(10 * MiB, back);
  equalBytes(back, data, 'read back');
  const blocksBefore = statSync(f).blocks;
  await img.discard(10 * MiB, MiB);
  assert.ok(statSync(f).blocks < blocksBefore - 1500, `discard freed blocks (${blocksBefore} -> ${statSync(f).blocks})`);
  await img.read(10 * MiB, back);
  equalBytes(back.subarray(0, MiB), new Uint8Array(MiB), 'discarded range');
  equalBytes(back.subarray(MiB), data.subarray(MiB), 'after the discarded range');
  await img.close();
  equalBytes(readFileSync(f).subarray(11 * MiB, 12 * MiB), data.subarray(MiB), 'file contents');
});

test('raw: size rounds down to whole sectors (as blkback does); read-only refuses writes; out-of-range is refused', async () => {
  const f = join(dir, 'odd.raw');
  writeFileSync(f, new Uint8Array(1000 + 2 * 512));
  const img = await openImage(f, { readonly: true, format: 'auto' });
  assert.equal(img.sizeBytes, 1536);
  assert.equal(img.canDiscard, false);
  await rejectsImage(img.write(0, new Uint8Array(512)), /read-only/);
  await rejectsImage(img.read(1024, new Uint8Array(1024)), /outside the disk/);
  await img.close();
});

test('raw host block device (a loop device): size from BLKGETSIZE64, reads and writes, no discard', async (t) => {
  const backingFile = join(dir, 'loop-backing.raw');
  writeFileSync(backingFile, ''); truncateSync(backingFile, 8 * MiB);
  const attach = run('losetup', ['-f', '--show', backingFile]);
  if (attach.status !== 0) { t.skip(`no loop devices here: ${attach.out.trim()}`); return; }
  const dev = attach.out.trim();
  try {
    const img = await openImage(dev, { readonly: false });
    assert.equal(img.isBlockDevice, true); assert.equal(img.sizeBytes, 8 * MiB); assert.equal(img.canDiscard, false);
    const data = pattern(64 * KiB, 11);
    await img.write(MiB, data);
    await img.flush();
    const back = new Uint8Array(64 * KiB);
    await img.read(MiB, back);
    equalBytes(back, data, 'device read');
    await img.close();
    equalBytes(new Uint8Array(readFileSync(backingFile).subarray(MiB, MiB + 64 * KiB)), data, 'loop file');
  } finally {
    run('losetup', ['-d', dev]);
  }
});

test('bad files: one-line ImageError naming the file', async () => {
  await rejectsImage(openImage(join(dir, 'missing.img'), { readonly: false }), /missing\.img does not exist/);
  mkdirSync(join(dir, 'adir'));
  await rejectsImage(openImage(join(dir, 'adir'), { readonly: true }), /adir is a directory/);
  await rejectsImage(openImage(join(dir, 'adir'), { readonly: false }), /adir is a directory/);
  writeFileSync(join(dir, 'empty.img'), '');
  await rejectsImage(openImage(join(dir, 'empty.img'), { readonly: false }), /empty\.img is empty/);
  writeFileSync(join(dir, 'tiny.img'), 'x'.repeat(100));
  await rejectsImage(openImage(join(dir, 'tiny.img'), { readonly: false }), /smaller than one 512-byte sector/);
  symlinkSync('loop-b', join(dir, 'loop-a')); symlinkSync('loop-a', join(dir, 'loop-b'));
  await rejectsImage(openImage(join(dir, 'loop-a'), { readonly: true }), /symbolic links/);
  if (process.getuid?.() !== 0) {
    writeFileSync(join(dir, 'noperm.img'), new Uint8Array(512)); chmodSync(join(dir, 'noperm.img'), 0o400);
    await rejectsImage(openImage(join(dir, 'noperm.img'), { readonly: false }), /permission denied/);
  }
});

// ---- qcow2 written by QEMU, read by pvbox --------------------------------------------------

for (const compat of ['1.1', '0.10']) {
  test(`qcow2 compat=${compat}: pvbox reads what qemu-io wrote, including zero clusters`, async () => {
    const f = join(dir, `qemu-written-${compat}.qcow2`);
    qemuImg('create', '-q', '-f', 'qcow2', '-o', `compat=${compat}`, f, '8M');
    qemuIo(f, 'qcow2', 'write -P 0xab 0 64k', 'write -P 0xcd 100k 30k', 'write -P 0x11 7M 1M', 'write -z 7M 64k');
    const img = await openImage(f, { readonly: true });
    assert.equal(img.format, 'qcow2'); assert.equal(img.sizeBytes, 8 * MiB);
    const all = await readAll(img);
    equalBytes(all, new Uint8Array(qemuContents(f, 'qcow2')), 'whole disk');
    assert.equal(all[0], 0xab); assert.equal(all[100 * KiB], 0xcd); assert.equal(all[7 * MiB], 0); assert.equal(all[7 * MiB + 64 * KiB], 0x11);
    await img.close();
  });
}

// ---- pvbox writes, QEMU reads --------------------------------------------------------------

/** Random sequential writes (crossing clusters, partial sectors of clusters) compared with a model, then qemu-img check and convert. */
async function randomWrites(file: string, size: number, seed: number, count: number, maxLen: number, model: Uint8Array): Promise<void> {
  const img = await openImage(file, { readonly: false });
  const r = rng(seed);
  for (let k = 0; k < count; k++) {
    const len = (1 + r(maxLen / 512)) * 512;
    const off = r((size - len) / 512 + 1) * 512;
    const data = pattern(len, seed * 1000 + k);
    await img.write(off, data);
    model.set(data, off);
  }
  equalBytes(await readAll(img), model, 'pvbox reads its own writes');
  await img.close();
  assertClean(file);
  equalBytes(new Uint8Array(qemuContents(file, 'qcow2')), model, 'QEMU reads pvbox writes');
}

for (const [name, opts, size] of [
  ['v3 64k clusters', 'compat=1.1', 16 * MiB],
  ['v2 (compat=0.10)', 'compat=0.10', 16 * MiB],
  ['512-byte clusters (refcount blocks and table grow)', 'cluster_size=512', 12 * MiB],
  ['refcount_bits=1', 'refcount_bits=1,cluster_size=4k', 8 * MiB],
  ['refcount_bits=64', 'refcount_bits=64,cluster_size=4k', 8 * MiB],
] as const) {
  test(`qcow2 ${name}: random writes read back by QEMU, qemu-img check clean`, async () => {
    const f = join(dir, `rand-${name.replace(/\W+/g, '_')}.qcow2`);
    qemuImg('create', '-q', '-f', 'qcow2', '-o', opts, f, String(size));
    const model = new Uint8Array(size);
    await randomWrites(f, size, 7, 60, 256 * KiB, model);
    // Reopen and write again over what exists (in-place path) and elsewhere.
    await randomWrites(f, size, 8, 30, 128 * KiB, model);
  });
}

test('qcow2: many concurrent writes into the same new clusters allocate each cluster once', async () => {
  const f = join(dir, 'concurrent.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', f, '4M');
  const img = await openImage(f, { readonly: false });
  const model = new Uint8Array(4 * MiB);
  const r = rng(3);
  const sectors = Array.from({ length: 1024 }, (_, i) => i + 1024); // 512 KiB in the middle: 8 clusters, 128 writers each
  for (let i = sectors.length - 1; i > 0; i--) { const j = r(i + 1); [sectors[i], sectors[j]] = [sectors[j]!, sectors[i]!]; }
  await Promise.all(sectors.map((s) => {
    const data = pattern(512, s);
    model.set(data, s * 512);
    return img.write(s * 512, data);
  }));
  // Concurrent reads while other writes run.
  const reads = Array.from({ length: 16 }, (_, i) => { const b = new Uint8Array(64 * KiB); return img.read(i * 64 * KiB, b).then(() => b); });
  await Promise.all(reads);
  equalBytes(await readAll(img), model, 'pvbox');
  await img.close();
  assertClean(f);
  const info = JSON.parse(qemuImg('map', '--output=json', f)) as { start: number; length: number; data: boolean; offset?: number }[];
  const allocated = info.filter((e) => e.data).reduce((n, e) => n + e.length, 0);
  assert.equal(allocated, 512 * KiB, 'exactly the written clusters are allocated');
  equalBytes(new Uint8Array(qemuContents(f, 'qcow2')), model, 'QEMU');
});

test('qcow2 backing chain: raw <- qcow2 <- qcow2 (relative names), copy-on-write of partial clusters, backing files untouched', async () => {
  const sub = join(dir, 'chain'); mkdirSync(sub);
  const base = join(sub, 'base.raw'), mid = join(sub, 'mid.qcow2'), top = join(sub, 'top.qcow2');
  const baseData = pattern(6 * MiB, 42);
  writeFileSync(base, baseData);
  qemuImg('create', '-q', '-f', 'qcow2', '-b', 'base.raw', '-F', 'raw', mid); // relative to mid's directory
  qemuIo(mid, 'qcow2', 'write -P 0x77 1M 64k', 'write -z 2M 64k');
  qemuImg('create', '-q', '-f', 'qcow2', '-b', 'mid.qcow2', '-F', 'qcow2', top, '8M'); // larger than its backing: the rest reads zeros
  const model = new Uint8Array(8 * MiB);
  model.set(baseData); model.fill(0x77, MiB, MiB + 64 * KiB); model.fill(0, 2 * MiB, 2 * MiB + 64 * KiB);
  const img = await openImage(top, { readonly: false });
  equalBytes(await readAll(img), model, 'chain read');
  const writes: [number, number][] = [[512, 1024], [MiB + 60 * KiB, 8 * KiB], [2 * MiB + 512, 512], [6 * MiB - 1024, 4096], [3 * MiB + 4096, 200 * KiB]];
  for (const [off, len] of writes) { const d = pattern(len, off); await img.write(off, d); model.set(d, off); }
  equalBytes(await readAll(img), model, 'after partial writes');
  assert.equal(img.canDiscard, true);
  await img.discard(MiB, 128 * KiB); // v3 with a backing file: zero clusters, the backing data must not reappear
  model.fill(0, MiB, MiB + 128 * KiB);
  equalBytes(await readAll(img), model, 'after discard');
  await img.close();
  assertClean(top);
  equalBytes(new Uint8Array(qemuContents(top, 'qcow2')), model, 'QEMU reads the chain');
  equalBytes(new Uint8Array(readFileSync(base)), baseData, 'base untouched');
});

test('qcow2 with compressed clusters: read, then overwrite partially (copy-on-write into a new cluster)', async () => {
  const raw = join(dir, 'tocompress.raw'), f = join(dir, 'compressed.qcow2');
  const data = new Uint8Array(4 * MiB);
  for (let i = 0; i < data.length; i += 4096) data.fill((i / 4096) % 251, i, i + 2048); // compressible
  data.set(pattern(256 * KiB, 5), MiB); // incompressible part, stored uncompressed by qemu-img
  writeFileSync(raw, data);
  qemuImg('convert', '-q', '-c', '-f', 'raw', '-O', 'qcow2', raw, f);
  assert.match(qemuImg('check', f), /compressed clusters/);
  const img = await openImage(f, { readonly: false });
  equalBytes(await readAll(img), data, 'compressed read');
  const model = data.slice();
  for (const [off, len] of [[4096, 512], [64 * KiB - 512, 1024], [2 * MiB + 100 * 512, 70 * KiB]] as const) {
    const d = pattern(len, off); await img.write(off, d); model.set(d, off);
  }
  await img.discard(3 * MiB, 256 * KiB); // compressed clusters freed
  model.fill(0, 3 * MiB, 3 * MiB + 256 * KiB);
  equalBytes(await readAll(img), model, 'pvbox after writes');
  await img.close();
  assertClean(f);
  equalBytes(new Uint8Array(qemuContents(f, 'qcow2')), model, 'QEMU after writes');
});

test('qcow2 discard frees clusters: file shrinks on disk, qemu-img check clean, freed clusters are reused', async () => {
  const f = join(dir, 'discard.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', f, '32M');
  const img = await openImage(f, { readonly: false });
  const chunk = pattern(MiB, 9);
  for (let off = 0; off < 16 * MiB; off += MiB) await img.write(off, chunk);
  await img.flush();
  const full = statSync(f).blocks * 512;
  await img.discard(0, 12 * MiB + 512); // the partial sector at the end is zeroed
  await img.flush();
  const after = statSync(f).blocks * 512;
  assert.ok(after < full - 10 * MiB, `allocated ${full} -> ${after}`);
  const b = new Uint8Array(12 * MiB + 1024);
  await img.read(0, b);
  equalBytes(b.subarray(0, 12 * MiB + 512), new Uint8Array(12 * MiB + 512), 'discarded range reads zeros');
  equalBytes(b.subarray(12 * MiB + 512), chunk.subarray(512, 1024), 'data after it');
  const sizeBefore = statSync(f).size;
  for (let off = 20 * MiB; off < 28 * MiB; off += MiB) await img.write(off, chunk);
  await img.close();
  assert.equal(statSync(f).size, sizeBefore, 'new data went into freed clusters');
  assertClean(f);
  qemuIo(f, 'qcow2', 'read -P 0 0 12M', 'read -P 0 16M 4M');
});

// ---- locking (QEMU's block/file-posix.c byte locks) ----------------------------------------

test('locking: pvbox excludes pvbox and qemu-img; QEMU excludes pvbox; backing files are shared read-only; close releases', async () => {
  for (const fmt of ['qcow2', 'raw'] as const) {
    const f = join(dir, `locked.${fmt}`);
    qemuImg('create', '-q', '-f', fmt, f, '1M');
    const img = await openImage(f, { readonly: false });
    await rejectsImage(openImage(f, { readonly: false }), /disk image .* is in use by another process \(it is locked\)/);
    await rejectsImage(openImage(f, { readonly: true }), /is in use by another process/);
    // qemu-img info reads a raw image without I/O permissions (BDRV_O_NO_IO), so it conflicts with nobody there, also not with QEMU itself; convert reads the data.
    const reader = fmt === 'qcow2' ? run('qemu-img', ['info', f]) : run('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', f, `${f}.copy`]);
    assert.notEqual(reader.status, 0);
    assert.match(reader.out, /Failed to get shared "write" lock/);
    await img.close();
    qemuImg('info', f);
    // Two read-only users share the image.
    const r1 = await openImage(f, { readonly: true }), r2 = await openImage(f, { readonly: true });
    qemuImg('info', f);
    assert.notEqual(run('qemu-io', ['-f', fmt, '-c', 'write 0 512', f]).status, 0, 'QEMU cannot write while pvbox reads');
    await r1.close(); await r2.close();
  }
  // QEMU holds the image: pvbox refuses it.
  const f = join(dir, 'held.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', f, '1M');
  const holder = spawn('qemu-io', ['-f', 'qcow2', f], { stdio: ['pipe', 'pipe', 'pipe'] });
  try {
    await new Promise<void>((res) => holder.stdout.once('data', () => res())); // the prompt: the image is open
    await rejectsImage(openImage(f, { readonly: false }), /held\.qcow2 is in use by another process \(it is locked\)/);
    await rejectsImage(openImage(f, { readonly: true }), /in use/);
  } finally {
    holder.stdin.end('quit\n');
    await new Promise((res) => holder.once('exit', res));
  }
  await (await openImage(f, { readonly: false })).close();
  // Backing files: readable by others, writable by nobody.
  const base = join(dir, 'lockbase.raw'), top = join(dir, 'locktop.qcow2');
  writeFileSync(base, new Uint8Array(MiB));
  qemuImg('create', '-q', '-f', 'qcow2', '-b', base, '-F', 'raw', top);
  const img = await openImage(top, { readonly: false });
  qemuImg('info', '-f', 'raw', base);
  const w = run('qemu-io', ['-f', 'raw', '-c', 'write 0 512', base]);
  assert.notEqual(w.status, 0); assert.match(w.out, /lock/);
  await rejectsImage(openImage(base, { readonly: false }), /lockbase\.raw is in use/);
  await img.close();
  await (await openImage(base, { readonly: false })).close();
});

// ---- untrusted qcow2 headers ---------------------------------------------------------------

function patched(name: string, patch: (b: Buffer) => Buffer | void): string {
  const src = join(dir, 'template.qcow2');
  const f = join(dir, `${name}.qcow2`);
  const b = readFileSync(src);
  writeFileSync(f, patch(b) ?? b);
  return f;
}

test('corrupt qcow2 headers: ImageError, no crash, no huge allocation', async () => {
  const t = join(dir, 'template.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', t, '64M');
  qemuIo(t, 'qcow2', 'write -P 0x5c 0 128k');
  const cases: [string, (b: Buffer) => Buffer | void, RegExp, boolean?][] = [
    ['truncated-to-50-bytes', (b) => b.subarray(0, 50), /smaller than one 512-byte sector/],
    ['truncated-to-1000-bytes', (b) => b.subarray(0, 1000), /L1 table lies past the end/],
    ['l1-past-eof', (b) => { b.writeBigUInt64BE(1n << 40n, 40); }, /L1 table lies past the end/],
    ['l1-huge', (b) => { b.writeUInt32BE(0x7fffffff, 36); }, /L1 table too large/],
    ['cluster-bits', (b) => { b.writeUInt32BE(40, 20); }, /cluster_bits 40/],
    ['reftable-unaligned', (b) => { b.writeBigUInt64BE(0x10200n, 48); }, /refcount table offset .* not cluster-aligned/],
    ['reftable-huge', (b) => { b.writeUInt32BE(0x100000, 56); }, /refcount table too large/],
    ['encrypted', (b) => { b.writeUInt32BE(1, 32); }, /encrypted/],
    ['version', (b) => { b.writeUInt32BE(4, 4); }, /version 4 is not supported/],
    ['unknown-incompat', (b) => { b.writeBigUInt64BE(1n << 40n, 72); }, /unknown incompatible features/],
    ['external-data', (b) => { b.writeBigUInt64BE(4n, 72); }, /external data file/],
    ['dirty', (b) => { b.writeBigUInt64BE(1n, 72); }, /not closed cleanly/, true],
    ['corrupt-bit', (b) => { b.writeBigUInt64BE(2n, 72); }, /marked corrupt/, true],
    ['refcount-order', (b) => { b.writeUInt32BE(7, 96); }, /refcount_order 7/],
    ['header-length', (b) => { b.writeUInt32BE(0x100000, 100); }, /header_length/],
    ['size-huge', (b) => { b.writeBigUInt64BE(1n << 62n, 24); }, /virtual size .* too large/],
    ['size-beyond-l1', (b) => { b.writeBigUInt64BE(1n << 45n, 24); }, /L1 table too small/],
    ['backing-name-long', (b) => { b.writeBigUInt64BE(0x200n, 8); b.writeUInt32BE(5000, 16); }, /backing file name too long/],
  ];
  for (const [name, patch, re, roOpens] of cases) {
    const f = patched(name, patch);
    await rejectsImage(openImage(f, { readonly: false }), re);
    if (roOpens) await (await openImage(f, { readonly: true })).close();
  }
  // Bad L1/L2 entries: opening works, the affected I/O fails with ImageError.
  const l1Offset = Number(readFileSync(t).readBigUInt64BE(40));
  const badL2 = patched('l2-unaligned', (b) => { b.writeBigUInt64BE((1n << 63n) | 0x12345600n, l1Offset); });
  const img = await openImage(badL2, { readonly: true });
  await rejectsImage(img.read(0, new Uint8Array(512)), /corrupt: L2 table offset/);
  await img.close();
  const farL2 = patched('l2-far', (b) => { b.writeBigUInt64BE((1n << 63n) | (1n << 50n), l1Offset); });
  const img2 = await openImage(farL2, { readonly: false });
  await rejectsImage(img2.write(0, new Uint8Array(512)), /past the end of the file/);
  await img2.close();
  assert.ok(statSync(farL2).size < MiB, 'no huge sparse file');
});

test('backing loop a -> b -> a and an unsupported backing format are refused', async () => {
  const a = join(dir, 'loop-a.qcow2'), b = join(dir, 'loop-b.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', a, '1M');
  qemuImg('create', '-q', '-f', 'qcow2', '-b', a, '-F', 'qcow2', b);
  qemuImg('rebase', '-u', '-f', 'qcow2', '-b', b, '-F', 'qcow2', a);
  await rejectsImage(openImage(a, { readonly: true }), /backing file loop/);
  await rejectsImage(openImage(a, { readonly: false }), /backing file loop|in use/);
  const v = join(dir, 'vmdk-backed.qcow2');
  qemuImg('create', '-q', '-f', 'vmdk', join(dir, 'x.vmdk'), '1M');
  qemuImg('create', '-q', '-f', 'qcow2', '-b', join(dir, 'x.vmdk'), '-F', 'vmdk', v);
  await rejectsImage(openImage(v, { readonly: true }), /backing file format 'vmdk' is not supported/);
  qemuImg('create', '-q', '-f', 'qcow2', '-u', '-b', 'gone.raw', '-F', 'raw', join(dir, 'nobase.qcow2'), '1M');
  await rejectsImage(openImage(join(dir, 'nobase.qcow2'), { readonly: true }), /gone\.raw \(backing file of .*nobase\.qcow2\) does not exist/);
});

test('fuzzed qcow2 metadata: every open, read and write either works or fails with ImageError', async () => {
  const t = join(dir, 'fuzz-template.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4k', t, '1M');
  qemuIo(t, 'qcow2', 'write -P 0x5c 0 64k', 'write -P 0x5d 512k 8k');
  const template = readFileSync(t);
  const r = rng(99);
  const f = join(dir, 'fuzz.qcow2');
  for (let k = 0; k < 150; k++) {
    const b = Buffer.from(template);
    const flips = 1 + r(8);
    for (let i = 0; i < flips; i++) {
      const pos = r(4) === 0 ? r(112) : r(Math.min(b.length, 7 * 4096)); // the header, or the first metadata clusters
      b[pos] = r(4) === 0 ? 0xff : b[pos]! ^ (1 << r(8));
    }
    writeFileSync(f, b);
    let img: BlockImage | undefined;
    try {
      img = await openImage(f, { readonly: r(2) === 0, format: 'qcow2' });
      const buf = new Uint8Array(8 * KiB);
      for (const off of [0, 60 * KiB, 512 * KiB]) {
        await img.read(off, buf).catch((e) => { if (!(e instanceof ImageError)) throw e; });
        if (!img.readonly) await img.write(off, buf).catch((e) => { if (!(e instanceof ImageError)) throw e; });
      }
      if (img.canDiscard) await img.discard(0, 64 * KiB).catch((e) => { if (!(e instanceof ImageError)) throw e; });
    } catch (e) {
      if (!(e instanceof ImageError)) throw new Error(`case ${k}: ${String(e)}`);
    } finally {
      await img?.close().catch((e) => { if (!(e instanceof ImageError)) throw e; });
    }
    assert.ok(statSync(f).size < 64 * MiB, `case ${k}: the file stays small`);
  }
});
