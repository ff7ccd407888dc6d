// The domain thread's side of its block I/O thread: start it, open images (before the vCPU runs, while this thread's event loop is free), submit operations, and route completions (input-ring records) back to whoever submitted them.
import { fileURLToPath } from 'node:url';
import { MessageChannel, type MessagePort, receiveMessageOnPort, Worker } from 'node:worker_threads';
import { ImageError } from '../../errors.js';
import { decodeCompletions, newSubmissionQueue, SubmissionQueue, type ImageInfo, type IoOp, type IoReply, type IoRequest } from './io-protocol.js';

export type IoDone = (status: number) => void;

export class BlockIoThread {
  private readonly worker: Worker;
  /** Replies (opened/closed) come here: as events while this thread's loop runs, or polled (pollReplies) while its vCPU runs. */
  private readonly replies: MessagePort;
  private readonly inflight = new Map<number, IoDone>();
  private readonly waiters = new Map<string, (r: IoReply) => void>();
  private nextTag = 1;
  private nextSlab = 1;
  private nextDisk = 1;
  private failed: string | undefined;
  /** Whoever got completions in the current record: settled once after it (one notification per ring per batch). */
  private readonly touched = new Set<{ settle(): void }>();
  private readonly queue: SubmissionQueue;

  constructor(input: SharedArrayBuffer) {
    const { port1, port2 } = new MessageChannel();
    this.replies = port1;
    const sq = newSubmissionQueue();
    this.queue = new SubmissionQueue(sq);
    this.worker = new Worker(fileURLToPath(new URL('./io-thread-entry.mjs', import.meta.url)), { workerData: { input, replies: port2, queue: sq }, transferList: [port2] });
    port1.on('message', (r: IoReply) => this.onReply(r));
    port1.unref();
    this.worker.on('error', (e) => { this.failed = e.message; for (const w of this.waiters.values()) w({ type: 'open-failed', disk: -1, message: `I/O thread failed: ${e.message}` }); });
    // The I/O thread must not keep the process alive by itself; close() ends it.
    this.worker.unref();
  }

  private onReply(r: IoReply): void {
    const key = `${r.type === 'closed' ? 'close' : 'open'}:${r.disk}`;
    const w = this.waiters.get(key);
    this.waiters.delete(key);
    w?.(r);
    if (this.waiters.size === 0) this.replies.unref();
  }

  get outstanding(): number { return this.inflight.size; }

  private request(key: string, msg: IoRequest): Promise<IoReply> {
    if (this.failed) return Promise.resolve({ type: 'open-failed', disk: -1, message: `I/O thread failed: ${this.failed}` });
    // While an answer is awaited the port keeps this thread's event loop alive; otherwise nothing here should.
    this.replies.ref();
    return new Promise((resolve) => { this.waiters.set(key, resolve); this.worker.postMessage(msg); });
  }

  /** Open (and lock) an image in the I/O thread; a person-readable ImageError if it cannot be used. */
  async open(path: string, opts: { readonly: boolean; format: 'raw' | 'qcow2' | 'auto' }): Promise<{ disk: number; info: ImageInfo }> {
    const disk = this.nextDisk++;
    const r = await this.request(`open:${disk}`, { type: 'open', disk, path, readonly: opts.readonly, format: opts.format });
    if (r.type !== 'opened') throw new ImageError(r.type === 'open-failed' ? r.message : `cannot open ${path}`);
    return { disk, info: r.info };
  }

  async close(disk: number): Promise<string | undefined> {
    const r = await this.request(`close:${disk}`, { type: 'close', disk });
    return r.type === 'closed' ? r.error : undefined;
  }

  /** Share a data buffer with the I/O thread. */
  addSlab(sab: SharedArrayBuffer): number {
    const slab = this.nextSlab++;
    this.worker.postMessage({ type: 'slab', slab, sab } satisfies IoRequest);
    return slab;
  }
  dropSlab(slab: number): void { this.worker.postMessage({ type: 'drop-slab', slab } satisfies IoRequest); }

  /** Queue an operation; it starts when the batch is handed over (doorbell()). */
  submit(disk: number, op: IoOp, offset: number, len: number, slab: number, slabOffset: number, done: IoDone): void {
    const tag = this.nextTag;
    this.nextTag = this.nextTag >= 0xfffffff0 ? 1 : this.nextTag + 1;
    this.inflight.set(tag, done);
    // A full queue (over a thousand operations waiting) is rare: those go by message.
    if (!this.queue.push(tag, disk, op, offset, len, slab, slabOffset)) this.worker.postMessage({ type: 'io', tag, disk, op, offset, len, slab, slabOffset } satisfies IoRequest);
  }

  /** Hand the operations submitted since the last call to the I/O thread: one wake-up per batch. */
  doorbell(): void { this.queue.ring(); }

  /** An INPUT_BLKIO record arrived: run each completion's callback. */
  onCompletions(bytes: Uint8Array): void {
    for (let m = receiveMessageOnPort(this.replies); m; m = receiveMessageOnPort(this.replies)) this.onReply(m.message as IoReply);
    decodeCompletions(bytes, (tag, status) => {
      const done = this.inflight.get(tag);
      if (!done) return;
      this.inflight.delete(tag);
      done(status);
    });
    for (const t of this.touched) t.settle();
    this.touched.clear();
    // Completions free staging memory and end barriers, so rings may have taken new requests.
    this.doorbell();
  }

  /** Called from a completion callback: settle `t` after the current batch. */
  touch(t: { settle(): void }): void { this.touched.add(t); }

  async terminate(): Promise<void> { this.replies.close(); await this.worker.terminate(); }
}
