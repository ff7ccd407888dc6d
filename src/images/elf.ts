// Reads what the dynamic loader reads from an ELF executable or shared library: PT_INTERP and the DT_NEEDED/DT_SONAME/DT_RUNPATH entries of PT_DYNAMIC.

const PT_LOAD = 1;
const PT_DYNAMIC = 2;
const PT_INTERP = 3;

const DT_NULL = 0n;
const DT_NEEDED = 1n;
const DT_STRTAB = 5n;
const DT_STRSZ = 10n;
const DT_SONAME = 14n;
const DT_RPATH = 15n;
const DT_RUNPATH = 29n;

export const EM_X86_64 = 62;

export interface ElfDynamic {
  /** e_type: 2 ET_EXEC, 3 ET_DYN. */
  type: number;
  /** e_machine, e.g. EM_X86_64. */
  machine: number;
  /** The program interpreter (PT_INTERP), e.g. /lib64/ld-linux-x86-64.so.2; absent in libraries and static binaries. */
  interp?: string;
  /** DT_NEEDED sonames, in order. */
  needed: string[];
  soname?: string;
  /** DT_RUNPATH (or the older DT_RPATH) search directories. */
  runpath: string[];
}

function cstring(buf: Buffer, off: number, end: number): string {
  if (off < 0 || off >= end) throw new Error(`ELF: string offset ${off} outside its table`);
  const nul = buf.indexOf(0, off);
  if (nul < 0 || nul >= end) throw new Error(`ELF: unterminated string at ${off}`);
  return buf.toString('utf8', off, nul);
}

/**
 * Parses the dynamic-linking view of a 64-bit little-endian ELF file from its
 * program headers (section headers are not needed and may be stripped).
 * Static executables come back with no interpreter and no DT_NEEDED.
 */
export function readElfDynamic(buf: Buffer): ElfDynamic {
  if (buf.length < 64 || buf.readUInt32BE(0) !== 0x7f454c46) throw new Error('not an ELF file');
  if (buf[4] !== 2 || buf[5] !== 1) throw new Error('not a 64-bit little-endian ELF file');
  const type = buf.readUInt16LE(0x10);
  const machine = buf.readUInt16LE(0x12);
  const phoff = Number(buf.readBigUInt64LE(0x20));
  const phentsize = buf.readUInt16LE(0x36);
  const phnum = buf.readUInt16LE(0x38);
  if (phnum > 0 && (phentsize < 56 || phoff + phentsize * phnum > buf.length)) throw new Error('ELF: program headers outside the file');

  const loads: { vaddr: bigint; offset: bigint; filesz: bigint }[] = [];
  let dyn: { offset: number; size: number } | undefined;
  let interp: string | undefined;
  for (let i = 0; i < phnum; i++) {
    const p = phoff + i * phentsize;
    const ptype = buf.readUInt32LE(p);
    const offset = buf.readBigUInt64LE(p + 8);
    const vaddr = buf.readBigUInt64LE(p + 16);
    const filesz = buf.readBigUInt64LE(p + 32);
    if (offset + filesz > BigInt(buf.length)) throw new Error(`ELF: segment ${i} extends past the end of the file`);
    if (ptype === PT_LOAD) loads.push({ vaddr, offset, filesz });
    else if (ptype === PT_DYNAMIC) dyn = { offset: Number(offset), size: Number(filesz) };
    else if (ptype === PT_INTERP) interp = cstring(buf, Number(offset), Number(offset + filesz));
  }

  const out: ElfDynamic = { type, machine, needed: [], runpath: [] };
  if (interp !== undefined) out.interp = interp;
  if (!dyn) return out;

  // Dynamic entries: (d_tag, d_val) pairs of 8 bytes each, up to DT_NULL.
  const entries: [bigint, bigint][] = [];
  for (let o = dyn.offset; o + 16 <= dyn.offset + dyn.size; o += 16) {
    const tag = buf.readBigInt64LE(o);
    if (tag === DT_NULL) break;
    entries.push([tag, buf.readBigUInt64LE(o + 8)]);
  }
  const strtabAddr = entries.find(([t]) => t === DT_STRTAB)?.[1];
  const strsz = entries.find(([t]) => t === DT_STRSZ)?.[1];
  if (strtabAddr === undefined || strsz === undefined) {
    if (entries.some(([t]) => t === DT_NEEDED || t === DT_SONAME)) throw new Error('ELF: DT_NEEDED without DT_STRTAB/DT_STRSZ');
    return out;
  }
  // DT_STRTAB is a virtual address; the PT_LOAD segment holding it gives the file offset.
  const seg = loads.find((l) => strtabAddr >= l.vaddr && strtabAddr + strsz <= l.vaddr + l.filesz);
  if (!seg) throw new Error('ELF: DT_STRTAB is not inside a loaded segment');
  const start = Number(seg.offset + (strtabAddr - seg.vaddr));
  const end = start + Number(strsz);
  for (const [tag, val] of entries) {
    if (tag === DT_NEEDED) out.needed.push(cstring(buf, start + Number(val), end));
    else if (tag === DT_SONAME) out.soname = cstring(buf, start + Number(val), end);
    else if (tag === DT_RUNPATH || tag === DT_RPATH) out.runpath.push(...cstring(buf, start + Number(val), end).split(':').filter(Boolean));
  }
  return out;
}
