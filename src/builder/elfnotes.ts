// Xen ELF notes of a PV kernel (XEN_ELFNOTE_* of xen/include/public/elfnote.h), parsed as xen/common/libelf/libelf-dominfo.c: elf_xen_parse_note / elf_xen_parse_notes / elf_xen_parse_features do.
import { ImageError } from '../errors.js';
import {
  XEN_ELFNOTE_ENTRY, XEN_ELFNOTE_FEATURES, XEN_ELFNOTE_GUEST_OS, XEN_ELFNOTE_GUEST_VERSION, XEN_ELFNOTE_HV_START_LOW,
  XEN_ELFNOTE_HYPERCALL_PAGE, XEN_ELFNOTE_INIT_P2M, XEN_ELFNOTE_L1_MFN_VALID, XEN_ELFNOTE_LOADER, XEN_ELFNOTE_MOD_START_PFN,
  XEN_ELFNOTE_PADDR_OFFSET, XEN_ELFNOTE_PAE_MODE, XEN_ELFNOTE_PHYS32_ENTRY, XEN_ELFNOTE_SUPPORTED_FEATURES,
  XEN_ELFNOTE_SUSPEND_CANCEL, XEN_ELFNOTE_VIRT_BASE, XEN_ELFNOTE_XEN_VERSION,
} from '../abi/elfnote.js';
import {
  XENFEAT_auto_translated_physmap, XENFEAT_dom0, XENFEAT_hvm_callback_vector, XENFEAT_pae_pgdir_above_4gb,
  XENFEAT_supervisor_mode_kernel, XENFEAT_writable_descriptor_tables, XENFEAT_writable_page_tables,
} from '../abi/features.js';

// The note numbers live in src/abi/elfnote.ts (public/elfnote.h); re-exported for the builder's users.
export * from '../abi/elfnote.js';

/** elf_xen_feature_names[] */
const elfXenFeatureNames: ReadonlyMap<string, number> = new Map([
  ['writable_page_tables', XENFEAT_writable_page_tables],
  ['writable_descriptor_tables', XENFEAT_writable_descriptor_tables],
  ['auto_translated_physmap', XENFEAT_auto_translated_physmap],
  ['supervisor_mode_kernel', XENFEAT_supervisor_mode_kernel],
  ['pae_pgdir_above_4gb', XENFEAT_pae_pgdir_above_4gb],
  ['hvm_callback_vector', XENFEAT_hvm_callback_vector],
  ['dom0', XENFEAT_dom0],
]);

/** ELF_MAX_TOTAL_NOTE_COUNT in libelf-private.h */
const ELF_MAX_TOTAL_NOTE_COUNT = 1024;

/** What a PV kernel's Xen notes say, after libelf's defaults are applied (elf.ts applies them). */
export interface XenElfNotes {
  /** XEN_ELFNOTE_ENTRY (parms->virt_entry); defaults to e_entry. */
  entry: bigint;
  /** XEN_ELFNOTE_HYPERCALL_PAGE (parms->virt_hypercall): absent in Linux ≥ 6.1.121 (XSA-466). */
  hypercallPage?: bigint;
  /** XEN_ELFNOTE_VIRT_BASE (parms->virt_base); defaults to 0. */
  virtBase: bigint;
  /** XEN_ELFNOTE_PADDR_OFFSET (parms->elf_paddr_offset); defaults to 0 when notes are used. */
  paddrOffset: bigint;
  xenVersion?: string;
  guestOs?: string;
  guestVersion?: string;
  loader?: string;
  paeMode?: string;
  /** The raw XEN_ELFNOTE_FEATURES string split on '|' ('!' marks a required feature). */
  features: string[];
  /** XEN_ELFNOTE_SUPPORTED_FEATURES: the first 32-bit XENFEAT submap, as written in the note. */
  supportedFeatures?: number;
  /** parms->f_supported[0]: FEATURES names plus SUPPORTED_FEATURES bits. */
  fSupported: number;
  /** parms->f_required[0]: FEATURES names marked '!'. */
  fRequired: number;
  hvStartLow?: bigint;
  /** XEN_ELFNOTE_L1_MFN_VALID: (mask, value) pairs, as 64-bit (or 32-bit) words. */
  l1MfnValid?: bigint[];
  /** XEN_ELFNOTE_INIT_P2M (parms->p2m_base). */
  initP2m?: bigint;
  /** XEN_ELFNOTE_MOD_START_PFN (parms->unmapped_initrd). */
  modStartPfn: boolean;
  suspendCancel?: boolean;
  /** XEN_ELFNOTE_PHYS32_ENTRY (PVH; unused for PV). */
  phys32Entry?: number;
}

/** The notes as found, before defaults (UNSET_ADDR fields are undefined). */
export interface XenElfNoteParms {
  virtEntry?: bigint;
  virtHypercall?: bigint;
  virtBase?: bigint;
  elfPaddrOffset?: bigint;
  xenVersion?: string;
  guestOs?: string;
  guestVersion?: string;
  loader?: string;
  paeMode?: string;
  features: string[];
  supportedFeatures?: number;
  fSupported: number;
  fRequired: number;
  hvStartLow?: bigint;
  l1MfnValid?: bigint[];
  p2mBase?: bigint;
  modStartPfn: boolean;
  suspendCancel?: boolean;
  phys32Entry?: number;
  /** Notes seen so far of any owner (ELF_MAX_TOTAL_NOTE_COUNT). */
  totalNoteCount: number;
}

export function newXenElfNoteParms(): XenElfNoteParms {
  return { features: [], fSupported: 0, fRequired: 0, modStartPfn: false, totalNoteCount: 0 };
}

/** elf_note_numeric: 1, 2, 4 or 8 little-endian bytes; any other size reads as 0. */
function noteNumeric(b: Uint8Array, p: number, descsz: number): bigint {
  switch (descsz) {
    case 1: case 2: case 4: case 8: {
      let v = 0n;
      for (let i = descsz - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[p + i]!);
      return v;
    }
    default:
      return 0n;
  }
}

/** elf_strval on the descriptor, kept inside it: up to the first NUL. */
function noteString(b: Uint8Array, p: number, descsz: number): string {
  let end = p;
  while (end < p + descsz && b[end] !== 0) end++;
  return new TextDecoder('latin1').decode(b.subarray(p, end));
}

/** elf_xen_parse_features: '|'-separated names, '!' = required; an unknown required name fails. */
function parseFeatures(parms: XenElfNoteParms, str: string): void {
  for (const feature of str.split('|')) {
    if (feature === '') continue;
    parms.features.push(feature);
    const required = feature.startsWith('!');
    const bit = elfXenFeatureNames.get(required ? feature.slice(1) : feature);
    if (bit === undefined) {
      if (required) throw new ImageError(`kernel requires Xen feature "${feature.slice(1)}", which is unknown`);
      continue;
    }
    parms.fSupported |= 1 << bit;
    if (required) parms.fRequired |= 1 << bit;
  }
}

/** elf_xen_parse_note: one note whose owner is "Xen". */
function parseNote(parms: XenElfNoteParms, b: Uint8Array, type: number, desc: number, descsz: number): void {
  const num = (): bigint => noteNumeric(b, desc, descsz);
  const str = (): string => noteString(b, desc, descsz);
  switch (type) {
    case XEN_ELFNOTE_ENTRY: parms.virtEntry = num(); break;
    case XEN_ELFNOTE_HYPERCALL_PAGE: parms.virtHypercall = num(); break;
    case XEN_ELFNOTE_VIRT_BASE: parms.virtBase = num(); break;
    case XEN_ELFNOTE_PADDR_OFFSET: parms.elfPaddrOffset = num(); break;
    case XEN_ELFNOTE_XEN_VERSION: parms.xenVersion = str(); break;
    case XEN_ELFNOTE_GUEST_OS: parms.guestOs = str(); break;
    case XEN_ELFNOTE_GUEST_VERSION: parms.guestVersion = str(); break;
    case XEN_ELFNOTE_LOADER: parms.loader = str(); break;
    case XEN_ELFNOTE_PAE_MODE: parms.paeMode = str(); break;
    case XEN_ELFNOTE_FEATURES: parseFeatures(parms, str()); break;
    case XEN_ELFNOTE_HV_START_LOW: parms.hvStartLow = num(); break;
    case XEN_ELFNOTE_INIT_P2M: parms.p2mBase = num(); break;
    case XEN_ELFNOTE_MOD_START_PFN: parms.modStartPfn = num() !== 0n; break;
    case XEN_ELFNOTE_SUSPEND_CANCEL: parms.suspendCancel = num() !== 0n; break;
    case XEN_ELFNOTE_PHYS32_ENTRY: parms.phys32Entry = Number(num() & 0xffffffffn); break;
    case XEN_ELFNOTE_SUPPORTED_FEATURES: {
      // elf_note_numeric_array(note, 4, 0) for the single XENFEAT submap
      const v = descsz >= 4 && descsz % 4 === 0 ? Number(noteNumeric(b, desc, 4)) : 0;
      parms.supportedFeatures = v;
      parms.fSupported = (parms.fSupported | v) >>> 0;
      break;
    }
    case XEN_ELFNOTE_L1_MFN_VALID: {
      // libelf only logs this one; keep its words (Linux: 64-bit mask/value pairs)
      const unit = descsz % 8 === 0 ? 8 : descsz % 4 === 0 ? 4 : 0;
      if (unit === 0) break;
      const words: bigint[] = [];
      for (let o = 0; o < descsz; o += unit) words.push(noteNumeric(b, desc + o, unit));
      parms.l1MfnValid = words;
      break;
    }
    default:
      break; // XEN_ELFNOTE_INFO, BSD_SYMTAB, PHYS32_RELOC and unknown types: ignored, as for a PV build
  }
}

/**
 * elf_xen_parse_notes: walk the notes in b[start, end) (a PT_NOTE segment or SHT_NOTE section),
 * parsing those owned by "Xen". Returns how many Xen notes were found. A note running past the
 * end of its region is corruption.
 */
export function parseXenElfNotes(parms: XenElfNoteParms, b: Uint8Array, start: number, end: number, where: string): number {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  let count = 0;
  let p = start;
  while (p < end) {
    if (++parms.totalNoteCount > ELF_MAX_TOTAL_NOTE_COUNT) throw new ImageError(`kernel ELF has more than ${ELF_MAX_TOTAL_NOTE_COUNT} notes`);
    if (end - p < 12) throw new ImageError(`kernel ELF note at offset ${p} in ${where} is truncated`);
    const namesz = dv.getUint32(p, true);
    const descsz = dv.getUint32(p + 4, true);
    const type = dv.getUint32(p + 8, true);
    const name = p + 12;
    const desc = name + ((namesz + 3) & ~3);
    const next = desc + ((descsz + 3) & ~3);
    if (namesz > end - name || desc + descsz > end) throw new ImageError(`kernel ELF note at offset ${p} in ${where} runs past its end`);
    // elf_note_name is a C string: "Xen" with its NUL (namesz 4)
    let nameEnd = name;
    while (nameEnd < name + namesz && b[nameEnd] !== 0) nameEnd++;
    if (nameEnd - name === 3 && b[name] === 0x58 && b[name + 1] === 0x65 && b[name + 2] === 0x6e) {
      parseNote(parms, b, type, desc, descsz);
      count++;
    }
    p = Math.min(next, end);
  }
  return count;
}
