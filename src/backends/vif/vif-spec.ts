// xl vif specifications ('mac=00:16:3e:01:02:03, bridge=xenbr0, vifname=…, script=…, ip=…, mtu=…'), the subset pvbox serves (xen docs/man/xl-network-configuration.5.pod; libxl_nic.c libxl__device_nic_setdefault).
import { randomBytes } from 'node:crypto';
import { ConfigError } from '../../errors.js';

export interface VifSpec {
  /** The device index (xl numbers vifs 0, 1, … in config order): device/vif/<devid> in the guest. */
  devid: number;
  /** Six octets, as libxl writes it: lower-case, colon-separated. */
  mac: string;
  /** The host bridge the TAP device joins; none: the TAP device is left alone (xl's vif-route/-nat cases are the script's job). */
  bridge?: string;
  /** pvbox extension: create `bridge` (type bridge, up) when it does not exist, instead of refusing to start. */
  createBridge: boolean;
  /** Hotplug script run with `online` / `offline` (xl's script=); relative names are looked up in /etc/xen/scripts. */
  script?: string;
  /** The TAP device's name; default vif<domid>.<devid> as Xen's netback names its interface. */
  vifname?: string;
  /** Written to the backend directory for scripts (xl's ip=); pvbox itself does not use it. */
  ip?: string;
  /** The TAP device's MTU (libxl writes it to the backend's mtu node); default 1500. */
  mtu: number;
  /** xl's model= (HVM emulated NICs only); accepted and ignored for a PV guest, as xl does. */
  model?: string;
}

const KEYS = ['mac', 'bridge', 'script', 'vifname', 'ip', 'model', 'type', 'mtu', 'backend', 'create-bridge'] as const;
/** Xen's OUI (libxl__device_nic_setdefault). */
export const XEN_OUI = [0x00, 0x16, 0x3e] as const;
/** IFNAMSIZ - 1: the longest Linux interface name. */
const IFNAMSIZ_MAX = 15;
const IFNAME = /^[A-Za-z0-9_.+-]{1,15}$/;

/** A MAC in the 00:16:3e OUI with random low octets, the first of them < 0x80 (libxl__device_nic_setdefault). */
export function generateXenMac(random: Uint8Array = randomBytes(3)): string {
  return formatMac([...XEN_OUI, random[0]! & 0x7f, random[1]!, random[2]!]);
}

export function formatMac(octets: ArrayLike<number>): string {
  return Array.from(octets, (b) => b.toString(16).padStart(2, '0')).join(':');
}

export function parseMac(text: string): Uint8Array | undefined {
  const m = /^([0-9a-fA-F]{1,2})([:-])([0-9a-fA-F]{1,2})\2([0-9a-fA-F]{1,2})\2([0-9a-fA-F]{1,2})\2([0-9a-fA-F]{1,2})\2([0-9a-fA-F]{1,2})$/.exec(text);
  if (!m) return undefined;
  return Uint8Array.from([m[1], m[3], m[4], m[5], m[6], m[7]].map((h) => parseInt(h!, 16)));
}

/** A Linux interface name (vifname=, bridge=), as `ip link` accepts it. */
export function isInterfaceName(name: string): boolean {
  return IFNAME.test(name) && name !== '.' && name !== '..';
}

/** The TAP device's name: vifname= or vif<domid>.<devid> (Xen's netback "vif%u.%u"). */
export function vifDeviceName(spec: VifSpec, domid: number): string {
  return spec.vifname ?? `vif${domid}.${spec.devid}`;
}

/** Parse one --vif SPEC; `devid` is its position among the domain's vifs. Throws ConfigError naming the spec. */
export function parseVifSpec(spec: string, devid: number, random?: Uint8Array): VifSpec {
  const kv = new Map<string, string>();
  for (const part of spec.split(',').map((p) => p.trim()).filter((p) => p.length > 0)) {
    const eq = part.indexOf('=');
    if (eq <= 0) throw new ConfigError(`vif '${spec}': '${part}' is not key=value`);
    const key = part.slice(0, eq).trim(), value = part.slice(eq + 1).trim();
    if (!(KEYS as readonly string[]).includes(key)) throw new ConfigError(`vif '${spec}': unknown key '${key}' (known: ${KEYS.join(', ')})`);
    if (kv.has(key)) throw new ConfigError(`vif '${spec}': '${key}' given twice`);
    kv.set(key, value);
  }
  const macText = kv.get('mac');
  let mac: string;
  if (macText === undefined) mac = generateXenMac(random);
  else {
    const octets = parseMac(macText);
    if (!octets) throw new ConfigError(`vif '${spec}': mac '${macText}' is not six hex octets (00:16:3e:01:02:03)`);
    // A multicast source address would be dropped by every bridge and peer.
    if (octets[0]! & 1) throw new ConfigError(`vif '${spec}': mac '${macText}' is a multicast address`);
    mac = formatMac(octets);
  }
  const bridge = kv.get('bridge');
  if (bridge !== undefined && !isInterfaceName(bridge)) throw new ConfigError(`vif '${spec}': bridge '${bridge}' is not an interface name (1-${IFNAMSIZ_MAX} of A-Z a-z 0-9 _ . + -)`);
  const vifname = kv.get('vifname');
  if (vifname !== undefined && !isInterfaceName(vifname)) throw new ConfigError(`vif '${spec}': vifname '${vifname}' is not an interface name (1-${IFNAMSIZ_MAX} of A-Z a-z 0-9 _ . + -)`);
  const type = kv.get('type');
  if (type !== undefined && type !== 'vif') throw new ConfigError(`vif '${spec}': type '${type}' is not supported (a PV guest has type=vif NICs only)`);
  const backend = kv.get('backend');
  if (backend !== undefined && backend !== '0' && backend !== 'Domain-0') throw new ConfigError(`vif '${spec}': backend '${backend}': pvbox serves vifs from Domain-0 only`);
  const mtuText = kv.get('mtu');
  const mtu = mtuText === undefined ? 1500 : Number(mtuText);
  // 68: the IPv4 minimum (RFC 791); 65535 - 14: netback's largest frame (XEN_NETIF_MAX_TX_SIZE) less the Ethernet header.
  if (!/^[0-9]+$/.test(mtuText ?? '1500') || mtu < 68 || mtu > 65521) throw new ConfigError(`vif '${spec}': mtu '${mtuText}' is not 68-65521`);
  const createBridge = kv.get('create-bridge');
  if (createBridge !== undefined && !['0', '1', 'yes', 'no'].includes(createBridge)) throw new ConfigError(`vif '${spec}': create-bridge '${createBridge}' is not 1/yes or 0/no`);
  if ((createBridge === '1' || createBridge === 'yes') && bridge === undefined) throw new ConfigError(`vif '${spec}': create-bridge without bridge=`);
  const script = kv.get('script');
  if (script === '') throw new ConfigError(`vif '${spec}': script= is empty`);
  return {
    devid, mac, bridge, vifname, mtu, script, ip: kv.get('ip'), model: kv.get('model'),
    createBridge: createBridge === '1' || createBridge === 'yes',
  };
}

/** Parse every --vif in order; refuses two vifs with one MAC or one vifname. */
export function parseVifSpecs(specs: readonly string[]): VifSpec[] {
  const vifs = specs.map((s, i) => parseVifSpec(s, i));
  const seen = new Set<string>();
  for (const v of vifs) {
    if (seen.has(v.mac)) throw new ConfigError(`vif ${v.devid}: mac ${v.mac} is used by another vif`);
    seen.add(v.mac);
  }
  const names = vifs.filter((v) => v.vifname !== undefined).map((v) => v.vifname!);
  if (new Set(names).size !== names.length) throw new ConfigError('vif: two vifs with the same vifname');
  return vifs;
}
