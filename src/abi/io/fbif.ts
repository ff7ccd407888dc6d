// Paravirtual framebuffer: xen/include/public/io/fbif.h (struct xenfb_page, its in/out event rings and event layouts).
import { layout } from '../layout.js';

// ---- Out events (frontend -> backend) -------------------------------------------------------------
export const XENFB_TYPE_UPDATE = 2;
/** Framebuffer update notification event. */
export const xenfb_update = layout('xenfb_update', 20, {
  type: [0, 'u8'], // XENFB_TYPE_UPDATE
  x: [4, 'i32'], // source x
  y: [8, 'i32'], // source y
  width: [12, 'i32'], // rect width
  height: [16, 'i32'], // rect height
});

export const XENFB_TYPE_RESIZE = 3;
/** Framebuffer resize notification event (backend must advertise feature-resize). */
export const xenfb_resize = layout('xenfb_resize', 24, {
  type: [0, 'u8'], // XENFB_TYPE_RESIZE
  width: [4, 'i32'], // width in pixels
  height: [8, 'i32'], // height in pixels
  stride: [12, 'i32'], // stride in bytes
  depth: [16, 'i32'], // depth in bits
  offset: [20, 'i32'], // offset of the framebuffer in bytes
});

export const XENFB_OUT_EVENT_SIZE = 40;
export const xenfb_out_event = layout('xenfb_out_event', XENFB_OUT_EVENT_SIZE, {
  type: [0, 'u8'],
  update: [0, xenfb_update],
  resize: [0, xenfb_resize],
}, { c: 'union xenfb_out_event' });

// ---- In events (backend -> frontend) --------------------------------------------------------------
export const XENFB_TYPE_REFRESH_PERIOD = 1;
export const XENFB_NO_REFRESH = 0;
export const xenfb_refresh_period = layout('xenfb_refresh_period', 8, {
  type: [0, 'u8'], // XENFB_TYPE_REFRESH_PERIOD
  period: [4, 'u32'], // period of refresh, in ms, XENFB_NO_REFRESH if no refresh is needed
});

export const XENFB_IN_EVENT_SIZE = 40;
export const xenfb_in_event = layout('xenfb_in_event', XENFB_IN_EVENT_SIZE, {
  type: [0, 'u8'],
  refresh_period: [0, xenfb_refresh_period],
}, { c: 'union xenfb_in_event' });

// ---- Shared page: indices here, in ring at byte 1024, out ring at byte 2048 ----------------------
export const XENFB_IN_RING_SIZE = 1024;
export const XENFB_IN_RING_LEN = Math.floor(XENFB_IN_RING_SIZE / XENFB_IN_EVENT_SIZE);
export const XENFB_IN_RING_OFFS = 1024;
export const XENFB_OUT_RING_SIZE = 2048;
export const XENFB_OUT_RING_LEN = Math.floor(XENFB_OUT_RING_SIZE / XENFB_OUT_EVENT_SIZE);
export const XENFB_OUT_RING_OFFS = XENFB_IN_RING_OFFS + XENFB_IN_RING_SIZE;

/** Byte offset in the page of in-ring event `idx` (XENFB_IN_RING_REF). */
export function XENFB_IN_RING_REF(idx: number): number {
  return XENFB_IN_RING_OFFS + ((idx >>> 0) % XENFB_IN_RING_LEN) * XENFB_IN_EVENT_SIZE;
}
/** Byte offset in the page of out-ring event `idx` (XENFB_OUT_RING_REF). */
export function XENFB_OUT_RING_REF(idx: number): number {
  return XENFB_OUT_RING_OFFS + ((idx >>> 0) % XENFB_OUT_RING_LEN) * XENFB_OUT_EVENT_SIZE;
}

export const xenfb_page = layout('xenfb_page', 2088, {
  in_cons: [0x00, 'u32'],
  in_prod: [0x04, 'u32'],
  out_cons: [0x08, 'u32'],
  out_prod: [0x0c, 'u32'],
  width: [0x10, 'i32'], // the width of the framebuffer (in pixels)
  height: [0x14, 'i32'], // the height of the framebuffer (in pixels)
  line_length: [0x18, 'u32'], // the length of a row of pixels (in bytes)
  mem_length: [0x1c, 'u32'], // the length of the framebuffer (in bytes)
  depth: [0x20, 'u8'], // the depth of a pixel (in bits)
  pd: [0x28, 'u64', 256], // MFNs of pages that list the framebuffer's MFNs (a "page directory")
});
