import type { IoBus, IrqLine, PortHandler } from "../bus.js";
import type { TimedDevice, VirtualClock } from "./clock.js";

/**
 * The 8254 programmable interval timer (Intel 8254 data sheet, order
 * 231164): three 16-bit down-counters clocked at 1.193182 MHz.
 * Counter 0 drives IRQ 0 (the system timer); counter 2 is gated by port
 * 0x61 bit 0 and its output is readable as port 0x61 bit 5 — Linux
 * calibrates the TSC with exactly that (pit_calibrate_tsc,
 * quick_pit_calibrate). Counter 1 (DRAM refresh) only counts.
 *
 * Counters are computed from the virtual clock when read, never ticked:
 * the count at time t is a function of the load time and the mode. Modes
 * 0 (interrupt on terminal count), 2 (rate generator) and 3 (square wave)
 * are exact; 1 and 5 behave as 0 once triggered, 4 as 0 with a pulse.
 */

export const PIT_HZ = 1_193_182;
const NS_PER_SECOND = 1e9;

// Control word (port 0x43) fields.
const CONTROL_READ_BACK = 3; // bits 7:6 = 11
const ACCESS_LATCH = 0;
const ACCESS_LSB = 1;
const ACCESS_MSB = 2;
const ACCESS_WORD = 3;

// Port 0x61 (system control port B) bits.
const PORT61_GATE2 = 0x01;
const PORT61_SPEAKER = 0x02;
const PORT61_REFRESH = 0x10;
const PORT61_OUT2 = 0x20;
/** The refresh request bit toggles every 15.085 µs on an AT. */
const REFRESH_PERIOD_NS = 15_085;

class Counter {
  mode = 0;
  access = ACCESS_WORD;
  /** Reload value (0 means 65536). */
  reload = 0x10000;
  /** Virtual time counting (re)started, or NaN while not counting. */
  startNs = Number.NaN;
  /** Ticks counted before the last pause (gate low in mode 0). */
  pausedTicks = 0;
  gate: boolean;
  /** Waiting for the count after a control word (no count loaded yet). */
  armed = false;
  private writeLow = true; // for ACCESS_WORD writes: the LSB comes next
  private pendingLow = 0;
  private readLow = true; // for ACCESS_WORD reads
  private latched: number[] = [];
  private statusLatched: number | undefined;
  /** For counter 0: the tick count of the next IRQ edge. */
  nextIrqTick = Number.POSITIVE_INFINITY;

  constructor(gate: boolean) {
    this.gate = gate;
  }

  ticks(nowNs: number): number {
    if (Number.isNaN(this.startNs)) return this.pausedTicks;
    return this.pausedTicks + Math.floor(((nowNs - this.startNs) * PIT_HZ) / NS_PER_SECOND);
  }

  /** Time (ns) at which `ticks()` reaches `tick`. */
  timeOfTick(tick: number): number {
    return this.startNs + Math.ceil(((tick - this.pausedTicks) * NS_PER_SECOND) / PIT_HZ);
  }

  private get periodic(): boolean {
    return (this.mode & 3) === 2 || (this.mode & 3) === 3 || this.mode === 6 || this.mode === 7;
  }

  count(nowNs: number): number {
    if (Number.isNaN(this.startNs) && this.pausedTicks === 0 && this.armed) return 0;
    const elapsed = this.ticks(nowNs);
    const n = this.reload;
    if (!this.periodic) return (n - elapsed) & 0xffff;
    const phase = elapsed % n;
    if ((this.mode & 3) === 3) {
      // Square wave: decrements by 2, reloading at each half period.
      const half = Math.ceil(n / 2);
      const inHalf = phase < half ? phase : phase - half;
      return (n - 2 * inHalf) & 0xffff;
    }
    return (n - phase) & 0xffff;
  }

  output(nowNs: number): boolean {
    if (Number.isNaN(this.startNs)) {
      // Not counting: modes 2/3 hold OUT high; mode 0 is low until terminal count.
      if (this.periodic) return true;
      return !this.armed && this.pausedTicks >= this.reload;
    }
    const elapsed = this.ticks(nowNs);
    const n = this.reload;
    switch (this.mode & 3) {
      case 2:
        return elapsed % n !== n - 1;
      case 3:
        return elapsed % n < Math.ceil(n / 2);
      default:
        return elapsed >= n;
    }
  }

  /** Starts or restarts counting from the reload value at `nowNs`. */
  start(nowNs: number): void {
    this.pausedTicks = 0;
    this.armed = false;
    // With the gate low, modes 0/4 wait to resume and modes 1/2/3/5 wait for a rising edge.
    this.startNs = this.gate ? nowNs : Number.NaN;
    this.nextIrqTick = this.reload;
  }

  setGate(high: boolean, nowNs: number): void {
    if (high === this.gate) return;
    this.gate = high;
    if (this.armed) return;
    if (this.periodic || this.mode === 1 || this.mode === 5) {
      // Modes 1/2/3/5: a rising gate (re)starts the count; a low gate stops it.
      if (high) this.start(nowNs);
      else {
        this.pausedTicks = 0;
        this.startNs = Number.NaN;
      }
    } else if (high) {
      this.startNs = nowNs; // modes 0/4: resume
    } else {
      this.pausedTicks = this.ticks(nowNs);
      this.startNs = Number.NaN;
    }
  }

  writeControl(value: number, nowNs: number): void {
    const access = (value >> 4) & 3;
    if (access === ACCESS_LATCH) {
      this.latchCount(nowNs);
      return;
    }
    this.access = access;
    this.mode = (value >> 1) & 7;
    this.writeLow = true;
    this.readLow = true;
    this.latched = [];
    this.statusLatched = undefined;
    this.armed = true;
    this.startNs = Number.NaN;
    this.pausedTicks = 0;
    this.nextIrqTick = Number.POSITIVE_INFINITY;
  }

  latchCount(nowNs: number): void {
    if (this.latched.length > 0) return; // a second latch before reading is ignored
    const value = this.count(nowNs);
    if (this.access === ACCESS_LSB) this.latched = [value & 0xff];
    else if (this.access === ACCESS_MSB) this.latched = [value >> 8];
    else this.latched = [value & 0xff, value >> 8];
  }

  latchStatus(nowNs: number): void {
    if (this.statusLatched !== undefined) return;
    this.statusLatched =
      (this.output(nowNs) ? 0x80 : 0) | (this.armed ? 0x40 : 0) | (this.access << 4) | (this.mode << 1);
  }

  writeCount(value: number, nowNs: number): void {
    value &= 0xff;
    let full: number;
    if (this.access === ACCESS_LSB) full = value;
    else if (this.access === ACCESS_MSB) full = value << 8;
    else if (this.writeLow) {
      this.pendingLow = value;
      this.writeLow = false;
      if (this.mode === 0) {
        // Writing the first byte in mode 0 stops the count and drops OUT.
        this.startNs = Number.NaN;
        this.pausedTicks = 0;
        this.armed = true;
      }
      return;
    } else {
      full = this.pendingLow | (value << 8);
      this.writeLow = true;
    }
    this.reload = full === 0 ? 0x10000 : full;
    this.start(nowNs);
  }

  readCount(nowNs: number): number {
    if (this.statusLatched !== undefined) {
      const status = this.statusLatched;
      this.statusLatched = undefined;
      return status;
    }
    if (this.latched.length > 0) return this.latched.shift()!;
    const value = this.count(nowNs);
    if (this.access === ACCESS_LSB) return value & 0xff;
    if (this.access === ACCESS_MSB) return value >> 8;
    const byte = this.readLow ? value & 0xff : value >> 8;
    this.readLow = !this.readLow;
    return byte;
  }
}

export class Pit8254 implements PortHandler, TimedDevice {
  private readonly counters = [new Counter(true), new Counter(true), new Counter(false)];
  private speakerData = false;
  /** Port 0x61 bits 2-3 (parity/channel check disables), kept for read-back. */
  private port61Low = 0;

  constructor(
    private readonly clock: VirtualClock,
    private readonly irq0: IrqLine,
  ) {}

  register(io: IoBus): void {
    io.register(0x40, 4, this);
    io.register(0x61, 1, this);
  }

  read(port: number): number {
    const now = this.clock.now();
    if (port === 0x61) {
      const c2 = this.counters[2]!;
      return (
        (c2.gate ? PORT61_GATE2 : 0) |
        (this.speakerData ? PORT61_SPEAKER : 0) |
        this.port61Low |
        (Math.floor(now / REFRESH_PERIOD_NS) & 1 ? PORT61_REFRESH : 0) |
        (c2.output(now) ? PORT61_OUT2 : 0)
      );
    }
    if (port === 0x43) return 0xff; // the control register is write-only
    return this.counters[port - 0x40]!.readCount(now);
  }

  write(port: number, _size: 1 | 2 | 4, value: number): void {
    const now = this.clock.now();
    if (port === 0x61) {
      this.counters[2]!.setGate((value & PORT61_GATE2) !== 0, now);
      this.speakerData = (value & PORT61_SPEAKER) !== 0;
      this.port61Low = value & 0x0c;
      return;
    }
    if (port === 0x43) {
      this.writeControlWord(value & 0xff, now);
      return;
    }
    this.counters[port - 0x40]!.writeCount(value, now);
  }

  private writeControlWord(value: number, now: number): void {
    const select = value >> 6;
    if (select !== CONTROL_READ_BACK) {
      this.counters[select]!.writeControl(value, now);
      return;
    }
    // Read-back: bit 5 = 0 latches counts, bit 4 = 0 latches status, bits 1-3 select counters.
    for (let i = 0; i < 3; i++) {
      if ((value & (2 << i)) === 0) continue;
      if ((value & 0x20) === 0) this.counters[i]!.latchCount(now);
      if ((value & 0x10) === 0) this.counters[i]!.latchStatus(now);
    }
  }

  /** Counter `index`'s current count (for tests and diagnostics). */
  countOf(index: number): number {
    return this.counters[index]!.count(this.clock.now());
  }

  outputOf(index: number): boolean {
    return this.counters[index]!.output(this.clock.now());
  }

  nextEventNs(): number {
    const c0 = this.counters[0]!;
    if (!Number.isFinite(c0.nextIrqTick) || Number.isNaN(c0.startNs)) return Number.POSITIVE_INFINITY;
    return c0.timeOfTick(c0.nextIrqTick);
  }

  advance(nowNs: number): void {
    const c0 = this.counters[0]!;
    if (!Number.isFinite(c0.nextIrqTick) || Number.isNaN(c0.startNs)) return;
    const elapsed = c0.ticks(nowNs);
    if (elapsed < c0.nextIrqTick) return;
    // One rising edge on IRQ 0; if the machine fell behind, the missed
    // periods collapse into this one (as a late-serviced 8259 would see them).
    this.irq0.raise();
    this.irq0.lower();
    const mode = c0.mode & 3;
    if (mode === 2 || mode === 3) {
      const n = c0.reload;
      c0.nextIrqTick = (Math.floor(elapsed / n) + 1) * n;
    } else {
      c0.nextIrqTick = Number.POSITIVE_INFINITY; // one-shot modes fire once per count written
    }
  }
}
