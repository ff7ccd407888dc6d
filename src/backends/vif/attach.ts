// A domain's vifs, end to end, for toolstack/create.ts: TAP devices, bridges and scripts (libxl's vif hotplug), the xenbus devices (libxl__device_nic_add's nodes), the netback data plane on the domain thread, and the TAP reader thread; at boot and while the guest runs (xl network-attach / network-detach).
import { Worker } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import { ConfigError, HostError } from '../../errors.js';
import type { EventChannels } from '../../hypervisor/event_channel.js';
import type { GrantAccess } from '../../hypervisor/grant_table_backend.js';
import { backendPath } from '../../xenbus/paths.js';
import { createDevice, type NodeValues, type XenbusDevice } from '../../xenbus/device.js';
import type { XenStore } from '../../xenstore/store.js';
import { type VifDataplane, type VifRings, VifXenbusBackend } from './backend.js';
import { NETBACK_MAX_QUEUES, NetBack, type NetbackStats } from './netback.js';
import {
  eventfd, runHotplugScript, signalEventfd, TAP_SLOTS, tapControlBlock, TapDevice, tapFdSlot, tapQueueSlot, TapReaderState, tapStateSlot,
  TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6, type HotplugInfo,
} from './tap.js';
import type { TapThreadInit } from './tap-thread.js';
import { parseMac, parseVifSpec, type VifSpec, vifDeviceName } from './vif-spec.js';

/** A vif's xenbus device as the toolstack creates it (the shape of toolstack/domain-link.ts LinkDevice). */
export interface VifDevice { type: 'vif'; devid: number; frontendNodes: NodeValues; backendNodes: NodeValues }

/** Where vif devices are created and removed: the domain's own store (LocalVifHost) or pvbox xenstored's (toolstack/domain-disks.ts RemoteDeviceHost). */
export interface VifDeviceHost {
  /** Create and start the device; an error message, or undefined. */
  add(device: VifDevice): Promise<string | undefined>;
  /** Unplug it (the frontend lets go, or a timeout passes) and remove it. */
  remove(type: 'vif', devid: number): Promise<void>;
}

/** The answer to network-attach / network-detach (toolstack/control-server.ts ControlReply). */
export type VifReply = { ok: true; devid: number; mac: string; vifname: string } | { ok: false; error: string };

/** One connected netif queue: its ring server, TAP queue slot, and what undoes the attach. */
interface VifQueue { nb: NetBack; slot: number; port: number; handles: number[] }

interface Vif {
  spec: VifSpec;
  tap: TapDevice;
  hotplug?: HotplugInfo;
  /** While connected: its queues (one TAP queue each). */
  conn?: { queues: VifQueue[] };
  /** Counters per queue index, of the connections that ended (the live ones are added in stats()). */
  totals: NetbackStats[];
}

function addStats(a: NetbackStats | undefined, b: NetbackStats): NetbackStats {
  const out = { ...b };
  if (a) for (const k of Object.keys(out) as (keyof NetbackStats)[]) out[k] += a[k];
  return out;
}

/** libxl__set_xenstore_nic's frontend nodes. */
export function vifFrontendNodes(spec: VifSpec): NodeValues {
  return { handle: spec.devid, mac: spec.mac, mtu: spec.mtu };
}

/** libxl__set_xenstore_nic's backend nodes, plus hotplug-status as the vif-bridge script would leave it. */
export function vifBackendNodes(spec: VifSpec, tapName: string): NodeValues {
  return {
    handle: spec.devid, mac: spec.mac, mtu: spec.mtu, type: 'vif', vifname: tapName, 'hotplug-status': 'connected',
    ...(spec.bridge ? { bridge: spec.bridge } : {}), ...(spec.script ? { script: spec.script } : {}), ...(spec.ip ? { ip: spec.ip } : {}),
  };
}

/** Vif devices in the domain process's own store: the control plane runs here too. */
export class LocalVifHost implements VifDeviceHost {
  private readonly devices = new Map<number, XenbusDevice<VifDataplane>>();
  constructor(private readonly store: XenStore, private readonly frontendDomid: number, private readonly dataplane: VifDataplane,
    private readonly log: (devid: number, line: string) => void) {}

  async add(d: VifDevice): Promise<string | undefined> {
    try {
      const dev = createDevice<VifDataplane>(this.store, { type: 'vif', frontendDomid: this.frontendDomid, devid: d.devid, frontendNodes: d.frontendNodes, backendNodes: d.backendNodes },
        { log: (l) => this.log(d.devid, l) });
      dev.start(new VifXenbusBackend(d.devid), this.dataplane);
      this.devices.set(d.devid, dev);
      return undefined;
    } catch (e) { return (e as Error).message; }
  }

  async remove(_type: 'vif', devid: number): Promise<void> {
    const dev = this.devices.get(devid);
    this.devices.delete(devid);
    if (dev) await dev.unplug();
  }
}

export class DomainVifs implements VifDataplane {
  private readonly vifs = new Map<number, Vif>();
  /** The vifs with a connected data plane, for the per-exit poll. */
  private connected: Vif[] = [];
  private thread: Worker | undefined;
  private wakeFd = -1;
  /** The TAP reader's control block (tap.ts tapControlBlock). */
  private readonly control = tapControlBlock();
  private grants: GrantAccess | undefined;
  private evtchn: EventChannels | undefined;
  private inputBuffer: SharedArrayBuffer | undefined;
  private host: VifDeviceHost | undefined;

  private constructor(private readonly domid: number, private readonly log: (line: string) => void) {}

  /**
   * Create every vif's TAP device, join its bridge and run its script (`online`), before the guest
   * runs: a missing bridge or a TAP failure is a one-line HostError, and what was set up is undone.
   */
  static open(specs: readonly VifSpec[], domid: number, log: (line: string) => void): DomainVifs {
    const vifs = new DomainVifs(domid, log);
    try {
      for (const spec of specs) {
        if (spec.devid >= TAP_SLOTS) throw new ConfigError(`vif ${spec.devid}: a domain has at most ${TAP_SLOTS} vifs`);
        vifs.vifs.set(spec.devid, vifs.openHostSide(spec));
      }
    } catch (e) {
      vifs.close();
      throw e;
    }
    return vifs;
  }

  /** The TAP device, its bridge and its script's `online`; undone if a step fails. */
  private openHostSide(spec: VifSpec): Vif {
    const name = vifDeviceName(spec, this.domid);
    const tap = TapDevice.open(name, spec.mtu);
    const vif: Vif = { spec, tap, totals: [] };
    try {
      if (spec.bridge) tap.joinBridge(spec.bridge, spec.createBridge);
      if (spec.script) {
        const hotplug: HotplugInfo = { script: spec.script, vif: name, backendPath: backendPath('vif', 0, this.domid, spec.devid), bridge: spec.bridge, ip: spec.ip, mac: spec.mac, mtu: spec.mtu };
        runHotplugScript('online', hotplug, this.log);
        vif.hotplug = hotplug;
      }
    } catch (e) { tap.close(); throw e; }
    return vif;
  }

  /** What the domain's vifs are now (boot vifs and attached ones), for pvbox save. */
  specs(): VifSpec[] { return [...this.vifs.values()].map((v) => v.spec).sort((a, b) => a.devid - b.devid); }

  /** The guest's memory and event channels, and the input ring the TAP reader thread writes to; before any device connects. */
  bind(grants: GrantAccess, evtchn: EventChannels, inputBuffer: SharedArrayBuffer | undefined): void {
    this.grants = grants;
    this.evtchn = evtchn;
    this.inputBuffer = inputBuffer;
  }

  /** The boot vifs as devices to create (the daemon creates them from the 'ready' message, or startDevices does). */
  bootDevices(): VifDevice[] {
    return [...this.vifs.values()].map(({ spec, tap }) => ({ type: 'vif', devid: spec.devid, frontendNodes: vifFrontendNodes(spec), backendNodes: vifBackendNodes(spec, tap.name) }));
  }

  /** From now on devices are created and removed through `host`; with `createBootDevices`, the boot vifs' are created there now. */
  async setHost(host: VifDeviceHost, createBootDevices: boolean): Promise<void> {
    this.host = host;
    if (this.vifs.size) this.startThread();
    if (!createBootDevices) return;
    for (const d of this.bootDevices()) {
      const err = await host.add(d);
      if (err) throw new HostError(`vif ${d.devid}: ${err}`);
    }
  }

  /** The TAP reader thread, once the domain has a vif; it then learns of every TAP fd through the control block. */
  private startThread(): void {
    if (this.thread) return;
    if (!this.inputBuffer) throw new Error('vifs need the domain input ring');
    this.wakeFd = eventfd();
    for (const [devid, vif] of this.vifs) Atomics.store(this.control, tapFdSlot(tapQueueSlot(devid, 0)), vif.tap.fd);
    const init: TapThreadInit = { wakeFd: this.wakeFd, control: this.control.buffer as SharedArrayBuffer, input: this.inputBuffer };
    this.thread = new Worker(fileURLToPath(new URL('./tap-thread-entry.mjs', import.meta.url)), { workerData: init });
    this.thread.unref();
    this.thread.on('error', (e) => this.log(`vif: TAP reader thread failed: ${e.message}`));
  }

  /**
   * pvbox network-attach (xl network-attach, libxl_device_nic_add): the spec gets the next devid
   * (libxl__device_nextid: one past the highest in use), its TAP device, bridge and script are set
   * up, then the xenbus device is created and the guest's netfront finds it.
   */
  async attachNew(specText: unknown): Promise<VifReply> {
    if (typeof specText !== 'string') return { ok: false, error: 'network-attach needs a vif spec' };
    if (!this.host || !this.inputBuffer) return { ok: false, error: 'the domain is not ready for devices yet' };
    const used = [...this.vifs.keys()];
    let devid = used.length ? Math.max(...used) + 1 : 0;
    if (devid >= TAP_SLOTS) devid = Array.from({ length: TAP_SLOTS }, (_, i) => i).find((i) => !used.includes(i)) ?? TAP_SLOTS;
    if (devid >= TAP_SLOTS) return { ok: false, error: `the domain has ${TAP_SLOTS} vifs already` };
    let spec: VifSpec;
    try { spec = parseVifSpec(specText, devid); } catch (e) { return { ok: false, error: (e as Error).message }; }
    for (const v of this.vifs.values()) {
      if (v.spec.mac === spec.mac) return { ok: false, error: `mac ${spec.mac} is used by vif ${v.spec.devid}` };
      if (spec.vifname !== undefined && v.tap.name === spec.vifname) return { ok: false, error: `vifname ${spec.vifname} is used by vif ${v.spec.devid}` };
    }
    let vif: Vif;
    try { vif = this.openHostSide(spec); } catch (e) { return { ok: false, error: (e as Error).message }; }
    // Taken before the first await, so a concurrent network-attach picks another devid.
    this.vifs.set(devid, vif);
    this.startThread();
    Atomics.store(this.control, tapStateSlot(tapQueueSlot(devid, 0)), TapReaderState.DISARMED);
    Atomics.store(this.control, tapFdSlot(tapQueueSlot(devid, 0)), vif.tap.fd);
    const err = await this.host.add({ type: 'vif', devid, frontendNodes: vifFrontendNodes(spec), backendNodes: vifBackendNodes(spec, vif.tap.name) });
    if (err) { this.closeVif(devid); return { ok: false, error: `vif ${devid}: ${err}` }; }
    return { ok: true, devid, mac: spec.mac, vifname: vif.tap.name };
  }

  /** pvbox network-detach <devid|mac> (xl network-detach): unplug the device (netfront closes), then remove the TAP device and run the script's `offline`. */
  async detachOne(target: unknown): Promise<VifReply> {
    const text = String(target ?? '');
    const mac = parseMac(text);
    const vif = [...this.vifs.values()].find((v) => (/^[0-9]+$/.test(text) && v.spec.devid === Number(text)) || (mac && parseMac(v.spec.mac)!.every((b, i) => b === mac[i])));
    if (!vif) return { ok: false, error: `no vif '${text}' (a devid or a MAC)` };
    const { devid } = vif.spec;
    await this.host?.remove('vif', devid);
    this.closeVif(devid);
    return { ok: true, devid, mac: vif.spec.mac, vifname: vif.tap.name };
  }

  /**
   * On every vCPU exit (the domain's host poll): frames the TAP reader thread found are read now,
   * before it kicks the vCPU for them, and each netback queue polls its tx ring while the guest
   * streams (NetBack.poll). True if anything moved.
   */
  poll(): boolean {
    let moved = false;
    const ctl = this.control;
    for (const vif of this.connected) {
      for (const { nb, slot } of vif.conn!.queues) {
        const at = tapStateSlot(slot);
        if (Atomics.load(ctl, at) === TapReaderState.READABLE
          && Atomics.compareExchange(ctl, at, TapReaderState.READABLE, TapReaderState.DISARMED) === TapReaderState.READABLE) {
          Atomics.notify(ctl, at); // the reader thread stops waiting for us
          nb.onHostReadable();
          moved = true;
        }
        if (nb.poll()) moved = true;
      }
    }
    return moved;
  }

  /** An INPUT_NET record: the TAP queue in slot `bytes[0]` (tapQueueSlot) has frames. */
  onInput(bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    const slot = bytes[0]!;
    const vif = this.vifs.get(Math.floor(slot / NETBACK_MAX_QUEUES));
    vif?.conn?.queues[slot % NETBACK_MAX_QUEUES]?.nb.onHostReadable();
    // Not connected (or the rx ring is waiting for buffers): re-armed on connect / by the next rx read that finds the TAP empty.
  }

  /**
   * Serve a connected frontend: map each queue's rings, give the TAP device as many queues, and
   * bind each queue's port. All or nothing: a failure undoes what was done and names the cause.
   */
  attach(devid: number, rings: VifRings): string | undefined {
    const vif = this.vifs.get(devid);
    if (!vif || !this.grants || !this.evtchn) return `no vif ${devid}`;
    if (vif.conn) return `vif ${devid} is already connected`;
    if (rings.queues.length < 1 || rings.queues.length > NETBACK_MAX_QUEUES) return `${rings.queues.length} queues (1..${NETBACK_MAX_QUEUES})`;
    const grants = this.grants, evtchn = this.evtchn;
    const handles: number[] = [], ports: number[] = [];
    const undo = (why: string): string => {
      for (const p of ports) evtchn.disconnectHost(p);
      for (const h of handles) grants.unmap(h);
      this.setTapQueues(vif, 1);
      return why;
    };
    const mapped: { tx: Uint8Array; rx: Uint8Array }[] = [];
    for (const [q, r] of rings.queues.entries()) {
      const tx = grants.map(r.txRef, { readonly: false });
      if (tx.status !== 0 || !tx.bytes) return undo(`queue ${q}: cannot map tx-ring-ref ${r.txRef} (grant status ${tx.status})`);
      handles.push(tx.handle!);
      const rx = grants.map(r.rxRef, { readonly: false });
      if (rx.status !== 0 || !rx.bytes) return undo(`queue ${q}: cannot map rx-ring-ref ${r.rxRef} (grant status ${rx.status})`);
      handles.push(rx.handle!);
      mapped.push({ tx: tx.bytes, rx: rx.bytes });
    }
    try { this.setTapQueues(vif, rings.queues.length); } catch (e) { return undo((e as Error).message); }
    const f = rings.features;
    // Let the host kernel hand over unfinished frames only where the frontend can finish them.
    try {
      vif.tap.setOffload((f.csumBlank ? TUN_F_CSUM : 0) | (f.csumBlank && f.sg && f.gsoTcpv4 ? TUN_F_TSO4 : 0) | (f.csumBlank && f.sg && f.gsoTcpv6 ? TUN_F_TSO6 : 0));
    } catch (e) { return undo((e as Error).message); }
    const queues: VifQueue[] = [];
    for (const [q, r] of rings.queues.entries()) {
      const slot = tapQueueSlot(devid, q);
      const host = {
        transmit: (frame: Uint8Array) => vif.tap.write(frame, q),
        receive: (buf: Uint8Array) => {
          const n = vif.tap.read(buf, q);
          if (n === 0) this.arm(slot);
          else if (n < 0) this.log(`vif ${vif.tap.name}: reading TAP queue ${q} failed; no more frames to the guest from it`);
          return n > 0 ? n : 0;
        },
      };
      const name = rings.queues.length > 1 ? `${vif.tap.name}-q${q}` : vif.tap.name;
      const nb = new NetBack(mapped[q]!.tx, mapped[q]!.rx, grants, host, f, () => evtchn.setPending(r.port), (l) => this.log(`${name}: ${l}`));
      if (evtchn.connectHost(r.port, () => nb.onNotify()) !== 0) return undo(`queue ${q}: port ${r.port} is not an unbound port for Domain-0`);
      ports.push(r.port);
      queues.push({ nb, slot, port: r.port, handles: handles.slice(2 * q, 2 * q + 2) });
    }
    vif.conn = { queues };
    this.connected = [...this.connected, vif];
    // Frames that queued while the guest booted; arms the reader where a TAP queue is empty.
    for (const q of queues) q.nb.onHostReadable();
    return undefined;
  }

  /**
   * Attach or close TAP queues until the vif has `n`. Queue 0 is always there; a queue's fd is taken
   * from the reader thread (disarmed, forgotten, the thread woken) before it is closed.
   */
  private setTapQueues(vif: Vif, n: number): void {
    const { devid } = vif.spec;
    for (let q = Math.max(1, n); q < vif.tap.queues; q++) {
      const slot = tapQueueSlot(devid, q);
      Atomics.store(this.control, tapStateSlot(slot), TapReaderState.DISARMED);
      Atomics.store(this.control, tapFdSlot(slot), -1);
      Atomics.notify(this.control, tapStateSlot(slot));
    }
    if (vif.tap.queues > n && this.wakeFd >= 0) signalEventfd(this.wakeFd);
    const had = vif.tap.queues;
    vif.tap.setQueues(n);
    for (let q = had; q < vif.tap.queues; q++) {
      const slot = tapQueueSlot(devid, q);
      Atomics.store(this.control, tapStateSlot(slot), TapReaderState.DISARMED);
      Atomics.store(this.control, tapFdSlot(slot), vif.tap.queueFd(q));
    }
  }

  detach(devid: number): void {
    const vif = this.vifs.get(devid);
    if (!vif?.conn) return;
    for (const [i, q] of vif.conn.queues.entries()) {
      vif.totals[i] = addStats(vif.totals[i], q.nb.stats);
      Atomics.store(this.control, tapStateSlot(q.slot), TapReaderState.DISARMED);
      Atomics.notify(this.control, tapStateSlot(q.slot));
      this.evtchn?.disconnectHost(q.port);
      for (const h of q.handles) this.grants?.unmap(h);
    }
    vif.conn = undefined;
    this.connected = this.connected.filter((v) => v !== vif);
    this.setTapQueues(vif, 1);
  }

  /** Counters per vif since it was created, per queue index over all its connections; for --stats. */
  stats(): { name: string; queues: NetbackStats[]; writeErrors: number }[] {
    return [...this.vifs.values()].map((v) => {
      const queues = v.totals.map((t) => ({ ...t }));
      for (const [i, q] of (v.conn?.queues ?? []).entries()) queues[i] = addStats(queues[i], q.nb.stats);
      return { name: v.tap.name, queues, writeErrors: v.tap.writeErrors };
    });
  }

  /** Stop the reader thread, disconnect, run scripts with `offline`, close the TAP devices (which removes them). Idempotent. */
  close(): void {
    Atomics.store(this.control, 0, 1);
    if (this.wakeFd >= 0) signalEventfd(this.wakeFd);
    void this.thread?.terminate();
    this.thread = undefined;
    for (const devid of [...this.vifs.keys()]) this.closeVif(devid);
  }

  /** One vif's data plane and host side: the reader forgets its fd before it is closed. */
  private closeVif(devid: number): void {
    const vif = this.vifs.get(devid);
    if (!vif) return;
    this.detach(devid);
    Atomics.store(this.control, tapStateSlot(tapQueueSlot(devid, 0)), TapReaderState.DISARMED);
    Atomics.store(this.control, tapFdSlot(tapQueueSlot(devid, 0)), -1);
    if (this.wakeFd >= 0) signalEventfd(this.wakeFd);
    if (vif.hotplug) runHotplugScript('offline', vif.hotplug, this.log);
    vif.tap.close();
    this.vifs.delete(devid);
  }

  private arm(slot: number): void {
    if (Atomics.compareExchange(this.control, tapStateSlot(slot), TapReaderState.DISARMED, TapReaderState.ARMED) !== TapReaderState.DISARMED) return;
    if (this.wakeFd >= 0) signalEventfd(this.wakeFd);
  }
}
