// Guest-physical memory as seen by the hypervisor core and backends: checked, typed accessors over the VM's one mapping (vm-memory's GuestMemory).
import { GuestFault } from './fault.js';

/**
 * Every accessor bounds-checks and throws GuestFault on a bad address; the hypercall
 * dispatcher turns that into -XEN_EFAULT. Addresses are guest-physical byte addresses
 * (numbers: GPAs fit in 2^53). Cells the guest also writes (ring indices, event bits,
 * grant flags) go through the Atomics views.
 */
export class GuestMemory {
  readonly u8: Uint8Array;
  readonly dv: DataView;
  readonly u64: BigUint64Array;
  readonly i32: Int32Array;
  readonly size: number;
  constructor(readonly buffer: ArrayBuffer) {
    this.size = buffer.byteLength;
    this.u8 = new Uint8Array(buffer);
    this.dv = new DataView(buffer);
    this.u64 = new BigUint64Array(buffer);
    this.i32 = new Int32Array(buffer);
  }
  check(gpa: number, len: number): void {
    if (!(gpa >= 0 && len >= 0 && gpa + len <= this.size && Number.isInteger(gpa))) throw new GuestFault(gpa, `guest-physical access [0x${gpa.toString(16)}, +${len}) outside memory`);
  }
  read8(gpa: number): number { this.check(gpa, 1); return this.u8[gpa]!; }
  read16(gpa: number): number { this.check(gpa, 2); return this.dv.getUint16(gpa, true); }
  read32(gpa: number): number { this.check(gpa, 4); return this.dv.getUint32(gpa, true); }
  read64(gpa: number): bigint {
    this.check(gpa, 8);
    return (gpa & 7) === 0 ? this.u64[gpa / 8]! : this.dv.getBigUint64(gpa, true);
  }
  write8(gpa: number, v: number): void { this.check(gpa, 1); this.u8[gpa] = v; }
  write16(gpa: number, v: number): void { this.check(gpa, 2); this.dv.setUint16(gpa, v, true); }
  write32(gpa: number, v: number): void { this.check(gpa, 4); this.dv.setUint32(gpa, v >>> 0, true); }
  write64(gpa: number, v: bigint): void {
    this.check(gpa, 8);
    if ((gpa & 7) === 0) this.u64[gpa / 8] = BigInt.asUintN(64, v); else this.dv.setBigUint64(gpa, BigInt.asUintN(64, v), true);
  }
  /** A bounded view (no copy). */
  bytes(gpa: number, len: number): Uint8Array { this.check(gpa, len); return this.u8.subarray(gpa, gpa + len); }
  fill(gpa: number, len: number, value = 0): void { this.check(gpa, len); this.u8.fill(value, gpa, gpa + len); }
  copyIn(gpa: number, data: Uint8Array): void { this.check(gpa, data.length); this.u8.set(data, gpa); }
  /** Atomic 32-bit load/store for cells shared with the guest (must be 4-aligned). */
  atomicLoad32(gpa: number): number { this.check(gpa, 4); return Atomics.load(this.i32, gpa >> 2) >>> 0; }
  atomicStore32(gpa: number, v: number): void { this.check(gpa, 4); Atomics.store(this.i32, gpa >> 2, v | 0); }
  atomicOr32(gpa: number, v: number): number { this.check(gpa, 4); return Atomics.or(this.i32, gpa >> 2, v | 0) >>> 0; }
  atomicAnd32(gpa: number, v: number): number { this.check(gpa, 4); return Atomics.and(this.i32, gpa >> 2, v | 0) >>> 0; }
  atomicCmpxchg32(gpa: number, expected: number, v: number): number { this.check(gpa, 4); return Atomics.compareExchange(this.i32, gpa >> 2, expected | 0, v | 0) >>> 0; }
}
