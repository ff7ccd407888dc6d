// __HYPERVISOR_console_io(cmd, count, buffer) commands: CONSOLEIO_* from xen/include/public/xen.h.
export const CONSOLEIO_write = 0;
export const CONSOLEIO_read = 1;
