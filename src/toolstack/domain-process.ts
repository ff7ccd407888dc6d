// A detached domain process: one guest without a terminal, its console on a socket with a replay buffer (xenconsoled), its management requests on a control socket, its registry record, and the on_poweroff/on_reboot/on_crash actions (the per-domain `xl` process that `xl create` leaves behind: tools/xl/xl_vmcontrol.c create_domain + handle_domain_death).
import { spawn } from 'node:child_process';
import { appendFileSync, closeSync, mkdirSync, openSync, readFileSync, rmSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { ConfigError, HostError, ImageError, PvboxError, UsageError } from '../errors.js';
import type { ShutdownReason } from '../hypervisor/domain.js';
import { ensureMonitorBinary } from '../monitor/image.js';
import { INPUT_CONSOLE, INPUT_CONTROL, InputRingWriter, newInputBuffer, vcpuThreadId, type WorkerInit } from '../vcpu/worker-protocol.js';
import { ConsoleServer, consoleSocketPath } from './console-server.js';
import { ControlServer, controlSocketPath, type ControlReply, type ControlRequest } from './control-server.js';
import { domainControlHandler, DomainThreadRequests } from './domain-control.js';
import { type DomainRecord, type DomainSpec, listDomains, logDir, registerDomain, removeRecord, writeRecord } from './registry.js';

/** The hidden verb `pvbox __domain` runs this process. */
export const DOMAIN_PROCESS_VERB = '__domain';
const PVBOX_BIN = fileURLToPath(new URL('../../bin/pvbox.js', import.meta.url));
const WORKER_ENTRY = fileURLToPath(new URL('../vcpu/worker-entry.mjs', import.meta.url));
/** xenconsoled keeps a buffer of a guest's output; pvbox shows its last 64 KiB to each new `console` client. */
const CONSOLE_REPLAY_BYTES = 64 * 1024;
/** A guest that asks for a restart sooner than this after its start is destroyed instead (a crash loop would burn the host's CPU). */
const MIN_RESTART_INTERVAL_MS = 10_000;

type ToParent = { type: 'started'; domid: number } | { type: 'error'; kind: string; message: string };
type GuestEnd = { reason: ShutdownReason; detail?: string } | { error: string; kind?: string };

/** pvbox's own log, shown by `pvbox dmesg` (Xen's console ring holds the hypervisor's messages). */
export function dmesgPath(env: NodeJS.ProcessEnv = process.env): string { return join(logDir(env), 'pvbox.log'); }
export function hostLog(line: string): void {
  try { mkdirSync(logDir(), { recursive: true }); appendFileSync(dmesgPath(), `(XEN) [${new Date().toISOString()}] ${line}\n`); } catch { /* logging must not stop a guest */ }
}

/** The last bytes a console printed, for clients that attach later. */
class ConsoleReplay {
  private chunks: Uint8Array[] = [];
  private size = 0;
  push(bytes: Uint8Array): void {
    this.chunks.push(bytes.slice());
    this.size += bytes.length;
    while (this.size - this.chunks[0]!.length >= CONSOLE_REPLAY_BYTES) this.size -= this.chunks.shift()!.length;
  }
  bytes(): Uint8Array { const all = Buffer.concat(this.chunks); return all.subarray(Math.max(0, all.length - CONSOLE_REPLAY_BYTES)); }
}

/** One run of the guest on its domain thread (a restart makes a new one). */
class GuestRun {
  readonly input = newInputBuffer();
  readonly writer = new InputRingWriter(this.input);
  readonly worker: Worker;
  readonly ended: Promise<GuestEnd>;
  private readonly requests = new DomainThreadRequests((bytes) => this.writer.push(INPUT_CONTROL, bytes));
  private over = false;

  constructor(init: Omit<WorkerInit, 'input'>, onConsole: (bytes: Uint8Array) => void) {
    this.worker = new Worker(WORKER_ENTRY, { workerData: { ...init, input: this.input } satisfies WorkerInit });
    this.ended = new Promise<GuestEnd>((resolve) => {
      const end = (e: GuestEnd) => {
        if (this.over) return;
        this.over = true;
        this.requests.end();
        resolve(e);
      };
      this.worker.on('message', (m: { type: string; [k: string]: unknown }) => {
        if (m.type === 'console' && !m.devid) onConsole(m.bytes as Uint8Array);
        else if (m.type === 'control-reply') this.requests.answer(m.id as number, m.result as ControlReply);
        else if (m.type === 'exit') end({ reason: m.reason as ShutdownReason, detail: m.detail as string | undefined });
        else if (m.type === 'error') end({ error: m.message as string });
      });
      this.worker.on('error', (e) => end({ error: `internal error: ${e.stack ?? e}` }));
      this.worker.on('exit', () => end({ error: 'the domain thread ended' }));
    });
  }

  /** The vCPU thread's tid, once the domain is built and about to run (the worker publishes it for kicks). */
  vcpuTid(): number { return vcpuThreadId(this.input); }

  /** Resolves when the domain is built and its vCPU runs; rejects with the build's error. */
  async built(): Promise<number> {
    let end: GuestEnd | undefined;
    void this.ended.then((e) => { end = e; });
    for (;;) {
      if (end) throw 'error' in end ? new HostError(end.error) : new HostError(`the guest stopped (${end.reason}) before it ran`);
      const tid = this.vcpuTid();
      if (tid > 0) return tid;
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** A request for the domain thread (domain-ops.ts, block-attach…), answered through io.reply. */
  request(req: ControlRequest, timeoutMs = 30_000): Promise<ControlReply> { return this.requests.request(req, timeoutMs); }
}

/** Host memory (MiB) from /proc/meminfo. */
export function hostMemory(): { totalMiB: number; availableMiB: number } {
  const text = readFileSync('/proc/meminfo', 'utf8');
  const kib = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? 0);
  return { totalMiB: Math.floor(kib('MemTotal') / 1024), availableMiB: Math.floor(kib('MemAvailable') / 1024) };
}

/** xl refuses a domain the host cannot hold (libxl's freemem); pvbox checks available memory and what running guests already claim. */
function checkHostMemory(spec: DomainSpec): void {
  const { totalMiB, availableMiB } = hostMemory();
  const claimed = listDomains().reduce((sum, d) => sum + d.memoryMiB, 0);
  if (spec.memoryMiB > availableMiB) throw new HostError(`not enough memory for '${spec.name}': it needs ${spec.memoryMiB} MiB, the host has ${availableMiB} MiB available`);
  if (claimed + spec.memoryMiB > totalMiB) throw new HostError(`not enough memory for '${spec.name}': it needs ${spec.memoryMiB} MiB, running guests already have ${claimed} of the host's ${totalMiB} MiB`);
}

function errorKind(e: unknown): { kind: string; message: string } {
  if (e instanceof PvboxError) return { kind: e.name, message: e.message };
  return { kind: 'internal', message: `internal error: ${(e as Error).stack ?? e}` };
}

/** `pvbox __domain`: the spec arrives on the IPC channel; the answer ('started' or 'error') goes back on it, then the channel is closed. */
export async function domainProcessMain(): Promise<number> {
  if (!process.send) throw new UsageError(`${DOMAIN_PROCESS_VERB} is started by pvbox create, not by hand`);
  const spec = await new Promise<DomainSpec>((resolve, reject) => {
    process.once('message', (m) => resolve((m as { spec: DomainSpec }).spec));
    process.once('disconnect', () => reject(new HostError('the creating pvbox went away')));
  });
  const logFile = join(logDir(), `xl-${spec.name}.log`);
  const report = (m: ToParent) => { if (process.connected) process.send!(m); };
  const say = (line: string) => process.stderr.write(`[${new Date().toISOString()}] ${line}\n`);
  process.on('SIGHUP', () => {});

  let record: DomainRecord | undefined;
  let consoleServer: ConsoleServer | undefined;
  let controlServer: ControlServer | undefined;
  let guest: GuestRun | undefined;
  const replay = new ConsoleReplay();
  const socketPaths = (r: DomainRecord) => [consoleSocketPath(r.domid, r.name), controlSocketPath(r.domid, r.name)];
  const cleanup = () => {
    consoleServer?.close(); controlServer?.close();
    if (record) { for (const p of socketPaths(record)) { try { unlinkSync(p); } catch { /* gone */ } } removeRecord(record.domid); }
    if (spec.bootDir) rmSync(spec.bootDir, { recursive: true, force: true });
  };
  const destroy = (why: string): never => {
    if (record) hostLog(`domain ${record.domid} (${record.name}) destroyed: ${why}`);
    say(`destroyed: ${why}`);
    cleanup();
    process.exit(0);
  };
  process.on('SIGTERM', () => destroy('SIGTERM'));
  process.on('SIGINT', () => destroy('SIGINT'));

  const save = () => { if (record) writeRecord(record); };
  const startGuest = (r: DomainRecord, monitorBinary: string) => new GuestRun({
    config: {
      name: r.name, domid: r.domid, kernel: spec.kernel, ramdisk: spec.ramdisk, cmdline: spec.cmdline, memoryMiB: spec.memoryMiB,
      monitorBinary, trace: process.env.PVBOX_TRACE === '1', xenstoreRemote: false, consoles: 0, disks: spec.disks, vifs: spec.vifs, restoreFrom: spec.restoreFrom, configPath: spec.configPath,
      uuid: spec.uuid,
    },
    readyMarker: 'PVBOX-READY',
  }, (bytes) => { replay.push(bytes); consoleServer?.broadcast(bytes); });

  const handle = domainControlHandler({
    record: () => record!, guest: () => guest, destroy, save, socketPaths, log: say,
  });

  let monitorBinary: string;
  try {
    checkHostMemory(spec);
    monitorBinary = ensureMonitorBinary();
    record = await registerDomain({
      name: spec.name, uuid: spec.uuid, memoryMiB: spec.memoryMiB, targetMiB: spec.memoryMiB, maxmemMiB: spec.maxmemMiB, vcpus: spec.vcpus,
      startTime: Math.floor(Date.now() / 1000), pid: process.pid, vcpuTid: 0, state: 'starting', configPath: spec.configPath, logFile,
    });
    say(`domain ${record.domid} (${spec.name}): kernel ${spec.kernel}, ${spec.memoryMiB} MiB, cmdline '${spec.cmdline}'`);
    consoleServer = await ConsoleServer.listen(consoleSocketPath(record.domid, record.name), (b) => guest?.writer.push(INPUT_CONSOLE, b), () => replay.bytes());
    controlServer = await ControlServer.listen(controlSocketPath(record.domid, record.name), handle);
    guest = startGuest(record, monitorBinary);
    record.vcpuTid = await guest.built();
    spec.restoreFrom = undefined; // a later restart (on_reboot=restart) boots the kernel
    record.state = 'running'; save();
    hostLog(`domain ${record.domid} (${record.name}) created, ${spec.memoryMiB} MiB, from ${spec.configPath ?? 'the command line'}`);
  } catch (e) {
    const { kind, message } = errorKind(e);
    say(`failed: ${message}`);
    report({ type: 'error', kind, message });
    cleanup();
    return 1;
  }
  report({ type: 'started', domid: record.domid });
  process.disconnect();

  // handle_domain_death: what the guest asked for, then the configured action.
  for (;;) {
    const end = await guest.ended;
    if ('error' in end) return destroy(end.error);
    const reason = end.reason;
    if (reason === 'suspend') return destroy('saved (pvbox save)');
    const action = reason === 'poweroff' ? spec.onPoweroff : reason === 'reboot' ? spec.onReboot : spec.onCrash;
    hostLog(`domain ${record.domid} (${record.name}) shut down: ${reason}${end.detail ? ` (${end.detail})` : ''}; action ${action}`);
    say(`guest ${reason}${end.detail ? `: ${end.detail}` : ''}; on_${reason === 'poweroff' || reason === 'reboot' ? reason : 'crash'}=${action}`);
    if (action === 'restart') {
      if (Date.now() - record.startTime * 1000 < MIN_RESTART_INTERVAL_MS) return destroy(`asked to restart less than ${MIN_RESTART_INTERVAL_MS / 1000} s after it started`);
      record.state = 'starting'; record.startTime = Math.floor(Date.now() / 1000); save();
      guest = startGuest(record, monitorBinary);
      try { record.vcpuTid = await guest.built(); } catch (e) { return destroy(`restart failed: ${(e as Error).message}`); }
      record.state = 'running'; save();
      continue;
    }
    if (action === 'preserve') {
      // The domain stays listed (state 's') until `pvbox destroy`; the control socket answers meanwhile.
      record.state = 'shutdown'; record.shutdownReason = reason; record.vcpuTid = 0; save();
      await new Promise<never>(() => {});
    }
    return destroy(`on_${reason} = destroy`);
  }
}

/**
 * The creating side (`pvbox create`): start the domain process detached (its own session, stdio to
 * its log file), hand it the spec, and wait for 'started' or its one-line error. A domain process
 * that fails removes everything it made; one that dies silently is killed and named.
 */
export async function spawnDomainProcess(spec: DomainSpec, env: NodeJS.ProcessEnv = process.env): Promise<number> {
  mkdirSync(logDir(env), { recursive: true, mode: 0o755 });
  const logFile = join(logDir(env), `xl-${spec.name}.log`);
  const fd = openSync(logFile, 'a', 0o600);
  const child = spawn(process.execPath, [PVBOX_BIN, DOMAIN_PROCESS_VERB], { detached: true, stdio: ['ignore', 'ignore', fd, 'ipc'], env });
  closeSync(fd);
  return await new Promise<number>((resolve, reject) => {
    let answered = false;
    child.once('message', (m: ToParent) => {
      answered = true;
      if (m.type === 'started') { child.unref(); child.disconnect?.(); resolve(m.domid); return; }
      const E = { ConfigError, ImageError, HostError, UsageError }[m.kind] ?? HostError;
      child.once('exit', () => reject(new E(m.message)));
      setTimeout(() => { try { child.kill('SIGKILL'); } catch { /* gone */ } }, 5000).unref();
    });
    child.once('exit', (code, sig) => {
      if (answered) return;
      let last = '';
      try { last = readFileSync(logFile, 'utf8').trimEnd().split('\n').pop() ?? ''; } catch { /* none */ }
      reject(new HostError(`the domain process for '${spec.name}' ended (${sig ?? `status ${code}`}) before the guest started${last ? `: ${last}` : ''}`));
    });
    child.once('error', (e) => reject(new HostError(`cannot start a domain process: ${e.message}`)));
    child.send({ spec });
  });
}
