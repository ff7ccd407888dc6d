// The hypercall table: one row per __HYPERVISOR_* with its name, handler and argument names, and multicall (xen/arch/x86/pv/hypercall.c, xen/common/multicall.c).
import { XEN_EFAULT, XEN_EINVAL, XEN_ENOSYS, XEN_EPERM } from '../abi/errno.js';
import * as X from '../abi/xen.js';
import { VMASST_TYPE_4gb_segments, VMASST_TYPE_4gb_segments_notify, VMASST_TYPE_architectural_iopl, VMASST_TYPE_m2p_strict, VMASST_TYPE_pae_extended_cr3, VMASST_TYPE_runstate_update_flag, VMASST_TYPE_writable_pagetables } from '../abi/xen.js';
import { GuestFault } from '../memory/fault.js';
import { hex } from '../trace/trace.js';
import { do_console_io } from './console_io.js';
import { DescriptorTables } from './descriptor_tables.js';
import type { Domain } from './domain.js';
import { EventChannels } from './event_channel.js';
import { GrantTable } from './grant_table.js';
import { do_memory_op } from './memory.js';
import { Mm } from './mm.js';
import { do_physdev_op } from './physdev.js';
import type { Platform } from './platform.js';
import { type BlockRequest, do_sched_op } from './sched.js';
import { TimeKeeper } from './time.js';
import {
  do_callback_op, do_fpu_taskswitch, do_get_debugreg, do_set_debugreg, do_set_segment_base, do_set_trap_table, do_stack_switch,
} from './traps.js';
import type { Vcpu } from './vcpu.js';
import { do_vcpu_op } from './vcpu_op.js';
import { do_xen_version } from './xen_version.js';

export type HypercallResult = number | bigint | BlockRequest;
type Handler = (v: Vcpu, a: bigint[]) => HypercallResult;
interface Row { name: string; args: string[]; handler: Handler }

const VMASST_VALID = [VMASST_TYPE_4gb_segments, VMASST_TYPE_4gb_segments_notify, VMASST_TYPE_writable_pagetables,
  VMASST_TYPE_pae_extended_cr3, VMASST_TYPE_architectural_iopl, VMASST_TYPE_runstate_update_flag, VMASST_TYPE_m2p_strict];

/** The Xen core for one domain: all subsystems and the dispatch table. */
export class Hypervisor {
  readonly mm: Mm;
  readonly evtchn: EventChannels;
  readonly gnttab: GrantTable;
  readonly time: TimeKeeper;
  readonly desc: DescriptorTables;
  readonly uuid = new Uint8Array(16);
  private readonly table: (Row | undefined)[] = [];

  constructor(readonly d: Domain, readonly platform: Platform, tscKhz: number) {
    this.mm = new Mm(d);
    this.evtchn = new EventChannels(d);
    this.gnttab = new GrantTable(d);
    this.time = new TimeKeeper(d, platform, tscKhz);
    this.desc = new DescriptorTables(d);
    crypto.getRandomValues(this.uuid);
    const n = (x: bigint) => Number(x & 0xffffffffn);
    const row = (nr: number, name: string, args: string[], handler: Handler) => { this.table[nr] = { name, args, handler }; };
    row(X.__HYPERVISOR_set_trap_table, 'set_trap_table', ['traps'], (v, a) => do_set_trap_table(d, v, a[0]!));
    row(X.__HYPERVISOR_mmu_update, 'mmu_update', ['reqs', 'count', 'pdone', 'foreigndom'], (v, a) => this.mm.do_mmu_update(v, a[0]!, a[1]!, a[2]!, a[3]!));
    row(X.__HYPERVISOR_set_gdt, 'set_gdt', ['frame_list', 'entries'], (v, a) => this.desc.do_set_gdt(v, a[0]!, n(a[1]!)));
    row(X.__HYPERVISOR_stack_switch, 'stack_switch', ['ss', 'esp'], (v, a) => do_stack_switch(v, a[0]!, a[1]!));
    row(X.__HYPERVISOR_set_callbacks, 'set_callbacks', ['event', 'failsafe', 'syscall'], () => -XEN_ENOSYS);
    row(X.__HYPERVISOR_fpu_taskswitch, 'fpu_taskswitch', ['set'], (v, a) => do_fpu_taskswitch(v, a[0]!));
    row(X.__HYPERVISOR_platform_op, 'platform_op', ['op'], () => -XEN_EPERM);
    row(X.__HYPERVISOR_set_debugreg, 'set_debugreg', ['reg', 'value'], (v, a) => do_set_debugreg(v, a[0]!, a[1]!));
    row(X.__HYPERVISOR_get_debugreg, 'get_debugreg', ['reg'], (v, a) => do_get_debugreg(v, a[0]!));
    row(X.__HYPERVISOR_update_descriptor, 'update_descriptor', ['ma', 'desc'], (v, a) => this.desc.do_update_descriptor(v, a[0]!, a[1]!));
    row(X.__HYPERVISOR_memory_op, 'memory_op', ['cmd', 'arg'], (v, a) => do_memory_op(d, this.mm, v, n(a[0]!), a[1]!));
    row(X.__HYPERVISOR_multicall, 'multicall', ['call_list', 'nr_calls'], (v, a) => this.multicall(v, a[0]!, n(a[1]!)));
    row(X.__HYPERVISOR_update_va_mapping, 'update_va_mapping', ['va', 'val', 'flags'], (v, a) => this.mm.do_update_va_mapping(v, a[0]!, a[1]!, a[2]!));
    row(X.__HYPERVISOR_set_timer_op, 'set_timer_op', ['timeout'], (v, a) => { v.singleshotDeadline = a[0]! === 0n ? undefined : a[0]!; return 0; });
    row(X.__HYPERVISOR_xen_version, 'xen_version', ['cmd', 'arg'], (v, a) => do_xen_version(d, v, n(a[0]!), a[1]!, this.uuid));
    row(X.__HYPERVISOR_console_io, 'console_io', ['cmd', 'count', 'buffer'], (v, a) => do_console_io(d, v, n(a[0]!), n(a[1]!), a[2]!));
    row(X.__HYPERVISOR_grant_table_op, 'grant_table_op', ['cmd', 'arg', 'count'], (v, a) => this.gnttab.do_grant_table_op(v, n(a[0]!), a[1]!, n(a[2]!)));
    row(X.__HYPERVISOR_vm_assist, 'vm_assist', ['cmd', 'type'], (_v, a) => this.vmAssist(n(a[0]!), n(a[1]!)));
    row(X.__HYPERVISOR_vcpu_op, 'vcpu_op', ['cmd', 'vcpuid', 'arg'], (v, a) => do_vcpu_op(d, this.time, v, n(a[0]!), n(a[1]!), a[2]!));
    row(X.__HYPERVISOR_set_segment_base, 'set_segment_base', ['which', 'base'], (v, a) => do_set_segment_base(d, v, a[0]!, a[1]!));
    row(X.__HYPERVISOR_mmuext_op, 'mmuext_op', ['ops', 'count', 'pdone', 'foreigndom'], (v, a) => this.mm.do_mmuext_op(v, a[0]!, a[1]!, a[2]!, a[3]!));
    row(X.__HYPERVISOR_sched_op, 'sched_op', ['cmd', 'arg'], (v, a) => do_sched_op(d, this.evtchn, v, n(a[0]!), a[1]!, () => this.time.systemTime()));
    row(X.__HYPERVISOR_callback_op, 'callback_op', ['cmd', 'arg'], (v, a) => do_callback_op(d, v, a[0]!, a[1]!));
    row(X.__HYPERVISOR_event_channel_op, 'event_channel_op', ['cmd', 'arg'], (v, a) => this.evtchn.do_event_channel_op(v, n(a[0]!), a[1]!));
    row(X.__HYPERVISOR_physdev_op, 'physdev_op', ['cmd', 'arg'], (v, a) => do_physdev_op(d, v, n(a[0]!), a[1]!));
    row(X.__HYPERVISOR_xenpmu_op, 'xenpmu_op', ['op', 'arg'], () => -XEN_ENOSYS);
    row(X.__HYPERVISOR_nmi_op, 'nmi_op', ['cmd', 'arg'], () => -XEN_ENOSYS);
  }

  name(nr: number): string { return this.table[nr]?.name ?? `hypercall_${nr}`; }

  private vmAssist(cmd: number, type: number): number {
    if (!VMASST_VALID.includes(type)) return -XEN_EINVAL;
    if (cmd > 1) return -XEN_ENOSYS;
    if (cmd === 0) this.d.vmAssist |= 1n << BigInt(type); else this.d.vmAssist &= ~(1n << BigInt(type));
    return 0;
  }

  /**
   * Run hypercall `nr`. Bad guest pointers become -EFAULT; any other exception is a pvbox bug,
   * which crashes this domain (not the host) as Xen's domain_crash would.
   */
  call(v: Vcpu, nr: number, args: bigint[]): HypercallResult {
    const row = this.table[nr];
    const counters = this.d.trace.counters;
    this.d.trace.count(counters.hypercalls, row?.name ?? `#${nr}`);
    if (!row) {
      this.d.trace.count(counters.unimplemented, `hypercall ${nr}`);
      this.d.trace.warn(`hc${nr}`, `(XEN) unimplemented hypercall ${nr} (${args.slice(0, 5).map(hex).join(', ')}) -> -ENOSYS`);
      return -XEN_ENOSYS;
    }
    let r: HypercallResult;
    try {
      r = row.handler(v, args);
    } catch (e) {
      if (e instanceof GuestFault) r = -XEN_EFAULT;
      else {
        this.d.crash(`pvbox bug in ${row.name}(${args.slice(0, row.args.length).map(hex).join(', ')}): ${(e as Error).stack ?? e}`);
        r = -XEN_EINVAL;
      }
    }
    if (this.d.trace.enabled) {
      const shown = row.args.map((name, i) => `${name}=${hex(args[i]!)}`).join(' ');
      this.d.trace.log(`hypercall ${row.name}(${shown}) = ${typeof r === 'object' ? r.kind : typeof r === 'bigint' ? hex(r) : r}`);
    }
    return r;
  }

  /** multicall(call_list, nr_calls): each entry's result written back; the hypercall itself returns 0. */
  private multicall(v: Vcpu, list: bigint, nr: number): number {
    const gv = this.d.guestVirt(v);
    for (let i = 0; i < nr; i++) {
      const base = list + BigInt(i * 64);
      let e: DataView;
      try { e = gv.view(base, 64); } catch { return -XEN_EFAULT; }
      const op = Number(e.getBigUint64(0, true) & 0xffffffffn);
      if (op === X.__HYPERVISOR_multicall || op === X.__HYPERVISOR_iret) { gv.write64(base + 8n, BigInt.asUintN(64, BigInt(-XEN_EINVAL))); continue; }
      const args = [0, 1, 2, 3, 4, 5].map((k) => e.getBigUint64(16 + k * 8, true));
      let r = this.call(v, op, args);
      if (typeof r === 'object') r = 0; // a blocking sched_op inside a batch does not block
      try { gv.write64(base + 8n, BigInt.asUintN(64, BigInt(r))); } catch { return -XEN_EFAULT; }
      if (this.d.shutdownReason) break;
    }
    return 0;
  }
}
