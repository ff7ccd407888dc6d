// xl disk specifications ('format=raw, vdev=xvda, access=rw, target=/path' and the short 'file:/path,xvda,w'), the subset pvbox serves (xen docs/misc/xl-disk-configuration.txt).
import { ConfigError } from '../../errors.js';

export interface DiskSpec { target: string; vdev: string; devid: number; readonly: boolean; format: 'raw' | 'qcow2' }

/** xvdX → (202 << 8) | (X << 4): Linux blkfront's XENVBD_MAJOR numbering (16 minors per disk). */
export function vdevToDevid(vdev: string): number | undefined {
  const m = /^xvd([a-p])$/.exec(vdev);
  return m ? (202 << 8) | ((m[1]!.charCodeAt(0) - 97) << 4) : undefined;
}

export function parseDiskSpec(spec: string): DiskSpec {
  const parts = spec.split(',').map((p) => p.trim()).filter((p) => p.length > 0);
  const kv = new Map<string, string>();
  const positional: string[] = [];
  for (const p of parts) {
    const eq = p.indexOf('=');
    if (eq > 0 && /^[a-z-]+$/.test(p.slice(0, eq))) kv.set(p.slice(0, eq), p.slice(eq + 1));
    else positional.push(p);
  }
  // Positional form: target, vdev, access (xl's legacy 'file:/path,xvda,w').
  let target = kv.get('target') ?? positional[0];
  const vdev = kv.get('vdev') ?? positional[1];
  const access = kv.get('access') ?? kv.get('mode') ?? positional[2] ?? 'rw';
  const format = kv.get('format') ?? 'raw';
  for (const k of kv.keys()) if (!['target', 'vdev', 'access', 'mode', 'format', 'devtype', 'backendtype'].includes(k)) throw new ConfigError(`disk '${spec}': unknown key '${k}'`);
  if (!target) throw new ConfigError(`disk '${spec}': no target (the image file)`);
  target = target.replace(/^(file|phy|aio|tap2?:aio):/, '');
  if (!vdev) throw new ConfigError(`disk '${spec}': no vdev (e.g. xvda)`);
  const devid = vdevToDevid(vdev);
  if (devid === undefined) throw new ConfigError(`disk '${spec}': vdev '${vdev}' is not xvda…xvdp`);
  if (!['r', 'ro', 'w', 'rw'].includes(access)) throw new ConfigError(`disk '${spec}': access '${access}' is not r, ro, w or rw`);
  if (format !== 'raw' && format !== 'qcow2') throw new ConfigError(`disk '${spec}': format '${format}' is not supported (raw and qcow2 are)`);
  return { target, vdev, devid, readonly: access === 'r' || access === 'ro', format };
}
