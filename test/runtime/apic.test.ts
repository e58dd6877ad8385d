import { describe, expect, it } from "vitest";
import { buildMpTable } from "../../src/runtime/bios/mptable.js";
import { e820Map } from "../../src/runtime/bios/system.js";
import { bootTest } from "../../src/runtime/boot.js";
import type { InterruptController } from "../../src/runtime/bus.js";
import { LocalApic } from "../../src/runtime/devices/apic.js";
import { VirtualClock } from "../../src/runtime/devices/clock.js";
import { IoApic } from "../../src/runtime/devices/ioapic.js";
import { newMachine } from "./harness.js";
import { reportLines } from "./qemu.js";

const SVR = 0xf0;
const EOI = 0xb0;
const TPR = 0x80;
const LVT_TIMER = 0x320;
const LVT_LINT0 = 0x350;
const TIMER_INITIAL = 0x380;
const TIMER_CURRENT = 0x390;
const TIMER_DIVIDE = 0x3e0;

function setup() {
  let now = 0;
  const clock = new VirtualClock(() => now);
  let picPending = false;
  const pic: InterruptController = { hasInterrupt: () => picPending, acknowledge: () => 0x08 };
  const lapic = new LocalApic(clock, pic);
  return {
    lapic,
    clock,
    setNow: (ns: number) => (now = ns),
    setPic: (pending: boolean) => (picPending = pending),
  };
}

describe("local APIC", () => {
  it("passes the 8259 through while software-disabled, and through LINT0 in ExtINT mode", () => {
    const { lapic, setPic } = setup();
    setPic(true);
    expect(lapic.hasInterrupt()).toBe(true);
    expect(lapic.acknowledge()).toBe(0x08);
    lapic.write(SVR, 4, 0x1ff); // enable, spurious vector FFh
    expect(lapic.hasInterrupt()).toBe(false); // LINT0 masked
    lapic.write(LVT_LINT0, 4, 0x700); // ExtINT, unmasked
    expect(lapic.hasInterrupt()).toBe(true);
  });

  it("prioritises by vector class against TPR and in-service vectors; EOI retires the highest", () => {
    const { lapic } = setup();
    lapic.write(SVR, 4, 0x1ff);
    lapic.accept(0x31);
    lapic.accept(0x52);
    expect(lapic.acknowledge()).toBe(0x52);
    expect(lapic.hasInterrupt()).toBe(false); // 0x31 is a lower class than in-service 0x52
    lapic.write(EOI, 4, 0);
    lapic.write(TPR, 4, 0x40);
    expect(lapic.hasInterrupt()).toBe(false); // class 3 <= TPR class 4
    lapic.write(TPR, 4, 0);
    expect(lapic.acknowledge()).toBe(0x31);
    expect(lapic.state(0x31)).toEqual({ pending: false, inService: true });
    expect(lapic.acknowledge()).toBe(0xff); // nothing left: the spurious vector
  });

  it("the timer counts down at 1 GHz / divisor and fires once (one-shot) or every period", () => {
    const { lapic, setNow } = setup();
    lapic.write(SVR, 4, 0x1ff);
    lapic.write(TIMER_DIVIDE, 4, 0x3); // divide by 16
    lapic.write(LVT_TIMER, 4, 0x20040); // periodic, vector 40h
    lapic.write(TIMER_INITIAL, 4, 1000); // 16 µs
    expect(lapic.nextEventNs()).toBe(16_000);
    setNow(8_000);
    expect(lapic.read(TIMER_CURRENT, 4)).toBe(500);
    setNow(16_000);
    lapic.advance(16_000);
    expect(lapic.acknowledge()).toBe(0x40);
    lapic.write(EOI, 4, 0);
    expect(lapic.nextEventNs()).toBe(32_000);
    lapic.write(LVT_TIMER, 4, 0x00041); // one-shot, vector 41h
    lapic.write(TIMER_INITIAL, 4, 10);
    setNow(16_160);
    lapic.advance(16_160);
    expect(lapic.acknowledge()).toBe(0x41);
    expect(lapic.nextEventNs()).toBe(Number.POSITIVE_INFINITY);
  });
});

describe("I/O APIC", () => {
  function ioapicWith() {
    const { lapic } = setup();
    lapic.write(SVR, 4, 0x1ff);
    const ioapic = new IoApic(lapic);
    const program = (pin: number, low: number) => {
      ioapic.write(0x00, 4, 0x10 + 2 * pin);
      ioapic.write(0x10, 4, low);
    };
    return { lapic, ioapic, program };
  }

  it("reports 24 pins, keeps entries masked until programmed, delivers edges", () => {
    const { lapic, ioapic, program } = ioapicWith();
    ioapic.write(0x00, 4, 0x01);
    expect(ioapic.read(0x10)).toBe(0x00170011);
    ioapic.setLevel(2, true);
    expect(lapic.hasInterrupt()).toBe(false);
    ioapic.setLevel(2, false);
    program(2, 0x30); // edge, fixed, vector 30h
    ioapic.setLevel(2, true);
    expect(lapic.acknowledge()).toBe(0x30);
  });

  it("level-triggered pins hold remote IRR until EOI and redeliver while still asserted", () => {
    const { lapic, ioapic, program } = ioapicWith();
    program(11, 0x8000 | 0x2000 | 0x51); // level, active low, vector 51h
    ioapic.setLevel(11, true);
    expect(lapic.acknowledge()).toBe(0x51);
    ioapic.write(0x00, 4, 0x10 + 22);
    expect(ioapic.read(0x10) & 0x4000).toBe(0x4000); // remote IRR
    lapic.write(EOI, 4, 0); // still asserted: delivered again
    expect(lapic.acknowledge()).toBe(0x51);
    ioapic.setLevel(11, false);
    lapic.write(EOI, 4, 0);
    expect(lapic.hasInterrupt()).toBe(false);
    expect(ioapic.read(0x10) & 0x4000).toBe(0);
  });
});

describe("MP table and the APIC machine", () => {
  it("builds a checksummed floating pointer and PCMP table with ISA IRQ 0 on pin 2", () => {
    const at = 0xffc00;
    const bytes = Buffer.from(buildMpTable(at));
    expect(bytes.toString("latin1", 0, 4)).toBe("_MP_");
    expect(bytes.readUInt32LE(4)).toBe(at + 16);
    expect(bytes.subarray(0, 16).reduce((a, b) => (a + b) & 0xff, 0)).toBe(0);
    const table = bytes.subarray(16);
    expect(table.toString("latin1", 0, 4)).toBe("PCMP");
    const length = table.readUInt16LE(4);
    expect(table.subarray(0, length).reduce((a, b) => (a + b) & 0xff, 0)).toBe(0);
    expect(table.readUInt32LE(36)).toBe(0xfee00000);
    const entries: number[][] = [];
    for (let at = 44; at < length; at += table[at] === 0 ? 20 : 8)
      entries.push([...table.subarray(at, at + 8)]);
    expect(table.readUInt16LE(34)).toBe(entries.length);
    expect(entries).toContainEqual([2, 1, 0x11, 1, 0x00, 0x00, 0xc0, 0xfe]); // I/O APIC 1 at FEC00000
    expect(entries).toContainEqual([3, 0, 0, 0, 1, 0, 1, 2]); // ISA IRQ 0 -> pin 2
    expect(entries).toContainEqual([4, 3, 0, 0, 1, 0, 0xff, 0]); // ExtINT on LINT0
  });

  it("with apic on, the BIOS publishes the MP table, reserves the APIC pages, and the fixtures still pass", async () => {
    const machine = newMachine({ apic: true });
    expect(machine.hasLocalApic).toBe(true);
    const found = Buffer.from(machine.memory.ram.subarray(0xf0000, 0x100000)).indexOf("_MP_");
    expect(found % 16).toBe(0);
    expect(e820Map(64 << 20, true).map((e) => e.base)).toContain(0xfee00000);
    // The APIC stays software-disabled: the 8259 path (virtual wire) carries the fixture's IRQs.
    const withApic = await bootTest(new URL("../../fixtures/runtime/modes.img", import.meta.url).pathname, {
      timeoutSeconds: 5,
      apic: true,
    });
    const lines = reportLines(withApic.consoleTail);
    expect(lines).toHaveLength(20);
    expect(lines.every((l) => l.startsWith("PASS") || l === "DONE")).toBe(true);
  });
});
