import { asOvfkitError, OvfkitError } from "../errors.js";

/**
 * The disk-reader abstraction: the one interface that carries disk data
 * through ovfkit. Every format reader implements `DiskReader`; every writer
 * consumes one. Conversion is `driver.write(reader, ...)`: streaming,
 * sparse-aware, never materialising the disk.
 *
 * Offsets and sizes are JavaScript numbers (exact up to 2^53 bytes = 8 PiB,
 * beyond any format we read).
 */

/** Format names as qemu-img spells them (`vhd` is accepted as an alias of `vpc`). */
export type DiskFormat = "raw" | "vpc" | "vmdk" | "vhdx" | "qcow2";

/**
 * What a range of the virtual disk holds:
 * - `data`: stored bytes (which may still happen to be zeros),
 * - `zero`: known zeros recorded by the format (qcow2 zero clusters, VMDK zeroed grains),
 * - `unallocated`: nothing stored anywhere in the chain; reads as zeros.
 */
export type ExtentKind = "data" | "zero" | "unallocated";

export interface Extent {
  offset: number;
  length: number;
  kind: ExtentKind;
}

/** A finding of a structural check (`ovfkit check`). */
export interface CheckFinding {
  /** Stable id, e.g. `VHD_BAD_CHECKSUM`, `VMDK_STREAM_NONCANONICAL`. */
  code: string;
  severity: "corruption" | "leak" | "warning";
  message: string;
  file: string;
  offset?: number;
}

export interface CheckReport {
  filename: string;
  format: DiskFormat;
  findings: CheckFinding[];
  /** Counts as qemu-img check reports them, where the format has them. */
  allocatedClusters?: number;
  totalClusters?: number;
}

/** The fields `ovfkit info` prints beyond the common ones; format specific. */
export type FormatSpecificInfo = Record<string, string | number | boolean | null | object>;

export interface DiskReader {
  readonly format: DiskFormat;
  /** The file that was opened (for multi-file formats: the descriptor). */
  readonly path: string;
  /** Bytes the guest sees. */
  readonly virtualSize: number;
  /** Application that created the image where the format records it (VHD creator app, VMDK/VHDX creator). */
  readonly creator?: string;
  /** CHS geometry where the format records one. */
  readonly geometry?: { cylinders: number; heads: number; sectors: number };
  /** The parent/backing file this image reads through to, resolved to a path. */
  readonly backingFile?: string;
  /** Every file this image is made of (descriptor, extents, parents...). */
  readonly files: readonly string[];
  /** True when the image says it was not closed cleanly. */
  readonly dirty?: boolean;
  /** Format-specific facts for `info` (subformat, block size, version...). */
  readonly formatSpecific: FormatSpecificInfo;

  /**
   * The allocation map of `[offset, offset+length)` (default: the whole
   * disk): ordered, contiguous, non-overlapping extents that exactly cover
   * the range. Adjacent extents of the same kind should be coalesced.
   */
  map(offset?: number, length?: number): AsyncIterable<Extent>;

  /**
   * Reads `length` bytes at `offset` of the virtual disk (zeros where
   * unallocated). Reads past the virtual size are an error.
   * Returns exactly `length` bytes: a view of `into` when it is given (it
   * must hold at least `length` bytes), else a new Buffer.
   */
  read(offset: number, length: number, into?: Buffer): Promise<Buffer>;

  close(): Promise<void>;
}

/** A reader that can also be written (used by `resize` and the runtime's overlay). */
export interface DiskWriterHandle extends DiskReader {
  write(offset: number, data: Buffer): Promise<void>;
}

/** Throws READ_OUT_OF_RANGE unless `[offset, offset+length)` lies inside the disk. */
export function checkReadRange(path: string, virtualSize: number, offset: number, length: number): void {
  if (
    !Number.isSafeInteger(offset) ||
    !Number.isSafeInteger(length) ||
    offset < 0 ||
    length < 0 ||
    offset + length > virtualSize
  ) {
    throw new OvfkitError(
      "READ_OUT_OF_RANGE",
      `read of ${length} bytes at ${offset} is outside the virtual disk (${virtualSize} bytes)`,
      { file: path },
    );
  }
}

/** Size in bytes of the chunks streamed between readers and writers. */
export const STREAM_CHUNK = 1024 * 1024;

const ZERO_CHUNK = Buffer.alloc(STREAM_CHUNK);

/** True when every byte of `buf` is zero (native memcmp, ~GB/s). */
export function isAllZero(buf: Uint8Array): boolean {
  let offset = 0;
  while (offset < buf.length) {
    const n = Math.min(ZERO_CHUNK.length, buf.length - offset);
    if (Buffer.compare(buf.subarray(offset, offset + n), ZERO_CHUNK.subarray(0, n)) !== 0) return false;
    offset += n;
  }
  return true;
}

/** Merges adjacent extents of the same kind; drops empty ones. */
export function* coalesce(extents: Iterable<Extent>): Generator<Extent> {
  let pending: Extent | undefined;
  for (const e of extents) {
    if (e.length <= 0) continue;
    if (pending && pending.kind === e.kind && pending.offset + pending.length === e.offset) {
      pending = { ...pending, length: pending.length + e.length };
    } else {
      if (pending) yield pending;
      pending = { ...e };
    }
  }
  if (pending) yield pending;
}

/** Async version of `coalesce`. */
export async function* coalesceAsync(extents: AsyncIterable<Extent>): AsyncGenerator<Extent> {
  let pending: Extent | undefined;
  for await (const e of extents) {
    if (e.length <= 0) continue;
    if (pending && pending.kind === e.kind && pending.offset + pending.length === e.offset) {
      pending = { ...pending, length: pending.length + e.length };
    } else {
      if (pending) yield pending;
      pending = { ...e };
    }
  }
  if (pending) yield pending;
}

/** Clamps a requested map range to the disk and validates it. */
export function mapRange(virtualSize: number, offset = 0, length?: number): { start: number; end: number } {
  const start = Math.max(0, Math.min(offset, virtualSize));
  const end = Math.min(virtualSize, length === undefined ? virtualSize : start + Math.max(0, length));
  return { start, end };
}

/** Collects a reader's whole map (small disks, tests, `ovfkit map`). */
export async function collectMap(reader: DiskReader, offset?: number, length?: number): Promise<Extent[]> {
  const out: Extent[] = [];
  for await (const e of reader.map(offset, length)) out.push(e);
  return out;
}

export interface DataChunk {
  offset: number;
  /** Only valid until the next iteration (the buffer is reused). */
  data: Buffer;
}

/**
 * Streams the `data` extents of a reader in chunks of at most `chunkSize`
 * bytes, skipping zero and unallocated ranges without I/O. With
 * `skipZeroChunks`, data chunks that are all zeros are skipped too (what
 * qemu-img's zero detection does), so raw sources convert sparsely.
 *
 * Reads one chunk ahead into a second buffer while the consumer works on
 * the current one, so reading and writing overlap (two buffers in all:
 * memory stays flat).
 */
export async function* dataChunks(
  reader: DiskReader,
  options: { chunkSize?: number; skipZeroChunks?: boolean; signal?: AbortSignal } = {},
): AsyncGenerator<DataChunk> {
  const chunkSize = options.chunkSize ?? STREAM_CHUNK;
  const buffers = [Buffer.allocUnsafe(chunkSize), Buffer.allocUnsafe(chunkSize)];
  let turn = 0;
  const ranges = chunkRanges(reader, chunkSize)[Symbol.asyncIterator]();
  const startRead = async (): Promise<DataChunk | undefined> => {
    const next = await ranges.next();
    if (next.done) return undefined;
    const buffer = buffers[turn]!;
    turn ^= 1;
    const data = await reader.read(next.value.offset, next.value.length, buffer);
    return { offset: next.value.offset, data: data.subarray(0, next.value.length) };
  };
  let pending = startRead();
  for (;;) {
    const chunk = await pending;
    if (!chunk) return;
    options.signal?.throwIfAborted();
    pending = startRead();
    // A rejected read-ahead must not go unhandled if the consumer stops early.
    pending.catch(() => {});
    if (options.skipZeroChunks && isAllZero(chunk.data)) continue;
    yield chunk;
  }
}

/** The `data` extents of a reader cut into ranges of at most `chunkSize` bytes. */
async function* chunkRanges(
  reader: DiskReader,
  chunkSize: number,
): AsyncGenerator<{ offset: number; length: number }> {
  for await (const extent of reader.map()) {
    if (extent.kind !== "data") continue;
    const end = extent.offset + extent.length;
    for (let offset = extent.offset; offset < end; offset += chunkSize) {
      yield { offset, length: Math.min(chunkSize, end - offset) };
    }
  }
}

/** A reader of `size` bytes of nothing: `create` is `write(emptyDisk(size))`. */
export function emptyDisk(size: number, path = "(empty)"): DiskReader {
  return {
    format: "raw",
    path,
    virtualSize: size,
    files: [],
    formatSpecific: {},
    async *map(offset?: number, length?: number) {
      const { start, end } = mapRange(size, offset, length);
      if (end > start) yield { offset: start, length: end - start, kind: "unallocated" as const };
    },
    async read(offset: number, length: number, into?: Buffer) {
      checkReadRange(path, size, offset, length);
      const out = into ? into.subarray(0, length) : Buffer.alloc(length);
      return out.fill(0);
    },
    async close() {},
  };
}

/** Bytes of a reader that hold data according to its map. */
export async function allocatedBytes(reader: DiskReader): Promise<number> {
  let total = 0;
  for await (const e of reader.map()) if (e.kind === "data") total += e.length;
  return total;
}

/**
 * The same disk seen with a larger virtual size: the added tail is
 * unallocated and reads as zeros. Used where a target needs a minimum size
 * (Azure: at least 20 MiB) without touching the source.
 */
export function grownTo(inner: DiskReader, size: number): DiskReader {
  if (size <= inner.virtualSize) return inner;
  const innerSize = inner.virtualSize;
  return {
    format: inner.format,
    path: inner.path,
    virtualSize: size,
    creator: inner.creator,
    geometry: undefined,
    backingFile: inner.backingFile,
    files: inner.files,
    dirty: inner.dirty,
    formatSpecific: inner.formatSpecific,
    async *map(offset?: number, length?: number) {
      const { start, end } = mapRange(size, offset, length);
      if (start < innerSize) yield* inner.map(start, Math.min(end, innerSize) - start);
      const tail = Math.max(start, innerSize);
      if (end > tail) yield { offset: tail, length: end - tail, kind: "unallocated" as const };
    },
    async read(offset: number, length: number, into?: Buffer) {
      checkReadRange(inner.path, size, offset, length);
      const out = into ? into.subarray(0, length) : Buffer.alloc(length);
      const fromInner = Math.max(0, Math.min(length, innerSize - offset));
      if (fromInner > 0) await inner.read(offset, fromInner, out);
      out.fill(0, fromInner);
      return out;
    },
    close: () => inner.close(),
  };
}

/**
 * A `check` finding for an error that stopped the walk of a structure (a
 * header that does not parse, a table past the end): the error's code,
 * message and offset, as corruption unless said otherwise.
 */
export function findingFromError(
  error: unknown,
  path: string,
  severity: CheckFinding["severity"] = "corruption",
): CheckFinding {
  const e = asOvfkitError(error, path);
  return { code: e.code, severity, message: e.message, file: path, offset: e.offset };
}
