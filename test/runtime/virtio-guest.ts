import { IoBus, MemoryBus } from "../../src/runtime/bus.js";
import { PciBus } from "../../src/runtime/devices/pci.js";
import { VirtioBlk, type VirtioBlkOptions } from "../../src/runtime/devices/virtio-blk.js";
import { VirtioPciDevice } from "../../src/runtime/devices/virtio-pci.js";
import { CowOverlay } from "../../src/runtime/disk-overlay.js";
import { bufferDisk } from "./harness.js";

/**
 * A fake guest for the virtio tests: RAM, the port bus, PCI configuration
 * mechanism #1, and a virtio-blk device in slot 3, driven through ports
 * and RAM exactly as a driver would (nothing here calls the device's
 * internals except `settle()`, which the machine's run loop also calls).
 */

export const SLOT = 3;
export const IO_BASE = 0xc040;
export const MMIO_BASE = 0xfebf0000;
export const DESC_FLAG_NEXT = 1;
export const DESC_FLAG_WRITE = 2;
export const DESC_FLAG_INDIRECT = 4;

export interface FakeGuest {
  memory: MemoryBus;
  io: IoBus;
  device: VirtioPciDevice;
  blk: VirtioBlk;
  overlay: CowOverlay;
  /** IRQ line levels the device drove (irq → high?). */
  irq: Map<number, boolean>;
  base: Buffer;
  pciRead(offset: number, size?: 1 | 2 | 4): number;
  pciWrite(offset: number, value: number, size?: 1 | 2 | 4): void;
}

export function fakeGuest(
  disk: Buffer,
  options: VirtioBlkOptions & { modern?: boolean; ramMiB?: number } = {},
): FakeGuest {
  const memory = new MemoryBus((options.ramMiB ?? 2) * 1024 * 1024);
  const io = new IoBus();
  const pci = new PciBus();
  pci.register(io);
  const overlay = new CowOverlay(bufferDisk(disk));
  const blk = new VirtioBlk(memory, overlay, options);
  const irq = new Map<number, boolean>();
  const device = new VirtioPciDevice(blk, {
    memory,
    io,
    pci,
    slot: SLOT,
    irqLine: (n) => ({ raise: () => irq.set(n, true), lower: () => irq.set(n, false) }),
    ioBase: IO_BASE,
    mmioBase: options.modern === false ? undefined : MMIO_BASE,
  });
  const address = (offset: number) => (0x80000000 | (SLOT << 11) | (offset & 0xfc)) >>> 0;
  return {
    memory,
    io,
    device,
    blk,
    overlay,
    irq,
    base: disk,
    pciRead(offset, size = 4) {
      io.write(0xcf8, 4, address(offset));
      return io.read(0xcfc + (offset & 3), size);
    },
    pciWrite(offset, value, size = 4) {
      io.write(0xcf8, 4, address(offset));
      io.write(0xcfc + (offset & 3), size, value);
    },
  };
}

/** One descriptor the fake driver writes: buffer address, length, flags, next. */
export interface Desc {
  addr: number;
  len: number;
  flags: number;
  next?: number;
}

/** A split ring at fixed guest addresses, filled as Linux's virtio_ring does. */
export class FakeRing {
  private availIdx = 0;
  constructor(
    readonly memory: MemoryBus,
    readonly size: number,
    readonly desc: number,
    readonly avail: number,
    readonly used: number,
  ) {}

  writeDesc(index: number, d: Desc, table = this.desc): void {
    const at = table + 16 * index;
    const view = this.memory.view;
    view.setUint32(at, d.addr % 2 ** 32, true);
    view.setUint32(at + 4, Math.floor(d.addr / 2 ** 32), true);
    view.setUint32(at + 8, d.len, true);
    view.setUint16(at + 12, d.flags, true);
    view.setUint16(at + 14, d.next ?? 0, true);
  }

  /** Publishes `head` on the available ring (entry first, then idx, §2.7.13). */
  makeAvailable(head: number): void {
    const view = this.memory.view;
    view.setUint16(this.avail + 4 + 2 * (this.availIdx % this.size), head, true);
    this.availIdx = (this.availIdx + 1) & 0xffff;
    view.setUint16(this.avail + 2, this.availIdx, true);
  }

  /** Forces the available index (bad-driver tests). */
  setAvailIndex(value: number): void {
    this.memory.view.setUint16(this.avail + 2, value, true);
  }

  usedIdx(): number {
    return this.memory.view.getUint16(this.used + 2, true);
  }

  usedElem(slot: number): { id: number; len: number } {
    const at = this.used + 4 + 8 * (slot % this.size);
    return { id: this.memory.view.getUint32(at, true), len: this.memory.view.getUint32(at + 4, true) };
  }
}

/** Writes a virtio-blk request header (type, sector) at `addr`. */
export function writeHeader(memory: MemoryBus, addr: number, type: number, sector: number): void {
  memory.view.setUint32(addr, type, true);
  memory.view.setUint32(addr + 4, 0, true);
  memory.view.setBigUint64(addr + 8, BigInt(sector), true);
}

/** A disk of `sectors` sectors where every byte of sector n is (n * 7 + 1) & 0xff. */
export function patternedDisk(sectors: number): Buffer {
  const disk = Buffer.alloc(sectors * 512);
  for (let n = 0; n < sectors; n++) disk.fill((n * 7 + 1) & 0xff, n * 512, (n + 1) * 512);
  return disk;
}
