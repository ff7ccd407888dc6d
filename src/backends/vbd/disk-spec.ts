// xl disk specifications ('format=raw, vdev=xvda, access=rw, target=/path' and the short 'file:/path,xvda,w'), the subset pvbox serves (xen docs/misc/xl-disk-configuration.txt).
import { ConfigError } from '../../errors.js';

export interface DiskSpec { target: string; vdev: string; devid: number; readonly: boolean; format: 'raw' | 'qcow2' }

/** xvdX[N] → (202 << 8) | (X << 4) | N: Linux blkfront's XENVBD_MAJOR numbering (16 minors per disk; libxl_device_disk_dev_number). */
export function vdevToDevid(vdev: string): number | undefined {
  const m = /^xvd([a-p])([1-9]|1[0-5])?$/.exec(vdev);
  return m ? (202 << 8) | ((m[1]!.charCodeAt(0) - 97) << 4) | Number(m[2] ?? 0) : undefined;
}

const KEYS = ['target', 'vdev', 'access', 'mode', 'format', 'devtype', 'backendtype', 'backend', 'script'];
const FORMATS = new Set(['raw', 'qcow', 'qcow2', 'vhd', 'qed', 'empty']);
/** Deprecated target prefixes libxl still reads (libxlu_disk_l.l DEPRECATED prefixes): 'phy:', 'file:', 'tap:aio:', 'tap2:qcow2:'…; a format prefix sets the format. */
const PREFIX = /^(?:tap2?:)?(aio|file|phy|raw|qcow2?|vhd):/;

export function parseDiskSpec(spec: string): DiskSpec {
  const kv = new Map<string, string>();
  const positional: string[] = [];
  // xl: 'target=' takes the rest of the spec, commas included ("must be last"). pvbox also accepts
  // keys after it ('target=/img, vdev=xvda', as people write it): the target ends at a comma
  // followed by a known key.
  const t = /(?:^|,)\s*target=/.exec(spec);
  let head = spec;
  if (t) {
    const rest = spec.slice(t.index + t[0].length);
    const end = new RegExp(`,\\s*(?:${KEYS.join('|')})=`).exec(rest);
    kv.set('target', (end ? rest.slice(0, end.index) : rest).trim());
    head = spec.slice(0, t.index) + (end ? rest.slice(end.index) : '');
  }
  const fields = head.replace(/^\s*,/, '').split(',').map((x) => x.trim());
  while (fields.length && fields[fields.length - 1] === '') fields.pop(); // a trailing comma
  for (const p of fields) {
    const eq = p.indexOf('=');
    if (eq > 0 && /^[a-z-]+$/.test(p.slice(0, eq))) kv.set(p.slice(0, eq), p.slice(eq + 1));
    else positional.push(p);
  }
  for (const k of kv.keys()) if (!KEYS.includes(k)) throw new ConfigError(`disk '${spec}': unknown key '${k}'`);
  // Positional parameters: target, format, vdev, access; after a deprecated prefix ('file:/img,xvda,w') there is no format (libxlu_disk_l.l).
  let target = kv.get('target') ?? positional.shift();
  if (!target) throw new ConfigError(`disk '${spec}': no target (the image file)`);
  const prefix = PREFIX.exec(target);
  let format = kv.get('format');
  if (prefix) {
    target = target.slice(prefix[0].length);
    if (prefix[1] !== 'aio' && prefix[1] !== 'file' && prefix[1] !== 'phy') format ??= prefix[1];
  } else if (positional.length > 0 && !kv.has('target') && (positional[0] === '' || FORMATS.has(positional[0]!))) {
    // (Anything else in the format's place is read as the legacy 'target,vdev,access', which xl would refuse.)
    const f = positional.shift()!;
    if (f !== '') format ??= f;
  }
  format ??= 'raw';
  const vdev = kv.get('vdev') ?? positional.shift();
  const access = kv.get('access') ?? kv.get('mode') ?? positional.shift() ?? 'rw';
  if (positional.length) throw new ConfigError(`disk '${spec}': unexpected '${positional[0]}'`);
  if (!target) throw new ConfigError(`disk '${spec}': no target (the image file)`);
  if (!vdev) throw new ConfigError(`disk '${spec}': no vdev (e.g. xvda)`);
  const devid = vdevToDevid(vdev);
  if (devid === undefined) throw new ConfigError(`disk '${spec}': vdev '${vdev}' is not xvda…xvdp (or a partition such as xvda1)`);
  if (!FORMATS.has(format)) throw new ConfigError(`disk '${spec}': unknown format '${format}'`);
  if (format !== 'raw' && format !== 'qcow2') throw new ConfigError(`disk '${spec}': format '${format}' is not supported (raw and qcow2 are)`);
  if (!['r', 'ro', 'w', 'rw'].includes(access)) throw new ConfigError(`disk '${spec}': access '${access}' is not r, ro, w or rw`);
  return { target, vdev, devid, readonly: access === 'r' || access === 'ro', format };
}
