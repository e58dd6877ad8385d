/**
 * x86 instruction decoder: bytes -> a decoded `Insn` record that the
 * executor runs many times (decoded once per physical address, cached by
 * the CPU per physical page).
 *
 * The tables cover the one-byte map and the 0F map (opcode numbers
 * 0x000-0x0FF and 0x100-0x1FF). Long mode is designed in: REX prefixes,
 * 64-bit operand size (REX.W) and RIP-relative addressing (mod=00 rm=101
 * in 64-bit code) are decoded, although this stage executes 16/32-bit code.
 * Reference: Intel SDM vol. 2, chapter 2 (instruction format) and
 * appendix A (opcode maps).
 */

/** Operand-size / address-size / code-size values. */
export const SIZE16 = 16;
export const SIZE32 = 32;
export const SIZE64 = 64;

/** Special base register number meaning "RIP-relative" (64-bit mode only). */
export const BASE_RIP = 16;
/** No register. */
export const NO_REG = -1;

/** Repeat prefixes. */
export const REP_NONE = 0;
export const REP_E = 1; // F3
export const REP_NE = 2; // F2

// Immediate kinds in the opcode tables.
const I_NONE = 0;
const I_B = 1; // 8-bit
const I_W = 2; // 16-bit
const I_Z = 3; // 16 or 32 (operand size; 32 for 64-bit operand size)
const I_V = 4; // 16, 32 or 64 (MOV r, imm with REX.W)
const I_AP = 5; // far pointer: z + 16-bit selector
const I_WB = 6; // ENTER: iw, ib
const I_MOFFS = 7; // address-size offset (A0-A3)
const I_GRP3 = 8; // F6/F7: imm only for /0 and /1 (TEST)

/** Per-opcode attributes: bit 7 = has ModRM, low bits = immediate kind. */
const ATTR = new Uint8Array(512);
const MODRM = 0x80;

function setRange(first: number, last: number, attr: number): void {
  for (let op = first; op <= last; op++) ATTR[op] = attr;
}

(function buildTables(): void {
  // One-byte map. ALU rows 00-3F: x0-x3 ModRM, x4 ib, x5 iz.
  for (let row = 0; row < 8; row++) {
    const base = row * 8;
    setRange(base, base + 3, MODRM);
    ATTR[base + 4] = I_B;
    ATTR[base + 5] = I_Z;
  }
  ATTR[0x62] = MODRM; // BOUND
  ATTR[0x63] = MODRM; // ARPL (MOVSXD in 64-bit)
  ATTR[0x68] = I_Z;
  ATTR[0x69] = MODRM | I_Z;
  ATTR[0x6a] = I_B;
  ATTR[0x6b] = MODRM | I_B;
  setRange(0x70, 0x7f, I_B);
  ATTR[0x80] = MODRM | I_B;
  ATTR[0x81] = MODRM | I_Z;
  ATTR[0x82] = MODRM | I_B;
  ATTR[0x83] = MODRM | I_B;
  setRange(0x84, 0x8f, MODRM);
  ATTR[0x9a] = I_AP;
  setRange(0xa0, 0xa3, I_MOFFS);
  ATTR[0xa8] = I_B;
  ATTR[0xa9] = I_Z;
  setRange(0xb0, 0xb7, I_B);
  setRange(0xb8, 0xbf, I_V);
  ATTR[0xc0] = MODRM | I_B;
  ATTR[0xc1] = MODRM | I_B;
  ATTR[0xc2] = I_W;
  ATTR[0xc4] = MODRM;
  ATTR[0xc5] = MODRM;
  ATTR[0xc6] = MODRM | I_B;
  ATTR[0xc7] = MODRM | I_Z;
  ATTR[0xc8] = I_WB;
  ATTR[0xca] = I_W;
  ATTR[0xcd] = I_B;
  setRange(0xd0, 0xd3, MODRM);
  ATTR[0xd4] = I_B;
  ATTR[0xd5] = I_B;
  setRange(0xd8, 0xdf, MODRM); // x87
  setRange(0xe0, 0xe7, I_B);
  ATTR[0xe8] = I_Z;
  ATTR[0xe9] = I_Z;
  ATTR[0xea] = I_AP;
  ATTR[0xeb] = I_B;
  ATTR[0xf6] = MODRM | I_GRP3;
  ATTR[0xf7] = MODRM | I_GRP3;
  ATTR[0xfe] = MODRM;
  ATTR[0xff] = MODRM;

  // Two-byte map (0F xx) at 0x100 + xx. Most have ModRM; list those that do not.
  setRange(0x100, 0x1ff, MODRM);
  for (const op of [
    0x05, 0x06, 0x07, 0x08, 0x09, 0x0b, 0x0e, 0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x37, 0x77,
  ]) {
    ATTR[0x100 + op] = I_NONE;
  }
  for (const op of [0xa0, 0xa1, 0xa2, 0xa8, 0xa9, 0xaa]) ATTR[0x100 + op] = I_NONE;
  setRange(0x1c8, 0x1cf, I_NONE); // BSWAP
  setRange(0x180, 0x18f, I_Z); // Jcc rel16/32
  ATTR[0x13f] = I_B; // our BIOS hypercall 0F 3F ib
  ATTR[0x1a4] = MODRM | I_B; // SHLD ib
  ATTR[0x1ac] = MODRM | I_B; // SHRD ib
  ATTR[0x1ba] = MODRM | I_B; // BT group ib
  ATTR[0x170] = MODRM | I_B; // PSHUF* (not executed, length only)
  setRange(0x171, 0x173, MODRM | I_B);
  ATTR[0x1c2] = MODRM | I_B;
  setRange(0x1c4, 0x1c6, MODRM | I_B);
})();

/** 16-bit addressing: base and index registers for rm = 0..7. */
const EA16_BASE = [3, 3, 5, 5, 6, 7, 5, 3]; // BX, BX, BP, BP, SI, DI, BP, BX
const EA16_INDEX = [6, 7, 6, 7, NO_REG, NO_REG, NO_REG, NO_REG]; // SI, DI, SI, DI

/** A decoded instruction. Fields are plain numbers so V8 keeps one hidden class. */
export class Insn {
  /** 0x000-0x0FF one-byte map, 0x100-0x1FF two-byte (0F) map. */
  opcode = 0;
  length = 0;
  /** Operand size (16/32/64) and address size (16/32/64). */
  opSize = SIZE32;
  adSize = SIZE32;
  /** Segment override prefix (Seg.*), or -1. */
  segOverride = -1;
  rep = REP_NONE;
  lock = false;
  /** REX prefix byte (0 when absent; only decoded in 64-bit code). */
  rex = 0;
  /** The code size this was decoded for (the cache key besides the address). */
  codeSize = SIZE32;
  // ModRM
  mod = 0;
  reg = 0;
  rm = 0;
  /** True when the r/m operand is a register (mod = 3). */
  rmIsReg = false;
  // Effective address: seg:[base + index << scale + disp]
  eaBase = NO_REG;
  eaIndex = NO_REG;
  eaScale = 0;
  disp = 0;
  /** Segment used for the memory operand (override or the default DS/SS). */
  eaSeg = 3;
  imm = 0;
  imm2 = 0;
  /** Prefix bytes seen (66/F2/F3), for the SSE maps if added later. */
  mandatoryPrefix = 0;

  // ---- links kept by the CPU's decode cache (see X86Cpu.runBlock) ----
  /** False once the page it was decoded from is written (or if never cached). */
  valid = false;
  /** Page offset just past the instruction; < 4096 means the next one is in the same page. */
  endOffset = 0;
  /** The instruction that follows in the same physical page, once seen. */
  next: Insn | null = null;
  /** The last taken-branch target in the same page, with the EIP and CS base it was reached at. */
  branch: Insn | null = null;
  branchEip = 0;
  branchCsBase = 0;
}

export class DecodeError extends Error {
  constructor(readonly reason: "too-long" | "fetch") {
    super(reason);
  }
}

/**
 * A byte source for the decoder. `byte(i)` returns the i-th byte of the
 * instruction (it may raise a page fault through the CPU's fetch path).
 */
export interface CodeSource {
  byte(index: number): number;
}

const MAX_LENGTH = 15;

/**
 * Decodes one instruction. `codeSize` is the default operand/address size
 * of the code segment (CS.D), or 64 in long mode.
 */
export function decode(src: CodeSource, codeSize: number, out: Insn): Insn {
  let i = 0;
  let opSize = codeSize === SIZE64 ? SIZE32 : codeSize;
  let adSize = codeSize;
  let segOverride = -1;
  let rep = REP_NONE;
  let lock = false;
  let rex = 0;
  let mandatoryPrefix = 0;
  let b = src.byte(i++);
  // Legacy prefixes (any order), then REX (64-bit mode, must be last).
  for (;;) {
    if (b === 0x66) {
      opSize = codeSize === SIZE16 ? SIZE32 : SIZE16;
      mandatoryPrefix = 0x66;
    } else if (b === 0x67) adSize = codeSize === SIZE32 ? SIZE16 : codeSize === SIZE16 ? SIZE32 : SIZE32;
    else if (b === 0x26) segOverride = 0;
    else if (b === 0x2e) segOverride = 1;
    else if (b === 0x36) segOverride = 2;
    else if (b === 0x3e) segOverride = 3;
    else if (b === 0x64) segOverride = 4;
    else if (b === 0x65) segOverride = 5;
    else if (b === 0xf0) lock = true;
    else if (b === 0xf3) {
      rep = REP_E;
      mandatoryPrefix = 0xf3;
    } else if (b === 0xf2) {
      rep = REP_NE;
      mandatoryPrefix = 0xf2;
    } else break;
    if (i >= MAX_LENGTH) throw new DecodeError("too-long");
    b = src.byte(i++);
  }
  if (codeSize === SIZE64 && (b & 0xf0) === 0x40) {
    rex = b;
    if (rex & 8) opSize = SIZE64;
    b = src.byte(i++);
  }
  let opcode = b;
  if (b === 0x0f) opcode = 0x100 | src.byte(i++);
  const attr = ATTR[opcode]!;
  out.opcode = opcode;
  out.opSize = opSize;
  out.adSize = adSize;
  out.segOverride = segOverride;
  out.rep = rep;
  out.lock = lock;
  out.rex = rex;
  out.codeSize = codeSize;
  out.mandatoryPrefix = mandatoryPrefix;
  out.eaBase = NO_REG;
  out.eaIndex = NO_REG;
  out.eaScale = 0;
  out.disp = 0;
  out.imm = 0;
  out.imm2 = 0;
  out.mod = 0;
  out.reg = 0;
  out.rm = 0;
  out.rmIsReg = false;
  out.eaSeg = segOverride >= 0 ? segOverride : 3;

  if (attr & MODRM) {
    const modrm = src.byte(i++);
    const mod = modrm >> 6;
    const reg = ((modrm >> 3) & 7) | ((rex & 4) << 1);
    let rm = modrm & 7;
    out.mod = mod;
    out.reg = reg;
    if (mod === 3) {
      out.rm = rm | ((rex & 1) << 3);
      out.rmIsReg = true;
    } else if (adSize === SIZE16) {
      out.rm = rm;
      let defaultSeg = 3;
      if (mod === 0 && rm === 6) {
        out.disp = src.byte(i) | (src.byte(i + 1) << 8);
        i += 2;
      } else {
        out.eaBase = EA16_BASE[rm]!;
        out.eaIndex = EA16_INDEX[rm]!;
        if (rm === 2 || rm === 3 || rm === 6) defaultSeg = 2;
        if (mod === 1) {
          out.disp = (src.byte(i++) << 24) >> 24;
        } else if (mod === 2) {
          out.disp = src.byte(i) | (src.byte(i + 1) << 8);
          i += 2;
        }
      }
      out.eaSeg = segOverride >= 0 ? segOverride : defaultSeg;
    } else {
      let defaultSeg = 3;
      if (rm === 4) {
        const sib = src.byte(i++);
        const scale = sib >> 6;
        const index = ((sib >> 3) & 7) | ((rex & 2) << 2);
        const base = sib & 7;
        if (index !== 4) {
          out.eaIndex = index;
          out.eaScale = scale;
        }
        if (base === 5 && mod === 0) {
          out.disp = readDisp32(src, i);
          i += 4;
        } else {
          out.eaBase = base | ((rex & 1) << 3);
          if (base === 4 || base === 5) defaultSeg = 2;
        }
      } else if (rm === 5 && mod === 0) {
        out.disp = readDisp32(src, i);
        i += 4;
        if (codeSize === SIZE64) out.eaBase = BASE_RIP;
      } else {
        rm |= (rex & 1) << 3;
        out.eaBase = rm;
        if ((rm & 7) === 5 && rm < 8) defaultSeg = 2;
      }
      out.rm = modrm & 7;
      if (mod === 1) out.disp = (src.byte(i++) << 24) >> 24;
      else if (mod === 2) {
        out.disp = readDisp32(src, i);
        i += 4;
      }
      out.eaSeg = segOverride >= 0 ? segOverride : defaultSeg;
    }
  }

  switch (attr & 0x7f) {
    case I_NONE:
      break;
    case I_B:
      out.imm = src.byte(i++);
      break;
    case I_W:
      out.imm = src.byte(i) | (src.byte(i + 1) << 8);
      i += 2;
      break;
    case I_Z:
      if (opSize === SIZE16) {
        out.imm = src.byte(i) | (src.byte(i + 1) << 8);
        i += 2;
      } else {
        out.imm = readDisp32(src, i);
        i += 4;
      }
      break;
    case I_V:
      if (opSize === SIZE16) {
        out.imm = src.byte(i) | (src.byte(i + 1) << 8);
        i += 2;
      } else {
        out.imm = readDisp32(src, i);
        i += 4;
        if (opSize === SIZE64) {
          out.imm2 = readDisp32(src, i);
          i += 4;
        }
      }
      break;
    case I_AP:
      if (opSize === SIZE16) {
        out.imm = src.byte(i) | (src.byte(i + 1) << 8);
        i += 2;
      } else {
        out.imm = readDisp32(src, i);
        i += 4;
      }
      out.imm2 = src.byte(i) | (src.byte(i + 1) << 8);
      i += 2;
      break;
    case I_WB:
      out.imm = src.byte(i) | (src.byte(i + 1) << 8);
      out.imm2 = src.byte(i + 2);
      i += 3;
      break;
    case I_MOFFS:
      if (adSize === SIZE16) {
        out.disp = src.byte(i) | (src.byte(i + 1) << 8);
        i += 2;
      } else {
        out.disp = readDisp32(src, i);
        i += 4;
        if (adSize === SIZE64) i += 4; // high half ignored at this stage
      }
      break;
    case I_GRP3:
      if ((out.reg & 7) < 2) {
        if (opcode === 0xf6) out.imm = src.byte(i++);
        else if (opSize === SIZE16) {
          out.imm = src.byte(i) | (src.byte(i + 1) << 8);
          i += 2;
        } else {
          out.imm = readDisp32(src, i);
          i += 4;
        }
      }
      break;
  }
  if (i > MAX_LENGTH) throw new DecodeError("too-long");
  out.length = i;
  return out;
}

function readDisp32(src: CodeSource, i: number): number {
  return src.byte(i) | (src.byte(i + 1) << 8) | (src.byte(i + 2) << 16) | (src.byte(i + 3) << 24) | 0;
}
