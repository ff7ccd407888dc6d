// Conformance of pvbox's xenstored on its Unix socket (src/xenstore/socket-transport.ts, daemon.ts) with Debian 12's real clients: xenstore-utils 4.17 (libxenstore) and python3-pyxs.
//
// The setup installs both with apt-get when they are missing (as root). Clients find the daemon
// through XENSTORED_PATH, which libxenstore 4.17 (xs_lib.c xs_daemon_path) and pyxs
// (connection.py _get_unix_socket_path) both honour. Every client runs as a child process: the
// daemon under test lives in this process's event loop, so nothing here may block it (no
// spawnSync while it serves).
import assert from 'node:assert/strict';
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, lstatSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { PVBOX } from '../guest/harness.js';
import { rateLimitedLog, XenstoredDaemon } from '../../src/xenstore/daemon.js';
import { defaultSocketPaths, XS_DAEMON_SOCKET } from '../../src/xenstore/socket-transport.js';
import { formatPerm } from '../../src/xenstore/perms.js';
import {
  bytesToLatin1,
  encodeHeader,
  latin1,
  xsRequest,
  XsParser,
  XS_DIRECTORY,
  XS_ERROR,
  XS_INTRODUCE,
  XS_READ,
  XS_SET_PERMS,
  XS_TRANSACTION_END,
  XS_TRANSACTION_START,
  XS_WATCH,
  XS_WATCH_EVENT,
  XS_WRITE,
  type XsPacket,
} from '../../src/xenstore/wire.js';
import type { Connection } from '../../src/xenstore/xenstored.js';

const PY = '/usr/bin/python3';
const TOOLS = ['xenstore-read', 'xenstore-write', 'xenstore-ls', 'xenstore-list', 'xenstore-rm', 'xenstore-chmod', 'xenstore-watch', 'xenstore-exists'];

function haveClients(): boolean {
  return TOOLS.every((t) => existsSync(`/usr/bin/${t}`)) && spawnSync(PY, ['-c', 'import pyxs'], { stdio: 'ignore' }).status === 0;
}

/** Install xenstore-utils and python3-pyxs if needed; the reason they are unusable, or undefined. */
function ensureClients(): string | undefined {
  if (haveClients()) return undefined;
  if (process.getuid?.() !== 0) return 'xenstore-utils/python3-pyxs missing and not root to install them';
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const install = (): boolean =>
    spawnSync('apt-get', ['install', '-y', '--no-install-recommends', 'xenstore-utils', 'python3-pyxs'], { stdio: 'ignore', env, timeout: 600_000 }).status === 0;
  if (!install()) {
    spawnSync('apt-get', ['update'], { stdio: 'ignore', env, timeout: 600_000 });
    if (!install()) return 'apt-get install xenstore-utils python3-pyxs failed';
  }
  return haveClients() ? undefined : 'xenstore-utils/python3-pyxs installed but not usable';
}

const skipReason = ensureClients();

const dir = mkdtempSync(join(tmpdir(), 'pvbox-xsd-'));
const SOCK = join(dir, 'run', 'socket');
const MAX_QUEUED = 256 << 10;
const QUOTA_NODES = 40;

interface Out {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Run a client program with the socket in XENSTORED_PATH; never blocks the event loop. */
function run(cmd: string, args: readonly string[], env: NodeJS.ProcessEnv = { XENSTORED_PATH: SOCK }): Promise<Out> {
  return new Promise((resolve) => {
    execFile(cmd, args, { env: { ...process.env, ...env }, timeout: 30_000, encoding: 'latin1' }, (err, stdout, stderr) => {
      const status = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : null) : 0;
      resolve({ status, stdout, stderr });
    });
  });
}

const xs = (tool: string, ...args: string[]): Promise<Out> => run(`/usr/bin/xenstore-${tool}`, args);

/** xs() that must succeed; returns stdout. */
async function xsOk(tool: string, ...args: string[]): Promise<string> {
  const r = await xs(tool, ...args);
  assert.equal(r.status, 0, `xenstore-${tool} ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** A pyxs script (Python 3, `from pyxs import *` done); returns stdout, asserting success. */
async function py(code: string): Promise<string> {
  const r = await run(PY, ['-c', `import errno, queue\nfrom pyxs import Client, PyXSError\n${code}`]);
  assert.equal(r.status, 0, `python failed:\n${r.stderr}`);
  return r.stdout;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A client speaking raw wire messages to the socket. */
class RawClient {
  readonly socket: net.Socket;
  readonly packets: XsPacket[] = [];
  readonly closed: Promise<void>;
  #parser = new XsParser();
  #waiters: Array<() => void> = [];
  #reqId = 1;

  constructor(path = SOCK) {
    this.socket = net.connect({ path });
    this.socket.on('data', (b: Buffer) => {
      for (const r of this.#parser.feed(b)) if (r.kind === 'packet') this.packets.push(r.packet);
      for (const w of this.#waiters.splice(0)) w();
    });
    this.socket.on('error', () => {});
    this.closed = new Promise((r) => this.socket.once('close', () => r()));
  }

  connected(): Promise<void> {
    return new Promise((r) => (this.socket.connecting ? this.socket.once('connect', () => r()) : r()));
  }

  send(bytes: Uint8Array): void {
    this.socket.write(bytes);
  }

  /** Next packet that is not a watch event (or, with `events`, the next watch event). */
  async next(events = false, timeoutMs = 5000): Promise<XsPacket> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.packets.findIndex((p) => (p.type === XS_WATCH_EVENT) === events);
      if (i >= 0) return this.packets.splice(i, 1)[0] as XsPacket;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no ${events ? 'watch event' : 'reply'} within ${timeoutMs} ms`);
      await Promise.race([new Promise<void>((r) => this.#waiters.push(r)), sleep(left)]);
    }
  }

  async request(type: number, payload: Uint8Array, txId = 0): Promise<XsPacket> {
    const reqId = this.#reqId++;
    this.send(xsRequest.packet(type, reqId, txId, payload));
    const p = await this.next();
    assert.equal(p.reqId, reqId);
    return p;
  }

  close(): void {
    this.socket.destroy();
  }
}

/** The reply's payload as a string; "ERROR:<name>" for XS_ERROR. */
function show(p: XsPacket): string {
  const s = bytesToLatin1(p.payload);
  return p.type === XS_ERROR ? `ERROR:${s.replace(/\0$/, '')}` : s;
}

/** An in-process wire client for another domain (socket clients are all Domain-0). */
class DomClient {
  readonly conn: Connection;
  readonly packets: XsPacket[] = [];
  #parser = new XsParser();
  #reqId = 1;
  constructor(daemon: XenstoredDaemon, domid: number) {
    this.conn = daemon.xenstored.connect(domid, (b) => {
      for (const r of this.#parser.feed(b)) if (r.kind === 'packet') this.packets.push(r.packet);
    });
  }
  /** Request → reply payload string, "ERROR:<name>" on error. Watch events stay queued. */
  req(type: number, payload: Uint8Array): string {
    const reqId = this.#reqId++;
    this.conn.receive(xsRequest.packet(type, reqId, 0, payload));
    const i = this.packets.findIndex((p) => p.type !== XS_WATCH_EVENT);
    assert.ok(i >= 0, 'no reply');
    const p = this.packets.splice(i, 1)[0] as XsPacket;
    assert.equal(p.reqId, reqId);
    return show(p);
  }
  read(path: string): string {
    return this.req(XS_READ, xsRequest.path(path));
  }
  write(path: string, value: string): string {
    return this.req(XS_WRITE, xsRequest.write(path, value));
  }
  events(): string[] {
    const ev = this.packets.filter((p) => p.type === XS_WATCH_EVENT).map((p) => bytesToLatin1(p.payload).split('\0').slice(0, 2).join(' '));
    this.packets.splice(0, this.packets.length, ...this.packets.filter((p) => p.type !== XS_WATCH_EVENT));
    return ev;
  }
}

/** xenstore-watch as a child process: its stdout lines as they come. */
class Watcher {
  readonly proc: ChildProcess;
  readonly lines: string[] = [];
  #buf = '';
  #waiters: Array<() => void> = [];
  readonly exited: Promise<number | null>;
  constructor(args: readonly string[]) {
    this.proc = spawn('/usr/bin/xenstore-watch', args, { env: { ...process.env, XENSTORED_PATH: SOCK }, stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc.stdout?.setEncoding('latin1').on('data', (s: string) => {
      this.#buf += s;
      const parts = this.#buf.split('\n');
      this.#buf = parts.pop() as string;
      this.lines.push(...parts);
      for (const w of this.#waiters.splice(0)) w();
    });
    this.exited = new Promise((r) => this.proc.once('exit', (code) => r(code)));
  }
  /** The next `n` lines (waiting up to 5 s). */
  async take(n: number): Promise<string[]> {
    const deadline = Date.now() + 5000;
    while (this.lines.length < n) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`xenstore-watch: wanted ${n} lines, have ${JSON.stringify(this.lines)}`);
      await Promise.race([new Promise<void>((r) => this.#waiters.push(r)), sleep(left)]);
    }
    return this.lines.splice(0, n);
  }
  stop(): void {
    if (this.proc.exitCode === null) this.proc.kill('SIGTERM');
  }
}

describe('pvbox xenstored on its Unix socket, with Debian xenstore-utils and pyxs', { skip: skipReason }, () => {
  let daemon: XenstoredDaemon;
  const logs: string[] = [];

  /** Every node: path, value, ACL (the store as a whole, to check nothing changed). */
  function snapshot(): string {
    const out: string[] = [];
    const walk = (p: string): void => {
      const n = daemon.xenstored.store.inspect(p);
      if (!n) return;
      out.push(`${p}=${JSON.stringify(bytesToLatin1(n.value))} ${n.perms.map(formatPerm).join(',')}`);
      for (const c of n.children) walk(p === '/' ? `/${c}` : `${p}/${c}`);
    };
    walk('/');
    return out.join('\n');
  }

  /** After bad input: a fresh Debian client still works and the store is as it was. */
  async function assertHealthy(before: string): Promise<void> {
    assert.equal(await xsOk('read', '/local/domain/0/name'), 'Domain-0\n');
    assert.equal(snapshot(), before);
  }

  before(async () => {
    daemon = await XenstoredDaemon.start({
      socketPaths: [SOCK],
      log: (l) => logs.push(l),
      maxQueuedBytes: MAX_QUEUED,
      quota: { nodesPerDomain: QUOTA_NODES },
    });
  });
  after(async () => {
    await daemon?.stop();
  });

  it('creates its directory 0755 and the socket 0600, and Domain-0 nodes are there', async () => {
    assert.equal(statSync(join(dir, 'run')).mode & 0o777, 0o755);
    const st = lstatSync(SOCK);
    assert.ok(st.isSocket());
    assert.equal(st.mode & 0o777, 0o600);
    assert.equal(await xsOk('read', '/local/domain/0/name'), 'Domain-0\n');
    assert.equal(await xsOk('read', '/local/domain/0/domid'), '0\n');
    assert.equal(await xsOk('exists', '/tool/xenstored'), '');
    assert.equal(
      await xsOk('ls', '/'),
      'tool = ""\n xenstored = ""\nlocal = ""\n domain = ""\n  0 = ""\n   name = "Domain-0"\n   domid = "0"\n',
    );
  });

  it('xenstore-write/-read/-ls/-list/-exists: exact output, escapes, directories', async () => {
    await xsOk('write', '/t/a', 'hello', '/t/b', 'tab\\there', '/t/dir/x/y', 'deep');
    assert.equal(await xsOk('read', '/t/a'), 'hello\n');
    assert.equal(await xsOk('read', '/t/a', '/t/b'), 'hello\ntab\\there\n');
    assert.equal(await xsOk('read', '-p', '/t/a', '/t/dir/x/y'), '/t/a: hello\n/t/dir/x/y: deep\n');
    // The tab really is a tab in the store; -R shows raw bytes.
    assert.equal(bytesToLatin1(daemon.xenstored.store.inspect('/t/b')?.value ?? new Uint8Array()), 'tab\there');
    assert.equal(await xsOk('read', '-R', '/t/b'), 'tab\there');
    // Intermediate directories exist with empty values.
    assert.equal(await xsOk('read', '/t/dir/x'), '\n');
    assert.equal(await xsOk('list', '/t'), 'a\nb\ndir\n');
    assert.equal(await xsOk('list', '-p', '/t'), '/t/a\n/t/b\n/t/dir\n');
    assert.equal(await xsOk('list', '/t/a'), '');
    assert.equal(await xsOk('ls', '/t'), 'a = "hello"\nb = "tab\\there"\ndir = ""\n x = ""\n  y = "deep"\n');
    assert.equal(await xsOk('ls', '-f', '/t'), '/t/a = "hello"\n/t/b = "tab\\there"\n/t/dir = ""\n/t/dir/x = ""\n/t/dir/x/y = "deep"\n');
    assert.equal(
      await xsOk('ls', '-p', '/t/dir'),
      'x = "" . . . . . . . . . . . . . . . . . . . . . . . . . . .  (n0)\n' +
        ' y = "deep"  . . . . . . . . . . . . . . . . . . . . . . . .  (n0)\n',
    );
    // Missing nodes: the tools' own messages and exit status 1.
    const r = await xs('read', '/t/nope');
    assert.deepEqual([r.status, r.stdout, r.stderr], [1, '', 'xenstore-read: couldn\'t read path /t/nope\n']);
    const l = await xs('list', '/t/nope');
    assert.deepEqual([l.status, l.stderr], [1, 'xenstore-list: could not list path /t/nope\n']);
    assert.equal((await xs('exists', '/t/nope')).status, 1);
    const ls = await xs('ls', '/t/nope');
    assert.equal(ls.status, 1);
    assert.match(ls.stderr, /^xenstore-ls: xs_directory \(\/t\/nope\): No such file or directory\n$/);
    // A directory too big for one reply: libxenstore falls back from DIRECTORY (E2BIG) to
    // DIRECTORY_PART and still lists every child, in creation order.
    const names = Array.from({ length: 300 }, (_, i) => `child-with-a-long-name-${String(i).padStart(3, '0')}`);
    await xsOk('write', ...names.flatMap((n) => [`/big-dir/${n}`, n.slice(-3)]));
    assert.equal(await xsOk('list', '/big-dir'), names.map((n) => `${n}\n`).join(''));
    assert.equal((await xsOk('ls', '/big-dir')).split('\n').length, 301);
    await xsOk('rm', '/big-dir');
    // Relative paths from Domain-0 resolve under /local/domain/0.
    await xsOk('write', 'rel', 'r');
    assert.equal(await xsOk('read', '/local/domain/0/rel'), 'r\n');
    // Invalid path characters: EINVAL from the daemon.
    const bad = await xs('write', '/t/bad path', 'x');
    assert.equal(bad.status, 1);
    assert.equal(daemon.xenstored.store.inspect('/t/bad path'), undefined);
  });

  it('xenstore-rm (plain and -t) and xenstore-chmod (-r, -u): perms as written', async () => {
    await xsOk('write', '/r/a/b/c', '1', '/r/keep', 'k');
    await xsOk('rm', '/r/a/b/c');
    assert.equal(await xsOk('list', '/r/a'), 'b\n');
    await xsOk('write', '/r/a/b/c', '1');
    await xsOk('rm', '-t', '/r/a/b/c');
    assert.equal(await xsOk('list', '/r'), 'keep\n');
    // rm of an absent node whose parent exists is fine; of one whose parent is absent, not.
    assert.equal((await xs('rm', '/r/none')).status, 0);
    const r = await xs('rm', '/r/none/deeper');
    assert.deepEqual([r.status, r.stderr], [1, 'xenstore-rm: could not remove path /r/none/deeper\n']);
    // rm of a subtree.
    await xsOk('write', '/r/sub/1', 'a', '/r/sub/2', 'b');
    await xsOk('rm', '/r/sub');
    assert.equal(await xsOk('list', '/r'), 'keep\n');

    await xsOk('write', '/c/x/y', 'v');
    await xsOk('chmod', '/c/x/y', 'n5', 'r6', 'b7');
    assert.equal(await py('with Client() as c: print(c.get_perms(b"/c/x/y"))'), "[b'n5', b'r6', b'b7']\n");
    assert.equal(await xsOk('ls', '-p', '/c'), 'x = "" . . . . . . . . . . . . . . . . . . . . . . . . . . .  (n0)\n y = "v" . . . . . . . . . . . . . . . . . . . . . . . . . .  (n5,r6,b7)\n');
    await xsOk('chmod', '-r', '/c', 'n0', 'r3');
    assert.equal(await xsOk('ls', '-f', '-p', '/c'), '/c/x = ""   (n0,r3)\n/c/x/y = "v"   (n0,r3)\n');
    assert.match(await xsOk('ls', '-p', '/'), /\nc = "" [ .]+ \(n0,r3\)\n/);
    await xsOk('write', '/u/p/q', '1');
    await xsOk('chmod', '-u', '/u/p/q', 'n0', 'r9');
    assert.equal(await py('with Client() as c: print([c.get_perms(p) for p in (b"/u", b"/u/p", b"/u/p/q")])'), "[[b'n0', b'r9'], [b'n0', b'r9'], [b'n0', b'r9']]\n");
    // A bad permission letter is refused by the tool; a bad domid by the daemon.
    assert.equal((await xs('chmod', '/c', 'x1')).status, 1);
    const e = await py('with Client() as c:\n try:\n  c.set_perms(b"/c", [b"n0", b"r99999"])\n except PyXSError as e: print(e.args[0] == errno.EINVAL)');
    assert.equal(e, 'True\n');
    assert.equal(await py('with Client() as c: print(c.get_perms(b"/c"))'), "[b'n0', b'r3']\n");
  });

  it('permissions per domain: an introduced domain sees what its ACL entries allow', async () => {
    // Domain 5 introduced through the socket (pyxs), then served in-process like a guest's ring.
    await py('with Client() as c: c.introduce_domain(5, 4660, 3); print(c.is_domain_introduced(5))');
    assert.equal(await xsOk('ls', '-p', '/local/domain/5'), '');
    assert.equal(await py('with Client() as c: print(c.get_perms(b"/local/domain/5"))'), "[b'n5']\n");
    const d5 = new DomClient(daemon, 5);
    try {
      await xsOk('write', '/perm/secret', 's', '/perm/open', 'o');
      await xsOk('chmod', '/perm', 'n0', 'r5');
      await xsOk('chmod', '/perm/secret', 'n0');
      await xsOk('chmod', '/perm/open', 'n0', 'r5');
      assert.equal(d5.read('/perm/secret'), 'ERROR:EACCES');
      assert.equal(d5.read('/perm/absent'), 'ERROR:ENOENT'); // parent readable: may know it is absent
      assert.equal(d5.read('/tool/xenstored'), 'ERROR:EACCES');
      assert.equal(d5.read('/perm/open'), 'o');
      assert.equal(d5.req(XS_DIRECTORY, xsRequest.path('/perm')), 'secret\0open\0');
      assert.equal(d5.write('/perm/open', 'x'), 'ERROR:EACCES');
      assert.equal(d5.write('/perm/new', 'x'), 'ERROR:EACCES');
      await xsOk('chmod', '/perm/open', 'n0', 'b5');
      assert.equal(d5.write('/perm/open', 'by5'), 'OK\0');
      assert.equal(await xsOk('read', '/perm/open'), 'by5\n');
      // Only the owner changes an ACL; an unprivileged owner cannot give a node away.
      assert.equal(d5.req(XS_SET_PERMS, xsRequest.setPerms('/perm/open', ['b5'])), 'ERROR:EACCES');
      assert.equal(d5.write('data', 'mine'), 'OK\0'); // relative: /local/domain/5/data
      assert.equal(await xsOk('ls', '-p', '/local/domain/5'), 'data = "mine"  . . . . . . . . . . . . . . . . . . . . . . .  (n5)\n');
      assert.equal(d5.req(XS_SET_PERMS, xsRequest.setPerms('data', ['n5', 'r0'])), 'OK\0');
      assert.equal(d5.req(XS_SET_PERMS, xsRequest.setPerms('data', ['n6'])), 'ERROR:EPERM');
      // Privileged operations are refused to a domain.
      assert.equal(d5.req(XS_INTRODUCE, xsRequest.introduce(6, 1, 1)), 'ERROR:EACCES');
      // Watch events are only delivered for nodes the domain may read, or whose parent it may
      // read (watch.c watch_permitted).
      assert.equal(d5.req(XS_WATCH, xsRequest.watch('/perm', 'w5')), 'OK\0');
      assert.equal(d5.req(XS_WATCH, xsRequest.watch('/hidden', 'h5')), 'OK\0');
      assert.deepEqual(d5.events(), ['/perm w5', '/hidden h5']); // the initial event always comes
      await xsOk('write', '/perm/secret', 's2'); // unreadable node, readable parent
      await xsOk('write', '/perm/open', 'o2');
      await xsOk('write', '/hidden/a/b', 'x'); // neither node nor parent readable: no event
      assert.deepEqual(d5.events(), ['/perm/secret w5', '/perm/open w5']);
      await xsOk('chmod', '/hidden/a/b', 'n0', 'r5');
      assert.deepEqual(d5.events(), ['/hidden/a/b h5']);
    } finally {
      d5.conn.close();
    }
  });

  it('transactions (pyxs): a conflicting commit is EAGAIN, nothing half-written; others commit', async () => {
    const out = await py(`
with Client() as c, Client() as c2:
    c.write(b"/tx/x", b"0"); c.write(b"/tx/y", b"0")
    c.transaction()
    assert c.read(b"/tx/x") == b"0"
    c.write(b"/tx/y", b"from-tx")
    c.write(b"/tx/new", b"n")
    c2.write(b"/tx/x", b"other")
    print("commit", c.commit())
    print(c.read(b"/tx/x"), c.read(b"/tx/y"), c.read(b"/tx/new", b"absent"))
    c.transaction()
    c.write(b"/tx/y", b"ok")
    c2.write(b"/tx/unrelated", b"u")
    print("commit", c.commit())
    print(c.read(b"/tx/y"))
    c.transaction(); c.write(b"/tx/y", b"rolled"); c.rollback()
    print(c.read(b"/tx/y"))
`);
    assert.equal(out, "commit False\nb'other' b'0' b'absent'\ncommit True\nb'ok'\nb'ok'\n");
    // The same on the wire: EAGAIN by name, and the transaction is gone afterwards.
    const a = new RawClient();
    const b = new RawClient();
    try {
      const tx = Number(show(await a.request(XS_TRANSACTION_START, xsRequest.transactionStart())).replace(/\0$/, ''));
      assert.ok(tx > 0);
      assert.equal(show(await a.request(XS_READ, xsRequest.path('/tx/x'), tx)), 'other');
      assert.equal(show(await b.request(XS_WRITE, xsRequest.write('/tx/x', 'b'))), 'OK\0');
      assert.equal(show(await a.request(XS_WRITE, xsRequest.write('/tx/x', 'a'), tx)), 'OK\0');
      assert.equal(show(await a.request(XS_TRANSACTION_END, xsRequest.transactionEnd(true), tx)), 'ERROR:EAGAIN');
      assert.equal(show(await a.request(XS_READ, xsRequest.path('/tx/x'), tx)), 'ERROR:ENOENT');
      assert.equal(await xsOk('read', '/tx/x'), 'b\n');
    } finally {
      a.close();
      b.close();
    }
  });

  it('xenstore-watch: initial event, changes below, rm of the node and of ancestors, only matching paths', async () => {
    const w = new Watcher(['/w', '/anc/x/y']);
    try {
      assert.deepEqual(await w.take(2), ['/w', '/anc/x/y']); // one initial event per watch, as given
      await xsOk('write', '/w/a', '1');
      assert.deepEqual(await w.take(1), ['/w/a']);
      await xsOk('write', '/w/a/b', '2');
      assert.deepEqual(await w.take(1), ['/w/a/b']);
      await xsOk('write', '/wx', 'not below /w'); // no event: /wx is not a child of /w
      await xsOk('write', '/other', 'x');
      await xsOk('chmod', '/w/a', 'n0', 'r5'); // a permission change is a change
      assert.deepEqual(await w.take(1), ['/w/a']);
      await xsOk('rm', '/w/a');
      assert.deepEqual(await w.take(1), ['/w/a']);
      await xsOk('write', '/anc/x/y/z', '1');
      assert.deepEqual(await w.take(1), ['/anc/x/y/z']);
      await xsOk('rm', '/anc'); // removing an ancestor reports the watched path itself
      assert.deepEqual(await w.take(1), ['/anc/x/y']);
      // A transaction's changes fire once, at commit (xenstore-write with two pairs uses one).
      await xsOk('write', '/w/t1', '1', '/w/t2', '2');
      assert.deepEqual((await w.take(2)).sort(), ['/w/t1', '/w/t2']);
      await xsOk('rm', '/w');
      assert.deepEqual(await w.take(1), ['/w']);
      await sleep(100);
      assert.deepEqual(w.lines, []);
    } finally {
      w.stop();
    }
    // -n: exits after that many events.
    const n = new Watcher(['-n', '2', '/n']);
    assert.deepEqual(await n.take(1), ['/n']);
    await xsOk('write', '/n', 'v');
    assert.deepEqual(await n.take(1), ['/n']);
    assert.equal(await n.exited, 0);
  });

  it('@introduceDomain and @releaseDomain fire when the host introduces and releases a domain', async () => {
    const w = new Watcher(['@introduceDomain', '@releaseDomain']);
    try {
      assert.deepEqual(await w.take(2), ['@introduceDomain', '@releaseDomain']);
      assert.ok(daemon.xenstored.introduceDomain(7).ok);
      assert.deepEqual(await w.take(1), ['@introduceDomain']);
      assert.equal(await xsOk('list', '/local/domain'), '0\n5\n7\n');
      assert.ok(daemon.xenstored.releaseDomain(7).ok);
      assert.deepEqual(await w.take(1), ['@releaseDomain']);
      assert.equal(await xsOk('list', '/local/domain'), '0\n5\n');
      // And through the socket (pyxs sends XS_INTRODUCE).
      await py('with Client() as c: c.introduce_domain(8, 1, 2)');
      assert.deepEqual(await w.take(1), ['@introduceDomain']);
    } finally {
      w.stop();
    }
    // pyxs Monitor: (path, token) pairs.
    const out = await py(`
with Client() as c:
    m = c.monitor()
    m.watch(b"/mon", b"tok")
    it = m.wait()
    print(next(it))
    c.write(b"/mon/k", b"v")
    print(next(it))
    m.unwatch(b"/mon", b"tok")
    c.write(b"/mon/k", b"w")
    try:
        print(m.events.get(timeout=0.3))
    except queue.Empty:
        print("no event after unwatch")
`);
    assert.equal(out, "Event(path=b'/mon', token=b'tok')\nEvent(path=b'/mon/k', token=b'tok')\nno event after unwatch\n");
  });

  it('quotas: a domain over its node, node-size, watch and transaction limits gets errors; the store is intact', async () => {
    const d9 = new DomClient(daemon, 9);
    assert.ok(daemon.xenstored.introduceDomain(9).ok);
    try {
      const have = daemon.xenstored.store.nodeCount(9);
      let i = 0;
      for (; i < QUOTA_NODES - have; i++) assert.equal(d9.write(`n${i}`, 'x'), 'OK\0');
      assert.equal(d9.write(`n${i}`, 'x'), 'ERROR:ENOSPC');
      assert.equal(d9.write('a/b/c', 'x'), 'ERROR:ENOSPC');
      assert.equal(daemon.xenstored.store.nodeCount(9), QUOTA_NODES);
      assert.equal((await xs('read', `/local/domain/9/n${i}`)).status, 1);
      assert.equal((await xs('exists', '/local/domain/9/a')).status, 1);
      assert.equal(d9.write('n0', 'y'.repeat(3000)), 'ERROR:ENOSPC'); // node-size 2048
      assert.equal(await xsOk('read', '/local/domain/9/n0'), 'x\n');
      for (let w = 0; w < 128; w++) assert.equal(d9.req(XS_WATCH, xsRequest.watch(`w${w}`, 't')), 'OK\0');
      assert.equal(d9.req(XS_WATCH, xsRequest.watch('w128', 't')), 'ERROR:E2BIG'); // Xen 4.17's answer
      for (let t = 0; t < 10; t++) assert.match(d9.req(XS_TRANSACTION_START, xsRequest.transactionStart()), /^[0-9]+\0$/);
      assert.equal(d9.req(XS_TRANSACTION_START, xsRequest.transactionStart()), 'ERROR:ENOSPC');
      // Domain-0 over the socket is not limited.
      await xsOk('write', '/big', 'z'.repeat(3000));
      assert.equal((await xsOk('read', '/big')).length, 3001);
    } finally {
      d9.conn.close();
      daemon.xenstored.releaseDomain(9);
    }
  });

  it('a client that does not read its watch events is disconnected; everyone else carries on', async () => {
    const lazy = new RawClient();
    await lazy.connected();
    const token = 't'.repeat(2000);
    lazy.send(xsRequest.packet(XS_WATCH, 1, 0, xsRequest.watch('/flood', token)));
    await sleep(50);
    lazy.socket.pause(); // stops reading from here on
    const before = logs.length;
    const writer = daemon.xenstored.store.connect(0, () => {});
    const n = Math.ceil((MAX_QUEUED * 8) / 2000);
    for (let i = 0; i < n && !lazy.socket.destroyed; i++) {
      writer.write(0, '/flood/v', String(i));
      if (i % 64 === 0) await sleep(0);
    }
    writer.close();
    lazy.socket.resume();
    await lazy.closed;
    assert.ok(logs.slice(before).some((l) => /unread \(limit 262144\); disconnected/.test(l)), logs.slice(before).join('\n'));
    assert.equal(await xsOk('read', '/flood/v'), `${n - 1}\n`);
  });

  it('backpressure: a client pipelining requests faster than it reads is slowed, not dropped', async () => {
    await xsOk('write', '/bp', 'v'.repeat(4000));
    const c = new RawClient();
    await c.connected();
    c.socket.pause();
    const n = 3000; // 12 MB of replies, far more than the socket buffers and the 256 KiB cap
    const reqs = [];
    for (let i = 0; i < n; i++) reqs.push(xsRequest.packet(XS_READ, i + 1, 0, xsRequest.path('/bp')));
    c.send(Buffer.concat(reqs));
    await sleep(200);
    c.socket.resume();
    const deadline = Date.now() + 20_000;
    while (c.packets.length < n && Date.now() < deadline && !c.socket.destroyed) await sleep(20);
    assert.equal(c.packets.length, n);
    assert.ok(c.packets.every((p, i) => p.reqId === i + 1 && p.type === XS_READ && p.payload.length === 4000));
    c.close();
  });

  describe('malformed input: error replies or a closed connection, nothing else affected', () => {
    it('len > XENSTORE_PAYLOAD_MAX closes that connection, and only that one', async () => {
      const bystander = new RawClient();
      assert.equal(show(await bystander.request(XS_WATCH, xsRequest.watch('/by', 'tok'))), 'OK\0');
      await bystander.next(true);
      const snap = snapshot();
      for (const len of [4097, 0xffffffff]) {
        const c = new RawClient();
        c.send(encodeHeader({ type: XS_WRITE, reqId: 1, txId: 0, len }));
        c.send(new Uint8Array(64));
        await c.closed;
        assert.deepEqual(c.packets, []);
        await assertHealthy(snap);
      }
      // A valid request before the bad header is still answered.
      const c = new RawClient();
      c.send(Buffer.concat([xsRequest.packet(XS_READ, 1, 0, xsRequest.path('/local/domain/0/domid')), encodeHeader({ type: XS_READ, reqId: 2, txId: 0, len: 5000 })]));
      await c.closed;
      assert.deepEqual(c.packets.map(show), ['0']);
      // The bystander kept its watch and its connection.
      await xsOk('write', '/by', '1');
      assert.equal(show(await bystander.next(true)), '/by\0tok\0');
      assert.equal(show(await bystander.request(XS_READ, xsRequest.path('/by'))), '1');
      bystander.close();
      assert.ok(logs.some((l) => /XENSTORE_PAYLOAD_MAX/.test(l)));
    });

    it('unknown and reply-only types get ENOSYS, with the request id, and the connection carries on', async () => {
      const snap = snapshot();
      const c = new RawClient();
      for (const type of [20, 27, 99, 0xffff, XS_WATCH_EVENT, XS_ERROR]) {
        const p = await c.request(type, latin1('junk\0'));
        assert.equal(p.type, XS_ERROR);
        assert.equal(show(p), 'ERROR:ENOSYS');
      }
      assert.equal(show(await c.request(XS_READ, xsRequest.path('/local/domain/0/name'))), 'Domain-0');
      c.close();
      await assertHealthy(snap);
    });

    it('missing NULs and wrong argument counts are EINVAL; a bad transaction id ENOENT', async () => {
      const snap = snapshot();
      const c = new RawClient();
      const cases: Array<[number, string, string]> = [
        [XS_READ, '/local/domain/0/name', 'ERROR:EINVAL'], // no NUL
        [XS_READ, '', 'ERROR:EINVAL'], // empty
        [XS_READ, '/a\0/b\0', 'ERROR:EINVAL'], // two strings
        [XS_WRITE, '/t/nonul', 'ERROR:EINVAL'], // no NUL between path and value
        [XS_WATCH, '/t\0', 'ERROR:EINVAL'], // no token
        [XS_DIRECTORY, '/t', 'ERROR:EINVAL'],
        [XS_SET_PERMS, '/t\0', 'ERROR:EINVAL'], // no permission
        [XS_SET_PERMS, '/t\0q0\0', 'ERROR:EINVAL'],
        [XS_TRANSACTION_END, 'X\0', 'ERROR:EINVAL'],
        [XS_INTRODUCE, '5\0', 'ERROR:EINVAL'],
      ];
      for (const [type, payload, want] of cases) assert.equal(show(await c.request(type, latin1(payload))), want, `${type} ${JSON.stringify(payload)}`);
      assert.equal(show(await c.request(XS_READ, xsRequest.path('/t/a'), 4242)), 'ERROR:ENOENT');
      assert.equal(show(await c.request(XS_WRITE, xsRequest.write('/t/a', 'zz'), 4242)), 'ERROR:ENOENT');
      c.close();
      await assertHealthy(snap);
    });

    it('partial frames then a close, and abrupt disconnects, leave no trace', async () => {
      const snap = snapshot();
      const base = daemon.xenstored.connectionCount;
      const full = xsRequest.packet(XS_WRITE, 1, 0, xsRequest.write('/partial', 'never'));
      for (const cut of [1, 10, 16, 17, full.length - 1]) {
        const c = new RawClient();
        await c.connected();
        c.send(full.subarray(0, cut));
        await sleep(20);
        c.socket.end();
        await c.closed;
        assert.deepEqual(c.packets, []);
      }
      // Watches and an open transaction with writes, then the socket just goes away.
      const c = new RawClient();
      assert.equal(show(await c.request(XS_WATCH, xsRequest.watch('/t', 'gone'))), 'OK\0');
      const tx = Number(show(await c.request(XS_TRANSACTION_START, xsRequest.transactionStart())).replace(/\0$/, ''));
      assert.equal(show(await c.request(XS_WRITE, xsRequest.write('/t/txonly', 'x'), tx)), 'OK\0');
      c.send(full.subarray(0, 20));
      c.socket.destroy();
      await c.closed;
      await sleep(50);
      assert.equal(daemon.xenstored.connectionCount, base);
      await xsOk('write', '/t/a', 'hello'); // would fire the dead client's watch
      await assertHealthy(snap);
      for (let i = 0; i < 100 && daemon.servers[0]?.clientCount !== 0; i++) await sleep(20);
      assert.equal(daemon.servers[0]?.clientCount, 0);
    });

    it('requests split into 1-byte chunks, and many in one chunk, are answered in order', async () => {
      const c = new RawClient();
      await c.connected();
      const msgs = [
        xsRequest.packet(XS_WRITE, 11, 0, xsRequest.write('/bytes/one', 'by-one')),
        xsRequest.packet(XS_READ, 12, 0, xsRequest.path('/bytes/one')),
        xsRequest.packet(99, 13, 0, latin1('x\0')),
        xsRequest.packet(XS_READ, 14, 0, xsRequest.path('/bytes/none')),
      ];
      for (const b of Buffer.concat(msgs)) {
        c.send(Uint8Array.of(b));
        await sleep(1);
      }
      for (const [id, want] of [[11, 'OK\0'], [12, 'by-one'], [13, 'ERROR:ENOSYS'], [14, 'ERROR:ENOENT']] as const) {
        const p = await c.next();
        assert.deepEqual([p.reqId, show(p)], [id, want]);
      }
      const many = [];
      for (let i = 0; i < 200; i++) many.push(xsRequest.packet(XS_WRITE, 1000 + i, 0, xsRequest.write(`/bytes/m${i}`, String(i))));
      c.send(Buffer.concat(many));
      for (let i = 0; i < 200; i++) {
        const p = await c.next();
        assert.deepEqual([p.reqId, show(p)], [1000 + i, 'OK\0']);
      }
      c.close();
      assert.equal(await xsOk('read', '/bytes/m199'), '199\n');
    });
  });
});

describe('pvbox xenstored command', { skip: skipReason }, () => {
  const cliSock = join(dir, 'cli', 'xs.sock');

  /** Start `pvbox xenstored ... --foreground`; resolves once it says it is serving. */
  function startForeground(args: readonly string[], env: NodeJS.ProcessEnv = {}): Promise<{ proc: ChildProcess; stderr: () => string }> {
    const proc = spawn(process.execPath, [PVBOX, 'xenstored', '--foreground', ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`daemon did not start: ${err}`)), 30_000);
      proc.stderr?.setEncoding('utf8').on('data', (s: string) => {
        err += s;
        if (/xenstored: serving /.test(err)) {
          clearTimeout(timer);
          resolve({ proc, stderr: () => err });
        }
      });
      proc.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`daemon exited ${code}: ${err}`));
      });
    });
  }

  const stop = (proc: ChildProcess): Promise<number | null> =>
    new Promise((r) => {
      proc.once('exit', (code) => r(code));
      proc.kill('SIGTERM');
    });

  it('serves Domain-0 nodes, refuses a second daemon on the same socket, removes its socket on SIGTERM', async () => {
    const { proc, stderr } = await startForeground(['--socket', cliSock]);
    try {
      const env = { XENSTORED_PATH: cliSock };
      assert.equal((await run('/usr/bin/xenstore-read', ['/local/domain/0/name', '/local/domain/0/domid'], env)).stdout, 'Domain-0\n0\n');
      const second = await run(process.execPath, [PVBOX, 'xenstored', '--socket', cliSock, '--foreground']);
      assert.equal(second.status, 1);
      assert.equal(second.stderr, `pvbox: another xenstored is already serving ${cliSock}\n`);
      // Bad input to it is logged, one line each.
      const c = new RawClient(cliSock);
      await c.request(99, latin1('x\0'));
      c.close();
      await sleep(100);
      assert.match(stderr(), /xenstored: dom0: unknown operation 99\n/);
    } finally {
      assert.equal(await stop(proc), 0);
    }
    assert.equal(existsSync(cliSock), false);
  });

  it('replaces a stale socket, refuses a path that is not a socket, honours XENSTORED_PATH', async () => {
    const stale = join(dir, 'stale.sock');
    assert.equal(spawnSync(PY, ['-c', `import socket; socket.socket(socket.AF_UNIX).bind(${JSON.stringify(stale)})`]).status, 0);
    assert.ok(lstatSync(stale).isSocket());
    const { proc } = await startForeground([], { XENSTORED_PATH: stale });
    try {
      assert.equal((await run('/usr/bin/xenstore-read', ['/local/domain/0/name'], { XENSTORED_PATH: stale })).stdout, 'Domain-0\n');
    } finally {
      assert.equal(await stop(proc), 0);
    }
    const file = join(dir, 'plain-file');
    writeFileSync(file, 'x');
    const r = await run(process.execPath, [PVBOX, 'xenstored', '--socket', file, '--foreground']);
    assert.deepEqual([r.status, r.stderr], [1, `pvbox: ${file} exists and is not a socket; not replacing it\n`]);
    const u = await run(process.execPath, [PVBOX, 'xenstored', 'extra']);
    assert.deepEqual([u.status, u.stderr], [1, "pvbox: xenstored: unexpected argument 'extra'\n"]);
  });

  it('without --foreground: detaches, prints its pid, logs to --log', async () => {
    const sock = join(dir, 'bg', 'sock');
    const log = join(dir, 'bg', 'xenstored.log');
    const r = await run(process.execPath, [PVBOX, 'xenstored', '--socket', sock, '--log', log]);
    assert.equal(r.status, 0, r.stderr);
    const pid = Number(r.stdout.trim());
    assert.ok(Number.isInteger(pid) && pid > 0, r.stdout);
    try {
      assert.equal((await run('/usr/bin/xenstore-read', ['/local/domain/0/name'], { XENSTORED_PATH: sock })).stdout, 'Domain-0\n');
      const again = await run(process.execPath, [PVBOX, 'xenstored', '--socket', sock, '--log', log]);
      assert.deepEqual([again.status, again.stderr], [1, `pvbox: another xenstored is already serving ${sock}\n`]);
    } finally {
      process.kill(pid, 'SIGTERM');
    }
    for (let i = 0; i < 100 && existsSync(sock); i++) await sleep(50);
    assert.equal(existsSync(sock), false);
  });

  it('serves /run/xenstored/socket by default, where the clients look with no options', async (t) => {
    const env = { ...process.env };
    delete env.XENSTORED_PATH;
    delete env.XENSTORED_RUNDIR;
    if (existsSync(XS_DAEMON_SOCKET)) {
      const probe = await run('/usr/bin/xenstore-exists', ['/'], { XENSTORED_PATH: XS_DAEMON_SOCKET });
      if (probe.status === 0) {
        t.skip(`a xenstored already serves ${XS_DAEMON_SOCKET}`);
        return;
      }
    }
    const proc = spawn(process.execPath, [PVBOX, 'xenstored', '--foreground'], { env, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    proc.stderr?.setEncoding('utf8').on('data', (s: string) => (err += s));
    for (let i = 0; i < 600 && !/serving/.test(err) && proc.exitCode === null; i++) await sleep(50);
    try {
      assert.match(err, /serving \/run\/xenstored\/socket/);
      const noEnv = (cmd: string, args: string[]): Promise<Out> =>
        new Promise((resolve) =>
          execFile(cmd, args, { env, timeout: 30_000 }, (e, stdout, stderr) => resolve({ status: e ? 1 : 0, stdout, stderr })),
        );
      assert.equal((await noEnv('/usr/bin/xenstore-read', ['/local/domain/0/name'])).stdout, 'Domain-0\n');
      assert.equal((await noEnv(PY, ['-c', 'from pyxs import Client\nwith Client() as c: print(c.read(b"/local/domain/0/domid"))'])).stdout, "b'0'\n");
    } finally {
      assert.equal(await stop(proc), 0);
    }
    assert.equal(existsSync(XS_DAEMON_SOCKET), false);
  });
});

describe('socket paths and logging', () => {
  it('default socket paths follow xs_daemon_socket()', () => {
    assert.deepEqual(defaultSocketPaths({ XENSTORED_PATH: '/x/s' }), ['/x/s']);
    assert.deepEqual(defaultSocketPaths({ XENSTORED_RUNDIR: '/r' }), ['/r/socket']);
    const d = defaultSocketPaths({});
    assert.equal(d[0], '/run/xenstored/socket');
    // Debian's libxenstore looks in /var/run/xenstored: the same place when /var/run is /run.
    const varRunIsRun = (() => {
      try {
        return lstatSync('/var/run').isSymbolicLink() && statSync('/var/run').ino === statSync('/run').ino;
      } catch {
        return false;
      }
    })();
    assert.deepEqual(d, varRunIsRun ? ['/run/xenstored/socket'] : ['/run/xenstored/socket', '/var/run/xenstored/socket']);
  });

  it('oddity lines are rate-limited, and what was dropped is counted', () => {
    let t = 0;
    const got: string[] = [];
    const log = rateLimitedLog((l) => got.push(l), { burst: 3, perSecond: 1, now: () => t });
    for (let i = 0; i < 10; i++) log(`l${i}`);
    assert.deepEqual(got, ['l0', 'l1', 'l2']);
    t += 1000;
    log('later');
    assert.deepEqual(got.slice(3), ['xenstored: 7 log lines suppressed', 'later']);
  });
});

after(() => rmSync(dir, { recursive: true, force: true }));
