import type { InterruptController, MmioHandler } from "../bus.js";
import type { TimedDevice, VirtualClock } from "./clock.js";

/**
 * The local APIC (xAPIC, Intel SDM vol. 3A ch. 11), memory-mapped at
 * 0xFEE00000: ID, version, TPR/PPR, EOI, SVR, the 256-bit ISR/TMR/IRR,
 * ESR, ICR (fixed IPIs to itself), the LVT (timer, LINT0/1, error...) and
 * the APIC timer (one-shot and periodic, divide configuration). LINT0 in
 * ExtINT mode — or a software-disabled APIC — passes the 8259's INTR
 * through ("virtual wire"), so the PIC path keeps working until the guest
 * switches to the I/O APIC.
 */

export { LAPIC_BASE } from "./apic-constants.js";
export const LAPIC_SIZE = 0x1000;

// Register offsets (SDM vol. 3A, Table 11-1).
const REG_ID = 0x20;
const REG_VERSION = 0x30;
const REG_TPR = 0x80;
const REG_APR = 0x90;
const REG_PPR = 0xa0;
const REG_EOI = 0xb0;
const REG_LDR = 0xd0;
const REG_DFR = 0xe0;
const REG_SVR = 0xf0;
const REG_ISR = 0x100;
const REG_TMR = 0x180;
const REG_IRR = 0x200;
const REG_ESR = 0x280;
const REG_ICR_LOW = 0x300;
const REG_ICR_HIGH = 0x310;
const REG_LVT_TIMER = 0x320;
const REG_LVT_LINT0 = 0x350;
const REG_LVT_ERROR = 0x370;
const REG_TIMER_INITIAL = 0x380;
const REG_TIMER_CURRENT = 0x390;
const REG_TIMER_DIVIDE = 0x3e0;
/** LVT registers: timer, thermal, performance, LINT0, LINT1, error (0x320-0x370). */
const LVT_FIRST = REG_LVT_TIMER;
const LVT_LAST = REG_LVT_ERROR;

/** Version 0x14 (integrated APIC), 6 LVT entries (max LVT index 5). */
const VERSION = 0x00050014;
const SVR_ENABLE = 0x100;
const LVT_MASKED = 0x10000;
const LVT_TIMER_PERIODIC = 0x20000;
const DELIVERY_EXTINT = 7;
const ICR_SHORTHAND_SELF = 1;
const ICR_SHORTHAND_ALL_INCLUDING_SELF = 2;
/** The APIC timer's input clock: 1 GHz, one tick per virtual nanosecond (divided by the divide register). */
const TIMER_HZ = 1e9;

export class LocalApic implements MmioHandler, InterruptController, TimedDevice {
  private readonly irr = new Uint32Array(8);
  private readonly isr = new Uint32Array(8);
  private readonly tmr = new Uint32Array(8);
  private tpr = 0;
  private svr = 0xff; // software-disabled after reset
  private ldr = 0;
  private dfr = 0xffffffff;
  private esr = 0;
  private icrLow = 0;
  private icrHigh = 0;
  private readonly lvt = new Uint32Array(6).fill(LVT_MASKED);
  private divide = 0;
  private initialCount = 0;
  private timerStartNs = 0;
  private timerArmed = false;
  /** Called with a vector when a level-triggered interrupt is EOI'd (the I/O APIC clears remote IRR). */
  onLevelEoi: (vector: number) => void = () => {};

  constructor(
    private readonly clock: VirtualClock,
    /** The 8259 pair, seen through LINT0 in ExtINT mode. */
    private readonly pic: InterruptController,
    readonly id = 0,
  ) {}

  private get enabled(): boolean {
    return (this.svr & SVR_ENABLE) !== 0;
  }

  /** Whether the 8259's INTR reaches the CPU: APIC disabled, or LINT0 unmasked in ExtINT mode. */
  private picPassesThrough(): boolean {
    if (!this.enabled) return true;
    const lint0 = this.lvt[(REG_LVT_LINT0 - LVT_FIRST) >> 4]!;
    return (lint0 & LVT_MASKED) === 0 && ((lint0 >> 8) & 7) === DELIVERY_EXTINT;
  }

  /** Accepts a fixed interrupt (from the I/O APIC, an IPI or the LVT). */
  accept(vector: number, levelTriggered = false): void {
    if (vector < 16) {
      this.esr |= 0x40; // received illegal vector
      return;
    }
    const word = vector >> 5;
    const bit = 1 << (vector & 31);
    this.irr[word]! |= bit;
    if (levelTriggered) this.tmr[word]! |= bit;
    else this.tmr[word]! &= ~bit;
  }

  private static highest(bits: Uint32Array): number {
    for (let word = 7; word >= 0; word--) {
      const value = bits[word]!;
      if (value !== 0) return word * 32 + 31 - Math.clz32(value);
    }
    return -1;
  }

  private processorPriority(): number {
    const isrv = LocalApic.highest(this.isr);
    const isrClass = isrv < 0 ? 0 : isrv & 0xf0;
    return (this.tpr & 0xf0) >= isrClass ? this.tpr & 0xff : isrClass;
  }

  private deliverable(): number {
    if (!this.enabled) return -1;
    const vector = LocalApic.highest(this.irr);
    if (vector < 0 || (vector & 0xf0) <= (this.processorPriority() & 0xf0)) return -1;
    return vector;
  }

  hasInterrupt(): boolean {
    return this.deliverable() >= 0 || (this.picPassesThrough() && this.pic.hasInterrupt());
  }

  acknowledge(): number {
    const vector = this.deliverable();
    if (vector >= 0) {
      const word = vector >> 5;
      const bit = 1 << (vector & 31);
      this.irr[word]! &= ~bit;
      this.isr[word]! |= bit;
      return vector;
    }
    if (this.picPassesThrough() && this.pic.hasInterrupt()) return this.pic.acknowledge();
    return this.svr & 0xff; // spurious-interrupt vector
  }

  private eoi(): void {
    const vector = LocalApic.highest(this.isr);
    if (vector < 0) return;
    const word = vector >> 5;
    const bit = 1 << (vector & 31);
    this.isr[word]! &= ~bit;
    if (this.tmr[word]! & bit) {
      this.tmr[word]! &= ~bit;
      this.onLevelEoi(vector);
    }
  }

  private timerDivisor(): number {
    const code = (this.divide & 3) | ((this.divide >> 1) & 4);
    return code === 7 ? 1 : 2 << code;
  }

  private timerPeriodNs(): number {
    return (this.initialCount * this.timerDivisor() * 1e9) / TIMER_HZ;
  }

  private currentCount(): number {
    if (!this.timerArmed || this.initialCount === 0) return 0;
    const elapsedTicks = Math.floor(
      ((this.clock.now() - this.timerStartNs) * TIMER_HZ) / 1e9 / this.timerDivisor(),
    );
    const lvt = this.lvt[0]!;
    if (lvt & LVT_TIMER_PERIODIC) return this.initialCount - (elapsedTicks % this.initialCount);
    return Math.max(0, this.initialCount - elapsedTicks);
  }

  nextEventNs(): number {
    if (!this.timerArmed || this.initialCount === 0) return Number.POSITIVE_INFINITY;
    return this.timerStartNs + this.timerPeriodNs();
  }

  advance(nowNs: number): void {
    if (!this.timerArmed || this.initialCount === 0) return;
    const due = this.timerStartNs + this.timerPeriodNs();
    if (nowNs < due) return;
    const lvt = this.lvt[0]!;
    if (!(lvt & LVT_MASKED)) this.accept(lvt & 0xff);
    if (lvt & LVT_TIMER_PERIODIC) {
      const period = this.timerPeriodNs();
      this.timerStartNs = due + Math.floor((nowNs - due) / period) * period;
    } else {
      this.timerArmed = false;
    }
  }

  read(offset: number, size: 1 | 2 | 4): number {
    const aligned = offset & 0xff0;
    const value = this.readRegister(aligned);
    if (size === 4) return value >>> 0;
    return (value >>> (8 * (offset & 3))) & (size === 1 ? 0xff : 0xffff);
  }

  private readRegister(offset: number): number {
    if (offset >= REG_ISR && offset < REG_ISR + 0x80) return this.isr[(offset - REG_ISR) >> 4]!;
    if (offset >= REG_TMR && offset < REG_TMR + 0x80) return this.tmr[(offset - REG_TMR) >> 4]!;
    if (offset >= REG_IRR && offset < REG_IRR + 0x80) return this.irr[(offset - REG_IRR) >> 4]!;
    if (offset >= LVT_FIRST && offset <= LVT_LAST) return this.lvt[(offset - LVT_FIRST) >> 4]!;
    switch (offset) {
      case REG_ID:
        return this.id << 24;
      case REG_VERSION:
        return VERSION;
      case REG_TPR:
        return this.tpr;
      case REG_APR:
        return 0;
      case REG_PPR:
        return this.processorPriority();
      case REG_LDR:
        return this.ldr;
      case REG_DFR:
        return this.dfr;
      case REG_SVR:
        return this.svr;
      case REG_ESR:
        return this.esr;
      case REG_ICR_LOW:
        return this.icrLow & ~0x1000; // delivery status: idle
      case REG_ICR_HIGH:
        return this.icrHigh;
      case REG_TIMER_INITIAL:
        return this.initialCount;
      case REG_TIMER_CURRENT:
        return this.currentCount();
      case REG_TIMER_DIVIDE:
        return this.divide;
      default:
        return 0;
    }
  }

  write(offset: number, _size: 1 | 2 | 4, value: number): void {
    const aligned = offset & 0xff0;
    value >>>= 0;
    if (aligned >= LVT_FIRST && aligned <= LVT_LAST) {
      // Software-disabled: the mask bit stays set (SDM §11.4.7.2).
      this.lvt[(aligned - LVT_FIRST) >> 4] = this.enabled ? value : value | LVT_MASKED;
      return;
    }
    switch (aligned) {
      case REG_TPR:
        this.tpr = value & 0xff;
        return;
      case REG_EOI:
        this.eoi();
        return;
      case REG_LDR:
        this.ldr = value & 0xff000000;
        return;
      case REG_DFR:
        this.dfr = value | 0x0fffffff;
        return;
      case REG_SVR:
        this.svr = value & 0x3ff;
        if (!this.enabled) for (let i = 0; i < this.lvt.length; i++) this.lvt[i]! |= LVT_MASKED;
        return;
      case REG_ESR:
        this.esr = 0;
        return;
      case REG_ICR_HIGH:
        this.icrHigh = value & 0xff000000;
        return;
      case REG_ICR_LOW:
        this.icrLow = value;
        this.sendIpi();
        return;
      case REG_TIMER_INITIAL:
        this.initialCount = value;
        this.timerStartNs = this.clock.now();
        this.timerArmed = value !== 0;
        return;
      case REG_TIMER_DIVIDE:
        this.divide = value & 0xb;
        return;
      default:
        return; // read-only or reserved
    }
  }

  /** One CPU: fixed IPIs that include this APIC are accepted; INIT/SIPI/NMI are ignored. */
  private sendIpi(): void {
    const mode = (this.icrLow >> 8) & 7;
    if (mode !== 0) return;
    const shorthand = (this.icrLow >> 18) & 3;
    const toSelf =
      shorthand === ICR_SHORTHAND_SELF ||
      shorthand === ICR_SHORTHAND_ALL_INCLUDING_SELF ||
      (shorthand === 0 && this.icrHigh >>> 24 === this.id);
    if (toSelf) this.accept(this.icrLow & 0xff, ((this.icrLow >> 15) & 1) === 1);
  }

  /** Diagnostics: is the vector pending or in service? */
  state(vector: number): { pending: boolean; inService: boolean } {
    const word = vector >> 5;
    const bit = 1 << (vector & 31);
    return { pending: (this.irr[word]! & bit) !== 0, inService: (this.isr[word]! & bit) !== 0 };
  }
}
