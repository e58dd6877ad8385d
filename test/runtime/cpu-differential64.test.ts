import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { tempDir } from "../helpers/tmp.js";
import { hasTool, run, skipReason } from "../helpers/tools.js";
import { assemble, bareMachine } from "./cpu-harness.js";
import { ENTER_PROTECTED_MODE } from "./cpu-programs.js";
import { Rng } from "./differential/cases.js";

/**
 * Differential test of 64-bit mode against the host CPU: REX-prefixed ALU,
 * INC/DEC/NEG/NOT/TEST, MOVSXD, LEA with a scaled index and 32-bit forms
 * (which must zero-extend) on R8/R9, random operands, deterministic seeds.
 * The host runs the same bytes natively in 64-bit mode (differential/alu64.c);
 * the emulator runs them in IA-32e mode entered from real mode.
 */
const CASES = 3000;
const hostIsX86Linux = process.arch === "x64" && process.platform === "linux";
const missing = !hostIsX86Linux
  ? "host is not x86-64 Linux"
  : skipReason("nasm") || (hasTool("gcc") ? "" : skipReason("gcc"));
if (!hostIsX86Linux) console.warn("[skip] 64-bit differential CPU test needs an x86-64 Linux host");

const CF = 0x1;
const PF = 0x4;
const AF = 0x10;
const ZF = 0x40;
const SF = 0x80;
const OF = 0x800;
const ARITH = CF | PF | AF | ZF | SF | OF;
const CODE_ADDRESS = 0x8000;

interface Case {
  name: string;
  code: number[];
  r8: bigint;
  r9: bigint;
  flags: number;
  /** Flags the SDM defines for this instruction. */
  defined: number;
}
interface Outcome {
  r8: bigint;
  r9: bigint;
  flags: number;
}

const ALU_NAMES = ["add", "or", "adc", "sbb", "and", "sub", "xor", "cmp"];
const LOGIC = new Set([1, 4, 6]);

function value64(rng: Rng): bigint {
  const low = BigInt(rng.value() >>> 0);
  switch (rng.int(4)) {
    case 0:
      return low;
    case 1:
      return BigInt.asUintN(64, BigInt.asIntN(32, low)); // sign-extended
    default:
      return (BigInt(rng.value() >>> 0) << 32n) | low;
  }
}

function generate(rng: Rng): Case {
  const r8 = value64(rng);
  const r9 = value64(rng);
  const flags = (rng.next() & ARITH) | 2;
  const op = rng.int(8);
  const form = rng.int(14);
  const imm8 = rng.int(256);
  const imm32 = rng.value() >>> 0;
  const le32 = [imm32 & 0xff, (imm32 >>> 8) & 0xff, (imm32 >>> 16) & 0xff, imm32 >>> 24];
  const aluDefined = LOGIC.has(op) ? ARITH & ~AF : ARITH;
  const base = { r8, r9, flags };
  switch (form) {
    case 0:
      return {
        ...base,
        name: `${ALU_NAMES[op]} r8, r9 (Ev,Gv)`,
        code: [0x4d, (op << 3) | 1, 0xc8],
        defined: aluDefined,
      };
    case 1:
      return {
        ...base,
        name: `${ALU_NAMES[op]} r8, r9 (Gv,Ev)`,
        code: [0x4d, (op << 3) | 3, 0xc1],
        defined: aluDefined,
      };
    case 2:
      return {
        ...base,
        name: `${ALU_NAMES[op]} r8, imm8`,
        code: [0x49, 0x83, 0xc0 | (op << 3), imm8],
        defined: aluDefined,
      };
    case 3:
      return {
        ...base,
        name: `${ALU_NAMES[op]} r8, imm32`,
        code: [0x49, 0x81, 0xc0 | (op << 3), ...le32],
        defined: aluDefined,
      };
    case 4:
      return {
        ...base,
        name: `${ALU_NAMES[op]} r8d, r9d`,
        code: [0x45, (op << 3) | 1, 0xc8],
        defined: aluDefined,
      };
    case 5: {
      const sub = rng.pick([0, 1, 2, 3]);
      const name = ["inc r8", "dec r8", "not r8", "neg r8"][sub]!;
      const code =
        sub < 2 ? [0x49, 0xff, 0xc0 | (sub << 3)] : [0x49, 0xf7, 0xc0 | ((sub === 2 ? 2 : 3) << 3)];
      return { ...base, name, code, defined: ARITH };
    }
    case 6:
      return { ...base, name: "test r8, r9", code: [0x4d, 0x85, 0xc8], defined: ARITH & ~AF };
    case 7:
      return { ...base, name: "movsxd r8, r9d", code: [0x4d, 0x63, 0xc1], defined: ARITH };
    case 9: {
      // Shifts and rotates by imm8 or 1 (SDM: AF undefined; OF only for count 1; rotates touch CF/OF only).
      const sub = rng.pick([0, 1, 4, 5, 7]);
      const byOne = rng.int(3) === 0;
      const count = byOne ? 1 : rng.pick([0, 1, 2, 31, 32, 33, 63, 64, rng.int(256)]);
      const masked = count & 63;
      let defined = masked === 0 ? ARITH : sub <= 1 ? CF : ARITH & ~AF & ~OF;
      if (masked === 1) defined |= OF;
      const name = `${["rol", "ror", "", "", "shl", "shr", "", "sar"][sub]} r8, ${count}`;
      const code = byOne ? [0x49, 0xd1, 0xc0 | (sub << 3)] : [0x49, 0xc1, 0xc0 | (sub << 3), count];
      return { ...base, name, code, defined };
    }
    case 12: {
      // BSF/BSR of a non-zero source (the destination is undefined for 0); only ZF is defined.
      const reverse = rng.int(2) === 1;
      const source = r9 === 0n ? 1n << BigInt(rng.int(64)) : r9;
      return {
        ...base,
        r9: source,
        name: reverse ? "bsr r8, r9" : "bsf r8, r9",
        code: [0x4d, 0x0f, reverse ? 0xbd : 0xbc, 0xc1],
        defined: ZF,
      };
    }
    case 13: {
      const kind = rng.int(4);
      const name = ["bt", "bts", "btr", "btc"][kind]!;
      if (rng.int(2) === 0)
        return { ...base, name: `${name} r8, r9`, code: [0x4d, 0x0f, 0xa3 + 8 * kind, 0xc8], defined: CF };
      return {
        ...base,
        name: `${name} r8, ${imm8}`,
        code: [0x49, 0x0f, 0xba, 0xe0 | (kind << 3), imm8],
        defined: CF,
      };
    }
    case 10:
      return { ...base, name: "imul r8, r9", code: [0x4d, 0x0f, 0xaf, 0xc1], defined: CF | OF };
    case 11:
      return { ...base, name: "imul r8, r9, imm32", code: [0x4d, 0x69, 0xc1, ...le32], defined: CF | OF };
    default: {
      const scale = rng.int(4);
      return {
        ...base,
        name: `lea r8, [r8 + r9*${1 << scale} + disp8]`,
        code: [0x4f, 0x8d, 0x44, (scale << 6) | (1 << 3) | 0, imm8],
        defined: ARITH,
      };
    }
  }
}

function runOnHost(harness: string, cases: readonly Case[]): Outcome[] {
  const input = Buffer.alloc(cases.length * 40);
  cases.forEach((c, i) => {
    input[i * 40] = c.code.length;
    input.set(c.code, i * 40 + 1);
    input.writeBigUInt64LE(c.r8, i * 40 + 16);
    input.writeBigUInt64LE(c.r9, i * 40 + 24);
    input.writeBigUInt64LE(BigInt(c.flags), i * 40 + 32);
  });
  const result = spawnSync(harness, [], { input, maxBuffer: 64 << 20 });
  if (result.status !== 0) throw new Error(`alu64 harness failed: ${result.stderr?.toString()}`);
  return cases.map((_, i) => ({
    r8: result.stdout.readBigUInt64LE(i * 24),
    r9: result.stdout.readBigUInt64LE(i * 24 + 8),
    flags: Number(result.stdout.readBigUInt64LE(i * 24 + 16)),
  }));
}

/** A bare machine put into 64-bit mode once (identity-mapped 2 MiB page); each case runs at CODE_ADDRESS. */
function longModeMachine() {
  const m = bareMachine();
  const enter = assemble(`${ENTER_PROTECTED_MODE}  mov esp, 0x90000
  mov edi, 0x10000
  mov ecx, 0xc00
  xor eax, eax
  rep stosd
  mov dword [0x10000], 0x11003
  mov dword [0x11000], 0x12003
  mov dword [0x12000], 0x83              ; 2 MiB page at 0
  mov eax, cr4
  or eax, 0x20
  mov cr4, eax
  mov eax, 0x10000
  mov cr3, eax
  mov ecx, 0xc0000080
  rdmsr
  or eax, 0x100
  wrmsr
  mov eax, cr0
  or eax, 0x80000000
  mov cr0, eax
  jmp 0x18:long64
bits 64
long64:
  hlt
align 8
gdt:
  dq 0
  dq 0x00cf9a000000ffff
  dq 0x00cf92000000ffff
  dq 0x00af9a000000ffff
gdt_end:
gdtr: dw gdt_end - gdt - 1
  dd gdt
`);
  m.memory.ram.set(enter, 0x7c00);
  m.cpu.jumpReal(0, 0x7c00);
  const stop = m.cpu.run(100_000);
  if (stop.kind !== "shutdown" || m.cpu.mode !== "long64")
    throw new Error(`did not reach 64-bit mode: ${m.cpu.describeState()}`);
  return m;
}

function runOnEmulator(m: ReturnType<typeof longModeMachine>, c: Case): Outcome {
  const { cpu, memory } = m;
  memory.ram.set([...c.code, 0xf4], CODE_ADDRESS);
  cpu.invalidateCode(CODE_ADDRESS, 16);
  cpu.regs[8] = Number(c.r8 & 0xffffffffn) | 0;
  cpu.regsHigh[8] = Number(c.r8 >> 32n) | 0;
  cpu.regs[9] = Number(c.r9 & 0xffffffffn) | 0;
  cpu.regsHigh[9] = Number(c.r9 >> 32n) | 0;
  cpu.setFlags(c.flags);
  cpu.setEip(CODE_ADDRESS);
  const stop = cpu.run(10);
  if (stop.kind !== "shutdown") throw new Error(`${c.name}: ${JSON.stringify(stop)}`);
  const pair = (r: number) => (BigInt(cpu.regsHigh[r]! >>> 0) << 32n) | BigInt(cpu.regs[r]! >>> 0);
  return { r8: pair(8), r9: pair(9), flags: cpu.getFlags() };
}

describe.skipIf(missing !== "")("CPU differential test against the host CPU, 64-bit mode", () => {
  it(`REX.W ALU, INC/DEC/NOT/NEG, TEST, MOVSXD, LEA, shifts, rotates, IMUL, BSF/BSR, BT/BTS/BTR/BTC and 32-bit zero-extending forms: ${CASES} random cases agree`, () => {
    const dir = tempDir("ovfkit-diff64-");
    const harness = join(dir, "alu64");
    run("gcc", ["-O2", "-mno-red-zone", "-o", harness, join(import.meta.dirname, "differential", "alu64.c")]);
    const rng = new Rng(0x64640000);
    const cases = Array.from({ length: CASES }, () => generate(rng));
    const host = runOnHost(harness, cases);
    const m = longModeMachine();
    const failures: string[] = [];
    cases.forEach((c, i) => {
      const want = host[i]!;
      const got = runOnEmulator(m, c);
      const diffs: string[] = [];
      if (got.r8 !== want.r8) diffs.push(`r8 ${got.r8.toString(16)} != host ${want.r8.toString(16)}`);
      if (got.r9 !== want.r9) diffs.push(`r9 ${got.r9.toString(16)} != host ${want.r9.toString(16)}`);
      if ((got.flags ^ want.flags) & c.defined)
        diffs.push(`flags ${got.flags.toString(16)} != host ${want.flags.toString(16)}`);
      if (diffs.length > 0 && failures.length < 10)
        failures.push(
          `${c.name} r8=${c.r8.toString(16)} r9=${c.r9.toString(16)} flags=${c.flags.toString(16)}: ${diffs.join(", ")}`,
        );
    });
    expect(failures).toEqual([]);
  });
});
