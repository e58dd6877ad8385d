import { randomBytes } from "node:crypto";
import { rename } from "node:fs/promises";
import { basename, dirname, extname, join } from "node:path";
import { OvfkitError } from "../errors.js";
import {
  type CheckFinding,
  type CheckReport,
  checkReadRange,
  coalesceAsync,
  type DiskReader,
  dataChunks,
  type Extent,
  type FormatSpecificInfo,
  isAllZero,
  mapRange,
} from "./disk.js";
import type { FormatDriver, OpenOptions, ProbeInput, WriteContext, WriterOptions } from "./driver.js";
import { RandomAccessFile } from "./file.js";
import {
  CID_NO_PARENT,
  type ExtentLine,
  extentPath,
  formatDescriptor,
  looksLikeDescriptor,
  MAX_DESCRIPTOR_BYTES,
  parseDescriptor,
  type VmdkDescriptor,
} from "./vmdk-descriptor.js";
import {
  COWD_MAGIC,
  FLAG_COMPRESSED_GRAINS,
  FLAG_MARKERS,
  FLAG_REDUNDANT_GT,
  FLAG_VALID_NEWLINE_DETECTION,
  FLAG_ZEROED_GRAIN_GTE,
  findingOf,
  GTE_ZEROED,
  HEADER_SIZE,
  parseSparseHeader,
  SECTOR,
  SPARSE_MAGIC,
  SparseExtent,
  serializeSparseHeader,
} from "./vmdk-sparse.js";
import {
  checkStreamLayout,
  DEFAULT_COMPRESSION_LEVEL,
  DEFAULT_GRAIN_SECTORS,
  GTES_PER_GT,
  grainRuns,
  writeStreamOptimized,
} from "./vmdk-stream.js";

/**
 * VMware VMDK (VMware "Virtual Disk Format 5.0"): a text descriptor naming
 * one or more extents (sparse "KDMV" files, flat files, zero ranges), an
 * optional parent (parentFileNameHint, for snapshots/deltas).
 *
 * Read: monolithicSparse, streamOptimized, monolithicFlat,
 * twoGbMaxExtentSparse/Flat, vmfs (flat) and vmfsSparse descriptors, deltas
 * through their parent. Write: the five hosted subformats, like qemu-img.
 */

export type Subformat =
  | "monolithicSparse"
  | "streamOptimized"
  | "monolithicFlat"
  | "twoGbMaxExtentSparse"
  | "twoGbMaxExtentFlat";

const SUBFORMATS: readonly Subformat[] = [
  "monolithicSparse",
  "streamOptimized",
  "monolithicFlat",
  "twoGbMaxExtentSparse",
  "twoGbMaxExtentFlat",
];
const ADAPTER_TYPES = ["ide", "lsilogic", "buslogic", "legacyESX", "pvscsi"] as const;
type AdapterType = (typeof ADAPTER_TYPES)[number];

/** Split size of twoGbMaxExtent* outputs: 2 GiB, as qemu-img writes them (VMware's own tools use 2047 MiB). */
export const SPLIT_EXTENT_BYTES = 2 * 1024 * 1024 * 1024;
/** Parent chains deeper than this are refused (loops, hostile files). */
const MAX_PARENT_DEPTH = 16;
/** qemu-img's ddb.toolsVersion: "not installed / unknown". */
const DEFAULT_TOOLS_VERSION = "2147483647";
/** Sectors reserved for an embedded descriptor in sparse files (qemu-img reserves 20). */
const EMBEDDED_DESCRIPTOR_SECTORS = 20;

// ---------------------------------------------------------------------------------------------
// Reading

/** One extent of the virtual disk, placed at `start` bytes. */
type Segment =
  | { kind: "sparse"; start: number; length: number; extent: SparseExtent }
  | { kind: "flat"; start: number; length: number; file: RandomAccessFile; base: number }
  | { kind: "zero"; start: number; length: number };

class VmdkReader implements DiskReader {
  readonly format = "vmdk" as const;

  constructor(
    readonly path: string,
    readonly virtualSize: number,
    private readonly segments: Segment[],
    readonly descriptor: VmdkDescriptor,
    readonly files: string[],
    private readonly parent: DiskReader | undefined,
    private readonly openFiles: RandomAccessFile[],
  ) {}

  get backingFile(): string | undefined {
    return this.parent?.path;
  }

  get dirty(): boolean {
    return this.segments.some((s) => s.kind === "sparse" && s.extent.header.uncleanShutdown);
  }

  get geometry(): { cylinders: number; heads: number; sectors: number } | undefined {
    const c = Number(this.descriptor.ddb["ddb.geometry.cylinders"]);
    const h = Number(this.descriptor.ddb["ddb.geometry.heads"]);
    const s = Number(this.descriptor.ddb["ddb.geometry.sectors"]);
    return Number.isFinite(c) && Number.isFinite(h) && Number.isFinite(s) && h > 0
      ? { cylinders: c, heads: h, sectors: s }
      : undefined;
  }

  get formatSpecific(): FormatSpecificInfo {
    const d = this.descriptor;
    const sparse = this.segments.find((s) => s.kind === "sparse");
    return {
      "create-type": d.createType,
      cid: d.cid,
      "parent-cid": d.parentCid,
      ...(d.ddb["ddb.adapterType"] ? { "adapter-type": d.ddb["ddb.adapterType"] } : {}),
      ...(d.ddb["ddb.virtualHWVersion"] ? { "hw-version": d.ddb["ddb.virtualHWVersion"] } : {}),
      ...(sparse?.kind === "sparse"
        ? {
            "sparse-version": sparse.extent.header.version,
            compressed: sparse.extent.compressed,
            "cluster-size": sparse.extent.grainBytes,
          }
        : {}),
      extents: this.segments.map((s) => ({
        type: s.kind,
        "virtual-size": s.length,
        ...(s.kind === "sparse"
          ? { filename: s.extent.path }
          : s.kind === "flat"
            ? { filename: s.file.path }
            : {}),
      })),
    };
  }

  map(offset?: number, length?: number): AsyncIterable<Extent> {
    return coalesceAsync(this.rawMap(offset, length));
  }

  private async *rawMap(offset?: number, length?: number): AsyncGenerator<Extent> {
    const { start, end } = mapRange(this.virtualSize, offset, length);
    for (const seg of this.segments) {
      const from = Math.max(start, seg.start);
      const to = Math.min(end, seg.start + seg.length);
      if (from >= to) continue;
      if (seg.kind === "flat") yield { offset: from, length: to - from, kind: "data" };
      else if (seg.kind === "zero")
        yield { offset: from, length: to - from, kind: "zero" }; // ZERO extents read as zeros, never the parent
      else yield* this.sparseMap(seg, from, to);
    }
  }

  /** Unallocated here: the parent's map where there is a parent. */
  private async *unallocated(from: number, to: number): AsyncGenerator<Extent> {
    // a child larger than its parent: past the parent's end nothing is stored anywhere (as qemu reads it)
    const parentEnd = this.parent ? Math.max(from, Math.min(to, this.parent.virtualSize)) : from;
    if (this.parent && parentEnd > from) yield* this.parent.map(from, parentEnd - from);
    if (parentEnd < to) yield { offset: parentEnd, length: to - parentEnd, kind: "unallocated" };
  }

  private async *sparseMap(
    seg: Segment & { kind: "sparse" },
    from: number,
    to: number,
  ): AsyncGenerator<Extent> {
    const ext = seg.extent;
    const gb = ext.grainBytes;
    const tableBytes = gb * ext.gtCoverage;
    let pos = from;
    while (pos < to) {
      const local = pos - seg.start;
      const t = Math.floor(local / tableBytes);
      const gt = await ext.table(t);
      if (!gt) {
        const next = Math.min(to, seg.start + (t + 1) * tableBytes);
        yield* this.unallocated(pos, next);
        pos = next;
        continue;
      }
      const g = Math.floor(local / gb);
      const next = Math.min(to, seg.start + (g + 1) * gb);
      const state = ext.classify(gt[g % ext.gtCoverage] ?? 0);
      if (state.kind === "unallocated") yield* this.unallocated(pos, next);
      else yield { offset: pos, length: next - pos, kind: state.kind };
      pos = next;
    }
  }

  async read(offset: number, length: number, into?: Buffer): Promise<Buffer> {
    checkReadRange(this.path, this.virtualSize, offset, length);
    const out = into ? into.subarray(0, length) : Buffer.allocUnsafe(length);
    for (const seg of this.segments) {
      const from = Math.max(offset, seg.start);
      const to = Math.min(offset + length, seg.start + seg.length);
      if (from >= to) continue;
      const target = out.subarray(from - offset, to - offset);
      if (seg.kind === "flat") {
        const n = await seg.file.readAt(seg.base + (from - seg.start), to - from, target);
        target.fill(0, n); // a flat extent shorter than declared reads as zeros past its end
      } else if (seg.kind === "zero") {
        target.fill(0);
      } else {
        await this.readSparse(seg, from, target);
      }
    }
    return out;
  }

  private async readUnallocated(from: number, target: Buffer): Promise<void> {
    // past the end of a smaller parent: zeros (reading on gave READ_OUT_OF_RANGE from the parent)
    const inParent = this.parent ? Math.max(0, Math.min(target.length, this.parent.virtualSize - from)) : 0;
    if (this.parent && inParent > 0) await this.parent.read(from, inParent, target);
    target.fill(0, inParent);
  }

  private async readSparse(seg: Segment & { kind: "sparse" }, from: number, target: Buffer): Promise<void> {
    const ext = seg.extent;
    const gb = ext.grainBytes;
    const local = from - seg.start;
    const firstGrain = Math.floor(local / gb);
    const lastGrain = Math.floor((local + target.length - 1) / gb);
    const states = [];
    for (let g = firstGrain; g <= lastGrain; g++) states.push(await ext.grain(g));
    if (ext.compressed) {
      const wanted = [];
      for (let i = 0; i < states.length; i++) {
        const s = states[i]!;
        if (s.kind === "data") wanted.push({ g: firstGrain + i, sector: s.sector });
      }
      await ext.loadCompressed(wanted);
    }
    for (let g = firstGrain; g <= lastGrain; g++) {
      const grainStart = g * gb;
      const a = Math.max(local, grainStart);
      const b = Math.min(local + target.length, grainStart + gb);
      const slice = target.subarray(a - local, b - local);
      const state = states[g - firstGrain]!;
      if (state.kind === "data") await ext.readGrain(g, state.sector, a - grainStart, b - a, slice);
      else if (state.kind === "zero") slice.fill(0);
      else await this.readUnallocated(seg.start + a, slice);
    }
  }

  /** The sparse extents, for `check`. */
  sparseExtents(): SparseExtent[] {
    return this.segments.flatMap((s) => (s.kind === "sparse" ? [s.extent] : []));
  }

  /** Paths of the flat extent files, for `resize`. */
  flatFiles(): string[] {
    return this.segments.flatMap((s) => (s.kind === "flat" ? [s.file.path] : []));
  }

  async close(): Promise<void> {
    await this.parent?.close();
    for (const f of this.openFiles) await f.close();
  }
}

/** A descriptor with its location, and the sparse extent when it was embedded in one. */
interface LoadedDescriptor {
  descriptor: VmdkDescriptor;
  embeddedIn?: SparseExtent;
}

async function readEmbeddedDescriptor(extent: SparseExtent): Promise<VmdkDescriptor | undefined> {
  const { descriptorOffset, descriptorSize } = extent.header;
  if (descriptorOffset === 0 || descriptorSize === 0) return undefined;
  const bytes = Math.min(descriptorSize * SECTOR, MAX_DESCRIPTOR_BYTES);
  const raw = await extent.file.readExact(descriptorOffset * SECTOR, bytes, "embedded VMDK descriptor");
  const end = raw.indexOf(0);
  const text = raw.toString("latin1", 0, end < 0 ? raw.length : end);
  // Split extents (…-s001.vmdk) reserve the descriptor area but leave it empty.
  if (text.trim() === "") return undefined;
  return parseDescriptor(text, extent.path);
}

/** A bare sparse extent without a descriptor (opened directly): one SPARSE extent over itself. */
function syntheticDescriptor(extent: SparseExtent): VmdkDescriptor {
  return {
    version: 1,
    cid: 0,
    parentCid: CID_NO_PARENT,
    createType: extent.compressed ? "streamOptimized" : "monolithicSparse",
    extents: [
      {
        access: "RW",
        sectors: extent.header.capacity,
        type: "SPARSE",
        file: basename(extent.path),
        offset: 0,
        line: 0,
      },
    ],
    ddb: {},
    other: {},
  };
}

async function openVmdk(path: string, options: OpenOptions = {}): Promise<VmdkReader> {
  const openFiles: RandomAccessFile[] = [];
  let parent: DiskReader | undefined;
  try {
    const first = await RandomAccessFile.open(path);
    openFiles.push(first);
    const loaded = await loadDescriptor(first);
    const { descriptor } = loaded;
    const folder = dirname(path);
    const segments: Segment[] = [];
    const files = [path];
    let start = 0;
    if (loaded.embeddedIn) {
      // Embedded descriptor: the file itself is the one sparse extent (the extent line's name
      // is often stale, e.g. "generated-stream.vmdk"), its size is the header's capacity.
      segments.push({ kind: "sparse", start: 0, length: loaded.embeddedIn.bytes, extent: loaded.embeddedIn });
      start = loaded.embeddedIn.bytes;
    } else {
      for (const line of descriptor.extents) {
        const segment = await openExtent(line, start, folder, path, options, openFiles, files);
        segments.push(segment);
        start += segment.length;
      }
    }
    if (!Number.isSafeInteger(start)) {
      throw new OvfkitError("VMDK_BAD_HEADER", "virtual size out of range", { file: path });
    }
    if (descriptor.parentCid !== CID_NO_PARENT && descriptor.parentFileNameHint && !options.noBacking) {
      parent = await openParent(descriptor.parentFileNameHint, folder, path, options);
      files.push(...parent.files);
    }
    return new VmdkReader(path, start, segments, descriptor, files, parent, openFiles);
  } catch (error) {
    await parent?.close();
    for (const f of openFiles) await f.close().catch(() => {});
    throw error;
  }
}

async function loadDescriptor(file: RandomAccessFile): Promise<LoadedDescriptor> {
  const head = await file.readExact(0, Math.min(HEADER_SIZE, file.size), "VMDK file head");
  const magic = head.length >= 4 ? head.readUInt32LE(0) : 0;
  if (magic === SPARSE_MAGIC || magic === COWD_MAGIC) {
    const extent = await SparseExtent.open(file);
    const descriptor = (await readEmbeddedDescriptor(extent)) ?? syntheticDescriptor(extent);
    return { descriptor, embeddedIn: extent };
  }
  if (file.size > MAX_DESCRIPTOR_BYTES) {
    throw new OvfkitError(
      "VMDK_BAD_DESCRIPTOR",
      "neither a sparse extent nor a descriptor (too large for a descriptor)",
      {
        file: file.path,
        offset: 0,
      },
    );
  }
  const raw = await file.readExact(0, file.size, "VMDK descriptor");
  const nul = raw.indexOf(0);
  // qemu pads separate descriptors; text after a NUL is not part of it.
  return { descriptor: parseDescriptor(raw.toString("latin1", 0, nul < 0 ? raw.length : nul), file.path) };
}

async function openExtent(
  line: ExtentLine,
  start: number,
  folder: string,
  descriptorPath: string,
  options: OpenOptions,
  openFiles: RandomAccessFile[],
  files: string[],
): Promise<Segment> {
  const length = line.sectors * SECTOR;
  if (line.type === "ZERO") return { kind: "zero", start, length };
  if (line.type === "VMFSRDM" || line.type === "VMFSRAW") {
    throw new OvfkitError(
      "VMDK_UNSUPPORTED_EXTENT",
      `${line.type} extents map raw devices and are not read`,
      {
        file: descriptorPath,
        line: line.line,
        column: 1,
      },
    );
  }
  const path = extentPath(folder, line.file ?? "", options.allowExtentOutside ?? false, {
    file: descriptorPath,
    line: line.line,
  });
  const file = await RandomAccessFile.open(path);
  openFiles.push(file);
  files.push(path);
  if (line.type === "FLAT" || line.type === "VMFS")
    return { kind: "flat", start, length, file, base: line.offset * SECTOR };
  const extent = await SparseExtent.open(file);
  return { kind: "sparse", start, length: Math.min(length, extent.bytes), extent };
}

async function openParent(
  hint: string,
  folder: string,
  childPath: string,
  options: OpenOptions,
): Promise<DiskReader> {
  const depth = (options.depth ?? 0) + 1;
  if (depth > MAX_PARENT_DEPTH) {
    throw new OvfkitError("VMDK_PARENT_DEPTH", `parent chain deeper than ${MAX_PARENT_DEPTH} (loop?)`, {
      file: childPath,
    });
  }
  let parentPath: string;
  try {
    parentPath = extentPath(folder, hint, options.allowParentOutside ?? false, { file: childPath, line: 0 });
  } catch (error) {
    throw new OvfkitError(
      "PARENT_OUTSIDE",
      `parent "${hint}" is outside the image's folder (allow with allowParentOutside)`,
      {
        file: childPath,
        cause: error,
      },
    );
  }
  try {
    return await openVmdk(parentPath, { ...options, depth });
  } catch (error) {
    if (error instanceof OvfkitError && error.code === "FILE_NOT_FOUND") {
      throw new OvfkitError("VMDK_PARENT_MISSING", `parent "${hint}" not found`, {
        file: childPath,
        cause: error,
      });
    }
    throw error;
  }
}

// ---------------------------------------------------------------------------------------------
// Writing

interface VmdkWriteSettings {
  subformat: Subformat;
  adapterType: AdapterType;
  hwVersion: number;
  toolsVersion: string;
  compressionLevel: number;
  zeroedGrain: boolean;
}

export const VMDK_WRITER_OPTIONS: Readonly<Record<string, string>> = {
  subformat: `${SUBFORMATS.join("|")} (default monolithicSparse)`,
  adapter_type: `${ADAPTER_TYPES.join("|")} (default ide)`,
  hwversion: "ddb.virtualHWVersion (default 4)",
  compat6: "on: virtualHWVersion 6",
  toolsversion: `ddb.toolsVersion (default ${DEFAULT_TOOLS_VERSION})`,
  compression_level: `zlib level 0-9 for streamOptimized (default ${DEFAULT_COMPRESSION_LEVEL})`,
  zeroed_grain: "on: sparse header version 2 with zeroed-grain entries for zero ranges",
};

function onOff(key: string, value: string): boolean {
  if (value === "on" || value === "true") return true;
  if (value === "off" || value === "false") return false;
  throw new OvfkitError("BAD_OPTION", `${key} must be on or off, got "${value}"`);
}

function integerOption(key: string, value: string, min: number, max: number): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < min || n > max) {
    throw new OvfkitError("BAD_OPTION", `${key} must be an integer ${min}..${max}, got "${value}"`);
  }
  return n;
}

export function parseVmdkOptions(options: WriterOptions): VmdkWriteSettings {
  const settings: VmdkWriteSettings = {
    subformat: "monolithicSparse",
    adapterType: "ide",
    hwVersion: 4,
    toolsVersion: DEFAULT_TOOLS_VERSION,
    compressionLevel: DEFAULT_COMPRESSION_LEVEL,
    zeroedGrain: false,
  };
  let compat6 = false;
  let hwGiven = false;
  for (const [key, value] of Object.entries(options)) {
    switch (key) {
      case "subformat":
        if (!SUBFORMATS.includes(value as Subformat)) {
          throw new OvfkitError("BAD_OPTION", `unknown subformat "${value}" (${SUBFORMATS.join(", ")})`);
        }
        settings.subformat = value as Subformat;
        break;
      case "adapter_type":
        if (!ADAPTER_TYPES.includes(value as AdapterType)) {
          throw new OvfkitError(
            "BAD_OPTION",
            `unknown adapter_type "${value}" (${ADAPTER_TYPES.join(", ")})`,
          );
        }
        settings.adapterType = value as AdapterType;
        break;
      case "hwversion":
        settings.hwVersion = integerOption(key, value, 1, 99);
        hwGiven = true;
        break;
      case "compat6":
        compat6 = onOff(key, value);
        break;
      case "toolsversion":
        settings.toolsVersion = String(integerOption(key, value, 0, 0xffffffff));
        break;
      case "compression_level":
        settings.compressionLevel = integerOption(key, value, 0, 9);
        break;
      case "zeroed_grain":
        settings.zeroedGrain = onOff(key, value);
        break;
      default:
        throw new OvfkitError(
          "BAD_OPTION",
          `unknown vmdk option "${key}" (known: ${Object.keys(VMDK_WRITER_OPTIONS).join(", ")})`,
        );
    }
  }
  if (compat6) {
    // qemu-img refuses the combination too: two answers to one question.
    if (hwGiven && settings.hwVersion !== 6) {
      throw new OvfkitError("BAD_OPTION", "compat6=on and hwversion are mutually exclusive");
    }
    settings.hwVersion = 6;
  }
  if (settings.zeroedGrain && !settings.subformat.endsWith("Sparse")) {
    throw new OvfkitError(
      "BAD_OPTION",
      "zeroed_grain applies to monolithicSparse and twoGbMaxExtentSparse only",
    );
  }
  return settings;
}

/** The disk database qemu-img writes (geometry from its formula: 16 heads for IDE, 255 otherwise, 63 sectors). */
function diskDatabase(settings: VmdkWriteSettings, virtualSize: number): Record<string, string> {
  const heads = settings.adapterType === "ide" ? 16 : 255;
  const cylinders = Math.floor(virtualSize / (heads * 63 * SECTOR));
  return {
    "ddb.virtualHWVersion": String(settings.hwVersion),
    "ddb.geometry.cylinders": String(cylinders),
    "ddb.geometry.heads": String(heads),
    "ddb.geometry.sectors": "63",
    "ddb.adapterType": settings.adapterType,
    "ddb.toolsVersion": settings.toolsVersion,
  };
}

function newCid(): number {
  // 0xffffffff means "no parent"; a random CID avoids it like qemu does.
  let cid: number;
  do cid = randomBytes(4).readUInt32LE(0);
  while (cid === CID_NO_PARENT);
  return cid;
}

/** Extent file names qemu-img uses: name-flat.vmdk, name-s001.vmdk, name-f001.vmdk. */
function extentName(destPath: string, suffix: string): string {
  const base = basename(destPath);
  const stem = extname(base).toLowerCase() === ".vmdk" ? base.slice(0, -5) : base;
  return `${stem}-${suffix}.vmdk`;
}

/**
 * An uncompressed hosted sparse extent being written, laid out as qemu-img
 * does (spec "Hosted Sparse Extent Header"): header, [embedded descriptor],
 * redundant GD + GTs, GD + GTs, then grains from `overHead` in ascending
 * order. All tables are preallocated; each GT is written once, when the
 * writer moves past it, so memory holds one table.
 */
class SparseExtentWriter {
  private readonly gtSectors: number;
  private readonly gdSectors: number;
  private readonly rgdOffset: number;
  private readonly gdOffset: number;
  private readonly overHead: number;
  private readonly gt = new Uint32Array(GTES_PER_GT);
  private currentTable = -1;
  private tableDirty = false;
  private nextGrainSector: number;
  private readonly grainBytes: number;

  private constructor(
    private readonly file: RandomAccessFile,
    private readonly capacity: number,
    private readonly grainSectors: number,
    private readonly descriptor: Buffer | undefined,
    private readonly version: number,
    private readonly flags: number,
  ) {
    this.grainBytes = grainSectors * SECTOR;
    const tables = Math.ceil(Math.ceil(capacity / grainSectors) / GTES_PER_GT);
    this.gtSectors = (GTES_PER_GT * 4) / SECTOR;
    this.gdSectors = Math.max(1, Math.ceil((tables * 4) / SECTOR));
    const descriptorEnd = 1 + (descriptor ? EMBEDDED_DESCRIPTOR_SECTORS : 0);
    this.rgdOffset = descriptorEnd;
    this.gdOffset = this.rgdOffset + this.gdSectors + tables * this.gtSectors;
    const metadataEnd = this.gdOffset + this.gdSectors + tables * this.gtSectors;
    this.overHead = Math.ceil(metadataEnd / grainSectors) * grainSectors;
    this.nextGrainSector = this.overHead;
  }

  static async create(
    path: string,
    capacity: number,
    descriptor: Buffer | undefined,
    zeroedGrain: boolean,
  ): Promise<SparseExtentWriter> {
    if (descriptor && descriptor.length > EMBEDDED_DESCRIPTOR_SECTORS * SECTOR) {
      throw new OvfkitError(
        "VMDK_DESCRIPTOR_TOO_LARGE",
        "descriptor does not fit the embedded descriptor area",
      );
    }
    const flags =
      FLAG_VALID_NEWLINE_DETECTION | FLAG_REDUNDANT_GT | (zeroedGrain ? FLAG_ZEROED_GRAIN_GTE : 0);
    const writer = new SparseExtentWriter(
      await RandomAccessFile.create(path),
      capacity,
      DEFAULT_GRAIN_SECTORS,
      descriptor,
      zeroedGrain ? 2 : 1,
      flags,
    );
    await writer.writeMetadata();
    return writer;
  }

  private async writeMetadata(): Promise<void> {
    const header = serializeSparseHeader({
      version: this.version,
      flags: this.flags,
      capacity: this.capacity,
      grainSize: this.grainSectors,
      descriptorOffset: this.descriptor ? 1 : 0,
      descriptorSize: this.descriptor ? EMBEDDED_DESCRIPTOR_SECTORS : 0,
      numGTEsPerGT: GTES_PER_GT,
      rgdOffset: this.rgdOffset,
      gdOffset: this.gdOffset,
      overHead: this.overHead,
      compressAlgorithm: 0,
    });
    await this.file.writeAt(0, header);
    if (this.descriptor) await this.file.writeAt(SECTOR, this.descriptor);
    const tables = Math.ceil(Math.ceil(this.capacity / this.grainSectors) / GTES_PER_GT);
    // GD entries point at the preallocated tables right after each directory.
    for (const dir of [this.rgdOffset, this.gdOffset]) {
      const gd = Buffer.alloc(this.gdSectors * SECTOR);
      for (let t = 0; t < tables; t++) gd.writeUInt32LE(dir + this.gdSectors + t * this.gtSectors, t * 4);
      await this.file.writeAt(dir * SECTOR, gd);
    }
    await this.file.truncate(this.overHead * SECTOR);
  }

  private async switchTable(t: number): Promise<void> {
    if (t === this.currentTable) return;
    await this.flushTable();
    this.currentTable = t;
  }

  private async flushTable(): Promise<void> {
    if (this.currentTable < 0 || !this.tableDirty) return;
    const bytes = Buffer.from(this.gt.buffer, this.gt.byteOffset, this.gt.byteLength);
    const at = this.currentTable * this.gtSectors;
    await this.file.writeAt((this.rgdOffset + this.gdSectors + at) * SECTOR, bytes);
    await this.file.writeAt((this.gdOffset + this.gdSectors + at) * SECTOR, bytes);
    this.gt.fill(0);
    this.tableDirty = false;
  }

  /** Stores grain `g` (grains must arrive in ascending order). */
  async writeGrain(g: number, data: Buffer): Promise<void> {
    await this.switchTable(Math.floor(g / GTES_PER_GT));
    this.gt[g % GTES_PER_GT] = this.nextGrainSector;
    this.tableDirty = true;
    await this.file.writeAt(this.nextGrainSector * SECTOR, data.subarray(0, this.grainBytes));
    this.nextGrainSector += this.grainSectors;
  }

  /** Marks grain `g` as zeroed (GTE 1; only with zeroed_grain). */
  async zeroGrain(g: number): Promise<void> {
    await this.switchTable(Math.floor(g / GTES_PER_GT));
    this.gt[g % GTES_PER_GT] = GTE_ZEROED;
    this.tableDirty = true;
  }

  async finish(): Promise<void> {
    try {
      await this.flushTable();
    } finally {
      await this.file.close();
    }
  }

  async abandon(): Promise<void> {
    await this.file.close();
  }
}

/** An extent file being written: finished (completed and closed) or abandoned (closed). */
interface ExtentOutput {
  finish(): Promise<void>;
  abandon(): Promise<void>;
}

/**
 * Opens the extent files of an output one at a time, in order: writers
 * move through the disk in ascending offsets, so a split 8 TiB disk (4096
 * extents) never holds more than one extent file open.
 */
class SequentialExtents<W extends ExtentOutput> {
  private current: W | undefined;
  private index = -1;

  constructor(
    private readonly count: number,
    private readonly open: (index: number) => Promise<W>,
  ) {}

  /** The writer of extent `i`, finishing (and creating, even when empty) every extent before it. */
  async get(i: number): Promise<W> {
    if (i < this.index || i >= this.count)
      throw new OvfkitError("INTERNAL", `extent ${i} requested out of order`);
    while (this.index < i) {
      const previous = this.current;
      this.current = undefined;
      await previous?.finish();
      this.current = await this.open(this.index + 1);
      this.index++;
    }
    return this.current!;
  }

  /** Creates the remaining (empty) extents and finishes the last. */
  async finishAll(): Promise<void> {
    await this.get(this.count - 1);
    const last = this.current;
    this.current = undefined;
    await last?.finish();
  }

  async abandon(): Promise<void> {
    await this.current?.abandon().catch(() => {});
    this.current = undefined;
  }
}

/** A flat extent file: written where data is, sized to the extent at the end (holes elsewhere). */
class FlatExtentOutput implements ExtentOutput {
  constructor(
    readonly file: RandomAccessFile,
    private readonly bytes: number,
  ) {}

  async finish(): Promise<void> {
    try {
      await this.file.truncate(this.bytes);
    } finally {
      await this.file.close();
    }
  }

  async abandon(): Promise<void> {
    await this.file.close();
  }
}

/** Writes the grains of `source` into sparse extents of `extentGrains` grains each. */
async function writeSparseExtents(
  source: DiskReader,
  writers: SequentialExtents<SparseExtentWriter>,
  extentGrains: number,
  settings: VmdkWriteSettings,
  ctx: WriteContext,
): Promise<void> {
  const grainBytes = DEFAULT_GRAIN_SECTORS * SECTOR;
  // Zero ranges recorded by the source stay recorded (zeroed_grain): the whole grains inside
  // `zero` extents, as ranges of grains, marked in order between the data grains.
  const zeroRuns: { next: number; end: number }[] = [];
  if (settings.zeroedGrain) {
    for await (const e of source.map()) {
      const first = Math.ceil(e.offset / grainBytes);
      const end = Math.floor((e.offset + e.length) / grainBytes);
      if (e.kind === "zero" && end > first) zeroRuns.push({ next: first, end });
    }
  }
  const flushZerosBefore = async (limit: number) => {
    while (zeroRuns.length > 0 && zeroRuns[0]!.next < limit) {
      const run = zeroRuns[0]!;
      const g = run.next++;
      await (await writers.get(Math.floor(g / extentGrains))).zeroGrain(g % extentGrains);
      if (run.next >= run.end) zeroRuns.shift();
    }
  };
  for await (const run of grainRuns(source, grainBytes, ctx.signal)) {
    for (let at = 0; at < run.data.length; at += grainBytes) {
      const g = run.grain + at / grainBytes;
      await flushZerosBefore(g);
      const grain = run.data.subarray(at, at + grainBytes);
      if (isAllZero(grain)) continue;
      await (await writers.get(Math.floor(g / extentGrains))).writeGrain(g % extentGrains, grain);
    }
    ctx.progress?.(
      Math.min(source.virtualSize, run.grain * grainBytes + run.data.length),
      source.virtualSize,
    );
  }
  await flushZerosBefore(Number.MAX_SAFE_INTEGER);
  ctx.progress?.(source.virtualSize, source.virtualSize);
}

/** Writes `source` as flat extents of at most `extentBytes` bytes each (sparse files). */
async function writeFlatExtents(
  source: DiskReader,
  paths: string[],
  extentBytes: number,
  ctx: WriteContext,
): Promise<void> {
  const capacityBytes = Math.ceil(source.virtualSize / SECTOR) * SECTOR;
  const extents = new SequentialExtents(
    paths.length,
    async (i) =>
      new FlatExtentOutput(
        await RandomAccessFile.create(paths[i]!),
        Math.max(0, Math.min(extentBytes, capacityBytes - i * extentBytes)),
      ),
  );
  try {
    for await (const chunk of dataChunks(source, { skipZeroChunks: true, signal: ctx.signal })) {
      let offset = chunk.offset;
      let data = chunk.data;
      while (data.length > 0) {
        const index = Math.floor(offset / extentBytes);
        const inExtent = offset - index * extentBytes;
        const n = Math.min(data.length, extentBytes - inExtent);
        await (await extents.get(index)).file.writeAt(inExtent, data.subarray(0, n));
        offset += n;
        data = data.subarray(n);
      }
      ctx.progress?.(chunk.offset + chunk.data.length, source.virtualSize);
    }
    await extents.finishAll();
    ctx.progress?.(source.virtualSize, source.virtualSize);
  } catch (error) {
    await extents.abandon();
    throw error;
  }
}

async function writeVmdk(
  source: DiskReader,
  destPath: string,
  options: WriterOptions,
  ctx: WriteContext,
): Promise<void> {
  const settings = parseVmdkOptions(options);
  const capacity = Math.ceil(source.virtualSize / SECTOR);
  const ddb = diskDatabase(settings, source.virtualSize);
  const describe = (extents: Omit<ExtentLine, "line">[]) =>
    formatDescriptor({
      version: 1,
      cid: newCid(),
      parentCid: CID_NO_PARENT,
      createType: settings.subformat,
      extents,
      ddb,
      other: {},
    });
  const self = basename(destPath);

  switch (settings.subformat) {
    case "streamOptimized": {
      const descriptor = describe([
        { access: "RW", sectors: capacity, type: "SPARSE", file: self, offset: 0 },
      ]);
      await writeStreamOptimized(
        source,
        ctx.tx.file(destPath),
        { descriptor, compressionLevel: settings.compressionLevel },
        ctx,
      );
      return;
    }
    case "monolithicSparse":
    case "twoGbMaxExtentSparse": {
      const split = settings.subformat === "twoGbMaxExtentSparse";
      const extentSectors = split ? SPLIT_EXTENT_BYTES / SECTOR : Math.max(capacity, 1);
      const lines = split
        ? splitLines(capacity, extentSectors, (i) => extentName(destPath, `s${pad3(i + 1)}`), "SPARSE")
        : [{ access: "RW" as const, sectors: capacity, type: "SPARSE" as const, file: self, offset: 0 }];
      // monolithicSparse embeds its descriptor; split extents leave it to the descriptor file.
      const embedded = split ? undefined : Buffer.from(describe(lines));
      const writers = new SequentialExtents(lines.length, (i) =>
        SparseExtentWriter.create(
          ctx.tx.file(split ? join(dirname(destPath), lines[i]!.file!) : destPath),
          lines[i]!.sectors,
          embedded,
          settings.zeroedGrain,
        ),
      );
      try {
        const extentGrains = split ? extentSectors / DEFAULT_GRAIN_SECTORS : Number.MAX_SAFE_INTEGER;
        await writeSparseExtents(source, writers, extentGrains, settings, ctx);
        await writers.finishAll();
      } catch (error) {
        await writers.abandon();
        throw error;
      }
      if (split) await writeDescriptorFile(ctx.tx.file(destPath), describe(lines));
      return;
    }
    case "monolithicFlat":
    case "twoGbMaxExtentFlat": {
      const split = settings.subformat === "twoGbMaxExtentFlat";
      const extentSectors = split ? SPLIT_EXTENT_BYTES / SECTOR : Math.max(capacity, 1);
      const lines = splitLines(
        capacity,
        extentSectors,
        (i) => extentName(destPath, split ? `f${pad3(i + 1)}` : "flat"),
        "FLAT",
      );
      const paths = lines.map((l) => ctx.tx.file(join(dirname(destPath), l.file!)));
      await writeFlatExtents(source, paths, extentSectors * SECTOR, ctx);
      await writeDescriptorFile(ctx.tx.file(destPath), describe(lines));
      return;
    }
  }
}

function pad3(n: number): string {
  return String(n).padStart(3, "0");
}

function splitLines(
  capacity: number,
  extentSectors: number,
  name: (index: number) => string,
  type: "SPARSE" | "FLAT",
): Omit<ExtentLine, "line">[] {
  const lines: Omit<ExtentLine, "line">[] = [];
  for (let i = 0, left = capacity; left > 0 || i === 0; i++, left -= extentSectors) {
    lines.push({
      access: "RW",
      sectors: Math.max(0, Math.min(extentSectors, left)),
      type,
      file: name(i),
      offset: 0,
    });
    if (left <= extentSectors) break;
  }
  return lines;
}

async function writeDescriptorFile(tempPath: string, text: string): Promise<void> {
  const file = await RandomAccessFile.create(tempPath);
  try {
    await file.writeAt(0, Buffer.from(text, "utf8"));
  } finally {
    await file.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Check, probe, resize

async function checkVmdk(path: string, options: OpenOptions = {}): Promise<CheckReport> {
  const findings: CheckFinding[] = [];
  let reader: VmdkReader | undefined;
  try {
    reader = await openVmdk(path, { ...options, noBacking: true });
  } catch (error) {
    if (!(error instanceof OvfkitError) || !error.code.startsWith("VMDK_")) throw error;
    findings.push(findingOf(error, path));
    // A stream that cannot be opened (e.g. truncated, no footer) still gets its layout walked.
    await walkStreamIfSparse(path, findings);
    return { filename: path, format: "vmdk", findings };
  }
  try {
    let allocated = 0;
    let total = 0;
    for (const seg of reader.sparseExtents()) {
      findings.push(...(await seg.check()));
      total += seg.numGrains;
      if ((seg.header.flags & FLAG_COMPRESSED_GRAINS) !== 0 && (seg.header.flags & FLAG_MARKERS) !== 0) {
        findings.push(...(await checkStreamLayout(seg.file)));
      } else if (reader.descriptor.createType.toLowerCase() === "streamoptimized") {
        findings.push(...(await checkStreamLayout(seg.file)));
      }
      for (let t = 0; t < seg.numTables; t++) {
        const gt = await seg.table(t).catch(() => undefined);
        if (gt) for (const e of gt) if (e > GTE_ZEROED) allocated++;
      }
    }
    return { filename: path, format: "vmdk", findings, allocatedClusters: allocated, totalClusters: total };
  } finally {
    await reader.close();
  }
}

async function walkStreamIfSparse(path: string, findings: CheckFinding[]): Promise<void> {
  const file = await RandomAccessFile.open(path);
  try {
    if (file.size < HEADER_SIZE) return;
    const head = await file.readExact(0, HEADER_SIZE, "VMDK sparse header");
    if (head.readUInt32LE(0) !== SPARSE_MAGIC) return;
    const header = parseSparseHeader(head, path);
    if ((header.flags & FLAG_COMPRESSED_GRAINS) === 0) return;
    findings.push(...(await checkStreamLayout(file)));
  } catch (error) {
    findings.push(findingOf(error, path));
  } finally {
    await file.close();
  }
}

function probeVmdk(input: ProbeInput): number {
  if (input.head.length >= 4) {
    const magic = input.head.readUInt32LE(0);
    if (magic === SPARSE_MAGIC) return 100;
    if (magic === COWD_MAGIC) return 50;
  }
  return looksLikeDescriptor(input.head) ? 90 : 0;
}

/**
 * Grows a monolithicFlat disk in place: the flat extent is extended (a
 * hole) and the descriptor's extent line rewritten. Sparse subformats are
 * not resized (their grain directory is sized by the capacity; qemu-img
 * refuses too).
 */
async function resizeVmdk(path: string, newSize: number, options: { shrink?: boolean }): Promise<void> {
  if (newSize % SECTOR !== 0) {
    throw new OvfkitError("BAD_SIZE", `VMDK sizes are whole sectors (${SECTOR} bytes)`, { file: path });
  }
  const reader = await openVmdk(path, { noBacking: true });
  const { descriptor, virtualSize } = reader;
  const segments = reader.flatFiles();
  await reader.close();
  if (
    descriptor.createType !== "monolithicFlat" ||
    segments.length !== 1 ||
    descriptor.extents.length !== 1
  ) {
    throw new OvfkitError(
      "UNSUPPORTED_RESIZE",
      `resizing ${descriptor.createType} VMDKs is not supported (monolithicFlat only)`,
      { file: path },
    );
  }
  if (newSize < virtualSize || options.shrink) {
    throw new OvfkitError("SHRINK_REFUSED", "VMDK disks are only grown", { file: path });
  }
  const extent = descriptor.extents[0]!;
  const flatPath = segments[0]!;
  const flat = await RandomAccessFile.openForUpdate(flatPath);
  try {
    await flat.truncate(extent.offset * SECTOR + newSize);
  } finally {
    await flat.close();
  }
  const text = formatDescriptor({
    ...descriptor,
    extents: [{ ...extent, sectors: newSize / SECTOR }],
  });
  // The descriptor is replaced by rename, so a crash leaves the old or the new one, never half.
  const temp = join(dirname(path), `.${basename(path)}.ovfkit-${randomBytes(4).toString("hex")}.tmp`);
  await writeDescriptorFile(temp, text);
  await rename(temp, path);
}

export const vmdkDriver: FormatDriver = {
  name: "vmdk",
  description: "VMware VMDK (monolithicSparse, streamOptimized, monolithicFlat, twoGbMaxExtentSparse/Flat)",
  probe: probeVmdk,
  open: openVmdk,
  write: writeVmdk,
  check: checkVmdk,
  resize: resizeVmdk,
  writerOptions: VMDK_WRITER_OPTIONS,
};
