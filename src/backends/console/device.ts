// Secondary PV consoles (device/console/N, N >= 1) through the xenbus backend framework: the frontend (Linux hvc_xen xencons_connect_backend) grants its ring and allocates an event channel; the backend maps and binds them (xenconsoled's domain_create_ring).
import type { FrontendInfo, XenbusBackend } from '../../xenbus/device.js';
import { type Dataplane, readRingKeys } from '../ring-dataplane.js';

export class ConsoleXenbusBackend implements XenbusBackend<Dataplane> {
  readonly type = 'console' as const;
  private io: Dataplane | undefined;
  constructor(readonly devid: number) {}

  async connect(fe: FrontendInfo, io: Dataplane): Promise<void> {
    const { ringRef, port } = readRingKeys(fe.device, 'ring-ref', 'port');
    const err = await io.attach(this.devid, ringRef, port);
    if (err) throw new Error(err);
    this.io = io;
  }

  frontendChanged(): void { /* nothing beyond the framework's states */ }

  disconnect(): void {
    this.io?.detach(this.devid);
    this.io = undefined;
  }
}
