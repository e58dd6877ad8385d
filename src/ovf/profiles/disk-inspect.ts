import { openDisk } from "../../formats/index.js";
import type { PackageView } from "../package-view.js";

/**
 * Just enough of a package's disk files to judge them against a target:
 * read from header bytes in place (works inside an .ova without
 * extracting), plus the DiskReader's view for folder packages.
 */

/** VMware Virtual Disk Format 1.1, "Hosted Sparse Extent Header" (little-endian). */
const VMDK_SPARSE = {
  MAGIC: 0x564d444b, // "KDMV"
  VERSION: 4,
  FLAGS: 8,
  CAPACITY: 12, // sectors
  DESCRIPTOR_OFFSET: 28, // sectors
  DESCRIPTOR_SIZE: 36, // sectors
  COMPRESS_ALGORITHM: 77,
  FLAG_COMPRESSED: 1 << 16,
  FLAG_MARKERS: 1 << 17,
} as const;

/** Microsoft VHD Image Format Specification, "Hard Disk Footer Format" (big-endian, last 512 bytes). */
const VHD_FOOTER = {
  SIZE: 512,
  COOKIE: 0, // "conectix"
  CREATOR_APP: 28,
  CURRENT_SIZE: 48,
  DISK_TYPE: 60, // 2 fixed, 3 dynamic, 4 differencing
  CHECKSUM: 64,
} as const;

export type InspectedFormat =
  | "vmdk-sparse"
  | "vmdk-descriptor"
  | "vmdk-cowd"
  | "vhd"
  | "vhdx"
  | "qcow2"
  | "gzip"
  | "iso"
  | "raw"
  | "missing";

export interface InspectedDisk {
  format: InspectedFormat;
  /** Bytes of the file in the package. */
  fileSize: number;
  /** Virtual size in bytes when the header tells. */
  virtualSize?: number;
  vmdk?: {
    version?: number;
    compressed?: boolean;
    markers?: boolean;
    createType?: string;
    extents: { access: string; sectors: number; type: string; file: string }[];
    parentFileNameHint?: string;
  };
  vhd?: {
    diskType: number;
    currentSize: number;
    creatorApp: string;
    checksumOk: boolean;
  };
  /** What openDisk reported, for folder packages (format, formatSpecific). */
  reader?: { format: string; virtualSize: number; formatSpecific: Record<string, unknown> };
}

const HEAD = 4096;

export async function inspectDisk(pkg: PackageView, name: string): Promise<InspectedDisk> {
  const fileSize = await pkg.sizeOf(name);
  if (fileSize === undefined) return { format: "missing", fileSize: 0 };
  const head = await pkg.read(name, 0, Math.min(HEAD, fileSize));
  const result: InspectedDisk = { format: "raw", fileSize };
  if (head.length >= 4 && head.readUInt32LE(0) === VMDK_SPARSE.MAGIC) {
    result.format = "vmdk-sparse";
    const flags = head.readUInt32LE(VMDK_SPARSE.FLAGS);
    const descriptorOffset = Number(head.readBigUInt64LE(VMDK_SPARSE.DESCRIPTOR_OFFSET)) * 512;
    const descriptorSize = Math.min(
      Number(head.readBigUInt64LE(VMDK_SPARSE.DESCRIPTOR_SIZE)) * 512,
      64 * 1024,
    );
    result.virtualSize = Number(head.readBigUInt64LE(VMDK_SPARSE.CAPACITY)) * 512;
    const embedded =
      descriptorOffset > 0 && descriptorSize > 0
        ? (await pkg.read(name, descriptorOffset, descriptorSize)).toString("latin1").replace(/\0+$/, "")
        : "";
    result.vmdk = {
      version: head.readUInt32LE(VMDK_SPARSE.VERSION),
      compressed: (flags & VMDK_SPARSE.FLAG_COMPRESSED) !== 0,
      markers: (flags & VMDK_SPARSE.FLAG_MARKERS) !== 0,
      ...parseVmdkDescriptor(embedded),
    };
  } else if (head.subarray(0, 4).toString("latin1") === "COWD") {
    result.format = "vmdk-cowd";
  } else if (head.subarray(0, 8).toString("latin1") === "vhdxfile") {
    result.format = "vhdx";
  } else if (head.length >= 4 && head.readUInt32BE(0) === 0x514649fb) {
    result.format = "qcow2";
  } else if (head[0] === 0x1f && head[1] === 0x8b) {
    result.format = "gzip";
  } else if (/^# Disk DescriptorFile/m.test(head.subarray(0, 1024).toString("latin1"))) {
    result.format = "vmdk-descriptor";
    const text = (await pkg.read(name, 0, Math.min(fileSize, 64 * 1024))).toString("latin1");
    result.vmdk = parseVmdkDescriptor(text);
    result.virtualSize = result.vmdk.extents.reduce((sum, e) => sum + e.sectors * 512, 0);
  } else if (fileSize >= VHD_FOOTER.SIZE) {
    const footer = await pkg.read(name, fileSize - VHD_FOOTER.SIZE, VHD_FOOTER.SIZE);
    const cookieAtStart = head.subarray(0, 8).toString("latin1") === "conectix"; // dynamic: copy at 0
    if (footer.subarray(0, 8).toString("latin1") === "conectix" || cookieAtStart) {
      const f = footer.subarray(0, 8).toString("latin1") === "conectix" ? footer : head.subarray(0, 512);
      result.format = "vhd";
      let sum = 0;
      for (let i = 0; i < VHD_FOOTER.SIZE; i++) {
        if (i < VHD_FOOTER.CHECKSUM || i >= VHD_FOOTER.CHECKSUM + 4) sum += f[i]!;
      }
      result.vhd = {
        diskType: f.readUInt32BE(VHD_FOOTER.DISK_TYPE),
        currentSize: Number(f.readBigUInt64BE(VHD_FOOTER.CURRENT_SIZE)),
        creatorApp: f.subarray(VHD_FOOTER.CREATOR_APP, VHD_FOOTER.CREATOR_APP + 4).toString("latin1"),
        checksumOk: ~sum >>> 0 === f.readUInt32BE(VHD_FOOTER.CHECKSUM),
      };
      result.virtualSize = result.vhd.currentSize;
    } else if (fileSize >= 0x8006 && (await pkg.read(name, 0x8001, 5)).toString("latin1") === "CD001") {
      result.format = "iso";
    }
  }
  await addReaderView(pkg, name, result);
  return result;
}

/** Folder packages: ask the format drivers too (their virtual size wins; formatSpecific fills gaps). */
async function addReaderView(pkg: PackageView, name: string, result: InspectedDisk): Promise<void> {
  const path = pkg.pathOf(name);
  if (!path || result.format === "gzip" || result.format === "iso" || result.format === "missing") return;
  try {
    const reader = await openDisk(path);
    try {
      result.reader = {
        format: reader.format,
        virtualSize: reader.virtualSize,
        formatSpecific: reader.formatSpecific as Record<string, unknown>,
      };
      const createType = reader.formatSpecific.createType;
      if (result.vmdk && !result.vmdk.createType && typeof createType === "string")
        result.vmdk.createType = createType;
      if (result.format !== "raw" && result.virtualSize === undefined)
        result.virtualSize = reader.virtualSize;
    } finally {
      await reader.close();
    }
  } catch {
    // a driver that cannot open the file leaves the header view; the profile rules judge that
  }
}

/** createType, extent lines and parentFileNameHint of a VMDK text descriptor (VMDK spec §"The Descriptor"). */
export function parseVmdkDescriptor(text: string): NonNullable<InspectedDisk["vmdk"]> {
  const createType = /^\s*createType\s*=\s*"([^"]*)"/m.exec(text)?.[1];
  const parent = /^\s*parentFileNameHint\s*=\s*"([^"]*)"/m.exec(text)?.[1];
  const extents = [...text.matchAll(/^\s*(RW|RDONLY|NOACCESS)\s+(\d+)\s+(\w+)(?:\s+"([^"]*)")?/gm)].map(
    (m) => ({
      access: m[1]!,
      sectors: Number(m[2]),
      type: m[3]!,
      file: m[4] ?? "",
    }),
  );
  return { createType, extents, ...(parent ? { parentFileNameHint: parent } : {}) };
}
