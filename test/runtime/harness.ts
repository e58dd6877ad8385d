import { checkReadRange, type DiskReader, mapRange } from "../../src/formats/disk.js";
import { Reg, Seg } from "../../src/runtime/cpu/api.js";
import { X86Cpu } from "../../src/runtime/cpu/cpu.js";
import { Machine, type MachineOptions } from "../../src/runtime/machine.js";

/** A disk held in a Buffer (tests only), with a read counter. */
export function bufferDisk(data: Buffer, path = "(memory)"): DiskReader & { reads: number } {
  const disk = {
    format: "raw" as const,
    path,
    virtualSize: data.length,
    files: [],
    formatSpecific: {},
    reads: 0,
    async *map(offset?: number, length?: number) {
      const { start, end } = mapRange(data.length, offset, length);
      if (end > start) yield { offset: start, length: end - start, kind: "data" as const };
    },
    async read(offset: number, length: number, into?: Buffer) {
      checkReadRange(path, data.length, offset, length);
      disk.reads++;
      const out = into ? into.subarray(0, length) : Buffer.alloc(length);
      data.copy(out, 0, offset, offset + length);
      return out;
    },
    async close() {},
  };
  return disk;
}

/** A disk whose sector n is filled with the byte (n & 0xff), with a boot signature in sector 0. */
export function patternDisk(sectors: number): Buffer {
  const data = Buffer.alloc(sectors * 512);
  for (let n = 0; n < sectors; n++) data.fill(n & 0xff, n * 512, (n + 1) * 512);
  data[510] = 0x55;
  data[511] = 0xaa;
  return data;
}

/** A bootable disk whose boot sector is `code` (padded, signed), plus `extraSectors` of zeros. */
export function bootSectorDisk(code: number[], extraSectors = 15): Buffer {
  const data = Buffer.alloc(512 * (1 + extraSectors));
  Buffer.from(code).copy(data);
  data[510] = 0x55;
  data[511] = 0xaa;
  return data;
}

export function newMachine(options: Partial<MachineOptions> = {}): Machine {
  return new Machine({ memoryMiB: 16, createCpu: (host) => new X86Cpu(host), ...options });
}

export interface Registers {
  eax?: number;
  ebx?: number;
  ecx?: number;
  edx?: number;
  esi?: number;
  edi?: number;
  es?: number;
  ds?: number;
}

const CODE_AT = 0x7000;
const STACK_TOP = 0x6000;

/**
 * Executes `int vector` in real mode through the IVT, the ROM stub and its
 * IRET (the path guests use), then HLT with interrupts off; returns the
 * machine's stop and the flags after the call.
 */
export async function callInterrupt(machine: Machine, vector: number, regs: Registers) {
  const cpu = machine.cpu;
  machine.writeMemory(CODE_AT, Uint8Array.from([0xcd, vector, 0xfa, 0xf4])); // int n; cli; hlt
  cpu.loadSegmentReal(Seg.SS, 0);
  cpu.setReg32(Reg.SP, STACK_TOP);
  cpu.loadSegmentReal(Seg.ES, regs.es ?? 0);
  cpu.loadSegmentReal(Seg.DS, regs.ds ?? 0);
  cpu.setReg32(Reg.AX, regs.eax ?? 0);
  cpu.setReg32(Reg.BX, regs.ebx ?? 0);
  cpu.setReg32(Reg.CX, regs.ecx ?? 0);
  cpu.setReg32(Reg.DX, regs.edx ?? 0);
  cpu.setReg32(Reg.SI, regs.esi ?? 0);
  cpu.setReg32(Reg.DI, regs.edi ?? 0);
  cpu.setFlags(0x0002); // IF=0: the BIOS's 18.2 Hz tick stays out of the way
  cpu.jumpReal(0, CODE_AT);
  const stop = await machine.run({ maxVirtualNs: machine.clock.now() + 1e9 });
  return {
    stop,
    flags: cpu.getFlags(),
    carry: (cpu.getFlags() & 1) !== 0,
    zero: (cpu.getFlags() & 0x40) !== 0,
    eax: cpu.getReg32(Reg.AX) >>> 0,
    ebx: cpu.getReg32(Reg.BX) >>> 0,
    ecx: cpu.getReg32(Reg.CX) >>> 0,
    edx: cpu.getReg32(Reg.DX) >>> 0,
    ah: cpu.getReg8(4),
    al: cpu.getReg8(0),
    es: cpu.getSegmentSelector(Seg.ES),
  };
}
