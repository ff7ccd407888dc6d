// Physical-device operations: xen/include/public/physdev.h (PHYSDEVOP_* of __HYPERVISOR_physdev_op).
// A PV domU uses set_iopl, set_iobitmap and (tries) pirq_eoi_gmfn_v2; the dom0/PCI ones are listed for decoding only.
import { layout } from './layout.js';

export const PHYSDEVOP_IRQ_UNMASK_NOTIFY = 4;
export const PHYSDEVOP_irq_status_query = 5;
export const PHYSDEVOP_set_iopl = 6;
export const PHYSDEVOP_set_iobitmap = 7;
export const PHYSDEVOP_apic_read = 8;
export const PHYSDEVOP_apic_write = 9;
export const PHYSDEVOP_alloc_irq_vector = 10;
export const PHYSDEVOP_free_irq_vector = 11;
export const PHYSDEVOP_eoi = 12;
export const PHYSDEVOP_map_pirq = 13;
export const PHYSDEVOP_unmap_pirq = 14;
export const PHYSDEVOP_manage_pci_add = 15;
export const PHYSDEVOP_manage_pci_remove = 16;
export const PHYSDEVOP_pirq_eoi_gmfn_v1 = 17;
export const PHYSDEVOP_restore_msi = 19;
export const PHYSDEVOP_manage_pci_add_ext = 20;
export const PHYSDEVOP_setup_gsi = 21;
export const PHYSDEVOP_get_free_pirq = 23;
export const PHYSDEVOP_pci_mmcfg_reserved = 24;
export const PHYSDEVOP_pci_device_add = 25;
export const PHYSDEVOP_pci_device_remove = 26;
export const PHYSDEVOP_restore_msi_ext = 27;
export const PHYSDEVOP_pirq_eoi_gmfn_v2 = 28;
export const PHYSDEVOP_dbgp_op = 29;
export const PHYSDEVOP_prepare_msix = 30;
export const PHYSDEVOP_release_msix = 31;
/** Xen 4.20+ */
export const PHYSDEVOP_pci_device_reset = 32;
/** The name for interface versions >= 0x00040200. */
export const PHYSDEVOP_pirq_eoi_gmfn = PHYSDEVOP_pirq_eoi_gmfn_v2;

export const physdev_eoi = layout('physdev_eoi', 4, {
  irq: [0, 'u32'], // IN
});

export const physdev_pirq_eoi_gmfn = layout('physdev_pirq_eoi_gmfn', 8, {
  gmfn: [0, 'u64'], // IN
});

export const _XENIRQSTAT_needs_eoi = 0;
export const XENIRQSTAT_needs_eoi = 1 << _XENIRQSTAT_needs_eoi;
export const _XENIRQSTAT_shared = 1;
export const XENIRQSTAT_shared = 1 << _XENIRQSTAT_shared;

export const physdev_irq_status_query = layout('physdev_irq_status_query', 8, {
  irq: [0, 'u32'], // IN
  flags: [4, 'u32'], // OUT: XENIRQSTAT_*
});

/** Set the current vCPU's I/O privilege level (0-3). */
export const physdev_set_iopl = layout('physdev_set_iopl', 4, {
  iopl: [0, 'u32'], // IN
});

/** Set the current vCPU's I/O-port permissions bitmap. */
export const physdev_set_iobitmap = layout('physdev_set_iobitmap', 16, {
  bitmap: [0, 'u64'], // IN: guest handle (VA) of the bitmap
  nr_ports: [8, 'u32'], // IN
});

export const physdev_apic = layout('physdev_apic', 16, {
  apic_physbase: [0, 'u64'], // IN
  reg: [8, 'u32'], // IN
  value: [12, 'u32'], // IN or OUT
});

export const physdev_irq = layout('physdev_irq', 8, {
  irq: [0, 'u32'], // IN
  vector: [4, 'u32'], // OUT (alloc_irq_vector) / IN (free_irq_vector)
});

/** Argument of the legacy __HYPERVISOR_physdev_op_compat: cmd + the sub-op struct in `u`. */
export const physdev_op = layout('physdev_op', 24, {
  cmd: [0, 'u32'],
  u: [8, 'char', 16],
});

export const MAP_PIRQ_TYPE_MSI = 0x0;
export const MAP_PIRQ_TYPE_GSI = 0x1;
export const MAP_PIRQ_TYPE_UNKNOWN = 0x2;
export const MAP_PIRQ_TYPE_MSI_SEG = 0x3;
export const MAP_PIRQ_TYPE_MULTI_MSI = 0x4;
