import { Reg } from "../cpu/api.js";
import { AL, BH, type BiosCall, type BiosMachine, BL, CH, CL, DH, DL } from "./context.js";
import { BDA_MIDNIGHT, BDA_TICKS, TICK_NS, TICKS_PER_DAY } from "./layout.js";

/**
 * int 1Ah: the time-of-day tick count (00h/01h), the RTC time and date
 * (02h-05h) and the PCI BIOS (B1xxh, PCI BIOS Specification 2.1 §3).
 * The tick count is derived from virtual time (the RTC's epoch plus elapsed
 * virtual time), not counted by IRQ 0, so it is right even while the guest
 * runs with interrupts off.
 */

const PCI_SUCCESSFUL = 0x00;
const PCI_FUNC_NOT_SUPPORTED = 0x81;
const PCI_DEVICE_NOT_FOUND = 0x86;
const PCI_BAD_REGISTER = 0x87;
const PCI_SIGNATURE = 0x20494350; // "PCI "

function bcd(value: number): number {
  return ((Math.floor(value / 10) % 10) << 4) | (value % 10);
}

export class TimeServices {
  private lastDay = -1;

  constructor(private readonly machine: BiosMachine) {}

  /** Ticks since midnight now, and refreshes the BDA copy (0x46C) and midnight flag. */
  updateTicks(): number {
    const now = this.machine.rtc.now();
    const msOfDay = now.getTime() % 86_400_000;
    const day = Math.floor(now.getTime() / 86_400_000);
    const ticks = Math.min(TICKS_PER_DAY - 1, Math.floor((msOfDay * 1e6) / TICK_NS));
    const memory = this.machine.memory;
    if (this.lastDay >= 0 && day !== this.lastDay) memory.write8(BDA_MIDNIGHT, 1);
    this.lastDay = day;
    memory.write32(BDA_TICKS, ticks);
    return ticks;
  }

  handle(call: BiosCall): void {
    const memory = this.machine.memory;
    switch (call.ah) {
      case 0x00: {
        const ticks = this.updateTicks();
        call.set16(Reg.CX, ticks >>> 16);
        call.set16(Reg.DX, ticks & 0xffff);
        call.set8(AL, memory.read8(BDA_MIDNIGHT));
        memory.write8(BDA_MIDNIGHT, 0);
        return;
      }
      case 0x01: // set tick count: the virtual clock is not settable; accepted
        call.setCarry(false);
        return;
      case 0x02: {
        const now = this.machine.rtc.now();
        call.set8(CH, bcd(now.getUTCHours()));
        call.set8(CL, bcd(now.getUTCMinutes()));
        call.set8(DH, bcd(now.getUTCSeconds()));
        call.set8(DL, 0);
        call.setCarry(false);
        return;
      }
      case 0x04: {
        const now = this.machine.rtc.now();
        call.set8(CH, bcd(Math.floor(now.getUTCFullYear() / 100)));
        call.set8(CL, bcd(now.getUTCFullYear() % 100));
        call.set8(DH, bcd(now.getUTCMonth() + 1));
        call.set8(DL, bcd(now.getUTCDate()));
        call.setCarry(false);
        return;
      }
      case 0x03:
      case 0x05:
        call.setCarry(false); // setting the RTC through the BIOS is accepted and ignored
        return;
      case 0xb1:
        this.pciBios(call);
        return;
      default:
        call.setCarry(true);
    }
  }

  private pciBios(call: BiosCall): void {
    const pci = this.machine.pci;
    const fn = call.al;
    const bus = call.reg8(BH);
    const devfn = call.reg8(BL);
    const device = devfn >> 3;
    const func = devfn & 7;
    const register = call.di;
    const done = (status: number) => {
      if (status === PCI_SUCCESSFUL) call.ok(status);
      else call.fail(status);
    };
    switch (fn) {
      case 0x01: // installation check
        call.set8(0, 0x01); // AL: configuration mechanism #1
        call.set8(BH, 0x02);
        call.set8(BL, 0x10); // interface level 2.10
        call.set8(CL, 0); // last bus
        call.set32(Reg.DX, PCI_SIGNATURE);
        call.set32(Reg.DI, 0);
        done(PCI_SUCCESSFUL);
        return;
      case 0x02:
      case 0x03: {
        // Find device (CX device, DX vendor) or class (ECX class code), SI = index.
        let index = call.si;
        for (const [d, f, config] of pci.list()) {
          const matches =
            fn === 0x02
              ? config.read(0, 2) === call.dx && config.read(2, 2) === call.cx
              : config.read(8, 4) >>> 8 === (call.get32(Reg.CX) & 0xffffff);
          if (matches && index-- === 0) {
            call.set8(BH, 0);
            call.set8(BL, (d << 3) | f);
            done(PCI_SUCCESSFUL);
            return;
          }
        }
        done(PCI_DEVICE_NOT_FOUND);
        return;
      }
      case 0x08:
      case 0x09:
      case 0x0a:
      case 0x0b:
      case 0x0c:
      case 0x0d: {
        const size = ([1, 2, 4] as const)[(fn - 0x08) % 3]!;
        if (register % size !== 0 || register > 0xff) {
          done(PCI_BAD_REGISTER);
          return;
        }
        if (fn <= 0x0a) {
          const value = bus === 0 ? pci.readConfig(device, func, register, size) : 0xffffffff;
          if (size === 1) call.set8(CL, value);
          else if (size === 2) call.set16(Reg.CX, value);
          else call.set32(Reg.CX, value);
        } else if (bus === 0) {
          const value = size === 1 ? call.reg8(CL) : size === 2 ? call.cx : call.get32(Reg.CX);
          pci.writeConfig(device, func, register, size, value);
        }
        done(PCI_SUCCESSFUL);
        return;
      }
      default:
        done(PCI_FUNC_NOT_SUPPORTED);
    }
  }
}
