// Toolstack requests served on the domain thread (xl pause/unpause/shutdown/mem-set/rename → libxl_domain_pause, libxl_domain_shutdown, libxl_set_memory_target, libxl_domain_rename): what needs the running domain's own state or its XenStore.
import type { Domain } from '../hypervisor/domain.js';

export const DOMAIN_THREAD_OPS = new Set(['info', 'pause', 'unpause', 'shutdown', 'mem-set', 'rename']);

export interface DomainOpTarget {
  readonly d: Domain;
  /** Stop or resume entering KVM_RUN (Xen's domain_pause_by_systemcontroller / domain_unpause). */
  setPaused(paused: boolean): void;
  paused(): boolean;
  /** Write a node as Domain-0 (absolute path); an error string when it cannot. */
  xsWrite(path: string, value: string): string | undefined;
  readonly uuid: string;
}

export type DomainOpReply = { ok: true; [k: string]: unknown } | { ok: false; error: string };

/** Shutdown requests a PV guest's xenbus watcher takes (Linux drivers/xen/manage.c shutdown_handlers). */
const SHUTDOWN_REQUESTS = new Set(['poweroff', 'reboot', 'halt', 'suspend']);

export function domainThreadOp(m: { op?: unknown; [k: string]: unknown }, t: DomainOpTarget): DomainOpReply {
  const dp = `/local/domain/${t.d.domid}`;
  const written = (error: string | undefined): DomainOpReply => error ? { ok: false, error } : { ok: true };
  switch (m.op) {
    case 'info':
      // tot_pages as Xen counts them: the domain's frames minus those ballooned out.
      return { ok: true, currentPages: t.d.nrPages - t.d.releasedFrames.size, maxPages: t.d.nrPages, paused: t.paused() };
    case 'pause': t.setPaused(true); return { ok: true };
    case 'unpause': t.setPaused(false); return { ok: true };
    case 'shutdown': {
      // libxl__domain_pvcontrol_write: the request goes to control/shutdown, which the guest watches.
      const reason = String(m.reason);
      if (!SHUTDOWN_REQUESTS.has(reason)) return { ok: false, error: `unknown shutdown request '${reason}'` };
      return written(t.xsWrite(`${dp}/control/shutdown`, reason));
    }
    case 'mem-set': {
      // libxl_set_memory_target: memory/target in KiB; the guest's balloon driver (drivers/xen/xen-balloon.c watch_target) follows it.
      const kib = Number(m.targetKiB);
      if (!Number.isInteger(kib) || kib <= 0) return { ok: false, error: 'bad memory target' };
      return written(t.xsWrite(`${dp}/memory/target`, String(kib)));
    }
    case 'rename': {
      const name = String(m.name);
      return written(t.xsWrite(`${dp}/name`, name) ?? t.xsWrite(`/vm/${t.uuid}/name`, name));
    }
    default:
      return { ok: false, error: `unknown request '${String(m.op)}'` };
  }
}
