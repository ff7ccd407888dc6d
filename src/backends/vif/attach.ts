// A domain's vifs, end to end, for toolstack/create.ts: TAP devices, bridges and scripts before the guest runs (libxl's vif hotplug), the xenbus devices (libxl__device_nic_add's nodes), the netback data plane on the domain thread, and the TAP reader thread.
import { Worker } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import type { EventChannels } from '../../hypervisor/event_channel.js';
import type { GrantAccess } from '../../hypervisor/grant_table_backend.js';
import { backendPath } from '../../xenbus/paths.js';
import { createDevice } from '../../xenbus/device.js';
import type { XenStore } from '../../xenstore/store.js';
import { type VifDataplane, type VifRings, VifXenbusBackend } from './backend.js';
import { NetBack } from './netback.js';
import { eventfd, runHotplugScript, signalEventfd, TapDevice, TapReaderState, TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6, type HotplugInfo } from './tap.js';
import type { TapThreadInit } from './tap-thread.js';
import { type VifSpec, vifDeviceName } from './vif-spec.js';

interface Vif {
  spec: VifSpec;
  tap: TapDevice;
  hotplug?: HotplugInfo;
  /** While connected: the ring server and what undoes the attach. */
  conn?: { nb: NetBack; port: number; handles: number[] };
  /** Counters of the last connection, kept after it ends. */
  stats?: NetBack['stats'];
}

export class DomainVifs implements VifDataplane {
  private readonly vifs = new Map<number, Vif>();
  /** The vifs with a connected data plane, for the per-exit poll. */
  private connected: Vif[] = [];
  private thread: Worker | undefined;
  private wakeFd = -1;
  private control: Int32Array | undefined;
  private grants: GrantAccess | undefined;
  private evtchn: EventChannels | undefined;

  private constructor(private readonly domid: number, private readonly log: (line: string) => void) {}

  /**
   * Create every vif's TAP device, join its bridge and run its script (`online`), before the guest
   * runs: a missing bridge or a TAP failure is a one-line HostError, and what was set up is undone.
   */
  static open(specs: readonly VifSpec[], domid: number, log: (line: string) => void): DomainVifs {
    const vifs = new DomainVifs(domid, log);
    try {
      for (const spec of specs) {
        const name = vifDeviceName(spec, domid);
        const tap = TapDevice.open(name, spec.mtu);
        const vif: Vif = { spec, tap };
        vifs.vifs.set(spec.devid, vif);
        if (spec.bridge) tap.joinBridge(spec.bridge, spec.createBridge);
        if (spec.script) {
          const hotplug: HotplugInfo = { script: spec.script, vif: name, backendPath: backendPath('vif', 0, domid, spec.devid), bridge: spec.bridge, ip: spec.ip, mac: spec.mac, mtu: spec.mtu };
          runHotplugScript('online', hotplug, log);
          vif.hotplug = hotplug;
        }
      }
    } catch (e) {
      vifs.close();
      throw e;
    }
    return vifs;
  }

  get count(): number { return this.vifs.size; }

  /**
   * The xenbus devices in Domain-0's store (libxl__set_xenstore_nic's nodes) with this object as
   * their data plane, and the TAP reader thread writing to the domain's input ring.
   */
  start(store: XenStore, grants: GrantAccess, evtchn: EventChannels, inputBuffer: SharedArrayBuffer | undefined, trace: (devid: number, line: string) => void): void {
    if (this.vifs.size === 0) return;
    if (!inputBuffer) throw new Error('vifs need the domain input ring');
    this.grants = grants;
    this.evtchn = evtchn;
    for (const { spec, tap } of this.vifs.values()) {
      const dev = createDevice<VifDataplane>(store, {
        type: 'vif', frontendDomid: this.domid, devid: spec.devid,
        frontendNodes: { handle: spec.devid, mac: spec.mac, mtu: spec.mtu },
        backendNodes: {
          handle: spec.devid, mac: spec.mac, mtu: spec.mtu, type: 'vif', vifname: tap.name, 'hotplug-status': 'connected',
          ...(spec.bridge ? { bridge: spec.bridge } : {}), ...(spec.script ? { script: spec.script } : {}), ...(spec.ip ? { ip: spec.ip } : {}),
        },
      }, { log: (l) => trace(spec.devid, l) });
      dev.start(new VifXenbusBackend(spec.devid), this);
    }
    const maxDevid = Math.max(...this.vifs.keys());
    const control = new SharedArrayBuffer(4 * (maxDevid + 2));
    this.control = new Int32Array(control);
    this.wakeFd = eventfd();
    const init: TapThreadInit = {
      fds: Array.from({ length: maxDevid + 1 }, (_, i) => this.vifs.get(i)?.tap.fd ?? -1),
      wakeFd: this.wakeFd, control, input: inputBuffer,
    };
    this.thread = new Worker(fileURLToPath(new URL('./tap-thread-entry.mjs', import.meta.url)), { workerData: init });
    this.thread.unref();
    this.thread.on('error', (e) => this.log(`vif: TAP reader thread failed: ${e.message}`));
  }

  /**
   * On every vCPU exit (the domain's host poll): frames the TAP reader thread found are read now,
   * before it kicks the vCPU for them, and each netback polls its tx ring while the guest streams
   * (NetBack.poll). True if anything moved.
   */
  poll(): boolean {
    let moved = false;
    const ctl = this.control;
    for (const vif of this.connected) {
      const { nb } = vif.conn!;
      const at = 1 + vif.spec.devid;
      if (ctl && Atomics.load(ctl, at) === TapReaderState.READABLE
        && Atomics.compareExchange(ctl, at, TapReaderState.READABLE, TapReaderState.DISARMED) === TapReaderState.READABLE) {
        Atomics.notify(ctl, at); // the reader thread stops waiting for us
        nb.onHostReadable();
        moved = true;
      }
      if (nb.poll()) moved = true;
    }
    return moved;
  }

  /** An INPUT_NET record: vif `bytes[0]`'s TAP has frames. */
  onInput(bytes: Uint8Array): void {
    const vif = bytes.length > 0 ? this.vifs.get(bytes[0]!) : undefined;
    vif?.conn?.nb.onHostReadable();
    // Not connected (or the rx ring is waiting for buffers): re-armed on connect / by the next rx read that finds the TAP empty.
  }

  attach(devid: number, rings: VifRings): string | undefined {
    const vif = this.vifs.get(devid);
    if (!vif || !this.grants || !this.evtchn) return `no vif ${devid}`;
    if (vif.conn) return `vif ${devid} is already connected`;
    const grants = this.grants, evtchn = this.evtchn;
    const tx = grants.map(rings.txRef, { readonly: false });
    if (tx.status !== 0 || !tx.bytes) return `cannot map tx-ring-ref ${rings.txRef} (grant status ${tx.status})`;
    const rx = grants.map(rings.rxRef, { readonly: false });
    if (rx.status !== 0 || !rx.bytes) { grants.unmap(tx.handle!); return `cannot map rx-ring-ref ${rings.rxRef} (grant status ${rx.status})`; }
    const f = rings.features;
    // Let the host kernel hand over unfinished frames only where the frontend can finish them.
    vif.tap.setOffload((f.csumBlank ? TUN_F_CSUM : 0) | (f.csumBlank && f.sg && f.gsoTcpv4 ? TUN_F_TSO4 : 0) | (f.csumBlank && f.sg && f.gsoTcpv6 ? TUN_F_TSO6 : 0));
    const host = {
      transmit: (frame: Uint8Array) => vif.tap.write(frame),
      receive: (buf: Uint8Array) => {
        const n = vif.tap.read(buf);
        if (n === 0) this.arm(devid);
        else if (n < 0) this.log(`vif ${vif.tap.name}: reading the TAP device failed; no more frames to the guest`);
        return n > 0 ? n : 0;
      },
    };
    const nb = new NetBack(tx.bytes, rx.bytes, grants, host, f, () => evtchn.setPending(rings.port), (l) => this.log(`${vif.tap.name}: ${l}`));
    if (evtchn.connectHost(rings.port, () => nb.onNotify()) !== 0) {
      grants.unmap(tx.handle!); grants.unmap(rx.handle!);
      return `port ${rings.port} is not an unbound port for Domain-0`;
    }
    vif.conn = { nb, port: rings.port, handles: [tx.handle!, rx.handle!] };
    vif.stats = nb.stats;
    this.connected = [...this.connected, vif];
    nb.onHostReadable(); // frames that queued while the guest booted; arms the reader when the TAP is empty
    return undefined;
  }

  detach(devid: number): void {
    const vif = this.vifs.get(devid);
    if (!vif?.conn) return;
    if (this.control) { Atomics.store(this.control, 1 + devid, TapReaderState.DISARMED); Atomics.notify(this.control, 1 + devid); }
    this.evtchn?.disconnectHost(vif.conn.port);
    for (const h of vif.conn.handles) this.grants?.unmap(h);
    vif.conn = undefined;
    this.connected = this.connected.filter((v) => v !== vif);
  }

  /** Counters per vif, for --stats and tests. */
  stats(): { name: string; stats: NetBack['stats'] | undefined; writeErrors: number }[] {
    return [...this.vifs.values()].map((v) => ({ name: v.tap.name, stats: v.stats, writeErrors: v.tap.writeErrors }));
  }

  /** Stop the reader thread, disconnect, run scripts with `offline`, close the TAP devices (which removes them). Idempotent. */
  close(): void {
    if (this.control) { Atomics.store(this.control, 0, 1); signalEventfd(this.wakeFd); }
    void this.thread?.terminate();
    this.thread = undefined;
    for (const [devid, vif] of this.vifs) {
      this.detach(devid);
      if (vif.hotplug) runHotplugScript('offline', vif.hotplug, this.log);
      vif.tap.close();
    }
    this.vifs.clear();
  }

  private arm(devid: number): void {
    if (!this.control || Atomics.compareExchange(this.control, 1 + devid, TapReaderState.DISARMED, TapReaderState.ARMED) !== TapReaderState.DISARMED) return;
    signalEventfd(this.wakeFd);
  }
}
