import { OvfkitError } from "../errors.js";
import {
  checkReadRange,
  type DiskFormat,
  type DiskReader,
  type DiskWriterHandle,
  type Extent,
  type FormatSpecificInfo,
  mapRange,
} from "../formats/disk.js";

/**
 * A copy-on-write overlay in memory over a read-only `DiskReader`: the
 * guest may write its disk, the appliance file is never touched. Written
 * data is kept per 512-byte sector (the unit of every guest disk request);
 * reads take overlay sectors where they exist and the base elsewhere. The
 * overlay holds only what the guest wrote, so memory stays proportional to
 * the writes, not to the disk.
 */

export const SECTOR_SIZE = 512;

export class CowOverlay implements DiskWriterHandle {
  readonly format: DiskFormat;
  readonly path: string;
  readonly virtualSize: number;
  readonly files: readonly string[];
  readonly formatSpecific: FormatSpecificInfo;
  readonly creator?: string;
  readonly geometry?: { cylinders: number; heads: number; sectors: number };
  private readonly sectors = new Map<number, Buffer>();

  constructor(private readonly base: DiskReader) {
    this.format = base.format;
    this.path = base.path;
    this.virtualSize = base.virtualSize;
    this.files = base.files;
    this.formatSpecific = base.formatSpecific;
    if (base.creator !== undefined) this.creator = base.creator;
    if (base.geometry !== undefined) this.geometry = base.geometry;
  }

  /** Sectors written by the guest so far. */
  get writtenSectors(): number {
    return this.sectors.size;
  }

  async read(offset: number, length: number, into?: Buffer): Promise<Buffer> {
    checkReadRange(this.path, this.virtualSize, offset, length);
    const out = into ? into.subarray(0, length) : Buffer.alloc(length);
    if (length === 0) return out;
    if (this.sectors.size === 0) {
      await this.base.read(offset, length, out);
      return out;
    }
    // Runs of base sectors are read in one request; overlay sectors are copied.
    let position = offset;
    const end = offset + length;
    while (position < end) {
      const sector = Math.floor(position / SECTOR_SIZE);
      const sectorEnd = Math.min(end, (sector + 1) * SECTOR_SIZE);
      const written = this.sectors.get(sector);
      if (written) {
        written.copy(
          out,
          position - offset,
          position - sector * SECTOR_SIZE,
          sectorEnd - sector * SECTOR_SIZE,
        );
        position = sectorEnd;
        continue;
      }
      let runEnd = sectorEnd;
      while (runEnd < end && !this.sectors.has(Math.floor(runEnd / SECTOR_SIZE))) {
        runEnd = Math.min(end, runEnd + SECTOR_SIZE);
      }
      await this.base.read(position, runEnd - position, out.subarray(position - offset, runEnd - offset));
      position = runEnd;
    }
    return out;
  }

  async write(offset: number, data: Buffer): Promise<void> {
    if (!Number.isSafeInteger(offset) || offset < 0 || offset + data.length > this.virtualSize) {
      throw new OvfkitError(
        "WRITE_OUT_OF_RANGE",
        `write of ${data.length} bytes at ${offset} is outside the virtual disk (${this.virtualSize} bytes)`,
        { file: this.path },
      );
    }
    let position = offset;
    const end = offset + data.length;
    while (position < end) {
      const sector = Math.floor(position / SECTOR_SIZE);
      const sectorStart = sector * SECTOR_SIZE;
      const sectorEnd = Math.min(end, sectorStart + SECTOR_SIZE);
      let buffer = this.sectors.get(sector);
      if (!buffer) {
        buffer = Buffer.alloc(SECTOR_SIZE);
        const partial = position !== sectorStart || sectorEnd !== sectorStart + SECTOR_SIZE;
        const available = Math.min(SECTOR_SIZE, this.virtualSize - sectorStart);
        if (partial) await this.base.read(sectorStart, available, buffer.subarray(0, available));
        this.sectors.set(sector, buffer);
      }
      data.copy(buffer, position - sectorStart, position - offset, sectorEnd - offset);
      position = sectorEnd;
    }
  }

  async *map(offset?: number, length?: number): AsyncGenerator<Extent> {
    const { start, end } = mapRange(this.virtualSize, offset, length);
    if (this.sectors.size === 0) {
      yield* this.base.map(start, end - start);
      return;
    }
    const written = [...this.sectors.keys()].sort((a, b) => a - b);
    let index = 0;
    let pending: Extent | undefined;
    const emit = function* (e: Extent): Generator<Extent> {
      if (e.length <= 0) return;
      if (pending && pending.kind === e.kind && pending.offset + pending.length === e.offset) {
        pending.length += e.length;
        return;
      }
      if (pending) yield pending;
      pending = { ...e };
    };
    for await (const extent of this.base.map(start, end - start)) {
      let position = extent.offset;
      const extentEnd = extent.offset + extent.length;
      while (index < written.length && (written[index]! + 1) * SECTOR_SIZE <= position) index++;
      while (position < extentEnd) {
        const next = written[index];
        const nextStart = next === undefined ? Infinity : next * SECTOR_SIZE;
        if (nextStart <= position) {
          const sectorEnd = Math.min(extentEnd, (next! + 1) * SECTOR_SIZE);
          yield* emit({ offset: position, length: sectorEnd - position, kind: "data" });
          position = sectorEnd;
          if (sectorEnd === (next! + 1) * SECTOR_SIZE) index++;
        } else {
          const runEnd = Math.min(extentEnd, nextStart);
          yield* emit({ offset: position, length: runEnd - position, kind: extent.kind });
          position = runEnd;
        }
      }
    }
    if (pending) yield pending;
  }

  /** Drops the overlay (the written data is discarded) and closes the base. */
  async close(): Promise<void> {
    this.sectors.clear();
    await this.base.close();
  }
}
