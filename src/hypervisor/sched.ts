// sched_op: yield, block, poll, shutdown (xen/common/sched/core.c do_sched_op).
import { XEN_EINVAL, XEN_ENOSYS, XEN_EPERM, XEN_EFAULT } from '../abi/errno.js';
import { SCHEDOP_block, SCHEDOP_poll, SCHEDOP_remote_shutdown, SCHEDOP_shutdown, SCHEDOP_shutdown_code, SCHEDOP_yield } from '../abi/sched.js';
import { DOMID_SELF } from '../abi/xen.js';
import { R } from '../kvm/kvm.js';
import type { Domain, ShutdownReason } from './domain.js';
import type { EventChannels } from './event_channel.js';
import { setUpcallMask, upcallPending } from './traps.js';
import type { Vcpu } from './vcpu.js';

export const SHUTDOWN_REASONS: ShutdownReason[] = ['poweroff', 'reboot', 'suspend', 'crash', 'watchdog', 'soft_reset'];

/** What the run loop must do after sched_op returns. */
export interface BlockRequest { kind: 'block' | 'poll'; ports?: number[]; deadline?: bigint }

export function do_sched_op(d: Domain, ev: EventChannels, v: Vcpu, cmd: number, arg: bigint, now: () => bigint): number | BlockRequest {
  const gv = d.guestVirt(v);
  switch (cmd) {
    case SCHEDOP_yield: return 0;
    case SCHEDOP_block:
      // Atomically enable events, then sleep unless one is already pending (vcpu_block_enable_events).
      setUpcallMask(d, v, 0);
      return upcallPending(d, v) ? 0 : { kind: 'block' };
    case SCHEDOP_shutdown: case SCHEDOP_remote_shutdown: {
      let reason: number;
      if (cmd === SCHEDOP_remote_shutdown) {
        const b = gv.view(arg, 8);
        const dom = b.getUint16(0, true);
        if (dom !== DOMID_SELF && dom !== d.domid) return -XEN_EPERM;
        reason = b.getUint32(4, true);
      } else reason = gv.read32(arg);
      const r = SHUTDOWN_REASONS[reason & 0xff];
      if (!r) {
        // Xen stores any (u8) reason without checking (domain_shutdown); pvbox reports it as a crash.
        d.shutdown('crash', `unknown shutdown reason ${reason & 0xff}`);
        return 0;
      }
      if (r === 'suspend') {
        // Only a suspend the toolstack asked for (pvbox save) stops the domain; the guest passed its
        // start_info frame in the third argument (Linux HYPERVISOR_suspend; xc_domain_save reads it).
        const hook = d.saveHook;
        d.saveHook = undefined;
        if (!hook) {
          d.trace.warn('suspend', 'guest asked to suspend without a pvbox save: the suspend is cancelled');
          return 1; // the guest sees a cancelled suspend (SUSPEND_CANCEL semantics)
        }
        if (hook(v, Number(v.regs[R.rdx]! & 0xfffffffffn)) !== undefined) return 1; // not saved: the guest resumes where it was
        d.shutdown('suspend');
        return 0;
      }
      d.shutdown(r, d.shutdownCode ? `code ${d.shutdownCode}` : undefined);
      return 0;
    }
    case SCHEDOP_shutdown_code: {
      d.shutdownCode = gv.read32(arg);
      return 0;
    }
    case SCHEDOP_poll: {
      const b = gv.view(arg, 24);
      const portsVa = b.getBigUint64(0, true), nr = b.getUint32(8, true), timeout = b.getBigUint64(16, true);
      if (nr > 128) return -XEN_EINVAL;
      const ports: number[] = [];
      try {
        for (let i = 0; i < nr; i++) {
          const p = gv.read32(portsVa + BigInt(i * 4));
          if (!ev.isBound(p)) return -XEN_EINVAL; // evtchn_port_poll: !evtchn_usable
          ports.push(p);
        }
      } catch { return -XEN_EFAULT; }
      if (ports.some((p) => ev.isPending(p))) return 0;
      if (timeout !== 0n && timeout <= now()) return 0;
      return { kind: 'poll', ports, deadline: timeout !== 0n ? timeout : undefined };
    }
    default: return -XEN_ENOSYS;
  }
}
