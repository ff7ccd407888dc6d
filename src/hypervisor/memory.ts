// memory_op: the guest's memory map, M2P location and ballooning (xen/common/memory.c, xen/arch/x86/x86_64/mm.c subarch_memory_op).
import { XEN_EINVAL, XEN_ENOSYS, XEN_ESRCH, XEN_EFAULT } from '../abi/errno.js';
import {
  XENMEM_current_reservation, XENMEM_decrease_reservation, XENMEM_machphys_mapping, XENMEM_maximum_ram_page,
  XENMEM_maximum_reservation, XENMEM_memory_map, XENMEM_populate_physmap, XENMEM_increase_reservation,
} from '../abi/memory.js';
import { DOMID_SELF } from '../abi/xen.js';
import { M2P_VIRT_START } from '../monitor/layout.js';
import type { Domain } from './domain.js';
import type { Mm } from './mm.js';
import type { Vcpu } from './vcpu.js';

const E820_RAM = 1;

export function do_memory_op(d: Domain, mm: Mm, v: Vcpu, cmd: number, arg: bigint, releasePage?: (gpa: number) => void): number | bigint {
  const gv = d.guestVirt(v);
  const op = cmd & 0x3f; // low bits: command; the rest is the continuation start extent
  switch (op) {
    case XENMEM_machphys_mapping: {
      const out = new DataView(new ArrayBuffer(24));
      out.setBigUint64(0, M2P_VIRT_START, true);
      out.setBigUint64(8, M2P_VIRT_START + BigInt(d.plan.m2pBytes), true);
      out.setBigUint64(16, BigInt(d.plan.maxMfn), true);
      gv.copyTo(arg, new Uint8Array(out.buffer));
      return 0;
    }
    case XENMEM_memory_map: {
      const cap = gv.read32(arg);
      const buffer = gv.read64(arg + 8n);
      if (cap < 1) { gv.write32(arg, 0); return 0; } // min(map.nr_entries, nr_e820)
      const e = new DataView(new ArrayBuffer(20));
      e.setBigUint64(0, 0n, true);
      e.setBigUint64(8, BigInt(d.plan.ramBytes), true);
      e.setUint32(16, E820_RAM, true);
      gv.copyTo(buffer, new Uint8Array(e.buffer));
      gv.write32(arg, 1);
      return 0;
    }
    case XENMEM_current_reservation: case XENMEM_maximum_reservation: {
      const dom = gv.read16(arg);
      if (dom !== DOMID_SELF && dom !== d.domid) return -XEN_ESRCH;
      return op === XENMEM_current_reservation ? d.nrPages - d.releasedFrames.size : d.nrPages;
    }
    case XENMEM_maximum_ram_page: return d.nrPages - 1;
    case XENMEM_decrease_reservation: case XENMEM_populate_physmap: case XENMEM_increase_reservation: {
      const r = gv.view(arg, 32);
      const list = r.getBigUint64(0, true), nr = Number(r.getBigUint64(8, true)), order = r.getUint32(16, true), dom = r.getUint16(24, true);
      if (dom !== DOMID_SELF && dom !== d.domid) return -XEN_ESRCH;
      if (order !== 0 || nr > d.nrPages) return -XEN_EINVAL;
      if (op === XENMEM_increase_reservation) return 0; // no machine memory beyond the domain's own
      let done = 0;
      for (; done < nr; done++) {
        let frame: number;
        try { frame = Number(gv.read64(list + BigInt(done * 8)) & 0xfffffffffn); } catch { return done || -XEN_EFAULT; }
        if (!d.isRam(frame)) break;
        if (op === XENMEM_decrease_reservation) {
          if (mm.types.type[frame] || d.releasedFrames.has(frame)) break;
          d.releasedFrames.add(frame);
          d.mem.write64(d.plan.m2pBase + frame * 8, 0xffffffffffffffffn);
          if (releasePage) releasePage(frame * 4096); else d.mem.fill(frame * 4096, 4096, 0);
        } else {
          // populate_physmap: gpfn in, mfn out (the identity, since RAM frames are the guest's own).
          if (!d.releasedFrames.has(frame)) break;
          d.releasedFrames.delete(frame);
          d.mem.write64(d.plan.m2pBase + frame * 8, BigInt(frame));
          gv.write64(list + BigInt(done * 8), BigInt(frame));
        }
      }
      return done;
    }
    default:
      d.trace.warn(`memory_op_${op}`, `memory_op: unimplemented sub-op ${op}`);
      return -XEN_ENOSYS;
  }
}
