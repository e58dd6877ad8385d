import { OvfkitError } from "../errors.js";
import { DeflatePool } from "./deflate-pool.js";
import { type CheckFinding, type DiskReader, isAllZero, STREAM_CHUNK } from "./disk.js";
import type { WriteContext } from "./driver.js";
import { RandomAccessFile } from "./file.js";
import {
  COMPRESSION_DEFLATE,
  FLAG_COMPRESSED_GRAINS,
  FLAG_MARKERS,
  FLAG_VALID_NEWLINE_DETECTION,
  FOOTER_FROM_END,
  GD_AT_END,
  GRAIN_MARKER_BYTES,
  HEADER_SIZE,
  MARKER_EOS,
  MARKER_FOOTER,
  MARKER_GD,
  MARKER_GT,
  MARKER_SIZE,
  MARKER_TYPE,
  MARKER_VAL,
  MAX_CHECK_FINDINGS,
  metadataMarker,
  parseSparseHeader,
  SECTOR,
  type SparseHeader,
  serializeSparseHeader,
} from "./vmdk-sparse.js";

/**
 * streamOptimized VMDK in VMware's canonical layout (VMware "Virtual Disk
 * Format 5.0", section "Stream-Optimized Compressed Sparse Extents"), the
 * layout vSphere, the Content Library, ovftool and AWS import accept:
 *
 *   sector 0        header: version 3, flags = newline detection | compressed
 *                   grains | markers, gdOffset = GD_AT_END
 *   sector 1..      the embedded descriptor
 *   overHead..      grains in ascending LBA: { uint64 lba; uint32 size; zlib data }
 *                   padded to a sector; after the grains of each grain table,
 *                   a GT marker + that table (tables without grains are
 *                   omitted: their GD entry is 0)
 *                   GD marker + grain directory
 *   end - 1536      footer marker + footer (the header with the real gdOffset)
 *   end - 512       end-of-stream marker
 *
 * All-zero grains are never stored. Grains are deflated on worker threads
 * (`DeflatePool`) and written in order.
 */

/** Grain size ovfkit writes: 128 sectors = 64 KiB, what VMware and qemu use. */
export const DEFAULT_GRAIN_SECTORS = 128;
export const GTES_PER_GT = 512;
/** Measured on the 1 GiB bench image (docs/vmdk.md): level 1 is ~2x faster than 6 for ~6% more bytes. */
export const DEFAULT_COMPRESSION_LEVEL = 1;
/** Header flags of a canonical stream, as VMware and open-vmdk write them. */
export const STREAM_FLAGS = FLAG_VALID_NEWLINE_DETECTION | FLAG_COMPRESSED_GRAINS | FLAG_MARKERS;

/** One run of consecutive grains read from the source (the buffer is reused between iterations). */
export interface GrainRun {
  /** Index of the first grain. */
  grain: number;
  /** Whole grains; the part past the virtual size is zero-filled. */
  data: Buffer;
}

/**
 * Reads every grain that a `data` extent of the source touches, in
 * ascending order, in runs of up to 1 MiB. Grains outside data extents are
 * never read (they stay unallocated in the output).
 */
export async function* grainRuns(
  source: DiskReader,
  grainBytes: number,
  signal?: AbortSignal,
): AsyncGenerator<GrainRun> {
  const perRun = Math.max(1, Math.floor(STREAM_CHUNK / grainBytes));
  const buffer = Buffer.alloc(perRun * grainBytes);
  let next = 0; // first grain not yet emitted: extents sharing a grain emit it once
  for await (const extent of source.map()) {
    if (extent.kind !== "data") continue;
    const end = Math.ceil((extent.offset + extent.length) / grainBytes);
    for (let g = Math.max(next, Math.floor(extent.offset / grainBytes)); g < end; ) {
      signal?.throwIfAborted();
      const n = Math.min(perRun, end - g);
      const start = g * grainBytes;
      const length = Math.min(n * grainBytes, source.virtualSize - start);
      await source.read(start, length, buffer);
      buffer.fill(0, length, n * grainBytes);
      yield { grain: g, data: buffer.subarray(0, n * grainBytes) };
      g += n;
    }
    next = Math.max(next, end);
  }
}

/** Appends to a file through a large buffer (the stream is written strictly sequentially). */
class SequentialWriter {
  private readonly buffer = Buffer.allocUnsafe(4 * 1024 * 1024);
  private used = 0;
  private flushedTo = 0;

  constructor(private readonly file: RandomAccessFile) {}

  /** Bytes written so far (flushed or buffered). */
  get position(): number {
    return this.flushedTo + this.used;
  }

  async write(data: Uint8Array): Promise<void> {
    if (this.used + data.length > this.buffer.length) await this.flush();
    if (data.length > this.buffer.length) {
      await this.file.writeAt(this.flushedTo, data);
      this.flushedTo += data.length;
      return;
    }
    this.buffer.set(data, this.used);
    this.used += data.length;
  }

  async zeros(count: number): Promise<void> {
    if (count > 0) await this.write(Buffer.alloc(count));
  }

  /** Pads with zeros to the next sector boundary. */
  async padToSector(): Promise<void> {
    await this.zeros((SECTOR - (this.position % SECTOR)) % SECTOR);
  }

  async flush(): Promise<void> {
    if (this.used === 0) return;
    await this.file.writeAt(this.flushedTo, this.buffer.subarray(0, this.used));
    this.flushedTo += this.used;
    this.used = 0;
  }
}

export interface StreamWriteOptions {
  /** The descriptor text to embed. */
  descriptor: string;
  /** zlib level 0-9. */
  compressionLevel: number;
  grainSectors?: number;
}

/** Writes `source` as a canonical streamOptimized extent at `tempPath` (a `ctx.tx.file` path). */
export async function writeStreamOptimized(
  source: DiskReader,
  tempPath: string,
  options: StreamWriteOptions,
  ctx: WriteContext,
): Promise<void> {
  const grainSectors = options.grainSectors ?? DEFAULT_GRAIN_SECTORS;
  const grainBytes = grainSectors * SECTOR;
  const capacity = Math.ceil(source.virtualSize / SECTOR);
  const tables = Math.ceil(Math.ceil(capacity / grainSectors) / GTES_PER_GT);
  const descriptor = Buffer.from(options.descriptor, "utf8");
  const descriptorSectors = Math.max(1, Math.ceil(descriptor.length / SECTOR));
  // VMware puts the first grain at sector 128: header + descriptor rounded up to a grain.
  const overHead = Math.ceil((1 + descriptorSectors) / grainSectors) * grainSectors;
  const headerFields = {
    version: 3, // ESXi refuses older versions for streams ("sparse VMDK version too old")
    flags: STREAM_FLAGS,
    capacity,
    grainSize: grainSectors,
    descriptorOffset: 1,
    descriptorSize: descriptorSectors,
    numGTEsPerGT: GTES_PER_GT,
    rgdOffset: 0,
    overHead,
    compressAlgorithm: COMPRESSION_DEFLATE,
  };

  const file = await RandomAccessFile.create(tempPath);
  const out = new SequentialWriter(file);
  const pool = new DeflatePool({ threads: ctx.threads, level: options.compressionLevel });
  try {
    await out.write(serializeSparseHeader({ ...headerFields, gdOffset: GD_AT_END }));
    await out.write(descriptor);
    await out.zeros(overHead * SECTOR - out.position);

    const gd = new Uint32Array(tables);
    const gt = new Uint32Array(GTES_PER_GT);
    let currentTable = -1;
    let tableUsed = false;
    const flushTable = async () => {
      if (currentTable < 0 || !tableUsed) return;
      await out.write(metadataMarker(MARKER_GT, (GTES_PER_GT * 4) / SECTOR));
      gd[currentTable] = out.position / SECTOR;
      await out.write(Buffer.from(gt.buffer, gt.byteOffset, gt.byteLength));
      await out.padToSector();
      gt.fill(0);
      tableUsed = false;
    };

    const batches = nonZeroGrainBatches(source, grainBytes, ctx);
    const grainHead = Buffer.alloc(GRAIN_MARKER_BYTES);
    for await (const batch of pool.ordered(batches)) {
      for (let i = 0; i < batch.meta.grains.length; i++) {
        const g = batch.meta.grains[i]!;
        const compressed = batch.compressed[i]!;
        const table = Math.floor(g / GTES_PER_GT);
        if (table !== currentTable) {
          await flushTable();
          currentTable = table;
        }
        gt[g % GTES_PER_GT] = out.position / SECTOR;
        tableUsed = true;
        grainHead.writeBigUInt64LE(BigInt(g) * BigInt(grainSectors), MARKER_VAL);
        grainHead.writeUInt32LE(compressed.length, MARKER_SIZE);
        await out.write(grainHead);
        await out.write(compressed);
        await out.padToSector();
      }
      ctx.progress?.(batch.meta.end, source.virtualSize);
    }
    await flushTable();

    const gdBytes = Buffer.from(gd.buffer, gd.byteOffset, gd.byteLength);
    const gdSectors = Math.max(1, Math.ceil(gdBytes.length / SECTOR));
    await out.write(metadataMarker(MARKER_GD, gdSectors));
    const gdOffset = out.position / SECTOR;
    await out.write(gdBytes);
    await out.zeros(gdSectors * SECTOR - gdBytes.length);
    await out.write(metadataMarker(MARKER_FOOTER, 1));
    await out.write(serializeSparseHeader({ ...headerFields, gdOffset }));
    await out.write(metadataMarker(MARKER_EOS, 0));
    await out.flush();
    ctx.progress?.(source.virtualSize, source.virtualSize);
  } finally {
    await pool.close();
    await file.close();
  }
}

interface BatchMeta {
  grains: number[];
  /** Source offset reached after this batch (for progress). */
  end: number;
}

/** Grain runs with the all-zero grains dropped, as compression batches. */
async function* nonZeroGrainBatches(
  source: DiskReader,
  grainBytes: number,
  ctx: WriteContext,
): AsyncGenerator<{ meta: BatchMeta; items: Uint8Array[] }> {
  for await (const run of grainRuns(source, grainBytes, ctx.signal)) {
    const grains: number[] = [];
    const items: Uint8Array[] = [];
    for (let at = 0; at < run.data.length; at += grainBytes) {
      const grain = run.data.subarray(at, at + grainBytes);
      if (isAllZero(grain)) continue;
      grains.push(run.grain + at / grainBytes);
      items.push(grain);
    }
    const end = Math.min(source.virtualSize, run.grain * grainBytes + run.data.length);
    // The pool copies the items, so the run's buffer may be reused right after.
    if (items.length > 0) yield { meta: { grains, end }, items };
  }
}

// ---------------------------------------------------------------------------------------------
// Canonical-layout checker

const NONCANONICAL = "VMDK_STREAM_NONCANONICAL";

/**
 * Walks a streamOptimized extent marker by marker and reports every way it
 * departs from VMware's canonical layout (VMDK_STREAM_NONCANONICAL, with
 * the reason), plus corruption met on the way (overrunning grains, unknown
 * markers). qemu-img's output, which vSphere rejects, fails here.
 */
export async function checkStreamLayout(file: RandomAccessFile): Promise<CheckFinding[]> {
  const findings: CheckFinding[] = [];
  const path = file.path;
  const noncanonical = (message: string, offset?: number) =>
    findings.length < MAX_CHECK_FINDINGS &&
    findings.push({
      code: NONCANONICAL,
      severity: "warning",
      message,
      file: path,
      ...(offset === undefined ? {} : { offset }),
    });
  const corrupt = (code: string, message: string, offset: number) =>
    findings.length < MAX_CHECK_FINDINGS &&
    findings.push({ code, severity: "corruption", message, file: path, offset });

  const header: SparseHeader = parseSparseHeader(
    await file.readExact(0, HEADER_SIZE, "VMDK sparse header"),
    path,
  );
  if (header.version !== 3) noncanonical(`header version ${header.version} (ESXi requires 3 for streams)`, 4);
  if (!header.gdAtEnd) noncanonical("gdOffset in header is not GD_AT_END", 56);
  if ((header.flags & STREAM_FLAGS) !== STREAM_FLAGS) {
    noncanonical(
      `header flags 0x${header.flags.toString(16)} lack newline detection, compressed grains or markers`,
      8,
    );
  }
  if (header.rgdOffset !== 0) noncanonical("header has a redundant grain directory (rgdOffset is not 0)", 48);

  let pos = header.overHead * SECTOR;
  let lastLba = -1n;
  const seen = new GrainsSeen(header.capacity, header.grainSize, () => lastLba);
  let sawGd = false;
  let footerAt = -1;
  let sawEos = false;
  let grainsAfterTables = false;
  let tables = 0;
  const marker = Buffer.alloc(16);
  while (pos + 16 <= file.size) {
    await file.readExact(pos, 16, "marker", marker);
    const val = marker.readBigUInt64LE(MARKER_VAL);
    const size = marker.readUInt32LE(MARKER_SIZE);
    if (size !== 0) {
      if (pos + GRAIN_MARKER_BYTES + size > file.size) {
        corrupt(
          "VMDK_GRAIN_OVERRUN",
          `grain at LBA ${val} claims ${size} bytes, past the end of the file`,
          pos + 8,
        );
        break;
      }
      if (sawGd) grainsAfterTables = true;
      if (seen.add(val)) {
        corrupt("VMDK_DUPLICATE_LBA", `duplicate LBA ${val}: two grains hold the same sectors`, pos);
      } else if (val < lastLba) {
        noncanonical(`grains not in ascending LBA (${val} after ${lastLba})`, pos);
      }
      lastLba = val > lastLba ? val : lastLba;
      pos += Math.ceil((GRAIN_MARKER_BYTES + size) / SECTOR) * SECTOR;
      continue;
    }
    const type = marker.readUInt32LE(MARKER_TYPE);
    if (type === MARKER_EOS) {
      sawEos = true;
      if (pos + SECTOR !== file.size)
        noncanonical(`end-of-stream marker at ${pos} is not the last sector`, pos);
      break;
    }
    if (type === MARKER_GT) {
      tables++;
      if (sawGd) noncanonical("grain table after the grain directory", pos);
    } else if (type === MARKER_GD) {
      sawGd = true;
    } else if (type === MARKER_FOOTER) {
      footerAt = pos;
      if (!sawGd) noncanonical("footer before any grain directory marker", pos);
    } else {
      corrupt("VMDK_STREAM_BAD_MARKER", `unknown marker type ${type}`, pos);
      break;
    }
    if (val > BigInt(file.size)) {
      corrupt("VMDK_STREAM_BAD_MARKER", `marker claims ${val} sectors of metadata`, pos);
      break;
    }
    pos += SECTOR + Number(val) * SECTOR;
  }
  if (grainsAfterTables) noncanonical("grains after the grain directory", undefined);
  if (!sawGd) noncanonical("no grain directory marker (GD not at the end of the stream)");
  if (tables === 0 && lastLba >= 0n) noncanonical("no grain table markers");
  if (footerAt < 0) noncanonical("no footer");
  else if (footerAt !== file.size - FOOTER_FROM_END) {
    noncanonical(`footer marker at ${footerAt}, not ${FOOTER_FROM_END} bytes before the end`, footerAt);
  }
  if (!sawEos) noncanonical("end-of-stream marker missing", Math.max(0, Math.min(pos, file.size)));
  return findings;
}

/**
 * Which grain LBAs a walk has met: one bit per grain, for disks of up to
 * 2^27 grains (8 TiB of 64 KiB grains, a 16 MiB bitmap); beyond that only
 * a repeat of the previous LBA is caught.
 */
class GrainsSeen {
  private static readonly MAX_BITS = 2 ** 27;
  private readonly bits: Uint8Array | undefined;

  constructor(
    capacity: number,
    private readonly grainSize: number,
    private readonly last: () => bigint,
  ) {
    const grains = Math.ceil(capacity / grainSize);
    this.bits = grains <= GrainsSeen.MAX_BITS ? new Uint8Array(Math.ceil(grains / 8)) : undefined;
  }

  /** Records `lba`; true when it was met before. */
  add(lba: bigint): boolean {
    const grain = Number(lba / BigInt(this.grainSize));
    if (!this.bits || grain >= this.bits.length * 8) return lba === this.last();
    const mask = 1 << (grain & 7);
    const before = (this.bits[grain >> 3]! & mask) !== 0;
    this.bits[grain >> 3]! |= mask;
    return before;
  }
}

/** Throws VMDK_STREAM_NONCANONICAL with every reason when the file is not canonical (for callers that need a verdict). */
export async function assertCanonicalStream(path: string): Promise<void> {
  const file = await RandomAccessFile.open(path);
  try {
    const findings = await checkStreamLayout(file);
    if (findings.length > 0) {
      throw new OvfkitError(NONCANONICAL, findings.map((f) => f.message).join("; "), {
        file: path,
        ...(findings[0]?.offset === undefined ? {} : { offset: findings[0].offset }),
      });
    }
  } finally {
    await file.close();
  }
}
