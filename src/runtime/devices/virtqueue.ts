import { OvfkitError } from "../../errors.js";
import type { MemoryBus } from "../bus.js";

/**
 * Split virtqueues (OASIS VIRTIO 1.2 §2.7): the descriptor table, the
 * available ring (driver → device) and the used ring (device → driver),
 * all in guest physical memory. The device side only: it takes the heads
 * the driver made available, walks their descriptor chains (chained and
 * indirect, §2.7.5/§2.7.6) into validated buffer segments, and returns
 * them on the used ring.
 *
 * Everything read from the guest is checked (addresses inside RAM, indices
 * inside the queue, no loops, readable before writable): a bad chain is a
 * `VIRTIO_BAD_DESCRIPTOR` error for the device to report, never an
 * exception that escapes into the emulator.
 */

// Descriptor (§2.7.5): le64 addr, le32 len, le16 flags, le16 next.
const DESC_SIZE = 16;
const DESC_ADDR = 0;
const DESC_LEN = 8;
const DESC_FLAGS = 12;
const DESC_NEXT = 14;
export const VIRTQ_DESC_F_NEXT = 1;
export const VIRTQ_DESC_F_WRITE = 2;
export const VIRTQ_DESC_F_INDIRECT = 4;

// Available ring (§2.7.6): le16 flags, le16 idx, le16 ring[size], le16 used_event.
const AVAIL_IDX = 2;
const AVAIL_RING = 4;
export const VIRTQ_AVAIL_F_NO_INTERRUPT = 1;

// Used ring (§2.7.8): le16 flags, le16 idx, {le32 id, le32 len} ring[size], le16 avail_event.
const USED_IDX = 2;
const USED_RING = 4;
const USED_ELEM_SIZE = 8;

/** Legacy interface alignment of the used ring (§2.7.2, "Legacy Interfaces"). */
export const LEGACY_QUEUE_ALIGN = 4096;

/** Largest queue a device offers; a power of two (§2.7, Queue Size). */
export const MAX_QUEUE_SIZE = 32768;

/** One guest buffer of a chain: `length` bytes at guest physical `address`. */
export interface Segment {
  address: number;
  length: number;
  /** Device-writable (VIRTQ_DESC_F_WRITE): the device fills it; otherwise it reads it. */
  writable: boolean;
}

/** A descriptor chain taken from the available ring. */
export interface Chain {
  head: number;
  readable: Segment[];
  writable: Segment[];
}

function badDescriptor(message: string): OvfkitError {
  return new OvfkitError("VIRTIO_BAD_DESCRIPTOR", message);
}

/** Byte sizes of the three areas of a queue of `size` entries (§2.7). */
export function queueAreaSizes(size: number): { desc: number; avail: number; used: number } {
  return { desc: DESC_SIZE * size, avail: 6 + 2 * size, used: 6 + USED_ELEM_SIZE * size };
}

/** Where the legacy interface puts the areas of a queue at page frame `pfn` (§2.7.2 legacy). */
export function legacyQueueLayout(pfn: number, size: number): { desc: number; avail: number; used: number } {
  const desc = pfn * 4096;
  const avail = desc + DESC_SIZE * size;
  const usedOffset =
    Math.ceil((DESC_SIZE * size + 4 + 2 * size + 2) / LEGACY_QUEUE_ALIGN) * LEGACY_QUEUE_ALIGN;
  return { desc, avail, used: desc + usedOffset };
}

/**
 * Copies `data` into guest RAM as DMA would: pages holding decoded code are
 * invalidated in the CPU's decode cache (the guest may load code this way).
 */
export function dmaWrite(memory: MemoryBus, address: number, data: Uint8Array): void {
  memory.ram.set(data, address);
  if (data.length === 0) return;
  for (let page = address >>> 12; page <= (address + data.length - 1) >>> 12; page++) {
    if (memory.codePages[page]) memory.onCodeWrite(page);
  }
}

export class SplitVirtqueue {
  /** Number of entries (a power of two); 0 = not set up. */
  size: number;
  descAddress = 0;
  availAddress = 0;
  usedAddress = 0;
  /** Whether the driver enabled the queue (legacy: PFN != 0; modern: queue_enable). */
  enabled = false;
  /** The next available-ring position the device will take. */
  private lastAvail = 0;
  /** The device's used index (the driver only reads it). */
  private usedIndex = 0;

  constructor(
    private readonly memory: MemoryBus,
    readonly maxSize: number,
  ) {
    this.size = maxSize;
  }

  /** Back to the reset state (§2.7: every index 0). */
  reset(): void {
    this.size = this.maxSize;
    this.descAddress = this.availAddress = this.usedAddress = 0;
    this.enabled = false;
    this.lastAvail = 0;
    this.usedIndex = 0;
  }

  /** Checks that the three areas lie in RAM, once the driver enables the queue. */
  validateLayout(): void {
    const sizes = queueAreaSizes(this.size);
    this.checkRange(this.descAddress, sizes.desc, "descriptor table");
    this.checkRange(this.availAddress, sizes.avail, "available ring");
    this.checkRange(this.usedAddress, sizes.used, "used ring");
  }

  private checkRange(address: number, length: number, what: string): void {
    if (!Number.isSafeInteger(address) || address < 0 || address + length > this.memory.ramSize) {
      throw badDescriptor(
        `${what} at 0x${address.toString(16)} (+${length} bytes) is outside guest RAM (${this.memory.ramSize} bytes)`,
      );
    }
  }

  /** Whether the driver asked not to be interrupted (§2.7.7, without EVENT_IDX). */
  get interruptSuppressed(): boolean {
    return (this.memory.view.getUint16(this.availAddress, true) & VIRTQ_AVAIL_F_NO_INTERRUPT) !== 0;
  }

  /** The next chain the driver made available, or undefined when the ring is drained. */
  next(): Chain | undefined {
    if (!this.enabled) return undefined;
    const view = this.memory.view;
    const availIdx = view.getUint16(this.availAddress + AVAIL_IDX, true);
    const pending = (availIdx - this.lastAvail) & 0xffff;
    if (pending === 0) return undefined;
    if (pending > this.size) {
      throw badDescriptor(
        `available index ${availIdx} is ${pending} entries ahead of the device: more than the queue size ${this.size}`,
      );
    }
    const slot = this.lastAvail % this.size;
    const head = view.getUint16(this.availAddress + AVAIL_RING + 2 * slot, true);
    this.lastAvail = (this.lastAvail + 1) & 0xffff;
    return this.walk(head);
  }

  /** Walks the chain starting at `head` (§2.7.5), following NEXT and one level of INDIRECT. */
  private walk(head: number): Chain {
    const chain: Chain = { head, readable: [], writable: [] };
    if (head >= this.size) throw badDescriptor(`chain head ${head} is outside the queue (size ${this.size})`);
    let table = this.descAddress;
    let tableSize = this.size;
    let index = head;
    let seen = 0;
    let indirect = false;
    for (;;) {
      if (++seen > tableSize) {
        throw badDescriptor(`descriptor chain from head ${head} loops (more than ${tableSize} descriptors)`);
      }
      const at = table + DESC_SIZE * index;
      const view = this.memory.view;
      const addressLow = view.getUint32(at + DESC_ADDR, true);
      const addressHigh = view.getUint32(at + DESC_ADDR + 4, true);
      const length = view.getUint32(at + DESC_LEN, true);
      const flags = view.getUint16(at + DESC_FLAGS, true);
      const next = view.getUint16(at + DESC_NEXT, true);
      const address = addressHigh * 0x1_0000_0000 + addressLow;
      if (flags & VIRTQ_DESC_F_INDIRECT) {
        // §2.7.5.3.1: no nested indirect tables, no NEXT with INDIRECT, a whole number of descriptors.
        if (indirect) throw badDescriptor(`nested indirect descriptor in chain ${head}`);
        if (flags & VIRTQ_DESC_F_NEXT) throw badDescriptor(`indirect descriptor with NEXT in chain ${head}`);
        if (length === 0 || length % DESC_SIZE !== 0) {
          throw badDescriptor(`indirect table of ${length} bytes is not a whole number of descriptors`);
        }
        this.checkRange(address, length, "indirect descriptor table");
        indirect = true;
        table = address;
        tableSize = length / DESC_SIZE;
        index = 0;
        seen = 0;
        continue;
      }
      this.checkRange(address, length, `buffer of descriptor ${index}`);
      const writable = (flags & VIRTQ_DESC_F_WRITE) !== 0;
      // §2.7.4.2: device-readable descriptors come before device-writable ones.
      if (!writable && chain.writable.length > 0) {
        throw badDescriptor(`chain ${head} has a device-readable descriptor after a device-writable one`);
      }
      (writable ? chain.writable : chain.readable).push({ address, length, writable });
      if (!(flags & VIRTQ_DESC_F_NEXT)) return chain;
      if (next >= tableSize) {
        throw badDescriptor(`descriptor ${index} links to ${next}, outside its table of ${tableSize}`);
      }
      index = next;
    }
  }

  /** Returns chain `head` to the driver with `written` bytes written into it (§2.7.8). */
  putUsed(head: number, written: number): void {
    const view = this.memory.view;
    const slot = this.usedIndex % this.size;
    const at = this.usedAddress + USED_RING + USED_ELEM_SIZE * slot;
    view.setUint32(at, head, true);
    view.setUint32(at + 4, written, true);
    this.usedIndex = (this.usedIndex + 1) & 0xffff;
    // The element is written before the index that publishes it (§2.7.8.2).
    view.setUint16(this.usedAddress + USED_IDX, this.usedIndex, true);
  }
}

/** Reads the bytes of `segments` in order, up to `limit` bytes. */
export function gather(memory: MemoryBus, segments: Segment[], limit = Number.POSITIVE_INFINITY): Buffer {
  const total = Math.min(
    limit,
    segments.reduce((sum, s) => sum + s.length, 0),
  );
  const out = Buffer.alloc(total);
  let done = 0;
  for (const segment of segments) {
    if (done >= total) break;
    const take = Math.min(segment.length, total - done);
    out.set(memory.ram.subarray(segment.address, segment.address + take), done);
    done += take;
  }
  return out;
}

/** Writes `data` across `segments` in order (as DMA); returns the bytes written. */
export function scatter(memory: MemoryBus, segments: Segment[], data: Uint8Array): number {
  let done = 0;
  for (const segment of segments) {
    if (done >= data.length) break;
    const take = Math.min(segment.length, data.length - done);
    dmaWrite(memory, segment.address, data.subarray(done, done + take));
    done += take;
  }
  return done;
}
