// Kernel file loading: Linux bzImage (boot protocol ≥ 2.08 payload), raw or compressed ELF vmlinux; mirrors tools/libs/guest/xg_dom_bzimageloader.c: xc_dom_probe_bzimage_kernel and xg_dom_elfloader.c.
import { readFile } from 'node:fs/promises';
import { ImageError } from '../errors.js';
import { decompressPayload, detectCompression } from './decompress.js';
import { parseXenKernel, type XenKernel } from './elf.js';

// struct setup_header offsets inside the file (Documentation/arch/x86/boot.rst)
const SETUP_SECTS = 0x1f1;
const HEADER = 0x202; // "HdrS"
const VERSION = 0x206;
const PAYLOAD_OFFSET = 0x248;
const PAYLOAD_LENGTH = 0x24c;
const SETUP_HEADER_END = 0x250; // the fields used here end with payload_length
const HDR_MAGIC = [0x48, 0x64, 0x72, 0x53]; // "HdrS"
const BOOT_PROTOCOL_2_08 = 0x208;

/** Whether the file carries a bzImage setup header ("HdrS" at 0x202). */
export function isBzImage(file: Uint8Array): boolean {
  return file.length >= HEADER + 4 && HDR_MAGIC.every((b, i) => file[HEADER + i] === b);
}

export interface BzImageHeader {
  /** setup_sects (0 read as 4, per the boot protocol). */
  setupSects: number;
  /** Boot protocol version, e.g. 0x20f. */
  version: number;
  payloadOffset: number;
  payloadLength: number;
  /** Where the payload starts in the file: (setup_sects + 1) * 512 + payload_offset. */
  payloadStart: number;
}

/** Read and bounds-check the setup header fields that locate the compressed payload. */
export function parseBzImageHeader(file: Uint8Array): BzImageHeader {
  if (!isBzImage(file)) throw new ImageError('kernel is not a bzImage (no "HdrS" at 0x202)');
  if (file.length < SETUP_HEADER_END) throw new ImageError(`bzImage is truncated: ${file.length} bytes, shorter than its setup header`);
  const dv = new DataView(file.buffer, file.byteOffset, file.byteLength);
  const version = dv.getUint16(VERSION, true);
  if (version < BOOT_PROTOCOL_2_08)
    throw new ImageError(`bzImage boot protocol version ${version >> 8}.${(version & 0xff).toString().padStart(2, '0')} is older than 2.08 (it has no payload_offset)`);
  const setupSects = file[SETUP_SECTS] || 4;
  const payloadOffset = dv.getUint32(PAYLOAD_OFFSET, true);
  const payloadLength = dv.getUint32(PAYLOAD_LENGTH, true);
  const payloadStart = (setupSects + 1) * 512 + payloadOffset;
  if (payloadStart >= file.length)
    throw new ImageError(`bzImage payload_offset 0x${payloadOffset.toString(16)} (with setup_sects ${setupSects}) points past the end of the ${file.length}-byte file`);
  if (payloadLength === 0) throw new ImageError('bzImage payload_length is 0');
  if (payloadStart + payloadLength > file.length)
    throw new ImageError(`bzImage payload_length 0x${payloadLength.toString(16)} at offset 0x${payloadStart.toString(16)} runs past the end of the ${file.length}-byte file`);
  return { setupSects, version, payloadOffset, payloadLength, payloadStart };
}

/** The compressed payload of a bzImage (the kernel's size trailer included). */
export function bzImagePayload(file: Uint8Array): Uint8Array {
  const h = parseBzImageHeader(file);
  return file.subarray(h.payloadStart, h.payloadStart + h.payloadLength);
}

/**
 * Turn kernel file contents into a parsed PV kernel: a bzImage's payload is decompressed, a
 * compressed vmlinux (e.g. vmlinux.gz) is decompressed whole, and an ELF is used as is.
 */
export async function loadKernelImage(file: Uint8Array): Promise<XenKernel> {
  let elf: Uint8Array;
  if (isBzImage(file)) {
    elf = await decompressPayload(bzImagePayload(file));
  } else if (detectCompression(file) !== undefined) {
    elf = await decompressPayload(file, { sizeTrailer: false });
  } else {
    throw new ImageError('kernel is neither a bzImage nor an ELF vmlinux (nor a compressed one)');
  }
  return parseXenKernel(elf);
}

/** Read a kernel file (bzImage, vmlinux, vmlinux.gz, …) and parse it; errors name the file. */
export async function loadKernelFile(path: string): Promise<XenKernel> {
  let file: Buffer;
  try {
    file = await readFile(path);
  } catch (e) {
    throw new ImageError(`cannot read kernel ${path}: ${e instanceof Error ? e.message : String(e)}`);
  }
  try {
    return await loadKernelImage(new Uint8Array(file.buffer, file.byteOffset, file.byteLength));
  } catch (e) {
    if (e instanceof ImageError) throw new ImageError(`${path}: ${e.message}`);
    throw e;
  }
}
