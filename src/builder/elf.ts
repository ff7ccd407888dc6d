// Parse and load a 64-bit Xen PV kernel ELF; mirrors xen/common/libelf/libelf-loader.c (elf_init, elf_parse_binary, elf_load_binary), libelf-dominfo.c (elf_xen_parse, elf_xen_note_check, elf_xen_addr_calc_check) and tools/libs/guest/xg_dom_elfloader.c.
import { ImageError } from '../errors.js';
import { XENFEAT_dom0 } from '../abi/features.js';
import { newXenElfNoteParms, parseXenElfNotes, type XenElfNotes } from './elfnotes.js';

export const ELFCLASS64 = 2;
export const ELFDATA2LSB = 1;
export const EM_X86_64 = 62;
export const PT_LOAD = 1;
export const PT_NOTE = 4;
export const SHT_NOTE = 7;
export const PF_X = 1;
export const PF_W = 2;
export const PF_R = 4;

const EHDR_SIZE = 64;
const PHDR_SIZE = 56;
const SHDR_SIZE = 64;
const U64_MASK = (1n << 64n) - 1n;

/** A loadable program header (elf_phdr_is_loadable: PT_LOAD with any of R/W/X). */
export interface ElfSegment {
  paddr: bigint;
  vaddr: bigint;
  fileOffset: number;
  filesz: number;
  memsz: number;
  flags: number;
}

/** A parsed PV kernel: the ELF bytes, its loadable segments and what libelf derives from them. */
export interface XenKernel {
  elf: Uint8Array;
  /** parms->virt_entry: where the vCPU starts (XEN_ELFNOTE_ENTRY, else e_entry). */
  entry: bigint;
  segments: ElfSegment[];
  notes: XenElfNotes;
  /** elf->pstart / elf->pend: lowest p_paddr and highest p_paddr + p_memsz over the loadable segments. */
  pstart: bigint;
  pend: bigint;
  /** parms->virt_kstart / virt_kend: pstart / pend + (VIRT_BASE - PADDR_OFFSET). */
  virtKstart: bigint;
  virtKend: bigint;
}

function hex(v: bigint | number): string {
  return `0x${v.toString(16)}`;
}

/**
 * elf_init + elf_parse_binary + elf_xen_parse (+ the domU checks of xg_dom_parse_elf_kernel):
 * validate a 64-bit x86 ELF, read its Xen notes and compute the kernel's physical and virtual
 * extent. Throws ImageError naming the first thing wrong.
 */
export function parseXenKernel(elf: Uint8Array): XenKernel {
  const size = elf.length;
  if (size < EHDR_SIZE) throw new ImageError(`kernel is not an ELF image: only ${size} bytes`);
  if (elf[0] !== 0x7f || elf[1] !== 0x45 || elf[2] !== 0x4c || elf[3] !== 0x46) throw new ImageError('kernel is not an ELF image (no \\x7fELF magic)');
  if (elf[4] !== ELFCLASS64) throw new ImageError(`kernel ELF is not 64-bit (EI_CLASS ${elf[4]}); only x86-64 PV kernels are supported`);
  if (elf[5] !== ELFDATA2LSB) throw new ImageError(`kernel ELF is not little-endian (EI_DATA ${elf[5]})`);
  const dv = new DataView(elf.buffer, elf.byteOffset, elf.byteLength);
  const eMachine = dv.getUint16(18, true);
  if (eMachine !== EM_X86_64) throw new ImageError(`kernel ELF is not x86-64 (e_machine ${eMachine})`);
  const eEntry = dv.getBigUint64(24, true);
  const ePhoff = dv.getBigUint64(32, true);
  const eShoff = dv.getBigUint64(40, true);
  const ePhentsize = dv.getUint16(54, true);
  const ePhnum = dv.getUint16(56, true);
  const eShentsize = dv.getUint16(58, true);
  const eShnum = dv.getUint16(60, true);

  // elf_init: header tables must lie inside the file
  if (ePhnum > 0 && ePhentsize !== PHDR_SIZE) throw new ImageError(`kernel ELF e_phentsize is ${ePhentsize}, expected ${PHDR_SIZE}`);
  if (ePhoff + BigInt(ePhnum * PHDR_SIZE) > BigInt(size))
    throw new ImageError(`kernel ELF program headers (e_phoff ${hex(ePhoff)}, e_phnum ${ePhnum}) run past the end of the ${size}-byte file`);
  if (eShnum > 0 && eShentsize !== SHDR_SIZE) throw new ImageError(`kernel ELF e_shentsize is ${eShentsize}, expected ${SHDR_SIZE}`);
  if (eShnum > 0 && eShoff + BigInt(eShnum * SHDR_SIZE) > BigInt(size))
    throw new ImageError(`kernel ELF section headers (e_shoff ${hex(eShoff)}, e_shnum ${eShnum}) run past the end of the ${size}-byte file`);
  const phoff = Number(ePhoff);
  const shoff = Number(eShoff);

  // elf_parse_binary
  const segments: ElfSegment[] = [];
  let pstart = U64_MASK;
  let pend = 0n;
  const noteRegions: Array<[number, number, string]> = [];
  for (let i = 0; i < ePhnum; i++) {
    const ph = phoff + i * PHDR_SIZE;
    const pType = dv.getUint32(ph, true);
    const pFlags = dv.getUint32(ph + 4, true);
    const pOffset = dv.getBigUint64(ph + 8, true);
    const pVaddr = dv.getBigUint64(ph + 16, true);
    const pPaddr = dv.getBigUint64(ph + 24, true);
    const pFilesz = dv.getBigUint64(ph + 32, true);
    const pMemsz = dv.getBigUint64(ph + 40, true);
    if (pType === PT_NOTE) {
      // "Some versions of binutils do not correctly set p_offset for note segments."
      if (pOffset === 0n) continue;
      if (pOffset + pFilesz > BigInt(size)) throw new ImageError(`kernel ELF PT_NOTE segment ${i} (offset ${hex(pOffset)}, size ${hex(pFilesz)}) runs past the end of the file`);
      noteRegions.push([Number(pOffset), Number(pOffset + pFilesz), `PT_NOTE segment ${i}`]);
      continue;
    }
    if (pType !== PT_LOAD || (pFlags & (PF_R | PF_W | PF_X)) === 0) continue;
    if (pOffset + pFilesz > BigInt(size))
      throw new ImageError(`kernel ELF PT_LOAD segment ${i} (p_offset ${hex(pOffset)}, p_filesz ${hex(pFilesz)}) runs past the end of the ${size}-byte file`);
    if (pFilesz > pMemsz) throw new ImageError(`kernel ELF PT_LOAD segment ${i} has p_filesz ${hex(pFilesz)} > p_memsz ${hex(pMemsz)}`);
    if (pPaddr + pMemsz > U64_MASK) throw new ImageError(`kernel ELF PT_LOAD segment ${i} (p_paddr ${hex(pPaddr)}, p_memsz ${hex(pMemsz)}) wraps the address space`);
    if (pMemsz > BigInt(Number.MAX_SAFE_INTEGER)) throw new ImageError(`kernel ELF PT_LOAD segment ${i} p_memsz ${hex(pMemsz)} is absurd`);
    segments.push({ paddr: pPaddr, vaddr: pVaddr, fileOffset: Number(pOffset), filesz: Number(pFilesz), memsz: Number(pMemsz), flags: pFlags });
    if (pPaddr < pstart) pstart = pPaddr;
    if (pPaddr + pMemsz > pend) pend = pPaddr + pMemsz;
  }
  if (segments.length === 0) throw new ImageError('kernel ELF has no loadable (PT_LOAD) segments');
  // elf_load_binary: "program segments total to more than the input image size"
  const totalMemsz = segments.reduce((sum, s) => sum + BigInt(s.memsz), 0n);
  if (totalMemsz > 2n * (pend - pstart)) throw new ImageError('kernel ELF PT_LOAD segments overlap too much (total p_memsz exceeds twice the image extent)');

  // elf_xen_parse: notes from PT_NOTE segments, else from SHT_NOTE sections
  const parms = newXenElfNoteParms();
  let xenElfnotes = 0;
  for (const [start, end, where] of noteRegions) xenElfnotes += parseXenElfNotes(parms, elf, start, end, where);
  if (xenElfnotes === 0) {
    for (let i = 1; i < eShnum; i++) {
      const sh = shoff + i * SHDR_SIZE;
      if (dv.getUint32(sh + 4, true) !== SHT_NOTE) continue;
      const shOffset = dv.getBigUint64(sh + 24, true);
      const shSize = dv.getBigUint64(sh + 32, true);
      if (shOffset + shSize > BigInt(size)) throw new ImageError(`kernel ELF SHT_NOTE section ${i} (offset ${hex(shOffset)}, size ${hex(shSize)}) runs past the end of the file`);
      xenElfnotes += parseXenElfNotes(parms, elf, Number(shOffset), Number(shOffset + shSize), `SHT_NOTE section ${i}`);
    }
  }
  if (xenElfnotes === 0) throw new ImageError('not a Xen PV kernel: no Xen ELF notes');

  // elf_xen_note_check
  const loaderOk = parms.loader !== undefined && parms.loader.startsWith('generic');
  const guestOsOk = parms.guestOs !== undefined && parms.guestOs.startsWith('linux');
  if (!loaderOk && !guestOsOk)
    throw new ImageError(`kernel is built neither for the generic loader nor as Linux (XEN_ELFNOTE_LOADER ${JSON.stringify(parms.loader ?? '')}, XEN_ELFNOTE_GUEST_OS ${JSON.stringify(parms.guestOs ?? '')})`);
  if (parms.xenVersion === undefined || !parms.xenVersion.startsWith('xen-3.0'))
    throw new ImageError(`kernel is built for Xen ${JSON.stringify(parms.xenVersion ?? '')}, not "xen-3.0" (XEN_ELFNOTE_XEN_VERSION)`);

  // elf_xen_addr_calc_check (PV)
  if (parms.elfPaddrOffset !== undefined && parms.virtBase === undefined)
    throw new ImageError('kernel sets XEN_ELFNOTE_PADDR_OFFSET but not XEN_ELFNOTE_VIRT_BASE');
  const virtBase = parms.virtBase ?? 0n;
  const paddrOffset = parms.elfPaddrOffset ?? 0n; // notes are in use, so the default is 0
  const virtOffset = (virtBase - paddrOffset) & U64_MASK;
  const virtKstart = (pstart + virtOffset) & U64_MASK;
  const virtKend = (pend + virtOffset) & U64_MASK;
  const entry = parms.virtEntry ?? eEntry;
  if (virtKstart > virtKend) throw new ImageError(`kernel virtual extent wraps: ${hex(virtKstart)}..${hex(virtKend)}`);
  if (entry < virtKstart || entry >= virtKend)
    throw new ImageError(`kernel entry point ${hex(entry)} lies outside the image ${hex(virtKstart)}..${hex(virtKend)}`);
  if (virtBase > virtKstart) throw new ImageError(`kernel XEN_ELFNOTE_VIRT_BASE ${hex(virtBase)} lies above the image start ${hex(virtKstart)}`);
  if (parms.p2mBase !== undefined && parms.p2mBase >= virtKstart && parms.p2mBase < virtKend)
    throw new ImageError(`kernel XEN_ELFNOTE_INIT_P2M ${hex(parms.p2mBase)} lies inside the image ${hex(virtKstart)}..${hex(virtKend)}`);
  if (parms.virtHypercall !== undefined && (parms.virtHypercall < virtKstart || parms.virtHypercall >= virtKend))
    throw new ImageError(`kernel XEN_ELFNOTE_HYPERCALL_PAGE ${hex(parms.virtHypercall)} lies outside the image ${hex(virtKstart)}..${hex(virtKend)}`);
  // xg_dom_parse_elf_kernel
  if (parms.fRequired & (1 << XENFEAT_dom0)) throw new ImageError('kernel requires XENFEAT_dom0 and cannot run as an unprivileged domain');

  const notes: XenElfNotes = {
    entry,
    virtBase,
    paddrOffset,
    features: parms.features,
    fSupported: parms.fSupported,
    fRequired: parms.fRequired,
    modStartPfn: parms.modStartPfn,
  };
  if (parms.virtHypercall !== undefined) notes.hypercallPage = parms.virtHypercall;
  if (parms.xenVersion !== undefined) notes.xenVersion = parms.xenVersion;
  if (parms.guestOs !== undefined) notes.guestOs = parms.guestOs;
  if (parms.guestVersion !== undefined) notes.guestVersion = parms.guestVersion;
  if (parms.loader !== undefined) notes.loader = parms.loader;
  if (parms.paeMode !== undefined) notes.paeMode = parms.paeMode;
  if (parms.supportedFeatures !== undefined) notes.supportedFeatures = parms.supportedFeatures;
  if (parms.hvStartLow !== undefined) notes.hvStartLow = parms.hvStartLow;
  if (parms.l1MfnValid !== undefined) notes.l1MfnValid = parms.l1MfnValid;
  if (parms.p2mBase !== undefined) notes.initP2m = parms.p2mBase;
  if (parms.suspendCancel !== undefined) notes.suspendCancel = parms.suspendCancel;
  if (parms.phys32Entry !== undefined) notes.phys32Entry = parms.phys32Entry;

  return { elf, entry, segments, notes, pstart, pend, virtKstart, virtKend };
}

/**
 * elf_load_binary: copy each loadable segment's file bytes and zero the rest of its p_memsz,
 * plus any hole between segments inside [pstart, pend) (Xen's kernel segment is allocated
 * zeroed). Addresses are guest-physical: p_paddr - PADDR_OFFSET, which is where pfn
 * (virt_kstart - virt_base) / 4K puts the image (= p_paddr for Linux, whose PADDR_OFFSET is 0).
 */
export function loadSegments(k: XenKernel, write: (paddr: number, data: Uint8Array) => void, zero: (paddr: number, len: number) => void): void {
  const toGpa = (paddr: bigint): number => {
    const gpa = paddr - k.notes.paddrOffset;
    if (gpa < 0n || gpa > BigInt(Number.MAX_SAFE_INTEGER)) throw new ImageError(`kernel segment at p_paddr ${hex(paddr)} has no guest-physical address`);
    return Number(gpa);
  };
  const start = toGpa(k.pstart);
  const end = toGpa(k.pend);
  // holes first, so a segment's own bytes always win
  const spans = k.segments.map((s) => [toGpa(s.paddr), toGpa(s.paddr) + s.memsz] as const).sort((a, b) => a[0] - b[0]);
  let covered = start;
  for (const [s, e] of spans) {
    if (s > covered) zero(covered, s - covered);
    if (e > covered) covered = e;
  }
  if (end > covered) zero(covered, end - covered);
  for (const seg of k.segments) {
    const gpa = toGpa(seg.paddr);
    if (seg.filesz > 0) write(gpa, k.elf.subarray(seg.fileOffset, seg.fileOffset + seg.filesz));
    if (seg.memsz > seg.filesz) zero(gpa + seg.filesz, seg.memsz - seg.filesz);
  }
}
