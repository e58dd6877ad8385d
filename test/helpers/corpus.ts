import { createHash } from "node:crypto";
import {
  createReadStream,
  createWriteStream,
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  statSync,
} from "node:fs";
import { dirname, join, resolve } from "node:path";
import { pipeline } from "node:stream/promises";
import { createGunzip } from "node:zlib";

/**
 * Access to ../shared/corpus: the real third-party images and descriptors
 * that prove correctness. gzip-stored disks are materialised once into
 * .tmp/corpus (same relative paths, so VMDK extents and VHD parents sit
 * beside their descriptors). Tests skip with a printed reason when the
 * corpus is missing; CI always has it.
 */
export const SHARED = resolve(import.meta.dirname, "../../../shared");
export const CORPUS = join(SHARED, "corpus");
export const CORPUS_DISKS = join(CORPUS, "disks");
export const CORPUS_OVF = join(CORPUS, "ovf");
export const CORPUS_SCHEMAS = join(CORPUS, "schemas");
export const APPLIANCES = join(SHARED, "appliances");
export const MATERIALISED = resolve(import.meta.dirname, "../../.tmp/corpus");

export const hasCorpus = existsSync(join(CORPUS_DISKS, "EXPECTED.json"));
export const corpusSkipReason = hasCorpus
  ? ""
  : `corpus missing: ${CORPUS} not found (clone beside ../shared)`;
if (!hasCorpus) console.warn(`[skip] ${corpusSkipReason}`);

export interface StoredFile {
  path: string;
  encoding: "identity" | "gzip" | "bzip2";
  sha256: string;
  bytes: number;
}

export interface ExpectedImage {
  path: string;
  stored_as: StoredFile[];
  files: Record<string, { size: number; sha256: string }>;
  qemu_format: string;
  probed_format: string;
  creator?: string;
  notes?: string;
  qemu_img_info?: Record<string, unknown> & { "virtual-size"?: number; format?: string };
  qemu_img_check?: { rc: number; json: unknown; stderr?: string };
  convert_raw?: { ok: boolean; size?: number; sha256?: string; stderr?: string };
}

export function expectedImages(): ExpectedImage[] {
  if (!hasCorpus) return [];
  const doc = JSON.parse(readFileSync(join(CORPUS_DISKS, "EXPECTED.json"), "utf8")) as {
    images: ExpectedImage[];
  };
  return doc.images;
}

/**
 * Returns a path where the image's files (descriptor, extents, parents) are
 * all present uncompressed: the corpus path itself when nothing was
 * compressed, else the materialised copy under .tmp/corpus.
 */
export async function materialise(image: ExpectedImage): Promise<string> {
  const folder = dirname(image.path);
  const needsCopy = image.stored_as.some((s) => s.encoding === "gzip");
  if (!needsCopy) return join(CORPUS_DISKS, image.path);
  for (const stored of image.stored_as) {
    if (stored.encoding === "bzip2") continue; // duplicates of the gzip copy
    const source = join(CORPUS_DISKS, stored.path);
    const target = join(
      MATERIALISED,
      stored.encoding === "gzip" ? stored.path.replace(/\.gz$/, "") : stored.path,
    );
    if (existsSync(target)) continue;
    mkdirSync(dirname(target), { recursive: true });
    const temp = `${target}.${process.pid}.tmp`;
    if (stored.encoding === "gzip") {
      await pipeline(createReadStream(source), createGunzip(), createWriteStream(temp));
    } else {
      await pipeline(createReadStream(source), createWriteStream(temp));
    }
    renameSync(temp, target);
  }
  // files not listed in stored_as (e.g. siblings) are not needed: stored_as lists every file of the entry
  return join(MATERIALISED, folder, image.path.slice(folder.length + 1));
}

export async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  await pipeline(createReadStream(path), hash);
  return hash.digest("hex");
}

export function fileSize(path: string): number {
  return statSync(path).size;
}
