// XenStore over a guest's shared ring page (xenstore_domain_interface) and event channel: feeds a XenStored connection (tools/xenstored/domain.c readchn/writechn).
import { ByteRing, isRingBroken, XENSTORE_RING_LAYOUT } from '../ring/byte-ring.js';
/** Where the ring's bytes go: a XenStored connection in this process, or a relay to the daemon. */
export interface XsEndpoint { receive(chunk: Uint8Array): void }

const MAX_QUEUED = 4 << 20;

export class XenStoreRingTransport {
  private readonly ring: ByteRing;
  private readonly conn: XsEndpoint;
  private out: Uint8Array[] = [];
  private stopped = false;
  private queued = 0;
  /** `connect(send)` returns the endpoint requests go to; replies and watch events come back through `send`. */
  constructor(connect: (send: (bytes: Uint8Array) => void) => XsEndpoint, page: Uint8Array, private readonly notify: () => void, private readonly log: (l: string) => void) {
    this.ring = new ByteRing(page, XENSTORE_RING_LAYOUT);
    this.conn = connect((bytes) => {
      this.queued += bytes.length;
      // A guest that stops reading its ring (while watches keep firing) must not grow pvbox without bound.
      if (this.queued > MAX_QUEUED) { if (!this.stopped) this.log(`xenstore: guest left ${this.queued} bytes of replies unread; stopped serving its ring`); this.stopped = true; return; }
      this.out.push(bytes);
      this.flush();
    });
  }

  /** The guest notified the store port: consume requests, answer, push pending replies and events. */
  onGuestNotify(): void {
    if (this.stopped) return;
    for (;;) {
      const req = this.ring.backRead();
      if (isRingBroken(req)) { this.log('xenstore: ring indices out of range; stopped serving this domain'); this.stopped = true; return; }
      if (req.length === 0) break;
      this.conn.receive(req);
      // Reading freed space: the guest may be waiting to write more.
      this.notify();
    }
    this.flush();
  }

  private flush(): void {
    let sent = false;
    while (this.out.length && !this.stopped) {
      const b = this.out[0]!;
      const n = this.ring.backWrite(b);
      if (isRingBroken(n)) { this.stopped = true; return; }
      if (n > 0) sent = true;
      this.queued -= n;
      if (n < b.length) { this.out[0] = b.subarray(n); break; }
      this.out.shift();
    }
    if (sent) this.notify();
  }
}
