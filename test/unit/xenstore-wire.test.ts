// src/xenstore/wire.ts: golden xsd_sockmsg bytes for each op in both directions, the parser on
// whole input and on 1-byte chunks, and the hostile cases (too long, unknown type).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { xsd_errors } from '../../src/abi/io/xs_wire.js';
import { XS_FAILURES } from '../../src/xenstore/errors.js';
import {
  bytesToLatin1,
  encodePacket,
  errorPacket,
  isKnownXsType,
  latin1,
  oneArg,
  replyPacket,
  splitStrings,
  watchEventPacket,
  xsPayload,
  xsRequest,
  XsParser,
  xsTypeName,
  XS_DIRECTORY,
  XS_DIRECTORY_PART,
  XS_ERROR,
  XS_GET_PERMS,
  XS_READ,
  XS_TRANSACTION_START,
  XS_WATCH,
  XS_WATCH_EVENT,
  XS_WRITE,
  type XsParseResult,
} from '../../src/xenstore/wire.js';

/** Hex of a byte array, for readable golden comparisons. */
function hex(b: Uint8Array): string {
  return Buffer.from(b).toString('hex');
}

/** Header bytes written out by hand: type, req_id, tx_id, len as u32 little-endian. */
function hdr(type: number, reqId: number, txId: number, len: number): string {
  const le = (v: number): string => [0, 8, 16, 24].map((s) => ((v >>> s) & 0xff).toString(16).padStart(2, '0')).join('');
  return le(type) + le(reqId) + le(txId) + le(len);
}

function ascii(s: string): string {
  return Buffer.from(s, 'latin1').toString('hex');
}

describe('xsd_sockmsg golden bytes', () => {
  it('XS_READ request: header + "path\\0"', () => {
    const b = xsRequest.packet(XS_READ, 7, 0, xsRequest.path('device/vif/0/state'));
    assert.equal(hex(b), hdr(2, 7, 0, 19) + ascii('device/vif/0/state\0'));
    // Pinned literally once, so a wrong hdr() helper cannot hide a wrong encoder.
    assert.equal(hex(b).slice(0, 32), '02000000070000000000000013000000');
  });

  it('XS_WRITE request: "path\\0value" with no NUL after the value', () => {
    const b = xsRequest.packet(XS_WRITE, 1, 5, xsRequest.write('/a', '42'));
    assert.equal(hex(b), hdr(11, 1, 5, 5) + ascii('/a\x0042'));
  });

  it('XS_READ reply carries the raw value, no NUL', () => {
    const b = replyPacket({ reqId: 7, txId: 3 }, XS_READ, xsPayload.read(latin1('4')));
    assert.equal(hex(b), hdr(2, 7, 3, 1) + '34');
  });

  it('XS_WRITE reply is "OK\\0"', () => {
    const b = replyPacket({ reqId: 9, txId: 0 }, XS_WRITE, xsPayload.ok());
    assert.equal(hex(b), hdr(11, 9, 0, 3) + '4f4b00');
  });

  it('XS_DIRECTORY reply: every child NUL-terminated; no children is an empty payload', () => {
    const b = replyPacket({ reqId: 1, txId: 0 }, XS_DIRECTORY, xsPayload.directory(['backend', 'vif']));
    assert.equal(hex(b), hdr(1, 1, 0, 12) + ascii('backend\0vif\0'));
    const e = replyPacket({ reqId: 1, txId: 0 }, XS_DIRECTORY, xsPayload.directory([]));
    assert.equal(hex(e), hdr(1, 1, 0, 0));
  });

  it('XS_ERROR payload is the error name + NUL, req_id/tx_id echoed', () => {
    const b = errorPacket({ reqId: 0xdeadbeef, txId: 4 }, 'ENOENT');
    assert.equal(hex(b), hdr(16, 0xdeadbeef, 4, 7) + ascii('ENOENT\0'));
  });

  it('XS_WATCH_EVENT payload is "path\\0token\\0" with req_id = tx_id = 0', () => {
    const b = watchEventPacket('/local/domain/1/device', 'FFFF888004A2B0C0');
    assert.equal(hex(b), hdr(15, 0, 0, 40) + ascii('/local/domain/1/device\0FFFF888004A2B0C0\0'));
  });

  it('WATCH, TRANSACTION_START, SET_PERMS, INTRODUCE, DIRECTORY_PART requests', () => {
    assert.equal(hex(xsRequest.packet(XS_WATCH, 2, 0, xsRequest.watch('device', 'tok'))), hdr(4, 2, 0, 11) + ascii('device\0tok\0'));
    assert.equal(hex(xsRequest.packet(XS_TRANSACTION_START, 3, 0, xsRequest.transactionStart())), hdr(6, 3, 0, 1) + '00');
    assert.equal(hex(xsRequest.setPerms('/x', ['n1', 'r0'])), ascii('/x\0n1\0r0\0'));
    assert.equal(hex(xsRequest.introduce(5, 12345n, 3)), ascii('5\x0012345\x003\0'));
    assert.equal(hex(xsRequest.directoryPart('/local/domain', 0)), ascii('/local/domain\x000\0'));
    assert.equal(hex(xsRequest.transactionEnd(true)), ascii('T\0'));
    assert.equal(hex(xsRequest.transactionEnd(false)), ascii('F\0'));
  });

  it('TRANSACTION_START reply and GET_PERMS reply', () => {
    assert.equal(hex(replyPacket({ reqId: 3, txId: 0 }, XS_TRANSACTION_START, xsPayload.string('17'))), hdr(6, 3, 0, 3) + ascii('17\0'));
    assert.equal(hex(replyPacket({ reqId: 4, txId: 0 }, XS_GET_PERMS, xsPayload.perms(['n0', 'r5']))), hdr(3, 4, 0, 6) + ascii('n0\0r5\0'));
  });

  it('refuses to encode a payload over XENSTORE_PAYLOAD_MAX', () => {
    assert.throws(() => encodePacket({ type: XS_READ, reqId: 0, txId: 0, payload: new Uint8Array(4097) }), RangeError);
    assert.equal(encodePacket({ type: XS_READ, reqId: 0, txId: 0, payload: new Uint8Array(4096) }).length, 4112);
  });
});

describe('DIRECTORY_PART payload (core.c send_directory_part)', () => {
  it('whole list at offset 0: gen, children, extra NUL', () => {
    assert.equal(bytesToLatin1(xsPayload.directoryPart(42, ['a', 'bc'], 0)), '42\0a\0bc\0\0');
  });
  it('from a later offset', () => {
    assert.equal(bytesToLatin1(xsPayload.directoryPart(42, ['a', 'bc'], 2)), '42\0bc\0\0');
  });
  it('offset past the list: "gen\\0\\0"', () => {
    assert.equal(bytesToLatin1(xsPayload.directoryPart(7, ['a'], 2)), '7\0\0');
    assert.equal(bytesToLatin1(xsPayload.directoryPart(7, [], 0)), '7\0\0');
  });
  it('splits a long list at child boundaries, terminating only the last chunk', () => {
    const children = Array.from({ length: 600 }, (_, i) => `child${String(i).padStart(4, '0')}`); // 10 chars each
    const all = children.map((c) => `${c}\0`).join('');
    let off = 0;
    let got = '';
    let rounds = 0;
    for (;;) {
      const p = bytesToLatin1(xsPayload.directoryPart(9, children, off));
      assert.ok(p.length <= 4096);
      assert.ok(p.startsWith('9\0'));
      const body = p.slice(2);
      rounds++;
      if (body.endsWith('\0\0') || body === '\0') {
        got += body.slice(0, -1);
        break;
      }
      got += body;
      off += body.length;
    }
    assert.equal(got, all);
    assert.equal(rounds, 2);
  });
});

describe('XsParser', () => {
  const stream = [
    xsRequest.packet(XS_READ, 1, 0, xsRequest.path('/a')),
    xsRequest.packet(XS_WRITE, 2, 9, xsRequest.write('/b', 'xyz')),
    xsRequest.packet(XS_DIRECTORY, 3, 0, new Uint8Array(0)),
    xsRequest.packet(XS_WATCH, 4, 0, xsRequest.watch('@releaseDomain', 't')),
  ];
  const bytes = Buffer.concat(stream);

  function summary(rs: XsParseResult[]): string[] {
    return rs.map((r) =>
      r.kind === 'too-long'
        ? `too-long ${r.header.len}`
        : `${r.kind} ${xsTypeName(r.packet.type)} ${r.packet.reqId} ${r.packet.txId} ${hex(r.packet.payload)}`,
    );
  }

  const expected = [
    `packet READ 1 0 ${ascii('/a\0')}`,
    `packet WRITE 2 9 ${ascii('/b\0xyz')}`,
    'packet DIRECTORY 3 0 ',
    `packet WATCH 4 0 ${ascii('@releaseDomain\0t\0')}`,
  ];

  it('parses a whole buffer', () => {
    const p = new XsParser();
    assert.deepEqual(summary(p.feed(bytes)), expected);
    assert.equal(p.buffered, 0);
  });

  it('parses the same stream fed 1 byte at a time', () => {
    const p = new XsParser();
    const out: XsParseResult[] = [];
    for (let i = 0; i < bytes.length; i++) out.push(...p.feed(bytes.subarray(i, i + 1)));
    assert.deepEqual(summary(out), expected);
  });

  it('parses every split of the stream into two chunks', () => {
    for (let cut = 0; cut <= bytes.length; cut++) {
      const p = new XsParser();
      const out = [...p.feed(bytes.subarray(0, cut)), ...p.feed(bytes.subarray(cut))];
      assert.deepEqual(summary(out), expected, `cut at ${cut}`);
    }
  });

  it('copies payloads: reusing the input buffer does not change them', () => {
    const buf = Uint8Array.from(stream[0] as Uint8Array);
    const p = new XsParser();
    const [r] = p.feed(buf);
    buf.fill(0xff);
    assert.ok(r && r.kind === 'packet');
    assert.equal(bytesToLatin1(r.packet.payload), '/a\0');
  });

  it('unknown types are reported with their payload consumed, and the stream stays in step', () => {
    const p = new XsParser();
    const input = Buffer.concat([
      xsRequest.packet(20, 1, 0, latin1('junk')), // XS_RESTRICT, removed
      xsRequest.packet(0xffff, 2, 0, latin1('x\0')), // XS_INVALID
      xsRequest.packet(27, 3, 0, new Uint8Array(0)), // past XS_TYPE_COUNT
      xsRequest.packet(XS_READ, 4, 0, xsRequest.path('/a')),
    ]);
    assert.deepEqual(summary(p.feed(input)), [
      `unknown-type **UNKNOWN** 1 0 ${ascii('junk')}`,
      `unknown-type **UNKNOWN** 2 0 ${ascii('x\0')}`,
      'unknown-type **UNKNOWN** 3 0 ',
      `packet READ 4 0 ${ascii('/a\0')}`,
    ]);
  });

  it('len > XENSTORE_PAYLOAD_MAX fails the stream, without an exception', () => {
    const p = new XsParser();
    const bad = Buffer.from(hdr(XS_READ, 1, 0, 4097), 'hex');
    const out = p.feed(Buffer.concat([stream[0] as Uint8Array, bad, stream[1] as Uint8Array]));
    assert.deepEqual(summary(out), [expected[0], 'too-long 4097']);
    assert.equal(p.failed?.len, 4097);
    assert.deepEqual(p.feed(stream[2] as Uint8Array), []);
    p.reset();
    assert.deepEqual(summary(p.feed(stream[2] as Uint8Array)), [expected[2]]);
  });

  it('accepts exactly XENSTORE_PAYLOAD_MAX', () => {
    const p = new XsParser();
    const payload = new Uint8Array(4096).fill(0x41);
    const [r] = p.feed(xsRequest.packet(XS_WRITE, 1, 0, payload));
    assert.equal(r?.kind, 'packet');
  });
});

describe('payload helpers', () => {
  it('oneArg needs exactly one NUL, at the end', () => {
    assert.equal(oneArg(latin1('/a\0')), '/a');
    assert.equal(oneArg(latin1('\0')), '');
    assert.equal(oneArg(latin1('/a')), undefined);
    assert.equal(oneArg(latin1('/a\0b\0')), undefined);
    assert.equal(oneArg(latin1('/a\0b')), undefined);
    assert.equal(oneArg(new Uint8Array(0)), undefined);
  });

  it('splitStrings keeps bytes after the last NUL apart', () => {
    assert.deepEqual(splitStrings(latin1('a\0b\0c')), { strings: ['a', 'b'], rest: latin1('c') });
  });

  it('byte strings survive every byte value', () => {
    const all = Uint8Array.from({ length: 256 }, (_, i) => i);
    assert.deepEqual(latin1(bytesToLatin1(all)), all);
  });

  it('knows which types Xen defines', () => {
    assert.ok(isKnownXsType(XS_WATCH_EVENT));
    assert.ok(isKnownXsType(XS_ERROR));
    assert.ok(isKnownXsType(XS_DIRECTORY_PART));
    assert.ok(!isKnownXsType(20));
    assert.ok(!isKnownXsType(27));
  });

  it('every error name pvbox sends is in xs_wire.h xsd_errors', () => {
    const names = new Set(xsd_errors.map((e) => e.errstring));
    for (const [failure, name] of Object.entries(XS_FAILURES)) assert.ok(names.has(name), `${failure} → ${name}`);
  });
});
