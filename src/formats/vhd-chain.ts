import { existsSync, realpathSync } from "node:fs";
import { basename, dirname, isAbsolute, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { asOvfkitError, OvfkitError } from "../errors.js";
import type { OpenOptions } from "./driver.js";
import { RandomAccessFile } from "./file.js";
import { isInsideFolder } from "./paths.js";
import { DiskType, type DynamicHeader, formatUuid, type ParentLocator, PlatformCode } from "./vhd-format.js";
import { loadLayout, VhdReader } from "./vhd-reader.js";

/**
 * Opening a VHD with its parent chain: parent locators (spec: "Parent
 * Locator Entries" of the dynamic disk header), the order candidates are
 * tried in, the checks each must pass (unique id, folder tree, loops,
 * depth).
 */

/** Deepest parent chain ovfkit follows (a child plus 16 ancestors). */
export const MAX_CHAIN_DEPTH = 16;
/** Locator data larger than this is not a path. */
const MAX_LOCATOR_BYTES = 64 * 1024;

/** Decodes a locator's path text according to its platform code; undefined when not a path. */
export function decodeLocator(locator: ParentLocator, data: Buffer): string | undefined {
  switch (locator.platformCode) {
    case PlatformCode.W2ru:
    case PlatformCode.W2ku:
      return data.toString("utf16le").replace(/\0+$/, "");
    case PlatformCode.Wi2r:
    case PlatformCode.Wi2k:
      return data.toString("latin1").replace(/\0+$/, "");
    case PlatformCode.MacX: {
      const url = data.toString("utf8").replace(/\0+$/, "");
      try {
        return fileURLToPath(url.replace(/^file:\/\/localhost\//, "file:///"));
      } catch {
        return undefined;
      }
    }
    default:
      return undefined;
  }
}

const RELATIVE_CODES: readonly number[] = [PlatformCode.W2ru, PlatformCode.Wi2r];

export interface LocatorPath {
  platform: string;
  path: string;
}

/** Reads every parent locator's text (bad ones are skipped: `check` reports them). */
export async function readLocatorPaths(
  file: RandomAccessFile,
  header: DynamicHeader,
): Promise<LocatorPath[]> {
  const out: LocatorPath[] = [];
  const ordered = [...header.locators].sort(
    (a, b) =>
      Number(!RELATIVE_CODES.includes(a.platformCode)) - Number(!RELATIVE_CODES.includes(b.platformCode)),
  );
  for (const locator of ordered) {
    if (locator.dataLength === 0 || locator.dataLength > MAX_LOCATOR_BYTES) continue;
    if (locator.dataOffset + locator.dataLength > file.size) continue;
    const data = await file.readExact(
      locator.dataOffset,
      locator.dataLength,
      `parent locator ${locator.index}`,
    );
    const path = decodeLocator(locator, data);
    const platform = Buffer.alloc(4);
    platform.writeUInt32BE(locator.platformCode);
    if (path) out.push({ platform: platform.toString("latin1"), path });
  }
  return out;
}

/** Turns a locator path (Windows or POSIX) into a path on this machine, or undefined. */
function localPath(childDir: string, text: string): string | undefined {
  const slashed = text.replace(/\\/g, "/");
  if (/^[A-Za-z]:\//.test(slashed) || slashed.startsWith("//")) return undefined; // a Windows drive or UNC path
  return isAbsolute(slashed) ? slashed : resolve(childDir, slashed);
}

interface ChainState {
  /** Real paths of the images above the one being opened. */
  chain: string[];
}

/**
 * Opens the parent of a differencing disk: relative locators first, then
 * absolute ones, then the parent's bare file name beside the child; each
 * candidate must lie in the child's folder tree (unless allowed) and carry
 * the unique id the child's header names.
 */
async function openParent(
  childPath: string,
  header: DynamicHeader,
  locators: LocatorPath[],
  options: OpenOptions,
  state: ChainState,
): Promise<VhdReader> {
  const childDir = dirname(realpathSync(childPath));
  const candidates: string[] = [];
  for (const l of locators) {
    const p = localPath(childDir, l.path);
    if (p) candidates.push(p);
  }
  for (const name of [header.parentName, ...locators.map((l) => l.path)]) {
    const base = basename(name.replace(/\\/g, "/"));
    if (base) candidates.push(resolve(childDir, base));
  }
  let outside: string | undefined;
  let mismatch: string | undefined;
  let failure: OvfkitError | undefined;
  for (const candidate of [...new Set(candidates)]) {
    if (!existsSync(candidate)) continue;
    const real = realpathSync(candidate);
    if (state.chain.includes(real)) {
      throw new OvfkitError("VHD_PARENT_LOOP", `the parent chain loops back to ${real}`, { file: childPath });
    }
    if (!options.allowParentOutside && !isInsideFolder(childDir, real)) {
      outside ??= candidate;
      continue;
    }
    let parent: VhdReader;
    try {
      parent = await openVhd(real, options, { chain: [...state.chain] });
    } catch (error) {
      const e = asOvfkitError(error, real);
      if (e.code === "VHD_PARENT_LOOP" || e.code === "VHD_CHAIN_TOO_DEEP") throw e;
      failure ??= e;
      continue;
    }
    if (!parent.layout.footer.uniqueId.equals(header.parentUniqueId)) {
      mismatch ??= `${candidate} has unique id ${formatUuid(parent.layout.footer.uniqueId)}, the child expects ${formatUuid(header.parentUniqueId)}`;
      await parent.close();
      continue;
    }
    return parent;
  }
  if (mismatch) throw new OvfkitError("VHD_PARENT_MISMATCH", mismatch, { file: childPath, offset: 40 });
  if (outside) {
    throw new OvfkitError(
      "VHD_PARENT_OUTSIDE",
      `the parent ${outside} is outside the child's folder (allow it with --allow-parent-outside)`,
      {
        file: childPath,
      },
    );
  }
  if (failure) throw failure;
  throw new OvfkitError(
    "VHD_PARENT_NOT_FOUND",
    `parent "${header.parentName}" not found (tried: ${[...new Set(candidates)].join(", ") || "no locator"})`,
    {
      file: childPath,
    },
  );
}

/** Opens a VHD of any kind; differencing disks open their parent chain. */
export async function openVhd(
  path: string,
  options: OpenOptions = {},
  state: ChainState = { chain: [] },
): Promise<VhdReader> {
  const file = await RandomAccessFile.open(path);
  try {
    const layout = await loadLayout(file);
    if (layout.footer.diskType !== DiskType.Differencing || !layout.header)
      return new VhdReader(layout, undefined, undefined, []);
    const locators = await readLocatorPaths(file, layout.header);
    const locatorTexts = locators.map((l) => `${l.platform}:${l.path}`);
    if (options.noBacking) return new VhdReader(layout, undefined, undefined, locatorTexts);
    const depth = state.chain.length + 1;
    if (depth > MAX_CHAIN_DEPTH) {
      throw new OvfkitError("VHD_CHAIN_TOO_DEEP", `the parent chain is deeper than ${MAX_CHAIN_DEPTH}`, {
        file: path,
      });
    }
    const parent = await openParent(path, layout.header, locators, options, {
      chain: [...state.chain, realpathSync(path)],
    });
    return new VhdReader(layout, parent, parent.path, locatorTexts);
  } catch (error) {
    await file.close();
    throw asOvfkitError(error, path);
  }
}
