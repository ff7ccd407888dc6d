// A domain's disks over its life: those it boots with and those attached or detached while it runs (xl block-attach / block-detach: libxl__device_disk_add, libxl__initiate_device_generic_remove). The data plane is always in the domain process; the xenbus device lives in the in-process store, or in pvbox xenstored's (asked over the domain link).
import { ConfigError, ImageError } from '../errors.js';
import { type DiskSpec, parseDiskSpec } from '../backends/vbd/disk-spec.js';
import { VbdXenbusBackend, vbdBackendNodes, vbdFrontendNodes } from '../backends/vbd/backend.js';
import type { VbdDataplane } from '../backends/vbd/dataplane.js';
import { createDevice, type XenbusDevice } from '../xenbus/device.js';
import type { XenStore } from '../xenstore/store.js';
import type { ControlReply } from './control-server.js';
import type { LinkDevice } from './domain-link.js';

/** Where the disks' xenbus devices are created and removed. */
export interface DeviceHost {
  /** Create and start the device; an error message, or undefined. */
  add(device: LinkDevice): Promise<string | undefined>;
  /** Unplug it (the frontend lets go, or a timeout passes) and remove it. */
  remove(type: 'vbd', devid: number): Promise<void>;
}

/** Devices in the domain process's own store: the control plane runs here too. */
export class LocalDeviceHost implements DeviceHost {
  private readonly devices = new Map<number, XenbusDevice<VbdDataplane>>();
  constructor(private readonly store: XenStore, private readonly frontendDomid: number, private readonly vbd: () => VbdDataplane,
    private readonly log: (devid: number, line: string) => void) {}

  async add(d: LinkDevice): Promise<string | undefined> {
    try {
      const dev = createDevice<VbdDataplane>(this.store, { type: 'vbd', frontendDomid: this.frontendDomid, devid: d.devid, frontendNodes: d.frontendNodes, backendNodes: d.backendNodes },
        { log: (l) => this.log(d.devid, l) });
      dev.start(new VbdXenbusBackend(d.devid), this.vbd());
      this.devices.set(d.devid, dev);
      return undefined;
    } catch (e) { return (e as Error).message; }
  }

  async remove(_type: 'vbd', devid: number): Promise<void> {
    const dev = this.devices.get(devid);
    this.devices.delete(devid);
    if (dev) await dev.unplug();
  }
}

export class DomainDisks {
  private vbd: VbdDataplane | undefined;
  /** vdev → spec of every disk the guest has (or is being given). */
  private readonly specs = new Map<number, DiskSpec>();

  constructor(private readonly openDataplane: (specs: readonly DiskSpec[]) => Promise<VbdDataplane>, private host: DeviceHost | undefined) {}

  /** Open the boot disks (before the guest runs). */
  async openBootDisks(specs: readonly DiskSpec[]): Promise<void> {
    if (specs.length === 0) return;
    this.vbd = await this.openDataplane(specs);
    for (const s of specs) this.specs.set(s.devid, s);
  }

  get dataplane(): VbdDataplane | undefined { return this.vbd; }

  /** The boot disks as devices to create (the daemon creates them from the 'ready' message, or setHost does). */
  bootDevices(): LinkDevice[] {
    return [...this.specs.values()].map((spec) => ({ type: 'vbd', devid: spec.devid, frontendNodes: vbdFrontendNodes(spec), backendNodes: vbdBackendNodes(spec, this.vbd!.disk(spec.devid)!) }));
  }

  setHost(host: DeviceHost): void { this.host = host; }

  /** pvbox block-attach: open and lock the image, then create the device the guest's blkfront will find. */
  async attach(specText: unknown): Promise<ControlReply> {
    if (typeof specText !== 'string') return { ok: false, error: 'block-attach needs a disk spec' };
    let spec: DiskSpec;
    try { spec = parseDiskSpec(specText); } catch (e) { return { ok: false, error: (e as ConfigError).message }; }
    if (this.specs.has(spec.devid)) return { ok: false, error: `${spec.vdev} is already attached` };
    if (!this.host) return { ok: false, error: 'the domain is not ready for devices yet' };
    this.specs.set(spec.devid, spec); // reserved while opening
    try {
      if (this.vbd) await this.vbd.addDisk(spec);
      else this.vbd = await this.openDataplane([spec]);
    } catch (e) {
      this.specs.delete(spec.devid);
      return { ok: false, error: e instanceof ImageError ? e.message : `disk ${spec.vdev}: ${(e as Error).message}` };
    }
    const err = await this.host.add({ type: 'vbd', devid: spec.devid, frontendNodes: vbdFrontendNodes(spec), backendNodes: vbdBackendNodes(spec, this.vbd.disk(spec.devid)!) });
    if (err) {
      this.specs.delete(spec.devid);
      await this.vbd.removeDisk(spec.devid);
      return { ok: false, error: `${spec.vdev}: ${err}` };
    }
    return { ok: true, vdev: spec.vdev, devid: spec.devid };
  }

  /** pvbox block-detach: unplug the device (the guest lets go), then close and unlock the image. */
  async detach(vdev: unknown): Promise<ControlReply> {
    const spec = [...this.specs.values()].find((s) => s.vdev === vdev || String(s.devid) === String(vdev));
    if (!spec || !this.vbd?.disk(spec.devid)) return { ok: false, error: `no disk '${String(vdev)}' attached` };
    await this.host?.remove('vbd', spec.devid);
    this.vbd.detach(spec.devid);
    await this.vbd.removeDisk(spec.devid);
    this.specs.delete(spec.devid);
    return { ok: true, vdev: spec.vdev };
  }

  async shutdown(): Promise<void> { await this.vbd?.shutdown(); }
}

/** Devices in pvbox xenstored's store: the daemon creates and unplugs them when asked over the domain link. */
export class RemoteDeviceHost implements DeviceHost {
  private readonly pending = new Map<string, (error: string | undefined) => void>();
  constructor(private readonly send: (msg: object) => void) {}

  add(d: LinkDevice): Promise<string | undefined> {
    return this.ask(`device-added:${d.type}:${d.devid}`, { op: 'device-add', device: d });
  }

  async remove(type: LinkDevice['type'], devid: number): Promise<void> {
    await this.ask(`device-removed:${type}:${devid}`, { op: 'device-remove', type, devid });
  }

  private ask(key: string, msg: object): Promise<string | undefined> {
    return new Promise((resolve) => {
      this.pending.get(key)?.('superseded');
      this.pending.set(key, resolve);
      this.send(msg);
    });
  }

  /** A reply of the daemon ({op:'device-added'|'device-removed', type, devid, error?}); false if it was not one. */
  onReply(m: { op?: unknown; type?: unknown; devid?: unknown; error?: unknown }): boolean {
    if (m.op !== 'device-added' && m.op !== 'device-removed') return false;
    const key = `${String(m.op)}:${String(m.type)}:${Number(m.devid)}`;
    const done = this.pending.get(key);
    this.pending.delete(key);
    done?.(typeof m.error === 'string' ? m.error.slice(0, 200) : undefined);
    return true;
  }

  /** The link went away: nobody will answer. */
  failAll(): void { for (const done of this.pending.values()) done('xenstored closed the link'); this.pending.clear(); }
}
