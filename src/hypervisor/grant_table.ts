// Grant tables v1, the guest's side: setup_table, query_size, get/set_version (xen/common/grant_table.c). Frames live above guest RAM, as Xen-owned pages.
import { XEN_EINVAL, XEN_ENOSYS } from '../abi/errno.js';
import {
  GNTST_bad_domain, GNTST_bad_virt_addr, GNTST_permission_denied, GNTST_general_error, GNTST_okay, GNTTABOP_get_version, GNTTABOP_query_size, GNTTABOP_set_version,
  GNTTABOP_setup_table, GTF_permit_access, GNTTAB_RESERVED_CONSOLE, GNTTAB_RESERVED_XENSTORE,
} from '../abi/grant_table.js';
import { DOMID_SELF } from '../abi/xen.js';
import { HV, MAX_GRANT_FRAMES } from '../monitor/layout.js';
import type { Domain } from './domain.js';
import type { Vcpu } from './vcpu.js';

export class GrantTable {
  nrFrames = 1;
  constructor(readonly d: Domain) {}

  frameMfn(i: number): number { return (this.d.plan.hvBase + HV.grantFrames) / 4096 + i; }
  /** GPA of grant entry `ref` (v1: 8 bytes each). */
  entryGpa(ref: number): number { return this.d.plan.hvBase + HV.grantFrames + ref * 8; }
  get nrEntries(): number { return this.nrFrames * 512; }

  /** The toolstack fills the reserved console and xenstore entries for Domain-0 (xc_dom_gnttab_seed). */
  seed(consoleMfn: number, storeMfn: number): void {
    const m = this.d.mem;
    m.write32(this.entryGpa(GNTTAB_RESERVED_CONSOLE) + 4, consoleMfn); m.write16(this.entryGpa(GNTTAB_RESERVED_CONSOLE) + 2, 0);
    m.write16(this.entryGpa(GNTTAB_RESERVED_CONSOLE), GTF_permit_access);
    m.write32(this.entryGpa(GNTTAB_RESERVED_XENSTORE) + 4, storeMfn); m.write16(this.entryGpa(GNTTAB_RESERVED_XENSTORE) + 2, 0);
    m.write16(this.entryGpa(GNTTAB_RESERVED_XENSTORE), GTF_permit_access);
  }

  do_grant_table_op(v: Vcpu, cmd: number, arg: bigint, count: number): number {
    const gv = this.d.guestVirt(v);
    switch (cmd) {
      case GNTTABOP_setup_table: {
        if (count !== 1) return -XEN_EINVAL; // gnttab_setup_table takes exactly one
        for (let i = 0; i < count; i++) {
          const a = arg + BigInt(i * 24);
          const b = gv.view(a, 24);
          const dom = b.getUint16(0, true), nr = b.getUint32(4, true), list = b.getBigUint64(16, true);
          let status = GNTST_okay;
          if (dom === 0) status = GNTST_permission_denied;           // xsm_grant_setup: XSM_TARGET
          else if (dom !== DOMID_SELF && dom !== this.d.domid) status = GNTST_bad_domain;
          else if (nr > MAX_GRANT_FRAMES) status = GNTST_general_error;
          else {
            this.nrFrames = Math.max(this.nrFrames, nr);
            try { for (let f = 0; f < nr; f++) gv.write64(list + BigInt(f * 8), BigInt(this.frameMfn(f))); } catch { status = GNTST_bad_virt_addr; }
          }
          gv.write16(a + 8n, status & 0xffff);
        }
        return 0;
      }
      case GNTTABOP_query_size: {
        for (let i = 0; i < count; i++) {
          const a = arg + BigInt(i * 16);
          const dom = gv.read16(a);
          const out = new DataView(new ArrayBuffer(12));
          out.setUint32(0, this.nrFrames, true); out.setUint32(4, MAX_GRANT_FRAMES, true);
          out.setInt16(8, dom !== DOMID_SELF && dom !== this.d.domid ? GNTST_bad_domain : GNTST_okay, true);
          gv.copyTo(a + 4n, new Uint8Array(out.buffer));
        }
        return 0;
      }
      case GNTTABOP_set_version: {
        const ver = gv.read32(arg);
        if (ver === 1) return 0;
        gv.write32(arg, 1);
        return ver === 2 ? -XEN_ENOSYS : -XEN_EINVAL;
      }
      case GNTTABOP_get_version: {
        const dom = gv.read16(arg);
        if (dom !== DOMID_SELF && dom !== this.d.domid) return -XEN_EINVAL;
        gv.write32(arg + 4n, 1);
        return 0;
      }
      default: return -XEN_ENOSYS;
    }
  }
}
