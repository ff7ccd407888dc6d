// Scheduler operations: xen/include/public/sched.h (SCHEDOP_* sub-ops of __HYPERVISOR_sched_op, SHUTDOWN_* reasons).
import { layout } from './layout.js';

export const SCHEDOP_yield = 0; // Voluntarily yield the CPU.
export const SCHEDOP_block = 1; // Block until an event is received (clears the upcall mask first).
export const SCHEDOP_shutdown = 2; // Halt execution of this domain (arg: sched_shutdown).
export const SCHEDOP_poll = 3; // Wait for any of a set of event-channel ports, with timeout (arg: sched_poll).
export const SCHEDOP_remote_shutdown = 4; // Shut down another domain (arg: sched_remote_shutdown).
export const SCHEDOP_shutdown_code = 5; // Latch a shutdown code without shutting down (arg: sched_shutdown).
export const SCHEDOP_watchdog = 6; // Set up, poke or destroy a domain watchdog timer (arg: sched_watchdog).
export const SCHEDOP_pin_override = 7; // Temporarily pin the vCPU to one pCPU; dom0 only (arg: sched_pin_override).

export const sched_shutdown = layout('sched_shutdown', 4, {
  reason: [0, 'u32'], // SHUTDOWN_*
});

export const sched_poll = layout('sched_poll', 24, {
  ports: [0, 'u64'], // guest handle (VA) of evtchn_port_t[nr_ports]
  nr_ports: [8, 'u32'],
  timeout: [16, 'u64'], // absolute system time (ns); 0 = no timeout
});

export const sched_remote_shutdown = layout('sched_remote_shutdown', 8, {
  domain_id: [0, 'u16'], // Remote domain ID
  reason: [4, 'u32'], // SHUTDOWN_*
});

export const sched_watchdog = layout('sched_watchdog', 8, {
  id: [0, 'u32'], // watchdog ID
  timeout: [4, 'u32'], // timeout
});

export const sched_pin_override = layout('sched_pin_override', 4, {
  pcpu: [0, 'i32'],
});

export const SHUTDOWN_poweroff = 0; // Domain exited normally. Clean up and kill.
export const SHUTDOWN_reboot = 1; // Clean up, kill, and then restart.
export const SHUTDOWN_suspend = 2; // Clean up, save suspend info, kill.
export const SHUTDOWN_crash = 3; // Tell controller we've crashed.
export const SHUTDOWN_watchdog = 4; // Restart because watchdog time expired.
export const SHUTDOWN_soft_reset = 5; // Domain asked to perform 'soft reset'.
export const SHUTDOWN_MAX = 5; // Maximum valid shutdown reason.
