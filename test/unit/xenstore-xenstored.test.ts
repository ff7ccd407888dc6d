// src/xenstore/xenstored.ts: requests in bytes, replies and events out in bytes, for every message
// type a Linux 6.1 guest and Debian's xenstore-utils send, and a corpus of malformed input that
// must leave the connection working and the store untouched.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { XenStore } from '../../src/xenstore/store.js';
import {
  bytesToLatin1,
  latin1,
  xsRequest,
  XsParser,
  xsTypeName,
  XS_CONTROL,
  XS_DIRECTORY,
  XS_DIRECTORY_PART,
  XS_ERROR,
  XS_GET_DOMAIN_PATH,
  XS_GET_PERMS,
  XS_GET_QUOTA,
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
  XS_WATCH_EVENT,
  XS_WRITE,
  type XsPacket,
} from '../../src/xenstore/wire.js';
import { XenStored, type Connection, type XenStoredOptions } from '../../src/xenstore/xenstored.js';

/** A client: sends requests as bytes, keeps every packet the daemon sent back. */
class Client {
  readonly out: XsPacket[] = [];
  readonly raw: Uint8Array[] = [];
  readonly conn: Connection;
  readonly errors: string[] = [];
  #parser = new XsParser();
  #reqId = 100;

  constructor(d: XenStored, domid: number, readonly chunk = 0) {
    this.conn = d.connect(
      domid,
      (b) => {
        this.raw.push(b);
        for (const r of this.#parser.feed(b)) {
          assert.equal(r.kind, 'packet');
          if (r.kind === 'packet') this.out.push(r.packet);
        }
      },
      { onError: (e) => this.errors.push(e) },
    );
  }

  sendBytes(b: Uint8Array): void {
    if (this.chunk > 0) for (let i = 0; i < b.length; i += this.chunk) this.conn.receive(b.subarray(i, i + this.chunk));
    else this.conn.receive(b);
  }

  /** Send one request; return everything the daemon sent in response (reply and events). */
  send(type: number, payload: Uint8Array | string, txId = 0): XsPacket[] {
    const reqId = this.#reqId++;
    const p = typeof payload === 'string' ? latin1(payload) : payload;
    this.sendBytes(xsRequest.packet(type, reqId, txId, p));
    return this.out.splice(0);
  }

  /** The single reply to a request as "TYPE payload", asserting req_id/tx_id echo. */
  req(type: number, payload: Uint8Array | string, txId = 0): string {
    const reqId = this.#reqId;
    const got = this.send(type, payload, txId).filter((p) => p.type !== XS_WATCH_EVENT);
    assert.equal(got.length, 1, `one reply to ${xsTypeName(type)}`);
    const r = got[0] as XsPacket;
    assert.equal(r.reqId, reqId);
    assert.equal(r.txId, txId);
    return `${xsTypeName(r.type)} ${bytesToLatin1(r.payload)}`;
  }
}

function setup(opts: XenStoredOptions = {}): { d: XenStored; dom0: Client; dom1: Client } {
  const d = new XenStored(opts);
  const dom0 = new Client(d, 0);
  assert.ok(d.introduceDomain(1).ok);
  const dom1 = new Client(d, 1);
  return { d, dom0, dom1 };
}

/** Every node with value, ACL and generation, plus the store's generation counter. */
function dumpStore(store: XenStore): string {
  const lines: string[] = [`generation ${store.generation}`];
  const walk = (p: string): void => {
    const n = store.inspect(p);
    if (!n) return;
    lines.push(`${p} ${JSON.stringify(bytesToLatin1(n.value))} ${JSON.stringify(n.perms)} ${n.generation}`);
    for (const c of n.children) walk(p === '/' ? `/${c}` : `${p}/${c}`);
  };
  walk('/');
  for (const s of ['@introduceDomain', '@releaseDomain']) lines.push(`${s} ${JSON.stringify(store.inspect(s)?.perms)}`);
  return lines.join('\n');
}

const W = (path: string, value: string): Uint8Array => xsRequest.write(path, value);

describe('xenstored: the operations a guest uses', () => {
  for (const chunk of [0, 1, 7]) {
    it(`READ, WRITE, MKDIR, DIRECTORY, RM, GET_PERMS (chunks of ${chunk || 'whole'})`, () => {
      const d = new XenStored();
      assert.ok(d.introduceDomain(1).ok);
      const c = new Client(d, 1, chunk);
      assert.equal(c.req(XS_WRITE, W('device/vif/0/state', '1')), 'WRITE OK\0');
      assert.equal(c.req(XS_READ, 'device/vif/0/state\0'), 'READ 1');
      assert.equal(c.req(XS_MKDIR, 'device/vbd\0'), 'MKDIR OK\0');
      assert.equal(c.req(XS_DIRECTORY, 'device\0'), 'DIRECTORY vif\0vbd\0');
      assert.equal(c.req(XS_DIRECTORY, 'device/vbd\0'), 'DIRECTORY ');
      assert.equal(c.req(XS_GET_PERMS, 'device\0'), 'GET_PERMS n1\0');
      assert.equal(c.req(XS_RM, 'device\0'), 'RM OK\0');
      assert.equal(c.req(XS_READ, 'device/vif/0/state\0'), 'ERROR ENOENT\0');
    });
  }

  it('reply bytes are exact: READ of a value is the value, no NUL', () => {
    const { dom0 } = setup();
    dom0.send(XS_WRITE, W('/k', 'v'));
    dom0.sendBytes(xsRequest.packet(XS_READ, 0x01020304, 0, xsRequest.path('/k')));
    assert.equal(Buffer.from(dom0.raw.at(-1) as Uint8Array).toString('hex'), '02000000' + '04030201' + '00000000' + '01000000' + '76');
  });

  it('WATCH: "OK" first, then the initial event; events on change; UNWATCH', () => {
    const { dom1 } = setup();
    const got = dom1.send(XS_WATCH, xsRequest.watch('device', 'FFFF8880'));
    assert.deepEqual(
      got.map((p) => [xsTypeName(p.type), p.reqId, bytesToLatin1(p.payload)]),
      [
        ['WATCH', 100, 'OK\0'],
        ['WATCH_EVENT', 0, 'device\0FFFF8880\0'],
      ],
    );
    // The writer's own event comes before its reply, as xenstored queues it.
    const w = dom1.send(XS_WRITE, W('device/vif', ''));
    assert.deepEqual(
      w.map((p) => [xsTypeName(p.type), bytesToLatin1(p.payload)]),
      [
        ['WATCH_EVENT', 'device/vif\0FFFF8880\0'],
        ['WRITE', 'OK\0'],
      ],
    );
    assert.equal(dom1.req(XS_UNWATCH, xsRequest.watch('device', 'FFFF8880')), 'UNWATCH OK\0');
    assert.equal(dom1.send(XS_WRITE, W('device/vbd', '')).length, 1);
    assert.equal(dom1.req(XS_UNWATCH, xsRequest.watch('device', 'FFFF8880')), 'ERROR ENOENT\0');
  });

  it('watch events from other connections arrive through the watcher\'s send', () => {
    const { dom0, dom1 } = setup();
    dom0.send(XS_WATCH, xsRequest.watch('/local/domain/1/device', 'be'));
    dom1.send(XS_WRITE, W('device/vif/0/state', '3'));
    const ev = dom0.out.splice(0);
    assert.deepEqual(
      ev.map((p) => [p.type, p.reqId, p.txId, bytesToLatin1(p.payload)]),
      [[XS_WATCH_EVENT, 0, 0, '/local/domain/1/device/vif/0/state\0be\0']],
    );
  });

  it('transactions: start returns an id; EAGAIN on conflict; tx_id checked', () => {
    const { dom0, dom1 } = setup();
    dom1.send(XS_WRITE, W('x', '1'));
    const start = dom1.req(XS_TRANSACTION_START, xsRequest.transactionStart());
    assert.match(start, /^TRANSACTION_START [1-9][0-9]*\0$/);
    const tx = Number(start.slice('TRANSACTION_START '.length, -1));
    assert.equal(dom1.req(XS_READ, 'x\0', tx), 'READ 1');
    assert.equal(dom1.req(XS_WRITE, W('y', '2'), tx), 'WRITE OK\0');
    assert.equal(dom1.req(XS_READ, 'y\0'), 'ERROR ENOENT\0');
    dom0.send(XS_WRITE, W('/local/domain/1/x', 'changed'));
    assert.equal(dom1.req(XS_TRANSACTION_END, 'T\0', tx), 'ERROR EAGAIN\0');
    assert.equal(dom1.req(XS_TRANSACTION_END, 'T\0', tx), 'ERROR ENOENT\0');
    assert.equal(dom1.req(XS_READ, 'x\0', 77), 'ERROR ENOENT\0');
    assert.equal(dom1.req(XS_TRANSACTION_END, 'T\0', 0), 'ERROR ENOENT\0');

    const tx2 = Number(dom1.req(XS_TRANSACTION_START, '\0').slice(18, -1));
    assert.equal(dom1.req(XS_TRANSACTION_START, '\0', tx2), 'ERROR EBUSY\0');
    assert.equal(dom1.req(XS_TRANSACTION_END, 'X\0', tx2), 'ERROR EINVAL\0');
    assert.equal(dom1.req(XS_WRITE, W('y', '2'), tx2), 'WRITE OK\0');
    assert.equal(dom1.req(XS_TRANSACTION_END, 'T\0', tx2), 'TRANSACTION_END OK\0');
    assert.equal(dom1.req(XS_READ, 'y\0'), 'READ 2');
  });

  it('WATCH and UNWATCH ignore tx_id', () => {
    const { dom1 } = setup();
    const got = dom1.send(XS_WATCH, xsRequest.watch('a', 't'), 4242);
    assert.equal(xsTypeName((got[0] as XsPacket).type), 'WATCH');
  });

  it('GET_DOMAIN_PATH, SET_PERMS, RESET_WATCHES', () => {
    const { dom1 } = setup();
    assert.equal(dom1.req(XS_GET_DOMAIN_PATH, '7\0'), 'GET_DOMAIN_PATH /local/domain/7\0');
    dom1.send(XS_WRITE, W('p', ''));
    assert.equal(dom1.req(XS_SET_PERMS, xsRequest.setPerms('p', ['r1', 'b0', 'w3'])), 'SET_PERMS OK\0');
    assert.equal(dom1.req(XS_GET_PERMS, 'p\0'), 'GET_PERMS r1\0b0\0w3\0');
    assert.equal(dom1.req(XS_SET_PERMS, xsRequest.setPerms('p', ['n2'])), 'ERROR EPERM\0');
    dom1.send(XS_WATCH, xsRequest.watch('p', 't'));
    assert.equal(dom1.req(XS_RESET_WATCHES, '\0'), 'RESET_WATCHES OK\0');
    assert.equal(dom1.send(XS_WRITE, W('p', 'x')).length, 1); // no event any more
  });

  it('DIRECTORY_PART walks a long child list in chunks', () => {
    const { dom0, d } = setup();
    const names: string[] = [];
    for (let i = 0; i < 500; i++) {
      names.push(`node-${i}`);
      dom0.send(XS_MKDIR, `/big/node-${i}\0`);
    }
    const gen = d.store.inspect('/big')?.generation;
    assert.equal(dom0.req(XS_DIRECTORY, '/big\0'), 'ERROR E2BIG\0'); // > XENSTORE_PAYLOAD_MAX
    let off = 0;
    const seen: string[] = [];
    for (let round = 0; round < 10; round++) {
      const r = dom0.req(XS_DIRECTORY_PART, xsRequest.directoryPart('/big', off));
      assert.ok(r.startsWith(`DIRECTORY_PART ${gen}\0`), r.slice(0, 40));
      const body = r.slice(`DIRECTORY_PART ${gen}\0`.length);
      const done = body.endsWith('\0\0') || body === '\0';
      const part = done ? body.slice(0, -1) : body;
      seen.push(...part.split('\0').filter((s) => s !== ''));
      off += part.length;
      if (done) break;
    }
    assert.deepEqual(seen, names);
  });
});

describe('xenstored: dom0-only operations', () => {
  it('INTRODUCE calls the hook, fires @introduceDomain; IS_DOMAIN_INTRODUCED; RELEASE closes the domain', () => {
    const introduced: Array<[number, bigint, number]> = [];
    const released: number[] = [];
    const { dom0, d } = setup({
      onIntroduce: (domid, gfn, port) => {
        introduced.push([domid, gfn, port]);
        return undefined;
      },
      onRelease: (domid) => released.push(domid),
    });
    dom0.send(XS_WATCH, xsRequest.watch('@introduceDomain', 'i'));
    dom0.send(XS_WATCH, xsRequest.watch('@releaseDomain', 'r'));
    assert.equal(dom0.req(XS_IS_DOMAIN_INTRODUCED, '5\0'), 'IS_DOMAIN_INTRODUCED F\0');
    const got = dom0.send(XS_INTRODUCE, xsRequest.introduce(5, 0x12345n, 3));
    assert.deepEqual(
      got.map((p) => `${xsTypeName(p.type)} ${bytesToLatin1(p.payload)}`),
      ['WATCH_EVENT @introduceDomain\0i\0', 'INTRODUCE OK\0'],
    );
    assert.deepEqual(introduced, [[5, 0x12345n, 3]]);
    assert.equal(dom0.req(XS_IS_DOMAIN_INTRODUCED, '5\0'), 'IS_DOMAIN_INTRODUCED T\0');
    assert.equal(dom0.req(XS_IS_DOMAIN_INTRODUCED, `${0x7ff0}\0`), 'IS_DOMAIN_INTRODUCED T\0'); // DOMID_SELF
    assert.equal(dom0.req(XS_GET_PERMS, '/local/domain/5\0'), 'GET_PERMS n5\0');

    const dom5 = new Client(d, 5);
    dom5.send(XS_WRITE, W('data', 'x'));
    assert.equal(dom0.req(XS_RESUME, '5\0'), 'RESUME OK\0');
    const rel = dom0.send(XS_RELEASE, '5\0');
    assert.deepEqual(
      rel.map((p) => `${xsTypeName(p.type)} ${bytesToLatin1(p.payload)}`),
      ['WATCH_EVENT @releaseDomain\0r\0', 'RELEASE OK\0'],
    );
    assert.deepEqual(released, [5]);
    assert.equal(dom5.conn.closed, true);
    assert.equal(dom5.send(XS_READ, 'data\0').length, 0); // no longer served
    assert.equal(dom0.req(XS_READ, '/local/domain/5/data\0'), 'ERROR ENOENT\0');
    assert.equal(dom0.req(XS_RELEASE, '5\0'), 'ERROR ENOENT\0');
    assert.equal(dom0.req(XS_RELEASE, '0\0'), 'ERROR EINVAL\0');
    assert.equal(dom0.req(XS_RESUME, '5\0'), 'ERROR ENOENT\0');
  });

  it('an INTRODUCE hook can refuse', () => {
    const { dom0, d } = setup({ onIntroduce: () => 'badArgument' });
    assert.equal(dom0.req(XS_INTRODUCE, xsRequest.introduce(9, 1n, 2)), 'ERROR EINVAL\0');
    assert.equal(d.store.isDomainIntroduced(9), false);
  });

  it('a host bug inside a request is answered EIO and the connection goes on', () => {
    const lines: string[] = [];
    const { dom0 } = setup({
      onIntroduce: () => {
        throw new Error('boom');
      },
      log: (l) => lines.push(l),
    });
    assert.equal(dom0.req(XS_INTRODUCE, xsRequest.introduce(9, 1n, 2)), 'ERROR EIO\0');
    assert.ok(lines.some((l) => l.includes('boom')));
    assert.equal(dom0.req(XS_READ, '/tool\0'), 'READ ');
  });

  it('refuses privileged operations from a guest with EACCES', () => {
    const { dom1 } = setup();
    assert.equal(dom1.req(XS_INTRODUCE, xsRequest.introduce(9, 1n, 2)), 'ERROR EACCES\0');
    assert.equal(dom1.req(XS_RELEASE, '1\0'), 'ERROR EACCES\0');
    assert.equal(dom1.req(XS_IS_DOMAIN_INTRODUCED, '1\0'), 'ERROR EACCES\0');
    assert.equal(dom1.req(XS_RESUME, '1\0'), 'ERROR EACCES\0');
    assert.equal(dom1.req(XS_SET_TARGET, '1\x002\0'), 'ERROR EACCES\0');
    assert.equal(dom1.req(XS_CONTROL, 'check\0'), 'ERROR EACCES\0');
  });

  it('CONTROL: check, help, print; anything else EINVAL', () => {
    const lines: string[] = [];
    const { dom0 } = setup({ log: (l) => lines.push(l) });
    assert.equal(dom0.req(XS_CONTROL, 'check\0'), 'CONTROL OK\0');
    // control.c do_control_help: "%-15s %s\n" per command.
    assert.equal(dom0.req(XS_CONTROL, 'help\0'), `CONTROL check${' '.repeat(11)}\nhelp${' '.repeat(12)}\nprint${' '.repeat(11)}<string>\n\0`);
    assert.equal(dom0.req(XS_CONTROL, 'print\0hello\0'), 'CONTROL OK\0');
    assert.ok(lines.some((l) => l.endsWith('print: hello')));
    assert.equal(dom0.req(XS_CONTROL, 'live-update\0'), 'ERROR EINVAL\0');
    assert.equal(dom0.req(XS_CONTROL, ''), 'ERROR EINVAL\0');
  });
});

describe('xenstored: hostile input', () => {
  it('unknown and reply-only types get ENOSYS with req_id and tx_id echoed', () => {
    const { dom1 } = setup();
    for (const type of [XS_WATCH_EVENT, XS_ERROR, 20, 27, 0xffff, 0xffffffff, XS_GET_QUOTA]) {
      assert.equal(dom1.req(type, 'x\0'), 'ERROR ENOSYS\0', `type ${type}`);
    }
  });

  it('a malformed corpus gets EINVAL (or the Xen error for it), keeps the connection, leaves the store intact', () => {
    const { d, dom0, dom1 } = setup();
    dom1.send(XS_WRITE, W('keep', 'me'));
    dom1.send(XS_WATCH, xsRequest.watch('keep', 'tok'));
    dom1.out.splice(0);
    const before = dumpStore(d.store);

    const corpus: Array<[client: Client, type: number, payload: Uint8Array | string, expect: string]> = [
      [dom1, XS_READ, 'keep', 'EINVAL'], // no NUL
      [dom1, XS_READ, '', 'EINVAL'], // empty
      [dom1, XS_READ, 'keep\0extra\0', 'EINVAL'], // two strings
      [dom1, XS_READ, 'keep\0junk', 'EINVAL'], // NUL not at the end
      [dom1, XS_READ, 'ke ep\0', 'EINVAL'], // bad character
      [dom1, XS_READ, '/local//domain\0', 'EINVAL'],
      [dom1, XS_READ, 'keep/\0', 'EINVAL'],
      [dom1, XS_READ, '@releaseDomain\0', 'EINVAL'],
      [dom1, XS_READ, Uint8Array.of(0xff, 0xfe, 0), 'EINVAL'],
      [dom1, XS_WRITE, 'keep', 'EINVAL'], // no NUL at all
      [dom1, XS_WRITE, '\0value', 'EINVAL'], // empty path
      [dom1, XS_MKDIR, 'a\0b\0', 'EINVAL'],
      [dom1, XS_RM, '', 'EINVAL'],
      [dom1, XS_DIRECTORY, 'x', 'EINVAL'],
      [dom1, XS_GET_PERMS, '', 'EINVAL'],
      [dom1, XS_SET_PERMS, 'keep\0', 'EINVAL'], // no permissions
      [dom1, XS_SET_PERMS, 'keep\0x1\0', 'EINVAL'], // bad letter
      [dom1, XS_SET_PERMS, 'keep\0r\0', 'EINVAL'], // no domid
      [dom1, XS_SET_PERMS, 'keep\0r99999\0', 'EINVAL'], // domid out of range
      [dom1, XS_SET_PERMS, 'keep\0rabc\0', 'EINVAL'],
      [dom1, XS_WATCH, 'keep\0', 'EINVAL'], // no token
      [dom1, XS_WATCH, 'keep\0tok', 'EINVAL'], // token not terminated
      [dom1, XS_WATCH, 'keep\0t\x002\0', 'EINVAL'], // depth: not offered
      [dom1, XS_UNWATCH, '', 'EINVAL'],
      [dom1, XS_TRANSACTION_END, 'T', 'EINVAL'], // checked before the tx id
      [dom1, XS_GET_DOMAIN_PATH, 'abc\0', 'EINVAL'],
      [dom1, XS_GET_DOMAIN_PATH, '65536\0', 'EINVAL'],
      [dom1, XS_GET_DOMAIN_PATH, '1', 'EINVAL'],
      [dom1, XS_DIRECTORY_PART, 'keep\0', 'EINVAL'],
      [dom1, XS_DIRECTORY_PART, 'keep\x000\x00x\0', 'EINVAL'],
      [dom0, XS_INTRODUCE, '5\x001\0', 'EINVAL'], // two args
      [dom0, XS_INTRODUCE, '5\x001\x000\0', 'EINVAL'], // port 0
      [dom0, XS_INTRODUCE, 'x\x001\x003\0', 'EINVAL'],
      [dom0, XS_INTRODUCE, `${0x7ff0}\x001\x003\0`, 'EINVAL'], // DOMID_SELF is not a domain
      [dom0, XS_RELEASE, '', 'EINVAL'],
      [dom0, XS_SET_TARGET, '1\0', 'EINVAL'],
      [dom0, XS_IS_DOMAIN_INTRODUCED, '-1\0', 'EINVAL'],
      [dom1, XS_READ, '/local/domain/0\0', 'EACCES'],
      [dom1, XS_WRITE, W('/evil', 'x'), 'EACCES'],
      [dom1, XS_RM, '/tool\0', 'EACCES'],
      [dom1, XS_SET_PERMS, '/tool\0n1\0', 'EACCES'],
      [dom1, XS_SET_PERMS, 'keep\0n0\0', 'EPERM'],
      [dom1, XS_RM, '/\0', 'EACCES'],
      [dom0, XS_RM, '/\0', 'EINVAL'],
    ];
    for (const [client, type, payload, expect] of corpus) {
      const r = client.req(type, payload);
      assert.equal(r, `ERROR ${expect}\0`, `${xsTypeName(type)} ${JSON.stringify(typeof payload === 'string' ? payload : [...payload])}`);
    }
    assert.equal(dumpStore(d.store), before);
    assert.deepEqual(dom1.out, []); // no stray events
    // Still served, watch still there.
    assert.equal(dom1.req(XS_READ, 'keep\0'), 'READ me');
    const w = dom1.send(XS_WRITE, W('keep', 'changed'));
    assert.deepEqual(
      w.map((p) => `${xsTypeName(p.type)} ${bytesToLatin1(p.payload)}`),
      ['WATCH_EVENT keep\0tok\0', 'WRITE OK\0'],
    );
  });

  it('random garbage of sane lengths never throws and never breaks the connection', () => {
    const { d, dom1 } = setup();
    let seed = 12345;
    const rnd = (n: number): number => {
      seed = (seed * 1103515245 + 12345) >>> 0;
      return seed % n;
    };
    for (let i = 0; i < 500; i++) {
      const type = rnd(30);
      const payload = Uint8Array.from({ length: rnd(40) }, () => [0, 0x2f, 0x61, 0x40, rnd(256)][rnd(5)] as number);
      dom1.send(type, payload, rnd(3) === 0 ? rnd(5) : 0);
    }
    assert.equal(dom1.conn.error, undefined);
    assert.equal(dom1.req(XS_GET_DOMAIN_PATH, '1\0'), 'GET_DOMAIN_PATH /local/domain/1\0');
    assert.equal(d.store.inspect('/tool/xenstored')?.children.length, 0);
  });

  it('len > XENSTORE_PAYLOAD_MAX: no reply, onError, the connection is no longer served', () => {
    const { dom1, dom0 } = setup();
    dom1.send(XS_WATCH, xsRequest.watch('w', 't'));
    const bad = new Uint8Array(16);
    new DataView(bad.buffer).setUint32(12, 4097, true);
    dom1.sendBytes(bad);
    assert.deepEqual(dom1.errors, ['XENSTORE_ERROR_PROTO']);
    assert.equal(dom1.conn.error, 'XENSTORE_ERROR_PROTO');
    assert.equal(dom1.send(XS_READ, 'w\0').length, 0);
    dom0.send(XS_WRITE, W('/local/domain/1/w', 'x'));
    assert.deepEqual(dom1.out, []); // its watches are gone
    assert.equal(dom0.req(XS_READ, '/local/domain/1/w\0'), 'READ x'); // others unaffected
  });

  it('a reply that would exceed XENSTORE_PAYLOAD_MAX is E2BIG', () => {
    const { dom0 } = setup();
    dom0.send(XS_WRITE, W('/big', 'x'.repeat(4080)));
    assert.equal(dom0.req(XS_READ, '/big\0'), `READ ${'x'.repeat(4080)}`);
    for (let i = 0; i < 300; i++) dom0.send(XS_MKDIR, `/many/child-number-${i}\0`);
    assert.equal(dom0.req(XS_DIRECTORY, '/many\0'), 'ERROR E2BIG\0');
  });
});
