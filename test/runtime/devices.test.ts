import { describe, expect, it } from "vitest";
import { IoBus, MemoryBus } from "../../src/runtime/bus.js";
import { VirtualClock } from "../../src/runtime/devices/clock.js";
import { I8042 } from "../../src/runtime/devices/i8042.js";
import { PciBus } from "../../src/runtime/devices/pci.js";
import { PicPair } from "../../src/runtime/devices/pic.js";
import { PIT_HZ, Pit8254 } from "../../src/runtime/devices/pit.js";
import { Rtc } from "../../src/runtime/devices/rtc.js";
import { SystemPorts } from "../../src/runtime/devices/system-ports.js";
import { Uart16550 } from "../../src/runtime/devices/uart.js";
import { screenText, VgaText } from "../../src/runtime/devices/vga.js";

/** A clock the test moves by hand (instructions = ns). */
function manualClock(): { clock: VirtualClock; set(ns: number): void } {
  let now = 0;
  return { clock: new VirtualClock(() => now), set: (ns) => (now = ns) };
}

function countingLine() {
  const line = { rises: 0, high: false, raise: () => {}, lower: () => {} };
  line.raise = () => {
    line.rises++;
    line.high = true;
  };
  line.lower = () => {
    line.high = false;
  };
  return line;
}

function programPic(io: IoBus, masterBase = 0x20, slaveBase = 0x28): void {
  io.write(0x20, 1, 0x11);
  io.write(0x21, 1, masterBase);
  io.write(0x21, 1, 0x04);
  io.write(0x21, 1, 0x01);
  io.write(0xa0, 1, 0x11);
  io.write(0xa1, 1, slaveBase);
  io.write(0xa1, 1, 0x02);
  io.write(0xa1, 1, 0x01);
  io.write(0x21, 1, 0x00);
  io.write(0xa1, 1, 0x00);
}

describe("8259A PIC pair", () => {
  it("delivers edge-triggered IRQs by priority, keeps them in service until EOI", () => {
    const io = new IoBus();
    const pic = new PicPair();
    pic.register(io);
    programPic(io);
    expect(pic.hasInterrupt()).toBe(false);
    pic.setIrq(3, true);
    pic.setIrq(1, true);
    expect(pic.hasInterrupt()).toBe(true);
    expect(pic.acknowledge()).toBe(0x21); // IRQ 1 before IRQ 3
    // IRQ 3 has lower priority than in-service IRQ 1: blocked until EOI.
    expect(pic.hasInterrupt()).toBe(false);
    io.write(0x20, 1, 0x0b); // OCW3: read ISR
    expect(io.read(0x20, 1)).toBe(0x02);
    io.write(0x20, 1, 0x20); // non-specific EOI
    expect(pic.hasInterrupt()).toBe(true);
    expect(pic.acknowledge()).toBe(0x23);
    io.write(0x20, 1, 0x63); // specific EOI for IRQ 3
    io.write(0x20, 1, 0x0b);
    expect(io.read(0x20, 1)).toBe(0);
    // A held line does not retrigger: edge mode needs a new rising edge.
    expect(pic.hasInterrupt()).toBe(false);
    pic.setIrq(1, false);
    pic.setIrq(1, true);
    expect(pic.hasInterrupt()).toBe(true);
  });

  it("masks with OCW1, reads IRR, and cascades the slave through IRQ 2", () => {
    const io = new IoBus();
    const pic = new PicPair();
    pic.register(io);
    programPic(io);
    io.write(0xa1, 1, 0xfe); // slave: only IRQ 8
    pic.setIrq(9, true);
    expect(pic.hasInterrupt()).toBe(false);
    io.write(0xa0, 1, 0x0a); // read IRR
    expect(io.read(0xa0, 1)).toBe(0x02);
    expect(io.read(0xa1, 1)).toBe(0xfe);
    pic.setIrq(8, true);
    expect(pic.hasInterrupt()).toBe(true);
    expect(pic.acknowledge()).toBe(0x28);
    io.write(0xa0, 1, 0x20);
    io.write(0x20, 1, 0x20);
    // Unmasking IRQ 9 afterwards delivers it through the cascade.
    io.write(0xa1, 1, 0x00);
    expect(pic.hasInterrupt()).toBe(true);
    expect(pic.acknowledge()).toBe(0x29);
  });

  it("answers a spurious IRQ 7 when the request vanished before INTA, and honours ELCR level mode", () => {
    const io = new IoBus();
    const pic = new PicPair();
    pic.register(io);
    programPic(io);
    expect(pic.acknowledge()).toBe(0x27);
    io.write(0x4d1, 1, 0x04); // IRQ 10 level-triggered
    expect(io.read(0x4d1, 1)).toBe(0x04);
    pic.setIrq(10, true);
    expect(pic.acknowledge()).toBe(0x2a);
    io.write(0xa0, 1, 0x20);
    io.write(0x20, 1, 0x20);
    // Still high: a level-triggered line requests again after EOI.
    expect(pic.hasInterrupt()).toBe(true);
    pic.setIrq(10, false);
    expect(pic.hasInterrupt()).toBe(false);
  });

  it("supports auto-EOI and poll mode", () => {
    const io = new IoBus();
    const pic = new PicPair();
    pic.register(io);
    io.write(0x20, 1, 0x11);
    io.write(0x21, 1, 0x40);
    io.write(0x21, 1, 0x04);
    io.write(0x21, 1, 0x03); // 8086 mode + auto-EOI
    io.write(0x21, 1, 0x00);
    pic.setIrq(5, true);
    expect(pic.acknowledge()).toBe(0x45);
    io.write(0x20, 1, 0x0b);
    expect(io.read(0x20, 1)).toBe(0); // nothing in service
    pic.setIrq(6, true);
    io.write(0x20, 1, 0x0c); // poll
    expect(io.read(0x20, 1)).toBe(0x86);
  });
});

describe("8254 PIT", () => {
  it("mode 2 on counter 0 raises IRQ 0 once per period and counts down", () => {
    const { clock, set } = manualClock();
    const irq = countingLine();
    const io = new IoBus();
    const pit = new Pit8254(clock, irq);
    pit.register(io);
    io.write(0x43, 1, 0x34); // counter 0, LSB/MSB, mode 2
    io.write(0x40, 1, 1193 & 0xff);
    io.write(0x40, 1, 1193 >> 8);
    const periodNs = (1193 * 1e9) / PIT_HZ;
    expect(pit.nextEventNs()).toBeCloseTo(periodNs, -1);
    set(periodNs / 2);
    io.write(0x43, 1, 0x00); // latch counter 0
    const count = io.read(0x40, 1) | (io.read(0x40, 1) << 8);
    expect(count).toBeGreaterThan(590);
    expect(count).toBeLessThan(600);
    pit.advance(clock.now());
    expect(irq.rises).toBe(0);
    for (let i = 1; i <= 5; i++) {
      set(pit.nextEventNs());
      pit.advance(clock.now());
    }
    expect(irq.rises).toBe(5);
  });

  it("mode 0 fires once at terminal count", () => {
    const { clock, set } = manualClock();
    const irq = countingLine();
    const io = new IoBus();
    const pit = new Pit8254(clock, irq);
    pit.register(io);
    io.write(0x43, 1, 0x30);
    io.write(0x40, 1, 100);
    io.write(0x40, 1, 0);
    expect(pit.outputOf(0)).toBe(false);
    set(pit.nextEventNs());
    pit.advance(clock.now());
    expect(irq.rises).toBe(1);
    expect(pit.outputOf(0)).toBe(true);
    expect(pit.nextEventNs()).toBe(Number.POSITIVE_INFINITY);
  });

  it("counter 2 is gated by port 0x61 bit 0 and shows OUT2 in bit 5 (TSC calibration path)", () => {
    const { clock, set } = manualClock();
    const io = new IoBus();
    const pit = new Pit8254(clock, countingLine());
    pit.register(io);
    io.write(0x61, 1, 0x00); // gate low
    io.write(0x43, 1, 0xb0); // counter 2, LSB/MSB, mode 0
    io.write(0x42, 1, 0xe8);
    io.write(0x42, 1, 0x03); // 1000 counts
    set(2_000_000);
    expect(io.read(0x61, 1) & 0x20).toBe(0); // gate low: not counting
    io.write(0x61, 1, 0x01);
    expect(io.read(0x61, 1) & 0x01).toBe(1);
    set(2_000_000 + 800_000); // < 1000 ticks (838 µs)
    expect(io.read(0x61, 1) & 0x20).toBe(0);
    // Reads without a latch return the live count, LSB then MSB (quick_pit_calibrate).
    const live = io.read(0x42, 1) | (io.read(0x42, 1) << 8);
    expect(live).toBeGreaterThan(0);
    expect(live).toBeLessThan(100);
    set(2_000_000 + 900_000);
    expect(io.read(0x61, 1) & 0x20).toBe(0x20);
  });

  it("read-back command latches status and count", () => {
    const { clock } = manualClock();
    const io = new IoBus();
    const pit = new Pit8254(clock, countingLine());
    pit.register(io);
    io.write(0x43, 1, 0x76); // counter 1, LSB/MSB, mode 3
    io.write(0x41, 1, 0x00);
    io.write(0x41, 1, 0x10);
    io.write(0x43, 1, 0xc4); // read-back counter 1: count and status
    expect(io.read(0x41, 1)).toBe(0x80 | 0x30 | 0x06); // OUT high, LSB/MSB, mode 3
    expect(io.read(0x41, 1) | (io.read(0x41, 1) << 8)).toBe(0x1000);
  });
});

describe("MC146818 RTC/CMOS", () => {
  it("reads the time from the virtual epoch in BCD, and binary when DM is set", () => {
    const { clock, set } = manualClock();
    const io = new IoBus();
    const rtc = new Rtc(clock, countingLine(), {
      ramSize: 64 << 20,
      epochMs: Date.UTC(2031, 11, 25, 23, 59, 58),
    });
    rtc.register(io);
    const read = (index: number) => {
      io.write(0x70, 1, index);
      return io.read(0x71, 1);
    };
    expect(read(0x00)).toBe(0x58);
    expect(read(0x02)).toBe(0x59);
    expect(read(0x04)).toBe(0x23);
    expect(read(0x07)).toBe(0x25);
    expect(read(0x08)).toBe(0x12);
    expect(read(0x09)).toBe(0x31);
    expect(read(0x32)).toBe(0x20);
    set(3e9); // three virtual seconds later: the next day
    expect(read(0x07)).toBe(0x26);
    expect(read(0x00)).toBe(0x01);
    io.write(0x70, 1, 0x0b);
    io.write(0x71, 1, 0x06); // binary, 24 h
    expect(read(0x00)).toBe(1);
    expect(read(0x09)).toBe(31);
    expect(read(0x0d)).toBe(0x80);
  });

  it("keeps the time the guest sets (SET bit) and ticks on from it; alarm writes leave the clock alone", () => {
    const { clock, set } = manualClock();
    const io = new IoBus();
    const rtc = new Rtc(clock, countingLine(), { ramSize: 1 << 20, epochMs: Date.UTC(2024, 0, 1, 10, 0, 0) });
    rtc.register(io);
    const read = (index: number) => {
      io.write(0x70, 1, index);
      return io.read(0x71, 1);
    };
    const write = (index: number, value: number) => {
      io.write(0x70, 1, index);
      io.write(0x71, 1, value);
    };
    write(0x0b, 0x82); // SET, 24 h, BCD
    write(0x04, 0x15); // 15:xx
    write(0x0b, 0x02);
    expect(read(0x04)).toBe(0x15);
    write(0x01, 0x30); // seconds alarm
    set(61e9);
    expect(read(0x04)).toBe(0x15);
    expect(read(0x02)).toBe(0x01);
    expect(read(0x00)).toBe(0x01);
    expect(rtc.now().toISOString()).toBe("2024-01-01T15:01:01.000Z");
  });

  it("reports memory sizes and the boot order in CMOS", () => {
    const { clock } = manualClock();
    const io = new IoBus();
    const rtc = new Rtc(clock, countingLine(), { ramSize: 128 << 20 });
    rtc.register(io);
    const read = (index: number) => {
      io.write(0x70, 1, index);
      return io.read(0x71, 1);
    };
    expect(read(0x15) | (read(0x16) << 8)).toBe(640);
    expect(read(0x17) | (read(0x18) << 8)).toBe(63 * 1024);
    expect(read(0x30) | (read(0x31) << 8)).toBe(63 * 1024);
    expect(read(0x34) | (read(0x35) << 8)).toBe((112 << 20) / 65536);
    expect(read(0x5b)).toBe(0);
    expect(read(0x3d) & 0x0f).toBe(2); // hard disk first
  });

  it("raises IRQ 8 for the periodic interrupt until register C is read; UIP shows the update window", () => {
    const { clock, set } = manualClock();
    const irq = countingLine();
    const io = new IoBus();
    const rtc = new Rtc(clock, irq, { ramSize: 1 << 20 });
    rtc.register(io);
    io.write(0x70, 1, 0x0a);
    io.write(0x71, 1, 0x26); // 1024 Hz
    io.write(0x70, 1, 0x0b);
    io.write(0x71, 1, 0x42); // PIE, 24 h
    const next = rtc.nextEventNs();
    expect(next).toBeCloseTo(1e9 / 1024, 0);
    set(next);
    rtc.advance(clock.now());
    expect(irq.high).toBe(true);
    io.write(0x70, 1, 0x0c);
    expect(io.read(0x71, 1) & 0xc0).toBe(0xc0); // IRQF | PF
    expect(irq.high).toBe(false);
    set(1e9 - 100_000); // inside the 244 µs before the second rolls over
    io.write(0x70, 1, 0x0a);
    expect(io.read(0x71, 1) & 0x80).toBe(0x80);
    set(1e9 + 300_000);
    io.write(0x70, 1, 0x0a);
    expect(io.read(0x71, 1) & 0x80).toBe(0);
  });
});

describe("16550A UART", () => {
  function uart() {
    const sent: number[] = [];
    const irq = countingLine();
    const io = new IoBus();
    const device = new Uart16550(0x3f8, irq, (b) => sent.push(b));
    device.register(io);
    return { io, sent, irq, device };
  }

  it("transmits THR writes at once, with THRE and TEMT always set", () => {
    const { io, sent } = uart();
    io.write(0x3f8, 1, 0x41);
    io.write(0x3f8, 1, 0x42);
    expect(sent).toEqual([0x41, 0x42]);
    expect(io.read(0x3fd, 1) & 0x60).toBe(0x60);
  });

  it("has the divisor latch behind DLAB, a scratch register and 16550A FIFO bits in IIR", () => {
    const { io } = uart();
    io.write(0x3fb, 1, 0x80);
    io.write(0x3f8, 1, 0x01);
    io.write(0x3f9, 1, 0x00);
    expect(io.read(0x3f8, 1)).toBe(0x01);
    io.write(0x3fb, 1, 0x03);
    expect(io.read(0x3fb, 1)).toBe(0x03);
    io.write(0x3ff, 1, 0xa5);
    expect(io.read(0x3ff, 1)).toBe(0xa5);
    io.write(0x3fa, 1, 0x07);
    expect(io.read(0x3fa, 1) & 0xc0).toBe(0xc0);
    io.write(0x3fa, 1, 0x00);
    expect(io.read(0x3fa, 1) & 0xc0).toBe(0);
  });

  it("raises a THRE interrupt when enabled, cleared by reading IIR, re-armed by a THR write", () => {
    const { io, irq } = uart();
    expect(io.read(0x3fa, 1) & 0x0f).toBe(0x01); // no interrupt
    io.write(0x3f9, 1, 0x02);
    expect(irq.high).toBe(true);
    expect(io.read(0x3fa, 1) & 0x0f).toBe(0x02);
    expect(irq.high).toBe(false);
    expect(io.read(0x3fa, 1) & 0x0f).toBe(0x01);
    io.write(0x3f8, 1, 0x41);
    expect(irq.high).toBe(true);
  });

  it("loops back THR to RBR and modem outputs to inputs in loopback mode", () => {
    const { io, sent, irq } = uart();
    io.write(0x3fc, 1, 0x1f); // loop, OUT2, OUT1, RTS, DTR
    io.write(0x3f9, 1, 0x01); // received data interrupt
    io.write(0x3f8, 1, 0x5a);
    expect(sent).toEqual([]);
    expect(io.read(0x3fd, 1) & 0x01).toBe(1);
    expect(irq.high).toBe(true);
    expect(io.read(0x3fa, 1) & 0x0f).toBe(0x04);
    expect(io.read(0x3f8, 1)).toBe(0x5a);
    expect(irq.high).toBe(false);
    expect(io.read(0x3fe, 1) & 0xf0).toBe(0xf0);
  });

  it("queues received bytes", () => {
    const { io, device } = uart();
    device.receive([0x31, 0x32]);
    expect(io.read(0x3f8, 1)).toBe(0x31);
    expect(io.read(0x3fd, 1) & 1).toBe(0); // non-FIFO mode holds one byte: 0x32 overran
    io.write(0x3fa, 1, 0x01);
    device.receive([0x33, 0x34]);
    expect(io.read(0x3f8, 1)).toBe(0x33);
    expect(io.read(0x3f8, 1)).toBe(0x34);
  });
});

describe("i8042, system ports, PCI, VGA", () => {
  it("i8042 passes its self-test, drives A20 through the output port and resets on 0xFE", () => {
    const io = new IoBus();
    let a20 = true;
    const resets: string[] = [];
    const kbc = new I8042(countingLine(), countingLine(), {
      setA20: (on) => (a20 = on),
      reset: (why) => resets.push(why),
    });
    kbc.register(io);
    io.write(0x64, 1, 0xaa);
    expect(io.read(0x64, 1) & 0x01).toBe(1);
    expect(io.read(0x60, 1)).toBe(0x55);
    io.write(0x64, 1, 0xd1);
    io.write(0x60, 1, 0x01); // A20 off, reset line high
    expect(a20).toBe(false);
    io.write(0x64, 1, 0xd0);
    expect(io.read(0x60, 1)).toBe(0x01);
    io.write(0x64, 1, 0xdf);
    expect(a20).toBe(true);
    io.write(0x60, 1, 0xff); // keyboard reset: ACK then self-test passed
    expect(io.read(0x60, 1)).toBe(0xfa);
    expect(io.read(0x60, 1)).toBe(0xaa);
    expect(resets).toEqual([]);
    io.write(0x64, 1, 0xfe);
    expect(resets).toHaveLength(1);
  });

  it("port 0x92 drives A20 and fast reset; 0xCF9 resets; port 0x80 keeps the POST code", () => {
    const io = new IoBus();
    let a20 = false;
    const resets: string[] = [];
    const ports = new SystemPorts({
      getA20: () => a20,
      setA20: (on) => (a20 = on),
      reset: (why) => resets.push(why),
    });
    ports.register(io);
    io.write(0x92, 1, 0x02);
    expect(a20).toBe(true);
    expect(io.read(0x92, 1)).toBe(0x02);
    io.write(0x80, 1, 0x42);
    expect(ports.postCode).toBe(0x42);
    expect(resets).toEqual([]);
    io.write(0x92, 1, 0x03);
    io.write(0xcf9, 1, 0x06);
    expect(resets).toHaveLength(2);
  });

  it("PCI mechanism #1 shows the host and ISA bridges and nothing else", () => {
    const io = new IoBus();
    const pci = new PciBus();
    pci.register(io);
    const read = (device: number, fn: number, reg: number) => {
      io.write(0xcf8, 4, (0x80000000 | (device << 11) | (fn << 8) | reg) >>> 0);
      return io.read(0xcfc, 4) >>> 0;
    };
    io.write(0xcf8, 4, 0x80000000 | (31 << 11) | (7 << 8) | 0x43);
    expect(io.read(0xcf8, 4) >>> 0).toBe((0x80000000 | (31 << 11) | (7 << 8) | 0x40) >>> 0); // dword-aligned
    expect(read(0, 0, 0)).toBe(0x12378086);
    expect(read(0, 0, 8) >>> 8).toBe(0x060000);
    expect(read(1, 0, 0)).toBe(0x70008086);
    expect(read(1, 0, 8) >>> 8).toBe(0x060100);
    expect((read(1, 0, 0x0c) >>> 16) & 0x80).toBe(0x80); // multifunction
    expect(read(1, 0, 0x60)).toBe(0x0b0b0a0a);
    expect(read(2, 0, 0)).toBe(0xffffffff);
    // Writes respect the write mask: the vendor ID is read-only, the interrupt line is not.
    io.write(0xcf8, 4, 0x80000000 | (1 << 11) | 0x3c);
    io.write(0xcfc, 1, 0x0b);
    io.write(0xcf8, 4, 0x80000000 | (1 << 11));
    io.write(0xcfc, 2, 0xffff);
    expect(read(1, 0, 0) & 0xffff).toBe(0x8086);
    expect(read(1, 0, 0x3c) & 0xff).toBe(0x0b);
  });

  it("VGA text memory dumps as text; the CRTC keeps the cursor", () => {
    const memory = new MemoryBus(1 << 20);
    const io = new IoBus();
    const vga = new VgaText(memory);
    vga.register(io);
    const text = "Hello, screen";
    for (let i = 0; i < text.length; i++) memory.write16(0xb8000 + 160 + 2 * i, 0x0700 | text.charCodeAt(i));
    expect(screenText(memory)).toBe(`\n${text}`);
    io.write(0x3d4, 1, 0x0e);
    io.write(0x3d5, 1, 0x00);
    io.write(0x3d4, 1, 0x0f);
    io.write(0x3d5, 1, 81);
    expect(vga.cursor()).toEqual({ row: 1, column: 1 });
    expect(io.read(0x3da, 1) & 0x08).not.toBe(io.read(0x3da, 1) & 0x08);
  });
});
