// xen_version: version strings and the feature bitmap a PV domU sees (xen/common/kernel.c do_xen_version).
import { XEN_EINVAL, XEN_ENOSYS, XEN_EPERM } from '../abi/errno.js';
import {
  XENFEAT_direct_mapped, XENFEAT_gnttab_map_avail_bits, XENFEAT_highmem_assist, XENFEAT_mmu_pt_update_preserve_ad,
} from '../abi/features.js';
import {
  XENVER_build_id, XENVER_capabilities, XENVER_changeset, XENVER_commandline, XENVER_compile_info, XENVER_extraversion,
  XENVER_get_features, XENVER_guest_handle, XENVER_pagesize, XENVER_platform_parameters, XENVER_version,
} from '../abi/version.js';
import { HYPERVISOR_VIRT_START } from '../abi/xen.js';
import { XEN_MAJOR, XEN_MINOR } from './cpuid.js';
import type { Domain } from './domain.js';
import type { Vcpu } from './vcpu.js';

const str = (s: string, len: number): Uint8Array => { const b = new Uint8Array(len); b.set(new TextEncoder().encode(s).subarray(0, len - 1)); return b; };

/** Features of a 64-bit PV domU (kernel.c XENVER_get_features, PV branch). */
export const PV_DOMU_FEATURES = (1 << XENFEAT_mmu_pt_update_preserve_ad) | (1 << XENFEAT_highmem_assist) |
  (1 << XENFEAT_gnttab_map_avail_bits) | (1 << XENFEAT_direct_mapped);

export function do_xen_version(d: Domain, v: Vcpu, cmd: number, arg: bigint, uuid: Uint8Array): number {
  const gv = d.guestVirt(v);
  switch (cmd) {
    case XENVER_version: return (XEN_MAJOR << 16) | XEN_MINOR;
    case XENVER_extraversion: gv.copyTo(arg, str('.0-pvbox', 16)); return 0;
    case XENVER_compile_info: {
      const b = new Uint8Array(144);
      b.set(str('pvbox', 64), 0); b.set(str('pvbox', 16), 64); b.set(str('pvbox', 32), 80); b.set(str(new Date(0).toUTCString(), 32), 112);
      gv.copyTo(arg, b); return 0;
    }
    case XENVER_capabilities: gv.copyTo(arg, str('xen-3.0-x86_64 ', 1024)); return 0;
    case XENVER_changeset: gv.copyTo(arg, str('pvbox', 64)); return 0;
    case XENVER_platform_parameters: gv.write64(arg, HYPERVISOR_VIRT_START); return 0;
    case XENVER_get_features: {
      const idx = gv.read32(arg);
      if (idx !== 0) return -XEN_EINVAL;
      gv.write32(arg + 4n, PV_DOMU_FEATURES);
      return 0;
    }
    case XENVER_pagesize: return 4096;
    case XENVER_guest_handle: gv.copyTo(arg, uuid); return 0;
    case XENVER_commandline: case XENVER_build_id: return -XEN_EPERM; // privileged (XSM) for a domU
    default: return -XEN_ENOSYS;
  }
}
