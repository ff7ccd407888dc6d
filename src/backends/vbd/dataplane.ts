// The vbd data plane of one domain: its images (opened and locked in the block I/O thread), and per connected disk one BlkBack per queue, each on its mapped ring pages and bound event channel (Linux xen-blkback xenbus.c connect_ring / read_per_ring_refs / xen_blkif_map).
import type { EventChannels } from '../../hypervisor/event_channel.js';
import type { GrantAccess } from '../../hypervisor/grant_table_backend.js';
import type { DiskSpec } from './disk-spec.js';
import { BlkBack, type BlkDisk } from './blkback.js';
import { BlkifRing } from './blkif-ring.js';
import { BlockIoThread } from './io-client.js';

/** One queue of a disk as the frontend published it: 2^ring-page-order ring grants and an event channel. */
export interface QueueRings { ringRefs: number[]; port: number }

export interface VbdAttach { devid: number; queues: QueueRings[]; persistent: boolean }

interface Connected { backs: BlkBack[]; handles: number[]; ports: number[] }

export class VbdDataplane {
  private readonly disks = new Map<number, BlkDisk & { spec: DiskSpec }>();
  private readonly connected = new Map<number, Connected>();
  /** Each disk's queues' counters from its last connection (kept after it ends, for --stats). */
  private readonly lastStats = new Map<number, BlkBack['stats'][]>();

  private constructor(private readonly io: BlockIoThread, private readonly grants: GrantAccess, private readonly evtchn: EventChannels,
    private readonly log: (devid: number, line: string) => void) {}

  /**
   * Start the I/O thread and open (and lock) every disk before the guest runs: a missing,
   * locked or corrupt image is a one-line ImageError now, not a dead device later.
   */
  static async open(specs: readonly DiskSpec[], input: SharedArrayBuffer, grants: GrantAccess, evtchn: EventChannels,
    log: (devid: number, line: string) => void): Promise<VbdDataplane> {
    const dp = new VbdDataplane(new BlockIoThread(input), grants, evtchn, log);
    try {
      for (const spec of specs) await dp.addDisk(spec);
    } catch (e) {
      await dp.shutdown();
      throw e;
    }
    return dp;
  }

  async addDisk(spec: DiskSpec): Promise<BlkDisk> {
    let opened;
    try {
      opened = await this.io.open(spec.target, { readonly: spec.readonly, format: spec.format });
    } catch (e) {
      (e as Error).message = `disk ${spec.vdev}: ${(e as Error).message}`;
      throw e;
    }
    const disk = { spec, disk: opened.disk, sizeBytes: opened.info.sizeBytes, readonly: spec.readonly, canDiscard: opened.info.canDiscard && !spec.readonly };
    this.disks.set(spec.devid, disk);
    return disk;
  }

  disk(devid: number): (BlkDisk & { spec: DiskSpec }) | undefined { return this.disks.get(devid); }

  /** Completions arrived from the I/O thread (an INPUT_BLKIO record). */
  onCompletions(bytes: Uint8Array): void { this.io.onCompletions(bytes); }

  /** Map each queue's ring and bind its port; an error for the frontend's error node, or undefined. */
  attach(a: VbdAttach): string | undefined {
    const disk = this.disks.get(a.devid);
    if (!disk) return `no disk ${a.devid}`;
    if (this.connected.has(a.devid)) return `disk ${a.devid} is already connected`;
    const c: Connected = { backs: [], handles: [], ports: [] };
    this.connected.set(a.devid, c);
    for (const [qi, q] of a.queues.entries()) {
      const pages: Uint8Array[] = [];
      for (const ref of q.ringRefs) {
        const m = this.grants.map(ref, { readonly: false });
        if (m.status !== 0 || !m.bytes) { this.detach(a.devid); return `cannot map ring-ref ${ref} of queue ${qi} (grant status ${m.status})`; }
        c.handles.push(m.handle);
        pages.push(m.bytes);
      }
      const port = q.port;
      const back = new BlkBack(new BlkifRing(pages), this.grants, disk, this.io, {
        persistent: a.persistent,
        notify: () => this.evtchn.setPending(port),
        log: (l) => this.log(a.devid, a.queues.length > 1 ? `queue ${qi}: ${l}` : l),
      });
      c.backs.push(back);
      this.lastStats.set(a.devid, c.backs.map((b) => b.stats));
      if (this.evtchn.connectHost(port, () => back.onNotify()) !== 0) { this.detach(a.devid); return `port ${port} is not an unbound port for Domain-0`; }
      c.ports.push(port);
    }
    return undefined;
  }

  detach(devid: number): void {
    const c = this.connected.get(devid);
    if (!c) return;
    this.connected.delete(devid);
    for (const p of c.ports) this.evtchn.disconnectHost(p);
    for (const b of c.backs) b.close();
    for (const h of c.handles) this.grants.unmap(h);
  }

  /** Counters per disk (vdev) and queue, from each disk's last connection. */
  stats(): { vdev: string; queues: BlkBack['stats'][] }[] {
    return [...this.lastStats.entries()].map(([devid, queues]) => ({ vdev: this.disks.get(devid)?.spec.vdev ?? `vbd ${devid}`, queues: queues.map((q) => ({ ...q })) }));
  }

  /** Detach a disk and close its image (hot-unplug). */
  async removeDisk(devid: number): Promise<void> {
    this.detach(devid);
    const d = this.disks.get(devid);
    if (!d) return;
    this.disks.delete(devid);
    const err = await this.io.close(d.disk);
    if (err) this.log(devid, `closing ${d.spec.target}: ${err}`);
  }

  /** Detach everything, flush and close the images (releasing their locks), stop the I/O thread. */
  async shutdown(): Promise<void> {
    for (const devid of [...this.connected.keys()]) this.detach(devid);
    for (const d of this.disks.values()) {
      const err = await this.io.close(d.disk);
      if (err) this.log(d.spec.devid, `closing ${d.spec.target}: ${err}`);
    }
    this.disks.clear();
    await this.io.terminate();
  }
}
