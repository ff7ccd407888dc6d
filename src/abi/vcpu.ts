// Per-vCPU operations: xen/include/public/vcpu.h (VCPUOP_* of __HYPERVISOR_vcpu_op(cmd, vcpuid, arg), runstate, timers, vcpu_info placement).
import { layout } from './layout.js';

export const VCPUOP_initialise = 0; // arg: vcpu_guest_context (./xen.ts)
export const VCPUOP_up = 1;
export const VCPUOP_down = 2;
export const VCPUOP_is_up = 3; // returns 1 if up, 0 if down
export const VCPUOP_get_runstate_info = 4; // arg: vcpu_runstate_info
export const VCPUOP_register_runstate_memory_area = 5; // arg: vcpu_register_runstate_memory_area
export const VCPUOP_set_periodic_timer = 6; // arg: vcpu_set_periodic_timer
export const VCPUOP_stop_periodic_timer = 7; // arg: NULL
export const VCPUOP_set_singleshot_timer = 8; // arg: vcpu_set_singleshot_timer
export const VCPUOP_stop_singleshot_timer = 9; // arg: NULL
export const VCPUOP_register_vcpu_info = 10; // arg: vcpu_register_vcpu_info
export const VCPUOP_send_nmi = 11; // arg: NULL
export const VCPUOP_get_physid = 12; // arg: vcpu_get_physid
export const VCPUOP_register_vcpu_time_memory_area = 13; // arg: vcpu_register_time_memory_area
/** Xen 4.18+: like 5 and 13, but the address is a guest-physical one. */
export const VCPUOP_register_runstate_phys_area = 14;
export const VCPUOP_register_vcpu_time_phys_area = 15;

export const vcpu_runstate_info = layout('vcpu_runstate_info', 48, {
  state: [0, 'i32'], // RUNSTATE_*
  state_entry_time: [8, 'u64'], // system time when entering `state`; XEN_RUNSTATE_UPDATE while updating
  time: [16, 'u64', 4], // ns spent in each RUNSTATE_*
});
/** Set in state_entry_time while Xen updates the area (needs VMASST_TYPE_runstate_update_flag). */
export const XEN_RUNSTATE_UPDATE = 1n << 63n;

export const RUNSTATE_running = 0; // VCPU is currently running on a physical CPU.
export const RUNSTATE_runnable = 1; // VCPU is runnable, but not currently scheduled.
export const RUNSTATE_blocked = 2; // VCPU is blocked (a.k.a. idle).
export const RUNSTATE_offline = 3; // VCPU is not runnable, but it is not blocked.

export const vcpu_register_runstate_memory_area = layout('vcpu_register_runstate_memory_area', 8, {
  'addr.p': [0, 'u64'], // guest VA of a vcpu_runstate_info
});

export const vcpu_set_periodic_timer = layout('vcpu_set_periodic_timer', 8, {
  period_ns: [0, 'u64'],
});

export const vcpu_set_singleshot_timer = layout('vcpu_set_singleshot_timer', 16, {
  timeout_abs_ns: [0, 'u64'], // Absolute system time value in nanoseconds.
  flags: [8, 'u32'], // VCPU_SSHOTTMR_???
});
/** Flag: fail with -ETIME if the timeout is already in the past. */
export const _VCPU_SSHOTTMR_future = 0;
export const VCPU_SSHOTTMR_future = 1 << _VCPU_SSHOTTMR_future;

/** Move this vCPU's vcpu_info to (mfn << 12) + offset; must not cross a page. */
export const vcpu_register_vcpu_info = layout('vcpu_register_vcpu_info', 16, {
  mfn: [0, 'u64'], // mfn of page to place vcpu_info
  offset: [8, 'u32'], // offset within page
  rsvd: [12, 'u32'], // unused
});

export const vcpu_get_physid = layout('vcpu_get_physid', 8, {
  phys_id: [0, 'u64'],
});

export const vcpu_register_time_memory_area = layout('vcpu_register_time_memory_area', 8, {
  'addr.p': [0, 'u64'], // guest VA of a vcpu_time_info
});
