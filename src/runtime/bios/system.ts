import { Reg, Seg } from "../cpu/api.js";
import { IOAPIC_BASE, LAPIC_BASE } from "../devices/apic-constants.js";
import { AL, type BiosCall, type BiosMachine, STATUS_UNSUPPORTED } from "./context.js";
import {
  BDA_EQUIPMENT,
  CONFIG_TABLE_OFFSET,
  CONVENTIONAL_KIB,
  EBDA_BASE,
  EBDA_SEGMENT,
  ROM_BASE,
  ROM_SEGMENT,
  ROM_SIZE,
} from "./layout.js";

/**
 * int 11h (equipment), int 12h (conventional memory) and int 15h (system
 * services): the memory map calls E820h (ACPI 6.x §15.1 "INT 15H, E820H -
 * Query System Address Map"), E801h and 88h, the A20 gate 2400h-2403h,
 * the system configuration table C0h, EBDA C1h, wait 86h and the
 * protected-mode block move 87h.
 */

export const E820_RAM = 1;
export const E820_RESERVED = 2;
const SMAP = 0x534d4150; // "SMAP"
const E820_ENTRY_SIZE = 20;

export interface E820Entry {
  base: number;
  length: number;
  type: number;
}

/** The PC memory map: low RAM below the EBDA, reserved EBDA/ROM, RAM from 1 MiB. */
export function e820Map(ramSize: number, apic = false): E820Entry[] {
  const entries: E820Entry[] = [
    { base: 0, length: EBDA_BASE, type: E820_RAM },
    { base: EBDA_BASE, length: 0xa0000 - EBDA_BASE, type: E820_RESERVED },
    { base: ROM_BASE, length: ROM_SIZE, type: E820_RESERVED },
  ];
  if (ramSize > 0x100000) entries.push({ base: 0x100000, length: ramSize - 0x100000, type: E820_RAM });
  if (apic) {
    entries.push({ base: IOAPIC_BASE, length: 0x1000, type: E820_RESERVED });
    entries.push({ base: LAPIC_BASE, length: 0x1000, type: E820_RESERVED });
  }
  return entries;
}

// A20 service status codes.
const A20_SECURE_MODE = 0x86;

export class SystemServices {
  constructor(private readonly machine: BiosMachine) {}

  equipment(call: BiosCall): void {
    call.set16(Reg.AX, this.machine.memory.read16(BDA_EQUIPMENT));
  }

  conventionalMemory(call: BiosCall): void {
    call.set16(Reg.AX, CONVENTIONAL_KIB);
  }

  /** KiB of RAM between 1 MiB and 16 MiB, and 64 KiB blocks above 16 MiB (E801h). */
  private extendedSizes(): { below16MKiB: number; above16MBlocks: number } {
    const ram = Math.min(this.machine.ramSize, 0xfec00000);
    const below16MKiB = Math.max(0, Math.min(ram, 16 * 1024 * 1024) - 0x100000) / 1024;
    const above16MBlocks = Math.max(0, ram - 16 * 1024 * 1024) / 65536;
    return { below16MKiB, above16MBlocks: Math.floor(above16MBlocks) };
  }

  handle(call: BiosCall): void {
    const ax = call.ax;
    if (ax === 0xe820 && call.get32(Reg.DX) === SMAP) {
      this.e820(call);
      return;
    }
    if (ax === 0xe801 || ax === 0xe881) {
      const { below16MKiB, above16MBlocks } = this.extendedSizes();
      call.set32(Reg.AX, below16MKiB);
      call.set32(Reg.CX, below16MKiB);
      call.set32(Reg.BX, above16MBlocks);
      call.set32(Reg.DX, above16MBlocks);
      call.setCarry(false);
      return;
    }
    switch (call.ah) {
      case 0x24:
        this.a20(call);
        return;
      case 0x86:
        // Wait CX:DX microseconds: virtual time simply jumps ahead.
        this.machine.clock.skip(((call.cx << 16) | call.dx) * 1000);
        call.ok(0);
        return;
      case 0x87:
        this.blockMove(call);
        return;
      case 0x88: {
        const kib = Math.min(0xfc00, Math.max(0, this.machine.ramSize - 0x100000) / 1024);
        call.set16(Reg.AX, kib);
        call.setCarry(false);
        return;
      }
      case 0x90: // device busy / interrupt complete: nothing to wait for
      case 0x91:
        call.ok(0);
        return;
      case 0xc0:
        call.cpu.loadSegmentReal(Seg.ES, ROM_SEGMENT);
        call.set16(Reg.BX, CONFIG_TABLE_OFFSET);
        call.ok(0);
        return;
      case 0xc1:
        call.cpu.loadSegmentReal(Seg.ES, EBDA_SEGMENT);
        call.setCarry(false);
        return;
      default:
        call.fail(STATUS_UNSUPPORTED);
    }
  }

  private e820(call: BiosCall): void {
    const entries = e820Map(this.machine.ramSize, this.machine.apicEnabled);
    const index = call.get32(Reg.BX);
    const entry = entries[index];
    if (!entry || call.get32(Reg.CX) < E820_ENTRY_SIZE) {
      call.fail(STATUS_UNSUPPORTED);
      return;
    }
    const memory = this.machine.memory;
    const at = call.address(Seg.ES, call.di);
    memory.write32(at, entry.base >>> 0);
    memory.write32(at + 4, Math.floor(entry.base / 0x1_0000_0000));
    memory.write32(at + 8, entry.length >>> 0);
    memory.write32(at + 12, Math.floor(entry.length / 0x1_0000_0000));
    memory.write32(at + 16, entry.type);
    call.set32(Reg.AX, SMAP);
    call.set32(Reg.CX, E820_ENTRY_SIZE);
    call.set32(Reg.BX, index + 1 < entries.length ? index + 1 : 0);
    call.setCarry(false);
  }

  private a20(call: BiosCall): void {
    switch (call.al) {
      case 0x00:
      case 0x01:
        this.machine.setA20(call.al === 0x01);
        call.ok(0);
        return;
      case 0x02:
        call.set8(AL, this.machine.getA20() ? 1 : 0);
        call.ok(0);
        return;
      case 0x03:
        call.set16(Reg.BX, 0x0003); // supported via the keyboard controller and port 0x92
        call.ok(0);
        return;
      default:
        call.fail(A20_SECURE_MODE);
    }
  }

  /** AH=87h: copy CX words between the bases of GDT entries 2 and 3 at ES:SI. */
  private blockMove(call: BiosCall): void {
    const memory = this.machine.memory;
    const gdt = call.address(Seg.ES, call.si);
    const base = (descriptor: number) =>
      (memory.read16(descriptor + 2) |
        (memory.read8(descriptor + 4) << 16) |
        (memory.read8(descriptor + 7) << 24)) >>>
      0;
    const source = base(gdt + 0x10);
    const dest = base(gdt + 0x18);
    const length = call.cx * 2;
    if (source + length > this.machine.ramSize || dest + length > this.machine.ramSize) {
      call.fail(0x02);
      return;
    }
    this.machine.writeMemory(dest, this.machine.readMemory(source, length).slice());
    call.ok(0);
  }
}

/** int 15h AH=C0h system configuration table: length, model FCh, feature bytes. */
export const CONFIG_TABLE = [
  0x08,
  0x00, // 8 bytes follow
  0xfc, // model: AT
  0x00, // submodel
  0x00, // BIOS revision
  0x74, // feature 1: EBDA allocated, RTC present, int 15h/4Fh called, second 8259
  0x00,
  0x00,
  0x00,
  0x00,
];
