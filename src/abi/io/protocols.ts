// Ring protocol names a frontend writes as its "protocol" node: xen/include/public/io/protocols.h.
export const XEN_IO_PROTO_ABI_X86_32 = 'x86_32-abi';
export const XEN_IO_PROTO_ABI_X86_64 = 'x86_64-abi';
export const XEN_IO_PROTO_ABI_ARM = 'arm-abi';
/** The native protocol of an x86_64 guest. */
export const XEN_IO_PROTO_ABI_NATIVE = XEN_IO_PROTO_ABI_X86_64;
