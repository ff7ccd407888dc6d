// console_io: the hypervisor console a guest can print to before its PV console is up (xen/drivers/char/console.c do_console_io).
import { XEN_EINVAL, XEN_ENOSYS } from '../abi/errno.js';
import { CONSOLEIO_read, CONSOLEIO_write } from '../abi/console_io.js';
import type { Domain } from './domain.js';
import type { Vcpu } from './vcpu.js';

export function do_console_io(d: Domain, v: Vcpu, cmd: number, count: number, buffer: bigint): number {
  switch (cmd) {
    case CONSOLEIO_write: {
      if (count < 0 || count > 1 << 20) return -XEN_EINVAL;
      d.hooks.onConsoleIo(d.guestVirt(v).copyFrom(buffer, count));
      return 0;
    }
    case CONSOLEIO_read: return 0;
    default: return -XEN_ENOSYS;
  }
}
