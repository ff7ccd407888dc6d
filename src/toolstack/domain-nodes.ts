// The XenStore nodes the toolstack writes for a new domain and removes when it is gone (tools/libs/light/libxl_create.c libxl__domain_make / libxl__domain_build_info, libxl_domain.c destroy).
import type { StoreConnection, XenStore } from '../xenstore/store.js';
import { createDevice, type XenbusDevice } from '../xenbus/device.js';

export interface DomainNodeInfo {
  domid: number;
  name: string;
  uuid: string;
  memoryKiB: number;
  vcpus: number;
  storePort: number;
  storeMfn: number;
  consolePort: number;
  consoleMfn: number;
}

/** Write /local/domain/<id> and /vm/<uuid> as libxl does, with the guest's read-only and writable parts. `dom0` is a privileged connection. */
export function writeDomainNodes(dom0: StoreConnection, i: DomainNodeInfo): void {
  const dp = `/local/domain/${i.domid}`;
  const tx = dom0.transactionStart();
  const t = tx.ok ? tx.value : 0;
  const writes: [string, string][] = [
    [`${dp}/name`, i.name], [`${dp}/domid`, String(i.domid)], [`${dp}/vm`, `/vm/${i.uuid}`],
    [`${dp}/memory/static-max`, String(i.memoryKiB)], [`${dp}/memory/target`, String(i.memoryKiB)],
    [`${dp}/store/port`, String(i.storePort)], [`${dp}/store/ring-ref`, String(i.storeMfn)],
    [`/vm/${i.uuid}/name`, i.name], [`/vm/${i.uuid}/uuid`, i.uuid],
  ];
  for (let c = 0; c < i.vcpus; c++) writes.push([`${dp}/cpu/${c}/availability`, 'online']);
  for (const [p, val] of writes) dom0.write(t, p, val);
  // The guest owns its home and the directories it writes into (libxl: rwperm), reads the rest (roperm).
  const own = [{ domid: i.domid, perm: 'n' as const }];
  const ro = [{ domid: 0, perm: 'n' as const }, { domid: i.domid, perm: 'r' as const }];
  for (const sub of [dp, `${dp}/device`, `${dp}/control`, `${dp}/data`, `${dp}/drivers`, `${dp}/feature`, `${dp}/attr`, `${dp}/error`]) {
    dom0.mkdir(t, sub);
    dom0.setPerms(t, sub, own);
  }
  for (const sub of [`${dp}/control/shutdown`, `${dp}/control/sysrq`]) { dom0.write(t, sub, ''); dom0.setPerms(t, sub, own); }
  for (const key of ['platform-feature-multiprocessor-suspend', 'platform-feature-xs_reset_watches']) { dom0.write(t, `${dp}/control/${key}`, '1'); dom0.setPerms(t, `${dp}/control/${key}`, ro); }
  const roNodes = [`${dp}/name`, `${dp}/domid`, `${dp}/vm`, `${dp}/memory`, `${dp}/memory/static-max`, `${dp}/memory/target`, `${dp}/cpu`,
    `${dp}/store`, `${dp}/store/port`, `${dp}/store/ring-ref`];
  for (let c = 0; c < i.vcpus; c++) roNodes.push(`${dp}/cpu/${c}`, `${dp}/cpu/${c}/availability`);
  for (const p of roNodes) dom0.setPerms(t, p, ro);
  dom0.setPerms(t, `/vm/${i.uuid}`, ro);
  if (tx.ok) dom0.transactionEnd(t, true);
}

/**
 * The primary console as a xenbus device (libxl's console 0: /local/domain/<id>/console, read-only
 * for the guest, no handshake). Its ring is the start_info one the domain process already serves.
 */
export function createPrimaryConsole(store: XenStore, i: DomainNodeInfo, log: (l: string) => void): XenbusDevice<undefined> {
  const dev = createDevice<undefined>(store, {
    type: 'console', frontendDomid: i.domid, devid: 0,
    frontendReadOnlyNodes: { 'ring-ref': i.consoleMfn, port: i.consolePort, limit: 1048576, type: 'xenconsoled', output: 'pty', tty: '' },
  }, { log });
  dev.start({ type: 'console', connect: async () => {}, frontendChanged: () => {}, disconnect: () => {} }, undefined);
  return dev;
}

/** Remove what writeDomainNodes wrote (libxl__destroy_domid: xs_rm of the domain and vm paths). */
export function removeDomainNodes(dom0: StoreConnection, domid: number, uuid: string): void {
  dom0.rm(0, `/local/domain/${domid}`);
  dom0.rm(0, `/vm/${uuid}`);
}

/** The 16 bytes of a canonical UUID string (libxl_uuid_from_string); undefined if it is not one. */
export function parseUuid(text: string): Uint8Array | undefined {
  const hex = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(text) ? text.replace(/-/g, '') : undefined;
  return hex ? Uint8Array.from(hex.match(/../g)!, (h) => parseInt(h, 16)) : undefined;
}

export function formatUuid(bytes: Uint8Array): string {
  return [...bytes].map((b) => b.toString(16).padStart(2, '0')).join('').replace(/(.{8})(.{4})(.{4})(.{4})(.{12})/, '$1-$2-$3-$4-$5');
}
