// The management requests a domain answers on its control socket (JSON lines from xl.ts, the daemon, block.ts/network.ts): the part of libxl's domain
// operations that acts on the domain's registry record (state, memory target, name) and forwards the rest to the domain thread (domain-ops.ts, device
// hot-plug, save). Shared by the detached domain process (`pvbox create`) and `pvbox run`, so both kinds of guest obey the same verbs.
import { renameSync } from 'node:fs';
import type { ControlReply, ControlRequest } from './control-server.js';
import { type DomainRecord, renameDomain } from './registry.js';

const NAME_RE = /^[A-Za-z0-9_.-]{1,64}$/;

/** The running guest as the handler sees it: requests for its domain thread. */
export interface GuestRequester { request(req: ControlRequest, timeoutMs?: number): Promise<ControlReply> }

export interface DomainControlContext {
  /** The domain's record (the handler updates it and calls save()). */
  record(): DomainRecord;
  /** The guest now, or undefined between runs (a restart in progress, on_*=preserve). */
  guest(): GuestRequester | undefined;
  /** xl destroy: end the domain (the reply has gone out first). */
  destroy(why: string): void;
  /** Write the record to the registry. */
  save(): void;
  /** The domain's sockets for a record, in a fixed order: renamed with the domain. */
  socketPaths(r: DomainRecord): string[];
  log(line: string): void;
}

export function domainControlHandler(ctx: DomainControlContext): (req: ControlRequest) => Promise<ControlReply> {
  return async (req) => {
    const r = ctx.record();
    const g = ctx.guest();
    const live = () => r.state === 'running' || r.state === 'paused';
    const notRunning = (): ControlReply => ({ ok: false, error: `domain ${r.domid} is not running (${r.state})` });
    switch (req.op) {
      case 'status': {
        const info = g && live() ? await g.request({ op: 'info' }, 2000) : undefined;
        return { ok: true, record: r, ...(info?.ok ? { currentPages: info.currentPages } : {}) };
      }
      case 'destroy':
        setTimeout(() => ctx.destroy('xl destroy'), 20);
        return { ok: true };
      case 'pause': case 'unpause': {
        if (!g || !live()) return notRunning();
        const a = await g.request({ op: req.op });
        if (a.ok) { r.state = req.op === 'pause' ? 'paused' : 'running'; ctx.save(); }
        return a;
      }
      case 'shutdown':
        if (!g || !live()) return notRunning();
        return g.request({ op: 'shutdown', reason: req.reason });
      case 'mem-set': {
        const kib = Number(req.targetKiB);
        if (!Number.isInteger(kib) || kib < 1024) return { ok: false, error: 'bad memory size' };
        // Xen could let the balloon grow up to maxmem; pvbox has no memory beyond what the guest was built with.
        const limit = Math.min(r.maxmemMiB, r.memoryMiB);
        if (kib > limit * 1024) return { ok: false, error: `${Math.ceil(kib / 1024)} MiB is more than domain ${r.domid} can have (${limit} MiB: ${r.maxmemMiB < r.memoryMiB ? 'its mem-max' : 'the memory it was built with'})` };
        if (!g || !live()) return notRunning();
        const a = await g.request({ op: 'mem-set', targetKiB: kib });
        if (a.ok) { r.targetMiB = Math.floor(kib / 1024); ctx.save(); }
        return a;
      }
      case 'mem-max': {
        const mib = Number(req.maxMiB);
        if (!Number.isInteger(mib) || mib < 1) return { ok: false, error: 'bad memory size' };
        // libxl_domain_setmaxmem: "memory_static_max must be greater than or or equal to memory_dynamic_max".
        if (mib < r.targetMiB) return { ok: false, error: `${mib} MiB is below domain ${r.domid}'s current target (${r.targetMiB} MiB); lower it with mem-set first` };
        r.maxmemMiB = mib; ctx.save();
        return { ok: true };
      }
      case 'rename': {
        const name = String(req.name);
        if (!NAME_RE.test(name)) return { ok: false, error: `'${name}' is not a domain name (letters, digits, '.', '_', '-'; at most 64)` };
        const before = ctx.socketPaths(r);
        try { await renameDomain(r, name); } catch (e) { return { ok: false, error: (e as Error).message }; }
        const after = ctx.socketPaths(r);
        for (const [k, old] of before.entries()) { try { renameSync(old, after[k]!); } catch { /* a missing socket stays missing */ } }
        ctx.log(`renamed to ${name}`);
        if (g && live()) await g.request({ op: 'rename', name });
        return { ok: true };
      }
      case 'block-attach': case 'block-detach': case 'network-attach': case 'network-detach':
        if (!g || !live()) return notRunning();
        return g.request(req, 60_000);
      case 'save':
        // xl save: the guest suspends, its state goes to the file, then the domain is gone (its owner sees 'suspend').
        if (!g || r.state !== 'running') return notRunning();
        return g.request(req, 180_000);
      default:
        return { ok: false, error: `unknown request '${req.op}'` };
    }
  };
}

/**
 * Requests to a domain thread over its input ring (INPUT_CONTROL records carrying an id), answered
 * by its 'control-reply' messages; each gets an answer: the reply, a timeout, or the domain's end.
 */
export class DomainThreadRequests implements GuestRequester {
  private readonly pending = new Map<number, (r: ControlReply) => void>();
  private nextId = 1;
  private over = false;

  /** `push` writes one INPUT_CONTROL record; false when the ring is full. */
  constructor(private readonly push: (bytes: Uint8Array) => boolean) {}

  request(req: ControlRequest, timeoutMs = 30_000): Promise<ControlReply> {
    if (this.over) return Promise.resolve({ ok: false, error: 'the domain has ended' });
    return new Promise((resolve) => {
      const id = this.nextId++;
      const timer = setTimeout(() => { this.pending.delete(id); resolve({ ok: false, error: `the domain did not answer within ${timeoutMs / 1000} s` }); }, timeoutMs);
      this.pending.set(id, (r) => { clearTimeout(timer); resolve(r); });
      if (!this.push(Buffer.from(JSON.stringify({ ...req, id })))) { this.pending.delete(id); clearTimeout(timer); resolve({ ok: false, error: 'the domain is not taking requests' }); }
    });
  }

  /** A 'control-reply' message from the domain thread. */
  answer(id: number, result: ControlReply): void {
    const done = this.pending.get(id);
    this.pending.delete(id);
    done?.(result);
  }

  /** The domain ended: every open request is answered so, and later ones at once. */
  end(): void {
    this.over = true;
    for (const done of this.pending.values()) done({ ok: false, error: 'the domain has ended' });
    this.pending.clear();
  }
}
