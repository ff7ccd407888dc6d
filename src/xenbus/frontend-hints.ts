// What to tell a person when a guest never connects a device: which guest driver serves it (kvmtool guest_compat.c's idea; driver names from Linux drivers/{block/xen-blkfront.c, net/xen-netfront.c, tty/hvc/hvc_xen.c, video/fbdev/xen-fbfront.c, input/misc/xen-kbdfront.c}, build choices from Debian 12's config-6.1.0-*-{amd64,cloud-amd64}).
import type { XenbusDeviceType } from './paths.js';

export interface FrontendDriver {
  /** The Linux module (or built-in driver) that binds to device/<type>/<id>. */
  readonly module: string;
  readonly config: string;
  /** Debian 12 builds it as a loadable module, or into the kernel. */
  readonly builtin: boolean;
  /** How Debian ships it, for people. */
  readonly debian: string;
}

export const FRONTEND_DRIVERS: Readonly<Record<XenbusDeviceType, FrontendDriver>> = {
  vbd: { module: 'xen-blkfront', config: 'CONFIG_XEN_BLKDEV_FRONTEND', builtin: false, debian: 'a module in linux-image-amd64 and linux-image-cloud-amd64' },
  vif: { module: 'xen-netfront', config: 'CONFIG_XEN_NETDEV_FRONTEND', builtin: false, debian: 'a module in linux-image-amd64 and linux-image-cloud-amd64' },
  console: { module: 'hvc_xen', config: 'CONFIG_HVC_XEN_FRONTEND', builtin: true, debian: 'built into linux-image-amd64 and linux-image-cloud-amd64' },
  vfb: { module: 'xen-fbfront', config: 'CONFIG_XEN_FBDEV_FRONTEND', builtin: true, debian: 'built into linux-image-amd64 and linux-image-cloud-amd64' },
  vkbd: { module: 'xen-kbdfront', config: 'CONFIG_INPUT_XEN_KBDDEV_FRONTEND', builtin: true, debian: 'built into linux-image-amd64, absent from linux-image-cloud-amd64' },
};

/**
 * One line for a person: the device is there but the guest never drove it. Names the driver,
 * how Debian ships it, and the modalias udev/modprobe load it by (xen:<type>).
 */
export function neverConnectedHint(type: XenbusDeviceType, afterMs: number): string {
  const d = FRONTEND_DRIVERS[type];
  const load = d.builtin
    ? '; a kernel configured without it never connects this device'
    : `; it loads by modalias xen:${type}, so ${d.module}.ko must be in the guest's initramfs or root filesystem`;
  return (
    `the guest has not connected it after ${formatDelay(afterMs)}. ` +
    `Its frontend driver is ${d.module} (${d.config}; ${d.debian})${load}`
  );
}

function formatDelay(ms: number): string {
  return ms >= 1000 ? `${Math.round(ms / 1000)} s` : `${ms} ms`;
}
