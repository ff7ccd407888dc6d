// The vif backend's control plane: the xenbus device whose frontend is Linux xen-netfront (talk_to_netback: tx-ring-ref, rx-ring-ref, event-channel, request-rx-copy, feature-*), as Linux netback's xenbus.c netback_probe advertises and connect/connect_data_rings/read_xenbus_vif_flags read them.
import type { FrontendInfo, NodeValues, XenbusBackend, XenbusDeviceHandle } from '../../xenbus/device.js';
import { readRingKeys } from '../ring-dataplane.js';
import { NETBACK_MAX_QUEUES, type RxFeatures } from './netback.js';

/** One netif queue: its tx and rx rings and the event channel they share. */
export interface VifQueueRings { txRef: number; rxRef: number; port: number }
/** What one connected vif needs from the data plane: its queues (1..NETBACK_MAX_QUEUES) and what the frontend can take. */
export interface VifRings { queues: VifQueueRings[]; features: RxFeatures }


/** Attach/detach a vif's rings by devid: DomainVifs in the domain process, or a stand-in in pvbox xenstored that asks it over the domain link (toolstack/domain-link.ts). */
export interface VifDataplane {
  /** Start serving `devid`; an error message for the frontend's error node, or undefined. */
  attach(devid: number, rings: VifRings): string | undefined | Promise<string | undefined>;
  detach(devid: number): void;
}

const u32 = (x: unknown): x is number => Number.isInteger(x) && (x as number) >= 0 && (x as number) <= 0xffffffff;

/** A vif's rings as they crossed the domain link ({queues: [{txRef, rxRef, port}], features}), checked; undefined if malformed. */
export function checkVifRings(m: { queues?: unknown; features?: unknown }): VifRings | undefined {
  const f = m.features as Record<string, unknown> | undefined;
  if (!Array.isArray(m.queues) || m.queues.length < 1 || m.queues.length > NETBACK_MAX_QUEUES || typeof f !== 'object' || f === null) return undefined;
  const queues: VifQueueRings[] = [];
  for (const q of m.queues as { txRef?: unknown; rxRef?: unknown; port?: unknown }[]) {
    if (typeof q !== 'object' || q === null || !u32(q.txRef) || !u32(q.rxRef) || !u32(q.port)) return undefined;
    queues.push({ txRef: q.txRef, rxRef: q.rxRef, port: q.port });
  }
  const flag = (k: keyof RxFeatures) => f[k] === true;
  return { queues, features: { sg: flag('sg'), gsoTcpv4: flag('gsoTcpv4'), gsoTcpv6: flag('gsoTcpv6'), csumBlank: flag('csumBlank') } };
}

/**
 * What pvbox's netback offers (netback_probe's writes; absent keys mean "not supported"):
 * scatter-gather, TSO for IPv4 and IPv6, IPv6 checksum offload, the copying rx path, up to
 * NETBACK_MAX_QUEUES queues (each its own TAP queue: tap.ts). Not offered:
 * - feature-split-event-channels: separate tx and rx ports (setup_netfront_split). On pvbox every
 *   notification is a VM exit, and one shared port lets a single notification carry tx
 *   completions and rx frames together (NetBack batches them so), so splitting would add exits.
 * - feature-multicast-control, feature-ctrl-ring, feature-xdp-headroom.
 */
export const NETBACK_FEATURES: NodeValues = {
  'feature-sg': 1,
  'feature-gso-tcpv4': 1,
  'feature-gso-tcpv6': 1,
  'feature-ipv6-csum-offload': 1,
  'feature-rx-copy': 1,
  'feature-rx-flip': 0,
  'multi-queue-max-queues': NETBACK_MAX_QUEUES,
};

export class VifXenbusBackend implements XenbusBackend<VifDataplane> {
  readonly type = 'vif' as const;
  private io: VifDataplane | undefined;
  constructor(readonly devid: number) {}

  realize(dev: XenbusDeviceHandle): void {
    dev.writeFeatures(NETBACK_FEATURES);
  }

  async connect(fe: FrontendInfo, io: VifDataplane): Promise<void> {
    const d = fe.device;
    // connect(): absent means one queue with its keys at the top (talk_to_netback's flat layout), else
    // queue-N/ directories; zero or more than offered is an error (requested_num_queues checks).
    const nq = d.readFrontendFeature('multi-queue-num-queues', 1);
    if (nq < 1 || nq > NETBACK_MAX_QUEUES) throw new Error(`multi-queue-num-queues ${nq} is not 1..${NETBACK_MAX_QUEUES}`);
    // read_xenbus_vif_flags: the copying receive path is the only one (flipping is long gone), rx-notify is mandatory.
    if (d.readFrontendFeature('request-rx-copy', 0) !== 1) throw new Error('the frontend does not use the copying receive path (request-rx-copy)');
    if (d.readFrontendFeature('feature-rx-notify', 0) !== 1) throw new Error('feature-rx-notify is mandatory');
    const queues: VifQueueRings[] = [];
    for (let q = 0; q < nq; q++) {
      const prefix = nq === 1 ? '' : `queue-${q}/`;
      // connect_data_rings: split event channels were not offered (event-channel-tx/-rx).
      if (d.readFrontend(`${prefix}event-channel`) === undefined && d.readFrontend(`${prefix}event-channel-tx`) !== undefined) throw new Error('split event channels are not supported');
      const tx = readRingKeys(d, `${prefix}tx-ring-ref`, `${prefix}event-channel`);
      const rx = readRingKeys(d, `${prefix}rx-ring-ref`, `${prefix}event-channel`);
      queues.push({ txRef: tx.ringRef, rxRef: rx.ringRef, port: tx.port });
    }
    const features: RxFeatures = {
      sg: d.readFrontendFeature('feature-sg', 0) === 1,
      gsoTcpv4: d.readFrontendFeature('feature-gso-tcpv4', 0) === 1,
      gsoTcpv6: d.readFrontendFeature('feature-gso-tcpv6', 0) === 1,
      csumBlank: d.readFrontendFeature('feature-no-csum-offload', 0) !== 1,
    };
    const err = await io.attach(this.devid, { queues, features });
    if (err) throw new Error(err);
    this.io = io;
  }

  frontendChanged(): void {}

  disconnect(): void {
    this.io?.detach(this.devid);
    this.io = undefined;
  }
}
