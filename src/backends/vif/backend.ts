// The vif backend's control plane: the xenbus device whose frontend is Linux xen-netfront (talk_to_netback: tx-ring-ref, rx-ring-ref, event-channel, request-rx-copy, feature-*), as Linux netback's xenbus.c netback_probe advertises and connect/connect_data_rings/read_xenbus_vif_flags read them.
import type { FrontendInfo, NodeValues, XenbusBackend, XenbusDeviceHandle } from '../../xenbus/device.js';
import { readRingKeys } from '../ring-dataplane.js';
import type { RxFeatures } from './netback.js';

/** What one connected vif needs from the data plane: its two rings, its port, and what the frontend can take. */
export interface VifRings { txRef: number; rxRef: number; port: number; features: RxFeatures }

/** Attach/detach a vif's rings by devid: DomainVifs in the domain process, or a stand-in in pvbox xenstored that asks it over the domain link (toolstack/domain-link.ts). */
export interface VifDataplane {
  /** Start serving `devid`; an error message for the frontend's error node, or undefined. */
  attach(devid: number, rings: VifRings): string | undefined | Promise<string | undefined>;
  detach(devid: number): void;
}

const u32 = (x: unknown): x is number => Number.isInteger(x) && (x as number) >= 0 && (x as number) <= 0xffffffff;

/** A vif's rings as they crossed the domain link ({txRef, rxRef, port, features}), checked; undefined if malformed. */
export function checkVifRings(m: { txRef?: unknown; rxRef?: unknown; port?: unknown; features?: unknown }): VifRings | undefined {
  const f = m.features as Record<string, unknown> | undefined;
  if (!u32(m.txRef) || !u32(m.rxRef) || !u32(m.port) || typeof f !== 'object' || f === null) return undefined;
  const flag = (k: keyof RxFeatures) => f[k] === true;
  return { txRef: m.txRef, rxRef: m.rxRef, port: m.port, features: { sg: flag('sg'), gsoTcpv4: flag('gsoTcpv4'), gsoTcpv6: flag('gsoTcpv6'), csumBlank: flag('csumBlank') } };
}

/**
 * What pvbox's netback offers (netback_probe's writes; absent keys mean "not supported"):
 * scatter-gather, TSO for IPv4 and IPv6, IPv6 checksum offload, the copying rx path. Not offered:
 * - multi-queue-max-queues: netfront uses min(this, xennet_max_queues = its online CPUs) queues
 *   (talk_to_netback), and a pvbox guest has one vCPU, so it would take one queue and write the
 *   flat keys anyway; worth offering together with more vCPUs.
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
    // connect(): a frontend asking for several queues, or split event channels, was not offered them.
    if (d.readFrontend('multi-queue-num-queues') !== undefined && d.readFrontendFeature('multi-queue-num-queues', 1) !== 1) throw new Error('multiple queues are not supported yet');
    if (d.readFrontend('event-channel') === undefined && d.readFrontend('event-channel-tx') !== undefined) throw new Error('split event channels are not supported yet');
    // read_xenbus_vif_flags: the copying receive path is the only one (flipping is long gone), rx-notify is mandatory.
    if (d.readFrontendFeature('request-rx-copy', 0) !== 1) throw new Error('the frontend does not use the copying receive path (request-rx-copy)');
    if (d.readFrontendFeature('feature-rx-notify', 0) !== 1) throw new Error('feature-rx-notify is mandatory');
    const tx = readRingKeys(d, 'tx-ring-ref', 'event-channel');
    const rx = readRingKeys(d, 'rx-ring-ref', 'event-channel');
    const features: RxFeatures = {
      sg: d.readFrontendFeature('feature-sg', 0) === 1,
      gsoTcpv4: d.readFrontendFeature('feature-gso-tcpv4', 0) === 1,
      gsoTcpv6: d.readFrontendFeature('feature-gso-tcpv6', 0) === 1,
      csumBlank: d.readFrontendFeature('feature-no-csum-offload', 0) !== 1,
    };
    const err = await io.attach(this.devid, { txRef: tx.ringRef, rxRef: rx.ringRef, port: tx.port, features });
    if (err) throw new Error(err);
    this.io = io;
  }

  frontendChanged(): void {}

  disconnect(): void {
    this.io?.detach(this.devid);
    this.io = undefined;
  }
}
