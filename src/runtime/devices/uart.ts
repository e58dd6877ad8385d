import type { IoBus, IrqLine, PortHandler } from "../bus.js";

/**
 * A 16550A UART (National Semiconductor PC16550D data sheet), the guest's
 * serial console on COM1 (ports 0x3F8-0x3FF, IRQ 4). Transmission is
 * instantaneous: every byte written to THR goes straight to `onTransmit`,
 * and THR is empty again at once (so the THRE interrupt re-arms at once,
 * as in qemu's hw/char/serial.c). Linux's 8250 driver probes exactly these
 * registers: scratch, LCR, the FIFO bits of IIR, loopback through MCR/MSR.
 */

// Register offsets from the base port (DLAB = LCR bit 7 selects the divisor latch at 0/1).
const RBR_THR = 0;
const IER = 1;
const IIR_FCR = 2;
const LCR = 3;
const MCR = 4;
const LSR = 5;
const MSR = 6;

const IER_RDI = 0x01; // received data available
const IER_THRI = 0x02; // transmitter holding register empty
const IER_RLSI = 0x04; // receiver line status
const IER_MSI = 0x08; // modem status

const IIR_NO_INT = 0x01;
const IIR_MSI = 0x00;
const IIR_THRI = 0x02;
const IIR_RDI = 0x04;
const IIR_RLSI = 0x06;
const IIR_FIFO_ENABLED = 0xc0;

const FCR_ENABLE = 0x01;
const FCR_CLEAR_RX = 0x02;

const LCR_DLAB = 0x80;

const MCR_DTR = 0x01;
const MCR_RTS = 0x02;
const MCR_OUT1 = 0x04;
const MCR_OUT2 = 0x08;
const MCR_LOOP = 0x10;

const LSR_DR = 0x01;
const LSR_OE = 0x02;
const LSR_THRE = 0x20;
const LSR_TEMT = 0x40;

const MSR_DCTS = 0x01;
const MSR_DDSR = 0x02;
const MSR_TERI = 0x04;
const MSR_DDCD = 0x08;
const MSR_CTS = 0x10;
const MSR_DSR = 0x20;
const MSR_RI = 0x40;
const MSR_DCD = 0x80;

const FIFO_SIZE = 16;

export class Uart16550 implements PortHandler {
  private ier = 0;
  private lcr = 0x03; // 8N1
  private mcr = 0;
  private lsrErrors = 0;
  private msr = MSR_CTS | MSR_DSR | MSR_DCD; // a terminal is attached
  private scr = 0;
  private fcr = 0;
  private divisor = 12; // 9600 baud
  private readonly rx: number[] = [];
  private thrInterruptPending = false;
  private irqHigh = false;

  constructor(
    readonly base: number,
    private readonly irq: IrqLine,
    /** Receives every byte the guest transmits (not in loopback mode). */
    private readonly onTransmit: (byte: number) => void,
  ) {}

  register(io: IoBus): void {
    io.register(this.base, 8, this);
  }

  /** Queues bytes as if typed on the terminal. */
  receive(bytes: Iterable<number>): void {
    for (const b of bytes) this.enqueueRx(b);
    this.updateIrq();
  }

  private enqueueRx(byte: number): void {
    const capacity = this.fcr & FCR_ENABLE ? FIFO_SIZE : 1;
    if (this.rx.length >= capacity) {
      this.lsrErrors |= LSR_OE;
      return;
    }
    this.rx.push(byte & 0xff);
  }

  private lsr(): number {
    return (this.rx.length > 0 ? LSR_DR : 0) | this.lsrErrors | LSR_THRE | LSR_TEMT;
  }

  private modemStatus(): number {
    if (!(this.mcr & MCR_LOOP)) return this.msr;
    // Loopback: the modem outputs feed the modem inputs.
    const loop =
      (this.mcr & MCR_RTS ? MSR_CTS : 0) |
      (this.mcr & MCR_DTR ? MSR_DSR : 0) |
      (this.mcr & MCR_OUT1 ? MSR_RI : 0) |
      (this.mcr & MCR_OUT2 ? MSR_DCD : 0);
    return loop | (this.msr & 0x0f);
  }

  /** The identification the IIR reports, by priority. */
  private interruptId(): number {
    if (this.ier & IER_RLSI && this.lsrErrors) return IIR_RLSI;
    if (this.ier & IER_RDI && this.rx.length > 0) return IIR_RDI;
    if (this.ier & IER_THRI && this.thrInterruptPending) return IIR_THRI;
    if (this.ier & IER_MSI && this.modemStatus() & 0x0f) return IIR_MSI;
    return IIR_NO_INT;
  }

  private updateIrq(): void {
    const high = this.interruptId() !== IIR_NO_INT;
    if (high !== this.irqHigh) {
      this.irqHigh = high;
      if (high) this.irq.raise();
      else this.irq.lower();
    }
  }

  read(port: number): number {
    const dlab = (this.lcr & LCR_DLAB) !== 0;
    let value: number;
    switch (port - this.base) {
      case RBR_THR:
        if (dlab) return this.divisor & 0xff;
        value = this.rx.shift() ?? 0;
        break;
      case IER:
        if (dlab) return this.divisor >> 8;
        return this.ier;
      case IIR_FCR: {
        const id = this.interruptId();
        if (id === IIR_THRI) this.thrInterruptPending = false; // reading IIR acknowledges THRE
        value = id | (this.fcr & FCR_ENABLE ? IIR_FIFO_ENABLED : 0);
        break;
      }
      case LCR:
        return this.lcr;
      case MCR:
        return this.mcr;
      case LSR:
        value = this.lsr();
        this.lsrErrors = 0;
        break;
      case MSR:
        value = this.modemStatus();
        this.msr &= 0xf0; // reading clears the delta bits
        break;
      default:
        return this.scr;
    }
    this.updateIrq();
    return value;
  }

  write(port: number, _size: 1 | 2 | 4, value: number): void {
    value &= 0xff;
    const dlab = (this.lcr & LCR_DLAB) !== 0;
    switch (port - this.base) {
      case RBR_THR:
        if (dlab) {
          this.divisor = (this.divisor & 0xff00) | value;
          return;
        }
        this.transmit(value);
        break;
      case IER:
        if (dlab) {
          this.divisor = (this.divisor & 0xff) | (value << 8);
          return;
        }
        // Enabling THRE interrupts with THR empty raises one at once.
        if (value & IER_THRI && !(this.ier & IER_THRI)) this.thrInterruptPending = true;
        this.ier = value & 0x0f;
        break;
      case IIR_FCR:
        if (value & FCR_CLEAR_RX) this.rx.length = 0;
        this.fcr = value & 0xc9; // bits 1-2 self-clear
        break;
      case LCR:
        this.lcr = value;
        return;
      case MCR: {
        const before = this.modemStatus();
        this.mcr = value & 0x1f;
        this.noteModemChange(before);
        break;
      }
      case LSR:
      case MSR:
        return; // read-only (factory test registers)
      default:
        this.scr = value;
        return;
    }
    this.updateIrq();
  }

  private transmit(byte: number): void {
    if (this.mcr & MCR_LOOP) this.enqueueRx(byte);
    else this.onTransmit(byte);
    // THR and the shift register are empty again at once.
    this.thrInterruptPending = true;
  }

  /** Sets the MSR delta bits for modem lines that changed (loopback tests read them). */
  private noteModemChange(before: number): void {
    if (!(this.mcr & MCR_LOOP)) return;
    const after = this.modemStatus();
    const changed = before ^ after;
    if (changed & MSR_CTS) this.msr |= MSR_DCTS;
    if (changed & MSR_DSR) this.msr |= MSR_DDSR;
    if (changed & MSR_DCD) this.msr |= MSR_DDCD;
    if (before & MSR_RI && !(after & MSR_RI)) this.msr |= MSR_TERI;
  }
}
