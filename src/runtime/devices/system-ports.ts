import type { IoBus, PortHandler } from "../bus.js";

/**
 * Small motherboard ports with no chip of their own:
 * - 0x92, "system control port A" (PS/2 and PIIX): bit 1 = A20 gate,
 *   bit 0 = fast reset (a 0→1 transition resets the CPU);
 * - 0x80, the POST diagnostic port: a write-only sink (the last code is kept
 *   for diagnosis; Linux also writes it as an I/O delay);
 * - 0xCF9, PIIX3 reset control: bit 2 with bit 1 = hard reset (Linux's
 *   `reboot=pci` and its fallback chain use it).
 */

const PORT92_FAST_RESET = 0x01;
const PORT92_A20 = 0x02;
const CF9_SYSTEM_RESET = 0x02;
const CF9_RESET_CPU = 0x04;

export interface SystemPortHooks {
  getA20(): boolean;
  setA20(enabled: boolean): void;
  reset(why: string): void;
}

export class SystemPorts implements PortHandler {
  /** Last byte written to the POST port 0x80. */
  postCode = 0;
  private resetControl = 0;

  constructor(private readonly hooks: SystemPortHooks) {}

  register(io: IoBus): void {
    io.register(0x92, 1, this);
    io.register(0x80, 1, this);
    io.register(0xcf9, 1, this);
  }

  read(port: number): number {
    if (port === 0x92) return this.hooks.getA20() ? PORT92_A20 : 0;
    if (port === 0xcf9) return this.resetControl;
    return this.postCode;
  }

  write(port: number, _size: 1 | 2 | 4, value: number): void {
    value &= 0xff;
    if (port === 0x80) {
      this.postCode = value;
      return;
    }
    if (port === 0xcf9) {
      if (value & CF9_RESET_CPU && !(this.resetControl & CF9_RESET_CPU)) {
        this.hooks.reset(`reset control register 0xCF9 = 0x${value.toString(16)}`);
      }
      this.resetControl = value & CF9_SYSTEM_RESET;
      return;
    }
    this.hooks.setA20((value & PORT92_A20) !== 0);
    if (value & PORT92_FAST_RESET) this.hooks.reset("port 0x92 fast reset");
  }
}
