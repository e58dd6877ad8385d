import { type Cpu, FLAG_IF, Reg, Seg } from "../cpu/api.js";
import { SECTOR_SIZE } from "../disk-overlay.js";
import { AH, AL, BiosCall, type BiosMachine, STATUS_UNSUPPORTED } from "./context.js";
import { DiskServices } from "./disk.js";
import {
  BDA_CHAR_HEIGHT,
  BDA_COM_PORTS,
  BDA_CRTC_BASE,
  BDA_EBDA_SEGMENT,
  BDA_EQUIPMENT,
  BDA_HARD_DISKS,
  BDA_KBD_BUFFER,
  BDA_KBD_BUFFER_END,
  BDA_KBD_BUFFER_START,
  BDA_KBD_FLAGS,
  BDA_KBD_HEAD,
  BDA_KBD_TAIL,
  BDA_MEMORY_KIB,
  BDA_VIDEO_COLUMNS,
  BDA_VIDEO_PAGE_SIZE,
  BDA_VIDEO_ROWS,
  BIOS_DATE_OFFSET,
  BOOT_DRIVE,
  BOOT_SECTOR_ADDRESS,
  CONFIG_TABLE_OFFSET,
  CONVENTIONAL_KIB,
  DUMMY_IRET_OFFSET,
  EBDA_BASE,
  EBDA_KIB,
  EBDA_SEGMENT,
  HC_POST,
  HYPERCALL,
  MODEL_BYTE_OFFSET,
  POST_OFFSET,
  RESET_VECTOR_OFFSET,
  ROM_BASE,
  ROM_SEGMENT,
  STUB_OFFSET,
  STUB_SIZE,
} from "./layout.js";
import { buildMpTable, MP_FLOATING_POINTER_OFFSET } from "./mptable.js";
import { CONFIG_TABLE, SystemServices } from "./system.js";
import { TimeServices } from "./time.js";
import { VideoServices } from "./video.js";

/**
 * The built-in BIOS, written in TypeScript: no ROM image. At reset it
 * writes a small "ROM" into the F segment — one stub per interrupt vector,
 * `0F 3F n` (the hypercall the CPU traps to `CpuHost.hypercall`) followed
 * by IRET — plus the interrupt vector table, the BIOS data area and the
 * EBDA; the reset vector jumps to a POST stub whose hypercall loads the
 * boot sector. Services report CF/ZF by editing the FLAGS image on the
 * stack, which the stub's IRET restores.
 *
 * Hardware interrupts (IRQ 0-15 at vectors 08h-0Fh and 70h-77h) are
 * acknowledged with an EOI through the PIC's ports; IRQ 0 also refreshes
 * the BDA tick count and calls int 1Ch, as on a PC.
 */

const IRET = 0xcf;
const CLI = 0xfa;
const HLT = 0xf4;
const JMP_SHORT = 0xeb;

/** Vectors whose stub calls into TypeScript. */
const SERVICE_VECTORS = [0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a];
const MASTER_IRQ_VECTORS = [0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f];
const SLAVE_IRQ_VECTORS = [0x70, 0x71, 0x72, 0x73, 0x74, 0x75, 0x76, 0x77];
const TIMER_VECTOR = 0x08;
const USER_TIMER_VECTOR = 0x1c;
const RTC_VECTOR = 0x70;

/** Virtual time the BIOS lets pass each time the guest polls for a key (GRUB's menu loop never halts). */
export const KEY_POLL_SKIP_NS = 1_000_000;

/** A BIOS call the guest made that the BIOS does not implement (for the boot report). */
export interface UnhandledCall {
  vector: number;
  ax: number;
}

export class Bios {
  readonly video: VideoServices;
  readonly disk: DiskServices;
  readonly system: SystemServices;
  readonly time: TimeServices;
  /** Distinct unimplemented calls seen (vector, AX), in order. */
  readonly unhandled: UnhandledCall[] = [];
  /** Calls per vector (diagnostics). */
  readonly callCounts = new Map<number, number>();

  constructor(private readonly machine: BiosMachine) {
    this.video = new VideoServices(machine);
    this.disk = new DiskServices(machine);
    this.system = new SystemServices(machine);
    this.time = new TimeServices(machine);
  }

  /** Writes the ROM, IVT, BDA and EBDA and programs the PIC/PIT as a BIOS POST does. */
  install(): void {
    this.writeRom();
    this.writeIvt();
    this.writeDataAreas();
    this.initChipset();
    this.video.reset();
    this.time.updateTicks();
  }

  private writeRom(): void {
    const rom = new Uint8Array(0x10000);
    rom[DUMMY_IRET_OFFSET] = IRET;
    for (let vector = 0; vector < 256; vector++) {
      const at = STUB_OFFSET + vector * STUB_SIZE;
      if (vector === TIMER_VECTOR) {
        // 0F 3F 08 ; INT 1Ch ; IRET — the tick update and EOI happen in the hypercall.
        rom.set([...HYPERCALL, vector, 0xcd, USER_TIMER_VECTOR, IRET], at);
      } else if (vector === 0x18 || vector === 0x19) {
        // Boot services never return on success; on failure the CPU stops here.
        rom.set([...HYPERCALL, vector, CLI, HLT, JMP_SHORT, 0xfc], at);
      } else {
        rom.set([...HYPERCALL, vector, IRET], at);
      }
    }
    rom.set([...HYPERCALL, HC_POST, CLI, HLT, JMP_SHORT, 0xfc], POST_OFFSET);
    rom.set(CONFIG_TABLE, CONFIG_TABLE_OFFSET);
    if (this.machine.apicEnabled)
      rom.set(buildMpTable(ROM_BASE + MP_FLOATING_POINTER_OFFSET), MP_FLOATING_POINTER_OFFSET);
    // Reset vector: JMP FAR F000:E05B.
    rom.set(
      [0xea, POST_OFFSET & 0xff, POST_OFFSET >> 8, ROM_SEGMENT & 0xff, ROM_SEGMENT >> 8],
      RESET_VECTOR_OFFSET,
    );
    rom.set([...Buffer.from("01/01/24", "latin1")], BIOS_DATE_OFFSET);
    rom[MODEL_BYTE_OFFSET] = 0xfc;
    this.machine.writeMemory(ROM_BASE, rom);
  }

  private stubFor(vector: number): number {
    const handled =
      SERVICE_VECTORS.includes(vector) ||
      MASTER_IRQ_VECTORS.includes(vector) ||
      SLAVE_IRQ_VECTORS.includes(vector);
    return handled ? STUB_OFFSET + vector * STUB_SIZE : DUMMY_IRET_OFFSET;
  }

  private writeIvt(): void {
    const memory = this.machine.memory;
    for (let vector = 0; vector < 256; vector++) {
      memory.write16(vector * 4, this.stubFor(vector));
      memory.write16(vector * 4 + 2, ROM_SEGMENT);
    }
  }

  private writeDataAreas(): void {
    const memory = this.machine.memory;
    this.machine.writeMemory(0x400, new Uint8Array(0x100));
    this.machine.writeMemory(EBDA_BASE, new Uint8Array(EBDA_KIB * 1024));
    memory.write16(BDA_COM_PORTS, 0x3f8);
    memory.write16(BDA_EBDA_SEGMENT, EBDA_SEGMENT);
    // Equipment: maths coprocessor (bit 1), 80×25 colour (bits 5:4 = 10), one serial port (bits 11:9).
    memory.write16(BDA_EQUIPMENT, 0x0002 | 0x0020 | (1 << 9));
    memory.write16(BDA_MEMORY_KIB, CONVENTIONAL_KIB);
    memory.write8(BDA_KBD_FLAGS, 0);
    memory.write16(BDA_KBD_HEAD, BDA_KBD_BUFFER - 0x400);
    memory.write16(BDA_KBD_TAIL, BDA_KBD_BUFFER - 0x400);
    memory.write16(BDA_KBD_BUFFER_START, BDA_KBD_BUFFER - 0x400);
    memory.write16(BDA_KBD_BUFFER_END, BDA_KBD_BUFFER - 0x400 + 32);
    memory.write16(BDA_VIDEO_COLUMNS, 80);
    memory.write16(BDA_VIDEO_PAGE_SIZE, 80 * 25 * 2);
    memory.write16(BDA_CRTC_BASE, 0x3d4);
    memory.write8(BDA_VIDEO_ROWS, 24);
    memory.write8(BDA_CHAR_HEIGHT, 16);
    memory.write8(BDA_HARD_DISKS, this.machine.disk ? 1 : 0);
    memory.write16(EBDA_BASE, EBDA_KIB); // the EBDA's first word is its size in KiB
  }

  /** PIC vector bases 08h/70h with IRQ 0 and the cascade open, PIT counter 0 at 18.2 Hz. */
  private initChipset(): void {
    const io = this.machine.io;
    const icw = (base: number, vector: number, cascade: number, mask: number) => {
      io.write(base, 1, 0x11); // ICW1: edge, cascade, ICW4 follows
      io.write(base + 1, 1, vector); // ICW2
      io.write(base + 1, 1, cascade); // ICW3
      io.write(base + 1, 1, 0x01); // ICW4: 8086 mode
      io.write(base + 1, 1, mask); // OCW1
    };
    icw(0x20, 0x08, 0x04, 0xfa); // master: IRQ 0 and 2 unmasked
    icw(0xa0, 0x70, 0x02, 0xff);
    io.write(0x43, 1, 0x36); // counter 0, LSB then MSB, mode 3
    io.write(0x40, 1, 0x00);
    io.write(0x40, 1, 0x00); // count 0 = 65536: 18.2 Hz
    this.machine.setA20(true);
  }

  /** The `0F 3F n` hypercall: `service` is the vector (or HC_POST). */
  hypercall(service: number, cpu: Cpu): void | Promise<void> {
    this.callCounts.set(service, (this.callCounts.get(service) ?? 0) + 1);
    const call = new BiosCall(cpu, this.machine.memory);
    if (MASTER_IRQ_VECTORS.includes(service) || SLAVE_IRQ_VECTORS.includes(service)) {
      this.hardwareInterrupt(service);
      return;
    }
    switch (service) {
      case HC_POST:
        return this.boot(cpu);
      case 0x10:
        this.video.handle(call);
        return;
      case 0x11:
        this.system.equipment(call);
        return;
      case 0x12:
        this.system.conventionalMemory(call);
        return;
      case 0x13:
        return this.disk.handle(call);
      case 0x14:
        this.serial(call);
        return;
      case 0x15: {
        const ax = call.ax;
        this.system.handle(call);
        if (call.ah === STATUS_UNSUPPORTED && this.carrySet(cpu)) this.noteUnhandled(service, ax);
        return;
      }
      case 0x16:
        this.keyboard(call);
        return;
      case 0x17:
        call.set8(AH, 0x30); // printer: selected, not busy... and no paper
        return;
      case 0x18:
        this.machine.bootFailure("the boot code called int 18h (boot failure)");
        return;
      case 0x19:
        return this.boot(cpu);
      case 0x1a:
        this.time.handle(call);
        return;
      default:
        this.noteUnhandled(service, cpu.getReg16(Reg.AX));
    }
  }

  /** CF in the FLAGS image the stub's IRET will restore. */
  private carrySet(cpu: Cpu): boolean {
    const sp = cpu.getReg16(Reg.SP);
    return (this.machine.memory.read16(cpu.getSegmentBase(Seg.SS) + ((sp + 4) & 0xffff)) & 1) !== 0;
  }

  private noteUnhandled(vector: number, ax: number): void {
    if (this.unhandled.length < 64 && !this.unhandled.some((u) => u.vector === vector && u.ax === ax)) {
      this.unhandled.push({ vector, ax });
    }
  }

  private hardwareInterrupt(vector: number): void {
    const io = this.machine.io;
    if (vector === TIMER_VECTOR) this.time.updateTicks();
    if (vector === RTC_VECTOR) {
      io.write(0x70, 1, 0x0c);
      io.read(0x71, 1); // reading register C acknowledges the RTC
    }
    if (vector >= 0x70) io.write(0xa0, 1, 0x20); // EOI to the slave first
    io.write(0x20, 1, 0x20);
  }

  /** int 14h: COM1 through the UART's ports. */
  private serial(call: BiosCall): void {
    const io = this.machine.io;
    if (call.dx !== 0) {
      call.set8(AH, 0x80); // only COM1
      return;
    }
    switch (call.ah) {
      case 0x01:
        io.write(0x3f8, 1, call.al);
        call.set8(AH, io.read(0x3fd, 1));
        return;
      case 0x02: {
        const lsr = io.read(0x3fd, 1);
        if (lsr & 0x01) {
          call.set8(AL, io.read(0x3f8, 1));
          call.set8(AH, lsr & 0x1e);
        } else {
          call.set8(AH, 0x80 | (lsr & 0x1e)); // timeout
        }
        return;
      }
      default:
        call.set8(AH, io.read(0x3fd, 1));
        call.set8(AL, io.read(0x3fe, 1));
    }
  }

  /** int 16h: no key is ever pressed. Polling lets virtual time pass (poll skip). */
  private keyboard(call: BiosCall): void {
    switch (call.ah) {
      case 0x00:
      case 0x10:
        // A blocking read would wait forever; answer a NUL key so the guest moves on.
        this.machine.clock.skip(KEY_POLL_SKIP_NS);
        call.set16(Reg.AX, 0);
        return;
      case 0x01:
      case 0x11:
        this.machine.clock.skip(KEY_POLL_SKIP_NS);
        call.set16(Reg.AX, 0);
        call.setZero(true);
        return;
      case 0x02:
      case 0x12:
        call.set8(AL, this.machine.memory.read8(BDA_KBD_FLAGS));
        return;
      case 0x05:
        call.set8(AL, 1); // buffer full: keys cannot be stuffed
        return;
      default:
        return;
    }
  }

  /**
   * Loads the boot disk's first sector at 0000:7C00 and jumps to it with
   * DL = 80h, as a BIOS does at the end of POST (and for int 19h).
   */
  async boot(cpu: Cpu): Promise<void> {
    const disk = this.machine.disk;
    if (!disk || disk.virtualSize < SECTOR_SIZE) {
      this.machine.bootFailure(disk ? "the boot disk is smaller than one sector" : "no boot disk");
      return;
    }
    const mbr = await disk.read(0, SECTOR_SIZE);
    if (mbr[510] !== 0x55 || mbr[511] !== 0xaa) {
      this.machine.bootFailure("the boot disk's first sector has no 55 AA boot signature");
      return;
    }
    this.machine.writeMemory(BOOT_SECTOR_ADDRESS, mbr);
    for (const seg of [Seg.DS, Seg.ES, Seg.SS, Seg.FS, Seg.GS]) cpu.loadSegmentReal(seg, 0);
    cpu.setReg32(Reg.SP, BOOT_SECTOR_ADDRESS);
    cpu.setReg32(Reg.AX, 0xaa55);
    cpu.setReg32(Reg.BX, 0);
    cpu.setReg32(Reg.CX, 0);
    cpu.setReg32(Reg.DX, BOOT_DRIVE);
    cpu.setReg32(Reg.SI, 0);
    cpu.setReg32(Reg.DI, 0);
    cpu.setReg32(Reg.BP, 0);
    cpu.setFlags(0x0002 | FLAG_IF);
    cpu.jumpReal(0, BOOT_SECTOR_ADDRESS);
  }
}
