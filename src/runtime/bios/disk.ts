import { Reg, Seg } from "../cpu/api.js";
import { SECTOR_SIZE } from "../disk-overlay.js";
import { AH, AL, BH, type BiosCall, type BiosMachine, BL, CH, CL, DH, DL } from "./context.js";
import { BDA_DISK_STATUS, BOOT_DRIVE, linear } from "./layout.js";

/**
 * int 13h on the boot disk (drive 0x80): CHS calls 00h-04h, 08h, 15h
 * (IBM PC/AT BIOS) and the Enhanced Disk Drive extensions 41h-44h, 47h,
 * 48h (Phoenix EDD 3.0, T13/1572D). CHS addressing uses the usual
 * LBA-assisted translation (63 sectors, 16-255 heads, ≤ 1024 cylinders).
 */

// Status codes (AH).
const OK = 0x00;
const BAD_COMMAND = 0x01;
const SECTOR_NOT_FOUND = 0x04;
const TIMEOUT = 0x80;
const INVALID_MEDIA = 0x0c;

// Disk address packet (EDD 3.0 §7.1).
const DAP_SIZE = 0x00;
const DAP_COUNT = 0x02;
const DAP_BUFFER_OFFSET = 0x04;
const DAP_BUFFER_SEGMENT = 0x06;
const DAP_LBA = 0x08;
const DAP_FLAT_BUFFER = 0x10; // 64-bit flat address when the segment:offset is FFFF:FFFF

// Drive parameters result buffer (EDD 3.0 §7.2, function 48h).
const PARAMS_SIZE = 0x00;
const PARAMS_FLAGS = 0x02;
const PARAMS_CYLINDERS = 0x04;
const PARAMS_HEADS = 0x08;
const PARAMS_SECTORS_PER_TRACK = 0x0c;
const PARAMS_TOTAL_SECTORS = 0x10;
const PARAMS_BYTES_PER_SECTOR = 0x18;
const PARAMS_DPTE = 0x1a;
const PARAMS_FLAG_GEOMETRY_VALID = 0x02;

/** EDD version 3.0 and "fixed disk access subset" (42h-44h, 47h, 48h). */
const EDD_VERSION = 0x30;
const EDD_SUBSET_FIXED_DISK = 0x0001;

export interface Geometry {
  cylinders: number;
  heads: number;
  sectors: number;
}

/** LBA-assisted translation: the geometry a BIOS shows for a disk of `totalSectors`. */
export function biosGeometry(totalSectors: number): Geometry {
  const sectors = 63;
  let heads = 16;
  for (const candidate of [16, 32, 64, 128, 255]) {
    heads = candidate;
    if (totalSectors / (candidate * sectors) <= 1024) break;
  }
  const cylinders = Math.max(1, Math.min(1024, Math.floor(totalSectors / (heads * sectors))));
  return { cylinders, heads, sectors };
}

export class DiskServices {
  constructor(private readonly machine: BiosMachine) {}

  private get totalSectors(): number {
    const disk = this.machine.disk;
    return disk ? Math.floor(disk.virtualSize / SECTOR_SIZE) : 0;
  }

  private finish(call: BiosCall, status: number): void {
    this.machine.memory.write8(BDA_DISK_STATUS, status);
    if (status === OK) call.ok(OK);
    else call.fail(status);
  }

  async handle(call: BiosCall): Promise<void> {
    const drive = call.reg8(DL);
    const fn = call.ah;
    if (drive !== BOOT_DRIVE || !this.machine.disk) {
      if (fn === 0x15 && drive >= 0x80) {
        call.set8(AH, 0); // "no such drive" is a successful answer to 15h
        call.setCarry(false);
        return;
      }
      this.finish(call, drive < 0x80 ? TIMEOUT : BAD_COMMAND);
      return;
    }
    switch (fn) {
      case 0x00: // reset
      case 0x0d: // alternate reset
      case 0x10: // test ready
      case 0x11: // recalibrate
      case 0x47: // extended seek
        this.finish(call, OK);
        return;
      case 0x01: // status of last operation
        call.set8(AL, this.machine.memory.read8(BDA_DISK_STATUS));
        call.ok(OK);
        return;
      case 0x02:
        await this.chsTransfer(call, false);
        return;
      case 0x03:
        await this.chsTransfer(call, true);
        return;
      case 0x04: // verify: nothing to check on a virtual disk
        this.finish(call, this.chsLba(call) === undefined ? SECTOR_NOT_FOUND : OK);
        return;
      case 0x08:
        this.parameters(call);
        return;
      case 0x15: {
        const total = this.totalSectors;
        call.set8(AH, 0x03); // fixed disk present
        call.set16(Reg.CX, total >>> 16);
        call.set16(Reg.DX, total & 0xffff);
        call.setCarry(false);
        return;
      }
      case 0x41:
        if (call.bx !== 0x55aa) {
          this.finish(call, BAD_COMMAND);
          return;
        }
        call.set16(Reg.BX, 0xaa55);
        call.set8(AH, EDD_VERSION);
        call.set16(Reg.CX, EDD_SUBSET_FIXED_DISK);
        call.setCarry(false);
        return;
      case 0x42:
        await this.extendedTransfer(call, false);
        return;
      case 0x43:
        await this.extendedTransfer(call, true);
        return;
      case 0x44: // extended verify
        this.finish(call, OK);
        return;
      case 0x48:
        this.extendedParameters(call);
        return;
      default:
        this.finish(call, BAD_COMMAND);
    }
  }

  /** LBA of the CHS address in CX/DH, or undefined when it is outside the geometry. */
  private chsLba(call: BiosCall): number | undefined {
    const g = biosGeometry(this.totalSectors);
    const cl = call.reg8(CL);
    const cylinder = call.reg8(CH) | ((cl & 0xc0) << 2);
    const sector = cl & 0x3f;
    const head = call.reg8(DH);
    if (sector === 0 || sector > g.sectors || head >= g.heads || cylinder >= g.cylinders) return undefined;
    return (cylinder * g.heads + head) * g.sectors + sector - 1;
  }

  private async chsTransfer(call: BiosCall, write: boolean): Promise<void> {
    const count = call.al;
    const lba = this.chsLba(call);
    if (lba === undefined || count === 0) {
      call.set8(AL, 0);
      this.finish(call, count === 0 ? BAD_COMMAND : SECTOR_NOT_FOUND);
      return;
    }
    const buffer = call.address(Seg.ES, call.bx);
    const status = await this.transfer(lba, count, buffer, write);
    call.set8(AL, status === OK ? count : 0);
    this.finish(call, status);
  }

  private async extendedTransfer(call: BiosCall, write: boolean): Promise<void> {
    const memory = this.machine.memory;
    const dap = call.address(Seg.DS, call.si);
    const size = memory.read8(dap + DAP_SIZE);
    if (size < 0x10) {
      this.finish(call, BAD_COMMAND);
      return;
    }
    const count = memory.read16(dap + DAP_COUNT);
    const offset = memory.read16(dap + DAP_BUFFER_OFFSET);
    const segment = memory.read16(dap + DAP_BUFFER_SEGMENT);
    let buffer = linear(segment, offset);
    if (segment === 0xffff && offset === 0xffff && size >= 0x18) {
      buffer =
        memory.read32(dap + DAP_FLAT_BUFFER) + memory.read32(dap + DAP_FLAT_BUFFER + 4) * 0x1_0000_0000;
    }
    const lba = memory.read32(dap + DAP_LBA) + memory.read32(dap + DAP_LBA + 4) * 0x1_0000_0000;
    const status = count === 0 ? OK : await this.transfer(lba, count, buffer, write);
    if (status !== OK) memory.write16(dap + DAP_COUNT, 0);
    this.finish(call, status);
  }

  private async transfer(lba: number, count: number, address: number, write: boolean): Promise<number> {
    const disk = this.machine.disk!;
    if (lba + count > this.totalSectors) return SECTOR_NOT_FOUND;
    const length = count * SECTOR_SIZE;
    if (address + length > this.machine.ramSize) return INVALID_MEDIA;
    if (write) {
      await disk.write(lba * SECTOR_SIZE, Buffer.from(this.machine.readMemory(address, length)));
    } else {
      const data = await disk.read(lba * SECTOR_SIZE, length);
      this.machine.writeMemory(address, data);
    }
    return OK;
  }

  private parameters(call: BiosCall): void {
    const g = biosGeometry(this.totalSectors);
    const maxCylinder = g.cylinders - 1;
    call.set8(CH, maxCylinder & 0xff);
    call.set8(CL, (g.sectors & 0x3f) | ((maxCylinder >> 2) & 0xc0));
    call.set8(DH, g.heads - 1);
    call.set8(DL, 1); // number of hard disks
    call.set8(BL, 0);
    call.set8(BH, 0);
    call.set16(Reg.AX, 0);
    this.finish(call, OK);
  }

  private extendedParameters(call: BiosCall): void {
    const memory = this.machine.memory;
    const buffer = call.address(Seg.DS, call.si);
    const size = memory.read16(buffer + PARAMS_SIZE);
    if (size < 0x1a) {
      this.finish(call, BAD_COMMAND);
      return;
    }
    const total = this.totalSectors;
    const g = biosGeometry(total);
    memory.write16(buffer + PARAMS_SIZE, size >= 0x1e ? 0x1e : 0x1a);
    memory.write16(buffer + PARAMS_FLAGS, PARAMS_FLAG_GEOMETRY_VALID);
    memory.write32(buffer + PARAMS_CYLINDERS, g.cylinders);
    memory.write32(buffer + PARAMS_HEADS, g.heads);
    memory.write32(buffer + PARAMS_SECTORS_PER_TRACK, g.sectors);
    memory.write32(buffer + PARAMS_TOTAL_SECTORS, total >>> 0);
    memory.write32(buffer + PARAMS_TOTAL_SECTORS + 4, Math.floor(total / 0x1_0000_0000));
    memory.write16(buffer + PARAMS_BYTES_PER_SECTOR, SECTOR_SIZE);
    if (size >= 0x1e) memory.write32(buffer + PARAMS_DPTE, 0xffffffff); // no device parameter table
    this.finish(call, OK);
  }
}
