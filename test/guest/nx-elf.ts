// A tiny static x86-64 ELF for the execshield check: run without arguments it exits 0 from its executable
// mapping; with an argument it jumps to the same code through a second, read-write (non-executable) mapping.
export function nxTestElf(): Uint8Array {
  const codeOff = 176;
  const exitOff = codeOff + 4 + 4 + 2 + 10 + 2;
  const code = [
    0x48, 0x8b, 0x3c, 0x24,             // mov (%rsp),%rdi      argc
    0x48, 0x83, 0xff, 0x01,             // cmp $1,%rdi
    0x74, 0x0c,                         // je exit
    0x48, 0xb8, ...le64(0x600000 + exitOff), // movabs $data_alias_of_exit,%rax
    0xff, 0xe0,                         // jmp *%rax            must fault: NX
    0xb8, 0x3c, 0x00, 0x00, 0x00,       // exit: mov $60,%eax
    0x31, 0xff,                         // xor %edi,%edi
    0x0f, 0x05,                         // syscall
  ];
  const size = codeOff + code.length;
  const b = new Uint8Array(size);
  const dv = new DataView(b.buffer);
  b.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0]);
  dv.setUint16(16, 2, true); dv.setUint16(18, 62, true); dv.setUint32(20, 1, true);
  dv.setBigUint64(24, BigInt(0x400000 + codeOff), true);   // e_entry
  dv.setBigUint64(32, 64n, true);                           // e_phoff
  dv.setUint16(52, 64, true); dv.setUint16(54, 56, true); dv.setUint16(56, 2, true);
  const ph = (i: number, vaddr: number, flags: number) => {
    const o = 64 + i * 56;
    dv.setUint32(o, 1, true); dv.setUint32(o + 4, flags, true);
    dv.setBigUint64(o + 16, BigInt(vaddr), true); dv.setBigUint64(o + 24, BigInt(vaddr), true);
    dv.setBigUint64(o + 32, BigInt(size), true); dv.setBigUint64(o + 40, BigInt(size), true); dv.setBigUint64(o + 48, 0x1000n, true);
  };
  ph(0, 0x400000, 5); // R X
  ph(1, 0x600000, 6); // R W, not executable
  b.set(code, codeOff);
  return b;
}
function le64(v: number): number[] { const a: number[] = []; for (let i = 0; i < 8; i++) a.push(Math.floor(v / 2 ** (8 * i)) & 0xff); return a; }
