// The domain's thread: runs toolstack/create.ts runDomain() off the main event loop, so KVM_RUN can block (design.md "KVM layer").
import { writeSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { PvboxError } from '../errors.js';
import { formatCounters } from '../trace/trace.js';
import { runDomain } from '../toolstack/create.js';
import { InputRingReader, type WorkerInit } from './worker-protocol.js';

const init = workerData as WorkerInit;
const input = new InputRingReader(init.input);
const marker = new TextEncoder().encode(init.readyMarker);
let matched = 0;
let readyAtMs: number | undefined;
const startMs = Date.now();

function watchReady(bytes: Uint8Array): void {
  if (readyAtMs !== undefined) return;
  for (const b of bytes) {
    matched = b === marker[matched] ? matched + 1 : b === marker[0] ? 1 : 0;
    if (matched === marker.length) { readyAtMs = Date.now() - startMs; parentPort!.postMessage({ type: 'ready', ms: readyAtMs }); return; }
  }
}

function writeAll(fd: number, bytes: Uint8Array): void {
  let off = 0;
  while (off < bytes.length) {
    try { off += writeSync(fd, bytes, off); } catch (e) { if ((e as NodeJS.ErrnoException).code === 'EAGAIN') continue; return; }
  }
}

try {
  const result = await runDomain(init.config, {
    console: (bytes, devid = 0) => {
      if (devid === 0) { watchReady(bytes); writeAll(1, bytes); }
      parentPort!.postMessage({ type: 'console', devid, bytes });
    },
    log: (line) => writeAll(2, new TextEncoder().encode(`${line}\n`)),
    takeInput: () => input.take(),
    waitInput: (ms) => input.wait(ms),
    inputBuffer: init.input,
    setKickTarget: (tid) => input.setKickTarget(tid),
    xsSend: (bytes) => parentPort!.postMessage({ type: 'xs', bytes }),
    control: (msg) => parentPort!.postMessage({ type: 'control', msg }),
    reply: (id, result) => parentPort!.postMessage({ type: 'control-reply', id, result }),
    introduce: (info) => {
      parentPort!.postMessage({ type: 'introduce', info });
      return input.awaitIntroduction(30_000);
    },
  });
  parentPort!.postMessage({ type: 'exit', reason: result.reason, detail: result.detail, exits: result.exits, counters: formatCounters(result.trace.counters), readyMs: readyAtMs });
} catch (e) {
  if (e instanceof PvboxError) parentPort!.postMessage({ type: 'error', message: e.message });
  else parentPort!.postMessage({ type: 'error', message: `internal error: ${(e as Error).stack ?? e}` });
}
