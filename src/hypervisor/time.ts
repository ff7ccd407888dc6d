// Guest time: pvclock (vcpu_time_info), the wall clock in shared_info, runstate areas and the vCPU timers (xen/arch/x86/time.c, xen/common/domain.c, public/xen.h).
import { XEN_RUNSTATE_UPDATE } from '../abi/vcpu.js';
import type { Domain } from './domain.js';
import type { Platform } from './platform.js';
import type { Vcpu } from './vcpu.js';

const monotonicNs = (): bigint => process.hrtime.bigint();

export class TimeKeeper {
  /** Host CLOCK_MONOTONIC at guest system time 0. */
  bootNs = monotonicNs();
  readonly mul: number;
  readonly shift: number;
  private version = new Map<number, number>();

  constructor(readonly d: Domain, readonly p: Platform, readonly tscKhz: number) {
    // Xen's set_time_scale: choose shift so that mul = (10^9/f) << (32 - shift) fits in 32 bits.
    const tscHz = tscKhz * 1000;
    let shift = 0;
    let mulF = (1e9 / tscHz) * 2 ** 32;
    while (mulF >= 2 ** 32) { mulF /= 2; shift++; }
    while (mulF < 2 ** 31) { mulF *= 2; shift--; }
    this.mul = Math.floor(mulF) >>> 0;
    this.shift = shift;
  }

  systemTime(): bigint { return monotonicNs() - this.bootNs; }

  /** A restored domain's clock goes on from where the saved one stopped (Linux's pvclock must not see time go backwards). */
  continueFrom(systemTimeNs: bigint): void { this.bootNs = monotonicNs() - systemTimeNs; }

  /** Write vcpu_time_info for a vCPU (update_vcpu_system_time), with the odd/even version protocol. */
  updateVcpuTime(v: Vcpu): void {
    const tsc = this.p.readGuestTsc(v);
    const now = this.systemTime();
    const base = v.vcpuInfoGpa + 0x20;
    const m = this.d.mem;
    const ver = ((this.version.get(v.id) ?? m.read32(base)) | 1) >>> 0;
    m.write32(base, ver);
    m.write64(base + 0x08, tsc);
    m.write64(base + 0x10, now);
    m.write32(base + 0x18, this.mul);
    m.write8(base + 0x1c, this.shift & 0xff);
    m.write8(base + 0x1d, 0); // not TSC_STABLE: pvbox keeps no vDSO time area
    m.write32(base, (ver + 1) >>> 0);
    this.version.set(v.id, (ver + 1) >>> 0);
  }

  /** shared_info wc_*: wall-clock time at guest system time 0. */
  setWallclock(): void {
    const wallNs = BigInt(Date.now()) * 1_000_000n - this.systemTime();
    const si = this.d.sharedInfoGpa, m = this.d.mem;
    const ver = (m.read32(si + 0xc00) | 1) >>> 0;
    m.write32(si + 0xc00, ver);
    const sec = wallNs / 1_000_000_000n;
    m.write32(si + 0xc04, Number(sec & 0xffffffffn));
    m.write32(si + 0xc08, Number(wallNs % 1_000_000_000n));
    m.write32(si + 0xc0c, Number(sec >> 32n));
    m.write32(si + 0xc00, (ver + 1) >>> 0);
  }

  // ---- runstate (vcpu_runstate_info at a guest VA) ----
  private runstate = new Map<number, { state: number; entry: bigint; time: bigint[] }>();

  setRunstate(v: Vcpu, state: number): void {
    const now = this.systemTime();
    let r = this.runstate.get(v.id);
    if (!r) { r = { state, entry: now, time: [0n, 0n, 0n, 0n] }; this.runstate.set(v.id, r); }
    r.time[r.state] = r.time[r.state]! + (now - r.entry);
    r.state = state; r.entry = now;
    this.writeRunstate(v);
  }

  writeRunstate(v: Vcpu): void {
    if (!v.runstateVa) return;
    const r = this.runstate.get(v.id) ?? { state: 0, entry: this.systemTime(), time: [0n, 0n, 0n, 0n] };
    this.runstate.set(v.id, r);
    const buf = new DataView(new ArrayBuffer(48));
    buf.setUint32(0, r.state, true);
    buf.setBigUint64(8, r.entry & ~XEN_RUNSTATE_UPDATE, true);
    r.time.forEach((t, i) => buf.setBigUint64(16 + i * 8, t, true));
    try { this.d.guestVirt(v).copyTo(v.runstateVa, new Uint8Array(buf.buffer)); } catch { /* unmapped area: Xen ignores too */ }
  }
}
