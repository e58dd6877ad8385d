import { asOvfkitError, OvfkitError } from "../errors.js";
import { type CheckFinding, type CheckReport, findingFromError, isAllZero, STREAM_CHUNK } from "./disk.js";
import type { OpenOptions } from "./driver.js";
import { RandomAccessFile } from "./file.js";
import { withOutputs } from "./output.js";
import { openVhd } from "./vhd-chain.js";
import {
  BAT_UNUSED,
  CHS_SIZED_CREATORS,
  chsForSectors,
  chsRoundUp,
  DiskType,
  FILE_FORMAT_VERSION,
  FOOTER_CHECKSUM_OFFSET,
  FOOTER_SIZE,
  type Footer,
  footerChecksumOk,
  type Geometry,
  geometryBytes,
  HEADER_SIZE,
  hasFooterCookie,
  isMaxGeometry,
  MAX_GEOMETRY,
  OVFKIT_CREATOR_APP,
  SECTOR,
  serializeFooter,
  serializeHeader,
  sizeSourceOf,
} from "./vhd-format.js";
import {
  batProblems,
  blockPayloadBytes,
  type FooterLocation,
  loadHeader,
  loadLayout,
  locateFooter,
  MAX_BAT_PROBLEMS,
  type VhdLayout,
  VhdReader,
} from "./vhd-reader.js";

type Finding = Omit<CheckFinding, "file">;

/** Footer problems: the end footer unusable, the copy at 0 differing, odd versions and sizes. */
async function footerFindings(file: RandomAccessFile, location: FooterLocation): Promise<Finding[]> {
  const out: Finding[] = [];
  const { footer } = location;
  if (location.fromHeadCopy) {
    const tail = await file.readExact(file.size - FOOTER_SIZE, FOOTER_SIZE, "VHD footer");
    out.push(
      hasFooterCookie(tail)
        ? {
            code: "VHD_BAD_CHECKSUM",
            severity: "corruption",
            message: "the end footer's checksum is wrong (the copy at offset 0 was used)",
            offset: file.size - FOOTER_SIZE + FOOTER_CHECKSUM_OFFSET,
          }
        : {
            code: "VHD_FOOTER_MISSING",
            severity: "corruption",
            message: "no footer at the end of the file (truncated?); the copy at offset 0 was used",
            offset: file.size - FOOTER_SIZE,
          },
    );
  } else if (footer.diskType !== DiskType.Fixed) {
    const head = await file.readExact(0, FOOTER_SIZE, "VHD footer copy");
    const tail = await file.readExact(location.offset, FOOTER_SIZE, "VHD footer");
    if (!hasFooterCookie(head) || !footerChecksumOk(head)) {
      out.push({
        code: "VHD_BAD_CHECKSUM",
        severity: "corruption",
        message: "the footer copy at offset 0 is damaged (bad cookie or checksum)",
        offset: FOOTER_CHECKSUM_OFFSET,
      });
    } else if (!head.equals(tail)) {
      out.push({
        code: "VHD_FOOTER_MISMATCH",
        severity: "corruption",
        message: "the footer copy at offset 0 differs from the footer at the end",
        offset: 0,
      });
    }
  }
  if (footer.version !== FILE_FORMAT_VERSION) {
    out.push({
      code: "VHD_UNKNOWN_VERSION",
      severity: "warning",
      message: `file format version 0x${footer.version.toString(16)} (expected 0x10000)`,
      offset: location.offset + 12,
    });
  }
  if (footer.savedState) {
    out.push({
      code: "VHD_SAVED_STATE",
      severity: "warning",
      message: "the saved-state flag is set (the VM was suspended)",
      offset: location.offset + 84,
    });
  }
  const chsBytes = geometryBytes(footer.geometry);
  if (sizeSourceOf(footer) === "chs" && chsBytes !== footer.currentSize) {
    out.push({
      code: "VHD_SIZE_GEOMETRY_MISMATCH",
      severity: "warning",
      message: `creator "${footer.creatorApp}" sizes by CHS (${chsBytes} bytes) but the current size says ${footer.currentSize}; tools that use the current size see a different disk`,
      offset: location.offset + 48,
    });
  } else if (!isMaxGeometry(footer.geometry) && chsBytes > footer.currentSize) {
    out.push({
      code: "VHD_SIZE_GEOMETRY_MISMATCH",
      severity: "warning",
      message: `the CHS geometry describes ${chsBytes} bytes, more than the current size ${footer.currentSize}`,
      offset: location.offset + 56,
    });
  }
  return out;
}

function fixedFindings(layout: VhdLayout): Finding[] {
  const { location, virtualSize, footer } = layout;
  if (location.payloadEnd < virtualSize) {
    return [
      {
        code: "VHD_TRUNCATED",
        severity: "corruption",
        message: `the data area holds ${location.payloadEnd} bytes, the disk is ${virtualSize}`,
        offset: location.offset,
      },
    ];
  }
  if (location.payloadEnd > footer.currentSize) {
    return [
      {
        code: "VHD_DATA_AFTER_END",
        severity: "warning",
        message: `${location.payloadEnd - footer.currentSize} bytes of data after the end of the disk`,
        offset: footer.currentSize,
      },
    ];
  }
  return [];
}

/** Bitmaps of allocated blocks (a block whose bitmap marks nothing is leaked space) and unused space at the end. */
async function blockFindings(layout: VhdLayout, broken: Set<number>): Promise<Finding[]> {
  const out: Finding[] = [];
  const { bat, header, file } = layout;
  if (!bat || !header) return out;
  let end = Math.max(...layout.metadata.map((m) => m.end));
  for (let index = 0; index < bat.length; index++) {
    const entry = bat[index]!;
    if (entry === BAT_UNUSED || broken.has(index)) continue;
    const start = entry * SECTOR;
    // Writers allocate whole blocks even where the disk ends inside the last one.
    end = Math.max(end, Math.min(layout.location.payloadEnd, start + layout.bitmapSize + header.blockSize));
    const bitmap = await file.readExact(start, layout.bitmapSize, `sector bitmap of block ${index}`);
    if (isAllZero(bitmap) && out.length < MAX_BAT_PROBLEMS) {
      out.push({
        code: "VHD_BLOCK_UNUSED",
        severity: "leak",
        message: `block ${index} is allocated but its bitmap marks no sector`,
        offset: start,
      });
    }
  }
  // Windows pads the space after the BAT and between blocks (alignment); only a gap that could hold a whole block is lost space.
  if (layout.location.payloadEnd - end >= layout.bitmapSize + header.blockSize) {
    out.push({
      code: "VHD_DATA_AFTER_END",
      severity: "leak",
      message: `${layout.location.payloadEnd - end} bytes between the last block and the footer belong to nothing`,
      offset: end,
    });
  }
  if (layout.headerOffset! % SECTOR !== 0 || header.tableOffset % SECTOR !== 0) {
    out.push({
      code: "VHD_UNALIGNED",
      severity: "warning",
      message: "the dynamic header or the BAT does not start on a sector boundary",
      offset: layout.headerOffset!,
    });
  }
  return out;
}

async function parentFindings(path: string, options: OpenOptions): Promise<Finding[]> {
  try {
    const reader = await openVhd(path, options);
    await reader.close();
    return [];
  } catch (error) {
    const e = asOvfkitError(error, path);
    return [
      {
        code: e.code,
        severity: e.code === "VHD_PARENT_OUTSIDE" ? "warning" : "corruption",
        message: e.message,
        offset: e.offset,
      },
    ];
  }
}

/** `ovfkit check` for VHD: structural findings; throws only when the file is no VHD at all. */
export async function checkVhd(path: string, options: OpenOptions = {}): Promise<CheckReport> {
  const file = await RandomAccessFile.open(path);
  const findings: Finding[] = [];
  const report = (extra: Partial<CheckReport> = {}): CheckReport => ({
    filename: path,
    format: "vpc",
    findings: findings.map((f) => ({ ...f, file: path })),
    ...extra,
  });
  try {
    let location: FooterLocation;
    try {
      location = await locateFooter(file);
    } catch (error) {
      const e = asOvfkitError(error, path);
      if (e.code !== "VHD_BAD_CHECKSUM") throw e;
      findings.push({ code: e.code, severity: "corruption", message: e.message, offset: e.offset });
      return report();
    }
    findings.push(...(await footerFindings(file, location)));
    if (location.footer.diskType !== DiskType.Fixed) {
      try {
        await loadHeader(file, location.footer);
      } catch (error) {
        findings.push(findingFromError(error, path));
        return report();
      }
    }
    let layout: VhdLayout;
    try {
      layout = await loadLayout(file, { validateBat: false });
    } catch (error) {
      findings.push(findingFromError(error, path));
      return report();
    }
    if (!layout.bat) {
      findings.push(...fixedFindings(layout));
      return report();
    }
    const problems = batProblems(layout);
    const broken = new Set<number>();
    for (const p of problems) {
      findings.push({ code: p.code, severity: "corruption", message: p.message, offset: p.offset });
      if (p.code === "VHD_BAT_OUT_OF_RANGE") broken.add((p.offset - layout.header!.tableOffset) / 4);
    }
    // past MAX_BAT_PROBLEMS the BAT is garbage: reading a bitmap per entry would only list more of it
    if (problems.length < MAX_BAT_PROBLEMS) findings.push(...(await blockFindings(layout, broken)));
    if (layout.footer.diskType === DiskType.Differencing && problems.length === 0) {
      findings.push(...(await parentFindings(path, options)));
    }
    const allocated = layout.bat.filter((e) => e !== BAT_UNUSED).length;
    return report({ allocatedClusters: allocated, totalClusters: layout.bat.length });
  } finally {
    await file.close();
  }
}

// ---------------------------------------------------------------------------
// resize
// ---------------------------------------------------------------------------

/**
 * New size and geometry for a resized image, keeping the creator's size
 * rule: CHS-sized creators round up to a CHS geometry; ovfkit's (and qemu's
 * "qem2") use the exact size with the spec geometry or the CHS maximum;
 * others get the spec geometry, as Hyper-V writes it.
 */
export function resizedShape(footer: Footer, requested: number): { size: number; geometry: Geometry } {
  const sectors = Math.ceil(requested / SECTOR);
  if (CHS_SIZED_CREATORS.includes(footer.creatorApp)) {
    const geometry = chsRoundUp(sectors);
    return { size: isMaxGeometry(geometry) ? sectors * SECTOR : geometryBytes(geometry), geometry };
  }
  const geometry = chsForSectors(sectors);
  const exact = geometryBytes(geometry) === sectors * SECTOR;
  const keepsMax = footer.creatorApp === OVFKIT_CREATOR_APP || footer.creatorApp === "qem2";
  return { size: sectors * SECTOR, geometry: exact || !keepsMax ? geometry : { ...MAX_GEOMETRY } };
}

/** Refuses a shrink when the part to cut off holds any non-zero byte. */
async function assertNoDataFrom(reader: VhdReader, from: number): Promise<void> {
  const buf = Buffer.allocUnsafe(STREAM_CHUNK);
  for await (const extent of reader.map(from)) {
    if (extent.kind !== "data") continue;
    const end = extent.offset + extent.length;
    for (let offset = extent.offset; offset < end; offset += STREAM_CHUNK) {
      const data = await reader.read(offset, Math.min(STREAM_CHUNK, end - offset), buf);
      if (!isAllZero(data)) {
        throw new OvfkitError("SHRINK_WOULD_LOSE_DATA", `the range to cut off holds data at ${offset}`, {
          file: reader.path,
          offset,
        });
      }
    }
  }
}

function resizedFooter(
  footer: Footer,
  shape: { size: number; geometry: Geometry },
  dataOffset: number | undefined,
): Buffer {
  return serializeFooter({ ...footer, currentSize: shape.size, geometry: shape.geometry, dataOffset });
}

async function resizeFixed(
  file: RandomAccessFile,
  layout: VhdLayout,
  shape: { size: number; geometry: Geometry },
): Promise<void> {
  const oldEnd = layout.location.payloadEnd;
  const footer = resizedFooter(layout.footer, shape, undefined);
  if (shape.size > oldEnd) {
    // Grow: extend the data area (zeros), clear the old footer, which is now data, and write the new footer last.
    await file.truncate(shape.size + FOOTER_SIZE);
    await file.writeAt(oldEnd, Buffer.alloc(Math.min(FOOTER_SIZE, shape.size - oldEnd)));
    await file.sync();
    await file.writeAt(shape.size, footer);
  } else {
    await file.writeAt(shape.size, footer);
    await file.sync();
    await file.truncate(shape.size + FOOTER_SIZE);
  }
  await file.sync();
}

/** Grows or shrinks a dynamic VHD whose BAT already has room: only the BAT tail and the footers change. */
async function resizeDynamicInPlace(
  file: RandomAccessFile,
  layout: VhdLayout,
  shape: { size: number; geometry: Geometry },
): Promise<void> {
  const header = layout.header!;
  const oldEntries = layout.bat!.length;
  const newEntries = Math.ceil(shape.size / header.blockSize);
  const from = Math.min(oldEntries, newEntries);
  const to = Math.max(oldEntries, newEntries);
  // Entries past the old end were never part of the disk; entries past the new end leave it.
  if (to > from) await file.writeAt(header.tableOffset + from * 4, Buffer.alloc((to - from) * 4, 0xff));
  const footer = resizedFooter(layout.footer, shape, layout.footer.dataOffset);
  await file.writeAt(0, footer);
  await file.sync();
  await file.writeAt(layout.location.offset, footer);
  await file.sync();
}

/**
 * Grows a dynamic VHD whose BAT is full: writes a new file with a larger
 * BAT in the same folder, copying every block, then renames it over the
 * original (atomic: the original is untouched until the rename).
 */
async function rewriteDynamic(
  path: string,
  layout: VhdLayout,
  shape: { size: number; geometry: Geometry },
): Promise<void> {
  const header = layout.header!;
  const bat = layout.bat!;
  const entries = Math.ceil(shape.size / header.blockSize);
  const tableOffset = FOOTER_SIZE + HEADER_SIZE;
  let next = tableOffset + Math.ceil((entries * 4) / SECTOR) * SECTOR;
  await withOutputs(
    async (tx) => {
      const out = await RandomAccessFile.create(tx.file(path));
      try {
        const locators = [];
        for (const locator of header.locators) {
          const space = Math.ceil(Math.max(locator.dataLength, 1) / SECTOR) * SECTOR;
          const data = await layout.file.readExact(
            locator.dataOffset,
            locator.dataLength,
            `parent locator ${locator.index}`,
          );
          await out.writeAt(next, data);
          locators.push({ ...locator, dataOffset: next, dataSpace: space / SECTOR });
          next += space;
        }
        const newBat = new Uint32Array(entries).fill(BAT_UNUSED);
        const order = [...bat.keys()].filter((i) => bat[i] !== BAT_UNUSED).sort((a, b) => bat[a]! - bat[b]!);
        const buf = Buffer.allocUnsafe(STREAM_CHUNK);
        for (const index of order) {
          const length = layout.bitmapSize + blockPayloadBytes(layout, header.blockSize, index);
          for (let done = 0; done < length; done += STREAM_CHUNK) {
            const n = Math.min(STREAM_CHUNK, length - done);
            await out.writeAt(
              next + done,
              await layout.file.readExact(bat[index]! * SECTOR + done, n, `block ${index}`, buf),
            );
          }
          newBat[index] = next / SECTOR;
          next += layout.bitmapSize + header.blockSize;
        }
        await out.truncate(next);
        const batBuf = Buffer.alloc(Math.ceil((entries * 4) / SECTOR) * SECTOR, 0xff);
        for (let i = 0; i < entries; i++) batBuf.writeUInt32BE(newBat[i]!, i * 4);
        await out.writeAt(tableOffset, batBuf);
        await out.writeAt(
          FOOTER_SIZE,
          serializeHeader({ ...header, tableOffset, maxTableEntries: entries, locators }),
        );
        const footer = resizedFooter(layout.footer, shape, FOOTER_SIZE);
        await out.writeAt(0, footer);
        await out.writeAt(next, footer);
        await out.sync();
      } finally {
        await out.close();
      }
    },
    { overwrite: true },
  );
}

/** `ovfkit resize` for VHD. */
export async function resizeVhd(path: string, newSize: number, options: { shrink?: boolean }): Promise<void> {
  const file = await RandomAccessFile.openForUpdate(path);
  try {
    const layout = await loadLayout(file);
    if (layout.location.fromHeadCopy || layout.location.size !== FOOTER_SIZE) {
      throw new OvfkitError(
        "VHD_NEEDS_REPAIR",
        "the end footer is damaged or old-style; convert the image instead of resizing it",
        {
          file: path,
          offset: layout.location.offset,
        },
      );
    }
    if (layout.footer.diskType === DiskType.Differencing) {
      throw new OvfkitError(
        "VHD_RESIZE_DIFFERENCING",
        "a differencing VHD has its parent's size; resize the parent and re-create the child",
        { file: path },
      );
    }
    const shape = resizedShape(layout.footer, newSize);
    if (shape.size === layout.virtualSize && shape.size === layout.footer.currentSize) return;
    if (shape.size < layout.virtualSize) {
      if (!options.shrink)
        throw new OvfkitError("SHRINK_REFUSED", `shrinking ${path} needs --shrink`, { file: path });
      await assertNoDataFrom(new VhdReader(layout, undefined, undefined, []), shape.size);
    }
    const limit = layout.header ? 2040 * 1024 ** 3 : 4 * 1024 ** 4;
    if (shape.size > limit)
      throw new OvfkitError("VHD_TOO_LARGE", `a VHD of this type holds at most ${limit} bytes`, {
        file: path,
      });
    if (!layout.header) return await resizeFixed(file, layout, shape);
    if (Math.ceil(shape.size / layout.header.blockSize) <= layout.header.maxTableEntries) {
      return await resizeDynamicInPlace(file, layout, shape);
    }
    await rewriteDynamic(path, layout, shape);
  } finally {
    await file.close();
  }
}
