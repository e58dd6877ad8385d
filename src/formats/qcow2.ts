import { existsSync, realpathSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { inflateRawSync, constants as zlibConstants } from "node:zlib";
import { asOvfkitError, OvfkitError } from "../errors.js";
import {
  type CheckFinding,
  type CheckReport,
  checkReadRange,
  type DiskReader,
  dataChunks,
  type Extent,
  type FormatSpecificInfo,
  findingFromError,
  isAllZero,
  mapRange,
} from "./disk.js";
import type { FormatDriver, OpenOptions, ProbeInput, WriteContext, WriterOptions } from "./driver.js";
import { RandomAccessFile } from "./file.js";
import { isInsideFolder } from "./paths.js";

/**
 * qcow2 (QEMU copy-on-write v2), after qemu's docs/interop/qcow2.txt
 * (section names below are that file's headings).
 *
 * Read: versions 2 and 3, L1/L2 tables, standard and compressed cluster
 * descriptors, zero clusters, extended L2 entries (subclusters), backing
 * files of any format (with the same path rules as VHD parents).
 * Refused with a clear error: encryption, external data files, zstd
 * compression, unknown incompatible features.
 * Write: uncompressed v3 with 16-bit refcounts, streamed (see writeQcow2).
 */

// "Header": big-endian fields.
const QCOW2_MAGIC = 0x514649fb; // "QFI\xfb"
const H_MAGIC = 0;
const H_VERSION = 4;
const H_BACKING_FILE_OFFSET = 8;
const H_BACKING_FILE_SIZE = 16;
const H_CLUSTER_BITS = 20;
const H_SIZE = 24;
const H_CRYPT_METHOD = 32;
const H_L1_SIZE = 36;
const H_L1_TABLE_OFFSET = 40;
const H_REFCOUNT_TABLE_OFFSET = 48;
const H_REFCOUNT_TABLE_CLUSTERS = 56;
const H_NB_SNAPSHOTS = 60;
const H_SNAPSHOTS_OFFSET = 64;
/** Version 3 fields (a version 2 header ends at 72). */
const H_INCOMPATIBLE_FEATURES = 72;
const H_COMPATIBLE_FEATURES = 80;
const H_AUTOCLEAR_FEATURES = 88;
const H_REFCOUNT_ORDER = 96;
const H_HEADER_LENGTH = 100;
const H_COMPRESSION_TYPE = 104;
const V2_HEADER_LENGTH = 72;
const V3_HEADER_LENGTH = 104;
/** "Header": the backing file name is at most 1023 bytes. */
const MAX_BACKING_NAME = 1023;

/** "Header" incompatible feature bits. */
const INCOMPAT_DIRTY = 1n << 0n;
const INCOMPAT_CORRUPT = 1n << 1n;
const INCOMPAT_EXTERNAL_DATA = 1n << 2n;
const INCOMPAT_COMPRESSION_TYPE = 1n << 3n;
const INCOMPAT_EXTENDED_L2 = 1n << 4n;
const INCOMPAT_KNOWN =
  INCOMPAT_DIRTY |
  INCOMPAT_CORRUPT |
  INCOMPAT_EXTERNAL_DATA |
  INCOMPAT_COMPRESSION_TYPE |
  INCOMPAT_EXTENDED_L2;
const AUTOCLEAR_BITMAPS = 1n << 0n;

// "Header extensions".
const EXT_END = 0x00000000;
const EXT_BACKING_FORMAT = 0xe2792aca;
const EXT_FEATURE_NAME_TABLE = 0x6803f857;
const EXT_EXTERNAL_DATA_FILE = 0x44415441;
/** A header extension area longer than the first cluster is nonsense. */
const FEATURE_NAME_ENTRY = 48;

// "Cluster mapping": L1 and L2 entries.
/** L1 entry bits 9-55: offset of the L2 table; bit 63: refcount is exactly one. */
const L1E_OFFSET_MASK = 0x00fffffffffffe00n;
const L1E_RESERVED_MASK = 0x7f000000000001ffn;
/** Standard cluster descriptor: bit 0 all zeros (v3), bits 9-55 host offset. */
const L2E_OFFSET_MASK = 0x00fffffffffffe00n;
const L2E_ZERO = 1n;
const L2E_COMPRESSED = 1n << 62n;
const ENTRY_COPIED = 1n << 63n;
const STD_RESERVED_MASK = 0x3f000000000001fen;
/** "Extended L2 entries": 32 subclusters per cluster; bitmap bits 0-31 allocated, 32-63 reads as zero. */
const SUBCLUSTERS = 32;
/** qemu's limits (block/qcow2.h): clusters of 512 B to 2 MiB, L1 of at most 32 MiB. */
const MIN_CLUSTER_BITS = 9;
const MAX_CLUSTER_BITS = 21;
const MAX_L1_BYTES = 32 * 1024 * 1024;
const MAX_REFCOUNT_TABLE_BYTES = 8 * 1024 * 1024;
/** Backing chains deeper than this are refused (also stops loops). */
export const MAX_BACKING_DEPTH = 16;

export interface Qcow2Header {
  version: number;
  backingFileOffset: number;
  backingFileSize: number;
  clusterBits: number;
  clusterSize: number;
  size: number;
  cryptMethod: number;
  l1Size: number;
  l1TableOffset: number;
  refcountTableOffset: number;
  refcountTableClusters: number;
  nbSnapshots: number;
  snapshotsOffset: number;
  incompatible: bigint;
  compatible: bigint;
  autoclear: bigint;
  refcountOrder: number;
  headerLength: number;
  compressionType: number;
}

export interface Qcow2Layout {
  file: RandomAccessFile;
  header: Qcow2Header;
  backingName?: string;
  backingFormat?: string;
  extendedL2: boolean;
  /** Bytes per L2 entry (8, or 16 with extended L2). */
  l2EntryBytes: number;
  l2Entries: number;
  /** Guest bytes one L1 entry covers. */
  l2Coverage: number;
  l1: BigUint64Array;
}

function fail(code: string, message: string, file: RandomAccessFile, offset?: number): never {
  throw new OvfkitError(code, message, { file: file.path, offset });
}

const safe = (v: bigint) => (v > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(v));

function parseHeader(buf: Buffer, file: RandomAccessFile): Qcow2Header {
  if (buf.readUInt32BE(H_MAGIC) !== QCOW2_MAGIC)
    fail("QCOW2_BAD_MAGIC", 'not a qcow2 file: no "QFI\\xfb" magic', file, 0);
  const version = buf.readUInt32BE(H_VERSION);
  if (version !== 2 && version !== 3)
    fail("QCOW2_UNSUPPORTED_VERSION", `qcow2 version ${version} (2 and 3 are known)`, file, H_VERSION);
  const v3 = version === 3;
  const headerLength = v3 ? buf.readUInt32BE(H_HEADER_LENGTH) : V2_HEADER_LENGTH;
  const clusterBits = buf.readUInt32BE(H_CLUSTER_BITS);
  return {
    version,
    backingFileOffset: safe(buf.readBigUInt64BE(H_BACKING_FILE_OFFSET)),
    backingFileSize: buf.readUInt32BE(H_BACKING_FILE_SIZE),
    clusterBits,
    clusterSize: 2 ** Math.min(clusterBits, 30),
    size: safe(buf.readBigUInt64BE(H_SIZE)),
    cryptMethod: buf.readUInt32BE(H_CRYPT_METHOD),
    l1Size: buf.readUInt32BE(H_L1_SIZE),
    l1TableOffset: safe(buf.readBigUInt64BE(H_L1_TABLE_OFFSET)),
    refcountTableOffset: safe(buf.readBigUInt64BE(H_REFCOUNT_TABLE_OFFSET)),
    refcountTableClusters: buf.readUInt32BE(H_REFCOUNT_TABLE_CLUSTERS),
    nbSnapshots: buf.readUInt32BE(H_NB_SNAPSHOTS),
    snapshotsOffset: safe(buf.readBigUInt64BE(H_SNAPSHOTS_OFFSET)),
    incompatible: v3 ? buf.readBigUInt64BE(H_INCOMPATIBLE_FEATURES) : 0n,
    compatible: v3 ? buf.readBigUInt64BE(H_COMPATIBLE_FEATURES) : 0n,
    autoclear: v3 ? buf.readBigUInt64BE(H_AUTOCLEAR_FEATURES) : 0n,
    refcountOrder: v3 ? buf.readUInt32BE(H_REFCOUNT_ORDER) : 4,
    headerLength,
    compressionType: v3 && headerLength > H_COMPRESSION_TYPE ? buf[H_COMPRESSION_TYPE] : 0,
  };
}

interface Extensions {
  backingFormat?: string;
  externalDataFile?: string;
  featureNames: Map<string, string>;
}

/** "Header extensions": a list of (type, length, data padded to 8) after the header, in the first cluster. */
function parseExtensions(first: Buffer, header: Qcow2Header, file: RandomAccessFile): Extensions {
  const out: Extensions = { featureNames: new Map() };
  let at = header.headerLength;
  while (at + 8 <= first.length) {
    const type = first.readUInt32BE(at);
    const length = first.readUInt32BE(at + 4);
    if (type === EXT_END) return out;
    const data = at + 8;
    if (data + length > first.length)
      fail(
        "QCOW2_BAD_HEADER",
        `header extension 0x${type.toString(16)} runs past the first cluster`,
        file,
        at,
      );
    const body = first.subarray(data, data + length);
    if (type === EXT_BACKING_FORMAT) out.backingFormat = body.toString("latin1");
    else if (type === EXT_EXTERNAL_DATA_FILE) out.externalDataFile = body.toString("utf8");
    else if (type === EXT_FEATURE_NAME_TABLE) {
      for (let e = 0; e + FEATURE_NAME_ENTRY <= body.length; e += FEATURE_NAME_ENTRY) {
        const name = body.toString("utf8", e + 2, e + FEATURE_NAME_ENTRY).replace(/\0.*$/s, "");
        out.featureNames.set(`${body[e]}:${body[e + 1]}`, name);
      }
    }
    at = data + Math.ceil(length / 8) * 8;
  }
  return out;
}

/** Validates the header against what this reader supports; returns the extensions. */
function validate(header: Qcow2Header, ext: Extensions, file: RandomAccessFile): void {
  const { clusterBits } = header;
  if (clusterBits < MIN_CLUSTER_BITS || clusterBits > MAX_CLUSTER_BITS) {
    fail("QCOW2_BAD_HEADER", `cluster_bits ${clusterBits} (qemu supports 9 to 21)`, file, H_CLUSTER_BITS);
  }
  if (
    header.version === 3 &&
    (header.headerLength < V3_HEADER_LENGTH ||
      header.headerLength > header.clusterSize ||
      header.headerLength % 8 !== 0)
  ) {
    fail("QCOW2_BAD_HEADER", `header_length ${header.headerLength} is invalid`, file, H_HEADER_LENGTH);
  }
  if (header.cryptMethod !== 0) {
    fail(
      "QCOW2_ENCRYPTED",
      `the image is encrypted (${header.cryptMethod === 1 ? "AES" : header.cryptMethod === 2 ? "LUKS" : `method ${header.cryptMethod}`}); ovfkit does not read encrypted qcow2 images — decrypt it with qemu-img convert first`,
      file,
      H_CRYPT_METHOD,
    );
  }
  if (header.incompatible & INCOMPAT_EXTERNAL_DATA || ext.externalDataFile !== undefined) {
    fail(
      "QCOW2_EXTERNAL_DATA",
      `the guest data lives in an external data file${ext.externalDataFile ? ` (${ext.externalDataFile})` : ""}; ovfkit does not read external data files — convert with qemu-img first`,
      file,
      H_INCOMPATIBLE_FEATURES,
    );
  }
  const unknown = header.incompatible & ~INCOMPAT_KNOWN;
  if (unknown) {
    const bits: string[] = [];
    for (let bit = 0; bit < 64; bit++) {
      if (unknown & (1n << BigInt(bit))) bits.push(ext.featureNames.get(`0:${bit}`) ?? `bit ${bit}`);
    }
    fail(
      "QCOW2_UNKNOWN_FEATURE",
      `the image uses incompatible features this reader does not know: ${bits.join(", ")}`,
      file,
      H_INCOMPATIBLE_FEATURES,
    );
  }
  if (header.incompatible & INCOMPAT_COMPRESSION_TYPE && header.compressionType !== 0) {
    fail(
      "QCOW2_UNSUPPORTED_COMPRESSION",
      `compression type ${header.compressionType === 1 ? "zstd" : header.compressionType} is not supported (only zlib/deflate)`,
      file,
      H_COMPRESSION_TYPE,
    );
  }
  if (header.refcountOrder > 6)
    fail("QCOW2_BAD_HEADER", `refcount_order ${header.refcountOrder} (at most 6)`, file, H_REFCOUNT_ORDER);
  if (header.size > Number.MAX_SAFE_INTEGER - header.clusterSize)
    fail("QCOW2_BAD_HEADER", "virtual size is too large", file, H_SIZE);
}

/** Reads and validates header, extensions and the L1 table (bounded before allocating). */
export async function loadQcow2Layout(file: RandomAccessFile): Promise<Qcow2Layout> {
  const head = await file.readExact(0, Math.min(file.size, 512), "qcow2 header");
  if (head.length < V2_HEADER_LENGTH) fail("TRUNCATED", "the file is shorter than a qcow2 header", file, 0);
  // a version 3 header has fields up to H_HEADER_LENGTH + 4 (found by the fuzzer: a RangeError before)
  if (head.readUInt32BE(H_VERSION) === 3 && head.length < H_HEADER_LENGTH + 4)
    fail("TRUNCATED", "the file is shorter than a qcow2 version 3 header", file, 0);
  const header = parseHeader(head, file);
  if (header.clusterBits < MIN_CLUSTER_BITS || header.clusterBits > MAX_CLUSTER_BITS) {
    fail(
      "QCOW2_BAD_HEADER",
      `cluster_bits ${header.clusterBits} (qemu supports 9 to 21)`,
      file,
      H_CLUSTER_BITS,
    );
  }
  const first = await file.readExact(0, Math.min(file.size, header.clusterSize), "qcow2 header cluster");
  const ext = parseExtensions(first, header, file);
  validate(header, ext, file);

  const extendedL2 = (header.incompatible & INCOMPAT_EXTENDED_L2) !== 0n;
  const l2EntryBytes = extendedL2 ? 16 : 8;
  const l2Entries = header.clusterSize / l2EntryBytes;
  const l2Coverage = l2Entries * header.clusterSize;
  const needed = Math.ceil(header.size / l2Coverage);
  if (header.l1Size < needed)
    fail(
      "QCOW2_BAD_L1",
      `the L1 table has ${header.l1Size} entries; the virtual size needs ${needed}`,
      file,
      H_L1_SIZE,
    );
  const l1Bytes = header.l1Size * 8;
  if (l1Bytes > MAX_L1_BYTES)
    fail("QCOW2_BAD_L1", `the L1 table claims ${l1Bytes} bytes (qemu's limit is 32 MiB)`, file, H_L1_SIZE);
  if (header.l1TableOffset % header.clusterSize !== 0)
    fail(
      "QCOW2_BAD_L1",
      `the L1 table offset ${header.l1TableOffset} is not cluster aligned`,
      file,
      H_L1_TABLE_OFFSET,
    );
  if (header.l1TableOffset + l1Bytes > file.size) {
    fail(
      "QCOW2_BAD_L1",
      `the L1 table (${l1Bytes} bytes at ${header.l1TableOffset}) lies past the end of the file (${file.size} bytes)`,
      file,
      H_L1_TABLE_OFFSET,
    );
  }
  // Only the entries that cover the virtual disk matter; a longer L1 is legal (after a shrink).
  const l1Buf = await file.readExact(header.l1TableOffset, needed * 8, "qcow2 L1 table");
  const l1 = new BigUint64Array(needed);
  for (let i = 0; i < needed; i++) l1[i] = l1Buf.readBigUInt64BE(i * 8);

  let backingName: string | undefined;
  if (header.backingFileOffset !== 0 && header.backingFileSize > 0) {
    if (header.backingFileSize > MAX_BACKING_NAME)
      fail(
        "QCOW2_BAD_HEADER",
        `backing file name of ${header.backingFileSize} bytes (at most 1023)`,
        file,
        H_BACKING_FILE_SIZE,
      );
    backingName = (
      await file.readExact(header.backingFileOffset, header.backingFileSize, "qcow2 backing file name")
    ).toString("utf8");
  }
  return {
    file,
    header,
    backingName,
    backingFormat: ext.backingFormat,
    extendedL2,
    l2EntryBytes,
    l2Entries,
    l2Coverage,
    l1,
  };
}

/** What a run of guest bytes maps to. */
type Piece =
  | { kind: "data"; host: number }
  | { kind: "compressed"; host: number; bytes: number; clusterStart: number }
  | { kind: "zero" }
  | { kind: "unallocated" };

/** Maps qcow2's backing-format names to ours (qemu calls VHD "vpc"). */
const BACKING_FORMATS: Record<string, string> = {
  vpc: "vpc",
  raw: "raw",
  qcow2: "qcow2",
  vmdk: "vmdk",
  vhdx: "vhdx",
  file: "raw",
};

/**
 * Resolves and opens a backing file: relative names resolve against the
 * overlay's folder (as qemu does); the result must lie in that folder tree
 * unless `allowParentOutside`; chains deeper than MAX_BACKING_DEPTH (which
 * includes loops) are refused.
 */
async function openBacking(layout: Qcow2Layout, options: OpenOptions): Promise<DiskReader> {
  const file = layout.file;
  const name = layout.backingName as string;
  const depth = (options.depth ?? 0) + 1;
  if (depth > MAX_BACKING_DEPTH)
    fail(
      "QCOW2_BACKING_TOO_DEEP",
      `the backing chain is deeper than ${MAX_BACKING_DEPTH} (or loops)`,
      file,
      layout.header.backingFileOffset,
    );
  if (/^[a-z][a-z0-9+.-]*:/i.test(name) && !/^[A-Za-z]:[\\/]/.test(name) && !name.startsWith("file:")) {
    fail(
      "QCOW2_BACKING_UNSUPPORTED",
      `backing file "${name}" is a protocol URL, not a file`,
      file,
      layout.header.backingFileOffset,
    );
  }
  const overlayDir = dirname(realpathSync(file.path));
  const candidate = resolve(overlayDir, name.replace(/^file:/, ""));
  if (!existsSync(candidate)) {
    fail(
      "QCOW2_BACKING_NOT_FOUND",
      `backing file ${candidate} (named "${name}") does not exist`,
      file,
      layout.header.backingFileOffset,
    );
  }
  const real = realpathSync(candidate);
  if (real === realpathSync(file.path))
    fail(
      "QCOW2_BACKING_LOOP",
      "the image names itself as its backing file",
      file,
      layout.header.backingFileOffset,
    );
  if (!options.allowParentOutside && !isInsideFolder(overlayDir, real)) {
    fail(
      "QCOW2_BACKING_OUTSIDE",
      `the backing file ${real} is outside the image's folder (allow it with --allow-parent-outside)`,
      file,
      layout.header.backingFileOffset,
    );
  }
  const format = layout.backingFormat ? BACKING_FORMATS[layout.backingFormat] : undefined;
  if (layout.backingFormat && !format)
    fail("QCOW2_BACKING_UNSUPPORTED", `backing format "${layout.backingFormat}" is not supported`, file);
  // Imported lazily: index.ts imports the registry, which imports this module.
  const { openDisk } = await import("./index.js");
  return openDisk(real, { ...options, format, depth });
}

class Qcow2Reader implements DiskReader {
  readonly format = "qcow2" as const;
  readonly virtualSize: number;
  readonly files: string[];
  readonly formatSpecific: FormatSpecificInfo;
  readonly dirty: boolean;
  readonly backingFile?: string;
  private readonly l2Cache = new Map<number, Buffer>();
  private static readonly L2_CACHE_TABLES = 32;
  private decompressed?: { host: number; data: Buffer };

  constructor(
    readonly layout: Qcow2Layout,
    private readonly backing: DiskReader | undefined,
  ) {
    const h = layout.header;
    this.virtualSize = h.size;
    this.dirty = (h.incompatible & INCOMPAT_DIRTY) !== 0n;
    this.backingFile = backing?.path;
    this.files = [layout.file.path, ...(backing?.files ?? [])];
    this.formatSpecific = {
      compat: h.version === 3 ? "1.1" : "0.10",
      "cluster-size": h.clusterSize,
      "refcount-bits": 2 ** h.refcountOrder,
      "compression-type":
        h.compressionType === 0 ? "zlib" : h.compressionType === 1 ? "zstd" : h.compressionType,
      "extended-l2": layout.extendedL2,
      "lazy-refcounts": (h.compatible & 1n) !== 0n,
      corrupt: (h.incompatible & INCOMPAT_CORRUPT) !== 0n,
      snapshots: h.nbSnapshots,
      ...(layout.backingName ? { "backing-filename": layout.backingName } : {}),
      ...(layout.backingFormat ? { "backing-format": layout.backingFormat } : {}),
    };
  }

  get path(): string {
    return this.layout.file.path;
  }

  private async l2Table(l1Index: number): Promise<Buffer | undefined> {
    const { file, header } = this.layout;
    const entry = this.layout.l1[l1Index] ?? 0n;
    const offset = Number(entry & L1E_OFFSET_MASK);
    if (offset === 0) return undefined;
    const where = header.l1TableOffset + l1Index * 8;
    if (offset % header.clusterSize !== 0)
      fail("QCOW2_BAD_L1", `L1 entry ${l1Index} points to an unaligned L2 table (${offset})`, file, where);
    if (offset + header.clusterSize > file.size)
      fail("QCOW2_BAD_L1", `L1 entry ${l1Index} points past the end of the file (${offset})`, file, where);
    let table = this.l2Cache.get(offset);
    if (!table) {
      table = await file.readExact(offset, header.clusterSize, `qcow2 L2 table ${l1Index}`);
      if (this.l2Cache.size >= Qcow2Reader.L2_CACHE_TABLES)
        this.l2Cache.delete(this.l2Cache.keys().next().value as number);
      this.l2Cache.set(offset, table);
    }
    return table;
  }

  /** Resolves guest offset `pos`: what it maps to and how many bytes that holds for (to the next (sub)cluster boundary). */
  async resolve(pos: number): Promise<{ piece: Piece; length: number }> {
    const { header, l2Coverage, l2EntryBytes, extendedL2, file } = this.layout;
    const cs = header.clusterSize;
    const l1Index = Math.floor(pos / l2Coverage);
    const table = await this.l2Table(l1Index);
    if (!table) return { piece: { kind: "unallocated" }, length: (l1Index + 1) * l2Coverage - pos };
    const l2Index = Math.floor((pos % l2Coverage) / cs);
    const entry = table.readBigUInt64BE(l2Index * l2EntryBytes);
    const within = pos % cs;
    const where = Number(this.layout.l1[l1Index] & L1E_OFFSET_MASK) + l2Index * l2EntryBytes;
    if (entry & L2E_COMPRESSED) {
      // "Compressed Clusters Descriptor": x = 62 - (cluster_bits - 8) bits of byte offset, then the count of extra 512-byte sectors.
      const x = BigInt(62 - (header.clusterBits - 8));
      const host = Number(entry & ((1n << x) - 1n));
      const sectors = Number((entry >> x) & ((1n << (62n - x)) - 1n));
      const bytes = (sectors + 1) * 512 - (host % 512);
      if (host === 0 || host >= file.size)
        fail("QCOW2_BAD_L2", `compressed cluster at ${host} lies outside the file`, file, where);
      return {
        piece: {
          kind: "compressed",
          host,
          bytes: Math.min(bytes, file.size - host),
          clusterStart: pos - within,
        },
        length: cs - within,
      };
    }
    const host = Number(entry & L2E_OFFSET_MASK);
    if (host % cs !== 0)
      fail("QCOW2_BAD_L2", `L2 entry points to an unaligned cluster (${host})`, file, where);
    if (!extendedL2) {
      if (entry & L2E_ZERO && header.version === 3) return { piece: { kind: "zero" }, length: cs - within };
      if (host === 0) return { piece: { kind: "unallocated" }, length: cs - within };
      if (host + cs > file.size)
        fail(
          "QCOW2_BAD_L2",
          `data cluster ${host} lies past the end of the file (${file.size} bytes)`,
          file,
          where,
        );
      return { piece: { kind: "data", host: host + within }, length: cs - within };
    }
    const bitmap = table.readBigUInt64BE(l2Index * l2EntryBytes + 8);
    const sub = cs / SUBCLUSTERS;
    const s = Math.floor(within / sub);
    const length = (s + 1) * sub - within;
    const allocated = (bitmap >> BigInt(s)) & 1n;
    const zero = (bitmap >> BigInt(s + 32)) & 1n;
    if (allocated && zero) fail("QCOW2_BAD_L2", `subcluster ${s} is both allocated and zero`, file, where);
    if (zero) return { piece: { kind: "zero" }, length };
    if (!allocated) return { piece: { kind: "unallocated" }, length };
    // qemu writes only the subclusters it allocates, so the file may end inside the last cluster
    if (host === 0 || host + (s + 1) * sub > file.size) {
      fail("QCOW2_BAD_L2", `subcluster ${s} of data cluster ${host} lies outside the file`, file, where);
    }
    return { piece: { kind: "data", host: host + within }, length };
  }

  async *map(offset?: number, length?: number): AsyncGenerator<Extent> {
    const { start, end } = mapRange(this.virtualSize, offset, length);
    let pending: Extent | undefined;
    const push = function* (e: Extent): Generator<Extent> {
      if (pending && pending.kind === e.kind && pending.offset + pending.length === e.offset)
        pending.length += e.length;
      else {
        if (pending) yield pending;
        pending = { ...e };
      }
    };
    for (let pos = start; pos < end; ) {
      const { piece, length: run } = await this.resolve(pos);
      const n = Math.min(run, end - pos);
      if (piece.kind === "unallocated") {
        for await (const e of this.backingMap(pos, n)) yield* push(e);
      } else yield* push({ offset: pos, length: n, kind: piece.kind === "zero" ? "zero" : "data" });
      pos += n;
    }
    if (pending) yield pending;
  }

  /** The backing file's map of a range this image does not allocate (beyond its size: unallocated). */
  private async *backingMap(pos: number, n: number): AsyncGenerator<Extent> {
    const inBacking = this.backing ? Math.max(0, Math.min(n, this.backing.virtualSize - pos)) : 0;
    if (inBacking > 0 && this.backing) yield* this.backing.map(pos, inBacking);
    if (inBacking < n) yield { offset: pos + inBacking, length: n - inBacking, kind: "unallocated" };
  }

  async read(offset: number, length: number, into?: Buffer): Promise<Buffer> {
    checkReadRange(this.path, this.virtualSize, offset, length);
    const out = into ? into.subarray(0, length) : Buffer.allocUnsafe(length);
    // Data clusters that follow each other in the file are read with one call (qemu-img
    // writes them in order, so a 1 MiB read is usually one read, not sixteen).
    let pending: { host: number; start: number; end: number } | undefined;
    const flush = async () => {
      if (pending) {
        const { host, start, end } = pending;
        await this.layout.file.readExact(host, end - start, "qcow2 data cluster", out.subarray(start, end));
      }
      pending = undefined;
    };
    for (let done = 0; done < length; ) {
      const pos = offset + done;
      const { piece, length: run } = await this.resolve(pos);
      const n = Math.min(run, length - done);
      const target = out.subarray(done, done + n);
      if (piece.kind === "data") {
        if (pending && pending.end === done && pending.host + (pending.end - pending.start) === piece.host)
          pending.end += n;
        else {
          await flush();
          pending = { host: piece.host, start: done, end: done + n };
        }
      } else if (piece.kind === "compressed") {
        (await this.inflate(piece)).copy(target, 0, pos - piece.clusterStart, pos - piece.clusterStart + n);
      } else if (piece.kind === "zero") target.fill(0);
      else await this.readBacking(pos, target);
      done += n;
    }
    await flush();
    return out;
  }

  private async readBacking(pos: number, target: Buffer): Promise<void> {
    const inBacking = this.backing ? Math.max(0, Math.min(target.length, this.backing.virtualSize - pos)) : 0;
    if (inBacking > 0 && this.backing) await this.backing.read(pos, inBacking, target);
    target.fill(0, inBacking);
  }

  /** "Compressed Clusters Descriptor": raw deflate (no zlib header) that must inflate to exactly one cluster. */
  private async inflate(piece: { host: number; bytes: number }): Promise<Buffer> {
    if (this.decompressed?.host === piece.host) return this.decompressed.data;
    const cs = this.layout.header.clusterSize;
    const input = await this.layout.file.readExact(piece.host, piece.bytes, "qcow2 compressed cluster");
    let data: Buffer;
    try {
      data = inflateRawSync(input, { finishFlush: zlibConstants.Z_SYNC_FLUSH, maxOutputLength: cs });
    } catch (error) {
      throw new OvfkitError(
        "QCOW2_BAD_COMPRESSED",
        `compressed cluster at ${piece.host} does not inflate: ${(error as Error).message}`,
        {
          file: this.path,
          offset: piece.host,
          cause: error,
        },
      );
    }
    if (data.length !== cs) {
      throw new OvfkitError(
        "QCOW2_BAD_COMPRESSED",
        `compressed cluster at ${piece.host} inflates to ${data.length} bytes, not ${cs}`,
        {
          file: this.path,
          offset: piece.host,
        },
      );
    }
    this.decompressed = { host: piece.host, data };
    return data;
  }

  async close(): Promise<void> {
    await this.backing?.close();
    await this.layout.file.close();
  }
}

export async function openQcow2(path: string, options: OpenOptions = {}): Promise<Qcow2Reader> {
  const file = await RandomAccessFile.open(path);
  try {
    const layout = await loadQcow2Layout(file);
    const backing = layout.backingName && !options.noBacking ? await openBacking(layout, options) : undefined;
    return new Qcow2Reader(layout, backing);
  } catch (error) {
    await file.close();
    throw asOvfkitError(error, path);
  }
}

// ---------------------------------------------------------------------------
// check
// ---------------------------------------------------------------------------

/** Most clusters whose refcounts check computes (a 64 GiB file of 64 KiB clusters is 1M). */
const MAX_CHECKED_CLUSTERS = 16 * 1024 * 1024;

/**
 * Structural check: L1/L2 entries out of range, unaligned or with reserved
 * bits; two tables or clusters at the same host cluster; and, without
 * snapshots or bitmaps (whose tables also hold references), refcounts
 * recomputed and compared with the stored ones like `qemu-img check`.
 */
export async function checkQcow2(path: string): Promise<CheckReport> {
  const file = await RandomAccessFile.open(path);
  const findings: CheckFinding[] = [];
  const report = (extra: Partial<CheckReport> = {}): CheckReport => ({
    filename: path,
    format: "qcow2",
    findings,
    ...extra,
  });
  try {
    let layout: Qcow2Layout;
    try {
      layout = await loadQcow2Layout(file);
    } catch (error) {
      findings.push(findingFromError(error, path));
      return report();
    }
    const counts = await new Qcow2Checker(layout, findings).run();
    return report(counts);
  } finally {
    await file.close();
  }
}

/** "Refcount blocks": big-endian entries of 1, 2, 4 or 8 bytes (refcount_order 3 to 6). */
function readRefcount(block: Buffer, index: number, entryBytes: number): number {
  const at = index * entryBytes;
  if (entryBytes === 1) return block[at];
  if (entryBytes === 2) return block.readUInt16BE(at);
  if (entryBytes === 4) return block.readUInt32BE(at);
  return safe(block.readBigUInt64BE(at));
}

class Qcow2Checker {
  private readonly cs: number;
  private readonly fileClusters: number;
  /** Expected refcount per host cluster (undefined when the file is too big to count). */
  private readonly refs?: Uint16Array;
  private readonly owner = new Map<number, string>();

  constructor(
    private readonly layout: Qcow2Layout,
    private readonly findings: CheckFinding[],
  ) {
    this.cs = layout.header.clusterSize;
    this.fileClusters = Math.ceil(layout.file.size / this.cs);
    if (this.fileClusters <= MAX_CHECKED_CLUSTERS) this.refs = new Uint16Array(this.fileClusters);
  }

  private add(
    code: string,
    message: string,
    offset?: number,
    severity: CheckFinding["severity"] = "corruption",
  ): void {
    if (this.findings.length < 1000)
      this.findings.push({ code, severity, message, file: this.layout.file.path, offset });
  }

  /** Counts a reference to [host, host+bytes); exclusive structures must not share clusters. */
  private reference(host: number, bytes: number, what: string, exclusive: boolean, where?: number): void {
    const first = Math.floor(host / this.cs);
    const last = Math.floor((host + Math.max(bytes, 1) - 1) / this.cs);
    for (let c = first; c <= last; c++) {
      if (this.refs && c < this.refs.length) this.refs[c] = Math.min(0xffff, this.refs[c] + 1);
      if (exclusive) {
        const other = this.owner.get(c);
        if (other !== undefined)
          this.add("QCOW2_OVERLAP", `${what} and ${other} share host cluster ${c * this.cs}`, where);
        else this.owner.set(c, what);
      }
    }
  }

  async run(): Promise<{ allocatedClusters: number; totalClusters: number }> {
    const { header, file } = this.layout;
    const cs = this.cs;
    this.reference(0, cs, "the header", true);
    this.reference(header.l1TableOffset, header.l1Size * 8, "the L1 table", true, H_L1_TABLE_OFFSET);
    const rtBytes = header.refcountTableClusters * cs;
    const refcountTableOk =
      header.refcountTableOffset % cs === 0 &&
      header.refcountTableOffset + rtBytes <= file.size &&
      rtBytes <= MAX_REFCOUNT_TABLE_BYTES;
    if (!refcountTableOk)
      this.add(
        "QCOW2_BAD_REFCOUNT_TABLE",
        `the refcount table (${rtBytes} bytes at ${header.refcountTableOffset}) is unaligned, too large or past the end of the file`,
        H_REFCOUNT_TABLE_OFFSET,
      );
    else
      this.reference(
        header.refcountTableOffset,
        rtBytes,
        "the refcount table",
        true,
        H_REFCOUNT_TABLE_OFFSET,
      );
    if (header.nbSnapshots > 0 && header.snapshotsOffset + 1 <= file.size)
      this.reference(header.snapshotsOffset, 1, "the snapshot table", false);

    let allocated = 0;
    for (let i = 0; i < this.layout.l1.length; i++) allocated += await this.checkL2(i);

    const refcountBlocks = refcountTableOk ? await this.refcountBlocks() : [];
    for (const block of refcountBlocks)
      this.reference(block.offset, cs, `refcount block ${block.index}`, true, block.where);
    if (
      refcountTableOk &&
      this.refs &&
      header.nbSnapshots === 0 &&
      !(header.autoclear & AUTOCLEAR_BITMAPS) &&
      header.refcountOrder >= 3
    ) {
      await this.compareRefcounts(refcountBlocks);
    }
    return { allocatedClusters: allocated, totalClusters: Math.ceil(header.size / cs) };
  }

  /** Checks one L1 entry and its L2 table; returns the allocated clusters it maps. */
  private async checkL2(l1Index: number): Promise<number> {
    const { header, file, l2EntryBytes, l2Entries, extendedL2 } = this.layout;
    const cs = this.cs;
    const where = header.l1TableOffset + l1Index * 8;
    const entry = this.layout.l1[l1Index];
    const l2Offset = Number(entry & L1E_OFFSET_MASK);
    if (entry & L1E_RESERVED_MASK)
      this.add("QCOW2_RESERVED_BITS", `L1 entry ${l1Index} has reserved bits set`, where);
    if (l2Offset === 0) return 0;
    if (l2Offset % cs !== 0) {
      this.add(
        "QCOW2_UNALIGNED",
        `L1 entry ${l1Index}: L2 table offset ${l2Offset} is not cluster aligned`,
        where,
      );
      return 0;
    }
    if (l2Offset + cs > file.size) {
      this.add(
        "QCOW2_OUT_OF_RANGE",
        `L1 entry ${l1Index}: L2 table at ${l2Offset} lies past the end of the file`,
        where,
      );
      return 0;
    }
    this.reference(l2Offset, cs, `L2 table ${l1Index}`, true, where);
    const table = await file.readExact(l2Offset, cs, `qcow2 L2 table ${l1Index}`);
    const guestClusters = Math.ceil(header.size / cs);
    let allocated = 0;
    for (let j = 0; j < l2Entries && l1Index * l2Entries + j < guestClusters; j++) {
      const e = table.readBigUInt64BE(j * l2EntryBytes);
      const at = l2Offset + j * l2EntryBytes;
      if (e & L2E_COMPRESSED) {
        const x = BigInt(62 - (header.clusterBits - 8));
        const host = Number(e & ((1n << x) - 1n));
        const bytes = (Number((e >> x) & ((1n << (62n - x)) - 1n)) + 1) * 512 - (host % 512);
        if (host === 0 || host >= file.size) {
          this.add("QCOW2_OUT_OF_RANGE", `compressed cluster at ${host} lies outside the file`, at);
          continue;
        }
        this.reference(host, Math.min(bytes, file.size - host), "a compressed cluster", false, at);
        allocated++;
        continue;
      }
      const host = Number(e & L2E_OFFSET_MASK);
      if (!extendedL2 && e & STD_RESERVED_MASK)
        this.add("QCOW2_RESERVED_BITS", `L2 entry ${l1Index}/${j} has reserved bits set`, at);
      if (host === 0) continue;
      if (host % cs !== 0) {
        this.add(
          "QCOW2_UNALIGNED",
          `L2 entry ${l1Index}/${j}: cluster offset ${host} is not cluster aligned`,
          at,
        );
        continue;
      }
      // with subclusters the file may end inside the last cluster (only written subclusters exist)
      if (extendedL2 ? host >= file.size : host + cs > file.size) {
        this.add(
          "QCOW2_OUT_OF_RANGE",
          `L2 entry ${l1Index}/${j}: data cluster at ${host} lies past the end of the file (${file.size} bytes)`,
          at,
        );
        continue;
      }
      this.reference(host, cs, `data cluster ${l1Index * l2Entries + j}`, header.nbSnapshots === 0, at);
      allocated++;
    }
    return allocated;
  }

  private async refcountBlocks(): Promise<Array<{ index: number; offset: number; where: number }>> {
    const { header, file } = this.layout;
    const table = await file.readExact(
      header.refcountTableOffset,
      header.refcountTableClusters * this.cs,
      "qcow2 refcount table",
    );
    const out: Array<{ index: number; offset: number; where: number }> = [];
    for (let i = 0; i < table.length / 8; i++) {
      const offset = safe(table.readBigUInt64BE(i * 8) & ~0x1ffn);
      const where = header.refcountTableOffset + i * 8;
      if (offset === 0) continue;
      if (offset % this.cs !== 0 || offset + this.cs > file.size) {
        this.add(
          "QCOW2_BAD_REFCOUNT_TABLE",
          `refcount table entry ${i} points to ${offset}, unaligned or past the end of the file`,
          where,
        );
        continue;
      }
      out.push({ index: i, offset, where });
    }
    return out;
  }

  /** Compares recomputed refcounts (8- to 64-bit entries) with the stored ones (qemu-img check's "refcount mismatch" / "leaked cluster"). */
  private async compareRefcounts(blocks: Array<{ index: number; offset: number }>): Promise<void> {
    const refs = this.refs as Uint16Array;
    const order = this.layout.header.refcountOrder;
    const entryBytes = 2 ** order / 8;
    const perBlock = this.cs / entryBytes;
    const stored = new Map(blocks.map((b) => [b.index, b.offset]));
    let reported = 0;
    for (let first = 0; first < refs.length; first += perBlock) {
      const blockOffset = stored.get(first / perBlock);
      const data =
        blockOffset === undefined
          ? undefined
          : await this.layout.file.readExact(blockOffset, this.cs, "qcow2 refcount block");
      for (let c = first; c < Math.min(refs.length, first + perBlock) && reported < 100; c++) {
        // expected counts saturate at 0xffff: compare stored ones the same way
        const have = data ? Math.min(0xffff, readRefcount(data, c - first, entryBytes)) : 0;
        const want = refs[c];
        if (have === want) continue;
        reported++;
        if (want === 0)
          this.add(
            "QCOW2_LEAKED_CLUSTER",
            `cluster at ${c * this.cs} has refcount ${have} but nothing uses it`,
            c * this.cs,
            "leak",
          );
        else
          this.add(
            "QCOW2_REFCOUNT_MISMATCH",
            `cluster at ${c * this.cs} has refcount ${have}, ${want} expected`,
            c * this.cs,
          );
      }
    }
  }
}

// ---------------------------------------------------------------------------
// write
// ---------------------------------------------------------------------------

export const QCOW2_WRITER_OPTIONS: Readonly<Record<string, string>> = {
  cluster_size: "cluster size, a power of two from 512 to 2M (default 64K)",
};

const DEFAULT_CLUSTER_SIZE = 64 * 1024;
/** 16-bit refcounts (refcount_order 4), qemu's default. */
const WRITE_REFCOUNT_ORDER = 4;
/** qemu writes a 112-byte v3 header (with the compression type byte and padding). */
const WRITE_HEADER_LENGTH = 112;

export interface Qcow2WritePlan {
  clusterSize: number;
  clusterBits: number;
  virtualSize: number;
  l2Entries: number;
  l1Size: number;
  l1Clusters: number;
}

export function planQcow2(virtualSize: number, options: WriterOptions): Qcow2WritePlan {
  for (const key of Object.keys(options)) {
    if (!(key in QCOW2_WRITER_OPTIONS)) {
      throw new OvfkitError(
        "BAD_OPTION",
        `qcow2 has no option "${key}" (known: ${Object.keys(QCOW2_WRITER_OPTIONS).join(", ")})`,
      );
    }
  }
  let clusterSize = DEFAULT_CLUSTER_SIZE;
  if (options.cluster_size !== undefined) {
    const m = /^(\d+)([kKmM]?)$/.exec(options.cluster_size.trim());
    clusterSize = m
      ? Number(m[1]) * { "": 1, k: 1024, m: 1024 * 1024 }[m[2].toLowerCase() as "" | "k" | "m"]
      : Number.NaN;
  }
  const clusterBits = Math.log2(clusterSize);
  if (!Number.isInteger(clusterBits) || clusterBits < MIN_CLUSTER_BITS || clusterBits > MAX_CLUSTER_BITS) {
    throw new OvfkitError(
      "BAD_OPTION",
      `cluster_size=${options.cluster_size}: a power of two from 512 to 2M`,
    );
  }
  const l2Entries = clusterSize / 8;
  const l1Size = Math.max(1, Math.ceil(virtualSize / (l2Entries * clusterSize)));
  if (l1Size * 8 > MAX_L1_BYTES)
    throw new OvfkitError("BAD_OPTION", `the disk is too large for cluster_size=${clusterSize}`);
  return {
    clusterSize,
    clusterBits,
    virtualSize,
    l2Entries,
    l1Size,
    l1Clusters: Math.ceil((l1Size * 8) / clusterSize),
  };
}

function qcow2HeaderCluster(
  plan: Qcow2WritePlan,
  refcountTableOffset: number,
  refcountTableClusters: number,
): Buffer {
  const buf = Buffer.alloc(plan.clusterSize);
  buf.writeUInt32BE(QCOW2_MAGIC, H_MAGIC);
  buf.writeUInt32BE(3, H_VERSION);
  buf.writeUInt32BE(plan.clusterBits, H_CLUSTER_BITS);
  buf.writeBigUInt64BE(BigInt(plan.virtualSize), H_SIZE);
  buf.writeUInt32BE(plan.l1Size, H_L1_SIZE);
  buf.writeBigUInt64BE(BigInt(plan.clusterSize), H_L1_TABLE_OFFSET);
  buf.writeBigUInt64BE(BigInt(refcountTableOffset), H_REFCOUNT_TABLE_OFFSET);
  buf.writeUInt32BE(refcountTableClusters, H_REFCOUNT_TABLE_CLUSTERS);
  buf.writeUInt32BE(WRITE_REFCOUNT_ORDER, H_REFCOUNT_ORDER);
  buf.writeUInt32BE(WRITE_HEADER_LENGTH, H_HEADER_LENGTH);
  // the header extension area right after starts with the end marker (type 0): zeros already
  return buf;
}

/**
 * Streaming layout: cluster 0 header | L1 table | data clusters in guest
 * order, each L2 table written right after the data it maps | refcount
 * table | refcount blocks. Every cluster of the file is used exactly once,
 * so every refcount is 1 and the refcount structures, sized last, cover
 * clusters [0, end). Memory: the L1 table (at most 32 MiB, 1 MiB for
 * 64 TiB at 64 KiB clusters) plus one L2 table.
 */
export async function writeQcow2(
  source: DiskReader,
  destPath: string,
  options: WriterOptions,
  ctx: WriteContext,
): Promise<void> {
  // qemu reads a qcow2 as whole 512-byte sectors (it truncates the size to them): round up as qemu-img does
  const plan = planQcow2(Math.ceil(source.virtualSize / 512) * 512, options);
  const cs = plan.clusterSize;
  const out = await RandomAccessFile.create(ctx.tx.file(destPath));
  try {
    const l1 = Buffer.alloc(plan.l1Clusters * cs);
    let nextCluster = 1 + plan.l1Clusters;
    let l2: { index: number; table: Buffer } | undefined;
    let current: { guestCluster: number; host: number } | undefined;

    const flushL2 = async () => {
      if (!l2) return;
      const host = nextCluster++ * cs;
      await out.writeAt(host, l2.table);
      l1.writeBigUInt64BE(BigInt(host) | ENTRY_COPIED, l2.index * 8);
      l2 = undefined;
    };
    const hostCluster = async (guestCluster: number): Promise<number> => {
      if (current?.guestCluster === guestCluster) return current.host;
      const l1Index = Math.floor(guestCluster / plan.l2Entries);
      if (l2 && l2.index !== l1Index) await flushL2();
      l2 ??= { index: l1Index, table: Buffer.alloc(cs) };
      const host = nextCluster++ * cs;
      l2.table.writeBigUInt64BE(BigInt(host) | ENTRY_COPIED, (guestCluster % plan.l2Entries) * 8);
      current = { guestCluster, host };
      return host;
    };

    for await (const chunk of dataChunks(source, { skipZeroChunks: true, signal: ctx.signal })) {
      // Consecutive stored clusters usually get consecutive host clusters: write each such run
      // of the chunk with one call instead of one call per cluster.
      let run: { host: number; start: number; end: number } | undefined;
      const flushRun = async () => {
        if (run) await out.writeAt(run.host, chunk.data.subarray(run.start, run.end));
        run = undefined;
      };
      for (let done = 0; done < chunk.data.length; ) {
        const pos = chunk.offset + done;
        const guestCluster = Math.floor(pos / cs);
        const n = Math.min(chunk.data.length - done, (guestCluster + 1) * cs - pos);
        // an all-zero piece of a cluster not yet stored stays unallocated (reads as zeros)
        if (current?.guestCluster === guestCluster || !isAllZero(chunk.data.subarray(done, done + n))) {
          const host = (await hostCluster(guestCluster)) + (pos % cs);
          if (run && run.end === done && run.host + (run.end - run.start) === host) run.end = done + n;
          else {
            await flushRun();
            run = { host, start: done, end: done + n };
          }
        }
        done += n;
      }
      await flushRun(); // before the chunk's buffer is reused
      ctx.progress?.(chunk.offset + chunk.data.length, source.virtualSize);
    }
    await flushL2();
    await out.writeAt(cs, l1);

    // Refcount structures last: find the smallest table + blocks that cover everything including themselves.
    const perBlock = cs / 2; // 16-bit refcounts
    const used = nextCluster;
    let blocks = 1;
    let tableClusters = 1;
    for (;;) {
      const total = used + tableClusters + blocks;
      const needBlocks = Math.ceil(total / perBlock);
      const needTable = Math.ceil((needBlocks * 8) / cs);
      if (needBlocks === blocks && needTable === tableClusters) break;
      blocks = Math.max(blocks, needBlocks);
      tableClusters = Math.max(tableClusters, needTable);
    }
    const tableOffset = used * cs;
    const firstBlock = used + tableClusters;
    const total = firstBlock + blocks;
    const table = Buffer.alloc(tableClusters * cs);
    for (let b = 0; b < blocks; b++) table.writeBigUInt64BE(BigInt((firstBlock + b) * cs), b * 8);
    await out.writeAt(tableOffset, table);
    const block = Buffer.alloc(cs);
    for (let b = 0; b < blocks; b++) {
      block.fill(0);
      const count = Math.min(perBlock, total - b * perBlock);
      for (let i = 0; i < count; i++) block.writeUInt16BE(1, i * 2);
      await out.writeAt((firstBlock + b) * cs, block);
    }
    await out.writeAt(0, qcow2HeaderCluster(plan, tableOffset, tableClusters));
    await out.truncate(total * cs);
    ctx.progress?.(source.virtualSize, source.virtualSize);
  } finally {
    await out.close();
  }
}

// ---------------------------------------------------------------------------
// driver
// ---------------------------------------------------------------------------

/** The magic plus a known version is certain. */
function probeQcow2(input: ProbeInput): number {
  if (input.head.length < 8 || input.head.readUInt32BE(0) !== QCOW2_MAGIC) return 0;
  const version = input.head.readUInt32BE(4);
  return version === 2 || version === 3 ? 100 : 80;
}

export const qcow2Driver: FormatDriver = {
  name: "qcow2",
  description:
    "QEMU qcow2 v2/v3 (read: compressed, zero, subclusters, backing files; write: v3 uncompressed)",
  probe: probeQcow2,
  open: (path, options) => openQcow2(path, options),
  write: writeQcow2,
  check: (path) => checkQcow2(path),
  writerOptions: QCOW2_WRITER_OPTIONS,
};
