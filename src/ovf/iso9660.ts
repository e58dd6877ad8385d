import { OvfkitError } from "../errors.js";

/**
 * A minimal ISO 9660 (ECMA-119) image writer with a Joliet supplementary
 * volume descriptor: files in the root folder only, which is all the OVF
 * `iso` transport needs (DSP0243 §11.1: `ovf-env.xml` on a CD). The
 * primary tree carries ISO level-1 names (`OVF_ENV.XML;1`); the Joliet tree
 * carries the exact names (`ovf-env.xml`), which Linux, Windows and
 * cloud-init see first.
 *
 * Layout (2048-byte sectors):
 *   0-15 system area · 16 primary VD · 17 Joliet SVD · 18 terminator ·
 *   19/20 primary L/M path tables · 21/22 Joliet L/M path tables ·
 *   23 primary root folder · 24 Joliet root folder · 25… file data
 */

export const SECTOR = 2048;
const PVD_SECTOR = 16;
const SVD_SECTOR = 17;
const TERMINATOR_SECTOR = 18;
const PATH_TABLES = { primaryL: 19, primaryM: 20, jolietL: 21, jolietM: 22 } as const;
const ROOT_SECTOR = { primary: 23, joliet: 24 } as const;
const FIRST_FILE_SECTOR = 25;

// Volume descriptor fields (ECMA-119 §8.4).
const VD = {
  type: 0,
  id: 1, // "CD001"
  version: 6,
  systemId: 8, // 32 bytes
  volumeId: 40, // 32 bytes
  spaceSize: 80, // both-endian 32
  escapes: 88, // SVD only: Joliet "%/E" (UCS-2 level 3)
  setSize: 120,
  sequenceNumber: 124,
  blockSize: 128,
  pathTableSize: 132,
  lPathTable: 140,
  mPathTable: 148,
  rootRecord: 156, // 34 bytes
  applicationId: 574, // 128 bytes
  creationDate: 813, // 17 bytes each
  modificationDate: 830,
  expirationDate: 847,
  effectiveDate: 864,
  structureVersion: 881,
} as const;

export interface IsoFile {
  /** Name as the guest should see it (Joliet); a level-1 name is derived for the primary tree. */
  name: string;
  data: Buffer;
}

export interface IsoOptions {
  /** Volume label (d-characters, ≤ 32). VMware uses "OVF ENV" for the environment CD. */
  volumeId?: string;
  /** Seconds since the epoch written as every date (reproducible images). */
  mtime?: number;
}

function both16(buf: Buffer, at: number, value: number): void {
  buf.writeUInt16LE(value, at);
  buf.writeUInt16BE(value, at + 2);
}

function both32(buf: Buffer, at: number, value: number): void {
  buf.writeUInt32LE(value, at);
  buf.writeUInt32BE(value, at + 4);
}

/** 17-byte "dec-datetime" (ECMA-119 §8.4.26.1), GMT. */
function decDateTime(date: Date): Buffer {
  const pad = (n: number, w = 2): string => String(n).padStart(w, "0");
  const text =
    `${pad(date.getUTCFullYear(), 4)}${pad(date.getUTCMonth() + 1)}${pad(date.getUTCDate())}` +
    `${pad(date.getUTCHours())}${pad(date.getUTCMinutes())}${pad(date.getUTCSeconds())}00`;
  const out = Buffer.alloc(17);
  out.write(text, 0, 16, "latin1");
  out[16] = 0; // offset from GMT in 15-minute units
  return out;
}

/** 7-byte directory record date (ECMA-119 §9.1.5). */
function recordDate(date: Date): Buffer {
  return Buffer.from([
    date.getUTCFullYear() - 1900,
    date.getUTCMonth() + 1,
    date.getUTCDate(),
    date.getUTCHours(),
    date.getUTCMinutes(),
    date.getUTCSeconds(),
    0,
  ]);
}

/** A directory record (ECMA-119 §9.1) for `name` (raw identifier bytes). */
function directoryRecord(
  name: Buffer,
  sector: number,
  size: number,
  isDirectory: boolean,
  date: Date,
): Buffer {
  const length = 33 + name.length + (name.length % 2 === 0 ? 1 : 0);
  const rec = Buffer.alloc(length);
  rec[0] = length;
  both32(rec, 2, sector);
  both32(rec, 10, size);
  recordDate(date).copy(rec, 18);
  rec[25] = isDirectory ? 2 : 0;
  both16(rec, 28, 1);
  rec[32] = name.length;
  name.copy(rec, 33);
  return rec;
}

/** The one-entry path table of a root-only image (ECMA-119 §9.4). */
function pathTable(rootSector: number, bigEndian: boolean): Buffer {
  const table = Buffer.alloc(10);
  table[0] = 1;
  if (bigEndian) {
    table.writeUInt32BE(rootSector, 2);
    table.writeUInt16BE(1, 6);
  } else {
    table.writeUInt32LE(rootSector, 2);
    table.writeUInt16LE(1, 6);
  }
  return table;
}

/** `ovf-env.xml` → `OVF_ENV.XML;1` (d-characters, 8.3 is not required at level 2 but kept short). */
export function level1Name(name: string): string {
  const upper = name.toUpperCase().replace(/[^A-Z0-9_.]/g, "_");
  const dot = upper.lastIndexOf(".");
  const stem = (dot < 0 ? upper : upper.slice(0, dot)).replace(/\./g, "_").slice(0, 30);
  const ext = dot < 0 ? "" : upper.slice(dot + 1).slice(0, 30 - stem.length);
  return `${stem}.${ext};1`;
}

function padded(text: string, length: number, encoding: "latin1" | "ucs2be"): Buffer {
  const out = Buffer.alloc(length);
  if (encoding === "latin1") {
    out.fill(0x20);
    out.write(text.slice(0, length), 0, length, "latin1");
  } else {
    for (let i = 0; i + 1 < length; i += 2) out.writeUInt16BE(0x20, i);
    const chars = [...text].slice(0, Math.floor(length / 2));
    for (const [i, c] of chars.entries()) out.writeUInt16BE(c.charCodeAt(0), i * 2);
  }
  return out;
}

function ucs2be(text: string): Buffer {
  const out = Buffer.alloc(text.length * 2);
  for (let i = 0; i < text.length; i++) out.writeUInt16BE(text.charCodeAt(i), i * 2);
  return out;
}

/** Builds the whole image in memory (environment CDs are kilobytes). */
export function buildIso9660(files: IsoFile[], options: IsoOptions = {}): Buffer {
  const volumeId = (options.volumeId ?? "OVF ENV").toUpperCase();
  if (!/^[A-Z0-9_ ]{1,32}$/.test(volumeId)) {
    throw new OvfkitError("ISO_VOLUME_ID", `volume id "${volumeId}" must be 1-32 of A-Z 0-9 _ space`);
  }
  const names = new Set<string>();
  for (const file of files) {
    if (!/^[^/\\\0]{1,64}$/.test(file.name))
      throw new OvfkitError("ISO_NAME", `bad file name "${file.name}"`);
    const key = level1Name(file.name);
    if (names.has(key)) throw new OvfkitError("ISO_NAME", `two files map to ${key}`);
    names.add(key);
  }
  const date = new Date((options.mtime ?? 0) * 1000);
  let next = FIRST_FILE_SECTOR;
  const placed = files.map((file) => {
    const sector = next;
    next += Math.max(1, Math.ceil(file.data.length / SECTOR));
    return { ...file, sector };
  });
  const totalSectors = next;
  const image = Buffer.alloc(totalSectors * SECTOR);

  const rootFolder = (joliet: boolean): Buffer => {
    const rootSector = joliet ? ROOT_SECTOR.joliet : ROOT_SECTOR.primary;
    const records = [
      directoryRecord(Buffer.from([0]), rootSector, SECTOR, true, date),
      directoryRecord(Buffer.from([1]), rootSector, SECTOR, true, date),
      ...placed.map((f) =>
        directoryRecord(
          joliet ? ucs2be(f.name) : Buffer.from(level1Name(f.name), "latin1"),
          f.sector,
          f.data.length,
          false,
          date,
        ),
      ),
    ];
    const folder = Buffer.concat(records);
    if (folder.length > SECTOR)
      throw new OvfkitError("ISO_TOO_MANY_FILES", "the root folder must fit one sector");
    return folder;
  };

  const descriptor = (joliet: boolean): Buffer => {
    const vd = Buffer.alloc(SECTOR);
    vd[VD.type] = joliet ? 2 : 1;
    vd.write("CD001", VD.id, "latin1");
    vd[VD.version] = 1;
    const text = joliet ? "ucs2be" : "latin1";
    padded("", 32, text).copy(vd, VD.systemId);
    padded(volumeId, 32, text).copy(vd, VD.volumeId);
    both32(vd, VD.spaceSize, totalSectors);
    if (joliet) vd.write("%/E", VD.escapes, "latin1");
    both16(vd, VD.setSize, 1);
    both16(vd, VD.sequenceNumber, 1);
    both16(vd, VD.blockSize, SECTOR);
    both32(vd, VD.pathTableSize, 10);
    vd.writeUInt32LE(joliet ? PATH_TABLES.jolietL : PATH_TABLES.primaryL, VD.lPathTable);
    vd.writeUInt32BE(joliet ? PATH_TABLES.jolietM : PATH_TABLES.primaryM, VD.mPathTable);
    const rootSector = joliet ? ROOT_SECTOR.joliet : ROOT_SECTOR.primary;
    directoryRecord(Buffer.from([0]), rootSector, SECTOR, true, date).copy(vd, VD.rootRecord);
    // Volume set, publisher, preparer, application, copyright, abstract, bibliographic: spaces.
    padded("", 128 * 4 + 37 * 3, text).copy(vd, 190);
    padded("OVFKIT", 128, text).copy(vd, VD.applicationId);
    decDateTime(date).copy(vd, VD.creationDate);
    decDateTime(date).copy(vd, VD.modificationDate);
    Buffer.from("0000000000000000\0", "latin1").copy(vd, VD.expirationDate);
    decDateTime(date).copy(vd, VD.effectiveDate);
    vd[VD.structureVersion] = 1;
    return vd;
  };

  descriptor(false).copy(image, PVD_SECTOR * SECTOR);
  descriptor(true).copy(image, SVD_SECTOR * SECTOR);
  const terminator = Buffer.alloc(7);
  terminator[0] = 255;
  terminator.write("CD001", 1, "latin1");
  terminator[6] = 1;
  terminator.copy(image, TERMINATOR_SECTOR * SECTOR);
  pathTable(ROOT_SECTOR.primary, false).copy(image, PATH_TABLES.primaryL * SECTOR);
  pathTable(ROOT_SECTOR.primary, true).copy(image, PATH_TABLES.primaryM * SECTOR);
  pathTable(ROOT_SECTOR.joliet, false).copy(image, PATH_TABLES.jolietL * SECTOR);
  pathTable(ROOT_SECTOR.joliet, true).copy(image, PATH_TABLES.jolietM * SECTOR);
  rootFolder(false).copy(image, ROOT_SECTOR.primary * SECTOR);
  rootFolder(true).copy(image, ROOT_SECTOR.joliet * SECTOR);
  for (const file of placed) file.data.copy(image, file.sector * SECTOR);
  return image;
}
