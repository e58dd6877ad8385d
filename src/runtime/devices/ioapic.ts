import type { IrqLine, MmioHandler } from "../bus.js";
import type { LocalApic } from "./apic.js";

/**
 * The I/O APIC (Intel 82093AA data sheet), memory-mapped at 0xFEC00000:
 * IOREGSEL at +0x00, IOWIN at +0x10; registers ID (0), version (1),
 * arbitration (2) and 24 64-bit redirection entries from 0x10. Pins 0-15
 * carry the ISA IRQs as wired by the MP table (IRQ 0 on pin 2), 16-23 the
 * PCI INTx lines. Fixed and lowest-priority delivery to the one local APIC;
 * edge and level triggering with remote IRR.
 */

export { IOAPIC_BASE } from "./apic-constants.js";
export const IOAPIC_SIZE = 0x20;
export const IOAPIC_PINS = 24;

const IOREGSEL = 0x00;
const IOWIN = 0x10;
const REG_ID = 0x00;
const REG_VERSION = 0x01;
const REG_ARBITRATION = 0x02;
const REG_REDIRECTION = 0x10;
/** Version 0x11 (82093AA), maximum redirection entry 23. */
const VERSION = ((IOAPIC_PINS - 1) << 16) | 0x11;

const ENTRY_MASKED = 0x10000;
const ENTRY_LEVEL = 0x8000;
const ENTRY_REMOTE_IRR = 0x4000;
const ENTRY_DELIVERY_STATUS = 0x1000;

export class IoApic implements MmioHandler {
  private select = 0;
  private id = 1 << 24;
  /** Low and high dwords of each redirection entry (masked at reset). */
  private readonly low = new Uint32Array(IOAPIC_PINS).fill(ENTRY_MASKED);
  private readonly high = new Uint32Array(IOAPIC_PINS);
  /** Input levels as the devices drive them (before polarity). */
  private readonly levels = new Uint8Array(IOAPIC_PINS);

  constructor(private readonly lapic: LocalApic) {
    lapic.onLevelEoi = (vector) => this.endOfInterrupt(vector);
  }

  /** The line for input pin `pin`. */
  line(pin: number): IrqLine {
    return { raise: () => this.setLevel(pin, true), lower: () => this.setLevel(pin, false) };
  }

  /**
   * Drives input `pin`. `high` means asserted: devices raise their line to
   * request service whatever the wire's electrical polarity (which the
   * redirection entry describes for the guest's benefit).
   */
  setLevel(pin: number, high: boolean): void {
    const was = this.levels[pin] === 1;
    this.levels[pin] = high ? 1 : 0;
    const level = (this.low[pin]! & ENTRY_LEVEL) !== 0;
    if (high && (level || !was)) this.deliver(pin);
  }

  private deliver(pin: number): void {
    const entry = this.low[pin]!;
    if (entry & ENTRY_MASKED) return;
    const level = (entry & ENTRY_LEVEL) !== 0;
    if (level) {
      if (entry & ENTRY_REMOTE_IRR) return; // still in service
      this.low[pin] = entry | ENTRY_REMOTE_IRR;
    }
    const mode = (entry >> 8) & 7;
    if (mode === 0 || mode === 1) this.lapic.accept(entry & 0xff, level);
  }

  /** A level-triggered vector was EOI'd: clear remote IRR and redeliver if the line is still asserted. */
  private endOfInterrupt(vector: number): void {
    for (let pin = 0; pin < IOAPIC_PINS; pin++) {
      const entry = this.low[pin]!;
      if ((entry & 0xff) !== vector || !(entry & ENTRY_REMOTE_IRR)) continue;
      this.low[pin] = entry & ~ENTRY_REMOTE_IRR;
      if (this.levels[pin] === 1) this.deliver(pin);
    }
  }

  read(offset: number): number {
    if (offset === IOREGSEL) return this.select;
    if (offset !== IOWIN) return 0;
    const reg = this.select;
    if (reg === REG_ID) return this.id;
    if (reg === REG_VERSION) return VERSION;
    if (reg === REG_ARBITRATION) return this.id;
    const index = (reg - REG_REDIRECTION) >> 1;
    if (reg < REG_REDIRECTION || index >= IOAPIC_PINS) return 0;
    return ((reg & 1 ? this.high[index]! : this.low[index]! & ~ENTRY_DELIVERY_STATUS) >>> 0) as number;
  }

  write(offset: number, _size: 1 | 2 | 4, value: number): void {
    if (offset === IOREGSEL) {
      this.select = value & 0xff;
      return;
    }
    if (offset !== IOWIN) return;
    const reg = this.select;
    if (reg === REG_ID) {
      this.id = value & 0x0f000000;
      return;
    }
    const index = (reg - REG_REDIRECTION) >> 1;
    if (reg < REG_REDIRECTION || index >= IOAPIC_PINS) return;
    if (reg & 1) {
      this.high[index] = value & 0xff000000;
      return;
    }
    // Remote IRR and delivery status are read-only.
    const keep = this.low[index]! & ENTRY_REMOTE_IRR;
    this.low[index] = ((value & ~(ENTRY_REMOTE_IRR | ENTRY_DELIVERY_STATUS)) | keep) >>> 0;
    // Unmasking a level-triggered pin whose line is asserted delivers it now.
    const entry = this.low[index]!;
    if (!(entry & ENTRY_MASKED) && entry & ENTRY_LEVEL) {
      if (this.levels[index] === 1) this.deliver(index);
    }
  }
}
