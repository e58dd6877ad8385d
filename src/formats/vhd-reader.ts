import { OvfkitError } from "../errors.js";
import {
  checkReadRange,
  coalesceAsync,
  type DiskReader,
  type Extent,
  type FormatSpecificInfo,
  mapRange,
} from "./disk.js";
import type { RandomAccessFile } from "./file.js";
import {
  BAT_UNUSED,
  bitmapBytes,
  DiskType,
  type DynamicHeader,
  diskTypeName,
  FOOTER_CHECKSUM_OFFSET,
  FOOTER_SIZE,
  FOOTER_SIZE_OLD_VPC,
  type Footer,
  footerChecksumOk,
  formatUuid,
  HEADER_CHECKSUM_OFFSET,
  HEADER_SIZE,
  hasFooterCookie,
  hasHeaderCookie,
  headerChecksumOk,
  locatorSpaceBytes,
  parseFooter,
  parseHeader,
  printableCreatorApp,
  SECTOR,
  sizeSourceOf,
  virtualSizeOf,
} from "./vhd-format.js";

/**
 * Reading a VHD: finding the footer (or its copy), the dynamic header and
 * the BAT, validating where blocks point, and the `DiskReader` that maps and
 * reads the disk sector-run by sector-run, honouring the block bitmaps.
 * Parent chains are opened by vhd-chain.ts.
 */

/** Block sizes we accept when reading: powers of two, 512 B .. 256 MiB. */
export const MIN_BLOCK_SIZE = SECTOR;
export const MAX_BLOCK_SIZE = 256 * 1024 * 1024;
/**
 * Largest BAT loaded: 32 MiB = 8 Mi blocks. Real VHDs need at most 16 MiB
 * (2040 GiB in 512 KiB blocks, the smallest any writer uses); a bigger
 * claim (tiny blocks, huge size, in a large sparse file) would make the
 * reader allocate gigabytes.
 */
export const MAX_BAT_BYTES = 32 * 1024 * 1024;
/** `check` lists at most this many BAT problems (a hostile BAT can break millions of entries). */
export const MAX_BAT_PROBLEMS = 1000;

export interface FooterLocation {
  footer: Footer;
  /** Where the footer that is used sits. */
  offset: number;
  /** 512, or 511 for old Virtual PC fixed disks. */
  size: number;
  /** End of the image's payload: the end footer's offset (or the file size when only the head copy was usable). */
  payloadEnd: number;
  /** True when the end footer was unusable and the copy at offset 0 was used. */
  fromHeadCopy: boolean;
}

/**
 * Finds the footer: at the end (512 bytes, or 511 for old Virtual PC fixed
 * disks), else the copy at offset 0 that dynamic disks carry (spec: "Hard
 * Disk Footer Format": "a copy of the hard disk footer is stored at the
 * beginning of the file for redundancy").
 */
export async function locateFooter(file: RandomAccessFile): Promise<FooterLocation> {
  const path = file.path;
  if (file.size < FOOTER_SIZE_OLD_VPC) {
    throw new OvfkitError("VHD_NO_FOOTER", `${file.size} bytes is too small for a VHD`, { file: path });
  }
  const tailOffset = file.size - FOOTER_SIZE;
  const tail =
    file.size >= FOOTER_SIZE ? await file.readExact(tailOffset, FOOTER_SIZE, "VHD footer") : undefined;
  if (tail && hasFooterCookie(tail) && footerChecksumOk(tail)) {
    return {
      footer: parseFooter(tail, path),
      offset: tailOffset,
      size: FOOTER_SIZE,
      payloadEnd: tailOffset,
      fromHeadCopy: false,
    };
  }
  const oldOffset = file.size - FOOTER_SIZE_OLD_VPC;
  const old = await file.readExact(oldOffset, FOOTER_SIZE_OLD_VPC, "VHD footer");
  if (hasFooterCookie(old) && footerChecksumOk(old)) {
    return {
      footer: parseFooter(old, path),
      offset: oldOffset,
      size: FOOTER_SIZE_OLD_VPC,
      payloadEnd: oldOffset,
      fromHeadCopy: false,
    };
  }
  const head = file.size >= FOOTER_SIZE ? await file.readExact(0, FOOTER_SIZE, "VHD footer copy") : undefined;
  if (head && hasFooterCookie(head) && footerChecksumOk(head)) {
    const footer = parseFooter(head, path);
    if (footer.diskType !== DiskType.Fixed) {
      return { footer, offset: 0, size: FOOTER_SIZE, payloadEnd: file.size, fromHeadCopy: true };
    }
  }
  if (tail && hasFooterCookie(tail)) {
    throw new OvfkitError("VHD_BAD_CHECKSUM", "the VHD footer checksum does not match its content", {
      file: path,
      offset: tailOffset + FOOTER_CHECKSUM_OFFSET,
    });
  }
  if (head && hasFooterCookie(head)) {
    throw new OvfkitError(
      "VHD_BAD_CHECKSUM",
      "the VHD footer copy checksum does not match and the end footer is missing",
      {
        file: path,
        offset: FOOTER_CHECKSUM_OFFSET,
      },
    );
  }
  throw new OvfkitError("VHD_NO_FOOTER", 'no "conectix" VHD footer at the end or the start of the file', {
    file: path,
    offset: tailOffset,
  });
}

/** Reads and validates the dynamic disk header the footer points at. */
export async function loadHeader(
  file: RandomAccessFile,
  footer: Footer,
): Promise<{ header: DynamicHeader; offset: number }> {
  const offset = footer.dataOffset;
  if (offset === undefined || offset + HEADER_SIZE > file.size) {
    throw new OvfkitError(
      "VHD_BAD_HEADER",
      `the footer's data offset ${offset ?? "(none)"} does not point at a dynamic header inside the file`,
      {
        file: file.path,
        offset: 16,
      },
    );
  }
  const buf = await file.readExact(offset, HEADER_SIZE, "VHD dynamic header");
  if (!hasHeaderCookie(buf)) {
    throw new OvfkitError("VHD_BAD_HEADER", 'no "cxsparse" dynamic header where the footer points', {
      file: file.path,
      offset,
    });
  }
  if (!headerChecksumOk(buf)) {
    throw new OvfkitError("VHD_BAD_CHECKSUM", "the VHD dynamic header checksum does not match its content", {
      file: file.path,
      offset: offset + HEADER_CHECKSUM_OFFSET,
    });
  }
  const header = parseHeader(buf, file.path, offset);
  const { blockSize } = header;
  if (blockSize < MIN_BLOCK_SIZE || blockSize > MAX_BLOCK_SIZE || (blockSize & (blockSize - 1)) !== 0) {
    throw new OvfkitError(
      "VHD_BAD_BLOCK_SIZE",
      `block size ${blockSize} is not a power of two between 512 B and 256 MiB`,
      {
        file: file.path,
        offset: offset + 32,
      },
    );
  }
  return { header, offset };
}

/** A byte range of the file that blocks must not overlap. */
export interface MetadataRange {
  start: number;
  end: number;
  what: string;
}

export interface VhdLayout {
  file: RandomAccessFile;
  location: FooterLocation;
  footer: Footer;
  virtualSize: number;
  header?: DynamicHeader;
  headerOffset?: number;
  /** BAT entries for the blocks the virtual size needs (sector numbers). */
  bat?: Uint32Array;
  bitmapSize: number;
  metadata: MetadataRange[];
}

/** Bytes of block `index` that lie inside the virtual disk, rounded up to a sector. */
export function blockPayloadBytes(layout: { virtualSize: number }, blockSize: number, index: number): number {
  const inDisk = Math.min(blockSize, layout.virtualSize - index * blockSize);
  return Math.ceil(inDisk / SECTOR) * SECTOR;
}

/** Loads footer, header and BAT; throws the first structural error. */
export async function loadLayout(
  file: RandomAccessFile,
  options: { validateBat?: boolean } = {},
): Promise<VhdLayout> {
  const location = await locateFooter(file);
  const { footer } = location;
  const virtualSize = virtualSizeOf(footer);
  const metadata: MetadataRange[] = [];
  if (location.fromHeadCopy || footer.diskType !== DiskType.Fixed)
    metadata.push({ start: 0, end: FOOTER_SIZE, what: "footer copy" });
  if (footer.diskType === DiskType.Fixed) {
    return { file, location, footer, virtualSize, bitmapSize: 0, metadata };
  }
  if (footer.diskType !== DiskType.Dynamic && footer.diskType !== DiskType.Differencing) {
    throw new OvfkitError("VHD_BAD_DISK_TYPE", `unknown VHD disk type ${footer.diskType}`, {
      file: file.path,
      offset: location.offset + 60,
    });
  }
  const { header, offset: headerOffset } = await loadHeader(file, footer);
  metadata.push({ start: headerOffset, end: headerOffset + HEADER_SIZE, what: "dynamic header" });
  const blocksNeeded = Math.ceil(virtualSize / header.blockSize);
  if (header.maxTableEntries < blocksNeeded) {
    throw new OvfkitError(
      "VHD_BAT_TOO_SMALL",
      `the BAT has ${header.maxTableEntries} entries but ${blocksNeeded} blocks of ${header.blockSize} bytes are needed for ${virtualSize} bytes`,
      { file: file.path, offset: headerOffset + 28 },
    );
  }
  const batBytes = blocksNeeded * 4;
  if (batBytes > MAX_BAT_BYTES) {
    throw new OvfkitError(
      "VHD_BAT_TOO_LARGE",
      `${virtualSize} bytes in blocks of ${header.blockSize} need a BAT of ${batBytes} bytes (at most ${MAX_BAT_BYTES} are loaded)`,
      { file: file.path, offset: headerOffset + 32 },
    );
  }
  if (header.tableOffset + batBytes > file.size) {
    throw new OvfkitError(
      "TRUNCATED",
      `the BAT (${batBytes} bytes at ${header.tableOffset}) lies past the end of the file`,
      {
        file: file.path,
        offset: header.tableOffset,
      },
    );
  }
  const raw = await file.readExact(header.tableOffset, batBytes, "VHD block allocation table");
  const bat = new Uint32Array(blocksNeeded);
  for (let i = 0; i < blocksNeeded; i++) bat[i] = raw.readUInt32BE(i * 4);
  metadata.push({
    start: header.tableOffset,
    end: header.tableOffset + Math.ceil((header.maxTableEntries * 4) / SECTOR) * SECTOR,
    what: "BAT",
  });
  for (const locator of header.locators) {
    if (locator.dataLength === 0) continue;
    metadata.push({
      start: locator.dataOffset,
      end: locator.dataOffset + Math.max(locator.dataLength, locatorSpaceBytes(locator)),
      what: `parent locator ${locator.index}`,
    });
  }
  const layout: VhdLayout = {
    file,
    location,
    footer,
    virtualSize,
    header,
    headerOffset,
    bat,
    bitmapSize: bitmapBytes(header.blockSize),
    metadata,
  };
  // Overlapping blocks still read (as qemu does); `check` reports them. Pointers outside the data are fatal.
  const bad =
    options.validateBat === false
      ? undefined
      : batProblems(layout, true).find((p) => p.code === "VHD_BAT_OUT_OF_RANGE");
  if (bad) throw new OvfkitError(bad.code, bad.message, { file: file.path, offset: bad.offset });
  return layout;
}

export interface BatProblem {
  code: "VHD_BAT_OUT_OF_RANGE" | "VHD_BLOCKS_OVERLAP";
  message: string;
  offset: number;
}

/**
 * BAT entries that point past the payload or into metadata
 * (VHD_BAT_OUT_OF_RANGE) and, unless `firstOnly`, blocks overlapping each
 * other (VHD_BLOCKS_OVERLAP).
 */
export function batProblems(layout: VhdLayout, firstOnly = false): BatProblem[] {
  const { bat, header } = layout;
  if (!bat || !header) return [];
  const problems: BatProblem[] = [];
  const blocks: { start: number; end: number; index: number }[] = [];
  for (let index = 0; index < bat.length; index++) {
    const entry = bat[index]!;
    if (entry === BAT_UNUSED) continue;
    const entryOffset = header.tableOffset + index * 4;
    const start = entry * SECTOR;
    const end = start + layout.bitmapSize + blockPayloadBytes(layout, header.blockSize, index);
    if (end > layout.location.payloadEnd) {
      problems.push({
        code: "VHD_BAT_OUT_OF_RANGE",
        message: `BAT entry ${index} points at ${start}, but the block (${end - start} bytes) would end past the image data (${layout.location.payloadEnd})`,
        offset: entryOffset,
      });
    } else {
      const hit = layout.metadata.find((m) => start < m.end && m.start < end);
      if (hit) {
        problems.push({
          code: "VHD_BAT_OUT_OF_RANGE",
          message: `BAT entry ${index} points at ${start}, inside the ${hit.what} (${hit.start}..${hit.end})`,
          offset: entryOffset,
        });
      } else {
        blocks.push({ start, end, index });
      }
    }
    if ((firstOnly && problems.length > 0) || problems.length >= MAX_BAT_PROBLEMS) return problems;
  }
  blocks.sort((a, b) => a.start - b.start);
  for (let i = 1; i < blocks.length; i++) {
    const prev = blocks[i - 1]!;
    const cur = blocks[i]!;
    if (cur.start < prev.end) {
      problems.push({
        code: "VHD_BLOCKS_OVERLAP",
        message: `blocks ${prev.index} and ${cur.index} overlap in the file (${prev.start}..${prev.end} and ${cur.start}..${cur.end})`,
        offset: header.tableOffset + cur.index * 4,
      });
      if (firstOnly || problems.length >= MAX_BAT_PROBLEMS) return problems;
    }
  }
  return problems;
}

/** A run of the virtual disk: stored at `fileOffset`, or a hole (parent / zeros). */
interface Segment {
  offset: number;
  length: number;
  fileOffset?: number;
}

/** Bit `i` of an MSB-first sector bitmap (spec: "Block Allocation Table and Data Blocks"). */
function bitAt(bitmap: Buffer, i: number): boolean {
  return (bitmap[i >> 3]! & (0x80 >> (i & 7))) !== 0;
}

/** First bit index in [from, limit) whose value differs from `value` (or limit); skips whole bytes. */
export function runEnd(bitmap: Buffer, from: number, limit: number, value: boolean): number {
  const fill = value ? 0xff : 0x00;
  let i = from;
  while (i < limit) {
    if ((i & 7) === 0 && i + 8 <= limit && bitmap[i >> 3] === fill) {
      i += 8;
      continue;
    }
    if (bitAt(bitmap, i) !== value) return i;
    i++;
  }
  return limit;
}

const BITMAP_CACHE_BYTES = 4 * 1024 * 1024;

export class VhdReader implements DiskReader {
  readonly format = "vpc" as const;
  readonly virtualSize: number;
  readonly creator: string;
  readonly geometry: { cylinders: number; heads: number; sectors: number };
  readonly files: string[];
  readonly dirty: boolean;
  readonly formatSpecific: FormatSpecificInfo;
  private readonly bitmaps = new Map<number, Buffer>();
  private readonly bitmapCacheLimit: number;

  constructor(
    readonly layout: VhdLayout,
    readonly parent: DiskReader | undefined,
    readonly backingFile: string | undefined,
    locatorPaths: string[],
  ) {
    const { footer, header } = layout;
    this.virtualSize = layout.virtualSize;
    this.geometry = { ...footer.geometry };
    this.creator = `${printableCreatorApp(footer.creatorApp)} ${footer.creatorVersion >>> 16}.${footer.creatorVersion & 0xffff}`;
    this.files = [layout.file.path, ...(parent?.files ?? [])];
    this.dirty = footer.savedState;
    this.bitmapCacheLimit = Math.max(1, Math.floor(BITMAP_CACHE_BYTES / Math.max(1, layout.bitmapSize)));
    const specific: FormatSpecificInfo = {
      type: diskTypeName(footer.diskType),
      "creator-app": printableCreatorApp(footer.creatorApp),
      "creator-version": `${footer.creatorVersion >>> 16}.${footer.creatorVersion & 0xffff}`,
      "creator-host-os": printableCreatorApp(footer.creatorHostOs),
      "unique-id": formatUuid(footer.uniqueId),
      "current-size": footer.currentSize,
      "original-size": footer.originalSize,
      "size-source": sizeSourceOf(footer),
      "saved-state": footer.savedState,
      timestamp: footer.timestamp,
    };
    if (header) {
      specific["block-size"] = header.blockSize;
      specific["max-table-entries"] = header.maxTableEntries;
      specific["allocated-blocks"] = layout.bat ? layout.bat.filter((e) => e !== BAT_UNUSED).length : 0;
    }
    if (header && footer.diskType === DiskType.Differencing) {
      specific["parent-unique-id"] = formatUuid(header.parentUniqueId);
      specific["parent-name"] = header.parentName;
      specific["parent-timestamp"] = header.parentTimestamp;
      specific["parent-locators"] = locatorPaths;
    }
    this.formatSpecific = specific;
  }

  get path(): string {
    return this.layout.file.path;
  }

  private async bitmap(index: number): Promise<Buffer> {
    const cached = this.bitmaps.get(index);
    if (cached) return cached;
    const entry = this.layout.bat![index]!;
    const buf = await this.layout.file.readExact(
      entry * SECTOR,
      this.layout.bitmapSize,
      `sector bitmap of block ${index}`,
    );
    if (this.bitmaps.size >= this.bitmapCacheLimit) this.bitmaps.delete(this.bitmaps.keys().next().value!);
    this.bitmaps.set(index, Buffer.from(buf));
    return buf;
  }

  /** Where each byte of [start, end) lives: in this file, or nowhere here (a hole). */
  private async *segments(start: number, end: number): AsyncGenerator<Segment> {
    const { header, bat, location } = this.layout;
    if (!header || !bat) {
      const dataEnd = Math.max(start, Math.min(end, location.payloadEnd));
      if (dataEnd > start) yield { offset: start, length: dataEnd - start, fileOffset: start };
      if (end > dataEnd) yield { offset: dataEnd, length: end - dataEnd };
      return;
    }
    const blockSize = header.blockSize;
    let pos = start;
    while (pos < end) {
      const index = Math.floor(pos / blockSize);
      const blockStart = index * blockSize;
      const stop = Math.min(end, blockStart + blockSize);
      const entry = bat[index]!;
      if (entry === BAT_UNUSED) {
        // One hole for the whole run of unallocated blocks (a 2 TiB empty disk has millions).
        let next = index + 1;
        while (next * blockSize < end && bat[next] === BAT_UNUSED) next++;
        const holeEnd = Math.min(end, next * blockSize);
        yield { offset: pos, length: holeEnd - pos };
        pos = holeEnd;
        continue;
      }
      const bitmap = await this.bitmap(index);
      const dataBase = entry * SECTOR + this.layout.bitmapSize;
      const limitBit = Math.ceil((stop - blockStart) / SECTOR);
      while (pos < stop) {
        const bit = Math.floor((pos - blockStart) / SECTOR);
        const set = bitAt(bitmap, bit);
        const runStop = Math.min(stop, blockStart + runEnd(bitmap, bit, limitBit, set) * SECTOR);
        yield set
          ? { offset: pos, length: runStop - pos, fileOffset: dataBase + (pos - blockStart) }
          : { offset: pos, length: runStop - pos };
        pos = runStop;
      }
    }
  }

  async *map(offset?: number, length?: number): AsyncGenerator<Extent> {
    const { start, end } = mapRange(this.virtualSize, offset, length);
    yield* coalesceAsync(this.rawMap(start, end));
  }

  private async *rawMap(start: number, end: number): AsyncGenerator<Extent> {
    for await (const s of this.segments(start, end)) {
      if (s.fileOffset !== undefined) {
        yield { offset: s.offset, length: s.length, kind: "data" };
        continue;
      }
      const parentEnd = this.parent ? Math.min(s.offset + s.length, this.parent.virtualSize) : s.offset;
      if (this.parent && parentEnd > s.offset) yield* this.parent.map(s.offset, parentEnd - s.offset);
      const rest = Math.max(parentEnd, s.offset);
      if (rest < s.offset + s.length)
        yield { offset: rest, length: s.offset + s.length - rest, kind: "unallocated" };
    }
  }

  async read(offset: number, length: number, into?: Buffer): Promise<Buffer> {
    checkReadRange(this.path, this.virtualSize, offset, length);
    const out = into ? into.subarray(0, length) : Buffer.allocUnsafe(length);
    for await (const s of this.segments(offset, offset + length)) {
      const view = out.subarray(s.offset - offset, s.offset - offset + s.length);
      if (s.fileOffset !== undefined) {
        const n = await this.layout.file.readAt(s.fileOffset, s.length, view);
        if (n < s.length) view.fill(0, n);
        continue;
      }
      const parentEnd = this.parent ? Math.min(s.offset + s.length, this.parent.virtualSize) : s.offset;
      if (this.parent && parentEnd > s.offset) await this.parent.read(s.offset, parentEnd - s.offset, view);
      view.fill(0, Math.max(0, parentEnd - s.offset));
    }
    return out;
  }

  async close(): Promise<void> {
    await this.parent?.close();
    await this.layout.file.close();
  }
}
