// Creating and running one PV domain in this thread: KVM VM, monitor, builder, Xen core, console and XenStore, then the vCPU loop (libxl_create.c + xl's domain process in one place, for one vCPU).
import { readFileSync } from 'node:fs';
import { loadKernelCached } from '../builder/kernel-cache.js';
import { cacheDir } from '../images/debian.js';
import { writeStartInfo } from '../builder/start_info.js';
import { type BootLayout, buildPvDomain } from '../builder/xc_dom.js';
import { ConsoleBackend } from '../backends/console/ring.js';
import { HostError, ImageError } from '../errors.js';
import { buildCpuidPolicy } from '../hypervisor/cpuid.js';
import { Domain, type ShutdownReason } from '../hypervisor/domain.js';
import { Hypervisor } from '../hypervisor/hypercall.js';
import type { Platform } from '../hypervisor/platform.js';
import { Vcpu } from '../hypervisor/vcpu.js';
import { allocateGuestMemory, Kvm, R, SREG, SREGS_cr0, SREGS_cr3, SREGS_cr4, SREGS_efer, SREGS_gdt, SREGS_idt, Vcpu as KvmVcpu, writeSegment } from '../kvm/kvm.js';
import { GuestMemory } from '../memory/guest-memory.js';
import { GDT_LIMIT, HV, MONITOR, SEL, VCPU_AREA, hvVirt, planMemory, vcpuAreaOffset } from '../monitor/layout.js';
import { setupMonitor } from '../monitor/setup.js';
import { Trace } from '../trace/trace.js';
import { Kicker } from '../vcpu/kick.js';
import { type HostInputs, VcpuRunner } from '../vcpu/run-loop.js';
import { XenStoreRingTransport } from '../xenstore/ring-transport.js';
import { XenStored } from '../xenstore/xenstored.js';
import { INPUT_BLKIO, INPUT_CONSOLE, INPUT_CONSOLE_N, INPUT_CONTROL, INPUT_XS } from '../vcpu/worker-protocol.js';
import { createDevice } from '../xenbus/device.js';
import { ConsoleXenbusBackend } from '../backends/console/device.js';
import { type Dataplane, RingDataplane } from '../backends/ring-dataplane.js';
import { GrantAccess } from '../hypervisor/grant_table_backend.js';
import { checkQueues } from '../backends/vbd/backend.js';
import { DomainDisks, LocalDeviceHost, RemoteDeviceHost } from './domain-disks.js';
import { applySavedState, checkSaveTarget, SaveFile, savedSregs, writeSaveFile } from './save-restore.js';
import { VbdDataplane } from '../backends/vbd/dataplane.js';
import type { LinkDevice } from './domain-link.js';
import type { DiskSpec } from '../backends/vbd/disk-spec.js';
import { DomainVifs, LocalVifHost } from '../backends/vif/attach.js';
import { checkVifRings } from '../backends/vif/backend.js';
import type { VifSpec } from '../backends/vif/vif-spec.js';
import { INPUT_NET } from '../vcpu/worker-protocol.js';
import { createPrimaryConsole, type DomainNodeInfo, formatUuid, parseUuid, writeDomainNodes } from './domain-nodes.js';
import { DOMAIN_THREAD_OPS, domainThreadOp } from './domain-ops.js';

export interface DomainConfig {
  name: string;
  domid: number;
  kernel: string;
  ramdisk?: string;
  cmdline: string;
  memoryMiB: number;
  monitorBinary: string;
  trace: boolean;
  /** XenStore is a running `pvbox xenstored` (reached through the main thread); otherwise an in-process store. */
  xenstoreRemote?: boolean;
  /** Secondary consoles (device/console/1..N) besides the primary one. */
  consoles?: number;
  /** Virtual disks (xl disk specs, parsed). */
  disks?: DiskSpec[];
  /** The xl.cfg the domain came from (pvbox create), kept in a save file for restarts after a restore. */
  configPath?: string;
  /** Restore the guest saved in this file (pvbox save) instead of booting the kernel. */
  restoreFrom?: string;
  /** Network devices (xl vif specs, parsed). */
  vifs?: VifSpec[];
  /** The domain handle (xl.cfg uuid=, or the toolstack's record): what the guest reads as XENVER_guest_handle and /vm/<uuid>. Random if absent. */
  uuid?: string;
}

export interface DomainIo {
  /** Guest console output: `devid` 0 is the primary console (hvc0), N the secondary device/console/N. */
  console(bytes: Uint8Array, devid?: number): void;
  log(line: string): void;
  /** Records from the host since the last call (non-blocking): console input, XenStore replies. */
  takeInput(): readonly { tag: number; bytes: Uint8Array }[];
  /** XenStore requests from the guest's ring, for the remote daemon. */
  xsSend?(bytes: Uint8Array): void;
  /** Introduce the built domain to the remote daemon (writes its nodes); blocks; false if refused. */
  introduce?(info: Omit<DomainNodeInfo, 'domid'> & { consoles: number; devices?: LinkDevice[] }): boolean;
  /** Answer a request of the remote daemon (device attached), or ask it something (device-add). */
  control?(msg: object): void;
  /** Answer request `id` of the main thread's control socket (block-attach…). */
  reply?(id: number, result: object): void;
  /** Block until input may be available or timeoutMs passes. */
  waitInput(timeoutMs: number): void;
  /** The ring takeInput reads: backends' own threads (block I/O) append to it. */
  readonly inputBuffer?: SharedArrayBuffer;
  /** From now on, writers of the input ring kick thread `tid` (the vCPU's) out of KVM_RUN. */
  setKickTarget?(tid: number): void;
}

export interface DomainResult { reason: ShutdownReason; detail?: string; exits: number; trace: Trace; bootMs: number }

const MIN_MEMORY_MIB = 64;

/** How long pvbox save waits for the guest to suspend (libxl waits 60 s for a PV guest's suspend). */
const SAVE_TIMEOUT_MS = 60_000;
const u32 = (x: number) => Number.isInteger(x) && x >= 0 && x <= 0xffffffff;

/** Backends with threads of their own append to the domain's input ring; an embedding without one cannot run them. */
function requireInput(io: DomainIo): SharedArrayBuffer {
  if (!io.inputBuffer) throw new HostError('this domain has no input ring for backend threads (disks need one)');
  return io.inputBuffer;
}

/**
 * One (guest TSC, host CLOCK_MONOTONIC) pair, taken precisely: of a few reads, the one whose
 * monotonic bracket around the TSC read was narrowest (a read preempted on a loaded host is
 * thrown away rather than averaged in).
 */
function tscSample(kv: KvmVcpu): readonly [bigint, bigint] {
  let best: [bigint, bigint] = [0n, 0n];
  let width = -1n;
  for (let i = 0; i < 7; i++) {
    const n0 = process.hrtime.bigint(), tsc = kv.getMsr(0x10) ?? 0n, n1 = process.hrtime.bigint();
    if (width < 0n || n1 - n0 < width) { width = n1 - n0; best = [tsc, (n0 + n1) / 2n]; }
  }
  return best;
}

/** The shortest interval calibrateTscKhz measures over: with ~10 µs of read error at each end, ~100 ppm. */
const TSC_CALIBRATION_NS = 150_000_000n;

/**
 * The guest TSC rate measured against CLOCK_MONOTONIC (pvclock's mul/shift come from it). Linux's
 * clocksource watchdog compares the guest's TSC with the xen clocksource and marks the TSC
 * unstable past a few hundred ppm of disagreement (seen: 840 ppm with a 20 ms window on a loaded
 * host), so the measurement must do much better:
 * precise samples at both ends of an interval of at least TSC_CALIBRATION_NS (the domain build
 * fills most of it). KVM_GET_TSC_KHZ can be off by 0.1% under nested virtualisation; it is the
 * fallback only when the TSC cannot be read.
 */
function calibrateTscKhz(kv: KvmVcpu, [tsc0, ns0]: readonly [bigint, bigint]): number {
  const left = TSC_CALIBRATION_NS - (process.hrtime.bigint() - ns0);
  if (left > 0n) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, Number(left / 1_000_000n) + 1);
  const [tsc1, ns1] = tscSample(kv);
  const dns = ns1 - ns0;
  if (tsc0 === 0n || tsc1 <= tsc0 || dns <= 0n) return kv.tscKhz;
  return Math.round(Number((tsc1 - tsc0) * 1_000_000n / dns));
}

export async function runDomain(cfg: DomainConfig, io: DomainIo): Promise<DomainResult> {
  if (!Number.isInteger(cfg.memoryMiB) || cfg.memoryMiB < MIN_MEMORY_MIB) throw new ImageError(`--memory ${cfg.memoryMiB}: a PV Linux guest needs at least ${MIN_MEMORY_MIB} MiB`);
  // Open KVM first: a host without it should say so before any slow work.
  // PVBOX_KVM_DEVICE: another KVM device node (tests use a missing one to check the error path).
  const kvm = new Kvm(process.env.PVBOX_KVM_DEVICE ?? '/dev/kvm');
  const vm = kvm.createVm();
  const kv = new KvmVcpu(vm, 0);
  const tscSample0 = tscSample(kv);
  const restore = cfg.restoreFrom ? SaveFile.open(cfg.restoreFrom) : undefined;
  const kernel = restore ? undefined : await loadKernelCached(cfg.kernel, cacheDir());
  let ramdisk: Uint8Array | undefined;
  if (cfg.ramdisk && !restore) {
    try { ramdisk = readFileSync(cfg.ramdisk); } catch (e) { throw new ImageError(`cannot read ramdisk ${cfg.ramdisk}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`); }
  }
  const monitorCode = readFileSync(cfg.monitorBinary);

  const plan = planMemory(cfg.memoryMiB * 1024 * 1024);
  const { addr, buffer } = allocateGuestMemory(plan.totalBytes);
  vm.setUserMemoryRegion(0, 0, plan.totalBytes, addr);
  const mem = new GuestMemory(buffer);
  const tscKhz = calibrateTscKhz(kv, tscSample0);
  const cpuid = buildCpuidPolicy(kvm.supportedCpuid(), tscKhz);
  kv.setCpuid(cpuid);
  const leafD0 = cpuid.find((e) => e.function === 0xd && e.index === 0);
  const xcr0Supported = leafD0 ? (BigInt(leafD0.edx >>> 0) << 32n) | BigInt(leafD0.eax >>> 0) : 3n;
  const hasXsave = (cpuid.find((e) => e.function === 1)?.ecx ?? 0) & (1 << 26);

  const trace = new Trace(cfg.trace, io.log);
  let result: { reason: ShutdownReason; detail?: string } | undefined;
  const d = new Domain(cfg.domid, cfg.name, mem, plan, trace, {
    onShutdown: (reason, detail) => { result = { reason, detail }; },
    onConsoleIo: (bytes) => io.console(bytes),
  });
  const monitor = setupMonitor(mem, plan, monitorCode, 1);
  const v = new Vcpu(0, kv, mem, plan.hvBase);
  d.vcpus.push(v);
  const platform: Platform = {
    cpuid,
    readHardwareMsr: (w, msr) => w.kvm.getMsr(msr),
    fixupGuestCr4: (val) => (val & (0x4n | 0x8n | (hasXsave ? 0x40000n : 0n))) | 0x20n | 0x200n | 0x400n,
    xcr0Valid: (val) => (val & 1n) === 1n && (val & ~xcr0Supported) === 0n && (!(val & 4n) || (val & 2n) === 2n),
    readGuestTsc: (w) => w.kvm.getMsr(0x10) ?? 0n,
  };
  const hv = new Hypervisor(d, platform, tscKhz);
  // Xen's domain handle is the one the toolstack created the domain with (libxl's c_info->uuid).
  const handle = cfg.uuid ? parseUuid(cfg.uuid) : undefined;
  if (handle) hv.uuid.set(handle);
  hv.mm.monitorL4 = monitor.l4Entries;
  v.cr4 = 0x20n | 0x200n | 0x400n | (hasXsave ? 0x40000n : 0n);

  // Ports the toolstack allocates before the build, connected to pvbox's Domain-0 services.
  let consoleBackend: ConsoleBackend | undefined;
  let store: XenStoreRingTransport | undefined;
  const consolePort = hv.evtchn.bindHost(() => consoleBackend?.onNotify());
  const storePort = hv.evtchn.bindHost(() => store?.onGuestNotify());

  let layout: BootLayout | undefined;
  let consolePfn: number, storePfn: number;
  if (kernel) {
    layout = buildPvDomain(mem, plan, { kernel, ramdisk, cmdline: cfg.cmdline, consoleEvtchn: consolePort, storeEvtchn: storePort }, (gpa, l) =>
      writeStartInfo(mem, gpa, l, { nrPages: plan.nrPages, sharedInfoMaddr: d.sharedInfoGpa, storeEvtchn: storePort, consoleEvtchn: consolePort, virtBase: kernel.notes.virtBase, cmdline: cfg.cmdline }));
    consolePfn = layout.consolePfn; storePfn = layout.storePfn;
  } else {
    // Restore: the saved RAM, then the state Xen keeps, then the new event channels in start_info (xc_sr restore's start_info fix-up).
    const file = restore!;
    if (file.header.nrPages !== plan.nrPages) throw new ImageError(`${file.path}: saved with ${file.header.nrPages} pages, not ${plan.nrPages}`);
    file.loadMemory(mem);
    applySavedState(file, { d, hv, v });
    const si = file.header.startInfoMfn * 4096;
    storePfn = Number(mem.read64(si + 0x38)); consolePfn = Number(mem.read64(si + 0x48));
    if (!d.isRam(storePfn) || !d.isRam(consolePfn)) throw new ImageError(`${file.path}: start_info names no valid store or console page`);
    mem.write32(si + 0x40, storePort);
    mem.write32(si + 0x50, consolePort);
  }

  // shared_info: every vCPU starts with events masked (xc_dom shared_info_x86_64); time valid before the first instruction.
  for (let i = 0; i < 32; i++) mem.write8(d.sharedInfoGpa + i * 64 + 1, 1);
  hv.time.updateVcpuTime(v);
  hv.time.setWallclock();
  hv.gnttab.seed(consolePfn, storePfn);

  if (layout) {
    // The boot L4 is pinned and loaded, as the toolstack and Xen do before the first instruction.
    let rc = hv.mm.pinBootTable(v, layout.l4Pfn);
    if (!rc) rc = hv.mm.getPageType(v, layout.l4Pfn, 4);
    if (rc) throw new ImageError(`boot page tables failed validation (${rc}): pvbox builder bug`);
    v.guestTable = layout.l4Pfn;
    v.cr3 = layout.l4Pfn;
    v.kernelSp = layout.stackTop;
  }

  // XenStore: the domain's nodes written as libxl writes them, in pvbox's xenstored if one runs,
  // else in a store of this process's own (the daemon seed), then the guest's ring served from it.
  const nodeInfo = {
    name: cfg.name, uuid: formatUuid(hv.uuid), memoryKiB: cfg.memoryMiB * 1024, vcpus: 1,
    storePort, storeMfn: storePfn, consolePort, consoleMfn: consolePfn,
  };
  let xsDeliver: (bytes: Uint8Array) => void = () => {};
  const storePage = mem.bytes(storePfn * 4096, 4096);
  const notifyStore = () => hv.evtchn.setPending(storePort);
  /** Domain-0 writes into this domain's store (xl shutdown, mem-set, rename): the in-process store only. */
  let dom0Write = (_path: string, _value: string): string | undefined => 'not supported yet for guests under pvbox xenstored';
  /** Answers pvbox save once the domain's devices have let go of its images. */
  let savedReply: (() => void) | undefined;
  /** A request of pvbox xenstored (the control plane) about one of this domain's devices: attach or detach its rings. */
  const onDaemonRequest = (bytes: Uint8Array): void => {
    let m: { op?: string; type?: string; devid?: unknown; ringRef?: unknown; port?: unknown; queues?: unknown; persistent?: unknown; id?: unknown; spec?: unknown; vdev?: unknown };
    try { m = JSON.parse(new TextDecoder().decode(bytes)); } catch { return; }
    const devid = Number(m.devid);
    if (remoteDevices?.onReply(m)) return; // an answer of the daemon to device-add / device-remove
    if (m.type === 'console') {
      if (!Number.isInteger(devid) || devid < 1 || devid > (cfg.consoles ?? 0)) return;
      if (m.op === 'attach') {
        const ref = Number(m.ringRef), port = Number(m.port);
        const error = u32(ref) && u32(port) ? consoleDataplane.attach(devid, ref, port) : 'bad ring-ref or port';
        io.control?.({ op: 'attached', type: 'console', devid, ...(error ? { error } : {}) });
      } else if (m.op === 'detach') consoleDataplane.detach(devid);
    } else if (m.type === 'vbd' && disks.dataplane?.disk(devid)) {
      const vbd = disks.dataplane;
      if (m.op === 'attach') {
        const queues = checkQueues(m.queues);
        const error = queues ? vbd.attach({ devid, queues, persistent: m.persistent === true }) : 'bad queues';
        io.control?.({ op: 'attached', type: 'vbd', devid, ...(error ? { error } : {}) });
      } else if (m.op === 'detach') vbd.detach(devid);
    } else if (m.type === 'vif' && (m.op === 'attach' || m.op === 'detach')) {
      // A vif's rings, from the control plane in pvbox xenstored (domain-link.ts).
      if (m.op === 'detach') { vifs.detach(devid); return; }
      const rings = checkVifRings(m);
      const error = rings ? vifs.attach(devid, rings) : 'bad rings';
      io.control?.({ op: 'attached', type: 'vif', devid, ...(error ? { error } : {}) });
    } else if (typeof m.op === 'string' && DOMAIN_THREAD_OPS.has(m.op) && typeof m.id === 'number') {
      // From the toolstack (pvbox pause, shutdown, mem-set…) through the main thread's control socket.
      io.reply?.(m.id, domainThreadOp(m as Record<string, unknown>, {
        d, uuid: nodeInfo.uuid, xsWrite: (path, value) => dom0Write(path, value),
        setPaused: (on) => { runner.paused = on; }, paused: () => runner.paused,
      }));
    } else if (m.op === 'save' && typeof m.id === 'number') {
      // pvbox save (xl save): ask the guest to suspend; once it has, the state goes to the file after the run loop.
      const id = m.id, path = (m as { path?: unknown }).path;
      if (typeof path !== 'string' || !path.startsWith('/')) { io.reply?.(id, { ok: false, error: 'save needs an absolute file path' }); return; }
      if (d.saveHook) { io.reply?.(id, { ok: false, error: 'a save is already in progress' }); return; }
      // The file must be writable before the guest is asked: a suspend is not undone for a typo.
      const writable = checkSaveTarget(path);
      if (writable) { io.reply?.(id, { ok: false, error: writable }); return; }
      const err = dom0Write(`/local/domain/${cfg.domid}/control/shutdown`, 'suspend');
      if (err) { io.reply?.(id, { ok: false, error: `cannot ask the guest to suspend: ${err}` }); return; }
      const timer = setTimeout(() => {
        // The guest did not suspend (no xenbus watch, or it refused): the save is abandoned, the guest runs on.
        if (!d.saveHook) return;
        d.saveHook = undefined;
        io.reply?.(id, { ok: false, error: `the guest did not suspend within ${SAVE_TIMEOUT_MS / 1000} s` });
      }, SAVE_TIMEOUT_MS);
      d.saveHook = (sv, startInfoMfn) => {
        // In the guest's suspend hypercall: queued monitor work first, then memory and state to the file.
        clearTimeout(timer);
        try {
          sv.flushOps();
          writeSaveFile(path, {
            config: { name: cfg.name, memoryMiB: cfg.memoryMiB, kernel: cfg.kernel, ramdisk: cfg.ramdisk, cmdline: cfg.cmdline, consoles: cfg.consoles ?? 0, disks: cfg.disks ?? [], vifs: vifs.specs(), configPath: cfg.configPath },
            d, hv, v: sv, mem, startInfoMfn,
          });
        } catch (e) {
          io.reply?.(id, { ok: false, error: `${(e as Error).message}; the guest goes on running` });
          return (e as Error).message;
        }
        savedReply = () => io.reply?.(id, { ok: true, path });
        return undefined;
      };
    } else if ((m.op === 'block-attach' || m.op === 'block-detach') && typeof m.id === 'number') {
      // From `pvbox block-attach|block-detach` through the main thread's control socket.
      const id = m.id;
      const work = m.op === 'block-attach' ? disks.attach(m.spec) : disks.detach(m.vdev);
      work.then((r) => io.reply?.(id, r), (e) => io.reply?.(id, { ok: false, error: (e as Error).message }));
    } else if ((m.op === 'network-attach' || m.op === 'network-detach') && typeof m.id === 'number') {
      // From `pvbox network-attach|network-detach` through the main thread's control socket.
      const id = m.id;
      const work = m.op === 'network-attach' ? vifs.attachNew(m.spec) : vifs.detachOne((m as { target?: unknown }).target);
      work.then((r) => io.reply?.(id, r), (e) => io.reply?.(id, { ok: false, error: (e as Error).message }));
    }
  };
  // The consoles' data plane: map the granted ring, bind the frontend's port, move the bytes.
  const grants = new GrantAccess(hv.gnttab, { backendDomid: 0, pageTypes: hv.mm.types });
  const consoleDataplane = new RingDataplane(grants, hv.evtchn, (devid, page, notify) =>
    new ConsoleBackend(page, (b) => io.console(b, devid), notify, (l) => trace.warn(`console${devid}`, l)));

  // Disks: opened and locked in the block I/O thread before the guest runs (a missing, locked or corrupt image is a one-line error, not a dead device).
  const vbdLog = (devid: number, l: string) => trace.warn(`vbd${devid}`, l);
  const disks = new DomainDisks((specs) => VbdDataplane.open(specs, requireInput(io), grants, hv.evtchn, vbdLog), undefined);
  await disks.openBootDisks(cfg.disks ?? []);
  const remoteDevices = cfg.xenstoreRemote && io.control ? new RemoteDeviceHost(io.control) : undefined;

  // Network devices: TAP devices, bridges and scripts before the guest runs (a missing bridge is a one-line error).
  const vifs = DomainVifs.open(cfg.vifs ?? [], cfg.domid, (l) => trace.warn('vif', l));
  vifs.bind(grants, hv.evtchn, io.inputBuffer);

  if (cfg.xenstoreRemote) {
    // The daemon runs the secondary consoles' xenbus state machines and asks us to attach their rings.
    if (!io.introduce?.({ ...nodeInfo, consoles: cfg.consoles ?? 0, devices: [...disks.bootDevices(), ...vifs.bootDevices()] }) || !io.xsSend || !remoteDevices) throw new HostError('xenstored did not accept the domain');
    disks.setHost(remoteDevices);
    await vifs.setHost(remoteDevices, false);
    const xsSend = io.xsSend;
    store = new XenStoreRingTransport((send) => { xsDeliver = send; return { receive: (chunk) => xsSend(chunk) }; }, storePage, notifyStore, (l) => trace.warn('xs-ring', l));
  } else {
    const daemon = new XenStored({ log: (l) => trace.warn('xenstored', l) });
    daemon.introduceDomain(0);
    const dom0 = daemon.store.connect(0, () => {});
    dom0.write(0, '/local/domain/0/name', 'Domain-0');
    dom0.write(0, '/local/domain/0/domid', '0');
    dom0Write = (path, value) => { const r = dom0.write(0, path, value); return r.ok ? undefined : `xenstore write ${path}: ${r.failure}`; };
    writeDomainNodes(dom0, { domid: cfg.domid, ...nodeInfo });
    daemon.introduceDomain(cfg.domid);
    createPrimaryConsole(daemon.store, { domid: cfg.domid, ...nodeInfo }, (l) => trace.warn('console0', l));
    // Secondary consoles: xenbus devices whose rings the guest grants (control plane here, data plane below).
    for (let i = 1; i <= (cfg.consoles ?? 0); i++) {
      const dev = createDevice<Dataplane>(daemon.store, {
        type: 'console', frontendDomid: cfg.domid, devid: i,
        frontendNodes: { limit: 1048576, type: 'xenconsoled', output: 'pty', tty: '' },
      }, { log: (l) => trace.warn(`console${i}`, l) });
      dev.start(new ConsoleXenbusBackend(i), consoleDataplane);
    }
    const localDevices = new LocalDeviceHost(daemon.store, cfg.domid, () => disks.dataplane!, vbdLog);
    for (const d of disks.bootDevices()) {
      const err = await localDevices.add(d);
      if (err) throw new HostError(`disk ${d.devid}: ${err}`);
    }
    disks.setHost(localDevices);
    await vifs.setHost(new LocalVifHost(daemon.store, cfg.domid, vifs, (devid, l) => trace.warn(`vif${devid}`, l)), true);
    store = new XenStoreRingTransport((send) => daemon.connect(cfg.domid, send, {
      onError: (e) => trace.warn('xs-ring', `xenstore: domain ${cfg.domid} ring: ${e}; stopped serving it`),
    }), storePage, notifyStore, (l) => trace.warn('xs-ring', l));
  }
  consoleBackend = new ConsoleBackend(mem.bytes(consolePfn * 4096, 4096), (b) => io.console(b), () => hv.evtchn.setPending(consolePort), (l) => trace.warn('console', l));

  // vCPU state: enter in ring 0 at `resume`, which IRETQs to the guest's entry point at CPL3.
  const sregs = kv.getSregs();
  const dv = new DataView(sregs.buffer, sregs.byteOffset, sregs.byteLength);
  const code64 = { base: 0n, limit: 0xffffffff, selector: SEL.HYPERVISOR_CS, type: 11, present: 1, dpl: 0, db: 0, s: 1, l: 1, g: 1 };
  const data = { base: 0n, limit: 0xffffffff, selector: SEL.HYPERVISOR_DS, type: 3, present: 1, dpl: 0, db: 1, s: 1, l: 0, g: 1 };
  const nul = { base: 0n, limit: 0, selector: 0, type: 0, present: 0, dpl: 0, db: 0, s: 0, l: 0, g: 0, unusable: 1 };
  writeSegment(dv, SREG.cs, code64); writeSegment(dv, SREG.ss, data);
  for (const s of [SREG.ds, SREG.es, SREG.fs, SREG.gs]) writeSegment(dv, s, nul);
  writeSegment(dv, SREG.ldt, nul);
  const area = vcpuAreaOffset(0);
  writeSegment(dv, SREG.tr, { base: hvVirt(area + VCPU_AREA.tss), limit: 0x67, selector: SEL.TSS, type: 11, present: 1, dpl: 0, db: 0, s: 0, l: 0, g: 0 });
  dv.setBigUint64(SREGS_gdt, hvVirt(area + VCPU_AREA.gdt), true); dv.setUint16(SREGS_gdt + 8, GDT_LIMIT, true);
  dv.setBigUint64(SREGS_idt, hvVirt(HV.idt), true); dv.setUint16(SREGS_idt + 8, 0xfff, true);
  dv.setBigUint64(SREGS_cr0, 0x80050033n, true);
  const resumed = restore ? savedSregs(restore) : undefined;
  dv.setBigUint64(SREGS_cr3, resumed ? resumed.cr3 : BigInt(layout!.l4Pfn) << 12n, true);
  // kvm_segment.base is its first field.
  if (resumed) { dv.setBigUint64(SREG.fs, resumed.fsBase, true); dv.setBigUint64(SREG.gs, resumed.gsBase, true); }
  dv.setBigUint64(SREGS_cr4, 0x20n | 0x200n | 0x400n | (hasXsave ? 0x40000n : 0n), true);
  // EFER.SCE is off: a guest SYSCALL raises #UD, which the monitor's IDT turns into an exit.
  // PVM hosts run SYSCALL through their own switcher, not the guest's LSTAR at CPL0 (docs/architecture.md).
  dv.setBigUint64(SREGS_efer, 0xd00n, true);
  kv.setSregs(sregs);
  const MSR_STAR = 0xc0000081, MSR_LSTAR = 0xc0000082, MSR_CSTAR = 0xc0000083, MSR_SFMASK = 0xc0000084;
  kv.setMsrs([
    [MSR_STAR, (BigInt(SEL.FLAT_RING3_CS32) << 48n) | (BigInt(SEL.HYPERVISOR_CS) << 32n)],
    [MSR_LSTAR, hvVirt(HV.monitorCode + MONITOR.lstar)],
    [MSR_CSTAR, hvVirt(HV.monitorCode + MONITOR.cstar)],
    [MSR_SFMASK, 0x47700n], // Xen's XEN_SYSCALL_MASK: TF IF DF NT RF VM AC (and IOPL)
    [0x277, 0x0000050100070406n], // PAT as Xen programs it
    // FS, GS and KERNEL_GS bases (a restored vCPU has its own; set after the sregs, these win).
    [0xc0000100, resumed?.fsBase ?? 0n], [0xc0000101, resumed?.gsBase ?? 0n], [0xc0000102, 0n],
  ]);
  // The sync-regs copy is what KVM loads on the first KVM_RUN (prepareResume marks it dirty).
  if (layout) {
    kv.regs.fill(0n);
    kv.regs[R.rsi] = layout.startInfoVa;
    v.frame = { rip: layout.entry, cs: SEL.FLAT_RING3_CS64, rflags: 0x202n, rsp: layout.stackTop, ss: SEL.FLAT_RING3_DS };
  }
  restore?.close();

  const kicker = new Kicker(kv);
  io.setKickTarget?.(kicker.tid);
  hv.evtchn.wake = () => {};
  const host: HostInputs = {
    takeInput: () => {
      const records = io.takeInput();
      for (const r of records) {
        if (r.tag === INPUT_CONSOLE) consoleBackend?.input(r.bytes);
        else if (r.tag === INPUT_CONSOLE_N && r.bytes.length > 0) consoleDataplane.servers.get(r.bytes[0]!)?.server.input(r.bytes.subarray(1));
        else if (r.tag === INPUT_CONTROL) onDaemonRequest(r.bytes);
        else if (r.tag === INPUT_XS) xsDeliver(r.bytes);
        else if (r.tag === INPUT_NET) vifs.onInput(r.bytes);
        else if (r.tag === INPUT_BLKIO) disks.dataplane?.onCompletions(r.bytes);
      }
      return records.length > 0;
    },
    // Every exit: network frames and tx requests the guest queued since the last one (no notification needed).
    pollDevices: () => vifs.poll(),
    wait: (ms) => io.waitInput(ms),
  };
  const runner = new VcpuRunner(hv, v, kicker, host);
  const t0 = Date.now();
  try {
    await runner.run();
  } catch (e) {
    d.crash(`pvbox internal error: ${(e as Error).stack ?? e}`);
  }
  // Device counters for --stats, before the devices go: "<device>[ q<n>] <counter>".
  const dev = trace.counters.devices;
  const countQueues = (device: string, queues: readonly object[]) => {
    for (const [q, s] of queues.entries()) for (const [k, n] of Object.entries(s)) dev.set(`${device}${queues.length > 1 ? ` q${q}` : ''} ${k}`, n as number);
  };
  for (const { vdev, queues } of disks.dataplane?.stats() ?? []) countQueues(vdev, queues);
  for (const { name, queues, writeErrors } of vifs.stats()) {
    countQueues(name, queues);
    if (writeErrors) dev.set(`${name} tapWriteErrors`, writeErrors);
  }
  // Outstanding disk I/O finishes, images are flushed and unlocked before the process reports the end.
  await disks.shutdown();
  savedReply?.();
  vifs.close();
  const r = result ?? { reason: 'crash' as const, detail: 'run loop ended without a shutdown' };
  return { reason: r.reason, detail: r.detail, exits: runner.exits, trace, bootMs: Date.now() - t0 };
}
