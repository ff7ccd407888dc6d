// physdev_op for a domU: virtual IOPL and I/O bitmap; no physical devices (xen/arch/x86/physdev.c).
import { XEN_EINVAL, XEN_ENOSYS } from '../abi/errno.js';
import { PHYSDEVOP_set_iobitmap, PHYSDEVOP_set_iopl } from '../abi/physdev.js';
import type { Domain } from './domain.js';
import type { Vcpu } from './vcpu.js';

export function do_physdev_op(d: Domain, v: Vcpu, cmd: number, arg: bigint): number {
  const gv = d.guestVirt(v);
  switch (cmd) {
    case PHYSDEVOP_set_iopl: {
      const iopl = gv.read32(arg);
      if (iopl > 3) return -XEN_EINVAL;
      v.iopl = iopl << 12;
      return 0;
    }
    case PHYSDEVOP_set_iobitmap: {
      const nr = gv.read32(arg + 8n);
      if (nr > 65536) return -XEN_EINVAL;
      return 0; // no ports exist; accesses behave as without permission
    }
    default: return -XEN_ENOSYS;
  }
}
