// `pvbox run`: start one PV guest in this process and attach its console to the terminal (the xl create -c experience without a daemon).
import { Worker } from 'node:worker_threads';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { UsageError } from '../errors.js';
import type { ShutdownReason } from '../hypervisor/domain.js';
import { ensureMonitorBinary } from '../monitor/image.js';
import { INPUT_RING, type WorkerInit } from '../vcpu/worker-protocol.js';

export interface RunOptions { kernel?: string; ramdisk?: string; extra?: string; memory: number; trace: boolean; stats: boolean; name: string }

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
  const input = new SharedArrayBuffer(16 + INPUT_RING);
  const ctl = new Int32Array(input, 0, 4);
  const ring = new Uint8Array(input, 16, INPUT_RING);
  const init: WorkerInit = {
    config: {
      name: opts.name, domid: 1, kernel, ramdisk, memoryMiB: opts.memory, monitorBinary, trace: opts.trace,
      cmdline: ['console=hvc0', opts.extra ?? ''].join(' ').trim(),
    },
    input, readyMarker: READY_MARKER,
  };
  const worker = new Worker(fileURLToPath(new URL('../vcpu/worker-entry.mjs', import.meta.url)), { workerData: init });
  const stdin = process.stdin;
  const tty = stdin.isTTY;
  let detached = false;
  const push = (bytes: Uint8Array) => {
    for (const b of bytes) {
      if (tty && b === CTRL_RIGHT_BRACKET) { detached = true; void worker.terminate(); return; }
      const w = Atomics.load(ctl, 1), r = Atomics.load(ctl, 2);
      if ((w + 1) % INPUT_RING === r) break; // full: drop (the guest is not reading)
      ring[w] = b;
      Atomics.store(ctl, 1, (w + 1) % INPUT_RING);
    }
    Atomics.store(ctl, 0, 1);
    Atomics.notify(ctl, 0);
  };
  if (tty) stdin.setRawMode(true);
  stdin.on('data', push);
  stdin.on('error', () => {});
  const restore = () => { if (tty) stdin.setRawMode(false); stdin.pause(); stdin.off('data', push); };
  const t0 = Date.now();
  return await new Promise<number>((resolve) => {
    let readyMs: number | undefined;
    worker.on('message', (m: { type: string; [k: string]: unknown }) => {
      if (m.type === 'ready') readyMs = m.ms as number;
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
    worker.on('exit', () => { if (detached) { restore(); process.stderr.write('\npvbox: console detached (Ctrl-]); guest destroyed\n'); resolve(0); } });
  });
}

