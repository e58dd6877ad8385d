import type { InterruptController, IoBus, MemoryBus } from "../bus.js";

/**
 * The contract between the CPU (src/runtime/cpu) and the rest of the
 * machine (devices, BIOS, boot driver). The CPU implements `Cpu`; the
 * machine gives it `CpuHost`.
 */

/** General registers by their x86 encoding number (RAX=0 ... RDI=7, R8..R15 = 8..15). */
export const Reg = { AX: 0, CX: 1, DX: 2, BX: 3, SP: 4, BP: 5, SI: 6, DI: 7 } as const;

/** Segment registers by encoding number. */
export const Seg = { ES: 0, CS: 1, SS: 2, DS: 3, FS: 4, GS: 5 } as const;

/** EFLAGS bits the BIOS and the machine touch. */
export const FLAG_CF = 1 << 0;
export const FLAG_ZF = 1 << 6;
export const FLAG_IF = 1 << 9;

export type CpuMode = "real" | "protected16" | "protected32" | "vm86" | "long64" | "compat";

/** Why `run` returned. */
export type StopReason =
  | { kind: "budget" } // executed the requested number of instructions
  | { kind: "halt" } // HLT with interrupts enabled: wait for an interrupt
  | { kind: "wait"; promise: Promise<void> } // a hypercall is doing async I/O; resume after it settles
  | { kind: "shutdown"; why: string } // triple fault, or halt with IF=0 (nothing will ever wake it)
  | { kind: "unimplemented"; address: number; bytes: number[]; mode: CpuMode }
  | { kind: "stop"; why: string }; // the host asked to stop (CpuHost.requestStop)

export interface CpuHost {
  memory: MemoryBus;
  io: IoBus;
  interrupts: InterruptController;
  /**
   * The built-in BIOS: called when the CPU executes the hypercall opcode
   * `0F 3F ib` (undefined on real CPUs; we place it only in our BIOS ROM)
   * with `ib` as the service number. EIP already points past the 3 bytes.
   * It may return a promise (disk I/O): the CPU then stops with `wait`.
   */
  hypercall(service: number, cpu: Cpu): void | Promise<void>;
  /**
   * True when the machine has a local APIC at the address in the APIC base
   * MSR: CPUID.1:EDX bit 9 (APIC) is reported only then. (Added by the CPU.)
   */
  hasLocalApic?: boolean;
  /**
   * Experimental, off by default: report long mode and its baseline in
   * CPUID (0x80000001:EDX LM and SYSCALL, 1:EDX FXSR, SSE, SSE2) so a
   * 64-bit kernel's CPU check passes. The 64-bit executor and the SSE unit
   * implement a subset only (docs/runtime-cpu.md); unimplemented
   * instructions stop the run as `unimplemented`.
   */
  reportLongMode?: boolean;
}

export interface Cpu {
  /** Instructions retired since reset: the basis of virtual time. */
  readonly instructions: number;
  readonly mode: CpuMode;
  /** Resets to the power-on state (CS:IP = F000:FFF0, real mode). */
  reset(): void;
  /** Runs at most `maxInstructions` instructions. */
  run(maxInstructions: number): StopReason;
  /** A20 gate (true = enabled, no wrap at 1 MiB). */
  a20: boolean;

  // Register access for the BIOS (real mode) and diagnostics.
  getReg32(reg: number): number;
  setReg32(reg: number, value: number): void;
  getReg16(reg: number): number;
  setReg16(reg: number, value: number): void;
  /** 8-bit registers by encoding: 0-3 = AL,CL,DL,BL; 4-7 = AH,CH,DH,BH. */
  getReg8(reg: number): number;
  setReg8(reg: number, value: number): void;
  getSegmentSelector(seg: number): number;
  getSegmentBase(seg: number): number;
  /** Loads a segment register as real mode does (base = selector * 16). */
  loadSegmentReal(seg: number, selector: number): void;
  getFlags(): number;
  setFlags(value: number): void;
  getEip(): number;
  /** Sets CS:EIP in real mode (the BIOS uses it to jump to the boot sector). */
  jumpReal(cs: number, ip: number): void;
  /** One-line register dump for verdicts (`cpu-fault`). */
  describeState(): string;
  /** Makes the current or next `run` return `{ kind: "stop", why }` (expected text seen, reset). */
  requestStop(why: string): void;
  /**
   * Added to the instruction count to give the TSC: the machine advances it
   * when it skips idle time, so the TSC stays on virtual time with the PIT.
   */
  tscOffset: number;
}
