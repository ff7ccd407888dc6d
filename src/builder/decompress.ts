// Kernel payload decompression chosen by magic; mirrors tools/libs/guest/xg_dom_bzimageloader.c (the format switch of xc_dom_probe_bzimage_kernel and xc_try_*_decode) and xg_dom_core.c: xc_dom_try_gunzip.
import { promisify } from 'node:util';
import { gunzip } from 'node:zlib';
import { decompress as zstdDecompress } from 'fzstd';
import { ImageError } from '../errors.js';
import { lz4LegacyDecompress } from './lz4.js';
import { DECOMPRESS_MAX, lzmaDecompress, xzDecompress } from './xz.js';

const gunzipAsync = promisify(gunzip);

export type Compression = 'gzip' | 'bzip2' | 'xz' | 'zstd' | 'lzma' | 'lzo' | 'lz4' | 'elf';

/** The magics xc_dom_probe_bzimage_kernel checks, in its order, plus an uncompressed ELF. */
const MAGICS: ReadonlyArray<[Compression, readonly number[]]> = [
  ['gzip', [0x1f, 0x8b]],
  ['bzip2', [0x42, 0x5a, 0x68]], // "BZh"
  ['xz', [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]],
  ['zstd', [0x28, 0xb5, 0x2f, 0xfd]],
  ['lzma', [0x5d, 0x00]],
  ['lzo', [0x89, 0x4c, 0x5a, 0x4f]], // "\x89LZO"
  ['lz4', [0x02, 0x21]],
  ['elf', [0x7f, 0x45, 0x4c, 0x46]],
];

/** Which compression a payload uses, by its first bytes (check_magic), or undefined. */
export function detectCompression(data: Uint8Array): Compression | undefined {
  for (const [name, magic] of MAGICS) {
    if (data.length >= magic.length && magic.every((b, i) => data[i] === b)) return name;
  }
  return undefined;
}

/**
 * The kernel appends the uncompressed size as a u32 (scripts/Makefile.lib: size_append) to every
 * compressed payload. Returns it when the last four bytes look like one, else 0.
 */
export function sizeTrailer(payload: Uint8Array): number {
  if (payload.length < 8) return 0;
  const p = payload.length - 4;
  const v = (payload[p]! | (payload[p + 1]! << 8) | (payload[p + 2]! << 16) | (payload[p + 3]! << 24)) >>> 0;
  return v > 0 && v <= DECOMPRESS_MAX ? v : 0;
}

function isElf(data: Uint8Array): boolean {
  return data.length >= 4 && data[0] === 0x7f && data[1] === 0x45 && data[2] === 0x4c && data[3] === 0x46;
}

async function gunzipPayload(payload: Uint8Array, trailer: number): Promise<Uint8Array> {
  // node's gunzip takes bytes after the member for another member, so drop the size trailer
  const attempts = trailer > 0 ? [payload.subarray(0, payload.length - 4), payload] : [payload];
  let first: unknown;
  for (const input of attempts) {
    try {
      const out = await gunzipAsync(input, { maxOutputLength: DECOMPRESS_MAX });
      return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
    } catch (e) {
      first ??= e;
    }
  }
  const msg = first instanceof Error ? first.message : String(first);
  if (/maxOutputLength|buffer size|Cannot create a Buffer larger/i.test(msg))
    throw new ImageError(`gzip payload decompresses to more than ${DECOMPRESS_MAX >>> 20} MiB`);
  throw new ImageError(`gzip payload is corrupt: ${msg}`);
}

function unzstdPayload(payload: Uint8Array, trailer: number): Uint8Array {
  try {
    // fzstd fills a given buffer without reporting how much it wrote, so it gets exactly the
    // size the kernel recorded (Xen's xc_try_zstd_decode likewise decodes into that size);
    // without a trailer it sizes the output itself (correct, but slow for big windows).
    if (trailer > 0) return zstdDecompress(payload.subarray(0, payload.length - 4), new Uint8Array(trailer));
    return zstdDecompress(payload);
  } catch (e) {
    throw new ImageError(`zstd payload is corrupt: ${e instanceof Error ? e.message : String(e)}`);
  }
}

export interface DecompressOptions {
  /**
   * Whether the payload ends with the kernel's u32 size trailer, as a bzImage payload always does
   * (default true). Pass false for a whole compressed file such as vmlinux.zst.
   */
  sizeTrailer?: boolean;
}

/**
 * Decompress a kernel payload (a bzImage's payload, size trailer included, or a whole compressed
 * vmlinux) and check that the result is an ELF image. gzip, XZ (x86 BCJ + LZMA2), LZMA, legacy
 * LZ4 and zstd are decoded; bzip2 and LZO give "unsupported compression". An uncompressed ELF
 * is returned as is.
 */
export async function decompressPayload(payload: Uint8Array, opts: DecompressOptions = {}): Promise<Uint8Array> {
  const kind = detectCompression(payload);
  // The trailer presizes the output; one claiming more than 32x the payload is not trusted for
  // that (kernels compress 3-8x), so a bad header cannot make us allocate a gigabyte up front.
  const claimed = opts.sizeTrailer === false ? 0 : sizeTrailer(payload);
  const trailer = claimed <= payload.length * 32 ? claimed : 0;
  let out: Uint8Array;
  switch (kind) {
    case 'elf':
      return payload;
    case 'gzip':
      out = await gunzipPayload(payload, trailer);
      break;
    case 'xz':
      out = xzDecompress(payload, trailer).data;
      break;
    case 'lzma':
      out = lzmaDecompress(payload, trailer);
      break;
    case 'lz4':
      out = lz4LegacyDecompress(payload, trailer, DECOMPRESS_MAX);
      break;
    case 'zstd':
      out = unzstdPayload(payload, trailer);
      break;
    case 'bzip2':
    case 'lzo':
      throw new ImageError(`unsupported compression ${kind} in kernel payload (rebuild the kernel with CONFIG_KERNEL_XZ, _GZIP, _LZ4 or _ZSTD)`);
    default: {
      const head = Array.from(payload.subarray(0, 6), (b) => b.toString(16).padStart(2, '0')).join(' ');
      throw new ImageError(`unknown compression format in kernel payload (first bytes ${head})`);
    }
  }
  if (!isElf(out)) throw new ImageError(`decompressed ${kind} kernel payload is not an ELF image`);
  return out;
}
