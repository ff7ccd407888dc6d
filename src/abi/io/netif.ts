// Network device rings: xen/include/public/io/netif.h (tx/rx request/response layouts, NETTXF_/NETRXF_ flags, extra info, control ring).
import { layout } from '../layout.js';

/** Minimum number of slots (tx requests) a packet may use that a backend must accept. */
export const XEN_NETIF_NR_SLOTS_MIN = 18;

// ---- Control ring (feature-ctrl-ring) -------------------------------------------------------------
export const _XEN_NETIF_CTRL_HASH_TYPE_IPV4 = 0;
export const XEN_NETIF_CTRL_HASH_TYPE_IPV4 = 1 << _XEN_NETIF_CTRL_HASH_TYPE_IPV4;
export const _XEN_NETIF_CTRL_HASH_TYPE_IPV4_TCP = 1;
export const XEN_NETIF_CTRL_HASH_TYPE_IPV4_TCP = 1 << _XEN_NETIF_CTRL_HASH_TYPE_IPV4_TCP;
export const _XEN_NETIF_CTRL_HASH_TYPE_IPV6 = 2;
export const XEN_NETIF_CTRL_HASH_TYPE_IPV6 = 1 << _XEN_NETIF_CTRL_HASH_TYPE_IPV6;
export const _XEN_NETIF_CTRL_HASH_TYPE_IPV6_TCP = 3;
export const XEN_NETIF_CTRL_HASH_TYPE_IPV6_TCP = 1 << _XEN_NETIF_CTRL_HASH_TYPE_IPV6_TCP;
export const XEN_NETIF_CTRL_HASH_ALGORITHM_NONE = 0;
export const XEN_NETIF_CTRL_HASH_ALGORITHM_TOEPLITZ = 1;

export const XEN_NETIF_CTRL_TYPE_INVALID = 0;
export const XEN_NETIF_CTRL_TYPE_GET_HASH_FLAGS = 1;
export const XEN_NETIF_CTRL_TYPE_SET_HASH_FLAGS = 2;
export const XEN_NETIF_CTRL_TYPE_SET_HASH_KEY = 3;
export const XEN_NETIF_CTRL_TYPE_GET_HASH_MAPPING_SIZE = 4;
export const XEN_NETIF_CTRL_TYPE_SET_HASH_MAPPING_SIZE = 5;
export const XEN_NETIF_CTRL_TYPE_SET_HASH_MAPPING = 6;
export const XEN_NETIF_CTRL_TYPE_SET_HASH_ALGORITHM = 7;
export const XEN_NETIF_CTRL_TYPE_GET_GREF_MAPPING_SIZE = 8;
export const XEN_NETIF_CTRL_TYPE_ADD_GREF_MAPPING = 9;
export const XEN_NETIF_CTRL_TYPE_DEL_GREF_MAPPING = 10;

export const XEN_NETIF_CTRL_STATUS_SUCCESS = 0;
export const XEN_NETIF_CTRL_STATUS_NOT_SUPPORTED = 1;
export const XEN_NETIF_CTRL_STATUS_INVALID_PARAMETER = 2;
export const XEN_NETIF_CTRL_STATUS_BUFFER_OVERFLOW = 3;

export const xen_netif_ctrl_request = layout('xen_netif_ctrl_request', 16, {
  id: [0, 'u16'],
  type: [2, 'u16'], // XEN_NETIF_CTRL_TYPE_*
  data: [4, 'u32', 3],
});

export const xen_netif_ctrl_response = layout('xen_netif_ctrl_response', 12, {
  id: [0, 'u16'],
  type: [2, 'u16'],
  status: [4, 'u32'], // XEN_NETIF_CTRL_STATUS_*
  data: [8, 'u32'],
});

export const _XEN_NETIF_CTRLF_GREF_readonly = 0;
export const XEN_NETIF_CTRLF_GREF_readonly = 1 << _XEN_NETIF_CTRLF_GREF_readonly;

export const xen_netif_gref = layout('xen_netif_gref', 8, {
  ref: [0, 'u32'],
  flags: [4, 'u16'], // XEN_NETIF_CTRLF_GREF_*
  status: [6, 'u16'],
});

export const xen_netif_ctrl_sring_entry = layout('xen_netif_ctrl_sring_entry', 16, {
  req: [0, xen_netif_ctrl_request],
  rsp: [0, xen_netif_ctrl_response],
}, { c: 'union xen_netif_ctrl_sring_entry' });

// ---- Transmit (guest -> backend) ----------------------------------------------------------------
export const _NETTXF_csum_blank = 0; // Protocol checksum field is blank in the packet (hardware offload)?
export const NETTXF_csum_blank = 1 << _NETTXF_csum_blank;
export const _NETTXF_data_validated = 1; // Packet data has been validated against protocol checksum.
export const NETTXF_data_validated = 1 << _NETTXF_data_validated;
export const _NETTXF_more_data = 2; // Packet continues in the next request descriptor.
export const NETTXF_more_data = 1 << _NETTXF_more_data;
export const _NETTXF_extra_info = 3; // Packet to be followed by extra descriptor(s).
export const NETTXF_extra_info = 1 << _NETTXF_extra_info;

export const XEN_NETIF_MAX_TX_SIZE = 0xffff;

export const netif_tx_request = layout('netif_tx_request', 12, {
  gref: [0, 'u32'],
  offset: [4, 'u16'],
  flags: [6, 'u16'], // NETTXF_*
  id: [8, 'u16'],
  size: [10, 'u16'], // first slot: whole packet length; others: this fragment
});

// Types of netif_extra_info descriptors.
export const XEN_NETIF_EXTRA_TYPE_NONE = 0; // Never used - invalid
export const XEN_NETIF_EXTRA_TYPE_GSO = 1; // u.gso
export const XEN_NETIF_EXTRA_TYPE_MCAST_ADD = 2; // u.mcast
export const XEN_NETIF_EXTRA_TYPE_MCAST_DEL = 3; // u.mcast
export const XEN_NETIF_EXTRA_TYPE_HASH = 4; // u.hash
export const XEN_NETIF_EXTRA_TYPE_MAX = 5;

export const _XEN_NETIF_EXTRA_FLAG_MORE = 0;
export const XEN_NETIF_EXTRA_FLAG_MORE = 1 << _XEN_NETIF_EXTRA_FLAG_MORE;

export const XEN_NETIF_GSO_TYPE_NONE = 0;
export const XEN_NETIF_GSO_TYPE_TCPV4 = 1;
export const XEN_NETIF_GSO_TYPE_TCPV6 = 2;

/** Occupies a tx request slot (after NETTXF_extra_info) or an rx response slot (after NETRXF_extra_info). */
export const netif_extra_info = layout('netif_extra_info', 8, {
  type: [0, 'u8'], // XEN_NETIF_EXTRA_TYPE_*
  flags: [1, 'u8'], // XEN_NETIF_EXTRA_FLAG_*
  'u.gso.size': [2, 'u16'], // Maximum payload size of each segment.
  'u.gso.type': [4, 'u8'], // XEN_NETIF_GSO_TYPE_*
  'u.gso.pad': [5, 'u8'],
  'u.gso.features': [6, 'u16'], // XEN_NETIF_GSO_FEAT_* (no flags are defined yet)
  'u.mcast.addr': [2, 'u8', 6],
  'u.hash.type': [2, 'u8'],
  'u.hash.algorithm': [3, 'u8'],
  'u.hash.value': [4, 'u8', 4],
  'u.pad': [2, 'u16', 3],
});

export const netif_tx_response = layout('netif_tx_response', 4, {
  id: [0, 'u16'],
  status: [2, 'i16'], // NETIF_RSP_*
});

export const netif_tx_sring_entry = layout('netif_tx_sring_entry', 12, {
  req: [0, netif_tx_request],
  rsp: [0, netif_tx_response],
}, { c: 'union netif_tx_sring_entry' });

// ---- Receive (backend -> guest) -----------------------------------------------------------------
export const netif_rx_request = layout('netif_rx_request', 8, {
  id: [0, 'u16'], // Echoed in response message.
  pad: [2, 'u16'],
  gref: [4, 'u32'],
});

export const _NETRXF_data_validated = 0; // Packet data has been validated against protocol checksum.
export const NETRXF_data_validated = 1 << _NETRXF_data_validated;
export const _NETRXF_csum_blank = 1; // Protocol checksum field is blank in the packet (hardware offload)?
export const NETRXF_csum_blank = 1 << _NETRXF_csum_blank;
export const _NETRXF_more_data = 2; // Packet continues in the next request descriptor.
export const NETRXF_more_data = 1 << _NETRXF_more_data;
export const _NETRXF_extra_info = 3; // Packet to be followed by extra descriptor(s).
export const NETRXF_extra_info = 1 << _NETRXF_extra_info;
export const _NETRXF_gso_prefix = 4; // Packet has GSO prefix. Deprecated but included for compatibility
export const NETRXF_gso_prefix = 1 << _NETRXF_gso_prefix;

export const netif_rx_response = layout('netif_rx_response', 8, {
  id: [0, 'u16'],
  offset: [2, 'u16'],
  flags: [4, 'u16'], // NETRXF_*
  status: [6, 'i16'], // -ve: NETIF_RSP_*; +ve: Rx'ed pkt size.
});

export const netif_rx_sring_entry = layout('netif_rx_sring_entry', 8, {
  req: [0, netif_rx_request],
  rsp: [0, netif_rx_response],
}, { c: 'union netif_rx_sring_entry' });

export const NETIF_RSP_DROPPED = -2;
export const NETIF_RSP_ERROR = -1;
export const NETIF_RSP_OKAY = 0;
/** No response: used for auxiliary requests (e.g., netif_extra_info). */
export const NETIF_RSP_NULL = 1;
