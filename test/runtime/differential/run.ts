/**
 * Runs differential cases on the host CPU (harness.c in 32-bit compatibility
 * mode) and in the emulator (32-bit flat protected mode, ring 0), and
 * compares registers, defined flags, memory and faults.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { assemble, type BareMachine, bareMachine } from "../cpu-harness.js";
import { type Case, DATA_ADDRESS, DATA_SIZE } from "./cases.js";

const HERE = dirname(fileURLToPath(import.meta.url));
const CODE_ADDRESS = 0x300000;
const IDT_ADDRESS = 0x1000;
const HANDLERS_ADDRESS = 0x2000;
const STACK_TOP = 0x380000;
const INPUT_RECORD = 116;
const OUTPUT_RECORD = 104;

export interface Outcome {
  regs: number[];
  eflags: number;
  mem: Uint8Array;
  /** Exception vector, or -1. */
  fault: number;
}

/** Builds the host harness (gcc) and its trampolines (nasm) into `dir`. */
export function buildHostHarness(dir: string): string[] {
  for (const name of ["tramp64", "prologue32", "epilogue32"]) {
    execFileSync("nasm", ["-f", "bin", "-o", join(dir, `${name}.bin`), join(HERE, `${name}.asm`)]);
  }
  execFileSync("gcc", ["-O2", "-o", join(dir, "harness"), join(HERE, "harness.c")]);
  return [
    join(dir, "harness"),
    join(dir, "tramp64.bin"),
    join(dir, "prologue32.bin"),
    join(dir, "epilogue32.bin"),
  ];
}

export function runOnHost(harness: string[], cases: readonly Case[]): Outcome[] {
  const input = Buffer.alloc(cases.length * INPUT_RECORD);
  cases.forEach((c, i) => {
    const at = i * INPUT_RECORD;
    input[at] = c.code.length;
    input.set(c.code, at + 1);
    for (let r = 0; r < 8; r++) input.writeUInt32LE(c.regs[r]! >>> 0, at + 16 + 4 * r);
    input.writeUInt32LE(c.eflags >>> 0, at + 48);
    input.set(c.mem, at + 52);
  });
  const [command, ...args] = harness;
  const result = spawnSync(command!, args, { input, maxBuffer: 256 << 20 });
  if (result.status !== 0) throw new Error(`host harness failed: ${result.stderr?.toString()}`);
  const out = result.stdout;
  if (out.length !== cases.length * OUTPUT_RECORD)
    throw new Error(`host harness returned ${out.length} bytes`);
  return cases.map((_, i) => {
    const at = i * OUTPUT_RECORD;
    const regs: number[] = [];
    for (let r = 0; r < 8; r++) regs.push(out.readUInt32LE(at + 4 * r));
    return {
      regs,
      eflags: out.readUInt32LE(at + 32),
      mem: new Uint8Array(out.subarray(at + 36, at + 36 + DATA_SIZE)),
      fault: out.readInt32LE(at + 100),
    };
  });
}

/** The emulator side: one machine switched to flat 32-bit protected mode once. */
export class EmulatorRunner {
  private readonly machine: BareMachine;

  constructor() {
    this.machine = bareMachine(4 << 20);
    const { memory, cpu } = this.machine;
    // IDT: every vector -> a stub that reports the vector on port 0xE9 and halts.
    for (let v = 0; v < 32; v++) {
      const handler = HANDLERS_ADDRESS + v * 16;
      memory.ram.set([0xb0, v, 0xe6, 0xe9, 0xf4], handler); // mov al, v; out 0xe9, al; hlt
      const gate = IDT_ADDRESS + v * 8;
      memory.view.setUint16(gate, handler & 0xffff, true);
      memory.view.setUint16(gate + 2, 0x08, true);
      memory.view.setUint16(gate + 4, 0x8e00, true); // present, DPL 0, 32-bit interrupt gate
      memory.view.setUint16(gate + 6, handler >>> 16, true);
    }
    const boot = assemble(`bits 16
org 0x7c00
  cli
  lgdt [gdtr]
  lidt [idtr]
  mov eax, cr0
  or al, 1
  mov cr0, eax
  jmp 0x08:pm
bits 32
pm:
  mov ax, 0x10
  mov ds, ax
  mov es, ax
  mov ss, ax
  mov fs, ax
  mov gs, ax
  mov esp, ${STACK_TOP}
  hlt
align 8
gdt: dq 0, 0x00cf9a000000ffff, 0x00cf92000000ffff
gdtr: dw 23
  dd gdt
idtr: dw 32*8-1
  dd ${IDT_ADDRESS}
`);
    memory.ram.set(boot, 0x7c00);
    cpu.jumpReal(0, 0x7c00);
    const stop = cpu.run(100);
    if (stop.kind !== "shutdown" || cpu.mode !== "protected32") {
      throw new Error(
        `emulator did not reach protected mode: ${JSON.stringify(stop)} ${cpu.describeState()}`,
      );
    }
  }

  run(c: Case): Outcome {
    const { memory, cpu, debugBytes } = this.machine;
    memory.ram.fill(0x90, CODE_ADDRESS, CODE_ADDRESS + 32);
    memory.ram.set(c.code, CODE_ADDRESS);
    memory.ram.set(c.mem, DATA_ADDRESS);
    cpu.invalidateCode(CODE_ADDRESS, 32);
    for (let r = 0; r < 8; r++) cpu.setReg32(r, r === 4 ? STACK_TOP : c.regs[r]!);
    cpu.setFlags(c.eflags);
    cpu.setEip(CODE_ADDRESS);
    debugBytes.length = 0;
    cpu.run(1);
    let fault = -1;
    if (cpu.getEip() !== CODE_ADDRESS + c.code.length) {
      // An exception went to the IDT stub: let it report the vector.
      cpu.run(10);
      fault = debugBytes.length > 0 ? debugBytes[0]! : -2;
    }
    const regs: number[] = [];
    for (let r = 0; r < 8; r++) regs.push(cpu.getReg32(r));
    return {
      regs,
      eflags: cpu.getFlags(),
      mem: memory.ram.slice(DATA_ADDRESS, DATA_ADDRESS + DATA_SIZE),
      fault,
    };
  }
}

const REG_NAMES = ["eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi"];

/** Differences between the host and emulator outcomes (empty when they agree). */
export function compare(c: Case, host: Outcome, emu: Outcome): string[] {
  const diffs: string[] = [];
  if (host.fault !== emu.fault) {
    diffs.push(`fault host=${host.fault} emu=${emu.fault}`);
    return diffs;
  }
  if (host.fault >= 0) return diffs; // the state after a fault is not observable on the host
  for (let r = 0; r < 8; r++) {
    if (r === 4 || c.undefinedRegs.includes(r)) continue;
    if (host.regs[r] !== emu.regs[r]) {
      diffs.push(`${REG_NAMES[r]} host=${hex(host.regs[r]!)} emu=${hex(emu.regs[r]!)}`);
    }
  }
  const hostFlags = host.eflags & c.flagMask;
  const emuFlags = emu.eflags & c.flagMask;
  if (hostFlags !== emuFlags)
    diffs.push(`flags host=${hex(hostFlags)} emu=${hex(emuFlags)} (mask ${hex(c.flagMask)})`);
  if (!c.undefinedMem) {
    for (let i = 0; i < DATA_SIZE; i++) {
      if (host.mem[i] !== emu.mem[i]) {
        diffs.push(`mem[${i}] host=${hex(host.mem[i]!)} emu=${hex(emu.mem[i]!)}`);
        break;
      }
    }
  }
  return diffs;
}

export function describeCase(c: Case): string {
  const bytes = c.code.map((b) => b.toString(16).padStart(2, "0")).join(" ");
  const regs = c.regs.map((v, r) => `${REG_NAMES[r]}=${hex(v)}`).join(" ");
  return `[${bytes}] ${regs} eflags=${hex(c.eflags)}`;
}

function hex(v: number): string {
  return (v >>> 0).toString(16);
}
