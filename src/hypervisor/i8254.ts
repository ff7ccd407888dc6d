// PIT channel 2 and port 0x61, the only legacy timer a PV guest may touch: Linux's quick_pit_calibrate uses it (xen/arch/x86/emul-i8254.c pv_pit_handler).
const PIT_HZ = 1_193_182;

export class Pit {
  private reload = 0x10000;
  private startNs = 0n;
  private mode = 0;
  private access = 3;           // 1 LSB, 2 MSB, 3 LSB then MSB
  private readHigh = false;
  private writeHigh = false;
  private latched: number | undefined;
  private gate = false;
  private port61 = 0;
  private pendingLow = 0;
  constructor(private readonly now: () => bigint = () => process.hrtime.bigint()) {}

  private elapsedTicks(): number {
    if (!this.gate) return 0;
    return Number(((this.now() - this.startNs) * BigInt(PIT_HZ)) / 1_000_000_000n);
  }
  private count(): number {
    const t = this.elapsedTicks();
    if (this.mode === 0) return t >= this.reload ? (0x10000 - ((t - this.reload) % 0x10000)) & 0xffff : (this.reload - t) & 0xffff;
    return (this.reload - (t % this.reload)) & 0xffff; // periodic modes
  }
  private out(): boolean { return this.mode === 0 ? this.elapsedTicks() >= this.reload : (this.count() > this.reload / 2); }

  read(port: number): number {
    if (port === 0x61) return (this.port61 & 0x0f) | (this.out() ? 0x20 : 0);
    if (port !== 0x42) return 0xff;
    const value = this.latched ?? this.count();
    let byte: number;
    if (this.access === 1) byte = value & 0xff;
    else if (this.access === 2) byte = value >> 8;
    else { byte = this.readHigh ? value >> 8 : value & 0xff; this.readHigh = !this.readHigh; if (!this.readHigh) this.latched = undefined; }
    if (this.access !== 3) this.latched = undefined;
    return byte & 0xff;
  }

  write(port: number, value: number): void {
    if (port === 0x61) {
      const wasGate = this.gate;
      this.port61 = value & 0x0f;
      this.gate = (value & 1) !== 0;
      if (this.gate && !wasGate) this.startNs = this.now();
      return;
    }
    if (port === 0x43) {
      if ((value >> 6) !== 2) return;       // only channel 2 is emulated
      const access = (value >> 4) & 3;
      if (access === 0) { this.latched = this.count(); this.readHigh = false; return; }
      this.access = access; this.mode = (value >> 1) & 7; this.readHigh = false; this.writeHigh = false; this.latched = undefined;
      return;
    }
    if (port !== 0x42) return;
    const load = (r: number) => { this.reload = r === 0 ? 0x10000 : r; this.startNs = this.now(); };
    if (this.access === 1) load(value & 0xff);
    else if (this.access === 2) load((value & 0xff) << 8);
    else if (!this.writeHigh) { this.pendingLow = value & 0xff; this.writeHigh = true; }
    else { load(this.pendingLow | ((value & 0xff) << 8)); this.writeHigh = false; }
  }
}
