// src/xenstore/store.ts: the tree, permissions, transactions, watches, quotas and domains, with
// Xen's semantics (docs/misc/xenstore.txt, tools/xenstored). No guest, no wire.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import type { XsResult } from '../../src/xenstore/errors.js';
import { DOMID_SELF } from '../../src/xenstore/perms.js';
import { XenStore, type StoreConnection, type XenStoreOptions } from '../../src/xenstore/store.js';
import { bytesToLatin1 } from '../../src/xenstore/wire.js';

type Event = [path: string, token: string];

/** A store with dom0 and an introduced dom1 and dom2, each with a connection recording events. */
function setup(opts: XenStoreOptions = {}): {
  store: XenStore;
  dom0: StoreConnection;
  dom1: StoreConnection;
  dom2: StoreConnection;
  ev: { dom0: Event[]; dom1: Event[]; dom2: Event[] };
} {
  const store = new XenStore(opts);
  const ev = { dom0: [] as Event[], dom1: [] as Event[], dom2: [] as Event[] };
  const dom0 = store.connect(0, (p, t) => ev.dom0.push([p, t]));
  assertOk(store.introduceDomain(1));
  assertOk(store.introduceDomain(2));
  const dom1 = store.connect(1, (p, t) => ev.dom1.push([p, t]));
  const dom2 = store.connect(2, (p, t) => ev.dom2.push([p, t]));
  return { store, dom0, dom1, dom2, ev };
}

function assertOk<T>(r: XsResult<T>): T {
  if (!r.ok) assert.fail(`expected success, got ${r.failure}`);
  return r.value;
}

function assertFail(r: XsResult<unknown>, failure: string): void {
  assert.deepEqual(r, { ok: false, failure });
}

function readStr(c: StoreConnection, path: string, tx = 0): string {
  return bytesToLatin1(assertOk(c.read(tx, path)));
}

function drain(events: Event[]): Event[] {
  return events.splice(0, events.length);
}

describe('tree operations', () => {
  it('starts with /tool/xenstored and the special nodes (core.c setup_structure)', () => {
    const store = new XenStore();
    const dom0 = store.connect(0, () => {});
    assert.deepEqual(assertOk(dom0.directory(0, '/')), ['tool']);
    assert.deepEqual(assertOk(dom0.directory(0, '/tool')), ['xenstored']);
    assert.deepEqual(assertOk(dom0.getPerms(0, '/')), [{ domid: 0, perm: 'n' }]);
    assert.deepEqual(assertOk(dom0.getPerms(0, '@introduceDomain')), [{ domid: 0, perm: 'n' }]);
    assert.equal(assertOk(dom0.getPerms(0, '@releaseDomain')).length, 2);
  });

  it('write creates missing parents with empty values; read returns the raw value', () => {
    const { dom0 } = setup();
    assertOk(dom0.write(0, '/a/b/c', 'hello'));
    assert.equal(readStr(dom0, '/a/b/c'), 'hello');
    assert.equal(readStr(dom0, '/a/b'), '');
    assert.equal(readStr(dom0, '/a'), '');
    assert.deepEqual(assertOk(dom0.directory(0, '/a')), ['b']);
    const bin = Uint8Array.of(0, 1, 0, 255);
    assertOk(dom0.write(0, '/bin', bin));
    assert.deepEqual(assertOk(dom0.read(0, '/bin')), bin);
  });

  it('values are copied in and out', () => {
    const { dom0 } = setup();
    const v = Uint8Array.of(1, 2, 3);
    assertOk(dom0.write(0, '/v', v));
    v[0] = 9;
    const r = assertOk(dom0.read(0, '/v'));
    r[1] = 9;
    assert.deepEqual(assertOk(dom0.read(0, '/v')), Uint8Array.of(1, 2, 3));
  });

  it('directory lists children in creation order, a re-created child last', () => {
    const { dom0 } = setup();
    for (const n of ['z', 'a', 'm']) assertOk(dom0.write(0, `/d/${n}`, ''));
    assert.deepEqual(assertOk(dom0.directory(0, '/d')), ['z', 'a', 'm']);
    assertOk(dom0.rm(0, '/d/z'));
    assertOk(dom0.mkdir(0, '/d/z'));
    assert.deepEqual(assertOk(dom0.directory(0, '/d')), ['a', 'm', 'z']);
  });

  it('mkdir leaves an existing node and its value alone', () => {
    const { dom0 } = setup();
    assertOk(dom0.write(0, '/m', 'keep'));
    assertOk(dom0.mkdir(0, '/m'));
    assert.equal(readStr(dom0, '/m'), 'keep');
    assertOk(dom0.mkdir(0, '/m/n/o'));
    assert.deepEqual(assertOk(dom0.directory(0, '/m/n')), ['o']);
  });

  it('rm is recursive; rm of a missing node is fine if its parent exists, ENOENT if not; "/" is EINVAL', () => {
    const { dom0, store } = setup();
    assertOk(dom0.write(0, '/r/x/y', '1'));
    assertOk(dom0.write(0, '/r/x/z', '2'));
    assertOk(dom0.rm(0, '/r/x'));
    assertFail(dom0.read(0, '/r/x/y'), 'noEntry');
    assert.equal(store.inspect('/r/x'), undefined);
    assert.deepEqual(assertOk(dom0.directory(0, '/r')), []);
    assertOk(dom0.rm(0, '/r/nothere'));
    assertFail(dom0.rm(0, '/r/nothere/deeper'), 'noEntry');
    assertFail(dom0.rm(0, '/'), 'rmRoot');
  });

  it('read of a missing node is ENOENT', () => {
    const { dom0 } = setup();
    assertFail(dom0.read(0, '/nope'), 'noEntry');
    assertFail(dom0.directory(0, '/nope/x'), 'noEntry');
  });
});

describe('paths', () => {
  it('rejects bad characters, "//", trailing "/", empty, and "@" outside watches and perms', () => {
    const { dom0 } = setup();
    for (const bad of ['/a b', '/a//b', '/a/', '', '/a.b', '/ä', '@introduceDomain', '/a\0b']) {
      assertFail(dom0.write(0, bad, 'x'), 'badPath');
    }
    assertOk(dom0.write(0, '/A-z_0/9@x', 'fine'));
    assertOk(dom0.getPerms(0, '@releaseDomain'));
    assertOk(dom0.watch('@releaseDomain', 't'));
  });

  it('resolves relative paths against /local/domain/<domid>', () => {
    const { dom1, dom0 } = setup();
    assertOk(dom1.write(0, 'data/x', 'rel'));
    assert.equal(readStr(dom0, '/local/domain/1/data/x'), 'rel');
    assert.equal(readStr(dom1, '/local/domain/1/data/x'), 'rel');
    assertOk(dom0.write(0, 'name', 'Domain-0'));
    assert.equal(readStr(dom0, '/local/domain/0/name'), 'Domain-0');
  });

  it('limits the part after /local/domain/<id>/ to XENSTORE_REL_PATH_MAX (2048)', () => {
    const { dom1, dom0 } = setup();
    const seg = (n: number): string => Array.from({ length: n }, (_, i) => (i % 100 === 99 ? '/' : 'a')).join('');
    assertOk(dom1.write(0, seg(2048), ''));
    assertFail(dom1.write(0, seg(2049), ''), 'badPath');
    assertOk(dom0.write(0, `/${seg(2047)}`, ''));
    assertFail(dom0.write(0, `/${seg(2048)}`, ''), 'badPath');
  });
});

describe('permissions', () => {
  it('an unprivileged domain cannot read or write dom0 nodes, and cannot probe for them', () => {
    const { dom0, dom1 } = setup();
    assertOk(dom0.write(0, '/secret/key', 'k'));
    assertFail(dom1.read(0, '/secret/key'), 'denied');
    assertFail(dom1.write(0, '/secret/key', 'x'), 'denied');
    assertFail(dom1.directory(0, '/'), 'denied');
    // Missing under an unreadable parent: EACCES, not ENOENT (errno_from_parents).
    assertFail(dom1.read(0, '/secret/missing'), 'denied');
    assertFail(dom1.write(0, '/elsewhere', 'x'), 'denied');
    // Missing under its own home: ENOENT.
    assertFail(dom1.read(0, 'missing'), 'noEntry');
    assert.equal(readStr(dom0, '/secret/key'), 'k');
  });

  it('introduceDomain makes /local/domain/<id> owned by the domain, default no access', () => {
    const { dom0, dom1, dom2 } = setup();
    assert.deepEqual(assertOk(dom0.getPerms(0, '/local/domain/1')), [{ domid: 1, perm: 'n' }]);
    assertOk(dom1.write(0, 'x', '1'));
    assertFail(dom2.read(0, '/local/domain/1/x'), 'denied');
    assertFail(dom2.write(0, '/local/domain/1/y', '1'), 'denied');
  });

  it('nodes an unprivileged domain creates are its own and copy the parent ACL', () => {
    const { dom0, dom1, store } = setup();
    assertOk(dom0.setPerms(0, '/local/domain/1', [{ domid: 1, perm: 'n' }, { domid: 2, perm: 'r' }]));
    assertOk(dom1.write(0, 'device/vif/0/state', '1'));
    for (const p of ['device', 'device/vif', 'device/vif/0', 'device/vif/0/state']) {
      assert.deepEqual(store.inspect(`/local/domain/1/${p}`)?.perms, [{ domid: 1, perm: 'n' }, { domid: 2, perm: 'r' }], p);
    }
    // dom0 writing there keeps the inherited owner (privileged callers do not take ownership).
    assertOk(dom0.write(0, '/local/domain/1/control/shutdown', ''));
    assert.equal(store.inspect('/local/domain/1/control/shutdown')?.perms[0]?.domid, 1);
  });

  it('a guest creating under a node it may write (owned by dom0) owns the new nodes, ACL otherwise copied', () => {
    const { dom0, dom1, dom2, store } = setup();
    assertOk(dom0.mkdir(0, '/shared'));
    assertOk(dom0.setPerms(0, '/shared', [{ domid: 0, perm: 'r' }, { domid: 1, perm: 'b' }, { domid: 2, perm: 'n' }]));
    assertOk(dom1.write(0, '/shared/a/b', 'x'));
    for (const p of ['/shared/a', '/shared/a/b']) {
      assert.deepEqual(store.inspect(p)?.perms, [{ domid: 1, perm: 'r' }, { domid: 1, perm: 'b' }, { domid: 2, perm: 'n' }], p);
    }
    assert.equal(store.nodeCount(1), 3); // /local/domain/1 and the two new ones
    assertFail(dom2.read(0, '/shared/a/b'), 'denied');
    assertOk(dom1.setPerms(0, '/shared/a/b', [{ domid: 1, perm: 'n' }])); // it is the owner now
  });

  it('ACL entries grant read, write or both to other domains; the first entry is the default', () => {
    const { dom0, dom1, dom2 } = setup();
    assertOk(dom0.write(0, '/backend/vbd/1', 'b'));
    assertOk(dom0.setPerms(0, '/backend/vbd/1', [{ domid: 0, perm: 'n' }, { domid: 1, perm: 'r' }]));
    assert.equal(readStr(dom1, '/backend/vbd/1'), 'b');
    assertFail(dom1.write(0, '/backend/vbd/1', 'x'), 'denied');
    assertFail(dom2.read(0, '/backend/vbd/1'), 'denied');
    assertOk(dom0.setPerms(0, '/backend/vbd/1', [{ domid: 0, perm: 'r' }, { domid: 1, perm: 'b' }, { domid: 2, perm: 'n' }]));
    assertOk(dom1.write(0, '/backend/vbd/1', 'from1'));
    assertFail(dom2.read(0, '/backend/vbd/1'), 'denied'); // its own entry beats the default
    assertOk(dom0.setPerms(0, '/backend/vbd/1', [{ domid: 0, perm: 'r' }]));
    assert.equal(readStr(dom2, '/backend/vbd/1'), 'from1'); // default r
  });

  it('only the owner sets perms; only dom0 changes the owner (EPERM)', () => {
    const { dom0, dom1, dom2 } = setup();
    assertOk(dom1.write(0, 'mine', ''));
    assertOk(dom0.setPerms(0, '/local/domain/1', [{ domid: 1, perm: 'n' }, { domid: 2, perm: 'b' }]));
    assertOk(dom1.write(0, 'shared', ''));
    assertFail(dom2.setPerms(0, '/local/domain/1/shared', [{ domid: 1, perm: 'b' }]), 'denied'); // w but not owner
    assertOk(dom1.setPerms(0, 'mine', [{ domid: 1, perm: 'r' }]));
    assertFail(dom1.setPerms(0, 'mine', [{ domid: 2, perm: 'n' }]), 'ownerChange');
    assertOk(dom0.setPerms(0, '/local/domain/1/mine', [{ domid: 2, perm: 'n' }]));
    assertFail(dom1.setPerms(0, 'mine', [{ domid: 1, perm: 'n' }]), 'denied');
    assertFail(dom1.setPerms(0, 'mine', []), 'badPerms');
  });

  it('SET_TARGET lets a domain act for its target', () => {
    const { store, dom1, dom2 } = setup();
    assertOk(dom1.write(0, 'x', 'v'));
    assertFail(dom2.read(0, '/local/domain/1/x'), 'denied');
    assertOk(store.setTarget(2, 1));
    assert.equal(readStr(dom2, '/local/domain/1/x'), 'v');
    assertFail(store.setTarget(2, 7), 'noDomain');
  });
});

describe('transactions', () => {
  it('reads and writes inside see the transaction; others see nothing until commit', () => {
    const { dom0, dom1 } = setup();
    assertOk(dom1.write(0, 'a', 'old'));
    const tx = assertOk(dom1.transactionStart());
    assert.notEqual(tx, 0);
    assertOk(dom1.write(tx, 'a', 'new'));
    assertOk(dom1.write(tx, 'b/c', 'made'));
    assert.equal(readStr(dom1, 'a', tx), 'new');
    assert.equal(readStr(dom1, 'b/c', tx), 'made');
    assert.equal(readStr(dom1, 'a'), 'old');
    assertFail(dom0.read(0, '/local/domain/1/b/c'), 'noEntry');
    assertOk(dom1.transactionEnd(tx, true));
    assert.equal(readStr(dom0, '/local/domain/1/a'), 'new');
    assert.equal(readStr(dom0, '/local/domain/1/b/c'), 'made');
    assertFail(dom1.transactionEnd(tx, true), 'noTransaction');
  });

  it('a transaction reads the store as it was at its start', () => {
    const { dom0 } = setup();
    assertOk(dom0.write(0, '/s', '1'));
    const tx = assertOk(dom0.transactionStart());
    assertOk(dom0.write(0, '/s', '2'));
    assert.equal(readStr(dom0, '/s', tx), '1');
  });

  it('commit fails with EAGAIN when a node it read changed meanwhile', () => {
    const { dom0, dom1 } = setup();
    assertOk(dom1.write(0, 'state', '1'));
    const tx = assertOk(dom1.transactionStart());
    assert.equal(readStr(dom1, 'state', tx), '1');
    assertOk(dom1.write(tx, 'other', 'x'));
    assertOk(dom0.write(0, '/local/domain/1/state', '2'));
    assertFail(dom1.transactionEnd(tx, true), 'conflict');
    assertFail(dom1.read(0, 'other'), 'noEntry'); // nothing applied
    assertFail(dom1.transactionEnd(tx, false), 'noTransaction'); // and the transaction is gone
  });

  it('commit fails with EAGAIN when a node it wrote changed, or one it found absent appeared', () => {
    const { dom0 } = setup();
    assertOk(dom0.write(0, '/w', '0'));
    const t1 = assertOk(dom0.transactionStart());
    assertOk(dom0.write(t1, '/w', '1'));
    assertOk(dom0.write(0, '/w', 'other'));
    assertFail(dom0.transactionEnd(t1, true), 'conflict');
    assert.equal(readStr(dom0, '/w'), 'other');

    const t2 = assertOk(dom0.transactionStart());
    assertFail(dom0.read(t2, '/appears'), 'noEntry');
    assertOk(dom0.write(0, '/appears', 'x'));
    assertFail(dom0.transactionEnd(t2, true), 'conflict');

    const t3 = assertOk(dom0.transactionStart());
    assert.equal(readStr(dom0, '/w', t3), 'other');
    assertOk(dom0.rm(0, '/w'));
    assertFail(dom0.transactionEnd(t3, true), 'conflict');
  });

  it('unrelated changes made meanwhile survive the commit', () => {
    const { dom0 } = setup();
    assertOk(dom0.write(0, '/t/y/z', 'z0'));
    const tx = assertOk(dom0.transactionStart());
    assertOk(dom0.write(tx, '/t/x', 'tx'));
    assertOk(dom0.rm(tx, '/t/y/z'));
    assertOk(dom0.write(0, '/t/y/w', 'outside')); // changes /t/y, which the tx also changed...
    assertFail(dom0.transactionEnd(tx, true), 'conflict'); // ...so this one conflicts

    const tx2 = assertOk(dom0.transactionStart());
    assertOk(dom0.write(tx2, '/t/x', 'tx'));
    assertOk(dom0.write(0, '/t/y/w', 'outside2')); // /t/y is not the tx's business
    assertOk(dom0.write(0, '/u', 'u'));
    assertOk(dom0.transactionEnd(tx2, true));
    assert.equal(readStr(dom0, '/t/x'), 'tx');
    assert.equal(readStr(dom0, '/t/y/w'), 'outside2');
    assert.equal(readStr(dom0, '/t/y/z'), 'z0');
    assert.equal(readStr(dom0, '/u'), 'u');
    assert.deepEqual(assertOk(dom0.directory(0, '/t')), ['y', 'x']);
  });

  it('rm and re-create inside a transaction replace the subtree', () => {
    const { dom0 } = setup();
    assertOk(dom0.write(0, '/q/a/old', '1'));
    const tx = assertOk(dom0.transactionStart());
    assertOk(dom0.rm(tx, '/q/a'));
    assertOk(dom0.write(tx, '/q/a/new', '2'));
    assertOk(dom0.transactionEnd(tx, true));
    assert.deepEqual(assertOk(dom0.directory(0, '/q/a')), ['new']);
  });

  it('abort discards everything', () => {
    const { dom0 } = setup();
    const tx = assertOk(dom0.transactionStart());
    assertOk(dom0.write(tx, '/gone', 'x'));
    assertOk(dom0.transactionEnd(tx, false));
    assertFail(dom0.read(0, '/gone'), 'noEntry');
  });

  it('unknown ids are ENOENT, nesting is EBUSY, ids are per connection and never 0', () => {
    const { dom0, dom1 } = setup();
    assertFail(dom0.read(99, '/'), 'noTransaction');
    const tx = assertOk(dom0.transactionStart());
    assertFail(dom0.transactionStart(tx), 'nestedTransaction');
    assertFail(dom0.transactionStart(12345), 'noTransaction');
    assertFail(dom1.read(tx, 'x'), 'noTransaction');
    assertFail(dom0.transactionEnd(0, true), 'noTransaction');
    const tx2 = assertOk(dom0.transactionStart());
    assert.notEqual(tx2, tx);
  });

  it('watches fire at commit, not before, and not on abort', () => {
    const { dom0, ev } = setup();
    assertOk(dom0.watch('/wt', 'tok'));
    drain(ev.dom0);
    const tx = assertOk(dom0.transactionStart());
    assertOk(dom0.write(tx, '/wt/a', '1'));
    assertOk(dom0.write(tx, '/wt/a', '2'));
    assertOk(dom0.write(tx, '/wt/b', '1'));
    assert.deepEqual(ev.dom0, []);
    assertOk(dom0.transactionEnd(tx, true));
    assert.deepEqual(drain(ev.dom0), [['/wt/a', 'tok'], ['/wt/b', 'tok']]);
    const tx2 = assertOk(dom0.transactionStart());
    assertOk(dom0.write(tx2, '/wt/c', '1'));
    assertOk(dom0.transactionEnd(tx2, false));
    assert.deepEqual(ev.dom0, []);
  });

  it('RESET_WATCHES drops the transactions too', () => {
    const { dom0 } = setup();
    const tx = assertOk(dom0.transactionStart());
    dom0.resetWatches();
    assertFail(dom0.transactionEnd(tx, true), 'noTransaction');
  });
});

describe('watches', () => {
  it('fires once on registration with the path as given', () => {
    const { dom1, ev } = setup();
    assertOk(dom1.watch('device', 'rel'));
    assertOk(dom1.watch('/local/domain/1/device', 'abs'));
    assertOk(dom1.watch('@releaseDomain', 'spec'));
    assert.deepEqual(drain(ev.dom1), [
      ['device', 'rel'],
      ['/local/domain/1/device', 'abs'],
      ['@releaseDomain', 'spec'],
    ]);
  });

  it('fires for writes to the path and below, not above or beside; relative watches get relative paths', () => {
    const { dom1, ev } = setup();
    assertOk(dom1.watch('device/vif', 'rel'));
    assertOk(dom1.watch('/local/domain/1/device/vif', 'abs'));
    drain(ev.dom1);
    assertOk(dom1.write(0, 'device/vif/0/state', '4'));
    assertOk(dom1.write(0, 'device/vbd/0/state', '4'));
    assertOk(dom1.write(0, 'device', 'x'));
    assertOk(dom1.write(0, 'device/vifx', 'x'));
    assertOk(dom1.write(0, 'device/vif', 'y'));
    assert.deepEqual(drain(ev.dom1), [
      ['device/vif/0/state', 'rel'],
      ['/local/domain/1/device/vif/0/state', 'abs'],
      ['device/vif', 'rel'],
      ['/local/domain/1/device/vif', 'abs'],
    ]);
  });

  it('rm reports the removed path to watches above it and the watch path to watches below it', () => {
    const { dom0, ev } = setup();
    assertOk(dom0.write(0, '/p/q/r/s', '1'));
    assertOk(dom0.watch('/p', 'above'));
    assertOk(dom0.watch('/p/q', 'at'));
    assertOk(dom0.watch('/p/q/r/s', 'below'));
    assertOk(dom0.watch('/p/q/never/existed', 'ghost'));
    assertOk(dom0.watch('/other', 'beside'));
    drain(ev.dom0);
    assertOk(dom0.rm(0, '/p/q'));
    assert.deepEqual(drain(ev.dom0), [
      ['/p/q', 'above'],
      ['/p/q', 'at'],
      ['/p/q/r/s', 'below'],
      ['/p/q/never/existed', 'ghost'],
    ]);
    assertOk(dom0.rm(0, '/p/q')); // already gone: no event
    assert.deepEqual(ev.dom0, []);
  });

  it('relative watch below a removed node gets its own relative path', () => {
    const { dom0, dom1, ev } = setup();
    assertOk(dom1.write(0, 'device/vif/0/state', '1'));
    assertOk(dom1.watch('device/vif/0/state', 'st'));
    drain(ev.dom1);
    assertOk(dom0.rm(0, '/local/domain/1/device'));
    assert.deepEqual(drain(ev.dom1), [['device/vif/0/state', 'st']]);
  });

  it('fires for mkdir of a new node and set_perms, not for mkdir of an existing node', () => {
    const { dom0, ev } = setup();
    assertOk(dom0.watch('/m', 'w'));
    drain(ev.dom0);
    assertOk(dom0.mkdir(0, '/m/n'));
    assertOk(dom0.mkdir(0, '/m/n'));
    assertOk(dom0.setPerms(0, '/m/n', [{ domid: 0, perm: 'r' }]));
    assert.deepEqual(drain(ev.dom0), [['/m/n', 'w'], ['/m/n', 'w']]);
  });

  it('a watch on "/" sees everything but special events', () => {
    const { dom0, store, ev } = setup();
    assertOk(dom0.watch('/', 'root'));
    drain(ev.dom0);
    assertOk(dom0.write(0, '/x', ''));
    assertOk(store.introduceDomain(3));
    assert.deepEqual(drain(ev.dom0), [['/x', 'root'], ['/local/domain/3', 'root']]);
  });

  it('duplicate path+token is EEXIST; unwatch removes; unknown unwatch is ENOENT', () => {
    const { dom0, ev } = setup();
    assertOk(dom0.watch('/d', 't'));
    assertFail(dom0.watch('/d', 't'), 'watchExists');
    assertOk(dom0.watch('/d', 't2'));
    assertOk(dom0.unwatch('/d', 't'));
    assertFail(dom0.unwatch('/d', 't'), 'noWatch');
    assertFail(dom0.watch('bad path', 't'), 'badPath');
    drain(ev.dom0);
    assertOk(dom0.write(0, '/d', ''));
    assert.deepEqual(drain(ev.dom0), [['/d', 't2']]);
  });

  it('relative and absolute spellings are the same watch for unwatch', () => {
    const { dom1, ev } = setup();
    assertOk(dom1.watch('x', 't'));
    assertFail(dom1.watch('/local/domain/1/x', 't'), 'watchExists');
    assertOk(dom1.unwatch('/local/domain/1/x', 't'));
    drain(ev.dom1);
    assertOk(dom1.write(0, 'x', ''));
    assert.deepEqual(ev.dom1, []);
  });

  it('events respect permissions: no event for nodes the watcher cannot read', () => {
    const { dom0, dom1, dom2, ev } = setup();
    assertOk(dom2.watch('/local/domain/1', 'spy'));
    assertOk(dom2.watch('/', 'root'));
    drain(ev.dom2);
    assertOk(dom1.write(0, 'private', 'x'));
    assert.deepEqual(ev.dom2, []);
    assertOk(dom1.setPerms(0, 'private', [{ domid: 1, perm: 'n' }, { domid: 2, perm: 'r' }]));
    assert.deepEqual(drain(ev.dom2), [['/local/domain/1/private', 'spy'], ['/local/domain/1/private', 'root']]);
    // Losing read access still tells about that change (old permissions count).
    assertOk(dom1.setPerms(0, 'private', [{ domid: 1, perm: 'n' }]));
    assert.equal(drain(ev.dom2).length, 2);
    assertOk(dom0.write(0, '/local/domain/1/private', 'y'));
    assert.deepEqual(ev.dom2, []);
  });

  it('@introduceDomain goes to dom0 only; @releaseDomain to everyone who watches it', () => {
    const { store, dom1, dom0, ev } = setup();
    assertOk(dom0.watch('@introduceDomain', 'i0'));
    assertOk(dom0.watch('@releaseDomain', 'r0'));
    assertOk(dom1.watch('@introduceDomain', 'i1'));
    assertOk(dom1.watch('@releaseDomain', 'r1'));
    drain(ev.dom0);
    drain(ev.dom1);
    assertOk(store.introduceDomain(5));
    assert.deepEqual(drain(ev.dom0), [['@introduceDomain', 'i0']]);
    assert.deepEqual(drain(ev.dom1), []);
    assertOk(store.releaseDomain(5));
    assert.deepEqual(drain(ev.dom0), [['@releaseDomain', 'r0']]);
    assert.deepEqual(drain(ev.dom1), [['@releaseDomain', 'r1']]);
    // dom0 can let a domain see @introduceDomain.
    assertOk(dom0.setPerms(0, '@introduceDomain', [{ domid: 0, perm: 'n' }, { domid: 1, perm: 'r' }]));
    assertOk(store.introduceDomain(6));
    assert.deepEqual(drain(ev.dom1), [['@introduceDomain', 'i1']]);
  });
});

describe('quotas', () => {
  it('nodes per domain: ENOSPC, counting created parents; dom0 unlimited', () => {
    const { store, dom1, dom0 } = setup({ quota: { nodesPerDomain: 5 } });
    assert.equal(store.nodeCount(1), 1); // /local/domain/1
    assertOk(dom1.write(0, 'a/b', '')); // 3
    assertFail(dom1.write(0, 'c/d/e', ''), 'quotaNodes'); // would be 6
    assertFail(dom1.read(0, 'c'), 'noEntry'); // nothing half-made
    assertOk(dom1.write(0, 'c/d', '')); // 5
    assertFail(dom1.mkdir(0, 'f'), 'quotaNodes');
    assertOk(dom1.write(0, 'a/b', 'overwrite is not a new node'));
    assertOk(dom1.rm(0, 'c'));
    assert.equal(store.nodeCount(1), 3);
    assertOk(dom1.mkdir(0, 'f'));
    for (let i = 0; i < 20; i++) assertOk(dom0.write(0, `/many/${i}`, ''));
  });

  it('nodes per domain also holds for transactions, checked again at commit', () => {
    const { store, dom1 } = setup({ quota: { nodesPerDomain: 4 } });
    assertOk(dom1.mkdir(0, 'a'));
    assertOk(dom1.mkdir(0, 'x')); // 3 with /local/domain/1
    const tx = assertOk(dom1.transactionStart());
    assertOk(dom1.write(tx, 'a/b', '')); // 4 in tx
    assertFail(dom1.write(tx, 'a/c', ''), 'quotaNodes');
    const tx2 = assertOk(dom1.transactionStart());
    assertOk(dom1.write(tx2, 'x/y', '')); // 4 in tx2, no conflict with tx
    assertOk(dom1.transactionEnd(tx, true));
    assert.equal(store.nodeCount(1), 4);
    assertFail(dom1.transactionEnd(tx2, true), 'quotaNodes');
    assertFail(dom1.read(0, 'x/y'), 'noEntry');
  });

  it('node size: ENOSPC past the quota for guests, fine for dom0', () => {
    const { dom1, dom0 } = setup({ quota: { nodeSize: 100 } });
    // 16-byte header + 8 per ACL entry (1) + value
    assertOk(dom1.write(0, 'v', new Uint8Array(76)));
    assertFail(dom1.write(0, 'v', new Uint8Array(77)), 'quotaNodeSize');
    assertFail(dom1.write(0, 'w', new Uint8Array(77)), 'quotaNodeSize');
    assertFail(dom1.read(0, 'w'), 'noEntry');
    assertOk(dom0.write(0, '/local/domain/1/v', new Uint8Array(1000)));
  });

  it('watches per connection: E2BIG (Xen 4.17); transactions per connection: ENOSPC', () => {
    const { dom1, dom0 } = setup({ quota: { watchesPerConnection: 3, transactionsPerConnection: 2 } });
    for (const t of ['a', 'b', 'c']) assertOk(dom1.watch('x', t));
    assertFail(dom1.watch('x', 'd'), 'quotaWatches');
    assertOk(dom1.unwatch('x', 'a'));
    assertOk(dom1.watch('x', 'd'));
    const t1 = assertOk(dom1.transactionStart());
    assertOk(dom1.transactionStart());
    assertFail(dom1.transactionStart(), 'quotaTransactions');
    assertOk(dom1.transactionEnd(t1, false));
    assertOk(dom1.transactionStart());
    for (const t of ['a', 'b', 'c', 'd', 'e']) assertOk(dom0.watch('x', t));
  });

  it('permissions per node: ENOSPC', () => {
    const { dom1 } = setup({ quota: { permsPerNode: 2 } });
    assertOk(dom1.write(0, 'p', ''));
    assertOk(dom1.setPerms(0, 'p', [{ domid: 1, perm: 'n' }, { domid: 2, perm: 'r' }]));
    assertFail(dom1.setPerms(0, 'p', [{ domid: 1, perm: 'n' }, { domid: 2, perm: 'r' }, { domid: 3, perm: 'r' }]), 'quotaPerms');
  });
});

describe('domains', () => {
  it('introduce is idempotent and refuses reserved domids', () => {
    const { store } = setup();
    assert.equal(assertOk(store.introduceDomain(1)), false);
    assert.equal(store.isDomainIntroduced(1), true);
    assertFail(store.introduceDomain(DOMID_SELF), 'badDomid');
    assertFail(store.introduceDomain(-1), 'badDomid');
  });

  it('release removes what the domain owns, strips its ACL entries, closes its connections', () => {
    const { store, dom0, dom1, ev } = setup();
    assertOk(dom1.write(0, 'device/vif/0/state', '4'));
    assertOk(dom0.write(0, '/backend/vif/1/0/state', '4'));
    assertOk(dom0.setPerms(0, '/backend/vif/1/0', [{ domid: 0, perm: 'n' }, { domid: 1, perm: 'r' }]));
    assertOk(dom1.watch('device', 'mine'));
    assertOk(dom0.watch('/local/domain/1/device/vif/0', 'fe'));
    assertOk(dom0.watch('/local/domain', 'doms'));
    drain(ev.dom0);
    drain(ev.dom1);

    assertOk(store.releaseDomain(1));
    assert.equal(store.inspect('/local/domain/1'), undefined);
    assert.deepEqual(store.inspect('/backend/vif/1/0')?.perms, [{ domid: 0, perm: 'n' }]);
    assert.equal(store.nodeCount(1), 0);
    assert.equal(store.isDomainIntroduced(1), false);
    assert.equal(dom1.closed, true);
    assert.deepEqual(ev.dom1, []);
    // Watch order is registration order; the watch below the removed node gets its own path.
    assert.deepEqual(drain(ev.dom0), [
      ['/local/domain/1/device/vif/0', 'fe'],
      ['/local/domain/1', 'doms'],
    ]);
    assertFail(store.releaseDomain(1), 'noDomain');
    assertFail(store.releaseDomain(0), 'badDomid');
    assert.throws(() => dom1.read(0, '/'));
  });
});
