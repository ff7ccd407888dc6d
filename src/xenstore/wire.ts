// XenStore wire protocol: struct xsd_sockmsg framing, an incremental parser and payload builders
// (xen/include/public/io/xs_wire.h, docs/misc/xenstore.txt, tools/xenstored/core.c).
//
// Pure: no I/O. The same bytes travel over the guest's shared-page ring and over xenstored's Unix
// socket. A message is a 16-byte little-endian header {type, req_id, tx_id, len} then `len`
// payload bytes, len <= XENSTORE_PAYLOAD_MAX. Payload strings are NUL-terminated, except a
// WRITE's value and a READ reply, which are raw bytes.
//
// Strings here are byte strings: one JS char per byte (latin1), so tokens and values survive a
// round trip whatever bytes they hold. Paths are ASCII anyway (xenstored's valid_chars).

import {
  XENSTORE_PAYLOAD_MAX,
  XS_ERROR,
  XS_SET_QUOTA,
  XS_WATCH_EVENT,
} from '../abi/io/xs_wire.js';

// The message type numbers and limits are Xen's (src/abi/io/xs_wire.ts); re-exported so that
// XenStore code has one import.
export {
  XENSTORE_ABS_PATH_MAX,
  XENSTORE_PAYLOAD_MAX,
  XENSTORE_REL_PATH_MAX,
  XS_CONTROL,
  XS_DEBUG,
  XS_DIRECTORY,
  XS_DIRECTORY_PART,
  XS_ERROR,
  XS_GET_DOMAIN_PATH,
  XS_GET_FEATURE,
  XS_GET_PERMS,
  XS_GET_QUOTA,
  XS_INTRODUCE,
  XS_INVALID,
  XS_IS_DOMAIN_INTRODUCED,
  XS_MKDIR,
  XS_READ,
  XS_RELEASE,
  XS_RESET_WATCHES,
  XS_RESUME,
  XS_RM,
  XS_SET_FEATURE,
  XS_SET_PERMS,
  XS_SET_QUOTA,
  XS_SET_TARGET,
  XS_TRANSACTION_END,
  XS_TRANSACTION_START,
  XS_UNWATCH,
  XS_WATCH,
  XS_WATCH_EVENT,
  XS_WRITE,
} from '../abi/io/xs_wire.js';

/**
 * Number of message types pvbox knows (Xen's XS_TYPE_COUNT as of the newest xs_wire.h: 27; Xen
 * 4.17 had 23). Types at or above it, and 20 (XS_RESTRICT, removed), are unknown.
 */
export const XS_TYPE_COUNT = XS_SET_QUOTA + 1;

/** sizeof(struct xsd_sockmsg). */
export const XSD_SOCKMSG_SIZE = 16;

/** Names as in xenstored's wire_funcs[] table (core.c), for traces. */
const TYPE_NAMES: readonly (string | undefined)[] = [
  'CONTROL', 'DIRECTORY', 'READ', 'GET_PERMS', 'WATCH', 'UNWATCH', 'TRANSACTION_START',
  'TRANSACTION_END', 'INTRODUCE', 'RELEASE', 'GET_DOMAIN_PATH', 'WRITE', 'MKDIR', 'RM',
  'SET_PERMS', 'WATCH_EVENT', 'ERROR', 'IS_DOMAIN_INTRODUCED', 'RESUME', 'SET_TARGET',
  undefined, 'RESET_WATCHES', 'DIRECTORY_PART', 'GET_FEATURE', 'SET_FEATURE', 'GET_QUOTA',
  'SET_QUOTA',
];

/** True for a type Xen defines (either direction); false for 20 (RESTRICT, removed) and >= 27. */
export function isKnownXsType(type: number): boolean {
  return Number.isInteger(type) && type >= 0 && type < XS_TYPE_COUNT && TYPE_NAMES[type] !== undefined;
}

/** "READ", "WATCH_EVENT", ... or "**UNKNOWN**" (sockmsg_string in core.c). */
export function xsTypeName(type: number): string {
  return isKnownXsType(type) ? (TYPE_NAMES[type] as string) : '**UNKNOWN**';
}

/** struct xsd_sockmsg. All fields are u32. */
export interface XsHeader {
  readonly type: number;
  readonly reqId: number;
  readonly txId: number;
  readonly len: number;
}

/** One complete message. `payload.length === header len`. */
export interface XsPacket {
  readonly type: number;
  readonly reqId: number;
  readonly txId: number;
  readonly payload: Uint8Array;
}

// ---------------------------------------------------------------------------------------------
// Byte strings

/** One byte per char; chars above 0xff are a caller bug (RangeError). */
export function latin1(s: string): Uint8Array {
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 0xff) throw new RangeError(`xenstore byte string has char U+${c.toString(16)} at ${i}`);
    out[i] = c;
  }
  return out;
}

/** Bytes to a byte string (inverse of latin1()). */
export function bytesToLatin1(b: Uint8Array): string {
  let s = '';
  for (let i = 0; i < b.length; i += 8192) {
    s += String.fromCharCode(...b.subarray(i, Math.min(b.length, i + 8192)));
  }
  return s;
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** Each string followed by a NUL: `<a>|<b>|` in xenstore.txt notation. */
export function nulTerminated(...strings: readonly string[]): Uint8Array {
  return concat(strings.flatMap((s) => [latin1(s), NUL]));
}

const NUL = new Uint8Array([0]);

/**
 * Split a payload into its NUL-terminated strings, as xenstored's get_strings() does: bytes after
 * the last NUL are not a string and are returned as `rest`.
 */
export function splitStrings(payload: Uint8Array): { strings: string[]; rest: Uint8Array } {
  const strings: string[] = [];
  let start = 0;
  for (let i = 0; i < payload.length; i++) {
    if (payload[i] === 0) {
      strings.push(bytesToLatin1(payload.subarray(start, i)));
      start = i + 1;
    }
  }
  return { strings, rest: payload.subarray(start) };
}

/**
 * The single argument of READ, MKDIR, RM, ...: the payload must hold exactly one NUL, at its end
 * (core.c onearg). Undefined otherwise.
 */
export function oneArg(payload: Uint8Array): string | undefined {
  if (payload.length === 0 || payload.indexOf(0) !== payload.length - 1) return undefined;
  return bytesToLatin1(payload.subarray(0, payload.length - 1));
}

// ---------------------------------------------------------------------------------------------
// Framing

export function encodeHeader(h: XsHeader): Uint8Array {
  const out = new Uint8Array(XSD_SOCKMSG_SIZE);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, h.type >>> 0, true);
  dv.setUint32(4, h.reqId >>> 0, true);
  dv.setUint32(8, h.txId >>> 0, true);
  dv.setUint32(12, h.len >>> 0, true);
  return out;
}

export function decodeHeader(bytes: Uint8Array): XsHeader {
  if (bytes.length < XSD_SOCKMSG_SIZE) throw new RangeError(`xsd_sockmsg needs ${XSD_SOCKMSG_SIZE} bytes, got ${bytes.length}`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, XSD_SOCKMSG_SIZE);
  return { type: dv.getUint32(0, true), reqId: dv.getUint32(4, true), txId: dv.getUint32(8, true), len: dv.getUint32(12, true) };
}

/** Header + payload in one buffer. Throws RangeError past XENSTORE_PAYLOAD_MAX (a host bug). */
export function encodePacket(p: XsPacket): Uint8Array {
  if (p.payload.length > XENSTORE_PAYLOAD_MAX) {
    throw new RangeError(`xenstore payload of ${p.payload.length} bytes exceeds XENSTORE_PAYLOAD_MAX`);
  }
  const out = new Uint8Array(XSD_SOCKMSG_SIZE + p.payload.length);
  out.set(encodeHeader({ type: p.type, reqId: p.reqId, txId: p.txId, len: p.payload.length }), 0);
  out.set(p.payload, XSD_SOCKMSG_SIZE);
  return out;
}

/** What the parser yields for each message boundary it finds. */
export type XsParseResult =
  /** A message of a type Xen defines. */
  | { readonly kind: 'packet'; readonly packet: XsPacket }
  /** A type Xen does not define; its payload was consumed, so the stream is still in step. */
  | { readonly kind: 'unknown-type'; readonly packet: XsPacket }
  /**
   * len > XENSTORE_PAYLOAD_MAX. The stream cannot be trusted any more: xenstored stops serving
   * such a connection (XENSTORE_ERROR_PROTO). The parser is failed from here on and yields
   * nothing more.
   */
  | { readonly kind: 'too-long'; readonly header: XsHeader };

/**
 * Incremental xsd_sockmsg parser: feed it chunks of any size (down to 1 byte) and it returns the
 * messages each chunk completes. Payload bytes are copied, so callers may reuse their buffers.
 */
export class XsParser {
  #hdr = new Uint8Array(XSD_SOCKMSG_SIZE);
  #hdrUsed = 0;
  #header: XsHeader | undefined;
  #payload: Uint8Array | undefined;
  #payloadUsed = 0;
  #failed: XsHeader | undefined;

  /** The header that made the stream unusable, if any. */
  get failed(): XsHeader | undefined {
    return this.#failed;
  }

  /** Bytes of an incomplete message held so far. */
  get buffered(): number {
    return this.#header ? XSD_SOCKMSG_SIZE + this.#payloadUsed : this.#hdrUsed;
  }

  /** Forget any partial message and any failure (xenstored's domain_conn_reset). */
  reset(): void {
    this.#hdrUsed = 0;
    this.#header = undefined;
    this.#payload = undefined;
    this.#payloadUsed = 0;
    this.#failed = undefined;
  }

  feed(chunk: Uint8Array): XsParseResult[] {
    const out: XsParseResult[] = [];
    let off = 0;
    while (!this.#failed && off < chunk.length) {
      if (!this.#header) {
        const n = Math.min(XSD_SOCKMSG_SIZE - this.#hdrUsed, chunk.length - off);
        this.#hdr.set(chunk.subarray(off, off + n), this.#hdrUsed);
        this.#hdrUsed += n;
        off += n;
        if (this.#hdrUsed < XSD_SOCKMSG_SIZE) break;
        const header = decodeHeader(this.#hdr);
        this.#hdrUsed = 0;
        if (header.len > XENSTORE_PAYLOAD_MAX) {
          this.#failed = header;
          out.push({ kind: 'too-long', header });
          break;
        }
        this.#header = header;
        this.#payload = new Uint8Array(header.len);
        this.#payloadUsed = 0;
      }
      const payload = this.#payload as Uint8Array;
      const n = Math.min(payload.length - this.#payloadUsed, chunk.length - off);
      payload.set(chunk.subarray(off, off + n), this.#payloadUsed);
      this.#payloadUsed += n;
      off += n;
      if (this.#payloadUsed === payload.length) {
        const h = this.#header;
        const packet: XsPacket = { type: h.type, reqId: h.reqId, txId: h.txId, payload };
        out.push({ kind: isKnownXsType(h.type) ? 'packet' : 'unknown-type', packet });
        this.#header = undefined;
        this.#payload = undefined;
        this.#payloadUsed = 0;
      }
    }
    return out;
  }
}

// ---------------------------------------------------------------------------------------------
// Reply payloads, byte-exact with C xenstored

export const xsPayload = {
  /** "OK\0": WRITE, MKDIR, RM, SET_PERMS, WATCH, UNWATCH, TRANSACTION_END, INTRODUCE, ... (send_ack). */
  ok(): Uint8Array {
    return nulTerminated('OK');
  },
  /** A READ reply: the value itself, no NUL added. */
  read(value: Uint8Array): Uint8Array {
    return value.slice();
  },
  /** A DIRECTORY reply: each child leaf name NUL-terminated; no children, empty payload. */
  directory(children: readonly string[]): Uint8Array {
    return nulTerminated(...children);
  },
  /** GET_PERMS: each "<n|r|w|b><domid>" NUL-terminated. */
  perms(perms: readonly string[]): Uint8Array {
    return nulTerminated(...perms);
  },
  /** One NUL-terminated string: TRANSACTION_START's id, GET_DOMAIN_PATH, IS_DOMAIN_INTRODUCED "T"/"F". */
  string(s: string): Uint8Array {
    return nulTerminated(s);
  },
  /** XS_ERROR: the error name + NUL. */
  error(name: string): Uint8Array {
    return nulTerminated(name);
  },
  /** XS_WATCH_EVENT: "path\0token\0". */
  watchEvent(path: string, token: string): Uint8Array {
    return nulTerminated(path, token);
  },
  /**
   * DIRECTORY_PART (core.c send_directory_part): "<gencnt>\0" then as many whole child names
   * (from byte `offset` of the NUL-separated child list) as fit in XENSTORE_PAYLOAD_MAX; when the
   * list ends in this chunk an extra NUL marks the end. An offset past the list gives "gen\0\0".
   */
  directoryPart(generation: number | bigint, children: readonly string[], offset: number): Uint8Array {
    const gen = latin1(`${generation}\0`);
    const list = nulTerminated(...children);
    if (offset >= list.length) return concat([gen, NUL]);
    const maxlen = XENSTORE_PAYLOAD_MAX - gen.length - 1;
    let len = 0;
    let child = offset;
    for (;;) {
      const end = list.indexOf(0, child);
      const clen = end - child;
      if (!(len + clen < maxlen)) break;
      len += clen + 1;
      child += clen + 1;
      if (offset + len === list.length) break;
    }
    const parts = [gen, list.subarray(offset, offset + len)];
    if (offset + len === list.length) parts.push(NUL);
    return concat(parts);
  },
} as const;

/** A reply to `req`: same req_id and tx_id (xenstored reuses the request header). */
export function replyPacket(req: Pick<XsPacket, 'reqId' | 'txId'>, type: number, payload: Uint8Array): Uint8Array {
  return encodePacket({ type, reqId: req.reqId, txId: req.txId, payload });
}

/** XS_ERROR reply to `req`. */
export function errorPacket(req: Pick<XsPacket, 'reqId' | 'txId'>, name: string): Uint8Array {
  return replyPacket(req, XS_ERROR, xsPayload.error(name));
}

/** Unsolicited XS_WATCH_EVENT; req_id and tx_id are both 0. */
export function watchEventPacket(path: string, token: string): Uint8Array {
  return encodePacket({ type: XS_WATCH_EVENT, reqId: 0, txId: 0, payload: xsPayload.watchEvent(path, token) });
}

// ---------------------------------------------------------------------------------------------
// Request payloads, as Linux's xenbus_xs.c and libxenstore send them (tests, in-host clients)

export const xsRequest = {
  /** READ, DIRECTORY, MKDIR, RM, GET_PERMS, GET_DOMAIN_PATH, RELEASE, ...: "<arg>\0". */
  path(path: string): Uint8Array {
    return nulTerminated(path);
  },
  /** WRITE: "<path>\0<value>" (the value carries no NUL). */
  write(path: string, value: Uint8Array | string): Uint8Array {
    return concat([latin1(path), NUL, typeof value === 'string' ? latin1(value) : value]);
  },
  /** WATCH / UNWATCH: "<path>\0<token>\0". */
  watch(path: string, token: string): Uint8Array {
    return nulTerminated(path, token);
  },
  /** SET_PERMS: "<path>\0<perm>\0<perm>\0...". */
  setPerms(path: string, perms: readonly string[]): Uint8Array {
    return nulTerminated(path, ...perms);
  },
  /** TRANSACTION_START: "\0" (Linux sends an empty string). */
  transactionStart(): Uint8Array {
    return nulTerminated('');
  },
  /** TRANSACTION_END: "T\0" to commit, "F\0" to abort. */
  transactionEnd(commit: boolean): Uint8Array {
    return nulTerminated(commit ? 'T' : 'F');
  },
  /** INTRODUCE: "<domid>\0<gfn>\0<evtchn>\0". */
  introduce(domid: number, gfn: number | bigint, evtchn: number): Uint8Array {
    return nulTerminated(String(domid), String(gfn), String(evtchn));
  },
  /** DIRECTORY_PART: "<path>\0<offset>\0". */
  directoryPart(path: string, offset: number): Uint8Array {
    return nulTerminated(path, String(offset));
  },
  /** Any request packet. */
  packet(type: number, reqId: number, txId: number, payload: Uint8Array): Uint8Array {
    return encodePacket({ type, reqId, txId, payload });
  },
} as const;
