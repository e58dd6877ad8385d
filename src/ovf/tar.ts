import { type FileHandle, open } from "node:fs/promises";
import { asOvfkitError, OvfkitError } from "../errors.js";

/**
 * Streaming tar for OVA packages (DSP0243 §5.3: an OVA is a plain tar).
 *
 * Reading is one forward pass with positioned reads: headers are parsed as
 * they come, member bodies are handed out in large chunks (so a verifier
 * hashes members as they stream by) and skipped with a seek when nobody
 * wants them. Nothing is ever extracted to disk to be checked.
 *
 * Writing emits GNU-format headers (magic "ustar  \0", what GNU tar
 * `--format=gnu`, open-vmdk's ova-compose and oVirt's pack_ova write),
 * sizes over 8 GiB in GNU base-256, never PAX extended headers: vSphere
 * refuses `././@PaxHeader` members (targets.md check 1).
 */

/** One tar block (POSIX.1-1988 ustar, IEEE 1003.1 §10.1.1). */
export const BLOCK = 512;
/** GNU tar and Python's tarfile pad an archive to whole 20-block records. */
export const RECORD = 20 * BLOCK;

// ustar header field offsets and lengths (IEEE 1003.1-1988 §10.1.1 "Header Block").
const NAME = { offset: 0, length: 100 };
const MODE = { offset: 100, length: 8 };
const UID = { offset: 108, length: 8 };
const GID = { offset: 116, length: 8 };
const SIZE = { offset: 124, length: 12 };
const MTIME = { offset: 136, length: 12 };
const CHKSUM = { offset: 148, length: 8 };
const TYPEFLAG = 156;
const LINKNAME = { offset: 157, length: 100 };
const MAGIC = { offset: 257, length: 6 };
const VERSION = { offset: 263, length: 2 };
const UNAME = { offset: 265, length: 32 };
const GNAME = { offset: 297, length: 32 };
const PREFIX = { offset: 345, length: 155 };

/** The largest size an 11-digit octal field holds: 8 GiB - 1 (ustar's limit). */
export const USTAR_MAX_SIZE = 8 ** 11 - 1;

export type TarMemberType =
  | "file"
  | "hardlink"
  | "symlink"
  | "char-device"
  | "block-device"
  | "directory"
  | "fifo"
  | "other";

export interface TarMember {
  /** Full member name (ustar prefix joined, or a GNU/PAX long name). */
  name: string;
  type: TarMemberType;
  /** Raw type flag character from the header. */
  typeflag: string;
  size: number;
  mode: number;
  uid: number;
  gid: number;
  uname: string;
  gname: string;
  mtime: number;
  linkName: string;
  /** Byte offset of this member's header (of its first GNU/PAX prefix header when it has one). */
  headerOffset: number;
  /** Byte offset where the member's data starts. */
  dataOffset: number;
  /** Header dialect: "gnu" (magic "ustar  \0"), "ustar" (POSIX "ustar\0" "00") or "v7". */
  dialect: "gnu" | "ustar" | "v7";
  /** True when a PAX or GNU long-name header preceded this member. */
  extendedHeader: boolean;
}

export interface TarReadOptions {
  /**
   * OVA rules (DSP0243 §5.3 and notes/ovf.md): only plain files with plain
   * names, no duplicates. Off, the reader lists anything (for diagnostics).
   */
  ova?: boolean;
  /** Size of the chunks handed to `body()` consumers (default 4 MiB). */
  chunkSize?: number;
}

export interface TarSummary {
  members: TarMember[];
  /** True when the archive ended with the two zero blocks POSIX requires. */
  endMarker: boolean;
  /** Total bytes of the archive file. */
  fileSize: number;
}

function cString(block: Buffer, field: { offset: number; length: number }): string {
  const raw = block.subarray(field.offset, field.offset + field.length);
  const end = raw.indexOf(0);
  return raw.toString("utf8", 0, end === -1 ? raw.length : end);
}

/**
 * A numeric header field: octal text (NUL/space terminated), or GNU
 * base-256 when the top bit of the first byte is set (GNU tar manual
 * "Extensions to the Archive Format": numbers too big for octal).
 */
export function parseNumericField(
  block: Buffer,
  field: { offset: number; length: number },
  what: string,
  file: string,
  headerOffset: number,
): number {
  const raw = block.subarray(field.offset, field.offset + field.length);
  if (raw[0]! & 0x80) {
    if (raw[0] === 0xff) {
      throw new OvfkitError("OVA_BAD_HEADER", `negative base-256 ${what} in tar header`, {
        file,
        offset: headerOffset + field.offset,
      });
    }
    let value = raw[0]! & 0x7f;
    for (let i = 1; i < raw.length; i++) {
      value = value * 256 + raw[i]!;
      if (value > Number.MAX_SAFE_INTEGER) {
        throw new OvfkitError("OVA_MEMBER_SIZE", `tar ${what} is larger than 2^53 bytes`, {
          file,
          offset: headerOffset + field.offset,
        });
      }
    }
    return value;
  }
  const text = raw
    .toString("latin1")
    .replace(/[\0 ]+$/, "")
    .replace(/^ +/, "");
  if (text === "") return 0;
  if (!/^[0-7]+$/.test(text)) {
    throw new OvfkitError("OVA_BAD_HEADER", `tar ${what} field is not octal: ${JSON.stringify(text)}`, {
      file,
      offset: headerOffset + field.offset,
    });
  }
  return Number.parseInt(text, 8);
}

/** Sum of the header bytes with the checksum field counted as spaces (ustar §10.1.1). */
function headerChecksum(block: Buffer): { unsigned: number; signed: number } {
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const byte = i >= CHKSUM.offset && i < CHKSUM.offset + CHKSUM.length ? 0x20 : block[i]!;
    unsigned += byte;
    signed += byte > 127 ? byte - 256 : byte;
  }
  return { unsigned, signed };
}

function isZeroBlock(block: Buffer): boolean {
  for (let i = 0; i < block.length; i++) if (block[i] !== 0) return false;
  return true;
}

function memberType(flag: string): TarMemberType {
  switch (flag) {
    case "0":
    case "\0":
    case "7": // contiguous file: a regular file everywhere that matters
      return "file";
    case "1":
      return "hardlink";
    case "2":
      return "symlink";
    case "3":
      return "char-device";
    case "4":
      return "block-device";
    case "5":
      return "directory";
    case "6":
      return "fifo";
    default:
      return "other";
  }
}

/**
 * Refuses a member name an OVA must not have (notes/ovf.md "Member names
 * must be plain names"): a folder part, `..`, an absolute path, a drive
 * letter, a backslash, a control character or an empty name.
 */
export function checkMemberName(name: string, file: string, offset: number): void {
  const fail = (code: string, why: string): never => {
    throw new OvfkitError(code, `tar member ${JSON.stringify(name)} ${why}`, { file, offset });
  };
  if (name === "" || name === "." || name === "..") fail("OVA_MEMBER_NAME", "is not a file name");
  if (name.startsWith("/") || name.startsWith("\\")) fail("OVA_ABSOLUTE_PATH", "is an absolute path");
  if (/^[A-Za-z]:/.test(name)) fail("OVA_ABSOLUTE_PATH", "starts with a drive letter");
  if (name.split(/[/\\]/).includes("..")) fail("OVA_PATH_TRAVERSAL", "climbs out of the package with '..'");
  if (/[/\\]/.test(name)) fail("OVA_MEMBER_PATH", "is inside a folder; OVA members must be at the top level");
  if (/[\x00-\x1f\x7f]/.test(name)) fail("OVA_MEMBER_NAME", "contains a control character");
}

/** PAX extended header records: "LEN key=value\n" (POSIX.1-2001 pax "Extended Header"). */
function parsePaxRecords(data: Buffer): Map<string, string> {
  const records = new Map<string, string>();
  let at = 0;
  while (at < data.length) {
    const space = data.indexOf(0x20, at);
    if (space === -1) break;
    const length = Number.parseInt(data.toString("latin1", at, space), 10);
    if (!Number.isFinite(length) || length <= 0 || at + length > data.length) break;
    const record = data.toString("utf8", space + 1, at + length - 1);
    const eq = record.indexOf("=");
    if (eq > 0) records.set(record.slice(0, eq), record.slice(eq + 1));
    at += length;
  }
  return records;
}

/** Magic numbers of the compressors people wrap OVAs in (virt-v2v accepts them, DSP0243 does not). */
const COMPRESSED_MAGIC: { magic: readonly number[]; name: string }[] = [
  { magic: [0x1f, 0x8b], name: "gzip" },
  { magic: [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00], name: "xz" },
  { magic: [0x50, 0x4b, 0x03, 0x04], name: "zip" },
  { magic: [0x42, 0x5a, 0x68], name: "bzip2" },
];

/** The compressor whose magic starts `head`, if any. */
export function compressionOf(head: Uint8Array): string | undefined {
  return COMPRESSED_MAGIC.find(({ magic }) => magic.every((byte, i) => head[i] === byte))?.name;
}

/** Extended headers are small; a huge one is hostile. */
const MAX_EXTENDED_HEADER = 1024 * 1024;

/**
 * A tar archive read in one forward pass. Iterate `members()`; inside the
 * loop, `body()` streams the current member's data (call it at most once,
 * before moving on; an unread body is skipped without reading it).
 */
export class TarReader {
  private position = 0;
  private readonly seen = new Set<string>();
  private bodyRequested = false;
  private current: TarMember | undefined;
  private readonly chunkSize: number;
  readonly list: TarMember[] = [];
  endMarker = false;

  private constructor(
    readonly path: string,
    private readonly handle: FileHandle,
    readonly fileSize: number,
    private readonly options: TarReadOptions,
  ) {
    this.chunkSize = options.chunkSize ?? 4 * 1024 * 1024;
  }

  static async open(path: string, options: TarReadOptions = {}): Promise<TarReader> {
    let handle: FileHandle;
    try {
      handle = await open(path, "r");
      const stat = await handle.stat();
      if (stat.isDirectory()) {
        await handle.close();
        throw new OvfkitError("IS_A_DIRECTORY", `is a directory: ${path}`, { file: path });
      }
      return new TarReader(path, handle, stat.size, options);
    } catch (error) {
      throw asOvfkitError(error, path);
    }
  }

  async close(): Promise<void> {
    await this.handle.close();
  }

  private async readBlock(offset: number, what: string): Promise<Buffer> {
    const block = Buffer.alloc(BLOCK);
    const { bytesRead } = await this.handle.read(block, 0, BLOCK, offset);
    if (bytesRead < BLOCK) {
      throw new OvfkitError("OVA_TRUNCATED", `tar archive ends inside ${what} (${bytesRead} of 512 bytes)`, {
        file: this.path,
        offset,
      });
    }
    return block;
  }

  private async readData(offset: number, size: number, what: string): Promise<Buffer> {
    if (size > MAX_EXTENDED_HEADER) {
      throw new OvfkitError(
        "OVA_BAD_HEADER",
        `${what} declares ${size} bytes (limit ${MAX_EXTENDED_HEADER})`,
        {
          file: this.path,
          offset,
        },
      );
    }
    this.checkFits(offset, size, what);
    const data = Buffer.alloc(size);
    await this.handle.read(data, 0, size, offset);
    return data;
  }

  private checkFits(dataOffset: number, size: number, what: string): void {
    if (dataOffset + size > this.fileSize) {
      throw new OvfkitError(
        size > this.fileSize ? "OVA_MEMBER_SIZE" : "OVA_TRUNCATED",
        `${what} declares ${size} bytes at offset ${dataOffset} but the archive has only ${Math.max(
          0,
          this.fileSize - dataOffset,
        )} bytes left`,
        { file: this.path, offset: dataOffset },
      );
    }
  }

  /** Reads the next header (following GNU long-name and PAX headers); undefined at the end. */
  private async nextHeader(): Promise<TarMember | undefined> {
    let longName: string | undefined;
    let longLink: string | undefined;
    let pax = new Map<string, string>();
    let extended = false;
    const firstHeader = this.position;
    for (;;) {
      if (this.position >= this.fileSize) {
        // Ended without the two zero blocks: tolerated (GNU tar warns too), recorded in `endMarker`.
        if (extended) {
          throw new OvfkitError("OVA_TRUNCATED", "tar archive ends after an extended header", {
            file: this.path,
            offset: firstHeader,
          });
        }
        return undefined;
      }
      const offset = this.position;
      const block = await this.readBlock(offset, "a tar header");
      if (isZeroBlock(block)) {
        this.endMarker = true;
        return undefined;
      }
      if (offset === 0) {
        // A first block that is no tar header at all (a PNG, an XML file named .ova) is "not a tar".
        try {
          this.verifyChecksum(block, offset);
        } catch (error) {
          const compression = compressionOf(block);
          if (compression) {
            throw new OvfkitError(
              "OVA_COMPRESSED",
              `the archive is ${compression}-compressed; an OVA must be a plain tar (vSphere and AWS refuse compressed OVAs)`,
              { file: this.path, offset: 0, cause: error },
            );
          }
          throw new OvfkitError(
            "OVA_NOT_TAR",
            "not a tar archive (the first block is not a valid tar header)",
            {
              file: this.path,
              offset: 0,
              cause: error,
            },
          );
        }
      } else {
        this.verifyChecksum(block, offset);
      }
      const flag = String.fromCharCode(block[TYPEFLAG]!);
      const size = parseNumericField(block, SIZE, "size", this.path, offset);
      const dataOffset = offset + BLOCK;
      const padded = Math.ceil(size / BLOCK) * BLOCK;
      if (flag === "L" || flag === "K" || flag === "x" || flag === "g") {
        const data = await this.readData(dataOffset, size, `extended header '${flag}'`);
        this.position = dataOffset + padded;
        if (flag === "g") continue; // global PAX defaults: nothing an OVA member needs
        extended = true;
        if (flag === "L") longName = data.toString("utf8").replace(/\0+$/, "");
        else if (flag === "K") longLink = data.toString("utf8").replace(/\0+$/, "");
        else pax = parsePaxRecords(data);
        continue;
      }
      const magic = block.toString("latin1", MAGIC.offset, MAGIC.offset + MAGIC.length);
      const version = block.toString("latin1", VERSION.offset, VERSION.offset + VERSION.length);
      const dialect = magic === "ustar " && version === " \0" ? "gnu" : magic === "ustar\0" ? "ustar" : "v7";
      let name = cString(block, NAME);
      if (dialect === "ustar") {
        const prefix = cString(block, PREFIX);
        if (prefix) name = `${prefix}/${name}`;
      }
      name = pax.get("path") ?? longName ?? name;
      let realSize = size;
      const paxSize = pax.get("size");
      if (paxSize !== undefined) {
        if (!/^\d+$/.test(paxSize) || Number(paxSize) > Number.MAX_SAFE_INTEGER) {
          throw new OvfkitError("OVA_BAD_HEADER", `PAX size ${JSON.stringify(paxSize)} is not a number`, {
            file: this.path,
            offset: firstHeader,
          });
        }
        realSize = Number(paxSize);
      }
      const member: TarMember = {
        name,
        type: memberType(flag),
        typeflag: flag,
        size: realSize,
        mode: parseNumericField(block, MODE, "mode", this.path, offset),
        uid: parseNumericField(block, UID, "uid", this.path, offset),
        gid: parseNumericField(block, GID, "gid", this.path, offset),
        uname: dialect === "v7" ? "" : cString(block, UNAME),
        gname: dialect === "v7" ? "" : cString(block, GNAME),
        mtime: parseNumericField(block, MTIME, "mtime", this.path, offset),
        linkName: pax.get("linkpath") ?? longLink ?? cString(block, LINKNAME),
        headerOffset: firstHeader,
        dataOffset,
        dialect,
        extendedHeader: extended,
      };
      // Links and devices carry no data whatever their size field says.
      const carriesData = member.type === "file" || member.type === "other";
      const dataSize = carriesData ? member.size : 0;
      this.checkFits(dataOffset, dataSize, `tar member ${JSON.stringify(name)}`);
      this.position = dataOffset + Math.ceil(dataSize / BLOCK) * BLOCK;
      return member;
    }
  }

  private verifyChecksum(block: Buffer, offset: number): void {
    const stored = parseNumericField(block, CHKSUM, "checksum", this.path, offset);
    const { unsigned, signed } = headerChecksum(block);
    if (stored !== unsigned && stored !== signed) {
      throw new OvfkitError("OVA_BAD_HEADER", `tar header checksum is ${stored}, computed ${unsigned}`, {
        file: this.path,
        offset,
      });
    }
  }

  /** Applies the OVA rules to a member (plain file, plain name, not seen before). */
  private checkOvaMember(member: TarMember): void {
    const where = { file: this.path, offset: member.headerOffset };
    const quoted = JSON.stringify(member.name);
    if (member.type === "hardlink" || member.type === "symlink") {
      throw new OvfkitError(
        "OVA_LINK",
        `tar member ${quoted} is a ${member.type} to ${JSON.stringify(member.linkName)}; OVA members must be plain files`,
        where,
      );
    }
    if (member.type === "char-device" || member.type === "block-device" || member.type === "fifo") {
      throw new OvfkitError("OVA_DEVICE", `tar member ${quoted} is a ${member.type}`, where);
    }
    checkMemberName(member.name, this.path, member.headerOffset);
    if (member.type !== "file") {
      throw new OvfkitError(
        "OVA_MEMBER_TYPE",
        `tar member ${quoted} has type '${member.typeflag}' (${member.type}); OVA members must be plain files`,
        where,
      );
    }
    if (this.seen.has(member.name)) {
      throw new OvfkitError("OVA_DUPLICATE_MEMBER", `tar member ${quoted} appears twice`, where);
    }
  }

  /** The members in archive order; the OVA rules are applied when asked for. */
  async *members(): AsyncGenerator<TarMember> {
    for (;;) {
      const member = await this.nextHeader();
      if (!member) return;
      if (this.options.ova) this.checkOvaMember(member);
      this.seen.add(member.name);
      this.list.push(member);
      this.current = member;
      this.bodyRequested = false;
      yield member;
    }
  }

  /**
   * Streams the current member's data in chunks. The next chunk is read
   * while the caller works on this one (hashing overlaps with I/O), so each
   * yielded buffer is valid only until the next iteration.
   */
  async *body(): AsyncGenerator<Buffer> {
    const member = this.current;
    if (!member || this.bodyRequested) {
      throw new OvfkitError("TAR_BODY_CONSUMED", "tar member body requested twice or outside members()");
    }
    this.bodyRequested = true;
    if (member.type !== "file") return;
    const buffers = [Buffer.allocUnsafe(this.chunkSize), Buffer.allocUnsafe(this.chunkSize)];
    let which = 0;
    let offset = member.dataOffset;
    const end = member.dataOffset + member.size;
    const readInto = async (buffer: Buffer, at: number): Promise<Buffer> => {
      const length = Math.min(this.chunkSize, end - at);
      const { bytesRead } = await this.handle.read(buffer, 0, length, at);
      if (bytesRead < length) {
        throw new OvfkitError("OVA_TRUNCATED", `tar member ${JSON.stringify(member.name)} is cut short`, {
          file: this.path,
          offset: at + bytesRead,
        });
      }
      return buffer.subarray(0, length);
    };
    let pending: Promise<Buffer> | undefined = offset < end ? readInto(buffers[which]!, offset) : undefined;
    while (pending) {
      const chunk = await pending;
      offset += chunk.length;
      which ^= 1;
      pending = offset < end ? readInto(buffers[which]!, offset) : undefined;
      // Keep a rejected read-ahead from becoming an unhandled rejection if the consumer stops early.
      pending?.catch(() => undefined);
      yield chunk;
    }
  }

  /** Reads the current member whole; for small members (descriptor, manifest, certificate). */
  async readSmall(limit = 64 * 1024 * 1024): Promise<Buffer> {
    const member = this.current;
    if (member && member.size > limit) {
      throw new OvfkitError(
        "OVA_MEMBER_SIZE",
        `tar member ${JSON.stringify(member.name)} is ${member.size} bytes, more than the ${limit} expected`,
        { file: this.path, offset: member.headerOffset },
      );
    }
    const parts: Buffer[] = [];
    for await (const chunk of this.body()) parts.push(Buffer.from(chunk));
    return Buffer.concat(parts);
  }
}

/** Lists an archive's members without reading their data. */
export async function listTar(path: string, options: TarReadOptions = {}): Promise<TarSummary> {
  const reader = await TarReader.open(path, options);
  try {
    for await (const _ of reader.members()) {
      // headers only: bodies are skipped
    }
    return { members: reader.list, endMarker: reader.endMarker, fileSize: reader.fileSize };
  } finally {
    await reader.close();
  }
}

// ---------------------------------------------------------------- writing

export interface TarHeaderFields {
  name: string;
  size: number;
  /** Seconds since the epoch. */
  mtime: number;
  mode?: number;
  uid?: number;
  gid?: number;
  uname?: string;
  gname?: string;
}

/**
 * Owner written into every member: uid/gid 0 "root"/"root", what open-vmdk's
 * ova-compose gets from `tar --format=gnu --owner=0 --group=0` and oVirt's
 * pack_ova from tarfile. ovftool writes its build user; nothing reads it.
 */
export const DEFAULT_OWNER = { uid: 0, gid: 0, uname: "root", gname: "root" } as const;
export const DEFAULT_MODE = 0o644;

function writeOctal(block: Buffer, field: { offset: number; length: number }, value: number): void {
  // length-1 octal digits then NUL, zero-padded (GNU tar's style).
  const text = value.toString(8).padStart(field.length - 1, "0");
  block.write(`${text}\0`, field.offset, field.length, "latin1");
}

function writeString(block: Buffer, field: { offset: number; length: number }, value: string): void {
  block.write(value, field.offset, field.length, "utf8");
}

/** GNU base-256: top bit set, big-endian binary in the remaining bits of the field. */
function writeBase256(block: Buffer, field: { offset: number; length: number }, value: number): void {
  let remaining = BigInt(value);
  for (let i = field.length - 1; i >= 1; i--) {
    block[field.offset + i] = Number(remaining & 0xffn);
    remaining >>= 8n;
  }
  block[field.offset] = 0x80;
}

/**
 * One GNU-format header block for a regular file. Names longer than 100
 * bytes are refused rather than written with a GNU 'L' or PAX header
 * (importers choke on those before the descriptor).
 */
export function tarHeader(fields: TarHeaderFields): Buffer {
  const nameBytes = Buffer.byteLength(fields.name, "utf8");
  if (nameBytes > NAME.length) {
    throw new OvfkitError(
      "OVA_NAME_TOO_LONG",
      `member name ${JSON.stringify(fields.name)} is ${nameBytes} bytes; a plain tar header holds 100`,
    );
  }
  checkMemberName(fields.name, fields.name, 0);
  if (!Number.isSafeInteger(fields.size) || fields.size < 0) {
    throw new OvfkitError("OVA_MEMBER_SIZE", `member size ${fields.size} is not a byte count`);
  }
  const block = Buffer.alloc(BLOCK);
  writeString(block, NAME, fields.name);
  writeOctal(block, MODE, fields.mode ?? DEFAULT_MODE);
  writeOctal(block, UID, fields.uid ?? DEFAULT_OWNER.uid);
  writeOctal(block, GID, fields.gid ?? DEFAULT_OWNER.gid);
  if (fields.size > USTAR_MAX_SIZE) writeBase256(block, SIZE, fields.size);
  else writeOctal(block, SIZE, fields.size);
  writeOctal(block, MTIME, Math.max(0, Math.floor(fields.mtime)));
  block[TYPEFLAG] = 0x30; // '0' regular file
  block.write("ustar  \0", MAGIC.offset, 8, "latin1"); // GNU magic + version
  writeString(block, UNAME, fields.uname ?? DEFAULT_OWNER.uname);
  writeString(block, GNAME, fields.gname ?? DEFAULT_OWNER.gname);
  const { unsigned } = headerChecksum(block);
  // Checksum: six octal digits, NUL, space (what GNU tar writes).
  block.write(`${unsigned.toString(8).padStart(6, "0")}\0 `, CHKSUM.offset, CHKSUM.length, "latin1");
  return block;
}

/** Zero padding after `size` data bytes up to the next block. */
export function paddingFor(size: number): Buffer {
  const rest = size % BLOCK;
  return Buffer.alloc(rest === 0 ? 0 : BLOCK - rest);
}

/**
 * Writes a tar archive sequentially to a file: header, streamed data,
 * padding, ... then the end marker padded to a whole record.
 */
export class TarWriter {
  private position = 0;
  private readonly names = new Set<string>();

  private constructor(
    readonly path: string,
    private readonly handle: FileHandle,
  ) {}

  static async create(path: string): Promise<TarWriter> {
    try {
      return new TarWriter(path, await open(path, "w"));
    } catch (error) {
      throw asOvfkitError(error, path);
    }
  }

  get bytesWritten(): number {
    return this.position;
  }

  private async write(data: Uint8Array): Promise<void> {
    let done = 0;
    while (done < data.length) {
      const { bytesWritten } = await this.handle.write(data, done, data.length - done, this.position + done);
      done += bytesWritten;
    }
    this.position += data.length;
  }

  /**
   * Adds one member whose data comes from `chunks` (exactly `fields.size`
   * bytes). `onChunk` sees every byte as it goes by, so digests are
   * computed in the same pass as the copy.
   */
  async add(
    fields: TarHeaderFields,
    chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
    onChunk?: (chunk: Uint8Array) => void,
  ): Promise<void> {
    if (this.names.has(fields.name)) {
      throw new OvfkitError("OVA_DUPLICATE_MEMBER", `member ${JSON.stringify(fields.name)} added twice`, {
        file: this.path,
      });
    }
    this.names.add(fields.name);
    await this.write(tarHeader(fields));
    let copied = 0;
    for await (const chunk of chunks) {
      copied += chunk.length;
      if (copied > fields.size) break;
      onChunk?.(chunk);
      await this.write(chunk);
    }
    if (copied !== fields.size) {
      throw new OvfkitError(
        "OVA_SIZE_CHANGED",
        `${fields.name} gave ${copied} bytes while packing but was ${fields.size} bytes when the header was written (was it modified meanwhile?)`,
        { file: fields.name },
      );
    }
    await this.write(paddingFor(fields.size));
  }

  /**
   * Adds a member whose data is not known yet (the manifest and
   * certificate of a pack, whose digests come from files written after
   * them): writes the header and `size` zero bytes, and returns the data
   * offset for `fill`. Their sizes are known in advance (manifestLineLength,
   * signedCertificateLength), so the archive is still written in one pass.
   */
  async reserve(fields: TarHeaderFields): Promise<number> {
    const zeros = Buffer.alloc(Math.min(fields.size, 1024 * 1024));
    const chunks = function* (): Generator<Buffer> {
      for (let left = fields.size; left > 0; left -= zeros.length)
        yield zeros.subarray(0, Math.min(left, zeros.length));
    };
    await this.add(fields, chunks());
    return this.position - Math.ceil(fields.size / BLOCK) * BLOCK;
  }

  /** Writes the data of a reserved member in place. */
  async fill(dataOffset: number, data: Uint8Array, reservedSize: number): Promise<void> {
    if (data.length !== reservedSize) {
      throw new OvfkitError(
        "INTERNAL",
        `reserved ${reservedSize} bytes for a member but its data is ${data.length} bytes`,
        { file: this.path, offset: dataOffset },
      );
    }
    let done = 0;
    while (done < data.length) {
      const { bytesWritten } = await this.handle.write(data, done, data.length - done, dataOffset + done);
      done += bytesWritten;
    }
  }

  /** Writes the two zero blocks and pads to a whole 10 KiB record, then closes. */
  async finish(): Promise<void> {
    const end = this.position + 2 * BLOCK;
    const total = Math.ceil(end / RECORD) * RECORD;
    await this.write(Buffer.alloc(total - this.position));
    await this.handle.sync();
    await this.handle.close();
  }

  async abort(): Promise<void> {
    await this.handle.close().catch(() => undefined);
  }
}
