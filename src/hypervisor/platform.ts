// What the hypervisor core needs from the host and KVM, as one narrow interface (cloud-hypervisor's VmOps idea): CPUID policy, hardware MSR reads, XCR0 rules.
import type { CpuidEntry } from '../kvm/kvm.js';
import type { Vcpu } from './vcpu.js';

export interface Platform {
  readonly cpuid: CpuidEntry[];
  /** Read an MSR as the hardware has it now (after the queued operations ran). */
  readHardwareMsr(v: Vcpu, msr: number): bigint | undefined;
  /** pv_fixup_guest_cr4: the CR4 value the guest may see. */
  fixupGuestCr4(value: bigint): bigint;
  /** Whether `value` may be loaded into XCR0. */
  xcr0Valid(value: bigint): boolean;
  /** The guest-visible TSC now. */
  readGuestTsc(v: Vcpu): bigint;
}
