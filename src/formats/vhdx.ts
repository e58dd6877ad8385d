import { randomBytes } from "node:crypto";
import { existsSync, realpathSync } from "node:fs";
import { basename, dirname, resolve } from "node:path";
import { asOvfkitError, OvfkitError } from "../errors.js";
import { crc32c } from "./crc32c.js";
import {
  type CheckFinding,
  type CheckReport,
  checkReadRange,
  type DiskReader,
  dataChunks,
  type Extent,
  type FormatSpecificInfo,
  findingFromError,
  mapRange,
} from "./disk.js";
import type { FormatDriver, OpenOptions, ProbeInput, WriteContext, WriterOptions } from "./driver.js";
import { RandomAccessFile } from "./file.js";
import { isInsideFolder } from "./paths.js";

/**
 * VHDX (Hyper-V), after Microsoft's [MS-VHDX] v20240423 "Virtual Hard Disk
 * v2 (VHDX) File Format". Section numbers below are MS-VHDX's.
 *
 * Read: fixed and dynamic disks (payload block states, chunk ratio, both
 * headers and both region tables with CRC-32C). A non-empty log (§2.3) is
 * replayed read-only: its active sequence is applied in memory over every
 * read of the file, which is never written; a log that cannot be replayed
 * is refused (VHDX_LOG_CORRUPT). Differencing disks read through their
 * parent (§2.6.2.6 parent locator, §2.5 sector bitmaps), with the same
 * path rules as VHD parents.
 * Write: fixed and dynamic, streamed (the BAT size is known up front).
 */

const KiB = 1024;
const MiB = 1024 * KiB;

// §2.1 / §2.2: the 1 MiB header section.
/** §2.2.1 File Type Identifier at offset 0: "vhdxfile" then the creator (UTF-16LE, 512 bytes). */
const FILE_ID_OFFSET = 0;
const FILE_ID_SIGNATURE = Buffer.from("vhdxfile", "latin1");
const FILE_ID_CREATOR_OFFSET = 8;
const FILE_ID_CREATOR_BYTES = 512;
/** §2.2: the two headers at 64 KiB and 128 KiB, each 4 KiB of a 64 KiB slot. */
const HEADER_OFFSETS = [64 * KiB, 128 * KiB] as const;
const HEADER_SIZE = 4 * KiB;
/** §2.2: the two region tables at 192 KiB and 256 KiB, 64 KiB each. */
const REGION_TABLE_OFFSETS = [192 * KiB, 256 * KiB] as const;
const REGION_TABLE_SIZE = 64 * KiB;
/** §2.1: log, BAT, metadata and payload live at 1 MiB multiples past the header section. */
const HEADER_SECTION_SIZE = 1 * MiB;
const ALIGNMENT = 1 * MiB;

// §2.2.2 Header fields.
const H_SIGNATURE = 0; // "head"
const H_CHECKSUM = 4;
const H_SEQUENCE = 8;
const H_FILE_WRITE_GUID = 16;
const H_DATA_WRITE_GUID = 32;
const H_LOG_GUID = 48;
const H_LOG_VERSION = 64;
const H_VERSION = 66;
const H_LOG_LENGTH = 68;
const H_LOG_OFFSET = 72;
const HEADER_SIGNATURE = Buffer.from("head", "latin1");

// §2.2.3 Region table: 16-byte header then 32-byte entries.
const RT_SIGNATURE = 0; // "regi"
const RT_CHECKSUM = 4;
const RT_ENTRY_COUNT = 8;
const RT_HEADER_SIZE = 16;
const RT_ENTRY_SIZE = 32;
/** §2.2.3.1: at most 2047 entries. */
const RT_MAX_ENTRIES = 2047;
const RE_GUID = 0;
const RE_FILE_OFFSET = 16;
const RE_LENGTH = 24;
const RE_REQUIRED = 28;
const REGION_SIGNATURE = Buffer.from("regi", "latin1");

// §2.6.1 Metadata table: 32-byte header then 32-byte entries, in a 64 KiB table.
const MT_SIGNATURE = Buffer.from("metadata", "latin1");
const MT_ENTRY_COUNT = 10;
const MT_HEADER_SIZE = 32;
const MT_ENTRY_SIZE = 32;
const MT_TABLE_SIZE = 64 * KiB;
/** §2.6.1.1: at most 2047 entries. */
const MT_MAX_ENTRIES = 2047;
const ME_ITEM_ID = 0;
const ME_OFFSET = 16;
const ME_LENGTH = 20;
const ME_FLAGS = 24;
const ME_IS_VIRTUAL_DISK = 1 << 1;
const ME_IS_REQUIRED = 1 << 2;
/** §2.6.1.2: item data lies at least 64 KiB into the region and is at most 1 MiB. */
const METADATA_ITEM_MAX = 1 * MiB;

/** GUIDs of regions (§2.2.3.2) and metadata items (§2.6.2). */
const GUID = {
  bat: "2DC27766-F623-4200-9D64-115E9BFD4A08",
  metadata: "8B7CA206-4790-4B9A-B8FE-575F050F886E",
  fileParameters: "CAA16737-FA36-4D43-B3B6-33F0AA44E76B",
  virtualDiskSize: "2FA54224-CD1B-4876-B211-5DBED83BF4B8",
  page83: "BECA12AB-B2E6-4523-93EF-C309E000C746",
  logicalSectorSize: "8141BF1D-A96F-4709-BA47-F233A8FAAB5F",
  physicalSectorSize: "CDA348C7-445D-4471-9CC9-E9885251C556",
  parentLocator: "A8D35F2D-B30B-454D-ABF7-D3D84834AB0C",
} as const;

// §2.6.2.1 File Parameters flags.
const FP_LEAVE_BLOCKS_ALLOCATED = 1 << 0;
const FP_HAS_PARENT = 1 << 1;
/** §2.6.2.1: block size is a power of two from 1 MiB to 256 MiB. */
const MIN_BLOCK_SIZE = 1 * MiB;
const MAX_BLOCK_SIZE = 256 * MiB;
/** §2.6.2.2: at most 64 TiB. */
const MAX_VIRTUAL_SIZE = 64 * 1024 * 1024 * MiB;

// §2.5.1 BAT entry: state in bits 0-2, file offset in MiB in bits 20-63.
const BAT_ENTRY_SIZE = 8;
const BAT_STATE_MASK = 7n;
const BAT_OFFSET_SHIFT = 20n;
/** §2.5.1.1 payload block states (and §2.5.1.2 sector bitmap states share 0 and 6). */
export const PayloadState = {
  NOT_PRESENT: 0,
  UNDEFINED: 1,
  ZERO: 2,
  UNMAPPED: 3,
  FULLY_PRESENT: 6,
  PARTIALLY_PRESENT: 7,
} as const;
/** §2.5: sectors described by one sector bitmap block (2^23). */
const SECTORS_PER_CHUNK = 2 ** 23;

/** GUID text → the 16 bytes Windows stores (first three fields little-endian). */
export function guidBytes(text: string): Buffer {
  const hex = text.replace(/-/g, "");
  const raw = Buffer.from(hex, "hex");
  const out = Buffer.from(raw);
  out.writeUInt32LE(raw.readUInt32BE(0), 0);
  out.writeUInt16LE(raw.readUInt16BE(4), 4);
  out.writeUInt16LE(raw.readUInt16BE(6), 6);
  return out;
}

/** The 16 bytes Windows stores → upper-case GUID text. */
export function guidText(bytes: Buffer): string {
  const b = Buffer.from(bytes.subarray(0, 16));
  const hex = Buffer.concat([
    Buffer.from(b.readUInt32LE(0).toString(16).padStart(8, "0"), "hex"),
    Buffer.from(b.readUInt16LE(4).toString(16).padStart(4, "0"), "hex"),
    Buffer.from(b.readUInt16LE(6).toString(16).padStart(4, "0"), "hex"),
    b.subarray(8),
  ]).toString("hex");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`.toUpperCase();
}

/** CRC-32C of `buf` with its 4-byte checksum field at `at` taken as zero (§2.2.2, §2.2.3). */
function checksumWithFieldZero(buf: Buffer, at: number): number {
  const copy = Buffer.from(buf);
  copy.writeUInt32LE(0, at);
  return crc32c(copy);
}

// ---------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------

export interface VhdxHeader {
  slot: 1 | 2;
  sequenceNumber: bigint;
  fileWriteGuid: string;
  dataWriteGuid: string;
  logGuid: string;
  logVersion: number;
  version: number;
  logLength: number;
  logOffset: number;
}

const ZERO_GUID = "00000000-0000-0000-0000-000000000000";

/** Parses one header slot; undefined when its signature or CRC-32C is wrong (§2.2.2). */
function parseHeader(buf: Buffer, slot: 1 | 2): VhdxHeader | undefined {
  if (!buf.subarray(H_SIGNATURE, H_SIGNATURE + 4).equals(HEADER_SIGNATURE)) return undefined;
  if (checksumWithFieldZero(buf, H_CHECKSUM) !== buf.readUInt32LE(H_CHECKSUM)) return undefined;
  return {
    slot,
    sequenceNumber: buf.readBigUInt64LE(H_SEQUENCE),
    fileWriteGuid: guidText(buf.subarray(H_FILE_WRITE_GUID)),
    dataWriteGuid: guidText(buf.subarray(H_DATA_WRITE_GUID)),
    logGuid: guidText(buf.subarray(H_LOG_GUID)),
    logVersion: buf.readUInt16LE(H_LOG_VERSION),
    version: buf.readUInt16LE(H_VERSION),
    logLength: buf.readUInt32LE(H_LOG_LENGTH),
    logOffset: Number(buf.readBigUInt64LE(H_LOG_OFFSET)),
  };
}

interface RegionEntry {
  guid: string;
  fileOffset: number;
  length: number;
  required: boolean;
}

/** Parses a region table; undefined when its signature, CRC-32C or count is wrong (§2.2.3). */
function parseRegionTable(buf: Buffer): RegionEntry[] | undefined {
  if (!buf.subarray(RT_SIGNATURE, RT_SIGNATURE + 4).equals(REGION_SIGNATURE)) return undefined;
  if (checksumWithFieldZero(buf, RT_CHECKSUM) !== buf.readUInt32LE(RT_CHECKSUM)) return undefined;
  const count = buf.readUInt32LE(RT_ENTRY_COUNT);
  if (count > RT_MAX_ENTRIES) return undefined;
  const entries: RegionEntry[] = [];
  for (let i = 0; i < count; i++) {
    const at = RT_HEADER_SIZE + i * RT_ENTRY_SIZE;
    entries.push({
      guid: guidText(buf.subarray(at + RE_GUID)),
      fileOffset: Number(buf.readBigUInt64LE(at + RE_FILE_OFFSET)),
      length: buf.readUInt32LE(at + RE_LENGTH),
      required: (buf.readUInt32LE(at + RE_REQUIRED) & 1) !== 0,
    });
  }
  return entries;
}

/**
 * What the layout reads through: the file itself, or the file with the
 * log's updates applied in memory (LogReplayedFile). RandomAccessFile fits.
 */
export interface VhdxSource {
  readonly path: string;
  readonly size: number;
  readExact(offset: number, length: number, what: string, into?: Buffer): Promise<Buffer>;
  close(): Promise<void>;
}

export interface VhdxLayout {
  file: VhdxSource;
  /** Log entries applied in memory at open (0 when the log was empty). */
  replayedLogEntries: number;
  creator: string;
  header: VhdxHeader;
  /** Problems found on the way that did not stop the open (a bad copy of a header or region table). */
  warnings: CheckFinding[];
  batOffset: number;
  batLength: number;
  metadataOffset: number;
  metadataLength: number;
  blockSize: number;
  leaveBlocksAllocated: boolean;
  hasParent: boolean;
  /** §2.6.2.6 parent locator key/value pairs (differencing disks only). */
  parentLocator?: Map<string, string>;
  virtualSize: number;
  logicalSectorSize: number;
  physicalSectorSize: number;
  page83: string;
  /** §2.5: payload blocks per sector bitmap block. */
  chunkRatio: number;
  dataBlocks: number;
  batEntries: number;
}

function fail(code: string, message: string, file: { path: string }, offset?: number): never {
  throw new OvfkitError(code, message, { file: file.path, offset });
}

async function readFileIdentifier(file: VhdxSource): Promise<string> {
  const id = await file.readExact(
    FILE_ID_OFFSET,
    FILE_ID_CREATOR_OFFSET + FILE_ID_CREATOR_BYTES,
    "VHDX file identifier",
  );
  if (!id.subarray(0, 8).equals(FILE_ID_SIGNATURE)) {
    fail("VHDX_BAD_SIGNATURE", 'not a VHDX file: no "vhdxfile" signature at offset 0', file, 0);
  }
  return id
    .subarray(FILE_ID_CREATOR_OFFSET)
    .toString("utf16le")
    .replace(/\0[\s\S]*$/, "");
}

/** §2.2.2: the current header is the valid one with the highest sequence number. */
async function readCurrentHeader(file: VhdxSource, warnings: CheckFinding[]): Promise<VhdxHeader> {
  const headers: VhdxHeader[] = [];
  for (const [i, offset] of HEADER_OFFSETS.entries()) {
    const slot = (i + 1) as 1 | 2;
    const header = parseHeader(await file.readExact(offset, HEADER_SIZE, `VHDX header ${slot}`), slot);
    if (header) headers.push(header);
    else
      warnings.push({
        code: "VHDX_BAD_HEADER",
        severity: "corruption",
        message: `header ${slot} has a bad signature or CRC-32C (the other copy is used)`,
        file: file.path,
        offset,
      });
  }
  if (headers.length === 0) {
    fail("VHDX_BAD_HEADER", "both VHDX headers have a bad signature or CRC-32C", file, HEADER_OFFSETS[0]);
  }
  const current = headers.reduce((a, b) => (b.sequenceNumber > a.sequenceNumber ? b : a));
  if (current.version !== 1) {
    fail("VHDX_UNSUPPORTED_VERSION", `VHDX header version ${current.version} (only 1 exists)`, file);
  }
  return current;
}

/** §2.2.3: the first region table with a good CRC; both are identical when the file is sane. */
async function readRegions(file: VhdxSource, warnings: CheckFinding[]): Promise<RegionEntry[]> {
  let regions: RegionEntry[] | undefined;
  for (const [i, offset] of REGION_TABLE_OFFSETS.entries()) {
    const parsed = parseRegionTable(
      await file.readExact(offset, REGION_TABLE_SIZE, `VHDX region table ${i + 1}`),
    );
    if (!parsed) {
      warnings.push({
        code: "VHDX_BAD_REGION_TABLE",
        severity: "corruption",
        message: `region table ${i + 1} has a bad signature, CRC-32C or entry count`,
        file: file.path,
        offset,
      });
    }
    regions ??= parsed;
  }
  if (!regions)
    fail("VHDX_BAD_REGION_TABLE", "both VHDX region tables are damaged", file, REGION_TABLE_OFFSETS[0]);
  for (const r of regions) {
    if (r.required && r.guid !== GUID.bat && r.guid !== GUID.metadata) {
      fail(
        "VHDX_UNKNOWN_REGION",
        `required region ${r.guid} is unknown to this reader`,
        file,
        REGION_TABLE_OFFSETS[0],
      );
    }
    if (r.fileOffset % ALIGNMENT !== 0 || r.fileOffset < HEADER_SECTION_SIZE || r.length % ALIGNMENT !== 0) {
      fail(
        "VHDX_BAD_REGION",
        `region ${r.guid} at ${r.fileOffset} (+${r.length}) is not 1 MiB aligned`,
        file,
        r.fileOffset,
      );
    }
    if (r.fileOffset + r.length > file.size) {
      fail(
        "VHDX_BAD_REGION",
        `region ${r.guid} (${r.length} bytes at ${r.fileOffset}) lies past the end of the file`,
        file,
        r.fileOffset,
      );
    }
  }
  return regions;
}

interface MetadataItems {
  items: Map<string, Buffer>;
}

/** §2.6: reads the metadata table and every item this reader knows. */
async function readMetadata(file: VhdxSource, offset: number, length: number): Promise<MetadataItems> {
  const table = await file.readExact(offset, MT_TABLE_SIZE, "VHDX metadata table");
  if (!table.subarray(0, 8).equals(MT_SIGNATURE))
    fail("VHDX_BAD_METADATA", 'no "metadata" signature', file, offset);
  const count = table.readUInt16LE(MT_ENTRY_COUNT);
  if (count > MT_MAX_ENTRIES)
    fail("VHDX_BAD_METADATA", `${count} metadata entries (at most 2047)`, file, offset);
  const known = new Set<string>(Object.values(GUID));
  const items = new Map<string, Buffer>();
  for (let i = 0; i < count; i++) {
    const at = MT_HEADER_SIZE + i * MT_ENTRY_SIZE;
    const id = guidText(table.subarray(at + ME_ITEM_ID));
    const itemOffset = table.readUInt32LE(at + ME_OFFSET);
    const itemLength = table.readUInt32LE(at + ME_LENGTH);
    const flags = table.readUInt32LE(at + ME_FLAGS);
    if (!known.has(id)) {
      if (flags & ME_IS_REQUIRED)
        fail(
          "VHDX_UNKNOWN_METADATA",
          `required metadata item ${id} is unknown to this reader`,
          file,
          offset + at,
        );
      continue;
    }
    if (
      itemLength > METADATA_ITEM_MAX ||
      (itemLength > 0 && itemOffset < MT_TABLE_SIZE) ||
      itemOffset + itemLength > length
    ) {
      fail(
        "VHDX_BAD_METADATA",
        `metadata item ${id} (${itemLength} bytes at +${itemOffset}) lies outside the metadata region`,
        file,
        offset + at,
      );
    }
    items.set(id, await file.readExact(offset + itemOffset, itemLength, `VHDX metadata item ${id}`));
  }
  return { items };
}

function requiredItem(meta: MetadataItems, id: string, name: string, size: number, file: VhdxSource): Buffer {
  const item = meta.items.get(id);
  if (!item || item.length < size)
    fail("VHDX_BAD_METADATA", `the ${name} metadata item is missing or short`, file);
  return item;
}

// ---------------------------------------------------------------------------
// Log replay (§2.3), read-only: the updates are applied in memory
// ---------------------------------------------------------------------------

/** §2.3: the log is made of 4 KiB sectors. */
const LOG_SECTOR = 4 * KiB;
// §2.3.1.1 Log entry header (64 bytes).
const LE_SIGNATURE = 0; // "loge"
const LE_CHECKSUM = 4;
const LE_ENTRY_LENGTH = 8;
const LE_TAIL = 12;
const LE_SEQUENCE = 16;
const LE_DESCRIPTOR_COUNT = 24;
const LE_LOG_GUID = 32;
const LE_FLUSHED_FILE_OFFSET = 48;
const LE_LAST_FILE_OFFSET = 56;
const LE_HEADER_SIZE = 64;
const LOG_ENTRY_SIGNATURE = Buffer.from("loge", "latin1");
// §2.3.1.2 zero descriptor and §2.3.1.3 data descriptor (32 bytes each).
const DESCRIPTOR_SIZE = 32;
const ZERO_DESCRIPTOR_SIGNATURE = Buffer.from("zero", "latin1");
const ZD_LENGTH = 8;
const ZD_FILE_OFFSET = 16;
const ZD_SEQUENCE = 24;
const DATA_DESCRIPTOR_SIGNATURE = Buffer.from("desc", "latin1");
const DD_TRAILING_BYTES = 4;
const DD_LEADING_BYTES = 8;
const DD_FILE_OFFSET = 16;
const DD_SEQUENCE = 24;
// §2.3.1.4 data sector: "data", sequence high, 4084 bytes, sequence low.
const DATA_SECTOR_SIGNATURE = Buffer.from("data", "latin1");
const DS_SEQUENCE_HIGH = 4;
const DS_DATA = 8;
const DS_DATA_BYTES = 4084;
const DS_SEQUENCE_LOW = 4092;
/** Replayed updates are kept in memory: refuse logs that would hold more than this. */
const MAX_REPLAY_BYTES = 64 * MiB;

/** One update of a valid log entry: 4 KiB of data, or zeros over a range. */
type LogUpdate =
  | { kind: "data"; fileOffset: number; sector: Buffer }
  | { kind: "zero"; fileOffset: number; length: number };

interface LogEntry {
  offset: number;
  length: number;
  tail: number;
  sequence: bigint;
  /** The file size the writer had made durable when it wrote the entry. */
  flushedFileOffset: number;
  lastFileOffset: number;
  updates: LogUpdate[];
}

/** Reads `length` bytes of the circular log starting `offset` bytes into it. */
async function readLog(
  file: RandomAccessFile,
  header: VhdxHeader,
  offset: number,
  length: number,
): Promise<Buffer> {
  const out = Buffer.alloc(length);
  for (let done = 0; done < length; ) {
    const at = (offset + done) % header.logLength;
    const n = Math.min(length - done, header.logLength - at);
    await file.readExact(header.logOffset + at, n, "VHDX log", out.subarray(done, done + n));
    done += n;
  }
  return out;
}

/**
 * Parses the log entry at `offset` (§2.3.1); undefined unless it is wholly
 * valid: signature, length, CRC-32C over the whole entry, the header's log
 * GUID, and every descriptor and data sector carrying the entry's sequence number.
 */
async function readLogEntry(
  file: RandomAccessFile,
  header: VhdxHeader,
  offset: number,
): Promise<LogEntry | undefined> {
  const head = await readLog(file, header, offset, LOG_SECTOR);
  if (!head.subarray(LE_SIGNATURE, LE_SIGNATURE + 4).equals(LOG_ENTRY_SIGNATURE)) return undefined;
  const length = head.readUInt32LE(LE_ENTRY_LENGTH);
  const count = head.readUInt32LE(LE_DESCRIPTOR_COUNT);
  if (length < LOG_SECTOR || length % LOG_SECTOR !== 0 || length > header.logLength) return undefined;
  if (guidText(head.subarray(LE_LOG_GUID)) !== header.logGuid) return undefined;
  const descriptorSectors = Math.ceil((LE_HEADER_SIZE + count * DESCRIPTOR_SIZE) / LOG_SECTOR);
  if (descriptorSectors * LOG_SECTOR > length) return undefined;
  const entry = await readLog(file, header, offset, length);
  if (checksumWithFieldZero(entry, LE_CHECKSUM) !== entry.readUInt32LE(LE_CHECKSUM)) return undefined;
  const sequence = entry.readBigUInt64LE(LE_SEQUENCE);
  const updates: LogUpdate[] = [];
  let dataSector = descriptorSectors;
  for (let i = 0; i < count; i++) {
    const d = entry.subarray(
      LE_HEADER_SIZE + i * DESCRIPTOR_SIZE,
      LE_HEADER_SIZE + (i + 1) * DESCRIPTOR_SIZE,
    );
    const signature = d.subarray(0, 4);
    if (signature.equals(ZERO_DESCRIPTOR_SIGNATURE)) {
      if (d.readBigUInt64LE(ZD_SEQUENCE) !== sequence) return undefined;
      const zeroLength = safeNumber(d.readBigUInt64LE(ZD_LENGTH));
      const fileOffset = safeNumber(d.readBigUInt64LE(ZD_FILE_OFFSET));
      if (zeroLength % LOG_SECTOR !== 0 || fileOffset % LOG_SECTOR !== 0) return undefined;
      updates.push({ kind: "zero", fileOffset, length: zeroLength });
    } else if (signature.equals(DATA_DESCRIPTOR_SIGNATURE)) {
      if (d.readBigUInt64LE(DD_SEQUENCE) !== sequence) return undefined;
      const fileOffset = safeNumber(d.readBigUInt64LE(DD_FILE_OFFSET));
      if (fileOffset % LOG_SECTOR !== 0 || (dataSector + 1) * LOG_SECTOR > length) return undefined;
      const ds = entry.subarray(dataSector * LOG_SECTOR, (dataSector + 1) * LOG_SECTOR);
      dataSector++;
      const dsSequence =
        (BigInt(ds.readUInt32LE(DS_SEQUENCE_HIGH)) << 32n) | BigInt(ds.readUInt32LE(DS_SEQUENCE_LOW));
      if (!ds.subarray(0, 4).equals(DATA_SECTOR_SIGNATURE) || dsSequence !== sequence) return undefined;
      // the sector's first 8 and last 4 bytes live in the descriptor (they hold the signature and sequence in the log)
      const sector = Buffer.alloc(LOG_SECTOR);
      d.copy(sector, 0, DD_LEADING_BYTES, DD_LEADING_BYTES + 8);
      ds.copy(sector, 8, DS_DATA, DS_DATA + DS_DATA_BYTES);
      d.copy(sector, LOG_SECTOR - 4, DD_TRAILING_BYTES, DD_TRAILING_BYTES + 4);
      updates.push({ kind: "data", fileOffset, sector });
    } else return undefined;
  }
  return {
    offset,
    length,
    tail: entry.readUInt32LE(LE_TAIL),
    sequence,
    flushedFileOffset: safeNumber(entry.readBigUInt64LE(LE_FLUSHED_FILE_OFFSET)),
    lastFileOffset: safeNumber(entry.readBigUInt64LE(LE_LAST_FILE_OFFSET)),
    updates,
  };
}

const safeNumber = (v: bigint) => (v > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(v));

/**
 * §2.3.3: the active sequence ends at the valid entry with the highest
 * sequence number (the head) and starts at the head's tail; every entry in
 * between must be valid, contiguous and numbered one more than the one before.
 */
async function activeSequence(file: RandomAccessFile, header: VhdxHeader): Promise<LogEntry[]> {
  let head: LogEntry | undefined;
  for (let offset = 0; offset < header.logLength; offset += LOG_SECTOR) {
    const entry = await readLogEntry(file, header, offset);
    if (entry && (!head || entry.sequence > head.sequence)) head = entry;
    if (entry) offset += entry.length - LOG_SECTOR;
  }
  if (!head) return [];
  const sequence: LogEntry[] = [];
  let offset = head.tail;
  for (let step = 0; step <= header.logLength / LOG_SECTOR; step++) {
    const entry: LogEntry | undefined =
      offset === head.offset ? head : await readLogEntry(file, header, offset);
    const previous = sequence.at(-1);
    if (!entry || (previous && entry.sequence !== previous.sequence + 1n)) {
      fail(
        "VHDX_LOG_CORRUPT",
        `the log's active sequence is broken at log offset ${offset} (tail ${head.tail}, head ${head.offset})`,
        file,
        header.logOffset + offset,
      );
    }
    sequence.push(entry);
    if (entry === head) return sequence;
    offset = (offset + entry.length) % header.logLength;
  }
  fail("VHDX_LOG_CORRUPT", "the log's active sequence does not end at its head", file, header.logOffset);
}

/** The file as it reads after the log's active sequence is applied; the file itself is never written. */
class LogReplayedFile implements VhdxSource {
  /** 4 KiB page index → its bytes after the log (a zero page is stored as an empty buffer). */
  private readonly pages = new Map<number, Buffer>();
  readonly size: number;
  /** Log entries applied. */
  readonly entries: number;

  constructor(
    private readonly file: RandomAccessFile,
    sequence: LogEntry[],
  ) {
    this.entries = sequence.length;
    let size = file.size;
    for (const entry of sequence) {
      for (const update of entry.updates) {
        if (update.kind === "data") this.pages.set(update.fileOffset / LOG_SECTOR, update.sector);
        else {
          for (let at = update.fileOffset; at < update.fileOffset + update.length; at += LOG_SECTOR) {
            this.pages.set(at / LOG_SECTOR, EMPTY);
            if (this.pages.size * LOG_SECTOR > MAX_REPLAY_BYTES) break;
          }
        }
        size = Math.max(size, update.fileOffset + (update.kind === "data" ? LOG_SECTOR : update.length));
      }
      // §2.3.3: the file must be at least LastFileOffset long after replay
      size = Math.max(size, entry.lastFileOffset);
    }
    if (this.pages.size * LOG_SECTOR > MAX_REPLAY_BYTES) {
      fail(
        "VHDX_LOG_TOO_LARGE",
        `the log updates more than ${MAX_REPLAY_BYTES} bytes; replay it with Hyper-V or qemu-img first`,
        file,
      );
    }
    this.size = size;
  }

  get path(): string {
    return this.file.path;
  }

  async readExact(offset: number, length: number, what: string, into?: Buffer): Promise<Buffer> {
    if (offset < 0 || offset + length > this.size) {
      fail(
        "TRUNCATED",
        `${what} (${length} bytes at offset ${offset}) lies past the end of the file (${this.size} bytes, log replayed)`,
        this.file,
        offset,
      );
    }
    const out = into ? into.subarray(0, length) : Buffer.allocUnsafe(length);
    const inFile = Math.max(0, Math.min(length, this.file.size - offset));
    if (inFile > 0) await this.file.readExact(offset, inFile, what, out.subarray(0, inFile));
    out.fill(0, inFile);
    for (let page = Math.floor(offset / LOG_SECTOR); page * LOG_SECTOR < offset + length; page++) {
      const bytes = this.pages.get(page);
      if (!bytes) continue;
      const pageStart = page * LOG_SECTOR;
      const from = Math.max(offset, pageStart);
      const to = Math.min(offset + length, pageStart + LOG_SECTOR);
      if (bytes.length === 0) out.fill(0, from - offset, to - offset);
      else bytes.copy(out, from - offset, from - pageStart, to - pageStart);
    }
    return out;
  }

  async close(): Promise<void> {
    await this.file.close();
  }
}

const EMPTY = Buffer.alloc(0);

/** Finds and applies the log's active sequence in memory (§2.3.3), or refuses a log that cannot be replayed. */
async function replayLog(file: RandomAccessFile, header: VhdxHeader): Promise<LogReplayedFile> {
  const where = HEADER_OFFSETS[header.slot - 1] + H_LOG_OFFSET;
  if (header.logVersion !== 0)
    fail(
      "VHDX_LOG_NOT_EMPTY",
      `log version ${header.logVersion} is unknown: cannot replay the non-empty log`,
      file,
      where,
    );
  if (
    header.logLength === 0 ||
    header.logLength % MiB !== 0 ||
    header.logOffset % MiB !== 0 ||
    header.logOffset < HEADER_SECTION_SIZE ||
    header.logOffset + header.logLength > file.size
  ) {
    fail(
      "VHDX_LOG_CORRUPT",
      `the log (${header.logLength} bytes at ${header.logOffset}) is misplaced: cannot replay it`,
      file,
      where,
    );
  }
  if (header.logLength > MAX_REPLAY_BYTES) {
    // scanning a huge log 4 KiB at a time would take minutes; real logs are 1 MiB (Hyper-V, qemu)
    fail(
      "VHDX_LOG_TOO_LARGE",
      `the log is ${header.logLength} bytes (ovfkit replays logs up to ${MAX_REPLAY_BYTES} bytes)`,
      file,
      where,
    );
  }
  const sequence = await activeSequence(file, header);
  const head = sequence.at(-1);
  // §2.3.1.1: a file shorter than the head's FlushedFileOffset lost data the log relies on
  if (head && head.flushedFileOffset > file.size) {
    fail(
      "VHDX_LOG_CORRUPT",
      `the log's head entry says the file was flushed up to ${head.flushedFileOffset} bytes, but it has ${file.size}: the file was truncated`,
      file,
      header.logOffset + head.offset,
    );
  }
  return new LogReplayedFile(file, sequence);
}

// §2.6.2.6 Parent locator: 20-byte header, then 12-byte key/value entries (offsets from the item's start, UTF-16LE).
const VHDX_PARENT_LOCATOR_TYPE = "B04AEFB7-D19E-4A81-B789-25B8E9445913";
const PL_KEY_VALUE_COUNT = 18;
const PL_HEADER_SIZE = 20;
const PL_ENTRY_SIZE = 12;

function parseParentLocator(meta: MetadataItems, file: VhdxSource, where: number): Map<string, string> {
  const item = meta.items.get(GUID.parentLocator);
  if (!item || item.length < PL_HEADER_SIZE)
    fail("VHDX_BAD_METADATA", "a differencing disk without a parent locator", file, where);
  if (guidText(item) !== VHDX_PARENT_LOCATOR_TYPE)
    fail("VHDX_BAD_METADATA", `unknown parent locator type ${guidText(item)}`, file, where);
  const count = item.readUInt16LE(PL_KEY_VALUE_COUNT);
  if (PL_HEADER_SIZE + count * PL_ENTRY_SIZE > item.length)
    fail("VHDX_BAD_METADATA", `parent locator claims ${count} entries`, file, where);
  const out = new Map<string, string>();
  const text = (offset: number, length: number) => {
    if (offset + length > item.length)
      fail("VHDX_BAD_METADATA", "a parent locator key or value lies outside the item", file, where);
    return item.toString("utf16le", offset, offset + length);
  };
  for (let i = 0; i < count; i++) {
    const at = PL_HEADER_SIZE + i * PL_ENTRY_SIZE;
    const key = text(item.readUInt32LE(at), item.readUInt16LE(at + 8));
    out.set(key, text(item.readUInt32LE(at + 4), item.readUInt16LE(at + 10)));
  }
  return out;
}

const isPowerOfTwo = (n: number) => n > 0 && (n & (n - 1)) === 0;

/** Opens the structures of a VHDX: headers, regions, metadata, BAT geometry. */
export async function loadVhdxLayout(
  rawFile: RandomAccessFile,
  options: { replayLog?: boolean } = {},
): Promise<VhdxLayout> {
  const warnings: CheckFinding[] = [];
  const creator = await readFileIdentifier(rawFile);
  const header = await readCurrentHeader(rawFile, warnings);
  let file: VhdxSource = rawFile;
  let replayedLogEntries = 0;
  if (header.logGuid !== ZERO_GUID && options.replayLog !== false) {
    const replayed = await replayLog(rawFile, header);
    file = replayed;
    replayedLogEntries = replayed.entries;
  }
  const regions = await readRegions(file, warnings);
  const bat = regions.find((r) => r.guid === GUID.bat);
  const metadata = regions.find((r) => r.guid === GUID.metadata);
  if (!bat || !metadata)
    fail(
      "VHDX_BAD_REGION_TABLE",
      "the region table lacks the BAT or the metadata region",
      file,
      REGION_TABLE_OFFSETS[0],
    );
  const meta = await readMetadata(file, metadata.fileOffset, metadata.length);

  const fileParameters = requiredItem(meta, GUID.fileParameters, "file parameters", 8, file);
  const blockSize = fileParameters.readUInt32LE(0);
  const fpFlags = fileParameters.readUInt32LE(4);
  const virtualSize = Number(
    requiredItem(meta, GUID.virtualDiskSize, "virtual disk size", 8, file).readBigUInt64LE(0),
  );
  const logicalSectorSize = requiredItem(
    meta,
    GUID.logicalSectorSize,
    "logical sector size",
    4,
    file,
  ).readUInt32LE(0);
  const physicalSectorSize = requiredItem(
    meta,
    GUID.physicalSectorSize,
    "physical sector size",
    4,
    file,
  ).readUInt32LE(0);
  const page83Item = meta.items.get(GUID.page83);
  if (!isPowerOfTwo(blockSize) || blockSize < MIN_BLOCK_SIZE || blockSize > MAX_BLOCK_SIZE) {
    fail(
      "VHDX_BAD_METADATA",
      `block size ${blockSize} is not a power of two from 1 MiB to 256 MiB`,
      file,
      metadata.fileOffset,
    );
  }
  if (logicalSectorSize !== 512 && logicalSectorSize !== 4096) {
    fail(
      "VHDX_BAD_METADATA",
      `logical sector size ${logicalSectorSize} (512 or 4096 expected)`,
      file,
      metadata.fileOffset,
    );
  }
  if (physicalSectorSize !== 512 && physicalSectorSize !== 4096) {
    fail(
      "VHDX_BAD_METADATA",
      `physical sector size ${physicalSectorSize} (512 or 4096 expected)`,
      file,
      metadata.fileOffset,
    );
  }
  if (virtualSize <= 0 || virtualSize > MAX_VIRTUAL_SIZE || virtualSize % logicalSectorSize !== 0) {
    fail(
      "VHDX_BAD_METADATA",
      `virtual size ${virtualSize} is not a multiple of the sector size up to 64 TiB`,
      file,
      metadata.fileOffset,
    );
  }
  const hasParent = (fpFlags & FP_HAS_PARENT) !== 0;
  const chunkRatio = (SECTORS_PER_CHUNK * logicalSectorSize) / blockSize;
  const dataBlocks = Math.ceil(virtualSize / blockSize);
  const bitmapBlocks = Math.ceil(dataBlocks / chunkRatio);
  // §2.5: a dynamic/fixed BAT ends after the last payload entry; a differencing one also holds the last bitmap entry.
  const batEntries = hasParent
    ? bitmapBlocks * (chunkRatio + 1)
    : dataBlocks + Math.floor((dataBlocks - 1) / chunkRatio);
  if (batEntries * BAT_ENTRY_SIZE > bat.length) {
    fail(
      "VHDX_BAD_BAT",
      `the BAT region (${bat.length} bytes) cannot hold ${batEntries} entries`,
      file,
      bat.fileOffset,
    );
  }
  return {
    file,
    replayedLogEntries,
    creator,
    header,
    warnings,
    batOffset: bat.fileOffset,
    batLength: bat.length,
    metadataOffset: metadata.fileOffset,
    metadataLength: metadata.length,
    blockSize,
    leaveBlocksAllocated: (fpFlags & FP_LEAVE_BLOCKS_ALLOCATED) !== 0,
    hasParent,
    parentLocator: hasParent ? parseParentLocator(meta, file, metadata.fileOffset) : undefined,
    virtualSize,
    logicalSectorSize,
    physicalSectorSize,
    page83: page83Item && page83Item.length >= 16 ? guidText(page83Item) : "",
    chunkRatio,
    dataBlocks,
    batEntries,
  };
}

/** §2.5: payload block `block`'s index in the BAT (a sector bitmap entry follows every chunkRatio payload entries). */
export function batIndexOfBlock(block: number, chunkRatio: number): number {
  return block + Math.floor(block / chunkRatio);
}

interface BatEntry {
  state: number;
  /** File offset of the block in bytes (0 when none). */
  fileOffset: number;
}

function decodeBatEntry(raw: bigint): BatEntry {
  return { state: Number(raw & BAT_STATE_MASK), fileOffset: Number(raw >> BAT_OFFSET_SHIFT) * MiB };
}

/** The BAT, read in 64 KiB pages on demand (a 64 TiB disk with 1 MiB blocks has a 512 MiB BAT). */
class BatCache {
  private static readonly PAGE_ENTRIES = 8192;
  private static readonly MAX_PAGES = 64;
  private readonly pages = new Map<number, Buffer>();

  constructor(private readonly layout: VhdxLayout) {}

  async entry(index: number): Promise<BatEntry> {
    const page = Math.floor(index / BatCache.PAGE_ENTRIES);
    let buf = this.pages.get(page);
    if (!buf) {
      const first = page * BatCache.PAGE_ENTRIES;
      const count = Math.min(BatCache.PAGE_ENTRIES, this.layout.batEntries - first);
      buf = await this.layout.file.readExact(
        this.layout.batOffset + first * BAT_ENTRY_SIZE,
        count * BAT_ENTRY_SIZE,
        "VHDX BAT",
      );
      if (this.pages.size >= BatCache.MAX_PAGES) this.pages.delete(this.pages.keys().next().value as number);
      this.pages.set(page, buf);
    }
    return decodeBatEntry(buf.readBigUInt64LE((index % BatCache.PAGE_ENTRIES) * BAT_ENTRY_SIZE));
  }
}

/** What a payload block holds, resolved and validated (§2.5.1.1). */
type BlockContent =
  | { kind: "data"; fileOffset: number }
  | { kind: "zero" }
  /** Nothing here: zeros, or the parent's bytes in a differencing disk. */
  | { kind: "unallocated" }
  /** Differencing only: sectors whose bitmap bit is set are here, the others in the parent. */
  | { kind: "partial"; fileOffset: number };

/** A run of guest bytes and where they come from. */
interface Run {
  offset: number;
  length: number;
  source: "data" | "zero" | "unallocated" | "parent";
  fileOffset?: number;
}

/** §2.5.1.2: sector bitmap entry state saying the bitmap block is in the file. */
const SB_BLOCK_PRESENT = 6;
/** Differencing chains deeper than this are refused (also stops loops). */
const MAX_PARENT_DEPTH = 16;

class VhdxReader implements DiskReader {
  readonly format = "vhdx" as const;
  readonly virtualSize: number;
  readonly creator: string;
  readonly files: string[];
  readonly formatSpecific: FormatSpecificInfo;
  /** The log was not empty: the image was not closed cleanly (its log is replayed in memory). */
  readonly dirty: boolean;
  readonly backingFile?: string;
  private readonly bat: BatCache;
  private bitmapCache?: { block: number; bits: Buffer };

  constructor(
    readonly layout: VhdxLayout,
    private readonly parent?: DiskReader,
  ) {
    this.virtualSize = layout.virtualSize;
    this.creator = layout.creator;
    this.files = [layout.file.path, ...(parent?.files ?? [])];
    this.backingFile = parent?.path;
    this.bat = new BatCache(layout);
    this.dirty = layout.header.logGuid !== ZERO_GUID;
    this.formatSpecific = {
      "block-size": layout.blockSize,
      "logical-sector-size": layout.logicalSectorSize,
      "physical-sector-size": layout.physicalSectorSize,
      "leave-blocks-allocated": layout.leaveBlocksAllocated,
      "header-sequence-number": layout.header.sequenceNumber.toString(),
      "page83-id": layout.page83,
      "log-entries-replayed": layout.replayedLogEntries,
      ...(layout.parentLocator ? { "parent-locator": Object.fromEntries(layout.parentLocator) } : {}),
    };
  }

  get path(): string {
    return this.layout.file.path;
  }

  private checkInFile(block: number, fileOffset: number, length: number, where: number, what: string): void {
    if (fileOffset < HEADER_SECTION_SIZE || fileOffset + length > this.layout.file.size) {
      // refuse rather than invent zeros for data the file does not hold
      fail(
        "VHDX_BAD_BAT",
        `${what} ${block} at ${fileOffset} lies outside the file (${this.layout.file.size} bytes)`,
        this.layout.file,
        where,
      );
    }
  }

  /** Resolves payload block `block` (§2.5.1.1), checking that its data lies inside the file. */
  async block(block: number): Promise<BlockContent> {
    const entryIndex = batIndexOfBlock(block, this.layout.chunkRatio);
    const entry = await this.bat.entry(entryIndex);
    const where = this.layout.batOffset + entryIndex * BAT_ENTRY_SIZE;
    switch (entry.state) {
      case PayloadState.NOT_PRESENT:
      case PayloadState.UNDEFINED:
      case PayloadState.UNMAPPED:
        return { kind: "unallocated" };
      case PayloadState.ZERO:
        return { kind: "zero" };
      case PayloadState.FULLY_PRESENT:
        this.checkInFile(block, entry.fileOffset, this.layout.blockSize, where, "payload block");
        return { kind: "data", fileOffset: entry.fileOffset };
      case PayloadState.PARTIALLY_PRESENT:
        if (!this.layout.hasParent)
          fail(
            "VHDX_BAD_BAT",
            `payload block ${block} is PARTIALLY_PRESENT in a disk without a parent`,
            this.layout.file,
            where,
          );
        this.checkInFile(block, entry.fileOffset, this.layout.blockSize, where, "payload block");
        return { kind: "partial", fileOffset: entry.fileOffset };
      default:
        fail(
          "VHDX_BAD_BAT",
          `payload block ${block} has the invalid state ${entry.state}`,
          this.layout.file,
          where,
        );
    }
  }

  /**
   * §2.5: the bits of block `block` in its chunk's sector bitmap block
   * (one bit per logical sector, least significant bit first).
   */
  private async sectorBitmap(block: number): Promise<Buffer> {
    if (this.bitmapCache?.block === block) return this.bitmapCache.bits;
    const { chunkRatio, blockSize, logicalSectorSize } = this.layout;
    const chunk = Math.floor(block / chunkRatio);
    const entryIndex = chunk * (chunkRatio + 1) + chunkRatio;
    const where = this.layout.batOffset + entryIndex * BAT_ENTRY_SIZE;
    const entry = await this.bat.entry(entryIndex);
    if (entry.state !== SB_BLOCK_PRESENT) {
      fail(
        "VHDX_BAD_BAT",
        `block ${block} is PARTIALLY_PRESENT but its sector bitmap block is not present (state ${entry.state})`,
        this.layout.file,
        where,
      );
    }
    this.checkInFile(chunk, entry.fileOffset, MiB, where, "sector bitmap block");
    const sectorsPerBlock = blockSize / logicalSectorSize;
    const byteOffset = ((block % chunkRatio) * sectorsPerBlock) / 8;
    const bits = await this.layout.file.readExact(
      entry.fileOffset + byteOffset,
      sectorsPerBlock / 8,
      "VHDX sector bitmap",
    );
    this.bitmapCache = { block, bits };
    return bits;
  }

  /** The runs of [start, end) with their source, block by block (and sector by sector in partial blocks). */
  private async *runs(start: number, end: number): AsyncGenerator<Run> {
    const bs = this.layout.blockSize;
    const sector = this.layout.logicalSectorSize;
    for (let pos = start; pos < end; ) {
      const block = Math.floor(pos / bs);
      const blockStart = block * bs;
      const next = Math.min(end, blockStart + bs);
      const content = await this.block(block);
      if (content.kind === "data")
        yield {
          offset: pos,
          length: next - pos,
          source: "data",
          fileOffset: content.fileOffset + (pos - blockStart),
        };
      else if (content.kind === "zero") yield { offset: pos, length: next - pos, source: "zero" };
      else if (content.kind === "unallocated")
        yield { offset: pos, length: next - pos, source: this.layout.hasParent ? "parent" : "unallocated" };
      else {
        const bits = await this.sectorBitmap(block);
        for (let at = pos; at < next; ) {
          const s = Math.floor((at - blockStart) / sector);
          const present = ((bits[s >> 3] >> (s & 7)) & 1) === 1;
          let t = s + 1;
          while (blockStart + t * sector < next && (((bits[t >> 3] >> (t & 7)) & 1) === 1) === present) t++;
          const runEnd = Math.min(next, blockStart + t * sector);
          yield present
            ? {
                offset: at,
                length: runEnd - at,
                source: "data",
                fileOffset: content.fileOffset + (at - blockStart),
              }
            : { offset: at, length: runEnd - at, source: "parent" };
          at = runEnd;
        }
      }
      pos = next;
    }
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
    for await (const run of this.runs(start, end)) {
      if (run.source === "data") yield* push({ offset: run.offset, length: run.length, kind: "data" });
      else if (run.source !== "parent")
        yield* push({ offset: run.offset, length: run.length, kind: run.source });
      else {
        const inParent = this.parent
          ? Math.max(0, Math.min(run.length, this.parent.virtualSize - run.offset))
          : 0;
        if (inParent > 0 && this.parent)
          for await (const e of this.parent.map(run.offset, inParent)) yield* push(e);
        if (inParent < run.length)
          yield* push({ offset: run.offset + inParent, length: run.length - inParent, kind: "unallocated" });
      }
    }
    if (pending) yield pending;
  }

  async read(offset: number, length: number, into?: Buffer): Promise<Buffer> {
    checkReadRange(this.path, this.virtualSize, offset, length);
    const out = into ? into.subarray(0, length) : Buffer.allocUnsafe(length);
    for await (const run of this.runs(offset, offset + length)) {
      const target = out.subarray(run.offset - offset, run.offset - offset + run.length);
      if (run.source === "data") {
        await this.layout.file.readExact(run.fileOffset as number, run.length, "VHDX payload block", target);
      } else if (run.source === "parent" && this.parent) {
        const inParent = Math.max(0, Math.min(run.length, this.parent.virtualSize - run.offset));
        if (inParent > 0) await this.parent.read(run.offset, inParent, target);
        target.fill(0, inParent);
      } else target.fill(0);
    }
    return out;
  }

  async close(): Promise<void> {
    await this.parent?.close();
    await this.layout.file.close();
  }
}

/** "{guid}" or "guid" → upper-case text without braces. */
const bareGuid = (text: string) => text.replace(/[{}]/g, "").trim().toUpperCase();

/**
 * §2.6.2.6.1: finds the parent of a differencing disk from its locator:
 * relative_path first, then absolute_win32_path and volume_path when they
 * are usable here, then the parent's file name beside the child. The
 * parent must be a VHDX whose DataWriteGuid equals parent_linkage (or
 * parent_linkage2) and, unless allowed, lie in the child's folder tree.
 */
async function openParent(layout: VhdxLayout, options: OpenOptions): Promise<VhdxReader> {
  const file = layout.file;
  const locator = layout.parentLocator ?? new Map<string, string>();
  const depth = (options.depth ?? 0) + 1;
  if (depth > MAX_PARENT_DEPTH)
    fail(
      "VHDX_CHAIN_TOO_DEEP",
      `the parent chain is deeper than ${MAX_PARENT_DEPTH} (or loops)`,
      file,
      layout.metadataOffset,
    );
  const linkage = [locator.get("parent_linkage"), locator.get("parent_linkage2")]
    .filter((g): g is string => !!g)
    .map(bareGuid);
  if (linkage.length === 0)
    fail("VHDX_BAD_METADATA", "the parent locator has no parent_linkage", file, layout.metadataOffset);
  const childDir = dirname(realpathSync(file.path));
  const texts = ["relative_path", "absolute_win32_path", "volume_path"]
    .map((k) => locator.get(k))
    .filter((t): t is string => !!t);
  const candidates: string[] = [];
  for (const text of texts) {
    const slashed = text.replace(/\\/g, "/");
    if (!/^[A-Za-z]:\//.test(slashed) && !slashed.startsWith("//"))
      candidates.push(resolve(childDir, slashed));
  }
  for (const text of texts) {
    const name = basename(text.replace(/\\/g, "/"));
    if (name) candidates.push(resolve(childDir, name));
  }
  let outside: string | undefined;
  let mismatch: string | undefined;
  for (const candidate of [...new Set(candidates)]) {
    if (!existsSync(candidate)) continue;
    const real = realpathSync(candidate);
    if (real === realpathSync(file.path))
      fail("VHDX_CHAIN_TOO_DEEP", "the disk names itself as its parent", file, layout.metadataOffset);
    if (!options.allowParentOutside && !isInsideFolder(childDir, real)) {
      outside ??= real;
      continue;
    }
    const parent = await openVhdx(real, { ...options, depth });
    if (!linkage.includes(parent.layout.header.dataWriteGuid)) {
      mismatch ??= `${real} has DataWriteGuid ${parent.layout.header.dataWriteGuid}; the child expects ${linkage.join(" or ")}`;
      await parent.close();
      continue;
    }
    return parent;
  }
  if (mismatch)
    fail(
      "VHDX_PARENT_MISMATCH",
      `the parent was modified after the child was made: ${mismatch}`,
      file,
      layout.metadataOffset,
    );
  if (outside)
    fail(
      "VHDX_PARENT_OUTSIDE",
      `the parent ${outside} is outside the child's folder (allow it with --allow-parent-outside)`,
      file,
      layout.metadataOffset,
    );
  fail(
    "VHDX_PARENT_NOT_FOUND",
    `the parent disk was not found (locator: ${texts.join(", ") || "no paths"})`,
    file,
    layout.metadataOffset,
  );
}

export async function openVhdx(path: string, options: OpenOptions = {}): Promise<VhdxReader> {
  const file = await RandomAccessFile.open(path);
  try {
    const layout = await loadVhdxLayout(file);
    const parent = layout.hasParent && !options.noBacking ? await openParent(layout, options) : undefined;
    return new VhdxReader(layout, parent);
  } catch (error) {
    await file.close();
    throw asOvfkitError(error, path);
  }
}

// ---------------------------------------------------------------------------
// check
// ---------------------------------------------------------------------------

/** Structural check: headers and region tables (both copies), metadata, log, every BAT entry. */
export async function checkVhdx(path: string): Promise<CheckReport> {
  const file = await RandomAccessFile.open(path);
  const findings: CheckFinding[] = [];
  const report = (extra: Partial<CheckReport> = {}): CheckReport => ({
    filename: path,
    format: "vhdx",
    findings,
    ...extra,
  });
  try {
    let layout: VhdxLayout;
    try {
      layout = await loadVhdxLayout(file);
    } catch (error) {
      findings.push(findingFromError(error, path));
      return report();
    }
    findings.push(...layout.warnings);
    if (layout.header.logGuid !== ZERO_GUID) {
      findings.push({
        code: "VHDX_LOG_NOT_EMPTY",
        severity: "warning",
        message: `the log is not empty (log GUID ${layout.header.logGuid}): the image was not closed cleanly; ${layout.replayedLogEntries} log entries are replayed in memory when reading (the file is not modified)`,
        file: path,
        offset: HEADER_OFFSETS[layout.header.slot - 1] + H_LOG_GUID,
      });
    }
    const { allocated, total } = await checkBat(layout, findings);
    return report({ allocatedClusters: allocated, totalClusters: total });
  } finally {
    await file.close();
  }
}

/** Every payload entry: valid state, data inside the file, past the header section, no two blocks overlapping. */
async function checkBat(
  layout: VhdxLayout,
  findings: CheckFinding[],
): Promise<{ allocated: number; total: number }> {
  const bat = new BatCache(layout);
  const owners = new Map<number, number>();
  const fileMiB = Math.ceil(layout.file.size / MiB);
  const blockMiB = layout.blockSize / MiB;
  const reserved = reservedMiB(layout);
  let allocated = 0;
  const add = (finding: Omit<CheckFinding, "file" | "severity">) => {
    if (findings.length < 1000) findings.push({ ...finding, severity: "corruption", file: layout.file.path });
  };
  for (let block = 0; block < layout.dataBlocks; block++) {
    const index = batIndexOfBlock(block, layout.chunkRatio);
    const where = layout.batOffset + index * BAT_ENTRY_SIZE;
    const entry = await bat.entry(index);
    if (
      ![0, 1, 2, 3, 6, 7].includes(entry.state) ||
      (entry.state === PayloadState.PARTIALLY_PRESENT && !layout.hasParent)
    ) {
      add({
        code: "VHDX_BAD_BAT_STATE",
        message: `payload block ${block} has the invalid state ${entry.state}`,
        offset: where,
      });
      continue;
    }
    if (entry.state !== PayloadState.FULLY_PRESENT && entry.state !== PayloadState.PARTIALLY_PRESENT)
      continue;
    allocated++;
    const firstMiB = entry.fileOffset / MiB;
    if (entry.fileOffset + layout.blockSize > layout.file.size) {
      add({
        code: "VHDX_BAT_OUT_OF_RANGE",
        message: `payload block ${block} at ${entry.fileOffset} ends past the end of the file (${layout.file.size} bytes)`,
        offset: where,
      });
      continue;
    }
    for (let mib = firstMiB; mib < firstMiB + blockMiB && mib < fileMiB; mib++) {
      if (reserved.has(mib)) {
        add({
          code: "VHDX_BAT_OVERLAP",
          message: `payload block ${block} overlaps the headers, log, BAT or metadata at MiB ${mib}`,
          offset: where,
        });
        break;
      }
      const other = owners.get(mib);
      if (other !== undefined) {
        add({
          code: "VHDX_BAT_OVERLAP",
          message: `payload blocks ${other} and ${block} overlap at file offset ${mib * MiB}`,
          offset: where,
        });
        break;
      }
      owners.set(mib, block);
    }
  }
  if (layout.hasParent) await checkSectorBitmaps(layout, bat, owners, reserved, add);
  return { allocated, total: layout.dataBlocks };
}

/** Differencing disks: each chunk's sector bitmap entry (§2.5.1.2) is absent or a 1 MiB block inside the file, shared with nothing. */
async function checkSectorBitmaps(
  layout: VhdxLayout,
  bat: BatCache,
  owners: Map<number, number>,
  reserved: Set<number>,
  add: (finding: Omit<CheckFinding, "file" | "severity">) => void,
): Promise<void> {
  const chunks = Math.ceil(layout.dataBlocks / layout.chunkRatio);
  for (let chunk = 0; chunk < chunks; chunk++) {
    const index = chunk * (layout.chunkRatio + 1) + layout.chunkRatio;
    const where = layout.batOffset + index * BAT_ENTRY_SIZE;
    const entry = await bat.entry(index);
    if (entry.state === 0) continue;
    if (entry.state !== SB_BLOCK_PRESENT) {
      add({
        code: "VHDX_BAD_BAT_STATE",
        message: `sector bitmap entry of chunk ${chunk} has the invalid state ${entry.state}`,
        offset: where,
      });
      continue;
    }
    const mib = entry.fileOffset / MiB;
    if (entry.fileOffset + MiB > layout.file.size) {
      add({
        code: "VHDX_BAT_OUT_OF_RANGE",
        message: `sector bitmap block of chunk ${chunk} at ${entry.fileOffset} lies past the end of the file`,
        offset: where,
      });
    } else if (reserved.has(mib) || owners.has(mib)) {
      add({
        code: "VHDX_BAT_OVERLAP",
        message: `sector bitmap block of chunk ${chunk} at ${entry.fileOffset} overlaps other structures or payload`,
        offset: where,
      });
    } else owners.set(mib, -1 - chunk);
  }
}

/** The MiB slots of the file that hold structures, not payload. */
function reservedMiB(layout: VhdxLayout): Set<number> {
  const out = new Set<number>([0]);
  const addRange = (offset: number, length: number) => {
    for (let m = Math.floor(offset / MiB); m < Math.ceil((offset + length) / MiB); m++) out.add(m);
  };
  addRange(layout.batOffset, layout.batLength);
  addRange(layout.metadataOffset, layout.metadataLength);
  if (layout.header.logLength > 0) addRange(layout.header.logOffset, layout.header.logLength);
  return out;
}

// ---------------------------------------------------------------------------
// write
// ---------------------------------------------------------------------------

export const VHDX_WRITER_OPTIONS: Readonly<Record<string, string>> = {
  subformat: "dynamic (default: only blocks holding data are stored) or fixed (every block stored)",
  block_size: "payload block size, a power of two from 1M to 256M (default 32M, like qemu-img)",
  log_size: "log region size, a multiple of 1M (default 1M)",
};

const DEFAULT_BLOCK_SIZE = 32 * MiB;
const DEFAULT_LOG_SIZE = 1 * MiB;
const METADATA_REGION_SIZE = 1 * MiB;
const LOGICAL_SECTOR = 512;
const PHYSICAL_SECTOR = 4096;

/** "32M", "1048576", "1G" → bytes. */
function parseSize(key: string, text: string): number {
  const m = /^(\d+)([kKmMgG]?)$/.exec(text.trim());
  if (!m) throw new OvfkitError("BAD_OPTION", `${key}=${text} is not a size (e.g. 32M)`);
  const unit = { "": 1, k: KiB, m: MiB, g: 1024 * MiB }[m[2].toLowerCase() as "" | "k" | "m" | "g"];
  return Number(m[1]) * unit;
}

export interface VhdxWritePlan {
  fixed: boolean;
  blockSize: number;
  logSize: number;
  virtualSize: number;
  chunkRatio: number;
  dataBlocks: number;
  batEntries: number;
  logOffset: number;
  metadataOffset: number;
  batOffset: number;
  batLength: number;
  dataOffset: number;
}

export function planVhdx(sourceSize: number, options: WriterOptions): VhdxWritePlan {
  for (const key of Object.keys(options)) {
    if (!(key in VHDX_WRITER_OPTIONS)) {
      throw new OvfkitError(
        "BAD_OPTION",
        `vhdx has no option "${key}" (known: ${Object.keys(VHDX_WRITER_OPTIONS).join(", ")})`,
      );
    }
  }
  const subformat = options.subformat ?? "dynamic";
  if (subformat !== "dynamic" && subformat !== "fixed") {
    throw new OvfkitError("BAD_OPTION", `subformat=${subformat}: vhdx subformats are dynamic and fixed`);
  }
  const blockSize = options.block_size ? parseSize("block_size", options.block_size) : DEFAULT_BLOCK_SIZE;
  if (!isPowerOfTwo(blockSize) || blockSize < MIN_BLOCK_SIZE || blockSize > MAX_BLOCK_SIZE) {
    throw new OvfkitError("BAD_OPTION", `block_size=${options.block_size}: a power of two from 1M to 256M`);
  }
  const logSize = options.log_size ? parseSize("log_size", options.log_size) : DEFAULT_LOG_SIZE;
  if (logSize < MiB || logSize % MiB !== 0 || logSize > 4096 * MiB - MiB) {
    throw new OvfkitError(
      "BAD_OPTION",
      `log_size=${options.log_size}: a multiple of 1M (at least 1M, below 4G)`,
    );
  }
  // The virtual size must be a whole number of logical sectors (§2.6.2.2): round up like qemu-img.
  const virtualSize = Math.max(LOGICAL_SECTOR, Math.ceil(sourceSize / LOGICAL_SECTOR) * LOGICAL_SECTOR);
  if (virtualSize > MAX_VIRTUAL_SIZE) {
    throw new OvfkitError("BAD_OPTION", `vhdx images hold at most 64 TiB (source: ${sourceSize} bytes)`);
  }
  const chunkRatio = (SECTORS_PER_CHUNK * LOGICAL_SECTOR) / blockSize;
  const dataBlocks = Math.ceil(virtualSize / blockSize);
  const batEntries = dataBlocks + Math.floor((dataBlocks - 1) / chunkRatio);
  const logOffset = HEADER_SECTION_SIZE;
  const metadataOffset = logOffset + logSize;
  const batOffset = metadataOffset + METADATA_REGION_SIZE;
  const batLength = Math.ceil((batEntries * BAT_ENTRY_SIZE) / MiB) * MiB;
  const dataOffset = batOffset + batLength;
  return {
    fixed: subformat === "fixed",
    blockSize,
    logSize,
    virtualSize,
    chunkRatio,
    dataBlocks,
    batEntries,
    logOffset,
    metadataOffset,
    batOffset,
    batLength,
    dataOffset,
  };
}

function fileIdentifier(): Buffer {
  const buf = Buffer.alloc(FILE_ID_CREATOR_OFFSET + FILE_ID_CREATOR_BYTES);
  FILE_ID_SIGNATURE.copy(buf, 0);
  buf.write("ovfkit", FILE_ID_CREATOR_OFFSET, "utf16le");
  return buf;
}

function headerBlock(
  plan: VhdxWritePlan,
  sequence: bigint,
  fileWriteGuid: Buffer,
  dataWriteGuid: Buffer,
): Buffer {
  const buf = Buffer.alloc(HEADER_SIZE);
  HEADER_SIGNATURE.copy(buf, H_SIGNATURE);
  buf.writeBigUInt64LE(sequence, H_SEQUENCE);
  fileWriteGuid.copy(buf, H_FILE_WRITE_GUID);
  dataWriteGuid.copy(buf, H_DATA_WRITE_GUID);
  // log GUID stays zero: the log is empty (§2.3)
  buf.writeUInt16LE(0, H_LOG_VERSION);
  buf.writeUInt16LE(1, H_VERSION);
  buf.writeUInt32LE(plan.logSize, H_LOG_LENGTH);
  buf.writeBigUInt64LE(BigInt(plan.logOffset), H_LOG_OFFSET);
  buf.writeUInt32LE(crc32c(buf), H_CHECKSUM);
  return buf;
}

function regionTable(plan: VhdxWritePlan): Buffer {
  const buf = Buffer.alloc(REGION_TABLE_SIZE);
  REGION_SIGNATURE.copy(buf, RT_SIGNATURE);
  buf.writeUInt32LE(2, RT_ENTRY_COUNT);
  const entries: Array<[string, number, number]> = [
    [GUID.bat, plan.batOffset, plan.batLength],
    [GUID.metadata, plan.metadataOffset, METADATA_REGION_SIZE],
  ];
  for (const [i, [guid, offset, length]] of entries.entries()) {
    const at = RT_HEADER_SIZE + i * RT_ENTRY_SIZE;
    guidBytes(guid).copy(buf, at + RE_GUID);
    buf.writeBigUInt64LE(BigInt(offset), at + RE_FILE_OFFSET);
    buf.writeUInt32LE(length, at + RE_LENGTH);
    buf.writeUInt32LE(1, at + RE_REQUIRED);
  }
  buf.writeUInt32LE(crc32c(buf), RT_CHECKSUM);
  return buf;
}

/** §2.6: the metadata table plus its five items, laid out from 64 KiB into the region like qemu does. */
function metadataRegion(plan: VhdxWritePlan): Buffer {
  const page83 = randomBytes(16);
  const items: Array<[string, Buffer, number]> = [
    [
      GUID.fileParameters,
      u32pair(plan.blockSize, plan.fixed ? FP_LEAVE_BLOCKS_ALLOCATED : 0),
      ME_IS_REQUIRED,
    ],
    [GUID.virtualDiskSize, u64(plan.virtualSize), ME_IS_REQUIRED | ME_IS_VIRTUAL_DISK],
    [GUID.page83, page83, ME_IS_REQUIRED | ME_IS_VIRTUAL_DISK],
    [GUID.logicalSectorSize, u32(LOGICAL_SECTOR), ME_IS_REQUIRED | ME_IS_VIRTUAL_DISK],
    [GUID.physicalSectorSize, u32(PHYSICAL_SECTOR), ME_IS_REQUIRED | ME_IS_VIRTUAL_DISK],
  ];
  const buf = Buffer.alloc(MT_TABLE_SIZE + 4 * KiB);
  MT_SIGNATURE.copy(buf, 0);
  buf.writeUInt16LE(items.length, MT_ENTRY_COUNT);
  let dataAt = MT_TABLE_SIZE;
  for (const [i, [guid, data, flags]] of items.entries()) {
    const at = MT_HEADER_SIZE + i * MT_ENTRY_SIZE;
    guidBytes(guid).copy(buf, at + ME_ITEM_ID);
    buf.writeUInt32LE(dataAt, at + ME_OFFSET);
    buf.writeUInt32LE(data.length, at + ME_LENGTH);
    buf.writeUInt32LE(flags, at + ME_FLAGS);
    data.copy(buf, dataAt);
    dataAt += data.length;
  }
  return buf;
}

const u32 = (v: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v);
  return b;
};
const u32pair = (a: number, b: number) => Buffer.concat([u32(a), u32(b)]);
const u64 = (v: number) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(v));
  return b;
};

/**
 * Writes BAT entries as blocks are placed, one 64 KiB page at a time, so
 * memory stays flat whatever the disk size. Untouched entries stay zero
 * (NOT_PRESENT) because the file is extended with holes.
 */
class BatWriter {
  private static readonly PAGE_ENTRIES = 8192;
  private page = Buffer.alloc(BatWriter.PAGE_ENTRIES * BAT_ENTRY_SIZE);
  private pageIndex = -1;
  private dirty = false;

  constructor(
    private readonly out: RandomAccessFile,
    private readonly plan: VhdxWritePlan,
  ) {}

  async set(block: number, state: number, fileOffset: number): Promise<void> {
    const index = batIndexOfBlock(block, this.plan.chunkRatio);
    const page = Math.floor(index / BatWriter.PAGE_ENTRIES);
    if (page !== this.pageIndex) {
      await this.flush();
      this.page.fill(0);
      this.pageIndex = page;
    }
    const value = (BigInt(fileOffset / MiB) << BAT_OFFSET_SHIFT) | BigInt(state);
    this.page.writeBigUInt64LE(value, (index % BatWriter.PAGE_ENTRIES) * BAT_ENTRY_SIZE);
    this.dirty = true;
  }

  async flush(): Promise<void> {
    if (!this.dirty) return;
    const first = this.pageIndex * BatWriter.PAGE_ENTRIES;
    const count = Math.min(BatWriter.PAGE_ENTRIES, this.plan.batEntries - first);
    await this.out.writeAt(
      this.plan.batOffset + first * BAT_ENTRY_SIZE,
      this.page.subarray(0, count * BAT_ENTRY_SIZE),
    );
    this.dirty = false;
  }
}

/**
 * Layout (all 1 MiB aligned, §2.1): header section | log | metadata (1 MiB)
 * | BAT | payload blocks. Dynamic: blocks are appended in virtual order as
 * the first non-zero chunk of each arrives. Fixed: block i sits at
 * dataOffset + i * blockSize. Zero chunks are never written (holes).
 */
export async function writeVhdx(
  source: DiskReader,
  destPath: string,
  options: WriterOptions,
  ctx: WriteContext,
): Promise<void> {
  const plan = planVhdx(source.virtualSize, options);
  const out = await RandomAccessFile.create(ctx.tx.file(destPath));
  try {
    const fileWriteGuid = randomBytes(16);
    const dataWriteGuid = randomBytes(16);
    await out.writeAt(FILE_ID_OFFSET, fileIdentifier());
    await out.writeAt(HEADER_OFFSETS[0], headerBlock(plan, 1n, fileWriteGuid, dataWriteGuid));
    await out.writeAt(HEADER_OFFSETS[1], headerBlock(plan, 2n, fileWriteGuid, dataWriteGuid));
    const regions = regionTable(plan);
    await out.writeAt(REGION_TABLE_OFFSETS[0], regions);
    await out.writeAt(REGION_TABLE_OFFSETS[1], regions);
    await out.writeAt(plan.metadataOffset, metadataRegion(plan));

    const bat = new BatWriter(out, plan);
    const blockOffset = new Map<number, number>();
    let nextFree = plan.dataOffset;
    const placeBlock = async (block: number): Promise<number> => {
      let at = blockOffset.get(block);
      if (at === undefined) {
        at = plan.fixed ? plan.dataOffset + block * plan.blockSize : nextFree;
        nextFree = Math.max(nextFree, at + plan.blockSize);
        blockOffset.clear(); // blocks arrive in order: only the current one is ever looked up again
        blockOffset.set(block, at);
        if (!plan.fixed) await bat.set(block, PayloadState.FULLY_PRESENT, at);
      }
      return at;
    };
    for await (const chunk of dataChunks(source, { skipZeroChunks: true, signal: ctx.signal })) {
      for (let done = 0; done < chunk.data.length; ) {
        const pos = chunk.offset + done;
        const block = Math.floor(pos / plan.blockSize);
        const n = Math.min(chunk.data.length - done, (block + 1) * plan.blockSize - pos);
        const at = await placeBlock(block);
        await out.writeAt(at + (pos - block * plan.blockSize), chunk.data.subarray(done, done + n));
        done += n;
      }
      ctx.progress?.(chunk.offset + chunk.data.length, source.virtualSize);
    }
    if (plan.fixed) {
      for (let block = 0; block < plan.dataBlocks; block++) {
        await bat.set(block, PayloadState.FULLY_PRESENT, plan.dataOffset + block * plan.blockSize);
      }
    }
    await bat.flush();
    await out.truncate(
      Math.max(
        nextFree,
        plan.fixed ? plan.dataOffset + plan.dataBlocks * plan.blockSize : 0,
        plan.dataOffset,
      ),
    );
    ctx.progress?.(source.virtualSize, source.virtualSize);
  } finally {
    await out.close();
  }
}

// ---------------------------------------------------------------------------
// driver
// ---------------------------------------------------------------------------

/** The 8-byte "vhdxfile" identifier at offset 0 (§2.2.1) is certain enough; open validates the rest. */
function probeVhdx(input: ProbeInput): number {
  return input.head.length >= 8 && input.head.subarray(0, 8).equals(FILE_ID_SIGNATURE) ? 100 : 0;
}

export const vhdxDriver: FormatDriver = {
  name: "vhdx",
  description: "Hyper-V VHDX fixed and dynamic (CRC-32C checked)",
  probe: probeVhdx,
  open: (path, options) => openVhdx(path, options),
  write: writeVhdx,
  check: (path) => checkVhdx(path),
  writerOptions: VHDX_WRITER_OPTIONS,
};
