// Paravirtual keyboard/pointer: xen/include/public/io/kbdif.h (XenStore field names, event layouts, struct xenkbd_page rings).
import { layout } from '../layout.js';

// ---- In event types (backend -> frontend) ---------------------------------------------------------
export const XENKBD_TYPE_MOTION = 1; // relative pointer movement
export const XENKBD_TYPE_RESERVED = 2;
export const XENKBD_TYPE_KEY = 3; // key or button press/release
export const XENKBD_TYPE_POS = 4; // absolute pointer position
export const XENKBD_TYPE_MTOUCH = 5; // multi-touch

// Multi-touch event sub-types.
export const XENKBD_MT_EV_DOWN = 0;
export const XENKBD_MT_EV_UP = 1;
export const XENKBD_MT_EV_MOTION = 2;
export const XENKBD_MT_EV_SYN = 3;
export const XENKBD_MT_EV_SHAPE = 4;
export const XENKBD_MT_EV_ORIENT = 5;

// ---- XenStore names ---------------------------------------------------------------------------------
export const XENKBD_DRIVER_NAME = 'vkbd';
export const XENKBD_FIELD_FEAT_DSBL_KEYBRD = 'feature-disable-keyboard';
export const XENKBD_FIELD_FEAT_DSBL_POINTER = 'feature-disable-pointer';
export const XENKBD_FIELD_FEAT_ABS_POINTER = 'feature-abs-pointer';
export const XENKBD_FIELD_FEAT_RAW_POINTER = 'feature-raw-pointer';
export const XENKBD_FIELD_FEAT_MTOUCH = 'feature-multi-touch';
export const XENKBD_FIELD_REQ_ABS_POINTER = 'request-abs-pointer';
export const XENKBD_FIELD_REQ_RAW_POINTER = 'request-raw-pointer';
export const XENKBD_FIELD_REQ_MTOUCH = 'request-multi-touch';
export const XENKBD_FIELD_RING_GREF = 'page-gref';
export const XENKBD_FIELD_EVT_CHANNEL = 'event-channel';
export const XENKBD_FIELD_WIDTH = 'width';
export const XENKBD_FIELD_HEIGHT = 'height';
export const XENKBD_FIELD_MT_WIDTH = 'multi-touch-width';
export const XENKBD_FIELD_MT_HEIGHT = 'multi-touch-height';
export const XENKBD_FIELD_MT_NUM_CONTACTS = 'multi-touch-num-contacts';
export const XENKBD_FIELD_UNIQUE_ID = 'unique-id';
/** OBSOLETE, not recommended for use: PFN of the shared page (use page-gref). */
export const XENKBD_FIELD_RING_REF = 'page-ref';

// ---- Event layouts ----------------------------------------------------------------------------------
export const xenkbd_motion = layout('xenkbd_motion', 16, {
  type: [0, 'u8'], // XENKBD_TYPE_MOTION
  rel_x: [4, 'i32'], // relative X motion
  rel_y: [8, 'i32'], // relative Y motion
  rel_z: [12, 'i32'], // relative Z motion (wheel)
});

export const xenkbd_key = layout('xenkbd_key', 8, {
  type: [0, 'u8'], // XENKBD_TYPE_KEY
  pressed: [1, 'u8'], // 1 if pressed; 0 otherwise
  keycode: [4, 'u32'], // KEY_* from linux/input.h
});

export const xenkbd_position = layout('xenkbd_position', 16, {
  type: [0, 'u8'], // XENKBD_TYPE_POS
  abs_x: [4, 'i32'], // absolute X position (in FB pixels)
  abs_y: [8, 'i32'], // absolute Y position (in FB pixels)
  rel_z: [12, 'i32'], // relative Z motion (wheel)
});

export const xenkbd_mtouch = layout('xenkbd_mtouch', 16, {
  type: [0, 'u8'], // XENKBD_TYPE_MTOUCH
  event_type: [1, 'u8'], // XENKBD_MT_EV_???
  contact_id: [2, 'u8'],
  reserved: [3, 'u8', 5], // reserved for the future use
  'u.pos.abs_x': [8, 'i32'],
  'u.pos.abs_y': [12, 'i32'],
  'u.shape.major': [8, 'u32'],
  'u.shape.minor': [12, 'u32'],
  'u.orientation': [8, 'i16'],
});

export const XENKBD_IN_EVENT_SIZE = 40;
export const xenkbd_in_event = layout('xenkbd_in_event', XENKBD_IN_EVENT_SIZE, {
  type: [0, 'u8'],
  motion: [0, xenkbd_motion],
  key: [0, xenkbd_key],
  pos: [0, xenkbd_position],
  mtouch: [0, xenkbd_mtouch],
}, { c: 'union xenkbd_in_event' });

export const XENKBD_OUT_EVENT_SIZE = 40;
export const xenkbd_out_event = layout('xenkbd_out_event', XENKBD_OUT_EVENT_SIZE, {
  type: [0, 'u8'],
}, { c: 'union xenkbd_out_event' });

// ---- Shared page: indices here, in ring at byte 1024, out ring at byte 3072 ----------------------
export const XENKBD_IN_RING_SIZE = 2048;
export const XENKBD_IN_RING_LEN = Math.floor(XENKBD_IN_RING_SIZE / XENKBD_IN_EVENT_SIZE);
export const XENKBD_IN_RING_OFFS = 1024;
export const XENKBD_OUT_RING_SIZE = 1024;
export const XENKBD_OUT_RING_LEN = Math.floor(XENKBD_OUT_RING_SIZE / XENKBD_OUT_EVENT_SIZE);
export const XENKBD_OUT_RING_OFFS = XENKBD_IN_RING_OFFS + XENKBD_IN_RING_SIZE;

/** Byte offset in the page of in-ring event `idx` (XENKBD_IN_RING_REF). */
export function XENKBD_IN_RING_REF(idx: number): number {
  return XENKBD_IN_RING_OFFS + ((idx >>> 0) % XENKBD_IN_RING_LEN) * XENKBD_IN_EVENT_SIZE;
}
/** Byte offset in the page of out-ring event `idx` (XENKBD_OUT_RING_REF). */
export function XENKBD_OUT_RING_REF(idx: number): number {
  return XENKBD_OUT_RING_OFFS + ((idx >>> 0) % XENKBD_OUT_RING_LEN) * XENKBD_OUT_EVENT_SIZE;
}

export const xenkbd_page = layout('xenkbd_page', 16, {
  in_cons: [0, 'u32'],
  in_prod: [4, 'u32'],
  out_cons: [8, 'u32'],
  out_prod: [12, 'u32'],
});
