import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type InterruptController, IoBus, MemoryBus, type PortHandler } from "../../src/runtime/bus.js";
import type { Cpu, StopReason } from "../../src/runtime/cpu/api.js";
import { X86Cpu } from "../../src/runtime/cpu/cpu.js";

/** An interrupt controller the test drives by hand. */
export class TestInterrupts implements InterruptController {
  pending: number[] = [];
  hasInterrupt(): boolean {
    return this.pending.length > 0;
  }
  acknowledge(): number {
    return this.pending.shift()!;
  }
}

/** A bare machine: RAM, an I/O bus with a debug port (0xE9) that collects bytes, and the CPU. */
export interface BareMachine {
  memory: MemoryBus;
  io: IoBus;
  cpu: X86Cpu;
  interrupts: TestInterrupts;
  /** Bytes written to port 0xE9 (8-bit) and dwords written to port 0xEC (32-bit). */
  debugBytes: number[];
  debugWords: number[];
  hypercalls: number[];
}

export function bareMachine(ramSize = 4 << 20): BareMachine {
  const memory = new MemoryBus(ramSize);
  const io = new IoBus();
  const interrupts = new TestInterrupts();
  const debugBytes: number[] = [];
  const debugWords: number[] = [];
  const hypercalls: number[] = [];
  const debugPort: PortHandler = {
    read: () => 0,
    write: (port, _size, value) => {
      if (port === 0xe9) debugBytes.push(value & 0xff);
      else debugWords.push(value >>> 0);
    },
  };
  io.register(0xe9, 1, debugPort);
  io.register(0xec, 1, debugPort);
  const cpu = new X86Cpu({
    memory,
    io,
    interrupts,
    hypercall: (service: number, _cpu: Cpu) => {
      hypercalls.push(service);
    },
  });
  return { memory, io, cpu, interrupts, debugBytes, debugWords, hypercalls };
}

/** Assembles a flat binary with nasm (the caller checks `skipReason("nasm")` first). */
export function assemble(source: string): Uint8Array {
  const dir = mkdtempSync(join(tmpdir(), "ovfkit-nasm-"));
  try {
    writeFileSync(join(dir, "t.asm"), source);
    execFileSync("nasm", ["-f", "bin", "-o", join(dir, "t.bin"), join(dir, "t.asm")], { stdio: "pipe" });
    return new Uint8Array(readFileSync(join(dir, "t.bin")));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Loads `code` at physical `address`, starts it in real mode at 0000:address, runs until it stops. */
export function runReal(
  machine: BareMachine,
  code: Uint8Array,
  address = 0x7c00,
  budget = 1_000_000,
): StopReason {
  machine.memory.ram.set(code, address);
  machine.cpu.jumpReal(0, address);
  return machine.cpu.run(budget);
}
