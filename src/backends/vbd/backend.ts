// The vbd backend's control plane: the nodes and features blkback publishes (Linux xen-blkback xenbus.c: xen_blkbk_probe, connect: sectors/info/sector-size, feature-*), and the rings xen-blkfront's talk_to_blkback then writes (ring-page-order, multi-queue-num-queues, [queue-N/]ring-ref[i], event-channel, protocol, feature-persistent), read as connect_ring / read_per_ring_refs do.
import { VDISK_READONLY } from '../../abi/io/blkif.js';
import type { NodeValues } from '../../xenbus/device.js';
import type { FrontendInfo, XenbusBackend, XenbusDeviceHandle } from '../../xenbus/device.js';
import { readRingKeys } from '../ring-dataplane.js';
import { MAX_INDIRECT_SEGMENTS } from './blkback.js';
import type { BlkDisk } from './blkback.js';
import type { DiskSpec } from './disk-spec.js';
import type { QueueRings, VbdAttach } from './dataplane.js';

/** multi-queue-max-queues: Linux blkback offers one per host CPU (xenblk_max_queues); a fixed four keeps guests' choices the same everywhere. */
export const MAX_QUEUES = 4;
/** max-ring-page-order: Linux blkback's default (XENBUS_MAX_RING_GRANT_ORDER, 16 pages). */
export const MAX_RING_PAGE_ORDER = 4;

/** What the attach needs from the data plane (local, or a remote domain process later). */
export interface VbdAttacher { attach(a: VbdAttach): string | undefined | Promise<string | undefined>; detach(devid: number): void }

/** The backend directory as xl and blkback together leave it before the frontend starts. */
export function vbdBackendNodes(spec: DiskSpec, disk: BlkDisk): NodeValues {
  return {
    params: spec.target, type: 'file', mode: spec.readonly ? 'r' : 'w', 'device-type': 'disk',
    sectors: Math.floor(disk.sizeBytes / 512), 'sector-size': 512, 'physical-sector-size': 512,
    info: spec.readonly ? VDISK_READONLY : 0,
    // Flush is preferred by blkfront over barriers when both are offered (blkfront_gather_backend_features).
    'feature-flush-cache': 1, 'feature-barrier': 1,
    ...(disk.canDiscard ? { 'feature-discard': 1, 'discard-granularity': 4096, 'discard-alignment': 0, 'discard-secure': 0 } : {}),
    'feature-max-indirect-segments': MAX_INDIRECT_SEGMENTS,
    'feature-persistent': 1,
    'multi-queue-max-queues': MAX_QUEUES,
    'max-ring-page-order': MAX_RING_PAGE_ORDER,
  };
}

/** The frontend directory xl writes for a disk. */
export function vbdFrontendNodes(spec: DiskSpec): NodeValues {
  return { 'virtual-device': spec.devid, 'device-type': 'disk' };
}

/** Queues as they cross the domain link (from the daemon, which read them from the guest's nodes): checked again here. */
export function checkQueues(v: unknown): QueueRings[] | undefined {
  if (!Array.isArray(v) || v.length < 1 || v.length > MAX_QUEUES) return undefined;
  const u32 = (x: unknown): x is number => typeof x === 'number' && Number.isInteger(x) && x >= 0 && x <= 0xffffffff;
  const out: QueueRings[] = [];
  for (const q of v as { ringRefs?: unknown; port?: unknown }[]) {
    const refs = q?.ringRefs;
    if (!Array.isArray(refs) || refs.length < 1 || refs.length > 1 << MAX_RING_PAGE_ORDER || (refs.length & (refs.length - 1)) !== 0 || !refs.every(u32) || !u32(q.port)) return undefined;
    out.push({ ringRefs: [...refs], port: q.port });
  }
  return out;
}

/** One queue's keys under `prefix` ('' or 'queue-N/'): ring-ref (order 0) or ring-ref0..ring-ref{2^order-1}, and event-channel. */
function readQueue(d: XenbusDeviceHandle, prefix: string, order: number): QueueRings {
  if (order === 0) {
    const { ringRef, port } = readRingKeys(d, `${prefix}ring-ref`, `${prefix}event-channel`);
    return { ringRefs: [ringRef], port };
  }
  const ringRefs: number[] = [];
  let port = 0;
  for (let i = 0; i < 1 << order; i++) {
    const k = readRingKeys(d, `${prefix}ring-ref${i}`, `${prefix}event-channel`);
    ringRefs.push(k.ringRef);
    port = k.port;
  }
  return { ringRefs, port };
}

export class VbdXenbusBackend implements XenbusBackend<VbdAttacher> {
  readonly type = 'vbd' as const;
  private io: VbdAttacher | undefined;
  constructor(readonly devid: number) {}

  async connect(fe: FrontendInfo, io: VbdAttacher): Promise<void> {
    const d = fe.device;
    const protocol = d.readFrontend('protocol');
    if (protocol !== undefined && protocol !== 'x86_64-abi') throw new Error(`unsupported protocol '${protocol}'`);
    const order = d.readFrontendFeature('ring-page-order', 0);
    if (order > MAX_RING_PAGE_ORDER) throw new Error(`ring-page-order ${order} is above max-ring-page-order ${MAX_RING_PAGE_ORDER}`);
    // connect_ring: absent means one queue; zero or more than offered is an error.
    const nq = d.readFrontendFeature('multi-queue-num-queues', 1);
    if (nq < 1 || nq > MAX_QUEUES) throw new Error(`multi-queue-num-queues ${nq} is not 1..${MAX_QUEUES}`);
    const queues: QueueRings[] = [];
    for (let q = 0; q < nq; q++) queues.push(readQueue(d, nq === 1 ? '' : `queue-${q}/`, order));
    const persistent = d.readFrontendFeature('feature-persistent', 0) === 1;
    const err = await io.attach({ devid: this.devid, queues, persistent });
    if (err) throw new Error(err);
    this.io = io;
  }

  frontendChanged(): void {}

  disconnect(): void {
    this.io?.detach(this.devid);
    this.io = undefined;
  }
}
