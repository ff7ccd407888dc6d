// The data-plane half every PV backend shares: map the ring page the frontend granted, bind the event channel it allocated to a host endpoint, and undo both (QEMU's xen_device_map_grant_refs + xen_device_bind_event_channel).
import type { GrantAccess } from '../hypervisor/grant_table_backend.js';
import type { EventChannels } from '../hypervisor/event_channel.js';
import type { XenbusDeviceHandle } from '../xenbus/device.js';

/** What serves one ring: called when the frontend notifies. */
export interface RingServer { onNotify(): void }

/** Attach/detach a device's ring by devid; the control plane may be remote, so attach may be async. */
export interface Dataplane {
  /** Start serving `devid`'s ring; an error message for the frontend's error node, or undefined. */
  attach(devid: number, ringRef: number, port: number): string | undefined | Promise<string | undefined>;
  detach(devid: number): void;
}

const U32 = /^(0|[1-9][0-9]{0,9})$/;

/** A frontend's ring grant reference and event channel, checked as the 32-bit numbers they must be (guest data). */
export function readRingKeys(device: XenbusDeviceHandle, refKey: string, portKey: string): { ringRef: number; port: number } {
  const ref = device.readFrontend(refKey), port = device.readFrontend(portKey);
  if (!ref || !U32.test(ref) || !port || !U32.test(port) || Number(ref) > 0xffffffff || Number(port) > 0xffffffff) {
    throw new Error(`frontend ${refKey} '${ref}' / ${portKey} '${port}' are not 32-bit numbers`);
  }
  return { ringRef: Number(ref), port: Number(port) };
}

export class RingDataplane<S extends RingServer> implements Dataplane {
  readonly servers = new Map<number, { server: S; port: number; handle: number }>();

  /** `make` builds the server for a mapped ring page, or returns why it cannot. */
  constructor(private readonly grants: GrantAccess, private readonly evtchn: EventChannels,
    private readonly make: (devid: number, page: Uint8Array, notify: () => void) => S | string) {}

  attach(devid: number, ringRef: number, port: number): string | undefined {
    if (this.servers.has(devid)) return `device ${devid} is already connected`;
    const m = this.grants.map(ringRef, { readonly: false });
    if (m.status !== 0 || !('bytes' in m)) return `cannot map ring-ref ${ringRef} (grant status ${m.status})`;
    const server = this.make(devid, m.bytes, () => this.evtchn.setPending(port));
    if (typeof server === 'string') { this.grants.unmap(m.handle); return server; }
    if (this.evtchn.connectHost(port, () => server.onNotify()) !== 0) { this.grants.unmap(m.handle); return `port ${port} is not an unbound port for Domain-0`; }
    this.servers.set(devid, { server, port, handle: m.handle });
    return undefined;
  }

  detach(devid: number): void {
    const c = this.servers.get(devid);
    if (!c) return;
    this.evtchn.disconnectHost(c.port);
    this.grants.unmap(c.handle);
    this.servers.delete(devid);
  }
}
