import { OvfkitError } from "../errors.js";
import {
  type CheckReport,
  checkReadRange,
  type DiskReader,
  dataChunks,
  type Extent,
  isAllZero,
  mapRange,
  STREAM_CHUNK,
} from "./disk.js";
import type { FormatDriver, WriteContext, WriterOptions } from "./driver.js";
import { RandomAccessFile } from "./file.js";

/**
 * raw: the virtual disk byte for byte. Node cannot ask the file system for
 * holes (no SEEK_HOLE), so the whole file maps as `data`; writers detect
 * zero chunks themselves (`dataChunks(..., { skipZeroChunks: true })`).
 * Output is sparse: zero chunks are never written, the file is sized with
 * ftruncate, so they become holes where the file system supports them.
 */
class RawReader implements DiskReader {
  readonly format = "raw" as const;
  readonly formatSpecific = {};
  readonly files: string[];

  constructor(
    private readonly file: RandomAccessFile,
    readonly virtualSize: number,
  ) {
    this.files = [file.path];
  }

  get path(): string {
    return this.file.path;
  }

  async *map(offset?: number, length?: number): AsyncGenerator<Extent> {
    const { start, end } = mapRange(this.virtualSize, offset, length);
    if (end > start) yield { offset: start, length: end - start, kind: "data" };
  }

  async read(offset: number, length: number, into?: Buffer): Promise<Buffer> {
    checkReadRange(this.path, this.virtualSize, offset, length);
    const buf = into ? into.subarray(0, length) : Buffer.allocUnsafe(length);
    const n = await this.file.readAt(offset, length, buf);
    if (n < length) buf.fill(0, n); // the file shrank under us: read the rest as zeros
    return buf;
  }

  async close(): Promise<void> {
    await this.file.close();
  }
}

async function writeRaw(
  source: DiskReader,
  destPath: string,
  options: WriterOptions,
  ctx: WriteContext,
): Promise<void> {
  for (const key of Object.keys(options)) {
    throw new OvfkitError("BAD_OPTION", `raw takes no -o options (got "${key}")`);
  }
  const out = await RandomAccessFile.create(ctx.tx.file(destPath));
  try {
    for await (const chunk of dataChunks(source, { skipZeroChunks: true, signal: ctx.signal })) {
      await out.writeAt(chunk.offset, chunk.data);
      ctx.progress?.(chunk.offset + chunk.data.length, source.virtualSize);
    }
    await out.truncate(source.virtualSize);
    ctx.progress?.(source.virtualSize, source.virtualSize);
  } finally {
    await out.close();
  }
}

async function resizeRaw(path: string, newSize: number, options: { shrink?: boolean }): Promise<void> {
  const file = await RandomAccessFile.openForUpdate(path);
  try {
    if (newSize < file.size) {
      if (!options.shrink) {
        throw new OvfkitError("SHRINK_REFUSED", `shrinking ${path} needs --shrink`, { file: path });
      }
      const buf = Buffer.allocUnsafe(STREAM_CHUNK);
      for (let offset = newSize; offset < file.size; offset += STREAM_CHUNK) {
        const n = await file.readAt(offset, Math.min(STREAM_CHUNK, file.size - offset), buf);
        if (!isAllZero(buf.subarray(0, n))) {
          throw new OvfkitError("SHRINK_WOULD_LOSE_DATA", "the range to cut off holds data", {
            file: path,
            offset,
          });
        }
      }
    }
    await file.truncate(newSize);
  } finally {
    await file.close();
  }
}

export const rawDriver: FormatDriver = {
  name: "raw",
  description: "raw disk image (byte for byte; sparse output)",
  probe: () => 1,
  async open(path) {
    const file = await RandomAccessFile.open(path);
    return new RawReader(file, file.size);
  },
  write: writeRaw,
  async check(path): Promise<CheckReport> {
    return { filename: path, format: "raw", findings: [] };
  },
  resize: resizeRaw,
  writerOptions: {},
};
