import type { DiskWriterHandle } from "../../formats/disk.js";
import type { IoBus, MemoryBus } from "../bus.js";
import { type Cpu, FLAG_CF, FLAG_ZF, Reg, Seg } from "../cpu/api.js";
import type { VirtualClock } from "../devices/clock.js";
import type { PciBus } from "../devices/pci.js";
import type { Rtc } from "../devices/rtc.js";
import type { VgaText } from "../devices/vga.js";
import { linear } from "./layout.js";

/** What the BIOS needs from the machine it runs in. */
export interface BiosMachine {
  readonly memory: MemoryBus;
  readonly io: IoBus;
  readonly clock: VirtualClock;
  readonly ramSize: number;
  readonly disk: DiskWriterHandle | undefined;
  readonly vga: VgaText;
  readonly pci: PciBus;
  readonly rtc: Rtc;
  /** Local APIC and I/O APIC present: the BIOS publishes an MP table and reserves their pages. */
  readonly apicEnabled: boolean;
  getA20(): boolean;
  setA20(enabled: boolean): void;
  /** A character the BIOS put on the screen (int 10h), for the screen transcript. */
  screenOutput(byte: number): void;
  /** The BIOS gave up booting (no bootable disk, int 18h). */
  bootFailure(reason: string): void;
  /** DMA-style copy into guest RAM (invalidates decoded code). */
  writeMemory(address: number, data: Uint8Array): void;
  readMemory(address: number, length: number): Uint8Array;
}

// 8-bit register numbers (getReg8/setReg8).
export const AL = 0;
export const CL = 1;
export const DL = 2;
export const BL = 3;
export const AH = 4;
export const CH = 5;
export const DH = 6;
export const BH = 7;

/**
 * Register access for one BIOS call, plus the FLAGS image the stub's IRET
 * will restore: a service reports CF/ZF by editing that image on the stack
 * (SS:SP+4 at the hypercall, above the return IP and CS), as real BIOSes do.
 */
export class BiosCall {
  constructor(
    readonly cpu: Cpu,
    private readonly memory: MemoryBus,
  ) {}

  get ah(): number {
    return this.cpu.getReg8(AH);
  }
  get al(): number {
    return this.cpu.getReg8(AL);
  }
  get ax(): number {
    return this.cpu.getReg16(Reg.AX);
  }
  get bx(): number {
    return this.cpu.getReg16(Reg.BX);
  }
  get cx(): number {
    return this.cpu.getReg16(Reg.CX);
  }
  get dx(): number {
    return this.cpu.getReg16(Reg.DX);
  }
  get si(): number {
    return this.cpu.getReg16(Reg.SI);
  }
  get di(): number {
    return this.cpu.getReg16(Reg.DI);
  }
  reg8(reg: number): number {
    return this.cpu.getReg8(reg);
  }
  set8(reg: number, value: number): void {
    this.cpu.setReg8(reg, value & 0xff);
  }
  set16(reg: number, value: number): void {
    this.cpu.setReg16(reg, value & 0xffff);
  }
  set32(reg: number, value: number): void {
    this.cpu.setReg32(reg, value >>> 0);
  }
  get32(reg: number): number {
    return this.cpu.getReg32(reg) >>> 0;
  }
  segment(seg: number): number {
    return this.cpu.getSegmentSelector(seg);
  }
  /** Linear address of seg:offset (real mode). */
  address(seg: number, offset: number): number {
    return linear(this.cpu.getSegmentSelector(seg), offset);
  }

  private flagsAddress(): number {
    const sp = this.cpu.getReg16(Reg.SP);
    return this.cpu.getSegmentBase(Seg.SS) + ((sp + 4) & 0xffff);
  }

  private setReturnFlag(mask: number, on: boolean): void {
    const at = this.flagsAddress();
    const flags = this.memory.read16(at);
    this.memory.write16(at, on ? flags | mask : flags & ~mask);
  }

  /** Success: CF clear (and AH = `status` when given). */
  ok(status?: number): void {
    if (status !== undefined) this.set8(AH, status);
    this.setReturnFlag(FLAG_CF, false);
  }

  /** Failure: CF set, AH = status. */
  fail(status: number): void {
    this.set8(AH, status);
    this.setReturnFlag(FLAG_CF, true);
  }

  setCarry(on: boolean): void {
    this.setReturnFlag(FLAG_CF, on);
  }

  setZero(on: boolean): void {
    this.setReturnFlag(FLAG_ZF, on);
  }
}

/** Status returned in AH for a function the BIOS does not implement. */
export const STATUS_UNSUPPORTED = 0x86;
