// Secondary PV consoles (device/console/N, N >= 1) through the xenbus backend framework: the frontend (Linux hvc_xen xencons_connect_backend) grants its ring and allocates an event channel; the backend maps and binds them (xenconsoled's domain_create_ring).
import type { XenbusBackend, FrontendInfo } from '../../xenbus/device.js';

/** The data plane the control plane asks to attach a ring: maps the grant, binds the port, serves the bytes. */
export interface ConsoleDataplane {
  /** Start serving console `devid`; an error message for the guest's error node, or undefined. May be remote (async). */
  attach(devid: number, ringRef: number, port: number): string | undefined | Promise<string | undefined>;
  detach(devid: number): void;
}

const U32 = /^(0|[1-9][0-9]{0,9})$/;

export class ConsoleXenbusBackend implements XenbusBackend<ConsoleDataplane> {
  readonly type = 'console' as const;
  private io: ConsoleDataplane | undefined;
  constructor(readonly devid: number) {}

  async connect(fe: FrontendInfo, io: ConsoleDataplane): Promise<void> {
    // Guest data: both keys must be plain unsigned numbers (xenconsoled reads them with %u).
    const ref = fe.device.readFrontend('ring-ref'), port = fe.device.readFrontend('port');
    if (!ref || !U32.test(ref) || !port || !U32.test(port) || Number(ref) > 0xffffffff || Number(port) > 0xffffffff) {
      throw new Error(`frontend ring-ref '${ref}' / port '${port}' are not 32-bit numbers`);
    }
    const err = await io.attach(this.devid, Number(ref), Number(port));
    if (err) throw new Error(err);
    this.io = io;
  }

  frontendChanged(): void { /* nothing beyond the framework's states */ }

  disconnect(): void {
    this.io?.detach(this.devid);
    this.io = undefined;
  }
}
