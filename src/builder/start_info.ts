// The start_info page of a 64-bit PV domU (public/xen.h struct start_info), filled as tools/libs/guest/xg_dom_x86.c start_info_x86_64 does.
import { ImageError } from '../errors.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import type { BootLayout } from './xc_dom.js';

/** What start_info needs beyond the builder's layout: the toolstack's choices. */
export interface StartInfoParams {
  nrPages: number;
  /** Machine address of the shared_info page. */
  sharedInfoMaddr: number;
  storeEvtchn: number;
  consoleEvtchn: number;
  /** XEN_ELFNOTE_VIRT_BASE of the kernel. */
  virtBase: bigint;
  cmdline: string;
}

/** Write start_info at `gpa` (the builder's writeStartInfo callback). */
export function writeStartInfo(mem: GuestMemory, gpa: number, l: BootLayout, p: StartInfoParams): void {
  const w = (off: number, val: bigint | number) => mem.write64(gpa + off, BigInt(val));
  mem.fill(gpa, 4096, 0);
  mem.copyIn(gpa, new TextEncoder().encode('xen-3.0-x86_64'));
  w(0x20, p.nrPages);
  w(0x28, p.sharedInfoMaddr);
  mem.write32(gpa + 0x30, l.ramdiskLen ? 8 /* SIF_MOD_START_PFN */ : 0);
  w(0x38, l.storePfn);
  mem.write32(gpa + 0x40, p.storeEvtchn);
  w(0x48, l.consolePfn);
  mem.write32(gpa + 0x50, p.consoleEvtchn);
  w(0x58, p.virtBase + BigInt(l.l4Pfn * 4096));
  w(0x60, l.ptFrames.length - (l.nrP2mFrames - Math.ceil(p.nrPages * 8 / 4096)));
  w(0x68, l.p2mVa);
  w(0x70, l.ramdiskLen ? l.ramdiskPfn : 0);
  w(0x78, Math.ceil(l.ramdiskLen / 4096) * 4096); // page_size * modules[0].seg.pages, as xc_dom_build_image reports it
  const cmd = new TextEncoder().encode(p.cmdline);
  if (cmd.length > 1023) throw new ImageError(`kernel command line is ${cmd.length} bytes; Xen allows 1023`);
  mem.copyIn(gpa + 0x80, cmd);
  w(0x480, l.firstP2mPfn);
  w(0x488, l.nrP2mFrames);
}
