// Event channels, 2-level ABI, between a guest and pvbox's in-process Domain-0 services (xen/common/event_channel.c, event_2l.c).
import { XEN_EBUSY, XEN_EEXIST, XEN_EINVAL, XEN_ENOENT, XEN_ENOSPC, XEN_ENOSYS, XEN_EPERM, XEN_ESRCH } from '../abi/errno.js';
import {
  EVTCHNOP_alloc_unbound, EVTCHNOP_bind_interdomain, EVTCHNOP_bind_ipi, EVTCHNOP_bind_pirq, EVTCHNOP_bind_vcpu,
  EVTCHNOP_bind_virq, EVTCHNOP_close, EVTCHNOP_send, EVTCHNOP_status, EVTCHNOP_unmask,
  EVTCHNSTAT_closed, EVTCHNSTAT_interdomain, EVTCHNSTAT_ipi, EVTCHNSTAT_unbound, EVTCHNSTAT_virq,
  EVTCHN_2L_NR_CHANNELS,
} from '../abi/event_channel.js';
import { DOMID_SELF, NR_VIRQS, VIRQ_TIMER, VIRQ_DEBUG, VIRQ_XENOPROF, VIRQ_XENPMU } from '../abi/xen.js';
import type { Domain } from './domain.js';
import type { Vcpu } from './vcpu.js';

/** A Domain-0 endpoint living in pvbox (console, xenstored, backends): called when the guest notifies it. */
export type HostEndpoint = (port: number) => void;

interface Channel {
  state: number;            // EVTCHNSTAT_*
  vcpu: number;             // notify_vcpu_id
  virq?: number;
  remoteDom?: number;
  remotePort?: number;      // the Domain-0 side's port number (pvbox allocates those)
  host?: HostEndpoint;
}

/** VIRQs that are per-vCPU (xen/common/event_channel.c get_virq_type: VIRQ_VCPU); the rest are global. */
const PER_VCPU_VIRQS = new Set([VIRQ_TIMER, VIRQ_DEBUG, VIRQ_XENOPROF, VIRQ_XENPMU]);

export class EventChannels {
  private readonly ports: (Channel | undefined)[] = [];
  private readonly virqToPort: Map<string, number> = new Map();
  private nextHostPort = 1;
  /** Called when a port becomes pending for a vCPU that is blocked (to wake it). */
  wake: (v: Vcpu) => void = () => {};

  constructor(readonly d: Domain) {}

  get maxPorts(): number { return EVTCHN_2L_NR_CHANNELS; }
  private pendingGpa(port: number): number { return this.d.sharedInfoGpa + 0x800 + (port >> 5) * 4; }
  private maskGpa(port: number): number { return this.d.sharedInfoGpa + 0xa00 + (port >> 5) * 4; }
  private getChannel(port: number): Channel | undefined { return port > 0 && port < this.maxPorts ? this.ports[port] : undefined; }

  private allocPort(ch: Channel): number {
    for (let p = 1; p < this.maxPorts; p++) {
      if (!this.ports[p]) {
        this.ports[p] = ch;
        // A fresh port starts clear (Xen clears pending on allocation) and unmasked.
        this.d.mem.atomicAnd32(this.pendingGpa(p), ~(1 << (p & 31)));
        return p;
      }
    }
    return -XEN_ENOSPC;
  }

  isPending(port: number): boolean { return (this.d.mem.atomicLoad32(this.pendingGpa(port)) >>> (port & 31) & 1) === 1; }
  isMasked(port: number): boolean { return (this.d.mem.atomicLoad32(this.maskGpa(port)) >>> (port & 31) & 1) === 1; }

  /** evtchn_2l_set_pending + vcpu_mark_events_pending. */
  setPending(port: number): void {
    const ch = this.getChannel(port);
    if (!ch) return;
    const bitv = 1 << (port & 31);
    const was = this.d.mem.atomicOr32(this.pendingGpa(port), bitv) & bitv;
    const v = this.d.vcpus[ch.vcpu] ?? this.d.vcpus[0]!;
    if (!was && !this.isMasked(port)) this.markVcpuPending(v, port >> 6);
    // Pollers are woken even for masked ports.
    this.wake(v);
  }

  private markVcpuPending(v: Vcpu, word: number): void {
    const selGpa = v.vcpuInfoGpa + 8 + (word >> 5) * 4;
    const b = 1 << (word & 31);
    const was = this.d.mem.atomicOr32(selGpa, b) & b;
    if (!was) this.d.mem.write8(v.vcpuInfoGpa, 1); // evtchn_upcall_pending
  }

  /** Raise a VIRQ on a vCPU if the guest bound it (send_guest_vcpu_virq). */
  sendVirq(virq: number, vcpu: number): void {
    const port = this.virqToPort.get(`${virq}:${PER_VCPU_VIRQS.has(virq) ? vcpu : 0}`);
    if (port !== undefined) this.setPending(port);
  }

  /** Toolstack side: a port in the guest connected to a pvbox service (console, xenstore, backends). */
  bindHost(endpoint: HostEndpoint, vcpu = 0): number {
    const port = this.allocPort({ state: EVTCHNSTAT_interdomain, vcpu, remoteDom: 0, remotePort: this.nextHostPort++, host: endpoint });
    return port;
  }

  /** Backend side of a frontend's alloc_unbound port (bind_interdomain from Domain-0). */
  connectHost(port: number, endpoint: HostEndpoint): number {
    const ch = this.getChannel(port);
    if (!ch || ch.state !== EVTCHNSTAT_unbound || ch.remoteDom !== 0) return -XEN_EINVAL;
    ch.state = EVTCHNSTAT_interdomain; ch.host = endpoint; ch.remotePort = this.nextHostPort++;
    return 0;
  }

  /** Domain-0 side closes its end: the guest's port goes back to unbound (evtchn_close of the remote). */
  disconnectHost(port: number): void {
    const ch = this.getChannel(port);
    if (ch && ch.state === EVTCHNSTAT_interdomain && ch.host) { ch.state = EVTCHNSTAT_unbound; ch.host = undefined; }
  }

  /** rcu_lock_domain_by_any_id + the XSM_TARGET check a domU meets: itself, Domain-0 (-EPERM), nobody else (-ESRCH). */
  private checkDomain(dom: number): number {
    if (dom === DOMID_SELF || dom === this.d.domid) return 0;
    return dom === 0 ? -XEN_EPERM : -XEN_ESRCH;
  }

  /** Whether `port` is allocated (evtchn_usable). */
  isBound(port: number): boolean { return this.getChannel(port) !== undefined; }

  do_event_channel_op(v: Vcpu, cmd: number, arg: bigint): number {
    const gv = this.d.guestVirt(v);
    switch (cmd) {
      case EVTCHNOP_send: {
        const port = gv.read32(arg);
        const ch = this.getChannel(port);
        if (!ch) return -XEN_EINVAL;
        if (ch.state === EVTCHNSTAT_interdomain) { ch.host?.(port); return 0; }
        if (ch.state === EVTCHNSTAT_ipi) { this.setPending(port); return 0; }
        if (ch.state === EVTCHNSTAT_unbound) return 0; // silently dropped, as Xen does
        return -XEN_EINVAL;
      }
      case EVTCHNOP_unmask: {
        const port = gv.read32(arg);
        const ch = this.getChannel(port);
        if (!ch) return -XEN_EINVAL;
        this.d.mem.atomicAnd32(this.maskGpa(port), ~(1 << (port & 31)));
        if (this.isPending(port)) this.markVcpuPending(this.d.vcpus[ch.vcpu] ?? v, port >> 6);
        return 0;
      }
      case EVTCHNOP_bind_virq: {
        const b = gv.view(arg, 12);
        const virq = b.getUint32(0, true), vcpu = b.getUint32(4, true);
        // evtchn_bind_virq: only per-vCPU VIRQs may name another vCPU; global ones belong to the
        // hardware domain's handler, never to a domU.
        if (virq >= NR_VIRQS) return -XEN_EINVAL;
        if (!PER_VCPU_VIRQS.has(virq) && vcpu !== 0) return -XEN_EINVAL;
        if (!PER_VCPU_VIRQS.has(virq)) return -XEN_EBUSY;
        if (vcpu >= this.d.vcpus.length) return -XEN_ENOENT;
        const key = `${virq}:${vcpu}`;
        if (this.virqToPort.has(key)) return -XEN_EEXIST;
        const port = this.allocPort({ state: EVTCHNSTAT_virq, vcpu, virq });
        if (port < 0) return port;
        this.virqToPort.set(key, port);
        gv.write32(arg + 8n, port);
        return 0;
      }
      case EVTCHNOP_bind_ipi: {
        const vcpu = gv.read32(arg);
        if (vcpu >= this.d.vcpus.length) return -XEN_ENOENT;
        const port = this.allocPort({ state: EVTCHNSTAT_ipi, vcpu });
        if (port < 0) return port;
        gv.write32(arg + 4n, port);
        return 0;
      }
      case EVTCHNOP_alloc_unbound: {
        const b = gv.view(arg, 8);
        const dom = b.getUint16(0, true), remote = b.getUint16(2, true);
        const rc = this.checkDomain(dom);
        if (rc) return rc;
        const port = this.allocPort({ state: EVTCHNSTAT_unbound, vcpu: 0, remoteDom: remote === DOMID_SELF ? this.d.domid : remote });
        if (port < 0) return port;
        gv.write32(arg + 4n, port);
        return 0;
      }
      case EVTCHNOP_bind_interdomain: {
        const b = gv.view(arg, 12);
        const remoteDom = b.getUint16(0, true);
        // A domU has no other domain's unbound ports to bind to here (only Domain-0 services exist).
        return remoteDom === DOMID_SELF || remoteDom === this.d.domid ? -XEN_EINVAL : -XEN_ESRCH;
      }
      case EVTCHNOP_close: {
        const port = gv.read32(arg);
        const ch = this.getChannel(port);
        if (!ch) return -XEN_EINVAL;
        if (ch.state === EVTCHNSTAT_virq && ch.virq !== undefined) this.virqToPort.delete(`${ch.virq}:${PER_VCPU_VIRQS.has(ch.virq) ? ch.vcpu : 0}`);
        this.ports[port] = undefined;
        return 0;
      }
      case EVTCHNOP_status: {
        const b = gv.view(arg, 24);
        const dom = b.getUint16(0, true), port = b.getUint32(4, true);
        const rc = this.checkDomain(dom);
        if (rc) return rc;
        if (port <= 0 || port >= this.maxPorts) return -XEN_EINVAL;
        const ch = this.ports[port];
        const out = new DataView(new ArrayBuffer(16));
        out.setUint32(0, ch?.state ?? EVTCHNSTAT_closed, true);
        out.setUint32(4, ch?.vcpu ?? 0, true);
        if (ch?.state === EVTCHNSTAT_virq) out.setUint32(8, ch.virq ?? 0, true);
        else if (ch?.state === EVTCHNSTAT_unbound) out.setUint16(8, ch.remoteDom ?? 0, true);
        else if (ch?.state === EVTCHNSTAT_interdomain) { out.setUint16(8, ch.remoteDom ?? 0, true); out.setUint32(12, ch.remotePort ?? 0, true); }
        gv.copyTo(arg + 8n, new Uint8Array(out.buffer));
        return 0;
      }
      case EVTCHNOP_bind_vcpu: {
        const b = gv.view(arg, 8);
        const port = b.getUint32(0, true), vcpu = b.getUint32(4, true);
        const ch = this.getChannel(port);
        if (!ch) return -XEN_EINVAL;
        if (vcpu >= this.d.vcpus.length) return -XEN_ENOENT;
        if (ch.state === EVTCHNSTAT_virq && ch.virq !== undefined && PER_VCPU_VIRQS.has(ch.virq)) return -XEN_EINVAL;
        if (ch.state === EVTCHNSTAT_ipi) return -XEN_EINVAL;
        ch.vcpu = vcpu;
        return 0;
      }
      case EVTCHNOP_bind_pirq: return -XEN_EPERM;
      default:
        // reset, init_control (FIFO), expand_array, set_priority, reset_cont: 2-level only, as QEMU answers.
        return -XEN_ENOSYS;
    }
  }
}

