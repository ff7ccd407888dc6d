// pvbox's standalone xenstored: the store served on the Domain-0 Unix socket, with Domain-0's standard nodes, and `pvbox xenstored` (tools/xenstored/core.c main/init_sockets, domain.c dom0_init; tools/helpers/xen-init-dom0.c).
//
// What the daemon sets up before it accepts anyone, as a Xen host has it after xencommons:
// - the tree C xenstored starts with ("/", "/tool", "/tool/xenstored", @introduceDomain,
//   @releaseDomain: the store's own setup_structure);
// - Domain-0 introduced (dom0_init), and the nodes xen-init-dom0 writes:
//   /local/domain/0/name = "Domain-0", /local/domain/0/domid = "0".
// Oddities (malformed streams, unknown operations, clients that stop reading) are logged one line
// each, rate-limited so that a hostile client cannot flood the log.

import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { HostError, PvboxError } from '../errors.js';
import { DomainLinkServer } from '../toolstack/domain-link.js';
import { defaultSocketPaths, XenStoreSocketServer } from './socket-transport.js';
import type { XsQuota } from './store.js';
import { XenStored } from './xenstored.js';

export interface XenstoredDaemonOptions {
  /** Sockets to serve; default defaultSocketPaths() (XENSTORED_PATH, ..., /run/xenstored/socket). */
  readonly socketPaths?: readonly string[];
  /** Where log lines go (already rate-limited here); default: nowhere. */
  readonly log?: (line: string) => void;
  /** Quotas for unprivileged domains (xenstored -E -S -W -t -A). */
  readonly quota?: Partial<XsQuota>;
  /** Unread bytes a socket client may have queued before it is dropped. */
  readonly maxQueuedBytes?: number;
}

/**
 * A log sink that passes at most `burst` lines at once and `perSecond` lines a second after that
 * (a token bucket); what it drops is counted in the next line it lets through.
 */
export function rateLimitedLog(
  sink: (line: string) => void,
  opts: { readonly burst?: number; readonly perSecond?: number; readonly now?: () => number } = {},
): (line: string) => void {
  const burst = opts.burst ?? 20;
  const perSecond = opts.perSecond ?? 2;
  const now = opts.now ?? Date.now;
  let tokens = burst;
  let last = now();
  let dropped = 0;
  return (line) => {
    const t = now();
    tokens = Math.min(burst, tokens + ((t - last) / 1000) * perSecond);
    last = t;
    if (tokens < 1) {
      dropped++;
      return;
    }
    tokens -= 1;
    if (dropped > 0) {
      sink(`xenstored: ${dropped} log line${dropped === 1 ? '' : 's'} suppressed`);
      dropped = 0;
    }
    sink(line);
  };
}

/** A running xenstored: the store and the sockets it is served on. */
export class XenstoredDaemon {
  readonly xenstored: XenStored;
  readonly servers: readonly XenStoreSocketServer[];
  #stopping: Promise<void> | undefined;

  readonly link: DomainLinkServer;

  private constructor(xenstored: XenStored, servers: readonly XenStoreSocketServer[], link: DomainLinkServer) {
    this.xenstored = xenstored;
    this.servers = servers;
    this.link = link;
  }

  /** Create the store with Domain-0's nodes and listen on every socket path. */
  static async start(opts: XenstoredDaemonOptions = {}): Promise<XenstoredDaemon> {
    const log = opts.log ? rateLimitedLog(opts.log) : undefined;
    const xenstored = new XenStored({ ...(opts.quota ? { quota: opts.quota } : {}), ...(log ? { log } : {}) });
    writeDomain0Nodes(xenstored);
    const paths = opts.socketPaths ?? defaultSocketPaths();
    if (paths.length === 0) throw new HostError('xenstored: no socket path to serve');
    const servers: XenStoreSocketServer[] = [];
    try {
      for (const p of paths) {
        servers.push(
          await XenStoreSocketServer.listen(xenstored, p, {
            ...(opts.maxQueuedBytes !== undefined ? { maxQueuedBytes: opts.maxQueuedBytes } : {}),
            ...(log ? { log } : {}),
          }),
        );
      }
    } catch (e) {
      await Promise.all(servers.map((s) => s.close()));
      throw e;
    }
    // Domain processes (`pvbox run`) introduce their guests through the link beside the first socket.
    let link: DomainLinkServer;
    try {
      link = await DomainLinkServer.listen(xenstored, join(dirname(paths[0]!), 'pvbox-domains'), log);
    } catch (e) {
      await Promise.all(servers.map((s) => s.close()));
      throw e;
    }
    return new XenstoredDaemon(xenstored, servers, link);
  }

  get socketPaths(): string[] {
    return this.servers.map((s) => s.path);
  }

  /** Disconnect everyone and remove the sockets. Idempotent. */
  stop(): Promise<void> {
    this.#stopping ??= Promise.all([...this.servers.map((s) => s.close()), this.link.close()]).then(() => undefined);
    return this.#stopping;
  }
}

/** dom0_init + xen-init-dom0: Domain-0 introduced, its name and domid written. */
function writeDomain0Nodes(d: XenStored): void {
  const priv = d.store.privDomid;
  const r = d.introduceDomain(priv);
  if (!r.ok) throw new Error(`xenstored: introducing Domain-0 failed: ${r.failure}`);
  const sc = d.store.connect(priv, () => {});
  try {
    for (const [path, value] of [
      ['/local/domain/0/name', 'Domain-0'],
      ['/local/domain/0/domid', String(priv)],
    ] as const) {
      const w = sc.write(0, path, value);
      if (!w.ok) throw new Error(`xenstored: writing ${path} failed: ${w.failure}`);
    }
    const m = sc.mkdir(0, '/tool/xenstored');
    if (!m.ok) throw new Error(`xenstored: mkdir /tool/xenstored failed: ${m.failure}`);
  } finally {
    sc.close();
  }
}

// ---------------------------------------------------------------------------------------------
// `pvbox xenstored`

export interface XenstoredCommandOptions {
  /** --socket PATH; default defaultSocketPaths(). */
  readonly socket?: string | undefined;
  /** --foreground: serve from this process, log to stderr, until SIGTERM/SIGINT. */
  readonly foreground: boolean;
  /** --log FILE: the background daemon's log (default DEFAULT_XENSTORED_LOG). */
  readonly logFile?: string | undefined;
}

/** Where a backgrounded `pvbox xenstored` writes its log lines. */
export const DEFAULT_XENSTORED_LOG = '/var/log/pvbox/xenstored.log';

const PVBOX_BIN = fileURLToPath(new URL('../../bin/pvbox.js', import.meta.url));

/** Message from a backgrounded daemon to the command that started it. */
type ReadyMessage = { readonly ready: number } | { readonly error: string };

/**
 * `pvbox xenstored`. In the foreground it serves until SIGTERM or SIGINT, then removes its
 * sockets and returns 0. Otherwise it starts itself in the foreground as a detached process,
 * waits until that one serves (or relays why it could not), prints its pid and returns 0.
 */
export async function xenstoredCommand(opts: XenstoredCommandOptions): Promise<number> {
  if (!opts.foreground) return background(opts);
  const stamp = (line: string): void => {
    process.stderr.write(`${new Date().toISOString()} ${line}\n`);
  };
  let daemon: XenstoredDaemon;
  try {
    daemon = await XenstoredDaemon.start({ ...(opts.socket !== undefined ? { socketPaths: [opts.socket] } : {}), log: stamp });
  } catch (e) {
    if (process.send) process.send({ error: e instanceof PvboxError ? e.message : String(e) } satisfies ReadyMessage);
    throw e;
  }
  stamp(`xenstored: serving ${daemon.socketPaths.join(', ')} (pid ${process.pid})`);
  const done = new Promise<void>((resolve) => {
    const onSignal = (): void => {
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
      resolve();
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
  if (process.send) {
    process.send({ ready: process.pid } satisfies ReadyMessage);
    process.disconnect?.();
  }
  await done;
  await daemon.stop();
  return 0;
}

async function background(opts: XenstoredCommandOptions): Promise<number> {
  const logFile = opts.logFile ?? DEFAULT_XENSTORED_LOG;
  let fd: number;
  try {
    mkdirSync(dirname(logFile), { recursive: true, mode: 0o755 });
    fd = openSync(logFile, 'a', 0o640);
  } catch (e) {
    throw new HostError(`cannot open the xenstored log ${logFile}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const args = [PVBOX_BIN, 'xenstored', '--foreground', ...(opts.socket !== undefined ? ['--socket', opts.socket] : [])];
  const child = spawn(process.execPath, args, { detached: true, stdio: ['ignore', fd, fd, 'ipc'] });
  closeSync(fd);
  const msg = await new Promise<ReadyMessage>((resolve, reject) => {
    const timer = setTimeout(() => reject(new HostError(`xenstored did not start within 60 s (see ${logFile})`)), 60_000);
    child.once('message', (m) => {
      clearTimeout(timer);
      resolve(m as ReadyMessage);
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new HostError(`xenstored exited (${signal ?? `status ${code}`}) before serving (see ${logFile})`));
    });
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(new HostError(`cannot start xenstored: ${e.message}`));
    });
  });
  child.removeAllListeners();
  if (child.connected) child.disconnect();
  child.unref();
  if ('error' in msg) throw new HostError(msg.error);
  process.stdout.write(`${msg.ready}\n`);
  return 0;
}
