// set_gdt, update_descriptor and descriptor validation (xen/arch/x86/pv/descriptor-tables.c). The real GDT is the monitor's copy; guest frames stay the guest's.
import { XEN_EINVAL } from '../abi/errno.js';
import { FIRST_RESERVED_GDT_BYTE, FIRST_RESERVED_GDT_ENTRY, VCPU_AREA, vcpuAreaOffset } from '../monitor/layout.js';
import type { Domain } from './domain.js';
import type { Vcpu } from './vcpu.js';

/** check_descriptor for a 64-bit guest: returns the descriptor to install (DPL raised to 3), or undefined if refused. */
export function checkDescriptor(desc: bigint): bigint | undefined {
  const hi = Number(desc >> 32n);
  if (!(hi & (1 << 15))) return desc;               // not present: anything goes
  const s = (hi >> 12) & 1, type = (hi >> 8) & 0xf;
  if (!s) {
    // System segments: only call gates are allowed (Xen forces DPL 0 so using one faults); refuse TSS/LDT/other gates.
    if (type === 0xc) return desc & ~(3n << 45n);
    return undefined;
  }
  const dpl = (hi >> 13) & 3;
  if (dpl < 3) desc |= 3n << 45n;                 // __fixup_guest_selector: kernel segments become DPL 3
  return desc;
}

export class DescriptorTables {
  constructor(readonly d: Domain) {}
  gdtGpa(v: Vcpu): number { return this.d.plan.hvBase + vcpuAreaOffset(v.id) + VCPU_AREA.gdt; }

  /** set_gdt(frame_list, entries). */
  do_set_gdt(v: Vcpu, frameList: bigint, entries: number): number {
    if (entries > FIRST_RESERVED_GDT_ENTRY) return -XEN_EINVAL;
    const nrFrames = Math.ceil((entries * 8) / 4096);
    const gv = this.d.guestVirt(v);
    const frames: number[] = [];
    for (let i = 0; i < nrFrames; i++) {
      const mfn = Number(gv.read64(frameList + BigInt(i * 8)) & 0xfffffffffn);
      if (!this.d.isRam(mfn)) return -XEN_EINVAL;
      frames.push(mfn);
    }
    // Validate everything first (fixing DPLs in place, as Xen does), then install.
    const fixed: bigint[] = [];
    for (let e = 0; e < entries; e++) {
      const gpa = frames[e >> 9]! * 4096 + (e & 511) * 8;
      const desc = this.d.mem.read64(gpa);
      const ok = checkDescriptor(desc);
      if (ok === undefined) return -XEN_EINVAL;
      fixed.push(ok);
    }
    const gdt = this.gdtGpa(v);
    fixed.forEach((desc, e) => {
      const gpa = frames[e >> 9]! * 4096 + (e & 511) * 8;
      if (desc !== this.d.mem.read64(gpa)) this.d.mem.write64(gpa, desc);
      this.d.mem.write64(gdt + e * 8, desc);
    });
    this.d.mem.fill(gdt + entries * 8, FIRST_RESERVED_GDT_BYTE - entries * 8, 0);
    v.gdtFrames = frames; v.gdtEnts = entries;
    return 0;
  }

  /** Install already-checked GDT frames (a restored vCPU's; their descriptors were fixed when set_gdt first took them). */
  installGdt(v: Vcpu, frames: readonly number[], entries: number): void {
    if (entries > FIRST_RESERVED_GDT_ENTRY || frames.length < Math.ceil((entries * 8) / 4096) || !frames.every((f) => this.d.isRam(f))) throw new Error('installGdt: bad saved GDT');
    const gdt = this.gdtGpa(v);
    for (let e = 0; e < entries; e++) {
      const desc = checkDescriptor(this.d.mem.read64(frames[e >> 9]! * 4096 + (e & 511) * 8));
      this.d.mem.write64(gdt + e * 8, desc ?? 0n);
    }
    this.d.mem.fill(gdt + entries * 8, FIRST_RESERVED_GDT_BYTE - entries * 8, 0);
    v.gdtFrames = [...frames]; v.gdtEnts = entries;
  }

  /** update_descriptor(maddr, desc). */
  do_update_descriptor(v: Vcpu, maddr: bigint, desc: bigint): number {
    const ma = Number(maddr);
    if ((ma & 7) !== 0 || !this.d.isRam(ma >>> 12)) return -XEN_EINVAL;
    const ok = checkDescriptor(desc);
    if (ok === undefined) return -XEN_EINVAL;
    this.d.mem.write64(ma, ok);
    // Keep every vCPU's installed copy in step.
    for (const w of this.d.vcpus) {
      const idx = w.gdtFrames.indexOf(ma >>> 12);
      if (idx < 0) continue;
      const entry = idx * 512 + ((ma & 0xfff) >>> 3);
      if (entry < w.gdtEnts) this.d.mem.write64(this.gdtGpa(w) + entry * 8, ok);
    }
    return 0;
  }
}
