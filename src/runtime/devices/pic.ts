import type { InterruptController, IoBus, IrqLine, PortHandler } from "../bus.js";

/**
 * The 8259A programmable interrupt controller pair of the PC/AT: master at
 * ports 0x20/0x21 (IRQ 0-7), slave at 0xA0/0xA1 (IRQ 8-15) cascaded on the
 * master's IRQ 2, plus the PIIX edge/level control registers (ELCR) at
 * 0x4D0/0x4D1. Follows the Intel 8259A data sheet (ICW1-4, OCW1-3) the way
 * qemu's hw/intc/i8259.c models it: edge-triggered by default, IRR/ISR/IMR,
 * fully nested priorities with rotation, non-specific and specific EOI,
 * auto-EOI, poll mode, special mask mode.
 */

// ICW1 (written to the command port with bit 4 set).
const ICW1_IC4 = 0x01; // ICW4 will follow
const ICW1_SINGLE = 0x02; // no cascade: ICW3 is skipped
const ICW1_LTIM = 0x08; // level-triggered mode
// OCW3 (command port, bits 4:3 = 01).
const OCW3_READ_ISR = 0x01;
const OCW3_READ_REGISTER = 0x02;
const OCW3_POLL = 0x04;
const OCW3_SMM_SET = 0x20;
const OCW3_SMM_ENABLE = 0x40;
// ICW4.
const ICW4_AUTO_EOI = 0x02;

/** One 8259A. */
export class Pic8259 implements PortHandler {
  irr = 0; // interrupt request register
  isr = 0; // in-service register
  imr = 0xff; // interrupt mask register (all masked until programmed)
  /** Lines currently high (for edge detection). */
  private lineLevel = 0;
  /** Priority rotation: IRQ (priorityAdd) has the highest priority. */
  private priorityAdd = 0;
  vectorBase = 0;
  private readIsr = false;
  private poll = false;
  private specialMask = false;
  private autoEoi = false;
  private rotateOnAutoEoi = false;
  private singleMode = false;
  private icw4Needed = false;
  /** Which initialisation word the next data-port write is (0 = none: OCW1). */
  private initStep = 0;
  /** Edge/level control (ELCR): bit set = level-triggered. */
  elcr = 0;
  private levelTriggeredAll = false;

  constructor(
    readonly base: number,
    readonly elcrMask: number,
    private readonly onChange: () => void,
  ) {}

  /** Sets the level of input line `irq` (0-7). Edge mode latches rising edges into IRR. */
  setLevel(irq: number, high: boolean): void {
    this.latch(irq, high);
    this.onChange();
  }

  /** `setLevel` without notifying the pair (used for the cascade input). */
  latch(irq: number, high: boolean): void {
    const mask = 1 << irq;
    const level = this.levelTriggeredAll || (this.elcr & mask) !== 0;
    if (level) {
      if (high) this.irr |= mask;
      else this.irr &= ~mask;
    } else if (high) {
      if ((this.lineLevel & mask) === 0) this.irr |= mask;
    }
    if (high) this.lineLevel |= mask;
    else this.lineLevel &= ~mask;
  }

  /** Highest-priority bit of `mask` under the current rotation, or 8 when none. */
  private highestPriority(mask: number): number {
    if (mask === 0) return 8;
    let priority = 0;
    while ((mask & (1 << ((priority + this.priorityAdd) & 7))) === 0) priority++;
    return priority;
  }

  /** The IRQ (0-7) the chip would signal now, or -1. */
  pendingIrq(): number {
    const requested = this.irr & ~this.imr;
    const priority = this.highestPriority(requested);
    if (priority === 8) return -1;
    // In special mask mode masked in-service IRQs do not block lower ones;
    // the slave's IRQ on the master's cascade input is fully nested either way.
    let inService = this.isr;
    if (this.specialMask) inService &= ~this.imr;
    const current = this.highestPriority(inService);
    return priority < current ? (priority + this.priorityAdd) & 7 : -1;
  }

  /** INTA cycle for `irq`: moves it from IRR to ISR (unless auto-EOI). */
  acknowledgeIrq(irq: number): void {
    const mask = 1 << irq;
    const level = this.levelTriggeredAll || (this.elcr & mask) !== 0;
    if (!level) this.irr &= ~mask;
    if (this.autoEoi) {
      if (this.rotateOnAutoEoi) this.priorityAdd = (irq + 1) & 7;
    } else {
      this.isr |= mask;
    }
  }

  read(port: number): number {
    if (port === 0x4d0 || port === 0x4d1) return this.elcr;
    if (this.poll) {
      this.poll = false;
      const irq = this.pendingIrq();
      if (irq < 0) return 0;
      this.acknowledgeIrq(irq);
      this.onChange();
      return 0x80 | irq;
    }
    if ((port & 1) === 0) return this.readIsr ? this.isr : this.irr;
    return this.imr;
  }

  write(port: number, _size: 1 | 2 | 4, value: number): void {
    value &= 0xff;
    if (port === 0x4d0 || port === 0x4d1) {
      this.elcr = value & this.elcrMask;
      return;
    }
    if ((port & 1) === 0) this.writeCommand(value);
    else this.writeData(value);
    this.onChange();
  }

  private writeCommand(value: number): void {
    if (value & 0x10) {
      // ICW1: start initialisation.
      this.irr = 0;
      this.isr = 0;
      this.imr = 0;
      this.lineLevel = 0;
      this.priorityAdd = 0;
      this.readIsr = false;
      this.poll = false;
      this.specialMask = false;
      this.autoEoi = false;
      this.rotateOnAutoEoi = false;
      this.icw4Needed = (value & ICW1_IC4) !== 0;
      this.singleMode = (value & ICW1_SINGLE) !== 0;
      this.levelTriggeredAll = (value & ICW1_LTIM) !== 0;
      this.initStep = 2;
      return;
    }
    if (value & 0x08) {
      // OCW3.
      if (value & OCW3_POLL) this.poll = true;
      if (value & OCW3_READ_REGISTER) this.readIsr = (value & OCW3_READ_ISR) !== 0;
      if (value & OCW3_SMM_ENABLE) this.specialMask = (value & OCW3_SMM_SET) !== 0;
      return;
    }
    // OCW2: EOI and rotation commands (bits 7:5).
    const command = value >> 5;
    switch (command) {
      case 0: // rotate in auto-EOI mode: clear
      case 4: // rotate in auto-EOI mode: set
        this.rotateOnAutoEoi = command === 4;
        break;
      case 1: // non-specific EOI
      case 5: {
        // non-specific EOI with rotation
        const priority = this.highestPriority(this.isr);
        if (priority !== 8) {
          const irq = (priority + this.priorityAdd) & 7;
          this.isr &= ~(1 << irq);
          if (command === 5) this.priorityAdd = (irq + 1) & 7;
        }
        break;
      }
      case 3: // specific EOI
        this.isr &= ~(1 << (value & 7));
        break;
      case 6: // set priority
        this.priorityAdd = (value + 1) & 7;
        break;
      case 7: // specific EOI with rotation
        this.isr &= ~(1 << (value & 7));
        this.priorityAdd = ((value & 7) + 1) & 7;
        break;
      default: // 2: no operation
        break;
    }
  }

  private writeData(value: number): void {
    switch (this.initStep) {
      case 2: // ICW2: vector base
        this.vectorBase = value & 0xf8;
        this.initStep = this.singleMode ? (this.icw4Needed ? 4 : 0) : 3;
        return;
      case 3: // ICW3: cascade wiring (fixed on a PC; nothing to store)
        this.initStep = this.icw4Needed ? 4 : 0;
        return;
      case 4: // ICW4
        this.autoEoi = (value & ICW4_AUTO_EOI) !== 0;
        this.initStep = 0;
        return;
      default: // OCW1: mask
        this.imr = value;
    }
  }
}

/** The master/slave pair as one interrupt controller, with IRQ lines 0-15. */
export class PicPair implements InterruptController {
  readonly master: Pic8259;
  readonly slave: Pic8259;
  private pending = false;

  constructor() {
    // ELCR: IRQ 0, 1, 2, 8 and 13 are always edge-triggered on PIIX.
    this.master = new Pic8259(0x20, 0xf8, () => this.update());
    this.slave = new Pic8259(0xa0, 0xde, () => this.update());
    this.master.vectorBase = 0x08;
    this.slave.vectorBase = 0x70;
  }

  register(io: IoBus): void {
    io.register(0x20, 2, this.master);
    io.register(0xa0, 2, this.slave);
    io.register(0x4d0, 1, this.master);
    io.register(0x4d1, 1, this.slave);
  }

  /** The line for ISA IRQ `irq` (0-15). */
  line(irq: number): IrqLine {
    return { raise: () => this.setIrq(irq, true), lower: () => this.setIrq(irq, false) };
  }

  setIrq(irq: number, high: boolean): void {
    if (irq < 8) this.master.setLevel(irq, high);
    else this.slave.setLevel(irq - 8, high);
  }

  /** Recomputes the cascade (slave INT output on master IRQ 2) and the CPU's INTR. */
  private update(): void {
    // As in qemu: a pending slave request pulses the master's IRQ 2 input,
    // so a second slave interrupt after an EOI is not lost to edge detection.
    // When the slave's request goes away, so does the master's IRQ 2 request
    // (its INT output is a level, like any IR input dropped before INTA).
    if (this.slave.pendingIrq() >= 0) {
      this.master.latch(2, true);
      this.master.latch(2, false);
    } else {
      this.master.irr &= ~(1 << 2);
    }
    this.pending = this.master.pendingIrq() >= 0;
  }

  hasInterrupt(): boolean {
    return this.pending;
  }

  acknowledge(): number {
    const irq = this.master.pendingIrq();
    if (irq < 0) {
      // Spurious interrupt: the request went away before INTA; the 8259 answers IRQ 7.
      return this.master.vectorBase + 7;
    }
    this.master.acknowledgeIrq(irq);
    let vector: number;
    if (irq === 2) {
      const slaveIrq = this.slave.pendingIrq();
      if (slaveIrq < 0) {
        vector = this.slave.vectorBase + 7;
      } else {
        this.slave.acknowledgeIrq(slaveIrq);
        vector = this.slave.vectorBase + slaveIrq;
      }
    } else {
      vector = this.master.vectorBase + irq;
    }
    this.update();
    return vector;
  }
}
