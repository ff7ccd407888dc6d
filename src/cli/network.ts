// pvbox network-attach / network-detach: xl's verbs for NICs of a running guest, sent to its domain process's control socket (xl_vif.c main_networkattach, main_networkdetach).
import { HostError } from '../errors.js';
import { parseVifSpec } from '../backends/vif/vif-spec.js';
import { controlRequest } from '../toolstack/control-server.js';

/**
 * xl network-attach <domain> [key=value ...]: the spec's keys may come as separate arguments, as xl
 * takes them, or as one comma-separated spec. The guest's netfront must be loaded to see the NIC:
 * a guest that booted without a vif needs `modprobe xen-netfront` (the default image has no udev).
 */
export async function networkAttach(domain: string, specParts: readonly string[]): Promise<number> {
  const spec = specParts.join(',');
  parseVifSpec(spec, 0); // a malformed spec is refused here, before the guest is asked
  const r = await controlRequest(domain, { op: 'network-attach', spec });
  if (!r.ok) throw new HostError(`network-attach: ${r.error}`);
  return 0;
}

/** xl network-detach <domain> <devid|mac>: the guest's netfront lets go, then the TAP device goes. */
export async function networkDetach(domain: string, target: string): Promise<number> {
  const r = await controlRequest(domain, { op: 'network-detach', target });
  if (!r.ok) throw new HostError(`network-detach: ${r.error}`);
  return 0;
}
