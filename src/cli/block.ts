// pvbox block-attach / block-detach: xl's verbs for disks of a running guest, sent to its domain process's control socket.
import { HostError } from '../errors.js';
import { parseDiskSpec } from '../backends/vbd/disk-spec.js';
import { controlRequest } from '../toolstack/control-server.js';

export async function blockAttach(domain: string, spec: string): Promise<number> {
  parseDiskSpec(spec); // a malformed spec is refused here, before the guest is asked
  const r = await controlRequest(domain, { op: 'block-attach', spec });
  if (!r.ok) throw new HostError(`block-attach: ${r.error}`);
  return 0;
}

export async function blockDetach(domain: string, vdev: string): Promise<number> {
  const r = await controlRequest(domain, { op: 'block-detach', vdev });
  if (!r.ok) throw new HostError(`block-detach: ${r.error}`);
  return 0;
}
