/**
 * Virtual time. The guest's clocks (PIT, RTC, BIOS tick count) all read
 * this clock, and it advances only with retired instructions — so a boot is
 * deterministic: the same disk gives the same console output and the same
 * instruction count every run, whatever the host's speed.
 *
 * now = instructions × nsPerInstruction + skipped
 *
 * `skipped` grows when the machine fast-forwards an idle guest (HLT with
 * interrupts enabled: jump to the next device event) or when the BIOS sees
 * the guest polling for a key or a tick (poll skip). With the default of
 * 1 ns per instruction the guest sees a 1 GHz CPU (the CPU's TSC counts
 * instructions, so TSC calibration against the PIT agrees).
 */
export class VirtualClock {
  private skippedNs = 0;

  constructor(
    private readonly instructions: () => number,
    readonly nsPerInstruction = 1,
  ) {}

  /** Virtual nanoseconds since power-on. */
  now(): number {
    return this.instructions() * this.nsPerInstruction + this.skippedNs;
  }

  /** Told about every skip (the machine keeps the CPU's TSC on virtual time with it). */
  onSkip: (ns: number) => void = () => {};

  /** Fast-forwards virtual time by `ns` (idle or poll skip). */
  skip(ns: number): void {
    if (ns <= 0) return;
    this.skippedNs += ns;
    this.onSkip(ns);
  }

  /** Total time skipped so far (reported by the boot driver). */
  get skipped(): number {
    return this.skippedNs;
  }

  /** Instructions to run to reach `targetNs` (at least 1). */
  instructionsUntil(targetNs: number): number {
    const delta = targetNs - this.now();
    return delta <= 0 ? 1 : Math.ceil(delta / this.nsPerInstruction);
  }
}

/** A device with time-based behaviour: the machine asks when, then tells it the time. */
export interface TimedDevice {
  /** Virtual time (ns) of the device's next event; Infinity when none is due. */
  nextEventNs(): number;
  /** Processes every event due at or before `nowNs` (raise interrupts, set flags). */
  advance(nowNs: number): void;
}
