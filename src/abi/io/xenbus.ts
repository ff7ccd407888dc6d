// XenBus device states: xen/include/public/io/xenbus.h (enum xenbus_state, written as the "state" node of each end).
export const XenbusStateUnknown = 0;
export const XenbusStateInitialising = 1;
/** InitWait: finished early initialisation but waiting for information from the peer or hotplug scripts. */
export const XenbusStateInitWait = 2;
/** Initialised: waiting for a connection from the peer. */
export const XenbusStateInitialised = 3;
export const XenbusStateConnected = 4;
/** Closing: the device is being closed due to an error or an unplug event. */
export const XenbusStateClosing = 5;
export const XenbusStateClosed = 6;
/** Reconfiguring: the device is being reconfigured. */
export const XenbusStateReconfiguring = 7;
export const XenbusStateReconfigured = 8;

export type XenbusState = 0 | 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8;
