import { asOvfkitError, OvfkitError } from "../errors.js";
import {
  type CheckReport,
  type DiskFormat,
  type DiskReader,
  type Extent,
  emptyDisk,
  isAllZero,
  STREAM_CHUNK,
} from "./disk.js";
import { type OpenOptions, PROBE_HEAD_BYTES, PROBE_TAIL_BYTES, type WriterOptions } from "./driver.js";
import { RandomAccessFile } from "./file.js";
import { withOutputs } from "./output.js";
import { DRIVERS, driverFor } from "./registry.js";

export * from "./disk.js";
export type { FormatDriver, OpenOptions, ProbeInput, WriteContext, WriterOptions } from "./driver.js";
export { RandomAccessFile } from "./file.js";
export { OutputTransaction, withOutputs } from "./output.js";
export { DRIVERS, driverFor, formatNames } from "./registry.js";

/** Detects a file's format from its content (magic, footer cookie + checksum), never its name. */
export async function detectFormat(path: string): Promise<DiskFormat> {
  const file = await RandomAccessFile.open(path);
  try {
    const headLength = Math.min(PROBE_HEAD_BYTES, file.size);
    const tailLength = Math.min(PROBE_TAIL_BYTES, file.size);
    const head = await file.readExact(0, headLength, "file head");
    const tail = await file.readExact(file.size - tailLength, tailLength, "file tail");
    let best = { score: 0, format: "raw" as DiskFormat };
    for (const driver of DRIVERS) {
      const score = driver.probe({ head, tail, size: file.size, path });
      if (score > best.score) best = { score, format: driver.name };
    }
    return best.format;
  } finally {
    await file.close();
  }
}

export interface OpenDiskOptions extends OpenOptions {
  /** Skip detection and open as this format (`vhd` = `vpc`). */
  format?: string;
}

/** Opens a disk image of any supported format as a `DiskReader`. */
export async function openDisk(path: string, options: OpenDiskOptions = {}): Promise<DiskReader> {
  const format = options.format ?? (await detectFormat(path));
  try {
    return await driverFor(format).open(path, options);
  } catch (error) {
    throw asOvfkitError(error, path);
  }
}

export interface ConvertOptions {
  /** Output format (qemu-img's names). */
  format: string;
  /** `-o key=value` options of the output format. */
  options?: WriterOptions;
  /** Replace an existing destination. */
  overwrite?: boolean;
  progress?: (done: number, total: number) => void;
  signal?: AbortSignal;
  threads?: number;
}

/**
 * Writes `source` to `destPath` in another format: streaming and
 * sparse-aware; the output appears atomically or not at all.
 */
export async function convert(source: DiskReader, destPath: string, options: ConvertOptions): Promise<void> {
  const driver = driverFor(options.format);
  if (!driver.write) {
    throw new OvfkitError("UNSUPPORTED_OUTPUT", `writing ${driver.name} images is not supported`);
  }
  const write = driver.write;
  await withOutputs(
    (tx) =>
      write(source, destPath, options.options ?? {}, {
        tx,
        progress: options.progress,
        signal: options.signal,
        threads: options.threads,
      }),
    { overwrite: options.overwrite },
  );
}

/** Creates an empty image of `size` bytes (`create` = write an empty disk). */
export async function createDisk(
  destPath: string,
  size: number,
  options: Omit<ConvertOptions, "progress">,
): Promise<void> {
  await convert(emptyDisk(size), destPath, options);
}

export async function checkDisk(path: string, options: OpenDiskOptions = {}): Promise<CheckReport> {
  const format = options.format ?? (await detectFormat(path));
  const driver = driverFor(format);
  if (!driver.check) {
    throw new OvfkitError("UNSUPPORTED_CHECK", `${driver.name} has no structural check`, { file: path });
  }
  return driver.check(path, options);
}

export async function resizeDisk(
  path: string,
  newSize: number,
  options: { format?: string; shrink?: boolean } = {},
): Promise<void> {
  const format = options.format ?? (await detectFormat(path));
  const driver = driverFor(format);
  if (!driver.resize) {
    throw new OvfkitError("UNSUPPORTED_RESIZE", `resizing ${driver.name} images is not supported`, {
      file: path,
    });
  }
  await driver.resize(path, newSize, { shrink: options.shrink });
}

export interface CompareResult {
  identical: boolean;
  /** First byte offset at which the contents differ. */
  firstDifference?: number;
  sizeA: number;
  sizeB: number;
}

/**
 * Compares the contents two readers present, like `qemu-img compare`:
 * a size difference alone is no difference when the larger image holds only
 * zeros past the end of the smaller. Ranges unallocated or zero in both are
 * skipped without I/O.
 */
export async function compareDisks(a: DiskReader, b: DiskReader): Promise<CompareResult> {
  const common = Math.min(a.virtualSize, b.virtualSize);
  const result = { sizeA: a.virtualSize, sizeB: b.virtualSize };
  const bufA = Buffer.allocUnsafe(STREAM_CHUNK);
  const bufB = Buffer.allocUnsafe(STREAM_CHUNK);
  const mapA = a.map()[Symbol.asyncIterator]();
  const mapB = b.map()[Symbol.asyncIterator]();
  let extA = (await mapA.next()).value as Extent | undefined;
  let extB = (await mapB.next()).value as Extent | undefined;
  let offset = 0;
  while (offset < common && extA && extB) {
    const end = Math.min(extA.offset + extA.length, extB.offset + extB.length, common);
    if (extA.kind !== "data" && extB.kind !== "data") {
      offset = end;
    } else {
      for (; offset < end; ) {
        const n = Math.min(STREAM_CHUNK, end - offset);
        const da = await a.read(offset, n, bufA);
        const db = await b.read(offset, n, bufB);
        if (!da.equals(db))
          return { identical: false, firstDifference: offset + firstMismatch(da, db), ...result };
        offset += n;
      }
    }
    if (offset >= extA.offset + extA.length) extA = (await mapA.next()).value as Extent | undefined;
    if (offset >= extB.offset + extB.length) extB = (await mapB.next()).value as Extent | undefined;
  }
  const longer = a.virtualSize > b.virtualSize ? a : b;
  const tail = await firstNonZero(longer, common);
  if (tail !== undefined) return { identical: false, firstDifference: tail, ...result };
  return { identical: true, ...result };
}

function firstMismatch(a: Buffer, b: Buffer): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return a.length;
}

/** Offset of the first non-zero byte at or after `from`, or undefined. */
export async function firstNonZero(reader: DiskReader, from = 0): Promise<number | undefined> {
  const buf = Buffer.allocUnsafe(STREAM_CHUNK);
  for await (const extent of reader.map(from)) {
    if (extent.kind !== "data") continue;
    const end = extent.offset + extent.length;
    for (let offset = extent.offset; offset < end; offset += STREAM_CHUNK) {
      const n = Math.min(STREAM_CHUNK, end - offset);
      const data = await reader.read(offset, n, buf);
      if (!isAllZero(data)) return offset + data.findIndex((byte) => byte !== 0);
    }
  }
  return undefined;
}
