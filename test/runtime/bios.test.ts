import { describe, expect, it } from "vitest";
import { biosGeometry } from "../../src/runtime/bios/disk.js";
import { BDA_EQUIPMENT, TICK_NS } from "../../src/runtime/bios/layout.js";
import { DEFAULT_EPOCH_MS } from "../../src/runtime/devices/rtc.js";
import { bufferDisk, callInterrupt, newMachine, patternDisk } from "./harness.js";

const SMAP = 0x534d4150;

describe("built-in BIOS services, called through the IVT by the real CPU", () => {
  it("int 15h E820 walks a memory map that covers RAM, with EBDA and ROM reserved", async () => {
    const machine = newMachine({ memoryMiB: 32 });
    const entries: { base: number; length: number; type: number }[] = [];
    let continuation = 0;
    do {
      const r = await callInterrupt(machine, 0x15, {
        eax: 0xe820,
        edx: SMAP,
        ecx: 20,
        ebx: continuation,
        edi: 0x500,
      });
      expect(r.stop.kind).toBe("guest-halted");
      expect(r.carry).toBe(false);
      expect(r.eax).toBe(SMAP);
      expect(r.ecx).toBe(20);
      const m = machine.memory;
      entries.push({ base: m.read32(0x500), length: m.read32(0x508), type: m.read32(0x510) });
      continuation = r.ebx;
    } while (continuation !== 0 && entries.length < 16);
    expect(entries).toEqual([
      { base: 0, length: 0x9fc00, type: 1 },
      { base: 0x9fc00, length: 0x400, type: 2 },
      { base: 0xf0000, length: 0x10000, type: 2 },
      { base: 0x100000, length: 31 * 1024 * 1024, type: 1 },
    ]);
    // Past the end: carry set.
    const past = await callInterrupt(machine, 0x15, { eax: 0xe820, edx: SMAP, ecx: 20, ebx: 9, edi: 0x500 });
    expect(past.carry).toBe(true);
  });

  it("int 15h E801/88h, int 12h and int 11h report the memory and equipment", async () => {
    const machine = newMachine({ memoryMiB: 64 });
    const e801 = await callInterrupt(machine, 0x15, { eax: 0xe801 });
    expect(e801.carry).toBe(false);
    expect(e801.eax & 0xffff).toBe(15 * 1024);
    expect(e801.ebx & 0xffff).toBe((48 * 1024 * 1024) / 65536);
    const ext = await callInterrupt(machine, 0x15, { eax: 0x8800 });
    expect(ext.eax & 0xffff).toBe(63 * 1024);
    const conventional = await callInterrupt(machine, 0x12, {});
    expect(conventional.eax & 0xffff).toBe(639);
    const equipment = await callInterrupt(machine, 0x11, {});
    expect(equipment.eax & 0xffff).toBe(machine.memory.read16(BDA_EQUIPMENT));
    expect((equipment.eax >> 9) & 7).toBe(1); // one serial port
  });

  it("int 15h 2400h-2403h switch and report A20; unknown functions fail with AH=86h", async () => {
    const machine = newMachine();
    await callInterrupt(machine, 0x15, { eax: 0x2400 });
    expect(machine.cpu.a20).toBe(false);
    expect((await callInterrupt(machine, 0x15, { eax: 0x2402 })).al).toBe(0);
    await callInterrupt(machine, 0x15, { eax: 0x2401 });
    expect(machine.cpu.a20).toBe(true);
    expect((await callInterrupt(machine, 0x15, { eax: 0x2402 })).al).toBe(1);
    expect((await callInterrupt(machine, 0x15, { eax: 0x2403 })).ebx & 0xffff).toBe(3);
    const unknown = await callInterrupt(machine, 0x15, { eax: 0x5300 });
    expect(unknown.carry).toBe(true);
    expect(unknown.ah).toBe(0x86);
    expect(machine.bios.unhandled).toContainEqual({ vector: 0x15, ax: 0x5300 });
  });

  it("int 13h: EDD check, drive parameters, extended and CHS reads of the boot disk", async () => {
    const sectors = 4096;
    const machine = newMachine({ disk: bufferDisk(patternDisk(sectors)) });
    const check = await callInterrupt(machine, 0x13, { eax: 0x4100, ebx: 0x55aa, edx: 0x80 });
    expect(check.carry).toBe(false);
    expect(check.ebx & 0xffff).toBe(0xaa55);
    expect(check.ecx & 1).toBe(1);
    // 48h: extended parameters.
    machine.memory.write16(0x600, 0x1e);
    const params = await callInterrupt(machine, 0x13, { eax: 0x4800, edx: 0x80, esi: 0x600 });
    expect(params.carry).toBe(false);
    expect(machine.memory.read32(0x610)).toBe(sectors);
    expect(machine.memory.read16(0x618)).toBe(512);
    // 42h: read 3 sectors from LBA 300 to 0800:0000 through a disk address packet.
    const dap = [0x10, 0, 3, 0, 0x00, 0x00, 0x00, 0x08, 300 & 0xff, 300 >> 8, 0, 0, 0, 0, 0, 0];
    machine.writeMemory(0x700, Uint8Array.from(dap));
    const read = await callInterrupt(machine, 0x13, { eax: 0x4200, edx: 0x80, esi: 0x700 });
    expect(read.carry).toBe(false);
    expect(read.ah).toBe(0);
    expect(machine.memory.read8(0x8000)).toBe(300 & 0xff);
    expect(machine.memory.read8(0x8000 + 512)).toBe(301 & 0xff);
    expect(machine.memory.read8(0x8000 + 1535)).toBe(302 & 0xff);
    // 08h and 02h: the same sector through CHS.
    const geometry = await callInterrupt(machine, 0x13, { eax: 0x0800, edx: 0x80 });
    expect(geometry.carry).toBe(false);
    const spt = geometry.ecx & 0x3f;
    const heads = ((geometry.edx >> 8) & 0xff) + 1;
    expect({ spt, heads, drives: geometry.edx & 0xff }).toEqual({
      ...pick(biosGeometry(sectors)),
      drives: 1,
    });
    const lba = 1000;
    const c = Math.floor(lba / (heads * spt));
    const h = Math.floor(lba / spt) % heads;
    const s = (lba % spt) + 1;
    const chs = await callInterrupt(machine, 0x13, {
      eax: 0x0201,
      ecx: ((c & 0xff) << 8) | ((c >> 2) & 0xc0) | s,
      edx: (h << 8) | 0x80,
      es: 0x0900,
      ebx: 0,
    });
    expect(chs.carry).toBe(false);
    expect(chs.al).toBe(1);
    expect(machine.memory.read8(0x9000)).toBe(lba & 0xff);
    // Out of range: error, carry set.
    machine.writeMemory(0x700, Uint8Array.from([0x10, 0, 1, 0, 0, 0, 0, 8, 0xff, 0xff, 0, 0, 0, 0, 0, 0]));
    const bad = await callInterrupt(machine, 0x13, { eax: 0x4200, edx: 0x80, esi: 0x700 });
    expect(bad.carry).toBe(true);
    expect(bad.ah).toBe(0x04);
    // Other drives do not exist.
    const other = await callInterrupt(machine, 0x13, { eax: 0x0800, edx: 0x81 });
    expect(other.carry).toBe(true);
  });

  it("int 13h 43h writes land in the overlay: read back by the guest, never in the disk", async () => {
    const data = patternDisk(64);
    const disk = bufferDisk(data);
    const machine = newMachine({ disk });
    machine.writeMemory(0x8000, new Uint8Array(512).fill(0xee));
    machine.writeMemory(
      0x700,
      Uint8Array.from([0x10, 0, 1, 0, 0x00, 0x00, 0x00, 0x08, 7, 0, 0, 0, 0, 0, 0, 0]),
    );
    const write = await callInterrupt(machine, 0x13, { eax: 0x4300, edx: 0x80, esi: 0x700 });
    expect(write.carry).toBe(false);
    expect(data[7 * 512]).toBe(7);
    machine.writeMemory(
      0x700,
      Uint8Array.from([0x10, 0, 2, 0, 0x00, 0x00, 0x00, 0x09, 6, 0, 0, 0, 0, 0, 0, 0]),
    );
    await callInterrupt(machine, 0x13, { eax: 0x4200, edx: 0x80, esi: 0x700 });
    expect(machine.memory.read8(0x9000)).toBe(6);
    expect(machine.memory.read8(0x9200)).toBe(0xee);
  });

  it("int 10h teletype writes the VGA text buffer and the screen transcript; 03h reports the cursor", async () => {
    const machine = newMachine();
    for (const ch of "OK\r\n!") await callInterrupt(machine, 0x10, { eax: 0x0e00 | ch.charCodeAt(0) });
    expect(machine.vga.textDump()).toBe("OK\n!");
    expect(machine.screen.toString()).toBe("OK\r\n!");
    const cursor = await callInterrupt(machine, 0x10, { eax: 0x0300 });
    expect(cursor.edx & 0xffff).toBe(0x0101);
    const mode = await callInterrupt(machine, 0x10, { eax: 0x0f00 });
    expect(mode.al).toBe(3);
    expect(mode.ah).toBe(80);
    const vbe = await callInterrupt(machine, 0x10, { eax: 0x4f00 });
    expect(vbe.eax & 0xffff).not.toBe(0x004f); // no VBE: loaders stay in text mode
  });

  it("int 16h has no key (ZF set) and lets virtual time pass while polled", async () => {
    const machine = newMachine();
    const skipped = machine.clock.skipped;
    const poll = await callInterrupt(machine, 0x16, { eax: 0x0100 });
    expect(poll.zero).toBe(true);
    expect(machine.clock.skipped).toBeGreaterThan(skipped);
  });

  it("int 1Ah: tick count and RTC time from the virtual epoch; PCI BIOS finds the bridges", async () => {
    const machine = newMachine();
    const ticks = await callInterrupt(machine, 0x1a, { eax: 0 });
    const count = ((ticks.ecx & 0xffff) << 16) | (ticks.edx & 0xffff);
    const expected = Math.floor(((DEFAULT_EPOCH_MS % 86_400_000) * 1e6 + machine.clock.now()) / TICK_NS);
    expect(Math.abs(count - expected)).toBeLessThanOrEqual(1);
    const date = await callInterrupt(machine, 0x1a, { eax: 0x0400 });
    expect(date.ecx & 0xffff).toBe(0x2024);
    expect(date.edx & 0xffff).toBe(0x0101);
    const pci = await callInterrupt(machine, 0x1a, { eax: 0xb101 });
    expect(pci.carry).toBe(false);
    expect(pci.ah).toBe(0);
    expect(pci.edx).toBe(0x20494350);
    const find = await callInterrupt(machine, 0x1a, { eax: 0xb102, ecx: 0x7000, edx: 0x8086, esi: 0 });
    expect(find.carry).toBe(false);
    expect(find.ebx & 0xffff).toBe(1 << 3);
    const missing = await callInterrupt(machine, 0x1a, { eax: 0xb102, ecx: 0x1234, edx: 0x8086, esi: 0 });
    expect(missing.carry).toBe(true);
    expect(missing.ah).toBe(0x86);
    const config = await callInterrupt(machine, 0x1a, { eax: 0xb10a, ebx: 0x0000, edi: 0 });
    expect(config.ecx).toBe(0x12378086);
  });
});

function pick(g: { heads: number; sectors: number }) {
  return { spt: g.sectors, heads: g.heads };
}

describe("virtual time across idle", () => {
  it("HLT fast-forwards to the next timer tick and the TSC keeps up with virtual time", async () => {
    const machine = newMachine();
    // rdtsc; mov ebx, eax; sti; hlt; cli; rdtsc; cli; hlt — the BIOS's 18.2 Hz IRQ 0 wakes the HLT.
    const code = [0x0f, 0x31, 0x66, 0x89, 0xc3, 0xfb, 0xf4, 0xfa, 0x0f, 0x31, 0xfa, 0xf4];
    machine.writeMemory(0x7000, Uint8Array.from(code));
    machine.cpu.jumpReal(0, 0x7000);
    machine.cpu.setFlags(0x0002);
    const stop = await machine.run({ maxVirtualNs: 1e9 });
    expect(stop.kind).toBe("guest-halted");
    expect(machine.clock.skipped).toBeGreaterThan(1e6);
    const elapsed = (machine.cpu.getReg32(0) - machine.cpu.getReg32(3)) >>> 0;
    expect(elapsed).toBeGreaterThanOrEqual(Math.floor(machine.clock.skipped));
  });
});
