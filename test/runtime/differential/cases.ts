/**
 * Random instruction cases per opcode group for the differential test, with
 * the flags each instruction leaves undefined masked out (Intel SDM vol. 2,
 * "Flags Affected" of each instruction). All cases run in 32-bit code; 16-bit
 * forms use the 66 prefix. ESP is never an operand (the harnesses own the
 * stack); memory operands are [EBX+disp8] with EBX = DATA_ADDRESS.
 */

export const DATA_ADDRESS = 0x302000;
export const DATA_SIZE = 64;

const CF = 0x1;
const PF = 0x4;
const AF = 0x10;
const ZF = 0x40;
const SF = 0x80;
const OF = 0x800;
export const ARITH = CF | PF | AF | ZF | SF | OF;

export interface Case {
  code: number[];
  regs: number[]; // EAX..EDI (ESP ignored)
  eflags: number;
  mem: Uint8Array;
  /** Flags compared after the instruction. */
  flagMask: number;
  /** Registers whose value after the instruction is undefined. */
  undefinedRegs: number[];
  /** Memory is undefined after the instruction (e.g. SHLD 16-bit with count > 16). */
  undefinedMem?: boolean;
}

/** mulberry32: small deterministic PRNG. */
export class Rng {
  constructor(private state: number) {}
  next(): number {
    this.state = (this.state + 0x6d2b79f5) | 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }
  int(n: number): number {
    return this.next() % n;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
  /** A register value biased towards edge cases. */
  value(): number {
    switch (this.int(8)) {
      case 0:
        return this.pick([
          0, 1, 0xffffffff, 0x7fffffff, 0x80000000, 0x7f, 0x80, 0xff, 0x7fff, 0x8000, 0xffff,
        ]);
      case 1:
        return this.int(16);
      case 2:
        return (this.next() & 0xff) * 0x01010101;
      default:
        return this.next();
    }
  }
}

type Size = 8 | 16 | 32;
const SIZES: readonly Size[] = [8, 16, 32];

/** Registers usable as operands (no ESP; for 8-bit forms AH..BH are fine). */
const GPR_NO_SP = [0, 1, 2, 3, 5, 6, 7];

function randomState(rng: Rng): { regs: number[]; eflags: number; mem: Uint8Array } {
  const regs: number[] = [];
  for (let r = 0; r < 8; r++) regs.push(rng.value());
  regs[4] = 0;
  const mem = new Uint8Array(DATA_SIZE);
  for (let i = 0; i < DATA_SIZE; i++) mem[i] = rng.next() & 0xff;
  const eflags = (rng.next() & ARITH) | 2;
  return { regs, eflags, mem };
}

/**
 * A ModRM operand: register (mod=3, rm != ESP unless 8-bit) or [EBX+disp8]
 * (EBX then holds the data buffer address). Returns the ModRM byte(s).
 */
function modrm(rng: Rng, reg: number, size: Size, state: { regs: number[] }, allowMem = true): number[] {
  if (allowMem && rng.int(3) === 0) {
    state.regs[3] = DATA_ADDRESS;
    return [0x40 | ((reg & 7) << 3) | 3, rng.int(DATA_SIZE - 8)];
  }
  const rm = size === 8 ? rng.int(8) : rng.pick(GPR_NO_SP);
  return [0xc0 | ((reg & 7) << 3) | rm];
}

function regOperand(rng: Rng, size: Size): number {
  return size === 8 ? rng.int(8) : rng.pick(GPR_NO_SP);
}

function prefix(size: Size): number[] {
  return size === 16 ? [0x66] : [];
}

function imm(rng: Rng, bytes: number): number[] {
  const v = rng.value();
  const out: number[] = [];
  for (let i = 0; i < bytes; i++) out.push((v >>> (8 * i)) & 0xff);
  return out;
}

export interface Group {
  name: string;
  generate(rng: Rng): Case;
}

function make(
  rng: Rng,
  build: (state: { regs: number[]; eflags: number; mem: Uint8Array }) => {
    code: number[];
    flagMask: number;
    undefinedRegs?: number[];
    undefinedMem?: boolean;
  },
): Case {
  const state = randomState(rng);
  const { code, flagMask, undefinedRegs, undefinedMem } = build(state);
  return {
    code,
    ...state,
    flagMask,
    undefinedRegs: undefinedRegs ?? [],
    undefinedMem: undefinedMem ?? false,
  };
}

const ALU_NAMES = ["add", "or", "adc", "sbb", "and", "sub", "xor", "cmp"];

function aluGroup(op: number): Group {
  const logic = op === 1 || op === 4 || op === 6;
  const flagMask = logic ? ARITH & ~AF : ARITH;
  return {
    name: ALU_NAMES[op]!,
    generate: (rng) =>
      make(rng, (state) => {
        const size = rng.pick(SIZES);
        const form = rng.int(5);
        const wide = size === 8 ? 0 : 1;
        if (form === 0) {
          // op r/m, reg  or op reg, r/m
          const direction = rng.int(2) * 2;
          return {
            code: [
              ...prefix(size),
              (op << 3) | direction | wide,
              ...modrm(rng, regOperand(rng, size), size, state),
            ],
            flagMask,
          };
        }
        if (form === 1) {
          // op AL/AX/EAX, imm
          return { code: [...prefix(size), (op << 3) | 4 | wide, ...imm(rng, size >> 3)], flagMask };
        }
        if (form === 2 && size !== 8) {
          // 83 /op ib (sign-extended)
          return { code: [...prefix(size), 0x83, ...modrm(rng, op, size, state), ...imm(rng, 1)], flagMask };
        }
        const opcode = size === 8 ? 0x80 : 0x81;
        return {
          code: [
            ...prefix(size),
            opcode,
            ...modrm(rng, op, size, state),
            ...imm(rng, size === 8 ? 1 : size >> 3),
          ],
          flagMask,
        };
      }),
  };
}

const incDecNegNot: Group = {
  name: "inc/dec/neg/not",
  generate: (rng) =>
    make(rng, (state) => {
      const size = rng.pick(SIZES);
      const kind = rng.int(5);
      if (kind === 0 && size !== 8) {
        // 40+r / 48+r short forms (valid in 32-bit code)
        return { code: [...prefix(size), (rng.int(2) ? 0x40 : 0x48) | rng.pick(GPR_NO_SP)], flagMask: ARITH };
      }
      if (kind <= 2) {
        return {
          code: [...prefix(size), size === 8 ? 0xfe : 0xff, ...modrm(rng, rng.int(2), size, state)],
          flagMask: ARITH,
        };
      }
      const sub = kind === 3 ? 2 : 3; // NOT / NEG
      return {
        code: [...prefix(size), size === 8 ? 0xf6 : 0xf7, ...modrm(rng, sub, size, state)],
        flagMask: ARITH,
      };
    }),
};

function shiftGroup(rotateOnly: boolean): Group {
  return {
    name: rotateOnly ? "rol/ror/rcl/rcr" : "shl/shr/sar/sal",
    generate: (rng) =>
      make(rng, (state) => {
        const size = rng.pick(SIZES);
        const sub = rotateOnly ? rng.int(4) : rng.pick([4, 5, 6, 7]);
        const countKind = rng.int(3);
        let count: number;
        let code: number[];
        const wide = size === 8 ? 0 : 1;
        if (countKind === 0) {
          count = 1;
          code = [...prefix(size), 0xd0 | wide, ...modrm(rng, sub, size, state)];
        } else if (countKind === 1) {
          count = rng.int(3) === 0 ? rng.int(256) : rng.int(40);
          state.regs[1] = (state.regs[1]! & ~0xff) | count;
          code = [...prefix(size), 0xd2 | wide, ...modrm(rng, sub, size, state)];
          // the count register itself may be the operand (CL): fine, read before write
        } else {
          count = rng.int(3) === 0 ? rng.int(256) : rng.int(40);
          code = [...prefix(size), 0xc0 | wide, ...modrm(rng, sub, size, state), count];
        }
        const masked = count & 0x1f;
        let flagMask = ARITH;
        if (masked !== 0) {
          if (sub < 4) {
            // Rotates change only CF and OF; OF is undefined unless the count is 1.
            flagMask = masked === 1 ? ARITH : ARITH & ~OF;
          } else {
            flagMask &= ~AF;
            if (masked !== 1) flagMask &= ~OF;
            if ((sub === 4 || sub === 5 || sub === 6) && masked >= size) flagMask &= ~CF;
          }
        }
        return { code, flagMask };
      }),
  };
}

const mulDiv: Group = {
  name: "mul/imul/div/idiv",
  generate: (rng) =>
    make(rng, (state) => {
      const size = rng.pick(SIZES);
      const sub = 4 + rng.int(4);
      const wide = size === 8 ? 0 : 1;
      const rm = size === 8 ? rng.pick([1, 3, 5, 7]) : rng.pick([1, 3, 5, 6, 7]); // CL BL CH BH / ECX EBX EBP ESI EDI
      const mask = size === 32 ? 0xffffffff : size === 16 ? 0xffff : 0xff;
      if (sub >= 6 && rng.int(20) !== 0) {
        // Mostly keep the quotient in range; 1 in 20 may raise #DE (compared too).
        let divisor = rng.value() & mask || 1;
        const regIndex = size === 8 ? rm & 3 : rm;
        const shift = size === 8 && rm >= 4 ? 8 : 0;
        state.regs[regIndex] = (state.regs[regIndex]! & ~(mask << shift)) | (divisor << shift);
        if (sub === 6) {
          if (size === 8)
            state.regs[0] = (state.regs[0]! & ~0xff00) | (((state.regs[0]! >>> 8) % divisor) << 8);
          else if (size === 16)
            state.regs[2] = (state.regs[2]! & ~0xffff) | ((state.regs[2]! & 0xffff) % divisor);
          else state.regs[2] = (state.regs[2]! >>> 0) % (divisor >>> 0);
        } else {
          // Sign-extend the dividend so |quotient| <= |dividend low half|.
          if (size === 8) state.regs[0] = (state.regs[0]! & ~0xff00) | (state.regs[0]! & 0x80 ? 0xff00 : 0);
          else if (size === 16)
            state.regs[2] = (state.regs[2]! & ~0xffff) | (state.regs[0]! & 0x8000 ? 0xffff : 0);
          else state.regs[2] = state.regs[0]! >> 31;
          const lowMax = size === 32 ? 0x80000000 : size === 16 ? 0x8000 : 0x80;
          if ((state.regs[0]! & mask) >>> 0 === lowMax && (divisor & mask) >>> 0 === mask) divisor = 1;
          state.regs[regIndex] = (state.regs[regIndex]! & ~(mask << shift)) | (divisor << shift);
        }
      }
      // MUL/IMUL: CF, OF defined; DIV/IDIV: no flags defined.
      const flagMask = sub < 6 ? CF | OF : 0;
      return { code: [...prefix(size), 0xf6 | wide, 0xc0 | (sub << 3) | rm], flagMask };
    }),
};

const imulForms: Group = {
  name: "imul 2/3-operand",
  generate: (rng) =>
    make(rng, (state) => {
      const size: Size = rng.pick([16, 32] as const);
      const reg = rng.pick(GPR_NO_SP);
      const kind = rng.int(3);
      const operand = modrm(rng, reg, size, state);
      if (kind === 0) return { code: [...prefix(size), 0x0f, 0xaf, ...operand], flagMask: CF | OF };
      if (kind === 1) return { code: [...prefix(size), 0x6b, ...operand, ...imm(rng, 1)], flagMask: CF | OF };
      return { code: [...prefix(size), 0x69, ...operand, ...imm(rng, size >> 3)], flagMask: CF | OF };
    }),
};

const bitTests: Group = {
  name: "bt/bts/btr/btc",
  generate: (rng) =>
    make(rng, (state) => {
      const size: Size = rng.pick([16, 32] as const);
      const op = rng.int(4);
      if (rng.int(2) === 0) {
        const reg = rng.pick(GPR_NO_SP.filter((r) => r !== 3));
        const operand = modrm(rng, reg, size, state);
        if (operand.length > 1) {
          // Memory form: the bit offset addresses beyond the operand; keep it inside the buffer.
          operand[1] = 24;
          state.regs[reg] = rng.int(2) ? rng.int(200) : -rng.int(190);
        }
        return { code: [...prefix(size), 0x0f, 0xa3 | (op << 3), ...operand], flagMask: CF | ZF };
      }
      return {
        code: [...prefix(size), 0x0f, 0xba, ...modrm(rng, 4 + op, size, state), rng.int(256)],
        flagMask: CF | ZF,
      };
    }),
};

const bitScans: Group = {
  name: "bsf/bsr",
  generate: (rng) =>
    make(rng, (state) => {
      const size: Size = rng.pick([16, 32] as const);
      const reg = rng.pick(GPR_NO_SP);
      const operand = modrm(rng, reg, size, state);
      const reverse = rng.int(2);
      // The source may be zero: ZF=1 and the destination is undefined.
      if (operand.length === 1 && rng.int(4) === 0) {
        const rm = operand[0]! & 7;
        state.regs[rm] = size === 16 ? state.regs[rm]! & ~0xffff : 0;
      }
      return {
        code: [...prefix(size), 0x0f, 0xbc | reverse, ...operand],
        flagMask: ZF,
        undefinedRegs: [reg],
      };
    }),
};

const setccCmov: Group = {
  name: "setcc/cmovcc",
  generate: (rng) =>
    make(rng, (state) => {
      const cc = rng.int(16);
      if (rng.int(2) === 0) return { code: [0x0f, 0x90 | cc, ...modrm(rng, 0, 8, state)], flagMask: ARITH };
      const size: Size = rng.pick([16, 32] as const);
      return {
        code: [...prefix(size), 0x0f, 0x40 | cc, ...modrm(rng, rng.pick(GPR_NO_SP), size, state)],
        flagMask: ARITH,
      };
    }),
};

const movExtend: Group = {
  name: "movzx/movsx",
  generate: (rng) =>
    make(rng, (state) => {
      const size: Size = rng.pick([16, 32] as const);
      const op = rng.pick([0xb6, 0xb7, 0xbe, 0xbf]);
      const srcSize: Size = op & 1 ? 16 : 8;
      return {
        code: [...prefix(size), 0x0f, op, ...modrm(rng, rng.pick(GPR_NO_SP), srcSize, state)],
        flagMask: ARITH,
      };
    }),
};

const exchange: Group = {
  name: "xchg/cmpxchg/xadd",
  generate: (rng) =>
    make(rng, (state) => {
      const size = rng.pick(SIZES);
      const wide = size === 8 ? 0 : 1;
      const reg = regOperand(rng, size);
      const kind = rng.int(4);
      if (kind === 0)
        return { code: [...prefix(size), 0x86 | wide, ...modrm(rng, reg, size, state)], flagMask: ARITH };
      if (kind === 1) {
        const operand = modrm(rng, reg, size, state);
        // Make equality likely half the time.
        if (operand.length === 1 && rng.int(2)) state.regs[operand[0]! & 7] = state.regs[0]!;
        return { code: [...prefix(size), 0x0f, 0xb0 | wide, ...operand], flagMask: ARITH };
      }
      if (kind === 2)
        return {
          code: [...prefix(size), 0x0f, 0xc0 | wide, ...modrm(rng, reg, size, state)],
          flagMask: ARITH,
        };
      if (size === 8) return { code: [0x86, ...modrm(rng, reg, 8, state)], flagMask: ARITH };
      return { code: [...prefix(size), 0x90 | rng.pick([1, 2, 3, 5, 6, 7])], flagMask: ARITH };
    }),
};

const bswapGroup: Group = {
  name: "bswap",
  generate: (rng) => make(rng, () => ({ code: [0x0f, 0xc8 | rng.pick(GPR_NO_SP)], flagMask: ARITH })),
};

const doubleShifts: Group = {
  name: "shld/shrd",
  generate: (rng) =>
    make(rng, (state) => {
      const size: Size = rng.pick([16, 32] as const);
      const right = rng.int(2) * 8;
      const reg = rng.pick(GPR_NO_SP.filter((r) => r !== 1));
      const useCl = rng.int(2) === 1;
      const count = rng.int(3) === 0 ? rng.int(256) : rng.int(34);
      const operand = modrm(rng, reg, size, state);
      let code: number[];
      if (useCl) {
        state.regs[1] = (state.regs[1]! & ~0xff) | count;
        if (operand.length === 1 && (operand[0]! & 7) === 1) operand[0] = (operand[0]! & ~7) | 0;
        code = [...prefix(size), 0x0f, 0xa5 | right, ...operand];
      } else code = [...prefix(size), 0x0f, 0xa4 | right, ...operand, count];
      const masked = count & 31;
      let flagMask = ARITH;
      const undefinedRegs: number[] = [];
      let undefinedMem = false;
      if (masked !== 0) {
        flagMask &= ~AF;
        if (masked !== 1) flagMask &= ~OF;
        if (masked > size) {
          // Result and flags undefined (16-bit operands with counts 17-31).
          flagMask = 0;
          if (operand.length === 1) undefinedRegs.push(operand[0]! & 7);
          else undefinedMem = true;
        }
      }
      return { code, flagMask, undefinedRegs, undefinedMem };
    }),
};

const bcdGroup: Group = {
  name: "daa/das/aaa/aas/aam/aad",
  generate: (rng) =>
    make(rng, () => {
      const op = rng.pick([0x27, 0x2f, 0x37, 0x3f, 0xd4, 0xd5]);
      if (op === 0x27 || op === 0x2f) return { code: [op], flagMask: ARITH & ~OF };
      if (op === 0x37 || op === 0x3f) return { code: [op], flagMask: AF | CF };
      const base = rng.int(4) === 0 ? rng.int(256) : 10;
      return { code: [op, base], flagMask: op === 0xd4 ? SF | ZF | PF : SF | ZF | PF };
    }),
};

const misc: Group = {
  name: "cbw/cwd/lahf/sahf/cmc/clc/stc/lea/movs-imm",
  generate: (rng) =>
    make(rng, (state) => {
      const kind = rng.int(7);
      const size: Size = rng.pick([16, 32] as const);
      switch (kind) {
        case 0:
          return { code: [...prefix(size), rng.pick([0x98, 0x99])], flagMask: ARITH };
        case 1:
          return { code: [rng.pick([0x9e, 0x9f])], flagMask: ARITH };
        case 2:
          return { code: [rng.pick([0xf5, 0xf8, 0xf9])], flagMask: ARITH };
        case 3: {
          // LEA with SIB: [base + index*scale + disp32]
          const reg = rng.pick(GPR_NO_SP);
          const base = rng.pick(GPR_NO_SP);
          const index = rng.pick(GPR_NO_SP);
          return {
            code: [
              ...prefix(size),
              0x8d,
              0x84 | (reg << 3),
              (rng.int(4) << 6) | (index << 3) | base,
              ...imm(rng, 4),
            ],
            flagMask: ARITH,
          };
        }
        case 4:
          return {
            code: [...prefix(size), 0xc7, ...modrm(rng, 0, size, state), ...imm(rng, size >> 3)],
            flagMask: ARITH,
          };
        case 5:
          return {
            code: [...prefix(size), 0x8b, ...modrm(rng, rng.pick(GPR_NO_SP), size, state)],
            flagMask: ARITH,
          };
        default:
          return {
            code: [...prefix(size), 0x85, ...modrm(rng, rng.pick(GPR_NO_SP), size, state)],
            flagMask: ARITH & ~AF,
          };
      }
    }),
};

export const GROUPS: readonly Group[] = [
  ...[0, 1, 2, 3, 4, 5, 6, 7].map(aluGroup),
  incDecNegNot,
  shiftGroup(false),
  shiftGroup(true),
  mulDiv,
  imulForms,
  bitTests,
  bitScans,
  setccCmov,
  movExtend,
  exchange,
  bswapGroup,
  doubleShifts,
  bcdGroup,
  misc,
];
