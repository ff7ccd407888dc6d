// A domain's block I/O thread (QEMU's iothread): opens the images and runs every read, write, flush and discard asynchronously (libuv's pool), so a slow disk never stops a vCPU. Completions go back through the domain's input ring, which wakes the domain thread or kicks its vCPU out of KVM_RUN.
import { type MessagePort, parentPort, workerData } from 'node:worker_threads';
import { INPUT_BLKIO, InputRingWriter } from '../../vcpu/worker-protocol.js';
import { openImage, type BlockImage } from './image.js';
import { encodeCompletions, IO_DISCARD, IO_FLUSH, IO_READ, IO_WRITE, SubmissionQueue, type IoReply, type IoRequest, type QueuedIo } from './io-protocol.js';

const init = workerData as { input: SharedArrayBuffer; replies: MessagePort; queue: SharedArrayBuffer };
const ring = new InputRingWriter(init.input);
const port = parentPort!;
const images = new Map<number, BlockImage>();
const slabs = new Map<number, Uint8Array>();
let pending: [number, number][] = [];
let flushScheduled = false;

/** Replies go on their own port; an empty completion record then wakes the domain thread, which may be running its vCPU and polls the port. */
const reply = (r: IoReply): void => {
  init.replies.postMessage(r);
  ring.push(INPUT_BLKIO, new Uint8Array(0));
};

/** Completions that finish in the same turn go back as one record: one wake-up, one kick. */
function complete(tag: number, status: number): void {
  pending.push([tag, status]);
  if (flushScheduled) return;
  flushScheduled = true;
  setImmediate(() => {
    flushScheduled = false;
    const done = pending;
    pending = [];
    // A record holds ≤ 8191 completions (64 KiB); the ring is large, but never lose one if it is full.
    for (let i = 0; i < done.length; i += 8191) {
      const rec = encodeCompletions(done.slice(i, i + 8191));
      while (!ring.push(INPUT_BLKIO, rec)) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1);
    }
  });
}

const errnoOf = (e: unknown): number => {
  const n = (e as NodeJS.ErrnoException).errno;
  return typeof n === 'number' && n < 0 ? n : -5; // -EIO
};

async function run(req: QueuedIo): Promise<number> {
  const img = images.get(req.disk);
  if (!img) return -9; // -EBADF: the disk was closed under the request
  const buf = () => {
    const s = slabs.get(req.slab);
    if (!s || req.slabOffset + req.len > s.byteLength) throw Object.assign(new Error('bad slab range'), { errno: -14 });
    return s.subarray(req.slabOffset, req.slabOffset + req.len);
  };
  switch (req.op) {
    case IO_READ: await img.read(req.offset, buf()); return 0;
    case IO_WRITE: await img.write(req.offset, buf()); return 0;
    case IO_FLUSH: await img.flush(); return 0;
    case IO_DISCARD: await img.discard(req.offset, req.len); return 0;
    default: return -22;
  }
}

/** Operations on a slab whose 'slab' message has not arrived yet: the queue can overtake the port. */
const awaitingSlab = new Map<number, QueuedIo[]>();

const start = (req: QueuedIo): void => {
  if (!slabs.has(req.slab) && req.op !== IO_FLUSH && req.op !== IO_DISCARD) {
    const list = awaitingSlab.get(req.slab);
    if (list) list.push(req); else awaitingSlab.set(req.slab, [req]);
    return;
  }
  run(req).then((st) => complete(req.tag, st), (e) => complete(req.tag, errnoOf(e)));
};

/**
 * Serve the submission queue: drain, then wait for the doorbell. The wait is asynchronous
 * (Atomics.waitAsync), so this thread's event loop goes on running the image I/O; the port
 * below keeps that loop alive, which waitAsync's wake-up needs.
 */
async function serveQueue(): Promise<void> {
  const queue = new SubmissionQueue(init.queue);
  for (;;) {
    const seen = queue.bell;
    queue.drain(start);
    await queue.waitBell(seen);
  }
}
void serveQueue();

port.on('message', (req: IoRequest) => {
  switch (req.type) {
    case 'io': start(req); break;
    case 'slab': {
      slabs.set(req.slab, new Uint8Array(req.sab));
      const waiting = awaitingSlab.get(req.slab);
      awaitingSlab.delete(req.slab);
      for (const w of waiting ?? []) start(w);
      break;
    }
    case 'drop-slab': slabs.delete(req.slab); break;
    case 'open':
      openImage(req.path, { readonly: req.readonly, format: req.format }).then((img) => {
        images.set(req.disk, img);
        reply({ type: 'opened', disk: req.disk, info: { sizeBytes: img.sizeBytes, format: img.format, canDiscard: img.canDiscard, isBlockDevice: img.isBlockDevice, readonly: img.readonly } });
      }, (e) => reply({ type: 'open-failed', disk: req.disk, message: (e as Error).message }));
      break;
    case 'close': {
      const img = images.get(req.disk);
      images.delete(req.disk);
      if (!img) { reply({ type: 'closed', disk: req.disk }); break; }
      img.close().then(() => reply({ type: 'closed', disk: req.disk }), (e) => reply({ type: 'closed', disk: req.disk, error: (e as Error).message }));
      break;
    }
  }
});
