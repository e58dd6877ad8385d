/**
 * SSE/SSE2: the XMM register file, MXCSR and the integer/move subset that
 * kernels and libc string routines use (SDM vol. 1 ch. 10-11, vol. 2).
 *
 * Implemented: MOVUPS/MOVUPD/MOVAPS/MOVAPD, MOVSS/MOVSD (moves only),
 * MOVDQA/MOVDQU, MOVD, MOVQ (F3 0F 7E, 66 0F D6), MOVNTPS/MOVNTPD/MOVNTDQ,
 * ANDPS/ANDNPS/ORPS/XORPS (and the PD forms), PAND/PANDN/POR/PXOR,
 * PCMPEQB/W/D, PMOVMSKB, PMINUB, PADDB/W/D/Q, PSUBB/W/D/Q, PSHUFD,
 * PUNPCKLBW/WD/DQ/QDQ, LDMXCSR/STMXCSR and the XMM part of FXSAVE/FXRSTOR.
 * No floating-point arithmetic: every other SSE opcode stops the run as
 * unimplemented, which is why CPUID does not report SSE/SSE2 yet.
 */
import type { Insn } from "./decoder.js";
import { REP_E, REP_NE } from "./decoder.js";
import { CpuFault, EXC_GP, EXC_UD } from "./faults.js";

/** What the SSE unit needs from the CPU: memory operands and the general registers. */
export interface SseCpu {
  readonly regs: Int32Array;
  /** #UD without CR4.OSFXSR or with CR0.EM, #NM with CR0.TS. */
  requireSse(): void;
  effectiveAddress(insn: Insn): number;
  read32(lin: number): number;
  write32(lin: number, v: number): void;
}

/** MXCSR after reset: all exceptions masked, round to nearest (SDM vol. 1 §10.2.3). */
export const MXCSR_RESET = 0x1f80;
/** MXCSR bits LDMXCSR/FXRSTOR accept (DAZ included); others #GP(0). */
export const MXCSR_MASK = 0xffff;

// FXSAVE image offsets (SDM vol. 1 table 10-2).
const FX_MXCSR = 24;
const FX_MXCSR_MASK = 28;
const FX_XMM0 = 160;

const XMM_REGS = 16;

// Which mandatory prefixes each implemented 0F opcode accepts.
const P_NONE = 1;
const P_66 = 2;
const P_F3 = 4;
const P_F2 = 8;
const ACCEPTS = new Uint8Array(256);
ACCEPTS.fill(P_NONE | P_66 | P_F3 | P_F2, 0x10, 0x12);
for (const op of [0x28, 0x29, 0x2b, 0x54, 0x55, 0x56, 0x57]) ACCEPTS[op] = P_NONE | P_66;
for (const op of [0x6f, 0x7f, 0x7e]) ACCEPTS[op] = P_66 | P_F3;
for (const op of [
  0x60, 0x61, 0x62, 0x6c, 0x6e, 0x70, 0x74, 0x75, 0x76, 0xd4, 0xd6, 0xd7, 0xda, 0xdb, 0xdf, 0xe7, 0xeb, 0xef,
  0xf8, 0xf9, 0xfa, 0xfb, 0xfc, 0xfd, 0xfe,
]) {
  ACCEPTS[op] = P_66;
}
const PREFIX_BIT: Record<number, number> = { 0: P_NONE, 102: P_66, 243: P_F3, 242: P_F2 };

export class Sse {
  /** XMM0-15, four little-endian dwords each (dword 0 = bits 0-31). */
  readonly xmm = new Int32Array(XMM_REGS * 4);
  private readonly bytes = new Uint8Array(this.xmm.buffer);
  private readonly words = new Uint16Array(this.xmm.buffer);
  mxcsr = MXCSR_RESET;
  /** A 128-bit operand read from memory or copied from a register. */
  private readonly src = new Int32Array(4);
  private readonly srcBytes = new Uint8Array(this.src.buffer);
  private readonly srcWords = new Uint16Array(this.src.buffer);

  constructor(private readonly cpu: SseCpu) {}

  reset(): void {
    this.xmm.fill(0);
    this.mxcsr = MXCSR_RESET;
  }

  /**
   * Executes 0F `op` if it is in the implemented subset; returns false if
   * not (the caller reports it as unimplemented). The caller has already
   * checked CR0.EM/TS and CR4.OSFXSR.
   */
  execute(insn: Insn, op: number): boolean {
    const prefix =
      insn.rep === REP_E ? 0xf3 : insn.rep === REP_NE ? 0xf2 : insn.mandatoryPrefix === 0x66 ? 0x66 : 0;
    if (!(ACCEPTS[op]! & PREFIX_BIT[prefix]!)) return false;
    this.cpu.requireSse();
    const packed = prefix === 0 || prefix === 0x66;
    const x = insn.reg * 4;
    switch (op) {
      case 0x10:
      case 0x11:
        if (packed) this.move128(insn, op === 0x11, false);
        else this.moveScalar(insn, op === 0x11, prefix === 0xf3 ? 1 : 2);
        return true;
      case 0x28:
      case 0x29:
        if (!packed) return false;
        this.move128(insn, op === 0x29, true);
        return true;
      case 0x2b:
        if (insn.rmIsReg) throw new CpuFault(EXC_UD);
        this.move128(insn, true, true);
        return true;
      case 0x6f:
      case 0x7f:
        if (prefix !== 0x66 && prefix !== 0xf3) return false;
        this.move128(insn, op === 0x7f, prefix === 0x66);
        return true;
      case 0xe7:
        if (insn.rmIsReg) throw new CpuFault(EXC_UD);
        this.move128(insn, true, true);
        return true;
      case 0x6e: // MOVD xmm, r/m32
        if (prefix !== 0x66 || insn.opSize === 64) return false;
        this.xmm.fill(0, x, x + 4);
        this.xmm[x] = insn.rmIsReg
          ? this.cpu.regs[insn.rm]!
          : this.cpu.read32(this.cpu.effectiveAddress(insn));
        return true;
      case 0x7e:
        if (prefix === 0xf3) {
          this.moveScalar(insn, false, 2); // MOVQ xmm, xmm/m64 (zero-extends)
          if (insn.rmIsReg) this.xmm[x + 2] = this.xmm[x + 3] = 0;
          return true;
        }
        if (prefix !== 0x66 || insn.opSize === 64) return false;
        if (insn.rmIsReg) this.cpu.regs[insn.rm] = this.xmm[x]!;
        else this.cpu.write32(this.cpu.effectiveAddress(insn), this.xmm[x]!);
        return true;
      case 0xd6: // MOVQ xmm/m64, xmm
        if (prefix !== 0x66) return false;
        this.moveScalar(insn, true, 2);
        if (insn.rmIsReg) this.xmm[insn.rm * 4 + 2] = this.xmm[insn.rm * 4 + 3] = 0;
        return true;
      case 0x54:
      case 0x55:
      case 0x56:
      case 0x57:
        if (!packed) return false;
        this.logic(insn, x, op - 0x54);
        return true;
      case 0xdb:
      case 0xdf:
      case 0xeb:
      case 0xef:
        if (prefix !== 0x66) return false;
        this.logic(insn, x, op === 0xdb ? 0 : op === 0xdf ? 1 : op === 0xeb ? 2 : 3);
        return true;
      case 0xd7: {
        if (!insn.rmIsReg) throw new CpuFault(EXC_UD);
        let mask = 0;
        const from = insn.rm * 16;
        for (let i = 0; i < 16; i++) mask |= (this.bytes[from + i]! >> 7) << i;
        this.cpu.regs[insn.reg] = mask;
        return true;
      }
      default:
        if (prefix !== 0x66) return false;
        return this.integer(insn, op, x);
    }
  }

  /** The 66-prefixed packed-integer group (compares, min, add/sub, shuffles, unpacks). */
  private integer(insn: Insn, op: number, x: number): boolean {
    const xmm = this.xmm;
    const bytes = this.bytes;
    const words = this.words;
    switch (op) {
      case 0x74:
      case 0x75:
      case 0x76:
      case 0xda:
      case 0xfc:
      case 0xfd:
      case 0xfe:
      case 0xd4:
      case 0xf8:
      case 0xf9:
      case 0xfa:
      case 0xfb:
      case 0x70:
      case 0x60:
      case 0x61:
      case 0x62:
      case 0x6c:
        break;
      default:
        return false;
    }
    const s = this.loadSource(insn, true);
    const sb = this.srcBytes;
    const sw = this.srcWords;
    const b0 = x * 4;
    const w0 = x * 2;
    switch (op) {
      case 0x74:
        for (let i = 0; i < 16; i++) bytes[b0 + i] = bytes[b0 + i] === sb[i] ? 0xff : 0;
        break;
      case 0x75:
        for (let i = 0; i < 8; i++) words[w0 + i] = words[w0 + i] === sw[i] ? 0xffff : 0;
        break;
      case 0x76:
        for (let i = 0; i < 4; i++) xmm[x + i] = xmm[x + i] === s[i] ? -1 : 0;
        break;
      case 0xda:
        for (let i = 0; i < 16; i++) bytes[b0 + i] = Math.min(bytes[b0 + i]!, sb[i]!);
        break;
      case 0xfc:
        for (let i = 0; i < 16; i++) bytes[b0 + i] = bytes[b0 + i]! + sb[i]!;
        break;
      case 0xf8:
        for (let i = 0; i < 16; i++) bytes[b0 + i] = bytes[b0 + i]! - sb[i]!;
        break;
      case 0xfd:
        for (let i = 0; i < 8; i++) words[w0 + i] = words[w0 + i]! + sw[i]!;
        break;
      case 0xf9:
        for (let i = 0; i < 8; i++) words[w0 + i] = words[w0 + i]! - sw[i]!;
        break;
      case 0xfe:
        for (let i = 0; i < 4; i++) xmm[x + i] = (xmm[x + i]! + s[i]!) | 0;
        break;
      case 0xfa:
        for (let i = 0; i < 4; i++) xmm[x + i] = (xmm[x + i]! - s[i]!) | 0;
        break;
      case 0xd4:
      case 0xfb:
        for (let q = 0; q < 4; q += 2) this.addQword(x + q, s[q]!, s[q + 1]!, op === 0xfb);
        break;
      case 0x70: // PSHUFD xmm, xmm/m128, imm8
        for (let i = 0; i < 4; i++) xmm[x + i] = s[(insn.imm >> (2 * i)) & 3]!;
        break;
      case 0x60: // PUNPCKLBW: interleave the low 8 bytes
        for (let i = 7; i >= 0; i--) {
          bytes[b0 + 2 * i + 1] = sb[i]!;
          bytes[b0 + 2 * i] = bytes[b0 + i]!;
        }
        break;
      case 0x61:
        for (let i = 3; i >= 0; i--) {
          words[w0 + 2 * i + 1] = sw[i]!;
          words[w0 + 2 * i] = words[w0 + i]!;
        }
        break;
      case 0x62:
        xmm[x + 3] = s[1]!;
        xmm[x + 2] = xmm[x + 1]!;
        xmm[x + 1] = s[0]!;
        break;
      case 0x6c:
        xmm[x + 2] = s[0]!;
        xmm[x + 3] = s[1]!;
        break;
    }
    return true;
  }

  /** 64-bit add/subtract of (low, high) into the qword at dword index `at`. */
  private addQword(at: number, low: number, high: number, subtract: boolean): void {
    const a = this.xmm[at]! >>> 0;
    const b = low >>> 0;
    if (subtract) {
      this.xmm[at] = (a - b) | 0;
      this.xmm[at + 1] = (this.xmm[at + 1]! - high - (a < b ? 1 : 0)) | 0;
    } else {
      const sum = a + b;
      this.xmm[at] = sum | 0;
      this.xmm[at + 1] = (this.xmm[at + 1]! + high + (sum > 0xffffffff ? 1 : 0)) | 0;
    }
  }

  /** AND, ANDN, OR, XOR (kind 0-3) of a full register with xmm/m128. */
  private logic(insn: Insn, x: number, kind: number): void {
    const s = this.loadSource(insn, true);
    const xmm = this.xmm;
    for (let i = 0; i < 4; i++) {
      const d = xmm[x + i]!;
      xmm[x + i] = kind === 0 ? d & s[i]! : kind === 1 ? ~d & s[i]! : kind === 2 ? d | s[i]! : d ^ s[i]!;
    }
  }

  /** The xmm/m128 operand into `src`; legacy SSE memory operands must be 16-byte aligned. */
  private loadSource(insn: Insn, aligned: boolean): Int32Array {
    const s = this.src;
    if (insn.rmIsReg) {
      const r = insn.rm * 4;
      for (let i = 0; i < 4; i++) s[i] = this.xmm[r + i]!;
      return s;
    }
    const ea = this.cpu.effectiveAddress(insn);
    if (aligned && ea & 15) throw new CpuFault(EXC_GP, 0);
    for (let i = 0; i < 4; i++) s[i] = this.cpu.read32((ea + 4 * i) | 0);
    return s;
  }

  /** 128-bit move between a register and xmm/m128, either direction. */
  private move128(insn: Insn, store: boolean, aligned: boolean): void {
    const x = insn.reg * 4;
    if (!store) {
      this.xmm.set(this.loadSource(insn, aligned), x);
      return;
    }
    if (insn.rmIsReg) {
      this.xmm.copyWithin(insn.rm * 4, x, x + 4);
      return;
    }
    const ea = this.cpu.effectiveAddress(insn);
    if (aligned && ea & 15) throw new CpuFault(EXC_GP, 0);
    for (let i = 0; i < 4; i++) this.cpu.write32((ea + 4 * i) | 0, this.xmm[x + i]!);
  }

  /**
   * MOVSS/MOVSD/MOVQ: `dwords` (1 or 2) low dwords. A load from memory
   * zeroes the rest of the register; a register-to-register move keeps it.
   */
  private moveScalar(insn: Insn, store: boolean, dwords: number): void {
    const x = insn.reg * 4;
    if (insn.rmIsReg) {
      const r = insn.rm * 4;
      if (store) this.xmm.copyWithin(r, x, x + dwords);
      else this.xmm.copyWithin(x, r, r + dwords);
      return;
    }
    const ea = this.cpu.effectiveAddress(insn);
    if (store) {
      for (let i = 0; i < dwords; i++) this.cpu.write32((ea + 4 * i) | 0, this.xmm[x + i]!);
      return;
    }
    for (let i = 0; i < dwords; i++) this.src[i] = this.cpu.read32((ea + 4 * i) | 0);
    this.xmm.fill(0, x, x + 4);
    for (let i = 0; i < dwords; i++) this.xmm[x + i] = this.src[i]!;
  }

  /** LDMXCSR: reserved bits raise #GP(0). */
  loadMxcsr(v: number): void {
    if (v & ~MXCSR_MASK) throw new CpuFault(EXC_GP, 0);
    this.mxcsr = v;
  }

  /** The SSE part of an FXSAVE image: MXCSR, MXCSR_MASK and `count` XMM registers. */
  storeFxImage(addr: number, count: number): void {
    this.cpu.write32((addr + FX_MXCSR) | 0, this.mxcsr);
    this.cpu.write32((addr + FX_MXCSR_MASK) | 0, MXCSR_MASK);
    for (let i = 0; i < count * 4; i++) this.cpu.write32((addr + FX_XMM0 + 4 * i) | 0, this.xmm[i]!);
  }

  /** FXRSTOR's SSE part; a reserved MXCSR bit raises #GP(0) before anything changes. */
  checkFxImage(addr: number): void {
    if (this.cpu.read32((addr + FX_MXCSR) | 0) & ~MXCSR_MASK) throw new CpuFault(EXC_GP, 0);
  }

  loadFxImage(addr: number, count: number): void {
    this.mxcsr = this.cpu.read32((addr + FX_MXCSR) | 0);
    for (let i = 0; i < count * 4; i++) this.xmm[i] = this.cpu.read32((addr + FX_XMM0 + 4 * i) | 0);
  }
}
