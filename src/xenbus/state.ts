// XenbusState as it appears in a device's "state" node: names and a strict parser (xen/include/public/io/xenbus.h; Linux drivers/xen/xenbus/xenbus_client.c xenbus_strstate, xenbus_read_driver_state).
import {
  XenbusStateClosing,
  XenbusStateConnected,
  XenbusStateInitialised,
  XenbusStateInitWait,
  XenbusStateReconfigured,
  type XenbusState,
} from '../abi/io/xenbus.js';

const NAMES = [
  'Unknown',
  'Initialising',
  'InitWait',
  'Initialised',
  'Connected',
  'Closing',
  'Closed',
  'Reconfiguring',
  'Reconfigured',
] as const;

/** "Connected" for 4, as xenbus_strstate() prints it; "INVALID" outside the enum. */
export function xenbusStateName(state: number): string {
  return NAMES[state] ?? 'INVALID';
}

/** `4 (Connected)`: for log lines. */
export function formatXenbusState(state: number): string {
  return `${state} (${xenbusStateName(state)})`;
}

export function isXenbusState(n: number): n is XenbusState {
  return Number.isInteger(n) && n >= 0 && n <= XenbusStateReconfigured;
}

/**
 * A "state" node's value: what the peer says, or why it says nothing useful.
 * - `absent`: no such node (ENOENT), which Linux reads as XenbusStateUnknown;
 * - `garbage`: not a decimal XenbusState. Linux's "%d" scanf would turn "banana" into Unknown
 *   and take "99" at face value (blkback then calls xenbus_dev_fatal); pvbox instead ignores
 *   such a write, so a hostile frontend cannot make the backend tear a device down.
 */
export type StateReading =
  | { readonly kind: 'state'; readonly state: XenbusState }
  | { readonly kind: 'absent' }
  | { readonly kind: 'garbage'; readonly raw: string };

/** Decimal digits only ("4"), at most 8: what xenbus_switch_state()'s "%d" writes. */
export function parseXenbusState(raw: string): StateReading {
  if (/^[0-9]{1,3}$/.test(raw)) {
    const n = Number(raw);
    if (isXenbusState(n)) return { kind: 'state', state: n };
  }
  return { kind: 'garbage', raw: raw.length > 32 ? `${raw.slice(0, 32)}...` : raw };
}

/**
 * A frontend that will react when the backend changes state (QEMU xen-bus.c
 * xen_device_frontend_is_active): it has started talking and not yet finished closing.
 */
export function isFrontendActive(state: XenbusState): boolean {
  return state === XenbusStateInitWait || state === XenbusStateInitialised || state === XenbusStateConnected || state === XenbusStateClosing;
}
