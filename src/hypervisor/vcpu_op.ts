// vcpu_op: timers, vcpu_info placement, runstate areas, up/down (xen/common/domain.c common_vcpu_op, xen/arch/x86/domain.c do_vcpu_op).
import { XEN_EBUSY, XEN_EINVAL, XEN_ENOENT, XEN_ENOSYS, XEN_ENXIO, XEN_EFAULT } from '../abi/errno.js';
import {
  VCPUOP_is_up, VCPUOP_register_runstate_memory_area, VCPUOP_register_vcpu_info, VCPUOP_set_periodic_timer,
  VCPUOP_set_singleshot_timer, VCPUOP_stop_periodic_timer, VCPUOP_stop_singleshot_timer, VCPUOP_up, VCPUOP_down,
  VCPUOP_get_runstate_info,
} from '../abi/vcpu.js';
import { guestAddrOk } from '../memory/guest-virt.js';
import type { Domain } from './domain.js';
import type { TimeKeeper } from './time.js';
import type { Vcpu } from './vcpu.js';

export function do_vcpu_op(d: Domain, time: TimeKeeper, v: Vcpu, cmd: number, vcpuid: number, arg: bigint): number {
  const target = d.vcpus[vcpuid];
  if (!target || vcpuid < 0) return -XEN_ENOENT;
  const gv = d.guestVirt(v);
  switch (cmd) {
    case VCPUOP_is_up: return target.online ? 1 : 0;
    case VCPUOP_up: return target.online ? 0 : -XEN_EINVAL;
    case VCPUOP_down: return -XEN_EINVAL; // the only vCPU cannot go down
    case VCPUOP_register_runstate_memory_area: {
      const va = gv.read64(arg);
      if (va !== 0n && !guestAddrOk(va)) return -XEN_EFAULT; // guest_handle_okay
      target.runstateVa = va;
      time.writeRunstate(target);
      return 0;
    }
    case VCPUOP_get_runstate_info: return -XEN_ENOSYS;
    case VCPUOP_set_periodic_timer: {
      if (target !== v) return -XEN_EINVAL;
      const period = gv.read64(arg);
      if (period < 1_000_000n) return -XEN_EINVAL;
      v.periodicPeriod = period; v.periodicNext = time.systemTime() + period;
      return 0;
    }
    case VCPUOP_stop_periodic_timer: target.periodicPeriod = 0n; return 0;
    case VCPUOP_set_singleshot_timer: {
      if (target !== v) return -XEN_EINVAL;
      const b = gv.view(arg, 16);
      // VCPU_SSHOTTMR_future is ignored (Xen 4.18+, 19c6cbd909): a past timeout just fires at once.
      const timeout = b.getBigUint64(0, true);
      v.singleshotDeadline = timeout;
      return 0;
    }
    case VCPUOP_stop_singleshot_timer: if (target !== v) return -XEN_EINVAL; v.singleshotDeadline = undefined; return 0;
    case VCPUOP_register_vcpu_info: {
      const b = gv.view(arg, 16);
      const mfn = Number(b.getBigUint64(0, true) & 0xfffffffffn), offset = b.getUint32(8, true);
      if (offset >= 4096) return -XEN_EINVAL;                       // gaddr_to_gfn(gaddr) != info.mfn
      if (target.vcpuInfoRegistered) return -XEN_EBUSY;
      if (offset + 64 > 4096 || (offset & 7)) return -XEN_ENXIO;    // map_guest_area: crosses the page / misaligned
      if (!d.isRam(mfn)) return -XEN_EINVAL;                        // check_get_page_from_gfn
      const newGpa = mfn * 4096 + offset;
      // Copy the current contents, then flag everything pending (map_guest_area + vcpu_info_populate).
      d.mem.u8.copyWithin(newGpa, target.vcpuInfoGpa, target.vcpuInfoGpa + 64);
      target.vcpuInfoGpa = newGpa;
      target.vcpuInfoRegistered = true;
      d.mem.write64(newGpa + 8, 0xffffffffffffffffn);
      d.mem.write8(newGpa, 1);
      time.updateVcpuTime(target);
      return 0;
    }
    default: return -XEN_ENOSYS;
  }
}

