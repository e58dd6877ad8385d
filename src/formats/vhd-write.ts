import { randomBytes } from "node:crypto";
import { statSync } from "node:fs";
import { basename, dirname, isAbsolute, relative, resolve } from "node:path";
import { OvfkitError } from "../errors.js";
import { parseSize } from "../util/size.js";
import { type DiskReader, dataChunks, STREAM_CHUNK } from "./disk.js";
import type { WriteContext, WriterOptions } from "./driver.js";
import { RandomAccessFile } from "./file.js";
import { openVhd } from "./vhd-chain.js";
import {
  BAT_UNUSED,
  bitmapBytes,
  CREATOR_HOST_OS_WINDOWS,
  chsForSectors,
  chsRoundUp,
  DEFAULT_BLOCK_SIZE,
  DiskType,
  FEATURES_RESERVED,
  FILE_FORMAT_VERSION,
  FOOTER_SIZE,
  type Footer,
  type Geometry,
  geometryBytes,
  HEADER_SIZE,
  HEADER_VERSION,
  isMaxGeometry,
  MAX_GEOMETRY,
  OVFKIT_CREATOR_APP,
  OVFKIT_CREATOR_VERSION,
  type ParentLocator,
  PlatformCode,
  SECTOR,
  serializeFooter,
  serializeHeader,
  vhdTimestamp,
} from "./vhd-format.js";
import type { VhdReader } from "./vhd-reader.js";

const MIB = 1024 * 1024;
const GIB = 1024 * MIB;
/** Largest dynamic VHD: BAT entries are 32-bit sector numbers; qemu and Windows stop at 2040 GiB. */
export const MAX_DYNAMIC_SIZE = 2040 * GIB;
/** Largest fixed VHD we write: Azure's limit for page-blob disks. */
export const MAX_FIXED_SIZE = 4 * 1024 * GIB;
export const MIN_WRITE_BLOCK_SIZE = 512 * 1024;
export const MAX_WRITE_BLOCK_SIZE = 256 * MIB;

export const VHD_WRITER_OPTIONS: Readonly<Record<string, string>> = {
  subformat: "dynamic (default) or fixed",
  block_size: "dynamic block size, a power of two from 512K to 256M (default 2M)",
  force_size:
    "on: virtual size exactly the source's (sector-rounded); off (default): rounded up to a CHS geometry like qemu",
  align_mib: "on: fixed VHD for Azure, virtual size rounded up to a whole MiB (at most 4 TiB)",
  parent: "make a differencing child of this VHD (path relative to the new image's folder)",
};

export interface VhdWritePlan {
  type: DiskType;
  size: number;
  geometry: Geometry;
  blockSize: number;
  parentPath?: string;
}

function onOff(key: string, value: string | undefined): boolean {
  if (value === undefined) return false;
  const v = value.toLowerCase();
  if (v === "on" || v === "true" || v === "yes") return true;
  if (v === "off" || v === "false" || v === "no") return false;
  throw new OvfkitError("BAD_OPTION", `${key} must be on or off (got "${value}")`);
}

/**
 * Virtual size and geometry of a new image.
 * - force_size=off: the smallest CHS geometry covering the request (qemu's
 *   rule), so CHS-sized and current-size readers agree on the size;
 * - force_size=on: exactly the request; the geometry is the spec's when it
 *   describes that size exactly, else the CHS maximum, which every reader
 *   (qemu included) takes to mean "use the current size".
 */
export function planSize(requested: number, forceSize: boolean): { size: number; geometry: Geometry } {
  const sectors = Math.ceil(requested / SECTOR);
  if (!forceSize) {
    const geometry = chsRoundUp(sectors);
    return { size: isMaxGeometry(geometry) ? sectors * SECTOR : geometryBytes(geometry), geometry };
  }
  const geometry = chsForSectors(sectors);
  return {
    size: sectors * SECTOR,
    geometry: geometryBytes(geometry) === sectors * SECTOR ? geometry : { ...MAX_GEOMETRY },
  };
}

/** Validates `-o` options and decides the image's shape. */
export function planVhd(sourceSize: number, options: WriterOptions): VhdWritePlan {
  for (const key of Object.keys(options)) {
    if (!(key in VHD_WRITER_OPTIONS)) {
      throw new OvfkitError(
        "BAD_OPTION",
        `vpc has no option "${key}" (known: ${Object.keys(VHD_WRITER_OPTIONS).join(", ")})`,
      );
    }
  }
  const alignMib = onOff("align_mib", options.align_mib);
  const subformat = options.subformat ?? (alignMib ? "fixed" : "dynamic");
  if (subformat !== "dynamic" && subformat !== "fixed") {
    throw new OvfkitError("BAD_OPTION", `subformat must be dynamic or fixed (got "${subformat}")`);
  }
  if (alignMib && subformat !== "fixed")
    throw new OvfkitError("BAD_OPTION", "align_mib=on makes a fixed VHD (Azure)");
  if (options.parent !== undefined && subformat === "fixed") {
    throw new OvfkitError("BAD_OPTION", "a differencing VHD (parent=) is dynamic, not fixed");
  }
  let blockSize = DEFAULT_BLOCK_SIZE;
  if (options.block_size !== undefined) {
    blockSize = parseSize(options.block_size);
    if (
      blockSize < MIN_WRITE_BLOCK_SIZE ||
      blockSize > MAX_WRITE_BLOCK_SIZE ||
      (blockSize & (blockSize - 1)) !== 0
    ) {
      throw new OvfkitError(
        "BAD_OPTION",
        `block_size must be a power of two from 512K to 256M (got ${options.block_size})`,
      );
    }
    if (subformat === "fixed") throw new OvfkitError("BAD_OPTION", "block_size applies to dynamic VHDs only");
  }
  const forceSize = alignMib || onOff("force_size", options.force_size);
  const requested = alignMib ? Math.ceil(sourceSize / MIB) * MIB : sourceSize;
  const { size, geometry } = planSize(requested, forceSize);
  const limit = subformat === "fixed" ? MAX_FIXED_SIZE : MAX_DYNAMIC_SIZE;
  if (size > limit) {
    throw new OvfkitError(
      "VHD_TOO_LARGE",
      `a ${subformat} VHD holds at most ${limit / GIB} GiB (asked for ${size} bytes)`,
    );
  }
  const type =
    options.parent !== undefined
      ? DiskType.Differencing
      : subformat === "fixed"
        ? DiskType.Fixed
        : DiskType.Dynamic;
  return { type, size, geometry, blockSize, parentPath: options.parent };
}

function newFooter(plan: VhdWritePlan, dataOffset: number | undefined): Footer {
  const uniqueId = randomBytes(16);
  uniqueId[6] = (uniqueId[6]! & 0x0f) | 0x40; // RFC 4122 version 4
  uniqueId[8] = (uniqueId[8]! & 0x3f) | 0x80;
  return {
    features: FEATURES_RESERVED,
    version: FILE_FORMAT_VERSION,
    dataOffset,
    timestamp: vhdTimestamp(),
    creatorApp: OVFKIT_CREATOR_APP,
    creatorVersion: OVFKIT_CREATOR_VERSION,
    creatorHostOs: CREATOR_HOST_OS_WINDOWS,
    originalSize: plan.size,
    currentSize: plan.size,
    geometry: plan.geometry,
    diskType: plan.type,
    checksum: 0,
    uniqueId,
    savedState: false,
  };
}

async function writeFixed(
  source: DiskReader,
  out: RandomAccessFile,
  plan: VhdWritePlan,
  ctx: WriteContext,
): Promise<void> {
  for await (const chunk of dataChunks(source, { skipZeroChunks: true, signal: ctx.signal })) {
    await out.writeAt(chunk.offset, chunk.data);
    ctx.progress?.(chunk.offset + chunk.data.length, source.virtualSize);
  }
  await out.truncate(plan.size);
  await out.writeAt(plan.size, serializeFooter(newFooter(plan, undefined)));
}

/**
 * Appends blocks (bitmap + data) to a dynamic VHD as data arrives in
 * ascending order; keeps only the BAT and the current block's bitmap in
 * memory.
 */
export class BlockAppender {
  readonly bat: Uint32Array;
  readonly bitmapSize: number;
  private current: { index: number; start: number; bitmap: Buffer } | undefined;

  constructor(
    private readonly out: RandomAccessFile,
    private readonly blockSize: number,
    entries: number,
    public nextFree: number,
  ) {
    this.bat = new Uint32Array(entries).fill(BAT_UNUSED);
    this.bitmapSize = bitmapBytes(blockSize);
  }

  /** Stores `data` at virtual `offset`, marking the sectors it touches in the block bitmaps. */
  async write(offset: number, data: Buffer): Promise<void> {
    let done = 0;
    while (done < data.length) {
      const pos = offset + done;
      const index = Math.floor(pos / this.blockSize);
      const inBlock = pos - index * this.blockSize;
      const n = Math.min(data.length - done, this.blockSize - inBlock);
      const block = await this.select(index);
      await this.out.writeAt(block.start + this.bitmapSize + inBlock, data.subarray(done, done + n));
      for (let bit = Math.floor(inBlock / SECTOR); bit < Math.ceil((inBlock + n) / SECTOR); bit++) {
        block.bitmap[bit >> 3]! |= 0x80 >> (bit & 7);
      }
      done += n;
    }
  }

  private async select(index: number): Promise<{ index: number; start: number; bitmap: Buffer }> {
    if (this.current?.index === index) return this.current;
    await this.flush();
    const entry = this.bat[index]!;
    if (entry !== BAT_UNUSED) {
      const start = entry * SECTOR;
      const bitmap = Buffer.alloc(this.bitmapSize);
      await this.out.readAt(start, this.bitmapSize, bitmap);
      this.current = { index, start, bitmap };
    } else {
      const start = this.nextFree;
      this.bat[index] = start / SECTOR;
      this.nextFree += this.bitmapSize + this.blockSize;
      this.current = { index, start, bitmap: Buffer.alloc(this.bitmapSize) };
    }
    return this.current;
  }

  private async flush(): Promise<void> {
    if (this.current) await this.out.writeAt(this.current.start, this.current.bitmap);
    this.current = undefined;
  }

  /** Writes the last bitmap and sizes the file to hold every whole block. */
  async finish(): Promise<void> {
    await this.flush();
    if (this.out.size < this.nextFree) await this.out.truncate(this.nextFree);
  }

  /** The BAT as the file stores it: big-endian sector numbers padded with "unused" to a whole sector. */
  serializeBat(): Buffer {
    const buf = Buffer.alloc(Math.ceil((this.bat.length * 4) / SECTOR) * SECTOR, 0xff);
    for (let i = 0; i < this.bat.length; i++) buf.writeUInt32BE(this.bat[i]!, i * 4);
    return buf;
  }
}

/** The parent side of a differencing child: where it is and how the child finds it. */
interface ParentInfo {
  reader: VhdReader;
  name: string;
  locators: { code: number; data: Buffer }[];
  timestamp: number;
}

async function openParentForChild(destPath: string, parentOption: string): Promise<ParentInfo> {
  const childDir = dirname(resolve(destPath));
  const parentPath = isAbsolute(parentOption) ? parentOption : resolve(childDir, parentOption);
  const reader = await openVhd(parentPath, { allowParentOutside: true });
  const rel = relative(childDir, resolve(parentPath)).split("/").join("\\");
  const relativeText = rel.startsWith("..") ? rel : `.\\${rel}`;
  const mtime = statSync(parentPath).mtime;
  return {
    reader,
    name: basename(parentPath),
    // Windows locators: relative (W2ru) first, then absolute (W2ku), both UTF-16LE.
    locators: [
      { code: PlatformCode.W2ru, data: Buffer.from(relativeText, "utf16le") },
      { code: PlatformCode.W2ku, data: Buffer.from(resolve(parentPath), "utf16le") },
    ],
    timestamp: vhdTimestamp(mtime),
  };
}

/**
 * Writes the sectors where `source` differs from `parent` (differencing
 * child): source ranges that are unallocated fall through to the parent and
 * are not stored; data and known-zero ranges are compared sector by sector.
 */
async function writeDifferences(
  source: DiskReader,
  parent: DiskReader,
  blocks: BlockAppender,
  ctx: WriteContext,
): Promise<void> {
  const a = Buffer.allocUnsafe(STREAM_CHUNK);
  const b = Buffer.allocUnsafe(STREAM_CHUNK);
  for await (const extent of source.map()) {
    if (extent.kind === "unallocated") continue;
    const end = extent.offset + extent.length;
    for (let offset = extent.offset; offset < end; offset += STREAM_CHUNK) {
      ctx.signal?.throwIfAborted();
      const n = Math.min(STREAM_CHUNK, end - offset);
      const mine = await source.read(offset, n, a);
      const theirs = b.subarray(0, n).fill(0);
      const inParent = Math.max(0, Math.min(n, parent.virtualSize - offset));
      if (inParent > 0) await parent.read(offset, inParent, theirs);
      let runStart = -1;
      for (let s = 0; s <= n; s += SECTOR) {
        const differs =
          s < n &&
          Buffer.compare(mine.subarray(s, s + SECTOR), theirs.subarray(s, Math.min(n, s + SECTOR))) !== 0;
        if (differs && runStart < 0) runStart = s;
        if (!differs && runStart >= 0) {
          await blocks.write(offset + runStart, mine.subarray(runStart, Math.min(s, n)));
          runStart = -1;
        }
      }
      ctx.progress?.(offset + n, source.virtualSize);
    }
  }
}

async function writeDynamic(
  source: DiskReader,
  destPath: string,
  out: RandomAccessFile,
  plan: VhdWritePlan,
  ctx: WriteContext,
): Promise<void> {
  const parent =
    plan.parentPath !== undefined ? await openParentForChild(destPath, plan.parentPath) : undefined;
  try {
    if (parent) {
      if (source.virtualSize !== parent.reader.virtualSize) {
        throw new OvfkitError(
          "BAD_OPTION",
          `a differencing VHD has its parent's size (${parent.reader.virtualSize} bytes), not ${source.virtualSize}`,
        );
      }
      const { geometry } = planSize(parent.reader.virtualSize, true);
      plan = { ...plan, size: parent.reader.virtualSize, geometry };
    }
    const entries = Math.ceil(plan.size / plan.blockSize);
    const headerOffset = FOOTER_SIZE;
    const tableOffset = headerOffset + HEADER_SIZE;
    const batBytes = Math.ceil((entries * 4) / SECTOR) * SECTOR;
    let next = tableOffset + batBytes;
    const locators: ParentLocator[] = [];
    for (const [index, l] of (parent?.locators ?? []).entries()) {
      const space = Math.ceil(l.data.length / SECTOR) * SECTOR;
      locators.push({
        index,
        platformCode: l.code,
        dataSpace: space / SECTOR,
        dataLength: l.data.length,
        dataOffset: next,
      });
      await out.writeAt(next, Buffer.concat([l.data, Buffer.alloc(space - l.data.length)]));
      next += space;
    }
    const footer = serializeFooter(newFooter(plan, headerOffset));
    await out.writeAt(0, footer);
    await out.writeAt(
      headerOffset,
      serializeHeader({
        tableOffset,
        version: HEADER_VERSION,
        maxTableEntries: entries,
        blockSize: plan.blockSize,
        parentUniqueId: parent ? parent.reader.layout.footer.uniqueId : Buffer.alloc(16),
        parentTimestamp: parent?.timestamp ?? 0,
        parentName: parent?.name ?? "",
        locators,
      }),
    );
    const blocks = new BlockAppender(out, plan.blockSize, entries, next);
    if (parent) {
      await writeDifferences(source, parent.reader, blocks, ctx);
    } else {
      for await (const chunk of dataChunks(source, { skipZeroChunks: true, signal: ctx.signal })) {
        await blocks.write(chunk.offset, chunk.data);
        ctx.progress?.(chunk.offset + chunk.data.length, source.virtualSize);
      }
    }
    await blocks.finish();
    await out.writeAt(tableOffset, blocks.serializeBat());
    await out.writeAt(blocks.nextFree, footer);
  } finally {
    await parent?.reader.close();
  }
}

/** `write` of the vpc driver: fixed, dynamic or differencing VHD, streamed. */
export async function writeVhd(
  source: DiskReader,
  destPath: string,
  options: WriterOptions,
  ctx: WriteContext,
): Promise<void> {
  const plan = planVhd(source.virtualSize, options);
  const out = await RandomAccessFile.create(ctx.tx.file(destPath));
  try {
    if (plan.type === DiskType.Fixed) await writeFixed(source, out, plan, ctx);
    else await writeDynamic(source, destPath, out, plan, ctx);
    ctx.progress?.(source.virtualSize, source.virtualSize);
  } finally {
    await out.close();
  }
}
