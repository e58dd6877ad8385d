import { describe, expect, it } from "vitest";
import { IoBus } from "../../src/runtime/bus.js";
import {
  ATA_ABRT,
  ATA_BSY,
  ATA_DRDY,
  ATA_DRQ,
  ATA_ERR,
  ATA_IDNF,
  CMD_FLUSH_CACHE,
  CMD_IDENTIFY,
  CMD_READ_SECTORS,
  CMD_READ_SECTORS_EXT,
  CMD_WRITE_SECTORS,
  IdeController,
} from "../../src/runtime/devices/ide.js";
import { PciBus } from "../../src/runtime/devices/pci.js";
import { CowOverlay } from "../../src/runtime/disk-overlay.js";
import { bufferDisk } from "./harness.js";
import { patternedDisk } from "./virtio-guest.js";

/**
 * The legacy IDE disk at the register level, driven as an ATA PIO host
 * driver (libata's ata_sff, or a BIOS) does: select the device, write the
 * task file, write the command, wait for BSY to clear and DRQ (or the
 * interrupt), move 256 words per sector through the data port, read Status
 * to acknowledge INTRQ.
 */

const BASE = 0x1f0;
const CONTROL = 0x3f6;

function setup(sectors = 64) {
  const io = new IoBus();
  const pci = new PciBus();
  pci.register(io);
  const base = patternedDisk(sectors);
  const overlay = new CowOverlay(bufferDisk(base));
  const irq = { level: false, edges: 0 };
  const ide = new IdeController({
    io,
    pci,
    disk: overlay,
    irq: {
      raise: () => {
        if (!irq.level) irq.edges++;
        irq.level = true;
      },
      lower: () => {
        irq.level = false;
      },
    },
  });
  ide.register();
  return { io, pci, ide, base, overlay, irq };
}

type Setup = ReturnType<typeof setup>;

/** Waits as a driver polling alternate status would: until BSY clears (the machine settles I/O meanwhile). */
async function waitNotBusy(s: Setup): Promise<number> {
  await s.ide.settle();
  const status = s.io.read(CONTROL, 1);
  expect(status & ATA_BSY).toBe(0);
  return status;
}

function readWords(io: IoBus, words: number): Buffer {
  const out = Buffer.alloc(words * 2);
  for (let i = 0; i < words; i++) out.writeUInt16LE(io.read(BASE, 2), 2 * i);
  return out;
}

function lba28(io: IoBus, lba: number, count: number): void {
  io.write(BASE + 6, 1, 0xe0 | ((lba >>> 24) & 0x0f)); // LBA, device 0
  io.write(BASE + 2, 1, count & 0xff);
  io.write(BASE + 3, 1, lba & 0xff);
  io.write(BASE + 4, 1, (lba >>> 8) & 0xff);
  io.write(BASE + 5, 1, (lba >>> 16) & 0xff);
}

describe("legacy IDE (ATA PIO) disk", () => {
  it("is a PIIX3 IDE PCI function with the primary channel enabled and no bus-master BAR", () => {
    const { pci } = setup();
    expect(pci.readConfig(1, 1, 0, 4)).toBe(0x70108086);
    expect(pci.readConfig(1, 1, 8, 4) >>> 8).toBe(0x010180);
    expect(pci.readConfig(1, 1, 0x41, 1) & 0x80).toBe(0x80);
    expect(pci.readConfig(1, 1, 0x20, 4)).toBe(0); // BAR4: none, so libata uses PIO
  });

  it("shows the ATA signature, and a soft reset restores it", () => {
    const { io } = setup();
    expect(io.read(BASE + 2, 1)).toBe(1);
    expect(io.read(BASE + 3, 1)).toBe(1);
    expect(io.read(BASE + 4, 1)).toBe(0);
    expect(io.read(BASE + 5, 1)).toBe(0);
    io.write(BASE + 2, 1, 0x55);
    io.write(CONTROL, 1, 0x04); // SRST
    expect(io.read(CONTROL, 1) & ATA_BSY).toBe(ATA_BSY);
    io.write(CONTROL, 1, 0x00);
    expect(io.read(BASE + 7, 1) & (ATA_BSY | ATA_DRDY)).toBe(ATA_DRDY);
    expect(io.read(BASE + 2, 1)).toBe(1);
    expect(io.read(BASE + 1, 1)).toBe(1); // diagnostic code: passed
  });

  it("the absent device 1 reads as zero, so a probe finds nothing there", () => {
    const { io } = setup();
    io.write(BASE + 6, 1, 0xb0);
    io.write(BASE + 2, 1, 0x55);
    expect(io.read(BASE + 2, 1)).toBe(0);
    expect(io.read(BASE + 7, 1)).toBe(0);
  });

  it("IDENTIFY DEVICE: model, LBA28 and LBA48 capacity, LBA and FLUSH support", async () => {
    const s = setup(1000);
    s.io.write(BASE + 6, 1, 0xa0);
    s.io.write(BASE + 7, 1, CMD_IDENTIFY);
    const status = await waitNotBusy(s);
    expect(status & ATA_DRQ).toBe(ATA_DRQ);
    expect(s.irq.level).toBe(true);
    const id = readWords(s.io, 256);
    const word = (n: number) => id.readUInt16LE(2 * n);
    expect(word(0) & 0x8000).toBe(0); // ATA device
    expect(word(49) & 0x0200).toBe(0x0200); // LBA
    expect(word(60) | (word(61) << 16)).toBe(1000);
    expect(word(100) + word(101) * 65536).toBe(1000);
    expect(word(83) & (1 << 10)).not.toBe(0); // LBA48
    expect(word(83) & (1 << 12)).not.toBe(0); // FLUSH CACHE
    // ATA strings are byte-swapped in each word.
    const model = Buffer.from(id.subarray(54, 94));
    model.swap16();
    expect(model.toString("latin1").trim()).toBe("OVFKIT HARDDISK");
    expect(s.io.read(BASE + 7, 1) & (ATA_DRQ | ATA_BSY)).toBe(0);
    expect(s.irq.level).toBe(false); // reading Status acknowledged INTRQ
  });

  it("READ SECTORS (LBA28): one interrupt and one DRQ block per sector", async () => {
    const s = setup();
    lba28(s.io, 10, 3);
    s.io.write(BASE + 7, 1, CMD_READ_SECTORS);
    const data: Buffer[] = [];
    for (let sector = 0; sector < 3; sector++) {
      const status = await waitNotBusy(s);
      expect(status & (ATA_DRQ | ATA_ERR)).toBe(ATA_DRQ);
      expect(s.irq.level).toBe(true);
      s.io.read(BASE + 7, 1);
      data.push(readWords(s.io, 256));
    }
    expect(Buffer.concat(data).equals(s.base.subarray(10 * 512, 13 * 512))).toBe(true);
    expect(s.irq.edges).toBe(3);
    expect((await waitNotBusy(s)) & ATA_DRQ).toBe(0);
  });

  it("READ SECTORS EXT (LBA48) with 32-bit data port reads", async () => {
    const s = setup();
    s.io.write(BASE + 6, 1, 0x40);
    for (const [reg, hob, low] of [
      [2, 0, 2],
      [3, 0, 40],
      [4, 0, 0],
      [5, 0, 0],
    ]) {
      s.io.write(BASE + reg!, 1, hob!);
      s.io.write(BASE + reg!, 1, low!);
    }
    s.io.write(BASE + 7, 1, CMD_READ_SECTORS_EXT);
    const out = Buffer.alloc(1024);
    for (let sector = 0; sector < 2; sector++) {
      await waitNotBusy(s);
      for (let i = 0; i < 128; i++) out.writeUInt32LE(s.io.read(BASE, 4), sector * 512 + 4 * i);
    }
    expect(out.equals(s.base.subarray(40 * 512, 42 * 512))).toBe(true);
  });

  it("WRITE SECTORS goes to the overlay, reads back, and FLUSH CACHE completes", async () => {
    const s = setup();
    const copy = Buffer.from(s.base);
    lba28(s.io, 5, 2);
    s.io.write(BASE + 7, 1, CMD_WRITE_SECTORS);
    for (let sector = 0; sector < 2; sector++) {
      const status = await waitNotBusy(s);
      expect(status & ATA_DRQ).toBe(ATA_DRQ);
      for (let i = 0; i < 256; i++) s.io.write(BASE, 2, 0xbeef);
    }
    expect((await waitNotBusy(s)) & (ATA_DRQ | ATA_ERR)).toBe(0);
    expect(s.overlay.writtenSectors).toBe(2);
    expect(s.base.equals(copy)).toBe(true);
    lba28(s.io, 6, 1);
    s.io.write(BASE + 7, 1, CMD_READ_SECTORS);
    await waitNotBusy(s);
    expect(s.io.read(BASE, 2)).toBe(0xbeef);
    s.io.write(BASE + 7, 1, CMD_FLUSH_CACHE);
    expect((await waitNotBusy(s)) & ATA_ERR).toBe(0);
  });

  it("a range past the end aborts with IDNF; an unknown command aborts with ABRT", async () => {
    const s = setup(16);
    lba28(s.io, 15, 2);
    s.io.write(BASE + 7, 1, CMD_READ_SECTORS);
    expect((await waitNotBusy(s)) & ATA_ERR).toBe(ATA_ERR);
    expect(s.io.read(BASE + 1, 1)).toBe(ATA_IDNF);
    s.io.write(BASE + 7, 1, 0xff);
    expect(s.io.read(BASE + 7, 1) & ATA_ERR).toBe(ATA_ERR);
    expect(s.io.read(BASE + 1, 1)).toBe(ATA_ABRT);
  });

  it("nIEN in device control keeps INTRQ low", async () => {
    const s = setup();
    s.io.write(CONTROL, 1, 0x02);
    s.io.write(BASE + 7, 1, CMD_IDENTIFY);
    await waitNotBusy(s);
    expect(s.irq.edges).toBe(0);
  });
});
