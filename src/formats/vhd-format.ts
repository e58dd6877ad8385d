import { OvfkitError } from "../errors.js";

/**
 * VHD on-disk structures: the hard disk footer, the dynamic disk header and
 * parent locators, their checksums, and the CHS geometry rules.
 *
 * Section names below refer to Microsoft's "Virtual Hard Disk Image Format
 * Specification", version 1.0 (October 2006). All integers are big-endian.
 */

export const SECTOR = 512;

// ---------------------------------------------------------------------------
// Hard Disk Footer (spec: "Hard Disk Footer Format"), 512 bytes.
// ---------------------------------------------------------------------------
export const FOOTER_SIZE = 512;
/** Old Virtual PC versions wrote 511-byte footers at the end of fixed disks. */
export const FOOTER_SIZE_OLD_VPC = 511;
export const FOOTER_COOKIE = "conectix";
const FOOTER_COOKIE_OFFSET = 0; // 8 bytes "conectix"
const FOOTER_FEATURES_OFFSET = 8; // u32; bit 1 (0x2) "reserved" must always be set
const FOOTER_VERSION_OFFSET = 12; // u32 file format version, 0x00010000
const FOOTER_DATA_OFFSET_OFFSET = 16; // u64 absolute offset of the dynamic header; all ones for fixed disks
const FOOTER_TIMESTAMP_OFFSET = 24; // u32 seconds since 2000-01-01 00:00:00 UTC
const FOOTER_CREATOR_APP_OFFSET = 28; // 4 ASCII bytes ("vpc ", "win ", "qemu"...)
const FOOTER_CREATOR_VERSION_OFFSET = 32; // u32 major<<16 | minor
const FOOTER_CREATOR_HOST_OS_OFFSET = 36; // u32 "Wi2k" (0x5769326B) or "Mac " (0x4D616320)
const FOOTER_ORIGINAL_SIZE_OFFSET = 40; // u64 size at creation, bytes
const FOOTER_CURRENT_SIZE_OFFSET = 48; // u64 current size, bytes
const FOOTER_GEOMETRY_OFFSET = 56; // u16 cylinders, u8 heads, u8 sectors per track
const FOOTER_DISK_TYPE_OFFSET = 60; // u32 (see DiskType)
export const FOOTER_CHECKSUM_OFFSET = 64; // u32 ones' complement of the byte sum
const FOOTER_UNIQUE_ID_OFFSET = 68; // 16-byte UUID
const FOOTER_SAVED_STATE_OFFSET = 84; // u8: 1 = saved state (the VM was suspended)

export const FEATURES_RESERVED = 0x00000002;
export const FILE_FORMAT_VERSION = 0x00010000;
/** Data offset of fixed disks, and the dynamic header's unused data offset. */
export const NO_OFFSET = 0xffffffffffffffffn;

/** Disk Type field (spec: footer "Disk Type"). */
export enum DiskType {
  Fixed = 2,
  Dynamic = 3,
  Differencing = 4,
}

export interface Geometry {
  cylinders: number;
  heads: number;
  sectors: number;
}

export interface Footer {
  features: number;
  version: number;
  /** Absolute offset of the dynamic header; undefined for fixed disks (all ones). */
  dataOffset: number | undefined;
  timestamp: number;
  /** The four raw bytes of the creator application as latin1. */
  creatorApp: string;
  creatorVersion: number;
  creatorHostOs: string;
  originalSize: number;
  currentSize: number;
  geometry: Geometry;
  diskType: number;
  checksum: number;
  uniqueId: Buffer;
  savedState: boolean;
}

/** Ones' complement of the byte sum with the checksum field counted as zero (footer and header alike). */
export function vhdChecksum(buf: Uint8Array, checksumOffset: number): number {
  let sum = 0;
  for (let i = 0; i < buf.length; i++) {
    if (i >= checksumOffset && i < checksumOffset + 4) continue;
    sum += buf[i]!;
  }
  return ~sum >>> 0;
}

/** u64 -> number, `undefined` for the all-ones "no offset" marker; throws past 2^53. */
function readOffset64(buf: Buffer, at: number, what: string, file?: string): number | undefined {
  const value = buf.readBigUInt64BE(at);
  if (value === NO_OFFSET) return undefined;
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new OvfkitError("VHD_BAD_FOOTER", `${what} ${value} is not a usable offset or size`, { file });
  }
  return Number(value);
}

/** True when `buf` (512 bytes, or 511 for old Virtual PC footers) starts with the footer cookie. */
export function hasFooterCookie(buf: Buffer): boolean {
  return buf.length >= 8 && buf.toString("latin1", 0, 8) === FOOTER_COOKIE;
}

/**
 * True when the footer's stored checksum matches its content. A 511-byte
 * footer is checked as if its missing last (reserved) byte were zero.
 */
export function footerChecksumOk(buf: Buffer): boolean {
  if (buf.length < FOOTER_CHECKSUM_OFFSET + 4) return false;
  return buf.readUInt32BE(FOOTER_CHECKSUM_OFFSET) === vhdChecksum(buf, FOOTER_CHECKSUM_OFFSET);
}

export function parseFooter(buf: Buffer, file?: string): Footer {
  const full =
    buf.length === FOOTER_SIZE ? buf : Buffer.concat([buf, Buffer.alloc(FOOTER_SIZE - buf.length)]);
  return {
    features: full.readUInt32BE(FOOTER_FEATURES_OFFSET),
    version: full.readUInt32BE(FOOTER_VERSION_OFFSET),
    dataOffset: readOffset64(full, FOOTER_DATA_OFFSET_OFFSET, "footer data offset", file),
    timestamp: full.readUInt32BE(FOOTER_TIMESTAMP_OFFSET),
    creatorApp: full.toString("latin1", FOOTER_CREATOR_APP_OFFSET, FOOTER_CREATOR_APP_OFFSET + 4),
    creatorVersion: full.readUInt32BE(FOOTER_CREATOR_VERSION_OFFSET),
    creatorHostOs: full.toString("latin1", FOOTER_CREATOR_HOST_OS_OFFSET, FOOTER_CREATOR_HOST_OS_OFFSET + 4),
    originalSize: readOffset64(full, FOOTER_ORIGINAL_SIZE_OFFSET, "original size", file) ?? 0,
    currentSize: readOffset64(full, FOOTER_CURRENT_SIZE_OFFSET, "current size", file) ?? 0,
    geometry: {
      cylinders: full.readUInt16BE(FOOTER_GEOMETRY_OFFSET),
      heads: full.readUInt8(FOOTER_GEOMETRY_OFFSET + 2),
      sectors: full.readUInt8(FOOTER_GEOMETRY_OFFSET + 3),
    },
    diskType: full.readUInt32BE(FOOTER_DISK_TYPE_OFFSET),
    checksum: full.readUInt32BE(FOOTER_CHECKSUM_OFFSET),
    uniqueId: Buffer.from(full.subarray(FOOTER_UNIQUE_ID_OFFSET, FOOTER_UNIQUE_ID_OFFSET + 16)),
    savedState: full.readUInt8(FOOTER_SAVED_STATE_OFFSET) !== 0,
  };
}

/** Serialises a footer and stamps its checksum. */
export function serializeFooter(footer: Omit<Footer, "checksum">): Buffer {
  const buf = Buffer.alloc(FOOTER_SIZE);
  buf.write(FOOTER_COOKIE, FOOTER_COOKIE_OFFSET, "latin1");
  buf.writeUInt32BE(footer.features, FOOTER_FEATURES_OFFSET);
  buf.writeUInt32BE(footer.version, FOOTER_VERSION_OFFSET);
  buf.writeBigUInt64BE(
    footer.dataOffset === undefined ? NO_OFFSET : BigInt(footer.dataOffset),
    FOOTER_DATA_OFFSET_OFFSET,
  );
  buf.writeUInt32BE(footer.timestamp >>> 0, FOOTER_TIMESTAMP_OFFSET);
  buf.write(footer.creatorApp.padEnd(4, " ").slice(0, 4), FOOTER_CREATOR_APP_OFFSET, "latin1");
  buf.writeUInt32BE(footer.creatorVersion >>> 0, FOOTER_CREATOR_VERSION_OFFSET);
  buf.write(footer.creatorHostOs.padEnd(4, " ").slice(0, 4), FOOTER_CREATOR_HOST_OS_OFFSET, "latin1");
  buf.writeBigUInt64BE(BigInt(footer.originalSize), FOOTER_ORIGINAL_SIZE_OFFSET);
  buf.writeBigUInt64BE(BigInt(footer.currentSize), FOOTER_CURRENT_SIZE_OFFSET);
  buf.writeUInt16BE(footer.geometry.cylinders, FOOTER_GEOMETRY_OFFSET);
  buf.writeUInt8(footer.geometry.heads, FOOTER_GEOMETRY_OFFSET + 2);
  buf.writeUInt8(footer.geometry.sectors, FOOTER_GEOMETRY_OFFSET + 3);
  buf.writeUInt32BE(footer.diskType, FOOTER_DISK_TYPE_OFFSET);
  footer.uniqueId.copy(buf, FOOTER_UNIQUE_ID_OFFSET, 0, 16);
  buf.writeUInt8(footer.savedState ? 1 : 0, FOOTER_SAVED_STATE_OFFSET);
  buf.writeUInt32BE(vhdChecksum(buf, FOOTER_CHECKSUM_OFFSET), FOOTER_CHECKSUM_OFFSET);
  return buf;
}

// ---------------------------------------------------------------------------
// Dynamic Disk Header (spec: "Dynamic Disk Header Format"), 1024 bytes.
// ---------------------------------------------------------------------------
export const HEADER_SIZE = 1024;
export const HEADER_COOKIE = "cxsparse";
const HEADER_COOKIE_OFFSET = 0; // 8 bytes "cxsparse"
const HEADER_DATA_OFFSET_OFFSET = 8; // u64, unused: all ones
const HEADER_TABLE_OFFSET_OFFSET = 16; // u64 absolute byte offset of the BAT
const HEADER_VERSION_OFFSET = 24; // u32 header version, 0x00010000
const HEADER_MAX_TABLE_ENTRIES_OFFSET = 28; // u32 BAT entries (blocks the disk can hold)
const HEADER_BLOCK_SIZE_OFFSET = 32; // u32 bytes of data per block (default 2 MiB), bitmap excluded
export const HEADER_CHECKSUM_OFFSET = 36; // u32 ones' complement of the byte sum
const HEADER_PARENT_UNIQUE_ID_OFFSET = 40; // 16 bytes: the parent's footer unique id (differencing)
const HEADER_PARENT_TIMESTAMP_OFFSET = 56; // u32 parent modification time, seconds since 2000
const HEADER_PARENT_NAME_OFFSET = 64; // 512 bytes UTF-16BE parent file name
const HEADER_PARENT_NAME_SIZE = 512;
const HEADER_LOCATORS_OFFSET = 576; // 8 parent locator entries of 24 bytes
export const LOCATOR_COUNT = 8;
const LOCATOR_ENTRY_SIZE = 24;
// Parent locator entry (spec: "Parent Locator Entries"), relative to the entry:
const LOCATOR_PLATFORM_CODE = 0; // u32, see PlatformCode
const LOCATOR_DATA_SPACE = 4; // u32 space reserved (sectors per the spec; bytes in some Windows images)
const LOCATOR_DATA_LENGTH = 8; // u32 bytes of locator data
const LOCATOR_DATA_OFFSET = 16; // u64 absolute file offset of the locator data

export const HEADER_VERSION = 0x00010000;
export const DEFAULT_BLOCK_SIZE = 2 * 1024 * 1024;
/** "Unused" BAT entry (spec: "Block Allocation Table"). */
export const BAT_UNUSED = 0xffffffff;

/** Platform codes of parent locators (spec: "Parent Locator Entries"). */
export const PlatformCode = {
  None: 0,
  Wi2r: 0x57693272, // deprecated, Windows relative (ANSI)
  Wi2k: 0x5769326b, // deprecated, Windows absolute (ANSI)
  W2ru: 0x57327275, // Windows relative path, UTF-16LE
  W2ku: 0x57326b75, // Windows absolute path, UTF-16LE
  Mac: 0x4d616320, // Mac OS alias blob (not a path: skipped)
  MacX: 0x4d616358, // file URL, UTF-8
} as const;

export interface ParentLocator {
  /** Index 0..7 in the header. */
  index: number;
  platformCode: number;
  dataSpace: number;
  dataLength: number;
  dataOffset: number;
}

export interface DynamicHeader {
  tableOffset: number;
  version: number;
  maxTableEntries: number;
  blockSize: number;
  checksum: number;
  parentUniqueId: Buffer;
  parentTimestamp: number;
  parentName: string;
  locators: ParentLocator[];
}

export function headerChecksumOk(buf: Buffer): boolean {
  return buf.readUInt32BE(HEADER_CHECKSUM_OFFSET) === vhdChecksum(buf, HEADER_CHECKSUM_OFFSET);
}

export function hasHeaderCookie(buf: Buffer): boolean {
  return buf.toString("latin1", HEADER_COOKIE_OFFSET, HEADER_COOKIE_OFFSET + 8) === HEADER_COOKIE;
}

function utf16beToString(buf: Buffer): string {
  const swapped = Buffer.from(buf);
  swapped.swap16();
  const text = swapped.toString("utf16le");
  const nul = text.indexOf("\0");
  return nul < 0 ? text : text.slice(0, nul);
}

function stringToUtf16be(text: string, size: number): Buffer {
  const out = Buffer.alloc(size);
  const le = Buffer.from(text, "utf16le");
  if (le.length > size) throw new OvfkitError("BAD_OPTION", `parent name "${text}" is too long for a VHD`);
  le.swap16().copy(out);
  return out;
}

export function parseHeader(buf: Buffer, file?: string, at = 0): DynamicHeader {
  const locators: ParentLocator[] = [];
  for (let index = 0; index < LOCATOR_COUNT; index++) {
    const base = HEADER_LOCATORS_OFFSET + index * LOCATOR_ENTRY_SIZE;
    const platformCode = buf.readUInt32BE(base + LOCATOR_PLATFORM_CODE);
    if (platformCode === PlatformCode.None) continue;
    const dataOffset = buf.readBigUInt64BE(base + LOCATOR_DATA_OFFSET);
    if (dataOffset > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new OvfkitError("VHD_BAD_HEADER", `parent locator ${index} has an impossible data offset`, {
        file,
        offset: at + base,
      });
    }
    locators.push({
      index,
      platformCode,
      dataSpace: buf.readUInt32BE(base + LOCATOR_DATA_SPACE),
      dataLength: buf.readUInt32BE(base + LOCATOR_DATA_LENGTH),
      dataOffset: Number(dataOffset),
    });
  }
  const tableOffset = buf.readBigUInt64BE(HEADER_TABLE_OFFSET_OFFSET);
  if (tableOffset > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new OvfkitError("VHD_BAD_HEADER", `BAT offset ${tableOffset} is impossible`, {
      file,
      offset: at + HEADER_TABLE_OFFSET_OFFSET,
    });
  }
  return {
    tableOffset: Number(tableOffset),
    version: buf.readUInt32BE(HEADER_VERSION_OFFSET),
    maxTableEntries: buf.readUInt32BE(HEADER_MAX_TABLE_ENTRIES_OFFSET),
    blockSize: buf.readUInt32BE(HEADER_BLOCK_SIZE_OFFSET),
    checksum: buf.readUInt32BE(HEADER_CHECKSUM_OFFSET),
    parentUniqueId: Buffer.from(
      buf.subarray(HEADER_PARENT_UNIQUE_ID_OFFSET, HEADER_PARENT_UNIQUE_ID_OFFSET + 16),
    ),
    parentTimestamp: buf.readUInt32BE(HEADER_PARENT_TIMESTAMP_OFFSET),
    parentName: utf16beToString(
      buf.subarray(HEADER_PARENT_NAME_OFFSET, HEADER_PARENT_NAME_OFFSET + HEADER_PARENT_NAME_SIZE),
    ),
    locators,
  };
}

export function serializeHeader(header: Omit<DynamicHeader, "checksum">): Buffer {
  const buf = Buffer.alloc(HEADER_SIZE);
  buf.write(HEADER_COOKIE, HEADER_COOKIE_OFFSET, "latin1");
  buf.writeBigUInt64BE(NO_OFFSET, HEADER_DATA_OFFSET_OFFSET);
  buf.writeBigUInt64BE(BigInt(header.tableOffset), HEADER_TABLE_OFFSET_OFFSET);
  buf.writeUInt32BE(header.version, HEADER_VERSION_OFFSET);
  buf.writeUInt32BE(header.maxTableEntries, HEADER_MAX_TABLE_ENTRIES_OFFSET);
  buf.writeUInt32BE(header.blockSize, HEADER_BLOCK_SIZE_OFFSET);
  header.parentUniqueId.copy(buf, HEADER_PARENT_UNIQUE_ID_OFFSET, 0, 16);
  buf.writeUInt32BE(header.parentTimestamp >>> 0, HEADER_PARENT_TIMESTAMP_OFFSET);
  stringToUtf16be(header.parentName, HEADER_PARENT_NAME_SIZE).copy(buf, HEADER_PARENT_NAME_OFFSET);
  for (const locator of header.locators) {
    const base = HEADER_LOCATORS_OFFSET + locator.index * LOCATOR_ENTRY_SIZE;
    buf.writeUInt32BE(locator.platformCode, base + LOCATOR_PLATFORM_CODE);
    buf.writeUInt32BE(locator.dataSpace, base + LOCATOR_DATA_SPACE);
    buf.writeUInt32BE(locator.dataLength, base + LOCATOR_DATA_LENGTH);
    buf.writeBigUInt64BE(BigInt(locator.dataOffset), base + LOCATOR_DATA_OFFSET);
  }
  buf.writeUInt32BE(vhdChecksum(buf, HEADER_CHECKSUM_OFFSET), HEADER_CHECKSUM_OFFSET);
  return buf;
}

/**
 * Bytes a locator's data occupies in the file. The spec says "Platform Data
 * Space" counts sectors, but Windows writes bytes; like blktap's libvhd we
 * read values under 512 as sectors and multiples of 512 as bytes.
 */
export function locatorSpaceBytes(locator: ParentLocator): number {
  if (locator.dataSpace < SECTOR) return locator.dataSpace * SECTOR;
  return locator.dataSpace;
}

/** Bytes of the sector bitmap in front of each block, padded to a whole sector (spec: "Block Allocation Table and Data Blocks"). */
export function bitmapBytes(blockSize: number): number {
  return Math.ceil(blockSize / SECTOR / 8 / SECTOR) * SECTOR;
}

/** Footer / header time stamps count seconds since 2000-01-01 00:00:00 UTC. */
export const VHD_EPOCH_MS = Date.UTC(2000, 0, 1);

export function vhdTimestamp(date: Date = new Date()): number {
  return Math.max(0, Math.floor((date.getTime() - VHD_EPOCH_MS) / 1000)) >>> 0;
}

export function formatUuid(id: Buffer): string {
  const h = id.toString("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

// ---------------------------------------------------------------------------
// CHS geometry (spec: Appendix "CHS Calculation").
// ---------------------------------------------------------------------------
/** 65535 cylinders x 16 heads x 255 sectors: the largest CHS geometry (~127 GiB). */
export const MAX_CHS_SECTORS = 65535 * 16 * 255;
export const MAX_GEOMETRY: Geometry = { cylinders: 65535, heads: 16, sectors: 255 };

/** The spec's CHS algorithm: the largest geometry not above `totalSectors` (rounded down). */
export function chsForSectors(totalSectors: number): Geometry {
  const total = Math.min(totalSectors, MAX_CHS_SECTORS);
  let sectors: number;
  let heads: number;
  let cylindersTimesHeads: number;
  if (total >= 65535 * 16 * 63) {
    sectors = 255;
    heads = 16;
    cylindersTimesHeads = Math.floor(total / sectors);
  } else {
    sectors = 17;
    cylindersTimesHeads = Math.floor(total / sectors);
    heads = Math.max(4, Math.floor((cylindersTimesHeads + 1023) / 1024));
    if (cylindersTimesHeads >= heads * 1024 || heads > 16) {
      sectors = 31;
      heads = 16;
      cylindersTimesHeads = Math.floor(total / sectors);
    }
    if (cylindersTimesHeads >= heads * 1024) {
      sectors = 63;
      heads = 16;
      cylindersTimesHeads = Math.floor(total / sectors);
    }
  }
  return { cylinders: Math.floor(cylindersTimesHeads / heads), heads, sectors };
}

export function geometryBytes(g: Geometry): number {
  return g.cylinders * g.heads * g.sectors * SECTOR;
}

export function isMaxGeometry(g: Geometry): boolean {
  return g.cylinders === 65535 && g.heads === 16 && g.sectors === 255;
}

/**
 * The smallest CHS geometry holding at least `totalSectors` (qemu's
 * force_size=off rule: it retries the spec algorithm on one more sector
 * until the product covers the request). Returns the max geometry when the
 * disk is larger than CHS can describe.
 */
export function chsRoundUp(totalSectors: number): Geometry {
  if (totalSectors >= MAX_CHS_SECTORS) return { ...MAX_GEOMETRY };
  let g = chsForSectors(totalSectors);
  for (let extra = 1; g.cylinders * g.heads * g.sectors < totalSectors; extra++) {
    g = chsForSectors(totalSectors + extra);
  }
  return g;
}

/**
 * Creator applications whose images are sized by their CHS geometry: Virtual
 * PC and qemu's "qemu" creator (qemu's block/vpc.c table). Every other
 * creator ("win ", "qem2", "d2v\0", "tap\0", "CTXS", ovfkit's "ovfk") is
 * sized by the footer's current size.
 */
export const CHS_SIZED_CREATORS: readonly string[] = ["vpc ", "qemu"];

/** ovfkit's creator application id: its images are sized by the current size. */
export const OVFKIT_CREATOR_APP = "ovfk";
/** Creator version 0.1 (major << 16 | minor). */
export const OVFKIT_CREATOR_VERSION = 0x00000001;
export const CREATOR_HOST_OS_WINDOWS = "Wi2k";

export type SizeSource = "chs" | "current-size";

/**
 * Which field gives the virtual size: CHS for Virtual PC / qemu creators,
 * except when the geometry is the CHS maximum (the disk is bigger than CHS
 * can say, so the current size is the only truth, as qemu also decides).
 */
export function sizeSourceOf(footer: Footer): SizeSource {
  if (!CHS_SIZED_CREATORS.includes(footer.creatorApp)) return "current-size";
  if (isMaxGeometry(footer.geometry)) return "current-size";
  return "chs";
}

export function virtualSizeOf(footer: Footer): number {
  if (sizeSourceOf(footer) === "chs") return geometryBytes(footer.geometry);
  return Math.floor(footer.currentSize / SECTOR) * SECTOR;
}

/** "vpc " -> `vpc `, "d2v\0" -> `d2v\0`: the four bytes printable. */
export function printableCreatorApp(app: string): string {
  return app.replace(/\0/g, "\\0");
}

export function diskTypeName(type: number): string {
  switch (type) {
    case DiskType.Fixed:
      return "fixed";
    case DiskType.Dynamic:
      return "dynamic";
    case DiskType.Differencing:
      return "differencing";
    default:
      return `unknown (${type})`;
  }
}
