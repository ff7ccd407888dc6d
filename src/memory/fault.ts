// GuestFault: the one exception hypervisor code may throw about guest input; the dispatcher turns it into -XEN_EFAULT (Xen's copy_from_guest failing).
export class GuestFault extends Error {
  constructor(readonly address: number | bigint, message: string) { super(message); this.name = 'GuestFault'; }
}
