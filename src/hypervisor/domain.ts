// A running PV domain: its memory, vCPUs and Xen subsystems (xen/include/xen/sched.h struct domain), and domain_crash/domain_shutdown.
import type { GuestMemory } from '../memory/guest-memory.js';
import { GuestVirt } from '../memory/guest-virt.js';
import { HV, type MemoryPlan } from '../monitor/layout.js';
import type { Trace } from '../trace/trace.js';
import { Pit } from './i8254.js';
import type { Vcpu } from './vcpu.js';

export type ShutdownReason = 'poweroff' | 'reboot' | 'suspend' | 'crash' | 'watchdog' | 'soft_reset';

export interface DomainHooks {
  /** The guest asked to stop (SCHEDOP_shutdown) or Xen crashed it. */
  onShutdown(reason: ShutdownReason, detail?: string): void;
  /** Bytes the guest printed through console_io. */
  onConsoleIo(bytes: Uint8Array): void;
}

export class Domain {
  readonly vcpus: Vcpu[] = [];
  /** Set once the domain stops running; the run loop exits. */
  shutdownReason: ShutdownReason | undefined;
  shutdownCode = 0;
  vmAssist = 0n;
  readonly sharedInfoGpa: number;
  readonly sharedInfoMfn: number;
  /** Pages ballooned out (XENMEM_decrease_reservation) and not yet repopulated. */
  readonly releasedFrames = new Set<number>();
  /**
   * Set while pvbox save waits for the guest to suspend: called in the guest's
   * SCHEDOP_shutdown(SHUTDOWN_suspend) with its start_info frame; writes the save file and returns
   * undefined (the domain then stops), or an error (the suspend is cancelled, the guest runs on).
   */
  saveHook: ((v: Vcpu, startInfoMfn: number) => string | undefined) | undefined;
  /** The emulated PIT channel 2 (pv_pit_handler). */
  readonly pit = new Pit();

  constructor(
    readonly domid: number,
    readonly name: string,
    readonly mem: GuestMemory,
    readonly plan: MemoryPlan,
    readonly trace: Trace,
    readonly hooks: DomainHooks,
  ) {
    this.sharedInfoGpa = plan.hvBase + HV.sharedInfo;
    this.sharedInfoMfn = this.sharedInfoGpa / 4096;
  }

  get nrPages(): number { return this.plan.nrPages; }
  isRam(mfn: number): boolean { return Number.isInteger(mfn) && mfn >= 0 && mfn < this.plan.nrPages; }

  /** copy_from_guest for a vCPU: walks the page tables it is running on. */
  guestVirt(v: Vcpu): GuestVirt {
    return (v.guestVirt ??= new GuestVirt(this.mem, (gpa) => v.readPte(gpa), () => v.cr3));
  }

  /** Xen's domain_shutdown. */
  shutdown(reason: ShutdownReason, detail?: string): void {
    if (this.shutdownReason) return;
    this.shutdownReason = reason;
    this.hooks.onShutdown(reason, detail);
  }

  /** Xen's domain_crash: the guest did something Xen cannot continue from. */
  crash(why: string): void {
    this.trace.warn('domain_crash', `(XEN) domain ${this.domid} crashed: ${why}`);
    this.shutdown('crash', why);
  }
}
