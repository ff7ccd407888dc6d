// The primary PV console backend (xenconsoled's role): the guest's xencons_interface ring ↔ a byte sink and source (tools/console/daemon/io.c; public/io/console.h).
import { ByteRing, isRingBroken, XENCONS_RING_LAYOUT } from '../../ring/byte-ring.js';

export class ConsoleBackend {
  private readonly ring: ByteRing;
  private pendingInput: Uint8Array[] = [];
  constructor(page: Uint8Array, private readonly output: (bytes: Uint8Array) => void, private readonly notify: () => void, private readonly log: (l: string) => void) {
    this.ring = new ByteRing(page, XENCONS_RING_LAYOUT);
  }

  /** The guest notified us: drain its output. */
  onNotify(): void {
    const out = this.ring.backRead();
    if (isRingBroken(out)) { this.log(`console: ring broken (${out.pipe} indices out of range); no more console I/O`); return; }
    if (out.length) { this.output(out); this.notify(); }
    this.flushInput();
  }

  /** Bytes typed by the user; what a guest that never reads would let pile up beyond 64 KiB is dropped. */
  input(bytes: Uint8Array): void {
    const queued = this.pendingInput.reduce((n, b) => n + b.length, 0);
    if (queued + bytes.length > 64 * 1024) return;
    this.pendingInput.push(bytes);
    this.flushInput();
  }

  private flushInput(): void {
    let sent = false;
    while (this.pendingInput.length) {
      const b = this.pendingInput[0]!;
      const n = this.ring.backWrite(b);
      if (isRingBroken(n)) return;
      if (n > 0) sent = true;
      if (n < b.length) { this.pendingInput[0] = b.subarray(n); break; }
      this.pendingInput.shift();
    }
    if (sent) this.notify();
  }
}
