// XZ container, LZMA2/LZMA decoder and x86 BCJ filter for kernel payloads; mirrors xen/common/xz/dec_stream.c, dec_lzma2.c, dec_bcj.c (xz-embedded) and xen/common/unlzma.c.
import { createHash } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { ImageError } from '../errors.js';

// ---------------------------------------------------------------------------
// LZMA probability layout (one Uint16Array, offsets as in dec_lzma2.c's struct lzma_dec)

const STATES = 12;
const POS_STATES_MAX = 16;
const MATCH_LEN_MIN = 2;
const DIST_STATES = 4;
const DIST_SLOTS = 64;
const DIST_MODEL_START = 4;
const DIST_MODEL_END = 14;
const FULL_DISTANCES = 128;
const ALIGN_BITS = 4;
const ALIGN_SIZE = 1 << ALIGN_BITS;
const LEN_LOW_SYMBOLS = 8;
const LEN_MID_SYMBOLS = 8;
const LEN_HIGH_SYMBOLS = 256;
const RC_BIT_MODEL_TOTAL = 1 << 11;
const RC_INIT_BYTES = 5;

const IS_MATCH = 0;
const IS_REP = IS_MATCH + STATES * POS_STATES_MAX;
const IS_REP0 = IS_REP + STATES;
const IS_REP1 = IS_REP0 + STATES;
const IS_REP2 = IS_REP1 + STATES;
const IS_REP0_LONG = IS_REP2 + STATES;
const DIST_SLOT = IS_REP0_LONG + STATES * POS_STATES_MAX;
const DIST_SPECIAL = DIST_SLOT + DIST_STATES * DIST_SLOTS;
const DIST_ALIGN = DIST_SPECIAL + FULL_DISTANCES - DIST_MODEL_END;
// struct lzma_len_dec: choice, choice2, low[16][8], mid[16][8], high[256]
const LEN_CHOICE = 0;
const LEN_CHOICE2 = 1;
const LEN_LOW = 2;
const LEN_MID = LEN_LOW + POS_STATES_MAX * LEN_LOW_SYMBOLS;
const LEN_HIGH = LEN_MID + POS_STATES_MAX * LEN_MID_SYMBOLS;
const LEN_DEC_SIZE = LEN_HIGH + LEN_HIGH_SYMBOLS;
const MATCH_LEN_DEC = DIST_ALIGN + ALIGN_SIZE;
const REP_LEN_DEC = MATCH_LEN_DEC + LEN_DEC_SIZE;
const LITERAL = REP_LEN_DEC + LEN_DEC_SIZE;
const LITERAL_CODER_SIZE = 0x300;
const LITERAL_CODERS_MAX = 1 << 4; // lc + lp <= 4
const PROBS_TOTAL = LITERAL + LITERAL_CODER_SIZE * LITERAL_CODERS_MAX;

/** Upper bound on any decompressed kernel (Xen's XC_DOM_DECOMPRESS_MAX default is 1 GiB). */
export const DECOMPRESS_MAX = 1 << 30;

function corrupt(what: string, detail: string): ImageError {
  return new ImageError(`${what} payload is corrupt: ${detail}`);
}

/**
 * The LZMA decoder core (dec_lzma2.c: struct lzma_dec + struct rc_dec). It decodes straight into
 * the caller's output array, which also serves as the dictionary: `dictStart` is where the
 * dictionary was last reset, so no match may reach before it.
 */
class LzmaDecoder {
  readonly probs = new Uint16Array(PROBS_TOTAL);
  lc = 0;
  literalPosMask = 0;
  posMask = 0;
  state = 0;
  rep0 = 0;
  rep1 = 0;
  rep2 = 0;
  rep3 = 0;
  /** Match bytes still to copy when decode() stopped at its limit (lzma.len in dec_lzma2.c). */
  len = 0;
  /** The end-of-payload marker (distance 0xFFFFFFFF) was decoded. */
  eos = false;
  range = 0;
  code = 0;
  input: Uint8Array = new Uint8Array(0);
  inPos = 0;

  constructor(private readonly what: string) {}

  /** lzma_props: decode the lc/lp/pb byte. */
  setProps(props: number): void {
    if (props > (4 * 5 + 4) * 9 + 8) throw corrupt(this.what, `LZMA properties byte ${props} out of range`);
    const pb = Math.floor(props / 45);
    props -= pb * 45;
    const lp = Math.floor(props / 9);
    const lc = props - lp * 9;
    if (lc + lp > 4) throw corrupt(this.what, `LZMA lc=${lc} + lp=${lp} exceeds 4`);
    this.lc = lc;
    this.literalPosMask = (1 << lp) - 1;
    this.posMask = (1 << pb) - 1;
    this.reset();
  }

  /** lzma_reset: state reset (probabilities, reps, state). */
  reset(): void {
    this.state = 0;
    this.rep0 = this.rep1 = this.rep2 = this.rep3 = 0;
    this.len = 0;
    this.eos = false;
    this.probs.fill(RC_BIT_MODEL_TOTAL >>> 1);
  }

  /** rc_reset + rc_read_init: the first of the five bytes is ignored, as xz-embedded does. */
  rcInit(input: Uint8Array, pos: number): void {
    this.input = input;
    this.range = -1; // 0xffffffff: range and code are kept as int32 bit patterns
    this.code = (input[pos + 1]! << 24) | (input[pos + 2]! << 16) | (input[pos + 3]! << 8) | input[pos + 4]!;
    this.inPos = pos + RC_INIT_BYTES;
  }

  /** rc_normalize; reading past the input yields 0 and is caught by the caller's consumed-size check. */
  normalize(): void {
    if ((this.range & 0xff000000) === 0) {
      this.range <<= 8;
      this.code = (this.code << 8) | (this.inPos < this.input.length ? this.input[this.inPos]! : 0);
      this.inPos++;
    }
  }

  badDistance(rep0: number): ImageError {
    return corrupt(this.what, `match distance ${(rep0 >>> 0) + 1} reaches before the dictionary`);
  }

  /**
   * lzma_main: decode symbols into out[pos..limit). A match that does not fit is cut at the limit
   * and the rest left in `len` (the caller decides whether that is an error); a match reaching
   * before `dictStart` or beyond `dictSize` is corruption. Returns the new output position.
   *
   * Speed matters here (a Debian kernel is ~64 MiB of output), so the range decoder lives in
   * locals and every rc_bit / rc_bittree / rc_bittree_reverse / rc_direct of dec_lzma2.c is
   * written out in place; each copy is marked with the name of the dec_lzma2.c step it performs.
   * Reading past the input yields zero bytes; callers compare inPos with the chunk end.
   * Literal numbers stand for dec_lzma2.c's macros so V8 sees constants: 2048 = RC_BIT_MODEL_TOTAL,
   * 5 = RC_MOVE_BITS, `(range & 0xff000000) === 0` = range < RC_TOP_VALUE, `state <= 6` =
   * lzma_state_is_literal, 16 = POS_STATES_MAX. range/code hold u32 values as int32 bit patterns,
   * compared unsigned by flipping the sign bit.
   */
  decode(out: Uint8Array, pos: number, limit: number, dictStart: number, dictSize: number): number {
    const probs = this.probs;
    const input = this.input;
    const lc = this.lc;
    const literalPosMask = this.literalPosMask;
    const posMask = this.posMask;
    let range = this.range;
    let code = this.code;
    let inPos = this.inPos;
    let state = this.state;
    let rep0 = this.rep0;
    let rep1 = this.rep1;
    let rep2 = this.rep2;
    let rep3 = this.rep3;
    let p = 0; // probability being updated
    let i = 0; // its index
    let bound = 0;
    let pending = 0; // lzma.len: match bytes cut off at the limit
    let eos = false;

    while (pos < limit) {
      const dictPos = pos - dictStart;
      const posState = dictPos & posMask;

      // rc_bit(is_match[state][pos_state])
      i = IS_MATCH + state * 16 + posState;
      if ((range & 0xff000000) === 0) { range <<= 8; code = (code << 8) | input[inPos++]!; }
      p = probs[i]!;
      bound = Math.imul(range >>> 11, p);
      if ((code ^ -0x80000000) < (bound ^ -0x80000000)) {
        range = bound;
        probs[i] = p + ((2048 - p) >>> 5);

        // lzma_literal
        const prev = dictPos > 0 ? out[pos - 1]! : 0;
        const base = LITERAL + 0x300 * (((dictPos & literalPosMask) << lc) + (prev >>> (8 - lc)));
        let symbol = 1;
        if (state <= 6) {
          // rc_bittree(probs, 0x100)
          do {
            i = base + symbol;
            if ((range & 0xff000000) === 0) { range <<= 8; code = (code << 8) | input[inPos++]!; }
            p = probs[i]!;
            bound = Math.imul(range >>> 11, p);
            if ((code ^ -0x80000000) < (bound ^ -0x80000000)) { range = bound; probs[i] = p + ((2048 - p) >>> 5); symbol <<= 1; }
            else { range = (range - bound) | 0; code = (code - bound) | 0; probs[i] = p - (p >>> 5); symbol = (symbol << 1) | 1; }
          } while (symbol < 0x100);
        } else {
          // matched literal; rep0 was validated when its match was copied
          let matchByte = out[pos - rep0 - 1]! << 1;
          let offset = 0x100;
          do {
            const matchBit = matchByte & offset;
            matchByte <<= 1;
            i = base + offset + matchBit + symbol;
            if ((range & 0xff000000) === 0) { range <<= 8; code = (code << 8) | input[inPos++]!; }
            p = probs[i]!;
            bound = Math.imul(range >>> 11, p);
            if ((code ^ -0x80000000) < (bound ^ -0x80000000)) { range = bound; probs[i] = p + ((2048 - p) >>> 5); symbol <<= 1; offset &= ~matchBit; }
            else { range = (range - bound) | 0; code = (code - bound) | 0; probs[i] = p - (p >>> 5); symbol = (symbol << 1) | 1; offset &= matchBit; }
          } while (symbol < 0x100);
        }
        out[pos++] = symbol & 0xff;
        state = state < 4 ? 0 : state < 10 ? state - 3 : state - 6; // lzma_state_literal
        continue;
      }
      range = (range - bound) | 0;
      code = (code - bound) | 0;
      probs[i] = p - (p >>> 5);

      let lenBase: number;
      let newMatch: boolean;
      // rc_bit(is_rep[state])
      i = IS_REP + state;
      if ((range & 0xff000000) === 0) { range <<= 8; code = (code << 8) | input[inPos++]!; }
      p = probs[i]!;
      bound = Math.imul(range >>> 11, p);
      if ((code ^ -0x80000000) < (bound ^ -0x80000000)) {
        range = bound;
        probs[i] = p + ((2048 - p) >>> 5);
        // lzma_match: the distance follows the length
        state = state < 7 ? 7 : 10;
        rep3 = rep2;
        rep2 = rep1;
        rep1 = rep0;
        lenBase = MATCH_LEN_DEC;
        newMatch = true;
      } else {
        range = (range - bound) | 0;
        code = (code - bound) | 0;
        probs[i] = p - (p >>> 5);
        // lzma_rep_match: rc_bit(is_rep0[state])
        i = IS_REP0 + state;
        if ((range & 0xff000000) === 0) { range <<= 8; code = (code << 8) | input[inPos++]!; }
        p = probs[i]!;
        bound = Math.imul(range >>> 11, p);
        if ((code ^ -0x80000000) < (bound ^ -0x80000000)) {
          range = bound;
          probs[i] = p + ((2048 - p) >>> 5);
          // rc_bit(is_rep0_long[state][pos_state])
          i = IS_REP0_LONG + state * 16 + posState;
          if ((range & 0xff000000) === 0) { range <<= 8; code = (code << 8) | input[inPos++]!; }
          p = probs[i]!;
          bound = Math.imul(range >>> 11, p);
          if ((code ^ -0x80000000) < (bound ^ -0x80000000)) {
            range = bound;
            probs[i] = p + ((2048 - p) >>> 5);
            // short rep: one byte at rep0
            state = state < 7 ? 9 : 11;
            if (rep0 < 0 || rep0 >= dictPos || rep0 >= dictSize) throw this.badDistance(rep0);
            out[pos] = out[pos - rep0 - 1]!;
            pos++;
            continue;
          }
          range = (range - bound) | 0;
          code = (code - bound) | 0;
          probs[i] = p - (p >>> 5);
        } else {
          range = (range - bound) | 0;
          code = (code - bound) | 0;
          probs[i] = p - (p >>> 5);
          let tmp: number;
          // rc_bit(is_rep1[state])
          i = IS_REP1 + state;
          if ((range & 0xff000000) === 0) { range <<= 8; code = (code << 8) | input[inPos++]!; }
          p = probs[i]!;
          bound = Math.imul(range >>> 11, p);
          if ((code ^ -0x80000000) < (bound ^ -0x80000000)) {
            range = bound;
            probs[i] = p + ((2048 - p) >>> 5);
            tmp = rep1;
          } else {
            range = (range - bound) | 0;
            code = (code - bound) | 0;
            probs[i] = p - (p >>> 5);
            // rc_bit(is_rep2[state])
            i = IS_REP2 + state;
            if ((range & 0xff000000) === 0) { range <<= 8; code = (code << 8) | input[inPos++]!; }
            p = probs[i]!;
            bound = Math.imul(range >>> 11, p);
            if ((code ^ -0x80000000) < (bound ^ -0x80000000)) {
              range = bound;
              probs[i] = p + ((2048 - p) >>> 5);
              tmp = rep2;
            } else {
              range = (range - bound) | 0;
              code = (code - bound) | 0;
              probs[i] = p - (p >>> 5);
              tmp = rep3;
              rep3 = rep2;
            }
            rep2 = rep1;
          }
          rep1 = rep0;
          rep0 = tmp;
        }
        state = state < 7 ? 8 : 11; // lzma_state_long_rep
        lenBase = REP_LEN_DEC;
        newMatch = false;
      }

      // lzma_len: rc_bit(choice), rc_bit(choice2), then one rc_bittree
      let len: number;
      let treeBase: number;
      let treeLimit: number;
      i = lenBase + LEN_CHOICE;
      if ((range & 0xff000000) === 0) { range <<= 8; code = (code << 8) | input[inPos++]!; }
      p = probs[i]!;
      bound = Math.imul(range >>> 11, p);
      if ((code ^ -0x80000000) < (bound ^ -0x80000000)) {
        range = bound;
        probs[i] = p + ((2048 - p) >>> 5);
        len = MATCH_LEN_MIN;
        treeBase = lenBase + LEN_LOW + posState * LEN_LOW_SYMBOLS;
        treeLimit = LEN_LOW_SYMBOLS;
      } else {
        range = (range - bound) | 0;
        code = (code - bound) | 0;
        probs[i] = p - (p >>> 5);
        i = lenBase + LEN_CHOICE2;
        if ((range & 0xff000000) === 0) { range <<= 8; code = (code << 8) | input[inPos++]!; }
        p = probs[i]!;
        bound = Math.imul(range >>> 11, p);
        if ((code ^ -0x80000000) < (bound ^ -0x80000000)) {
          range = bound;
          probs[i] = p + ((2048 - p) >>> 5);
          len = MATCH_LEN_MIN + LEN_LOW_SYMBOLS;
          treeBase = lenBase + LEN_MID + posState * LEN_MID_SYMBOLS;
          treeLimit = LEN_MID_SYMBOLS;
        } else {
          range = (range - bound) | 0;
          code = (code - bound) | 0;
          probs[i] = p - (p >>> 5);
          len = MATCH_LEN_MIN + LEN_LOW_SYMBOLS + LEN_MID_SYMBOLS;
          treeBase = lenBase + LEN_HIGH;
          treeLimit = LEN_HIGH_SYMBOLS;
        }
      }
      let symbol = 1;
      do {
        i = treeBase + symbol;
        if ((range & 0xff000000) === 0) { range <<= 8; code = (code << 8) | input[inPos++]!; }
        p = probs[i]!;
        bound = Math.imul(range >>> 11, p);
        if ((code ^ -0x80000000) < (bound ^ -0x80000000)) { range = bound; probs[i] = p + ((2048 - p) >>> 5); symbol <<= 1; }
        else { range = (range - bound) | 0; code = (code - bound) | 0; probs[i] = p - (p >>> 5); symbol = (symbol << 1) | 1; }
      } while (symbol < treeLimit);
      len += symbol - treeLimit;

      if (newMatch) {
        // lzma_match: rc_bittree(dist_slot[lzma_get_dist_state(len)], DIST_SLOTS)
        treeBase = DIST_SLOT + (len < DIST_STATES + MATCH_LEN_MIN ? len - MATCH_LEN_MIN : DIST_STATES - 1) * DIST_SLOTS;
        symbol = 1;
        do {
          i = treeBase + symbol;
          if ((range & 0xff000000) === 0) { range <<= 8; code = (code << 8) | input[inPos++]!; }
          p = probs[i]!;
          bound = Math.imul(range >>> 11, p);
          if ((code ^ -0x80000000) < (bound ^ -0x80000000)) { range = bound; probs[i] = p + ((2048 - p) >>> 5); symbol <<= 1; }
          else { range = (range - bound) | 0; code = (code - bound) | 0; probs[i] = p - (p >>> 5); symbol = (symbol << 1) | 1; }
        } while (symbol < DIST_SLOTS);
        const slot = symbol - DIST_SLOTS;
        if (slot < DIST_MODEL_START) {
          rep0 = slot;
        } else {
          let limitBits = (slot >>> 1) - 1;
          let dist = (2 | (slot & 1)) << limitBits; // int32 bit pattern of the u32 distance
          if (slot < DIST_MODEL_END) {
            treeBase = DIST_SPECIAL + dist - slot - 1;
          } else {
            // rc_direct(limit - ALIGN_BITS), then the low bits come from dist_align
            let direct = 0;
            for (let k = limitBits - ALIGN_BITS; k > 0; k--) {
              if ((range & 0xff000000) === 0) { range <<= 8; code = (code << 8) | input[inPos++]!; }
              range = (range >>> 1) | 0;
              if ((code ^ -0x80000000) >= (range ^ -0x80000000)) { code = (code - range) | 0; direct = (direct << 1) | 1; }
              else direct <<= 1;
            }
            dist |= direct << ALIGN_BITS;
            treeBase = DIST_ALIGN;
            limitBits = ALIGN_BITS;
          }
          // rc_bittree_reverse(probs, &rep0, limit)
          symbol = 1;
          for (let k = 0; k < limitBits; k++) {
            i = treeBase + symbol;
            if ((range & 0xff000000) === 0) { range <<= 8; code = (code << 8) | input[inPos++]!; }
            p = probs[i]!;
            bound = Math.imul(range >>> 11, p);
            if ((code ^ -0x80000000) < (bound ^ -0x80000000)) { range = bound; probs[i] = p + ((2048 - p) >>> 5); symbol <<= 1; }
            else { range = (range - bound) | 0; code = (code - bound) | 0; probs[i] = p - (p >>> 5); symbol = (symbol << 1) | 1; dist |= 1 << k; }
          }
          rep0 = dist; // negative = beyond 2 GiB: invalid, or -1 (0xffffffff) = end marker
          if (rep0 === -1) {
            eos = true;
            break;
          }
        }
      }

      // dict_repeat
      if (rep0 < 0 || rep0 >= dictPos || rep0 >= dictSize) throw this.badDistance(rep0);
      let n = limit - pos;
      if (len < n) n = len;
      else pending = len - n;
      let src = pos - rep0 - 1;
      if (n <= 16) {
        const end = pos + n;
        while (pos < end) out[pos++] = out[src++]!;
      } else if (rep0 === 0) {
        out.fill(out[src]!, pos, pos + n); // a run of one byte
        pos += n;
      } else {
        // overlapping copies go in growing non-overlapping pieces (the data repeats every rep0+1)
        let piece = rep0 + 1;
        while (n > 0) {
          const c = piece < n ? piece : n;
          out.copyWithin(pos, src, src + c);
          pos += c;
          n -= c;
          piece += piece;
        }
      }
    }

    this.len = pending;
    this.eos = eos;
    this.range = range;
    this.code = code;
    this.inPos = inPos;
    this.state = state;
    this.rep0 = rep0;
    this.rep1 = rep1;
    this.rep2 = rep2;
    this.rep3 = rep3;
    return pos;
  }
}

// ---------------------------------------------------------------------------
// x86 BCJ filter (dec_bcj.c: bcj_x86), applied to a whole decoded block in place.

const MASK_TO_ALLOWED_STATUS = [true, true, true, false, true, false, false, false];
const MASK_TO_BIT_NUM = [0, 1, 2, 2, 3, 3, 3, 3];

function bcjX86TestMsbyte(b: number): boolean {
  return b === 0x00 || b === 0xff;
}

/** The next i in [i, size) with buf[start + i] an E8 (CALL) or E9 (JMP) opcode, or size. Kept tiny so it optimizes once and stays fast. */
function scanE8E9(buf: Uint8Array, start: number, i: number, size: number): number {
  while (i < size && (buf[start + i]! & 0xfe) !== 0xe8) i++;
  return i;
}

/** bcj_x86 over buf[start, end): `startOffset` is the filter's start offset (s->pos). */
export function bcjX86Decode(buf: Uint8Array, start: number, end: number, startOffset = 0): void {
  const size = end - start - 4; // the last four bytes cannot start a whole instruction
  if (size <= 0) return;
  let prevPos = -1;
  let prevMask = 0;
  for (let i = scanE8E9(buf, start, 0, size); i < size; i = scanE8E9(buf, start, i + 1, size)) {
    const p = start + i;
    const gap = i - prevPos;
    if (gap > 3) {
      prevMask = 0;
    } else {
      prevMask = (prevMask << (gap - 1)) & 7;
      if (prevMask !== 0) {
        const b = buf[p + 4 - MASK_TO_BIT_NUM[prevMask]!]!;
        if (!MASK_TO_ALLOWED_STATUS[prevMask] || bcjX86TestMsbyte(b)) {
          prevPos = i;
          prevMask = (prevMask << 1) | 1;
          continue;
        }
      }
    }
    prevPos = i;
    if (bcjX86TestMsbyte(buf[p + 4]!)) {
      let src = (buf[p + 1]! | (buf[p + 2]! << 8) | (buf[p + 3]! << 16) | (buf[p + 4]! << 24)) >>> 0;
      let dest: number;
      for (;;) {
        dest = (src - ((startOffset + i + 5) >>> 0)) >>> 0;
        if (prevMask === 0) break;
        const j = MASK_TO_BIT_NUM[prevMask]! * 8;
        const b = (dest >>> (24 - j)) & 0xff;
        if (!bcjX86TestMsbyte(b)) break;
        src = (dest ^ (2 ** (32 - j) - 1)) >>> 0;
      }
      dest &= 0x01ffffff;
      if (dest & 0x01000000) dest |= 0xfe000000;
      buf[p + 1] = dest & 0xff;
      buf[p + 2] = (dest >>> 8) & 0xff;
      buf[p + 3] = (dest >>> 16) & 0xff;
      buf[p + 4] = (dest >>> 24) & 0xff;
      i += 4;
    } else {
      prevMask = (prevMask << 1) | 1;
    }
  }
}

// ---------------------------------------------------------------------------
// Growable output

class Output {
  buf: Uint8Array;
  pos = 0;
  constructor(initial: number, private readonly max: number, private readonly what: string) {
    this.buf = new Uint8Array(Math.max(0, Math.min(initial, max)));
  }
  /** Make room for n more bytes. */
  reserve(n: number): void {
    const need = this.pos + n;
    if (need <= this.buf.length) return;
    if (need > this.max) throw new ImageError(`${this.what} payload decompresses to more than ${this.max >>> 20} MiB`);
    const grown = new Uint8Array(Math.min(this.max, Math.max(need, this.buf.length * 2, 1 << 20)));
    grown.set(this.buf.subarray(0, this.pos));
    this.buf = grown;
  }
  result(): Uint8Array {
    return this.pos === this.buf.length ? this.buf : this.buf.subarray(0, this.pos);
  }
}

// ---------------------------------------------------------------------------
// LZMA2 (dec_lzma2.c: xz_dec_lzma2_run), whole-buffer

/** Decode one LZMA2 stream starting at input[pos]; returns the input offset after its end byte. */
function lzma2Decode(input: Uint8Array, pos: number, end: number, dictSize: number, out: Output, lzma: LzmaDecoder): number {
  const what = 'XZ';
  let needDictReset = true;
  let needProps = true;
  let dictStart = out.pos;
  for (;;) {
    if (pos >= end) throw corrupt(what, 'LZMA2 data ends without an end marker');
    const control = input[pos++]!;
    if (control === 0x00) return pos;
    if (control >= 0xe0 || control === 0x01) {
      needProps = true;
      needDictReset = false;
      dictStart = out.pos;
    } else if (needDictReset) {
      throw corrupt(what, 'first LZMA2 chunk does not reset the dictionary');
    }
    if (control >= 0x80) {
      if (pos + 4 > end) throw corrupt(what, 'truncated LZMA2 chunk header');
      const uncompressed = ((control & 0x1f) << 16) + (input[pos]! << 8) + input[pos + 1]! + 1;
      const compressed = (input[pos + 2]! << 8) + input[pos + 3]! + 1;
      pos += 4;
      if (control >= 0xc0) {
        if (pos >= end) throw corrupt(what, 'truncated LZMA2 chunk header');
        lzma.setProps(input[pos++]!);
        needProps = false;
      } else if (needProps) {
        throw corrupt(what, 'LZMA2 chunk without properties');
      } else if (control >= 0xa0) {
        lzma.reset();
      }
      if (compressed < RC_INIT_BYTES) throw corrupt(what, 'LZMA2 chunk too short');
      const chunkEnd = pos + compressed;
      if (chunkEnd > end) throw corrupt(what, `LZMA2 chunk of ${compressed} bytes runs past the end of the payload`);
      out.reserve(uncompressed);
      lzma.rcInit(input, pos);
      const target = out.pos + uncompressed;
      out.pos = lzma.decode(out.buf, out.pos, target, dictStart, dictSize);
      lzma.normalize();
      if (lzma.eos || out.pos !== target || lzma.len !== 0 || lzma.inPos !== chunkEnd || lzma.code !== 0)
        throw corrupt(what, `LZMA2 chunk at offset ${pos} does not decode to its stated size`);
      pos = chunkEnd;
    } else {
      if (control > 0x02) throw corrupt(what, `invalid LZMA2 control byte 0x${control.toString(16)}`);
      if (pos + 2 > end) throw corrupt(what, 'truncated LZMA2 chunk header');
      const size = (input[pos]! << 8) + input[pos + 1]! + 1;
      pos += 2;
      if (pos + size > end) throw corrupt(what, 'uncompressed LZMA2 chunk runs past the end of the payload');
      out.reserve(size);
      out.buf.set(input.subarray(pos, pos + size), out.pos);
      out.pos += size;
      pos += size;
    }
  }
}

// ---------------------------------------------------------------------------
// XZ container (dec_stream.c)

const XZ_HEADER_MAGIC = [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00];
const XZ_FOOTER_MAGIC = [0x59, 0x5a];
const XZ_CHECK_NONE = 0;
const XZ_CHECK_CRC32 = 1;
const XZ_CHECK_CRC64 = 4;
const XZ_CHECK_SHA256 = 10;
const XZ_FILTER_X86 = 0x04;
const XZ_FILTER_LZMA2 = 0x21;
/** check_sizes[] in dec_stream.c */
const CHECK_SIZES = [0, 4, 4, 4, 8, 8, 8, 16, 16, 16, 32, 32, 32, 64, 64, 64];

function le32(b: Uint8Array, p: number): number {
  return (b[p]! | (b[p + 1]! << 8) | (b[p + 2]! << 16) | (b[p + 3]! << 24)) >>> 0;
}

/** dec_vli: a multibyte integer of at most 9 bytes; returns [value, next offset]. */
function readVli(b: Uint8Array, p: number, end: number): [number, number] {
  let value = 0;
  for (let i = 0; i < 9; i++) {
    if (p >= end) throw corrupt('XZ', 'truncated variable-length integer');
    const byte = b[p++]!;
    value += (byte & 0x7f) * 2 ** (7 * i);
    if ((byte & 0x80) === 0) {
      if (byte === 0 && i !== 0) throw corrupt('XZ', 'non-minimal variable-length integer');
      if (value > Number.MAX_SAFE_INTEGER) throw corrupt('XZ', 'variable-length integer too large');
      return [value, p];
    }
  }
  throw corrupt('XZ', 'variable-length integer longer than 9 bytes');
}

let crc64Table: [Uint32Array, Uint32Array] | undefined;

/** CRC64 (ECMA-182, as xz uses), computed on 32-bit halves. */
function crc64(data: Uint8Array): [number, number] {
  if (!crc64Table) {
    const lo = new Uint32Array(256);
    const hi = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let l = n;
      let h = 0;
      for (let k = 0; k < 8; k++) {
        const carry = l & 1;
        l = ((l >>> 1) | (h << 31)) >>> 0;
        h >>>= 1;
        if (carry) {
          l = (l ^ 0xd7870f42) >>> 0;
          h = (h ^ 0xc96c5795) >>> 0;
        }
      }
      lo[n] = l;
      hi[n] = h;
    }
    crc64Table = [lo, hi];
  }
  const [tlo, thi] = crc64Table;
  let l = 0xffffffff;
  let h = 0xffffffff;
  for (let i = 0; i < data.length; i++) {
    const idx = (l ^ data[i]!) & 0xff;
    l = (((l >>> 8) | (h << 24)) ^ tlo[idx]!) >>> 0;
    h = ((h >>> 8) ^ thi[idx]!) >>> 0;
  }
  return [(l ^ 0xffffffff) >>> 0, (h ^ 0xffffffff) >>> 0];
}

function verifyCheck(checkType: number, data: Uint8Array, stored: Uint8Array): boolean {
  switch (checkType) {
    case XZ_CHECK_NONE:
      return true;
    case XZ_CHECK_CRC32:
      return crc32(data) === le32(stored, 0);
    case XZ_CHECK_CRC64: {
      const [l, h] = crc64(data);
      return l === le32(stored, 0) && h === le32(stored, 4);
    }
    case XZ_CHECK_SHA256:
      return Buffer.from(createHash('sha256').update(data).digest()).equals(stored);
    default:
      throw new ImageError(`unsupported XZ check type ${checkType}`);
  }
}

export interface XzResult { data: Uint8Array; end: number }

/**
 * Decode the first XZ stream in `input` (single-stream, like the kernel's own decompressor; bytes
 * after it, such as the bzImage size trailer, are ignored and `end` says where the stream ended).
 * Supports LZMA2 alone or x86 BCJ + LZMA2, and CRC32/CRC64/SHA-256/no check.
 */
export function xzDecompress(input: Uint8Array, sizeHint = 0, max = DECOMPRESS_MAX): XzResult {
  const len = input.length;
  if (len < 24) throw corrupt('XZ', `only ${len} bytes`);
  for (let i = 0; i < 6; i++) if (input[i] !== XZ_HEADER_MAGIC[i]) throw new ImageError('XZ payload has a bad stream header magic');
  if (crc32(input.subarray(6, 8)) !== le32(input, 8)) throw corrupt('XZ', 'stream header CRC32 mismatch');
  if (input[6] !== 0 || input[7]! > 0x0f) throw new ImageError('XZ stream header has unsupported flags');
  const checkType = input[7]!;
  const checkSize = CHECK_SIZES[checkType]!;
  if (checkType !== XZ_CHECK_NONE && checkType !== XZ_CHECK_CRC32 && checkType !== XZ_CHECK_CRC64 && checkType !== XZ_CHECK_SHA256)
    throw new ImageError(`unsupported XZ check type ${checkType}`);

  const out = new Output(sizeHint > 0 ? sizeHint : len * 4, max, 'XZ');
  const lzma = new LzmaDecoder('XZ');
  const records: Array<[number, number]> = [];
  let pos = 12;
  for (;;) {
    if (pos >= len) throw corrupt('XZ', 'stream ends before its index');
    if (input[pos] === 0x00) break; // Index Indicator
    // Block Header
    const blockStart = pos;
    const headerSize = (input[pos]! + 1) * 4;
    if (pos + headerSize > len) throw corrupt('XZ', 'truncated block header');
    const hdrEnd = pos + headerSize - 4;
    if (crc32(input.subarray(pos, hdrEnd)) !== le32(input, hdrEnd)) throw corrupt('XZ', 'block header CRC32 mismatch');
    const flags = input[pos + 1]!;
    if (flags & 0x3c) throw new ImageError('XZ block header has unsupported flags');
    const nFilters = (flags & 3) + 1;
    let p = pos + 2;
    let declaredCompressed = -1;
    let declaredUncompressed = -1;
    if (flags & 0x40) [declaredCompressed, p] = readVli(input, p, hdrEnd);
    if (flags & 0x80) [declaredUncompressed, p] = readVli(input, p, hdrEnd);
    let bcj = false;
    let bcjStart = 0;
    let dictProps = -1;
    for (let f = 0; f < nFilters; f++) {
      let id: number;
      let propsSize: number;
      [id, p] = readVli(input, p, hdrEnd);
      [propsSize, p] = readVli(input, p, hdrEnd);
      if (p + propsSize > hdrEnd) throw corrupt('XZ', 'filter properties overrun the block header');
      const last = f === nFilters - 1;
      if (id === XZ_FILTER_X86 && !last) {
        if (propsSize === 4) bcjStart = le32(input, p);
        else if (propsSize !== 0) throw new ImageError('XZ x86 BCJ filter has bad properties');
        bcj = true;
      } else if (id === XZ_FILTER_LZMA2 && last) {
        if (propsSize !== 1) throw new ImageError('XZ LZMA2 filter has bad properties');
        dictProps = input[p]!;
        if (dictProps > 40) throw new ImageError(`XZ LZMA2 dictionary size code ${dictProps} out of range`);
      } else {
        throw new ImageError(`unsupported XZ filter 0x${id.toString(16)} (only x86 BCJ + LZMA2 are supported)`);
      }
      p += propsSize;
    }
    for (; p < hdrEnd; p++) if (input[p] !== 0) throw corrupt('XZ', 'non-zero block header padding');
    const dictSize = dictProps === 40 ? 0xffffffff : (2 | (dictProps & 1)) * 2 ** ((dictProps >>> 1) + 11);

    // Compressed Data
    const dataStart = pos + headerSize;
    const outStart = out.pos;
    if (declaredUncompressed >= 0) out.reserve(declaredUncompressed);
    pos = lzma2Decode(input, dataStart, len, dictSize, out, lzma);
    const compressedSize = pos - dataStart;
    const uncompressedSize = out.pos - outStart;
    if (declaredCompressed >= 0 && declaredCompressed !== compressedSize) throw corrupt('XZ', 'block compressed size does not match its header');
    if (declaredUncompressed >= 0 && declaredUncompressed !== uncompressedSize) throw corrupt('XZ', 'block uncompressed size does not match its header');
    if (bcj) bcjX86Decode(out.buf, outStart, out.pos, bcjStart);
    // Block Padding + Check
    while ((pos - blockStart) & 3) {
      if (pos >= len || input[pos] !== 0) throw corrupt('XZ', 'bad block padding');
      pos++;
    }
    if (pos + checkSize > len) throw corrupt('XZ', 'truncated block check');
    if (!verifyCheck(checkType, out.buf.subarray(outStart, out.pos), input.subarray(pos, pos + checkSize)))
      throw corrupt('XZ', 'block check (CRC) mismatch');
    pos += checkSize;
    records.push([headerSize + compressedSize + checkSize, uncompressedSize]);
  }

  // Index
  const indexStart = pos;
  let p = pos + 1;
  let count: number;
  [count, p] = readVli(input, p, len);
  if (count !== records.length) throw corrupt('XZ', 'index record count does not match the blocks');
  for (const [unpadded, uncompressed] of records) {
    let u: number;
    let c: number;
    [u, p] = readVli(input, p, len);
    [c, p] = readVli(input, p, len);
    if (u !== unpadded || c !== uncompressed) throw corrupt('XZ', 'index does not match the blocks');
  }
  while ((p - indexStart) & 3) {
    if (p >= len || input[p] !== 0) throw corrupt('XZ', 'bad index padding');
    p++;
  }
  if (p + 4 > len) throw corrupt('XZ', 'truncated index');
  if (crc32(input.subarray(indexStart, p)) !== le32(input, p)) throw corrupt('XZ', 'index CRC32 mismatch');
  p += 4;
  const indexSize = p - indexStart;
  // Stream Footer
  if (p + 12 > len) throw corrupt('XZ', 'truncated stream footer');
  if (crc32(input.subarray(p + 4, p + 10)) !== le32(input, p)) throw corrupt('XZ', 'stream footer CRC32 mismatch');
  if ((le32(input, p + 4) + 1) * 4 !== indexSize) throw corrupt('XZ', 'stream footer backward size does not match the index');
  if (input[p + 8] !== 0 || input[p + 9] !== checkType) throw corrupt('XZ', 'stream footer flags differ from the header');
  if (input[p + 10] !== XZ_FOOTER_MAGIC[0] || input[p + 11] !== XZ_FOOTER_MAGIC[1]) throw corrupt('XZ', 'bad stream footer magic');
  return { data: out.result(), end: p + 12 };
}

// ---------------------------------------------------------------------------
// Raw LZMA ("lzma_alone", 13-byte header; xen/common/unlzma.c)

/**
 * Decode an .lzma stream: props, dict size, 64-bit uncompressed size (all ones = unknown, then
 * the end marker ends it). Trailing bytes (the bzImage size trailer) are ignored.
 */
export function lzmaDecompress(input: Uint8Array, sizeHint = 0, max = DECOMPRESS_MAX): Uint8Array {
  if (input.length < 13 + RC_INIT_BYTES) throw corrupt('LZMA', `only ${input.length} bytes`);
  const dictSize = Math.max(le32(input, 1), 4096);
  const sizeLo = le32(input, 5);
  const sizeHi = le32(input, 9);
  const known = !(sizeLo === 0xffffffff && sizeHi === 0xffffffff);
  if (known && (sizeHi !== 0 || sizeLo > max)) throw new ImageError(`LZMA payload decompresses to more than ${max >>> 20} MiB`);
  let cap = known ? sizeLo : sizeHint > 0 ? Math.min(sizeHint, max) : Math.min(input.length * 4, max);
  for (;;) {
    const lzma = new LzmaDecoder('LZMA');
    lzma.setProps(input[0]!);
    lzma.rcInit(input, 13);
    const out = new Uint8Array(cap);
    const pos = lzma.decode(out, 0, cap, 0, dictSize);
    if (lzma.inPos > input.length) throw corrupt('LZMA', 'data ends early');
    if (known) {
      if (pos !== cap || lzma.len !== 0) throw corrupt('LZMA', `decoded ${pos} bytes instead of ${cap}`);
      return out;
    }
    if (lzma.eos) {
      lzma.normalize();
      if (lzma.code !== 0) throw corrupt('LZMA', 'data after the end marker does not check out');
      return out.subarray(0, pos);
    }
    if (cap >= max) throw new ImageError(`LZMA payload decompresses to more than ${max >>> 20} MiB`);
    cap = Math.min(max, cap * 2); // no end marker within cap: start again with more room
  }
}
