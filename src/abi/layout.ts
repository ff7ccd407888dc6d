// One description per Xen public struct (field -> offset, type; total size) and the accessors generated from it.
//
// Every struct in src/abi/ is written once, as Xen's x86_64 (LP64) layout, e.g.
//
//   export const evtchn_bind_virq = layout('evtchn_bind_virq', 12, {
//     virq: [0, 'u32'], vcpu: [4, 'u32'], port: [8, 'u32'],
//   });
//   evtchn_bind_virq.size;                        // 12
//   evtchn_bind_virq.off.port;                    // 8
//   evtchn_bind_virq.get(dv, base, 'virq');       // number
//   evtchn_bind_virq.set(dv, base, 'port', 5);
//   evtchn_bind_virq.field.port.get(dv, base);    // same, without the name lookup (hottest paths)
//
// Field keys are C member designators, so nested anonymous members are spelled as in C
// (`'console.domU.mfn'`, `'arch.cr2'`); test/unit/abi.test.ts feeds each key to offsetof() against
// Xen's own headers, so every offset, size and signedness here is checked, none is trusted.
//
// Types and values:
// - 'u8' 'i8' 'u16' 'i16' 'u32' 'i32' read as `number`; set() stores the low bits (DataView semantics).
// - 'u64' and 'i64' read as `bigint`, always. Many 64-bit fields hold guest virtual addresses,
//   MFNs, RIP/RSP values or nanosecond times that do not fit in a double (0xffffffff81000000 >
//   2^53); returning `number` "when it fits" would make each caller guess, and a silent rounding of
//   an address is a guest-memory bug. So the type of a field never depends on its value. set() takes
//   bigint or number; a number must be a safe integer (else RangeError), a bigint is stored modulo
//   2^64 (so -1n writes all ones).
// - 'char' (always with a count) is opaque bytes: a C char/int8_t array, or a member kept opaque
//   (a union's raw storage, `struct { char x[512]; }`). A count of 0 is a C flexible array member.
// - 'char' fields, arrays `[off, type, count]` and nested layouts `[off, otherLayout]` read as a
//   Uint8Array *view* over the same memory (no copy); set() copies bytes into the field (RangeError
//   if longer than the field; bytes after the source are left as they are). For element i of an
//   array or a nested struct, use base + off + i * elemSize with the element's own layout, e.g.
//   vcpu_info.get(dv, base + shared_info.off.vcpu_info + i * vcpu_info.size, 'evtchn_upcall_mask').
// All multi-byte values are little-endian (x86).
//
// Speed: each field's getter and setter is a closure made once here, with its offset and DataView
// method fixed; an access does one property lookup and one DataView call, with no parsing.
// Out-of-range accesses throw RangeError from DataView / Uint8Array.
//
// Only the 64-bit guest layout is described. A 32-bit (compat) guest would need the same
// descriptions parameterised by guest width (style.md "The ABI module"); not done yet.

export type Scalar = 'u8' | 'i8' | 'u16' | 'i16' | 'u32' | 'i32' | 'u64' | 'i64';
export type ElemType = Scalar | 'char' | Layout<Fields>;
export type FieldSpec =
  | readonly [offset: number, type: Scalar]
  | readonly [offset: number, type: 'char' | Scalar | Layout<Fields>, count: number]
  | readonly [offset: number, type: Layout<Fields>];
export type Fields = { readonly [name: string]: FieldSpec };

/** What get() returns for a field spec. */
export type GetValue<S> = S extends readonly [number, 'u64' | 'i64']
  ? bigint
  : S extends readonly [number, Scalar]
    ? number
    : Uint8Array;
/** What set() accepts for a field spec. */
export type SetValue<S> = S extends readonly [number, 'u64' | 'i64']
  ? bigint | number
  : S extends readonly [number, Scalar]
    ? number
    : ArrayLike<number>;

type Getter = (dv: DataView, base: number) => number | bigint | Uint8Array;
type Setter = (dv: DataView, base: number, value: never) => void;

/** One field, resolved: where it is, what it is, and its accessors. */
export interface Field<S extends FieldSpec = FieldSpec> {
  readonly name: string;
  readonly offset: number;
  /** Scalar type, 'char', or the nested struct's layout. */
  readonly type: ElemType;
  /** Array length, or undefined for a single value / single nested struct. */
  readonly count: number | undefined;
  /** Bytes occupied by the whole field. */
  readonly size: number;
  get(dv: DataView, base: number): GetValue<S>;
  set(dv: DataView, base: number, value: SetValue<S>): void;
}

const SCALAR_SIZE: Record<Scalar, number> = { u8: 1, i8: 1, u16: 2, i16: 2, u32: 4, i32: 4, u64: 8, i64: 8 };

function isScalar(t: ElemType): t is Scalar {
  return typeof t === 'string' && t !== 'char';
}

function elemSize(t: ElemType): number {
  if (t === 'char') return 1;
  if (typeof t === 'string') return SCALAR_SIZE[t];
  return t.size;
}

function toU64(v: bigint | number): bigint {
  if (typeof v === 'bigint') return v;
  if (!Number.isSafeInteger(v)) throw new RangeError(`not a safe integer for a 64-bit field: ${v}`);
  return BigInt(v);
}

function scalarGetter(off: number, t: Scalar): Getter {
  switch (t) {
    case 'u8': return (dv, b) => dv.getUint8(b + off);
    case 'i8': return (dv, b) => dv.getInt8(b + off);
    case 'u16': return (dv, b) => dv.getUint16(b + off, true);
    case 'i16': return (dv, b) => dv.getInt16(b + off, true);
    case 'u32': return (dv, b) => dv.getUint32(b + off, true);
    case 'i32': return (dv, b) => dv.getInt32(b + off, true);
    case 'u64': return (dv, b) => dv.getBigUint64(b + off, true);
    case 'i64': return (dv, b) => dv.getBigInt64(b + off, true);
  }
}

function scalarSetter(off: number, t: Scalar): Setter {
  switch (t) {
    case 'u8': return (dv, b, v: number) => dv.setUint8(b + off, v);
    case 'i8': return (dv, b, v: number) => dv.setInt8(b + off, v);
    case 'u16': return (dv, b, v: number) => dv.setUint16(b + off, v, true);
    case 'i16': return (dv, b, v: number) => dv.setInt16(b + off, v, true);
    case 'u32': return (dv, b, v: number) => dv.setUint32(b + off, v, true);
    case 'i32': return (dv, b, v: number) => dv.setInt32(b + off, v, true);
    case 'u64': return (dv, b, v: bigint | number) => dv.setBigUint64(b + off, toU64(v), true);
    case 'i64': return (dv, b, v: bigint | number) => dv.setBigInt64(b + off, toU64(v), true);
  }
}

function bytesGetter(off: number, len: number): Getter {
  return (dv, b) => new Uint8Array(dv.buffer, dv.byteOffset + b + off, len);
}

function bytesSetter(name: string, off: number, len: number): Setter {
  return (dv, b, v: ArrayLike<number>) => {
    if (v.length > len) throw new RangeError(`${v.length} bytes do not fit in ${name} (${len})`);
    new Uint8Array(dv.buffer, dv.byteOffset + b + off, len).set(v);
  };
}

export class Layout<F extends Fields = Fields> {
  /** Xen's struct (or union/typedef) name. */
  readonly name: string;
  /** sizeof, in bytes. */
  readonly size: number;
  /** The C type to check against in Xen's headers, or null if the headers have no such type. */
  readonly c: string | null;
  /** The C expression `size` is checked against: `sizeof(<c>)` unless the description says otherwise. */
  readonly cSizeof: string | null;
  /** The description as written. */
  readonly fields: F;
  /** Offset of each field. */
  readonly off: { readonly [K in keyof F]: number };
  /** Each field, resolved, with its own get/set (skips the name lookup of get/set below). */
  readonly field: { readonly [K in keyof F]: Field<F[K]> };
  readonly #get: Record<string, Getter>;
  readonly #set: Record<string, Setter>;

  constructor(name: string, size: number, fields: F, c: string | null, cSizeof?: string) {
    this.name = name;
    this.size = size;
    this.c = c;
    this.cSizeof = c === null ? null : (cSizeof ?? `sizeof(${c})`);
    this.fields = fields;
    const off: Record<string, number> = {};
    const field: Record<string, Field> = {};
    const get: Record<string, Getter> = {};
    const set: Record<string, Setter> = {};
    for (const [key, spec] of Object.entries(fields)) {
      const [offset, type, count] = spec;
      const fsize = elemSize(type) * (count ?? 1);
      if (!Number.isInteger(offset) || offset < 0 || offset + fsize > size) {
        throw new RangeError(`${name}.${key}: [${offset}, +${fsize}) outside ${size} bytes`);
      }
      if (count !== undefined && (!Number.isInteger(count) || count < 0)) {
        throw new RangeError(`${name}.${key}: bad count ${count}`);
      }
      const scalar = count === undefined && isScalar(type);
      const g = scalar ? scalarGetter(offset, type) : bytesGetter(offset, fsize);
      const s = scalar ? scalarSetter(offset, type) : bytesSetter(`${name}.${key}`, offset, fsize);
      off[key] = offset;
      get[key] = g;
      set[key] = s;
      field[key] = Object.freeze({ name: key, offset, type, count, size: fsize, get: g, set: s }) as Field;
    }
    this.off = Object.freeze(off) as Layout<F>['off'];
    this.field = Object.freeze(field) as unknown as Layout<F>['field'];
    this.#get = get;
    this.#set = set;
    Object.freeze(this);
  }

  /** Read field `name` of the struct at byte `base` of `dv`. */
  get<K extends keyof F & string>(dv: DataView, base: number, name: K): GetValue<F[K]> {
    return this.#get[name]!(dv, base) as GetValue<F[K]>;
  }

  /** Write field `name` of the struct at byte `base` of `dv`. */
  set<K extends keyof F & string>(dv: DataView, base: number, name: K, value: SetValue<F[K]>): void {
    (this.#set[name] as (dv: DataView, base: number, v: SetValue<F[K]>) => void)(dv, base, value);
  }
}

/**
 * Describe a struct. `name` is Xen's name; the C type checked by the test is `struct <name>`
 * unless `opts.c` names another (`'union xenfb_in_event'`, `'xen_extraversion_t'`), or is null
 * when Xen's public headers have no such type. `opts.cSizeof` replaces `sizeof(<c>)` as the C
 * expression `size` must equal (e.g. the 64-byte header of a larger struct).
 */
export function layout<const F extends Fields>(
  name: string,
  size: number,
  fields: F,
  opts: { c?: string | null; cSizeof?: string } = {},
): Layout<F> {
  return new Layout(name, size, fields, opts.c === undefined ? `struct ${name}` : opts.c, opts.cSizeof);
}
