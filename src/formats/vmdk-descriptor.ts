import { existsSync, realpathSync } from "node:fs";
import { isAbsolute, normalize, resolve, sep } from "node:path";
import { OvfkitError } from "../errors.js";

/**
 * The VMDK text descriptor (VMware "Virtual Disk Format 5.0", section "The
 * Descriptor File"): `key = value` lines, `# comments`, extent lines and
 * the `ddb.*` disk database. It is embedded at sector `descriptorOffset` of
 * monolithicSparse/streamOptimized files and stands alone for flat and
 * split disks.
 *
 * The parser is tolerant the way real files need it to be: VirtualBox
 * writes `key="value"` without spaces, VMware pads lines with trailing
 * blanks, quotes are optional around numbers, keys are case-sensitive but
 * `createType` values are compared case-insensitively as VMware does.
 */

export type ExtentAccess = "RW" | "RDONLY" | "NOACCESS";
export type ExtentType = "SPARSE" | "FLAT" | "ZERO" | "VMFS" | "VMFSSPARSE" | "VMFSRDM" | "VMFSRAW";

const ACCESS_VALUES: readonly ExtentAccess[] = ["RW", "RDONLY", "NOACCESS"];
const EXTENT_TYPES: readonly ExtentType[] = [
  "SPARSE",
  "FLAT",
  "ZERO",
  "VMFS",
  "VMFSSPARSE",
  "VMFSRDM",
  "VMFSRAW",
];

export interface ExtentLine {
  access: ExtentAccess;
  /** Size of the extent in 512-byte sectors. */
  sectors: number;
  type: ExtentType;
  /** File name as written (relative to the descriptor's folder); absent for ZERO. */
  file?: string;
  /** Start of the extent's data inside `file`, in sectors (FLAT/VMFS only). */
  offset: number;
  /** 1-based line of the descriptor the extent was declared on. */
  line: number;
}

export interface VmdkDescriptor {
  version: number;
  /** Content ID: changes whenever the disk's content changes. */
  cid: number;
  /** The parent's CID; 0xffffffff when the disk has no parent. */
  parentCid: number;
  createType: string;
  parentFileNameHint?: string;
  extents: ExtentLine[];
  /** `ddb.*` keys in file order (adapterType, geometry, virtualHWVersion, uuid, toolsVersion...). */
  ddb: Record<string, string>;
  /** Every other `key = value` line, in file order. */
  other: Record<string, string>;
}

/** parentCID of a disk that has no parent (spec: "ffffffff"). */
export const CID_NO_PARENT = 0xffffffff;

/** Descriptors larger than this are not descriptors (VMware's are < 10 KiB). */
export const MAX_DESCRIPTOR_BYTES = 1024 * 1024;

function syntaxError(file: string, line: number, column: number, message: string): OvfkitError {
  return new OvfkitError("VMDK_DESCRIPTOR_SYNTAX", message, { file, line, column });
}

/** Strips one pair of surrounding double quotes, if present. */
function unquote(value: string): string {
  return value.length >= 2 && value.startsWith('"') && value.endsWith('"') ? value.slice(1, -1) : value;
}

function parseHex32(value: string, file: string, line: number, column: number, key: string): number {
  if (!/^[0-9a-fA-F]{1,8}$/.test(value)) {
    throw syntaxError(file, line, column, `${key} must be up to 8 hex digits, got "${value}"`);
  }
  return Number.parseInt(value, 16);
}

/**
 * Extent line grammar (spec "Extent Descriptions"):
 *   ACCESS SECTORS TYPE ["FILENAME" [OFFSET]]
 * Columns in errors point at the offending token.
 */
const EXTENT_LINE = /^(\S+)\s+(\S+)\s+(\S+)(?:\s+"([^"]*)"(?:\s+(\S+))?)?\s*$/;

function parseExtentLine(text: string, indent: number, file: string, line: number): ExtentLine {
  const m = EXTENT_LINE.exec(text);
  if (!m) throw syntaxError(file, line, indent + 1, `malformed extent line "${text}"`);
  const [, access, sectorsText, type, name, offsetText] = m as unknown as [
    string,
    string,
    string,
    string,
    string | undefined,
    string | undefined,
  ];
  const column = (token: string) => indent + text.indexOf(token) + 1;
  if (!ACCESS_VALUES.includes(access as ExtentAccess)) {
    throw syntaxError(file, line, column(access), `unknown extent access "${access}" (RW, RDONLY, NOACCESS)`);
  }
  if (!/^\d+$/.test(sectorsText) || !Number.isSafeInteger(Number(sectorsText))) {
    throw syntaxError(file, line, column(sectorsText), `extent size "${sectorsText}" is not a sector count`);
  }
  const upperType = type.toUpperCase() as ExtentType;
  if (!EXTENT_TYPES.includes(upperType)) {
    throw syntaxError(file, line, column(type), `unknown extent type "${type}"`);
  }
  if (upperType !== "ZERO" && name === undefined) {
    throw syntaxError(file, line, indent + text.length + 1, `${upperType} extent without a file name`);
  }
  let offset = 0;
  if (offsetText !== undefined) {
    if (!/^\d+$/.test(offsetText)) {
      throw syntaxError(
        file,
        line,
        column(offsetText),
        `extent offset "${offsetText}" is not a sector count`,
      );
    }
    offset = Number(offsetText);
  }
  return {
    access: access as ExtentAccess,
    sectors: Number(sectorsText),
    type: upperType,
    ...(name === undefined ? {} : { file: name }),
    offset,
    line,
  };
}

/**
 * Parses a descriptor. `file` is only used to locate errors
 * (VMDK_DESCRIPTOR_SYNTAX with line:column).
 */
export function parseDescriptor(text: string, file: string): VmdkDescriptor {
  const result: VmdkDescriptor = {
    version: 1,
    cid: 0,
    parentCid: CID_NO_PARENT,
    createType: "",
    extents: [],
    ddb: {},
    other: {},
  };
  let sawCreateType = false;
  const lines = text.split(/\r?\n/);
  for (let index = 0; index < lines.length; index++) {
    const lineNumber = index + 1;
    const raw = lines[index] as string;
    const trimmed = raw.trim();
    if (trimmed === "" || trimmed.startsWith("#")) continue;
    const indent = raw.length - raw.trimStart().length;
    if (/^(RW|RDONLY|NOACCESS)\s/.test(trimmed)) {
      result.extents.push(parseExtentLine(trimmed, indent, file, lineNumber));
      continue;
    }
    const eq = trimmed.indexOf("=");
    if (eq <= 0) {
      throw syntaxError(
        file,
        lineNumber,
        indent + 1,
        `expected "key = value" or an extent line, got "${trimmed}"`,
      );
    }
    const key = trimmed.slice(0, eq).trim();
    const value = unquote(trimmed.slice(eq + 1).trim());
    const valueColumn = indent + eq + 2;
    if (key.startsWith("ddb.")) {
      result.ddb[key] = value;
      continue;
    }
    switch (key) {
      case "version":
        if (!/^\d+$/.test(value))
          throw syntaxError(file, lineNumber, valueColumn, `version "${value}" is not a number`);
        result.version = Number(value);
        break;
      case "CID":
        result.cid = parseHex32(value, file, lineNumber, valueColumn, key);
        break;
      case "parentCID":
        result.parentCid = parseHex32(value, file, lineNumber, valueColumn, key);
        break;
      case "createType":
        result.createType = value;
        sawCreateType = true;
        break;
      case "parentFileNameHint":
        result.parentFileNameHint = value;
        break;
      default:
        result.other[key] = value;
    }
  }
  if (!sawCreateType) throw syntaxError(file, 1, 1, "descriptor has no createType");
  if (result.extents.length === 0) throw syntaxError(file, 1, 1, "descriptor declares no extents");
  return result;
}

/** Cheap test used by detection: does this text look like a VMDK descriptor? */
export function looksLikeDescriptor(head: Buffer): boolean {
  // qemu-img pads separate descriptor files with NULs: the text ends at the first one.
  const nul = head.indexOf(0);
  const text = head.toString("latin1", 0, Math.min(nul < 0 ? head.length : nul, 4096));
  return (
    /^\s*#\s*Disk DescriptorFile/im.test(text) ||
    (/^\s*createType\s*=/m.test(text) && /^\s*(RW|RDONLY)\s+\d+/m.test(text))
  );
}

/**
 * Resolves an extent file name against the descriptor's folder. Names that
 * are absolute or climb out of the folder are refused with
 * VMDK_EXTENT_OUTSIDE unless `allowOutside` (a descriptor must not make us
 * read arbitrary files, e.g. from a downloaded OVA).
 */
export function extentPath(
  folder: string,
  name: string,
  allowOutside: boolean,
  where: { file: string; line: number },
): string {
  const normalised = normalize(name.replaceAll("\\", "/"));
  const escapes =
    isAbsolute(name) || /^[A-Za-z]:/.test(name) || normalised === ".." || normalised.startsWith(`..${sep}`);
  if (escapes && !allowOutside) {
    throw new OvfkitError(
      "VMDK_EXTENT_OUTSIDE",
      `extent "${name}" is outside the descriptor's folder (allow with allowExtentOutside)`,
      { file: where.file, line: where.line, column: 1 },
    );
  }
  const path = resolve(folder, normalised);
  // a plain name can still be a symbolic link to a file elsewhere: compare where it really is
  if (!allowOutside && existsSync(path)) {
    const real = realpathSync(path);
    const root = realpathSync(folder);
    if (real !== root && !real.startsWith(`${root}${sep}`)) {
      throw new OvfkitError(
        "VMDK_EXTENT_OUTSIDE",
        `extent "${name}" is a symbolic link to ${real}, outside the descriptor's folder (allow with allowExtentOutside)`,
        { file: where.file, line: where.line, column: 1 },
      );
    }
  }
  return path;
}

function formatExtentLine(extent: Omit<ExtentLine, "line">): string {
  const parts: string[] = [extent.access, String(extent.sectors), extent.type];
  if (extent.file !== undefined) parts.push(`"${extent.file}"`);
  // qemu-img and VMware always write the offset of FLAT/VMFS extents, even 0.
  if (extent.type === "FLAT" || extent.type === "VMFS") parts.push(String(extent.offset));
  return parts.join(" ");
}

/** Writes a descriptor in the layout qemu-img and VMware use. */
export function formatDescriptor(
  descriptor: Omit<VmdkDescriptor, "extents"> & { extents: Omit<ExtentLine, "line">[] },
): string {
  const hex = (n: number) => (n >>> 0).toString(16).padStart(8, "0");
  const lines = [
    "# Disk DescriptorFile",
    `version=${descriptor.version}`,
    `CID=${hex(descriptor.cid)}`,
    `parentCID=${hex(descriptor.parentCid)}`,
    `createType="${descriptor.createType}"`,
  ];
  if (descriptor.parentFileNameHint !== undefined) {
    lines.push(`parentFileNameHint="${descriptor.parentFileNameHint}"`);
  }
  for (const [key, value] of Object.entries(descriptor.other)) lines.push(`${key}="${value}"`);
  lines.push("", "# Extent description");
  for (const extent of descriptor.extents) lines.push(formatExtentLine(extent));
  lines.push("", "# The Disk Data Base", "#DDB", "");
  for (const [key, value] of Object.entries(descriptor.ddb)) lines.push(`${key} = "${value}"`);
  return `${lines.join("\n")}\n`;
}
