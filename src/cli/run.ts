// `pvbox run`: start one PV guest in this process and attach its console to the terminal (the xl create -c experience without a daemon).
import { Worker } from 'node:worker_threads';
import { existsSync, mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { UsageError } from '../errors.js';
import type { DiskSpec } from '../backends/vbd/disk-spec.js';
import type { VifSpec } from '../backends/vif/vif-spec.js';
import type { ShutdownReason } from '../hypervisor/domain.js';
import { ensureMonitorBinary } from '../monitor/image.js';
import { randomUUID } from 'node:crypto';
import { ControlServer, controlSocketPath, type ControlReply } from '../toolstack/control-server.js';
import { domainControlHandler, DomainThreadRequests } from '../toolstack/domain-control.js';
import { type DomainRecord, listDomains, registerDomain, registryDir, removeRecord, writeRecord } from '../toolstack/registry.js';
import { INPUT_CONSOLE, INPUT_CONSOLE_N, INPUT_CONTROL, INPUT_XS, InputRingWriter, newInputBuffer, vcpuThreadId, type WorkerInit } from '../vcpu/worker-protocol.js';
import { DomainLinkClient, domainLinkPath } from '../toolstack/domain-link.js';
import { ConsoleServer, consoleSocketPath } from '../toolstack/console-server.js';

export interface RunOptions { kernel?: string; ramdisk?: string; extra?: string; memory: number; trace: boolean; stats: boolean; name: string; consoles?: number; disks?: DiskSpec[]; vifs?: VifSpec[] }

/** Exit status per shutdown reason: 0 poweroff, distinct non-zero codes otherwise. */
export const EXIT_STATUS: Record<ShutdownReason, number> = { poweroff: 0, reboot: 3, suspend: 4, crash: 2, watchdog: 5, soft_reset: 6 };
export const READY_MARKER = 'PVBOX-READY';
const CTRL_RIGHT_BRACKET = 0x1d;

export async function run(opts: RunOptions): Promise<number> {
  let kernel = opts.kernel, ramdisk = opts.ramdisk;
  if (!kernel) {
    if (ramdisk) throw new UsageError('--ramdisk needs --kernel');
    const { ensureDefaultImage } = await import('../images/debian.js');
    const img = await ensureDefaultImage();
    kernel = img.kernel; ramdisk = img.initrd;
  }
  if (!existsSync(kernel)) throw new UsageError(`kernel ${kernel}: no such file`);
  if (ramdisk && !existsSync(ramdisk)) throw new UsageError(`ramdisk ${ramdisk}: no such file`);
  const monitorBinary = ensureMonitorBinary();
  const input = newInputBuffer();
  const writer = new InputRingWriter(input);
  // With `pvbox xenstored` running, the guest joins its store (and gets its domid from it).
  const link = await DomainLinkClient.connect(domainLinkPath());
  // The guest is in the domain registry like a `pvbox create` guest, so `pvbox list` and the xl verbs see it; this process owns the record.
  const recordFields: Omit<DomainRecord, 'domid'> = {
    name: opts.name, uuid: randomUUID(), memoryMiB: opts.memory, targetMiB: opts.memory, maxmemMiB: opts.memory, vcpus: 1,
    startTime: Math.floor(Date.now() / 1000), pid: process.pid, vcpuTid: 0, state: 'starting', logFile: '',
  };
  let record: DomainRecord;
  /** The record written to the registry; a failure costs the listing only, never the guest. */
  let listed = true;
  const saveRecord = () => {
    if (!listed) return;
    try { writeRecord(record); } catch (e) {
      listed = false;
      process.stderr.write(`pvbox: cannot write the domain registry (${(e as Error).message}); pvbox list will not show this guest\n`);
    }
  };
  if (link) {
    // pvbox xenstored chose the domid; a registry entry of another process with that id is left alone (the guest is then not listed).
    record = { ...recordFields, domid: await link.hello(opts.name) };
    listed = !listDomains().some((d) => d.domid === record.domid);
    if (listed) { try { mkdirSync(registryDir(), { recursive: true, mode: 0o755 }); } catch { /* saveRecord reports it */ } }
    saveRecord();
  } else {
    record = await registerDomain(recordFields);
  }
  const domid = record.domid;
  const init: WorkerInit = {
    config: {
      name: opts.name, domid, kernel, ramdisk, memoryMiB: opts.memory, monitorBinary, trace: opts.trace, uuid: record.uuid,
      cmdline: ['console=hvc0', opts.extra ?? ''].join(' ').trim(), xenstoreRemote: !!link, consoles: opts.consoles ?? 0, disks: opts.disks ?? [], vifs: opts.vifs ?? [],
    },
    input, readyMarker: READY_MARKER,
  };
  if (link) {
    link.onXs = (bytes) => { if (!writer.push(INPUT_XS, bytes)) process.stderr.write('pvbox: XenStore replies dropped: the guest is not reading its ring\n'); };
    link.onClose = () => process.stderr.write(`\npvbox: xenstored closed the link for domain ${domid}\n`);
    link.onControl = (msg) => writer.push(INPUT_CONTROL, Buffer.from(JSON.stringify(msg)));
  }
  const consoleServer = await ConsoleServer.listen(consoleSocketPath(domid, opts.name), (bytes) => writer.push(INPUT_CONSOLE, bytes))
    .catch((e: Error) => { process.stderr.write(`pvbox: console socket unavailable (${e.message}); pvbox console cannot attach\n`); return undefined; });
  const secondaryServers = new Map<number, ConsoleServer>();
  for (let n = 1; n <= (opts.consoles ?? 0); n++) {
    const server = await ConsoleServer.listen(consoleSocketPath(domid, opts.name, n), (bytes) => writer.push(INPUT_CONSOLE_N, Buffer.concat([Buffer.of(n), bytes])));
    secondaryServers.set(n, server);
  }
  const worker = new Worker(fileURLToPath(new URL('../vcpu/worker-entry.mjs', import.meta.url)), { workerData: init });
  // Management requests (pvbox list, pause, block-attach…): the record's part here, the rest by the domain thread.
  const requests = new DomainThreadRequests((bytes) => writer.push(INPUT_CONTROL, bytes));
  let destroyed: string | undefined;
  const handle = domainControlHandler({
    record: () => record, guest: () => requests, save: saveRecord, log: () => {},
    destroy: (why) => { destroyed = why; void worker.terminate(); },
    socketPaths: (r) => [consoleSocketPath(r.domid, r.name), controlSocketPath(r.domid, r.name), ...[...secondaryServers.keys()].map((n) => consoleSocketPath(r.domid, r.name, n))],
  });
  const controlServer = await ControlServer.listen(controlSocketPath(domid, opts.name), handle)
    .catch((e: Error) => { process.stderr.write(`pvbox: control socket unavailable (${e.message}); block-attach cannot reach this guest\n`); return undefined; });
  // Listed as running once its vCPU thread runs (as domain-process.ts GuestRun.built waits for).
  const running = setInterval(() => {
    const tid = vcpuThreadId(input);
    if (tid <= 0) return;
    clearInterval(running);
    record.vcpuTid = tid; record.state = 'running';
    saveRecord();
  }, 50);
  const stdin = process.stdin;
  const tty = stdin.isTTY;
  let detached = false;
  const push = (bytes: Uint8Array) => {
    const cut = tty ? bytes.indexOf(CTRL_RIGHT_BRACKET) : -1;
    if (cut >= 0) { writer.push(INPUT_CONSOLE, bytes.subarray(0, cut)); detached = true; void worker.terminate(); return; }
    writer.push(INPUT_CONSOLE, bytes); // a full ring drops input the guest is not reading
  };
  if (tty) stdin.setRawMode(true);
  stdin.on('data', push);
  stdin.on('error', () => {});
  const restore = () => {
    if (tty) stdin.setRawMode(false);
    stdin.pause(); stdin.off('data', push); link?.close(); consoleServer?.close(); controlServer?.close();
    requests.end();
    for (const s of secondaryServers.values()) s.close();
    clearInterval(running);
    if (listed && listDomains().some((d) => d.domid === record.domid && d.pid === process.pid)) removeRecord(record.domid);
  };
  const t0 = Date.now();
  return await new Promise<number>((resolve) => {
    let readyMs: number | undefined;
    worker.on('message', (m: { type: string; [k: string]: unknown }) => {
      if (m.type === 'ready') readyMs = m.ms as number;
      if (m.type === 'xs') link?.sendXs(m.bytes as Uint8Array);
      if (m.type === 'control') link?.sendControl(m.msg as object);
      if (m.type === 'control-reply') requests.answer(m.id as number, m.result as ControlReply);
      if (m.type === 'console') (m.devid ? secondaryServers.get(m.devid as number) : consoleServer)?.broadcast(m.bytes as Uint8Array);
      if (m.type === 'introduce' && link) {
        link.ready({ ...(m.info as Parameters<DomainLinkClient['ready']>[0]) }).then(() => writer.introduced(true), (e) => {
          process.stderr.write(`pvbox: ${(e as Error).message}\n`); writer.introduced(false);
        });
      }
      if (m.type === 'error') { restore(); process.stderr.write(`pvbox: ${m.message}\n`); resolve(1); }
      if (m.type === 'exit') {
        restore();
        const reason = m.reason as ShutdownReason;
        const detail = m.detail ? `: ${m.detail}` : '';
        process.stderr.write(`\npvbox: guest ${opts.name} ${reason === 'poweroff' ? 'powered off' : reason === 'reboot' ? 'rebooted (pvbox run ends; use the toolstack to restart)' : reason === 'crash' ? 'crashed' : reason}${reason === 'crash' ? detail : ''}\n`);
        if (opts.stats) {
          process.stderr.write(`pvbox: ${m.exits} exits in ${((Date.now() - t0) / 1000).toFixed(2)} s; readiness line ${readyMs !== undefined ? `after ${(readyMs / 1000).toFixed(2)} s` : 'never seen'}\n${m.counters as string}`);
        }
        resolve(EXIT_STATUS[reason] ?? 1);
      }
    });
    worker.on('error', (e) => { restore(); process.stderr.write(`pvbox: internal error: ${e.stack ?? e}\n`); resolve(1); });
    worker.on('exit', () => {
      if (destroyed) { restore(); process.stderr.write(`\npvbox: guest ${record.name} destroyed (${destroyed})\n`); resolve(0); }
      else if (detached) { restore(); process.stderr.write('\npvbox: console detached (Ctrl-]); guest destroyed\n'); resolve(0); }
    });
  });
}

