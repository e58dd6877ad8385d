import { crc32c } from "../../src/formats/crc32c.js";

/**
 * Deterministic, structure-aware mutators for the fuzzers.
 *
 * A mutation works on a copy of one seed file held in memory and records the
 * byte ranges it touched, so the harness can patch only those ranges into
 * the on-disk copy and restore them afterwards (seeds are up to tens of MiB;
 * rewriting whole files per case would dominate the run time).
 *
 * Structure awareness: each binary format has a `Layout` (named header
 * fields and tables found by parsing the seed) and a `fixup` that recomputes
 * the format's checksums after a mutation, so most mutated files pass the
 * checksum gate and reach the table-walking code behind it. A fraction of
 * cases skip the fix-up on purpose, to keep exercising the checksum checks.
 */

/** mulberry32: tiny, fast, good enough for fuzzing, and reproducible from one 32-bit seed. */
export class Rng {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  bool(probability = 0.5): boolean {
    return this.next() < probability;
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error("pick from an empty list");
    return items[this.int(items.length)]!;
  }

  /** A random 32-bit integer (for child seeds). */
  u32(): number {
    return Math.floor(this.next() * 4294967296) >>> 0;
  }
}

export type Endian = "be" | "le";

/** An integer field of a binary header. */
export interface Field {
  name: string;
  offset: number;
  width: 1 | 2 | 4 | 8;
  endian: Endian;
}

/** An array of fixed-width integer entries (BAT, GD, GT, L1, L2, refcount table...). */
export interface Table {
  name: string;
  offset: number;
  count: number;
  entryWidth: 2 | 4 | 8;
  endian: Endian;
}

/** A text or opaque byte region (descriptor text, parent names, locator data). */
export interface Region {
  name: string;
  offset: number;
  length: number;
}

export interface Layout {
  fields: Field[];
  tables: Table[];
  regions: Region[];
  /** Recomputes checksums over `buf` after a mutation; marks what it rewrote as dirty. */
  fixup?: (buf: Buffer, dirty: DirtySet) => void;
}

/** Byte ranges [start, end) of a buffer that a mutation changed. */
export class DirtySet {
  readonly ranges: [number, number][] = [];

  mark(start: number, length: number): void {
    if (length > 0) this.ranges.push([start, start + length]);
  }
}

/** One file being mutated: the working buffer, its pristine copy and what changed. */
export interface MutationTarget {
  buf: Buffer;
  pristine: Buffer;
  layout: Layout;
  dirty: DirtySet;
  /** Set when the mutation cut the file (bytes at and after it are gone). */
  truncateTo?: number;
  /** Bytes appended after the file's end. */
  append?: Buffer;
}

// ---------------------------------------------------------------------------
// integer helpers

function readUint(buf: Buffer, offset: number, width: number, endian: Endian): bigint {
  if (offset < 0 || offset + width > buf.length) return 0n;
  switch (width) {
    case 1:
      return BigInt(buf[offset]!);
    case 2:
      return BigInt(endian === "be" ? buf.readUInt16BE(offset) : buf.readUInt16LE(offset));
    case 4:
      return BigInt(endian === "be" ? buf.readUInt32BE(offset) : buf.readUInt32LE(offset));
    default:
      return endian === "be" ? buf.readBigUInt64BE(offset) : buf.readBigUInt64LE(offset);
  }
}

function writeUint(buf: Buffer, offset: number, width: number, endian: Endian, value: bigint): void {
  if (offset < 0 || offset + width > buf.length) return;
  const mask = (1n << BigInt(width * 8)) - 1n;
  const v = ((value % (mask + 1n)) + (mask + 1n)) & mask;
  switch (width) {
    case 1:
      buf[offset] = Number(v);
      return;
    case 2:
      if (endian === "be") buf.writeUInt16BE(Number(v), offset);
      else buf.writeUInt16LE(Number(v), offset);
      return;
    case 4:
      if (endian === "be") buf.writeUInt32BE(Number(v), offset);
      else buf.writeUInt32LE(Number(v), offset);
      return;
    default:
      if (endian === "be") buf.writeBigUInt64BE(v, offset);
      else buf.writeBigUInt64LE(v, offset);
  }
}

/**
 * Values that break parsers: boundaries, sign bits, the file's own size and
 * small offsets from the current value (off-by-one in either direction).
 */
function interestingValue(rng: Rng, current: bigint, width: number, fileSize: number): bigint {
  const bits = BigInt(width * 8);
  const max = (1n << bits) - 1n;
  const size = BigInt(fileSize);
  const choices: (() => bigint)[] = [
    () => 0n,
    () => 1n,
    () => max,
    () => max >> 1n,
    () => 1n << (bits - 1n),
    () => current + 1n,
    () => current - 1n,
    () => current + BigInt(rng.int(1024)) - 512n,
    () => current * 2n,
    () => current / 2n,
    () => current << BigInt(1 + rng.int(24)),
    () => size,
    () => size - 1n,
    () => size + 512n,
    () => size / 512n,
    () => BigInt(rng.int(fileSize + 1)),
    () => 1n << BigInt(rng.int(Number(bits))),
    () => 0xffffffffn,
    () => 0x80000000n,
    () => 512n,
    () => 4096n,
    () => 1n << 30n,
    () => 1n << 60n,
    () => BigInt(rng.u32()) | (width === 8 ? BigInt(rng.u32()) << 32n : 0n),
  ];
  return rng.pick(choices)() & max;
}

// ---------------------------------------------------------------------------
// generic mutations

function setField(rng: Rng, t: MutationTarget, offset: number, width: 1 | 2 | 4 | 8, endian: Endian): void {
  const current = readUint(t.buf, offset, width, endian);
  writeUint(t.buf, offset, width, endian, interestingValue(rng, current, width, t.buf.length));
  t.dirty.mark(offset, width);
}

function mutateField(rng: Rng, t: MutationTarget): boolean {
  if (t.layout.fields.length === 0) return false;
  const field = rng.pick(t.layout.fields);
  setField(rng, t, field.offset, field.width, field.endian);
  return true;
}

function mutateTableEntry(rng: Rng, t: MutationTarget): boolean {
  const tables = t.layout.tables.filter((table) => table.count > 0);
  if (tables.length === 0) return false;
  const table = rng.pick(tables);
  const entries = 1 + (rng.bool(0.2) ? rng.int(16) : 0);
  for (let i = 0; i < entries; i++) {
    // bias towards the start of the table: the entries that are actually used
    const index = rng.bool(0.7) ? rng.int(Math.min(table.count, 64)) : rng.int(table.count);
    const offset = table.offset + index * table.entryWidth;
    if (rng.bool(0.3) && index > 0) {
      // duplicate a neighbour: two entries pointing at the same block
      const previous = readUint(t.buf, offset - table.entryWidth, table.entryWidth, table.endian);
      writeUint(t.buf, offset, table.entryWidth, table.endian, previous);
      t.dirty.mark(offset, table.entryWidth);
    } else {
      setField(rng, t, offset, table.entryWidth, table.endian);
    }
  }
  return true;
}

function mutateRegion(rng: Rng, t: MutationTarget): boolean {
  if (t.layout.regions.length === 0) return false;
  const region = rng.pick(t.layout.regions);
  if (region.length === 0) return false;
  const at = region.offset + rng.int(region.length);
  const length = Math.min(1 + rng.int(16), region.offset + region.length - at);
  const pieces = [
    "../",
    "/etc/passwd",
    "C:\\",
    "\\\\srv\\x",
    "..\\",
    "\u0000",
    "\n",
    " ",
    '"',
    "9999999999999",
    "-1",
  ];
  const bytes = rng.bool(0.5) ? Buffer.from(rng.pick(pieces), "utf8") : randomBytes(rng, length);
  const n = Math.min(bytes.length, t.buf.length - at);
  bytes.copy(t.buf, at, 0, n);
  t.dirty.mark(at, n);
  return true;
}

function randomBytes(rng: Rng, length: number): Buffer {
  const out = Buffer.alloc(length);
  for (let i = 0; i < length; i++) out[i] = rng.int(256);
  return out;
}

/** Offsets where parsers look hardest: field starts, table starts, region starts. */
function hotOffset(rng: Rng, t: MutationTarget): number {
  const { fields, tables, regions } = t.layout;
  const starts = [
    ...fields.map((f) => f.offset),
    ...tables.map((x) => x.offset),
    ...regions.map((r) => r.offset),
  ];
  if (starts.length > 0 && rng.bool(0.7)) return Math.min(t.buf.length - 1, rng.pick(starts) + rng.int(64));
  return rng.int(t.buf.length);
}

function flipBits(rng: Rng, t: MutationTarget): boolean {
  const count = 1 + rng.int(8);
  for (let i = 0; i < count; i++) {
    const at = hotOffset(rng, t);
    t.buf[at] = t.buf[at]! ^ (1 << rng.int(8));
    t.dirty.mark(at, 1);
  }
  return true;
}

function overwriteBytes(rng: Rng, t: MutationTarget): boolean {
  const at = hotOffset(rng, t);
  const length = Math.min(1 + rng.int(rng.bool(0.8) ? 16 : 4096), t.buf.length - at);
  const fill = rng.int(4);
  for (let i = 0; i < length; i++) t.buf[at + i] = fill === 0 ? 0 : fill === 1 ? 0xff : rng.int(256);
  t.dirty.mark(at, length);
  return true;
}

/** Copies one chunk of the file over another (tables pointing into headers and vice versa). */
function copyChunk(rng: Rng, t: MutationTarget): boolean {
  const length = 1 + rng.int(512);
  if (t.buf.length <= length) return false;
  const from = rng.int(t.buf.length - length);
  const to = hotOffset(rng, t);
  const n = Math.min(length, t.buf.length - to);
  t.buf.copy(t.buf, to, from, from + n);
  t.dirty.mark(to, n);
  return true;
}

function truncate(rng: Rng, t: MutationTarget): boolean {
  const starts = [...t.layout.fields.map((f) => f.offset), ...t.layout.tables.map((x) => x.offset)];
  const cut = starts.length > 0 && rng.bool(0.5) ? rng.pick(starts) + rng.int(8) : rng.int(t.buf.length);
  t.truncateTo = Math.max(0, Math.min(cut, t.buf.length - 1));
  return true;
}

function extend(rng: Rng, t: MutationTarget): boolean {
  const length = rng.pick([1, 511, 512, 4096, 65536]);
  t.append = rng.bool(0.5) ? Buffer.alloc(length) : randomBytes(rng, length);
  return true;
}

type Mutator = (rng: Rng, t: MutationTarget) => boolean;

/** Weighted: structure-aware mutations dominate, byte-level ones keep finding what layouts miss. */
const MUTATORS: [Mutator, number][] = [
  [mutateField, 30],
  [mutateTableEntry, 25],
  [mutateRegion, 8],
  [flipBits, 15],
  [overwriteBytes, 10],
  [copyChunk, 6],
  [truncate, 3],
  [extend, 3],
];
const TOTAL_WEIGHT = MUTATORS.reduce((sum, [, w]) => sum + w, 0);

function pickMutator(rng: Rng): Mutator {
  let roll = rng.int(TOTAL_WEIGHT);
  for (const [mutator, weight] of MUTATORS) {
    if (roll < weight) return mutator;
    roll -= weight;
  }
  return flipBits;
}

/**
 * Applies 1-4 mutations to `t` (in place), then usually the layout's
 * checksum fix-up. Returns the names of the mutations applied (for reports).
 */
export function mutateBinary(rng: Rng, t: MutationTarget): string[] {
  const applied: string[] = [];
  const count = 1 + (rng.bool(0.3) ? rng.int(4) : 0);
  for (let i = 0; i < count; i++) {
    const mutator = pickMutator(rng);
    // a structure the file lacks (no tables, no regions): fall back to bit flips, never a no-op case
    if (mutator(rng, t)) applied.push(mutator.name);
    else if (flipBits(rng, t)) applied.push("flipBits");
  }
  if (t.layout.fixup && t.truncateTo === undefined && rng.bool(0.85)) {
    t.layout.fixup(t.buf, t.dirty);
    applied.push("fixup");
  }
  return applied;
}

// ---------------------------------------------------------------------------
// VHD (Microsoft VHD spec 1.0: footer 512 bytes, dynamic header 1024 bytes, big-endian)

const VHD_FOOTER_SIZE = 512;
const VHD_FOOTER_CHECKSUM = 64;
const VHD_FOOTER_DATA_OFFSET = 16;
const VHD_DYN_HEADER_SIZE = 1024;
const VHD_DYN_TABLE_OFFSET = 16;
const VHD_DYN_MAX_ENTRIES = 28;
const VHD_DYN_BLOCK_SIZE = 32;
const VHD_DYN_CHECKSUM = 36;
const VHD_DYN_LOCATORS = 576;
const VHD_LOCATOR_SIZE = 24;

/** One's complement of the byte sum, skipping the checksum field itself (VHD spec, "Checksum"). */
function vhdChecksum(buf: Buffer, start: number, length: number, checksumAt: number): number {
  let sum = 0;
  for (let i = start; i < start + length; i++) {
    if (i >= checksumAt && i < checksumAt + 4) continue;
    sum = (sum + buf[i]!) >>> 0;
  }
  return ~sum >>> 0;
}

function vhdFooterFields(base: number): Field[] {
  const f = (name: string, offset: number, width: 1 | 2 | 4 | 8): Field => ({
    name: `footer@${base}.${name}`,
    offset: base + offset,
    width,
    endian: "be",
  });
  return [
    f("features", 8, 4),
    f("version", 12, 4),
    f("dataOffset", 16, 8),
    f("creatorApp", 28, 4),
    f("originalSize", 40, 8),
    f("currentSize", 48, 8),
    f("geometry", 56, 4),
    f("diskType", 60, 4),
    f("savedState", 84, 1),
  ];
}

export function vhdLayout(buf: Buffer): Layout {
  const layout: Layout = { fields: [], tables: [], regions: [] };
  if (buf.length < VHD_FOOTER_SIZE) return layout;
  const footerAt = buf.length - VHD_FOOTER_SIZE;
  const footers = [footerAt];
  if (buf.subarray(0, 8).toString("latin1") === "conectix" && footerAt !== 0) footers.push(0);
  for (const at of footers) layout.fields.push(...vhdFooterFields(at));
  const dynAt = Number(buf.readBigUInt64BE(footerAt + VHD_FOOTER_DATA_OFFSET));
  const hasDyn =
    Number.isSafeInteger(dynAt) &&
    dynAt + VHD_DYN_HEADER_SIZE <= buf.length &&
    buf.subarray(dynAt, dynAt + 8).toString("latin1") === "cxsparse";
  if (hasDyn) {
    const d = (name: string, offset: number, width: 1 | 2 | 4 | 8): Field => ({
      name: `dyn.${name}`,
      offset: dynAt + offset,
      width,
      endian: "be",
    });
    layout.fields.push(
      d("dataOffset", 8, 8),
      d("tableOffset", VHD_DYN_TABLE_OFFSET, 8),
      d("headerVersion", 24, 4),
      d("maxTableEntries", VHD_DYN_MAX_ENTRIES, 4),
      d("blockSize", VHD_DYN_BLOCK_SIZE, 4),
    );
    for (let i = 0; i < 8; i++) {
      const at = VHD_DYN_LOCATORS + i * VHD_LOCATOR_SIZE;
      layout.fields.push(d(`locator${i}.code`, at, 4), d(`locator${i}.space`, at + 4, 4));
      layout.fields.push(d(`locator${i}.length`, at + 8, 4), d(`locator${i}.offset`, at + 16, 8));
      // the locator's path text (UTF-16 for W2ru/W2ku, UTF-8 for MacX): `..`, absolute, drive letters
      const dataAt = Number(buf.readBigUInt64BE(dynAt + at + 16));
      const dataLength = buf.readUInt32BE(dynAt + at + 8);
      if (buf.readUInt32BE(dynAt + at) !== 0 && dataAt > 0 && dataAt + dataLength <= buf.length) {
        layout.regions.push({ name: `locator${i}.data`, offset: dataAt, length: Math.min(dataLength, 512) });
      }
    }
    layout.regions.push({ name: "dyn.parentName", offset: dynAt + 64, length: 512 });
    const tableAt = Number(buf.readBigUInt64BE(dynAt + VHD_DYN_TABLE_OFFSET));
    const entries = buf.readUInt32BE(dynAt + VHD_DYN_MAX_ENTRIES);
    if (Number.isSafeInteger(tableAt) && tableAt < buf.length) {
      const count = Math.min(entries, Math.floor((buf.length - tableAt) / 4));
      layout.tables.push({ name: "bat", offset: tableAt, count, entryWidth: 4, endian: "be" });
      // block bitmaps sit at each allocated block's first sector
      for (let i = 0; i < Math.min(count, 64); i++) {
        const sector = buf.readUInt32BE(tableAt + i * 4);
        if (sector !== 0xffffffff && sector * 512 + 512 <= buf.length) {
          layout.regions.push({ name: `bitmap${i}`, offset: sector * 512, length: 512 });
        }
      }
    }
  }
  layout.fixup = (b, dirty) => {
    for (const at of footers) {
      if (at + VHD_FOOTER_SIZE > b.length) continue;
      b.writeUInt32BE(vhdChecksum(b, at, 85, at + VHD_FOOTER_CHECKSUM), at + VHD_FOOTER_CHECKSUM);
      dirty.mark(at + VHD_FOOTER_CHECKSUM, 4);
    }
    if (hasDyn) {
      b.writeUInt32BE(
        vhdChecksum(b, dynAt, VHD_DYN_HEADER_SIZE, dynAt + VHD_DYN_CHECKSUM),
        dynAt + VHD_DYN_CHECKSUM,
      );
      dirty.mark(dynAt + VHD_DYN_CHECKSUM, 4);
    }
  };
  return layout;
}

// ---------------------------------------------------------------------------
// VHDX (MS-VHDX: headers at 64 KiB/128 KiB, region tables at 192/256 KiB, little-endian, CRC-32C)

const KiB = 1024;
const VHDX_HEADERS = [64 * KiB, 128 * KiB];
const VHDX_HEADER_CRC_SPAN = 4 * KiB;
const VHDX_REGION_TABLES = [192 * KiB, 256 * KiB];
const VHDX_REGION_CRC_SPAN = 64 * KiB;
const VHDX_BAT_GUID = "2dc27766f62342009d64115e9bfd4a08";
const VHDX_METADATA_GUID = "8b7ca20647904b9ab8fe575f050f886e";

function guidHex(buf: Buffer, at: number): string {
  // GUIDs are stored mixed-endian: first three groups little-endian
  const b = buf.subarray(at, at + 16);
  const hex = (x: Buffer) => x.toString("hex");
  return (
    hex(Buffer.from(b.subarray(0, 4)).reverse()) +
    hex(Buffer.from(b.subarray(4, 6)).reverse()) +
    hex(Buffer.from(b.subarray(6, 8)).reverse()) +
    hex(b.subarray(8, 16))
  );
}

export function vhdxLayout(buf: Buffer): Layout {
  const layout: Layout = { fields: [], tables: [], regions: [] };
  const le = (name: string, offset: number, width: 1 | 2 | 4 | 8): Field => ({
    name,
    offset,
    width,
    endian: "le",
  });
  const headers = VHDX_HEADERS.filter((at) => at + VHDX_HEADER_CRC_SPAN <= buf.length);
  for (const at of headers) {
    layout.fields.push(
      le(`header@${at}.sequence`, at + 8, 8),
      le(`header@${at}.logVersion`, at + 64, 2),
      le(`header@${at}.version`, at + 66, 2),
      le(`header@${at}.logLength`, at + 68, 4),
      le(`header@${at}.logOffset`, at + 72, 8),
    );
    layout.regions.push({ name: `header@${at}.logGuid`, offset: at + 48, length: 16 });
  }
  const regionTables = VHDX_REGION_TABLES.filter((at) => at + VHDX_REGION_CRC_SPAN <= buf.length);
  let batAt = -1;
  let batLength = 0;
  let metaAt = -1;
  for (const at of regionTables) {
    const count = Math.min(buf.readUInt32LE(at + 8), 2047);
    layout.fields.push(le(`regions@${at}.count`, at + 8, 4));
    for (let i = 0; i < Math.min(count, 8); i++) {
      const entry = at + 16 + i * 32;
      layout.fields.push(
        le(`regions@${at}[${i}].offset`, entry + 16, 8),
        le(`regions@${at}[${i}].length`, entry + 24, 4),
        le(`regions@${at}[${i}].required`, entry + 28, 4),
      );
      const guid = guidHex(buf, entry);
      const offset = Number(buf.readBigUInt64LE(entry + 16));
      const length = buf.readUInt32LE(entry + 24);
      if (guid === VHDX_BAT_GUID && at === regionTables[0]) {
        batAt = offset;
        batLength = length;
      }
      if (guid === VHDX_METADATA_GUID && at === regionTables[0]) metaAt = offset;
    }
  }
  if (batAt > 0 && batAt < buf.length) {
    const count = Math.min(batLength, buf.length - batAt) >> 3;
    layout.tables.push({ name: "bat", offset: batAt, count, entryWidth: 8, endian: "le" });
  }
  if (metaAt > 0 && metaAt + 64 * KiB <= buf.length) {
    const count = Math.min(buf.readUInt16LE(metaAt + 10), 64);
    layout.fields.push(le("metadata.count", metaAt + 10, 2));
    for (let i = 0; i < count; i++) {
      const entry = metaAt + 32 + i * 32;
      layout.fields.push(
        le(`metadata[${i}].offset`, entry + 16, 4),
        le(`metadata[${i}].length`, entry + 20, 4),
        le(`metadata[${i}].flags`, entry + 24, 4),
      );
      // the item values themselves (block size, virtual size, sector sizes, parent locator)
      const valueAt = metaAt + buf.readUInt32LE(entry + 16);
      const valueLength = Math.min(buf.readUInt32LE(entry + 20), 64);
      if (valueLength >= 4 && valueAt + valueLength <= buf.length) {
        layout.fields.push(le(`metadata[${i}].value32`, valueAt, 4));
        if (valueLength >= 8) layout.fields.push(le(`metadata[${i}].value64`, valueAt, 8));
        layout.regions.push({ name: `metadata[${i}].value`, offset: valueAt, length: valueLength });
      }
    }
  }
  // the log: entries start at the header's log offset
  const logAt = headers.length > 0 ? Number(buf.readBigUInt64LE(headers[0]! + 72)) : 0;
  const logLength = headers.length > 0 ? buf.readUInt32LE(headers[0]! + 68) : 0;
  if (logAt > 0 && logAt + 64 <= buf.length && logLength > 0) {
    layout.fields.push(
      le("log.entryLength", logAt + 8, 4),
      le("log.tail", logAt + 12, 4),
      le("log.sequence", logAt + 16, 8),
      le("log.descriptorCount", logAt + 24, 4),
      le("log.flushedFileOffset", logAt + 48, 8),
      le("log.lastFileOffset", logAt + 56, 8),
    );
    layout.regions.push({
      name: "log",
      offset: logAt,
      length: Math.min(logLength, buf.length - logAt, 8192),
    });
  }
  layout.fixup = (b, dirty) => {
    for (const at of headers) writeCrc32c(b, at, VHDX_HEADER_CRC_SPAN, dirty);
    for (const at of regionTables) writeCrc32c(b, at, VHDX_REGION_CRC_SPAN, dirty);
  };
  return layout;
}

/** CRC-32C over `span` bytes at `at` with the checksum field (at +4) taken as zero. */
function writeCrc32c(buf: Buffer, at: number, span: number, dirty: DirtySet): void {
  buf.writeUInt32LE(0, at + 4);
  buf.writeUInt32LE(crc32c(buf.subarray(at, at + span)), at + 4);
  dirty.mark(at + 4, 4);
}

// ---------------------------------------------------------------------------
// VMDK (VMware Virtual Disk Format 5.0: SparseExtentHeader, little-endian, sectors of 512)

const SECTOR = 512;

export function vmdkLayout(buf: Buffer): Layout {
  const layout: Layout = { fields: [], tables: [], regions: [] };
  if (buf.length >= 4 && buf.subarray(0, 4).toString("latin1") === "KDMV") {
    addSparseHeader(buf, 0, layout);
    // streamOptimized: the footer copy of the header sits 1 KiB before the end (after the footer marker)
    const footerAt = buf.length - 1024;
    if (footerAt > 512 && buf.subarray(footerAt, footerAt + 4).toString("latin1") === "KDMV") {
      addSparseHeader(buf, footerAt, layout);
    }
    addStreamMarkers(buf, layout);
  } else {
    // a text descriptor: the whole file is text
    layout.regions.push({ name: "descriptor", offset: 0, length: Math.min(buf.length, 64 * KiB) });
  }
  return layout;
}

function addSparseHeader(buf: Buffer, base: number, layout: Layout): void {
  const le = (name: string, offset: number, width: 1 | 2 | 4 | 8): Field => ({
    name: `sparse@${base}.${name}`,
    offset: base + offset,
    width,
    endian: "le",
  });
  layout.fields.push(
    le("version", 4, 4),
    le("flags", 8, 4),
    le("capacity", 12, 8),
    le("grainSize", 20, 8),
    le("descriptorOffset", 28, 8),
    le("descriptorSize", 36, 8),
    le("numGTEsPerGT", 44, 4),
    le("rgdOffset", 48, 8),
    le("gdOffset", 56, 8),
    le("overHead", 64, 8),
    le("uncleanShutdown", 72, 1),
    le("compressAlgorithm", 77, 2),
  );
  const descriptorAt = Number(buf.readBigUInt64LE(base + 28)) * SECTOR;
  const descriptorLength = Number(buf.readBigUInt64LE(base + 36)) * SECTOR;
  if (descriptorAt > 0 && descriptorAt < buf.length) {
    layout.regions.push({
      name: "descriptor",
      offset: descriptorAt,
      length: Math.min(descriptorLength, buf.length - descriptorAt, 64 * KiB),
    });
  }
  const gtesPerGt = buf.readUInt32LE(base + 44);
  const grainSectors = Number(buf.readBigUInt64LE(base + 20));
  const capacity = Number(buf.readBigUInt64LE(base + 12));
  for (const [name, fieldAt] of [
    ["gd", 56],
    ["rgd", 48],
  ] as const) {
    const gdAt = Number(buf.readBigUInt64LE(base + fieldAt)) * SECTOR;
    if (gdAt <= 0 || gdAt >= buf.length || gtesPerGt === 0 || grainSectors === 0) continue;
    const gdEntries = Math.ceil(capacity / grainSectors / gtesPerGt);
    const count = Math.min(gdEntries, (buf.length - gdAt) >> 2);
    layout.tables.push({ name, offset: gdAt, count, entryWidth: 4, endian: "le" });
    // the first few grain tables the directory points at
    for (let i = 0; i < Math.min(count, 8); i++) {
      const gtAt = buf.readUInt32LE(gdAt + i * 4) * SECTOR;
      if (gtAt > 0 && gtAt < buf.length) {
        const gtCount = Math.min(gtesPerGt, (buf.length - gtAt) >> 2);
        layout.tables.push({
          name: `${name}.gt${i}`,
          offset: gtAt,
          count: gtCount,
          entryWidth: 4,
          endian: "le",
        });
      }
    }
  }
}

/** streamOptimized markers: {lba u64, size u32, type u32 when size = 0} at sector boundaries. */
function addStreamMarkers(buf: Buffer, layout: Layout): void {
  const overhead = Number(buf.readBigUInt64LE(64)) * SECTOR;
  let at = overhead;
  let markers = 0;
  while (at + 16 <= buf.length && markers < 64 && overhead > 0) {
    const size = buf.readUInt32LE(at + 8);
    layout.fields.push(
      { name: `marker@${at}.lba`, offset: at, width: 8, endian: "le" },
      { name: `marker@${at}.size`, offset: at + 8, width: 4, endian: "le" },
    );
    if (size === 0) {
      layout.fields.push({ name: `marker@${at}.type`, offset: at + 12, width: 4, endian: "le" });
      const type = buf.readUInt32LE(at + 12);
      const sectors = Number(buf.readBigUInt64LE(at));
      at += SECTOR + (type === 3 ? 0 : sectors * SECTOR); // EOS has no body
      if (type === 3) break;
    } else {
      layout.regions.push({ name: `grain@${at}`, offset: at + 12, length: Math.min(size, 64) });
      at += Math.ceil((12 + size) / SECTOR) * SECTOR;
    }
    markers++;
  }
}

// ---------------------------------------------------------------------------
// qcow2 (qemu docs/interop/qcow2.txt: big-endian header, L1/L2 tables, refcounts)

export function qcow2Layout(buf: Buffer): Layout {
  const layout: Layout = { fields: [], tables: [], regions: [] };
  if (buf.length < 104 || buf.readUInt32BE(0) !== 0x514649fb) return layout;
  const be = (name: string, offset: number, width: 1 | 2 | 4 | 8): Field => ({
    name,
    offset,
    width,
    endian: "be",
  });
  layout.fields.push(
    be("version", 4, 4),
    be("backingFileOffset", 8, 8),
    be("backingFileSize", 16, 4),
    be("clusterBits", 20, 4),
    be("size", 24, 8),
    be("cryptMethod", 32, 4),
    be("l1Size", 36, 4),
    be("l1TableOffset", 40, 8),
    be("refcountTableOffset", 48, 8),
    be("refcountTableClusters", 56, 4),
    be("nbSnapshots", 60, 4),
    be("snapshotsOffset", 64, 8),
  );
  const version = buf.readUInt32BE(4);
  if (version >= 3) {
    layout.fields.push(
      be("incompatibleFeatures", 72, 8),
      be("compatibleFeatures", 80, 8),
      be("autoclearFeatures", 88, 8),
      be("refcountOrder", 96, 4),
      be("headerLength", 100, 4),
    );
    layout.regions.push({ name: "headerExtensions", offset: buf.readUInt32BE(100), length: 256 });
  }
  const backingAt = Number(buf.readBigUInt64BE(8));
  const backingLength = buf.readUInt32BE(16);
  if (backingAt > 0 && backingAt + backingLength <= buf.length) {
    layout.regions.push({ name: "backingFile", offset: backingAt, length: backingLength });
  }
  const clusterBits = buf.readUInt32BE(20);
  const clusterSize = clusterBits >= 9 && clusterBits <= 21 ? 2 ** clusterBits : 65536;
  const l1At = Number(buf.readBigUInt64BE(40));
  const l1Size = buf.readUInt32BE(36);
  if (l1At > 0 && l1At < buf.length) {
    const count = Math.min(l1Size, (buf.length - l1At) >> 3);
    layout.tables.push({ name: "l1", offset: l1At, count, entryWidth: 8, endian: "be" });
    for (let i = 0; i < Math.min(count, 8); i++) {
      const l2At = Number(buf.readBigUInt64BE(l1At + i * 8) & 0x00fffffffffffe00n);
      if (l2At > 0 && l2At < buf.length) {
        const l2Count = Math.min(clusterSize >> 3, (buf.length - l2At) >> 3);
        layout.tables.push({ name: `l2.${i}`, offset: l2At, count: l2Count, entryWidth: 8, endian: "be" });
      }
    }
  }
  const refTableAt = Number(buf.readBigUInt64BE(48));
  if (refTableAt > 0 && refTableAt < buf.length) {
    const count = Math.min((buf.readUInt32BE(56) * clusterSize) >> 3, (buf.length - refTableAt) >> 3, 4096);
    layout.tables.push({ name: "refcountTable", offset: refTableAt, count, entryWidth: 8, endian: "be" });
    const blockAt = count > 0 ? Number(buf.readBigUInt64BE(refTableAt)) : 0;
    if (blockAt > 0 && blockAt < buf.length) {
      const blockCount = Math.min(clusterSize >> 1, (buf.length - blockAt) >> 1);
      layout.tables.push({
        name: "refcountBlock0",
        offset: blockAt,
        count: blockCount,
        entryWidth: 2,
        endian: "be",
      });
    }
  }
  return layout;
}

// ---------------------------------------------------------------------------
// tar (POSIX ustar headers of 512 bytes; octal text fields; checksum = byte sum with the field as spaces)

const TAR_BLOCK = 512;
const TAR_SIZE = 124;
const TAR_CHECKSUM = 148;
const TAR_TYPEFLAG = 156;

/** ustar header positions of a tar file (walks the members by their sizes). */
export function tarHeaderOffsets(buf: Buffer): number[] {
  const out: number[] = [];
  let at = 0;
  while (at + TAR_BLOCK <= buf.length && out.length < 256) {
    if (buf[at] === 0) break;
    out.push(at);
    const size = Number.parseInt(
      buf
        .subarray(at + TAR_SIZE, at + TAR_SIZE + 12)
        .toString("latin1")
        .trim() || "0",
      8,
    );
    if (!Number.isFinite(size)) break;
    at += TAR_BLOCK + Math.ceil(size / TAR_BLOCK) * TAR_BLOCK;
  }
  return out;
}

export function tarLayout(buf: Buffer): Layout {
  const headers = tarHeaderOffsets(buf);
  const layout: Layout = { fields: [], tables: [], regions: [] };
  for (const at of headers) {
    layout.regions.push(
      { name: `tar@${at}.name`, offset: at, length: 100 },
      { name: `tar@${at}.size`, offset: at + TAR_SIZE, length: 12 },
      { name: `tar@${at}.typeflag`, offset: at + TAR_TYPEFLAG, length: 1 },
      { name: `tar@${at}.linkname`, offset: at + 157, length: 100 },
      { name: `tar@${at}.magic`, offset: at + 257, length: 8 },
      { name: `tar@${at}.prefix`, offset: at + 345, length: 155 },
    );
    // the size as a raw field too: binary (base-256) sizes and huge claims
    layout.fields.push({ name: `tar@${at}.size64`, offset: at + TAR_SIZE + 4, width: 8, endian: "be" });
  }
  layout.fixup = (b, dirty) => {
    for (const at of headers) {
      if (at + TAR_BLOCK > b.length) continue;
      b.fill(0x20, at + TAR_CHECKSUM, at + TAR_CHECKSUM + 8);
      let sum = 0;
      for (let i = at; i < at + TAR_BLOCK; i++) sum += b[i]!;
      b.write(`${sum.toString(8).padStart(6, "0")}\0 `, at + TAR_CHECKSUM, "latin1");
      dirty.mark(at + TAR_CHECKSUM, 8);
    }
  };
  return layout;
}

/** Special tar mutations a generic byte mutator rarely hits: link types, hostile names, huge sizes. */
export function mutateTarMember(rng: Rng, t: MutationTarget): string {
  const headers = tarHeaderOffsets(t.pristine);
  if (headers.length === 0) return "none";
  const at = rng.pick(headers);
  const write = (offset: number, text: string, width: number) => {
    const bytes = Buffer.alloc(width);
    bytes.write(text, "latin1");
    bytes.copy(t.buf, at + offset);
    t.dirty.mark(at + offset, width);
  };
  switch (rng.int(6)) {
    case 0:
      write(
        0,
        rng.pick(["../evil.ovf", "/etc/passwd", "C:\\x.vmdk", "a/../../b", "./x.ovf", "x\\..\\y"]),
        100,
      );
      return "tarName";
    case 1:
      write(TAR_TYPEFLAG, rng.pick(["1", "2", "3", "4", "5", "6", "7", "x", "g", "L", "K"]), 1);
      write(157, rng.pick(["../../etc/passwd", "/etc/shadow", "x.ovf"]), 100);
      return "tarLinkType";
    case 2:
      write(
        TAR_SIZE,
        rng.pick(["77777777777", "00000000000", "7777777777 ", "-1", "1e9", "00000001000"]),
        12,
      );
      return "tarSize";
    case 3: {
      // GNU base-256 size: 0x80 then a big-endian binary number
      const bytes = Buffer.alloc(12);
      bytes[0] = 0x80;
      bytes.writeBigUInt64BE(rng.bool() ? 1n << 62n : BigInt(rng.u32()), 4);
      bytes.copy(t.buf, at + TAR_SIZE);
      t.dirty.mark(at + TAR_SIZE, 12);
      return "tarSize256";
    }
    case 4:
      write(345, rng.pick(["..", "/abs", "deep/".repeat(30)]), 155);
      return "tarPrefix";
    default:
      write(257, rng.pick(["ustar  ", "ustar\u000000", "GNUtar ", "\0\0\0\0\0\0"]), 8);
      return "tarMagic";
  }
}

// ---------------------------------------------------------------------------
// text mutators: OVF XML, VMDK descriptors, manifests

const HOSTILE_STRINGS = [
  "",
  "../../etc/passwd",
  "/etc/passwd",
  "C:\\Windows\\win.ini",
  "file:///etc/passwd",
  "http://127.0.0.1/x.vmdk",
  "\\\\server\\share\\x",
  "-1",
  "0",
  "18446744073709551616",
  "9007199254740993",
  "1e308",
  "NaN",
  "byte * 2^80",
  "byte * 2^-1",
  "&amp;&lt;",
  "&#0;",
  "&#x110000;",
  "&undefined;",
  "\u0000",
  "\uffff",
  "\ud800",
  "x".repeat(70000),
  "%00",
  "a\nb",
];

function splice(text: string, start: number, end: number, insert: string): string {
  return text.slice(0, start) + insert + text.slice(end);
}

/** All matches of `re` in `text` as [start, end, groups]. */
function matches(text: string, re: RegExp): RegExpExecArray[] {
  return [...text.matchAll(new RegExp(re.source, re.flags.includes("g") ? re.flags : `${re.flags}g`))];
}

/** Mutates an XML document's text: attributes, elements, entities, depth, encodings. */
export function mutateXml(rng: Rng, text: string): { text: string; applied: string[] } {
  let out = text;
  const applied: string[] = [];
  const count = 1 + (rng.bool(0.3) ? rng.int(3) : 0);
  for (let i = 0; i < count; i++) {
    const choice = rng.int(12);
    const attributes = matches(out, /([\w:.-]+)="([^"]*)"/);
    const tags = matches(out, /<\/?[\w:.-]+[^>]*>/);
    if (choice <= 2 && attributes.length > 0) {
      const m = rng.pick(attributes);
      const valueStart = m.index + m[0].indexOf('"') + 1;
      const value = rng.bool(0.8) ? rng.pick(HOSTILE_STRINGS) : m[2]!.repeat(1 + rng.int(3));
      out = splice(out, valueStart, valueStart + m[2]!.length, value.replaceAll('"', "&quot;"));
      applied.push(`attr:${m[1]}`);
    } else if (choice === 3 && attributes.length > 0) {
      const m = rng.pick(attributes);
      out = splice(out, m.index, m.index + m[0].length, rng.bool() ? "" : `${m[0]} ${m[0]}`);
      applied.push("attrDropOrDuplicate");
    } else if (choice === 4 && tags.length > 1) {
      const m = rng.pick(tags);
      out = splice(out, m.index, m.index + m[0].length, "");
      applied.push("dropTag");
    } else if (choice === 5 && tags.length > 1) {
      const a = rng.pick(tags);
      out = splice(out, a.index, a.index, a[0]);
      applied.push("duplicateTag");
    } else if (choice === 6) {
      const depth = rng.pick([10, 100, 1000, 20000]);
      const at = tagBoundary(rng, out, tags);
      out = splice(out, at, at, "<a>".repeat(depth) + "</a>".repeat(rng.bool(0.8) ? depth : depth - 1));
      applied.push(`nest${depth}`);
    } else if (choice === 7) {
      const doctypes = [
        '<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>',
        '<!DOCTYPE x SYSTEM "http://127.0.0.1/x.dtd">',
        '<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>',
        '<!DOCTYPE x [<!ENTITY % p SYSTEM "http://x/y"> %p;]>',
      ];
      const declarationEnd = out.startsWith("<?xml") ? out.indexOf("?>") + 2 : 0;
      out = splice(out, declarationEnd, declarationEnd, rng.pick(doctypes));
      applied.push("doctype");
    } else if (choice === 8) {
      const at = tagBoundary(rng, out, tags);
      out = splice(
        out,
        at,
        at,
        rng.pick(["&e;", "&c;", "&#1;", "<![CDATA[x", "<!--", "]]>", "<?pi x?>", "\u0000"]),
      );
      applied.push("insertMarkup");
    } else if (choice === 9) {
      const start = rng.int(out.length);
      out = splice(out, start, Math.min(out.length, start + 1 + rng.int(64)), "");
      applied.push("deleteRange");
    } else if (choice === 10) {
      out = out.slice(0, rng.int(out.length));
      applied.push("truncate");
    } else {
      const start = rng.int(out.length);
      out = splice(out, start, start, String.fromCharCode(rng.int(0x3000)));
      applied.push("insertChar");
    }
  }
  return { text: out, applied };
}

function tagBoundary(rng: Rng, text: string, tags: RegExpExecArray[]): number {
  if (tags.length === 0) return rng.int(text.length + 1);
  const m = rng.pick(tags);
  return m.index + m[0].length;
}

/** Mutates a VMDK text descriptor: extent lines, createType, ddb values, parent fields. */
export function mutateDescriptor(rng: Rng, text: string): { text: string; applied: string[] } {
  const lines = text.split("\n");
  const applied: string[] = [];
  const count = 1 + rng.int(2);
  for (let i = 0; i < count; i++) {
    const index = rng.int(lines.length);
    const line = lines[index] ?? "";
    const choice = rng.int(7);
    if (choice === 0 && /^(RW|RDONLY|NOACCESS)\s/.test(line)) {
      const parts = line.split(/\s+/);
      const field = rng.int(Math.max(1, parts.length));
      parts[field] = rng.pick([
        '"../../etc/passwd"',
        '"/etc/passwd"',
        '"C:\\x.vmdk"',
        "99999999999999999",
        "-1",
        "0",
        "SPARSE",
        "VMFS",
        "ZERO",
        "FLAT",
        '""',
      ]);
      lines[index] = parts.join(" ");
      applied.push("extentLine");
    } else if (choice === 1) {
      const key = rng.pick([
        "createType",
        "parentCID",
        "CID",
        "version",
        "parentFileNameHint",
        "ddb.geometry.cylinders",
        "ddb.adapterType",
        "encoding",
      ]);
      lines.splice(index, 0, `${key}="${rng.pick(HOSTILE_STRINGS.slice(0, 14))}"`);
      applied.push(`key:${key}`);
    } else if (choice === 2) {
      lines.splice(
        index,
        0,
        `RW ${rng.pick(["1", "2147483648", "18446744073709551615", "16"])} ${rng.pick(["SPARSE", "FLAT", "ZERO", "VMFSSPARSE"])} "${rng.pick(["x.vmdk", "../x", "/dev/zero", ""])}"${rng.bool() ? " 0" : ""}`,
      );
      applied.push("addExtent");
    } else if (choice === 3) {
      lines.splice(index, 1);
      applied.push("dropLine");
    } else if (choice === 4) {
      lines[index] = line + rng.pick(["=", '"', "\u0000", "x".repeat(5000), " #", "\r"]);
      applied.push("garbleLine");
    } else if (choice === 5) {
      lines.splice(index, 0, line);
      applied.push("duplicateLine");
    } else {
      lines[index] = line.replace(/\d+/, () => rng.pick(["0", "-5", "4294967296", "9".repeat(30)]));
      applied.push("number");
    }
  }
  return { text: lines.join("\n"), applied };
}

/** Mutates manifest lines: algorithm, names, digests, separators. */
export function mutateManifest(rng: Rng, text: string): { text: string; applied: string[] } {
  const lines = text.split("\n");
  const index = rng.int(lines.length);
  const line = lines[index] ?? "";
  const applied: string[] = [];
  switch (rng.int(8)) {
    case 0:
      lines[index] = line.replace(/^\w+/, rng.pick(["MD5", "SHA3", "sha256", "", "SHA256SHA256"]));
      applied.push("algorithm");
      break;
    case 1:
      lines[index] = line.replace(
        /\(([^)]*)\)/,
        `(${rng.pick(["../x.ovf", "/etc/passwd", "", "a)b", "x".repeat(10000), "C:\\x"])})`,
      );
      applied.push("name");
      break;
    case 2:
      lines[index] = line.replace(
        /[0-9a-f]+\s*$/i,
        rng.pick(["", "zz", "0".repeat(63), "0".repeat(129), "ABCDEF"]),
      );
      applied.push("digest");
      break;
    case 3:
      lines[index] = line.replace("= ", rng.pick(["=", " = ", "==", "\t"]));
      applied.push("separator");
      break;
    case 4:
      lines.splice(index, 0, line);
      applied.push("duplicate");
      break;
    case 5:
      lines[index] = `${line}\r`;
      applied.push("crlf");
      break;
    case 6:
      lines.splice(index, 0, "x".repeat(rng.pick([100, 100000])));
      applied.push("junkLine");
      break;
    default:
      lines.splice(index, 1);
      applied.push("dropLine");
  }
  return { text: lines.join("\n"), applied };
}
