// src/backends/vif/netback.ts and backend.ts: a test playing xen-netfront against pvbox's netback over real grant entries in fake guest memory. Packets cross both rings with
// their offloads translated to and from virtio_net_hdr; malformed tx requests (slots crossing their page, too many slots, bad grants, sizes that do not add
// up, bad extras) get NETIF_RSP_ERROR for every slot of that packet and the next packet still goes through; rx waits for buffers and survives a bad one.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { GTF_permit_access } from '../../src/abi/grant_table.js';
import {
  NETIF_RSP_ERROR, NETIF_RSP_NULL, NETIF_RSP_OKAY, NETRXF_csum_blank, NETRXF_data_validated, NETRXF_extra_info, NETRXF_more_data,
  NETTXF_csum_blank, NETTXF_extra_info, NETTXF_more_data, XEN_NETIF_EXTRA_TYPE_GSO, XEN_NETIF_GSO_TYPE_TCPV4,
} from '../../src/abi/io/netif.js';
import { checkVifRings, NETBACK_FEATURES, type VifDataplane, type VifRings, VifXenbusBackend } from '../../src/backends/vif/backend.js';
import {
  NETBACK_MAX_QUEUES, NET_RX_RING_SIZE, NET_TX_RING_SIZE, NetBack, type NetHost, VIRTIO_NET_HDR_F_DATA_VALID, VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_TCPV4,
  VNET_HDR_LEN, checksumOffsets,
} from '../../src/backends/vif/netback.js';
import { Domain } from '../../src/hypervisor/domain.js';
import { GrantTable } from '../../src/hypervisor/grant_table.js';
import { GrantAccess } from '../../src/hypervisor/grant_table_backend.js';
import { GuestMemory } from '../../src/memory/guest-memory.js';
import { planMemory } from '../../src/monitor/layout.js';
import { Trace } from '../../src/trace/trace.js';
import type { FrontendInfo, XenbusDeviceHandle } from '../../src/xenbus/device.js';

const PAGE = 4096;
const TX_RING_FRAME = 0x40, RX_RING_FRAME = 0x41;
/** Guest buffer frames: tx data from 0x50, rx buffers from 0x80. */
const TX_BUF = 0x50, RX_BUF = 0x80;
const TX_REF = 100, RX_REF = 300;

class FakeHost implements NetHost {
  sent: Uint8Array[] = [];
  queue: Uint8Array[] = [];
  transmit(frame: Uint8Array): void { this.sent.push(frame.slice()); }
  receive(buf: Uint8Array): number {
    const f = this.queue.shift();
    if (!f) return 0;
    buf.set(f);
    return f.length;
  }
}

/** An Ethernet + IPv4 + TCP packet of `total` bytes (headers 54), payload a pattern. */
function tcpPacket(total: number, seed = 1): Uint8Array {
  const p = new Uint8Array(total);
  p.set([0x00, 0x16, 0x3e, 0, 0, 1, 0x00, 0x16, 0x3e, 0, 0, 2, 0x08, 0x00]);
  p[14] = 0x45; p[23] = 6; // IPv4, ihl 5, TCP
  p[14 + 20 + 12] = 5 << 4; // TCP data offset 20
  for (let i = 54; i < total; i++) p[i] = (i * 7 + seed) & 0xff;
  return p;
}

function setup(features = { sg: true, gsoTcpv4: true, gsoTcpv6: true, csumBlank: true }) {
  const plan = planMemory(2 << 20);
  const mem = new GuestMemory(new ArrayBuffer(plan.totalBytes));
  const log: string[] = [];
  const d = new Domain(5, 'netback-test', mem, plan, new Trace(false, () => {}), { onShutdown: () => assert.fail('no shutdown expected'), onConsoleIo: () => {} });
  const gt = new GrantTable(d);
  const ga = new GrantAccess(gt);
  const grant = (ref: number, frame: number) => {
    const hdr = gt.entryGpa(ref);
    mem.write32(hdr + 4, frame); mem.write16(hdr + 2, 0); mem.write16(hdr, GTF_permit_access);
  };
  const page = (frame: number) => mem.u8.subarray(frame * PAGE, (frame + 1) * PAGE);
  grant(1, TX_RING_FRAME); grant(2, RX_RING_FRAME);
  for (let i = 0; i < 32; i++) { grant(TX_REF + i, TX_BUF + i); grant(RX_REF + i, RX_BUF + i); }
  const tx = page(TX_RING_FRAME), rx = page(RX_RING_FRAME);
  const txDv = new DataView(tx.buffer, tx.byteOffset, PAGE), rxDv = new DataView(rx.buffer, rx.byteOffset, PAGE);
  // SHARED_RING_INIT: req_event = rsp_event = 1.
  for (const dv of [txDv, rxDv]) { dv.setUint32(4, 1, true); dv.setUint32(12, 1, true); }
  const host = new FakeHost();
  let notifications = 0;
  const txMap = ga.map(1, { readonly: false }), rxMap = ga.map(2, { readonly: false });
  assert.equal(txMap.status, 0); assert.equal(rxMap.status, 0);
  // Poll window 0: a quiet poll() ends a burst at once (the default waits POLL_WINDOW_MS of real time).
  const nb = new NetBack(txMap.bytes!, rxMap.bytes!, ga, host, features, () => { notifications++; }, (l) => log.push(l), 0);

  /** The frontend's side of both rings. */
  const fe = {
    txProd: 0, txCons: 0, rxProd: 0, rxCons: 0,
    /** Queue raw tx slots (requests or extras as 12-byte slots) and notify. */
    txSlots(slots: ({ gref: number; offset: number; flags: number; id: number; size: number } | { extra: Uint8Array })[], notify = true): void {
      for (const s of slots) {
        const o = 64 + (fe.txProd & (NET_TX_RING_SIZE - 1)) * 12;
        tx.fill(0, o, o + 12);
        if ('extra' in s) tx.set(s.extra, o);
        else { txDv.setUint32(o, s.gref, true); txDv.setUint16(o + 4, s.offset, true); txDv.setUint16(o + 6, s.flags, true); txDv.setUint16(o + 8, s.id, true); txDv.setUint16(o + 10, s.size, true); }
        fe.txProd++;
      }
      txDv.setUint32(0, fe.txProd >>> 0, true);
      if (notify) nb.onNotify();
    },
    /** Put `data` into tx buffer page `i` at `offset`. */
    fill(i: number, offset: number, data: Uint8Array): void { page(TX_BUF + i).set(data, offset); },
    txResponses(): { id: number; status: number }[] {
      const out: { id: number; status: number }[] = [];
      const prod = txDv.getUint32(8, true);
      for (; fe.txCons !== prod; fe.txCons++) {
        const o = 64 + (fe.txCons & (NET_TX_RING_SIZE - 1)) * 12;
        out.push({ id: txDv.getUint16(o, true), status: txDv.getInt16(o + 2, true) });
      }
      txDv.setUint32(12, fe.txCons + 1, true);
      return out;
    },
    /** Post `n` rx buffers (id = ring index, as netfront does), optionally with a given gref for one of them. */
    rxPost(n: number, badRefAt = -1, notify = true): void {
      for (let k = 0; k < n; k++) {
        const id = fe.rxProd & (NET_RX_RING_SIZE - 1);
        const o = 64 + id * 8;
        rxDv.setUint16(o, id, true);
        rxDv.setUint32(o + 4, k === badRefAt ? 0xfffff : RX_REF + (id % 32), true);
        fe.rxProd++;
      }
      rxDv.setUint32(0, fe.rxProd >>> 0, true);
      if (notify) nb.onNotify();
    },
    rxResponses(): { id: number; offset: number; flags: number; status: number; raw: Uint8Array }[] {
      const out: { id: number; offset: number; flags: number; status: number; raw: Uint8Array }[] = [];
      const prod = rxDv.getUint32(8, true);
      for (; fe.rxCons !== prod; fe.rxCons++) {
        const o = 64 + (fe.rxCons & (NET_RX_RING_SIZE - 1)) * 8;
        out.push({ id: rxDv.getUint16(o, true), offset: rxDv.getUint16(o + 2, true), flags: rxDv.getUint16(o + 4, true), status: rxDv.getInt16(o + 6, true), raw: rx.slice(o, o + 8) });
      }
      rxDv.setUint32(12, fe.rxCons + 1, true);
      return out;
    },
    rxPage: (id: number) => page(RX_BUF + (id % 32)),
  };
  return { nb, host, fe, log, notifications: () => notifications, ga, txDv, rxDv };
}

/** A one-slot packet in tx buffer `buf` (ref TX_REF + buf). */
function sendSimple(fe: ReturnType<typeof setup>['fe'], id: number, pkt: Uint8Array, buf = 0, flags = 0): void {
  fe.fill(buf, 0, pkt);
  fe.txSlots([{ gref: TX_REF + buf, offset: 0, flags, id, size: pkt.length }]);
}

function gsoExtra(size: number, type = XEN_NETIF_GSO_TYPE_TCPV4, extraType = XEN_NETIF_EXTRA_TYPE_GSO): { extra: Uint8Array } {
  const e = new Uint8Array(12);
  const dv = new DataView(e.buffer);
  dv.setUint8(0, extraType); dv.setUint8(1, 0); dv.setUint16(2, size, true); dv.setUint8(4, type);
  return { extra: e };
}

describe('tx: guest → host', () => {
  it('a one-slot packet reaches the host behind a zero virtio_net_hdr; the response is OKAY and the frontend is notified when the burst ends', () => {
    const { fe, host, notifications, nb } = setup();
    const pkt = tcpPacket(100);
    sendSimple(fe, 7, pkt);
    assert.equal(host.sent.length, 1);
    assert.deepEqual(host.sent[0]!.subarray(0, VNET_HDR_LEN), new Uint8Array(VNET_HDR_LEN));
    assert.deepEqual(host.sent[0]!.subarray(VNET_HDR_LEN), pkt);
    assert.deepEqual(fe.txResponses(), [{ id: 7, status: NETIF_RSP_OKAY }]);
    assert.equal(notifications(), 0, 'the tx ring is polled at the next exit before the frontend is told');
    assert.equal(nb.poll(), false, 'the next exit finds nothing new');
    assert.equal(notifications(), 1);
    assert.equal(nb.poll(), false);
    assert.equal(notifications(), 1, 'one notification per burst');
  });

  it('while a burst lasts, req_event stays behind (no notifications needed) and each exit takes what was queued; a quiet exit re-arms it', () => {
    const { fe, host, notifications, nb, txDv } = setup();
    sendSimple(fe, 1, tcpPacket(100));
    assert.equal(txDv.getUint32(4, true), 1, 'req_event not moved past the packet: the frontend need not notify');
    // RING_PUSH_REQUESTS_AND_CHECK_NOTIFY on the frontend side: notify = (new - req_event) < (new - old).
    const needsNotify = (oldProd: number, newProd: number) => ((newProd - txDv.getUint32(4, true)) >>> 0) < ((newProd - oldProd) >>> 0);
    fe.fill(1, 0, tcpPacket(200));
    fe.txSlots([{ gref: TX_REF + 1, offset: 0, flags: 0, id: 2, size: 200 }], false);
    assert.equal(needsNotify(1, 2), false);
    assert.equal(host.sent.length, 1);
    assert.equal(nb.poll(), true, 'the exit takes the second packet');
    assert.equal(host.sent.length, 2);
    assert.equal(notifications(), 0);
    assert.equal(nb.poll(), false);
    assert.equal(txDv.getUint32(4, true), 3, 'RING_FINAL_CHECK_FOR_REQUESTS: req_event = req_cons + 1');
    assert.equal(needsNotify(2, 3), true, 'the next packet notifies');
    assert.equal(notifications(), 1);
    assert.deepEqual(fe.txResponses().map((r) => r.status), [NETIF_RSP_OKAY, NETIF_RSP_OKAY]);
  });

  it('a three-slot packet with a blank checksum: the fragments are joined and the host is told where the TCP checksum goes', () => {
    const { fe, host } = setup();
    const pkt = tcpPacket(5000);
    // Slot 0: 1000 bytes at offset 3000 of page 0; slot 1: 3000 bytes of page 1; slot 2: 1000 bytes at 96 of page 2.
    fe.fill(0, 3000, pkt.subarray(0, 1000)); fe.fill(1, 0, pkt.subarray(1000, 4000)); fe.fill(2, 96, pkt.subarray(4000));
    fe.txSlots([
      { gref: TX_REF, offset: 3000, flags: NETTXF_more_data | NETTXF_csum_blank, id: 1, size: 5000 },
      { gref: TX_REF + 1, offset: 0, flags: NETTXF_more_data, id: 2, size: 3000 },
      { gref: TX_REF + 2, offset: 96, flags: 0, id: 3, size: 1000 },
    ]);
    assert.equal(host.sent.length, 1);
    const f = host.sent[0]!, hdr = new DataView(f.buffer, f.byteOffset, VNET_HDR_LEN);
    assert.deepEqual(f.subarray(VNET_HDR_LEN), pkt);
    assert.equal(hdr.getUint8(0), VIRTIO_NET_HDR_F_NEEDS_CSUM);
    assert.equal(hdr.getUint16(6, true), 34, 'csum_start: Ethernet 14 + IPv4 20');
    assert.equal(hdr.getUint16(8, true), 16, 'csum_offset: TCP checksum');
    assert.deepEqual(fe.txResponses(), [{ id: 1, status: 0 }, { id: 2, status: 0 }, { id: 3, status: 0 }]);
  });

  it('a GSO extra becomes virtio GSO (type, gso_size, hdr_len); the extra slot is answered NETIF_RSP_NULL', () => {
    const { fe, host } = setup();
    const pkt = tcpPacket(6000);
    fe.fill(0, 0, pkt.subarray(0, 4000)); fe.fill(1, 0, pkt.subarray(4000));
    fe.txSlots([
      { gref: TX_REF, offset: 0, flags: NETTXF_more_data | NETTXF_csum_blank | NETTXF_extra_info, id: 4, size: 6000 },
      gsoExtra(1448),
      { gref: TX_REF + 1, offset: 0, flags: 0, id: 5, size: 2000 },
    ]);
    const f = host.sent[0]!, hdr = new DataView(f.buffer, f.byteOffset, VNET_HDR_LEN);
    assert.equal(hdr.getUint8(1), VIRTIO_NET_HDR_GSO_TCPV4);
    assert.equal(hdr.getUint16(2, true), 54, 'hdr_len: Ethernet + IPv4 + TCP');
    assert.equal(hdr.getUint16(4, true), 1448);
    assert.deepEqual(f.subarray(VNET_HDR_LEN), pkt);
    assert.deepEqual(fe.txResponses(), [{ id: 4, status: 0 }, { id: 0, status: NETIF_RSP_NULL }, { id: 5, status: 0 }]);
  });

  it('a packet whose slots are not all posted waits (nothing answered) and goes out when the rest arrives', () => {
    const { fe, host } = setup();
    const pkt = tcpPacket(3000);
    fe.fill(0, 0, pkt.subarray(0, 2000)); fe.fill(1, 0, pkt.subarray(2000));
    fe.txSlots([{ gref: TX_REF, offset: 0, flags: NETTXF_more_data, id: 1, size: 3000 }]);
    assert.equal(host.sent.length, 0);
    assert.deepEqual(fe.txResponses(), []);
    fe.txSlots([{ gref: TX_REF + 1, offset: 0, flags: 0, id: 2, size: 1000 }]);
    assert.deepEqual(host.sent[0]!.subarray(VNET_HDR_LEN), pkt);
    assert.deepEqual(fe.txResponses(), [{ id: 1, status: 0 }, { id: 2, status: 0 }]);
  });

  describe('malformed requests: NETIF_RSP_ERROR for every slot of the packet, nothing sent, and the next packet still flows', () => {
    const cases: [string, (fe: ReturnType<typeof setup>['fe']) => number, RegExp][] = [
      ['a slot crossing its page (offset + size > 4096)', (fe) => {
        fe.txSlots([{ gref: TX_REF, offset: 4000, flags: 0, id: 9, size: 200 }]); return 1;
      }, /crosses its page/],
      ['a later fragment crossing its page', (fe) => {
        fe.txSlots([{ gref: TX_REF, offset: 0, flags: NETTXF_more_data, id: 9, size: 300 }, { gref: TX_REF + 1, offset: 4090, flags: 0, id: 10, size: 100 }]); return 2;
      }, /slot 1 crosses/],
      ['19 slots (XEN_NETBK_LEGACY_SLOTS_MAX is 18)', (fe) => {
        const slots = Array.from({ length: 19 }, (_, k) => ({ gref: TX_REF + (k % 32), offset: 0, flags: k < 18 ? NETTXF_more_data : 0, id: 20 + k, size: k === 0 ? 19 * 100 : 100 }));
        fe.txSlots(slots); return 19;
      }, /19 slots/],
      ['a grant reference the guest never granted', (fe) => {
        fe.txSlots([{ gref: 5000, offset: 0, flags: 0, id: 9, size: 100 }]); return 1;
      }, /grant 5000 failed/],
      ['a first size smaller than its fragments', (fe) => {
        fe.txSlots([{ gref: TX_REF, offset: 0, flags: NETTXF_more_data, id: 9, size: 100 }, { gref: TX_REF + 1, offset: 0, flags: 0, id: 10, size: 200 }]); return 2;
      }, /smaller than its fragments/],
      ['a packet shorter than an Ethernet header', (fe) => {
        fe.txSlots([{ gref: TX_REF, offset: 0, flags: 0, id: 9, size: 6 }]); return 1;
      }, /below an Ethernet header/],
      ['an extra of type 0 (XEN_NETIF_EXTRA_TYPE_NONE)', (fe) => {
        fe.txSlots([{ gref: TX_REF, offset: 0, flags: NETTXF_extra_info | NETTXF_csum_blank, id: 9, size: 100 }, gsoExtra(1448, 1, 0)]); return 2;
      }, /bad extra type 0/],
      ['a GSO extra with size 0', (fe) => {
        fe.txSlots([{ gref: TX_REF, offset: 0, flags: NETTXF_extra_info | NETTXF_csum_blank, id: 9, size: 100 }, gsoExtra(0)]); return 2;
      }, /GSO size 0/],
      ['a GSO extra of an unknown type', (fe) => {
        fe.txSlots([{ gref: TX_REF, offset: 0, flags: NETTXF_extra_info | NETTXF_csum_blank, id: 9, size: 100 }, gsoExtra(1448, 7)]); return 2;
      }, /GSO type 7/],
    ];
    for (const [name, send, why] of cases) {
      it(name, () => {
        const { fe, host, log, nb } = setup();
        fe.fill(0, 0, tcpPacket(4096));
        const slots = send(fe);
        const rsps = fe.txResponses();
        assert.equal(rsps.length, slots, 'one response per slot');
        assert.ok(rsps.every((r) => r.status === NETIF_RSP_ERROR || r.status === NETIF_RSP_NULL), JSON.stringify(rsps));
        assert.equal(rsps[0]!.status, NETIF_RSP_ERROR);
        assert.equal(host.sent.length, 0);
        assert.match(log.join('\n'), why);
        assert.equal(nb.stats.txErrors, 1);
        // The vif keeps working.
        const pkt = tcpPacket(200, 9);
        sendSimple(fe, 77, pkt, 3);
        assert.equal(host.sent.length, 1);
        assert.deepEqual(host.sent[0]!.subarray(VNET_HDR_LEN), pkt);
        assert.deepEqual(fe.txResponses(), [{ id: 77, status: NETIF_RSP_OKAY }]);
      });
    }

    it('a chain that fills the whole ring without ending is refused whole, and the ring goes on', () => {
      const { fe, host } = setup();
      fe.txSlots(Array.from({ length: NET_TX_RING_SIZE }, (_, k) => ({ gref: TX_REF, offset: 0, flags: NETTXF_more_data, id: k, size: 100 })));
      const rsps = fe.txResponses();
      assert.equal(rsps.length, NET_TX_RING_SIZE);
      assert.ok(rsps.every((r) => r.status === NETIF_RSP_ERROR));
      const pkt = tcpPacket(64);
      sendSimple(fe, 1, pkt);
      assert.deepEqual(host.sent.map((f) => f.subarray(VNET_HDR_LEN)), [pkt]);
    });

    it('a req_prod more than a ring ahead stops the tx ring, nothing is read past it', () => {
      const { fe, host, log } = setup();
      fe.txProd = NET_TX_RING_SIZE + 5;
      fe.txSlots([]); // publishes the bogus req_prod and notifies
      assert.equal(host.sent.length, 0);
      assert.match(log.join('\n'), /tx ring no longer served/);
    });
  });
});

describe('rx: host → guest', () => {
  it('a small frame fills one posted buffer: status is its length, the data is in the page', () => {
    const { fe, host, nb } = setup();
    fe.rxPost(4);
    const pkt = tcpPacket(120);
    host.queue.push(Uint8Array.from([...new Uint8Array(VNET_HDR_LEN), ...pkt]));
    nb.onHostReadable();
    const [r, ...more] = fe.rxResponses();
    assert.deepEqual(more, []);
    assert.equal(r!.status, 120);
    assert.equal(r!.flags, 0);
    assert.deepEqual(fe.rxPage(r!.id).subarray(0, 120), pkt);
  });

  it('a 9000-byte GSO frame: data slot, then the GSO extra, then two more data slots; csum_blank|data_validated', () => {
    const { fe, host, nb } = setup();
    fe.rxPost(8);
    const pkt = tcpPacket(9000);
    const hdr = new Uint8Array(VNET_HDR_LEN);
    const dv = new DataView(hdr.buffer);
    dv.setUint8(0, VIRTIO_NET_HDR_F_NEEDS_CSUM); dv.setUint8(1, VIRTIO_NET_HDR_GSO_TCPV4); dv.setUint16(2, 54, true); dv.setUint16(4, 1448, true);
    host.queue.push(Uint8Array.from([...hdr, ...pkt]));
    nb.onHostReadable();
    const r = fe.rxResponses();
    assert.equal(r.length, 4);
    assert.equal(r[0]!.flags, NETRXF_csum_blank | NETRXF_data_validated | NETRXF_extra_info | NETRXF_more_data);
    assert.equal(r[0]!.status, 4096);
    const ex = new DataView(r[1]!.raw.buffer);
    assert.equal(ex.getUint8(0), XEN_NETIF_EXTRA_TYPE_GSO);
    assert.equal(ex.getUint16(2, true), 1448);
    assert.equal(ex.getUint8(4), XEN_NETIF_GSO_TYPE_TCPV4);
    assert.equal(r[2]!.flags, NETRXF_more_data); assert.equal(r[2]!.status, 4096);
    assert.equal(r[3]!.flags, 0); assert.equal(r[3]!.status, 9000 - 8192);
    const joined = Uint8Array.from([...fe.rxPage(r[0]!.id).subarray(0, 4096), ...fe.rxPage(r[2]!.id).subarray(0, 4096), ...fe.rxPage(r[3]!.id).subarray(0, 808)]);
    assert.deepEqual(joined, pkt);
  });

  it('a 70000-byte TSO frame (past 0xffff: rx sizes are per slot) fills 18 slots and arrives whole', () => {
    const { fe, host, nb } = setup();
    fe.rxPost(20);
    const pkt = tcpPacket(70000);
    const hdr = new Uint8Array(VNET_HDR_LEN); hdr[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM; hdr[1] = VIRTIO_NET_HDR_GSO_TCPV4; hdr[4] = 0xa8; hdr[5] = 5;
    host.queue.push(Uint8Array.from([...hdr, ...pkt]));
    nb.onHostReadable();
    const r = fe.rxResponses();
    assert.equal(r.length, 19, '18 data slots and the GSO extra');
    const data = r.filter((_, i) => i !== 1);
    assert.equal(data.reduce((n, x) => n + x.status, 0), 70000);
    const joined = new Uint8Array(70000);
    let at = 0;
    for (const x of data) { joined.set(fe.rxPage(x.id).subarray(0, x.status), at); at += x.status; }
    assert.deepEqual(joined, pkt);
  });

  it('DATA_VALID from the host becomes NETRXF_data_validated', () => {
    const { fe, host, nb } = setup();
    fe.rxPost(1);
    host.queue.push(Uint8Array.from([VIRTIO_NET_HDR_F_DATA_VALID, ...new Uint8Array(VNET_HDR_LEN - 1), ...tcpPacket(60)]));
    nb.onHostReadable();
    assert.equal(fe.rxResponses()[0]!.flags, NETRXF_data_validated);
  });

  it('with no buffers posted, a frame waits (req_event asks for the next post) and goes in when the frontend posts', () => {
    const { fe, host, nb, rxDv } = setup();
    host.queue.push(Uint8Array.from([...new Uint8Array(VNET_HDR_LEN), ...tcpPacket(1500)]), Uint8Array.from([...new Uint8Array(VNET_HDR_LEN), ...tcpPacket(700)]));
    nb.onHostReadable();
    assert.equal(nb.rxStalled, true);
    assert.equal(host.queue.length, 1, 'only one frame is read ahead');
    assert.equal(rxDv.getUint32(4, true), 1, 'req_event = req_prod + 1');
    fe.rxPost(1);
    assert.deepEqual(fe.rxResponses().map((r) => r.status), [1500]);
    fe.rxPost(1);
    assert.deepEqual(fe.rxResponses().map((r) => r.status), [700]);
    assert.equal(nb.rxStalled, false);
  });

  it('a bad rx buffer grant answers that packet with NETIF_RSP_ERROR; the next one is delivered', () => {
    const { fe, host, nb } = setup();
    fe.rxPost(2, 0);
    host.queue.push(Uint8Array.from([...new Uint8Array(VNET_HDR_LEN), ...tcpPacket(100)]), Uint8Array.from([...new Uint8Array(VNET_HDR_LEN), ...tcpPacket(101)]));
    nb.onHostReadable();
    assert.deepEqual(fe.rxResponses().map((r) => r.status), [NETIF_RSP_ERROR, 101]);
    assert.equal(nb.stats.rxErrors, 1);
  });

  it('frames the frontend cannot take are dropped: multi-page without feature-sg, GSO it did not ask for', () => {
    const { fe, host, nb } = setup({ sg: false, gsoTcpv4: false, gsoTcpv6: false, csumBlank: true });
    fe.rxPost(8);
    const gso = new Uint8Array(VNET_HDR_LEN); gso[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM; gso[1] = VIRTIO_NET_HDR_GSO_TCPV4; gso[4] = 0xa8; gso[5] = 5;
    host.queue.push(Uint8Array.from([...new Uint8Array(VNET_HDR_LEN), ...tcpPacket(5000)]), Uint8Array.from([...gso, ...tcpPacket(3000)]), Uint8Array.from([...new Uint8Array(VNET_HDR_LEN), ...tcpPacket(64)]));
    nb.onHostReadable();
    assert.deepEqual(fe.rxResponses().map((r) => r.status), [64]);
    assert.equal(nb.stats.rxDropped, 2);
  });
});

describe('checksumOffsets (skb_checksum_setup)', () => {
  it('finds TCP and UDP over IPv4, IPv6 (with a hop-by-hop header) and VLAN; refuses fragments and other protocols', () => {
    assert.deepEqual(checksumOffsets(tcpPacket(80), 0, 80), { start: 34, offset: 16, l4Header: 20 });
    const udp = tcpPacket(80); udp[23] = 17;
    assert.deepEqual(checksumOffsets(udp, 0, 80), { start: 34, offset: 6, l4Header: 8 });
    const frag = tcpPacket(80); frag[14 + 6] = 0x20; // MF
    assert.equal(checksumOffsets(frag, 0, 80), undefined);
    const icmp = tcpPacket(80); icmp[23] = 1;
    assert.equal(checksumOffsets(icmp, 0, 80), undefined);
    const v6 = new Uint8Array(120); v6[12] = 0x86; v6[13] = 0xdd; v6[14 + 6] = 0; // hop-by-hop
    v6[54] = 6; v6[55] = 0; // next TCP, length 8
    v6[62 + 12] = 5 << 4;
    assert.deepEqual(checksumOffsets(v6, 0, 120), { start: 62, offset: 16, l4Header: 20 });
    const vlan = new Uint8Array(90); vlan[12] = 0x81; vlan[13] = 0; vlan[16] = 8; vlan[17] = 0; vlan[18] = 0x45; vlan[27] = 17;
    assert.deepEqual(checksumOffsets(vlan, 0, 90), { start: 38, offset: 6, l4Header: 8 });
  });
});

describe('VifXenbusBackend.connect: the keys netfront writes (talk_to_netback)', () => {
  /** A connect with these frontend nodes; what it attached, or the error it threw. */
  async function connectWith(nodes: Record<string, string>): Promise<VifRings | Error> {
    const device = {
      readFrontend: (k: string) => nodes[k],
      readFrontendFeature: (k: string, dflt: number) => (nodes[k] === undefined ? dflt : Number(nodes[k])),
    } as unknown as XenbusDeviceHandle;
    let got: VifRings | undefined;
    const io: VifDataplane = { attach: (_devid, rings) => { got = rings; return undefined; }, detach: () => {} };
    try {
      await new VifXenbusBackend(0).connect({ device } as unknown as FrontendInfo, io);
    } catch (e) { return e as Error; }
    return got!;
  }
  const COMMON = { 'request-rx-copy': '1', 'feature-rx-notify': '1', 'feature-sg': '1', 'feature-gso-tcpv4': '1' };

  it('one queue: the flat keys', async () => {
    const r = await connectWith({ ...COMMON, 'tx-ring-ref': '8', 'rx-ring-ref': '9', 'event-channel': '5' });
    assert.deepEqual(r, { queues: [{ txRef: 8, rxRef: 9, port: 5 }], features: { sg: true, gsoTcpv4: true, gsoTcpv6: false, csumBlank: true } });
  });

  it('several queues: multi-queue-num-queues and a queue-N directory each', async () => {
    const nodes: Record<string, string> = { ...COMMON, 'multi-queue-num-queues': '3' };
    for (let q = 0; q < 3; q++) Object.assign(nodes, { [`queue-${q}/tx-ring-ref`]: String(10 + q), [`queue-${q}/rx-ring-ref`]: String(20 + q), [`queue-${q}/event-channel`]: String(30 + q) });
    const r = await connectWith(nodes);
    assert.ok(!(r instanceof Error), String(r));
    assert.deepEqual(r.queues, [{ txRef: 10, rxRef: 20, port: 30 }, { txRef: 11, rxRef: 21, port: 31 }, { txRef: 12, rxRef: 22, port: 32 }]);
    assert.equal(NETBACK_FEATURES['multi-queue-max-queues'], NETBACK_MAX_QUEUES);
  });

  it('refuses a queue count it did not offer, a missing queue key and split event channels', async () => {
    for (const [nodes, pattern] of [
      [{ ...COMMON, 'multi-queue-num-queues': '0' }, /multi-queue-num-queues 0 is not 1\.\.4/],
      [{ ...COMMON, 'multi-queue-num-queues': String(NETBACK_MAX_QUEUES + 1) }, /is not 1\.\.4/],
      [{ ...COMMON, 'multi-queue-num-queues': '2', 'queue-0/tx-ring-ref': '1', 'queue-0/rx-ring-ref': '2', 'queue-0/event-channel': '3' }, /queue-1\/tx-ring-ref/],
      [{ ...COMMON, 'tx-ring-ref': '8', 'rx-ring-ref': '9', 'event-channel-tx': '5', 'event-channel-rx': '6' }, /split event channels/],
      [{ 'tx-ring-ref': '8', 'rx-ring-ref': '9', 'event-channel': '5' }, /request-rx-copy/],
    ] as const) {
      const r = await connectWith(nodes);
      assert.ok(r instanceof Error, JSON.stringify(nodes));
      assert.match(r.message, pattern);
    }
  });

  it('checkVifRings: the rings as they cross the domain link, checked again', () => {
    const features = { sg: true, gsoTcpv4: false, gsoTcpv6: false, csumBlank: true };
    assert.deepEqual(checkVifRings({ queues: [{ txRef: 1, rxRef: 2, port: 3 }], features }), { queues: [{ txRef: 1, rxRef: 2, port: 3 }], features });
    for (const bad of [
      { queues: [], features }, { queues: Array(NETBACK_MAX_QUEUES + 1).fill({ txRef: 1, rxRef: 2, port: 3 }), features },
      { queues: [{ txRef: -1, rxRef: 2, port: 3 }], features }, { queues: [{ txRef: 1, rxRef: 2 }], features }, { queues: [null], features },
      { txRef: 1, rxRef: 2, port: 3, features }, { queues: [{ txRef: 1, rxRef: 2, port: 3 }] },
    ]) assert.equal(checkVifRings(bad as Parameters<typeof checkVifRings>[0]), undefined, JSON.stringify(bad));
  });
});
