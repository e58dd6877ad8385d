import { OvfkitError } from "../../errors.js";
import type { DiskReader, DiskWriterHandle } from "../../formats/disk.js";
import type { MemoryBus } from "../bus.js";
import { SECTOR_SIZE } from "../disk-overlay.js";
import { type DiskControllerHost, stopHostCpu, type VirtioBackend, VirtioPciDevice } from "./virtio-pci.js";
import { type Chain, gather, type Segment, scatter } from "./virtqueue.js";

/**
 * virtio-blk (OASIS VIRTIO 1.2 §5.2) over the machine's disk: the
 * copy-on-write overlay, so OUT requests land in memory and the appliance
 * file is never written. One request queue; IN, OUT, FLUSH and GET_ID;
 * anything else answers UNSUPP. A request whose shape or range is wrong
 * answers IOERR in its status byte; a chain with no status byte to answer
 * in is thrown back to the transport, which marks the device
 * DEVICE_NEEDS_RESET.
 */

export const VIRTIO_ID_BLOCK = 2;
/** Transitional PCI device ID of a block device (§4.1.2.3). */
export const VIRTIO_PCI_DEVICE_BLOCK_TRANSITIONAL = 0x1001;
/** PCI class: mass storage, "other" (as qemu's virtio-blk-pci). */
const CLASS_STORAGE_OTHER = 0x018000;

// Feature bits (§5.2.3).
export const VIRTIO_BLK_F_SIZE_MAX = 1;
export const VIRTIO_BLK_F_SEG_MAX = 2;
export const VIRTIO_BLK_F_RO = 5;
export const VIRTIO_BLK_F_BLK_SIZE = 6;
export const VIRTIO_BLK_F_FLUSH = 9;

// Configuration layout (§5.2.4): le64 capacity, le32 size_max, le32 seg_max,
// geometry {le16 cylinders, u8 heads, u8 sectors}, le32 blk_size, topology...
const CONFIG_CAPACITY = 0;
const CONFIG_SIZE_MAX = 8;
const CONFIG_SEG_MAX = 12;
const CONFIG_BLK_SIZE = 20;
/** Up to and including the topology fields (fits the legacy BAR's config window). */
const CONFIG_LENGTH = 0x20;

// Request header (§5.2.6): le32 type, le32 reserved, le64 sector; a status byte ends the request.
const HEADER_SIZE = 16;
const HEADER_TYPE = 0;
const HEADER_SECTOR = 8;
export const VIRTIO_BLK_T_IN = 0;
export const VIRTIO_BLK_T_OUT = 1;
export const VIRTIO_BLK_T_FLUSH = 4;
export const VIRTIO_BLK_T_GET_ID = 8;
export const VIRTIO_BLK_S_OK = 0;
export const VIRTIO_BLK_S_IOERR = 1;
export const VIRTIO_BLK_S_UNSUPP = 2;
/** GET_ID answers at most this many bytes (§5.2.6, VIRTIO_BLK_ID_BYTES). */
const ID_BYTES = 20;

/** Entries in the request queue. */
export const QUEUE_SIZE = 256;
/** Largest single segment (SIZE_MAX) and segments per request (SEG_MAX: two are header and status). */
const SIZE_MAX = 1024 * 1024;
const SEG_MAX = QUEUE_SIZE - 2;
/** Disk reads are issued in pieces of at most this size (memory stays flat). */
const IO_CHUNK = 1024 * 1024;

export interface VirtioBlkOptions {
  /** Answer OUT with IOERR and offer VIRTIO_BLK_F_RO. */
  readOnly?: boolean;
  /** The serial number GET_ID returns (at most 20 bytes). */
  serial?: string;
}

/** Counters the boot report shows. */
export interface BlkStatistics {
  sectorsRead: number;
  sectorsWritten: number;
  flushes: number;
  errors: number;
}

/** The bytes [skip, skip+length) of a segment list, as a segment list. */
function sliceSegments(segments: Segment[], skip: number, length: number): Segment[] {
  const out: Segment[] = [];
  let position = 0;
  for (const segment of segments) {
    const start = Math.max(skip, position);
    const end = Math.min(skip + length, position + segment.length);
    if (end > start) {
      out.push({
        address: segment.address + start - position,
        length: end - start,
        writable: segment.writable,
      });
    }
    position += segment.length;
  }
  return out;
}

function totalLength(segments: Segment[]): number {
  return segments.reduce((sum, s) => sum + s.length, 0);
}

export class VirtioBlk implements VirtioBackend {
  readonly virtioDeviceId = VIRTIO_ID_BLOCK;
  readonly pciDeviceId = VIRTIO_PCI_DEVICE_BLOCK_TRANSITIONAL;
  readonly classCode = CLASS_STORAGE_OTHER;
  readonly queueCount = 1;
  readonly queueSize = QUEUE_SIZE;
  readonly features: readonly [number, number];
  readonly config = new Uint8Array(CONFIG_LENGTH);
  readonly stats: BlkStatistics = { sectorsRead: 0, sectorsWritten: 0, flushes: 0, errors: 0 };
  private readonly readOnly: boolean;
  private readonly id: Buffer;

  constructor(
    private readonly memory: MemoryBus,
    private readonly disk: DiskReader | DiskWriterHandle,
    options: VirtioBlkOptions = {},
  ) {
    this.readOnly = options.readOnly === true || !("write" in disk);
    let features =
      (1 << VIRTIO_BLK_F_SIZE_MAX) |
      (1 << VIRTIO_BLK_F_SEG_MAX) |
      (1 << VIRTIO_BLK_F_BLK_SIZE) |
      (1 << VIRTIO_BLK_F_FLUSH);
    if (this.readOnly) features |= 1 << VIRTIO_BLK_F_RO;
    this.features = [features >>> 0, 0];
    const view = new DataView(this.config.buffer);
    view.setBigUint64(CONFIG_CAPACITY, BigInt(Math.floor(disk.virtualSize / SECTOR_SIZE)), true);
    view.setUint32(CONFIG_SIZE_MAX, SIZE_MAX, true);
    view.setUint32(CONFIG_SEG_MAX, SEG_MAX, true);
    view.setUint32(CONFIG_BLK_SIZE, SECTOR_SIZE, true);
    this.id = Buffer.from((options.serial ?? "ovfkit-disk").slice(0, ID_BYTES), "latin1");
  }

  async handle(_queue: number, chain: Chain): Promise<number> {
    const writableBytes = totalLength(chain.writable);
    if (writableBytes === 0) {
      // Nowhere to put a status byte: the driver cannot be told, the device needs a reset.
      throw new OvfkitError(
        "VIRTIO_BAD_DESCRIPTOR",
        `virtio-blk request ${chain.head} has no device-writable status byte`,
      );
    }
    const statusSegments = sliceSegments(chain.writable, writableBytes - 1, 1);
    const dataIn = sliceSegments(chain.writable, 0, writableBytes - 1);
    let status: number;
    let written = 0;
    try {
      ({ status, written } = await this.serve(chain, dataIn));
    } catch {
      // A disk read failure (truncated or corrupt image) is an I/O error for the guest, not a crash.
      status = VIRTIO_BLK_S_IOERR;
      written = 0;
    }
    if (status !== VIRTIO_BLK_S_OK) this.stats.errors++;
    scatter(this.memory, statusSegments, Uint8Array.of(status));
    return written + 1;
  }

  private async serve(chain: Chain, dataIn: Segment[]): Promise<{ status: number; written: number }> {
    const readableBytes = totalLength(chain.readable);
    if (readableBytes < HEADER_SIZE) return { status: VIRTIO_BLK_S_IOERR, written: 0 };
    const header = gather(this.memory, chain.readable, HEADER_SIZE);
    const type = header.readUInt32LE(HEADER_TYPE);
    const sector = Number(header.readBigUInt64LE(HEADER_SECTOR));
    const dataOut = sliceSegments(chain.readable, HEADER_SIZE, readableBytes - HEADER_SIZE);
    switch (type) {
      case VIRTIO_BLK_T_IN:
        // Data to read into must be device-writable, and there must be some.
        if (dataOut.length > 0 || dataIn.length === 0) return { status: VIRTIO_BLK_S_IOERR, written: 0 };
        return this.readSectors(sector, dataIn);
      case VIRTIO_BLK_T_OUT:
        if (dataIn.length > 0) return { status: VIRTIO_BLK_S_IOERR, written: 0 };
        return this.writeSectors(sector, dataOut);
      case VIRTIO_BLK_T_FLUSH:
        // The overlay lives in memory: nothing to make durable.
        this.stats.flushes++;
        return { status: VIRTIO_BLK_S_OK, written: 0 };
      case VIRTIO_BLK_T_GET_ID: {
        const id = Buffer.alloc(Math.min(ID_BYTES, totalLength(dataIn)));
        this.id.copy(id);
        return { status: VIRTIO_BLK_S_OK, written: scatter(this.memory, dataIn, id) };
      }
      default:
        return { status: VIRTIO_BLK_S_UNSUPP, written: 0 };
    }
  }

  /** Whether `length` bytes at `sector` are whole sectors inside the disk. */
  private inRange(sector: number, length: number): boolean {
    return (
      Number.isSafeInteger(sector) &&
      length % SECTOR_SIZE === 0 &&
      sector * SECTOR_SIZE + length <= this.disk.virtualSize
    );
  }

  private async readSectors(sector: number, dataIn: Segment[]): Promise<{ status: number; written: number }> {
    const length = totalLength(dataIn);
    if (!this.inRange(sector, length)) return { status: VIRTIO_BLK_S_IOERR, written: 0 };
    const buffer = Buffer.alloc(Math.min(IO_CHUNK, length));
    for (let done = 0; done < length; done += buffer.length) {
      const piece = Math.min(buffer.length, length - done);
      const data = await this.disk.read(sector * SECTOR_SIZE + done, piece, buffer);
      scatter(this.memory, sliceSegments(dataIn, done, piece), data.subarray(0, piece));
    }
    this.stats.sectorsRead += length / SECTOR_SIZE;
    return { status: VIRTIO_BLK_S_OK, written: length };
  }

  private async writeSectors(
    sector: number,
    dataOut: Segment[],
  ): Promise<{ status: number; written: number }> {
    const length = totalLength(dataOut);
    if (this.readOnly || !("write" in this.disk) || !this.inRange(sector, length)) {
      return { status: VIRTIO_BLK_S_IOERR, written: 0 };
    }
    for (let done = 0; done < length; done += IO_CHUNK) {
      const piece = Math.min(IO_CHUNK, length - done);
      const data = gather(this.memory, sliceSegments(dataOut, done, piece));
      await this.disk.write(sector * SECTOR_SIZE + done, data);
    }
    this.stats.sectorsWritten += length / SECTOR_SIZE;
    return { status: VIRTIO_BLK_S_OK, written: 0 };
  }
}

/** Where firmware would put the device: slot 4 (as qemu's pc machine), its I/O and memory BARs. */
const VIRTIO_BLK_SLOT = 4;
const VIRTIO_BLK_IO_BASE = 0xc000;
const VIRTIO_BLK_MMIO_BASE = 0xfebf0000;

/** Plugs a transitional virtio-blk PCI device on `disk` into the machine. */
export function attachVirtioBlk(
  host: DiskControllerHost,
  disk: DiskReader | DiskWriterHandle,
  options: VirtioBlkOptions & { legacyOnly?: boolean } = {},
): VirtioPciDevice {
  const blk = new VirtioBlk(host.memory, disk, options);
  return new VirtioPciDevice(blk, {
    memory: host.memory,
    io: host.io,
    pci: host.pci,
    slot: VIRTIO_BLK_SLOT,
    irqLine: (irq) => host.isaLine(irq),
    ioBase: VIRTIO_BLK_IO_BASE,
    mmioBase: options.legacyOnly ? undefined : VIRTIO_BLK_MMIO_BASE,
    now: () => host.clock.now(),
    requestStop: () => stopHostCpu(host, "virtio-blk I/O"),
  });
}
