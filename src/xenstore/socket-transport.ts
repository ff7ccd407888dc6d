// XenStore over xenstored's Unix stream socket for Domain-0 clients (tools/xenstored/core.c init_sockets/accept_connection/handle_input/write_messages; tools/xenstore/xs_lib.c xs_daemon_socket).
//
// Every client that connects is a Domain-0 connection (`XenStored.connect(0, ...)`): what it sends
// goes to Connection.receive() as it arrives, whatever the chunking; replies and watch events go
// back with socket.write. Nothing one client does reaches another:
// - a message header with len > XENSTORE_PAYLOAD_MAX ends that connection (core.c handle_input
//   "Client tried to feed us ..." → ignore_connection);
// - backpressure: while a client has unread replies past the socket's high-water mark, its
//   requests are not processed (the kernel buffer then fills and its writes block); watch events
//   caused by others still queue up, and a client with more than `maxQueuedBytes` unread is
//   disconnected rather than allowed to exhaust memory;
// - an abrupt disconnect (or a half-close once the replies are written) closes the connection:
//   its watches and transactions are dropped, uncommitted transactions leave no trace.
//
// Where the socket lives. libxenstore 4.17 (Debian 12's libxenstore4) connects to
// $XENSTORED_PATH if set, else $XENSTORED_RUNDIR/socket, else XEN_RUN_STORED/socket, which
// Debian's build sets to /var/run/xenstored/socket; pyxs does the same. On Debian /var/run is a
// symlink to /run, so that is /run/xenstored/socket. C xenstored binds the same
// xs_daemon_socket() and chmods it 0600; pvbox does too, but does not "mug" a running daemon
// (core.c's FIXME): a live socket is refused, a stale one removed.

import { chmodSync, lstatSync, mkdirSync, realpathSync, unlinkSync, type Stats } from 'node:fs';
import * as net from 'node:net';
import { dirname, join } from 'node:path';
import { HostError } from '../errors.js';
import type { Connection, XenStored } from './xenstored.js';

/** Where Debian 12's libxenstore and pyxs look with no environment (XEN_RUN_STORED + "/socket"). */
export const XS_DAEMON_SOCKET_LIBXENSTORE = '/var/run/xenstored/socket';
/** pvbox's default: the same file on any system where /var/run is /run (Debian, systemd). */
export const XS_DAEMON_SOCKET = '/run/xenstored/socket';

/** sizeof(sockaddr_un.sun_path) - 1 on Linux. */
const SUN_PATH_MAX = 107;

/**
 * The socket path(s) a daemon serves, as xs_daemon_socket() picks them (xs_lib.c):
 * $XENSTORED_PATH, else $XENSTORED_RUNDIR/socket, else /run/xenstored/socket, plus
 * /var/run/xenstored/socket when /var/run is not the same directory as /run.
 */
export function defaultSocketPaths(env: NodeJS.ProcessEnv = process.env): string[] {
  if (env.XENSTORED_PATH) return [env.XENSTORED_PATH];
  if (env.XENSTORED_RUNDIR) return [join(env.XENSTORED_RUNDIR, 'socket')];
  const paths = [XS_DAEMON_SOCKET];
  if (!sameDirectory('/var/run', '/run')) paths.push(XS_DAEMON_SOCKET_LIBXENSTORE);
  return paths;
}

function sameDirectory(a: string, b: string): boolean {
  try {
    return realpathSync(a) === realpathSync(b);
  } catch {
    return false;
  }
}

export interface XenStoreSocketOptions {
  /**
   * Unread reply and watch-event bytes a client may have queued before it is disconnected
   * (default 16 MiB: over 4000 maximum-size messages).
   */
  readonly maxQueuedBytes?: number;
  /** One line per oddity (malformed stream, client dropped, socket error). */
  readonly log?: (line: string) => void;
}

export const DEFAULT_MAX_QUEUED_BYTES = 16 << 20;

/**
 * Input is fed to the connection in slices of this size, and the client's unread output checked
 * between slices: a slice holds at most 14 requests (18 bytes is the smallest READ), so at most
 * ~57 KiB of replies are queued past the socket's high-water mark before reading stops.
 */
const INPUT_SLICE = 256;

/** Whether someone accepts connections on the socket at `path` (a live daemon). */
async function probeLive(path: string): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ path });
    const timer = setTimeout(() => {
      s.destroy();
      resolve(true); // connect() pending: a listener with a full backlog.
    }, 2000);
    s.once('connect', () => {
      clearTimeout(timer);
      s.destroy();
      resolve(true);
    });
    s.once('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      s.destroy();
      if (e.code === 'ECONNREFUSED' || e.code === 'ENOENT') resolve(false);
      else if (e.code === 'EAGAIN') resolve(true);
      else reject(new HostError(`cannot tell whether a xenstored is serving ${path}: ${e.code ?? e.message}`));
    });
  });
}

function lstatOrUndefined(path: string): Stats | undefined {
  try {
    return lstatSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new HostError(`${path}: ${(e as Error).message}`);
  }
}

/**
 * Make `path` free for a new listener: create its directory (0755), refuse a live daemon or a
 * file that is not a socket, remove a stale socket.
 */
async function claimSocketPath(path: string): Promise<void> {
  if (Buffer.byteLength(path) > SUN_PATH_MAX) {
    throw new HostError(`socket path ${path} is longer than ${SUN_PATH_MAX} bytes (sockaddr_un limit)`);
  }
  try {
    mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
  } catch (e) {
    throw new HostError(`cannot create ${dirname(path)} for the xenstored socket: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const st = lstatOrUndefined(path);
  if (!st) return;
  if (!st.isSocket()) throw new HostError(`${path} exists and is not a socket; not replacing it`);
  if (await probeLive(path)) throw new HostError(`another xenstored is already serving ${path}`);
  try {
    unlinkSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new HostError(`cannot remove stale socket ${path}: ${(e as Error).message}`);
  }
}

/** One accepted client. */
class SocketClient {
  readonly id: number;
  readonly #server: XenStoreSocketServer;
  readonly #socket: net.Socket;
  readonly #conn: Connection;
  readonly #maxQueued: number;
  /** Received but not yet processed (held back while the client is not reading its replies). */
  readonly #pending: Buffer[] = [];
  #eof = false;
  #dead = false;

  constructor(server: XenStoreSocketServer, daemon: XenStored, socket: net.Socket, id: number, maxQueued: number) {
    this.id = id;
    this.#server = server;
    this.#socket = socket;
    this.#maxQueued = maxQueued;
    this.#conn = daemon.connect(0, (bytes) => this.#send(bytes), {
      onError: (e) => this.drop(`${e}: a message longer than XENSTORE_PAYLOAD_MAX; connection closed`),
    });
    socket.on('data', (chunk: Buffer) => {
      this.#pending.push(chunk);
      this.#pump();
    });
    socket.on('drain', () => this.#pump());
    socket.on('end', () => {
      this.#eof = true;
      this.#pump();
    });
    socket.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code !== 'ECONNRESET' && e.code !== 'EPIPE') this.#server._log(`client ${this.id}: ${e.code ?? e.message}`);
      this.#finish();
    });
    socket.on('close', () => this.#finish());
  }

  /** Disconnect now, logging why (an oddity) unless `why` is undefined. */
  drop(why?: string): void {
    if (this.#dead) return;
    if (why !== undefined) this.#server._log(`client ${this.id}: ${why}`);
    this.#socket.destroy();
    this.#finish();
  }

  /** Process held input while the client keeps up with its replies. */
  #pump(): void {
    const s = this.#socket;
    while (!this.#dead && this.#pending.length > 0) {
      if (s.writableLength >= s.writableHighWaterMark) {
        // The last write returned false: 'drain' will call us again.
        s.pause();
        return;
      }
      const b = this.#pending[0] as Buffer;
      const n = Math.min(b.length, INPUT_SLICE);
      if (n === b.length) this.#pending.shift();
      else this.#pending[0] = b.subarray(n);
      this.#conn.receive(b.subarray(0, n));
    }
    if (this.#dead) return;
    if (this.#eof) {
      // Half-closed by the client: the replies go out, then we close too (and forget it).
      this.#conn.close();
      s.end();
      return;
    }
    s.resume();
  }

  #send(bytes: Uint8Array): void {
    if (this.#dead || this.#socket.destroyed) return;
    this.#socket.write(bytes);
    if (this.#socket.writableLength > this.#maxQueued) {
      this.drop(`${this.#socket.writableLength} bytes of replies and watch events unread (limit ${this.#maxQueued}); disconnected`);
    }
  }

  #finish(): void {
    if (this.#dead) return;
    this.#dead = true;
    this.#pending.length = 0;
    this.#conn.close();
    this.#server._forget(this);
  }
}

/** A listening xenstored socket. */
export class XenStoreSocketServer {
  readonly path: string;
  readonly #daemon: XenStored;
  readonly #server: net.Server;
  readonly #opts: XenStoreSocketOptions;
  readonly #clients = new Set<SocketClient>();
  #ino: number | undefined;
  #nextId = 1;
  #closing: Promise<void> | undefined;

  private constructor(daemon: XenStored, path: string, opts: XenStoreSocketOptions) {
    this.#daemon = daemon;
    this.path = path;
    this.#opts = opts;
    this.#server = net.createServer({ allowHalfOpen: true }, (socket) => this.#accept(socket));
  }

  /**
   * Serve `daemon` on the Unix socket at `path`: the directory is created (0755), a stale socket
   * file replaced, the new one made 0600. Fails with a HostError if another daemon is live there.
   */
  static async listen(daemon: XenStored, path: string, opts: XenStoreSocketOptions = {}): Promise<XenStoreSocketServer> {
    await claimSocketPath(path);
    const s = new XenStoreSocketServer(daemon, path, opts);
    await new Promise<void>((resolve, reject) => {
      const onError = (e: NodeJS.ErrnoException): void => {
        reject(
          e.code === 'EADDRINUSE'
            ? new HostError(`another xenstored is already serving ${path}`)
            : new HostError(`cannot listen on ${path}: ${e.code ?? e.message}`),
        );
      };
      s.#server.once('error', onError);
      s.#server.listen({ path, backlog: 511 }, () => {
        s.#server.off('error', onError);
        resolve();
      });
    });
    s.#server.on('error', (e: NodeJS.ErrnoException) => s._log(`listener: ${e.code ?? e.message}`));
    try {
      chmodSync(path, 0o600);
      s.#ino = lstatSync(path).ino;
    } catch (e) {
      await s.close();
      throw new HostError(`cannot chmod ${path}: ${(e as Error).message}`);
    }
    return s;
  }

  /** Clients currently connected. */
  get clientCount(): number {
    return this.#clients.size;
  }

  /** Stop listening, disconnect every client, remove the socket file (if it is still ours). */
  close(): Promise<void> {
    this.#closing ??= new Promise<void>((resolve) => {
      this.#server.close(() => resolve());
      for (const c of [...this.#clients]) c.drop();
    }).then(() => {
      const st = lstatOrUndefined(this.path);
      if (st && st.isSocket() && st.ino === this.#ino) {
        try {
          unlinkSync(this.path);
        } catch {
          /* already gone */
        }
      }
    });
    return this.#closing;
  }

  #accept(socket: net.Socket): void {
    if (this.#closing) {
      socket.destroy();
      return;
    }
    const c = new SocketClient(this, this.#daemon, socket, this.#nextId++, this.#opts.maxQueuedBytes ?? DEFAULT_MAX_QUEUED_BYTES);
    this.#clients.add(c);
  }

  /** @internal */
  _forget(c: SocketClient): void {
    this.#clients.delete(c);
  }

  /** @internal */
  _log(line: string): void {
    this.#opts.log?.(`xenstored: ${this.path}: ${line}`);
  }
}
