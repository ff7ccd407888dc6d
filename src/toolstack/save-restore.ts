// xl save / xl restore for PV guests: the guest suspends itself (control/shutdown = "suspend" → SCHEDOP_shutdown(SHUTDOWN_suspend) with its start_info frame in rdx), pvbox writes its memory and the vCPU context Xen would keep (tools/libs/guest/xg_sr_save_x86_pv.c: vcpu_guest_context, page types; public/arch-x86/xen-x86_64.h), and a restore loads them into a new domain whose fresh event channels, grant table and devices the guest reconnects to by itself (Linux drivers/xen/manage.c do_suspend, arch/x86/xen/suspend_pv.c xen_pv_post_suspend).
//
// File: "PVBOXSV1", u32 header length, the JSON header, then binary sections in header order:
// the page-type arrays, the FPU/XSAVE area, the XCRs, the sync GPRs, and the guest's non-zero
// RAM pages (zero pages are not written). Guest memory frames are machine frames under pvbox
// (MFN = PFN), so no page table needs rewriting on restore, unlike Xen's canonicalisation.
import { accessSync, closeSync, constants, fsyncSync, openSync, readSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { ImageError } from '../errors.js';
import type { DiskSpec } from '../backends/vbd/disk-spec.js';
import type { VifSpec } from '../backends/vif/vif-spec.js';
import type { Domain } from '../hypervisor/domain.js';
import type { Hypervisor } from '../hypervisor/hypercall.js';
import type { GuestFrame, TrapInfo, Vcpu } from '../hypervisor/vcpu.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import { R } from '../kvm/kvm.js';

const MAGIC = Buffer.from('PVBOXSV1');
/** After a restore the suspend hypercall returns 0: resumed in a new domain (SCHEDOP_shutdown/SHUTDOWN_suspend; "cancelled" is 1). */
const SUSPEND_RESUMED = 0n;
const VERSION = 1;
const PAGE = 4096;
/** A header larger than this is not a pvbox save file (guards the JSON parse against garbage). */
const MAX_HEADER = 4 << 20;

/** What the guest was started with, so that a restore needs nothing but the file. */
export interface SavedConfig {
  name: string; memoryMiB: number; kernel: string; ramdisk?: string; cmdline: string;
  consoles: number; disks: DiskSpec[]; vifs: VifSpec[];
  /** The xl.cfg of a `pvbox create` domain: a restored domain that reboots boots from it again (pygrub guests' kernels live on their disks). */
  configPath?: string;
}

interface SavedVcpu {
  kernelMode: boolean; guestTable: number; guestTableUser: number; cr3: number;
  kernelSs: number; kernelSp: string; trapCtxt: ([number, string, number, number] | null)[];
  eventCallback: string; failsafeCallback: string; syscallCallback: string; syscall32Callback: string; sysenterCallback: string;
  syscallMaskEvents: boolean; syscall32MaskEvents: boolean; sysenterMaskEvents: boolean;
  cr0Ts: boolean; cr2: string; cr4: string; iopl: number; debugreg: string[];
  gdtFrames: number[]; gdtEnts: number; ldtBase: string; ldtEnts: number;
  fsBase: string; gsBase: string; inactiveGsBase: string;
  frame: { rip: string; cs: number; rflags: string; rsp: string; ss: number };
}

export interface SaveHeader {
  version: number;
  savedAt: string;
  config: SavedConfig;
  uuid: string;
  nrPages: number;
  /** The frame of start_info the guest passed to its suspend hypercall. */
  startInfoMfn: number;
  /** Guest system time at the suspend: the restored domain's clock continues from it. */
  systemTimeNs: string;
  vmAssist: string;
  releasedFrames: number[];
  vcpu: SavedVcpu;
  /** Byte lengths of the binary sections. */
  sections: { pageTypes: number; xsave: number; xcrs: number; regs: number };
  /** [first frame, count] runs of non-zero pages, in file order. */
  pages: [number, number][];
}

const hexs = (b: bigint): string => `0x${b.toString(16)}`;
const big = (s: string): bigint => BigInt(s);

function pageTypesBytes(hv: Hypervisor): Buffer {
  const t = hv.mm.types;
  return Buffer.concat([Buffer.from(t.type), Buffer.from(t.count.buffer, t.count.byteOffset, t.count.byteLength), Buffer.from(t.pinned), Buffer.from(t.everPt)]);
}

function nonZeroRuns(mem: GuestMemory, nrPages: number): [number, number][] {
  const runs: [number, number][] = [];
  const words = mem.u64;
  for (let pfn = 0; pfn < nrPages; pfn++) {
    let zero = true;
    for (let i = pfn * 512, end = i + 512; i < end; i++) if (words[i] !== 0n) { zero = false; break; }
    if (zero) continue;
    const last = runs[runs.length - 1];
    if (last && last[0] + last[1] === pfn) last[1]++; else runs.push([pfn, 1]);
  }
  return runs;
}

/** Why `path` cannot take a save file, or undefined: checked before the guest is asked to suspend. */
export function checkSaveTarget(path: string): string | undefined {
  try {
    accessSync(dirname(path), constants.W_OK);
  } catch (e) { return `cannot write into ${dirname(path)}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`; }
  try { if (statSync(path).isDirectory()) return `${path} is a directory`; } catch { /* a new file */ }
  return undefined;
}

/** Write the save file of a domain stopped in its suspend hypercall (atomically: a temp file renamed into place). */
export function writeSaveFile(path: string, ctx: { config: SavedConfig; d: Domain; hv: Hypervisor; v: Vcpu; mem: GuestMemory; startInfoMfn: number }): void {
  const { d, hv, v, mem } = ctx;
  const kv = v.kvm;
  const types = pageTypesBytes(hv), xsave = kv.getXsave(), xcrs = kv.getXcrs();
  const regs = Buffer.from(kv.regs.buffer.slice(kv.regs.byteOffset, kv.regs.byteOffset + kv.regs.byteLength));
  const pages = nonZeroRuns(mem, d.plan.nrPages);
  // The suspend hypercall returns as every hypercall does (run-loop onSyscall): IF on, IOPL clear.
  const f = { ...v.frame, rflags: (v.frame.rflags & ~0x3000n) | 0x200n | 0x2n };
  const header: SaveHeader = {
    version: VERSION, savedAt: new Date().toISOString(), config: ctx.config,
    uuid: Buffer.from(hv.uuid).toString('hex'), nrPages: d.plan.nrPages, startInfoMfn: ctx.startInfoMfn,
    systemTimeNs: hv.time.systemTime().toString(), vmAssist: hexs(d.vmAssist), releasedFrames: [...d.releasedFrames],
    vcpu: {
      kernelMode: v.kernelMode, guestTable: v.guestTable, guestTableUser: v.guestTableUser, cr3: v.cr3,
      kernelSs: v.kernelSs, kernelSp: hexs(v.kernelSp),
      trapCtxt: v.trapCtxt.map((t) => (t ? [0, hexs(t.address), t.flags, t.cs] : null)),
      eventCallback: hexs(v.eventCallback), failsafeCallback: hexs(v.failsafeCallback), syscallCallback: hexs(v.syscallCallback),
      syscall32Callback: hexs(v.syscall32Callback), sysenterCallback: hexs(v.sysenterCallback),
      syscallMaskEvents: v.syscallMaskEvents, syscall32MaskEvents: v.syscall32MaskEvents, sysenterMaskEvents: v.sysenterMaskEvents,
      cr0Ts: v.cr0Ts, cr2: hexs(v.cr2), cr4: hexs(v.cr4), iopl: v.iopl, debugreg: v.debugreg.map(hexs),
      gdtFrames: v.gdtFrames, gdtEnts: v.gdtEnts, ldtBase: hexs(v.ldtBase), ldtEnts: v.ldtEnts,
      fsBase: hexs(v.fsBase), gsBase: hexs(v.gsBase), inactiveGsBase: hexs(v.inactiveGsBase),
      frame: { rip: hexs(f.rip), cs: f.cs, rflags: hexs(f.rflags), rsp: hexs(f.rsp), ss: f.ss },
    },
    sections: { pageTypes: types.length, xsave: xsave.length, xcrs: xcrs.length, regs: regs.length },
    pages,
  };
  const json = Buffer.from(JSON.stringify(header));
  const tmp = `${path}.tmp-${process.pid}`;
  const fd = openSync(tmp, 'w', 0o600);
  try {
    const len = Buffer.alloc(4); len.writeUInt32LE(json.length);
    for (const b of [MAGIC, len, json, types, xsave, xcrs, regs]) writeAll(fd, b);
    for (const [first, count] of pages) writeAll(fd, mem.bytes(first * PAGE, count * PAGE));
    fsyncSync(fd);
  } catch (e) {
    closeSync(fd); rmSync(tmp, { force: true });
    throw new ImageError(`cannot write ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  closeSync(fd);
  renameSync(tmp, path);
}

function writeAll(fd: number, b: Uint8Array): void {
  for (let off = 0; off < b.length;) off += writeSync(fd, b, off, Math.min(b.length - off, 1 << 24));
}

/** A save file opened for restore: the header checked, the binary sections read on demand. */
export class SaveFile {
  private constructor(readonly path: string, private readonly fd: number, readonly header: SaveHeader, private readonly dataStart: number) {}

  /** Read and check the header; a person-readable ImageError for anything that is not a pvbox save file of this version. */
  static open(path: string): SaveFile {
    let fd: number;
    try { fd = openSync(path, 'r'); } catch (e) { throw new ImageError(`cannot read save file ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`); }
    try {
      const head = Buffer.alloc(12);
      if (readSync(fd, head, 0, 12, 0) !== 12 || !head.subarray(0, 8).equals(MAGIC)) throw new ImageError(`${path} is not a pvbox save file`);
      const len = head.readUInt32LE(8);
      if (len > MAX_HEADER) throw new ImageError(`${path}: save file header is ${len} bytes (corrupt)`);
      const json = Buffer.alloc(len);
      if (readSync(fd, json, 0, len, 12) !== len) throw new ImageError(`${path}: save file is truncated`);
      let h: SaveHeader;
      try { h = JSON.parse(json.toString('utf8')); } catch { throw new ImageError(`${path}: save file header is corrupt`); }
      checkHeader(path, h);
      return new SaveFile(path, fd, h, 12 + len);
    } catch (e) { closeSync(fd); throw e; }
  }

  private readAt(pos: number, len: number): Buffer {
    const b = Buffer.alloc(len);
    for (let off = 0; off < len;) {
      const n = readSync(this.fd, b, off, Math.min(len - off, 1 << 24), pos + off);
      if (n === 0) throw new ImageError(`${this.path}: save file is truncated`);
      off += n;
    }
    return b;
  }

  /** The binary sections, in file order. */
  sections(): { pageTypes: Buffer; xsave: Buffer; xcrs: Buffer; regs: Buffer } {
    const s = this.header.sections;
    let pos = this.dataStart;
    const take = (n: number) => { const b = this.readAt(pos, n); pos += n; return b; };
    return { pageTypes: take(s.pageTypes), xsave: take(s.xsave), xcrs: take(s.xcrs), regs: take(s.regs) };
  }

  /** Copy the saved RAM pages into a fresh domain's memory (which holds zeros there). */
  loadMemory(mem: GuestMemory): void {
    const s = this.header.sections;
    let pos = this.dataStart + s.pageTypes + s.xsave + s.xcrs + s.regs;
    for (const [first, count] of this.header.pages) {
      const dst = mem.bytes(first * PAGE, count * PAGE);
      for (let off = 0; off < dst.length;) {
        const n = readSync(this.fd, dst, off, Math.min(dst.length - off, 1 << 24), pos + off);
        if (n === 0) throw new ImageError(`${this.path}: save file is truncated`);
        off += n;
      }
      pos += count * PAGE;
    }
  }

  close(): void { closeSync(this.fd); }
}

function checkHeader(path: string, h: SaveHeader): void {
  const bad = (what: string) => new ImageError(`${path}: save file ${what}`);
  if (typeof h !== 'object' || h === null) throw bad('header is corrupt');
  if (h.version !== VERSION) throw bad(`version ${String(h.version)} is not ${VERSION}`);
  const c = h.config;
  if (!c || typeof c.name !== 'string' || !Number.isInteger(c.memoryMiB) || typeof c.kernel !== 'string' || typeof c.cmdline !== 'string') throw bad('config is corrupt');
  if (!Array.isArray(c.disks) || !Array.isArray(c.vifs)) throw bad('device list is corrupt');
  if (!Number.isInteger(h.nrPages) || h.nrPages <= 0 || !Array.isArray(h.pages)) throw bad('memory map is corrupt');
  let prevEnd = 0;
  for (const r of h.pages) {
    if (!Array.isArray(r) || !Number.isInteger(r[0]) || !Number.isInteger(r[1]) || r[0] < prevEnd || r[1] <= 0 || r[0] + r[1] > h.nrPages) throw bad('memory map is corrupt');
    prevEnd = r[0] + r[1];
  }
  const s = h.sections;
  if (!s || s.pageTypes !== h.nrPages * 7 || s.xsave !== 4096 || s.xcrs !== 392 || !Number.isInteger(s.regs) || s.regs <= 0 || s.regs > 4096) throw bad('section sizes are corrupt');
  if (!Number.isInteger(h.startInfoMfn) || h.startInfoMfn < 0 || h.startInfoMfn >= h.nrPages) throw bad('start_info frame is out of range');
  if (!/^[0-9a-f]{32}$/.test(h.uuid)) throw bad('uuid is corrupt');
}

/** Put the saved hypervisor and vCPU state into a freshly set-up domain whose memory was loaded. */
export function applySavedState(file: SaveFile, ctx: { d: Domain; hv: Hypervisor; v: Vcpu }): void {
  const { d, hv, v } = ctx;
  const h = file.header, sv = h.vcpu, sec = file.sections();
  const t = hv.mm.types, n = h.nrPages;
  if (t.type.length !== n) throw new ImageError(`${file.path}: saved for ${n} pages, this domain has ${t.type.length}`);
  // Page tables are not taken on trust (a save file is input like a disk image): as Xen's restore
  // re-pins, every table the guest had pinned is validated again, top level first, and the vCPU's
  // page-table roots take their references, which rebuilds the types and counts from the memory.
  const savedType = sec.pageTypes.subarray(0, n), savedPinned = sec.pageTypes.subarray(5 * n, 6 * n);
  for (let level = 4; level >= 1; level--) {
    for (let mfn = 0; mfn < n; mfn++) {
      if (!savedPinned[mfn] || savedType[mfn] !== level || t.pinned[mfn]) continue;
      const rc = hv.mm.getPageType(v, mfn, level);
      if (rc) throw new ImageError(`${file.path}: saved page table ${mfn} (level ${level}) does not validate (${rc})`);
      t.pinned[mfn] = 1;
    }
  }
  for (const root of [sv.guestTable, sv.guestTableUser]) {
    if (root && hv.mm.getPageType(v, root, 4)) throw new ImageError(`${file.path}: saved page-table root ${root} does not validate`);
  }
  hv.uuid.set(Buffer.from(h.uuid, 'hex'));
  d.vmAssist = big(h.vmAssist);
  for (const f of h.releasedFrames) if (d.isRam(f)) d.releasedFrames.add(f);
  hv.time.continueFrom(big(h.systemTimeNs));

  v.kernelMode = sv.kernelMode; v.guestTable = sv.guestTable; v.guestTableUser = sv.guestTableUser;
  v.kernelSs = sv.kernelSs; v.kernelSp = big(sv.kernelSp);
  v.trapCtxt = sv.trapCtxt.map((x): TrapInfo | undefined => (x ? { address: big(x[1]), flags: x[2], cs: x[3] } : undefined));
  v.eventCallback = big(sv.eventCallback); v.failsafeCallback = big(sv.failsafeCallback); v.syscallCallback = big(sv.syscallCallback);
  v.syscall32Callback = big(sv.syscall32Callback); v.sysenterCallback = big(sv.sysenterCallback);
  v.syscallMaskEvents = sv.syscallMaskEvents; v.syscall32MaskEvents = sv.syscall32MaskEvents; v.sysenterMaskEvents = sv.sysenterMaskEvents;
  v.cr0Ts = sv.cr0Ts; v.cr2 = big(sv.cr2); v.cr4 = big(sv.cr4); v.iopl = sv.iopl; v.debugreg = sv.debugreg.map(big);
  v.ldtBase = big(sv.ldtBase); v.ldtEnts = sv.ldtEnts;
  // The guest's GDT frames are in the restored memory; install them in the monitor's GDT as set_gdt did.
  try { hv.desc.installGdt(v, sv.gdtFrames, sv.gdtEnts); } catch { throw new ImageError(`${file.path}: saved GDT is invalid`); }
  // The vCPU resumes at CPL3 on one of its own page-table roots, as any guest frame must (Xen's arch_set_info_guest checks).
  if (sv.cr3 !== sv.guestTable && sv.cr3 !== sv.guestTableUser) throw new ImageError(`${file.path}: saved CR3 is neither page-table root`);
  if ((sv.frame.cs & 3) !== 3 || (sv.frame.ss & 3) !== 3) throw new ImageError(`${file.path}: saved frame is not a guest frame`);
  // CR3, FS and GS bases go into the sregs the caller loads (savedSregs).
  v.cr3 = sv.cr3;
  v.inactiveGsBase = big(sv.inactiveGsBase);
  const f = sv.frame;
  v.frame = { rip: big(f.rip), cs: f.cs, rflags: big(f.rflags), rsp: big(f.rsp), ss: f.ss } satisfies GuestFrame;
  const regs = v.kvm.regs;
  regs.set(new BigUint64Array(sec.regs.buffer.slice(sec.regs.byteOffset, sec.regs.byteOffset + Math.min(sec.regs.length, regs.byteLength))));
  regs[R.rax] = SUSPEND_RESUMED;
  v.kvm.setXsave(sec.xsave);
  v.kvm.setXcrs(sec.xcrs);
  // struct kvm_xcrs: nr_xcrs, flags, then {xcr, reserved, value}: XCR0 is what the guest last set.
  if (sec.xcrs.readUInt32LE(0) >= 1 && sec.xcrs.readUInt32LE(8) === 0) v.xcr0 = sec.xcrs.readBigUInt64LE(16);
}

/** The saved vCPU's CR3 (as a CR3 value), FS base and active GS base, for the sregs of the first entry. */
export function savedSregs(file: SaveFile): { cr3: bigint; fsBase: bigint; gsBase: bigint } {
  const sv = file.header.vcpu;
  return { cr3: BigInt(sv.cr3) << 12n, fsBase: big(sv.fsBase), gsBase: big(sv.gsBase) };
}

