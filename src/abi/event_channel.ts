// Event channels: xen/include/public/event_channel.h (EVTCHNOP_* sub-ops of __HYPERVISOR_event_channel_op, their structs, FIFO ABI).
import { layout } from './layout.js';

export const EVTCHNOP_bind_interdomain = 0;
export const EVTCHNOP_bind_virq = 1;
export const EVTCHNOP_bind_pirq = 2;
export const EVTCHNOP_close = 3;
export const EVTCHNOP_send = 4;
export const EVTCHNOP_status = 5;
export const EVTCHNOP_alloc_unbound = 6;
export const EVTCHNOP_bind_ipi = 7;
export const EVTCHNOP_bind_vcpu = 8;
export const EVTCHNOP_unmask = 9;
export const EVTCHNOP_reset = 10;
export const EVTCHNOP_init_control = 11;
export const EVTCHNOP_expand_array = 12;
export const EVTCHNOP_set_priority = 13;
// EVTCHNOP_reset_cont (14) is hypervisor-internal (#ifdef __XEN__).

/** EVTCHNOP_alloc_unbound: allocate a port in `dom` for later binding by `remote_dom`. */
export const evtchn_alloc_unbound = layout('evtchn_alloc_unbound', 8, {
  dom: [0, 'u16'], // IN
  remote_dom: [2, 'u16'], // IN
  port: [4, 'u32'], // OUT
});

export const evtchn_bind_interdomain = layout('evtchn_bind_interdomain', 12, {
  remote_dom: [0, 'u16'], // IN
  remote_port: [4, 'u32'], // IN
  local_port: [8, 'u32'], // OUT
});

export const evtchn_bind_virq = layout('evtchn_bind_virq', 12, {
  virq: [0, 'u32'], // IN: VIRQ_*
  vcpu: [4, 'u32'], // IN
  port: [8, 'u32'], // OUT
});

export const BIND_PIRQ__WILL_SHARE = 1;
export const evtchn_bind_pirq = layout('evtchn_bind_pirq', 12, {
  pirq: [0, 'u32'], // IN
  flags: [4, 'u32'], // IN: BIND_PIRQ__*
  port: [8, 'u32'], // OUT
});

export const evtchn_bind_ipi = layout('evtchn_bind_ipi', 8, {
  vcpu: [0, 'u32'], // IN
  port: [4, 'u32'], // OUT
});

export const evtchn_close = layout('evtchn_close', 4, {
  port: [0, 'u32'], // IN
});

export const evtchn_send = layout('evtchn_send', 4, {
  port: [0, 'u32'], // IN
});

export const EVTCHNSTAT_closed = 0; // Channel is not in use.
export const EVTCHNSTAT_unbound = 1; // Channel is waiting interdom connection.
export const EVTCHNSTAT_interdomain = 2; // Channel is connected to remote domain.
export const EVTCHNSTAT_pirq = 3; // Channel is bound to a phys IRQ line.
export const EVTCHNSTAT_virq = 4; // Channel is bound to a virtual IRQ line
export const EVTCHNSTAT_ipi = 5; // Channel is bound to a virtual IPI line

export const evtchn_status = layout('evtchn_status', 24, {
  dom: [0, 'u16'], // IN
  port: [4, 'u32'], // IN
  status: [8, 'u32'], // OUT: EVTCHNSTAT_*
  vcpu: [12, 'u32'], // OUT: VCPU to which this channel is bound.
  'u.unbound.dom': [16, 'u16'], // EVTCHNSTAT_unbound
  'u.interdomain.dom': [16, 'u16'], // EVTCHNSTAT_interdomain
  'u.interdomain.port': [20, 'u32'],
  'u.pirq': [16, 'u32'], // EVTCHNSTAT_pirq
  'u.virq': [16, 'u32'], // EVTCHNSTAT_virq
});

export const evtchn_bind_vcpu = layout('evtchn_bind_vcpu', 8, {
  port: [0, 'u32'], // IN
  vcpu: [4, 'u32'], // IN
});

export const evtchn_unmask = layout('evtchn_unmask', 4, {
  port: [0, 'u32'], // IN
});

export const evtchn_reset = layout('evtchn_reset', 2, {
  dom: [0, 'u16'], // IN
});

/** EVTCHNOP_init_control (FIFO ABI). */
export const evtchn_init_control = layout('evtchn_init_control', 24, {
  control_gfn: [0, 'u64'], // IN
  offset: [8, 'u32'], // IN
  vcpu: [12, 'u32'], // IN
  link_bits: [16, 'u8'], // OUT
});

export const evtchn_expand_array = layout('evtchn_expand_array', 8, {
  array_gfn: [0, 'u64'], // IN
});

export const evtchn_set_priority = layout('evtchn_set_priority', 8, {
  port: [0, 'u32'], // IN
  priority: [4, 'u32'], // IN
});

/** Argument of the legacy __HYPERVISOR_event_channel_op_compat: cmd + the sub-op struct in `u`. */
export const evtchn_op = layout('evtchn_op', 28, {
  cmd: [0, 'u32'], // enum event_channel_op
  u: [4, 'char', 24],
});

/** 2-level ABI: number of ports (64 words of 64 bits). */
export const EVTCHN_2L_NR_CHANNELS = 8 * 8 * 64;

// ---- FIFO-based event channel ABI ------------------------------------------------------------
export const EVTCHN_FIFO_PRIORITY_MAX = 0;
export const EVTCHN_FIFO_PRIORITY_DEFAULT = 7;
export const EVTCHN_FIFO_PRIORITY_MIN = 15;
export const EVTCHN_FIFO_MAX_QUEUES = EVTCHN_FIFO_PRIORITY_MIN + 1;
/** event_word_t bits */
export const EVTCHN_FIFO_PENDING = 31;
export const EVTCHN_FIFO_MASKED = 30;
export const EVTCHN_FIFO_LINKED = 29;
export const EVTCHN_FIFO_BUSY = 28;
export const EVTCHN_FIFO_LINK_BITS = 17;
export const EVTCHN_FIFO_LINK_MASK = (1 << EVTCHN_FIFO_LINK_BITS) - 1;
export const EVTCHN_FIFO_NR_CHANNELS = 1 << EVTCHN_FIFO_LINK_BITS;

export const evtchn_fifo_control_block = layout('evtchn_fifo_control_block', 72, {
  ready: [0, 'u32'],
  _rsvd: [4, 'u32'],
  head: [8, 'u32', EVTCHN_FIFO_MAX_QUEUES],
});
