// LZ4 block decoder and the kernel's legacy LZ4 frame; mirrors tools/libs/guest/xg_dom_bzimageloader.c: xc_try_lz4_decode and xen/common/unlz4.c (Linux lib/decompress_unlz4.c).
import { ImageError } from '../errors.js';

/** ARCHIVE_MAGICNUMBER: the legacy frame's magic, 02 21 4c 18 on disk. */
export const ARCHIVE_MAGICNUMBER = 0x184c2102;
/** LZ4_DEFAULT_UNCOMPRESSED_CHUNK_SIZE: no legacy block decodes to more than 8 MiB. */
export const LZ4_DEFAULT_UNCOMPRESSED_CHUNK_SIZE = 8 << 20;

function blockError(blockOffset: number, detail: string): ImageError {
  return new ImageError(`LZ4 payload is corrupt: block at offset ${blockOffset}: ${detail}`);
}

/**
 * LZ4_decompress_safe: decode the block src[srcStart, srcEnd) into dst starting at dstStart,
 * writing no further than dstLimit. Matches may reach back only into this block's own output
 * (legacy blocks are independent). Returns the number of bytes written. Every read and write is
 * bounds-checked, so corrupt input ends in an ImageError, never an overrun or a hang.
 */
export function lz4DecompressBlock(src: Uint8Array, srcStart: number, srcEnd: number, dst: Uint8Array, dstStart: number, dstLimit: number): number {
  if (srcEnd > src.length || srcStart > srcEnd) throw blockError(srcStart, 'block extends past the input');
  if (dstLimit > dst.length) dstLimit = dst.length;
  let ip = srcStart;
  let op = dstStart;
  for (;;) {
    if (ip >= srcEnd) throw blockError(srcStart, 'block ends inside a sequence');
    const token = src[ip++]!;
    // literals
    let litLen = token >>> 4;
    if (litLen === 15) {
      let b: number;
      do {
        if (ip >= srcEnd) throw blockError(srcStart, 'literal length runs past the block');
        b = src[ip++]!;
        litLen += b;
      } while (b === 255);
    }
    if (litLen > srcEnd - ip) throw blockError(srcStart, `${litLen} literals run past the block`);
    if (litLen > dstLimit - op) throw blockError(srcStart, `literals overflow the ${dstLimit - dstStart}-byte output limit`);
    if (litLen < 16) {
      for (let k = 0; k < litLen; k++) dst[op + k] = src[ip + k]!;
    } else {
      dst.set(src.subarray(ip, ip + litLen), op);
    }
    ip += litLen;
    op += litLen;
    if (ip === srcEnd) return op - dstStart; // the last sequence has literals only
    // match
    if (srcEnd - ip < 2) throw blockError(srcStart, 'match offset runs past the block');
    const offset = src[ip]! | (src[ip + 1]! << 8);
    ip += 2;
    if (offset === 0 || offset > op - dstStart) throw blockError(srcStart, `match offset ${offset} reaches before the block's output`);
    let matchLen = (token & 15) + 4;
    if (matchLen === 19) {
      let b: number;
      do {
        if (ip >= srcEnd) throw blockError(srcStart, 'match length runs past the block');
        b = src[ip++]!;
        matchLen += b;
      } while (b === 255);
    }
    if (matchLen > dstLimit - op) throw blockError(srcStart, `match overflows the ${dstLimit - dstStart}-byte output limit`);
    let from = op - offset;
    if (matchLen <= 16) {
      const end = op + matchLen;
      while (op < end) dst[op++] = dst[from++]!;
    } else if (offset === 1) {
      dst.fill(dst[from]!, op, op + matchLen);
      op += matchLen;
    } else {
      // overlapping copies go in growing non-overlapping pieces (the data repeats every `offset`)
      let piece = offset;
      let left = matchLen;
      while (left > 0) {
        const c = piece < left ? piece : left;
        dst.copyWithin(op, from, from + c);
        op += c;
        left -= c;
        piece += piece;
      }
    }
  }
}

/**
 * Decode the legacy LZ4 frame the kernel's `lz4 -l` produces: the magic, then blocks each
 * prefixed by its u32 compressed size (a repeated magic is skipped, as unlz4 does). The bzImage
 * payload ends with the kernel's u32 uncompressed-size trailer: when exactly four bytes remain
 * after a block they are taken as that trailer and must match the decoded size (as
 * xc_try_lz4_decode insists). A zero block size also ends the data. `sizeHint` (the trailer value,
 * if the caller knows it) only presizes the output.
 */
export function lz4LegacyDecompress(input: Uint8Array, sizeHint: number, max: number): Uint8Array {
  const len = input.length;
  const le32 = (p: number): number => (input[p]! | (input[p + 1]! << 8) | (input[p + 2]! << 16) | (input[p + 3]! << 24)) >>> 0;
  if (len < 8) throw new ImageError(`LZ4 payload is corrupt: only ${len} bytes`);
  if (le32(0) !== ARCHIVE_MAGICNUMBER) throw new ImageError('LZ4 payload does not start with the legacy frame magic 02 21 4c 18');
  let out = new Uint8Array(Math.min(max, (sizeHint > 0 ? sizeHint : len * 3) + LZ4_DEFAULT_UNCOMPRESSED_CHUNK_SIZE));
  let op = 0;
  let pos = 4;
  let blocks = 0;
  while (pos < len) {
    if (len - pos < 4) throw new ImageError(`LZ4 payload is corrupt: ${len - pos} stray bytes at offset ${pos}`);
    const chunkSize = le32(pos);
    if (chunkSize === ARCHIVE_MAGICNUMBER) {
      pos += 4;
      continue;
    }
    if (blocks > 0 && len - pos === 4) {
      // the bzImage trailer: the uncompressed size, which must agree
      if (chunkSize !== op % 2 ** 32)
        throw new ImageError(`LZ4 payload is corrupt: decoded ${op} bytes but the size trailer says ${chunkSize}`);
      break;
    }
    pos += 4;
    if (chunkSize === 0) break; // end mark
    if (chunkSize > len - pos) throw blockError(pos - 4, `compressed size ${chunkSize} runs past the end of the payload`);
    if (out.length - op < LZ4_DEFAULT_UNCOMPRESSED_CHUNK_SIZE && out.length < max) {
      const grown = new Uint8Array(Math.min(max, Math.max(out.length * 2, op + LZ4_DEFAULT_UNCOMPRESSED_CHUNK_SIZE)));
      grown.set(out.subarray(0, op));
      out = grown;
    }
    op += lz4DecompressBlock(input, pos, pos + chunkSize, out, op, Math.min(out.length, op + LZ4_DEFAULT_UNCOMPRESSED_CHUNK_SIZE));
    pos += chunkSize;
    blocks++;
  }
  if (blocks === 0) throw new ImageError('LZ4 payload is corrupt: no data blocks');
  return out.subarray(0, op);
}
