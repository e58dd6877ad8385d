import type { IoBus, IrqLine, PortHandler } from "../bus.js";
import type { TimedDevice, VirtualClock } from "./clock.js";

/**
 * The MC146818 real-time clock and CMOS RAM (Motorola MC146818A data sheet;
 * PC/AT CMOS layout as SeaBIOS and qemu's hw/rtc/mc146818rtc.c use it).
 * Index port 0x70 (bit 7 = NMI disable), data port 0x71, 128 bytes.
 *
 * The time of day comes from a fixed virtual epoch plus virtual time, so a
 * boot is deterministic. Registers A-D: update-in-progress (UIP) is set for
 * the last 244 µs of each second, the periodic interrupt follows the rate
 * in register A, update-ended and alarm flags are set once a second, and
 * any enabled flag raises IRQ 8 (register C reads clear them).
 */

// Register indexes.
export const CMOS_SECONDS = 0x00;
const CMOS_SECONDS_ALARM = 0x01;
export const CMOS_MINUTES = 0x02;
const CMOS_MINUTES_ALARM = 0x03;
export const CMOS_HOURS = 0x04;
const CMOS_HOURS_ALARM = 0x05;
const CMOS_DAY_OF_WEEK = 0x06;
export const CMOS_DAY = 0x07;
export const CMOS_MONTH = 0x08;
export const CMOS_YEAR = 0x09;
export const CMOS_REG_A = 0x0a;
export const CMOS_REG_B = 0x0b;
export const CMOS_REG_C = 0x0c;
export const CMOS_REG_D = 0x0d;
const CMOS_EQUIPMENT = 0x14;
const CMOS_BASE_MEM_LOW = 0x15;
const CMOS_EXT_MEM_LOW = 0x17;
const CMOS_EXT_MEM2_LOW = 0x30;
const CMOS_CENTURY = 0x32;
const CMOS_MEM_ABOVE_16M_LOW = 0x34;
const CMOS_BOOT_ORDER_2_3 = 0x38; // high nibble: third boot device; bit 0: skip boot signature check
const CMOS_BOOT_ORDER_0_1 = 0x3d; // low nibble first, high nibble second boot device
const CMOS_MEM_ABOVE_4G = 0x5b; // 3 bytes, 64 KiB units
/** Boot device codes in 0x3D/0x38 (SeaBIOS): 1 floppy, 2 hard disk, 3 CD-ROM. */
const BOOT_HARD_DISK = 2;

// Register A/B/C bits.
const REG_A_UIP = 0x80;
const REG_B_SET = 0x80;
const REG_B_PIE = 0x40;
const REG_B_AIE = 0x20;
const REG_B_UIE = 0x10;
const REG_B_BINARY = 0x04;
const REG_B_24H = 0x02;
const REG_C_IRQF = 0x80;
const REG_C_PF = 0x40;
const REG_C_AF = 0x20;
const REG_C_UF = 0x10;

/** The clock fields (the alarm registers between them are plain storage). */
const TIME_REGISTERS: readonly number[] = [
  CMOS_SECONDS,
  CMOS_MINUTES,
  CMOS_HOURS,
  CMOS_DAY_OF_WEEK,
  CMOS_DAY,
  CMOS_MONTH,
  CMOS_YEAR,
  CMOS_CENTURY,
];

/** Update cycle: UIP is high during the 244 µs before each second rolls over. */
const UIP_NS = 244_000;
const NS_PER_SECOND = 1e9;

/** The default virtual epoch: 2024-01-01 00:00:00 UTC. */
export const DEFAULT_EPOCH_MS = Date.UTC(2024, 0, 1);

export interface RtcOptions {
  /** Bytes of RAM (for the memory size fields). */
  ramSize: number;
  /** Wall-clock time (ms since 1970, UTC) at virtual time 0. */
  epochMs?: number;
}

export class Rtc implements PortHandler, TimedDevice {
  readonly cmos = new Uint8Array(128);
  private index = 0;
  private readonly epochMs: number;
  /** Seconds offset set by the guest writing the clock (with SET in register B). */
  private guestOffsetSeconds = 0;
  /** Last whole second for which update-ended/alarm flags were raised. */
  private lastSecond = 0;
  private nextPeriodicNs = Number.POSITIVE_INFINITY;
  private irqHigh = false;

  constructor(
    private readonly clock: VirtualClock,
    private readonly irq8: IrqLine,
    options: RtcOptions,
  ) {
    this.epochMs = options.epochMs ?? DEFAULT_EPOCH_MS;
    this.cmos[CMOS_REG_A] = 0x26; // 32.768 kHz time base, 1024 Hz periodic rate
    this.cmos[CMOS_REG_B] = REG_B_24H; // BCD, 24-hour
    this.cmos[CMOS_REG_D] = 0x80; // valid RAM and time
    this.setMemorySize(options.ramSize);
    this.cmos[CMOS_EQUIPMENT] = 0x06; // no floppy, maths coprocessor, VGA (bits 4-5 = 00: EGA/VGA)
    this.cmos[CMOS_BOOT_ORDER_0_1] = BOOT_HARD_DISK;
    this.cmos[CMOS_BOOT_ORDER_2_3] = 0;
  }

  register(io: IoBus): void {
    io.register(0x70, 2, this);
  }

  private setMemorySize(ramSize: number): void {
    const put16 = (at: number, value: number) => {
      this.cmos[at] = value & 0xff;
      this.cmos[at + 1] = (value >> 8) & 0xff;
    };
    put16(CMOS_BASE_MEM_LOW, 640);
    // KiB between 1 MiB and 64 MiB (saturates at 0xFFFF).
    const extKiB = Math.min(0xffff, Math.max(0, (Math.min(ramSize, 64 * 1024 * 1024) - 0x100000) / 1024));
    put16(CMOS_EXT_MEM_LOW, extKiB);
    put16(CMOS_EXT_MEM2_LOW, extKiB);
    // 64 KiB blocks between 16 MiB and 4 GiB.
    const below4G = Math.min(ramSize, 0x1_0000_0000);
    const above16M = Math.min(0xffff, Math.max(0, (below4G - 16 * 1024 * 1024) / 65536));
    put16(CMOS_MEM_ABOVE_16M_LOW, above16M);
    const above4G = Math.max(0, ramSize - 0x1_0000_0000) / 65536;
    this.cmos[CMOS_MEM_ABOVE_4G] = above4G & 0xff;
    this.cmos[CMOS_MEM_ABOVE_4G + 1] = (above4G >> 8) & 0xff;
    this.cmos[CMOS_MEM_ABOVE_4G + 2] = (above4G >> 16) & 0xff;
  }

  /** Guest wall-clock seconds since 1970 at virtual time `nowNs`. */
  private unixSeconds(nowNs: number): number {
    return Math.floor(this.epochMs / 1000) + Math.floor(nowNs / NS_PER_SECOND) + this.guestOffsetSeconds;
  }

  /** The date and time the guest sees now (UTC). */
  now(): Date {
    return new Date(this.unixSeconds(this.clock.now()) * 1000);
  }

  private encode(value: number): number {
    if (this.cmos[CMOS_REG_B]! & REG_B_BINARY) return value;
    return ((Math.floor(value / 10) % 10) << 4) | (value % 10);
  }

  private decode(value: number): number {
    if (this.cmos[CMOS_REG_B]! & REG_B_BINARY) return value;
    return (value >> 4) * 10 + (value & 0x0f);
  }

  private encodeHours(hours: number): number {
    if (this.cmos[CMOS_REG_B]! & REG_B_24H) return this.encode(hours);
    const pm = hours >= 12;
    const h12 = hours % 12 === 0 ? 12 : hours % 12;
    return this.encode(h12) | (pm ? 0x80 : 0);
  }

  /** Fills the time registers from virtual time (unless the guest is setting the clock). */
  private refreshTime(nowNs: number): void {
    if (this.cmos[CMOS_REG_B]! & REG_B_SET) return;
    const date = new Date(this.unixSeconds(nowNs) * 1000);
    this.cmos[CMOS_SECONDS] = this.encode(date.getUTCSeconds());
    this.cmos[CMOS_MINUTES] = this.encode(date.getUTCMinutes());
    this.cmos[CMOS_HOURS] = this.encodeHours(date.getUTCHours());
    this.cmos[CMOS_DAY_OF_WEEK] = this.encode(date.getUTCDay() + 1);
    this.cmos[CMOS_DAY] = this.encode(date.getUTCDate());
    this.cmos[CMOS_MONTH] = this.encode(date.getUTCMonth() + 1);
    this.cmos[CMOS_YEAR] = this.encode(date.getUTCFullYear() % 100);
    this.cmos[CMOS_CENTURY] = this.encode(Math.floor(date.getUTCFullYear() / 100));
  }

  /** After the guest sets the clock (SET cleared), keep its time as an offset. */
  private adoptGuestTime(nowNs: number): void {
    const hoursRaw = this.cmos[CMOS_HOURS]!;
    let hours = this.decode(hoursRaw & 0x7f);
    if (!(this.cmos[CMOS_REG_B]! & REG_B_24H)) hours = (hours % 12) + (hoursRaw & 0x80 ? 12 : 0);
    const year = this.decode(this.cmos[CMOS_CENTURY]!) * 100 + this.decode(this.cmos[CMOS_YEAR]!);
    const guestMs = Date.UTC(
      year,
      this.decode(this.cmos[CMOS_MONTH]!) - 1,
      this.decode(this.cmos[CMOS_DAY]!),
      hours,
      this.decode(this.cmos[CMOS_MINUTES]!),
      this.decode(this.cmos[CMOS_SECONDS]!),
    );
    if (Number.isNaN(guestMs)) return;
    this.guestOffsetSeconds = 0;
    this.guestOffsetSeconds = Math.floor(guestMs / 1000) - this.unixSeconds(nowNs);
  }

  read(port: number): number {
    if (port === 0x70) return 0xff; // the index register is write-only
    const now = this.clock.now();
    const index = this.index;
    if (index <= CMOS_YEAR || index === CMOS_CENTURY) this.refreshTime(now);
    switch (index) {
      case CMOS_REG_A: {
        const inUpdate = now % NS_PER_SECOND >= NS_PER_SECOND - UIP_NS;
        return (
          (this.cmos[CMOS_REG_A]! & 0x7f) |
          (inUpdate && !(this.cmos[CMOS_REG_B]! & REG_B_SET) ? REG_A_UIP : 0)
        );
      }
      case CMOS_REG_C: {
        this.advance(now);
        const value = this.cmos[CMOS_REG_C]!;
        this.cmos[CMOS_REG_C] = 0;
        this.updateIrq();
        return value;
      }
      default:
        return this.cmos[index]!;
    }
  }

  write(port: number, _size: 1 | 2 | 4, value: number): void {
    value &= 0xff;
    if (port === 0x70) {
      this.index = value & 0x7f; // bit 7 masks NMI, which nothing here raises
      return;
    }
    const now = this.clock.now();
    switch (this.index) {
      case CMOS_REG_A:
        this.cmos[CMOS_REG_A] = value & 0x7f;
        this.schedulePeriodic(now);
        return;
      case CMOS_REG_B: {
        const wasSetting = (this.cmos[CMOS_REG_B]! & REG_B_SET) !== 0;
        if (!wasSetting && value & REG_B_SET) this.refreshTime(now);
        this.cmos[CMOS_REG_B] = value;
        if (wasSetting && !(value & REG_B_SET)) this.adoptGuestTime(now);
        this.schedulePeriodic(now);
        this.updateIrq();
        return;
      }
      case CMOS_REG_C:
      case CMOS_REG_D:
        return; // read-only
      default: {
        const isTime = TIME_REGISTERS.includes(this.index);
        const running = !(this.cmos[CMOS_REG_B]! & REG_B_SET);
        // Setting one field of a running clock keeps the others current.
        if (isTime && running) this.refreshTime(now);
        this.cmos[this.index] = value;
        if (isTime && running) this.adoptGuestTime(now);
      }
    }
  }

  /** Periodic interrupt period from register A's rate select (0 = off). */
  private periodicNs(): number {
    const rate = this.cmos[CMOS_REG_A]! & 0x0f;
    if (rate === 0) return 0;
    const shift = rate <= 2 ? rate + 7 : rate - 1;
    return (NS_PER_SECOND * (1 << shift)) / 32768;
  }

  private schedulePeriodic(nowNs: number): void {
    const period = this.periodicNs();
    if (period === 0 || !(this.cmos[CMOS_REG_B]! & REG_B_PIE)) {
      this.nextPeriodicNs = Number.POSITIVE_INFINITY;
      return;
    }
    this.nextPeriodicNs = (Math.floor(nowNs / period) + 1) * period;
  }

  nextEventNs(): number {
    const b = this.cmos[CMOS_REG_B]!;
    const nextSecond = b & (REG_B_UIE | REG_B_AIE) ? (this.lastSecond + 1) * NS_PER_SECOND : Infinity;
    return Math.min(this.nextPeriodicNs, nextSecond);
  }

  advance(nowNs: number): void {
    let flags = 0;
    if (nowNs >= this.nextPeriodicNs) {
      flags |= REG_C_PF;
      const period = this.periodicNs();
      this.nextPeriodicNs = period > 0 ? (Math.floor(nowNs / period) + 1) * period : Infinity;
    }
    const second = Math.floor(nowNs / NS_PER_SECOND);
    if (second > this.lastSecond) {
      this.lastSecond = second;
      if (!(this.cmos[CMOS_REG_B]! & REG_B_SET)) {
        flags |= REG_C_UF;
        if (this.alarmMatches(nowNs)) flags |= REG_C_AF;
      }
    }
    if (flags) {
      this.cmos[CMOS_REG_C]! |= flags;
      this.updateIrq();
    }
  }

  private alarmMatches(nowNs: number): boolean {
    this.refreshTime(nowNs);
    const matches = (alarm: number, value: number) => (alarm & 0xc0) === 0xc0 || alarm === value;
    return (
      matches(this.cmos[CMOS_SECONDS_ALARM]!, this.cmos[CMOS_SECONDS]!) &&
      matches(this.cmos[CMOS_MINUTES_ALARM]!, this.cmos[CMOS_MINUTES]!) &&
      matches(this.cmos[CMOS_HOURS_ALARM]!, this.cmos[CMOS_HOURS]!)
    );
  }

  /** IRQ 8 follows IRQF: any flag in C whose enable bit is set in B. */
  private updateIrq(): void {
    const b = this.cmos[CMOS_REG_B]!;
    let c = this.cmos[CMOS_REG_C]! & 0x70;
    const active =
      (c & REG_C_PF && b & REG_B_PIE) || (c & REG_C_AF && b & REG_B_AIE) || (c & REG_C_UF && b & REG_B_UIE);
    if (active) c |= REG_C_IRQF;
    this.cmos[CMOS_REG_C] = c;
    const high = Boolean(active);
    if (high && !this.irqHigh) this.irq8.raise();
    else if (!high && this.irqHigh) this.irq8.lower();
    this.irqHigh = high;
  }
}
