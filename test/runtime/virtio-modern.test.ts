import { describe, expect, it } from "vitest";
import { VIRTIO_BLK_S_OK, VIRTIO_BLK_T_IN } from "../../src/runtime/devices/virtio-blk.js";
import {
  STATUS_ACKNOWLEDGE,
  STATUS_DRIVER,
  STATUS_DRIVER_OK,
  STATUS_FEATURES_OK,
} from "../../src/runtime/devices/virtio-pci.js";
import {
  DESC_FLAG_NEXT,
  DESC_FLAG_WRITE,
  FakeRing,
  fakeGuest,
  MMIO_BASE,
  patternedDisk,
  writeHeader,
} from "./virtio-guest.js";

/**
 * virtio-blk through the modern virtio-pci interface (VIRTIO 1.2 §4.1.4),
 * driven as Linux's virtio_pci_modern.c does: walk the vendor capability
 * list, find the common/notify/ISR/device structures in the memory BAR,
 * negotiate 64 feature bits including VERSION_1, FEATURES_OK, set the queue
 * addresses as 64-bit halves, queue_enable, DRIVER_OK.
 */

// Common configuration (§4.1.4.3).
const DFSELECT = 0x00;
const DF = 0x04;
const GFSELECT = 0x08;
const GF = 0x0c;
const NUMQ = 0x12;
const STATUS = 0x14;
const Q_SELECT = 0x16;
const Q_SIZE = 0x18;
const Q_ENABLE = 0x1c;
const Q_NOFF = 0x1e;
const Q_DESC = 0x20;
const Q_AVAIL = 0x28;
const Q_USED = 0x30;

interface Cap {
  type: number;
  bar: number;
  offset: number;
  length: number;
  multiplier?: number;
}

describe("virtio-blk over the modern virtio-pci interface", () => {
  it("capabilities, VERSION_1 negotiation, queue set-up and a read request", async () => {
    const disk = patternedDisk(32);
    const guest = fakeGuest(disk);
    const { memory } = guest;
    expect((guest.pciRead(0x04) >>> 16) & 0x10).toBe(0x10); // status: capabilities list
    const caps = new Map<number, Cap>();
    for (let at = guest.pciRead(0x34, 1); at !== 0; at = guest.pciRead(at + 1, 1)) {
      expect(guest.pciRead(at, 1)).toBe(0x09); // vendor-specific
      const cap: Cap = {
        type: guest.pciRead(at + 3, 1),
        bar: guest.pciRead(at + 4, 1),
        offset: guest.pciRead(at + 8),
        length: guest.pciRead(at + 12),
      };
      if (cap.type === 2) cap.multiplier = guest.pciRead(at + 16);
      caps.set(cap.type, cap);
    }
    expect([...caps.keys()].sort()).toEqual([1, 2, 3, 4]);
    const bar = (guest.pciRead(0x10 + 4 * caps.get(1)!.bar) & ~0xf) >>> 0;
    expect(bar).toBe(MMIO_BASE);
    const common = bar + caps.get(1)!.offset;
    const isr = bar + caps.get(3)!.offset;
    const device = bar + caps.get(4)!.offset;
    const notify = bar + caps.get(2)!.offset;

    memory.write8(common + STATUS, 0);
    expect(memory.read8(common + STATUS)).toBe(0);
    memory.write8(common + STATUS, STATUS_ACKNOWLEDGE);
    memory.write8(common + STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
    memory.write32(common + DFSELECT, 0);
    const low = memory.read32(common + DF);
    memory.write32(common + DFSELECT, 1);
    const high = memory.read32(common + DF);
    expect(high & 1).toBe(1); // VIRTIO_F_VERSION_1 (bit 32)
    memory.write32(common + GFSELECT, 0);
    memory.write32(common + GF, low);
    memory.write32(common + GFSELECT, 1);
    memory.write32(common + GF, 1);
    memory.write8(common + STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK);
    expect(memory.read8(common + STATUS) & STATUS_FEATURES_OK).toBe(STATUS_FEATURES_OK);
    expect(memory.read32(device)).toBe(32); // capacity
    expect(memory.read16(common + NUMQ)).toBe(1);

    memory.write16(common + Q_SELECT, 0);
    expect(memory.read16(common + Q_SIZE)).toBe(256);
    memory.write16(common + Q_SIZE, 64); // a driver may ask for a smaller ring
    const ring = new FakeRing(memory, 64, 0x10000, 0x11000, 0x12000);
    memory.write32(common + Q_DESC, ring.desc);
    memory.write32(common + Q_DESC + 4, 0);
    memory.write32(common + Q_AVAIL, ring.avail);
    memory.write32(common + Q_AVAIL + 4, 0);
    memory.write32(common + Q_USED, ring.used);
    memory.write32(common + Q_USED + 4, 0);
    const notifyOff = memory.read16(common + Q_NOFF);
    memory.write16(common + Q_ENABLE, 1);
    memory.write8(
      common + STATUS,
      STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK,
    );
    expect(guest.device.activity.interfaceUsed).toBe("modern");
    expect(guest.device.activity.driverOk).toBe(true);
    expect(guest.device.negotiatedFeatures[1]).toBe(1);

    writeHeader(memory, 0x20000, VIRTIO_BLK_T_IN, 3);
    ring.writeDesc(0, { addr: 0x20000, len: 16, flags: DESC_FLAG_NEXT, next: 1 });
    ring.writeDesc(1, { addr: 0x21000, len: 1024, flags: DESC_FLAG_NEXT | DESC_FLAG_WRITE, next: 2 });
    ring.writeDesc(2, { addr: 0x22000, len: 1, flags: DESC_FLAG_WRITE });
    ring.makeAvailable(0);
    memory.write16(notify + notifyOff * caps.get(2)!.multiplier!, 0);
    await guest.device.settle();
    expect(ring.usedIdx()).toBe(1);
    expect(ring.usedElem(0)).toEqual({ id: 0, len: 1025 });
    expect(memory.ram[0x22000]).toBe(VIRTIO_BLK_S_OK);
    expect(Buffer.from(memory.ram.subarray(0x21000, 0x21400)).equals(disk.subarray(3 * 512, 5 * 512))).toBe(
      true,
    );
    expect(memory.read8(isr)).toBe(1);
    expect(memory.read8(isr)).toBe(0);
  });

  it("FEATURES_OK is refused when the driver asks for a feature the device lacks", () => {
    const guest = fakeGuest(patternedDisk(8));
    const common = MMIO_BASE;
    guest.memory.write32(common + GFSELECT, 1);
    guest.memory.write32(common + GF, 0x80); // bit 39: not offered
    guest.memory.write8(common + STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK);
    expect(guest.memory.read8(common + STATUS) & STATUS_FEATURES_OK).toBe(0);
  });

  it("queue addresses above RAM (a high half) are refused when the queue is enabled", () => {
    const guest = fakeGuest(patternedDisk(8));
    const common = MMIO_BASE;
    guest.memory.write32(common + Q_DESC + 4, 1);
    guest.memory.write16(common + Q_ENABLE, 1);
    expect(guest.memory.read16(common + Q_ENABLE)).toBe(0);
    expect(guest.device.activity.error).toMatch(/outside guest RAM/);
  });

  it("a BAR moved by the guest answers at its new address only", () => {
    const guest = fakeGuest(patternedDisk(8));
    guest.pciWrite(0x20, 0xfe000000);
    expect(guest.memory.read16(0xfe000000 + NUMQ)).toBe(1);
    expect(guest.memory.read16(MMIO_BASE + NUMQ)).toBe(0xffff);
  });
});
