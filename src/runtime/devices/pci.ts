import type { IoBus, PortHandler } from "../bus.js";

/**
 * PCI configuration mechanism #1 (PCI Local Bus Specification 3.0 §3.2.2.3.2):
 * CONFIG_ADDRESS at 0xCF8 (bit 31 enable, bus 23:16, device 15:11, function
 * 10:8, register 7:2) and CONFIG_DATA at 0xCFC-0xCFF. Bus 0 holds an
 * i440FX-like host bridge (00:00.0, 8086:1237) and a PIIX3-like PCI-to-ISA
 * bridge (00:01.0, 8086:7000) with its PIRQ routing registers 0x60-0x63,
 * as in qemu's `pc` machine. Other slots read as absent (all ones).
 */

// Type 0 configuration header offsets (PCI 3.0 §6.1).
export const PCI_VENDOR_ID = 0x00;
export const PCI_DEVICE_ID = 0x02;
export const PCI_COMMAND = 0x04;
export const PCI_STATUS = 0x06;
export const PCI_REVISION = 0x08;
export const PCI_CLASS_PROG = 0x09;
export const PCI_CLASS_DEVICE = 0x0a;
export const PCI_HEADER_TYPE = 0x0e;
export const PCI_SUBSYSTEM_VENDOR_ID = 0x2c;
export const PCI_SUBSYSTEM_ID = 0x2e;
export const PCI_INTERRUPT_LINE = 0x3c;
export const PCI_INTERRUPT_PIN = 0x3d;
/** PIIX3 PIRQA-D route control (PIIX3 data sheet §2.2.14): bit 7 = disabled, bits 3:0 = ISA IRQ. */
export const PIIX_PIRQ_ROUTE = 0x60;

const HEADER_MULTIFUNCTION = 0x80;

/** One PCI function's 256-byte configuration space. */
export class PciFunction {
  readonly config = new Uint8Array(256);
  /** Bytes the guest may change (1 = writable bit); everything else is read-only. */
  readonly writeMask = new Uint8Array(256);

  constructor(ids: {
    vendor: number;
    device: number;
    classCode: number;
    revision?: number;
    header?: number;
  }) {
    const view = new DataView(this.config.buffer);
    view.setUint16(PCI_VENDOR_ID, ids.vendor, true);
    view.setUint16(PCI_DEVICE_ID, ids.device, true);
    this.config[PCI_REVISION] = ids.revision ?? 0;
    this.config[PCI_CLASS_PROG] = ids.classCode & 0xff;
    view.setUint16(PCI_CLASS_DEVICE, ids.classCode >> 8, true);
    this.config[PCI_HEADER_TYPE] = ids.header ?? 0;
    this.writeMask[PCI_COMMAND] = 0xff;
    this.writeMask[PCI_COMMAND + 1] = 0x07;
    this.writeMask[0x0c] = 0xff; // cache line size
    this.writeMask[0x0d] = 0xff; // latency timer
    this.writeMask[PCI_INTERRUPT_LINE] = 0xff;
  }

  read(offset: number, size: 1 | 2 | 4): number {
    let value = 0;
    for (let i = 0; i < size; i++) value |= this.config[(offset + i) & 0xff]! << (8 * i);
    return value >>> 0;
  }

  write(offset: number, size: 1 | 2 | 4, value: number): void {
    for (let i = 0; i < size; i++) {
      const at = (offset + i) & 0xff;
      const mask = this.writeMask[at]!;
      const byte = (value >>> (8 * i)) & 0xff;
      this.config[at] = (this.config[at]! & ~mask) | (byte & mask);
    }
  }
}

const CONFIG_ADDRESS = 0xcf8;
const CONFIG_DATA = 0xcfc;
const ENABLE = 0x80000000;

export class PciBus implements PortHandler {
  private address = 0;
  /** Functions on bus 0 by (device << 3 | function). */
  private readonly functions = new Map<number, PciFunction>();

  constructor() {
    const hostBridge = new PciFunction({
      vendor: 0x8086,
      device: 0x1237,
      classCode: 0x060000,
      revision: 0x02,
    });
    this.add(0, 0, hostBridge);
    const isaBridge = new PciFunction({
      vendor: 0x8086,
      device: 0x7000,
      classCode: 0x060100,
      header: HEADER_MULTIFUNCTION,
    });
    // PIRQ A-D routed to IRQ 10, 10, 11, 11 as SeaBIOS does on qemu's pc machine.
    isaBridge.config.set([10, 10, 11, 11], PIIX_PIRQ_ROUTE);
    for (let i = 0; i < 4; i++) isaBridge.writeMask[PIIX_PIRQ_ROUTE + i] = 0x8f;
    this.add(1, 0, isaBridge);
  }

  add(device: number, fn: number, pciFunction: PciFunction): void {
    this.functions.set((device << 3) | fn, pciFunction);
  }

  /** The function at bus 0 `device`.`fn`, if present. */
  get(device: number, fn: number): PciFunction | undefined {
    return this.functions.get((device << 3) | fn);
  }

  /** Every present function, as [device, function, config] (for the PCI BIOS). */
  list(): [number, number, PciFunction][] {
    return [...this.functions.entries()]
      .sort((a, b) => a[0] - b[0])
      .map(([key, f]) => [key >> 3, key & 7, f]);
  }

  register(io: IoBus): void {
    // 0xCF9 belongs to the reset control register (system-ports.ts).
    io.register(CONFIG_ADDRESS, 1, this);
    io.register(CONFIG_DATA, 4, this);
  }

  private selected(): PciFunction | undefined {
    if (!(this.address & ENABLE)) return undefined;
    const bus = (this.address >> 16) & 0xff;
    if (bus !== 0) return undefined;
    return this.functions.get((this.address >> 8) & 0xff);
  }

  /** Reads configuration space directly (the BIOS's PCI services use it). */
  readConfig(device: number, fn: number, offset: number, size: 1 | 2 | 4): number {
    const f = this.get(device, fn);
    if (!f) return size === 4 ? 0xffffffff : size === 2 ? 0xffff : 0xff;
    return f.read(offset, size);
  }

  writeConfig(device: number, fn: number, offset: number, size: 1 | 2 | 4, value: number): void {
    this.get(device, fn)?.write(offset, size, value);
  }

  read(port: number, size: 1 | 2 | 4): number {
    if (port === CONFIG_ADDRESS) return size === 4 ? this.address >>> 0 : size === 2 ? 0xffff : 0xff;
    const f = this.selected();
    if (!f) return size === 4 ? 0xffffffff : size === 2 ? 0xffff : 0xff;
    return f.read((this.address & 0xfc) + (port - CONFIG_DATA), size);
  }

  write(port: number, size: 1 | 2 | 4, value: number): void {
    if (port === CONFIG_ADDRESS) {
      // Only 32-bit accesses reach CONFIG_ADDRESS (PCI 3.0 §3.2.2.3.2).
      if (size === 4) this.address = (value & 0x80fffffc) >>> 0;
      return;
    }
    this.selected()?.write((this.address & 0xfc) + (port - CONFIG_DATA), size, value);
  }
}
