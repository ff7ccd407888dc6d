// The vif backend's data plane: one netif queue (a tx and an rx ring sharing one event channel) served by grant copy, to and from a host interface that speaks virtio_net_hdr frames (Linux drivers/net/xen-netback/netback.c xenvif_tx_build_gops/xenvif_count_requests/xenvif_get_extras, rx.c xenvif_rx_skb; public/io/netif.h; include/uapi/linux/virtio_net.h).
//
// Guest → host (tx ring): a packet is one netif_tx_request whose size is the whole packet, then
// netif_extra_info slots if NETTXF_extra_info (GSO), then one request per further fragment while
// NETTXF_more_data. Every slot gets one response in order: the requests their id and status, the
// extras NETIF_RSP_NULL (netback.c make_tx_response). The packet is copied out of the grants into a
// frame with a virtio_net_hdr in front (checksum and GSO offloads, which the host kernel finishes).
//
// Host → guest (rx ring): the frontend posts netif_rx_request{id, gref} of whole pages; a frame takes
// one page per 4 KiB of data, plus one slot for a GSO extra right after the first (rx.c
// xenvif_rx_skb: "Extras must go after the first data slot"). A frame waits (one, here) until the
// frontend has posted enough requests; while it waits pvbox does not read its host interface, so the
// host kernel queues or drops, as it does for Linux netback's stopped queue.
//
// Bad requests (guest data, never trusted): Linux netback disables the whole vif for some of them
// (xenvif_fatal_tx_err: a slot crossing its page, more than fatal_skb_slots slots, a bad extra). pvbox
// answers NETIF_RSP_ERROR for every slot of that packet and goes on serving the ring, so one bad
// packet costs that packet only (issue 5). Only an impossible ring (req_prod more than a ring ahead)
// stops that ring, as blkback does.
import {
  NETIF_RSP_ERROR, NETIF_RSP_NULL, NETIF_RSP_OKAY, NETRXF_csum_blank, NETRXF_data_validated, NETRXF_extra_info, NETRXF_more_data,
  NETTXF_csum_blank, NETTXF_data_validated, NETTXF_extra_info, NETTXF_more_data, XEN_NETIF_EXTRA_FLAG_MORE, XEN_NETIF_EXTRA_TYPE_GSO,
  XEN_NETIF_EXTRA_TYPE_MAX, XEN_NETIF_EXTRA_TYPE_NONE, XEN_NETIF_GSO_TYPE_TCPV4, XEN_NETIF_GSO_TYPE_TCPV6, netif_rx_sring_entry,
  netif_tx_sring_entry,
} from '../../abi/io/netif.js';
import { __RING_SIZE, sring } from '../../abi/io/ring.js';
import type { GrantCopySegment } from '../../hypervisor/grant_table_backend.js';

const PAGE = 4096;
const HEADER = sring.size;
const TX_SLOT = netif_tx_sring_entry.size, RX_SLOT = netif_rx_sring_entry.size;
export const NET_TX_RING_SIZE = __RING_SIZE(TX_SLOT, PAGE);
export const NET_RX_RING_SIZE = __RING_SIZE(RX_SLOT, PAGE);
/** Linux netback's XEN_NETBK_LEGACY_SLOTS_MAX (= XEN_NETIF_NR_SLOTS_MIN): slots one tx packet may use. */
export const XEN_NETBK_LEGACY_SLOTS_MAX = 18;
/** netfront's xennet_get_responses accepts at most XEN_NETIF_NR_SLOTS_MIN data slots per rx packet. */
const RX_MAX_DATA_SLOTS = 18;
const ETH_HLEN = 14;
/**
 * multi-queue-max-queues. Linux netback offers one queue per Domain-0 CPU (xenvif_max_queues); a
 * fixed four (as blkback's MAX_QUEUES) keeps guests' choices the same on every host. netfront takes
 * min(this, xennet_max_queues), which is its own online CPUs unless `xen_netfront.max_queues=N`.
 * Each queue is a NetBack of its own.
 */
export const NETBACK_MAX_QUEUES = 4;
/** Largest tx frame: a tx request's size is a u16 (XEN_NETIF_MAX_TX_SIZE). */
export const MAX_FRAME = 0xffff;
/**
 * Largest rx frame: rx sizes are per slot, so only the slot count bounds a frame. The host kernel's
 * TSO frames reach 64 KiB of TCP payload plus headers (GSO_MAX_SIZE 65536 + Ethernet), past 0xffff.
 */
export const MAX_RX_FRAME = RX_MAX_DATA_SLOTS * PAGE;
/**
 * How long the tx ring stays polled after it last had packets, and a host frame short of rx buffers
 * looks for new ones on exits before asking for a notification (see NetBack.poll). A TCP sender
 * sends in bursts clocked by the ACKs it receives, a round trip apart (a few hundred µs here), so
 * the window spans the gaps of a stream; a lone packet ends it at the first quiet exit after this.
 */
export const POLL_WINDOW_MS = 1;

// ---- virtio_net_hdr (include/uapi/linux/virtio_net.h): what a TAP device with IFF_VNET_HDR reads and writes first ----
export const VNET_HDR_LEN = 10;
export const VIRTIO_NET_HDR_F_NEEDS_CSUM = 1;
export const VIRTIO_NET_HDR_F_DATA_VALID = 2;
export const VIRTIO_NET_HDR_GSO_NONE = 0;
export const VIRTIO_NET_HDR_GSO_TCPV4 = 1;
export const VIRTIO_NET_HDR_GSO_UDP = 3;
export const VIRTIO_NET_HDR_GSO_TCPV6 = 4;
export const VIRTIO_NET_HDR_GSO_ECN = 0x80;

/** The host side of a vif (a TAP device, or a test's fake). Frames carry a virtio_net_hdr first. */
export interface NetHost {
  /** A frame from the guest. The buffer is reused after the call returns. */
  transmit(frame: Uint8Array): void;
  /** Read the next frame for the guest into `buf`: its length, or 0 when none is waiting. */
  receive(buf: Uint8Array): number;
}

/** What the frontend said it can take on its rx ring (talk_to_netback's keys). */
export interface RxFeatures {
  /** feature-sg: frames over one page (several slots). */
  sg: boolean;
  /** feature-gso-tcpv4 / -tcpv6: GSO frames with an extra slot. */
  gsoTcpv4: boolean;
  gsoTcpv6: boolean;
  /** Not feature-no-csum-offload: frames whose checksum is still blank (NETRXF_csum_blank). */
  csumBlank: boolean;
}

export interface NetbackStats {
  txPackets: number; txBytes: number; txErrors: number;
  rxPackets: number; rxBytes: number; rxDropped: number; rxErrors: number;
}

interface TxRequest { gref: number; offset: number; flags: number; id: number; size: number }

/** Where a blank checksum starts and is stored, from the frame's own headers (skb_checksum_setup). */
export function checksumOffsets(frame: Uint8Array, at: number, len: number): { start: number; offset: number; l4Header: number } | undefined {
  const b = (i: number) => (i < len ? frame[at + i]! : -1);
  let ethType = (b(12) << 8) | b(13), l3 = ETH_HLEN;
  if (ethType === 0x8100) { ethType = (b(16) << 8) | b(17); l3 = 18; }
  let proto: number, l4: number;
  if (ethType === 0x0800) {
    const ihl = (b(l3) & 15) * 4;
    // A fragment has no L4 header of its own to finish (skb_checksum_setup_ipv4: ip_is_fragment).
    if (ihl < 20 || ((b(l3 + 6) & 0x3f) | b(l3 + 7)) !== 0) return undefined;
    proto = b(l3 + 9); l4 = l3 + ihl;
  } else if (ethType === 0x86dd) {
    proto = b(l3 + 6); l4 = l3 + 40;
    // Hop-by-hop, routing and destination options headers (skb_checksum_setup_ipv6 walks these).
    for (let n = 0; (proto === 0 || proto === 43 || proto === 60) && n < 8; n++) {
      const next = b(l4);
      l4 += (b(l4 + 1) + 1) * 8;
      proto = next;
    }
  } else return undefined;
  if (proto === 6) {
    const doff = (b(l4 + 12) >> 4) * 4;
    return doff >= 20 && l4 + doff <= len ? { start: l4, offset: 16, l4Header: doff } : undefined;
  }
  if (proto === 17) return l4 + 8 <= len ? { start: l4, offset: 6, l4Header: 8 } : undefined;
  return undefined;
}

export class NetBack {
  readonly stats: NetbackStats = { txPackets: 0, txBytes: 0, txErrors: 0, rxPackets: 0, rxBytes: 0, rxDropped: 0, rxErrors: 0 };
  private readonly txIdx: Int32Array; // req_prod, req_event, rsp_prod, rsp_event
  private readonly rxIdx: Int32Array;
  private readonly txDv: DataView;
  private readonly rxDv: DataView;
  private txReqCons = 0;
  private txRspProdPvt = 0;
  private rxReqCons = 0;
  private rxRspProdPvt = 0;
  private txBroken = false;
  private rxBroken = false;
  /** Tx frames are assembled here: virtio_net_hdr, then the packet. */
  private readonly txBuf = new Uint8Array(VNET_HDR_LEN + MAX_FRAME);
  /** The host frame waiting for rx requests (rxPending bytes of rxBuf), if any. */
  private readonly rxBuf = new Uint8Array(VNET_HDR_LEN + MAX_RX_FRAME);
  private rxPending = 0;
  private warnings = 0;
  /** The tx ring is polled on every exit instead of being re-armed (see poll()). */
  private txPolling = false;
  /** Since when the pending host frame waits for rx buffers (performance.now()), or Infinity. */
  private rxStallSince = Infinity;
  /** When the tx poll last found packets (performance.now()). */
  private txLastWork = 0;
  /** Tx responses were pushed whose notification waits for the end of the burst. */
  private txNotifyOwed = false;

  constructor(tx: Uint8Array, rx: Uint8Array,
    private readonly grants: { copy(segments: readonly GrantCopySegment[]): number[] },
    private readonly host: NetHost, private readonly features: RxFeatures,
    private readonly notify: () => void, private readonly log: (line: string) => void,
    /** How long the rings are polled on exits before notifications are asked for again (tests use 0). */
    private readonly pollWindowMs = POLL_WINDOW_MS) {
    this.txIdx = new Int32Array(tx.buffer, tx.byteOffset, 4);
    this.rxIdx = new Int32Array(rx.buffer, rx.byteOffset, 4);
    this.txDv = new DataView(tx.buffer, tx.byteOffset, PAGE);
    this.rxDv = new DataView(rx.buffer, rx.byteOffset, PAGE);
    // The frontend initialised both rings (SHARED_RING_INIT/FRONT_RING_INIT); start where it says.
    this.txReqCons = this.txRspProdPvt = Atomics.load(this.txIdx, 2) >>> 0;
    this.rxReqCons = this.rxRspProdPvt = Atomics.load(this.rxIdx, 2) >>> 0;
  }

  /**
   * The frontend notified (either ring): send what it queued, then fill the rx buffers it posted.
   * When tx requests were found, the tx ring is then polled (see poll()) rather than re-armed.
   */
  onNotify(): void {
    this.txPolling = true;
    this.service(true);
  }

  /** The host side has frames waiting. */
  onHostReadable(): void {
    if (this.pumpRx()) this.notifyFrontend();
  }

  /**
   * Called on every vCPU exit (the domain thread's poll). While the tx ring is being polled, take
   * what the frontend queued since the last exit without its notification: Linux netback's NAPI
   * poll leaves req_event behind the same way while it runs (RING_FINAL_CHECK_FOR_REQUESTS only
   * once a pass finds nothing), so a guest streaming packets makes no EVTCHNOP_send per packet.
   * On pvbox every guest notification is a VM exit (~45 µs on PVM hosts), and the guest exits
   * anyway (its own hypercalls, system calls, timer ticks) while it sends, so the next exit is
   * where the next packets are found. The first exit that finds nothing new re-arms the ring.
   * True if it moved anything.
   */
  poll(): boolean {
    if (!this.txPolling && this.rxPending === 0) return false;
    return this.service(false);
  }

  private service(notified: boolean): boolean {
    const txPackets = this.txPolling ? this.serviceTx() : 0;
    // From poll(), rx is looked at only when a host frame waits for buffers (no read() per exit).
    const rx = notified || (this.rxPending > 0 && (this.rxPosted() || performance.now() - this.rxStallSince >= this.pollWindowMs)) ? this.pumpRx() : false;
    const now = performance.now();
    if (txPackets > 0) this.txLastWork = now;
    else if (this.txPolling && (notified || now - this.txLastWork >= this.pollWindowMs)) this.txPolling = !this.finalCheckTx();
    // Tx completions are signalled once the burst ends (netfront also reaps them itself in
    // xennet_start_xmit → xennet_tx_buf_gc); an rx notification carries them too (one port for both).
    if (rx || (this.txNotifyOwed && !this.txPolling)) this.notifyFrontend();
    return txPackets > 0 || rx;
  }

  private notifyFrontend(): void {
    this.txNotifyOwed = false;
    this.notify();
  }

  /** True if the frontend has posted rx requests not yet used. */
  private rxPosted(): boolean {
    return ((Atomics.load(this.rxIdx, 0) >>> 0) !== this.rxReqCons);
  }

  /** True while a host frame waits for rx buffers (the host side should not be polled meanwhile). */
  get rxStalled(): boolean { return this.rxPending > 0; }

  private warn(line: string): void {
    // A guest can trigger these at will: the first few are logged, then one line says the rest are not.
    if (this.warnings < 10) this.log(line);
    else if (this.warnings === 10) this.log('vif: further warnings about this frontend suppressed');
    this.warnings++;
  }

  // ---- tx: guest → host ----

  private readTx(i: number): TxRequest {
    const o = HEADER + (i & (NET_TX_RING_SIZE - 1)) * TX_SLOT, dv = this.txDv;
    return { gref: dv.getUint32(o, true), offset: dv.getUint16(o + 4, true), flags: dv.getUint16(o + 6, true), id: dv.getUint16(o + 8, true), size: dv.getUint16(o + 10, true) };
  }

  private txResponse(id: number, status: number): void {
    const o = HEADER + (this.txRspProdPvt & (NET_TX_RING_SIZE - 1)) * TX_SLOT;
    this.txDv.setUint16(o, id, true);
    this.txDv.setInt16(o + 2, status, true);
    this.txRspProdPvt = (this.txRspProdPvt + 1) >>> 0;
  }

  /** Serve the tx ring up to the req_prod seen now; the packets consumed. Responses are pushed; a notification they need is owed. */
  private serviceTx(): number {
    if (this.txBroken) return 0;
    const prod = Atomics.load(this.txIdx, 0) >>> 0;
    if (((prod - this.txReqCons) >>> 0) > NET_TX_RING_SIZE) {
      this.txBroken = true;
      this.txPolling = false;
      this.log(`vif: frontend's tx req_prod ${prod} is more than a ring ahead of ${this.txReqCons}; tx ring no longer served`);
      return 0;
    }
    let packets = 0;
    while (this.txReqCons !== prod && this.txPacket(prod)) packets++;
    if (packets > 0 && this.pushResponses(this.txIdx, this.txRspProdPvt)) this.txNotifyOwed = true;
    return packets;
  }

  /**
   * RING_FINAL_CHECK_FOR_REQUESTS: ask to be notified of the next request, then look once more;
   * true if nothing arrived meanwhile. A packet whose slots are not all there yet waits for the
   * next request (req_event past req_prod rather than past req_cons).
   */
  private finalCheckTx(): boolean {
    if (this.txBroken) return true;
    const prod = Atomics.load(this.txIdx, 0) >>> 0;
    Atomics.store(this.txIdx, 1, ((prod !== this.txReqCons ? prod : this.txReqCons) + 1) | 0);
    return (Atomics.load(this.txIdx, 0) >>> 0) === prod;
  }

  /** One packet from txReqCons; false (nothing consumed) if its chain runs past `prod`. */
  private txPacket(prod: number): boolean {
    const start = this.txReqCons;
    const avail = (prod - start) >>> 0;
    const first = this.readTx(start);
    let i = 1, error: string | undefined;
    // Extras (xenvif_get_extras): each names a type, XEN_NETIF_EXTRA_FLAG_MORE chains them.
    let gso: { size: number; type: number } | undefined;
    const extraSlots: number[] = [];
    if (first.flags & NETTXF_extra_info) {
      for (let more = true; more; i++) {
        if (i >= avail) return this.txIncomplete(avail, start);
        const o = HEADER + ((start + i) & (NET_TX_RING_SIZE - 1)) * TX_SLOT, dv = this.txDv;
        const type = dv.getUint8(o), flags = dv.getUint8(o + 1);
        more = (flags & XEN_NETIF_EXTRA_FLAG_MORE) !== 0;
        extraSlots.push(i);
        if (type === XEN_NETIF_EXTRA_TYPE_NONE || type >= XEN_NETIF_EXTRA_TYPE_MAX) error ??= `bad extra type ${type}`;
        else if (type === XEN_NETIF_EXTRA_TYPE_GSO) gso = { size: dv.getUint16(o + 2, true), type: dv.getUint8(o + 4) };
        // MCAST_ADD/DEL and HASH carry nothing pvbox acts on (no feature-multicast-control, no hashing): accepted, ignored.
        if (extraSlots.length >= XEN_NETIF_EXTRA_TYPE_MAX) { error ??= 'too many extras'; more = false; }
      }
    }
    // Fragments (xenvif_count_requests).
    const frags: TxRequest[] = [];
    for (let more = (first.flags & NETTXF_more_data) !== 0; more; i++) {
      if (i >= avail) return this.txIncomplete(avail, start);
      const r = this.readTx(start + i);
      frags.push(r);
      more = (r.flags & NETTXF_more_data) !== 0;
    }
    this.txReqCons = (start + i) >>> 0;

    // Validate the whole chain before touching a grant.
    let rest = 0;
    for (const f of frags) rest += f.size;
    const firstLen = first.size - rest;
    if (1 + frags.length > XEN_NETBK_LEGACY_SLOTS_MAX) error ??= `${1 + frags.length} slots (at most ${XEN_NETBK_LEGACY_SLOTS_MAX})`;
    else if (firstLen < 0) error ??= `packet size ${first.size} is smaller than its fragments (${rest})`;
    else if (first.size < ETH_HLEN) error ??= `packet size ${first.size} is below an Ethernet header`;
    else if (first.offset + firstLen > PAGE) error ??= `slot 0 crosses its page (offset ${first.offset} + ${firstLen})`;
    else {
      for (const [k, f] of frags.entries()) if (f.offset + f.size > PAGE) { error ??= `slot ${k + 1} crosses its page (offset ${f.offset} + ${f.size})`; break; }
    }
    if (!error && gso) {
      if (gso.size === 0) error = 'GSO size 0';
      else if (gso.type !== XEN_NETIF_GSO_TYPE_TCPV4 && gso.type !== XEN_NETIF_GSO_TYPE_TCPV6) error = `GSO type ${gso.type}`;
      else if (!(first.flags & NETTXF_csum_blank)) error = 'GSO packet without NETTXF_csum_blank';
    }
    if (!error) error = this.txCopyAndSend(first, firstLen, frags, gso);

    const status = error ? NETIF_RSP_ERROR : NETIF_RSP_OKAY;
    if (error) { this.stats.txErrors++; this.warn(`vif: tx packet id ${first.id} refused: ${error}`); } else { this.stats.txPackets++; this.stats.txBytes += first.size; }
    // One response per slot, in slot order: extras get NETIF_RSP_NULL (make_tx_response).
    this.txResponse(first.id, status);
    for (let k = 0; k < extraSlots.length; k++) this.txResponse(0, NETIF_RSP_NULL);
    for (const f of frags) this.txResponse(f.id, status);
    return true;
  }

  /**
   * The chain runs past req_prod. Normally the rest is on its way; but a chain that already fills the
   * ring can never end, so it is refused whole (every slot answered with an error) rather than waited for.
   */
  private txIncomplete(avail: number, start: number): boolean {
    if (avail < NET_TX_RING_SIZE) return false;
    this.stats.txErrors++;
    this.warn(`vif: tx chain from ${start} fills the whole ring without ending; refused`);
    for (let k = 0; k < avail; k++) {
      const r = this.readTx(start + k);
      this.txResponse(r.id, NETIF_RSP_ERROR);
    }
    this.txReqCons = (start + avail) >>> 0;
    return true;
  }

  /** Copy the packet out of its grants into txBuf behind a virtio_net_hdr and hand it to the host; an error or undefined. */
  private txCopyAndSend(first: TxRequest, firstLen: number, frags: readonly TxRequest[], gso: { size: number; type: number } | undefined): string | undefined {
    const buf = this.txBuf;
    const segments: GrantCopySegment[] = [{ source: { ref: first.gref, offset: first.offset }, dest: { bytes: buf, offset: VNET_HDR_LEN }, len: firstLen }];
    let pos = VNET_HDR_LEN + firstLen;
    for (const f of frags) {
      segments.push({ source: { ref: f.gref, offset: f.offset }, dest: { bytes: buf, offset: pos }, len: f.size });
      pos += f.size;
    }
    const statuses = this.grants.copy(segments);
    const bad = statuses.findIndex((s) => s !== 0);
    if (bad >= 0) return `slot ${bad} grant ${bad === 0 ? first.gref : frags[bad - 1]!.gref} failed (GNTST ${statuses[bad]})`;
    buf.fill(0, 0, VNET_HDR_LEN);
    const hdr = new DataView(buf.buffer, buf.byteOffset, VNET_HDR_LEN);
    if (first.flags & NETTXF_csum_blank) {
      // The frontend left the L4 checksum blank (CHECKSUM_PARTIAL): the host kernel finishes it, from these offsets.
      const at = checksumOffsets(buf, VNET_HDR_LEN, first.size);
      if (!at) return 'NETTXF_csum_blank on a packet that is not TCP or UDP over IPv4/IPv6';
      hdr.setUint8(0, VIRTIO_NET_HDR_F_NEEDS_CSUM);
      hdr.setUint16(6, at.start, true);
      hdr.setUint16(8, at.offset, true);
      if (gso) {
        if (at.offset !== 16) return 'GSO packet that is not TCP';
        hdr.setUint8(1, gso.type === XEN_NETIF_GSO_TYPE_TCPV4 ? VIRTIO_NET_HDR_GSO_TCPV4 : VIRTIO_NET_HDR_GSO_TCPV6);
        hdr.setUint16(2, at.start + at.l4Header, true); // hdr_len
        hdr.setUint16(4, gso.size, true);
      }
    } else if (first.flags & NETTXF_data_validated) hdr.setUint8(0, VIRTIO_NET_HDR_F_DATA_VALID);
    this.host.transmit(buf.subarray(0, VNET_HDR_LEN + first.size));
    return undefined;
  }

  // ---- rx: host → guest ----

  /** Move host frames into posted rx buffers while both last; true if the frontend should be notified. */
  private pumpRx(): boolean {
    if (this.rxBroken) return false;
    const before = this.rxRspProdPvt;
    for (;;) {
      if (this.rxPending === 0) {
        const n = this.host.receive(this.rxBuf);
        if (n <= 0) break;
        this.rxPending = n;
      }
      const plan = this.rxPlan();
      if (plan === undefined) { this.rxPending = 0; this.stats.rxDropped++; continue; }
      const slots = plan.dataSlots + (plan.gso ? 1 : 0);
      const ok = this.rxSlotsAvailable(slots);
      if (ok === 'broken') return false;
      if (!ok) break; // wait for the frontend to post more (it notifies: req_event is set)
      this.rxDeliver(plan.len, plan.dataSlots, plan.gso, plan.flags);
      this.rxPending = 0;
    }
    return this.rxRspProdPvt !== before && this.pushResponses(this.rxIdx, this.rxRspProdPvt);
  }

  /** How the pending frame goes to the guest, or undefined to drop it (the frontend cannot take it). */
  private rxPlan(): { len: number; dataSlots: number; gso: { type: number; size: number } | undefined; flags: number } | undefined {
    const len = this.rxPending - VNET_HDR_LEN;
    if (len < ETH_HLEN || len > MAX_RX_FRAME) return undefined;
    const vflags = this.rxBuf[0]!, vgso = this.rxBuf[1]!, gsoSize = this.rxBuf[4]! | (this.rxBuf[5]! << 8);
    const dataSlots = Math.ceil(len / PAGE);
    if (dataSlots > RX_MAX_DATA_SLOTS || (dataSlots > 1 && !this.features.sg)) return undefined;
    let gso: { type: number; size: number } | undefined;
    const gsoType = vgso & ~VIRTIO_NET_HDR_GSO_ECN;
    if (gsoType === VIRTIO_NET_HDR_GSO_TCPV4 && this.features.gsoTcpv4) gso = { type: XEN_NETIF_GSO_TYPE_TCPV4, size: gsoSize };
    else if (gsoType === VIRTIO_NET_HDR_GSO_TCPV6 && this.features.gsoTcpv6) gso = { type: XEN_NETIF_GSO_TYPE_TCPV6, size: gsoSize };
    else if (gsoType !== VIRTIO_NET_HDR_GSO_NONE) return undefined; // offloads are switched on only for what the frontend takes
    if (gso && gso.size === 0) return undefined;
    let flags = 0;
    // rx.c xenvif_rx_data_slot: CHECKSUM_PARTIAL → csum_blank|data_validated; CHECKSUM_UNNECESSARY → data_validated.
    if (vflags & VIRTIO_NET_HDR_F_NEEDS_CSUM) {
      if (!this.features.csumBlank) return undefined;
      flags = NETRXF_csum_blank | NETRXF_data_validated;
    } else if (vflags & VIRTIO_NET_HDR_F_DATA_VALID) flags = NETRXF_data_validated;
    return { len, dataSlots, gso, flags };
  }

  /** xenvif_rx_ring_slots_available: enough posted requests, or ask to be notified when there are. */
  private rxSlotsAvailable(needed: number): boolean | 'broken' {
    for (;;) {
      const prod = Atomics.load(this.rxIdx, 0) >>> 0;
      const avail = (prod - this.rxReqCons) >>> 0;
      if (avail > NET_RX_RING_SIZE) {
        this.rxBroken = true;
        this.log(`vif: frontend's rx req_prod ${prod} is more than a ring ahead of ${this.rxReqCons}; rx ring no longer served`);
        return 'broken';
      }
      if (avail >= needed) { this.rxStallSince = Infinity; return true; }
      // Short of buffers. For a while the exits' poll looks for new ones (the frontend refills from
      // its NAPI poll and exits soon after); past that, ask for a notification (rx req_event).
      const now = performance.now();
      if (this.rxStallSince === Infinity) this.rxStallSince = now;
      if (now - this.rxStallSince < this.pollWindowMs) return false;
      Atomics.store(this.rxIdx, 1, (prod + 1) | 0);
      if ((Atomics.load(this.rxIdx, 0) >>> 0) === prod) return false;
    }
  }

  private rxDeliver(len: number, dataSlots: number, gso: { type: number; size: number } | undefined, flags: number): void {
    const dv = this.rxDv;
    const reqAt = (i: number) => HEADER + ((this.rxReqCons + i) & (NET_RX_RING_SIZE - 1)) * RX_SLOT;
    // Slot order: data 0, [GSO extra], data 1..n-1.
    const dataPos = (k: number) => (k === 0 || !gso ? k : k + 1);
    const segments: GrantCopySegment[] = [];
    const ids: number[] = [];
    for (let k = 0; k < dataSlots; k++) {
      const o = reqAt(dataPos(k));
      ids.push(dv.getUint16(o, true));
      const chunk = Math.min(PAGE, len - k * PAGE);
      segments.push({ source: { bytes: this.rxBuf, offset: VNET_HDR_LEN + k * PAGE }, dest: { ref: dv.getUint32(o + 4, true), offset: 0 }, len: chunk });
    }
    const statuses = this.grants.copy(segments);
    let failed = false;
    const rspAt = (i: number) => HEADER + ((this.rxRspProdPvt + i) & (NET_RX_RING_SIZE - 1)) * RX_SLOT;
    for (let k = 0; k < dataSlots; k++) {
      const o = rspAt(dataPos(k));
      let f = k === 0 ? flags | (gso ? NETRXF_extra_info : 0) : 0;
      if (k < dataSlots - 1) f |= NETRXF_more_data;
      const st = statuses[k] === 0 ? segments[k]!.len : NETIF_RSP_ERROR;
      if (st === NETIF_RSP_ERROR) failed = true;
      dv.setUint16(o, ids[k]!, true);
      dv.setUint16(o + 2, 0, true); // offset
      dv.setUint16(o + 4, f, true);
      dv.setInt16(o + 6, st, true);
    }
    if (gso) {
      // The extra takes the response slot of the request it consumed (xenvif_rx_extra_slot); netfront finds it by position.
      const o = rspAt(1);
      dv.setUint8(o, XEN_NETIF_EXTRA_TYPE_GSO);
      dv.setUint8(o + 1, 0);
      dv.setUint16(o + 2, gso.size, true);
      dv.setUint8(o + 4, gso.type);
      dv.setUint8(o + 5, 0);
      dv.setUint16(o + 6, 0, true);
    }
    const slots = dataSlots + (gso ? 1 : 0);
    this.rxReqCons = (this.rxReqCons + slots) >>> 0;
    this.rxRspProdPvt = (this.rxRspProdPvt + slots) >>> 0;
    if (failed) { this.stats.rxErrors++; this.warn('vif: rx buffer grant refused; packet answered with NETIF_RSP_ERROR'); } else { this.stats.rxPackets++; this.stats.rxBytes += len; }
  }

  /** RING_PUSH_RESPONSES_AND_CHECK_NOTIFY. */
  private pushResponses(idx: Int32Array, rspProdPvt: number): boolean {
    const old = Atomics.load(idx, 2) >>> 0;
    Atomics.store(idx, 2, rspProdPvt | 0);
    const event = Atomics.load(idx, 3) >>> 0;
    return ((rspProdPvt - event) >>> 0) < ((rspProdPvt - old) >>> 0);
  }
}
