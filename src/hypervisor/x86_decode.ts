// A minimal x86-64 instruction decoder: prefixes, REX, opcode, ModRM/SIB/displacement lengths and immediates — enough to emulate the few instructions a PV kernel faults on (Xen uses x86_emulate for this: xen/arch/x86/x86_emulate/).

export interface Decoded {
  length: number;
  /** Opcode bytes after prefixes and REX (1–3 bytes). */
  opcode: number[];
  rex: number;
  opsize16: boolean;
  lock: boolean;
  rep: boolean;
  /** ModRM fields if present. */
  mod: number; reg: number; rm: number; hasModrm: boolean;
  /** Immediate (sign-extended to 64 bits) if present. */
  imm: bigint; immSize: number;
}

/** Which one-byte opcodes take a ModRM byte (the ones we decode). */
const MODRM_1 = new Set([0x00, 0x01, 0x02, 0x03, 0x08, 0x09, 0x0a, 0x0b, 0x10, 0x11, 0x20, 0x21, 0x22, 0x23, 0x28, 0x29, 0x30, 0x31, 0x38, 0x39,
  0x80, 0x81, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x8b, 0x8d, 0xc6, 0xc7, 0xf6, 0xf7, 0xfe, 0xff]);

export function decode(bytes: Uint8Array): Decoded | undefined {
  let i = 0;
  let rex = 0, opsize16 = false, lock = false, rep = false;
  for (; i < 14; i++) {
    const b = bytes[i]!;
    if (b === 0x66) opsize16 = true;
    else if (b === 0xf0) lock = true;
    else if (b === 0xf3 || b === 0xf2) rep = true;
    else if (b === 0x2e || b === 0x3e || b === 0x26 || b === 0x36 || b === 0x64 || b === 0x65 || b === 0x67) { /* segment / addr-size: ignore */ }
    else break;
  }
  if (i >= bytes.length) return undefined;
  if ((bytes[i]! & 0xf0) === 0x40) { rex = bytes[i]!; i++; }
  const opcode: number[] = [bytes[i++]!];
  let hasModrm = false;
  let immSize = 0;
  if (opcode[0] === 0x0f) {
    const b2 = bytes[i++]!;
    opcode.push(b2);
    if (b2 === 0x01 || b2 === 0x20 || b2 === 0x21 || b2 === 0x22 || b2 === 0x23 || b2 === 0xb0 || b2 === 0xb1 || b2 === 0xab || b2 === 0xb3 || b2 === 0xba || b2 === 0xc7 || b2 === 0x00) hasModrm = true;
    if (b2 === 0xba) immSize = 1;
  } else {
    const op = opcode[0]!;
    hasModrm = MODRM_1.has(op);
    if (op === 0x80 || op === 0x83 || op === 0xc6) immSize = 1;
    else if (op === 0x81 || op === 0xc7) immSize = opsize16 ? 2 : 4;
    else if (op === 0xe4 || op === 0xe5 || op === 0xe6 || op === 0xe7) immSize = 1;
  }
  let mod = 0, reg = 0, rm = 0;
  if (hasModrm) {
    const m = bytes[i++]!;
    mod = m >> 6; reg = ((m >> 3) & 7) | ((rex & 4) << 1); rm = m & 7;
    if (mod !== 3) {
      if (rm === 4) { const sib = bytes[i++]!; if ((sib & 7) === 5 && mod === 0) i += 4; }
      if (mod === 0 && rm === 5) i += 4;        // RIP-relative
      else if (mod === 1) i += 1;
      else if (mod === 2) i += 4;
    }
    rm |= (rex & 1) << 3;
    if (opcode[0] === 0xf6 && ((m >> 3) & 7) === 0) immSize = 1;
    if (opcode[0] === 0xf7 && ((m >> 3) & 7) === 0) immSize = opsize16 ? 2 : 4;
  }
  let imm = 0n;
  if (immSize) {
    const dv = new DataView(bytes.buffer, bytes.byteOffset + i, immSize);
    imm = immSize === 1 ? BigInt(dv.getInt8(0)) : immSize === 2 ? BigInt(dv.getInt16(0, true)) : BigInt(dv.getInt32(0, true));
    i += immSize;
  }
  if (i > 15 || i > bytes.length) return undefined;
  return { length: i, opcode, rex, opsize16, lock, rep, mod, reg, rm, hasModrm, imm, immSize };
}

/** Register-file index (kvm_regs order) for x86 register number n (rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8…). */
export const X86_REG_TO_KVM = [0, 2, 3, 1, 6, 7, 4, 5, 8, 9, 10, 11, 12, 13, 14, 15];
