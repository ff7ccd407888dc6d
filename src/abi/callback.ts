// Guest callback registration: xen/include/public/callback.h (CALLBACKOP_* of __HYPERVISOR_callback_op).
import { layout } from './layout.js';

export const CALLBACKTYPE_event = 0;
export const CALLBACKTYPE_failsafe = 1;
export const CALLBACKTYPE_syscall = 2; // x86_64 only
export const CALLBACKTYPE_sysenter_deprecated = 3;
export const CALLBACKTYPE_nmi = 4;
export const CALLBACKTYPE_sysenter = 5; // x86 only
export const CALLBACKTYPE_syscall32 = 7; // x86_64 only

/** Disable event delivery during callback (flags field of callback_register). */
export const _CALLBACKF_mask_events = 0;
export const CALLBACKF_mask_events = 1 << _CALLBACKF_mask_events;

export const CALLBACKOP_register = 0;
export const callback_register = layout('callback_register', 16, {
  type: [0, 'u16'], // CALLBACKTYPE_*
  flags: [2, 'u16'], // CALLBACKF_*
  address: [8, 'u64'], // xen_callback_t: the entry point's VA
});

export const CALLBACKOP_unregister = 1;
export const callback_unregister = layout('callback_unregister', 4, {
  type: [0, 'u16'],
  _unused: [2, 'u16'],
});
