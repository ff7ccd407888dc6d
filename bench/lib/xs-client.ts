// A small pipelined XenStore client for benchmarks: speaks the xenstored Unix-socket protocol
// directly (struct xsd_sockmsg: 16-byte little-endian header {type, req_id, tx_id, len}, then
// the payload; see src/xenstore/wire.ts), any number of requests in flight on one connection,
// replies matched by req_id, watch events handed to a callback with their arrival time. Works
// against any xenstored (pvbox's, Xen's C xenstored, oxenstored).
//
// It is meant to cost the bench as little CPU as possible, so that the daemon, not the client,
// bounds the figures: requests sent in the same tick go out in one write, and replies are cut
// out of the received chunks as views (no copy) rather than through wire.ts's general parser.
import * as net from 'node:net';
import { performance } from 'node:perf_hooks';
import {
  bytesToLatin1,
  splitStrings,
  XENSTORE_PAYLOAD_MAX,
  XS_ERROR,
  XS_WATCH_EVENT,
  XSD_SOCKMSG_SIZE,
} from '../../src/xenstore/wire.js';

export interface XsReply {
  readonly type: number;
  readonly reqId: number;
  readonly txId: number;
  readonly payload: Uint8Array;
  /** performance.now() when the chunk holding the end of the reply was read. */
  readonly at: number;
}

export class XsProtocolError extends Error {}

/** Text of an XS_ERROR reply ("EAGAIN", "ENOENT", ...), undefined for any other reply. */
export function errorName(r: XsReply): string | undefined {
  if (r.type !== XS_ERROR) return undefined;
  return splitStrings(r.payload).strings[0] ?? bytesToLatin1(r.payload);
}

export class XsClient {
  readonly #socket: net.Socket;
  /** Received bytes not yet making a whole message. */
  #pending: Buffer | undefined;
  readonly #waiting = new Map<number, (r: XsReply) => void>();
  #nextReqId = 1;
  /** Encoded requests waiting for the end of the tick. */
  #queue: Uint8Array[] = [];
  #queued = 0;
  #closed: Error | undefined;
  /** Called for every XS_WATCH_EVENT: its path, token and arrival time. */
  onWatchEvent: ((path: string, token: string, at: number) => void) | undefined;
  /** Called once when the connection ends or fails (with the reason). */
  onClose: ((why: Error) => void) | undefined;

  private constructor(socket: net.Socket) {
    this.#socket = socket;
    socket.setNoDelay?.(true);
    socket.on('data', (chunk: Buffer) => this.#receive(chunk, performance.now()));
    socket.on('error', (e) => this.#fail(e));
    socket.on('close', () => this.#fail(new XsProtocolError('connection closed by the daemon')));
  }

  /**
   * Connect to the daemon's socket; rejects with the connect error (ENOENT, ECONNREFUSED, ...).
   * EAGAIN (the listen backlog is full: C xenstored listens with a backlog of 1) is retried for
   * up to `retryMs`.
   */
  static async connect(path: string, retryMs = 2000): Promise<XsClient> {
    const deadline = performance.now() + retryMs;
    for (;;) {
      try {
        return await new Promise<XsClient>((resolve, reject) => {
          const s = net.connect({ path });
          const onError = (e: Error) => { s.destroy(); reject(e); };
          s.once('error', onError);
          s.once('connect', () => {
            s.off('error', onError);
            resolve(new XsClient(s));
          });
        });
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EAGAIN' || performance.now() > deadline) throw e;
        await new Promise((r) => setTimeout(r, 10));
      }
    }
  }

  /** Requests sent and not yet answered. */
  get inFlight(): number {
    return this.#waiting.size;
  }

  get closed(): Error | undefined {
    return this.#closed;
  }

  /**
   * Send one request; `done` gets the reply (XS_ERROR included). Returns the send time
   * (performance.now()). Throws if the connection is gone.
   */
  send(type: number, payload: Uint8Array, txId: number, done: (r: XsReply) => void): number {
    if (this.#closed) throw this.#closed;
    const reqId = this.#nextReqId;
    this.#nextReqId = (this.#nextReqId + 1) >>> 0 || 1;
    this.#waiting.set(reqId, done);
    if (payload.length > XENSTORE_PAYLOAD_MAX) throw new RangeError(`payload of ${payload.length} bytes exceeds XENSTORE_PAYLOAD_MAX`);
    const packet = Buffer.allocUnsafe(XSD_SOCKMSG_SIZE + payload.length);
    packet.writeUInt32LE(type >>> 0, 0);
    packet.writeUInt32LE(reqId, 4);
    packet.writeUInt32LE(txId >>> 0, 8);
    packet.writeUInt32LE(payload.length, 12);
    packet.set(payload, XSD_SOCKMSG_SIZE);
    if (this.#queue.length === 0) process.nextTick(() => this.#flush());
    this.#queue.push(packet);
    this.#queued += packet.length;
    return performance.now();
  }

  /** send() as a promise. */
  request(type: number, payload: Uint8Array, txId = 0): Promise<XsReply> {
    return new Promise((resolve, reject) => {
      try {
        this.send(type, payload, txId, resolve);
      } catch (e) {
        reject(e);
      }
    });
  }

  /** A request that must succeed: rejects with the error name on XS_ERROR or a reply of another type. */
  async ok(type: number, payload: Uint8Array, txId = 0): Promise<XsReply> {
    const r = await this.request(type, payload, txId);
    if (r.type !== type) throw new XsProtocolError(`request type ${type} answered with ${errorName(r) ?? `type ${r.type}`}`);
    return r;
  }

  #flush(): void {
    const parts = this.#queue;
    const total = this.#queued;
    this.#queue = [];
    this.#queued = 0;
    if (this.#closed || parts.length === 0) return;
    this.#socket.write(parts.length === 1 ? parts[0]! : Buffer.concat(parts, total));
  }

  close(): void {
    this.#socket.destroy();
  }

  #receive(chunk: Buffer, at: number): void {
    let buf = this.#pending ? Buffer.concat([this.#pending, chunk]) : chunk;
    this.#pending = undefined;
    let off = 0;
    while (buf.length - off >= XSD_SOCKMSG_SIZE) {
      const len = buf.readUInt32LE(off + 12);
      if (len > XENSTORE_PAYLOAD_MAX) {
        this.#fail(new XsProtocolError(`daemon sent a message of ${len} bytes (over XENSTORE_PAYLOAD_MAX)`));
        this.#socket.destroy();
        return;
      }
      const end = off + XSD_SOCKMSG_SIZE + len;
      if (end > buf.length) break;
      const type = buf.readUInt32LE(off);
      const reqId = buf.readUInt32LE(off + 4);
      const txId = buf.readUInt32LE(off + 8);
      this.#dispatch(type, reqId, txId, buf.subarray(off + XSD_SOCKMSG_SIZE, end), at);
      if (this.#closed) return;
      off = end;
    }
    if (off < buf.length) this.#pending = Buffer.from(buf.subarray(off));
  }

  #dispatch(type: number, reqId: number, txId: number, payload: Uint8Array, at: number): void {
    if (type === XS_WATCH_EVENT) {
      const [path = '', token = ''] = splitStrings(payload).strings;
      this.onWatchEvent?.(path, token, at);
      return;
    }
    const done = this.#waiting.get(reqId);
    if (!done) {
      this.#fail(new XsProtocolError(`reply with unknown req_id ${reqId} (type ${type})`));
      this.#socket.destroy();
      return;
    }
    this.#waiting.delete(reqId);
    done({ type, reqId, txId, payload, at });
  }

  #fail(e: Error): void {
    if (this.#closed) return;
    this.#closed = e;
    this.onClose?.(e);
  }
}
