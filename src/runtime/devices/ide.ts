import type { DiskReader, DiskWriterHandle } from "../../formats/disk.js";
import type { IoBus, IrqLine, PortHandler } from "../bus.js";
import { SECTOR_SIZE } from "../disk-overlay.js";
import { type PciBus, PciFunction } from "./pci.js";
import { type DiskControllerHost, stopHostCpu } from "./virtio-pci.js";

/**
 * A PIIX3-style legacy IDE controller with one ATA disk: the primary
 * channel's task file at 0x1F0-0x1F7, its control block at 0x3F6, IRQ 14,
 * PIO only (ATA/ATAPI-7 vol. 1 §6, "Register and command protocols";
 * commands from vol. 1 §6.x and the ATA8-ACS command set). The PCI
 * function 00:01.1 (8086:7010, compatibility mode, no bus-master BAR) is
 * what Linux's ata_piix binds to; with BAR4 unassigned it falls back to
 * PIO. The disk is the machine's copy-on-write overlay, so writes never
 * reach the appliance file.
 *
 * Disk I/O is asynchronous: a command that moves data sets BSY, the
 * transfer runs, and completion sets DRQ/DRDY and raises IRQ 14. The
 * machine settles outstanding I/O between CPU batches (`settle()`), so
 * guests see the same timing every run.
 */

export const PRIMARY_COMMAND_BASE = 0x1f0;
export const PRIMARY_CONTROL_PORT = 0x3f6;
export const PRIMARY_IRQ = 14;

// Task file register offsets from 0x1F0 (ATA/ATAPI-7 vol. 1 §7.1).
const REG_DATA = 0;
const REG_ERROR_FEATURES = 1;
const REG_SECTOR_COUNT = 2;
const REG_LBA_LOW = 3;
const REG_LBA_MID = 4;
const REG_LBA_HIGH = 5;
const REG_DEVICE = 6;
// Register 7 is Status (read) / Command (write).

// Status bits.
export const ATA_BSY = 0x80;
export const ATA_DRDY = 0x40;
const ATA_DSC = 0x10;
export const ATA_DRQ = 0x08;
export const ATA_ERR = 0x01;
// Error bits.
export const ATA_ABRT = 0x04;
export const ATA_IDNF = 0x10;
const ATA_UNC = 0x40;
// Device register: LBA addressing, device 1 selected.
const DEVICE_LBA = 0x40;
const DEVICE_SLAVE = 0x10;
// Device control: interrupts disabled, software reset, high-order byte read-back (LBA48).
const CONTROL_NIEN = 0x02;
const CONTROL_SRST = 0x04;
const CONTROL_HOB = 0x80;

// Commands (ATA8-ACS).
export const CMD_READ_SECTORS = 0x20;
const CMD_READ_SECTORS_NORETRY = 0x21;
export const CMD_READ_SECTORS_EXT = 0x24;
const CMD_READ_MULTIPLE_EXT = 0x29;
export const CMD_WRITE_SECTORS = 0x30;
const CMD_WRITE_SECTORS_NORETRY = 0x31;
export const CMD_WRITE_SECTORS_EXT = 0x34;
const CMD_WRITE_MULTIPLE_EXT = 0x39;
const CMD_READ_VERIFY = 0x40;
const CMD_READ_VERIFY_NORETRY = 0x41;
const CMD_READ_VERIFY_EXT = 0x42;
const CMD_SEEK = 0x70;
const CMD_EXECUTE_DIAGNOSTIC = 0x90;
const CMD_INITIALIZE_PARAMETERS = 0x91;
const CMD_IDENTIFY_PACKET = 0xa1;
const CMD_READ_MULTIPLE = 0xc4;
const CMD_WRITE_MULTIPLE = 0xc5;
const CMD_SET_MULTIPLE = 0xc6;
const CMD_STANDBY_IMMEDIATE = 0xe0;
const CMD_IDLE_IMMEDIATE = 0xe1;
const CMD_STANDBY = 0xe2;
const CMD_IDLE = 0xe3;
const CMD_CHECK_POWER_MODE = 0xe5;
export const CMD_FLUSH_CACHE = 0xe7;
export const CMD_IDENTIFY = 0xec;
const CMD_FLUSH_CACHE_EXT = 0xea;
const CMD_SET_FEATURES = 0xef;

/** Largest DRQ block of READ/WRITE MULTIPLE (IDENTIFY word 47). */
const MAX_MULTIPLE = 16;
/** Default CHS geometry for the IDENTIFY words and CHS commands (as BIOSes translate). */
const HEADS = 16;
const SECTORS_PER_TRACK = 63;
const LBA28_LIMIT = 0x0fffffff;

// PIIX3 IDE function (PIIX3 data sheet §2.3): 8086:7010, class 01 01 80.
const PIIX3_IDE_DEVICE = 0x7010;
const CLASS_IDE_COMPAT_BUSMASTER = 0x010180;
/** IDETIM primary/secondary (0x40-0x43): bit 15 = IDE decode enable for the channel. */
const PIIX_IDETIM = 0x40;

/** ASCII text as ATA strings: byte-swapped within each 16-bit word, space-padded (ATA8-ACS §3.3.10). */
function writeAtaString(words: Uint16Array, first: number, count: number, text: string): void {
  const padded = text.padEnd(count * 2, " ").slice(0, count * 2);
  for (let i = 0; i < count; i++) {
    words[first + i] = (padded.charCodeAt(2 * i) << 8) | padded.charCodeAt(2 * i + 1);
  }
}

/** What a data command transfers, one DRQ block at a time. */
interface Transfer {
  write: boolean;
  lba: number;
  remaining: number;
  /** Sectors per DRQ block (1, or the multiple count). */
  blockSectors: number;
}

export interface IdeOptions {
  io: IoBus;
  pci: PciBus;
  irq: IrqLine;
  disk: DiskReader | DiskWriterHandle;
  /** Ends the CPU batch so the machine settles the transfer (keeps runs deterministic). */
  requestStop?: () => void;
  model?: string;
  serial?: string;
}

export class IdeController implements PortHandler {
  // Task file (current and previous "HOB" values for LBA48).
  private features = 0;
  private sectorCount = 0;
  private lbaLow = 0;
  private lbaMid = 0;
  private lbaHigh = 0;
  private hob = { sectorCount: 0, lbaLow: 0, lbaMid: 0, lbaHigh: 0, features: 0 };
  private device = 0;
  private control = 0;
  private status = ATA_DRDY | ATA_DSC;
  private error = 0x01;
  private multiple = 0;
  private irqPending = false;
  private buffer: Buffer = Buffer.alloc(0);
  private bufferPosition = 0;
  private transfer: Transfer | undefined;
  private pending: Promise<void> | undefined;
  private readonly capacity: number;
  private readonly identifyData: Buffer;
  private readonly readOnly: boolean;
  /** Commands the guest issued, by opcode (for diagnosis). */
  readonly commands = new Map<number, number>();
  readonly pciFunction: PciFunction;

  constructor(private readonly options: IdeOptions) {
    this.capacity = Math.floor(options.disk.virtualSize / SECTOR_SIZE);
    this.readOnly = !("write" in options.disk);
    this.identifyData = this.buildIdentify(
      options.model ?? "OVFKIT HARDDISK",
      options.serial ?? "OVFKIT0001",
    );
    this.pciFunction = new PciFunction({
      vendor: 0x8086,
      device: PIIX3_IDE_DEVICE,
      classCode: CLASS_IDE_COMPAT_BUSMASTER,
    });
    // Primary channel decoding enabled (ata_piix checks it), secondary off; timings writable.
    this.pciFunction.config[PIIX_IDETIM + 1] = 0x80;
    this.pciFunction.config[0x04] = 0x01; // I/O space decoding on
    for (let at = PIIX_IDETIM; at < PIIX_IDETIM + 0x10; at++) this.pciFunction.writeMask[at] = 0xff;
    options.pci.add(1, 1, this.pciFunction);
    this.signature();
  }

  register(io = this.options.io): void {
    io.register(PRIMARY_COMMAND_BASE, 8, this);
    io.register(PRIMARY_CONTROL_PORT, 1, this);
  }

  /** Outstanding disk I/O, for the machine to await between CPU batches. */
  settle(): Promise<void> | undefined {
    return this.pending;
  }

  /** IDENTIFY DEVICE data (ATA8-ACS §7.16, table 22). */
  private buildIdentify(model: string, serial: string): Buffer {
    const w = new Uint16Array(256);
    const cylinders = Math.min(16383, Math.floor(this.capacity / (HEADS * SECTORS_PER_TRACK)));
    const lba28 = Math.min(this.capacity, LBA28_LIMIT);
    w[0] = 0x0040; // fixed ATA device
    w[1] = cylinders;
    w[3] = HEADS;
    w[6] = SECTORS_PER_TRACK;
    writeAtaString(w, 10, 10, serial);
    writeAtaString(w, 23, 4, "1.0");
    writeAtaString(w, 27, 20, model);
    w[47] = 0x8000 | MAX_MULTIPLE;
    w[49] = 0x0200; // LBA supported; no DMA
    w[50] = 0x4000;
    w[51] = 0x0200; // PIO timing mode 2
    w[53] = 0x0003; // words 54-58 and 64-70 valid
    w[54] = cylinders;
    w[55] = HEADS;
    w[56] = SECTORS_PER_TRACK;
    const chsSectors = cylinders * HEADS * SECTORS_PER_TRACK;
    w[57] = chsSectors & 0xffff;
    w[58] = chsSectors >>> 16;
    w[60] = lba28 & 0xffff;
    w[61] = lba28 >>> 16;
    w[64] = 0x0003; // PIO modes 3 and 4
    w[65] = w[66] = w[67] = w[68] = 120;
    w[80] = 0x00f0; // ATA/ATAPI-4 to -7
    w[82] = 0x4000; // NOP (word valid)
    w[83] = 0x4000 | (1 << 13) | (1 << 12) | (1 << 10); // FLUSH CACHE EXT, FLUSH CACHE, LBA48
    w[84] = 0x4000;
    w[85] = 0x4000;
    w[86] = (1 << 13) | (1 << 12) | (1 << 10);
    w[87] = 0x4000;
    let sectors = this.capacity;
    for (let i = 100; i < 104; i++) {
      w[i] = sectors % 0x10000;
      sectors = Math.floor(sectors / 0x10000);
    }
    this.updateMultipleWord(w);
    return Buffer.from(w.buffer);
  }

  private updateMultipleWord(words?: Uint16Array): void {
    const w = words ?? new Uint16Array(this.identifyData.buffer, this.identifyData.byteOffset, 256);
    w[59] = this.multiple ? 0x0100 | this.multiple : 0;
  }

  /** The ATA signature in the task file after reset or diagnostics (ATA8-ACS §9.12). */
  private signature(): void {
    this.sectorCount = 1;
    this.lbaLow = 1;
    this.lbaMid = 0;
    this.lbaHigh = 0;
    this.device &= DEVICE_SLAVE;
    this.error = 0x01; // diagnostic: device 0 passed
  }

  private get slaveSelected(): boolean {
    return (this.device & DEVICE_SLAVE) !== 0;
  }

  // --- Interrupt ---------------------------------------------------------------

  private interrupt(): void {
    if (this.control & CONTROL_NIEN) return;
    if (this.irqPending) this.options.irq.lower(); // a fresh edge for the 8259
    this.irqPending = true;
    this.options.irq.raise();
  }

  private clearInterrupt(): void {
    if (!this.irqPending) return;
    this.irqPending = false;
    this.options.irq.lower();
  }

  // --- Ports ------------------------------------------------------------------------

  read(port: number, size: 1 | 2 | 4): number {
    if (port === PRIMARY_CONTROL_PORT) return this.slaveSelected ? 0 : this.status;
    const reg = port - PRIMARY_COMMAND_BASE;
    if (reg === REG_DATA) return this.readData(size);
    // Device 1 is absent: its registers read as zero (as qemu answers), so probes find nothing.
    if (this.slaveSelected && reg !== REG_DEVICE) return 0;
    const hob = (this.control & CONTROL_HOB) !== 0;
    switch (reg) {
      case REG_ERROR_FEATURES:
        return this.error;
      case REG_SECTOR_COUNT:
        return hob ? this.hob.sectorCount : this.sectorCount;
      case REG_LBA_LOW:
        return hob ? this.hob.lbaLow : this.lbaLow;
      case REG_LBA_MID:
        return hob ? this.hob.lbaMid : this.lbaMid;
      case REG_LBA_HIGH:
        return hob ? this.hob.lbaHigh : this.lbaHigh;
      case REG_DEVICE:
        return this.device | 0xa0;
      default:
        this.clearInterrupt(); // reading Status acknowledges INTRQ
        return this.status;
    }
  }

  write(port: number, size: 1 | 2 | 4, value: number): void {
    if (port === PRIMARY_CONTROL_PORT) {
      this.writeControl(value & 0xff);
      return;
    }
    const reg = port - PRIMARY_COMMAND_BASE;
    if (reg === REG_DATA) {
      this.writeData(size, value);
      return;
    }
    value &= 0xff;
    // Writing any task file register clears HOB read-back (ATA/ATAPI-7 §7.9).
    this.control &= ~CONTROL_HOB;
    switch (reg) {
      case REG_ERROR_FEATURES:
        this.hob.features = this.features;
        this.features = value;
        return;
      case REG_SECTOR_COUNT:
        this.hob.sectorCount = this.sectorCount;
        this.sectorCount = value;
        return;
      case REG_LBA_LOW:
        this.hob.lbaLow = this.lbaLow;
        this.lbaLow = value;
        return;
      case REG_LBA_MID:
        this.hob.lbaMid = this.lbaMid;
        this.lbaMid = value;
        return;
      case REG_LBA_HIGH:
        this.hob.lbaHigh = this.lbaHigh;
        this.lbaHigh = value;
        return;
      case REG_DEVICE:
        this.device = value;
        return;
      default:
        if (!this.slaveSelected && !(this.status & ATA_BSY)) this.command(value);
    }
  }

  private writeControl(value: number): void {
    const wasReset = (this.control & CONTROL_SRST) !== 0;
    this.control = value;
    if (value & CONTROL_SRST) {
      this.status = ATA_BSY;
      this.transfer = undefined;
      this.buffer = Buffer.alloc(0);
      this.clearInterrupt();
    } else if (wasReset) {
      this.signature();
      this.status = ATA_DRDY | ATA_DSC;
    }
  }

  // --- Commands ------------------------------------------------------------------------

  private command(opcode: number): void {
    this.commands.set(opcode, (this.commands.get(opcode) ?? 0) + 1);
    this.clearInterrupt();
    this.error = 0;
    switch (opcode) {
      case CMD_IDENTIFY:
        this.startPioIn(Buffer.from(this.identifyData));
        return;
      case CMD_READ_SECTORS:
      case CMD_READ_SECTORS_NORETRY:
        this.startTransfer(false, false, 1);
        return;
      case CMD_READ_SECTORS_EXT:
        this.startTransfer(false, true, 1);
        return;
      case CMD_READ_MULTIPLE:
      case CMD_READ_MULTIPLE_EXT:
        if (!this.multiple) break;
        this.startTransfer(false, opcode === CMD_READ_MULTIPLE_EXT, this.multiple);
        return;
      case CMD_WRITE_SECTORS:
      case CMD_WRITE_SECTORS_NORETRY:
        this.startTransfer(true, false, 1);
        return;
      case CMD_WRITE_SECTORS_EXT:
        this.startTransfer(true, true, 1);
        return;
      case CMD_WRITE_MULTIPLE:
      case CMD_WRITE_MULTIPLE_EXT:
        if (!this.multiple) break;
        this.startTransfer(true, opcode === CMD_WRITE_MULTIPLE_EXT, this.multiple);
        return;
      case CMD_SET_MULTIPLE: {
        const count = this.sectorCount;
        if (count > MAX_MULTIPLE || (count & (count - 1)) !== 0) break;
        this.multiple = count;
        this.updateMultipleWord();
        this.complete();
        return;
      }
      case CMD_READ_VERIFY:
      case CMD_READ_VERIFY_NORETRY:
      case CMD_READ_VERIFY_EXT: {
        const range = this.commandRange(opcode === CMD_READ_VERIFY_EXT);
        if (!range) return;
        this.complete();
        return;
      }
      case CMD_EXECUTE_DIAGNOSTIC:
        this.signature();
        this.complete();
        return;
      case CMD_CHECK_POWER_MODE:
        this.sectorCount = 0xff; // active or idle
        this.complete();
        return;
      case CMD_FLUSH_CACHE:
      case CMD_FLUSH_CACHE_EXT: // the overlay is in memory: nothing to make durable
      case CMD_SET_FEATURES: // transfer modes and caches: accepted, nothing changes for PIO emulation
      case CMD_INITIALIZE_PARAMETERS:
      case CMD_SEEK:
      case CMD_STANDBY_IMMEDIATE:
      case CMD_IDLE_IMMEDIATE:
      case CMD_STANDBY:
      case CMD_IDLE:
        this.complete();
        return;
      case CMD_IDENTIFY_PACKET:
        // Not an ATAPI device: abort with the ATA signature (how hosts tell the two apart).
        this.signature();
        break;
      default:
        if (opcode >= 0x10 && opcode <= 0x1f) {
          this.complete(); // RECALIBRATE
          return;
        }
    }
    this.abort(ATA_ABRT);
  }

  private complete(): void {
    this.status = ATA_DRDY | ATA_DSC;
    this.interrupt();
  }

  private abort(error: number): void {
    this.error = error;
    this.status = ATA_DRDY | ATA_ERR;
    this.transfer = undefined;
    this.interrupt();
  }

  /** The command's first sector and count, or undefined after aborting (range outside the disk). */
  private commandRange(lba48: boolean): { lba: number; count: number } | undefined {
    let lba: number;
    let count: number;
    if (lba48) {
      lba =
        this.hob.lbaHigh * 2 ** 40 +
        this.hob.lbaMid * 2 ** 32 +
        this.hob.lbaLow * 2 ** 24 +
        ((this.lbaHigh << 16) | (this.lbaMid << 8) | this.lbaLow);
      count = (this.hob.sectorCount << 8) | this.sectorCount || 65536;
    } else if (this.device & DEVICE_LBA) {
      lba = ((this.device & 0x0f) << 24) | (this.lbaHigh << 16) | (this.lbaMid << 8) | this.lbaLow;
      count = this.sectorCount || 256;
    } else {
      const cylinder = (this.lbaHigh << 8) | this.lbaMid;
      const head = this.device & 0x0f;
      const sector = this.lbaLow;
      if (sector === 0) {
        this.abort(ATA_IDNF);
        return undefined;
      }
      lba = (cylinder * HEADS + head) * SECTORS_PER_TRACK + sector - 1;
      count = this.sectorCount || 256;
    }
    if (lba + count > this.capacity) {
      this.abort(ATA_IDNF);
      return undefined;
    }
    return { lba, count };
  }

  private startTransfer(write: boolean, lba48: boolean, blockSectors: number): void {
    const range = this.commandRange(lba48);
    if (!range) return;
    if (write && this.readOnly) {
      this.abort(ATA_ABRT);
      return;
    }
    this.transfer = { write, lba: range.lba, remaining: range.count, blockSectors };
    if (write) {
      // PIO data-out: the first block is requested at once, without an interrupt.
      this.buffer = Buffer.alloc(Math.min(blockSectors, range.count) * SECTOR_SIZE);
      this.bufferPosition = 0;
      this.status = ATA_DRDY | ATA_DSC | ATA_DRQ;
    } else {
      this.readNextBlock();
    }
  }

  /** Runs an async disk step with BSY set; the machine awaits it before the CPU continues. */
  private busy(step: () => Promise<void>): void {
    this.status = ATA_BSY;
    const work = step().catch(() => {
      // An unreadable image region is an uncorrectable error for the guest, not a crash.
      this.abort(ATA_UNC | ATA_ABRT);
    });
    this.pending = work;
    void work.finally(() => {
      if (this.pending === work) this.pending = undefined;
    });
    this.options.requestStop?.();
  }

  private readNextBlock(): void {
    const transfer = this.transfer!;
    const sectors = Math.min(transfer.blockSectors, transfer.remaining);
    this.busy(async () => {
      const data = await this.options.disk.read(transfer.lba * SECTOR_SIZE, sectors * SECTOR_SIZE);
      if (this.transfer !== transfer) return; // reset meanwhile
      transfer.lba += sectors;
      transfer.remaining -= sectors;
      this.startPioIn(data);
    });
  }

  /** Offers `data` on the data port (DRQ) and interrupts: the PIO data-in protocol. */
  private startPioIn(data: Buffer): void {
    this.buffer = data;
    this.bufferPosition = 0;
    this.status = ATA_DRDY | ATA_DSC | ATA_DRQ;
    this.interrupt();
  }

  private readData(size: 1 | 2 | 4): number {
    if (!(this.status & ATA_DRQ) || this.transfer?.write) return 0;
    const bytes = size === 1 ? 2 : size;
    let value = 0;
    for (let i = 0; i < bytes && this.bufferPosition < this.buffer.length; i++) {
      value |= this.buffer[this.bufferPosition++]! << (8 * i);
    }
    if (this.bufferPosition >= this.buffer.length) this.endOfDataInBlock();
    return (size === 1 ? value & 0xff : value) >>> 0;
  }

  private endOfDataInBlock(): void {
    const transfer = this.transfer;
    if (transfer && transfer.remaining > 0) {
      this.readNextBlock();
      return;
    }
    this.transfer = undefined;
    this.status = ATA_DRDY | ATA_DSC;
  }

  private writeData(size: 1 | 2 | 4, value: number): void {
    const transfer = this.transfer;
    if (!(this.status & ATA_DRQ) || !transfer?.write) return;
    const bytes = size === 1 ? 2 : size;
    for (let i = 0; i < bytes && this.bufferPosition < this.buffer.length; i++) {
      this.buffer[this.bufferPosition++] = (value >>> (8 * i)) & 0xff;
    }
    if (this.bufferPosition < this.buffer.length) return;
    const block = this.buffer;
    const disk = this.options.disk as DiskWriterHandle;
    this.busy(async () => {
      await disk.write(transfer.lba * SECTOR_SIZE, block);
      if (this.transfer !== transfer) return;
      const sectors = block.length / SECTOR_SIZE;
      transfer.lba += sectors;
      transfer.remaining -= sectors;
      if (transfer.remaining > 0) {
        this.buffer = Buffer.alloc(Math.min(transfer.blockSectors, transfer.remaining) * SECTOR_SIZE);
        this.bufferPosition = 0;
        this.status = ATA_DRDY | ATA_DSC | ATA_DRQ;
      } else {
        this.transfer = undefined;
        this.status = ATA_DRDY | ATA_DSC;
      }
      this.interrupt();
    });
  }

  /** One line for verdicts: what the guest did with the disk. */
  describe(): string {
    const issued = [...this.commands.entries()].map(([op, n]) => `0x${op.toString(16)}×${n}`).join(" ");
    return `IDE commands ${issued || "none"}`;
  }
}

/** Plugs the legacy IDE controller with `disk` as the primary master into the machine. */
export function attachIde(host: DiskControllerHost, disk: DiskReader | DiskWriterHandle): IdeController {
  const ide = new IdeController({
    io: host.io,
    pci: host.pci,
    irq: host.isaLine(PRIMARY_IRQ),
    disk,
    requestStop: () => stopHostCpu(host, "IDE I/O"),
  });
  ide.register();
  return ide;
}
