// The xenbus backend framework: a PV device's two XenStore directories and the one XenbusState machine every backend shares (QEMU hw/xen/xen-bus.c XenDevice realize/frontend_changed/unrealize; Linux drivers/xen/xenbus/xenbus_probe_backend.c, xenbus_client.c; xen tools/libs/light/libxl_device.c).
//
// Life of a device:
//
//   createDevice()   the toolstack's part (libxl__device_generic_add): both directories, with
//                    their permissions and state=1 on each side, in one transaction. No watch
//                    exists yet, so nothing can observe a half-written device.
//   dev.start(be)    the backend driver's part (xenbus_dev_probe / QEMU xen_device_realize):
//                    watches on the frontend's state and on the backend's own state and online
//                    nodes, then be.realize() (features), then InitWait. The watches fire once
//                    at once (xenstored "fire once up front"); by then every node exists, so the
//                    first event reads state=1 and cannot tear the device down (the 2023 fix in
//                    xen-bus.c that moved realize after the node writes).
//   handshake        frontend Initialised or Connected → be.connect(); when it resolves the
//                    backend goes Connected. Frontend Closing → disconnect, Closing; Closed →
//                    Closed, and, if the toolstack has set online=0, the device is destroyed.
//                    Frontend Initialising while the backend is Closed (a frontend module
//                    reloaded) → InitWait, and the handshake starts again.
//   destroy          destroyDevice(): unwatch, cancel a pending connect, be.disconnect(), remove
//                    both directories (and parents left empty, as libxl__xs_path_cleanup does).
//                    Also reached when the frontend directory disappears (the guest died and
//                    its nodes were released) or the toolstack unplugs the device.
//
// Watch events are handled on a microtask, never inside the store operation that caused them
// (Linux runs them on the xenwatch thread): a guest's XS_WRITE returns before the backend reacts.
// Events coalesce, and every handler reads the node's current value, as Linux and QEMU do.
//
// The guest is untrusted: a state node holding anything but 0..8 is logged (rate-limited) and
// ignored; nothing a frontend writes can throw out of this module.

import {
  XenbusStateClosed,
  XenbusStateClosing,
  XenbusStateConnected,
  XenbusStateInitialised,
  XenbusStateInitialising,
  XenbusStateInitWait,
  XenbusStateUnknown,
  type XenbusState,
} from '../abi/io/xenbus.js';
import { XEN_EIO } from '../abi/errno.js';
import { DOMID_FIRST_RESERVED } from '../abi/xen.js';
import { ConfigError } from '../errors.js';
import type { XsResult } from '../xenstore/errors.js';
import { parentPath } from '../xenstore/path.js';
import type { XsPerm } from '../xenstore/perms.js';
import type { StoreConnection, XenStore } from '../xenstore/store.js';
import { bytesToLatin1 } from '../xenstore/wire.js';
import { neverConnectedHint } from './frontend-hints.js';
import {
  backendPath,
  backendPerms,
  errorNodePath,
  frontendPath,
  frontendPerms,
  isPrimaryConsole,
  isXenbusDeviceType,
  type XenbusDeviceType,
} from './paths.js';
import { formatXenbusState, isFrontendActive, parseXenbusState, xenbusStateName, type StateReading } from './state.js';

// ---------------------------------------------------------------------------------------------
// Public types

/** Node values as the toolstack writes them ("%d" for numbers, 1/0 for booleans). */
export type NodeValue = string | number | bigint | boolean;
export type NodeValues = Readonly<Record<string, NodeValue>>;

export interface DeviceSpec {
  readonly type: XenbusDeviceType;
  readonly frontendDomid: number;
  /** The domain running the backend; pvbox's backends live in dom0. Default 0. */
  readonly backendDomid?: number;
  /** The frontend's directory name: 51712 for xvda, the vif index, the console number. */
  readonly devid: number;
  /** Device keys in the frontend directory, owned by the guest (virtual-device, mac, handle, ...). */
  readonly frontendNodes?: NodeValues;
  /** Frontend keys the guest may read but not change (libxl ro_fents: console 0's ring-ref, port, tty, ...). */
  readonly frontendReadOnlyNodes?: NodeValues;
  /** Keys in the backend directory (params, mode, type, bridge, ...); the guest may read them. */
  readonly backendNodes?: NodeValues;
}

export interface DeviceOptions {
  /** Lines for a person: never-connected hints, guest misbehaviour (rate-limited), failures. */
  readonly log?: (line: string) => void;
  /** Every state change and decision, when tracing is on (PVBOX_TRACE=xenbus). */
  readonly trace?: (line: string) => void;
  /**
   * Log which guest driver is missing if the frontend has not reached Initialised or Connected
   * this long after the guest's xenbus came up (Linux itself gives essential devices 30 s at
   * boot), or after 5 times this when the guest never shows its xenbus. 0: never.
   */
  readonly neverConnectedAfterMs?: number;
  /** Guest-triggered warnings logged per device before the rest are suppressed. Default 5. */
  readonly warningLimit?: number;
}

/** The helpers a backend gets (QEMU's xen_device_backend_printf, xen_device_frontend_scanf, ...). */
export interface XenbusDeviceHandle {
  readonly type: XenbusDeviceType;
  readonly devid: number;
  readonly frontendDomid: number;
  readonly backendDomid: number;
  readonly frontendPath: string;
  readonly backendPath: string;
  /** What this backend last wrote to its state node (or the toolstack, seen through the watch). */
  readonly backendState: XenbusState;
  /** The last valid state the frontend wrote (garbage leaves it unchanged). */
  readonly frontendState: XenbusState;
  /** Write backend/<key>. False (and logged) if the store refused. */
  backendPrintf(key: string, value: NodeValue): boolean;
  readBackend(key: string): string | undefined;
  /** frontend/<key> as the guest wrote it, or undefined if absent. Guest data: check it. */
  readFrontend(key: string): string | undefined;
  /** xenbus_read_unsigned(): frontend/<key> as a u32, or `dflt` if absent or not a number. */
  readFrontendFeature(key: string, dflt: number): number;
  /** Publish feature-* keys in one transaction (`{ 'feature-flush-cache': 1 }`; true → 1). */
  writeFeatures(features: NodeValues): boolean;
  /** xenbus_switch_state(): write the backend state unless unchanged or the node is gone. */
  switchState(state: XenbusState): boolean;
  /** xenbus_dev_fatal(): record `<errno> <message>` in error/backend/..., log, go Closing. */
  fatal(errno: number, message: string): void;
}

/** What connect() learns about the frontend. */
export interface FrontendInfo {
  readonly domid: number;
  readonly devid: number;
  readonly path: string;
  /** Initialised or Connected (the primary console, which has no handshake: Connected). */
  readonly state: XenbusState;
  /** Aborted if the connection is abandoned before it completes (frontend closing, teardown). */
  readonly signal: AbortSignal;
  readonly device: XenbusDeviceHandle;
}

/**
 * One PV device backend. The framework drives the XenbusState machine; a backend says only what
 * connecting and disconnecting mean for its device. `Io` is what it needs to reach the guest
 * (grant mapping, event channels), passed through untouched from start().
 */
export interface XenbusBackend<Io = unknown> {
  readonly type: XenbusDeviceType;
  /** Before InitWait: publish what the frontend reads first (features, sizes). Optional. */
  realize?(dev: XenbusDeviceHandle): void;
  /**
   * The frontend has published its rings: map them, bind event channels, start serving. Resolve
   * when ready (the backend then goes Connected); reject to fail the device (xenbus_dev_fatal).
   * Stop early when `fe.signal` aborts; the framework will call disconnect().
   */
  connect(fe: FrontendInfo, io: Io): Promise<void>;
  /** Every valid frontend state change, after the framework has acted on it. */
  frontendChanged(state: XenbusState): void;
  /** Stop serving: unmap, unbind, close. May be called when not connected; must be idempotent. */
  disconnect(): void;
}

// ---------------------------------------------------------------------------------------------
// createDevice: the toolstack's writes (libxl__device_generic_add)

/** Keys the framework writes itself; a spec may not override them. */
const RESERVED_FRONTEND_KEYS = new Set(['backend', 'backend-id', 'state']);
const RESERVED_BACKEND_KEYS = new Set(['frontend', 'frontend-id', 'online', 'state']);
const KEY_RE = /^[A-Za-z0-9_@-]+(?:\/[A-Za-z0-9_@-]+)*$/;
/** Transaction retries before giving up (libxl retries EAGAIN forever; pvbox caps every retry). */
const MAX_TX_ATTEMPTS = 16;
/** LIBXL_DESTROY_TIMEOUT: how long unplug() waits for the frontend before forcing removal. */
const DEFAULT_UNPLUG_TIMEOUT_MS = 10_000;

/**
 * Write a device's backend and frontend directories as xl does, in one transaction, before any
 * watch exists. Throws ConfigError for a bad spec or a device that already exists.
 */
export function createDevice<Io = unknown>(store: XenStore, spec: DeviceSpec, opts: DeviceOptions = {}): XenbusDevice<Io> {
  const s = checkSpec(store, spec);
  const fe = frontendPath(s.type, s.frontendDomid, s.devid);
  const be = backendPath(s.type, s.backendDomid, s.frontendDomid, s.devid);
  const primary = isPrimaryConsole(s.type, s.devid);
  const fePerms = frontendPerms(s.frontendDomid, s.backendDomid);
  const roPerms = backendPerms(s.frontendDomid, s.backendDomid);

  // Frontend keys in libxl's order: backend-id and state first, then the device's own.
  const fents: [string, string][] = [['backend-id', String(s.backendDomid)]];
  if (!primary) fents.push(['state', String(XenbusStateInitialising)]);
  fents.push(...entries(spec.frontendNodes));
  const roFents = entries(spec.frontendReadOnlyNodes);
  const bents: [string, string][] = [
    ['frontend-id', String(s.frontendDomid)],
    ['online', '1'],
    ['state', String(XenbusStateInitialising)],
    ...entries(spec.backendNodes),
  ];

  const tag = deviceTag(s.type, s.frontendDomid, s.devid);
  withToolstack(store, tag, (c, tx) => {
    if (c.read(tx, be).ok || c.read(tx, fe).ok) {
      throw new ConfigError(`${tag}: device already exists in XenStore (${c.read(tx, be).ok ? be : fe})`);
    }
    // Frontend directory: the guest owns it (console 0's belongs to the backend), the backend reads.
    rmIfPresent(c, tx, fe);
    must(c.mkdir(tx, fe), `mkdir ${fe}`);
    must(c.setPerms(tx, fe, primary ? roPerms : fePerms), `set_perms ${fe}`);
    must(c.write(tx, `${fe}/backend`, be), `write ${fe}/backend`);
    for (const [k, v] of fents) writeWithPerms(c, tx, `${fe}/${k}`, v, fePerms);
    for (const [k, v] of roFents) writeWithPerms(c, tx, `${fe}/${k}`, v, roPerms);
    // Backend directory: the backend domain owns it, the guest reads; keys inherit the ACL.
    rmIfPresent(c, tx, be);
    must(c.mkdir(tx, be), `mkdir ${be}`);
    must(c.setPerms(tx, be, roPerms), `set_perms ${be}`);
    must(c.write(tx, `${be}/frontend`, fe), `write ${be}/frontend`);
    for (const [k, v] of bents) must(c.write(tx, `${be}/${k}`, v), `write ${be}/${k}`);
  });
  return new XenbusDevice<Io>(store, s, fe, be, opts);
}

/** Tear a device down: see XenbusDevice.destroy(). Idempotent. */
export function destroyDevice(dev: XenbusDevice<unknown>): void {
  dev.destroy();
}

interface ResolvedSpec {
  readonly type: XenbusDeviceType;
  readonly frontendDomid: number;
  readonly backendDomid: number;
  readonly devid: number;
}

function checkSpec(store: XenStore, spec: DeviceSpec): ResolvedSpec {
  const { type, frontendDomid, devid } = spec;
  const backendDomid = spec.backendDomid ?? 0;
  if (!isXenbusDeviceType(type)) throw new ConfigError(`xenbus: unknown device type ${JSON.stringify(type)}`);
  for (const [name, d] of [['frontendDomid', frontendDomid], ['backendDomid', backendDomid]] as const) {
    if (!Number.isInteger(d) || d < 0 || d >= DOMID_FIRST_RESERVED) throw new ConfigError(`xenbus: ${type}: ${name} ${d} is not a domain id`);
    if (!store.isDomainIntroduced(d)) throw new ConfigError(`xenbus: ${type}: domain ${d} is not known to XenStore`);
  }
  if (frontendDomid === backendDomid) throw new ConfigError(`xenbus: ${type}: frontend and backend are both domain ${frontendDomid}`);
  if (!Number.isInteger(devid) || devid < 0 || devid > 0x7fffffff) throw new ConfigError(`xenbus: ${type}: devid ${devid} is not a device number`);
  const tag = deviceTag(type, frontendDomid, devid);
  checkKeys(tag, 'frontendNodes', spec.frontendNodes, RESERVED_FRONTEND_KEYS);
  checkKeys(tag, 'frontendReadOnlyNodes', spec.frontendReadOnlyNodes, RESERVED_FRONTEND_KEYS);
  checkKeys(tag, 'backendNodes', spec.backendNodes, RESERVED_BACKEND_KEYS);
  return { type, frontendDomid, backendDomid, devid };
}

function checkKeys(tag: string, what: string, nodes: NodeValues | undefined, reserved: ReadonlySet<string>): void {
  for (const key of Object.keys(nodes ?? {})) {
    if (!KEY_RE.test(key)) throw new ConfigError(`${tag}: ${what}: ${JSON.stringify(key)} is not a XenStore key`);
    if (reserved.has(key)) throw new ConfigError(`${tag}: ${what}: "${key}" is written by the framework`);
  }
}

function entries(nodes: NodeValues | undefined): [string, string][] {
  return Object.entries(nodes ?? {}).map(([k, v]) => [k, formatValue(v)]);
}

function formatValue(v: NodeValue): string {
  if (typeof v === 'boolean') return v ? '1' : '0';
  return String(v);
}

function writeWithPerms(c: StoreConnection, tx: number, path: string, value: string, perms: readonly XsPerm[]): void {
  must(c.write(tx, path, value), `write ${path}`);
  must(c.setPerms(tx, path, perms), `set_perms ${path}`);
}

/** xs_rm as libxl calls it before mkdir: a missing node (or parent) is fine. */
function rmIfPresent(c: StoreConnection, tx: number, path: string): void {
  const r = c.rm(tx, path);
  if (!r.ok && r.failure !== 'noEntry') must(r, `rm ${path}`);
}

/** Thrown inside a transaction body to abort it; a store refusal dom0 cannot get is a pvbox bug. */
class StoreOpFailed extends Error {}

function must(r: XsResult<unknown>, what: string): void {
  if (!r.ok) throw new StoreOpFailed(`${what}: ${r.failure}`);
}

/**
 * Run `body` in a transaction of the privileged domain, retrying on EAGAIN. `body` throws to
 * abort; a ConfigError passes through, anything else means pvbox is broken.
 */
function withToolstack(store: XenStore, tag: string, body: (c: StoreConnection, tx: number) => void): void {
  const c = store.connect(store.privDomid, () => {});
  try {
    runTransaction(c, tag, body);
  } finally {
    c.close();
  }
}

function runTransaction(c: StoreConnection, tag: string, body: (c: StoreConnection, tx: number) => void): void {
  for (let attempt = 1; ; attempt++) {
    const t = c.transactionStart(0);
    if (!t.ok) throw new Error(`${tag}: cannot start a XenStore transaction (${t.failure}): pvbox bug`);
    try {
      body(c, t.value);
    } catch (e) {
      c.transactionEnd(t.value, false);
      if (e instanceof StoreOpFailed) throw new Error(`${tag}: XenStore refused ${e.message}: pvbox bug`);
      throw e;
    }
    const end = c.transactionEnd(t.value, true);
    if (end.ok) return;
    if (end.failure !== 'conflict' || attempt >= MAX_TX_ATTEMPTS) {
      throw new Error(`${tag}: XenStore transaction failed (${end.failure}) after ${attempt} attempt(s)`);
    }
  }
}

function deviceTag(type: XenbusDeviceType, domid: number, devid: number): string {
  return `xenbus: dom${domid} ${type}/${devid}`;
}

// ---------------------------------------------------------------------------------------------
// The device: watches and the state machine

const TOKEN_FRONTEND = 'xenbus-frontend-state';
const TOKEN_BACKEND_STATE = 'xenbus-backend-state';
const TOKEN_BACKEND_ONLINE = 'xenbus-backend-online';

type Phase = 'created' | 'started' | 'destroyed';

interface PendingConnect {
  readonly ctrl: AbortController;
}

/** Periods of neverConnectedAfterMs after which a guest whose xenbus never showed up is warned about anyway. */
const MAX_HINT_PERIODS = 5;

export class XenbusDevice<Io = unknown> implements XenbusDeviceHandle {
  readonly type: XenbusDeviceType;
  readonly devid: number;
  readonly frontendDomid: number;
  readonly backendDomid: number;
  readonly frontendPath: string;
  readonly backendPath: string;
  /** Console 0: no frontend state node and no handshake; connected as soon as it starts. */
  readonly primaryConsole: boolean;

  readonly #store: XenStore;
  readonly #log: (line: string) => void;
  readonly #trace: ((line: string) => void) | undefined;
  readonly #hintAfterMs: number;
  readonly #warningLimit: number;
  readonly #tag: string;

  #phase: Phase = 'created';
  #conn: StoreConnection | undefined;
  #backend: XenbusBackend<Io> | undefined;
  #io: Io | undefined;
  #backendState: XenbusState = XenbusStateInitialising;
  #frontendState: XenbusState = XenbusStateInitialising;
  #online = true;
  #connect: PendingConnect | undefined;
  /** connect() was called since the last disconnect(). */
  #needsDisconnect = false;
  /** The frontend reached Initialised or Connected at least once. */
  #frontendEverActive = false;
  #hintTimer: ReturnType<typeof setTimeout> | undefined;
  /** When the hint timer started, and how many of its periods passed before the guest's xenbus was seen up. */
  #hintStart = 0;
  #hintPeriods = 0;
  #guestXenbusSeen = false;
  #warnings = 0;
  #reportedError: string | undefined;
  #scheduled = false;
  #frontendDirty = false;
  #backendDirty = false;
  readonly #onDestroyed: Array<() => void> = [];

  /** @internal Use createDevice(). */
  constructor(store: XenStore, spec: ResolvedSpec, fe: string, be: string, opts: DeviceOptions) {
    this.#store = store;
    this.type = spec.type;
    this.devid = spec.devid;
    this.frontendDomid = spec.frontendDomid;
    this.backendDomid = spec.backendDomid;
    this.frontendPath = fe;
    this.backendPath = be;
    this.primaryConsole = isPrimaryConsole(spec.type, spec.devid);
    this.#log = opts.log ?? (() => {});
    this.#trace = opts.trace;
    this.#hintAfterMs = opts.neverConnectedAfterMs ?? 30_000;
    this.#warningLimit = opts.warningLimit ?? 5;
    this.#tag = deviceTag(spec.type, spec.frontendDomid, spec.devid);
  }

  get backendState(): XenbusState {
    return this.#backendState;
  }

  get frontendState(): XenbusState {
    return this.#frontendState;
  }

  get started(): boolean {
    return this.#phase === 'started';
  }

  get destroyed(): boolean {
    return this.#phase === 'destroyed';
  }

  /** True until the frontend has reached Initialised or Connected once. */
  get neverConnected(): boolean {
    return !this.#frontendEverActive;
  }

  /** A connect() is in flight. */
  get connecting(): boolean {
    return this.#connect !== undefined;
  }

  // --- lifecycle ---

  /**
   * Attach the backend: arm the watches (the nodes exist already), let the backend publish its
   * features, and go InitWait. Throws if called twice, after destroy, or for a backend of
   * another type; if realize() throws, the device is destroyed and the error rethrown.
   */
  start(backend: XenbusBackend<Io>, io: Io): void {
    if (this.#phase !== 'created') throw new Error(`${this.#tag}: start() on a device that is ${this.#phase}`);
    if (backend.type !== this.type) throw new Error(`${this.#tag}: start() with a ${backend.type} backend`);
    this.#backend = backend;
    this.#io = io;
    this.#phase = 'started';
    const conn = this.#store.connect(this.backendDomid, (_path, token) => this.#onWatch(token));
    this.#conn = conn;
    // Console 0 has no state node: watching its directory still tells us when it goes away.
    const feWatch = this.primaryConsole ? this.frontendPath : `${this.frontendPath}/state`;
    for (const [path, token] of [
      [feWatch, TOKEN_FRONTEND],
      [`${this.backendPath}/state`, TOKEN_BACKEND_STATE],
      [`${this.backendPath}/online`, TOKEN_BACKEND_ONLINE],
    ] as const) {
      const r = conn.watch(path, token);
      if (!r.ok) {
        this.destroy();
        throw new Error(`${this.#tag}: cannot watch ${path} (${r.failure}): pvbox bug`);
      }
    }
    if (backend.realize) {
      try {
        backend.realize(this);
      } catch (e) {
        this.#log(`${this.#tag}: backend realize failed: ${describe(e)}; device removed`);
        this.destroy();
        throw e;
      }
    }
    if (!this.started) return; // realize() destroyed it
    this.switchState(XenbusStateInitWait);
    if (this.primaryConsole) {
      // The guest found this ring in start_info at boot: there is nothing to wait for.
      this.#frontendEverActive = true;
      this.#frontendState = XenbusStateConnected;
      this.#startConnect(XenbusStateConnected);
    } else if (this.#hintAfterMs > 0) {
      this.#hintStart = Date.now();
      this.#armHintTimer();
    }
  }

  /**
   * Orderly teardown (QEMU xen_device_unrealize + libxl__device_destroy): stop watching, cancel
   * a pending connect, let the backend disconnect, remove both directories and any parents left
   * empty. Idempotent; no watch callback and no backend call happens afterwards.
   */
  destroy(): void {
    if (this.#phase === 'destroyed') return;
    const wasStarted = this.#phase === 'started';
    this.#phase = 'destroyed';
    this.#clearHintTimer();
    this.#cancelConnect('device destroyed');
    this.#conn?.close(); // drops the watches
    this.#conn = undefined;
    if (wasStarted) this.#disconnect();
    try {
      withToolstack(this.#store, this.#tag, (c, tx) => {
        cleanupPath(c, tx, this.frontendPath);
        cleanupPath(c, tx, this.backendPath);
        const err = errorNodePath(this.backendPath, this.backendDomid);
        if (err) cleanupPath(c, tx, parentPath(err));
      });
    } catch (e) {
      this.#log(`${this.#tag}: removing its XenStore nodes failed: ${describe(e)}`);
    }
    this.#traceLine('destroyed');
    for (const f of this.#onDestroyed.splice(0)) f();
  }

  /** Resolves once the device is destroyed (at once if it already is). */
  whenDestroyed(): Promise<void> {
    if (this.#phase === 'destroyed') return Promise.resolve();
    return new Promise((resolve) => this.#onDestroyed.push(resolve));
  }

  /**
   * The toolstack's detach (libxl__initiate_device_generic_remove): online=0 and backend state
   * Closing in one transaction, then wait for the backend to reach Closed (the frontend has let
   * go) and remove the device; after `timeoutMs` remove it anyway. Resolves to how it ended.
   */
  async unplug(timeoutMs = DEFAULT_UNPLUG_TIMEOUT_MS): Promise<'closed' | 'forced'> {
    if (this.#phase === 'destroyed') return 'closed';
    if (this.#phase === 'created') {
      this.destroy();
      return 'closed';
    }
    const done = this.whenDestroyed();
    try {
      withToolstack(this.#store, this.#tag, (c, tx) => {
        const st = c.read(tx, `${this.backendPath}/state`);
        if (!st.ok) return; // backend already gone
        must(c.write(tx, `${this.backendPath}/online`, '0'), 'write online');
        if (bytesToLatin1(st.value) !== String(XenbusStateClosed)) {
          must(c.write(tx, `${this.backendPath}/state`, String(XenbusStateClosing)), 'write state');
        }
      });
    } catch (e) {
      this.#log(`${this.#tag}: unplug failed: ${describe(e)}; removing it`);
      this.destroy();
      return 'forced';
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = new Promise<'forced'>((resolve) => {
      timer = setTimeout(() => resolve('forced'), timeoutMs);
    });
    const how = await Promise.race([done.then(() => 'closed' as const), timedOut]);
    clearTimeout(timer);
    if (how === 'forced' && !this.destroyed) {
      this.#log(
        `${this.#tag}: the frontend did not close within ${timeoutMs} ms ` +
          `(frontend ${formatXenbusState(this.#frontendState)}, backend ${formatXenbusState(this.#backendState)}); removing it anyway`,
      );
      this.destroy();
    }
    return how;
  }

  // --- helpers for backends ---

  backendPrintf(key: string, value: NodeValue): boolean {
    const conn = this.#live();
    if (!conn) return false;
    checkKey(this.#tag, key);
    const r = conn.write(0, `${this.backendPath}/${key}`, formatValue(value));
    if (!r.ok) this.#log(`${this.#tag}: writing backend/${key} failed (${r.failure})`);
    return r.ok;
  }

  readBackend(key: string): string | undefined {
    checkKey(this.#tag, key);
    return this.#read(`${this.backendPath}/${key}`);
  }

  readFrontend(key: string): string | undefined {
    checkKey(this.#tag, key);
    return this.#read(`${this.frontendPath}/${key}`);
  }

  readFrontendFeature(key: string, dflt: number): number {
    const v = this.readFrontend(key);
    if (v === undefined) return dflt;
    // sscanf("%u") would take leading digits after optional blanks ("1x" → 1); a sign or a value
    // beyond a u32 is treated as absent rather than wrapped.
    const m = /^[ \t\n]*\+?([0-9]+)/.exec(v);
    if (!m) return dflt;
    const n = Number(m[1]);
    return n <= 0xffffffff ? n : dflt;
  }

  writeFeatures(features: NodeValues): boolean {
    const conn = this.#live();
    if (!conn) return false;
    for (const key of Object.keys(features)) checkKey(this.#tag, key);
    try {
      runTransaction(conn, this.#tag, (c, tx) => {
        for (const [k, v] of Object.entries(features)) must(c.write(tx, `${this.backendPath}/${k}`, formatValue(v)), `write ${k}`);
      });
      return true;
    } catch (e) {
      this.#log(`${this.#tag}: publishing features failed: ${describe(e)}`);
      return false;
    }
  }

  switchState(state: XenbusState): boolean {
    const conn = this.#live();
    if (!conn) return false;
    if (state === this.#backendState) return true;
    // xenbus_switch_state: "if the node has gone, we don't write to it, as the device will be
    // tearing down, and we don't want to resurrect that directory". The store is synchronous,
    // so a read then a write is as atomic as Linux's transaction.
    const cur = this.#readState(this.backendPath);
    if (cur.kind === 'absent') {
      this.#traceLine(`not switching to ${xenbusStateName(state)}: backend state node is gone`);
      return false;
    }
    if (cur.kind === 'state' && cur.state !== this.#backendState) {
      // The toolstack wrote it (say Closing, to detach) and our watch has not run yet. Let the
      // watch handler see it first rather than overwrite it with a step forward.
      this.#onWatch(TOKEN_BACKEND_STATE);
      if (state === XenbusStateInitWait || state === XenbusStateConnected) {
        this.#traceLine(`not switching to ${xenbusStateName(state)}: backend state was set to ${xenbusStateName(cur.state)} meanwhile`);
        return false;
      }
    }
    const r = conn.write(0, `${this.backendPath}/state`, String(state));
    if (!r.ok) {
      this.#log(`${this.#tag}: writing backend state ${formatXenbusState(state)} failed (${r.failure})`);
      return false;
    }
    this.#traceLine(`backend ${xenbusStateName(this.#backendState)} -> ${xenbusStateName(state)}`);
    this.#backendState = state;
    return true;
  }

  fatal(errno: number, message: string): void {
    if (!this.#live()) return;
    this.#log(`${this.#tag}: ${message} (error ${errno}); closing the device`);
    const err = errorNodePath(this.backendPath, this.backendDomid);
    if (err) this.#conn?.write(0, err, `${errno} ${message}`);
    this.switchState(XenbusStateClosing);
  }

  // --- watch handling ---

  #onWatch(token: string): void {
    if (this.#phase !== 'started') return;
    if (token === TOKEN_FRONTEND) this.#frontendDirty = true;
    else this.#backendDirty = true;
    if (this.#scheduled) return;
    this.#scheduled = true;
    queueMicrotask(() => this.#run());
  }

  #run(): void {
    this.#scheduled = false;
    try {
      // The toolstack's writes first: an unplug must win over a frontend that is reconnecting.
      if (this.#backendDirty && this.#phase === 'started') {
        this.#backendDirty = false;
        this.#backendChanged();
      }
      if (this.#frontendDirty && this.#phase === 'started') {
        this.#frontendDirty = false;
        this.#frontendChanged();
      }
    } catch (e) {
      // A host bug (in the framework or a backend's callback). Xen would crash the domain; the
      // device is removed and everything else carries on.
      this.#log(`${this.#tag}: internal error handling a XenStore watch: ${describe(e)}; removing the device`);
      this.destroy();
    }
  }

  /** xenbus_otherend_changed + blkback frontend_changed + QEMU xen_device_frontend_changed. */
  #frontendChanged(): void {
    if (this.primaryConsole) {
      if (!this.#exists(this.frontendPath)) this.#gone('the console directory was removed');
      return;
    }
    const reading = this.#readState(this.frontendPath);
    if (reading.kind === 'garbage') {
      this.#warn(`frontend wrote ${JSON.stringify(reading.raw)} to its state node; ignored`);
      return;
    }
    if (reading.kind === 'absent' && !this.#exists(this.frontendPath)) {
      this.#gone('the frontend directory was removed');
      return;
    }
    const state = reading.kind === 'state' ? reading.state : XenbusStateUnknown;
    const prev = this.#frontendState;
    this.#frontendState = state;
    if (state !== prev) this.#traceLine(`frontend ${xenbusStateName(prev)} -> ${xenbusStateName(state)}`);

    switch (state) {
      case XenbusStateInitialising:
        if (this.#backendState === XenbusStateClosed && this.#online) {
          // A frontend driver was reloaded after closing: offer the device again.
          this.#traceLine('frontend re-initialising: prepare for reconnect');
          this.switchState(XenbusStateInitWait);
        }
        break;
      case XenbusStateInitialised:
      case XenbusStateConnected:
        this.#frontendEverActive = true;
        this.#clearHintTimer();
        // Connect once, whichever of the two states (or both, coalesced) we see; not while
        // closing, and never twice.
        if (this.#backendState === XenbusStateConnected || this.#connect) break;
        if (this.#backendState === XenbusStateClosing) break;
        if (this.#backendState === XenbusStateClosed && !this.#online) break;
        this.#startConnect(state);
        break;
      case XenbusStateClosing:
        this.#reportFrontendError();
        this.#cancelConnect('frontend closing');
        this.#disconnect();
        this.switchState(XenbusStateClosing);
        break;
      case XenbusStateClosed:
      case XenbusStateUnknown:
        if (state === XenbusStateClosed) this.#reportFrontendError();
        this.#cancelConnect(`frontend ${xenbusStateName(state)}`);
        this.#disconnect();
        this.switchState(XenbusStateClosed);
        if (!this.#online) {
          this.#traceLine('closed while offline: removing the device');
          this.destroy();
          return;
        }
        break;
      default:
        // InitWait, Reconfiguring, Reconfigured: the backend's business, if any.
        break;
    }
    if (state !== prev && this.#phase === 'started') this.#backend?.frontendChanged(state);
  }

  /** QEMU xen_device_backend_changed: the toolstack writes state=Closing and online=0 to detach. */
  #backendChanged(): void {
    const reading = this.#readState(this.backendPath);
    if (reading.kind === 'absent' && !this.#exists(this.backendPath)) {
      this.#gone('the backend directory was removed');
      return;
    }
    if (reading.kind === 'garbage') {
      this.#log(`${this.#tag}: backend state node holds ${JSON.stringify(reading.raw)}; ignored`);
    } else {
      const state = reading.kind === 'state' ? reading.state : XenbusStateUnknown;
      if (state !== this.#backendState) {
        this.#traceLine(`backend state set to ${xenbusStateName(state)} by another writer`);
        this.#backendState = state;
        if (state === XenbusStateClosing || state === XenbusStateClosed) {
          this.#cancelConnect(`toolstack set ${xenbusStateName(state)}`);
          this.#disconnect();
          // Closing with nobody to hand shake with: close at once.
          if (state === XenbusStateClosing && (!isFrontendActive(this.#frontendState) || this.primaryConsole)) {
            this.switchState(XenbusStateClosed);
          }
        }
      }
    }
    const online = this.#read(`${this.backendPath}/online`);
    this.#online = online !== undefined && /^[ \t\n]*\+?0*[1-9]/.test(online);
    const s = this.#backendState;
    if (!this.#online && (s === XenbusStateClosed || s === XenbusStateInitialising || s === XenbusStateInitWait || s === XenbusStateUnknown)) {
      this.#traceLine(`offline and ${xenbusStateName(s)}: removing the device`);
      this.destroy();
    }
  }

  #startConnect(state: XenbusState): void {
    const backend = this.#backend as XenbusBackend<Io>;
    const op: PendingConnect = { ctrl: new AbortController() };
    this.#connect = op;
    this.#needsDisconnect = true;
    this.#traceLine(`connecting (frontend ${xenbusStateName(state)})`);
    const fe: FrontendInfo = {
      domid: this.frontendDomid,
      devid: this.devid,
      path: this.frontendPath,
      state,
      signal: op.ctrl.signal,
      device: this,
    };
    let p: Promise<void>;
    try {
      p = Promise.resolve(backend.connect(fe, this.#io as Io));
    } catch (e) {
      p = Promise.reject(e);
    }
    p.then(
      () => {
        if (this.#connect !== op || this.#phase !== 'started') return; // cancelled meanwhile
        this.#connect = undefined;
        this.switchState(XenbusStateConnected);
      },
      (e: unknown) => {
        if (this.#connect !== op || this.#phase !== 'started') return; // an aborted connect may reject
        this.#connect = undefined;
        this.#disconnect();
        const errno = typeof (e as { errno?: unknown })?.errno === 'number' ? Math.abs((e as { errno: number }).errno) : XEN_EIO;
        this.fatal(errno, `connecting to the frontend failed: ${describe(e)}`);
      },
    );
  }

  #cancelConnect(why: string): void {
    const op = this.#connect;
    if (!op) return;
    this.#connect = undefined;
    this.#traceLine(`connect cancelled: ${why}`);
    op.ctrl.abort(new Error(`${this.#tag}: connect cancelled: ${why}`));
  }

  #disconnect(): void {
    if (!this.#needsDisconnect) return;
    this.#needsDisconnect = false;
    try {
      this.#backend?.disconnect();
    } catch (e) {
      this.#log(`${this.#tag}: backend disconnect failed: ${describe(e)}`);
    }
  }

  /** The guest (or its directory) went away: nothing left to close with. */
  #gone(why: string): void {
    this.#traceLine(`${why}: removing the device`);
    this.destroy();
  }

  #armHintTimer(): void {
    this.#hintTimer = setTimeout(() => this.#neverConnectedWarning(), this.#hintAfterMs);
    this.#hintTimer.unref?.();
  }

  #neverConnectedWarning(): void {
    this.#hintTimer = undefined;
    if (this.#phase !== 'started' || this.#frontendEverActive) return;
    // A slow boot is not a missing driver. The wait counts from when the guest's xenbus is up:
    // Linux writes control/feature-poweroff then (drivers/xen/manage.c setup_shutdown_watcher,
    // run by the xenstore notifier before any frontend module can load). A guest that never
    // writes it (another OS) is warned about after MAX_HINT_PERIODS periods all the same.
    this.#hintPeriods++;
    if (!this.#guestXenbusSeen && this.#read(`/local/domain/${this.frontendDomid}/control/feature-poweroff`) !== undefined) {
      this.#guestXenbusSeen = true;
      this.#armHintTimer();
      return;
    }
    if (!this.#guestXenbusSeen && this.#hintPeriods < MAX_HINT_PERIODS) { this.#armHintTimer(); return; }
    const fe = this.#readState(this.frontendPath);
    const feState = fe.kind === 'state' ? formatXenbusState(fe.state) : fe.kind === 'absent' ? 'absent' : JSON.stringify(fe.raw);
    const err = this.#frontendError();
    this.#log(
      `${this.#tag}: ${neverConnectedHint(this.type, Date.now() - this.#hintStart)} ` +
        `[frontend state ${feState}, backend ${formatXenbusState(this.#backendState)}${err ? `; the frontend reported "${err}"` : ''}]`,
    );
  }

  #clearHintTimer(): void {
    if (this.#hintTimer !== undefined) clearTimeout(this.#hintTimer);
    this.#hintTimer = undefined;
  }

  /** What Linux's xenbus_dev_error() left for this device under the guest's error/ directory. */
  #frontendError(): string | undefined {
    const p = errorNodePath(this.frontendPath, this.frontendDomid);
    const v = p === undefined ? undefined : this.#read(p);
    return v === undefined ? undefined : v.length > 200 ? `${v.slice(0, 200)}...` : v;
  }

  #reportFrontendError(): void {
    const err = this.#frontendError();
    if (!err || err === this.#reportedError) return;
    this.#reportedError = err;
    this.#warn(`frontend closing after reporting "${err}"`);
  }

  // --- small helpers ---

  #live(): StoreConnection | undefined {
    return this.#phase === 'started' ? this.#conn : undefined;
  }

  #read(path: string): string | undefined {
    const conn = this.#conn;
    if (!conn) return undefined;
    const r = conn.read(0, path);
    return r.ok ? bytesToLatin1(r.value) : undefined;
  }

  #exists(path: string): boolean {
    return this.#conn !== undefined && this.#conn.read(0, path).ok;
  }

  #readState(dir: string): StateReading {
    const v = this.#read(`${dir}/state`);
    return v === undefined ? { kind: 'absent' } : parseXenbusState(v);
  }

  /** Rate-limited: a guest can make these happen as often as it likes. */
  #warn(line: string): void {
    this.#warnings++;
    if (this.#warnings > this.#warningLimit) return;
    const suffix = this.#warnings === this.#warningLimit ? ' (further warnings for this device suppressed)' : '';
    this.#log(`${this.#tag}: ${line}${suffix}`);
  }

  #traceLine(line: string): void {
    this.#trace?.(`${this.#tag}: ${line}`);
  }
}

function checkKey(tag: string, key: string): void {
  if (!KEY_RE.test(key)) throw new Error(`${tag}: ${JSON.stringify(key)} is not a XenStore key`);
}

/**
 * Remove `path` and then each parent left with no value and no children, as libxl__xs_path_cleanup
 * (xenstore-rm -t) does, stopping below /local/domain/<id> so a domain's home always survives.
 */
function cleanupPath(c: StoreConnection, tx: number, path: string): void {
  const r = c.rm(tx, path);
  if (!r.ok && r.failure === 'noEntry') return; // its parent is gone already (a released domain)
  must(r, `rm ${path}`);
  for (let p = parentPath(path); !/^\/local\/domain\/[0-9]+$/.test(p) && p !== '/' && p.split('/').length > 3; p = parentPath(p)) {
    const v = c.read(tx, p);
    if (!v.ok || v.value.length !== 0) break;
    const d = c.directory(tx, p);
    if (!d.ok || d.value.length !== 0) break;
    must(c.rm(tx, p), `rm ${p}`);
  }
}

function describe(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

export type { XenbusDeviceType, XenbusState };
