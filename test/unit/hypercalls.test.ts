// The hypercall layer (src/hypervisor/hypercall.ts and the handlers behind it) against bad arguments, without KVM:
// every answer must be the number Xen returns (cited per check: the Xen snapshot of shared/reference/pv-abi.md,
// xen-project/xen c447b7308b13), and no input may raise a host exception out of Hypervisor.call.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  CALLBACKF_mask_events, CALLBACKOP_register, CALLBACKTYPE_event, CALLBACKTYPE_nmi, CALLBACKTYPE_sysenter_deprecated,
} from '../../src/abi/callback.js';
import { CONSOLEIO_write } from '../../src/abi/console_io.js';
import {
  XEN_EBUSY, XEN_EEXIST, XEN_EFAULT, XEN_EINVAL, XEN_ENODEV, XEN_ENOENT, XEN_ENOSYS, XEN_ENXIO, XEN_EPERM, XEN_ESRCH,
} from '../../src/abi/errno.js';
import {
  EVTCHNOP_alloc_unbound, EVTCHNOP_bind_ipi, EVTCHNOP_bind_vcpu, EVTCHNOP_bind_virq, EVTCHNOP_close, EVTCHNOP_init_control,
  EVTCHNOP_send, EVTCHNOP_status, EVTCHNSTAT_unbound, EVTCHNSTAT_virq,
} from '../../src/abi/event_channel.js';
import {
  GNTST_bad_domain, GNTST_bad_virt_addr, GNTST_general_error, GNTST_okay, GNTST_permission_denied, GNTTABOP_query_size,
  GNTTABOP_set_version, GNTTABOP_setup_table,
} from '../../src/abi/grant_table.js';
import { XENMEM_machphys_mapping, XENMEM_memory_map } from '../../src/abi/memory.js';
import { PHYSDEVOP_set_iopl } from '../../src/abi/physdev.js';
import { SCHEDOP_block, SCHEDOP_poll, SCHEDOP_shutdown, SCHEDOP_yield, SHUTDOWN_poweroff, SHUTDOWN_reboot } from '../../src/abi/sched.js';
import {
  VCPUOP_is_up, VCPUOP_register_vcpu_info, VCPUOP_set_periodic_timer, VCPUOP_set_singleshot_timer, VCPU_SSHOTTMR_future,
} from '../../src/abi/vcpu.js';
import { XENVER_extraversion, XENVER_version } from '../../src/abi/version.js';
import * as X from '../../src/abi/xen.js';
import {
  DOMID_SELF, FIRST_RESERVED_GDT_ENTRY, MMU_MACHPHYS_UPDATE, MMU_NORMAL_PT_UPDATE, MMUEXT_PIN_L1_TABLE, MMUEXT_PIN_L4_TABLE,
  MMUEXT_UNPIN_TABLE, SEGBASE_FS, SEGBASE_GS_KERNEL, VIRQ_CON_RING, VIRQ_DEBUG, VIRQ_DOM_EXC, VIRQ_TIMER,
  VMASST_TYPE_writable_pagetables,
} from '../../src/abi/xen.js';
import { Domain, type ShutdownReason } from '../../src/hypervisor/domain.js';
import { Hypervisor } from '../../src/hypervisor/hypercall.js';
import type { Platform } from '../../src/hypervisor/platform.js';
import { Vcpu } from '../../src/hypervisor/vcpu.js';
import type { Vcpu as KvmVcpu } from '../../src/kvm/kvm.js';
import { GuestMemory } from '../../src/memory/guest-memory.js';
import { HV, M2P_VIRT_START, MAX_GRANT_FRAMES, PHYSMAP_VIRT_START, planMemory } from '../../src/monitor/layout.js';
import { setupMonitor } from '../../src/monitor/setup.js';
import { _PAGE_ACCESSED, _PAGE_DIRTY, _PAGE_GUEST_KERNEL, _PAGE_PRESENT, _PAGE_RW, _PAGE_USER } from '../../src/monitor/pte.js';
import { Trace } from '../../src/trace/trace.js';

const PAGE = 4096;
const DOMID = 1;
/** Guest kernel direct map (Linux PAGE_OFFSET): VA DIRECT + x → GPA x for x < MAPPED. */
const DIRECT = 0xffff888000000000n;
const MAPPED = 1 << 20;
/** A page inside the mapping that is mapped read-only. */
const RO_GPA = 0xf0000;
/** Guest page tables (outside the mapped megabyte, as Linux's are not mapped writable either). */
const L4 = 0x200, L3 = 0x201, L2 = 0x202, L1 = 0x203;
/** Scratch argument area (GPA) and page-table frames the tests play with. */
const ARG = 0x10000, ARG2 = 0x11000, FREE_L1 = 0x300, FREE_L1B = 0x301;
const va = (gpa: number): bigint => DIRECT + BigInt(gpa);
/** Canonical, not mapped. */
const UNMAPPED = DIRECT + 0x200000n;

interface Env {
  hv: Hypervisor;
  d: Domain;
  v: Vcpu;
  mem: GuestMemory;
  log: string[];
  shutdowns: { reason: ShutdownReason; detail?: string }[];
  /** hv.call with up to 6 arguments, result as a plain number where it is one. */
  call(nr: number, ...args: (number | bigint)[]): number | bigint | object;
}

function setup(opts: { onConsoleIo?: (b: Uint8Array) => void } = {}): Env {
  const plan = planMemory(8 << 20);
  const mem = new GuestMemory(new ArrayBuffer(plan.totalBytes));
  const log: string[] = [];
  const shutdowns: Env['shutdowns'] = [];
  const d = new Domain(DOMID, 'hypercall-test', mem, plan, new Trace(false, (l) => log.push(l)), {
    onShutdown: (reason, detail) => shutdowns.push({ reason, detail }),
    onConsoleIo: opts.onConsoleIo ?? (() => {}),
  });
  const fakeKvm = {
    regs: new BigUint64Array(18),
    runView: new DataView(new ArrayBuffer(4096)),
    markDirty: () => {},
    runOnce: (): number => { throw new Error('runOnce: these tests must not need KVM'); },
  };
  const v = new Vcpu(0, fakeKvm as unknown as KvmVcpu, mem, plan.hvBase);
  d.vcpus.push(v);
  const platform: Platform = {
    cpuid: [], readHardwareMsr: () => 0n, fixupGuestCr4: (x) => x, xcr0Valid: () => true, readGuestTsc: () => 0n,
  };
  const hv = new Hypervisor(d, platform, 2_000_000);
  // 4-level tables: DIRECT + x → x for the first MiB (kernel entries, as Linux writes them before Xen adds U).
  const upper = _PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_ACCESSED | _PAGE_DIRTY;
  const slot = (x: bigint, level: number) => Number((x >> BigInt(12 + 9 * (level - 1))) & 511n);
  mem.write64(L4 * PAGE + slot(DIRECT, 4) * 8, BigInt(L3 * PAGE) | upper);
  mem.write64(L3 * PAGE + slot(DIRECT, 3) * 8, BigInt(L2 * PAGE) | upper);
  mem.write64(L2 * PAGE + slot(DIRECT, 2) * 8, BigInt(L1 * PAGE) | upper);
  for (let gpa = 0; gpa < MAPPED; gpa += PAGE) {
    const rw = gpa === RO_GPA ? 0n : _PAGE_RW;
    mem.write64(L1 * PAGE + (gpa / PAGE) * 8, BigInt(gpa) | _PAGE_PRESENT | rw | _PAGE_ACCESSED | _PAGE_DIRTY);
  }
  v.cr3 = L4; v.guestTable = L4;
  const call = (nr: number, ...args: (number | bigint)[]) => {
    const a = Array.from({ length: 6 }, (_, i) => BigInt.asUintN(64, BigInt(args[i] ?? 0)));
    const r = hv.call(v, nr, a);
    return typeof r === 'bigint' && r >= -4096n && r < 0n ? Number(r) : r;
  };
  return { hv, d, v, mem, log, shutdowns, call };
}

const rc = (r: unknown): number => {
  assert.equal(typeof r, 'number', `expected a number, got ${typeof r}`);
  return r as number;
};

describe('dispatch (xen/arch/x86/pv/hypercall.c, call_handlers_pv64 default)', () => {
  it('an unknown hypercall number is -ENOSYS and counted as unimplemented', () => {
    const e = setup();
    assert.equal(e.call(99, 1, 2, 3), -XEN_ENOSYS);
    assert.equal(e.call(48 /* __HYPERVISOR_arch_0: MCA, dom0 only */), -XEN_ENOSYS);
    assert.equal(e.d.trace.counters.unimplemented.get('hypercall 99'), 1);
    assert.equal(e.shutdowns.length, 0);
  });

  it('an internal error inside a handler crashes the domain (domain_crash) instead of escaping hv.call', () => {
    const e = setup({ onConsoleIo: () => { throw new TypeError('simulated pvbox bug'); } });
    e.mem.copyIn(ARG, new TextEncoder().encode('hello'));
    let r: unknown;
    assert.doesNotThrow(() => { r = e.call(X.__HYPERVISOR_console_io, CONSOLEIO_write, 5, va(ARG)); });
    assert.equal(typeof r, 'number');
    assert.equal(e.d.shutdownReason, 'crash');
    assert.match(e.shutdowns[0]!.detail ?? '', /pvbox bug in console_io.*simulated pvbox bug/s);
  });
});

describe('pointer arguments that do not translate are -EFAULT (copy_from_guest / copy_to_guest failing)', () => {
  const cases: [string, number, (number | bigint)[], string][] = [
    ['set_trap_table', X.__HYPERVISOR_set_trap_table, [UNMAPPED], 'pv/callback.c do_set_trap_table'],
    ['mmu_update', X.__HYPERVISOR_mmu_update, [UNMAPPED, 1, 0, DOMID_SELF], 'mm.c do_mmu_update'],
    ['mmuext_op', X.__HYPERVISOR_mmuext_op, [UNMAPPED, 1, 0, DOMID_SELF], 'mm.c do_mmuext_op'],
    ['event_channel_op send', X.__HYPERVISOR_event_channel_op, [EVTCHNOP_send, UNMAPPED], 'common/event_channel.c do_event_channel_op'],
    ['event_channel_op bind_virq', X.__HYPERVISOR_event_channel_op, [EVTCHNOP_bind_virq, UNMAPPED], 'common/event_channel.c do_event_channel_op'],
    ['vcpu_op register_vcpu_info', X.__HYPERVISOR_vcpu_op, [VCPUOP_register_vcpu_info, 0, UNMAPPED], 'common/domain.c common_vcpu_op'],
    ['memory_op memory_map', X.__HYPERVISOR_memory_op, [XENMEM_memory_map, UNMAPPED], 'arch/x86/mm.c arch_memory_op'],
    ['memory_op machphys_mapping', X.__HYPERVISOR_memory_op, [XENMEM_machphys_mapping, UNMAPPED], 'arch/x86/mm.c arch_memory_op'],
    ['grant_table_op setup_table', X.__HYPERVISOR_grant_table_op, [GNTTABOP_setup_table, UNMAPPED, 1], 'common/grant_table.c gnttab_setup_table'],
    ['xen_version extraversion', X.__HYPERVISOR_xen_version, [XENVER_extraversion, UNMAPPED], 'common/kernel.c do_xen_version'],
    ['sched_op shutdown', X.__HYPERVISOR_sched_op, [SCHEDOP_shutdown, UNMAPPED], 'common/sched/core.c do_sched_op'],
    ['sched_op poll', X.__HYPERVISOR_sched_op, [SCHEDOP_poll, UNMAPPED], 'common/sched/core.c do_sched_op'],
    ['callback_op register', X.__HYPERVISOR_callback_op, [CALLBACKOP_register, UNMAPPED], 'pv/callback.c do_callback_op'],
    ['physdev_op set_iopl', X.__HYPERVISOR_physdev_op, [PHYSDEVOP_set_iopl, UNMAPPED], 'arch/x86/physdev.c do_physdev_op'],
    ['multicall', X.__HYPERVISOR_multicall, [UNMAPPED, 1], 'common/multicall.c do_multicall'],
  ];
  for (const [name, nr, args, where] of cases) {
    it(`${name} → -EFAULT (${where})`, () => {
      const e = setup();
      assert.equal(e.call(nr, ...args), -XEN_EFAULT);
      assert.equal(e.d.shutdownReason, undefined, 'a bad pointer must not stop the domain');
    });
  }
  it('an OUT argument in a read-only page is -EFAULT too (copy_to_guest)', () => {
    const e = setup();
    assert.equal(e.call(X.__HYPERVISOR_xen_version, XENVER_extraversion, va(RO_GPA)), -XEN_EFAULT);
    assert.ok(e.mem.bytes(RO_GPA, 16).every((x) => x === 0), 'nothing written through a read-only mapping');
    assert.equal(e.call(X.__HYPERVISOR_xen_version, XENVER_extraversion, va(ARG)), 0);
  });
  it('a pointer into the hypervisor hole [0xffff800000000000, 0xffff880000000000) is -EFAULT even where the monitor maps it (uaccess.h __addr_ok / access_ok)', () => {
    const e = setup();
    e.hv.mm.monitorL4 = setupMonitor(e.mem, e.d.plan, new Uint8Array(64), 1).l4Entries;
    e.mem.write32(ARG, MMUEXT_PIN_L4_TABLE); e.mem.write64(ARG + 8, BigInt(L4));
    assert.equal(e.call(X.__HYPERVISOR_mmuext_op, va(ARG), 1, 0, DOMID_SELF), 0, 'pinning installs the monitor slots');
    const idt = e.d.plan.hvBase + HV.idt;
    const before = e.mem.bytes(idt, 16).slice();
    assert.equal(e.call(X.__HYPERVISOR_xen_version, XENVER_extraversion, PHYSMAP_VIRT_START + BigInt(idt)), -XEN_EFAULT);
    assert.deepEqual(e.mem.bytes(idt, 16), before, 'monitor IDT overwritten through a hypercall argument');
    assert.equal(e.call(X.__HYPERVISOR_event_channel_op, EVTCHNOP_send, M2P_VIRT_START), -XEN_EFAULT);
  });

  it('a non-canonical pointer is -EFAULT, not a host exception', () => {
    const e = setup();
    assert.equal(e.call(X.__HYPERVISOR_event_channel_op, EVTCHNOP_send, 0x8000000000000000n), -XEN_EFAULT);
    assert.equal(e.call(X.__HYPERVISOR_set_trap_table, 0x0000800000000000n), -XEN_EFAULT);
  });
});

describe('event_channel_op (xen/common/event_channel.c)', () => {
  const ev = (e: Env, cmd: number, gpa = ARG) => e.call(X.__HYPERVISOR_event_channel_op, cmd, va(gpa));
  const bindVirq = (e: Env, virq: number, vcpu: number) => {
    e.mem.write32(ARG, virq); e.mem.write32(ARG + 4, vcpu); e.mem.write32(ARG + 8, 0xdead);
    return ev(e, EVTCHNOP_bind_virq);
  };

  it('send to port 0 (ECS_RESERVED) and to ports ≥ 4096 (!port_is_valid) is -EINVAL (evtchn_send)', () => {
    const e = setup();
    for (const port of [0, 4096, 0x7fffffff, 0xffffffff]) {
      e.mem.write32(ARG, port);
      assert.equal(ev(e, EVTCHNOP_send), -XEN_EINVAL, `port ${port}`);
    }
  });

  it('close of port 0 or of a port never allocated is -EINVAL (evtchn_close: ECS_RESERVED / ECS_FREE)', () => {
    const e = setup();
    for (const port of [0, 100, 4095, 4096]) {
      e.mem.write32(ARG, port);
      assert.equal(ev(e, EVTCHNOP_close), -XEN_EINVAL, `port ${port}`);
    }
  });

  it('bind_virq: virq ≥ NR_VIRQS is -EINVAL, a vCPU that does not exist -ENOENT, a second bind -EEXIST (evtchn_bind_virq)', () => {
    const e = setup();
    assert.equal(bindVirq(e, 24, 0), -XEN_EINVAL);
    assert.equal(bindVirq(e, 0xffffffff, 0), -XEN_EINVAL, 'negative as int');
    assert.equal(bindVirq(e, VIRQ_TIMER, 1), -XEN_ENOENT);
    assert.equal(bindVirq(e, VIRQ_TIMER, 0), 0);
    const port = e.mem.read32(ARG + 8);
    assert.ok(port > 0 && port < 4096, `port ${port}`);
    assert.equal(bindVirq(e, VIRQ_TIMER, 0), -XEN_EEXIST);
    assert.equal(bindVirq(e, VIRQ_DEBUG, 0), 0);
    assert.notEqual(e.mem.read32(ARG + 8), port);
  });

  it('bind_virq of a global VIRQ by a domU is -EBUSY (handler is the hardware domain), with vcpu ≠ 0 -EINVAL first', () => {
    const e = setup();
    assert.equal(bindVirq(e, VIRQ_DOM_EXC, 0), -XEN_EBUSY);
    assert.equal(bindVirq(e, VIRQ_CON_RING, 0), -XEN_EBUSY);
    assert.equal(bindVirq(e, X.VIRQ_CONSOLE, 0), -XEN_EBUSY);
    assert.equal(bindVirq(e, VIRQ_DOM_EXC, 1), -XEN_EINVAL);
  });

  it('bind_ipi to a vCPU that does not exist is -ENOENT (evtchn_bind_ipi)', () => {
    const e = setup();
    e.mem.write32(ARG, 1);
    assert.equal(ev(e, EVTCHNOP_bind_ipi), -XEN_ENOENT);
  });

  it('bind_vcpu of a per-vCPU VIRQ port is -EINVAL, to a vCPU that does not exist -ENOENT (evtchn_bind_vcpu)', () => {
    const e = setup();
    assert.equal(bindVirq(e, VIRQ_TIMER, 0), 0);
    const port = e.mem.read32(ARG + 8);
    e.mem.write32(ARG2, port); e.mem.write32(ARG2 + 4, 0);
    assert.equal(ev(e, EVTCHNOP_bind_vcpu, ARG2), -XEN_EINVAL);
    e.mem.write32(ARG2 + 4, 3);
    assert.equal(ev(e, EVTCHNOP_bind_vcpu, ARG2), -XEN_ENOENT);
  });

  it('alloc_unbound in another existing domain is -EPERM (XSM_TARGET, xsm/dummy.h)', () => {
    const e = setup();
    e.mem.write16(ARG, 0); e.mem.write16(ARG + 2, 0);
    assert.equal(ev(e, EVTCHNOP_alloc_unbound), -XEN_EPERM);
  });

  it('alloc_unbound in a domain that does not exist is -ESRCH; an unknown remote_dom is not checked (evtchn_alloc_unbound)', () => {
    const e = setup();
    e.mem.write16(ARG, 5); e.mem.write16(ARG + 2, 0);
    assert.equal(ev(e, EVTCHNOP_alloc_unbound), -XEN_ESRCH);
    e.mem.write16(ARG, DOMID_SELF); e.mem.write16(ARG + 2, 5);
    assert.equal(ev(e, EVTCHNOP_alloc_unbound), 0);
  });

  it('alloc_unbound for DOMID_SELF allocates a port that status reports as unbound to remote_dom', () => {
    const e = setup();
    e.mem.write16(ARG, DOMID_SELF); e.mem.write16(ARG + 2, 0);
    assert.equal(ev(e, EVTCHNOP_alloc_unbound), 0);
    const port = e.mem.read32(ARG + 4);
    assert.ok(port > 0);
    e.mem.write16(ARG2, DOMID_SELF); e.mem.write32(ARG2 + 4, port);
    assert.equal(ev(e, EVTCHNOP_status, ARG2), 0);
    assert.equal(e.mem.read32(ARG2 + 8), EVTCHNSTAT_unbound);
    assert.equal(e.mem.read16(ARG2 + 16), 0);
    // Sending on an unbound port is silently dropped (evtchn_send ECS_UNBOUND).
    e.mem.write32(ARG, port);
    assert.equal(ev(e, EVTCHNOP_send), 0);
  });

  it('status of a domain that does not exist is -ESRCH (evtchn_status)', () => {
    const e = setup();
    e.mem.write16(ARG, 5); e.mem.write32(ARG + 4, 1);
    assert.equal(ev(e, EVTCHNOP_status), -XEN_ESRCH);
  });

  it('status of another existing domain (Domain-0) is -EPERM (xsm_evtchn_status XSM_TARGET)', () => {
    const e = setup();
    e.mem.write16(ARG, 0); e.mem.write32(ARG + 4, 1);
    assert.equal(ev(e, EVTCHNOP_status), -XEN_EPERM);
  });

  it('init_control is -ENOSYS: FIFO is not offered, Linux falls back to 2-level (QEMU target/i386/kvm/xen-emu.c; Linux events_base.c xen_init_IRQ)', () => {
    const e = setup();
    assert.equal(ev(e, EVTCHNOP_init_control), -XEN_ENOSYS);
    assert.equal(e.call(X.__HYPERVISOR_event_channel_op, 99, va(ARG)), -XEN_ENOSYS, 'unknown sub-op (do_event_channel_op default)');
  });

  it('bind_virq, then the VIRQ: pending bit, selector bit and evtchn_upcall_pending set (event_2l.c evtchn_2l_set_pending)', () => {
    const e = setup();
    assert.equal(bindVirq(e, VIRQ_TIMER, 0), 0);
    const port = e.mem.read32(ARG + 8);
    e.mem.write32(ARG2, 0); e.mem.write16(ARG2, DOMID_SELF); e.mem.write32(ARG2 + 4, port);
    assert.equal(ev(e, EVTCHNOP_status, ARG2), 0);
    assert.equal(e.mem.read32(ARG2 + 8), EVTCHNSTAT_virq);
    assert.equal(e.mem.read32(ARG2 + 16), VIRQ_TIMER);
    const si = e.d.sharedInfoGpa;
    const word = (port >> 6) * 8, bit = BigInt(port & 63);
    assert.equal((e.mem.read64(si + 0x800 + word) >> bit) & 1n, 0n);
    assert.equal(e.mem.read8(e.v.vcpuInfoGpa), 0);
    e.hv.evtchn.sendVirq(VIRQ_TIMER, 0);
    assert.equal((e.mem.read64(si + 0x800 + word) >> bit) & 1n, 1n, 'evtchn_pending bit');
    assert.equal((e.mem.read64(e.v.vcpuInfoGpa + 8) >> BigInt(port >> 6)) & 1n, 1n, 'evtchn_pending_sel bit');
    assert.equal(e.mem.read8(e.v.vcpuInfoGpa), 1, 'evtchn_upcall_pending');
  });

  it('a masked port becomes pending without an upcall', () => {
    const e = setup();
    assert.equal(bindVirq(e, VIRQ_TIMER, 0), 0);
    const port = e.mem.read32(ARG + 8);
    const si = e.d.sharedInfoGpa;
    e.mem.write64(si + 0xa00 + (port >> 6) * 8, 1n << BigInt(port & 63));
    e.hv.evtchn.sendVirq(VIRQ_TIMER, 0);
    assert.equal((e.mem.read64(si + 0x800 + (port >> 6) * 8) >> BigInt(port & 63)) & 1n, 1n);
    assert.equal(e.mem.read8(e.v.vcpuInfoGpa), 0);
    assert.equal(e.mem.read64(e.v.vcpuInfoGpa + 8), 0n);
  });

  it('send on an IPI port makes it pending (evtchn_send ECS_IPI)', () => {
    const e = setup();
    e.mem.write32(ARG, 0);
    assert.equal(ev(e, EVTCHNOP_bind_ipi), 0);
    const port = e.mem.read32(ARG + 4);
    e.mem.write32(ARG2, port);
    assert.equal(ev(e, EVTCHNOP_send, ARG2), 0);
    assert.ok(e.hv.evtchn.isPending(port));
    assert.equal(e.mem.read8(e.v.vcpuInfoGpa), 1);
  });
});

describe('vcpu_op (xen/arch/x86/domain.c do_vcpu_op, xen/common/domain.c common_vcpu_op, map_guest_area)', () => {
  const vop = (e: Env, cmd: number, vcpu: number, gpa = ARG) => e.call(X.__HYPERVISOR_vcpu_op, cmd, vcpu, va(gpa));
  const regInfo = (e: Env, mfn: number | bigint, offset: number) => {
    e.mem.write64(ARG, BigInt(mfn)); e.mem.write32(ARG + 8, offset);
    return vop(e, VCPUOP_register_vcpu_info, 0);
  };

  it('a vcpuid that does not exist is -ENOENT (domain_vcpu() == NULL), whatever the command', () => {
    const e = setup();
    for (const cmd of [VCPUOP_is_up, VCPUOP_register_vcpu_info, VCPUOP_set_singleshot_timer, 99]) {
      assert.equal(vop(e, cmd, 5), -XEN_ENOENT, `cmd ${cmd}`);
      assert.equal(vop(e, cmd, 0xffffffff), -XEN_ENOENT, `cmd ${cmd}, vcpuid -1`);
    }
    assert.equal(vop(e, VCPUOP_is_up, 0), 1);
  });

  it('register_vcpu_info: offset past the page -EINVAL, area crossing the page or misaligned -ENXIO, non-RAM frame -EINVAL', () => {
    const e = setup();
    assert.equal(regInfo(e, 0x50, 4096), -XEN_EINVAL, 'gaddr_to_gfn(gaddr) != info.mfn');
    assert.equal(regInfo(e, 0x50, 4090), -XEN_ENXIO, 'map_guest_area: PFN_DOWN(gaddr + size - 1) != gfn');
    assert.equal(regInfo(e, 0x50, 4), -XEN_ENXIO, 'map_guest_area: !IS_ALIGNED(gaddr, alignof(xen_ulong_t))');
    assert.equal(regInfo(e, e.d.plan.nrPages + 3, 0), -XEN_EINVAL, 'check_get_page_from_gfn fails');
    assert.equal(regInfo(e, e.d.sharedInfoMfn, 0), -XEN_EINVAL, 'a Xen-owned frame is not the guest\'s RAM');
    assert.equal(e.v.vcpuInfoRegistered, false);
  });

  it('register_vcpu_info moves vcpu_info, flags everything pending, and a second registration is -EBUSY', () => {
    const e = setup();
    e.mem.write8(e.v.vcpuInfoGpa + 1, 1); // evtchn_upcall_mask
    e.mem.write64(e.v.vcpuInfoGpa + 0x10, 0x1234n); // arch.cr2
    assert.equal(regInfo(e, 0x50, 0x40), 0);
    const gpa = 0x50 * PAGE + 0x40;
    assert.equal(e.v.vcpuInfoGpa, gpa);
    assert.equal(e.mem.read8(gpa + 1), 1, 'contents copied (vcpu_info_populate)');
    assert.equal(e.mem.read64(gpa + 0x10), 0x1234n);
    assert.equal(e.mem.read64(gpa + 8), 0xffffffffffffffffn, 'evtchn_pending_sel = ~0');
    assert.equal(e.mem.read8(gpa), 1, 'evtchn_upcall_pending (vcpu_mark_events_pending)');
    assert.equal(regInfo(e, 0x51, 0), -XEN_EBUSY, 'no re-registration of the vCPU info area');
    assert.equal(e.v.vcpuInfoGpa, gpa);
  });

  it('set_singleshot_timer in the past with VCPU_SSHOTTMR_future succeeds and fires (flag ignored since Xen 4.18, commit 19c6cbd909)', () => {
    const e = setup();
    const start = process.hrtime.bigint();
    while (process.hrtime.bigint() - start < 1_000_000n) { /* let guest time pass 1 ms */ }
    e.mem.write64(ARG, 1n); e.mem.write32(ARG + 8, VCPU_SSHOTTMR_future);
    assert.equal(vop(e, VCPUOP_set_singleshot_timer, 0), 0);
    assert.ok(e.v.singleshotDeadline !== undefined && e.v.singleshotDeadline <= e.hv.time.systemTime(), 'expired timer is due now');
  });

  it('set_periodic_timer below 1 ms is -EINVAL', () => {
    const e = setup();
    e.mem.write64(ARG, 999_999n);
    assert.equal(vop(e, VCPUOP_set_periodic_timer, 0), -XEN_EINVAL);
    e.mem.write64(ARG, 1_000_000n);
    assert.equal(vop(e, VCPUOP_set_periodic_timer, 0), 0);
  });
});

describe('PV MMU: mmu_update / mmuext_op (xen/arch/x86/mm.c)', () => {
  const ma = (gpa: number) => BigInt(gpa);
  const mmuUpdate = (e: Env, ptr: bigint, val: bigint, foreigndom: number = DOMID_SELF) => {
    e.mem.write64(ARG, ptr); e.mem.write64(ARG + 8, val);
    e.mem.write32(ARG2, 0xdead);
    return e.call(X.__HYPERVISOR_mmu_update, va(ARG), 1, va(ARG2), foreigndom);
  };
  const mmuext = (e: Env, cmd: number, arg1: number | bigint, foreigndom: number = DOMID_SELF) => {
    e.mem.write32(ARG, cmd); e.mem.write64(ARG + 8, BigInt(arg1)); e.mem.write64(ARG + 16, 0n);
    return e.call(X.__HYPERVISOR_mmuext_op, va(ARG), 1, 0, foreigndom);
  };

  it('a machine address outside RAM is -EINVAL (get_page_from_gfn fails)', () => {
    const e = setup();
    assert.equal(mmuUpdate(e, ma((e.d.plan.nrPages + 5) * PAGE), 0n), -XEN_EINVAL);
    assert.equal(mmuUpdate(e, ma(e.d.sharedInfoGpa), 0n), -XEN_EINVAL, 'Xen-owned frame');
    assert.equal(mmuUpdate(e, ma(e.d.sharedInfoGpa) | BigInt(MMU_MACHPHYS_UPDATE), 0n), -XEN_EINVAL, 'MACHPHYS_UPDATE: get_page_from_mfn fails');
    assert.equal(e.mem.read32(ARG2), 0, '*pdone = requests done');
  });

  it('the command is ptr & 7: a 4-byte-misaligned ptr is an unknown command, -ENOSYS (cmd = req.ptr & (sizeof(l1_pgentry_t)-1))', () => {
    const e = setup();
    const m2p = e.d.plan.m2pBase + 0x40 * 8;
    const before = e.mem.read64(m2p);
    assert.equal(mmuUpdate(e, ma(0x40 * PAGE) | 4n, 0x1234n), -XEN_ENOSYS);
    assert.equal(mmuUpdate(e, ma(0x40 * PAGE) | 5n, 0x1234n), -XEN_ENOSYS, 'not MMU_MACHPHYS_UPDATE');
    assert.equal(mmuUpdate(e, ma(0x40 * PAGE) | 7n, 0x1234n), -XEN_ENOSYS);
    assert.equal(e.mem.read64(m2p), before, 'M2P untouched');
    assert.equal(e.mem.read64(0x40 * PAGE), 0n, 'page untouched');
  });

  it('foreigndom of a domain that does not exist is -ESRCH (get_pg_owner)', () => {
    const e = setup();
    assert.equal(mmuUpdate(e, ma(0x40 * PAGE), 0n, 5), -XEN_ESRCH);
    assert.equal(mmuext(e, MMUEXT_PIN_L1_TABLE, FREE_L1, 5), -XEN_ESRCH);
  });

  it('foreigndom naming the caller itself is -ESRCH too ("Cannot specify itself as foreign domain", page_alloc.c get_pg_owner)', () => {
    const e = setup();
    assert.equal(mmuUpdate(e, ma(0x40 * PAGE), 0n, DOMID), -XEN_ESRCH);
    assert.equal(mmuext(e, MMUEXT_PIN_L1_TABLE, FREE_L1, DOMID), -XEN_ESRCH);
  });

  it('MMU_MACHPHYS_UPDATE sets the M2P entry; a plain update of a non-table page is a plain write', () => {
    const e = setup();
    assert.equal(mmuUpdate(e, ma(0x40 * PAGE + 0x120) | BigInt(MMU_MACHPHYS_UPDATE), 0x77n), 0);
    assert.equal(e.mem.read64(e.d.plan.m2pBase + 0x40 * 8), 0x77n);
    assert.equal(e.mem.read32(ARG2), 1);
    assert.equal(mmuUpdate(e, ma(0x41 * PAGE + 8) | BigInt(MMU_NORMAL_PT_UPDATE), 0xabcdn), 0);
    assert.equal(e.mem.read64(0x41 * PAGE + 8), 0xabcdn);
  });

  it('pin of a non-RAM frame, a second pin, and unpin of an unpinned frame are -EINVAL (do_mmuext_op)', () => {
    const e = setup();
    assert.equal(mmuext(e, MMUEXT_PIN_L1_TABLE, e.d.plan.nrPages + 7), -XEN_EINVAL);
    assert.equal(mmuext(e, MMUEXT_PIN_L4_TABLE, e.d.sharedInfoMfn), -XEN_EINVAL);
    assert.equal(mmuext(e, MMUEXT_UNPIN_TABLE, FREE_L1), -XEN_EINVAL);
    assert.equal(mmuext(e, MMUEXT_PIN_L1_TABLE, FREE_L1), 0);
    assert.equal(mmuext(e, MMUEXT_PIN_L1_TABLE, FREE_L1), -XEN_EINVAL, 'already pinned');
    assert.equal(mmuext(e, MMUEXT_UNPIN_TABLE, FREE_L1), 0);
    assert.equal(mmuext(e, MMUEXT_UNPIN_TABLE, FREE_L1), -XEN_EINVAL, 'not pinned');
    assert.equal(mmuext(e, 99, 0), -XEN_ENOSYS, 'unknown command');
  });

  it('an L4 update in the hypervisor slots 256–271 is -EINVAL (mod_l4_entry: !is_guest_l4_slot)', () => {
    const e = setup();
    assert.equal(mmuext(e, MMUEXT_PIN_L4_TABLE, L4), 0);
    const upper = _PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_ACCESSED;
    for (const slot of [256, 257, 263, 271]) {
      assert.equal(mmuUpdate(e, ma(L4 * PAGE + slot * 8), 0n), -XEN_EINVAL, `clear slot ${slot}`);
      assert.equal(mmuUpdate(e, ma(L4 * PAGE + slot * 8), BigInt(FREE_L1B * PAGE) | upper), -XEN_EINVAL, `set slot ${slot}`);
    }
    assert.equal(mmuUpdate(e, ma(L4 * PAGE + 255 * 8), 0n), 0, 'slot 255 is the guest\'s');
    assert.equal(mmuUpdate(e, ma(L4 * PAGE + 272 * 8), 0n), 0, 'slot 272 is the guest\'s');
  });

  it('a freshly zeroed L1 pins; a present kernel entry written into it gets _PAGE_USER|_PAGE_GUEST_KERNEL (pv/mm.h adjust_guest_l1e)', () => {
    const e = setup();
    assert.equal(mmuext(e, MMUEXT_PIN_L1_TABLE, FREE_L1), 0);
    const kernelPte = BigInt(0x42 * PAGE) | _PAGE_PRESENT | _PAGE_RW | _PAGE_ACCESSED;
    assert.equal(mmuUpdate(e, ma(FREE_L1 * PAGE + 5 * 8), kernelPte), 0);
    assert.equal(e.v.readPte(FREE_L1 * PAGE + 5 * 8), kernelPte | _PAGE_USER | _PAGE_GUEST_KERNEL);
    const userPte = BigInt(0x43 * PAGE) | _PAGE_PRESENT | _PAGE_USER;
    assert.equal(mmuUpdate(e, ma(FREE_L1 * PAGE + 6 * 8), userPte), 0);
    assert.equal(e.v.readPte(FREE_L1 * PAGE + 6 * 8) & (_PAGE_USER | _PAGE_GUEST_KERNEL), _PAGE_USER, 'a user mapping is not marked kernel');
    assert.equal(mmuUpdate(e, ma(FREE_L1 * PAGE + 7 * 8), 0x2n), 0, 'non-present entries are not adjusted');
    assert.equal(e.v.readPte(FREE_L1 * PAGE + 7 * 8), 0x2n);
    assert.equal(mmuUpdate(e, ma(FREE_L1 * PAGE + 8 * 8), BigInt(e.d.plan.m2pBase) | _PAGE_PRESENT), -XEN_EINVAL, 'L1 entry mapping a frame the guest does not own (get_page_from_l1e)');
  });
});

describe('CPU-state hypercalls (xen/arch/x86/pv/misc-hypercalls.c, pv/callback.c, common/domain.c)', () => {
  it('set_segment_base with a non-canonical base or an unknown selector is -EINVAL (do_set_segment_base)', () => {
    const e = setup();
    assert.equal(e.call(X.__HYPERVISOR_set_segment_base, SEGBASE_FS, 0x0000800000000000n), -XEN_EINVAL);
    assert.equal(e.call(X.__HYPERVISOR_set_segment_base, SEGBASE_GS_KERNEL, 0xffff7fffffffffffn), -XEN_EINVAL);
    assert.equal(e.call(X.__HYPERVISOR_set_segment_base, 4, 0), -XEN_EINVAL);
    assert.equal(e.call(X.__HYPERVISOR_set_segment_base, SEGBASE_FS, 0x7fff12340000n), 0);
  });

  it('stack_switch records the kernel stack and returns 0', () => {
    const e = setup();
    assert.equal(e.call(X.__HYPERVISOR_stack_switch, 0xe02b, 0xffffc90000123ff8n), 0);
    assert.equal(e.v.kernelSp, 0xffffc90000123ff8n);
  });

  it('set_debugreg / get_debugreg: no such register is -ENODEV, reserved DR7 bits -EINVAL, non-canonical DR0 -EPERM (set_debugreg)', () => {
    const e = setup();
    assert.equal(e.call(X.__HYPERVISOR_set_debugreg, 9, 0), -XEN_ENODEV);
    assert.equal(e.call(X.__HYPERVISOR_get_debugreg, 9), -XEN_ENODEV);
    assert.equal(e.call(X.__HYPERVISOR_set_debugreg, 7, 0x100000400n), -XEN_EINVAL);
    assert.equal(e.call(X.__HYPERVISOR_set_debugreg, 0, 0x0000800000000000n), -XEN_EPERM);
    assert.equal(e.call(X.__HYPERVISOR_set_debugreg, 0, 0x401000n), 0);
    assert.equal(e.call(X.__HYPERVISOR_get_debugreg, 0), 0x401000n);
  });

  it('callback_op: unknown callback type or command is -ENOSYS, non-canonical address -EINVAL (register_guest_callback, do_callback_op)', () => {
    const e = setup();
    const reg = (type: number, address: bigint) => {
      e.mem.write16(ARG, type); e.mem.write16(ARG + 2, CALLBACKF_mask_events); e.mem.write64(ARG + 8, address);
      return e.call(X.__HYPERVISOR_callback_op, CALLBACKOP_register, va(ARG));
    };
    assert.equal(reg(99, 0xffffffff81000000n), -XEN_ENOSYS);
    assert.equal(reg(CALLBACKTYPE_sysenter_deprecated, 0xffffffff81000000n), -XEN_ENOSYS);
    assert.equal(reg(CALLBACKTYPE_event, 0x0000800000000000n), -XEN_EINVAL);
    assert.equal(e.call(X.__HYPERVISOR_callback_op, 7, va(ARG)), -XEN_ENOSYS);
    assert.equal(reg(CALLBACKTYPE_event, 0xffffffff81000000n), 0);
    assert.equal(e.v.eventCallback, 0xffffffff81000000n);
    assert.equal(reg(CALLBACKTYPE_nmi, 0xffffffff81000040n), 0);
  });

  it('vm_assist: an invalid type is -EINVAL, a valid type with an unknown command -ENOSYS (do_vm_assist)', () => {
    const e = setup();
    for (const type of [6, 31, 33, 64]) assert.equal(e.call(X.__HYPERVISOR_vm_assist, 0, type), -XEN_EINVAL, `type ${type}`);
    assert.equal(e.call(X.__HYPERVISOR_vm_assist, 2, VMASST_TYPE_writable_pagetables), -XEN_ENOSYS);
    assert.equal(e.call(X.__HYPERVISOR_vm_assist, 0, VMASST_TYPE_writable_pagetables), 0);
    assert.equal(e.d.vmAssist, 1n << BigInt(VMASST_TYPE_writable_pagetables));
  });

  it('set_gdt with more entries than the guest part of the GDT is -EINVAL (do_set_gdt)', () => {
    const e = setup();
    assert.equal(e.call(X.__HYPERVISOR_set_gdt, va(ARG), FIRST_RESERVED_GDT_ENTRY + 1), -XEN_EINVAL);
  });
});

describe('grant_table_op (xen/common/grant_table.c)', () => {
  const setupTable = (e: Env, dom: number, nr: number, list: bigint) => {
    e.mem.write16(ARG, dom); e.mem.write32(ARG + 4, nr); e.mem.write16(ARG + 8, 0x5555); e.mem.write64(ARG + 16, list);
    const r = e.call(X.__HYPERVISOR_grant_table_op, GNTTABOP_setup_table, va(ARG), 1);
    return { rc: r, status: e.mem.dv.getInt16(ARG + 8, true) };
  };

  it('setup_table for a domain that does not exist writes GNTST_bad_domain back and returns 0', () => {
    const e = setup();
    assert.deepEqual(setupTable(e, 5, 1, va(ARG2)), { rc: 0, status: GNTST_bad_domain });
  });

  it('setup_table for another existing domain writes GNTST_permission_denied (xsm_grant_setup XSM_TARGET)', () => {
    const e = setup();
    assert.deepEqual(setupTable(e, 0, 1, va(ARG2)), { rc: 0, status: GNTST_permission_denied });
  });

  it('setup_table beyond max_grant_frames is GNTST_general_error', () => {
    const e = setup();
    assert.deepEqual(setupTable(e, DOMID_SELF, MAX_GRANT_FRAMES + 1, va(ARG2)), { rc: 0, status: GNTST_general_error });
  });

  it('setup_table into an unmapped frame_list is GNTST_bad_virt_addr, not an error return', () => {
    const e = setup();
    assert.deepEqual(setupTable(e, DOMID_SELF, 2, UNMAPPED), { rc: 0, status: GNTST_bad_virt_addr });
  });

  it('setup_table with count ≠ 1 is -EINVAL', () => {
    const e = setup();
    assert.equal(e.call(X.__HYPERVISOR_grant_table_op, GNTTABOP_setup_table, va(ARG), 2), -XEN_EINVAL);
  });

  it('setup_table grows the table and returns its frames; query_size reports nr_frames / max_nr_frames', () => {
    const e = setup();
    assert.deepEqual(setupTable(e, DOMID_SELF, 4, va(ARG2)), { rc: 0, status: GNTST_okay });
    const first = (e.d.plan.hvBase + HV.grantFrames) / PAGE;
    for (let i = 0; i < 4; i++) assert.equal(e.mem.read64(ARG2 + i * 8), BigInt(first + i));
    e.mem.fill(ARG, 16, 0xee); e.mem.write16(ARG, DOMID_SELF);
    assert.equal(e.call(X.__HYPERVISOR_grant_table_op, GNTTABOP_query_size, va(ARG), 1), 0);
    assert.equal(e.mem.read32(ARG + 4), 4);
    assert.equal(e.mem.read32(ARG + 8), MAX_GRANT_FRAMES);
    assert.equal(e.mem.dv.getInt16(ARG + 12, true), GNTST_okay);
  });

  it('set_version 2 is -ENOSYS with version 1 written back (gnttab_set_version, max_version 1); 3 is -EINVAL', () => {
    const e = setup();
    e.mem.write32(ARG, 2);
    assert.equal(e.call(X.__HYPERVISOR_grant_table_op, GNTTABOP_set_version, va(ARG), 1), -XEN_ENOSYS);
    assert.equal(e.mem.read32(ARG), 1);
    e.mem.write32(ARG, 3);
    assert.equal(e.call(X.__HYPERVISOR_grant_table_op, GNTTABOP_set_version, va(ARG), 1), -XEN_EINVAL);
    assert.equal(e.mem.read32(ARG), 1);
    assert.equal(e.call(X.__HYPERVISOR_grant_table_op, GNTTABOP_set_version, va(ARG), 1), 0);
  });
});

describe('sched_op (xen/common/sched/core.c do_sched_op, do_poll; xen/common/domain.c domain_shutdown)', () => {
  const sched = (e: Env, cmd: number, gpa = ARG) => e.call(X.__HYPERVISOR_sched_op, cmd, va(gpa));

  it('poll with more than 128 ports is -EINVAL; a port that is not valid -EINVAL (evtchn_port_poll)', () => {
    const e = setup();
    e.mem.write32(ARG, 0);
    assert.equal(e.call(X.__HYPERVISOR_event_channel_op, EVTCHNOP_bind_ipi, va(ARG)), 0);
    const port = e.mem.read32(ARG + 4);
    for (let i = 0; i < 200; i++) e.mem.write32(ARG2 + i * 4, port); // a bound port: only the count is wrong
    e.mem.write64(ARG, va(ARG2)); e.mem.write32(ARG + 8, 200); e.mem.write64(ARG + 16, 0n);
    assert.equal(sched(e, SCHEDOP_poll), -XEN_EINVAL);
    e.mem.write32(ARG + 8, 128);
    assert.notEqual(sched(e, SCHEDOP_poll), -XEN_EINVAL, '128 ports are allowed');
    e.mem.write32(ARG + 8, 1); e.mem.write32(ARG2, 4096);
    assert.equal(sched(e, SCHEDOP_poll), -XEN_EINVAL);
  });

  it('poll of a port that is not bound is -EINVAL (evtchn_port_poll: !evtchn_usable)', () => {
    const e = setup();
    e.mem.write64(ARG, va(ARG2)); e.mem.write32(ARG + 8, 1); e.mem.write64(ARG + 16, 0n); e.mem.write32(ARG2, 100);
    assert.equal(sched(e, SCHEDOP_poll), -XEN_EINVAL);
  });

  it('poll returns at once when a listed port is pending', () => {
    const e = setup();
    e.mem.write32(ARG, 0);
    assert.equal(e.call(X.__HYPERVISOR_event_channel_op, EVTCHNOP_bind_ipi, va(ARG)), 0);
    const port = e.mem.read32(ARG + 4);
    e.hv.evtchn.setPending(port);
    e.mem.write64(ARG, va(ARG2)); e.mem.write32(ARG + 8, 1); e.mem.write64(ARG + 16, 0n); e.mem.write32(ARG2, port);
    assert.equal(sched(e, SCHEDOP_poll), 0);
  });

  it('shutdown poweroff / reboot stop the domain with that reason', () => {
    for (const [reason, name] of [[SHUTDOWN_poweroff, 'poweroff'], [SHUTDOWN_reboot, 'reboot']] as const) {
      const e = setup();
      e.mem.write32(ARG, reason);
      assert.equal(sched(e, SCHEDOP_shutdown), 0);
      assert.equal(e.d.shutdownReason, name);
    }
  });

  it('shutdown with an unknown reason is not refused: Xen shuts the domain down with it ((u8) reason, no check in domain_shutdown)', () => {
    const e = setup();
    e.mem.write32(ARG, 99);
    assert.equal(sched(e, SCHEDOP_shutdown), 0);
    assert.notEqual(e.d.shutdownReason, undefined);
  });

  it('yield is 0; block with an event pending returns 0 and unmasks events (vcpu_block_enable_events)', () => {
    const e = setup();
    assert.equal(sched(e, SCHEDOP_yield), 0);
    e.mem.write8(e.v.vcpuInfoGpa + 1, 1);
    e.mem.write8(e.v.vcpuInfoGpa, 1);
    assert.equal(sched(e, SCHEDOP_block), 0);
    assert.equal(e.mem.read8(e.v.vcpuInfoGpa + 1), 0);
    assert.equal(sched(e, 99), -XEN_ENOSYS, 'unknown command');
  });
});

describe('memory_op (xen/common/memory.c do_memory_op, xen/arch/x86/mm.c arch_memory_op)', () => {
  it('an unknown sub-op is -ENOSYS', () => {
    const e = setup();
    assert.equal(e.call(X.__HYPERVISOR_memory_op, 50, va(ARG)), -XEN_ENOSYS);
    assert.equal(e.call(X.__HYPERVISOR_memory_op, 63, va(ARG)), -XEN_ENOSYS);
  });

  it('XENMEM_memory_map returns one RAM entry covering nr_pages', () => {
    const e = setup();
    e.mem.write32(ARG, 8); e.mem.write64(ARG + 8, va(ARG2));
    assert.equal(e.call(X.__HYPERVISOR_memory_op, XENMEM_memory_map, va(ARG)), 0);
    assert.equal(e.mem.read32(ARG), 1);
    assert.equal(e.mem.read64(ARG2), 0n);
    assert.equal(e.mem.read64(ARG2 + 8), BigInt(e.d.nrPages * PAGE));
    assert.equal(e.mem.read32(ARG2 + 16), 1, 'E820_RAM');
  });

  it('XENMEM_memory_map with room for no entry returns 0 and nr_entries 0 (min(map.nr_entries, nr_e820))', () => {
    const e = setup();
    e.mem.write32(ARG, 0); e.mem.write64(ARG + 8, va(ARG2));
    assert.equal(e.call(X.__HYPERVISOR_memory_op, XENMEM_memory_map, va(ARG)), 0);
    assert.equal(e.mem.read32(ARG), 0);
  });

  it('XENMEM_machphys_mapping returns the M2P range and a max_mfn inside it', () => {
    const e = setup();
    assert.equal(e.call(X.__HYPERVISOR_memory_op, XENMEM_machphys_mapping, va(ARG)), 0);
    const vStart = e.mem.read64(ARG), vEnd = e.mem.read64(ARG + 8), maxMfn = e.mem.read64(ARG + 16);
    assert.equal(vStart, M2P_VIRT_START);
    assert.equal(vEnd, M2P_VIRT_START + BigInt(e.d.plan.m2pBytes));
    assert.equal(maxMfn, BigInt(e.d.plan.maxMfn));
    assert.ok(maxMfn < (vEnd - vStart) / 8n, 'every mfn up to max_mfn has an M2P slot');
    assert.ok(maxMfn >= BigInt(e.d.nrPages - 1));
  });
});

describe('xen_version (xen/common/kernel.c)', () => {
  it('XENVER_version is major << 16 | minor; extraversion is a NUL-terminated string', () => {
    const e = setup();
    const r = rc(e.call(X.__HYPERVISOR_xen_version, XENVER_version, 0));
    assert.ok(r >> 16 >= 4);
    assert.equal(e.call(X.__HYPERVISOR_xen_version, XENVER_extraversion, va(ARG)), 0);
    assert.ok(e.mem.bytes(ARG, 16).includes(0));
  });
});
