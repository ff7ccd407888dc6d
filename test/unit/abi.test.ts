// src/abi/: every layout and constant, pinned against Xen's own C headers (offsetof/sizeof probe, generated from the descriptions).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';

import { Layout, layout, type Scalar } from '../../src/abi/layout.js';
import { locateXenHeaders } from './abi-headers.js';

const ABI_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'src', 'abi');

interface Exported {
  module: string; // path under src/abi, e.g. 'io/xs_wire.ts'
  name: string;
  value: unknown;
}

function tsFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    if (statSync(p).isDirectory()) return tsFiles(p);
    return f.endsWith('.ts') ? [p] : [];
  });
}

async function loadAbi(): Promise<Exported[]> {
  const out: Exported[] = [];
  for (const file of tsFiles(ABI_DIR).sort()) {
    const mod = (await import(pathToFileURL(file).href)) as Record<string, unknown>;
    for (const [name, value] of Object.entries(mod)) out.push({ module: relative(ABI_DIR, file), name, value });
  }
  return out;
}

const exported = await loadAbi();
const layouts = exported.filter((e): e is Exported & { value: Layout } => e.value instanceof Layout);
const constants = exported.filter(
  (e): e is Exported & { value: number | bigint | string } =>
    typeof e.value === 'number' || typeof e.value === 'bigint' || typeof e.value === 'string',
);
function findLayout(name: string): Layout {
  const l = layouts.find((e) => e.name === name);
  assert.ok(l, `layout ${name} exported`);
  return l.value;
}
function findConst(name: string): unknown {
  return exported.find((e) => e.name === name)?.value;
}

// ---------------------------------------------------------------------------------------------------
describe('abi/layout accessors', () => {
  const t = layout('t', 48, {
    a: [0, 'u8'],
    b: [1, 'i8'],
    c: [2, 'u16'],
    d: [4, 'i32'],
    e: [8, 'u64'],
    f: [16, 'i64'],
    g: [24, 'char', 8],
    h: [32, 'u32', 4],
  });
  const dv = new DataView(new ArrayBuffer(256), 8); // non-zero byteOffset: views must honour it
  const base = 100;

  it('reads and writes each scalar type little-endian, u64/i64 as bigint', () => {
    t.set(dv, base, 'a', 0xff);
    t.set(dv, base, 'b', -2);
    t.set(dv, base, 'c', 0x1234);
    t.set(dv, base, 'd', -5);
    t.set(dv, base, 'e', 0xffffffff81000000n);
    t.set(dv, base, 'f', -3);
    assert.equal(t.get(dv, base, 'a'), 0xff);
    assert.equal(t.get(dv, base, 'b'), -2);
    assert.equal(t.get(dv, base, 'c'), 0x1234);
    assert.equal(dv.getUint8(base + 2), 0x34);
    assert.equal(t.get(dv, base, 'd'), -5);
    assert.equal(t.get(dv, base, 'e'), 0xffffffff81000000n);
    assert.equal(typeof t.get(dv, base, 'e'), 'bigint');
    assert.equal(t.get(dv, base, 'f'), -3n);
    assert.equal(t.field.e.get(dv, base), 0xffffffff81000000n);
    t.field.c.set(dv, base, 7);
    assert.equal(t.get(dv, base, 'c'), 7);
  });

  it('u64 accepts safe-integer numbers, wraps bigints modulo 2^64, rejects unsafe numbers', () => {
    t.set(dv, base, 'e', 2 ** 40);
    assert.equal(t.get(dv, base, 'e'), 2n ** 40n);
    t.set(dv, base, 'e', -1n);
    assert.equal(t.get(dv, base, 'e'), 0xffffffffffffffffn);
    assert.throws(() => t.set(dv, base, 'e', 2 ** 60), RangeError);
    assert.throws(() => t.set(dv, base, 'e', 1.5), RangeError);
  });

  it('arrays read as Uint8Array views over the same memory; set copies bytes', () => {
    const g = t.get(dv, base, 'g');
    assert.ok(g instanceof Uint8Array);
    assert.equal(g.length, 8);
    t.set(dv, base, 'g', new TextEncoder().encode('xen-3.0'));
    assert.equal(dv.getUint8(base + 24), 'x'.charCodeAt(0));
    assert.equal(g[6], '0'.charCodeAt(0)); // the earlier view sees the write
    g[7] = 0x41;
    assert.equal(dv.getUint8(base + 31), 0x41);
    assert.equal(t.get(dv, base, 'h').length, 16);
    assert.throws(() => t.set(dv, base, 'g', new Uint8Array(9)), RangeError);
  });

  it('offsets and sizes are plain numbers; out-of-range access throws', () => {
    assert.equal(t.size, 48);
    assert.equal(t.off.h, 32);
    assert.equal(t.field.h.size, 16);
    assert.throws(() => t.get(dv, 256 - 8 - 4, 'e'), RangeError);
  });

  it('rejects a field outside the struct', () => {
    assert.throws(() => layout('bad', 8, { x: [4, 'u64'] }), RangeError);
  });
});

// Values the rest of pvbox is written against (pv-abi.md and the task brief); the C probe below checks them all again.
describe('abi pinned values', () => {
  it('start_info, shared_info, vcpu_info', () => {
    const si = findLayout('start_info');
    assert.equal(si.size, 1168);
    assert.deepEqual(
      [si.off['nr_pages'], si.off['shared_info'], si.off['flags'], si.off['store_mfn'], si.off['console.domU.mfn'], si.off['cmd_line']],
      [0x20, 0x28, 0x30, 0x38, 0x48, 0x80],
    );
    assert.equal(findLayout('shared_info').size, 3136);
    assert.equal(findLayout('shared_info').off['evtchn_pending'], 0x800);
    assert.equal(findLayout('vcpu_info').size, 64);
    assert.equal(findLayout('vcpu_guest_context').size, 5168);
    assert.equal(findLayout('cpu_user_regs').off['rip'], 0x80);
  });

  it('ring header and __RING_SIZE', async () => {
    const ring = await import('../../src/abi/io/ring.js');
    assert.deepEqual([ring.sring.off.req_prod, ring.sring.off.req_event, ring.sring.off.rsp_prod, ring.sring.off.rsp_event, ring.sring.size], [0, 4, 8, 12, 64]);
    assert.equal(ring.__RING_SIZE(findLayout('blkif_sring_entry').size, 4096), 32);
    assert.equal(ring.__RING_SIZE(findLayout('netif_tx_sring_entry').size, 4096), 256);
    assert.equal(ring.__RING_SIZE(findLayout('netif_rx_sring_entry').size, 4096), 256);
    assert.equal(ring.__RING_SIZE(112, 4096 << 2), 128);
    assert.deepEqual([0, 1, 2, 3, 5, 1023, 0x80000001].map(ring.__RD32), [0, 1, 2, 2, 4, 512, 0x80000000]);
  });

  it('xenstore ring page and wire constants', () => {
    const x = findLayout('xenstore_domain_interface');
    assert.deepEqual(
      ['req', 'rsp', 'req_cons', 'req_prod', 'rsp_cons', 'rsp_prod', 'server_features', 'connection', 'error'].map((f) => x.off[f]),
      [0, 1024, 2048, 2052, 2056, 2060, 2064, 2068, 2072],
    );
    assert.equal(findConst('XENSTORE_PAYLOAD_MAX'), 4096);
    const errs = findConst('xsd_errors') as { errnum: number; errstring: string }[];
    assert.equal(errs.length, 16);
    assert.deepEqual(errs[0], { errnum: 22, errstring: 'EINVAL' });
  });

  it('every field of every layout lies inside it, and names are unique', () => {
    const names = new Set<string>();
    for (const { name, value } of layouts) {
      assert.ok(!names.has(value.name), `duplicate layout name ${value.name}`);
      assert.equal(name, value.name, `export ${name} describes ${value.name}`);
      names.add(value.name);
      for (const f of Object.values(value.field)) assert.ok(f.offset + f.size <= value.size, `${name}.${f.name}`);
    }
    const constNames = new Set<string>();
    for (const { name, module } of constants) {
      assert.ok(!constNames.has(name), `${name} exported twice (again in ${module})`);
      constNames.add(name);
    }
  });
});

describe('abi helper functions (header macros)', () => {
  it('match their C definitions', async () => {
    const xen = await import('../../src/abi/xen.js');
    const ring = await import('../../src/abi/io/ring.js');
    const xs = await import('../../src/abi/io/xs_wire.js');
    const cons = await import('../../src/abi/io/console.js');
    const fb = await import('../../src/abi/io/fbif.js');
    const kbd = await import('../../src/abi/io/kbdif.js');
    const mem = await import('../../src/abi/memory.js');
    const cpuid = await import('../../src/abi/arch-x86/cpuid.js');
    assert.equal(xen.xen_pfn_to_cr3(0x1234n), 0x1234000n);
    assert.equal(xen.xen_cr3_to_pfn(0x1234fffn), 0x1234n);
    assert.equal(xen.MACH2PHYS_NR_ENTRIES, 2 ** 35);
    assert.equal(ring.XEN_FLEX_RING_SIZE(0), 2048);
    assert.equal(ring.XEN_FLEX_RING_SIZE(2), 8192);
    assert.equal(xs.MASK_XENSTORE_IDX(0xffffffff), 1023);
    assert.equal(cons.MASK_XENCONS_IDX(2049, 2048), 1);
    assert.equal(fb.XENFB_IN_RING_REF(0), 1024);
    assert.equal(fb.XENFB_OUT_RING_REF(fb.XENFB_OUT_RING_LEN + 1), 2048 + 40);
    assert.equal(kbd.XENKBD_OUT_RING_REF(0), 3072);
    assert.equal(kbd.XENKBD_IN_RING_REF(0xffffffff), 1024 + (0xffffffff % kbd.XENKBD_IN_RING_LEN) * 40);
    assert.equal(mem.XENMEMF_get_address_bits(0x1234), 0x34);
    assert.equal(mem.XENMEMF_get_node((3 + 1) << 8), 3);
    assert.equal(cpuid.XEN_CPUID_LEAF(2), 0x40000002);
  });
});

// ---------------------------------------------------------------------------------------------------
// The C probe. Every layout (offsetof, sizeof, element size and signedness of each field) and every
// exported number/bigint/string constant is printed by a generated C program compiled against Xen's
// headers, then compared. Items the headers do not have (newer than the headers, or not public) are
// listed and skipped; a layout that is newer than the headers may only grow at its tail.

const HEADERS = [
  'xen/xen.h', 'xen/errno.h', 'xen/event_channel.h', 'xen/grant_table.h', 'xen/memory.h', 'xen/sched.h',
  'xen/vcpu.h', 'xen/callback.h', 'xen/physdev.h', 'xen/version.h', 'xen/features.h', 'xen/elfnote.h',
  'xen/arch-x86/cpuid.h', 'xen/io/ring.h', 'xen/io/console.h', 'xen/io/xs_wire.h', 'xen/io/xenbus.h',
  'xen/io/blkif.h', 'xen/io/netif.h', 'xen/io/fbif.h', 'xen/io/kbdif.h', 'xen/io/protocols.h',
];

const SCALAR_SIZE: Record<Scalar, number> = { u8: 1, i8: 1, u16: 2, i16: 2, u32: 4, i32: 4, u64: 8, i64: 8 };

/** One probe: one line of C printing "<index> <numbers...>" or "<index> <string>". */
interface Item {
  code: string;
  check(out: string): string | null; // null = ok, else a description of the mismatch
  what: string;
  kind: 'size' | 'field' | 'const';
  layout?: Layout;
  offset?: number;
}

function probeItems(): Item[] {
  const items: Item[] = [];
  for (const { value: l } of layouts) {
    if (l.c === null) continue;
    const T = l.c;
    items.push({
      kind: 'size', layout: l, what: `sizeof ${l.name} (${l.cSizeof})`,
      code: `printf("%d %zu\\n", IDX, (size_t)(${l.cSizeof}));`,
      check: (out) => (Number(out) === l.size ? null : `C says ${out}, abi says ${l.size}`),
    });
    for (const f of Object.values(l.field)) {
      const m = `((${T} *)0)->${f.name}`;
      // 'char' fields are opaque bytes (a char array, or a union/struct kept whole): no element to look at.
      const opaque = f.type === 'char' && f.count !== 0;
      const elem = f.count !== undefined && !opaque ? `(${m})[0]` : m;
      const elemSize = opaque ? f.size : f.type === 'char' ? 1 : typeof f.type === 'string' ? SCALAR_SIZE[f.type] : f.type.size;
      const whole = f.count === 0 ? '(size_t)0' : `sizeof(${m})`; // sizeof of a flexible array member is invalid
      items.push({
        kind: 'field', layout: l, offset: f.offset, what: `${l.name}.${f.name}`,
        code: `printf("%d %zu %zu %zu %d\\n", IDX, offsetof(${T}, ${f.name}), ${whole}, sizeof(${elem}), SGN(${elem}));`,
        check: (out) => {
          const [off, size, esize, sgn] = out.split(' ').map(Number);
          const problems: string[] = [];
          if (off !== f.offset) problems.push(`offset C ${off} abi ${f.offset}`);
          if (f.count !== 0 && size !== f.size) problems.push(`size C ${size} abi ${f.size}`);
          if (f.count !== 0 && esize !== elemSize) problems.push(`element size C ${esize} abi ${elemSize}`);
          if (typeof f.type === 'string' && f.type !== 'char') {
            const want = f.type.startsWith('i') ? 1 : 0;
            // 2 = not an integer (guest handle struct, pointer): only the size can be compared.
            if (sgn !== 2 && sgn !== want) problems.push(`C type is ${sgn === 1 ? 'signed' : sgn === 3 ? 'plain char' : 'unsigned'}, abi says ${f.type}`);
          }
          return problems.length ? problems.join('; ') : null;
        },
      });
    }
  }
  for (const { name, value, module } of constants) {
    if (typeof value === 'string') {
      items.push({
        kind: 'const', what: `${name} (${module})`,
        code: `printf("%d %s\\n", IDX, _Generic((${name}), char *: (${name}), const char *: (${name}), default: "<not a string>"));`,
        check: (out) => (out === value ? null : `C says "${out}", abi says "${value}"`),
      });
    } else {
      const want = BigInt.asUintN(64, BigInt(value));
      items.push({
        kind: 'const', what: `${name} (${module})`,
        code: `printf("%d %llu\\n", IDX, (unsigned long long)(${name}));`,
        check: (out) => (BigInt(out) === want ? null : `C says ${BigInt.asIntN(64, BigInt(out))}, abi says ${value}`),
      });
    }
  }
  return items;
}

function cProgram(items: Item[], skip: Set<number>): { source: string; firstLine: number } {
  const pre = [
    '#define __XEN_INTERFACE_VERSION__ __XEN_LATEST_INTERFACE_VERSION__',
    '#ifndef __x86_64__',
    '#error "the ABI probe needs an x86_64 compiler (layouts are the x86_64 ones)"',
    '#endif',
    '#include <errno.h>', // before xs_wire.h, so that it defines its xsd_errors table
    '#include <stddef.h>',
    '#include <stdint.h>',
    '#include <stdio.h>',
    '#if __has_include(<asm/bootparam.h>)',
    '#include <asm/bootparam.h>', // struct boot_e820_entry (Linux uapi), the e820 entry format
    '#endif',
    ...HEADERS.map((h) => `#include <${h}>`),
    '#define SGN(x) _Generic((x), char: 3, signed char: 1, short: 1, int: 1, long: 1, long long: 1, ' +
      'unsigned char: 0, unsigned short: 0, unsigned int: 0, unsigned long: 0, unsigned long long: 0, default: 2)',
    'int main(void) {',
  ];
  const body = items.map((it, i) => (skip.has(i) ? ';' : it.code.replace('IDX', String(i))));
  const post = [
    '#ifdef XSD_ERROR',
    '  for (size_t k = 0; k < sizeof(xsd_errors) / sizeof(xsd_errors[0]); k++)',
    '    printf("T xsd_errors %d %s\\n", xsd_errors[k].errnum, xsd_errors[k].errstring);',
    '#endif',
    '#ifdef GNTTABOP_error_msgs',
    '  { static const char *m[] = GNTTABOP_error_msgs;',
    '    for (size_t k = 0; k < sizeof(m) / sizeof(m[0]); k++) printf("T GNTTABOP_error_msgs %s\\n", m[k]); }',
    '#endif',
    '  return 0;',
    '}',
  ];
  return { source: [...pre, ...body, ...post].join('\n') + '\n', firstLine: pre.length + 1 };
}

function hasGcc(): boolean {
  try {
    execFileSync('gcc', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

interface ProbeResult {
  values: Map<number, string>;
  absent: Map<number, string>; // item index -> first compiler error
  tables: Map<string, string[]>;
}

/** Compile and run the probe, dropping items the headers reject until it compiles. */
function runProbe(include: string, items: Item[]): ProbeResult {
  const dir = mkdtempSync(join(tmpdir(), 'pvbox-abi-'));
  try {
    const absent = new Map<number, string>();
    for (let round = 0; ; round++) {
      const { source, firstLine } = cProgram(items, new Set(absent.keys()));
      const src = join(dir, 'probe.c');
      const exe = join(dir, 'probe');
      writeFileSync(src, source);
      try {
        execFileSync('gcc', ['-std=gnu11', '-w', '-fmax-errors=0', '-I', include, '-o', exe, src], { stdio: ['ignore', 'ignore', 'pipe'] });
      } catch (e) {
        const stderr = String((e as { stderr?: Buffer }).stderr ?? e);
        let progress = false;
        for (const line of stderr.split('\n')) {
          const m = /probe\.c:(\d+):\d+: (?:error|note): (.*)$/.exec(line);
          if (!m) continue;
          const i = Number(m[1]) - firstLine;
          if (i >= 0 && i < items.length && !absent.has(i)) {
            absent.set(i, m[2]!);
            progress = true;
          }
        }
        if (!progress || round > 8) throw new Error(`ABI probe does not compile:\n${stderr.slice(0, 4000)}`);
        continue;
      }
      const out = execFileSync(exe, { encoding: 'utf8' });
      const values = new Map<number, string>();
      const tables = new Map<string, string[]>();
      for (const line of out.split('\n')) {
        if (line === '') continue;
        const t = /^T (\S+) (.*)$/.exec(line);
        if (t) {
          tables.set(t[1]!, [...(tables.get(t[1]!) ?? []), t[2]!]);
          continue;
        }
        const sp = line.indexOf(' ');
        values.set(Number(line.slice(0, sp)), line.slice(sp + 1));
      }
      return { values, absent, tables };
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('abi against Xen C headers', () => {
  const gcc = hasGcc();
  const headers = gcc && process.arch === 'x64' ? locateXenHeaders() : null;
  const skip = !gcc
    ? 'gcc not found: cannot compile the offsetof/sizeof probe'
    : process.arch !== 'x64'
      ? `host is ${process.arch}: the probe needs an x86_64 compiler`
      : headers && headers.dir === null
        ? headers.reason
        : false;

  it('every layout, field and constant matches the headers', { skip }, (t) => {
    assert.ok(headers && headers.dir !== null);
    t.diagnostic(`headers: ${headers.source}`);
    const items = probeItems();
    const { values, absent, tables } = runProbe(headers.dir, items);

    const failures: string[] = [];
    for (const [i, it] of items.entries()) {
      if (absent.has(i)) continue;
      const out = values.get(i);
      if (out === undefined) {
        failures.push(`${it.what}: no output`);
        continue;
      }
      const problem = it.check(out);
      if (problem === null) continue;
      // A layout newer than the headers may have grown: checked with the tail rule below.
      const grown = it.kind === 'size' && items.some((o, j) => o.layout === it.layout && o.kind === 'field' && absent.has(j));
      if (!grown) failures.push(`${it.what}: ${problem}`);
    }

    // Absent items: whole layouts (C type unknown), trailing fields of a grown layout, constants.
    const absentLayouts = new Set<Layout>();
    for (const [i, it] of items.entries()) if (it.kind === 'size' && absent.has(i)) absentLayouts.add(it.layout!);
    const notes: string[] = [];
    for (const l of absentLayouts) notes.push(`layout ${l.name}: ${l.c} not in these headers (${absent.get(items.findIndex((it) => it.kind === 'size' && it.layout === l))})`);
    for (const { value: l } of layouts) {
      if (absentLayouts.has(l) || l.c === null) continue;
      const missing = items.flatMap((it, i) => (it.layout === l && it.kind === 'field' && absent.has(i) ? [{ it, err: absent.get(i)! }] : []));
      if (missing.length === 0) continue;
      const sizeOut = values.get(items.findIndex((it) => it.kind === 'size' && it.layout === l));
      const csize = Number(sizeOut);
      const firstMissing = Math.min(...missing.map((m) => m.it.offset!));
      if (csize !== firstMissing) {
        for (const m of missing) failures.push(`${m.it.what}: not accepted by the headers (${m.err}) and not a tail extension (C sizeof ${csize})`);
      } else {
        notes.push(`layout ${l.name}: fields ${missing.map((m) => m.it.what.split('.').slice(1).join('.')).join(', ')} are newer than these headers (C sizeof ${csize}, abi ${l.size})`);
      }
    }
    const absentConsts = items.flatMap((it, i) => (it.kind === 'const' && absent.has(i) ? [it.what.split(' ')[0]!] : []));
    if (absentConsts.length) notes.push(`constants not defined by these headers (skipped): ${absentConsts.join(', ')}`);
    for (const { value: l } of layouts) if (l.c === null) notes.push(`layout ${l.name}: no C type to check against`);

    // The two tables Xen defines as initialisers.
    const xsd = (findConst('xsd_errors') as { errnum: number; errstring: string }[]).map((e) => `${e.errnum} ${e.errstring}`);
    if (tables.has('xsd_errors')) {
      if (JSON.stringify(tables.get('xsd_errors')) !== JSON.stringify(xsd)) failures.push(`xsd_errors: C ${JSON.stringify(tables.get('xsd_errors'))}`);
    } else failures.push('xsd_errors: table not found in the headers');
    if (tables.has('GNTTABOP_error_msgs')) {
      if (JSON.stringify(tables.get('GNTTABOP_error_msgs')) !== JSON.stringify(findConst('GNTTABOP_error_msgs'))) {
        failures.push(`GNTTABOP_error_msgs: C ${JSON.stringify(tables.get('GNTTABOP_error_msgs'))}`);
      }
    } else failures.push('GNTTABOP_error_msgs: table not found in the headers');

    const checked = items.length - absent.size;
    t.diagnostic(`${checked} of ${items.length} probe items checked (${layouts.length} layouts, ${constants.length} constants)`);
    for (const n of notes) t.diagnostic(n);
    assert.deepEqual(failures, [], `ABI differs from the headers in ${headers.source}:\n${failures.join('\n')}`);
  });
});
