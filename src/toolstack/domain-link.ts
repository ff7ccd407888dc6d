// The link between a domain process and the xenstored daemon: the domain's XenStore ring traffic and its introduction (pvbox's stand-in for XS_INTRODUCE, where C xenstored maps the ring itself: tools/xenstored/domain.c).
//
// Why a link: the guest's ring lives in the domain process's memory, so that process reads the
// ring and forwards the byte stream; the daemon serves it as the guest's own connection (the
// guest's domid and permissions, not Domain-0's). Frames: kind u8, length u32 LE, payload.
// Kind 1 is a JSON control message, kind 2 XenStore bytes of the guest's ring.
import { chmodSync, existsSync, lstatSync, mkdirSync, unlinkSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { dirname, join } from 'node:path';
import { HostError } from '../errors.js';
import { createPrimaryConsole, formatUuid, removeDomainNodes, writeDomainNodes, type DomainNodeInfo } from './domain-nodes.js';
import { defaultSocketPaths } from '../xenstore/socket-transport.js';
import type { Connection, XenStored } from '../xenstore/xenstored.js';
import { createDevice, destroyDevice, type NodeValues, type XenbusDevice } from '../xenbus/device.js';
import { ConsoleXenbusBackend } from '../backends/console/device.js';
import type { Dataplane } from '../backends/ring-dataplane.js';
import { VbdXenbusBackend, type VbdAttacher } from '../backends/vbd/backend.js';
import { VifXenbusBackend, type VifDataplane } from '../backends/vif/backend.js';

export const LINK_CONTROL = 1, LINK_XS = 2;
const MAX_FRAME = 64 * 1024;

/** Where the daemon listens for domain processes: beside its first xenstored socket. */
export function domainLinkPath(env: NodeJS.ProcessEnv = process.env): string {
  return join(dirname(defaultSocketPaths(env)[0]!), 'pvbox-domains');
}

export function encodeFrame(kind: number, payload: Uint8Array): Buffer {
  const b = Buffer.allocUnsafe(5 + payload.length);
  b[0] = kind; b.writeUInt32LE(payload.length, 1); b.set(payload, 5);
  return b;
}
export const controlFrame = (msg: object): Buffer => encodeFrame(LINK_CONTROL, Buffer.from(JSON.stringify(msg)));

/** Incremental frame parser; a bad kind or length makes it fail for good. */
export class FrameParser {
  private buf = Buffer.alloc(0);
  failed = false;
  feed(chunk: Uint8Array, onFrame: (kind: number, payload: Buffer) => void): void {
    if (this.failed) return;
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : Buffer.from(chunk);
    while (this.buf.length >= 5) {
      const kind = this.buf[0]!, len = this.buf.readUInt32LE(1);
      if ((kind !== LINK_CONTROL && kind !== LINK_XS) || len > MAX_FRAME) { this.failed = true; return; }
      if (this.buf.length < 5 + len) return;
      const payload = this.buf.subarray(5, 5 + len);
      this.buf = this.buf.subarray(5 + len);
      onFrame(kind, payload);
    }
  }
}

export interface LinkHello { op: 'hello'; name: string }
/** A device whose data plane the domain process runs; the daemon creates it in the store with these nodes and runs its xenbus control plane. */
export interface LinkDevice { type: 'vbd' | 'vif'; devid: number; frontendNodes: NodeValues; backendNodes: NodeValues }
export interface LinkReady extends Omit<DomainNodeInfo, 'domid' | 'name'> { op: 'ready'; consoles?: number; devices?: LinkDevice[] }

/**
 * Devices across the link: the daemon runs each device's xenbus state machine next to the store
 * (control plane) and asks the domain process to attach or detach its rings (data plane):
 * daemon → domain {op:'attach', type, devid, ...rings} answered by {op:'attached', type, devid,
 * error?}; daemon → domain {op:'detach', type, devid}. Rings are {ringRef, port} for a console,
 * {queues, persistent} for a vbd (backends/vbd/dataplane.ts VbdAttach), {queues: [{txRef, rxRef, port}], features}
 * for a vif (backends/vif/backend.ts VifRings).
 */
const MAX_CONSOLES = 8;
const MAX_LINK_DEVICES = 16;

/** Node values the domain process sent, checked before they reach the store. */
function linkNodes(v: unknown): NodeValues | undefined {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return undefined;
  const out: Record<string, string | number> = {};
  for (const [k, x] of Object.entries(v)) {
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(k)) return undefined;
    if (typeof x === 'string' && x.length <= 4096) out[k] = x;
    else if (typeof x === 'number' && Number.isSafeInteger(x)) out[k] = x;
    else return undefined;
  }
  return out;
}

/** Daemon side: accept domain processes, give each a domid, serve its ring stream as that domain. */
export class DomainLinkServer {
  private readonly inUse = new Set<number>();
  /** Names of linked domains, including those not yet introduced (built but not 'ready'). */
  private readonly names = new Set<string>();
  private constructor(readonly path: string, private readonly server: Server) {}

  static async listen(xenstored: XenStored, path: string, log: (l: string) => void = () => {}): Promise<DomainLinkServer> {
    mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
    if (existsSync(path)) {
      if (!lstatSync(path).isSocket()) throw new HostError(`${path} exists and is not a socket`);
      unlinkSync(path); // the xenstored socket beside it was checked for a live daemon already
    }
    const server = createServer();
    const link = new DomainLinkServer(path, server);
    server.on('connection', (s) => link.serve(xenstored, s, log));
    await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(path, () => resolve()); });
    chmodSync(path, 0o600); // only root may introduce domains
    return link;
  }

  private allocate(xenstored: XenStored): number {
    for (let id = 1; id < 0x7ff0; id++) if (!this.inUse.has(id) && !xenstored.store.isDomainIntroduced(id)) { this.inUse.add(id); return id; }
    throw new HostError('no free domain id');
  }

  private serve(xenstored: XenStored, s: Socket, log: (l: string) => void): void {
    const parser = new FrameParser();
    const dom0 = xenstored.store.connect(0, () => {});
    let domid = 0, uuid = '', name = '', conn: Connection | undefined;
    /** Teardown callbacks of this domain's devices (destroyDevice). */
    const devices: (() => void)[] = [];
    const pendingAttach = new Map<string, (err: string | undefined) => void>();
    const remoteAttach = (type: string, devid: number, rings: object) => new Promise<string | undefined>((resolve) => {
      const key = `${type}:${devid}`;
      pendingAttach.get(key)?.('superseded');
      pendingAttach.set(key, resolve);
      s.write(controlFrame({ op: 'attach', type, devid, ...rings }));
    });
    const remoteDetach = (type: string, devid: number) => { if (!s.destroyed) s.write(controlFrame({ op: 'detach', type, devid })); };
    const remoteConsoles: Dataplane = {
      attach: (devid, ringRef, port) => remoteAttach('console', devid, { ringRef, port }),
      detach: (devid) => remoteDetach('console', devid),
    };
    const remoteDisks: VbdAttacher = {
      attach: (a) => remoteAttach('vbd', a.devid, { queues: a.queues, persistent: a.persistent }),
      detach: (devid) => remoteDetach('vbd', devid),
    };
    const remoteVifs: VifDataplane = {
      attach: (devid, rings) => remoteAttach('vif', devid, rings),
      detach: (devid) => remoteDetach('vif', devid),
    };
    const fail = (message: string) => { s.end(controlFrame({ op: 'error', message })); };
    /** Hot-plugged and boot-time devices the domain process serves, by 'type:devid'. */
    const linkDevices = new Map<string, XenbusDevice<VbdAttacher> | XenbusDevice<VifDataplane>>();
    const addDevice = (d: LinkDevice | undefined): string | undefined => {
      const frontendNodes = linkNodes(d?.frontendNodes), backendNodes = linkNodes(d?.backendNodes);
      if ((d?.type !== 'vbd' && d?.type !== 'vif') || !Number.isInteger(d.devid) || d.devid < 0 || d.devid > 0xffff || !frontendNodes || !backendNodes) return 'malformed device';
      if (linkDevices.size >= MAX_LINK_DEVICES) return 'too many devices';
      try {
        if (d.type === 'vbd') {
          const dev = createDevice<VbdAttacher>(xenstored.store, { type: 'vbd', frontendDomid: domid, devid: d.devid, frontendNodes, backendNodes }, { log });
          dev.start(new VbdXenbusBackend(d.devid), remoteDisks);
          linkDevices.set(`vbd:${d.devid}`, dev);
        } else {
          // The vif's TAP device, bridge and script are the domain process's; only netback's xenbus half runs here.
          const dev = createDevice<VifDataplane>(xenstored.store, { type: 'vif', frontendDomid: domid, devid: d.devid, frontendNodes, backendNodes }, { log });
          dev.start(new VifXenbusBackend(d.devid), remoteVifs);
          linkDevices.set(`vif:${d.devid}`, dev);
        }
        return undefined;
      } catch (e) { return `${d.type} ${d.devid}: ${(e as Error).message}`; }
    };
    s.on('data', (chunk) => parser.feed(chunk, (kind, payload) => {
      if (kind === LINK_XS) { conn?.receive(payload); return; }
      let msg: { op?: string; [k: string]: unknown };
      try { msg = JSON.parse(payload.toString('utf8')); } catch { fail('bad control message'); return; }
      if (msg.op === 'attached' && conn) {
        const key = `${String(msg.type)}:${Number(msg.devid)}`;
        const done = pendingAttach.get(key);
        pendingAttach.delete(key);
        done?.(typeof msg.error === 'string' ? msg.error.slice(0, 200) : undefined);
        return;
      }
      if (msg.op === 'device-add' && conn) {
        const d = msg.device as LinkDevice | undefined;
        const error = addDevice(d);
        s.write(controlFrame({ op: 'device-added', type: d?.type, devid: d?.devid, ...(error ? { error } : {}) }));
        return;
      }
      if (msg.op === 'device-remove' && conn) {
        const key = `${String(msg.type)}:${Number(msg.devid)}`;
        const dev = linkDevices.get(key);
        linkDevices.delete(key);
        const answer = () => { if (!s.destroyed) s.write(controlFrame({ op: 'device-removed', type: msg.type, devid: msg.devid })); };
        if (dev) void dev.unplug().then(answer, answer); else answer();
        return;
      }
      if (msg.op === 'hello' && !domid) {
        name = String(msg.name ?? '');
        if (!/^[A-Za-z0-9_.-]{1,64}$/.test(name)) { fail(`bad domain name '${name}'`); return; }
        if (this.names.has(name)) { fail(`a domain named '${name}' already exists`); name = ''; return; }
        const dir = dom0.directory(0, '/local/domain');
        for (const id of dir.ok ? dir.value : []) {
          const n = dom0.read(0, `/local/domain/${id}/name`);
          if (n.ok && Buffer.from(n.value).toString() === name) { fail(`a domain named '${name}' already exists (domain ${id})`); name = ''; return; }
        }
        domid = this.allocate(xenstored);
        this.names.add(name);
        s.write(controlFrame({ op: 'welcome', domid }));
      } else if (msg.op === 'ready' && domid && !conn) {
        const r = msg as unknown as LinkReady;
        uuid = /^[0-9a-f-]{36}$/.test(String(r.uuid)) ? String(r.uuid) : formatUuid(crypto.getRandomValues(new Uint8Array(16)));
        const num = (v: unknown) => (Number.isSafeInteger(v) && (v as number) >= 0 ? (v as number) : 0);
        writeDomainNodes(dom0, {
          domid, name, uuid, memoryKiB: num(r.memoryKiB), vcpus: Math.max(1, num(r.vcpus)),
          storePort: num(r.storePort), storeMfn: num(r.storeMfn), consolePort: num(r.consolePort), consoleMfn: num(r.consoleMfn),
        });
        const nodeInfo = { domid, name, uuid, memoryKiB: num(r.memoryKiB), vcpus: Math.max(1, num(r.vcpus)), storePort: num(r.storePort), storeMfn: num(r.storeMfn), consolePort: num(r.consolePort), consoleMfn: num(r.consoleMfn) };
        xenstored.introduceDomain(domid);
        try { const dev = createPrimaryConsole(xenstored.store, nodeInfo, log); devices.push(() => destroyDevice(dev)); } catch (e) { log(`domain ${domid}: console 0: ${(e as Error).message}`); }
        conn = xenstored.connect(domid, (bytes) => s.write(encodeFrame(LINK_XS, bytes)));
        for (let i = 1; i <= Math.min(MAX_CONSOLES, num(r.consoles)); i++) {
          try {
            const dev = createDevice<Dataplane>(xenstored.store, {
              type: 'console', frontendDomid: domid, devid: i,
              frontendNodes: { limit: 1048576, type: 'xenconsoled', output: 'pty', tty: '' },
            }, { log });
            dev.start(new ConsoleXenbusBackend(i), remoteConsoles);
            devices.push(() => destroyDevice(dev));
          } catch (e) { log(`domain ${domid}: console ${i}: ${(e as Error).message}`); }
        }
        for (const d of Array.isArray(r.devices) ? r.devices.slice(0, MAX_LINK_DEVICES) : []) {
          const err = addDevice(d);
          if (err) log(`domain ${domid}: ${err}`);
        }
        s.write(controlFrame({ op: 'introduced', domid }));
      } else fail(`unexpected control message '${String(msg.op)}'`);
    }));
    s.on('close', () => {
      for (const done of pendingAttach.values()) done('the domain process went away');
      for (const destroy of devices) destroy();
      for (const dev of linkDevices.values()) destroyDevice(dev);
      conn?.close();
      if (domid) {
        removeDomainNodes(dom0, domid, uuid);
        xenstored.releaseDomain(domid);
        this.inUse.delete(domid);
        this.names.delete(name);
      }
      dom0.close();
    });
    s.on('error', (e) => log(`domain link: ${e.message}`));
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => { try { unlinkSync(this.path); } catch { /* gone */ } resolve(); }));
  }
}

/** Domain side (the main thread of `pvbox run`): introduce this domain to a running daemon, then relay. */
export class DomainLinkClient {
  private readonly parser = new FrameParser();
  private waiters: ((m: { op: string; [k: string]: unknown }) => void)[] = [];
  onXs: (bytes: Uint8Array) => void = () => {};
  /** Requests the daemon makes of this domain (device attach/detach). */
  onControl: (msg: { op: string; [k: string]: unknown }) => void = () => {};
  onClose: () => void = () => {};
  private constructor(private readonly s: Socket) {
    s.on('data', (chunk) => this.parser.feed(chunk, (kind, payload) => {
      if (kind === LINK_XS) { this.onXs(payload); return; }
      let m: { op: string; [k: string]: unknown };
      try { m = JSON.parse(payload.toString('utf8')); } catch { return; }
      if (m.op === 'attach' || m.op === 'detach' || m.op === 'device-added' || m.op === 'device-removed') { this.onControl(m); return; }
      this.waiters.shift()?.(m);
    }));
    s.on('close', () => { for (const w of this.waiters.splice(0)) w({ op: 'error', message: 'xenstored closed the link' }); this.onClose(); });
    s.on('error', () => {});
  }

  /** Connect if a daemon is listening at `path`; undefined if none is. */
  static async connect(path: string): Promise<DomainLinkClient | undefined> {
    if (!existsSync(path)) return undefined;
    return new Promise((resolve) => {
      const s = createConnection(path);
      s.once('connect', () => resolve(new DomainLinkClient(s)));
      s.once('error', () => resolve(undefined));
    });
  }

  private request(msg: object): Promise<{ op: string; [k: string]: unknown }> {
    return new Promise((resolve) => { this.waiters.push(resolve); this.s.write(controlFrame(msg)); });
  }

  async hello(name: string): Promise<number> {
    const r = await this.request({ op: 'hello', name });
    if (r.op !== 'welcome' || typeof r.domid !== 'number') throw new HostError(`xenstored refused the domain: ${String(r.message ?? r.op)}`);
    return r.domid;
  }

  async ready(info: Omit<LinkReady, 'op'> & { name: string }): Promise<void> {
    const r = await this.request({ op: 'ready', ...info });
    if (r.op !== 'introduced') throw new HostError(`xenstored did not introduce the domain: ${String(r.message ?? r.op)}`);
  }

  sendXs(bytes: Uint8Array): void { this.s.write(encodeFrame(LINK_XS, bytes)); }
  sendControl(msg: object): void { this.s.write(controlFrame(msg)); }
  close(): void { this.s.end(); }
}
