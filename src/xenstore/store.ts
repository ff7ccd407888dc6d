// The XenStore tree with Xen's semantics: nodes, permissions, transactions, watches, quotas and
// domain introduction (docs/misc/xenstore.txt; tools/xenstored/{core,transaction,watch,domain}.c;
// mirage ocaml-xenstore server/{store,perms,quota,transaction}.ml; QEMU hw/i386/kvm/xenstore_impl.c).
//
// Pure: no I/O, no timers. Every operation returns an XsResult; nothing is thrown at a guest.
//
// Shape of the data. The tree is persistent: a node is never changed in place, an update copies
// the path from the root down to the changed node and shares everything else. That makes a
// transaction's snapshot free: it keeps the root it started from (xenstore.txt: "When transaction
// is started whole db is copied; reads and writes happen on the copy").
//
// Generations. Every node carries the generation at which it was last written (value, perms or
// its list of children), from one store-wide counter, as xenstored does. A transaction records
// every path it looked at (read, wrote, or found absent); TRANSACTION_END "T" fails with EAGAIN if
// any of them has a different generation (or existence) now than at the transaction's start.
// Otherwise the nodes the transaction changed are grafted onto the current tree, keeping the
// current version of every subtree the transaction did not touch.
//
// Watches fire synchronously from inside the operation that caused them, after the tree is
// updated. A watch callback may call back into the store.

import { fail, ok, OK_VOID, type XsResult } from './errors.js';
import {
  basename,
  canonicalize,
  childPath,
  domainPath,
  isChildPath,
  isRelativePath,
  isSpecialPath,
  parentPath,
  pathComponents,
} from './path.js';
import {
  DOMID_ANY,
  DOMID_FIRST_RESERVED,
  permFor,
  XS_PERM_OWNER,
  XS_PERM_READ,
  XS_PERM_WRITE,
  type XsCaller,
  type XsPerm,
} from './perms.js';

// ---------------------------------------------------------------------------------------------
// Public types

/** A node as the host may inspect it (no permission checks: for the toolstack, tests, dumps). */
export interface XsNodeInfo {
  readonly value: Uint8Array;
  readonly perms: readonly XsPerm[];
  readonly children: readonly string[];
  readonly generation: number;
}

/**
 * Limits for unprivileged domains (xenstored's -E -S -W -t -A options and defaults). The
 * privileged domain is never limited. 0 disables a limit.
 */
export interface XsQuota {
  /** Nodes a domain may own (xenstored quota "nodes", default 1000). */
  readonly nodesPerDomain: number;
  /**
   * Largest node, counted as xenstored accounts it: a 16-byte header + 8 bytes per ACL entry +
   * the value + each child name and its NUL ("node-size", default 2048).
   */
  readonly nodeSize: number;
  /** Watches per connection ("watches", default 128). */
  readonly watchesPerConnection: number;
  /** Open transactions per connection ("transactions", default 10). */
  readonly transactionsPerConnection: number;
  /** Entries in one node's ACL ("permissions", default 5). */
  readonly permsPerNode: number;
}

export const DEFAULT_XS_QUOTA: XsQuota = Object.freeze({
  nodesPerDomain: 1000,
  nodeSize: 2048,
  watchesPerConnection: 128,
  transactionsPerConnection: 10,
  permsPerNode: 5,
});

export interface XenStoreOptions {
  readonly quota?: Partial<XsQuota>;
  /** The privileged domain (xenstored --priv-domid); default 0. */
  readonly privDomid?: number;
}

/** Called for each watch event: the path as the watch sees it (relative if it was registered so). */
export type WatchEventSink = (path: string, token: string) => void;

/** Size accounted for one node (tools/xenstored/core.c calc_node_acc_size). */
export function xsNodeSize(node: { readonly value: Uint8Array; readonly perms: readonly XsPerm[]; readonly children: Iterable<string> }): number {
  let childlen = 0;
  for (const name of node.children) childlen += name.length + 1;
  return 16 + 8 * node.perms.length + node.value.length + childlen;
}

// ---------------------------------------------------------------------------------------------
// The persistent tree

interface XsNode {
  readonly value: Uint8Array;
  readonly perms: readonly XsPerm[];
  /** Insertion-ordered, as xenstored appends children: DIRECTORY lists them in creation order. */
  readonly children: ReadonlyMap<string, XsNode>;
  readonly generation: number;
}

interface TreeState {
  readonly root: XsNode;
  /** "@introduceDomain", "@releaseDomain": nodes outside the tree that carry watch permissions. */
  readonly specials: ReadonlyMap<string, XsNode>;
}

const EMPTY = new Uint8Array(0);
const NO_CHILDREN: ReadonlyMap<string, XsNode> = new Map();

function lookup(state: TreeState, path: string): XsNode | undefined {
  if (isSpecialPath(path)) return state.specials.get(path);
  let node: XsNode | undefined = state.root;
  for (const c of pathComponents(path)) {
    node = node.children.get(c);
    if (!node) return undefined;
  }
  return node;
}

/** Replace (or, with undefined, remove) the node at `path`, copying its ancestors. */
function replaceNode(state: TreeState, path: string, node: XsNode | undefined): TreeState {
  if (isSpecialPath(path)) {
    const specials = new Map(state.specials);
    if (node) specials.set(path, node);
    else specials.delete(path);
    return { root: state.root, specials };
  }
  const comps = pathComponents(path);
  if (comps.length === 0) {
    if (!node) throw new Error('xenstore: cannot remove the root node');
    return { root: node, specials: state.specials };
  }
  const rebuild = (at: XsNode, i: number): XsNode => {
    const name = comps[i] as string;
    const children = new Map(at.children);
    if (i === comps.length - 1) {
      if (node) children.set(name, node);
      else children.delete(name);
    } else {
      const next = at.children.get(name);
      if (!next) throw new Error(`xenstore: replaceNode(${path}): missing ancestor`);
      children.set(name, rebuild(next, i + 1));
    }
    return { value: at.value, perms: at.perms, children, generation: at.generation };
  };
  return { root: rebuild(state.root, 0), specials: state.specials };
}

/** Every node of the subtree at `path`, `path` first. */
function subtree(path: string, node: XsNode): Array<[string, XsNode]> {
  const out: Array<[string, XsNode]> = [];
  const walk = (p: string, n: XsNode): void => {
    out.push([p, n]);
    for (const [name, c] of n.children) walk(childPath(p, name), c);
  };
  walk(path, node);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Changes, transactions, watches

/** What a watch can be told about. */
type XsChange =
  /** Created, value written, or permissions changed (MATCH_SUBTREE in watch.c). */
  | { readonly kind: 'change'; readonly path: string; readonly oldPerms?: readonly XsPerm[] | undefined }
  /** `path` and everything below it removed. */
  | { readonly kind: 'rm'; readonly path: string }
  /** @introduceDomain / @releaseDomain (MATCH_NODEPTH: exact name only). */
  | { readonly kind: 'special'; readonly path: string };

interface Transaction {
  readonly id: number;
  /** The global tree when the transaction started. */
  readonly base: TreeState;
  /** The transaction's own view. */
  state: TreeState;
  /** Paths whose node (or absence) the transaction depended on; checked at commit. */
  readonly accessed: Set<string>;
  /** Paths the transaction created, changed or removed (including parents whose child list changed). */
  readonly modified: Set<string>;
  /** Watch events to fire if and when the transaction commits. */
  readonly events: XsChange[];
  /** Node ownership changes, per domid, to apply to the counts at commit. */
  readonly nodeDelta: Map<number, number>;
}

interface Watch {
  /** Canonical (absolute or '@') path. */
  readonly path: string;
  readonly token: string;
  /** Registered as a relative path: events are reported relative to /local/domain/<domid>/. */
  readonly relative: boolean;
}

/** The tree an operation works on: the global one, or a transaction's. */
class View {
  constructor(
    private readonly core: Core,
    readonly tx: Transaction | undefined,
  ) {}

  get state(): TreeState {
    return this.tx ? this.tx.state : this.core.state;
  }

  /** Look up a node, recording the access for the transaction's conflict check. */
  get(path: string): XsNode | undefined {
    this.tx?.accessed.add(path);
    return lookup(this.state, path);
  }

  /** Ownership changes not yet in the global counts (a transaction's). */
  pendingNodes(domid: number): number {
    return this.tx?.nodeDelta.get(domid) ?? 0;
  }

  /** Make an operation's result visible: now (global), or at commit (transaction). */
  apply(state: TreeState, modified: readonly string[], event: XsChange | undefined, delta: ReadonlyMap<number, number>): void {
    const tx = this.tx;
    if (tx) {
      tx.state = state;
      for (const p of modified) {
        tx.modified.add(p);
        tx.accessed.add(p);
      }
      if (event && !tx.events.some((e) => e.kind === event.kind && e.path === event.path)) tx.events.push(event);
      for (const [domid, n] of delta) tx.nodeDelta.set(domid, (tx.nodeDelta.get(domid) ?? 0) + n);
      return;
    }
    const before = this.core.state;
    this.core.state = state;
    this.core.addNodeCounts(delta);
    if (event) this.core.fire([event], before, state);
  }
}

function addDelta(delta: Map<number, number>, domid: number, n: number): void {
  delta.set(domid, (delta.get(domid) ?? 0) + n);
}

function owner(node: XsNode): number {
  return (node.perms[0] as XsPerm).domid;
}

// ---------------------------------------------------------------------------------------------
// Core: state shared by the store facade and its connections

class Core {
  state: TreeState;
  readonly quota: XsQuota;
  readonly privDomid: number;
  readonly conns = new Set<StoreConnection>();
  readonly introduced = new Set<number>();
  readonly targets = new Map<number, number>();
  readonly nodeCounts = new Map<number, number>();
  #generation = 0;

  constructor(opts: XenStoreOptions) {
    this.quota = { ...DEFAULT_XS_QUOTA, ...opts.quota };
    this.privDomid = opts.privDomid ?? 0;
    const priv = this.privDomid;
    const privOnly: readonly XsPerm[] = [{ domid: priv, perm: 'n' }];
    const mk = (children: ReadonlyMap<string, XsNode>, perms: readonly XsPerm[] = privOnly): XsNode => ({
      value: EMPTY,
      perms,
      children,
      generation: this.nextGeneration(),
    });
    // core.c setup_structure: "/", "/tool", "/tool/xenstored", and the two special nodes;
    // @releaseDomain is readable by every domain (DOMID_ANY), @introduceDomain by dom0 only.
    const xenstored = mk(NO_CHILDREN);
    const tool = mk(new Map([['xenstored', xenstored]]));
    const root = mk(new Map([['tool', tool]]));
    this.state = {
      root,
      specials: new Map([
        ['@releaseDomain', mk(NO_CHILDREN, [{ domid: priv, perm: 'n' }, { domid: DOMID_ANY, perm: 'r' }])],
        ['@introduceDomain', mk(NO_CHILDREN)],
      ]),
    };
    this.nodeCounts.set(priv, 3);
    this.introduced.add(priv);
  }

  nextGeneration(): number {
    return ++this.#generation;
  }

  get generation(): number {
    return this.#generation;
  }

  caller(domid: number): XsCaller {
    return { domid, privileged: domid === this.privDomid, target: this.targets.get(domid) };
  }

  nodeCount(domid: number): number {
    return this.nodeCounts.get(domid) ?? 0;
  }

  addNodeCounts(delta: ReadonlyMap<number, number>): void {
    for (const [domid, n] of delta) {
      const v = this.nodeCount(domid) + n;
      if (v === 0) this.nodeCounts.delete(domid);
      else this.nodeCounts.set(domid, v);
    }
  }

  /** `limit` exceeded by `value`? 0 means unlimited. */
  static over(value: number, limit: number): boolean {
    return limit > 0 && value > limit;
  }

  // --- watches ---

  /** Deliver `events` (from one operation or one commit) to every matching watch. */
  fire(events: readonly XsChange[], before: TreeState, after: TreeState): void {
    for (const ev of events) {
      for (const conn of [...this.conns]) conn._deliver(ev, before, after);
    }
  }

  /** Whether `caller` may be told about `path` (watch.c watch_permitted). */
  eventVisible(caller: XsCaller, ev: XsChange, epath: string, before: TreeState, after: TreeState): boolean {
    if (caller.privileged) return true;
    const readable = (n: XsNode | undefined): boolean => n !== undefined && (permFor(caller, n.perms) & XS_PERM_READ) !== 0;
    if (ev.kind === 'rm') {
      // The nodes are gone afterwards: judge by the tree before the removal. An event for a
      // watch below the removed node (epath = the watch's path) may name a node that never
      // existed; then the removed node itself decides.
      const path = lookup(before, epath) ? epath : ev.path;
      return readable(lookup(before, path)) || readable(lookup(before, parentPath(path)));
    }
    if (ev.kind === 'change' && ev.oldPerms && (permFor(caller, ev.oldPerms) & XS_PERM_READ) !== 0) return true;
    return readable(lookup(after, epath)) || readable(lookup(after, parentPath(epath)));
  }
}

// ---------------------------------------------------------------------------------------------
// The store

/** A XenStore database: the tree, the domains known to it, and the connections using it. */
export class XenStore {
  readonly #core: Core;

  constructor(opts: XenStoreOptions = {}) {
    this.#core = new Core(opts);
  }

  get quota(): XsQuota {
    return this.#core.quota;
  }

  get privDomid(): number {
    return this.#core.privDomid;
  }

  /** Current value of the store-wide generation counter. */
  get generation(): number {
    return this.#core.generation;
  }

  /** Open a connection for `domid`: its watches and transactions live and die with it. */
  connect(domid: number, onWatchEvent: WatchEventSink): StoreConnection {
    const conn = new StoreConnection(this.#core, domid, onWatchEvent);
    this.#core.conns.add(conn);
    return conn;
  }

  /** Nodes currently owned by `domid` (what the "nodes" quota counts). */
  nodeCount(domid: number): number {
    return this.#core.nodeCount(domid);
  }

  /** The node at an absolute or '@' path, without permission checks; undefined if absent. */
  inspect(path: string): XsNodeInfo | undefined {
    const n = lookup(this.#core.state, path);
    return n && { value: n.value, perms: n.perms, children: [...n.children.keys()], generation: n.generation };
  }

  isDomainIntroduced(domid: number): boolean {
    return this.#core.introduced.has(domid);
  }

  /**
   * Start serving `domid` (XS_INTRODUCE's effect on the database, plus what the toolstack does
   * first): make sure /local/domain/<domid> exists and is owned by `domid` (creating missing
   * parents owned by dom0), then fire @introduceDomain. Returns false, and changes nothing, if
   * the domain was already introduced.
   */
  introduceDomain(domid: number): XsResult<boolean> {
    const core = this.#core;
    if (!Number.isInteger(domid) || domid < 0 || domid >= DOMID_FIRST_RESERVED) return fail('badDomid');
    if (core.introduced.has(domid)) return ok(false);
    const sys = core.caller(core.privDomid);
    const view = new View(core, undefined);
    const path = domainPath(domid);
    if (!view.get(path)) {
      const r = createNodes(core, view, sys, path, EMPTY, domid);
      if (!r.ok) return r;
    }
    const node = view.get(path) as XsNode;
    if (owner(node) !== domid) {
      const perms: XsPerm[] = [{ domid, perm: (node.perms[0] as XsPerm).perm }, ...node.perms.slice(1)];
      const r = setNodePerms(core, view, sys, path, node, perms);
      if (!r.ok) return r;
    }
    core.introduced.add(domid);
    core.fire([{ kind: 'special', path: '@introduceDomain' }], core.state, core.state);
    return ok(true);
  }

  /**
   * Stop serving `domid` (XS_RELEASE, or the domain died): its connections lose their watches and
   * transactions and are closed; every node it owns is removed with its subtree (watches fire as
   * for RM); its entries are dropped from other nodes' ACLs; then @releaseDomain fires
   * (domain.c do_release / destroy_domain / domain_tree_remove).
   */
  releaseDomain(domid: number): XsResult<void> {
    const core = this.#core;
    if (domid === core.privDomid) return fail('badDomid');
    if (!core.introduced.has(domid)) return fail('noDomain');
    for (const conn of [...core.conns]) if (conn.domid === domid) conn.close();
    core.introduced.delete(domid);
    core.targets.delete(domid);
    for (const [d, t] of [...core.targets]) if (t === domid) core.targets.delete(d);

    // Find the nodes it owns (whole subtrees go) and the ACLs that name it.
    const removals: string[] = [];
    const strips: string[] = [];
    const names = (n: XsNode): boolean => n.perms.some((p, i) => i > 0 && p.domid === domid);
    const walk = (p: string, n: XsNode): void => {
      if (owner(n) === domid && p !== '/') {
        removals.push(p);
        return;
      }
      if (names(n)) strips.push(p);
      for (const [name, c] of n.children) walk(childPath(p, name), c);
    };
    walk('/', core.state.root);
    for (const [p, n] of core.state.specials) if (names(n)) strips.push(p);

    // ACL edits are bookkeeping: no generation change, no watch (xenstored uses write_node_raw).
    let state = core.state;
    for (const p of strips) {
      const n = lookup(state, p) as XsNode;
      state = replaceNode(state, p, { ...n, perms: n.perms.filter((e, i) => i === 0 || e.domid !== domid) });
    }
    core.state = state;
    const sys = core.caller(core.privDomid);
    for (const p of removals) {
      const view = new View(core, undefined);
      const node = view.get(p);
      if (node) removeNode(core, view, sys, p, node);
    }
    core.fire([{ kind: 'special', path: '@releaseDomain' }], core.state, core.state);
    return OK_VOID;
  }

  /** XS_SET_TARGET: `domid` gets the rights of `target` (both must be introduced). */
  setTarget(domid: number, target: number): XsResult<void> {
    const core = this.#core;
    if (!core.introduced.has(domid) || !core.introduced.has(target)) return fail('noDomain');
    core.targets.set(domid, target);
    return OK_VOID;
  }
}

// ---------------------------------------------------------------------------------------------
// Operations shared by connections and the domain helpers

/**
 * The node at `path` if `caller` has all of `need`; else EACCES, or ENOENT if it does not exist
 * and the nearest existing ancestor grants the caller any of `need` (so a domain cannot probe
 * for nodes it may not see: core.c get_node_chk_perm / errno_from_parents).
 */
function getChecked(view: View, caller: XsCaller, path: string, need: number): XsResult<XsNode> {
  const node = view.get(path);
  if (node) return (permFor(caller, node.perms) & need) === need ? ok(node) : fail('denied');
  let p = path;
  while (p !== '/') {
    p = parentPath(p);
    const anc = view.get(p);
    if (anc) return (permFor(caller, anc.perms) & need) !== 0 ? fail('noEntry') : fail('denied');
  }
  return fail('denied');
}

function sizeOk(core: Core, caller: XsCaller, node: XsNode): boolean {
  return caller.privileged || !Core.over(xsNodeSize({ ...node, children: node.children.keys() }), core.quota.nodeSize);
}

/**
 * Create `path` and any missing parents (core.c construct_node/create_node). Each new node copies
 * its parent's ACL; an unprivileged creator becomes the owner of what it creates. `leafOwner`
 * (host use only) makes another domain the owner of `path` itself.
 */
function createNodes(core: Core, view: View, caller: XsCaller, path: string, value: Uint8Array, leafOwner?: number): XsResult<void> {
  const missing = [path];
  let anc = parentPath(path);
  let ancNode = view.get(anc);
  while (!ancNode) {
    missing.push(anc);
    anc = parentPath(anc);
    ancNode = view.get(anc);
  }
  missing.reverse(); // top-down

  if (!caller.privileged) {
    const have = core.nodeCount(caller.domid) + view.pendingNodes(caller.domid);
    if (Core.over(have + missing.length, core.quota.nodesPerDomain)) return fail('quotaNodes');
  }

  const permsOf: (readonly XsPerm[])[] = [];
  let parentPerms = ancNode.perms;
  for (let i = 0; i < missing.length; i++) {
    const newOwner = leafOwner !== undefined && i === missing.length - 1 ? leafOwner : caller.privileged ? undefined : caller.domid;
    const perms =
      newOwner === undefined ? parentPerms : [{ domid: newOwner, perm: (parentPerms[0] as XsPerm).perm }, ...parentPerms.slice(1)];
    permsOf.push(perms);
    parentPerms = perms;
  }

  const delta = new Map<number, number>();
  let sub: XsNode | undefined;
  for (let i = missing.length - 1; i >= 0; i--) {
    const children: ReadonlyMap<string, XsNode> = sub
      ? new Map([[basename(missing[i + 1] as string), sub]])
      : NO_CHILDREN;
    const perms = permsOf[i] as readonly XsPerm[];
    sub = { value: i === missing.length - 1 ? value : EMPTY, perms, children, generation: core.nextGeneration() };
    if (!sizeOk(core, caller, sub)) return fail('quotaNodeSize');
    addDelta(delta, (perms[0] as XsPerm).domid, 1);
  }
  const top = sub as XsNode;
  const newAnc: XsNode = {
    ...ancNode,
    children: new Map(ancNode.children).set(basename(missing[0] as string), top),
    generation: core.nextGeneration(),
  };
  if (!sizeOk(core, caller, newAnc)) return fail('quotaNodeSize');
  const state = replaceNode(view.state, anc, newAnc);
  view.apply(state, [anc, ...missing], { kind: 'change', path }, delta);
  return OK_VOID;
}

/** Remove `path` (which exists, and is not "/") with its whole subtree. */
function removeNode(core: Core, view: View, _caller: XsCaller, path: string, node: XsNode): void {
  const pp = parentPath(path);
  const parent = view.get(pp) as XsNode;
  const gone = subtree(path, node);
  const delta = new Map<number, number>();
  for (const [, n] of gone) addDelta(delta, owner(n), -1);
  const children = new Map(parent.children);
  children.delete(basename(path));
  const state = replaceNode(view.state, pp, { ...parent, children, generation: core.nextGeneration() });
  view.apply(state, [pp, ...gone.map(([p]) => p)], { kind: 'rm', path }, delta);
}

function setNodePerms(core: Core, view: View, caller: XsCaller, path: string, node: XsNode, perms: readonly XsPerm[]): XsResult<void> {
  const updated: XsNode = { ...node, perms, generation: core.nextGeneration() };
  if (!sizeOk(core, caller, updated)) return fail('quotaNodeSize');
  const delta = new Map<number, number>();
  if (!isSpecialPath(path)) {
    addDelta(delta, owner(node), -1);
    addDelta(delta, owner(updated), 1);
  }
  view.apply(replaceNode(view.state, path, updated), [path], { kind: 'change', path, oldPerms: node.perms }, delta);
  return OK_VOID;
}

// ---------------------------------------------------------------------------------------------
// A connection: one client's view, its watches and transactions

/**
 * One client of the store (a guest's ring, or a socket client). Every operation takes the
 * transaction id from the request header: 0 for none.
 */
export class StoreConnection {
  readonly domid: number;
  readonly #core: Core;
  readonly #sink: WatchEventSink;
  readonly #watches: Watch[] = [];
  readonly #txs = new Map<number, Transaction>();
  #nextTxId = 1;
  #closed = false;

  /** @internal Use XenStore.connect(). */
  constructor(core: Core, domid: number, sink: WatchEventSink) {
    this.#core = core;
    this.domid = domid;
    this.#sink = sink;
  }

  get closed(): boolean {
    return this.#closed;
  }

  get privileged(): boolean {
    return this.domid === this.#core.privDomid;
  }

  get watchCount(): number {
    return this.#watches.length;
  }

  get transactionCount(): number {
    return this.#txs.size;
  }

  /** Whether `txId` names an open transaction of this connection (0 never does). */
  hasTransaction(txId: number): boolean {
    return this.#txs.has(txId);
  }

  #caller(): XsCaller {
    if (this.#closed) throw new Error(`xenstore: connection of dom${this.domid} used after close`);
    return this.#core.caller(this.domid);
  }

  #view(txId: number): XsResult<View> {
    if (txId === 0) return ok(new View(this.#core, undefined));
    const tx = this.#txs.get(txId);
    return tx ? ok(new View(this.#core, tx)) : fail('noTransaction');
  }

  /** Resolve the tx and path shared by most operations. */
  #prep(txId: number, path: string, allowSpecial: boolean): XsResult<{ view: View; name: string; caller: XsCaller }> {
    const caller = this.#caller();
    const v = this.#view(txId);
    if (!v.ok) return v;
    const name = canonicalize(this.domid, path, allowSpecial);
    if (name === undefined) return fail('badPath');
    return ok({ view: v.value, name, caller });
  }

  // --- database operations ---

  /** XS_READ: the node's value. */
  read(txId: number, path: string): XsResult<Uint8Array> {
    const p = this.#prep(txId, path, false);
    if (!p.ok) return p;
    const n = getChecked(p.value.view, p.value.caller, p.value.name, XS_PERM_READ);
    return n.ok ? ok(n.value.value.slice()) : n;
  }

  /** XS_WRITE: set the value, creating the node and missing parents. Strings are stored as UTF-8. */
  write(txId: number, path: string, value: Uint8Array | string): XsResult<void> {
    const p = this.#prep(txId, path, false);
    if (!p.ok) return p;
    const { view, name, caller } = p.value;
    const bytes = typeof value === 'string' ? new TextEncoder().encode(value) : value.slice();
    const n = getChecked(view, caller, name, XS_PERM_WRITE);
    if (!n.ok) return n.failure === 'noEntry' ? createNodes(this.#core, view, caller, name, bytes) : n;
    const updated: XsNode = { ...n.value, value: bytes, generation: this.#core.nextGeneration() };
    if (!sizeOk(this.#core, caller, updated)) return fail('quotaNodeSize');
    view.apply(replaceNode(view.state, name, updated), [name], { kind: 'change', path: name }, new Map());
    return OK_VOID;
  }

  /** XS_MKDIR: make sure the node exists (an existing node is left as it is, and no watch fires). */
  mkdir(txId: number, path: string): XsResult<void> {
    const p = this.#prep(txId, path, false);
    if (!p.ok) return p;
    const { view, name, caller } = p.value;
    const n = getChecked(view, caller, name, XS_PERM_WRITE);
    if (n.ok) return OK_VOID;
    return n.failure === 'noEntry' ? createNodes(this.#core, view, caller, name, EMPTY) : n;
  }

  /**
   * XS_RM: remove the node and its subtree. Removing a node that does not exist is fine if its
   * parent exists (ENOENT otherwise). "/" cannot be removed.
   */
  rm(txId: number, path: string): XsResult<void> {
    const p = this.#prep(txId, path, false);
    if (!p.ok) return p;
    const { view, name, caller } = p.value;
    const n = getChecked(view, caller, name, XS_PERM_WRITE);
    if (!n.ok) {
      if (n.failure !== 'noEntry') return n;
      return view.get(parentPath(name)) ? OK_VOID : fail('noEntry');
    }
    if (name === '/') return fail('rmRoot');
    removeNode(this.#core, view, caller, name, n.value);
    return OK_VOID;
  }

  /** XS_DIRECTORY: the children's leaf names, in creation order. */
  directory(txId: number, path: string): XsResult<string[]> {
    const r = this.directoryWithGeneration(txId, path);
    return r.ok ? ok(r.value.children) : r;
  }

  /** XS_DIRECTORY_PART's view: the children and the node's generation count. */
  directoryWithGeneration(txId: number, path: string): XsResult<{ children: string[]; generation: number }> {
    const p = this.#prep(txId, path, false);
    if (!p.ok) return p;
    const n = getChecked(p.value.view, p.value.caller, p.value.name, XS_PERM_READ);
    return n.ok ? ok({ children: [...n.value.children.keys()], generation: n.value.generation }) : n;
  }

  /** XS_GET_PERMS (also for '@' special nodes). */
  getPerms(txId: number, path: string): XsResult<readonly XsPerm[]> {
    const p = this.#prep(txId, path, true);
    if (!p.ok) return p;
    const n = getChecked(p.value.view, p.value.caller, p.value.name, XS_PERM_READ);
    return n.ok ? ok(n.value.perms) : n;
  }

  /**
   * XS_SET_PERMS: replace the ACL. Only the owner (or dom0) may; only dom0 may change the owner.
   * Also for '@' special nodes, which is how a domain is allowed to watch @introduceDomain.
   */
  setPerms(txId: number, path: string, perms: readonly XsPerm[]): XsResult<void> {
    const caller = this.#caller();
    if (perms.length === 0) return fail('badPerms');
    if (!caller.privileged && Core.over(perms.length, this.#core.quota.permsPerNode)) return fail('quotaPerms');
    const p = this.#prep(txId, path, true);
    if (!p.ok) return p;
    const { view, name } = p.value;
    const n = getChecked(view, caller, name, XS_PERM_WRITE | XS_PERM_OWNER);
    if (!n.ok) return n;
    if (!caller.privileged && (perms[0] as XsPerm).domid !== owner(n.value)) return fail('ownerChange');
    return setNodePerms(this.#core, view, caller, name, n.value, perms.map((e) => ({ domid: e.domid, perm: e.perm })));
  }

  // --- watches ---

  /**
   * XS_WATCH: watch `path` (absolute, relative, or '@' special) with `token`. The first event,
   * naming `path` exactly as given, is delivered before this returns.
   */
  watch(path: string, token: string): XsResult<void> {
    const caller = this.#caller();
    const name = canonicalize(this.domid, path, true);
    if (name === undefined) return fail('badPath');
    if (this.#watches.some((w) => w.path === name && w.token === token)) return fail('watchExists');
    if (!caller.privileged && Core.over(this.#watches.length + 1, this.#core.quota.watchesPerConnection)) {
      return fail('quotaWatches');
    }
    const w: Watch = { path: name, token, relative: isRelativePath(path) };
    this.#watches.push(w);
    this.#sink(this.#watchPath(w, name), token);
    return OK_VOID;
  }

  /** XS_UNWATCH: remove the watch registered with this path and token. */
  unwatch(path: string, token: string): XsResult<void> {
    this.#caller();
    const name = canonicalize(this.domid, path, true);
    if (name === undefined) return fail('badPath');
    const i = this.#watches.findIndex((w) => w.path === name && w.token === token);
    if (i < 0) return fail('noWatch');
    this.#watches.splice(i, 1);
    return OK_VOID;
  }

  /** XS_RESET_WATCHES: drop every watch and transaction of this connection. */
  resetWatches(): void {
    this.#watches.length = 0;
    this.#txs.clear();
  }

  #watchPath(w: Watch, absolute: string): string {
    return w.relative ? absolute.slice(domainPath(this.domid).length + 1) : absolute;
  }

  /** @internal Deliver one change to this connection's matching watches (watch.c fire_watches). */
  _deliver(ev: XsChange, before: TreeState, after: TreeState): void {
    if (this.#closed || this.#watches.length === 0) return;
    const caller = this.#core.caller(this.domid);
    const visible = new Map<string, boolean>();
    for (const w of [...this.#watches]) {
      let epath: string | undefined;
      if (ev.kind === 'special') {
        if (w.path === ev.path) epath = ev.path;
      } else if (!isSpecialPath(w.path)) {
        if (isChildPath(ev.path, w.path)) epath = ev.path;
        // xenstore.txt: the recursive removal of a parent of <wpath> reports <wpath> itself.
        else if (ev.kind === 'rm' && isChildPath(w.path, ev.path)) epath = w.path;
      }
      if (epath === undefined) continue;
      let v = visible.get(epath);
      if (v === undefined) {
        v = this.#core.eventVisible(caller, ev, epath, before, after);
        visible.set(epath, v);
      }
      if (v && !this.#closed) this.#sink(this.#watchPath(w, epath), w.token);
    }
  }

  // --- transactions ---

  /**
   * XS_TRANSACTION_START. `txId` is the request header's: starting a transaction inside one is
   * EBUSY (and an unknown id ENOENT). Returns the new id (never 0).
   */
  transactionStart(txId = 0): XsResult<number> {
    const caller = this.#caller();
    if (txId !== 0) return fail(this.#txs.has(txId) ? 'nestedTransaction' : 'noTransaction');
    if (!caller.privileged && Core.over(this.#txs.size + 1, this.#core.quota.transactionsPerConnection)) {
      return fail('quotaTransactions');
    }
    let id: number;
    do {
      id = this.#nextTxId;
      this.#nextTxId = (this.#nextTxId + 1) >>> 0;
    } while (id === 0 || this.#txs.has(id));
    const state = this.#core.state;
    this.#txs.set(id, {
      id,
      base: state,
      state,
      accessed: new Set(),
      modified: new Set(),
      events: [],
      nodeDelta: new Map(),
    });
    return ok(id);
  }

  /**
   * XS_TRANSACTION_END: commit (`true`) or abort. Either way the transaction is gone afterwards.
   * A commit fails with EAGAIN if anything it read or wrote changed since it started.
   */
  transactionEnd(txId: number, commit: boolean): XsResult<void> {
    const caller = this.#caller();
    const tx = this.#txs.get(txId);
    if (!tx) return fail('noTransaction');
    this.#txs.delete(txId);
    if (!commit) return OK_VOID;
    return commitTransaction(this.#core, caller, tx);
  }

  /** Drop watches and transactions and leave the store. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.resetWatches();
    this.#closed = true;
    this.#core.conns.delete(this);
  }
}

function commitTransaction(core: Core, caller: XsCaller, tx: Transaction): XsResult<void> {
  const current = core.state;
  const gen = (s: TreeState, p: string): number | undefined => lookup(s, p)?.generation;
  for (const p of tx.accessed) {
    if (gen(tx.base, p) !== gen(current, p)) return fail('conflict');
  }
  if (!caller.privileged) {
    const d = tx.nodeDelta.get(caller.domid) ?? 0;
    if (d > 0 && Core.over(core.nodeCount(caller.domid) + d, core.quota.nodesPerDomain)) return fail('quotaNodes');
  }
  // Graft: parents before children. Every modified node that still exists in the transaction's
  // tree takes its value, ACL and child list from there; for each child it keeps the current
  // global subtree when there is one (untouched by the transaction, maybe changed by others
  // meanwhile), else the transaction's (new in it). Removed nodes vanish with their parent's
  // new child list.
  const depth = (p: string): number => (isSpecialPath(p) ? 0 : pathComponents(p).length);
  const paths = [...tx.modified].filter((p) => lookup(tx.state, p) !== undefined).sort((a, b) => depth(a) - depth(b));
  let state = current;
  for (const p of paths) {
    const mine = lookup(tx.state, p) as XsNode;
    const cur = lookup(state, p);
    if (!cur && p !== '/' && !isSpecialPath(p) && !lookup(state, parentPath(p))) {
      throw new Error(`xenstore: commit of tx ${tx.id}: no parent for ${p}`);
    }
    const children = new Map<string, XsNode>();
    for (const [name, c] of mine.children) children.set(name, cur?.children.get(name) ?? c);
    state = replaceNode(state, p, { value: mine.value, perms: mine.perms, children, generation: core.nextGeneration() });
  }
  core.state = state;
  core.addNodeCounts(tx.nodeDelta);
  core.fire(tx.events, current, state);
  return OK_VOID;
}
