// Core Xen guest ABI for x86_64 PV: xen/include/public/xen.h plus arch-x86/xen.h and arch-x86/xen-x86_64.h.
// Names and values are Xen's, verbatim; layouts are the x86_64 (LP64) ones. Checked by test/unit/abi.test.ts.
// CONSOLEIO_* (also in xen.h) live in ./console_io.ts.
import { layout } from './layout.js';

// ---- Hypercall numbers (xen.h) ----------------------------------------------------------------
export const __HYPERVISOR_set_trap_table = 0;
export const __HYPERVISOR_mmu_update = 1;
export const __HYPERVISOR_set_gdt = 2;
export const __HYPERVISOR_stack_switch = 3;
export const __HYPERVISOR_set_callbacks = 4;
export const __HYPERVISOR_fpu_taskswitch = 5;
/** compat since 0x00030101 */
export const __HYPERVISOR_sched_op_compat = 6;
export const __HYPERVISOR_platform_op = 7;
export const __HYPERVISOR_set_debugreg = 8;
export const __HYPERVISOR_get_debugreg = 9;
export const __HYPERVISOR_update_descriptor = 10;
export const __HYPERVISOR_memory_op = 12;
export const __HYPERVISOR_multicall = 13;
export const __HYPERVISOR_update_va_mapping = 14;
export const __HYPERVISOR_set_timer_op = 15;
/** compat since 0x00030202 */
export const __HYPERVISOR_event_channel_op_compat = 16;
export const __HYPERVISOR_xen_version = 17;
export const __HYPERVISOR_console_io = 18;
/** compat since 0x00030202 */
export const __HYPERVISOR_physdev_op_compat = 19;
export const __HYPERVISOR_grant_table_op = 20;
export const __HYPERVISOR_vm_assist = 21;
export const __HYPERVISOR_update_va_mapping_otherdomain = 22;
/** x86 only */
export const __HYPERVISOR_iret = 23;
export const __HYPERVISOR_vcpu_op = 24;
/** x86/64 only */
export const __HYPERVISOR_set_segment_base = 25;
export const __HYPERVISOR_mmuext_op = 26;
export const __HYPERVISOR_xsm_op = 27;
export const __HYPERVISOR_nmi_op = 28;
export const __HYPERVISOR_sched_op = 29;
export const __HYPERVISOR_callback_op = 30;
export const __HYPERVISOR_xenoprof_op = 31;
export const __HYPERVISOR_event_channel_op = 32;
export const __HYPERVISOR_physdev_op = 33;
export const __HYPERVISOR_hvm_op = 34;
export const __HYPERVISOR_sysctl = 35;
export const __HYPERVISOR_domctl = 36;
export const __HYPERVISOR_kexec_op = 37;
export const __HYPERVISOR_tmem_op = 38;
export const __HYPERVISOR_argo_op = 39;
export const __HYPERVISOR_xenpmu_op = 40;
export const __HYPERVISOR_dm_op = 41;
export const __HYPERVISOR_hypfs_op = 42;
export const __HYPERVISOR_arch_0 = 48;
export const __HYPERVISOR_arch_1 = 49;
export const __HYPERVISOR_arch_2 = 50;
export const __HYPERVISOR_arch_3 = 51;
export const __HYPERVISOR_arch_4 = 52;
export const __HYPERVISOR_arch_5 = 53;
export const __HYPERVISOR_arch_6 = 54;
export const __HYPERVISOR_arch_7 = 55;

// ---- Virtual interrupts (xen.h). V = per-vCPU, G = global. ------------------------------------
export const VIRQ_TIMER = 0; // V. Timebase update, and/or requested timeout.
export const VIRQ_DEBUG = 1; // V. Request guest to dump debug info.
export const VIRQ_CONSOLE = 2; // G. (DOM0) Bytes received on emergency console.
export const VIRQ_DOM_EXC = 3; // G. (DOM0) Exceptional event for some domain.
export const VIRQ_TBUF = 4; // G. (DOM0) Trace buffer has records available.
export const VIRQ_DEBUGGER = 6; // G. (DOM0) A domain has paused for debugging.
export const VIRQ_XENOPROF = 7; // V. XenOprofile interrupt: new sample available
export const VIRQ_CON_RING = 8; // G. (DOM0) Bytes received on console
export const VIRQ_PCPU_STATE = 9; // G. (DOM0) PCPU state changed
export const VIRQ_MEM_EVENT = 10; // G. (DOM0) A memory event has occurred
export const VIRQ_ARGO = 11; // G. Argo interdomain message notification
export const VIRQ_ENOMEM = 12; // G. (DOM0) Low on heap memory
export const VIRQ_XENPMU = 13; // V. PMC interrupt
export const VIRQ_ARCH_0 = 16;
export const VIRQ_ARCH_1 = 17;
export const VIRQ_ARCH_2 = 18;
export const VIRQ_ARCH_3 = 19;
export const VIRQ_ARCH_4 = 20;
export const VIRQ_ARCH_5 = 21;
export const VIRQ_ARCH_6 = 22;
export const VIRQ_ARCH_7 = 23;
export const NR_VIRQS = 24;

// ---- mmu_update (xen.h): ptr & 3 is the command, ptr & ~3 the machine address -----------------
export const MMU_NORMAL_PT_UPDATE = 0; // checked '*ptr = val'. ptr is MA.
export const MMU_MACHPHYS_UPDATE = 1; // ptr = MA of frame to modify entry for
export const MMU_PT_UPDATE_PRESERVE_AD = 2; // atomically: *ptr = val | (*ptr&(A|D))
export const MMU_PT_UPDATE_NO_TRANSLATE = 3; // checked '*ptr = val'. ptr is MA; val never translated.

export const mmu_update = layout('mmu_update', 16, {
  ptr: [0, 'u64'], // Machine address of PTE (low 2 bits: MMU_* command).
  val: [8, 'u64'], // New contents of PTE.
});

// ---- mmuext_op (xen.h) ------------------------------------------------------------------------
export const MMUEXT_PIN_L1_TABLE = 0;
export const MMUEXT_PIN_L2_TABLE = 1;
export const MMUEXT_PIN_L3_TABLE = 2;
export const MMUEXT_PIN_L4_TABLE = 3;
export const MMUEXT_UNPIN_TABLE = 4;
export const MMUEXT_NEW_BASEPTR = 5;
export const MMUEXT_TLB_FLUSH_LOCAL = 6;
export const MMUEXT_INVLPG_LOCAL = 7;
export const MMUEXT_TLB_FLUSH_MULTI = 8;
export const MMUEXT_INVLPG_MULTI = 9;
export const MMUEXT_TLB_FLUSH_ALL = 10;
export const MMUEXT_INVLPG_ALL = 11;
export const MMUEXT_FLUSH_CACHE = 12;
export const MMUEXT_SET_LDT = 13;
export const MMUEXT_NEW_USER_BASEPTR = 15;
export const MMUEXT_CLEAR_PAGE = 16;
export const MMUEXT_COPY_PAGE = 17;
export const MMUEXT_FLUSH_CACHE_GLOBAL = 18;
export const MMUEXT_MARK_SUPER = 19;
export const MMUEXT_UNMARK_SUPER = 20;

export const mmuext_op = layout('mmuext_op', 24, {
  cmd: [0, 'u32'], // MMUEXT_*
  'arg1.mfn': [8, 'u64'], // [UN]PIN_TABLE, NEW_BASEPTR, NEW_USER_BASEPTR, CLEAR_PAGE, COPY_PAGE, [UN]MARK_SUPER
  'arg1.linear_addr': [8, 'u64'], // INVLPG_LOCAL, INVLPG_ALL, SET_LDT
  'arg2.nr_ents': [16, 'u32'], // SET_LDT
  'arg2.vcpumask': [16, 'u64'], // TLB_FLUSH_MULTI, INVLPG_MULTI: guest handle (VA) of a vCPU bitmap
  'arg2.src_mfn': [16, 'u64'], // COPY_PAGE
});

// ---- update_va_mapping flags (xen.h) ----------------------------------------------------------
export const UVMF_NONE = 0; // No flushing at all.
export const UVMF_TLB_FLUSH = 1; // Flush entire TLB(s).
export const UVMF_INVLPG = 2; // Flush only one entry.
export const UVMF_FLUSHTYPE_MASK = 3;
export const UVMF_MULTI = 0; // Flush subset of TLBs (flags & ~3 is then a pointer to a vCPU bitmap).
export const UVMF_LOCAL = 0; // Flush local TLB.
export const UVMF_ALL = 4; // Flush all TLBs.

// ---- vm_assist (xen.h) ------------------------------------------------------------------------
export const VMASST_CMD_enable = 0;
export const VMASST_CMD_disable = 1;
export const VMASST_TYPE_4gb_segments = 0;
export const VMASST_TYPE_4gb_segments_notify = 1;
export const VMASST_TYPE_writable_pagetables = 2;
export const VMASST_TYPE_pae_extended_cr3 = 3;
export const VMASST_TYPE_architectural_iopl = 4;
export const VMASST_TYPE_runstate_update_flag = 5;
export const VMASST_TYPE_m2p_strict = 32;

// ---- Domain ids (xen.h) -----------------------------------------------------------------------
export const DOMID_FIRST_RESERVED = 0x7ff0;
export const DOMID_SELF = 0x7ff0;
export const DOMID_IO = 0x7ff1;
export const DOMID_XEN = 0x7ff2;
export const DOMID_COW = 0x7ff3;
export const DOMID_INVALID = 0x7ff4;
/** Xen 4.22+ */
export const DOMID_ANY = 0x7ff5;
export const DOMID_IDLE = 0x7fff;
export const DOMID_MASK = 0x7fff;

// ---- multicall (xen.h) ------------------------------------------------------------------------
export const multicall_entry = layout('multicall_entry', 64, {
  op: [0, 'u64'],
  result: [8, 'u64'],
  args: [16, 'u64', 6],
});

// ---- Time and vcpu_info (xen.h, arch-x86/xen-x86_64.h) ----------------------------------------
export const vcpu_time_info = layout('vcpu_time_info', 32, {
  version: [0, 'u32'], // odd while an update is in progress
  tsc_timestamp: [8, 'u64'], // TSC at last update of time vals.
  system_time: [16, 'u64'], // Time, in nanosecs, since boot.
  tsc_to_system_mul: [24, 'u32'],
  tsc_shift: [28, 'i8'],
  flags: [29, 'u8'], // XEN_PVCLOCK_*
});
export const XEN_PVCLOCK_TSC_STABLE_BIT = 1 << 0;
export const XEN_PVCLOCK_GUEST_STOPPED = 1 << 1;

export const arch_vcpu_info = layout('arch_vcpu_info', 16, {
  cr2: [0, 'u64'],
  pad: [8, 'u64'],
});

export const vcpu_info = layout('vcpu_info', 64, {
  evtchn_upcall_pending: [0, 'u8'],
  evtchn_upcall_mask: [1, 'u8'], // XEN_HAVE_PV_UPCALL_MASK (x86)
  evtchn_pending_sel: [8, 'u64'],
  arch: [16, arch_vcpu_info],
  'arch.cr2': [16, 'u64'], // the #PF address Xen reports (Linux xen_read_cr2)
  time: [32, vcpu_time_info],
});

// ---- shared_info (xen.h, arch-x86/xen.h) ------------------------------------------------------
export const XEN_LEGACY_MAX_VCPUS = 32;

export const arch_shared_info = layout('arch_shared_info', 48, {
  max_pfn: [0, 'u64'], // max pfn that appears in table
  pfn_to_mfn_frame_list_list: [8, 'u64'],
  nmi_reason: [16, 'u64'],
  p2m_cr3: [24, 'u64'], // cr3 value of the p2m address space
  p2m_vaddr: [32, 'u64'], // virtual address of the p2m list
  p2m_generation: [40, 'u64'], // generation count of p2m mapping
});

export const shared_info = layout('shared_info', 3136, {
  vcpu_info: [0x000, vcpu_info, XEN_LEGACY_MAX_VCPUS],
  evtchn_pending: [0x800, 'u64', 64],
  evtchn_mask: [0xa00, 'u64', 64],
  wc_version: [0xc00, 'u32'],
  wc_sec: [0xc04, 'u32'],
  wc_nsec: [0xc08, 'u32'],
  wc_sec_hi: [0xc0c, 'u32'],
  arch: [0xc10, arch_shared_info],
});

// ---- start_info (xen.h) -----------------------------------------------------------------------
export const MAX_GUEST_CMDLINE = 1024;

export const start_info = layout('start_info', 1168, {
  magic: [0x000, 'char', 32], // "xen-<version>-<platform>"
  nr_pages: [0x020, 'u64'], // Total pages allocated to this domain.
  shared_info: [0x028, 'u64'], // MACHINE address of shared info struct.
  flags: [0x030, 'u32'], // SIF_xxx flags.
  store_mfn: [0x038, 'u64'], // MACHINE page number of shared page.
  store_evtchn: [0x040, 'u32'], // Event channel for store communication.
  'console.domU.mfn': [0x048, 'u64'], // MACHINE page number of console page.
  'console.domU.evtchn': [0x050, 'u32'], // Event channel for console page.
  'console.dom0.info_off': [0x048, 'u32'], // Offset of console_info struct.
  'console.dom0.info_size': [0x04c, 'u32'], // Size of console_info struct from start.
  pt_base: [0x058, 'u64'], // VIRTUAL address of page directory.
  nr_pt_frames: [0x060, 'u64'], // Number of bootstrap p.t. frames.
  mfn_list: [0x068, 'u64'], // VIRTUAL address of page-frame list.
  mod_start: [0x070, 'u64'], // VIRTUAL address of pre-loaded module (PFN if SIF_MOD_START_PFN).
  mod_len: [0x078, 'u64'], // Size (bytes) of pre-loaded module.
  cmd_line: [0x080, 'char', MAX_GUEST_CMDLINE],
  first_p2m_pfn: [0x480, 'u64'], // 1st pfn forming initial P->M table.
  nr_p2m_frames: [0x488, 'u64'], // # of pfns forming initial P->M table.
});

export const SIF_PRIVILEGED = 1 << 0; // Is the domain privileged?
export const SIF_INITDOMAIN = 1 << 1; // Is this the initial control domain?
export const SIF_MULTIBOOT_MOD = 1 << 2; // Is mod_start a multiboot module?
export const SIF_MOD_START_PFN = 1 << 3; // Is mod_start a PFN?
export const SIF_VIRT_P2M_4TOOLS = 1 << 4; // Do Xen tools understand a virt. mapped P->M?
export const SIF_PM_MASK = 0xff << 8; // reserve 1 byte for xen-pm options

/** dom0 only: multiboot module list entry when SIF_MULTIBOOT_MOD is set. */
export const xen_multiboot_mod_list = layout('xen_multiboot_mod_list', 16, {
  mod_start: [0, 'u32'],
  mod_end: [4, 'u32'],
  cmdline: [8, 'u32'],
  pad: [12, 'u32'],
});

// ---- Descriptor tables and traps (arch-x86/xen.h) ---------------------------------------------
export const FIRST_RESERVED_GDT_PAGE = 14;
export const FIRST_RESERVED_GDT_BYTE = FIRST_RESERVED_GDT_PAGE * 4096;
export const FIRST_RESERVED_GDT_ENTRY = FIRST_RESERVED_GDT_BYTE / 8;

/** set_trap_table entry. flags: bits 0-1 DPL (TI_GET_DPL), bit 2 mask events on entry (TI_GET_IF). */
export const trap_info = layout('trap_info', 16, {
  vector: [0, 'u8'], // exception vector
  flags: [1, 'u8'], // 0-3: privilege level; 4: clear event enable?
  cs: [2, 'u16'], // code selector
  address: [8, 'u64'], // code offset
});

/** The bytes of XEN_EMULATE_PREFIX (ud2; 'x' 'e' 'n'); XEN_CPUID is these followed by 0f a2 (cpuid). */
export const XEN_EMULATE_PREFIX: readonly number[] = Object.freeze([0x0f, 0x0b, 0x78, 0x65, 0x6e]);

// ---- Selectors and address space (arch-x86/xen-x86_64.h) --------------------------------------
export const FLAT_RING3_CS32 = 0xe023;
export const FLAT_RING3_CS64 = 0xe033;
export const FLAT_RING3_DS32 = 0xe02b;
export const FLAT_RING3_DS64 = 0x0000;
export const FLAT_RING3_SS32 = 0xe02b;
export const FLAT_RING3_SS64 = 0xe02b;
export const FLAT_KERNEL_DS64 = FLAT_RING3_DS64;
export const FLAT_KERNEL_DS32 = FLAT_RING3_DS32;
export const FLAT_KERNEL_DS = FLAT_KERNEL_DS64;
export const FLAT_KERNEL_CS64 = FLAT_RING3_CS64;
export const FLAT_KERNEL_CS32 = FLAT_RING3_CS32;
export const FLAT_KERNEL_CS = FLAT_KERNEL_CS64;
export const FLAT_KERNEL_SS64 = FLAT_RING3_SS64;
export const FLAT_KERNEL_SS32 = FLAT_RING3_SS32;
export const FLAT_KERNEL_SS = FLAT_KERNEL_SS64;
export const FLAT_USER_DS64 = FLAT_RING3_DS64;
export const FLAT_USER_DS32 = FLAT_RING3_DS32;
export const FLAT_USER_DS = FLAT_USER_DS64;
export const FLAT_USER_CS64 = FLAT_RING3_CS64;
export const FLAT_USER_CS32 = FLAT_RING3_CS32;
export const FLAT_USER_CS = FLAT_USER_CS64;
export const FLAT_USER_SS64 = FLAT_RING3_SS64;
export const FLAT_USER_SS32 = FLAT_RING3_SS32;
export const FLAT_USER_SS = FLAT_USER_SS64;

/** Virtual addresses beyond the user/kernel split are reserved to the hypervisor. */
export const HYPERVISOR_VIRT_START = 0xffff800000000000n;
export const HYPERVISOR_VIRT_END = 0xffff880000000000n;
/** The read-only machine-to-phys table (8 bytes per MFN). */
export const MACH2PHYS_VIRT_START = 0xffff800000000000n;
export const MACH2PHYS_VIRT_END = 0xffff804000000000n;
export const MACH2PHYS_NR_ENTRIES = Number((MACH2PHYS_VIRT_END - MACH2PHYS_VIRT_START) >> 3n);

/** set_segment_base(which, base) */
export const SEGBASE_FS = 0;
export const SEGBASE_GS_USER = 1;
export const SEGBASE_GS_KERNEL = 2;
export const SEGBASE_GS_USER_SEL = 3; // (set using gs selector)

// ---- vcpu_guest_context flags (arch-x86/xen.h, xen-x86_64.h) ----------------------------------
export const _VGCF_i387_valid = 0;
export const VGCF_i387_valid = 1 << _VGCF_i387_valid;
export const _VGCF_in_kernel = 2;
export const VGCF_in_kernel = 1 << _VGCF_in_kernel;
export const _VGCF_failsafe_disables_events = 3;
export const VGCF_failsafe_disables_events = 1 << _VGCF_failsafe_disables_events;
export const _VGCF_syscall_disables_events = 4;
export const VGCF_syscall_disables_events = 1 << _VGCF_syscall_disables_events;
export const _VGCF_online = 5;
export const VGCF_online = 1 << _VGCF_online;
/** iret flags: return via SYSRET, RCX/R11 not restored (xen-x86_64.h). */
export const _VGCF_in_syscall = 8;
export const VGCF_in_syscall = 1 << _VGCF_in_syscall;

/**
 * The frame the `iret` hypercall pops (guest RSP at the SYSCALL points here).
 * All fields are u64; cs and ss use only the low 16 bits.
 */
export const iret_context = layout('iret_context', 72, {
  rax: [0x00, 'u64'],
  r11: [0x08, 'u64'],
  rcx: [0x10, 'u64'],
  flags: [0x18, 'u64'], // VGCF_in_syscall
  rip: [0x20, 'u64'],
  cs: [0x28, 'u64'],
  rflags: [0x30, 'u64'],
  rsp: [0x38, 'u64'],
  ss: [0x40, 'u64'],
});

/** Guest-visible register frame (xen-x86_64.h), as in vcpu_guest_context.user_regs. */
export const cpu_user_regs = layout('cpu_user_regs', 200, {
  r15: [0x00, 'u64'],
  r14: [0x08, 'u64'],
  r13: [0x10, 'u64'],
  r12: [0x18, 'u64'],
  rbp: [0x20, 'u64'],
  rbx: [0x28, 'u64'],
  r11: [0x30, 'u64'],
  r10: [0x38, 'u64'],
  r9: [0x40, 'u64'],
  r8: [0x48, 'u64'],
  rax: [0x50, 'u64'],
  rcx: [0x58, 'u64'],
  rdx: [0x60, 'u64'],
  rsi: [0x68, 'u64'],
  rdi: [0x70, 'u64'],
  error_code: [0x78, 'u32'], // private
  entry_vector: [0x7c, 'u32'], // private
  rip: [0x80, 'u64'],
  cs: [0x88, 'u16'],
  saved_upcall_mask: [0x8c, 'u8'],
  rflags: [0x90, 'u64'], // rflags.IF == !saved_upcall_mask
  rsp: [0x98, 'u64'],
  ss: [0xa0, 'u16'],
  es: [0xa8, 'u16'],
  ds: [0xb0, 'u16'],
  fs: [0xb8, 'u16'],
  gs: [0xc0, 'u16'],
});

/** VCPUOP_initialise argument (arch-x86/xen.h), x86_64 guest view. */
export const vcpu_guest_context = layout('vcpu_guest_context', 5168, {
  fpu_ctxt: [0x000, 'char', 512], // FPU/XMM state (FXSAVE image)
  flags: [0x200, 'u64'], // VGCF_*
  user_regs: [0x208, cpu_user_regs], // User-level CPU registers
  trap_ctxt: [0x2d0, trap_info, 256], // Virtual IDT
  ldt_base: [0x12d0, 'u64'], // LDT (linear address, # ents)
  ldt_ents: [0x12d8, 'u64'],
  gdt_frames: [0x12e0, 'u64', 16], // GDT (machine frames, # ents)
  gdt_ents: [0x1360, 'u64'],
  kernel_ss: [0x1368, 'u64'], // Virtual TSS (only SS1/SP1)
  kernel_sp: [0x1370, 'u64'],
  ctrlreg: [0x1378, 'u64', 8], // CR0-CR7 (CR3 = xen_pfn_to_cr3(kernel root), CR1 = user root)
  debugreg: [0x13b8, 'u64', 8], // DB0-DB7 (debug registers)
  event_callback_eip: [0x13f8, 'u64'],
  failsafe_callback_eip: [0x1400, 'u64'],
  syscall_callback_eip: [0x1408, 'u64'],
  vm_assist: [0x1410, 'u64'], // VMASST_TYPE_* bitmap
  fs_base: [0x1418, 'u64'], // Segment base addresses.
  gs_base_kernel: [0x1420, 'u64'],
  gs_base_user: [0x1428, 'u64'],
});

/** xen_pfn_to_cr3 / xen_cr3_to_pfn (xen-x86_64.h). */
export function xen_pfn_to_cr3(pfn: bigint): bigint {
  return BigInt.asUintN(64, pfn << 12n);
}
export function xen_cr3_to_pfn(cr3: bigint): bigint {
  return BigInt.asUintN(64, cr3) >> 12n;
}
