// src/abi/: Xen's public headers (xen/include/public/) as TypeScript constants and struct layouts.
// This index re-exports nothing: import the module that mirrors the header you mean, e.g.
//   import { start_info, __HYPERVISOR_mmu_update } from '../abi/xen.js';
//   import { EVTCHNOP_bind_virq, evtchn_bind_virq } from '../abi/event_channel.js';
// Modules: layout, xen, errno, event_channel, grant_table, memory, sched, vcpu, callback, physdev,
// version, features, elfnote, console_io, arch-x86/cpuid, io/{ring, console, xs_wire, xenbus,
// blkif, netif, fbif, kbdif, protocols}.
export {};
