// src/xenbus/device.ts: the backend state machine against a frontend played the way Linux's xenbus_client.c and xen-blkfront/xen-netfront drive it, on the pure XenStore (no guest, no KVM).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { ConfigError } from '../../src/errors.js';
import {
  createDevice,
  destroyDevice,
  type DeviceOptions,
  type DeviceSpec,
  type FrontendInfo,
  type XenbusBackend,
  type XenbusDevice,
  type XenbusDeviceHandle,
  type XenbusState,
} from '../../src/xenbus/device.js';
import { neverConnectedHint } from '../../src/xenbus/frontend-hints.js';
import { backendPath, frontendPath } from '../../src/xenbus/paths.js';
import { parseXenbusState, xenbusStateName } from '../../src/xenbus/state.js';
import type { XsResult } from '../../src/xenstore/errors.js';
import type { XsPerm } from '../../src/xenstore/perms.js';
import { XenStore, type StoreConnection } from '../../src/xenstore/store.js';
import { bytesToLatin1 } from '../../src/xenstore/wire.js';

// XenbusState values (xen/include/public/io/xenbus.h), short for the sequences below.
const Initialising = 1;
const InitWait = 2;
const Initialised = 3;
const Connected = 4;
const Closing = 5;
const Closed = 6;

const GUEST = 1;
const XVDA = 51712; // 202 << 8
const FE = frontendPath('vbd', GUEST, XVDA);
const BE = backendPath('vbd', 0, GUEST, XVDA);

function ok<T>(r: XsResult<T>): T {
  if (!r.ok) assert.fail(`expected success, got ${r.failure}`);
  return r.value;
}

function denied(r: XsResult<unknown>): void {
  assert.deepEqual(r, { ok: false, failure: 'denied' });
}

/** Let queued watch handlers (microtasks) and settled connect() promises run. */
function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function perms(store: XenStore, path: string): readonly XsPerm[] | undefined {
  return store.inspect(path)?.perms;
}

function value(store: XenStore, path: string): string | undefined {
  const n = store.inspect(path);
  return n && bytesToLatin1(n.value);
}

/**
 * A guest frontend driver as Linux writes one: xenbus_probe_node → read_backend_details →
 * watch_otherend, and xenbus_switch_state's transaction (read the node, skip if it is gone or
 * unchanged, write). `backendStates` is every value the backend's state node took, as the
 * guest's watch on it saw them.
 */
class LinuxFrontend {
  readonly conn: StoreConnection;
  /** xenbus_device.state: what this frontend last wrote. */
  state: number = Initialising;
  otherend = '';
  readonly backendStates: number[] = [];
  readonly nodename: string;

  constructor(store: XenStore, domid: number, type: string, devid: number) {
    this.nodename = `device/${type}/${devid}`; // relative, as Linux names it
    this.conn = store.connect(domid, (path, token) => {
      if (token !== 'otherend') return;
      const r = this.conn.read(0, path);
      if (r.ok) this.backendStates.push(Number(bytesToLatin1(r.value)));
    });
  }

  /** xenbus_probe_node (state must read Initialising) and talk_to_otherend + watch_otherend. */
  probe(): void {
    assert.equal(this.read('state'), String(Initialising), 'a new device reads Initialising');
    this.otherend = this.read('backend') ?? assert.fail('no backend node');
    assert.equal(this.read('backend-id'), '0');
    ok(this.conn.directory(0, this.otherend)); // "missing or inaccessible" otherwise
    ok(this.conn.watch(`${this.otherend}/state`, 'otherend'));
  }

  read(key: string): string | undefined {
    const r = this.conn.read(0, `${this.nodename}/${key}`);
    return r.ok ? bytesToLatin1(r.value) : undefined;
  }

  readBackend(key: string): string | undefined {
    const r = this.conn.read(0, `${this.otherend}/${key}`);
    return r.ok ? bytesToLatin1(r.value) : undefined;
  }

  write(key: string, v: string): void {
    ok(this.conn.write(0, `${this.nodename}/${key}`, v));
  }

  /** __xenbus_switch_state. */
  switchState(s: number): boolean {
    if (s === this.state) return true;
    for (;;) {
      const tx = ok(this.conn.transactionStart(0));
      if (!this.conn.read(tx, `${this.nodename}/state`).ok) {
        ok(this.conn.transactionEnd(tx, false));
        return false;
      }
      ok(this.conn.write(tx, `${this.nodename}/state`, String(s)));
      const end = this.conn.transactionEnd(tx, true);
      if (end.ok) break;
      assert.equal(end.failure, 'conflict');
    }
    this.state = s;
    return true;
  }

  /** blkfront talk_to_blkback: ring-ref, event-channel, protocol in one transaction, then Initialised. */
  publishRing(ringRef = 8, port = 5): void {
    const tx = ok(this.conn.transactionStart(0));
    ok(this.conn.write(tx, `${this.nodename}/ring-ref`, String(ringRef)));
    ok(this.conn.write(tx, `${this.nodename}/event-channel`, String(port)));
    ok(this.conn.write(tx, `${this.nodename}/protocol`, 'x86_64-abi'));
    ok(this.conn.transactionEnd(tx, true));
  }
}

/** What a backend saw, in order. */
class FakeBackend implements XenbusBackend<{ tag: string }> {
  readonly calls: string[] = [];
  readonly connects: FrontendInfo[] = [];
  /** Replace to control connect()'s outcome and timing. */
  connectImpl: (fe: FrontendInfo) => Promise<void> = async () => {};
  realizeImpl: ((dev: XenbusDeviceHandle) => void) | undefined;
  ringRef: string | undefined;

  constructor(readonly type: DeviceSpec['type'] = 'vbd') {}

  realize(dev: XenbusDeviceHandle): void {
    this.calls.push('realize');
    this.realizeImpl?.(dev);
  }

  connect(fe: FrontendInfo, io: { tag: string }): Promise<void> {
    assert.equal(io.tag, 'io');
    this.calls.push(`connect ${xenbusStateName(fe.state)}`);
    this.connects.push(fe);
    this.ringRef = fe.device.readFrontend('ring-ref');
    return this.connectImpl(fe);
  }

  frontendChanged(state: XenbusState): void {
    this.calls.push(`frontend ${xenbusStateName(state)}`);
  }

  disconnect(): void {
    this.calls.push('disconnect');
  }
}

interface Rig {
  store: XenStore;
  dom0: StoreConnection;
  dev: XenbusDevice<{ tag: string }>;
  be: FakeBackend;
  fe: LinuxFrontend;
  logs: string[];
}

const VBD_SPEC: DeviceSpec = {
  type: 'vbd',
  frontendDomid: GUEST,
  backendDomid: 0,
  devid: XVDA,
  frontendNodes: { 'virtual-device': XVDA, 'device-type': 'disk' },
  backendNodes: { 'params': '/var/lib/pvbox/disk.img', 'mode': 'w', 'type': 'qdisk', 'removable': 0, 'bootable': 1, 'discard-enable': true },
};

/** dom0 and dom1 introduced, the vbd created, the frontend probed (its watch armed), not started. */
function rig(opts: DeviceOptions = {}, spec: DeviceSpec = VBD_SPEC): Rig {
  const store = new XenStore();
  ok(store.introduceDomain(0));
  ok(store.introduceDomain(GUEST));
  ok(store.introduceDomain(2));
  const dom0 = store.connect(0, () => {});
  const logs: string[] = [];
  const dev = createDevice<{ tag: string }>(store, spec, { neverConnectedAfterMs: 0, log: (l) => logs.push(l), ...opts });
  const fe = new LinuxFrontend(store, GUEST, spec.type, spec.devid);
  fe.probe();
  return { store, dom0, dev, be: new FakeBackend(spec.type), fe, logs };
}

/** Start the backend and run blkfront's handshake to Connected on both sides. */
async function connected(opts: DeviceOptions = {}): Promise<Rig> {
  const r = rig(opts);
  r.dev.start(r.be, { tag: 'io' });
  await settle();
  r.fe.publishRing();
  r.fe.switchState(Initialised);
  await settle();
  assert.equal(r.fe.readBackend('state'), String(Connected));
  r.fe.switchState(Connected);
  await settle();
  return r;
}

describe('createDevice: the nodes xl writes', () => {
  it('writes both directories with libxl\'s keys and permissions', () => {
    const { store } = rig();
    // Frontend: owned by the guest, readable by the backend domain; every key likewise.
    const fePerms: XsPerm[] = [{ domid: GUEST, perm: 'n' }, { domid: 0, perm: 'r' }];
    assert.deepEqual(perms(store, FE), fePerms);
    assert.deepEqual(store.inspect(FE)?.children, ['backend', 'backend-id', 'state', 'virtual-device', 'device-type']);
    for (const [k, v] of [['backend', BE], ['backend-id', '0'], ['state', '1'], ['virtual-device', '51712'], ['device-type', 'disk']]) {
      assert.equal(value(store, `${FE}/${k}`), v, k);
      assert.deepEqual(perms(store, `${FE}/${k}`), fePerms, `${k} perms`);
    }
    // Backend: owned by dom0, readable by the guest; every key inherits that.
    const bePerms: XsPerm[] = [{ domid: 0, perm: 'n' }, { domid: GUEST, perm: 'r' }];
    assert.deepEqual(perms(store, BE), bePerms);
    assert.deepEqual(store.inspect(BE)?.children, ['frontend', 'frontend-id', 'online', 'state', 'params', 'mode', 'type', 'removable', 'bootable', 'discard-enable']);
    for (const [k, v] of [['frontend', FE], ['frontend-id', '1'], ['online', '1'], ['state', '1'], ['mode', 'w'], ['removable', '0'], ['discard-enable', '1']]) {
      assert.equal(value(store, `${BE}/${k}`), v, k);
      assert.deepEqual(perms(store, `${BE}/${k}`), bePerms, `${k} perms`);
    }
    // Parents the toolstack creates on the way keep their parents' ACLs.
    assert.deepEqual(perms(store, '/local/domain/0/backend/vbd/1'), [{ domid: 0, perm: 'n' }]);
    assert.deepEqual(perms(store, '/local/domain/1/device/vbd'), [{ domid: GUEST, perm: 'n' }]);
  });

  it('the guest reads the backend directory but cannot change it; dom0 reads and writes both', () => {
    const { store, dom0, fe } = rig();
    const g = fe.conn;
    assert.equal(bytesToLatin1(ok(g.read(0, `${BE}/state`))), '1');
    assert.deepEqual(ok(g.directory(0, BE)).length, 10);
    denied(g.write(0, `${BE}/state`, '4'));
    denied(g.write(0, `${BE}/feature-barrier`, '1')); // nor add keys
    denied(g.mkdir(0, `${BE}/sub`));
    denied(g.rm(0, `${BE}/state`));
    denied(g.rm(0, BE));
    denied(g.setPerms(0, BE, [{ domid: GUEST, perm: 'b' }]));
    // Its own directory is its own.
    ok(g.write(0, `${fe.nodename}/ring-ref`, '8'));
    ok(g.write(0, `${FE}/state`, '1'));
    // Another guest sees neither.
    const dom2 = store.connect(2, () => {});
    denied(dom2.read(0, `${FE}/state`));
    denied(dom2.read(0, `${BE}/state`));
    denied(dom2.write(0, `${FE}/state`, '6'));
    // dom0 does as it likes.
    for (const p of [`${FE}/state`, `${BE}/state`]) {
      ok(dom0.read(0, p));
      ok(dom0.write(0, p, '1'));
    }
    ok(dom0.write(0, `${FE}/x`, 'y'));
    ok(dom0.write(0, `${BE}/x`, 'y'));
  });

  it('writes everything in one transaction: a watcher never sees half a device', () => {
    const store = new XenStore();
    ok(store.introduceDomain(0));
    ok(store.introduceDomain(GUEST));
    const seen: string[] = [];
    // Linux's frontend bus watches "device"; dom0's backend bus watches "backend".
    const guest: StoreConnection = store.connect(GUEST, (path) => {
      if (path === 'device') return; // the watch's first firing
      seen.push(path);
      assert.equal(bytesToLatin1(ok(guest.read(0, `${FE}/backend`))), BE);
      assert.equal(bytesToLatin1(ok(guest.read(0, `${FE}/state`))), '1');
      assert.equal(bytesToLatin1(ok(guest.read(0, `${BE}/state`))), '1');
      assert.equal(bytesToLatin1(ok(guest.read(0, `${BE}/online`))), '1');
    });
    ok(guest.watch('device', 'fe-bus'));
    createDevice(store, VBD_SPEC);
    assert.ok(seen.length > 0, 'the frontend bus watch fired');
  });

  it('refuses bad specs and existing devices with a ConfigError', () => {
    const { store } = rig();
    const bad: Array<[string, Partial<DeviceSpec>]> = [
      ['type', { type: 'pci' as DeviceSpec['type'] }],
      ['devid', { devid: -1 }],
      ['devid', { devid: 1.5 }],
      ['frontendDomid', { frontendDomid: 0x7ff0 }],
      ['not known', { frontendDomid: 7 }],
      ['both', { frontendDomid: 0 }],
      ['written by the framework', { devid: 1, frontendNodes: { state: 4 } }],
      ['written by the framework', { devid: 1, backendNodes: { online: 0 } }],
      ['not a XenStore key', { devid: 1, backendNodes: { 'a//b': 1 } }],
      ['not a XenStore key', { devid: 1, frontendNodes: { '/abs': 1 } }],
      ['already exists', {}],
    ];
    for (const [msg, patch] of bad) {
      assert.throws(() => createDevice(store, { ...VBD_SPEC, ...patch }), (e: unknown) => e instanceof ConfigError && e.message.includes(msg), msg);
    }
    // Nothing half-written by the refusals.
    assert.equal(store.inspect(backendPath('vbd', 0, GUEST, 1)), undefined);
    assert.equal(store.inspect(frontendPath('vbd', GUEST, 1)), undefined);
  });

  it('console 0 lives at /local/domain/<id>/console, owned by the backend, without a state node', async () => {
    const store = new XenStore();
    ok(store.introduceDomain(0));
    ok(store.introduceDomain(GUEST));
    const dev = createDevice(store, {
      type: 'console',
      frontendDomid: GUEST,
      devid: 0,
      frontendReadOnlyNodes: { 'limit': 1048576, 'type': 'xenconsoled', 'output': 'pty', 'tty': '', 'port': 2, 'ring-ref': 0x1234 },
      backendNodes: { protocol: 'vt100' },
    });
    const fe = '/local/domain/1/console';
    assert.equal(dev.frontendPath, fe);
    assert.equal(dev.backendPath, '/local/domain/0/backend/console/1/0');
    const ro: XsPerm[] = [{ domid: 0, perm: 'n' }, { domid: GUEST, perm: 'r' }];
    assert.deepEqual(perms(store, fe), ro);
    assert.deepEqual(perms(store, `${fe}/ring-ref`), ro);
    assert.deepEqual(perms(store, `${fe}/backend-id`), [{ domid: GUEST, perm: 'n' }, { domid: 0, perm: 'r' }]); // libxl's fents
    assert.equal(store.inspect(`${fe}/state`), undefined);
    assert.equal(value(store, `${dev.backendPath}/protocol`), 'vt100');
    // No handshake: the ring came in start_info, so the backend connects at once.
    const be = new FakeBackend('console');
    dev.start(be, { tag: 'io' });
    await settle();
    assert.deepEqual(be.calls, ['realize', 'connect Connected']);
    assert.equal(value(store, `${dev.backendPath}/state`), String(Connected));
    dev.destroy();
    assert.equal(store.inspect(fe), undefined);
    assert.ok(store.inspect('/local/domain/1'), 'the domain\'s home stays');
  });
});

describe('the XenbusState machine', () => {
  it('blkfront: InitWait, then connect on Initialised, then Connected', async () => {
    const { dev, be, fe, store } = rig();
    dev.start(be, { tag: 'io' });
    assert.equal(dev.backendState, InitWait, 'InitWait as soon as start() returns');
    await settle();
    assert.deepEqual(fe.backendStates, [Initialising, InitWait]);
    assert.deepEqual(be.calls, ['realize']);

    fe.publishRing(8, 5);
    fe.switchState(Initialised);
    await settle();
    assert.deepEqual(be.calls, ['realize', 'connect Initialised', 'frontend Initialised']);
    assert.equal(be.ringRef, '8');
    const info = be.connects[0] as FrontendInfo;
    assert.equal(info.domid, GUEST);
    assert.equal(info.devid, XVDA);
    assert.equal(info.path, FE);
    assert.equal(info.signal.aborted, false);
    assert.equal(info.device.readFrontend('event-channel'), '5');
    assert.equal(info.device.readFrontend('protocol'), 'x86_64-abi');
    assert.deepEqual(fe.backendStates, [Initialising, InitWait, Connected]);

    fe.switchState(Connected);
    await settle();
    assert.deepEqual(be.calls.slice(3), ['frontend Connected']);
    assert.deepEqual(fe.backendStates, [Initialising, InitWait, Connected], 'no more backend writes');
    assert.equal(dev.frontendState, Connected);
    assert.equal(value(store, `${BE}/state`), '4');
  });

  it('netfront: straight from Initialising to Connected connects once', async () => {
    const { dev, be, fe } = rig();
    dev.start(be, { tag: 'io' });
    await settle();
    fe.publishRing();
    fe.switchState(Connected);
    await settle();
    assert.deepEqual(be.calls, ['realize', 'connect Connected', 'frontend Connected']);
    assert.deepEqual(fe.backendStates, [Initialising, InitWait, Connected]);
  });

  it('Initialised and Connected in one go (coalesced watch events) connect once', async () => {
    const { dev, be, fe } = rig();
    dev.start(be, { tag: 'io' });
    await settle();
    fe.publishRing();
    fe.switchState(Initialised);
    fe.switchState(Connected);
    await settle();
    assert.deepEqual(be.calls, ['realize', 'connect Connected', 'frontend Connected']);
    assert.deepEqual(fe.backendStates, [Initialising, InitWait, Connected]);
  });

  it('features: published before InitWait, and the frontend\'s read as xenbus_read_unsigned does', async () => {
    const r = rig();
    let seenAtInitWait: string | undefined;
    // The frontend reads features when it sees InitWait: they must be there already.
    const probe = r.store.connect(GUEST, (path) => {
      if (path.endsWith('/state') && value(r.store, `${BE}/state`) === String(InitWait)) {
        seenAtInitWait = bytesToLatin1(ok(probe.read(0, `${BE}/feature-flush-cache`)));
      }
    });
    ok(probe.watch(`${BE}/state`, 't'));
    r.be.realizeImpl = (dev) => {
      assert.equal(dev.writeFeatures({ 'feature-flush-cache': 1, 'feature-discard': false, 'sectors': 1n << 40n, 'info': 0 }), true);
      assert.equal(dev.backendPrintf('sector-size', 512), true);
    };
    r.dev.start(r.be, { tag: 'io' });
    assert.equal(seenAtInitWait, '1');
    assert.equal(value(r.store, `${BE}/feature-discard`), '0');
    assert.equal(value(r.store, `${BE}/sectors`), '1099511627776');
    assert.equal(r.dev.readBackend('sector-size'), '512');
    assert.deepEqual(perms(r.store, `${BE}/feature-flush-cache`), [{ domid: 0, perm: 'n' }, { domid: GUEST, perm: 'r' }]);

    for (const [k, v] of [['feature-persistent', '1'], ['a', 'banana'], ['b', ' 7'], ['c', '-1'], ['d', '99999999999'], ['e', '12abc'], ['f', '']]) {
      r.fe.write(k as string, v as string);
    }
    const f = (k: string): number => r.dev.readFrontendFeature(k, 42);
    assert.deepEqual(
      ['feature-persistent', 'a', 'b', 'c', 'd', 'e', 'f', 'absent'].map(f),
      [1, 42, 7, 42, 42, 12, 42, 42],
    );
    assert.throws(() => r.dev.readFrontend('../x'), /not a XenStore key/);
  });

  it('reconnects after the frontend closes and comes back (module reload)', async () => {
    const r = await connected();
    const { be, fe, dev } = r;
    assert.deepEqual(fe.backendStates, [Initialising, InitWait, Connected]);
    // rmmod: xennet_bus_close / blkfront_remove.
    fe.switchState(Closing);
    await settle();
    assert.equal(dev.backendState, Closing);
    fe.switchState(Closed);
    await settle();
    assert.equal(dev.backendState, Closed);
    assert.ok(!dev.destroyed, 'online=1: the device stays for a new frontend');
    // modprobe: probe switches to Initialising; the backend offers the device again.
    fe.switchState(Initialising);
    await settle();
    assert.equal(dev.backendState, InitWait);
    fe.publishRing(9, 6);
    fe.switchState(Initialised);
    await settle();
    fe.switchState(Connected);
    await settle();
    assert.deepEqual(fe.backendStates, [Initialising, InitWait, Connected, Closing, Closed, InitWait, Connected]);
    assert.deepEqual(be.calls, [
      'realize',
      'connect Initialised', 'frontend Initialised',
      'frontend Connected',
      'disconnect', 'frontend Closing',
      'frontend Closed',
      'frontend Initialising',
      'connect Initialised', 'frontend Initialised',
      'frontend Connected',
    ]);
    assert.equal(be.ringRef, '9', 'the new ring');
  });

  it('ignores garbage in the frontend\'s state node, logging it (rate-limited), and keeps working', async () => {
    const { dev, be, fe, logs } = rig({ warningLimit: 5 });
    dev.start(be, { tag: 'io' });
    await settle();
    const garbage = ['banana', '99', '', '4x', ' 4', '-1', '9', 'x'.repeat(2000), '\u0000'];
    for (const g of garbage) {
      fe.write('state', g);
      await settle();
      assert.equal(dev.backendState, InitWait, `after ${JSON.stringify(g.slice(0, 10))}`);
      assert.ok(!dev.destroyed);
    }
    assert.deepEqual(be.calls, ['realize'], 'the backend heard nothing');
    assert.equal(logs.length, 5, 'five lines, then silence');
    assert.match(logs[0] as string, /dom1 vbd\/51712: frontend wrote "banana" to its state node; ignored/);
    assert.match(logs[1] as string, /"99"/);
    assert.match(logs[4] as string, /further warnings for this device suppressed/);
    assert.deepEqual(fe.backendStates, [Initialising, InitWait]);
    // It still connects when the frontend talks sense.
    fe.state = -1; // the guest's idea of its state is garbage too
    fe.publishRing();
    fe.switchState(Initialised);
    await settle();
    assert.equal(dev.backendState, Connected);
  });

  it('parses states strictly', () => {
    assert.deepEqual(parseXenbusState('4'), { kind: 'state', state: 4 });
    assert.deepEqual(parseXenbusState('0'), { kind: 'state', state: 0 });
    for (const g of ['9', '04x', '', '4 ', '+4', '1e0', '0x4']) assert.equal(parseXenbusState(g).kind, 'garbage', g);
  });

  it('toolstack Closing while the frontend is inactive closes at once', async () => {
    const { dev, be, dom0, fe } = rig();
    dev.start(be, { tag: 'io' });
    await settle();
    ok(dom0.write(0, `${BE}/state`, String(Closing)));
    await settle();
    assert.equal(dev.backendState, Closed);
    assert.deepEqual(fe.backendStates, [Initialising, InitWait, Closing, Closed]);
  });

  it('toolstack Closed (libxl\'s QEMU timeout path) stops a connected backend', async () => {
    const r = await connected();
    ok(r.dom0.write(0, `${BE}/state`, String(Closed)));
    await settle();
    assert.equal(r.dev.backendState, Closed);
    assert.equal(r.be.calls.at(-1), 'disconnect');
    assert.ok(!r.dev.destroyed, 'still online');
  });

  it('a backend callback that throws costs that device only', async () => {
    const r = await connected();
    r.be.frontendChanged = () => {
      throw new Error('backend bug');
    };
    r.fe.switchState(Closing);
    await settle();
    assert.ok(r.dev.destroyed);
    assert.match(r.logs.join('\n'), /internal error handling a XenStore watch: backend bug; removing the device/);
    assert.equal(r.store.inspect(BE), undefined);
  });

  it('a frontend that reappears as Unknown (state removed) makes the backend close', async () => {
    const r = await connected();
    ok(r.fe.conn.rm(0, `${r.fe.nodename}/state`));
    await settle();
    assert.equal(r.dev.backendState, Closed);
    assert.deepEqual(r.be.calls.slice(-2), ['disconnect', 'frontend Unknown']);
    assert.ok(!r.dev.destroyed);
  });
});

describe('watch events during setup', () => {
  it('the first firing of each watch finds every node in place and cannot tear the device down', async () => {
    const store = new XenStore();
    ok(store.introduceDomain(0));
    ok(store.introduceDomain(GUEST));
    // See what the store delivers to the device's own connection.
    const delivered: string[] = [];
    const connect = store.connect.bind(store);
    store.connect = (domid, sink) => connect(domid, (path, token) => {
      if (token.startsWith('xenbus-')) delivered.push(path);
      sink(path, token);
    });
    const dev = createDevice(store, VBD_SPEC);
    const be = new FakeBackend();
    be.realizeImpl = (d) => {
      // start() armed the watches before realize, and each has fired once already: the events
      // wait in the queue, and what they will read is all there.
      assert.deepEqual(delivered, [`${FE}/state`, `${BE}/state`, `${BE}/online`]);
      assert.equal(d.readFrontend('state'), '1');
      assert.equal(d.readBackend('state'), '1');
      assert.equal(d.readBackend('online'), '1');
    };
    dev.start(be, { tag: 'io' });
    await settle();
    assert.ok(!dev.destroyed);
    assert.equal(dev.backendState, InitWait);
    assert.ok(store.inspect(FE) && store.inspect(BE));
    assert.deepEqual(be.calls, ['realize']);
  });

  it('a frontend racing ahead during realize is connected once, after InitWait', async () => {
    const r = rig();
    r.be.realizeImpl = () => {
      // The guest writes while the backend is still realizing (before InitWait).
      r.fe.write('scratch', 'x');
      r.fe.publishRing();
      r.fe.switchState(Initialised);
    };
    r.dev.start(r.be, { tag: 'io' });
    await settle();
    assert.deepEqual(r.be.calls, ['realize', 'connect Initialised', 'frontend Initialised']);
    assert.deepEqual(r.fe.backendStates, [Initialising, InitWait, Connected]);
  });

  it('the toolstack unplugging during realize wins over InitWait', async () => {
    const r = rig();
    r.be.realizeImpl = () => {
      ok(r.dom0.write(0, `${BE}/online`, '0'));
      ok(r.dom0.write(0, `${BE}/state`, String(Closing)));
    };
    r.dev.start(r.be, { tag: 'io' });
    await settle();
    assert.ok(r.dev.destroyed, 'closed and removed, never offered as InitWait');
    assert.ok(!r.fe.backendStates.includes(InitWait));
    assert.equal(r.store.inspect(BE), undefined);
  });

  it('a realize() that throws removes the device and reports the error', () => {
    const r = rig();
    r.be.realizeImpl = () => {
      throw new Error('no such disk image');
    };
    assert.throws(() => r.dev.start(r.be, { tag: 'io' }), /no such disk image/);
    assert.ok(r.dev.destroyed);
    assert.equal(r.store.inspect(BE), undefined);
    assert.match(r.logs.join('\n'), /backend realize failed: no such disk image/);
  });
});

describe('teardown', () => {
  it('destroyDevice removes both directories and empty parents, disconnects, and hears nothing more', async () => {
    const r = await connected();
    const callsBefore = r.be.calls.length;
    destroyDevice(r.dev);
    assert.deepEqual(r.be.calls.slice(callsBefore), ['disconnect']);
    assert.ok(r.dev.destroyed);
    for (const p of [FE, BE, '/local/domain/1/device', '/local/domain/0/backend']) assert.equal(r.store.inspect(p), undefined, p);
    assert.ok(r.store.inspect('/local/domain/1') && r.store.inspect('/local/domain/0'), 'the domains\' homes stay');
    // The guest keeps writing where its device was: nobody listens, nothing comes back.
    r.fe.write('state', String(Initialised));
    r.fe.write('state', String(Closed));
    ok(r.dom0.write(0, `${BE}/state`, '5'));
    await settle();
    assert.deepEqual(r.be.calls.slice(callsBefore), ['disconnect']);
    assert.deepEqual(r.store.inspect(BE)?.children, ['state'], 'only what dom0 wrote itself');
    assert.equal(value(r.store, `${BE}/state`), '5');
    destroyDevice(r.dev); // idempotent
    assert.deepEqual(r.be.calls.slice(callsBefore), ['disconnect']);
    assert.equal(r.dev.switchState(Connected), false);
    assert.equal(r.dev.backendPrintf('x', 1), false);
  });

  it('a pending connect is cancelled by destroy and its late success changes nothing', async () => {
    const r = rig();
    let release!: () => void;
    r.be.connectImpl = () => new Promise<void>((resolve) => (release = resolve));
    r.dev.start(r.be, { tag: 'io' });
    await settle();
    r.fe.publishRing();
    r.fe.switchState(Initialised);
    await settle();
    assert.ok(r.dev.connecting);
    const info = r.be.connects[0] as FrontendInfo;
    destroyDevice(r.dev);
    assert.equal(info.signal.aborted, true);
    assert.deepEqual(r.be.calls, ['realize', 'connect Initialised', 'frontend Initialised', 'disconnect']);
    release();
    await settle();
    assert.equal(r.store.inspect(BE), undefined, 'not resurrected by the late Connected');
    assert.deepEqual(r.fe.backendStates, [Initialising, InitWait]);
  });

  it('a frontend closing during connect cancels it; the late result is ignored', async () => {
    const r = rig();
    let finish!: (ok: boolean) => void;
    r.be.connectImpl = () => new Promise<void>((resolve, reject) => (finish = (good) => (good ? resolve() : reject(new Error('aborted')))));
    r.dev.start(r.be, { tag: 'io' });
    await settle();
    r.fe.publishRing();
    r.fe.switchState(Initialised);
    await settle();
    r.fe.switchState(Closing);
    await settle();
    assert.equal((r.be.connects[0] as FrontendInfo).signal.aborted, true);
    finish(false); // an aborted connect may reject: not a failure of the device
    await settle();
    assert.equal(r.dev.backendState, Closing);
    assert.deepEqual(r.fe.backendStates, [Initialising, InitWait, Closing]);
    assert.equal(r.logs.length, 0);
  });

  it('guest death: releasing the domain removes its frontend, and the device goes with it', async () => {
    const r = await connected();
    ok(r.store.releaseDomain(GUEST));
    await settle();
    assert.ok(r.dev.destroyed);
    assert.equal(r.be.calls.at(-1), 'disconnect');
    assert.equal(r.store.inspect(BE), undefined);
    assert.equal(r.store.inspect('/local/domain/0/backend'), undefined);
  });

  it('unplug: online=0 and Closing; the frontend closes; the device is removed', async () => {
    const r = await connected();
    const done = r.dev.unplug(5000);
    await settle();
    assert.equal(r.fe.readBackend('online'), '0');
    assert.equal(r.dev.backendState, Closing);
    assert.deepEqual(r.be.calls.slice(-1), ['disconnect']);
    // blkfront's blkback_changed(Closing): blkfront_closing → xenbus_frontend_closed.
    r.fe.switchState(Closing);
    await settle();
    r.fe.switchState(Closed);
    await settle();
    assert.equal(await done, 'closed');
    assert.ok(r.dev.destroyed);
    assert.equal(r.store.inspect(BE), undefined);
    assert.equal(r.store.inspect(FE), undefined);
    assert.deepEqual(r.fe.backendStates, [Initialising, InitWait, Connected, Closing, Closed]);
  });

  it('unplug of a device the guest never used closes at once; a frontend that never lets go is forced', async () => {
    const a = rig();
    a.dev.start(a.be, { tag: 'io' });
    await settle();
    assert.equal(await a.dev.unplug(5000), 'closed');
    assert.equal(a.store.inspect(BE), undefined);

    const b = await connected();
    assert.equal(await b.dev.unplug(30), 'forced');
    assert.ok(b.dev.destroyed);
    assert.equal(b.store.inspect(BE), undefined);
    assert.match(b.logs.join('\n'), /did not close within 30 ms/);
  });

  it('a failed connect is xenbus_dev_fatal: error node, log line, Closing', async () => {
    const r = rig();
    r.be.connectImpl = async () => {
      throw Object.assign(new Error('cannot map ring-ref 8'), { errno: -13 });
    };
    r.dev.start(r.be, { tag: 'io' });
    await settle();
    r.fe.publishRing();
    r.fe.switchState(Initialised);
    await settle();
    await settle();
    const errNode = '/local/domain/0/error/backend/vbd/1/51712/error';
    assert.equal(value(r.store, errNode), '13 connecting to the frontend failed: cannot map ring-ref 8');
    assert.equal(r.dev.backendState, Closing);
    assert.match(r.logs.join('\n'), /dom1 vbd\/51712: connecting to the frontend failed: cannot map ring-ref 8 \(error 13\)/);
    assert.deepEqual(r.be.calls.slice(-2), ['frontend Initialised', 'disconnect']);
    r.fe.switchState(Closed);
    await settle();
    assert.equal(r.dev.backendState, Closed);
    r.dev.destroy();
    assert.equal(r.store.inspect('/local/domain/0/error'), undefined, 'the error node goes with the device');
  });
});

describe('a frontend that never connects', () => {
  /** The guest's xenbus is up: Linux's manage.c has written its control/feature-* nodes. */
  const xenbusUp = (r: Rig) => ok(r.fe.conn.write(0, 'control/feature-poweroff', '1'));
  /** The first warning within a second; how long after start it says it waited. */
  const firstWarning = async (r: Rig): Promise<{ line: string; afterMs: number }> => {
    for (let i = 0; i < 100 && r.logs.length === 0; i++) await sleep(10);
    const line = r.logs[0] as string;
    assert.ok(line, 'a warning');
    return { line, afterMs: Number(/after (\d+) ms/.exec(line)?.[1]) };
  };

  it('names the Debian module that provides the frontend driver', async () => {
    const r = rig({ neverConnectedAfterMs: 20 });
    xenbusUp(r);
    r.dev.start(r.be, { tag: 'io' });
    const { line, afterMs } = await firstWarning(r);
    assert.equal(r.logs.length, 1);
    assert.match(line, /^xenbus: dom1 vbd\/51712: the guest has not connected it after \d+ ms\./);
    assert.ok(afterMs >= 40, `a period after the first look found its xenbus up (${afterMs} ms)`);
    assert.match(line, /xen-blkfront \(CONFIG_XEN_BLKDEV_FRONTEND; a module in linux-image-amd64/);
    assert.match(line, /modalias xen:vbd/);
    assert.match(line, /frontend state 1 \(Initialising\), backend 2 \(InitWait\)/);
    r.dev.destroy();
  });

  it('includes what the frontend reported in its error node', async () => {
    const r = rig({ neverConnectedAfterMs: 20 }, { type: 'vif', frontendDomid: GUEST, devid: 0, frontendNodes: { mac: '00:16:3e:00:00:01', handle: 0 } });
    xenbusUp(r);
    r.dev.start(r.be, { tag: 'io' });
    ok(r.fe.conn.write(0, 'error/device/vif/0/error', '12 allocating rx ring page'));
    await firstWarning(r);
    assert.match(r.logs[0] as string, /xen-netfront/);
    assert.match(r.logs[0] as string, /the frontend reported "12 allocating rx ring page"/);
    r.dev.destroy();
  });

  it('waits for a slow boot: the period counts from when the guest\'s xenbus is up, or five periods without it', async () => {
    // Timers fire in deadline order and each period is armed when the last one ran, so the sleep ends before a fifth period can.
    const slow = rig({ neverConnectedAfterMs: 20 });
    slow.dev.start(slow.be, { tag: 'io' });
    await sleep(70);
    assert.deepEqual(slow.logs, [], 'the guest is still booting (no control/feature-poweroff yet)');
    xenbusUp(slow);
    assert.ok((await firstWarning(slow)).afterMs >= 100, 'warned a full period after its xenbus came up');
    slow.dev.destroy();
    const other = rig({ neverConnectedAfterMs: 20 });
    other.dev.start(other.be, { tag: 'io' });
    assert.ok((await firstWarning(other)).afterMs >= 100, 'a guest that never shows its xenbus is still told, after five periods');
    other.dev.destroy();
  });

  it('stays quiet once the frontend has connected, or after teardown', async () => {
    const a = await connected({ neverConnectedAfterMs: 20 });
    const b = rig({ neverConnectedAfterMs: 20 });
    b.dev.start(b.be, { tag: 'io' });
    b.dev.destroy();
    await sleep(60);
    assert.deepEqual(a.logs, []);
    assert.deepEqual(b.logs, []);
    a.dev.destroy();
  });

  it('has a hint for every device type', () => {
    assert.match(neverConnectedHint('vkbd', 30_400), /after 30 s.*xen-kbdfront.*built into linux-image-amd64, absent from linux-image-cloud-amd64/);
    assert.match(neverConnectedHint('vfb', 1000), /xen-fbfront/);
    assert.match(neverConnectedHint('console', 1000), /hvc_xen \(CONFIG_HVC_XEN_FRONTEND/);
  });
});
