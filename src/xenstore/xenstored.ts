// pvbox's xenstored: XenStore requests in, replies and watch events out, over any byte stream
// (tools/xenstored/core.c process_message + wire_funcs[], domain.c do_introduce & co,
// control.c; QEMU hw/i386/kvm/xen_xenstore.c XSD_REQ table).
//
// Pure: a Connection is fed bytes with receive() and answers through the `send` callback it was
// given. The guest's shared-page ring and the Unix socket both sit on top of this.
//
// What a hostile client can do to a connection:
// - an unknown or reply-only message type gets XS_ERROR "ENOSYS";
// - a privileged-only request from a guest gets "EACCES";
// - a malformed payload (missing NUL, wrong number of strings, bad path, bad domid) gets
//   "EINVAL"; the connection carries on and the store is untouched;
// - a header with len > XENSTORE_PAYLOAD_MAX leaves the stream unusable: as xenstored does
//   (XENSTORE_ERROR_PROTO), the connection stops being served and loses its watches and
//   transactions; the owner is told through onError and may set the ring's error field.
// A host bug while serving a request is caught here, logged, and answered "EIO".

import { fail, ok, xsErrorName, type XsFailure, type XsResult } from './errors.js';
import { domainPath, parseDomid } from './path.js';
import { DOMID_SELF, formatPerm, parsePerm, type XsPerm } from './perms.js';
import { XenStore, type StoreConnection, type XenStoreOptions } from './store.js';
import {
  bytesToLatin1,
  errorPacket,
  oneArg,
  replyPacket,
  splitStrings,
  watchEventPacket,
  xsPayload,
  xsTypeName,
  XENSTORE_PAYLOAD_MAX,
  XsParser,
  XS_CONTROL,
  XS_DIRECTORY,
  XS_DIRECTORY_PART,
  XS_GET_DOMAIN_PATH,
  XS_GET_PERMS,
  XS_INTRODUCE,
  XS_IS_DOMAIN_INTRODUCED,
  XS_MKDIR,
  XS_READ,
  XS_RELEASE,
  XS_RESET_WATCHES,
  XS_RESUME,
  XS_RM,
  XS_SET_PERMS,
  XS_SET_TARGET,
  XS_TRANSACTION_END,
  XS_TRANSACTION_START,
  XS_UNWATCH,
  XS_WATCH,
  XS_WRITE,
  type XsPacket,
} from './wire.js';

export interface XenStoredOptions extends XenStoreOptions {
  /** Serve this store instead of creating one (quota/privDomid are then the store's). */
  readonly store?: XenStore;
  /**
   * XS_INTRODUCE from dom0: map the domain's ring page and bind `evtchn` before the store starts
   * serving it. Return a failure to refuse the introduction. Without a hook, only the store is
   * told (the ring is then wired up by whoever created the domain).
   */
  readonly onIntroduce?: (domid: number, gfn: bigint, evtchn: number) => XsFailure | undefined;
  /** XS_RELEASE from dom0, after the store has released the domain: unmap, unbind. */
  readonly onRelease?: (domid: number) => void;
  /** One line per oddity worth a person's attention (bad requests, dropped events, host bugs). */
  readonly log?: (line: string) => void;
}

export interface ConnectOptions {
  /**
   * The stream became unusable ('XENSTORE_ERROR_PROTO': a message longer than
   * XENSTORE_PAYLOAD_MAX). The connection serves nothing more.
   */
  readonly onError?: (error: 'XENSTORE_ERROR_PROTO') => void;
}

/** One message type's row: xenstored's wire_funcs[] entry. */
interface WireFunc {
  readonly name: string;
  /** Ignore the header's tx_id (WATCH, UNWATCH). */
  readonly notid?: true;
  /** Privileged domain only (INTRODUCE, RELEASE, ...): others get EACCES. */
  readonly priv?: true;
  readonly fn: (d: XenStored, c: Connection, sc: StoreConnection, req: XsPacket) => XsResult<Uint8Array>;
}

/** One client connection: a guest's ring, or a socket client. */
export class Connection {
  readonly domid: number;
  readonly #daemon: XenStored;
  readonly #send: (bytes: Uint8Array) => void;
  readonly #opts: ConnectOptions;
  readonly #parser = new XsParser();
  readonly #store: StoreConnection;
  /** Watch events held back while a WATCH request is answered (ack first, then the event). */
  #held: Uint8Array[] | undefined;
  #error: 'XENSTORE_ERROR_PROTO' | undefined;

  /** @internal Use XenStored.connect(). */
  constructor(daemon: XenStored, store: XenStore, domid: number, send: (bytes: Uint8Array) => void, opts: ConnectOptions) {
    this.#daemon = daemon;
    this.domid = domid;
    this.#send = send;
    this.#opts = opts;
    this.#store = store.connect(domid, (path, token) => this.#event(path, token));
  }

  /** Why the connection stopped being served, if it did. */
  get error(): 'XENSTORE_ERROR_PROTO' | undefined {
    return this.#error;
  }

  /** Closed by close() or because the domain was released. */
  get closed(): boolean {
    return this.#store.closed;
  }

  /** The store-side connection (watches, transactions): for the host's own requests and tests. */
  get storeConnection(): StoreConnection {
    return this.#store;
  }

  /** Feed bytes from the client; replies and events go out through `send`, in order. */
  receive(chunk: Uint8Array): void {
    if (this.#error || this.closed) return;
    for (const r of this.#parser.feed(chunk)) {
      if (this.#error || this.closed) return;
      if (r.kind === 'too-long') {
        this.#daemon._log(`dom${this.domid}: ${xsTypeName(r.header.type)} with len ${r.header.len} > XENSTORE_PAYLOAD_MAX; connection no longer served`);
        this.#error = 'XENSTORE_ERROR_PROTO';
        this.#store.resetWatches();
        this.#opts.onError?.('XENSTORE_ERROR_PROTO');
        return;
      }
      this.#daemon._process(this, this.#store, r.packet, r.kind === 'packet');
    }
  }

  /** Forget a half-received message and all watches and transactions (re-INTRODUCE). */
  reset(): void {
    this.#parser.reset();
    this.#error = undefined;
    if (!this.closed) this.#store.resetWatches();
  }

  /** Stop serving: watches and transactions are dropped. Idempotent. */
  close(): void {
    this.#store.close();
    this.#daemon._forget(this);
  }

  /** @internal */
  _send(bytes: Uint8Array): void {
    this.#send(bytes);
  }

  /** @internal Run `fn`, sending the watch events it causes only after it returns. */
  _holdingEvents(fn: () => void): void {
    const outer = this.#held;
    const held: Uint8Array[] = [];
    this.#held = held;
    try {
      fn();
    } finally {
      this.#held = outer;
      for (const b of held) this._send(b);
    }
  }

  #event(path: string, token: string): void {
    // core.c send_event: events that cannot fit are not sent.
    if (path.length + token.length + 2 > XENSTORE_PAYLOAD_MAX) {
      this.#daemon._log(`dom${this.domid}: dropping over-long watch event for ${path.slice(0, 64)}...`);
      return;
    }
    const bytes = watchEventPacket(path, token);
    if (this.#held) this.#held.push(bytes);
    else this._send(bytes);
  }
}

/** XenStore daemon: a store plus the request dispatcher that serves connections on it. */
export class XenStored {
  readonly store: XenStore;
  readonly #opts: XenStoredOptions;
  readonly #conns = new Set<Connection>();

  constructor(opts: XenStoredOptions = {}) {
    this.#opts = opts;
    this.store = opts.store ?? new XenStore(opts);
  }

  /** Serve a new client of domain `domid`. Socket clients are dom0 (`connect(0, ...)`). */
  connect(domid: number, send: (bytes: Uint8Array) => void, opts: ConnectOptions = {}): Connection {
    const c = new Connection(this, this.store, domid, send, opts);
    this.#conns.add(c);
    return c;
  }

  /** Host-side INTRODUCE (the toolstack's path): see XenStore.introduceDomain. */
  introduceDomain(domid: number): XsResult<boolean> {
    return this.store.introduceDomain(domid);
  }

  /** Host-side RELEASE: closes the domain's connections; see XenStore.releaseDomain. */
  releaseDomain(domid: number): XsResult<void> {
    const r = this.store.releaseDomain(domid);
    this.#prune();
    return r;
  }

  #prune(): void {
    for (const c of [...this.#conns]) if (c.closed) this.#conns.delete(c);
  }

  /** Connections being served (closed ones are forgotten). */
  get connectionCount(): number {
    this.#prune();
    return this.#conns.size;
  }

  /** @internal A connection was closed: forget it (socket clients come and go). */
  _forget(c: Connection): void {
    this.#conns.delete(c);
  }

  /** @internal */
  _log(line: string): void {
    this.#opts.log?.(`xenstored: ${line}`);
  }

  /** @internal Answer one request (core.c process_message). */
  _process(c: Connection, sc: StoreConnection, req: XsPacket, known: boolean): void {
    const reply = (r: XsResult<Uint8Array>): void => {
      if (r.ok && r.value.length > XENSTORE_PAYLOAD_MAX) r = fail('replyTooBig');
      c._send(r.ok ? replyPacket(req, req.type, r.value) : errorPacket(req, xsErrorName(r.failure)));
    };
    const wf = known ? WIRE_FUNCS[req.type] : undefined;
    if (!wf) {
      this._log(`dom${c.domid}: unknown operation ${req.type}`);
      reply(fail('unknownType'));
      return;
    }
    if (wf.priv && !sc.privileged) {
      reply(fail('privileged'));
      return;
    }
    if (!wf.notid && req.txId !== 0 && !sc.hasTransaction(req.txId)) {
      reply(fail('noTransaction'));
      return;
    }
    let r: XsResult<Uint8Array>;
    try {
      if (req.type === XS_WATCH) {
        // do_watch: the ack goes out before the watch's first event.
        c._holdingEvents(() => reply(wf.fn(this, c, sc, req)));
        return;
      }
      r = wf.fn(this, c, sc, req);
    } catch (e) {
      this._log(`dom${c.domid}: host bug serving ${wf.name} req_id ${req.reqId}: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
      r = fail('internal');
    }
    reply(r);
    if (req.type === XS_RELEASE) this.#prune();
  }

  /** @internal */
  _introduce(domid: number, gfn: bigint, evtchn: number): XsResult<void> {
    const already = this.store.isDomainIntroduced(domid);
    const refused = this.#opts.onIntroduce?.(domid, gfn, evtchn);
    if (refused) return fail(refused);
    if (already) {
      // domain.c do_introduce on a known domain: rebind, and reset its connection.
      if (domid !== this.store.privDomid) for (const c of this.#conns) if (c.domid === domid) c.reset();
      return ok(undefined);
    }
    const r = this.store.introduceDomain(domid);
    return r.ok ? ok(undefined) : r;
  }

  /** @internal */
  _release(domid: number): XsResult<void> {
    const r = this.store.releaseDomain(domid);
    if (r.ok) this.#opts.onRelease?.(domid);
    return r;
  }

  /** @internal */
  _control(cmd: string, args: readonly string[]): XsResult<Uint8Array> {
    switch (cmd) {
      case 'check':
        return args.length === 0 ? ok(xsPayload.ok()) : fail('malformed');
      case 'help':
        return args.length === 0 ? ok(xsPayload.string(CONTROL_HELP)) : fail('malformed');
      case 'print':
        if (args.length !== 1) return fail('malformed');
        this._log(`print: ${args[0] as string}`);
        return ok(xsPayload.ok());
      default:
        return fail('malformed');
    }
  }
}

const CONTROL_COMMANDS: ReadonlyArray<readonly [string, string]> = [
  ['check', ''],
  ['help', ''],
  ['print', '<string>'],
];
const CONTROL_HELP = CONTROL_COMMANDS.map(([c, p]) => `${c.padEnd(15)} ${p}\n`).join('');

// ---------------------------------------------------------------------------------------------
// Request handlers. Each parses its payload exactly as xenstored does and answers with the reply
// payload (the dispatcher adds the header) or a failure.

const OK = (r: XsResult<void>): XsResult<Uint8Array> => (r.ok ? ok(xsPayload.ok()) : r);

/** The single path/domid argument, or EINVAL. */
function arg(req: XsPacket): XsResult<string> {
  const a = oneArg(req.payload);
  return a === undefined ? fail('malformed') : ok(a);
}

/** Exactly `n` NUL-terminated strings, as do_watch's get_strings(...) != n check. */
function exactStrings(req: XsPacket, n: number): XsResult<string[]> {
  const { strings } = splitStrings(req.payload);
  return strings.length === n ? ok(strings) : fail('malformed');
}

/** At least `n` NUL-terminated strings (get_strings(...) < n is EINVAL). */
function atLeastStrings(req: XsPacket, n: number): XsResult<string[]> {
  const { strings } = splitStrings(req.payload);
  return strings.length >= n ? ok(strings) : fail('malformed');
}

function domidArg(s: string): XsResult<number> {
  const d = parseDomid(s);
  return d === undefined ? fail('badDomid') : ok(d);
}

/** C atoi(): leading decimal digits with an optional sign, else 0. */
function atoi(s: string): number {
  const m = /^\s*([+-]?[0-9]+)/.exec(s);
  return m ? Number.parseInt(m[1] as string, 10) : 0;
}

/** onearg_domain (domain.c): a domain other than dom0 that the store knows. */
function knownDomain(d: XenStored, req: XsPacket): XsResult<number> {
  const a = arg(req);
  if (!a.ok) return a;
  const domid = domidArg(a.value);
  if (!domid.ok) return domid;
  if (domid.value === d.store.privDomid) return fail('badDomid');
  return d.store.isDomainIntroduced(domid.value) ? domid : fail('noDomain');
}

const WIRE_FUNCS: ReadonlyArray<WireFunc | undefined> = (() => {
  const t: Array<WireFunc | undefined> = [];
  const row = (type: number, f: WireFunc): void => {
    t[type] = f;
  };

  row(XS_CONTROL, {
    name: 'CONTROL',
    priv: true,
    fn: (d, _c, _sc, req) => {
      const { strings } = splitStrings(req.payload);
      if (strings.length === 0) return fail('malformed');
      return d._control(strings[0] as string, strings.slice(1));
    },
  });

  row(XS_DIRECTORY, {
    name: 'DIRECTORY',
    fn: (_d, _c, sc, req) => {
      const a = arg(req);
      if (!a.ok) return a;
      const r = sc.directory(req.txId, a.value);
      return r.ok ? ok(xsPayload.directory(r.value)) : r;
    },
  });

  row(XS_READ, {
    name: 'READ',
    fn: (_d, _c, sc, req) => {
      const a = arg(req);
      if (!a.ok) return a;
      const r = sc.read(req.txId, a.value);
      return r.ok ? ok(xsPayload.read(r.value)) : r;
    },
  });

  row(XS_GET_PERMS, {
    name: 'GET_PERMS',
    fn: (_d, _c, sc, req) => {
      const a = arg(req);
      if (!a.ok) return a;
      const r = sc.getPerms(req.txId, a.value);
      return r.ok ? ok(xsPayload.perms(r.value.map(formatPerm))) : r;
    },
  });

  row(XS_WATCH, {
    name: 'WATCH',
    notid: true,
    fn: (_d, _c, sc, req) => {
      const s = exactStrings(req, 2);
      if (!s.ok) return s;
      return OK(sc.watch(s.value[0] as string, s.value[1] as string));
    },
  });

  row(XS_UNWATCH, {
    name: 'UNWATCH',
    notid: true,
    fn: (_d, _c, sc, req) => {
      const s = exactStrings(req, 2);
      if (!s.ok) return s;
      return OK(sc.unwatch(s.value[0] as string, s.value[1] as string));
    },
  });

  row(XS_TRANSACTION_START, {
    name: 'TRANSACTION_START',
    fn: (_d, _c, sc, req) => {
      // The payload is ignored (Linux sends "\0").
      const r = sc.transactionStart(req.txId);
      return r.ok ? ok(xsPayload.string(String(r.value))) : r;
    },
  });

  row(XS_TRANSACTION_END, {
    name: 'TRANSACTION_END',
    fn: (_d, _c, sc, req) => {
      const a = oneArg(req.payload);
      if (a !== 'T' && a !== 'F') return fail('badArgument');
      if (req.txId === 0) return fail('noTransaction');
      return OK(sc.transactionEnd(req.txId, a === 'T'));
    },
  });

  row(XS_INTRODUCE, {
    name: 'INTRODUCE',
    priv: true,
    fn: (d, _c, _sc, req) => {
      const s = atLeastStrings(req, 3);
      if (!s.ok) return s;
      const [domidS, gfnS, portS] = s.value as [string, string, string];
      const domid = domidArg(domidS);
      if (!domid.ok) return domid;
      const port = atoi(portS);
      if (port <= 0) return fail('badArgument');
      const gfnM = /^\s*([+-]?[0-9]+)/.exec(gfnS);
      const gfn = gfnM ? BigInt(gfnM[1] as string) : 0n;
      return OK(d._introduce(domid.value, gfn, port));
    },
  });

  row(XS_RELEASE, {
    name: 'RELEASE',
    priv: true,
    fn: (d, _c, _sc, req) => {
      const domid = knownDomain(d, req);
      if (!domid.ok) return domid;
      return OK(d._release(domid.value));
    },
  });

  row(XS_GET_DOMAIN_PATH, {
    name: 'GET_DOMAIN_PATH',
    fn: (_d, _c, _sc, req) => {
      const a = arg(req);
      if (!a.ok) return a;
      const domid = domidArg(a.value);
      return domid.ok ? ok(xsPayload.string(domainPath(domid.value))) : domid;
    },
  });

  row(XS_WRITE, {
    name: 'WRITE',
    fn: (_d, _c, sc, req) => {
      const nul = req.payload.indexOf(0);
      if (nul < 0) return fail('malformed');
      const path = bytesToLatin1(req.payload.subarray(0, nul));
      return OK(sc.write(req.txId, path, req.payload.subarray(nul + 1)));
    },
  });

  row(XS_MKDIR, {
    name: 'MKDIR',
    fn: (_d, _c, sc, req) => {
      const a = arg(req);
      return a.ok ? OK(sc.mkdir(req.txId, a.value)) : a;
    },
  });

  row(XS_RM, {
    name: 'RM',
    fn: (_d, _c, sc, req) => {
      const a = arg(req);
      return a.ok ? OK(sc.rm(req.txId, a.value)) : a;
    },
  });

  row(XS_SET_PERMS, {
    name: 'SET_PERMS',
    fn: (_d, _c, sc, req) => {
      // "<path>\0<perm>\0<perm>\0...": at least one permission (do_set_perms).
      const { strings } = splitStrings(req.payload);
      if (strings.length < 2) return fail('badPerms');
      const perms: XsPerm[] = [];
      for (const s of strings.slice(1)) {
        const p = parsePerm(s);
        if (!p) return fail('badPerms');
        perms.push(p);
      }
      return OK(sc.setPerms(req.txId, strings[0] as string, perms));
    },
  });

  row(XS_IS_DOMAIN_INTRODUCED, {
    name: 'IS_DOMAIN_INTRODUCED',
    priv: true,
    fn: (d, _c, _sc, req) => {
      const a = arg(req);
      if (!a.ok) return a;
      const domid = domidArg(a.value);
      if (!domid.ok) return domid;
      const yes = domid.value === DOMID_SELF || d.store.isDomainIntroduced(domid.value);
      return ok(xsPayload.string(yes ? 'T' : 'F'));
    },
  });

  row(XS_RESUME, {
    name: 'RESUME',
    priv: true,
    fn: (d, _c, _sc, req) => {
      // Re-arms @releaseDomain on shutdown in xenstored; pvbox keeps no shutdown state here.
      const domid = knownDomain(d, req);
      return domid.ok ? ok(xsPayload.ok()) : domid;
    },
  });

  row(XS_SET_TARGET, {
    name: 'SET_TARGET',
    priv: true,
    fn: (d, _c, _sc, req) => {
      const s = atLeastStrings(req, 2);
      if (!s.ok) return s;
      const domid = domidArg(s.value[0] as string);
      if (!domid.ok) return domid;
      const target = domidArg(s.value[1] as string);
      if (!target.ok) return target;
      return OK(d.store.setTarget(domid.value, target.value));
    },
  });

  row(XS_RESET_WATCHES, {
    name: 'RESET_WATCHES',
    fn: (_d, _c, sc) => {
      sc.resetWatches();
      return ok(xsPayload.ok());
    },
  });

  row(XS_DIRECTORY_PART, {
    name: 'DIRECTORY_PART',
    fn: (_d, _c, sc, req) => {
      // xenstore_count_strings(...) != 2: exactly two NULs in the whole payload.
      const { strings } = splitStrings(req.payload);
      if (strings.length !== 2) return fail('malformed');
      const r = sc.directoryWithGeneration(req.txId, strings[0] as string);
      if (!r.ok) return r;
      const offset = atoi(strings[1] as string) >>> 0; // unsigned int in xenstored
      return ok(xsPayload.directoryPart(r.value.generation, r.value.children, offset));
    },
  });

  // XS_WATCH_EVENT and XS_ERROR are replies only; XS_GET/SET_FEATURE and XS_GET/SET_QUOTA are
  // optional (xenstore.txt) and not offered yet: all of these get ENOSYS.
  return t;
})();
