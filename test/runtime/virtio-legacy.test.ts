import { describe, expect, it } from "vitest";
import {
  VIRTIO_BLK_F_FLUSH,
  VIRTIO_BLK_F_RO,
  VIRTIO_BLK_F_SEG_MAX,
  VIRTIO_BLK_S_IOERR,
  VIRTIO_BLK_S_OK,
  VIRTIO_BLK_S_UNSUPP,
  VIRTIO_BLK_T_FLUSH,
  VIRTIO_BLK_T_GET_ID,
  VIRTIO_BLK_T_IN,
  VIRTIO_BLK_T_OUT,
} from "../../src/runtime/devices/virtio-blk.js";
import {
  STATUS_ACKNOWLEDGE,
  STATUS_DEVICE_NEEDS_RESET,
  STATUS_DRIVER,
  STATUS_DRIVER_OK,
} from "../../src/runtime/devices/virtio-pci.js";
import {
  DESC_FLAG_INDIRECT,
  DESC_FLAG_NEXT,
  DESC_FLAG_WRITE,
  type FakeGuest,
  FakeRing,
  fakeGuest,
  IO_BASE,
  patternedDisk,
  writeHeader,
} from "./virtio-guest.js";

/**
 * virtio-blk through the legacy I/O BAR, driven the way Linux's
 * virtio_pci_legacy.c + virtio_ring.c + virtio_blk.c do it: find the
 * function in PCI config space, reset, ACKNOWLEDGE, DRIVER, read host
 * features, write guest features, read the config, select queue 0, read
 * its size, write the ring's PFN, DRIVER_OK; then requests are chains on
 * the ring, a kick is a write of the queue index to QUEUE_NOTIFY, and the
 * interrupt handler reads the ISR (clearing it) and the used ring.
 */

// Legacy register offsets (VIRTIO 1.2 §4.1.4.8), as the driver knows them.
const HOST_FEATURES = 0x00;
const GUEST_FEATURES = 0x04;
const QUEUE_PFN = 0x08;
const QUEUE_NUM = 0x0c;
const QUEUE_SEL = 0x0e;
const QUEUE_NOTIFY = 0x10;
const STATUS = 0x12;
const ISR = 0x13;
const CONFIG = 0x14;

const RING_PFN = 0x10; // ring at 64 KiB
const HEADER = 0x40000;
const DATA = 0x50000;
const STATUS_BYTE = 0x60000;

interface LegacyDriver {
  guest: FakeGuest;
  ring: FakeRing;
  bar: number;
  irqLine: number;
  hostFeatures: number;
}

/** Probes and initialises the device as virtio_pci_legacy + virtio_blk do. */
function probe(disk: Buffer, options: { readOnly?: boolean } = {}): LegacyDriver {
  const guest = fakeGuest(disk, { ...options, modern: false });
  const { io } = guest;
  expect(guest.pciRead(0x00)).toBe(0x10011af4); // vendor 1AF4, device 1001 (transitional block)
  expect(guest.pciRead(0x08) & 0xff).toBe(0); // revision 0: the legacy ABI version
  expect(guest.pciRead(0x08) >>> 8).toBe(0x018000); // class: mass storage, other
  expect(guest.pciRead(0x2c) >>> 16).toBe(2); // subsystem ID = virtio block
  // Size BAR0 as the PCI core does: write ones, read the mask, restore.
  const bar0 = guest.pciRead(0x10);
  guest.pciWrite(0x10, 0xffffffff);
  const sized = guest.pciRead(0x10);
  guest.pciWrite(0x10, bar0);
  expect(sized & 1).toBe(1); // I/O space
  expect((~(sized & ~3) + 1) & 0xffff).toBe(0x40);
  const bar = bar0 & ~3;
  expect(bar).toBe(IO_BASE);
  const irqLine = guest.pciRead(0x3c) & 0xff;
  expect(guest.pciRead(0x3d, 1)).toBe(1); // INTA#

  io.write(bar + STATUS, 1, 0); // reset
  io.write(bar + STATUS, 1, STATUS_ACKNOWLEDGE);
  io.write(bar + STATUS, 1, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
  const hostFeatures = io.read(bar + HOST_FEATURES, 4);
  io.write(bar + GUEST_FEATURES, 4, hostFeatures & ((1 << VIRTIO_BLK_F_SEG_MAX) | (1 << VIRTIO_BLK_F_FLUSH)));
  io.write(bar + QUEUE_SEL, 2, 0);
  const size = io.read(bar + QUEUE_NUM, 2);
  expect(io.read(bar + QUEUE_PFN, 4)).toBe(0); // not already active
  const desc = RING_PFN * 4096;
  const avail = desc + 16 * size;
  const used = desc + Math.ceil((16 * size + 6 + 2 * size) / 4096) * 4096;
  io.write(bar + QUEUE_PFN, 4, RING_PFN);
  io.write(bar + STATUS, 1, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_DRIVER_OK);
  return { guest, ring: new FakeRing(guest.memory, size, desc, avail, used), bar, irqLine, hostFeatures };
}

/** Submits a header + data + status request in descriptors 0-2 and kicks queue 0. */
async function request(
  d: LegacyDriver,
  type: number,
  sector: number,
  dataLength: number,
  dataWritable: boolean,
): Promise<{ status: number; used: { id: number; len: number } }> {
  const { memory, io } = d.guest;
  writeHeader(memory, HEADER, type, sector);
  memory.ram[STATUS_BYTE] = 0xee;
  const usedBefore = d.ring.usedIdx();
  if (dataLength > 0) {
    d.ring.writeDesc(0, { addr: HEADER, len: 16, flags: DESC_FLAG_NEXT, next: 1 });
    d.ring.writeDesc(1, {
      addr: DATA,
      len: dataLength,
      flags: DESC_FLAG_NEXT | (dataWritable ? DESC_FLAG_WRITE : 0),
      next: 2,
    });
    d.ring.writeDesc(2, { addr: STATUS_BYTE, len: 1, flags: DESC_FLAG_WRITE });
  } else {
    d.ring.writeDesc(0, { addr: HEADER, len: 16, flags: DESC_FLAG_NEXT, next: 2 });
    d.ring.writeDesc(2, { addr: STATUS_BYTE, len: 1, flags: DESC_FLAG_WRITE });
  }
  d.ring.makeAvailable(0);
  io.write(d.bar + QUEUE_NOTIFY, 2, 0);
  await d.guest.device.settle();
  expect(d.ring.usedIdx()).toBe((usedBefore + 1) & 0xffff);
  return { status: memory.ram[STATUS_BYTE]!, used: d.ring.usedElem(usedBefore) };
}

describe("virtio-blk over the legacy virtio-pci interface", () => {
  it("negotiates, reads the config and reaches DRIVER_OK with a queue set up", () => {
    const d = probe(patternedDisk(64));
    expect(d.hostFeatures & (1 << VIRTIO_BLK_F_SEG_MAX)).not.toBe(0);
    expect(d.hostFeatures & (1 << VIRTIO_BLK_F_FLUSH)).not.toBe(0);
    expect(d.hostFeatures & (1 << VIRTIO_BLK_F_RO)).toBe(0); // the overlay is writable
    const { io } = d.guest;
    expect(io.read(d.bar + CONFIG, 4)).toBe(64); // capacity in sectors (low half)
    expect(io.read(d.bar + CONFIG + 4, 4)).toBe(0);
    expect(io.read(d.bar + CONFIG + 12, 4)).toBe(254); // seg_max
    expect(io.read(d.bar + CONFIG + 20, 4)).toBe(512); // blk_size
    expect(io.read(d.bar + QUEUE_NUM, 2)).toBe(256);
    expect(io.read(d.bar + QUEUE_PFN, 4)).toBe(RING_PFN);
    const activity = d.guest.device.activity;
    expect(activity.driverOk).toBe(true);
    expect(activity.interfaceUsed).toBe("legacy");
    expect(activity.queuesSetUp).toBe(1);
    expect(activity.configReads).toBeGreaterThan(0);
    expect(activity.statusHistory.map((s) => s.status)).toEqual([0, 1, 3, 7]);
    expect(d.guest.device.describe()).toContain("DRIVER_OK yes");
  });

  it("IN reads sectors into guest RAM, completes on the used ring and interrupts through the PIRQ route", async () => {
    const disk = patternedDisk(64);
    const d = probe(disk);
    // Slot 3, INTA → PIRQ D → IRQ 11 with the PIIX routing the platform programs.
    expect(d.irqLine).toBe(11);
    const { status, used } = await request(d, VIRTIO_BLK_T_IN, 5, 3 * 512, true);
    expect(status).toBe(VIRTIO_BLK_S_OK);
    expect(used).toEqual({ id: 0, len: 3 * 512 + 1 });
    expect(
      Buffer.from(d.guest.memory.ram.subarray(DATA, DATA + 3 * 512)).equals(disk.subarray(5 * 512, 8 * 512)),
    ).toBe(true);
    expect(d.guest.irq.get(11)).toBe(true);
    expect(d.guest.io.read(d.bar + ISR, 1)).toBe(1); // a used-buffer interrupt
    expect(d.guest.irq.get(11)).toBe(false); // reading the ISR deasserts INTx
    expect(d.guest.io.read(d.bar + ISR, 1)).toBe(0);
    expect(d.guest.blk.stats.sectorsRead).toBe(3);
  });

  it("OUT writes to the overlay only; a later IN reads the written data back", async () => {
    const disk = patternedDisk(16);
    const copy = Buffer.from(disk);
    const d = probe(disk);
    d.guest.memory.ram.fill(0xab, DATA, DATA + 1024);
    const out = await request(d, VIRTIO_BLK_T_OUT, 2, 1024, false);
    expect(out.status).toBe(VIRTIO_BLK_S_OK);
    expect(out.used.len).toBe(1);
    d.guest.memory.ram.fill(0, DATA, DATA + 2048);
    const back = await request(d, VIRTIO_BLK_T_IN, 1, 2048, true);
    expect(back.status).toBe(VIRTIO_BLK_S_OK);
    const ram = d.guest.memory.ram;
    expect(ram[DATA]).toBe(copy[512]); // sector 1 unchanged
    expect(ram[DATA + 512]).toBe(0xab);
    expect(ram[DATA + 1535]).toBe(0xab);
    expect(ram[DATA + 1536]).toBe(copy[4 * 512]); // sector 4 unchanged
    expect(disk.equals(copy)).toBe(true); // the base disk was not written
    expect(d.guest.overlay.writtenSectors).toBe(2);
  });

  it("FLUSH and GET_ID succeed; unknown request types answer UNSUPP", async () => {
    const d = probe(patternedDisk(8));
    expect((await request(d, VIRTIO_BLK_T_FLUSH, 0, 0, false)).status).toBe(VIRTIO_BLK_S_OK);
    const id = await request(d, VIRTIO_BLK_T_GET_ID, 0, 20, true);
    expect(id.status).toBe(VIRTIO_BLK_S_OK);
    expect(Buffer.from(d.guest.memory.ram.subarray(DATA, DATA + 11)).toString("latin1")).toBe("ovfkit-disk");
    expect((await request(d, 99, 0, 0, false)).status).toBe(VIRTIO_BLK_S_UNSUPP);
  });

  it("a read-only disk offers VIRTIO_BLK_F_RO and fails OUT with IOERR", async () => {
    const d = probe(patternedDisk(8), { readOnly: true });
    expect(d.hostFeatures & (1 << VIRTIO_BLK_F_RO)).not.toBe(0);
    expect((await request(d, VIRTIO_BLK_T_OUT, 0, 512, false)).status).toBe(VIRTIO_BLK_S_IOERR);
    expect(d.guest.overlay.writtenSectors).toBe(0);
  });

  it("indirect descriptors: one ring slot pointing at a table of three", async () => {
    const disk = patternedDisk(32);
    const d = probe(disk);
    const { memory, io } = d.guest;
    const table = 0x70000;
    writeHeader(memory, HEADER, VIRTIO_BLK_T_IN, 9);
    d.ring.writeDesc(0, { addr: HEADER, len: 16, flags: DESC_FLAG_NEXT, next: 1 }, table);
    d.ring.writeDesc(1, { addr: DATA, len: 512, flags: DESC_FLAG_NEXT | DESC_FLAG_WRITE, next: 2 }, table);
    d.ring.writeDesc(2, { addr: STATUS_BYTE, len: 1, flags: DESC_FLAG_WRITE }, table);
    d.ring.writeDesc(7, { addr: table, len: 48, flags: DESC_FLAG_INDIRECT });
    d.ring.makeAvailable(7);
    io.write(d.bar + QUEUE_NOTIFY, 2, 0);
    await d.guest.device.settle();
    expect(d.ring.usedElem(0)).toEqual({ id: 7, len: 513 });
    expect(memory.ram[STATUS_BYTE]).toBe(VIRTIO_BLK_S_OK);
    expect(memory.ram[DATA]).toBe(disk[9 * 512]);
  });

  it("a device reset (status 0) forgets the queue and lowers the interrupt", async () => {
    const d = probe(patternedDisk(8));
    await request(d, VIRTIO_BLK_T_IN, 0, 512, true);
    expect(d.guest.irq.get(11)).toBe(true);
    d.guest.io.write(d.bar + STATUS, 1, 0);
    expect(d.guest.irq.get(11)).toBe(false);
    expect(d.guest.io.read(d.bar + STATUS, 1)).toBe(0);
    expect(d.guest.io.read(d.bar + QUEUE_PFN, 4)).toBe(0);
  });
});

describe("virtio-blk with bad requests from the driver", () => {
  it("a sector range past the end of the disk answers IOERR", async () => {
    const d = probe(patternedDisk(8));
    const { status, used } = await request(d, VIRTIO_BLK_T_IN, 7, 1024, true);
    expect(status).toBe(VIRTIO_BLK_S_IOERR);
    expect(used.len).toBe(1);
  });

  it("IN with a device-readable data buffer (wrong direction) answers IOERR", async () => {
    const d = probe(patternedDisk(8));
    expect((await request(d, VIRTIO_BLK_T_IN, 0, 512, false)).status).toBe(VIRTIO_BLK_S_IOERR);
  });

  it("OUT with a device-writable data buffer (wrong direction) answers IOERR", async () => {
    const d = probe(patternedDisk(8));
    expect((await request(d, VIRTIO_BLK_T_OUT, 0, 512, true)).status).toBe(VIRTIO_BLK_S_IOERR);
    expect(d.guest.overlay.writtenSectors).toBe(0);
  });

  /** Kicks a chain that cannot be answered and checks the device asks for a reset. */
  async function expectNeedsReset(d: LegacyDriver, head: number, why: RegExp): Promise<void> {
    d.ring.makeAvailable(head);
    d.guest.io.write(d.bar + QUEUE_NOTIFY, 2, 0);
    await d.guest.device.settle();
    expect(d.guest.io.read(d.bar + STATUS, 1) & STATUS_DEVICE_NEEDS_RESET).not.toBe(0);
    expect(d.guest.device.activity.error).toMatch(why);
    expect(d.ring.usedIdx()).toBe(0);
    expect(d.guest.io.read(d.bar + ISR, 1) & 2).toBe(2); // a configuration-change interrupt
  }

  it("a descriptor loop puts the device in DEVICE_NEEDS_RESET instead of hanging", async () => {
    const d = probe(patternedDisk(8));
    d.ring.writeDesc(0, { addr: HEADER, len: 16, flags: DESC_FLAG_NEXT, next: 1 });
    d.ring.writeDesc(1, { addr: DATA, len: 512, flags: DESC_FLAG_NEXT, next: 0 });
    await expectNeedsReset(d, 0, /loops/);
  });

  it("a buffer outside guest RAM puts the device in DEVICE_NEEDS_RESET", async () => {
    const d = probe(patternedDisk(8));
    d.ring.writeDesc(0, { addr: HEADER, len: 16, flags: DESC_FLAG_NEXT, next: 1 });
    d.ring.writeDesc(1, { addr: 0x1_0000_0000, len: 512, flags: DESC_FLAG_WRITE });
    await expectNeedsReset(d, 0, /outside guest RAM/);
  });

  it("a readable descriptor after a writable one is refused", async () => {
    const d = probe(patternedDisk(8));
    d.ring.writeDesc(0, { addr: STATUS_BYTE, len: 1, flags: DESC_FLAG_WRITE | DESC_FLAG_NEXT, next: 1 });
    d.ring.writeDesc(1, { addr: HEADER, len: 16, flags: 0 });
    await expectNeedsReset(d, 0, /readable descriptor after a device-writable/);
  });

  it("a chain with no writable status byte is refused", async () => {
    const d = probe(patternedDisk(8));
    d.ring.writeDesc(0, { addr: HEADER, len: 16, flags: 0 });
    await expectNeedsReset(d, 0, /no device-writable status byte/);
  });

  it("a head index outside the queue, a link outside the table and nested indirect tables are refused", async () => {
    for (const [setup, why] of [
      [(d: LegacyDriver) => d.ring.makeAvailable(0xffff), /outside the queue/],
      [
        (d: LegacyDriver) => {
          d.ring.writeDesc(0, { addr: HEADER, len: 16, flags: DESC_FLAG_NEXT, next: 4000 });
          d.ring.makeAvailable(0);
        },
        /links to 4000/,
      ],
      [
        (d: LegacyDriver) => {
          d.ring.writeDesc(0, { addr: 0x70000, len: 16, flags: DESC_FLAG_INDIRECT }, 0x70000);
          d.ring.writeDesc(0, { addr: 0x70000, len: 16, flags: DESC_FLAG_INDIRECT });
          d.ring.makeAvailable(0);
        },
        /nested indirect/,
      ],
    ] as const) {
      const d = probe(patternedDisk(8));
      setup(d);
      d.guest.io.write(d.bar + QUEUE_NOTIFY, 2, 0);
      await d.guest.device.settle();
      expect(d.guest.device.deviceStatus & STATUS_DEVICE_NEEDS_RESET).not.toBe(0);
      expect(d.guest.device.activity.error).toMatch(why);
    }
  });

  it("an available index more than a queue ahead is refused", async () => {
    const d = probe(patternedDisk(8));
    d.ring.setAvailIndex(1000);
    d.guest.io.write(d.bar + QUEUE_NOTIFY, 2, 0);
    await d.guest.device.settle();
    expect(d.guest.device.activity.error).toMatch(/more than the queue size/);
  });

  it("a queue PFN whose rings fall outside RAM is refused at set-up", () => {
    const guest = fakeGuest(patternedDisk(8), { modern: false });
    guest.io.write(IO_BASE + QUEUE_SEL, 2, 0);
    guest.io.write(IO_BASE + QUEUE_PFN, 4, 0xfffff);
    expect(guest.device.deviceStatus & STATUS_DEVICE_NEEDS_RESET).not.toBe(0);
    expect(guest.device.activity.queuesSetUp).toBe(0);
    expect(guest.device.describe()).toMatch(/DRIVER_OK no.*device error: descriptor table/);
  });
});
