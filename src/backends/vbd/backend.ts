// The vbd backend's control plane: the xenbus device whose frontend is Linux xen-blkfront (blkfront talk_to_blkback: ring-ref, event-channel, protocol), as blkback's xenbus.c connect_ring reads them.
import type { FrontendInfo, XenbusBackend } from '../../xenbus/device.js';
import { type Dataplane, readRingKeys } from '../ring-dataplane.js';

export class VbdXenbusBackend implements XenbusBackend<Dataplane> {
  readonly type = 'vbd' as const;
  private io: Dataplane | undefined;
  constructor(readonly devid: number) {}

  async connect(fe: FrontendInfo, io: Dataplane): Promise<void> {
    const d = fe.device;
    // One ring page only for now: a frontend asking for more (ring-page-order > 0) is refused.
    if (d.readFrontendFeature('ring-page-order', 0) !== 0) throw new Error('multi-page rings are not supported yet');
    if (d.readFrontend('multi-queue-num-queues') && d.readFrontendFeature('multi-queue-num-queues', 1) !== 1) throw new Error('multiple queues are not supported yet');
    const protocol = d.readFrontend('protocol');
    if (protocol !== undefined && protocol !== 'x86_64-abi') throw new Error(`unsupported protocol '${protocol}'`);
    const { ringRef, port } = readRingKeys(d, 'ring-ref', 'event-channel');
    const err = await io.attach(this.devid, ringRef, port);
    if (err) throw new Error(err);
    this.io = io;
  }

  frontendChanged(): void {}

  disconnect(): void {
    this.io?.detach(this.devid);
    this.io = undefined;
  }
}
