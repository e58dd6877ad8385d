import { createRequire } from "node:module";
import { Inflate, inflateSync, constants as zlibConstants } from "node:zlib";
import { OvfkitError } from "../errors.js";
import type { CheckFinding } from "./disk.js";
import type { RandomAccessFile } from "./file.js";

/**
 * The hosted sparse extent ("KDMV") of VMware "Virtual Disk Format 5.0":
 * header, grain directory (GD) and grain tables (GT), plain or compressed
 * grains. Used by monolithicSparse, twoGbMaxExtentSparse, streamOptimized
 * and vmfsSparse descriptors. Offsets in the header and tables are in
 * 512-byte sectors.
 */

export const SECTOR = 512;

// --- Sparse extent header, spec section "Hosted Sparse Extent Header" (512 bytes, little-endian).
export const SPARSE_MAGIC = 0x564d444b; // "KDMV" read as a little-endian uint32
export const COWD_MAGIC = 0x44574f43; // "COWD": the ESX 2 / vmfsSparse format, which we do not read
export const HEADER_MAGIC = 0; // uint32 magicNumber
export const HEADER_VERSION = 4; // uint32 version (1, 2, 3)
export const HEADER_FLAGS = 8; // uint32 flags
export const HEADER_CAPACITY = 12; // uint64 capacity (sectors)
export const HEADER_GRAIN_SIZE = 20; // uint64 grainSize (sectors)
export const HEADER_DESCRIPTOR_OFFSET = 28; // uint64 descriptorOffset (sectors)
export const HEADER_DESCRIPTOR_SIZE = 36; // uint64 descriptorSize (sectors)
export const HEADER_NUM_GTES_PER_GT = 44; // uint32 numGTEsPerGT (512)
export const HEADER_RGD_OFFSET = 48; // uint64 rgdOffset (redundant GD, sectors)
export const HEADER_GD_OFFSET = 56; // uint64 gdOffset (sectors) or GD_AT_END
export const HEADER_OVERHEAD = 64; // uint64 overHead (sectors before the first grain)
export const HEADER_UNCLEAN_SHUTDOWN = 72; // uint8 uncleanShutdown
export const HEADER_SINGLE_END_LINE_CHAR = 73; // '\n'
export const HEADER_NON_END_LINE_CHAR = 74; // ' '
export const HEADER_DOUBLE_END_LINE_CHAR1 = 75; // '\r'
export const HEADER_DOUBLE_END_LINE_CHAR2 = 76; // '\n'
export const HEADER_COMPRESS_ALGORITHM = 77; // uint16 (0 none, 1 deflate)
export const HEADER_SIZE = 512;

// Header flags (same section).
export const FLAG_VALID_NEWLINE_DETECTION = 1 << 0;
export const FLAG_REDUNDANT_GT = 1 << 1;
export const FLAG_ZEROED_GRAIN_GTE = 1 << 2; // version 2+: GTE 1 means "grain reads as zeros"
export const FLAG_COMPRESSED_GRAINS = 1 << 16;
export const FLAG_MARKERS = 1 << 17;

export const COMPRESSION_NONE = 0;
export const COMPRESSION_DEFLATE = 1;
/** gdOffset of a streamOptimized header whose GD is found via the footer (spec "Stream-Optimized Compressed Sparse Extents"). */
export const GD_AT_END = 0xffffffffffffffffn;
/** GT entry value of a zeroed grain (with FLAG_ZEROED_GRAIN_GTE). */
export const GTE_ZEROED = 1;

// --- Markers, spec "Stream-Optimized Compressed Sparse Extents": { uint64 val; uint32 size; uint32 type }.
export const MARKER_VAL = 0; // grain: LBA (sectors); metadata: sectors of metadata that follow
export const MARKER_SIZE = 8; // grain: compressed byte count; 0 for a metadata marker
export const MARKER_TYPE = 12; // metadata marker type (only when size = 0)
export const GRAIN_MARKER_BYTES = 12; // a grain's data starts right after val + size
export const MARKER_EOS = 0;
export const MARKER_GT = 1;
export const MARKER_GD = 2;
export const MARKER_FOOTER = 3;
/** The footer marker sits this many bytes before the end: footer marker, footer, end-of-stream marker. */
export const FOOTER_FROM_END = 3 * SECTOR;

/** Refuse a grain directory larger than this before allocating it (a 64 MiB GD maps petabytes). */
export const MAX_GD_BYTES = 64 * 1024 * 1024;
/** Grain tables cached per extent (2 KiB each with 512 entries). */
const GT_CACHE_BYTES = 2 * 1024 * 1024;
/** Largest grain accepted: 2 MiB (VMware and qemu write 64 KiB; a hostile header must not make us cache gigabytes). */
export const MAX_GRAIN_SECTORS = 4096;
/** Decompressed grains cached per extent: a 1 MiB read's grains, and sector-sized reads hitting one grain. */
const GRAIN_CACHE_BYTES = 2 * 1024 * 1024;
/** Compressed grains of one read closer together than this are fetched with a single read. */
const MAX_SPAN_READ = 4 * 1024 * 1024;

export interface SparseHeader {
  version: number;
  flags: number;
  capacity: number;
  grainSize: number;
  descriptorOffset: number;
  descriptorSize: number;
  numGTEsPerGT: number;
  rgdOffset: number;
  /** Sector of the GD actually used (from the footer when the header says GD_AT_END). */
  gdOffset: number;
  /** The header's own gdOffset was GD_AT_END. */
  gdAtEnd: boolean;
  overHead: number;
  uncleanShutdown: boolean;
  compressAlgorithm: number;
}

/** Converts a uint64 sector field to a number, or fails on values beyond 2^53 bytes. */
function sectorField(buf: Buffer, at: number, what: string, file: string, base: number): number {
  const value = buf.readBigUInt64LE(at);
  if (value > BigInt(Number.MAX_SAFE_INTEGER) / 512n) {
    throw new OvfkitError("VMDK_BAD_HEADER", `${what} ${value} is out of range`, { file, offset: base + at });
  }
  return Number(value);
}

/** Parses a sparse extent header found at byte `base` of `file` (0, or the footer's position). */
export function parseSparseHeader(buf: Buffer, file: string, base = 0): SparseHeader {
  const magic = buf.readUInt32LE(HEADER_MAGIC);
  if (magic === COWD_MAGIC) {
    throw new OvfkitError("VMDK_UNSUPPORTED_EXTENT", "COWD (ESX 2 / vmfsSparse) extents are not supported", {
      file,
      offset: base,
    });
  }
  if (magic !== SPARSE_MAGIC) {
    throw new OvfkitError("VMDK_BAD_HEADER", "no sparse extent header (magic KDMV)", { file, offset: base });
  }
  const version = buf.readUInt32LE(HEADER_VERSION);
  if (version < 1 || version > 3) {
    throw new OvfkitError("VMDK_BAD_HEADER", `unsupported sparse header version ${version}`, {
      file,
      offset: base + HEADER_VERSION,
    });
  }
  const gdAtEnd = buf.readBigUInt64LE(HEADER_GD_OFFSET) === GD_AT_END;
  const header: SparseHeader = {
    version,
    flags: buf.readUInt32LE(HEADER_FLAGS),
    capacity: sectorField(buf, HEADER_CAPACITY, "capacity", file, base),
    grainSize: sectorField(buf, HEADER_GRAIN_SIZE, "grainSize", file, base),
    descriptorOffset: sectorField(buf, HEADER_DESCRIPTOR_OFFSET, "descriptorOffset", file, base),
    descriptorSize: sectorField(buf, HEADER_DESCRIPTOR_SIZE, "descriptorSize", file, base),
    numGTEsPerGT: buf.readUInt32LE(HEADER_NUM_GTES_PER_GT),
    rgdOffset: sectorField(buf, HEADER_RGD_OFFSET, "rgdOffset", file, base),
    gdOffset: gdAtEnd ? -1 : sectorField(buf, HEADER_GD_OFFSET, "gdOffset", file, base),
    gdAtEnd,
    overHead: sectorField(buf, HEADER_OVERHEAD, "overHead", file, base),
    uncleanShutdown: buf[HEADER_UNCLEAN_SHUTDOWN] !== 0,
    compressAlgorithm: buf.readUInt16LE(HEADER_COMPRESS_ALGORITHM),
  };
  const g = header.grainSize;
  // qemu and VMware use 128 sectors (64 KiB); the spec requires a power of two > 8 sectors.
  if (g < 1 || g > MAX_GRAIN_SECTORS || (g & (g - 1)) !== 0) {
    throw new OvfkitError(
      "VMDK_BAD_HEADER",
      `grain size ${g} sectors is not a power of two up to ${MAX_GRAIN_SECTORS}`,
      {
        file,
        offset: base + HEADER_GRAIN_SIZE,
      },
    );
  }
  const n = header.numGTEsPerGT;
  if (n < 1 || n > 65536 || (n & (n - 1)) !== 0) {
    throw new OvfkitError("VMDK_BAD_HEADER", `numGTEsPerGT ${n} is not a power of two up to 65536`, {
      file,
      offset: base + HEADER_NUM_GTES_PER_GT,
    });
  }
  if (header.flags & FLAG_COMPRESSED_GRAINS && header.compressAlgorithm !== COMPRESSION_DEFLATE) {
    throw new OvfkitError("VMDK_BAD_HEADER", `unknown compression algorithm ${header.compressAlgorithm}`, {
      file,
      offset: base + HEADER_COMPRESS_ALGORITHM,
    });
  }
  return header;
}

export interface SparseHeaderFields {
  version: number;
  flags: number;
  capacity: number;
  grainSize: number;
  descriptorOffset: number;
  descriptorSize: number;
  numGTEsPerGT: number;
  rgdOffset: number;
  /** A sector number, or GD_AT_END. */
  gdOffset: number | bigint;
  overHead: number;
  compressAlgorithm: number;
}

export function serializeSparseHeader(fields: SparseHeaderFields): Buffer {
  const buf = Buffer.alloc(HEADER_SIZE);
  buf.writeUInt32LE(SPARSE_MAGIC, HEADER_MAGIC);
  buf.writeUInt32LE(fields.version, HEADER_VERSION);
  buf.writeUInt32LE(fields.flags, HEADER_FLAGS);
  buf.writeBigUInt64LE(BigInt(fields.capacity), HEADER_CAPACITY);
  buf.writeBigUInt64LE(BigInt(fields.grainSize), HEADER_GRAIN_SIZE);
  buf.writeBigUInt64LE(BigInt(fields.descriptorOffset), HEADER_DESCRIPTOR_OFFSET);
  buf.writeBigUInt64LE(BigInt(fields.descriptorSize), HEADER_DESCRIPTOR_SIZE);
  buf.writeUInt32LE(fields.numGTEsPerGT, HEADER_NUM_GTES_PER_GT);
  buf.writeBigUInt64LE(BigInt(fields.rgdOffset), HEADER_RGD_OFFSET);
  buf.writeBigUInt64LE(BigInt(fields.gdOffset), HEADER_GD_OFFSET);
  buf.writeBigUInt64LE(BigInt(fields.overHead), HEADER_OVERHEAD);
  buf[HEADER_UNCLEAN_SHUTDOWN] = 0;
  // Newline-detection characters: a file that went through a text-mode transfer is detected by these.
  buf[HEADER_SINGLE_END_LINE_CHAR] = 0x0a;
  buf[HEADER_NON_END_LINE_CHAR] = 0x20;
  buf[HEADER_DOUBLE_END_LINE_CHAR1] = 0x0d;
  buf[HEADER_DOUBLE_END_LINE_CHAR2] = 0x0a;
  buf.writeUInt16LE(fields.compressAlgorithm, HEADER_COMPRESS_ALGORITHM);
  return buf;
}

/** A metadata marker (GT, GD, footer, end-of-stream): one sector. */
export function metadataMarker(type: number, sectorsFollowing: number): Buffer {
  const buf = Buffer.alloc(SECTOR);
  buf.writeBigUInt64LE(BigInt(sectorsFollowing), MARKER_VAL);
  buf.writeUInt32LE(0, MARKER_SIZE);
  buf.writeUInt32LE(type, MARKER_TYPE);
  return buf;
}

/** zlib-sync's binding (only its Inflate class is used). */
interface ZlibSyncInflate {
  readonly result: Buffer | string | null;
  readonly err: number;
  readonly msg: string | null;
  push(buffer: Buffer, flush?: boolean | number): void;
}
interface ZlibSyncModule {
  Inflate: new (options?: { chunkSize?: number }) => ZlibSyncInflate;
  Z_SYNC_FLUSH: number;
  Z_STREAM_END: number;
}

/**
 * zlib-sync inflates grains ~1.3x faster than node:zlib's inflateSync here
 * (650-716 vs 460-674 MiB/s on the bench stream, docs/vmdk.md). It is a
 * native addon: when it cannot load, node:zlib is used.
 */
const zlibSync: ZlibSyncModule | undefined = (() => {
  try {
    return createRequire(import.meta.url)("zlib-sync") as ZlibSyncModule;
  } catch {
    return undefined;
  }
})();

/** Inflates one zlib-format grain; failures become VMDK_ZLIB_ERROR at `offset`. */
export function inflateGrainSync(data: Buffer, grainBytes: number, file: string, offset: number): Buffer {
  if (!zlibSync) {
    try {
      return inflateSync(data, { maxOutputLength: grainBytes });
    } catch (error) {
      throw zlibError(error, file, offset);
    }
  }
  const inflater = new zlibSync.Inflate({ chunkSize: grainBytes });
  inflater.push(data, zlibSync.Z_SYNC_FLUSH);
  if (inflater.err !== zlibSync.Z_STREAM_END) {
    const why = inflater.err < 0 ? (inflater.msg ?? `zlib error ${inflater.err}`) : "unexpected end of data";
    throw zlibError(new Error(why), file, offset);
  }
  const result = inflater.result;
  if (!Buffer.isBuffer(result)) throw zlibError(new Error("no output"), file, offset);
  if (result.length > grainBytes) {
    throw zlibError(
      new Error(`inflates to ${result.length} bytes, more than a grain (${grainBytes})`),
      file,
      offset,
    );
  }
  return result;
}

/** The parts of node:zlib's native handle that `zlib.inflateSync` itself drives. */
interface NativeZlibHandle {
  reset(): void;
  writeSync(
    flush: number,
    input: Buffer,
    inOff: number,
    inLen: number,
    out: Buffer,
    outOff: number,
    outLen: number,
  ): void;
}

/**
 * Inflates grains straight into memory we own, through the native handle
 * of a node:zlib Inflate (what `inflateSync` does inside, minus its
 * per-call output buffers). Sequential reads of a stream then allocate
 * nothing per grain: with `inflateSync` or zlib-sync, 64 KiB of garbage per
 * grain made V8 run full collections for ~1/3 of the read time
 * (docs/vmdk.md has the figures). Falls back to zlib-sync/node:zlib when
 * the handle is not there (another Node version).
 */
/** The error a zlib stream's handle reported during the last synchronous call, if any. */
function failureOf(stream: Inflate): Error | undefined {
  if (!stream.destroyed) return undefined;
  return stream.errored ?? new Error("zlib stream failed");
}

export class GrainInflater {
  private stream: Inflate | undefined;
  private readonly probe = Buffer.alloc(1);

  /** Inflates `data` into `out`; returns the bytes produced (zero-filling is the caller's). */
  inflateInto(data: Buffer, out: Buffer, file: string, offset: number): number {
    const native = this.native();
    if (!native) {
      const result = inflateGrainSync(data, out.length, file, offset);
      result.copy(out);
      return result.length;
    }
    const { stream, handle, state } = native;
    handle.reset();
    handle.writeSync(zlibConstants.Z_FINISH, data, 0, data.length, out, 0, out.length);
    let produced = out.length - (state[0] ?? 0);
    let failure = failureOf(stream);
    if (!failure && state[0] === 0 && (state[1] ?? 0) > 0) {
      // Output full with input left: either trailing bytes after the stream's end or a grain that inflates larger.
      handle.writeSync(
        zlibConstants.Z_FINISH,
        data,
        data.length - (state[1] ?? 0),
        state[1] ?? 0,
        this.probe,
        0,
        1,
      );
      failure = failureOf(stream);
      if (!failure && state[0] === 0) {
        produced += 1;
        failure = new Error(`inflates to more than a grain (${out.length} bytes)`);
      }
    }
    if (failure) {
      this.stream = undefined; // a zlib stream that reported an error is destroyed: start a new one
      throw zlibError(failure, file, offset);
    }
    return produced;
  }

  private native(): { stream: Inflate; handle: NativeZlibHandle; state: Uint32Array } | undefined {
    if (!this.stream) {
      const stream = new Inflate();
      // The handle reports errors by destroying the stream, which emits 'error' later; we read it synchronously.
      stream.on("error", () => {});
      this.stream = stream;
    }
    const internals = this.stream as unknown as {
      _handle?: Partial<NativeZlibHandle>;
      _writeState?: Uint32Array;
    };
    const handle = internals._handle;
    if (!handle || typeof handle.writeSync !== "function" || typeof handle.reset !== "function")
      return undefined;
    if (!(internals._writeState instanceof Uint32Array)) return undefined;
    return { stream: this.stream, handle: handle as NativeZlibHandle, state: internals._writeState };
  }
}

function zlibError(error: unknown, file: string, offset: number): OvfkitError {
  const message = error instanceof Error ? error.message : String(error);
  return new OvfkitError("VMDK_ZLIB_ERROR", `compressed grain does not inflate: ${message}`, {
    file,
    offset,
    cause: error,
  });
}

/** What a grain table entry says about one grain. */
export type GrainState = { kind: "unallocated" } | { kind: "zero" } | { kind: "data"; sector: number };

/**
 * One opened sparse extent: resolves grains through GD → GT (cached) and
 * reads plain or compressed grains. Reads are bounded by the file: nothing
 * is allocated from a size the file claims without checking it first.
 */
export class SparseExtent {
  readonly grainBytes: number;
  readonly compressed: boolean;
  readonly numGrains: number;
  readonly gtCoverage: number; // grains per grain table
  private readonly gd: Uint32Array;
  private readonly gtCache = new Map<number, Uint32Array>();
  private readonly grainCache = new Map<number, Buffer>();
  private readonly inflater = new GrainInflater();
  private spanBuffer: Buffer = Buffer.alloc(0);
  private spareBuffer: Buffer = Buffer.alloc(0);
  private spanQueue: Promise<void> = Promise.resolve();
  /** The read of the file span after the last one, started early (sequential reads of a stream). */
  private readAhead: { start: number; buffer: Buffer; bytes: Promise<number> } | undefined;

  private constructor(
    readonly file: RandomAccessFile,
    readonly header: SparseHeader,
    gd: Uint32Array,
  ) {
    this.grainBytes = header.grainSize * SECTOR;
    this.compressed = (header.flags & FLAG_COMPRESSED_GRAINS) !== 0;
    this.numGrains = Math.ceil(header.capacity / header.grainSize);
    this.gtCoverage = header.numGTEsPerGT;
    this.gd = gd;
  }

  get path(): string {
    return this.file.path;
  }

  /** Size in bytes the extent covers. */
  get bytes(): number {
    return this.header.capacity * SECTOR;
  }

  /** Reads the header (and the footer for GD_AT_END streams) and the grain directory. */
  static async open(file: RandomAccessFile): Promise<SparseExtent> {
    const head = await file.readExact(0, HEADER_SIZE, "VMDK sparse header");
    let header = parseSparseHeader(head, file.path);
    if (header.gdAtEnd) header = await readFooter(file, header);
    const gd = await readGrainDirectory(file, header);
    return new SparseExtent(file, header, gd);
  }

  get numTables(): number {
    return this.gd.length;
  }

  /** The GD entry of table `t` (sector of its GT, 0 = table absent). */
  gdEntry(t: number): number {
    return this.gd[t] ?? 0;
  }

  /** Loads a grain table (entries in sectors), from cache when possible. */
  async table(t: number): Promise<Uint32Array | undefined> {
    const sector = this.gdEntry(t);
    if (sector === 0) return undefined;
    let gt = this.gtCache.get(t);
    if (gt) return gt;
    const bytes = this.gtCoverage * 4;
    const offset = sector * SECTOR;
    if (offset + bytes > this.file.size) {
      throw new OvfkitError(
        "VMDK_TABLE_PAST_EOF",
        `grain table ${t} at sector ${sector} lies past the end of the file (${this.file.size} bytes)`,
        { file: this.path, offset: this.gdLocation(t) },
      );
    }
    const raw = await this.file.readExact(offset, bytes, `grain table ${t}`);
    gt = new Uint32Array(this.gtCoverage);
    for (let i = 0; i < gt.length; i++) gt[i] = raw.readUInt32LE(i * 4);
    if (this.gtCache.size >= Math.max(1, GT_CACHE_BYTES / (this.gtCoverage * 4)))
      this.gtCache.delete(this.gtCache.keys().next().value as number);
    this.gtCache.set(t, gt);
    return gt;
  }

  /** Byte offset of GD entry `t` in the file (for error locations). */
  gdLocation(t: number): number {
    return this.header.gdOffset * SECTOR + t * 4;
  }

  async grain(g: number): Promise<GrainState> {
    const gt = await this.table(Math.floor(g / this.gtCoverage));
    const entry = gt ? (gt[g % this.gtCoverage] ?? 0) : 0;
    return this.classify(entry);
  }

  classify(entry: number): GrainState {
    if (entry === 0) return { kind: "unallocated" };
    // GTE 1 is the zeroed-grain marker (flag bit 2); sector 1 is never grain data in any layout.
    if (entry === GTE_ZEROED) return { kind: "zero" };
    return { kind: "data", sector: entry };
  }

  /**
   * Copies `length` bytes at `inGrain` of grain `g` (stored at `sector`)
   * into `into`. Plain grains are read directly; compressed grains are
   * inflated whole (and cached).
   */
  async readGrain(g: number, sector: number, inGrain: number, length: number, into: Buffer): Promise<void> {
    const offset = sector * SECTOR;
    if (offset >= this.file.size) {
      throw new OvfkitError(
        "VMDK_GRAIN_PAST_EOF",
        `grain ${g} points at sector ${sector}, past the end of the file (${this.file.size} bytes)`,
        { file: this.path, offset },
      );
    }
    if (!this.compressed) {
      const n = await this.file.readAt(offset + inGrain, length, into);
      if (n < length) into.fill(0, n, length); // last grain of a file may be cut short
      return;
    }
    // Cache slots are reused: copy out in the same synchronous step that finds or fills the slot,
    // so a concurrent read cannot recycle it in between.
    const cached = this.grainCache.get(g);
    if (cached) {
      cached.copy(into, 0, inGrain, inGrain + length);
      return;
    }
    const { payload, offset: at } = await this.compressedPayload(g, sector);
    this.inflateToCache(g, payload, at).copy(into, 0, inGrain, inGrain + length);
  }

  /**
   * Inflates grain `g` into a cache slot: when the cache is full the oldest
   * slot's memory is reused, so steady-state reads allocate nothing.
   */
  private inflateToCache(g: number, payload: Buffer, offset: number): Buffer {
    let slot: Buffer;
    // At least the grains of one 1 MiB read, at most ~2 MiB of grains.
    if (this.grainCache.size >= Math.max(4, GRAIN_CACHE_BYTES / this.grainBytes)) {
      const [oldest, buffer] = this.grainCache.entries().next().value as [number, Buffer];
      this.grainCache.delete(oldest);
      slot = buffer;
    } else {
      slot = Buffer.allocUnsafe(this.grainBytes);
    }
    const produced = this.inflater.inflateInto(payload, slot, this.path, offset);
    slot.fill(0, produced); // the last grain of a disk may inflate short: the rest reads as zeros
    this.grainCache.set(g, slot);
    return slot;
  }

  /**
   * Inflates the compressed grains one read needs. Streams store grains in
   * LBA order, so they usually sit side by side: one read of the whole span
   * replaces two reads per grain (the I/O round trips, not zlib, were the
   * cost of sequential reads).
   */
  loadCompressed(grains: { g: number; sector: number }[]): Promise<void> {
    // One at a time: the span buffers are shared (concurrent reads, e.g. from the emulator, queue here).
    const run = this.spanQueue.then(() => this.loadCompressedNow(grains));
    this.spanQueue = run.catch(() => {});
    return run;
  }

  private async loadCompressedNow(grains: { g: number; sector: number }[]): Promise<void> {
    const missing = grains.filter((x) => !this.grainCache.has(x.g));
    if (missing.length === 0) return;
    const sectors = missing.map((x) => x.sector);
    const start = Math.min(...sectors) * SECTOR;
    const end = Math.min(
      this.file.size,
      Math.max(...sectors) * SECTOR + this.grainLimit + GRAIN_MARKER_BYTES,
    );
    if (missing.length === 1 || end - start > MAX_SPAN_READ || start >= this.file.size) return;
    const span = await this.fileSpan(start, end);
    let consumedTo = start;
    for (const { g, sector } of missing) {
      const at = sector * SECTOR - start;
      if (at + GRAIN_MARKER_BYTES > span.length) continue; // left to the per-grain path, which reports it
      const size = span.readUInt32LE(at + MARKER_SIZE);
      this.checkGrainMarker(g, sector, span.readBigUInt64LE(at + MARKER_VAL), size);
      if (at + GRAIN_MARKER_BYTES + size > span.length) continue;
      const payload = span.subarray(at + GRAIN_MARKER_BYTES, at + GRAIN_MARKER_BYTES + size);
      this.inflateToCache(g, payload, sector * SECTOR);
      consumedTo = Math.max(consumedTo, sector * SECTOR + GRAIN_MARKER_BYTES + size);
    }
    // The next sequential read wants the grains right after these: start reading them now, so
    // the file read overlaps the caller's work (writing what it got) instead of following it.
    const next = Math.ceil(consumedTo / SECTOR) * SECTOR;
    const length = Math.min(
      MAX_SPAN_READ,
      (missing.length + 1) * (this.grainLimit + GRAIN_MARKER_BYTES + SECTOR),
    );
    if (next < this.file.size) this.startReadAhead(next, Math.min(length, this.file.size - next));
  }

  /** Bytes `[start, end)` of the file: from the read-ahead when it covers them, else read now. */
  private async fileSpan(start: number, end: number): Promise<Buffer> {
    const ahead = this.readAhead;
    this.readAhead = undefined;
    if (ahead && ahead.start <= start) {
      const bytes = await ahead.bytes.catch(() => -1);
      if (bytes >= 0 && end <= ahead.start + bytes) {
        // The read-ahead buffer becomes the current span; the old one is free for the next read-ahead.
        const previous = this.spanBuffer;
        this.spanBuffer = ahead.buffer;
        this.spareBuffer = previous;
        return ahead.buffer.subarray(start - ahead.start, end - ahead.start);
      }
    } else if (ahead) {
      await ahead.bytes.catch(() => -1); // never reuse a buffer a read may still be filling
    }
    if (this.spanBuffer.length < end - start) this.spanBuffer = Buffer.allocUnsafe(end - start);
    return this.spanBuffer.subarray(0, await this.file.readAt(start, end - start, this.spanBuffer));
  }

  private startReadAhead(start: number, length: number): void {
    let buffer = this.spareBuffer;
    if (buffer.length < length) buffer = Buffer.allocUnsafe(length);
    this.spareBuffer = Buffer.alloc(0);
    const bytes = this.file.readAt(start, length, buffer);
    bytes.catch(() => {}); // a failed read-ahead is simply not used; the real read reports errors
    this.readAhead = { start, buffer, bytes };
  }

  /** A deflated grain is never much larger than the grain itself (stored blocks add 5 bytes per 64 KiB). */
  private get grainLimit(): number {
    return this.grainBytes + 1024 + Math.ceil(this.grainBytes / 1000);
  }

  private checkGrainMarker(g: number, sector: number, lba: bigint, size: number): void {
    const offset = sector * SECTOR;
    const expected = BigInt(g) * BigInt(this.header.grainSize);
    if (lba !== expected) {
      throw new OvfkitError(
        "VMDK_GRAIN_LBA_MISMATCH",
        `grain ${g} at sector ${sector} is marked with LBA ${lba}, expected ${expected}`,
        { file: this.path, offset },
      );
    }
    const limit = this.grainLimit;
    if (size === 0 || size > limit || offset + GRAIN_MARKER_BYTES + size > this.file.size) {
      throw new OvfkitError(
        "VMDK_GRAIN_OVERRUN",
        `compressed grain ${g} claims ${size} bytes, which overruns ${
          size > limit ? `the grain size limit (${limit})` : `the end of the file (${this.file.size} bytes)`
        }`,
        { file: this.path, offset: offset + MARKER_SIZE },
      );
    }
  }

  /** Reads a compressed grain's marker (LBA + size) and its zlib payload, checking both. */
  async compressedPayload(g: number, sector: number): Promise<{ payload: Buffer; offset: number }> {
    const offset = sector * SECTOR;
    const marker = await this.file.readExact(offset, GRAIN_MARKER_BYTES, `grain ${g} marker`);
    const size = marker.readUInt32LE(MARKER_SIZE);
    this.checkGrainMarker(g, sector, marker.readBigUInt64LE(MARKER_VAL), size);
    const payload = await this.file.readExact(offset + GRAIN_MARKER_BYTES, size, `grain ${g} data`);
    return { payload, offset };
  }

  /** Structural check of the tables and grains (`ovfkit check`); lists at most MAX_CHECK_FINDINGS. */
  async check(): Promise<CheckFinding[]> {
    const findings: CheckFinding[] = [];
    const add = (finding: CheckFinding): void => {
      if (findings.length < MAX_CHECK_FINDINGS) findings.push(finding);
    };
    const file = this.path;
    const spans: { start: number; end: number; g: number }[] = [];
    let scratch: Buffer | undefined;
    for (let t = 0; t < this.numTables; t++) {
      const sector = this.gdEntry(t);
      if (sector === 0) continue;
      let gt: Uint32Array | undefined;
      try {
        gt = await this.table(t);
      } catch (error) {
        add(findingOf(error, file));
        continue;
      }
      if (!gt) continue;
      for (let i = 0; i < gt.length; i++) {
        const g = t * this.gtCoverage + i;
        const entry = gt[i] ?? 0;
        if (entry <= GTE_ZEROED || g >= this.numGrains) continue;
        const offset = entry * SECTOR;
        if (offset >= this.file.size) {
          add({
            code: "VMDK_GRAIN_PAST_EOF",
            severity: "corruption",
            message: `grain ${g} points at sector ${entry}, past the end of the file`,
            file,
            offset: sector * SECTOR + i * 4,
          });
          continue;
        }
        let bytes = this.grainBytes;
        if (this.compressed) {
          try {
            const { payload } = await this.compressedPayload(g, entry);
            scratch ??= Buffer.allocUnsafe(this.grainBytes);
            this.inflater.inflateInto(payload, scratch, file, offset);
            bytes = GRAIN_MARKER_BYTES + payload.length;
          } catch (error) {
            add(findingOf(error, file));
            continue;
          }
        }
        spans.push({ start: offset, end: offset + bytes, g });
      }
    }
    spans.sort((a, b) => a.start - b.start);
    for (let i = 1; i < spans.length; i++) {
      const prev = spans[i - 1]!;
      const cur = spans[i]!;
      if (cur.start < prev.end) {
        add({
          code: "VMDK_GRAIN_OVERLAP",
          severity: "corruption",
          message: `grains ${prev.g} and ${cur.g} overlap in the file (bytes ${cur.start}..${Math.min(prev.end, cur.end)})`,
          file,
          offset: cur.start,
        });
      }
    }
    return findings;
  }
}

/**
 * Findings one structural check lists: a hostile table can break millions
 * of entries (one mutated capacity field gave 126 252, and `push(...them)`
 * overflowed the stack); past this many the rest are not listed.
 */
export const MAX_CHECK_FINDINGS = 1000;

export function findingOf(error: unknown, file: string): CheckFinding {
  if (error instanceof OvfkitError) {
    return {
      code: error.code,
      severity: "corruption",
      message: error.message,
      file: error.file ?? file,
      ...(error.offset === undefined ? {} : { offset: error.offset }),
    };
  }
  return { code: "VMDK_CHECK_FAILED", severity: "corruption", message: String(error), file };
}

/**
 * A GD_AT_END stream keeps the real header in the footer: footer marker at
 * end - 1536, footer (a header copy with the real gdOffset) at end - 1024,
 * end-of-stream marker at end - 512 (spec "The Footer").
 */
async function readFooter(file: RandomAccessFile, header: SparseHeader): Promise<SparseHeader> {
  const at = file.size - FOOTER_FROM_END;
  const missing = (why: string) =>
    new OvfkitError("VMDK_FOOTER_MISSING", `header says GD_AT_END but ${why} (file truncated?)`, {
      file: file.path,
      offset: Math.max(0, at),
    });
  if (at < HEADER_SIZE) throw missing("the file is too small to hold a footer");
  const tail = await file.readExact(at, FOOTER_FROM_END, "VMDK footer");
  if (tail.readUInt32LE(MARKER_SIZE) !== 0 || tail.readUInt32LE(MARKER_TYPE) !== MARKER_FOOTER) {
    throw missing(`there is no footer marker ${FOOTER_FROM_END} bytes before the end`);
  }
  let footer: SparseHeader;
  try {
    footer = parseSparseHeader(tail.subarray(SECTOR, 2 * SECTOR), file.path, at + SECTOR);
  } catch {
    throw missing("the footer marker is not followed by a footer header");
  }
  if (footer.gdAtEnd) throw missing("the footer's gdOffset is GD_AT_END too");
  return { ...header, gdOffset: footer.gdOffset, gdAtEnd: true };
}

async function readGrainDirectory(file: RandomAccessFile, header: SparseHeader): Promise<Uint32Array> {
  const grains = Math.ceil(header.capacity / header.grainSize);
  const tables = Math.ceil(grains / header.numGTEsPerGT);
  const bytes = tables * 4;
  const offset = header.gdOffset * SECTOR;
  if (bytes > MAX_GD_BYTES) {
    throw new OvfkitError(
      "VMDK_TABLE_TOO_LARGE",
      `grain directory of ${tables} entries (${bytes} bytes) is beyond the ${MAX_GD_BYTES}-byte limit`,
      { file: file.path, offset: HEADER_CAPACITY },
    );
  }
  if (tables > 0 && (header.gdOffset === 0 || offset + bytes > file.size)) {
    throw new OvfkitError(
      "VMDK_TABLE_PAST_EOF",
      `grain directory (${bytes} bytes at sector ${header.gdOffset}) lies outside the file (${file.size} bytes)`,
      {
        file: file.path,
        offset: header.gdAtEnd ? file.size - FOOTER_FROM_END + SECTOR + HEADER_GD_OFFSET : HEADER_GD_OFFSET,
      },
    );
  }
  const raw = tables > 0 ? await file.readExact(offset, bytes, "grain directory") : Buffer.alloc(0);
  const gd = new Uint32Array(tables);
  for (let t = 0; t < tables; t++) gd[t] = raw.readUInt32LE(t * 4);
  return gd;
}
