// Decompressed kernels kept on disk, keyed by the bzImage's SHA-256, so a boot does not pay the XZ decode (1–2 s for Debian's kernel) twice.
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ImageError } from '../errors.js';
import { isBzImage, loadKernelImage } from './bzimage.js';
import { parseXenKernel, type XenKernel } from './elf.js';

/** loadKernelFile with a cache of decompressed payloads under `cacheDir` (errors as loadKernelFile's). */
export async function loadKernelCached(path: string, cacheDir: string): Promise<XenKernel> {
  let file: Buffer;
  try { file = await readFile(path); } catch (e) {
    throw new ImageError(`cannot read kernel ${path}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`);
  }
  const bytes = new Uint8Array(file.buffer, file.byteOffset, file.byteLength);
  const withPath = async <T>(f: () => T | Promise<T>): Promise<T> => {
    try { return await f(); } catch (e) { if (e instanceof ImageError) throw new ImageError(`${path}: ${e.message}`); throw e; }
  };
  if (!isBzImage(bytes)) return withPath(() => loadKernelImage(bytes));
  const key = createHash('sha256').update(bytes).digest('hex');
  const dir = join(cacheDir, 'kernels');
  const cached = join(dir, `${key}.elf`);
  try {
    const elf = readFileSync(cached);
    return await withPath(() => parseXenKernel(new Uint8Array(elf.buffer, elf.byteOffset, elf.byteLength)));
  } catch (e) {
    if (e instanceof ImageError) throw e;
    // not cached (or unreadable): decode and store
  }
  const k = await withPath(() => loadKernelImage(bytes));
  try {
    mkdirSync(dir, { recursive: true });
    const tmp = `${cached}.${process.pid}.tmp`;
    writeFileSync(tmp, k.elf);
    renameSync(tmp, cached);
  } catch { /* the cache is an optimisation only */ }
  return k;
}
