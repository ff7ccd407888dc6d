// PV console ring page: xen/include/public/io/console.h (struct xencons_interface; the page given by start_info.console.domU.mfn).
import { layout } from '../layout.js';

/** in[] carries backend -> guest (keyboard) bytes, out[] guest -> backend; u32 free-running indices. */
export const xencons_interface = layout('xencons_interface', 3092, {
  in: [0x000, 'char', 1024],
  out: [0x400, 'char', 2048],
  in_cons: [0xc00, 'u32'],
  in_prod: [0xc04, 'u32'],
  out_cons: [0xc08, 'u32'],
  out_prod: [0xc0c, 'u32'],
  connection: [0xc10, 'u8'], // Xen 4.21+: XENCONSOLE_*
});

/** Xen 4.21+ values of xencons_interface.connection. */
export const XENCONSOLE_CONNECTED = 0;
export const XENCONSOLE_DISCONNECTED = 1;

/** MASK_XENCONS_IDX(idx, ring): index into a ring of `ringSize` bytes (1024 for in, 2048 for out). */
export function MASK_XENCONS_IDX(idx: number, ringSize: number): number {
  return idx & (ringSize - 1);
}
