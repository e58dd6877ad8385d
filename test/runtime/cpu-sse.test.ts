import { describe, expect, it } from "vitest";
import { skipReason } from "../helpers/tools.js";
import { assemble, type BareMachine, bareMachine, runReal } from "./cpu-harness.js";
import { exceptionReport, protectedModeProgram } from "./cpu-programs.js";

/**
 * SSE/SSE2 subset and FXSAVE/FXRSTOR: nasm programs in 32-bit protected
 * mode on a bare machine; results come out on port 0xEC (see cpu-programs.ts).
 */
const noNasm = skipReason("nasm") !== "";
const HALTED = { kind: "shutdown", why: "HLT with interrupts disabled" };

function runProtected(body: string): BareMachine {
  const machine = bareMachine();
  const stop = runReal(machine, assemble(protectedModeProgram(body)));
  expect(stop).toEqual(HALTED);
  return machine;
}

const ENABLE_SSE = `
  mov eax, cr4
  or eax, 0x600                        ; OSFXSR | OSXMMEXCPT
  mov cr4, eax
`;

describe.skipIf(noNasm)("SSE/SSE2 subset", () => {
  it("moves, compares, shuffles and adds 128-bit values", () => {
    const m = runProtected(`${ENABLE_SSE}
  movdqu xmm0, [bytes_0_15 + 1]        ; unaligned: bytes 1..16
  movdqa [buf], xmm0
  mov eax, [buf + 12]
  out 0xec, eax                        ; 0x100f0e0d
  pxor xmm1, xmm1
  movdqa xmm2, [text]
  pcmpeqb xmm2, xmm1                   ; the NUL byte at offset 5
  pmovmskb eax, xmm2
  out 0xec, eax                        ; 0x20
  mov ecx, 0x12345678
  movd xmm3, ecx
  pshufd xmm3, xmm3, 0
  movups [buf], xmm3
  mov eax, [buf + 8]
  out 0xec, eax                        ; 0x12345678
  movdqa xmm4, xmm3
  movq xmm4, [qword_value]             ; zero-extends to 128 bits
  movdqa [buf], xmm4
  mov eax, [buf + 4]
  out 0xec, eax                        ; 0xcafef00d
  mov eax, [buf + 8]
  out 0xec, eax                        ; 0
  paddd xmm3, [ones]                   ; 0x12345679
  psubb xmm3, [ones]                   ; bytes minus 1: 0x12345678 - 0x00000001 per byte lane -> 0x12345678
  movd eax, xmm3
  out 0xec, eax
  movdqa xmm5, [bytes_0_15]
  punpcklbw xmm5, xmm1                 ; bytes 0..7 widened to words
  movdqa [buf], xmm5
  mov eax, [buf + 4]
  out 0xec, eax                        ; 0x00030002
  movdqa xmm6, [bytes_0_15]
  por xmm6, [ones]
  pand xmm6, [low_nibbles]
  movdqa [buf], xmm6
  mov eax, [buf]
  out 0xec, eax                        ; (0x03020100 | 1) & 0x0f0f0f0f = 0x03020101
  xorps xmm6, xmm6
  movd eax, xmm6
  out 0xec, eax                        ; 0
  movdqa xmm7, [bytes_0_15]
  pminub xmm7, [fives]
  movd eax, xmm7
  out 0xec, eax                        ; min(bytes 0..3, 5) = 0x03020100
  movss xmm7, [ones]                   ; low dword 1, rest zero
  movaps [buf], xmm7
  mov eax, [buf]
  add eax, [buf + 4]
  add eax, [buf + 12]
  out 0xec, eax                        ; 1
  stmxcsr [buf]
  mov eax, [buf]
  out 0xec, eax                        ; 0x1f80
  movdqa xmm0, [bytes_0_15 + 1]        ; misaligned: #GP(0)
align 16
bytes_0_15: db 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
text: db "hello", 0, "world!!!!!"
ones: dd 1, 1, 1, 1
low_nibbles: times 16 db 0x0f
fives: times 16 db 5
qword_value: dq 0xcafef00d_87654321
align 16
buf: times 16 db 0
`);
    const w = m.debugWords;
    expect(w.slice(0, 12)).toEqual([
      0x100f0e0d, 0x20, 0x12345678, 0xcafef00d, 0, 0x12345678, 0x00030002, 0x03020101, 0, 0x03020100, 1,
      0x1f80,
    ]);
    expect(w[12]).toBe((0xee000000 | 13) >>> 0);
    expect(w[13]).toBe(0);
  });

  it("FXSAVE stores x87 and XMM state in the SDM layout and FXRSTOR restores it", () => {
    const m = runProtected(`${ENABLE_SSE}
  fninit
  fild dword [seven]
  movdqa xmm1, [pattern]
  fxsave [area]
  mov eax, [area + 24]
  out 0xec, eax                        ; MXCSR 0x1f80
  mov eax, [area + 160 + 16 + 4]
  out 0xec, eax                        ; XMM1 dword 1: 0x22222222
  movzx eax, word [area]
  out 0xec, eax                        ; FCW 0x037f
  movzx eax, byte [area + 4]
  out 0xec, eax                        ; abridged tag: physical register 7 in use = 0x80
  mov eax, [area + 32 + 4]
  out 0xec, eax                        ; ST0 = 7.0: significand high 0xe0000000
  fninit
  pxor xmm1, xmm1
  fxrstor [area]
  fistp dword [out]
  mov eax, [out]
  out 0xec, eax                        ; 7
  movd eax, xmm1
  out 0xec, eax                        ; 0x11111111
  fxsave [area + 8]                    ; misaligned: #GP(0)
align 16
pattern: dd 0x11111111, 0x22222222, 0x33333333, 0x44444444
seven: dd 7
out: dd 0
align 16
area: times 512 db 0
`);
    const w = m.debugWords;
    expect(w.slice(0, 7)).toEqual([0x1f80, 0x22222222, 0x37f, 0x80, 0xe0000000, 7, 0x11111111]);
    expect(w[7]).toBe((0xee000000 | 13) >>> 0);
  });

  it("raises #UD without CR4.OSFXSR and #NM with CR0.TS", () => {
    const ud = runProtected(`
  pxor xmm0, xmm0
`);
    expect(ud.debugWords[0]).toBe((0xee000000 | 6) >>> 0);
    const nm = runProtected(`${ENABLE_SSE}
  mov eax, cr0
  or eax, 8
  mov cr0, eax
  movdqa xmm0, xmm1
`);
    expect(nm.debugWords[0]).toBe((0xee000000 | 7) >>> 0);
  });

  it("rejects reserved MXCSR bits with #GP(0) and keeps the old value", () => {
    const m = runProtected(`${ENABLE_SSE}
  mov dword [value], 0x10000
  ldmxcsr [value]
value: dd 0
`);
    expect(m.debugWords.slice(0, 2)).toEqual(exceptionReport(13, 0, 0, 0).slice(0, 2));
    expect(m.cpu.sse.mxcsr).toBe(0x1f80);
  });
});
