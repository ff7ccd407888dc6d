// The trace switch and counters: hypercalls, traps and exits, decoded (pvbox run --trace / --stats).
export interface Counters {
  exits: Map<string, number>;
  hypercalls: Map<string, number>;
  traps: Map<string, number>;
  unimplemented: Map<string, number>;
  /** Backend counters at the end of the run ("vif1.0 q0 rx packets"), in the order devices reported them. */
  devices: Map<string, number>;
}

export class Trace {
  enabled: boolean;
  readonly counters: Counters = { exits: new Map(), hypercalls: new Map(), traps: new Map(), unimplemented: new Map(), devices: new Map() };
  private readonly out: (line: string) => void;
  private rateLimit = new Map<string, number>();
  constructor(enabled: boolean, out: (line: string) => void) { this.enabled = enabled; this.out = out; }

  log(line: string): void { if (this.enabled) this.out(line); }
  /** Always printed, but at most `limit` times per key (kvmtool/Firecracker rate-limited logging). */
  warn(key: string, line: string, limit = 5): void {
    const n = (this.rateLimit.get(key) ?? 0) + 1;
    this.rateLimit.set(key, n);
    if (n <= limit || this.enabled) this.out(n === limit && !this.enabled ? `${line} (further messages suppressed)` : line);
  }
  count(map: Map<string, number>, key: string): void { map.set(key, (map.get(key) ?? 0) + 1); }
}

export const hex = (v: bigint | number): string => `0x${(typeof v === 'bigint' ? BigInt.asUintN(64, v) : v).toString(16)}`;

export function formatCounters(c: Counters): string {
  const section = (title: string, m: Map<string, number>, sorted = true) => {
    if (m.size === 0) return '';
    const entries = [...m.entries()];
    if (sorted) entries.sort((a, b) => b[1] - a[1]);
    const rows = entries.map(([k, v]) => `  ${k.padEnd(32)} ${v}`);
    return `${title}:\n${rows.join('\n')}\n`;
  };
  return section('exits by reason', c.exits) + section('hypercalls by number', c.hypercalls) + section('traps by vector', c.traps) + section('unimplemented', c.unimplemented)
    + section('devices', c.devices, false);
}
