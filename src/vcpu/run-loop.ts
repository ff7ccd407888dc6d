// The vCPU run loop: KVM_RUN, one switch on the exit, the monitor's exit protocol decoded into a hypercall or a trap, then resume (kvmtool kvm-cpu.c; Xen x86_64/entry.S for what happens on each path).
import { EXIT_REASON_NAMES, KVM_EXIT_INTR, KVM_EXIT_IO, R, REG_NAMES, RUN_io } from '../kvm/kvm.js';
import { HV, HV_VIRT_START, MONITOR, hvVirt, PORT_CONTINUE, PORT_SYSCALL, PORT_SYSCALL32, PORT_SYSENTER, PORT_TRAP } from '../monitor/layout.js';
import { RUNSTATE_blocked, RUNSTATE_running } from '../abi/vcpu.js';
import { VIRQ_TIMER } from '../abi/xen.js';
import { emulateForcedInvalidOp, emulatePrivilegedOp } from '../hypervisor/emulate.js';
import type { Hypervisor } from '../hypervisor/hypercall.js';
import type { BlockRequest } from '../hypervisor/sched.js';
import {
  createBounceFrame, deliverPendingEvents, do_iret, FLAT_KERNEL_CS, HAVE_EC, FLAT_KERNEL_SS, FLAT_USER_CS32, injectTrap, TRAP_NAMES, upcallMask, upcallPending,
} from '../hypervisor/traps.js';
import { type Vcpu, X86_EFLAGS_DF, X86_EFLAGS_IF, X86_EFLAGS_IOPL, X86_EFLAGS_MBS, X86_EFLAGS_TF } from '../hypervisor/vcpu.js';
import { hex } from '../trace/trace.js';
import type { Kicker } from './kick.js';

export interface HostInputs {
  /** Records other threads pushed into the input ring (console input, completions…), delivered; true if there were any. Writers kick this thread. */
  takeInput(): boolean;
  /** Device work found by looking, not by a record (rings polled at exits); true if anything moved. */
  pollDevices(): boolean;
  /** Sleep until host work arrives or `timeoutMs` passes. */
  wait(timeoutMs: number): void;
}

const HYPERCALL_IRET = 23;
const EVENT_LOOP_TURN_MS = 20;
/** The longest a blocked vCPU sleeps before the loop comes around (and its event loop turns). */
const MAX_IDLE_WAIT_MS = 100;

export class VcpuRunner {
  private readonly d;
  private readonly lstarVa = hvVirt(HV.monitorCode + MONITOR.lstar);
  private readonly cstarVa = hvVirt(HV.monitorCode + MONITOR.cstar);
  private blocked: BlockRequest | undefined;
  private forcedStep: { guestTf: boolean } | undefined;
  exits = 0;
  /**
   * Paused by the toolstack (xl pause: Xen's domain_pause_by_systemcontroller): the vCPU is not
   * entered; host input is still taken, so the unpause request (and others) are heard.
   */
  paused = false;

  constructor(readonly hv: Hypervisor, readonly v: Vcpu, readonly kicker: Kicker, readonly host: HostInputs) { this.d = hv.d; }

  /**
   * Run until the domain shuts down. Async only so that promise jobs queued by host-side work
   * (the xenbus backends' watch handlers) run between exits: the loop yields a microtask turn
   * after each one, never a macrotask.
   */
  async run(): Promise<void> {
    const d = this.d, v = this.v, kvm = v.kvm, trace = d.trace;
    v.prepareResume();
    let lastTurn = performance.now();
    while (!d.shutdownReason) {
      await undefined;
      // Now and then, one turn of this thread's event loop: timers (a device unplug's timeout) and
      // messages from helper threads run there; ~20 µs every 20 ms.
      if (performance.now() - lastTurn > EVENT_LOOP_TURN_MS) {
        await new Promise<void>((resolve) => setImmediate(resolve));
        lastTurn = performance.now();
      }
      if (this.paused) { this.pollHost(); if (this.paused) this.host.wait(MAX_IDLE_WAIT_MS); continue; }
      if (this.blocked) { this.waitBlocked(); continue; }
      this.kicker.arm(this.nextDeadlineMono());
      const reason = kvm.runOnce();
      this.exits++;
      if (reason === KVM_EXIT_INTR) {
        trace.count(trace.counters.exits, 'INTR');
        this.kicker.consume();
        this.onInterrupt();
        continue;
      }
      if (reason !== KVM_EXIT_IO) { this.fatalExit(reason); return; }
      const port = kvm.runView.getUint16(RUN_io + 2, true);
      if (trace.enabled && port >= PORT_SYSCALL) trace.log(`exit IO port=${hex(port)}`);
      switch (port) {
        case PORT_SYSCALL: trace.count(trace.counters.exits, v.kernelMode ? 'hypercall' : 'syscall'); this.onSyscall(false); break;
        case PORT_SYSCALL32: trace.count(trace.counters.exits, 'syscall32'); this.onSyscall(true); break;
        case PORT_TRAP: this.onTrap(-1); break;
        case PORT_SYSENTER: trace.count(trace.counters.exits, 'sysenter'); this.frameFromSyscall(); injectTrap(d, v, 13, 0n); break;
        case PORT_CONTINUE: d.crash('unexpected monitor continuation exit'); return;
        default:
          if (port < PORT_SYSCALL) { this.onTrap(port); break; }
          this.fatalExit(reason, `port ${hex(port)}`); return;
      }
      if (d.shutdownReason) break;
      this.afterExit();
    }
  }

  /** Timers, host work and event delivery, then resume through the monitor. */
  private afterExit(): void {
    const d = this.d, v = this.v;
    this.pollHost();
    this.runTimers();
    if (this.blocked) return;
    deliverPendingEvents(d, v);
    v.prepareResume();
  }

  /**
   * Take host input. A writer that pushed it also kicked this thread (vcpu/worker-protocol.ts),
   * and that signal, pending while this thread runs JavaScript, would make the next KVM_RUN
   * return at once with nothing to do — one wasted exit per I/O completion. So after taking
   * input the kick is consumed and the ring read again: a record pushed after the take kicks
   * anew, so nothing is lost. (A timer signal consumed with it is not lost either: the timer is
   * re-armed before the next KVM_RUN and timers are run after this.)
   */
  private pollHost(): boolean {
    const input = this.host.takeInput();
    if (input) {
      this.kicker.consume();
      this.host.takeInput();
    }
    // Device polling kicks nobody, so it needs no consume and runs once.
    const moved = this.host.pollDevices();
    return input || moved;
  }

  /**
   * KVM_RUN was interrupted (timer or host work). If events must be delivered while the guest
   * runs at CPL3, make it trap into the monitor right away: PVM hosts do not let the host move a
   * running vCPU to ring 0 through KVM_SET_SREGS, so pvbox sets RFLAGS.TF; the #DB after the next
   * instruction arrives through the IDT and the event is delivered there (onTrap, vector 1).
   */
  private onInterrupt(): void {
    const v = this.v, kvm = v.kvm;
    const csSel = kvm.runView.getUint16(0x1c0 + 12, true);
    const fired = this.runTimers();
    // The kick that ended KVM_RUN was consumed by the caller; input taken here is not consumed again (as before the split).
    const input = this.host.takeInput();
    const hostWork = this.host.pollDevices() || input;
    if (this.d.trace.enabled) this.d.trace.log(`exit INTR rip=${hex(v.regs[R.rip]!)} cpl=${csSel & 3}${fired ? ' timer' : ''}${hostWork ? ' host-work' : ''}`);
    kvm.markDirty(0);
    if ((csSel & 3) === 0) return; // in the monitor: events go in at its exit
    if (!fired && !hostWork) return;
    if (!upcallPending(this.d, v) || upcallMask(this.d, v) || this.forcedStep) return;
    this.forcedStep = { guestTf: (v.regs[R.rflags]! & X86_EFLAGS_TF) !== 0n };
    v.regs[R.rflags] = v.regs[R.rflags]! | X86_EFLAGS_TF;
    kvm.markDirty(1);
  }

  private isSyscallInsn(rip: bigint): boolean {
    try { const b = this.d.guestVirt(this.v).copyFrom(rip, 2); return b[0] === 0x0f && b[1] === 0x05; } catch { return false; }
  }

  /** SYSCALL with EFER.SCE clear faulted (#UD): do what the instruction would have, then handle it as a SYSCALL exit. */
  private syscallViaUd(cs: number): void {
    const v = this.v;
    v.regs[R.rcx] = v.frame.rip + 2n;
    v.regs[R.r11] = v.frame.rflags;
    v.regs[R.rsp] = v.frame.rsp;
    this.d.trace.count(this.d.trace.counters.exits, v.kernelMode ? 'hypercall' : 'syscall');
    this.onSyscall((cs & ~3) === (FLAT_USER_CS32 & ~3) || (cs & ~3) === 0x20);
  }

  private frameFromSyscall(compat = false): void {
    const v = this.v;
    v.frame = { rip: v.regs[R.rcx]!, cs: compat ? FLAT_USER_CS32 : FLAT_KERNEL_CS, rflags: v.regs[R.r11]!, rsp: v.regs[R.rsp]!, ss: FLAT_KERNEL_SS };
  }

  private onSyscall(compat: boolean): void {
    const d = this.d, v = this.v;
    this.frameFromSyscall(compat);
    if (v.kernelMode && !compat) {
      const nr = Number(v.regs[R.rax]! & 0xffffffffn);
      if (nr === HYPERCALL_IRET) {
        d.trace.count(d.trace.counters.hypercalls, 'iret');
        if (d.trace.enabled) d.trace.log(`hypercall iret(rsp=${hex(v.frame.rsp)})`);
        do_iret(d, v);
        return;
      }
      const r = this.hv.call(v, nr, [v.regs[R.rdi]!, v.regs[R.rsi]!, v.regs[R.rdx]!, v.regs[R.r10]!, v.regs[R.r8]!]);
      // Return as Xen's SYSRET does: RFLAGS from R11 with IF on and IOPL clear.
      v.frame.rflags = (v.frame.rflags & ~X86_EFLAGS_IOPL) | X86_EFLAGS_IF | X86_EFLAGS_MBS;
      if (typeof r === 'object') { v.regs[R.rax] = 0n; this.blocked = r; this.enterBlocked(); return; }
      v.regs[R.rax] = BigInt.asUintN(64, BigInt(r));
      return;
    }
    // A user-mode system call: bounce to the registered syscall callback (switch_to_kernel).
    const cb = compat ? v.syscall32Callback : v.syscallCallback;
    if (!cb) { v.frame.rip -= 2n; injectTrap(d, v, 6); return; }
    if (createBounceFrame(d, v, cb, undefined, compat ? v.syscall32MaskEvents : v.syscallMaskEvents)) v.frame.rflags &= ~X86_EFLAGS_DF;
  }

  /** An exception or interrupt: `port` is its vector, or -1 when the stub pushed the vector (PORT_TRAP). */
  private onTrap(port: number): void {
    const d = this.d, v = this.v, mem = d.mem;
    const sp = v.regs[R.rsp]!;
    let gpa = d.plan.hvBase + Number(sp - HV_VIRT_START);
    let vec: number, ec = 0n;
    if (port < 0) { vec = Number(mem.read64(gpa)); ec = mem.read64(gpa + 8); gpa += 16; }
    else { vec = port; if (HAVE_EC.has(vec)) { ec = mem.read64(gpa); gpa += 8; } }
    const rip = mem.read64(gpa), cs = Number(mem.read64(gpa + 8) & 0xffffn), rflags = mem.read64(gpa + 16);
    const rsp = mem.read64(gpa + 24), ss = Number(mem.read64(gpa + 32) & 0xffffn);
    if ((cs & 3) === 0) {
      d.crash(`fault in the monitor: ${TRAP_NAMES[vec] ?? vec} ec=${hex(ec)} at ${hex(rip)} (cr2 ${hex(v.kvm.runView.getBigUint64(0x1c0 + 0xe8, true))}); resuming to ${hex(v.frame.rip)}`);
      return;
    }
    v.frame = { rip, cs, rflags, rsp, ss };
    if (vec === 6 && (rip === this.lstarVa || rip === this.cstarVa)) {
      // A guest SYSCALL that PVM delivered to LSTAR/CSTAR at CPL3 (see monitor.S): RCX and R11 hold
      // the return RIP and RFLAGS as the instruction defines.
      v.regs[R.rsp] = rsp;
      d.trace.count(d.trace.counters.exits, v.kernelMode ? 'hypercall' : 'syscall');
      this.onSyscall(rip === this.cstarVa);
      return;
    }
    d.trace.count(d.trace.counters.exits, 'trap');
    d.trace.count(d.trace.counters.traps, TRAP_NAMES[vec] ?? `vector ${vec}`);
    if (vec === 1 && this.forcedStep) {
      // The single step pvbox forced to get an event in (onInterrupt); a guest that was itself
      // single-stepping still gets its #DB.
      const guestTf = this.forcedStep.guestTf;
      this.forcedStep = undefined;
      if (!guestTf) { v.frame.rflags &= ~X86_EFLAGS_TF; return; }
    }
    if (d.trace.enabled) d.trace.log(`trap ${TRAP_NAMES[vec] ?? vec} ec=${hex(ec)} rip=${hex(rip)}${vec === 14 ? ` cr2=${hex(v.kvm.runView.getBigUint64(0x1c0 + 0xe8, true))}` : ''} ${v.kernelMode ? 'kernel' : 'user'}`);
    switch (vec) {
      case 14: {
        const cr2 = v.kvm.runView.getBigUint64(0x1c0 + 0xe8, true);
        if (v.kernelMode) {
          if (this.hv.mm.ptwrFault(v, cr2, ec)) return;
          if ((ec & 1n) && this.hv.mm.fixupUserBits(v, cr2)) return;
        }
        v.cr2 = cr2;
        // Hardware always reports U=1 at CPL3: report the guest's own mode instead.
        injectTrap(d, v, 14, (ec & ~4n) | (v.kernelMode ? 0n : 4n));
        return;
      }
      case 13: {
        if (ec === 0n) {
          const r = emulatePrivilegedOp(d, v, this.hv.platform, this.hv.mm);
          if (r === 'done') return;
          if (r === 'unhandled') d.trace.warn('gp_unhandled', `#GP at ${hex(rip)} in ${v.kernelMode ? 'kernel' : 'user'} mode: instruction not emulated`);
          injectTrap(d, v, 13, 0n);
          return;
        }
        if ((ec & 3n) === 2n) {
          // Software INT n blocked by the IDT's DPL: allowed if the guest's trap table permits (permit_softint).
          const n = Number(ec >> 3n);
          const ti = v.trapCtxt[n];
          if (ti && (ti.flags & 3) >= (v.kernelMode ? 1 : 3)) {
            v.frame.rip += 2n;
            createBounceFrame(d, v, ti.address, undefined, (ti.flags & 4) !== 0);
            return;
          }
        }
        injectTrap(d, v, 13, ec);
        return;
      }
      case 6:
        if (emulateForcedInvalidOp(d, v, this.hv.platform)) return;
        if (this.isSyscallInsn(rip)) { this.syscallViaUd(cs); return; }
        injectTrap(d, v, 6);
        return;
      case 0x80: {
        const ti = v.trapCtxt[0x80];
        if (!ti) { v.frame.rip -= 2n; injectTrap(d, v, 13, BigInt((0x80 << 3) | 2)); return; }
        createBounceFrame(d, v, ti.address, undefined, (ti.flags & 4) !== 0);
        return;
      }
      default:
        injectTrap(d, v, vec, ec);
    }
  }

  // ---- timers and blocking ----

  /** Fire due timers; returns true if any fired. */
  private runTimers(): boolean {
    const v = this.v, now = this.hv.time.systemTime();
    let fired = false;
    if (v.singleshotDeadline !== undefined && v.singleshotDeadline <= now) { v.singleshotDeadline = undefined; fired = true; }
    if (v.periodicPeriod && v.periodicNext <= now) {
      v.periodicNext = v.periodicNext === 0n ? now + v.periodicPeriod : v.periodicNext + v.periodicPeriod;
      if (v.periodicNext <= now) v.periodicNext = now + v.periodicPeriod;
      fired = true;
    }
    if (fired) {
      this.hv.time.updateVcpuTime(v);
      this.hv.evtchn.sendVirq(VIRQ_TIMER, v.id);
    }
    return fired;
  }

  private nextDeadline(): bigint | undefined {
    const v = this.v;
    let dl = v.singleshotDeadline;
    if (v.periodicPeriod && v.periodicNext && (dl === undefined || v.periodicNext < dl)) dl = v.periodicNext;
    if (this.blocked?.deadline !== undefined && (dl === undefined || this.blocked.deadline < dl)) dl = this.blocked.deadline;
    return dl;
  }
  private nextDeadlineMono(): bigint {
    const dl = this.nextDeadline();
    return dl === undefined ? 0n : this.hv.time.bootNs + (dl > 0n ? dl : 1n);
  }

  private enterBlocked(): void {
    this.hv.time.setRunstate(this.v, RUNSTATE_blocked);
  }

  private wakeCondition(): boolean {
    const b = this.blocked!;
    if (b.kind === 'block') return upcallPending(this.d, this.v) !== 0;
    if (b.ports!.some((p) => this.hv.evtchn.isPending(p))) return true;
    return b.deadline !== undefined && this.hv.time.systemTime() >= b.deadline;
  }

  private waitBlocked(): void {
    const d = this.d, v = this.v;
    this.pollHost();
    this.runTimers();
    if (d.shutdownReason) return;
    if (!this.wakeCondition()) {
      const dl = this.nextDeadline();
      const ms = dl === undefined ? 1000 : Math.max(0, Number(dl - this.hv.time.systemTime()) / 1e6);
      this.host.wait(Math.min(ms, MAX_IDLE_WAIT_MS));
      return;
    }
    this.blocked = undefined;
    this.hv.time.setRunstate(v, RUNSTATE_running);
    this.hv.time.updateVcpuTime(v);
    deliverPendingEvents(d, v);
    v.prepareResume();
  }

  private fatalExit(reason: number, extra = ''): void {
    const v = this.v;
    const regs = REG_NAMES.map((n, i) => `${n}=${hex(v.regs[i]!)}`).join(' ');
    this.d.crash(`KVM exit ${EXIT_REASON_NAMES[reason] ?? reason}${extra ? ` (${extra})` : ''}: ${regs} cr2=${hex(v.kvm.runView.getBigUint64(0x1c0 + 0xe8, true))}`);
  }
}
