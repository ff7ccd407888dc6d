// Where a PV device's XenStore directories live and who may touch them, as xl writes them (xen tools/libs/light/libxl_device.c: libxl__device_frontend_path, libxl__device_backend_path, the permissions in libxl__device_generic_add; Linux xenbus_client.c error_path).
import type { XsPerm } from '../xenstore/perms.js';

/** The device classes pvbox serves (libxl__device_kind names, which are also the XenStore directory names). */
export const XENBUS_DEVICE_TYPES = ['vbd', 'vif', 'console', 'vfb', 'vkbd'] as const;
export type XenbusDeviceType = (typeof XENBUS_DEVICE_TYPES)[number];

export function isXenbusDeviceType(s: string): s is XenbusDeviceType {
  return (XENBUS_DEVICE_TYPES as readonly string[]).includes(s);
}

/**
 * The primary console (console 0) is the one device without a xenbus handshake: the guest finds
 * its ring in start_info, and libxl keeps its frontend directory at /local/domain/<domid>/console
 * (not device/console/0), owned by the backend domain so that the guest cannot change the
 * vnc-port and tty nodes kept there (libxl_device.c: "Console 0 is a special case").
 */
export function isPrimaryConsole(type: XenbusDeviceType, devid: number): boolean {
  return type === 'console' && devid === 0;
}

/** /local/domain/<domid>/device/<type>/<devid>, or /local/domain/<domid>/console for console 0. */
export function frontendPath(type: XenbusDeviceType, frontendDomid: number, devid: number): string {
  if (isPrimaryConsole(type, devid)) return `/local/domain/${frontendDomid}/console`;
  return `/local/domain/${frontendDomid}/device/${type}/${devid}`;
}

/** /local/domain/<backend>/backend/<type>/<frontend domid>/<devid>. */
export function backendPath(type: XenbusDeviceType, backendDomid: number, frontendDomid: number, devid: number): string {
  return `/local/domain/${backendDomid}/backend/${type}/${frontendDomid}/${devid}`;
}

/** The frontend directory and the nodes under it: the guest owns them, the backend domain may read. */
export function frontendPerms(frontendDomid: number, backendDomid: number): XsPerm[] {
  return [
    { domid: frontendDomid, perm: 'n' },
    { domid: backendDomid, perm: 'r' },
  ];
}

/**
 * The backend directory, and frontend nodes the guest must not change (libxl's ro_frontend_perms:
 * console 0's directory, ring-ref and port): the backend domain owns them, the guest may read.
 */
export function backendPerms(frontendDomid: number, backendDomid: number): XsPerm[] {
  return [
    { domid: backendDomid, perm: 'n' },
    { domid: frontendDomid, perm: 'r' },
  ];
}

/**
 * Where Linux's xenbus_dev_error() leaves a message for a device: error/<nodename>/error under the
 * domain that hit the error, <nodename> being the device path relative to that domain's home
 * (backend/vbd/1/51712 for a backend, device/vbd/51712 for a frontend).
 */
export function errorNodePath(devicePath: string, domid: number): string | undefined {
  const home = `/local/domain/${domid}/`;
  if (!devicePath.startsWith(home)) return undefined;
  return `${home}error/${devicePath.slice(home.length)}/error`;
}
