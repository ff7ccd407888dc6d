// Getting a vCPU out of KVM_RUN: a thread-directed SIGUSR2, blocked outside KVM_RUN and unblocked inside it (KVM_SET_SIGNAL_MASK), fired by a POSIX timer or by another thread.
import { HostError } from '../errors.js';
import type { Vcpu as KvmVcpu } from '../kvm/kvm.js';
import * as libc from '../kvm/libc.js';

const KVM_SET_SIGNAL_MASK = 0x4004ae8b;
export const KICK_SIGNAL = libc.SIGUSR2;

function sigset(...signals: number[]): Buffer {
  const b = Buffer.alloc(128);
  for (const s of signals) b[(s - 1) >> 3]! |= 1 << ((s - 1) & 7);
  return b;
}

/**
 * Why this shape: a signal that arrives while the thread runs JavaScript stays pending (it is
 * blocked), and the next KVM_RUN, which runs with it unblocked, returns at once with EINTR — so
 * no deadline can be lost between checking timers and entering the guest. After such an exit
 * the pending signal is consumed with sigtimedwait, never delivered to a handler.
 */
export class Kicker {
  readonly tid: number;
  private readonly set = sigset(KICK_SIGNAL);
  private readonly zero = Buffer.alloc(16);
  private readonly info = Buffer.alloc(128);
  private timerId: bigint | undefined;
  private armedNs = -1n;
  private readonly spec = Buffer.alloc(32);

  constructor(vcpu: KvmVcpu) {
    this.tid = libc.gettid();
    // SAFETY: set/oldset are 128-byte buffers (sizeof(sigset_t)) alive for the call.
    if (libc.pthread_sigmask(libc.SIG_BLOCK, this.set, null) !== 0) throw new HostError('pthread_sigmask failed');
    const m = Buffer.alloc(4 + 8);
    m.writeUInt32LE(8, 0); // the kernel's sigset size; all signals unblocked while in the guest
    if (libc.ioctlPtr(vcpu.fd, KVM_SET_SIGNAL_MASK, m) < 0) throw new HostError(`KVM_SET_SIGNAL_MASK failed: ${libc.errnoMessage()}`);
    const sev = Buffer.alloc(64);
    sev.writeInt32LE(KICK_SIGNAL, 8);            // sigev_signo
    sev.writeInt32LE(libc.SIGEV_THREAD_ID, 12);  // sigev_notify
    sev.writeInt32LE(this.tid, 16);              // sigev_notify_thread_id
    const id = Buffer.alloc(8);
    if (libc.timer_create(libc.CLOCK_MONOTONIC, sev, id) !== 0) throw new HostError(`timer_create failed: ${libc.errnoMessage()}`);
    this.timerId = id.readBigUInt64LE(0);
  }

  /**
   * Consume a pending kick so the next KVM_RUN does not return at once. The timer's signal may
   * have been among those consumed, so the next arm() sets the timer again even for the same
   * deadline (one already past fires at once).
   */
  consume(): void {
    // SAFETY: 128-byte sigset and siginfo buffers and a zero timespec, alive for the call.
    while (libc.sigtimedwait(this.set, this.info, this.zero) > 0) { /* drained */ }
    this.armedNs = -1n;
  }

  /** Arm the timer to kick this thread at CLOCK_MONOTONIC `deadlineNs` (absolute); 0n disarms. */
  arm(deadlineNs: bigint): void {
    if (deadlineNs === this.armedNs || this.timerId === undefined) return;
    this.armedNs = deadlineNs;
    this.spec.fill(0);
    this.spec.writeBigInt64LE(deadlineNs / 1_000_000_000n, 16);
    this.spec.writeBigInt64LE(deadlineNs % 1_000_000_000n, 24);
    libc.timer_settime(this.timerId, deadlineNs ? libc.TIMER_ABSTIME : 0, this.spec, null);
  }
}
